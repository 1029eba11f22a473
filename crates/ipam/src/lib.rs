//! IP address management for the suite's IPAM executables: fixed addresses (`static`); ranges,
//! exclusions, allocation and the stores of `whereabouts` (the embedded file store, etcd).
//!
//! This crate decides which addresses an attachment gets and records reservations; it must not
//! configure interfaces (the main plugin does that with the result).

pub mod etcd_http;
pub mod etcd_json;
pub mod etcd_store;
pub mod file_store;
pub mod fixed;
pub mod range;
pub mod store;
pub mod whereabouts;
pub mod whereabouts_conf;
