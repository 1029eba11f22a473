//! The error a CNI call returns to the runtime.

use serde_json::Value;

use crate::process::Outcome;

/// A failed CNI call: the plugin's error object, or a runtime-side failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    /// The CNI error code; [`CniError::RUNTIME`] when no plugin reported
    /// one, 0 when a plugin failed without a parsable error object (as in
    /// libcni).
    pub code: u64,
    /// `msg`.
    pub msg: String,
    /// `details` (empty when absent).
    pub details: String,
    /// `type` of the plugin that failed; empty for list-level failures.
    pub plugin: String,
    /// The failing plugin's stderr, for diagnostics.
    pub stderr: String,
}

impl CniError {
    /// Code for failures of the runtime itself (plugin not found, bad
    /// config, unparsable result); the libcni client prints the same.
    pub const RUNTIME: u64 = 999;

    /// A runtime-side failure.
    pub fn runtime(msg: impl Into<String>) -> CniError {
        CniError {
            code: CniError::RUNTIME,
            msg: msg.into(),
            details: String::new(),
            plugin: String::new(),
            stderr: String::new(),
        }
    }

    /// The error of a plugin that exited non-zero, decoded like libcni's
    /// `RawExec.pluginErr`: the stdout JSON object, else a message quoting
    /// stderr with code 0.
    pub fn from_failure(plugin: &str, outcome: &Outcome) -> CniError {
        let (code, msg, details) = decode(outcome);
        CniError {
            code,
            msg,
            details,
            plugin: plugin.to_owned(),
            stderr: outcome.stderr.clone(),
        }
    }
}

fn decode(outcome: &Outcome) -> (u64, String, String) {
    if outcome.stdout.is_empty() {
        let msg = if outcome.stderr.is_empty() {
            format!(
                "netplugin failed with no error message: exit {}",
                outcome.code
            )
        } else {
            format!("netplugin failed: {:?}", outcome.stderr)
        };
        return (0, msg, String::new());
    }
    match outcome.try_json() {
        Some(v @ Value::Object(_)) => {
            let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            let code = v.get("code").and_then(Value::as_u64).unwrap_or(0);
            (code, field("msg"), field("details"))
        }
        _ => (
            0,
            format!(
                "netplugin failed but error parsing its diagnostic message {:?}",
                outcome.stdout_text()
            ),
            String::new(),
        ),
    }
}

impl std::fmt::Display for CniError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CNI error {}: {}", self.code, self.msg)?;
        if !self.details.is_empty() {
            write!(f, "; {}", self.details)?;
        }
        if !self.plugin.is_empty() {
            write!(f, " (plugin {})", self.plugin)?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}
