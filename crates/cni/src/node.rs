//! The node's own settings: files in `/etc/multihome` (or the directory the runtime's
//! environment names in `MULTIHOME_CONFIG_DIR`; a NAD author cannot set the plugin's
//! environment), root's alone, checked like sshd's StrictModes before they are read. They say
//! what a network configuration may name: where log files may be (`log_dirs`), where a file
//! store may be (`store_dirs`), where whereabouts flat files may be (`flat_file_dirs`), where a
//! dhcp daemon's socket may be (`dhcp_socket_dirs`), where the dhcp daemon keeps its leases
//! (`dhcp_state_dir`), and the node's own log file (`log_file`), in `node.json`. The other files (`whereabouts.conf`,
//! `ovn-node.json`) say which store and which databases the node's plugins use; their readers
//! live with the plugins and read them through [`read_settings`].

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

use crate::error::Error;
use crate::nodefs::{self, FileError};

/// The node's settings directory unless `MULTIHOME_CONFIG_DIR` names another.
pub const SETTINGS_DIR: &str = "/etc/multihome";
/// The environment variable naming another settings directory (one machine simulating several
/// nodes, tests).
pub const SETTINGS_DIR_ENV: &str = "MULTIHOME_CONFIG_DIR";
/// The file of [`NodePaths`] in the settings directory.
pub const PATHS_FILE: &str = "node.json";

/// Where a configuration's `log_file` may be unless `log_dirs` says otherwise: this suite's log
/// directory, and `/tmp`, where whereabouts' documentation puts `/tmp/whereabouts.log`.
pub const DEFAULT_LOG_DIRS: [&str; 2] = ["/var/log/multihome", "/tmp"];
/// Where a configuration's `store_dir` may be unless `store_dirs` says otherwise.
pub const DEFAULT_STORE_DIRS: [&str; 2] = ["/var/lib/cni/multihome", "/tmp"];
/// Where a configuration's whereabouts flat file (`configuration_path`) may be unless
/// `flat_file_dirs` says otherwise: where whereabouts' installer writes it (OpenShift's path and
/// the upstream one), and `/tmp`.
pub const DEFAULT_FLAT_FILE_DIRS: [&str; 3] = [
    "/etc/kubernetes/cni/net.d/whereabouts.d",
    "/etc/cni/net.d/whereabouts.d",
    "/tmp",
];

/// Where a configuration's dhcp `daemonSocketPath` may be unless `dhcp_socket_dirs` says
/// otherwise: the reference daemon's directory (its default socket is /run/cni/dhcp.sock).
pub const DEFAULT_DHCP_SOCKET_DIRS: [&str; 2] = ["/run/cni", "/var/run/cni"];
/// Where the dhcp daemon persists its leases unless `dhcp_state_dir` says otherwise.
pub const DEFAULT_DHCP_STATE_DIR: &str = "/var/lib/cni/multihome/dhcp";

/// The node's settings directory.
pub fn settings_dir() -> PathBuf {
    std::env::var_os(SETTINGS_DIR_ENV)
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from(SETTINGS_DIR), PathBuf::from)
}

/// Reads a node settings file holding a JSON object: `None` when it does not exist; code 7
/// naming the file when it is not root's alone on the whole path, not a regular file, too big
/// or not a JSON object (its content is never repeated).
pub fn read_settings(path: &Path) -> Result<Option<serde_json::Map<String, Value>>, Error> {
    let bytes = match nodefs::read(path, true) {
        Ok(b) => b,
        Err(FileError::NotFound) => return Ok(None),
        Err(e) => {
            return Err(Error::invalid_config(format!(
                "the node's settings {}: {e}",
                path.display()
            )))
        }
    };
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        Ok(_) => Err(Error::invalid_config(format!(
            "the node's settings {} must hold a JSON object",
            path.display()
        ))),
        Err(e) => Err(Error::invalid_config(format!(
            "the node's settings {} are not valid JSON (line {}, column {})",
            path.display(),
            e.line(),
            e.column()
        ))),
    }
}

