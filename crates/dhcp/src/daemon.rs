//! The dhcp daemon: it holds the node's leases for the CNI executable, which is gone as soon as
//! ADD returns. It answers the reference's methods (`DHCP.Allocate`, `DHCP.Release`) and ours
//! (`DHCP.Check`, `DHCP.GC`, `DHCP.Status`) on a unix socket, persists each lease before
//! handing it out ([`crate::store`]), re-adopts the leases on disk when it starts, and renews
//! them from one scheduler thread (no thread per lease, unlike the reference's goroutine and
//! OS thread each).
//!
//! Faults of the reference avoided here: leases lost with the daemon (containernetworking/
//! plugins #235, #767): persisted and re-adopted; a retried ADD starting a second DORA
//! (k8snetworkplumbingwg/multus-cni #1031): it joins the one in flight, or gets the lease held;
//! CHECK taking a new lease: it checks the lease held; RELEASE from 0.0.0.0: ours leaves from
//! the leased address.

use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::client::{self, on_link, Ack, ExchangeError};
use crate::conf::Settings;
use crate::lease::{self, Lease};
use crate::packet::PacketSocket;
use crate::rpc::{self, CmdArgs, GoResult, Reply};
use crate::store::{Record, Store};

/// The daemon's flags (the reference's, and `-statedir`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// `-socketpath`.
    pub socket: PathBuf,
    /// `-pidfile`.
    pub pidfile: Option<PathBuf>,
    /// `-hostprefix`: prefixed to the socket path and to every CNI_NETNS (a daemon in a
    /// container with the host's root mounted there).
    pub hostprefix: String,
    /// `-broadcast`: the BROADCAST flag for networks whose configuration does not say.
    pub broadcast: bool,
    /// `-timeout`: how long an ADD may take to get a lease.
    pub timeout: Duration,
    /// `-resendmax`: the longest wait between two tries to extend or regain a lease.
    pub resendmax: Duration,
    /// `-statedir`: where leases are persisted.
    pub statedir: PathBuf,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            socket: PathBuf::from(crate::conf::DEFAULT_SOCKET),
            pidfile: None,
            hostprefix: String::new(),
            broadcast: false,
            timeout: Duration::from_secs(10),
            resendmax: Duration::from_secs(62),
            statedir: PathBuf::from(crate::store::DEFAULT_STATE_DIR),
        }
    }
}

/// Parses a Go duration ("10s", "1m30s", "500ms", "1.5h").
pub fn parse_go_duration(s: &str) -> Option<Duration> {
    let mut rest = s.trim();
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..u] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[u..];
        total += value * scale;
    }
    Duration::try_from_secs_f64(total).ok()
}

impl Options {
    /// Parses the flags after `daemon`, as Go's flag package does (`-f v`, `-f=v`, `--f`; a
    /// boolean flag alone is true).
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options::default();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let Some(flag) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
                return Err(format!("unexpected argument {a:?}"));
            };
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (flag, None),
            };
            if name == "broadcast" {
                o.broadcast = match inline.as_deref() {
                    None | Some("true") | Some("1") | Some("t") | Some("T") | Some("TRUE") => true,
                    Some("false") | Some("0") | Some("f") | Some("F") | Some("FALSE") => false,
                    Some(v) => return Err(format!("-broadcast: invalid boolean {v:?}")),
                };
                continue;
            }
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| it.next().cloned())
                    .ok_or_else(|| format!("flag needs an argument: -{name}"))
            };
            let duration = |v: String| {
                parse_go_duration(&v).ok_or_else(|| format!("-{name}: invalid duration {v:?}"))
            };
            match name {
                "socketpath" => o.socket = PathBuf::from(value()?),
                "pidfile" => {
                    o.pidfile = Some(PathBuf::from(value()?)).filter(|p| !p.as_os_str().is_empty())
                }
                "hostprefix" => o.hostprefix = value()?,
                "timeout" => o.timeout = duration(value()?)?,
                "resendmax" => o.resendmax = duration(value()?)?,
                "statedir" => o.statedir = PathBuf::from(value()?),
                _ => return Err(format!("flag provided but not defined: -{name}")),
            }
        }
        Ok(o)
    }

    fn prefixed(&self, p: &str) -> PathBuf {
        if self.hostprefix.is_empty() {
            PathBuf::from(p)
        } else {
            PathBuf::from(format!("{}{p}", self.hostprefix.trim_end_matches('/')))
        }
    }
}

