//! One blocking JSON-RPC 1.0 connection to an OVSDB server.

use std::collections::{BTreeSet, VecDeque};
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::endpoint::{self, Stream};
use crate::framer::Framer;
use crate::transact;
use crate::Error;

/// The shortest wait handed to the kernel: a zero read/write timeout means "block forever" to
/// `setsockopt(SO_RCVTIMEO)`, and std refuses it.
const MIN_WAIT: Duration = Duration::from_millis(1);

/// How much one `read(2)` may take from the socket.
const READ_CHUNK: usize = 32 * 1024;

/// One JSON-RPC 1.0 connection (RFC 7047 section 4) to an OVSDB server.
///
/// Requests are sent one at a time and each waits for its reply, bounded by the client's timeout.
/// While waiting, the client answers the server's `echo` requests itself and queues `update`
/// notifications for [`Client::next_update`]. The server's inactivity probe is only answered
/// while a method of the client runs: a client idle for longer than the probe interval is
/// disconnected by the server, which suits short-lived processes such as CNI plugins.
#[derive(Debug)]
pub struct Client {
    stream: Stream,
    endpoint: String,
    timeout: Duration,
    next_id: u64,
    framer: Framer,
    /// Requests given up on after a timeout: their late replies are dropped, not taken for errors.
    abandoned: BTreeSet<u64>,
    /// `update` notifications read while waiting for a reply: (monitor id, table-updates).
    updates: VecDeque<(Value, Value)>,
}

/// A message the read loop hands back after dealing with the server's own requests.
enum Incoming {
    Reply {
        id: Value,
        result: Value,
        error: Value,
    },
    Update(Value, Value),
}

impl Client {
    /// Connects to the first reachable endpoint of `endpoints`, a comma-separated list written
    /// like `ovn-nbctl --db`: `unix:/path` or `tcp:IP:PORT` (IPv6 as `tcp:[addr]:port`).
    ///
    /// Every entry is parsed before any is tried ([`Error::Endpoint`] for an unusable one). The
    /// `timeout` bounds each connect and, later, every request. When no endpoint connects the
    /// error is [`Error::Io`] naming each endpoint and its failure.
    pub fn connect(endpoints: &str, timeout: Duration) -> Result<Client, Error> {
        Client::connect_tls(endpoints, timeout, None)
    }

    /// [`Client::connect`] where `ssl:HOST:PORT` endpoints are spoken with `tls`. A failed
    /// TLS handshake (a server whose chain does not lead to the CA, a client certificate the
    /// server refuses) is [`Error::Tls`] when no endpoint connected.
    pub fn connect_tls(
        endpoints: &str,
        timeout: Duration,
        tls: Option<&crate::TlsConfig>,
    ) -> Result<Client, Error> {
        let list = endpoint::parse_list(endpoints)?;
        let mut failures = Vec::new();
        for (text, endpoint) in list {
            match endpoint.connect(timeout.max(MIN_WAIT), tls) {
                Ok(stream) => return Ok(Client::from_stream(stream, text, timeout)),
                Err(e) => failures.push((text, e)),
            }
        }
        Err(unreachable(endpoints, failures))
    }

    /// A client over an already connected stream.
    pub(crate) fn from_stream(stream: Stream, endpoint: String, timeout: Duration) -> Client {
        Client {
            stream,
            endpoint,
            timeout,
            next_id: 0,
            framer: Framer::default(),
            abandoned: BTreeSet::new(),
            updates: VecDeque::new(),
        }
    }