/// `node.json` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPaths {
    log_file: Option<String>,
    log_dirs: Option<Vec<String>>,
    store_dirs: Option<Vec<String>>,
    flat_file_dirs: Option<Vec<String>>,
    dhcp_socket_dirs: Option<Vec<String>>,
    dhcp_state_dir: Option<String>,
}

/// What a configuration may name on this node, and where the node logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePaths {
    /// The file `node.json` was read from (named in refusals).
    pub file: PathBuf,
    /// The node's log file, for calls whose configuration names none (default: stderr).
    pub log_file: Option<PathBuf>,
    /// Where a configuration's `log_file` may be.
    pub log_dirs: Vec<PathBuf>,
    /// Where a configuration's `store_dir` may be.
    pub store_dirs: Vec<PathBuf>,
    /// Where a configuration's `configuration_path` may be.
    pub flat_file_dirs: Vec<PathBuf>,
    /// Where a dhcp configuration's `daemonSocketPath` may be.
    pub dhcp_socket_dirs: Vec<PathBuf>,
    /// Where the dhcp daemon persists leases (the CNI side releases from there when no daemon
    /// answers a DEL); the same directory as the daemon's `-statedir`.
    pub dhcp_state_dir: PathBuf,
}

impl NodePaths {
    /// The defaults, as a node without `node.json` has them.
    pub fn defaults(file: PathBuf) -> NodePaths {
        let dirs = |d: &[&str]| d.iter().map(PathBuf::from).collect();
        NodePaths {
            file,
            log_file: None,
            log_dirs: dirs(&DEFAULT_LOG_DIRS),
            store_dirs: dirs(&DEFAULT_STORE_DIRS),
            flat_file_dirs: dirs(&DEFAULT_FLAT_FILE_DIRS),
            dhcp_socket_dirs: dirs(&DEFAULT_DHCP_SOCKET_DIRS),
            dhcp_state_dir: PathBuf::from(DEFAULT_DHCP_STATE_DIR),
        }
    }

    /// Reads `node.json` in the settings directory (defaults when it does not exist), once per
    /// process: logging and each plugin ask, and the node's settings do not change during a call.
    pub fn load() -> Result<NodePaths, Error> {
        static LOADED: std::sync::OnceLock<Result<NodePaths, Error>> = std::sync::OnceLock::new();
        LOADED
            .get_or_init(|| NodePaths::load_from(&settings_dir().join(PATHS_FILE)))
            .clone()
    }

    /// [`NodePaths::load`] from a given file.
    pub fn load_from(file: &Path) -> Result<NodePaths, Error> {
        match read_settings(file)? {
            None => Ok(NodePaths::defaults(file.to_path_buf())),
            Some(map) => NodePaths::from_settings(file, map),
        }
    }

    /// What `node.json` says, read from `file`.
    fn from_settings(file: &Path, map: serde_json::Map<String, Value>) -> Result<NodePaths, Error> {
        let mut paths = NodePaths::defaults(file.to_path_buf());
        let raw: RawPaths = serde_json::from_value(Value::Object(map)).map_err(|e| {
            Error::invalid_config(format!("the node's settings {}: {e}", file.display()))
        })?;
        let what = |key: &str| format!("{key} in {}", file.display());
        if let Some(f) = raw.log_file.filter(|f| !f.is_empty()) {
            paths.log_file = Some(absolute(&what("log_file"), &f)?);
        }
        let list = |key: &str, v: Option<Vec<String>>, into: &mut Vec<PathBuf>| {
            if let Some(v) = v {
                *into = v
                    .iter()
                    .map(|d| absolute(&what(key), d))
                    .collect::<Result<_, _>>()?;
            }
            Ok::<(), Error>(())
        };
        list("log_dirs", raw.log_dirs, &mut paths.log_dirs)?;
        list("store_dirs", raw.store_dirs, &mut paths.store_dirs)?;
        list(
            "flat_file_dirs",
            raw.flat_file_dirs,
            &mut paths.flat_file_dirs,
        )?;
        list(
            "dhcp_socket_dirs",
            raw.dhcp_socket_dirs,
            &mut paths.dhcp_socket_dirs,
        )?;
        if let Some(d) = raw.dhcp_state_dir.filter(|d| !d.is_empty()) {
            paths.dhcp_state_dir = absolute(&what("dhcp_state_dir"), &d)?;
        }
        Ok(paths)
    }

