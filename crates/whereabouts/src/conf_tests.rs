use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::json;

use super::*;

fn net_conf(ipam: Value) -> NetConf {
    let c = json!({"cniVersion": "1.0.0", "name": "n", "type": "macvlan", "ipam": ipam});
    NetConf::parse(c.to_string().as_bytes()).unwrap()
}

fn args(s: &str) -> CniArgs {
    CniArgs::parse(s).unwrap()
}

/// Parses without any flat file (never reads /etc).
fn try_parse(ipam: Value) -> Result<WhereaboutsConf, Error> {
    parse_with_paths(&net_conf(ipam), &args(""), &[])
}

fn ok(ipam: Value) -> WhereaboutsConf {
    try_parse(ipam).unwrap()
}

fn err(ipam: Value) -> Error {
    let e = try_parse(ipam).unwrap_err();
    assert_eq!(e.code, 7, "{}", e.msg);
    e
}

/// Parses `ipam` with the store keys of `node` in a flat file (a node's file: its keys are the
/// node's, so etcd keys there are read as the node's settings are).
fn try_parse_node(node: Value, ipam: Value) -> Result<WhereaboutsConf, Error> {
    let dir = TempDir::new();
    let path = dir.write("whereabouts.conf", &node.to_string());
    parse_with_paths(&net_conf(ipam), &args(""), &[&path])
}

fn ok_node(node: Value) -> WhereaboutsConf {
    try_parse_node(node, json!({"range": "10.0.0.0/24"})).unwrap()
}

fn err_node(node: Value) -> Error {
    let e = try_parse_node(node, json!({"range": "10.0.0.0/24"})).unwrap_err();
    assert_eq!(e.code, 7, "{}", e.msg);
    e
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNetwork {
    s.parse().unwrap()
}

/// A directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "multihome-wconf-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_minimal_range_gets_every_default() {
    let c = ok(json!({"type": "whereabouts", "range": "10.0.0.0/24"}));
    assert_eq!(c.ranges.len(), 1);
    let r = &c.ranges[0];
    assert_eq!(
        (r.network, r.start, r.end),
        (net("10.0.0.0/24"), ip("10.0.0.1"), ip("10.0.0.254"))
    );
    assert_eq!(c.network_name, "");
    assert!(c.enable_overlapping_ranges);
    assert_eq!(
        c.datastore,
        Datastore::File {
            dir: PathBuf::from(DEFAULT_STORE_DIR)
        }
    );
    assert!(c.routes.is_empty() && c.addresses.is_empty() && c.dns.is_empty());
    assert_eq!((c.log_file, c.log_level), (None, None));
}

#[test]
fn range_start_end_exclude_and_gateway_are_read() {
    let c = ok(json!({"range": "10.0.0.0/24", "range_start": "10.0.0.10",
        "range_end": "10.0.0.50", "exclude": ["10.0.0.16/28", "10.0.0.40"],
        "gateway": "10.0.0.1"}));
    let r = &c.ranges[0];
    assert_eq!((r.start, r.end), (ip("10.0.0.10"), ip("10.0.0.50")));
    assert_eq!(r.excludes, vec![net("10.0.0.16/28"), net("10.0.0.40/32")]);
    assert_eq!(r.gateway, Some(ip("10.0.0.1")));
    assert!(!r.is_allocatable(ip("10.0.0.20")) && !r.is_allocatable(ip("10.0.0.40")));
}

#[test]
fn a_dash_range_gives_start_and_end_in_the_network_of_the_start() {
    let r = ok(json!({"range": "10.0.0.10-10.0.0.50/24"})).ranges[0].clone();
    assert_eq!(
        (r.network, r.start, r.end),
        (net("10.0.0.0/24"), ip("10.0.0.10"), ip("10.0.0.50"))
    );
    let r = ok(json!({"range": "fd00::10-fd00::20/64"})).ranges[0].clone();
    assert_eq!((r.start, r.end), (ip("fd00::10"), ip("fd00::20")));
}

