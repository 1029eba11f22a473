use std::net::IpAddr;

use super::*;

struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("mh-fs-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn range(cidr: &str) -> IpRange {
    IpRange::new("ipam", cidr.parse().unwrap(), None, None, Vec::new(), None).unwrap()
}

fn owner(cid: &str, pod: Option<&str>) -> Owner {
    Owner {
        container_id: cid.into(),
        ifname: "net1".into(),
        pod_ref: pod.map(str::to_string),
    }
}

fn pool() -> PoolId {
    PoolId {
        network: "net".into(),
        range: None,
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn reserves_lowest_free_and_repeats_for_the_same_owner() {
    let dir = Scratch::new("lowest");
    let store = FileStore::new(&dir.0);
    let r = range("10.1.0.0/24");
    assert_eq!(
        store.reserve(&pool(), &r, &owner("a", None)).unwrap(),
        ip("10.1.0.1")
    );
    assert_eq!(
        store.reserve(&pool(), &r, &owner("b", None)).unwrap(),
        ip("10.1.0.2")
    );
    assert_eq!(
        store.reserve(&pool(), &r, &owner("a", None)).unwrap(),
        ip("10.1.0.1")
    );
    assert_eq!(store.list(&pool()).unwrap().len(), 2);
}

#[test]
fn a_released_address_is_the_next_one_handed_out() {
    let dir = Scratch::new("reuse");
    let store = FileStore::new(&dir.0);
    let r = range("10.2.0.0/24");
    for cid in ["a", "b", "c"] {
        store.reserve(&pool(), &r, &owner(cid, None)).unwrap();
    }
    assert_eq!(
        store.release(&pool(), "a", "net1").unwrap(),
        [ip("10.2.0.1")]
    );
    assert!(
        store.release(&pool(), "a", "net1").unwrap().is_empty(),
        "a second release frees nothing"
    );
    assert_eq!(
        store.reserve(&pool(), &r, &owner("d", None)).unwrap(),
        ip("10.2.0.1")
    );
    assert_eq!(
        store.reserve(&pool(), &r, &owner("e", None)).unwrap(),
        ip("10.2.0.4")
    );
}

#[test]
fn allocation_crosses_block_boundaries_and_reports_exhaustion() {
    let dir = Scratch::new("blocks");
    let store = FileStore::new(&dir.0);
    let r = IpRange::new(
        "ipam",
        "10.3.0.0/23".parse().unwrap(),
        Some(ip("10.3.0.253")),
        Some(ip("10.3.1.1")),
        Vec::new(),
        None,
    )
    .unwrap();
    let got: Vec<IpAddr> = (0..4)
        .map(|i| {
            store
                .reserve(&pool(), &r, &owner(&format!("c{i}"), None))
                .unwrap()
        })
        .collect();
    assert_eq!(
        got,
        [
            ip("10.3.0.253"),
            ip("10.3.0.254"),
            ip("10.3.0.255"),
            ip("10.3.1.0")
        ]
    );
    store.reserve(&pool(), &r, &owner("c4", None)).unwrap();
    let e = store.reserve(&pool(), &r, &owner("c5", None)).unwrap_err();
    assert!(
        matches!(e, StoreError::Exhausted { capacity: 5, .. }),
        "{e}"
    );
}

#[test]
fn a_pod_restarted_under_a_new_container_id_keeps_its_address() {
    let dir = Scratch::new("adopt");
    let store = FileStore::new(&dir.0);
    let r = range("10.4.0.0/30");
    let first = store
        .reserve(&pool(), &r, &owner("old", Some("ns/vm")))
        .unwrap();
    store.reserve(&pool(), &r, &owner("other", None)).unwrap();
    assert_eq!(
        store
            .reserve(&pool(), &r, &owner("new", Some("ns/vm")))
            .unwrap(),
        first
    );
    assert!(
        store.release(&pool(), "old", "net1").unwrap().is_empty(),
        "the old sandbox no longer owns it"
    );
    assert_eq!(store.find(&pool(), "new", "net1").unwrap()[0].ip, first);
}

#[test]
fn gc_releases_what_is_not_valid() {
    let dir = Scratch::new("gc");
    let store = FileStore::new(&dir.0);
    let r = range("10.5.0.0/24");
    for cid in ["keep", "gone-1", "gone-2"] {
        store.reserve(&pool(), &r, &owner(cid, None)).unwrap();
    }
    let valid = BTreeSet::from([("keep".to_string(), "net1".to_string())]);
    let freed = store.gc(&pool(), &valid).unwrap();
    assert_eq!(freed.len(), 2);
    let left: Vec<String> = store
        .list(&pool())
        .unwrap()
        .into_iter()
        .map(|r| r.owner.container_id)
        .collect();
    assert_eq!(left, ["keep"]);
    assert_eq!(
        store.reserve(&pool(), &r, &owner("next", None)).unwrap(),
        ip("10.5.0.2"),
        "hints moved down"
    );
}

#[test]
fn a_corrupt_file_is_an_error_and_stays_as_it_is() {
    let dir = Scratch::new("corrupt");
    let store = FileStore::new(&dir.0);
    let r = range("10.6.0.0/24");
    store.reserve(&pool(), &r, &owner("a", None)).unwrap();
    let block = store.pool(&pool()).block_path(ip("10.6.0.1"));
    fs::write(&block, "garbage").unwrap();
    assert!(matches!(
        store.reserve(&pool(), &r, &owner("b", None)),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(store.status(), Err(StoreError::Corrupt { .. })));
    assert_eq!(fs::read_to_string(&block).unwrap(), "garbage");
}

#[test]
fn files_are_private_to_root() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Scratch::new("mode");
    let store = FileStore::new(&dir.0);
    store
        .reserve(&pool(), &range("10.7.0.0/24"), &owner("a", None))
        .unwrap();
    let block = store.pool(&pool()).block_path(ip("10.7.0.1"));
    assert_eq!(
        fs::metadata(&block).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(store.pool(&pool()).dir)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
}

#[test]
fn concurrent_reservers_never_share_an_address() {
    let dir = Scratch::new("threads");
    let r = range("10.8.0.0/24");
    let got: Vec<IpAddr> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let (root, r) = (&dir.0, &r);
                s.spawn(move || {
                    FileStore::new(root)
                        .reserve(&pool(), r, &owner(&format!("t{i}"), None))
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let distinct: BTreeSet<IpAddr> = got.iter().copied().collect();
    assert_eq!(distinct.len(), 16);
    assert_eq!(
        distinct.last(),
        Some(&ip("10.8.0.16")),
        "lowest first: exactly .1 to .16"
    );
}

#[test]
fn import_writes_reservations_that_reserve_then_skips() {
    let dir = Scratch::new("import");
    let store = FileStore::new(&dir.0);
    let r = range("10.9.0.0/16");
    let bulk: Vec<Reservation> = (1..=600u32)
        .map(|i| Reservation {
            ip: from_u128(to_u128(ip("10.9.0.0")) + u128::from(i), true),
            owner: owner(&format!("bulk{i}"), None),
        })
        .collect();
    store.import(&pool(), &r, &bulk).unwrap();
    assert_eq!(
        store.find(&pool(), "bulk300", "net1").unwrap()[0].ip,
        ip("10.9.1.44")
    );
    assert_eq!(
        store.reserve(&pool(), &r, &owner("new", None)).unwrap(),
        ip("10.9.2.89")
    );
    assert_eq!(store.pools().unwrap(), [pool()]);
}
