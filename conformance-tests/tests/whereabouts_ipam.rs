//! `whereabouts` IPAM on the embedded file store, run as a runtime runs it (processes inside a
//! node namespace), with the store's content read back through the operators' tool.

use std::collections::BTreeSet;
use std::path::PathBuf;

use conformance_tests::{
    ours, CniVars, EtcdCluster, Invocation, LibcniClient, Netns, Node, NodeSettings, Outcome,
    PluginDir, Runtime, RuntimeConf, TempDir,
};
use serde_json::{json, Value};

/// Which store a lab's whereabouts uses: the same behaviour tests run against both.
enum Backend {
    File,
    Etcd,
}

/// A node, a container namespace and a store: a directory, or one etcd member on the node's
/// loopback (the plugins run in the node namespace and reach it there).
struct Lab {
    etcd: Option<EtcdCluster>,
    node: Node,
    ctr: Netns,
    scratch: TempDir,
    /// The node's settings: its etcd cluster, when the lab has one (a NAD only repeats it).
    settings: NodeSettings,
}

impl Lab {
    fn new() -> Lab {
        Lab::with(Backend::File)
    }

    fn with(backend: Backend) -> Lab {
        let node = Node::new("wb-node");
        let etcd = matches!(backend, Backend::Etcd).then(|| EtcdCluster::start(1, &node));
        let settings = match &etcd {
            None => NodeSettings::empty(),
            Some(etcd) => NodeSettings::for_ipam(&json!({"datastore": "etcd",
                "etcd_endpoints": etcd.endpoints(), "etcd_request_timeout_ms": 3000})),
        };
        Lab {
            etcd,
            node,
            ctr: Netns::new("wb-ctr"),
            scratch: TempDir::new("wb"),
            settings,
        }
    }

    /// The plugin, run in the node with the node's settings named.
    fn plugin(&self) -> Invocation {
        let (k, v) = self.settings.env();
        Invocation::new(ours("whereabouts"))
            .in_node(&self.node)
            .env(&k, &v)
    }

    fn store(&self) -> PathBuf {
        self.scratch.join("store")
    }

    /// The `ipam` keys that select this lab's store.
    fn store_keys(&self) -> Value {
        match &self.etcd {
            None => json!({"store_dir": self.store()}),
            Some(etcd) => json!({"datastore": "etcd", "etcd_endpoints": etcd.endpoints(),
                "etcd_request_timeout_ms": 3000}),
        }
    }

    /// A whereabouts config (version 1.1.0) with `ipam` keys merged over the defaults.
    fn conf(&self, ipam: Value) -> Value {
        let mut i = json!({"type": "whereabouts"});
        let o = i.as_object_mut().unwrap();
        o.extend(self.store_keys().as_object().cloned().unwrap_or_default());
        o.extend(ipam.as_object().cloned().unwrap_or_default());
        json!({"cniVersion": "1.1.0", "name": "wb-net", "type": "whereabouts", "ipam": i})
    }

    fn call(&self, command: &str, cid: &str, ifname: &str, args: &str, conf: &Value) -> Outcome {
        self.call_env(command, cid, ifname, args, conf, &[])
    }

    fn call_env(
        &self,
        command: &str,
        cid: &str,
        ifname: &str,
        args: &str,
        conf: &Value,
        env: &[(&str, &str)],
    ) -> Outcome {
        let vars = CniVars {
            command: command.into(),
            container_id: cid.into(),
            netns: self.ctr.path().display().to_string(),
            ifname: ifname.into(),
            args: args.into(),
            path: String::new(),
        };
        let mut inv = self.plugin().vars(&vars).stdin_json(conf);
        for (k, v) in env {
            inv = inv.env(k, v);
        }
        inv.run()
    }

    /// GC of `conf`'s network with these attachments (CONTAINER_ID, IFNAME) valid.
    fn gc(&self, conf: &Value, valid: &[(&str, &str)]) -> Outcome {
        let mut conf = conf.clone();
        conf["cni.dev/valid-attachments"] = valid
            .iter()
            .map(|(c, i)| json!({"containerID": c, "ifname": i}))
            .collect();
        let mut vars = CniVars::command("GC");
        vars.path = ours("whereabouts").parent().unwrap().display().to_string();
        self.plugin().vars(&vars).stdin_json(&conf).run()
    }

