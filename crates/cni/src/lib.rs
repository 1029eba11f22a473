//! The CNI specification, for every version from 0.1.0 to 1.1.0: plugin configuration,
//! environment and CNI_ARGS, results of every version and their conversions, errors with their
//! codes, the verb dispatcher and delegation to IPAM plugins.
//!
//! This crate owns the protocol, and the one rule for files a call opens on the node ([`nodefs`],
//! [`node`]: the node's settings, and what a network configuration may name). It touches nothing
//! else on the node (no netlink): plugins do that, and they get here a validated, typed call
//! first.

pub mod args;
pub mod config;
pub mod delegate;
pub mod env;
pub mod error;
pub mod introspect;
pub mod log;
pub mod node;
pub mod nodefs;
pub mod result;
pub mod skel;
pub mod undo;
pub mod version;

pub use args::CniArgs;
pub use config::{Attachment, NetConf};
pub use env::{Command, Env};
pub use error::{code, Error};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use skel::{dispatch, run, Call, Outcome, Plugin};
pub use version::Version;