/// Where a held lease is in its life (RFC 2131 section 4.4, figure 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Bound,
    Expired,
}

#[derive(Debug)]
struct Held {
    record: Record,
    ack: Ack,
    lease: Lease,
    phase: Phase,
    /// Bumped whenever the lease changes: scheduler entries of an older generation are stale.
    generation: u64,
}

/// An ADD's exchange in flight, which a retried ADD waits for instead of starting another.
#[derive(Debug, Default)]
struct Flight {
    outcome: Mutex<Option<Result<GoResult, String>>>,
    done: Condvar,
    released: std::sync::atomic::AtomicBool,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at: std::cmp::Reverse<Instant>,
    generation: u64,
    client_id: Vec<u8>,
}

/// The daemon's state, shared by the connection threads and the scheduler.
#[derive(Debug)]
pub struct Daemon {
    opts: Options,
    store: Store,
    leases: Mutex<HashMap<Vec<u8>, Held>>,
    flights: Mutex<HashMap<Vec<u8>, Arc<Flight>>>,
    queue: Mutex<BinaryHeap<Due>>,
    wake: Condvar,
    generation: std::sync::atomic::AtomicU64,
}

fn log(msg: &str) {
    eprintln!("dhcp daemon: {msg}");
}

/// Sets the MTU the server asked for (option 26) on the link.
fn apply_mtu(netns: &Path, ifname: &str, ack: &Ack) {
    let Some(mtu) = lease::mtu(&ack.message) else {
        return;
    };
    let r = netns::NetNs::open(netns)
        .map_err(|e| e.to_string())
        .and_then(|ns| {
            ns.run(|| crate::packet::set_mtu(ifname, mtu))
                .map_err(|e| e.to_string())
        })
        .and_then(|r| r.map_err(|e| e.to_string()));
    if let Err(e) = r {
        log(&format!("setting MTU {mtu} on {ifname}: {e}"));
    }
}

impl Daemon {
    /// A daemon with no leases yet.
    pub fn new(opts: Options) -> Daemon {
        Daemon {
            store: Store::new(&opts.statedir),
            opts,
            leases: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
            queue: Mutex::new(BinaryHeap::new()),
            wake: Condvar::new(),
            generation: std::sync::atomic::AtomicU64::new(1),
        }
    }

