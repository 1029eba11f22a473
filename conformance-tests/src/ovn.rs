//! A real OVN lab: central NB and SB ovsdb-servers with ovn-northd, and simulated nodes, each
//! its own network namespace with its own ovsdb-server, ovs-vswitchd (userspace datapath) and
//! ovn-controller, joined by Geneve over an underlay: every node's `br-phy` (an OVS bridge
//! holding the node's uplink `ul`, with the tunnel endpoint address) is cabled to a Linux bridge
//! `sw` in a "physical network" namespace. Everything lives in namespaces and a temp dir owned
//! by the lab, and goes away on drop (daemons first, then namespaces).
//!
//! Daemons are reached over unix sockets, which work across network namespaces. Each node also
//! gets a per-node file (`ovn-node.json`: nbdb, ovsdb) for the plugins; pass it with
//! [`OvnNode::plugin_env`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::netns::Netns;
use crate::tempdir::TempDir;

/// The underlay's MTU: large enough for a 1500-byte VM MTU plus Geneve.
pub const UNDERLAY_MTU: &str = "9000";

/// One simulated node.
#[derive(Debug)]
pub struct OvnNode {
    /// The chassis name (`system-id`), distinct in its first 6 characters (tunnel port names).
    pub chassis: String,
    /// The node's namespace: plugins run here.
    pub ns: Netns,
    /// Where this node's daemons keep their DB, sockets, pidfiles and logs.
    pub dir: PathBuf,
    /// Tunnel endpoint address on br-phy.
    pub encap_ip: String,
}

/// What NMState builds on every node for localnet (the documentation's NNCP `br0-ovs`): an OVS
/// bridge holding the node's second NIC, and the OVN bridge mapping of a physical network to it.
#[derive(Debug, Clone)]
pub struct NodeBridge {
    /// The OVS bridge (`br0-ovs`).
    pub bridge: String,
    /// Its port, the node's NIC towards the top-of-rack switch (`ens4`).
    pub port: String,
    /// The localnet (physical network) name mapped to the bridge (`br0-network`).
    pub localnet: String,
}

/// The top-of-rack switch of a localnet lab: an OVS bridge `br-tor` (its own ovsdb-server and
/// ovs-vswitchd, in its own namespace) with a trunk port to every node and access ports to hosts.
#[derive(Debug)]
pub struct Tor {
    pub ns: Netns,
    pub dir: PathBuf,
}

impl Tor {
    /// `ovs-vsctl` against the switch's DB.
    pub fn vsctl(&self, args: &[&str]) -> String {
        run(Command::new("ovs-vsctl")
            .arg(format!("--db=unix:{}", self.dir.join("db.sock").display()))
            .args(args))
    }

    /// `ovs-appctl fdb/show br-tor`: the MACs the switch learned, per port and VLAN.
    pub fn fdb(&self) -> String {
        run(Command::new("ovs-appctl")
            .arg(format!(
                "--target={}",
                self.dir.join("ovs-vswitchd.ctl").display()
            ))
            .args(["fdb/show", "br-tor"]))
    }

    /// The OpenFlow port number of `port` on br-tor (as fdb/show prints it).
    pub fn ofport(&self, port: &str) -> String {
        self.vsctl(&["get", "Interface", port, "ofport"])
            .trim()
            .to_string()
    }
}

/// The lab.
#[derive(Debug)]
pub struct OvnLab {
    pub nodes: Vec<OvnNode>,
    /// The top-of-rack switch, in labs started with [`OvnLab::start_with_tor`].
    pub tor: Option<Tor>,
    node_bridge: Option<NodeBridge>,
    /// The nodes' OVS datapath: "netdev" (userspace, what this machine's kernel allows) or
    /// "system" (the kernel openvswitch module with kernel Geneve: the kernel lane).
    pub datapath: &'static str,
    /// Where the central daemons live (NB, SB, northd).
    pub central: Netns,
    /// The physical network: Linux bridge `sw`, one port per node (`n<i>`).
    pub phy: Netns,
    /// In labs started with [`OvnLab::start_clustered`]: the NB and SB are three-member raft
    /// clusters, member `i` in `raft[i]` (raft over TCP through a hub bridge in `raft_hub`).
    pub raft: Vec<Netns>,
    raft_hub: Option<Netns>,
    dir: TempDir,
    /// One lab at a time per process (dropped last, after the daemons and namespaces): several
    /// userspace-datapath labs on two cores starve each other's ovn-controllers and tunnels.
    _serial: std::sync::MutexGuard<'static, ()>,
}

/// Serialises labs within a test process.
static ONE_LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?} (make deps installs openvswitch-switch, ovn-central, ovn-host): {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn in_ns(ns: &Netns, argv: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns.name()]).args(argv);
    c
}

fn daemon_args(dir: &Path, name: &str) -> Vec<String> {
    let mut args = vec![
        format!("--pidfile={}", dir.join(format!("{name}.pid")).display()),
        format!("--log-file={}", dir.join(format!("{name}.log")).display()),
        "--detach".into(),
        "--no-chdir".into(),
    ];
    // ovn-controller 23.03 has no --unixctl: its socket is $OVN_RUNDIR/ovn-controller.<pid>.ctl.
    if name != "ovn-controller" {
        args.push(format!(
            "--unixctl={}",
            dir.join(format!("{name}.ctl")).display()
        ));
    }
    args
}

