//! `bridge` on the real kernel: each test builds a node namespace with containers, runs the
//! plugin there as a runtime would, and asserts on links, addresses, routes, nftables rules,
//! IPAM reservations and packets. (Parity with the reference plugin: bridge_differential.rs.)

use std::path::PathBuf;
use std::process::Command;

use conformance_tests::{ours, CniVars, Invocation, Netns, Node, Outcome, PluginDir, TempDir};
use serde_json::{json, Value};

/// A node, its CNI_PATH and scratch space.
struct Lab {
    node: Node,
    plugins: PluginDir,
    scratch: TempDir,
}

impl Lab {
    fn new() -> Lab {
        Lab {
            node: Node::new("br-node"),
            plugins: PluginDir::ours(&["bridge", "static", "whereabouts"]),
            scratch: TempDir::new("br"),
        }
    }

    fn store(&self) -> PathBuf {
        self.scratch.join("store")
    }

    fn run(&self, command: &str, cid: &str, ctr: &str, args: &str, conf: &Value) -> Outcome {
        let vars = CniVars {
            command: command.into(),
            container_id: cid.into(),
            netns: ctr.into(),
            ifname: "net1".into(),
            args: args.into(),
            path: self.plugins.path().display().to_string(),
        };
        Invocation::new(ours("bridge"))
            .in_node(&self.node)
            .vars(&vars)
            .stdin_json(conf)
            .run()
    }

    fn add(&self, cid: &str, ctr: &Netns, conf: &Value) -> Outcome {
        self.run("ADD", cid, &ctr.path().display().to_string(), "", conf)
    }

    fn del(&self, cid: &str, ctr: &Netns, conf: &Value) -> Outcome {
        self.run("DEL", cid, &ctr.path().display().to_string(), "", conf)
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut argv = vec!["ip"];
        argv.extend(args);
        self.node.run_ok(&argv)
    }

    /// `ip -j -d link` of the node, parsed.
    fn links(&self) -> Vec<Value> {
        serde_json::from_str(&self.ip(&["-j", "-d", "link", "show"])).unwrap()
    }

    fn veths(&self) -> Vec<Value> {
        self.links()
            .into_iter()
            .filter(|l| l["linkinfo"]["info_kind"] == "veth")
            .collect()
    }

    fn ports_of(&self, bridge: &str) -> Vec<Value> {
        self.links()
            .into_iter()
            .filter(|l| l["master"] == bridge)
            .collect()
    }

    fn nft(&self, args: &str) -> String {
        let mut argv = vec!["nft"];
        argv.extend(args.split_whitespace());
        let out = self.node.run(&argv);
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }

    /// Reservations in the whereabouts store as (ip, container ID).
    fn reservations(&self) -> Vec<(String, String)> {
        let out = Command::new(ours("multihome-ipam"))
            .arg("--store-dir")
            .arg(self.store())
            .arg("list")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[1].to_string(), f[2].to_string())
            })
            .collect()
    }
}

fn conf(bridge: &str, extra: Value) -> Value {
    let mut c =
        json!({"cniVersion": "1.1.0", "name": "br-net", "type": "bridge", "bridge": bridge});
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    c
}

fn static_ipam(addr: &str) -> Value {
    json!({"type": "static", "addresses": [{"address": addr}]})
}

fn pings(from: &Netns, to: &str) -> bool {
    from.run(&["ping", "-c", "1", "-W", "1", "-q", to])
        .status
        .success()
}

fn mac_of(ns: &Netns, ifname: &str) -> String {
    let v: Value =
        serde_json::from_str(&ns.run_ok(&["ip", "-j", "link", "show", "dev", ifname])).unwrap();
    v[0]["address"].as_str().unwrap().to_string()
}

