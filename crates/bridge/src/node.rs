//! What every verb shares: opening the container namespace, naming and tagging host veths,
//! waiting for a bridge port, mapping kernel errors to CNI errors.

use std::io::Read;
use std::time::{Duration, Instant};

use cni::{Call, Error};
use netlink::{Link, Netlink};
use netns::NetNs;

/// How long ADD waits for a new bridge port to forward before undoing (reference: ~2.5 s of
/// fixed sleeps starting at 50 ms, #463; here a short backoff that returns as soon as it is up).
const PORT_UP_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a new port may stay in STP's listening and learning states (twice the forward
/// delay, the kernel's default 15 s and at most 30 s, plus the hello that starts it).
const PORT_FORWARDING_TIMEOUT: Duration = Duration::from_secs(65);
/// `BR_STATE_FORWARDING` (include/uapi/linux/if_bridge.h).
const BR_STATE_FORWARDING: u8 = 3;
/// `IFALIASZ - 1`: the longest alias the kernel keeps.
const MAX_ALIAS: usize = 255;
/// Tag at the start of the alias of every host veth this plugin creates.
const ALIAS_TAG: &str = "multihome-bridge";

/// A kernel failure: code 999 with what was attempted.
pub fn kernel(e: netlink::Error) -> Error {
    Error::internal(e.to_string())
}

/// An nftables failure.
pub fn nft(e: nft::Error) -> Error {
    Error::internal(e.to_string())
}

/// The container namespace named by CNI_NETNS.
pub fn open_netns(call: &Call) -> Result<NetNs, Error> {
    let path = call
        .env
        .netns
        .as_ref()
        .ok_or_else(|| Error::invalid_env("CNI_NETNS is required"))?;
    NetNs::open(path).map_err(|e| Error::invalid_env(format!("CNI_NETNS={}: {e}", path.display())))
}

/// A netlink socket in the container namespace.
pub fn container_netlink(ns: &NetNs) -> Result<Netlink, Error> {
    Netlink::connect_in(ns).map_err(kernel)
}

/// A netlink socket in the node namespace (the plugin's own).
pub fn node_netlink() -> Result<Netlink, Error> {
    Netlink::connect().map_err(kernel)
}

/// The owner tag written into the alias of a host veth, so that GC can find the attachments
/// whose DEL never came: `multihome-bridge cid=<id> if=<ifname> net=<network>`.
pub fn owner_alias(network: &str, container_id: &str, ifname: &str) -> String {
    let mut s = format!("{ALIAS_TAG} cid={container_id} if={ifname} net={network}");
    if s.len() > MAX_ALIAS {
        let mut cut = MAX_ALIAS;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// The owner of a host veth: (container ID, ifname, network) read back from its alias.
/// Container IDs and interface names contain no spaces; the network name comes last.
pub fn parse_owner(alias: &str) -> Option<(String, String, String)> {
    let rest = alias.strip_prefix(ALIAS_TAG)?.strip_prefix(" cid=")?;
    let (cid, rest) = rest.split_once(" if=")?;
    let (ifname, network) = rest.split_once(" net=")?;
    Some((cid.to_string(), ifname.to_string(), network.to_string()))
}

/// `veth` + 8 random hex digits, as the reference names host ends.
pub fn random_veth_name() -> String {
    let mut b = [0u8; 4];
    let filled = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    if filled.is_err() {
        // Fall back on the clock and pid: uniqueness is re-checked by the kernel (EEXIST).
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        b = (t ^ std::process::id().rotate_left(16)).to_be_bytes();
    }
    format!("veth{:02x}{:02x}{:02x}{:02x}", b[0], b[1], b[2], b[3])
}

/// Waits until the host end is operationally up (a new bridge port starts disabled and
/// forwards once the kernel's link watcher has seen the carrier), polling with a short backoff.
pub fn wait_port_up(nl: &Netlink, port: &Link) -> Result<Link, Error> {
    wait_port(nl, port, false)
}

/// Waits until the host end forwards frames: up, and past STP's listening and learning states
/// on a bridge that runs STP (a port of a bridge without STP forwards as soon as it is up). For
/// an IPAM plugin that talks on the wire (dhcp) before the container is configured: its DISCOVERs
/// would be dropped by a port that does not forward yet.
pub fn wait_port_forwarding(nl: &Netlink, port: &Link) -> Result<Link, Error> {
    wait_port(nl, port, true)
}

fn wait_port(nl: &Netlink, port: &Link, forwarding: bool) -> Result<Link, Error> {
    let (limit, most) = if forwarding {
        (PORT_FORWARDING_TIMEOUT, Duration::from_millis(100))
    } else {
        (PORT_UP_TIMEOUT, Duration::from_millis(50))
    };
    let start = Instant::now();
    let mut pause = Duration::from_micros(200);
    loop {
        let link = nl
            .link_by_index(port.index)
            .map_err(kernel)?
            .ok_or_else(|| {
                Error::internal(format!(
                    "host veth {} disappeared while waiting for it",
                    port.name
                ))
            })?;
        let state = link.port.map(|p| p.state);
        let stp_ok = !forwarding || state.is_none_or(|s| s == BR_STATE_FORWARDING);
        if link.oper_up && stp_ok {
            return Ok(link);
        }
        if start.elapsed() > limit {
            return Err(Error::try_again_later(if forwarding {
                format!(
                    "bridge port {} does not forward after {limit:?} (STP state {state:?})",
                    port.name
                )
            } else {
                format!("bridge port {} did not come up within {limit:?}", port.name)
            }));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(most);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_alias_round_trips_and_keeps_spaces_in_network_names() {
        let a = owner_alias("my net", "abc123", "net1");
        assert_eq!(a, "multihome-bridge cid=abc123 if=net1 net=my net");
        assert_eq!(
            parse_owner(&a),
            Some(("abc123".into(), "net1".into(), "my net".into()))
        );
        assert_eq!(parse_owner("something else"), None);
    }

    #[test]
    fn a_long_alias_is_cut_to_what_the_kernel_keeps() {
        let a = owner_alias(&"n".repeat(400), &"c".repeat(64), "eth0");
        assert_eq!(a.len(), MAX_ALIAS);
    }

    #[test]
    fn host_veth_names_look_like_the_reference_ones() {
        let n = random_veth_name();
        assert_eq!(n.len(), 12);
        assert!(n.starts_with("veth") && n[4..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(random_veth_name(), random_veth_name());
    }
}
