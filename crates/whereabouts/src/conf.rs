//! The `ipam` object of type `whereabouts`: whereabouts v0.9's keys, its flat file, its legacy
//! etcd keys and the host-local spellings, read into ranges, a datastore and the extras a result
//! carries (routes, DNS, static addresses).
//!
//! This module owns reading and validating that configuration; it reserves nothing. Where
//! whereabouts silently ignores or misreads a key, we either honour it or fail with code 7, each
//! noted where it happens. Every error names the key path and the value at fault.

use std::collections::BTreeSet;

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;
use serde::Deserialize;
use serde_json::{Map, Value};

use cni::{CniArgs, Dns, Error, IpConfig, NetConf, Route};

pub use etcd::EtcdConf;
use ipam::fixed::{apply_cni_args_with, config_addresses, AddressEntry};
use ipam::range::IpRange;
use ipam::store::PoolId;

/// Where the file datastore keeps reservations unless `store_dir` says otherwise.
pub use crate::file_store::DEFAULT_STORE_DIR;
/// The etcd key prefix unless `etcd_prefix` says otherwise.
pub const DEFAULT_ETCD_PREFIX: &str = "/multihome/whereabouts";
/// etcd dial timeout unless `etcd_dial_timeout_ms` says otherwise.
pub const DEFAULT_ETCD_DIAL_TIMEOUT_MS: u64 = 2000;
/// etcd request timeout unless `etcd_request_timeout_ms` says otherwise.
pub const DEFAULT_ETCD_REQUEST_TIMEOUT_MS: u64 = 5000;
/// Where whereabouts looks for its flat file when `configuration_path` is not set; the first
/// that exists is read.
pub const FLAT_FILE_PATHS: [&str; 2] = [
    "/etc/kubernetes/cni/net.d/whereabouts.d/whereabouts.conf",
    "/etc/cni/net.d/whereabouts.d/whereabouts.conf",
];

/// The node's own settings directory, unless the runtime's environment names another in
/// `MULTIHOME_CONFIG_DIR` (a NAD author cannot set the plugin's environment).
pub const NODE_CONFIG_DIR: &str = cni::node::SETTINGS_DIR;
/// The node's whereabouts settings file in [`NODE_CONFIG_DIR`]: which store networks that name
/// none, or whereabouts' `"datastore": "kubernetes"` (its cluster store, what its installer
/// writes in every node's flat file), use on this node.
pub const NODE_FILE: &str = "whereabouts.conf";

/// The node's settings directory.
pub fn node_config_dir() -> PathBuf {
    cni::node::settings_dir()
}

/// A parsed and validated `whereabouts` IPAM configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhereaboutsConf {
    /// The top-level range (if any) first, then `ipRanges` in order; never empty.
    pub ranges: Vec<IpRange>,
    /// `network_name` ("" by default): networks with the same name share reservations.
    pub network_name: String,
    /// `gateway`: reported with every allocated address of its family (as whereabouts does),
    /// and never allocated from a range that contains it.
    pub gateway: Option<IpAddr>,
    /// `enable_overlapping_ranges` (default true): false makes each range a pool of its own.
    pub enable_overlapping_ranges: bool,
    /// Where reservations live.
    pub datastore: Datastore,
    /// `routes`, reported in the result.
    pub routes: Vec<Route>,
    /// `dns`, reported in the result.
    pub dns: Dns,
    /// Static extras: the entries of `addresses` [{address, gateway}] outside every range,
    /// reported as written (CNI_ARGS `GATEWAY=` set on every address containing it).
    pub addresses: Vec<IpConfig>,
    /// Addresses asked for inside a range, reserved in its pool instead of an allocation
    /// there: `runtimeConfig.ips` (the `ips` capability, Multus' network selection `ips`),
    /// CNI_ARGS `IP` (comma-separated; podman's `--ip` passes a bare address) and the entries
    /// of `addresses` that lie in a range. One per range.
    pub requested: Vec<Requested>,
    /// `sticky_by_mac: true` with a MAC from the runtime: the reservations belong to the MAC.
    pub sticky: Option<StickyConf>,
    /// `log_file`, if set and not empty.
    pub log_file: Option<String>,
    /// `log_level`, if set and not empty.
    pub log_level: Option<String>,
}

/// Addresses that belong to a MAC (`sticky_by_mac`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StickyConf {
    /// The MAC (`runtimeConfig.mac`, else CNI_ARGS `MAC`), lowercase.
    pub mac: String,
    /// `sticky_retention`: how long DEL parks the address for the MAC.
    pub retention_s: u64,
}

/// How long a parked address waits for its MAC unless `sticky_retention` says otherwise: a day
/// covers a node drain, a VM stopped overnight, a migration that is retried.
pub const DEFAULT_STICKY_RETENTION_S: u64 = 24 * 3600;
/// The longest `sticky_retention` accepted.
pub const MAX_STICKY_RETENTION_S: u64 = 366 * 24 * 3600;

/// `sticky_retention`: seconds as a number, or a string of a number and `s`, `m`, `h` or `d`.
fn retention(v: Option<&Value>) -> Result<u64, Error> {
    let bad = |v: &Value, why: &str| {
        Error::invalid_config(format!(
            "ipam.sticky_retention: {} {why}",
            cni::error::quote_value(v)
        ))
    };
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(DEFAULT_STICKY_RETENTION_S);
    };
    let secs = match v {
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| bad(v, "must be a whole number of seconds"))?,
        Value::String(t) => {
            let t = t.trim();
            let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
            let mult = match unit {
                "" | "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86400,
                _ => return Err(bad(v, "must be seconds, or a number with s, m, h or d")),
            };
            num.parse::<u64>()
                .ok()
                .and_then(|n| n.checked_mul(mult))
                .ok_or_else(|| bad(v, "must be seconds, or a number with s, m, h or d"))?
        }
        _ => return Err(bad(v, "must be seconds, or a number with s, m, h or d")),
    };
    if secs == 0 || secs > MAX_STICKY_RETENTION_S {
        return Err(bad(v, "must be between 1 s and 366 d"));
    }
    Ok(secs)
}

/// The MAC the addresses belong to when `sticky_by_mac` is on: `runtimeConfig.mac` (the `mac`
/// capability, what Multus passes from the network selection element), else CNI_ARGS `MAC`.
/// Without one the reservation is an ordinary one (logged): a pod without a fixed MAC has no
/// identity to keep an address for.
fn sticky(raw: &RawConf, conf: &NetConf, args: &CniArgs) -> Result<Option<StickyConf>, Error> {
    let retention_s = retention(raw.sticky_retention.as_ref())?;
    if !raw.sticky_by_mac.unwrap_or(false) {
        return Ok(None);
    }
    let (key, given) = match conf.runtime("mac") {
        Some(v) => (
            "runtimeConfig.mac",
            v.as_str().map(str::to_string).ok_or_else(|| {
                Error::invalid_config(format!(
                    "runtimeConfig.mac: {} is not a MAC",
                    cni::error::quote_value(v)
                ))
            })?,
        ),
        None => match args.get("MAC").filter(|m| !m.is_empty()) {
            Some(m) => ("CNI_ARGS MAC", m.to_string()),
            None => {
                cni::log_warn!(
                    "ipam.sticky_by_mac: no MAC given (runtimeConfig.mac, CNI_ARGS MAC): an                      ordinary reservation, freed by DEL"
                );
                return Ok(None);
            }
        },
    };
    let mac = ipam::sticky::normalise_mac(&given).ok_or_else(|| {
        Error::invalid_config(format!(
            "{key}: {} is not a MAC (six hexadecimal octets)",
            cni::error::quote_value(&Value::String(given.clone()))
        ))
    })?;
    Ok(Some(StickyConf { mac, retention_s }))
}

