//! The gateway client against a fake etcd on a socket pair (no port is opened anywhere): HTTP
//! framing, the JSON of the v3 gateway (base64, int64 strings, omitted defaults), chunked error
//! answers, keep-alive, authentication, timeouts; and the etcd store's requests through it.

use std::io::{BufRead, BufReader, Cursor, Read, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;
use crate::etcd_json::{
    prefix_end, Compare, RangeRequest, RangeResponse, Txn, TxnOp, TxnResponse, RANGE, TXN,
};
use crate::etcd_store::EtcdStore;
use crate::range::IpRange;
use crate::store::{Owner, PoolId, Store, StoreError};

fn parse(raw: &[u8]) -> Response {
    read_response(&mut Cursor::new(raw.to_vec())).expect("an answer")
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
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

// ---- a fake etcd on socket pairs ----

#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

type Handler = Arc<dyn Fn(&Seen, usize) -> Vec<u8> + Send + Sync>;

/// Serves requests on one end of a socket pair until the client hangs up.
fn serve(stream: UnixStream, handler: Handler, seen: Arc<Mutex<Vec<Seen>>>) {
    let mut writer = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split(' ').nth(1).unwrap_or_default().to_string();
        let mut headers = Vec::new();
        let mut length = 0;
        loop {
            let mut h = String::new();
            r.read_line(&mut h).unwrap();
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let (n, v) = h.split_once(':').unwrap();
            if n.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap();
            }
            headers.push((n.to_string(), v.trim().to_string()));
        }
        let mut body = vec![0; length];
        r.read_exact(&mut body).unwrap();
        let req = Seen {
            path,
            headers,
            body: serde_json::from_slice(&body).unwrap(),
        };
        let n = {
            let mut s = seen.lock().unwrap();
            s.push(req.clone());
            s.len() - 1
        };
        let answer = handler(&req, n);
        if answer.is_empty() {
            // Never answer (the client's timeout must end the wait).
            std::thread::sleep(Duration::from_secs(3));
            return;
        }
        if writer.write_all(&answer).is_err() {
            return;
        }
        if answer.windows(17).any(|w| w == b"Connection: close") {
            return;
        }
    }
}

struct FakeEtcd {
    handler: Handler,
    seen: Arc<Mutex<Vec<Seen>>>,
    dials: Arc<Mutex<Vec<String>>>,
    /// Endpoints whose dial fails as a dead member's would.
    dead: Vec<String>,
}

impl Dial for FakeEtcd {
    fn dial(&mut self, endpoint: &Endpoint, _: Duration) -> Result<Box<dyn Transport>, Error> {
        self.dials.lock().unwrap().push(endpoint.url.clone());
        if self.dead.contains(&endpoint.url) {
            return Err(Error::Unreachable(format!(
                "cannot connect to {}: Connection refused",
                endpoint.url
            )));
        }
        let (client, server) = UnixStream::pair().unwrap();
        let (handler, seen) = (self.handler.clone(), self.seen.clone());
        std::thread::spawn(move || serve(server, handler, seen));
        Ok(Box::new(client))
    }
}

struct Fake {
    seen: Arc<Mutex<Vec<Seen>>>,
    dials: Arc<Mutex<Vec<String>>>,
}

impl Fake {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    fn dials(&self) -> Vec<String> {
        self.dials.lock().unwrap().clone()
    }
}

fn fake(
    endpoints: &[&str],
    dead: &[&str],
    credentials: Option<(&str, &str)>,
    handler: impl Fn(&Seen, usize) -> Vec<u8> + Send + Sync + 'static,
) -> (Gateway, Fake) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let dials = Arc::new(Mutex::new(Vec::new()));
    let dialer = FakeEtcd {
        handler: Arc::new(handler),
        seen: seen.clone(),
        dials: dials.clone(),
        dead: dead.iter().map(|s| s.to_string()).collect(),
    };
    let gw = Gateway::with_dialer(
        endpoints
            .iter()
            .map(|e| Endpoint::parse(e).unwrap())
            .collect(),
        Box::new(dialer),
        Duration::from_secs(1),
        credentials.map(|(u, p)| (u.to_string(), p.to_string())),
    );
    (gw, Fake { seen, dials })
}

