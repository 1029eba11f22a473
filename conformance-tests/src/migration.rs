//! A live migration on a Linux bridge network, as KubeVirt's bridge binding does it (issue 18).
//!
//! Two simulated nodes whose `br1` (the NMState step, on `ens4`) share a simulated datacenter
//! wire (a Linux bridge `wire` in its own namespace) with a host on it; launcher pods plugged in
//! by our `bridge`, with or without `disableContainerInterface`, with or without whereabouts;
//! KubeVirt's in-pod wiring of the VM behind the pod interface (its MAC replaced, its addresses
//! removed, an in-pod bridge and a tap to the guest); and the cut-over (the source VM stops, the
//! target VM runs and announces itself with QEMU's RARP). The tests check what each step leaves
//! on the wire; `make bench` measures the outage under a 10 ms ping.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use crate::process::Streaming;
use crate::{ours, CniVars, EtcdCluster, Invocation, Netns, Node, Outcome};

/// The VM's MAC, KubeMacPool's for its whole life: both launcher pods ask for it.
pub const VM_MAC: &str = "02:6d:69:67:00:01";
/// The host on the datacenter wire.
pub const HOST_IP: &str = "10.249.0.1";
/// The VM's address when the guest configures it itself (L2 networks).
pub const GUEST_CIDR: &str = "10.249.0.10/24";

/// How the launcher pods are plugged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// L2 (no IPAM), the pod interface up when ADD returns: the bridge plugin's default.
    Up,
    /// L2 with `disableContainerInterface`: the pod interface left down for KubeVirt to set up.
    Down,
    /// whereabouts with `sticky_by_mac` on an etcd cluster both nodes share: the target's ADD
    /// gets the VM's address; the pod interface up (an IPAM cannot go with
    /// `disableContainerInterface`).
    Sticky,
}

impl Binding {
    /// What the NAD says, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Binding::Up => "L2, pod interface up at ADD (the default)",
            Binding::Down => "L2, `disableContainerInterface: true`",
            Binding::Sticky => "whereabouts `sticky_by_mac` (etcd), pod interface up at ADD",
        }
    }
}

/// The two nodes, the wire, the host, and the etcd cluster of a [`Binding::Sticky`] network.
#[derive(Debug)]
pub struct BridgeWire {
    /// Serves both nodes from node A, over a management link of their own.
    pub etcd: Option<Box<EtcdCluster>>,
    /// The simulated datacenter wire: Linux bridge `wire`, port `n<i>` to node `i`'s `ens4`.
    pub wire: Netns,
    /// Node A (0) and node B (1), each with `br1` on `ens4`.
    pub nodes: Vec<Node>,
    /// A host on the wire at [`HOST_IP`].
    pub host: Netns,
}

/// One launcher pod and the VM it runs (the guest's own namespace, behind KubeVirt's tap).
#[derive(Debug)]
pub struct Launcher {
    /// The pod's network namespace, where the CNI interface `net1` is.
    pub pod: Netns,
    /// The guest: `eth0` with the VM's MAC, down until the VM runs in this pod.
    pub guest: Netns,
    /// The pod's container ID.
    pub cid: String,
    n: usize,
}

fn ok(ns: &Netns, script: &str) {
    ns.sh_ok(script);
}

