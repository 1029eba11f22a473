//! The one socket a DHCPv4 client needs on a container interface: an `AF_PACKET` datagram
//! socket bound to the link, over which this module sends and receives whole IPv4/UDP packets.
//!
//! A packet socket works before the interface has an address (DISCOVER from 0.0.0.0, an OFFER
//! unicast to an address not yet configured) and after it lost it (a RELEASE during teardown),
//! and it lets the client choose the source address: renewals and the RELEASE leave from the
//! leased address (RFC 2131 section 4.4.4), unicast to the MAC the server's answers came from,
//! so no route or neighbour entry is needed in the container. The socket keeps the namespace it
//! was opened in ([`PacketSocket::open`] runs on a thread inside it).

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Instant;

use nix::libc;

use crate::message::Message;

/// The DHCP ports (RFC 2131 section 4.1).
pub const SERVER_PORT: u16 = 67;
/// The client's port.
pub const CLIENT_PORT: u16 = 68;
/// The Ethernet broadcast address.
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];
const ETH_P_IP: u16 = 0x0800;

/// A packet socket on one link.
#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: i32,
    mac: [u8; 6],
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{name:?} is not an interface name"),
        ));
    }
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok(req)
}

fn ioctl(fd: &OwnedFd, request: libc::Ioctl, req: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: the SIOC*IF* requests used here read and write one ifreq, which `req` points to
    // and which outlives the call.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request, req as *mut libc::ifreq) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn sockaddr(ifindex: i32, mac: [u8; 6]) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = ETH_P_IP.to_be();
    sa.sll_ifindex = ifindex;
    sa.sll_halen = 6;
    sa.sll_addr[..6].copy_from_slice(&mac);
    sa
}

impl PacketSocket {
    /// Opens a socket on `ifname` in the calling thread's network namespace and sets the link up
    /// (a CNI plugin hands its IPAM a link that may still be down; the reference daemon does
    /// the same).
    pub fn open(ifname: &str) -> io::Result<PacketSocket> {
        PacketSocket::open_with(ifname, true)
    }

    /// Opens a socket on `ifname` without changing the link (to learn whether it exists).
    pub fn open_existing(ifname: &str) -> io::Result<PacketSocket> {
        PacketSocket::open_with(ifname, false)
    }

    fn open_with(ifname: &str, up: bool) -> io::Result<PacketSocket> {
        // SAFETY: socket(2) with constant arguments; the descriptor is owned below.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_IP.to_be()),
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut req = ifreq(ifname)?;
        ioctl(&fd, libc::SIOCGIFINDEX as libc::Ioctl, &mut req)
            .map_err(|e| io::Error::new(e.kind(), format!("interface {ifname}: {e}")))?;
        // SAFETY: SIOCGIFINDEX filled the ifindex member of the union.
        let ifindex = unsafe { req.ifr_ifru.ifru_ifindex };
        let mut req = ifreq(ifname)?;
        ioctl(&fd, libc::SIOCGIFHWADDR as libc::Ioctl, &mut req)?;
        // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
        let hw = unsafe { req.ifr_ifru.ifru_hwaddr };
        let mut mac = [0u8; 6];
        for (d, s) in mac.iter_mut().zip(hw.sa_data.iter()) {
            *d = *s as u8;
        }
        let mut req = ifreq(ifname)?;
        ioctl(&fd, libc::SIOCGIFFLAGS as libc::Ioctl, &mut req)?;
        // SAFETY: SIOCGIFFLAGS filled the flags member of the union.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        if up && flags & libc::IFF_UP as libc::c_short == 0 {
            req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
            ioctl(&fd, libc::SIOCSIFFLAGS as libc::Ioctl, &mut req)?;
        }
        let sa = sockaddr(ifindex, [0; 6]);
        // SAFETY: `sa` is a valid sockaddr_ll of the length given.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sa as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PacketSocket { fd, ifindex, mac })
    }

    /// The link's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Sends `msg` from `src`:68 to `dst`:67, in a frame to `dst_mac`.
    pub fn send(
        &self,
        msg: &Message,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        dst_mac: [u8; 6],
    ) -> io::Result<()> {
        trace(format_args!(
            "send {:?} xid {:#x} {src} -> {dst}",
            msg.kind(),
            msg.xid
        ));
        let packet = ipv4_udp(src, dst, CLIENT_PORT, SERVER_PORT, &msg.encode());
        let sa = sockaddr(self.ifindex, dst_mac);
        // SAFETY: the buffer and the sockaddr_ll are valid for the lengths given.
        let rc = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                packet.as_ptr() as *const libc::c_void,
                packet.len(),
                0,
                &sa as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The next DHCP reply (UDP to port 68) for which `wanted` holds, with the MAC it came
    /// from, or `None` once `until` passed. Other packets are skipped.
    pub fn recv(
        &self,
        until: Instant,
        mut wanted: impl FnMut(&Message) -> bool,
    ) -> io::Result<Option<(Message, [u8; 6])>> {
        let mut buf = vec![0u8; 4096];
        loop {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if rc == 0 {
                continue;
            }
            // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
            let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            // SAFETY: the buffer and the sockaddr_ll are valid for the lengths given.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    &mut sa as *mut libc::sockaddr_ll as *mut libc::sockaddr,
                    &mut len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if matches!(
                    e.kind(),
                    io::ErrorKind::Interrupted | io::ErrorKind::WouldBlock
                ) {
                    continue;
                }
                return Err(e);
            }
            // Our own transmissions come back as PACKET_OUTGOING.
            if sa.sll_pkttype == libc::PACKET_OUTGOING {
                continue;
            }
            let Some(payload) = udp_payload(&buf[..n as usize], CLIENT_PORT) else {
                continue;
            };
            let msg = match Message::parse(payload) {
                Ok(m) => m,
                Err(e) => {
                    trace(format_args!("unparsable reply: {e:?}"));
                    continue;
                }
            };
            let dst = Ipv4Addr::new(buf[16], buf[17], buf[18], buf[19]);
            trace(format_args!(
                "got {:?} xid {:#x} yiaddr {} to {dst}",
                msg.kind(),
                msg.xid,
                msg.yiaddr
            ));
            if msg.op == crate::message::OP_REPLY && wanted(&msg) {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(&sa.sll_addr[..6]);
                return Ok(Some((msg, mac)));
            }
        }
    }
}

