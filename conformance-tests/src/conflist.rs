//! Network configuration lists, and the per-plugin config libcni derives
//! from them.

use serde_json::{json, Map, Value};

use crate::error::CniError;

/// A parsed conflist (libcni's `NetworkConfigList`).
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkList {
    /// `name`.
    pub name: String,
    /// `cniVersion` (empty when absent).
    pub cni_version: String,
    /// `disableCheck`.
    pub disable_check: bool,
    /// `disableGC`.
    pub disable_gc: bool,
    /// `plugins`, each an object with a non-empty `type`.
    pub plugins: Vec<Map<String, Value>>,
    /// The list as given (this is what the result cache stores).
    pub raw: Value,
}

impl NetworkList {
    /// Parses a conflist like `libcni.ConfListFromBytes`.
    pub fn parse(conflist: &Value) -> Result<NetworkList, CniError> {
        let bad =
            |what: &str| CniError::runtime(format!("error parsing configuration list: {what}"));
        let name = conflist
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no name"))?;
        let plugins = conflist
            .get("plugins")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("no 'plugins' key"))?;
        if plugins.is_empty() {
            return Err(bad("no plugins in list"));
        }
        let plugins = plugins
            .iter()
            .map(plugin_object)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NetworkList {
            name: name.to_owned(),
            cni_version: str_field(conflist, "cniVersion"),
            disable_check: conflist
                .get("disableCheck")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            disable_gc: conflist
                .get("disableGC")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            plugins,
            raw: conflist.clone(),
        })
    }

    /// Wraps a single plugin config as a one-plugin list, like
    /// `libcni.ConfListFromConf`.
    pub fn from_single(conf: &Value) -> Result<NetworkList, CniError> {
        NetworkList::parse(&json!({
            "name": str_field(conf, "name"),
            "cniVersion": str_field(conf, "cniVersion"),
            "plugins": [conf],
        }))
    }

    /// Parses `config` as a list if it has `plugins`, else as a single plugin.
    pub fn parse_any(config: &Value) -> Result<NetworkList, CniError> {
        if config.get("plugins").is_some() {
            NetworkList::parse(config)
        } else {
            NetworkList::from_single(config)
        }
    }

    /// The stdin for plugin `index` (libcni's `buildOneConfig`): the plugin's
    /// own keys, the list's `name` and `cniVersion`, `prevResult` when given,
    /// and a `runtimeConfig` of the capability args it declares (only when
    /// at least one matches).
    pub fn plugin_config(
        &self,
        index: usize,
        prev_result: Option<&Value>,
        capability_args: &Map<String, Value>,
    ) -> Value {
        let mut conf = self.named(index);
        if let Some(prev) = prev_result {
            conf.insert("prevResult".into(), prev.clone());
        }
        let rc = runtime_config(&self.plugins[index], capability_args);
        if !rc.is_empty() {
            conf.insert("runtimeConfig".into(), Value::Object(rc));
        }
        Value::Object(conf)
    }

    /// Plugin `index` with only the list's `name` and `cniVersion` injected.
    pub fn named(&self, index: usize) -> Map<String, Value> {
        let mut conf = self.plugins[index].clone();
        conf.insert("name".into(), json!(self.name));
        conf.insert("cniVersion".into(), json!(self.cni_version));
        conf
    }

    /// `type` of plugin `index`.
    pub fn plugin_type(&self, index: usize) -> &str {
        self.plugins[index]["type"].as_str().unwrap_or_default()
    }

    /// Whether the list's `cniVersion` is at least `min` (`x.y.z`).
    pub fn version_at_least(&self, min: &str) -> bool {
        version_at_least(&self.cni_version, min)
    }
}

/// The capability args whose capability `plugin` declares `true`.
pub fn runtime_config(
    plugin: &Map<String, Value>,
    capability_args: &Map<String, Value>,
) -> Map<String, Value> {
    let declared = plugin.get("capabilities").and_then(Value::as_object);
    let enabled = declared
        .into_iter()
        .flatten()
        .filter(|(_, on)| on.as_bool() == Some(true));
    enabled
        .filter_map(|(cap, _)| Some((cap.clone(), capability_args.get(cap)?.clone())))
        .collect()
}

/// Compares dotted versions numerically; an empty version counts as 0.1.0
/// (the spec's default).
pub fn version_at_least(version: &str, min: &str) -> bool {
    let parse = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    let version = if version.is_empty() { "0.1.0" } else { version };
    parse(version) >= parse(min)
}

fn plugin_object(plugin: &Value) -> Result<Map<String, Value>, CniError> {
    let typed = plugin
        .get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| !t.is_empty());
    match plugin.as_object() {
        Some(object) if typed => Ok(object.clone()),
        _ => Err(CniError::runtime(
            "error parsing configuration: missing 'type'",
        )),
    }
}

fn str_field(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_owned()
}
