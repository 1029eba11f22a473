//! A DHCPv4 message (RFC 2131 section 2) and its options (RFC 2132), encoded and parsed.
//!
//! Parsing is strict about the fixed part (a short message, a wrong magic cookie or an option
//! running past the end is an error, never a guess) and lenient where servers differ: pad
//! options are skipped, a missing end option is accepted, and an option that appears more than
//! once is concatenated (RFC 3396), as routes in option 121 often are.

use std::fmt;
use std::net::Ipv4Addr;

/// BOOTREQUEST.
pub const OP_REQUEST: u8 = 1;
/// BOOTREPLY.
pub const OP_REPLY: u8 = 2;
/// The magic cookie that opens the options (RFC 2131 section 3).
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// The broadcast bit of `flags`: ask the server to broadcast its answers (plugins #751).
pub const FLAG_BROADCAST: u16 = 0x8000;
/// The fixed part plus the cookie.
const FIXED_LEN: usize = 240;

/// Option codes this suite reads or writes.
pub mod code {
    /// Subnet mask.
    pub const SUBNET_MASK: u8 = 1;
    /// Routers.
    pub const ROUTER: u8 = 3;
    /// Domain name servers.
    pub const DNS_SERVERS: u8 = 6;
    /// Host name.
    pub const HOST_NAME: u8 = 12;
    /// Domain name.
    pub const DOMAIN_NAME: u8 = 15;
    /// Interface MTU.
    pub const INTERFACE_MTU: u8 = 26;
    /// Static routes (classful).
    pub const STATIC_ROUTES: u8 = 33;
    /// Vendor class identifier.
    pub const VENDOR_CLASS: u8 = 60;
    /// Requested IP address.
    pub const REQUESTED_IP: u8 = 50;
    /// IP address lease time.
    pub const LEASE_TIME: u8 = 51;
    /// DHCP message type.
    pub const MESSAGE_TYPE: u8 = 53;
    /// Server identifier.
    pub const SERVER_ID: u8 = 54;
    /// Parameter request list.
    pub const PARAMETER_REQUEST_LIST: u8 = 55;
    /// Message (an error text from the server).
    pub const MESSAGE: u8 = 56;
    /// Renewal (T1) time.
    pub const RENEWAL_TIME: u8 = 58;
    /// Rebinding (T2) time.
    pub const REBINDING_TIME: u8 = 59;
    /// Client identifier.
    pub const CLIENT_ID: u8 = 61;
    /// User class.
    pub const USER_CLASS: u8 = 77;
    /// Domain search list (RFC 3397).
    pub const DOMAIN_SEARCH: u8 = 119;
    /// Classless static routes (RFC 3442).
    pub const CLASSLESS_ROUTES: u8 = 121;
    /// Padding.
    pub const PAD: u8 = 0;
    /// End of options.
    pub const END: u8 = 255;
}

/// The DHCP message types (option 53).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// DHCPDISCOVER.
    Discover,
    /// DHCPOFFER.
    Offer,
    /// DHCPREQUEST.
    Request,
    /// DHCPDECLINE.
    Decline,
    /// DHCPACK.
    Ack,
    /// DHCPNAK.
    Nak,
    /// DHCPRELEASE.
    Release,
    /// DHCPINFORM.
    Inform,
}

impl MessageType {
    /// The option 53 value.
    pub fn value(self) -> u8 {
        match self {
            MessageType::Discover => 1,
            MessageType::Offer => 2,
            MessageType::Request => 3,
            MessageType::Decline => 4,
            MessageType::Ack => 5,
            MessageType::Nak => 6,
            MessageType::Release => 7,
            MessageType::Inform => 8,
        }
    }

    /// The type an option 53 value names.
    pub fn from_value(v: u8) -> Option<MessageType> {
        Some(match v {
            1 => MessageType::Discover,
            2 => MessageType::Offer,
            3 => MessageType::Request,
            4 => MessageType::Decline,
            5 => MessageType::Ack,
            6 => MessageType::Nak,
            7 => MessageType::Release,
            8 => MessageType::Inform,
            _ => return None,
        })
    }
}

