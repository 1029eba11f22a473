//! The kernel lane: behaviour this machine's kernel cannot run (no bridge VLAN filtering, no
//! openvswitch datapath or Geneve), run by
//! `make test-kernel` inside a full Debian kernel under qemu. Every test here is `#[ignore]`d with
//! that reason, so `cargo test` on the development kernel lists them as ignored (never silently
//! passes them), and the lane runs them with `--include-ignored`. Inside the lane a kernel without
//! the features is a failure, not a skip.

use conformance_tests::{ours, CniVars, Invocation, Netns, Node, Outcome, PluginDir};
use serde_json::{json, Value};

const LANE: &str = "kernel lane: needs bridge VLAN filtering; run by `make test-kernel`";

struct Lab {
    node: Node,
    plugins: PluginDir,
}

impl Lab {
    fn new() -> Lab {
        let lab = Lab {
            node: Node::new("kl-node"),
            plugins: PluginDir::ours(&["bridge", "static"]),
        };
        let probe = lab.node.run(&[
            "ip",
            "link",
            "add",
            "name",
            "klprobe",
            "type",
            "bridge",
            "vlan_filtering",
            "1",
        ]);
        assert!(
            probe.status.success(),
            "this kernel lacks bridge VLAN filtering: run these tests with `make test-kernel`"
        );
        lab.node.run_ok(&["ip", "link", "del", "klprobe"]);
        lab
    }

    fn add(&self, cid: &str, ctr: &Netns, conf: &Value) -> Outcome {
        let vars = CniVars {
            command: "ADD".into(),
            container_id: cid.into(),
            netns: ctr.path().display().to_string(),
            ifname: "net1".into(),
            args: String::new(),
            path: self.plugins.path().display().to_string(),
        };
        Invocation::new(ours("bridge"))
            .in_node(&self.node)
            .vars(&vars)
            .stdin_json(conf)
            .run()
    }

