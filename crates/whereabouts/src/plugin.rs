//! `whereabouts` IPAM: cluster-wide allocation with whereabouts' configuration, on the embedded
//! file store (etcd when the cluster outgrows one node).
//!
//! - ADD: one address per range (`ipRanges`), all or nothing; an attachment (container ID +
//!   ifname) or a pod (podRef + ifname) that already holds an address gets it again.
//! - `sticky_by_mac`: the addresses belong to the MAC the runtime passes, not to the pod: the
//!   VM's next launcher pod (any node) joins the reservation, DEL parks it for the retention
//!   time when no pod of the MAC is left, GC frees it after ([`ipam::sticky`]).
//! - DEL: releases the attachment's addresses; idempotent. It reads only where the store is and
//!   which pools the ranges live in, so a fault only ADD cares about never fails it.
//! - CHECK: every range holds a reservation of this attachment, and every address of the
//!   prevResult in a range is held by it.
//! - GC: releases the reservations this network (`name`) made whose attachment is not among the
//!   valid ones (whereabouts needs a daily reconciler for these leaks, #75, #546, and that
//!   reconciler has freed live pods' addresses, #162, #176); other networks sharing the pool keep
//!   theirs.
//! - STATUS: code 50 when the store cannot be used, naming why.

use std::collections::BTreeSet;
use std::net::IpAddr;

use cni::{code, Call, CniResult, Error, IpConfig, Plugin};

use crate::conf::{self, Datastore, Teardown, WhereaboutsConf};
use crate::etcd_store::EtcdStore;
use crate::file_store::FileStore;
use ipam::range::IpRange;
use ipam::store::{Change, Owner, PoolId, Sticky, Store};

/// The `whereabouts` IPAM plugin.
#[derive(Debug, Clone, Copy)]
pub struct Whereabouts;

/// The store a configuration names.
pub fn open_store(conf: &WhereaboutsConf) -> Result<Box<dyn Store>, Error> {
    open_datastore(&conf.datastore)
}

/// The store at `datastore`.
pub fn open_datastore(datastore: &Datastore) -> Result<Box<dyn Store>, Error> {
    match datastore {
        Datastore::File { dir } => {
            safe_store_dir(dir)?;
            Ok(Box::new(FileStore::new(dir)))
        }
        Datastore::Etcd(etcd) => Ok(Box::new(EtcdStore::connect(etcd)?)),
    }
}

/// The file store's directory, made 0700 if missing, used only when nobody but root can change
/// the path to it or plant a link in it (the lock and temporary files live there; the reference
/// host-local's dataDir follows whatever is planted, and so did we).
fn safe_store_dir(dir: &std::path::Path) -> Result<(), Error> {
    cni::nodefs::private_dir(dir, &[dir.to_path_buf()])
        .map(|_| ())
        .map_err(|e| {
            Error::invalid_config(format!(
                "ipam.store_dir {:?}: {e}",
                dir.display().to_string()
            ))
        })
}

fn owner(call: &Call, conf: &WhereaboutsConf) -> Owner {
    Owner {
        container_id: call.env.container_id.clone(),
        ifname: call.env.ifname.clone(),
        pod_ref: call.env.args.pod_ref(),
        network: Some(call.conf.name.clone()),
        sticky: conf.sticky.as_ref().map(|s| Sticky {
            mac: s.mac.clone(),
            retention_s: s.retention_s,
            also: Vec::new(),
            parked_until: None,
        }),
    }
}

/// How to take back what one range's reservation did, if a later one fails.
enum Undo {
    /// It was held before this call: nothing.
    Nothing,
    /// A fresh reservation: release it.
    Release,
    /// This attachment joined the MAC's reservation `before`, writing `joined`: write `before`.
    Restore {
        /// What the reservation was.
        before: Box<Owner>,
        /// What the join wrote.
        joined: Box<Owner>,
    },
}