    fn next_generation(&self) -> u64 {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    fn schedule(&self, client_id: &[u8], generation: u64, at: Instant) {
        self.queue.lock().expect("queue").push(Due {
            at: std::cmp::Reverse(at),
            generation,
            client_id: client_id.to_vec(),
        });
        self.wake.notify_one();
    }

    /// When the next step of a lease acked `age` ago is due.
    fn next_step(lease: &Lease, age: Duration, phase: Phase, resendmax: Duration) -> Duration {
        let floor = Duration::from_secs(1);
        if phase == Phase::Expired {
            return (lease.lease_time / 4).clamp(floor, resendmax.max(floor));
        }
        if age < lease.renew_after {
            return lease.renew_after - age;
        }
        // RENEWING, then REBINDING: half the time to the next boundary, at least a second,
        // at most -resendmax (RFC 2131 section 4.4.5 says at least 60 s, for hour-long leases).
        let boundary = if age < lease.rebind_after {
            lease.rebind_after
        } else {
            lease.lease_time
        };
        (boundary.saturating_sub(age) / 2).clamp(floor, resendmax.max(floor))
    }

    fn hold(&self, record: Record, ack: Ack, phase: Phase) -> Result<GoResult, String> {
        let lease = Lease::from_ack(&ack.message).map_err(|e| e.to_string())?;
        let result = lease::result(&ack.message, record.priority).map_err(|e| e.to_string())?;
        let generation = self.next_generation();
        let wait = Self::next_step(&lease, record.age(), phase, self.opts.resendmax);
        let client_id = record.identity.client_id.clone();
        self.leases.lock().expect("leases").insert(
            client_id.clone(),
            Held {
                record,
                ack,
                lease,
                phase,
                generation,
            },
        );
        self.schedule(&client_id, generation, Instant::now() + wait);
        Ok(GoResult::from_result(&result))
    }

    fn settings(&self, args: &CmdArgs) -> Result<Settings, String> {
        let mut s = Settings::parse(
            &args.stdin_data,
            &args.args,
            &args.container_id,
            &args.if_name,
        )
        .map_err(|e| e.msg)?;
        s.identity.broadcast = s.broadcast.unwrap_or(self.opts.broadcast);
        Ok(s)
    }

    /// `DHCP.Allocate`: the lease held for this client identifier, the one being acquired, or a
    /// new one.
    pub fn allocate(&self, args: &CmdArgs) -> Result<GoResult, String> {
        let s = self.settings(args)?;
        let key = s.identity.client_id.clone();
        {
            let leases = self.leases.lock().expect("leases");
            if let Some(h) = leases.get(&key) {
                if h.record.netns == args.netns && h.record.ifname == args.if_name {
                    let r = lease::result(&h.ack.message, s.priority).map_err(|e| e.to_string())?;
                    return Ok(GoResult::from_result(&r));
                }
            }
        }
        // The same client identifier in another sandbox: that one is stale (a container ID is
        // unique while it lives).
        if self.leases.lock().expect("leases").contains_key(&key) {
            self.drop_lease(&key, true);
        }
        let (flight, mine) = {
            let mut flights = self.flights.lock().expect("flights");
            match flights.get(&key) {
                Some(f) => (f.clone(), false),
                None => {
                    let f = Arc::new(Flight::default());
                    flights.insert(key.clone(), f.clone());
                    (f, true)
                }
            }
        };
        if !mine {
            let guard = flight.outcome.lock().expect("flight");
            let (guard, _) = flight
                .done
                .wait_timeout_while(guard, self.opts.timeout + Duration::from_secs(5), |o| {
                    o.is_none()
                })
                .expect("flight");
            return guard
                .clone()
                .unwrap_or_else(|| Err("the DHCP exchange in flight did not finish".into()));
        }
        let outcome = self.acquire(args, &s, &flight);
        self.flights.lock().expect("flights").remove(&key);
        *flight.outcome.lock().expect("flight") = Some(outcome.clone());
        flight.done.notify_all();
        outcome
    }

    fn acquire(&self, args: &CmdArgs, s: &Settings, flight: &Flight) -> Result<GoResult, String> {
        let netns = self.opts.prefixed(&args.netns);
        let until = Instant::now() + self.opts.timeout;
        let ack = on_link(&netns, &args.if_name, |sock| {
            client::acquire(sock, &s.identity, None, until)
        })
        .map_err(|e| format!("error calling DHCP.Allocate: {e}"))?;
        let mut record = Record::new(
            (&args.container_id, &args.netns, &args.if_name, &s.network),
            &s.identity,
            &ack,
            s.priority,
        );
        record.uplink = s.uplink.clone();
        // Persisted before anyone learns of it: a crash from here on leaves a lease we know.
        self.store.save(&record).map_err(|e| {
            format!(
                "persisting the lease in {}: {e}",
                self.store.dir().display()
            )
        })?;
        if flight.released.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = on_link(&netns, &args.if_name, |sock| {
                client::release(sock, &s.identity, &ack).map_err(ExchangeError::Io)
            });
            let _ = self.store.remove(&s.identity.client_id);
            return Err("the attachment was deleted while its lease was acquired".into());
        }
        apply_mtu(&netns, &args.if_name, &ack);
        self.hold(record, ack, Phase::Bound)
    }

