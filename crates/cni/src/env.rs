//! The CNI_* environment: which variables each verb requires (empty counts as unset), and the
//! container ID and interface name rules.

use std::path::PathBuf;

use crate::args::CniArgs;
use crate::error::Error;

/// The verbs of the specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Attach.
    Add,
    /// Detach; best effort and idempotent.
    Del,
    /// Verify (0.4.0+).
    Check,
    /// Report supported versions.
    Version,
    /// Report readiness (1.1.0+).
    Status,
    /// Garbage-collect resources of attachments not in the valid list (1.1.0+).
    Gc,
}

impl Command {
    /// Parses CNI_COMMAND; an unknown verb is code 4.
    pub fn parse(s: &str) -> Result<Command, Error> {
        Ok(match s {
            "ADD" => Command::Add,
            "DEL" => Command::Del,
            "CHECK" => Command::Check,
            "VERSION" => Command::Version,
            "STATUS" => Command::Status,
            "GC" => Command::Gc,
            other => {
                return Err(Error::invalid_env(format!(
                "unknown CNI_COMMAND: {other:?} (expected ADD, DEL, CHECK, VERSION, STATUS or GC)"
            )))
            }
        })
    }

    /// The variable names this verb requires, besides CNI_COMMAND (SPEC.md, "Parameters").
    fn required(self) -> &'static [&'static str] {
        match self {
            Command::Add | Command::Check => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME"],
            Command::Gc => &["CNI_PATH"],
            Command::Version | Command::Status => &[],
        }
    }

    /// The verb as CNI_COMMAND spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Version => "VERSION",
            Command::Status => "STATUS",
            Command::Gc => "GC",
        }
    }
}

/// A validated CNI environment.
#[derive(Debug, Clone)]
pub struct Env {
    /// CNI_COMMAND.
    pub command: Command,
    /// CNI_CONTAINERID (empty for VERSION, STATUS, GC).
    pub container_id: String,
    /// CNI_NETNS, when set.
    pub netns: Option<PathBuf>,
    /// CNI_IFNAME (empty for VERSION, STATUS, GC).
    pub ifname: String,
    /// CNI_ARGS, parsed.
    pub args: CniArgs,
    /// CNI_PATH, split on ':'.
    pub path: Vec<PathBuf>,
}

/// Linux's IFNAMSIZ less the terminating NUL.
pub const MAX_IFNAME_LEN: usize = 15;

impl Env {
    /// Reads and validates the environment through `get` (a seam for tests); empty values
    /// count as unset, as libcni exports all six variables.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Env, Error> {
        let var = |name: &str| get(name).filter(|v| !v.is_empty());
        let command = Command::parse(
            &var("CNI_COMMAND").ok_or_else(|| Error::invalid_env(missing(&["CNI_COMMAND"])))?,
        )?;
        let absent: Vec<&str> = command
            .required()
            .iter()
            .copied()
            .filter(|n| var(n).is_none())
            .collect();
        if !absent.is_empty() {
            return Err(Error::invalid_env(missing(&absent)));
        }
        let container_id = var("CNI_CONTAINERID").unwrap_or_default();
        let ifname = var("CNI_IFNAME").unwrap_or_default();
        if matches!(command, Command::Add | Command::Del | Command::Check) {
            validate_container_id(&container_id)?;
            validate_ifname(&ifname)?;
        }
        Ok(Env {
            command,
            container_id,
            netns: var("CNI_NETNS").map(PathBuf::from),
            ifname,
            args: CniArgs::parse(&var("CNI_ARGS").unwrap_or_default())?,
            path: var("CNI_PATH")
                .map(|p| {
                    p.split(':')
                        .filter(|s| !s.is_empty())
                        .map(PathBuf::from)
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// Reads the process environment.
    pub fn from_process() -> Result<Env, Error> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }
}

fn missing(names: &[&str]) -> String {
    format!("required env variables [{}] missing", names.join(","))
}

/// Container ID rule of the specification: `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$` (code 4).
pub fn validate_container_id(id: &str) -> Result<(), Error> {
    let mut chars = id.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok {
        return Ok(());
    }
    Err(Error::invalid_env(format!(
        "CNI_CONTAINERID {id:?} has invalid characters: it must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$"
    )))
}

/// Interface name rule: 1 to 15 bytes, not `.` or `..`, no `/`, `:` or whitespace (code 4).
pub fn validate_ifname(name: &str) -> Result<(), Error> {
    let why = if name.is_empty() {
        "is empty"
    } else if name.len() > MAX_IFNAME_LEN {
        "is longer than 15 bytes"
    } else if name == "." || name == ".." {
        "is . or .."
    } else if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace())
    {
        "contains / or : or whitespace"
    } else {
        return Ok(());
    };
    Err(Error::invalid_env(format!("CNI_IFNAME {name:?} {why}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> Result<Env, Error> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::from_lookup(|k| map.get(k).cloned())
    }

    const ADD: [(&str, &str); 5] = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "abc"),
        ("CNI_NETNS", "/run/netns/x"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
    ];

    #[test]
    fn add_environment_is_read_whole() {
        let e = env(&ADD).unwrap();
        assert_eq!(e.command, Command::Add);
        assert_eq!(
            e.netns.as_deref(),
            Some(std::path::Path::new("/run/netns/x"))
        );
        assert_eq!(e.path.len(), 2);
    }

    #[test]
    fn each_missing_required_variable_is_named() {
        for name in ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"] {
            for blank in [true, false] {
                let pairs: Vec<(&str, &str)> = ADD
                    .iter()
                    .filter_map(|&(k, v)| match (k == name, blank) {
                        (true, true) => Some((k, "")),
                        (true, false) => None,
                        _ => Some((k, v)),
                    })
                    .collect();
                let err = env(&pairs).unwrap_err();
                assert_eq!(err.code, 4);
                assert_eq!(err.msg, format!("required env variables [{name}] missing"));
            }
        }
    }

    #[test]
    fn del_does_not_need_netns_but_gc_needs_path() {
        env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "a"),
            ("CNI_IFNAME", "e"),
        ])
        .unwrap();
        let err = env(&[("CNI_COMMAND", "GC")]).unwrap_err();
        assert!(err.msg.contains("CNI_PATH"));
        env(&[("CNI_COMMAND", "STATUS")]).unwrap();
    }

    #[test]
    fn missing_or_unknown_command_is_code_4() {
        assert!(env(&[]).unwrap_err().msg.contains("CNI_COMMAND"));
        let err = env(&[("CNI_COMMAND", "FROB")]).unwrap_err();
        assert_eq!(err.code, 4);
        assert!(err.msg.contains("FROB"));
    }

    #[test]
    fn container_id_rule() {
        for ok in ["a", "0abc", "a_b.c-d", "cnitool-77383ca0a0715733ca6f"] {
            validate_container_id(ok).unwrap();
        }
        for bad in ["", "-a", "_a", "a b", "a/b", "ä"] {
            assert_eq!(validate_container_id(bad).unwrap_err().code, 4, "{bad}");
        }
    }

    #[test]
    fn interface_name_rule() {
        for ok in ["eth0", "net1", "pod0123456789a", "a.b"] {
            validate_ifname(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "a:b", "a b", "sixteen-chars-xx"] {
            let err = validate_ifname(bad).unwrap_err();
            assert_eq!(err.code, 4, "{bad}");
            assert!(err.msg.contains("CNI_IFNAME"));
        }
    }
}