/// The MAC's address in `range` (`sticky_by_mac`): the reservation it holds there, joined (a
/// parked one is the new pod's; a live one is shared with the pod already there, the source of a
/// live migration), else a fresh one made for it (the requested address when one is asked for).
/// A request for another address than the MAC holds is refused: the VM keeps its address.
fn reserve_sticky(
    store: &dyn Store,
    pool: &PoolId,
    range: &IpRange,
    asked: Option<IpAddr>,
    owner: &Owner,
) -> Result<(IpAddr, Undo), Error> {
    let mac = owner
        .sticky
        .as_ref()
        .map(|s| s.mac.clone())
        .unwrap_or_default();
    let network = owner.network.clone().unwrap_or_default();
    for _ in 0..3 {
        let Some(found) = store
            .find_sticky(pool, &network, &mac)?
            .into_iter()
            // Anywhere in the range's network: a requested address may lie outside its bounds.
            .find(|r| range.network.contains(r.ip))
        else {
            break;
        };
        if let Some(ip) = asked.filter(|ip| *ip != found.ip) {
            return Err(Error::invalid_config(format!(
                "requested address {ip}: MAC {mac} holds {} in range {} on network {network:?};                  release it first (multihome-ipam release --mac {mac})",
                found.ip,
                range.key()
            )));
        }
        let decide = |cur: Option<&Owner>| ipam::sticky::join(cur, owner);
        match store.update(pool, found.ip, &decide)? {
            (Some(before), Change::Put(joined)) => {
                let (before, joined) = (Box::new(before), Box::new(joined));
                return Ok((found.ip, Undo::Restore { before, joined }));
            }
            (Some(cur), Change::Keep) if cur.is_sticky_for(&network, &mac) => {
                return Ok((found.ip, Undo::Nothing))
            }
            // Freed (GC past the retention) or released since it was found: look again.
            _ => continue,
        }
    }
    let ip = match asked {
        Some(ip) => reserve_asked(store, pool, range, ip, owner)?,
        None => store.reserve(pool, range, owner)?,
    };
    Ok((ip, Undo::Release))
}

/// The pools this configuration allocates from, once each.
fn pools(conf: &WhereaboutsConf) -> BTreeSet<PoolId> {
    conf.ranges
        .iter()
        .map(|r| PoolId::for_range(&conf.network_name, r, conf.enable_overlapping_ranges))
        .collect()
}

/// An allocated address as a result reports it: with the range's prefix length, and the
/// configured gateway when it is of the address's family (whereabouts reports it on every
/// address, also when it lies outside the range).
fn address(conf: &WhereaboutsConf, range: &IpRange, ip: IpAddr) -> IpConfig {
    let gateway = conf.gateway.filter(|gw| gw.is_ipv4() == ip.is_ipv4());
    IpConfig {
        interface: None,
        address: range.with_prefix(ip),
        gateway,
    }
}

/// Reserves the address asked for in `range` (the `ips` capability, CNI_ARGS `IP`): refused
/// when the attachment already holds another one there (an ADD repeated with another request:
/// DEL it first), or when another attachment holds it (103).
fn reserve_asked(
    store: &dyn Store,
    pool: &PoolId,
    range: &IpRange,
    ip: IpAddr,
    owner: &Owner,
) -> Result<IpAddr, Error> {
    let held = store.find(pool, &owner.container_id, &owner.ifname)?;
    if let Some(other) = held
        .iter()
        .map(|r| r.ip)
        .find(|a| *a != ip && range.network.contains(*a))
    {
        return Err(Error::invalid_config(format!(
            "requested address {ip}: this attachment (container {} interface {}) already holds \
             {other} in range {}; DEL it first",
            owner.container_id,
            owner.ifname,
            range.key()
        )));
    }
    store.reserve_exact(pool, range, ip, owner)?;
    Ok(ip)
}

/// Reserves one address per range; on a failure releases what this call reserved anew.
fn reserve_all(
    store: &dyn Store,
    conf: &WhereaboutsConf,
    owner: &Owner,
) -> Result<Vec<IpConfig>, Error> {
    // What the attachment held before this call, so that undoing a partial ipRanges ADD keeps
    // it. With one range there is never anything to undo: no read (a round trip to etcd).
    let mut held_before = Vec::new();
    for pool in pools(conf).into_iter().filter(|_| conf.ranges.len() > 1) {
        held_before.extend(
            store
                .find(&pool, &owner.container_id, &owner.ifname)?
                .into_iter()
                .map(|r| r.ip),
        );
    }
    let mut done: Vec<(PoolId, IpAddr, Undo)> = Vec::new();
    for (i, range) in conf.ranges.iter().enumerate() {
        let pool = PoolId::for_range(&conf.network_name, range, conf.enable_overlapping_ranges);
        let asked = conf.requested.iter().find(|r| r.range == i).map(|r| r.ip);
        let got = match (asked, owner.sticky.is_some()) {
            (_, true) => reserve_sticky(store, &pool, range, asked, owner),
            (Some(ip), false) => {
                reserve_asked(store, &pool, range, ip, owner).map(|ip| (ip, Undo::Release))
            }
            (None, false) => store
                .reserve(&pool, range, owner)
                .map(|ip| (ip, Undo::Release))
                .map_err(Error::from),
        };
        match got {
            Ok((ip, undo)) => done.push((pool, ip, undo)),
            Err(e) => {
                for (pool, ip, undo) in &done {
                    if let Err(err) = take_back(store, pool, *ip, undo, owner, &held_before) {
                        cni::log_error!("undoing the reservation of {ip}: {err}");
                    }
                }
                return Err(e);
            }
        }
    }
    Ok(conf
        .ranges
        .iter()
        .zip(&done)
        .map(|(range, (_, ip, _))| address(conf, range, *ip))
        .collect())
}

