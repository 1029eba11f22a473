//! The nftables rules of the `bridge` plugin: the MAC spoof check
//! ([`spoofcheck`]) and the IP masquerade ([`masquerade`]), created on ADD and
//! found again on DEL, CHECK and GC by their tags (rule comments and chain
//! names), in the same layout as the reference plugins
//! (containernetworking/plugins), so that rules made by either are found by
//! the other.
//!
//! # What this crate owns, and what it must not do
//!
//! It owns exactly these objects and nothing else:
//!
//! * in table `bridge nat`: the base chain `PREROUTING` (shared with the
//!   reference plugin, created if missing, never deleted), the chains
//!   `cni-br-iface-<ref_id>` and `cni-br-iface-<ref_id>-mac`, and the rules
//!   commented `macspoofchk-<ref_id>`;
//! * in table `inet cni_plugins_masquerade`: the chains `masq_checks` and
//!   `postrouting` and the rules of `masq_checks` whose comment starts with the
//!   hash of a network.
//!
//! It never creates, changes or deletes links, addresses or routes, never
//! flushes a ruleset or a table, and never deletes a rule or chain that it
//! did not find by one of its own tags. Deletions are by rule handle, read
//! back from the kernel just before, inside one transaction with the rest.
//!
//! # Why the `nft` binary
//!
//! The rules are written as nft scripts piped to `nft -f -`: one script is one
//! netlink batch, so every call changes the ruleset in one atomic transaction
//! (all of it applies or none of it does). State is read with
//! `nft -j list ...` and parsed with serde_json. Driving the binary keeps this
//! crate free of a hand-written nf_tables netlink encoder (rule expressions,
//! set and verdict encodings are large and change between kernels) and of any
//! `unsafe`, and the scripts are the very text an operator types to debug.
//! The price is a process per step: one `nft` run costs about 1.5 ms here,
//! and each public call runs two (one list, one apply; the pair again, up to
//! five times, only when a concurrent caller deleted a handle it meant to
//! delete), so a CNI ADD or DEL spends a few milliseconds on it. `nft` is
//! Debian's `nftables` package (1.0.6 at the time of writing, in `/usr/sbin`),
//! found by [`Nft::new`] also when `PATH` lacks the sbin directories.
//!
//! # Network namespaces
//!
//! Every function acts on the network namespace of the *calling thread*. The
//! caller enters the node's (or the container's) namespace with `setns` on
//! that thread first; the `nft` child inherits that namespace because
//! `fork` happens on the calling thread, whatever the other threads of the
//! process are in.
//!
//! # Quoting
//!
//! Interface names and comments are written as nft quoted strings. nft 1.0.6
//! has no escape for `"` inside a quoted string and takes `*` at the end of
//! an interface name as a wildcard, so such values are refused with
//! [`Error::Invalid`] (comments have their double quotes removed, as the
//! reference does). Chain names cannot be quoted in nft 1.0.6 at all, so a
//! `ref_id` must consist of ASCII letters, digits, `_`, `.` and `-` (which
//! every valid container ID and ordinary interface name does).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

pub mod masquerade;
pub mod spoofcheck;

/// What went wrong while running `nft`.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `nft` could not be started, most often because the binary is missing.
    #[error(
        "cannot run `{program}`: {source}; install nftables (Debian/Ubuntu: `apt-get install nftables`) so that `nft` is available"
    )]
    Spawn {
        /// The program that was run (as given to [`Nft::with_program`], or `nft`).
        program: String,
        /// Why it could not be started.
        source: std::io::Error,
    },
    /// `nft` ran and exited non-zero.
    #[error("{what} failed: {stderr}")]
    Failed {
        /// The command and what it was meant to do.
        what: String,
        /// nft's standard error, trimmed (it names the offending script line).
        stderr: String,
    },
    /// `nft`'s JSON output could not be understood.
    #[error("cannot understand the output of {what}: {detail}")]
    Parse {
        /// The command whose output it was.
        what: String,
        /// What was wrong with it.
        detail: String,
    },
    /// A value could not be written safely into an nft script (it holds a
    /// double quote, a control character, a wildcard, or a character nft
    /// does not take in a chain name); nothing was run.
    #[error("refusing to write {what} into an nft script: {reason}")]
    Invalid {
        /// Which value, and the value itself.
        what: String,
        /// Why it was refused.
        reason: String,
    },
}

