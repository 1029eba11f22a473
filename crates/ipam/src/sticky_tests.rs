use super::*;
use crate::store::Sticky;

const NET: &str = "vmnet";
const MAC: &str = "02:00:00:00:00:0a";

fn vm(cid: &str) -> Owner {
    Owner {
        container_id: cid.into(),
        ifname: "net1".into(),
        pod_ref: Some(format!("ns/virt-launcher-{cid}")),
        network: Some(NET.into()),
        sticky: Some(Sticky {
            mac: MAC.into(),
            retention_s: 60,
            also: Vec::new(),
            parked_until: None,
        }),
    }
}

fn put(c: Change) -> Owner {
    match c {
        Change::Put(o) => o,
        other => panic!("expected a Put, got {other:?}"),
    }
}

fn valid(items: &[&str]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|c| (c.to_string(), "net1".to_string()))
        .collect()
}

#[test]
fn a_migration_target_joins_and_the_source_leaving_keeps_the_address() {
    let source = vm("src");
    let both = put(join(Some(&source), &vm("dst")));
    assert!(both.holds("src", "net1") && both.holds("dst", "net1"));
    assert_eq!(
        both.container_id, "dst",
        "the latest attachment is the owner's"
    );
    // Joining again (a retried ADD) keeps.
    assert_eq!(join(Some(&both), &vm("dst")), Change::Keep);
    let target_only = put(leave(Some(&both), "src", "net1", 1000));
    assert!(target_only.holds("dst", "net1") && !target_only.holds("src", "net1"));
    assert!(!target_only.is_parked());
    // The source's DEL again (a retry) keeps.
    assert_eq!(leave(Some(&target_only), "src", "net1", 1000), Change::Keep);
}

#[test]
fn the_last_leave_parks_for_the_retention_and_only_the_mac_rejoins() {
    let parked = put(leave(Some(&vm("a")), "a", "net1", 1000));
    assert_eq!(parked.sticky.as_ref().unwrap().parked_until, Some(1060));
    assert!(parked.live_attachments().is_empty());
    let mut other = vm("b");
    other.sticky.as_mut().unwrap().mac = "02:00:00:00:00:0b".into();
    assert_eq!(join(Some(&parked), &other), Change::Keep);
    let mut plain = vm("c");
    plain.sticky = None;
    assert_eq!(join(Some(&parked), &plain), Change::Keep);
    let back = put(join(Some(&parked), &vm("b")));
    assert!(back.holds("b", "net1") && !back.is_parked());
}

#[test]
fn gc_parks_then_frees_after_the_retention_and_spares_a_racing_join() {
    let listed = put(join(Some(&vm("a")), &vm("b")));
    // Both gone from the runtime; a third pod joined after the GC listed the reservation.
    let now = put(join(Some(&listed), &vm("c")));
    let after = put(collect(Some(&now), &listed, &valid(&[]), 1000));
    assert!(after.holds("c", "net1") && !after.holds("a", "net1") && !after.holds("b", "net1"));
    let parked = put(collect(Some(&listed), &listed, &valid(&[]), 1000));
    assert!(parked.is_parked());
    assert_eq!(
        collect(Some(&parked), &parked, &valid(&[]), 1059),
        Change::Keep
    );
    assert_eq!(
        collect(Some(&parked), &parked, &valid(&[]), 1060),
        Change::Free
    );
    assert_eq!(
        collect(Some(&listed), &listed, &valid(&["a", "b"]), 1000),
        Change::Keep
    );
}

#[test]
fn an_ordinary_reservation_is_freed_by_leave_and_gc_as_before() {
    let mut plain = vm("a");
    plain.sticky = None;
    assert_eq!(leave(Some(&plain), "a", "net1", 0), Change::Free);
    assert_eq!(leave(Some(&plain), "x", "net1", 0), Change::Keep);
    assert_eq!(collect(Some(&plain), &plain, &valid(&[]), 0), Change::Free);
    assert_eq!(
        collect(Some(&plain), &plain, &valid(&["a"]), 0),
        Change::Keep
    );
    let mut moved = plain.clone();
    moved.container_id = "b".into();
    assert_eq!(collect(Some(&moved), &plain, &valid(&[]), 0), Change::Keep);
}

#[test]
fn release_by_mac_restore_and_mac_spelling() {
    let o = vm("a");
    assert_eq!(release_mac(Some(&o), NET, MAC), Change::Free);
    assert_eq!(release_mac(Some(&o), "other", MAC), Change::Keep);
    let joined = put(join(Some(&o), &vm("b")));
    assert_eq!(restore(Some(&joined), &joined, &o), Change::Put(o.clone()));
    assert_eq!(restore(Some(&o), &joined, &o), Change::Keep);
    assert_eq!(normalise_mac("02-00-00-00-00-0A").as_deref(), Some(MAC));
    assert_eq!(normalise_mac("02:00:00:00:00"), None);
    assert_eq!(normalise_mac("02:00:00:00:00:0g"), None);
}
