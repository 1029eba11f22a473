//! The node side: this node's Open vSwitch DB (chassis name, bridge mappings, br-int and its
//! datapath) and the attachment's port on br-int, whose Interface carries the iface-id that
//! ovn-controller binds and then marks `ovn-installed`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cni::Error;
use ovsdb::{ops, value, Client};
use serde_json::{json, Value};

use crate::conf::OvnConf;
use crate::names;

/// The Open vSwitch database's name.
pub const DB: &str = "Open_vSwitch";
/// The integration bridge ovn-controller manages.
pub const BR_INT: &str = "br-int";

/// An OVSDB failure on the node's DB.
pub fn err(e: ovsdb::Error) -> Error {
    if e.is_unavailable() {
        Error::try_again_later(format!("this node's Open vSwitch DB: {e}"))
    } else {
        Error::internal(format!("this node's Open vSwitch DB: {e}"))
    }
}

/// What the node's OVS says about itself.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    /// `external_ids:system-id`: the chassis name ovn-controller registers.
    pub chassis: String,
    /// `external_ids:ovn-bridge-mappings`: physical network name -> OVS bridge.
    pub mappings: BTreeMap<String, String>,
    /// br-int's UUID, when ovn-controller has created it.
    pub br_int: Option<String>,
    /// br-int runs on the userspace datapath (`datapath_type=netdev`).
    pub netdev: bool,
}

/// One of this suite's ports on br-int.
#[derive(Debug, Clone)]
pub struct OvsPort {
    pub name: String,
    pub external_ids: BTreeMap<String, String>,
}

/// The node's Open vSwitch DB.
#[derive(Debug)]
pub struct Ovs {
    pub client: Client,
    pub endpoint: String,
}

fn by_name(name: &str) -> Value {
    json!([ops::cond("name", "==", json!(name))])
}