/// How to run the `nft` binary.
#[derive(Debug, Clone)]
pub struct Nft {
    program: PathBuf,
}

impl Default for Nft {
    fn default() -> Self {
        Nft::new()
    }
}

/// Where `nft` is looked for after `PATH`: a runtime may call the plugin with a `PATH` that
/// lacks the sbin directories, and a DEL that could not find nft would leak the rules.
const FALLBACK_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/bin", "/bin"];

/// How often a list-then-apply is redone when a concurrent caller deleted a handle it planned
/// to delete (nft answers "No such file or directory" and applies nothing).
const RACE_ATTEMPTS: usize = 5;

impl Nft {
    /// `nft`, found in `PATH`, else in /usr/sbin, /sbin, /usr/bin, /bin: the one place the
    /// suite resolves it. Not found, it stays `nft` and every call is [`Error::Spawn`].
    pub fn new() -> Nft {
        let path = std::env::var_os("PATH").unwrap_or_default();
        Nft::with_program(resolve(&path, is_executable_file))
    }

    /// Whether the program is an executable file (what [`Nft::new`] found).
    pub fn is_available(&self) -> bool {
        is_executable_file(&self.program)
    }

    /// The program that runs.
    pub fn program(&self) -> &std::path::Path {
        &self.program
    }

    /// Lists, plans and applies, again from a fresh listing when the transaction failed because
    /// an object it deletes by handle was deleted meanwhile by a concurrent caller (a DEL and a
    /// GC of the same attachment): `plan` returns the script, `None` when nothing is to be done.
    pub(crate) fn list_plan_apply(
        &self,
        purpose: &str,
        mut plan: impl FnMut(&Nft) -> Result<Option<String>, Error>,
    ) -> Result<(), Error> {
        let mut attempt = 1;
        loop {
            let Some(script) = plan(self)? else {
                return Ok(());
            };
            match self.apply_as(&script, purpose) {
                Err(Error::Failed { stderr, .. })
                    if attempt < RACE_ATTEMPTS && stderr.contains("No such file or directory") =>
                {
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// A specific `nft` binary (e.g. `/usr/sbin/nft`).
    pub fn with_program(p: impl Into<PathBuf>) -> Nft {
        Nft { program: p.into() }
    }

    /// Runs `nft -f -` with `script` on stdin; one transaction.
    pub fn apply(&self, script: &str) -> Result<(), Error> {
        self.apply_as(script, "")
    }

    /// Runs `nft -j list <args...>`; `Ok(None)` when the table/chain does not
    /// exist (nft exits 1 with "No such file or directory" on stderr).
    pub fn list_json(&self, args: &[&str]) -> Result<Option<Value>, Error> {
        let what = format!("`{} -j list {}`", self.program.display(), args.join(" "));
        let mut argv = vec!["-j", "list"];
        argv.extend_from_slice(args);
        let out = self.run(&argv, None)?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if stderr.contains("No such file or directory") {
                return Ok(None);
            }
            return Err(Error::Failed {
                what,
                stderr: with_status(stderr, &out.status),
            });
        }
        serde_json::from_slice(&out.stdout)
            .map(Some)
            .map_err(|e| Error::Parse {
                what,
                detail: e.to_string(),
            })
    }

    /// [`Nft::apply`], with `purpose` said in the error.
    pub(crate) fn apply_as(&self, script: &str, purpose: &str) -> Result<(), Error> {
        let mut what = format!("`{} -f -`", self.program.display());
        if !purpose.is_empty() {
            what = format!("{what} ({purpose})");
        }
        let out = self.run(&["-f", "-"], Some(script))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(Error::Failed {
                what,
                stderr: with_status(stderr, &out.status),
            });
        }
        Ok(())
    }

    fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<std::process::Output, Error> {
        let spawn_err = |source| Error::Spawn {
            program: self.program.display().to_string(),
            source,
        };
        let mut child = Command::new(&self.program)
            .args(args)
            // nft's messages come from strerror(3); keep them untranslated so
            // that "No such file or directory" can be recognised.
            .env("LC_ALL", "C")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_err)?;
        let mut write_err = None;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // nft reads the whole script before it prints anything, so writing
            // it all before reading the output cannot dead-lock.
            if let Err(e) = pipe.write_all(text.as_bytes()) {
                write_err = Some(e);
            }
            // Dropping the pipe closes it: nft sees the end of the script.
        }
        let out = child.wait_with_output().map_err(spawn_err)?;
        if let (Some(e), true) = (write_err, out.status.success()) {
            return Err(Error::Failed {
                what: format!("writing the script to `{} -f -`", self.program.display()),
                stderr: e.to_string(),
            });
        }
        Ok(out)
    }
}

