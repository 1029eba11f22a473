//! ovn-overlay on a production-shaped OVN: the NB and SB are three-member raft clusters, and
//! three nodes ADD at once while the NB leader is killed, then while a follower is cut off from
//! the others (and listed first in every node's settings), then while the SB leader is killed. What a runtime does is modelled: an
//! ADD answered "try again later" (11) is retried, a bounded number of times. No ADD fails for
//! good, no address is given twice, and NB holds exactly one complete port per attachment.

use std::collections::BTreeSet;
use std::time::Duration;

use conformance_tests::ovn::{call, lsp, nb_rows, ok_json, ovsdb_strings, OvnNode, Vm};
use conformance_tests::{ours, OvnLab, PluginDir};
use serde_json::{json, Value};

/// How many times a runtime retries an ADD answered 11 (kubelet retries for ever; bounded here
/// so that the test can fail).
const RETRIES: usize = 5;
const PER_NODE: usize = 4;

fn plugins() -> PluginDir {
    PluginDir::empty().with_link("ovn-k8s-cni-overlay", &ours("ovn-overlay"))
}

fn conf() -> Value {
    json!({"cniVersion": "1.1.0", "name": "raft-net", "type": "ovn-k8s-cni-overlay",
        "topology": "layer2", "netAttachDefName": "ns/raft-net", "subnets": "10.210.0.0/24",
        "readyTimeout": 20})
}

/// ADD with the runtime's retries on 11; the result and how many tries it took.
fn add_retrying(plugins: &PluginDir, node: &OvnNode, vm: &Vm) -> (Value, usize) {
    for attempt in 1..=RETRIES {
        let out = call(
            plugins,
            "ovn-k8s-cni-overlay",
            node,
            "ADD",
            vm,
            "net1",
            "",
            &conf(),
        );
        match out.error_code() {
            None => return (ok_json(&out), attempt),
            Some(11) => eprintln!("{} attempt {attempt}: {}", vm.cid, out.stdout_text()),
            Some(_) => panic!("ADD of {} failed for good: {}", vm.cid, out.stdout_text()),
        }
    }
    panic!("ADD of {} still 11 after {RETRIES} tries", vm.cid);
}

/// Three nodes ADD `PER_NODE` VMs each at once; `during` runs once the first ADDs are done.
fn burst(
    lab: &OvnLab,
    plugins: &PluginDir,
    tag: &str,
    during: impl FnOnce() + Send,
) -> Vec<(Vm, Value)> {
    let done = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        let workers: Vec<_> = lab
            .nodes
            .iter()
            .enumerate()
            .map(|(n, node)| {
                let done = &done;
                s.spawn(move || {
                    (0..PER_NODE)
                        .map(|k| {
                            let vm = Vm::new(&format!("{tag}{n}{k}"));
                            let (r, _) = add_retrying(plugins, node, &vm);
                            done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            (vm, r)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        conformance_tests::wait_until(
            "the first ADDs of the burst",
            Duration::from_secs(120),
            || done.load(std::sync::atomic::Ordering::SeqCst) >= 2,
        );
        during();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    })
}

/// Every attachment has its own address, and NB exactly one complete port for each.
fn assert_whole(lab: &OvnLab, added: &[(Vm, Value)], ports_expected: usize) {
    let ips: Vec<String> = added
        .iter()
        .map(|(_, r)| r["ips"][0]["address"].as_str().unwrap().to_string())
        .collect();
    let distinct: BTreeSet<&String> = ips.iter().collect();
    assert_eq!(
        distinct.len(),
        ips.len(),
        "an address was given twice: {ips:?}"
    );
    for (vm, r) in added {
        let ip = r["ips"][0]["address"].as_str().unwrap();
        assert!(
            vm.ns.addresses("net1").iter().any(|a| a == ip),
            "{} lacks {ip}",
            vm.cid
        );
    }
    let ports = nb_rows(lab, "Logical_Switch_Port");
    assert_eq!(
        ports.len(),
        ports_expected,
        "a port left behind or missing: {ports:?}"
    );
    for p in &ports {
        let name = p["name"].as_str().unwrap();
        let row = lsp(lab, name).unwrap();
        let addresses = ovsdb_strings(&row["addresses"]);
        let security = ovsdb_strings(&row["port_security"]);
        assert!(
            addresses.len() == 1 && addresses[0].contains("10.210.0.") && security == addresses,
            "half-made port {name}: {row}"
        );
    }
}

#[test]
fn adds_from_three_nodes_survive_a_killed_nb_leader_a_partitioned_follower_and_a_killed_sb_leader()
{
    let lab = OvnLab::start_clustered("ovc", 3);
    let plugins = plugins();

    // The NB leader killed while the three nodes ADD.
    let leader = lab.raft_leader("nb", &[0, 1, 2]);
    let first = burst(&lab, &plugins, "k", || lab.kill_member("nb", leader));
    let alive: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let new_leader = lab.raft_leader("nb", &alive);
    assert_ne!(new_leader, leader);
    assert_whole(&lab, &first, first.len());

    // The killed member restarted (it rejoins), then a follower cut off from the others, first
    // in every node's list of NB endpoints.
    lab.start_member("nb", leader);
    lab.wait_member_connected("nb", leader, true);
    let cut = *alive.iter().find(|&&i| i != new_leader).unwrap();
    let order: Vec<String> = std::iter::once(cut)
        .chain((0..3).filter(|&i| i != cut))
        .map(|i| lab.member_endpoint("nb", i))
        .collect();
    for node in &lab.nodes {
        let file = node.node_file();
        let mut settings: Value =
            serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        settings["nbdb"] = json!(order.join(","));
        std::fs::write(&file, settings.to_string()).unwrap();
    }
    lab.cable_member(cut, false);
    lab.wait_member_connected("nb", cut, false);
    let second = burst(&lab, &plugins, "p", || {});
    let mut all = first;
    all.extend(second);
    assert_whole(&lab, &all, all.len());
    lab.cable_member(cut, true);
    lab.wait_member_connected("nb", cut, true);

    // The SB leader killed while the nodes ADD: ovn-controller moves to the new leader and
    // still reports every port installed.
    let sb_leader = lab.raft_leader("sb", &[0, 1, 2]);
    let third = burst(&lab, &plugins, "s", || lab.kill_member("sb", sb_leader));
    let sb_alive: Vec<usize> = (0..3).filter(|&i| i != sb_leader).collect();
    assert_ne!(lab.raft_leader("sb", &sb_alive), sb_leader);
    all.extend(third);
    assert_whole(&lab, &all, all.len());
}