#[test]
fn containers_on_one_bridge_reach_each_other_and_the_gateway() {
    let lab = Lab::new();
    let (a, b) = (Netns::new("br-a"), Netns::new("br-b"));
    let ca = conf(
        "br0",
        json!({"isGateway": true, "ipam": static_ipam("10.60.0.2/24")}),
    );
    let cb = conf(
        "br0",
        json!({"isGateway": true, "ipam": static_ipam("10.60.0.3/24")}),
    );
    let ra = lab.add("a", &a, &ca);
    assert!(ra.ok(), "{ra}");
    assert!(lab.add("b", &b, &cb).ok());
    let r = ra.json();
    assert_eq!(r["interfaces"][0]["name"], "br0");
    assert!(r["interfaces"][1]["name"]
        .as_str()
        .unwrap()
        .starts_with("veth"));
    assert_eq!(
        r["interfaces"][2]["sandbox"],
        a.path().display().to_string()
    );
    assert_eq!(r["ips"][0]["interface"], 2);
    assert_eq!(r["ips"][0]["gateway"], "10.60.0.1");
    assert_eq!(
        lab.node
            .addresses("br0")
            .iter()
            .filter(|x| x.starts_with("10."))
            .count(),
        1
    );
    assert!(pings(&a, "10.60.0.3"), "container to container");
    assert!(pings(&b, "10.60.0.1"), "container to gateway");
    assert_eq!(
        lab.node
            .run_ok(&["cat", "/proc/sys/net/ipv4/ip_forward"])
            .trim(),
        "1"
    );
    assert!(lab.del("a", &a, &ca).ok());
    assert!(!a.has_link("net1"));
    assert_eq!(lab.ports_of("br0").len(), 1, "only b's port remains");
}

#[test]
fn default_gateway_mode_adds_a_default_route_via_the_bridge() {
    let lab = Lab::new();
    let a = Netns::new("br-dg");
    let c = conf(
        "br1",
        json!({"isDefaultGateway": true, "ipam": {"type": "static",
        "addresses": [{"address": "10.61.0.2/24"}, {"address": "fd61::2/64"}]}}),
    );
    let out = lab.add("dg", &a, &c);
    assert!(out.ok(), "{out}");
    let routes = a.run_ok(&["ip", "route", "show", "default"]);
    assert!(
        routes.contains("default via 10.61.0.1 dev net1"),
        "{routes}"
    );
    let routes6 = a.run_ok(&["ip", "-6", "route", "show", "default"]);
    assert!(
        routes6.contains("default via fd61::1 dev net1"),
        "{routes6}"
    );
    assert!(lab
        .node
        .addresses("br1")
        .contains(&"fd61::1/64".to_string()));
    // No DAD: the address is usable at once (reference #680).
    assert_eq!(
        a.run_ok(&["cat", "/proc/sys/net/ipv6/conf/net1/accept_dad"])
            .trim(),
        "0"
    );
    assert!(!a
        .run_ok(&["ip", "-6", "addr", "show", "dev", "net1"])
        .contains("tentative"));
}

#[test]
fn l2_mode_attaches_without_addresses_and_check_works_without_ipam() {
    let lab = Lab::new();
    let a = Netns::new("br-l2");
    let mut c = conf("br2", json!({}));
    let out = lab.add("l2", &a, &c);
    assert!(out.ok(), "{out}");
    assert!(out.json()["ips"]
        .as_array()
        .map(|v| v.is_empty())
        .unwrap_or(true));
    assert!(a
        .run_ok(&["ip", "link", "show", "net1"])
        .contains("state UP"));
    c["prevResult"] = out.json();
    let check = lab.run("CHECK", "l2", &a.path().display().to_string(), "", &c);
    assert!(
        check.ok(),
        "the reference fails this (empty IPAM type): {check}"
    );
}

#[test]
fn check_fails_after_a_deliberate_breakage() {
    let lab = Lab::new();
    let a = Netns::new("br-ck");
    let mut c = conf("br3", json!({"ipam": static_ipam("10.62.0.2/24")}));
    let out = lab.add("ck", &a, &c);
    assert!(out.ok(), "{out}");
    c["prevResult"] = out.json();
    let ctr = a.path().display().to_string();
    assert!(lab.run("CHECK", "ck", &ctr, "", &c).ok());
    a.run_ok(&["ip", "addr", "del", "10.62.0.2/24", "dev", "net1"]);
    let broken = lab.run("CHECK", "ck", &ctr, "", &c);
    assert_eq!(broken.error_code(), Some(100), "{broken}");
    assert!(broken.json()["msg"]
        .as_str()
        .unwrap()
        .contains("10.62.0.2/24"));
    a.run_ok(&["ip", "addr", "add", "10.62.0.2/24", "dev", "net1"]);
    let host = out.json()["interfaces"][1]["name"]
        .as_str()
        .unwrap()
        .to_string();
    lab.ip(&["link", "set", &host, "nomaster"]);
    let detached = lab.run("CHECK", "ck", &ctr, "", &c);
    assert_eq!(detached.error_code(), Some(100), "{detached}");
    assert!(
        detached.json()["msg"]
            .as_str()
            .unwrap()
            .contains("not a port"),
        "{detached}"
    );
}

