//! The reference plugin's socket protocol, so either half of a node can be ours: Go's `net/rpc`
//! over HTTP on a unix socket (`CONNECT /_goRPC_ HTTP/1.0`, then a gob stream of a request
//! header and the call's arguments, answered by a response header and the reply). Methods
//! `DHCP.Allocate` (the reply a CNI 1.0 result) and `DHCP.Release` (an empty struct).
//!
//! The types are the Go ones field for field by name (gob matches by name and ignores what the
//! other side lacks): `skel.CmdArgs`, `types100.Result` with `net.IPNet` and `net.IP` (gob sends
//! `net.IP` as bytes: it does not use `MarshalText`, golang.org/issue/6760). The fixtures in
//! tests are bytes Debian's reference client and daemon (1.1.1) exchanged.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use cni::result::{CniResult, Dns, IpConfig, Route};
use gobwire::{Decode, Gob, StreamDecoder, StreamEncoder};
use ipnetwork::IpNetwork;

/// The path net/rpc's HTTP transport connects to.
pub const RPC_PATH: &str = "/_goRPC_";
/// The status line Go's server answers a CONNECT with.
pub const CONNECTED: &str = "HTTP/1.0 200 Connected to Go RPC";
/// The most a connection may carry in either direction (gob itself would allow 8 GiB).
pub const MAX_CONNECTION_BYTES: u64 = 4 << 20;

/// net/rpc's request header.
#[derive(Gob, Debug, Default, Clone, PartialEq, Eq)]
pub struct Request {
    /// `Service.Method`.
    #[gob(name = "ServiceMethod")]
    pub service_method: String,
    /// Sequence number chosen by the client.
    #[gob(name = "Seq")]
    pub seq: u64,
}

/// net/rpc's response header.
#[derive(Gob, Debug, Default, Clone, PartialEq, Eq)]
pub struct Response {
    /// The request's method.
    #[gob(name = "ServiceMethod")]
    pub service_method: String,
    /// The request's sequence number.
    #[gob(name = "Seq")]
    pub seq: u64,
    /// The method's error; empty on success.
    #[gob(name = "Error")]
    pub error: String,
}

/// `skel.CmdArgs`: the CNI call as the daemon sees it.
#[derive(Gob, Debug, Default, Clone, PartialEq, Eq)]
pub struct CmdArgs {
    /// CNI_CONTAINERID.
    #[gob(name = "ContainerID")]
    pub container_id: String,
    /// CNI_NETNS, made absolute.
    #[gob(name = "Netns")]
    pub netns: String,
    /// CNI_IFNAME.
    #[gob(name = "IfName")]
    pub if_name: String,
    /// CNI_ARGS.
    #[gob(name = "Args")]
    pub args: String,
    /// CNI_PATH.
    #[gob(name = "Path")]
    pub path: String,
    /// The network configuration (stdin).
    #[gob(name = "StdinData")]
    pub stdin_data: Vec<u8>,
}

/// `net.IPNet`.
#[derive(Gob, Debug, Default, Clone, PartialEq, Eq)]
pub struct GoIpNet {
    /// 4 or 16 bytes.
    #[gob(name = "IP")]
    pub ip: Vec<u8>,
    /// 4 or 16 bytes.
    #[gob(name = "Mask")]
    pub mask: Vec<u8>,
}

/// `types100.IPConfig`.
#[derive(Gob, Debug, Default, Clone, PartialEq, Eq)]
pub struct GoIpConfig {
    /// Index into the interfaces (a pointer in Go: absent when nil).
    #[gob(name = "Interface")]
    pub interface: Option<i64>,
    /// The address.
    #[gob(name = "Address")]
    pub address: GoIpNet,
    /// The gateway (empty when none).
    #[gob(name = "Gateway")]
    pub gateway: Vec<u8>,
}

