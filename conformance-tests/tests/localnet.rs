//! `localnet` against a real OVN and a simulated physical network: every node has the
//! documentation's `br0-ovs` (an OVS bridge on its `ens4`, mapped as `br0-network`), cabled to a
//! top-of-rack switch (an OVS bridge: trunk ports to the nodes, access ports to hosts). On it:
//! a router on VLAN 100 and another untagged, both in 192.168.100.0/24.

use conformance_tests::ovn::{
    addr_of, call, invocation, nb_rows, ok_json as ok, ovsdb_map, ovsdb_strings, NodeBridge,
    OvnNode, Vm,
};
use conformance_tests::plugin::nad_config;
use conformance_tests::{ours, CniVars, Invocation, Netns, Outcome, OvnLab, PluginDir};
use serde_json::{json, Value};

const ROUTER_100: &str = "192.168.100.1";
const ROUTER_UNTAGGED: &str = "192.168.100.2";

fn plugins() -> PluginDir {
    PluginDir::ours(&["ovn-overlay"])
        .with_link("localnet", &ours("ovn-overlay"))
        .with_link("ovn-k8s-cni-overlay", &ours("ovn-overlay"))
}

fn documentation_bridge() -> NodeBridge {
    NodeBridge {
        bridge: "br0-ovs".into(),
        port: "ens4".into(),
        localnet: "br0-network".into(),
    }
}

/// A lab with the routers: (lab, VLAN 100 router, untagged router).
fn lab(tag: &str, nodes: usize) -> (OvnLab, Netns, Netns) {
    let lab = OvnLab::start_with_tor(tag, nodes, documentation_bridge());
    let r100 = lab.add_host(
        &format!("{tag}-r100"),
        Some(100),
        &format!("{ROUTER_100}/24"),
    );
    let r0 = lab.add_host(&format!("{tag}-r0"), None, &format!("{ROUTER_UNTAGGED}/24"));
    (lab, r100, r0)
}

fn localnet(name: &str, extra: Value) -> Value {
    let mut c = json!({
        "cniVersion": "1.0.0",
        "name": name,
        "type": "localnet",
        "netAttachDefName": format!("vms/{name}"),
        "physicalNetworkName": "br0-network",
        "readyTimeout": 15
    });
    for (k, v) in extra.as_object().expect("object") {
        c[k] = v.clone();
    }
    c
}

fn add(plugins: &PluginDir, node: &OvnNode, vm: &Vm, conf: &Value) -> Outcome {
    call(plugins, "localnet", node, "ADD", vm, "net1", "", conf)
}

fn del(plugins: &PluginDir, node: &OvnNode, vm: &Vm, conf: &Value) -> Outcome {
    call(plugins, "localnet", node, "DEL", vm, "net1", "", conf)
}

/// The MACs the top-of-rack switch learned, as (ToR port number, VLAN, MAC).
fn fdb(lab: &OvnLab) -> Vec<(String, String, String)> {
    lab.tor
        .as_ref()
        .expect("tor")
        .fdb()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3).then(|| (f[0].to_string(), f[1].to_string(), f[2].to_string()))
        })
        .collect()
}

