use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::lease::*;
use crate::message::{code, Message, MessageType, OP_REPLY};

fn ack(opts: &[(u8, Vec<u8>)]) -> Message {
    let mut m = Message::request(MessageType::Ack, 9, [2, 0, 0, 0, 0, 1]);
    m.op = OP_REPLY;
    m.yiaddr = Ipv4Addr::new(192, 0, 2, 50);
    m.set(code::SUBNET_MASK, vec![255, 255, 255, 0]);
    m.set(code::LEASE_TIME, 3600u32.to_be_bytes().to_vec());
    m.set(code::SERVER_ID, vec![192, 0, 2, 1]);
    for (c, v) in opts {
        m.set(*c, v.clone());
    }
    m
}

#[test]
fn times_default_to_rfc_2131_and_t1_never_passes_t2() {
    let l = Lease::from_ack(&ack(&[])).unwrap();
    assert_eq!(l.address.to_string(), "192.0.2.50/24");
    assert_eq!(l.server, Some(Ipv4Addr::new(192, 0, 2, 1)));
    assert_eq!(l.renew_after, Duration::from_secs(1800));
    assert_eq!(l.rebind_after, Duration::from_secs(3150));
    let l = Lease::from_ack(&ack(&[
        (code::RENEWAL_TIME, 8u32.to_be_bytes().to_vec()),
        (code::REBINDING_TIME, 12u32.to_be_bytes().to_vec()),
    ]))
    .unwrap();
    assert_eq!(
        (l.renew_after, l.rebind_after),
        (Duration::from_secs(8), Duration::from_secs(12))
    );
    let l = Lease::from_ack(&ack(&[
        (code::RENEWAL_TIME, 100u32.to_be_bytes().to_vec()),
        (code::REBINDING_TIME, 50u32.to_be_bytes().to_vec()),
    ]))
    .unwrap();
    assert_eq!(
        (l.renew_after, l.rebind_after),
        (Duration::from_secs(50), Duration::from_secs(50))
    );
}

#[test]
fn an_ack_without_mask_lease_time_or_address_is_no_lease() {
    let mut m = ack(&[]);
    m.options.retain(|(c, _)| *c != code::SUBNET_MASK);
    assert_eq!(Lease::from_ack(&m), Err(LeaseError::NoMask));
    let m = ack(&[(code::SUBNET_MASK, vec![255, 0, 255, 0])]);
    assert_eq!(
        Lease::from_ack(&m),
        Err(LeaseError::BadMask(Ipv4Addr::new(255, 0, 255, 0)))
    );
    let mut m = ack(&[]);
    m.options.retain(|(c, _)| *c != code::LEASE_TIME);
    assert_eq!(Lease::from_ack(&m), Err(LeaseError::NoLeaseTime));
    let mut m = ack(&[]);
    m.yiaddr = Ipv4Addr::UNSPECIFIED;
    assert_eq!(Lease::from_ack(&m), Err(LeaseError::NoAddress));
}

#[test]
fn routes_are_option_33_and_the_default_route_via_the_router() {
    let r = result(
        &ack(&[
            (code::ROUTER, vec![192, 0, 2, 1, 192, 0, 2, 2]),
            (
                code::STATIC_ROUTES,
                vec![10, 1, 2, 3, 192, 0, 2, 9, 0, 0, 0, 0, 192, 0, 2, 9],
            ),
        ]),
        None,
    )
    .unwrap();
    assert_eq!(
        r.ips[0].gateway,
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
    );
    let routes: Vec<String> = r
        .routes
        .iter()
        .map(|r| format!("{} via {:?}", r.dst, r.gw))
        .collect();
    assert_eq!(
        routes,
        [
            "10.0.0.0/8 via Some(192.0.2.9)",
            "0.0.0.0/0 via Some(192.0.2.1)"
        ]
    );
}

#[test]
fn option_121_replaces_option_33_and_the_router_and_0_0_0_0_is_on_the_link() {
    let r = result(
        &ack(&[
            (code::ROUTER, vec![192, 0, 2, 1]),
            (code::STATIC_ROUTES, vec![10, 1, 2, 3, 192, 0, 2, 9]),
            // 198.51.100.0/24 via 192.0.2.7, 203.0.113.128/25 on the link, 0/0 via 192.0.2.254
            (
                code::CLASSLESS_ROUTES,
                vec![
                    24, 198, 51, 100, 192, 0, 2, 7, 25, 203, 0, 113, 128, 0, 0, 0, 0, 0, 192, 0, 2,
                    254,
                ],
            ),
        ]),
        Some(50),
    )
    .unwrap();
    type Row = (String, Option<IpAddr>, Option<u8>, Option<u32>);
    let routes: Vec<Row> = r
        .routes
        .iter()
        .map(|r| (r.dst.to_string(), r.gw, r.scope, r.priority))
        .collect();
    assert_eq!(
        routes,
        [
            (
                "198.51.100.0/24".into(),
                Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))),
                None,
                Some(50)
            ),
            ("203.0.113.128/25".into(), None, Some(SCOPE_LINK), Some(50)),
            (
                "0.0.0.0/0".into(),
                Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 254))),
                None,
                Some(50)
            ),
        ]
    );
    // a truncated tail ends the list; what was read stays
    assert_eq!(
        classless_routes(&[24, 198, 51, 100, 192, 0, 2, 7, 16, 10]).len(),
        1
    );
    assert!(classless_routes(&[33, 0, 0, 0, 0, 0, 0, 0, 0]).is_empty());
}

#[test]
fn dns_comes_from_options_6_15_and_119_with_compression() {
    let mut search = vec![3];
    search.extend_from_slice(b"eng");
    search.push(5);
    search.extend_from_slice(b"apple");
    search.push(3);
    search.extend_from_slice(b"com");
    search.push(0);
    search.push(9);
    search.extend_from_slice(b"marketing");
    search.extend_from_slice(&[0xC0, 4]);
    let r = result(
        &ack(&[
            (code::DNS_SERVERS, vec![192, 0, 2, 53, 192, 0, 2, 54]),
            (code::DOMAIN_NAME, b"corp.example\0".to_vec()),
            (code::DOMAIN_SEARCH, search),
        ]),
        None,
    )
    .unwrap();
    assert_eq!(r.dns.nameservers, ["192.0.2.53", "192.0.2.54"]);
    assert_eq!(r.dns.domain.as_deref(), Some("corp.example"));
    assert_eq!(r.dns.search, ["eng.apple.com", "marketing.apple.com"]);
    // a pointer forwards (or to itself) is refused: no loop
    assert!(search_list(&[0xC0, 0]).is_empty());
    assert!(result(&ack(&[]), None).unwrap().dns.is_empty());
}

#[test]
fn mtu_is_option_26_when_linux_can_use_it() {
    assert_eq!(
        mtu(&ack(&[(
            code::INTERFACE_MTU,
            1450u16.to_be_bytes().to_vec()
        )])),
        Some(1450)
    );
    assert_eq!(
        mtu(&ack(&[(code::INTERFACE_MTU, 60u16.to_be_bytes().to_vec())])),
        None
    );
    assert_eq!(mtu(&ack(&[])), None);
}