/// An address asked for, in a range of the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requested {
    /// The address.
    pub ip: IpAddr,
    /// The index of its range in [`WhereaboutsConf::ranges`].
    pub range: usize,
}

/// Splits the asked-for addresses: into a range (reserved there) or, for `addresses` entries
/// only, static extras. A runtime's request outside every range, on an address a range cannot
/// hand out, or a second one in a range, is refused (7) naming where it came from.
fn requested(
    ranges: &[IpRange],
    config: Vec<IpConfig>,
    asked: Vec<(String, IpAddr)>,
) -> Result<(Vec<IpConfig>, Vec<Requested>), Error> {
    let mut extras = Vec::new();
    let mut wanted: Vec<(String, IpAddr)> = Vec::new();
    for (i, a) in config.into_iter().enumerate() {
        let ip = a.address.ip();
        if ranges
            .iter()
            .any(|r| r.network.contains(ip) && r.is_v4() == ip.is_ipv4())
        {
            wanted.push((format!("ipam.addresses[{i}]"), ip));
        } else {
            extras.push(a);
        }
    }
    wanted.extend(asked);
    let mut out: Vec<Requested> = Vec::new();
    for (key, ip) in wanted {
        let Some(range) = ranges
            .iter()
            .position(|r| r.network.contains(ip) && r.is_v4() == ip.is_ipv4())
        else {
            let nets: Vec<String> = ranges.iter().map(|r| r.network.to_string()).collect();
            return Err(Error::invalid_config(format!(
                "{key} {ip}: outside every range of this network ({})",
                nets.join(", ")
            )));
        };
        if let Some(why) = ranges[range].request_refusal(ip) {
            return Err(Error::invalid_config(format!(
                "{key} {ip}: cannot be reserved, it is {why}"
            )));
        }
        match out.iter().find(|r| r.range == range) {
            Some(r) if r.ip == ip => {}
            Some(r) => {
                return Err(Error::invalid_config(format!(
                    "{key} {ip}: {} is already asked for in range {}; one address per range",
                    r.ip,
                    ranges[range].key()
                )))
            }
            None => out.push(Requested { ip, range }),
        }
    }
    Ok((extras, out))
}

/// `runtimeConfig.ips` (CIDRs, or bare addresses) and CNI_ARGS `IP`, with where each came from.
fn asked_addresses(conf: &NetConf, args: &CniArgs) -> Result<Vec<(String, IpAddr)>, Error> {
    let mut out = Vec::new();
    if let Some(v) = conf.runtime("ips").filter(|v| !v.is_null()) {
        let list = v.as_array().ok_or_else(|| {
            Error::invalid_config(format!(
                "runtimeConfig.ips: {} must be a list of addresses",
                cni::error::quote_value(v)
            ))
        })?;
        for (i, item) in list.iter().enumerate() {
            let key = format!("runtimeConfig.ips[{i}]");
            let ip = item
                .as_str()
                .and_then(|s| s.trim().split('/').next()?.parse::<IpAddr>().ok())
                .ok_or_else(|| {
                    Error::invalid_config(format!(
                        "{key}: {} is not an address",
                        cni::error::quote_value(item)
                    ))
                })?;
            out.push((key, ip));
        }
    }
    if let Some(ips) = args.get("IP").filter(|s| !s.is_empty()) {
        for item in ips.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let ip = item
                .split('/')
                .next()
                .and_then(|s| s.parse::<IpAddr>().ok())
                .ok_or_else(|| {
                    Error::invalid_config(format!("CNI_ARGS IP entry {item:?} is not an address"))
                })?;
            out.push(("CNI_ARGS IP".to_string(), ip));
        }
    }
    Ok(out)
}

/// Where reservations are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datastore {
    /// The embedded file store (one node): `datastore` absent, "" or "file".
    File {
        /// `store_dir` (absolute), default [`DEFAULT_STORE_DIR`].
        dir: PathBuf,
    },
    /// etcd (several nodes): `datastore: "etcd"`.
    Etcd(EtcdConf),
}

/// The keys we read. Unknown keys are ignored, which is how the keys of whereabouts' Kubernetes
/// datastore and node slicing are tolerated (`kubernetes`, `node_slice_size`, `leader_*`,
/// `reconciler_cron_expression`, `sleep_for_race`, `type`): a config copied from a whereabouts
/// NetworkAttachmentDefinition must not break on them.
#[derive(Debug, Default, Deserialize)]
struct RawConf {
    range: Option<String>,
    range_start: Option<String>,
    #[serde(rename = "rangeStart")]
    range_start_alt: Option<String>,
    range_end: Option<String>,
    #[serde(rename = "rangeEnd")]
    range_end_alt: Option<String>,
    exclude: Option<Vec<String>>,
    #[serde(rename = "ipRanges")]
    ip_ranges: Option<Vec<RawRange>>,
    gateway: Option<String>,
    network_name: Option<String>,
    enable_overlapping_ranges: Option<bool>,
    log_file: Option<String>,
    log_level: Option<String>,
    routes: Option<Vec<RawRoute>>,
    dns: Option<Dns>,
    addresses: Option<Vec<AddressEntry>>,
    sticky_by_mac: Option<bool>,
    sticky_retention: Option<Value>,
}

/// One range as written: the top-level keys or an `ipRanges` entry.
#[derive(Debug, Clone, Default, Deserialize)]
struct RawRange {
    range: Option<String>,
    range_start: Option<String>,
    #[serde(rename = "rangeStart")]
    range_start_alt: Option<String>,
    range_end: Option<String>,
    #[serde(rename = "rangeEnd")]
    range_end_alt: Option<String>,
    exclude: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct RawRoute {
    dst: String,
    gw: Option<String>,
}

/// The flat file that filled in keys, and which keys it filled in.
#[derive(Debug, Default)]
struct Origin {
    path: Option<PathBuf>,
    keys: BTreeSet<String>,
    /// The file was the one `configuration_path` named (the configuration's author chose it).
    named: bool,
    /// The flat file's own store keys (a node's file: its etcd is the node's).
    store: Option<StoreKeys>,
}

impl Origin {
    /// Who wrote the store keys: the node when every one that is set came from the flat file (a
    /// node's file, root's alone, at whereabouts' path or below the node's `flat_file_dirs`),
    /// else the network configuration.
    fn source_of(&self, store: &StoreKeys) -> Source {
        let set = store.set_keys();
        if !set.is_empty() && self.path.is_some() && set.iter().all(|k| self.keys.contains(*k)) {
            Source::Node
        } else {
            Source::Network
        }
    }