#[test]
fn a_bad_dash_range_names_the_key_and_value() {
    let e = err(json!({"range": "10.0.0.10-10.0.1.50/24"}));
    assert!(
        e.msg.contains("ipam.range \"10.0.0.10-10.0.1.50/24\""),
        "{}",
        e.msg
    );
    let e = err(json!({"ipRanges": [{"range": "10.0.0.50-10.0.0.10/24"}]}));
    assert!(e.msg.contains("ipam.ipRanges[0].range"), "{}", e.msg);
    let e = err(json!({"range": "10.0.0.10-10.0.0.20/24", "range_start": "10.0.0.11"}));
    assert!(e.msg.contains("disagree"), "{}", e.msg);
    ok(json!({"range": "10.0.0.10-10.0.0.20/24", "range_start": "10.0.0.10"}));
}

#[test]
fn host_bits_in_range_are_the_network() {
    let r = ok(json!({"range": "10.0.0.5/24"})).ranges[0].clone();
    assert_eq!((r.network, r.start), (net("10.0.0.0/24"), ip("10.0.0.1")));
}

#[test]
fn a_range_without_prefix_is_rejected_naming_it() {
    let e = err(json!({"range": "10.0.0.0"}));
    assert!(e.msg.contains("ipam.range \"10.0.0.0\""), "{}", e.msg);
}

#[test]
fn ip_ranges_follow_the_top_level_range_in_order() {
    let c = ok(json!({"range": "10.0.0.0/24", "ipRanges": [
        {"range": "fd00::/64", "range_start": "fd00::100", "exclude": ["fd00::200/120"]},
        {"range": "10.1.0.0/24", "range_end": "10.1.0.9"}]}));
    let nets: Vec<String> = c.ranges.iter().map(|r| r.network.to_string()).collect();
    assert_eq!(nets, ["10.0.0.0/24", "fd00::/64", "10.1.0.0/24"]);
    assert_eq!(c.ranges[1].start, ip("fd00::100"));
    assert_eq!(c.ranges[1].excludes, vec![net("fd00::200/120")]);
    assert_eq!(c.ranges[2].end, ip("10.1.0.9"));
}

#[test]
fn errors_in_ip_ranges_name_the_entry_and_value() {
    let e = err(json!({"ipRanges": [{"range": "10.0.0.0/24"},
        {"range": "10.0.1.0/24", "range_start": "10.0.1.300"}]}));
    assert!(
        e.msg
            .contains("ipam.ipRanges[1].range_start \"10.0.1.300\""),
        "{}",
        e.msg
    );
    let e = err(json!({"ipRanges": [{"range": "10.0.1.0/24", "exclude": ["x"]}]}));
    assert!(
        e.msg.contains("ipam.ipRanges[0].exclude[0] \"x\""),
        "{}",
        e.msg
    );
    let e = err(json!({"ipRanges": [{"range_start": "10.0.1.3"}]}));
    assert!(
        e.msg.contains("ipam.ipRanges[0].range is required"),
        "{}",
        e.msg
    );
    let e = err(json!({"ipRanges": [{"range": 5}]}));
    assert!(e.msg.contains("ipam.ipRanges[0].range"), "{}", e.msg);
}

#[test]
fn a_range_is_required() {
    let e = err(json!({"type": "whereabouts"}));
    assert_eq!(e.msg, "ipam.range or ipam.ipRanges is required");
    err(json!({"range": "", "ipRanges": []}));
}

#[test]
fn range_keys_without_range_are_rejected() {
    let e = err(json!({"ipRanges": [{"range": "10.0.0.0/24"}], "exclude": ["10.0.0.5"]}));
    assert!(e.msg.contains("ipam.exclude"), "{}", e.msg);
    let e = err(json!({"ipRanges": [{"range": "10.0.0.0/24"}], "range_start": "10.0.0.5"}));
    assert!(e.msg.contains("ipam.range_start \"10.0.0.5\""), "{}", e.msg);
}

