//! The configuration of an OVN secondary network: the keys of OVN-Kubernetes'
//! `ovn-k8s-cni-overlay` NADs (layer2 and localnet), plus where this node finds its databases.
//! Everything is validated before anything is touched (code 7 naming the key and value).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cni::{Call, Error};
use ipnetwork::IpNetwork;
use netlink::Mac;
use serde::Deserialize;
use serde_json::Value;

/// The northbound DB of Debian's ovn-central.
pub const DEFAULT_NBDB: &str = "unix:/var/run/ovn/ovnnb_db.sock";
/// The node's Open vSwitch DB of Debian's openvswitch-switch.
pub const DEFAULT_OVSDB: &str = "unix:/var/run/openvswitch/db.sock";
/// The per-node file (JSON: nbdb, ovsdb, readyTimeout) in the node's settings directory
/// (`/etc/multihome`, or `$MULTIHOME_CONFIG_DIR`), unless `$MULTIHOME_OVN_NODE_CONFIG` names
/// another.
pub const NODE_CONFIG_FILE: &str = "ovn-node.json";
/// [`NODE_CONFIG_FILE`] in the default settings directory.
pub const DEFAULT_NODE_CONFIG: &str = "/etc/multihome/ovn-node.json";
/// Environment variable naming another per-node file (one machine simulating several nodes).
pub const NODE_CONFIG_ENV: &str = "MULTIHOME_OVN_NODE_CONFIG";
/// How long ADD waits for ovn-controller to report the port installed.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// The MTU of a network whose NAD has none, unless the node's `mtu` says otherwise:
/// OVN-Kubernetes' cluster MTU default (`config.Default.MTU`, 1500 minus Geneve's overhead),
/// which it gives every topology, localnet included (its CUDN renderer writes 1500 explicitly).
pub const DEFAULT_MTU: u32 = 1400;

/// The network's topology.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// A cluster-wide logical switch, nodes joined by Geneve, east-west only.
    Layer2,
    /// A logical switch with a localnet port to the node's OVS bridge mapping.
    Localnet,
}

impl Topology {
    /// The name used in configurations and external_ids.
    pub fn as_str(self) -> &'static str {
        match self {
            Topology::Layer2 => "layer2",
            Topology::Localnet => "localnet",
        }
    }
}

/// The keys as written.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Raw {
    net_attach_def_name: Option<String>,
    topology: Option<String>,
    subnets: Option<String>,
    exclude_subnets: Option<String>,
    mtu: Option<i64>,
    #[serde(rename = "allowPersistentIPs")]
    allow_persistent_ips: bool,
    role: Option<String>,
    #[serde(rename = "vlanID")]
    vlan_id: Option<i64>,
    physical_network_name: Option<String>,
    nbdb: Option<String>,
    ovsdb: Option<String>,
    node_config: Option<String>,
    ready_timeout: Option<f64>,
}

/// The per-node file.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
struct NodeFile {
    nbdb: Option<String>,
    ovsdb: Option<String>,
    ready_timeout: Option<f64>,
    /// The cluster MTU: what a NAD without `mtu` gets (OVN-Kubernetes' `--mtu`).
    mtu: Option<u32>,
    /// For `ssl:` endpoints: the CA certificate, the node's certificate and its key (PEM), as
    /// ovn-controller's `--ca-cert`, `--certificate` and `--private-key`.
    ssl_ca_cert: Option<PathBuf>,
    ssl_certificate: Option<PathBuf>,
    ssl_private_key: Option<PathBuf>,
}

/// The node's TLS files for `ssl:` endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `sslCaCert`.
    pub ca_cert: PathBuf,
    /// `sslCertificate`.
    pub certificate: PathBuf,
    /// `sslPrivateKey`.
    pub private_key: PathBuf,
    /// The per-node file that named them.
    pub node_file: PathBuf,
}

