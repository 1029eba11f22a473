//! `static` IPAM under a real runtime: our libcni-semantics runtime, the real libcni 1.1.2, a
//! Multus-shaped invocation, and side by side with Debian's reference `static`.

use conformance_tests::{
    ours, reference, CniVars, Invocation, LibcniClient, Netns, Node, PluginDir, Runtime,
    RuntimeConf,
};
use serde_json::{json, Value};

fn ipam(extra: Value) -> Value {
    let mut ipam = json!({"type": "static",
        "addresses": [{"address": "10.66.0.5/24", "gateway": "10.66.0.1"}, {"address": "fd66::5/64"}],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.200.0.0/16", "gw": "10.66.0.254"}],
        "dns": {"nameservers": ["10.66.0.53"], "search": ["lab.test"]}});
    ipam.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    ipam
}

fn conflist(version: &str, plugin: Value) -> Value {
    json!({"cniVersion": version, "name": "static-net", "plugins": [plugin]})
}

fn static_plugin(extra_ipam: Value) -> Value {
    json!({"type": "static", "ipam": ipam(extra_ipam)})
}

fn addresses(result: &Value) -> Vec<String> {
    result["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ip| ip["address"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn libcni_and_our_runtime_get_the_same_result_and_check_and_del_succeed() {
    let node = Node::new("st-node");
    let ctr = Netns::new("st-ctr");
    let dir = PluginDir::ours(&["static"]);
    let list = conflist("1.0.0", static_plugin(json!({})));
    let rt = RuntimeConf::for_netns(ctr.path());

    let libcni = LibcniClient::new(dir.cni_path(), &node);
    let via_libcni = libcni.add(&list, &rt);
    assert!(via_libcni.ok(), "libcni add: {via_libcni}");
    let ours = Runtime::new(dir.cni_path(), &node);
    let via_runtime = ours.add_list(&list, &rt).expect("runtime add");
    assert_eq!(
        via_libcni.json(),
        via_runtime,
        "libcni and our runtime disagree"
    );
    assert_eq!(addresses(&via_runtime), ["10.66.0.5/24", "fd66::5/64"]);
    assert_eq!(via_runtime["ips"][0]["gateway"], "10.66.0.1");
    assert_eq!(
        via_runtime["routes"][1],
        json!({"dst": "10.200.0.0/16", "gw": "10.66.0.254"})
    );
    assert_eq!(
        via_runtime["dns"],
        json!({"nameservers": ["10.66.0.53"], "search": ["lab.test"]})
    );

    let check = libcni.check(&list, &rt);
    assert!(
        check.ok(),
        "libcni check (with the cached result as prevResult): {check}"
    );
    ours.check_list(&list, &rt).expect("runtime check");
    let del = libcni.del(&list, &rt);
    assert!(del.ok(), "libcni del: {del}");
    ours.del_list(&list, &rt).expect("runtime del");
    assert!(
        ours.cached_result("static-net", &rt.container_id, "eth0")
            .is_none(),
        "cache entry removed"
    );
}

#[test]
fn multus_shaped_call_takes_runtime_config_ips_over_args_and_config() {
    let node = Node::new("st-node");
    let ctr = Netns::new("st-ctr");
    let dir = PluginDir::ours(&["static"]);
    let mut plugin = static_plugin(json!({}));
    plugin["capabilities"] = json!({"ips": true});
    plugin["args"] = json!({"cni": {"ips": ["10.66.0.40/24"]}});
    let list = conflist("1.0.0", plugin.clone());
    let runtime = Runtime::new(dir.cni_path(), &node);

    // The network selection element's cni-args alone: args.cni.ips replaces the configured list.
    let pod = RuntimeConf::multus(
        ctr.path(),
        "vms",
        "vm-a",
        "7c1e0c2e-0000-4000-8000-000000000001",
    );
    assert_eq!(
        addresses(&runtime.add_list(&list, &pod).unwrap()),
        ["10.66.0.40/24"]
    );

    // With the `ips` capability argument (what Multus passes from the pod's ips): it wins.
    let pod_ips = RuntimeConf::multus(
        ctr.path(),
        "vms",
        "vm-b",
        "7c1e0c2e-0000-4000-8000-000000000002",
    )
    .with_capability("ips", json!(["10.66.0.41/24", "fd66::41/64"]));
    assert_eq!(
        addresses(&runtime.add_list(&list, &pod_ips).unwrap()),
        ["10.66.0.41/24", "fd66::41/64"]
    );

    // Without the capability declared, the runtime does not pass runtimeConfig at all.
    plugin.as_object_mut().unwrap().remove("capabilities");
    let undeclared = conflist("1.0.0", plugin);
    let pod_c = RuntimeConf::multus(
        ctr.path(),
        "vms",
        "vm-c",
        "7c1e0c2e-0000-4000-8000-000000000003",
    )
    .with_capability("ips", json!(["10.66.0.42/24"]));
    assert_eq!(
        addresses(&runtime.add_list(&undeclared, &pod_c).unwrap()),
        ["10.66.0.40/24"]
    );
    for rt in [pod, pod_ips, pod_c] {
        runtime.del_list(&list, &rt).unwrap();
    }
}

#[test]
fn cni_args_ip_is_appended_with_its_gateway() {
    let node = Node::new("st-node");
    let ctr = Netns::new("st-ctr");
    let dir = PluginDir::ours(&["static"]);
    let list = conflist("0.4.0", static_plugin(json!({})));
    let rt = RuntimeConf::for_netns(ctr.path())
        .with_arg("IP", "10.67.0.9/24")
        .with_arg("GATEWAY", "10.67.0.1");
    let r = Runtime::new(dir.cni_path(), &node)
        .add_list(&list, &rt)
        .unwrap();
    assert_eq!(
        addresses(&r),
        ["10.66.0.5/24", "fd66::5/64", "10.67.0.9/24"]
    );
    assert_eq!(
        r["ips"][2],
        json!({"version": "4", "address": "10.67.0.9/24", "gateway": "10.67.0.1"})
    );
}

#[test]
fn an_invalid_entry_is_code_7_naming_it_through_libcni() {
    let node = Node::new("st-node");
    let ctr = Netns::new("st-ctr");
    let dir = PluginDir::ours(&["static"]);
    let list = conflist(
        "1.0.0",
        static_plugin(
            json!({"addresses": [{"address": "10.66.0.5/24"}, {"address": "10.66.0.500/24"}]}),
        ),
    );
    let out =
        LibcniClient::new(dir.cni_path(), &node).add(&list, &RuntimeConf::for_netns(ctr.path()));
    assert!(!out.ok(), "{out}");
    let e = out.json();
    assert_eq!(e["code"], 7, "{e}");
    assert!(
        e["msg"]
            .as_str()
            .unwrap()
            .contains("ipam.addresses[1].address"),
        "{e}"
    );
    // The DEL that follows a refused ADD (Multus' rollback) succeeds: static holds nothing.
    let del =
        LibcniClient::new(dir.cni_path(), &node).del(&list, &RuntimeConf::for_netns(ctr.path()));
    assert!(del.ok(), "{del}");
    // Two IPv4 addresses at 0.2.0 cannot be carried: refused with 1, before any result.
    let legacy = conflist(
        "0.2.0",
        static_plugin(
            json!({"addresses": [{"address": "10.66.0.5/24"}, {"address": "10.66.0.6/24"}]}),
        ),
    );
    let out =
        LibcniClient::new(dir.cni_path(), &node).add(&legacy, &RuntimeConf::for_netns(ctr.path()));
    assert_eq!(out.json()["code"], 1, "{out}");
}

/// The same call given to ours and to Debian's reference static prints the same result.
#[test]
fn results_match_the_reference_static_in_every_version_it_speaks() {
    let node = Node::new("st-node");
    let ctr = Netns::new("st-ctr");
    for version in ["0.3.0", "0.3.1", "0.4.0", "1.0.0"] {
        let conf = json!({"cniVersion": version, "name": "diff", "type": "static", "ipam": ipam(json!({}))});
        let vars = CniVars {
            command: "ADD".into(),
            container_id: "diff-1".into(),
            netns: ctr.path().display().to_string(),
            ifname: "eth0".into(),
            args: "IgnoreUnknown=1;IP=10.68.0.3/24;GATEWAY=10.68.0.1".into(),
            path: "/usr/lib/cni".into(),
        };
        let run = |bin| {
            Invocation::new(bin)
                .in_node(&node)
                .vars(&vars)
                .stdin_json(&conf)
                .run()
        };
        let (theirs, mine) = (run(reference("static")), run(ours("static")));
        assert!(
            theirs.ok() && mine.ok(),
            "{version}: reference {theirs} / ours {mine}"
        );
        assert_eq!(
            mine.json(),
            theirs.json(),
            "{version}: ours differs from the reference"
        );
    }
}