#[test]
fn range_start_synonym_is_honoured_and_the_gateway_never_allocated() {
    let c = ok(json!({"range": "10.0.0.0/24", "rangeStart": "10.0.0.1",
        "rangeEnd": "10.0.0.9", "gateway": "10.0.0.1"}));
    let r = &c.ranges[0];
    assert_eq!((r.start, r.end), (ip("10.0.0.1"), ip("10.0.0.9")));
    assert!(!r.is_allocatable(ip("10.0.0.1")));
    assert_eq!(r.first(), Some(ip("10.0.0.2")));
    let r = ok(json!({"ipRanges": [{"range": "10.0.0.0/24", "rangeStart": "10.0.0.7"}]}));
    assert_eq!(r.ranges[0].start, ip("10.0.0.7"));
}

#[test]
fn both_spellings_must_agree() {
    ok(json!({"range": "10.0.0.0/24", "rangeStart": "10.0.0.5", "range_start": "10.0.0.5"}));
    let e = err(json!({"range": "10.0.0.0/24", "rangeEnd": "10.0.0.5", "range_end": "10.0.0.6"}));
    assert!(
        e.msg
            .contains("ipam.range_end 10.0.0.6 and ipam.rangeEnd 10.0.0.5 disagree"),
        "{}",
        e.msg
    );
}

#[test]
fn gateway_outside_a_range_is_not_reported_with_it() {
    let c = ok(
        json!({"range": "10.0.0.0/24", "ipRanges": [{"range": "fd00::/64"}],
        "gateway": "10.0.0.1"}),
    );
    assert_eq!(c.ranges[0].gateway, Some(ip("10.0.0.1")));
    assert_eq!(c.ranges[1].gateway, None);
    let e = err(json!({"range": "10.0.0.0/24", "gateway": "10.0.0"}));
    assert!(e.msg.contains("ipam.gateway \"10.0.0\""), "{}", e.msg);
}

#[test]
fn too_small_ranges_are_rejected() {
    for cidr in ["10.0.0.0/31", "10.0.0.0/32", "fd00::/127", "fd00::/128"] {
        let e = err(json!({"range": cidr}));
        assert!(e.msg.contains("too small to allocate from"), "{}", e.msg);
    }
}

#[test]
fn network_name_overlapping_and_logging_are_read() {
    let c = ok(json!({"range": "10.0.0.0/24", "network_name": "blue",
        "enable_overlapping_ranges": false, "log_file": "/tmp/w.log", "log_level": "debug"}));
    assert_eq!(c.network_name, "blue");
    assert!(!c.enable_overlapping_ranges);
    assert_eq!(c.log_file.as_deref(), Some("/tmp/w.log"));
    assert_eq!(c.log_level.as_deref(), Some("debug"));
    let e = err(json!({"range": "10.0.0.0/24", "enable_overlapping_ranges": "no"}));
    assert!(
        e.msg.contains("ipam.enable_overlapping_ranges"),
        "{}",
        e.msg
    );
}

#[test]
fn routes_dns_and_addresses_are_read() {
    let c = ok(json!({"range": "10.0.0.0/24",
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.0.0.254"}],
        "dns": {"nameservers": ["10.0.0.53"], "search": ["example.test"]},
        "addresses": [{"address": "10.9.0.5/24", "gateway": "10.9.0.1"}]}));
    assert_eq!(
        c.routes,
        vec![
            Route::new(net("0.0.0.0/0"), None),
            Route::new(net("192.168.0.0/16"), Some(ip("10.0.0.254")))
        ]
    );
    assert_eq!(c.dns.nameservers, ["10.0.0.53"]);
    assert_eq!(c.addresses[0].address.to_string(), "10.9.0.5/24");
    assert_eq!(c.addresses[0].gateway, Some(ip("10.9.0.1")));
    let e = err(json!({"range": "10.0.0.0/24", "routes": [{"dst": "0.0.0.0"}]}));
    assert!(
        e.msg.contains("ipam.routes[0].dst \"0.0.0.0\""),
        "{}",
        e.msg
    );
    let e = err(
        json!({"range": "10.0.0.0/24", "addresses": [{"address": "10.9.0.5/24",
        "gateway": "x"}]}),
    );
    assert!(
        e.msg.contains("ipam.addresses[0].gateway \"x\""),
        "{}",
        e.msg
    );
}

