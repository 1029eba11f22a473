//! Interface addresses.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use rtnetlink::packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage, AddressScope,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::{Error, Netlink};

/// An address configured on a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub index: u32,
    /// The address with its prefix length (`10.1.0.5/24`).
    pub net: IpNetwork,
    /// Link scope (IPv6 `fe80::/64`, IPv4 169.254/16 when so configured).
    pub link_scope: bool,
    /// IPv6 address still in duplicate address detection.
    pub tentative: bool,
}

fn message(index: u32, net: IpNetwork) -> AddressMessage {
    let mut msg = AddressMessage::default();
    msg.header.index = index;
    msg.header.prefix_len = net.prefix();
    match net.ip() {
        IpAddr::V4(ip) => {
            msg.header.family = AddressFamily::Inet;
            msg.attributes.push(AddressAttribute::Local(IpAddr::V4(ip)));
            msg.attributes
                .push(AddressAttribute::Address(IpAddr::V4(ip)));
            if net.prefix() < 31 {
                if let IpNetwork::V4(n) = net {
                    msg.attributes
                        .push(AddressAttribute::Broadcast(n.broadcast()));
                }
            }
        }
        IpAddr::V6(ip) => {
            msg.header.family = AddressFamily::Inet6;
            msg.attributes
                .push(AddressAttribute::Address(IpAddr::V6(ip)));
        }
    }
    msg
}

impl Netlink {
    /// The addresses of link `index` (all families, link scope included).
    pub fn addresses(&self, index: u32) -> Result<Vec<Address>, Error> {
        let msgs = self.dump(
            "list addresses",
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
        )?;
        let mut out = Vec::new();
        for m in msgs {
            let RouteNetlinkMessage::NewAddress(a) = m else {
                continue;
            };
            if a.header.index != index {
                continue;
            }
            let ip = a.attributes.iter().find_map(|attr| match attr {
                AddressAttribute::Address(ip) => Some(*ip),
                _ => None,
            });
            let Some(ip) = ip else { continue };
            let Ok(net) = IpNetwork::new(ip, a.header.prefix_len) else {
                continue;
            };
            let tentative = a.header.flags.contains(AddressHeaderFlags::Tentative)
                || a.attributes.iter().any(|attr| {
                    matches!(attr, AddressAttribute::Flags(f)
                        if f.contains(rtnetlink::packet_route::address::AddressFlags::Tentative))
                });
            out.push(Address {
                index,
                net,
                link_scope: a.header.scope == AddressScope::Link,
                tentative,
            });
        }
        Ok(out)
    }

    /// Adds `net` (address/prefix) to link `index`; `Ok(false)` when it was already there.
    pub fn add_address(&self, index: u32, ifname: &str, net: IpNetwork) -> Result<bool, Error> {
        let op = format!("add address {net} to {ifname}");
        match self.change(
            &op,
            RouteNetlinkMessage::NewAddress(message(index, net)),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(()) => Ok(true),
            Err(e) if e.is_exists() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// [`Netlink::add_address`] of an IPv6 address with optimistic duplicate address detection
    /// (RFC 4429): usable at once, still detected as a duplicate (it then fails DAD). The link
    /// needs `optimistic_dad` (and `use_optimistic`) on; an IPv4 address is added as usual.
    pub fn add_address_optimistic(
        &self,
        index: u32,
        ifname: &str,
        net: IpNetwork,
    ) -> Result<bool, Error> {
        let op = format!("add address {net} to {ifname}");
        let mut msg = message(index, net);
        if net.is_ipv6() {
            msg.attributes
                .push(AddressAttribute::Flags(AddressFlags::Optimistic));
        }
        match self.change(
            &op,
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(()) => Ok(true),
            Err(e) if e.is_exists() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Removes `net` from link `index`; `Ok(false)` when it was not there.
    pub fn del_address(&self, index: u32, ifname: &str, net: IpNetwork) -> Result<bool, Error> {
        let op = format!("remove address {net} from {ifname}");
        match self.change(&op, RouteNetlinkMessage::DelAddress(message(index, net)), 0) {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }
}
