//! DEL: the container interface (its host peer goes with it), then IPAM (after the link, so
//! the address is not handed out while still configured), then the attachment's rules, also
//! when the namespace is already gone (the reference returns early there, #810). Best effort:
//! every step is tried, what is already gone is fine, failures are reported together.

use cni::{Call, Command, Error};

use crate::conf::Teardown;
use crate::node::{self, kernel};

pub fn del(call: &Call) -> Result<(), Error> {
    let conf = Teardown::from_call(call);
    let mut errors = Vec::new();
    if let Err(e) = remove_container_link(call) {
        errors.push(e);
    }
    if ipam_present(call, &conf) {
        if let Err(e) = cni::delegate::ipam_forward(call, Command::Del) {
            errors.push(e);
        }
    }
    remove_rules(call, &conf, &mut errors);
    Error::joined(errors)
}

/// Deletes CNI_IFNAME in CNI_NETNS when both still exist.
fn remove_container_link(call: &Call) -> Result<(), Error> {
    let Some(path) = &call.env.netns else {
        return Ok(());
    };
    netlink::del_container_veth(path, &call.env.ifname).map_err(|e| match e {
        netlink::ContainerLinkError::Netns(e) => {
            Error::invalid_env(format!("CNI_NETNS={}: {e}", path.display()))
        }
        netlink::ContainerLinkError::Kernel(e) => kernel(e),
    })
}

/// The spoof-check chains and masquerade rules of this attachment. Without an `nft` program
/// there is nothing this plugin could have installed (nor can it look): that is not a failure,
/// as in the reference, which only logs its teardown errors.
pub fn remove_rules(call: &Call, conf: &Teardown, errors: &mut Vec<Error>) {
    let nft = nft::Nft::new();
    let mut keep = |r: Result<(), nft::Error>| match r {
        Ok(()) | Err(nft::Error::Spawn { .. }) => {}
        Err(e) => errors.push(node::nft(e)),
    };
    if conf.mac_spoof_check {
        let id = nft::spoofcheck::ref_id(&call.env.container_id, &call.env.ifname);
        keep(nft::spoofcheck::teardown(&nft, &id));
    }
    if conf.ip_masq {
        let (cid, ifname) = (&call.env.container_id, &call.env.ifname);
        keep(nft::masquerade::teardown(&nft, &conf.network, ifname, cid));
    }
}

/// Whether the IPAM plugin is there to forward a teardown to. One that is not in CNI_PATH (an
/// ADD with it was refused, or it was uninstalled) holds nothing this call could release: that
/// is logged, and the teardown goes on without it.
pub fn ipam_present(call: &Call, conf: &Teardown) -> bool {
    let Some(name) = &conf.ipam else {
        return false;
    };
    match cni::delegate::find(name, &call.env.path) {
        Ok(_) => true,
        Err(e) => {
            cni::log_warn!("{}: skipping IPAM: {}", call.env.command.as_str(), e.msg);
            false
        }
    }
}