#[test]
fn mac_mtu_hairpin_and_port_isolation_are_applied() {
    let lab = Lab::new();
    let a = Netns::new("br-opt");
    let mut c = conf(
        "br4",
        json!({"mtu": 1400, "hairpinMode": true, "portIsolation": true,
        "ipam": static_ipam("10.63.0.2/24"), "args": {"cni": {"mac": "0a:58:0a:3f:00:02"}}}),
    );
    c["runtimeConfig"] = json!({"mac": "0a:58:0a:3f:00:99"});
    let out = lab.run(
        "ADD",
        "opt",
        &a.path().display().to_string(),
        "IgnoreUnknown=1;MAC=0a:58:0a:3f:00:01",
        &c,
    );
    assert!(out.ok(), "{out}");
    assert_eq!(
        mac_of(&a, "net1"),
        "0a:58:0a:3f:00:99",
        "runtimeConfig.mac wins over args.cni and CNI_ARGS"
    );
    assert_eq!(out.json()["interfaces"][2]["mac"], "0a:58:0a:3f:00:99");
    assert!(a
        .run_ok(&["ip", "link", "show", "net1"])
        .contains("mtu 1400"));
    let port = &lab.ports_of("br4")[0];
    assert_eq!(port["mtu"], 1400);
    assert_eq!(port["linkinfo"]["info_slave_data"]["hairpin"], true);
    assert_eq!(port["linkinfo"]["info_slave_data"]["isolated"], true);
    let bridge = lab
        .links()
        .into_iter()
        .find(|l| l["ifname"] == "br4")
        .unwrap();
    assert_eq!(bridge["mtu"], 1400, "a bridge created by ADD gets the mtu");
}

#[test]
fn isolated_ports_do_not_reach_each_other() {
    let lab = Lab::new();
    let (a, b) = (Netns::new("br-iso-a"), Netns::new("br-iso-b"));
    let ca = conf(
        "br5",
        json!({"portIsolation": true, "ipam": static_ipam("10.64.0.2/24")}),
    );
    let cb = conf(
        "br5",
        json!({"portIsolation": true, "ipam": static_ipam("10.64.0.3/24")}),
    );
    assert!(lab.add("a", &a, &ca).ok());
    assert!(lab.add("b", &b, &cb).ok());
    assert!(!pings(&a, "10.64.0.3"), "isolated ports must not talk");
}

#[test]
fn promisc_mode_sets_the_bridge_promiscuous_and_conflicts_with_hairpin() {
    let lab = Lab::new();
    let a = Netns::new("br-pr");
    let out = lab.add("pr", &a, &conf("br6", json!({"promiscMode": true})));
    assert!(out.ok(), "{out}");
    assert!(lab.ip(&["link", "show", "br6"]).contains("PROMISC"));
    let bad = lab.add(
        "pr2",
        &a,
        &conf("br6b", json!({"promiscMode": true, "hairpinMode": true})),
    );
    assert_eq!(bad.error_code(), Some(7), "{bad}");
    assert!(
        !lab.node.has_link("br6b"),
        "rejected before touching the node"
    );
}

#[test]
fn disable_container_interface_leaves_it_down_and_refuses_ipam() {
    let lab = Lab::new();
    let a = Netns::new("br-dis");
    let out = lab.add(
        "dis",
        &a,
        &conf("br7", json!({"disableContainerInterface": true})),
    );
    assert!(out.ok(), "{out}");
    assert!(a
        .run_ok(&["ip", "link", "show", "net1"])
        .contains("state DOWN"));
    let bad = lab.add(
        "dis2",
        &a,
        &conf(
            "br7",
            json!({"disableContainerInterface": true, "ipam": static_ipam("10.65.0.2/24")}),
        ),
    );
    assert_eq!(bad.error_code(), Some(7), "{bad}");
    assert!(bad.json()["msg"]
        .as_str()
        .unwrap()
        .contains("disableContainerInterface"));
}

#[test]
fn enabledad_turns_duplicate_address_detection_on() {
    let lab = Lab::new();
    let a = Netns::new("br-dad");
    let out = lab.add(
        "dad",
        &a,
        &conf(
            "br8",
            json!({"enabledad": true, "ipam": static_ipam("fd66::2/64")}),
        ),
    );
    assert!(out.ok(), "{out}");
    assert_eq!(
        a.run_ok(&["cat", "/proc/sys/net/ipv6/conf/net1/accept_dad"])
            .trim(),
        "1"
    );
    assert_eq!(
        a.run_ok(&["cat", "/proc/sys/net/ipv6/conf/net1/enhanced_dad"])
            .trim(),
        "1"
    );
}

