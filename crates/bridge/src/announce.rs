//! Gratuitous ARP from the container once its bridge port forwards. containernetworking/plugins
//! #756: since 1.1.1 the reference relies on `arp_notify` alone. The kernel sends that
//! announcement when the container end comes up, before the bridge has enabled the host end's
//! port, and the bridge drops it. So a container that takes over an address (a restart, a new
//! container given a freed address) stays unreachable, for seconds, from neighbours that cached
//! the old MAC. We announce each IPv4 address once the port is up: a broadcast ARP request with
//! sender and target both the address (RFC 5227's announcement). Linux neighbours then replace
//! their entry at once.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::libc;

const ETH_P_ARP: u16 = 0x0806;

/// The Ethernet frame announcing `ip` at `mac`.
pub fn announcement(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    // Ethernet, IPv4, 6-byte and 4-byte addresses, request.
    f[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    // The target hardware address stays zero (unknown, as in a request).
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// Sends the announcements of `ips` on the link `ifindex` of the calling thread's namespace.
pub fn announce(ifindex: u32, mac: [u8; 6], ips: &[Ipv4Addr]) -> io::Result<()> {
    // SAFETY: socket(2) with constant arguments; the descriptor is owned below.
    let raw = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            i32::from(ETH_P_ARP.to_be()),
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = ETH_P_ARP.to_be();
    sa.sll_ifindex = i32::try_from(ifindex).unwrap_or(0);
    sa.sll_halen = 6;
    sa.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    for ip in ips {
        let frame = announcement(mac, *ip);
        // SAFETY: the frame and the sockaddr_ll are valid for the lengths given.
        let rc = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                &sa as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announcement_is_a_broadcast_request_from_and_for_the_address() {
        let mac = [2, 0, 0, 0, 0, 9];
        let f = announcement(mac, Ipv4Addr::new(10, 1, 2, 3));
        assert_eq!(&f[0..6], &[0xff; 6]);
        assert_eq!(&f[6..12], &mac);
        assert_eq!(&f[12..14], &[8, 6]);
        assert_eq!(&f[20..22], &[0, 1], "a request");
        assert_eq!(&f[22..28], &mac);
        assert_eq!(&f[28..32], &[10, 1, 2, 3]);
        assert_eq!(&f[32..38], &[0; 6]);
        assert_eq!(&f[38..42], &[10, 1, 2, 3]);
    }
}
