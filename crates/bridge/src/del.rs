//! DEL: the container interface (its host peer goes with it), then IPAM (after the link, so
//! the address is not handed out while still configured), then the attachment's rules, also
//! when the namespace is already gone (the reference returns early there, #810). Best effort:
//! every step is tried, what is already gone is fine, failures are reported together.

use cni::{Call, Command, Error};
use netns::NetNs;

use crate::conf::BridgeConf;
use crate::node::{self, kernel};

pub fn del(call: &Call) -> Result<(), Error> {
    let conf = BridgeConf::from_call(call)?;
    let mut errors = Vec::new();
    if let Err(e) = remove_container_link(call) {
        errors.push(e);
    }
    if conf.ipam.is_some() {
        if let Err(e) = cni::delegate::ipam_forward(call, Command::Del) {
            errors.push(e);
        }
    }
    remove_rules(call, &conf, &mut errors);
    node::joined(errors)
}

/// Deletes CNI_IFNAME in CNI_NETNS when both still exist.
fn remove_container_link(call: &Call) -> Result<(), Error> {
    let Some(path) = &call.env.netns else {
        return Ok(());
    };
    let ns = match NetNs::open(path) {
        Ok(ns) => ns,
        Err(netns::Error::NotFound { .. }) => return Ok(()),
        Err(e) => {
            return Err(Error::invalid_env(format!(
                "CNI_NETNS={}: {e}",
                path.display()
            )))
        }
    };
    let nl = node::container_netlink(&ns)?;
    let Some(link) = nl.link_by_name(&call.env.ifname).map_err(kernel)? else {
        return Ok(());
    };
    if !link.is_veth() {
        // Not ours: a bridge attachment's container end is always a veth.
        return Ok(());
    }
    nl.del_link(link.index, &link.name)
        .map(|_| ())
        .map_err(kernel)
}

/// The spoof-check chains and masquerade rules of this attachment. Without an `nft` program
/// there is nothing this plugin could have installed (nor can it look): that is not a failure,
/// as in the reference, which only logs its teardown errors.
pub fn remove_rules(call: &Call, conf: &BridgeConf, errors: &mut Vec<Error>) {
    let nft = nft::Nft::new();
    let mut keep = |r: Result<(), nft::Error>| match r {
        Ok(()) | Err(nft::Error::Spawn { .. }) => {}
        Err(e) => errors.push(node::nft(e)),
    };
    if conf.mac_spoof_check {
        let id = nft::spoofcheck::ref_id(&call.env.container_id, &call.env.ifname);
        keep(nft::spoofcheck::teardown(&nft, &id));
    }
    if conf.ip_masq.is_some() {
        let (cid, ifname) = (&call.env.container_id, &call.env.ifname);
        keep(nft::masquerade::teardown(&nft, &conf.network, ifname, cid));
    }
}
