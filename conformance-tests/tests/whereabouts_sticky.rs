//! Sticky addresses by MAC (issue 18): with `sticky_by_mac`, a VM's address belongs to its MAC
//! (`runtimeConfig.mac`, CNI_ARGS `MAC`): its next launcher pod, on any node, gets it again; DEL
//! parks it for the retention; a live migration's two pods share it while other pods, ADDed
//! concurrently throughout, never get it; GC and the operators' tool free it past the retention,
//! or by MAC. On the file store (one node) and on a 3-member etcd cluster two nodes share.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use conformance_tests::wb_lab::{addresses as addrs, message as msg, Row, WbLab};
use conformance_tests::Outcome;
use serde_json::{json, Value};

struct Lab(WbLab);

impl std::ops::Deref for Lab {
    type Target = WbLab;

    fn deref(&self) -> &WbLab {
        &self.0
    }
}

const MAC: &str = "02:aa:00:00:00:01";

impl Lab {
    fn file() -> Lab {
        Lab(WbLab::file("st"))
    }

    /// Two nodes joined by a link; node A runs the etcd cluster, serving both.
    fn etcd() -> Lab {
        Lab(WbLab::etcd_two_nodes("st"))
    }

    fn conf(&self, name: &str, ipam: Value) -> Value {
        json!({"cniVersion": "1.1.0", "name": name, "type": "bridge", "ipam": self.ipam(ipam)})
    }

    /// ADD of a launcher pod with `mac` in `runtimeConfig.mac` (the `mac` capability).
    fn add_vm(&self, node: usize, cid: &str, mac: &str, conf: &Value) -> Outcome {
        let mut c = conf.clone();
        c["runtimeConfig"]["mac"] = json!(mac);
        self.call(node, "ADD", cid, "", &c)
    }

    fn gc(&self, conf: &Value, valid: &[&str]) -> Outcome {
        let mut c = conf.clone();
        c["cni.dev/valid-attachments"] = valid
            .iter()
            .map(|cid| json!({"containerID": cid, "ifname": "net1"}))
            .collect();
        self.call(0, "GC", "", "", &c)
    }

    fn row(&self, ip: &str) -> Option<Row> {
        self.rows().into_iter().find(|r| r.ip == ip)
    }
}

fn ip_of(out: &Outcome) -> String {
    addrs(out)[0].split('/').next().unwrap().to_string()
}

fn sticky_ipam(retention: &str) -> Value {
    json!({"range": "10.88.0.0/24", "range_start": "10.88.0.10", "range_end": "10.88.0.250",
           "sticky_by_mac": true, "sticky_retention": retention})
}

