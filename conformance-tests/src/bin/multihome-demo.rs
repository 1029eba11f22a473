//! `make demo`: what the documentation walks through, on one machine. A real OVN (central NB/SB
//! and northd) and two simulated nodes (network namespaces, each with its own Open vSwitch and
//! ovn-controller, joined by Geneve) with two NICs into a simulated physical network (an OVS
//! top-of-rack switch with the datacenter router on it); the NMState step (Linux bridge `br1` on
//! `ens4`; OVS bridge `br0-ovs` on `ens5` with the bridge mapping `br0-network`); the Multus step
//! (the documentation's three NADs, `bridge-network`, `private-overlay` and `ovn-localnet`,
//! driven through the real libcni); "VMs" (namespaces, KubeVirt-style interface names,
//! KubeMacPool-style MACs); a table of what each VM got and a connectivity matrix of what should
//! and should not talk. Everything it creates is removed at the end, also when a step fails.
#![allow(clippy::print_stdout)] // the demo's output is for the person running it

use std::time::Instant;

use conformance_tests::dhcp;
use conformance_tests::ovn::NodeBridge;
use conformance_tests::plugin::nad_config;
use conformance_tests::{
    ours, require_root, EtcdCluster, LibcniClient, Netns, OvnLab, PluginDir, RuntimeConf, TempDir,
};
use serde_json::{json, Value};

/// The simulated physical network: a switch and the datacenter's router.
const ROUTER_IP: &str = "10.200.0.1";
/// The datacenter DHCP server's pool.
const DHCP_FIRST: &str = "10.200.0.50";
const DHCP_LAST: &str = "10.200.0.99";

/// The three networks of the documentation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Net {
    Bridge,
    Overlay,
    Localnet,
}

impl Net {
    fn name(self) -> &'static str {
        match self {
            Net::Bridge => "bridge-network",
            Net::Overlay => "private-overlay",
            Net::Localnet => "ovn-localnet",
        }
    }

    /// On the datacenter's wire (the router's network), or east-west only.
    fn physical(self) -> bool {
        self != Net::Overlay
    }
}

struct Vm {
    name: &'static str,
    node: usize,
    net: Net,
    mac: &'static str,
    netns: Netns,
    rt: RuntimeConf,
    ip: Option<String>,
}

fn sh(ns: &Netns, script: &str) {
    ns.sh_ok(script);
}

/// The NMState step (NNCP `br1-policy`): a Linux bridge `br1` with the node's `ens4` as its port.
/// (The NNCP `br0-ovs`, an OVS bridge on `ens5` mapped as `br0-network`, is built by the lab.)
fn nmstate(node: &Netns) {
    sh(node, "ip link add name br1 type bridge && ip link set ens4 master br1 && ip link set ens4 up && ip link set br1 up");
}

fn vm(name: &'static str, node: usize, net: Net, mac: &'static str) -> Vm {
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
    .with_capability("mac", json!(mac))
    // Multus passes the requested MAC both ways: as the `mac` capability (for plugins that
    // declare it, like bridge) and as CNI_ARGS MAC (which the OVN plugins read).
    .with_arg("MAC", mac);
    Vm {
        name,
        node,
        net,
        mac,
        netns,
        rt,
        ip: None,
    }
}

/// Three pings 200 ms apart: a path that works answers at least one (the first packets of a new
/// path can go to address resolution and switches learning where everyone is).
fn pings(from: &Netns, to: &str) -> bool {
    from.run(&["ping", "-c", "3", "-i", "0.2", "-W", "1", "-q", to])
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

/// Guest addresses of the VMs on networks without managed IPs (the documentation's OVN NADs have
/// no `subnets`: the guest configures itself, by DHCP from the datacenter or cloud-init). All in
/// the router's subnet, so that "does not reach" is about the network, not about routing.
fn guest_ip(name: &str) -> &'static str {
    match name {
        "vm-c" => "10.200.0.201",
        "vm-d" => "10.200.0.202",
        "vm-e" => "10.200.0.101",
        _ => "10.200.0.102",
    }
}

