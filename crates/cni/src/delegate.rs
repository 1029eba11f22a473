//! Delegation to an IPAM plugin found by `ipam.type` in CNI_PATH: the same environment with only
//! CNI_COMMAND changed, the complete configuration on stdin, its stderr passed through, its result
//! parsed in the version it declares, and its error passed on with its own code.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};

use serde_json::Value;

use crate::env::Command;
use crate::error::Error;
use crate::result::CniResult;
use crate::skel::Call;

/// Finds executable `name` in `path` (CNI_PATH order). The name must be a plain file name.
pub fn find(name: &str, path: &[PathBuf]) -> Result<PathBuf, Error> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(Error::invalid_config(format!(
            "ipam.type {name:?} is not a plugin name (no '/' allowed)"
        )));
    }
    if path.is_empty() {
        return Err(Error::invalid_env(format!(
            "CNI_PATH is empty: it is needed to find the IPAM plugin {name:?}"
        )));
    }
    path.iter()
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
        .ok_or_else(|| {
            let dirs: Vec<String> = path.iter().map(|d| d.display().to_string()).collect();
            Error::invalid_config(format!(
                "IPAM plugin {name:?} (ipam.type) not found in CNI_PATH {}",
                dirs.join(":")
            ))
        })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Starts `plugin`. ETXTBSY ("text file busy") is retried for up to 200 ms: it happens when the
/// executable was just written (an installer copying into /opt/cni/bin, or a test writing a script)
/// and another process forked while the file was still open for writing; it clears by itself.
fn spawn(plugin: &Path, command: Command) -> std::io::Result<std::process::Child> {
    const ETXTBSY: i32 = 26;
    let mut tries = 0;
    loop {
        let started = Process::new(plugin)
            .env("CNI_COMMAND", command.as_str())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        match started {
            Err(e) if e.raw_os_error() == Some(ETXTBSY) && tries < 40 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// Runs `plugin` for `command` with `stdin`, returning its stdout on success.
pub fn exec(plugin: &Path, command: Command, stdin: &[u8]) -> Result<Vec<u8>, Error> {
    let mut child = spawn(plugin, command)
        .map_err(|e| Error::io(format!("cannot run IPAM plugin {}: {e}", plugin.display())))?;
    if let Some(mut input) = child.stdin.take() {
        // A plugin that exits without reading stdin closes the pipe: its answer is what counts.
        let _ = input.write_all(stdin);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::io(format!("waiting for IPAM plugin {}: {e}", plugin.display())))?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    let reported = serde_json::from_slice::<Value>(&out.stdout)
        .ok()
        .and_then(|v| Error::from_json(&v));
    Err(reported.unwrap_or_else(|| {
        Error::internal(format!(
            "IPAM plugin {} failed ({}) without a CNI error: {}",
            plugin.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim()
        ))
    }))
}

fn ipam_plugin(call: &Call) -> Result<PathBuf, Error> {
    let name = call
        .conf
        .ipam_type()
        .ok_or_else(|| Error::invalid_config("missing ipam.type: no IPAM plugin to delegate to"))?;
    find(name, &call.env.path)
}

/// IPAM ADD: the delegate's result, parsed in the version it declares.
pub fn ipam_add(call: &Call) -> Result<CniResult, Error> {
    let plugin = ipam_plugin(call)?;
    let stdout = exec(&plugin, Command::Add, &call.conf.bytes)?;
    let value: Value = serde_json::from_slice(&stdout).map_err(|e| {
        Error::decoding(format!(
            "IPAM plugin {} printed an invalid result: {e}",
            plugin.display()
        ))
    })?;
    CniResult::parse(&value, call.conf.version).map(|(_, r)| r)
}

/// IPAM DEL, CHECK, STATUS or GC: forwarded with the same configuration.
pub fn ipam_forward(call: &Call, command: Command) -> Result<(), Error> {
    let plugin = ipam_plugin(call)?;
    exec(&plugin, command, &call.conf.bytes).map(|_| ())
}

#[cfg(test)]
#[path = "delegate_tests.rs"]
mod tests;
