//! The `bridge` configuration: the reference plugin's keys and defaults, validated before
//! anything on the node is touched (code 7 naming the key and value at fault).

use cni::{Call, Error};
use netlink::Mac;
use serde::Deserialize;

/// The reference plugin's default bridge name.
pub const DEFAULT_BRIDGE: &str = "cni0";
/// Highest usable 802.1Q VLAN id (4095 is reserved).
pub const MAX_VLAN: i64 = 4094;

/// The keys as written in the network configuration.
#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct Raw {
    bridge: Option<String>,
    is_gateway: bool,
    is_default_gateway: bool,
    force_address: bool,
    ip_masq: bool,
    ip_masq_backend: Option<String>,
    mtu: i64,
    hairpin_mode: bool,
    promisc_mode: bool,
    vlan: i64,
    vlan_trunk: Option<Vec<VlanTrunk>>,
    preserve_default_vlan: Option<bool>,
    #[serde(rename = "macspoofchk")]
    mac_spoof_chk: bool,
    #[serde(rename = "enabledad")]
    enable_dad: bool,
    disable_container_interface: bool,
    port_isolation: bool,
}

/// One `vlanTrunk` entry: `{"id": N}` or `{"minID": A, "maxID": B}`.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(default)]
struct VlanTrunk {
    #[serde(rename = "minID")]
    min_id: Option<i64>,
    #[serde(rename = "maxID")]
    max_id: Option<i64>,
    id: Option<i64>,
}

/// Where the container's requested MAC came from (error messages name it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MacSource {
    CniArgs,
    ArgsCni,
    RuntimeConfig,
}

impl MacSource {
    fn key(self) -> &'static str {
        match self {
            MacSource::CniArgs => "CNI_ARGS MAC",
            MacSource::ArgsCni => "args.cni.mac",
            MacSource::RuntimeConfig => "runtimeConfig.mac",
        }
    }
}

/// The masquerade backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasqBackend {
    Nftables,
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct BridgeConf {
    pub network: String,
    pub bridge: String,
    pub is_gateway: bool,
    pub is_default_gateway: bool,
    pub force_address: bool,
    pub ip_masq: Option<MasqBackend>,
    pub mtu: Option<u32>,
    pub hairpin: bool,
    pub promisc: bool,
    /// Access VLAN (PVID, untagged); 0 = none.
    pub vlan: u16,
    /// Trunk VLANs, sorted, as inclusive ranges.
    pub trunk: Vec<(u16, u16)>,
    pub preserve_default_vlan: bool,
    pub mac_spoof_check: bool,
    pub enable_dad: bool,
    pub disable_container_interface: bool,
    pub port_isolation: bool,
    /// `ipam.type`, when set (L3 mode); L2 otherwise.
    pub ipam: Option<String>,
    pub mac: Option<Mac>,
}

impl BridgeConf {
    /// VLAN filtering is needed on the bridge.
    pub fn wants_vlans(&self) -> bool {
        self.vlan != 0 || !self.trunk.is_empty()
    }

