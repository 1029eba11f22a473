//! Requested addresses (issue 18): the `ips` capability (`runtimeConfig.ips`, what Multus passes
//! from a network selection element's `ips`) and CNI_ARGS `IP` (podman's `--ip`, bare) are
//! reserved in the cluster store, so that nobody else can take them; refused with a clear code
//! when another attachment holds them (103), outside every range, excluded, the gateway or the
//! network address (7); all-or-nothing across families. On the file store (one node) and on a
//! 3-member etcd cluster (the store every node shares).

use std::ops::Deref;

use conformance_tests::wb_lab::{addresses as addrs, message as msg, WbLab};
use serde_json::{json, Value};

struct Lab(WbLab);

impl Deref for Lab {
    type Target = WbLab;

    fn deref(&self) -> &WbLab {
        &self.0
    }
}

impl Lab {
    fn file() -> Lab {
        Lab(WbLab::file("rq"))
    }

    /// A node with a 3-member etcd cluster in its namespace.
    fn etcd() -> Lab {
        Lab(WbLab::etcd("rq"))
    }

    fn conf(&self, ipam: Value, runtime_ips: Option<Value>) -> Value {
        let mut c = json!({"cniVersion": "1.0.0", "name": "rq-net", "type": "bridge",
            "ipam": self.ipam(ipam)});
        if let Some(ips) = runtime_ips {
            c["runtimeConfig"] = json!({"ips": ips});
        }
        c
    }

    /// (address, container ID) of every reservation, read with the operators' tool.
    fn reservations(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self.rows().into_iter().map(|r| (r.ip, r.cid)).collect();
        v.sort();
        v
    }

    fn holders_of(&self, ip: &str) -> Vec<String> {
        self.reservations()
            .into_iter()
            .filter(|(a, _)| a == ip)
            .map(|(_, c)| c)
            .collect()
    }
}

fn requested_addresses_are_reserved_and_nobody_else_gets_them(lab: Lab) {
    // 11 allocatable addresses, .10 to .20: a plain ADD takes the lowest free one.
    let ipam = json!({"range": "10.77.0.0/24", "range_start": "10.77.0.10", "range_end": "10.77.0.20",
        "exclude": ["10.77.0.40/32"], "gateway": "10.77.0.1"});
    let plain = lab.conf(ipam.clone(), None);
    let asking = |ips: Value| lab.conf(ipam.clone(), Some(ips));
    // A asks for .10, the address a plain allocation would hand out first.
    let a = lab.call(0, "ADD", "vm-a", "", &asking(json!(["10.77.0.10/24"])));
    assert_eq!(addrs(&a), ["10.77.0.10/24"]);
    assert_eq!(lab.holders_of("10.77.0.10"), ["vm-a"]);
    // Ten plain ADDs: .11 to .20, never .10; the eleventh finds the range
    // exhausted (102), so .10 was never free.
    let mut got = Vec::new();
    for i in 0..10 {
        let out = lab.call(i, "ADD", &format!("pod-{i}"), "", &plain);
        got.extend(addrs(&out));
    }
    got.sort();
    let want: Vec<String> = (11..=20).map(|n| format!("10.77.0.{n}/24")).collect();
    assert_eq!(got, want);
    let full = lab.call(1, "ADD", "pod-x", "", &plain);
    assert_eq!(full.error_code(), Some(102), "{full}");
    // C asks for A's address: 103 naming the holder, nothing reserved.
    let c = lab.call(1, "ADD", "vm-c", "", &asking(json!(["10.77.0.10/24"])));
    assert_eq!(c.error_code(), Some(103), "{c}");
    assert!(
        msg(&c).contains("10.77.0.10") && msg(&c).contains("vm-a"),
        "{c}"
    );
    assert!(!lab.reservations().iter().any(|(_, cid)| cid == "vm-c"));
    // podman's --ip: a bare address in CNI_ARGS IP, outside range_start-range_end but in the
    // range's network: reserved with the range's prefix.
    let c = lab.call(1, "ADD", "vm-c", "IgnoreUnknown=1;IP=10.77.0.30", &plain);
    assert_eq!(addrs(&c), ["10.77.0.30/24"]);
    assert_eq!(lab.holders_of("10.77.0.30"), ["vm-c"]);
    // A repeated ADD asking the same: the same address; asking another: refused (DEL first).
    let again = lab.call(0, "ADD", "vm-a", "", &asking(json!(["10.77.0.10/24"])));
    assert_eq!(addrs(&again), ["10.77.0.10/24"]);
    let other = lab.call(0, "ADD", "vm-a", "", &asking(json!(["10.77.0.31/24"])));
    assert_eq!(other.error_code(), Some(7), "{other}");
    assert!(msg(&other).contains("already holds 10.77.0.10"), "{other}");
    assert!(lab.holders_of("10.77.0.31").is_empty());
    // What a range cannot hand out, refused with 7 naming where it came from.
    for (ips, args, key) in [
        (Some(json!(["10.78.0.5/24"])), "", "runtimeConfig.ips[0]"),
        (Some(json!(["10.77.0.0/24"])), "", "network address"),
        (Some(json!(["10.77.0.255/24"])), "", "broadcast address"),
        (Some(json!(["10.77.0.1/24"])), "", "gateway"),
        (Some(json!(["10.77.0.40/24"])), "", "excluded"),
        (None, "IgnoreUnknown=1;IP=10.99.0.1", "CNI_ARGS IP"),
        (
            Some(json!(["10.77.0.50/24", "10.77.0.51/24"])),
            "",
            "one address per range",
        ),
    ] {
        let conf = match ips {
            Some(ips) => asking(ips),
            None => plain.clone(),
        };
        let out = lab.call(0, "ADD", "vm-d", args, &conf);
        assert_eq!(out.error_code(), Some(7), "{key}: {out}");
        assert!(msg(&out).contains(key), "{key}: {out}");
    }
    assert!(!lab.reservations().iter().any(|(_, cid)| cid == "vm-d"));
    // A leaves: its address can be asked for again.
    assert!(lab
        .call(0, "DEL", "vm-a", "", &asking(json!(["10.77.0.10/24"])))
        .ok());
    assert!(lab.holders_of("10.77.0.10").is_empty());
    let c2 = lab.call(1, "ADD", "vm-e", "", &asking(json!(["10.77.0.10/24"])));
    assert_eq!(addrs(&c2), ["10.77.0.10/24"]);
    assert_eq!(lab.holders_of("10.77.0.10"), ["vm-e"]);
}

