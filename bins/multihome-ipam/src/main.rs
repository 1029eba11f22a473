//! `multihome-ipam`: the operators' view of the whereabouts store, for the day something leaked.
#![allow(clippy::print_stdout)] // a command-line tool prints its answers

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use ipam::store::{Change, Owner, PoolId, Reservation, Store};
use whereabouts::conf::{
    EtcdConf, DEFAULT_ETCD_DIAL_TIMEOUT_MS, DEFAULT_ETCD_PREFIX, DEFAULT_ETCD_REQUEST_TIMEOUT_MS,
};
use whereabouts::etcd_store::EtcdStore;
use whereabouts::file_store::{FileStore, DEFAULT_STORE_DIR};

#[derive(Parser)]
#[command(about = "Inspect and repair multihome's whereabouts reservations")]
struct Cli {
    /// The store directory (the `store_dir` of the IPAM config).
    #[arg(long, default_value = DEFAULT_STORE_DIR)]
    store_dir: PathBuf,
    /// Use the etcd store at these endpoints (comma-separated, as `ipam.etcd_endpoints`)
    /// instead of the file store.
    #[arg(long, value_delimiter = ',')]
    etcd_endpoints: Vec<String>,
    /// The `ipam.etcd_prefix` of the network's config.
    #[arg(long, default_value = DEFAULT_ETCD_PREFIX)]
    etcd_prefix: String,
    /// TLS: CA certificate (PEM).
    #[arg(long)]
    etcd_ca_cert_file: Option<PathBuf>,
    /// TLS: client certificate (PEM), with --etcd-key-file.
    #[arg(long)]
    etcd_cert_file: Option<PathBuf>,
    /// TLS: client key (PEM).
    #[arg(long)]
    etcd_key_file: Option<PathBuf>,
    /// etcd user (the password is read from ETCD_PASSWORD, never from the command line).
    #[arg(long)]
    etcd_username: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the pools (one per network_name, or per CIDR without overlapping ranges).
    Pools,
    /// List reservations: address, container ID, interface, pod.
    List {
        /// Only this network_name ("" is the default network).
        #[arg(long)]
        network: Option<String>,
    },
    /// Show who holds an address.
    Who {
        /// The address.
        ip: IpAddr,
    },
    /// Release an address whoever holds it (parked or live), or every address of a MAC.
    Release {
        /// The address.
        #[arg(required_unless_present = "mac", conflicts_with = "mac")]
        ip: Option<IpAddr>,
        /// Release the sticky addresses of this MAC (`sticky_by_mac`) instead.
        #[arg(long)]
        mac: Option<String>,
        /// With --mac: only those this CNI network (the `name` of its configuration) made.
        #[arg(long)]
        cni_network: Option<String>,
        /// Its network_name, when several networks hold that address.
        #[arg(long)]
        network: Option<String>,
    },
    /// Release every sticky address parked past its retention (what GC does).
    Expire {
        /// Only this network_name.
        #[arg(long)]
        network: Option<String>,
    },
    /// Release every reservation of a network whose attachment is not listed as valid.
    Gc {
        /// The network_name to collect.
        #[arg(long, default_value = "")]
        network: String,
        /// Only the reservations this CNI network (the `name` of its configuration) made, as the
        /// plugin's GC does; without it every reservation of the pools is a candidate.
        #[arg(long)]
        cni_network: Option<String>,
        /// A valid attachment as CONTAINER_ID/IFNAME; repeat for each.
        #[arg(long = "valid", value_name = "CONTAINER_ID/IFNAME")]
        valid: Vec<String>,
        /// Release everything when no valid attachment is given (guards against a forgotten list).
        #[arg(long)]
        all: bool,
    },
    /// Parse every file (key) of the store and check that reservations, the owner index and
    /// the hints agree; exits 1 when they do not.
    Verify,
}

fn pool_label(p: &PoolId) -> String {
    match &p.cidr {
        Some(r) => format!("{:?} cidr {r}", p.network),
        None => format!("{:?}", p.network),
    }
}

