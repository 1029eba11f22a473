//! The etcd store: reservations shared by every node of a cluster, with no global lock and no
//! value that grows with the pool.
//!
//! whereabouts' Kubernetes store serialises every ADD and DEL of the cluster behind one lease and
//! rewrites one IPPool object holding the whole pool (1.5 MiB object limit, #497); its old etcd
//! backend held a mutex per range for the whole operation. Here each reservation is its own key,
//! claimed in one transaction that fails when the key already exists, together with its owner
//! index entries, so the index can never disagree with the reservations:
//! ```text
//! <prefix>/pools/<pool>                        {"network", "cidr"}: which pool this is
//! <prefix>/ip/<pool>/<4|6>-<hex>               {"container_id", "ifname", "pod_ref", "network"}
//! <prefix>/own/<pool>/c|<cid>|<ifname>/<ip>    index by attachment (DEL, CHECK, idempotent ADD)
//! <prefix>/own/<pool>/p|<pod>|<ifname>/<ip>    index by pod (a restarted sandbox gets its address)
//! <prefix>/own/<pool>/m|<network>|<mac>/<ip>   index by MAC (sticky_by_mac: the VM's next pod)
//! <prefix>/hint/<pool>/<range>                 where the next search starts (an optimisation only)
//! ```
//! Addresses are written as fixed-width hex so that keys sort as addresses do: the lowest free
//! address is found by reading a page of keys from the hint on, never the whole pool.
//!
//! A pool is `n=<network_name>` or, for a pool of its own, `n=<network_name>,c=<cidr>`; releases
//! before this one named the latter `n=..,r=<whole range key>`, and such pools are moved into
//! their `c=` pool the first time a call uses it (an edited NAD used to fork its pool).
//!
//! Requests go to one member per process (picked at random, the next one after a transient
//! failure) through etcd's JSON gateway ([`etcd::http`]) and require a leader: without
//! quorum they fail as "try again later" (code 11) within the request timeout, at once when the
//! member knows it has no leader, at the latest when the timeout runs out.

use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use etcd::http::{self, Gateway};
use etcd::json::{
    Compare, KeyValue, RangeRequest, RangeResponse, Txn, TxnOp, TxnResponse, RANGE, TXN,
};

use etcd::EtcdConf;
use ipam::range::{from_u128, to_u128, IpRange};
use ipam::store::{
    Change, Owner, PoolDescription as PoolMeta, PoolId, Reservation, Store, StoreError, Verified,
};

/// Keys read per page while looking for a free address.
const PAGE: i64 = 256;
/// Reservations per import transaction (each is two or three puts; etcd's default limit is 128
/// operations per transaction).
const IMPORT_BATCH: usize = 40;
/// After a lost race, how many of the next free addresses a retry picks from at random.
const SPREAD: usize = 32;
/// Keys a failed claim reads back (in its failure branch) for the next try.
const LOST_PAGE: i64 = 64;
/// Tries to lower a hint that concurrent calls keep moving.
const LOWER_HINT_TRIES: usize = 16;
/// The least time one attempt of a request gets (see `retrying`).
const MIN_ATTEMPT: Duration = Duration::from_millis(1000);
/// Claims lost (to concurrent ADDs, or to a stale hint or page) before giving up with "try
/// again later".
const MAX_CLAIM_ATTEMPTS: usize = 200;

/// The etcd store.
pub struct EtcdStore {
    /// The connection to the member asked now.
    gateway: std::cell::RefCell<Gateway>,
    prefix: String,
    request_timeout: Duration,
    /// When the whole call must be over: a plugin process is one call, so every request and
    /// retry shares one `etcd_request_timeout_ms`. `None` (the operators' tool, benchmarks):
    /// each request gets the whole timeout.
    call_deadline: Option<Instant>,
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore")
            .field("prefix", &self.prefix)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Hint {
    next: IpAddr,
}

/// Keeps pool names safe inside a key: anything but `[A-Za-z0-9._-]` as `%XX`.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"._-".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn pool_name(id: &PoolId) -> String {
    match &id.cidr {
        None => format!("n={}", escape(&id.network)),
        Some(c) => format!("n={},c={}", escape(&id.network), escape(c)),
    }
}

/// The start of the names earlier releases gave the pools that now are `id`: the range key
/// began with the CIDR and a `:`.
fn legacy_pool_prefix(id: &PoolId) -> Option<String> {
    let cidr = id.cidr.as_deref()?;
    Some(format!(
        "n={},r={}",
        escape(&id.network),
        escape(&format!("{cidr}:"))
    ))
}

/// `4-0a010005`: fixed width, so that keys sort as addresses.
fn ip_token(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(_) => format!("4-{:08x}", to_u128(ip)),
        IpAddr::V6(_) => format!("6-{:032x}", to_u128(ip)),
    }
}

fn parse_ip_token(t: &str) -> Option<IpAddr> {
    let (fam, hex) = t.split_once('-')?;
    let n = u128::from_str_radix(hex, 16).ok()?;
    match fam {
        "4" if hex.len() == 8 => Some(from_u128(n, true)),
        "6" if hex.len() == 32 => Some(from_u128(n, false)),
        _ => None,
    }
}

