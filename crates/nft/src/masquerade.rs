//! IP masquerade: traffic from a container's addresses to anything outside
//! their subnet (and not multicast) leaves with the node's address.
//!
//! The layout is the reference plugin's nftables backend
//! (containernetworking/plugins, `pkg/ip/ipmasq_nftables_linux.go`), so each
//! finds and garbage-collects the other's rules:
//!
//! ```text
//! table inet cni_plugins_masquerade {
//!     comment "Masquerading for plugins from github.com/containernetworking/plugins"
//!     chain masq_checks {
//!         comment "Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet"
//!         ip saddr == 10.1.0.5 ip daddr != 10.1.0.0/24 masquerade comment "<comment>"
//!         ip6 saddr == fd00::5 ip6 daddr != fd00::/64 masquerade comment "<comment>"
//!     }
//!     chain postrouting {
//!         type nat hook postrouting priority srcnat;
//!         ip daddr == 224.0.0.0/4 return
//!         ip6 daddr == ff00::/8 return
//!         goto masq_checks
//!     }
//! }
//! ```
//!
//! Each rule's comment is [`comment`]: it starts with [`hash_for_instance`]
//! (which starts with [`hash_for_network`]), so the rules of one attachment,
//! or of one network, are found by comment prefix. One call to [`setup`]
//! takes all the addresses of an attachment (the reference takes one address
//! per call).

use std::collections::HashSet;

use ipnetwork::IpNetwork;
use serde_json::Value;
use sha2::{Digest, Sha512};

use crate::{quoted, rules as rule_views, Error, Nft};

const FAMILY_TABLE: &str = "inet cni_plugins_masquerade";
const TABLE_COMMENT: &str = "Masquerading for plugins from github.com/containernetworking/plugins";
const CHAIN: &str = "masq_checks";
const CHAIN_COMMENT: &str =
    "Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet";
const POSTROUTING: &str = "postrouting";
/// knftables.CommentLengthMax; nft refuses longer comments.
const COMMENT_LENGTH_MAX: usize = 128;

/// The first `len` hex digits of SHA-512 of `data`
/// (utils.MustFormatHashWithPrefix with no prefix).
fn hash_prefix(data: &str, len: usize) -> String {
    let digest = Sha512::digest(data.as_bytes());
    let mut hex = String::with_capacity(digest.len() * 2);
    for byte in digest.iter() {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex.truncate(len);
    hex
}

/// The first 16 hex characters of lowercase hex(sha512(`network`)): the
/// prefix of the comment of every rule of the network.
pub fn hash_for_network(network: &str) -> String {
    hash_prefix(network, 16)
}

/// `hash_for_network(network) + "-" +` the first 16 hex characters of
/// hex(sha512(`ifname:container_id`)): the prefix of the comment of every rule
/// of one attachment.
pub fn hash_for_instance(network: &str, ifname: &str, container_id: &str) -> String {
    format!(
        "{}-{}",
        hash_for_network(network),
        hash_prefix(&format!("{ifname}:{container_id}"), 16)
    )
}

/// The comment of an attachment's rules (the reference's commentForInstance):
/// `"<hash_for_instance>, net: <network>, if: <ifname>, id: <container_id>"`
/// with double quotes removed from the three names, cut to 128 bytes (at a
/// character boundary, where the reference would cut inside a multi-byte
/// character).
pub fn comment(network: &str, ifname: &str, container_id: &str) -> String {
    let mut c = format!(
        "{}, net: {}, if: {}, id: {}",
        hash_for_instance(network, ifname, container_id),
        network.replace('"', ""),
        ifname.replace('"', ""),
        container_id.replace('"', ""),
    );
    if c.len() > COMMENT_LENGTH_MAX {
        let mut end = COMMENT_LENGTH_MAX;
        while !c.is_char_boundary(end) {
            end -= 1;
        }
        c.truncate(end);
    }
    c
}

/// One masquerade rule of a network, as found in `masq_checks`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The rule's handle (what deletes it).
    pub handle: u64,
    /// The rule's comment ([`comment`] of its attachment).
    pub comment: String,
    /// The source address it masquerades (`10.1.0.5`, `fd00::5`); empty when
    /// the rule has no `saddr` match.
    pub saddr: String,
}