fn ok(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nGrpc-Metadata-Content-Type: \
         application/grpc\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// An error answer as etcd 3.4's gateway writes it: chunked, with a trailer.
fn etcd_error(status: &str, code: i32, message: &str) -> Vec<u8> {
    let body = json!({"error": message, "message": message, "code": code}).to_string();
    let (a, b) = body.split_at(body.len() / 2);
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nTrailer: \
         Grpc-Trailer-Content-Type\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n\
         0\r\nGrpc-Trailer-Content-Type: application/grpc\r\n\r\n",
        a.len(),
        b.len()
    )
    .into_bytes()
}

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(2)
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

// ---- the etcd store through the gateway ----

fn store_on(
    endpoints: &[&str],
    dead: &[&str],
    timeout: Duration,
    handler: impl Fn(&Seen, usize) -> Vec<u8> + Send + Sync + 'static,
) -> (EtcdStore, Fake) {
    let (gw, fake) = fake(endpoints, dead, None, handler);
    (EtcdStore::with_gateway(gw, "/mh", timeout), fake)
}

fn range_24() -> IpRange {
    IpRange::new(
        "10.9.0.0/24",
        "10.9.0.0/24".parse().unwrap(),
        None,
        None,
        Vec::new(),
        None,
    )
    .unwrap()
}

fn owner(cid: &str) -> Owner {
    Owner {
        container_id: cid.into(),
        ifname: "net1".into(),
        pod_ref: None,
        network: Some("net".into()),
    }
}

fn pool() -> PoolId {
    PoolId {
        network: "net".into(),
        cidr: None,
    }
}

#[test]
fn an_add_on_an_empty_pool_claims_the_first_address_only_if_its_key_does_not_exist() {
    let (store, fake) = store_on(
        &["http://m1:2379"],
        &[],
        soon() - Instant::now(),
        |req, _| {
            if req.path == TXN && req.body.get("compare").is_none() {
                // The owner index and the hint: nothing (every "kvs" omitted).
                ok(
                    r#"{"header":{},"succeeded":true,"responses":[{"response_range":{"header":{}}},{"response_range":{"header":{}}}]}"#,
                )
            } else if req.path == RANGE {
                ok(r#"{"header":{"revision":"1"}}"#)
            } else {
                ok(
                    r#"{"header":{"revision":"2"},"succeeded":true,"responses":[{"response_put":{"header":{}}}]}"#,
                )
            }
        },
    );
    let ip = store.reserve(&pool(), &range_24(), &owner("c1")).unwrap();
    assert_eq!(ip, "10.9.0.1".parse::<IpAddr>().unwrap());
    let seen = fake.seen();
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, [TXN, RANGE, TXN]);
    // The page of keys: serializable, keys only, from the candidate to the range's end.
    assert_eq!(
        seen[1].body,
        json!({"key": b64("/mh/ip/n=net/4-0a090001"), "range_end": b64("/mh/ip/n=net/4-0a0900ff"),
               "limit": "256", "serializable": true, "keys_only": true})
    );
    let claim = &seen[2].body;
    assert_eq!(
        claim["compare"],
        json!([{"key": b64("/mh/ip/n=net/4-0a090001"), "result": "EQUAL", "target": "CREATE",
                "create_revision": "0"}])
    );
    let puts: Vec<String> = claim["success"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| {
            let k = op["request_put"]["key"].as_str().unwrap();
            use base64::Engine;
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(k).unwrap()).unwrap()
        })
        .collect();
    assert_eq!(
        puts,
        [
            "/mh/ip/n=net/4-0a090001",
            "/mh/own/n=net/c|c1|net1/4-0a090001",
            "/mh/pools/n=net",
            "/mh/hint/n=net/10.9.0.0%2F24%3A10.9.0.1-10.9.0.254"
        ]
    );
}

