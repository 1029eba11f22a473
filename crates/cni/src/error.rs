//! CNI errors: `{cniVersion, code, msg, details}` on stdout with a non-zero exit.

use std::fmt;

use serde_json::json;

use crate::version::Version;

/// Error codes of the specification (SPEC.md, "Error").
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration; the message names key and value.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables, like CNI_COMMAND or CNI_CONTAINERID.
    pub const INVALID_ENVIRONMENT: u32 = 4;
    /// I/O failure.
    pub const IO_FAILURE: u32 = 5;
    /// Failed to decode content (bad JSON, bad result).
    pub const DECODING_FAILURE: u32 = 6;
    /// Invalid network config.
    pub const INVALID_NETWORK_CONFIG: u32 = 7;
    /// Try again later: a transient condition; the runtime may retry.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin is not available (cannot serve ADD).
    pub const NOT_AVAILABLE: u32 = 50;
    /// STATUS: not available, and existing containers may be affected.
    pub const NOT_AVAILABLE_EXISTING_AFFECTED: u32 = 51;
    /// First plugin-specific code.
    pub const PLUGIN_SPECIFIC: u32 = 100;
    /// CHECK found that something the plugin created is missing or different (this suite's
    /// plugin-specific code for every CHECK discrepancy).
    pub const CHECK_FAILED: u32 = 100;
    /// The reference skeleton's code for an unclassified internal failure.
    pub const INTERNAL: u32 = 999;
}

/// An error as the CNI specification defines it; what a plugin prints when a verb fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// The CNI error code (see [`code`]).
    pub code: u32,
    /// A short message naming the key, value or resource at fault.
    pub msg: String,
    /// Longer details; may be empty.
    pub details: String,
}

impl Error {
    /// An error with the given code and message.
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        Error {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// Adds details to the error.
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// Code 1.
    pub fn incompatible_version(msg: impl Into<String>) -> Self {
        Self::new(code::INCOMPATIBLE_VERSION, msg)
    }

    /// Code 2.
    pub fn unsupported_field(msg: impl Into<String>) -> Self {
        Self::new(code::UNSUPPORTED_FIELD, msg)
    }

    /// Code 3.
    pub fn unknown_container(msg: impl Into<String>) -> Self {
        Self::new(code::UNKNOWN_CONTAINER, msg)
    }

    /// Code 4.
    pub fn invalid_env(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_ENVIRONMENT, msg)
    }

    /// Code 5.
    pub fn io(msg: impl Into<String>) -> Self {
        Self::new(code::IO_FAILURE, msg)
    }

    /// Code 6.
    pub fn decoding(msg: impl Into<String>) -> Self {
        Self::new(code::DECODING_FAILURE, msg)
    }

    /// Code 7.
    pub fn invalid_config(msg: impl Into<String>) -> Self {
        Self::new(code::INVALID_NETWORK_CONFIG, msg)
    }

    /// Code 11.
    pub fn try_again_later(msg: impl Into<String>) -> Self {
        Self::new(code::TRY_AGAIN_LATER, msg)
    }

    /// Code 50.
    pub fn not_available(msg: impl Into<String>) -> Self {
        Self::new(code::NOT_AVAILABLE, msg)
    }

    /// Code 999: a failure that fits no other code.
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::new(code::INTERNAL, msg)
    }

    /// The outcome of a best-effort verb (DEL, GC) that tried every step: Ok without errors,
    /// else the first error with the others' messages as details.
    pub fn joined(mut errors: Vec<Error>) -> Result<(), Error> {
        if errors.is_empty() {
            return Ok(());
        }
        let first = errors.remove(0);
        if errors.is_empty() {
            return Err(first);
        }
        let rest: Vec<String> = errors.iter().map(|e| e.msg.clone()).collect();
        Err(first.with_details(format!("also: {}", rest.join("; "))))
    }

    /// Prefixes the message with context, keeping code and details.
    pub fn context(mut self, what: impl fmt::Display) -> Self {
        self.msg = format!("{what}: {}", self.msg);
        self
    }

    /// The error's JSON in the given version. Codes 4 to 7 only exist from 1.0.0, but every
    /// runtime reads the number as it is, so the code is never rewritten.
    pub fn to_json(&self, version: Version) -> serde_json::Value {
        // What a runtime shows (pod events, logs) stays readable whatever value a key held: a
        // 10 MB string in a config key must not come back as a 10 MB error.
        json!({
            "cniVersion": version.as_str(),
            "code": self.code,
            "msg": printable(&self.msg, MAX_MSG_BYTES),
            "details": printable(&self.details, MAX_DETAILS_BYTES),
        })
    }

    /// Parses an error printed by another plugin (a delegate); `None` if it is not one.
    pub fn from_json(value: &serde_json::Value) -> Option<Error> {
        let code = u32::try_from(value.get("code")?.as_u64()?).ok()?;
        let text = |k: &str| value.get(k).and_then(|v| v.as_str()).unwrap_or_default();
        Some(Error {
            code,
            msg: text("msg").to_string(),
            details: text("details").to_string(),
        })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", cut(&self.msg, MAX_MSG_BYTES), self.code)?;
        if !self.details.is_empty() {
            write!(f, ": {}", cut(&self.details, MAX_DETAILS_BYTES))?;
        }
        Ok(())
    }
}

