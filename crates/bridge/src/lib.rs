//! The `bridge` CNI plugin: a veth from the container into a Linux bridge of the node, with the
//! reference plugin's keys and results, VLAN access and trunk ports, MAC spoof check and
//! masquerade; plus what the reference lacks: STATUS, GC, DEL that cleans rules without the
//! netns (reference #810), an ADD that undoes everything on failure (#29), CHECK without IPAM.
//!
//! The plugin runs in the node's network namespace (as runtimes call it). It never deletes the
//! bridge (shared by every attachment) and touches only links, addresses and rules of the
//! attachment it serves, plus the bridge's gateway address and the forwarding sysctls when
//! asked to.

mod add;
mod announce;
mod check;
pub mod conf;
mod del;
mod gc;
mod node;

use cni::{Call, CniResult, Error, Plugin};

/// The `bridge` plugin.
#[derive(Debug, Clone, Copy)]
pub struct Bridge;

impl Plugin for Bridge {
    fn about(&self) -> &str {
        "multihome bridge: Linux bridge attachments (drop-in for the reference bridge plugin)"
    }

    fn known_args(&self) -> &[&str] {
        &["MAC"]
    }

    fn add(&self, call: &Call) -> Result<CniResult, Error> {
        add::add(call)
    }

    fn del(&self, call: &Call) -> Result<(), Error> {
        del::del(call)
    }

    fn check(&self, call: &Call) -> Result<(), Error> {
        check::check(call)
    }

    fn status(&self, call: &Call) -> Result<(), Error> {
        gc::status(call)
    }

    fn gc(&self, call: &Call) -> Result<(), Error> {
        gc::gc(call)
    }
}
