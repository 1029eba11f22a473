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
    // A port that is not isolated is reached from both: the path through the bridge works.
    let c = Netns::new("br-iso-c");
    let cc = conf("br5", json!({"ipam": static_ipam("10.64.0.4/24")}));
    assert!(lab.add("c", &c, &cc).ok());
    assert!(pings(&a, "10.64.0.4") && pings(&b, "10.64.0.4"));
    assert!(!pings(&a, "10.64.0.3"), "isolated ports must not talk");
    assert!(!pings(&b, "10.64.0.2"), "isolated ports must not talk");
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
    let wb = json!({"type": "whereabouts", "range": "10.67.0.0/24", "gateway": "10.67.0.1", "store_dir": lab.store()});
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
    let wb = json!({"type": "whereabouts", "range": "10.70.0.0/24", "gateway": "10.70.0.1", "store_dir": lab.store()});
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
    let wb = json!({"type": "whereabouts", "range": "10.71.0.0/24", "gateway": "10.71.0.1", "store_dir": lab.store()});
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
fn vlans_attach_or_fail_clearly_as_the_kernel_allows_and_a_refusal_changes_nothing() {
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
    if kernel_has_it {
        // Debian's stock kernel: VLANs attach (the kernel lane tests them in depth).
        lab.ip(&["link", "del", "probe0"]);
        let out = lab.add("vl", &a, &conf("br15", json!({"vlan": 100})));
        assert!(out.ok(), "{out}");
        let port = out.json()["interfaces"][1]["name"]
            .as_str()
            .unwrap()
            .to_string();
        let vlans = lab
            .node
            .run_ok(&["bridge", "-j", "vlan", "show", "dev", &port]);
        let v: Value = serde_json::from_str(&vlans).unwrap();
        let pvid = v[0]["vlans"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| {
                e["flags"]
                    .as_array()
                    .is_some_and(|f| f.iter().any(|x| x == "PVID"))
            })
            .map(|e| e["vlan"].clone());
        assert_eq!(pvid, Some(json!(100)), "{vlans}");
        return;
    }
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

/// A wrapper that runs `bridge` where `nft` cannot run: in a private mount namespace with
/// /dev/null over the nft binary (as on a node without nftables).
fn without_nft(lab: &Lab) -> PathBuf {
    let nft = ["/usr/sbin/nft", "/sbin/nft", "/usr/bin/nft"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())
        .expect("nftables is installed by make deps");
    let path = lab.scratch.join("bridge-without-nft");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nexec unshare -m sh -c 'mount --bind /dev/null {nft} && exec \"$0\"' {}\n",
            ours("bridge").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

impl Lab {
    fn run_with(
        &self,
        program: &std::path::Path,
        command: &str,
        cid: &str,
        ctr: &Netns,
        conf: &Value,
    ) -> Outcome {
        let vars = CniVars {
            command: command.into(),
            container_id: cid.into(),
            netns: ctr.path().display().to_string(),
            ifname: "net1".into(),
            args: String::new(),
            path: self.plugins.path().display().to_string(),
        };
        Invocation::new(program)
            .in_node(&self.node)
            .vars(&vars)
            .stdin_json(conf)
            .run()
    }

    fn sysctl(&self, key: &str) -> String {
        self.node
            .run_ok(&["cat", &format!("/proc/sys/{key}")])
            .trim()
            .to_string()
    }

    /// The node's addresses on `link` in `prefix` (e.g. "10.80.").
    fn addresses_in(&self, link: &str, prefix: &str) -> Vec<String> {
        self.node
            .addresses(link)
            .into_iter()
            .filter(|a| a.starts_with(prefix))
            .collect()
    }

    /// Nothing of attachment `cid` on the node: no veth, chains, masquerade rules or reservation.
    fn assert_nothing_of(&self, cid: &str, ctr: &Netns, what: &str) {
        assert!(
            !ctr.has_link("net1"),
            "{what}: the container interface is gone"
        );
        assert!(
            self.veths().is_empty(),
            "{what}: no veth left: {:?}",
            self.veths()
        );
        let spoof = self.nft("list table bridge nat");
        assert!(
            !spoof.contains(&format!("cni-br-iface-{cid}")),
            "{what}: {spoof}"
        );
        let masq = self.nft("list table inet cni_plugins_masquerade");
        assert!(!masq.contains(" masquerade comment"), "{what}: {masq}");
        if self.store().exists() {
            assert!(
                self.reservations().is_empty(),
                "{what}: {:?}",
                self.reservations()
            );
        }
    }
}

#[test]
fn a_result_the_asked_version_cannot_carry_is_refused_before_anything_is_made() {
    let lab = Lab::new();
    let a = Netns::new("br-ver");
    // L2 at 0.2.0: a result without addresses has no 0.2.0 form.
    let mut l2 = conf("br20", json!({"macspoofchk": true}));
    l2["cniVersion"] = json!("0.2.0");
    let out = lab.add("ver", &a, &l2);
    assert_eq!(out.error_code(), Some(1), "{out}");
    assert!(
        out.json()["msg"].as_str().unwrap().contains("0.2.0"),
        "{out}"
    );
    lab.assert_nothing_of("ver", &a, "L2 at 0.2.0");
    assert!(!lab.node.has_link("br20"), "not even the bridge was made");
    // Two IPv4 ranges at 0.2.0: two reservations, one reportable address.
    let wb = json!({"type": "whereabouts", "store_dir": lab.store(),
        "ipRanges": [{"range": "10.80.0.0/24"}, {"range": "10.80.1.0/24"}]});
    let mut two = conf("br20", json!({"ipam": wb}));
    two["cniVersion"] = json!("0.2.0");
    let out = lab.add("ver", &a, &two);
    assert_eq!(out.error_code(), Some(1), "{out}");
    lab.assert_nothing_of("ver", &a, "two IPv4 ranges at 0.2.0");
    // The same at 0.3.0 attaches, with both addresses.
    two["cniVersion"] = json!("0.3.0");
    let out = lab.add("ver", &a, &two);
    assert!(out.ok(), "{out}");
    assert_eq!(out.json()["ips"].as_array().unwrap().len(), 2);
    assert_eq!(lab.reservations().len(), 2);
}

#[test]
fn is_gateway_without_an_ipam_gateway_never_takes_an_address_ipam_hands_out() {
    let lab = Lab::new();
    let (a, b) = (Netns::new("br-gw-a"), Netns::new("br-gw-b"));
    for (range, gw) in [
        ("10.81.0.0/24", "10.81.0.1"),
        ("fd00:81::/64", "fd00:81::1"),
    ] {
        let wb = json!({"type": "whereabouts", "range": range, "store_dir": lab.store()});
        let out = lab.add(
            "gw",
            &a,
            &conf("br21", json!({"isGateway": true, "ipam": wb})),
        );
        assert_eq!(out.error_code(), Some(7), "{range}: {out}");
        let msg = out.json()["msg"].as_str().unwrap().to_string();
        assert!(msg.contains("ipam.gateway") && msg.contains(gw), "{msg}");
        lab.assert_nothing_of("gw", &a, range);
        let prefix = &range[..6];
        assert!(
            lab.addresses_in("br21", prefix).is_empty(),
            "{range}: no gateway on the bridge"
        );
    }
    // With ipam.gateway the gateway is kept out of the range and the containers reach it.
    let wb = json!({"type": "whereabouts", "range": "10.81.0.0/24", "gateway": "10.81.0.1",
        "store_dir": lab.store()});
    let c = conf("br21", json!({"isGateway": true, "ipam": wb}));
    let first = lab.add("gw-a", &a, &c);
    assert!(first.ok(), "{first}");
    assert_eq!(first.json()["ips"][0]["address"], "10.81.0.2/24");
    assert!(lab.add("gw-b", &b, &c).ok());
    assert_eq!(lab.addresses_in("br21", "10.81."), ["10.81.0.1/24"]);
    assert!(pings(&a, "10.81.0.1") && pings(&b, "10.81.0.2"));
}

#[test]
fn a_failed_add_takes_back_the_gateway_address_and_forwarding_it_made() {
    let lab = Lab::new();
    let a = Netns::new("br-undo-a");
    let forward_before = lab.sysctl("net/ipv4/ip_forward");
    // isGateway + ipMasq where nft cannot run.
    let wb = json!({"type": "whereabouts", "range": "10.82.0.0/24", "gateway": "10.82.0.1",
        "store_dir": lab.store()});
    let c = conf(
        "br22",
        json!({"isGateway": true, "ipMasq": true, "ipam": wb}),
    );
    let out = lab.run_with(&without_nft(&lab), "ADD", "undo", &a, &c);
    assert!(!out.ok(), "{out}");
    assert!(out.json()["msg"].as_str().unwrap().contains("nft"), "{out}");
    lab.assert_nothing_of("undo", &a, "ipMasq without nft");
    assert!(
        lab.addresses_in("br22", "10.82.").is_empty(),
        "no gateway left on br22"
    );
    assert_eq!(
        lab.sysctl("net/ipv4/ip_forward"),
        forward_before,
        "ip_forward as it was"
    );

    // A gateway added, then the IPv6 one refused: the IPv4 gateway goes too.
    lab.ip(&["addr", "add", "fd00:82::9/48", "dev", "br22"]);
    let ds = json!({"type": "static", "addresses": [
        {"address": "10.82.0.5/24", "gateway": "10.82.0.1"},
        {"address": "fd00:82::5/64", "gateway": "fd00:82::1"}]});
    let c = conf("br22", json!({"isGateway": true, "ipam": ds}));
    let out = lab.add("undo", &a, &c);
    assert_eq!(out.error_code(), Some(7), "{out}");
    assert!(
        out.json()["msg"].as_str().unwrap().contains("forceAddress"),
        "{out}"
    );
    lab.assert_nothing_of("undo", &a, "IPv6 gateway refused");
    assert!(
        lab.addresses_in("br22", "10.82.").is_empty(),
        "the IPv4 gateway was taken back"
    );
    assert_eq!(lab.sysctl("net/ipv4/ip_forward"), forward_before);

    // While another attachment uses the gateway, a failed ADD leaves it: it still reaches it.
    let b = Netns::new("br-undo-b");
    let keep = conf(
        "br22",
        json!({"isGateway": true, "ipam": static_ipam("10.82.0.7/24")}),
    );
    assert!(lab.add("keep", &b, &keep).ok());
    assert!(pings(&b, "10.82.0.1"));
    let out = lab.add("undo", &a, &c);
    assert_eq!(out.error_code(), Some(7), "{out}");
    assert_eq!(lab.addresses_in("br22", "10.82."), ["10.82.0.1/24"]);
    assert!(
        pings(&b, "10.82.0.1"),
        "the other attachment still reaches its gateway"
    );
    assert!(!a.has_link("net1"));
}

#[test]
fn force_address_replacing_an_address_of_the_gateways_subnet_keeps_the_gateway() {
    let lab = Lab::new();
    let a = Netns::new("br-force");
    lab.ip(&["link", "add", "name", "br23", "type", "bridge"]);
    lab.ip(&["addr", "add", "10.83.0.254/24", "dev", "br23"]);
    let c = conf(
        "br23",
        json!({"isGateway": true, "forceAddress": true,
            "ipam": {"type": "static", "addresses": [{"address": "10.83.0.5/24", "gateway": "10.83.0.1"}]}}),
    );
    let out = lab.add("force", &a, &c);
    assert!(out.ok(), "{out}");
    assert_eq!(lab.addresses_in("br23", "10.83."), ["10.83.0.1/24"]);
    assert!(pings(&a, "10.83.0.1"), "the container reaches the gateway");
    assert!(!pings(&a, "10.83.0.254"), "the replaced address is gone");
}

#[test]
fn a_del_whose_path_lacks_the_sbin_directories_still_removes_the_rules() {
    let lab = Lab::new();
    let a = Netns::new("br-path");
    let wb = json!({"type": "whereabouts", "range": "10.84.0.0/24", "store_dir": lab.store()});
    let c = conf(
        "br24",
        json!({"macspoofchk": true, "ipMasq": true, "ipam": wb}),
    );
    assert!(lab.add("path", &a, &c).ok());
    assert!(lab
        .nft("list table bridge nat")
        .contains("cni-br-iface-path-net1"));
    let vars = CniVars {
        command: "DEL".into(),
        container_id: "path".into(),
        netns: a.path().display().to_string(),
        ifname: "net1".into(),
        args: String::new(),
        path: lab.plugins.path().display().to_string(),
    };
    let out = Invocation::new(ours("bridge"))
        .in_node(&lab.node)
        .vars(&vars)
        .env("PATH", "/usr/bin:/bin")
        .stdin_json(&c)
        .run();
    assert!(out.ok(), "{out}");
    lab.assert_nothing_of("path", &a, "DEL under PATH=/usr/bin:/bin");
}

#[test]
fn a_del_and_a_gc_of_one_attachment_at_the_same_time_both_succeed() {
    let lab = Lab::new();
    let wb = json!({"type": "whereabouts", "range": "10.85.0.0/24", "store_dir": lab.store()});
    let c = conf(
        "br25",
        json!({"macspoofchk": true, "ipMasq": true, "ipam": wb}),
    );
    let mut gc = c.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    for round in 0..8 {
        let a = Netns::new("br-race");
        let cid = format!("race{round}");
        assert!(lab.add(&cid, &a, &c).ok());
        let (del, gcd) = std::thread::scope(|s| {
            let d = s.spawn(|| lab.del(&cid, &a, &c));
            let g = s.spawn(|| lab.run("GC", "", "", "", &gc));
            (d.join().unwrap(), g.join().unwrap())
        });
        assert!(del.ok(), "round {round}: DEL {del}");
        assert!(gcd.ok(), "round {round}: GC {gcd}");
        lab.assert_nothing_of(&cid, &a, &format!("round {round}"));
    }
}

#[test]
fn a_gc_of_one_network_never_removes_the_chains_of_another_networks_adds_meanwhile() {
    let lab = Lab::new();
    let gc_conf = {
        let mut g = conf("br26", json!({"name": "net-gc", "macspoofchk": true}));
        g["name"] = json!("net-gc");
        g["cni.dev/valid-attachments"] = json!([]);
        g
    };
    let ctrs: Vec<Netns> = (0..12).map(|_| Netns::new("br-gcr")).collect();
    let adds_done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        let gcs = s.spawn(|| {
            let mut n = 0;
            while !adds_done.load(std::sync::atomic::Ordering::SeqCst) {
                let out = lab.run("GC", "", "", "", &gc_conf);
                assert!(out.ok(), "{out}");
                n += 1;
            }
            n
        });
        for (i, ctr) in ctrs.iter().enumerate() {
            let c = conf(
                "br26",
                json!({"name": "net-vm", "macspoofchk": true,
                "ipam": static_ipam(&format!("10.86.0.{}/24", i + 2))}),
            );
            let mut c = c;
            c["name"] = json!("net-vm");
            let out = lab.add(&format!("vm{i}"), ctr, &c);
            assert!(out.ok(), "{out}");
        }
        adds_done.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(gcs.join().unwrap() > 0, "GC ran while the ADDs ran");
    });
    let spoof = lab.nft("list table bridge nat");
    for i in 0..ctrs.len() {
        assert!(
            spoof.contains(&format!("cni-br-iface-vm{i}-net1-mac")),
            "vm{i} kept its spoof check: {spoof}"
        );
    }
    // What that GC saw in the race, made deterministic: chains whose host veth is not in its
    // listing of links (here: renamed away for the length of the GC). They are another network's:
    // this GC leaves them.
    let port = lab
        .ports_of("br26")
        .into_iter()
        .map(|l| l["ifname"].as_str().unwrap().to_string())
        .find(|n| {
            lab.nft("list chain bridge nat PREROUTING")
                .contains(n.as_str())
        })
        .unwrap();
    let vm = (0..ctrs.len())
        .find(|i| {
            lab.nft("list chain bridge nat PREROUTING")
                .lines()
                .any(|l| l.contains(&port) && l.contains(&format!("cni-br-iface-vm{i}-net1 ")))
        })
        .unwrap();
    lab.ip(&["link", "set", &port, "name", "hidden0"]);
    assert!(lab.run("GC", "", "", "", &gc_conf).ok());
    lab.ip(&["link", "set", "hidden0", "name", &port]);
    assert!(
        lab.nft("list table bridge nat")
            .contains(&format!("cni-br-iface-vm{vm}-net1-mac")),
        "net-gc's GC removed net-vm's chains of vm{vm}"
    );
    // And the check still passes what it should, and drops what it should.
    assert!(
        pings(&ctrs[0], "10.86.0.3"),
        "the container's own MAC passes"
    );
    let forged =
        ctrs[0].sh("ip link set net1 address 02:66:66:66:66:66 && ping -c 1 -W 1 -q 10.86.0.3");
    assert!(!forged.status.success(), "a forged source MAC is dropped");
}

