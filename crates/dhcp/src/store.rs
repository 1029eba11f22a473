//! Leases on disk: one JSON file per lease in the daemon's state directory, named after the
//! client identifier, written atomically (temporary file, fsync, rename) before the lease is
//! handed out, removed after the RELEASE. The file is the truth: a daemon started after a crash
//! re-adopts what is there, the CNI executable releases a lease itself from its file when no
//! daemon answers a DEL, and the daemon drops a lease whose file is gone.
//!
//! The directory is the node's (a daemon flag, `dhcp_state_dir` in node.json), never a
//! network configuration's.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::client::{Ack, Identity};
use crate::message::Message;

/// The state directory when nothing says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/cni/multihome/dhcp";
/// The largest lease file read (a lease is well under 4 KiB).
const MAX_RECORD_BYTES: u64 = 64 << 10;

/// One lease as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    /// CNI_CONTAINERID.
    pub container_id: String,
    /// CNI_NETNS as the CNI side gave it (without the daemon's host prefix).
    pub netns: String,
    /// CNI_IFNAME.
    pub ifname: String,
    /// The network's name.
    pub network: String,
    /// What the lease is requested and renewed with.
    pub identity: Identity,
    /// The last ACK, as its bytes in hex.
    pub ack: String,
    /// Where unicast to the server goes, `aa:bb:..`.
    pub server_mac: String,
    /// When the last ACK arrived, milliseconds since the Unix epoch.
    pub acked_at_ms: u64,
    /// `ipam.priority` (the routes' metric in the result).
    pub priority: Option<u32>,
    /// The node's bridge the sandbox is plugged into (the configuration's `bridge`), through
    /// which the RELEASE goes when the sandbox's link is gone.
    #[serde(default)]
    pub uplink: Option<String>,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Record {
    /// A record of `ack` for an attachment.
    pub fn new(
        who: (&str, &str, &str, &str),
        identity: &Identity,
        ack: &Ack,
        priority: Option<u32>,
    ) -> Record {
        Record {
            container_id: who.0.into(),
            netns: who.1.into(),
            ifname: who.2.into(),
            network: who.3.into(),
            identity: identity.clone(),
            ack: hex(&ack.message.encode()),
            server_mac: ack
                .server_mac
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(":"),
            acked_at_ms: now_ms(),
            priority,
            uplink: None,
        }
    }

    /// The ACK and the server's MAC back.
    pub fn ack(&self) -> Option<Ack> {
        let message = Message::parse(&unhex(&self.ack)?).ok()?;
        let mac: Vec<u8> = self
            .server_mac
            .split(':')
            .map(|p| u8::from_str_radix(p, 16).ok())
            .collect::<Option<_>>()?;
        Some(Ack {
            message,
            server_mac: mac.try_into().ok()?,
        })
    }

    /// How long ago the ACK arrived (zero if the clock went back).
    pub fn age(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.acked_at_ms))
    }
}

/// The lease files of one state directory.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store in `dir` (made 0700 when first written).
    pub fn new(dir: impl Into<PathBuf>) -> Store {
        Store { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of the lease of `client_id`.
    pub fn file(&self, client_id: &[u8]) -> PathBuf {
        let digest = Sha256::digest(client_id);
        self.dir.join(format!("{}.json", hex(&digest[..16])))
    }

    fn ensure_dir(&self) -> io::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
    }

    /// Writes the record, atomically and durably.
    pub fn save(&self, r: &Record) -> io::Result<()> {
        self.ensure_dir()?;
        let path = self.file(&r.identity.client_id);
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec(r).map_err(io::Error::other)?)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)?;
        File::open(&self.dir)?.sync_all()
    }

    /// The record of `client_id`, if there is a readable one.
    pub fn load(&self, client_id: &[u8]) -> Option<Record> {
        read_record(&self.file(client_id))
    }

    /// Whether the lease of `client_id` still has its file.
    pub fn holds(&self, client_id: &[u8]) -> bool {
        self.file(client_id).exists()
    }

    /// Removes the record of `client_id` (absent is fine).
    pub fn remove(&self, client_id: &[u8]) -> io::Result<()> {
        match fs::remove_file(self.file(client_id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Every readable record, and the paths of files that are not (left in place for a human).
    pub fn all(&self) -> (Vec<Record>, Vec<PathBuf>) {
        let mut good = Vec::new();
        let mut bad = Vec::new();
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return (good, bad);
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            match read_record(&p) {
                Some(r) if self.file(&r.identity.client_id) == p => good.push(r),
                _ => bad.push(p),
            }
        }
        (good, bad)
    }

    /// Holds the directory's lock (flock on `.lock`) while `f` runs: the daemon adopting leases
    /// at start and a CNI executable releasing one without a daemon exclude each other.
    pub fn locked<T>(&self, f: impl FnOnce() -> T) -> io::Result<T> {
        self.ensure_dir()?;
        let lock = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(self.dir.join(".lock"))?;
        // SAFETY: flock(2) on a descriptor we own, which stays open until after the unlock.
        let rc = unsafe { nix::libc::flock(lock.as_raw_fd(), nix::libc::LOCK_EX) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let out = f();
        drop(lock);
        Ok(out)
    }
}

fn read_record(p: &Path) -> Option<Record> {
    let meta = fs::symlink_metadata(p).ok()?;
    if !meta.is_file() || meta.len() > MAX_RECORD_BYTES {
        return None;
    }
    serde_json::from_slice(&fs::read(p).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{code, MessageType};

    #[test]
    fn a_record_round_trips_through_its_file_and_is_removed() {
        let dir = std::env::temp_dir().join(format!("mh-dhcp-store-{}", std::process::id()));
        let store = Store::new(&dir);
        let who = Identity {
            client_id: b"\0c/n/i".to_vec(),
            broadcast: false,
            request: vec![1, 3],
            provide: vec![(12, b"web".to_vec())],
        };
        let mut m = Message::request(MessageType::Ack, 7, [2, 0, 0, 0, 0, 1]);
        m.op = crate::message::OP_REPLY;
        m.yiaddr = "192.0.2.10".parse().unwrap();
        m.set(code::LEASE_TIME, 120u32.to_be_bytes().to_vec());
        let ack = Ack {
            message: m,
            server_mac: [2, 0, 0, 0, 0, 0xfe],
        };
        let r = Record::new(("c", "/run/netns/x", "net1", "corp"), &who, &ack, Some(5));
        store.save(&r).unwrap();
        assert_eq!(store.load(&who.client_id), Some(r.clone()));
        assert_eq!(r.ack().unwrap(), ack);
        assert_eq!(store.all().0, [r]);
        std::fs::write(dir.join("junk.json"), b"{").unwrap();
        assert_eq!(store.all().1, [dir.join("junk.json")]);
        store.remove(&who.client_id).unwrap();
        assert!(!store.holds(&who.client_id));
        store.remove(&who.client_id).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
