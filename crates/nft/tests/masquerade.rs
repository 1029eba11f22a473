//! The masquerade against the real kernel, each test in its own network
//! namespace (needs root; skipped otherwise).

mod common;

use common::{chain_names, nft, nft_list, objects, rules_of, TestNetns};
use ipnetwork::IpNetwork;
use nft::masquerade::{self, Rule};
use serde_json::json;

fn nets(list: &[&str]) -> Vec<IpNetwork> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

/// (saddr, comment) of every rule in `masq_checks`, in order.
fn masq_rules() -> Vec<(String, String)> {
    let doc = nft_list(&["chain", "inet", "cni_plugins_masquerade", "masq_checks"])
        .expect("masq_checks exists");
    rules_of(&doc, "masq_checks")
        .iter()
        .map(|r| {
            (
                r["expr"][0]["match"]["right"].as_str().unwrap().to_string(),
                r["comment"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn pair(cid: &str, ifname: &str) -> (String, String) {
    (cid.to_string(), ifname.to_string())
}

#[test]
fn setup_creates_ipv4_and_ipv6_rules_with_saddr_daddr_and_comment() {
    let Some(_ns) = TestNetns::enter() else {
        return;
    };
    masquerade::setup(
        &nft(),
        &nets(&["10.1.0.5/24", "fd00::5/64"]),
        "mynet",
        "eth0",
        "abc123",
    )
    .unwrap();

    let doc = nft_list(&["table", "inet", "cni_plugins_masquerade"]).expect("table exists");
    assert_eq!(chain_names(&doc), vec!["masq_checks", "postrouting"]);
    let post = objects(&doc, "chain")[1];
    assert_eq!(post["type"], "nat");
    assert_eq!(post["hook"], "postrouting");
    assert_eq!(post["prio"], 100); // srcnat
    let post_rules: Vec<_> = rules_of(&doc, "postrouting")
        .iter()
        .map(|r| r["expr"].clone())
        .collect();
    assert_eq!(
        post_rules,
        vec![
            json!([{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"prefix": {"addr": "224.0.0.0", "len": 4}}}}, {"return": null}]),
            json!([{"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "daddr"}}, "right": {"prefix": {"addr": "ff00::", "len": 8}}}}, {"return": null}]),
            json!([{"goto": {"target": "masq_checks"}}]),
        ]
    );

    let comment = masquerade::comment("mynet", "eth0", "abc123");
    let masq = rules_of(&doc, "masq_checks");
    assert_eq!(masq.len(), 2);
    assert_eq!(masq[0]["comment"], comment.as_str());
    assert_eq!(
        masq[0]["expr"],
        json!([
            {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "10.1.0.5"}},
            {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": {"prefix": {"addr": "10.1.0.0", "len": 24}}}},
            {"masquerade": null}
        ])
    );
    assert_eq!(masq[1]["comment"], comment.as_str());
    assert_eq!(
        masq[1]["expr"],
        json!([
            {"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "saddr"}}, "right": "fd00::5"}},
            {"match": {"op": "!=", "left": {"payload": {"protocol": "ip6", "field": "daddr"}}, "right": {"prefix": {"addr": "fd00::", "len": 64}}}},
            {"masquerade": null}
        ])
    );

    let found = masquerade::rules(&nft(), "mynet").unwrap();
    let saddrs: Vec<&str> = found.iter().map(|r| r.saddr.as_str()).collect();
    assert_eq!(saddrs, vec!["10.1.0.5", "fd00::5"]);
    assert!(found.iter().all(|r| r.comment == comment));
}

#[test]
fn resetup_of_the_same_instance_replaces_its_rules() {
    let Some(_ns) = TestNetns::enter() else {
        return;
    };
    let nft = nft();
    masquerade::setup(
        &nft,
        &nets(&["10.1.0.5/24", "fd00::5/64"]),
        "mynet",
        "eth0",
        "abc123",
    )
    .unwrap();
    masquerade::setup(
        &nft,
        &nets(&["10.1.0.5/24", "fd00::5/64"]),
        "mynet",
        "eth0",
        "abc123",
    )
    .unwrap();
    assert_eq!(masq_rules().len(), 2);
    masquerade::setup(&nft, &nets(&["10.1.0.7/24"]), "mynet", "eth0", "abc123").unwrap();
    let c = masquerade::comment("mynet", "eth0", "abc123");
    assert_eq!(masq_rules(), vec![("10.1.0.7".to_string(), c)]);
    // The postrouting chain is refilled, not appended to.
    let doc = nft_list(&["chain", "inet", "cni_plugins_masquerade", "postrouting"]).unwrap();
    assert_eq!(rules_of(&doc, "postrouting").len(), 3);
}

#[test]
fn teardown_of_one_instance_leaves_another_and_repeats_ok() {
    let Some(_ns) = TestNetns::enter() else {
        return;
    };
    let nft = nft();
    masquerade::setup(
        &nft,
        &nets(&["10.1.0.5/24", "fd00::5/64"]),
        "mynet",
        "eth0",
        "abc123",
    )
    .unwrap();
    masquerade::setup(&nft, &nets(&["10.1.0.6/24"]), "mynet", "eth0", "def456").unwrap();
    // The same container and ifname on another interface name is another instance.
    masquerade::setup(&nft, &nets(&["10.1.0.8/24"]), "mynet", "net1", "abc123").unwrap();

    masquerade::teardown(&nft, "mynet", "eth0", "abc123").unwrap();
    assert_eq!(
        masq_rules(),
        vec![
            (
                "10.1.0.6".to_string(),
                masquerade::comment("mynet", "eth0", "def456")
            ),
            (
                "10.1.0.8".to_string(),
                masquerade::comment("mynet", "net1", "abc123")
            ),
        ]
    );
    masquerade::teardown(&nft, "mynet", "eth0", "abc123").unwrap();
    assert_eq!(masq_rules().len(), 2);
}

#[test]
fn gc_keeps_valid_removes_others_of_the_network_and_spares_other_networks() {
    let Some(_ns) = TestNetns::enter() else {
        return;
    };
    let nft = nft();
    masquerade::setup(
        &nft,
        &nets(&["10.1.0.5/24", "fd00::5/64"]),
        "mynet",
        "eth0",
        "abc123",
    )
    .unwrap();
    masquerade::setup(&nft, &nets(&["10.1.0.6/24"]), "mynet", "eth0", "def456").unwrap();
    masquerade::setup(&nft, &nets(&["10.1.0.7/24"]), "mynet", "eth0", "ghi789").unwrap();
    masquerade::setup(&nft, &nets(&["10.2.0.5/24"]), "othernet", "eth0", "zzz999").unwrap();

    let deleted = masquerade::gc(
        &nft,
        "mynet",
        &[pair("abc123", "eth0"), pair("ghi789", "eth0")],
    )
    .unwrap();
    assert_eq!(deleted, 1);
    let left: Vec<String> = masq_rules().into_iter().map(|(saddr, _)| saddr).collect();
    assert_eq!(left, vec!["10.1.0.5", "fd00::5", "10.1.0.7", "10.2.0.5"]);

    // Nothing valid: every rule of mynet goes, othernet's stays.
    assert_eq!(masquerade::gc(&nft, "mynet", &[]).unwrap(), 3);
    assert!(masquerade::rules(&nft, "mynet").unwrap().is_empty());
    let other = masquerade::rules(&nft, "othernet").unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(
        other[0],
        Rule {
            handle: other[0].handle,
            comment: masquerade::comment("othernet", "eth0", "zzz999"),
            saddr: "10.2.0.5".into()
        }
    );
    assert_eq!(masquerade::gc(&nft, "mynet", &[]).unwrap(), 0);
}

#[test]
fn long_names_give_a_128_byte_comment_that_nft_accepts_and_finds_again() {
    let Some(_ns) = TestNetns::enter() else {
        return;
    };
    let nft = nft();
    let cid = "0123456789abcdef".repeat(4);
    let net = "a-network-with-a-rather-long-name";
    masquerade::setup(&nft, &nets(&["10.1.0.5/32"]), net, "eth0", &cid).unwrap();
    let found = masquerade::rules(&nft, net).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].comment.len(), 128);
    assert_eq!(found[0].saddr, "10.1.0.5");
    assert_eq!(masquerade::gc(&nft, net, &[pair(&cid, "eth0")]).unwrap(), 0);
    masquerade::teardown(&nft, net, "eth0", &cid).unwrap();
    assert!(masquerade::rules(&nft, net).unwrap().is_empty());
}

#[test]
fn missing_table_teardown_is_ok_gc_is_zero_and_rules_are_empty() {
    let Some(_ns) = TestNetns::enter() else {
        return;
    };
    let nft = nft();
    assert!(nft_list(&["table", "inet", "cni_plugins_masquerade"]).is_none());
    masquerade::teardown(&nft, "mynet", "eth0", "abc123").unwrap();
    assert_eq!(masquerade::gc(&nft, "mynet", &[]).unwrap(), 0);
    assert!(masquerade::rules(&nft, "mynet").unwrap().is_empty());
    assert!(nft_list(&["table", "inet", "cni_plugins_masquerade"]).is_none());
}