fn row(pool: &PoolId, r: &Reservation) -> String {
    let sticky = match &r.owner.sticky {
        None => String::new(),
        Some(s) => {
            let state = match s.parked_until {
                Some(until) => format!("parked-until={until}"),
                None => format!("holders={}", r.owner.live_attachments().len()),
            };
            format!(" mac={} {state}", s.mac)
        }
    };
    format!(
        "{:<40} {:<28} {:<66} {:<15} {}{sticky}",
        pool_label(pool),
        r.ip,
        r.owner.container_id,
        r.owner.ifname,
        r.owner.pod_ref.as_deref().unwrap_or("-")
    )
}

/// Frees, in the pools of `network` (all when `None`), every reservation `pick` names, each
/// decided on again when changed by `decide`; prints each.
fn release_where(
    store: &dyn Store,
    network: Option<&str>,
    pick: impl Fn(&Reservation) -> bool,
    decide: &dyn Fn(Option<&Owner>) -> Change,
) -> Result<usize> {
    let mut freed = 0;
    for pool in store
        .pools()?
        .into_iter()
        .filter(|p| network.is_none_or(|n| p.network == n))
    {
        for r in store.list(&pool)?.into_iter().filter(|r| pick(r)) {
            if let (_, Change::Free) = store.update(&pool, r.ip, decide)? {
                println!("released {}", row(&pool, &r));
                freed += 1;
            }
        }
    }
    Ok(freed)
}

fn holders(
    store: &dyn Store,
    ip: IpAddr,
    network: Option<&str>,
) -> Result<Vec<(PoolId, Reservation)>> {
    let mut out = Vec::new();
    for pool in store
        .pools()?
        .into_iter()
        .filter(|p| network.is_none_or(|n| p.network == n))
    {
        out.extend(
            store
                .list(&pool)?
                .into_iter()
                .filter(|r| r.ip == ip)
                .map(|r| (pool.clone(), r)),
        );
    }
    Ok(out)
}

fn parse_valid(items: &[String]) -> Result<BTreeSet<(String, String)>> {
    items
        .iter()
        .map(|v| match v.rsplit_once('/') {
            Some((cid, ifname)) if !cid.is_empty() && !ifname.is_empty() => {
                Ok((cid.to_string(), ifname.to_string()))
            }
            _ => bail!("--valid {v:?}: expected CONTAINER_ID/IFNAME"),
        })
        .collect()
}

/// The etcd store when endpoints are given, else the file store.
fn open(cli: &Cli) -> Result<Box<dyn Store>> {
    if cli.etcd_endpoints.is_empty() {
        return Ok(Box::new(FileStore::new(&cli.store_dir)));
    }
    Ok(Box::new(open_etcd(cli)?))
}

fn open_etcd(cli: &Cli) -> Result<EtcdStore> {
    let conf = EtcdConf {
        endpoints: cli
            .etcd_endpoints
            .iter()
            .map(|e| {
                if e.contains("://") {
                    e.clone()
                } else {
                    format!("http://{e}")
                }
            })
            .collect(),
        username: cli.etcd_username.clone(),
        password: std::env::var("ETCD_PASSWORD").ok(),
        ca_file: cli.etcd_ca_cert_file.clone(),
        cert_file: cli.etcd_cert_file.clone(),
        key_file: cli.etcd_key_file.clone(),
        prefix: cli.etcd_prefix.trim_end_matches('/').to_string(),
        dial_timeout_ms: DEFAULT_ETCD_DIAL_TIMEOUT_MS,
        request_timeout_ms: DEFAULT_ETCD_REQUEST_TIMEOUT_MS,
    };
    Ok(EtcdStore::connect(&conf)
        .context("connecting to etcd")?
        .per_request_deadline())
}

fn where_(cli: &Cli) -> String {
    if cli.etcd_endpoints.is_empty() {
        cli.store_dir.display().to_string()
    } else {
        format!(
            "etcd {} under {}",
            cli.etcd_endpoints.join(","),
            cli.etcd_prefix
        )
    }
}