fn map_err(what: &str, e: http::Error) -> StoreError {
    let msg = format!("etcd {what}: {e}");
    match &e {
        // Not reached, broken, or no answer in time: another member (or a later try) may answer.
        http::Error::Unreachable(_) => StoreError::Transient(msg),
        // gRPC codes: cancelled, deadline exceeded, aborted, unavailable ("no leader", "request
        // timed out", "leader changed").
        http::Error::Etcd { code, message, .. } => match code {
            1 | 4 | 10 | 14 => StoreError::Transient(msg),
            // A member that died under an in-flight request: its connection broke ("transport
            // error"); another member answers the retry.
            2 if message.contains("transport") => StoreError::Transient(msg),
            _ => StoreError::Unavailable(msg),
        },
        // A certificate not trusted, a refused client certificate, an answer that is not etcd's:
        // trying again does not help.
        http::Error::Tls(_) | http::Error::Unexpected(_) => StoreError::Unavailable(msg),
    }
}

fn corrupt(key: &[u8], why: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: String::from_utf8_lossy(key).into_owned(),
        why: why.to_string(),
    }
}

impl EtcdStore {
    /// A store on the cluster `conf` names. Nothing is sent yet: the first request connects
    /// (and authenticates); only unusable endpoints or TLS files fail here.
    pub fn connect(conf: &EtcdConf) -> Result<EtcdStore, StoreError> {
        // One member per process, picked at random (so that the nodes of a cluster spread over
        // the members), the others in turn when it fails: a connection to every member would
        // cost each member a connection per plugin call.
        let n = conf.endpoints.len().max(1);
        let first = (std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
            % n as u64) as usize;
        let gateway = Gateway::new(conf, first).map_err(StoreError::Unavailable)?;
        let timeout = Duration::from_millis(conf.request_timeout_ms);
        let mut store = EtcdStore::with_gateway(gateway, &conf.prefix, timeout);
        store.call_deadline = Some(Instant::now() + timeout);
        Ok(store)
    }

    /// A store over a gateway built elsewhere (tests: a fake etcd on a socket pair).
    pub fn with_gateway(gateway: Gateway, prefix: &str, request_timeout: Duration) -> EtcdStore {
        EtcdStore {
            gateway: std::cell::RefCell::new(gateway),
            prefix: prefix.to_string(),
            request_timeout,
            call_deadline: None,
        }
    }

    /// The same store with a whole request timeout for each request, for a process that makes
    /// many calls (the operators' tool, benchmarks) instead of one.
    pub fn per_request_deadline(mut self) -> EtcdStore {
        self.call_deadline = None;
        self
    }

    fn key(&self, parts: &[&str]) -> String {
        let mut k = self.prefix.clone();
        for p in parts {
            k.push('/');
            k.push_str(p);
        }
        k
    }

    fn ip_key(&self, pool: &str, ip: IpAddr) -> String {
        self.key(&["ip", pool, &ip_token(ip)])
    }

    fn index_key(&self, pool: &str, who: &str, ip: IpAddr) -> String {
        self.key(&["own", pool, who, &ip_token(ip)])
    }

    fn index_prefix(&self, pool: &str, who: &str) -> String {
        self.key(&["own", pool, who]) + "/"
    }