#[test]
fn a_vlan_100_vm_reaches_the_vlan_100_router_only_and_an_untagged_vm_the_untagged_one_only() {
    let (lab, _r100, _r0) = lab("ln-vlan", 2);
    let plugins = plugins();
    let tagged = localnet(
        "vlan100-net",
        json!({"vlanID": 100, "subnets": "192.168.100.0/24", "excludeSubnets": "192.168.100.0/28"}),
    );
    let untagged = localnet(
        "native-net",
        json!({"subnets": "192.168.100.0/24", "excludeSubnets": "192.168.100.0/25"}),
    );
    let (a, b) = (Vm::new("ln-a"), Vm::new("ln-b"));
    // A NAD without mtu gets the cluster MTU: OVN-Kubernetes' default 1400 on node 0, and the
    // 1500 node 1's settings say (its `mtu`, OVN-Kubernetes' --mtu).
    let file = lab.nodes[1].node_file();
    let mut node1: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    node1["mtu"] = json!(1500);
    std::fs::write(&file, node1.to_string()).unwrap();
    let ra = ok(&add(&plugins, &lab.nodes[0], &a, &tagged));
    let rb = ok(&add(&plugins, &lab.nodes[1], &b, &untagged));
    assert_eq!(ra["ips"][0]["address"], "192.168.100.16/24");
    assert_eq!(rb["ips"][0]["address"], "192.168.100.128/24");
    let mtu = |vm: &Vm| {
        vm.ns
            .run_ok(&["cat", "/sys/class/net/net1/mtu"])
            .trim()
            .to_string()
    };
    assert_eq!((mtu(&a), mtu(&b)), ("1400".to_string(), "1500".to_string()));

    assert!(
        a.reaches(ROUTER_100),
        "VLAN 100 VM cannot reach the VLAN 100 router"
    );
    assert!(
        !a.pings(ROUTER_UNTAGGED),
        "VLAN 100 VM reached the untagged router"
    );
    assert!(
        b.reaches(ROUTER_UNTAGGED),
        "untagged VM cannot reach the untagged router"
    );
    assert!(
        !b.pings(ROUTER_100),
        "untagged VM reached the VLAN 100 router"
    );
    // The tagged VM's frames crossed the ToR in VLAN 100, the untagged one's in VLAN 0.
    let mac_a = ra["interfaces"][1]["mac"].as_str().unwrap().to_string();
    let mac_b = rb["interfaces"][1]["mac"].as_str().unwrap().to_string();
    let learned = fdb(&lab);
    assert!(
        learned.iter().any(|(_, v, m)| v == "100" && *m == mac_a),
        "{learned:?}"
    );
    assert!(
        learned.iter().any(|(_, v, m)| v == "0" && *m == mac_b),
        "{learned:?}"
    );

    // NB: the localnet switch and its localnet port with OVN-Kubernetes' names.
    let switches = nb_rows(&lab, "Logical_Switch");
    let ls = switches
        .iter()
        .find(|s| s["name"] == "vlan100.net_ovn_localnet_switch")
        .expect("localnet switch");
    assert_eq!(
        ovsdb_map(&ls["external_ids"])["k8s.ovn.org/topology"],
        "localnet"
    );
    let ports = nb_rows(&lab, "Logical_Switch_Port");
    let lnp = ports
        .iter()
        .find(|p| p["name"] == "vlan100.net_ovn_localnet_port")
        .expect("localnet port");
    assert_eq!(lnp["type"], "localnet");
    assert_eq!(ovsdb_strings(&lnp["addresses"]), vec!["unknown"]);
    assert_eq!(ovsdb_map(&lnp["options"])["network_name"], "br0-network");
    assert_eq!(lnp["tag_request"], 100);

    ok(&del(&plugins, &lab.nodes[0], &a, &tagged));
    ok(&del(&plugins, &lab.nodes[1], &b, &untagged));
}

