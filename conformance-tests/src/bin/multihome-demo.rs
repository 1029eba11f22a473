//! `make demo`: the suite answering a real runtime. Builds a node namespace and two "VM" network
//! namespaces, then drives our executables through the real libcni (a cnitool-style client built
//! from Debian's libcni 1.1.2) the way Multus does: ADD, CHECK, DEL, with a result table.
//! Everything it creates is removed at the end, also when a step fails.
#![allow(clippy::print_stdout)] // the demo's output is for the person running it

use std::time::Instant;

use conformance_tests::{require_root, LibcniClient, Netns, Node, PluginDir, RuntimeConf};
use serde_json::{json, Value};

struct Vm {
    name: &'static str,
    _netns: Netns,
    rt: RuntimeConf,
}

fn vm(name: &'static str, ips: Option<Value>) -> Vm {
    let netns = Netns::new(&format!("demo-{name}"));
    // KubeVirt names a secondary pod interface `pod<11 hex>`.
    let mut rt = RuntimeConf::multus(
        netns.path(),
        "my-vm-namespace",
        &format!("virt-launcher-{name}"),
        "00000000-0000-4000-8000-00000000d3m0",
    )
    .with_ifname("pod8a3f1c2d9e0");
    if let Some(ips) = ips {
        rt = rt.with_capability("ips", ips);
    }
    Vm {
        name,
        _netns: netns,
        rt,
    }
}

fn main() {
    require_root();
    let started = Instant::now();
    println!("multihome demo: static IPAM answering the real libcni, in network namespaces\n");
    let node = Node::new("demo-node");
    let plugins = PluginDir::ours(&["static"]);
    println!(
        "node namespace {:?}; plugins from {}",
        node.name(),
        plugins.path().display()
    );
    print!("building the libcni 1.1.2 client (Debian's Go sources) ... ");
    let t = Instant::now();
    let libcni = LibcniClient::new(plugins.cni_path(), &node);
    println!("done in {:.1} s", t.elapsed().as_secs_f64());

    // A NetworkAttachmentDefinition's config as Multus would read it: static IPAM with the `ips`
    // capability so that a VM can ask for its own address (runtimeConfig.ips).
    let nad = json!({"cniVersion": "1.0.0", "name": "static-network", "plugins": [{
        "type": "static", "capabilities": {"ips": true},
        "ipam": {"type": "static", "addresses": [{"address": "192.0.2.10/24", "gateway": "192.0.2.1"}],
                 "routes": [{"dst": "198.51.100.0/24", "gw": "192.0.2.254"}],
                 "dns": {"nameservers": ["192.0.2.53"]}}}]});
    println!(
        "\nNAD config:\n{}\n",
        serde_json::to_string_pretty(&nad).unwrap_or_default()
    );

    let vms = [vm("vm-a", None), vm("vm-b", Some(json!(["192.0.2.20/24"])))];
    println!(
        "{:<6} {:<15} {:<15} {:<16} {:<12} {:>8}",
        "VM", "network", "interface", "IP", "gateway", "ADD ms"
    );
    let mut failures = 0;
    for v in &vms {
        let t = Instant::now();
        let out = libcni.add(&nad, &v.rt);
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        if !out.ok() {
            println!("{:<6} ADD failed: {out}", v.name);
            failures += 1;
            continue;
        }
        let r = out.json();
        let ip = &r["ips"][0];
        println!(
            "{:<6} {:<15} {:<15} {:<16} {:<12} {:>8.1}",
            v.name,
            "static-network",
            v.rt.ifname,
            ip["address"].as_str().unwrap_or("-"),
            ip["gateway"].as_str().unwrap_or("-"),
            ms
        );
    }
    println!("\nvm-b asked for 192.0.2.20/24 through runtimeConfig.ips and got it; vm-a got the NAD's address.");
    println!("(static IPAM only hands out addresses: interfaces come with the bridge and OVN plugins.)\n");
    for v in &vms {
        let check = libcni.check(&nad, &v.rt);
        let del = libcni.del(&nad, &v.rt);
        let del_again = libcni.del(&nad, &v.rt);
        println!(
            "{}: CHECK {} / DEL {} / DEL again {}",
            v.name,
            verdict(check.ok()),
            verdict(del.ok()),
            verdict(del_again.ok())
        );
        failures += usize::from(!check.ok() || !del.ok() || !del_again.ok());
    }
    drop(vms);
    drop(node);
    println!(
        "\nremoved the namespaces; demo took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if failures > 0 {
        eprintln!("demo: {failures} step(s) failed");
        std::process::exit(1);
    }
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "ok"
    } else {
        "FAILED"
    }
}
