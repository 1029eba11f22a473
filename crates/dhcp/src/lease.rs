//! What an acknowledged lease means: its address, times and the CNI result it gives.
//!
//! The result is the reference plugin's by default (address and mask, gateway from option 3,
//! routes from option 121 when present, else option 33 and a default route via the router), with
//! what the reference leaves out: DNS from options 6, 15 and 119 (cni #86) and the MTU from
//! option 26, both as the server said them.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use cni::result::{CniResult, Dns, IpConfig, Route};
use ipnetwork::{IpNetwork, Ipv4Network};

use crate::message::{code, Message};

/// `scope link` for a route whose next hop is 0.0.0.0 (RFC 3442: on the link).
pub const SCOPE_LINK: u8 = 253;

/// Why an ACK gives no lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseError {
    /// No subnet mask (option 1): the reference refuses it as well.
    NoMask,
    /// A subnet mask that is not a prefix (ones then zeros).
    BadMask(Ipv4Addr),
    /// No lease time (option 51).
    NoLeaseTime,
    /// yiaddr is 0.0.0.0.
    NoAddress,
}

impl std::fmt::Display for LeaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeaseError::NoMask => write!(f, "the DHCPACK carries no subnet mask (option 1)"),
            LeaseError::BadMask(m) => write!(f, "the DHCPACK's subnet mask {m} is not a prefix"),
            LeaseError::NoLeaseTime => write!(f, "the DHCPACK carries no lease time (option 51)"),
            LeaseError::NoAddress => write!(f, "the DHCPACK offers no address (yiaddr 0.0.0.0)"),
        }
    }
}

impl std::error::Error for LeaseError {}

/// The facts of an acknowledged lease, relative to the moment the ACK arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The address with the server's prefix length.
    pub address: Ipv4Network,
    /// The first router (option 3).
    pub gateway: Option<Ipv4Addr>,
    /// The server (option 54), to which renewals and the release go.
    pub server: Option<Ipv4Addr>,
    /// Lease time (option 51).
    pub lease_time: Duration,
    /// Renewal time T1 (option 58, else half the lease; never past T2).
    pub renew_after: Duration,
    /// Rebinding time T2 (option 59, else 7/8 of the lease as RFC 2131 section 4.4.5 says;
    /// never past the lease).
    pub rebind_after: Duration,
}

impl Lease {
    /// The lease an ACK grants.
    pub fn from_ack(ack: &Message) -> Result<Lease, LeaseError> {
        if ack.yiaddr.is_unspecified() {
            return Err(LeaseError::NoAddress);
        }
        let mask = ack.addr(code::SUBNET_MASK).ok_or(LeaseError::NoMask)?;
        let bits = u32::from(mask);
        let prefix = bits.leading_ones();
        if bits.checked_shl(prefix).unwrap_or(0) != 0 {
            return Err(LeaseError::BadMask(mask));
        }
        let address =
            Ipv4Network::new(ack.yiaddr, prefix as u8).map_err(|_| LeaseError::BadMask(mask))?;
        let lease = ack.u32(code::LEASE_TIME).ok_or(LeaseError::NoLeaseTime)?;
        let lease_time = Duration::from_secs(u64::from(lease));
        let rebind = ack
            .u32(code::REBINDING_TIME)
            .map(|t| Duration::from_secs(u64::from(t)))
            .filter(|t| *t <= lease_time)
            .unwrap_or(lease_time * 7 / 8);
        let renew = ack
            .u32(code::RENEWAL_TIME)
            .map(|t| Duration::from_secs(u64::from(t)))
            .filter(|t| *t <= rebind)
            .unwrap_or_else(|| (lease_time / 2).min(rebind));
        Ok(Lease {
            address,
            gateway: ack.addrs(code::ROUTER).first().copied(),
            server: ack.addr(code::SERVER_ID),
            lease_time,
            renew_after: renew,
            rebind_after: rebind,
        })
    }
}

/// The CNI result of an ACK: one address, its gateway, the routes, DNS and (in the interface
/// list's place, which an IPAM result leaves empty) nothing else. `priority` is the route
/// metric the configuration asks for.
pub fn result(ack: &Message, priority: Option<u32>) -> Result<CniResult, LeaseError> {
    let lease = Lease::from_ack(ack)?;
    let gateway = lease.gateway.map(IpAddr::V4);
    let mut routes = classless_routes(ack.get(code::CLASSLESS_ROUTES).unwrap_or(&[]));
    if routes.is_empty() {
        routes = static_routes(ack.get(code::STATIC_ROUTES).unwrap_or(&[]));
        if let Some(gw) = gateway {
            routes.push(Route::new(
                IpNetwork::V4(Ipv4Network::new(Ipv4Addr::UNSPECIFIED, 0).expect("/0")),
                Some(gw),
            ));
        }
    }
    for r in &mut routes {
        r.priority = priority;
    }
    Ok(CniResult {
        interfaces: Vec::new(),
        ips: vec![IpConfig {
            interface: None,
            address: IpNetwork::V4(lease.address),
            gateway,
        }],
        routes,
        dns: dns(ack),
    })
}

