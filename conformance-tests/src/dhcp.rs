//! A DHCP lab: a node namespace with the bridge `br1`, a "datacenter" namespace cabled to it
//! whose `s0` (192.0.2.1/24) runs a real DHCP server (dnsmasq, Kea or ISC dhcpd, Debian's
//! packages), and the dhcp daemon (ours or the reference's) inside the node. Everything lives in
//! namespaces and a temporary directory the lab owns; dropping it stops the processes.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::netns::{Netns, Node};
use crate::process::enter_netns;
use crate::settings::NodeSettings;
use crate::tempdir::TempDir;
use crate::{ours, wait_until, CniVars, Invocation, Outcome, PluginDir};

/// The server's address on the datacenter wire.
pub const SERVER: &str = "192.0.2.1";
/// The DNS server, domain and search list every server hands out.
pub const DNS: &str = "192.0.2.53";
/// The domain name (option 15).
pub const DOMAIN: &str = "corp.example";

/// Which DHCP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// dnsmasq (its minimum lease is 2 minutes; T1 and T2 can be set lower).
    Dnsmasq,
    /// ISC Kea's kea-dhcp4 (any lease time).
    Kea,
    /// ISC dhcpd (isc-dhcp-server).
    Isc,
}

/// What the server is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConf {
    /// Lease time, seconds.
    pub lease: u32,
    /// T1, seconds, if set.
    pub t1: Option<u32>,
    /// T2, seconds, if set.
    pub t2: Option<u32>,
    /// MTU (option 26), if set.
    pub mtu: Option<u16>,
    /// dnsmasq: check with a ping that an address is free before offering it (about 3 s).
    pub ping_check: bool,
}

impl Default for ServerConf {
    fn default() -> Self {
        ServerConf {
            lease: 600,
            t1: None,
            t2: None,
            mtu: None,
            ping_check: false,
        }
    }
}

/// A process the lab started, killed on drop.
#[derive(Debug)]
pub struct Proc {
    child: Child,
    /// Its log (stdout and stderr).
    pub log: PathBuf,
}

impl Proc {
    /// Sends `signal` and waits for the process to end.
    pub fn kill(mut self, signal: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), signal);
        let _ = self.child.wait();
    }

    /// The process ID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `argv` inside `netns` with `env` added, its output in `log`; killed when dropped.
pub fn spawn_in(netns: &Netns, argv: &[&str], env: &[(&str, &str)], log: &Path) -> Proc {
    let out = fs::File::create(log).expect("log file");
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..])
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log"))
        .stderr(out);
    enter_netns(&mut cmd, netns.path()).expect("netns");
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {argv:?}: {e}"));
    Proc {
        child,
        log: log.to_path_buf(),
    }
}

/// The lab.
#[derive(Debug)]
pub struct DhcpLab {
    /// The node, with `br1`.
    pub node: Node,
    /// The datacenter wire's DHCP server namespace.
    pub srv: Netns,
    /// Scratch space: sockets, state, logs, lease files.
    pub dir: TempDir,
    /// The node's settings (`dhcp_socket_dirs`, `dhcp_state_dir`).
    pub settings: NodeSettings,
    /// Which server.
    pub kind: Server,
    /// Its settings.
    pub conf: ServerConf,
    server: Option<Proc>,
    daemon: Option<Proc>,
    starts: usize,
}

impl DhcpLab {
    /// The topology, with `kind` serving `conf` on the wire (no daemon yet).
    pub fn new(kind: Server, conf: ServerConf) -> DhcpLab {
        let node = Node::new("dh-node");
        let srv = Netns::new("dh-srv");
        let dir = TempDir::new("dhcp");
        fs::create_dir_all(dir.join("run")).unwrap();
        node.run_ok(&["ip", "link", "add", "br1", "type", "bridge"]);
        node.run_ok(&["ip", "link", "set", "br1", "up"]);
        node.run_ok(&[
            "ip",
            "link",
            "add",
            "up0",
            "type",
            "veth",
            "peer",
            "name",
            "s0",
            "netns",
            srv.name(),
        ]);
        node.run_ok(&["ip", "link", "set", "up0", "master", "br1", "up"]);
        srv.run_ok(&["ip", "addr", "add", "192.0.2.1/24", "dev", "s0"]);
        srv.run_ok(&["ip", "link", "set", "s0", "up"]);
        let settings = NodeSettings::empty();
        settings.write(
            "node.json",
            &json!({
                "dhcp_socket_dirs": [dir.join("run")],
                "dhcp_state_dir": dir.join("state"),
            }),
        );
        let mut lab = DhcpLab {
            node,
            srv,
            dir,
            settings,
            kind,
            conf,
            server: None,
            daemon: None,
            starts: 0,
        };
        lab.start_server();
        lab
    }

