//! Results of every version: one model (the 1.1.0 superset) parsed from and printed in the exact
//! JSON shapes libcni produces and consumes, which makes every conversion a parse and a print.
//!
//! - 1.0.0/1.1.0: `interfaces`, `ips` (no `version`), `routes`, `dns`; interface `mtu`,
//!   `socketPath`, `pciID` and route `mtu`, `advmss`, `priority`, `table`, `scope` only in 1.1.0.
//! - 0.3.0/0.3.1/0.4.0: as 1.0.0 plus `ips[].version`, which on the way out comes from the family.
//! - 0.1.0/0.2.0: `ip4`, `ip6` (first address of each family), routes under the family that has an
//!   address; a result without any address cannot be expressed (libcni: "cannot convert").
//!
//! `dns` is always printed, even empty, as libcni's Go structs do.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Map, Value};

use crate::error::Error;
use crate::version::Version;

/// A result in the model every version converts through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniResult {
    /// Interfaces created or used (empty in an IPAM plugin's abbreviated result).
    pub interfaces: Vec<Interface>,
    /// Addresses.
    pub ips: Vec<IpConfig>,
    /// Routes.
    pub routes: Vec<Route>,
    /// DNS settings.
    pub dns: Dns,
}

/// An interface of a result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Interface {
    /// Name.
    pub name: String,
    /// Hardware address, if any.
    pub mac: Option<String>,
    /// MTU (1.1.0).
    pub mtu: Option<u32>,
    /// Network namespace path for interfaces inside the container.
    pub sandbox: Option<String>,
    /// vhost-user socket path (1.1.0).
    pub socket_path: Option<String>,
    /// PCI ID (1.1.0).
    pub pci_id: Option<String>,
}

/// An address of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    /// Index into `interfaces`, absent in IPAM results.
    pub interface: Option<usize>,
    /// Address with its prefix length (host bits kept).
    pub address: IpNetwork,
    /// Default gateway of this subnet, if any.
    pub gateway: Option<IpAddr>,
}

/// A route of a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination.
    pub dst: IpNetwork,
    /// Next hop; absent means the interface's default gateway.
    pub gw: Option<IpAddr>,
    /// MTU (1.1.0).
    pub mtu: Option<u32>,
    /// Advertised MSS (1.1.0).
    pub advmss: Option<u32>,
    /// Priority / metric (1.1.0).
    pub priority: Option<u32>,
    /// Routing table (1.1.0).
    pub table: Option<u32>,
    /// Scope (1.1.0).
    pub scope: Option<u8>,
}

impl Route {
    /// A plain route to `dst` via `gw`.
    pub fn new(dst: IpNetwork, gw: Option<IpAddr>) -> Route {
        Route {
            dst,
            gw,
            mtu: None,
            advmss: None,
            priority: None,
            table: None,
            scope: None,
        }
    }
}

/// DNS settings, shared by config and result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dns {
    /// Name servers.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "nullable"
    )]
    pub nameservers: Vec<String>,
    /// Local domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// Search domains.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "nullable"
    )]
    pub search: Vec<String>,
    /// resolv.conf options.
    #[serde(
        default,
        skip_serializing_if = "Vec::is_empty",
        deserialize_with = "nullable"
    )]
    pub options: Vec<String>,
}

impl Dns {
    /// No setting at all.
    pub fn is_empty(&self) -> bool {
        *self == Dns::default()
    }
}

