//! A VM's live migration on an OVN secondary network, IPv4 or IPv6 (issues 18 and 20), as
//! KubeVirt drives it with a persistent claim: the VM's port on the source node; the target
//! launcher pod's ADD on another node (the port bound to both chassis, activated by the VM's
//! RARP); the cut-over (the source VM stops, the target announces itself as QEMU does, with a
//! virtio guest's gratuitous ARP and unsolicited neighbour advertisements); the source pod's DEL.
//! A peer (a router on the physical network, or another VM) pings the VM every 10 ms
//! throughout, and a capture on the peer records which announcements reached it. Tests assert
//! on what it returns; `make bench` reports the outage.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::migration::{Pinger, Pings};
use crate::ovn::{addr_of, announce, call, ok_json, OvnLab, Vm};
use crate::process::Streaming;
use crate::{Netns, PluginDir};

/// The longest silence a test accepts between two answers to the peer's pings across a
/// migration. The guest announces itself in rounds at 0, 50, 200, 450 and 800 ms after the
/// cut-over, as QEMU does. Idle, the outage is tens of ms (`make bench` measures it). A CI run
/// saw 528 ms in the IPv6 localnet test: the lab's top-of-rack switch, an OVS bridge, kept the
/// VM on the source's trunk until its revalidator's next pass, which now comes every 100 ms
/// (`OvnLab::start_tor`; docs/ipv6.md).
/// What the bound catches is the cut-off it once had: the target's ADD took the port from the
/// source before the VM ran there, and the pings stopped from that ADD to the activation,
/// seconds. Whether the guest's announcements reach the peer is asserted on its capture
/// ([`Moved::assert_advertised`]), not inferred from the outage: without them the ToR still
/// learns the target from the VM's replies, usually within this bound (docs/ipv6.md).
pub const MAX_OUTAGE_MS: f64 = 1500.0;

/// One launcher pod: the node it runs on, its namespace, and its CNI_ARGS.
#[derive(Debug)]
pub struct Pod {
    /// Index of its node in the lab.
    pub node: usize,
    /// The pod's namespace (the VM's NIC is the pod's `net1` in these labs).
    pub vm: Vm,
    /// CNI_ARGS, as Multus passes them (the pod's name differs between source and target).
    pub args: String,
}

/// The network a migration runs on: the lab, the plugin executable and the persistent NAD.
#[derive(Debug)]
pub struct Network<'a> {
    pub lab: &'a OvnLab,
    pub plugins: &'a PluginDir,
    /// `localnet` or `ovn-overlay` (a name in `plugins`).
    pub exe: &'a str,
    /// The NAD, with `allowPersistentIPs` and the claim in `args.cni`.
    pub conf: &'a Value,
    /// The claim's logical switch port.
    pub port: &'a str,
}

/// Something from the VM's MAC that the peer's capture saw.
#[derive(Debug, Clone, PartialEq)]
pub struct Heard {
    /// `rarp`, `garp` (an ARP request for the sender's own address) or `na` (a neighbour
    /// advertisement).
    pub kind: String,
    /// When it arrived (seconds since the epoch, the clock of `ping -D`).
    pub at: f64,
    /// The address announced (the ARP sender or the NA's target); empty for RARP.
    pub target: String,
    /// The IPv6 destination of an NA (`ff02::1` for an unsolicited one); empty otherwise.
    pub to: String,
    /// The NA's flags byte (0x20: Override, 0x40: Solicited, 0x80: Router).
    pub flags: u8,
}

/// What one migration showed.
#[derive(Debug)]
pub struct Moved {
    /// The peer's pings, one every 10 ms, from before the target's ADD to after the move.
    pub pings: Pings,
    /// The port's `options` after the target's ADD, while both pods hold it.
    pub while_both: std::collections::BTreeMap<String, String>,
    /// The capture on the peer, from before the cut-over to after the source's DEL.
    pub heard: Vec<Heard>,
    /// When the source VM stopped (the cut-over), on the same clock.
    pub cut_over: f64,
    /// When the source pod's DEL was called and when it returned, on the same clock.
    pub source_del: (f64, f64),
}

impl Moved {
    /// The pings went on through the move: no silence between two answers longer than
    /// [`MAX_OUTAGE_MS`], the last ten answered, and never two answers to one request (the
    /// target, blocked until its activation, never answered beside the source).
    pub fn assert_recovered(&self) {
        let gap = self.pings.longest_gap();
        let silence = self.pings.longest_silence_ms();
        let timeline = self.timeline();
        eprintln!(
            "migration: {} of {} lost, {gap} in a row, longest silence {silence:.0} ms; {timeline}",
            self.pings.lost(),
            self.pings.sent,
        );
        assert!(
            silence <= MAX_OUTAGE_MS,
            "no answer for {silence:.0} ms ({gap} requests lost in a row), more than \
             {MAX_OUTAGE_MS} ms; {timeline}; {self:?}"
        );
        assert!(
            self.pings.answered.last().map(|a| a.0) > Some(self.pings.sent - 10),
            "the answers stopped after the move: {self:?}"
        );
        assert_eq!(self.pings.dups, 0, "two hosts answered: {self:?}");
    }