    /// Runs `op` again while it fails transiently (a leader election takes about a second),
    /// on the next member each time, until the request timeout: then "try again later". No
    /// attempt outlives the timeout: each one's socket timeouts are what is left of it.
    fn retrying<T>(
        &self,
        what: &str,
        mut op: impl FnMut(&mut Gateway, Instant) -> Result<T, http::Error>,
    ) -> Result<T, StoreError> {
        let mut deadline = Instant::now() + self.request_timeout;
        if let Some(call) = self.call_deadline {
            deadline = deadline.min(call);
        }
        let mut pause = Duration::from_millis(20);
        // One attempt gets a part of the time, not all of it: a member whose leader was just
        // killed holds a request until an election ends, and the retry on another member must
        // still fit. (A write whose answer is lost this way is recognised by its caller.)
        let attempt = (self.request_timeout / 3).max(MIN_ATTEMPT);
        loop {
            let result = op(
                &mut self.gateway.borrow_mut(),
                deadline.min(Instant::now() + attempt),
            );
            match result.map_err(|e| map_err(what, e)) {
                Err(StoreError::Transient(_)) if Instant::now() + pause < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(500));
                    self.gateway.borrow_mut().next_member();
                }
                other => return other,
            }
        }
    }

    fn get(&self, what: &str, range: RangeRequest) -> Result<Vec<KeyValue>, StoreError> {
        self.retrying(what, |gw, deadline| {
            gw.call::<_, RangeResponse>(RANGE, &range, deadline)
                .map(|r| r.kvs)
        })
    }

    /// A transaction; retried like reads. A retried claim may have been applied by an attempt
    /// whose answer was lost: callers look for their own reservation when a claim fails.
    fn txn(&self, what: &str, txn: Txn) -> Result<TxnResponse, StoreError> {
        self.txn_counted(what, txn).map(|(r, _)| r)
    }

    /// A transaction and how many attempts it took.
    fn txn_counted(&self, what: &str, txn: Txn) -> Result<(TxnResponse, usize), StoreError> {
        let mut tries = 0;
        let resp = self.retrying(what, |gw, deadline| {
            tries += 1;
            gw.call(TXN, &txn, deadline)
        })?;
        Ok((resp, tries))
    }

    /// The addresses an index entry lists for `who`, in `range` when given.
    fn indexed(&self, pool: &str, who: &str) -> Result<Vec<IpAddr>, StoreError> {
        let prefix = self.index_prefix(pool, who);
        let kvs = self.get(
            "read the owner index",
            RangeRequest::key(prefix.clone())
                .with_prefix()
                .with_keys_only(),
        )?;
        kvs.iter()
            .map(|kv| {
                let k = String::from_utf8_lossy(kv.key());
                parse_ip_token(&k[prefix.len()..])
                    .ok_or_else(|| corrupt(kv.key(), "not an address token"))
            })
            .collect()
    }

    /// The reservation at `ip`, with its mod revision.
    fn holder(&self, pool: &str, ip: IpAddr) -> Result<Option<(Owner, i64)>, StoreError> {
        let kvs = self.get(
            "read a reservation",
            RangeRequest::key(self.ip_key(pool, ip)),
        )?;
        match kvs.first() {
            None => Ok(None),
            Some(kv) => {
                let owner: Owner =
                    serde_json::from_slice(kv.value()).map_err(|e| corrupt(kv.key(), e))?;
                Ok(Some((owner, kv.mod_revision())))
            }
        }
    }

    /// The puts that record `owner` at `ip`: reservation, indexes, and the pool description
    /// when `describe` (the first claim of a range writes it: once a range has a hint, or an
    /// owner holds an address in the pool, the description is there, and rewriting it would
    /// only cost every claim one more put).
    fn claim_ops(
        &self,
        id: &PoolId,
        pool: &str,
        ip: IpAddr,
        owner: &Owner,
        describe: bool,
    ) -> Result<Vec<TxnOp>, StoreError> {
        let value =
            serde_json::to_vec(owner).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let meta = serde_json::to_vec(&PoolMeta::of(id))
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let mut ops = vec![TxnOp::put(self.ip_key(pool, ip), value)];
        for who in whos(owner) {
            ops.push(TxnOp::put(self.index_key(pool, &who, ip), ""));
        }
        if describe {
            ops.push(TxnOp::put(self.key(&["pools", pool]), meta));
        }
        Ok(ops)
    }

    fn unclaim_ops(&self, pool: &str, ip: IpAddr, owner: &Owner) -> Vec<TxnOp> {
        let mut ops = vec![TxnOp::delete(self.ip_key(pool, ip))];
        for who in whos(owner) {
            ops.push(TxnOp::delete(self.index_key(pool, &who, ip)));
        }
        ops
    }

    fn hint_key(&self, pool: &str, range: &IpRange) -> String {
        self.key(&["hint", pool, &escape(&range.key())])
    }

    /// The reservation keys of `range` from `from` on, `limit` at most, keys only: what a claim
    /// brings back from its failure branch for the next try.
    fn page_from(&self, pool: &str, range: &IpRange, from: IpAddr, limit: i64) -> RangeRequest {
        let past_end = from_u128(to_u128(range.end).saturating_add(1), range.end.is_ipv4());
        RangeRequest::key(self.ip_key(pool, from))
            .with_range(self.ip_key(pool, past_end))
            .with_keys_only()
            .with_limit(limit)
    }

    /// Up to `want` free allocatable addresses of `range` from `from` on, lowest first, read
    /// from pages of keys, the first one given when `first` is (a lost claim brings it back:
    /// `first.1` is its limit). Reads are serializable (any member answers from its own copy):
    /// a stale page only costs a claim that fails, never an address given twice.
    fn free_candidates(
        &self,
        pool: &str,
        range: &IpRange,
        from: IpAddr,
        want: usize,
        mut first: Option<(Vec<KeyValue>, i64)>,
        linearizable: bool,
    ) -> Result<Vec<IpAddr>, StoreError> {
        let mut free = Vec::new();
        let Some(mut candidate) = range.next_allocatable(from) else {
            return Ok(free);
        };
        let past_end = from_u128(to_u128(range.end).saturating_add(1), range.end.is_ipv4());
        let end_key = self.ip_key(pool, past_end);
        let step = |ip: IpAddr| {
            let after = from_u128(to_u128(ip).saturating_add(1), ip.is_ipv4());
            range
                .next_allocatable(after)
                .filter(|n| to_u128(*n) > to_u128(ip))
        };
        loop {
            let given = first.is_some();
            let (kvs, limit) = match first.take() {
                Some(given) => given,
                None => {
                    let mut page = RangeRequest::key(self.ip_key(pool, candidate))
                        .with_range(end_key.clone())
                        .with_keys_only()
                        .with_limit(PAGE);
                    if !linearizable {
                        page = page.with_serializable();
                    }
                    (self.get("look for a free address", page)?, PAGE)
                }
            };
            let full = kvs.len() as i64 == limit;
            let mut last_taken = None;
            for kv in &kvs {
                let k = String::from_utf8_lossy(kv.key());
                let token = k.rsplit('/').next().unwrap_or_default();
                let taken = parse_ip_token(token)
                    .ok_or_else(|| corrupt(kv.key(), "not an address token"))?;
                while to_u128(candidate) < to_u128(taken) {
                    free.push(candidate);
                    if free.len() == want {
                        return Ok(free);
                    }
                    match step(candidate) {
                        Some(n) => candidate = n,
                        None => return Ok(free),
                    }
                }
                if candidate == taken {
                    match step(candidate) {
                        Some(n) => candidate = n,
                        None => return Ok(free),
                    }
                }
                last_taken = Some(taken);
            }
            if full {
                if given && !free.is_empty() {
                    // A lost claim's page already shows free addresses: enough to pick from,
                    // without another read.
                    return Ok(free);
                }
                // Everything up to the page's last key is accounted for: read on from there.
                if let Some(t) = last_taken.filter(|t| to_u128(*t) >= to_u128(candidate)) {
                    match step(t) {
                        Some(n) => candidate = n,
                        None => return Ok(free),
                    }
                }
                continue;
            }
            // No key left until the end of the range: the rest is free.
            while free.len() < want {
                free.push(candidate);
                match step(candidate) {
                    Some(n) => candidate = n,
                    None => break,
                }
            }
            return Ok(free);
        }
    }

    /// Reserves the lowest free address from the hint on (then from the start of the range),
    /// claiming it in a transaction that fails if another ADD got there first. After a lost
    /// race the next try picks at random among the next free addresses, so that concurrent
    /// ADDs stop racing for the same one (each failed claim costs a consensus round). A failed
    /// claim brings back, from its failure branch, the page of keys the next try looks at: no
    /// separate read, and not a stale one.
    #[allow(clippy::too_many_arguments)]
    fn allocate(
        &self,
        id: &PoolId,
        pool: &str,
        range: &IpRange,
        owner: &Owner,
        hint: Option<IpAddr>,
        hinted: bool,
        mut seen_revision: i64,
    ) -> Result<IpAddr, StoreError> {
        let hint_key = self.hint_key(pool, range);
        let hint = hint.filter(|ip| range.contains(*ip));
        let mut from = hint.unwrap_or(range.start);
        let mut wrapped = from == range.start;
        // Pages are read from the member's own copy (serializable), which may lag: "exhausted"
        // is only said after one linearizable pass over the whole range agrees.
        let mut confirming = false;
        let mut lost = 0usize;
        let mut attempts = 0usize;
        let mut rng = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        // The hint is where the lowest free address usually is: claim it straight away, and read
        // pages of keys only when that fails (one round trip fewer in the common case).
        let mut guess = hint.and_then(|h| range.next_allocatable(h));
        let mut page: Option<(Vec<KeyValue>, i64)> = None;
        loop {
            // The address the hint moves to after a claim of the lowest candidate: the next free
            // one the page showed (the addresses between were taken), else the one after it.
            let mut next_free = None;
            let (ip, lowest) = match guess.take() {
                Some(g) => (g, g),
                None => {
                    let free =
                        self.free_candidates(pool, range, from, SPREAD, page.take(), confirming)?;
                    let Some(&lowest) = free.first() else {
                        if wrapped && confirming {
                            return Err(StoreError::Exhausted {
                                range: range.key(),
                                capacity: range.capacity(),
                            });
                        }
                        confirming = wrapped;
                        (from, wrapped) = (range.start, true);
                        continue;
                    };
                    next_free = free.get(1).copied();
                    if lost == 0 {
                        (lowest, lowest)
                    } else {
                        rng = rng
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1_442_695_040_888_963_407);
                        (free[(rng >> 33) as usize % free.len()], lowest)
                    }
                }
            };
            let mut ops = self.claim_ops(id, pool, ip, owner, !hinted)?;
            if ip == lowest {
                // Only a claim of the lowest candidate moves the hint: a random pick above it
                // must not hide the free addresses below.
                let after = next_free
                    .unwrap_or_else(|| from_u128(to_u128(ip).saturating_add(1), ip.is_ipv4()));
                let next = serde_json::to_vec(&Hint { next: after })
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                ops.push(TxnOp::put(hint_key.clone(), next));
            }
            let txn = Txn::new()
                .when([Compare::create_revision(self.ip_key(pool, ip), 0)])
                .and_then(ops)
                .or_else([TxnOp::get(self.page_from(pool, range, lowest, LOST_PAGE))]);
            let (resp, tries) = self.txn_counted("claim an address", txn)?;
            if resp.succeeded() {
                return Ok(ip);
            }
            if tries > 1 {
                // An earlier attempt whose answer was lost may have claimed it for us.
                let this = container_who(&owner.container_id, &owner.ifname);
                if let Some(mine) = self
                    .indexed(pool, &this)?
                    .into_iter()
                    .find(|a| range.contains(*a))
                {
                    return Ok(mine);
                }
            }
            let kvs = resp.range_kvs(0).to_vec();
            // A claim lost while nothing was written since the last read (a stale hint, a
            // stale page) is not a race: the next pick is still the lowest. Keys written since
            // mean concurrent ADDs: from now on pick at random among the next free addresses.
            let raced = kvs.iter().any(|kv| kv.create_revision > seen_revision);
            seen_revision = seen_revision.max(resp.header.revision);
            lost += usize::from(raced || lost > 0);
            attempts += 1;
            if attempts >= MAX_CLAIM_ATTEMPTS {
                return Err(StoreError::Transient(format!(
                    "lost {attempts} claims in range {} to concurrent ADDs",
                    range.key()
                )));
            }
            from = lowest;
            page = Some((kvs, LOST_PAGE));
        }
    }

    /// Hands a pod's address to its restarted sandbox (new container ID); false when it is not
    /// the pod's any more.
    fn adopt(
        &self,
        id: &PoolId,
        pool: &str,
        ip: IpAddr,
        pod_ref: &str,
        owner: &Owner,
    ) -> Result<bool, StoreError> {
        let Some((held, rev)) = self.holder(pool, ip)? else {
            return Ok(false);
        };
        let same_pod = held.pod_ref.as_deref() == Some(pod_ref) && held.ifname == owner.ifname;
        if held.sticky.is_some() || !same_pod {
            return Ok(false);
        }
        let mut ops = vec![TxnOp::delete(self.index_key(
            pool,
            &container_who(&held.container_id, &held.ifname),
            ip,
        ))];
        // The pod holds an address in the pool: its description was written with it.
        ops.extend(self.claim_ops(id, pool, ip, owner, false)?);
        let txn = Txn::new()
            .when([Compare::mod_revision(self.ip_key(pool, ip), rev)])
            .and_then(ops);
        let (resp, tries) = self.txn_counted("hand a pod its address again", txn)?;
        if resp.succeeded() {
            return Ok(true);
        }
        // An attempt whose answer was lost may have applied it: then the retry's compare
        // fails on our own write, and the address is already ours.
        Ok(tries > 1
            && self
                .holder(pool, ip)?
                .is_some_and(|(o, _)| o.attachment() == owner.attachment()))
    }

    /// Moves the pool's hints down to `freed` so that the lowest free address is found again.
    fn lower_hints(&self, pool: &str, freed: IpAddr) -> Result<(), StoreError> {
        let prefix = self.key(&["hint", pool]) + "/";
        for kv in self.get("read the hints", RangeRequest::key(prefix).with_prefix())? {
            let mut current = kv;
            // Only if nobody moved it meanwhile; when someone did (another DEL lowering it, an
            // ADD moving it up), the failed transaction brings the hint back and this tries
            // again while it is still above `freed`: concurrent DELs leave it at the lowest
            // address they freed.
            for _ in 0..LOWER_HINT_TRIES {
                let Ok(h) = serde_json::from_slice::<Hint>(current.value()) else {
                    break;
                };
                if h.next.is_ipv4() != freed.is_ipv4() || to_u128(freed) >= to_u128(h.next) {
                    break;
                }
                let value = serde_json::to_vec(&Hint { next: freed })
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                let txn = Txn::new()
                    .when([Compare::mod_revision(current.key(), current.mod_revision())])
                    .and_then([TxnOp::put(current.key(), value)])
                    .or_else([TxnOp::get(RangeRequest::key(current.key()))]);
                let resp = self.txn("lower a hint", txn)?;
                match resp.range_kvs(0).first() {
                    Some(now) if !resp.succeeded() => current = now.clone(),
                    _ => break,
                }
            }
        }
        Ok(())
    }

    /// Writes many reservations at once (benchmarks, migrations): each claimed as ADD claims
    /// it (the key must not exist), in transactions of at most [`IMPORT_BATCH`] reservations.
    pub fn import(
        &self,
        id: &PoolId,
        range: &IpRange,
        reservations: &[Reservation],
    ) -> Result<(), StoreError> {
        let pool = pool_name(id);
        for chunk in reservations.chunks(IMPORT_BATCH) {
            let mut when = Vec::new();
            let mut ops = Vec::new();
            for r in chunk {
                when.push(Compare::create_revision(self.ip_key(&pool, r.ip), 0));
                // The pool description once per transaction: etcd refuses a key twice.
                let first = ops.is_empty();
                ops.extend(self.claim_ops(id, &pool, r.ip, &r.owner, first)?);
            }
            if !self
                .txn("import reservations", Txn::new().when(when).and_then(ops))?
                .succeeded()
            {
                return Err(StoreError::Unavailable(
                    "import: an address is already reserved".into(),
                ));
            }
        }
        // A stale hint would only cost a search; drop it so the next ADD starts at the range's start.
        self.txn(
            "import reservations",
            Txn::new().and_then([TxnOp::delete(self.hint_key(&pool, range))]),
        )?;
        Ok(())
    }

    /// Every reservation of the pool named `pool`, with the key-value it was read from.
    fn reservations_of(
        &self,
        what: &str,
        pool: &str,
    ) -> Result<Vec<(KeyValue, Reservation)>, StoreError> {
        let prefix = self.key(&["ip", pool]) + "/";
        self.get(what, RangeRequest::key(prefix.clone()).with_prefix())?
            .into_iter()
            .map(|kv| {
                let k = String::from_utf8_lossy(kv.key()).into_owned();
                let ip = parse_ip_token(&k[prefix.len()..])
                    .ok_or_else(|| corrupt(kv.key(), "not an address token"))?;
                let owner: Owner =
                    serde_json::from_slice(kv.value()).map_err(|e| corrupt(kv.key(), e))?;
                Ok((kv, Reservation { ip, owner }))
            })
            .collect()
    }

    /// Moves the reservations of pools an earlier release named by the whole range key into
    /// `id` (the pool of their network and CIDR). An address held in two such forks (the fault
    /// being fixed) stays where it is, logged, for an operator to release.
    fn upgrade_pool(&self, id: &PoolId) -> Result<(), StoreError> {
        let Some(legacy) = legacy_pool_prefix(id) else {
            return Ok(());
        };
        let descriptions = self.key(&["pools", &legacy]);
        let found = self.get(
            "look for pools of an earlier release",
            RangeRequest::key(descriptions)
                .with_prefix()
                .with_keys_only(),
        )?;
        let pools_prefix = self.key(&["pools"]) + "/";
        for kv in found {
            let name = String::from_utf8_lossy(kv.key())[pools_prefix.len()..].to_string();
            self.migrate_pool(&name, id)?;
        }
        Ok(())
    }

    fn migrate_pool(&self, legacy: &str, id: &PoolId) -> Result<(), StoreError> {
        let pool = pool_name(id);
        let mut kept = 0;
        for (kv, Reservation { ip, owner }) in
            self.reservations_of("read a pool of an earlier release", legacy)?
        {
            let mut ops = self.unclaim_ops(legacy, ip, &owner);
            ops.extend(self.claim_ops(id, &pool, ip, &owner, true)?);
            let txn = Txn::new()
                .when([
                    Compare::mod_revision(kv.key(), kv.mod_revision()),
                    Compare::create_revision(self.ip_key(&pool, ip), 0),
                ])
                .and_then(ops);
            if self.txn("move a reservation", txn)?.succeeded() {
                continue;
            }
            match self.holder(&pool, ip)? {
                Some((o, _)) if o.attachment() == owner.attachment() => {
                    let txn = Txn::new()
                        .when([Compare::mod_revision(kv.key(), kv.mod_revision())])
                        .and_then(self.unclaim_ops(legacy, ip, &owner));
                    self.txn("move a reservation", txn)?;
                }
                Some((o, _)) => {
                    cni::log_error!(
                        "store upgrade: {ip} is held by {}/{} and, in the forked pool {legacy}, \
                         by {}/{}: kept there; release one with multihome-ipam",
                        o.container_id,
                        o.ifname,
                        owner.container_id,
                        owner.ifname
                    );
                    kept += 1;
                }
                // Released meanwhile: the next pass moves what is left.
                None => kept += 1,
            }
        }
        if kept == 0 {
            self.txn(
                "drop a pool of an earlier release",
                Txn::new().and_then([
                    TxnOp::delete(self.key(&["pools", legacy])),
                    TxnOp::delete_prefix(self.key(&["hint", legacy]) + "/"),
                    TxnOp::delete_prefix(self.key(&["own", legacy]) + "/"),
                ]),
            )?;
        }
        Ok(())
    }

    /// Checks that every reservation is indexed under its attachment (and pod) and that every
    /// index entry is confirmed by a reservation (both are written in one transaction, so a
    /// disagreement is damage, not a killed call).
    pub fn verify(&self) -> Result<Verified, StoreError> {
        let mut out = Verified::default();
        for id in self.pool_ids()? {
            let pool = pool_name(&id);
            let held = self.list(&id)?;
            let prefix = self.key(&["own", &pool]) + "/";
            let index = self.get(
                "read the owner index",
                RangeRequest::key(prefix.clone())
                    .with_prefix()
                    .with_keys_only(),
            )?;
            out.files += held.len() + index.len() + 1;
            let mut entries = std::collections::BTreeSet::new();
            for kv in &index {
                let rest = String::from_utf8_lossy(kv.key())[prefix.len()..].to_string();
                let (who, token) = rest.rsplit_once('/').unwrap_or((&rest, ""));
                match parse_ip_token(token) {
                    Some(ip) => {
                        entries.insert((who.to_string(), ip));
                    }
                    None => out.problems.push(format!("{rest}: not an index entry")),
                }
            }
            let mut wanted = std::collections::BTreeSet::new();
            for r in &held {
                for who in whos(&r.owner) {
                    if !entries.contains(&(who.clone(), r.ip)) {
                        out.problems.push(format!(
                            "pool {pool}: {} is held by {who} but not indexed",
                            r.ip
                        ));
                    }
                    wanted.insert((who, r.ip));
                }
            }
            for (who, ip) in entries.difference(&wanted) {
                out.problems.push(format!(
                    "pool {pool}: index entry {who} -> {ip} is not confirmed by a reservation"
                ));
            }
        }
        Ok(out)
    }

    /// Every pool the store describes.
    fn pool_ids(&self) -> Result<Vec<PoolId>, StoreError> {
        let prefix = self.key(&["pools"]) + "/";
        let mut out = Vec::new();
        for kv in self.get("list pools", RangeRequest::key(prefix).with_prefix())? {
            let meta: PoolMeta =
                serde_json::from_slice(kv.value()).map_err(|e| corrupt(kv.key(), e))?;
            out.push(meta.id());
        }
        out.sort();
        Ok(out)
    }
}

