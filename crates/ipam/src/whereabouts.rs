//! `whereabouts` IPAM: cluster-wide allocation with whereabouts' configuration, on the embedded
//! file store (etcd when the cluster outgrows one node).
//!
//! - ADD: one address per range (`ipRanges`), all or nothing; an attachment (container ID +
//!   ifname) or a pod (podRef + ifname) that already holds an address gets it again.
//! - DEL: releases the attachment's addresses; idempotent.
//! - CHECK: every range holds a reservation of this attachment, and every address of the
//!   prevResult in a range is held by it.
//! - GC: releases reservations whose attachment is not among the valid ones (whereabouts needs a
//!   daily reconciler for these leaks, #75, #546).
//! - STATUS: code 50 when the store cannot be used, naming why.

use std::collections::BTreeSet;
use std::net::IpAddr;

use cni::{code, Call, CniResult, Error, IpConfig, Plugin};

use crate::etcd_store::EtcdStore;
use crate::file_store::FileStore;
use crate::range::IpRange;
use crate::store::{Owner, PoolId, Store};
use crate::whereabouts_conf::{self, Datastore, WhereaboutsConf};

/// The `whereabouts` IPAM plugin.
#[derive(Debug, Clone, Copy)]
pub struct Whereabouts;

/// The store a configuration names.
pub fn open_store(conf: &WhereaboutsConf) -> Result<Box<dyn Store>, Error> {
    match &conf.datastore {
        Datastore::File { dir } => Ok(Box::new(FileStore::new(dir))),
        Datastore::Etcd(etcd) => Ok(Box::new(EtcdStore::connect(etcd)?)),
    }
}

fn owner(call: &Call) -> Owner {
    Owner {
        container_id: call.env.container_id.clone(),
        ifname: call.env.ifname.clone(),
        pod_ref: call.env.args.pod_ref(),
    }
}

/// The pools this configuration allocates from, once each.
fn pools(conf: &WhereaboutsConf) -> BTreeSet<PoolId> {
    conf.ranges
        .iter()
        .map(|r| PoolId::for_range(&conf.network_name, r, conf.enable_overlapping_ranges))
        .collect()
}

fn address(range: &IpRange, ip: IpAddr) -> IpConfig {
    let gateway = range.gateway.filter(|gw| range.network.contains(*gw));
    IpConfig {
        interface: None,
        address: range.with_prefix(ip),
        gateway,
    }
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
    let mut done: Vec<(PoolId, IpAddr)> = Vec::new();
    for range in &conf.ranges {
        let pool = PoolId::for_range(&conf.network_name, range, conf.enable_overlapping_ranges);
        match store.reserve(&pool, range, owner) {
            Ok(ip) => done.push((pool, ip)),
            Err(e) => {
                for (pool, ip) in done.iter().filter(|(_, ip)| !held_before.contains(ip)) {
                    if let Err(undo) = store.release_ip(pool, *ip, owner) {
                        cni::log_error!("undoing the reservation of {ip}: {undo}");
                    }
                }
                return Err(e.into());
            }
        }
    }
    Ok(conf
        .ranges
        .iter()
        .zip(&done)
        .map(|(range, (_, ip))| address(range, *ip))
        .collect())
}

fn add(call: &Call) -> Result<CniResult, Error> {
    let conf = whereabouts_conf::parse(&call.conf, &call.env.args)?;
    let store = open_store(&conf)?;
    let mut ips = reserve_all(store.as_ref(), &conf, &owner(call))?;
    ips.extend(conf.addresses.iter().cloned());
    Ok(CniResult {
        interfaces: Vec::new(),
        ips,
        routes: conf.routes.clone(),
        dns: conf.dns.clone(),
    })
}

fn del(call: &Call) -> Result<(), Error> {
    let conf = whereabouts_conf::parse(&call.conf, &call.env.args)?;
    let store = open_store(&conf)?;
    let mut failures = Vec::new();
    for pool in pools(&conf) {
        if let Err(e) = store.release(&pool, &call.env.container_id, &call.env.ifname) {
            failures.push(e.to_string());
        }
    }
    if failures.is_empty() {
        return Ok(());
    }
    Err(Error::io(format!(
        "releasing the reservations of {}/{}: {}",
        call.env.container_id,
        call.env.ifname,
        failures.join("; ")
    )))
}

fn check(call: &Call) -> Result<(), Error> {
    let conf = whereabouts_conf::parse(&call.conf, &call.env.args)?;
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
    let conf = whereabouts_conf::parse(&call.conf, &call.env.args)?;
    let store = open_store(&conf)?;
    let valid: BTreeSet<(String, String)> = call
        .conf
        .valid_attachments
        .iter()
        .map(|a| (a.container_id.clone(), a.ifname.clone()))
        .collect();
    let mut failures = Vec::new();
    for pool in pools(&conf) {
        match store.gc(&pool, &valid) {
            Ok(freed) if !freed.is_empty() => {
                let list: Vec<String> = freed
                    .iter()
                    .map(|r| format!("{} ({}/{})", r.ip, r.owner.container_id, r.owner.ifname))
                    .collect();
                cni::log_warn!(
                    "GC of network {:?} released {} stale reservation(s): {}",
                    pool.network,
                    freed.len(),
                    list.join(", ")
                );
            }
            Ok(_) => {}
            Err(e) => failures.push(e.to_string()),
        }
    }
    if failures.is_empty() {
        return Ok(());
    }
    Err(Error::io(format!("GC: {}", failures.join("; "))))
}

fn status(call: &Call) -> Result<(), Error> {
    let conf = whereabouts_conf::parse(&call.conf, &call.env.args)?;
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
