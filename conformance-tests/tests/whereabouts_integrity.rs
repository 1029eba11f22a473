//! whereabouts never hands one address to two live attachments and never loses one, whatever
//! the runtime does: calls SIGKILLed at random moments (a runtime's timeout), retried, DELed
//! again, GC of one network while another shares the pool, restarted sandboxes; on both stores.
//!
//! - The crash campaign runs the real executables and kills them at random points, then does
//!   what a runtime does afterwards (DEL every attachment, GC), and checks: no address was held
//!   by two live attachments, every live attachment's address is reserved for it, the pool
//!   refills to exactly its capacity, and `multihome-ipam verify` finds nothing wrong.
//! - The model test drives the `Store` trait from several threads with random operations on
//!   two networks sharing a pool, and compares every answer with a plain in-memory model.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::process::Child;
use std::time::{Duration, Instant};

use conformance_tests::{
    ours, CniVars, EtcdCluster, Invocation, Netns, Node, NodeSettings, Outcome, TempDir,
};
use ipam::range::IpRange;
use ipam::store::{Owner, PoolId, Store, StoreError};
use serde_json::{json, Value};
use whereabouts::conf::EtcdConf;
use whereabouts::etcd_store::EtcdStore;
use whereabouts::file_store::FileStore;

/// A small random number generator (xorshift), seeded per test so a failure can be replayed
/// with the seed it prints.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let seed = std::env::var("MH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("seed {seed} (MH_SEED={seed} replays it)");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

enum Backend {
    File,
    Etcd,
}

/// A node, a store, and the runtime's view of which attachments are live.
struct Campaign {
    node: Node,
    ctr: Netns,
    etcd: Option<EtcdCluster>,
    scratch: TempDir,
    /// The node's settings: its etcd cluster, when the campaign has one.
    settings: NodeSettings,
}

/// One attachment as the runtime knows it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Attachment {
    network: &'static str,
    cid: String,
    pod: String,
}

/// What the runtime believes about an attachment after its last call.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Known {
    /// ADD answered with this address.
    Live(String),
    /// A call was killed, or DEL answered: the runtime will DEL it (again) before forgetting it.
    Dying,
}

const NETWORKS: [&str; 2] = ["nad-a", "nad-b"];
/// The shared range: a /28 (14 addresses) for 16 pods, so that the pool runs full at times.
const RANGE: &str = "10.110.0.0/28";
const CAPACITY: usize = 14;

impl Campaign {
    fn new(backend: Backend) -> Campaign {
        let node = Node::new("wb-crash");
        let etcd = matches!(backend, Backend::Etcd).then(|| EtcdCluster::start(1, &node));
        let settings = match &etcd {
            None => NodeSettings::empty(),
            Some(e) => NodeSettings::for_ipam(
                &serde_json::json!({"datastore": "etcd", "etcd_endpoints": e.endpoints()}),
            ),
        };
        Campaign {
            node,
            ctr: Netns::new("wb-crash-ctr"),
            etcd,
            scratch: TempDir::new("wb-crash"),
            settings,
        }
    }

    /// The network configuration of `network`: both share the default network_name's pool.
    fn conf(&self, network: &str) -> Value {
        let mut ipam = json!({"type": "whereabouts", "range": RANGE});
        match &self.etcd {
            None => ipam["store_dir"] = json!(self.scratch.join("store")),
            Some(e) => {
                ipam["datastore"] = json!("etcd");
                ipam["etcd_endpoints"] = json!(e.endpoints());
            }
        }
        json!({"cniVersion": "1.1.0", "name": network, "type": "whereabouts", "ipam": ipam})
    }