    /// Names the node setting `key` for a refusal: "log_dirs in /etc/multihome/node.json
    /// (default /var/log/multihome or /tmp)".
    pub fn setting(&self, key: &str, dirs: &[PathBuf]) -> String {
        format!(
            "the node allows {} ({key} in {})",
            nodefs::list(dirs),
            self.file.display()
        )
    }
}

fn absolute(what: &str, value: &str) -> Result<PathBuf, Error> {
    let p = PathBuf::from(value);
    if !nodefs::below(&p, &[PathBuf::from("/")]) {
        return Err(Error::invalid_config(format!(
            "{what}: {value:?} must be an absolute path without \".\" or \"..\""
        )));
    }
    Ok(p)
}

/// A path the configuration names under `key`, refused with 7 unless it lies below one of
/// `dirs` as written (nothing on the node is looked at): the message names the key, the value
/// and the node setting that governs it.
pub fn named_path(
    key: &str,
    value: &str,
    dirs: &[PathBuf],
    governed_by: &str,
    paths: &NodePaths,
) -> Result<PathBuf, Error> {
    let p = PathBuf::from(value.trim());
    if nodefs::below(&p, dirs) {
        return Ok(p);
    }
    Err(Error::invalid_config(format!(
        "{key} {} is not a path this node lets a network configuration name: {}",
        crate::error::quote_value(&Value::String(value.to_string())),
        paths.setting(governed_by, dirs)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_node_file_parses_and_unknown_keys_are_refused() {
        let example: Value =
            serde_json::from_str(include_str!("../../../deploy/examples/node.json")).unwrap();
        let Value::Object(map) = example else {
            panic!("not an object")
        };
        let paths = NodePaths::from_settings(Path::new("/etc/multihome/node.json"), map).unwrap();
        assert_eq!(
            paths.log_file,
            Some(PathBuf::from("/var/log/multihome/cni.log"))
        );
        assert_eq!(paths.store_dirs, [PathBuf::from("/var/lib/cni/multihome")]);
        let Value::Object(bad) = serde_json::json!({"log_dir": ["/x"]}) else {
            unreachable!()
        };
        let e = NodePaths::from_settings(Path::new("/n.json"), bad).unwrap_err();
        assert!(e.msg.contains("log_dir"), "{}", e.msg);
        let Value::Object(rel) = serde_json::json!({"store_dirs": ["x"]}) else {
            unreachable!()
        };
        let e = NodePaths::from_settings(Path::new("/n.json"), rel).unwrap_err();
        assert!(e.msg.contains("store_dirs in /n.json"), "{}", e.msg);
    }

    #[test]
    fn a_named_path_must_lie_below_an_allowed_directory_as_written() {
        let paths = NodePaths::defaults(PathBuf::from("/etc/multihome/node.json"));
        let ok = named_path(
            "log_file",
            "/tmp/whereabouts.log",
            &paths.log_dirs,
            "log_dirs",
            &paths,
        );
        assert_eq!(ok, Ok(PathBuf::from("/tmp/whereabouts.log")));
        for bad in [
            "/root/.ssh/authorized_keys",
            "/tmp/../root/.ssh/authorized_keys",
            "/tmpx/log",
            "relative.log",
        ] {
            let e = named_path("log_file", bad, &paths.log_dirs, "log_dirs", &paths).unwrap_err();
            assert_eq!(e.code, 7, "{bad}");
            assert!(
                e.msg.contains("log_file")
                    && e.msg.contains("log_dirs in /etc/multihome/node.json"),
                "{}",
                e.msg
            );
        }
    }
}