    /// The daemon's socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.join("run/dhcp.sock")
    }

    /// The daemon's lease directory.
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// The lease files our daemon holds.
    pub fn state_files(&self) -> Vec<PathBuf> {
        fs::read_dir(self.state_dir())
            .map(|d| {
                d.flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn lease_file(&self) -> PathBuf {
        self.dir.join("server.leases")
    }

    /// The server's log.
    pub fn server_log(&self) -> String {
        fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// (Re)starts the server with [`DhcpLab::conf`]; its lease file is kept.
    pub fn start_server(&mut self) {
        self.stop_server();
        self.starts += 1;
        let d = |n: &str| self.dir.join(n).display().to_string();
        let c = &self.conf;
        let log = self.dir.join(&format!("server-{}.out", self.starts));
        let proc = match self.kind {
            Server::Dnsmasq => {
                let mut argv: Vec<String> = [
                    "dnsmasq",
                    "--keep-in-foreground",
                    "--conf-file=/dev/null",
                    "--port=0",
                    "--interface=s0",
                    "--bind-interfaces",
                    "--dhcp-authoritative",
                    "--log-dhcp",
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                argv.push(format!(
                    "--dhcp-range=192.0.2.50,192.0.2.199,255.255.255.0,{}",
                    c.lease
                ));
                argv.push(format!("--dhcp-leasefile={}", d("server.leases")));
                argv.push(format!("--log-facility={}", d("server.log")));
                argv.push(format!("--pid-file={}", d("server.pid")));
                argv.push(format!("--dhcp-option=option:dns-server,{DNS}"));
                argv.push(format!("--dhcp-option=option:domain-name,{DOMAIN}"));
                argv.push("--dhcp-option=option:domain-search,corp.example,lab.example".into());
                if let Some(t) = c.t1 {
                    argv.push(format!("--dhcp-option=option:T1,{t}"));
                }
                if let Some(t) = c.t2 {
                    argv.push(format!("--dhcp-option=option:T2,{t}"));
                }
                if let Some(m) = c.mtu {
                    argv.push(format!("--dhcp-option=option:mtu,{m}"));
                }
                if !c.ping_check {
                    argv.push("--no-ping".into());
                }
                let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                spawn_in(&self.srv, &argv, &[], &log)
            }
            Server::Kea => {
                let mut options = vec![
                    json!({"name": "routers", "data": SERVER}),
                    json!({"name": "domain-name-servers", "data": DNS}),
                    json!({"name": "domain-name", "data": DOMAIN}),
                    json!({"name": "domain-search", "data": "corp.example, lab.example"}),
                ];
                if let Some(m) = c.mtu {
                    options.push(json!({"name": "interface-mtu", "data": m.to_string()}));
                }
                let mut dhcp4 = json!({
                    "interfaces-config": {"interfaces": ["s0"], "dhcp-socket-type": "raw"},
                    "lease-database": {"type": "memfile", "persist": true,
                        "name": d("server.leases"), "lfc-interval": 0},
                    "valid-lifetime": c.lease,
                    "subnet4": [{"id": 1, "subnet": "192.0.2.0/24",
                        "pools": [{"pool": "192.0.2.50 - 192.0.2.199"}],
                        "option-data": options}],
                    "loggers": [{"name": "kea-dhcp4", "severity": "DEBUG", "debuglevel": 40,
                        "output_options": [{"output": d("server.log")}]}],
                });
                if let Some(t) = c.t1 {
                    dhcp4["renew-timer"] = json!(t);
                }
                if let Some(t) = c.t2 {
                    dhcp4["rebind-timer"] = json!(t);
                }
                let conf = self.dir.join("kea.json");
                fs::write(&conf, json!({"Dhcp4": dhcp4}).to_string()).unwrap();
                let conf = conf.display().to_string();
                let run = d("kea-run");
                fs::create_dir_all(&run).unwrap();
                spawn_in(
                    &self.srv,
                    &["kea-dhcp4", "-c", &conf],
                    &[("KEA_PIDFILE_DIR", &run), ("KEA_LOCKFILE_DIR", &run)],
                    &log,
                )
            }
            Server::Isc => {
                let mut conf = format!(
                    "authoritative;\ndefault-lease-time {l};\nmax-lease-time {l};\nmin-lease-time {l};\n\
                     subnet 192.0.2.0 netmask 255.255.255.0 {{\n  range 192.0.2.50 192.0.2.199;\n  \
                     option routers {SERVER};\n  option domain-name-servers {DNS};\n  \
                     option domain-name \"{DOMAIN}\";\n",
                    l = c.lease
                );
                if let Some(m) = c.mtu {
                    conf += &format!("  option interface-mtu {m};\n");
                }
                conf += "}\n";
                let cf = self.dir.join("dhcpd.conf");
                fs::write(&cf, conf).unwrap();
                if !self.lease_file().exists() {
                    fs::write(self.lease_file(), "").unwrap();
                }
                let cf = cf.display().to_string();
                let lf = d("server.leases");
                let pf = d("server.pid");
                spawn_in(
                    &self.srv,
                    &[
                        "dhcpd", "-4", "-f", "-d", "-cf", &cf, "-lf", &lf, "-pf", &pf, "s0",
                    ],
                    &[],
                    &log,
                )
            }
        };
        let log = proc.log.clone();
        self.server = Some(proc);
        // Ready when it listens on UDP port 67 in its namespace.
        wait_until(
            &format!("{:?} listening ({})", self.kind, log.display()),
            Duration::from_secs(20),
            || {
                let out = self.srv.run(&["ss", "-Hlnu", "sport", "= :67"]);
                let raw = self.srv.run(&["ss", "-Hlw0"]);
                !String::from_utf8_lossy(&out.stdout).trim().is_empty()
                    || !String::from_utf8_lossy(&raw.stdout).trim().is_empty()
            },
        );
    }

    /// Stops the server.
    pub fn stop_server(&mut self) {
        if let Some(p) = self.server.take() {
            p.kill(nix::sys::signal::Signal::SIGTERM);
        }
    }

    /// Starts our daemon (`dhcp daemon`) with extra flags; returns when its socket answers.
    pub fn start_daemon(&mut self, extra: &[&str]) {
        let bin = ours("dhcp").display().to_string();
        let socket = self.socket().display().to_string();
        let state = self.state_dir().display().to_string();
        let mut argv = vec![
            bin.as_str(),
            "daemon",
            "-socketpath",
            &socket,
            "-statedir",
            &state,
        ];
        argv.extend(extra);
        self.start_daemon_argv(&argv);
    }

    /// Starts the reference daemon (/usr/lib/cni/dhcp daemon) on the same socket.
    pub fn start_reference_daemon(&mut self) {
        let bin = crate::reference("dhcp").display().to_string();
        let socket = self.socket().display().to_string();
        self.start_daemon_argv(&[&bin, "daemon", "-socketpath", &socket]);
    }

    fn start_daemon_argv(&mut self, argv: &[&str]) {
        self.stop_daemon(nix::sys::signal::Signal::SIGTERM);
        let n = fs::read_dir(self.dir.path())
            .map(|d| d.count())
            .unwrap_or(0);
        let log = self.dir.join(&format!("daemon-{n}.log"));
        let proc = start_daemon_in(&self.node, argv, &self.socket(), &log);
        self.daemon = Some(proc);
    }

    /// Stops the daemon with `signal` (SIGKILL: as the OOM killer or a node crash would).
    pub fn stop_daemon(&mut self, signal: nix::sys::signal::Signal) {
        if let Some(p) = self.daemon.take() {
            p.kill(signal);
        }
    }

    /// The daemon's process, if running.
    pub fn daemon(&self) -> Option<&Proc> {
        self.daemon.as_ref()
    }

    /// Everything our daemons logged.
    pub fn daemon_logs(&self) -> String {
        let mut all = String::new();
        for e in fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("daemon-") {
                all += &fs::read_to_string(e.path()).unwrap_or_default();
            }
        }
        all
    }

    /// The documentation's bridge network, as written, with the daemon's socket named (the
    /// lab's daemon does not listen on /run/cni/dhcp.sock: this machine is not a node).
    pub fn nad(&self, version: &str) -> Value {
        json!({
            "cniVersion": version,
            "name": "corp",
            "type": "bridge",
            "bridge": "br1",
            "ipam": {"type": "dhcp", "daemonSocketPath": self.socket()},
        })
    }

    /// Runs `plugin` for `command` in the node, with the node's settings.
    pub fn run(
        &self,
        plugins: &PluginDir,
        plugin: &str,
        command: &str,
        cid: &str,
        ctr: &Path,
        conf: &Value,
    ) -> Outcome {
        self.invoke(plugins, plugin, (command, cid, ctr, ""), conf)
    }

    /// Runs our `bridge` from `plugins` with CNI_ARGS `args`.
    pub fn bridge_with_args(
        &self,
        plugins: &PluginDir,
        command: &str,
        cid: &str,
        ctr: &Path,
        args: &str,
        conf: &Value,
    ) -> Outcome {
        self.invoke(plugins, "bridge", (command, cid, ctr, args), conf)
    }

    fn invoke(
        &self,
        plugins: &PluginDir,
        plugin: &str,
        (command, cid, ctr, args): (&str, &str, &Path, &str),
        conf: &Value,
    ) -> Outcome {
        let vars = CniVars {
            command: command.into(),
            container_id: cid.into(),
            netns: ctr.display().to_string(),
            ifname: "net1".into(),
            args: args.into(),
            path: plugins.path().display().to_string(),
        };
        let (k, v) = self.settings.env();
        Invocation::new(plugins.plugin(plugin))
            .in_node(&self.node)
            .vars(&vars)
            .env(&k, &v)
            .stdin_json(conf)
            .run()
    }

    /// The server's lease file as written.
    pub fn server_lease_file(&self) -> String {
        fs::read_to_string(self.lease_file()).unwrap_or_default()
    }

    /// The addresses the server holds as leased now (released and expired ones excluded).
    pub fn server_leases(&self) -> Vec<String> {
        let text = fs::read_to_string(self.lease_file()).unwrap_or_default();
        match self.kind {
            // "<expiry> <mac> <ip> <hostname> <client-id>" per lease.
            Server::Dnsmasq => text
                .lines()
                .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
                .collect(),
            // Memfile CSV, appended: the last row of an address wins; valid_lifetime 0 or
            // state 2 (expired-reclaimed) means gone.
            Server::Kea => {
                let mut last: std::collections::BTreeMap<String, (u64, u64, String)> =
                    Default::default();
                for l in text.lines().skip(1) {
                    let f: Vec<&str> = l.split(',').collect();
                    if f.len() < 10 {
                        continue;
                    }
                    let valid = f[3].parse().unwrap_or(0);
                    let expire = f[4].parse().unwrap_or(0);
                    last.insert(f[0].to_string(), (valid, expire, f[9].to_string()));
                }
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                last.into_iter()
                    .filter(|(_, (valid, expire, state))| {
                        *valid > 0 && state == "0" && *expire > now
                    })
                    .map(|(a, _)| a)
                    .collect()
            }
            // "lease <ip> { ... binding state active; ... }", appended: the last block wins.
            Server::Isc => {
                let mut state: std::collections::BTreeMap<String, bool> = Default::default();
                let mut current: Option<String> = None;
                for l in text.lines() {
                    let l = l.trim();
                    if let Some(rest) = l.strip_prefix("lease ") {
                        current = rest.split_whitespace().next().map(str::to_string);
                    } else if let (Some(ip), Some(st)) =
                        (&current, l.strip_prefix("binding state "))
                    {
                        state.insert(ip.clone(), st.trim_end_matches(';') == "active");
                    } else if l == "}" {
                        current = None;
                    }
                }
                state
                    .into_iter()
                    .filter(|(_, a)| *a)
                    .map(|(ip, _)| ip)
                    .collect()
            }
        }
    }

    /// When the server's lease of `ip` ends (seconds since the epoch; dnsmasq and Kea).
    pub fn server_expiry(&self, ip: &str) -> Option<u64> {
        let text = fs::read_to_string(self.lease_file()).unwrap_or_default();
        match self.kind {
            Server::Dnsmasq => text.lines().find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(2) == Some(&ip)).then(|| f[0].parse().ok()).flatten()
            }),
            Server::Kea => text
                .lines()
                .filter_map(|l| {
                    let f: Vec<&str> = l.split(',').collect();
                    (f.first() == Some(&ip) && f.len() > 4)
                        .then(|| f[4].parse().ok())
                        .flatten()
                })
                .next_back(),
            Server::Isc => None,
        }
    }

    /// How many DISCOVERs the server logged (all its runs).
    pub fn discovers(&self) -> usize {
        let mut log = self.server_log();
        for i in 1..=self.starts {
            log +=
                &fs::read_to_string(self.dir.join(&format!("server-{i}.out"))).unwrap_or_default();
        }
        match self.kind {
            Server::Dnsmasq => log.matches("DHCPDISCOVER(").count(),
            Server::Kea => log
                .lines()
                .filter(|l| l.contains("DHCP4_PACKET_RECEIVED") && l.contains("DHCPDISCOVER"))
                .count(),
            Server::Isc => log.matches("DHCPDISCOVER from").count(),
        }
    }

    /// The number of live threads of the daemon, and its resident memory in KiB.
    pub fn daemon_threads_and_rss(&self) -> (usize, u64) {
        let pid = self.daemon.as_ref().expect("a daemon").pid();
        let (threads, rss) = threads_and_rss(pid);
        (threads as usize, rss)
    }
}