/// Why bytes are not a DHCP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than the fixed part and the cookie.
    Short(usize),
    /// The magic cookie is not RFC 2131's.
    Cookie([u8; 4]),
    /// An option's length runs past the end of the message.
    Truncated {
        /// The option's code.
        code: u8,
    },
    /// A hardware address length over 16.
    HardwareLength(u8),
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::Short(n) => {
                write!(f, "{n} bytes is shorter than a DHCP message ({FIXED_LEN})")
            }
            ParseError::Cookie(c) => write!(f, "magic cookie {c:?} is not 99.130.83.99"),
            ParseError::Truncated { code } => {
                write!(f, "option {code} runs past the end of the message")
            }
            ParseError::HardwareLength(n) => write!(f, "hardware address length {n} is over 16"),
        }
    }
}

impl std::error::Error for ParseError {}

/// A DHCPv4 message. Options keep the order they were added or found in; a code appears once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// `op`: [`OP_REQUEST`] or [`OP_REPLY`].
    pub op: u8,
    /// Transaction id.
    pub xid: u32,
    /// Seconds since the client began.
    pub secs: u16,
    /// Flags ([`FLAG_BROADCAST`]).
    pub flags: u16,
    /// Client address (set when renewing or releasing).
    pub ciaddr: Ipv4Addr,
    /// "Your" address: the one offered.
    pub yiaddr: Ipv4Addr,
    /// Next server.
    pub siaddr: Ipv4Addr,
    /// Relay agent.
    pub giaddr: Ipv4Addr,
    /// Client hardware address (Ethernet: 6 bytes).
    pub chaddr: Vec<u8>,
    /// Options in order, each code once (values of repeated codes concatenated).
    pub options: Vec<(u8, Vec<u8>)>,
}

impl Message {
    /// A client's request from hardware address `mac` with transaction `xid`.
    pub fn request(kind: MessageType, xid: u32, mac: [u8; 6]) -> Message {
        let mut m = Message {
            op: OP_REQUEST,
            xid,
            secs: 0,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr: mac.to_vec(),
            options: Vec::new(),
        };
        m.set(code::MESSAGE_TYPE, vec![kind.value()]);
        m
    }

