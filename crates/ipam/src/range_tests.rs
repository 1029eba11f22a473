use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNetwork {
    s.parse().unwrap()
}

fn range(cidr: &str) -> IpRange {
    IpRange::new("ipam", net(cidr), None, None, Vec::new(), None).unwrap()
}

fn range_with(cidr: &str, excludes: &[&str], gateway: Option<&str>) -> IpRange {
    let excludes = excludes.iter().map(|x| net(x)).collect();
    IpRange::new("ipam", net(cidr), None, None, excludes, gateway.map(ip)).unwrap()
}

#[test]
fn v4_defaults_skip_network_and_broadcast() {
    let r = range("10.0.0.0/24");
    assert_eq!((r.start, r.end), (ip("10.0.0.1"), ip("10.0.0.254")));
    assert_eq!(r.first(), Some(ip("10.0.0.1")));
    assert!(r.is_v4());
}

#[test]
fn host_bits_of_the_network_are_cleared() {
    let r = range("10.0.0.5/24");
    assert_eq!(r.network, net("10.0.0.0/24"));
    assert_eq!(r.start, ip("10.0.0.1"));
}

#[test]
fn v4_broadcast_is_never_allocatable_even_when_range_end_names_it() {
    let r = IpRange::new(
        "",
        net("10.0.0.0/24"),
        Some(ip("10.0.0.0")),
        Some(ip("10.0.0.255")),
        Vec::new(),
        None,
    )
    .unwrap();
    assert!(!r.is_allocatable(ip("10.0.0.255")));
    assert!(!r.is_allocatable(ip("10.0.0.0")));
    assert_eq!(r.next_allocatable(ip("10.0.0.255")), None);
    assert_eq!(r.first(), Some(ip("10.0.0.1")));
    assert_eq!(r.capacity(), 254);
}

#[test]
fn v6_skips_only_the_network_address() {
    let r = range("fd00::/120");
    assert_eq!((r.start, r.end), (ip("fd00::1"), ip("fd00::ff")));
    assert!(r.is_allocatable(ip("fd00::ff")));
    assert!(!r.is_allocatable(ip("fd00::")));
    assert_eq!(r.capacity(), 255);
}

#[test]
fn v6_slash_64_is_usable_beyond_the_first_slash_65() {
    let r = range("fd00:1::/64");
    assert_eq!(r.first(), Some(ip("fd00:1::1")));
    assert_eq!(r.end, ip("fd00:1::ffff:ffff:ffff:ffff"));
    let high = ip("fd00:1::ffff:ffff:ffff:fff0");
    assert_eq!(r.next_allocatable(high), Some(high));
    assert!(r.is_allocatable(ip("fd00:1::8000:0:0:1")));
    assert_eq!(
        r.next_allocatable(ip("fd00:1::ffff:ffff:ffff:ffff")),
        Some(ip("fd00:1::ffff:ffff:ffff:ffff"))
    );
    assert_eq!(r.capacity(), (1u128 << 64) - 1);
}

#[test]
fn too_small_prefixes_are_rejected() {
    for cidr in ["10.0.0.0/31", "10.0.0.1/32", "fd00::/127", "fd00::1/128"] {
        let e = IpRange::new("ipam", net(cidr), None, None, Vec::new(), None).unwrap_err();
        assert_eq!(e.code, 7, "{cidr}");
        assert!(e.msg.contains("too small to allocate from"), "{}", e.msg);
        assert!(e.msg.contains("ipam.range"), "{}", e.msg);
    }
    range("10.0.0.0/30");
    range("fd00::/126");
}

#[test]
fn start_and_end_must_be_inside_and_ordered() {
    let n = net("10.0.1.0/24");
    let e = IpRange::new(
        "ipam.ipRanges[1]",
        n,
        Some(ip("10.0.2.1")),
        None,
        vec![],
        None,
    )
    .unwrap_err();
    assert_eq!(e.code, 7);
    assert!(
        e.msg.contains("ipam.ipRanges[1].range_start 10.0.2.1"),
        "{}",
        e.msg
    );
    let e = IpRange::new("ipam", n, None, Some(ip("fd00::1")), vec![], None).unwrap_err();
    assert!(e.msg.contains("ipam.range_end fd00::1"), "{}", e.msg);
    let e = IpRange::new(
        "ipam",
        n,
        Some(ip("10.0.1.9")),
        Some(ip("10.0.1.5")),
        vec![],
        None,
    )
    .unwrap_err();
    assert!(
        e.msg.contains("is after ipam.range_end 10.0.1.5"),
        "{}",
        e.msg
    );
}

#[test]
fn a_range_without_any_allocatable_address_is_rejected() {
    let e = IpRange::new(
        "ipam",
        net("10.0.0.0/24"),
        Some(ip("10.0.0.10")),
        Some(ip("10.0.0.11")),
        vec![net("10.0.0.10/32")],
        Some(ip("10.0.0.11")),
    )
    .unwrap_err();
    assert_eq!(e.code, 7);
    assert!(e.msg.contains("no allocatable address"), "{}", e.msg);
}

#[test]
fn an_exclude_of_the_other_family_is_rejected() {
    let e = IpRange::new(
        "ipam",
        net("10.0.0.0/24"),
        None,
        None,
        vec![net("10.0.0.8/29"), net("fd00::/64")],
        None,
    )
    .unwrap_err();
    assert!(e.msg.contains("ipam.exclude[1] fd00::/64"), "{}", e.msg);
}