/// Go's JSON decoder takes `null` for a slice; so do we.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Deserialize)]
struct ModernWire {
    #[serde(default, deserialize_with = "nullable")]
    interfaces: Vec<InterfaceWire>,
    #[serde(default, deserialize_with = "nullable")]
    ips: Vec<IpWire>,
    #[serde(default, deserialize_with = "nullable")]
    routes: Vec<RouteWire>,
    #[serde(default, deserialize_with = "nullable")]
    dns: Dns,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InterfaceWire {
    name: String,
    #[serde(default)]
    mac: Option<String>,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    sandbox: Option<String>,
    #[serde(default)]
    socket_path: Option<String>,
    #[serde(default, rename = "pciID")]
    pci_id: Option<String>,
}

#[derive(Deserialize)]
struct IpWire {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    interface: Option<i64>,
    address: String,
    #[serde(default)]
    gateway: Option<String>,
}

#[derive(Deserialize)]
struct RouteWire {
    dst: String,
    #[serde(default)]
    gw: Option<String>,
    #[serde(default)]
    mtu: Option<u32>,
    #[serde(default)]
    advmss: Option<u32>,
    #[serde(default)]
    priority: Option<u32>,
    #[serde(default)]
    table: Option<u32>,
    #[serde(default)]
    scope: Option<u8>,
}

#[derive(Deserialize)]
struct LegacyWire {
    #[serde(default)]
    ip4: Option<LegacyIpWire>,
    #[serde(default)]
    ip6: Option<LegacyIpWire>,
    #[serde(default, deserialize_with = "nullable")]
    dns: Dns,
}

#[derive(Deserialize)]
struct LegacyIpWire {
    ip: String,
    #[serde(default)]
    gateway: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    routes: Vec<RouteWire>,
}

fn decode_err(what: &str, value: &str, e: impl std::fmt::Display) -> Error {
    Error::decoding(format!("result: invalid {what} {value:?}: {e}"))
}

/// Parses `address/prefix` as Go's `net.ParseCIDR` does: the prefix is required and host bits are
/// kept (`10.1.0.5/24`). `ipnetwork` alone would read a bare address as a host route.
pub fn parse_cidr(s: &str) -> Result<IpNetwork, String> {
    if !s.contains('/') {
        return Err("missing /prefix".to_string());
    }
    s.parse::<IpNetwork>().map_err(|e| e.to_string())
}

fn parse_cidr_named(what: &str, s: &str) -> Result<IpNetwork, Error> {
    parse_cidr(s).map_err(|e| decode_err(what, s, e))
}

fn parse_ip(what: &str, s: Option<String>) -> Result<Option<IpAddr>, Error> {
    match s.as_deref() {
        None | Some("") => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|e| decode_err(what, v, e)),
    }
}

impl RouteWire {
    fn into_route(self) -> Result<Route, Error> {
        Ok(Route {
            dst: parse_cidr_named("route dst", &self.dst)?,
            gw: parse_ip("route gw", self.gw)?,
            mtu: self.mtu,
            advmss: self.advmss,
            priority: self.priority,
            table: self.table,
            scope: self.scope,
        })
    }
}

impl IpWire {
    fn into_ip(self) -> Result<IpConfig, Error> {
        let address = parse_cidr_named("ips[].address", &self.address)?;
        if let Some(v) = self.version.as_deref() {
            let family = if address.is_ipv4() { "4" } else { "6" };
            if v != family {
                return Err(decode_err(
                    "ips[].version",
                    v,
                    format!("{} is IPv{family}", self.address),
                ));
            }
        }
        let interface = match self.interface {
            None => None,
            Some(i) => Some(
                usize::try_from(i).map_err(|e| decode_err("ips[].interface", &i.to_string(), e))?,
            ),
        };
        Ok(IpConfig {
            interface,
            address,
            gateway: parse_ip("ips[].gateway", self.gateway)?,
        })
    }
}

fn from_wire<T: for<'de> Deserialize<'de>>(value: &Value) -> Result<T, Error> {
    T::deserialize(value).map_err(|e| Error::decoding(format!("result: {e}")))
}

impl CniResult {
    /// Parses a result in the version it declares (`cniVersion`), or `fallback` when it declares
    /// none (a prevResult written without one).
    pub fn parse(value: &Value, fallback: Version) -> Result<(Version, CniResult), Error> {
        let version = match value.get("cniVersion").and_then(Value::as_str) {
            Some(s) if !s.is_empty() => s.parse()?,
            _ => fallback,
        };
        Ok((version, Self::parse_as(value, version)?))
    }