/// `nft` in the absolute directories of `path`, then in [`FALLBACK_DIRS`]; plain `nft` when no
/// candidate `is_executable`.
fn resolve(path: &std::ffi::OsStr, is_executable: impl Fn(&std::path::Path) -> bool) -> PathBuf {
    std::env::split_paths(path)
        .filter(|d| d.is_absolute())
        .chain(FALLBACK_DIRS.iter().map(PathBuf::from))
        .map(|d| d.join("nft"))
        .find(|p| is_executable(p))
        .unwrap_or_else(|| PathBuf::from("nft"))
}

fn is_executable_file(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn with_status(stderr: String, status: &std::process::ExitStatus) -> String {
    if stderr.is_empty() {
        format!("nft {status} with nothing on stderr")
    } else {
        stderr
    }
}

// ---------------------------------------------------------------------------
// Writing values into scripts.

/// `value` as an nft quoted string. nft 1.0.6 has no escape for `"` inside a
/// quoted string, and a newline would end the command, so both are refused.
pub(crate) fn quoted(value: &str, what: &str) -> Result<String, Error> {
    if let Some(c) = value.chars().find(|c| *c == '"' || c.is_control()) {
        return Err(invalid(
            what,
            value,
            format!("it contains {c:?}, which an nft quoted string cannot hold"),
        ));
    }
    Ok(format!("\"{value}\""))
}

/// An interface name as an nft quoted string: besides [`quoted`]'s rules, a
/// `*` would make it a wildcard match and a `\` an escape.
pub(crate) fn quoted_ifname(value: &str, what: &str) -> Result<String, Error> {
    if value.is_empty() {
        return Err(invalid(what, value, "it is empty".to_string()));
    }
    if let Some(c) = value.chars().find(|c| *c == '*' || *c == '\\') {
        return Err(invalid(
            what,
            value,
            format!("it contains {c:?}, which nft reads as a wildcard or escape"),
        ));
    }
    quoted(value, what)
}

/// Checks that `value` can stand inside an unquoted chain name (nft 1.0.6
/// cannot quote chain names): ASCII letters, digits, `_`, `.` and `-`.
pub(crate) fn check_name_part(value: &str, what: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(invalid(what, value, "it is empty".to_string()));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(invalid(
            what,
            value,
            format!(
                "it contains {c:?}; an nft chain name takes only ASCII letters, digits, '_', '.' and '-'"
            ),
        ));
    }
    Ok(())
}

pub(crate) fn invalid(what: &str, value: &str, reason: String) -> Error {
    Error::Invalid {
        what: format!("{what} {value:?}"),
        reason,
    }
}

// ---------------------------------------------------------------------------
// Reading `nft -j list` output.

/// One rule of a `nft -j list` output.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RuleView<'a> {
    pub(crate) chain: &'a str,
    pub(crate) handle: u64,
    pub(crate) comment: Option<&'a str>,
    pub(crate) expr: &'a [Value],
}

/// The objects under `"nftables"`.
fn objects<'a>(doc: &'a Value, what: &str) -> Result<&'a [Value], Error> {
    doc.get("nftables")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .ok_or_else(|| Error::Parse {
            what: what.to_string(),
            detail: "no \"nftables\" array at the top".to_string(),
        })
}

/// The names of the chains in a listing.
pub(crate) fn chain_names<'a>(doc: &'a Value, what: &str) -> Result<Vec<&'a str>, Error> {
    let mut names = Vec::new();
    for obj in objects(doc, what)? {
        if let Some(chain) = obj.get("chain") {
            let name = chain
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| Error::Parse {
                    what: what.to_string(),
                    detail: format!("a chain without a name: {chain}"),
                })?;
            names.push(name);
        }
    }
    Ok(names)
}