    /// The value of option `code`, if present.
    pub fn get(&self, code: u8) -> Option<&[u8]> {
        self.options
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_slice())
    }

    /// Sets option `code` (replacing a previous value, keeping its place).
    pub fn set(&mut self, code: u8, value: Vec<u8>) {
        match self.options.iter_mut().find(|(c, _)| *c == code) {
            Some(slot) => slot.1 = value,
            None => self.options.push((code, value)),
        }
    }

    /// The message type (option 53), if present and known.
    pub fn kind(&self) -> Option<MessageType> {
        match self.get(code::MESSAGE_TYPE) {
            Some([v]) => MessageType::from_value(*v),
            _ => None,
        }
    }

    /// An option holding one IPv4 address (54, 50, 1).
    pub fn addr(&self, code: u8) -> Option<Ipv4Addr> {
        match self.get(code) {
            Some(v) if v.len() == 4 => Some(Ipv4Addr::new(v[0], v[1], v[2], v[3])),
            _ => None,
        }
    }

    /// An option holding a list of IPv4 addresses (3, 6): the first is the preferred one.
    pub fn addrs(&self, code: u8) -> Vec<Ipv4Addr> {
        match self.get(code) {
            Some(v) if !v.is_empty() && v.len() % 4 == 0 => v
                .chunks(4)
                .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// An option holding one 32-bit number (51, 58, 59).
    pub fn u32(&self, code: u8) -> Option<u32> {
        match self.get(code) {
            Some(v) if v.len() == 4 => Some(u32::from_be_bytes([v[0], v[1], v[2], v[3]])),
            _ => None,
        }
    }

    /// An option holding one 16-bit number (26).
    pub fn u16(&self, code: u8) -> Option<u16> {
        match self.get(code) {
            Some(v) if v.len() == 2 => Some(u16::from_be_bytes([v[0], v[1]])),
            _ => None,
        }
    }

    /// The message on the wire. An option longer than 255 bytes is split (RFC 3396); the
    /// options end with the end option and the message is padded to BOOTP's 300 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(300);
        b.push(self.op);
        b.push(1); // htype: Ethernet
        b.push(self.chaddr.len().min(16) as u8);
        b.push(0); // hops
        b.extend_from_slice(&self.xid.to_be_bytes());
        b.extend_from_slice(&self.secs.to_be_bytes());
        b.extend_from_slice(&self.flags.to_be_bytes());
        for a in [self.ciaddr, self.yiaddr, self.siaddr, self.giaddr] {
            b.extend_from_slice(&a.octets());
        }
        let mut chaddr = [0u8; 16];
        let n = self.chaddr.len().min(16);
        chaddr[..n].copy_from_slice(&self.chaddr[..n]);
        b.extend_from_slice(&chaddr);
        b.resize(b.len() + 64 + 128, 0); // sname, file
        b.extend_from_slice(&MAGIC_COOKIE);
        for (c, v) in &self.options {
            if v.is_empty() {
                b.extend_from_slice(&[*c, 0]);
            }
            for chunk in v.chunks(255) {
                b.push(*c);
                b.push(chunk.len() as u8);
                b.extend_from_slice(chunk);
            }
        }
        b.push(code::END);
        if b.len() < 300 {
            b.resize(300, 0);
        }
        b
    }

    /// Parses a message (the UDP payload).
    pub fn parse(b: &[u8]) -> Result<Message, ParseError> {
        if b.len() < FIXED_LEN {
            return Err(ParseError::Short(b.len()));
        }
        let cookie = [b[236], b[237], b[238], b[239]];
        if cookie != MAGIC_COOKIE {
            return Err(ParseError::Cookie(cookie));
        }
        let hlen = b[2];
        if hlen > 16 {
            return Err(ParseError::HardwareLength(hlen));
        }
        let ip = |at: usize| Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3]);
        let mut m = Message {
            op: b[0],
            xid: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            secs: u16::from_be_bytes([b[8], b[9]]),
            flags: u16::from_be_bytes([b[10], b[11]]),
            ciaddr: ip(12),
            yiaddr: ip(16),
            siaddr: ip(20),
            giaddr: ip(24),
            chaddr: b[28..28 + usize::from(hlen)].to_vec(),
            options: Vec::new(),
        };
        let mut i = FIXED_LEN;
        while i < b.len() {
            let c = b[i];
            if c == code::PAD {
                i += 1;
                continue;
            }
            if c == code::END {
                break;
            }
            let Some(&len) = b.get(i + 1) else {
                return Err(ParseError::Truncated { code: c });
            };
            let start = i + 2;
            let end = start + usize::from(len);
            if end > b.len() {
                return Err(ParseError::Truncated { code: c });
            }
            let v = &b[start..end];
            match m.options.iter_mut().find(|(k, _)| *k == c) {
                Some(slot) => slot.1.extend_from_slice(v),
                None => m.options.push((c, v.to_vec())),
            }
            i = end;
        }
        Ok(m)
    }
}

/// The client identifier (option 61) the reference plugin sends, byte for byte: type 0 and
/// `containerID/netName/ifName`, cut to 254 bytes. Keeping it lets a server's reservations
/// keyed on it (dnsmasq `dhcp-host=id:...`, kea `client-id`, isc `dhcp-client-identifier`)
/// survive the switch from the reference.
pub fn reference_client_id(container_id: &str, net_name: &str, ifname: &str) -> Vec<u8> {
    let mut id = format!("{container_id}/{net_name}/{ifname}").into_bytes();
    id.truncate(254);
    let mut v = Vec::with_capacity(id.len() + 1);
    v.push(0);
    v.extend_from_slice(&id);
    v
}
