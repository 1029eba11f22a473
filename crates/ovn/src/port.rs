//! What ADD, DEL, CHECK and GC share: node checks, error mapping, and releasing an
//! attachment's hold on its logical port (the port goes when nobody holds it, unless it
//! carries a persistent-IP claim: then it is parked, unbound, keeping its MAC and IPs).

use std::collections::BTreeMap;

use cni::Error;
use ipnetwork::IpNetwork;
use serde_json::Value;

use crate::conf::{OvnConf, Topology};
use crate::names;
use crate::nb::{Nb, Port, Snapshot};
use crate::node::NodeInfo;

/// A kernel failure.
pub fn kernel(e: netlink::Error) -> Error {
    Error::internal(e.to_string())
}

/// A string map as an OVSDB value.
pub fn map_value(m: &BTreeMap<String, String>) -> Value {
    let v: Vec<(&str, &str)> = m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    ovsdb::value::str_map(&v)
}

/// Connects to NB once, lazily.
pub fn nb_conn<'a>(slot: &'a mut Option<Nb>, conf: &OvnConf) -> Result<&'a mut Nb, Error> {
    if slot.is_none() {
        *slot = Some(Nb::connect(conf)?);
    }
    Ok(slot.as_mut().expect("just set"))
}

/// The node can take a port of this network: a chassis name, br-int, and for localnet the
/// bridge mapping of the physical network (ovn-controller would only log its absence, and the
/// VM would sit on a switch that reaches nothing: OVN-Kubernetes #1446, fail-fast in #5145).
///
/// Which physical network a localnet NAD means: `physicalNetworkName` when written, else the
/// network's `name` (OVN-Kubernetes), else, when only it is mapped on this node, the name part of
/// `netAttachDefName`: the documentation's example (`"name": "ovn-localnet"`,
/// `"netAttachDefName": "my-vm-namespace/br0-network"`, mapping `br0-network`) calls
/// netAttachDefName the "reference to the localnet mapping name defined in the NNCP".
pub fn check_node(conf: &mut OvnConf, info: &NodeInfo, endpoint: &str) -> Result<(), Error> {
    if conf.topology == Topology::Localnet
        && !conf.physical_network_explicit
        && !info.mappings.contains_key(&conf.physical_network)
    {
        let nad_name = conf.nad.rsplit('/').next().unwrap_or_default().to_string();
        if info.mappings.contains_key(&nad_name) {
            conf.physical_network = nad_name;
        }
    }
    if info.chassis.is_empty() {
        return Err(Error::try_again_later(format!(
            "this node has no OVN chassis name: Open_vSwitch external_ids:system-id is not set in {endpoint}"
        )));
    }
    if info.br_int.is_none() {
        return Err(Error::try_again_later(format!(
            "this node has no br-int in {endpoint}: is ovn-controller running (it creates br-int)?"
        )));
    }
    if conf.topology == Topology::Localnet && !info.mappings.contains_key(&conf.physical_network) {
        let have: Vec<String> = info
            .mappings
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect();
        return Err(Error::invalid_config(format!(
            "physical network {:?} has no OVN bridge mapping on this node (chassis {}): add \
             ovn-bridge-mappings={}:<OVS bridge> (NMState: ovn.bridge-mappings: [{{localnet: {}, bridge: <OVS bridge>}}]); \
             this node maps {}",
            conf.physical_network,
            info.chassis,
            conf.physical_network,
            conf.physical_network,
            if have.is_empty() { "nothing".to_string() } else { have.join(",") }
        )));
    }
    Ok(())
}

/// The port's addresses with the prefix length of the subnet each belongs to (a /32 or /128
/// when none does: a port written by hand).
pub fn port_networks(port: &Port, conf: &OvnConf) -> Vec<IpNetwork> {
    port.ips()
        .into_iter()
        .map(|ip| {
            let len = conf
                .subnets
                .iter()
                .find(|s| s.contains(ip))
                .map(IpNetwork::prefix)
                .unwrap_or(if ip.is_ipv6() { 128 } else { 32 });
            IpNetwork::new(ip, len).expect("valid prefix")
        })
        .collect()
}

/// Releases `token`'s hold of `port` on `chassis`: another chassis' holder keeps it (the end of
/// a live migration), a persistent claim parks it, otherwise it is deleted. Retries on
/// concurrent changes; a port already gone or held by someone else is left alone.
pub fn release(
    nb: &mut Nb,
    snap: &Snapshot,
    port: &Port,
    chassis: &str,
    token: &str,
) -> Result<(), Error> {
    let mut cur = port.clone();
    for _ in 0..50 {
        if cur.holder(chassis) != Some(token) {
            return Ok(());
        }
        let others: Vec<String> = cur
            .chassis()
            .into_iter()
            .filter(|c| c != chassis && cur.holder(c).is_some())
            .collect();
        let persistent = cur.external_ids.contains_key(names::EXT_CLAIM);
        if others.is_empty() && !persistent {
            // Guarded: a chassis that rebound the port since it was read keeps it.
            if nb.delete_port(&snap.switch_uuid, &cur)? {
                return Ok(());
            }
            match nb.port_by_name(&cur.name)? {
                Some(p) => cur = p,
                None => return Ok(()),
            }
            continue;
        }
        let mut options = cur.options.clone();
        let mut ext = cur.external_ids.clone();
        ext.remove(&names::at_key(chassis));
        options.remove("activation-strategy");
        if others.is_empty() {
            // Parked: unbound, its addresses kept for the claim's next ADD on any node.
            options.remove("requested-chassis");
            options.remove("iface-id-ver");
        } else {
            options.insert("requested-chassis".to_string(), others.join(","));
        }
        if nb.update_port(&cur, &options, &ext)? {
            return Ok(());
        }
        match nb.port_by_name(&cur.name)? {
            Some(p) => cur = p,
            None => return Ok(()),
        }
    }
    Err(Error::try_again_later(format!(
        "logical port {} kept changing while releasing it",
        port.name
    )))
}
