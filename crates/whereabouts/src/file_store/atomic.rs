//! Crash-safe files: JSON written to a temporary file, fdatasync'd, renamed over the old one
//! (so a reader sees the old or the new content, never a torn one), mode 0600; and the advisory
//! lock of a pool, on a file that is never renamed (a lock on a renamed-over inode would protect
//! nothing), waited for within a deadline.
//!
//! The directory is not fsync'd after the rename: after a power loss the previous version may
//! come back, which is consistent (the node's containers are gone too), never corrupt.
//!
//! Files are opened without following symlinks and read only when they are regular files of a
//! bounded size: a planted link or a FIFO in the store cannot make the plugin write elsewhere or
//! block.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use ipam::store::StoreError;

/// `O_NOFOLLOW` and `O_NONBLOCK` (a FIFO opens at once instead of waiting for a writer), from
/// <asm-generic/fcntl.h>.
const O_NOFOLLOW: i32 = 0o400000;
const O_NONBLOCK: i32 = 0o4000;
/// The largest store file read: a block holds 256 reservations of a few hundred bytes each.
const MAX_FILE_BYTES: u64 = 4 << 20;

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

/// Reads JSON from `path`; a missing file is `None`, one that does not parse is `Corrupt`, and
/// so is anything that is not a regular file of at most [`MAX_FILE_BYTES`].
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, StoreError> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(O_NOFOLLOW | O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(not_a_store_file(path, e)),
    };
    let meta = file.metadata().map_err(|e| unavailable(path, e))?;
    if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
        return Err(StoreError::Corrupt {
            what: path.display().to_string(),
            why: format!("not a regular file of at most {MAX_FILE_BYTES} bytes"),
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| unavailable(path, e))?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StoreError::Corrupt {
            what: path.display().to_string(),
            why: e.to_string(),
        })
}

/// ELOOP from O_NOFOLLOW means a symlink sits where a store file should be.
fn not_a_store_file(path: &Path, e: std::io::Error) -> StoreError {
    if e.raw_os_error() == Some(40) {
        return StoreError::Corrupt {
            what: path.display().to_string(),
            why: "a symbolic link where a store file should be".into(),
        };
    }
    unavailable(path, e)
}

/// Writes JSON to `path` crash-safely (temporary file created exclusively, fdatasync, rename),
/// mode 0600.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(value).map_err(|e| unavailable(path, e))?;
    let tmp = tmp_path(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(O_NOFOLLOW)
        .open(&tmp)
        .map_err(|e| unavailable(&tmp, e))?;
    if let Err(e) = file.write_all(&bytes).and_then(|_| file.sync_data()) {
        let _ = fs::remove_file(&tmp);
        return Err(unavailable(&tmp, e));
    }
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        unavailable(path, e)
    })
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

/// Locks `path` exclusively, waiting for another holder at most `timeout`. A holder that hangs
/// (stopped, or stuck in fdatasync on a sick disk) is reported as "try again later", naming the
/// lock and the holder's pid and command, instead of blocking every call until the runtime
/// kills it.
pub fn lock(path: &Path, timeout: Duration) -> Result<Lock, StoreError> {
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(O_NOFOLLOW)
        .open(path)
        .map_err(|e| not_a_store_file(path, e))?;
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(50);
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(Lock { _file: file }),
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => return Err(unavailable(path, e)),
        }
        let now = Instant::now();
        if now >= deadline {
            let holder = file
                .metadata()
                .ok()
                .and_then(|m| holder_of(m.dev(), m.ino()))
                .unwrap_or_else(|| "a process that cannot be named".into());
            return Err(StoreError::Transient(format!(
                "the lock {} is still held by {holder} after {} ms",
                path.display(),
                timeout.as_millis()
            )));
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(5));
    }
}

/// Who holds the flock on the file `dev`/`ino`, from /proc/locks: `pid <n> (<comm>)`.
fn holder_of(dev: u64, ino: u64) -> Option<String> {
    let locks = fs::read_to_string("/proc/locks").ok()?;
    // "1: FLOCK  ADVISORY  WRITE 1234 00:1f:5678 0 EOF" (major and minor in hex, the inode in
    // decimal, as fs/locks.c prints them); blocked waiters are "1: -> FLOCK ...".
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let id = format!("{major:02x}:{minor:02x}:{ino}");
    let pid = locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (kind, pid, file) = (fields.get(1)?, fields.get(4)?, fields.get(5)?);
        (*kind == "FLOCK" && *file == id).then(|| pid.to_string())
    })?;
    // The kernel names the process that took the lock; a child it forked keeps holding it
    // after that process is gone.
    Some(match fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(comm) => format!("pid {pid} ({})", comm.trim()),
        Err(_) => format!("pid {pid} (exited: a process it started holds the lock)"),
    })
}
