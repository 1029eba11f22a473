//! Routes of the main (or a given) table.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;
use rtnetlink::packet_core::{NLM_F_CREATE, NLM_F_EXCL};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteMetric, RouteProtocol,
    RouteScope, RouteType,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};

use crate::{Error, Netlink};

/// A unicast route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub dst: IpNetwork,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    /// Table id; 254 is main.
    pub table: u32,
    pub priority: Option<u32>,
    /// `RT_SCOPE_*`: 0 universe, 253 link, 254 host.
    pub scope: u8,
    pub mtu: Option<u32>,
    pub advmss: Option<u32>,
}

impl Route {
    /// A route in the main table with the scope Go's netlink library gives by default
    /// (universe), as the reference plugins add them.
    pub fn new(dst: IpNetwork, gateway: Option<IpAddr>, oif: u32) -> Route {
        Route {
            dst,
            gateway,
            oif: Some(oif),
            table: u32::from(RouteHeader::RT_TABLE_MAIN),
            priority: None,
            scope: 0,
            mtu: None,
            advmss: None,
        }
    }

    fn to_message(&self) -> RouteMessage {
        let mut msg = RouteMessage::default();
        msg.header.address_family = match self.dst {
            IpNetwork::V4(_) => AddressFamily::Inet,
            IpNetwork::V6(_) => AddressFamily::Inet6,
        };
        msg.header.destination_prefix_length = self.dst.prefix();
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = RouteScope::from(self.scope);
        msg.header.kind = RouteType::Unicast;
        if self.table < 256 {
            msg.header.table = self.table as u8;
        } else {
            msg.header.table = RouteHeader::RT_TABLE_UNSPEC;
            msg.attributes.push(RouteAttribute::Table(self.table));
        }
        if self.dst.prefix() > 0 {
            msg.attributes
                .push(RouteAttribute::Destination(self.dst.network().into()));
        }
        if let Some(gw) = self.gateway {
            msg.attributes.push(RouteAttribute::Gateway(gw.into()));
        }
        if let Some(oif) = self.oif {
            msg.attributes.push(RouteAttribute::Oif(oif));
        }
        if let Some(p) = self.priority {
            msg.attributes.push(RouteAttribute::Priority(p));
        }
        let mut metrics = Vec::new();
        metrics.extend(self.mtu.map(RouteMetric::Mtu));
        metrics.extend(self.advmss.map(RouteMetric::Advmss));
        if !metrics.is_empty() {
            msg.attributes.push(RouteAttribute::Metrics(metrics));
        }
        msg
    }

    fn from_message(m: &RouteMessage) -> Option<Route> {
        let v4 = m.header.address_family == AddressFamily::Inet;
        let mut dst_ip: Option<IpAddr> = None;
        let mut route = Route {
            dst: IpNetwork::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0).ok()?,
            gateway: None,
            oif: None,
            table: u32::from(m.header.table),
            priority: None,
            scope: u8::from(m.header.scope),
            mtu: None,
            advmss: None,
        };
        for a in &m.attributes {
            match a {
                RouteAttribute::Destination(d) => dst_ip = ip_of(d),
                RouteAttribute::Gateway(g) => route.gateway = ip_of(g),
                RouteAttribute::Oif(i) => route.oif = Some(*i),
                RouteAttribute::Table(t) => route.table = *t,
                RouteAttribute::Priority(p) => route.priority = Some(*p),
                RouteAttribute::Metrics(ms) => {
                    for metric in ms {
                        match metric {
                            RouteMetric::Mtu(v) => route.mtu = Some(*v),
                            RouteMetric::Advmss(v) => route.advmss = Some(*v),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let ip = dst_ip.unwrap_or(if v4 {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        } else {
            IpAddr::V6(Ipv6Addr::UNSPECIFIED)
        });
        route.dst = IpNetwork::new(ip, m.header.destination_prefix_length).ok()?;
        Some(route)
    }
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(ip) => Some(IpAddr::V4(*ip)),
        RouteAddress::Inet6(ip) => Some(IpAddr::V6(*ip)),
        _ => None,
    }
}

impl Netlink {
    /// Every unicast route of every table, both families.
    pub fn routes(&self) -> Result<Vec<Route>, Error> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut msg = RouteMessage::default();
            msg.header.address_family = family;
            for m in self.dump("list routes", RouteNetlinkMessage::GetRoute(msg))? {
                let RouteNetlinkMessage::NewRoute(r) = m else {
                    continue;
                };
                if r.header.kind != RouteType::Unicast {
                    continue;
                }
                out.extend(Route::from_message(&r));
            }
        }
        Ok(out)
    }

    /// Adds `route`; `Ok(false)` when the same route already exists.
    pub fn add_route(&self, route: &Route) -> Result<bool, Error> {
        let op = match route.gateway {
            Some(gw) => format!("add route to {} via {gw}", route.dst),
            None => format!("add route to {}", route.dst),
        };
        match self.change(
            &op,
            RouteNetlinkMessage::NewRoute(route.to_message()),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(()) => Ok(true),
            Err(e) if e.is_exists() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes `route`; `Ok(false)` when it did not exist.
    pub fn del_route(&self, route: &Route) -> Result<bool, Error> {
        let op = format!("delete route to {}", route.dst);
        match self.change(&op, RouteNetlinkMessage::DelRoute(route.to_message()), 0) {
            Ok(()) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }
}
