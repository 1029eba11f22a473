//! Files on the node that a plugin, running as root, opens because a configuration names them
//! (a NAD author's `log_file`, `store_dir`, `configuration_path`) or because the node's own
//! settings do (`/etc/multihome`, TLS files). One rule for all of them:
//!
//! - **Only root can change what the path names.** Every component on the way, as the kernel
//!   resolves it, is owned by root; a directory others can write must be sticky (`/tmp`), where
//!   they cannot rename or remove what root owns; a symbolic link is followed only when root owns
//!   it (a Kubernetes secret volume is made of such links). So nothing an attacker plants on the
//!   way is used, and what was checked cannot change before it is opened.
//! - **The last component is opened, never followed** (`O_NOFOLLOW`), without blocking
//!   (`O_NONBLOCK`: a FIFO answers at once), and used only if it is a regular file of a bounded
//!   size; files made are 0600 whatever the umask; directories made are 0700.
//! - **A path a configuration names must lie below a directory the node allows** ([`below`]),
//!   checked on the path as written before the file system is looked at (so a refusal says
//!   nothing about what exists there), and again on the resolved path.
//!
//! Errors say what is wrong with the path, never what a file holds.

use std::ffi::OsString;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{ErrorKind, Read};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// `O_NOFOLLOW`, `O_NONBLOCK` and `O_CLOEXEC` from <asm-generic/fcntl.h>.
const O_NOFOLLOW: i32 = 0o400000;
const O_NONBLOCK: i32 = 0o4000;
const O_CLOEXEC: i32 = 0o2000000;
/// The kernel's limit on symbolic links followed in one lookup (MAXSYMLINKS, <linux/namei.h>).
const MAX_SYMLINKS: usize = 40;
/// The largest settings or configuration file read (a flat file, a node file, a PEM bundle).
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// Mode bits that let group or others write.
const GROUP_OTHER_WRITE: u32 = 0o022;
const STICKY: u32 = 0o1000;

/// Why a path was not used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileError {
    /// Nothing there (only where that is not a fault in itself: an optional file).
    NotFound,
    /// The path is not safe to use; the text says why, naming the component at fault.
    Refused(String),
    /// The file system failed.
    Io(String),
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileError::NotFound => f.write_str("it does not exist"),
            FileError::Refused(why) | FileError::Io(why) => f.write_str(why),
        }
    }
}

fn euid() -> u32 {
    extern "C" {
        fn geteuid() -> u32;
    }
    // SAFETY: geteuid(2) takes no arguments, cannot fail and touches no memory.
    unsafe { geteuid() }
}

/// Whether `uid` is root (or the user the plugin runs as, for tests without root).
fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == euid()
}

/// What a walk found: the resolved path of the deepest existing component, and the names below
/// it that do not exist yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The path with every symbolic link resolved, as far as it exists.
    pub existing: PathBuf,
    /// Components below `existing` that are missing (empty when the whole path exists).
    pub missing: Vec<OsString>,
}

impl Resolved {
    /// The whole resolved path.
    pub fn path(&self) -> PathBuf {
        let mut p = self.existing.clone();
        p.extend(&self.missing);
        p
    }
}

/// The components of an absolute path as written; `.` and `..` are refused (a configuration
/// has no reason to write them, and they would defeat [`below`]).
fn names(path: &Path) -> Result<Vec<OsString>, FileError> {
    if !path.is_absolute() {
        return Err(FileError::Refused(format!(
            "{} is not an absolute path",
            path.display()
        )));
    }
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::RootDir => {}
            Component::Normal(n) => out.push(n.to_os_string()),
            _ => {
                return Err(FileError::Refused(format!(
                    "{} has a \".\" or \"..\" component",
                    path.display()
                )))
            }
        }
    }
    Ok(out)
}

/// Refuses a directory that someone other than root could change.
fn check_dir(path: &Path, meta: &Metadata) -> Result<(), FileError> {
    if !trusted_owner(meta.uid()) {
        return Err(FileError::Refused(format!(
            "{} is owned by uid {}, not root: another user could replace what is below it",
            path.display(),
            meta.uid()
        )));
    }
    let mode = meta.mode();
    if mode & GROUP_OTHER_WRITE != 0 && mode & STICKY == 0 {
        return Err(FileError::Refused(format!(
            "{} can be written by others (mode {:04o}) and is not sticky: anyone could plant \
             a link there (chmod go-w)",
            path.display(),
            mode & 0o7777
        )));
    }
    Ok(())
}

