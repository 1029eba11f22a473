use super::*;

/// A full result: two interfaces, dual-stack addresses, routes with 1.1.0 attributes, DNS.
fn full() -> CniResult {
    CniResult {
        interfaces: vec![
            Interface {
                name: "br0".into(),
                mac: Some("0a:58:0a:01:00:01".into()),
                mtu: Some(1400),
                ..Interface::default()
            },
            Interface {
                name: "eth0".into(),
                mac: Some("0a:58:0a:01:00:02".into()),
                sandbox: Some("/run/netns/c1".into()),
                socket_path: Some("/run/sock".into()),
                pci_id: Some("0000:00:01.0".into()),
                ..Interface::default()
            },
        ],
        ips: vec![
            IpConfig {
                interface: Some(1),
                address: "10.1.0.2/24".parse().unwrap(),
                gateway: Some("10.1.0.1".parse().unwrap()),
            },
            IpConfig {
                interface: Some(1),
                address: "10.1.0.3/24".parse().unwrap(),
                gateway: None,
            },
            IpConfig {
                interface: Some(1),
                address: "fd00::2/64".parse().unwrap(),
                gateway: Some("fd00::1".parse().unwrap()),
            },
        ],
        routes: vec![
            Route {
                priority: Some(10),
                table: Some(100),
                scope: Some(0),
                mtu: Some(1300),
                advmss: Some(1200),
                ..Route::new(
                    "0.0.0.0/0".parse().unwrap(),
                    Some("10.1.0.1".parse().unwrap()),
                )
            },
            Route::new("::/0".parse().unwrap(), None),
        ],
        dns: Dns {
            nameservers: vec!["10.1.0.53".into()],
            domain: Some("example.test".into()),
            search: vec!["a.test".into()],
            options: vec!["ndots:2".into()],
        },
    }
}

fn golden_1_1_0() -> Value {
    json!({
        "cniVersion": "1.1.0",
        "interfaces": [
            {"name": "br0", "mac": "0a:58:0a:01:00:01", "mtu": 1400},
            {"name": "eth0", "mac": "0a:58:0a:01:00:02", "sandbox": "/run/netns/c1",
             "socketPath": "/run/sock", "pciID": "0000:00:01.0"}
        ],
        "ips": [
            {"interface": 1, "address": "10.1.0.2/24", "gateway": "10.1.0.1"},
            {"interface": 1, "address": "10.1.0.3/24"},
            {"interface": 1, "address": "fd00::2/64", "gateway": "fd00::1"}
        ],
        "routes": [
            {"dst": "0.0.0.0/0", "gw": "10.1.0.1", "mtu": 1300, "advmss": 1200, "priority": 10,
             "table": 100, "scope": 0},
            {"dst": "::/0"}
        ],
        "dns": {"nameservers": ["10.1.0.53"], "domain": "example.test", "search": ["a.test"],
                "options": ["ndots:2"]}
    })
}

fn golden_modern(version: &str, with_ip_version: bool) -> Value {
    let ip = |v: &str, addr: &str, gw: Option<&str>| {
        let mut m = json!({"interface": 1, "address": addr});
        if with_ip_version {
            m["version"] = json!(v);
        }
        if let Some(gw) = gw {
            m["gateway"] = json!(gw);
        }
        m
    };
    json!({
        "cniVersion": version,
        "interfaces": [
            {"name": "br0", "mac": "0a:58:0a:01:00:01"},
            {"name": "eth0", "mac": "0a:58:0a:01:00:02", "sandbox": "/run/netns/c1"}
        ],
        "ips": [
            ip("4", "10.1.0.2/24", Some("10.1.0.1")),
            ip("4", "10.1.0.3/24", None),
            ip("6", "fd00::2/64", Some("fd00::1"))
        ],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}, {"dst": "::/0"}],
        "dns": {"nameservers": ["10.1.0.53"], "domain": "example.test", "search": ["a.test"],
                "options": ["ndots:2"]}
    })
}

