//! The embedded file store: reservations on the node's disk, correct with any number of
//! concurrent plugin processes, with no global lock, and with work per call that does not grow
//! with the number of reservations (whereabouts' IPPool rewrites one object holding the whole
//! pool on every call, and hits the 1.5 MiB object limit at ~10k reservations, #497).
//!
//! Layout of a pool (one `network_name`, or one range when ranges must not overlap):
//! ```text
//! <store_dir>/<pool>/pool.json             which network (and range) the pool is
//! <store_dir>/<pool>/blocks/4-<hex>.json   reservations of 256 consecutive addresses: the truth
//! <store_dir>/<pool>/owners/<xx>.json      owner -> addresses, 256 shards by hash: an index
//! <store_dir>/<pool>/hints/<hash>.json     per range: every allocatable address below is taken
//! ```
//! Each file is its own unit of locking and of crash-safe replacement. Lock order is always
//! owner shards, then hint, then block, so two calls never wait on each other in a cycle. The
//! index and the hints may be stale after a crash; they are only ever trusted after checking the
//! block, and hints only ever move down on release, so staleness costs a little time, never an
//! address given twice or lost.

mod atomic;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::range::{from_u128, to_u128, IpRange};
use crate::store::{Owner, PoolId, Reservation, Store, StoreError};
use atomic::{ensure_dir, lock, read_json, remove, write_json};

/// Addresses per block file (a power of two: a block is an address's bits above the last 8).
const BLOCK_BITS: u32 = 8;
/// Where the store lives unless `store_dir` says otherwise.
pub const DEFAULT_STORE_DIR: &str = "/var/lib/cni/multihome/whereabouts";

/// Owner index shards.
const SHARDS: u64 = 256;

/// The file store rooted at `store_dir`.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
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
}

#[derive(Debug, Serialize, Deserialize)]
struct PoolMeta {
    network: String,
    #[serde(default)]
    range: Option<String>,
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

fn same_attachment(o: &Owner, container_id: &str, ifname: &str) -> bool {
    o.container_id == container_id && o.ifname == ifname
}

/// A pool's directory.
#[derive(Debug)]
struct Pool {
    dir: PathBuf,
}

impl Pool {
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

    /// Adds `ip` under `key` in the index (caller holds the shard's lock).
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

    /// Drops `ips` from `key` in the index, taking the shard's lock.
    fn unindex(&self, key: &str, ips: &[IpAddr]) -> Result<(), StoreError> {
        let path = self.shard_path(key);
        let _lock = lock(&path)?;
        let mut shard = self.read_shard(&path)?;
        let Some(held) = shard.get_mut(key) else {
            return Ok(());
        };
        held.retain(|ip| !ips.contains(ip));
        if held.is_empty() {
            shard.remove(key);
        }
        self.write_shard(&path, &shard)
    }

    /// The owner's verified address in `range` from the index under `key`, if any.
    fn indexed(
        &self,
        key: &str,
        range: &IpRange,
        is_holder: impl Fn(&Owner) -> bool,
    ) -> Result<Option<IpAddr>, StoreError> {
        let shard = self.read_shard(&self.shard_path(key))?;
        for ip in shard
            .get(key)
            .into_iter()
            .flatten()
            .filter(|ip| range.contains(**ip))
        {
            if self.holder(*ip)?.is_some_and(|o| is_holder(&o)) {
                return Ok(Some(*ip));
            }
        }
        Ok(None)
    }

    /// Hands a pod's address to its new container ID (a restarted sandbox).
    fn adopt(&self, ip: IpAddr, owner: &Owner) -> Result<(), StoreError> {
        let path = self.block_path(ip);
        let _lock = lock(&path)?;
        let mut block = self.read_block(&path)?;
        if let Some(held) = block.reservations.get_mut(&ip) {
            held.container_id = owner.container_id.clone();
            self.write_block(&path, &block)?;
        }
        Ok(())
    }

