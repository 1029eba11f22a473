//! `static` IPAM, compatible with the reference plugin's configuration: `ipam.addresses` (with
//! gateways), `ipam.routes`, `ipam.dns`; addresses from CNI_ARGS `IP=` (appended, comma-separated)
//! with `GATEWAY=` applied to the addresses that contain it; `args.cni.ips` replacing all of those;
//! `runtimeConfig.ips` (capability `ips`) replacing everything. That is the reference's precedence.

use std::net::IpAddr;

use ipnetwork::IpNetwork;
use serde::Deserialize;
use serde_json::Value;

use cni::{code, Call, CniArgs, CniResult, Dns, Error, IpConfig, NetConf, Plugin, Route, Version};

/// The `static` IPAM plugin.
#[derive(Debug, Clone, Copy)]
pub struct StaticIpam;

#[derive(Debug, Default, Deserialize)]
struct StaticConf {
    #[serde(default)]
    addresses: Vec<AddressEntry>,
    #[serde(default)]
    routes: Vec<RouteEntry>,
    #[serde(default)]
    dns: Option<Dns>,
}

/// One `ipam.addresses` entry, as `static` and `whereabouts` both accept it.
#[derive(Debug, Clone, Deserialize)]
pub struct AddressEntry {
    address: String,
    #[serde(default)]
    gateway: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RouteEntry {
    dst: String,
    #[serde(default)]
    gw: Option<String>,
}

/// Parses one address entry: a CIDR whose host bits are kept (`10.1.0.5/24`). Code 7 naming
/// where the entry came from.
fn parse_address(source: &str, value: &str) -> Result<IpNetwork, Error> {
    cni::result::parse_cidr(value.trim()).map_err(|e| {
        Error::invalid_config(format!(
            "{source} {value:?} is not an address in CIDR form (like 10.1.0.5/24): {e}"
        ))
    })
}

fn parse_ip(source: &str, value: &str) -> Result<IpAddr, Error> {
    value
        .trim()
        .parse()
        .map_err(|e| Error::invalid_config(format!("{source} {value:?} is not an IP address: {e}")))
}

/// A list of CIDR strings from `args.cni.ips` or `runtimeConfig.ips`.
fn address_list(source: &str, value: &Value) -> Result<Vec<IpConfig>, Error> {
    let items = value.as_array().ok_or_else(|| {
        Error::invalid_config(format!(
            "{source} must be a list of CIDR strings, got {value}"
        ))
    })?;
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = format!("{source}[{i}]");
            let s = item.as_str().ok_or_else(|| {
                Error::invalid_config(format!("{at} must be a CIDR string, got {item}"))
            })?;
            Ok(IpConfig {
                interface: None,
                address: parse_address(&at, s)?,
                gateway: None,
            })
        })
        .collect()
}

/// `ipam.addresses` entries parsed; errors name `ipam.addresses[i].address` / `.gateway`.
pub fn config_addresses(entries: &[AddressEntry]) -> Result<Vec<IpConfig>, Error> {
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let at = format!("ipam.addresses[{i}]");
            let address = parse_address(&format!("{at}.address"), &entry.address)?;
            let gateway = match entry.gateway.as_deref().filter(|g| !g.is_empty()) {
                Some(g) => Some(parse_ip(&format!("{at}.gateway"), g)?),
                None => None,
            };
            Ok(IpConfig {
                interface: None,
                address,
                gateway,
            })
        })
        .collect()
}

/// Appends CNI_ARGS `IP=` addresses and applies `GATEWAY=` to every address containing it.
pub fn apply_cni_args(addresses: &mut Vec<IpConfig>, args: &CniArgs) -> Result<(), Error> {
    apply_cni_args_with(addresses, args, |_| None)
}

/// [`apply_cni_args`], where a bare address in `IP` (podman's `--ip` passes one; host-local
/// accepts it) gets the prefix length `prefix_of` gives it (the range it lies in).
pub fn apply_cni_args_with(
    addresses: &mut Vec<IpConfig>,
    args: &CniArgs,
    prefix_of: impl Fn(IpAddr) -> Option<u8>,
) -> Result<(), Error> {
    if let Some(ips) = args.get("IP").filter(|s| !s.is_empty()) {
        for item in ips.split(',') {
            let bare = item.trim().parse::<IpAddr>().ok();
            let address = match bare.and_then(|ip| Some((ip, prefix_of(ip)?))) {
                Some((ip, prefix)) => IpNetwork::new(ip, prefix).map_err(|e| {
                    Error::invalid_config(format!("CNI_ARGS IP entry {item:?}: {e}"))
                })?,
                None => parse_address("CNI_ARGS IP entry", item)?,
            };
            addresses.push(IpConfig {
                interface: None,
                address,
                gateway: None,
            });
        }
    }
    if let Some(gws) = args.get("GATEWAY").filter(|s| !s.is_empty()) {
        for item in gws.split(',') {
            let gw = parse_ip("CNI_ARGS GATEWAY entry", item)?;
            let mut used = false;
            for a in addresses.iter_mut().filter(|a| a.address.contains(gw)) {
                a.gateway = Some(gw);
                used = true;
            }
            if !used {
                cni::log_warn!("CNI_ARGS GATEWAY {gw} is in none of the addresses; ignored");
            }
        }
    }
    Ok(())
}

