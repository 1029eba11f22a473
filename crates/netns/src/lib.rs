//! Network namespaces: open one by path, check it really is one, and run code inside it on the
//! calling thread with a guard that always switches back (also when the code returns early or
//! panics).
//!
//! `setns(2)` changes the namespace of one thread only. Everything that must act inside a
//! namespace (opening a netlink socket, writing /proc/sys/net, spawning `nft`) therefore runs on
//! the thread that entered it; sockets keep the namespace they were created in, so a netlink
//! socket opened inside a namespace can be used after leaving it.
//!
//! This crate must not create or delete namespaces: runtimes own them (tests use `ip netns`).

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};
use nix::sys::statfs::fstatfs;

/// `NSFS_MAGIC` from include/uapi/linux/magic.h: the file system of /proc/<pid>/ns/* and of
/// bind mounts of them (/run/netns/<name>).
const NSFS_MAGIC: i64 = 0x6e73_6673;

/// What can go wrong with a namespace path.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The path does not exist (the sandbox is gone); DEL treats this as "nothing to do".
    #[error("network namespace {path:?} does not exist")]
    NotFound { path: PathBuf },
    /// The path exists but is not a namespace file.
    #[error("{path:?} is not a network namespace (file system magic {magic:#x})")]
    NotANamespace { path: PathBuf, magic: i64 },
    /// Opening or inspecting the path failed otherwise.
    #[error("failed to open network namespace {path:?}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `setns(2)` into the namespace failed.
    #[error("failed to enter network namespace {path:?}: {errno}")]
    Enter { path: PathBuf, errno: nix::Error },
}

/// An open network namespace.
#[derive(Debug)]
pub struct NetNs {
    file: File,
    path: PathBuf,
}

impl NetNs {
    /// Opens the namespace at `path` (e.g. /run/netns/x or /proc/<pid>/ns/net).
    pub fn open(path: impl AsRef<Path>) -> Result<NetNs, Error> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|source| match source.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound { path: path.clone() },
            _ => Error::Open {
                path: path.clone(),
                source,
            },
        })?;
        let stat = fstatfs(&file).map_err(|e| Error::Open {
            path: path.clone(),
            source: std::io::Error::from(e),
        })?;
        let magic = stat.filesystem_type().0 as i64;
        // Kernels before 3.19 reported namespace files on procfs; nothing that old runs
        // network plugins today, and accepting procfs would accept any /proc file.
        if magic != NSFS_MAGIC {
            return Err(Error::NotANamespace { path, magic });
        }
        Ok(NetNs { file, path })
    }

    /// The namespace of the calling thread.
    pub fn current() -> Result<NetNs, Error> {
        NetNs::open("/proc/thread-self/ns/net")
    }

    /// The path this namespace was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The raw descriptor, for netlink attributes such as `IFLA_NET_NS_FD`.
    pub fn raw_fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// Moves the calling thread into this namespace until the guard is dropped.
    pub fn enter(&self) -> Result<Guard, Error> {
        let previous = NetNs::current()?;
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|errno| Error::Enter {
            path: self.path.clone(),
            errno,
        })?;
        Ok(Guard { previous })
    }

    /// Runs `f` inside this namespace on the calling thread and switches back afterwards.
    pub fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T, Error> {
        let _guard = self.enter()?;
        Ok(f())
    }

    /// True when both handles refer to the same namespace (same inode on nsfs).
    pub fn same_as(&self, other: &NetNs) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.file.metadata(), other.file.metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
}

impl AsFd for NetNs {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// Returns the thread to the namespace it was in when dropped.
#[derive(Debug)]
pub struct Guard {
    previous: NetNs,
}

impl Drop for Guard {
    fn drop(&mut self) {
        // A thread left in the wrong namespace would configure the wrong node: there is no safe
        // way to continue, so a failed return is fatal.
        if let Err(e) = setns(self.previous.file.as_fd(), CloneFlags::CLONE_NEWNET) {
            eprintln!(
                "fatal: cannot return to network namespace {:?}: {e}",
                self.previous.path
            );
            std::process::abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_path_is_reported_as_not_found() {
        let err = NetNs::open("/run/netns/multihome-no-such-namespace").unwrap_err();
        assert!(matches!(err, Error::NotFound { .. }), "{err}");
    }

    #[test]
    fn a_regular_file_is_not_a_namespace() {
        let err = NetNs::open("/proc/self/status").unwrap_err();
        assert!(matches!(err, Error::NotANamespace { .. }), "{err}");
        assert!(err.to_string().contains("/proc/self/status"));
    }

    #[test]
    fn the_current_namespace_is_the_same_as_itself_and_entering_it_returns() {
        let a = NetNs::current().unwrap();
        let b = NetNs::open("/proc/self/ns/net").unwrap();
        assert!(a.same_as(&b));
        let inside = a.run(|| NetNs::current().unwrap()).unwrap();
        assert!(inside.same_as(&a));
        assert!(NetNs::current().unwrap().same_as(&a));
    }
}
