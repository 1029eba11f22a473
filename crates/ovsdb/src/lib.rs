//! A blocking RFC 7047 (OVSDB) client for short-lived processes such as CNI plugins.
//!
//! This crate owns the wire: endpoints as `ovn-nbctl --db` writes them (`unix:PATH`,
//! `tcp:IP:PORT`, `tcp:[IPV6]:PORT`, `ssl:IP:PORT`, comma-separated, the first that connects wins), JSON-RPC 1.0
//! framing of the undelimited stream, one request at a time with a timeout on each, `echo` in
//! both directions, `monitor` updates queued while a request waits ([`Client`]); reading a
//! transaction's results into one error that says which operation failed and why ([`Error`]);
//! builders for operations ([`ops`]) and for OVSDB's JSON encoding of sets, maps and references
//! ([`value`]); what a server says about a database's cluster role ([`DatabaseStatus`]).
//!
//! It must not know any schema (OVN's tables belong to the `ovn` crate), retry on its own (the
//! caller decides whether a lost `wait` race or an unreachable database is worth another try),
//! or pull in an async runtime: std sockets with read and write timeouts are enough for a process
//! that makes a few requests and exits. `ssl:` endpoints speak TLS with a CA, a client certificate
//! and key ([`TlsConfig`]), never downgraded to plain TCP.
//!
//! ```no_run
//! use ovsdb::{ops, value, Client};
//! use serde_json::json;
//! # fn main() -> Result<(), ovsdb::Error> {
//! let mut nb = Client::connect("unix:/run/ovn/ovnnb_db.sock", std::time::Duration::from_secs(5))?;
//! let row = json!({"name": "blue", "external_ids": value::str_map(&[("k8s.ovn.org/network", "blue")])});
//! let results = nb.transact("OVN_Northbound", &[ops::insert("Logical_Switch", row, None)])?;
//! let uuid = value::as_uuid(&results[0]["uuid"]);
//! # let _ = uuid;
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod client;
mod endpoint;
mod error;
mod framer;
pub mod ops;
mod status;
mod tls;
mod transact;
pub mod value;

pub use client::Client;
pub use error::Error;
pub use status::DatabaseStatus;
pub use tls::{TlsConfig, TlsInput};