/// The interface MTU the server asks for (option 26), if it is one Linux accepts (68 or more).
pub fn mtu(ack: &Message) -> Option<u16> {
    ack.u16(code::INTERFACE_MTU).filter(|m| *m >= 68)
}

/// Routes of option 121 (RFC 3442): a width, the significant octets of the destination, the
/// router. A router 0.0.0.0 means on the link. A malformed tail ends the list (what was read
/// stays).
pub fn classless_routes(mut v: &[u8]) -> Vec<Route> {
    let mut out = Vec::new();
    while let Some((&width, rest)) = v.split_first() {
        if width > 32 {
            break;
        }
        let octets = usize::from(width).div_ceil(8);
        if rest.len() < octets + 4 {
            break;
        }
        let mut dst = [0u8; 4];
        dst[..octets].copy_from_slice(&rest[..octets]);
        let gw = Ipv4Addr::new(
            rest[octets],
            rest[octets + 1],
            rest[octets + 2],
            rest[octets + 3],
        );
        v = &rest[octets + 4..];
        // Host bits set in the destination are cleared, as the kernel would refuse them.
        let Ok(net) = Ipv4Network::new(Ipv4Addr::from(dst), width) else {
            break;
        };
        let net = Ipv4Network::new(net.network(), width).expect("width checked");
        let mut r = Route::new(IpNetwork::V4(net), None);
        if gw.is_unspecified() {
            r.scope = Some(SCOPE_LINK);
        } else {
            r.gw = Some(IpAddr::V4(gw));
        }
        out.push(r);
    }
    out
}

/// Routes of option 33: pairs of a classful destination and its router (RFC 2132 section 5.8;
/// the default route is not allowed there and is skipped).
pub fn static_routes(v: &[u8]) -> Vec<Route> {
    v.chunks_exact(8)
        .filter_map(|c| {
            let dst = Ipv4Addr::new(c[0], c[1], c[2], c[3]);
            let gw = Ipv4Addr::new(c[4], c[5], c[6], c[7]);
            if dst.is_unspecified() {
                return None;
            }
            let prefix = match c[0] {
                0..=127 => 8,
                128..=191 => 16,
                _ => 24,
            };
            let net = Ipv4Network::new(dst, prefix).ok()?;
            let net = Ipv4Network::new(net.network(), prefix).ok()?;
            Some(Route::new(IpNetwork::V4(net), Some(IpAddr::V4(gw))))
        })
        .collect()
}

/// DNS from options 6 (servers), 15 (domain) and 119 (search list).
pub fn dns(ack: &Message) -> Dns {
    let domain = ack
        .get(code::DOMAIN_NAME)
        .map(|v| {
            String::from_utf8_lossy(v)
                .trim_end_matches('\0')
                .trim()
                .to_string()
        })
        .filter(|d| !d.is_empty());
    Dns {
        nameservers: ack
            .addrs(code::DNS_SERVERS)
            .iter()
            .map(|a| a.to_string())
            .collect(),
        domain,
        search: ack
            .get(code::DOMAIN_SEARCH)
            .map(search_list)
            .unwrap_or_default(),
        options: Vec::new(),
    }
}

/// The names of an RFC 3397 search list: RFC 1035 names, compression pointers allowed (only
/// backwards, so a loop cannot be built). A malformed name ends the list.
pub fn search_list(v: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < v.len() {
        match read_name(v, i) {
            Some((name, next)) => {
                if !name.is_empty() {
                    out.push(name);
                }
                i = next;
            }
            None => break,
        }
    }
    out
}

/// One name starting at `at`: the name and where the next one starts.
fn read_name(v: &[u8], at: usize) -> Option<(String, usize)> {
    let mut labels: Vec<String> = Vec::new();
    let mut i = at;
    let mut next = None;
    let mut limit = at; // a pointer must point before every position already visited
    loop {
        let len = *v.get(i)?;
        match len {
            0 => {
                let end = next.unwrap_or(i + 1);
                return Some((labels.join("."), end));
            }
            0xC0..=0xFF => {
                let target = (usize::from(len & 0x3F) << 8) | usize::from(*v.get(i + 1)?);
                if target >= limit {
                    return None;
                }
                if next.is_none() {
                    next = Some(i + 2);
                }
                limit = target;
                i = target;
            }
            1..=63 => {
                let label = v.get(i + 1..i + 1 + usize::from(len))?;
                labels.push(String::from_utf8_lossy(label).into_owned());
                if labels.len() > 127 {
                    return None;
                }
                i += 1 + usize::from(len);
            }
            _ => return None,
        }
    }
}
