//! A fake etcd on socket pairs (no port is opened anywhere), for tests of the gateway client and
//! of what is built on it: each dial is a new socket pair served by a handler that sees every
//! request and writes the answer bytes.
#![allow(clippy::unwrap_used, missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::http::{Dial, Endpoint, Error, Gateway, Transport};

/// `s` in base64, as the gateway's JSON carries keys and values.
pub fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A request the fake received.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request path.
    pub path: String,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: Value,
}

impl Seen {
    /// A header by name, case-insensitive.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What answers a request (the bytes of the HTTP answer; empty: never answer).
pub type Handler = Arc<dyn Fn(&Seen, usize) -> Vec<u8> + Send + Sync>;

/// Serves requests on one end of a socket pair until the client hangs up.
fn serve(stream: UnixStream, handler: Handler, seen: Arc<Mutex<Vec<Seen>>>) {
    let mut writer = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split(' ').nth(1).unwrap_or_default().to_string();
        let mut headers = Vec::new();
        let mut length = 0;
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (n, v) = h.split_once(':').unwrap();
            if n.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap();
            }
            headers.push((n.to_string(), v.trim().to_string()));
        }
        let mut body = vec![0; length];
        r.read_exact(&mut body).unwrap();
        let req = Seen {
            path,
            headers,
            body: serde_json::from_slice(&body).unwrap(),
        };
        let n = {
            let mut s = seen.lock().unwrap();
            s.push(req.clone());
            s.len() - 1
        };
        let answer = handler(&req, n);
        if answer.is_empty() {
            // Never answer (the client's timeout must end the wait).
            std::thread::sleep(Duration::from_secs(3));
            return;
        }
        if writer.write_all(&answer).is_err() {
            return;
        }
        if answer.windows(17).any(|w| w == b"Connection: close") {
            return;
        }
    }
}

/// The dialer: every dial is a new socket pair served by the handler.
struct FakeEtcd {
    handler: Handler,
    seen: Arc<Mutex<Vec<Seen>>>,
    dials: Arc<Mutex<Vec<String>>>,
    /// Endpoints whose dial fails as a dead member's would.
    dead: Vec<String>,
}

impl Dial for FakeEtcd {
    fn dial(&mut self, endpoint: &Endpoint, _: Duration) -> Result<Box<dyn Transport>, Error> {
        self.dials.lock().unwrap().push(endpoint.url.clone());
        if self.dead.contains(&endpoint.url) {
            return Err(Error::Unreachable(format!(
                "cannot connect to {}: Connection refused",
                endpoint.url
            )));
        }
        let (client, server) = UnixStream::pair().unwrap();
        let (handler, seen) = (self.handler.clone(), self.seen.clone());
        std::thread::spawn(move || serve(server, handler, seen));
        Ok(Box::new(client))
    }
}

/// What the fake saw.
#[derive(Debug)]
pub struct Fake {
    seen: Arc<Mutex<Vec<Seen>>>,
    dials: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    /// The requests so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    /// The endpoints dialled so far.
    pub fn dials(&self) -> Vec<String> {
        self.dials.lock().unwrap().clone()
    }
}

/// A gateway to a fake etcd: `handler` answers each request; `dead` endpoints refuse dials.
pub fn fake(
    endpoints: &[&str],
    dead: &[&str],
    credentials: Option<(&str, &str)>,
    handler: impl Fn(&Seen, usize) -> Vec<u8> + Send + Sync + 'static,
) -> (Gateway, Fake) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let dials = Arc::new(Mutex::new(Vec::new()));
    let dialer = FakeEtcd {
        handler: Arc::new(handler),
        seen: seen.clone(),
        dials: dials.clone(),
        dead: dead.iter().map(|s| s.to_string()).collect(),
    };
    let gw = Gateway::with_dialer(
        endpoints
            .iter()
            .map(|e| Endpoint::parse(e).unwrap())
            .collect(),
        Box::new(dialer),
        Duration::from_secs(1),
        credentials.map(|(u, p)| (u.to_string(), p.to_string())),
    );
    (gw, Fake { seen, dials })
}

/// A 200 answer with `body`, as etcd's gateway writes it.
pub fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nGrpc-Metadata-Content-Type: \
         application/grpc\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// An error answer as etcd 3.4's gateway writes it: chunked, with a trailer.
pub fn etcd_error(status: &str, code: i32, message: &str) -> Vec<u8> {
    let body = json!({"error": message, "message": message, "code": code}).to_string();
    let (a, b) = body.split_at(body.len() / 2);
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nTrailer: \
         Grpc-Trailer-Content-Type\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n\
         0\r\nGrpc-Trailer-Content-Type: application/grpc\r\n\r\n",
        a.len(),
        b.len()
    )
    .into_bytes()
}

/// A deadline two seconds away.
pub fn soon() -> Instant {
    Instant::now() + Duration::from_secs(2)
}