/// The whole demo; returns how many steps failed.
fn demo() -> usize {
    println!(
        "multihome demo: the documentation's three secondary networks, on two simulated nodes\n"
    );
    let t = Instant::now();
    let lab = OvnLab::start_with_tor(
        "demo",
        2,
        NodeBridge {
            bridge: "br0-ovs".into(),
            port: "ens5".into(),
            localnet: "br0-network".into(),
        },
    );
    let router = lab.add_host("demo-router", None, &format!("{ROUTER_IP}/24"));
    let nodes: Vec<&Netns> = lab.nodes.iter().map(|n| &n.ns).collect();
    println!(
        "OVN: NB/SB ovsdb-servers and ovn-northd; nodes {} and {} each with ovsdb-server, \
         ovs-vswitchd (userspace datapath) and ovn-controller, Geneve between them ({:.1} s)",
        lab.nodes[0].chassis,
        lab.nodes[1].chassis,
        t.elapsed().as_secs_f64()
    );
    println!(
        "physical network: an OVS top-of-rack switch (trunk ports to both nodes' ens4 and ens5), \
         datacenter router {ROUTER_IP} on it, untagged"
    );
    for (i, n) in nodes.iter().enumerate() {
        lab.cable(i, "ens4");
        nmstate(n);
        println!(
            "NMState step on {}: Linux bridge br1 on ens4; OVS bridge br0-ovs on ens5, ovn-bridge-mappings=br0-network:br0-ovs",
            lab.nodes[i].chassis
        );
    }
    println!(
        "(the documentation's two NNCPs both use ens4; a NIC can be the port of one bridge only, \
         so br0-ovs takes the node's second NIC here)"
    );

    // The datacenter's DHCP server: dnsmasq on the router, handing out 10.200.0.50-99 with the
    // router as gateway and DNS server (the corporate router of the documentation).
    let scratch = TempDir::new("demo-dhcp");
    let t = Instant::now();
    let dnsmasq = dhcp::dnsmasq(
        &router,
        "eth0",
        (DHCP_FIRST, DHCP_LAST),
        ROUTER_IP,
        &scratch.join("dnsmasq.leases"),
        &scratch.join("dnsmasq.log"),
    );
    // Each node runs `dhcp daemon` (the DaemonSet's container on a real node) on its own
    // /run/cni/dhcp.sock: the runtime's view of /run/cni on that node is the node's directory.
    let run_cni = std::path::Path::new("/run/cni");
    let made_run_cni = !run_cni.exists();
    if made_run_cni {
        std::fs::create_dir_all(run_cni).expect("mkdir /run/cni");
    }
    let daemons: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let dir = scratch.join(&format!("node-{i}"));
            std::fs::create_dir_all(dir.join("run")).unwrap();
            std::fs::create_dir_all(dir.join("settings")).unwrap();
            std::fs::write(
                dir.join("settings/node.json"),
                json!({"dhcp_state_dir": dir.join("leases")}).to_string(),
            )
            .unwrap();
            let socket = dir.join("run/dhcp.sock").display().to_string();
            let state = dir.join("leases").display().to_string();
            let d = dhcp::start_daemon_in(
                n,
                &[
                    &ours("dhcp").display().to_string(),
                    "daemon",
                    "-socketpath",
                    &socket,
                    "-statedir",
                    &state,
                ],
                std::path::Path::new(&socket),
                &dir.join("daemon.log"),
            );
            (d, dir)
        })
        .collect();
    println!(
        "datacenter DHCP server: dnsmasq on the router ({DHCP_FIRST}-{DHCP_LAST}, gateway {ROUTER_IP}); \
         `dhcp daemon` on both nodes ({:.1} s)",
        t.elapsed().as_secs_f64()
    );

    let plugins = PluginDir::ours(&["bridge", "dhcp", "static", "whereabouts", "ovn-overlay"])
        .with_link("ovn-k8s-cni-overlay", &ours("ovn-overlay"));
    print!("building the libcni 1.1.2 client (Debian's Go sources) ... ");
    let t = Instant::now();
    // Each node's runtime tells the plugins where that node's settings are (a real node: the
    // default /etc/multihome/ovn-node.json and /etc/multihome/node.json); a NAD does not.
    let runtimes: Vec<LibcniClient> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let (k, v) = lab.nodes[i].plugin_env();
            let dir = &daemons[i].1;
            LibcniClient::new(plugins.cni_path(), n)
                .with_env(&k, &v)
                .with_env(
                    "MULTIHOME_CONFIG_DIR",
                    &dir.join("settings").display().to_string(),
                )
                .with_bind(&dir.join("run"), run_cni)
        })
        .collect();
    println!("done in {:.1} s", t.elapsed().as_secs_f64());

    // The documentation's NADs, as written: bridge-network asks the datacenter's DHCP server
    // (ipam dhcp, the daemon on /run/cni/dhcp.sock); where this simulated node's OVS and NB DB
    // are is in the node's settings file its runtime names.
    let bridge_nad = {
        let c = nad_config("nad-bridge-network.yaml");
        json!({"cniVersion": c["cniVersion"], "name": c["name"], "plugins": [c]})
    };
    let ovn_nad = |file: &str, _node: usize| {
        let c = nad_config(file);
        json!({"cniVersion": c["cniVersion"], "name": c["name"], "plugins": [c]})
    };
    let nad_for = |net: Net, node: usize| match net {
        Net::Bridge => bridge_nad.clone(),
        Net::Overlay => ovn_nad("nad-private-overlay.yaml", node),
        Net::Localnet => ovn_nad("nad-ovn-localnet.yaml", node),
    };
    for (net, file) in [
        (Net::Bridge, "nad-bridge-network.yaml"),
        (Net::Overlay, "nad-private-overlay.yaml"),
        (Net::Localnet, "nad-ovn-localnet.yaml"),
    ] {
        println!(
            "NAD {} (deploy/examples/{file}): {}",
            net.name(),
            serde_json::to_string(&nad_for(net, 0)["plugins"][0]).unwrap_or_default()
        );
    }
    println!();

    let mut vms = [
        vm("vm-a", 0, Net::Bridge, "02:00:00:00:00:0a"),
        vm("vm-b", 1, Net::Bridge, "02:00:00:00:00:0b"),
        vm("vm-c", 0, Net::Overlay, "02:00:00:00:00:0c"),
        vm("vm-d", 1, Net::Overlay, "02:00:00:00:00:0d"),
        vm("vm-e", 0, Net::Localnet, "02:00:00:00:00:0e"),
        vm("vm-f", 1, Net::Localnet, "02:00:00:00:00:0f"),
    ];
    println!(
        "{:<6} {:<9} {:<16} {:<16} {:<18} {:<22} {:>7}",
        "VM", "node", "network", "interface", "MAC", "IP", "ADD ms"
    );
    // ADD ms is libcni's whole call: the Go client's own start, then the plugins.
    let mut failures = 0;
    for v in &mut vms {
        let t = Instant::now();
        let out = runtimes[v.node].add(&nad_for(v.net, v.node), &v.rt);
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        if !out.ok() {
            println!("{:<6} ADD failed: {out}", v.name);
            failures += 1;
            continue;
        }
        let r: Value = out.json();
        let container = r["interfaces"]
            .as_array()
            .and_then(|i| i.iter().find(|i| i["sandbox"].is_string()))
            .cloned()
            .unwrap_or_default();
        let mac = container["mac"].as_str().unwrap_or("-").to_string();
        let (ip, shown) = match r["ips"][0]["address"].as_str() {
            Some(a) => (
                a.split('/').next().unwrap_or_default().to_string(),
                a.to_string(),
            ),
            None => {
                // No managed IPs on this network: the guest configures its own.
                let ip = guest_ip(v.name);
                let _ = v
                    .netns
                    .sh(&format!("ip addr add {ip}/24 dev {}", v.rt.ifname));
                (ip.to_string(), format!("{ip}/24 (guest)"))
            }
        };
        println!(
            "{:<6} {:<9} {:<16} {:<16} {:<18} {:<22} {:>7.1}",
            v.name,
            ["node-a", "node-b"][v.node],
            v.net.name(),
            v.rt.ifname,
            mac,
            shown,
            ms
        );
        // KubeMacPool's MAC reaches the pod interface when the NAD declares the mac capability;
        // the documentation's bridge NAD does not (KubeVirt puts the MAC on the VM's own NIC).
        if mac != v.mac && v.net != Net::Bridge {
            println!(
                "  MAC {mac} is not the one KubeMacPool asked for ({})",
                v.mac
            );
            failures += 1;
        }
        v.ip = Some(ip);
    }

    if let Ok(secs) = std::env::var("MULTIHOME_DEMO_PAUSE") {
        eprintln!("pausing {secs} s for inspection");
        std::thread::sleep(std::time::Duration::from_secs(secs.parse().unwrap_or(60)));
    }
    println!("\nconnectivity (ping, from row to column; yes/no as expected, (!) when not):");
    let targets: Vec<(String, String, bool, Option<Net>)> = vms
        .iter()
        .filter_map(|v| {
            v.ip.clone()
                .map(|ip| (v.name.to_string(), ip, v.net.physical(), Some(v.net)))
        })
        .chain([("router".to_string(), ROUTER_IP.to_string(), true, None)])
        .collect();
    // Every cell at once (a cell that should not answer costs a second of waiting).
    let cells: Vec<Vec<Option<bool>>> = std::thread::scope(|scope| {
        let handles: Vec<Vec<_>> = vms
            .iter()
            .map(|v| {
                targets
                    .iter()
                    .map(|(name, ip, ..)| {
                        let skip = name == v.name;
                        let netns = &v.netns;
                        scope.spawn(move || (!skip).then(|| pings(netns, ip)))
                    })
                    .collect()
            })
            .collect();
        handles
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .map(|h| h.join().unwrap_or(Some(false)))
                    .collect()
            })
            .collect()
    });
    print!("{:<28}", "");
    for (name, ..) in &targets {
        print!("{name:<9}");
    }
    println!();
    for (v, row) in vms.iter().zip(&cells) {
        print!("{:<28}", format!("{} ({})", v.name, v.net.name()));
        for ((_, _, physical, net), cell) in targets.iter().zip(row) {
            let Some(ok) = *cell else {
                print!("{:<9}", "-");
                continue;
            };
            // The wire joins bridge-network, ovn-localnet and the router; the overlay only
            // joins its own VMs, across nodes, and nothing else.
            let expected = if v.net == Net::Overlay {
                *net == Some(Net::Overlay)
            } else {
                *physical
            };
            failures += usize::from(ok != expected);
            let text = match (ok, ok == expected) {
                (true, true) => "yes",
                (false, true) => "no",
                (true, false) => "yes (!)",
                (false, false) => "NO (!)",
            };
            print!("{text:<9}");
        }
        println!();
    }
    // Port security: a localnet VM that forges its source MAC is cut off at its OVN port.
    let a = &vms[4];
    let _ = a.netns.sh(&format!(
        "ip link set {} address 02:00:00:00:00:ff",
        a.rt.ifname
    ));
    print!("{:<28}", "vm-e, forged MAC");
    for (name, ip, ..) in &targets {
        if name == a.name {
            print!("{:<9}", "-");
            continue;
        }
        let ok = pings(&a.netns, ip);
        failures += usize::from(ok);
        print!("{:<9}", if ok { "yes (!)" } else { "no" });
    }
    println!(
        "\n(expected: bridge-network and ovn-localnet VMs share the datacenter's wire with the router, \
         across both nodes; private-overlay VMs reach each other across nodes over Geneve and \
         nothing else; a forged MAC reaches nothing)"
    );
    let _ = a
        .netns
        .sh(&format!("ip link set {} address {}", a.rt.ifname, a.mac));

    // bridge-network says cniVersion 0.3.1, which has no CHECK: libcni refuses it, as it
    // should; the same list at 0.4.0 is checked instead. The OVN NADs are 0.4.0.
    println!();
    for v in &vms {
        let nad = nad_for(v.net, v.node);
        let mut nad_040 = nad.clone();
        nad_040["cniVersion"] = json!("0.4.0");
        let refused = nad["cniVersion"] == "0.3.1" && !runtimes[v.node].check(&nad, &v.rt).ok();
        let check = runtimes[v.node].check(&nad_040, &v.rt);
        let del = runtimes[v.node].del(&nad, &v.rt);
        let del_again = runtimes[v.node].del(&nad, &v.rt);
        println!(
            "{} ({}): {}CHECK {} / DEL {} / DEL again {}",
            v.name,
            v.net.name(),
            if nad["cniVersion"] == "0.3.1" {
                if refused {
                    "CHECK at 0.3.1 refused (no CHECK before 0.4.0) / at 0.4.0 "
                } else {
                    "CHECK at 0.3.1 ACCEPTED (!) / at 0.4.0 "
                }
            } else {
                ""
            },
            verdict(check.ok()),
            verdict(del.ok()),
            verdict(del_again.ok())
        );
        failures += usize::from(
            (nad["cniVersion"] == "0.3.1" && !refused)
                || !check.ok()
                || !del.ok()
                || !del_again.ok(),
        );
    }
    let settings: Vec<std::path::PathBuf> = daemons.iter().map(|d| d.1.join("settings")).collect();
    failures += vm_addresses(&nodes, &runtimes, &settings, &router);

    // The DELs released the bridge VMs' leases: the server's lease file says so.
    let leased = std::fs::read_to_string(scratch.join("dnsmasq.leases")).unwrap_or_default();
    if leased.trim().is_empty() {
        println!("datacenter DHCP server: no lease left after DEL (the RELEASEs reached it)");
    } else {
        println!("datacenter DHCP server still holds leases after DEL (!):\n{leased}");
        failures += 1;
    }
    drop(daemons);
    drop(dnsmasq);
    if made_run_cni {
        let _ = std::fs::remove_dir(run_cni);
    }
    let left = lab.nbctl(&[
        "--bare",
        "--columns=name",
        "find",
        "Logical_Switch_Port",
        "type=\"\"",
    ]);
    if !left.trim().is_empty() {
        println!("OVN ports left after DEL (!): {left}");
        failures += 1;
    }
    drop(router);
    failures
}