#[test]
fn gateway_inside_is_kept_and_never_allocatable() {
    let r = range_with("10.0.0.0/24", &[], Some("10.0.0.1"));
    assert_eq!(r.gateway, Some(ip("10.0.0.1")));
    assert!(!r.is_allocatable(ip("10.0.0.1")));
    assert_eq!(r.first(), Some(ip("10.0.0.2")));
}

#[test]
fn gateway_outside_the_network_is_dropped() {
    let r = range_with("10.0.0.0/24", &[], Some("10.9.0.1"));
    assert_eq!(r.gateway, None);
    let r = range_with("fd00::/64", &[], Some("10.0.0.1"));
    assert_eq!(r.gateway, None);
}

#[test]
fn an_excluded_slash_17_is_jumped_in_one_step() {
    let r = range_with("10.0.0.0/16", &["10.0.0.0/17"], None);
    assert_eq!(r.first(), Some(ip("10.0.128.0")));
    assert_eq!(r.next_allocatable(ip("10.0.5.5")), Some(ip("10.0.128.0")));
    assert_eq!(r.capacity(), (1 << 15) - 1);
}

#[test]
fn a_huge_v6_exclude_is_jumped_too() {
    let r = range_with("fd00::/64", &["fd00::/65"], None);
    assert_eq!(r.first(), Some(ip("fd00::8000:0:0:0")));
    assert_eq!(r.capacity(), 1u128 << 63);
}

#[test]
fn bare_and_host_bit_excludes_are_normalised() {
    let r = range_with("10.0.0.0/24", &["10.0.0.5/30", "10.0.0.9"], None);
    assert_eq!(r.excludes, vec![net("10.0.0.4/30"), net("10.0.0.9/32")]);
    assert!(!r.is_allocatable(ip("10.0.0.7")));
    assert!(!r.is_allocatable(ip("10.0.0.9")));
    assert!(r.is_allocatable(ip("10.0.0.8")));
}

#[test]
fn capacity_of_a_slash_24_with_gateway_and_excludes() {
    assert_eq!(range("10.0.0.0/24").capacity(), 254);
    assert_eq!(
        range_with("10.0.0.0/24", &[], Some("10.0.0.1")).capacity(),
        253
    );
    let r = range_with("10.0.0.0/24", &["10.0.0.8/30"], Some("10.0.0.1"));
    assert_eq!(r.capacity(), 249);
    // Overlapping excludes (and one covering the gateway) are counted once.
    let r = range_with(
        "10.0.0.0/24",
        &["10.0.0.8/30", "10.0.0.8/29", "10.0.0.10", "10.0.0.0/31"],
        Some("10.0.0.1"),
    );
    assert_eq!(r.capacity(), 254 - 8 - 1);
    // Excludes partly outside [start, end] only count inside it.
    let r = IpRange::new(
        "",
        net("10.0.0.0/24"),
        Some(ip("10.0.0.100")),
        Some(ip("10.0.0.109")),
        vec![net("10.0.0.96/29")],
        None,
    )
    .unwrap();
    assert_eq!(r.capacity(), 6);
}

#[test]
fn capacity_matches_walking_the_range() {
    let r = range_with(
        "10.0.0.0/26",
        &["10.0.0.8/29", "10.0.0.12/30", "10.0.0.40", "10.0.0.60/30"],
        Some("10.0.0.41"),
    );
    let mut count = 0;
    let mut next = r.first();
    while let Some(ip) = next {
        assert!(r.is_allocatable(ip));
        count += 1;
        next = r.next_allocatable(from_u128(to_u128(ip) + 1, true));
    }
    assert_eq!(count, r.capacity());
}

#[test]
fn contains_is_start_to_end_in_the_same_family() {
    let r = IpRange::new(
        "",
        net("10.0.0.0/24"),
        Some(ip("10.0.0.10")),
        Some(ip("10.0.0.20")),
        vec![],
        None,
    )
    .unwrap();
    assert!(r.contains(ip("10.0.0.10")) && r.contains(ip("10.0.0.20")));
    assert!(!r.contains(ip("10.0.0.9")) && !r.contains(ip("10.0.0.21")));
    assert!(!r.contains(ip("::ffff:10.0.0.15")));
    assert_eq!(r.next_allocatable(ip("10.0.0.1")), Some(ip("10.0.0.10")));
    assert_eq!(r.next_allocatable(ip("fd00::1")), None);
}

#[test]
fn key_names_every_part_with_sorted_excludes() {
    let r = range_with(
        "10.0.0.0/24",
        &["10.0.0.200", "10.0.0.0/28", "10.0.0.200/32"],
        Some("10.0.0.1"),
    );
    assert_eq!(
        r.key(),
        "10.0.0.0/24:10.0.0.1-10.0.0.254:x=10.0.0.0/28,10.0.0.200/32:gw=10.0.0.1"
    );
    assert_eq!(
        range("fd00::/64").key(),
        "fd00::/64:fd00::1-fd00::ffff:ffff:ffff:ffff"
    );
}

#[test]
fn with_prefix_gives_the_network_prefix() {
    let r = range("10.0.0.0/24");
    assert_eq!(r.with_prefix(ip("10.0.0.7")).to_string(), "10.0.0.7/24");
    assert_eq!(r.with_prefix(ip("fd00::7")).to_string(), "fd00::7/128");
}

#[test]
fn u128_conversions_round_trip() {
    for s in [
        "0.0.0.0",
        "10.1.2.3",
        "255.255.255.255",
        "::",
        "fd00::1",
        "ffff::ffff",
    ] {
        let a = ip(s);
        assert_eq!(from_u128(to_u128(a), a.is_ipv4()), a);
    }
    assert_eq!(to_u128(ip("0.0.1.0")), 256);
}