    fn add(&self, cid: &str, conf: &Value) -> Outcome {
        self.call("ADD", cid, "net1", "", conf)
    }

    /// `multihome-ipam` against this lab's store, run in the node namespace.
    fn tool(&self, args: &[&str]) -> String {
        let tool = ours("multihome-ipam").display().to_string();
        let store = self.store().display().to_string();
        let endpoints = self.etcd.as_ref().map(|e| e.endpoints().join(","));
        let mut argv = vec![tool.as_str()];
        match &endpoints {
            None => argv.extend(["--store-dir", store.as_str()]),
            Some(e) => argv.extend(["--etcd-endpoints", e.as_str()]),
        }
        argv.extend(args);
        self.node.run_ok(&argv)
    }

    /// The store's reservations as (ip, container ID), through `multihome-ipam list`.
    fn reservations(&self) -> Vec<(String, String)> {
        self.tool(&["list"])
            .lines()
            .map(|l| {
                // pool label (one or more words), address, container ID, ifname, pod
                let f: Vec<&str> = l.split_whitespace().rev().collect();
                (f[3].to_string(), f[2].to_string())
            })
            .collect()
    }
}

fn ip_of(out: &Outcome) -> String {
    assert!(out.ok(), "{out}");
    out.json()["ips"][0]["address"]
        .as_str()
        .unwrap()
        .to_string()
}

fn lowest_free_address_skips_network_gateway_and_excludes(lab: Lab) {
    let conf = lab.conf(json!({"range": "10.80.0.0/24", "gateway": "10.80.0.1", "exclude": ["10.80.0.2/31", "10.80.0.5"]}));
    let got: Vec<String> = (0..3)
        .map(|i| ip_of(&lab.add(&format!("c{i}"), &conf)))
        .collect();
    assert_eq!(got, ["10.80.0.4/24", "10.80.0.6/24", "10.80.0.7/24"]);
    let r = lab.add("c0", &conf).json();
    assert_eq!(
        r["ips"][0],
        json!({"address": "10.80.0.4/24", "gateway": "10.80.0.1"})
    );
    assert_eq!(
        lab.reservations().len(),
        3,
        "a repeated ADD reserves nothing new"
    );
}

fn host_local_spellings_are_honoured_and_the_gateway_never_handed_out(lab: Lab) {
    // whereabouts ignores rangeStart/rangeEnd and hands out the gateway (#601).
    let conf = lab.conf(json!({"range": "10.81.0.0/24", "rangeStart": "10.81.0.10", "rangeEnd": "10.81.0.12", "gateway": "10.81.0.11"}));
    assert_eq!(ip_of(&lab.add("a", &conf)), "10.81.0.10/24");
    assert_eq!(ip_of(&lab.add("b", &conf)), "10.81.0.12/24");
    let full = lab.add("c", &conf);
    assert_eq!(full.error_code(), Some(102), "{full}");
    let msg = full.json()["msg"].as_str().unwrap().to_string();
    assert!(
        msg.contains("10.81.0.0/24") && msg.contains("all 2"),
        "names the range and how full: {msg}"
    );
    assert_eq!(lab.reservations().len(), 2, "a failed ADD changes nothing");
}

fn a_restarted_sandbox_of_the_same_pod_gets_its_address_on_a_full_pool(lab: Lab) {
    let conf = lab.conf(json!({"range": "10.82.0.8/30"}));
    let pod = "IgnoreUnknown=1;K8S_POD_NAMESPACE=vms;K8S_POD_NAME=vm-a";
    let first = lab.call("ADD", "sandbox-1", "net1", pod, &conf);
    assert_eq!(ip_of(&lab.add("other", &conf)), "10.82.0.10/30");
    assert_eq!(
        lab.add("third", &conf).error_code(),
        Some(102),
        "the /30 is full"
    );
    let again = lab.call("ADD", "sandbox-2", "net1", pod, &conf);
    assert_eq!(ip_of(&again), ip_of(&first));
    // The reservation moved to the new sandbox: the old sandbox's late DEL must not free it.
    assert!(lab.call("DEL", "sandbox-1", "net1", pod, &conf).ok());
    assert!(
        lab.reservations()
            .contains(&("10.82.0.9".to_string(), "sandbox-2".to_string())),
        "{:?}",
        lab.reservations()
    );
}

