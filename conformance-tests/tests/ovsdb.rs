//! The ovsdb client against a real ovsdb-server serving the OVN northbound schema: discovery,
//! insert and select, named-uuid references, optimistic concurrency with `wait`, operation and
//! commit errors, monitor updates, the server's inactivity probe, endpoint lists, a server that
//! stops answering or dies, a clustered database that loses its quorum, and tcp endpoints (IPv4
//! and IPv6) inside a test namespace.
//!
//! Every server is a child process of the test with its own temp dir, killed and reaped on drop
//! (also when an assertion fails). TCP listens only inside a namespace the test created.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use conformance_tests::{Netns, TempDir};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use ovsdb::{ops, value, Client, DatabaseStatus, Error};
use serde_json::{json, Value};

const NB: &str = "OVN_Northbound";
const NB_SCHEMA: &str = "/usr/share/ovn/ovn-nb.ovsschema";
const TIMEOUT: Duration = Duration::from_secs(2);
/// How long a fresh server may take to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// An ovsdb-server with a fresh NB database in its own temp dir, on `unix:<dir>/nb.sock`.
struct NbServer {
    child: Child,
    dir: TempDir,
}

impl NbServer {
    fn start(tag: &str) -> NbServer {
        NbServer::start_with(tag, None, &[], None)
    }

    /// `setup`: a transaction `ovsdb-tool` runs on the database file before the server starts;
    /// `remotes`: more `--remote` options; `netns`: where the server runs.
    fn start_with(
        tag: &str,
        setup: Option<Value>,
        remotes: &[String],
        netns: Option<&Netns>,
    ) -> NbServer {
        conformance_tests::require_root();
        let dir = TempDir::new(tag);
        let db = dir.join("nb.db").display().to_string();
        tool(&["create", &db, NB_SCHEMA]);
        if let Some(txn) = setup {
            tool(&["transact", &db, &txn.to_string()]);
        }
        NbServer::spawn(dir, remotes, netns)
    }

    /// Serves `<dir>/nb.db` (already created) on `unix:<dir>/nb.sock` and `remotes`.
    fn spawn(dir: TempDir, remotes: &[String], netns: Option<&Netns>) -> NbServer {
        NbServer::spawn_with_args(dir, remotes, netns, &[])
    }