    /// The peer heard the guest's unsolicited neighbour advertisement (Override set, to
    /// ff02::1) after the cut-over for each of `targets`.
    pub fn assert_advertised(&self, targets: &[&str]) {
        let nas = self.heard_after_cut_over("na");
        for target in targets {
            assert!(
                nas.iter()
                    .any(|h| h.target == *target && h.to == "ff02::1" && h.flags & 0x20 != 0),
                "the peer heard no unsolicited NA for {target} after the cut-over: {:?}",
                self.heard
            );
        }
    }

    /// What happened around the cut-over, in ms from it: the last answer before, the first
    /// announcement of each kind the peer heard, the first answer after, the source's DEL, and
    /// where the longest silence was.
    pub fn timeline(&self) -> String {
        let ms = |t: f64| (t - self.cut_over) * 1000.0;
        let mut out = Vec::new();
        if let Some(a) = self
            .pings
            .answered
            .iter()
            .rev()
            .find(|a| a.1 < self.cut_over)
        {
            out.push(format!("last answer before #{} {:.0}", a.0, ms(a.1)));
        }
        for kind in ["rarp", "garp", "na"] {
            if let Some(h) = self.heard_after_cut_over(kind).first() {
                out.push(format!("first {kind} {:.0}", ms(h.at)));
            }
        }
        if let Some(a) = self.pings.answered.iter().find(|a| a.1 >= self.cut_over) {
            out.push(format!("first answer after #{} {:.0}", a.0, ms(a.1)));
        }
        out.push(format!(
            "source DEL {:.0} to {:.0}",
            ms(self.source_del.0),
            ms(self.source_del.1)
        ));
        if let Some(w) = self
            .pings
            .answered
            .windows(2)
            .max_by(|a, b| (a[1].1 - a[0].1).total_cmp(&(b[1].1 - b[0].1)))
        {
            out.push(format!(
                "longest silence from #{} {:.0} to #{} {:.0}",
                w[0].0,
                ms(w[0].1),
                w[1].0,
                ms(w[1].1)
            ));
        }
        out.join(", ")
    }

    /// The announcements heard after the cut-over.
    pub fn heard_after_cut_over(&self, kind: &str) -> Vec<&Heard> {
        self.heard
            .iter()
            .filter(|h| h.kind == kind && h.at >= self.cut_over)
            .collect()
    }
}

/// The IPv6 link-local address Linux derives from `mac` (modified EUI-64).
pub fn link_local(mac: &str) -> String {
    mac.parse::<netlink::Mac>()
        .expect("a MAC")
        .link_local()
        .to_string()
}

/// A capture on `ifname` of `ns` of what arrives from `mac`: RARP, gratuitous ARP and
/// neighbour advertisements (Python on a packet socket; printed as they arrive).
#[derive(Debug)]
pub struct Capture {
    child: Streaming,
}

const CAPTURE: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind(('IFNAME', 0))
m = bytes.fromhex('MAC')
print('ready', flush=True)
while True:
    f, a = s.recvfrom(4096)
    if a[2] == socket.PACKET_OUTGOING or f[6:12] != m:
        continue
    t = time.time()
    if f[12:14] == b'\x80\x35':
        print(f'rarp {t:.6f} - - 0', flush=True)
    elif f[12:14] == b'\x08\x06' and f[20:22] == b'\x00\x01' and f[28:32] == f[38:42]:
        print(f'garp {t:.6f} {socket.inet_ntoa(f[28:32])} - 0', flush=True)
    elif f[12:14] == b'\x86\xdd' and f[20] == 58 and f[54] == 136:
        dst = socket.inet_ntop(socket.AF_INET6, f[38:54])
        target = socket.inet_ntop(socket.AF_INET6, f[62:78])
        print(f'na {t:.6f} {target} {dst} {f[58]}', flush=True)
"#;

impl Capture {
    /// Starts the capture and waits until it listens.
    pub fn start(ns: &Netns, ifname: &str, mac: &str) -> Capture {
        let script = CAPTURE
            .replace("IFNAME", ifname)
            .replace("MAC", &mac.replace(':', ""));
        let child = Streaming::spawn(
            Command::new("ip")
                .args(["netns", "exec", ns.name(), "/usr/bin/python3", "-c"])
                .arg(script),
        )
        .expect("python3 (make deps installs it)");
        crate::wait_until("the capture listens", Duration::from_secs(10), || {
            child.count(|l| l == "ready") == 1
        });
        Capture { child }
    }