fn routes(conf: &StaticConf) -> Result<Vec<Route>, Error> {
    conf.routes
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let at = format!("ipam.routes[{i}]");
            let dst = parse_address(&format!("{at}.dst"), &r.dst)?;
            let gw = match r.gw.as_deref().filter(|g| !g.is_empty()) {
                Some(g) => Some(parse_ip(&format!("{at}.gw"), g)?),
                None => None,
            };
            Ok(Route::new(dst, gw))
        })
        .collect()
}

/// The addresses, routes and DNS this call gets; nothing is reserved anywhere.
pub fn resolve(conf: &NetConf, args: &CniArgs) -> Result<CniResult, Error> {
    let sconf: StaticConf = conf.ipam_typed()?;
    let mut ips = config_addresses(&sconf.addresses)?;
    apply_cni_args(&mut ips, args)?;
    if let Some(list) = conf.args_cni("ips").filter(|v| !is_empty_list(v)) {
        ips = address_list("args.cni.ips", list)?;
    }
    if let Some(list) = conf.runtime("ips").filter(|v| !is_empty_list(v)) {
        ips = address_list("runtimeConfig.ips", list)?;
    }
    check_family_limit(&ips, conf.version)?;
    Ok(CniResult {
        interfaces: Vec::new(),
        ips,
        routes: routes(&sconf)?,
        dns: sconf.dns.unwrap_or_default(),
    })
}

fn is_empty_list(v: &Value) -> bool {
    v.as_array().is_some_and(Vec::is_empty)
}

/// 0.1.0 and 0.2.0 results carry one address per family.
fn check_family_limit(ips: &[IpConfig], version: Version) -> Result<(), Error> {
    let v4 = ips.iter().filter(|ip| ip.address.is_ipv4()).count();
    cni::result::expressible(version, v4, ips.len() - v4)
}

/// CHECK: every address this configuration yields is in the prevResult, with its gateway.
pub fn check(conf: &NetConf, args: &CniArgs) -> Result<(), Error> {
    let wanted = resolve(conf, args)?;
    let prev = conf.prev_result()?.ok_or_else(|| {
        Error::invalid_config("CHECK needs prevResult: the runtime did not pass the ADD result")
    })?;
    for want in &wanted.ips {
        let found = prev
            .ips
            .iter()
            .find(|ip| ip.address.ip() == want.address.ip());
        match found {
            None => {
                return Err(Error::new(
                    code::CHECK_FAILED,
                    format!("static: address {} is not in the prevResult", want.address),
                ))
            }
            Some(ip) if want.gateway.is_some() && ip.gateway != want.gateway => {
                return Err(Error::new(
                    code::CHECK_FAILED,
                    format!(
                        "static: address {} has gateway {:?} in the prevResult, configured {:?}",
                        want.address, ip.gateway, want.gateway
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

impl Plugin for StaticIpam {
    fn about(&self) -> &str {
        "multihome static IPAM: fixed addresses from config, CNI_ARGS, args or runtimeConfig"
    }
    fn known_args(&self) -> &[&str] {
        &["IP", "GATEWAY"]
    }
    fn is_ipam(&self) -> bool {
        true
    }
    fn add(&self, call: &Call) -> Result<CniResult, Error> {
        resolve(&call.conf, &call.env.args)
    }
    /// Nothing was reserved, so nothing is released; never fails.
    fn del(&self, _call: &Call) -> Result<(), Error> {
        Ok(())
    }
    fn check(&self, call: &Call) -> Result<(), Error> {
        check(&call.conf, &call.env.args)
    }
    /// Ready whenever the configuration is valid.
    fn status(&self, call: &Call) -> Result<(), Error> {
        resolve(&call.conf, &CniArgs::default()).map(|_| ())
    }
}

#[cfg(test)]
#[path = "fixed_tests.rs"]
mod tests;

#[cfg(test)]
mod doc_tests {
    use super::{AddressEntry, RouteEntry, StaticConf};

    #[test]
    fn every_key_static_accepts_is_documented() {
        let doc = include_str!("../../../docs/static.md");
        let mut missing = cni::introspect::undocumented::<StaticConf>(doc);
        missing.extend(cni::introspect::undocumented::<AddressEntry>(doc));
        missing.extend(cni::introspect::undocumented::<RouteEntry>(doc));
        assert!(
            missing.is_empty(),
            "docs/static.md does not document {missing:?}"
        );
    }
}
