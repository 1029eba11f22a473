//! One raw plugin invocation, exactly as specified: the test controls every
//! environment variable and byte of stdin.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::netns::Netns;
use crate::process::{collect, enter_netns, Outcome, DEFAULT_TIMEOUT};

/// `PATH` given to children when the harness itself has none.
const FALLBACK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The six `CNI_*` variables a runtime sets; empty strings where unused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniVars {
    /// `CNI_COMMAND`: ADD, DEL, CHECK, GC, STATUS or VERSION.
    pub command: String,
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_NETNS`: path of the container's network namespace.
    pub netns: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
    /// `CNI_ARGS`: `k=v;k2=v2`.
    pub args: String,
    /// `CNI_PATH`: colon-separated plugin directories.
    pub path: String,
}

impl CniVars {
    /// Variables for `command` with everything else empty.
    pub fn command(command: &str) -> CniVars {
        CniVars {
            command: command.to_owned(),
            ..CniVars::default()
        }
    }

    /// All six as `(name, value)` pairs, in libcni's order.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("CNI_COMMAND", &self.command),
            ("CNI_CONTAINERID", &self.container_id),
            ("CNI_NETNS", &self.netns),
            ("CNI_ARGS", &self.args),
            ("CNI_IFNAME", &self.ifname),
            ("CNI_PATH", &self.path),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect()
    }
}

/// One plugin execution. The child gets a cleared environment holding only
/// `PATH` and [`Invocation::env`], and runs in the node namespace.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The executable.
    pub plugin: PathBuf,
    /// Environment besides `PATH`, in order (a later duplicate wins).
    pub env: Vec<(String, String)>,
    /// Bytes on stdin; `None` gives an empty stdin.
    pub stdin: Option<Vec<u8>>,
    /// Network namespace the plugin runs in. Without one only `VERSION` (or
    /// no command at all) may run, so nothing touches the root namespace.
    pub node: Option<PathBuf>,
    /// How long the plugin may run before it is killed.
    pub timeout: Duration,
}

impl Invocation {
    /// An invocation of `plugin` with no environment, stdin or node yet.
    pub fn new(plugin: impl Into<PathBuf>) -> Invocation {
        Invocation {
            plugin: plugin.into(),
            env: Vec::new(),
            stdin: None,
            node: None,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Runs the plugin inside `node`.
    pub fn in_node(mut self, node: &Netns) -> Invocation {
        self.node = Some(node.path().to_path_buf());
        self
    }

    /// Runs the plugin inside the namespace mounted at `path`.
    pub fn in_netns_path(mut self, path: &Path) -> Invocation {
        self.node = Some(path.to_path_buf());
        self
    }

    /// Adds all six `CNI_*` variables.
    pub fn vars(mut self, vars: &CniVars) -> Invocation {
        self.env.extend(vars.env());
        self
    }

    /// Adds (or overrides) one variable.
    pub fn env(mut self, key: &str, value: &str) -> Invocation {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Removes every setting of `key`, e.g. to omit a required variable.
    pub fn without_env(mut self, key: &str) -> Invocation {
        self.env.retain(|(k, _)| k != key);
        self
    }

    /// Sets stdin.
    pub fn stdin(mut self, bytes: impl Into<Vec<u8>>) -> Invocation {
        self.stdin = Some(bytes.into());
        self
    }

    /// Sets stdin to `config` serialised as JSON.
    pub fn stdin_json(self, config: &Value) -> Invocation {
        self.stdin(config.to_string())
    }

    /// The value the child will see for `key`, if any.
    pub fn env_value(&self, key: &str) -> Option<&str> {
        let found = self.env.iter().rev().find(|(k, _)| k == key);
        found.map(|(_, v)| v.as_str())
    }

    /// Runs the plugin; errors when it cannot be started, including when
    /// entering the node namespace fails.
    pub fn try_run(&self) -> io::Result<Outcome> {
        self.refuse_root_namespace();
        let mut cmd = Command::new(&self.plugin);
        cmd.env_clear()
            .env("PATH", host_path())
            .envs(self.env.iter().cloned());
        if let Some(node) = &self.node {
            enter_netns(&mut cmd, node)?;
        }
        collect(cmd, self.stdin.as_deref(), self.timeout)
    }

    /// Starts the plugin without waiting for it (its output is discarded): for a test that
    /// kills it at a moment of its choosing, as a runtime's timeout does.
    pub fn spawn(&self) -> io::Result<std::process::Child> {
        self.refuse_root_namespace();
        let mut cmd = Command::new(&self.plugin);
        cmd.env_clear()
            .env("PATH", host_path())
            .envs(self.env.iter().cloned())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some(node) = &self.node {
            enter_netns(&mut cmd, node)?;
        }
        let mut child = cmd.spawn()?;
        if let Some(mut pipe) = child.stdin.take() {
            use std::io::Write as _;
            // A child killed before it read its stdin closes the pipe: not an error here.
            let _ = pipe.write_all(self.stdin.as_deref().unwrap_or_default());
        }
        Ok(child)
    }

    /// Runs `plugin` in `node` with `vars` and `conf` on stdin, as a node whose administrator
    /// wrote the store settings `conf` names ([`crate::NodeSettings::for_conf`]).
    pub fn run_as_node(plugin: &Path, node: &Netns, vars: &CniVars, conf: &Value) -> Outcome {
        let settings = crate::NodeSettings::for_conf(conf);
        let (k, v) = settings.env();
        Invocation::new(plugin)
            .in_node(node)
            .env(&k, &v)
            .vars(vars)
            .stdin_json(conf)
            .run()
    }

    /// Runs the plugin; panics when it cannot be started.
    pub fn run(&self) -> Outcome {
        self.try_run()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.plugin.display()))
    }

    /// Panics if this would run a network-changing command in the harness's
    /// own (root) namespace.
    fn refuse_root_namespace(&self) {
        let command = self.env_value("CNI_COMMAND").unwrap_or("");
        assert!(
            self.node.is_some() || command.is_empty() || command == "VERSION",
            "refusing to run CNI_COMMAND={command} outside a node namespace"
        );
    }
}

/// The harness's `PATH`, passed on to children.
fn host_path() -> String {
    std::env::var("PATH").unwrap_or_else(|_| FALLBACK_PATH.to_owned())
}
