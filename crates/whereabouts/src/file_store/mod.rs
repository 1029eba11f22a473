//! The embedded file store: reservations on the node's disk, correct with any number of
//! concurrent plugin processes killed at any moment, with work per call that does not grow with
//! the number of reservations (whereabouts' IPPool rewrites one object holding the whole pool on
//! every call, and hits the 1.5 MiB object limit at ~10k reservations, #497).
//!
//! Layout of a pool (one `network_name`, or one CIDR when ranges must not overlap):
//! ```text
//! <store_dir>/format                       "2": pools are named by network and CIDR
//! <store_dir>/<pool>/pool.json             which network (and CIDR) the pool is
//! <store_dir>/<pool>/pool.lock             held by the one call that changes the pool
//! <store_dir>/<pool>/blocks/4-<hex>.json   reservations of 256 consecutive addresses: the truth
//! <store_dir>/<pool>/owners/<xx>.json      owner -> addresses, 256 shards by hash: an index
//!                                          (c|<cid>|<ifname>, p|<pod>|<ifname>, m|<network>|<mac>)
//! <store_dir>/<pool>/hints/<hash>.json     per range: every allocatable address below is taken
//! ```
//! **One lock per pool**, taken by every call that changes it, held for that call's few file
//! writes and waited for at most the lock timeout (then code 11, naming the holder). Reads
//! (find, list) take no lock: each file is replaced atomically and the blocks are the truth.
//!
//! Every change is ordered so that a process killed between two writes leaves a state that is
//! still right: the index is written before the block that confirms it and dropped after it (an
//! unconfirmed index entry is ignored, and pruned by the next call of its owner or by GC); a
//! hint is lowered before the address below it is freed, and a search that finds nothing above
//! the hint wraps around to the start of the range, so a hint can cost time, never an address.

mod atomic;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use atomic::{ensure_dir, lock, read_json, remove, write_json, Lock};
use ipam::range::{from_u128, to_u128, IpRange};
use ipam::store::{
    Change, Owner, PoolDescription as PoolMeta, PoolId, Reservation, Store, StoreError, Verified,
};

/// Addresses per block file (a power of two: a block is an address's bits above the last 8).
const BLOCK_BITS: u32 = 8;
/// Where the store lives unless `store_dir` says otherwise.
pub const DEFAULT_STORE_DIR: &str = "/var/lib/cni/multihome/whereabouts";
/// How long a call waits for a pool's lock before answering "try again later".
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);
/// The store format this release writes (pools named by network and CIDR).
const FORMAT: &str = "2";

/// Owner index shards.
const SHARDS: u64 = 256;

/// The file store rooted at `store_dir`.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
    lock_timeout: Duration,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Block {
    reservations: BTreeMap<IpAddr, Owner>,
}

type Shard = BTreeMap<String, Vec<IpAddr>>;

#[derive(Debug, Serialize, Deserialize)]
struct Hint {
    range: String,
    next: IpAddr,
    /// The range itself, so that `verify` can check the hint (absent in older hints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    spec: Option<RangeSpec>,
}

/// What a hint needs to know of its range to be checked.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RangeSpec {
    network: String,
    start: IpAddr,
    end: IpAddr,
    #[serde(default)]
    excludes: Vec<String>,
    #[serde(default)]
    gateway: Option<IpAddr>,
}

impl RangeSpec {
    fn of(range: &IpRange) -> RangeSpec {
        RangeSpec {
            network: range.network.to_string(),
            start: range.start,
            end: range.end,
            excludes: range.excludes.iter().map(ToString::to_string).collect(),
            gateway: range.gateway,
        }
    }

    fn range(&self) -> Option<IpRange> {
        let excludes = self
            .excludes
            .iter()
            .map(|x| x.parse().ok())
            .collect::<Option<Vec<_>>>()?;
        IpRange::new(
            "",
            self.network.parse().ok()?,
            Some(self.start),
            Some(self.end),
            excludes,
            self.gateway,
        )
        .ok()
    }
}

/// FNV-1a: a stable hash for file names (std's hasher is randomly keyed per process).
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn container_key(container_id: &str, ifname: &str) -> String {
    format!("c|{container_id}|{ifname}")
}