#[test]
fn requested_addresses_are_reserved_and_nobody_else_gets_them_on_the_file_store() {
    requested_addresses_are_reserved_and_nobody_else_gets_them(Lab::file());
}

#[test]
fn requested_addresses_are_reserved_and_nobody_else_gets_them_on_etcd() {
    requested_addresses_are_reserved_and_nobody_else_gets_them(Lab::etcd());
}

#[test]
fn a_request_across_families_is_all_or_nothing() {
    let lab = Lab::file();
    let ipam = json!({"ipRanges": [{"range": "10.79.0.0/24"}, {"range": "fd79::/64"}]});
    let holder = lab.call(
        0,
        "ADD",
        "vm-a",
        "",
        &lab.conf(ipam.clone(), Some(json!(["fd79::5/64"]))),
    );
    let held = addrs(&holder);
    assert!(held.contains(&"fd79::5/64".to_string()), "{held:?}");
    // Both families asked; the IPv6 one is taken: nothing is reserved, not even the IPv4 one.
    let both = lab.conf(ipam.clone(), Some(json!(["10.79.0.5/24", "fd79::5/64"])));
    let out = lab.call(0, "ADD", "vm-b", "", &both);
    assert_eq!(out.error_code(), Some(103), "{out}");
    assert!(
        lab.holders_of("10.79.0.5").is_empty(),
        "{:?}",
        lab.reservations()
    );
    assert!(!lab.reservations().iter().any(|(_, cid)| cid == "vm-b"));
    // With the IPv6 address free, both are reserved.
    assert!(lab
        .call(0, "DEL", "vm-a", "", &lab.conf(ipam.clone(), None))
        .ok());
    let out = lab.call(0, "ADD", "vm-b", "", &both);
    assert_eq!(addrs(&out), ["10.79.0.5/24", "fd79::5/64"]);
    assert_eq!(lab.holders_of("10.79.0.5"), ["vm-b"]);
    assert_eq!(lab.holders_of("fd79::5"), ["vm-b"]);
}