/// Restart on another node, DEL parking, other MACs and plain pods kept off, a live migration
/// with ADDs of other pods running throughout, release by MAC.
fn a_vm_keeps_its_address_across_restarts_and_a_migration(lab: Lab) {
    let conf = lab.conf("vmnet", sticky_ipam("1h"));
    let first = lab.add_vm(0, "launcher-1", MAC, &conf);
    let x = ip_of(&first);
    let row = lab.row(&x).expect("reserved");
    assert_eq!(
        (row.cid.as_str(), row.mac.as_deref(), row.parked),
        ("launcher-1", Some(MAC), false)
    );
    // The pod goes: the address is parked for the MAC, not freed.
    assert!(lab.call(0, "DEL", "launcher-1", "", &conf).ok());
    assert!(lab.row(&x).expect("parked").parked);
    assert!(
        lab.call(0, "DEL", "launcher-1", "", &conf).ok(),
        "DEL again"
    );
    // Nobody else gets it: a plain pod, another MAC, a request for it (103 naming the MAC).
    let plain = lab.call(1, "ADD", "pod-1", "", &conf);
    let other = lab.add_vm(1, "other-vm", "02:aa:00:00:00:02", &conf);
    assert_ne!(ip_of(&plain), x);
    assert_ne!(ip_of(&other), x);
    let mut asking = conf.clone();
    asking["runtimeConfig"] = json!({"ips": [format!("{x}/24")]});
    let stolen = lab.call(1, "ADD", "pod-2", "", &asking);
    assert_eq!(stolen.error_code(), Some(103), "{stolen}");
    assert!(msg(&stolen).contains(MAC), "{stolen}");
    // The VM's next launcher pod, on the other node, MAC in CNI_ARGS (upper case): the address.
    let args = format!("IgnoreUnknown=1;MAC={}", MAC.to_uppercase());
    let second = lab.call(1, "ADD", "launcher-2", &args, &conf);
    assert_eq!(ip_of(&second), x);
    let row = lab.row(&x).unwrap();
    assert_eq!(
        (row.cid.as_str(), row.parked, row.holders),
        ("launcher-2", false, 1)
    );
    // Live migration: other pods ADD (and DEL) on both nodes during the whole window.
    let done = AtomicBool::new(false);
    let seen = std::thread::scope(|s| {
        let churn = s.spawn(|| {
            let mut got = Vec::new();
            let mut i = 0;
            while !done.load(Ordering::SeqCst) || i < 4 {
                let cid = format!("churn-{i}");
                let out = if i % 2 == 0 {
                    lab.call(i, "ADD", &cid, "", &conf)
                } else {
                    lab.add_vm(i, &cid, &format!("02:bb:00:00:00:{:02x}", i % 256), &conf)
                };
                got.push(ip_of(&out));
                assert!(lab.call(i, "DEL", &cid, "", &conf).ok());
                i += 1;
            }
            got
        });
        // The target's ADD while the source holds it: the same address, both hold it.
        let target = lab.add_vm(0, "launcher-3", MAC, &conf);
        assert_eq!(ip_of(&target), x);
        let row = lab.row(&x).unwrap();
        assert_eq!((row.cid.as_str(), row.holders), ("launcher-3", 2));
        // The source's DEL: the target keeps it.
        assert!(lab.call(1, "DEL", "launcher-2", "", &conf).ok());
        let row = lab.row(&x).unwrap();
        assert_eq!(
            (row.cid.as_str(), row.parked, row.holders),
            ("launcher-3", false, 1)
        );
        done.store(true, Ordering::SeqCst);
        churn.join().unwrap()
    });
    assert!(seen.len() >= 4);
    assert!(!seen.contains(&x), "a third pod got {x}: {seen:?}");
    // CHECK of the target passes; its DEL parks the address again.
    let mut check = conf.clone();
    check["runtimeConfig"]["mac"] = json!(MAC);
    check["prevResult"] = json!({"cniVersion": "1.1.0", "ips": [{"address": format!("{x}/24")}]});
    let checked = lab.call(0, "CHECK", "launcher-3", "", &check);
    assert!(checked.ok(), "{checked}");
    assert!(lab.call(0, "DEL", "launcher-3", "", &conf).ok());
    assert!(lab.row(&x).unwrap().parked);
    // The operator releases it by MAC: free, a request for it now succeeds.
    let (ok, released) = lab.tool(0, &["release", "--mac", MAC]);
    assert!(ok, "{released}");
    assert!(lab.row(&x).is_none());
    let taken = lab.call(1, "ADD", "pod-2", "", &asking);
    assert_eq!(ip_of(&taken), x);
    let (ok, none) = lab.tool(0, &["release", "--mac", MAC]);
    assert!(!ok, "a MAC that holds nothing is an error: {none}");
}

#[test]
fn file_store_a_vm_keeps_its_address_across_restarts_and_a_migration() {
    a_vm_keeps_its_address_across_restarts_and_a_migration(Lab::file());
}

#[test]
fn etcd_two_nodes_a_vm_keeps_its_address_across_restarts_and_a_migration() {
    a_vm_keeps_its_address_across_restarts_and_a_migration(Lab::etcd());
}

fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// GC parks a missed DEL's address, keeps a parked one until its retention, frees it after;
/// `multihome-ipam expire` does the same.
fn gc_and_expire_free_parked_addresses_past_their_retention(lab: Lab) {
    let conf = lab.conf("vmnet", sticky_ipam("4s"));
    let a = ip_of(&lab.add_vm(0, "vm-a", "02:aa:00:00:00:0a", &conf));
    let b = ip_of(&lab.add_vm(1, "vm-b", "02:aa:00:00:00:0b", &conf));
    let c = ip_of(&lab.add_vm(0, "vm-c", "02:aa:00:00:00:0c", &conf));
    // vm-a's DEL was missed; vm-b is still valid; vm-c was DELeted.
    assert!(lab.call(0, "DEL", "vm-c", "", &conf).ok());
    let out = lab.gc(&conf, &["vm-b"]);
    assert!(out.ok(), "{out}");
    assert!(lab.row(&a).expect("parked, not freed").parked);
    assert!(lab.row(&c).expect("kept within its retention").parked);
    let rb = lab.row(&b).unwrap();
    assert_eq!((rb.cid.as_str(), rb.parked), ("vm-b", false));
    // Past the retention: GC frees a; expire frees c; b (live) stays throughout.
    until("GC frees the parked address", || {
        assert!(lab.gc(&conf, &["vm-b"]).ok());
        lab.row(&a).is_none()
    });
    until("expire frees the parked address", || {
        assert!(lab.tool(1, &["expire"]).0);
        lab.row(&c).is_none()
    });
    assert!(!lab.row(&b).unwrap().parked);
}

#[test]
fn file_store_gc_and_expire_free_parked_addresses_past_their_retention() {
    gc_and_expire_free_parked_addresses_past_their_retention(Lab::file());
}

#[test]
fn etcd_two_nodes_gc_and_expire_free_parked_addresses_past_their_retention() {
    gc_and_expire_free_parked_addresses_past_their_retention(Lab::etcd());
}