#[test]
fn cni_args_ip_in_a_range_is_a_request_and_gateway_stays_on_the_extras() {
    let c = parse_with_paths(
        &net_conf(
            json!({"ipRanges": [{"range": "10.0.0.0/24"}, {"range": "10.20.0.0/24"}],
            "addresses": [{"address": "10.9.0.5/24"}]}),
        ),
        &args("IgnoreUnknown=1;IP=10.20.0.5/24;GATEWAY=10.9.0.1"),
        &[],
    )
    .unwrap();
    let got: Vec<(String, Option<IpAddr>)> = c
        .addresses
        .iter()
        .map(|a| (a.address.to_string(), a.gateway))
        .collect();
    assert_eq!(got, vec![("10.9.0.5/24".to_string(), Some(ip("10.9.0.1")))]);
    assert_eq!(
        c.requested,
        vec![Requested {
            ip: ip("10.20.0.5"),
            range: 1
        }]
    );
    // podman's --ip: a bare address.
    let c = parse_with_paths(
        &net_conf(json!({"range": "10.0.0.0/24"})),
        &args("IP=10.0.0.7"),
        &[],
    )
    .unwrap();
    assert_eq!(
        c.requested,
        vec![Requested {
            ip: ip("10.0.0.7"),
            range: 0
        }]
    );
    for (a, want) in [
        ("IP=10.20.0.5", "CNI_ARGS IP 10.20.0.5: outside every range"),
        ("IP=x", "CNI_ARGS IP entry \"x\""),
        ("IP=10.0.0.0", "CNI_ARGS IP 10.0.0.0: cannot be reserved"),
        ("IP=10.0.0.5,10.0.0.6", "10.0.0.5 is already asked for"),
    ] {
        let e = parse_with_paths(&net_conf(json!({"range": "10.0.0.0/24"})), &args(a), &[])
            .unwrap_err();
        assert_eq!(e.code, 7, "{}", e.msg);
        assert!(e.msg.contains(want), "{a}: {}", e.msg);
    }
}

#[test]
fn runtime_config_ips_are_requests_named_by_index() {
    let conf = |ips: Value| {
        let c = json!({"cniVersion": "1.0.0", "name": "n", "type": "bridge",
            "ipam": {"ipRanges": [{"range": "10.0.0.0/24", "exclude": ["10.0.0.16/28"]},
                                  {"range": "fd00::/64"}]},
            "runtimeConfig": {"ips": ips}});
        NetConf::parse(c.to_string().as_bytes()).unwrap()
    };
    let c = parse_with_paths(&conf(json!(["10.0.0.9/24", "fd00::9/64"])), &args(""), &[]).unwrap();
    assert_eq!(
        c.requested,
        vec![
            Requested {
                ip: ip("10.0.0.9"),
                range: 0
            },
            Requested {
                ip: ip("fd00::9"),
                range: 1
            }
        ]
    );
    assert!(c.addresses.is_empty());
    for (ips, want) in [
        (
            json!(["10.0.0.17"]),
            "runtimeConfig.ips[0] 10.0.0.17: cannot be reserved, it is excluded",
        ),
        (
            json!(["10.0.0.9", "10.1.0.1"]),
            "runtimeConfig.ips[1] 10.1.0.1: outside every range",
        ),
        (json!([5]), "runtimeConfig.ips[0]: 5 is not an address"),
        (
            json!("10.0.0.9"),
            "runtimeConfig.ips: \"10.0.0.9\" must be a list",
        ),
    ] {
        let e = parse_with_paths(&conf(ips.clone()), &args(""), &[]).unwrap_err();
        assert_eq!(e.code, 7, "{}", e.msg);
        assert!(e.msg.contains(want), "{ips}: {}", e.msg);
    }
}

