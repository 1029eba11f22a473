use std::path::PathBuf;

use cni::args::CniArgs;
use cni::env::{Command, Env};
use cni::{Call, NetConf};
use serde_json::{json, Value};

use super::*;

fn call_with(conf: Value, args: &str) -> Call {
    Call {
        env: Env {
            command: Command::Add,
            container_id: "c1".into(),
            netns: Some(PathBuf::from("/run/netns/x")),
            ifname: "net1".into(),
            args: CniArgs::parse(args).unwrap(),
            path: vec![],
        },
        conf: NetConf::parse(conf.to_string().as_bytes()).unwrap(),
    }
}

fn parse(extra: Value) -> Result<OvnConf, Error> {
    let mut c = json!({
        "cniVersion": "1.0.0", "name": "private-overlay", "type": "ovn-k8s-cni-overlay",
        "topology": "layer2", "netAttachDefName": "ns1/private-overlay",
        "nodeConfig": "/dev/null/none-needed"
    });
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    if c["nodeConfig"] == "/dev/null/none-needed" {
        c.as_object_mut().unwrap().remove("nodeConfig");
    }
    OvnConf::from_call(&call_with(c, ""), None)
}

fn err(extra: Value) -> Error {
    let e = parse(extra).unwrap_err();
    assert_eq!(e.code, 7, "{}", e.msg);
    e
}

#[test]
fn the_documentation_nad_parses_with_ovn_kubernetes_defaults() {
    let c = parse(json!({"cniVersion": "0.4.0"})).unwrap();
    assert_eq!(c.topology, Topology::Layer2);
    assert_eq!(c.mtu, 1400);
    assert!(c.subnets.is_empty());
    assert_eq!(c.nad, "ns1/private-overlay");
    assert_eq!(c.nbdb, DEFAULT_NBDB);
    assert_eq!(c.ovsdb, DEFAULT_OVSDB);
    let l = parse(json!({"topology": "localnet", "vlanID": 100})).unwrap();
    assert_eq!(
        (l.mtu, l.vlan, l.physical_network.as_str()),
        (1400, Some(100), "private-overlay")
    );
}

#[test]
fn empty_and_zero_values_are_absent_as_ovn_kubernetes_reads_them() {
    // What OVN-Kubernetes' e2e and its renderers write: every field, the unused ones empty.
    let empty = json!({"infrastructureSubnets": "", "reservedSubnets": "", "defaultGatewayIPs": "",
        "joinSubnet": "", "transitSubnet": "", "role": "", "vlanID": 0,
        "physicalNetworkName": "", "mtu": 0, "subnets": "10.1.0.0/24"});
    let l2 = parse(empty.clone()).unwrap();
    assert_eq!(
        (l2.topology, l2.mtu, l2.vlan),
        (Topology::Layer2, DEFAULT_MTU, None)
    );
    let mut ln = empty.clone();
    ln["topology"] = json!("localnet");
    let ln = parse(ln).unwrap();
    assert_eq!(ln.physical_network, "private-overlay");
    assert!(!ln.physical_network_explicit);
    // Set values are still refused, naming the key.
    for (set, key) in [
        (json!({"reservedSubnets": "10.1.0.0/28"}), "reservedSubnets"),
        (json!({"role": "primary"}), "role"),
        (json!({"vlanID": 5}), "vlanID"),
        (
            json!({"physicalNetworkName": "phys"}),
            "physicalNetworkName",
        ),
    ] {
        assert!(err(set).msg.starts_with(key), "{key}");
    }
    // "ipam": {} is common in community localnet NADs; only a set ipam.type is refused.
    assert!(parse(json!({"ipam": {}})).is_ok());
    assert!(parse(json!({"ipam": {"type": ""}})).is_ok());
}

#[test]
fn subnets_and_excludes_are_normalised_and_checked() {
    let c = parse(
        json!({"subnets": "10.1.0.9/24, fd00::/64", "excludeSubnets": "10.1.0.1,10.1.0.128/25"}),
    )
    .unwrap();
    assert_eq!(c.subnets[0].to_string(), "10.1.0.0/24");
    assert_eq!(c.subnets[1].to_string(), "fd00::/64");
    assert_eq!(c.exclude[0].to_string(), "10.1.0.1/32");
    assert!(err(json!({"subnets": "10.1.0.0/24,10.2.0.0/24"}))
        .msg
        .contains("more than one"));
    assert!(err(json!({"subnets": "10.1.0.0/33"}))
        .msg
        .contains("subnets"));
    assert!(err(json!({"subnets": "nonsense"}))
        .msg
        .contains("\"nonsense\""));
    assert!(err(json!({"subnets": "10.1.0.0/31"}))
        .msg
        .contains("too small"));
    assert!(
        err(json!({"subnets": "10.1.0.0/24", "excludeSubnets": "10.9.0.0/24"}))
            .msg
            .contains("excludeSubnets: 10.9.0.0/24")
    );
}

