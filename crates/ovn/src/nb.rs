//! The northbound side: the network's logical switch (created once, even when many nodes ADD
//! at the same moment) and the attachments' logical switch ports, whose addresses are
//! allocated inside NB transactions so that no two ports ever get one address.
//!
//! Concurrency is optimistic: a snapshot (the switch's `ports` column and the ports' rows) is
//! read in one transaction, and the write carries a `wait` that fails the whole transaction if
//! `ports` changed since; the loser re-reads and tries again.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use cni::Error;
use ovsdb::{ops, value, Client};
use serde_json::{json, Value};

use crate::conf::{OvnConf, Topology};
use crate::names;

/// The northbound database's name.
pub const DB: &str = "OVN_Northbound";
/// How long optimistic retries may go on before "try again later".
const CONTENTION_BUDGET: Duration = Duration::from_secs(10);

/// Why a connection to NB failed: TLS (a file to fix, code 5) or anything else.
#[derive(Debug)]
enum ConnectError {
    Tls { endpoint: String, what: String },
    Other(ovsdb::Error),
}

impl ConnectError {
    fn into_error(self, nbdb: &str) -> Error {
        match self {
            ConnectError::Tls { endpoint, what } => Error::io(format!(
                "TLS with the OVN northbound DB at {endpoint} failed: {what}"
            )),
            ConnectError::Other(e) => Error::try_again_later(format!(
                "cannot reach the OVN northbound DB at {nbdb} (nbdb): {e}"
            )),
        }
    }
}

/// An OVSDB failure on the northbound DB: unreachable is "try again later" (11), the rest 999.
pub fn err(e: ovsdb::Error) -> Error {
    if e.is_unavailable() {
        Error::try_again_later(format!("OVN northbound DB: {e}"))
    } else {
        Error::internal(format!("OVN northbound DB: {e}"))
    }
}

/// A logical switch port as read.
#[derive(Debug, Clone, Default)]
pub struct Port {
    pub uuid: String,
    pub name: String,
    pub addresses: Vec<String>,
    pub port_security: Vec<String>,
    pub options: BTreeMap<String, String>,
    pub external_ids: BTreeMap<String, String>,
    pub port_type: String,
    /// `tag_request` (localnet ports: the VLAN).
    pub tag_request: Option<u16>,
}

impl Port {
    fn from_row(row: &Value) -> Port {
        Port {
            uuid: value::as_uuid(&row["_uuid"]).unwrap_or_default(),
            name: row["name"].as_str().unwrap_or_default().to_string(),
            addresses: value::as_strings(&row["addresses"]),
            port_security: value::as_strings(&row["port_security"]),
            options: value::as_str_map(&row["options"]),
            external_ids: value::as_str_map(&row["external_ids"]),
            port_type: row["type"].as_str().unwrap_or_default().to_string(),
            tag_request: value::as_set(&row["tag_request"])
                .first()
                .and_then(Value::as_u64)
                .and_then(|t| u16::try_from(t).ok()),
        }
    }

    /// The IPs of the first `addresses` entry ("<mac> <ip> <ip>").
    pub fn ips(&self) -> Vec<IpAddr> {
        self.addresses
            .iter()
            .flat_map(|a| a.split_whitespace().skip(1))
            .filter_map(|t| t.split('/').next()?.parse().ok())
            .collect()
    }

    /// The MAC of the first `addresses` entry.
    pub fn mac(&self) -> Option<String> {
        self.addresses
            .first()
            .and_then(|a| a.split_whitespace().next())
            .filter(|m| m.contains(':'))
            .map(str::to_string)
    }

