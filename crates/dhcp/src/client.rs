//! The DHCPv4 client's exchanges (RFC 2131 section 4.4) over a [`PacketSocket`]: acquire
//! (DISCOVER, OFFER, REQUEST, ACK), renew (unicast from the leased address), rebind
//! (broadcast from it) and release (unicast from it). Each exchange is bounded by the deadline
//! it is given; the caller decides when to call which (the daemon's scheduler).

use std::io;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::message::{code, Message, MessageType, FLAG_BROADCAST};
use crate::packet::{random_bytes, PacketSocket, BROADCAST_MAC};

/// What a client sends besides the message type: it is the same for every message of a lease.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    /// Option 61.
    pub client_id: Vec<u8>,
    /// Ask the server to broadcast its answers (the BROADCAST flag, RFC 2131 section 4.1).
    pub broadcast: bool,
    /// Option 55, in order.
    pub request: Vec<u8>,
    /// Other options sent (`provide`: host name, user class, vendor class...).
    pub provide: Vec<(u8, Vec<u8>)>,
}

/// An acknowledged lease as the client holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The ACK.
    pub message: Message,
    /// The MAC it came from: where unicast to the server goes (the server, or the relay).
    pub server_mac: [u8; 6],
}

/// Why an exchange ended without a lease.
#[derive(Debug)]
pub enum ExchangeError {
    /// No (usable) answer before the deadline.
    Timeout,
    /// The server refused (DHCPNAK), with its message (option 56) if any.
    Nak(String),
    /// The socket failed.
    Io(io::Error),
}

impl std::fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExchangeError::Timeout => f.write_str("no DHCP server answered"),
            ExchangeError::Nak(m) if m.is_empty() => f.write_str("the DHCP server refused (NAK)"),
            ExchangeError::Nak(m) => write!(
                f,
                "the DHCP server refused (NAK): {}",
                cni::error::printable(m, 200)
            ),
            ExchangeError::Io(e) => write!(f, "DHCP socket: {e}"),
        }
    }
}

impl From<io::Error> for ExchangeError {
    fn from(e: io::Error) -> Self {
        ExchangeError::Io(e)
    }
}

/// The first retransmission interval; each next one doubles up to [`MAX_INTERVAL`]. RFC 2131
/// section 4.1 starts at 4 s; a container link whose bridge port is still coming up loses the
/// first DISCOVER, and waiting 4 s for the second is most of a slow ADD, so we start lower.
pub const FIRST_INTERVAL: Duration = Duration::from_millis(500);
/// The longest wait between retransmissions of one exchange.
pub const MAX_INTERVAL: Duration = Duration::from_secs(4);

fn xid() -> u32 {
    let mut b = [0u8; 4];
    random_bytes(&mut b);
    u32::from_be_bytes(b)
}

fn message(kind: MessageType, xid: u32, mac: [u8; 6], who: &Identity) -> Message {
    let mut m = Message::request(kind, xid, mac);
    if who.broadcast {
        m.flags |= FLAG_BROADCAST;
    }
    m.set(code::CLIENT_ID, who.client_id.clone());
    for (c, v) in &who.provide {
        if *c != code::CLIENT_ID {
            m.set(*c, v.clone());
        }
    }
    m
}

fn with_request_list(mut m: Message, who: &Identity) -> Message {
    if !who.request.is_empty() {
        m.set(code::PARAMETER_REQUEST_LIST, who.request.clone());
    }
    // Option 57: we read up to 4 KiB (RFC 2132 section 9.10; 576 is the minimum).
    m.set(57, 1500u16.to_be_bytes().to_vec());
    m
}

/// Sends what `build` makes (with the elapsed seconds) and waits for an answer `wanted` accepts,
/// retransmitting with a doubling interval, until `until`.
fn exchange(
    sock: &PacketSocket,
    until: Instant,
    send: impl Fn(u16) -> io::Result<()>,
    mut wanted: impl FnMut(&Message) -> bool,
) -> Result<(Message, [u8; 6]), ExchangeError> {
    let start = Instant::now();
    let mut interval = FIRST_INTERVAL;
    loop {
        if Instant::now() >= until {
            return Err(ExchangeError::Timeout);
        }
        let secs = start.elapsed().as_secs().min(u64::from(u16::MAX)) as u16;
        send(secs)?;
        let wait = (Instant::now() + interval).min(until);
        if let Some(answer) = sock.recv(wait, &mut wanted)? {
            return Ok(answer);
        }
        interval = (interval * 2).min(MAX_INTERVAL);
    }
}

fn nak_text(m: &Message) -> String {
    String::from_utf8_lossy(m.get(code::MESSAGE).unwrap_or(&[])).into_owned()
}