    /// Forgets a lease, sending its RELEASE when `release` and the link is still there.
    fn drop_lease(&self, key: &[u8], release: bool) {
        let held = self.leases.lock().expect("leases").remove(key);
        if let Some(h) = held {
            if release && h.phase == Phase::Bound {
                self.release_held(&h.record, &h.ack);
            }
        }
        if let Err(e) = self.store.remove(key) {
            log(&format!("removing a lease file: {e}"));
        }
    }

    fn release_held(&self, r: &Record, ack: &Ack) {
        let netns = self.opts.prefixed(&r.netns);
        if let Err(e) =
            client::release_anywhere(&netns, &r.ifname, r.uplink.as_deref(), &r.identity, ack)
        {
            log(&format!("no RELEASE of {}: {e}", ack.message.yiaddr));
        }
    }

    /// `DHCP.Release`: always succeeds; an exchange in flight is released when it ends.
    pub fn release(&self, args: &CmdArgs) -> Result<(), String> {
        let key = match self.settings(args) {
            Ok(s) => s.identity.client_id,
            // A configuration only ADD would refuse: the reference's identifier still names it.
            Err(_) => crate::message::reference_client_id(
                &args.container_id,
                &network_name(&args.stdin_data),
                &args.if_name,
            ),
        };
        if let Some(f) = self.flights.lock().expect("flights").get(&key) {
            f.released.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        self.drop_lease(&key, true);
        Ok(())
    }

    /// `DHCP.Check`: the attachment holds a lease that has not expired.
    pub fn check(&self, args: &CmdArgs) -> Result<(), String> {
        let s = self.settings(args)?;
        let leases = self.leases.lock().expect("leases");
        match leases.get(&s.identity.client_id) {
            None => Err(format!(
                "no DHCP lease for container {} interface {}",
                args.container_id, args.if_name
            )),
            Some(h) if h.phase == Phase::Expired => Err(format!(
                "the DHCP lease of {} expired and the server has not renewed it",
                h.ack.message.yiaddr
            )),
            Some(h) if h.record.netns != args.netns => Err(format!(
                "the DHCP lease of {} belongs to netns {}, not {}",
                h.ack.message.yiaddr, h.record.netns, args.netns
            )),
            Some(_) => Ok(()),
        }
    }

    /// `DHCP.GC`: releases the leases of this network whose attachment is not in the
    /// configuration's `cni.dev/valid-attachments`.
    pub fn gc(&self, args: &CmdArgs) -> Result<(), String> {
        let conf = cni::NetConf::parse(&args.stdin_data).map_err(|e| e.msg)?;
        let stale: Vec<Vec<u8>> = self
            .leases
            .lock()
            .expect("leases")
            .iter()
            .filter(|(_, h)| {
                h.record.network == conf.name
                    && !conf.valid_attachments.iter().any(|a| {
                        a.container_id == h.record.container_id && a.ifname == h.record.ifname
                    })
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in stale {
            self.drop_lease(&k, true);
        }
        Ok(())
    }

    /// The leases held, for tests and `GC`: (address, container, ifname).
    pub fn held(&self) -> Vec<(std::net::Ipv4Addr, String, String)> {
        self.leases
            .lock()
            .expect("leases")
            .values()
            .map(|h| {
                (
                    h.ack.message.yiaddr,
                    h.record.container_id.clone(),
                    h.record.ifname.clone(),
                )
            })
            .collect()
    }

    /// Re-adopts the leases on disk: a lease whose sandbox and link are still there is held
    /// again (renewed when due, without a new DORA); one whose sandbox is gone is dropped.
    pub fn adopt(&self) -> io::Result<()> {
        self.store.locked(|| {
            let (records, unreadable) = self.store.all();
            for p in unreadable {
                log(&format!("ignoring unreadable lease file {}", p.display()));
            }
            for r in records {
                let netns = self.opts.prefixed(&r.netns);
                let link_there = netns::NetNs::open(&netns)
                    .ok()
                    .and_then(|ns| ns.run(|| PacketSocket::open_existing(&r.ifname)).ok())
                    .is_some_and(|s| s.is_ok());
                let ack = r.ack();
                match ack {
                    Some(ack) if link_there => {
                        let lease = Lease::from_ack(&ack.message);
                        let phase = match lease {
                            Ok(l) if r.age() < l.lease_time => Phase::Bound,
                            _ => Phase::Expired,
                        };
                        log(&format!(
                            "re-adopted the lease of {} for {} {}",
                            ack.message.yiaddr, r.container_id, r.ifname
                        ));
                        if let Err(e) = self.hold(r, ack, phase) {
                            log(&format!("a lease file that does not make a lease: {e}"));
                        }
                    }
                    ack => {
                        log(&format!(
                            "releasing the lease of {} {}: its sandbox or link is gone",
                            r.container_id, r.ifname
                        ));
                        if let Some(ack) = ack.filter(|a| {
                            Lease::from_ack(&a.message).is_ok_and(|l| r.age() < l.lease_time)
                        }) {
                            self.release_held(&r, &ack);
                        }
                        let _ = self.store.remove(&r.identity.client_id);
                    }
                }
            }
        })
    }

    /// The scheduler: runs each lease's next step when it is due, forever.
    pub fn run_scheduler(&self) {
        loop {
            let due = {
                let mut q = self.queue.lock().expect("queue");
                loop {
                    let now = Instant::now();
                    match q.peek() {
                        Some(d) if d.at.0 <= now => break q.pop().expect("peeked"),
                        Some(d) => {
                            let wait = d.at.0 - now;
                            q = self.wake.wait_timeout(q, wait).expect("queue").0;
                        }
                        None => q = self.wake.wait(q).expect("queue"),
                    }
                }
            };
            self.step(&due.client_id, due.generation);
        }
    }

    /// One step of a lease: renew, rebind, or try to regain it after expiry.
    fn step(&self, key: &[u8], generation: u64) {
        let (record, ack, lease, phase) = {
            let leases = self.leases.lock().expect("leases");
            match leases.get(key) {
                Some(h) if h.generation == generation => {
                    (h.record.clone(), h.ack.clone(), h.lease.clone(), h.phase)
                }
                _ => return,
            }
        };
        // A CNI executable released it from its file while we were down or busy.
        if !self.store.holds(key) {
            self.leases.lock().expect("leases").remove(key);
            return;
        }
        let netns = self.opts.prefixed(&record.netns);
        let age = record.age();
        let answer_within = Instant::now() + Duration::from_secs(1);
        let outcome = match phase {
            Phase::Bound if age < lease.renew_after => {
                self.reschedule(key, generation, &lease, age, phase);
                return;
            }
            Phase::Bound if age < lease.lease_time => {
                let rebinding = age >= lease.rebind_after;
                on_link(&netns, &record.ifname, |sock| {
                    client::extend(sock, &record.identity, &ack, rebinding, answer_within)
                })
            }
            _ => {
                let wish = Some(ack.message.yiaddr);
                let until = Instant::now() + Duration::from_secs(2);
                on_link(&netns, &record.ifname, |sock| {
                    client::acquire(sock, &record.identity, wish, until)
                })
            }
        };
        match outcome {
            Ok(new) if new.message.yiaddr == ack.message.yiaddr => {
                let mut r = record.clone();
                let mut fresh = Record::new(
                    (&r.container_id, &r.netns, &r.ifname, &r.network),
                    &r.identity,
                    &new,
                    r.priority,
                );
                fresh.uplink = r.uplink.take();
                r = fresh;
                if let Err(e) = self.store.save(&r) {
                    log(&format!("persisting a renewed lease: {e}"));
                }
                let _ = self.hold(r, new, Phase::Bound);
            }
            Ok(other) => {
                // The server gave another address than the one configured in the sandbox.
                log(&format!(
                    "the server offered {} instead of {}: not taken",
                    other.message.yiaddr, ack.message.yiaddr
                ));
                let _ = on_link(&netns, &record.ifname, |sock| {
                    client::release(sock, &record.identity, &other).map_err(ExchangeError::Io)
                });
                self.expire_or_retry(key, generation, &lease, age);
            }
            Err(e) if e.contains("does not exist") || e.contains("No such device") => {
                log(&format!(
                    "dropping the lease of {}: {e}",
                    ack.message.yiaddr
                ));
                self.leases.lock().expect("leases").remove(key);
                self.release_held(&record, &ack);
                let _ = self.store.remove(key);
            }
            Err(_) => self.expire_or_retry(key, generation, &lease, age),
        }
    }

    fn expire_or_retry(&self, key: &[u8], generation: u64, lease: &Lease, age: Duration) {
        let mut leases = self.leases.lock().expect("leases");
        let Some(h) = leases.get_mut(key) else {
            return;
        };
        if h.generation != generation {
            return;
        }
        if age >= lease.lease_time && h.phase != Phase::Expired {
            log(&format!("the lease of {} expired", h.ack.message.yiaddr));
            h.phase = Phase::Expired;
        }
        let phase = h.phase;
        drop(leases);
        self.reschedule(key, generation, lease, age, phase);
    }

    fn reschedule(&self, key: &[u8], generation: u64, lease: &Lease, age: Duration, phase: Phase) {
        let wait = Self::next_step(lease, age, phase, self.opts.resendmax);
        self.schedule(key, generation, Instant::now() + wait);
    }

    /// Answers one connection.
    pub fn serve(&self, s: UnixStream) {
        let r = rpc::serve(&s, Duration::from_secs(30), |method, args| match method {
            "DHCP.Allocate" => self.allocate(&args).map(Reply::Result),
            "DHCP.Release" => self.release(&args).map(|_| Reply::Empty),
            "DHCP.Check" => self.check(&args).map(|_| Reply::Empty),
            "DHCP.GC" => self.gc(&args).map(|_| Reply::Empty),
            "DHCP.Status" => Ok(Reply::Empty),
            other => Err(format!("rpc: can't find method {other}")),
        });
        if let Err(e) = r {
            log(&format!("a connection: {e}"));
        }
    }
}

fn network_name(stdin: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(stdin)
        .ok()
        .and_then(|v| v.get("name")?.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The listening socket: systemd's (LISTEN_FDS, LISTEN_PID) or a fresh one at `path`, its
/// directory made 0700 (the reference's mode: only root talks to the daemon).
pub fn listener(path: &Path) -> io::Result<UnixListener> {
    let pid_matches = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    let fds = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    if pid_matches && fds >= 1 {
        const SD_LISTEN_FDS_START: RawFd = 3;
        // SAFETY: systemd passed descriptor 3 to this process (LISTEN_PID is ours) as a
        // listening socket, and nothing else in the process owns it.
        return Ok(unsafe { UnixListener::from_raw_fd(SD_LISTEN_FDS_START) });
    }
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    UnixListener::bind(path)
}

/// `dhcp daemon`: runs until SIGTERM or SIGINT, then removes its socket and pidfile.
pub fn main(args: &[String]) -> Result<(), String> {
    let opts = Options::parse(args)?;
    let socket = opts.prefixed(&opts.socket.display().to_string());
    crate::signals::block_termination();
    // The leases on disk first: a client that can connect finds them held.
    let daemon = Arc::new(Daemon::new(opts.clone()));
    daemon
        .adopt()
        .map_err(|e| format!("-statedir {}: {e}", opts.statedir.display()))?;
    let listener = listener(&socket).map_err(|e| format!("{}: {e}", socket.display()))?;
    if let Some(p) = &opts.pidfile {
        std::fs::write(p, format!("{}", std::process::id()))
            .map_err(|e| format!("-pidfile {}: {e}", p.display()))?;
    }
    {
        let d = daemon.clone();
        std::thread::Builder::new()
            .name("scheduler".into())
            .spawn(move || d.run_scheduler())
            .map_err(|e| e.to_string())?;
    }
    {
        let d = daemon.clone();
        std::thread::Builder::new()
            .name("accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    match conn {
                        Ok(s) => {
                            let d = d.clone();
                            if let Err(e) = std::thread::Builder::new()
                                .name("conn".into())
                                .stack_size(256 << 10)
                                .spawn(move || d.serve(s))
                            {
                                log(&format!("no thread for a connection: {e}"));
                            }
                        }
                        Err(e) => log(&format!("accept: {e}")),
                    }
                }
            })
            .map_err(|e| e.to_string())?;
    }
    let sig = crate::signals::wait_termination();
    log(&format!("signal {sig}: stopping"));
    let _ = std::fs::remove_file(&socket);
    if let Some(p) = &opts.pidfile {
        let _ = std::fs::remove_file(p);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_as_go_parses_them() {
        let args: Vec<String> = [
            "-socketpath",
            "/tmp/x.sock",
            "--timeout=3s",
            "-resendmax",
            "1m30s",
            "-broadcast",
            "-hostprefix=/host",
            "-pidfile",
            "/run/d.pid",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let o = Options::parse(&args).unwrap();
        assert_eq!(o.socket, PathBuf::from("/tmp/x.sock"));
        assert_eq!(o.timeout, Duration::from_secs(3));
        assert_eq!(o.resendmax, Duration::from_secs(90));
        assert!(o.broadcast);
        assert_eq!(
            o.prefixed("/run/netns/a"),
            PathBuf::from("/host/run/netns/a")
        );
        assert_eq!(o.pidfile, Some(PathBuf::from("/run/d.pid")));
        let d = Options::parse(&[]).unwrap();
        assert_eq!(d, Options::default());
        assert_eq!(d.socket, PathBuf::from("/run/cni/dhcp.sock"));
        assert_eq!(d.timeout, Duration::from_secs(10));
        assert_eq!(d.resendmax, Duration::from_secs(62));
        assert!(Options::parse(&["-colour".into()])
            .unwrap_err()
            .contains("-colour"));
        assert!(Options::parse(&["-timeout".into(), "soon".into()])
            .unwrap_err()
            .contains("soon"));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("1.5h"), Some(Duration::from_secs(5400)));
    }

    #[test]
    fn a_lease_is_renewed_at_t1_then_retried_at_half_the_time_left() {
        let l = Lease {
            address: "192.0.2.9/24".parse().unwrap(),
            gateway: None,
            server: None,
            lease_time: Duration::from_secs(120),
            renew_after: Duration::from_secs(60),
            rebind_after: Duration::from_secs(105),
        };
        let max = Duration::from_secs(62);
        let s = Duration::from_secs;
        assert_eq!(Daemon::next_step(&l, s(0), Phase::Bound, max), s(60));
        assert_eq!(Daemon::next_step(&l, s(61), Phase::Bound, max), s(22));
        assert_eq!(Daemon::next_step(&l, s(104), Phase::Bound, max), s(1));
        assert_eq!(Daemon::next_step(&l, s(106), Phase::Bound, max), s(7));
        assert_eq!(Daemon::next_step(&l, s(200), Phase::Expired, max), s(30));
    }
}
