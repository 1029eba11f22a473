//! /proc/sys knobs without a netlink attribute (IPv6 `accept_dad`, `accept_ra`, forwarding).
//!
//! /proc/sys/net resolves to the network namespace of the thread that opens the file, so the
//! caller enters the right namespace first (see the `netns` crate).

use std::fs;
use std::io::Write;
use std::path::PathBuf;

/// A failed sysctl access, naming the key.
#[derive(Debug, thiserror::Error)]
#[error("failed to {op} sysctl {key}: {source}")]
pub struct Error {
    pub op: &'static str,
    pub key: String,
    #[source]
    pub source: std::io::Error,
}

impl Error {
    /// The key does not exist (interface gone, or IPv6 disabled in this namespace).
    pub fn is_not_found(&self) -> bool {
        self.source.kind() == std::io::ErrorKind::NotFound
    }
}

fn path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.trim_start_matches('/').replace('.', "/"))
}

/// Writes `value` to `key` (`net/ipv4/ip_forward` or `net.ipv4.ip_forward`; interface names
/// with dots must use the slash form).
pub fn write(key: &str, value: &str) -> Result<(), Error> {
    let p = if key.contains('/') {
        PathBuf::from("/proc/sys").join(key.trim_start_matches('/'))
    } else {
        path(key)
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .map_err(|source| Error {
            op: "open",
            key: key.to_string(),
            source,
        })?;
    f.write_all(value.as_bytes()).map_err(|source| Error {
        op: "write",
        key: key.to_string(),
        source,
    })
}

/// Reads `key`, trimmed.
pub fn read(key: &str) -> Result<String, Error> {
    let p = if key.contains('/') {
        PathBuf::from("/proc/sys").join(key.trim_start_matches('/'))
    } else {
        path(key)
    };
    fs::read_to_string(&p)
        .map(|s| s.trim().to_string())
        .map_err(|source| Error {
            op: "read",
            key: key.to_string(),
            source,
        })
}

/// Writes `value` unless the key already holds it (saves a write that would wake sysctl
/// notifiers for nothing).
pub fn ensure(key: &str, value: &str) -> Result<(), Error> {
    if read(key).map(|v| v == value).unwrap_or(false) {
        return Ok(());
    }
    write(key, value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_key_in_either_spelling_and_names_a_missing_one() {
        assert_eq!(read("kernel/ostype").unwrap(), "Linux");
        assert_eq!(read("kernel.ostype").unwrap(), "Linux");
        let e = read("net/ipv6/conf/multihome-none/accept_dad").unwrap_err();
        assert!(e.is_not_found());
        assert!(e
            .to_string()
            .contains("net/ipv6/conf/multihome-none/accept_dad"));
    }
}
