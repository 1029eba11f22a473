//! Tests of the harness itself, against Debian's reference plugins: they
//! prove the namespaces, the Rust runtime and the libcni client behave as a
//! real CNI runtime does before the suite trusts them with our plugins.

use std::collections::BTreeSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use conformance_tests::{
    require_root, CniError, Invocation, LibcniClient, Netns, Node, PluginDir, Runtime, RuntimeConf,
    TempDir,
};
use serde_json::{json, Value};

/// Network name of the bridge conflists.
const NET: &str = "mhnet";

/// A node and a container namespace, and the state dirs the reference
/// plugins need; all removed on drop, even when the test fails.
struct Pod {
    node: Node,
    container: Netns,
    state: TempDir,
}

impl Pod {
    fn new(tag: &str) -> Pod {
        require_root();
        Pod {
            node: Node::new(&format!("{tag}n")),
            container: Netns::new(&format!("{tag}c")),
            state: TempDir::new("state"),
        }
    }

    fn rt(&self) -> RuntimeConf {
        RuntimeConf::for_netns(self.container.path())
    }

    /// bridge `mhbr0` with host-local IPAM on 10.99.0.0/24.
    fn bridge(&self) -> Value {
        json!({
            "type": "bridge",
            "bridge": "mhbr0",
            "ipam": {
                "type": "host-local",
                "subnet": "10.99.0.0/24",
                "dataDir": self.state.join("host-local"),
            }
        })
    }

    fn tuning(&self) -> Value {
        json!({"type": "tuning", "dataDir": self.state.join("tuning")})
    }
}

fn conflist(plugins: &[Value]) -> Value {
    json!({"cniVersion": "1.0.0", "name": NET, "plugins": plugins})
}

