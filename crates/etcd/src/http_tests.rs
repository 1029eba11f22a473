//! The gateway client against a fake etcd on a socket pair (no port is opened anywhere): HTTP
//! framing, the JSON of the v3 gateway (base64, int64 strings, omitted defaults), chunked error
//! answers, keep-alive, authentication, timeouts.

use std::io::Cursor;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;
use crate::fake::{b64, etcd_error, fake, ok, soon};
use crate::json::{
    prefix_end, Compare, RangeRequest, RangeResponse, Txn, TxnOp, TxnResponse, RANGE, TXN,
};

fn parse(raw: &[u8]) -> Response {
    read_response(&mut Cursor::new(raw.to_vec())).expect("an answer")
}

// ---- HTTP framing ----

#[test]
fn a_request_is_one_post_with_content_length_and_the_given_headers() {
    let mut out = Vec::new();
    write_request(
        &mut out,
        "127.0.0.1:2379",
        "/v3/kv/range",
        &[("Authorization", "tok.1")],
        br#"{"key":"Zm9v"}"#,
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "POST /v3/kv/range HTTP/1.1\r\nHost: 127.0.0.1:2379\r\nContent-Type: application/json\r\n\
         Accept: application/json\r\nContent-Length: 14\r\nAuthorization: tok.1\r\n\r\n\
         {\"key\":\"Zm9v\"}"
    );
}

#[test]
fn content_length_answers_keep_the_connection_and_leave_the_next_answer_unread() {
    let two = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}\
HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nnull";
    let mut r = Cursor::new(two.to_vec());
    let first = read_response(&mut r).unwrap();
    assert_eq!(
        (first.status, &first.body[..], first.keep_alive),
        (200, &b"{}"[..], true)
    );
    let second = read_response(&mut r).unwrap();
    assert_eq!(second.body, b"null");
}

#[test]
fn chunked_answers_with_extensions_and_trailers_are_reassembled() {
    // etcd's error answers: chunked, with a gRPC trailer after the last chunk.
    let pieces = [
        r#"{"error":"etcdserver: no "#,
        r#"leader","message":"etcdserver: no leader"#,
        r#"","code":14}"#,
    ];
    let mut raw = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
Trailer: Grpc-Trailer-Content-Type\r\nTransfer-Encoding: chunked\r\n\r\n"
        .to_vec();
    for (i, p) in pieces.iter().enumerate() {
        let ext = if i == 0 { ";ext=1" } else { "" };
        raw.extend(format!("{:x}{ext}\r\n{p}\r\n", p.len()).bytes());
    }
    raw.extend(b"0\r\nGrpc-Trailer-Content-Type: application/grpc\r\n\r\nHTTP/1.1");
    let mut r = Cursor::new(raw.to_vec());
    let resp = read_response(&mut r).unwrap();
    assert_eq!(resp.status, 503);
    assert!(resp.keep_alive);
    let body: Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(body["code"], 14);
    assert_eq!(body["message"], "etcdserver: no leader");
    let mut rest = String::new();
    r.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "HTTP/1.1", "the trailers are consumed, nothing more");
}