    /// Stops it; what it heard.
    pub fn finish(self) -> Vec<Heard> {
        self.child
            .stop()
            .iter()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let dash = |s: &str| {
                    if s == "-" {
                        String::new()
                    } else {
                        s.to_string()
                    }
                };
                (f.len() == 5).then(|| Heard {
                    kind: f[0].to_string(),
                    at: f[1].parse().unwrap_or_default(),
                    target: dash(f[2]),
                    to: dash(f[3]),
                    flags: f[4].parse().unwrap_or_default(),
                })
            })
            .collect()
    }
}

/// Copies the resolved neighbour entries of `net1` from `from` to `to` (both families).
fn copy_neighbours(from: &Netns, to: &Netns) {
    let out = from.run_ok(&["ip", "-j", "neigh", "show", "dev", "net1"]);
    let entries: Vec<Value> = serde_json::from_str(&out).unwrap_or_default();
    for e in entries {
        if let (Some(ip), Some(mac)) = (e["dst"].as_str(), e["lladdr"].as_str()) {
            to.run_ok(&[
                "ip",
                "neigh",
                "replace",
                ip,
                "lladdr",
                mac,
                "dev",
                "net1",
                "nud",
                "reachable",
            ]);
        }
    }
}

/// The clock of `ping -D` and of the capture, now.
fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

impl Network<'_> {
    /// A CNI call for `pod` on its node; panics unless it succeeds; its result (Null for DEL).
    pub fn call(&self, command: &str, pod: &Pod) -> Value {
        let node = &self.lab.nodes[pod.node];
        ok_json(&call(
            self.plugins,
            self.exe,
            node,
            command,
            &pod.vm,
            "net1",
            &pod.args,
            self.conf,
        ))
    }

    /// Migrates the VM of `src` (its ADD returned `held`, and `peer` reaches it on `peer.1`) to
    /// `dst` (not added yet). `peer` pings the VM's first address every 10 ms throughout (500
    /// requests). After 50 answers, the target's ADD, which must return the source's addresses
    /// and MAC (the port's options are read then); after 50 more through the source, the
    /// cut-over: the source VM's NIC goes down, the target announces itself ([`announce`]:
    /// RARP, and with `guest_announces` each of the VM's addresses and its link-local one), and
    /// the source pod's DEL follows. Returns when the pings are done.
    pub fn migrate(
        &self,
        src: &Pod,
        held: &Value,
        dst: &Pod,
        peer: (&Netns, &str),
        guest_announces: bool,
    ) -> Moved {
        let mac = held["interfaces"][1]["mac"]
            .as_str()
            .expect("a MAC")
            .to_string();
        let mut addrs: Vec<String> = held["ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i["address"].as_str()?.split('/').next().map(String::from))
            .collect();
        if addrs.iter().any(|a| a.contains(':')) {
            addrs.push(link_local(&mac));
        }
        let capture = Capture::start(peer.0, peer.1, &mac);
        let pinger = Pinger::start(peer.0, &addr_of(held), 500);
        let answers = |n: usize, what: &str| {
            crate::wait_until(what, Duration::from_secs(20), || pinger.answered() >= n);
        };
        answers(50, "50 answers through the source before the target's ADD");
        let target = self.call("ADD", dst);
        assert_eq!(
            target["ips"], held["ips"],
            "the target gets the VM's addresses"
        );
        assert_eq!(target["interfaces"][1]["mac"], mac.as_str(), "and its MAC");
        let while_both = crate::ovn::lsp(self.lab, self.port)
            .map(|p| crate::ovn::ovsdb_map(&p["options"]))
            .unwrap_or_default();
        let so_far = pinger.answered();
        answers(
            so_far + 50,
            "50 answers through the source after the target's ADD",
        );
        // The guest's memory comes along, its neighbour cache with it: a fresh namespace would
        // have to resolve every peer again before it answers (a second, at the retransmit, when
        // its first solicitation left before the port was activated).
        copy_neighbours(&src.vm.ns, &dst.vm.ns);
        src.vm.ns.run_ok(&["ip", "link", "set", "net1", "down"]);
        let cut_over = now();
        let announced: Vec<&str> = if guest_announces {
            addrs.iter().map(String::as_str).collect()
        } else {
            Vec::new()
        };
        announce(&dst.vm.ns, "net1", &mac, &announced);
        let del_called = now();
        self.call("DEL", src);
        let source_del = (del_called, now());
        let pings = pinger.finish();
        Moved {
            pings,
            while_both,
            heard: capture.finish(),
            cut_over,
            source_del,
        }
    }
}