    /// [`NbServer::spawn`] with more options (`--private-key`, ...).
    fn spawn_with_args(
        dir: TempDir,
        remotes: &[String],
        netns: Option<&Netns>,
        args: &[String],
    ) -> NbServer {
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns.name(), "ovsdb-server"]);
                c
            }
            None => Command::new("ovsdb-server"),
        };
        let path = |name: &str| dir.join(name).display().to_string();
        cmd.arg(format!("--remote=punix:{}", path("nb.sock")))
            .args(remotes.iter().map(|r| format!("--remote={r}")))
            .arg(format!("--unixctl={}", path("ctl")))
            .arg(format!("--pidfile={}", path("pid")))
            .arg("--no-chdir")
            .arg(format!("--log-file={}", path("log")))
            .args(args)
            .arg(path("nb.db"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = cmd
            .spawn()
            .expect("ovsdb-server (install openvswitch-switch)");
        // Owned from here on: a failed wait below still kills and reaps it.
        let mut server = NbServer { child, dir };
        server.wait_listening();
        server
    }

    fn wait_listening(&mut self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(mut c) = Client::connect(&self.endpoint(), TIMEOUT) {
                if c.list_dbs().is_ok() {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("ovsdb-server exited ({status}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "ovsdb-server not listening: {}",
                self.log()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn endpoint(&self) -> String {
        format!("unix:{}", self.dir.join("nb.sock").display())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn client(&self) -> Client {
        Client::connect(&self.endpoint(), TIMEOUT).expect("connect to the test's ovsdb-server")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    fn signal(&self, signal: Signal) {
        let pid = Pid::from_raw(i32::try_from(self.child.id()).expect("pid"));
        kill(pid, signal).expect("signal ovsdb-server");
    }

    /// Kills the server and waits until it is gone.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NbServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `ovsdb-tool`; panics unless it succeeds.
fn tool(args: &[&str]) {
    let out = Command::new("ovsdb-tool")
        .args(args)
        .output()
        .expect("ovsdb-tool (install openvswitch-common)");
    assert!(
        out.status.success(),
        "ovsdb-tool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn by_name(name: &str) -> Value {
    json!([ops::cond("name", "==", json!(name))])
}

/// The rows of `table` matching `where_`, read back from the server.
fn rows(c: &mut Client, table: &str, where_: Value) -> Vec<Value> {
    let results = c
        .transact(NB, &[ops::select(table, where_, None)])
        .expect("select");
    results[0]["rows"].as_array().cloned().expect("rows")
}

fn names(c: &mut Client, table: &str) -> Vec<String> {
    let mut names: Vec<String> = rows(c, table, json!([]))
        .iter()
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

fn insert_switch(c: &mut Client, name: &str, external_ids: &[(&str, &str)]) -> String {
    let row = json!({"name": name, "external_ids": value::str_map(external_ids)});
    let results = c
        .transact(NB, &[ops::insert("Logical_Switch", row, None)])
        .expect("insert switch");
    value::as_uuid(&results[0]["uuid"]).expect("uuid of the new switch")
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn lists_databases_serves_the_nb_schema_and_refuses_an_unknown_database() {
    let server = NbServer::start("ovsdb-dbs");
    let mut c = server.client();
    assert_eq!(c.endpoint(), server.endpoint());
    c.echo().unwrap();
    let dbs = c.list_dbs().unwrap();
    assert!(
        dbs.contains(&NB.to_string()) && dbs.contains(&"_Server".to_string()),
        "{dbs:?}"
    );
    let schema = c.get_schema(NB).unwrap();
    assert_eq!(schema["name"], NB);
    assert!(schema["tables"]["Logical_Switch"]["columns"]["external_ids"].is_object());
    assert_eq!(
        schema["tables"]["Logical_Switch_Port"]["indexes"],
        json!([["name"]])
    );
    match c.get_schema("Nope").unwrap_err() {
        Error::Rpc { method, error } => {
            assert_eq!(method, "get_schema");
            assert_eq!(error["error"], "unknown database");
        }
        other => panic!("{other:?}"),
    }
    // The connection is still usable after an RPC error.
    assert_eq!(c.list_dbs().unwrap(), dbs);
}

#[test]
fn inserts_a_switch_with_external_ids_and_reads_it_back() {
    let server = NbServer::start("ovsdb-insert");
    let mut c = server.client();
    let ids = [
        ("k8s.ovn.org/network", "blue"),
        ("k8s.ovn.org/topology", "layer2"),
    ];
    let uuid = insert_switch(&mut c, "blue_ovn_layer2_switch", &ids);

    let found = rows(&mut c, "Logical_Switch", by_name("blue_ovn_layer2_switch"));
    assert_eq!(found.len(), 1);
    assert_eq!(value::as_uuid(&found[0]["_uuid"]), Some(uuid.clone()));
    assert_eq!(value::as_str_map(&found[0]["external_ids"]), map(&ids));
    assert!(value::as_set(&found[0]["ports"]).is_empty());

    // A selection by a map entry finds it; the column subset is honoured.
    let by_network = json!([ops::cond(
        "external_ids",
        "includes",
        value::str_map(&[("k8s.ovn.org/network", "blue")])
    )]);
    let results = c
        .transact(
            NB,
            &[ops::select("Logical_Switch", by_network, Some(&["_uuid"]))],
        )
        .unwrap();
    assert_eq!(results[0]["rows"], json!([{"_uuid": ["uuid", uuid]}]));
}

#[test]
fn a_named_uuid_links_a_new_port_to_its_switch_in_one_transaction() {
    let server = NbServer::start("ovsdb-named");
    let mut c = server.client();
    insert_switch(&mut c, "sw0", &[]);

    let port = json!({"name": "ns1_pod1", "addresses": value::set(vec![json!("0a:58:0a:00:00:05 10.0.0.5")])});
    let add = ops::mutation("ports", "insert", value::set(vec![value::named_uuid("p")]));
    let results = c
        .transact(
            NB,
            &[
                ops::insert("Logical_Switch_Port", port, Some("p")),
                ops::mutate("Logical_Switch", by_name("sw0"), json!([add])),
            ],
        )
        .unwrap();
    let port_uuid = value::as_uuid(&results[0]["uuid"]).unwrap();
    assert_eq!(results[1], json!({"count": 1}));

    let switch = &rows(&mut c, "Logical_Switch", by_name("sw0"))[0];
    let ports: Vec<Option<String>> = value::as_set(&switch["ports"])
        .iter()
        .map(value::as_uuid)
        .collect();
    assert_eq!(ports, vec![Some(port_uuid.clone())]);
    let lsp = &rows(&mut c, "Logical_Switch_Port", by_name("ns1_pod1"))[0];
    assert_eq!(value::as_uuid(&lsp["_uuid"]), Some(port_uuid.clone()));
    assert_eq!(
        value::as_strings(&lsp["addresses"]),
        vec!["0a:58:0a:00:00:05 10.0.0.5"]
    );

    // OVN's own tool sees the same port on the same switch.
    let out = Command::new("ovn-nbctl")
        .args([&format!("--db={}", server.endpoint()), "lsp-list", "sw0"])
        .output()
        .expect("ovn-nbctl (install ovn-common)");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{port_uuid} (ns1_pod1)")
    );
}

#[test]
fn a_wait_on_a_row_another_client_changed_fails_the_whole_transaction() {
    let server = NbServer::start("ovsdb-wait");
    let mut a = server.client();
    let mut b = server.client();
    insert_switch(&mut a, "sw0", &[("owner", "a")]);
    let read = rows(&mut a, "Logical_Switch", by_name("sw0"));
    let seen = json!([{"external_ids": read[0]["external_ids"]}]);

    // b changes the row after a read it.
    let to_b = json!({"external_ids": value::str_map(&[("owner", "b")])});
    b.transact(NB, &[ops::update("Logical_Switch", by_name("sw0"), to_b)])
        .unwrap();

    let guarded = [
        ops::wait_eq("Logical_Switch", by_name("sw0"), &["external_ids"], seen),
        ops::update(
            "Logical_Switch",
            by_name("sw0"),
            json!({"other_config": value::str_map(&[("subnet", "10.0.0.0/24")])}),
        ),
        ops::insert("Logical_Switch", json!({"name": "sw1"}), None),
    ];
    let err = a.transact(NB, &guarded).unwrap_err();
    assert!(err.is_wait_failed(), "{err:?}");
    assert!(matches!(&err, Error::Op { index: 0, op, .. } if op == "wait"));

    // Nothing of a's transaction was applied; b's change stands.
    assert_eq!(names(&mut a, "Logical_Switch"), vec!["sw0"]);
    let now = &rows(&mut a, "Logical_Switch", by_name("sw0"))[0];
    assert_eq!(
        value::as_str_map(&now["external_ids"]),
        map(&[("owner", "b")])
    );
    assert!(value::as_str_map(&now["other_config"]).is_empty());

    // Read again, wait on what is there now: the same update goes through.
    let seen = json!([{"external_ids": now["external_ids"]}]);
    let mut retry = guarded.to_vec();
    retry[0] = ops::wait_eq("Logical_Switch", by_name("sw0"), &["external_ids"], seen);
    let results = a.transact(NB, &retry).unwrap();
    assert_eq!(results[0], json!({}));
    assert_eq!(names(&mut a, "Logical_Switch"), vec!["sw0", "sw1"]);
    let now = &rows(&mut a, "Logical_Switch", by_name("sw0"))[0];
    assert_eq!(
        value::as_str_map(&now["other_config"]),
        map(&[("subnet", "10.0.0.0/24")])
    );
}

#[test]
fn a_duplicate_port_name_fails_at_commit_and_an_unknown_column_at_its_operation() {
    let server = NbServer::start("ovsdb-errors");
    let mut c = server.client();
    insert_switch(&mut c, "sw0", &[]);
    let add_port = |name: &str| {
        let add = ops::mutation("ports", "insert", value::set(vec![value::named_uuid("p")]));
        vec![
            ops::insert("Logical_Switch_Port", json!({"name": name}), Some("p")),
            ops::mutate("Logical_Switch", by_name("sw0"), json!([add])),
        ]
    };
    c.transact(NB, &add_port("p1")).unwrap();

    // Logical_Switch_Port.name is an index: the violation is found at commit, after the last op.
    let mut dup = add_port("p1");
    dup.push(ops::insert(
        "Logical_Switch",
        json!({"name": "sw-extra"}),
        None,
    ));
    match c.transact(NB, &dup).unwrap_err() {
        Error::Op {
            index,
            op,
            error,
            details,
        } => {
            assert_eq!((index, op.as_str()), (3, "commit"));
            assert_eq!(error, "constraint violation");
            assert!(details.contains("index on column \"name\""), "{details}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(names(&mut c, "Logical_Switch"), vec!["sw0"]);
    assert_eq!(names(&mut c, "Logical_Switch_Port"), vec!["p1"]);

    // An operation that cannot run fails at its own index; the insert before it is undone.
    let bad = [
        ops::insert("Logical_Switch", json!({"name": "sw-extra"}), None),
        ops::update("Logical_Switch", by_name("sw0"), json!({"nope": 1})),
    ];
    match c.transact(NB, &bad).unwrap_err() {
        Error::Op {
            index, op, error, ..
        } => assert_eq!(
            (index, op.as_str(), error.as_str()),
            (1, "update", "unknown column")
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(names(&mut c, "Logical_Switch"), vec!["sw0"]);
}

#[test]
fn a_monitor_receives_the_row_another_client_inserts() {
    let server = NbServer::start("ovsdb-monitor");
    let mut watcher = server.client();
    let mut writer = server.client();
    let first = insert_switch(&mut writer, "sw0", &[]);

    let requests = json!({"Logical_Switch": {"columns": ["name", "external_ids"]}});
    let initial = watcher.monitor(NB, json!("mh"), requests).unwrap();
    assert_eq!(
        initial["Logical_Switch"][&first]["new"]["name"], "sw0",
        "{initial}"
    );
    assert_eq!(
        watcher.next_update(Duration::from_millis(100)).unwrap(),
        None
    );

    let second = insert_switch(&mut writer, "sw1", &[("k", "v")]);
    let (id, updates) = watcher
        .next_update(Duration::from_secs(5))
        .unwrap()
        .expect("an update within 5 s");
    assert_eq!(id, json!("mh"));
    let new = &updates["Logical_Switch"][&second]["new"];
    assert_eq!(new["name"], "sw1");
    assert_eq!(value::as_str_map(&new["external_ids"]), map(&[("k", "v")]));

    // An update that arrives around a request is not lost: either queued while the select
    // waited for its reply or read afterwards.
    let third = insert_switch(&mut writer, "sw2", &[]);
    assert_eq!(
        names(&mut watcher, "Logical_Switch"),
        vec!["sw0", "sw1", "sw2"]
    );
    let (_, updates) = watcher
        .next_update(Duration::from_secs(5))
        .unwrap()
        .expect("the third update");
    assert_eq!(updates["Logical_Switch"][&third]["new"]["name"], "sw2");
}

#[test]
fn the_servers_inactivity_probe_is_answered_so_an_idle_monitor_survives() {
    // A remote configured in the database with a 1 s inactivity probe: the server sends `echo`
    // after 1 s of silence and disconnects a peer that does not answer within another second.
    let probe_dir = TempDir::new("ovsdb-probe-sock");
    let probe_sock = probe_dir.join("probe.sock");
    let setup = json!([NB,
        {"op": "insert", "table": "Connection", "uuid-name": "c",
         "row": {"target": format!("punix:{}", probe_sock.display()), "inactivity_probe": 1000}},
        {"op": "insert", "table": "NB_Global", "row": {"connections": ["named-uuid", "c"]}}]);
    let remotes = [format!("db:{NB},NB_Global,connections")];
    let server = NbServer::start_with("ovsdb-probe", Some(setup), &remotes, None);
    let endpoint = format!("unix:{}", probe_sock.display());

    // Control: a peer that never answers is dropped, after the server asked.
    let mut silent = UnixStream::connect(&probe_sock).expect("probe remote listening");
    silent
        .set_read_timeout(Some(Duration::from_secs(6)))
        .unwrap();
    let mut heard = Vec::new();
    let _ = silent.read_to_end(&mut heard);
    let heard = String::from_utf8_lossy(&heard);
    assert!(heard.contains(r#""method":"echo""#), "{heard}");

    let mut watcher = Client::connect(&endpoint, TIMEOUT).unwrap();
    watcher
        .monitor(
            NB,
            json!(1),
            json!({"Logical_Switch": {"columns": ["name"]}}),
        )
        .unwrap();
    // Idle for 3.5 probe intervals, only reading.
    assert_eq!(
        watcher.next_update(Duration::from_millis(3500)).unwrap(),
        None
    );
    let uuid = insert_switch(&mut server.client(), "sw0", &[]);
    let (_, updates) = watcher
        .next_update(Duration::from_secs(5))
        .unwrap()
        .expect("the monitor is still connected");
    assert_eq!(updates["Logical_Switch"][&uuid]["new"]["name"], "sw0");
    watcher.echo().unwrap();
    let log = server.log();
    assert_eq!(
        log.matches("no response to inactivity probe").count(),
        1,
        "only the silent control peer was dropped: {log}"
    );
}

#[test]
fn connect_skips_missing_and_stale_sockets_and_takes_the_first_live_one() {
    let server = NbServer::start("ovsdb-list");
    let stale = server.path("stale.sock");
    drop(UnixListener::bind(&stale).unwrap()); // the file stays, nobody listens: ECONNREFUSED
    let list = format!(
        "unix:/nonexistent/nb.sock, unix:{}, {}",
        stale.display(),
        server.endpoint()
    );
    let mut c = Client::connect(&list, TIMEOUT).unwrap();
    assert_eq!(c.endpoint(), server.endpoint());
    insert_switch(&mut c, "sw0", &[]);
    assert_eq!(names(&mut server.client(), "Logical_Switch"), vec!["sw0"]);
}

#[test]
fn connect_with_only_unreachable_endpoints_is_unavailable_and_names_each() {
    let dir = TempDir::new("ovsdb-unreachable");
    let stale = dir.join("stale.sock");
    drop(UnixListener::bind(&stale).unwrap());
    let list = format!("unix:/nonexistent/nb.sock,unix:{}", stale.display());
    let started = Instant::now();
    let err = Client::connect(&list, TIMEOUT).unwrap_err();
    assert!(started.elapsed() < TIMEOUT);
    assert!(err.is_unavailable(), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("unix:/nonexistent/nb.sock: No such file or directory"),
        "{text}"
    );
    assert!(text.contains("stale.sock: Connection refused"), "{text}");
}

#[test]
fn a_server_that_stops_answering_or_dies_gives_an_error_within_the_timeout() {
    let mut server = NbServer::start("ovsdb-dies");
    let mut c = server.client();
    c.monitor(
        NB,
        json!("m"),
        json!({"Logical_Switch": {"columns": ["name"]}}),
    )
    .unwrap();
    let uuid = insert_switch(&mut c, "sw0", &[]);
    let (_, updates) = c.next_update(TIMEOUT).unwrap().expect("update of sw0");
    assert_eq!(updates["Logical_Switch"][&uuid]["new"]["name"], "sw0");

    // Frozen: the socket stays open, nothing answers.
    server.signal(Signal::SIGSTOP);
    let started = Instant::now();
    let err = c.list_dbs().unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(err.is_unavailable());
    assert!(waited >= TIMEOUT && waited < TIMEOUT * 2, "{waited:?}");

    // Dead: the connection is closed.
    server.kill();
    let started = Instant::now();
    let err = c
        .transact(NB, &[ops::select("Logical_Switch", json!([]), None)])
        .unwrap_err();
    assert!(started.elapsed() < TIMEOUT, "{:?}", started.elapsed());
    assert!(err.is_unavailable(), "{err:?}");
    let started = Instant::now();
    assert!(c.next_update(Duration::from_secs(30)).is_err());
    assert!(started.elapsed() < TIMEOUT, "{:?}", started.elapsed());
    let err = Client::connect(&server.endpoint(), TIMEOUT).unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
}

#[test]
fn a_cluster_follower_forwards_writes_and_without_quorum_times_out_but_serves_stale_reads() {
    let mut members = start_cluster("ovsdb-raft");
    let joined = Duration::from_secs(15);
    let statuses: Vec<DatabaseStatus> = members
        .iter()
        .map(|m| status_becomes(m, |s| s.connected, joined))
        .collect();
    assert!(
        statuses.iter().all(|s| s.model == "clustered"),
        "{statuses:?}"
    );
    let leaders: Vec<usize> = (0..3).filter(|&i| statuses[i].leader).collect();
    assert_eq!(leaders.len(), 1, "{statuses:?}");
    let leader = leaders[0];
    let follower = (leader + 1) % 3;
    let other = (leader + 2) % 3;

    // A write sent to a follower is committed through the leader.
    let mut via_follower = members[follower].client();
    let uuid = insert_switch(&mut via_follower, "via-follower", &[]);
    let at_leader = rows(
        &mut members[leader].client(),
        "Logical_Switch",
        by_name("via-follower"),
    );
    assert_eq!(value::as_uuid(&at_leader[0]["_uuid"]), Some(uuid));

    // The follower alone: no quorum. Writes never commit: the client times out, not hangs.
    members[leader].kill();
    members[other].kill();
    let alone = status_becomes(
        &members[follower],
        |s| !s.connected,
        Duration::from_secs(10),
    );
    assert!(!alone.is_connected_leader());
    let started = Instant::now();
    let err = via_follower
        .transact(
            NB,
            &[ops::insert("Logical_Switch", json!({"name": "lost"}), None)],
        )
        .unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err:?}");
    assert!(started.elapsed() < TIMEOUT * 2, "{:?}", started.elapsed());
    // Reads are still served, from the follower's possibly stale copy.
    assert_eq!(
        names(&mut members[follower].client(), "Logical_Switch"),
        vec!["via-follower"]
    );
}

#[test]
fn a_standalone_database_reports_itself_connected_leader() {
    let server = NbServer::start("ovsdb-standalone");
    let mut c = server.client();
    let status = c.database_status(NB).unwrap();
    assert_eq!(
        status,
        DatabaseStatus {
            model: "standalone".into(),
            connected: true,
            leader: true
        }
    );
    assert!(matches!(c.database_status("Nope"), Err(Error::Rpc { .. })));
}

#[test]
fn tcp_endpoints_inside_a_namespace_reach_the_same_database_over_ipv4_and_ipv6() {
    let ns = Netns::new("ovsdb-tcp");
    let remotes = [
        "ptcp:6641:127.0.0.1".to_string(),
        "ptcp:6642:[::1]".to_string(),
    ];
    let server = NbServer::start_with("ovsdb-tcp", None, &remotes, Some(&ns));
    let inside = netns::NetNs::open(ns.path()).expect("open the test namespace");

    let (endpoint, v4_uuid, seen_over_v6) = inside
        .run(|| {
            // Nothing listens on port 1: refused at once, the next entry is taken.
            let mut v4 = connect_within(
                "tcp:127.0.0.1:1,tcp:127.0.0.1:6641",
                Duration::from_secs(10),
            );
            let uuid = insert_switch(&mut v4, "over-tcp", &[("via", "ipv4")]);
            let mut v6 = Client::connect("tcp:[::1]:6642", TIMEOUT).expect("tcp:[::1]:6642");
            let seen = rows(&mut v6, "Logical_Switch", by_name("over-tcp"));
            (v4.endpoint().to_string(), uuid, seen)
        })
        .expect("enter the test namespace");
    assert_eq!(endpoint, "tcp:127.0.0.1:6641");
    assert_eq!(
        value::as_uuid(&seen_over_v6[0]["_uuid"]),
        Some(v4_uuid.clone())
    );

    // The root namespace has no such listener; the unix socket reaches the same database.
    let mut local = server.client();
    let found = rows(&mut local, "Logical_Switch", by_name("over-tcp"));
    assert_eq!(value::as_uuid(&found[0]["_uuid"]), Some(v4_uuid));
    assert_eq!(
        value::as_str_map(&found[0]["external_ids"]),
        map(&[("via", "ipv4")])
    );
}

#[test]
fn an_ssl_endpoint_speaks_tls_with_the_ca_the_certificate_and_the_key_and_refuses_another_ca() {
    let pki = conformance_tests::etcd::TestPki::generate();
    let ns = Netns::new("ovsdb-ssl");
    let dir = TempDir::new("ovsdb-ssl");
    let db = dir.join("nb.db").display().to_string();
    tool(&["create", &db, NB_SCHEMA]);
    let args = [
        format!("--private-key={}", pki.server_key.display()),
        format!("--certificate={}", pki.server_cert.display()),
        format!("--ca-cert={}", pki.ca.display()),
    ];
    let server =
        NbServer::spawn_with_args(dir, &["pssl:6640:127.0.0.1".to_string()], Some(&ns), &args);
    let read = |p: &std::path::Path| std::fs::read(p).unwrap();
    let tls = |ca: &std::path::Path| {
        ovsdb::TlsConfig::from_pem(&read(ca), &read(&pki.client_cert), &read(&pki.client_key))
            .unwrap()
    };
    let (good, other) = (tls(&pki.ca), tls(&pki.other_ca));
    let inside = netns::NetNs::open(ns.path()).expect("open the test namespace");
    let (dbs, wrong_ca, plain, no_tls) = inside
        .run(move || {
            let deadline = Instant::now() + START_TIMEOUT;
            let mut c = loop {
                match Client::connect_tls("ssl:127.0.0.1:6640", TIMEOUT, Some(&good)) {
                    Ok(c) => break c,
                    Err(e) if Instant::now() > deadline => panic!("ssl:127.0.0.1:6640: {e}"),
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            };
            let uuid = insert_switch(&mut c, "over-tls", &[]);
            let dbs = (c.list_dbs().unwrap(), uuid);
            let wrong = Client::connect_tls("ssl:127.0.0.1:6640", TIMEOUT, Some(&other));
            // Plain TCP to the TLS port gets no answer it can read; ssl: without a
            // configuration is refused before anything is sent.
            let plain =
                Client::connect("tcp:127.0.0.1:6640", TIMEOUT).and_then(|mut c| c.list_dbs());
            let no_tls = Client::connect("ssl:127.0.0.1:6640", TIMEOUT);
            (dbs, wrong.err(), plain.err(), no_tls.err())
        })
        .expect("enter the test namespace");
    assert!(dbs.0.contains(&NB.to_string()), "{:?}", dbs.0);
    let mut local = server.client();
    let found = rows(&mut local, "Logical_Switch", by_name("over-tls"));
    assert_eq!(value::as_uuid(&found[0]["_uuid"]), Some(dbs.1));
    assert!(
        matches!(&wrong_ca, Some(Error::Tls { what, .. }) if what.contains("UnknownIssuer") || what.contains("certificate")),
        "{wrong_ca:?}"
    );
    assert!(plain.is_some(), "plain TCP was answered by the TLS port");
    assert!(no_tls.is_some_and(|e| e.to_string().contains("CA certificate")));
}

/// A three-member NB cluster whose members talk raft over TCP, each in a namespace of its own
/// cabled to a hub bridge, so that one can be cut off (its cable down) while clients still reach
/// it on its unix socket: a partitioned member, as a real network makes one.
struct TcpCluster {
    members: Vec<NbServer>,
    hub: Netns,
    _ns: Vec<Netns>,
}

impl TcpCluster {
    fn start(tag: &str) -> TcpCluster {
        conformance_tests::require_root();
        let hub = Netns::new(&format!("{tag}-hub"));
        hub.run_ok(&["ip", "link", "add", "rb", "type", "bridge"]);
        hub.run_ok(&["ip", "link", "set", "rb", "up"]);
        let ns: Vec<Netns> = (0..3).map(|i| Netns::new(&format!("{tag}-m{i}"))).collect();
        for (i, m) in ns.iter().enumerate() {
            let (outer, inner) = (format!("h{i}"), format!("r{i}"));
            hub.run_ok(&[
                "ip", "link", "add", &outer, "type", "veth", "peer", "name", &inner,
            ]);
            hub.run_ok(&["ip", "link", "set", &inner, "netns", m.name()]);
            hub.run_ok(&["ip", "link", "set", &outer, "master", "rb", "up"]);
            let addr = format!("172.30.9.{}/24", i + 1);
            m.run_ok(&["ip", "addr", "add", &addr, "dev", &inner]);
            m.run_ok(&["ip", "link", "set", &inner, "up"]);
        }
        let dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new(tag)).collect();
        let db = |i: usize| dirs[i].join("nb.db").display().to_string();
        let raft = |i: usize| format!("tcp:172.30.9.{}:6643", i + 1);
        tool(&["create-cluster", &db(0), NB_SCHEMA, &raft(0)]);
        for i in 1..3 {
            tool(&["join-cluster", &db(i), NB, &raft(i), &raft(0)]);
        }
        let mut members = Vec::new();
        for (i, dir) in dirs.into_iter().enumerate() {
            members.push(NbServer::spawn(dir, &[], Some(&ns[i])));
        }
        TcpCluster {
            members,
            hub,
            _ns: ns,
        }
    }

    /// Cuts member `i` off from the others (`up`: cables it again).
    fn cable(&self, i: usize, up: bool) {
        let state = if up { "up" } else { "down" };
        self.hub
            .run_ok(&["ip", "link", "set", &format!("h{i}"), state]);
    }

    fn endpoints(&self, order: &[usize]) -> String {
        let list: Vec<String> = order.iter().map(|&i| self.members[i].endpoint()).collect();
        list.join(",")
    }

    /// The member every connected member names leader, once there is one.
    fn leader(&self, among: &[usize], within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let leaders: Vec<usize> = among
                .iter()
                .copied()
                .filter(|&i| {
                    Client::connect(&self.members[i].endpoint(), TIMEOUT)
                        .and_then(|mut c| c.database_status(NB))
                        .is_ok_and(|s| s.is_connected_leader())
                })
                .collect();
            if leaders.len() == 1 {
                return leaders[0];
            }
            assert!(
                Instant::now() < deadline,
                "no single leader among {among:?}: {leaders:?}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn the_nb_client_writes_through_the_leader_past_a_partitioned_follower_and_a_killed_leader() {
    let mut cluster = TcpCluster::start("ovsdb-part");
    for m in &cluster.members {
        status_becomes(m, |s| s.connected, Duration::from_secs(20));
    }
    let leader = cluster.leader(&[0, 1, 2], Duration::from_secs(20));
    let (cut, other) = ((leader + 1) % 3, (leader + 2) % 3);
    cluster.cable(cut, false);
    status_becomes(
        &cluster.members[cut],
        |s| !s.connected,
        Duration::from_secs(20),
    );
    // The partitioned follower first in the list, as a node may have it.
    let list = cluster.endpoints(&[cut, other, leader]);
    // What the first endpoint that connects gives: a write that never commits.
    let mut first = Client::connect(&list, TIMEOUT).unwrap();
    assert_eq!(first.endpoint(), cluster.members[cut].endpoint());
    let lost = first.transact(
        NB,
        &[ops::insert("Logical_Switch", json!({"name": "lost"}), None)],
    );
    assert!(matches!(lost, Err(Error::Timeout { .. })), "{lost:?}");
    // The leader is chosen and the write commits.
    let mut c = Client::connect_leader(&list, NB, Duration::from_secs(10), None).unwrap();
    assert_eq!(c.endpoint(), cluster.members[leader].endpoint());
    insert_switch(&mut c, "through-the-leader", &[]);
    assert!(
        names(&mut cluster.members[other].client(), "Logical_Switch")
            .contains(&"through-the-leader".to_string())
    );

    // Cabled again, then the leader killed: the client waits for the election and finds the
    // new leader among the two left.
    cluster.cable(cut, true);
    status_becomes(
        &cluster.members[cut],
        |s| s.connected,
        Duration::from_secs(20),
    );
    cluster.members[leader].kill();
    let mut c = Client::connect_leader(&list, NB, Duration::from_secs(20), None).unwrap();
    let new_leader = cluster.leader(&[cut, other], Duration::from_secs(20));
    assert_eq!(c.endpoint(), cluster.members[new_leader].endpoint());
    insert_switch(&mut c, "after-the-election", &[]);
    let seen = names(&mut cluster.members[cut].client(), "Logical_Switch");
    assert!(seen.contains(&"after-the-election".to_string()), "{seen:?}");

    // No member answers: an error naming each, at once rather than at the timeout.
    for i in [cut, other] {
        cluster.members[i].kill();
    }
    let started = Instant::now();
    let err = Client::connect_leader(&list, NB, Duration::from_secs(20), None).unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// A three-member clustered NB database, each member its own ovsdb-server and temp dir; the
/// members talk raft over unix sockets.
fn start_cluster(tag: &str) -> Vec<NbServer> {
    conformance_tests::require_root();
    let dirs: Vec<TempDir> = (0..3).map(|_| TempDir::new(tag)).collect();
    let db = |i: usize| dirs[i].join("nb.db").display().to_string();
    let raft = |i: usize| format!("unix:{}", dirs[i].join("raft.sock").display());
    tool(&["create-cluster", &db(0), NB_SCHEMA, &raft(0)]);
    for i in 1..3 {
        tool(&["join-cluster", &db(i), NB, &raft(i), &raft(0)]);
    }
    // Pushed one by one: if a member fails to start, the ones already running are dropped.
    let mut members = Vec::new();
    for dir in dirs {
        members.push(NbServer::spawn(dir, &[], None));
    }
    members
}

/// Polls `member`'s view of the NB database until `want` holds. Reconnects when dropped: a
/// member that joins a cluster drops its clients when the leader's snapshot (and so the schema)
/// arrives, unless they sent `set_db_change_aware`.
fn status_becomes(
    member: &NbServer,
    want: impl Fn(&DatabaseStatus) -> bool,
    within: Duration,
) -> DatabaseStatus {
    let deadline = Instant::now() + within;
    let mut c = member.client();
    loop {
        match c.database_status(NB) {
            Ok(status) if want(&status) => return status,
            Ok(status) => assert!(
                Instant::now() < deadline,
                "{} stays {status:?}",
                member.endpoint()
            ),
            Err(e) if e.is_unavailable() && Instant::now() < deadline => c = member.client(),
            Err(e) => panic!("{}: {e}", member.endpoint()),
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Connects, retrying while the server's tcp listeners come up.
fn connect_within(endpoints: &str, within: Duration) -> Client {
    let deadline = Instant::now() + within;
    loop {
        match Client::connect(endpoints, TIMEOUT) {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => panic!("{endpoints}: {e}"),
            Err(_) => thread::sleep(Duration::from_millis(20)),
        }
    }
}