fn pod_key(pod_ref: &str, ifname: &str) -> String {
    format!("p|{pod_ref}|{ifname}")
}

/// The index keys a reservation of `owner` is found by (each live attachment, an ordinary
/// reservation's pod, a sticky one's MAC).
fn index_keys(owner: &Owner) -> Vec<String> {
    owner.index_entries(str::to_string)
}

/// Whether (container ID, ifname) holds the address `o` holds now.
fn same_attachment(o: &Owner, container_id: &str, ifname: &str) -> bool {
    o.holds(container_id, ifname)
}

fn is_json(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "json")
}

/// The `.json` files of `dir` (none when it does not exist).
fn json_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| is_json(p))
        .collect();
    out.sort();
    out
}

/// A pool's directory.
#[derive(Debug)]
struct Pool {
    dir: PathBuf,
}

impl Pool {
    fn lock(&self, timeout: Duration) -> Result<Lock, StoreError> {
        lock(&self.dir.join("pool.lock"), timeout)
    }

    fn block_path(&self, ip: IpAddr) -> PathBuf {
        let family = if ip.is_ipv4() { 4 } else { 6 };
        self.dir
            .join("blocks")
            .join(format!("{family}-{:x}.json", to_u128(ip) >> BLOCK_BITS))
    }

    fn shard_path(&self, key: &str) -> PathBuf {
        self.dir
            .join("owners")
            .join(format!("{:02x}.json", fnv(key) % SHARDS))
    }

    fn hint_path(&self, range: &IpRange) -> PathBuf {
        self.dir
            .join("hints")
            .join(format!("{:016x}.json", fnv(&range.key())))
    }

    fn read_block(&self, path: &Path) -> Result<Block, StoreError> {
        Ok(read_json(path)?.unwrap_or_default())
    }

    fn write_block(&self, path: &Path, block: &Block) -> Result<(), StoreError> {
        if block.reservations.is_empty() {
            remove(path)
        } else {
            write_json(path, block)
        }
    }

    fn read_shard(&self, path: &Path) -> Result<Shard, StoreError> {
        Ok(read_json(path)?.unwrap_or_default())
    }

    fn write_shard(&self, path: &Path, shard: &Shard) -> Result<(), StoreError> {
        if shard.is_empty() {
            remove(path)
        } else {
            write_json(path, shard)
        }
    }

    /// The owner of `ip` according to its block (the truth).
    fn holder(&self, ip: IpAddr) -> Result<Option<Owner>, StoreError> {
        Ok(self
            .read_block(&self.block_path(ip))?
            .reservations
            .remove(&ip))
    }

    /// What the index lists under `key`.
    fn indexed_ips(&self, key: &str) -> Result<Vec<IpAddr>, StoreError> {
        Ok(self
            .read_shard(&self.shard_path(key))?
            .remove(key)
            .unwrap_or_default())
    }

    /// Adds `ip` under `key` in the index (caller holds the pool's lock).
    fn index(&self, key: &str, ip: IpAddr) -> Result<(), StoreError> {
        let path = self.shard_path(key);
        let mut shard = self.read_shard(&path)?;
        let ips = shard.entry(key.to_string()).or_default();
        if !ips.contains(&ip) {
            ips.push(ip);
            self.write_shard(&path, &shard)?;
        }
        Ok(())
    }

    /// Drops `ips` from `key` in the index (caller holds the pool's lock).
    fn unindex(&self, key: &str, ips: &[IpAddr]) -> Result<(), StoreError> {
        let path = self.shard_path(key);
        let mut shard = self.read_shard(&path)?;
        let Some(held) = shard.get_mut(key) else {
            return Ok(());
        };
        let before = held.len();
        held.retain(|ip| !ips.contains(ip));
        if held.len() == before {
            return Ok(());
        }
        if held.is_empty() {
            shard.remove(key);
        }
        self.write_shard(&path, &shard)
    }