    /// Parses and validates the configuration of `call`.
    pub fn from_call(call: &Call) -> Result<BridgeConf, Error> {
        let raw: Raw = call.conf.typed()?;
        let bridge = raw
            .bridge
            .clone()
            .unwrap_or_else(|| DEFAULT_BRIDGE.to_string());
        cni::env::validate_ifname(&bridge).map_err(|_| {
            Error::invalid_config(format!("bridge {bridge:?} is not a valid interface name"))
        })?;
        if raw.hairpin_mode && raw.promisc_mode {
            return Err(Error::invalid_config(
                "cannot set hairpinMode and promiscMode at the same time: set at most one of them to true",
            ));
        }
        if !(0..=MAX_VLAN).contains(&raw.vlan) {
            return Err(Error::invalid_config(format!(
                "invalid vlan {} (must be between 0 and {MAX_VLAN})",
                raw.vlan
            )));
        }
        let trunk = collect_trunk(raw.vlan_trunk.as_deref().unwrap_or_default())?;
        let mtu = match raw.mtu {
            0 => None,
            m if (68..=65535).contains(&m) => Some(m as u32),
            m => {
                return Err(Error::invalid_config(format!(
                    "invalid mtu {m} (must be 0 for the default, or 68 to 65535)"
                )))
            }
        };
        let ip_masq = match (raw.ip_masq, raw.ip_masq_backend.as_deref()) {
            (_, Some(b)) if b != "nftables" && b != "iptables" => {
                return Err(Error::invalid_config(format!(
                    "invalid ipMasqBackend {b:?} (must be \"nftables\" or \"iptables\")"
                )))
            }
            (true, Some("iptables")) => {
                return Err(Error::invalid_config(
                    "ipMasqBackend \"iptables\" is not supported by this plugin: remove the key or set it to \"nftables\" (the rules are the reference plugin's nftables rules)",
                ))
            }
            (true, _) => Some(MasqBackend::Nftables),
            (false, _) => None,
        };
        let ipam = call.conf.ipam_plugin()?.map(str::to_string);
        if raw.disable_container_interface && ipam.is_some() {
            return Err(Error::invalid_config(
                "disableContainerInterface cannot be used with ipam: an interface left down cannot hold addresses",
            ));
        }
        Ok(BridgeConf {
            network: call.conf.name.clone(),
            bridge,
            is_gateway: raw.is_gateway || raw.is_default_gateway,
            is_default_gateway: raw.is_default_gateway,
            force_address: raw.force_address,
            ip_masq,
            mtu,
            hairpin: raw.hairpin_mode,
            promisc: raw.promisc_mode,
            vlan: raw.vlan as u16,
            trunk,
            // The reference plugin's code defaults this to true "to maintain existing behavior"
            // (its README disagrees); drop-in compatibility follows the code.
            preserve_default_vlan: raw.preserve_default_vlan.unwrap_or(true),
            mac_spoof_check: raw.mac_spoof_chk,
            enable_dad: raw.enable_dad,
            disable_container_interface: raw.disable_container_interface,
            port_isolation: raw.port_isolation,
            ipam,
            mac: requested_mac(call)?,
        })
    }
}

/// What DEL and GC need to find what an attachment of this network left, and nothing more: a
/// fault only ADD cares about (a bad MAC, `mtu`, `hairpinMode` with `promiscMode`, a bridge
/// name too long) must not make the teardown fail and strand the pod. A key that cannot be
/// read counts as set, so that what it might have made is looked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Teardown {
    /// The network's `name`.
    pub network: String,
    /// `bridge` as written (default `cni0`).
    pub bridge: String,
    /// `ipam.type`, when set.
    pub ipam: Option<String>,
    /// `macspoofchk`.
    pub mac_spoof_check: bool,
    /// `ipMasq`.
    pub ip_masq: bool,
}

impl Teardown {
    /// Reads what a teardown needs from `call`'s configuration; never fails.
    pub fn from_call(call: &Call) -> Teardown {
        let raw = &call.conf.raw;
        let flag = |key: &str| match raw.get(key) {
            None | Some(serde_json::Value::Null) | Some(serde_json::Value::Bool(false)) => false,
            Some(serde_json::Value::Bool(true)) => true,
            Some(other) => {
                cni::log_warn!("{key} {other} is not a boolean: tearing down as if it were set");
                true
            }
        };
        Teardown {
            network: call.conf.name.clone(),
            bridge: raw
                .get("bridge")
                .and_then(serde_json::Value::as_str)
                .unwrap_or(DEFAULT_BRIDGE)
                .to_string(),
            ipam: call.conf.ipam_type().map(str::to_string),
            mac_spoof_check: flag("macspoofchk"),
            ip_masq: flag("ipMasq"),
        }
    }
}

/// The container MAC: CNI_ARGS `MAC=`, then `args.cni.mac`, then `runtimeConfig.mac`; the
/// later source wins, as in the reference plugin.
fn requested_mac(call: &Call) -> Result<Option<Mac>, Error> {
    let mut chosen: Option<(MacSource, String)> = None;
    if let Some(m) = call.env.args.get("MAC").filter(|m| !m.is_empty()) {
        chosen = Some((MacSource::CniArgs, m.to_string()));
    }
    for (source, value) in [
        (MacSource::ArgsCni, call.conf.args_cni("mac")),
        (MacSource::RuntimeConfig, call.conf.runtime("mac")),
    ] {
        match value {
            None => {}
            Some(serde_json::Value::String(s)) if s.is_empty() => {}
            Some(serde_json::Value::String(s)) => chosen = Some((source, s.clone())),
            Some(other) => {
                return Err(Error::invalid_config(format!(
                    "{} must be a string, got {other}",
                    source.key()
                )))
            }
        }
    }
    let Some((source, text)) = chosen else {
        return Ok(None);
    };
    let mac: Mac = text
        .parse()
        .map_err(|e| Error::invalid_config(format!("{}: {e}", source.key())))?;
    if mac.is_multicast() || mac.is_zero() {
        return Err(Error::invalid_config(format!(
            "{} {mac} cannot be an interface address (multicast or all-zero)",
            source.key()
        )));
    }
    Ok(Some(mac))
}

