//! DEL: the IPAM plugin's DEL first on a localnet network that has one (while the container
//! interface still exists: dhcp sends its RELEASE from it), then the br-int port and the
//! container interface of this attachment, then its hold on the logical port. Best effort and idempotent: what is already gone is fine (also CNI_NETNS), and
//! every step is tried even when an earlier one failed.

use cni::{Call, Error};
use netlink::Netlink;

use crate::conf::{OvnConf, Topology, Who};
use crate::nb::Nb;
use crate::node::Ovs;
use crate::{names, port};

pub fn del(call: &Call, default_topology: Option<Topology>) -> Result<(), Error> {
    let conf = OvnConf::for_teardown(call, default_topology)?;
    let who = Who::from_call(call);
    let mut errors = Vec::new();
    if let Some(t) = &conf.ipam {
        // An IPAM plugin that is not installed cannot hold anything for this attachment.
        if cni::delegate::find(t, &call.env.path).is_ok() {
            if let Err(e) = cni::delegate::ipam_forward(call, cni::Command::Del) {
                errors.push(e);
            }
        }
    }
    let mut chassis = None;
    match Ovs::connect(&conf).and_then(|mut ovs| {
        let info = ovs.info()?;
        chassis = Some(info.chassis.clone());
        remove_node_ports(&mut ovs, &conf, &who)
    }) {
        Ok(()) => {}
        Err(e) => errors.push(e),
    }
    if let Err(e) = remove_container_link(call) {
        errors.push(e);
    }
    if let Some(chassis) = chassis.filter(|c| !c.is_empty()) {
        if let Err(e) = release_logical_port(&conf, &who, &chassis) {
            errors.push(e);
        }
    }
    Error::joined(errors)
}

/// This attachment's ports on br-int (found by their external_ids, so also after a reboot
/// renamed nothing) and their host veths.
pub fn remove_node_ports(ovs: &mut Ovs, conf: &OvnConf, who: &Who) -> Result<(), Error> {
    let node = Netlink::connect().map_err(port::kernel)?;
    for p in ovs.ports_of(&conf.network)? {
        let mine = p.external_ids.get("sandbox") == Some(&who.container_id)
            && p.external_ids.get(names::EXT_IFACE_IFNAME) == Some(&who.ifname);
        if !mine {
            continue;
        }
        ovs.del_port(&p.name)?;
        if let Some(link) = node.link_by_name(&p.name).map_err(port::kernel)? {
            node.del_link(link.index, &link.name)
                .map_err(port::kernel)?;
        }
    }
    Ok(())
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
        netlink::ContainerLinkError::Kernel(e) => port::kernel(e),
    })
}

/// This attachment's hold on its logical port (found by name, else by holder).
fn release_logical_port(conf: &OvnConf, who: &Who, chassis: &str) -> Result<(), Error> {
    let mut nb = Nb::connect(conf)?;
    let Some(snap) = nb.snapshot(&names::switch_name(conf))? else {
        return Ok(());
    };
    let token = who.token();
    let name = names::port_name(conf, who, conf.persistent_key().as_deref());
    let port = snap
        .port(&name)
        .filter(|p| p.holder(chassis) == Some(token.as_str()))
        .or_else(|| snap.held_by(chassis, &token))
        .cloned();
    match port {
        Some(p) => port::release(&mut nb, &snap, &p, chassis, &token),
        None => Ok(()),
    }
}