    /// The flat file, when it supplied `key`.
    fn of(&self, key: &str) -> Option<&Path> {
        self.path.as_deref().filter(|_| self.keys.contains(key))
    }

    /// Adds to an error which keys came from the flat file, since the message names them as
    /// `ipam.<key>` although they are not in the network configuration; an error about a value
    /// the file gave says which key and file, not the value (a configuration names the file,
    /// and must not learn what a file it could not read holds).
    fn annotate(&self, e: Error) -> Error {
        if let Some(path) = self.path.as_ref().filter(|_| self.named) {
            let named = |k: &String| {
                let key = format!("ipam.{k}");
                e.msg.match_indices(&key).any(|(i, _)| {
                    let next = e.msg[i + key.len()..].chars().next();
                    !next.is_some_and(|c| c.is_alphanumeric() || c == '_')
                })
            };
            if let Some(key) = self.keys.iter().find(|k| named(k)) {
                return Error::new(
                    e.code,
                    format!(
                        "ipam.{key}, from the whereabouts flat file {}, is not valid (its value \
                         is not repeated here: see the file)",
                        path.display()
                    ),
                );
            }
        }
        match &self.path {
            Some(path) if !self.keys.is_empty() && e.details.is_empty() => {
                let keys: Vec<&str> = self.keys.iter().map(String::as_str).collect();
                let details = format!(
                    "keys filled in from the whereabouts flat file {}: {}",
                    path.display(),
                    keys.join(", ")
                );
                e.with_details(details)
            }
            _ => e,
        }
    }
}

/// What DEL and GC need, and nothing more: where the store is and which pools the network's
/// ranges live in. A fault only ADD cares about (a bad exclude, range bound, route, gateway or
/// CNI_ARGS `IP`) must not make the teardown fail and strand the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Teardown {
    /// Where reservations live.
    pub datastore: Datastore,
    /// `network_name`.
    pub network_name: String,
    /// The pools of the ranges; `None` when a range cannot be read: every pool of
    /// `network_name` is searched instead.
    pub pools: Option<BTreeSet<PoolId>>,
}

/// The keys a teardown reads; every other key may be anything.
#[derive(Debug, Default, Deserialize)]
struct RawTeardown {
    range: Option<Value>,
    #[serde(rename = "ipRanges")]
    ip_ranges: Option<Value>,
    network_name: Option<Value>,
    enable_overlapping_ranges: Option<Value>,
}

/// Parses what DEL and GC need (see [`Teardown`]).
pub fn parse_teardown(conf: &NetConf) -> Result<Teardown, Error> {
    let paths: Vec<&Path> = FLAT_FILE_PATHS.iter().map(Path::new).collect();
    parse_teardown_with_paths(conf, &paths)
}

/// [`parse_teardown`] with the flat-file lookup paths given.
pub fn parse_teardown_with_paths(
    conf: &NetConf,
    default_paths: &[&Path],
) -> Result<Teardown, Error> {
    let (merged, origin) = merged_ipam(conf, default_paths, true)?;
    let value = Value::Object(merged);
    let store: StoreKeys = cni::config::typed(&value, "ipam.").map_err(|e| origin.annotate(e))?;
    let raw: RawTeardown = serde_json::from_value(value).unwrap_or_default();
    let network_name = match &raw.network_name {
        Some(Value::String(s)) => s.clone(),
        _ => String::new(),
    };
    let overlapping = !matches!(raw.enable_overlapping_ranges, Some(Value::Bool(false)));
    let mut cidrs = Vec::new();
    let mut readable = true;
    let mut take = |v: Option<&Value>| match v.and_then(Value::as_str).map(str::trim) {
        Some("") | None => {}
        Some(spec) => match parse_range_spec("", spec) {
            Ok((net, _, _)) => cidrs.push(net),
            Err(_) => readable = false,
        },
    };
    take(raw.range.as_ref());
    match &raw.ip_ranges {
        Some(Value::Array(list)) => list.iter().for_each(|r| take(r.get("range"))),
        None | Some(Value::Null) => {}
        Some(_) => readable = false,
    }
    let pools = readable.then(|| {
        cidrs
            .iter()
            .map(|net| PoolId {
                network: network_name.clone(),
                cidr: (!overlapping).then(|| masked_cidr(net)),
            })
            .collect()
    });
    Ok(Teardown {
        datastore: datastore(&store, &origin, origin.source_of(&store))?,
        network_name,
        pools,
    })
}

/// A CIDR with its host bits cleared, as pools are named.
fn masked_cidr(net: &IpNetwork) -> String {
    IpNetwork::new(net.network(), net.prefix())
        .unwrap_or(*net)
        .to_string()
}

/// The `ipam` object filled in from the flat file, and where its keys came from.
fn merged_ipam(
    conf: &NetConf,
    default_paths: &[&Path],
    teardown: bool,
) -> Result<(Map<String, Value>, Origin), Error> {
    let inline = inline_ipam(conf)?;
    let (merged, origin) = match flat_file(&inline, default_paths)? {
        Some((flat, path, named)) => {
            let mut origin_named = merge(inline, flat, path);
            origin_named.1.named = named;
            origin_named
        }
        None => (inline, Origin::default()),
    };
    // The flat file's log_level and log_file hold where the network configuration says nothing
    // (the inline ones were set before the call began).
    let text = |k: &str| merged.get(k).and_then(Value::as_str);
    if let Err(e) = cni::log::fill_in(text("log_level"), text("log_file")) {
        let e = origin.annotate(e);
        if !teardown {
            return Err(e);
        }
        // Where the log goes must not strand a pod.
        cni::log_warn!("{} (logging to stderr)", e.msg);
    }
    Ok((merged, origin))
}

/// Parses the `ipam` object, filled in from whereabouts' flat file at [`FLAT_FILE_PATHS`].
pub fn parse(conf: &NetConf, args: &CniArgs) -> Result<WhereaboutsConf, Error> {
    let paths: Vec<&Path> = FLAT_FILE_PATHS.iter().map(Path::new).collect();
    parse_with_paths(conf, args, &paths)
}

/// [`parse`] with the flat-file lookup paths given (tests pass a temporary path, or none).
/// `configuration_path`, when set, is read instead and must exist (code 7 otherwise; whereabouts
/// falls back to the default paths silently, which hides a typo).
pub fn parse_with_paths(
    conf: &NetConf,
    args: &CniArgs,
    default_paths: &[&Path],
) -> Result<WhereaboutsConf, Error> {
    let (merged, origin) = merged_ipam(conf, default_paths, false)?;
    let value = Value::Object(merged);
    let raw: RawConf = cni::config::typed(&value, "ipam.").map_err(|e| origin.annotate(e))?;
    let store: StoreKeys = cni::config::typed(&value, "ipam.").map_err(|e| origin.annotate(e))?;
    let asked = asked_addresses(conf, args)?;
    let mut built = build(&raw, &store, args, &origin, asked).map_err(|e| origin.annotate(e))?;
    built.sticky = sticky(&raw, conf, args).map_err(|e| origin.annotate(e))?;
    Ok(built)
}