impl TlsFiles {
    /// The three files, all set or none (7 naming the node file otherwise).
    fn from_node(node: &NodeFile, node_file: &Path) -> Result<Option<TlsFiles>, Error> {
        match (
            &node.ssl_ca_cert,
            &node.ssl_certificate,
            &node.ssl_private_key,
        ) {
            (None, None, None) => Ok(None),
            (Some(ca), Some(cert), Some(key)) => Ok(Some(TlsFiles {
                ca_cert: ca.clone(),
                certificate: cert.clone(),
                private_key: key.clone(),
                node_file: node_file.to_path_buf(),
            })),
            _ => Err(Error::invalid_config(format!(
                "the node's settings {}: sslCaCert, sslCertificate and sslPrivateKey go together",
                node_file.display()
            ))),
        }
    }

    /// The TLS client configuration, the files read as node files are ([`cni::nodefs::read`]).
    /// Code 5 naming the file at fault.
    pub fn load(&self) -> Result<ovsdb::TlsConfig, Error> {
        let read = |key: &str, path: &Path| {
            cni::nodefs::read(path, false).map_err(|e| {
                Error::io(format!(
                    "{key} {}: cannot read it: {e} (in {})",
                    path.display(),
                    self.node_file.display()
                ))
            })
        };
        let ca = read("sslCaCert", &self.ca_cert)?;
        let cert = read("sslCertificate", &self.certificate)?;
        let key = read("sslPrivateKey", &self.private_key)?;
        ovsdb::TlsConfig::from_pem(&ca, &cert, &key).map_err(|(input, why)| {
            let (key, path) = self.named(input);
            Error::io(format!("{key} {}: {why}", path.display()))
        })
    }

    /// The key and file an input is.
    pub fn named(&self, input: ovsdb::TlsInput) -> (&'static str, &Path) {
        match input {
            ovsdb::TlsInput::CaCert => ("sslCaCert", &self.ca_cert),
            ovsdb::TlsInput::Certificate => ("sslCertificate", &self.certificate),
            ovsdb::TlsInput::PrivateKey => ("sslPrivateKey", &self.private_key),
        }
    }

    /// What a failed handshake says: the files to look at.
    pub fn handshake_failed(&self, endpoint: &str, what: &str) -> Error {
        Error::io(format!(
            "TLS with {endpoint} failed: {what} (sslCaCert {}, sslCertificate {}, sslPrivateKey {})",
            self.ca_cert.display(),
            self.certificate.display(),
            self.private_key.display()
        ))
    }
}

/// Keys of OVN-Kubernetes that this suite does not implement: refused by name when set rather
/// than silently ignored (a network that quietly lacks its join subnet is worse than an error).
/// OVN-Kubernetes' own tooling writes every field, empty ones as `""` (`omitempty` is how it
/// reads them, and its ValidateNetConf checks only values that are set): an empty or zero value
/// is absent here too.
const REFUSED: &[(&str, &str)] = &[
    ("joinSubnet", "only used by primary layer3/layer2 networks"),
    ("transitSubnet", "only used by layer3 networks"),
    ("infrastructureSubnets", "only used by primary networks"),
    ("reservedSubnets", "only used by primary networks"),
    ("defaultGatewayIPs", "only used by primary networks"),
];

