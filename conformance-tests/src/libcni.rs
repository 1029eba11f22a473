//! A cnitool-style client built from the real libcni (Debian's
//! `golang-github-appc-cni-dev`, 1.1.2), to check plugins against the
//! reference runtime library. Source: `libcni-client/main.go`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use nix::fcntl::{Flock, FlockArg};
use serde_json::Value;

use crate::netns::Netns;
use crate::plugin::{target_dir, workspace_root};
use crate::process::{collect, enter_netns, Outcome, DEFAULT_TIMEOUT};
use crate::runtime_conf::RuntimeConf;
use crate::tempdir::TempDir;

/// GOPATH holding the Debian-packaged libcni sources.
pub const GOPATH: &str = "/usr/share/gocode";

/// The client bound to a `CNI_PATH`, a node namespace (where it and so the
/// plugins run) and its own libcni cache directory.
#[derive(Debug)]
pub struct LibcniClient {
    cni_path: Vec<PathBuf>,
    node: PathBuf,
    work: TempDir,
    /// What the node's runtime puts in every plugin's environment (the node's settings).
    env: Vec<(String, String)>,
    /// A directory bound over another in the client's own mount namespace: (source, target).
    bind: Option<(PathBuf, PathBuf)>,
}

impl LibcniClient {
    /// The client binary, built once per process (and only when older than
    /// its source); panics if the build fails.
    pub fn get() -> &'static Path {
        static BUILT: OnceLock<PathBuf> = OnceLock::new();
        BUILT.get_or_init(build)
    }

    /// A client running plugins from `cni_path` inside `node`.
    pub fn new(cni_path: Vec<PathBuf>, node: &Netns) -> LibcniClient {
        LibcniClient::get();
        LibcniClient {
            cni_path,
            node: node.path().to_path_buf(),
            work: TempDir::new("libcni"),
            env: Vec::new(),
            bind: None,
        }
    }

    /// The same client with `key=value` in its environment, which libcni passes on to every
    /// plugin, as a node's runtime does for the node's settings.
    pub fn with_env(mut self, key: &str, value: &str) -> LibcniClient {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// The same client, run in a mount namespace of its own in which `source` is bound over
    /// `target` (an existing directory): one simulated node's /run/cni, where the plugins find
    /// that node's dhcp daemon, without touching the machine's.
    pub fn with_bind(mut self, source: &Path, target: &Path) -> LibcniClient {
        self.bind = Some((source.to_path_buf(), target.to_path_buf()));
        self
    }

    /// libcni's cache directory (`CNI_CACHE_DIR`).
    pub fn cache_dir(&self) -> PathBuf {
        self.work.join("cache")
    }

    /// `AddNetworkList`; stdout holds the result, or a CNI error on exit 1.
    pub fn add(&self, conflist: &Value, rt: &RuntimeConf) -> Outcome {
        self.run("add", conflist, rt)
    }

    /// `CheckNetworkList`; empty stdout on success.
    pub fn check(&self, conflist: &Value, rt: &RuntimeConf) -> Outcome {
        self.run("check", conflist, rt)
    }

    /// `DelNetworkList`; empty stdout on success.
    pub fn del(&self, conflist: &Value, rt: &RuntimeConf) -> Outcome {
        self.run("del", conflist, rt)
    }

    /// `GetVersionInfo`: stdout `{"supportedVersions":[...]}`.
    pub fn version(&self, plugin_type: &str) -> Outcome {
        self.execute(self.command("version", Path::new(plugin_type), Path::new("")))
    }

    fn run(&self, op: &str, conflist: &Value, rt: &RuntimeConf) -> Outcome {
        let conf_file = self.write_conf(conflist);
        let mut cmd = self.command(op, &conf_file, &rt.netns);
        cmd.env("CNI_CONTAINERID", &rt.container_id)
            .env("CNI_IFNAME", &rt.ifname)
            .env("CNI_ARGS", rt.cni_args())
            .env(
                "CAP_ARGS",
                Value::Object(rt.capability_args.clone()).to_string(),
            );
        self.execute(cmd)
    }

    fn command(&self, op: &str, conf: &Path, netns: &Path) -> Command {
        let paths: Vec<String> = self
            .cni_path
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let mut cmd = Command::new(LibcniClient::get());
        cmd.arg(op).arg(conf).arg(netns).env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        cmd.env("CNI_PATH", paths.join(":"))
            .env("CNI_CACHE_DIR", self.cache_dir())
            .envs(self.env.iter().cloned());
        cmd
    }

    /// Runs the client inside the node namespace.
    fn execute(&self, mut cmd: Command) -> Outcome {
        enter_netns(&mut cmd, &self.node)
            .unwrap_or_else(|e| panic!("cannot open node netns {}: {e}", self.node.display()));
        if let Some((source, target)) = &self.bind {
            crate::process::private_bind(&mut cmd, source, target);
        }
        collect(cmd, None, DEFAULT_TIMEOUT)
            .unwrap_or_else(|e| panic!("cannot run libcni-client: {e}"))
    }

    /// Writes `conflist` to a fresh file for the client to read.
    fn write_conf(&self, conflist: &Value) -> PathBuf {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = self.work.join(&format!("conf-{n}.json"));
        std::fs::write(&path, conflist.to_string())
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }
}

/// Builds the client unless an up-to-date binary exists, holding a lock
/// file so parallel test binaries do not build over each other.
fn build() -> PathBuf {
    let source_dir = workspace_root().join("conformance-tests/libcni-client");
    let out_dir = target_dir().join("libcni-client");
    let binary = out_dir.join("libcni-client");
    std::fs::create_dir_all(&out_dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", out_dir.display()));
    let _lock = lock(&out_dir.join(".build.lock"));
    if !newer(&binary, &source_dir.join("main.go")) {
        go_build(&source_dir, &binary);
    }
    binary
}

/// Runs `go build` in `source_dir`, then renames the output into place.
fn go_build(source_dir: &Path, binary: &Path) {
    let partial = binary.with_extension(format!("partial-{}", std::process::id()));
    let out = Command::new("go")
        .args(["build", "-o"])
        .arg(&partial)
        .arg("main.go")
        .current_dir(source_dir)
        .env("GO111MODULE", "off")
        .env("GOPATH", GOPATH)
        .env("GOCACHE", target_dir().join("go-cache"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run go (run `make deps`): {e}"));
    assert!(
        out.status.success(),
        "building libcni-client failed (run `make deps`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&partial, binary)
        .unwrap_or_else(|e| panic!("cannot install {}: {e}", binary.display()));
}

/// Whether `file` exists and was modified after `than`.
fn newer(file: &Path, than: &Path) -> bool {
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match (mtime(file), mtime(than)) {
        (Some(built), Some(source)) => built > source,
        (Some(_), None) => true,
        _ => false,
    }
}

/// An exclusive lock on `path`, held until dropped.
fn lock(path: &Path) -> Flock<File> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
    Flock::lock(file, FlockArg::LockExclusive)
        .unwrap_or_else(|(_, e)| panic!("cannot lock {}: {e}", path.display()))
}
