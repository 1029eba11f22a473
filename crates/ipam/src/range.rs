//! One allocatable range: a network, the first and last candidate, exclusions and the gateway.
//!
//! This module owns which addresses of a range may be handed out and how many there are; it does
//! not know what is reserved (the stores do). Addresses are handled as `u128` throughout, so an
//! IPv6 range is usable to its last address: whereabouts uses 64-bit offsets and never reaches
//! beyond the first /65 of a /64 (whereabouts#83).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;

use cni::Error;

/// A range addresses are allocated from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpRange {
    /// The CIDR with host bits cleared; allocated addresses get its prefix length.
    pub network: IpNetwork,
    /// First candidate (inclusive).
    pub start: IpAddr,
    /// Last candidate (inclusive).
    pub end: IpAddr,
    /// Never allocated (bare addresses are /32 or /128); host bits cleared.
    pub excludes: Vec<IpNetwork>,
    /// Reported with this range's addresses and never allocated. [`IpRange::new`] keeps it only
    /// when it is inside `network`: a gateway elsewhere belongs to another range of the config.
    pub gateway: Option<IpAddr>,
}

/// An inclusive interval of addresses as numbers.
type Span = (u128, u128);

/// The number of an address (IPv4 in the low 32 bits).
pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The address of a number; for IPv4 only the low 32 bits are used.
pub fn from_u128(v: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

/// First and last address of a network, as numbers.
fn span_of(net: &IpNetwork) -> Span {
    let bits: u32 = if net.is_ipv4() { 32 } else { 128 };
    let host_bits = bits - u32::from(net.prefix());
    let host_mask = u128::MAX.checked_shr(128 - host_bits).unwrap_or(0);
    let first = to_u128(net.network());
    (first, first | host_mask)
}

/// `net` with host bits cleared.
fn masked(net: IpNetwork) -> IpNetwork {
    IpNetwork::new(net.network(), net.prefix()).unwrap_or(net)
}

/// `at.key`, or `key` alone when there is no path.
fn key_at(at: &str, key: &str) -> String {
    if at.is_empty() {
        key.to_string()
    } else {
        format!("{at}.{key}")
    }
}

fn family(v4: bool) -> &'static str {
    if v4 {
        "IPv4"
    } else {
        "IPv6"
    }
}

impl IpRange {
    /// Validates a range; `at` is the key path errors name (`ipam` or `ipam.ipRanges[1]`; may be
    /// empty). `start` defaults to the network address + 1; `end` to the last usable address
    /// (IPv4: broadcast - 1; IPv6: the last address of the prefix). Code 7 when the prefix is
    /// too small to allocate from (/31, /32, /127, /128), when start or end are outside the
    /// network or reversed, when an exclude is of the other family, and when no address is left.
    pub fn new(
        at: &str,
        network: IpNetwork,
        start: Option<IpAddr>,
        end: Option<IpAddr>,
        excludes: Vec<IpNetwork>,
        gateway: Option<IpAddr>,
    ) -> Result<IpRange, Error> {
        let network = masked(network);
        check_prefix(at, &network)?;
        let v4 = network.is_ipv4();
        let (first, last) = span_of(&network);
        let default_end = if v4 { last - 1 } else { last };
        let start = start.unwrap_or(from_u128(first + 1, v4));
        let end = end.unwrap_or(from_u128(default_end, v4));
        for (key, ip) in [("range_start", start), ("range_end", end)] {
            if !network.contains(ip) || ip.is_ipv4() != v4 {
                return Err(Error::invalid_config(format!(
                    "{} {ip} is outside the range {network}",
                    key_at(at, key)
                )));
            }
        }
        if to_u128(start) > to_u128(end) {
            return Err(Error::invalid_config(format!(
                "{} {start} is after {} {end}",
                key_at(at, "range_start"),
                key_at(at, "range_end")
            )));
        }
        let excludes = check_excludes(at, v4, excludes)?;
        let range = IpRange {
            network,
            start,
            end,
            excludes,
            gateway: gateway.filter(|g| network.contains(*g) && g.is_ipv4() == v4),
        };
        if range.first().is_none() {
            return Err(Error::invalid_config(format!(
                "{} {network} ({start}-{end}) has no allocatable address: every candidate is \
                 excluded, the gateway, or the network or broadcast address",
                key_at(at, "range")
            )));
        }
        Ok(range)
    }

    /// True for an IPv4 range.
    pub fn is_v4(&self) -> bool {
        self.network.is_ipv4()
    }

