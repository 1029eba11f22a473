//! `make demo`: what the documentation walks through, on one machine. Two simulated nodes
//! (network namespaces) with an `ens4` uplink each into a simulated physical network (a
//! top-of-rack switch namespace with a datacenter router); the NMState step (Linux bridge `br1`
//! on `ens4`); the Multus step (the documentation's `bridge-network` NAD, driven through the real
//! libcni); "VMs" (namespaces, KubeVirt-style interface names, KubeMacPool-style MACs); a table of
//! what each VM got and a connectivity matrix of what should and should not talk. Everything it
//! creates is removed at the end, also when a step fails.
#![allow(clippy::print_stdout)] // the demo's output is for the person running it

use std::time::Instant;

use conformance_tests::{require_root, LibcniClient, Netns, Node, PluginDir, RuntimeConf, TempDir};
use serde_json::{json, Value};

/// The simulated physical network: a switch and the datacenter's router.
const ROUTER_IP: &str = "10.200.0.1";
const RANGE: &str = "10.200.0.0/24";

struct Vm {
    name: &'static str,
    node: usize,
    mac: &'static str,
    netns: Netns,
    rt: RuntimeConf,
    ip: Option<String>,
}

fn sh(ns: &Netns, script: &str) {
    let out = ns.sh(script);
    assert!(
        out.status.success(),
        "in {}: {script}: {}",
        ns.name(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The physical network: namespace `tor` with a bridge; one trunk-less access port per node
/// uplink (`ens4` inside the node) and one for the datacenter router.
fn physical_network(tor: &Netns, router: &Netns, nodes: &[&Node]) {
    sh(
        tor,
        "ip link add name tor type bridge && ip link set tor up",
    );
    for (i, node) in nodes.iter().enumerate() {
        sh(
            tor,
            &format!(
                "ip link add name p{i} type veth peer name ens4 netns {n} && ip link set p{i} master tor up",
                n = node.name()
            ),
        );
    }
    sh(
        tor,
        &format!("ip link add name prouter type veth peer name eth0 netns {} && ip link set prouter master tor up", router.name()),
    );
    sh(
        router,
        &format!("ip addr add {ROUTER_IP}/24 dev eth0 && ip link set eth0 up"),
    );
}

/// The NMState step (NNCP `br1-policy`): a Linux bridge `br1` with the node's `ens4` as its port.
fn nmstate(node: &Node) {
    sh(node, "ip link add name br1 type bridge && ip link set ens4 master br1 && ip link set ens4 up && ip link set br1 up");
}

fn vm(name: &'static str, node: usize, mac: &'static str) -> Vm {
    let netns = Netns::new(&format!("demo-{name}"));
    // KubeVirt names a secondary pod interface `pod<hash>`; KubeMacPool hands the VM its MAC,
    // which Multus passes as runtimeConfig.mac.
    let rt = RuntimeConf::multus(
        netns.path(),
        "my-vm-namespace",
        &format!("virt-launcher-{name}"),
        "00000000-0000-4000-8000-00000000d3m0",
    )
    .with_ifname("pod8a3f1c2d9e0")
    .with_capability("mac", json!(mac));
    Vm {
        name,
        node,
        mac,
        netns,
        rt,
        ip: None,
    }
}

fn pings(from: &Netns, to: &str) -> bool {
    from.run(&["ping", "-c", "1", "-W", "1", "-q", to])
        .status
        .success()
}

fn main() {
    require_root();
    let started = Instant::now();
    // Everything the demo creates is dropped inside `demo`, before the exit code is decided.
    let failures = demo();
    println!(
        "\nremoved the namespaces; demo took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if failures > 0 {
        eprintln!("demo: {failures} step(s) failed");
        std::process::exit(1);
    }
}

/// The whole demo; returns how many steps failed.
fn demo() -> usize {
    println!("multihome demo: the documentation's Linux bridge network, on two simulated nodes\n");
    let nodes = [Node::new("demo-node-a"), Node::new("demo-node-b")];
    let tor = Netns::new("demo-tor");
    let router = Netns::new("demo-router");
    let store = TempDir::new("demo-store");
    physical_network(&tor, &router, &[&nodes[0], &nodes[1]]);
    println!(
        "physical network: switch namespace {:?}, datacenter router {ROUTER_IP} in {:?}",
        tor.name(),
        router.name()
    );
    for n in &nodes {
        nmstate(n);
        println!(
            "NMState step on {:?}: Linux bridge br1 with ens4 as its port",
            n.name()
        );
    }

    let plugins = PluginDir::ours(&["bridge", "whereabouts", "static"]);
    print!("building the libcni 1.1.2 client (Debian's Go sources) ... ");
    let t = Instant::now();
    let runtimes: Vec<LibcniClient> = nodes
        .iter()
        .map(|n| LibcniClient::new(plugins.cni_path(), n))
        .collect();
    println!("done in {:.1} s", t.elapsed().as_secs_f64());

    // The documentation's NAD, as written, except the IPAM: it says dhcp (a DHCP server on the
    // physical network); here whereabouts with the embedded file store hands out addresses. The
    // two simulated nodes share one machine, so they share the store directory; real nodes would
    // use the etcd store.
    let nad = json!({"cniVersion": "0.3.1", "name": "bridge-network", "plugins": [{
        "type": "bridge", "bridge": "br1", "macspoofchk": true, "capabilities": {"mac": true},
        "ipam": {"type": "whereabouts", "range": RANGE, "gateway": ROUTER_IP, "store_dir": store.join("whereabouts")}}]});
    println!(
        "\nNAD bridge-network (Multus step):\n{}\n",
        serde_json::to_string_pretty(&nad).unwrap_or_default()
    );

    let mut vms = [
        vm("vm-a", 0, "02:00:00:00:00:0a"),
        vm("vm-b", 1, "02:00:00:00:00:0b"),
        vm("vm-c", 0, "02:00:00:00:00:0c"),
    ];
    println!(
        "{:<6} {:<12} {:<15} {:<16} {:<18} {:<16} {:>7}",
        "VM", "node", "network", "interface", "MAC", "IP", "ADD ms"
    );
    // ADD ms is libcni's whole call: the Go client's own start, then bridge and whereabouts.
    let mut failures = 0;
    for v in &mut vms {
        let t = Instant::now();
        let out = runtimes[v.node].add(&nad, &v.rt);
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        if !out.ok() {
            println!("{:<6} ADD failed: {out}", v.name);
            failures += 1;
            continue;
        }
        let r: Value = out.json();
        let ip = r["ips"][0]["address"].as_str().unwrap_or("-").to_string();
        let mac = r["interfaces"][2]["mac"]
            .as_str()
            .unwrap_or("-")
            .to_string();
        println!(
            "{:<6} {:<12} {:<15} {:<16} {:<18} {:<16} {:>7.1}",
            v.name,
            ["node-a", "node-b"][v.node],
            "bridge-network",
            v.rt.ifname,
            mac,
            ip,
            ms
        );
        if mac != v.mac {
            println!(
                "  MAC {mac} is not the one KubeMacPool asked for ({})",
                v.mac
            );
            failures += 1;
        }
        v.ip = ip.split('/').next().map(str::to_string);
    }

    println!("\nconnectivity (ping, from row to column):");
    let targets: Vec<(String, String)> = vms
        .iter()
        .filter_map(|v| v.ip.clone().map(|ip| (v.name.to_string(), ip)))
        .chain([("router".to_string(), ROUTER_IP.to_string())])
        .collect();
    print!("{:<22}", "");
    for (name, _) in &targets {
        print!("{name:<9}");
    }
    println!();
    for v in &vms {
        print!("{:<22}", v.name);
        for (name, ip) in &targets {
            if name == v.name {
                print!("{:<9}", "-");
                continue;
            }
            let ok = pings(&v.netns, ip);
            failures += usize::from(!ok);
            print!("{:<9}", if ok { "yes" } else { "NO (!)" });
        }
        println!();
    }
    // MAC spoof check: a VM that forges its source MAC is cut off at its bridge port.
    let a = &vms[0];
    let _ = a
        .netns
        .sh("ip link set pod8a3f1c2d9e0 address 02:00:00:00:00:ff");
    print!("{:<22}", "vm-a, forged MAC");
    for (name, ip) in &targets {
        if name == a.name {
            print!("{:<9}", "-");
            continue;
        }
        let ok = pings(&a.netns, ip);
        failures += usize::from(ok);
        print!("{:<9}", if ok { "yes (!)" } else { "no" });
    }
    println!("\n(expected: every VM reaches every VM and the router across both nodes; a forged MAC reaches nothing)");
    let _ = a
        .netns
        .sh(&format!("ip link set pod8a3f1c2d9e0 address {}", a.mac));

    // The NAD says cniVersion 0.3.1, which has no CHECK: libcni refuses it, as it should. The
    // same list at 0.4.0 is checked instead.
    let mut nad_040 = nad.clone();
    nad_040["cniVersion"] = json!("0.4.0");
    for v in &vms {
        let refused = !runtimes[v.node].check(&nad, &v.rt).ok();
        let check = runtimes[v.node].check(&nad_040, &v.rt);
        let del = runtimes[v.node].del(&nad, &v.rt);
        let del_again = runtimes[v.node].del(&nad, &v.rt);
        println!(
            "{}: CHECK at 0.3.1 {} / CHECK at 0.4.0 {} / DEL {} / DEL again {}",
            v.name,
            if refused {
                "refused (no CHECK before 0.4.0)"
            } else {
                "ACCEPTED (!)"
            },
            verdict(check.ok()),
            verdict(del.ok()),
            verdict(del_again.ok())
        );
        failures += usize::from(!refused || !check.ok() || !del.ok() || !del_again.ok());
    }
    failures
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "FAILED"
    }
}