/// DISCOVER, OFFER, REQUEST, ACK, all within `until`; `wish` is an address to ask for (the
/// one held before, RFC 2131 section 4.3.1 option 50 in a DISCOVER).
pub fn acquire(
    sock: &PacketSocket,
    who: &Identity,
    wish: Option<Ipv4Addr>,
    until: Instant,
) -> Result<Ack, ExchangeError> {
    let mac = sock.mac();
    loop {
        let id = xid();
        let mut discover = with_request_list(message(MessageType::Discover, id, mac, who), who);
        if let Some(a) = wish {
            discover.set(code::REQUESTED_IP, a.octets().to_vec());
        }
        let (offer, _) = exchange(
            sock,
            until,
            |secs| {
                let mut d = discover.clone();
                d.secs = secs;
                sock.send(
                    &d,
                    Ipv4Addr::UNSPECIFIED,
                    Ipv4Addr::BROADCAST,
                    BROADCAST_MAC,
                )
            },
            |m| {
                m.xid == id
                    && m.chaddr.get(..6) == Some(&mac[..])
                    && m.kind() == Some(MessageType::Offer)
                    && !m.yiaddr.is_unspecified()
            },
        )?;
        let Some(server) = offer.addr(code::SERVER_ID) else {
            continue;
        };
        let mut request = with_request_list(message(MessageType::Request, id, mac, who), who);
        request.set(code::REQUESTED_IP, offer.yiaddr.octets().to_vec());
        request.set(code::SERVER_ID, server.octets().to_vec());
        // A REQUEST unanswered for a few retransmissions means the offer is gone: start over.
        let request_until = (Instant::now() + Duration::from_secs(4)).min(until);
        let answer = exchange(
            sock,
            request_until,
            |secs| {
                let mut r = request.clone();
                r.secs = secs;
                sock.send(
                    &r,
                    Ipv4Addr::UNSPECIFIED,
                    Ipv4Addr::BROADCAST,
                    BROADCAST_MAC,
                )
            },
            |m| {
                m.xid == id
                    && m.addr(code::SERVER_ID).is_none_or(|s| s == server)
                    && matches!(m.kind(), Some(MessageType::Ack | MessageType::Nak))
            },
        );
        match answer {
            Ok((m, from)) if m.kind() == Some(MessageType::Ack) => {
                return Ok(Ack {
                    message: m,
                    server_mac: from,
                })
            }
            // NAK: the offer was taken back; a new DISCOVER (RFC 2131 section 4.4.1).
            Ok(_) | Err(ExchangeError::Timeout) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// One REQUEST extending `held` (RENEWING: unicast to the server; REBINDING: broadcast to
/// any), from the leased address, waiting until `until` for the answer. No retransmission:
/// the scheduler calls again later (RFC 2131 section 4.4.5).
pub fn extend(
    sock: &PacketSocket,
    who: &Identity,
    held: &Ack,
    rebinding: bool,
    until: Instant,
) -> Result<Ack, ExchangeError> {
    let mac = sock.mac();
    let id = xid();
    let addr = held.message.yiaddr;
    let mut request = with_request_list(message(MessageType::Request, id, mac, who), who);
    request.ciaddr = addr;
    // Answers go to ciaddr; the broadcast flag is only for a client without an address.
    request.flags &= !FLAG_BROADCAST;
    let server = held.message.addr(code::SERVER_ID);
    match (rebinding, server) {
        (false, Some(s)) => sock.send(&request, addr, s, held.server_mac)?,
        _ => sock.send(&request, addr, Ipv4Addr::BROADCAST, BROADCAST_MAC)?,
    }
    let got = sock.recv(until, |m| {
        m.xid == id && matches!(m.kind(), Some(MessageType::Ack | MessageType::Nak))
    })?;
    match got {
        None => Err(ExchangeError::Timeout),
        Some((m, _)) if m.kind() == Some(MessageType::Nak) => Err(ExchangeError::Nak(nak_text(&m))),
        Some((m, from)) => Ok(Ack {
            message: m,
            server_mac: from,
        }),
    }
}

/// The RELEASE of `held`, unicast from the leased address to the server (RFC 2131 section
/// 4.4.6). There is no answer to wait for. Sent twice: a lost RELEASE leaves the lease taken
/// until it expires, a duplicate costs the server nothing.
pub fn release(sock: &PacketSocket, who: &Identity, held: &Ack) -> io::Result<()> {
    let Some(server) = held.message.addr(code::SERVER_ID) else {
        return Ok(());
    };
    // chaddr is the client's MAC also when the RELEASE leaves through the node's bridge.
    let mut mac = sock.mac();
    if let Some(c) = held.message.chaddr.get(..6) {
        mac.copy_from_slice(c);
    }
    let mut m = Message::request(MessageType::Release, xid(), mac);
    m.ciaddr = held.message.yiaddr;
    m.set(code::CLIENT_ID, who.client_id.clone());
    m.set(code::SERVER_ID, server.octets().to_vec());
    for _ in 0..2 {
        sock.send(&m, held.message.yiaddr, server, held.server_mac)?;
    }
    Ok(())
}

/// One exchange with the server, on `ifname` inside the namespace at `netns`.
pub fn on_link<T>(
    netns: &Path,
    ifname: &str,
    f: impl FnOnce(&PacketSocket) -> Result<T, ExchangeError>,
) -> Result<T, String> {
    let ns = netns::NetNs::open(netns).map_err(|e| e.to_string())?;
    let sock = ns
        .run(|| PacketSocket::open(ifname))
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{ifname} in {}: {e}", netns.display()))?;
    f(&sock).map_err(|e| e.to_string())
}

/// Releases `held`: from the sandbox's link if it is still there, else (DEL removed the link
/// first, or the sandbox is gone) through `uplink`, the node's bridge the sandbox was plugged
/// into, in the calling thread's namespace: the server sees the same RELEASE (leased address,
/// client identifier, chaddr), only the frame enters the wire elsewhere.
pub fn release_anywhere(
    netns: &Path,
    ifname: &str,
    uplink: Option<&str>,
    who: &Identity,
    held: &Ack,
) -> Result<(), String> {
    let first = on_link(netns, ifname, |sock| {
        release(sock, who, held).map_err(ExchangeError::Io)
    });
    match (first, uplink) {
        (Ok(()), _) => Ok(()),
        (Err(e), None) => Err(e),
        (Err(e), Some(br)) => {
            let sock = PacketSocket::open_existing(br)
                .map_err(|e2| format!("{e}; the node's bridge {br}: {e2}"))?;
            release(&sock, who, held).map_err(|e2| format!("{e}; through {br}: {e2}"))
        }
    }
}