#[test]
fn force_address_replaces_a_different_gateway_address_and_without_it_add_is_undone() {
    let lab = Lab::new();
    let a = Netns::new("br-fa");
    lab.ip(&["link", "add", "name", "br9", "type", "bridge"]);
    lab.ip(&["addr", "add", "10.67.9.9/24", "dev", "br9"]);
    let wb = json!({"type": "whereabouts", "range": "10.67.0.0/24", "store_dir": lab.store()});
    let refused = lab.add(
        "fa",
        &a,
        &conf(
            "br9",
            json!({"isGateway": true, "macspoofchk": true, "ipam": wb}),
        ),
    );
    assert_eq!(refused.error_code(), Some(7), "{refused}");
    assert!(
        refused.json()["msg"]
            .as_str()
            .unwrap()
            .contains("forceAddress"),
        "{refused}"
    );
    // Everything the failed ADD did is undone (the reference leaves the veth, #29).
    assert!(!a.has_link("net1"));
    assert!(lab.veths().is_empty(), "no veth left: {:?}", lab.veths());
    assert!(
        lab.reservations().is_empty(),
        "IPAM released: {:?}",
        lab.reservations()
    );
    assert!(!lab.nft("list table bridge nat").contains("cni-br-iface-fa"));
    assert_eq!(
        lab.node
            .addresses("br9")
            .iter()
            .filter(|x| x.starts_with("10."))
            .collect::<Vec<_>>(),
        ["10.67.9.9/24"]
    );

    let forced = lab.add(
        "fa",
        &a,
        &conf(
            "br9",
            json!({"isGateway": true, "forceAddress": true, "ipam": wb}),
        ),
    );
    assert!(forced.ok(), "{forced}");
    let v4: Vec<String> = lab
        .node
        .addresses("br9")
        .into_iter()
        .filter(|x| x.starts_with("10."))
        .collect();
    assert_eq!(v4, ["10.67.0.1/24"]);
}

#[test]
fn mac_spoof_check_drops_frames_with_a_forged_source_and_del_removes_its_chains() {
    let lab = Lab::new();
    let (a, b) = (Netns::new("br-sp-a"), Netns::new("br-sp-b"));
    let ca = conf(
        "br10",
        json!({"macspoofchk": true, "ipam": static_ipam("10.68.0.2/24")}),
    );
    let cb = conf("br10", json!({"ipam": static_ipam("10.68.0.3/24")}));
    assert!(lab.add("spoofer", &a, &ca).ok());
    assert!(lab.add("victim", &b, &cb).ok());
    let rules = lab.nft("list table bridge nat");
    assert!(
        rules.contains("chain cni-br-iface-spoofer-net1-mac"),
        "{rules}"
    );
    assert!(
        rules.contains("comment \"macspoofchk-spoofer-net1\""),
        "{rules}"
    );
    assert!(pings(&a, "10.68.0.3"), "the container's own MAC passes");
    a.run_ok(&["ip", "link", "set", "net1", "address", "0a:58:de:ad:be:ef"]);
    b.run_ok(&["ip", "neigh", "flush", "all"]);
    assert!(
        !pings(&a, "10.68.0.3"),
        "frames with a forged source MAC must not arrive"
    );
    assert!(lab.del("spoofer", &a, &ca).ok());
    assert!(!lab.nft("list table bridge nat").contains("spoofer"));
}

#[test]
fn masquerade_rules_exist_after_add_and_are_gone_after_del() {
    let lab = Lab::new();
    let a = Netns::new("br-mq");
    let c = conf(
        "br11",
        json!({"isGateway": true, "ipMasq": true, "ipam": static_ipam("10.69.0.2/24")}),
    );
    assert!(lab.add("mq", &a, &c).ok());
    let rules = lab.nft("list table inet cni_plugins_masquerade");
    assert!(
        rules.contains("ip saddr 10.69.0.2 ip daddr != 10.69.0.0/24 masquerade"),
        "{rules}"
    );
    assert!(lab.del("mq", &a, &c).ok());
    assert!(!lab
        .nft("list table inet cni_plugins_masquerade")
        .contains("10.69.0.2"));
}

