//! The MAC spoof check: frames entering the bridge from a container's host-side
//! interface pass only when their source MAC is the container's.
//!
//! The layout is the reference plugin's (containernetworking/plugins,
//! `pkg/link/spoofcheck.go`), so each finds the other's rules:
//!
//! ```text
//! table bridge nat {
//!     chain PREROUTING {
//!         type filter hook prerouting priority -300; policy accept;
//!         iifname "<host_if>" jump cni-br-iface-<ref_id> comment "macspoofchk-<ref_id>"
//!     }
//!     chain cni-br-iface-<ref_id> {
//!         jump cni-br-iface-<ref_id>-mac comment "macspoofchk-<ref_id>"
//!     }
//!     chain cni-br-iface-<ref_id>-mac {
//!         ether saddr <mac> return comment "macspoofchk-<ref_id>"
//!         drop comment "macspoofchk-<ref_id>"
//!     }
//! }
//! ```
//!
//! with `ref_id = "<containerID>-<ifname>"` ([`ref_id`]). Unlike the
//! reference, a repeated [`setup`] replaces the `PREROUTING` jump rule instead
//! of adding a second one, and does it in one transaction instead of two.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::{check_name_part, invalid, jump_target, quoted, quoted_ifname, rules, Error, Nft};

const FAMILY_TABLE: &str = "bridge nat";
const BASE_CHAIN: &str = "PREROUTING";
const CHAIN_PREFIX: &str = "cni-br-iface-";
const COMMENT_PREFIX: &str = "macspoofchk-";

/// The tag of one attachment: `"<containerID>-<ifname>"`.
pub fn ref_id(container_id: &str, ifname: &str) -> String {
    format!("{container_id}-{ifname}")
}

fn iface_chain(ref_id: &str) -> String {
    format!("{CHAIN_PREFIX}{ref_id}")
}

fn mac_chain(ref_id: &str) -> String {
    format!("{CHAIN_PREFIX}{ref_id}-mac")
}

fn rule_comment(ref_id: &str) -> String {
    format!("{COMMENT_PREFIX}{ref_id}")
}

/// The comment of the rule inside `cni-br-iface-<ref_id>`: the reference's, plus the network
/// that made the chains (`net=<hash_for_network>`), so that a GC of one network never judges
/// another network's chains. The reference finds its objects by the `PREROUTING` rule's
/// comment and the chain names, both unchanged, so either plugin still removes the other's.
fn tagged_comment(ref_id: &str, network: &str) -> String {
    format!(
        "{} {NETWORK_TAG}{}",
        rule_comment(ref_id),
        crate::masquerade::hash_for_network(network)
    )
}

/// What precedes the network's hash in [`tagged_comment`].
const NETWORK_TAG: &str = "net=";

/// A MAC address as nft writes it: six pairs of lowercase hex digits.
fn normalized_mac(mac: &str) -> Result<String, Error> {
    let groups: Vec<&str> = mac.split(':').collect();
    let ok = groups.len() == 6
        && groups
            .iter()
            .all(|g| g.len() == 2 && g.chars().all(|c| c.is_ascii_hexdigit()));
    if !ok {
        return Err(invalid(
            "MAC address",
            mac,
            "it is not six colon-separated pairs of hex digits".to_string(),
        ));
    }
    Ok(mac.to_ascii_lowercase())
}

/// The script of [`setup`]: `stale` are the handles of earlier `PREROUTING`
/// rules of this `ref_id`, deleted in the same transaction.
pub(crate) fn setup_script(
    host_if: &str,
    mac: &str,
    ref_id: &str,
    network: &str,
    stale: &[u64],
) -> Result<String, Error> {
    check_name_part(ref_id, "spoof-check ref_id")?;
    let host_if = quoted_ifname(host_if, "host interface name")?;
    let mac = normalized_mac(mac)?;
    let comment = quoted(&rule_comment(ref_id), "spoof-check comment")?;
    let tagged = quoted(&tagged_comment(ref_id, network), "spoof-check comment")?;
    let iface = iface_chain(ref_id);
    let macc = mac_chain(ref_id);
    let t = FAMILY_TABLE;
    let mut s = String::new();
    s.push_str(&format!("add table {t}\n"));
    s.push_str(&format!(
        "add chain {t} {BASE_CHAIN} {{ type filter hook prerouting priority -300; policy accept; }}\n"
    ));
    s.push_str(&format!("add chain {t} {iface}\n"));
    s.push_str(&format!("add chain {t} {macc}\n"));
    s.push_str(&format!("flush chain {t} {iface}\n"));
    s.push_str(&format!("flush chain {t} {macc}\n"));
    for handle in stale {
        s.push_str(&format!("delete rule {t} {BASE_CHAIN} handle {handle}\n"));
    }
    s.push_str(&format!(
        "add rule {t} {BASE_CHAIN} iifname {host_if} jump {iface} comment {comment}\n"
    ));
    s.push_str(&format!(
        "add rule {t} {iface} jump {macc} comment {tagged}\n"
    ));
    s.push_str(&format!(
        "add rule {t} {macc} ether saddr {mac} return comment {comment}\n"
    ));
    s.push_str(&format!("add rule {t} {macc} drop comment {comment}\n"));
    Ok(s)
}

