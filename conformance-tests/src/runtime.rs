//! A CNI runtime in Rust with libcni's semantics: list execution order,
//! config injection, `runtimeConfig` filtering and the result cache.
//!
//! Differences from libcni 1.1.2 are deliberate and few: results and cached
//! results are passed on as the plugins wrote them (libcni re-encodes them
//! through its typed `Result`, dropping unknown keys), names are not
//! validated before ADD, the cache stores `config` as a JSON string rather
//! than base64, and GC/STATUS follow libcni 1.2 (absent in 1.1.2).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{json, Map, Value};

use crate::cache::ResultCache;
use crate::conflist::NetworkList;
use crate::error::CniError;
use crate::exec::{CniVars, Invocation};
use crate::netns::Netns;
use crate::process::Outcome;
use crate::runtime_conf::RuntimeConf;
use crate::tempdir::TempDir;

/// Stdin of the VERSION probe.
pub const VERSION_PROBE: &str = r#"{"cniVersion":"1.1.0"}"#;

/// One plugin execution made by a [`Runtime`], kept for assertions.
#[derive(Debug, Clone)]
pub struct Call {
    /// The plugin's `type`.
    pub plugin_type: String,
    /// `CNI_COMMAND`.
    pub command: String,
    /// The environment besides `PATH`.
    pub env: Vec<(String, String)>,
    /// The config sent on stdin.
    pub stdin: Value,
    /// What the plugin did.
    pub outcome: Outcome,
}

/// A runtime bound to a `CNI_PATH`, a node namespace (where plugins run)
/// and its own result cache directory.
#[derive(Debug)]
pub struct Runtime {
    cni_path: Vec<PathBuf>,
    node: PathBuf,
    cache: ResultCache,
    calls: Mutex<Vec<Call>>,
    /// What the node's runtime puts in every plugin's environment (the node's settings).
    env: Vec<(String, String)>,
    _cache_dir: TempDir,
}

impl Runtime {
    /// A runtime whose plugins run inside `node`, found in `cni_path`.
    pub fn new(cni_path: Vec<PathBuf>, node: &Netns) -> Runtime {
        let dir = TempDir::new("cache");
        Runtime {
            cni_path,
            node: node.path().to_path_buf(),
            cache: ResultCache::new(dir.path()),
            calls: Mutex::new(Vec::new()),
            env: Vec::new(),
            _cache_dir: dir,
        }
    }

