//! How the etcd store talks to etcd: a small blocking HTTP/1.1 client for etcd v3's JSON gateway,
//! which every etcd 3.4+ member serves on its client URLs (`POST /v3/kv/range`, `/v3/kv/txn`,
//! `/v3/auth/authenticate`, ...; the messages are in [`crate::json`]).
//!
//! Why the gateway and not gRPC: a plugin process lives for one call, so every call pays for a
//! new connection, which is cheaper for etcd over HTTP/1.1 than over gRPC (HTTP/2), and the client
//! needs no async runtime, no HTTP/2 stack and no protobuf code generation. The price: each
//! request costs etcd more through the gateway (protobuf's JSON mapping by reflection, and a
//! second gRPC hop inside the member). Measured on etcd 3.4.23, three members and 24 concurrent
//! clients on 2 cores, with the same requests per ADD: 3.4 to 3.8 ms of etcd CPU per ADD through
//! the gateway, 2.4 to 2.5 ms through gRPC (etcd-client).
//!
//! - One keep-alive connection per process, to one member; [`Gateway::next_member`] moves to
//!   the next one (the store does after a transient failure).
//! - Requests carry `Content-Length`; answers are read with `Content-Length`, `Transfer-Encoding:
//!   chunked` (etcd's error answers, with trailers) or up to the connection's end.
//! - Every request asks for a leader (`Grpc-Metadata-Hasleader: true`, gRPC's "require leader"):
//!   a member that knows it has none answers "no leader" at once; one that has not noticed yet
//!   is cut off by the read timeout, which is what is left of the caller's deadline.
//! - `https://` endpoints use TLS through rustls (ring): the server is checked against
//!   `etcd_ca_cert_file`, or the system bundle [`SYSTEM_CA_BUNDLE`] without one; a client
//!   certificate and key are presented when configured (etcd's `--client-cert-auth`).
//! - With a user and password, the first request authenticates (`/v3/auth/authenticate`) and
//!   the token goes in the `Authorization` header of the others; an expired token is renewed
//!   once per request.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::json::{AuthenticateRequest, AuthenticateResponse, ErrorBody, AUTHENTICATE};
use crate::EtcdConf;

/// The CA bundle `https://` endpoints are checked against when no CA file is configured.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// etcd's client port, when an endpoint names none.
pub const DEFAULT_PORT: u16 = 2379;
/// Longest status or header line accepted.
const MAX_LINE: usize = 16 * 1024;
/// Most header lines accepted in one answer.
const MAX_HEADERS: usize = 256;
/// Largest body accepted (a listing of a big pool is tens of MiB).
const MAX_BODY: usize = 1 << 30;

/// A connection: TCP, TLS over TCP, or (in tests) one end of a socket pair.
pub trait Transport: Read + Write + Send {
    /// Read and write timeouts of what follows.
    fn set_timeouts(&self, timeout: Duration) -> io::Result<()>;
}

impl Transport for TcpStream {
    fn set_timeouts(&self, timeout: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(timeout))?;
        self.set_write_timeout(Some(timeout))
    }
}

impl Transport for UnixStream {
    fn set_timeouts(&self, timeout: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(timeout))?;
        self.set_write_timeout(Some(timeout))
    }
}

impl Transport for rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    fn set_timeouts(&self, timeout: Duration) -> io::Result<()> {
        self.sock.set_timeouts(timeout)
    }
}

/// Why a request got no usable answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// No answer: the member could not be reached, the connection broke, or it did not answer
    /// in time. Another member may answer.
    Unreachable(String),
    /// TLS failed: the server's certificate is not trusted, or the server refused ours.
    /// Retrying does not help.
    Tls(String),
    /// etcd answered with an error.
    Etcd {
        /// The member that answered.
        endpoint: String,
        /// The gRPC status code (14 unavailable, 16 unauthenticated, 3 invalid argument, ...).
        code: i32,
        /// etcd's message (`etcdserver: no leader`, ...).
        message: String,
    },
    /// An answer that is not etcd's gateway's (an HTTP error page, JSON of another shape).
    Unexpected(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Unreachable(m) | Error::Tls(m) | Error::Unexpected(m) => f.write_str(m),
            Error::Etcd {
                endpoint,
                code,
                message,
            } => write!(f, "{endpoint} answered: {message} (code {code})"),
        }
    }
}