/// `types.Route` (the newer fields are ignored by an older peer).
#[derive(Gob, Debug, Default, Clone, PartialEq, Eq)]
pub struct GoRoute {
    /// Destination.
    #[gob(name = "Dst")]
    pub dst: GoIpNet,
    /// Next hop (empty when none).
    #[gob(name = "GW")]
    pub gw: Vec<u8>,
    /// Metric (`priority`).
    #[gob(name = "Priority")]
    pub priority: i64,
    /// Scope (a pointer in Go).
    #[gob(name = "Scope")]
    pub scope: Option<i64>,
}

/// `types.DNS`.
#[derive(Gob, Debug, Default, Clone, PartialEq, Eq)]
pub struct GoDns {
    /// Name servers.
    #[gob(name = "Nameservers")]
    pub nameservers: Vec<String>,
    /// Domain.
    #[gob(name = "Domain")]
    pub domain: String,
    /// Search list.
    #[gob(name = "Search")]
    pub search: Vec<String>,
    /// Options.
    #[gob(name = "Options")]
    pub options: Vec<String>,
}

/// `types100.Result` without interfaces (an IPAM result has none).
#[derive(Gob, Debug, Default, Clone, PartialEq, Eq)]
pub struct GoResult {
    /// The version the daemon filled in (the reference's leaves it empty).
    #[gob(name = "CNIVersion")]
    pub cni_version: String,
    /// Addresses.
    #[gob(name = "IPs")]
    pub ips: Vec<GoIpConfig>,
    /// Routes.
    #[gob(name = "Routes")]
    pub routes: Vec<GoRoute>,
    /// DNS.
    #[gob(name = "DNS")]
    pub dns: GoDns,
}

/// `struct{}`: `DHCP.Release`'s reply, and what a server sends after an error.
#[derive(Gob, Debug, Default, Clone, PartialEq, Eq)]
pub struct Empty {}

fn ip_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn ip_from(b: &[u8]) -> Result<IpAddr, String> {
    match b.len() {
        4 => Ok(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]))),
        16 => {
            let a = Ipv6Addr::from(<[u8; 16]>::try_from(b).expect("16 bytes"));
            Ok(a.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(a)))
        }
        n => Err(format!("an address of {n} bytes")),
    }
}

fn net_to_go(n: &IpNetwork) -> GoIpNet {
    GoIpNet {
        ip: ip_bytes(n.ip()),
        mask: ip_bytes(n.mask()),
    }
}

fn net_from_go(n: &GoIpNet) -> Result<IpNetwork, String> {
    let ip = ip_from(&n.ip)?;
    // A 16-byte mask of an IPv4 address counts its last 4 bytes, as Go's net.IPNet does.
    let mask = match (ip, n.mask.len()) {
        (IpAddr::V4(_), 16) => &n.mask[12..],
        _ => &n.mask[..],
    };
    let ones: u32 = mask.iter().map(|b| b.count_ones()).sum();
    IpNetwork::new(ip, ones as u8).map_err(|e| format!("{ip} with mask {mask:?}: {e}"))
}

impl GoResult {
    /// The Go form of a result.
    pub fn from_result(r: &CniResult) -> GoResult {
        GoResult {
            cni_version: "1.0.0".into(),
            ips: r
                .ips
                .iter()
                .map(|ip| GoIpConfig {
                    interface: ip.interface.map(|i| i as i64),
                    address: net_to_go(&ip.address),
                    gateway: ip.gateway.map(ip_bytes).unwrap_or_default(),
                })
                .collect(),
            routes: r
                .routes
                .iter()
                .map(|rt| GoRoute {
                    dst: net_to_go(&rt.dst),
                    gw: rt.gw.map(ip_bytes).unwrap_or_default(),
                    priority: rt.priority.map(i64::from).unwrap_or(0),
                    scope: rt.scope.map(i64::from),
                })
                .collect(),
            dns: GoDns {
                nameservers: r.dns.nameservers.clone(),
                domain: r.dns.domain.clone().unwrap_or_default(),
                search: r.dns.search.clone(),
                options: r.dns.options.clone(),
            },
        }
    }