/// Whether a value is set as OVN-Kubernetes reads it: not null, `""`, 0, false, `[]` or `{}`.
fn is_set(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64() != Some(0.0),
        Value::String(s) => !s.trim().is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Refuses the keys of [`REFUSED`] that are set, and an `ipam` with a `type`: OVN networks
/// manage their addresses with `subnets`, and OVN-Kubernetes refuses only a set `ipam.type`
/// (community NADs often carry `"ipam": {}`).
fn refuse_set_keys(raw: &serde_json::Map<String, Value>) -> Result<(), Error> {
    for (key, why) in REFUSED {
        if let Some(v) = raw.get(*key).filter(|v| is_set(v)) {
            return Err(Error::invalid_config(format!(
                "{key}: {} is not supported by this plugin: {why}",
                key_value(v)
            )));
        }
    }
    match raw.get("ipam") {
        None | Some(Value::Null) | Some(Value::Object(_)) => Ok(()),
        Some(other) => Err(Error::invalid_config(format!(
            "ipam: {} must be an object (or left out)",
            key_value(other)
        ))),
    }
}

/// The IPAM plugin of a localnet network (OVN-Kubernetes 1.4 hands a localnet `ipam` to it,
/// typically `dhcp`: the address comes from the physical network's DHCP server, port security
/// stays MAC-only). A layer2 network manages its addresses with `subnets`; `subnets` with
/// `ipam.type` would be two owners of one address.
fn ipam_type(
    raw: &serde_json::Map<String, Value>,
    topology: Topology,
    subnets: &str,
) -> Result<Option<String>, Error> {
    let Some(t) = raw
        .get("ipam")
        .and_then(|i| i.get("type"))
        .filter(|t| is_set(t))
    else {
        return Ok(None);
    };
    let Some(name) = t.as_str() else {
        return Err(Error::invalid_config(format!(
            "ipam.type: {} must be a string",
            key_value(t)
        )));
    };
    if topology != Topology::Localnet {
        return Err(Error::invalid_config(format!(
            "ipam.type: {} is not supported on a layer2 network: it manages its addresses with \
             \"subnets\" (OVN-Kubernetes refuses an ipam type there too); leave ipam out, or \
             empty (a localnet network takes an ipam plugin, such as dhcp)",
            key_value(t)
        )));
    }
    if !subnets.trim().is_empty() {
        return Err(Error::invalid_config(format!(
            "ipam.type: {} with subnets {subnets:?}: both would manage the addresses; keep one",
            key_value(t)
        )));
    }
    Ok(Some(name.to_string()))
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct OvnConf {
    /// `name`: the network, cluster wide.
    pub network: String,
    /// `netAttachDefName`, "<namespace>/<name>".
    pub nad: String,
    pub topology: Topology,
    /// One network per family at most, in the order written.
    pub subnets: Vec<IpNetwork>,
    pub exclude: Vec<IpNetwork>,
    pub mtu: u32,
    pub allow_persistent_ips: bool,
    /// localnet: the access VLAN.
    pub vlan: Option<u16>,
    /// localnet: the bridge-mapping name (`physicalNetworkName`, else `name`).
    pub physical_network: String,
    /// localnet: `physicalNetworkName` was written (no fallback to the NAD's name).
    pub physical_network_explicit: bool,
    pub nbdb: String,
    pub ovsdb: String,
    /// The node's TLS files, for `ssl:` endpoints.
    pub tls: Option<TlsFiles>,
    pub ready_timeout: Duration,
    /// The MAC requested by the runtime (CNI_ARGS MAC, args.cni.mac, runtimeConfig.mac).
    pub mac: Option<Mac>,
    /// The persistent-IP claim of the attachment (args.cni "ipam-claim-reference").
    pub claim: Option<String>,
    /// localnet: the IPAM plugin (`ipam.type`) that gives the addresses, instead of `subnets`.
    pub ipam: Option<String>,
}

fn key_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        other => other.to_string(),
    }
}

/// Parses a comma-separated list of CIDRs (a bare address is a host network).
fn parse_cidrs(key: &str, s: &str) -> Result<Vec<IpNetwork>, Error> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let net = if item.contains('/') {
            let (addr, len) = item.split_once('/').expect("checked");
            let addr: IpAddr = addr
                .parse()
                .map_err(|_| Error::invalid_config(format!("{key}: {item:?} is not a CIDR")))?;
            let len: u8 = len.parse().map_err(|_| {
                Error::invalid_config(format!("{key}: {item:?} has an invalid prefix length"))
            })?;
            IpNetwork::new(addr, len).map_err(|_| {
                Error::invalid_config(format!("{key}: {item:?} has an invalid prefix length"))
            })?
        } else {
            let addr: IpAddr = item.parse().map_err(|_| {
                Error::invalid_config(format!("{key}: {item:?} is not an address or a CIDR"))
            })?;
            IpNetwork::from(addr)
        };
        out.push(net);
    }
    Ok(out)
}

/// The network a CIDR names, with host bits cleared.
fn normalized(n: IpNetwork) -> IpNetwork {
    IpNetwork::new(n.network(), n.prefix()).expect("same prefix")
}