    /// The same runtime putting `key=value` in every plugin's environment, as a node's runtime
    /// does for the node's settings (a NAD author cannot).
    pub fn with_env(mut self, key: &str, value: &str) -> Runtime {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The result cache.
    pub fn cache(&self) -> &ResultCache {
        &self.cache
    }

    /// Every plugin execution so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// ADD: runs the list's plugins in order, each getting the previous
    /// one's result as `prevResult`; caches and returns the last result.
    pub fn add_list(&self, conflist: &Value, rt: &RuntimeConf) -> Result<Value, CniError> {
        self.add_network(&NetworkList::parse(conflist)?, rt)
    }

    /// CHECK: runs the plugins in order, each getting the cached result as
    /// `prevResult`. Does nothing when `disableCheck` is true; an error for
    /// `cniVersion` below 0.4.0.
    pub fn check_list(&self, conflist: &Value, rt: &RuntimeConf) -> Result<(), CniError> {
        self.check_network(&NetworkList::parse(conflist)?, rt)
    }

    /// DEL: runs the plugins in reverse order with the cached result (if
    /// any) as `prevResult`, stopping at the first error; then drops the
    /// cache entry.
    pub fn del_list(&self, conflist: &Value, rt: &RuntimeConf) -> Result<(), CniError> {
        self.del_network(&NetworkList::parse(conflist)?, rt)
    }

    /// [`Runtime::add_list`] for a single plugin config (no `prevResult`).
    pub fn add(&self, conf: &Value, rt: &RuntimeConf) -> Result<Value, CniError> {
        self.add_network(&NetworkList::from_single(conf)?, rt)
    }

    /// [`Runtime::check_list`] for a single plugin config.
    pub fn check(&self, conf: &Value, rt: &RuntimeConf) -> Result<(), CniError> {
        self.check_network(&NetworkList::from_single(conf)?, rt)
    }

    /// [`Runtime::del_list`] for a single plugin config.
    pub fn del(&self, conf: &Value, rt: &RuntimeConf) -> Result<(), CniError> {
        self.del_network(&NetworkList::from_single(conf)?, rt)
    }

    /// GC: every plugin gets `cni.dev/valid-attachments` listing `valid`
    /// `(containerID, ifname)` pairs, with empty container variables. All
    /// plugins run; the first error is returned. Skipped when `disableGC`.
    pub fn gc_list(&self, conflist: &Value, valid: &[(String, String)]) -> Result<(), CniError> {
        let list = NetworkList::parse(conflist)?;
        if list.disable_gc {
            return Ok(());
        }
        let attachments: Vec<Value> = valid
            .iter()
            .map(|(cid, ifname)| json!({"containerID": cid, "ifname": ifname}))
            .collect();
        let mut first_error = None;
        for i in 0..list.plugins.len() {
            let mut conf = list.named(i);
            conf.insert("cni.dev/valid-attachments".into(), json!(attachments));
            if let Err(e) = self.call(&list, i, self.vars("GC", None), Value::Object(conf)) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// STATUS: asks each plugin in order, stopping at the first error.
    /// Skipped, like libcni 1.2, when `cniVersion` is below 1.1.0.
    pub fn status_list(&self, conflist: &Value) -> Result<(), CniError> {
        let list = NetworkList::parse(conflist)?;
        if !list.version_at_least("1.1.0") {
            return Ok(());
        }
        for i in 0..list.plugins.len() {
            let conf = Value::Object(list.named(i));
            self.call(&list, i, self.vars("STATUS", None), conf)?;
        }
        Ok(())
    }

    /// VERSION: libcni's probe (stdin [`VERSION_PROBE`], `CNI_NETNS`,
    /// `CNI_IFNAME` and `CNI_PATH` set to `dummy`); returns the plugin's
    /// answer.
    pub fn version(&self, plugin_type: &str) -> Result<Value, CniError> {
        let plugin = self.find(plugin_type)?;
        let vars = CniVars {
            netns: "dummy".into(),
            ifname: "dummy".into(),
            path: "dummy".into(),
            ..CniVars::command("VERSION")
        };
        let stdin: Value = serde_json::from_str(VERSION_PROBE).unwrap_or_default();
        let outcome = self.invoke(plugin_type, &plugin, &vars, &stdin)?;
        outcome
            .try_json()
            .ok_or_else(|| CniError::runtime(format!("unparsable VERSION answer: {outcome}")))
    }

    /// The cached result of an attachment of `network`.
    pub fn cached_result(&self, network: &str, container_id: &str, ifname: &str) -> Option<Value> {
        self.cache.result(network, container_id, ifname)
    }

    /// `(containerID, ifname)` of every cached attachment of `network`.
    pub fn cached_attachments(&self, network: &str) -> Vec<(String, String)> {
        self.cache.attachments(network)
    }

    /// The executable for `plugin_type`: the first `CNI_PATH` entry holding it.
    pub fn find(&self, plugin_type: &str) -> Result<PathBuf, CniError> {
        let found = self
            .cni_path
            .iter()
            .map(|dir| dir.join(plugin_type))
            .find(|p| p.is_file());
        found.ok_or_else(|| {
            CniError::runtime(format!(
                "failed to find plugin {plugin_type:?} in path {:?}",
                self.cni_path
            ))
        })
    }

    fn add_network(&self, list: &NetworkList, rt: &RuntimeConf) -> Result<Value, CniError> {
        let mut prev: Option<Value> = None;
        for i in 0..list.plugins.len() {
            let conf = list.plugin_config(i, prev.as_ref(), &rt.capability_args);
            let outcome = self.call(list, i, self.vars("ADD", Some(rt)), conf)?;
            prev = Some(parse_result(list, i, &outcome)?);
        }
        let result = prev.unwrap_or_default();
        self.cache
            .store(&list.name, &list.raw, rt, &result)
            .map_err(|e| {
                CniError::runtime(format!(
                    "failed to set network {:?} cached result: {e}",
                    list.name
                ))
            })?;
        Ok(result)
    }

    fn check_network(&self, list: &NetworkList, rt: &RuntimeConf) -> Result<(), CniError> {
        if !list.version_at_least("0.4.0") {
            let msg = format!(
                "configuration version {:?} does not support the CHECK command",
                list.cni_version
            );
            return Err(CniError::runtime(msg));
        }
        if list.disable_check {
            return Ok(());
        }
        let cached = self.cached_result(&list.name, &rt.container_id, &rt.ifname);
        for i in 0..list.plugins.len() {
            let conf = list.plugin_config(i, cached.as_ref(), &rt.capability_args);
            self.call(list, i, self.vars("CHECK", Some(rt)), conf)?;
        }
        Ok(())
    }

    fn del_network(&self, list: &NetworkList, rt: &RuntimeConf) -> Result<(), CniError> {
        let cached = list
            .version_at_least("0.4.0")
            .then(|| self.cached_result(&list.name, &rt.container_id, &rt.ifname))
            .flatten();
        for i in (0..list.plugins.len()).rev() {
            let conf = list.plugin_config(i, cached.as_ref(), &rt.capability_args);
            self.call(list, i, self.vars("DEL", Some(rt)), conf)?;
        }
        self.cache.remove(&list.name, &rt.container_id, &rt.ifname);
        Ok(())
    }

    /// The six variables for `command`; container ones empty without `rt`.
    fn vars(&self, command: &str, rt: Option<&RuntimeConf>) -> CniVars {
        let path: Vec<String> = self
            .cni_path
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let mut vars = CniVars {
            path: path.join(":"),
            ..CniVars::command(command)
        };
        if let Some(rt) = rt {
            vars.container_id = rt.container_id.clone();
            vars.netns = rt.netns.display().to_string();
            vars.ifname = rt.ifname.clone();
            vars.args = rt.cni_args();
        }
        vars
    }

    /// Runs plugin `index` of `list`; a non-zero exit becomes its error.
    fn call(
        &self,
        list: &NetworkList,
        index: usize,
        vars: CniVars,
        stdin: Value,
    ) -> Result<Outcome, CniError> {
        let plugin_type = list.plugin_type(index);
        let plugin = self.find(plugin_type)?;
        self.invoke(plugin_type, &plugin, &vars, &stdin)
    }

    /// Executes `plugin` in the node namespace and records the call.
    fn invoke(
        &self,
        plugin_type: &str,
        plugin: &Path,
        vars: &CniVars,
        stdin: &Value,
    ) -> Result<Outcome, CniError> {
        let invocation = self
            .env
            .iter()
            .fold(Invocation::new(plugin), |i, (k, v)| i.env(k, v))
            .in_netns_path(&self.node)
            .vars(vars)
            .stdin_json(stdin);
        let outcome = invocation
            .try_run()
            .map_err(|e| CniError::runtime(format!("cannot run {}: {e}", plugin.display())))?;
        self.record(Call {
            plugin_type: plugin_type.to_owned(),
            command: vars.command.clone(),
            env: invocation.env,
            stdin: stdin.clone(),
            outcome: outcome.clone(),
        });
        if outcome.ok() {
            Ok(outcome)
        } else {
            Err(CniError::from_failure(plugin_type, &outcome))
        }
    }

    fn record(&self, call: Call) {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(call);
    }
}

/// A successful ADD's stdout as a result object; like libcni, a result
/// without `cniVersion` is taken to be in the config's version.
fn parse_result(list: &NetworkList, index: usize, outcome: &Outcome) -> Result<Value, CniError> {
    let mut result: Map<String, Value> = serde_json::from_slice(&outcome.stdout).map_err(|e| {
        let msg = format!(
            "failed to unmarshal raw result of {}: {e}",
            list.plugin_type(index)
        );
        CniError::runtime(msg)
    })?;
    let versioned = result
        .get("cniVersion")
        .and_then(Value::as_str)
        .is_some_and(|v| !v.is_empty());
    if !versioned {
        result.insert("cniVersion".into(), json!(list.cni_version));
    }
    Ok(Value::Object(result))
}
