//! Real runtimes drive the plugins (issue 19): podman 4.3 with its CNI backend and containerd 1.6
//! through `ctr run --cni` (go-cni), inside node namespaces, on a busybox root filesystem made at
//! test time; our bridge with whereabouts and with static. Each test checks what the runtime's
//! calls leave on the node (links, nftables objects, reservations) and that containers talk.

use std::path::Path;
use std::process::Command;

use conformance_tests::runtimes::{Containerd, Podman};
use conformance_tests::{ours, PluginDir, TempDir};
use serde_json::{json, Value};

/// Reservations (address, container ID) of the whereabouts store at `dir`.
fn reservations(dir: &Path) -> Vec<(String, String)> {
    let out = Command::new(ours("multihome-ipam"))
        .arg("--store-dir")
        .arg(dir)
        .arg("list")
        .output()
        .expect("multihome-ipam");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: Vec<(String, String)> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3).then(|| (f[1].to_string(), f[2].to_string()))
        })
        .collect();
    v.sort();
    v
}

/// The node's links enslaved to `bridge`, as `ip -j -d link` objects.
fn ports(node: &conformance_tests::Node, bridge: &str) -> Vec<Value> {
    let out = node.run_ok(&["ip", "-j", "-d", "link", "show", "master", bridge]);
    serde_json::from_str(&out).unwrap_or_default()
}