/// The rules of `masq_checks` in a listing whose comment starts with `prefix`.
fn matching_rules(doc: &Value, prefix: &str, what: &str) -> Result<Vec<Rule>, Error> {
    Ok(rule_views(doc, what)?
        .into_iter()
        .filter(|r| r.chain == CHAIN)
        .filter_map(|r| {
            let comment = r.comment?;
            comment.starts_with(prefix).then(|| Rule {
                handle: r.handle,
                comment: comment.to_string(),
                saddr: crate::saddr(r.expr).unwrap_or_default(),
            })
        })
        .collect())
}

/// The rules of `masq_checks` whose comment starts with `prefix`; empty when
/// the table or chain is missing.
fn find(nft: &Nft, prefix: &str) -> Result<Vec<Rule>, Error> {
    let what = "chain inet cni_plugins_masquerade masq_checks";
    match nft.list_json(&["chain", "inet", "cni_plugins_masquerade", CHAIN])? {
        None => Ok(Vec::new()),
        Some(doc) => matching_rules(&doc, prefix, what),
    }
}

fn delete_lines(s: &mut String, handles: impl IntoIterator<Item = u64>) {
    for handle in handles {
        s.push_str(&format!(
            "delete rule {FAMILY_TABLE} {CHAIN} handle {handle}\n"
        ));
    }
}

/// The script of [`setup`]: `stale` are the handles of the attachment's
/// earlier rules, deleted in the same transaction.
pub(crate) fn setup_script(
    addresses: &[IpNetwork],
    network: &str,
    ifname: &str,
    container_id: &str,
    stale: &[u64],
) -> Result<String, Error> {
    let t = FAMILY_TABLE;
    let comment = quoted(
        &comment(network, ifname, container_id),
        "masquerade comment",
    )?;
    let mut s = String::new();
    s.push_str(&format!(
        "add table {t} {{ comment \"{TABLE_COMMENT}\" ; }}\n"
    ));
    s.push_str(&format!(
        "add chain {t} {CHAIN} {{ comment \"{CHAIN_COMMENT}\" ; }}\n"
    ));
    s.push_str(&format!(
        "add chain {t} {POSTROUTING} {{ type nat hook postrouting priority srcnat ; }}\n"
    ));
    s.push_str(&format!("flush chain {t} {POSTROUTING}\n"));
    s.push_str(&format!(
        "add rule {t} {POSTROUTING} ip daddr == 224.0.0.0/4 return\n"
    ));
    s.push_str(&format!(
        "add rule {t} {POSTROUTING} ip6 daddr == ff00::/8 return\n"
    ));
    s.push_str(&format!("add rule {t} {POSTROUTING} goto {CHAIN}\n"));
    delete_lines(&mut s, stale.iter().copied());
    let mut seen = HashSet::new();
    for addr in addresses {
        if !seen.insert(*addr) {
            continue;
        }
        let ip = match addr {
            IpNetwork::V4(_) => "ip",
            IpNetwork::V6(_) => "ip6",
        };
        s.push_str(&format!(
            "add rule {t} {CHAIN} {ip} saddr == {} {ip} daddr != {}/{} masquerade comment {comment}\n",
            addr.ip(),
            addr.network(),
            addr.prefix()
        ));
    }
    Ok(s)
}

