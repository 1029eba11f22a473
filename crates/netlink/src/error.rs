//! The one error type of the crate: what was attempted and what the kernel answered.

use std::fmt;

/// `ENOENT`, `ESRCH`, `ENODEV`, `EEXIST`, `EADDRNOTAVAIL`, `EOPNOTSUPP` from errno.h.
const ENOENT: i32 = 2;
const ESRCH: i32 = 3;
const EEXIST: i32 = 17;
const ENODEV: i32 = 19;
const EOPNOTSUPP: i32 = 95;
const EADDRNOTAVAIL: i32 = 99;

/// A failed netlink operation.
#[derive(Debug)]
pub struct Error {
    /// What was attempted, e.g. `add address 10.1.0.2/24 to eth0`.
    pub op: String,
    /// The kernel's errno, when the kernel answered.
    pub errno: Option<i32>,
    detail: String,
}

impl Error {
    pub(crate) fn errno(op: impl Into<String>, errno: i32) -> Error {
        Error {
            op: op.into(),
            errno: Some(errno),
            detail: std::io::Error::from_raw_os_error(errno).to_string(),
        }
    }

    pub(crate) fn io(op: impl Into<String>, e: std::io::Error) -> Error {
        Error {
            op: op.into(),
            errno: e.raw_os_error(),
            detail: e.to_string(),
        }
    }

    pub(crate) fn other(op: impl Into<String>, detail: impl Into<String>) -> Error {
        Error {
            op: op.into(),
            errno: None,
            detail: detail.into(),
        }
    }

    /// The object does not exist (no such device, address or route).
    pub fn is_not_found(&self) -> bool {
        matches!(self.errno, Some(ENOENT | ESRCH | ENODEV | EADDRNOTAVAIL))
    }

    /// The object already exists.
    pub fn is_exists(&self) -> bool {
        self.errno == Some(EEXIST)
    }

    /// The kernel lacks the feature (e.g. bridge VLAN filtering not built in).
    pub fn is_not_supported(&self) -> bool {
        self.errno == Some(EOPNOTSUPP)
    }

    /// Replaces the description of what was attempted.
    pub fn with_op(mut self, op: impl Into<String>) -> Error {
        self.op = op.into();
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "failed to {}: {}", self.op, self.detail)
    }
}

impl std::error::Error for Error {}