/// The `ipam` object of the network configuration (empty when absent).
fn inline_ipam(conf: &NetConf) -> Result<Map<String, Value>, Error> {
    match conf.raw.get("ipam") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(other) => Err(Error::invalid_config(format!(
            "ipam must be an object, got {other}"
        ))),
    }
}

/// A flat file's keys, its path, and whether `configuration_path` named it.
type FlatFile = (Map<String, Value>, PathBuf, bool);

/// The flat file's keys, with its path and how to name it in errors: `configuration_path` if
/// set (below the node's `flat_file_dirs`, code 7 otherwise, before the file system is looked
/// at), else the first default path that exists, else none. Read as node settings are
/// ([`cni::node::read_settings`]): root's alone on the whole path, a bounded regular file.
fn flat_file(inline: &Map<String, Value>, defaults: &[&Path]) -> Result<Option<FlatFile>, Error> {
    match inline.get("configuration_path") {
        Some(Value::String(p)) if !p.trim().is_empty() => {
            let paths = cni::node::NodePaths::load()?;
            let dirs = &paths.flat_file_dirs;
            let path = cni::node::named_path(
                "ipam.configuration_path",
                p,
                dirs,
                "flat_file_dirs",
                &paths,
            )?;
            let what = format!("ipam.configuration_path {p:?}");
            if let Err(e) = cni::nodefs::allowed(&path, dirs) {
                return Err(Error::invalid_config(format!("{what}: {e}")));
            }
            let flat = read_flat_file(&path, &what)?.ok_or_else(|| {
                Error::invalid_config(format!("{what}: cannot read it: it does not exist"))
            })?;
            return Ok(Some((flat, path, true)));
        }
        None | Some(Value::Null) | Some(Value::String(_)) => {}
        Some(other) => {
            return Err(Error::invalid_config(format!(
                "ipam.configuration_path must be a file path string, got {}",
                cni::error::quote_value(other)
            )))
        }
    }
    for p in defaults {
        let what = format!("whereabouts flat file {:?}", p.display().to_string());
        if let Some(flat) = read_flat_file(p, &what)? {
            return Ok(Some((flat, p.to_path_buf(), false)));
        }
    }
    Ok(None)
}

/// The keys of a flat file (`None` when it does not exist): its top level, with the keys of an
/// `ipam` object (if any) over them, since files are written both ways. Errors never repeat
/// what the file holds.
fn read_flat_file(path: &Path, what: &str) -> Result<Option<Map<String, Value>>, Error> {
    let Some(mut top) = cni::node::read_settings(path)
        .map_err(|e| Error::invalid_config(format!("{what}: {}", e.msg)))?
    else {
        return Ok(None);
    };
    match top.remove("ipam") {
        Some(Value::Object(ipam)) => top.extend(ipam),
        None | Some(Value::Null) => {}
        Some(_) => {
            return Err(Error::invalid_config(format!(
                "{what}: \"ipam\" must be an object"
            )))
        }
    }
    Ok(Some(top))
}

/// Inline keys win, key by key at the top level; the flat file fills in the others (a key that
/// is inline but null counts as unset, as in Go). `configuration_path` only locates the file.
fn merge(
    mut inline: Map<String, Value>,
    flat: Map<String, Value>,
    path: PathBuf,
) -> (Map<String, Value>, Origin) {
    let store = cni::config::typed(&Value::Object(flat.clone()), "").ok();
    let mut keys = BTreeSet::new();
    for (key, value) in flat {
        let unset = inline.get(&key).is_none_or(Value::is_null);
        if unset && key != "configuration_path" && !value.is_null() {
            keys.insert(key.clone());
            inline.insert(key, value);
        }
    }
    let origin = Origin {
        path: Some(path),
        keys,
        named: false,
        store,
    };
    (inline, origin)
}

