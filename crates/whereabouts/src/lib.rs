//! `whereabouts` IPAM: whereabouts' configuration read and checked, the plugin's verbs, and the
//! two stores reservations live in (the embedded file store on one node, etcd across nodes).
//!
//! This crate decides which address an attachment gets and keeps reservations unique in their
//! pool, whatever the runtime does (calls killed, retried, run concurrently); ranges and fixed
//! addresses come from `ipam`, the etcd transport from `etcd`. It must not configure interfaces.

pub mod conf;
pub mod etcd_store;
pub mod file_store;
pub mod plugin;

pub use plugin::{open_store, Whereabouts};