#[test]
fn two_vms_on_different_nodes_talk_over_the_physical_network_not_geneve() {
    let (lab, _r100, _r0) = lab("ln-phys", 2);
    let plugins = plugins();
    let c = localnet(
        "vlan100-net",
        json!({"vlanID": 100, "subnets": "192.168.100.0/24", "excludeSubnets": "192.168.100.0/28"}),
    );
    let (a, b) = (Vm::new("lp-a"), Vm::new("lp-b"));
    let ra = ok(&add(&plugins, &lab.nodes[0], &a, &c));
    let rb = ok(&add(&plugins, &lab.nodes[1], &b, &c));
    // Geneve is cut: the underlay's switch port of node 1 goes down. Localnet traffic does not
    // care; it crosses the ToR in VLAN 100 (both MACs learned there, on the nodes' trunk ports).
    lab.phy.run_ok(&["ip", "link", "set", "n1", "down"]);
    assert!(
        a.reaches(&addr_of(&rb)),
        "VMs on two nodes do not talk over the physical network"
    );
    let tor = lab.tor.as_ref().unwrap();
    let (t0, t1) = (tor.ofport("t0"), tor.ofport("t1"));
    let learned = fdb(&lab);
    let mac = |r: &Value| r["interfaces"][1]["mac"].as_str().unwrap().to_string();
    assert!(
        learned.contains(&(t0, "100".into(), mac(&ra))),
        "{learned:?}"
    );
    assert!(
        learned.contains(&(t1, "100".into(), mac(&rb))),
        "{learned:?}"
    );
    ok(&del(&plugins, &lab.nodes[0], &a, &c));
    ok(&del(&plugins, &lab.nodes[1], &b, &c));
}

#[test]
fn a_missing_bridge_mapping_is_a_clear_error_that_creates_nothing() {
    let (lab, _r100, _r0) = lab("ln-nomap", 1);
    let plugins = plugins();
    let node = &lab.nodes[0];
    let vm = Vm::new("lm");
    let c = localnet(
        "elsewhere",
        json!({"physicalNetworkName": "physnet-x", "vlanID": 7}),
    );
    let out = add(&plugins, node, &vm, &c);
    assert_eq!(out.error_code(), Some(7), "{out}");
    let msg = out.stdout_text();
    assert!(
        msg.contains("physnet-x") && msg.contains("ovn-bridge-mappings"),
        "{msg}"
    );
    assert!(
        msg.contains("br0-network:br0-ovs"),
        "the message lists what is mapped: {msg}"
    );
    assert!(
        nb_rows(&lab, "Logical_Switch").is_empty(),
        "a switch was created"
    );
    assert!(
        nb_rows(&lab, "Logical_Switch_Port").is_empty(),
        "a port was created"
    );
    assert!(!vm.ns.has_link("net1"));
    assert!(!node.vsctl(&["list-ports", "br-int"]).contains("ovn"));
    // STATUS says the same, as code 50.
    let vars = CniVars {
        command: "STATUS".into(),
        path: plugins.path().display().to_string(),
        ..CniVars::default()
    };
    let (k, v) = node.plugin_env();
    let st = Invocation::new(plugins.path().join("localnet"))
        .in_node(&node.ns)
        .vars(&vars)
        .env(&k, &v)
        .stdin_json(&localnet(
            "elsewhere",
            json!({"cniVersion": "1.1.0", "physicalNetworkName": "physnet-x"}),
        ))
        .run();
    assert_eq!(st.error_code(), Some(50), "{st}");
    assert!(st.stdout_text().contains("physnet-x"), "{st}");
    // A second NAD on the same network name that disagrees on the VLAN is refused by name.
    let first = localnet("shared", json!({"vlanID": 100}));
    let vm2 = Vm::new("lm2");
    ok(&add(&plugins, node, &vm2, &first));
    let second = localnet("shared", json!({"vlanID": 200}));
    let clash = add(&plugins, node, &vm, &second);
    assert_eq!(clash.error_code(), Some(7), "{clash}");
    assert!(clash.stdout_text().contains("vlanID 100"), "{clash}");
    ok(&del(&plugins, node, &vm2, &first));
}

/// The NNCP's bridge, port and mapping, read from the example as written.
fn nncp_bridge(file: &str) -> NodeBridge {
    let path = conformance_tests::plugin::workspace_root()
        .join("deploy/examples")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let field = |key: &str, after: &str| -> String {
        let start = text
            .find(after)
            .unwrap_or_else(|| panic!("{file}: no {after}"));
        let rest = &text[start..];
        let line = rest
            .lines()
            .find(|l| l.trim_start().trim_start_matches("- ").starts_with(key))
            .unwrap_or_else(|| panic!("{file}: no {key} after {after}"));
        line.split_once(':').unwrap().1.trim().to_string()
    };
    NodeBridge {
        bridge: field("name:", "interfaces:"),
        port: field("name:", "port:"),
        localnet: field("localnet:", "bridge-mappings:"),
    }
}