fn build(
    raw: &RawConf,
    store: &StoreKeys,
    args: &CniArgs,
    origin: &Origin,
    asked: Vec<(String, IpAddr)>,
) -> Result<WhereaboutsConf, Error> {
    let gateway = opt_ip("ipam.gateway", raw.gateway.as_deref())?;
    let ranges = ranges(raw, gateway)?;
    let mut addresses = config_addresses(raw.addresses.as_deref().unwrap_or_default())?;
    // CNI_ARGS GATEWAY on the static entries; CNI_ARGS IP is a request (asked_addresses).
    apply_cni_args_with(&mut addresses, &args.without("IP"), |_| None)?;
    let (addresses, requested) = requested(&ranges, addresses, asked)?;
    Ok(WhereaboutsConf {
        ranges,
        network_name: raw.network_name.clone().unwrap_or_default(),
        gateway,
        enable_overlapping_ranges: raw.enable_overlapping_ranges.unwrap_or(true),
        datastore: datastore(store, origin, origin.source_of(store))?,
        routes: routes(raw.routes.as_deref().unwrap_or_default())?,
        dns: raw.dns.clone().unwrap_or_default(),
        addresses,
        requested,
        sticky: None,
        log_file: non_empty(raw.log_file.as_deref()).map(str::to_string),
        log_level: non_empty(raw.log_level.as_deref()).map(str::to_string),
    })
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// An IPv4 address (or CIDR) without the leading zeroes of its octets, which whereabouts
/// accepts (`00192.00168.1.0/24` is 192.168.1.0/24, decimal, never octal) and Rust's parser, like
/// Go's since 1.17, refuses.
fn without_leading_zeroes(s: &str) -> String {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let octets: Vec<&str> = addr.split('.').collect();
    let dotted = octets.len() == 4
        && octets
            .iter()
            .all(|o| !o.is_empty() && o.bytes().all(|b| b.is_ascii_digit()));
    if !dotted {
        return s.to_string();
    }
    let stripped: Vec<&str> = octets
        .iter()
        .map(|o| match o.trim_start_matches('0') {
            "" => "0",
            rest => rest,
        })
        .collect();
    let mut out = stripped.join(".");
    if let Some(p) = prefix {
        out.push('/');
        out.push_str(p);
    }
    out
}

fn opt_ip(key: &str, value: Option<&str>) -> Result<Option<IpAddr>, Error> {
    match non_empty(value) {
        None => Ok(None),
        Some(v) => without_leading_zeroes(v)
            .parse()
            .map(Some)
            .map_err(|e| Error::invalid_config(format!("{key} {v:?} is not an IP address: {e}"))),
    }
}

/// The top-level range first, then `ipRanges`; at least one (code 7).
fn ranges(raw: &RawConf, gateway: Option<IpAddr>) -> Result<Vec<IpRange>, Error> {
    let top = RawRange {
        range: raw.range.clone(),
        range_start: raw.range_start.clone(),
        range_start_alt: raw.range_start_alt.clone(),
        range_end: raw.range_end.clone(),
        range_end_alt: raw.range_end_alt.clone(),
        exclude: raw.exclude.clone(),
    };
    let mut out = Vec::new();
    if non_empty(top.range.as_deref()).is_some() {
        out.push(build_range("ipam", &top, gateway)?);
    } else {
        reject_orphan_range_keys(&top)?;
    }
    for (i, entry) in raw.ip_ranges.iter().flatten().enumerate() {
        out.push(build_range(&format!("ipam.ipRanges[{i}]"), entry, gateway)?);
    }
    if out.is_empty() {
        return Err(Error::invalid_config(
            "ipam.range or ipam.ipRanges is required",
        ));
    }
    Ok(out)
}

/// Top-level `range_start`, `range_end` and `exclude` belong to `range`. Without it whereabouts
/// ignores them, so an address meant to be excluded could be handed out: code 7 instead.
fn reject_orphan_range_keys(top: &RawRange) -> Result<(), Error> {
    let set = [
        ("range_start", top.range_start.as_deref()),
        ("rangeStart", top.range_start_alt.as_deref()),
        ("range_end", top.range_end.as_deref()),
        ("rangeEnd", top.range_end_alt.as_deref()),
    ];
    let mut orphan = set
        .into_iter()
        .find_map(|(k, v)| non_empty(v).map(|v| format!("ipam.{k} {v:?}")));
    if orphan.is_none() {
        orphan = top
            .exclude
            .as_ref()
            .filter(|x| !x.is_empty())
            .map(|x| format!("ipam.exclude {x:?}"));
    }
    match orphan {
        None => Ok(()),
        Some(what) => Err(Error::invalid_config(format!(
            "{what} is set but ipam.range is not: it applies to ipam.range only; set ipam.range \
             or move it into an ipam.ipRanges entry"
        ))),
    }
}

/// One range: `at` is `ipam` for the top-level keys or `ipam.ipRanges[i]`.
fn build_range(at: &str, raw: &RawRange, gateway: Option<IpAddr>) -> Result<IpRange, Error> {
    let spec = non_empty(raw.range.as_deref())
        .ok_or_else(|| Error::invalid_config(format!("{at}.range is required")))?;
    let (network, from, to) = parse_range_spec(&format!("{at}.range"), spec)?;
    let start = one_of(
        at,
        "range_start",
        &raw.range_start,
        "rangeStart",
        &raw.range_start_alt,
    )?;
    let end = one_of(
        at,
        "range_end",
        &raw.range_end,
        "rangeEnd",
        &raw.range_end_alt,
    )?;
    let start = agree(at, spec, "range_start", from, start)?;
    let end = agree(at, spec, "range_end", to, end)?;
    let excludes = raw
        .exclude
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, x)| parse_exclude(&format!("{at}.exclude[{i}]"), x))
        .collect::<Result<Vec<_>, _>>()?;
    IpRange::new(at, network, start, end, excludes, gateway)
}

/// `range_start` or host-local's `rangeStart` (likewise for the end). whereabouts ignores the
/// host-local spelling and then hands out the gateway (whereabouts#601): we honour it, and
/// refuse two different values.
fn one_of(
    at: &str,
    key: &str,
    value: &Option<String>,
    alt_key: &str,
    alt: &Option<String>,
) -> Result<Option<IpAddr>, Error> {
    let a = opt_ip(&format!("{at}.{key}"), value.as_deref())?;
    let b = opt_ip(&format!("{at}.{alt_key}"), alt.as_deref())?;
    match (a, b) {
        (Some(a), Some(b)) if a != b => Err(Error::invalid_config(format!(
            "{at}.{key} {a} and {at}.{alt_key} {b} disagree: give one of them"
        ))),
        _ => Ok(a.or(b)),
    }
}

/// An `A-B/prefix` range gives start and end; an explicit key may repeat them but not differ.
fn agree(
    at: &str,
    spec: &str,
    key: &str,
    from_spec: Option<IpAddr>,
    explicit: Option<IpAddr>,
) -> Result<Option<IpAddr>, Error> {
    match (from_spec, explicit) {
        (Some(a), Some(b)) if a != b => Err(Error::invalid_config(format!(
            "{at}.range {spec:?} and {at}.{key} {b} disagree: give one of them"
        ))),
        _ => Ok(from_spec.or(explicit)),
    }
}

/// `10.0.0.0/24` (host bits allowed: `10.0.0.5/24` is the /24), or `A-B/prefix`: start A and
/// end B within the network of A.
fn parse_range_spec(
    key: &str,
    spec: &str,
) -> Result<(IpNetwork, Option<IpAddr>, Option<IpAddr>), Error> {
    let bad = |why: String| {
        Error::invalid_config(format!(
            "{key} {spec:?} is not a CIDR (like 10.0.0.0/24) or a range A-B/prefix (like \
             10.0.0.10-10.0.0.50/24): {why}"
        ))
    };
    let Some((a, rest)) = spec.split_once('-') else {
        let net = cni::result::parse_cidr(&without_leading_zeroes(spec.trim())).map_err(bad)?;
        return Ok((net, None, None));
    };
    let (b, prefix) = rest
        .split_once('/')
        .ok_or_else(|| bad("missing /prefix".to_string()))?;
    let a: IpAddr = without_leading_zeroes(a.trim())
        .parse()
        .map_err(|e| bad(format!("start: {e}")))?;
    let b: IpAddr = without_leading_zeroes(b.trim())
        .parse()
        .map_err(|e| bad(format!("end: {e}")))?;
    let net = cni::result::parse_cidr(&format!("{a}/{}", prefix.trim())).map_err(bad)?;
    if !net.contains(b) || b.is_ipv4() != a.is_ipv4() {
        return Err(bad(format!("{b} is not in the network of {a}")));
    }
    if ipam::range::to_u128(a) > ipam::range::to_u128(b) {
        return Err(bad(format!("{a} is after {b}")));
    }
    Ok((net, Some(a), Some(b)))
}

/// A CIDR, or a bare address (one address: /32 or /128).
fn parse_exclude(key: &str, value: &str) -> Result<IpNetwork, Error> {
    let v = value.trim();
    let parsed = if v.contains('/') {
        cni::result::parse_cidr(v)
    } else {
        v.parse::<IpAddr>()
            .map(IpNetwork::from)
            .map_err(|e| e.to_string())
    };
    parsed.map_err(|e| {
        Error::invalid_config(format!(
            "{key} {value:?} is not a CIDR or an IP address: {e}"
        ))
    })
}

fn parse_cidr(key: &str, value: &str) -> Result<IpNetwork, Error> {
    cni::result::parse_cidr(value.trim()).map_err(|e| {
        Error::invalid_config(format!(
            "{key} {value:?} is not an address in CIDR form (like 10.1.0.5/24): {e}"
        ))
    })
}