/// The longest `msg` an error prints.
pub const MAX_MSG_BYTES: usize = 2048;
/// The longest `details` an error prints.
pub const MAX_DETAILS_BYTES: usize = 4096;

/// `s` cut to at most `max` bytes at a character boundary, saying how much was left out.
pub fn cut(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{}... ({} bytes cut)", &s[..end], s.len() - end))
}

/// `s` as one line of printable text: control characters (newlines above all, which would let a
/// peer's answer or a file's line become a line of its own where the text is shown or logged)
/// escaped, then cut to `max` bytes.
pub fn printable(s: &str, max: usize) -> String {
    if !s.chars().any(char::is_control) {
        return cut(s, max).into_owned();
    }
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    cut(&out, max).into_owned()
}

/// A configuration value as an error message quotes it: JSON, cut to 128 bytes.
pub fn quote_value(v: &serde_json::Value) -> String {
    cut(&v.to_string(), 128).into_owned()
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::io(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joined_keeps_the_first_error_and_lists_the_others() {
        assert!(Error::joined(vec![]).is_ok());
        let one = Error::joined(vec![Error::io("disk")]).unwrap_err();
        assert_eq!((one.code, one.details.as_str()), (5, ""));
        let e = Error::joined(vec![
            Error::io("a"),
            Error::internal("b"),
            Error::internal("c"),
        ])
        .unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str(), e.details.as_str()),
            (5, "a", "also: b; c")
        );
    }

    #[test]
    fn json_shape_has_all_four_keys() {
        let e = Error::invalid_config("bad").with_details("more");
        assert_eq!(
            e.to_json(Version::V1_0_0),
            json!({"cniVersion": "1.0.0", "code": 7, "msg": "bad", "details": "more"})
        );
    }

    #[test]
    fn parses_a_delegates_error_and_rejects_a_result() {
        let e = Error::from_json(&json!({"code": 11, "msg": "later"})).unwrap();
        assert_eq!(
            (e.code, e.msg.as_str(), e.details.as_str()),
            (11, "later", "")
        );
        assert!(Error::from_json(&json!({"cniVersion": "1.0.0", "ips": []})).is_none());
    }

    #[test]
    fn context_keeps_code() {
        let e = Error::io("disk").context("ipam");
        assert_eq!((e.code, e.msg.as_str()), (5, "ipam: disk"));
    }
}

#[cfg(test)]
mod cut_tests {
    use super::*;

    #[test]
    fn a_huge_value_in_an_error_is_cut_to_a_sane_length() {
        let huge = "x".repeat(10 << 20);
        let e = Error::invalid_config(format!("ipam.range {huge:?} is not a CIDR"));
        let json = e.to_json(Version::LATEST).to_string();
        assert!(json.len() < MAX_MSG_BYTES + 200, "{} bytes", json.len());
        assert!(json.contains("bytes cut"));
        assert!(e.to_string().len() < MAX_MSG_BYTES + 100);
        let multibyte = "é".repeat(MAX_MSG_BYTES);
        assert!(cut(&multibyte, MAX_MSG_BYTES).len() <= MAX_MSG_BYTES + 30);
    }

    #[test]
    fn an_error_carries_a_peers_newlines_only_escaped() {
        let e = Error::try_again_later("etcd answered \"boom\nssh-ed25519 AAAA x\r\"")
            .with_details("line one\nline two");
        let json = e.to_json(Version::LATEST);
        assert_eq!(
            json["msg"],
            "etcd answered \"boom\\nssh-ed25519 AAAA x\\r\""
        );
        assert_eq!(json["details"], "line one\\nline two");
    }
}