/// Takes back one range's reservation of an ADD that failed later: a failed ADD leaves the
/// store as it found it.
fn take_back(
    store: &dyn Store,
    pool: &PoolId,
    ip: IpAddr,
    undo: &Undo,
    owner: &Owner,
    held_before: &[IpAddr],
) -> Result<(), ipam::store::StoreError> {
    match undo {
        Undo::Release if !held_before.contains(&ip) => {
            store.release_ip(pool, ip, owner)?;
        }
        Undo::Restore { before, joined } => {
            let decide = |cur: Option<&Owner>| ipam::sticky::restore(cur, joined, before);
            store.update(pool, ip, &decide)?;
        }
        Undo::Release | Undo::Nothing => {}
    }
    Ok(())
}

fn add(call: &Call) -> Result<CniResult, Error> {
    let conf = conf::parse(&call.conf, &call.env.args)?;
    // Decided before the store is touched: at 0.2.0 a second IPv4 range would be reserved and
    // left out of the result.
    let families = conf
        .ranges
        .iter()
        .map(IpRange::is_v4)
        .chain(conf.addresses.iter().map(|a| a.address.is_ipv4()));
    let v4 = families.clone().filter(|&is_v4| is_v4).count();
    cni::result::expressible(call.conf.version, v4, families.count() - v4)?;
    let store = open_store(&conf)?;
    let mut ips = reserve_all(store.as_ref(), &conf, &owner(call, &conf))?;
    ips.extend(conf.addresses.iter().cloned());
    Ok(CniResult {
        interfaces: Vec::new(),
        ips,
        routes: conf.routes.clone(),
        dns: conf.dns.clone(),
    })
}

/// A store and the pools a teardown works on.
type TeardownPools = (Box<dyn Store>, Teardown, Vec<PoolId>);

/// What a teardown works on: the store and the pools the configuration's ranges live in (every
/// pool of its `network_name` when a range cannot be read). `None` when the configuration does
/// not say where a store is: an ADD with it failed, so nothing of it can be held.
fn teardown_pools(call: &Call) -> Result<Option<TeardownPools>, Error> {
    let teardown = match conf::parse_teardown(&call.conf) {
        Ok(t) => t,
        Err(e) => {
            cni::log_warn!(
                "{:?}: nothing to release, no store is named: {}",
                call.env.command,
                e.msg
            );
            return Ok(None);
        }
    };
    if let Datastore::File { dir } = &teardown.datastore {
        // A store that is not there holds nothing; one that is not root's alone is not touched.
        if !dir.exists() {
            return Ok(None);
        }
        if let Err(e) = safe_store_dir(dir) {
            cni::log_warn!("{:?}: nothing released: {}", call.env.command, e.msg);
            return Ok(None);
        }
    }
    let store = open_datastore(&teardown.datastore)?;
    let pools = match &teardown.pools {
        Some(pools) => pools.iter().cloned().collect(),
        None => {
            cni::log_warn!(
                "a range of the configuration cannot be read: searching every pool of network \
                 {:?}",
                teardown.network_name
            );
            store
                .pools()?
                .into_iter()
                .filter(|p| p.network == teardown.network_name)
                .collect()
        }
    };
    Ok(Some((store, teardown, pools)))
}

fn del(call: &Call) -> Result<(), Error> {
    let Some((store, _, pools)) = teardown_pools(call)? else {
        return Ok(());
    };
    let mut failures = Vec::new();
    for pool in pools {
        if let Err(e) = store.release(&pool, &call.env.container_id, &call.env.ifname) {
            failures.push(e);
        }
    }
    joined_failure(
        failures,
        &format!(
            "releasing the reservations of {}/{}",
            call.env.container_id, call.env.ifname
        ),
    )
}