    /// The verified address in `range` the index lists under `key` for an owner `is_holder`
    /// accepts; entries the blocks do not confirm are dropped on the way (a call killed between
    /// its index and its block write left them). Caller holds the pool's lock.
    fn indexed(
        &self,
        key: &str,
        range: &IpRange,
        is_holder: impl Fn(&Owner) -> bool,
    ) -> Result<Option<IpAddr>, StoreError> {
        let mut found = None;
        let mut stale = Vec::new();
        for ip in self.indexed_ips(key)? {
            match self.holder(ip)? {
                Some(o) if is_holder(&o) => {
                    if found.is_none() && range.contains(ip) {
                        found = Some(ip);
                    }
                }
                _ => stale.push(ip),
            }
        }
        if !stale.is_empty() {
            self.unindex(key, &stale)?;
        }
        Ok(found)
    }

    /// Records `owner` at `ip`: index first, then the block (caller holds the pool's lock).
    fn put(&self, ip: IpAddr, owner: &Owner) -> Result<(), StoreError> {
        for key in index_keys(owner) {
            self.index(&key, ip)?;
        }
        let path = self.block_path(ip);
        let mut block = self.read_block(&path)?;
        block.reservations.insert(ip, owner.clone());
        self.write_block(&path, &block)
    }

    /// Hands `ip`, held by `previous`, to `owner` (a restarted sandbox under a new container
    /// ID, or a reservation written before it recorded its network): the new index entries,
    /// the block, then the old entries go. Caller holds the pool's lock.
    fn hand_over(&self, ip: IpAddr, previous: &Owner, owner: &Owner) -> Result<(), StoreError> {
        self.put(ip, owner)?;
        let kept = index_keys(owner);
        for key in index_keys(previous).iter().filter(|k| !kept.contains(k)) {
            self.unindex(key, &[ip])?;
        }
        Ok(())
    }

    /// Frees `ip` held by `owner`: hints down first, then the block, then the index (caller
    /// holds the pool's lock and checked the holder).
    fn free(&self, ip: IpAddr, owner: &Owner) -> Result<(), StoreError> {
        self.lower_hints(ip)?;
        let path = self.block_path(ip);
        let mut block = self.read_block(&path)?;
        if block.reservations.remove(&ip).is_some() {
            self.write_block(&path, &block)?;
        }
        for key in index_keys(owner) {
            self.unindex(&key, &[ip])?;
        }
        Ok(())
    }

    /// The lowest free allocatable address of `range` in `from..=until`.
    fn first_free(
        &self,
        range: &IpRange,
        from: IpAddr,
        until: IpAddr,
    ) -> Result<Option<IpAddr>, StoreError> {
        let mut next = Some(from);
        while let Some(candidate) = next
            .and_then(|n| range.next_allocatable(n))
            .filter(|c| to_u128(*c) <= to_u128(until))
        {
            let block = self.read_block(&self.block_path(candidate))?;
            if let Some(ip) = first_free_in_block(range, &block, candidate)
                .filter(|ip| to_u128(*ip) <= to_u128(until))
            {
                return Ok(Some(ip));
            }
            let next_block = ((to_u128(candidate) >> BLOCK_BITS) + 1) << BLOCK_BITS;
            let past =
                next_block == 0 || (candidate.is_ipv4() && next_block > u128::from(u32::MAX));
            next = (!past).then(|| from_u128(next_block, candidate.is_ipv4()));
        }
        Ok(None)
    }

    /// Reserves the lowest free address of `range` from the hint on, then from the start of the
    /// range up to the hint (caller holds the pool's lock).
    fn allocate(&self, range: &IpRange, owner: &Owner) -> Result<IpAddr, StoreError> {
        let hint_path = self.hint_path(range);
        let from = read_json::<Hint>(&hint_path)?
            .map(|h| h.next)
            .filter(|ip| range.contains(*ip))
            .unwrap_or(range.start);
        let mut found = self.first_free(range, from, range.end)?;
        if found.is_none() && from != range.start {
            let below = from_u128(to_u128(from) - 1, from.is_ipv4());
            found = self.first_free(range, range.start, below)?;
        }
        let Some(ip) = found else {
            return Err(StoreError::Exhausted {
                range: range.key(),
                capacity: range.capacity(),
            });
        };
        self.put(ip, owner)?;
        // Everything below `ip` in its scan was taken, and so is `ip` now.
        let hint = Hint {
            range: range.key(),
            next: from_u128(to_u128(ip).saturating_add(1), ip.is_ipv4()),
            spec: Some(RangeSpec::of(range)),
        };
        write_json(&hint_path, &hint)?;
        Ok(ip)
    }