fn container_who(container_id: &str, ifname: &str) -> String {
    format!("c|{}|{}", escape(container_id), escape(ifname))
}

fn pod_who(pod_ref: &str, ifname: &str) -> String {
    format!("p|{}|{}", escape(pod_ref), escape(ifname))
}

/// The index entries of a reservation of `owner`: each live attachment, an ordinary one's pod,
/// a sticky one's MAC.
fn whos(owner: &Owner) -> Vec<String> {
    owner.index_entries(escape)
}

impl Store for EtcdStore {
    fn reserve(&self, id: &PoolId, range: &IpRange, owner: &Owner) -> Result<IpAddr, StoreError> {
        let pool = pool_name(id);
        let this = container_who(&owner.container_id, &owner.ifname);
        let pod = owner.pod_ref.as_deref().map(|p| pod_who(p, &owner.ifname));
        // One linearizable round trip: what this attachment (and pod) holds, and the hint.
        let keys_only =
            |prefix: String| TxnOp::get(RangeRequest::key(prefix).with_prefix().with_keys_only());
        let mut reads = vec![
            keys_only(self.index_prefix(&pool, &this)),
            TxnOp::get(RangeRequest::key(self.hint_key(&pool, range))),
        ];
        if let Some(p) = &pod {
            reads.push(keys_only(self.index_prefix(&pool, p)));
        }
        let legacy = legacy_pool_prefix(id).map(|l| self.key(&["pools", &l]));
        let legacy_at = reads.len();
        if let Some(l) = &legacy {
            reads.push(TxnOp::get(
                RangeRequest::key(l.clone())
                    .with_prefix()
                    .with_keys_only()
                    .with_limit(1),
            ));
        }
        let answers = self.txn("read the owner index", Txn::new().and_then(reads))?;
        if legacy.is_some() && !answers.range_kvs(legacy_at).is_empty() {
            self.upgrade_pool(id)?;
            return self.reserve(id, range, owner);
        }
        let read_revision = answers.header.revision;
        let kvs = |i: usize| answers.range_kvs(i).to_vec();
        let ips = |prefix: String, kvs: Vec<KeyValue>| -> Result<Vec<IpAddr>, StoreError> {
            kvs.iter()
                .map(|kv| {
                    let k = String::from_utf8_lossy(kv.key());
                    parse_ip_token(&k[prefix.len()..])
                        .ok_or_else(|| corrupt(kv.key(), "not an address token"))
                })
                .collect()
        };
        if let Some(ip) = ips(self.index_prefix(&pool, &this), kvs(0))?
            .into_iter()
            .find(|ip| range.contains(*ip))
        {
            return Ok(ip);
        }
        let hinted = !kvs(1).is_empty();
        let hint = kvs(1)
            .first()
            .and_then(|kv| serde_json::from_slice::<Hint>(kv.value()).ok())
            .map(|h| h.next);
        if let (Some(pod_ref), Some(p)) = (owner.pod_ref.as_deref(), &pod) {
            for ip in ips(self.index_prefix(&pool, p), kvs(2))? {
                if range.contains(ip) && self.adopt(id, &pool, ip, pod_ref, owner)? {
                    return Ok(ip);
                }
            }
        }
        self.allocate(id, &pool, range, owner, hint, hinted, read_revision)
    }