fn first_address(result: &Value) -> String {
    let address = result["ips"][0]["address"].as_str();
    address
        .unwrap_or_else(|| panic!("result has no ips[0].address: {result}"))
        .to_owned()
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// A script plugin that records its stdin, environment and network
/// namespace next to itself, then prints an empty 1.0.0 result.
fn recorder() -> PluginDir {
    PluginDir::empty().with_script(
        "recorder",
        r#"d=$(dirname "$0")
cat > "$d/stdin.$CNI_COMMAND"
env > "$d/env.$CNI_COMMAND"
readlink /proc/self/ns/net > "$d/netns.$CNI_COMMAND"
echo '{"cniVersion":"1.0.0"}'"#,
    )
}

fn recorded(dir: &PluginDir, what: &str) -> String {
    std::fs::read_to_string(dir.path().join(what))
        .unwrap_or_else(|e| panic!("{what} not recorded: {e}"))
}

#[test]
fn netns_exists_with_lo_up_and_is_gone_after_drop() {
    require_root();
    let ns = Netns::new("life");
    let (name, path) = (ns.name().to_owned(), ns.path().to_path_buf());
    assert!(Netns::exists(&name), "{name} not listed");
    assert!(path.exists());
    assert!(ns
        .run_ok(&["ip", "-br", "link", "show", "lo"])
        .contains("UP"));
    drop(ns);
    assert!(!Netns::exists(&name), "{name} still listed after drop");
    assert!(!path.exists());
}

#[test]
fn netns_is_deleted_when_the_test_panics() {
    require_root();
    let name = std::sync::Mutex::new(String::new());
    let unwound = std::panic::catch_unwind(|| {
        let ns = Netns::new("panic");
        *name.lock().unwrap() = ns.name().to_owned();
        panic!("deliberate");
    });
    assert!(unwound.is_err());
    let name = name.into_inner().unwrap();
    assert!(
        !name.is_empty() && !Netns::exists(&name),
        "{name} survived a panic"
    );
}

#[test]
fn plugins_run_in_the_node_namespace_with_only_path_and_the_six_cni_variables() {
    require_root();
    let node = Node::new("envn");
    let plugins = recorder();
    let runtime = Runtime::new(plugins.cni_path(), &node);
    let conf = json!({"cniVersion": "1.0.0", "name": "rec", "type": "recorder"});
    let rt = RuntimeConf::new("c1", Path::new("/run/netns/none"), "eth9")
        .with_arg("A", "1")
        .with_arg("B", "2");
    runtime.add(&conf, &rt).expect("recorder ADD");

    let node_inode = std::fs::metadata(node.path()).unwrap().ino();
    assert_eq!(
        recorded(&plugins, "netns.ADD").trim(),
        format!("net:[{node_inode}]")
    );
    let env: BTreeSet<String> = recorded(&plugins, "env.ADD")
        .lines()
        .map(str::to_owned)
        .collect();
    let names: BTreeSet<&str> = env.iter().filter_map(|l| l.split('=').next()).collect();
    let expected = [
        "CNI_ARGS",
        "CNI_COMMAND",
        "CNI_CONTAINERID",
        "CNI_IFNAME",
        "CNI_NETNS",
        "CNI_PATH",
        "PATH",
    ];
    assert!(
        expected.iter().all(|k| names.contains(k)),
        "missing CNI vars in {env:?}"
    );
    let extra: Vec<&&str> = names
        .iter()
        .filter(|k| !expected.contains(k) && !["PWD", "SHLVL", "_"].contains(k))
        .collect();
    assert!(extra.is_empty(), "unexpected variables {extra:?}");
    for line in [
        "CNI_COMMAND=ADD",
        "CNI_CONTAINERID=c1",
        "CNI_IFNAME=eth9",
        "CNI_ARGS=A=1;B=2",
        "CNI_NETNS=/run/netns/none",
    ] {
        assert!(env.contains(line), "{line} not in {env:?}");
    }
    assert!(env.contains(&format!("CNI_PATH={}", plugins.path().display())));
    let stdin: Value = serde_json::from_str(&recorded(&plugins, "stdin.ADD")).unwrap();
    assert_eq!(
        stdin,
        json!({"cniVersion": "1.0.0", "name": "rec", "type": "recorder"})
    );
}

#[test]
fn invocation_refuses_to_start_when_the_node_namespace_cannot_be_entered() {
    require_root();
    let plugins = recorder();
    let not_a_netns = TempDir::new("notns");
    let bogus = not_a_netns.join("file");
    std::fs::write(&bogus, "").unwrap();
    let run = Invocation::new(plugins.plugin("recorder"))
        .in_netns_path(&bogus)
        .env("CNI_COMMAND", "ADD")
        .try_run();
    assert!(run.is_err(), "spawned despite failing setns: {run:?}");
    assert!(
        !plugins.path().join("env.ADD").exists(),
        "plugin ran anyway"
    );
}

#[test]
#[should_panic(expected = "outside a node namespace")]
fn invocation_without_a_node_refuses_network_commands() {
    require_root();
    let plugins = recorder();
    let _ = Invocation::new(plugins.plugin("recorder"))
        .env("CNI_COMMAND", "ADD")
        .try_run();
}

#[test]
fn bridge_add_check_del_through_the_rust_runtime() {
    let pod = Pod::new("rs");
    let plugins = PluginDir::reference(&["bridge", "host-local"]);
    let runtime = Runtime::new(plugins.cni_path(), &pod.node);
    let list = conflist(&[pod.bridge()]);
    let rt = pod.rt();

    let result = runtime.add_list(&list, &rt).expect("ADD");
    let address = first_address(&result);
    assert!(address.starts_with("10.99.0."), "{address}");
    assert!(
        pod.container.addresses("eth0").contains(&address),
        "eth0 lacks {address}"
    );
    assert!(
        pod.node.has_link("mhbr0"),
        "bridge not in the node namespace"
    );
    let cache_file = runtime.cache().file(NET, &rt.container_id, "eth0");
    let mode = std::fs::metadata(&cache_file)
        .expect("cache file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        runtime.cached_result(NET, &rt.container_id, "eth0"),
        Some(result.clone())
    );
    assert_eq!(
        runtime.cached_attachments(NET),
        vec![(rt.container_id.clone(), "eth0".to_owned())]
    );

    runtime.check_list(&list, &rt).expect("CHECK");
    runtime.del_list(&list, &rt).expect("DEL");
    assert!(!pod.container.has_link("eth0"), "eth0 survived DEL");
    assert!(!cache_file.exists(), "cache entry survived DEL");
    assert!(runtime.cached_attachments(NET).is_empty());
}

#[test]
fn libcni_client_gives_the_same_result_shape_and_deletes() {
    let pod = Pod::new("go");
    let plugins = PluginDir::reference(&["bridge", "host-local"]);
    let client = LibcniClient::new(plugins.cni_path(), &pod.node);
    let list = conflist(&[pod.bridge()]);
    let rt = pod.rt();

    let added = client.add(&list, &rt);
    assert!(added.ok(), "libcni ADD: {added}");
    let result = added.json();
    assert!(
        keys(&result).is_superset(&["interfaces".into(), "ips".into()].into()),
        "{result}"
    );
    let address = first_address(&result);
    assert!(address.starts_with("10.99.0."), "{address}");
    assert!(
        pod.container.addresses("eth0").contains(&address),
        "eth0 lacks {address}"
    );
    let cache_file = client
        .cache_dir()
        .join(format!("results/{NET}-{}-eth0", rt.container_id));
    assert!(cache_file.exists(), "libcni wrote no cache entry");

    let twin = Pod::new("gort");
    let rust = Runtime::new(plugins.cni_path(), &twin.node);
    let rust_result = rust
        .add_list(&conflist(&[twin.bridge()]), &twin.rt())
        .expect("Rust ADD");
    assert_eq!(keys(&rust_result), keys(&result));
    assert_eq!(keys(&rust_result["ips"][0]), keys(&result["ips"][0]));
    assert_eq!(
        keys(&rust_result["interfaces"][2]),
        keys(&result["interfaces"][2])
    );

    let checked = client.check(&list, &rt);
    assert!(checked.ok(), "libcni CHECK: {checked}");
    let deleted = client.del(&list, &rt);
    assert!(deleted.ok(), "libcni DEL: {deleted}");
    assert!(!pod.container.has_link("eth0"), "eth0 survived DEL");
    assert!(!cache_file.exists(), "cache entry survived DEL");
}

#[test]
fn chained_plugin_gets_the_previous_result_and_del_runs_in_reverse() {
    let pod = Pod::new("chain");
    let plugins = PluginDir::reference(&["bridge", "host-local", "tuning"]);
    let runtime = Runtime::new(plugins.cni_path(), &pod.node);
    let list = conflist(&[pod.bridge(), pod.tuning()]);
    let rt = pod.rt();

    let result = runtime.add_list(&list, &rt).expect("ADD");
    let calls = runtime.calls();
    let (bridge, tuning) = (&calls[0], &calls[1]);
    assert_eq!(
        (bridge.plugin_type.as_str(), tuning.plugin_type.as_str()),
        ("bridge", "tuning")
    );
    assert!(
        bridge.stdin.get("prevResult").is_none(),
        "first plugin got a prevResult"
    );
    assert_eq!(tuning.stdin["prevResult"], bridge.outcome.json());
    assert_eq!(
        tuning.outcome.json(),
        bridge.outcome.json(),
        "tuning did not pass prevResult through"
    );
    assert_eq!(result, bridge.outcome.json());
    assert_eq!(tuning.stdin["name"], json!(NET));

    runtime.del_list(&list, &rt).expect("DEL");
    let dels: Vec<_> = runtime
        .calls()
        .into_iter()
        .filter(|c| c.command == "DEL")
        .collect();
    let order: Vec<&str> = dels.iter().map(|c| c.plugin_type.as_str()).collect();
    assert_eq!(order, ["tuning", "bridge"]);
    assert!(
        dels.iter().all(|c| c.stdin["prevResult"] == result),
        "DEL lacked the cached result"
    );
}

/// `static` run as the plugin itself, asked for 10.5.0.7/24 via `ips`.
fn static_with_ips(declared: bool) -> (Result<Value, CniError>, Value) {
    let pod = Pod::new(if declared { "capy" } else { "capn" });
    let plugins = PluginDir::reference(&["static"]);
    let runtime = Runtime::new(plugins.cni_path(), &pod.node);
    let mut conf =
        json!({"cniVersion": "1.0.0", "name": "t", "type": "static", "ipam": {"type": "static"}});
    if declared {
        conf["capabilities"] = json!({"ips": true});
    }
    let rt = pod
        .rt()
        .with_capability("ips", json!(["10.5.0.7/24"]))
        .with_capability("mac", json!("02:00:00:00:00:01"));
    let result = runtime.add(&conf, &rt);
    (result, runtime.calls()[0].stdin.clone())
}

#[test]
fn plugin_declaring_the_ips_capability_gets_runtime_config_ips() {
    let (result, stdin) = static_with_ips(true);
    assert_eq!(stdin["runtimeConfig"], json!({"ips": ["10.5.0.7/24"]}));
    assert_eq!(
        stdin["capabilities"],
        json!({"ips": true}),
        "capabilities must stay in the config"
    );
    assert_eq!(
        result.expect("ADD")["ips"][0]["address"],
        json!("10.5.0.7/24")
    );
}

#[test]
fn plugin_not_declaring_the_ips_capability_gets_no_runtime_config() {
    let (result, stdin) = static_with_ips(false);
    assert!(stdin.get("runtimeConfig").is_none(), "{stdin}");
    let ips = result
        .expect("ADD")
        .get("ips")
        .cloned()
        .unwrap_or(json!([]));
    assert_eq!(ips, json!([]));
}

#[test]
fn multus_runtime_conf_has_the_kubernetes_cni_args_shape() {
    require_root();
    let rt = RuntimeConf::multus(Path::new("/run/netns/x"), "default", "web-0", "4c7e-uid");
    let cid = &rt.container_id;
    assert_eq!(cid.len(), 64);
    assert!(
        cid.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
        "{cid}"
    );
    assert_eq!(
        rt.cni_args(),
        format!("IgnoreUnknown=true;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID={cid};K8S_POD_UID=4c7e-uid")
    );
    assert_eq!(rt.ifname, "eth0");
    let other = RuntimeConf::multus(Path::new("/run/netns/x"), "default", "web-0", "4c7e-uid");
    assert_ne!(&other.container_id, cid, "container IDs must be fresh");
}

#[test]
fn gc_passes_valid_attachments_and_empty_container_variables() {
    require_root();
    let node = Node::new("gcn");
    let plugins = recorder();
    let runtime = Runtime::new(plugins.cni_path(), &node);
    let list = json!({"cniVersion": "1.1.0", "name": "rec", "plugins": [{"type": "recorder"}]});
    runtime
        .gc_list(&list, &[("c1".into(), "eth0".into())])
        .expect("GC");

    let stdin: Value = serde_json::from_str(&recorded(&plugins, "stdin.GC")).unwrap();
    assert_eq!(
        stdin["cni.dev/valid-attachments"],
        json!([{"containerID": "c1", "ifname": "eth0"}])
    );
    assert_eq!(
        (&stdin["name"], &stdin["cniVersion"]),
        (&json!("rec"), &json!("1.1.0"))
    );
    let env = recorded(&plugins, "env.GC");
    for line in [
        "CNI_COMMAND=GC",
        "CNI_CONTAINERID=",
        "CNI_NETNS=",
        "CNI_IFNAME=",
        "CNI_ARGS=",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} not in {env}");
    }
    runtime.status_list(&list).expect("STATUS");
    assert!(recorded(&plugins, "env.STATUS")
        .lines()
        .any(|l| l == "CNI_COMMAND=STATUS"));
}