/// An Open vSwitch of its own in `ns`: a fresh DB in `dir`, its ovsdb-server and ovs-vswitchd
/// (pidfiles, logs and sockets in `dir`); returns the DB's socket.
fn start_open_vswitch(ns: &Netns, dir: &Path) -> PathBuf {
    let db = dir.join("conf.db");
    run(Command::new("ovsdb-tool")
        .arg("create")
        .arg(&db)
        .arg("/usr/share/openvswitch/vswitch.ovsschema"));
    let sock = dir.join("db.sock");
    let mut cmd = in_ns(ns, &["ovsdb-server"]);
    cmd.arg(&db)
        .arg(format!("--remote=punix:{}", sock.display()))
        .args(daemon_args(dir, "ovsdb-server"));
    run(&mut cmd);
    wait_for(&sock, "ovsdb-server");
    run(Command::new("ovs-vsctl")
        .arg(format!("--db=unix:{}", sock.display()))
        .args(["--no-wait", "init"]));
    let mut cmd = in_ns(ns, &["env"]);
    cmd.arg(format!("OVS_RUNDIR={}", dir.display()))
        .arg("ovs-vswitchd")
        .arg(format!("unix:{}", sock.display()))
        .args(daemon_args(dir, "ovs-vswitchd"));
    run(&mut cmd);
    sock
}

