//! The etcd store's requests through the gateway client, against a fake etcd on socket pairs.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use etcd::fake::{b64, etcd_error, fake, ok, Fake, Seen};
use etcd::json::{RANGE, TXN};
use ipam::range::IpRange;
use ipam::store::{Owner, PoolId, Store, StoreError};

use crate::etcd_store::EtcdStore;

fn soon() -> Instant {
    etcd::fake::soon()
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
        sticky: None,
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
