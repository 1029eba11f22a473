//! The plugin configuration on stdin: the keys the specification defines, typed; everything else
//! kept in `raw` for each plugin's own typed config and for delegation.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::Error;
use crate::result::{CniResult, Dns};
use crate::version::Version;

/// An attachment the runtime still considers valid (GC).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
pub struct Attachment {
    /// Container ID.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Interface name in the container.
    pub ifname: String,
}

/// The key GC reads valid attachments from, and the name it had before (SPEC.md, GC).
pub const VALID_ATTACHMENTS: &str = "cni.dev/valid-attachments";
const VALID_ATTACHMENTS_OLD: &str = "cni.dev/attachments";

/// A parsed plugin configuration.
#[derive(Debug, Clone)]
pub struct NetConf {
    /// `cniVersion` (missing means 0.1.0).
    pub version: Version,
    /// `name`, the network name.
    pub name: String,
    /// `type`, the plugin the runtime called.
    pub plugin_type: String,
    /// `cniVersions` (a list-level key some runtimes pass through; informational).
    pub cni_versions: Vec<String>,
    /// `capabilities`.
    pub capabilities: BTreeMap<String, bool>,
    /// `dns`.
    pub dns: Dns,
    /// `runtimeConfig` (empty when absent).
    pub runtime_config: Map<String, Value>,
    /// `args` (CONVENTIONS: `args.cni.*`).
    pub args: Option<Value>,
    /// `prevResult`, raw; parse with [`NetConf::prev_result`].
    pub prev_result: Option<Value>,
    /// `cni.dev/valid-attachments` (or the older `cni.dev/attachments`); missing is empty.
    pub valid_attachments: Vec<Attachment>,
    /// The whole configuration as JSON.
    pub raw: Value,
    /// The bytes as read, passed unchanged to delegates.
    pub bytes: Vec<u8>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Common {
    #[serde(default)]
    cni_version: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "type")]
    plugin_type: Option<String>,
    #[serde(default)]
    cni_versions: Option<Vec<String>>,
    #[serde(default)]
    capabilities: Option<BTreeMap<String, bool>>,
    #[serde(default)]
    dns: Option<Dns>,
    #[serde(default)]
    runtime_config: Option<Map<String, Value>>,
    #[serde(default)]
    args: Option<Value>,
    #[serde(default)]
    prev_result: Option<Value>,
}

impl NetConf {
    /// Parses stdin: empty or broken JSON is code 6, an unsupported version code 1, a missing or
    /// malformed name code 7; a malformed specification key is code 7 naming it.
    pub fn parse(bytes: &[u8]) -> Result<NetConf, Error> {
        let raw = parse_json(bytes)?;
        let common: Common = typed(&raw, "")?;
        let version = Version::from_config_value(common.cni_version.as_deref())?;
        let name = common.name.unwrap_or_default();
        validate_network_name(&name)?;
        Ok(NetConf {
            version,
            name,
            plugin_type: common.plugin_type.unwrap_or_default(),
            cni_versions: common.cni_versions.unwrap_or_default(),
            capabilities: common.capabilities.unwrap_or_default(),
            dns: common.dns.unwrap_or_default(),
            runtime_config: common.runtime_config.unwrap_or_default(),
            args: common.args,
            prev_result: common.prev_result.filter(|v| !v.is_null()),
            valid_attachments: valid_attachments(&raw)?,
            raw,
            bytes: bytes.to_vec(),
        })
    }

    /// The plugin's own typed view of the whole configuration (unknown keys are its to ignore).
    pub fn typed<T: DeserializeOwned>(&self) -> Result<T, Error> {
        typed(&self.raw, "")
    }

    /// The `ipam` object, if any.
    pub fn ipam(&self) -> Option<&Map<String, Value>> {
        self.raw.get("ipam").and_then(Value::as_object)
    }

    /// `ipam.type`, when an `ipam` object with a non-empty type is present.
    pub fn ipam_type(&self) -> Option<&str> {
        self.ipam()?.get("type")?.as_str().filter(|s| !s.is_empty())
    }