    /// Moves every hint of the pool down to `freed` (caller holds the pool's lock).
    fn lower_hints(&self, freed: IpAddr) -> Result<(), StoreError> {
        for path in json_files(&self.dir.join("hints")) {
            if let Some(mut hint) = read_json::<Hint>(&path)? {
                if hint.next.is_ipv4() == freed.is_ipv4() && to_u128(freed) < to_u128(hint.next) {
                    hint.next = freed;
                    write_json(&path, &hint)?;
                }
            }
        }
        Ok(())
    }

    /// Every reservation, by address.
    fn all(&self) -> Result<Vec<Reservation>, StoreError> {
        let mut out = Vec::new();
        for path in json_files(&self.dir.join("blocks")) {
            let block = self.read_block(&path)?;
            out.extend(
                block
                    .reservations
                    .into_iter()
                    .map(|(ip, owner)| Reservation { ip, owner }),
            );
        }
        out.sort_by_key(|r| (r.ip.is_ipv6(), to_u128(r.ip)));
        Ok(out)
    }

    /// Drops index entries the blocks do not confirm and the temporary files of killed writers
    /// (caller holds the pool's lock, so no writer of this pool is running).
    fn prune(&self) -> Result<usize, StoreError> {
        let held: BTreeSet<(String, IpAddr)> = self
            .all()?
            .into_iter()
            .flat_map(|r| index_keys(&r.owner).into_iter().map(move |k| (k, r.ip)))
            .collect();
        let mut pruned = 0;
        for path in json_files(&self.dir.join("owners")) {
            let mut shard = self.read_shard(&path)?;
            let before: usize = shard.values().map(Vec::len).sum();
            for (key, ips) in shard.iter_mut() {
                ips.retain(|ip| held.contains(&(key.clone(), *ip)));
            }
            shard.retain(|_, ips| !ips.is_empty());
            let after: usize = shard.values().map(Vec::len).sum();
            if after != before {
                pruned += before - after;
                self.write_shard(&path, &shard)?;
            }
        }
        for sub in ["blocks", "owners", "hints"] {
            let Ok(entries) = fs::read_dir(self.dir.join(sub)) else {
                continue;
            };
            for path in entries.flatten().map(|e| e.path()) {
                if path.to_string_lossy().contains(".json.tmp") {
                    remove(&path)?;
                }
            }
        }
        Ok(pruned)
    }
}

/// The lowest allocatable address of `range` from `from` that `block` does not hold, staying
/// inside `from`'s block.
fn first_free_in_block(range: &IpRange, block: &Block, from: IpAddr) -> Option<IpAddr> {
    let block_of = |ip: IpAddr| to_u128(ip) >> BLOCK_BITS;
    let mut ip = Some(from);
    while let Some(candidate) = ip.filter(|c| block_of(*c) == block_of(from)) {
        if !block.reservations.contains_key(&candidate) {
            return Some(candidate);
        }
        let after = to_u128(candidate).checked_add(1)?;
        ip = range.next_allocatable(from_u128(after, candidate.is_ipv4()));
    }
    None
}

impl FileStore {
    /// A store rooted at `root` (created on first write, mode 0700).
    pub fn new(root: impl Into<PathBuf>) -> FileStore {
        FileStore {
            root: root.into(),
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
        }
    }

    /// The same store with another bound on lock waits.
    pub fn with_lock_timeout(mut self, timeout: Duration) -> FileStore {
        self.lock_timeout = timeout;
        self
    }