fn run(cli: Cli) -> Result<()> {
    let opened = open(&cli)?;
    let store = opened.as_ref();
    match &cli.command {
        Command::Pools => {
            for pool in store.pools()? {
                println!(
                    "{:<40} {} reservation(s)",
                    pool_label(&pool),
                    store.list(&pool)?.len()
                );
            }
        }
        Command::List { network } => {
            for pool in store
                .pools()?
                .into_iter()
                .filter(|p| network.as_ref().is_none_or(|n| &p.network == n))
            {
                for r in store.list(&pool)? {
                    println!("{}", row(&pool, &r));
                }
            }
        }
        Command::Who { ip } => {
            let found = holders(store, *ip, None)?;
            if found.is_empty() {
                bail!("{ip} is not reserved in {}", where_(&cli));
            }
            for (pool, r) in found {
                println!("{}", row(&pool, &r));
            }
        }
        Command::Release {
            ip: None,
            mac: Some(mac),
            cni_network,
            network,
        } => {
            let Some(mac) = ipam::sticky::normalise_mac(mac) else {
                bail!("--mac {mac:?}: not a MAC (six hexadecimal octets)");
            };
            let ours = |o: &Owner| {
                o.sticky.as_ref().is_some_and(|s| s.mac == mac)
                    && cni_network
                        .as_deref()
                        .is_none_or(|n| o.network.as_deref() == Some(n))
            };
            let decide = |cur: Option<&Owner>| {
                if cur.is_some_and(ours) {
                    Change::Free
                } else {
                    Change::Keep
                }
            };
            let freed = release_where(store, network.as_deref(), |r| ours(&r.owner), &decide)?;
            if freed == 0 {
                bail!("MAC {mac} holds no address in {}", where_(&cli));
            }
        }
        Command::Release { ip: None, .. } => bail!("name an address or --mac"),
        Command::Expire { network } => {
            let now = ipam::store::now_s();
            let decide = |cur: Option<&Owner>| ipam::sticky::expired(cur, now);
            let freed = release_where(
                store,
                network.as_deref(),
                |r| ipam::sticky::expired(Some(&r.owner), now) == Change::Free,
                &decide,
            )?;
            println!("{freed} reservation(s) released");
        }
        Command::Release {
            ip: Some(ip),
            network,
            ..
        } => {
            let found = holders(store, *ip, network.as_deref())?;
            if found.len() > 1 {
                bail!(
                    "{ip} is reserved in {} networks; name one with --network",
                    found.len()
                );
            }
            let Some((pool, r)) = found.into_iter().next() else {
                bail!("{ip} is not reserved")
            };
            store
                .release_ip(&pool, *ip, &r.owner)
                .with_context(|| format!("releasing {ip}"))?;
            println!("released {}", row(&pool, &r));
        }
        Command::Gc {
            network,
            cni_network,
            valid,
            all,
        } => {
            if valid.is_empty() && !all {
                bail!("no --valid attachment given: pass --all to release every reservation of {network:?}");
            }
            let valid = parse_valid(valid)?;
            let mut freed = 0;
            for pool in store.pools()?.into_iter().filter(|p| &p.network == network) {
                let released = match cni_network {
                    Some(name) => store.gc(&pool, name, &valid)?,
                    None => {
                        let mut out = Vec::new();
                        for r in store.list(&pool)? {
                            if !valid.contains(&r.owner.attachment())
                                && store.release_ip(&pool, r.ip, &r.owner)?
                            {
                                out.push(r);
                            }
                        }
                        out
                    }
                };
                for r in released {
                    println!("released {}", row(&pool, &r));
                    freed += 1;
                }
            }
            println!("{freed} reservation(s) released");
        }
        Command::Verify => {
            let (parsed, problems) = if cli.etcd_endpoints.is_empty() {
                let v = FileStore::new(&cli.store_dir).verify()?;
                (format!("{} file(s)", v.files), v.problems)
            } else {
                let v = open_etcd(&cli)?.verify()?;
                (format!("{} key(s)", v.files), v.problems)
            };
            for p in &problems {
                println!("{p}");
            }
            if !problems.is_empty() {
                bail!("{parsed} parsed, {} problem(s)", problems.len());
            }
            println!("{parsed} parsed, no damage");
        }
    }
    Ok(())
}

fn main() -> Result<()> {
    run(Cli::parse())
}