#[test]
fn refused_keys_and_values_are_named() {
    assert!(err(json!({"ipam": {"type": "static"}}))
        .msg
        .starts_with("ipam.type: \"static\""));
    assert!(err(json!({"topology": "layer3"}))
        .msg
        .contains("\"layer3\""));
    assert!(err(json!({"role": "primary"})).msg.contains("\"primary\""));
    assert!(err(json!({"vlanID": 10})).msg.starts_with("vlanID"));
    assert!(err(json!({"topology": "localnet", "vlanID": 4095}))
        .msg
        .contains("vlanID: 4095"));
    assert!(err(json!({"mtu": 70000})).msg.contains("mtu: 70000"));
    assert!(err(json!({"mtu": 1000, "subnets": "fd00::/64"}))
        .msg
        .contains("1280"));
    assert!(err(json!({"netAttachDefName": "noslash"}))
        .msg
        .contains("\"noslash\""));
    assert!(err(json!({"nbdb": "http://x"})).msg.starts_with("nbdb"));
    assert!(err(json!({"readyTimeout": 0}))
        .msg
        .starts_with("readyTimeout"));
    let mut c = json!({"cniVersion": "1.0.0", "name": "n", "type": "ovn-k8s-cni-overlay"});
    let e = OvnConf::from_call(&call_with(c.clone(), ""), None).unwrap_err();
    assert!(e.msg.starts_with("topology is required"), "{}", e.msg);
    c["topology"] = json!("localnet");
    c["type"] = json!("ovn-overlay");
    let e = OvnConf::from_call(&call_with(c, ""), Some(Topology::Layer2)).unwrap_err();
    assert!(e.msg.contains("does not match type"), "{}", e.msg);
}