/// A fake etcd for one ADD on an empty /24 pool whose first claim of 10.9.0.1 is lost: the
/// failure branch shows its key created at `created` (the read was at revision 10).
fn lost_first_claim(created: i64) -> (IpAddr, Vec<Seen>) {
    let claims = Arc::new(Mutex::new(0));
    let c = claims.clone();
    let taken = b64("/mh/ip/n=net/4-0a090001");
    let (store, fake) = store_on(
        &["http://m1:2379"],
        &[],
        Duration::from_secs(2),
        move |req, _| {
            if req.path == TXN && req.body.get("compare").is_none() {
                ok(
                    r#"{"header":{"revision":"10"},"succeeded":true,"responses":[{"response_range":{"header":{}}},{"response_range":{"header":{}}}]}"#,
                )
            } else if req.path == RANGE {
                ok(r#"{"header":{"revision":"10"}}"#)
            } else {
                let mut n = c.lock().unwrap();
                *n += 1;
                if *n == 1 {
                    // Another node got there first: etcd omits "succeeded": false, and the failure
                    // branch's page shows the key.
                    ok(&format!(
                        r#"{{"header":{{"revision":"12"}},"responses":[{{"response_range":{{"header":{{}},
                    "kvs":[{{"key":"{taken}","create_revision":"{created}","mod_revision":"{created}",
                    "version":"1"}}],"count":"1"}}}}]}}"#
                    ))
                } else {
                    ok(r#"{"header":{},"succeeded":true}"#)
                }
            }
        },
    );
    let ip = store.reserve(&pool(), &range_24(), &owner("c2")).unwrap();
    assert_eq!(*claims.lock().unwrap(), 2);
    (ip, fake.seen())
}

