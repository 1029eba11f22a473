//! Crash-safe files: JSON written to a temporary file, fdatasync'd, renamed over the old one
//! (so a reader sees the old or the new content, never a torn one), mode 0600; and advisory
//! locks on sibling `.lock` files that are never renamed (a lock on a renamed-over inode would
//! protect nothing).
//!
//! The directory is not fsync'd after the rename: after a power loss the previous version may
//! come back, which is consistent (the node's containers are gone too), never corrupt.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::store::StoreError;

fn unavailable(what: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("{}: {e}", what.display()))
}

/// Creates `dir` and its parents with mode 0700.
pub fn ensure_dir(dir: &Path) -> Result<(), StoreError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| unavailable(dir, e))
}

/// Reads JSON from `path`; a missing file is `None`, one that does not parse is `Corrupt`.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StoreError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unavailable(path, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StoreError::Corrupt {
            what: path.display().to_string(),
            why: e.to_string(),
        })
}

/// Writes JSON to `path` crash-safely (temporary file, fdatasync, rename), mode 0600.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(value).map_err(|e| unavailable(path, e))?;
    let tmp = tmp_path(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| unavailable(&tmp, e))?;
    file.write_all(&bytes)
        .and_then(|_| file.sync_data())
        .map_err(|e| unavailable(&tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| unavailable(path, e))
}

/// Removes `path`; a missing file is fine.
pub fn remove(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(unavailable(path, e)),
        _ => Ok(()),
    }
}

/// A temporary name unique to this write (process and sequence), so concurrent writers, also
/// threads of one process, never share one.
fn tmp_path(path: &Path) -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".tmp{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    path.with_file_name(name)
}

/// An exclusive advisory lock held until dropped.
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

/// Locks `<path>.lock` exclusively, waiting for other holders (other plugin processes).
pub fn lock(path: &Path) -> Result<Lock, StoreError> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    let lock_path = path.with_file_name(name);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| unavailable(&lock_path, e))?;
    file.lock().map_err(|e| unavailable(&lock_path, e))?;
    Ok(Lock { _file: file })
}
