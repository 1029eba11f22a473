use serde_json::json;

use super::*;

fn conf(v: Value) -> NetConf {
    NetConf::parse(v.to_string().as_bytes()).unwrap()
}

fn base(extra: Value) -> Value {
    let mut c = json!({"cniVersion": "1.0.0", "name": "n", "type": "static", "ipam": {"type": "static",
        "addresses": [{"address": "10.10.0.1/24", "gateway": "10.10.0.254"}, {"address": "3ffe:ffff:0::1/64"}],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.10.5.1"}],
        "dns": {"nameservers": ["8.8.8.8"], "domain": "example.com", "search": ["example.com"]}}});
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    c
}

fn args(s: &str) -> CniArgs {
    CniArgs::parse(s).unwrap()
}

fn addrs(r: &CniResult) -> Vec<String> {
    r.ips.iter().map(|ip| ip.address.to_string()).collect()
}

#[test]
fn config_addresses_routes_and_dns_become_the_result() {
    let r = resolve(&conf(base(json!({}))), &args("")).unwrap();
    assert_eq!(
        r.to_json(Version::V1_0_0).unwrap(),
        json!({"cniVersion": "1.0.0",
            "ips": [{"address": "10.10.0.1/24", "gateway": "10.10.0.254"}, {"address": "3ffe:ffff::1/64"}],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.10.5.1"}],
            "dns": {"nameservers": ["8.8.8.8"], "domain": "example.com", "search": ["example.com"]}})
    );
}

#[test]
fn cni_args_ip_is_appended_and_gateway_applies_where_it_fits() {
    let r = resolve(
        &conf(base(json!({}))),
        &args("IP=10.20.0.5/24,10.30.0.5/24;GATEWAY=10.20.0.1"),
    )
    .unwrap();
    assert_eq!(
        addrs(&r),
        [
            "10.10.0.1/24",
            "3ffe:ffff::1/64",
            "10.20.0.5/24",
            "10.30.0.5/24"
        ]
    );
    assert_eq!(r.ips[2].gateway, Some("10.20.0.1".parse().unwrap()));
    assert_eq!(r.ips[3].gateway, None);
}

#[test]
fn args_cni_ips_replace_config_and_cni_args() {
    let c = conf(base(json!({"args": {"cni": {"ips": ["10.40.0.5/24"]}}})));
    assert_eq!(
        addrs(&resolve(&c, &args("IP=10.20.0.5/24")).unwrap()),
        ["10.40.0.5/24"]
    );
}

#[test]
fn runtime_config_ips_win_over_everything() {
    let c = conf(base(json!({"args": {"cni": {"ips": ["10.40.0.5/24"]}},
        "runtimeConfig": {"ips": ["10.50.0.5/24", "fd00::5/64"]}})));
    assert_eq!(
        addrs(&resolve(&c, &args("IP=10.20.0.5/24")).unwrap()),
        ["10.50.0.5/24", "fd00::5/64"]
    );
}

#[test]
fn empty_overrides_do_not_clear_addresses() {
    let c = conf(base(
        json!({"args": {"cni": {"ips": []}}, "runtimeConfig": {"ips": []}}),
    ));
    assert_eq!(addrs(&resolve(&c, &args("")).unwrap()).len(), 2);
}

#[test]
fn invalid_entries_are_code_7_naming_the_entry() {
    let cases = [
        (
            json!({"ipam": {"type": "static", "addresses": [{"address": "10.0.0.1/24"}, {"address": "10.0.0.300/24"}]}}),
            "",
            "ipam.addresses[1].address",
        ),
        (
            json!({"ipam": {"type": "static", "addresses": [{"address": "10.0.0.1/24", "gateway": "nope"}]}}),
            "",
            "ipam.addresses[0].gateway",
        ),
        (
            json!({"ipam": {"type": "static", "addresses": [{"address": "10.0.0.1"}]}}),
            "",
            "ipam.addresses[0].address",
        ),
        (
            json!({"ipam": {"type": "static", "routes": [{"dst": "x"}]}}),
            "",
            "ipam.routes[0].dst",
        ),
        (
            json!({"ipam": {"type": "static", "addresses": [{"gateway": "10.0.0.1"}]}}),
            "",
            "ipam.addresses[0]",
        ),
        (
            json!({"ipam": {"type": "static"}}),
            "IP=10.0.0.1",
            "CNI_ARGS IP entry",
        ),
        (
            json!({"ipam": {"type": "static"}}),
            "IP=10.0.0.1/24;GATEWAY=10.0.0",
            "CNI_ARGS GATEWAY entry",
        ),
        (
            json!({"ipam": {"type": "static"}, "args": {"cni": {"ips": ["10.0.0.1/24", 5]}}}),
            "",
            "args.cni.ips[1]",
        ),
        (
            json!({"ipam": {"type": "static"}, "runtimeConfig": {"ips": "10.0.0.1/24"}}),
            "",
            "runtimeConfig.ips",
        ),
    ];
    for (extra, cni_args, named) in cases {
        let err = resolve(&conf(base(extra.clone())), &args(cni_args)).unwrap_err();
        assert_eq!(err.code, 7, "{extra}: {err}");
        assert!(err.msg.contains(named), "{named} not in {:?}", err.msg);
    }
}

#[test]
fn legacy_versions_refuse_two_addresses_of_a_family() {
    let mut c = base(json!({"cniVersion": "0.2.0"}));
    assert!(
        resolve(&conf(c.clone()), &args("")).is_ok(),
        "one v4 and one v6 fit in 0.2.0"
    );
    c["ipam"]["addresses"]
        .as_array_mut()
        .unwrap()
        .push(json!({"address": "10.10.0.2/24"}));
    assert_eq!(resolve(&conf(c), &args("")).unwrap_err().code, 1);
}

#[test]
fn check_passes_with_the_add_result_and_fails_without_an_address() {
    let added = resolve(&conf(base(json!({}))), &args(""))
        .unwrap()
        .to_json(Version::V1_0_0)
        .unwrap();
    check(&conf(base(json!({"prevResult": added.clone()}))), &args("")).unwrap();
    let mut missing = added.clone();
    missing["ips"].as_array_mut().unwrap().remove(1);
    assert_eq!(
        check(&conf(base(json!({"prevResult": missing}))), &args(""))
            .unwrap_err()
            .code,
        code::CHECK_FAILED
    );
    let mut wrong_gw = added;
    wrong_gw["ips"][0]["gateway"] = json!("10.10.0.253");
    assert_eq!(
        check(&conf(base(json!({"prevResult": wrong_gw}))), &args(""))
            .unwrap_err()
            .code,
        code::CHECK_FAILED
    );
    assert_eq!(
        check(&conf(base(json!({}))), &args("")).unwrap_err().code,
        7
    );
}