#[test]
fn version_probe_agrees_with_libcni() {
    require_root();
    let node = Node::new("ver");
    let plugins = PluginDir::reference(&["bridge"]);
    let ours = Runtime::new(plugins.cni_path(), &node)
        .version("bridge")
        .expect("VERSION");
    let libcni = LibcniClient::new(plugins.cni_path(), &node).version("bridge");
    assert!(libcni.ok(), "libcni VERSION: {libcni}");
    assert_eq!(
        ours["supportedVersions"],
        libcni.json()["supportedVersions"]
    );
    assert!(ours["supportedVersions"]
        .as_array()
        .unwrap()
        .contains(&json!("1.0.0")));
}

#[test]
fn plugin_errors_are_decoded_the_same_by_both_runtimes() {
    let pod = Pod::new("err");
    let plugins = PluginDir::reference(&["static"]);
    let conf = json!({"cniVersion": "1.0.0", "name": "t", "type": "static",
        "ipam": {"type": "static", "addresses": [{"address": "bogus"}]}});
    let err = Runtime::new(plugins.cni_path(), &pod.node)
        .add(&conf, &pod.rt())
        .expect_err("bogus address accepted");
    assert_eq!(err.plugin, "static");
    let libcni = LibcniClient::new(plugins.cni_path(), &pod.node).add(&conf, &pod.rt());
    assert_eq!(libcni.code, 1);
    assert_eq!(libcni.error_code(), Some(err.code));
    assert_eq!(libcni.json()["msg"], json!(err.msg));
}

#[test]
fn missing_plugin_is_a_runtime_error() {
    let pod = Pod::new("miss");
    let plugins = PluginDir::empty();
    let err =
        Runtime::new(plugins.cni_path(), &pod.node).add_list(&conflist(&[pod.bridge()]), &pod.rt());
    assert_eq!(
        err.expect_err("found a plugin in an empty dir").code,
        CniError::RUNTIME
    );
    let libcni =
        LibcniClient::new(plugins.cni_path(), &pod.node).add(&conflist(&[pod.bridge()]), &pod.rt());
    assert_eq!(libcni.error_code(), Some(CniError::RUNTIME));
}