/// Ok without failures; else one error: "try again later" when each failure is transient (a
/// lock held too long, etcd without quorum), else an I/O failure.
fn joined_failure(failures: Vec<ipam::store::StoreError>, what: &str) -> Result<(), Error> {
    if failures.is_empty() {
        return Ok(());
    }
    let transient = failures
        .iter()
        .all(|e| matches!(e, ipam::store::StoreError::Transient(_)));
    let msg = format!(
        "{what}: {}",
        failures
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    );
    Err(if transient {
        Error::new(code::TRY_AGAIN_LATER, msg)
    } else {
        Error::io(msg)
    })
}

fn check(call: &Call) -> Result<(), Error> {
    let conf = conf::parse(&call.conf, &call.env.args)?;
    let store = open_store(&conf)?;
    let (cid, ifname) = (&call.env.container_id, &call.env.ifname);
    let prev = call.conf.prev_result()?.unwrap_or_default();
    for range in &conf.ranges {
        let pool = PoolId::for_range(&conf.network_name, range, conf.enable_overlapping_ranges);
        let held: Vec<IpAddr> = store
            .find(&pool, cid, ifname)?
            .into_iter()
            .map(|r| r.ip)
            .filter(|ip| range.contains(*ip))
            .collect();
        if held.is_empty() {
            return Err(check_failed(format!(
                "{cid}/{ifname} holds no reservation in range {}",
                range.key()
            )));
        }
        for ip in prev
            .ips
            .iter()
            .map(|c| c.address.ip())
            .filter(|ip| range.contains(*ip))
        {
            if !held.contains(&ip) {
                return Err(check_failed(format!(
                    "address {ip} of the prevResult is not reserved for {cid}/{ifname}"
                )));
            }
        }
    }
    Ok(())
}

fn check_failed(msg: String) -> Error {
    Error::new(code::CHECK_FAILED, format!("whereabouts: {msg}"))
}

fn gc(call: &Call) -> Result<(), Error> {
    let Some((store, _, pools)) = teardown_pools(call)? else {
        return Ok(());
    };
    let valid: BTreeSet<(String, String)> = call
        .conf
        .valid_attachments
        .iter()
        .map(|a| (a.container_id.clone(), a.ifname.clone()))
        .collect();
    let network = &call.conf.name;
    let mut failures = Vec::new();
    for pool in pools {
        match store.gc(&pool, network, &valid) {
            Ok(freed) if !freed.is_empty() => {
                let list: Vec<String> = freed
                    .iter()
                    .map(|r| format!("{} ({}/{})", r.ip, r.owner.container_id, r.owner.ifname))
                    .collect();
                cni::log_warn!(
                    "GC of network {network:?} released {} stale reservation(s) in pool {:?}: {}",
                    freed.len(),
                    pool.network,
                    list.join(", ")
                );
            }
            Ok(_) => {}
            Err(e) => failures.push(e),
        }
    }
    joined_failure(failures, "GC")
}

fn status(call: &Call) -> Result<(), Error> {
    let conf = conf::parse(&call.conf, &call.env.args)?;
    let unusable =
        |e: String| Error::not_available(format!("whereabouts store cannot be used: {e}"));
    // A store that cannot even be opened (an unreadable TLS file) cannot be used either: 50.
    let store = open_store(&conf).map_err(|e| unusable(e.msg))?;
    store.status().map_err(|e| unusable(e.to_string()))
}

impl Plugin for Whereabouts {
    fn about(&self) -> &str {
        "multihome whereabouts IPAM: cluster-wide addresses, whereabouts-compatible configuration"
    }
    fn known_args(&self) -> &[&str] {
        &[
            "IP",
            "GATEWAY",
            "MAC",
            "K8S_POD_NAMESPACE",
            "K8S_POD_NAME",
            "K8S_POD_INFRA_CONTAINER_ID",
            "K8S_POD_UID",
        ]
    }
    fn is_ipam(&self) -> bool {
        true
    }
    fn add(&self, call: &Call) -> Result<CniResult, Error> {
        add(call)
    }
    fn del(&self, call: &Call) -> Result<(), Error> {
        del(call)
    }
    fn check(&self, call: &Call) -> Result<(), Error> {
        check(call)
    }
    fn status(&self, call: &Call) -> Result<(), Error> {
        status(call)
    }
    fn gc(&self, call: &Call) -> Result<(), Error> {
        gc(call)
    }
}