/// One list (to find stale rules of this instance, by comment prefix =
/// [`hash_for_instance`]) + one transaction that deletes those and adds one
/// rule per address. `addresses` are interface addresses with prefix (e.g.
/// `10.1.0.5/24`); the rule masquerades traffic from the address to anything
/// outside that subnet.
pub fn setup(
    nft: &Nft,
    addresses: &[IpNetwork],
    network: &str,
    ifname: &str,
    container_id: &str,
) -> Result<(), Error> {
    // Refuse bad input before running anything.
    setup_script(addresses, network, ifname, container_id, &[])?;
    let purpose = format!("masquerade setup for {container_id}/{ifname} on network {network}");
    nft.list_plan_apply(&purpose, |nft| {
        let stale: Vec<u64> = find(nft, &hash_for_instance(network, ifname, container_id))?
            .into_iter()
            .map(|r| r.handle)
            .collect();
        setup_script(addresses, network, ifname, container_id, &stale).map(Some)
    })
}

/// Idempotent: deletes every rule of this instance; missing table/chain is
/// `Ok`.
pub fn teardown(nft: &Nft, network: &str, ifname: &str, container_id: &str) -> Result<(), Error> {
    let purpose = format!("masquerade teardown for {container_id}/{ifname} on network {network}");
    nft.list_plan_apply(&purpose, |nft| {
        let found = find(nft, &hash_for_instance(network, ifname, container_id))?;
        if found.is_empty() {
            return Ok(None);
        }
        let mut s = String::new();
        delete_lines(&mut s, found.iter().map(|r| r.handle));
        Ok(Some(s))
    })
}

/// The handles of the rules in `found` that belong to none of `valid`
/// (`(container_id, ifname)` pairs) of `network`.
fn invalid_handles(found: &[Rule], network: &str, valid: &[(String, String)]) -> Vec<u64> {
    let keep: HashSet<String> = valid
        .iter()
        .map(|(container_id, ifname)| comment(network, ifname, container_id))
        .collect();
    found
        .iter()
        .filter(|r| !keep.contains(&r.comment))
        .map(|r| r.handle)
        .collect()
}

/// Deletes every rule of `network` whose comment is not the comment of one of
/// `valid` `(container_id, ifname)` pairs; returns how many it deleted.
/// Missing table is `Ok(0)`.
pub fn gc(nft: &Nft, network: &str, valid: &[(String, String)]) -> Result<usize, Error> {
    let mut deleted = 0;
    nft.list_plan_apply(&format!("masquerade GC of network {network}"), |nft| {
        let found = rules(nft, network)?;
        let doomed = invalid_handles(&found, network, valid);
        deleted = doomed.len();
        if doomed.is_empty() {
            return Ok(None);
        }
        let mut s = String::new();
        delete_lines(&mut s, doomed.iter().copied());
        Ok(Some(s))
    })?;
    Ok(deleted)
}