#[test]
fn a_refused_add_with_a_broken_ipam_part_leaves_nothing() {
    let lab = Lab::new();
    let a = Netns::new("br-ipamfault");
    let with = |ipam: Value| {
        conf(
            "br27",
            json!({"macspoofchk": true, "ipMasq": true, "ipam": ipam}),
        )
    };
    let cases = [
        (with(json!({"type": 7})), Some(7), "ipam.type"),
        (with(json!("whereabouts")), Some(7), "ipam"),
        (
            with(json!({"type": "host-local-missing"})),
            Some(7),
            "host-local-missing",
        ),
        (
            with(json!({"type": "whereabouts", "range": 5, "store_dir": lab.store()})),
            Some(7),
            "range",
        ),
        (
            with(
                json!({"type": "static", "addresses": [{"address": "10.87.0.5/24"}],
                "routes": [{"dst": "10.99.0.0/16", "gw": "192.0.2.77"}]}),
            ),
            None,
            "10.99.0.0/16",
        ),
    ];
    for (c, code, needle) in cases {
        let out = lab.add("fault", &a, &c);
        assert!(!out.ok(), "{c}: {out}");
        if let Some(code) = code {
            assert_eq!(out.error_code(), Some(code), "{c}: {out}");
        }
        assert!(
            out.to_string().contains(needle),
            "{c}: {out} should name {needle:?}"
        );
        lab.assert_nothing_of("fault", &a, &c.to_string());
        let del = lab.del("fault", &a, &c);
        assert!(del.ok(), "the rollback DEL of {c}: {del}");
    }
    // The same configuration without the fault attaches (the faults were the cause).
    let good = with(json!({"type": "static", "addresses": [{"address": "10.87.0.5/24"}]}));
    assert!(lab.add("fault", &a, &good).ok());
    assert!(lab
        .nft("list table bridge nat")
        .contains("cni-br-iface-fault-net1"));
}