    /// `bridge -j vlan show` of one port: (vid, pvid, untagged) per VLAN.
    fn port_vlans(&self, port: &str) -> Vec<(u64, bool, bool)> {
        let out = self
            .node
            .run_ok(&["bridge", "-j", "vlan", "show", "dev", port]);
        let v: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
        let mut found = Vec::new();
        for entry in v.as_array().into_iter().flatten() {
            for vlan in entry["vlans"].as_array().into_iter().flatten() {
                let flags: Vec<&str> = vlan["flags"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let first = vlan["vlan"].as_u64().unwrap();
                let last = vlan["vlanEnd"].as_u64().unwrap_or(first);
                for vid in first..=last {
                    found.push((
                        vid,
                        flags.contains(&"PVID"),
                        flags.contains(&"Egress Untagged"),
                    ));
                }
            }
        }
        found
    }

    fn vlan_filtering(&self, bridge: &str) -> bool {
        let out = self
            .node
            .run_ok(&["ip", "-j", "-d", "link", "show", bridge]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v[0]["linkinfo"]["info_data"]["vlan_filtering"] == 1
    }
}

fn conf(extra: Value) -> Value {
    let mut c = json!({"cniVersion": "1.0.0", "name": "kl-net", "type": "bridge", "bridge": "br1"});
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    c
}

fn host_veth(out: &Outcome) -> String {
    assert!(out.ok(), "{out}");
    out.json()["interfaces"][1]["name"]
        .as_str()
        .unwrap()
        .to_string()
}

fn pings(from: &Netns, to: &str) -> bool {
    from.run(&["ping", "-c", "1", "-W", "1", "-q", to])
        .status
        .success()
}

#[test]
#[ignore = "kernel lane: needs bridge VLAN filtering; run by `make test-kernel`"]
fn an_access_port_gets_its_vlan_as_pvid_untagged_and_keeps_vlan_1_by_default() {
    let lab = Lab::new();
    let a = Netns::new("kl-a");
    let port = host_veth(&lab.add("a", &a, &conf(json!({"vlan": 100}))));
    assert!(lab.vlan_filtering("br1"), "{LANE}");
    let vlans = lab.port_vlans(&port);
    assert!(vlans.contains(&(100, true, true)), "{vlans:?}");
    assert!(
        vlans.iter().any(|v| v.0 == 1),
        "preserveDefaultVlan defaults to true: {vlans:?}"
    );
}

#[test]
#[ignore = "kernel lane: needs bridge VLAN filtering; run by `make test-kernel`"]
fn without_preserve_default_vlan_only_the_configured_vlans_remain() {
    let lab = Lab::new();
    let a = Netns::new("kl-p");
    let port = host_veth(&lab.add(
        "p",
        &a,
        &conf(json!({"vlan": 100, "preserveDefaultVlan": false})),
    ));
    assert_eq!(lab.port_vlans(&port), [(100, true, true)]);
}

#[test]
#[ignore = "kernel lane: needs bridge VLAN filtering; run by `make test-kernel`"]
fn a_trunk_port_carries_its_ids_and_ranges_tagged() {
    let lab = Lab::new();
    let a = Netns::new("kl-t");
    let trunk = json!({"vlanTrunk": [{"minID": 101, "maxID": 105}, {"id": 200}], "preserveDefaultVlan": false});
    let port = host_veth(&lab.add("t", &a, &conf(trunk)));
    let vlans = lab.port_vlans(&port);
    let want: Vec<(u64, bool, bool)> = (101..=105)
        .chain([200])
        .map(|v| (v, false, false))
        .collect();
    assert_eq!(vlans, want);
}

#[test]
#[ignore = "kernel lane: needs bridge VLAN filtering; run by `make test-kernel`"]
fn vlan_with_a_trunk_is_the_trunks_native_vlan() {
    let lab = Lab::new();
    let (a, b, t) = (
        Netns::new("kl-na"),
        Netns::new("kl-nb"),
        Netns::new("kl-nt"),
    );
    // The trunk's range holds its native VLAN: it must stay PVID and untagged.
    let trunk = conf(
        json!({"vlan": 100, "vlanTrunk": [{"minID": 99, "maxID": 101}, {"id": 200}],
        "preserveDefaultVlan": false,
        "ipam": {"type": "static", "addresses": [{"address": "10.102.0.2/24"}]}}),
    );
    let port = host_veth(&lab.add("t", &t, &trunk));
    assert_eq!(
        lab.port_vlans(&port),
        [
            (99, false, false),
            (100, true, true),
            (101, false, false),
            (200, false, false)
        ]
    );
    // Untagged frames of the trunk are VLAN 100's; tagged 200 reaches VLAN 200.
    let on = |vlan: u16, ip: &str| {
        conf(json!({"vlan": vlan, "ipam": {"type": "static", "addresses": [{"address": ip}]}}))
    };
    assert!(lab.add("a", &a, &on(100, "10.102.0.3/24")).ok());
    assert!(lab.add("b", &b, &on(200, "10.102.1.3/24")).ok());
    t.run_ok(&[
        "ip", "link", "add", "link", "net1", "name", "net1.200", "type", "vlan", "id", "200",
    ]);
    t.run_ok(&["ip", "addr", "add", "10.102.1.2/24", "dev", "net1.200"]);
    t.run_ok(&["ip", "link", "set", "net1.200", "up"]);
    assert!(
        pings(&t, "10.102.0.3"),
        "untagged on the trunk is the native VLAN 100"
    );
    assert!(
        pings(&t, "10.102.1.3"),
        "tagged 200 on the trunk is VLAN 200"
    );
}

#[test]
#[ignore = "kernel lane: needs bridge VLAN filtering; run by `make test-kernel`"]
fn vlan_with_is_gateway_puts_the_gateway_on_bridge_dot_vlan() {
    let lab = Lab::new();
    let a = Netns::new("kl-g");
    let c = conf(
        json!({"vlan": 100, "isGateway": true, "ipam": {"type": "static", "addresses": [{"address": "10.100.0.2/24"}]}}),
    );
    let out = lab.add("g", &a, &c);
    assert!(out.ok(), "{out}");
    assert_eq!(out.json()["interfaces"][3]["name"], "br1.100");
    assert!(lab
        .node
        .addresses("br1.100")
        .contains(&"10.100.0.1/24".to_string()));
    assert!(lab
        .node
        .addresses("br1")
        .iter()
        .all(|x| !x.starts_with("10.100.")));
    assert!(
        pings(&a, "10.100.0.1"),
        "the container reaches its gateway on VLAN 100"
    );
}

#[test]
#[ignore = "kernel lane: needs bridge VLAN filtering; run by `make test-kernel`"]
fn containers_on_different_vlans_of_one_bridge_do_not_reach_each_other() {
    let lab = Lab::new();
    let (a, b, c) = (
        Netns::new("kl-v1"),
        Netns::new("kl-v2"),
        Netns::new("kl-v3"),
    );
    let on = |vlan: u16, ip: &str| {
        conf(json!({"vlan": vlan, "ipam": {"type": "static", "addresses": [{"address": ip}]}}))
    };
    assert!(lab.add("a", &a, &on(100, "10.101.0.2/24")).ok());
    assert!(lab.add("b", &b, &on(100, "10.101.0.3/24")).ok());
    assert!(lab.add("c", &c, &on(200, "10.101.0.4/24")).ok());
    let d = Netns::new("kl-v4");
    assert!(lab.add("d", &d, &on(200, "10.101.0.5/24")).ok());
    assert!(pings(&a, "10.101.0.3"), "same VLAN talks");
    assert!(pings(&c, "10.101.0.5"), "same VLAN talks");
    assert!(!pings(&a, "10.101.0.4"), "VLAN 100 must not reach VLAN 200");
    assert!(!pings(&c, "10.101.0.3"), "VLAN 200 must not reach VLAN 100");
}

#[test]
#[ignore = "kernel lane: needs bridge VLAN filtering; run by `make test-kernel`"]
fn an_existing_bridge_is_switched_to_vlan_filtering() {
    let lab = Lab::new();
    lab.node
        .run_ok(&["ip", "link", "add", "name", "br1", "type", "bridge"]);
    assert!(!lab.vlan_filtering("br1"));
    let a = Netns::new("kl-e");
    let port = host_veth(&lab.add("e", &a, &conf(json!({"vlan": 42}))));
    assert!(
        lab.vlan_filtering("br1"),
        "the reference leaves it off and the VLAN has no effect"
    );
    assert!(lab.port_vlans(&port).contains(&(42, true, true)));
}

/// IPv6 only on VLANs (issue 20): no IPv4 on the node or the containers. Access ports of one
/// VLAN talk and two VLANs do not (with the same prefix on both); `isGateway` on VLAN 100 puts
/// the IPv6 gateway on `br1.100` (optimistic, reached at once) and the default route via it;
/// a trunk container's tagged sub-interface reaches VLAN 200 only.
#[test]
#[ignore = "kernel lane: needs bridge VLAN filtering; run by `make test-kernel`"]
fn ipv6_only_vlans_isolate_carry_the_gateway_on_bridge_dot_vlan_and_trunk() {
    let lab = Lab::new();
    let on = |vlan: u16, ip: &str| {
        conf(json!({"vlan": vlan, "ipam": {"type": "static", "addresses": [{"address": ip}]}}))
    };
    let ns = |t: &str| Netns::new(&format!("kl6-{t}"));
    let (a, b, c, d, g, t) = (ns("a"), ns("b"), ns("c"), ns("d"), ns("g"), ns("t"));
    for (cid, ctr, vlan, ip) in [
        ("a", &a, 100, "fd00:101::2/64"),
        ("b", &b, 100, "fd00:101::3/64"),
        ("c", &c, 200, "fd00:101::4/64"),
        ("d", &d, 200, "fd00:101::5/64"),
    ] {
        let out = lab.add(cid, ctr, &on(vlan, ip));
        assert!(out.ok(), "{out}");
    }
    assert!(pings(&a, "fd00:101::3"), "VLAN 100 talks");
    assert!(pings(&c, "fd00:101::5"), "VLAN 200 talks");
    assert!(
        !pings(&a, "fd00:101::4"),
        "VLAN 100 must not reach VLAN 200"
    );
    assert!(
        !pings(&c, "fd00:101::3"),
        "VLAN 200 must not reach VLAN 100"
    );
    // The gateway of VLAN 100, on br1.100, optimistic: the container reaches it right after ADD.
    let gw = json!({"vlan": 100, "isGateway": true, "isDefaultGateway": true,
        "ipam": {"type": "static", "addresses": [{"address": "fd00:100::2/64", "gateway": "fd00:100::1"}]}});
    let out = lab.add("g", &g, &conf(gw));
    assert!(out.ok(), "{out}");
    assert_eq!(out.json()["interfaces"][3]["name"], "br1.100");
    assert!(lab
        .node
        .addresses("br1.100")
        .contains(&"fd00:100::1/64".to_string()));
    assert!(lab
        .node
        .addresses("br1")
        .iter()
        .all(|x| !x.starts_with("fd00:100:")));
    assert!(pings(&g, "fd00:100::1"), "the gateway on VLAN 100, at once");
    let routes = g.run_ok(&["ip", "-6", "route", "show", "default"]);
    assert!(routes.contains("via fd00:100::1 dev net1"), "{routes}");
    // A trunk of VLAN 200: tagged frames of its sub-interface are VLAN 200's.
    let trunk = conf(json!({"vlanTrunk": [{"id": 200}], "preserveDefaultVlan": false}));
    let out = lab.add("t", &t, &trunk);
    assert!(out.ok(), "{out}");
    t.run_ok(&[
        "ip", "link", "add", "link", "net1", "name", "net1.200", "type", "vlan", "id", "200",
    ]);
    t.run_ok(&[
        "ip",
        "addr",
        "add",
        "fd00:101::9/64",
        "dev",
        "net1.200",
        "nodad",
    ]);
    t.run_ok(&["ip", "link", "set", "net1.200", "up"]);
    assert!(
        pings(&t, "fd00:101::5"),
        "tagged 200 on the trunk is VLAN 200"
    );
    assert!(!pings(&t, "fd00:101::3"), "and not VLAN 100");
    for ctr in [&a, &b, &c, &d, &g, &t] {
        let v4 = ctr.run_ok(&["ip", "-4", "-o", "addr", "show", "scope", "global"]);
        assert!(v4.trim().is_empty(), "no IPv4: {v4}");
    }
    let v4 = lab
        .node
        .run_ok(&["ip", "-4", "-o", "addr", "show", "scope", "global"]);
    assert!(v4.trim().is_empty(), "no IPv4 on the node: {v4}");
}

/// ovn-overlay as production nodes run it: the kernel openvswitch datapath and kernel Geneve
/// (this machine's kernel has neither; the other OVN tests use the userspace datapath).
#[test]
#[ignore = "kernel lane: needs the openvswitch datapath and Geneve modules; run by `make test-kernel`"]
fn ovn_overlay_between_two_nodes_on_the_kernel_datapath_with_kernel_geneve() {
    use conformance_tests::ovn::{addr_of, call, ok_json, Vm};
    use conformance_tests::OvnLab;
    let lab = OvnLab::start_kernel_datapath("kl-ovn", 2);
    let plugins = PluginDir::ours(&["ovn-overlay"]);
    let conf = json!({"cniVersion": "1.1.0", "name": "kl-overlay", "type": "ovn-overlay",
        "netAttachDefName": "ns/kl-overlay", "subnets": "10.210.0.0/24", "readyTimeout": 60});
    let (a, b) = (Vm::new("kl-a"), Vm::new("kl-b"));
    let ra = ok_json(&call(
        &plugins,
        "ovn-overlay",
        &lab.nodes[0],
        "ADD",
        &a,
        "net1",
        "",
        &conf,
    ));
    let rb = ok_json(&call(
        &plugins,
        "ovn-overlay",
        &lab.nodes[1],
        "ADD",
        &b,
        "net1",
        "",
        &conf,
    ));
    // br-int on the kernel datapath, and the kernel's Geneve device carrying the tunnel.
    for node in &lab.nodes {
        let dp = node.vsctl(&["get", "bridge", "br-int", "datapath_type"]);
        assert_eq!(
            dp.trim().trim_matches('"'),
            "system",
            "br-int is not on the kernel datapath"
        );
        let dps = node.appctl(&["dpctl/show"]);
        assert!(dps.contains("system@ovs-system"), "{dps}");
    }
    assert!(a.reaches(&addr_of(&rb)), "no traffic over kernel Geneve");
    assert!(b.reaches(&addr_of(&ra)));
    let geneve = lab.nodes[0]
        .ns
        .run_ok(&["ip", "-d", "link", "show", "type", "geneve"]);
    assert!(
        geneve.contains("geneve"),
        "no kernel Geneve device on the node: {geneve}"
    );
    // TCP too (no checksum workaround on the kernel datapath: the plugin leaves offload alone).
    let server = std::process::Command::new("ip")
        .args(["netns", "exec", b.ns.name(), "/usr/bin/python3", "-c",
            "import socket\ns=socket.socket(); s.bind(('0.0.0.0',7000)); s.listen(1); s.settimeout(30)\nc,_=s.accept(); n=0\nwhile True:\n    d=c.recv(65536)\n    if not d: break\n    n+=len(d)\nprint(n)\n"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let client = format!(
        "import socket\ns=socket.create_connection(('{}',7000),timeout=30)\ns.sendall(b'x'*1000000); s.close()\n",
        addr_of(&rb)
    );
    a.ns.run_ok(&["/usr/bin/python3", "-c", &client]);
    let got = server.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "1000000");
    for (i, vm) in [(0, &a), (1, &b)] {
        ok_json(&call(
            &plugins,
            "ovn-overlay",
            &lab.nodes[i],
            "DEL",
            vm,
            "net1",
            "",
            &conf,
        ));
    }
    assert!(lab
        .nbctl(&["--bare", "--columns=name", "list", "Logical_Switch_Port"])
        .trim()
        .is_empty());
}