    /// Reserves the lowest free address of `range` (caller holds the owner shards' locks).
    fn allocate(&self, range: &IpRange, owner: &Owner) -> Result<IpAddr, StoreError> {
        let hint_path = self.hint_path(range);
        let _hint_lock = lock(&hint_path)?;
        let hint: Option<Hint> = read_json(&hint_path)?;
        let mut next = hint.map_or(range.start, |h| h.next);
        while let Some(candidate) = range.next_allocatable(next) {
            let path = self.block_path(candidate);
            let block_lock = lock(&path)?;
            let mut block = self.read_block(&path)?;
            if let Some(ip) = first_free_in_block(range, &block, candidate) {
                // Index before block: a crash in between leaves an index entry the block does
                // not confirm, which every reader ignores.
                self.index(&container_key(&owner.container_id, &owner.ifname), ip)?;
                if let Some(pod) = &owner.pod_ref {
                    self.index(&pod_key(pod, &owner.ifname), ip)?;
                }
                block.reservations.insert(ip, owner.clone());
                self.write_block(&path, &block)?;
                drop(block_lock);
                let after = from_u128(to_u128(ip).saturating_add(1), ip.is_ipv4());
                write_json(
                    &hint_path,
                    &Hint {
                        range: range.key(),
                        next: after,
                    },
                )?;
                return Ok(ip);
            }
            let next_block = ((to_u128(candidate) >> BLOCK_BITS) + 1) << BLOCK_BITS;
            if next_block == 0 || (candidate.is_ipv4() && next_block > u128::from(u32::MAX)) {
                break;
            }
            next = from_u128(next_block, candidate.is_ipv4());
        }
        Err(StoreError::Exhausted {
            range: range.key(),
            capacity: range.capacity(),
        })
    }

    /// Moves every hint of the pool down to `freed` (the lowest address just released).
    fn lower_hints(&self, freed: IpAddr) -> Result<(), StoreError> {
        let Ok(entries) = fs::read_dir(self.dir.join("hints")) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let _lock = lock(&path)?;
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
        let Ok(entries) = fs::read_dir(self.dir.join("blocks")) else {
            return Ok(out);
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "json") {
                let block = self.read_block(&path)?;
                out.extend(
                    block
                        .reservations
                        .into_iter()
                        .map(|(ip, owner)| Reservation { ip, owner }),
                );
            }
        }
        out.sort_by_key(|r| (r.ip.is_ipv6(), to_u128(r.ip)));
        Ok(out)
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
        FileStore { root: root.into() }
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
        let identity = format!("{}\n{}", id.network, id.range.as_deref().unwrap_or(""));
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

    /// The pool, with its directories and `pool.json` created.
    fn pool_for_write(&self, id: &PoolId) -> Result<Pool, StoreError> {
        let pool = self.pool(id);
        for sub in ["blocks", "owners", "hints"] {
            ensure_dir(&pool.dir.join(sub))?;
        }
        let meta = pool.dir.join("pool.json");
        if !meta.exists() {
            write_json(
                &meta,
                &PoolMeta {
                    network: id.network.clone(),
                    range: id.range.clone(),
                },
            )?;
        }
        Ok(pool)
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
        let mut blocks: BTreeMap<PathBuf, Vec<&Reservation>> = BTreeMap::new();
        let mut shards: BTreeMap<PathBuf, Vec<(String, IpAddr)>> = BTreeMap::new();
        for r in reservations {
            blocks.entry(pool.block_path(r.ip)).or_default().push(r);
            let mut keys = vec![container_key(&r.owner.container_id, &r.owner.ifname)];
            keys.extend(
                r.owner
                    .pod_ref
                    .as_deref()
                    .map(|p| pod_key(p, &r.owner.ifname)),
            );
            for key in keys {
                shards
                    .entry(pool.shard_path(&key))
                    .or_default()
                    .push((key, r.ip));
            }
        }
        for (path, entries) in &shards {
            let _lock = lock(path)?;
            let mut shard = pool.read_shard(path)?;
            for (key, ip) in entries {
                shard.entry(key.clone()).or_default().push(*ip);
            }
            pool.write_shard(path, &shard)?;
        }
        for (path, entries) in &blocks {
            let _lock = lock(path)?;
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

    /// Parses every file of the store: what STATUS and the operators' tool use to find damage.
    pub fn verify(&self) -> Result<usize, StoreError> {
        let mut files = 0;
        for id in self.pools()? {
            let pool = self.pool(&id);
            for sub in ["blocks", "owners", "hints"] {
                let Ok(entries) = fs::read_dir(pool.dir.join(sub)) else {
                    continue;
                };
                for path in entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "json"))
                {
                    read_json::<serde_json::Value>(&path)?;
                    files += 1;
                }
            }
        }
        Ok(files)
    }
}

impl Store for FileStore {
    fn reserve(&self, id: &PoolId, range: &IpRange, owner: &Owner) -> Result<IpAddr, StoreError> {
        let pool = self.pool_for_write(id)?;
        let by_container = container_key(&owner.container_id, &owner.ifname);
        let by_pod = owner.pod_ref.as_deref().map(|p| pod_key(p, &owner.ifname));
        let shards: BTreeSet<PathBuf> = std::iter::once(&by_container)
            .chain(by_pod.as_ref())
            .map(|k| pool.shard_path(k))
            .collect();
        let _locks = shards
            .iter()
            .map(|p| lock(p))
            .collect::<Result<Vec<_>, _>>()?;

        let this = |o: &Owner| same_attachment(o, &owner.container_id, &owner.ifname);
        if let Some(ip) = pool.indexed(&by_container, range, this)? {
            return Ok(ip);
        }
        if let Some(key) = &by_pod {
            let same_pod = |o: &Owner| o.pod_ref == owner.pod_ref && o.ifname == owner.ifname;
            if let Some(ip) = pool.indexed(key, range, same_pod)? {
                pool.index(&by_container, ip)?;
                pool.adopt(ip, owner)?;
                return Ok(ip);
            }
        }
        pool.allocate(range, owner)
    }