    /// The directory of a pool: the network name made safe for a file name, plus a hash so
    /// that two names sanitised alike never share a pool.
    fn pool_dir(&self, id: &PoolId) -> PathBuf {
        let safe: String = id
            .network
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        let identity = format!("{}\n{}", id.network, id.cidr.as_deref().unwrap_or(""));
        self.root.join(format!(
            "{}-{:016x}",
            if safe.is_empty() { "_default" } else { &safe },
            fnv(&identity)
        ))
    }

    fn pool(&self, id: &PoolId) -> Pool {
        Pool {
            dir: self.pool_dir(id),
        }
    }

    /// The pool, with its directories and `pool.json` created, once the store is in this
    /// release's format.
    fn pool_for_write(&self, id: &PoolId) -> Result<Pool, StoreError> {
        self.upgrade()?;
        let pool = self.pool(id);
        let meta = pool.dir.join("pool.json");
        if !meta.exists() {
            for sub in ["blocks", "owners", "hints"] {
                ensure_dir(&pool.dir.join(sub))?;
            }
            write_json(&meta, &PoolMeta::of(id))?;
        }
        Ok(pool)
    }

    /// Brings a store written by an earlier release into this format, once: pools of their own
    /// used to be named by the whole range key, so that an edited NAD forked its pool; their
    /// reservations move into the pool of their network and CIDR. An address held in two such
    /// forks (the fault being fixed) stays in its old pool, logged, for an operator to release.
    fn upgrade(&self) -> Result<(), StoreError> {
        let format = self.root.join("format");
        if format.exists() {
            return Ok(());
        }
        ensure_dir(&self.root)?;
        let _lock = lock(&self.root.join("format.lock"), self.lock_timeout)?;
        if format.exists() {
            return Ok(());
        }
        for (dir, meta) in self.pool_dirs()? {
            let Some(key) = meta.range.as_deref().filter(|_| meta.cidr.is_none()) else {
                continue;
            };
            self.migrate(&dir, &PoolId::from_legacy_range_key(&meta.network, key))?;
        }
        write_json(&format, &FORMAT)
    }