/// containernetworking/plugins #756: a container that takes over an address (a restart, a freed
/// address handed out again) is announced once its port is up, so a neighbour that cached the
/// old MAC reaches it at once. The kernel's own `arp_notify` announcement leaves at link-up,
/// before the bridge enables the port, and is lost (the reference relies on it alone).
#[test]
fn a_container_taking_over_an_address_is_announced_to_neighbours_that_cached_the_old_mac() {
    let lab = Lab::new();
    let (a, b) = (Netns::new("br-ga"), Netns::new("br-gb"));
    let c = |addr: &str| conf("br-garp", json!({"ipam": static_ipam(addr)}));
    assert!(lab.add("ga", &a, &c("10.71.0.2/24")).ok());
    assert!(lab.add("gb", &b, &c("10.71.0.3/24")).ok());
    assert!(pings(&b, "10.71.0.2"));
    let neighbour = || -> String {
        let v: Value =
            serde_json::from_str(&b.run_ok(&["ip", "-j", "neigh", "show", "10.71.0.2"])).unwrap();
        v[0]["lladdr"].as_str().unwrap_or_default().to_string()
    };
    let old = mac_of(&a, "net1");
    assert_eq!(neighbour(), old);
    assert!(lab.del("ga", &a, &c("10.71.0.2/24")).ok());
    let a2 = Netns::new("br-ga2");
    assert!(lab.add("ga2", &a2, &c("10.71.0.2/24")).ok());
    let new = mac_of(&a2, "net1");
    assert_ne!(old, new);
    conformance_tests::wait_until(
        "the neighbour's entry follows the new MAC",
        std::time::Duration::from_secs(2),
        || neighbour() == new,
    );
    assert!(pings(&b, "10.71.0.2"));
    assert!(lab.del("ga2", &a2, &c("10.71.0.2/24")).ok());
    assert!(lab.del("gb", &b, &c("10.71.0.3/24")).ok());
}

