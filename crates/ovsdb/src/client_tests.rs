//! The client against a scripted fake server on the other end of a `UnixStream::pair()`.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;
use crate::ops;

const NB: &str = "OVN_Northbound";
const UUID: &str = "0af044fa-94f0-473c-a962-9577cbfc8378";

/// The server's end: reads the client's messages with the crate's framer.
struct FakeServer {
    stream: UnixStream,
    framer: Framer,
}

impl FakeServer {
    fn recv(&mut self) -> Value {
        self.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        loop {
            if let Some(frame) = self.framer.next_frame().unwrap() {
                return serde_json::from_slice(&frame).unwrap();
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("client message");
            assert!(n > 0, "client closed the connection");
            self.framer.push(&chunk[..n]);
        }
    }

    fn send(&mut self, message: &Value) {
        self.send_raw(message.to_string().as_bytes());
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// Receives a request, checks its method, answers `result` under its id; returns the request.
    fn answer(&mut self, method: &str, result: Value) -> Value {
        let request = self.recv();
        assert_eq!(request["method"], method, "{request}");
        self.send(&json!({"id": request["id"], "result": result, "error": null}));
        request
    }
}

fn pair(timeout: Duration) -> (Client, FakeServer) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    let client = Client::from_stream(Stream::Unix(ours), "unix:/fake.sock".into(), timeout);
    let server = FakeServer {
        stream: theirs,
        framer: Framer::default(),
    };
    (client, server)
}

/// Runs `server` on its own thread while `client` runs here; returns what the client returned.
fn with_server<T>(
    timeout: Duration,
    server: impl FnOnce(&mut FakeServer) + Send,
    client: impl FnOnce(&mut Client) -> T,
) -> T {
    let (mut c, mut s) = pair(timeout);
    thread::scope(|scope| {
        let handle = scope.spawn(move || server(&mut s));
        let out = client(&mut c);
        handle.join().expect("fake server panicked");
        out
    })
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn transact_sends_db_then_operations_under_a_fresh_id() {
    let ops = vec![
        ops::insert("Logical_Switch", json!({"name": "blue"}), Some("sw")),
        ops::comment("multihome"),
    ];
    let results = with_server(
        secs(5),
        |s| {
            let request = s.answer("transact", json!([{"uuid": ["uuid", UUID]}, {}]));
            assert_eq!(
                request,
                json!({"method": "transact", "id": 0, "params": [NB,
                    {"op": "insert", "table": "Logical_Switch", "row": {"name": "blue"}, "uuid-name": "sw"},
                    {"op": "comment", "comment": "multihome"}]})
            );
            let second = s.answer("transact", json!([]));
            assert_eq!(second["id"], 1);
        },
        |c| {
            let first = c.transact(NB, &ops).unwrap();
            c.transact(NB, &[]).unwrap();
            first
        },
    );
    assert_eq!(results, vec![json!({"uuid": ["uuid", UUID]}), json!({})]);
}

#[test]
fn monitor_sends_db_id_and_requests_and_returns_the_initial_rows() {
    let requests = json!({"Logical_Switch": {"columns": ["name"]}});
    let initial = json!({"Logical_Switch": {UUID: {"new": {"name": "blue"}}}});
    let got = with_server(
        secs(5),
        |s| {
            let request = s.answer("monitor", initial.clone());
            assert_eq!(
                request,
                json!({"method": "monitor", "id": 0, "params": [NB, "mh-1", requests.clone()]})
            );
        },
        |c| c.monitor(NB, json!("mh-1"), requests.clone()).unwrap(),
    );
    assert_eq!(got, initial);
}

#[test]
fn echo_and_list_dbs_requests_are_rfc_shaped() {
    let dbs = with_server(
        secs(5),
        |s| {
            let echo = s.recv();
            assert_eq!(
                echo,
                json!({"method": "echo", "id": 0, "params": ["multihome"]})
            );
            s.send(&json!({"id": 0, "result": ["multihome"], "error": null}));
            let list = s.answer("list_dbs", json!([NB, "_Server"]));
            assert_eq!(list, json!({"method": "list_dbs", "id": 1, "params": []}));
            s.answer("get_schema", json!({"name": NB}));
        },
        |c| {
            c.echo().unwrap();
            let dbs = c.list_dbs().unwrap();
            assert_eq!(c.get_schema(NB).unwrap()["name"], NB);
            dbs
        },
    );
    assert_eq!(dbs, vec![NB.to_string(), "_Server".to_string()]);
}

#[test]
fn answers_the_servers_echo_while_waiting_for_a_reply() {
    let dbs = with_server(
        secs(5),
        |s| {
            let request = s.recv();
            s.send(&json!({"id": "echo", "method": "echo", "params": []}));
            assert_eq!(s.recv(), json!({"id": "echo", "result": [], "error": null}));
            s.send(&json!({"id": "echo", "method": "echo", "params": [7]}));
            assert_eq!(
                s.recv(),
                json!({"id": "echo", "result": [7], "error": null})
            );
            s.send(&json!({"id": request["id"], "result": [NB], "error": null}));
        },
        |c| c.list_dbs().unwrap(),
    );
    assert_eq!(dbs, vec![NB.to_string()]);
}

#[test]
fn answers_the_servers_echo_while_waiting_for_an_update() {
    let update = with_server(
        secs(5),
        |s| {
            s.send(&json!({"id": "echo", "method": "echo", "params": []}));
            assert_eq!(s.recv(), json!({"id": "echo", "result": [], "error": null}));
            s.send(&json!({"id": null, "method": "update", "params": ["m", {"T": {}}]}));
        },
        |c| c.next_update(secs(5)).unwrap(),
    );
    assert_eq!(update, Some((json!("m"), json!({"T": {}}))));
}

#[test]
fn queues_updates_that_arrive_while_a_request_waits() {
    let first = json!({"Logical_Switch": {UUID: {"new": {"name": "a"}}}});
    let second = json!({"Logical_Switch": {UUID: {"old": {"name": "a"}, "new": {"name": "b"}}}});
    let (mut c, mut s) = pair(secs(5));
    thread::scope(|scope| {
        scope.spawn(|| {
            let request = s.recv();
            s.send(&json!({"method": "update", "params": ["m", first], "id": null}));
            // A notification the client does not use must not disturb it.
            s.send(&json!({"method": "locked", "params": ["l"], "id": null}));
            s.send(&json!({"method": "update", "params": ["m", second], "id": null}));
            s.send(&json!({"id": request["id"], "result": [{"count": 1}], "error": null}));
        });
        let delete = ops::delete("Logical_Switch", json!([]));
        assert_eq!(
            c.transact(NB, &[delete]).unwrap(),
            vec![json!({"count": 1})]
        );
    });
    let started = Instant::now();
    assert_eq!(
        c.next_update(Duration::ZERO).unwrap(),
        Some((json!("m"), first))
    );
    assert_eq!(
        c.next_update(Duration::ZERO).unwrap(),
        Some((json!("m"), second))
    );
    assert!(started.elapsed() < Duration::from_millis(50));
    assert_eq!(c.next_update(Duration::from_millis(50)).unwrap(), None);
}

#[test]
fn monitor_cancel_drops_the_cancelled_monitors_queued_updates() {
    let (mut c, mut s) = pair(secs(5));
    thread::scope(|scope| {
        scope.spawn(|| {
            let request = s.recv();
            assert_eq!(request["params"], json!(["a"]));
            s.send(&json!({"method": "update", "params": ["a", {"T": {}}], "id": null}));
            s.send(&json!({"method": "update", "params": ["b", {"T": {}}], "id": null}));
            s.send(&json!({"id": request["id"], "result": {}, "error": null}));
        });
        c.monitor_cancel(json!("a")).unwrap();
    });
    assert_eq!(
        c.next_update(Duration::ZERO).unwrap(),
        Some((json!("b"), json!({"T": {}})))
    );
}

#[test]
fn an_operation_error_in_the_middle_names_its_index_and_op() {
    let ops = vec![
        ops::insert("Logical_Switch", json!({"name": "s3"}), None),
        ops::update("Logical_Switch", json!([]), json!({"nope": 1})),
        ops::comment("never reached"),
    ];
    let err = with_server(
        secs(5),
        |s| {
            s.answer(
                "transact",
                json!([{"uuid": ["uuid", UUID]},
                       {"error": "unknown column", "details": "No column nope in table Logical_Switch."},
                       null]),
            );
        },
        |c| c.transact(NB, &ops).unwrap_err(),
    );
    match err {
        Error::Op {
            index: 1,
            op,
            error,
            details,
        } => {
            assert_eq!((op.as_str(), error.as_str()), ("update", "unknown column"));
            assert_eq!(details, "No column nope in table Logical_Switch.");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_json_rpc_error_is_an_rpc_error_with_the_servers_object() {
    let server_error = json!({"error": "unknown database", "details": "get_schema request specifies unknown database Nope"});
    let err = with_server(
        secs(5),
        |s| {
            // ovsdb-server omits "result" in error replies.
            let request = s.recv();
            s.send(&json!({"id": request["id"], "error": server_error}));
        },
        |c| c.get_schema("Nope").unwrap_err(),
    );
    match &err {
        Error::Rpc { method, error } => {
            assert_eq!(method, "get_schema");
            assert_eq!(error, &server_error);
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_unavailable());
}

#[test]
fn reassembles_a_reply_split_across_many_reads() {
    let reply = json!({"id": 0, "error": null, "result": [{"rows": [
        {"name": "a}{\"][", "external_ids": ["map", [["k\\", "v\"}"]]]}]}]})
    .to_string();
    let rows = with_server(
        secs(5),
        |s| {
            s.recv();
            for piece in reply.as_bytes().chunks(7) {
                s.send_raw(piece);
                thread::sleep(Duration::from_millis(1));
            }
        },
        |c| c.transact(NB, &[ops::select("Logical_Switch", json!([]), None)]),
    );
    let row = &rows.unwrap()[0]["rows"][0];
    assert_eq!(row["name"], "a}{\"][");
    assert_eq!(
        crate::value::as_str_map(&row["external_ids"])["k\\"],
        "v\"}"
    );
}

#[test]
fn writes_a_request_larger_than_the_socket_buffer_completely() {
    // A few MiB: far beyond a unix socket's buffer, so the write is split and blocks until the
    // slow reader catches up.
    let big = "x".repeat(4 << 20);
    let row = json!({"name": "big", "external_ids": crate::value::str_map(&[("blob", &big)])});
    let ops = vec![ops::insert("Logical_Switch", row.clone(), None)];
    with_server(
        secs(10),
        |s| {
            thread::sleep(Duration::from_millis(100));
            let request = s.recv();
            assert_eq!(request["params"][1]["row"], row);
            s.send(
                &json!({"id": request["id"], "result": [{"uuid": ["uuid", UUID]}], "error": null}),
            );
        },
        |c| c.transact(NB, &ops).unwrap(),
    );
}

#[test]
fn a_reply_with_a_wrong_id_is_a_protocol_error() {
    let err = with_server(
        secs(5),
        |s| {
            s.recv();
            s.send(&json!({"id": 41, "result": [], "error": null}));
        },
        |c| c.list_dbs().unwrap_err(),
    );
    match &err {
        Error::Protocol { endpoint, what } => {
            assert_eq!(endpoint, "unix:/fake.sock");
            assert!(what.contains("unexpected id 41"), "{what}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bytes_that_are_not_json_rpc_are_a_protocol_error() {
    for junk in [
        &b"HTTP/1.1 400 Bad Request\r\n"[..],
        b"{\"id\":0,,}",
        b"[1]",
        b"{\"result\":1}",
    ] {
        let err = with_server(
            secs(5),
            |s| {
                s.recv();
                s.send_raw(junk);
            },
            |c| c.list_dbs().unwrap_err(),
        );
        assert!(matches!(err, Error::Protocol { .. }), "{err:?}");
    }
}

#[test]
fn a_request_without_reply_times_out_and_its_late_reply_is_dropped() {
    let (mut c, mut s) = pair(Duration::from_millis(200));
    let started = Instant::now();
    let err = c.list_dbs().unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(&err, Error::Timeout { what, .. } if what.contains("list_dbs (id 0)")));
    assert!(err.is_unavailable());
    assert!(
        waited >= Duration::from_millis(200) && waited < secs(2),
        "{waited:?}"
    );
    thread::scope(|scope| {
        scope.spawn(|| {
            let late = s.recv();
            s.send(&json!({"id": late["id"], "result": ["late"], "error": null}));
            s.answer("list_dbs", json!([NB]));
        });
        c.set_timeout(secs(5));
        assert_eq!(c.list_dbs().unwrap(), vec![NB.to_string()]);
    });
}

#[test]
fn next_update_returns_none_after_its_timeout() {
    let (mut c, _s) = pair(secs(5));
    let started = Instant::now();
    assert_eq!(c.next_update(Duration::from_millis(150)).unwrap(), None);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(150) && waited < secs(2),
        "{waited:?}"
    );
}

#[test]
fn a_closed_connection_is_an_io_error_not_a_hang() {
    let (mut c, s) = pair(secs(30));
    drop(s);
    let started = Instant::now();
    let err = c.list_dbs().unwrap_err();
    assert!(started.elapsed() < secs(5));
    assert!(err.is_unavailable(), "{err:?}");
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    assert!(matches!(c.next_update(secs(30)), Err(Error::Io { .. })));
}

#[test]
fn connect_takes_the_first_endpoint_that_answers_and_names_all_that_did_not() {
    let dir = std::env::temp_dir().join(format!("ovsdb-unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.sock");
    let _ = std::fs::remove_file(&good);
    let _listener = UnixListener::bind(&good).unwrap();
    let missing = dir.join("missing.sock");
    let list = format!("unix:{},unix:{}", missing.display(), good.display());

    let client = Client::connect(&list, secs(1)).unwrap();
    assert_eq!(client.endpoint(), format!("unix:{}", good.display()));

    let bad = format!(
        "unix:{}, unix:{}/other.sock",
        missing.display(),
        dir.display()
    );
    let err = Client::connect(&bad, secs(1)).unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(err.is_unavailable());
    let text = err.to_string();
    assert!(text.contains("missing.sock: No such file"), "{text}");
    assert!(text.contains("other.sock: No such file"), "{text}");

    let err = Client::connect("unix:/nonexistent/x.sock,pssl:127.0.0.1:6641", secs(1)).unwrap_err();
    assert!(
        matches!(err, Error::Endpoint { .. }) && !err.is_unavailable(),
        "{err:?}"
    );
}

#[test]
fn database_status_reads_the_servers_database_row() {
    let status = with_server(
        secs(5),
        |s| {
            let request = s.answer(
                "transact",
                json!([{"rows": [{"model": "clustered", "connected": false, "leader": false}]}]),
            );
            assert_eq!(
                request["params"],
                json!(["_Server", {"op": "select", "table": "Database",
                    "where": [["name", "==", NB]], "columns": ["model", "connected", "leader"]}])
            );
            s.answer("transact", json!([{"rows": []}]));
        },
        |c| {
            let status = c.database_status(NB).unwrap();
            let missing = c.database_status("Nope").unwrap_err();
            assert!(
                matches!(&missing, Error::Rpc { error, .. } if error["error"] == "unknown database")
            );
            status
        },
    );
    assert_eq!(
        status,
        crate::DatabaseStatus {
            model: "clustered".into(),
            connected: false,
            leader: false
        }
    );
    assert!(!status.is_connected_leader());
}
