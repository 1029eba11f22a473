//! Address allocation inside a network's subnets: pure, so that the caller can run it on a
//! snapshot of the northbound DB and commit the result in a transaction that fails if the
//! snapshot changed.

use std::collections::HashSet;
use std::net::IpAddr;

use cni::Error;
use ipnetwork::IpNetwork;

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

fn from_u128(v: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(v.into())
    } else {
        IpAddr::V4((v as u32).into())
    }
}

/// The first and last assignable address of `net`: IPv4 skips the network and broadcast
/// addresses, IPv6 the subnet-router anycast address (the all-zero host).
fn bounds(net: &IpNetwork) -> (u128, u128) {
    let first = to_u128(net.network());
    let size_bits = if net.is_ipv6() { 128 } else { 32 } - u32::from(net.prefix());
    let last = if size_bits >= 128 {
        u128::MAX
    } else {
        first + ((1u128 << size_bits) - 1)
    };
    if net.is_ipv6() {
        (first + 1, last)
    } else {
        (first + 1, last - 1)
    }
}

/// The plugin-specific code of an exhausted subnet (as whereabouts' exhausted range).
pub const EXHAUSTED: u32 = 102;

/// One free address per subnet (lowest first, skipping `skip` free ones to spread concurrent
/// allocators), with the subnet's prefix; `used` holds every address taken in the network.
pub fn pick(
    subnets: &[IpNetwork],
    exclude: &[IpNetwork],
    used: &HashSet<IpAddr>,
    skip: usize,
) -> Result<Vec<IpNetwork>, Error> {
    let mut out = Vec::new();
    for net in subnets {
        let (first, last) = bounds(net);
        let v6 = net.is_ipv6();
        let mut skipped = 0;
        let mut found = None;
        let mut fallback = None;
        let mut cur = first;
        // Walk; jump over excluded ranges in one step.
        'walk: while cur <= last {
            let ip = from_u128(cur, v6);
            for e in exclude {
                if e.is_ipv6() == v6 && e.contains(ip) {
                    let (_, e_last) = bounds_raw(e);
                    match e_last.checked_add(1) {
                        Some(n) => cur = n,
                        None => break 'walk,
                    }
                    continue 'walk;
                }
            }
            if !used.contains(&ip) {
                fallback.get_or_insert(ip);
                if skipped == skip {
                    found = Some(ip);
                    break;
                }
                skipped += 1;
            }
            cur += 1;
        }
        let ip = found.or(fallback).ok_or_else(|| {
            // The same plugin-specific code as whereabouts' exhausted range.
            Error::new(
                EXHAUSTED,
                format!(
                    "subnet {net} is exhausted: all {} allocatable addresses are in use or excluded",
                    last - first + 1
                ),
            )
            .with_details("free addresses by deleting attachments (or GC), or widen subnets")
        })?;
        out.push(IpNetwork::new(ip, net.prefix()).expect("prefix of its own subnet"));
    }
    Ok(out)
}

fn bounds_raw(net: &IpNetwork) -> (u128, u128) {
    let first = to_u128(net.network());
    let size_bits = if net.is_ipv6() { 128 } else { 32 } - u32::from(net.prefix());
    let last = if size_bits >= 128 {
        u128::MAX
    } else {
        first + ((1u128 << size_bits) - 1)
    };
    (first, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(s: &[&str]) -> Vec<IpNetwork> {
        s.iter().map(|x| x.parse().unwrap()).collect()
    }

    #[test]
    fn the_lowest_free_address_of_each_subnet_skipping_network_broadcast_and_excludes() {
        let subnets = nets(&["10.0.0.0/29", "fd00::/64"]);
        let exclude = nets(&["10.0.0.1/32", "10.0.0.2/31"]);
        let used: HashSet<IpAddr> = ["10.0.0.4".parse().unwrap()].into_iter().collect();
        let got = pick(&subnets, &exclude, &used, 0).unwrap();
        assert_eq!(got[0].to_string(), "10.0.0.5/29");
        assert_eq!(got[1].to_string(), "fd00::1/64");
    }

    #[test]
    fn skip_spreads_but_falls_back_and_exhaustion_is_code_102() {
        let subnets = nets(&["10.0.0.0/30"]);
        let none = HashSet::new();
        assert_eq!(
            pick(&subnets, &[], &none, 1).unwrap()[0].to_string(),
            "10.0.0.2/30"
        );
        assert_eq!(
            pick(&subnets, &[], &none, 9).unwrap()[0].to_string(),
            "10.0.0.1/30"
        );
        let full: HashSet<IpAddr> = ["10.0.0.1", "10.0.0.2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let e = pick(&subnets, &[], &full, 0).unwrap_err();
        assert_eq!(e.code, EXHAUSTED);
        assert!(e.msg.contains("all 2 allocatable"), "{}", e.msg);
        assert!(e.msg.contains("10.0.0.0/30"), "{}", e.msg);
    }
}
