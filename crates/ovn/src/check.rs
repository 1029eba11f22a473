//! CHECK: the logical port is this attachment's on this chassis with the addresses of the
//! previous result, its br-int Interface is installed by ovn-controller, and the container
//! interface has the port's MAC and addresses. OVN-Kubernetes' CHECK does nothing.

use std::collections::BTreeSet;

use cni::{Call, Error};
use netlink::Netlink;
use netns::NetNs;

use crate::conf::{OvnConf, Topology, Who};
use crate::nb::Nb;
use crate::node::Ovs;
use crate::{names, port};

fn failed(msg: String) -> Error {
    Error::new(100, msg)
}

pub fn check(call: &Call, default_topology: Option<Topology>) -> Result<(), Error> {
    let conf = OvnConf::from_call(call, default_topology)?;
    let who = Who::from_call(call);
    let prev = call.conf.prev_result()?;
    let mut ovs = Ovs::connect(&conf)?;
    let info = ovs.info()?;
    let mut nb = Nb::connect(&conf)?;
    let switch = names::switch_name(&conf);
    let snap = nb
        .snapshot(&switch)?
        .ok_or_else(|| failed(format!("logical switch {switch} does not exist")))?;
    let token = who.token();
    let name = names::port_name(&conf, &who, conf.persistent_key().as_deref());
    let lsp = snap
        .port(&name)
        .filter(|p| p.holder(&info.chassis) == Some(token.as_str()))
        .or_else(|| snap.held_by(&info.chassis, &token))
        .cloned()
        .ok_or_else(|| {
            failed(format!(
                "no logical port of switch {switch} is held by {token:?} on chassis {}",
                info.chassis
            ))
        })?;
    if !lsp.chassis().contains(&info.chassis) {
        return Err(failed(format!(
            "logical port {} is not requested on chassis {} (options:requested-chassis={:?})",
            lsp.name,
            info.chassis,
            lsp.options.get("requested-chassis")
        )));
    }
    let nets = port::port_networks(&lsp, &conf);
    if conf.ipam.is_some() {
        cni::delegate::ipam_forward(call, cni::Command::Check)?;
    }
    // The port's own addresses (an IPAM plugin's are its to check).
    if let Some(prev) = prev.as_ref().filter(|_| conf.ipam.is_none()) {
        let want: BTreeSet<String> = prev.ips.iter().map(|i| i.address.to_string()).collect();
        let have: BTreeSet<String> = nets.iter().map(ToString::to_string).collect();
        if want != have {
            return Err(failed(format!(
                "logical port {} has addresses {have:?}, the previous result {want:?}",
                lsp.name
            )));
        }
    }
    let mine = ovs
        .ports_of(&conf.network)?
        .into_iter()
        .find(|p| {
            p.external_ids.get("sandbox") == Some(&who.container_id)
                && p.external_ids.get(names::EXT_IFACE_IFNAME) == Some(&who.ifname)
        })
        .ok_or_else(|| failed(format!("no br-int port on this node for {token:?}")))?;
    if mine.external_ids.get("iface-id") != Some(&lsp.name) {
        return Err(failed(format!(
            "br-int port {} has iface-id {:?}, expected {}",
            mine.name,
            mine.external_ids.get("iface-id"),
            lsp.name
        )));
    }
    if mine.external_ids.get("ovn-installed").map(String::as_str) != Some("true") {
        return Err(failed(format!(
            "br-int port {} is not installed by ovn-controller (no ovn-installed=true)",
            mine.name
        )));
    }
    let path = call
        .env
        .netns
        .as_ref()
        .ok_or_else(|| Error::invalid_env("CNI_NETNS is required"))?;
    let ns = NetNs::open(path)
        .map_err(|e| Error::invalid_env(format!("CNI_NETNS={}: {e}", path.display())))?;
    let nl = Netlink::connect_in(&ns).map_err(port::kernel)?;
    let link = nl
        .link_by_name(&who.ifname)
        .map_err(port::kernel)?
        .ok_or_else(|| failed(format!("the container has no interface {}", who.ifname)))?;
    let mac = link.mac.map(|m| m.to_string()).unwrap_or_default();
    if Some(mac.clone()) != lsp.mac() {
        return Err(failed(format!(
            "container interface {} has MAC {mac}, its logical port {:?}",
            who.ifname,
            lsp.mac()
        )));
    }
    let addrs: BTreeSet<String> = nl
        .addresses(link.index)
        .map_err(port::kernel)?
        .iter()
        .map(|a| a.net.to_string())
        .collect();
    for n in &nets {
        if !addrs.contains(&n.to_string()) {
            return Err(failed(format!(
                "container interface {} lacks address {n}",
                who.ifname
            )));
        }
    }
    // An IPAM plugin may lower it (dhcp: the server's option 26).
    let mtu_ok = link.mtu == conf.mtu || (conf.ipam.is_some() && link.mtu < conf.mtu);
    if !mtu_ok {
        return Err(failed(format!(
            "container interface {} has MTU {}, the network {}",
            who.ifname, link.mtu, conf.mtu
        )));
    }
    Ok(())
}