fn ip_ranges_get_one_address_each_all_or_nothing(lab: Lab) {
    let conf = lab.conf(json!({"ipRanges": [{"range": "10.83.0.0/24"}, {"range": "fd83::/64"}]}));
    let r = lab.add("dual", &conf).json();
    let ips: Vec<&str> = r["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["address"].as_str().unwrap())
        .collect();
    assert_eq!(ips, ["10.83.0.1/24", "fd83::1/64"]);
    // The second range is full: the first range's new address is given back.
    let tight =
        lab.conf(json!({"ipRanges": [{"range": "10.84.0.0/24"}, {"range": "10.85.0.0/30"}]}));
    assert!(lab.add("t1", &tight).ok() && lab.add("t2", &tight).ok());
    let before = lab.reservations();
    assert_eq!(lab.add("t3", &tight).error_code(), Some(102));
    assert_eq!(
        lab.reservations(),
        before,
        "nothing kept from the failed ADD"
    );
}

fn ipv6_ranges_are_usable_beyond_the_first_half_of_a_64(lab: Lab) {
    // whereabouts' 64-bit offsets only reach the first /65 of a /64 (#83).
    let conf = lab.conf(json!({"range": "fd86::/64", "range_start": "fd86::ffff:ffff:ffff:fffe"}));
    assert_eq!(ip_of(&lab.add("a", &conf)), "fd86::ffff:ffff:ffff:fffe/64");
    assert_eq!(ip_of(&lab.add("b", &conf)), "fd86::ffff:ffff:ffff:ffff/64");
}

fn overlapping_ranges_share_addresses_within_a_network_name_only(lab: Lab) {
    let wide = lab.conf(json!({"range": "10.87.0.0/24"}));
    let narrow = lab.conf(json!({"range": "10.87.0.0/28"}));
    assert_eq!(ip_of(&lab.add("w", &wide)), "10.87.0.1/24");
    assert_eq!(
        ip_of(&lab.add("n", &narrow)),
        "10.87.0.2/28",
        "unique across overlapping ranges"
    );
    let other = lab.conf(json!({"range": "10.87.0.0/28", "network_name": "tenant-b"}));
    assert_eq!(
        ip_of(&lab.add("o", &other)),
        "10.87.0.1/28",
        "another network_name is another pool"
    );
    let independent =
        lab.conf(json!({"range": "10.87.0.0/28", "enable_overlapping_ranges": false}));
    assert_eq!(
        ip_of(&lab.add("i", &independent)),
        "10.87.0.1/28",
        "without overlap protection each range is its own pool"
    );
}

fn sixty_four_concurrent_adds_get_distinct_addresses_and_their_dels_empty_the_pool(lab: Lab) {
    let conf = lab.conf(json!({"range": "10.88.0.0/24"}));
    let results: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..64)
            .map(|i| {
                let (lab, conf) = (&lab, &conf);
                s.spawn(move || ip_of(&lab.add(&format!("conc-{i}"), conf)))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let distinct: BTreeSet<&String> = results.iter().collect();
    assert_eq!(distinct.len(), 64, "{results:?}");
    assert_eq!(lab.reservations().len(), 64);
    std::thread::scope(|s| {
        for i in 0..64 {
            let (lab, conf) = (&lab, &conf);
            s.spawn(move || assert!(lab.call("DEL", &format!("conc-{i}"), "net1", "", conf).ok()));
        }
    });
    assert!(lab.reservations().is_empty(), "{:?}", lab.reservations());
    assert_eq!(
        ip_of(&lab.add("after", &conf)),
        "10.88.0.1/24",
        "released addresses are handed out again, lowest first"
    );
}

fn del_is_idempotent_and_check_fails_once_the_reservation_is_gone(lab: Lab) {
    let mut conf = lab.conf(json!({"range": "10.89.0.0/24"}));
    let added = lab.add("chk", &conf);
    conf["prevResult"] = added.json();
    assert!(lab.call("CHECK", "chk", "net1", "", &conf).ok());
    lab.tool(&["release", "10.89.0.1"]);
    assert_eq!(
        lab.call("CHECK", "chk", "net1", "", &conf).error_code(),
        Some(100)
    );
    // Someone else now holds the address the prevResult names.
    assert_eq!(ip_of(&lab.add("thief", &conf)), "10.89.0.1/24");
    assert!(lab.add("chk", &conf).ok(), "chk gets a new address");
    assert_eq!(
        lab.call("CHECK", "chk", "net1", "", &conf).error_code(),
        Some(100)
    );
    for _ in 0..2 {
        assert!(lab.call("DEL", "chk", "net1", "", &conf).ok());
    }
    assert!(lab.call("DEL", "never-added", "net1", "", &conf).ok());
    assert_eq!(
        lab.reservations(),
        [("10.89.0.1".to_string(), "thief".to_string())]
    );
}

fn gc_releases_reservations_of_attachments_not_in_the_valid_list(lab: Lab) {
    let mut conf = lab.conf(json!({"range": "10.90.0.0/24"}));
    for cid in ["keep", "leak-1", "leak-2"] {
        assert!(lab.add(cid, &conf).ok());
    }
    conf["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "net1"}]);
    let gc = lab
        .plugin()
        .vars(&CniVars {
            path: "/nonexistent".into(),
            ..CniVars::command("GC")
        })
        .stdin_json(&conf)
        .run();
    assert!(gc.ok(), "{gc}");
    assert!(
        gc.stderr.contains("released 2"),
        "says how many it freed: {}",
        gc.stderr
    );
    assert_eq!(
        lab.reservations(),
        [("10.90.0.1".to_string(), "keep".to_string())]
    );
}

#[test]
fn status_is_code_50_when_the_store_is_unwritable_or_corrupt_and_corruption_is_never_reset() {
    let lab = Lab::new();
    let conf = lab.conf(json!({"range": "10.91.0.0/24"}));
    let status = |conf: &Value| {
        lab.plugin()
            .vars(&CniVars::command("STATUS"))
            .stdin_json(conf)
            .run()
    };
    assert!(status(&conf).ok());
    assert!(lab.add("c1", &conf).ok());
    let block = std::fs::read_dir(lab.store())
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .unwrap()
        .path()
        .join("blocks/4-a5b00.json");
    std::fs::write(&block, b"{not json").unwrap();
    let st = status(&conf);
    assert_eq!(st.error_code(), Some(50), "{st}");
    assert!(
        st.json()["msg"].as_str().unwrap().contains("corrupt"),
        "{st}"
    );
    assert_eq!(lab.add("c2", &conf).error_code(), Some(5));
    assert_eq!(
        std::fs::read(&block).unwrap(),
        b"{not json",
        "never silently reset"
    );

    let file_as_dir = lab.scratch.join("not-a-dir");
    std::fs::write(&file_as_dir, b"").unwrap();
    let mut unwritable = conf.clone();
    unwritable["ipam"]["store_dir"] = json!(file_as_dir);
    assert_eq!(status(&unwritable).error_code(), Some(50));
}

#[test]
fn kubernetes_datastore_is_the_nodes_store_and_a_kubeconfig_alone_is_tolerated() {
    let lab = Lab::new();
    let k8s = lab.conf(json!({"range": "10.92.0.0/24", "datastore": "kubernetes"}));
    assert_eq!(ip_of(&lab.add("k8s", &k8s)), "10.92.0.1/24");
    assert!(lab.call("DEL", "k8s", "net1", "", &k8s).ok());
    let copied = lab.conf(json!({"range": "10.92.0.0/24",
        "kubernetes": {"kubeconfig": "/etc/cni/net.d/whereabouts.d/whereabouts.kubeconfig"}}));
    assert_eq!(ip_of(&lab.add("k", &copied)), "10.92.0.1/24");
}

fn libcni_and_a_multus_shaped_call_allocate_check_and_release(lab: Lab) {
    let dir = PluginDir::ours(&["whereabouts"]);
    let list = json!({"cniVersion": "1.0.0", "name": "wb-list", "plugins": [
        {"type": "whereabouts", "ipam": lab.conf(json!({"range": "10.93.0.0/24", "gateway": "10.93.0.1"}))["ipam"].clone()}]});
    let (k, v) = lab.settings.env();
    let libcni = LibcniClient::new(dir.cni_path(), &lab.node).with_env(&k, &v);
    let pod = RuntimeConf::multus(
        lab.ctr.path(),
        "vms",
        "vm-x",
        "2b0c4c88-0000-4000-8000-00000000000a",
    );
    let added = libcni.add(&list, &pod);
    assert_eq!(ip_of(&added), "10.93.0.2/24");
    assert!(libcni.check(&list, &pod).ok());
    let runtime = Runtime::new(dir.cni_path(), &lab.node).with_env(&k, &v);
    let other = RuntimeConf::multus(
        lab.ctr.path(),
        "vms",
        "vm-y",
        "2b0c4c88-0000-4000-8000-00000000000b",
    );
    assert_eq!(
        runtime.add_list(&list, &other).unwrap()["ips"][0]["address"],
        "10.93.0.3/24"
    );
    let pods: BTreeSet<String> = lab
        .tool(&["list"])
        .lines()
        .map(|l| l.split_whitespace().last().unwrap().to_string())
        .collect();
    assert_eq!(
        pods,
        BTreeSet::from(["vms/vm-x".to_string(), "vms/vm-y".to_string()]),
        "podRef recorded from CNI_ARGS"
    );
    assert!(libcni.del(&list, &pod).ok());
    runtime.del_list(&list, &other).unwrap();
    assert!(lab.reservations().is_empty());
}

fn gc_of_one_network_keeps_the_live_addresses_of_another_network_sharing_the_pool(lab: Lab) {
    // Both NADs use the default network_name: one pool. GC of nad-a used to free nad-b's.
    let mut a = lab.conf(json!({"range": "10.95.0.0/24"}));
    a["name"] = json!("nad-a");
    let mut b = a.clone();
    b["name"] = json!("nad-b");
    let a1 = ip_of(&lab.add("a1", &a));
    let b1 = ip_of(&lab.add("b1", &b));
    let gc = lab.gc(&a, &[("a1", "net1")]);
    assert!(gc.ok(), "{gc}");
    assert!(
        lab.reservations()
            .contains(&(b1.trim_end_matches("/24").to_string(), "b1".into())),
        "nad-b's reservation survives nad-a's GC: {:?}",
        lab.reservations()
    );
    let b2 = ip_of(&lab.add("b2", &b));
    assert!(b2 != b1 && b2 != a1, "{b2} is new");
    // A GC does release its own network's stale ones.
    assert!(lab.gc(&b, &[("b2", "net1")]).ok());
    let left: Vec<String> = lab.reservations().into_iter().map(|(_, c)| c).collect();
    assert_eq!(left, ["a1", "b2"]);
}

fn an_edited_nad_keeps_its_pool_and_old_pods_release_with_the_new_config(lab: Lab) {
    let before = lab.conf(json!({"range": "10.96.0.0/24", "enable_overlapping_ranges": false}));
    let mut after = before.clone();
    after["ipam"]["exclude"] = json!(["10.96.0.200/29"]);
    after["ipam"]["range_end"] = json!("10.96.0.250");
    let old = ip_of(&lab.add("old", &before));
    let new = ip_of(&lab.add("new", &after));
    assert_ne!(old, new, "the edited NAD sees the old pod's address");
    assert!(lab.call("DEL", "old", "net1", "", &after).ok());
    let left: Vec<String> = lab.reservations().into_iter().map(|(_, c)| c).collect();
    assert_eq!(
        left,
        ["new"],
        "the old pod's DEL with the new config released it"
    );
}

fn del_and_gc_succeed_where_only_add_would_refuse_the_input(lab: Lab) {
    let good = lab.conf(json!({"range": "10.97.0.0/24"}));
    ip_of(&lab.add("p1", &good));
    ip_of(&lab.add("p2", &good));
    let mut bad = good.clone();
    bad["ipam"]["exclude"] = json!(["not-an-address"]);
    bad["ipam"]["routes"] = json!([{"dst": "nowhere"}]);
    let refused = lab.call("ADD", "p3", "net1", "IP=garbage", &bad);
    assert_eq!(refused.error_code(), Some(7), "{refused}");
    let del = lab.call("DEL", "p1", "net1", "IP=garbage", &bad);
    assert!(del.ok(), "{del}");
    // A range that cannot be read at all: every pool of the network_name is searched.
    let mut unreadable = good.clone();
    unreadable["ipam"]["range"] = json!("10.97.0.0/99");
    let del = lab.call("DEL", "p2", "net1", "", &unreadable);
    assert!(del.ok(), "{del}");
    assert!(lab.reservations().is_empty(), "{:?}", lab.reservations());
    assert!(lab.gc(&unreadable, &[]).ok());
}

fn a_bare_cni_args_ip_gets_the_prefix_of_its_range(lab: Lab) {
    // podman run --ip passes IP=<address> without a prefix; host-local accepts it.
    let conf = lab.conf(json!({"range": "10.98.0.0/24"}));
    let out = lab.call(
        "ADD",
        "podman",
        "eth0",
        "IgnoreUnknown=1;IP=10.98.0.50",
        &conf,
    );
    assert!(out.ok(), "{out}");
    let ips: Vec<Value> = out.json()["ips"].as_array().unwrap().clone();
    assert!(
        ips.iter().any(|i| i["address"] == "10.98.0.50/24"),
        "{ips:?}"
    );
    let outside = lab.call("ADD", "podman2", "eth0", "IP=192.0.2.7", &conf);
    assert_eq!(outside.error_code(), Some(7), "{outside}");
}

fn a_gateway_outside_the_range_is_reported_as_whereabouts_does(lab: Lab) {
    let conf = lab.conf(json!({"range": "10.99.1.0/24", "gateway": "10.99.0.1"}));
    let r = lab.add("g", &conf).json();
    assert_eq!(
        r["ips"][0],
        json!({"address": "10.99.1.1/24", "gateway": "10.99.0.1"})
    );
}

/// Runs each behaviour test against both stores.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod file_store {
            $( #[test] fn $name() { super::$name(super::Lab::with(super::Backend::File)) } )*
        }
        mod etcd_store {
            $( #[test] fn $name() { super::$name(super::Lab::with(super::Backend::Etcd)) } )*
        }
    };
}

on_both_stores!(
    lowest_free_address_skips_network_gateway_and_excludes,
    host_local_spellings_are_honoured_and_the_gateway_never_handed_out,
    a_restarted_sandbox_of_the_same_pod_gets_its_address_on_a_full_pool,
    ip_ranges_get_one_address_each_all_or_nothing,
    ipv6_ranges_are_usable_beyond_the_first_half_of_a_64,
    overlapping_ranges_share_addresses_within_a_network_name_only,
    sixty_four_concurrent_adds_get_distinct_addresses_and_their_dels_empty_the_pool,
    del_is_idempotent_and_check_fails_once_the_reservation_is_gone,
    gc_releases_reservations_of_attachments_not_in_the_valid_list,
    libcni_and_a_multus_shaped_call_allocate_check_and_release,
    gc_of_one_network_keeps_the_live_addresses_of_another_network_sharing_the_pool,
    an_edited_nad_keeps_its_pool_and_old_pods_release_with_the_new_config,
    del_and_gc_succeed_where_only_add_would_refuse_the_input,
    a_bare_cni_args_ip_gets_the_prefix_of_its_range,
    a_gateway_outside_the_range_is_reported_as_whereabouts_does,
);

#[test]
fn stray_files_in_the_store_directory_keep_status_and_the_tool_working() {
    let lab = Lab::new();
    let conf = lab.conf(json!({"range": "10.100.0.0/24"}));
    ip_of(&lab.add("a", &conf));
    std::fs::write(lab.store().join("README"), "what this directory is").unwrap();
    std::fs::write(lab.store().join("notes.json~"), "{").unwrap();
    std::fs::create_dir(lab.store().join("lost+found")).unwrap();
    let st = lab
        .plugin()
        .vars(&CniVars::command("STATUS"))
        .stdin_json(&conf)
        .run();
    assert!(st.ok(), "{st}");
    assert_eq!(lab.reservations().len(), 1);
    assert!(lab.tool(&["verify"]).contains("no damage"));
}

#[test]
fn a_hung_lock_holder_makes_add_try_again_later_naming_it() {
    let lab = Lab::new();
    let conf = lab.conf(json!({"range": "10.101.0.0/24"}));
    ip_of(&lab.add("a", &conf));
    let pool_lock = std::fs::read_dir(lab.store())
        .unwrap()
        .flatten()
        .map(|e| e.path().join("pool.lock"))
        .find(|p| p.exists())
        .expect("the pool's lock file");
    // A holder that never lets go (a stopped process, a disk stuck in fdatasync).
    // `-o`: the lock stays with flock itself, not with the command it runs.
    let mut holder = std::process::Command::new("flock")
        .arg("-o")
        .arg(&pool_lock)
        .args(["sleep", "60"])
        .spawn()
        .expect("flock");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_to_string("/proc/locks")
        .unwrap()
        .contains(&format!(" {} ", holder.id()))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "flock never took the lock"
        );
        std::thread::yield_now();
    }
    let started = std::time::Instant::now();
    let out = lab.add("b", &conf);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(8),
        "bounded wait"
    );
    assert_eq!(out.error_code(), Some(11), "{out}");
    let msg = out.json()["msg"].as_str().unwrap().to_string();
    assert!(
        msg.contains("pool.lock") && msg.contains(&format!("pid {}", holder.id())),
        "names the lock and its holder: {msg}"
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(
        ip_of(&lab.add("b", &conf)),
        "10.101.0.2/24",
        "and works once it is gone"
    );
}