impl OvnConf {
    /// Parses `call`'s configuration; `default_topology` is the executable's own (`ovn-overlay`:
    /// layer2, `localnet`: localnet; `ovn-k8s-cni-overlay`: none, the key is required).
    pub fn from_call(call: &Call, default_topology: Option<Topology>) -> Result<OvnConf, Error> {
        let raw_obj = call.conf.raw.as_object().cloned().unwrap_or_default();
        refuse_set_keys(&raw_obj)?;
        let raw: Raw = call.conf.typed()?;
        let raw = Raw {
            role: raw.role.filter(|r| !r.is_empty()),
            vlan_id: raw.vlan_id.filter(|&v| v != 0),
            physical_network_name: raw.physical_network_name.filter(|p| !p.is_empty()),
            mtu: raw.mtu.filter(|&m| m != 0),
            ..raw
        };
        let (node_path, node) = node_settings()?;
        let topology = match raw.topology.as_deref() {
            Some("layer2") => Topology::Layer2,
            Some("localnet") => Topology::Localnet,
            Some(other) => {
                return Err(Error::invalid_config(format!(
                    "topology: {other:?} is not supported: use \"layer2\" or \"localnet\""
                )))
            }
            None => default_topology.ok_or_else(|| {
                Error::invalid_config(
                    "topology is required for type ovn-k8s-cni-overlay: \"layer2\" or \"localnet\"",
                )
            })?,
        };
        if let (Some(d), Some(_)) = (default_topology, raw.topology.as_deref()) {
            if d != topology && call.conf.plugin_type != "ovn-k8s-cni-overlay" {
                return Err(Error::invalid_config(format!(
                    "topology: {:?} does not match type {:?} (which is {:?})",
                    topology.as_str(),
                    call.conf.plugin_type,
                    d.as_str()
                )));
            }
        }
        if let Some(role) = raw.role.as_deref() {
            if role != "secondary" {
                return Err(Error::invalid_config(format!(
                    "role: {role:?} is not supported: only \"secondary\" networks are"
                )));
            }
        }
        let ipam = ipam_type(&raw_obj, topology, raw.subnets.as_deref().unwrap_or(""))?;
        if topology == Topology::Layer2 {
            for (key, present) in [
                ("vlanID", raw.vlan_id.is_some()),
                ("physicalNetworkName", raw.physical_network_name.is_some()),
            ] {
                if present {
                    return Err(Error::invalid_config(format!(
                        "{key}: only a localnet topology has it, this network is layer2"
                    )));
                }
            }
        }
        let network = call.conf.name.clone();
        let nad = match raw.net_attach_def_name {
            Some(n) => {
                let ok = n.split_once('/').is_some_and(|(ns, name)| {
                    !ns.is_empty() && !name.is_empty() && !name.contains('/')
                });
                if !ok {
                    return Err(Error::invalid_config(format!(
                        "netAttachDefName: {n:?} is not \"<namespace>/<name>\""
                    )));
                }
                n
            }
            None => format!("default/{network}"),
        };
        let subnets = parse_cidrs("subnets", raw.subnets.as_deref().unwrap_or(""))?;
        let subnets: Vec<IpNetwork> = subnets.into_iter().map(normalized).collect();
        let mut families = [0, 0];
        for s in &subnets {
            families[usize::from(s.is_ipv6())] += 1;
            let usable = match s {
                IpNetwork::V4(n) => n.prefix() <= 30,
                IpNetwork::V6(n) => n.prefix() <= 126,
            };
            if !usable {
                return Err(Error::invalid_config(format!(
                    "subnets: {s} is too small to hand out addresses"
                )));
            }
        }
        if families.iter().any(|&n| n > 1) {
            return Err(Error::invalid_config(format!(
                "subnets: {:?} has more than one subnet of a family: one IPv4 and one IPv6 at most",
                raw.subnets.unwrap_or_default()
            )));
        }
        let exclude = parse_cidrs(
            "excludeSubnets",
            raw.exclude_subnets.as_deref().unwrap_or(""),
        )?;
        for e in &exclude {
            if !subnets.iter().any(|s| s.contains(e.network())) {
                return Err(Error::invalid_config(format!(
                    "excludeSubnets: {e} is not inside any of subnets {:?}",
                    subnets.iter().map(ToString::to_string).collect::<Vec<_>>()
                )));
            }
        }
        let mtu = match raw.mtu {
            None => node.mtu.unwrap_or(DEFAULT_MTU),
            Some(m) if (68..=65535).contains(&m) => m as u32,
            Some(m) => {
                return Err(Error::invalid_config(format!(
                    "mtu: {m} is out of range 68..65535"
                )))
            }
        };
        if mtu < 1280 && subnets.iter().any(IpNetwork::is_ipv6) {
            return Err(Error::invalid_config(format!(
                "mtu: {mtu} is below 1280, the IPv6 minimum, and subnets has an IPv6 subnet"
            )));
        }
        let vlan = match raw.vlan_id {
            None | Some(0) => None,
            Some(v) if (1..=4094).contains(&v) => Some(v as u16),
            Some(v) => {
                return Err(Error::invalid_config(format!(
                    "vlanID: {v} is out of range 1..4094"
                )))
            }
        };
        let physical_network_explicit = raw.physical_network_name.is_some();
        let physical_network = raw
            .physical_network_name
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| network.clone());
        if let Some(asked) = raw.node_config.as_deref().filter(|p| !p.is_empty()) {
            if Path::new(asked) != node_path {
                return Err(Error::invalid_config(format!(
                    "nodeConfig {asked:?} is not this node's settings file ({}, or the file \
                     ${NODE_CONFIG_ENV} names): the node says where its settings are",
                    node_path.display()
                )));
            }
        }
        let ready = raw.ready_timeout.or(node.ready_timeout);
        let ready_timeout = match ready {
            None => DEFAULT_READY_TIMEOUT,
            Some(s) if s > 0.0 && s <= 600.0 => Duration::from_secs_f64(s),
            Some(s) => {
                return Err(Error::invalid_config(format!(
                    "readyTimeout: {s} is out of range (0, 600] seconds"
                )))
            }
        };
        let tls = TlsFiles::from_node(&node, &node_path)?;
        let node_nbdb = node.nbdb.unwrap_or_else(|| DEFAULT_NBDB.to_string());
        let node_ovsdb = node.ovsdb.unwrap_or_else(|| DEFAULT_OVSDB.to_string());
        governed("nbdb", raw.nbdb.as_deref(), &node_nbdb, &node_path)?;
        governed("ovsdb", raw.ovsdb.as_deref(), &node_ovsdb, &node_path)?;
        let (nbdb, ovsdb) = (node_nbdb, node_ovsdb);
        check_endpoints(&nbdb, &ovsdb, tls.is_some(), &node_path)?;
        let mac = requested_mac(call)?;
        let claim = match call.conf.args_cni("ipam-claim-reference") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() && !s.contains(['/', ' ']) => Some(s.clone()),
            Some(v) => {
                return Err(Error::invalid_config(format!(
                    "args.cni.ipam-claim-reference: {} is not a claim name (no '/' or spaces)",
                    key_value(v)
                )))
            }
        };
        Ok(OvnConf {
            network,
            nad,
            topology,
            subnets,
            exclude,
            mtu,
            allow_persistent_ips: raw.allow_persistent_ips,
            vlan,
            physical_network,
            physical_network_explicit,
            nbdb,
            ovsdb,
            tls,
            ready_timeout,
            mac,
            claim,
            ipam,
        })
    }

    /// What DEL and GC read: the configuration as ADD reads it when it is valid; otherwise only
    /// what finds what an attachment left (the network's name and topology, the NAD name, the
    /// databases, the persistent key), with defaults for the rest, and the fault logged. A fault
    /// only ADD cares about (a bad MAC, `mtu`, `subnets`, `role`, a refused key) must not fail
    /// the teardown and strand the pod; what cannot be read in the node's own settings still
    /// fails it, since then nothing can be found.
    pub fn for_teardown(call: &Call, default_topology: Option<Topology>) -> Result<OvnConf, Error> {
        let e = match OvnConf::from_call(call, default_topology) {
            Ok(conf) => return Ok(conf),
            Err(e) => e,
        };
        cni::log_warn!(
            "{}: {} (only ADD needs that: tearing down with what can be read)",
            call.env.command.as_str(),
            e.msg
        );
        // Key by key: one key of a wrong type must not hide the others.
        let obj = &call.conf.raw;
        let get = |k: &str| {
            obj.get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let raw = Raw {
            topology: get("topology"),
            net_attach_def_name: get("netAttachDefName"),
            physical_network_name: get("physicalNetworkName"),
            allow_persistent_ips: obj.get("allowPersistentIPs") == Some(&Value::Bool(true)),
            ..Raw::default()
        };
        let text = |v: Option<String>| v.filter(|s| !s.is_empty());
        let topology = match raw.topology.as_deref() {
            Some("layer2") => Topology::Layer2,
            Some("localnet") => Topology::Localnet,
            _ => default_topology.unwrap_or(Topology::Layer2),
        };
        let network = call.conf.name.clone();
        let nad = text(raw.net_attach_def_name)
            .filter(|n| {
                n.split_once('/')
                    .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty())
            })
            .unwrap_or_else(|| format!("default/{network}"));
        // Only the node's databases: a configuration naming others was refused at ADD, and
        // what it names is never dialled.
        let (node_path, node) = node_settings()?;
        let tls = TlsFiles::from_node(&node, &node_path)?;
        let nbdb = node.nbdb.unwrap_or_else(|| DEFAULT_NBDB.to_string());
        let ovsdb = node.ovsdb.unwrap_or_else(|| DEFAULT_OVSDB.to_string());
        check_endpoints(&nbdb, &ovsdb, tls.is_some(), &node_path)?;
        let physical_network = text(raw.physical_network_name).unwrap_or_else(|| network.clone());
        Ok(OvnConf {
            network,
            nad,
            topology,
            subnets: Vec::new(),
            exclude: Vec::new(),
            mtu: DEFAULT_MTU,
            allow_persistent_ips: raw.allow_persistent_ips,
            vlan: None,
            physical_network,
            physical_network_explicit: false,
            nbdb,
            ovsdb,
            tls,
            ready_timeout: DEFAULT_READY_TIMEOUT,
            mac: requested_mac(call).ok().flatten(),
            claim: match call.conf.args_cni("ipam-claim-reference") {
                Some(Value::String(s)) if !s.is_empty() && !s.contains(['/', ' ']) => {
                    Some(s.clone())
                }
                _ => None,
            },
            ipam: call
                .conf
                .ipam_type()
                .filter(|t| !t.is_empty())
                .map(str::to_string),
        })
    }

    /// The persistent identity of the attachment, when the network keeps IPs: the claim, else
    /// the requested MAC (KubeMacPool gives a VM the same MAC for its whole life).
    pub fn persistent_key(&self) -> Option<String> {
        if !self.allow_persistent_ips {
            return None;
        }
        self.claim.clone().or_else(|| {
            self.mac
                .map(|m| format!("mac-{}", m.to_string().replace(':', "")))
        })
    }
}