/// The number of live threads of process `pid`, and its resident memory in KiB.
pub fn threads_and_rss(pid: u32) -> (u64, u64) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("Threads:"), field("VmRSS:"))
}

/// Starts a dhcp daemon (`argv`) inside `netns`; returns once `socket` accepts connections.
pub fn start_daemon_in(netns: &Netns, argv: &[&str], socket: &Path, log: &Path) -> Proc {
    let proc = spawn_in(netns, argv, &[("MULTIHOME_DHCP_TRACE", "1")], log);
    wait_until(
        &format!("the dhcp daemon's socket {}", socket.display()),
        Duration::from_secs(10),
        || std::os::unix::net::UnixStream::connect(socket).is_ok(),
    );
    proc
}

/// dnsmasq serving `first`-`last` (/24) on `iface` of `netns` with `router` as gateway and DNS
/// server, leases in `leases`, its log in `log`; no ping check (each OFFER would wait 3 s).
pub fn dnsmasq(
    netns: &Netns,
    iface: &str,
    pool: (&str, &str),
    router: &str,
    leases: &Path,
    log: &Path,
) -> Proc {
    spawn_in(
        netns,
        &[
            "dnsmasq",
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--port=0",
            &format!("--interface={iface}"),
            "--bind-interfaces",
            "--dhcp-authoritative",
            "--no-ping",
            &format!("--dhcp-range={},{},255.255.255.0,1h", pool.0, pool.1),
            &format!("--dhcp-option=option:router,{router}"),
            &format!("--dhcp-option=option:dns-server,{router}"),
            &format!("--dhcp-leasefile={}", leases.display()),
        ],
        &[],
        log,
    )
}

impl Drop for DhcpLab {
    fn drop(&mut self) {
        self.daemon.take();
        self.server.take();
    }
}