#[test]
fn connection_close_http_1_0_and_bodies_up_to_the_end_do_not_keep_the_connection() {
    let close = parse(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}");
    assert!(!close.keep_alive);
    let old = parse(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}");
    assert!(!old.keep_alive);
    let to_end =
        parse(b"HTTP/1.1 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n");
    assert!(!to_end.keep_alive);
    assert_eq!(
        to_end.body,
        b"Client sent an HTTP request to an HTTPS server.\n"
    );
    let interim = parse(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n");
    assert_eq!((interim.status, interim.body.len()), (204, 0));
}

#[test]
fn truncated_or_garbled_answers_are_errors_never_partial_bodies() {
    let short = read_response(&mut Cursor::new(
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}".to_vec(),
    ));
    assert!(
        matches!(&short, Err(HttpError::Io(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof),
        "{short:?}"
    );
    let bad_chunk = read_response(&mut Cursor::new(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
    ));
    assert!(
        matches!(bad_chunk, Err(HttpError::Malformed(_))),
        "{bad_chunk:?}"
    );
    let overlong_chunk = read_response(&mut Cursor::new(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}x\r\n0\r\n\r\n".to_vec(),
    ));
    assert!(matches!(overlong_chunk, Err(HttpError::Malformed(_))));
    let not_http = read_response(&mut Cursor::new(b"\x15\x03\x01\x00\x02\x02\x0a\n".to_vec()));
    assert!(matches!(not_http, Err(HttpError::Malformed(_))));
    let gzip = read_response(&mut Cursor::new(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(),
    ));
    assert!(matches!(gzip, Err(HttpError::Malformed(_))));
    let eof = read_response(&mut Cursor::new(Vec::new()));
    assert!(matches!(eof, Err(HttpError::Io(_))));
}

#[test]
fn endpoints_parse_with_default_port_ipv6_and_scheme() {
    let e = Endpoint::parse("https://[fd00::1]:2379/").unwrap();
    assert_eq!((e.https, e.host.as_str(), e.port), (true, "fd00::1", 2379));
    assert_eq!(e.authority(), "[fd00::1]:2379");
    let e = Endpoint::parse("http://etcd.example").unwrap();
    assert_eq!((e.https, e.port), (false, DEFAULT_PORT));
    assert_eq!(Endpoint::parse("10.0.0.1:2380").unwrap().port, 2380);
    assert!(Endpoint::parse("ftp://x:1").is_err());
    assert!(Endpoint::parse("http://x:port").is_err());
    assert!(Endpoint::parse("http://:1").is_err());
}

// ---- JSON ----

#[test]
fn requests_are_base64_with_int64_strings_and_without_default_fields() {
    let txn = Txn::new()
        .when([Compare::create_revision("/p/ip/a", 0)])
        .and_then([
            TxnOp::put("/p/ip/a", "{}"),
            TxnOp::delete("/p/own/x"),
            TxnOp::get(RangeRequest::key("/p/own/").with_prefix().with_keys_only()),
        ]);
    assert_eq!(
        serde_json::to_value(&txn).unwrap(),
        json!({
        "compare": [{"key": b64("/p/ip/a"), "result": "EQUAL", "target": "CREATE",
                     "create_revision": "0"}],
        "success": [
            {"request_put": {"key": b64("/p/ip/a"), "value": b64("{}")}},
            {"request_delete_range": {"key": b64("/p/own/x")}},
            {"request_range": {"key": b64("/p/own/"), "range_end": b64("/p/own0"),
                               "keys_only": true}},
        ]})
    );
    let cmp = serde_json::to_value(Compare::mod_revision("k", 42)).unwrap();
    assert_eq!(
        cmp,
        json!({"key": "aw==", "result": "EQUAL", "target": "MOD", "mod_revision": "42"})
    );
    let page = RangeRequest::key("a")
        .with_range("b")
        .with_limit(256)
        .with_serializable();
    assert_eq!(
        serde_json::to_value(&page).unwrap(),
        json!({"key": "YQ==", "range_end": "Yg==", "limit": "256", "serializable": true})
    );
    assert_eq!(
        serde_json::to_value(RangeRequest::key("a")).unwrap(),
        json!({"key": "YQ=="})
    );
}

#[test]
fn prefix_ends_follow_etcds_rule() {
    assert_eq!(prefix_end(b"/a/"), b"/a0");
    assert_eq!(prefix_end(b"a\xff"), b"b");
    assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    assert_eq!(prefix_end(b""), b"\0");
}

#[test]
fn answers_read_omitted_defaults_as_false_zero_and_empty() {
    // A transaction whose comparison failed: no "succeeded"; a range that found nothing: no
    // "kvs"; a key read with keys_only: no "value".
    let failed: TxnResponse = serde_json::from_str(
        r#"{"header":{"cluster_id":"1","member_id":"2","revision":"3","raft_term":"2"},
            "responses":[{"response_range":{"header":{"revision":"3"}}},
                         {"response_range":{"header":{},"kvs":[{"key":"Zm9v","create_revision":"2",
                          "mod_revision":"9","version":"1"}],"count":"1"}},
                         {"response_put":{"header":{}}}]}"#,
    )
    .unwrap();
    assert!(!failed.succeeded());
    assert!(failed.range_kvs(0).is_empty());
    let kv = &failed.range_kvs(1)[0];
    assert_eq!(
        (kv.key(), kv.value(), kv.mod_revision()),
        (&b"foo"[..], &b""[..], 9)
    );
    assert_eq!(kv.create_revision, 2);
    assert!(failed.range_kvs(2).is_empty() && failed.range_kvs(7).is_empty());
    let ok: TxnResponse = serde_json::from_str(r#"{"header":{},"succeeded":true}"#).unwrap();
    assert!(ok.succeeded() && ok.responses.is_empty());
    let empty: RangeResponse = serde_json::from_str(r#"{"header":{"revision":"3"}}"#).unwrap();
    assert_eq!((empty.kvs.len(), empty.count, empty.more), (0, 0, false));
    // int64 as a number and camelCase names are read too.
    let camel: RangeResponse = serde_json::from_str(
        r#"{"kvs":[{"key":"YQ==","value":"Yg==","createRevision":5,"modRevision":"6"}],"count":1,"more":true}"#,
    )
    .unwrap();
    assert_eq!(camel.kvs[0].value, b"b");
    assert_eq!(
        (camel.kvs[0].create_revision, camel.kvs[0].mod_revision),
        (5, 6)
    );
    assert_eq!((camel.count, camel.more), (1, true));
    let bad = serde_json::from_str::<RangeResponse>(r#"{"kvs":[{"key":"not base64!"}]}"#);
    assert!(bad.unwrap_err().to_string().contains("base64"));
}

#[test]
fn one_keep_alive_connection_carries_every_request_and_asks_for_a_leader() {
    let (mut gw, fake) = fake(&["http://10.0.0.1:2379"], &[], None, |req, _| {
        assert_eq!(req.path, RANGE);
        ok(
            r#"{"header":{"revision":"7"},"kvs":[{"key":"L3AvYQ==","create_revision":"5","mod_revision":"6","version":"1","value":"eyJ4IjoxfQ=="}],"count":"1"}"#,
        )
    });
    for _ in 0..3 {
        let r: RangeResponse = gw.call(RANGE, &RangeRequest::key("/p/a"), soon()).unwrap();
        assert_eq!(
            (r.kvs[0].key(), r.kvs[0].value()),
            (&b"/p/a"[..], &br#"{"x":1}"#[..])
        );
    }
    assert_eq!(fake.dials().len(), 1, "one connection for three requests");
    let seen = fake.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[0].header("Host"), Some("10.0.0.1:2379"));
    assert_eq!(seen[0].header("Grpc-Metadata-Hasleader"), Some("true"));
    assert_eq!(seen[0].header("Authorization"), None);
    assert_eq!(seen[0].body, json!({"key": b64("/p/a")}));
}

#[test]
fn a_closed_connection_is_reopened_for_the_next_request() {
    let (mut gw, fake) = fake(&["http://m1:2379"], &[], None, |_, _| {
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}".to_vec()
    });
    for _ in 0..2 {
        let _: RangeResponse = gw.call(RANGE, &RangeRequest::key("k"), soon()).unwrap();
    }
    assert_eq!(fake.dials().len(), 2);
}

#[test]
fn etcd_errors_keep_their_grpc_code_and_message() {
    let (mut gw, _) = fake(&["http://m1:2379"], &[], None, |_, _| {
        etcd_error("503 Service Unavailable", 14, "etcdserver: no leader")
    });
    let err = gw
        .call::<_, TxnResponse>(TXN, &Txn::new(), soon())
        .unwrap_err();
    assert_eq!(
        err,
        Error::Etcd {
            endpoint: "http://m1:2379".into(),
            code: 14,
            message: "etcdserver: no leader".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "http://m1:2379 answered: etcdserver: no leader (code 14)"
    );
    // The connection stays usable after a chunked error answer.
    let again = gw.call::<_, TxnResponse>(TXN, &Txn::new(), soon());
    assert!(matches!(again, Err(Error::Etcd { code: 14, .. })));
}

#[test]
fn an_answer_that_is_not_etcds_is_unexpected_not_retried() {
    let (mut gw, _) = fake(&["http://m1:2379"], &[], None, |_, _| {
        b"HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: 9\r\n\r\n<h1>x</h1"
            .to_vec()
    });
    let err = gw
        .call::<_, RangeResponse>(RANGE, &RangeRequest::key("k"), soon())
        .unwrap_err();
    assert!(
        matches!(&err, Error::Unexpected(m) if m.contains("HTTP 404") && m.contains("http://m1:2379")),
        "{err:?}"
    );
}

#[test]
fn no_answer_within_the_deadline_is_unreachable_and_the_wait_is_bounded() {
    let (mut gw, _) = fake(&["http://m1:2379"], &[], None, |_, _| Vec::new());
    let started = Instant::now();
    let err = gw
        .call::<_, RangeResponse>(
            RANGE,
            &RangeRequest::key("k"),
            Instant::now() + Duration::from_millis(300),
        )
        .unwrap_err();
    let took = started.elapsed();
    assert!(
        matches!(&err, Error::Unreachable(m) if m.contains("in time")),
        "{err:?}"
    );
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_secs(2),
        "{took:?}"
    );
}

#[test]
fn next_member_moves_on_and_a_dead_member_is_unreachable() {
    let (mut gw, fake) = fake(
        &["http://m1:2379", "http://m2:2379"],
        &["http://m1:2379"],
        None,
        |_, _| ok(r#"{"header":{}}"#),
    );
    let first = gw.call::<_, RangeResponse>(RANGE, &RangeRequest::key("k"), soon());
    assert!(
        matches!(&first, Err(Error::Unreachable(m)) if m.contains("m1")),
        "{first:?}"
    );
    gw.next_member();
    assert_eq!(gw.endpoint(), "http://m2:2379");
    let r: RangeResponse = gw.call(RANGE, &RangeRequest::key("k"), soon()).unwrap();
    assert!(r.kvs.is_empty());
    assert_eq!(fake.dials(), ["http://m1:2379", "http://m2:2379"]);
}

#[test]
fn a_user_authenticates_once_sends_the_token_and_renews_it_when_etcd_forgets_it() {
    let (mut gw, fake) = fake(&["http://m1:2379"], &[], Some(("root", "pw")), |req, _| {
        if req.path == AUTHENTICATE {
            let n = if req.body["password"] == "pw" {
                "1"
            } else {
                "x"
            };
            return ok(&format!(r#"{{"header":{{}},"token":"tok.{n}"}}"#));
        }
        match req.header("Authorization") {
            Some("tok.1") if req.body["key"] == b64("expire") => {
                etcd_error("401 Unauthorized", 16, "etcdserver: invalid auth token")
            }
            Some("tok.1") => ok(r#"{"header":{}}"#),
            _ => etcd_error("400 Bad Request", 3, "etcdserver: user name is empty"),
        }
    });
    let _: RangeResponse = gw.call(RANGE, &RangeRequest::key("a"), soon()).unwrap();
    let _: RangeResponse = gw.call(RANGE, &RangeRequest::key("b"), soon()).unwrap();
    let paths: Vec<String> = fake.seen().iter().map(|s| s.path.clone()).collect();
    assert_eq!(paths, [AUTHENTICATE, RANGE, RANGE]);
    let seen = fake.seen();
    assert_eq!(seen[0].body, json!({"name": "root", "password": "pw"}));
    assert_eq!(seen[0].header("Authorization"), None);
    assert_eq!(seen[2].header("Authorization"), Some("tok.1"));
    // An invalid token: authenticate again, once, then fail with etcd's word.
    let err = gw
        .call::<_, RangeResponse>(RANGE, &RangeRequest::key("expire"), soon())
        .unwrap_err();
    assert!(matches!(err, Error::Etcd { code: 16, .. }), "{err:?}");
    let paths: Vec<String> = fake.seen().iter().map(|s| s.path.clone()).collect();
    assert_eq!(
        &paths[3..],
        [RANGE, AUTHENTICATE, RANGE],
        "renewed once, not in a loop"
    );
}

#[test]
fn a_wrong_password_is_refused_with_etcds_message_and_the_user_named() {
    let (mut gw, fake) = fake(&["http://m1:2379"], &[], Some(("root", "bad")), |_, _| {
        etcd_error(
            "400 Bad Request",
            3,
            "etcdserver: authentication failed, invalid user ID or password",
        )
    });
    let err = gw
        .call::<_, RangeResponse>(RANGE, &RangeRequest::key("k"), soon())
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "http://m1:2379 answered: authenticating as user \"root\": etcdserver: authentication \
         failed, invalid user ID or password (code 3)"
    );
    assert_eq!(fake.seen().len(), 1, "nothing else is sent");
}

#[test]
fn a_user_against_an_etcd_without_authentication_goes_on_without_a_token() {
    let (mut gw, fake) = fake(&["http://m1:2379"], &[], Some(("root", "pw")), |req, _| {
        if req.path == AUTHENTICATE {
            etcd_error(
                "400 Bad Request",
                9,
                "etcdserver: authentication is not enabled",
            )
        } else {
            ok(r#"{"header":{}}"#)
        }
    });
    let _: RangeResponse = gw.call(RANGE, &RangeRequest::key("a"), soon()).unwrap();
    let _: RangeResponse = gw.call(RANGE, &RangeRequest::key("b"), soon()).unwrap();
    let seen = fake.seen();
    assert_eq!(seen.len(), 3, "authenticated once");
    assert_eq!(seen[2].header("Authorization"), None);
}
