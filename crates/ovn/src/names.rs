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

/// A new port's `addresses` and `port_security` entries. Both are "MAC IP..." as OVN-Kubernetes
/// writes them, but port security also lists the MAC's IPv6 link-local address when the port has
/// IPv6. ovn-controller 23.03 (Debian 12's) builds the flow that lets a port's neighbour
/// advertisements for its link-local address pass with `nw_ttl=225` and no `dl_src` match (a
/// typo for 255), so every such advertisement falls to the drop below it: nobody can resolve the
/// VM's link-local address, and a migrated VM's announcement of it is lost (issue 20). Listed
/// explicitly, the address gets the flow of the port's other addresses (`dl_src`, `nd_target`,
/// any hop limit), and OVN allowed it as a source anyway, so nothing else is let through.
pub fn port_entries(mac: Mac, ips: &[IpAddr]) -> (String, String) {
    let mut addresses = mac.to_string();
    for ip in ips {
        addresses.push(' ');
        addresses.push_str(&ip.to_string());
    }
    let mut security = addresses.clone();
    if ips.iter().any(IpAddr::is_ipv6) {
        security.push(' ');
        security.push_str(&mac.link_local().to_string());
    }
    (addresses, security)
}

/// The port security a port made before [`port_entries`] listed the link-local address should
/// have now: `Some` when its port security is exactly its addresses (what this plugin and
/// OVN-Kubernetes wrote) and [`port_entries`] would add to it; `None` for anything else, an
/// operator's own entries included. A rebind applies it, so that a parked VM's port is mended
/// when the VM comes back.
pub fn mended_port_security(addresses: &[String], security: &[String]) -> Option<String> {
    let [entry] = addresses else { return None };
    if security != addresses {
        return None;
    }
    let mut words = entry.split_whitespace();
    let mac: Mac = words.next()?.parse().ok()?;
    let ips: Vec<IpAddr> = words.map(str::parse).collect::<Result<_, _>>().ok()?;
    let (_, mended) = port_entries(mac, &ips);
    (mended != *entry).then_some(mended)
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
    fn port_security_lists_the_link_local_address_with_ipv6_only() {
        let mac: Mac = "0a:58:1a:b5:a0:87".parse().unwrap();
        let v6: IpAddr = "fd00:210::100".parse().unwrap();
        let v4: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(
            port_entries(mac, &[v6]),
            (
                "0a:58:1a:b5:a0:87 fd00:210::100".to_string(),
                "0a:58:1a:b5:a0:87 fd00:210::100 fe80::858:1aff:feb5:a087".to_string()
            )
        );
        let (a, s) = port_entries(mac, &[v4, v6]);
        assert_eq!(a, "0a:58:1a:b5:a0:87 10.1.2.3 fd00:210::100");
        assert!(
            s.ends_with(" fd00:210::100 fe80::858:1aff:feb5:a087"),
            "{s}"
        );
        let (a, s) = port_entries(mac, &[v4]);
        assert_eq!(
            (a.as_str(), s.as_str()),
            ("0a:58:1a:b5:a0:87 10.1.2.3", "0a:58:1a:b5:a0:87 10.1.2.3")
        );
        let (a, s) = port_entries(mac, &[]);
        assert_eq!(
            (a.as_str(), s.as_str()),
            ("0a:58:1a:b5:a0:87", "0a:58:1a:b5:a0:87")
        );
    }

    #[test]
    fn an_older_ports_security_is_mended_only_when_it_is_its_addresses() {
        let v = |x: &[&str]| x.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let old = v(&["0a:58:1a:b5:a0:87 fd00:210::100"]);
        assert_eq!(
            mended_port_security(&old, &old).as_deref(),
            Some("0a:58:1a:b5:a0:87 fd00:210::100 fe80::858:1aff:feb5:a087")
        );
        // Already mended, IPv4 only, no IPs, an operator's own, or unreadable: left alone.
        let new = v(&["0a:58:1a:b5:a0:87 fd00:210::100 fe80::858:1aff:feb5:a087"]);
        assert_eq!(mended_port_security(&old, &new), None);
        let v4 = v(&["0a:58:0a:01:02:03 10.1.2.3"]);
        assert_eq!(mended_port_security(&v4, &v4), None);
        let mac_only = v(&["0a:58:0a:01:02:03"]);
        assert_eq!(mended_port_security(&mac_only, &mac_only), None);
        assert_eq!(mended_port_security(&old, &v(&["0a:58:1a:b5:a0:87"])), None);
        let odd = v(&["dynamic"]);
        assert_eq!(mended_port_security(&odd, &odd), None);
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
