//! The etcd store: reservations shared by every node of a cluster, with no global lock and no
//! value that grows with the pool.
//!
//! whereabouts' Kubernetes store serialises every ADD and DEL of the cluster behind one lease and
//! rewrites one IPPool object holding the whole pool (1.5 MiB object limit, #497); its old etcd
//! backend held a mutex per range for the whole operation. Here each reservation is its own key,
//! claimed in one transaction that fails when the key already exists, together with its owner
//! index entries, so the index can never disagree with the reservations:
//! ```text
//! <prefix>/pools/<pool>                        {"network", "range"}: which pool this is
//! <prefix>/ip/<pool>/<4|6>-<hex>               {"container_id", "ifname", "pod_ref"}: the truth
//! <prefix>/own/<pool>/c|<cid>|<ifname>/<ip>    index by attachment (DEL, CHECK, idempotent ADD)
//! <prefix>/own/<pool>/p|<pod>|<ifname>/<ip>    index by pod (a restarted sandbox gets its address)
//! <prefix>/hint/<pool>/<range>                 where the next search starts (an optimisation only)
//! ```
//! Addresses are written as fixed-width hex so that keys sort as addresses do: the lowest free
//! address is found by reading a page of keys from the hint on, never the whole pool.
//!
//! Requests go to any member (the client balances over the endpoints) and require a leader, so
//! without quorum they fail at once, as "try again later" (code 11), instead of hanging.

use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, KeyValue,
    TlsOptions, Txn, TxnOp, TxnOpResponse,
};
use serde::{Deserialize, Serialize};

use crate::range::{from_u128, to_u128, IpRange};
use crate::store::{Owner, PoolId, Reservation, Store, StoreError};
use crate::whereabouts_conf::EtcdConf;

/// Keys read per page while looking for a free address.
const PAGE: i64 = 256;
/// Reservations per import transaction (each is two or three puts; etcd's default limit is 128
/// operations per transaction).
const IMPORT_BATCH: usize = 40;
/// After a lost claim, how many of the next free addresses a retry picks from at random.
const SPREAD: usize = 32;
/// Claims lost to concurrent ADDs before giving up with "try again later".
const MAX_CLAIM_ATTEMPTS: usize = 200;

/// The etcd store.
pub struct EtcdStore {
    rt: tokio::runtime::Runtime,
    client: std::cell::RefCell<Client>,
    /// Which of `endpoints` the client talks to.
    current: std::cell::Cell<usize>,
    endpoints: Vec<String>,
    options: ConnectOptions,
    prefix: String,
    request_timeout: Duration,
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
struct PoolMeta {
    network: String,
    #[serde(default)]
    range: Option<String>,
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
    match &id.range {
        None => format!("n={}", escape(&id.network)),
        Some(r) => format!("n={},r={}", escape(&id.network), escape(r)),
    }
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

fn map_err(what: &str, e: etcd_client::Error) -> StoreError {
    let msg = format!("etcd {what}: {e}");
    match &e {
        etcd_client::Error::GRpcStatus(s) => match s.code() {
            tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Aborted
            | tonic::Code::Cancelled => StoreError::Transient(msg),
            // A member that died under an in-flight request: its connection broke ("transport
            // error"); another member answers the retry.
            tonic::Code::Unknown if s.message().contains("transport") => StoreError::Transient(msg),
            _ => StoreError::Unavailable(msg),
        },
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
            StoreError::Transient(msg)
        }
        _ => StoreError::Unavailable(msg),
    }
}

fn corrupt(key: &[u8], why: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        what: String::from_utf8_lossy(key).into_owned(),
        why: why.to_string(),
    }
}

fn read_tls(conf: &EtcdConf) -> Result<Option<TlsOptions>, StoreError> {
    if conf.ca_file.is_none()
        && conf.cert_file.is_none()
        && !conf.endpoints.iter().any(|e| e.starts_with("https://"))
    {
        return Ok(None);
    }
    let read = |p: &std::path::Path, what: &str| {
        std::fs::read(p).map_err(|e| {
            StoreError::Unavailable(format!("cannot read {what} {}: {e}", p.display()))
        })
    };
    let mut tls = TlsOptions::new();
    if let Some(ca) = &conf.ca_file {
        tls = tls.ca_certificate(Certificate::from_pem(read(ca, "ipam.etcd_ca_cert_file")?));
    }
    if let (Some(cert), Some(key)) = (&conf.cert_file, &conf.key_file) {
        tls = tls.identity(Identity::from_pem(
            read(cert, "ipam.etcd_cert_file")?,
            read(key, "ipam.etcd_key_file")?,
        ));
    }
    Ok(Some(tls))
}

