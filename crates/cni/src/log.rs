//! Logging that never touches stdout (the runtime reads the result there): stderr by default,
//! the node's log file if its settings name one, or the file named by `log_file` when the node
//! lets a configuration put one there ([`crate::node`]), filtered by `log_level` (whereabouts'
//! keys and levels). Every line is one line of printable text, whatever a peer answered.

use std::fmt;
use std::fs::File;
use std::io::Write;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::Error;
use crate::node::NodePaths;
use crate::nodefs;

/// Severity, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Failures.
    Error,
    /// Something unexpected that did not fail the call.
    Warn,
    /// Major steps.
    Info,
    /// Details.
    Debug,
}

impl Level {
    /// Parses whereabouts' level names (panic, error, warning, info, verbose, debug).
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s.to_ascii_lowercase().as_str() {
            "panic" | "error" => Level::Error,
            "warning" | "warn" => Level::Warn,
            "info" => Level::Info,
            "verbose" | "debug" => Level::Debug,
            _ => return None,
        })
    }

    fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warning",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }
}

#[derive(Debug)]
struct Logger {
    /// `None`: not set, warnings and errors.
    level: Option<Level>,
    /// The log file, open for appending; `None`: stderr.
    file: Option<File>,
    /// Whether the configuration named the file (the flat file fills in only what it did not).
    file_named: bool,
    tag: Option<String>,
}

static LOGGER: Mutex<Logger> = Mutex::new(Logger {
    level: None,
    file: None,
    file_named: false,
    tag: None,
});

fn logger() -> MutexGuard<'static, Logger> {
    LOGGER.lock().unwrap_or_else(|e| e.into_inner())
}

/// Opens the log file a configuration names: below the node's `log_dirs`, by
/// [`nodefs::append`]. Code 7 naming `log_file` otherwise; nothing is created then.
fn open_named(file: &str) -> Result<File, Error> {
    let paths = NodePaths::load()?;
    let path = crate::node::named_path("log_file", file, &paths.log_dirs, "log_dirs", &paths)?;
    nodefs::append(&path, &paths.log_dirs).map_err(|e| {
        Error::invalid_config(format!(
            "log_file {}: {e} (log files are made by the plugin, 0600, in a directory only root \
             can write)",
            crate::error::quote_value(&serde_json::Value::String(file.to_string()))
        ))
    })
}

/// The node's own log file (`log_file` in node.json), if it sets one and it can be opened.
fn open_node_default() -> Option<File> {
    let path = NodePaths::load().ok()?.log_file?;
    let roots = [path.parent().unwrap_or(&path).to_path_buf()];
    nodefs::append(&path, &roots).ok()
}

/// Sets where and how much to log; the first call wins. Without a file named: the node's log
/// file, else stderr. A file that may not or cannot be used is an error (code 7) and logging
/// stays on stderr: the caller decides whether that fails the call (ADD) or not (DEL, GC).
pub fn init(tag: &str, level: Option<&str>, file: Option<&str>) -> Result<(), Error> {
    let mut l = logger();
    if l.tag.is_some() {
        return Ok(());
    }
    l.tag = Some(tag.to_string());
    l.level = level.and_then(Level::parse);
    match file.map(str::trim).filter(|f| !f.is_empty()) {
        Some(f) => {
            l.file_named = true;
            l.file = Some(open_named(f)?);
        }
        None => l.file = open_node_default(),
    }
    Ok(())
}

/// Fills in what [`init`] left unset (whereabouts' flat file gives `log_level` and `log_file`
/// for every network whose configuration does not); errors as [`init`].
pub fn fill_in(level: Option<&str>, file: Option<&str>) -> Result<(), Error> {
    let mut l = logger();
    if l.level.is_none() {
        l.level = level.and_then(Level::parse);
    }
    if !l.file_named {
        if let Some(f) = file.map(str::trim).filter(|f| !f.is_empty()) {
            l.file_named = true;
            l.file = Some(open_named(f)?);
        }
    }
    Ok(())
}

/// Whether a message at `level` would be written.
pub fn enabled(level: Level) -> bool {
    level <= logger().level.unwrap_or(Level::Warn)
}

/// Writes one line; failures to log are ignored (a log must never fail a CNI call).
pub fn write(level: Level, args: fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let mut l = logger();
    let tag = l.tag.clone().unwrap_or_else(|| "cni".into());
    let line = format!(
        "{} [{}] {tag}[{}]: {}\n",
        timestamp(),
        level.as_str(),
        std::process::id(),
        one_line(&args.to_string())
    );
    let written = l
        .file
        .as_mut()
        .is_some_and(|f| f.write_all(line.as_bytes()).is_ok());
    if !written {
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}

/// The longest message a log line carries.
const MAX_LINE_BYTES: usize = 4096;

/// `msg` as one line of printable text ([`crate::error::printable`]), cut to [`MAX_LINE_BYTES`].
fn one_line(msg: &str) -> String {
    crate::error::printable(msg, MAX_LINE_BYTES)
}

/// RFC 3339 UTC timestamp with milliseconds, without a date library.
fn timestamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    )
}

/// Days since 1970-01-01 to a (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Logs at error level.
#[macro_export]
macro_rules! log_error { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Error, format_args!($($t)*)) } }
/// Logs at warning level.
#[macro_export]
macro_rules! log_warn { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Warn, format_args!($($t)*)) } }
/// Logs at info level.
#[macro_export]
macro_rules! log_info { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Info, format_args!($($t)*)) } }
/// Logs at debug level.
#[macro_export]
macro_rules! log_debug { ($($t:tt)*) => { $crate::log::write($crate::log::Level::Debug, format_args!($($t)*)) } }

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_415), (2025, 11, 23));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn a_logged_message_is_one_line_of_printable_text() {
        let line = one_line("answer: ok\nssh-ed25519 AAAA attacker\r\u{1b}[2J");
        assert_eq!(line, "answer: ok\\nssh-ed25519 AAAA attacker\\r\\u{1b}[2J");
        assert!(one_line(&"y".repeat(1 << 20)).len() < MAX_LINE_BYTES + 40);
    }

    #[test]
    fn whereabouts_level_names() {
        assert_eq!(Level::parse("verbose"), Some(Level::Debug));
        assert_eq!(Level::parse("panic"), Some(Level::Error));
        assert_eq!(Level::parse("loud"), None);
    }
}