#[test]
fn datastore_kubernetes_from_whereabouts_flat_file_means_the_node_setting() {
    let lab = Lab::new();
    let flat = lab.scratch.join("whereabouts.conf");
    let log = lab.scratch.join("whereabouts.log");
    std::fs::write(
        &flat,
        json!({"datastore": "kubernetes", "kubernetes": {"kubeconfig": "/k"},
               "log_file": log, "log_level": "info"})
        .to_string(),
    )
    .unwrap();
    let mut conf = lab.conf(json!({"range": "10.102.0.0/24"}));
    conf["ipam"]["configuration_path"] = json!(flat);
    // No node setting: whereabouts' cluster store is what no datastore is, the node's store.
    assert_eq!(ip_of(&lab.add("k", &conf)), "10.102.0.1/24");
    assert_eq!(
        lab.reservations(),
        [("10.102.0.1".to_string(), "k".to_string())]
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("read as the embedded file store in"),
        "{logged}"
    );
    // The node says which store it means: there the next ADD goes, no NAD edited.
    let node_dir = lab.scratch.join("etc-multihome");
    let node_store = lab.scratch.join("node-store");
    std::fs::create_dir(&node_dir).unwrap();
    std::fs::write(
        node_dir.join("whereabouts.conf"),
        json!({"datastore": "file", "store_dir": node_store}).to_string(),
    )
    .unwrap();
    let env = [("MULTIHOME_CONFIG_DIR", node_dir.to_str().unwrap())];
    let out = lab.call_env("ADD", "k2", "net1", "", &conf, &env);
    assert_eq!(ip_of(&out), "10.102.0.1/24", "a store of its own");
    assert!(node_store.join("format").exists(), "in the node's store");
    assert_eq!(lab.reservations().len(), 1, "not in the NAD's store_dir");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("whereabouts.conf says"), "{logged}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&log).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the log file is private whatever the umask");
}