fn routes(raw: &[RawRoute]) -> Result<Vec<Route>, Error> {
    raw.iter()
        .enumerate()
        .map(|(i, r)| {
            let at = format!("ipam.routes[{i}]");
            let dst = parse_cidr(&format!("{at}.dst"), &r.dst)?;
            let gw = opt_ip(&format!("{at}.gw"), r.gw.as_deref())?;
            Ok(Route::new(dst, gw))
        })
        .collect()
}

/// The keys that say where the store is: what ADD, DEL and GC all need (read from the same
/// object as [`RawConf`], which leaves them out).
#[derive(Debug, Clone, Default, Deserialize)]
struct StoreKeys {
    datastore: Option<String>,
    store_dir: Option<String>,
    etcd_endpoints: Option<Value>,
    etcd_host: Option<String>,
    etcd_prefix: Option<String>,
    etcd_dial_timeout_ms: Option<u64>,
    etcd_request_timeout_ms: Option<u64>,
    etcd_username: Option<String>,
    etcd_password: Option<String>,
    etcd_key_file: Option<String>,
    etcd_cert_file: Option<String>,
    etcd_ca_cert_file: Option<String>,
}

impl StoreKeys {
    /// The keys that are set (not absent, null or empty).
    fn set_keys(&self) -> Vec<&'static str> {
        let strings = [
            ("datastore", &self.datastore),
            ("store_dir", &self.store_dir),
            ("etcd_host", &self.etcd_host),
            ("etcd_prefix", &self.etcd_prefix),
            ("etcd_username", &self.etcd_username),
            ("etcd_password", &self.etcd_password),
            ("etcd_key_file", &self.etcd_key_file),
            ("etcd_cert_file", &self.etcd_cert_file),
            ("etcd_ca_cert_file", &self.etcd_ca_cert_file),
        ];
        let mut set: Vec<&'static str> = strings
            .into_iter()
            .filter(|(_, v)| non_empty(v.as_deref()).is_some())
            .map(|(k, _)| k)
            .collect();
        if self.etcd_endpoints.as_ref().is_some_and(|v| !v.is_null()) {
            set.push("etcd_endpoints");
        }
        set
    }
}

/// The etcd keys and their values, for the "set without datastore etcd" check. `etcd_host` is
/// not among them: whereabouts' own readings of it are followed (see [`datastore`]).
fn etcd_keys_set(raw: &StoreKeys) -> Option<String> {
    let strings = [
        ("etcd_prefix", &raw.etcd_prefix),
        ("etcd_username", &raw.etcd_username),
        ("etcd_key_file", &raw.etcd_key_file),
        ("etcd_cert_file", &raw.etcd_cert_file),
        ("etcd_ca_cert_file", &raw.etcd_ca_cert_file),
    ];
    let endpoints = raw
        .etcd_endpoints
        .as_ref()
        .filter(|v| !v.is_null())
        .map(|v| format!("ipam.etcd_endpoints {v}"));
    endpoints.or_else(|| {
        strings
            .into_iter()
            .find_map(|(k, v)| non_empty(v.as_deref()).map(|v| format!("ipam.{k} {v:?}")))
    })
}

/// Who wrote a set of store keys: a network configuration (with the flat file it names), whose
/// author may name only what the node allows, or the node's own settings file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Network,
    Node,
}

fn datastore(raw: &StoreKeys, origin: &Origin, source: Source) -> Result<Datastore, Error> {
    match raw.datastore.as_deref().map(str::trim) {
        // whereabouts up to 0.5 had no `datastore` key and read `etcd_host` as etcd; from 0.6
        // it ignores `etcd_host` and uses its cluster store, which here is the node's store. The
        // two readings meet where the node's store is etcd (`etcd_host` must then name it):
        // the node's flat file saying it, or a node with etcd set. Elsewhere the node's store,
        // as a configuration naming none gets, with the ignored key logged.
        None | Some("") if non_empty(raw.etcd_host.as_deref()).is_some() => {
            if source == Source::Node {
                return etcd(raw, origin, source);
            }
            if let Some((node, path)) = node_etcd(origin)? {
                return governed_etcd(raw, node, &path);
            }
            if let Some(what) = etcd_keys_set(raw) {
                return Err(etcd_keys_without_datastore(&what));
            }
            let host = raw.etcd_host.as_deref().unwrap_or_default();
            // A value from a flat file the configuration named is not repeated (see `annotate`).
            let said = match origin.of("etcd_host") {
                Some(flat) => format!("ipam.etcd_host (from {})", flat.display()),
                None => format!("ipam.etcd_host {host:?}"),
            };
            cni::log_warn!(
                "{said} is set without ipam.datastore and this node has no etcd set: ignored, \
                 as whereabouts 0.6 and later ignore it; set the cluster's etcd in {} to keep \
                 reservations there",
                node_file_path().display()
            );
            node_datastore(raw, Some(&said), source)
        }
        None | Some("") => {
            if let Some(what) = etcd_keys_set(raw) {
                return Err(etcd_keys_without_datastore(&what));
            }
            node_datastore(raw, None, source)
        }
        Some("file") => file_datastore(raw, source),
        Some("etcd") => etcd(raw, origin, source),
        Some("kubernetes") => {
            let said = match origin.of("datastore") {
                Some(flat) => format!(
                    "ipam.datastore \"kubernetes\" (from the whereabouts flat file {})",
                    flat.display()
                ),
                None => "ipam.datastore \"kubernetes\"".to_string(),
            };
            node_datastore(raw, Some(&said), source)
        }
        Some(other) => Err(Error::invalid_config(format!(
            "ipam.datastore {other:?} is not supported: leave it out (or \"file\") for the \
             embedded file store, or use \"etcd\""
        ))),
    }
}

/// Etcd keys in a configuration that names no store: a shared store meant, a node-local one about
/// to be used, which would hand the same address out on two nodes; refused rather than guessed.
fn etcd_keys_without_datastore(what: &str) -> Error {
    Error::invalid_config(format!(
        "{what} is set but ipam.datastore is not: set ipam.datastore to \"etcd\" to use etcd, \
         or to \"file\" to keep reservations on this node only"
    ))
}

/// The store a configuration gets when it names none, or whereabouts' `"kubernetes"` (its
/// default, the cluster store, which its installer also writes into every node's flat file):
/// what the node's own settings file says (`"file"` or `"etcd"` with its keys), so that a node
/// moved from whereabouts needs no NAD edited; without that file, the embedded file store.
/// `said` names the `"kubernetes"` key when that is what asked, to log the choice.
fn node_datastore(raw: &StoreKeys, said: Option<&str>, source: Source) -> Result<Datastore, Error> {
    let path = node_file_path();
    let store = match node_store()? {
        Some(store) => store,
        None => file_datastore(raw, source)?,
    };
    if let Some(said) = said {
        let what = match &store {
            Datastore::File { dir } => format!("the embedded file store in {}", dir.display()),
            Datastore::Etcd(e) => format!("etcd at {}", e.endpoints.join(",")),
        };
        let why = if path.exists() {
            format!("as {} says", path.display())
        } else {
            format!(
                "as no {} says otherwise (one node's store: set the cluster's etcd there)",
                path.display()
            )
        };
        cni::log_info!("{said} read as {what}, {why}");
    }
    Ok(store)
}