/// Two networks sharing a pool: the MAC holds one address on each. No MAC: an ordinary
/// reservation. A bad MAC or retention: 7 naming it, nothing reserved. A requested address is
/// the MAC's. A failed ADD leaves the store as it found it (a join undone, a fresh one freed).
fn networks_fallbacks_requests_and_failed_adds(lab: Lab) {
    let ipam = sticky_ipam("1h");
    let (net_a, net_b) = (lab.conf("net-a", ipam.clone()), lab.conf("net-b", ipam));
    let on_a = ip_of(&lab.add_vm(0, "vm-1a", MAC, &net_a));
    let on_b = ip_of(&lab.add_vm(1, "vm-1b", MAC, &net_b));
    assert_ne!(on_a, on_b, "one pool, two networks: two reservations");
    assert!(lab.call(0, "DEL", "vm-1a", "", &net_a).ok());
    assert!(lab.row(&on_a).unwrap().parked);
    assert_eq!(ip_of(&lab.add_vm(1, "vm-2b", MAC, &net_b)), on_b);
    assert!(
        lab.row(&on_a).unwrap().parked,
        "net-b's ADD left net-a's alone"
    );
    // No MAC: ordinary; DEL frees it.
    let plain = ip_of(&lab.call(0, "ADD", "no-mac", "", &net_a));
    assert!(lab.row(&plain).unwrap().mac.is_none());
    assert!(lab.call(0, "DEL", "no-mac", "", &net_a).ok());
    assert!(lab.row(&plain).is_none());
    // Bad input: 7 naming the key; nothing reserved.
    let before = lab.rows().len();
    let bad = lab.add_vm(0, "bad-1", "02:aa:zz:00:00:01", &net_a);
    assert_eq!(bad.error_code(), Some(7), "{bad}");
    assert!(msg(&bad).contains("runtimeConfig.mac"), "{bad}");
    let bad = lab.call(0, "ADD", "bad-2", "IgnoreUnknown=1;MAC=nope", &net_a);
    assert_eq!(bad.error_code(), Some(7), "{bad}");
    assert!(msg(&bad).contains("CNI_ARGS MAC"), "{bad}");
    let bad = lab.add_vm(0, "bad-3", MAC, &lab.conf("net-a", sticky_ipam("5y")));
    assert_eq!(bad.error_code(), Some(7), "{bad}");
    assert!(msg(&bad).contains("sticky_retention"), "{bad}");
    assert_eq!(lab.rows().len(), before);
    // A VM with a requested address: the MAC's; asked for again, it stays; another one: 7.
    let vm_mac = "02:aa:00:00:00:99";
    let mut asking = net_a.clone();
    asking["runtimeConfig"] = json!({"ips": ["10.88.0.5/24"], "mac": vm_mac});
    assert_eq!(
        addrs(&lab.call(0, "ADD", "fixed-1", "", &asking)),
        ["10.88.0.5/24"]
    );
    assert!(lab.call(0, "DEL", "fixed-1", "", &asking).ok());
    assert!(lab.row("10.88.0.5").unwrap().parked);
    assert_eq!(
        addrs(&lab.call(1, "ADD", "fixed-2", "", &asking)),
        ["10.88.0.5/24"]
    );
    assert!(lab.call(1, "DEL", "fixed-2", "", &asking).ok());
    asking["runtimeConfig"]["ips"] = json!(["10.88.0.6/24"]);
    let moved = lab.call(0, "ADD", "fixed-3", "", &asking);
    assert_eq!(moved.error_code(), Some(7), "{moved}");
    assert!(msg(&moved).contains("10.88.0.5"), "{moved}");
    // Dual stack: the IPv6 request is another's (103) after the IPv4 range was joined or
    // freshly reserved: both undone.
    let dual = json!({"ipRanges": [{"range": "10.89.0.0/24"}, {"range": "fd89::/120"}],
                      "sticky_by_mac": true});
    let dual = lab.conf("net-d", dual);
    let holder = addrs(&lab.call(0, "ADD", "v6-holder", "", &dual));
    let v6_taken = holder[1].clone();
    let vm = addrs(&lab.add_vm(1, "dual-1", MAC, &dual));
    assert!(lab.call(1, "DEL", "dual-1", "", &dual).ok());
    let parked_before: Vec<String> = lab
        .rows()
        .iter()
        .filter(|r| r.parked)
        .map(|r| format!("{r:?}"))
        .collect();
    let mut failing = dual.clone();
    failing["runtimeConfig"] = json!({"mac": MAC, "ips": [v6_taken.clone()]});
    let out = lab.call(0, "ADD", "dual-2", "", &failing);
    assert!(!out.ok(), "{out}");
    let parked_after: Vec<String> = lab
        .rows()
        .iter()
        .filter(|r| r.parked)
        .map(|r| format!("{r:?}"))
        .collect();
    assert_eq!(
        parked_before, parked_after,
        "the join of {} was undone",
        vm[0]
    );
    failing["runtimeConfig"]["mac"] = json!("02:aa:00:00:00:77");
    let before = lab.rows().len();
    let out = lab.call(0, "ADD", "dual-3", "", &failing);
    assert_eq!(out.error_code(), Some(103), "{out}");
    assert_eq!(
        lab.rows().len(),
        before,
        "the fresh IPv4 reservation was freed"
    );
    assert!(!lab
        .rows()
        .iter()
        .any(|r| r.cid == "dual-3" || r.cid == "dual-2"));
}

#[test]
fn file_store_networks_fallbacks_requests_and_failed_adds() {
    networks_fallbacks_requests_and_failed_adds(Lab::file());
}

#[test]
fn etcd_two_nodes_networks_fallbacks_requests_and_failed_adds() {
    networks_fallbacks_requests_and_failed_adds(Lab::etcd());
}
