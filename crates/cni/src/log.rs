//! Logging that never touches stdout (the runtime reads the result there): stderr by default,
//! or the file named by `log_file`, filtered by `log_level` (whereabouts' keys and levels).

use std::fmt;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

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
    file: Option<PathBuf>,
    tag: Option<String>,
}

static LOGGER: Mutex<Logger> = Mutex::new(Logger {
    level: None,
    file: None,
    tag: None,
});

fn logger() -> MutexGuard<'static, Logger> {
    LOGGER.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sets where and how much to log; the first call wins. Without it: warnings and errors on stderr.
pub fn init(tag: &str, level: Option<&str>, file: Option<&str>) {
    let mut l = logger();
    if l.tag.is_none() {
        l.tag = Some(tag.to_string());
        l.level = level.and_then(Level::parse);
        l.file = file.filter(|f| !f.is_empty()).map(PathBuf::from);
    }
}

/// Fills in what [`init`] left unset (whereabouts' flat file gives `log_level` and `log_file`
/// for every network whose configuration does not).
pub fn fill_in(level: Option<&str>, file: Option<&str>) {
    let mut l = logger();
    if l.level.is_none() {
        l.level = level.and_then(Level::parse);
    }
    if l.file.is_none() {
        l.file = file.filter(|f| !f.is_empty()).map(PathBuf::from);
    }
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
    let (tag, file) = {
        let l = logger();
        (
            l.tag.clone().unwrap_or_else(|| "cni".into()),
            l.file.clone(),
        )
    };
    let line = format!(
        "{} [{}] {tag}[{}]: {}\n",
        timestamp(),
        level.as_str(),
        std::process::id(),
        one_line(&args.to_string())
    );
    // Never through a symlink, never blocking on a FIFO, private to root whatever the umask.
    const O_NOFOLLOW: i32 = 0o400000;
    const O_NONBLOCK: i32 = 0o4000;
    let written = file.is_some_and(|path| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(O_NOFOLLOW | O_NONBLOCK)
            .open(path)
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .is_ok()
    });
    if !written {
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}

/// The longest message a log line carries.
const MAX_LINE_BYTES: usize = 4096;

/// `msg` as one line of printable text: control characters (newlines above all, which would let
/// a peer's answer logged verbatim become a line of its own in the log file) escaped, cut to
/// [`MAX_LINE_BYTES`].
fn one_line(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len().min(MAX_LINE_BYTES));
    for c in msg.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    crate::error::cut(&out, MAX_LINE_BYTES).into_owned()
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