impl EtcdStore {
    /// Connects to the cluster `conf` names (nothing is read or written yet).
    pub fn connect(conf: &EtcdConf) -> Result<EtcdStore, StoreError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the etcd client runtime: {e}"))
            })?;
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_millis(conf.dial_timeout_ms))
            .with_timeout(Duration::from_millis(conf.request_timeout_ms))
            .with_require_leader(true);
        if let (Some(u), Some(p)) = (&conf.username, &conf.password) {
            opts = opts.with_user(u.clone(), p.clone());
        }
        if let Some(tls) = read_tls(conf)? {
            opts = opts.with_tls(tls);
        }
        // One member per process, picked at random (so that the nodes of a cluster spread over
        // the members), the others in turn when it fails: a channel to every member would cost
        // each member a connection per plugin call.
        let n = conf.endpoints.len().max(1);
        let first = (std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
            % n as u64) as usize;
        let mut last_err = None;
        for k in 0..n {
            let i = (first + k) % n;
            match rt.block_on(Client::connect(
                [conf.endpoints[i].clone()],
                Some(opts.clone()),
            )) {
                Ok(client) => {
                    return Ok(EtcdStore {
                        rt,
                        client: std::cell::RefCell::new(client),
                        current: std::cell::Cell::new(i),
                        endpoints: conf.endpoints.clone(),
                        options: opts,
                        prefix: conf.prefix.clone(),
                        request_timeout: Duration::from_millis(conf.request_timeout_ms),
                    })
                }
                Err(e) => last_err = Some(map_err(&format!("connect to {}", conf.endpoints[i]), e)),
            }
        }
        Err(match last_err {
            Some(StoreError::Transient(m)) | Some(StoreError::Unavailable(m)) => {
                StoreError::Unavailable(m)
            }
            Some(other) => other,
            None => StoreError::Unavailable("no etcd endpoint configured".into()),
        })
    }

    /// Moves to the next member after a transient failure (a dead member, a broken connection).
    fn switch_member(&self) {
        let n = self.endpoints.len();
        if n < 2 {
            return;
        }
        let next = (self.current.get() + 1) % n;
        let connected = self.rt.block_on(Client::connect(
            [self.endpoints[next].clone()],
            Some(self.options.clone()),
        ));
        // Moving on even when the connect fails: the next failure moves on again.
        self.current.set(next);
        if let Ok(c) = connected {
            *self.client.borrow_mut() = c;
        }
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
    /// until the request timeout: then "try again later".
    fn retrying<T>(
        &self,
        what: &str,
        mut op: impl FnMut(Client) -> Result<T, etcd_client::Error>,
    ) -> Result<T, StoreError> {
        let deadline = Instant::now() + self.request_timeout;
        let mut pause = Duration::from_millis(20);
        loop {
            let client = self.client.borrow().clone();
            match op(client).map_err(|e| map_err(what, e)) {
                Err(StoreError::Transient(_)) if Instant::now() + pause < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(500));
                    self.switch_member();
                }
                other => return other,
            }
        }
    }

    fn get(
        &self,
        what: &str,
        key: String,
        opts: Option<GetOptions>,
    ) -> Result<Vec<KeyValue>, StoreError> {
        self.retrying(what, |mut c| {
            self.rt
                .block_on(c.get(key.clone(), opts.clone()))
                .map(|mut r| r.take_kvs())
        })
    }

    /// A transaction; retried like reads. A retried claim may have been applied by an attempt
    /// whose answer was lost: callers look for their own reservation when a claim fails.
    fn txn(&self, what: &str, txn: Txn) -> Result<etcd_client::TxnResponse, StoreError> {
        self.txn_counted(what, txn).map(|(r, _)| r)
    }

    /// A transaction and how many attempts it took.
    fn txn_counted(
        &self,
        what: &str,
        txn: Txn,
    ) -> Result<(etcd_client::TxnResponse, usize), StoreError> {
        let tries = std::cell::Cell::new(0);
        let resp = self.retrying(what, |mut c| {
            tries.set(tries.get() + 1);
            self.rt.block_on(c.txn(txn.clone()))
        })?;
        Ok((resp, tries.get()))
    }

    /// The addresses an index entry lists for `who`, in `range` when given.
    fn indexed(&self, pool: &str, who: &str) -> Result<Vec<IpAddr>, StoreError> {
        let prefix = self.index_prefix(pool, who);
        let kvs = self.get(
            "read the owner index",
            prefix.clone(),
            Some(GetOptions::new().with_prefix().with_keys_only()),
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
        let kvs = self.get("read a reservation", self.ip_key(pool, ip), None)?;
        match kvs.first() {
            None => Ok(None),
            Some(kv) => {
                let owner: Owner =
                    serde_json::from_slice(kv.value()).map_err(|e| corrupt(kv.key(), e))?;
                Ok(Some((owner, kv.mod_revision())))
            }
        }
    }

    /// The puts that record `owner` at `ip`: reservation, indexes, pool description.
    fn claim_ops(
        &self,
        id: &PoolId,
        pool: &str,
        ip: IpAddr,
        owner: &Owner,
    ) -> Result<Vec<TxnOp>, StoreError> {
        let value =
            serde_json::to_vec(owner).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let meta = serde_json::to_vec(&PoolMeta {
            network: id.network.clone(),
            range: id.range.clone(),
        })
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let mut ops = vec![
            TxnOp::put(self.ip_key(pool, ip), value, None),
            TxnOp::put(
                self.index_key(pool, &container_who(&owner.container_id, &owner.ifname), ip),
                "",
                None,
            ),
            TxnOp::put(self.key(&["pools", pool]), meta, None),
        ];
        if let Some(p) = &owner.pod_ref {
            ops.push(TxnOp::put(
                self.index_key(pool, &pod_who(p, &owner.ifname), ip),
                "",
                None,
            ));
        }
        Ok(ops)
    }

    fn unclaim_ops(&self, pool: &str, ip: IpAddr, owner: &Owner) -> Vec<TxnOp> {
        let mut ops = vec![
            TxnOp::delete(self.ip_key(pool, ip), None),
            TxnOp::delete(
                self.index_key(pool, &container_who(&owner.container_id, &owner.ifname), ip),
                None,
            ),
        ];
        if let Some(p) = &owner.pod_ref {
            ops.push(TxnOp::delete(
                self.index_key(pool, &pod_who(p, &owner.ifname), ip),
                None,
            ));
        }
        ops
    }

    fn hint_key(&self, pool: &str, range: &IpRange) -> String {
        self.key(&["hint", pool, &escape(&range.key())])
    }

    /// Up to `want` free allocatable addresses of `range` from `from` on, lowest first, read
    /// from pages of keys. Reads are serializable (any member answers from its own copy): a
    /// stale page only costs a claim that fails, never an address given twice.
    fn free_candidates(
        &self,
        pool: &str,
        range: &IpRange,
        from: IpAddr,
        want: usize,
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
            let opts = GetOptions::new()
                .with_range(end_key.clone())
                .with_keys_only()
                .with_limit(PAGE)
                .with_serializable();
            let kvs = self.get(
                "look for a free address",
                self.ip_key(pool, candidate),
                Some(opts),
            )?;
            let full = kvs.len() as i64 == PAGE;
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
    /// claim the next try picks at random among the next free addresses, so that concurrent
    /// ADDs stop racing for the same one (each failed claim costs a consensus round).
    fn allocate(
        &self,
        id: &PoolId,
        pool: &str,
        range: &IpRange,
        owner: &Owner,
        hint: Option<IpAddr>,
    ) -> Result<IpAddr, StoreError> {
        let hint_key = self.hint_key(pool, range);
        let hint = hint.filter(|ip| range.contains(*ip));
        let mut from = hint.unwrap_or(range.start);
        let mut wrapped = from == range.start;
        let mut lost = 0usize;
        let mut rng = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        // The hint is where the lowest free address usually is: claim it straight away, and read
        // pages of keys only when that fails (one round trip fewer in the common case).
        let mut guess = hint.and_then(|h| range.next_allocatable(h));
        loop {
            let was_guess = guess.is_some();
            let (ip, lowest) = match guess.take() {
                Some(g) => (g, g),
                None => {
                    let free = self.free_candidates(pool, range, from, SPREAD)?;
                    let Some(&lowest) = free.first() else {
                        if wrapped {
                            return Err(StoreError::Exhausted {
                                range: range.key(),
                                capacity: range.capacity(),
                            });
                        }
                        (from, wrapped) = (range.start, true);
                        continue;
                    };
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
            let mut ops = self.claim_ops(id, pool, ip, owner)?;
            if ip == lowest {
                // Only a claim of the lowest candidate moves the hint: a random pick above it
                // must not hide the free addresses below.
                let after = from_u128(to_u128(ip).saturating_add(1), ip.is_ipv4());
                let next = serde_json::to_vec(&Hint { next: after })
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                ops.push(TxnOp::put(hint_key.clone(), next, None));
            }
            let txn = Txn::new()
                .when([Compare::create_revision(
                    self.ip_key(pool, ip),
                    CompareOp::Equal,
                    0,
                )])
                .and_then(ops);
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
            // A wrong guess is a stale hint, not a race: the next pick is still the lowest.
            lost += usize::from(!was_guess);
            if lost >= MAX_CLAIM_ATTEMPTS {
                return Err(StoreError::Transient(format!(
                    "lost {lost} claims in range {} to concurrent ADDs",
                    range.key()
                )));
            }
            from = lowest;
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
        if held.pod_ref.as_deref() != Some(pod_ref) || held.ifname != owner.ifname {
            return Ok(false);
        }
        let mut ops = vec![TxnOp::delete(
            self.index_key(pool, &container_who(&held.container_id, &held.ifname), ip),
            None,
        )];
        ops.extend(self.claim_ops(id, pool, ip, owner)?);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                self.ip_key(pool, ip),
                CompareOp::Equal,
                rev,
            )])
            .and_then(ops);
        Ok(self.txn("hand a pod its address again", txn)?.succeeded())
    }

    /// Moves the pool's hints down to `freed` so that the lowest free address is found again.
    fn lower_hints(&self, pool: &str, freed: IpAddr) -> Result<(), StoreError> {
        let prefix = self.key(&["hint", pool]) + "/";
        for kv in self.get(
            "read the hints",
            prefix,
            Some(GetOptions::new().with_prefix()),
        )? {
            let Ok(h) = serde_json::from_slice::<Hint>(kv.value()) else {
                continue;
            };
            if h.next.is_ipv4() != freed.is_ipv4() || to_u128(freed) >= to_u128(h.next) {
                continue;
            }
            let value = serde_json::to_vec(&Hint { next: freed })
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            // Only if nobody moved it meanwhile; a lost race leaves a hint too high, which costs
            // the next search a pass from the start of the range, never an address.
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    kv.key().to_vec(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then([TxnOp::put(kv.key().to_vec(), value, None)]);
            self.txn("lower a hint", txn)?;
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
                when.push(Compare::create_revision(
                    self.ip_key(&pool, r.ip),
                    CompareOp::Equal,
                    0,
                ));
                let first = ops.is_empty();
                let claim = self.claim_ops(id, &pool, r.ip, &r.owner)?;
                // The pool description (third op) once per transaction: etcd refuses a key twice.
                ops.extend(
                    claim
                        .into_iter()
                        .enumerate()
                        .filter(|(i, _)| *i != 2 || first)
                        .map(|(_, op)| op),
                );
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
            Txn::new().and_then([TxnOp::delete(self.hint_key(&pool, range), None)]),
        )?;
        Ok(())
    }

    /// Every pool the store describes.
    fn pool_ids(&self) -> Result<Vec<PoolId>, StoreError> {
        let prefix = self.key(&["pools"]) + "/";
        let mut out = Vec::new();
        for kv in self.get("list pools", prefix, Some(GetOptions::new().with_prefix()))? {
            let meta: PoolMeta =
                serde_json::from_slice(kv.value()).map_err(|e| corrupt(kv.key(), e))?;
            out.push(PoolId {
                network: meta.network,
                range: meta.range,
            });
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

impl Store for EtcdStore {
    fn reserve(&self, id: &PoolId, range: &IpRange, owner: &Owner) -> Result<IpAddr, StoreError> {
        let pool = pool_name(id);
        let this = container_who(&owner.container_id, &owner.ifname);
        let pod = owner.pod_ref.as_deref().map(|p| pod_who(p, &owner.ifname));
        // One linearizable round trip: what this attachment (and pod) holds, and the hint.
        let keys_only = || Some(GetOptions::new().with_prefix().with_keys_only());
        let mut reads = vec![
            TxnOp::get(self.index_prefix(&pool, &this), keys_only()),
            TxnOp::get(self.hint_key(&pool, range), None),
        ];
        if let Some(p) = &pod {
            reads.push(TxnOp::get(self.index_prefix(&pool, p), keys_only()));
        }
        let answers = self
            .txn("read the owner index", Txn::new().and_then(reads))?
            .op_responses();
        let kvs = |i: usize| match answers.get(i) {
            Some(TxnOpResponse::Get(g)) => g.kvs().to_vec(),
            _ => Vec::new(),
        };
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
        self.allocate(id, &pool, range, owner, hint)
    }

    fn release_ip(&self, id: &PoolId, ip: IpAddr, owner: &Owner) -> Result<bool, StoreError> {
        let pool = pool_name(id);
        let Some((held, rev)) = self.holder(&pool, ip)? else {
            return Ok(false);
        };
        if held.container_id != owner.container_id || held.ifname != owner.ifname {
            return Ok(false);
        }
        let txn = Txn::new()
            .when([Compare::mod_revision(
                self.ip_key(&pool, ip),
                CompareOp::Equal,
                rev,
            )])
            .and_then(self.unclaim_ops(&pool, ip, &held));
        if !self.txn("release an address", txn)?.succeeded() {
            return Ok(false);
        }
        self.lower_hints(&pool, ip)?;
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
        Ok(freed)
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
                if owner.container_id == container_id && owner.ifname == ifname {
                    out.push(Reservation { ip, owner });
                }
            }
        }
        Ok(out)
    }

    fn list(&self, id: &PoolId) -> Result<Vec<Reservation>, StoreError> {
        let pool = pool_name(id);
        let prefix = self.key(&["ip", &pool]) + "/";
        let mut out = Vec::new();
        for kv in self.get(
            "list reservations",
            prefix.clone(),
            Some(GetOptions::new().with_prefix()),
        )? {
            let k = String::from_utf8_lossy(kv.key());
            let ip = parse_ip_token(&k[prefix.len()..])
                .ok_or_else(|| corrupt(kv.key(), "not an address token"))?;
            let owner: Owner =
                serde_json::from_slice(kv.value()).map_err(|e| corrupt(kv.key(), e))?;
            out.push(Reservation { ip, owner });
        }
        out.sort_by_key(|r| (r.ip.is_ipv6(), to_u128(r.ip)));
        Ok(out)
    }

    fn pools(&self) -> Result<Vec<PoolId>, StoreError> {
        self.pool_ids()
    }

    fn gc(
        &self,
        id: &PoolId,
        valid: &BTreeSet<(String, String)>,
    ) -> Result<Vec<Reservation>, StoreError> {
        let mut freed = Vec::new();
        for r in self.list(id)? {
            if !valid.contains(&r.owner.attachment()) && self.release_ip(id, r.ip, &r.owner)? {
                freed.push(r);
            }
        }
        Ok(freed)
    }

    fn status(&self) -> Result<(), StoreError> {
        // A linearizable read needs a leader and quorum: what ADD needs.
        let opts = GetOptions::new()
            .with_prefix()
            .with_keys_only()
            .with_limit(1);
        self.get("answer STATUS", self.key(&["pools"]) + "/", Some(opts))
            .map(|_| ())
            .map_err(|e| match e {
                StoreError::Transient(m) => StoreError::Unavailable(m),
                other => other,
            })
    }
}

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
            range: Some("10.0.0.0/24".into()),
        };
        assert_eq!(pool_name(&id), "n=a%2Fb%20c,r=10.0.0.0%2F24");
        assert_eq!(container_who("abc", "net1"), "c|abc|net1");
        assert_eq!(pod_who("ns/pod", "net1"), "p|ns%2Fpod|net1");
    }
}