#[test]
fn store_dir_sets_the_file_datastore() {
    for datastore in [json!(null), json!(""), json!("file")] {
        let c = ok(json!({"range": "10.0.0.0/24", "datastore": datastore,
            "store_dir": "/tmp/wb"}));
        assert_eq!(
            c.datastore,
            Datastore::File {
                dir: PathBuf::from("/tmp/wb")
            }
        );
    }
    // Outside the directories the node allows a network configuration to name.
    let e = err(json!({"range": "10.0.0.0/24", "store_dir": "/run/wb"}));
    assert!(
        e.msg.contains("ipam.store_dir \"/run/wb\"") && e.msg.contains("store_dirs"),
        "{}",
        e.msg
    );
    let e = err(json!({"range": "10.0.0.0/24", "store_dir": "relative/dir"}));
    assert!(
        e.msg.contains("ipam.store_dir \"relative/dir\""),
        "{}",
        e.msg
    );
}

#[test]
fn etcd_keys_are_read_with_defaults() {
    let c = ok_node(json!({"datastore": "etcd",
        "etcd_endpoints": "https://e1:2379, e2:2379"}));
    let Datastore::Etcd(e) = c.datastore else {
        panic!("not etcd")
    };
    assert_eq!(e.endpoints, ["https://e1:2379", "http://e2:2379"]);
    assert_eq!(e.prefix, DEFAULT_ETCD_PREFIX);
    assert_eq!(
        (e.dial_timeout_ms, e.request_timeout_ms),
        (
            DEFAULT_ETCD_DIAL_TIMEOUT_MS,
            DEFAULT_ETCD_REQUEST_TIMEOUT_MS
        )
    );
    assert_eq!((e.username, e.ca_file, e.cert_file), (None, None, None));

    let c = ok_node(json!({"datastore": "etcd",
        "etcd_endpoints": ["http://e1:2379", "http://e1:2379/"], "etcd_prefix": "/x/y/",
        "etcd_dial_timeout_ms": 100, "etcd_request_timeout_ms": 200}));
    let Datastore::Etcd(e) = c.datastore else {
        panic!("not etcd")
    };
    assert_eq!(e.endpoints, ["http://e1:2379"]);
    assert_eq!(
        (e.prefix.as_str(), e.dial_timeout_ms, e.request_timeout_ms),
        ("/x/y", 100, 200)
    );
}

#[test]
fn legacy_etcd_keys_are_mapped() {
    let c = ok_node(json!({"datastore": "etcd",
        "etcd_host": "10.1.1.1:2379,https://10.1.1.2:2379", "etcd_username": "u",
        "etcd_password": "secret", "etcd_key_file": "/k.pem", "etcd_cert_file": "/c.pem",
        "etcd_ca_cert_file": "/ca.pem"}));
    let Datastore::Etcd(e) = c.datastore else {
        panic!("not etcd")
    };
    assert_eq!(
        e.endpoints,
        ["http://10.1.1.1:2379", "https://10.1.1.2:2379"]
    );
    assert_eq!(
        (e.username.as_deref(), e.password.as_deref()),
        (Some("u"), Some("secret"))
    );
    assert_eq!(e.key_file, Some(PathBuf::from("/k.pem")));
    assert_eq!(e.cert_file, Some(PathBuf::from("/c.pem")));
    assert_eq!(e.ca_file, Some(PathBuf::from("/ca.pem")));
    assert!(!format!("{e:?}").contains("secret"));
}

