//! Black-box conformance harness for multihome's CNI plugins.
//!
//! This crate owns everything needed to run the built executables the way a
//! CNI runtime does, without touching the host's network: self-deleting
//! network namespaces ([`netns`]), locating our and the reference plugins
//! ([`plugin`]), raw plugin invocations ([`exec`]), a Rust runtime with
//! libcni's semantics ([`runtime`]), and a client built from the real
//! libcni ([`libcni`]) to compare against, a live migration on a bridge network
//! ([`migration`]), a whereabouts lab for the IPAM tests ([`wb_lab`]), podman and containerd
//! driving the plugins ([`runtimes`]), and benchmark support
//! ([`mod@bench`]). The tests under `tests/` use it.
//!
//! Every entry point needs root; nothing is ever configured in the root
//! network namespace: plugins run inside a node namespace the test owns.

pub mod bench;
pub mod cache;
pub mod conflist;
pub mod dhcp;
pub mod error;
pub mod etcd;
pub mod exec;
pub mod libcni;
pub mod migration;
pub mod netns;
pub mod ovn;
pub mod ovn_migration;
pub mod plugin;
pub mod process;
pub mod runtime;
pub mod runtime_conf;
pub mod runtimes;
pub mod settings;
pub mod tempdir;
pub mod wb_lab;

pub use error::CniError;
pub use etcd::EtcdCluster;
pub use exec::{CniVars, Invocation};
pub use libcni::LibcniClient;
pub use netns::{Netns, Node};
pub use ovn::OvnLab;
pub use plugin::{ours, reference, PluginDir};
pub use process::Outcome;
pub use runtime::{Call, Runtime};
pub use runtime_conf::RuntimeConf;
pub use settings::NodeSettings;
pub use tempdir::TempDir;

/// Panics unless the harness runs as root: the tests cannot run without it
/// and must fail loudly rather than skip.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "conformance tests need root (they create network namespaces); run them as root"
    );
}

/// Polls `cond` until it holds, at most `within`; panics naming `what` when it never does. The
/// one way tests wait for a condition (no sleep stands in for one).
pub fn wait_until(what: &str, within: std::time::Duration, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    let mut pause = std::time::Duration::from_millis(2);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(std::time::Duration::from_millis(50));
    }
}