    /// The result a daemon sent.
    pub fn to_result(&self) -> Result<CniResult, String> {
        let mut ips = Vec::new();
        for ip in &self.ips {
            ips.push(IpConfig {
                interface: ip.interface.and_then(|i| usize::try_from(i).ok()),
                address: net_from_go(&ip.address)?,
                gateway: if ip.gateway.is_empty() {
                    None
                } else {
                    Some(ip_from(&ip.gateway)?)
                },
            });
        }
        let mut routes = Vec::new();
        for rt in &self.routes {
            let mut r = Route::new(
                net_from_go(&rt.dst)?,
                if rt.gw.is_empty() {
                    None
                } else {
                    Some(ip_from(&rt.gw)?)
                },
            );
            r.priority = u32::try_from(rt.priority).ok().filter(|p| *p != 0);
            r.scope = rt.scope.and_then(|s| u8::try_from(s).ok());
            routes.push(r);
        }
        Ok(CniResult {
            interfaces: Vec::new(),
            ips,
            routes,
            dns: Dns {
                nameservers: self.dns.nameservers.clone(),
                domain: Some(self.dns.domain.clone()).filter(|d| !d.is_empty()),
                search: self.dns.search.clone(),
                options: self.dns.options.clone(),
            },
        })
    }
}

/// Why a call did not return the method's answer.
#[derive(Debug)]
pub enum CallError {
    /// Nobody listens on the socket (absent, refused): the daemon is down.
    NoDaemon(io::Error),
    /// The exchange failed or ran past its deadline after connecting.
    Transport(io::Error),
    /// The peer does not speak net/rpc over HTTP, or sent what does not decode.
    Protocol(String),
    /// The method ran and returned this error.
    Remote(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::NoDaemon(e) => write!(f, "no dhcp daemon answers: {e}"),
            CallError::Transport(e) => write!(f, "talking to the dhcp daemon: {e}"),
            CallError::Protocol(e) => write!(f, "the dhcp daemon's answer: {e}"),
            CallError::Remote(e) => write!(f, "{}", cni::error::printable(e, 2048)),
        }
    }
}

impl std::error::Error for CallError {}

/// A stream whose reads and writes share one deadline.
#[derive(Debug)]
struct Deadline<'a> {
    s: &'a UnixStream,
    until: Instant,
}

impl Deadline<'_> {
    fn left(&self) -> io::Result<Duration> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"))
        } else {
            Ok(left)
        }
    }
}

impl Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.s.set_read_timeout(Some(self.left()?))?;
        self.s.read(buf)
    }
}

impl Write for Deadline<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.s.set_write_timeout(Some(self.left()?))?;
        self.s.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads an HTTP head (up to the blank line), at most 4 KiB.