/// The rules in a listing, in nft's order.
pub(crate) fn rules<'a>(doc: &'a Value, what: &str) -> Result<Vec<RuleView<'a>>, Error> {
    let mut rules = Vec::new();
    for obj in objects(doc, what)? {
        let Some(rule) = obj.get("rule") else {
            continue;
        };
        let bad = |detail: &str| Error::Parse {
            what: what.to_string(),
            detail: format!("{detail}: {rule}"),
        };
        let chain = rule
            .get("chain")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("a rule without a chain"))?;
        let handle = rule
            .get("handle")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad("a rule without a numeric handle"))?;
        let comment = match rule.get("comment") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return Err(bad("a rule whose comment is not a string")),
        };
        let expr = match rule.get("expr") {
            None | Some(Value::Null) => &[][..],
            Some(Value::Array(a)) => a.as_slice(),
            Some(_) => return Err(bad("a rule whose expr is not an array")),
        };
        rules.push(RuleView {
            chain,
            handle,
            comment,
            expr,
        });
    }
    Ok(rules)
}

/// The string compared with `==` to the left-hand side `left` in one of the
/// rule's match statements, e.g. `{"meta":{"key":"iifname"}}`.
fn match_right(expr: &[Value], left: impl Fn(&Value) -> bool) -> Option<&Value> {
    expr.iter().find_map(|stmt| {
        let m = stmt.get("match")?;
        if m.get("op").and_then(Value::as_str) != Some("==") {
            return None;
        }
        if !left(m.get("left")?) {
            return None;
        }
        m.get("right")
    })
}

/// The interface name a rule matches with `iifname "<name>"`.
pub(crate) fn iifname(expr: &[Value]) -> Option<&str> {
    match_right(expr, |left| {
        left.get("meta")
            .and_then(|m| m.get("key"))
            .and_then(Value::as_str)
            == Some("iifname")
    })
    .and_then(Value::as_str)
}

/// The source address a rule matches with `ip saddr == <addr>` or
/// `ip6 saddr == <addr>` (a prefix is written `addr/len`).
pub(crate) fn saddr(expr: &[Value]) -> Option<String> {
    let right = match_right(expr, |left| {
        let Some(p) = left.get("payload") else {
            return false;
        };
        matches!(
            p.get("protocol").and_then(Value::as_str),
            Some("ip" | "ip6")
        ) && p.get("field").and_then(Value::as_str) == Some("saddr")
    })?;
    if let Some(s) = right.as_str() {
        return Some(s.to_string());
    }
    let prefix = right.get("prefix")?;
    Some(format!(
        "{}/{}",
        prefix.get("addr")?.as_str()?,
        prefix.get("len")?.as_u64()?
    ))
}