    fn reserve_exact(
        &self,
        id: &PoolId,
        _range: &IpRange,
        ip: IpAddr,
        owner: &Owner,
    ) -> Result<(), StoreError> {
        let pool = pool_name(id);
        if let Some(l) = legacy_pool_prefix(id).map(|l| self.key(&["pools", &l])) {
            let old = self.get(
                "look for a pool of an earlier release",
                RangeRequest::key(l)
                    .with_prefix()
                    .with_keys_only()
                    .with_limit(1),
            )?;
            if !old.is_empty() {
                self.upgrade_pool(id)?;
            }
        }
        for _ in 0..MAX_CLAIM_ATTEMPTS {
            match self.holder(&pool, ip)? {
                Some((held, _)) if held.holds(&owner.container_id, &owner.ifname) => return Ok(()),
                Some((held, _))
                    if owner.pod_ref.is_some()
                        && held.sticky.is_none()
                        && held.pod_ref == owner.pod_ref
                        && held.ifname == owner.ifname =>
                {
                    let pod = owner.pod_ref.as_deref().expect("checked");
                    if self.adopt(id, &pool, ip, pod, owner)? {
                        return Ok(());
                    }
                }
                Some((held, _)) => {
                    return Err(StoreError::Taken {
                        ip,
                        holder: ipam::store::describe_owner(&held),
                    })
                }
                None => {
                    let txn = Txn::new()
                        .when([Compare::create_revision(self.ip_key(&pool, ip), 0)])
                        .and_then(self.claim_ops(id, &pool, ip, owner, true)?);
                    let (resp, tries) = self.txn_counted("claim a requested address", txn)?;
                    if resp.succeeded() {
                        return Ok(());
                    }
                    // Lost: to another claim (the next read names it), or to our own attempt
                    // whose answer was lost (the next read finds it ours).
                    let _ = tries;
                }
            }
        }
        Err(StoreError::Transient(format!(
            "the claim of requested address {ip} kept losing to concurrent changes"
        )))
    }

