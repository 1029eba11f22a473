//! GC and STATUS, which the reference does not implement (plugins#1013, #1047).
//!
//! GC removes, for attachments of this network missing from `cni.dev/valid-attachments`: host
//! veths on the bridge tagged with their owner (see `node::owner_alias`), masquerade rules
//! (by the network's hash), spoof-check chains whose host veth is gone or is such a stale port;
//! then forwards GC to IPAM.

use std::collections::HashSet;

use cni::{Call, Command, Error};

use crate::conf::{BridgeConf, Teardown};
use crate::node::{self, kernel};

pub fn gc(call: &Call) -> Result<(), Error> {
    let conf = Teardown::from_call(call);
    let valid: HashSet<(String, String)> = call
        .conf
        .valid_attachments
        .iter()
        .map(|a| (a.container_id.clone(), a.ifname.clone()))
        .collect();
    let mut errors = Vec::new();
    let nft = nft::Nft::new();
    // The spoof-check chains are listed before the links: an ADD makes its veth before its
    // chains, so every chain seen here has its veth in the listing below, also when that ADD
    // (of this network or another) runs right now. Listed the other way round, a concurrent
    // ADD's fresh chains looked orphaned and were removed.
    let chains = if nft.is_available() {
        Some(nft::spoofcheck::list(&nft))
    } else {
        None
    };
    let nl = node::node_netlink()?;
    let links = nl.links().map_err(kernel)?;
    let bridge = links
        .iter()
        .find(|l| l.name == conf.bridge && l.is_bridge());

    // Host veths of stale attachments of this network.
    let mut stale_ports = HashSet::new();
    if let Some(br) = bridge {
        for port in links
            .iter()
            .filter(|l| l.master == Some(br.index) && l.is_veth())
        {
            let Some(alias) = &port.alias else { continue };
            let Some((cid, ifname, _)) = node::parse_owner(alias) else {
                continue;
            };
            if node::owner_alias(&conf.network, &cid, &ifname) != *alias
                || valid.contains(&(cid, ifname))
            {
                continue;
            }
            match nl.del_link(port.index, &port.name) {
                Ok(_) => {
                    stale_ports.insert(port.name.clone());
                }
                Err(e) => errors.push(kernel(e)),
            }
        }
    }

    if let Some(chains) = chains {
        match chains {
            Ok(found) => {
                let present: HashSet<&str> = links.iter().map(|l| l.name.as_str()).collect();
                let valid_ids: HashSet<String> = valid
                    .iter()
                    .map(|(c, i)| nft::spoofcheck::ref_id(c, i))
                    .collect();
                for a in found {
                    // Another network's chains are its own GC's to judge.
                    if valid_ids.contains(&a.ref_id) || !a.may_belong_to(&conf.network) {
                        continue;
                    }
                    let orphan = match &a.host_if {
                        None => true,
                        Some(h) => !present.contains(h.as_str()) || stale_ports.contains(h),
                    };
                    if orphan {
                        if let Err(e) = nft::spoofcheck::teardown(&nft, &a.ref_id) {
                            errors.push(node::nft(e));
                        }
                    }
                }
            }
            Err(e) => errors.push(node::nft(e)),
        }
        let pairs: Vec<(String, String)> = valid.iter().cloned().collect();
        if let Err(e) = nft::masquerade::gc(&nft, &conf.network, &pairs) {
            errors.push(node::nft(e));
        }
    } else if conf.mac_spoof_check || conf.ip_masq {
        errors.push(nft_missing());
    }

    if crate::del::ipam_present(call, &conf) {
        if let Err(e) = cni::delegate::ipam_forward(call, Command::Gc) {
            errors.push(e);
        }
    }
    Error::joined(errors)
}

/// STATUS: the bridge name is usable (missing is fine: ADD creates it), nft exists when rules
/// are configured, and IPAM answers STATUS.
pub fn status(call: &Call) -> Result<(), Error> {
    let conf = BridgeConf::from_call(call)?;
    let nl = node::node_netlink().map_err(|e| Error::not_available(e.msg))?;
    if let Some(l) = nl
        .link_by_name(&conf.bridge)
        .map_err(|e| Error::not_available(e.to_string()))?
    {
        if !l.is_bridge() {
            return Err(Error::not_available(format!(
                "bridge {:?}: a link of that name exists and is not a bridge",
                conf.bridge
            )));
        }
    }
    if (conf.mac_spoof_check || conf.ip_masq.is_some()) && !nft::Nft::new().is_available() {
        return Err(Error::not_available(nft_missing().msg));
    }
    if conf.ipam.is_some() {
        cni::delegate::ipam_forward(call, Command::Status)?;
    }
    Ok(())
}

fn nft_missing() -> Error {
    Error::not_available("macspoofchk and ipMasq need the nft command (Debian package nftables), which is not installed")
}