    /// The chassis this port is requested on (`options:requested-chassis`, comma-separated).
    pub fn chassis(&self) -> Vec<String> {
        self.options
            .get("requested-chassis")
            .map(|s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Which attachment holds the port on `chassis`.
    pub fn holder(&self, chassis: &str) -> Option<&str> {
        self.external_ids
            .get(&names::at_key(chassis))
            .map(String::as_str)
    }
}

const PORT_COLUMNS: &[&str] = &[
    "_uuid",
    "name",
    "addresses",
    "port_security",
    "options",
    "external_ids",
    "type",
    "tag_request",
];

/// A consistent view of one network's switch.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub switch_uuid: String,
    /// The switch's `ports` column as read (the `wait` compares against it).
    pub ports_value: Value,
    /// The switch's `other_config` (subnet, ipv6_prefix, exclude_ips).
    pub other_config: BTreeMap<String, String>,
    pub ports: Vec<Port>,
}

impl Snapshot {
    /// Every address held by a port of the switch.
    pub fn used(&self) -> HashSet<IpAddr> {
        self.ports.iter().flat_map(Port::ips).collect()
    }

    pub fn port(&self, name: &str) -> Option<&Port> {
        self.ports.iter().find(|p| p.name == name)
    }

    /// The port holding `token` ("<container id> <ifname>") on `chassis`.
    pub fn held_by(&self, chassis: &str, token: &str) -> Option<&Port> {
        self.ports.iter().find(|p| p.holder(chassis) == Some(token))
    }
}

/// The northbound DB.
#[derive(Debug)]
pub struct Nb {
    pub client: Client,
}

fn by_name(name: &str) -> Value {
    json!([ops::cond("name", "==", json!(name))])
}

fn by_uuid(uuid: &str) -> Value {
    json!([ops::cond("_uuid", "==", value::uuid(uuid))])
}

impl Nb {
    /// Connects to `conf.nbdb`, with the node's TLS files for `ssl:` endpoints.
    pub fn connect(conf: &OvnConf) -> Result<Nb, Error> {
        let tls = conf
            .tls
            .as_ref()
            .map(crate::conf::TlsFiles::load)
            .transpose()?;
        Nb::connect_with(
            &conf.nbdb,
            conf.ready_timeout.min(Duration::from_secs(10)),
            tls.as_ref(),
        )
        .map_err(|e| match (&e, &conf.tls) {
            (ConnectError::Tls { endpoint, what }, Some(files)) => {
                files.handshake_failed(endpoint, what)
            }
            _ => e.into_error(&conf.nbdb),
        })
    }

    /// Connects to the northbound DB at `nbdb` (comma-separated endpoints), without TLS.
    pub fn connect_to(nbdb: &str, timeout: Duration) -> Result<Nb, Error> {
        Nb::connect_with(nbdb, timeout, None).map_err(|e| e.into_error(nbdb))
    }

    /// Connects to its leader when it is a cluster ([`Client::connect_leader`]: a partitioned
    /// follower would serve stale reads and time every write out), found within `timeout`,
    /// which also bounds every request.
    fn connect_with(
        nbdb: &str,
        timeout: Duration,
        tls: Option<&ovsdb::TlsConfig>,
    ) -> Result<Nb, ConnectError> {
        match Client::connect_leader(nbdb, DB, timeout, tls) {
            Ok(client) => Ok(Nb { client }),
            Err(ovsdb::Error::Tls { endpoint, what }) => Err(ConnectError::Tls { endpoint, what }),
            Err(e) => Err(ConnectError::Other(e)),
        }
    }

    fn transact(&mut self, ops: &[Value]) -> Result<Vec<Value>, ovsdb::Error> {
        self.client.transact(DB, ops)
    }