#[test]
fn etcd_host_alone_on_a_node_without_etcd_is_ignored_as_whereabouts_0_6_does() {
    // whereabouts' published etcd example, on a node with no etcd set: the node's file store,
    // and a warning naming the ignored key.
    let lab = Lab::new();
    let log = lab.scratch.join("whereabouts.log");
    let mut conf = lab.conf(json!({"range": "10.104.0.0/24",
        "etcd_host": "example-etcd-cluster-client.cluster.local:2379"}));
    conf["ipam"]["log_file"] = json!(log);
    conf["ipam"]["log_level"] = json!("info");
    assert_eq!(ip_of(&lab.add("h", &conf)), "10.104.0.1/24");
    assert_eq!(
        lab.reservations(),
        [("10.104.0.1".to_string(), "h".to_string())]
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("ipam.etcd_host \"example-etcd-cluster-client.cluster.local:2379\" is set without ipam.datastore")
            && logged.contains("read as the embedded file store in"),
        "{logged}"
    );
    // With another etcd key beside it, the configuration meant etcd: refused, as without
    // etcd_host.
    let mut keyed = conf.clone();
    keyed["ipam"]["etcd_prefix"] = json!("/x");
    let out = lab.add("h2", &keyed);
    assert_eq!(out.error_code(), Some(7), "{out}");
    assert!(
        out.json()["msg"]
            .as_str()
            .unwrap()
            .contains("ipam.etcd_prefix"),
        "{out}"
    );
    assert_eq!(
        lab.reservations().len(),
        1,
        "nothing reserved by the refused ADD"
    );
}