/// With MULTIHOME_DHCP_TRACE set, one line per message on stderr (the daemon's log).
fn trace(what: std::fmt::Arguments) {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("MULTIHOME_DHCP_TRACE").is_some()) {
        eprintln!("dhcp trace {:?}: {what}", std::time::SystemTime::now());
    }
}

/// Sets the MTU of `ifname` in the calling thread's namespace.
pub fn set_mtu(ifname: &str, mtu: u16) -> io::Result<()> {
    // SAFETY: socket(2) with constant arguments; the descriptor is owned below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    let mut req = ifreq(ifname)?;
    req.ifr_ifru.ifru_mtu = i32::from(mtu);
    ioctl(&fd, libc::SIOCSIFMTU as libc::Ioctl, &mut req)
}

/// The Internet checksum (RFC 1071) of `parts`, concatenated.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 packet carrying one UDP datagram.
pub fn ipv4_udp(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let udp_len = (8 + payload.len()) as u16;
    let total = 20 + udp_len;
    let mut ip = vec![
        0x45, 0x10, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let mut udp = vec![0u8; 8];
    udp[0..2].copy_from_slice(&sport.to_be_bytes());
    udp[2..4].copy_from_slice(&dport.to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    let pseudo = [
        &src.octets()[..],
        &dst.octets()[..],
        &[0, 17],
        &udp_len.to_be_bytes(),
    ]
    .concat();
    let mut c = checksum(&[&pseudo, &udp, payload]);
    if c == 0 {
        c = 0xffff;
    }
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    let mut out = ip;
    out.extend_from_slice(&udp);
    out.extend_from_slice(payload);
    out
}

/// The payload of an IPv4 UDP packet to `port`, if `p` is one (unfragmented, lengths
/// consistent).
pub fn udp_payload(p: &[u8], port: u16) -> Option<&[u8]> {
    if p.len() < 28 || p[0] >> 4 != 4 || p[9] != 17 {
        return None;
    }
    let ihl = usize::from(p[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    // More fragments, or a fragment offset: a DHCP reply is never fragmented in practice.
    if u16::from_be_bytes([p[6], p[7]]) & 0x3fff != 0 || ihl < 20 || total > p.len() {
        return None;
    }
    let udp = p.get(ihl..total)?;
    if udp.len() < 8 || u16::from_be_bytes([udp[2], udp[3]]) != port {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    udp.get(8..len.max(8))
}

/// Fills `buf` from the kernel's random source.
pub fn random_bytes(buf: &mut [u8]) {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: the pointer and length describe the unfilled rest of `buf`.
        let n = unsafe {
            libc::getrandom(
                buf[done..].as_mut_ptr() as *mut libc::c_void,
                buf.len() - done,
                0,
            )
        };
        if n > 0 {
            done += n as usize;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_built_packet_carries_its_payload_with_valid_checksums() {
        let p = ipv4_udp(
            Ipv4Addr::new(192, 0, 2, 10),
            Ipv4Addr::new(192, 0, 2, 1),
            68,
            67,
            b"hello",
        );
        assert_eq!(checksum(&[&p[..20]]), 0, "IP header checksum");
        let pseudo = [&p[12..20], &[0, 17], &p[24..26]].concat();
        assert_eq!(checksum(&[&pseudo, &p[20..]]), 0, "UDP checksum");
        assert_eq!(udp_payload(&p, 67), Some(&b"hello"[..]));
        assert_eq!(udp_payload(&p, 68), None, "another port");
        let mut frag = p.clone();
        frag[6] = 0x20;
        assert_eq!(udp_payload(&frag, 67), None, "a fragment");
        assert_eq!(udp_payload(&p[..27], 67), None, "truncated");
    }
}
