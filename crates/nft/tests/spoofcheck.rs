//! The spoof check against the real kernel, each test in its own network
//! namespace (needs root; skipped otherwise).

mod common;

use common::{chain_names, nft, nft_list, objects, rules_of, TestNetns};
use nft::spoofcheck::{self, Attachment};
use nft::Error;
use serde_json::json;

const MAC: &str = "02:11:22:33:44:55";

#[test]
fn setup_creates_the_table_base_chain_both_chains_and_four_tagged_rules() {
    let Some(_ns) = TestNetns::enter() else {
        return;
    };
    let id = spoofcheck::ref_id("abc123", "eth0");
    spoofcheck::setup(&nft(), "veth123", MAC, &id, "testnet").unwrap();

    let doc = nft_list(&["table", "bridge", "nat"]).expect("table bridge nat exists");
    assert_eq!(
        chain_names(&doc),
        vec![
            "PREROUTING",
            "cni-br-iface-abc123-eth0",
            "cni-br-iface-abc123-eth0-mac"
        ]
    );
    let base = objects(&doc, "chain")[0];
    assert_eq!(base["type"], "filter");
    assert_eq!(base["hook"], "prerouting");
    assert_eq!(base["prio"], -300);
    assert_eq!(base["policy"], "accept");

    let comment = "macspoofchk-abc123-eth0";
    let pre = rules_of(&doc, "PREROUTING");
    assert_eq!(pre.len(), 1);
    assert_eq!(pre[0]["comment"], comment);
    assert_eq!(
        pre[0]["expr"],
        json!([
            {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "veth123"}},
            {"jump": {"target": "cni-br-iface-abc123-eth0"}}
        ])
    );
    let iface = rules_of(&doc, "cni-br-iface-abc123-eth0");
    assert_eq!(iface.len(), 1);
    // The rule inside the attachment's chain carries the network that made it.
    assert_eq!(
        iface[0]["comment"],
        format!(
            "{comment} net={}",
            nft::masquerade::hash_for_network("testnet")
        )
    );
    assert_eq!(
        iface[0]["expr"],
        json!([{"jump": {"target": "cni-br-iface-abc123-eth0-mac"}}])
    );
    let mac = rules_of(&doc, "cni-br-iface-abc123-eth0-mac");
    assert_eq!(mac.len(), 2);
    assert_eq!(mac[0]["comment"], comment);
    assert_eq!(
        mac[0]["expr"],
        json!([
            {"match": {"op": "==", "left": {"payload": {"protocol": "ether", "field": "saddr"}}, "right": MAC}},
            {"return": null}
        ])
    );
    assert_eq!(mac[1]["comment"], comment);
    assert_eq!(mac[1]["expr"], json!([{"drop": null}]));
}

#[test]
fn repeated_setup_leaves_one_jump_rule_and_the_latest_interface_and_mac() {
    let Some(_ns) = TestNetns::enter() else {
        return;
    };
    let nft = nft();
    let id = spoofcheck::ref_id("abc123", "eth0");
    spoofcheck::setup(&nft, "veth123", MAC, &id, "testnet").unwrap();
    spoofcheck::setup(&nft, "veth123", MAC, &id, "testnet").unwrap();
    spoofcheck::setup(&nft, "veth999", "02:AA:BB:CC:DD:EE", &id, "testnet").unwrap();

    let doc = nft_list(&["table", "bridge", "nat"]).unwrap();
    let pre = rules_of(&doc, "PREROUTING");
    assert_eq!(pre.len(), 1, "{pre:?}");
    assert_eq!(pre[0]["expr"][0]["match"]["right"], "veth999");
    assert_eq!(rules_of(&doc, "cni-br-iface-abc123-eth0").len(), 1);
    let mac = rules_of(&doc, "cni-br-iface-abc123-eth0-mac");
    assert_eq!(mac.len(), 2);
    assert_eq!(mac[0]["expr"][0]["match"]["right"], "02:aa:bb:cc:dd:ee");
}

