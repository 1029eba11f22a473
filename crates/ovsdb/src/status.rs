//! What a server says about one of its databases (the `_Server` database, OVS 2.9 and later).
//!
//! A member of a clustered database forwards writes to the leader, but serves reads from its own
//! copy, also after it lost the cluster: then reads may be stale and writes wait for a quorum that
//! is not there (the client sees [`crate::Error::Timeout`]). `ovn-nbctl --leader-only` (its
//! default) looks at the same row to pick the leader among its endpoints.

use serde_json::{json, Value};

use crate::{ops, Client, Error};

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