#[test]
fn del_without_the_netns_still_releases_ipam_and_removes_rules() {
    let lab = Lab::new();
    let a = Netns::new("br-gone");
    let wb = json!({"type": "whereabouts", "range": "10.70.0.0/24", "store_dir": lab.store()});
    let c = conf(
        "br12",
        json!({"isGateway": true, "ipMasq": true, "macspoofchk": true, "ipam": wb}),
    );
    assert!(lab.add("gone", &a, &c).ok());
    assert_eq!(lab.reservations().len(), 1);
    let path = a.path().display().to_string();
    drop(a);
    for netns in [path.as_str(), ""] {
        let out = lab.run("DEL", "gone", netns, "", &c);
        assert!(out.ok(), "DEL with CNI_NETNS={netns:?}: {out}");
    }
    assert!(lab.reservations().is_empty());
    assert!(
        !lab.nft("list table bridge nat").contains("gone"),
        "spoof-check chains removed (reference #810)"
    );
    assert!(!lab
        .nft("list table inet cni_plugins_masquerade")
        .contains("10.70.0."));
}

#[test]
fn del_succeeds_where_only_add_would_refuse_the_input_and_still_cleans_up() {
    // Multus' rollback DEL and the runtime's teardown come with the config ADD refused: they
    // must succeed (the reference returns 0), and still remove what an earlier ADD made.
    let lab = Lab::new();
    let wb = json!({"type": "whereabouts", "range": "10.71.0.0/24", "store_dir": lab.store()});
    let good = conf("br13", json!({"macspoofchk": true, "ipam": wb}));
    let faults = [
        json!({"runtimeConfig": {"mac": "01:00:5e:00:00:01"}}),
        json!({"args": {"cni": {"mac": "not-a-mac"}}}),
        json!({"mtu": 10}),
        json!({"hairpinMode": true, "promiscMode": true}),
        json!({"bridge": "a-bridge-name-far-too-long"}),
    ];
    for (i, fault) in faults.iter().enumerate() {
        let ctr = Netns::new("br-delbad");
        let cid = format!("delbad{i}");
        assert!(lab.add(&cid, &ctr, &good).ok());
        let mut bad = good.clone();
        bad.as_object_mut()
            .unwrap()
            .extend(fault.as_object().cloned().unwrap());
        let refused = lab.add(&format!("{cid}-again"), &Netns::new("br-delbad2"), &bad);
        assert_eq!(
            refused.error_code(),
            Some(7),
            "ADD refuses {fault}: {refused}"
        );
        let del = lab.del(&cid, &ctr, &bad);
        assert!(del.ok(), "DEL with {fault}: {del}");
        assert!(
            !ctr.has_link("net1"),
            "{fault}: the container interface is gone"
        );
        assert!(
            !lab.nft("list table bridge nat").contains(&cid),
            "{fault}: its spoof-check chains are gone"
        );
        assert!(
            lab.reservations().is_empty(),
            "{fault}: its address is released: {:?}",
            lab.reservations()
        );
    }
}

#[test]
fn del_where_cni_netns_is_a_leftover_ordinary_file_is_a_namespace_that_is_gone() {
    let lab = Lab::new();
    let ctr = Netns::new("br-file");
    let wb = json!({"type": "whereabouts", "range": "10.72.0.0/24", "store_dir": lab.store()});
    let c = conf("br14", json!({"macspoofchk": true, "ipam": wb}));
    assert!(lab.add("leftover", &ctr, &c).ok());
    assert_eq!(lab.reservations().len(), 1);
    let file = lab.scratch.join("netns-leftover");
    std::fs::write(&file, b"").unwrap();
    let del = lab.run("DEL", "leftover", &file.display().to_string(), "", &c);
    assert!(del.ok(), "{del}");
    assert!(lab.reservations().is_empty());
    assert!(!lab.nft("list table bridge nat").contains("leftover"));
}

