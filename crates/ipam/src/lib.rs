//! IP address management for the suite's IPAM executables: fixed addresses (`static`) now;
//! ranges, exclusions, allocation and the stores of `whereabouts` as they arrive.
//!
//! This crate decides which addresses an attachment gets and records reservations; it must not
//! configure interfaces (the main plugin does that with the result).

pub mod file_store;
pub mod fixed;
pub mod range;
pub mod store;
pub mod whereabouts;
pub mod whereabouts_conf;