fn claimed(req: &Seen) -> String {
    use base64::Engine;
    let key = req.body["compare"][0]["key"].as_str().unwrap();
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(key)
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn a_claim_lost_to_a_concurrent_add_moves_on_at_random_with_the_failure_branchs_page() {
    let (ip, seen) = lost_first_claim(11);
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    // The read, the page, the lost claim, the next claim: its page came with the lost claim.
    assert_eq!(paths, [TXN, RANGE, TXN, TXN]);
    assert_eq!(
        seen[2].body["failure"],
        json!([{"request_range": {"key": b64("/mh/ip/n=net/4-0a090001"),
            "range_end": b64("/mh/ip/n=net/4-0a0900ff"), "limit": "64", "keys_only": true}}])
    );
    assert_eq!(
        claimed(seen.last().unwrap()),
        format!(
            "/mh/ip/n=net/4-{:08x}",
            u32::from(match ip {
                IpAddr::V4(v4) => v4,
                IpAddr::V6(_) => unreachable!(),
            })
        ),
        "the address returned is the one the successful claim named"
    );
    assert_ne!(ip, "10.9.0.1".parse::<IpAddr>().unwrap());
    assert!(range_24().contains(ip));
}

#[test]
fn a_claim_lost_to_a_key_older_than_the_read_is_no_race_and_the_next_pick_is_the_lowest() {
    // A stale read (the key existed at revision 10 already): no concurrent ADD to spread from.
    let (ip, seen) = lost_first_claim(7);
    assert_eq!(ip, "10.9.0.2".parse::<IpAddr>().unwrap());
    assert_eq!(claimed(seen.last().unwrap()), "/mh/ip/n=net/4-0a090002");
}

#[test]
fn a_dead_member_is_skipped_for_the_next_one_within_the_timeout() {
    let (store, fake) = store_on(
        &["http://m1:2379", "http://m2:2379"],
        &["http://m1:2379"],
        Duration::from_secs(2),
        |_, _| ok(r#"{"header":{}}"#),
    );
    assert!(store.list(&pool()).unwrap().is_empty());
    assert_eq!(fake.dials(), ["http://m1:2379", "http://m2:2379"]);
}

#[test]
fn no_leader_is_retried_until_the_timeout_then_busy_and_status_says_unavailable() {
    let (store, fake) = store_on(
        &["http://m1:2379"],
        &[],
        Duration::from_millis(400),
        |_, _| etcd_error("503 Service Unavailable", 14, "etcdserver: no leader"),
    );
    let started = Instant::now();
    let err = store.list(&pool()).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(
        matches!(&err, StoreError::Transient(m) if m.contains("no leader")),
        "{err:?}"
    );
    assert!(fake.seen().len() > 1, "retried");
    let status = store.status().unwrap_err();
    assert!(
        matches!(&status, StoreError::Unavailable(m) if m.contains("answer STATUS")),
        "{status:?}"
    );
}

#[test]
fn a_refused_request_is_not_retried_and_is_unavailable() {
    let (store, fake) = store_on(&["http://m1:2379"], &[], Duration::from_secs(2), |_, _| {
        etcd_error("403 Forbidden", 7, "etcdserver: permission denied")
    });
    let err = store.list(&pool()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Unavailable(m) if m.contains("permission denied")),
        "{err:?}"
    );
    assert_eq!(fake.seen().len(), 1);
}

#[test]
fn with_a_hint_the_hinted_address_is_claimed_at_once_without_rewriting_the_pool_description() {
    let hint = b64(r#"{"next":"10.9.0.5"}"#);
    let read = format!(
        r#"{{"header":{{}},"succeeded":true,"responses":[{{"response_range":{{"header":{{}}}}}},
           {{"response_range":{{"header":{{}},"kvs":[{{"key":"{}","create_revision":"4",
           "mod_revision":"9","version":"3","value":"{hint}"}}],"count":"1"}}}}]}}"#,
        b64("/mh/hint/n=net/x")
    );
    let (store, fake) = store_on(
        &["http://m1:2379"],
        &[],
        Duration::from_secs(2),
        move |req, _| {
            if req.body.get("compare").is_none() {
                ok(&read)
            } else {
                ok(r#"{"header":{},"succeeded":true}"#)
            }
        },
    );
    let ip = store.reserve(&pool(), &range_24(), &owner("c3")).unwrap();
    assert_eq!(ip, "10.9.0.5".parse::<IpAddr>().unwrap());
    let seen = fake.seen();
    assert_eq!(seen.len(), 2, "one read, one claim: no page of keys");
    let ops: Vec<String> = seen[1].body["success"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["request_put"]["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ops,
        [
            b64("/mh/ip/n=net/4-0a090005"),
            b64("/mh/own/n=net/c|c3|net1/4-0a090005"),
            b64("/mh/hint/n=net/10.9.0.0%2F24%3A10.9.0.1-10.9.0.254"),
        ]
    );
}

#[test]
fn a_hint_lowering_lost_to_another_del_is_tried_again_until_the_hint_is_low_enough() {
    let hint_key = b64("/mh/hint/n=net/r");
    let hint_at = |ip: &str, rev: i64| {
        format!(
            r#"{{"key":"{hint_key}","create_revision":"2","mod_revision":"{rev}","version":"3","value":"{}"}}"#,
            b64(&format!(r#"{{"next":"{ip}"}}"#))
        )
    };
    let (at_65, at_5) = (hint_at("10.9.0.65", 20), hint_at("10.9.0.5", 21));
    let lowerings = Arc::new(Mutex::new(Vec::new()));
    let l = lowerings.clone();
    let (store, _) = store_on(
        &["http://m1:2379"],
        &[],
        Duration::from_secs(2),
        move |req, _| {
            let key = req.body["key"].as_str().unwrap_or_default();
            if req.path == RANGE && key == b64("/mh/ip/n=net/4-0a090001") {
                let owner = b64(r#"{"container_id":"c1","ifname":"net1"}"#);
                ok(&format!(
                    r#"{{"header":{{}},"kvs":[{{"key":"{key}","create_revision":"3","mod_revision":"3","version":"1","value":"{owner}"}}]}}"#
                ))
            } else if req.path == RANGE {
                // The hints: at .65 when read.
                ok(&format!(r#"{{"header":{{}},"kvs":[{at_65}]}}"#))
            } else if req.body["success"][0].get("request_delete_range").is_some() {
                ok(r#"{"header":{},"succeeded":true}"#)
            } else {
                let mut l = l.lock().unwrap();
                l.push(req.body["compare"][0]["mod_revision"].clone());
                if l.len() == 1 {
                    // Another DEL lowered it to .5 first: the failure branch shows it.
                    ok(&format!(
                        r#"{{"header":{{}},"responses":[{{"response_range":{{"kvs":[{at_5}]}}}}]}}"#
                    ))
                } else {
                    ok(r#"{"header":{},"succeeded":true}"#)
                }
            }
        },
    );
    let freed = store
        .release_ip(&pool(), "10.9.0.1".parse().unwrap(), &owner("c1"))
        .unwrap();
    assert!(freed);
    assert_eq!(
        *lowerings.lock().unwrap(),
        [json!("20"), json!("21")],
        "lowered again from the hint the lost race brought back"
    );
}

#[test]
fn a_restarted_sandbox_whose_adopt_answer_was_lost_keeps_the_address_and_claims_no_other() {
    let adopts = Arc::new(Mutex::new(0));
    let a = adopts.clone();
    let by_pod = b64("/mh/own/n=net/p|ns%2Fvm|net1/4-0a090005");
    let (store, fake) = store_on(
        &["http://m1:2379", "http://m2:2379"],
        &[],
        Duration::from_secs(2),
        move |req, _| {
            let target = req.body["compare"][0]["target"].as_str().unwrap_or("");
            if req.path == TXN && req.body.get("compare").is_none() {
                // Nothing under the new container ID, no hint, the pod's old address.
                ok(&format!(
                    r#"{{"header":{{"revision":"10"}},"succeeded":true,"responses":[
                    {{"response_range":{{"header":{{}}}}}},{{"response_range":{{"header":{{}}}}}},
                    {{"response_range":{{"header":{{}},"kvs":[{{"key":"{by_pod}"}}],"count":"1"}}}}]}}"#
                ))
            } else if req.path == RANGE {
                // The reservation: the old sandbox's before the adopt was applied, ours after.
                let cid = if *a.lock().unwrap() == 0 {
                    "old"
                } else {
                    "new"
                };
                let value = b64(&format!(
                    r#"{{"container_id":"{cid}","ifname":"net1","pod_ref":"ns/vm"}}"#
                ));
                ok(&format!(
                    r#"{{"header":{{"revision":"11"}},"kvs":[{{"key":"{}","create_revision":"5",
                    "mod_revision":"5","version":"1","value":"{value}"}}],"count":"1"}}"#,
                    b64("/mh/ip/n=net/4-0a090005")
                ))
            } else if target == "MOD" {
                let mut n = a.lock().unwrap();
                *n += 1;
                if *n == 1 {
                    // Applied, but the member died before the answer was whole.
                    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 90\r\n\r\n{\"he"
                        .to_vec()
                } else {
                    // The retry's compare fails on our own write.
                    ok(r#"{"header":{"revision":"12"}}"#)
                }
            } else {
                panic!("no other address may be claimed: {}", req.body)
            }
        },
    );
    let new = Owner {
        pod_ref: Some("ns/vm".into()),
        ..owner("new")
    };
    let ip = store.reserve(&pool(), &range_24(), &new).unwrap();
    assert_eq!(ip, "10.9.0.5".parse::<IpAddr>().unwrap());
    assert_eq!(*adopts.lock().unwrap(), 2, "{:?}", fake.seen());
}

#[test]
fn exhausted_is_said_only_after_a_linearizable_pass_agrees() {
    // A lagging member's own copy shows the /24 full; the cluster has 10.9.0.7 free.
    let keys = |skip: Option<u32>| -> String {
        (1..=254u32)
            .filter(|i| Some(*i) != skip)
            .map(|i| {
                format!(
                    r#"{{"key":"{}"}}"#,
                    b64(&format!("/mh/ip/n=net/4-0a0900{i:02x}"))
                )
            })
            .collect::<Vec<_>>()
            .join(",")
    };
    let (store, fake) = store_on(
        &["http://m1:2379"],
        &[],
        Duration::from_secs(2),
        move |req, _| {
            if req.path == TXN && req.body.get("compare").is_none() {
                ok(
                    r#"{"header":{"revision":"10"},"succeeded":true,"responses":[{"response_range":{"header":{}}},{"response_range":{"header":{}}}]}"#,
                )
            } else if req.path == RANGE {
                let stale = req.body.get("serializable").is_some();
                let kvs = keys(if stale { None } else { Some(7) });
                ok(&format!(
                    r#"{{"header":{{"revision":"10"}},"kvs":[{kvs}],"count":"254"}}"#
                ))
            } else {
                ok(r#"{"header":{"revision":"11"},"succeeded":true}"#)
            }
        },
    );
    let ip = store.reserve(&pool(), &range_24(), &owner("c1")).unwrap();
    assert_eq!(ip, "10.9.0.7".parse::<IpAddr>().unwrap());
    let linearizable = fake
        .seen()
        .iter()
        .filter(|s| s.path == RANGE && s.body.get("serializable").is_none())
        .count();
    assert_eq!(linearizable, 1, "one confirming pass");
}
