//! A node's own settings directory (what `/etc/multihome` is on a real node), made per test and
//! named to the plugins in `MULTIHOME_CONFIG_DIR`, as a node's runtime does. A NAD author
//! cannot choose the etcd cluster, its TLS files or credentials: the node administrator writes
//! them here, and a network configuration may only repeat them.

use std::path::Path;

use serde_json::{Map, Value};

use crate::tempdir::TempDir;

/// The environment variable naming the node's settings directory.
pub const SETTINGS_DIR_ENV: &str = "MULTIHOME_CONFIG_DIR";

/// The whereabouts keys that are the node's to set (the store, etcd, its TLS files).
const NODE_KEYS: [&str; 13] = [
    "datastore",
    "etcd_endpoints",
    "etcd_host",
    "etcd_prefix",
    "etcd_username",
    "etcd_password",
    "etcd_key_file",
    "etcd_cert_file",
    "etcd_ca_cert_file",
    "etcd_dial_timeout_ms",
    "etcd_request_timeout_ms",
    "store_dir",
    "configuration_path",
];

/// A node settings directory, removed on drop.
#[derive(Debug)]
pub struct NodeSettings {
    dir: TempDir,
}

impl Default for NodeSettings {
    fn default() -> Self {
        NodeSettings::empty()
    }
}

impl NodeSettings {
    /// No settings: the defaults of a node without /etc/multihome.
    pub fn empty() -> NodeSettings {
        NodeSettings {
            dir: TempDir::new("node-settings"),
        }
    }

    /// The node whose whereabouts settings (`whereabouts.conf`) are the store keys of `ipam`
    /// (a whereabouts `ipam` object): what its administrator would write for a network that
    /// names that etcd cluster. A file store (`datastore` not etcd) writes nothing.
    pub fn for_ipam(ipam: &Value) -> NodeSettings {
        let node = NodeSettings::empty();
        let Some(obj) = ipam.as_object() else {
            return node;
        };
        let etcd = obj.get("datastore").and_then(Value::as_str) == Some("etcd")
            || obj
                .get("etcd_host")
                .is_some_and(|h| h.as_str().is_some_and(|s| !s.is_empty()));
        if etcd {
            let mut keys: Map<String, Value> = NODE_KEYS
                .iter()
                .filter(|k| !matches!(**k, "store_dir" | "configuration_path"))
                .filter_map(|k| obj.get(*k).map(|v| (k.to_string(), v.clone())))
                .collect();
            keys.insert("datastore".into(), Value::from("etcd"));
            node.write("whereabouts.conf", &Value::Object(keys));
        }
        node
    }

    /// [`NodeSettings::for_ipam`] of a network configuration (or the first plugin of a list
    /// that has a whereabouts `ipam`).
    pub fn for_conf(conf: &Value) -> NodeSettings {
        let ipam = conf.get("ipam").cloned().or_else(|| {
            conf.get("plugins")?
                .as_array()?
                .iter()
                .find_map(|p| p.get("ipam").cloned())
        });
        NodeSettings::for_ipam(&ipam.unwrap_or(Value::Null))
    }

    /// Writes `name` in the directory (0644, root's: as the node's settings must be).
    pub fn write(&self, name: &str, value: &Value) -> &NodeSettings {
        let path = self.dir.join(name);
        std::fs::write(&path, value.to_string())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        self
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `MULTIHOME_CONFIG_DIR=<dir>`, for the plugins' environment.
    pub fn env(&self) -> (String, String) {
        (
            SETTINGS_DIR_ENV.to_string(),
            self.dir.path().display().to_string(),
        )
    }
}
