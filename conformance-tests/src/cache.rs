//! libcni's result cache: `<dir>/results/<network>-<containerID>-<ifname>`.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::runtime_conf::RuntimeConf;

/// The `kind` libcni writes into every cache entry.
pub const CACHE_KIND: &str = "cniCacheV1";

/// A cache directory in libcni's layout.
#[derive(Debug)]
pub struct ResultCache {
    dir: PathBuf,
}

impl ResultCache {
    /// A cache rooted at `dir` (created lazily).
    pub fn new(dir: &Path) -> ResultCache {
        ResultCache {
            dir: dir.to_path_buf(),
        }
    }

    /// The cache root (libcni's `cacheDir`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the entry for one attachment.
    pub fn file(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.dir
            .join("results")
            .join(format!("{network}-{container_id}-{ifname}"))
    }

    /// Writes the entry for `rt` (mode 0600, directory 0700). `config` is
    /// stored as a JSON string; libcni stores the same bytes base64-encoded.
    pub fn store(
        &self,
        network: &str,
        config: &Value,
        rt: &RuntimeConf,
        result: &Value,
    ) -> io::Result<()> {
        let mut entry = json!({
            "kind": CACHE_KIND,
            "containerId": rt.container_id,
            "config": config.to_string(),
            "ifName": rt.ifname,
            "networkName": network,
            "result": result,
        });
        if !rt.args.is_empty() {
            let pairs: Vec<[&str; 2]> = rt
                .args
                .iter()
                .map(|(k, v)| [k.as_str(), v.as_str()])
                .collect();
            entry["cniArgs"] = json!(pairs);
        }
        if !rt.capability_args.is_empty() {
            entry["capabilityArgs"] = Value::Object(rt.capability_args.clone());
        }
        let path = self.file(network, &rt.container_id, &rt.ifname);
        write_private(&path, entry.to_string().as_bytes())
    }

    /// The whole entry for one attachment, if present and of kind
    /// [`CACHE_KIND`].
    pub fn entry(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Option<Map<String, Value>> {
        read_entry(&self.file(network, container_id, ifname))
    }

    /// The cached result for one attachment.
    pub fn result(&self, network: &str, container_id: &str, ifname: &str) -> Option<Value> {
        self.entry(network, container_id, ifname)?.remove("result")
    }

    /// Deletes the entry for one attachment; a missing entry is fine.
    pub fn remove(&self, network: &str, container_id: &str, ifname: &str) {
        let _ = fs::remove_file(self.file(network, container_id, ifname));
    }

    /// `(containerId, ifName)` of every entry of `network`, sorted.
    pub fn attachments(&self, network: &str) -> Vec<(String, String)> {
        let files = fs::read_dir(self.dir.join("results")).into_iter().flatten();
        let mut found: Vec<(String, String)> = files
            .filter_map(|f| read_entry(&f.ok()?.path()))
            .filter(|e| e.get("networkName").and_then(Value::as_str) == Some(network))
            .map(|e| (text(&e, "containerId"), text(&e, "ifName")))
            .collect();
        found.sort();
        found
    }
}

fn text(entry: &Map<String, Value>, key: &str) -> String {
    entry
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

fn read_entry(path: &Path) -> Option<Map<String, Value>> {
    let entry: Map<String, Value> = serde_json::from_slice(&fs::read(path).ok()?).ok()?;
    (entry.get("kind").and_then(Value::as_str) == Some(CACHE_KIND)).then_some(entry)
}

/// Writes `bytes` to `path` readable by the owner only, creating parents 0700.
fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)
}