/// The node's whereabouts settings file.
fn node_file_path() -> PathBuf {
    node_config_dir().join(NODE_FILE)
}

/// The store the node's settings file names, read once per process (several decisions of one
/// call consult it).
fn node_store() -> Result<Option<Datastore>, Error> {
    static READ: std::sync::OnceLock<Result<Option<Datastore>, Error>> = std::sync::OnceLock::new();
    READ.get_or_init(|| read_node_file(&node_file_path()))
        .clone()
}

/// The node's settings, if the file exists: a JSON object with `datastore` ("file" or "etcd")
/// and the store keys. Read as every node settings file is ([`cni::node::read_settings`]).
fn read_node_file(path: &Path) -> Result<Option<Datastore>, Error> {
    let Some(node) = cni::node::read_settings(path)? else {
        return Ok(None);
    };
    let what = format!("the node's whereabouts settings {}", path.display());
    let keys: StoreKeys = cni::config::typed(&Value::Object(node), "")
        .map_err(|e| Error::invalid_config(format!("{what}: {}", e.msg)))?;
    match keys.datastore.as_deref().map(str::trim) {
        Some("file" | "etcd") => {}
        other => {
            return Err(Error::invalid_config(format!(
                "{what}: datastore {other:?} must be \"file\" or \"etcd\" (it says which store \
                 networks that name none, or whereabouts' \"kubernetes\", use on this node)"
            )))
        }
    }
    datastore(&keys, &Origin::default(), Source::Node)
        .map(Some)
        .map_err(|e| Error::invalid_config(format!("{what}: {}", e.msg)))
}

/// The file store: the node's own `store_dir` as it says; a network configuration's only below
/// the directories the node allows (`store_dirs` in node.json, and the node's own store).
fn file_datastore(raw: &StoreKeys, source: Source) -> Result<Datastore, Error> {
    let Some(dir) = non_empty(raw.store_dir.as_deref()) else {
        return Ok(Datastore::File {
            dir: PathBuf::from(DEFAULT_STORE_DIR),
        });
    };
    if !Path::new(dir).is_absolute() {
        return Err(Error::invalid_config(format!(
            "ipam.store_dir {dir:?} must be an absolute path"
        )));
    }
    if source == Source::Network {
        let paths = cni::node::NodePaths::load()?;
        let mut allowed = paths.store_dirs.clone();
        if let Ok(Some(Datastore::File { dir })) = node_store() {
            allowed.push(dir);
        }
        cni::node::named_path("ipam.store_dir", dir, &allowed, "store_dirs", &paths)?;
    }
    Ok(Datastore::File {
        dir: PathBuf::from(dir),
    })
}

/// etcd: the node's own keys as they are; a network configuration gets the node's etcd, and
/// may repeat its keys (whereabouts NADs carry them) but not change them: which cluster, which
/// key prefix, which credentials and TLS files are the node's to say (a NAD author choosing the
/// endpoint would make the node send requests anywhere and read any file as root). Timeouts
/// stay the configuration's.
fn etcd(raw: &StoreKeys, origin: &Origin, source: Source) -> Result<Datastore, Error> {
    if source == Source::Node {
        return Ok(Datastore::Etcd(etcd_conf(raw)?));
    }
    let Some((node, path)) = node_etcd(origin)? else {
        return Err(Error::invalid_config(format!(
            "ipam.datastore \"etcd\": this node has no etcd cluster set; the node's etcd \
             (endpoints, TLS files, credentials, prefix) is set in {} as \
             {{\"datastore\": \"etcd\", \"etcd_endpoints\": [...]}}, and a network \
             configuration may only repeat it",
            node_file_path().display()
        )));
    };
    governed_etcd(raw, node, &path)
}

/// The node's etcd and the file that sets it: its settings file's, else the one its whereabouts
/// flat file names; `None` when the node has no etcd set.
fn node_etcd(origin: &Origin) -> Result<Option<(EtcdConf, PathBuf)>, Error> {
    if let Some(Datastore::Etcd(node)) = node_store()? {
        return Ok(Some((node, node_file_path())));
    }
    Ok(origin
        .store
        .as_ref()
        .zip(origin.path.as_ref())
        .and_then(|(keys, p)| {
            let has = keys.etcd_endpoints.as_ref().is_some_and(|v| !v.is_null())
                || non_empty(keys.etcd_host.as_deref()).is_some();
            has.then(|| etcd_conf(keys).ok().map(|e| (e, p.clone())))
                .flatten()
        }))
}

/// The node's etcd with the configuration's timeouts, once every node-level key the
/// configuration sets is found equal to the node's.
fn governed_etcd(raw: &StoreKeys, node: EtcdConf, path: &Path) -> Result<Datastore, Error> {
    let differs = |key: &str, shown: &str, node_key: &str, node_value: &str| {
        Error::invalid_config(format!(
            "ipam.{key} {shown} differs from this node's etcd ({node_key} in {}: {node_value}): \
             a network uses the etcd cluster, TLS files and credentials its node is set up for",
            path.display()
        ))
    };
    let asked_endpoints = raw.etcd_endpoints.as_ref().is_some_and(|v| !v.is_null())
        || non_empty(raw.etcd_host.as_deref()).is_some();
    let mut node = node;
    if asked_endpoints {
        let given = endpoints(raw)?;
        let (mut asked, mut have) = (given.clone(), node.endpoints.clone());
        asked.sort();
        have.sort();
        if asked == have {
            // The same members: in the configuration's order (which it may prefer).
            node.endpoints = given;
        } else {
            let key = if raw.etcd_endpoints.is_some() {
                "etcd_endpoints"
            } else {
                "etcd_host"
            };
            let shown = cni::error::quote_value(&Value::String(asked.join(",")));
            return Err(differs(
                key,
                &shown,
                "etcd_endpoints",
                &node.endpoints.join(","),
            ));
        }
    }
    if let Some(p) = non_empty(raw.etcd_prefix.as_deref()) {
        if etcd_prefix(Some(p))? != node.prefix {
            return Err(differs(
                "etcd_prefix",
                &format!("{p:?}"),
                "etcd_prefix",
                &node.prefix,
            ));
        }
    }
    let files = [
        ("etcd_ca_cert_file", &raw.etcd_ca_cert_file, &node.ca_file),
        ("etcd_cert_file", &raw.etcd_cert_file, &node.cert_file),
        ("etcd_key_file", &raw.etcd_key_file, &node.key_file),
    ];
    for (key, asked, have) in files {
        if let Some(a) = non_empty(asked.as_deref()) {
            if have.as_deref() != Some(Path::new(a)) {
                let shown = have
                    .as_ref()
                    .map_or("none".to_string(), |h| h.display().to_string());
                return Err(differs(key, &format!("{a:?}"), key, &shown));
            }
        }
    }
    if let Some(u) = non_empty(raw.etcd_username.as_deref()) {
        if node.username.as_deref() != Some(u) {
            return Err(differs(
                "etcd_username",
                &format!("{u:?}"),
                "etcd_username",
                "another",
            ));
        }
    }
    if non_empty(raw.etcd_password.as_deref()).is_some()
        && non_empty(raw.etcd_password.as_deref()) != node.password.as_deref()
    {
        // Neither password is repeated.
        return Err(differs(
            "etcd_password",
            "(not shown)",
            "etcd_password",
            "(not shown)",
        ));
    }
    Ok(Datastore::Etcd(EtcdConf {
        dial_timeout_ms: timeout(
            "ipam.etcd_dial_timeout_ms",
            raw.etcd_dial_timeout_ms,
            node.dial_timeout_ms,
        )?,
        request_timeout_ms: timeout(
            "ipam.etcd_request_timeout_ms",
            raw.etcd_request_timeout_ms,
            node.request_timeout_ms,
        )?,
        ..node
    }))
}

