//! Finding the executables under test and laying out `CNI_PATH` directories.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::tempdir::TempDir;

/// Where the Debian `containernetworking-plugins` package installs.
pub const REFERENCE_DIR: &str = "/usr/lib/cni";

/// The workspace root (this crate's parent directory).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("crate lives inside the workspace")
        .to_path_buf()
}

/// Cargo's target directory: `$CARGO_TARGET_DIR`, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// The build target set in `.cargo/config.toml` (static executables); release outputs land in
/// `<target>/<triple>/release`.
pub const BUILD_TARGET: &str = "x86_64-unknown-linux-gnu";

/// One of multihome's own executables: `$MULTIHOME_BIN_DIR/<name>`, else
/// `<target>/<triple>/release/<name>`. Panics if it is not there. `localnet` and
/// `ovn-k8s-cni-overlay` are names of `ovn-overlay` (`make install` links them): link them under
/// their own name (a [`PluginDir`]) to run them as such, since the name selects the topology.
pub fn ours(name: &str) -> PathBuf {
    let dir = std::env::var_os("MULTIHOME_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join(BUILD_TARGET).join("release"));
    let file = match name {
        "localnet" | "ovn-k8s-cni-overlay" => "ovn-overlay",
        other => other,
    };
    let path = dir.join(file);
    assert!(
        path.is_file(),
        "multihome executable {} is missing: run `make build` first",
        path.display()
    );
    path
}

/// A reference plugin from [`REFERENCE_DIR`]. Panics if it is not there.
pub fn reference(name: &str) -> PathBuf {
    let path = Path::new(REFERENCE_DIR).join(name);
    assert!(
        path.is_file(),
        "reference plugin {} is missing: run `make deps`",
        path.display()
    );
    path
}

/// A temporary directory of plugin executables (symlinks or scripts) to use
/// as a `CNI_PATH`, so ours and the reference set never clash by name.
/// Removed on drop.
#[derive(Debug)]
pub struct PluginDir {
    dir: TempDir,
}

impl PluginDir {
    /// An empty directory.
    pub fn empty() -> PluginDir {
        PluginDir {
            dir: TempDir::new("plugins"),
        }
    }

    /// A directory holding our executables `names`.
    pub fn ours(names: &[&str]) -> PluginDir {
        PluginDir::empty().with_ours(names)
    }

    /// A directory holding the reference plugins `names`.
    pub fn reference(names: &[&str]) -> PluginDir {
        PluginDir::empty().with_reference(names)
    }

    /// Adds our executables `names`.
    pub fn with_ours(self, names: &[&str]) -> PluginDir {
        names.iter().fold(self, |d, n| d.with_link(n, &ours(n)))
    }

    /// Adds the reference plugins `names`.
    pub fn with_reference(self, names: &[&str]) -> PluginDir {
        names
            .iter()
            .fold(self, |d, n| d.with_link(n, &reference(n)))
    }

    /// Adds `name` as a symlink to `target`.
    pub fn with_link(self, name: &str, target: &Path) -> PluginDir {
        let link = self.dir.join(name);
        symlink(target, &link).unwrap_or_else(|e| panic!("cannot link {}: {e}", link.display()));
        self
    }

    /// Adds `name` as an executable `/bin/sh` script with `body`.
    pub fn with_script(self, name: &str, body: &str) -> PluginDir {
        let path = self.dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n"))
            .and_then(|()| std::fs::set_permissions(&path, PermissionsExt::from_mode(0o755)))
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        self
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The path of the executable `name` in this directory.
    pub fn plugin(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// This directory as a one-entry `CNI_PATH` list.
    pub fn cni_path(&self) -> Vec<PathBuf> {
        vec![self.path().to_path_buf()]
    }
}

/// The JSON inside `config: '...'` of a NetworkAttachmentDefinition example under deploy/examples.
pub fn nad_config(file: &str) -> serde_json::Value {
    let path = workspace_root().join("deploy/examples").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let start = text
        .find("config: '")
        .unwrap_or_else(|| panic!("{file}: no config"))
        + "config: '".len();
    let end = start
        + text[start..]
            .find('\'')
            .unwrap_or_else(|| panic!("{file}: unterminated config"));
    serde_json::from_str(&text[start..end])
        .unwrap_or_else(|e| panic!("{file}: config is not JSON: {e}"))
}