/// The VM network whose addresses stay (deploy/examples/nad-bridge-vms.yaml): whereabouts on an
/// etcd cluster both nodes share, a VM with a fixed (requested) address, and one whose address
/// is its MAC's across a restart and a live migration. Returns how many steps failed.
fn vm_addresses(
    nodes: &[&Netns],
    runtimes: &[LibcniClient],
    settings: &[std::path::PathBuf],
    router: &Netns,
) -> usize {
    println!(
        "\nVMs that keep their addresses on the bridge network (whereabouts on etcd, issue 18):"
    );
    let mut failures = 0;
    let mut step = |ok: bool, text: String| {
        println!("  {} {text}", if ok { "ok  " } else { "FAIL" });
        failures += usize::from(!ok);
    };
    // The cluster's etcd: one member on node A here, which node B reaches over a management link
    // (a real cluster's runs on its control plane); each node's administrator names it in the
    // node's whereabouts.conf, the NAD does not.
    sh(
        nodes[0],
        &format!(
            "ip link add mg0 type veth peer name mg1 netns {} && ip addr add 10.252.0.1/30 dev mg0 && ip link set mg0 up",
            nodes[1].name()
        ),
    );
    sh(
        nodes[1],
        "ip addr add 10.252.0.2/30 dev mg1 && ip link set mg1 up",
    );
    let t = Instant::now();
    let etcd =
        EtcdCluster::start_serving_at(1, nodes[0], "10.252.0.1".parse().expect("an address"));
    for dir in settings {
        std::fs::write(
            dir.join("whereabouts.conf"),
            json!({"datastore": "etcd", "etcd_endpoints": etcd.endpoints()}).to_string(),
        )
        .expect("whereabouts.conf");
    }
    println!(
        "  etcd on node-a ({:.1} s); both nodes' whereabouts.conf name it",
        t.elapsed().as_secs_f64()
    );
    let c = nad_config("nad-bridge-vms.yaml");
    let nad = json!({"cniVersion": c["cniVersion"], "name": c["name"], "plugins": [c]});
    println!(
        "  NAD bridge-vms (deploy/examples/nad-bridge-vms.yaml): {}",
        serde_json::to_string(&c).unwrap_or_default()
    );
    let row = |ip: &str| -> String {
        let tool = ours("multihome-ipam").display().to_string();
        let eps = etcd.endpoints().join(",");
        let out = nodes[1].run(&[&tool, "--etcd-endpoints", &eps, "list", "--network", ""]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(ip))
            .map(|l| {
                l.split_whitespace()
                    .filter(|f| {
                        f.starts_with("mac=")
                            || f.starts_with("holders=")
                            || f.starts_with("parked-until=")
                    })
                    .map(|f| {
                        if f.starts_with("parked-until=") {
                            "parked"
                        } else {
                            f
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|| "free".into())
    };
    let pod = |name: &str, mac: &str, netns: &Netns| {
        RuntimeConf::multus(
            netns.path(),
            "my-vm-namespace",
            &format!("virt-launcher-{name}"),
            "00000000-0000-4000-8000-0000000000aa",
        )
        .with_ifname("pod8a3f1c2d9e0")
        .with_capability("mac", json!(mac))
    };
    let address = |out: &conformance_tests::Outcome| -> Option<String> {
        out.try_json()?["ips"][0]["address"]
            .as_str()
            .map(str::to_string)
    };

    // A fixed address: the VM's network selection element asks for 10.200.0.120 (outside the
    // dynamic part of the range); it is reserved, so nobody else is handed it.
    let g = Netns::new("demo-vm-g");
    let g_rt =
        pod("vm-g-x1", "02:00:00:00:00:10", &g).with_capability("ips", json!(["10.200.0.120/24"]));
    let out = runtimes[0].add(&nad, &g_rt);
    step(
        address(&out).as_deref() == Some("10.200.0.120/24"),
        format!(
            "vm-g on node-a asked for 10.200.0.120: got {}",
            address(&out).unwrap_or_else(|| out.to_string())
        ),
    );
    step(
        pings(router, "10.200.0.120"),
        "the router reaches vm-g at 10.200.0.120".into(),
    );
    let z = Netns::new("demo-pod-z");
    let z_rt =
        pod("pod-z", "02:00:00:00:00:1f", &z).with_capability("ips", json!(["10.200.0.120/24"]));
    let refused = runtimes[1].add(&nad, &z_rt);
    let msg = refused
        .try_json()
        .and_then(|v| v["msg"].as_str().map(str::to_string))
        .unwrap_or_default();
    step(
        refused.error_code() == Some(103),
        format!(
            "another pod asking for it on node-b is refused, code {}: {msg}",
            refused
                .error_code()
                .map_or_else(|| "none".to_string(), |c| c.to_string())
        ),
    );

    // A VM whose address is its MAC's: a restart is a new launcher pod; a live migration is two.
    let mac = "02:00:00:00:00:11";
    let h1 = Netns::new("demo-vm-h1");
    let h1_rt = pod("vm-h-a1", mac, &h1);
    let first = address(&runtimes[0].add(&nad, &h1_rt)).unwrap_or_default();
    let ip = first.split('/').next().unwrap_or_default().to_string();
    step(
        !ip.is_empty(),
        format!("vm-h ({mac}) on node-a: {first}  [{}]", row(&ip)),
    );
    let del = runtimes[0].del(&nad, &h1_rt);
    step(
        del.ok(),
        format!(
            "vm-h stopped (DEL): {ip} parked for its MAC  [{}]",
            row(&ip)
        ),
    );
    let h2 = Netns::new("demo-vm-h2");
    let h2_rt = pod("vm-h-b2", mac, &h2);
    let again = address(&runtimes[0].add(&nad, &h2_rt)).unwrap_or_default();
    step(
        again == first,
        format!(
            "vm-h started again (a new launcher pod): {again}  [{}]",
            row(&ip)
        ),
    );
    let h3 = Netns::new("demo-vm-h3");
    let h3_rt = pod("vm-h-c3", mac, &h3);
    let target = address(&runtimes[1].add(&nad, &h3_rt)).unwrap_or_default();
    step(
        target == first,
        format!("live migration to node-b, the target pod's ADD: {target}, the source still holds it  [{}]", row(&ip)),
    );
    let y = Netns::new("demo-pod-y");
    let y_rt = pod("pod-y", "02:00:00:00:00:1e", &y);
    let other = address(&runtimes[1].add(&nad, &y_rt)).unwrap_or_default();
    step(
        !other.is_empty() && other != first,
        format!("a pod of another MAC meanwhile gets {other}"),
    );
    // The cut-over: the VM stops on node-a; its source pod's DEL leaves the address to the target.
    sh(&h2, "ip link set pod8a3f1c2d9e0 down");
    let del = runtimes[0].del(&nad, &h2_rt);
    step(
        del.ok(),
        format!(
            "the source pod's DEL: {ip} stays with the target  [{}]",
            row(&ip)
        ),
    );
    step(
        pings(router, &ip),
        format!("the router reaches vm-h at {ip} on node-b"),
    );
    let del = runtimes[1].del(&nad, &h3_rt);
    step(
        del.ok(),
        format!("vm-h deleted: {ip} parked  [{}]", row(&ip)),
    );
    let tool = ours("multihome-ipam").display().to_string();
    let eps = etcd.endpoints().join(",");
    let released = nodes[1].run(&[&tool, "--etcd-endpoints", &eps, "release", "--mac", mac]);
    step(
        released.status.success() && row(&ip) == "free",
        format!("multihome-ipam release --mac {mac}: {ip} {}", row(&ip)),
    );
    for (rt, node) in [(&y_rt, 1), (&g_rt, 0)] {
        let del = runtimes[node].del(&nad, rt);
        failures += usize::from(!del.ok());
    }
    println!(
        "  (the outage of such a migration, with and without disableContainerInterface: make bench, docs/benchmarks.md)"
    );
    drop(etcd);
    for dir in settings {
        let _ = std::fs::remove_file(dir.join("whereabouts.conf"));
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