    fn invocation(&self, command: &str, a: &Attachment, valid: &[&Attachment]) -> Invocation {
        let mut conf = self.conf(a.network);
        if command == "GC" {
            conf["cni.dev/valid-attachments"] = valid
                .iter()
                .map(|v| json!({"containerID": v.cid, "ifname": "net1"}))
                .collect();
        }
        let vars = CniVars {
            command: command.into(),
            container_id: a.cid.clone(),
            netns: self.ctr.path().display().to_string(),
            ifname: "net1".into(),
            args: format!(
                "IgnoreUnknown=1;K8S_POD_NAMESPACE=vms;K8S_POD_NAME={}",
                a.pod
            ),
            path: ours("whereabouts").parent().unwrap().display().to_string(),
        };
        let (k, v) = self.settings.env();
        Invocation::new(ours("whereabouts"))
            .in_node(&self.node)
            .env(&k, &v)
            .vars(&vars)
            .stdin_json(&conf)
    }

    fn run(&self, command: &str, a: &Attachment, valid: &[&Attachment]) -> Outcome {
        self.invocation(command, a, valid).run()
    }

    /// `multihome-ipam` on this store; its output and whether it succeeded.
    fn tool(&self, args: &[&str]) -> (bool, String) {
        let tool = ours("multihome-ipam").display().to_string();
        let store = self.scratch.join("store").display().to_string();
        let endpoints = self.etcd.as_ref().map(|e| e.endpoints().join(","));
        let mut argv = vec![tool.as_str()];
        match &endpoints {
            None => argv.extend(["--store-dir", store.as_str()]),
            Some(e) => argv.extend(["--etcd-endpoints", e.as_str()]),
        }
        argv.extend(args);
        let out = self.node.run(&argv);
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        (out.status.success(), text)
    }

    /// (address, container ID) of every reservation.
    fn reservations(&self) -> Vec<(String, String)> {
        let (ok, out) = self.tool(&["list"]);
        assert!(ok, "multihome-ipam list: {out}");
        out.lines()
            .map(|l| {
                // pool label (one or more words), address, container ID, ifname, pod
                let f: Vec<&str> = l.split_whitespace().rev().collect();
                (f[3].to_string(), f[2].to_string())
            })
            .collect()
    }
}

fn ip_of(out: &Outcome) -> String {
    out.json()["ips"][0]["address"]
        .as_str()
        .map(|a| a.split('/').next().unwrap().to_string())
        .unwrap_or_default()
}

/// Waits for `child` at most `limit`; then SIGKILLs it. True when it was killed while running.
fn kill_after(mut child: Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let status = child.wait().unwrap();
            return status.code().is_none();
        }
        std::thread::yield_now();
    }
}

/// The invariants while the runtime believes `known`: live attachments hold distinct addresses,
/// each reserved for that attachment.
fn check_live(c: &Campaign, known: &BTreeMap<Attachment, Known>, when: &str) {
    let held: BTreeMap<String, String> = c.reservations().into_iter().collect();
    let mut seen = BTreeMap::new();
    for (a, k) in known {
        let Known::Live(ip) = k else { continue };
        if let Some(other) = seen.insert(ip.clone(), a.cid.clone()) {
            panic!(
                "{when}: {ip} handed to two live attachments, {other} and {}",
                a.cid
            );
        }
        assert_eq!(
            held.get(ip),
            Some(&a.cid),
            "{when}: live {}'s address {ip} is not reserved for it: {held:?}",
            a.cid
        );
    }
}