    fn release_ip(&self, id: &PoolId, ip: IpAddr, owner: &Owner) -> Result<bool, StoreError> {
        let pool = pool_name(id);
        let Some((held, rev)) = self.holder(&pool, ip)? else {
            return Ok(false);
        };
        if held.container_id != owner.container_id || held.ifname != owner.ifname {
            return Ok(false);
        }
        // Hints first: a call killed between the two leaves a hint too low (a longer search),
        // never one above a free address.
        self.lower_hints(&pool, ip)?;
        let txn = Txn::new()
            .when([Compare::mod_revision(self.ip_key(&pool, ip), rev)])
            .and_then(self.unclaim_ops(&pool, ip, &held));
        let (resp, tries) = self.txn_counted("release an address", txn)?;
        if resp.succeeded() {
            return Ok(true);
        }
        // A lost answer whose attempt applied the release: the key is gone or someone else's.
        Ok(tries > 1
            && self
                .holder(&pool, ip)?
                .is_none_or(|(o, _)| o.attachment() != owner.attachment()))
    }

    fn release(
        &self,
        id: &PoolId,
        container_id: &str,
        ifname: &str,
    ) -> Result<Vec<IpAddr>, StoreError> {
        self.upgrade_pool(id)?;
        let mut freed = Vec::new();
        let now = ipam::store::now_s();
        let leave = |cur: Option<&Owner>| ipam::sticky::leave(cur, container_id, ifname, now);
        for r in self.find(id, container_id, ifname)? {
            if let (_, Change::Free) = self.update(id, r.ip, &leave)? {
                freed.push(r.ip);
            }
        }
        Ok(freed)
    }