/// The handles of the `PREROUTING` rules that belong to `ref_id`: tagged with
/// its comment, or jumping to its chain.
fn base_rule_handles(doc: &Value, ref_id: &str, what: &str) -> Result<Vec<u64>, Error> {
    let comment = rule_comment(ref_id);
    let chain = iface_chain(ref_id);
    Ok(rules(doc, what)?
        .into_iter()
        .filter(|r| r.chain == BASE_CHAIN)
        .filter(|r| r.comment == Some(comment.as_str()) || jump_target(r.expr) == Some(&chain))
        .map(|r| r.handle)
        .collect())
}

/// The script of [`teardown`], from a listing of the whole `bridge nat`
/// table; empty when nothing of `ref_id` is left.
pub(crate) fn teardown_script(doc: &Value, ref_id: &str, what: &str) -> Result<String, Error> {
    check_name_part(ref_id, "spoof-check ref_id")?;
    let t = FAMILY_TABLE;
    let mut s = String::new();
    for handle in base_rule_handles(doc, ref_id, what)? {
        s.push_str(&format!("delete rule {t} {BASE_CHAIN} handle {handle}\n"));
    }
    let present = crate::chain_names(doc, what)?;
    let chains = [iface_chain(ref_id), mac_chain(ref_id)];
    let chains: Vec<&String> = chains
        .iter()
        .filter(|c| present.contains(&c.as_str()))
        .collect();
    // Flush first so that no rule of ours still jumps to a chain being deleted.
    for c in &chains {
        s.push_str(&format!("flush chain {t} {c}\n"));
    }
    for c in &chains {
        s.push_str(&format!("delete chain {t} {c}\n"));
    }
    Ok(s)
}

/// One transaction: add table, base chain, both chains; flush both
/// per-attachment chains; delete any earlier `PREROUTING` rule of this
/// `ref_id` (found with one `list chain bridge nat PREROUTING` beforehand, by
/// handle) so that a repeated ADD leaves exactly one jump rule; add the 4
/// rules.
///
/// `host_if` is the host-side interface (the bridge port), `mac` the
/// container interface's address (`aa:bb:cc:dd:ee:ff`, written lowercase).
/// Values that cannot be written safely into the script (see the crate
/// doc's "Quoting") are refused with [`Error::Invalid`] before nft runs.
pub fn setup(
    nft: &Nft,
    host_if: &str,
    mac: &str,
    ref_id: &str,
    network: &str,
) -> Result<(), Error> {
    // Refuse bad input before running anything.
    setup_script(host_if, mac, ref_id, network, &[])?;
    let what = "the spoof-check PREROUTING chain";
    nft.list_plan_apply(&format!("spoof-check setup for {ref_id}"), |nft| {
        let stale = match nft.list_json(&["chain", "bridge", "nat", BASE_CHAIN])? {
            None => Vec::new(),
            Some(doc) => base_rule_handles(&doc, ref_id, what)?,
        };
        setup_script(host_if, mac, ref_id, network, &stale).map(Some)
    })
}

/// Idempotent: removes the `PREROUTING` rule(s) with this comment (by handle)
/// and both chains; anything already gone (table, chain, rule) is fine and
/// returns `Ok`. One list of the whole table, then one transaction (none when
/// nothing is left). A `ref_id` that [`setup`] would refuse is refused here
/// too, with [`Error::Invalid`].
pub fn teardown(nft: &Nft, ref_id: &str) -> Result<(), Error> {
    check_name_part(ref_id, "spoof-check ref_id")?;
    nft.list_plan_apply(&format!("spoof-check teardown for {ref_id}"), |nft| {
        let Some(doc) = nft.list_json(&["table", "bridge", "nat"])? else {
            return Ok(None);
        };
        let script = teardown_script(&doc, ref_id, "table bridge nat")?;
        Ok(Some(script).filter(|s| !s.is_empty()))
    })
}