/// A failure to read an HTTP answer.
#[derive(Debug)]
pub enum HttpError {
    /// The connection failed, timed out or closed early.
    Io(io::Error),
    /// What came back is not HTTP/1.x as this client reads it.
    Malformed(String),
}

impl From<io::Error> for HttpError {
    fn from(e: io::Error) -> HttpError {
        HttpError::Io(e)
    }
}

/// One HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// The connection can carry the next request.
    pub keep_alive: bool,
}

/// Writes `POST path` with a JSON body, in one write.
pub fn write_request<W: Write + ?Sized>(
    w: &mut W,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<()> {
    let mut req = Vec::with_capacity(256 + body.len());
    write!(
        req,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Accept: application/json\r\nContent-Length: {}\r\n",
        body.len()
    )?;
    for (name, value) in headers {
        write!(req, "{name}: {value}\r\n")?;
    }
    req.extend_from_slice(b"\r\n");
    req.extend_from_slice(body);
    w.write_all(&req)?;
    w.flush()
}

/// One line without its CRLF (or bare LF); at most [`MAX_LINE`] bytes.
fn read_line<R: BufRead + ?Sized>(r: &mut R) -> Result<String, HttpError> {
    let mut line = Vec::new();
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Err(HttpError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection closed in the middle of an answer",
            )));
        }
        let (chunk, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..=i], true),
            None => (buf, false),
        };
        line.extend_from_slice(chunk);
        let n = chunk.len();
        r.consume(n);
        if line.len() > MAX_LINE {
            return Err(HttpError::Malformed(format!(
                "a header line longer than {MAX_LINE} bytes"
            )));
        }
        if done {
            break;
        }
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| HttpError::Malformed("a header line is not UTF-8".into()))
}

fn read_exact_into<R: BufRead + ?Sized>(
    r: &mut R,
    body: &mut Vec<u8>,
    n: usize,
) -> Result<(), HttpError> {
    if body.len().saturating_add(n) > MAX_BODY {
        return Err(HttpError::Malformed(format!(
            "a body larger than {MAX_BODY} bytes"
        )));
    }
    let start = body.len();
    body.resize(start + n, 0);
    r.read_exact(&mut body[start..]).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            HttpError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection closed in the middle of a body",
            ))
        } else {
            HttpError::Io(e)
        }
    })
}

/// A `Transfer-Encoding: chunked` body: chunks, then trailers up to an empty line.
fn read_chunked<R: BufRead + ?Sized>(r: &mut R) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r)?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| HttpError::Malformed(format!("chunk size {line:?} is not hexadecimal")))?;
        if size == 0 {
            for _ in 0..=MAX_HEADERS {
                if read_line(r)?.is_empty() {
                    return Ok(body);
                }
            }
            return Err(HttpError::Malformed(format!(
                "more than {MAX_HEADERS} trailers"
            )));
        }
        read_exact_into(r, &mut body, size)?;
        if !read_line(r)?.is_empty() {
            return Err(HttpError::Malformed(
                "a chunk is longer than its size says".into(),
            ));
        }
    }
}