impl BridgeWire {
    /// Builds the topology; with `etcd`, a one-member etcd cluster in node A that node B reaches.
    pub fn new(tag: &str, etcd: bool) -> BridgeWire {
        let wire = Netns::new(&format!("{tag}-wire"));
        ok(&wire, "ip link add wire type bridge && ip link set wire up");
        let nodes: Vec<Node> = (0..2)
            .map(|i| {
                let node = Node::new(&format!("{tag}-n{i}"));
                ok(
                    &wire,
                    &format!(
                        "ip link add n{i} type veth peer name ens4 netns {} && ip link set n{i} master wire && ip link set n{i} up",
                        node.name()
                    ),
                );
                // The NMState step: a Linux bridge br1 with the node's NIC as its port.
                ok(&node, "ip link add br1 type bridge && ip link set ens4 master br1 && ip link set ens4 up && ip link set br1 up");
                node
            })
            .collect();
        let host = Netns::new(&format!("{tag}-host"));
        ok(
            &wire,
            &format!(
                "ip link add h0 type veth peer name eth0 netns {} && ip link set h0 master wire && ip link set h0 up",
                host.name()
            ),
        );
        ok(
            &host,
            &format!("ip addr add {HOST_IP}/24 dev eth0 && ip link set eth0 up"),
        );
        let etcd = etcd.then(|| {
            ok(
                &nodes[0],
                &format!(
                    "ip link add mg0 type veth peer name mg1 netns {} && ip addr add 10.249.255.1/30 dev mg0 && ip link set mg0 up",
                    nodes[1].name()
                ),
            );
            ok(
                &nodes[1],
                "ip addr add 10.249.255.2/30 dev mg1 && ip link set mg1 up",
            );
            Box::new(EtcdCluster::start_serving_at(
                1,
                &nodes[0],
                "10.249.255.1".parse().expect("an address"),
            ))
        });
        BridgeWire {
            etcd,
            wire,
            nodes,
            host,
        }
    }

    /// The NAD of the VM network for `binding`, with the VM's MAC in `runtimeConfig.mac` (the
    /// `mac` capability, what Multus passes from KubeMacPool's annotation).
    pub fn conf(&self, binding: Binding) -> Value {
        let mut c = json!({"cniVersion": "1.1.0", "name": "vm-net", "type": "bridge", "bridge": "br1",
            "runtimeConfig": {"mac": VM_MAC}});
        match binding {
            Binding::Up => {}
            Binding::Down => c["disableContainerInterface"] = json!(true),
            Binding::Sticky => {
                let etcd = self
                    .etcd
                    .as_ref()
                    .expect("a BridgeWire made with etcd for a sticky network");
                c["ipam"] = json!({"type": "whereabouts", "range": "10.249.0.0/24",
                    "range_start": "10.249.0.10", "range_end": "10.249.0.200",
                    "sticky_by_mac": true, "datastore": "etcd", "etcd_endpoints": etcd.endpoints()});
            }
        }
        c
    }

    /// A CNI call of our `bridge` on `node` for launcher `l`, as Multus makes it.
    pub fn call(&self, node: usize, command: &str, l: &Launcher, conf: &Value) -> Outcome {
        let vars = CniVars {
            command: command.into(),
            container_id: l.cid.clone(),
            netns: l.pod.path().display().to_string(),
            ifname: "net1".into(),
            args: format!(
                "IgnoreUnknown=true;K8S_POD_NAMESPACE=vms;K8S_POD_NAME={}",
                l.cid
            ),
            path: ours("whereabouts")
                .parent()
                .expect("a directory")
                .display()
                .to_string(),
        };
        Invocation::run_as_node(&ours("bridge"), &self.nodes[node], &vars, conf)
    }

    /// The wire's port toward which it forwards frames for `mac` (`n0`, `n1`), if it learned one.
    pub fn port_of(&self, mac: &str) -> Option<String> {
        let out = self.wire.run_ok(&["bridge", "fdb", "show", "br", "wire"]);
        out.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&mac) && f.get(1) == Some(&"dev")).then(|| f[2].to_string())
        })
    }

    /// Whether the host reaches `ip` (three pings 100 ms apart; one answer is enough).
    pub fn reaches(&self, ip: &str) -> bool {
        self.host
            .run(&["ping", "-c", "3", "-i", "0.1", "-W", "1", "-q", ip])
            .status
            .success()
    }

    /// Starts `count` pings of `ip` from the host, one every 10 ms.
    pub fn ping(&self, ip: &str, count: u64) -> Pinger {
        Pinger::start(&self.host, ip, count)
    }
}

