//! OVN-Kubernetes' naming conventions for secondary networks, so that an operator who knows
//! OVN-Kubernetes finds the same rows here (and tools written for it keep working).

use std::net::IpAddr;

use netlink::Mac;
use sha2::{Digest, Sha256};

use crate::conf::{OvnConf, Topology, Who};

/// external_ids keys of OVN-Kubernetes.
pub const EXT_NETWORK: &str = "k8s.ovn.org/network";
pub const EXT_TOPOLOGY: &str = "k8s.ovn.org/topology";
pub const EXT_ROLE: &str = "k8s.ovn.org/role";
pub const EXT_NAD: &str = "k8s.ovn.org/nad";
/// external_ids keys of this suite: which attachment holds the port on which chassis, and the
/// persistent-IP claim. `multihome.io/at-<chassis>` = "<container id> <ifname>".
pub const EXT_AT_PREFIX: &str = "multihome.io/at-";
pub const EXT_CLAIM: &str = "multihome.io/claim";
/// On the node's OVS Interface: the network, so that GC and DEL find their ports.
pub const EXT_IFACE_NETWORK: &str = "multihome.io/network";
pub const EXT_IFACE_IFNAME: &str = "multihome.io/ifname";

/// A network's prefix: '-' and '/' become '.', then '_' (OVN-Kubernetes' GetSecondaryNetworkPrefix).
pub fn prefix(name: &str) -> String {
    format!("{}_", name.replace(['-', '/'], "."))
}

/// The network's logical switch.
pub fn switch_name(conf: &OvnConf) -> String {
    match conf.topology {
        Topology::Layer2 => format!("{}ovn_layer2_switch", prefix(&conf.network)),
        Topology::Localnet => format!("{}ovn_localnet_switch", prefix(&conf.network)),
    }
}

/// The localnet port of a localnet network's switch.
pub fn localnet_port_name(conf: &OvnConf) -> String {
    format!("{}ovn_localnet_port", prefix(&conf.network))
}

/// The logical switch port of an attachment: `<nad prefix><pod namespace>_<pod name>` as in
/// OVN-Kubernetes. A persistent claim names the port instead of the pod (the port outlives pods:
/// a VM keeps it across restarts and live migration); without pod arguments (cnitool) the
/// container ID and interface name do.
pub fn port_name(conf: &OvnConf, who: &Who, persistent: Option<&str>) -> String {
    let p = prefix(&conf.nad);
    match (persistent, &who.pod) {
        (Some(key), Some((ns, _))) => format!("{p}{ns}_{key}"),
        (Some(key), None) => format!("{p}{key}"),
        (None, Some((ns, name))) => format!("{p}{ns}_{name}"),
        (None, None) => format!("{p}{}_{}", who.container_id, who.ifname),
    }
}

/// The MAC of a port when none is requested: 0a:58 followed by the IPv4 address' octets
/// (OVN-Kubernetes), or by four bytes of a hash of the port name without IPv4.
pub fn derived_mac(ips: &[IpAddr], port: &str) -> Mac {
    if let Some(IpAddr::V4(v4)) = ips.iter().find(|ip| ip.is_ipv4()) {
        let o = v4.octets();
        return Mac([0x0a, 0x58, o[0], o[1], o[2], o[3]]);
    }
    let h = Sha256::digest(port.as_bytes());
    Mac([0x0a, 0x58, h[0], h[1], h[2], h[3]])
}

/// Host end of the veth: `ovn` + 12 hex digits of a hash of the port and container, stable so
/// that a retried ADD finds its own leftovers.
pub fn host_ifname(port: &str, who: &Who) -> String {
    let h = Sha256::digest(format!("{port}\n{}\n{}", who.container_id, who.ifname).as_bytes());
    format!(
        "ovn{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
        h[0], h[1], h[2], h[3], h[4], h[5]
    )
}

/// The external_ids key recording which attachment holds the port on `chassis`.
pub fn at_key(chassis: &str) -> String {
    format!("{EXT_AT_PREFIX}{chassis}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_follow_ovn_kubernetes() {
        assert_eq!(prefix("private-overlay"), "private.overlay_");
        assert_eq!(
            prefix("my-vm-namespace/private-overlay"),
            "my.vm.namespace.private.overlay_"
        );
    }

    #[test]
    fn derived_macs_carry_the_ipv4_address() {
        let ips = ["fd00::5".parse().unwrap(), "10.1.2.3".parse().unwrap()];
        assert_eq!(derived_mac(&ips, "p").to_string(), "0a:58:0a:01:02:03");
        let m = derived_mac(&["fd00::5".parse().unwrap()], "p");
        assert_eq!(&m.0[..2], &[0x0a, 0x58]);
        assert_eq!(m, derived_mac(&[], "p"));
    }

    #[test]
    fn host_ifnames_fit_the_kernel_limit() {
        let who = Who {
            container_id: "c".into(),
            ifname: "net1".into(),
            pod: None,
            pod_uid: None,
        };
        let n = host_ifname("port", &who);
        assert_eq!(n.len(), 15);
        assert_eq!(n, host_ifname("port", &who));
    }
}