#[test]
fn etcd_host_alone_means_etcd_as_in_whereabouts_0_5() {
    let lab = Lab::with(Backend::Etcd);
    let etcd = lab.etcd.as_ref().unwrap();
    let host = etcd.endpoint(0).trim_start_matches("http://").to_string();
    let conf = json!({"cniVersion": "1.1.0", "name": "wb-net", "type": "whereabouts",
        "ipam": {"type": "whereabouts", "range": "10.103.0.0/24", "etcd_host": host}});
    assert_eq!(ip_of(&lab.add("e", &conf)), "10.103.0.1/24");
    assert_eq!(
        lab.reservations(),
        [("10.103.0.1".to_string(), "e".to_string())]
    );
}

#[test]
fn status_is_code_50_when_etcd_is_unreachable() {
    let lab = Lab::with(Backend::Etcd);
    let conf = lab.conf(json!({"range": "10.94.0.0/24"}));
    let status = |conf: &Value, settings: &NodeSettings| {
        let (k, v) = settings.env();
        lab.plugin()
            .env(&k, &v)
            .vars(&CniVars::command("STATUS"))
            .stdin_json(conf)
            .run()
    };
    let up = status(&conf, &lab.settings);
    assert!(up.ok(), "{up}");
    // The node's etcd is gone (its settings name a port nobody serves).
    let mut gone = conf.clone();
    gone["ipam"]["etcd_endpoints"] = json!(["http://127.0.0.1:9"]);
    gone["ipam"]["etcd_dial_timeout_ms"] = json!(500);
    let st = status(&gone, &NodeSettings::for_conf(&gone));
    assert_eq!(st.error_code(), Some(50), "{st}");
    assert!(st.json()["msg"].as_str().unwrap().contains("etcd"), "{st}");
}

