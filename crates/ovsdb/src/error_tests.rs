use std::io;

use serde_json::json;

use super::*;

fn rpc(error: Value) -> Error {
    Error::Rpc {
        method: "transact".into(),
        error,
    }
}

#[test]
fn unreachable_silent_and_still_joining_databases_are_unavailable() {
    let io = Error::Io {
        endpoint: "unix:/run/ovn/ovnnb_db.sock".into(),
        source: io::ErrorKind::ConnectionRefused.into(),
    };
    let timeout = Error::Timeout {
        endpoint: "tcp:192.0.2.1:6641".into(),
        what: "transact (id 3) within 2s".into(),
    };
    // Verbatim from a clustered ovsdb-server 3.1 member before it joined.
    let joining = rpc(json!({"error": "database not available",
        "details": "transact request specifies database OVN_Northbound which is not yet available because it has not completed joining its cluster"}));
    for e in [&io, &timeout, &joining] {
        assert!(e.is_unavailable(), "{e:?}");
        assert!(!e.is_wait_failed(), "{e:?}");
    }
    assert!(!rpc(json!({"error": "unknown database"})).is_unavailable());
    assert!(!rpc(json!("unknown method")).is_unavailable());
}

#[test]
fn only_a_timed_out_wait_is_a_lost_race() {
    let op = |op: &str, error: &str| Error::Op {
        index: 0,
        op: op.into(),
        error: error.into(),
        details: String::new(),
    };
    assert!(op("wait", "timed out").is_wait_failed());
    assert!(!op("wait", "constraint violation").is_wait_failed());
    assert!(!op("commit", "timed out").is_wait_failed());
    assert!(!op("wait", "timed out").is_unavailable());
}

#[test]
fn messages_name_the_endpoint_and_the_failed_operation() {
    let io = Error::Io {
        endpoint: "unix:/run/ovn/ovnnb_db.sock".into(),
        source: io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ),
    };
    assert_eq!(
        io.to_string(),
        "cannot talk to OVSDB at unix:/run/ovn/ovnnb_db.sock: the server closed the connection"
    );
    let op = Error::Op {
        index: 2,
        op: "commit".into(),
        error: "constraint violation".into(),
        details: "Transaction causes multiple rows ...".into(),
    };
    assert_eq!(
        op.to_string(),
        "OVSDB transaction failed at operation 2 (commit): constraint violation: Transaction causes multiple rows ..."
    );
}
