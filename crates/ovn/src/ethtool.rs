//! The one ethtool setting the plugin needs: TX checksum offload off on a container interface
//! whose packets go into Open vSwitch's userspace datapath (`datapath_type=netdev`). With it on,
//! the kernel hands the veth partially checksummed packets, OVS forwards them as they are and
//! TCP stalls while ping works (OVS-DPDK users hit the same).

use std::os::fd::AsRawFd;

use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

/// `SIOCETHTOOL` from include/uapi/linux/sockios.h.
const SIOCETHTOOL: nix::libc::c_ulong = 0x8946;
/// `ETHTOOL_STXCSUM` from include/uapi/linux/ethtool.h.
const ETHTOOL_STXCSUM: u32 = 0x17;

#[repr(C)]
struct EthtoolValue {
    cmd: u32,
    data: u32,
}

#[repr(C)]
struct IfReq {
    name: [u8; 16],
    data: *mut EthtoolValue,
    _pad: [u8; 16],
}

/// Turns TX checksum offload off on `ifname` in the calling thread's network namespace.
pub fn tx_checksum_off(ifname: &str) -> std::io::Result<()> {
    if ifname.len() >= 16 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("interface name {ifname:?} is too long"),
        ));
    }
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(std::io::Error::from)?;
    let mut value = EthtoolValue {
        cmd: ETHTOOL_STXCSUM,
        data: 0,
    };
    let mut req = IfReq {
        name: [0; 16],
        data: &mut value,
        _pad: [0; 16],
    };
    req.name[..ifname.len()].copy_from_slice(ifname.as_bytes());
    // SAFETY: `req` is a properly laid out `struct ifreq` whose `ifr_data` points at a live
    // `struct ethtool_value`; both outlive the call, and the fd is an open socket.
    let rc = unsafe { nix::libc::ioctl(sock.as_raw_fd(), SIOCETHTOOL, &mut req as *mut IfReq) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
