//! Named network namespaces that delete themselves.

use std::fs::File;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use nix::fcntl::{Flock, FlockArg};
use serde_json::Value;

use crate::tempdir::unique_name;

/// A network namespace made with `ip netns add`, with `lo` up, deleted
/// (`ip netns del`) on drop.
///
/// Its name is `mh-<tag>-<pid>-<counter>`, unique among live processes.
#[derive(Debug)]
pub struct Netns {
    name: String,
    path: PathBuf,
}

impl Netns {
    /// Creates a namespace; panics (after cleaning up) if it cannot.
    pub fn new(tag: &str) -> Netns {
        crate::require_root();
        let name = unique_name(tag);
        {
            let _guard = netns_lock();
            ip(&["netns", "add", &name]);
        }
        let netns = Netns {
            path: Path::new("/run/netns").join(&name),
            name,
        };
        ip(&["-n", &netns.name, "link", "set", "lo", "up"]);
        netns
    }

    /// The name `ip netns` knows it by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`, the path runtimes pass as `CNI_NETNS`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `argv` inside the namespace with `ip netns exec`.
    pub fn run(&self, argv: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(argv)
            .output()
            .unwrap_or_else(|e| panic!("cannot run ip netns exec: {e}"))
    }

    /// Runs `argv` inside the namespace; panics unless it succeeds, else
    /// returns its stdout.
    pub fn run_ok(&self, argv: &[&str]) -> String {
        let out = self.run(argv);
        assert!(
            out.status.success(),
            "{argv:?} in {} failed: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs a `sh -c` script inside the namespace.
    pub fn sh(&self, script: &str) -> Output {
        self.run(&["sh", "-c", script])
    }

    /// Runs a `sh -c` script inside the namespace; panics with its stderr unless it succeeds.
    pub fn sh_ok(&self, script: &str) {
        let out = self.sh(script);
        assert!(
            out.status.success(),
            "in {}: {script}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Whether a link called `ifname` exists in the namespace.
    pub fn has_link(&self, ifname: &str) -> bool {
        self.run(&["ip", "link", "show", "dev", ifname])
            .status
            .success()
    }

    /// The IPv4 and IPv6 addresses of `ifname` as `addr/prefix` strings
    /// (from `ip -j addr`); empty when the link does not exist.
    pub fn addresses(&self, ifname: &str) -> Vec<String> {
        let out = self.run(&["ip", "-j", "addr", "show", "dev", ifname]);
        let links: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let infos = links.as_array().into_iter().flatten();
        infos
            .filter_map(|link| link["addr_info"].as_array())
            .flatten()
            .map(|a| format!("{}/{}", a["local"].as_str().unwrap_or(""), a["prefixlen"]))
            .collect()
    }

    /// Whether a namespace called `name` is listed by `ip netns list`.
    pub fn exists(name: &str) -> bool {
        let out = Command::new("ip").args(["netns", "list"]).output();
        let listing = out.map(|o| o.stdout).unwrap_or_default();
        String::from_utf8_lossy(&listing)
            .lines()
            .any(|line| line.split_whitespace().next() == Some(name))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _guard = netns_lock();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// A node's network namespace: where the runtime, and so the plugins, run.
///
/// Dereferences to its [`Netns`].
#[derive(Debug)]
pub struct Node(Netns);

impl Node {
    /// Creates a node namespace named after `tag`.
    pub fn new(tag: &str) -> Node {
        Node(Netns::new(tag))
    }
}

impl Deref for Node {
    type Target = Netns;

    fn deref(&self) -> &Netns {
        &self.0
    }
}

/// Runs `ip` with `args` in the caller's namespace; panics unless it succeeds.
fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip (install iproute2): {e}"));
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Serialises `ip netns add/del` across threads and processes: concurrent
/// first-time `ip netns add` calls race on mounting `/run/netns`.
fn netns_lock() -> Option<Flock<File>> {
    let path = std::env::temp_dir().join("multihome-netns.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .ok()?;
    Flock::lock(file, FlockArg::LockExclusive).ok()
}