    /// Parses a result in the shape of `version`.
    pub fn parse_as(value: &Value, version: Version) -> Result<CniResult, Error> {
        if !value.is_object() {
            return Err(Error::decoding("result: expected a JSON object"));
        }
        if version.is_legacy() {
            return Self::from_legacy(from_wire(value)?);
        }
        let wire: ModernWire = from_wire(value)?;
        Ok(CniResult {
            interfaces: wire
                .interfaces
                .into_iter()
                .map(|i| Interface {
                    name: i.name,
                    mac: i.mac.filter(|s| !s.is_empty()),
                    mtu: i.mtu.filter(|m| *m != 0),
                    sandbox: i.sandbox.filter(|s| !s.is_empty()),
                    socket_path: i.socket_path.filter(|s| !s.is_empty()),
                    pci_id: i.pci_id.filter(|s| !s.is_empty()),
                })
                .collect(),
            ips: wire
                .ips
                .into_iter()
                .map(IpWire::into_ip)
                .collect::<Result<_, _>>()?,
            routes: wire
                .routes
                .into_iter()
                .map(RouteWire::into_route)
                .collect::<Result<_, _>>()?,
            dns: wire.dns,
        })
    }

    fn from_legacy(wire: LegacyWire) -> Result<CniResult, Error> {
        let mut result = CniResult {
            dns: wire.dns,
            ..CniResult::default()
        };
        for (family, ip) in [("ip4", wire.ip4), ("ip6", wire.ip6)] {
            let Some(ip) = ip else { continue };
            result.ips.push(IpConfig {
                interface: None,
                address: parse_cidr_named(&format!("{family}.ip"), &ip.ip)?,
                gateway: parse_ip(&format!("{family}.gateway"), ip.gateway)?,
            });
            for r in ip.routes {
                result.routes.push(r.into_route()?);
            }
        }
        Ok(result)
    }

    /// The result as JSON in `version`; fails only for 0.1.0/0.2.0 without any address.
    pub fn to_json(&self, version: Version) -> Result<Value, Error> {
        if version.is_legacy() {
            return self.to_legacy(version);
        }
        let mut out = Map::new();
        out.insert("cniVersion".into(), json!(version.as_str()));
        if !self.interfaces.is_empty() {
            let list = self
                .interfaces
                .iter()
                .map(|i| interface_json(i, version))
                .collect();
            out.insert("interfaces".into(), Value::Array(list));
        }
        if !self.ips.is_empty() {
            let list = self.ips.iter().map(|ip| ip_json(ip, version)).collect();
            out.insert("ips".into(), Value::Array(list));
        }
        if !self.routes.is_empty() {
            let list = self.routes.iter().map(|r| route_json(r, version)).collect();
            out.insert("routes".into(), Value::Array(list));
        }
        out.insert("dns".into(), dns_json(&self.dns));
        Ok(Value::Object(out))
    }

    fn to_legacy(&self, version: Version) -> Result<Value, Error> {
        let first = |v4: bool| self.ips.iter().find(|ip| ip.address.is_ipv4() == v4);
        let (ip4, ip6) = (first(true), first(false));
        if ip4.is_none() && ip6.is_none() {
            return Err(Error::incompatible_version(format!(
                "cannot convert: no valid IP addresses: a result without addresses cannot be \
                 expressed in cniVersion {version}; use 0.3.0 or later"
            )));
        }
        let mut out = Map::new();
        out.insert("cniVersion".into(), json!(version.as_str()));
        for (key, ip, v4) in [("ip4", ip4, true), ("ip6", ip6, false)] {
            let Some(ip) = ip else { continue };
            let mut entry = Map::new();
            entry.insert("ip".into(), json!(ip.address.to_string()));
            if let Some(gw) = ip.gateway {
                entry.insert("gateway".into(), json!(gw.to_string()));
            }
            let routes: Vec<Value> = self
                .routes
                .iter()
                .filter(|r| r.dst.is_ipv4() == v4)
                .map(|r| route_json(r, version))
                .collect();
            if !routes.is_empty() {
                entry.insert("routes".into(), Value::Array(routes));
            }
            out.insert(key.into(), Value::Object(entry));
        }
        out.insert("dns".into(), dns_json(&self.dns));
        Ok(Value::Object(out))
    }