/// Parses `physnet:bridge,physnet2:bridge2`.
pub fn parse_mappings(s: &str) -> BTreeMap<String, String> {
    s.split(',')
        .filter_map(|m| {
            let (k, v) = m.trim().split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .collect()
}

impl Ovs {
    /// Connects to `conf.ovsdb`, with the node's TLS files for `ssl:` endpoints.
    pub fn connect(conf: &OvnConf) -> Result<Ovs, Error> {
        let timeout = conf.ready_timeout.min(Duration::from_secs(10));
        let tls = conf
            .tls
            .as_ref()
            .map(crate::conf::TlsFiles::load)
            .transpose()?;
        let client =
            Client::connect_tls(&conf.ovsdb, timeout, tls.as_ref()).map_err(|e| {
                match (e, &conf.tls) {
                    (ovsdb::Error::Tls { endpoint, what }, Some(files)) => {
                        files.handshake_failed(&endpoint, &what)
                    }
                    (e, _) => Error::try_again_later(format!(
                        "cannot reach this node's Open vSwitch DB at {} (ovsdb): {e}",
                        conf.ovsdb
                    )),
                }
            })?;
        Ok(Ovs {
            client,
            endpoint: conf.ovsdb.clone(),
        })
    }

    fn transact(&mut self, ops: &[Value]) -> Result<Vec<Value>, Error> {
        self.client.transact(DB, ops).map_err(err)
    }

    /// Chassis, mappings and br-int in one transaction.
    pub fn info(&mut self) -> Result<NodeInfo, Error> {
        let res = self.transact(&[
            ops::select("Open_vSwitch", json!([]), Some(&["external_ids"])),
            ops::select("Bridge", by_name(BR_INT), Some(&["_uuid", "datapath_type"])),
        ])?;
        let ext = res[0]["rows"]
            .as_array()
            .and_then(|r| r.first())
            .map(|r| value::as_str_map(&r["external_ids"]))
            .unwrap_or_default();
        let br = res[1]["rows"].as_array().and_then(|r| r.first()).cloned();
        Ok(NodeInfo {
            chassis: ext.get("system-id").cloned().unwrap_or_default(),
            mappings: ext
                .get("ovn-bridge-mappings")
                .map(|s| parse_mappings(s))
                .unwrap_or_default(),
            br_int: br.as_ref().and_then(|b| value::as_uuid(&b["_uuid"])),
            netdev: br
                .as_ref()
                .is_some_and(|b| b["datapath_type"].as_str() == Some("netdev")),
        })
    }

    /// Adds port `name` (one Interface of the same name) to br-int with the Interface's
    /// external_ids; a leftover port of that name is replaced in the same transaction.
    pub fn add_port(
        &mut self,
        br_int: &str,
        name: &str,
        external_ids: &[(&str, &str)],
    ) -> Result<(), Error> {
        let mut txn = self.del_port_ops(name)?;
        txn.push(ops::insert(
            "Interface",
            json!({"name": name, "external_ids": value::str_map(external_ids)}),
            Some("iface"),
        ));
        txn.push(ops::insert(
            "Port",
            json!({"name": name, "interfaces": value::set(vec![value::named_uuid("iface")])}),
            Some("port"),
        ));
        txn.push(ops::mutate(
            "Bridge",
            json!([ops::cond("_uuid", "==", value::uuid(br_int))]),
            json!([[
                "ports",
                "insert",
                value::set(vec![value::named_uuid("port")])
            ]]),
        ));
        self.transact(&txn).map(|_| ())
    }

    /// Operations removing port `name` from whichever bridge holds it (none if there is none).
    fn del_port_ops(&mut self, name: &str) -> Result<Vec<Value>, Error> {
        let res = self.transact(&[ops::select("Port", by_name(name), Some(&["_uuid"]))])?;
        let uuids: Vec<String> = res[0]["rows"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .filter_map(|r| value::as_uuid(&r["_uuid"]))
                    .collect()
            })
            .unwrap_or_default();
        Ok(uuids
            .iter()
            .map(|u| {
                let set = value::set(vec![value::uuid(u)]);
                ops::mutate(
                    "Bridge",
                    json!([["ports", "includes", set]]),
                    json!([["ports", "delete", set]]),
                )
            })
            .collect())
    }

    /// Removes port `name`; already gone is fine.
    pub fn del_port(&mut self, name: &str) -> Result<(), Error> {
        let txn = self.del_port_ops(name)?;
        if txn.is_empty() {
            return Ok(());
        }
        self.transact(&txn).map(|_| ())
    }

    /// This suite's Interfaces of `network` on this node.
    pub fn ports_of(&mut self, network: &str) -> Result<Vec<OvsPort>, Error> {
        let res = self.transact(&[ops::select(
            "Interface",
            json!([[
                "external_ids",
                "includes",
                value::str_map(&[(names::EXT_IFACE_NETWORK, network)])
            ]]),
            Some(&["name", "external_ids"]),
        )])?;
        Ok(res[0]["rows"]
            .as_array()
            .map(|rows| {
                rows.iter()
                    .map(|r| OvsPort {
                        name: r["name"].as_str().unwrap_or_default().to_string(),
                        external_ids: value::as_str_map(&r["external_ids"]),
                    })
                    .collect()
            })
            .unwrap_or_default())
    }

    /// The Interface's external_ids, None when there is no such Interface.
    pub fn interface(&mut self, name: &str) -> Result<Option<BTreeMap<String, String>>, Error> {
        let res = self.transact(&[ops::select(
            "Interface",
            by_name(name),
            Some(&["external_ids"]),
        )])?;
        Ok(res[0]["rows"]
            .as_array()
            .and_then(|r| r.first())
            .map(|r| value::as_str_map(&r["external_ids"])))
    }

    /// Waits until ovn-controller marks Interface `name` `ovn-installed` (its flows are in), or
    /// `timeout` passes (code 11 naming what is missing).
    pub fn wait_installed(
        &mut self,
        name: &str,
        port: &str,
        timeout: Duration,
    ) -> Result<(), Error> {
        let start = Instant::now();
        let mut pause = Duration::from_millis(2);
        loop {
            let ext = self.interface(name)?.ok_or_else(|| {
                Error::internal(format!(
                    "Interface {name} vanished from br-int while waiting"
                ))
            })?;
            if ext.get("ovn-installed").map(String::as_str) == Some("true") {
                return Ok(());
            }
            if start.elapsed() >= timeout {
                return Err(Error::try_again_later(format!(
                    "ovn-controller did not install logical port {port} (Interface {name}) within {:.1} s \
                     (readyTimeout): is ovn-controller running on this node and connected to the southbound DB?",
                    timeout.as_secs_f64()
                )));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }
}