/// Walks `path` from `/` the way the kernel resolves it, checking every directory and symbolic
/// link on the way (see the module documentation). The last component is not checked: the
/// caller opens it with `O_NOFOLLOW` and checks what it got.
pub fn resolve(path: &Path) -> Result<Resolved, FileError> {
    let mut queue: std::collections::VecDeque<OsString> = names(path)?.into();
    let mut cur = PathBuf::from("/");
    let root = std::fs::symlink_metadata(&cur).map_err(|e| FileError::Io(format!("/: {e}")))?;
    check_dir(&cur, &root)?;
    let mut links = 0;
    while let Some(name) = queue.pop_front() {
        if name == ".." {
            cur.pop();
            continue;
        }
        if name == "." {
            continue;
        }
        let next = cur.join(&name);
        let meta = match std::fs::symlink_metadata(&next) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let mut missing = vec![name];
                missing.extend(queue);
                if missing.iter().any(|n| n == ".." || n == ".") {
                    return Err(FileError::NotFound);
                }
                return Ok(Resolved {
                    existing: cur,
                    missing,
                });
            }
            Err(e) => return Err(FileError::Io(format!("{}: {e}", next.display()))),
        };
        let last = queue.is_empty();
        if meta.file_type().is_symlink() {
            if last {
                // Opened with O_NOFOLLOW by the caller, which refuses it.
                cur = next;
                break;
            }
            if !trusted_owner(meta.uid()) {
                return Err(FileError::Refused(format!(
                    "{} is a symbolic link owned by uid {}, not root",
                    next.display(),
                    meta.uid()
                )));
            }
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(FileError::Refused(format!(
                    "{}: too many symbolic links",
                    path.display()
                )));
            }
            let target = std::fs::read_link(&next)
                .map_err(|e| FileError::Io(format!("{}: {e}", next.display())))?;
            if target.is_absolute() {
                cur = PathBuf::from("/");
            }
            for c in target.components().rev() {
                match c {
                    Component::Normal(n) => queue.push_front(n.to_os_string()),
                    Component::ParentDir => queue.push_front("..".into()),
                    _ => {}
                }
            }
            continue;
        }
        if meta.is_dir() {
            check_dir(&next, &meta)?;
        } else if !last {
            return Err(FileError::Refused(format!(
                "{} is not a directory",
                next.display()
            )));
        }
        cur = next;
    }
    Ok(Resolved {
        existing: cur,
        missing: Vec::new(),
    })
}

/// Whether `path`, as written, lies at or below one of `roots` (component by component; no
/// `.` or `..`). Pure: nothing on the node is looked at.
pub fn below(path: &Path, roots: &[PathBuf]) -> bool {
    names(path).is_ok() && roots.iter().any(|r| path.starts_with(r))
}

/// [`below`] for the resolved path too (a root-owned link may lead elsewhere): the roots
/// resolved as far as they exist.
fn resolved_below(resolved: &Path, roots: &[PathBuf]) -> bool {
    roots.iter().any(|r| {
        let real = resolve(r).map(|x| x.path()).unwrap_or_else(|_| r.clone());
        resolved.starts_with(&real) || resolved.starts_with(r)
    })
}

/// A path a configuration named under `key`, allowed when it lies below one of `roots`
/// (as written and as resolved). The error says which key and which roots, nothing about the
/// file system when the path as written is outside them.
pub fn allowed(path: &Path, roots: &[PathBuf]) -> Result<Resolved, FileError> {
    if !below(path, roots) {
        return Err(FileError::Refused(format!(
            "{} is not below {}",
            path.display(),
            list(roots)
        )));
    }
    let resolved = resolve(path)?;
    if !resolved_below(&resolved.path(), roots) {
        return Err(FileError::Refused(format!(
            "{} leads to {}, which is not below {}",
            path.display(),
            resolved.path().display(),
            list(roots)
        )));
    }
    Ok(resolved)
}