    /// Reads the switch `name` and its ports in one transaction; None when there is no switch.
    pub fn snapshot(&mut self, switch: &str) -> Result<Option<Snapshot>, Error> {
        let res = self
            .transact(&[ops::select(
                "Logical_Switch",
                by_name(switch),
                Some(&["_uuid", "ports", "other_config"]),
            )])
            .map_err(err)?;
        let rows = res[0]["rows"].as_array().cloned().unwrap_or_default();
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let switch_uuid = value::as_uuid(&row["_uuid"]).unwrap_or_default();
        let ports_value = row["ports"].clone();
        let other_config = value::as_str_map(&row["other_config"]);
        let uuids: Vec<String> = value::as_set(&ports_value)
            .iter()
            .filter_map(value::as_uuid)
            .collect();
        // Ports are read in a second transaction that also re-checks `ports`: if it changed in
        // between, read again (a port set read without it could miss a new port's address).
        let mut sel = vec![ops::wait_eq(
            "Logical_Switch",
            by_uuid(&switch_uuid),
            &["ports"],
            json!([{ "ports": ports_value }]),
        )];
        for u in &uuids {
            sel.push(ops::select(
                "Logical_Switch_Port",
                by_uuid(u),
                Some(PORT_COLUMNS),
            ));
        }
        match self.transact(&sel) {
            Ok(res) => {
                let ports = res[1..]
                    .iter()
                    .filter_map(|r| r["rows"].as_array()?.first().map(Port::from_row))
                    .collect();
                Ok(Some(Snapshot {
                    switch_uuid,
                    ports_value,
                    other_config,
                    ports,
                }))
            }
            Err(e) if e.is_wait_failed() => self.snapshot(switch),
            Err(e) => Err(err(e)),
        }
    }

    /// The network's switch, created when missing: a `wait` that no switch of that name exists
    /// makes concurrent creators fail except one; they then read the winner's.
    pub fn ensure_switch(&mut self, conf: &OvnConf) -> Result<Snapshot, Error> {
        let name = names::switch_name(conf);
        let start = Instant::now();
        loop {
            if let Some(s) = self.snapshot(&name)? {
                agrees(conf, &s)?;
                return Ok(s);
            }
            let mut ext = vec![
                (names::EXT_NETWORK, conf.network.as_str()),
                (names::EXT_TOPOLOGY, conf.topology.as_str()),
                (names::EXT_ROLE, "secondary"),
            ];
            let nad = conf.nad.clone();
            ext.push((names::EXT_NAD, nad.as_str()));
            let mut other: Vec<(String, String)> = Vec::new();
            for s in &conf.subnets {
                if s.is_ipv4() {
                    other.push(("subnet".into(), s.to_string()));
                } else {
                    other.push(("ipv6_prefix".into(), s.network().to_string()));
                }
            }
            if !conf.exclude.is_empty() {
                let ex: Vec<String> = conf
                    .exclude
                    .iter()
                    .filter(|e| e.is_ipv4())
                    .map(|e| e.to_string())
                    .collect();
                if !ex.is_empty() {
                    other.push(("exclude_ips".into(), ex.join(" ")));
                }
            }
            let other_ref: Vec<(&str, &str)> = other
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let mut row = json!({
                "name": name,
                "external_ids": value::str_map(&ext),
                "other_config": value::str_map(&other_ref),
            });
            let mut txn = vec![ops::wait_eq(
                "Logical_Switch",
                by_name(&name),
                &["name"],
                json!([]),
            )];
            if conf.topology == Topology::Localnet {
                txn.push(localnet_port_op(conf));
                row["ports"] = value::set(vec![value::named_uuid("lnp")]);
            }
            txn.push(ops::insert("Logical_Switch", row, Some("ls")));
            match self.transact(&txn) {
                Ok(_) => {}
                Err(e) if e.is_wait_failed() => {}
                Err(e) => return Err(err(e)),
            }
            if start.elapsed() > CONTENTION_BUDGET {
                break;
            }
        }
        Err(Error::try_again_later(format!(
            "could not create logical switch {name}"
        )))
    }