#[test]
fn etcd_errors_name_the_key() {
    let cases = [
        (json!({"datastore": "etcd"}), "ipam.etcd_endpoints"),
        (
            json!({"datastore": "etcd", "etcd_endpoints": "unix:///s"}),
            "ipam.etcd_endpoints \"unix:///s\"",
        ),
        (
            json!({"datastore": "etcd", "etcd_endpoints": [1]}),
            "ipam.etcd_endpoints[0]",
        ),
        (
            json!({"datastore": "etcd", "etcd_host": "e:1", "etcd_username": "u"}),
            "ipam.etcd_username is set but ipam.etcd_password is not",
        ),
        (
            json!({"datastore": "etcd", "etcd_host": "e:1", "etcd_key_file": "/k"}),
            "ipam.etcd_key_file is set but ipam.etcd_cert_file is not",
        ),
        (
            json!({"datastore": "etcd", "etcd_host": "e:1", "etcd_prefix": "x"}),
            "ipam.etcd_prefix \"x\"",
        ),
        (
            json!({"datastore": "etcd", "etcd_host": "e:1", "etcd_dial_timeout_ms": 0}),
            "ipam.etcd_dial_timeout_ms 0",
        ),
        (
            json!({"datastore": "etcd", "etcd_host": "e:1", "etcd_request_timeout_ms": -1}),
            "ipam.etcd_request_timeout_ms",
        ),
        (
            json!({"etcd_endpoints": ["e:1"]}),
            "ipam.etcd_endpoints [\"e:1\"] is set but ipam.datastore is not",
        ),
    ];
    for (ipam, want) in cases {
        let e = err_node(ipam);
        assert!(e.msg.contains(want), "{} should contain {want}", e.msg);
    }
}

#[test]
fn explicit_file_datastore_ignores_etcd_keys() {
    let c = ok(json!({"range": "10.0.0.0/24", "datastore": "file", "etcd_host": "e:1"}));
    assert!(matches!(c.datastore, Datastore::File { .. }));
}

#[test]
fn etcd_host_alone_in_a_network_on_a_node_without_etcd_is_the_nodes_store() {
    let c = ok(json!({"range": "10.0.0.0/24", "etcd_host": "e1:2379", "store_dir": "/tmp/s"}));
    assert_eq!(
        c.datastore,
        Datastore::File {
            dir: "/tmp/s".into()
        }
    );
    let e = err(json!({"range": "10.0.0.0/24", "etcd_host": "e1:2379", "etcd_username": "u"}));
    assert!(
        e.msg
            .contains("ipam.etcd_username \"u\" is set but ipam.datastore is not"),
        "{}",
        e.msg
    );
}

#[test]
fn etcd_host_alone_means_etcd_as_in_whereabouts_0_5() {
    // In the node's own flat file: the node says which etcd.
    let c = ok_node(json!({"etcd_host": "e1:2379,e2:2379"}));
    let Datastore::Etcd(etcd) = c.datastore else {
        panic!("etcd_host alone selects etcd")
    };
    assert_eq!(etcd.endpoints, ["http://e1:2379", "http://e2:2379"]);
}

#[test]
fn datastore_kubernetes_without_a_node_setting_is_what_no_datastore_is() {
    // whereabouts' default is its cluster store too: both mean the node's store.
    let c = ok(json!({"range": "10.0.0.0/24", "datastore": "kubernetes", "store_dir": "/tmp/s"}));
    assert_eq!(
        c.datastore,
        Datastore::File {
            dir: "/tmp/s".into()
        }
    );
    let e = err(json!({"range": "10.0.0.0/24", "datastore": "consul"}));
    assert!(e.msg.contains("ipam.datastore \"consul\""), "{}", e.msg);
}

#[test]
fn whereabouts_kubernetes_and_node_slicing_keys_are_tolerated() {
    let c = ok(json!({"type": "whereabouts", "range": "10.0.0.0/24",
        "kubernetes": {"kubeconfig": "/etc/cni/net.d/whereabouts.d/whereabouts.kubeconfig"},
        "node_slice_size": "/28", "leader_lease_duration": 1500,
        "leader_renew_deadline": 1000, "leader_retry_period": 500,
        "reconciler_cron_expression": "30 4 * * *", "sleep_for_race": 1}));
    assert_eq!(c.ranges.len(), 1);
}

#[test]
fn a_non_object_ipam_is_rejected() {
    let e = err(json!("whereabouts"));
    assert!(e.msg.contains("ipam must be an object"), "{}", e.msg);
}