#[test]
fn teardown_removes_the_chains_and_jump_rule_and_a_second_teardown_is_ok() {
    let Some(_ns) = TestNetns::enter() else {
        return;
    };
    let nft = nft();
    let gone = spoofcheck::ref_id("abc123", "eth0");
    let kept = spoofcheck::ref_id("def456", "net1");
    spoofcheck::setup(&nft, "veth123", MAC, &gone, "testnet").unwrap();
    spoofcheck::setup(&nft, "veth456", "02:11:22:33:44:66", &kept, "testnet").unwrap();

    spoofcheck::teardown(&nft, &gone).unwrap();
    let doc = nft_list(&["table", "bridge", "nat"]).unwrap();
    assert_eq!(
        chain_names(&doc),
        vec![
            "PREROUTING",
            "cni-br-iface-def456-net1",
            "cni-br-iface-def456-net1-mac"
        ]
    );
    let pre = rules_of(&doc, "PREROUTING");
    assert_eq!(pre.len(), 1);
    assert_eq!(pre[0]["comment"], "macspoofchk-def456-net1");
    assert_eq!(rules_of(&doc, "cni-br-iface-def456-net1-mac").len(), 2);

    spoofcheck::teardown(&nft, &gone).unwrap();
    assert_eq!(nft_list(&["table", "bridge", "nat"]).unwrap(), doc);
}

#[test]
fn teardown_cleans_up_a_half_made_attachment() {
    let Some(_ns) = TestNetns::enter() else {
        return;
    };
    let nft = nft();
    // Only the chains, as if an earlier run had died between steps.
    nft.apply(
        "add table bridge nat\n\
         add chain bridge nat cni-br-iface-abc123-eth0\n\
         add chain bridge nat cni-br-iface-abc123-eth0-mac\n\
         add rule bridge nat cni-br-iface-abc123-eth0 jump cni-br-iface-abc123-eth0-mac\n",
    )
    .unwrap();
    spoofcheck::teardown(&nft, "abc123-eth0").unwrap();
    let doc = nft_list(&["table", "bridge", "nat"]).unwrap();
    assert!(chain_names(&doc).is_empty(), "{doc}");
}

#[test]
fn list_returns_ref_ids_and_host_interfaces() {
    let Some(_ns) = TestNetns::enter() else {
        return;
    };
    let nft = nft();
    spoofcheck::setup(&nft, "veth456", MAC, "def456-net1", "testnet").unwrap();
    spoofcheck::setup(&nft, "veth123", MAC, "abc123-eth0", "testnet").unwrap();
    // An attachment chain whose jump rule is gone.
    nft.apply("add chain bridge nat cni-br-iface-ghi789-eth0\n")
        .unwrap();
    let testnet = nft::masquerade::hash_for_network("testnet");
    assert_eq!(
        spoofcheck::list(&nft).unwrap(),
        vec![
            Attachment {
                ref_id: "abc123-eth0".into(),
                host_if: Some("veth123".into()),
                network_hash: Some(testnet.clone()),
            },
            Attachment {
                ref_id: "def456-net1".into(),
                host_if: Some("veth456".into()),
                network_hash: Some(testnet.clone()),
            },
            Attachment {
                ref_id: "ghi789-eth0".into(),
                host_if: None,
                network_hash: None,
            },
        ]
    );
    spoofcheck::teardown(&nft, "abc123-eth0").unwrap();
    let ids: Vec<String> = spoofcheck::list(&nft)
        .unwrap()
        .into_iter()
        .map(|a| a.ref_id)
        .collect();
    assert_eq!(ids, vec!["def456-net1", "ghi789-eth0"]);
}