/// The rules of `network` in `masq_checks` (by [`hash_for_network`] prefix),
/// in the chain's order; empty when the table or chain is missing.
pub fn rules(nft: &Nft, network: &str) -> Result<Vec<Rule>, Error> {
    find(nft, &format!("{}-", hash_for_network(network)))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Computed independently: printf '%s' 'mynet' | sha512sum | cut -c1-16
    const MYNET: &str = "d23676b4f2d9fe04";
    // printf '%s' 'eth0:abc123' | sha512sum | cut -c1-16
    const ETH0_ABC123: &str = "ebce0e3dd4dafae3";

    /// `nft -j list chain inet cni_plugins_masquerade masq_checks` with two
    /// rules of `mynet` (abc123/eth0, IPv4 and IPv6), one of another
    /// attachment of `mynet`, and one of another network (nft 1.0.6).
    fn listing() -> Value {
        let other_net = hash_for_network("othernet");
        let text = format!(
            r#"{{"nftables": [{{"metainfo": {{"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}}}, {{"chain": {{"family": "inet", "table": "cni_plugins_masquerade", "name": "masq_checks", "handle": 1}}}}, {{"rule": {{"family": "inet", "table": "cni_plugins_masquerade", "chain": "masq_checks", "handle": 6, "comment": "{a}", "expr": [{{"match": {{"op": "==", "left": {{"payload": {{"protocol": "ip", "field": "saddr"}}}}, "right": "10.1.0.5"}}}}, {{"match": {{"op": "!=", "left": {{"payload": {{"protocol": "ip", "field": "daddr"}}}}, "right": {{"prefix": {{"addr": "10.1.0.0", "len": 24}}}}}}}}, {{"masquerade": null}}]}}}}, {{"rule": {{"family": "inet", "table": "cni_plugins_masquerade", "chain": "masq_checks", "handle": 7, "comment": "{a}", "expr": [{{"match": {{"op": "==", "left": {{"payload": {{"protocol": "ip6", "field": "saddr"}}}}, "right": "fd00::5"}}}}, {{"match": {{"op": "!=", "left": {{"payload": {{"protocol": "ip6", "field": "daddr"}}}}, "right": {{"prefix": {{"addr": "fd00::", "len": 64}}}}}}}}, {{"masquerade": null}}]}}}}, {{"rule": {{"family": "inet", "table": "cni_plugins_masquerade", "chain": "masq_checks", "handle": 8, "comment": "{b}", "expr": [{{"match": {{"op": "==", "left": {{"payload": {{"protocol": "ip", "field": "saddr"}}}}, "right": "10.1.0.6"}}}}, {{"masquerade": null}}]}}}}, {{"rule": {{"family": "inet", "table": "cni_plugins_masquerade", "chain": "masq_checks", "handle": 9, "comment": "{other_net}-0000000000000000, net: othernet", "expr": [{{"match": {{"op": "==", "left": {{"payload": {{"protocol": "ip", "field": "saddr"}}}}, "right": "10.2.0.5"}}}}, {{"masquerade": null}}]}}}}]}}"#,
            a = comment("mynet", "eth0", "abc123"),
            b = comment("mynet", "eth0", "def456"),
        );
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn hash_for_network_is_the_first_16_hex_digits_of_sha512() {
        assert_eq!(hash_for_network("mynet"), MYNET);
        // printf '' | sha512sum
        assert_eq!(hash_for_network(""), "cf83e1357eefb8bd");
    }

    #[test]
    fn hash_for_instance_joins_network_hash_and_ifname_container_hash() {
        assert_eq!(
            hash_for_instance("mynet", "eth0", "abc123"),
            format!("{MYNET}-{ETH0_ABC123}")
        );
    }

    #[test]
    fn comment_has_hash_network_ifname_and_container_id() {
        assert_eq!(
            comment("mynet", "eth0", "abc123"),
            format!("{MYNET}-{ETH0_ABC123}, net: mynet, if: eth0, id: abc123")
        );
    }

    #[test]
    fn comment_removes_double_quotes_from_names_but_hashes_them_as_given() {
        let c = comment("my\"net", "eth0", "abc123");
        assert!(c.starts_with(&hash_for_network("my\"net")), "{c}");
        assert!(c.ends_with(", net: mynet, if: eth0, id: abc123"), "{c}");
        assert!(!c.contains('"'));
    }

    #[test]
    fn comment_is_cut_to_128_bytes() {
        let cid = "0123456789abcdef".repeat(4);
        let c = comment("a-rather-long-network-name", "eth0", &cid);
        assert_eq!(c.len(), 128);
        let full = format!(
            "{}, net: a-rather-long-network-name, if: eth0, id: {cid}",
            hash_for_instance("a-rather-long-network-name", "eth0", &cid)
        );
        assert_eq!(c, full[..128]);
    }

    #[test]
    fn comment_is_cut_at_a_character_boundary() {
        // 33 (hash) + 7 (", net: ") = 40 bytes, then 2-byte characters: byte
        // 128 falls inside one.
        let c = comment(&"é".repeat(60), "eth0", "abc");
        assert!(c.len() <= 128 && c.len() >= 127, "{}", c.len());
        assert!(c.ends_with('é'));
    }

    #[test]
    fn setup_script_matches_the_reference_layout() {
        let addrs: Vec<IpNetwork> = vec![
            "10.1.0.5/24".parse().unwrap(),
            "fd00::5/64".parse().unwrap(),
        ];
        let s = setup_script(&addrs, "mynet", "eth0", "abc123", &[6, 7]).unwrap();
        let c = comment("mynet", "eth0", "abc123");
        assert_eq!(
            s,
            format!(
                "add table inet cni_plugins_masquerade {{ comment \"Masquerading for plugins from github.com/containernetworking/plugins\" ; }}\n\
                 add chain inet cni_plugins_masquerade masq_checks {{ comment \"Masquerade traffic from certain IPs to any (non-multicast) IP outside their subnet\" ; }}\n\
                 add chain inet cni_plugins_masquerade postrouting {{ type nat hook postrouting priority srcnat ; }}\n\
                 flush chain inet cni_plugins_masquerade postrouting\n\
                 add rule inet cni_plugins_masquerade postrouting ip daddr == 224.0.0.0/4 return\n\
                 add rule inet cni_plugins_masquerade postrouting ip6 daddr == ff00::/8 return\n\
                 add rule inet cni_plugins_masquerade postrouting goto masq_checks\n\
                 delete rule inet cni_plugins_masquerade masq_checks handle 6\n\
                 delete rule inet cni_plugins_masquerade masq_checks handle 7\n\
                 add rule inet cni_plugins_masquerade masq_checks ip saddr == 10.1.0.5 ip daddr != 10.1.0.0/24 masquerade comment \"{c}\"\n\
                 add rule inet cni_plugins_masquerade masq_checks ip6 saddr == fd00::5 ip6 daddr != fd00::/64 masquerade comment \"{c}\"\n"
            )
        );
    }

    #[test]
    fn setup_script_writes_each_address_once() {
        let addrs: Vec<IpNetwork> = vec![
            "10.1.0.5/24".parse().unwrap(),
            "10.1.0.5/24".parse().unwrap(),
        ];
        let s = setup_script(&addrs, "mynet", "eth0", "abc123", &[]).unwrap();
        assert_eq!(s.matches("masquerade comment").count(), 1);
    }

    #[test]
    fn setup_script_refuses_a_comment_with_a_newline() {
        let addrs: Vec<IpNetwork> = vec!["10.1.0.5/24".parse().unwrap()];
        let e = setup_script(&addrs, "my\nnet", "eth0", "abc123", &[]).unwrap_err();
        assert!(matches!(e, Error::Invalid { .. }), "{e:?}");
    }

    #[test]
    fn rules_of_an_instance_are_found_by_its_hash_prefix() {
        let doc = listing();
        let found =
            matching_rules(&doc, &hash_for_instance("mynet", "eth0", "abc123"), "t").unwrap();
        let c = comment("mynet", "eth0", "abc123");
        assert_eq!(
            found,
            vec![
                Rule {
                    handle: 6,
                    comment: c.clone(),
                    saddr: "10.1.0.5".into()
                },
                Rule {
                    handle: 7,
                    comment: c,
                    saddr: "fd00::5".into()
                },
            ]
        );
    }

    #[test]
    fn rules_of_a_network_exclude_other_networks() {
        let doc = listing();
        let found = matching_rules(&doc, &format!("{MYNET}-"), "t").unwrap();
        let handles: Vec<u64> = found.iter().map(|r| r.handle).collect();
        assert_eq!(handles, vec![6, 7, 8]);
        assert_eq!(found[2].saddr, "10.1.0.6");
    }

    #[test]
    fn gc_selects_the_rules_of_attachments_not_in_the_valid_list() {
        let doc = listing();
        let found = matching_rules(&doc, &format!("{MYNET}-"), "t").unwrap();
        let valid = vec![("abc123".to_string(), "eth0".to_string())];
        assert_eq!(invalid_handles(&found, "mynet", &valid), vec![8]);
        assert_eq!(invalid_handles(&found, "mynet", &[]), vec![6, 7, 8]);
        let valid = vec![
            ("abc123".to_string(), "eth0".to_string()),
            ("def456".to_string(), "eth0".to_string()),
        ];
        assert!(invalid_handles(&found, "mynet", &valid).is_empty());
    }
}