    /// `ipam.type` as an ADD must read it: `None` without `ipam` (or with `null`, `{}` or an
    /// empty type: no IPAM, as the reference reads it); code 7 naming the key when `ipam` is
    /// not an object or its type is not a string, which [`NetConf::ipam_type`] passes over.
    pub fn ipam_plugin(&self) -> Result<Option<&str>, Error> {
        match self.raw.get("ipam") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => match m.get("type") {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(t)) => Ok(Some(t.as_str()).filter(|t| !t.is_empty())),
                Some(other) => Err(Error::invalid_config(format!(
                    "ipam.type: {} is not a plugin name (a string)",
                    crate::error::quote_value(other)
                ))),
            },
            Some(other) => Err(Error::invalid_config(format!(
                "ipam: {} is not an object",
                crate::error::quote_value(other)
            ))),
        }
    }

    /// A typed view of the `ipam` object; errors name keys as `ipam.<key>`.
    pub fn ipam_typed<T: DeserializeOwned>(&self) -> Result<T, Error> {
        let ipam = self
            .raw
            .get("ipam")
            .cloned()
            .unwrap_or(Value::Object(Map::new()));
        typed(&ipam, "ipam.")
    }

    /// `args.cni.<key>` (CONVENTIONS.md).
    pub fn args_cni(&self, key: &str) -> Option<&Value> {
        self.args.as_ref()?.get("cni")?.get(key)
    }

    /// `runtimeConfig.<key>`.
    pub fn runtime(&self, key: &str) -> Option<&Value> {
        self.runtime_config.get(key).filter(|v| !v.is_null())
    }

    /// The prevResult parsed in the version it declares (the config's when it declares none).
    pub fn prev_result(&self) -> Result<Option<CniResult>, Error> {
        let Some(raw) = &self.prev_result else {
            return Ok(None);
        };
        let (_, result) =
            CniResult::parse(raw, self.version).map_err(|e| e.context("prevResult"))?;
        Ok(Some(result))
    }
}

/// Parses stdin as a JSON object (code 6 otherwise).
pub fn parse_json(bytes: &[u8]) -> Result<Value, Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::decoding("missing network configuration on stdin"));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        Error::decoding(format!(
            "network configuration on stdin is not valid JSON: {e}"
        ))
    })?;
    if !value.is_object() {
        return Err(Error::decoding(
            "network configuration on stdin must be a JSON object",
        ));
    }
    Ok(value)
}

/// Deserializes `value` into `T`; a failure is code 7 naming the key path (`prefix` + path).
pub fn typed<T: DeserializeOwned>(value: &Value, prefix: &str) -> Result<T, Error> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            prefix.trim_end_matches('.').to_string()
        } else {
            format!("{prefix}{path}")
        };
        let inner = e.into_inner();
        if at.is_empty() {
            Error::invalid_config(format!("invalid network configuration: {inner}"))
        } else {
            Error::invalid_config(format!("invalid value for key {at:?}: {inner}"))
        }
    })
}

/// Network name rule: required, `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$` (code 7).
pub fn validate_network_name(name: &str) -> Result<(), Error> {
    if name.is_empty() {
        return Err(Error::invalid_config("missing network name (key \"name\")"));
    }
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        return Ok(());
    }
    Err(Error::invalid_config(format!(
        "invalid network name {name:?} (key \"name\"): it must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$"
    )))
}

