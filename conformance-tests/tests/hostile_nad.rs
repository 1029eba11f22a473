//! A NAD author cannot reach beyond the network they define (docs/security.md). Each attack a
//! namespace user could write into a NetworkAttachmentDefinition, against stand-ins of the
//! node's files under a temporary directory ("victim"), with the node's settings allowing only
//! directories of their own ("allowed"): a planted symlink, a FIFO, /dev/zero, a directory
//! others can write, and fake servers on loopback in the test's node namespace. Each asserts the
//! attack fails with a clear code naming the key and the node setting, that nothing in the
//! victim directory changed, and, where a path or a peer is refused, that the same path or peer
//! is used when the node itself names it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use conformance_tests::bench::in_netns;
use conformance_tests::{
    ours, CniVars, Invocation, Netns, Node, NodeSettings, Outcome, PluginDir, TempDir,
};
use serde_json::{json, Value};

/// What the node's secret stand-ins hold; must never appear in an answer.
const TOKEN: &str = "T0KEN-5ecret-3f9a";
const NOBODY: u32 = 65534;

/// The node, its settings (allowing only `allowed/{logs,stores,flat}`), and the victim files.
struct Hostile {
    node: Node,
    ctr: Netns,
    allowed: TempDir,
    victim: TempDir,
    settings: NodeSettings,
}

impl Hostile {
    fn new(tag: &str) -> Hostile {
        let allowed = TempDir::new(&format!("{tag}-allowed"));
        for d in ["logs", "stores", "flat"] {
            std::fs::create_dir(allowed.join(d)).unwrap();
        }
        let victim = TempDir::new(&format!("{tag}-victim"));
        std::fs::write(
            victim.join("authorized_keys"),
            "ssh-ed25519 AAAA root@node\n",
        )
        .unwrap();
        let secret = victim.join("secret.json");
        std::fs::write(
            &secret,
            json!({"gateway": TOKEN, "nbdb": TOKEN}).to_string(),
        )
        .unwrap();
        std::fs::set_permissions(&secret, PermissionsExt::from_mode(0o600)).unwrap();
        let settings = NodeSettings::empty();
        settings.write(
            "node.json",
            &json!({"log_dirs": [allowed.join("logs")], "store_dirs": [allowed.join("stores")],
                "flat_file_dirs": [allowed.join("flat")]}),
        );
        Hostile {
            node: Node::new(&format!("{tag}-node")),
            ctr: Netns::new(&format!("{tag}-ctr")),
            allowed,
            victim,
            settings,
        }
    }

    /// Every entry below the victim directory: (mode, size, content of files, link target).
    fn snapshot(&self) -> BTreeMap<PathBuf, (u32, u64, Vec<u8>)> {
        let mut out = BTreeMap::new();
        let mut stack = vec![self.victim.path().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                let m = std::fs::symlink_metadata(&p).unwrap();
                let body = if m.file_type().is_symlink() {
                    std::fs::read_link(&p)
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes()
                } else if m.is_file() {
                    std::fs::read(&p).unwrap()
                } else {
                    if m.is_dir() {
                        stack.push(p.clone());
                    }
                    Vec::new()
                };
                out.insert(p, (m.mode(), m.len(), body));
            }
        }
        out
    }

    fn vars(&self, command: &str, cid: &str) -> CniVars {
        CniVars {
            command: command.into(),
            container_id: cid.into(),
            netns: self.ctr.path().display().to_string(),
            ifname: "net1".into(),
            args: String::new(),
            path: String::new(),
        }
    }

    /// `plugin` with the node's settings named, as the node's runtime does.
    fn call_with(
        &self,
        plugin: &Path,
        settings: &NodeSettings,
        command: &str,
        conf: &Value,
    ) -> Outcome {
        let (k, v) = settings.env();
        Invocation::new(plugin)
            .in_node(&self.node)
            .env(&k, &v)
            .vars(&self.vars(command, "hostile"))
            .stdin_json(conf)
            .run()
    }

    fn call(&self, plugin: &str, command: &str, conf: &Value) -> Outcome {
        self.call_with(&ours(plugin), &self.settings, command, conf)
    }

    /// A whereabouts configuration with `ipam` keys over a range and a store the node allows.
    fn wb(&self, ipam: Value) -> Value {
        let mut i = json!({"type": "whereabouts", "range": "10.150.0.0/24",
            "store_dir": self.allowed.join("stores/wb")});
        for (k, v) in ipam.as_object().unwrap() {
            if v.is_null() {
                i.as_object_mut().unwrap().remove(k);
            } else {
                i[k] = v.clone();
            }
        }
        json!({"cniVersion": "1.1.0", "name": "hostile", "type": "whereabouts", "ipam": i})
    }

    fn path(&self, dir: &TempDir, name: &str) -> String {
        dir.join(name).display().to_string()
    }
}