fn check_endpoints(nbdb: &str, ovsdb: &str, tls: bool, node_file: &Path) -> Result<(), Error> {
    for (key, v) in [("nbdb", nbdb), ("ovsdb", ovsdb)] {
        let mut ssl = false;
        let ok = v.split(',').all(|e| {
            let e = e.trim();
            let is_ssl = e.strip_prefix("ssl:").is_some_and(|p| p.contains(':'));
            ssl |= is_ssl;
            e.strip_prefix("unix:").is_some_and(|p| !p.is_empty())
                || e.strip_prefix("tcp:").is_some_and(|p| p.contains(':'))
                || is_ssl
        });
        if !ok {
            return Err(Error::invalid_config(format!(
                "{key}: {v:?} is not a list of unix:PATH, tcp:IP:PORT or ssl:IP:PORT endpoints"
            )));
        }
        if ssl && !tls {
            return Err(Error::invalid_config(format!(
                "{key}: {v:?} has ssl: endpoints, which need sslCaCert, sslCertificate and \
                 sslPrivateKey in the node's settings {}",
                node_file.display()
            )));
        }
    }
    Ok(())
}

/// A database endpoint the configuration names: the node's, or refused. The node says which
/// databases its plugins talk to (a NAD author choosing them would make the node dial anywhere
/// and report what answered).
fn governed(key: &str, asked: Option<&str>, node: &str, node_path: &Path) -> Result<(), Error> {
    let norm = |v: &str| v.split(',').map(str::trim).collect::<Vec<_>>().join(",");
    match asked.filter(|a| !a.is_empty()) {
        Some(a) if norm(a) != norm(node) => Err(Error::invalid_config(format!(
            "{key} {} differs from this node's ({key} in {}: {node}): the node says which \
             databases its plugins use",
            cni::error::quote_value(&Value::String(a.to_string())),
            node_path.display()
        ))),
        _ => Ok(()),
    }
}