#[test]
fn flat_file_fills_unset_keys_and_inline_wins() {
    let dir = TempDir::new();
    let path = dir.write(
        "whereabouts.conf",
        r#"{"datastore": "etcd", "etcd_host": "10.1.1.1:2379", "network_name": "flat",
            "range": "10.9.0.0/24", "kubernetes": {"kubeconfig": "/k"}}"#,
    );
    let conf = net_conf(json!({"range": "10.0.0.0/24", "network_name": null}));
    let c = parse_with_paths(&conf, &args(""), &[Path::new("/nonexistent/w.conf"), &path]).unwrap();
    assert_eq!(c.ranges[0].network, net("10.0.0.0/24"));
    assert_eq!(c.network_name, "flat");
    let Datastore::Etcd(e) = c.datastore else {
        panic!("not etcd")
    };
    assert_eq!(e.endpoints, ["http://10.1.1.1:2379"]);
}

#[test]
fn flat_file_keys_may_sit_in_an_ipam_object() {
    let dir = TempDir::new();
    let path = dir.write(
        "w.conf",
        r#"{"store_dir": "/top", "ipam": {"store_dir": "/tmp/inner", "range": "10.9.0.0/24"}}"#,
    );
    let conf = net_conf(json!({"type": "whereabouts"}));
    let c = parse_with_paths(&conf, &args(""), &[&path]).unwrap();
    assert_eq!(c.ranges[0].network, net("10.9.0.0/24"));
    assert_eq!(
        c.datastore,
        Datastore::File {
            dir: PathBuf::from("/tmp/inner")
        }
    );
}