#[test]
fn gc_removes_what_an_attachment_whose_del_never_came_left_behind() {
    let lab = Lab::new();
    let (a, b) = (Netns::new("br-gc-a"), Netns::new("br-gc-b"));
    let wb = json!({"type": "whereabouts", "range": "10.71.0.0/24", "store_dir": lab.store()});
    let c = conf(
        "br13",
        json!({"isGateway": true, "ipMasq": true, "macspoofchk": true, "ipam": wb}),
    );
    assert!(lab.add("keep", &a, &c).ok());
    assert!(lab.add("leak", &b, &c).ok());
    assert_eq!(lab.ports_of("br13").len(), 2);
    let mut gc = c.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "net1"}]);
    let out = lab.run("GC", "", "", "", &gc);
    assert!(out.ok(), "{out}");
    assert_eq!(
        lab.ports_of("br13").len(),
        1,
        "the leaked attachment's veth is gone"
    );
    assert!(!b.has_link("net1"));
    assert!(a.has_link("net1"));
    let ips: Vec<String> = lab.reservations().into_iter().map(|(_, cid)| cid).collect();
    assert_eq!(ips, ["keep"]);
    let spoof = lab.nft("list table bridge nat");
    assert!(
        spoof.contains("cni-br-iface-keep-net1") && !spoof.contains("cni-br-iface-leak-net1"),
        "{spoof}"
    );
    let masq = lab.nft("list table inet cni_plugins_masquerade");
    assert_eq!(masq.matches(" masquerade comment").count(), 1, "{masq}");
    // Another network's attachments on the same bridge are not this GC's business.
    let other = conf(
        "br13",
        json!({"name": "other-net", "ipam": static_ipam("10.71.1.2/24")}),
    );
    let mut other = other;
    other["name"] = json!("other-net");
    assert!(lab.add("other", &b, &other).ok());
    assert!(lab.run("GC", "", "", "", &gc).ok());
    assert_eq!(lab.ports_of("br13").len(), 2);
}

#[test]
fn thirty_two_concurrent_adds_then_dels_leave_nothing() {
    let lab = Lab::new();
    let ctrs: Vec<Netns> = (0..32).map(|i| Netns::new(&format!("br-c{i}"))).collect();
    let lab = &lab;
    let conf_of = |i: usize| {
        conf(
            "br14",
            json!({"ipam": static_ipam(&format!("10.72.0.{}/24", i + 2))}),
        )
    };
    std::thread::scope(|s| {
        let handles: Vec<_> = ctrs
            .iter()
            .enumerate()
            .map(|(i, c)| s.spawn(move || lab.add(&format!("c{i}"), c, &conf_of(i))))
            .collect();
        for h in handles {
            let out = h.join().unwrap();
            assert!(out.ok(), "{out}");
        }
    });
    assert_eq!(lab.ports_of("br14").len(), 32);
    std::thread::scope(|s| {
        let handles: Vec<_> = ctrs
            .iter()
            .enumerate()
            .map(|(i, c)| s.spawn(move || lab.del(&format!("c{i}"), c, &conf_of(i))))
            .collect();
        for h in handles {
            let out = h.join().unwrap();
            assert!(out.ok(), "{out}");
        }
    });
    assert!(lab.ports_of("br14").is_empty());
    assert!(lab.veths().is_empty());
}

#[test]
fn vlans_fail_clearly_on_a_kernel_without_bridge_vlan_filtering_and_change_nothing() {
    let lab = Lab::new();
    let a = Netns::new("br-vl");
    let kernel_has_it = lab
        .node
        .run(&[
            "ip",
            "link",
            "add",
            "name",
            "probe0",
            "type",
            "bridge",
            "vlan_filtering",
            "1",
        ])
        .status
        .success();
    assert!(
        !kernel_has_it,
        "this kernel supports bridge VLAN filtering: the VLAN tests belong to the kernel lane (make test-kernel)"
    );
    for (key, extra) in [
        ("vlan", json!({"vlan": 100})),
        (
            "vlanTrunk",
            json!({"vlanTrunk": [{"minID": 100, "maxID": 110}]}),
        ),
    ] {
        let out = lab.add("vl", &a, &conf("br15", extra.clone()));
        assert_eq!(out.error_code(), Some(2), "{key}: {out}");
        let msg = out.json()["msg"].as_str().unwrap().to_string();
        assert!(msg.contains(key) && msg.contains("VLAN filtering"), "{msg}");
        assert!(!lab.node.has_link("br15"), "{key}: no bridge created");
        assert!(!a.has_link("net1"), "{key}: nothing in the container");
    }
    // An existing bridge is not touched either.
    lab.ip(&["link", "add", "name", "br15", "type", "bridge"]);
    let out = lab.add("vl", &a, &conf("br15", json!({"vlan": 100})));
    assert_eq!(out.error_code(), Some(2), "{out}");
    assert!(lab.veths().is_empty());
}