impl Launcher {
    /// A new launcher pod (no interface yet) and its guest.
    pub fn new(tag: &str) -> Launcher {
        static N: AtomicUsize = AtomicUsize::new(1);
        let n = N.fetch_add(1, Ordering::Relaxed) % 250 + 1;
        let pod = Netns::new(&format!("{tag}-pod"));
        Launcher {
            guest: Netns::new(&format!("{tag}-vm")),
            cid: format!("virt-launcher-{}", pod.name()),
            pod,
            n,
        }
    }

    /// The pod interface's link: its MAC and whether it is administratively up.
    pub fn pod_link(&self) -> (String, bool) {
        let out = self.pod.run_ok(&["ip", "-j", "link", "show", "net1"]);
        let v: Value = serde_json::from_str(&out).expect("ip -j");
        let flags: Vec<&str> = v[0]["flags"]
            .as_array()
            .map(|f| f.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        (
            v[0]["address"].as_str().unwrap_or_default().to_string(),
            flags.contains(&"UP"),
        )
    }

    /// KubeVirt's bridge binding after the pod exists: the pod interface's addresses removed
    /// (the guest gets them) and its MAC replaced, an in-pod bridge with the pod interface and a
    /// tap to the guest, every link of the pod up (kubevirt #11069 sets the pod interface up
    /// itself, for `disableContainerInterface`). The guest's NIC gets the VM's MAC and `cidr`,
    /// and stays down: the VM does not run here yet. The guest has no IPv6, so that it never
    /// speaks on its own (a router solicitation would move the switches): only what the pods
    /// and QEMU send does.
    pub fn bind(&self, cidr: &str) {
        ok(
            &self.pod,
            &format!(
                "ip addr flush dev net1 && ip link set net1 down && ip link set net1 address 02:6b:00:00:{:02x}:01 \
                 && ip link add k6t-net1 type bridge && ip link set net1 master k6t-net1 \
                 && ip link add tap0 type veth peer name eth0 netns {} && ip link set tap0 master k6t-net1 \
                 && ip link set tap0 up && ip link set k6t-net1 up && ip link set net1 up",
                self.n,
                self.guest.name()
            ),
        );
        ok(
            &self.guest,
            &format!(
                "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.eth0.disable_ipv6=1 \
                 && ip link set eth0 address {VM_MAC} && ip addr add {cidr} dev eth0"
            ),
        );
    }

    /// The VM runs here: its NIC up, then QEMU's announcement (RARP) of its MAC.
    pub fn run_vm(&self) {
        ok(&self.guest, "ip link set eth0 up");
        crate::ovn::send_rarp(&self.guest, "eth0", VM_MAC);
    }

    /// The VM stops here (the source at the cut-over): its NIC goes quiet.
    pub fn stop_vm(&self) {
        ok(&self.guest, "ip link set eth0 down");
    }
}

/// A running `ping`, one request every 10 ms, its answers stamped (`ping -D`).
#[derive(Debug)]
pub struct Pinger {
    child: Streaming,
    count: u64,
}

/// What a [`Pinger`] saw.
#[derive(Debug, Clone)]
pub struct Pings {
    /// Echo requests sent.
    pub sent: u64,
    /// The sequence numbers answered (from 1) and when the answer came (`ping -D`, seconds).
    pub answered: Vec<(u64, f64)>,
    /// Duplicate answers (`DUP!`): two hosts answered one request.
    pub dups: u64,
}

impl Pinger {
    /// Starts `count` pings of `ip` (IPv4 or IPv6) from `from`, one every 10 ms.
    pub fn start(from: &Netns, ip: &str, count: u64) -> Pinger {
        let child = Streaming::spawn(
            Command::new("ip")
                .args(["netns", "exec", from.name(), "ping", "-n", "-D"])
                .args(["-i", "0.01", "-W", "1", "-c", &count.to_string(), ip]),
        )
        .expect("ping (make deps installs iputils-ping)");
        Pinger { child, count }
    }

    /// How many requests were answered so far (duplicate answers not counted).
    pub fn answered(&self) -> usize {
        self.child
            .count(|l| l.contains("bytes from") && !l.contains("DUP!"))
    }