/// The node's settings file in effect (`$MULTIHOME_OVN_NODE_CONFIG`, which must exist, else
/// [`NODE_CONFIG_FILE`] in the settings directory, which may be missing) and what it says, read as every node settings
/// file is ([`cni::node::read_settings`]: root's alone, a bounded regular file).
fn node_settings() -> Result<(PathBuf, NodeFile), Error> {
    node_settings_from(std::env::var(NODE_CONFIG_ENV).ok())
}

/// [`node_settings`] with the environment's value given.
fn node_settings_from(from_env: Option<String>) -> Result<(PathBuf, NodeFile), Error> {
    let from_env = from_env.filter(|s| !s.is_empty());
    let required = from_env.is_some();
    let path = from_env.map_or_else(
        || cni::node::settings_dir().join(NODE_CONFIG_FILE),
        PathBuf::from,
    );
    let map = match cni::node::read_settings(&path)? {
        Some(map) => map,
        None if !required => return Ok((path, NodeFile::default())),
        None => {
            return Err(Error::invalid_config(format!(
                "{NODE_CONFIG_ENV} names {}, which does not exist",
                path.display()
            )))
        }
    };
    let node = serde_json::from_value(Value::Object(map)).map_err(|e| {
        Error::invalid_config(format!("the node's settings {}: {e}", path.display()))
    })?;
    Ok((path, node))
}

