//! A fresh network namespace per test, entered by the test's own thread.
//!
//! nft rule changes must never happen in the root network namespace: every
//! test enters a namespace of its own (`ip netns add mh-nft-<pid>-<n>`) with
//! `setns` on its thread before it calls the crate, so the `nft` children,
//! forked from that thread, run there. The guard returns the thread to its
//! original namespace and deletes the test's one when dropped, panic or not.

#![allow(dead_code)] // each test file uses a different part of this

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::sched::{setns, CloneFlags};
use serde_json::Value;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The nft binary the tests use.
pub fn nft_program() -> &'static str {
    if std::path::Path::new("/usr/sbin/nft").exists() {
        "/usr/sbin/nft"
    } else {
        "nft"
    }
}

pub fn nft() -> nft::Nft {
    nft::Nft::with_program(nft_program())
}

/// The current thread's network namespace inode.
fn thread_netns_ino() -> u64 {
    std::fs::metadata("/proc/thread-self/ns/net")
        .expect("stat /proc/thread-self/ns/net")
        .ino()
}

/// A test's own network namespace, entered by the current thread.
pub struct TestNetns {
    name: String,
    original: Option<File>,
}

impl TestNetns {
    /// Creates a namespace and moves the current thread into it. Not being root is a
    /// failure, never a skip: these tests prove behaviour against the real kernel.
    pub fn enter() -> Option<TestNetns> {
        assert!(
            nix::unistd::geteuid().is_root(),
            "these tests need root to create network namespaces (run `make test` as root)"
        );
        let name = format!(
            "mh-nft-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run ip netns add");
        assert!(status.success(), "ip netns add {name} failed");
        // From here on the guard deletes the namespace, whatever happens.
        let mut guard = TestNetns {
            name,
            original: None,
        };
        let original =
            File::open("/proc/thread-self/ns/net").expect("open the thread's network namespace");
        let original_ino = thread_netns_ino();
        let target = File::open(format!("/run/netns/{}", guard.name)).expect("open /run/netns");
        let target_ino = target.metadata().expect("stat /run/netns").ino();
        setns(&target, CloneFlags::CLONE_NEWNET).expect("setns into the test namespace");
        guard.original = Some(original);
        let now = thread_netns_ino();
        assert!(
            now == target_ino && now != original_ino,
            "the test thread did not move into {}",
            guard.name
        );
        Some(guard)
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        if let Some(original) = self.original.take() {
            if let Err(e) = setns(&original, CloneFlags::CLONE_NEWNET) {
                eprintln!("could not return to the original network namespace: {e}");
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// `nft -j list <args>` run directly (not through the crate), parsed; `None`
/// when nft fails (the object does not exist).
pub fn nft_list(args: &[&str]) -> Option<Value> {
    let out = Command::new(nft_program())
        .arg("-j")
        .arg("list")
        .args(args)
        .output()
        .expect("run nft");
    if !out.status.success() {
        return None;
    }
    Some(serde_json::from_slice(&out.stdout).expect("nft printed JSON"))
}

/// The objects of one kind (`"chain"`, `"rule"`, `"table"`) in a listing.
pub fn objects<'a>(doc: &'a Value, kind: &str) -> Vec<&'a Value> {
    doc["nftables"]
        .as_array()
        .expect("nftables array")
        .iter()
        .filter_map(|o| o.get(kind))
        .collect()
}

/// The names of the chains in a listing.
pub fn chain_names(doc: &Value) -> Vec<String> {
    objects(doc, "chain")
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

/// The rules of `chain` in a listing.
pub fn rules_of<'a>(doc: &'a Value, chain: &str) -> Vec<&'a Value> {
    objects(doc, "rule")
        .into_iter()
        .filter(|r| r["chain"] == chain)
        .collect()
}