fn golden_legacy(version: &str) -> Value {
    json!({
        "cniVersion": version,
        "ip4": {"ip": "10.1.0.2/24", "gateway": "10.1.0.1",
                "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}]},
        "ip6": {"ip": "fd00::2/64", "gateway": "fd00::1", "routes": [{"dst": "::/0"}]},
        "dns": {"nameservers": ["10.1.0.53"], "domain": "example.test", "search": ["a.test"],
                "options": ["ndots:2"]}
    })
}

fn golden(v: Version) -> Value {
    match v {
        Version::V0_1_0 | Version::V0_2_0 => golden_legacy(v.as_str()),
        Version::V0_3_0 | Version::V0_3_1 | Version::V0_4_0 => golden_modern(v.as_str(), true),
        Version::V1_0_0 => golden_modern("1.0.0", false),
        Version::V1_1_0 => golden_1_1_0(),
    }
}

#[test]
fn prints_the_golden_json_of_every_version() {
    for v in Version::ALL {
        assert_eq!(full().to_json(v).unwrap(), golden(v), "version {v}");
    }
}

#[test]
fn parses_each_golden_in_its_declared_version() {
    let (v, parsed) = CniResult::parse(&golden_1_1_0(), Version::V0_1_0).unwrap();
    assert_eq!((v, parsed), (Version::V1_1_0, full()));
    for v in Version::ALL {
        let (declared, parsed) = CniResult::parse(&golden(v), Version::V1_1_0).unwrap();
        assert_eq!(declared, v);
        assert_eq!(parsed.to_json(v).unwrap(), golden(v), "round trip of {v}");
    }
}

#[test]
fn conversion_matrix_matches_libcni() {
    for from in Version::ALL {
        for to in Version::ALL {
            let got = CniResult::convert(&golden(from), Version::V1_1_0, to).unwrap();
            // What survives a trip through `from` is what `from` could carry: legacy keeps one
            // address per family and no interfaces; below 1.1.0 the 1.1 attributes are gone.
            let expected = if from.is_legacy() && !to.is_legacy() {
                legacy_lifted(to)
            } else {
                golden(to)
            };
            let expected = if from < Version::V1_1_0 && to == Version::V1_1_0 && !from.is_legacy() {
                golden_modern("1.1.0", false)
            } else {
                expected
            };
            assert_eq!(got, expected, "{from} -> {to}");
        }
    }
}

/// A legacy result lifted to a modern version: libcni's convertFrom02x.
fn legacy_lifted(to: Version) -> Value {
    let mut ips = vec![
        json!({"address": "10.1.0.2/24", "gateway": "10.1.0.1"}),
        json!({"address": "fd00::2/64", "gateway": "fd00::1"}),
    ];
    if to.has_ip_version() {
        ips[0]["version"] = json!("4");
        ips[1]["version"] = json!("6");
    }
    json!({
        "cniVersion": to.as_str(),
        "ips": ips,
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}, {"dst": "::/0"}],
        "dns": golden_1_1_0()["dns"].clone()
    })
}

#[test]
fn legacy_cannot_carry_a_result_without_addresses() {
    let r = CniResult {
        interfaces: vec![Interface {
            name: "eth0".into(),
            ..Interface::default()
        }],
        ..CniResult::default()
    };
    for v in [Version::V0_1_0, Version::V0_2_0] {
        let err = r.to_json(v).unwrap_err();
        assert_eq!(err.code, 1);
        assert!(
            err.msg.starts_with("cannot convert: no valid IP addresses"),
            "{}",
            err.msg
        );
    }
    assert_eq!(
        r.to_json(Version::V1_0_0).unwrap(),
        json!({"cniVersion": "1.0.0", "interfaces": [{"name": "eth0"}], "dns": {}})
    );
}

#[test]
fn legacy_takes_only_the_first_address_of_each_family() {
    let v = full().to_json(Version::V0_2_0).unwrap();
    assert_eq!(v["ip4"]["ip"], "10.1.0.2/24");
    assert!(v.get("ips").is_none() && v.get("interfaces").is_none());
}

#[test]
fn an_empty_result_prints_dns_only() {
    assert_eq!(
        CniResult::default().to_json(Version::V0_4_0).unwrap(),
        json!({"cniVersion": "0.4.0", "dns": {}})
    );
}

#[test]
fn tolerates_null_lists_and_unknown_keys_as_go_does() {
    let v = json!({"cniVersion": "1.0.0", "interfaces": null, "ips": null, "routes": null,
                   "dns": null, "extra": 1});
    assert_eq!(
        CniResult::parse(&v, Version::V1_0_0).unwrap().1,
        CniResult::default()
    );
}

#[test]
fn a_prev_result_without_version_uses_the_fallback() {
    let v = json!({"ip4": {"ip": "10.0.0.2/24"}});
    let (ver, r) = CniResult::parse(&v, Version::V0_2_0).unwrap();
    assert_eq!(ver, Version::V0_2_0);
    assert_eq!(r.ips[0].address.to_string(), "10.0.0.2/24");
}

#[test]
fn bad_results_are_code_6_naming_the_value() {
    let cases = [
        json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.300/24"}]}),
        json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.3/24", "gateway": "x"}]}),
        json!({"cniVersion": "0.4.0", "ips": [{"version": "6", "address": "10.0.0.3/24"}]}),
        json!({"cniVersion": "1.0.0", "ips": [{"interface": -1, "address": "10.0.0.3/24"}]}),
        json!({"cniVersion": "1.0.0", "routes": [{"dst": "nowhere"}]}),
        json!({"cniVersion": "0.2.0", "ip4": {"ip": "bad"}}),
        json!({"cniVersion": "1.0.0", "interfaces": [{"mac": "x"}]}),
        json!([1, 2]),
    ];
    for c in cases {
        let err = CniResult::parse(&c, Version::V1_0_0).unwrap_err();
        assert_eq!(err.code, 6, "{c}: {err}");
    }
    let err = CniResult::parse(&json!({"cniVersion": "9.9.9"}), Version::V1_0_0).unwrap_err();
    assert_eq!(err.code, 1);
}