    /// Moves the reservations of the legacy pool in `dir` into `to`.
    fn migrate(&self, dir: &Path, to: &PoolId) -> Result<(), StoreError> {
        let old = Pool {
            dir: dir.to_path_buf(),
        };
        let new = self.pool(to);
        for sub in ["blocks", "owners", "hints"] {
            ensure_dir(&new.dir.join(sub))?;
        }
        write_json(&new.dir.join("pool.json"), &PoolMeta::of(to))?;
        let _lock = new.lock(self.lock_timeout)?;
        let mut kept = Vec::new();
        for r in old.all()? {
            match new.holder(r.ip)? {
                Some(o) if o.attachment() != r.owner.attachment() => {
                    cni::log_error!(
                        "store upgrade: {} is held by {}/{} and, in the forked pool {}, by                          {}/{}: kept there; release one with multihome-ipam",
                        r.ip,
                        o.container_id,
                        o.ifname,
                        dir.display(),
                        r.owner.container_id,
                        r.owner.ifname
                    );
                    kept.push(r);
                }
                _ => new.put(r.ip, &r.owner)?,
            }
        }
        if kept.is_empty() {
            fs::remove_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("store upgrade: {}: {e}", dir.display()))
            })?;
            return Ok(());
        }
        for path in json_files(&dir.join("blocks")) {
            let mut block = old.read_block(&path)?;
            block
                .reservations
                .retain(|ip, o| kept.iter().any(|k| k.ip == *ip && k.owner == *o));
            old.write_block(&path, &block)?;
        }
        Ok(())
    }

    /// Every pool directory with its description; anything else in the store directory (a
    /// README, an editor's backup, another call's STATUS probe) is not a pool and is skipped.
    fn pool_dirs(&self) -> Result<Vec<(PathBuf, PoolMeta)>, StoreError> {
        let Ok(entries) = fs::read_dir(&self.root) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if let Some(meta) = read_json::<PoolMeta>(&entry.path().join("pool.json"))? {
                out.push((entry.path(), meta));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Adds many reservations at once, each file written once (filling a pool from another store,
    /// or for a benchmark): faster than one `reserve` per address by the number of addresses per
    /// block. Addresses already held are refused (`Corrupt` would be wrong: the input is at fault).
    pub fn import(
        &self,
        id: &PoolId,
        range: &IpRange,
        reservations: &[Reservation],
    ) -> Result<(), StoreError> {
        let pool = self.pool_for_write(id)?;
        let _lock = pool.lock(self.lock_timeout)?;
        let mut blocks: BTreeMap<PathBuf, Vec<&Reservation>> = BTreeMap::new();
        let mut shards: BTreeMap<PathBuf, Vec<(String, IpAddr)>> = BTreeMap::new();
        for r in reservations {
            blocks.entry(pool.block_path(r.ip)).or_default().push(r);
            for key in index_keys(&r.owner) {
                shards
                    .entry(pool.shard_path(&key))
                    .or_default()
                    .push((key, r.ip));
            }
        }
        for (path, entries) in &shards {
            let mut shard = pool.read_shard(path)?;
            for (key, ip) in entries {
                shard.entry(key.clone()).or_default().push(*ip);
            }
            pool.write_shard(path, &shard)?;
        }
        for (path, entries) in &blocks {
            let mut block = pool.read_block(path)?;
            for r in entries {
                if block.reservations.insert(r.ip, r.owner.clone()).is_some() {
                    return Err(StoreError::Unavailable(format!(
                        "import: {} is already reserved",
                        r.ip
                    )));
                }
            }
            pool.write_block(path, &block)?;
        }
        remove(&pool.hint_path(range))
    }

    /// Parses every file of the store and checks that its parts agree: each reservation is in
    /// the right block and indexed under its attachment (and pod), each index entry is confirmed
    /// by a block, and no hint stands above a free address of its range. What STATUS and the
    /// operators' tool use to find damage.
    pub fn verify(&self) -> Result<Verified, StoreError> {
        let mut out = Verified::default();
        for (dir, meta) in self.pool_dirs()? {
            let pool = Pool { dir };
            if meta.cidr.is_none() && meta.range.is_some() {
                out.problems.push(format!(
                    "{}: a pool in the format before {FORMAT} (kept because an address in it                      is held twice)",
                    pool.dir.display()
                ));
            }
            self.verify_pool(&pool, &mut out)?;
        }
        Ok(out)
    }

    fn verify_pool(&self, pool: &Pool, out: &mut Verified) -> Result<(), StoreError> {
        let mut held = BTreeMap::new();
        for path in json_files(&pool.dir.join("blocks")) {
            let block = pool.read_block(&path)?;
            out.files += 1;
            for (ip, owner) in block.reservations {
                if pool.block_path(ip) != path {
                    out.problems
                        .push(format!("{}: {ip} is not in this block", path.display()));
                }
                held.insert(ip, owner);
            }
        }
        let mut indexed = BTreeSet::new();
        for path in json_files(&pool.dir.join("owners")) {
            let shard = pool.read_shard(&path)?;
            out.files += 1;
            for (key, ips) in shard {
                for ip in ips {
                    let confirmed = held.get(&ip).is_some_and(|o| index_keys(o).contains(&key));
                    if !confirmed {
                        out.problems.push(format!(
                            "{}: index entry {key} -> {ip} is not confirmed by a block",
                            path.display()
                        ));
                    }
                    indexed.insert((key.clone(), ip));
                }
            }
        }
        for (ip, owner) in &held {
            for key in index_keys(owner) {
                if !indexed.contains(&(key.clone(), *ip)) {
                    out.problems.push(format!(
                        "{}: {ip} is held by {key} but not indexed: DEL could not find it",
                        pool.dir.display()
                    ));
                }
            }
        }
        for path in json_files(&pool.dir.join("hints")) {
            let hint: Hint = read_json(&path)?.unwrap_or(Hint {
                range: String::new(),
                next: IpAddr::from([0, 0, 0, 0]),
                spec: None,
            });
            out.files += 1;
            let Some(range) = hint.spec.as_ref().and_then(RangeSpec::range) else {
                continue;
            };
            let mut ip = range.first();
            while let Some(candidate) = ip.filter(|c| to_u128(*c) < to_u128(hint.next)) {
                if !held.contains_key(&candidate) {
                    out.problems.push(format!(
                        "{}: hint {} stands above the free address {candidate}",
                        path.display(),
                        hint.next
                    ));
                    break;
                }
                ip = to_u128(candidate)
                    .checked_add(1)
                    .and_then(|n| range.next_allocatable(from_u128(n, candidate.is_ipv4())));
            }
        }
        Ok(())
    }

    /// Releases `ip` if it is still the reservation of `owner`'s attachment (its latest one, for
    /// a sticky reservation, parked or not). Caller holds the pool's lock.
    fn release_locked(&self, pool: &Pool, ip: IpAddr, owner: &Owner) -> Result<bool, StoreError> {
        match pool.holder(ip)? {
            Some(held) if held.attachment() == owner.attachment() => {
                pool.free(ip, &held)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

impl Store for FileStore {
    fn reserve(&self, id: &PoolId, range: &IpRange, owner: &Owner) -> Result<IpAddr, StoreError> {
        let pool = self.pool_for_write(id)?;
        let _lock = pool.lock(self.lock_timeout)?;
        let by_container = container_key(&owner.container_id, &owner.ifname);
        let this = |o: &Owner| same_attachment(o, &owner.container_id, &owner.ifname);
        if let Some(ip) = pool.indexed(&by_container, range, this)? {
            if let Some(previous) = pool.holder(ip)?.filter(|o| o != owner) {
                // Written before reservations recorded their network (or the pod): complete it.
                if previous.network.is_none() || previous.pod_ref.is_none() {
                    pool.hand_over(ip, &previous, owner)?;
                }
            }
            return Ok(ip);
        }
        if let Some(pod) = &owner.pod_ref {
            let same_pod = |o: &Owner| {
                o.sticky.is_none() && o.pod_ref == owner.pod_ref && o.ifname == owner.ifname
            };
            if let Some(ip) = pool.indexed(&pod_key(pod, &owner.ifname), range, same_pod)? {
                // A restarted sandbox: the pod's address moves to the new container ID, so the
                // old sandbox's late DEL cannot free it.
                if let Some(previous) = pool.holder(ip)? {
                    pool.hand_over(ip, &previous, owner)?;
                    return Ok(ip);
                }
            }
        }
        pool.allocate(range, owner)
    }

    fn reserve_exact(
        &self,
        id: &PoolId,
        _range: &IpRange,
        ip: IpAddr,
        owner: &Owner,
    ) -> Result<(), StoreError> {
        let pool = self.pool_for_write(id)?;
        let _lock = pool.lock(self.lock_timeout)?;
        match pool.holder(ip)? {
            None => pool.put(ip, owner),
            Some(held) if same_attachment(&held, &owner.container_id, &owner.ifname) => {
                if held != *owner && (held.network.is_none() || held.pod_ref.is_none()) {
                    pool.hand_over(ip, &held, owner)?;
                }
                Ok(())
            }
            // The pod's restarted sandbox (new container ID): its address moves with it.
            Some(held)
                if owner.pod_ref.is_some()
                    && held.sticky.is_none()
                    && held.pod_ref == owner.pod_ref
                    && held.ifname == owner.ifname =>
            {
                pool.hand_over(ip, &held, owner)
            }
            Some(held) => Err(StoreError::Taken {
                ip,
                holder: ipam::store::describe_owner(&held),
            }),
        }
    }

    fn release_ip(&self, id: &PoolId, ip: IpAddr, owner: &Owner) -> Result<bool, StoreError> {
        let pool = self.pool(id);
        if !pool.block_path(ip).exists() {
            return Ok(false);
        }
        let _lock = pool.lock(self.lock_timeout)?;
        self.release_locked(&pool, ip, owner)
    }

    fn update(
        &self,
        id: &PoolId,
        ip: IpAddr,
        decide: &dyn Fn(Option<&Owner>) -> Change,
    ) -> Result<(Option<Owner>, Change), StoreError> {
        let mut pool = self.pool(id);
        if !pool.dir.join("pool.json").exists() {
            match decide(None) {
                Change::Put(_) => pool = self.pool_for_write(id)?,
                _ => return Ok((None, Change::Keep)),
            }
        }
        let _lock = pool.lock(self.lock_timeout)?;
        let held = pool.holder(ip)?;
        let change = decide(held.as_ref());
        match (&change, &held) {
            (Change::Put(next), Some(prev)) if next != prev => pool.hand_over(ip, prev, next)?,
            (Change::Put(next), None) => pool.put(ip, next)?,
            (Change::Free, Some(prev)) => pool.free(ip, prev)?,
            (Change::Put(_), Some(_)) => return Ok((held, Change::Keep)),
            (Change::Free, None) => return Ok((held, Change::Keep)),
            (Change::Keep, _) => {}
        }
        Ok((held, change))
    }

    fn find_sticky(
        &self,
        id: &PoolId,
        network: &str,
        mac: &str,
    ) -> Result<Vec<Reservation>, StoreError> {
        let pool = self.pool(id);
        let mut out = Vec::new();
        let key = ipam::store::mac_entry(network, mac, str::to_string);
        for ip in pool.indexed_ips(&key)? {
            if let Some(owner) = pool.holder(ip)?.filter(|o| o.is_sticky_for(network, mac)) {
                out.push(Reservation { ip, owner });
            }
        }
        Ok(out)
    }

    fn release(
        &self,
        id: &PoolId,
        container_id: &str,
        ifname: &str,
    ) -> Result<Vec<IpAddr>, StoreError> {
        let pool = self.pool(id);
        let key = container_key(container_id, ifname);
        if !pool.shard_path(&key).exists() {
            return Ok(Vec::new());
        }
        let _lock = pool.lock(self.lock_timeout)?;
        let mut freed = Vec::new();
        let listed = pool.indexed_ips(&key)?;
        let now = ipam::store::now_s();
        for ip in &listed {
            let held = pool.holder(*ip)?;
            match ipam::sticky::leave(held.as_ref(), container_id, ifname, now) {
                Change::Keep => {}
                Change::Put(next) => pool.hand_over(*ip, held.as_ref().expect("held"), &next)?,
                Change::Free => {
                    pool.free(*ip, held.as_ref().expect("held"))?;
                    freed.push(*ip);
                }
            }
        }
        // Entries the blocks no longer confirm (a killed call, an adopted address) go too.
        pool.unindex(&key, &listed)?;
        Ok(freed)
    }

    fn find(
        &self,
        id: &PoolId,
        container_id: &str,
        ifname: &str,
    ) -> Result<Vec<Reservation>, StoreError> {
        let pool = self.pool(id);
        let mut out = Vec::new();
        for ip in pool.indexed_ips(&container_key(container_id, ifname))? {
            if let Some(owner) = pool
                .holder(ip)?
                .filter(|o| same_attachment(o, container_id, ifname))
            {
                out.push(Reservation { ip, owner });
            }
        }
        Ok(out)
    }

    fn list(&self, id: &PoolId) -> Result<Vec<Reservation>, StoreError> {
        self.pool(id).all()
    }

    fn pools(&self) -> Result<Vec<PoolId>, StoreError> {
        let mut out: Vec<PoolId> = self.pool_dirs()?.iter().map(|(_, m)| m.id()).collect();
        out.sort();
        Ok(out)
    }

    fn gc(
        &self,
        id: &PoolId,
        network: &str,
        valid: &BTreeSet<(String, String)>,
    ) -> Result<Vec<Reservation>, StoreError> {
        let pool = self.pool(id);
        if !pool.dir.join("pool.json").exists() {
            return Ok(Vec::new());
        }
        let freed = ipam::store::collect_pool(self, id, network, valid, ipam::store::now_s())?;
        let _lock = pool.lock(self.lock_timeout)?;
        pool.prune()?;
        Ok(freed)
    }

    fn status(&self) -> Result<(), StoreError> {
        ensure_dir(&self.root)?;
        let probe = self
            .root
            .join(format!(".status-probe-{}", std::process::id()));
        write_json(&probe, &"ok")?;
        remove(&probe)?;
        self.verify().map(|_| ())
    }
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