/// The chain a rule jumps to (`jump <chain>`).
pub(crate) fn jump_target(expr: &[Value]) -> Option<&str> {
    expr.iter().find_map(|stmt| {
        stmt.get("jump")
            .and_then(|j| j.get("target"))
            .and_then(Value::as_str)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_wraps_plain_values_in_double_quotes() {
        assert_eq!(quoted("veth1234", "x").unwrap(), "\"veth1234\"");
        assert_eq!(quoted("a b, c: d", "x").unwrap(), "\"a b, c: d\"");
    }

    #[test]
    fn quoted_refuses_double_quotes_and_newlines() {
        let e = quoted("a\"b", "comment").unwrap_err();
        assert!(matches!(e, Error::Invalid { .. }), "{e:?}");
        assert!(e.to_string().contains("comment"), "{e}");
        assert!(quoted("a\nadd table ip x", "comment").is_err());
    }

    #[test]
    fn quoted_ifname_refuses_wildcards_escapes_and_empty_names() {
        assert!(quoted_ifname("veth*", "host interface").is_err());
        assert!(quoted_ifname("ve\\th", "host interface").is_err());
        assert!(quoted_ifname("", "host interface").is_err());
        assert_eq!(quoted_ifname("veth0", "i").unwrap(), "\"veth0\"");
    }

    #[test]
    fn chain_name_parts_take_only_nft_identifier_characters() {
        assert!(check_name_part("abc.1_2-eth0", "ref_id").is_ok());
        for bad in ["", "a b", "a/b", "a\"b", "a;b", "a{b", "é"] {
            assert!(check_name_part(bad, "ref_id").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn spawn_error_names_the_program_and_says_to_install_nftables() {
        let nft = Nft::with_program("/nonexistent/nft-for-test");
        let e = nft.apply("").unwrap_err();
        assert!(matches!(e, Error::Spawn { .. }), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("/nonexistent/nft-for-test"), "{msg}");
        assert!(msg.contains("install nftables"), "{msg}");
        let e = nft.list_json(&["tables"]).unwrap_err();
        assert!(matches!(e, Error::Spawn { .. }), "{e:?}");
    }

    #[test]
    fn failed_error_carries_the_command_and_trimmed_stderr() {
        // `false` exits 1 without output, like a failing nft would with its message.
        let e = Nft::with_program("false").apply("x").unwrap_err();
        match e {
            Error::Failed { what, stderr } => {
                assert!(what.contains("-f -"), "{what}");
                assert!(stderr.contains("exit status: 1"), "{stderr}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn nft_is_found_in_path_then_in_the_sbin_directories_a_runtime_may_leave_out() {
        let only = |dir: &'static str| move |p: &std::path::Path| p.starts_with(dir);
        let path = std::ffi::OsStr::new("relative:/opt/x/bin:/usr/bin:/bin");
        assert_eq!(
            resolve(path, only("/opt/x")),
            PathBuf::from("/opt/x/bin/nft")
        );
        assert_eq!(
            resolve(path, only("/usr/sbin")),
            PathBuf::from("/usr/sbin/nft")
        );
        assert_eq!(
            resolve(std::ffi::OsStr::new(""), only("/sbin")),
            PathBuf::from("/sbin/nft")
        );
        assert_eq!(resolve(path, |_| false), PathBuf::from("nft"));
        assert_eq!(
            resolve(path, only("relative")),
            PathBuf::from("nft"),
            "relative PATH entries are not used"
        );
        assert_eq!(Nft::default().program, Nft::new().program);
    }

    const PREROUTING: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"chain": {"family": "bridge", "table": "nat", "name": "PREROUTING", "handle": 1, "type": "filter", "hook": "prerouting", "prio": -300, "policy": "accept"}}, {"rule": {"family": "bridge", "table": "nat", "chain": "PREROUTING", "handle": 4, "comment": "macspoofchk-abc-eth0", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "veth123"}}, {"jump": {"target": "cni-br-iface-abc-eth0"}}]}}]}"#;

    #[test]
    fn rules_chains_iifname_and_jump_target_parse_from_real_nft_output() {
        let doc: Value = serde_json::from_str(PREROUTING).unwrap();
        assert_eq!(chain_names(&doc, "t").unwrap(), vec!["PREROUTING"]);
        let rules = rules(&doc, "t").unwrap();
        assert_eq!(rules.len(), 1);
        let r = rules[0];
        assert_eq!(r.chain, "PREROUTING");
        assert_eq!(r.handle, 4);
        assert_eq!(r.comment, Some("macspoofchk-abc-eth0"));
        assert_eq!(iifname(r.expr), Some("veth123"));
        assert_eq!(jump_target(r.expr), Some("cni-br-iface-abc-eth0"));
        assert_eq!(saddr(r.expr), None);
    }

    #[test]
    fn saddr_reads_plain_addresses_and_prefixes() {
        let expr: Value = serde_json::from_str(
            r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "ip6", "field": "saddr"}}, "right": "fd00::5"}}, {"match": {"op": "!=", "left": {"payload": {"protocol": "ip6", "field": "daddr"}}, "right": {"prefix": {"addr": "fd00::", "len": 64}}}}, {"masquerade": null}]"#,
        )
        .unwrap();
        assert_eq!(saddr(expr.as_array().unwrap()).as_deref(), Some("fd00::5"));
        let expr: Value = serde_json::from_str(
            r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "10.0.0.0", "len": 8}}}}]"#,
        )
        .unwrap();
        assert_eq!(
            saddr(expr.as_array().unwrap()).as_deref(),
            Some("10.0.0.0/8")
        );
    }

    #[test]
    fn output_without_an_nftables_array_is_a_parse_error() {
        let doc: Value = serde_json::from_str(r#"{"tables": []}"#).unwrap();
        assert!(matches!(rules(&doc, "t"), Err(Error::Parse { .. })));
        let doc: Value =
            serde_json::from_str(r#"{"nftables": [{"rule": {"chain": "c", "expr": []}}]}"#)
                .unwrap();
        let e = rules(&doc, "t").unwrap_err();
        assert!(e.to_string().contains("handle"), "{e}");
    }
}