    /// Converts a result given as JSON in any version to JSON in `to` (libcni's `GetAsVersion`).
    pub fn convert(value: &Value, fallback: Version, to: Version) -> Result<Value, Error> {
        Self::parse(value, fallback)?.1.to_json(to)
    }
}

/// Whether a result with `v4` IPv4 and `v6` IPv6 addresses can be printed in `version`
/// without losing one: 0.1.0 and 0.2.0 carry one address per family (`ip4`, `ip6`) and need at
/// least one. Plugins ask this before they change anything: an address reserved and left out
/// of the result is a leak, and a veth made for a result that cannot be printed is one too.
pub fn expressible(version: Version, v4: usize, v6: usize) -> Result<(), Error> {
    if !version.is_legacy() {
        return Ok(());
    }
    if v4 == 0 && v6 == 0 {
        return Err(Error::incompatible_version(format!(
            "cniVersion {version}: a result without addresses cannot be expressed in it \
             (its results carry ip4 and ip6 only); use 0.3.0 or later"
        )));
    }
    if v4 > 1 || v6 > 1 {
        return Err(Error::incompatible_version(format!(
            "cniVersion {version} carries one address per family and this configuration yields \
             {v4} IPv4 and {v6} IPv6 addresses; use 0.3.0 or later"
        )));
    }
    Ok(())
}

fn interface_json(i: &Interface, version: Version) -> Value {
    let v11 = version >= Version::V1_1_0;
    let mut m = Map::new();
    m.insert("name".into(), json!(i.name));
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.into(), v);
        }
    };
    put("mac", i.mac.as_ref().map(|s| json!(s)));
    put("mtu", i.mtu.filter(|_| v11).map(|v| json!(v)));
    put("sandbox", i.sandbox.as_ref().map(|s| json!(s)));
    put(
        "socketPath",
        i.socket_path.as_ref().filter(|_| v11).map(|s| json!(s)),
    );
    put("pciID", i.pci_id.as_ref().filter(|_| v11).map(|s| json!(s)));
    Value::Object(m)
}

fn ip_json(ip: &IpConfig, version: Version) -> Value {
    let mut m = Map::new();
    if version.has_ip_version() {
        m.insert(
            "version".into(),
            json!(if ip.address.is_ipv4() { "4" } else { "6" }),
        );
    }
    if let Some(i) = ip.interface {
        m.insert("interface".into(), json!(i));
    }
    m.insert("address".into(), json!(ip.address.to_string()));
    if let Some(gw) = ip.gateway {
        m.insert("gateway".into(), json!(gw.to_string()));
    }
    Value::Object(m)
}

fn route_json(r: &Route, version: Version) -> Value {
    let mut m = Map::new();
    m.insert("dst".into(), json!(r.dst.to_string()));
    if let Some(gw) = r.gw {
        m.insert("gw".into(), json!(gw.to_string()));
    }
    if version >= Version::V1_1_0 {
        let extras = [
            ("mtu", r.mtu),
            ("advmss", r.advmss),
            ("priority", r.priority),
            ("table", r.table),
            ("scope", r.scope.map(u32::from)),
        ];
        for (k, v) in extras {
            if let Some(v) = v {
                m.insert(k.into(), json!(v));
            }
        }
    }
    Value::Object(m)
}

fn dns_json(dns: &Dns) -> Value {
    serde_json::to_value(dns).unwrap_or_else(|_| json!({}))
}

#[cfg(test)]
#[path = "result_tests.rs"]
mod tests;