fn read_head(r: &mut impl Read) -> io::Result<String> {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !(head.ends_with(b"\n\n") || head.ends_with(b"\r\n\r\n")) {
        if head.len() >= 4096 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "an HTTP head over 4 KiB",
            ));
        }
        if r.read(&mut b)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the peer closed mid-head",
            ));
        }
        head.push(b[0]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

fn gob_err(e: gobwire::Error) -> CallError {
    match e {
        gobwire::Error::Io(e) => CallError::Transport(e),
        e => CallError::Protocol(e.to_string()),
    }
}

/// Calls `method` on the daemon at `socket` with `args`, everything within `timeout`.
pub fn call<T>(
    socket: &Path,
    method: &str,
    args: &CmdArgs,
    timeout: Duration,
) -> Result<T, CallError>
where
    T: Decode + Default,
{
    let until = Instant::now() + timeout;
    let s = UnixStream::connect(socket).map_err(CallError::NoDaemon)?;
    let mut io = Deadline { s: &s, until };
    io.write_all(format!("CONNECT {RPC_PATH} HTTP/1.0\n\n").as_bytes())
        .map_err(CallError::Transport)?;
    let head = read_head(&mut io).map_err(CallError::Transport)?;
    let status = head.lines().next().unwrap_or("");
    if status != CONNECTED {
        return Err(CallError::Protocol(format!(
            "unexpected HTTP response {:?}",
            cni::error::printable(status, 200)
        )));
    }
    {
        let mut enc = StreamEncoder::new(&mut io);
        enc.encode(&Request {
            service_method: method.into(),
            seq: 0,
        })
        .map_err(gob_err)?;
        enc.encode(args).map_err(gob_err)?;
    }
    let mut dec = StreamDecoder::new((&mut io).take(MAX_CONNECTION_BYTES));
    let resp: Response = dec
        .decode()
        .map_err(gob_err)?
        .ok_or_else(|| CallError::Protocol("the daemon closed before answering".into()))?;
    if !resp.error.is_empty() {
        return Err(CallError::Remote(resp.error));
    }
    let reply: T = dec
        .decode()
        .map_err(gob_err)?
        .ok_or_else(|| CallError::Protocol("the daemon closed before the reply".into()))?;
    Ok(reply)
}

/// What a server's method answered.
#[derive(Debug)]
pub enum Reply {
    /// `DHCP.Allocate`'s result.
    Result(GoResult),
    /// `DHCP.Release`'s (and any other method's) empty reply.
    Empty,
}

/// Serves one connection as Go's net/rpc HTTP server does: the CONNECT, then calls until the
/// client closes. `handle` gets the method and the arguments.
pub fn serve(
    s: &UnixStream,
    idle: Duration,
    mut handle: impl FnMut(&str, CmdArgs) -> Result<Reply, String>,
) -> io::Result<()> {
    s.set_read_timeout(Some(idle))?;
    s.set_write_timeout(Some(idle))?;
    let mut r = s.take(MAX_CONNECTION_BYTES);
    let head = read_head(&mut r)?;
    let first = head.lines().next().unwrap_or("");
    if !first.starts_with(&format!("CONNECT {RPC_PATH} ")) {
        let mut w = s;
        w.write_all(b"HTTP/1.0 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n405 must CONNECT\n")?;
        return Ok(());
    }
    let mut w = s;
    w.write_all(format!("{CONNECTED}\n\n").as_bytes())?;
    let mut dec = StreamDecoder::new(r);
    let mut enc = StreamEncoder::new(s);
    let to_io = |e: gobwire::Error| match e {
        gobwire::Error::Io(e) => e,
        e => io::Error::new(io::ErrorKind::InvalidData, e.to_string()),
    };
    loop {
        // A client that hung up between calls (Go's closes after each) is the normal end.
        let req = match dec.decode::<Request>().map_err(to_io) {
            Ok(Some(req)) => req,
            Ok(None) => return Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
                ) =>
            {
                return Ok(())
            }
            Err(e) => return Err(e),
        };
        let args: CmdArgs = dec
            .decode()
            .map_err(to_io)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no arguments"))?;
        let answer = handle(&req.service_method, args);
        let mut resp = Response {
            service_method: req.service_method,
            seq: req.seq,
            error: String::new(),
        };
        match answer {
            Ok(Reply::Result(r)) => {
                enc.encode(&resp).map_err(to_io)?;
                enc.encode(&r).map_err(to_io)?;
            }
            Ok(Reply::Empty) => {
                enc.encode(&resp).map_err(to_io)?;
                enc.encode(&Empty {}).map_err(to_io)?;
            }
            Err(e) => {
                resp.error = if e.is_empty() { "error".into() } else { e };
                enc.encode(&resp).map_err(to_io)?;
                enc.encode(&Empty {}).map_err(to_io)?;
            }
        }
    }
}