/// At least `kills` calls SIGKILLed at random moments among ADD, DEL, GC and restarts of 16
/// pods on two networks sharing one pool; then the runtime's cleanup and the invariants.
fn crash_campaign(backend: Backend, kills: usize, max_delay_us: u64) {
    let c = Campaign::new(backend);
    let mut rng = Rng::seeded();
    let pods: Vec<(&'static str, String)> = (0..16)
        .map(|i| (NETWORKS[i % 2], format!("vm-{i}")))
        .collect();
    // Each pod's current sandbox, and every attachment the runtime has not forgotten.
    let mut current: Vec<Attachment> = pods
        .iter()
        .map(|(n, p)| Attachment {
            network: n,
            cid: format!("{p}-s0"),
            pod: p.clone(),
        })
        .collect();
    let mut known: BTreeMap<Attachment, Known> = BTreeMap::new();
    let (mut killed, mut calls, mut generation) = (0usize, 0usize, 0usize);
    let started = Instant::now();
    while killed < kills {
        calls += 1;
        let i = rng.below(current.len() as u64) as usize;
        let op = rng.below(10);
        let a = current[i].clone();
        let (command, valid): (&str, Vec<Attachment>) = match op {
            0..=4 => ("ADD", Vec::new()),
            5..=6 => ("DEL", Vec::new()),
            7 => {
                // A restarted sandbox: same pod, new container ID; the old one is to be DELed.
                generation += 1;
                known.entry(a.clone()).or_insert(Known::Dying);
                if let Some(k) = known.get_mut(&a) {
                    *k = Known::Dying;
                }
                current[i].cid = format!("{}-s{generation}", a.pod);
                ("ADD", Vec::new())
            }
            _ => {
                let live = known
                    .iter()
                    .filter(|(k, v)| k.network == a.network && matches!(v, Known::Live(_)))
                    .map(|(k, _)| k.clone())
                    .collect();
                ("GC", live)
            }
        };
        let a = current[i].clone();
        let refs: Vec<&Attachment> = valid.iter().collect();
        let child = c.invocation(command, &a, &refs).spawn().unwrap();
        let limit = Duration::from_micros(rng.below(max_delay_us));
        if kill_after(child, limit) {
            killed += 1;
            if command != "GC" {
                known.insert(a.clone(), Known::Dying);
            }
            continue;
        }
        // Not killed: run the same call to completion to learn its answer, as a runtime that
        // retries a call it lost the answer of (ADD and DEL are idempotent, so is GC).
        let out = c.run(command, &a, &refs);
        match command {
            "ADD" if out.ok() => {
                known.insert(a.clone(), Known::Live(ip_of(&out)));
            }
            "ADD" => {
                assert_eq!(
                    out.error_code(),
                    Some(102),
                    "only a full pool refuses: {out}"
                );
                known.insert(a.clone(), Known::Dying);
            }
            "DEL" => {
                assert!(out.ok(), "DEL never fails: {out}");
                known.remove(&a);
            }
            _ => assert!(out.ok(), "GC never fails: {out}"),
        }
        if calls % 50 == 0 {
            check_live(&c, &known, &format!("after call {calls}"));
        }
    }
    check_live(&c, &known, "after the campaign");
    eprintln!(
        "{killed} kills in {calls} calls, {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // What a runtime does next: DEL every attachment it knows, then GC each network with the
    // live ones valid; then the live ones go too.
    for (a, k) in known.clone() {
        if k == Known::Dying {
            let out = c.run("DEL", &a, &[]);
            assert!(out.ok(), "{out}");
            known.remove(&a);
        }
    }
    for network in NETWORKS {
        let live: Vec<Attachment> = known
            .keys()
            .filter(|k| k.network == network)
            .cloned()
            .collect();
        let refs: Vec<&Attachment> = live.iter().collect();
        let probe = Attachment {
            network,
            cid: "gc".into(),
            pod: "gc".into(),
        };
        let out = c.run("GC", &probe, &refs);
        assert!(out.ok(), "{out}");
    }
    check_live(&c, &known, "after DEL and GC of the dead");
    let held: BTreeSet<String> = c.reservations().into_iter().map(|(_, cid)| cid).collect();
    let live: BTreeSet<String> = known.keys().map(|a| a.cid.clone()).collect();
    assert_eq!(held, live, "only the live attachments hold addresses");
    for a in known.keys() {
        assert!(c.run("DEL", a, &[]).ok());
    }
    assert!(c.reservations().is_empty(), "{:?}", c.reservations());
    let (ok, out) = c.tool(&["verify"]);
    assert!(ok, "multihome-ipam verify: {out}");

    // Every address is allocatable again: exactly CAPACITY ADDs succeed, the next is 102.
    let mut got = BTreeSet::new();
    for i in 0..CAPACITY {
        let a = Attachment {
            network: NETWORKS[i % 2],
            cid: format!("refill-{i}"),
            pod: format!("refill-{i}"),
        };
        let out = c.run("ADD", &a, &[]);
        assert!(out.ok(), "refill {i}: {out}");
        assert!(got.insert(ip_of(&out)), "refill {i}: {out} given twice");
    }
    let extra = Attachment {
        network: "nad-a",
        cid: "refill-extra".into(),
        pod: "refill-extra".into(),
    };
    assert_eq!(c.run("ADD", &extra, &[]).error_code(), Some(102));
    let (ok, out) = c.tool(&["verify"]);
    assert!(ok, "multihome-ipam verify: {out}");
}

#[test]
fn a_thousand_kills_on_the_file_store_lose_and_duplicate_nothing() {
    crash_campaign(Backend::File, 1000, 4000);
}

#[test]
fn a_thousand_kills_on_etcd_lose_and_duplicate_nothing() {
    crash_campaign(Backend::Etcd, 1000, 8000);
}

/// The model: which address each attachment holds.
#[derive(Debug, Default)]
struct Model {
    held: BTreeMap<(String, String), IpAddr>,
}

/// One thread's random walk over its own attachments on `network`, checked against the model
/// after every step. Other threads work on the same pool at the same time.
fn model_walk(store: &dyn Store, network: &str, thread: usize, steps: usize, seed: u64) -> Model {
    let mut rng = Rng(seed | 1);
    let pool = PoolId {
        network: String::new(),
        cidr: None,
    };
    let range = IpRange::new(
        "",
        "10.111.0.0/26".parse().unwrap(),
        None,
        None,
        Vec::new(),
        None,
    )
    .unwrap();
    let mut model = Model::default();
    // Pods p0..p3 of this thread; each has a current sandbox generation.
    let mut generation = [0usize; 4];
    let owner = |pod: usize, generation: usize| Owner {
        container_id: format!("t{thread}-p{pod}-g{generation}"),
        ifname: "net1".into(),
        pod_ref: Some(format!("ns/t{thread}-p{pod}")),
        network: Some(network.into()),
        sticky: None,
    };
    for step in 0..steps {
        let pod = rng.below(4) as usize;
        let o = owner(pod, generation[pod]);
        let key = (o.container_id.clone(), o.ifname.clone());
        match rng.below(8) {
            0..=2 => match store.reserve(&pool, &range, &o) {
                Ok(ip) => {
                    if let Some(had) = model.held.get(&key) {
                        assert_eq!(*had, ip, "step {step}: a repeated ADD moved {key:?}");
                    }
                    model.held.insert(key, ip);
                }
                Err(StoreError::Exhausted { .. }) => {}
                Err(e) => panic!("step {step}: {e}"),
            },
            3 => {
                // Restart: the new sandbox takes the pod's address over.
                let before = model.held.remove(&key);
                generation[pod] += 1;
                let new = owner(pod, generation[pod]);
                match store.reserve(&pool, &range, &new) {
                    Ok(ip) => {
                        if let Some(had) = before {
                            assert_eq!(
                                had, ip,
                                "step {step}: a restarted sandbox lost its address"
                            );
                        }
                        model
                            .held
                            .insert((new.container_id.clone(), new.ifname.clone()), ip);
                    }
                    Err(StoreError::Exhausted { .. }) => assert!(before.is_none()),
                    Err(e) => panic!("step {step}: {e}"),
                }
                // The old sandbox's late DEL frees nothing.
                assert!(store
                    .release(&pool, &o.container_id, "net1")
                    .unwrap()
                    .is_empty());
            }
            4..=5 => {
                let freed = store.release(&pool, &o.container_id, "net1").unwrap();
                let want: Vec<IpAddr> = model.held.remove(&key).into_iter().collect();
                assert_eq!(freed, want, "step {step}: DEL of {key:?}");
            }
            6 => {
                // GC with every attachment of this network valid but this pod's current one:
                // it frees exactly that one, and never the other network's (not in the list).
                let mut valid: BTreeSet<(String, String)> = BTreeSet::new();
                for t in (0..4).filter(|t| t % 2 == thread % 2) {
                    for p in 0..4 {
                        for g in 0..=steps {
                            if (t, p, g) != (thread, pod, generation[pod]) {
                                valid.insert((format!("t{t}-p{p}-g{g}"), "net1".into()));
                            }
                        }
                    }
                }
                let freed = store.gc(&pool, network, &valid).unwrap();
                let freed: Vec<IpAddr> = freed.into_iter().map(|r| r.ip).collect();
                let want: Vec<IpAddr> = model.held.remove(&key).into_iter().collect();
                assert_eq!(freed, want, "step {step}: GC of {network} freed {freed:?}");
            }
            _ => {
                let found: Vec<IpAddr> = store
                    .find(&pool, &o.container_id, "net1")
                    .unwrap()
                    .into_iter()
                    .map(|r| r.ip)
                    .collect();
                let want: Vec<IpAddr> = model.held.get(&key).copied().into_iter().collect();
                assert_eq!(found, want, "step {step}: find {key:?}");
            }
        }
    }
    model
}

/// Four threads (two per network) walk the same pool; afterwards the store holds exactly what
/// the models say, each address once.
fn model_test(open: &(dyn Fn() -> Box<dyn Store> + Sync), steps: usize) {
    let mut rng = Rng::seeded();
    let seeds: Vec<u64> = (0..4).map(|_| rng.next()).collect();
    let models: Vec<Model> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let seed = seeds[t];
                s.spawn(move || {
                    let store = open();
                    model_walk(store.as_ref(), NETWORKS[t % 2], t, steps, seed)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let store = open();
    let pool = PoolId {
        network: String::new(),
        cidr: None,
    };
    let mut want: BTreeMap<IpAddr, String> = BTreeMap::new();
    for m in &models {
        for ((cid, _), ip) in &m.held {
            assert!(
                want.insert(*ip, cid.clone()).is_none(),
                "{ip} in two models"
            );
        }
    }
    let got: BTreeMap<IpAddr, String> = store
        .list(&pool)
        .unwrap()
        .into_iter()
        .map(|r| (r.ip, r.owner.container_id))
        .collect();
    assert_eq!(got, want, "the store holds exactly what the models hold");
}

#[test]
fn the_file_store_agrees_with_a_model_under_concurrent_random_operations() {
    let dir = TempDir::new("wb-model");
    let root = dir.join("store");
    model_test(&|| Box::new(FileStore::new(&root)), 300);
    let v = FileStore::new(&root).verify().unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
}

#[test]
fn the_etcd_store_agrees_with_a_model_under_concurrent_random_operations() {
    let node = Node::new("wb-model");
    let etcd = EtcdCluster::start(1, &node);
    let conf = EtcdConf {
        endpoints: etcd.endpoints(),
        username: None,
        password: None,
        ca_file: None,
        cert_file: None,
        key_file: None,
        prefix: "/model".into(),
        dial_timeout_ms: 2000,
        request_timeout_ms: 5000,
    };
    // The test runs in the root namespace; the member listens on the node's loopback: reach it
    // from a thread that entered the node namespace.
    let open = || -> Box<dyn Store> {
        let ns = std::fs::File::open(node.path()).unwrap();
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        Box::new(EtcdStore::connect(&conf).unwrap().per_request_deadline())
    };
    model_test(&open, 150);
}