    fn release_ip(&self, id: &PoolId, ip: IpAddr, owner: &Owner) -> Result<bool, StoreError> {
        let pool = self.pool(id);
        let path = pool.block_path(ip);
        if !path.exists() {
            return Ok(false);
        }
        let block_lock = lock(&path)?;
        let mut block = pool.read_block(&path)?;
        if !block
            .reservations
            .get(&ip)
            .is_some_and(|o| same_attachment(o, &owner.container_id, &owner.ifname))
        {
            return Ok(false);
        }
        block.reservations.remove(&ip);
        pool.write_block(&path, &block)?;
        drop(block_lock);
        pool.unindex(&container_key(&owner.container_id, &owner.ifname), &[ip])?;
        if let Some(pod) = &owner.pod_ref {
            pool.unindex(&pod_key(pod, &owner.ifname), &[ip])?;
        }
        pool.lower_hints(ip)?;
        Ok(true)
    }

    fn release(
        &self,
        id: &PoolId,
        container_id: &str,
        ifname: &str,
    ) -> Result<Vec<IpAddr>, StoreError> {
        let mut freed = Vec::new();
        for r in self.find(id, container_id, ifname)? {
            if self.release_ip(id, r.ip, &r.owner)? {
                freed.push(r.ip);
            }
        }
        // Entries the blocks no longer confirm (a crash, an adopted address) go too.
        let pool = self.pool(id);
        if pool.dir.exists() {
            let key = container_key(container_id, ifname);
            let stale = pool
                .read_shard(&pool.shard_path(&key))?
                .remove(&key)
                .unwrap_or_default();
            if !stale.is_empty() {
                pool.unindex(&key, &stale)?;
            }
        }
        Ok(freed)
    }

    fn find(
        &self,
        id: &PoolId,
        container_id: &str,
        ifname: &str,
    ) -> Result<Vec<Reservation>, StoreError> {
        let pool = self.pool(id);
        let key = container_key(container_id, ifname);
        let mut out = Vec::new();
        for ip in pool
            .read_shard(&pool.shard_path(&key))?
            .remove(&key)
            .unwrap_or_default()
        {
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
        let Ok(entries) = fs::read_dir(&self.root) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            if let Some(meta) = read_json::<PoolMeta>(&entry.path().join("pool.json"))? {
                out.push(PoolId {
                    network: meta.network,
                    range: meta.range,
                });
            }
        }
        out.sort();
        Ok(out)
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