#[test]
fn bad_input_is_code_7_naming_the_key_and_nothing_is_created() {
    let lab = Lab::new();
    let a = Netns::new("br-bad");
    for (extra, needle) in [
        (json!({"vlan": 5000}), "vlan 5000"),
        (json!({"vlanTrunk": [{"id": 0}]}), "vlanTrunk[0].id"),
        (json!({"vlan": 10, "vlanTrunk": [{"id": 20}]}), "vlanTrunk"),
        (json!({"mtu": 20}), "mtu 20"),
        (
            json!({"ipMasqBackend": "pf", "ipMasq": true}),
            "ipMasqBackend",
        ),
        (json!({"args": {"cni": {"mac": "zz:zz"}}}), "args.cni.mac"),
        (
            json!({"runtimeConfig": {"mac": "01:00:5e:00:00:01"}}),
            "runtimeConfig.mac",
        ),
        (json!({"bridge": "a-name-far-too-long"}), "bridge"),
        (json!({"isGateway": "yes"}), "isGateway"),
    ] {
        let out = lab.add("bad", &a, &conf("br16", extra.clone()));
        assert_eq!(out.error_code(), Some(7), "{extra}: {out}");
        let msg = out.json()["msg"].as_str().unwrap().to_string();
        assert!(
            msg.contains(needle),
            "{extra}: message {msg:?} should name {needle:?}"
        );
    }
    assert!(!lab.node.has_link("br16"));
    assert!(!a.has_link("net1"));
    lab.ip(&[
        "link", "add", "name", "br17", "type", "veth", "peer", "name", "br17p",
    ]);
    let out = lab.add("bad", &a, &conf("br17", json!({})));
    assert_eq!(out.error_code(), Some(7), "{out}");
    assert!(out.json()["msg"].as_str().unwrap().contains("not a bridge"));
    let status = Invocation::new(ours("bridge"))
        .in_node(&lab.node)
        .vars(&CniVars {
            path: lab.plugins.path().display().to_string(),
            ..CniVars::command("STATUS")
        })
        .stdin_json(&conf("br17", json!({})))
        .run();
    assert_eq!(
        status.error_code(),
        Some(50),
        "STATUS names the unusable bridge: {status}"
    );
}

#[test]
fn an_interface_name_already_taken_in_the_container_is_refused_untouched() {
    let lab = Lab::new();
    let a = Netns::new("br-dup");
    a.run_ok(&["ip", "link", "add", "name", "net1", "type", "bridge"]);
    let out = lab.add(
        "dup",
        &a,
        &conf("br18", json!({"ipam": static_ipam("10.73.0.2/24")})),
    );
    assert_eq!(out.error_code(), Some(4), "{out}");
    assert!(out.json()["msg"]
        .as_str()
        .unwrap()
        .contains("CNI_IFNAME=net1"));
    assert!(lab.veths().is_empty());
    assert!(a.addresses("net1").iter().all(|x| !x.starts_with("10.")));
}

use conformance_tests::plugin::nad_config;

#[test]
fn the_documentations_bridge_nads_are_valid_and_attach_as_written() {
    for file in [
        "nad-bridge-network.yaml",
        "nad-private-overlay.yaml",
        "nad-ovn-localnet.yaml",
    ] {
        let c = nad_config(file);
        assert!(
            c["name"].is_string() && c["type"].is_string(),
            "{file}: {c}"
        );
    }
    let lab = Lab::new();
    let a = Netns::new("br-nad");
    // As written, except the store directory: a test keeps its state in its own scratch space.
    let mut c = nad_config("nad-bridge-network-whereabouts.yaml");
    c["ipam"]["store_dir"] = json!(lab.store());
    c["runtimeConfig"] = json!({"mac": "02:00:00:00:00:42"});
    lab.ip(&["link", "add", "name", "br1", "type", "bridge"]);
    let out = lab.add("nad", &a, &c);
    assert!(out.ok(), "{out}");
    assert_eq!(
        out.json()["ips"][0]["address"],
        "192.0.2.2/24",
        "the gateway 192.0.2.1 is never handed out"
    );
    assert_eq!(mac_of(&a, "net1"), "02:00:00:00:00:42");
    assert!(lab
        .nft("list table bridge nat")
        .contains("cni-br-iface-nad-net1"));
    assert!(lab.del("nad", &a, &c).ok());
    assert!(lab.reservations().is_empty());
}