    /// Inserts `row` into the switch if `ports` still is what `snap` read, returning the new
    /// port; Ok(None) when `ports` changed (re-read and retry).
    pub fn insert_port(&mut self, snap: &Snapshot, row: Value) -> Result<Option<Port>, Error> {
        let mut port = row.clone();
        let txn = [
            ops::wait_eq(
                "Logical_Switch",
                by_uuid(&snap.switch_uuid),
                &["ports"],
                json!([{ "ports": snap.ports_value }]),
            ),
            ops::insert("Logical_Switch_Port", row, Some("lsp")),
            ops::mutate(
                "Logical_Switch",
                by_uuid(&snap.switch_uuid),
                json!([[
                    "ports",
                    "insert",
                    value::set(vec![value::named_uuid("lsp")])
                ]]),
            ),
        ];
        match self.transact(&txn) {
            Ok(results) => {
                // The row as written, with the UUID the insert reported: no read-back.
                port["_uuid"] = results[1]["uuid"].clone();
                Ok(Some(Port::from_row(&port)))
            }
            Err(e) if e.is_wait_failed() => Ok(None),
            Err(e) => Err(err(e)),
        }
    }

    /// Rewrites `options` and `external_ids` of a port, if they still are what was read
    /// (`expect`); Ok(false) when someone changed them in between.
    pub fn update_port(
        &mut self,
        expect: &Port,
        options: &BTreeMap<String, String>,
        external_ids: &BTreeMap<String, String>,
    ) -> Result<bool, Error> {
        self.update_port_and_security(expect, options, external_ids, None)
    }

    /// [`Nb::update_port`], and `port_security` too when `security` is given: then the wait
    /// also covers the port security that was read, so an operator's change in between is
    /// never overwritten (Ok(false), read again).
    pub fn update_port_and_security(
        &mut self,
        expect: &Port,
        options: &BTreeMap<String, String>,
        external_ids: &BTreeMap<String, String>,
        security: Option<&[String]>,
    ) -> Result<bool, Error> {
        let pairs = str_pairs;
        let mut row = json!({ "options": pairs(options), "external_ids": pairs(external_ids) });
        let mut txn = vec![port_unchanged(expect)];
        if let Some(s) = security {
            row["port_security"] = value::set(s.iter().map(|x| json!(x)).collect());
            txn.push(ops::wait_eq(
                "Logical_Switch_Port",
                by_uuid(&expect.uuid),
                &["port_security"],
                json!([{ "port_security": value::set(
                    expect.port_security.iter().map(|x| json!(x)).collect()
                ) }]),
            ));
        }
        txn.push(ops::update(
            "Logical_Switch_Port",
            by_uuid(&expect.uuid),
            row,
        ));
        match self.transact(&txn) {
            Ok(_) => Ok(true),
            Err(e) if e.is_wait_failed() => Ok(false),
            Err(e) => Err(err(e)),
        }
    }

    /// Removes a port from its switch (the row goes with it: ports are not root rows), if its
    /// `options` and `external_ids` still are what was read (`expect`): Ok(false) when someone
    /// changed them in between, e.g. another chassis rebound the port for a live migration or a
    /// persistent claim, which a blind delete would cut off. Already gone is Ok(false) too:
    /// the caller reads again and finds nothing to release.
    pub fn delete_port(&mut self, switch_uuid: &str, expect: &Port) -> Result<bool, Error> {
        let txn = [
            port_unchanged(expect),
            ops::mutate(
                "Logical_Switch",
                by_uuid(switch_uuid),
                json!([[
                    "ports",
                    "delete",
                    value::set(vec![value::uuid(&expect.uuid)])
                ]]),
            ),
        ];
        match self.transact(&txn) {
            Ok(_) => Ok(true),
            Err(e) if e.is_wait_failed() => Ok(false),
            Err(e) => Err(err(e)),
        }
    }

