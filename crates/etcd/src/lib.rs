//! The etcd v3 client the whereabouts store speaks: etcd's JSON gateway over blocking HTTP/1.1,
//! TLS through rustls, user and password authentication, one member at a time with failover.
//!
//! This crate owns the transport and the messages; what is stored, and how, belongs to the
//! store built on it (`whereabouts::etcd_store`). It must not know about addresses or pools.

use std::fmt;
use std::path::PathBuf;

#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod http;
pub mod json;

/// How to reach etcd.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdConf {
    /// `etcd_endpoints` then whereabouts' `etcd_host`, each `http://` or `https://` (a bare
    /// `host:port` gets `http://`); duplicates removed; never empty.
    pub endpoints: Vec<String>,
    /// `etcd_username` (set together with the password).
    pub username: Option<String>,
    /// `etcd_password` (set together with the username; redacted from `Debug`).
    pub password: Option<String>,
    /// `etcd_ca_cert_file`.
    pub ca_file: Option<PathBuf>,
    /// `etcd_cert_file` (set together with the key file).
    pub cert_file: Option<PathBuf>,
    /// `etcd_key_file` (set together with the cert file).
    pub key_file: Option<PathBuf>,
    /// `etcd_prefix`, starting with `/` and without trailing `/`; default [`DEFAULT_ETCD_PREFIX`].
    pub prefix: String,
    /// `etcd_dial_timeout_ms` (> 0), default [`DEFAULT_ETCD_DIAL_TIMEOUT_MS`].
    pub dial_timeout_ms: u64,
    /// `etcd_request_timeout_ms` (> 0), default [`DEFAULT_ETCD_REQUEST_TIMEOUT_MS`].
    pub request_timeout_ms: u64,
}

// Written by hand so that a logged configuration never shows the password.
impl fmt::Debug for EtcdConf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdConf")
            .field("endpoints", &self.endpoints)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("prefix", &self.prefix)
            .field("dial_timeout_ms", &self.dial_timeout_ms)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .finish()
    }
}