    /// Waits for the pings to end.
    pub fn finish(self) -> Pings {
        let lines = self.child.wait();
        let dups = lines.iter().filter(|l| l.contains("DUP!")).count() as u64;
        let mut answered: Vec<(u64, f64)> = lines
            .iter()
            .filter(|l| l.contains("bytes from") && !l.contains("DUP!"))
            .filter_map(|l| {
                let t = l.strip_prefix('[')?.split(']').next()?.parse().ok()?;
                let seq = l.split("icmp_seq=").nth(1)?.split_whitespace().next()?;
                Some((seq.parse().ok()?, t))
            })
            .collect();
        answered.sort_by_key(|a| a.0);
        answered.dedup_by_key(|a| a.0);
        Pings {
            sent: self.count,
            answered,
            dups,
        }
    }
}

impl Pings {
    /// Requests without an answer.
    pub fn lost(&self) -> u64 {
        self.sent - self.answered.len() as u64
    }

    /// The longest run of unanswered requests, at the start and end too.
    pub fn longest_gap(&self) -> u64 {
        let mut last = 0;
        let mut gap = 0;
        for &(s, _) in &self.answered {
            gap = gap.max(s.saturating_sub(last + 1));
            last = s;
        }
        gap.max(self.sent.saturating_sub(last))
    }

    /// The outage: the longest time between two answers, in milliseconds (ping's own interval,
    /// 10 ms asked, included; measured by the clock, since a busy machine sends less often).
    pub fn longest_silence_ms(&self) -> f64 {
        self.answered
            .windows(2)
            .map(|w| (w[1].1 - w[0].1) * 1000.0)
            .fold(0.0, f64::max)
    }
}

/// The migration's timing: how long the target pod exists before KubeVirt wires the VM in it
/// (pod start), and how long the VM keeps running on the source after that (the memory copy).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// From the target's ADD to KubeVirt's in-pod wiring.
    pub pod_start: Duration,
    /// From the wiring to the cut-over.
    pub copy: Duration,
}

/// One whole migration under a 10 ms ping from the host: the source pod on node A runs the VM;
/// the target pod's ADD on node B with the same MAC (and, sticky, the same address); KubeVirt's
/// wiring after `timing.pod_start`; the cut-over after `timing.copy` (source VM stops, target
/// VM runs and sends its RARP); the source's DEL. The pings cover all of it, 0.5 s before and
/// after. The durations are the model's clock (a benchmark's), not a synchronisation.
pub fn migrate(tag: &str, binding: Binding, timing: Timing) -> Pings {
    let w = BridgeWire::new(tag, binding == Binding::Sticky);
    let conf = w.conf(binding);
    let (src, dst) = (
        Launcher::new(&format!("{tag}-s")),
        Launcher::new(&format!("{tag}-d")),
    );
    let added = w.call(0, "ADD", &src, &conf);
    assert!(added.ok(), "source ADD: {added}");
    let cidr = match binding {
        Binding::Sticky => added.json()["ips"][0]["address"]
            .as_str()
            .expect("an address")
            .to_string(),
        _ => GUEST_CIDR.to_string(),
    };
    let ip = cidr.split('/').next().unwrap_or_default().to_string();
    src.bind(&cidr);
    src.run_vm();
    crate::wait_until(
        "the host reaches the VM on the source",
        Duration::from_secs(10),
        || w.reaches(&ip),
    );
    let lead = Duration::from_millis(500);
    let total = lead * 2 + timing.pod_start + timing.copy + Duration::from_millis(1500);
    let pinger = w.ping(&ip, total.as_millis() as u64 / 10);
    std::thread::sleep(lead);
    let target = w.call(1, "ADD", &dst, &conf);
    assert!(target.ok(), "target ADD: {target}");
    std::thread::sleep(timing.pod_start);
    dst.bind(&cidr);
    std::thread::sleep(timing.copy);
    src.stop_vm();
    dst.run_vm();
    let del = w.call(0, "DEL", &src, &conf);
    assert!(del.ok(), "source DEL: {del}");
    let pings = pinger.finish();
    let del = w.call(1, "DEL", &dst, &conf);
    assert!(del.ok(), "target DEL: {del}");
    pings
}