/// Reads one answer (skipping `100 Continue` and other interim ones).
pub fn read_response<R: BufRead + ?Sized>(r: &mut R) -> Result<Response, HttpError> {
    if r.fill_buf()?.is_empty() {
        return Err(HttpError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the connection closed without an answer",
        )));
    }
    loop {
        let status_line = read_line(r)?;
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        if !version.starts_with("HTTP/1.") {
            return Err(HttpError::Malformed(format!(
                "{status_line:?} is not an HTTP/1.x status line"
            )));
        }
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .filter(|s| (100..1000).contains(s))
            .ok_or_else(|| HttpError::Malformed(format!("no status code in {status_line:?}")))?;
        let mut length: Option<usize> = None;
        let mut chunked = false;
        let mut keep_alive = version != "HTTP/1.0";
        let mut count = 0;
        loop {
            let line = read_line(r)?;
            if line.is_empty() {
                break;
            }
            count += 1;
            if count > MAX_HEADERS {
                return Err(HttpError::Malformed(format!(
                    "more than {MAX_HEADERS} headers"
                )));
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(HttpError::Malformed(format!("header line {line:?}")));
            };
            let value = value.trim();
            match name.trim().to_ascii_lowercase().as_str() {
                "content-length" => {
                    let n: usize = value
                        .parse()
                        .map_err(|_| HttpError::Malformed(format!("Content-Length {value:?}")))?;
                    if length.is_some_and(|l| l != n) {
                        return Err(HttpError::Malformed("two Content-Length headers".into()));
                    }
                    length = Some(n);
                }
                "transfer-encoding" => {
                    let last = value.rsplit(',').next().unwrap_or_default().trim();
                    if !last.eq_ignore_ascii_case("chunked") {
                        return Err(HttpError::Malformed(format!(
                            "Transfer-Encoding {value:?} is not supported"
                        )));
                    }
                    chunked = true;
                }
                "connection" => {
                    for token in value.split(',').map(str::trim) {
                        if token.eq_ignore_ascii_case("close") {
                            keep_alive = false;
                        } else if token.eq_ignore_ascii_case("keep-alive") {
                            keep_alive = true;
                        }
                    }
                }
                _ => {}
            }
        }
        if (100..200).contains(&status) {
            continue;
        }
        let body = if status == 204 || status == 304 {
            Vec::new()
        } else if chunked {
            read_chunked(r)?
        } else if let Some(n) = length {
            let mut body = Vec::with_capacity(n.min(1 << 20));
            read_exact_into(r, &mut body, n)?;
            body
        } else {
            // Delimited by the end of the connection.
            keep_alive = false;
            let mut body = Vec::new();
            r.take(MAX_BODY as u64 + 1).read_to_end(&mut body)?;
            if body.len() > MAX_BODY {
                return Err(HttpError::Malformed(format!(
                    "a body larger than {MAX_BODY} bytes"
                )));
            }
            body
        };
        return Ok(Response {
            status,
            body,
            keep_alive,
        });
    }
}

/// One member's client URL, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// As configured (`https://10.0.0.1:2379`).
    pub url: String,
    /// TLS or not.
    pub https: bool,
    /// Host name or address (without brackets).
    pub host: String,
    /// Port ([`DEFAULT_PORT`] when the URL names none).
    pub port: u16,
}

