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
use std::net::IpAddr;
use std::time::{Duration, Instant};

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, KeyValue,
    TlsOptions, Txn, TxnOp,
};
use serde::{Deserialize, Serialize};

use crate::range::{from_u128, to_u128, IpRange};
use crate::store::{Owner, PoolId, Reservation, Store, StoreError};
use crate::whereabouts_conf::EtcdConf;

/// Keys read per page while looking for a free address.
const PAGE: i64 = 256;
/// Claims lost to concurrent ADDs before giving up with "try again later".
const MAX_CLAIM_ATTEMPTS: usize = 200;

/// The etcd store.
pub struct EtcdStore {
    rt: tokio::runtime::Runtime,
    client: Client,
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
        let endpoints = conf.endpoints.clone();
        let client = rt
            .block_on(Client::connect(endpoints, Some(opts)))
            .map_err(|e| match map_err("connect", e) {
                StoreError::Transient(m) => StoreError::Unavailable(m),
                other => other,
            })?;
        Ok(EtcdStore {
            rt,
            client,
            prefix: conf.prefix.clone(),
            request_timeout: Duration::from_millis(conf.request_timeout_ms),
        })
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
            match op(self.client.clone()).map_err(|e| map_err(what, e)) {
                Err(StoreError::Transient(m)) if Instant::now() + pause < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(500));
                    let _ = m;
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
        self.retrying(what, |mut c| self.rt.block_on(c.txn(txn.clone())))
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

    /// The first allocatable address of `range` at or after `from` whose key is absent.
    fn first_free(
        &self,
        pool: &str,
        range: &IpRange,
        from: IpAddr,
    ) -> Result<Option<IpAddr>, StoreError> {
        let Some(mut candidate) = range.next_allocatable(from) else {
            return Ok(None);
        };
        let end_key = self.ip_key(
            pool,
            from_u128(to_u128(range.end).saturating_add(1), range.end.is_ipv4()),
        );
        loop {
            let opts = GetOptions::new()
                .with_range(end_key.clone())
                .with_keys_only()
                .with_limit(PAGE);
            let kvs = self.get(
                "look for a free address",
                self.ip_key(pool, candidate),
                Some(opts),
            )?;
            let full = kvs.len() as i64 == PAGE;
            for kv in &kvs {
                let k = String::from_utf8_lossy(kv.key());
                let token = k.rsplit('/').next().unwrap_or_default();
                let taken = parse_ip_token(token)
                    .ok_or_else(|| corrupt(kv.key(), "not an address token"))?;
                if to_u128(taken) > to_u128(candidate) {
                    return Ok(Some(candidate));
                }
                if taken == candidate {
                    let after =
                        from_u128(to_u128(candidate).saturating_add(1), candidate.is_ipv4());
                    match range.next_allocatable(after) {
                        Some(n) if to_u128(n) > to_u128(candidate) => candidate = n,
                        _ => return Ok(None),
                    }
                }
            }
            if !full {
                return Ok(Some(candidate));
            }
        }
    }

    /// Reserves the lowest free address from the hint on (then from the start of the range),
    /// claiming it in a transaction that fails if another ADD got there first.
    fn allocate(
        &self,
        id: &PoolId,
        pool: &str,
        range: &IpRange,
        owner: &Owner,
    ) -> Result<IpAddr, StoreError> {
        let hint_key = self.hint_key(pool, range);
        let hint = self
            .get("read the hint", hint_key.clone(), None)?
            .first()
            .and_then(|kv| serde_json::from_slice::<Hint>(kv.value()).ok())
            .map(|h| h.next)
            .filter(|ip| range.contains(*ip));
        let mut starts = vec![range.start];
        if let Some(h) = hint {
            starts.insert(0, h);
        }
        let mut attempts = 0;
        for start in starts {
            let mut from = start;
            while let Some(ip) = self.first_free(pool, range, from)? {
                let after = from_u128(to_u128(ip).saturating_add(1), ip.is_ipv4());
                let mut ops = self.claim_ops(id, pool, ip, owner)?;
                let hint = serde_json::to_vec(&Hint { next: after })
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                ops.push(TxnOp::put(hint_key.clone(), hint, None));
                let txn = Txn::new()
                    .when([Compare::create_revision(
                        self.ip_key(pool, ip),
                        CompareOp::Equal,
                        0,
                    )])
                    .and_then(ops);
                if self.txn("claim an address", txn)?.succeeded() {
                    return Ok(ip);
                }
                // Lost to a concurrent ADD, or won by an attempt whose answer was lost.
                let this = container_who(&owner.container_id, &owner.ifname);
                if let Some(mine) = self
                    .indexed(pool, &this)?
                    .into_iter()
                    .find(|a| range.contains(*a))
                {
                    return Ok(mine);
                }
                attempts += 1;
                if attempts >= MAX_CLAIM_ATTEMPTS {
                    return Err(StoreError::Transient(format!(
                        "lost {attempts} claims in range {} to concurrent ADDs",
                        range.key()
                    )));
                }
                from = after;
            }
        }
        Err(StoreError::Exhausted {
            range: range.key(),
            capacity: range.capacity(),
        })
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
        for ip in self.indexed(&pool, &this)? {
            if range.contains(ip) {
                return Ok(ip);
            }
        }
        if let Some(pod) = &owner.pod_ref {
            for ip in self.indexed(&pool, &pod_who(pod, &owner.ifname))? {
                if !range.contains(ip) {
                    continue;
                }
                let Some((held, rev)) = self.holder(&pool, ip)? else {
                    continue;
                };
                if held.pod_ref.as_deref() != Some(pod) || held.ifname != owner.ifname {
                    continue;
                }
                // A restarted sandbox of the same pod: the address moves to the new container ID.
                let mut ops = vec![TxnOp::delete(
                    self.index_key(&pool, &container_who(&held.container_id, &held.ifname), ip),
                    None,
                )];
                ops.extend(self.claim_ops(id, &pool, ip, owner)?);
                let txn = Txn::new()
                    .when([Compare::mod_revision(
                        self.ip_key(&pool, ip),
                        CompareOp::Equal,
                        rev,
                    )])
                    .and_then(ops);
                if self.txn("hand a pod its address again", txn)?.succeeded() {
                    return Ok(ip);
                }
            }
        }
        self.allocate(id, &pool, range, owner)
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