#[test]
fn ref_ids_with_dots_underscores_and_digits_work_as_chain_names() {
    let Some(_ns) = TestNetns::enter() else {
        return;
    };
    let nft = nft();
    let id = spoofcheck::ref_id("0c.8f_9a-B", "eth0.100");
    spoofcheck::setup(&nft, "veth-a.b_c", MAC, &id, "testnet").unwrap();
    assert_eq!(
        spoofcheck::list(&nft).unwrap(),
        vec![Attachment {
            ref_id: id.clone(),
            host_if: Some("veth-a.b_c".into()),
            network_hash: Some(nft::masquerade::hash_for_network("testnet")),
        }]
    );
    spoofcheck::teardown(&nft, &id).unwrap();
    assert!(spoofcheck::list(&nft).unwrap().is_empty());
}

#[test]
fn missing_table_teardown_is_ok_and_list_is_empty() {
    let Some(_ns) = TestNetns::enter() else {
        return;
    };
    let nft = nft();
    assert!(nft_list(&["table", "bridge", "nat"]).is_none());
    spoofcheck::teardown(&nft, "abc123-eth0").unwrap();
    assert!(spoofcheck::list(&nft).unwrap().is_empty());
    assert!(nft
        .list_json(&["table", "bridge", "nat"])
        .unwrap()
        .is_none());
    // An existing table without our chains is just as fine.
    nft.apply("add table bridge nat\n").unwrap();
    spoofcheck::teardown(&nft, "abc123-eth0").unwrap();
    assert!(spoofcheck::list(&nft).unwrap().is_empty());
}

#[test]
fn unsafe_input_is_refused_before_nft_runs() {
    let Some(_ns) = TestNetns::enter() else {
        return;
    };
    let nft = nft();
    let e = spoofcheck::setup(&nft, "veth\"1", MAC, "abc-eth0", "testnet").unwrap_err();
    assert!(matches!(e, Error::Invalid { .. }), "{e:?}");
    let e = spoofcheck::setup(&nft, "veth1", MAC, "abc eth0", "testnet").unwrap_err();
    assert!(matches!(e, Error::Invalid { .. }), "{e:?}");
    assert!(nft_list(&["table", "bridge", "nat"]).is_none());
}

#[test]
fn nft_errors_carry_the_command_and_nfts_message() {
    let Some(_ns) = TestNetns::enter() else {
        return;
    };
    let nft = nft();
    let e = nft.apply("add rule bridge nat NOPE drop\n").unwrap_err();
    match &e {
        Error::Failed { what, stderr } => {
            assert!(what.contains("-f -"), "{what}");
            assert!(stderr.contains("No such file or directory"), "{stderr}");
            assert!(stderr.contains("add rule bridge nat NOPE drop"), "{stderr}");
            assert_eq!(stderr.trim(), stderr);
        }
        other => panic!("{other:?}"),
    }
    // A syntax error in a list is a failure, not "missing".
    let e = nft.list_json(&["chain", "bridge", "nat"]).unwrap_err();
    match &e {
        Error::Failed { what, stderr } => {
            assert!(what.contains("-j list chain bridge nat"), "{what}");
            assert!(stderr.contains("syntax error"), "{stderr}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failed_transaction_changes_nothing() {
    let Some(_ns) = TestNetns::enter() else {
        return;
    };
    let nft = nft();
    let e = nft
        .apply("add table bridge nat\nadd chain bridge nat c1\nadd rule bridge nat NOPE drop\n")
        .unwrap_err();
    assert!(matches!(e, Error::Failed { .. }), "{e:?}");
    assert!(nft_list(&["table", "bridge", "nat"]).is_none());
}

#[test]
fn nft_acts_in_the_network_namespace_of_the_calling_thread() {
    let Some(_ns) = TestNetns::enter() else {
        return;
    };
    let nft = nft();
    spoofcheck::setup(&nft, "veth123", MAC, "abc123-eth0", "testnet").unwrap();
    // Another thread, in another fresh namespace, sees nothing of it.
    let other = std::thread::spawn(|| {
        let _ns2 = TestNetns::enter().unwrap();
        spoofcheck::list(&common::nft()).unwrap()
    })
    .join()
    .unwrap();
    assert!(other.is_empty(), "{other:?}");
    assert_eq!(spoofcheck::list(&nft).unwrap().len(), 1);
}