    /// `start <= ip <= end`, in the range's family.
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.is_v4()
            && to_u128(self.start) <= to_u128(ip)
            && to_u128(ip) <= to_u128(self.end)
    }

    /// Inside the range and none of: the network address, the IPv4 broadcast address, an
    /// excluded address, the gateway.
    pub fn is_allocatable(&self, ip: IpAddr) -> bool {
        let n = to_u128(ip);
        self.contains(ip) && !self.blocked().iter().any(|&(lo, hi)| lo <= n && n <= hi)
    }

    /// The smallest allocatable address `>= from`. Each blocked span (an exclude, the gateway,
    /// the network or broadcast address) is jumped over at once, so this takes at most one step
    /// per span whatever their sizes.
    pub fn next_allocatable(&self, from: IpAddr) -> Option<IpAddr> {
        if from.is_ipv4() != self.is_v4() {
            return None;
        }
        let blocked = self.blocked();
        let end = to_u128(self.end);
        let mut n = to_u128(from).max(to_u128(self.start));
        while n <= end {
            match blocked.iter().find(|&&(lo, hi)| lo <= n && n <= hi) {
                Some(&(_, hi)) => n = hi.checked_add(1)?,
                None => return Some(from_u128(n, self.is_v4())),
            }
        }
        None
    }

    /// The lowest allocatable address.
    pub fn first(&self) -> Option<IpAddr> {
        self.next_allocatable(self.start)
    }

    /// How many addresses are allocatable, counted without iterating: the candidates minus the
    /// union of blocked spans (overlapping excludes count once).
    pub fn capacity(&self) -> u128 {
        let (start, end) = (to_u128(self.start), to_u128(self.end));
        let mut spans: Vec<Span> = self
            .blocked()
            .into_iter()
            .filter(|&(lo, hi)| hi >= start && lo <= end)
            .map(|(lo, hi)| (lo.max(start), hi.min(end)))
            .collect();
        spans.sort_unstable();
        let mut free = 0u128;
        let mut cursor = start;
        for (lo, hi) in spans {
            if lo > cursor {
                free += lo - cursor;
            }
            match hi.checked_add(1) {
                Some(next) => cursor = cursor.max(next),
                None => return free,
            }
        }
        if cursor <= end {
            free = free.saturating_add((end - cursor).saturating_add(1));
        }
        free
    }

    /// A stable identity of the range's specification: network, start-end, sorted excludes and
    /// gateway, e.g. `10.0.0.0/24:10.0.0.1-10.0.0.254:x=10.0.0.0/28,10.0.0.200/32:gw=10.0.0.1`
    /// (the `x=` and `gw=` parts only when set). Stores name pools and hints with it.
    pub fn key(&self) -> String {
        let mut key = format!("{}:{}-{}", self.network, self.start, self.end);
        let mut excludes: Vec<(u128, u8)> = self
            .excludes
            .iter()
            .map(|x| (to_u128(x.network()), x.prefix()))
            .collect();
        excludes.sort_unstable();
        excludes.dedup();
        if !excludes.is_empty() {
            let list: Vec<String> = excludes
                .iter()
                .map(|&(n, p)| format!("{}/{p}", from_u128(n, self.is_v4())))
                .collect();
            let _ = write!(key, ":x={}", list.join(","));
        }
        if let Some(gw) = self.gateway {
            let _ = write!(key, ":gw={gw}");
        }
        key
    }

    /// `ip` with the network's prefix length (the address as a result reports it). An address of
    /// the other family, which no caller should pass, comes back as a host route.
    pub fn with_prefix(&self, ip: IpAddr) -> IpNetwork {
        match IpNetwork::new(ip, self.network.prefix()) {
            Ok(net) if ip.is_ipv4() == self.is_v4() => net,
            _ => IpNetwork::from(ip),
        }
    }

    /// Every span that is never allocated: network address, IPv4 broadcast, gateway, excludes.
    /// Why `ip` cannot be reserved on request in this range, if it cannot: outside the range's
    /// network (a requested address may lie outside `start`-`end`, which bound only what is
    /// allocated), its network or broadcast address, its gateway, or excluded.
    pub fn request_refusal(&self, ip: IpAddr) -> Option<String> {
        if ip.is_ipv4() != self.is_v4() || !self.network.contains(ip) {
            return Some(format!("outside {}", self.network));
        }
        let n = to_u128(ip);
        let (first, last) = span_of(&self.network);
        if n == first {
            return Some(format!("the network address of {}", self.network));
        }
        if self.is_v4() && n == last {
            return Some(format!("the broadcast address of {}", self.network));
        }
        if self.gateway == Some(ip) {
            return Some("the gateway".into());
        }
        self.excludes
            .iter()
            .find(|x| x.contains(ip))
            .map(|x| format!("excluded (exclude {x})"))
    }

    fn blocked(&self) -> Vec<Span> {
        let v4 = self.is_v4();
        let (first, last) = span_of(&self.network);
        let mut spans = vec![(first, first)];
        if v4 {
            spans.push((last, last));
        }
        if let Some(gw) = self.gateway.filter(|g| g.is_ipv4() == v4) {
            spans.push((to_u128(gw), to_u128(gw)));
        }
        spans.extend(
            self.excludes
                .iter()
                .filter(|x| x.is_ipv4() == v4)
                .map(span_of),
        );
        spans
    }
}

/// /31 and /32 (IPv4), /127 and /128 (IPv6) leave nothing once the network (and broadcast)
/// address is skipped, or too little to be a range worth a pool.
fn check_prefix(at: &str, network: &IpNetwork) -> Result<(), Error> {
    let prefix = network.prefix();
    let max = if network.is_ipv4() { 30 } else { 126 };
    if prefix <= max {
        return Ok(());
    }
    Err(Error::invalid_config(format!(
        "{} {network}: the prefix /{prefix} is too small to allocate from (use /{max} or shorter)",
        key_at(at, "range")
    )))
}

/// Excludes with host bits cleared; one of the other family is a mistake (code 7).
fn check_excludes(at: &str, v4: bool, excludes: Vec<IpNetwork>) -> Result<Vec<IpNetwork>, Error> {
    excludes
        .into_iter()
        .enumerate()
        .map(|(i, x)| {
            if x.is_ipv4() != v4 {
                return Err(Error::invalid_config(format!(
                    "{}[{i}] {x} is {} but the range is {}",
                    key_at(at, "exclude"),
                    family(x.is_ipv4()),
                    family(v4)
                )));
            }
            Ok(masked(x))
        })
        .collect()
}

#[cfg(test)]
#[path = "range_tests.rs"]
mod tests;
