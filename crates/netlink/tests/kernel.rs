//! The crate against the real kernel, each test in namespaces of its own (never the root one).

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use netlink::{LinkChange, Mac, Netlink, Route, VethSpec};
use netns::NetNs;

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A named namespace removed on drop, also when the test fails.
struct TestNs {
    name: String,
    ns: NetNs,
}

impl TestNs {
    fn new(tag: &str) -> TestNs {
        let name = format!(
            "mh-nl-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip netns add {name}");
        let ns = NetNs::open(format!("/run/netns/{name}")).unwrap();
        TestNs { name, ns }
    }

    fn nl(&self) -> Netlink {
        Netlink::connect_in(&self.ns).unwrap()
    }

    fn ip(&self, args: &str) -> String {
        let mut full = vec!["-n", &self.name];
        full.extend(args.split_whitespace());
        let out = Command::new("ip").args(&full).output().unwrap();
        assert!(
            out.status.success(),
            "ip {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

#[test]
fn a_bridge_is_created_once_and_read_back_as_a_bridge() {
    let node = TestNs::new("br");
    let nl = node.nl();
    assert!(nl.add_bridge("br1", Some(1400), false).unwrap());
    assert!(
        !nl.add_bridge("br1", None, false).unwrap(),
        "second creation reports existing"
    );
    let br = nl.link_by_name("br1").unwrap().expect("bridge exists");
    assert!(br.is_bridge());
    assert_eq!(br.mtu, 1400);
    assert!(node.ip("-d link show br1").contains("bridge "));
    assert!(nl.link_by_name("nope0").unwrap().is_none());
}

#[test]
fn a_veth_peer_is_created_directly_in_the_other_namespace_with_its_mac_and_mtu() {
    let node = TestNs::new("vn");
    let pod = TestNs::new("vp");
    let nl = node.nl();
    let mac: Mac = "0a:58:0a:01:00:05".parse().unwrap();
    nl.add_veth(&VethSpec {
        name: "vethx1",
        peer: "net1",
        peer_ns_fd: pod.ns.raw_fd(),
        mtu: Some(1450),
        peer_mac: Some(mac),
    })
    .unwrap();
    let host = nl.link_by_name("vethx1").unwrap().unwrap();
    assert!(host.is_veth());
    assert_eq!(host.mtu, 1450);
    let pnl = pod.nl();
    let cont = pnl.link_by_name("net1").unwrap().unwrap();
    assert_eq!(cont.mac, Some(mac));
    assert_eq!(cont.mtu, 1450);
    assert_eq!(cont.peer_index, Some(host.index));
    assert_eq!(host.peer_index, Some(cont.index));
    assert!(pod.ip("link show net1").contains("0a:58:0a:01:00:05"));
    assert!(
        nl.link_by_name("net1").unwrap().is_none(),
        "peer not in the node namespace"
    );
}

#[test]
fn ports_get_master_alias_and_options_and_come_up() {
    let node = TestNs::new("pt");
    let pod = TestNs::new("pp");
    let nl = node.nl();
    nl.add_bridge("br2", None, false).unwrap();
    let br = nl.link_by_name("br2").unwrap().unwrap();
    nl.set_link(
        br.index,
        "br2",
        &LinkChange {
            up: Some(true),
            ..Default::default()
        },
    )
    .unwrap();
    nl.add_veth(&VethSpec {
        name: "vethp1",
        peer: "eth1",
        peer_ns_fd: pod.ns.raw_fd(),
        mtu: None,
        peer_mac: None,
    })
    .unwrap();
    let port = nl.link_by_name("vethp1").unwrap().unwrap();
    let change = LinkChange {
        up: Some(true),
        master: Some(br.index),
        alias: Some("owner x".into()),
        ..Default::default()
    };
    nl.set_link(port.index, "vethp1", &change).unwrap();
    nl.set_bridge_port(&port, true, true).unwrap();
    let port = nl.link_by_index(port.index).unwrap().unwrap();
    assert_eq!(port.master, Some(br.index));
    assert_eq!(port.alias.as_deref(), Some("owner x"));
    let opts = port.port.expect("bridge port data");
    assert!(opts.hairpin && opts.isolated);
    let shown = node.ip("-d link show vethp1");
    assert!(
        shown.contains("hairpin on") && shown.contains("isolated on"),
        "{shown}"
    );
    nl.set_link(
        br.index,
        "br2",
        &LinkChange {
            promisc: Some(true),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(nl.link_by_index(br.index).unwrap().unwrap().promisc);
    assert!(nl.del_link(port.index, "vethp1").unwrap());
    assert!(
        !nl.del_link(port.index, "vethp1").unwrap(),
        "already gone is not an error"
    );
    assert!(
        pod.nl().link_by_name("eth1").unwrap().is_none(),
        "peer went with it"
    );
}

#[test]
fn addresses_and_routes_are_added_listed_and_removed_idempotently() {
    let node = TestNs::new("ar");
    let nl = node.nl();
    nl.add_bridge("br3", None, false).unwrap();
    let br = nl.link_by_name("br3").unwrap().unwrap();
    nl.set_link(
        br.index,
        "br3",
        &LinkChange {
            up: Some(true),
            ..Default::default()
        },
    )
    .unwrap();
    let v4 = "10.77.0.1/24".parse().unwrap();
    let v6 = "fd77::1/64".parse().unwrap();
    assert!(nl.add_address(br.index, "br3", v4).unwrap());
    assert!(!nl.add_address(br.index, "br3", v4).unwrap());
    assert!(nl.add_address(br.index, "br3", v6).unwrap());
    let addrs: Vec<_> = nl
        .addresses(br.index)
        .unwrap()
        .into_iter()
        .map(|a| a.net.to_string())
        .collect();
    assert!(
        addrs.contains(&"10.77.0.1/24".to_string()) && addrs.contains(&"fd77::1/64".to_string()),
        "{addrs:?}"
    );
    assert!(node.ip("addr show br3").contains("brd 10.77.0.255"));

    let r = Route::new(
        "10.88.0.0/16".parse().unwrap(),
        Some("10.77.0.254".parse().unwrap()),
        br.index,
    );
    assert!(nl.add_route(&r).unwrap());
    assert!(!nl.add_route(&r).unwrap());
    let shown = node.ip("route show");
    assert!(
        shown.contains("10.88.0.0/16 via 10.77.0.254 dev br3"),
        "{shown}"
    );
    let found = nl.routes().unwrap();
    assert!(found
        .iter()
        .any(|x| x.dst == r.dst && x.gateway == r.gateway && x.oif == Some(br.index)));
    let mut metric = Route::new(
        "0.0.0.0/0".parse().unwrap(),
        Some("10.77.0.254".parse().unwrap()),
        br.index,
    );
    metric.priority = Some(50);
    metric.mtu = Some(1300);
    assert!(nl.add_route(&metric).unwrap());
    assert!(node.ip("route show default").contains("metric 50 mtu 1300"));
    assert!(nl.del_route(&r).unwrap());
    assert!(!nl.del_route(&r).unwrap());
    assert!(nl.del_address(br.index, "br3", v4).unwrap());
    assert!(!nl.del_address(br.index, "br3", v4).unwrap());
}

#[test]
fn sysctls_follow_the_namespace_of_the_thread() {
    let node = TestNs::new("sc");
    node.ns
        .run(|| {
            netlink::sysctl::write("net/ipv4/ip_forward", "1").unwrap();
            assert_eq!(netlink::sysctl::read("net.ipv4.ip_forward").unwrap(), "1");
        })
        .unwrap();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &node.name,
            "cat",
            "/proc/sys/net/ipv4/ip_forward",
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
}

#[test]
fn vlan_filtering_is_accepted_exactly_where_iproute2_gets_it_and_a_refusal_leaves_nothing() {
    // Bridge VLAN filtering is missing on the development kernel and present on the kernel
    // lane's. iproute2, in a namespace of its own, is the oracle of which this kernel is; a
    // refused creation must leave no bridge behind.
    let oracle = TestNs::new("vf-oracle");
    let kernel_has_it = Command::new("ip")
        .args([
            "-n",
            &oracle.name,
            "link",
            "add",
            "br4",
            "type",
            "bridge",
            "vlan_filtering",
            "1",
        ])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    let node = TestNs::new("vf");
    let nl = node.nl();
    let got = nl.add_bridge("br4", None, true);
    assert_eq!(
        got.is_ok(),
        kernel_has_it,
        "ours: {got:?}, iproute2 got it: {kernel_has_it}"
    );
    match got {
        Ok(created) => {
            assert!(created);
            assert_eq!(
                nl.link_by_name("br4").unwrap().unwrap().vlan_filtering,
                Some(true)
            );
        }
        Err(e) => {
            assert!(e.is_not_supported(), "{e}");
            assert!(
                nl.link_by_name("br4").unwrap().is_none(),
                "refused bridge left behind"
            );
        }
    }
}