    fn update(
        &self,
        id: &PoolId,
        ip: IpAddr,
        decide: &dyn Fn(Option<&Owner>) -> Change,
    ) -> Result<(Option<Owner>, Change), StoreError> {
        let pool = pool_name(id);
        let key = self.ip_key(&pool, ip);
        for _ in 0..MAX_CLAIM_ATTEMPTS {
            let held = self.holder(&pool, ip)?;
            let seen = held.as_ref().map(|(o, _)| o.clone());
            let change = decide(seen.as_ref());
            // Only if nobody changed the reservation since it was read; otherwise read again and
            // decide again (a lost answer whose attempt applied the change is seen as done: the
            // decisions are idempotent).
            let compare = match &held {
                Some((_, rev)) => Compare::mod_revision(key.clone(), *rev),
                None => Compare::create_revision(key.clone(), 0),
            };
            let ops = match (&change, &seen) {
                (Change::Put(next), Some(prev)) if next != prev => {
                    let kept = whos(next);
                    let mut ops = self.claim_ops(id, &pool, ip, next, false)?;
                    ops.extend(
                        whos(prev)
                            .into_iter()
                            .filter(|w| !kept.contains(w))
                            .map(|w| TxnOp::delete(self.index_key(&pool, &w, ip))),
                    );
                    ops
                }
                (Change::Put(next), None) => self.claim_ops(id, &pool, ip, next, true)?,
                (Change::Free, Some(prev)) => {
                    // Hints first: a call killed between the two leaves a hint too low.
                    self.lower_hints(&pool, ip)?;
                    self.unclaim_ops(&pool, ip, prev)
                }
                _ => return Ok((seen, Change::Keep)),
            };
            let txn = Txn::new().when([compare]).and_then(ops);
            if self.txn("change a reservation", txn)?.succeeded() {
                return Ok((seen, change));
            }
        }
        Err(StoreError::Transient(format!(
            "the change of {ip} kept losing to concurrent changes"
        )))
    }