fn etcd_conf(raw: &StoreKeys) -> Result<EtcdConf, Error> {
    let (username, password) = pair(
        ("ipam.etcd_username", &raw.etcd_username),
        ("ipam.etcd_password", &raw.etcd_password),
    )?;
    let (cert_file, key_file) = pair(
        ("ipam.etcd_cert_file", &raw.etcd_cert_file),
        ("ipam.etcd_key_file", &raw.etcd_key_file),
    )?;
    Ok(EtcdConf {
        endpoints: endpoints(raw)?,
        username,
        password,
        ca_file: non_empty(raw.etcd_ca_cert_file.as_deref()).map(PathBuf::from),
        cert_file: cert_file.map(PathBuf::from),
        key_file: key_file.map(PathBuf::from),
        prefix: etcd_prefix(raw.etcd_prefix.as_deref())?,
        dial_timeout_ms: timeout(
            "ipam.etcd_dial_timeout_ms",
            raw.etcd_dial_timeout_ms,
            DEFAULT_ETCD_DIAL_TIMEOUT_MS,
        )?,
        request_timeout_ms: timeout(
            "ipam.etcd_request_timeout_ms",
            raw.etcd_request_timeout_ms,
            DEFAULT_ETCD_REQUEST_TIMEOUT_MS,
        )?,
    })
}

/// Two keys that only make sense together (user and password, cert and key).
fn pair(
    a: (&str, &Option<String>),
    b: (&str, &Option<String>),
) -> Result<(Option<String>, Option<String>), Error> {
    let va = non_empty(a.1.as_deref()).map(str::to_string);
    let vb = non_empty(b.1.as_deref()).map(str::to_string);
    let missing = match (&va, &vb) {
        (Some(_), None) => Some((a.0, b.0)),
        (None, Some(_)) => Some((b.0, a.0)),
        _ => None,
    };
    match missing {
        None => Ok((va, vb)),
        Some((set, unset)) => Err(Error::invalid_config(format!(
            "{set} is set but {unset} is not: give both or neither"
        ))),
    }
}

/// `etcd_endpoints` (comma-separated string or list) then `etcd_host` (comma-separated).
fn endpoints(raw: &StoreKeys) -> Result<Vec<String>, Error> {
    let mut items: Vec<(String, String)> = Vec::new();
    match raw.etcd_endpoints.as_ref() {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => items.extend(comma_items("ipam.etcd_endpoints", s)),
        Some(Value::Array(list)) => {
            for (i, v) in list.iter().enumerate() {
                let key = format!("ipam.etcd_endpoints[{i}]");
                let s = v.as_str().ok_or_else(|| {
                    Error::invalid_config(format!("{key} must be a URL string, got {v}"))
                })?;
                items.push((key, s.to_string()));
            }
        }
        Some(other) => {
            return Err(Error::invalid_config(format!(
                "ipam.etcd_endpoints must be a list of URLs or a comma-separated string, got \
                 {other}"
            )))
        }
    }
    if let Some(hosts) = raw.etcd_host.as_deref() {
        items.extend(comma_items("ipam.etcd_host", hosts));
    }
    let mut out: Vec<String> = Vec::new();
    for (key, value) in items {
        let url = endpoint_url(&key, &value)?;
        if !out.contains(&url) {
            out.push(url);
        }
    }
    if out.is_empty() {
        return Err(Error::invalid_config(
            "ipam.datastore \"etcd\" needs ipam.etcd_endpoints (or whereabouts' ipam.etcd_host)",
        ));
    }
    Ok(out)
}

fn comma_items(key: &str, s: &str) -> Vec<(String, String)> {
    s.split(',')
        .filter(|item| !item.trim().is_empty())
        .map(|item| (key.to_string(), item.to_string()))
        .collect()
}

/// `http://` or `https://` URL; a bare `host:port` (whereabouts' `etcd_host`) gets `http://`.
fn endpoint_url(key: &str, value: &str) -> Result<String, Error> {
    let v = value.trim();
    let url = match v.split_once("://") {
        None => format!("http://{v}"),
        Some(("http" | "https", rest)) if !rest.is_empty() => v.to_string(),
        Some(_) => {
            return Err(Error::invalid_config(format!(
                "{key} {value:?} is not an etcd endpoint: use http://host:port, \
                 https://host:port or host:port"
            )))
        }
    };
    Ok(url.trim_end_matches('/').to_string())
}

fn etcd_prefix(value: Option<&str>) -> Result<String, Error> {
    let Some(v) = non_empty(value) else {
        return Ok(DEFAULT_ETCD_PREFIX.to_string());
    };
    let trimmed = v.trim_end_matches('/');
    if !v.starts_with('/') || trimmed.is_empty() {
        return Err(Error::invalid_config(format!(
            "ipam.etcd_prefix {v:?} must be a key path like \"/multihome/whereabouts\" (starting \
             with / and not the root)"
        )));
    }
    Ok(trimmed.to_string())
}

fn timeout(key: &str, value: Option<u64>, default: u64) -> Result<u64, Error> {
    match value {
        None => Ok(default),
        Some(0) => Err(Error::invalid_config(format!(
            "{key} 0 is not a timeout: give milliseconds > 0 or leave it out ({default})"
        ))),
        Some(ms) => Ok(ms),
    }
}

#[cfg(test)]
#[path = "conf_tests.rs"]
mod tests;

#[cfg(test)]
mod doc_tests {
    use super::{RawConf, RawRange};

    #[test]
    fn every_key_whereabouts_accepts_is_documented() {
        let doc = include_str!("../../../docs/whereabouts.md");
        let mut missing = cni::introspect::undocumented::<RawConf>(doc);
        missing.extend(cni::introspect::undocumented::<super::StoreKeys>(doc));
        missing.extend(cni::introspect::undocumented::<RawRange>(doc));
        assert!(
            missing.is_empty(),
            "docs/whereabouts.md does not document {missing:?}"
        );
    }
}