#[test]
fn configuration_path_is_read_before_the_default_paths() {
    let dir = TempDir::new();
    let default = dir.write("default.conf", r#"{"network_name": "default"}"#);
    let chosen = dir.write("chosen.conf", r#"{"network_name": "chosen"}"#);
    let conf = net_conf(json!({"range": "10.0.0.0/24",
        "configuration_path": chosen.display().to_string()}));
    let c = parse_with_paths(&conf, &args(""), &[&default]).unwrap();
    assert_eq!(c.network_name, "chosen");
}

#[test]
fn configuration_path_missing_is_code_7_naming_it() {
    let dir = TempDir::new();
    let missing = dir.0.join("missing.conf").display().to_string();
    let e = err(json!({"range": "10.0.0.0/24", "configuration_path": missing}));
    assert!(
        e.msg
            .contains(&format!("ipam.configuration_path {missing:?}")),
        "{}",
        e.msg
    );
}

#[test]
fn a_flat_file_that_is_not_json_is_code_7_naming_it() {
    let dir = TempDir::new();
    let path = dir.write("w.conf", "{not json");
    let e = parse_with_paths(
        &net_conf(json!({"range": "10.0.0.0/24"})),
        &args(""),
        &[&path],
    )
    .unwrap_err();
    assert_eq!(e.code, 7);
    assert!(e.msg.contains(&path.display().to_string()), "{}", e.msg);
    assert!(e.msg.contains("not valid JSON"), "{}", e.msg);
}

#[test]
fn kubernetes_datastore_from_the_flat_file_is_the_nodes_store() {
    let dir = TempDir::new();
    let path = dir.write(
        "w.conf",
        r#"{"datastore": "kubernetes", "kubernetes": {"kubeconfig": "/k"}}"#,
    );
    let conf = net_conf(json!({"range": "10.0.0.0/24"}));
    let c = parse_with_paths(&conf, &args(""), &[&path]).unwrap();
    assert!(matches!(c.datastore, Datastore::File { .. }));
    let conf = net_conf(json!({"range": "10.0.0.0/24", "datastore": "file"}));
    let c = parse_with_paths(&conf, &args(""), &[&path]).unwrap();
    assert!(matches!(c.datastore, Datastore::File { .. }));
}

#[test]
fn errors_in_flat_file_keys_say_where_they_came_from() {
    let dir = TempDir::new();
    let path = dir.write("w.conf", r#"{"enable_overlapping_ranges": "yes"}"#);
    let conf = net_conf(json!({"range": "10.0.0.0/24"}));
    let e = parse_with_paths(&conf, &args(""), &[&path]).unwrap_err();
    assert!(
        e.msg.contains("ipam.enable_overlapping_ranges"),
        "{}",
        e.msg
    );
    assert!(
        e.details.contains(&path.display().to_string()),
        "{}",
        e.details
    );
}

#[test]
fn the_example_flat_file_points_at_etcd_over_tls() {
    let example = Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/examples/whereabouts.conf"
    ))
    .canonicalize()
    .unwrap();
    let conf = net_conf(json!({"range": "10.0.0.0/24"}));
    let c = parse_with_paths(&conf, &args(""), &[&example]).unwrap();
    let Datastore::Etcd(e) = c.datastore else {
        panic!("the example flat file does not select etcd")
    };
    assert_eq!(e.endpoints.len(), 3);
    assert!(e.endpoints.iter().all(|u| u.starts_with("https://")));
    assert!(e.ca_file.is_some() && e.cert_file.is_some() && e.key_file.is_some());
}

#[test]
fn a_flat_file_a_configuration_names_has_its_values_kept_out_of_errors() {
    let dir = TempDir::new();
    let path = dir.write("secret.json", r#"{"range": "token-5up3r-s3cret"}"#);
    let e = err(json!({"configuration_path": path.display().to_string()}));
    assert!(
        e.msg.contains("ipam.range") && e.msg.contains("secret.json"),
        "{}",
        e.msg
    );
    assert!(!format!("{e:?}").contains("5up3r"), "{e:?}");
    let e = err(json!({"range": "10.0.0.0/24", "configuration_path": "/root/secret.json"}));
    assert!(e.msg.contains("flat_file_dirs"), "{}", e.msg);
}

#[test]
fn a_network_configuration_cannot_choose_the_etcd_cluster() {
    // Inline etcd keys are the NAD's; without the node's etcd they are refused, naming the key
    // and the node's file (no /etc/multihome/whereabouts.conf on a test machine).
    let e = err(json!({"range": "10.0.0.0/24", "datastore": "etcd",
        "etcd_endpoints": ["http://127.0.0.1:8080"]}));
    assert!(
        e.msg.contains("ipam.datastore \"etcd\"") && e.msg.contains("whereabouts.conf"),
        "{}",
        e.msg
    );
    // A node file that says etcd: the NAD may repeat it, not change it.
    let node = json!({"datastore": "etcd", "etcd_endpoints": ["https://10.0.0.11:2379"],
        "etcd_ca_cert_file": "/etc/multihome/ca.pem"});
    let mixed = |ipam: Value| try_parse_node(node.clone(), ipam);
    let c = mixed(json!({"range": "10.0.0.0/24", "datastore": "etcd"}));
    assert!(
        matches!(
            c,
            Ok(WhereaboutsConf {
                datastore: Datastore::Etcd(_),
                ..
            })
        ),
        "{c:?}"
    );
    let _ = mixed;
}

#[test]
fn leading_zeroes_in_ipv4_octets_are_decimal_as_in_whereabouts() {
    let c = ok(
        json!({"range": "00192.00168.1.0/24", "range_start": "00192.00168.1.44",
        "range_end": "00192.00168.01.209"}),
    );
    let r = &c.ranges[0];
    assert_eq!(r.network.to_string(), "192.168.1.0/24");
    assert_eq!(
        (r.start.to_string(), r.end.to_string()),
        ("192.168.1.44".into(), "192.168.1.209".into())
    );
    let c = ok(json!({"range": "00192.00168.1.5-000000192.168.1.25/24"}));
    assert_eq!(c.ranges[0].start.to_string(), "192.168.1.5");
    let e = err(json!({"range": "0x10.0.0.0/24"}));
    assert_eq!(e.code, 7);
}
