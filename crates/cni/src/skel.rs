//! The verb dispatcher: environment and stdin in, one verb of a [`Plugin`] called, a result or
//! an error out. Bad input is answered before the plugin is called, so nothing is touched.

use std::io::{Read, Write};

use serde_json::{json, Value};

use crate::config::{parse_json, NetConf};
use crate::env::{Command, Env};
use crate::error::Error;
use crate::result::CniResult;
use crate::version::Version;

/// One call of a verb: the validated environment and configuration.
#[derive(Debug)]
pub struct Call {
    /// The CNI_* environment.
    pub env: Env,
    /// The configuration from stdin.
    pub conf: NetConf,
}

/// What a plugin implements; the dispatcher does the rest.
pub trait Plugin {
    /// One line for a human running the executable without CNI_COMMAND.
    fn about(&self) -> &str;
    /// The CNI_ARGS keys this plugin reads; others need `IgnoreUnknown`.
    fn known_args(&self) -> &[&str] {
        &[]
    }
    /// Where `log_file` and `log_level` are read: the `ipam` object for IPAM plugins.
    fn is_ipam(&self) -> bool {
        false
    }
    /// ADD.
    fn add(&self, call: &Call) -> Result<CniResult, Error>;
    /// DEL: best effort, idempotent.
    fn del(&self, call: &Call) -> Result<(), Error>;
    /// CHECK.
    fn check(&self, call: &Call) -> Result<(), Error>;
    /// STATUS: Ok when ADD could be served.
    fn status(&self, _call: &Call) -> Result<(), Error> {
        Ok(())
    }
    /// GC: release what belongs to attachments outside `conf.valid_attachments`.
    fn gc(&self, _call: &Call) -> Result<(), Error> {
        Ok(())
    }
}

/// What the process prints on stdout and exits with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Bytes for stdout.
    pub stdout: Vec<u8>,
    /// Process exit code.
    pub exit_code: i32,
}

/// Runs the plugin as a CNI executable: reads the process environment and stdin, prints, exits.
pub fn run(plugin: &dyn Plugin) -> ! {
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let outcome = match read {
        Ok(_) => dispatch(plugin, |k| std::env::var(k).ok(), &stdin),
        Err(e) => failure(&Error::io(format!("reading stdin: {e}")), None),
    };
    if std::env::var_os("CNI_COMMAND").is_none_or(|c| c.is_empty()) {
        eprintln!("{}", plugin.about());
        eprintln!(
            "CNI protocol versions supported: {}",
            Version::supported_list()
        );
    }
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&outcome.stdout).and_then(|_| out.flush());
    std::process::exit(outcome.exit_code)
}

/// The whole dispatch, with the environment behind `get` and stdin as bytes (testable seam).
pub fn dispatch(
    plugin: &dyn Plugin,
    get: impl Fn(&str) -> Option<String>,
    stdin: &[u8],
) -> Outcome {
    let env = match Env::from_lookup(get) {
        Ok(env) => env,
        Err(e) => return failure(&e, declared_version(stdin)),
    };
    if env.command == Command::Version {
        return version(stdin);
    }
    let conf = match NetConf::parse(stdin) {
        Ok(conf) => conf,
        Err(e) => return failure(&e, declared_version(stdin)),
    };
    let version = conf.version;
    if let Err(e) = init_logging(plugin, &conf) {
        // DEL and GC must not strand a pod over where its log goes; the others refuse.
        if !matches!(env.command, Command::Del | Command::Gc) {
            return failure(&e, Some(version));
        }
        crate::log_warn!("{} (logging to stderr)", e.msg);
    }
    match call_verb(plugin, Call { env, conf }) {
        Ok(Some(result)) => success(&result),
        Ok(None) => Outcome {
            stdout: Vec::new(),
            exit_code: 0,
        },
        Err(e) => {
            crate::log_error!("{e}");
            failure(&e, Some(version))
        }
    }
}

fn call_verb(plugin: &dyn Plugin, call: Call) -> Result<Option<Value>, Error> {
    let version = call.conf.version;
    gate(call.env.command, version)?;
    match call.env.command {
        Command::Add => {
            call.env.args.check_known(plugin.known_args())?;
            let result = plugin.add(&call)?;
            Ok(Some(result.to_json(version)?))
        }
        Command::Check => {
            call.env.args.check_known(plugin.known_args())?;
            plugin.check(&call).map(|_| None)
        }
        Command::Del => plugin.del(&call).map(|_| None),
        Command::Status => plugin.status(&call).map(|_| None),
        Command::Gc => plugin.gc(&call).map(|_| None),
        Command::Version => unreachable!("answered before the configuration is parsed"),
    }
}

/// The version gates of the reference skeleton: CHECK from 0.4.0, STATUS and GC from 1.1.0.
fn gate(command: Command, version: Version) -> Result<(), Error> {
    let needs = match command {
        Command::Check => Version::V0_4_0,
        Command::Status | Command::Gc => Version::V1_1_0,
        _ => return Ok(()),
    };
    if version >= needs {
        return Ok(());
    }
    Err(Error::incompatible_version(format!(
        "config version does not allow {}: cniVersion {version} is below {needs}",
        command.as_str()
    )))
}

/// VERSION: echoes the requested version with the supported list. Empty stdin asks for the
/// latest; stdin that is not JSON is code 6.
fn version(stdin: &[u8]) -> Outcome {
    let requested = if stdin.iter().all(u8::is_ascii_whitespace) {
        Version::LATEST.as_str().to_string()
    } else {
        match parse_json(stdin) {
            Ok(v) => v
                .get("cniVersion")
                .and_then(Value::as_str)
                .unwrap_or("0.1.0")
                .to_string(),
            Err(e) => return failure(&e, None),
        }
    };
    let body = json!({
        "cniVersion": requested,
        "supportedVersions": Version::ALL.map(Version::as_str),
    });
    Outcome {
        stdout: pretty(&body),
        exit_code: 0,
    }
}

fn init_logging(plugin: &dyn Plugin, conf: &NetConf) -> Result<(), Error> {
    let source = if plugin.is_ipam() {
        conf.raw.get("ipam")
    } else {
        Some(&conf.raw)
    };
    let key = |k: &str| source.and_then(|s| s.get(k)).and_then(Value::as_str);
    let tag = std::env::args().next().unwrap_or_default();
    let tag = tag.rsplit('/').next().unwrap_or("cni");
    crate::log::init(tag, key("log_level"), key("log_file"))
}

/// The declared version of a config that failed to parse, when it can still be read.
fn declared_version(stdin: &[u8]) -> Option<Version> {
    let v: Value = serde_json::from_slice(stdin).ok()?;
    v.get("cniVersion")?.as_str()?.parse().ok()
}

fn success(result: &Value) -> Outcome {
    Outcome {
        stdout: pretty(result),
        exit_code: 0,
    }
}

fn failure(e: &Error, version: Option<Version>) -> Outcome {
    Outcome {
        stdout: pretty(&e.to_json(version.unwrap_or(Version::LATEST))),
        exit_code: 1,
    }
}

fn pretty(v: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).unwrap_or_default();
    out.push(b'\n');
    out
}

#[cfg(test)]
#[path = "skel_tests.rs"]
mod tests;