    /// The port named `name`, anywhere.
    pub fn port_by_name(&mut self, name: &str) -> Result<Option<Port>, Error> {
        let res = self
            .transact(&[ops::select(
                "Logical_Switch_Port",
                by_name(name),
                Some(PORT_COLUMNS),
            )])
            .map_err(err)?;
        Ok(res[0]["rows"]
            .as_array()
            .and_then(|r| r.first())
            .map(Port::from_row))
    }
}

/// A `wait` that the port's `options` and `external_ids` still are `expect`'s (who holds it on
/// which chassis): what every change of a port read earlier is guarded with.
fn port_unchanged(expect: &Port) -> Value {
    ops::wait_eq(
        "Logical_Switch_Port",
        by_uuid(&expect.uuid),
        &["options", "external_ids"],
        json!([{ "options": str_pairs(&expect.options), "external_ids": str_pairs(&expect.external_ids) }]),
    )
}

fn str_pairs(m: &BTreeMap<String, String>) -> Value {
    let v: Vec<(&str, &str)> = m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    value::str_map(&v)
}

/// The existing switch was made for the same network as `conf` describes: NADs that share a
/// network name but disagree leave OVN-Kubernetes' pods stuck (#3428); here the ADD fails at once,
/// naming both values.
fn agrees(conf: &OvnConf, snap: &Snapshot) -> Result<(), Error> {
    let disagree = |what: &str, theirs: &str, ours: &str| {
        Error::invalid_config(format!(
            "network {:?} already exists with {what} {theirs}, this configuration says {ours}:              configurations sharing a network name must agree",
            conf.network
        ))
    };
    let ours_v4 = conf
        .subnets
        .iter()
        .find(|s| s.is_ipv4())
        .map(ToString::to_string);
    let theirs_v4 = snap.other_config.get("subnet").cloned();
    if ours_v4 != theirs_v4 {
        return Err(disagree(
            "subnets (IPv4)",
            theirs_v4.as_deref().unwrap_or("none"),
            ours_v4.as_deref().unwrap_or("none"),
        ));
    }
    let ours_v6 = conf
        .subnets
        .iter()
        .find(|s| s.is_ipv6())
        .map(|s| s.network().to_string());
    let theirs_v6 = snap.other_config.get("ipv6_prefix").cloned();
    if ours_v6 != theirs_v6 {
        return Err(disagree(
            "subnets (IPv6 prefix)",
            theirs_v6.as_deref().unwrap_or("none"),
            ours_v6.as_deref().unwrap_or("none"),
        ));
    }
    if conf.topology == Topology::Localnet {
        if let Some(lnp) = snap.port(&names::localnet_port_name(conf)) {
            let net = lnp.options.get("network_name").cloned().unwrap_or_default();
            if net != conf.physical_network {
                return Err(disagree("physical network", &net, &conf.physical_network));
            }
            let tag = lnp.tag_request.map(|t| t.to_string());
            let ours = conf.vlan.map(|v| v.to_string());
            if tag != ours {
                return Err(disagree(
                    "vlanID",
                    tag.as_deref().unwrap_or("none"),
                    ours.as_deref().unwrap_or("none"),
                ));
            }
        }
    }
    Ok(())
}

/// The localnet port of a localnet switch, inserted with the switch (named-uuid "lnp").
fn localnet_port_op(conf: &OvnConf) -> Value {
    let options = [("network_name", conf.physical_network.as_str())];
    let ext = [
        (names::EXT_NETWORK, conf.network.as_str()),
        (names::EXT_TOPOLOGY, conf.topology.as_str()),
    ];
    let mut row = json!({
        "name": names::localnet_port_name(conf),
        "type": "localnet",
        "addresses": value::set(vec![json!("unknown")]),
        "options": value::str_map(&options),
        "external_ids": value::str_map(&ext),
    });
    // The VLAN is the `tag_request` column (ovn-nb(5)), as OVN-Kubernetes sets it.
    if let Some(v) = conf.vlan {
        row["tag_request"] = json!(v);
    }
    ops::insert("Logical_Switch_Port", row, Some("lnp"))
}