impl Endpoint {
    /// `http://host:port`, `https://host:port`, `https://[v6]:port` (a path is ignored).
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let bad = |why: &str| format!("etcd endpoint {url:?}: {why}");
        let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
        let https = match scheme {
            "http" => false,
            "https" => true,
            _ => return Err(bad("the scheme must be http or https")),
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (host, after) = v6.split_once(']').ok_or_else(|| bad("no closing ]"))?;
                (host, after.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let port = match port {
            None => DEFAULT_PORT,
            Some(p) => p.parse().map_err(|_| bad("the port is not a number"))?,
        };
        Ok(Endpoint {
            url: url.to_string(),
            https,
            host: host.to_string(),
            port,
        })
    }

    /// `host:port` for the Host header (an IPv6 address in brackets).
    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The TLS side of the configuration, and what to say when it fails.
#[derive(Clone)]
struct Tls {
    config: Arc<rustls::ClientConfig>,
    /// What the server's certificate is checked against, for messages.
    trust: String,
    /// Which client certificate is presented, for messages.
    identity: Option<String>,
}

/// A TLS file: through [`cni::nodefs::read`] (only root can change the path to it, a regular
/// file of bounded size, never a link in last place; what it holds is never repeated).
fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    cni::nodefs::read(path, false)
        .map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let pem = read_file(path, what)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        // The PEM parser's error quotes the offending line: never repeat a file's content.
        .map_err(|_| format!("{what} {}: not a PEM file of certificates", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{what} {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(certs)
}

/// The TLS configuration `conf` asks for; None when nothing of it is TLS.
fn load_tls(conf: &EtcdConf) -> Result<Option<Tls>, String> {
    let any_https = conf.endpoints.iter().any(|e| e.starts_with("https://"));
    if !any_https && conf.ca_file.is_none() && conf.cert_file.is_none() {
        return Ok(None);
    }
    let mut roots = rustls::RootCertStore::empty();
    let trust = match &conf.ca_file {
        Some(ca) => {
            let what = "ipam.etcd_ca_cert_file";
            for cert in read_certs(ca, what)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("{what} {}: {e}", ca.display()))?;
            }
            format!("{what} {}", ca.display())
        }
        None => {
            let bundle = Path::new(SYSTEM_CA_BUNDLE);
            let certs = read_certs(bundle, "the system CA bundle")?;
            roots.add_parsable_certificates(certs);
            format!("the system CA bundle {SYSTEM_CA_BUNDLE} (ipam.etcd_ca_cert_file is not set)")
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots);
    let (config, identity) = match (&conf.cert_file, &conf.key_file) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert, "ipam.etcd_cert_file")?;
            let key_pem = read_file(key, "ipam.etcd_key_file")?;
            let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| {
                format!(
                    "ipam.etcd_key_file {}: holds no PEM private key",
                    key.display()
                )
            })?;
            let config = builder.with_client_auth_cert(chain, private).map_err(|e| {
                format!(
                    "ipam.etcd_cert_file {} with ipam.etcd_key_file {}: {e}",
                    cert.display(),
                    key.display()
                )
            })?;
            (
                config,
                Some(format!("ipam.etcd_cert_file {}", cert.display())),
            )
        }
        _ => (builder.with_no_client_auth(), None),
    };
    Ok(Some(Tls {
        config: Arc::new(config),
        trust,
        identity,
    }))
}

/// What went wrong in TLS, in words an operator can act on.
fn describe_tls(url: &str, e: &rustls::Error, tls: Option<&Tls>) -> String {
    let (trust, identity) = tls.map_or(("the configured CA", None), |t| {
        (t.trust.as_str(), t.identity.as_deref())
    });
    match e {
        rustls::Error::InvalidCertificate(why) => format!(
            "TLS with {url}: etcd's certificate is not trusted ({why:?}): it is checked against \
             {trust}"
        ),
        rustls::Error::AlertReceived(alert) => match identity {
            Some(id) => format!(
                "TLS with {url}: etcd refused the session ({alert:?}): is {id} signed by a CA \
                 in etcd's --trusted-ca-file?"
            ),
            None => format!(
                "TLS with {url}: etcd refused the session ({alert:?}): it may require a client \
                 certificate (ipam.etcd_cert_file and ipam.etcd_key_file)"
            ),
        },
        other => format!("TLS with {url}: {other}"),
    }
}

/// Opens connections to members.
pub trait Dial: Send {
    /// A connection to `endpoint`, TLS done, within `timeout`.
    fn dial(&mut self, endpoint: &Endpoint, timeout: Duration)
        -> Result<Box<dyn Transport>, Error>;
}

/// TCP, and TLS for `https://` endpoints.
struct NetDialer {
    tls: Option<Tls>,
}