/// The trunk VLANs as sorted, merged inclusive ranges; the reference's rules and messages.
fn collect_trunk(entries: &[VlanTrunk]) -> Result<Vec<(u16, u16)>, Error> {
    let valid = |v: i64| (1..=MAX_VLAN).contains(&v);
    let mut spans: Vec<(u16, u16)> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let at = format!("vlanTrunk[{i}]");
        match (e.min_id, e.max_id) {
            (Some(min), Some(max)) => {
                if !valid(min) {
                    return Err(Error::invalid_config(format!(
                        "{at}.minID {min} is not a VLAN id (1 to {MAX_VLAN})"
                    )));
                }
                if !valid(max) {
                    return Err(Error::invalid_config(format!(
                        "{at}.maxID {max} is not a VLAN id (1 to {MAX_VLAN})"
                    )));
                }
                if max < min {
                    return Err(Error::invalid_config(format!(
                        "{at}: minID {min} is greater than maxID {max}"
                    )));
                }
                spans.push((min as u16, max as u16));
            }
            (None, Some(_)) => {
                return Err(Error::invalid_config(format!(
                    "{at}: minID and maxID must be configured together, minID is missing"
                )))
            }
            (Some(_), None) => {
                return Err(Error::invalid_config(format!(
                    "{at}: minID and maxID must be configured together, maxID is missing"
                )))
            }
            (None, None) => {}
        }
        if let Some(id) = e.id {
            if !valid(id) {
                return Err(Error::invalid_config(format!(
                    "{at}.id {id} is not a VLAN id (1 to {MAX_VLAN})"
                )));
            }
            spans.push((id as u16, id as u16));
        }
    }
    spans.sort_unstable();
    let mut merged: Vec<(u16, u16)> = Vec::new();
    for (a, b) in spans {
        match merged.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn trunk(v: serde_json::Value) -> Result<Vec<(u16, u16)>, Error> {
        let entries: Vec<VlanTrunk> = serde_json::from_value(v).unwrap();
        collect_trunk(&entries)
    }

    #[test]
    fn trunk_entries_are_sorted_and_merged_into_ranges() {
        let got = trunk(json!([{"id": 20}, {"minID": 10, "maxID": 19}, {"id": 5}, {"minID": 100, "maxID": 200}])).unwrap();
        assert_eq!(got, vec![(5, 5), (10, 20), (100, 200)]);
    }

    #[test]
    fn trunk_errors_name_the_entry_and_key() {
        let e = trunk(json!([{"id": 1}, {"minID": 0, "maxID": 5}])).unwrap_err();
        assert_eq!(e.code, cni::code::INVALID_NETWORK_CONFIG);
        assert!(e.msg.contains("vlanTrunk[1].minID 0"), "{}", e.msg);
        assert!(trunk(json!([{"maxID": 5}]))
            .unwrap_err()
            .msg
            .contains("minID is missing"));
        assert!(trunk(json!([{"minID": 5}]))
            .unwrap_err()
            .msg
            .contains("maxID is missing"));
        assert!(trunk(json!([{"minID": 9, "maxID": 5}]))
            .unwrap_err()
            .msg
            .contains("greater"));
        assert!(trunk(json!([{"id": 4095}]))
            .unwrap_err()
            .msg
            .contains("vlanTrunk[0].id 4095"));
    }
}

#[cfg(test)]
mod doc_tests {
    use super::{Raw, VlanTrunk};

    #[test]
    fn every_key_the_plugin_accepts_is_documented() {
        let doc = include_str!("../../../docs/bridge.md");
        let mut missing = cni::introspect::undocumented::<Raw>(doc);
        missing.extend(cni::introspect::undocumented::<VlanTrunk>(doc));
        assert!(
            missing.is_empty(),
            "docs/bridge.md does not document {missing:?}"
        );
    }
}