/// `a, b or c` for messages.
pub fn list(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    match names.split_last() {
        None => "no directory (none is allowed)".into(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

fn open_flags(write: bool) -> OpenOptions {
    let mut o = OpenOptions::new();
    o.read(!write)
        .custom_flags(O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    o
}

/// ELOOP is what O_NOFOLLOW answers for a link in the last component; ENXIO a FIFO without a
/// reader opened for writing.
fn open_error(path: &Path, e: std::io::Error) -> FileError {
    match e.raw_os_error() {
        _ if e.kind() == ErrorKind::NotFound => FileError::NotFound,
        Some(40) => FileError::Refused(format!("{} is a symbolic link", path.display())),
        Some(6) => FileError::Refused(format!("{} is not a regular file", path.display())),
        _ => FileError::Io(format!("{}: {e}", path.display())),
    }
}

fn regular(path: &Path, meta: &Metadata) -> Result<(), FileError> {
    if !meta.is_file() {
        return Err(FileError::Refused(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    Ok(())
}

/// Reads a whole regular file of at most [`MAX_FILE_BYTES`] at `path`, resolved as [`resolve`]
/// does; with `strict`, the file itself must also be root's and not writable by group or
/// others (sshd's StrictModes, for the node's settings).
pub fn read(path: &Path, strict: bool) -> Result<Vec<u8>, FileError> {
    let resolved = resolve(path)?;
    if !resolved.missing.is_empty() {
        return Err(FileError::NotFound);
    }
    read_resolved(&resolved.existing, strict)
}

fn read_resolved(path: &Path, strict: bool) -> Result<Vec<u8>, FileError> {
    let file = open_flags(false)
        .open(path)
        .map_err(|e| open_error(path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| FileError::Io(format!("{}: {e}", path.display())))?;
    regular(path, &meta)?;
    if strict {
        if !trusted_owner(meta.uid()) {
            return Err(FileError::Refused(format!(
                "{} is owned by uid {}, not root",
                path.display(),
                meta.uid()
            )));
        }
        if meta.mode() & GROUP_OTHER_WRITE != 0 {
            return Err(FileError::Refused(format!(
                "{} can be written by others (mode {:04o}): the node's settings must be root's \
                 alone (chmod go-w)",
                path.display(),
                meta.mode() & 0o7777
            )));
        }
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_big(path));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| FileError::Io(format!("{}: {e}", path.display())))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_big(path));
    }
    Ok(bytes)
}

fn too_big(path: &Path) -> FileError {
    FileError::Refused(format!(
        "{} is larger than {MAX_FILE_BYTES} bytes",
        path.display()
    ))
}

/// Reads a file a configuration named, allowed below `roots` ([`allowed`]).
pub fn read_allowed(path: &Path, roots: &[PathBuf]) -> Result<Vec<u8>, FileError> {
    let resolved = allowed(path, roots)?;
    if !resolved.missing.is_empty() {
        return Err(FileError::NotFound);
    }
    read_resolved(&resolved.existing, false)
}

/// Makes the directories of `resolved` that are missing, 0700, each checked after it is made
/// (another process may have made it first); returns the directory.
fn make_dirs(resolved: &Resolved) -> Result<PathBuf, FileError> {
    let mut dir = resolved.existing.clone();
    for name in &resolved.missing {
        dir.push(name);
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(FileError::Io(format!("{}: {e}", dir.display()))),
        }
        existing_dir(&dir)?;
    }
    Ok(dir)
}

/// The metadata of `dir`, a directory root's alone ([`check_dir`]), not followed if a link.
fn existing_dir(dir: &Path) -> Result<Metadata, FileError> {
    let meta = std::fs::symlink_metadata(dir)
        .map_err(|e| FileError::Io(format!("{}: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(FileError::Refused(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    check_dir(dir, &meta)?;
    Ok(meta)
}

/// A directory only root can write, made (0700, parents too) if missing: where a store keeps
/// its files, so that no one else can plant a link at a lock or temporary-file name in it. The
/// directory itself must not be writable by others, sticky or not.
pub fn private_dir(path: &Path, roots: &[PathBuf]) -> Result<PathBuf, FileError> {
    let resolved = allowed(path, roots)?;
    let dir = make_dirs(&resolved)?;
    let meta = existing_dir(&dir)?;
    if meta.mode() & GROUP_OTHER_WRITE != 0 {
        return Err(FileError::Refused(format!(
            "{} can be written by others (mode {:04o}): a store must be root's alone",
            dir.display(),
            meta.mode() & 0o7777
        )));
    }
    Ok(dir)
}

/// Opens a log file for appending, allowed below `roots`: made 0600 (its directory 0700) if
/// missing; an existing one is used only if it is a regular file root owns with one link (not a
/// hard link to another file), and made private if it was not.
pub fn append(path: &Path, roots: &[PathBuf]) -> Result<File, FileError> {
    let resolved = allowed(path, roots)?;
    let mut target = resolved.existing.clone();
    if !resolved.missing.is_empty() {
        let parent = Resolved {
            existing: resolved.existing.clone(),
            missing: resolved.missing[..resolved.missing.len() - 1].to_vec(),
        };
        target = make_dirs(&parent)?;
        target.push(resolved.missing.last().expect("missing is not empty"));
    }
    let file = open_flags(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&target)
        .map_err(|e| open_error(&target, e))?;
    let meta = file
        .metadata()
        .map_err(|e| FileError::Io(format!("{}: {e}", target.display())))?;
    regular(&target, &meta)?;
    if !trusted_owner(meta.uid()) || meta.nlink() != 1 {
        return Err(FileError::Refused(format!(
            "{} is owned by uid {} with {} links: not a log file root made",
            target.display(),
            meta.uid(),
            meta.nlink()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(|e| FileError::Io(format!("{}: {e}", target.display())))?;
    }
    Ok(file)
}

#[cfg(test)]
#[path = "nodefs_tests.rs"]
mod tests;