/// The error's message; panics unless the call failed with `code` and a message naming every
/// one of `needles`, on one line, without the secret.
fn refused(out: &Outcome, code: u64, needles: &[&str]) -> String {
    assert_eq!(out.error_code(), Some(code), "{out}");
    let msg = out.json()["msg"].as_str().unwrap_or_default().to_string();
    for n in needles {
        assert!(msg.contains(n), "{msg:?} should name {n:?}");
    }
    assert!(!msg.contains('\n'), "{msg:?}");
    assert!(
        !out.stdout_text().contains(TOKEN),
        "the secret leaked: {out}"
    );
    msg
}

/// A fake server on 127.0.0.1 inside `node` that counts connections and answers as `answer`.
struct FakeServer {
    port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Clone, Copy)]
enum Answer {
    /// HTTP 500 whose body holds newlines, a line that is an ssh key, and the secret token.
    Inject,
    /// `100 Continue` every 20 ms, for ever.
    Flood,
}

impl FakeServer {
    fn start(node: &Netns, answer: Answer) -> FakeServer {
        let listener = in_netns(node.path(), || {
            TcpListener::bind("127.0.0.1:0").expect("bind in the node")
        });
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (accepted, stop) = (
            Arc::new(AtomicUsize::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (a, s) = (accepted.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        a.fetch_add(1, Ordering::Relaxed);
                        let s = s.clone();
                        std::thread::spawn(move || serve(conn, answer, &s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeServer {
            port,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut conn: std::net::TcpStream, answer: Answer, stop: &AtomicBool) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 65536];
    let _ = conn.read(&mut buf);
    match answer {
        Answer::Inject => {
            let body = format!("boom\nssh-ed25519 AAAAC3Nz attacker@evil\ntoken: {TOKEN}\n");
            let head = format!(
                "HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(format!("{head}{body}").as_bytes());
        }
        Answer::Flood => {
            while !stop.load(Ordering::Relaxed)
                && conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_ok()
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn mkfifo(path: &Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn a_log_file_outside_the_nodes_log_dirs_is_refused_naming_the_setting_and_nothing_is_written() {
    let h = Hostile::new("hn-log");
    let before = h.snapshot();
    let target = h.path(&h.victim, "authorized_keys");
    let node_json = format!(
        "log_dirs in {}",
        h.settings.path().join("node.json").display()
    );
    // Every executable reads log_file: the IPAM ones from ipam, the others at the top.
    let wb = h.wb(json!({"log_file": target}));
    refused(
        &h.call("whereabouts", "ADD", &wb),
        7,
        &["log_file", &node_json],
    );
    let st = json!({"cniVersion": "1.1.0", "name": "hostile", "type": "static",
        "ipam": {"type": "static", "addresses": [{"address": "10.151.0.2/24"}], "log_file": target}});
    refused(&h.call("static", "ADD", &st), 7, &["log_file", &node_json]);
    let br = json!({"cniVersion": "1.1.0", "name": "hostile", "type": "bridge",
        "bridge": "hbr0", "log_file": target});
    refused(&h.call("bridge", "ADD", &br), 7, &["log_file", &node_json]);
    assert!(!h.node.has_link("hbr0"), "a refused ADD changed the node");
    let ovn = json!({"cniVersion": "1.1.0", "name": "hostile", "type": "ovn-overlay",
        "netAttachDefName": "ns/hostile", "log_file": target});
    refused(
        &h.call("ovn-overlay", "ADD", &ovn),
        7,
        &["log_file", &node_json],
    );
    // The flat file a NAD names is the node's, but its log_file is held to the same rule.
    let flat = h.allowed.join("flat/wb.conf");
    std::fs::write(
        &flat,
        json!({"log_file": target, "log_level": "debug"}).to_string(),
    )
    .unwrap();
    let via_flat = h.wb(json!({"configuration_path": flat}));
    refused(&h.call("whereabouts", "ADD", &via_flat), 7, &["log_file"]);
    // DEL never fails over where its log goes.
    assert!(h.call("whereabouts", "DEL", &wb).ok());
    assert_eq!(
        h.snapshot(),
        before,
        "a file outside the plugin's directories changed"
    );
    assert!(
        !h.allowed.join("stores/wb").join("format").exists(),
        "a refused ADD reserved"
    );

    // Does reach: a log file where the node allows one is made, 0600 whatever the umask.
    let umask0 = PluginDir::empty().with_script(
        "whereabouts",
        &format!("umask 000; exec {} \"$@\"", ours("whereabouts").display()),
    );
    let log = h.allowed.join("logs/new/wb.log");
    let ok = h.wb(json!({"log_file": log, "log_level": "debug"}));
    let out = h.call_with(&umask0.plugin("whereabouts"), &h.settings, "ADD", &ok);
    assert!(out.ok(), "{out}");
    let meta = std::fs::metadata(&log).expect("the log file is made");
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(
        std::fs::metadata(log.parent().unwrap()).unwrap().mode() & 0o777,
        0o700
    );
    assert!(h.call("whereabouts", "DEL", &ok).ok());
}

#[test]
fn a_planted_link_a_fifo_or_a_directory_others_can_write_on_the_way_to_a_log_is_refused() {
    let h = Hostile::new("hn-plant");
    let before = h.snapshot();
    let logs = h.allowed.join("logs");
    // A link planted by another user where the log file would be.
    let planted = logs.join("wb.log");
    symlink(h.victim.join("authorized_keys"), &planted).unwrap();
    std::os::unix::fs::lchown(&planted, Some(NOBODY), None).unwrap();
    let out = h.call("whereabouts", "ADD", &h.wb(json!({"log_file": planted})));
    refused(&out, 7, &["log_file", "symbolic link"]);
    // A directory on the way that others can write (where anyone could plant such a link).
    let open = logs.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, PermissionsExt::from_mode(0o777)).unwrap();
    let out = h.call(
        "whereabouts",
        "ADD",
        &h.wb(json!({"log_file": open.join("x.log")})),
    );
    refused(&out, 7, &["log_file", "can be written by others"]);
    // A FIFO answers at once instead of holding the call.
    let fifo = logs.join("fifo.log");
    mkfifo(&fifo);
    let start = Instant::now();
    let out = h.call("whereabouts", "ADD", &h.wb(json!({"log_file": fifo})));
    refused(&out, 7, &["log_file", "not a regular file"]);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(
        h.snapshot(),
        before,
        "a file outside the plugin's directories changed"
    );
}

#[test]
fn a_peers_answer_reaches_errors_and_logs_only_as_escaped_one_line_text() {
    let h = Hostile::new("hn-inject");
    let server = FakeServer::start(&h.node, Answer::Inject);
    // The node's own etcd answers with newlines and a line that is an ssh key.
    let node = NodeSettings::for_ipam(
        &json!({"datastore": "etcd", "etcd_endpoints": [server.url()],
        "etcd_request_timeout_ms": 2000}),
    );
    let log = h.allowed.join("logs/wb.log");
    node.write("node.json", &json!({"log_dirs": [h.allowed.join("logs")]}));
    let conf = h.wb(json!({"store_dir": null, "log_file": log, "log_level": "debug"}));
    let out = h.call_with(&ours("whereabouts"), &node, "ADD", &conf);
    assert!(server.accepted() >= 1, "the node's etcd was not asked");
    assert!(matches!(out.error_code(), Some(5 | 11)), "{out}");
    let msg = out.json()["msg"].as_str().unwrap_or_default().to_string();
    assert!(!msg.contains('\n') && msg.len() < 4096, "{msg:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("attacker@evil"),
        "the answer was logged: {text}"
    );
    for line in text.lines() {
        assert!(
            line.starts_with("20"),
            "a line that is not the plugin's: {line:?}"
        );
    }
}

#[test]
fn configuration_path_node_config_and_tls_files_cannot_read_the_nodes_files() {
    let h = Hostile::new("hn-read");
    let before = h.snapshot();
    let secret = h.path(&h.victim, "secret.json");
    let absent = h.path(&h.victim, "absent.json");
    // Outside the node's flat_file_dirs: refused before anything is read, so a file that is
    // there and one that is not get the same answer (no existence oracle).
    let read = |p: &str| {
        h.call(
            "whereabouts",
            "ADD",
            &h.wb(json!({"configuration_path": p})),
        )
    };
    let present = refused(
        &read(&secret),
        7,
        &["ipam.configuration_path", "flat_file_dirs"],
    );
    let missing = refused(
        &read(&absent),
        7,
        &["ipam.configuration_path", "flat_file_dirs"],
    );
    assert_eq!(
        present.replace("secret.json", "X"),
        missing.replace("absent.json", "X")
    );
    let start = Instant::now();
    refused(&read("/dev/zero"), 7, &["ipam.configuration_path"]);
    // Inside them: a FIFO answers at once, a huge file is refused, a secret is not repeated.
    let flat = h.allowed.join("flat");
    mkfifo(&flat.join("fifo.conf"));
    refused(
        &read(&h.path(&h.allowed, "flat/fifo.conf")),
        7,
        &["not a regular file"],
    );
    std::fs::write(flat.join("big.conf"), vec![b' '; (1 << 20) + 1]).unwrap();
    refused(
        &read(&h.path(&h.allowed, "flat/big.conf")),
        7,
        &["larger than"],
    );
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    let inner = flat.join("secret.json");
    std::fs::copy(h.victim.join("secret.json"), &inner).unwrap();
    refused(
        &read(&inner.display().to_string()),
        7,
        &["ipam.gateway", "not repeated"],
    );

    // nodeConfig names the node's settings file or nothing.
    let ovn = |p: &str| {
        let c = json!({"cniVersion": "1.1.0", "name": "hostile", "type": "ovn-overlay",
            "netAttachDefName": "ns/hostile", "nodeConfig": p});
        h.call("ovn-overlay", "ADD", &c)
    };
    let present = refused(&ovn(&secret), 7, &["nodeConfig", "ovn-node.json"]);
    let missing = refused(&ovn(&absent), 7, &["nodeConfig", "ovn-node.json"]);
    assert_eq!(
        present.replace("secret.json", "X"),
        missing.replace("absent.json", "X")
    );

    // etcd's TLS files are the node's: without its etcd, or naming another file, refused.
    let server = FakeServer::start(&h.node, Answer::Inject);
    let tls = h.wb(
        json!({"store_dir": null, "datastore": "etcd", "etcd_endpoints": [server.url()],
        "etcd_ca_cert_file": secret}),
    );
    refused(
        &h.call("whereabouts", "ADD", &tls),
        7,
        &["ipam.datastore \"etcd\"", "whereabouts.conf"],
    );
    let node =
        NodeSettings::for_ipam(&json!({"datastore": "etcd", "etcd_endpoints": [server.url()]}));
    let out = h.call_with(&ours("whereabouts"), &node, "ADD", &tls);
    refused(
        &out,
        7,
        &["ipam.etcd_ca_cert_file", "differs", "whereabouts.conf"],
    );
    assert_eq!(
        server.accepted(),
        0,
        "a refused configuration reached the server"
    );
    assert_eq!(
        h.snapshot(),
        before,
        "a file outside the plugin's directories changed"
    );
}

#[test]
fn store_dir_is_only_where_the_node_allows_and_never_through_a_planted_link() {
    let h = Hostile::new("hn-store");
    let before = h.snapshot();
    let add = |dir: &Path| h.call("whereabouts", "ADD", &h.wb(json!({"store_dir": dir})));
    let node_json = format!(
        "store_dirs in {}",
        h.settings.path().join("node.json").display()
    );
    refused(
        &add(&h.victim.join("store")),
        7,
        &["ipam.store_dir", &node_json],
    );
    // Links planted at the lock and temporary names in a directory others can write.
    let stores = h.allowed.join("stores");
    let open = stores.join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, PermissionsExt::from_mode(0o777)).unwrap();
    for name in ["format.lock", "format.tmp", "format"] {
        let l = open.join(name);
        symlink(h.victim.join("created-by-root"), &l).unwrap();
        std::os::unix::fs::lchown(&l, Some(NOBODY), None).unwrap();
    }
    refused(
        &add(&open),
        7,
        &["ipam.store_dir", "can be written by others"],
    );
    // A sticky directory others can write, holding a directory another user made.
    let sticky = stores.join("sticky");
    std::fs::create_dir(&sticky).unwrap();
    std::fs::set_permissions(&sticky, PermissionsExt::from_mode(0o1777)).unwrap();
    std::fs::create_dir(sticky.join("theirs")).unwrap();
    std::os::unix::fs::chown(sticky.join("theirs"), Some(NOBODY), None).unwrap();
    refused(
        &add(&sticky.join("theirs")),
        7,
        &["ipam.store_dir", "uid 65534"],
    );
    // DEL of what ADD refused succeeds and touches nothing there.
    assert!(h
        .call("whereabouts", "DEL", &h.wb(json!({"store_dir": open})))
        .ok());
    assert!(h
        .call(
            "whereabouts",
            "DEL",
            &h.wb(json!({"store_dir": h.victim.join("s")}))
        )
        .ok());
    assert_eq!(
        h.snapshot(),
        before,
        "a file outside the plugin's directories changed"
    );
    // Does reach: a store where the node allows one, made 0700, holding the reservation.
    let good = stores.join("good");
    let out = add(&good);
    assert_eq!(out.json()["ips"][0]["address"], "10.150.0.1/24", "{out}");
    assert_eq!(std::fs::metadata(&good).unwrap().mode() & 0o777, 0o700);
    let tool = ours("multihome-ipam").display().to_string();
    let list = h
        .node
        .run_ok(&[&tool, "--store-dir", &good.display().to_string(), "list"]);
    assert!(list.contains("10.150.0.1"), "{list}");
}

#[test]
fn requests_go_only_to_the_endpoints_the_node_names() {
    let h = Hostile::new("hn-net");
    let server = FakeServer::start(&h.node, Answer::Inject);
    let asks =
        h.wb(json!({"store_dir": null, "datastore": "etcd", "etcd_endpoints": [server.url()]}));
    // No etcd set on the node: refused, nothing dialled.
    refused(
        &h.call("whereabouts", "ADD", &asks),
        7,
        &["ipam.datastore \"etcd\""],
    );
    // The node's etcd is another: refused, naming both.
    let other = NodeSettings::for_ipam(&json!({"datastore": "etcd",
        "etcd_endpoints": ["http://127.0.0.1:9"]}));
    let out = h.call_with(&ours("whereabouts"), &other, "ADD", &asks);
    refused(
        &out,
        7,
        &["ipam.etcd_endpoints", "differs", "http://127.0.0.1:9"],
    );
    // whereabouts' `etcd_host` alone, naming the server: on a node with no etcd set it is
    // ignored, as whereabouts 0.6 and later ignore it, and the node's store is used.
    let legacy = h.wb(json!({"etcd_host": server.url()}));
    let out = h.call("whereabouts", "ADD", &legacy);
    assert_eq!(out.json()["ips"][0]["address"], "10.150.0.1/24", "{out}");
    let tool = ours("multihome-ipam").display().to_string();
    let store = h.allowed.join("stores/wb").display().to_string();
    let list = h.node.run_ok(&[&tool, "--store-dir", &store, "list"]);
    assert!(
        list.contains("10.150.0.1"),
        "in the node's file store: {list}"
    );
    assert!(h.call("whereabouts", "DEL", &legacy).ok());
    let list = h.node.run_ok(&[&tool, "--store-dir", &store, "list"]);
    assert!(!list.contains("10.150.0.1"), "released: {list}");
    // On a node whose etcd is another, it must name the node's.
    let out = h.call_with(&ours("whereabouts"), &other, "ADD", &legacy);
    refused(
        &out,
        7,
        &["ipam.etcd_host", "differs", "http://127.0.0.1:9"],
    );
    // The OVN databases likewise.
    for key in ["nbdb", "ovsdb"] {
        let c = json!({"cniVersion": "1.1.0", "name": "hostile", "type": "ovn-overlay",
            "netAttachDefName": "ns/hostile", key: format!("tcp:127.0.0.1:{}", server.port)});
        refused(&h.call("ovn-overlay", "ADD", &c), 7, &[key, "differs"]);
    }
    assert_eq!(
        server.accepted(),
        0,
        "a refused configuration reached the server"
    );
    // Does reach: the same server, named by the node, is asked.
    let node =
        NodeSettings::for_ipam(&json!({"datastore": "etcd", "etcd_endpoints": [server.url()]}));
    let out = h.call_with(&ours("whereabouts"), &node, "ADD", &asks);
    assert!(matches!(out.error_code(), Some(5 | 11)), "{out}");
    assert!(server.accepted() >= 1);
}

#[test]
fn a_peer_flooding_100_continue_is_cut_off_at_the_request_timeout() {
    let h = Hostile::new("hn-flood");
    let server = FakeServer::start(&h.node, Answer::Flood);
    let node = NodeSettings::for_ipam(
        &json!({"datastore": "etcd", "etcd_endpoints": [server.url()],
        "etcd_dial_timeout_ms": 1000, "etcd_request_timeout_ms": 1000}),
    );
    let start = Instant::now();
    let out = h.call_with(
        &ours("whereabouts"),
        &node,
        "ADD",
        &h.wb(json!({"store_dir": null})),
    );
    let took = start.elapsed();
    assert!(server.accepted() >= 1, "the flood server was not asked");
    assert!(matches!(out.error_code(), Some(5 | 11)), "{out}");
    // The request timeout bounds the call (a few requests' worth, never the flood's length).
    assert!(
        took < Duration::from_secs(8),
        "the call took {took:?} with a 1 s request timeout"
    );
}

#[test]
fn the_nodes_settings_must_be_roots_alone() {
    let h = Hostile::new("hn-strict");
    let node = NodeSettings::empty();
    node.write("node.json", &json!({"log_dirs": [h.allowed.join("logs")]}));
    let file = node.path().join("node.json");
    std::fs::set_permissions(&file, PermissionsExt::from_mode(0o666)).unwrap();
    let conf = h.wb(json!({"log_file": h.allowed.join("logs/x.log")}));
    let out = h.call_with(&ours("whereabouts"), &node, "ADD", &conf);
    refused(
        &out,
        7,
        &[&file.display().to_string(), "can be written by others"],
    );
    std::fs::set_permissions(&file, PermissionsExt::from_mode(0o644)).unwrap();
    std::os::unix::fs::chown(&file, Some(NOBODY), None).unwrap();
    let out = h.call_with(&ours("whereabouts"), &node, "ADD", &conf);
    refused(&out, 7, &[&file.display().to_string(), "not root"]);
    std::os::unix::fs::chown(&file, Some(0), None).unwrap();
    let out = h.call_with(&ours("whereabouts"), &node, "ADD", &conf);
    assert!(out.ok(), "{out}");
}
