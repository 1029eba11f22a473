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
        network: Some("net-a".into()),
        sticky: None,
    }
}

fn pool() -> PoolId {
    PoolId {
        network: "net".into(),
        cidr: None,
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
    let freed = store.gc(&pool(), "net-a", &valid).unwrap();
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

fn owner_of(cid: &str, pod: Option<&str>, network: &str) -> Owner {
    Owner {
        network: Some(network.into()),
        ..owner(cid, pod)
    }
}

fn ranged(cidr: &str, excludes: &[&str]) -> IpRange {
    let x = excludes.iter().map(|e| e.parse().unwrap()).collect();
    IpRange::new("ipam", cidr.parse().unwrap(), None, None, x, None).unwrap()
}

#[test]
fn gc_of_one_network_keeps_the_other_networks_reservations_in_a_shared_pool() {
    let dir = Scratch::new("gc-net");
    let store = FileStore::new(&dir.0);
    let r = range("10.20.0.0/24");
    let a = store
        .reserve(&pool(), &r, &owner_of("pod-a", None, "nad-a"))
        .unwrap();
    let b = store
        .reserve(&pool(), &r, &owner_of("pod-b", None, "nad-b"))
        .unwrap();
    let valid_a = BTreeSet::from([("pod-a".to_string(), "net1".to_string())]);
    assert!(store.gc(&pool(), "nad-a", &valid_a).unwrap().is_empty());
    let held: Vec<IpAddr> = store.list(&pool()).unwrap().iter().map(|r| r.ip).collect();
    assert_eq!(held, [a, b], "nad-b's live reservation survives nad-a's GC");
    let c = store
        .reserve(&pool(), &r, &owner_of("pod-c", None, "nad-b"))
        .unwrap();
    assert!(
        c != a && c != b,
        "the next ADD on nad-b gets a third address"
    );
    let freed = store.gc(&pool(), "nad-b", &BTreeSet::new()).unwrap();
    assert_eq!(freed.iter().map(|r| r.ip).collect::<Vec<_>>(), [b, c]);
}

#[test]
fn an_edited_exclude_keeps_the_pool_and_its_reservations() {
    let dir = Scratch::new("edit");
    let store = FileStore::new(&dir.0);
    let before = ranged("10.21.0.0/24", &[]);
    let after = ranged("10.21.0.0/24", &["10.21.0.200/32"]);
    let (p1, p2) = (
        PoolId::for_range("", &before, false),
        PoolId::for_range("", &after, false),
    );
    assert_eq!(p1, p2, "a pool is named by network_name and CIDR only");
    let old = store.reserve(&p1, &before, &owner("old", None)).unwrap();
    let new = store.reserve(&p2, &after, &owner("new", None)).unwrap();
    assert_ne!(old, new);
    assert_eq!(store.release(&p2, "old", "net1").unwrap(), [old]);
}

/// A store as the previous release wrote it: a pool of its own named by the whole range key.
fn legacy_pool(root: &Path, key: &str, reservations: &[(&str, &str)]) -> PathBuf {
    let dir = root.join(format!("_default-{:016x}", fnv(&format!("\n{key}"))));
    for sub in ["blocks", "owners", "hints"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
    fs::write(
        dir.join("pool.json"),
        serde_json::json!({"network": "", "range": key}).to_string(),
    )
    .unwrap();
    let pool = Pool { dir: dir.clone() };
    for (addr, cid) in reservations {
        pool.put(ip(addr), &owner(cid, None)).unwrap();
    }
    dir
}

#[test]
fn pools_forked_by_an_earlier_release_are_merged_on_first_use() {
    let dir = Scratch::new("legacy");
    let plain = "10.22.0.0/24:10.22.0.1-10.22.0.254";
    let edited = "10.22.0.0/24:10.22.0.1-10.22.0.254:x=10.22.0.200/32";
    let a = legacy_pool(&dir.0, plain, &[("10.22.0.1", "a")]);
    let b = legacy_pool(&dir.0, edited, &[("10.22.0.2", "b")]);
    let store = FileStore::new(&dir.0);
    let r = ranged("10.22.0.0/24", &["10.22.0.200/32"]);
    let id = PoolId::for_range("", &r, false);
    assert_eq!(
        store.reserve(&id, &r, &owner("c", None)).unwrap(),
        ip("10.22.0.3")
    );
    assert!(!a.exists() && !b.exists(), "legacy pools are gone");
    assert_eq!(store.release(&id, "a", "net1").unwrap(), [ip("10.22.0.1")]);
    assert_eq!(store.pools().unwrap(), [id]);
    let v = store.verify().unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
}

#[test]
fn an_address_held_twice_in_forked_pools_stays_for_an_operator() {
    let dir = Scratch::new("legacy-dup");
    legacy_pool(&dir.0, "fd00::/64:fd00::1-fd00::ff", &[("fd00::5", "a")]);
    legacy_pool(
        &dir.0,
        "fd00::/64:fd00::1-fd00::ff:x=fd00::9/128",
        &[("fd00::5", "b")],
    );
    let store = FileStore::new(&dir.0);
    store.status().unwrap();
    store
        .reserve(&pool(), &range("10.23.0.0/24"), &owner("x", None))
        .unwrap();
    let v = store.verify().unwrap();
    assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
    let cidr = PoolId::from_legacy_range_key("", "fd00::/64:fd00::1-fd00::ff");
    assert_eq!(cidr.cidr.as_deref(), Some("fd00::/64"));
    assert_eq!(store.list(&cidr).unwrap().len(), 1);
}

#[test]
fn a_hint_above_a_free_address_costs_time_not_the_address() {
    let dir = Scratch::new("hint");
    let store = FileStore::new(&dir.0);
    let r = range("10.24.0.0/29");
    store.reserve(&pool(), &r, &owner("a", None)).unwrap();
    // A DEL killed between freeing and lowering the hint, as the previous release ordered them.
    let p = store.pool(&pool());
    write_json(
        &p.hint_path(&r),
        &Hint {
            range: r.key(),
            next: ip("10.24.0.7"),
            spec: None,
        },
    )
    .unwrap();
    store.release(&pool(), "a", "net1").unwrap();
    write_json(
        &p.hint_path(&r),
        &Hint {
            range: r.key(),
            next: ip("10.24.0.7"),
            spec: None,
        },
    )
    .unwrap();
    let got: Vec<IpAddr> = (0..6)
        .map(|i| {
            store
                .reserve(&pool(), &r, &owner(&format!("o{i}"), None))
                .unwrap()
        })
        .collect();
    let distinct: BTreeSet<IpAddr> = got.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        6,
        "all six of the /29 are handed out: {got:?}"
    );
    assert!(matches!(
        store.reserve(&pool(), &r, &owner("seventh", None)),
        Err(StoreError::Exhausted { capacity: 6, .. })
    ));
}

#[test]
fn stray_files_in_the_store_directory_are_not_pools() {
    let dir = Scratch::new("stray");
    let store = FileStore::new(&dir.0);
    store
        .reserve(&pool(), &range("10.25.0.0/24"), &owner("a", None))
        .unwrap();
    fs::write(dir.0.join("README"), "notes").unwrap();
    fs::write(dir.0.join(".status-probe-1"), "\"ok\"").unwrap();
    fs::create_dir(dir.0.join("backup")).unwrap();
    store.status().unwrap();
    assert_eq!(store.pools().unwrap(), [pool()]);
    assert!(store.verify().unwrap().problems.is_empty());
}

#[test]
fn a_hung_lock_holder_is_try_again_later_naming_it() {
    let dir = Scratch::new("hung");
    let store = FileStore::new(&dir.0).with_lock_timeout(Duration::from_millis(200));
    let r = range("10.26.0.0/24");
    store.reserve(&pool(), &r, &owner("a", None)).unwrap();
    let held = std::fs::File::open(store.pool(&pool()).dir.join("pool.lock")).unwrap();
    held.lock().unwrap();
    let started = std::time::Instant::now();
    let e = store.reserve(&pool(), &r, &owner("b", None)).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2));
    let StoreError::Transient(msg) = &e else {
        panic!("expected try again later, got {e:?}")
    };
    assert!(
        msg.contains("pool.lock") && msg.contains(&format!("pid {}", std::process::id())),
        "{msg}"
    );
    drop(held);
    assert_eq!(
        store.reserve(&pool(), &r, &owner("b", None)).unwrap(),
        ip("10.26.0.2")
    );
}

