//! Endpoints as `ovn-nbctl --db` writes them, and the byte stream connected to one.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::tls::TlsConfig;
use crate::Error;

/// One parsed endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `unix:PATH`.
    Unix(PathBuf),
    /// `tcp:HOST:PORT`, `tcp:[IPV6]:PORT`; the host is resolved at connect time.
    Tcp { host: String, port: u16 },
    /// `ssl:HOST:PORT`: TCP, then TLS with the client's [`TlsConfig`].
    Ssl { host: String, port: u16 },
}

/// Splits a comma-separated endpoint list and parses every entry; an unusable entry fails the
/// whole list before anything is connected (a typo must not be hidden by a working fallback).
pub(crate) fn parse_list(endpoints: &str) -> Result<Vec<(String, Endpoint)>, Error> {
    let parsed: Vec<(String, Endpoint)> = endpoints
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| parse(s).map(|e| (s.to_string(), e)))
        .collect::<Result<_, _>>()?;
    if parsed.is_empty() {
        return Err(Error::Endpoint {
            endpoint: endpoints.to_string(),
            what: "no endpoint given".into(),
        });
    }
    Ok(parsed)
}

/// Parses one endpoint.
pub(crate) fn parse(s: &str) -> Result<Endpoint, Error> {
    let bad = |what: &str| Error::Endpoint {
        endpoint: s.to_string(),
        what: what.to_string(),
    };
    if let Some(path) = s.strip_prefix("unix:") {
        if path.is_empty() {
            return Err(bad("empty socket path"));
        }
        return Ok(Endpoint::Unix(PathBuf::from(path)));
    }
    let (rest, ssl) = match (s.strip_prefix("tcp:"), s.strip_prefix("ssl:")) {
        (Some(rest), _) => (Some(rest), false),
        (None, Some(rest)) => (Some(rest), true),
        _ => (None, false),
    };
    let Some(rest) = rest else {
        let what = match s.split_once(':') {
            Some((scheme, _)) => format!("unsupported scheme {scheme:?}"),
            None => "no scheme".to_string(),
        };
        return Err(bad(&what));
    };
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| bad("unterminated [IPv6 address]"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| bad("no :PORT after [IPv6 address]"))?;
        (host, port)
    } else {
        rest.rsplit_once(':').ok_or_else(|| bad("no :PORT"))?
    };
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    if host.contains(':') && !rest.starts_with('[') {
        return Err(bad("write an IPv6 address in brackets: tcp:[ADDR]:PORT"));
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| bad("port is not a number in 1..65535"))?;
    let host = host.to_string();
    Ok(if ssl {
        Endpoint::Ssl { host, port }
    } else {
        Endpoint::Tcp { host, port }
    })
}

/// A connected byte stream.
#[derive(Debug)]
pub(crate) enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Endpoint {
    /// Connects, bounded by `timeout` for tcp and ssl, the TLS handshake included (a unix
    /// connect to a listening socket does not wait on the network). An `ssl:` endpoint needs
    /// `tls`; a failed handshake is an error whose source is the [`rustls::Error`].
    pub(crate) fn connect(&self, timeout: Duration, tls: Option<&TlsConfig>) -> io::Result<Stream> {
        match self {
            Endpoint::Unix(path) => UnixStream::connect(path).map(Stream::Unix),
            Endpoint::Tcp { host, port } => tcp(host, *port, timeout).map(Stream::Tcp),
            Endpoint::Ssl { host, port } => {
                let Some(tls) = tls else {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "an ssl: endpoint needs a CA certificate, a certificate and a private key",
                    ));
                };
                let deadline = Instant::now() + timeout;
                let mut sock = tcp(host, *port, timeout)?;
                let name = rustls::pki_types::ServerName::try_from(host.clone())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let mut conn = rustls::ClientConnection::new(tls.config.clone(), name)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                while conn.is_handshaking() {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the TLS handshake did not finish in time",
                        ));
                    }
                    sock.set_read_timeout(Some(left))?;
                    sock.set_write_timeout(Some(left))?;
                    conn.complete_io(&mut sock)?;
                }
                Ok(Stream::Tls(Box::new(rustls::StreamOwned::new(conn, sock))))
            }
        }
    }
}

/// A TCP connection to `host:port`, each address tried within `timeout`.
fn tcp(host: &str, port: u16, timeout: Duration) -> io::Result<TcpStream> {
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    let mut last = io::Error::new(io::ErrorKind::NotFound, "host has no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                // Requests are small and each waits for its reply: never delay them.
                s.set_nodelay(true)?;
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

impl Stream {
    pub(crate) fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_read_timeout(t),
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Tls(s) => s.sock.set_read_timeout(t),
        }
    }

    pub(crate) fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.set_write_timeout(t),
            Stream::Tcp(s) => s.set_write_timeout(t),
            Stream::Tls(s) => s.sock.set_write_timeout(t),
        }
    }

    /// Shuts both directions down: after a half-written request the stream cannot be reused.
    pub(crate) fn shutdown(&self) {
        let _ = match self {
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            Stream::Tls(s) => s.sock.shutdown(std::net::Shutdown::Both),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

#[cfg(test)]
#[path = "endpoint_tests.rs"]
mod tests;
