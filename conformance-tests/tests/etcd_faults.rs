//! whereabouts on a real 3-member etcd cluster under faults: a member killed in the middle of a
//! burst of concurrent ADDs, quorum lost and regained, DEL with a member down.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use conformance_tests::{
    ours, CniVars, EtcdCluster, Invocation, Netns, Node, NodeSettings, Outcome,
};
use serde_json::{json, Value};

struct Lab {
    etcd: EtcdCluster,
    node: Node,
    ctr: Netns,
}

impl Lab {
    fn new() -> Lab {
        let node = Node::new("ef-node");
        Lab {
            etcd: EtcdCluster::start(3, &node),
            node,
            ctr: Netns::new("ef-ctr"),
        }
    }

    /// A config whose endpoint list starts with member `first` (the client balances over all).
    fn conf(&self, range: &str, first: usize, timeout_ms: u64) -> Value {
        let mut endpoints = self.etcd.endpoints();
        let n = endpoints.len();
        endpoints.rotate_left(first % n);
        json!({"cniVersion": "1.0.0", "name": "ef-net", "type": "whereabouts", "ipam": {
            "type": "whereabouts", "range": range, "datastore": "etcd", "etcd_endpoints": endpoints,
            "etcd_request_timeout_ms": timeout_ms}})
    }

    fn call(&self, command: &str, cid: &str, conf: &Value) -> Outcome {
        let vars = CniVars {
            command: command.into(),
            container_id: cid.into(),
            netns: self.ctr.path().display().to_string(),
            ifname: "net1".into(),
            args: String::new(),
            path: String::new(),
        };
        // The node's administrator set up the etcd the configuration repeats.
        let settings = NodeSettings::for_conf(conf);
        let (k, v) = settings.env();
        Invocation::new(ours("whereabouts"))
            .in_node(&self.node)
            .env(&k, &v)
            .vars(&vars)
            .stdin_json(conf)
            .run()
    }

    /// Reservations (ip, container ID) read through the operators' tool from the living members.
    fn reservations(&self, members: &[usize]) -> Vec<(String, String)> {
        let endpoints: Vec<String> = members.iter().map(|&i| self.etcd.endpoint(i)).collect();
        let tool = ours("multihome-ipam").display().to_string();
        let out = self
            .node
            .run_ok(&[&tool, "--etcd-endpoints", &endpoints.join(","), "list"]);
        out.lines()
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[1].to_string(), f[2].to_string())
            })
            .collect()
    }
}

fn ip_of(out: &Outcome) -> String {
    assert!(out.ok(), "{out}");
    out.json()["ips"][0]["address"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn three_hundred_concurrent_adds_stay_distinct_while_a_member_is_killed() {
    let lab = Lab::new();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..24)
            .map(|t| {
                let (lab, done) = (&lab, &done);
                s.spawn(move || {
                    let conf = lab.conf("10.120.0.0/23", t, 8000);
                    (0..300)
                        .filter(|i| i % 24 == t)
                        .map(|i| {
                            let ip = ip_of(&lab.call("ADD", &format!("burst-{i}"), &conf));
                            done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            ip
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        // Kill a member (possibly the leader) once about a third of the ADDs are in.
        while done.load(std::sync::atomic::Ordering::SeqCst) < 100 {
            std::thread::sleep(Duration::from_millis(5));
        }
        lab.etcd.stop_member(0);
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(results.len(), 300);
    let distinct: BTreeSet<&String> = results.iter().collect();
    assert_eq!(distinct.len(), 300, "an address was handed out twice");
    let stored = lab.reservations(&[1, 2]);
    assert_eq!(stored.len(), 300, "one reservation per ADD, nothing else");
    lab.etcd.start_member(0);
}

#[test]
fn without_quorum_add_fails_in_bounded_time_with_code_11_leaving_nothing_and_works_once_quorum_is_back(
) {
    let lab = Lab::new();
    let conf = lab.conf("10.121.0.0/24", 2, 2000);
    assert_eq!(ip_of(&lab.call("ADD", "before", &conf)), "10.121.0.1/24");
    lab.etcd.stop_member(0);
    lab.etcd.stop_member(1);
    let started = Instant::now();
    let refused = lab.call("ADD", "during", &conf);
    let took = started.elapsed();
    assert_eq!(refused.error_code(), Some(11), "{refused}");
    assert!(
        took < Duration::from_secs(10),
        "took {took:?}: the request timeout bounds it"
    );
    lab.etcd.start_member(0);
    let back = lab.reservations(&[0, 2]);
    assert_eq!(
        back,
        [("10.121.0.1".to_string(), "before".to_string())],
        "no partial reservation"
    );
    assert_eq!(ip_of(&lab.call("ADD", "during", &conf)), "10.121.0.2/24");
}

#[test]
fn del_works_while_a_member_is_down() {
    let lab = Lab::new();
    let conf = lab.conf("10.122.0.0/24", 0, 8000);
    assert!(lab.call("ADD", "a", &conf).ok());
    assert!(lab.call("ADD", "b", &conf).ok());
    lab.etcd.stop_member(0);
    let del = lab.call("DEL", "a", &conf);
    assert!(del.ok(), "{del}");
    assert_eq!(
        lab.reservations(&[1, 2]),
        [("10.122.0.2".to_string(), "b".to_string())]
    );
}