/// The MAC from CNI_ARGS MAC, args.cni.mac and runtimeConfig.mac (later wins), as the bridge.
fn requested_mac(call: &Call) -> Result<Option<Mac>, Error> {
    let mut found: Option<(String, &str)> = None;
    if let Some(m) = call.env.args.get("MAC") {
        found = Some((m.to_string(), "CNI_ARGS MAC"));
    }
    if let Some(Value::String(m)) = call.conf.args_cni("mac") {
        found = Some((m.clone(), "args.cni.mac"));
    }
    if let Some(Value::String(m)) = call.conf.runtime("mac") {
        found = Some((m.clone(), "runtimeConfig.mac"));
    }
    let Some((text, key)) = found else {
        return Ok(None);
    };
    let mac: Mac = text
        .parse()
        .map_err(|_| Error::invalid_config(format!("{key}: {text:?} is not a MAC address")))?;
    if mac.is_multicast() || mac.is_zero() {
        return Err(Error::invalid_config(format!(
            "{key}: {text:?} is not a unicast MAC address"
        )));
    }
    Ok(Some(mac))
}

/// The attachment's identity in external_ids and port names.
#[derive(Debug, Clone)]
pub struct Who {
    pub container_id: String,
    pub ifname: String,
    /// K8S_POD_NAMESPACE / K8S_POD_NAME, when the runtime passed them.
    pub pod: Option<(String, String)>,
    /// K8S_POD_UID.
    pub pod_uid: Option<String>,
}

impl Who {
    /// From CNI_CONTAINERID, CNI_IFNAME and CNI_ARGS.
    pub fn from_call(call: &Call) -> Who {
        let ns = call
            .env
            .args
            .get("K8S_POD_NAMESPACE")
            .filter(|s| !s.is_empty());
        let name = call.env.args.get("K8S_POD_NAME").filter(|s| !s.is_empty());
        Who {
            container_id: call.env.container_id.clone(),
            ifname: call.env.ifname.clone(),
            pod: ns.zip(name).map(|(a, b)| (a.to_string(), b.to_string())),
            pod_uid: call
                .env
                .args
                .get("K8S_POD_UID")
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        }
    }

    /// "<container id> <ifname>": the value stored per chassis on the port.
    pub fn token(&self) -> String {
        format!("{} {}", self.container_id, self.ifname)
    }
}

/// Helper: string map from pairs.
pub fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
#[path = "conf_tests.rs"]
mod tests;
