//! CHECK: the attachment described by prevResult is still in place. IPAM CHECK only in L3 mode
//! (the reference delegates to an empty IPAM type and so fails every L2 CHECK).

use std::collections::HashSet;

use cni::{code, Call, CniResult, Command, Error};
use netlink::{Link, Netlink};

use crate::conf::BridgeConf;
use crate::node::{self, kernel};

fn failed(msg: impl Into<String>) -> Error {
    Error::new(code::CHECK_FAILED, msg)
}

pub fn check(call: &Call) -> Result<(), Error> {
    let conf = BridgeConf::from_call(call)?;
    if conf.ipam.is_some() {
        cni::delegate::ipam_forward(call, Command::Check)?;
    }
    let prev = call
        .conf
        .prev_result()?
        .ok_or_else(|| Error::invalid_config("prevResult is required for CHECK"))?;
    let ns = node::open_netns(call)?;
    let sandbox = ns.path().display().to_string();
    let node_nl = node::node_netlink()?;
    let cont_nl = node::container_netlink(&ns)?;

    let bridge = check_bridge(&node_nl, &conf)?;
    let cont = check_container(&cont_nl, call, &prev, &sandbox)?;
    check_host_veth(&node_nl, &prev, &conf, &bridge, &cont)?;
    check_addresses(&cont_nl, &cont, &prev)?;
    check_routes(&cont_nl, &prev)?;
    if conf.mac_spoof_check {
        let id = nft::spoofcheck::ref_id(&call.env.container_id, &call.env.ifname);
        let found = nft::spoofcheck::list(&nft::Nft::new()).map_err(node::nft)?;
        if !found.iter().any(|a| a.ref_id == id) {
            return Err(failed(format!(
                "MAC spoof check chain cni-br-iface-{id} is missing"
            )));
        }
    }
    Ok(())
}

fn check_bridge(nl: &Netlink, conf: &BridgeConf) -> Result<Link, Error> {
    let br = nl
        .link_by_name(&conf.bridge)
        .map_err(kernel)?
        .ok_or_else(|| failed(format!("bridge {} not found", conf.bridge)))?;
    if !br.is_bridge() {
        return Err(failed(format!("{} is not a bridge", conf.bridge)));
    }
    // The bridge's MAC is not compared: unless a gateway pinned it, the kernel changes it as
    // ports come and go, and the reference's CHECK fails spuriously for that.
    if br.promisc != conf.promisc {
        return Err(failed(format!(
            "bridge {} promiscuous mode is {} but promiscMode is {}",
            conf.bridge, br.promisc, conf.promisc
        )));
    }
    Ok(br)
}

fn check_container(
    nl: &Netlink,
    call: &Call,
    prev: &CniResult,
    sandbox: &str,
) -> Result<Link, Error> {
    let ifname = &call.env.ifname;
    let entry = prev
        .interfaces
        .iter()
        .find(|i| &i.name == ifname && i.sandbox.is_some())
        .ok_or_else(|| failed(format!("prevResult has no interface {ifname} in a sandbox")))?;
    if entry.sandbox.as_deref() != Some(sandbox) {
        return Err(failed(format!(
            "prevResult puts {ifname} in sandbox {:?}, not in CNI_NETNS {sandbox}",
            entry.sandbox.as_deref().unwrap_or_default()
        )));
    }
    let link = nl
        .link_by_name(ifname)
        .map_err(kernel)?
        .ok_or_else(|| failed(format!("interface {ifname} not found in the container")))?;
    if !link.is_veth() {
        return Err(failed(format!(
            "container interface {ifname} is not a veth"
        )));
    }
    if let Some(want) = &entry.mac {
        let have = link.mac.map(|m| m.to_string()).unwrap_or_default();
        if !want.eq_ignore_ascii_case(&have) {
            return Err(failed(format!(
                "container interface {ifname} has MAC {have}, prevResult says {want}"
            )));
        }
    }
    Ok(link)
}

fn check_host_veth(
    nl: &Netlink,
    prev: &CniResult,
    conf: &BridgeConf,
    br: &Link,
    cont: &Link,
) -> Result<(), Error> {
    let peer = cont
        .peer_index
        .and_then(|i| nl.link_by_index(i).ok().flatten())
        .filter(|l| l.is_veth() && l.peer_index == Some(cont.index));
    let Some(host) = peer else {
        return Err(failed(format!("the host end of {} is gone", cont.name)));
    };
    if host.master != Some(br.index) {
        return Err(failed(format!(
            "host veth {} is not a port of bridge {}",
            host.name, conf.bridge
        )));
    }
    let listed = prev
        .interfaces
        .iter()
        .find(|i| i.name == host.name && i.sandbox.is_none());
    let Some(listed) = listed else {
        return Err(failed(format!(
            "host veth {} is not the one prevResult names",
            host.name
        )));
    };
    if let (Some(want), Some(have)) = (&listed.mac, host.mac) {
        if !want.eq_ignore_ascii_case(&have.to_string()) {
            return Err(failed(format!(
                "host veth {} has MAC {have}, prevResult says {want}",
                host.name
            )));
        }
    }
    Ok(())
}

fn check_addresses(nl: &Netlink, cont: &Link, prev: &CniResult) -> Result<(), Error> {
    let have: HashSet<_> = nl
        .addresses(cont.index)
        .map_err(kernel)?
        .into_iter()
        .map(|a| a.net)
        .collect();
    for ip in &prev.ips {
        if !have.contains(&ip.address) {
            return Err(failed(format!(
                "address {} is missing from {}",
                ip.address, cont.name
            )));
        }
    }
    Ok(())
}

fn check_routes(nl: &Netlink, prev: &CniResult) -> Result<(), Error> {
    let routes = nl.routes().map_err(kernel)?;
    for r in &prev.routes {
        let found = routes
            .iter()
            .any(|x| x.dst == normalise(r.dst) && (r.gw.is_none() || x.gateway == r.gw));
        if !found {
            let via = r.gw.map(|g| format!(" via {g}")).unwrap_or_default();
            return Err(failed(format!(
                "route to {}{via} is missing in the container",
                r.dst
            )));
        }
    }
    Ok(())
}

fn normalise(n: ipnetwork::IpNetwork) -> ipnetwork::IpNetwork {
    ipnetwork::IpNetwork::new(n.network(), n.prefix()).unwrap_or(n)
}
