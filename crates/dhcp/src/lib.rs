//! DHCPv4 for the `dhcp` IPAM (issue 17, in progress): the wire format of a DHCP message and its
//! options (RFC 2131/2132), the client identifier the reference plugin sends (so servers'
//! reservations keyed on it keep matching), and what a lease's options mean as a CNI result
//! (address and mask, gateway from option 3, routes from option 121 else option 33 plus the
//! default route, DNS from options 6, 15 and 119, MTU from option 26), and the reference's
//! socket protocol between the CNI executable and its daemon (`rpc`).
//!
//! `message` and `lease` are pure: no socket, no namespace, no clock. `rpc` only frames calls on
//! a unix socket. The daemon and the CNI side build on them.

pub mod client;
pub mod conf;
pub mod daemon;
pub mod lease;
pub mod message;
pub mod packet;
pub mod plugin;
pub mod rpc;
pub mod signals;
pub mod store;

#[cfg(test)]
mod lease_tests;
#[cfg(test)]
mod message_tests;
#[cfg(test)]
mod rpc_tests;