    fn find_sticky(
        &self,
        id: &PoolId,
        network: &str,
        mac: &str,
    ) -> Result<Vec<Reservation>, StoreError> {
        let pool = pool_name(id);
        let mut out = Vec::new();
        for ip in self.indexed(&pool, &ipam::store::mac_entry(network, mac, escape))? {
            if let Some((owner, _)) = self.holder(&pool, ip)? {
                if owner.is_sticky_for(network, mac) {
                    out.push(Reservation { ip, owner });
                }
            }
        }
        Ok(out)
    }

    fn find(
        &self,
        id: &PoolId,
        container_id: &str,
        ifname: &str,
    ) -> Result<Vec<Reservation>, StoreError> {
        let pool = pool_name(id);
        let mut out = Vec::new();
        for ip in self.indexed(&pool, &container_who(container_id, ifname))? {
            if let Some((owner, _)) = self.holder(&pool, ip)? {
                if owner.holds(container_id, ifname) {
                    out.push(Reservation { ip, owner });
                }
            }
        }
        Ok(out)
    }

    fn list(&self, id: &PoolId) -> Result<Vec<Reservation>, StoreError> {
        let mut out: Vec<Reservation> = self
            .reservations_of("list reservations", &pool_name(id))?
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        out.sort_by_key(|r| (r.ip.is_ipv6(), to_u128(r.ip)));
        Ok(out)
    }

    fn pools(&self) -> Result<Vec<PoolId>, StoreError> {
        self.pool_ids()
    }

    fn status(&self) -> Result<(), StoreError> {
        // A linearizable read needs a leader and quorum: what ADD needs.
        let probe = RangeRequest::key(self.key(&["pools"]) + "/")
            .with_prefix()
            .with_keys_only()
            .with_limit(1);
        self.get("answer STATUS", probe)
            .map(|_| ())
            .map_err(|e| match e {
                StoreError::Transient(m) => StoreError::Unavailable(m),
                other => other,
            })
    }
}

#[cfg(test)]
#[path = "etcd_fake_tests.rs"]
mod fake_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_tokens_sort_as_addresses_and_round_trip() {
        let a: IpAddr = "10.1.0.9".parse().unwrap();
        let b: IpAddr = "10.1.0.10".parse().unwrap();
        assert!(ip_token(a) < ip_token(b));
        assert_eq!(parse_ip_token(&ip_token(b)), Some(b));
        let v6: IpAddr = "fd00::ffff".parse().unwrap();
        assert_eq!(ip_token(v6).len(), 34);
        assert_eq!(parse_ip_token(&ip_token(v6)), Some(v6));
        assert_eq!(parse_ip_token("4-zz"), None);
    }

    #[test]
    fn pool_and_owner_names_cannot_escape_their_key_segment() {
        let id = PoolId {
            network: "a/b c".into(),
            cidr: Some("10.0.0.0/24".into()),
        };
        assert_eq!(pool_name(&id), "n=a%2Fb%20c,c=10.0.0.0%2F24");
        assert_eq!(container_who("abc", "net1"), "c|abc|net1");
        assert_eq!(pod_who("ns/pod", "net1"), "p|ns%2Fpod|net1");
    }
}