#[test]
fn the_documentations_nncp_and_localnet_nad_work_as_written() {
    let bridge = nncp_bridge("nncp-br0-ovs.yaml");
    assert_eq!(
        (
            bridge.bridge.as_str(),
            bridge.port.as_str(),
            bridge.localnet.as_str()
        ),
        ("br0-ovs", "ens4", "br0-network")
    );
    let lab = OvnLab::start_with_tor("ln-doc", 2, bridge);
    let _r0 = lab.add_host("ln-doc-r0", None, &format!("{ROUTER_UNTAGGED}/24"));
    let plugins = plugins();
    let nad = nad_config("nad-ovn-localnet.yaml");
    assert_eq!(nad["type"], "ovn-k8s-cni-overlay");
    assert_eq!(nad["topology"], "localnet");
    let (a, b) = (Vm::new("ld-a"), Vm::new("ld-b"));
    // As written: "name" is ovn-localnet, the mapping is br0-network, which the documentation
    // says netAttachDefName ("my-vm-namespace/br0-network") refers to.
    let ra = ok(&call(
        &plugins,
        "ovn-k8s-cni-overlay",
        &lab.nodes[0],
        "ADD",
        &a,
        "net1",
        "",
        &nad,
    ));
    ok(&call(
        &plugins,
        "ovn-k8s-cni-overlay",
        &lab.nodes[1],
        "ADD",
        &b,
        "net1",
        "",
        &nad,
    ));
    assert!(
        ra["ips"].as_array().is_none_or(|i| i.is_empty()),
        "no subnets: {ra}"
    );
    let lnp = nb_rows(&lab, "Logical_Switch_Port")
        .into_iter()
        .find(|p| p["name"] == "ovn.localnet_ovn_localnet_port")
        .expect("localnet port");
    assert_eq!(ovsdb_map(&lnp["options"])["network_name"], "br0-network");
    // The VMs bring their own addresses (the documentation's VMs use DHCP or static guest config).
    a.ns.run_ok(&["ip", "addr", "add", "192.168.100.51/24", "dev", "net1"]);
    b.ns.run_ok(&["ip", "addr", "add", "192.168.100.52/24", "dev", "net1"]);
    assert!(
        a.reaches(ROUTER_UNTAGGED),
        "the documentation's localnet VM cannot reach the wire"
    );
    assert!(
        a.reaches("192.168.100.52"),
        "VMs on the documentation's localnet do not talk"
    );
    let mut with_prev = nad.clone();
    with_prev["prevResult"] = ra.clone();
    with_prev["cniVersion"] = json!("1.0.0");
    ok(&call(
        &plugins,
        "ovn-k8s-cni-overlay",
        &lab.nodes[0],
        "CHECK",
        &a,
        "net1",
        "",
        &with_prev,
    ));
    for (i, vm) in [(0, &a), (1, &b)] {
        ok(&call(
            &plugins,
            "ovn-k8s-cni-overlay",
            &lab.nodes[i],
            "DEL",
            vm,
            "net1",
            "",
            &nad,
        ));
    }
    let left: Vec<Value> = nb_rows(&lab, "Logical_Switch_Port")
        .into_iter()
        .filter(|p| p["type"] != "localnet")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// OVN-Kubernetes 1.4's localnet with `ipam: {type: dhcp}`: the VM's address comes from the
/// physical network's DHCP server (dnsmasq on the untagged router), through the node's dhcp
/// daemon; the logical port's security is its MAC only; the RELEASE reaches the server at DEL.
#[test]
fn a_localnet_vm_gets_its_address_from_the_physical_networks_dhcp_server() {
    use conformance_tests::dhcp;
    use conformance_tests::{wait_until, NodeSettings, TempDir};
    use std::time::Duration;
    let (lab, _r100, r0) = lab("lnd", 1);
    let dir = TempDir::new("lnd");
    std::fs::create_dir_all(dir.join("run")).unwrap();
    let leases = dir.join("dnsmasq.leases");
    let _dnsmasq = dhcp::dnsmasq(
        &r0,
        "eth0",
        ("192.168.100.50", "192.168.100.99"),
        ROUTER_UNTAGGED,
        &leases,
        &dir.join("dnsmasq.log"),
    );
    let node = &lab.nodes[0];
    let settings = NodeSettings::empty();
    settings.write(
        "node.json",
        &json!({"dhcp_socket_dirs": [dir.join("run")], "dhcp_state_dir": dir.join("state")}),
    );
    let socket = dir.join("run/dhcp.sock");
    let _daemon = dhcp::start_daemon_in(
        &node.ns,
        &[
            &ours("dhcp").display().to_string(),
            "daemon",
            "-socketpath",
            &socket.display().to_string(),
            "-statedir",
            &dir.join("state").display().to_string(),
        ],
        &socket,
        &dir.join("daemon.log"),
    );
    let plugins = plugins().with_ours(&["dhcp"]);
    let conf = localnet(
        "lnd",
        json!({"ipam": {"type": "dhcp", "daemonSocketPath": socket}}),
    );
    let vm = Vm::new("lnd-vm");
    let run = |command: &str, conf: &Value| {
        let (k, v) = settings.env();
        invocation(&plugins, "localnet", node, command, &vm, "net1", "", conf)
            .env(&k, &v)
            .run()
    };
    let add = run("ADD", &conf);
    let r = ok(&add);
    let ip = addr_of(&r);
    assert!(ip.starts_with("192.168.100."), "{r}");
    let n: u8 = ip.rsplit('.').next().unwrap().parse().unwrap();
    assert!((50..=99).contains(&n), "{ip} is not from the server's pool");
    assert_eq!(r["ips"][0]["gateway"], ROUTER_UNTAGGED, "{r}");
    assert!(vm.ns.addresses("net1").contains(&format!("{ip}/24")));
    let routes = vm.ns.run_ok(&["ip", "route", "show", "default"]);
    assert!(
        routes.contains(&format!("via {ROUTER_UNTAGGED}")),
        "{routes}"
    );
    assert!(std::fs::read_to_string(&leases).unwrap().contains(&ip));
    // Port security is the MAC only: the address came from the wire, not from OVN.
    let lsp = nb_rows(&lab, "Logical_Switch_Port")
        .into_iter()
        .find(|p| {
            ovsdb_map(&p["external_ids"])
                .get("k8s.ovn.org/nad")
                .map(String::as_str)
                == Some("vms/lnd")
        })
        .expect("the VM's logical port");
    let mac = r["interfaces"][1]["mac"].as_str().unwrap().to_string();
    assert_eq!(
        ovsdb_strings(&lsp["port_security"]),
        vec![mac.clone()],
        "{lsp}"
    );
    // The VM reaches the router on the physical network; with a forged MAC it does not.
    assert!(vm.reaches(ROUTER_UNTAGGED));
    vm.ns
        .run_ok(&["ip", "link", "set", "net1", "address", "02:00:00:00:66:66"]);
    assert!(
        !vm.pings(ROUTER_UNTAGGED),
        "a forged MAC passed port security"
    );
    vm.ns
        .run_ok(&["ip", "link", "set", "net1", "address", &mac]);
    assert!(vm.reaches(ROUTER_UNTAGGED));
    let mut check = conf.clone();
    check["prevResult"] = r.clone();
    let c = run("CHECK", &check);
    assert!(c.ok(), "{c}");
    let d = run("DEL", &conf);
    assert!(d.ok(), "{d}");
    wait_until("the RELEASE at the server", Duration::from_secs(5), || {
        !std::fs::read_to_string(&leases)
            .unwrap_or_default()
            .contains(&ip)
    });
    assert!(!vm.ns.has_link("net1"));
    let d = run("DEL", &conf);
    assert!(d.ok(), "DEL again: {d}");
}

/// IPv6 only (issue 20): `subnets` with only an IPv6 prefix, no IPv4 anywhere. VMs get managed
/// addresses, reach an IPv6-only router on the physical network (VLAN 100 and untagged) and each
/// other across nodes; neighbour discovery passes; port security drops a source address that is
/// not the VM's and passes its own.
#[test]
fn ipv6_only_localnet_vms_reach_ipv6_routers_and_each_other_and_port_security_holds() {
    let lab = OvnLab::start_with_tor("ln-v6", 2, documentation_bridge());
    let r100 = lab.add_host("ln6-r100", Some(100), "fd00:100::1/64");
    let _r0 = lab.add_host("ln6-r0", None, "fd00:200::1/64");
    let plugins = plugins();
    let tagged = localnet(
        "v6-100",
        json!({"vlanID": 100, "subnets": "fd00:100::/64", "excludeSubnets": "fd00:100::/120"}),
    );
    let untagged = localnet(
        "v6-native",
        json!({"subnets": "fd00:200::/64", "excludeSubnets": "fd00:200::/120"}),
    );
    let (a, b, c) = (Vm::new("ln6-a"), Vm::new("ln6-b"), Vm::new("ln6-c"));
    let ra = ok(&add(&plugins, &lab.nodes[0], &a, &tagged));
    let rb = ok(&add(&plugins, &lab.nodes[1], &b, &tagged));
    let rc = ok(&add(&plugins, &lab.nodes[0], &c, &untagged));
    for r in [&ra, &rb] {
        conformance_tests::ovn::only_address(r, "fd00:100::", "64");
    }
    assert!(addr_of(&rc).starts_with("fd00:200::"));
    for vm in [&a, &b, &c] {
        assert!(
            vm.ns
                .run_ok(&["ip", "-4", "-o", "addr", "show", "scope", "global"])
                .trim()
                .is_empty(),
            "no IPv4"
        );
    }
    assert!(
        a.reaches("fd00:100::1"),
        "VLAN 100 VM to the VLAN 100 router"
    );
    assert!(
        c.reaches("fd00:200::1"),
        "untagged VM to the untagged router"
    );
    let (ip_a, ip_b) = (addr_of(&ra), addr_of(&rb));
    assert!(a.reaches(&ip_b), "two VMs on two nodes");
    // Port security: the VM's own address and MAC pass; another source address is dropped.
    assert!(a.pings(&ip_b));
    a.ns.run_ok(&[
        "ip",
        "addr",
        "add",
        "fd00:100::99/64",
        "dev",
        "net1",
        "nodad",
    ]);
    assert!(
        !a.pings_from("fd00:100::99", &ip_b),
        "a source address that is not the VM's is dropped"
    );
    assert!(a.pings_from(&ip_a, &ip_b), "the VM's own address passes");
    // And on the link: the link-local address derived from the VM's MAC passes, another one is
    // dropped (OVN's port security allows the MAC's link-local address with the port's own).
    let mac_a = ra["interfaces"][1]["mac"].as_str().unwrap();
    let (own_ll, router_ll) = (
        conformance_tests::ovn_migration::link_local(mac_a),
        link_local_of(&r100, "eth0"),
    );
    let router_ll = format!("{router_ll}%net1");
    assert!(
        a.ns.run_ok(&["ip", "-6", "addr", "show", "dev", "net1", "scope", "link"])
            .contains(&own_ll),
        "the VM's link-local address is its MAC's"
    );
    let from = |source: &str| {
        a.ns.run(&[
            "ping",
            "-c3",
            "-i0.2",
            "-W2",
            "-q",
            "-I",
            &format!("{source}%net1"),
            &router_ll,
        ])
        .status
        .success()
    };
    conformance_tests::wait_until(
        "the MAC's link-local address reaches the router's",
        std::time::Duration::from_secs(20),
        || from(&own_ll),
    );
    // The router resolves the VM's link-local address: the VM's neighbour advertisement for it
    // passes port security (ovn-controller 23.03 drops it unless the address is listed there).
    r100.run_ok(&["ip", "-6", "neigh", "flush", "dev", "eth0"]);
    let vm_ll = format!("{own_ll}%eth0");
    conformance_tests::wait_until(
        "the router reaches the VM's link-local address",
        std::time::Duration::from_secs(20),
        || {
            r100.run(&["ping", "-c2", "-i0.2", "-W2", "-q", &vm_ll])
                .status
                .success()
        },
    );
    a.ns.run_ok(&["ip", "addr", "add", "fe80::99/64", "dev", "net1", "nodad"]);
    assert!(
        !from("fe80::99"),
        "a link-local address that is not the MAC's is dropped"
    );
    assert!(from(&own_ll), "the MAC's link-local address passes");
    let lsp = nb_rows(&lab, "Logical_Switch_Port")
        .into_iter()
        .find(|p| {
            ovsdb_strings(&p["addresses"])
                .iter()
                .any(|x| x.contains(&ip_a))
        })
        .expect("the VM's port");
    let security = ovsdb_strings(&lsp["port_security"]);
    assert_eq!(
        security,
        [format!("{mac_a} {ip_a} {own_ll}")],
        "the address and the MAC's link-local one"
    );
    ok(&del(&plugins, &lab.nodes[0], &a, &tagged));
    ok(&del(&plugins, &lab.nodes[1], &b, &tagged));
    ok(&del(&plugins, &lab.nodes[0], &c, &untagged));
}

/// The link-local address of `ifname` in `ns`.
fn link_local_of(ns: &Netns, ifname: &str) -> String {
    let out = ns.run_ok(&[
        "ip", "-6", "-o", "addr", "show", "dev", ifname, "scope", "link",
    ]);
    out.split_whitespace()
        .skip_while(|w| *w != "inet6")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("no link-local address on {ifname}: {out}"))
        .to_string()
}

