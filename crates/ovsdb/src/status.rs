//! What a server says about one of its databases (the `_Server` database, OVS 2.9 and later).
//!
//! A member of a clustered database forwards writes to the leader, but serves reads from its own
//! copy, also after it lost the cluster: then reads may be stale and writes wait for a quorum that
//! is not there (the client sees [`crate::Error::Timeout`]). `ovn-nbctl --leader-only` (its
//! default) looks at the same row to pick the leader among its endpoints.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::{endpoint, ops, Client, Error};

/// The first pause between two rounds over the endpoints while a cluster has no leader; doubled
/// up to [`MAX_ROUND_PAUSE`].
const FIRST_ROUND_PAUSE: Duration = Duration::from_millis(20);
const MAX_ROUND_PAUSE: Duration = Duration::from_millis(250);

/// One row of `_Server.Database`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseStatus {
    /// `"standalone"`, `"clustered"`, `"relay"` or `"unbacked"`.
    pub model: String,
    /// False when a clustered member has lost contact with its cluster.
    pub connected: bool,
    /// True for a standalone database and for the current leader of a cluster.
    pub leader: bool,
}

impl DatabaseStatus {
    /// Connected and leader: reads are current and writes commit without forwarding.
    pub fn is_connected_leader(&self) -> bool {
        self.connected && self.leader
    }
}

impl Client {
    /// Connects to the member of `endpoints` (a list as [`Client::connect`] takes) that can
    /// serve `db` for writes: a standalone server, or the connected leader of a cluster, as
    /// ovsdb-idl does with `leader_only` (ovn-northd, `ovn-nbctl`). A follower that lost its
    /// cluster serves stale reads and times writes out, and even a connected one forwards every
    /// write: both are passed over. While the cluster elects a leader (the old one killed),
    /// the endpoints are tried again until `timeout`; then, or at once when no member answered
    /// at all, [`Error::Io`] names each member and what it was. `timeout` also bounds every request later.
    pub fn connect_leader(
        endpoints: &str,
        db: &str,
        timeout: Duration,
        tls: Option<&crate::TlsConfig>,
    ) -> Result<Client, Error> {
        let list = endpoint::parse_list(endpoints)?;
        let deadline = Instant::now() + timeout;
        let mut pause = FIRST_ROUND_PAUSE;
        loop {
            let mut seen: Vec<String> = Vec::new();
            let mut failed = Vec::new();
            let mut a_member_answered = false;
            for (text, ep) in &list {
                let left = deadline.saturating_duration_since(Instant::now());
                let wait = left.max(Duration::from_millis(1)).min(timeout);
                let stream = match ep.connect(wait, tls) {
                    Ok(s) => s,
                    Err(e) => {
                        seen.push(format!("{text}: {e}"));
                        failed.push((text.clone(), e));
                        continue;
                    }
                };
                let mut c = Client::from_stream(stream, text.clone(), timeout);
                match c.database_status(db) {
                    Ok(s) if s.model != "clustered" || s.is_connected_leader() => return Ok(c),
                    Ok(s) => {
                        a_member_answered = true;
                        let what = if s.connected {
                            "a follower"
                        } else {
                            "a member not connected to its cluster"
                        };
                        seen.push(format!("{text}: {what}"));
                    }
                    // A server that does not know `db`: the request will say so.
                    Err(Error::Rpc { .. }) => return Ok(c),
                    Err(e) => seen.push(format!("{text}: {e}")),
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            // No member answered at all: no election to wait for.
            if !a_member_answered && failed.len() == list.len() {
                return Err(crate::client::unreachable(endpoints, failed));
            }
            if left.is_zero() || !a_member_answered {
                return Err(Error::Io {
                    endpoint: endpoints.trim().to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotConnected,
                        format!("no leader of {db} within {timeout:?} ({})", seen.join("; ")),
                    ),
                });
            }
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(MAX_ROUND_PAUSE);
        }
    }

    /// The server's view of `db` (`_Server.Database`); [`Error::Rpc`] with `unknown database`
    /// when the server does not serve `db`.
    pub fn database_status(&mut self, db: &str) -> Result<DatabaseStatus, Error> {
        let select = ops::select(
            "Database",
            json!([ops::cond("name", "==", json!(db))]),
            Some(&["model", "connected", "leader"]),
        );
        let results = self.transact("_Server", &[select])?;
        let Some(row) = results[0]["rows"].get(0) else {
            return Err(Error::Rpc {
                method: "transact".into(),
                error: json!({"error": "unknown database",
                              "details": format!("_Server has no Database row named {db}")}),
            });
        };
        Ok(DatabaseStatus {
            model: row["model"].as_str().unwrap_or_default().to_string(),
            connected: row["connected"] == Value::Bool(true),
            leader: row["leader"] == Value::Bool(true),
        })
    }
}