#[test]
fn a_restarted_sandbox_racing_its_old_del_gets_a_held_address() {
    let dir = Scratch::new("restart-race");
    let r = range("10.27.0.0/24");
    for round in 0..40 {
        let store = FileStore::new(&dir.0);
        let old = format!("old{round}");
        let new = format!("new{round}");
        store
            .reserve(&pool(), &r, &owner(&old, Some("ns/vm")))
            .unwrap();
        let got = std::thread::scope(|s| {
            let del = s.spawn(|| {
                FileStore::new(&dir.0)
                    .release(&pool(), &old, "net1")
                    .unwrap()
            });
            let other = s.spawn(|| {
                FileStore::new(&dir.0)
                    .reserve(&pool(), &r, &owner(&format!("other{round}"), None))
                    .unwrap()
            });
            let ip = store
                .reserve(&pool(), &r, &owner(&new, Some("ns/vm")))
                .unwrap();
            del.join().unwrap();
            (ip, other.join().unwrap())
        });
        let (mine, others) = got;
        assert_ne!(mine, others, "round {round}: two pods on one address");
        let holder = store.pool(&pool()).holder(mine).unwrap();
        assert_eq!(
            holder.map(|o| o.container_id),
            Some(new.clone()),
            "round {round}: the address returned is held by the new sandbox"
        );
        store.release(&pool(), &new, "net1").unwrap();
        store
            .release(&pool(), &format!("other{round}"), "net1")
            .unwrap();
    }
}