    /// The endpoint connected to, as written in the list given to [`Client::connect`].
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Changes the time every later request may take (sending it and reading its reply).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The names of the server's databases (`list_dbs`).
    pub fn list_dbs(&mut self) -> Result<Vec<String>, Error> {
        let result = self.call("list_dbs", json!([]))?;
        let names = result.as_array().and_then(|names| {
            names
                .iter()
                .map(|n| n.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
        });
        names.ok_or_else(|| self.protocol(format!("list_dbs returned {result}")))
    }

    /// The schema of `db` (`get_schema`); [`Error::Rpc`] with `unknown database` when the server
    /// has no such database.
    pub fn get_schema(&mut self, db: &str) -> Result<Value, Error> {
        self.call("get_schema", json!([db]))
    }

    /// Checks that the server answers (`echo`).
    pub fn echo(&mut self) -> Result<(), Error> {
        let params = json!(["multihome"]);
        let result = self.call("echo", params.clone())?;
        if result != params {
            return Err(self.protocol(format!("echo of {params} returned {result}")));
        }
        Ok(())
    }

    /// Runs `ops` on `db` atomically (`transact`).
    ///
    /// `Ok` only when every operation succeeded, with one result object per operation (insert:
    /// `{"uuid":["uuid",..]}`, select: `{"rows":[..]}`, update/mutate/delete: `{"count":n}`,
    /// others `{}`). A failed operation or commit is [`Error::Op`], and then nothing was applied.
    pub fn transact(&mut self, db: &str, ops: &[Value]) -> Result<Vec<Value>, Error> {
        let mut params = Vec::with_capacity(ops.len() + 1);
        params.push(json!(db));
        params.extend(ops.iter().cloned());
        let result = self.call("transact", Value::Array(params))?;
        transact::check_results(ops, result, &self.endpoint)
    }

    /// Starts monitoring `db` (RFC 7047 section 4.1.5) with `requests` (table name to monitor
    /// request) under the monitor id `id`; returns the initial table-updates object. Later
    /// changes arrive through [`Client::next_update`].
    pub fn monitor(&mut self, db: &str, id: Value, requests: Value) -> Result<Value, Error> {
        self.call("monitor", json!([db, id, requests]))
    }

    /// Stops the monitor `id` (`monitor_cancel`) and drops its queued updates.
    pub fn monitor_cancel(&mut self, id: Value) -> Result<(), Error> {
        self.call("monitor_cancel", json!([id.clone()]))?;
        self.updates.retain(|(monitor, _)| *monitor != id);
        Ok(())
    }

    /// Waits up to `timeout` for the next `update` notification: `Some((monitor id,
    /// table-updates))`, or `None` when none came in time. Updates that arrived while another
    /// request was waiting are returned first, in order.
    pub fn next_update(&mut self, timeout: Duration) -> Result<Option<(Value, Value)>, Error> {
        if let Some(update) = self.updates.pop_front() {
            return Ok(Some(update));
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.read_incoming(deadline)? {
                None => return Ok(None),
                Some(Incoming::Update(id, updates)) => return Ok(Some((id, updates))),
                Some(Incoming::Reply { id, .. }) => self.drop_late_reply(&id, "an update")?,
            }
        }
    }

    /// Sends the request `method` with `params` and returns its reply's `result`; a reply with an
    /// `error` is [`Error::Rpc`]. The building block of the methods above, for the methods they
    /// do not cover (e.g. `lock`).
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, Error> {
        let id = self.next_id;
        self.next_id += 1;
        let deadline = Instant::now() + self.timeout;
        let what = format!("{method} (id {id}) within {:?}", self.timeout);
        self.send(
            &json!({"method": method, "params": params, "id": id}),
            deadline,
        )
        .map_err(|e| self.timed_out(e, &what))?;
        loop {
            let Some(incoming) = self.read_incoming(deadline)? else {
                self.abandoned.insert(id);
                return Err(self.timeout_error(&what));
            };
            match incoming {
                Incoming::Update(monitor, updates) => self.updates.push_back((monitor, updates)),
                Incoming::Reply { id: got, .. } if got.as_u64() != Some(id) => {
                    self.drop_late_reply(&got, &what)?
                }
                Incoming::Reply { error, .. } if !error.is_null() => {
                    return Err(Error::Rpc {
                        method: method.to_string(),
                        error,
                    })
                }
                Incoming::Reply { result, .. } => return Ok(result),
            }
        }
    }

    /// Accepts the reply to a request given up on earlier; any other unexpected reply is a
    /// protocol error.
    fn drop_late_reply(&mut self, id: &Value, waiting_for: &str) -> Result<(), Error> {
        match id.as_u64() {
            Some(n) if self.abandoned.remove(&n) => Ok(()),
            _ => Err(self.protocol(format!(
                "reply with unexpected id {id} while waiting for {waiting_for}"
            ))),
        }
    }

    /// Reads until a reply or an update arrives, answering the server's requests on the way;
    /// `None` once `deadline` has passed (after at least one read attempt).
    fn read_incoming(&mut self, deadline: Instant) -> Result<Option<Incoming>, Error> {
        let mut attempted = false;
        loop {
            while let Some(frame) = self.framer.next_frame().map_err(|w| self.protocol(w))? {
                let message: Value = serde_json::from_slice(&frame).map_err(|e| {
                    let text = String::from_utf8_lossy(&frame);
                    self.protocol(format!("invalid JSON ({e}): {text:.200}"))
                })?;
                if let Some(incoming) = self.handle(message, deadline)? {
                    return Ok(Some(incoming));
                }
            }
            if attempted && Instant::now() >= deadline {
                return Ok(None);
            }
            attempted = true;
            self.read_some(deadline)?;
        }
    }

    /// Sorts one message: replies and updates go to the caller, `echo` requests are answered
    /// here, other notifications (`locked`, `stolen`, ...) are ignored.
    fn handle(&mut self, message: Value, deadline: Instant) -> Result<Option<Incoming>, Error> {
        let Value::Object(mut message) = message else {
            return Err(self.protocol(format!("message is not an object: {}", brief(&message))));
        };
        let id = message.remove("id").unwrap_or(Value::Null);
        let Some(method) = message.remove("method") else {
            if id.is_null() {
                let text = brief(&Value::Object(message));
                return Err(self.protocol(format!("reply without an id: {text}")));
            }
            let result = message.remove("result").unwrap_or(Value::Null);
            let error = message.remove("error").unwrap_or(Value::Null);
            return Ok(Some(Incoming::Reply { id, result, error }));
        };
        let params = message.remove("params").unwrap_or(Value::Null);
        match (method.as_str(), id.is_null()) {
            (Some("update"), true) => match params {
                Value::Array(mut p) if p.len() == 2 => {
                    let updates = p.pop().unwrap_or(Value::Null);
                    let monitor = p.pop().unwrap_or(Value::Null);
                    Ok(Some(Incoming::Update(monitor, updates)))
                }
                other => Err(self.protocol(format!("update with params {}", brief(&other)))),
            },
            (_, true) => Ok(None),
            (Some("echo"), false) => {
                let reply = json!({"id": id, "result": params, "error": null});
                self.send(&reply, deadline.max(Instant::now() + self.timeout))
                    .map_err(|e| self.timed_out(e, "the reply to the server's echo"))?;
                Ok(None)
            }
            (_, false) => {
                let reply = json!({"id": id, "result": null, "error": "unknown method"});
                self.send(&reply, deadline.max(Instant::now() + self.timeout))
                    .map_err(|e| self.timed_out(e, "the reply to a server request"))?;
                Ok(None)
            }
        }
    }

    /// Reads what the socket has, waiting at most until `deadline` (at least [`MIN_WAIT`]).
    fn read_some(&mut self, deadline: Instant) -> Result<(), Error> {
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .max(MIN_WAIT);
        self.stream
            .set_read_timeout(Some(wait))
            .map_err(|e| self.io(e))?;
        let mut chunk = [0u8; READ_CHUNK];
        match self.stream.read(&mut chunk) {
            Ok(0) => {
                let what = if self.framer.has_partial() {
                    "the server closed the connection in the middle of a message"
                } else {
                    "the server closed the connection"
                };
                Err(self.io(io::Error::new(io::ErrorKind::UnexpectedEof, what)))
            }
            Ok(n) => {
                self.framer.push(&chunk[..n]);
                Ok(())
            }
            Err(e) if is_retry(&e) => Ok(()),
            Err(e) => Err(self.io(e)),
        }
    }

    /// Writes one message completely before `deadline`. A failed or late write shuts the stream
    /// down: a half-sent message would corrupt everything after it.
    fn send(&mut self, message: &Value, deadline: Instant) -> Result<(), io::Error> {
        let bytes = message.to_string().into_bytes();
        let mut sent = 0;
        while sent < bytes.len() {
            let result = match deadline.checked_duration_since(Instant::now()) {
                Some(wait) if !wait.is_zero() => self
                    .stream
                    .set_write_timeout(Some(wait.max(MIN_WAIT)))
                    .and_then(|()| self.stream.write(&bytes[sent..])),
                _ => Err(io::Error::new(io::ErrorKind::TimedOut, "write timed out")),
            };
            match result {
                Ok(0) => return Err(self.abort_write(io::ErrorKind::WriteZero.into())),
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_retry(&e) && Instant::now() < deadline => {}
                Err(e) => return Err(self.abort_write(e)),
            }
        }
        Ok(())
    }

    fn abort_write(&self, e: io::Error) -> io::Error {
        self.stream.shutdown();
        e
    }

    /// A failed send: [`Error::Timeout`] when it ran out of time, else [`Error::Io`].
    fn timed_out(&self, e: io::Error, what: &str) -> Error {
        if is_retry(&e) {
            self.timeout_error(&format!("sending {what}"))
        } else {
            self.io(e)
        }
    }

    fn timeout_error(&self, what: &str) -> Error {
        Error::Timeout {
            endpoint: self.endpoint.clone(),
            what: what.to_string(),
        }
    }

    fn io(&self, source: io::Error) -> Error {
        Error::Io {
            endpoint: self.endpoint.clone(),
            source,
        }
    }

    fn protocol(&self, what: String) -> Error {
        Error::Protocol {
            endpoint: self.endpoint.clone(),
            what,
        }
    }
}

/// At most the first 200 characters of `value`'s JSON, for error messages.
pub(crate) fn brief(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(200) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text,
    }
}

/// What a socket with a timeout returns when the time ran out (`EAGAIN` on Linux).
fn is_retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// The error for a list of endpoints none of which connected: the single failure as it is, or
/// one naming every endpoint and why it failed.
pub(crate) fn unreachable(endpoints: &str, mut failures: Vec<(String, io::Error)>) -> Error {
    // A handshake that failed is a configuration to fix, not a server to wait for.
    if let Some((endpoint, e)) = failures
        .iter()
        .find(|(_, e)| e.get_ref().is_some_and(|i| i.is::<rustls::Error>()))
    {
        return Error::Tls {
            endpoint: endpoint.clone(),
            what: e.to_string(),
        };
    }
    if failures.len() == 1 {
        let (endpoint, source) = failures.remove(0);
        return Error::Io { endpoint, source };
    }
    let kind = failures
        .last()
        .map_or(io::ErrorKind::NotFound, |(_, e)| e.kind());
    let each: Vec<String> = failures
        .iter()
        .map(|(e, err)| format!("{e}: {err}"))
        .collect();
    Error::Io {
        endpoint: endpoints.trim().to_string(),
        source: io::Error::new(kind, format!("no endpoint connected ({})", each.join("; "))),
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