impl Dial for NetDialer {
    fn dial(&mut self, ep: &Endpoint, timeout: Duration) -> Result<Box<dyn Transport>, Error> {
        let addrs = (ep.host.as_str(), ep.port)
            .to_socket_addrs()
            .map_err(|e| Error::Unreachable(format!("cannot resolve {}: {e}", ep.url)))?;
        let mut last = None;
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => {
                    tcp = Some(s);
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some(mut tcp) = tcp else {
            let why = last.map_or("no address".to_string(), |e| e.to_string());
            return Err(Error::Unreachable(format!(
                "cannot connect to {}: {why}",
                ep.url
            )));
        };
        let _ = tcp.set_nodelay(true);
        tcp.set_timeouts(timeout)
            .map_err(|e| Error::Unreachable(format!("{}: {e}", ep.url)))?;
        if !ep.https {
            return Ok(Box::new(tcp));
        }
        let Some(tls) = &self.tls else {
            return Err(Error::Tls(format!("{}: no TLS configuration", ep.url)));
        };
        let name = ServerName::try_from(ep.host.clone())
            .map_err(|e| Error::Tls(format!("{}: {e}", ep.url)))?;
        let mut conn = rustls::ClientConnection::new(tls.config.clone(), name)
            .map_err(|e| Error::Tls(describe_tls(&ep.url, &e, Some(tls))))?;
        // The whole handshake within the dial timeout, however slowly the peer answers.
        let deadline = Instant::now() + timeout;
        while conn.is_handshaking() {
            let left = deadline.saturating_duration_since(Instant::now());
            let step = if left.is_zero() {
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the dial timeout ran out",
                ))
            } else {
                tcp.set_timeouts(left)
                    .and_then(|()| conn.complete_io(&mut tcp).map(|_| ()))
            };
            step.map_err(|e| io_failure(&ep.url, "the TLS handshake", e, Some(tls)))?;
        }
        Ok(Box::new(rustls::StreamOwned::new(conn, tcp)))
    }
}

/// An I/O failure as an [`Error`]: TLS ones are [`Error::Tls`], the others leave the member
/// unanswered.
fn io_failure(url: &str, during: &str, e: io::Error, tls: Option<&Tls>) -> Error {
    if let Some(t) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        return Error::Tls(describe_tls(url, t, tls));
    }
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Unreachable(format!(
            "no answer from {url} in time ({during}): the request timeout ran out"
        )),
        io::ErrorKind::UnexpectedEof if url.starts_with("http://") => Error::Unreachable(format!(
            "{url} ({during}): {e} (a member going down, or an https:// endpoint written \
             http://?)"
        )),
        _ => Error::Unreachable(format!("{url} ({during}): {e}")),
    }
}

