//! GC and STATUS. GC removes, on this node (chassis), the br-int ports and logical-port holds
//! of this network whose attachment is not among `cni.dev/valid-attachments` (OVN-Kubernetes'
//! GC does nothing and relies on its controllers; ovs-cni leaks ports, #220/#258). STATUS is
//! code 50 when the northbound DB, this node's OVS or its chassis registration is missing.

use std::collections::HashSet;

use cni::{Call, Error};
use netlink::Netlink;

use crate::conf::{OvnConf, Topology};
use crate::nb::Nb;
use crate::node::Ovs;
use crate::{names, port};

pub fn gc(call: &Call, default_topology: Option<Topology>) -> Result<(), Error> {
    let conf = OvnConf::for_teardown(call, default_topology)?;
    let valid: HashSet<(String, String)> = call
        .conf
        .valid_attachments
        .iter()
        .map(|a| (a.container_id.clone(), a.ifname.clone()))
        .collect();
    let mut errors = Vec::new();
    let mut ovs = Ovs::connect(&conf)?;
    let info = ovs.info()?;
    let node = Netlink::connect().map_err(port::kernel)?;
    let mut freed = 0;
    for p in ovs.ports_of(&conf.network)? {
        let cid = p.external_ids.get("sandbox").cloned().unwrap_or_default();
        let ifname = p
            .external_ids
            .get(names::EXT_IFACE_IFNAME)
            .cloned()
            .unwrap_or_default();
        if valid.contains(&(cid, ifname)) {
            continue;
        }
        if let Err(e) = ovs.del_port(&p.name) {
            errors.push(e);
            continue;
        }
        freed += 1;
        match node.link_by_name(&p.name) {
            Ok(Some(link)) => {
                if let Err(e) = node.del_link(link.index, &link.name) {
                    errors.push(port::kernel(e));
                }
            }
            Ok(None) => {}
            Err(e) => errors.push(port::kernel(e)),
        }
    }
    if !info.chassis.is_empty() {
        let mut nb = Nb::connect(&conf)?;
        if let Some(snap) = nb.snapshot(&names::switch_name(&conf))? {
            for p in &snap.ports {
                let Some(token) = p.holder(&info.chassis) else {
                    continue;
                };
                let Some((cid, ifname)) = token.split_once(' ') else {
                    continue;
                };
                if valid.contains(&(cid.to_string(), ifname.to_string())) {
                    continue;
                }
                let token = token.to_string();
                if let Err(e) = port::release(&mut nb, &snap, p, &info.chassis, &token) {
                    errors.push(e);
                }
            }
        }
    }
    cni::log::write(
        cni::log::Level::Info,
        format_args!(
            "GC of network {}: removed {freed} stale port(s) on chassis {}",
            conf.network, info.chassis
        ),
    );
    Error::joined(errors)
}

pub fn status(call: &Call, default_topology: Option<Topology>) -> Result<(), Error> {
    let mut conf = OvnConf::from_call(call, default_topology)?;
    let unavailable = |e: Error| Error::not_available(e.msg);
    let mut ovs = Ovs::connect(&conf).map_err(unavailable)?;
    let info = ovs.info().map_err(unavailable)?;
    port::check_node(&mut conf, &info, &ovs.endpoint).map_err(unavailable)?;
    let mut nb = Nb::connect(&conf).map_err(unavailable)?;
    nb.client.echo().map_err(|e| {
        Error::not_available(format!(
            "the OVN northbound DB at {} does not answer: {e}",
            conf.nbdb
        ))
    })?;
    Ok(())
}