/// One spoof-check attachment found in `bridge nat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// `"<containerID>-<ifname>"`, from the chain name `cni-br-iface-<ref_id>`.
    pub ref_id: String,
    /// The interface matched by the `PREROUTING` rule that jumps to the
    /// attachment's chain; `None` when there is no such rule.
    pub host_if: Option<String>,
    /// The [`masquerade::hash_for_network`](crate::masquerade::hash_for_network) of the network
    /// that made the chains; `None` for chains without the tag (the reference's, or this
    /// suite's before it tagged them).
    pub network_hash: Option<String>,
}

impl Attachment {
    /// Whether a GC of `network` may judge these chains: its own, or untagged ones.
    pub fn may_belong_to(&self, network: &str) -> bool {
        self.network_hash
            .as_deref()
            .is_none_or(|h| h == crate::masquerade::hash_for_network(network))
    }
}

/// The attachments in a listing of the whole `bridge nat` table, by `ref_id`.
pub(crate) fn attachments(doc: &Value, what: &str) -> Result<Vec<Attachment>, Error> {
    let names: BTreeSet<&str> = crate::chain_names(doc, what)?
        .into_iter()
        .filter(|n| n.starts_with(CHAIN_PREFIX))
        .collect();
    let all = rules(doc, what)?;
    let mut found = Vec::new();
    for name in &names {
        // `cni-br-iface-X-mac` is X's MAC chain when `cni-br-iface-X` exists.
        if let Some(base) = name.strip_suffix("-mac") {
            if names.contains(base) {
                continue;
            }
        }
        let host_if = all
            .iter()
            .filter(|r| r.chain == BASE_CHAIN && jump_target(r.expr) == Some(name))
            .find_map(|r| crate::iifname(r.expr))
            .map(str::to_string);
        let network_hash = all
            .iter()
            .filter(|r| r.chain == *name)
            .filter_map(|r| r.comment?.split_once(&format!(" {NETWORK_TAG}")))
            .map(|(_, hash)| hash.to_string())
            .next();
        found.push(Attachment {
            ref_id: name[CHAIN_PREFIX.len()..].to_string(),
            host_if,
            network_hash,
        });
    }
    Ok(found)
}