/// IPv6 only (issue 20), persistent IPs and live migration, which OVN-Kubernetes leaves out for
/// IPv6 (openshift/enhancements #1456): a VM with a claim on an IPv6-only localnet keeps its
/// address and MAC when it restarts on another node (the parked port is nobody else's
/// meanwhile), then migrates back while an IPv6-only router on the physical network pings it
/// every 10 ms: the port bound to both nodes until the source's DEL, no silence over 1.5 s
/// (`MAX_OUTAGE_MS`), no request answered twice. The guest's unsolicited neighbour advertisements, for its
/// address and its link-local one, reach the router after the cut-over; the ToR learns the VM on
/// the target's trunk.
#[test]
fn ipv6_only_a_persistent_localnet_vm_keeps_its_address_on_another_node_and_migrates_under_pings() {
    use conformance_tests::ovn::{lsp, pod_args};
    use conformance_tests::ovn_migration::{link_local, Network, Pod};
    let lab = OvnLab::start_with_tor("ln6-mig", 2, documentation_bridge());
    let router = lab.add_host("ln6m-r0", None, "fd00:210::1/64");
    let plugins = plugins();
    let subnets = json!({"subnets": "fd00:210::/64", "excludeSubnets": "fd00:210::/120"});
    let plain = localnet("v6-vms", subnets.clone());
    let mut persistent = plain.clone();
    persistent["allowPersistentIPs"] = json!(true);
    persistent["args"] = json!({"cni": {"ipam-claim-reference": "vm-a.net1"}});
    let port = "vms.v6.vms_vms_vm-a.net1";
    let net = Network {
        lab: &lab,
        plugins: &plugins,
        exe: "localnet",
        conf: &persistent,
        port,
    };
    let pod = |node: usize, name: &str| Pod {
        node,
        vm: Vm::new(&format!("ln6m-{name}")),
        args: pod_args("vms", &format!("virt-launcher-a-{name}")),
    };
    let reaches = |ip: &str| {
        conformance_tests::wait_until(
            &format!("the router reaches {ip}"),
            std::time::Duration::from_secs(20),
            || {
                router
                    .run(&["ping", "-c1", "-W1", "-q", ip])
                    .status
                    .success()
            },
        );
    };
    // The VM on node 0, then stopped: its port is parked, bound nowhere.
    let first = pod(0, "1");
    let r1 = net.call("ADD", &first);
    let ip = conformance_tests::ovn::only_address(&r1, "fd00:210::", "64");
    let ip = ip.split('/').next().unwrap().to_string();
    let mac = r1["interfaces"][1]["mac"].as_str().unwrap().to_string();
    reaches(&ip);
    net.call("DEL", &first);
    let parked = lsp(&lab, port).unwrap_or_else(|| panic!("{port} parked: {}", lab.diagnose()));
    assert!(!ovsdb_map(&parked["options"]).contains_key("requested-chassis"));
    // Another VM meanwhile gets another address.
    let filler = Vm::new("ln6m-f");
    let rf = ok(&add(&plugins, &lab.nodes[1], &filler, &plain));
    assert_ne!(addr_of(&rf), ip);
    // The VM restarts on node 1: the same address and MAC, and the router reaches it there.
    let second = pod(1, "2");
    let r2 = net.call("ADD", &second);
    assert_eq!(r2["ips"], r1["ips"]);
    assert_eq!(r2["interfaces"][1]["mac"], mac.as_str());
    assert_eq!(
        ovsdb_map(&lsp(&lab, port).unwrap()["options"])["requested-chassis"],
        lab.nodes[1].chassis
    );
    reaches(&ip);
    ok(&del(&plugins, &lab.nodes[1], &filler, &plain));
    // It migrates back to node 0 under the router's pings.
    let third = pod(0, "3");
    let moved = net.migrate(&second, &r2, &third, (&router, "eth0"), true);
    assert_eq!(
        moved.while_both["requested-chassis"],
        format!("{},{}", lab.nodes[1].chassis, lab.nodes[0].chassis),
        "bound to both nodes while both pods hold it"
    );
    assert_eq!(moved.while_both["activation-strategy"], "rarp");
    // The same bound as the IPv4 migration test (ovn_overlay.rs), beside the other OVN tests on
    // both cores; the answers go on to the end.
    moved.assert_recovered();
    moved.assert_advertised(&[&ip, &link_local(&mac)]);
    // The VM kept its MAC: the router's entry for it is still that MAC, and usable.
    let neigh = router.run_ok(&["ip", "-6", "neigh", "show", &ip, "dev", "eth0"]);
    assert!(
        neigh.contains(&format!("lladdr {mac}")) && !neigh.contains("FAILED"),
        "{neigh}"
    );
    let tor = lab.tor.as_ref().unwrap();
    let learned = fdb(&lab);
    assert!(
        learned
            .iter()
            .any(|(p, _, m)| *m == mac && *p == tor.ofport("t0")),
        "the ToR learned the VM on node 0's trunk: {learned:?}"
    );
    let opts = ovsdb_map(&lsp(&lab, port).unwrap()["options"]);
    assert_eq!(opts["requested-chassis"], lab.nodes[0].chassis);
    assert!(!opts.contains_key("activation-strategy"), "{opts:?}");
    net.call("DEL", &third);
}
