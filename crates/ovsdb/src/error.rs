//! What can go wrong talking to an OVSDB server.

use serde_json::Value;

/// An OVSDB client error. Every variant names the endpoint, method or operation at fault.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An endpoint string cannot be used (bad syntax, or a scheme this client does not speak such
    /// as `ssl:`); nothing was connected.
    #[error(
        "OVSDB endpoint {endpoint:?}: {what} (expected unix:PATH or tcp:IP:PORT, comma-separated)"
    )]
    Endpoint {
        /// The endpoint as written.
        endpoint: String,
        /// What is wrong with it.
        what: String,
    },
    /// Connecting, reading or writing failed (including the server closing the connection).
    #[error("cannot talk to OVSDB at {endpoint}: {source}")]
    Io {
        /// The endpoint (or, when several were tried, the list as given).
        endpoint: String,
        /// The underlying failure.
        source: std::io::Error,
    },
    /// A TLS handshake failed: the server's certificate does not lead to the CA, the server
    /// refused the client's certificate, or the two share no protocol. Retrying does not help.
    #[error("TLS with OVSDB at {endpoint} failed: {what}")]
    Tls {
        /// The endpoint.
        endpoint: String,
        /// rustls' reason.
        what: String,
    },
    /// The server did not answer in time.
    #[error("OVSDB at {endpoint} did not answer in time: {what}")]
    Timeout {
        /// The endpoint.
        endpoint: String,
        /// The request (method and id) and the timeout that expired.
        what: String,
    },
    /// The server sent something that is not valid JSON-RPC 1.0, or a reply nobody asked for.
    #[error("OVSDB at {endpoint} broke the JSON-RPC protocol: {what}")]
    Protocol {
        /// The endpoint.
        endpoint: String,
        /// What was wrong.
        what: String,
    },
    /// The server answered the request with a JSON-RPC error (e.g. `unknown database`).
    #[error("OVSDB {method} failed: {error}")]
    Rpc {
        /// The JSON-RPC method.
        method: String,
        /// The server's `error` member, usually `{"error": .., "details": ..}`.
        error: Value,
    },
    /// An operation failed (the result array had `{"error":..,"details":..}` at `index`), or the
    /// transaction failed as a whole at commit (e.g. "constraint violation" for a duplicate index,
    /// "referential integrity violation"): then `index` is the number of operations and `op` is
    /// `"commit"`. Nothing of the transaction was applied.
    #[error("OVSDB transaction failed at operation {index} ({op}): {error}: {details}")]
    Op {
        /// Position of the failed operation in the transaction (0-based).
        index: usize,
        /// The failed operation's `op` (`"insert"`, `"wait"`, ...), or `"commit"`.
        op: String,
        /// The error string, e.g. `"timed out"`, `"constraint violation"`.
        error: String,
        /// The server's explanation (empty when it gave none).
        details: String,
    },
}

impl Error {
    /// True when the database cannot be reached or does not answer ([`Error::Io`],
    /// [`Error::Timeout`]), or is not served yet (the [`Error::Rpc`] `database not available` of
    /// a cluster member that has not finished joining): retrying later, or with another
    /// endpoint, may help.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Io { .. } | Error::Timeout { .. } => true,
            Error::Rpc { error, .. } => error["error"] == "database not available",
            _ => false,
        }
    }

    /// True when a `wait` operation failed, i.e. what the transaction assumed (see
    /// [`crate::ops::wait_eq`]) was changed by another writer: the optimistic-concurrency race was
    /// lost; read again and retry.
    pub fn is_wait_failed(&self) -> bool {
        matches!(self, Error::Op { op, error, .. } if op == "wait" && error == "timed out")
    }
}

#[cfg(test)]
#[path = "error_tests.rs"]
mod tests;
