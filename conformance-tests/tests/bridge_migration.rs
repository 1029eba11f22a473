//! A VM's live migration on a Linux bridge network (issue 18), on two simulated nodes whose
//! `br1` share a simulated datacenter wire with a host on it: what the target's launcher pod
//! puts on the wire before the VM runs there, with and without `disableContainerInterface`; the
//! cut-over; a sticky whereabouts address that moves with the VM. The outage in milliseconds is
//! measured by `make bench` (docs/benchmarks.md).

use std::time::Duration;

use conformance_tests::migration::{Binding, BridgeWire, Launcher, GUEST_CIDR, VM_MAC};
use conformance_tests::wait_until;

const VM_IP: &str = "10.249.0.10";

/// The source pod on node A runs the VM; the host reaches it.
fn running_source(w: &BridgeWire, binding: Binding) -> (Launcher, String) {
    let src = Launcher::new("mg-s");
    let added = w.call(0, "ADD", &src, &w.conf(binding));
    assert!(added.ok(), "{added}");
    let cidr = match binding {
        Binding::Sticky => added.json()["ips"][0]["address"]
            .as_str()
            .unwrap()
            .to_string(),
        _ => GUEST_CIDR.to_string(),
    };
    src.bind(&cidr);
    src.run_vm();
    let ip = cidr.split('/').next().unwrap().to_string();
    wait_until("the host reaches the VM", Duration::from_secs(10), || {
        w.reaches(&ip)
    });
    assert_eq!(w.port_of(VM_MAC).as_deref(), Some("n0"));
    (src, ip)
}

/// The cut-over and the source's DEL: the wire moves to node B and the host reaches the VM there
/// (the source's guest is down, so the answer can only come from the target).
fn cut_over(w: &BridgeWire, binding: Binding, src: &Launcher, dst: &Launcher, ip: &str) {
    src.stop_vm();
    dst.run_vm();
    wait_until(
        "the wire forwards the VM's frames to node B",
        Duration::from_secs(5),
        || w.port_of(VM_MAC).as_deref() == Some("n1"),
    );
    assert!(w.reaches(ip), "the host reaches the VM on the target");
    let del = w.call(0, "DEL", src, &w.conf(binding));
    assert!(del.ok(), "{del}");
    assert!(!src.pod.has_link("net1"));
    assert!(
        w.reaches(ip),
        "the source's DEL does not cut the VM on the target"
    );
    let del = w.call(1, "DEL", dst, &w.conf(binding));
    assert!(del.ok(), "{del}");
}

#[test]
fn with_disable_container_interface_the_target_pod_stays_silent_until_the_vm_runs_there() {
    let w = BridgeWire::new("mg-down", false);
    let (src, ip) = running_source(&w, Binding::Down);
    // Pings from before the target's ADD until 2 s after its wiring: every one answered by the
    // VM on the source, and the wire still sends the VM's frames to node A.
    let pinger = w.ping(&ip, 250);
    let dst = Launcher::new("mg-d");
    let added = w.call(1, "ADD", &dst, &w.conf(Binding::Down));
    assert!(added.ok(), "{added}");
    let (mac, up) = dst.pod_link();
    assert_eq!(mac, VM_MAC, "the target pod's interface has the VM's MAC");
    assert!(!up, "and is left down");
    dst.bind(GUEST_CIDR);
    let pings = pinger.finish();
    assert_eq!(
        pings.lost(),
        0,
        "the VM on the source answered every ping while the target was created: {pings:?}"
    );
    assert_eq!(w.port_of(VM_MAC).as_deref(), Some("n0"));
    cut_over(&w, Binding::Down, &src, &dst, &ip);
}

#[test]
fn without_it_the_target_pod_draws_the_vms_frames_to_node_b_before_the_vm_runs_there() {
    let w = BridgeWire::new("mg-up", false);
    let (src, ip) = running_source(&w, Binding::Up);
    let dst = Launcher::new("mg-d");
    let added = w.call(1, "ADD", &dst, &w.conf(Binding::Up));
    assert!(added.ok(), "{added}");
    let (mac, up) = dst.pod_link();
    assert_eq!(mac, VM_MAC);
    assert!(up, "the default: the pod interface is up when ADD returns");
    // Its kernel speaks with the VM's MAC (IPv6 link-local: MLD, router solicitation): the
    // switches learn the VM on node B while it still runs on node A.
    wait_until(
        "the wire learns the VM's MAC toward node B from the target pod",
        Duration::from_secs(5),
        || w.port_of(VM_MAC).as_deref() == Some("n1"),
    );
    dst.bind(GUEST_CIDR);
    assert!(
        src.guest
            .addresses("eth0")
            .iter()
            .any(|a| a.starts_with(VM_IP)),
        "the VM still runs on the source"
    );
    assert!(
        !w.reaches(&ip),
        "the host's pings go to node B, where the VM does not run yet"
    );
    cut_over(&w, Binding::Up, &src, &dst, &ip);
}

#[test]
fn a_sticky_address_moves_with_the_vm_and_nobody_else_gets_it_meanwhile() {
    let w = BridgeWire::new("mg-st", true);
    let conf = w.conf(Binding::Sticky);
    let (src, ip) = running_source(&w, Binding::Sticky);
    let dst = Launcher::new("mg-d");
    let added = w.call(1, "ADD", &dst, &conf);
    assert!(added.ok(), "{added}");
    let cidr = added.json()["ips"][0]["address"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        cidr.split('/').next(),
        Some(ip.as_str()),
        "the same address"
    );
    // Another pod (its own MAC) during the window gets another address.
    let other = Launcher::new("mg-o");
    let mut c = conf.clone();
    c["runtimeConfig"]["mac"] = serde_json::json!("02:6d:69:67:00:99");
    let got = w.call(1, "ADD", &other, &c);
    assert!(got.ok(), "{got}");
    let other_ip = got.json()["ips"][0]["address"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        !other_ip.starts_with(&format!("{ip}/")),
        "{other_ip} is the VM's"
    );
    dst.bind(&cidr);
    cut_over(&w, Binding::Sticky, &src, &dst, &ip);
    assert!(w.call(1, "DEL", &other, &c).ok());
}