fn nft(node: &conformance_tests::Node) -> String {
    let out = node.run(&["nft", "list", "ruleset"]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The conflist of a bridge network with whereabouts on the file store at `store`, the MAC
/// spoof check and masquerading on (so that each attachment has nftables objects).
fn whereabouts_list(name: &str, bridge: &str, subnet: &str, store: &Path) -> Value {
    let gw = subnet.replace(".0/24", ".1");
    json!({"cniVersion": "1.0.0", "name": name, "plugins": [{
        "type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": true, "macspoofchk": true,
        "ipam": {"type": "whereabouts", "range": subnet, "gateway": gw, "store_dir": store}}]})
}

/// Nothing of the runtime's containers on the node: no bridge port, no spoof-check chain, no
/// masquerade rule, no reservation.
fn assert_nothing_left(node: &conformance_tests::Node, bridge: &str, store: Option<&Path>) {
    assert_eq!(ports(node, bridge), Vec::<Value>::new(), "ports left");
    let rules = nft(node);
    assert!(!rules.contains("chain cni-br-iface-"), "{rules}");
    assert!(!rules.contains(" masquerade comment"), "{rules}");
    if let Some(store) = store {
        assert_eq!(reservations(store), vec![], "reservations left");
    }
}

#[test]
fn podman_with_bridge_and_whereabouts_from_run_to_rm() {
    let plugins = PluginDir::ours(&["bridge", "whereabouts"]);
    let pm = Podman::new("pm-wb", &[plugins.path()]);
    let scratch = TempDir::new("pm-wb-store");
    let store = scratch.join("wb");
    pm.write_conflist(
        "mh-wb",
        &whereabouts_list("mh-wb", "cni-mh0", "10.89.7.0/24", &store),
    );
    let a = pm.run("a", "mh-wb", &[]);
    assert!(a.status.success(), "{a:?}");
    // `--ip` reaches the plugins as a bare CNI_ARGS IP (no prefix): whereabouts reserves it
    // with the range's prefix. `--mac-address` as CNI_ARGS MAC.
    let b = pm.run(
        "b",
        "mh-wb",
        &["--ip", "10.89.7.50", "--mac-address", "02:11:22:33:44:55"],
    );
    assert!(b.status.success(), "{b:?}");
    let ip_a = pm.ip_of("a", "mh-wb");
    assert_eq!(pm.ip_of("b", "mh-wb"), "10.89.7.50");
    assert!(pm.addresses("b").contains("inet 10.89.7.50/24"));
    assert!(pm.link("b").contains("02:11:22:33:44:55"));
    assert!(pm.reaches("a", "10.89.7.50") && pm.reaches("b", &ip_a));
    assert!(pm.reaches("a", "10.89.7.1"), "the gateway on the bridge");
    let held: Vec<String> = reservations(&store).into_iter().map(|r| r.0).collect();
    assert_eq!(held.len(), 2, "{held:?}");
    assert!(held.contains(&ip_a) && held.contains(&"10.89.7.50".to_string()));
    assert_eq!(ports(&pm.node, "cni-mh0").len(), 2);
    assert_eq!(nft(&pm.node).matches(" masquerade comment").count(), 2);

    // stop (DEL), start (ADD), restart: one reservation per live container throughout.
    pm.ok(&["stop", "-t", "0", "a"]);
    assert_eq!(reservations(&store).len(), 1);
    assert_eq!(ports(&pm.node, "cni-mh0").len(), 1);
    pm.ok(&["start", "a"]);
    let ip_a = pm.ip_of("a", "mh-wb");
    assert!(pm.reaches("b", &ip_a));
    pm.ok(&["restart", "-t", "0", "b"]);
    assert_eq!(pm.ip_of("b", "mh-wb"), "10.89.7.50", "--ip again");
    assert!(pm.reaches("b", &ip_a));
    assert_eq!(reservations(&store).len(), 2);
    // network reload: podman's DEL and ADD again, the same addresses kept.
    pm.ok(&["network", "reload", "--all"]);
    assert!(pm.reaches("a", "10.89.7.50"));
    let held: Vec<String> = reservations(&store).into_iter().map(|r| r.0).collect();
    assert_eq!(held.len(), 2, "{held:?}");
    assert_eq!(ports(&pm.node, "cni-mh0").len(), 2);

    pm.ok(&["rm", "-f", "-t", "0", "a", "b"]);
    assert_nothing_left(&pm.node, "cni-mh0", Some(&store));
}

/// One static network per container (static hands the same address to everyone on a network).
fn static_list(name: &str, address: &str) -> Value {
    json!({"cniVersion": "1.0.0", "name": name, "plugins": [{
        "type": "bridge", "bridge": "cni-st0", "macspoofchk": true,
        "ipam": {"type": "static", "addresses": [{"address": address}]}}]})
}

#[test]
fn podman_with_bridge_and_static_and_its_bare_ip_refused_as_by_the_reference() {
    let plugins = PluginDir::ours(&["bridge", "static"]);
    let pm = Podman::new("pm-st", &[plugins.path()]);
    pm.write_conflist("st-a", &static_list("st-a", "10.89.9.2/24"));
    pm.write_conflist("st-b", &static_list("st-b", "10.89.9.3/24"));
    assert!(pm.run("a", "st-a", &[]).status.success());
    let b = pm.run("b", "st-b", &["--mac-address", "02:11:22:33:44:66"]);
    assert!(b.status.success(), "{b:?}");
    assert!(pm.addresses("a").contains("inet 10.89.9.2/24"));
    assert!(pm.link("b").contains("02:11:22:33:44:66"));
    assert!(pm.reaches("a", "10.89.9.3") && pm.reaches("b", "10.89.9.2"));
    pm.ok(&["restart", "-t", "0", "a"]);
    assert!(pm.reaches("b", "10.89.9.2"));
    assert_eq!(ports(&pm.node, "cni-st0").len(), 2);

    // podman passes `--ip` as a bare CNI_ARGS IP; static has no range to take a prefix from, so
    // it refuses with 7 naming the entry (the reference static refuses too: "expected to be in
    // CIDR notation"), and the refused ADD leaves no port behind.
    let c = pm.run("c", "st-a", &["--ip", "10.89.9.5"]);
    let said = String::from_utf8_lossy(&c.stderr);
    assert!(!c.status.success());
    assert!(
        said.contains("CNI_ARGS IP entry \"10.89.9.5\"") && said.contains("missing /prefix"),
        "{said}"
    );
    assert_eq!(ports(&pm.node, "cni-st0").len(), 2);
    pm.ok(&["rm", "-f", "--ignore", "-t", "0", "a", "b", "c"]);
    assert_nothing_left(&pm.node, "cni-st0", None);
    drop(pm);

    let refs = PluginDir::reference(&["bridge", "static"]);
    let pm = Podman::new("pm-st-ref", &[refs.path()]);
    pm.write_conflist("st-a", &static_list("st-a", "10.89.9.2/24"));
    let c = pm.run("c", "st-a", &["--ip", "10.89.9.5"]);
    assert!(!c.status.success());
    assert!(String::from_utf8_lossy(&c.stderr).contains("CIDR notation"));
}

#[test]
fn podmans_own_generated_conflist_runs_our_bridge_in_place_of_the_reference() {
    // podman writes bridge + portmap + firewall + tuning with host-local; our bridge comes
    // first in the plugin path, the reference's others and host-local after it.
    let plugins = PluginDir::ours(&["bridge"]);
    let pm = Podman::new(
        "pm-gen",
        &[
            plugins.path(),
            Path::new(conformance_tests::plugin::REFERENCE_DIR),
        ],
    );
    pm.ok(&["network", "create", "--subnet", "10.89.10.0/24", "mhgen"]);
    let written = std::fs::read_to_string(pm.net_dir().join("mhgen.conflist")).unwrap();
    let list: Value = serde_json::from_str(&written).unwrap();
    let types: Vec<&str> = list["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["type"].as_str())
        .collect();
    assert_eq!(types[0], "bridge", "{written}");
    let bridge = list["plugins"][0]["bridge"].as_str().unwrap().to_string();
    assert!(pm.run("a", "mhgen", &[]).status.success());
    assert!(pm.run("b", "mhgen", &[]).status.success());
    let (ip_a, ip_b) = (pm.ip_of("a", "mhgen"), pm.ip_of("b", "mhgen"));
    assert!(ip_a.starts_with("10.89.10.") && ip_b.starts_with("10.89.10."));
    assert!(pm.reaches("a", &ip_b));
    // Ours made the ports: its host veths carry the owner alias the reference never sets.
    let ports_now = ports(&pm.node, &bridge);
    assert_eq!(ports_now.len(), 2);
    assert!(
        ports_now.iter().all(|p| p["ifalias"].is_string()),
        "{ports_now:?}"
    );
    pm.ok(&["rm", "-f", "-t", "0", "a", "b"]);
    assert_eq!(ports(&pm.node, &bridge), Vec::<Value>::new());
}

#[test]
fn containerd_ctr_run_cni_with_bridge_and_whereabouts_and_its_empty_netns_del() {
    let scratch = TempDir::new("ct-wb");
    let store = scratch.join("wb");
    let conf_dir = scratch.join("net.d");
    std::fs::create_dir_all(&conf_dir).unwrap();
    std::fs::write(
        conf_dir.join("10-mh.conflist"),
        whereabouts_list("mh-ct", "cni-mh1", "10.89.8.0/24", &store).to_string(),
    )
    .unwrap();
    // Our bridge behind a recorder of what ctr passes (the command and CNI_NETNS).
    let calls = scratch.join("calls");
    let plugins = PluginDir::ours(&["whereabouts"]).with_script(
        "bridge",
        &format!(
            "echo \"$CNI_COMMAND netns=$CNI_NETNS\" >> {}\nexec {} \"$@\"",
            calls.display(),
            ours("bridge").display()
        ),
    );
    let ct = Containerd::start("ct-wb", &conf_dir, plugins.path());
    let a = ct.run("a");
    let b = ct.run("b");
    let (ip_a, ip_b) = (ct.ip_of("a"), ct.ip_of("b"));
    assert!(ip_a.starts_with("10.89.8.") && ip_b.starts_with("10.89.8."));
    assert!(ct.reaches("a", &ip_b) && ct.reaches("b", &ip_a));
    assert!(ct.reaches("a", "10.89.8.1"), "the gateway on the bridge");
    assert_eq!(reservations(&store).len(), 2);
    assert_eq!(ports(&ct.node, "cni-mh1").len(), 2);
    assert_eq!(nft(&ct.node).matches(" masquerade comment").count(), 2);
    // The task ends; ctr sends the DEL with an empty CNI_NETNS (the namespace went with the
    // task): it succeeds and frees the address, the port and the nftables objects.
    ct.stop(a);
    let log = std::fs::read_to_string(&calls).unwrap();
    assert!(log.lines().any(|l| l == "DEL netns="), "{log}");
    let held: Vec<String> = reservations(&store).into_iter().map(|r| r.0).collect();
    assert_eq!(held, vec![ip_b.clone()]);
    assert_eq!(ports(&ct.node, "cni-mh1").len(), 1);
    assert_eq!(nft(&ct.node).matches(" masquerade comment").count(), 1);
    assert_eq!(ct.task_state("a"), None, "ctr run --rm removed it");
    // Started again under the same name.
    let a = ct.run("a");
    let ip_a = ct.ip_of("a");
    assert!(ct.reaches("b", &ip_a));
    ct.stop(a);
    ct.stop(b);
    assert_nothing_left(&ct.node, "cni-mh1", Some(&store));
}

#[test]
fn containerd_ctr_run_cni_with_bridge_and_static() {
    let scratch = TempDir::new("ct-st");
    let conf_dir = scratch.join("net.d");
    std::fs::create_dir_all(&conf_dir).unwrap();
    std::fs::write(
        conf_dir.join("10-st.conflist"),
        json!({"cniVersion": "1.0.0", "name": "st-ct", "plugins": [{
            "type": "bridge", "bridge": "cni-st1", "isGateway": true, "macspoofchk": true,
            "ipam": {"type": "static", "addresses": [{"address": "10.89.11.2/24", "gateway": "10.89.11.1"}]}}]})
        .to_string(),
    )
    .unwrap();
    let plugins = PluginDir::ours(&["bridge", "static"]);
    let ct = Containerd::start("ct-st", &conf_dir, plugins.path());
    let a = ct.run("a");
    assert_eq!(ct.ip_of("a"), "10.89.11.2");
    assert!(ct.reaches("a", "10.89.11.1"), "the gateway on the bridge");
    assert_eq!(ports(&ct.node, "cni-st1").len(), 1);
    ct.stop(a);
    assert_nothing_left(&ct.node, "cni-st1", None);
}