/// A client of the gateway of one member at a time.
pub struct Gateway {
    endpoints: Vec<Endpoint>,
    current: usize,
    conn: Option<BufReader<Box<dyn Transport>>>,
    dialer: Box<dyn Dial>,
    /// For messages about TLS failures after the handshake (a refused client certificate).
    tls: Option<Tls>,
    dial_timeout: Duration,
    credentials: Option<(String, String)>,
    /// Empty: etcd has authentication off.
    token: Option<String>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("endpoints", &self.endpoints)
            .field("current", &self.current)
            .field("connected", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A client of the members `conf` names, starting with member `first` (nothing is sent
    /// yet); fails only when the endpoints or the TLS files are unusable.
    pub fn new(conf: &EtcdConf, first: usize) -> Result<Gateway, String> {
        let endpoints = conf
            .endpoints
            .iter()
            .map(|e| Endpoint::parse(e))
            .collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err("no etcd endpoint configured".into());
        }
        if !endpoints.iter().any(|e| e.https)
            && (conf.ca_file.is_some() || conf.cert_file.is_some())
        {
            cni::log_warn!(
                "etcd: TLS files are configured but no endpoint is https://: they are not used"
            );
        }
        let dialer = NetDialer {
            tls: load_tls(conf)?,
        };
        // The dialer owns the configuration; a second handle keeps the words for messages.
        let tls = dialer.tls.clone();
        let credentials = match (&conf.username, &conf.password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            _ => None,
        };
        Ok(Gateway {
            current: first % endpoints.len(),
            endpoints,
            conn: None,
            dialer: Box::new(dialer),
            tls,
            dial_timeout: Duration::from_millis(conf.dial_timeout_ms),
            credentials,
            token: None,
        })
    }

    /// A client over another way of connecting (tests: socket pairs).
    pub fn with_dialer(
        endpoints: Vec<Endpoint>,
        dialer: Box<dyn Dial>,
        dial_timeout: Duration,
        credentials: Option<(String, String)>,
    ) -> Gateway {
        Gateway {
            endpoints,
            current: 0,
            conn: None,
            dialer,
            tls: None,
            dial_timeout,
            credentials,
            token: None,
        }
    }

    /// The member asked now.
    pub fn endpoint(&self) -> &str {
        &self.endpoints[self.current].url
    }

    /// Drops the connection and moves to the next member (the same one when there is one).
    pub fn next_member(&mut self) {
        self.conn = None;
        self.current = (self.current + 1) % self.endpoints.len();
    }

    /// POSTs `request` to `path` and reads the answer, before `deadline`. Authenticates first
    /// when a user is configured.
    pub fn call<Q: Serialize, A: DeserializeOwned>(
        &mut self,
        path: &str,
        request: &Q,
        deadline: Instant,
    ) -> Result<A, Error> {
        let body = serde_json::to_vec(request)
            .map_err(|e| Error::Unexpected(format!("cannot encode a request to {path}: {e}")))?;
        let mut renewed = false;
        loop {
            if self.credentials.is_some() && self.token.is_none() {
                self.authenticate(deadline)?;
            }
            let resp = self.exchange(path, &body, deadline)?;
            if resp.status == 200 {
                return self.decode(path, &resp.body);
            }
            let err = self.error_of(path, &resp);
            if matches!(err, Error::Etcd { code: 16, .. }) && self.credentials.is_some() && !renewed
            {
                // The token expired (or the member does not know it): once more with a new one.
                self.token = None;
                renewed = true;
                continue;
            }
            return Err(err);
        }
    }

    fn authenticate(&mut self, deadline: Instant) -> Result<(), Error> {
        let Some((name, password)) = self.credentials.clone() else {
            return Ok(());
        };
        let body = serde_json::to_vec(&AuthenticateRequest {
            name: &name,
            password: &password,
        })
        .map_err(|e| Error::Unexpected(format!("cannot encode the authentication: {e}")))?;
        let resp = self.exchange(AUTHENTICATE, &body, deadline)?;
        if resp.status != 200 {
            return match self.error_of(AUTHENTICATE, &resp) {
                Error::Etcd { message, .. }
                    if message.contains("authentication is not enabled") =>
                {
                    // A user is configured but etcd does not check: go on without a token.
                    self.token = Some(String::new());
                    Ok(())
                }
                Error::Etcd {
                    endpoint,
                    code,
                    message,
                } => Err(Error::Etcd {
                    endpoint,
                    code,
                    message: format!("authenticating as user {name:?}: {message}"),
                }),
                other => Err(other),
            };
        }
        let auth: AuthenticateResponse = self.decode(AUTHENTICATE, &resp.body)?;
        self.token = Some(auth.token);
        Ok(())
    }

    fn decode<A: DeserializeOwned>(&self, path: &str, body: &[u8]) -> Result<A, Error> {
        serde_json::from_slice(body).map_err(|e| {
            Error::Unexpected(format!(
                "{}{path} answered {}: {e}",
                self.endpoint(),
                snippet(body)
            ))
        })
    }

    /// An error answer: etcd's JSON `{"code", "message"}`, or something else entirely.
    fn error_of(&self, path: &str, resp: &Response) -> Error {
        let endpoint = self.endpoint().to_string();
        let text = String::from_utf8_lossy(&resp.body);
        if text.contains("CommonName of client") {
            // etcd (--client-cert-auth with authentication on) refuses, on its gateway, client
            // certificates that carry a CommonName: over gRPC it would take the CN as the user.
            return Error::Unexpected(format!(
                "{endpoint}{path} refused the client certificate: {} (with authentication on, \
                 etcd's JSON gateway accepts only client certificates without a CommonName: \
                 the user is ipam.etcd_username)",
                snippet(&resp.body)
            ));
        }
        match serde_json::from_slice::<ErrorBody>(&resp.body) {
            Ok(e) if e.code != 0 || !e.message.is_empty() || !e.error.is_empty() => Error::Etcd {
                endpoint,
                code: if e.code == 0 { 2 } else { e.code },
                message: if e.message.is_empty() {
                    e.error
                } else {
                    e.message
                },
            },
            _ if matches!(resp.status, 502..=504) => Error::Unreachable(format!(
                "{endpoint}{path} answered HTTP {}: {}",
                resp.status,
                snippet(&resp.body)
            )),
            _ => Error::Unexpected(format!(
                "{endpoint}{path} answered HTTP {}: {} (is it etcd's client URL? http:// or \
                 https://?)",
                resp.status,
                snippet(&resp.body)
            )),
        }
    }

    /// One request on the connection (opened first if need be).
    fn exchange(&mut self, path: &str, body: &[u8], deadline: Instant) -> Result<Response, Error> {
        let url = self.endpoints[self.current].url.clone();
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Unreachable(format!(
                "no answer in time: the request timeout ran out before asking {url}"
            )));
        }
        let left = left.max(Duration::from_millis(1));
        if self.conn.is_none() {
            let ep = &self.endpoints[self.current];
            let t = self.dialer.dial(ep, left.min(self.dial_timeout))?;
            self.conn = Some(BufReader::new(t));
        }
        let authority = self.endpoints[self.current].authority();
        let token = self
            .token
            .clone()
            .filter(|t| !t.is_empty() && path != AUTHENTICATE);
        let mut headers = vec![("Grpc-Metadata-Hasleader", "true")];
        if let Some(t) = &token {
            headers.push(("Authorization", t.as_str()));
        }
        let Some(conn) = self.conn.as_mut() else {
            return Err(Error::Unreachable(format!("{url}: not connected")));
        };
        let result = conn
            .get_ref()
            .set_timeouts(left)
            .and_then(|()| write_request(conn.get_mut(), &authority, path, &headers, body))
            .map_err(HttpError::Io)
            .and_then(|()| read_response(&mut Until { conn, deadline }));
        match result {
            Ok(resp) => {
                if !resp.keep_alive {
                    self.conn = None;
                }
                Ok(resp)
            }
            Err(e) => {
                self.conn = None;
                Err(match e {
                    HttpError::Io(e) => io_failure(&url, path, e, self.tls.as_ref()),
                    HttpError::Malformed(m) => {
                        Error::Unreachable(format!("{url}{path}: not an HTTP answer: {m}"))
                    }
                })
            }
        }
    }
}

/// The connection read before a deadline, whatever the peer sends: a socket timeout alone is
/// per read, so a peer trickling bytes or flooding `100 Continue` would hold the call for ever.
struct Until<'a> {
    conn: &'a mut BufReader<Box<dyn Transport>>,
    deadline: Instant,
}

impl Until<'_> {
    /// Fails once the deadline has passed; before a read that will block, makes the socket's
    /// timeout what is left.
    fn before_read(&mut self) -> io::Result<()> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request timeout ran out while the answer was still coming",
            ));
        }
        if self.conn.buffer().is_empty() {
            self.conn.get_ref().set_timeouts(left)?;
        }
        Ok(())
    }
}

impl Read for Until<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.before_read()?;
        self.conn.read(buf)
    }
}

impl BufRead for Until<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.before_read()?;
        self.conn.fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.conn.consume(n);
    }
}

/// The start of a body, for messages.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    format!("{:?}", text.trim())
}

#[cfg(test)]
#[path = "http_tests.rs"]
mod tests;
