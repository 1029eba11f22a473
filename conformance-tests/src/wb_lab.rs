//! A whereabouts lab for the IPAM tests: node namespaces, a container namespace, and a store (a
//! file store directory on one node, or an etcd cluster the nodes share), with calls of the
//! executable as a runtime makes them and of the operators' tool, `multihome-ipam`.

use serde_json::{json, Value};

use crate::{ours, CniVars, EtcdCluster, Invocation, Netns, Node, Outcome, TempDir};

/// Where the lab's reservations are.
#[derive(Debug)]
pub enum WbStore {
    /// A file store directory (`<dir>/wb`), on one node.
    File(TempDir),
    /// An etcd cluster.
    Etcd(Box<EtcdCluster>),
}

/// Nodes, a container namespace and a store.
#[derive(Debug)]
pub struct WbLab {
    /// The node namespaces the plugin runs in (call `node` is `node % nodes.len()`).
    pub nodes: Vec<Node>,
    /// The container namespace every call names.
    pub ctr: Netns,
    /// The store.
    pub store: WbStore,
}

/// One row of `multihome-ipam list`.
#[derive(Debug, Clone)]
pub struct Row {
    /// The address.
    pub ip: String,
    /// The owner's container ID.
    pub cid: String,
    /// A sticky reservation's MAC.
    pub mac: Option<String>,
    /// Parked (no pod of the MAC left).
    pub parked: bool,
    /// How many attachments hold it (`holders=`; 0 when the row does not say).
    pub holders: usize,
}

impl WbLab {
    /// One node with a file store.
    pub fn file(tag: &str) -> WbLab {
        WbLab {
            nodes: vec![Node::new(&format!("{tag}-node"))],
            ctr: Netns::new(&format!("{tag}-ctr")),
            store: WbStore::File(TempDir::new(&format!("{tag}-store"))),
        }
    }

    /// One node running a 3-member etcd cluster in its namespace.
    pub fn etcd(tag: &str) -> WbLab {
        let a = Node::new(&format!("{tag}-a"));
        let etcd = EtcdCluster::start(3, &a);
        WbLab {
            nodes: vec![a],
            ctr: Netns::new(&format!("{tag}-ctr")),
            store: WbStore::Etcd(Box::new(etcd)),
        }
    }

    /// Two nodes joined by a link (10.251.0.0/30); node A runs a 3-member etcd cluster serving
    /// both at its end of the link.
    pub fn etcd_two_nodes(tag: &str) -> WbLab {
        let a = Node::new(&format!("{tag}-a"));
        let b = Node::new(&format!("{tag}-b"));
        let link = format!(
            "ip link add wb0 type veth peer name wb1 netns {} && ip addr add 10.251.0.1/30 dev wb0 && ip link set wb0 up",
            b.name()
        );
        for (node, script) in [
            (&a, link.as_str()),
            (
                &b,
                "ip addr add 10.251.0.2/30 dev wb1 && ip link set wb1 up",
            ),
        ] {
            let out = node.sh(script);
            assert!(
                out.status.success(),
                "{script}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let etcd = EtcdCluster::start_serving_at(3, &a, "10.251.0.1".parse().expect("an address"));
        WbLab {
            nodes: vec![a, b],
            ctr: Netns::new(&format!("{tag}-ctr")),
            store: WbStore::Etcd(Box::new(etcd)),
        }
    }

    /// A whereabouts `ipam` object: `ipam` with the type and the lab's store keys.
    pub fn ipam(&self, ipam: Value) -> Value {
        let mut ipam = ipam;
        ipam["type"] = json!("whereabouts");
        match &self.store {
            WbStore::File(dir) => ipam["store_dir"] = json!(dir.join("wb")),
            WbStore::Etcd(etcd) => {
                ipam["datastore"] = json!("etcd");
                ipam["etcd_endpoints"] = json!(etcd.endpoints());
            }
        }
        ipam
    }

    /// A call of the whereabouts executable on `node` for `cid`/`net1`, with the node's
    /// settings naming the store of `conf` (as the node's administrator writes them).
    pub fn call(&self, node: usize, command: &str, cid: &str, args: &str, conf: &Value) -> Outcome {
        let vars = CniVars {
            command: command.into(),
            container_id: cid.into(),
            netns: self.ctr.path().display().to_string(),
            ifname: "net1".into(),
            args: args.into(),
            path: ours("whereabouts")
                .parent()
                .expect("a directory")
                .display()
                .to_string(),
        };
        Invocation::run_as_node(
            &ours("whereabouts"),
            &self.nodes[node % self.nodes.len()],
            &vars,
            conf,
        )
    }

    /// The operators' tool on `node`, pointed at the lab's store: whether it succeeded, and what
    /// it printed (stdout, then stderr).
    pub fn tool(&self, node: usize, args: &[&str]) -> (bool, String) {
        let mut argv: Vec<String> = vec![ours("multihome-ipam").display().to_string()];
        match &self.store {
            WbStore::File(dir) => {
                argv.extend(["--store-dir".into(), dir.join("wb").display().to_string()])
            }
            WbStore::Etcd(etcd) => {
                argv.extend(["--etcd-endpoints".into(), etcd.endpoints().join(",")])
            }
        }
        argv.extend(args.iter().map(|s| s.to_string()));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let out = self.nodes[node % self.nodes.len()].run(&argv);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    }

    /// Every reservation, as `multihome-ipam list` on the last node shows it.
    pub fn rows(&self) -> Vec<Row> {
        let (ok, out) = self.tool(self.nodes.len() - 1, &["list"]);
        assert!(ok, "{out}");
        out.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                if f.len() < 3 {
                    return None;
                }
                let field = |p: &str| f.iter().find_map(|x| x.strip_prefix(p));
                Some(Row {
                    ip: f[1].to_string(),
                    cid: f[2].to_string(),
                    mac: field("mac=").map(str::to_string),
                    parked: field("parked-until=").is_some(),
                    holders: field("holders=").and_then(|h| h.parse().ok()).unwrap_or(0),
                })
            })
            .collect()
    }
}

/// The addresses of a successful result (panics with the outcome otherwise).
pub fn addresses(out: &Outcome) -> Vec<String> {
    assert!(out.ok(), "{out}");
    out.json()["ips"]
        .as_array()
        .expect("ips")
        .iter()
        .map(|i| i["address"].as_str().expect("an address").to_string())
        .collect()
}

/// The `msg` of an error result.
pub fn message(out: &Outcome) -> String {
    out.json()["msg"].as_str().unwrap_or_default().to_string()
}
