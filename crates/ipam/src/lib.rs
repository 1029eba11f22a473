//! IP address management shared by the suite's IPAM executables: ranges and what of them may be
//! handed out, fixed addresses (`static`), and the `Store` trait every reservation store
//! implements (the stores themselves live in `whereabouts`), with the decisions on addresses that
//! belong to a MAC (`sticky`).
//!
//! This crate decides which addresses a range offers; it must not configure interfaces, and it
//! links no network client (`static` stays small).

pub mod fixed;
pub mod range;
pub mod sticky;
pub mod store;