#[test]
fn the_node_says_which_databases_and_a_configuration_may_only_repeat_them() {
    let dir = std::env::temp_dir().join(format!("mh-ovn-conf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("node.json");
    std::fs::write(
        &f,
        r#"{"nbdb": "unix:/a.sock", "ovsdb": "tcp:127.0.0.1:6640", "readyTimeout": 3}"#,
    )
    .unwrap();
    let (path, node) = node_settings_from(Some(f.display().to_string())).unwrap();
    assert_eq!(path, f);
    assert_eq!(node.nbdb.as_deref(), Some("unix:/a.sock"));
    assert_eq!(node.ready_timeout, Some(3.0));
    assert!(governed("nbdb", Some("unix:/a.sock"), "unix:/a.sock", &f).is_ok());
    assert!(governed("nbdb", None, "unix:/a.sock", &f).is_ok());
    let e = governed("nbdb", Some("tcp:127.0.0.1:8080"), "unix:/a.sock", &f).unwrap_err();
    assert_eq!(e.code, 7);
    assert!(
        e.msg.starts_with("nbdb \"tcp:127.0.0.1:8080\" differs") && e.msg.contains("node.json"),
        "{}",
        e.msg
    );
    std::fs::write(&f, r#"{"nbdbb": "x"}"#).unwrap();
    let e = node_settings_from(Some(f.display().to_string())).unwrap_err();
    assert!(e.msg.contains("nbdbb"), "{}", e.msg);
    let e = node_settings_from(Some(dir.join("missing").display().to_string())).unwrap_err();
    assert!(e.msg.contains(NODE_CONFIG_ENV), "{}", e.msg);
    // Without the environment, the default file, which may be missing.
    assert_eq!(
        node_settings_from(None).unwrap().0,
        PathBuf::from(DEFAULT_NODE_CONFIG)
    );
    // A configuration's nodeConfig must be the node's file in effect.
    let e = err(json!({"nodeConfig": f.display().to_string()}));
    assert!(
        e.msg.starts_with("nodeConfig") && e.msg.contains(DEFAULT_NODE_CONFIG),
        "{}",
        e.msg
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mac_and_claim_come_from_the_runtime() {
    let base = json!({"cniVersion": "1.0.0", "name": "n", "type": "ovn-overlay", "allowPersistentIPs": true,
        "args": {"cni": {"mac": "02:00:00:00:00:01"}}, "runtimeConfig": {"mac": "02:00:00:00:00:02"}});
    let c = OvnConf::from_call(
        &call_with(base.clone(), "MAC=02:00:00:00:00:03"),
        Some(Topology::Layer2),
    )
    .unwrap();
    assert_eq!(c.mac.unwrap().to_string(), "02:00:00:00:00:02");
    assert_eq!(c.persistent_key().unwrap(), "mac-020000000002");
    let mut with_claim = base;
    with_claim["args"]["cni"]["ipam-claim-reference"] = json!("vm-a.net1");
    let c = OvnConf::from_call(&call_with(with_claim.clone(), ""), Some(Topology::Layer2)).unwrap();
    assert_eq!(c.persistent_key().unwrap(), "vm-a.net1");
    with_claim["args"]["cni"]["ipam-claim-reference"] = json!("a/b");
    let e = OvnConf::from_call(&call_with(with_claim, ""), Some(Topology::Layer2)).unwrap_err();
    assert!(e.msg.contains("ipam-claim-reference"), "{}", e.msg);
    let bad = json!({"cniVersion": "1.0.0", "name": "n", "type": "ovn-overlay", "runtimeConfig": {"mac": "01:00:00:00:00:01"}});
    let e = OvnConf::from_call(&call_with(bad, ""), Some(Topology::Layer2)).unwrap_err();
    assert!(e.msg.starts_with("runtimeConfig.mac"), "{}", e.msg);
}

#[test]
fn every_key_the_plugin_accepts_is_documented() {
    let doc = include_str!("../../../docs/ovn-overlay.md");
    let mut missing = cni::introspect::undocumented::<Raw>(doc);
    missing.extend(cni::introspect::undocumented::<NodeFile>(doc));
    assert!(
        missing.is_empty(),
        "docs/ovn-overlay.md does not document {missing:?}"
    );
    let localnet = include_str!("../../../docs/localnet.md");
    for key in ["vlanID", "physicalNetworkName", "mtu"] {
        assert!(
            localnet.contains(&format!("`{key}`")),
            "docs/localnet.md lacks {key}"
        );
    }
}

#[test]
fn the_example_per_node_file_parses() {
    let f: NodeFile =
        serde_json::from_str(include_str!("../../../deploy/examples/ovn-node.json")).unwrap();
    assert!(f.nbdb.unwrap().starts_with("tcp:"));
    assert_eq!(f.ovsdb.as_deref(), Some(DEFAULT_OVSDB));
}

#[test]
fn teardown_keeps_what_finds_the_attachment_and_passes_over_add_only_faults() {
    for fault in [
        json!({"mtu": 10}),
        json!({"mtu": "x"}),
        json!({"role": "primary"}),
        json!({"ipam": {"type": "dhcp"}}),
        json!({"subnets": "not-a-cidr"}),
        json!({"runtimeConfig": {"mac": "01:00:5e:00:00:01"}}),
        json!({"readyTimeout": -1}),
        json!({"topology": "layer3"}),
    ] {
        let mut c = json!({
            "cniVersion": "1.0.0", "name": "private-overlay", "type": "ovn-k8s-cni-overlay",
            "topology": "localnet", "netAttachDefName": "ns1/private-overlay",
            "nbdb": "tcp:192.0.2.1:6641", "allowPersistentIPs": true,
            "args": {"cni": {"ipam-claim-reference": "vm-a.net1"}}
        });
        for (k, v) in fault.as_object().unwrap() {
            c[k] = v.clone();
        }
        let call = call_with(c, "");
        assert!(
            OvnConf::from_call(&call, None).is_err(),
            "ADD refuses {fault}"
        );
        let t = OvnConf::for_teardown(&call, None).unwrap();
        assert_eq!(t.network, "private-overlay", "{fault}");
        assert_eq!(t.nad, "ns1/private-overlay", "{fault}");
        // The configuration's own database is never dialled: the node's is.
        assert_eq!(t.nbdb, DEFAULT_NBDB, "{fault}");
        let expected_topology = if fault.get("topology").is_some() {
            Topology::Layer2
        } else {
            Topology::Localnet
        };
        assert_eq!(t.topology, expected_topology, "{fault}");
        assert_eq!(t.persistent_key().as_deref(), Some("vm-a.net1"), "{fault}");
    }
}

#[test]
fn teardown_dials_only_the_nodes_databases() {
    let c = json!({"cniVersion": "1.0.0", "name": "n", "type": "ovn-overlay", "mtu": 10,
        "nbdb": "tcp:127.0.0.1:8080", "ovsdb": "http://nope"});
    let t = OvnConf::for_teardown(&call_with(c, ""), Some(Topology::Layer2)).unwrap();
    assert_eq!(
        (t.nbdb.as_str(), t.ovsdb.as_str()),
        (DEFAULT_NBDB, DEFAULT_OVSDB)
    );
}

#[test]
fn a_localnet_network_takes_an_ipam_plugin_instead_of_subnets() {
    let localnet = json!({"topology": "localnet", "ipam": {"type": "dhcp"}});
    assert_eq!(parse(localnet).unwrap().ipam.as_deref(), Some("dhcp"));
    let e =
        err(json!({"topology": "localnet", "ipam": {"type": "dhcp"}, "subnets": "10.1.0.0/24"}));
    assert!(
        e.msg.contains("ipam.type") && e.msg.contains("subnets"),
        "{}",
        e.msg
    );
    let e = err(json!({"ipam": {"type": "dhcp"}}));
    assert!(e.msg.contains("layer2"), "{}", e.msg);
    assert_eq!(
        parse(json!({"topology": "localnet", "ipam": {}}))
            .unwrap()
            .ipam,
        None
    );
}