// IPv6 only (issue 20): node, containers and router without IPv4 addresses.

/// Whether `ns` has an IPv4 address of global scope.
fn has_ipv4(ns: &Netns) -> bool {
    !ns.run_ok(&["ip", "-4", "-o", "addr", "show", "scope", "global"])
        .trim()
        .is_empty()
}

/// Three pings 200 ms apart, one answer enough (the first can wait on neighbour discovery).
fn pings6(from: &Netns, to: &str) -> bool {
    from.run(&["ping", "-6", "-c", "3", "-i", "0.2", "-W", "1", "-q", to])
        .status
        .success()
}

fn address_of(out: &Outcome) -> String {
    assert!(out.ok(), "{out}");
    out.json()["ips"][0]["address"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// whereabouts on a /64 to its last address (whereabouts #83 stops at /65), the gateway on the
/// bridge and never handed out, the default route via the bridge, addresses usable at once.
#[test]
fn ipv6_only_whereabouts_on_a_64_with_gateway_default_route_and_the_top_of_the_prefix() {
    let lab = Lab::new();
    let (a, b) = (Netns::new("v6-a"), Netns::new("v6-b"));
    let ipam = |start: Option<&str>| {
        let mut i = json!({"type": "whereabouts", "range": "fd00:6::/64", "gateway": "fd00:6::1",
            "store_dir": lab.store()});
        if let Some(s) = start {
            i["range_start"] = json!(s);
        }
        i
    };
    let c = conf(
        "br6",
        json!({"isGateway": true, "isDefaultGateway": true, "ipam": ipam(None)}),
    );
    let ra = lab.add("v6a", &a, &c);
    assert_eq!(
        address_of(&ra),
        "fd00:6::2/64",
        "the gateway ::1 is never handed out"
    );
    assert_eq!(ra.json()["ips"][0]["gateway"], "fd00:6::1");
    assert_eq!(address_of(&lab.add("v6b", &b, &c)), "fd00:6::3/64");
    assert!(lab
        .node
        .addresses("br6")
        .contains(&"fd00:6::1/64".to_string()));
    // The gateway answers at once: optimistic DAD (a duplicate of it would still fail DAD),
    // where the reference's stays tentative, unreachable, for about 2 s.
    assert!(lab
        .node
        .run_ok(&["ip", "-6", "addr", "show", "dev", "br6"])
        .contains("fd00:6::1/64 scope global optimistic"));
    let routes = a.run_ok(&["ip", "-6", "route", "show", "default"]);
    assert!(
        routes.contains("default via fd00:6::1 dev net1"),
        "{routes}"
    );
    // No DAD wait (reference #680): usable right after ADD.
    assert!(!a
        .run_ok(&["ip", "-6", "addr", "show", "dev", "net1"])
        .contains("tentative"));
    assert!(pings6(&a, "fd00:6::3"), "container to container at once");
    assert!(pings6(&b, "fd00:6::1"), "container to the gateway");
    for ns in [&*lab.node, &a, &b] {
        assert!(!has_ipv4(ns), "{} has IPv4", ns.name());
    }
    // The top of the /64: its last two addresses, then exhausted.
    let top = conf(
        "br6",
        json!({"isGateway": true, "ipam": ipam(Some("fd00:6::ffff:ffff:ffff:fffe"))}),
    );
    let (t1, t2, t3) = (
        Netns::new("v6-t1"),
        Netns::new("v6-t2"),
        Netns::new("v6-t3"),
    );
    assert_eq!(
        address_of(&lab.add("t1", &t1, &top)),
        "fd00:6::ffff:ffff:ffff:fffe/64"
    );
    assert_eq!(
        address_of(&lab.add("t2", &t2, &top)),
        "fd00:6::ffff:ffff:ffff:ffff/64"
    );
    let full = lab.add("t3", &t3, &top);
    assert_eq!(full.error_code(), Some(102), "{full}");
    assert!(pings6(&a, "fd00:6::ffff:ffff:ffff:ffff"));
    for (cid, ns, c) in [
        ("t1", &t1, &top),
        ("t2", &t2, &top),
        ("v6a", &a, &c),
        ("v6b", &b, &c),
    ] {
        assert!(lab.del(cid, ns, c).ok());
    }
    assert!(lab.reservations().is_empty());
}

/// The MAC spoof check on IPv6 traffic: a container that forges its source MAC reaches nobody,
/// with its own it does (neighbour discovery included).
#[test]
fn ipv6_only_mac_spoof_check_drops_forged_frames_and_passes_the_real_mac() {
    let lab = Lab::new();
    let (a, b) = (Netns::new("v6-sa"), Netns::new("v6-sb"));
    let c = |addr: &str| {
        conf(
            "br6s",
            json!({"macspoofchk": true, "ipam": static_ipam(addr)}),
        )
    };
    assert!(lab.add("sa", &a, &c("fd00:8::2/64")).ok());
    assert!(lab.add("sb", &b, &c("fd00:8::3/64")).ok());
    assert!(pings6(&a, "fd00:8::3"));
    let real = mac_of(&a, "net1");
    a.run_ok(&["ip", "link", "set", "net1", "address", "02:66:00:00:00:ff"]);
    b.run_ok(&["ip", "-6", "neigh", "flush", "dev", "net1"]);
    assert!(!pings6(&a, "fd00:8::3"), "a forged source MAC is dropped");
    a.run_ok(&["ip", "link", "set", "net1", "address", &real]);
    assert!(pings6(&a, "fd00:8::3"), "the real MAC passes again");
    assert!(lab.del("sa", &a, &c("fd00:8::2/64")).ok());
    assert!(lab.del("sb", &b, &c("fd00:8::3/64")).ok());
}

/// Masquerading IPv6: a container reaches a host beyond the node that has no route back to the
/// container's prefix only with `ipMasq` (its packets leave with the node's address).
#[test]
fn ipv6_only_ip_masq_lets_a_container_reach_a_host_with_no_route_back() {
    let lab = Lab::new();
    let remote = Netns::new("v6-far");
    lab.node.run_ok(&[
        "ip",
        "link",
        "add",
        "name",
        "up6",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        remote.name(),
    ]);
    lab.node
        .run_ok(&["ip", "addr", "add", "fd00:99::2/64", "dev", "up6", "nodad"]);
    lab.node.run_ok(&["ip", "link", "set", "up6", "up"]);
    remote.run_ok(&["ip", "addr", "add", "fd00:99::1/64", "dev", "eth0", "nodad"]);
    remote.run_ok(&["ip", "link", "set", "eth0", "up"]);
    let (m, p) = (Netns::new("v6-m"), Netns::new("v6-p"));
    let c = |masq: bool, addr: &str| {
        conf(
            "br6m",
            json!({"isDefaultGateway": true, "ipMasq": masq, "ipam": {"type": "static",
                "addresses": [{"address": addr, "gateway": "fd00:9::1"}]}}),
        )
    };
    assert!(lab.add("m", &m, &c(true, "fd00:9::2/64")).ok());
    assert!(lab.add("p", &p, &c(false, "fd00:9::3/64")).ok());
    let rules = lab.nft("list table inet cni_plugins_masquerade");
    assert!(
        rules.contains("ip6 saddr fd00:9::2 ip6 daddr != fd00:9::/64 masquerade"),
        "{rules}"
    );
    assert!(
        pings6(&m, "fd00:99::1"),
        "masqueraded: the reply comes back"
    );
    assert!(!pings6(&p, "fd00:99::1"), "not masqueraded: no route back");
    assert!(lab.del("m", &m, &c(true, "fd00:9::2/64")).ok());
    assert!(lab.del("p", &p, &c(false, "fd00:9::3/64")).ok());
    assert!(!lab
        .nft("list table inet cni_plugins_masquerade")
        .contains("fd00:9::2"));
}

/// Router advertisements on the container side: where IPAM configures IPv6 the container
/// ignores them (`accept_ra=0`: its addresses and routes are IPAM's, and an RA would add an
/// address and a default route nobody releases); in L2 mode (no IPAM) it follows them as any
/// host on the wire does (SLAAC address, default route via the router). A router on the bridge
/// (dnsmasq, RA only) advertises fd00:7::/64.
#[test]
fn ipv6_only_router_advertisements_are_ignored_under_ipam_and_followed_in_l2_mode() {
    let lab = Lab::new();
    let (l3, l2) = (Netns::new("v6-l3"), Netns::new("v6-l2"));
    let with_ipam = conf("br6r", json!({"ipam": static_ipam("fd00:7::2/64")}));
    assert!(lab.add("l3", &l3, &with_ipam).ok());
    let router = Netns::new("v6-rtr");
    lab.node.run_ok(&[
        "ip",
        "link",
        "add",
        "name",
        "rtr6",
        "type",
        "veth",
        "peer",
        "name",
        "eth0",
        "netns",
        router.name(),
    ]);
    lab.node
        .run_ok(&["ip", "link", "set", "rtr6", "master", "br6r"]);
    lab.node.run_ok(&["ip", "link", "set", "rtr6", "up"]);
    router.run_ok(&["ip", "addr", "add", "fd00:7::fe/64", "dev", "eth0", "nodad"]);
    router.run_ok(&["ip", "link", "set", "eth0", "up"]);
    router.run_ok(&["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"]);
    let scratch = TempDir::new("v6-ra");
    let mut dnsmasq = Command::new("ip")
        .args([
            "netns",
            "exec",
            router.name(),
            "dnsmasq",
            "--keep-in-foreground",
            "--port=0",
            "--no-resolv",
            "--no-hosts",
            "--interface=eth0",
            "--bind-interfaces",
            "--enable-ra",
            "--dhcp-range=::,constructor:eth0,ra-only,64",
            "--ra-param=eth0,2,60",
        ])
        .arg(format!("--pid-file={}", scratch.join("pid").display()))
        .arg(format!(
            "--dhcp-leasefile={}",
            scratch.join("leases").display()
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("dnsmasq (make deps installs dnsmasq-base)");
    let out = lab.add("l2", &l2, &conf("br6r", json!({})));
    assert!(out.ok(), "{out}");
    let slaac = |ns: &Netns| -> Vec<String> {
        ns.run_ok(&[
            "ip", "-6", "-o", "addr", "show", "dev", "net1", "scope", "global",
        ])
        .lines()
        .filter(|l| l.contains("dynamic"))
        .map(str::to_string)
        .collect()
    };
    conformance_tests::wait_until(
        "the L2 container autoconfigures from the router's advertisement",
        std::time::Duration::from_secs(10),
        || slaac(&l2).iter().any(|l| l.contains("fd00:7:")),
    );
    assert!(l2
        .run_ok(&["ip", "-6", "route", "show", "default"])
        .contains("via fe80::"));
    assert!(pings6(&l2, "fd00:7::fe"));
    // The L3 container heard advertisements too (its namespace's ICMPv6 counter).
    let heard = |ns: &Netns| -> u64 {
        ns.run_ok(&["cat", "/proc/net/snmp6"])
            .lines()
            .find_map(|l| l.strip_prefix("Icmp6InRouterAdvertisements"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    };
    conformance_tests::wait_until(
        "the L3 container receives an advertisement",
        std::time::Duration::from_secs(10),
        || heard(&l3) > 0,
    );
    assert!(pings6(&l3, "fd00:7::fe"), "on the same wire");
    assert_eq!(
        l3.run_ok(&["cat", "/proc/sys/net/ipv6/conf/net1/accept_ra"])
            .trim(),
        "0"
    );
    assert_eq!(slaac(&l3), Vec::<String>::new());
    assert_eq!(
        l3.run_ok(&["ip", "-6", "route", "show", "default"]).trim(),
        ""
    );
    let _ = dnsmasq.kill();
    let _ = dnsmasq.wait();
    assert!(lab.del("l2", &l2, &conf("br6r", json!({}))).ok());
    assert!(lab.del("l3", &l3, &with_ipam).ok());
}

/// IPv6 only, a router on the simulated datacenter wire beyond the node (issue 20): the node's
/// `br1` holds its NIC `ens4` (the NMState step) and has no address; the wire's router
/// (fd00:8::1) routes to a far network. A container with whereabouts on fd00:8::/64 and a default
/// route via the router reaches the router and a far host through the bridge, and the far host
/// reaches the container; DEL leaves no reservation.
#[test]
fn ipv6_only_a_router_on_the_datacenter_wire_is_reached_through_the_bridge() {
    let lab = Lab::new();
    let (router, far) = (Netns::new("v6-rtr"), Netns::new("v6-farh"));
    lab.node.sh_ok(&format!(
        "ip link add ens4 type veth peer name eth0 netns {} \
         && ip link add br1 type bridge && ip link set ens4 master br1 && ip link set ens4 up && ip link set br1 up",
        router.name()
    ));
    router.sh_ok(&format!(
        "sysctl -qw net.ipv6.conf.all.forwarding=1 && ip addr add fd00:8::1/64 dev eth0 nodad && ip link set eth0 up \
         && ip link add eth1 type veth peer name eth0 netns {} && ip addr add fd00:98::1/64 dev eth1 nodad && ip link set eth1 up",
        far.name()
    ));
    far.sh_ok("ip addr add fd00:98::2/64 dev eth0 nodad && ip link set eth0 up && ip -6 route add default via fd00:98::1");
    let c = conf(
        "br1",
        json!({"ipam": {"type": "whereabouts", "range": "fd00:8::/64", "range_start": "fd00:8::10",
            "gateway": "fd00:8::1", "routes": [{"dst": "::/0"}], "store_dir": lab.store()}}),
    );
    let ctr = Netns::new("v6-wire");
    let out = lab.add("w", &ctr, &c);
    assert_eq!(address_of(&out), "fd00:8::10/64");
    let routes = ctr.run_ok(&["ip", "-6", "route", "show", "default"]);
    assert!(
        routes.contains("default via fd00:8::1 dev net1"),
        "{routes}"
    );
    assert!(
        lab.node
            .addresses("br1")
            .iter()
            .all(|a| a.starts_with("fe80:")),
        "the bridge has no address of the network: {:?}",
        lab.node.addresses("br1")
    );
    assert!(pings6(&ctr, "fd00:8::1"), "the router on the wire");
    assert!(pings6(&ctr, "fd00:98::2"), "a far host through the router");
    assert!(pings6(&far, "fd00:8::10"), "and back to the container");
    for ns in [&*lab.node, &ctr, &router, &far] {
        assert!(!has_ipv4(ns), "{} has IPv4", ns.name());
    }
    assert!(lab.del("w", &ctr, &c).ok());
    assert!(lab.reservations().is_empty());
}

/// IPv6 only: the gateway's optimistic DAD still detects a duplicate (issue 20). With a host on
/// the bridge that already owns the gateway address, the bridge's copy ends `dadfailed`; without
/// one, DAD completes and the address is plain (neither optimistic nor tentative).
#[test]
fn ipv6_only_a_duplicate_of_the_gateway_on_the_wire_still_fails_dad() {
    let lab = Lab::new();
    let owner = Netns::new("v6-dup");
    lab.node.sh_ok(&format!(
        "ip link add br6d type bridge && ip link set br6d up \
         && ip link add dup0 type veth peer name eth0 netns {} && ip link set dup0 master br6d && ip link set dup0 up",
        owner.name()
    ));
    owner.sh_ok("ip addr add fd00:5::1/64 dev eth0 nodad && ip link set eth0 up");
    let gw = |bridge: &str, addr: &str| {
        conf(
            bridge,
            json!({"isGateway": true, "ipam": {"type": "static",
                "addresses": [{"address": addr, "gateway": "fd00:5::1"}]}}),
        )
    };
    let (a, b) = (Netns::new("v6-da"), Netns::new("v6-db"));
    assert!(lab.add("da", &a, &gw("br6d", "fd00:5::2/64")).ok());
    let state = |bridge: &str| {
        lab.node
            .run_ok(&["ip", "-6", "addr", "show", "dev", bridge])
            .lines()
            .find(|l| l.contains("fd00:5::1/64"))
            .unwrap_or_default()
            .to_string()
    };
    conformance_tests::wait_until(
        "the duplicate gateway address is marked dadfailed",
        std::time::Duration::from_secs(10),
        || state("br6d").contains("dadfailed"),
    );
    // The same ADD on a bridge where nobody else has the address: DAD passes.
    assert!(lab.add("db", &b, &gw("br6e", "fd00:5::3/64")).ok());
    conformance_tests::wait_until(
        "DAD of the gateway address completes",
        std::time::Duration::from_secs(10),
        || {
            let s = state("br6e");
            s.contains("scope global") && !s.contains("optimistic") && !s.contains("tentative")
        },
    );
    assert!(!state("br6e").contains("dadfailed"), "{}", state("br6e"));
    assert!(pings6(&b, "fd00:5::1"), "the gateway after DAD");
    assert!(lab.del("da", &a, &gw("br6d", "fd00:5::2/64")).ok());
    assert!(lab.del("db", &b, &gw("br6e", "fd00:5::3/64")).ok());
}
