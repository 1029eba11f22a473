//! Addresses that belong to a MAC (`sticky_by_mac`): what each call does to such a reservation,
//! as pure decisions a store applies atomically ([`crate::store::Store::update`]).
//!
//! A VM keeps its MAC for its lifetime (KubeMacPool) while its launcher pods come and go: a
//! restart is a new pod, a live migration is two pods at once on two nodes. The reservation is
//! the MAC's: a new pod with the MAC joins it; DEL of one pod leaves it; when no pod is left it is
//! parked for the retention time, during which only the MAC gets it; after that GC frees it.
//! Every decision is idempotent: asked again after its own change was applied, it keeps.

use std::collections::BTreeSet;

use crate::store::{Attachment, Change, Owner};

fn attachments(o: &Owner) -> Vec<Attachment> {
    if o.is_parked() {
        return Vec::new();
    }
    let mut out = vec![Attachment {
        container_id: o.container_id.clone(),
        ifname: o.ifname.clone(),
        pod_ref: o.pod_ref.clone(),
    }];
    if let Some(s) = &o.sticky {
        out.extend(s.also.iter().cloned());
    }
    out
}

/// `o` held by `live` (the first is the owner's attachment), parked at `now` when empty.
fn with_attachments(o: &Owner, live: Vec<Attachment>, now: u64) -> Owner {
    let mut next = o.clone();
    let Some(sticky) = next.sticky.as_mut() else {
        return next;
    };
    let mut live = live.into_iter();
    match live.next() {
        Some(first) => {
            next.container_id = first.container_id;
            next.ifname = first.ifname;
            next.pod_ref = first.pod_ref;
            sticky.also = live.collect();
            sticky.parked_until = None;
        }
        None => {
            sticky.also = Vec::new();
            sticky.parked_until = Some(now.saturating_add(sticky.retention_s));
        }
    }
    next
}

/// An ADD of `owner` (sticky, of `network` and its MAC) on the address `cur` holds: a parked
/// reservation is the new pod's; a live one gains it as its latest attachment (the target of a
/// migration), the others staying; one it already holds is kept. Anything but the MAC's
/// reservation is kept too: the caller sees from what it was given that it did not join.
pub fn join(cur: Option<&Owner>, owner: &Owner) -> Change {
    let Some(mac) = owner.sticky.as_ref().map(|s| s.mac.as_str()) else {
        return Change::Keep;
    };
    let network = owner.network.as_deref().unwrap_or_default();
    let Some(cur) = cur.filter(|c| c.is_sticky_for(network, mac)) else {
        return Change::Keep;
    };
    if cur.holds(&owner.container_id, &owner.ifname) {
        return Change::Keep;
    }
    let mut live = vec![Attachment {
        container_id: owner.container_id.clone(),
        ifname: owner.ifname.clone(),
        pod_ref: owner.pod_ref.clone(),
    }];
    live.extend(attachments(cur));
    let mut next = owner.clone();
    if let Some(s) = next.sticky.as_mut() {
        s.parked_until = None;
        s.also = live.split_off(1);
    }
    Change::Put(next)
}

/// A DEL of (container ID, ifname) on the address `cur` holds: an ordinary reservation it holds
/// is freed; a sticky one loses the attachment and is parked for its retention when no other
/// attachment holds it (the source of a migration leaves the address to the target).
pub fn leave(cur: Option<&Owner>, container_id: &str, ifname: &str, now: u64) -> Change {
    let Some(cur) = cur.filter(|c| c.holds(container_id, ifname)) else {
        return Change::Keep;
    };
    if cur.sticky.is_none() {
        return Change::Free;
    }
    let live: Vec<Attachment> = attachments(cur)
        .into_iter()
        .filter(|a| !(a.container_id == container_id && a.ifname == ifname))
        .collect();
    Change::Put(with_attachments(cur, live, now))
}

/// GC of the reservation `listed` (as read when the GC started) that `cur` holds now, `valid`
/// being the attachments the runtime still has: an ordinary one whose attachment is not valid
/// is freed if it is still the listed one; a sticky one loses the listed attachments that are
/// not valid (one that joined since stays: an ADD racing the GC), parks when none is left, and
/// is freed once parked past its retention.
pub fn collect(
    cur: Option<&Owner>,
    listed: &Owner,
    valid: &BTreeSet<(String, String)>,
    now: u64,
) -> Change {
    let Some(cur) = cur.filter(|c| c.network == listed.network) else {
        return Change::Keep;
    };
    if cur.sticky.is_none() {
        let same = listed.sticky.is_none() && cur.attachment() == listed.attachment();
        return if same && !valid.contains(&cur.attachment()) {
            Change::Free
        } else {
            Change::Keep
        };
    }
    if cur.is_parked() {
        return expired(Some(cur), now);
    }
    let was = listed.live_attachments();
    let gone = |a: &Attachment| {
        let key = (a.container_id.clone(), a.ifname.clone());
        was.contains(&key) && !valid.contains(&key)
    };
    let live = attachments(cur);
    if !live.iter().any(gone) {
        return Change::Keep;
    }
    Change::Put(with_attachments(
        cur,
        live.into_iter().filter(|a| !gone(a)).collect(),
        now,
    ))
}

/// Frees a reservation parked past its retention; keeps anything else.
pub fn expired(cur: Option<&Owner>, now: u64) -> Change {
    match cur.and_then(|c| c.sticky.as_ref()?.parked_until) {
        Some(until) if until <= now => Change::Free,
        _ => Change::Keep,
    }
}

/// The operator's release of `mac`'s reservation on CNI network `network`, parked or live.
pub fn release_mac(cur: Option<&Owner>, network: &str, mac: &str) -> Change {
    if cur.is_some_and(|c| c.is_sticky_for(network, mac)) {
        Change::Free
    } else {
        Change::Keep
    }
}

/// Undoes a join that wrote `joined` over `before` (an ADD that failed later): `before` again,
/// if nobody changed the reservation since.
pub fn restore(cur: Option<&Owner>, joined: &Owner, before: &Owner) -> Change {
    if cur == Some(joined) {
        Change::Put(before.clone())
    } else {
        Change::Keep
    }
}

/// A MAC as the store keeps it (lowercase, colon-separated), or `None` when `s` is not one: six
/// hexadecimal octets separated by `:` or `-`.
pub fn normalise_mac(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.trim().split([':', '-']).collect();
    let ok = parts.len() == 6
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit()));
    ok.then(|| parts.join(":").to_ascii_lowercase())
}

#[cfg(test)]
#[path = "sticky_tests.rs"]
mod tests;