#[test]
fn etcd_pools_forked_by_an_earlier_release_are_merged_on_first_use() {
    // The previous release named a pool of its own by the whole range key, so an edited exclude
    // made a second pool: write one such pool as it did, then use the pool of the edited NAD.
    let lab = Lab::with(Backend::Etcd);
    let etcd = lab.etcd.as_ref().unwrap();
    let legacy = "n=,r=10.104.0.0%2F24%3A10.104.0.1-10.104.0.254";
    let put = |key: &str, value: &str| {
        let out = etcd.etcdctl(&etcd.endpoints(), &["put", key, value]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let p = "/multihome/whereabouts";
    put(
        &format!("{p}/pools/{legacy}"),
        r#"{"network":"","range":"10.104.0.0/24:10.104.0.1-10.104.0.254"}"#,
    );
    put(
        &format!("{p}/ip/{legacy}/4-0a680001"),
        r#"{"container_id":"old","ifname":"net1"}"#,
    );
    put(&format!("{p}/own/{legacy}/c|old|net1/4-0a680001"), "");
    let edited = lab.conf(
        json!({"range": "10.104.0.0/24", "exclude": ["10.104.0.200/32"],
        "enable_overlapping_ranges": false}),
    );
    assert_eq!(
        ip_of(&lab.add("new", &edited)),
        "10.104.0.2/24",
        "the old pod's address is seen by the edited NAD"
    );
    let pools = lab.tool(&["pools"]);
    assert!(
        !pools.contains("10.104.0.1-"),
        "the legacy pool is gone: {pools}"
    );
    assert!(lab.call("DEL", "old", "net1", "", &edited).ok());
    let left: Vec<String> = lab.reservations().into_iter().map(|(_, c)| c).collect();
    assert_eq!(
        left,
        ["new"],
        "the old pod's DEL released its moved address"
    );
    assert!(lab.tool(&["verify"]).contains("no damage"));
}