fn valid_attachments(raw: &Value) -> Result<Vec<Attachment>, Error> {
    let (key, value) = match (raw.get(VALID_ATTACHMENTS), raw.get(VALID_ATTACHMENTS_OLD)) {
        (Some(v), _) if !v.is_null() => (VALID_ATTACHMENTS, v),
        (_, Some(v)) if !v.is_null() => (VALID_ATTACHMENTS_OLD, v),
        _ => return Ok(Vec::new()),
    };
    typed(value, key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conf(v: Value) -> Result<NetConf, Error> {
        NetConf::parse(v.to_string().as_bytes())
    }

    #[test]
    fn reads_every_spec_key_and_keeps_unknown_ones() {
        let c = conf(json!({
            "cniVersion": "1.1.0", "name": "net-1", "type": "bridge", "cniVersions": ["1.0.0"],
            "capabilities": {"ips": true}, "dns": {"nameservers": ["10.0.0.53"]},
            "runtimeConfig": {"ips": ["10.0.0.5/24"]}, "args": {"cni": {"ips": ["10.0.0.6/24"]}},
            "prevResult": {"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.0.0.7/24"}]},
            "ipam": {"type": "static"}, "bridge": "br1",
            "cni.dev/valid-attachments": [{"containerID": "c1", "ifname": "eth0"}]
        }))
        .unwrap();
        assert_eq!(
            (c.version, c.name.as_str(), c.plugin_type.as_str()),
            (Version::V1_1_0, "net-1", "bridge")
        );
        assert_eq!(c.capabilities.get("ips"), Some(&true));
        assert_eq!(c.dns.nameservers, vec!["10.0.0.53"]);
        assert_eq!(c.runtime("ips"), Some(&json!(["10.0.0.5/24"])));
        assert_eq!(c.args_cni("ips"), Some(&json!(["10.0.0.6/24"])));
        assert_eq!(c.ipam_type(), Some("static"));
        assert_eq!(c.raw["bridge"], "br1");
        assert_eq!(c.valid_attachments[0].container_id, "c1");
        // prevResult is parsed in the version it declares (0.4.0 carries `version`), not 1.1.0.
        let prev = c.prev_result().unwrap().unwrap();
        assert_eq!(prev.ips[0].address.to_string(), "10.0.0.7/24");
    }

    #[test]
    fn valid_attachments_fall_back_to_the_old_key_and_default_to_empty() {
        let c = conf(json!({"cniVersion": "1.1.0", "name": "n",
            "cni.dev/attachments": [{"containerID": "c2", "ifname": "net1"}]}))
        .unwrap();
        assert_eq!(
            c.valid_attachments,
            vec![Attachment {
                container_id: "c2".into(),
                ifname: "net1".into()
            }]
        );
        assert!(conf(json!({"cniVersion": "1.1.0", "name": "n"}))
            .unwrap()
            .valid_attachments
            .is_empty());
    }

    #[test]
    fn missing_stdin_and_broken_json_are_code_6() {
        for bytes in [&b""[..], b"  \n", b"{not json", b"[1]"] {
            assert_eq!(NetConf::parse(bytes).unwrap_err().code, 6, "{bytes:?}");
        }
    }

    #[test]
    fn missing_or_invalid_name_is_code_7() {
        assert_eq!(conf(json!({"cniVersion": "1.0.0"})).unwrap_err().code, 7);
        let e = conf(json!({"cniVersion": "1.0.0", "name": "a b"})).unwrap_err();
        assert!(e.msg.contains("\"a b\""), "{}", e.msg);
    }

    #[test]
    fn unsupported_version_is_code_1() {
        assert_eq!(
            conf(json!({"cniVersion": "2.0.0", "name": "n"}))
                .unwrap_err()
                .code,
            1
        );
    }

    #[test]
    fn malformed_spec_key_is_code_7_naming_it() {
        let e = conf(json!({"cniVersion": "1.0.0", "name": "n", "capabilities": {"ips": "yes"}}))
            .unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("capabilities.ips"), "{}", e.msg);
        let e = conf(json!({"cniVersion": "1.1.0", "name": "n", "cni.dev/valid-attachments": [{"ifname": "e"}]})).unwrap_err();
        assert!(e.msg.contains("cni.dev/valid-attachments"), "{}", e.msg);
    }

    #[test]
    fn typed_ipam_errors_name_the_ipam_key() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Ipam {
            routes: Vec<u32>,
        }
        let c = conf(json!({"cniVersion": "1.0.0", "name": "n", "ipam": {"routes": [1, "x"]}}))
            .unwrap();
        let e = c.ipam_typed::<Ipam>().unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("ipam.routes[1]"), "{}", e.msg);
    }

    #[test]
    fn a_broken_prev_result_is_code_6_naming_prev_result() {
        let c = conf(
            json!({"cniVersion": "1.0.0", "name": "n", "prevResult": {"ips": [{"address": "x"}]}}),
        )
        .unwrap();
        let e = c.prev_result().unwrap_err();
        assert_eq!(e.code, 6);
        assert!(e.msg.starts_with("prevResult"), "{}", e.msg);
    }
}