fn wait_for(path: &Path, what: &str) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what} did not create {} within 10 s",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl OvnLab {
    /// Starts central DBs, northd and `n` nodes (chassis `<tag>-aN`... distinct prefixes).
    pub fn start(tag: &str, n: usize) -> OvnLab {
        OvnLab::start_inner(tag, n, None, "netdev", false)
    }

    /// A lab whose central NB and SB are three-member raft clusters, as production runs them:
    /// member `i` of both in namespace `raft[i]`, raft over TCP, clients on unix sockets
    /// (`nbdb()` and `sbdb()` list all three); northd and the nodes' ovn-controllers get the
    /// lists.
    pub fn start_clustered(tag: &str, n: usize) -> OvnLab {
        OvnLab::start_inner(tag, n, None, "netdev", true)
    }

    /// A lab whose nodes use the kernel datapath (the openvswitch module, kernel Geneve), as
    /// production nodes do; only kernels with those modules run it (`make test-kernel`).
    pub fn start_kernel_datapath(tag: &str, n: usize) -> OvnLab {
        OvnLab::start_inner(tag, n, None, "system", false)
    }

    /// A lab whose nodes also have `bridge` (an OVS bridge on a NIC cabled to a top-of-rack
    /// switch, with the OVN bridge mapping), for localnet networks.
    pub fn start_with_tor(tag: &str, n: usize, bridge: NodeBridge) -> OvnLab {
        OvnLab::start_inner(tag, n, Some(bridge), "netdev", false)
    }

    fn start_inner(
        tag: &str,
        n: usize,
        node_bridge: Option<NodeBridge>,
        datapath: &'static str,
        clustered: bool,
    ) -> OvnLab {
        crate::require_root();
        let serial = ONE_LAB.lock().unwrap_or_else(|e| e.into_inner());
        let dir = TempDir::new(&format!("ovn-{tag}"));
        let central = Netns::new(&format!("{tag}-c"));
        let phy = Netns::new(&format!("{tag}-phy"));
        let mut lab = OvnLab {
            nodes: Vec::new(),
            tor: None,
            node_bridge,
            datapath,
            _serial: serial,
            central,
            phy,
            raft: Vec::new(),
            raft_hub: None,
            dir,
        };
        if clustered {
            lab.start_raft_central(tag);
        } else {
            lab.start_central();
        }
        if lab.node_bridge.is_some() {
            lab.start_tor(tag);
        }
        run(&mut in_ns(
            &lab.phy,
            &["ip", "link", "add", "name", "sw", "type", "bridge"],
        ));
        run(&mut in_ns(
            &lab.phy,
            &["ip", "link", "set", "sw", "mtu", UNDERLAY_MTU, "up"],
        ));
        for i in 0..n {
            lab.add_node(i);
        }
        lab.wait_chassis(n);
        lab
    }

    fn central_dir(&self) -> PathBuf {
        self.dir.join("central")
    }

    /// The NB endpoint (`unix:<path>`; in a clustered lab, the members' in order).
    pub fn nbdb(&self) -> String {
        self.db_endpoints("nb")
    }

    /// The SB endpoint(s).
    pub fn sbdb(&self) -> String {
        self.db_endpoints("sb")
    }

    fn db_endpoints(&self, db: &str) -> String {
        if self.raft.is_empty() {
            return format!(
                "unix:{}",
                self.central_dir().join(format!("{db}.sock")).display()
            );
        }
        (0..self.raft.len())
            .map(|i| self.member_endpoint(db, i))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Member `i`'s client endpoint of `db` ("nb" or "sb") in a clustered lab.
    pub fn member_endpoint(&self, db: &str, i: usize) -> String {
        format!(
            "unix:{}",
            self.central_dir().join(format!("{db}{i}.sock")).display()
        )
    }

    /// Starts the NB and SB as three-member raft clusters (raft over TCP between member
    /// namespaces cabled to a hub bridge), then northd with both lists.
    fn start_raft_central(&mut self, tag: &str) {
        let c = self.central_dir();
        std::fs::create_dir_all(&c).expect("central dir");
        let hub = Netns::new(&format!("{tag}-rh"));
        run(&mut in_ns(
            &hub,
            &["ip", "link", "add", "rb", "type", "bridge"],
        ));
        run(&mut in_ns(&hub, &["ip", "link", "set", "rb", "up"]));
        for i in 0..3 {
            let m = Netns::new(&format!("{tag}-r{i}"));
            let (outer, inner) = (format!("h{i}"), format!("r{i}"));
            run(&mut in_ns(
                &hub,
                &[
                    "ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner,
                ],
            ));
            run(&mut in_ns(
                &hub,
                &["ip", "link", "set", &inner, "netns", m.name()],
            ));
            run(&mut in_ns(
                &hub,
                &["ip", "link", "set", &outer, "master", "rb", "up"],
            ));
            let addr = format!("172.30.8.{}/24", i + 1);
            run(&mut in_ns(&m, &["ip", "addr", "add", &addr, "dev", &inner]));
            run(&mut in_ns(&m, &["ip", "link", "set", &inner, "up"]));
            self.raft.push(m);
        }
        self.raft_hub = Some(hub);
        for (db, schema, name, port) in [
            (
                "nb",
                "/usr/share/ovn/ovn-nb.ovsschema",
                "OVN_Northbound",
                6643,
            ),
            (
                "sb",
                "/usr/share/ovn/ovn-sb.ovsschema",
                "OVN_Southbound",
                6644,
            ),
        ] {
            let file = |i: usize| c.join(format!("{db}{i}.db"));
            let raft = |i: usize| format!("tcp:172.30.8.{}:{port}", i + 1);
            run(Command::new("ovsdb-tool")
                .arg("create-cluster")
                .arg(file(0))
                .arg(schema)
                .arg(raft(0)));
            for i in 1..3 {
                run(Command::new("ovsdb-tool")
                    .arg("join-cluster")
                    .arg(file(i))
                    .arg(name)
                    .arg(raft(i))
                    .arg(raft(0)));
            }
            for i in 0..3 {
                self.start_member(db, i);
            }
        }
        for db in ["nb", "sb"] {
            for i in 0..3 {
                self.wait_member(db, i, |status| status.contains("Status: cluster member"));
            }
        }
        let mut cmd = in_ns(&self.central, &["ovn-northd"]);
        cmd.arg(format!("--ovnnb-db={}", self.nbdb()))
            .arg(format!("--ovnsb-db={}", self.sbdb()))
            .args(daemon_args(&c, "northd"));
        run(&mut cmd);
    }

    /// Starts (or, after [`OvnLab::kill_member`], restarts) member `i` of `db` on its database
    /// file: a restarted member rejoins its cluster.
    pub fn start_member(&self, db: &str, i: usize) {
        let c = self.central_dir();
        let sock = c.join(format!("{db}{i}.sock"));
        let _ = std::fs::remove_file(&sock);
        let mut cmd = in_ns(&self.raft[i], &["ovsdb-server"]);
        cmd.arg(c.join(format!("{db}{i}.db")))
            .arg(format!("--remote=punix:{}", sock.display()))
            .args(daemon_args(&c, &format!("{db}-ovsdb{i}")));
        run(&mut cmd);
        wait_for(&sock, "ovsdb-server");
    }

    /// `cluster/status` of member `i` of `db` ("nb" or "sb"), or "" when it does not answer.
    pub fn cluster_status(&self, db: &str, i: usize) -> String {
        let name = if db == "nb" {
            "OVN_Northbound"
        } else {
            "OVN_Southbound"
        };
        let ctl = self.central_dir().join(format!("{db}-ovsdb{i}.ctl"));
        Command::new("ovs-appctl")
            .arg("-t")
            .arg(&ctl)
            .args(["cluster/status", name])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    fn wait_member(&self, db: &str, i: usize, want: impl Fn(&str) -> bool) {
        let what = format!("{db} member {i} becomes what the test waits for");
        crate::wait_until(&what, Duration::from_secs(30), || {
            want(&self.cluster_status(db, i))
        });
    }

    /// The member of `db` that is leader, once exactly one of the living ones says so.
    pub fn raft_leader(&self, db: &str, among: &[usize]) -> usize {
        let mut found = None;
        crate::wait_until(
            &format!("one {db} leader among {among:?}"),
            Duration::from_secs(30),
            || {
                let leaders: Vec<usize> = among
                    .iter()
                    .copied()
                    .filter(|&i| self.cluster_status(db, i).contains("Role: leader"))
                    .collect();
                found = (leaders.len() == 1).then(|| leaders[0]);
                found.is_some()
            },
        );
        found.expect("waited for")
    }

    /// Kills member `i` of `db` (SIGKILL: a crash, not a shutdown).
    pub fn kill_member(&self, db: &str, i: usize) {
        let pidfile = self.central_dir().join(format!("{db}-ovsdb{i}.pid"));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .expect("member pidfile")
            .trim()
            .parse()
            .expect("pid");
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }

    /// Cuts member namespace `i` off from the other members (`up`: cables it again); its
    /// clients still reach it on its unix sockets, as with a real partition.
    pub fn cable_member(&self, i: usize, up: bool) {
        let hub = self.raft_hub.as_ref().expect("a clustered lab");
        let state = if up { "up" } else { "down" };
        run(&mut in_ns(
            hub,
            &["ip", "link", "set", &format!("h{i}"), state],
        ));
    }

    /// Waits until member `i` of `db` says it is (`connected`) or is not connected to its
    /// cluster.
    pub fn wait_member_connected(&self, db: &str, i: usize, connected: bool) {
        self.wait_member(db, i, |s| {
            let disconnected = s.contains("disconnected from the cluster")
                || !s.contains("Leader: ")
                || s.contains("Leader: unknown");
            if connected {
                s.contains("Status: cluster member") && !disconnected
            } else {
                disconnected
            }
        });
    }

    fn start_central(&self) {
        let c = self.central_dir();
        std::fs::create_dir_all(&c).expect("central dir");
        for (db, schema) in [
            ("nb", "/usr/share/ovn/ovn-nb.ovsschema"),
            ("sb", "/usr/share/ovn/ovn-sb.ovsschema"),
        ] {
            let file = c.join(format!("{db}.db"));
            run(Command::new("ovsdb-tool")
                .arg("create")
                .arg(&file)
                .arg(schema));
            let mut cmd = in_ns(&self.central, &["ovsdb-server"]);
            cmd.arg(&file)
                .arg(format!(
                    "--remote=punix:{}",
                    c.join(format!("{db}.sock")).display()
                ))
                .args(daemon_args(&c, &format!("{db}-ovsdb")));
            run(&mut cmd);
            wait_for(&c.join(format!("{db}.sock")), "ovsdb-server");
        }
        let mut cmd = in_ns(&self.central, &["ovn-northd"]);
        cmd.arg(format!("--ovnnb-db={}", self.nbdb()))
            .arg(format!("--ovnsb-db={}", self.sbdb()))
            .args(daemon_args(&c, "northd"));
        run(&mut cmd);
    }

    fn add_node(&mut self, i: usize) {
        // Distinct in the first 6 characters: OVN names tunnel ports after them.
        let chassis = format!("{}node-{i}", (b'a' + i as u8) as char);
        let ns = Netns::new(&format!("ovn{i}"));
        let dir = self.dir.join(&chassis);
        std::fs::create_dir_all(&dir).expect("node dir");
        let encap_ip = format!("172.31.0.{}", i + 1);
        // Underlay cable: created in the physical network's namespace, the node end straight
        // into the node's namespace (nothing ever exists in the root namespace).
        // Registered before anything starts, so that Drop stops whatever did start.
        self.nodes.push(OvnNode {
            chassis: chassis.clone(),
            ns,
            dir: dir.clone(),
            encap_ip: encap_ip.clone(),
        });
        let sbdb = self.sbdb();
        let node = &self.nodes[i];
        let ns = &node.ns;
        let sw_port = format!("n{i}");
        run(&mut in_ns(
            &self.phy,
            &[
                "ip",
                "link",
                "add",
                "name",
                &sw_port,
                "mtu",
                UNDERLAY_MTU,
                "type",
                "veth",
                "peer",
                "name",
                "ul",
                "mtu",
                UNDERLAY_MTU,
                "netns",
                ns.name(),
            ],
        ));
        run(&mut in_ns(
            &self.phy,
            &["ip", "link", "set", &sw_port, "master", "sw", "up"],
        ));
        run(&mut in_ns(ns, &["ip", "link", "set", "ul", "up"]));
        let sock = start_open_vswitch(ns, &dir);
        let dp = format!("datapath_type={}", self.datapath);
        if self.datapath == "system" {
            // ovs-vswitchd does not load the module itself; OVN's tunnels need Geneve too.
            for module in ["openvswitch", "geneve"] {
                let _ = Command::new("modprobe").arg(module).status();
            }
        }
        node.vsctl(&[
            "add-br", "br-phy", "--", "set", "bridge", "br-phy", &dp, "--", "add-port", "br-phy",
            "ul",
        ]);
        // The bridge's internal port appears once ovs-vswitchd has built the datapath.
        let start = Instant::now();
        while !node.ns.has_link("br-phy") {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "ovs-vswitchd did not create br-phy (datapath {}) within 30 s",
                self.datapath
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        run(&mut in_ns(
            &node.ns,
            &[
                "ip",
                "addr",
                "add",
                &format!("{encap_ip}/24"),
                "dev",
                "br-phy",
            ],
        ));
        run(&mut in_ns(
            &node.ns,
            &["ip", "link", "set", "br-phy", "mtu", UNDERLAY_MTU, "up"],
        ));
        node.vsctl(&[
            "set",
            "open_vswitch",
            ".",
            &format!("external_ids:system-id={chassis}"),
            &format!("external_ids:ovn-remote={sbdb}"),
            "external_ids:ovn-encap-type=geneve",
            &format!("external_ids:ovn-encap-ip={encap_ip}"),
            &format!("external_ids:ovn-bridge-datapath-type={}", self.datapath),
        ]);
        if let (Some(nb), Some(tor)) = (&self.node_bridge, &self.tor) {
            // The NNCP's OVS bridge on the node's NIC, cabled to a trunk port of the ToR.
            let tor_port = format!("t{i}");
            run(&mut in_ns(
                &tor.ns,
                &[
                    "ip",
                    "link",
                    "add",
                    "name",
                    &tor_port,
                    "mtu",
                    UNDERLAY_MTU,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &nb.port,
                    "mtu",
                    UNDERLAY_MTU,
                    "netns",
                    node.ns.name(),
                ],
            ));
            run(&mut in_ns(&tor.ns, &["ip", "link", "set", &tor_port, "up"]));
            tor.vsctl(&["add-port", "br-tor", &tor_port]);
            run(&mut in_ns(&node.ns, &["ip", "link", "set", &nb.port, "up"]));
            node.vsctl(&[
                "add-br",
                &nb.bridge,
                "--",
                "set",
                "bridge",
                &nb.bridge,
                "datapath_type=netdev",
                "--",
                "add-port",
                &nb.bridge,
                &nb.port,
            ]);
            run(&mut in_ns(
                &node.ns,
                &["ip", "link", "set", &nb.bridge, "up"],
            ));
            node.vsctl(&[
                "set",
                "open_vswitch",
                ".",
                &format!(
                    "external_ids:ovn-bridge-mappings={}:{}",
                    nb.localnet, nb.bridge
                ),
            ]);
        }
        let mut cmd = in_ns(&node.ns, &["env"]);
        cmd.arg(format!("OVS_RUNDIR={}", dir.display()))
            .arg(format!("OVN_RUNDIR={}", dir.display()))
            .arg("ovn-controller")
            .arg(format!("unix:{}", sock.display()))
            .args(daemon_args(&dir, "ovn-controller"));
        run(&mut cmd);
        let conf = json!({"nbdb": self.nbdb(), "ovsdb": node.ovsdb()});
        std::fs::write(node.node_file(), conf.to_string()).expect("per-node file");
    }

    /// Waits until `n` chassis are registered and each node has br-int.
    fn wait_chassis(&self, n: usize) {
        let start = Instant::now();
        loop {
            let out = self.sbctl(&["--bare", "--columns=name", "list", "Chassis"]);
            let count = out.split_whitespace().count();
            let br_int = self
                .nodes
                .iter()
                .all(|node| node.try_vsctl(&["br-exists", "br-int"]));
            // Every node has its Geneve tunnel port to every other one.
            let tunnels = self.nodes.iter().all(|node| {
                let ports = node.try_vsctl_out(&["list-ports", "br-int"]);
                ports.lines().filter(|p| p.starts_with("ovn-")).count() + 1 >= n
            });
            if count >= n && br_int && tunnels {
                self.seed_tunnel_neighbours();
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "only {count} of {n} chassis registered (or br-int or tunnels missing) after 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Tells each node's userspace tunnel code the underlay MAC of every other node, so that the
    /// first packets of a test are not lost to address resolution of the tunnel endpoint (a
    /// userspace-datapath pitfall; the kernel datapath resolves through the kernel).
    fn seed_tunnel_neighbours(&self) {
        if self.datapath != "netdev" {
            return;
        }
        let macs: Vec<String> = self
            .nodes
            .iter()
            .map(|node| {
                let out = node.ns.run_ok(&["cat", "/sys/class/net/br-phy/address"]);
                out.trim().to_string()
            })
            .collect();
        for (i, node) in self.nodes.iter().enumerate() {
            for (j, other) in self.nodes.iter().enumerate() {
                if i != j {
                    node.appctl(&["tnl/neigh/set", "br-phy", &other.encap_ip, &macs[j]]);
                }
            }
        }
    }

    fn start_tor(&mut self, tag: &str) {
        let ns = Netns::new(&format!("{tag}-tor"));
        let dir = self.dir.join("tor");
        std::fs::create_dir_all(&dir).expect("tor dir");
        self.tor = Some(Tor {
            ns,
            dir: dir.clone(),
        });
        let tor = self.tor.as_ref().expect("just set");
        start_open_vswitch(&tor.ns, &dir);
        tor.vsctl(&[
            "add-br",
            "br-tor",
            "--",
            "set",
            "bridge",
            "br-tor",
            "datapath_type=netdev",
        ]);
        // The switch's revalidator runs every 100 ms rather than OVS's default 500. OVS also
        // learns MACs from the statistics of datapath flows that the revalidator pushes, so a
        // pass can put back what a newer frame taught it. Left at 500, in 3 of 8 IPv6
        // migration tests the ToR's FDB (sampled every 40 ms) kept the migrated VM on the
        // source's trunk, refreshed just after the cut-over, until ~520 ms. The guest's
        // advertisements from the target had reached the router at 23 ms. At 100: no silence
        // over 56 ms in 14 runs. A hardware switch learns from each frame
        // (docs/ipv6.md, "The migration outage").
        tor.vsctl(&[
            "set",
            "Open_vSwitch",
            ".",
            "other_config:max-revalidator=100",
        ]);
        run(&mut in_ns(&tor.ns, &["ip", "link", "set", "br-tor", "up"]));
    }

    /// A host on the physical network: its own namespace with `eth0` at `cidr`, on an access
    /// port of the ToR in `vlan` (None: untagged, the native VLAN of the trunks).
    pub fn add_host(&self, tag: &str, vlan: Option<u16>, cidr: &str) -> Netns {
        let tor = self
            .tor
            .as_ref()
            .expect("a lab started with start_with_tor");
        let host = Netns::new(tag);
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let port = format!("h{}", N.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        run(&mut in_ns(
            &tor.ns,
            &[
                "ip",
                "link",
                "add",
                "name",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                host.name(),
            ],
        ));
        run(&mut in_ns(&tor.ns, &["ip", "link", "set", &port, "up"]));
        match vlan {
            Some(v) => tor.vsctl(&["add-port", "br-tor", &port, &format!("tag={v}")]),
            None => tor.vsctl(&["add-port", "br-tor", &port, "vlan_mode=access"]),
        };
        host.run_ok(&["ip", "addr", "add", cidr, "dev", "eth0"]);
        host.run_ok(&["ip", "link", "set", "eth0", "up"]);
        host
    }

    /// Cables one more NIC `ifname` of node `node` to a trunk port of the ToR (for a Linux bridge
    /// of the node on the same physical network).
    pub fn cable(&self, node: usize, ifname: &str) {
        let tor = self
            .tor
            .as_ref()
            .expect("a lab started with start_with_tor");
        let n = &self.nodes[node];
        let tor_port = format!("x{node}{ifname}");
        run(&mut in_ns(
            &tor.ns,
            &[
                "ip",
                "link",
                "add",
                "name",
                &tor_port,
                "type",
                "veth",
                "peer",
                "name",
                ifname,
                "netns",
                n.ns.name(),
            ],
        ));
        run(&mut in_ns(&tor.ns, &["ip", "link", "set", &tor_port, "up"]));
        tor.vsctl(&["add-port", "br-tor", &tor_port]);
    }

    /// `ovn-nbctl` against the lab's NB.
    pub fn nbctl(&self, args: &[&str]) -> String {
        run(Command::new("ovn-nbctl")
            .arg(format!("--db={}", self.nbdb()))
            .args(args))
    }

    /// `ovn-sbctl` against the lab's SB.
    pub fn sbctl(&self, args: &[&str]) -> String {
        run(Command::new("ovn-sbctl")
            .arg(format!("--db={}", self.sbdb()))
            .args(args))
    }

    /// The state a failed traffic assertion needs: the SB's chassis and bindings, and each node's
    /// br-int ports with their external_ids and ovn-controller's connection status.
    pub fn diagnose(&self) -> String {
        let mut out = String::new();
        let sb = Command::new("ovn-sbctl")
            .arg(format!("--db={}", self.sbdb()))
            .arg("show")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        out.push_str(&format!("--- ovn-sbctl show\n{sb}"));
        for node in &self.nodes {
            let ifaces =
                node.try_vsctl_out(&["--columns=name,ofport,external_ids", "list", "Interface"]);
            out.push_str(&format!("--- {} interfaces\n{ifaces}", node.chassis));
            let dp = Command::new("ovs-appctl")
                .arg(format!(
                    "--target={}",
                    node.dir.join("ovs-vswitchd.ctl").display()
                ))
                .args(["dpctl/dump-flows", "-m"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            out.push_str(&format!("--- {} datapath flows\n{dp}", node.chassis));
            let log =
                std::fs::read_to_string(node.dir.join("ovn-controller.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            out.push_str(&format!(
                "--- {} ovn-controller.log (last lines)\n{}\n",
                node.chassis,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            ));
        }
        out
    }

    /// A directory of the lab for the test's own files.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl OvnNode {
    /// This node's OVS DB endpoint.
    pub fn ovsdb(&self) -> String {
        format!("unix:{}", self.dir.join("db.sock").display())
    }

    /// The per-node file for the plugins.
    pub fn node_file(&self) -> PathBuf {
        self.dir.join("ovn-node.json")
    }

    /// The environment a plugin on this node gets (the per-node file's path).
    pub fn plugin_env(&self) -> (String, String) {
        (
            "MULTIHOME_OVN_NODE_CONFIG".to_string(),
            self.node_file().display().to_string(),
        )
    }

    /// `ovs-vsctl` against this node's DB.
    pub fn vsctl(&self, args: &[&str]) -> String {
        run(Command::new("ovs-vsctl")
            .arg(format!("--db={}", self.ovsdb()))
            .args(args))
    }

    fn try_vsctl_out(&self, args: &[&str]) -> String {
        Command::new("ovs-vsctl")
            .arg(format!("--db={}", self.ovsdb()))
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    fn try_vsctl(&self, args: &[&str]) -> bool {
        Command::new("ovs-vsctl")
            .arg(format!("--db={}", self.ovsdb()))
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// `ovs-appctl` to this node's ovs-vswitchd.
    pub fn appctl(&self, args: &[&str]) -> String {
        run(Command::new("ovs-appctl")
            .arg(format!(
                "--target={}",
                self.dir.join("ovs-vswitchd.ctl").display()
            ))
            .args(args))
    }

    fn stop(&self) {
        for d in ["ovn-controller", "ovs-vswitchd", "ovsdb-server"] {
            kill_pidfile(&self.dir.join(format!("{d}.pid")));
        }
    }
}

/// SIGTERM to the daemon in `pidfile`, then SIGKILL after 2 s; waits until it is gone.
fn kill_pidfile(pidfile: &Path) {
    let Ok(text) = std::fs::read_to_string(pidfile) else {
        return;
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return;
    };
    let pid = nix::unistd::Pid::from_raw(pid);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let start = Instant::now();
    loop {
        let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false);
        if !alive {
            return;
        }
        if start.elapsed() > Duration::from_secs(2) {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        if start.elapsed() > Duration::from_secs(5) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for OvnLab {
    fn drop(&mut self) {
        for node in &self.nodes {
            node.stop();
        }
        if let Some(tor) = &self.tor {
            for d in ["ovs-vswitchd", "ovsdb-server"] {
                kill_pidfile(&tor.dir.join(format!("{d}.pid")));
            }
        }
        let c = self.central_dir();
        for d in ["northd", "sb-ovsdb", "nb-ovsdb"] {
            kill_pidfile(&c.join(format!("{d}.pid")));
        }
        for i in 0..self.raft.len() {
            for d in ["sb-ovsdb", "nb-ovsdb"] {
                kill_pidfile(&c.join(format!("{d}{i}.pid")));
            }
        }
    }
}

/// A "VM" of an OVN test: a namespace and the container ID its attachments use.
#[derive(Debug)]
pub struct Vm {
    pub ns: Netns,
    pub cid: String,
}

impl Vm {
    /// A new VM namespace named after `tag`.
    pub fn new(tag: &str) -> Vm {
        let ns = Netns::new(tag);
        let cid = format!("cid-{}", ns.name());
        Vm { ns, cid }
    }

    /// Pings `to` until one reply arrives or 20 s pass: a new port's flows on the *other* nodes
    /// come from their ovn-controller, which learns of the port asynchronously (ADD returns once
    /// the local node installed it), and takes its time on a loaded machine.
    pub fn reaches(&self, to: &str) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(20) {
            if self
                .ns
                .run(&["ping", "-c1", "-W1", "-q", to])
                .status
                .success()
            {
                return true;
            }
        }
        false
    }

    /// Two pings 200 ms apart, one second of patience: for "does not reach" once a path is known
    /// to work, and for "still reaches".
    pub fn pings(&self, to: &str) -> bool {
        self.ns
            .run(&["ping", "-c2", "-i0.2", "-W1", "-q", to])
            .status
            .success()
    }
}

impl Vm {
    /// [`Vm::pings`] with `source` as the source address (`ping -I`): for port security.
    pub fn pings_from(&self, source: &str, to: &str) -> bool {
        self.ns
            .run(&["ping", "-c2", "-i0.2", "-W1", "-q", "-I", source, to])
            .status
            .success()
    }
}

/// The one address of a result, which must lie in `prefix` (an address prefix as text, like
/// `fd00:100::`) with the prefix length `len`; returned with its length.
pub fn only_address(result: &Value, prefix: &str, len: &str) -> String {
    let ips = result["ips"].as_array().expect("ips");
    assert_eq!(ips.len(), 1, "{result}");
    let addr = ips[0]["address"].as_str().expect("an address").to_string();
    assert!(
        addr.starts_with(prefix) && addr.ends_with(&format!("/{len}")),
        "{addr} is not in {prefix}/{len}"
    );
    addr
}

/// CNI_ARGS of a Kubernetes pod, as Multus passes them.
pub fn pod_args(ns: &str, name: &str) -> String {
    format!("IgnoreUnknown=true;K8S_POD_NAMESPACE={ns};K8S_POD_NAME={name};K8S_POD_UID=uid-{name}")
}

/// The JSON of a successful call (Null for the empty output of DEL); panics on failure.
pub fn ok_json(o: &crate::Outcome) -> Value {
    assert!(o.ok(), "plugin failed: {}", o.stdout_text());
    o.try_json().unwrap_or(Value::Null)
}

/// Every row of an NB table, as `ovn-nbctl --format=json list` prints it, keyed by column.
pub fn nb_rows(lab: &OvnLab, table: &str) -> Vec<Value> {
    let out = lab.nbctl(&["--format=json", "list", table]);
    let v: Value = serde_json::from_str(&out).expect("ovn-nbctl JSON");
    let headings: Vec<String> = v["headings"]
        .as_array()
        .expect("headings")
        .iter()
        .map(|h| h.as_str().unwrap_or_default().to_string())
        .collect();
    v["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|row| {
            let mut o = serde_json::Map::new();
            for (h, cell) in headings.iter().zip(row.as_array().into_iter().flatten()) {
                o.insert(h.clone(), cell.clone());
            }
            Value::Object(o)
        })
        .collect()
}

/// An OVSDB map cell (`["map", [[k, v], ...]]`) as strings.
pub fn ovsdb_map(v: &Value) -> std::collections::BTreeMap<String, String> {
    v[1].as_array()
        .map(|pairs| {
            pairs
                .iter()
                .map(|p| {
                    (
                        p[0].as_str().unwrap_or_default().to_string(),
                        p[1].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// An OVSDB set-of-strings cell (a bare string is a one-element set).
pub fn ovsdb_strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) if a.first() == Some(&json!("set")) => a[1]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => vec![],
    }
}

/// The logical switch port called `name`, if any.
pub fn lsp(lab: &OvnLab, name: &str) -> Option<Value> {
    nb_rows(lab, "Logical_Switch_Port")
        .into_iter()
        .find(|p| p["name"] == name)
}

/// The first address of a result, without its prefix length.
pub fn addr_of(result: &Value) -> String {
    result["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .unwrap_or_default()
        .to_string()
}

/// Runs the OVN executable `exe` of `plugins` on `node` for `vm`'s `ifname`, as a runtime would
/// (the node's per-node file in the environment).
#[allow(clippy::too_many_arguments)]
pub fn call(
    plugins: &crate::PluginDir,
    exe: &str,
    node: &OvnNode,
    command: &str,
    vm: &Vm,
    ifname: &str,
    args: &str,
    conf: &Value,
) -> crate::Outcome {
    invocation(plugins, exe, node, command, vm, ifname, args, conf).run()
}

/// The invocation [`call`] runs, for a caller that adds to its environment.
#[allow(clippy::too_many_arguments)]
pub fn invocation(
    plugins: &crate::PluginDir,
    exe: &str,
    node: &OvnNode,
    command: &str,
    vm: &Vm,
    ifname: &str,
    args: &str,
    conf: &Value,
) -> crate::Invocation {
    let vars = crate::CniVars {
        command: command.into(),
        container_id: vm.cid.clone(),
        netns: vm.ns.path().display().to_string(),
        ifname: ifname.into(),
        args: args.into(),
        path: plugins.path().display().to_string(),
    };
    let (k, v) = node.plugin_env();
    crate::Invocation::new(plugins.path().join(exe))
        .in_node(&node.ns)
        .vars(&vars)
        .env(&k, &v)
        .stdin_json(conf)
}

/// Announces `mac` from `ifname` in `ns` as QEMU does after a live migration: RARP frames
/// (ethertype 0x8035, "reverse request"), five rounds 50, 150, ..., 450 ms apart (QEMU's
/// announce-initial / announce-step defaults). OVN's `activation-strategy=rarp` waits for one.
pub fn send_rarp(ns: &Netns, ifname: &str, mac: &str) {
    announce(ns, ifname, mac, &[]);
}

/// [`send_rarp`], and in each round what a virtio guest sends when QEMU asks it to announce
/// itself (`VIRTIO_NET_F_GUEST_ANNOUNCE`; Linux's `netdev_notify_peers`): a gratuitous ARP
/// request for each IPv4 address in `addrs`, and an unsolicited neighbour advertisement (to
/// ff02::1, Override set, hop limit 255, from the address itself, target link-layer address
/// `mac`) for each IPv6 one. RARP carries no IPv6: only the advertisement tells IPv6 peers.
pub fn announce(ns: &Netns, ifname: &str, mac: &str, addrs: &[&str]) {
    let script = ANNOUNCE
        .replace("IFNAME", ifname)
        .replace("MAC", &mac.replace(':', ""))
        .replace("ADDRS", &addrs.join(" "));
    ns.run_ok(&["/usr/bin/python3", "-c", &script]);
}

/// The frames of [`announce`], in Python (raw sockets; the kernel computes ICMPv6 checksums).
const ANNOUNCE: &str = r#"
import socket, struct, time
ifname, m, addrs = 'IFNAME', bytes.fromhex('MAC'), 'ADDRS'.split()
idx = socket.if_nametoindex(ifname)
p = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
p.bind((ifname, 0))
hdr = b'\x00\x01\x08\x00\x06\x04'
pad = b'\x00' * 18
frames = [b'\xff' * 6 + m + b'\x80\x35' + hdr + b'\x00\x03' + m + b'\x00' * 4 + m + b'\x00' * 4 + pad]
for a in [a for a in addrs if ':' not in a]:
    spa = socket.inet_aton(a)
    frames.append(b'\xff' * 6 + m + b'\x08\x06' + hdr + b'\x00\x01' + m + spa + b'\x00' * 6 + spa + pad)
nas = []
for a in [a for a in addrs if ':' in a]:
    s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 255)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, idx)
    s.bind((a, 0, 0, idx))
    target = socket.inet_pton(socket.AF_INET6, a)
    nas.append((s, struct.pack('!BBHI', 136, 0, 0, 0x20000000) + target + b'\x02\x01' + m))
for i in range(5):
    for f in frames:
        p.send(f)
    for s, na in nas:
        s.sendto(na, ('ff02::1', 0, 0, idx))
    time.sleep(0.05 + 0.1 * i)
"#;
