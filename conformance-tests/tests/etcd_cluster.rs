//! The etcd fixture itself: members start inside a test namespace, form one cluster, keep
//! serving with one member down, refuse writes without quorum, and recover.

use std::time::{Duration, Instant};

use conformance_tests::{EtcdCluster, Netns};

/// A put that may have to wait for a leader election (about a second after a leader dies).
fn put_within(etcd: &EtcdCluster, endpoints: &[String], value: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if etcd
            .etcdctl(endpoints, &["put", "/probe", value, "--command-timeout=2s"])
            .status
            .success()
        {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_three_member_cluster_keeps_quorum_with_one_member_down_and_loses_it_with_two() {
    let ns = Netns::new("etcd");
    let etcd = EtcdCluster::start(3, &ns);
    let all = etcd.endpoints();
    let members = etcd.etcdctl(&all, &["member", "list"]);
    assert_eq!(String::from_utf8_lossy(&members.stdout).lines().count(), 3);
    assert!(etcd.etcdctl(&all, &["put", "/probe", "1"]).status.success());

    etcd.stop_member(0);
    let survivors = vec![etcd.endpoint(1), etcd.endpoint(2)];
    assert!(
        put_within(&etcd, &survivors, "2", Duration::from_secs(15)),
        "2 of 3 keep quorum"
    );

    etcd.stop_member(1);
    let last = vec![etcd.endpoint(2)];
    let refused = etcd.etcdctl(&last, &["put", "/probe", "3", "--command-timeout=2s"]);
    assert!(!refused.status.success(), "1 of 3 must not accept writes");

    etcd.start_member(0);
    assert!(
        put_within(&etcd, &last, "4", Duration::from_secs(15)),
        "quorum back"
    );
    let got = etcd.etcdctl(&last, &["get", "/probe", "--print-value-only"]);
    assert_eq!(String::from_utf8_lossy(&got.stdout).trim(), "4");
}