/// Every spoof-check attachment found in `bridge nat`: each chain named
/// `cni-br-iface-<ref_id>` (not the `-mac` ones) with the iifname of its
/// `PREROUTING` jump rule when there is one, sorted by `ref_id`. Empty when
/// there is no table.
pub fn list(nft: &Nft) -> Result<Vec<Attachment>, Error> {
    match nft.list_json(&["table", "bridge", "nat"])? {
        None => Ok(Vec::new()),
        Some(doc) => attachments(&doc, "table bridge nat"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `nft -j list table bridge nat` after the setup of `abc-eth0` on
    /// `veth123` and of `def-net1` on `veth456` (captured from nft 1.0.6),
    /// then with a stray `cni-br-iface-ghi-eth0` chain that has no jump rule.
    const TABLE: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "bridge", "name": "nat", "handle": 1}}, {"chain": {"family": "bridge", "table": "nat", "name": "PREROUTING", "handle": 1, "type": "filter", "hook": "prerouting", "prio": -300, "policy": "accept"}}, {"chain": {"family": "bridge", "table": "nat", "name": "cni-br-iface-abc-eth0", "handle": 2}}, {"chain": {"family": "bridge", "table": "nat", "name": "cni-br-iface-abc-eth0-mac", "handle": 3}}, {"chain": {"family": "bridge", "table": "nat", "name": "cni-br-iface-def-net1", "handle": 8}}, {"chain": {"family": "bridge", "table": "nat", "name": "cni-br-iface-def-net1-mac", "handle": 9}}, {"chain": {"family": "bridge", "table": "nat", "name": "cni-br-iface-ghi-eth0", "handle": 14}}, {"rule": {"family": "bridge", "table": "nat", "chain": "PREROUTING", "handle": 4, "comment": "macspoofchk-abc-eth0", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "veth123"}}, {"jump": {"target": "cni-br-iface-abc-eth0"}}]}}, {"rule": {"family": "bridge", "table": "nat", "chain": "PREROUTING", "handle": 10, "comment": "macspoofchk-def-net1", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "veth456"}}, {"jump": {"target": "cni-br-iface-def-net1"}}]}}, {"rule": {"family": "bridge", "table": "nat", "chain": "cni-br-iface-abc-eth0", "handle": 5, "comment": "macspoofchk-abc-eth0", "expr": [{"jump": {"target": "cni-br-iface-abc-eth0-mac"}}]}}, {"rule": {"family": "bridge", "table": "nat", "chain": "cni-br-iface-abc-eth0-mac", "handle": 6, "comment": "macspoofchk-abc-eth0", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ether", "field": "saddr"}}, "right": "02:11:22:33:44:55"}}, {"return": null}]}}, {"rule": {"family": "bridge", "table": "nat", "chain": "cni-br-iface-abc-eth0-mac", "handle": 7, "comment": "macspoofchk-abc-eth0", "expr": [{"drop": null}]}}, {"rule": {"family": "bridge", "table": "nat", "chain": "cni-br-iface-def-net1", "handle": 11, "comment": "macspoofchk-def-net1", "expr": [{"jump": {"target": "cni-br-iface-def-net1-mac"}}]}}, {"rule": {"family": "bridge", "table": "nat", "chain": "cni-br-iface-def-net1-mac", "handle": 12, "comment": "macspoofchk-def-net1", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "ether", "field": "saddr"}}, "right": "02:11:22:33:44:66"}}, {"return": null}]}}, {"rule": {"family": "bridge", "table": "nat", "chain": "cni-br-iface-def-net1-mac", "handle": 13, "comment": "macspoofchk-def-net1", "expr": [{"drop": null}]}}]}"#;

    #[test]
    fn ref_id_joins_container_id_and_ifname_with_a_dash() {
        assert_eq!(ref_id("abc123", "eth0"), "abc123-eth0");
    }

    #[test]
    fn setup_script_matches_the_reference_layout() {
        let s = setup_script("veth123", "02:11:22:33:44:55", "abc-eth0", "n", &[]).unwrap();
        let net = crate::masquerade::hash_for_network("n");
        assert_eq!(
            s,
            format!(
                "add table bridge nat\n\
             add chain bridge nat PREROUTING {{ type filter hook prerouting priority -300; policy accept; }}\n\
             add chain bridge nat cni-br-iface-abc-eth0\n\
             add chain bridge nat cni-br-iface-abc-eth0-mac\n\
             flush chain bridge nat cni-br-iface-abc-eth0\n\
             flush chain bridge nat cni-br-iface-abc-eth0-mac\n\
             add rule bridge nat PREROUTING iifname \"veth123\" jump cni-br-iface-abc-eth0 comment \"macspoofchk-abc-eth0\"\n\
             add rule bridge nat cni-br-iface-abc-eth0 jump cni-br-iface-abc-eth0-mac comment \"macspoofchk-abc-eth0 net={net}\"\n\
             add rule bridge nat cni-br-iface-abc-eth0-mac ether saddr 02:11:22:33:44:55 return comment \"macspoofchk-abc-eth0\"\n\
             add rule bridge nat cni-br-iface-abc-eth0-mac drop comment \"macspoofchk-abc-eth0\"\n"
            )
        );
    }

    #[test]
    fn attachments_carry_the_network_tag_of_their_chains() {
        let tagged = TABLE.replace(
            r#""handle": 5, "comment": "macspoofchk-abc-eth0""#,
            &format!(
                r#""handle": 5, "comment": "macspoofchk-abc-eth0 net={}""#,
                crate::masquerade::hash_for_network("blue")
            ),
        );
        let doc: Value = serde_json::from_str(&tagged).unwrap();
        let found = attachments(&doc, "t").unwrap();
        assert_eq!(
            found[0].network_hash.as_deref(),
            Some(crate::masquerade::hash_for_network("blue").as_str())
        );
        assert!(found[0].may_belong_to("blue") && !found[0].may_belong_to("red"));
        assert!(found[1].network_hash.is_none() && found[1].may_belong_to("red"));
    }

    #[test]
    fn setup_script_deletes_stale_jump_rules_before_adding_the_new_one() {
        let s = setup_script("veth123", "02:AA:22:33:44:55", "abc-eth0", "n", &[4, 17]).unwrap();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[6], "delete rule bridge nat PREROUTING handle 4");
        assert_eq!(lines[7], "delete rule bridge nat PREROUTING handle 17");
        assert!(lines[8].starts_with("add rule bridge nat PREROUTING iifname"));
        assert!(s.contains("ether saddr 02:aa:22:33:44:55 return"), "{s}");
    }

    #[test]
    fn setup_script_refuses_unsafe_interface_names_ref_ids_and_macs() {
        let ok_mac = "02:11:22:33:44:55";
        for (host_if, mac, id) in [
            ("veth\"1", ok_mac, "abc-eth0"),
            ("veth*", ok_mac, "abc-eth0"),
            ("veth1\nflush ruleset", ok_mac, "abc-eth0"),
            ("veth1", ok_mac, "abc eth0"),
            ("veth1", ok_mac, "abc-eth0;flush ruleset"),
            ("veth1", ok_mac, ""),
            ("veth1", "02:11:22:33:44", "abc-eth0"),
            ("veth1", "02:11:22:33:44:5g", "abc-eth0"),
            ("veth1", "02:11:22:33:44:55\"", "abc-eth0"),
        ] {
            let e = setup_script(host_if, mac, id, "n", &[]).unwrap_err();
            assert!(
                matches!(e, Error::Invalid { .. }),
                "{host_if:?} {mac:?} {id:?}: {e:?}"
            );
        }
    }

    #[test]
    fn setup_finds_stale_base_rules_by_comment_or_jump_target() {
        let doc: Value = serde_json::from_str(TABLE).unwrap();
        assert_eq!(base_rule_handles(&doc, "abc-eth0", "t").unwrap(), vec![4]);
        assert_eq!(base_rule_handles(&doc, "def-net1", "t").unwrap(), vec![10]);
        assert!(base_rule_handles(&doc, "ghi-eth0", "t").unwrap().is_empty());
        assert!(base_rule_handles(&doc, "abc-eth", "t").unwrap().is_empty());
    }

    #[test]
    fn teardown_script_deletes_the_jump_rule_then_flushes_and_deletes_both_chains() {
        let doc: Value = serde_json::from_str(TABLE).unwrap();
        assert_eq!(
            teardown_script(&doc, "abc-eth0", "t").unwrap(),
            "delete rule bridge nat PREROUTING handle 4\n\
             flush chain bridge nat cni-br-iface-abc-eth0\n\
             flush chain bridge nat cni-br-iface-abc-eth0-mac\n\
             delete chain bridge nat cni-br-iface-abc-eth0\n\
             delete chain bridge nat cni-br-iface-abc-eth0-mac\n"
        );
    }

    #[test]
    fn teardown_script_touches_only_what_is_still_there() {
        let doc: Value = serde_json::from_str(TABLE).unwrap();
        assert_eq!(
            teardown_script(&doc, "ghi-eth0", "t").unwrap(),
            "flush chain bridge nat cni-br-iface-ghi-eth0\n\
             delete chain bridge nat cni-br-iface-ghi-eth0\n"
        );
        assert_eq!(teardown_script(&doc, "gone-eth0", "t").unwrap(), "");
    }

    #[test]
    fn attachments_lists_iface_chains_with_their_host_interfaces() {
        let doc: Value = serde_json::from_str(TABLE).unwrap();
        assert_eq!(
            attachments(&doc, "t").unwrap(),
            vec![
                Attachment {
                    ref_id: "abc-eth0".into(),
                    host_if: Some("veth123".into()),
                    network_hash: None,
                },
                Attachment {
                    ref_id: "def-net1".into(),
                    host_if: Some("veth456".into()),
                    network_hash: None,
                },
                Attachment {
                    ref_id: "ghi-eth0".into(),
                    host_if: None,
                    network_hash: None,
                },
            ]
        );
    }

    #[test]
    fn attachments_keep_a_mac_chain_whose_iface_chain_is_gone() {
        let doc: Value = serde_json::from_str(
            r#"{"nftables": [{"chain": {"family": "bridge", "table": "nat", "name": "cni-br-iface-x-eth0-mac", "handle": 3}}, {"chain": {"family": "bridge", "table": "nat", "name": "other", "handle": 4}}]}"#,
        )
        .unwrap();
        assert_eq!(
            attachments(&doc, "t").unwrap(),
            vec![Attachment {
                ref_id: "x-eth0-mac".into(),
                host_if: None,
                network_hash: None,
            }]
        );
    }
}
