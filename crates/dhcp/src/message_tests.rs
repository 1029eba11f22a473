use std::net::Ipv4Addr;

use crate::message::*;

const MAC: [u8; 6] = [0x0a, 0x58, 0x0a, 0, 0, 7];

#[test]
fn a_request_round_trips_and_is_padded_to_bootp_size() {
    let mut m = Message::request(MessageType::Discover, 0xdead_beef, MAC);
    m.flags = FLAG_BROADCAST;
    m.set(code::CLIENT_ID, reference_client_id("c1", "net", "net1"));
    m.set(code::PARAMETER_REQUEST_LIST, vec![1, 3]);
    let b = m.encode();
    assert_eq!(b.len(), 300);
    assert_eq!(&b[236..240], &MAGIC_COOKIE);
    assert_eq!(&b[4..8], &[0xde, 0xad, 0xbe, 0xef]);
    assert_eq!(&b[28..34], &MAC);
    let back = Message::parse(&b).unwrap();
    assert_eq!(back, m);
    assert_eq!(back.kind(), Some(MessageType::Discover));
}

#[test]
fn a_long_option_is_split_and_a_repeated_option_concatenated() {
    let mut m = Message::request(MessageType::Request, 1, MAC);
    let long: Vec<u8> = (0..300u16).map(|i| i as u8).collect();
    m.set(code::CLASSLESS_ROUTES, long.clone());
    let b = m.encode();
    let back = Message::parse(&b).unwrap();
    assert_eq!(back.get(code::CLASSLESS_ROUTES), Some(long.as_slice()));
}

#[test]
fn pad_is_skipped_and_a_missing_end_is_accepted() {
    let mut b = Message::request(MessageType::Offer, 2, MAC).encode();
    b.truncate(240);
    b.extend_from_slice(&[0, 0, 53, 1, 2, 1, 4, 255, 255, 255, 0]);
    let m = Message::parse(&b).unwrap();
    assert_eq!(m.kind(), Some(MessageType::Offer));
    assert_eq!(
        m.addr(code::SUBNET_MASK),
        Some(Ipv4Addr::new(255, 255, 255, 0))
    );
}

#[test]
fn malformed_messages_are_refused_not_guessed() {
    assert_eq!(Message::parse(&[0u8; 100]), Err(ParseError::Short(100)));
    let mut b = Message::request(MessageType::Ack, 3, MAC).encode();
    b[236] = 1;
    assert!(matches!(Message::parse(&b), Err(ParseError::Cookie(_))));
    let mut b = Message::request(MessageType::Ack, 3, MAC).encode();
    b.truncate(240);
    b.extend_from_slice(&[3, 8, 10, 0]);
    assert_eq!(Message::parse(&b), Err(ParseError::Truncated { code: 3 }));
    let mut b = Message::request(MessageType::Ack, 3, MAC).encode();
    b[2] = 17;
    assert_eq!(Message::parse(&b), Err(ParseError::HardwareLength(17)));
}

#[test]
fn the_client_identifier_is_the_reference_plugins_byte_for_byte() {
    assert_eq!(
        reference_client_id("abc", "br1", "net1"),
        b"\0abc/br1/net1".to_vec()
    );
    let long = "x".repeat(300);
    let id = reference_client_id(&long, "n", "eth0");
    assert_eq!(id.len(), 255);
    assert_eq!(id[0], 0);
}
