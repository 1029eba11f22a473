//! What an IPAM store must do, whichever it is (the embedded file store, etcd): reserve the lowest
//! free address of a range for an owner, find and release an owner's reservations, list them, and
//! collect those whose owner is gone. Every store keeps an address unique within its pool.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::range::IpRange;

/// Who holds a reservation: the attachment, and the pod when the runtime said which.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// CNI_CONTAINERID.
    pub container_id: String,
    /// CNI_IFNAME.
    pub ifname: String,
    /// `namespace/name` from K8S_POD_NAMESPACE and K8S_POD_NAME, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_ref: Option<String>,
    /// The CNI network (`name` of the network configuration) that made the reservation: GC of
    /// one network releases only its own, since networks may share a pool (the default
    /// `network_name`). Reservations written before this field existed have none, and GC
    /// leaves them to DEL and to the operators' tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Set when the reservation belongs to a MAC (`sticky_by_mac`), not to one attachment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sticky: Option<Sticky>,
}

/// A reservation that belongs to a MAC: the VM's launcher pods come and go (restarts, live
/// migrations), the address stays. The owner's container ID and ifname are its latest
/// attachment; `also` lists the others live at the same time (the source of a migration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sticky {
    /// The MAC, lowercase `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// How long a parked reservation waits for its MAC, in seconds.
    pub retention_s: u64,
    /// Further live attachments that hold the address (the other launcher pod of a migration).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub also: Vec<Attachment>,
    /// Parked (no attachment holds it) until this time, seconds since the epoch: nobody but the
    /// MAC gets it before, GC and the operators' tool free it after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parked_until: Option<u64>,
}

/// One attachment of a sticky reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// CNI_CONTAINERID.
    pub container_id: String,
    /// CNI_IFNAME.
    pub ifname: String,
    /// `namespace/name`, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_ref: Option<String>,
}

impl Owner {
    /// The attachment key DEL, CHECK and GC match on.
    pub fn attachment(&self) -> (String, String) {
        (self.container_id.clone(), self.ifname.clone())
    }

    /// Whether the reservation waits, parked, for its MAC.
    pub fn is_parked(&self) -> bool {
        self.sticky
            .as_ref()
            .is_some_and(|s| s.parked_until.is_some())
    }

    /// The attachments that hold the address now: none when parked; the owner's, and for a
    /// sticky reservation the others of `also`.
    pub fn live_attachments(&self) -> Vec<(String, String)> {
        if self.is_parked() {
            return Vec::new();
        }
        let mut out = vec![self.attachment()];
        if let Some(s) = &self.sticky {
            out.extend(
                s.also
                    .iter()
                    .map(|a| (a.container_id.clone(), a.ifname.clone())),
            );
        }
        out
    }

    /// Whether (container ID, ifname) holds the address now.
    pub fn holds(&self, container_id: &str, ifname: &str) -> bool {
        self.live_attachments()
            .iter()
            .any(|(c, i)| c == container_id && i == ifname)
    }

    /// Whether this is the sticky reservation of `mac` made by CNI network `network`.
    pub fn is_sticky_for(&self, network: &str, mac: &str) -> bool {
        self.network.as_deref() == Some(network)
            && self.sticky.as_ref().is_some_and(|s| s.mac == mac)
    }

    /// The index entries a store finds the reservation by, as `c|<cid>|<ifname>` (each live
    /// attachment), `p|<pod>|<ifname>` (an ordinary reservation's pod: a restarted sandbox gets
    /// its address) and `m|<network>|<mac>` (a sticky reservation's MAC). Stores escape the parts
    /// as their keys need, through `escape`.
    pub fn index_entries(&self, escape: impl Fn(&str) -> String) -> Vec<String> {
        let mut out: Vec<String> = self
            .live_attachments()
            .iter()
            .map(|(c, i)| format!("c|{}|{}", escape(c), escape(i)))
            .collect();
        match &self.sticky {
            None => out.extend(
                self.pod_ref
                    .as_deref()
                    .map(|p| format!("p|{}|{}", escape(p), escape(&self.ifname))),
            ),
            Some(s) => out.push(mac_entry(
                self.network.as_deref().unwrap_or_default(),
                &s.mac,
                &escape,
            )),
        }
        out
    }
}

/// The index entry a sticky reservation of `mac` made by CNI network `network` is found by.
pub fn mac_entry(network: &str, mac: &str, escape: impl Fn(&str) -> String) -> String {
    format!("m|{}|{}", escape(network), escape(mac))
}

/// What a change of one reservation does: keep it, write this owner, or free the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Leave it as it is.
    Keep,
    /// Write this owner (the address stays reserved).
    Put(Owner),
    /// Free the address.
    Free,
}

/// Seconds since the epoch, what `parked_until` counts in.
pub fn now_s() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One reserved address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    /// The address.
    pub ip: IpAddr,
    /// Who holds it.
    #[serde(flatten)]
    pub owner: Owner,
}

/// Where reservations of one network live: `network_name`, and the range's CIDR when ranges must
/// not share addresses (`enable_overlapping_ranges: false` makes each CIDR its own pool).
///
/// This is what whereabouts names an IPPool by (network name and normalised CIDR). Everything
/// else about a range (start, end, excludes, gateway) is an allocation parameter: editing it in a
/// live NAD keeps the pool, so the new parameters see the addresses the old pods hold.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PoolId {
    /// `network_name` ("" is the default network).
    pub network: String,
    /// The normalised CIDR (`10.0.0.0/24`) when the range is a pool of its own.
    pub cidr: Option<String>,
}

impl PoolId {
    /// The pool `range` allocates from.
    pub fn for_range(network: &str, range: &IpRange, overlapping: bool) -> PoolId {
        PoolId {
            network: network.to_string(),
            cidr: (!overlapping).then(|| range.network.to_string()),
        }
    }

    /// The pool a legacy pool identity maps to: releases before this one named a separate pool
    /// by the whole range key (`<cidr>:<start>-<end>[:x=...][:gw=...]`), which forked the pool
    /// whenever a NAD's excludes or bounds were edited. The CIDR is the key's first part.
    pub fn from_legacy_range_key(network: &str, key: &str) -> PoolId {
        // The CIDR ends with its prefix length: `/` then digits (IPv6 addresses hold `:` too).
        let cidr = key.find('/').map_or(key, |slash| {
            let digits = key[slash + 1..]
                .bytes()
                .take_while(u8::is_ascii_digit)
                .count();
            &key[..slash + 1 + digits]
        });
        PoolId {
            network: network.to_string(),
            cidr: Some(cidr.to_string()),
        }
    }
}

/// How a store describes a pool beside its reservations (`pool.json`, `<prefix>/pools/<pool>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolDescription {
    /// `network_name`.
    pub network: String,
    /// The CIDR of a pool of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
    /// The whole range key that named a pool of its own in earlier releases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
}

impl PoolDescription {
    /// The description of pool `id`.
    pub fn of(id: &PoolId) -> PoolDescription {
        PoolDescription {
            network: id.network.clone(),
            cidr: id.cidr.clone(),
            range: None,
        }
    }

    /// The pool it describes (a legacy pool by its old range key).
    pub fn id(&self) -> PoolId {
        PoolId {
            network: self.network.clone(),
            cidr: self.cidr.clone().or_else(|| self.range.clone()),
        }
    }
}

/// What a store's `verify` found: files (or keys) parsed, and every disagreement between the
/// reservations, the owner index and the hints.
#[derive(Debug, Default)]
pub struct Verified {
    /// Files or keys parsed.
    pub files: usize,
    /// Damage: each line names the file or key and what is wrong with it.
    pub problems: Vec<String>,
}

/// What a store can fail with; each maps to a CNI error code.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Every allocatable address of the range is reserved (code 7 would blame the config; this
    /// is the plugin-specific 102 "range exhausted").
    #[error("range {range} is exhausted: all {capacity} allocatable addresses are reserved")]
    Exhausted {
        /// The range key.
        range: String,
        /// Its allocatable addresses.
        capacity: u128,
    },
    /// A stored file or value does not parse: never reset silently, an operator must look.
    #[error("store data {what} is corrupt: {why}; inspect or remove it with multihome-ipam")]
    Corrupt {
        /// The file or key.
        what: String,
        /// The parse error.
        why: String,
    },
    /// The store cannot be reached or written.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A transient failure (timeout, lost quorum): the runtime may retry.
    #[error("store busy: {0}")]
    Transient(String),
    /// The requested address is another attachment's.
    #[error("requested address {ip} is held by {holder}")]
    Taken {
        /// The address.
        ip: IpAddr,
        /// Who holds it (container ID, interface, pod).
        holder: String,
    },
}

/// How a holder is named in [`StoreError::Taken`].
pub fn describe_owner(o: &Owner) -> String {
    let pod = o
        .pod_ref
        .as_deref()
        .map(|p| format!(", pod {p}"))
        .unwrap_or_default();
    match &o.sticky {
        Some(s) if s.parked_until.is_some() => format!(
            "MAC {} (parked until {} s since the epoch, last container {} interface {}{pod})",
            s.mac,
            s.parked_until.unwrap_or_default(),
            o.container_id,
            o.ifname
        ),
        Some(s) => format!(
            "MAC {} (container {} interface {}{pod})",
            s.mac, o.container_id, o.ifname
        ),
        None => format!("container {} interface {}{pod}", o.container_id, o.ifname),
    }
}

/// Plugin-specific CNI code: a requested address is another attachment's.
pub const CODE_TAKEN: u32 = 103;

/// Plugin-specific CNI code: the range has no free address.
pub const CODE_EXHAUSTED: u32 = 102;

impl From<StoreError> for cni::Error {
    fn from(e: StoreError) -> cni::Error {
        let code = match &e {
            StoreError::Exhausted { .. } => CODE_EXHAUSTED,
            StoreError::Corrupt { .. } | StoreError::Unavailable(_) => cni::code::IO_FAILURE,
            StoreError::Transient(_) => cni::code::TRY_AGAIN_LATER,
            StoreError::Taken { .. } => CODE_TAKEN,
        };
        cni::Error::new(code, e.to_string())
    }
}

/// A reservation store.
pub trait Store {
    /// The owner's address in `range`, reserving the lowest free one if it holds none. An owner
    /// found by `pod_ref` + ifname under another container ID is handed its address again (a
    /// restarted sandbox) and the reservation moves to the new container ID.
    fn reserve(&self, pool: &PoolId, range: &IpRange, owner: &Owner) -> Result<IpAddr, StoreError>;
    /// Reserves exactly `ip` (in `range`'s network) for `owner`: fine when it is already the
    /// owner's, or its pod's under an earlier sandbox (handed over, as [`Store::reserve`] does);
    /// [`StoreError::Taken`] when anyone else holds it.
    fn reserve_exact(
        &self,
        pool: &PoolId,
        range: &IpRange,
        ip: IpAddr,
        owner: &Owner,
    ) -> Result<(), StoreError>;
    /// Releases one address if `owner` holds it (used to undo a partial ADD).
    fn release_ip(&self, pool: &PoolId, ip: IpAddr, owner: &Owner) -> Result<bool, StoreError>;
    /// Changes the reservation of `ip` as `decide` says, given its holder as read (none when
    /// free), atomically: on a concurrent change the store reads again and asks again. Returns
    /// the holder `decide` was last given and the change applied. `decide` must be idempotent
    /// (asked again after its own change was applied, it keeps).
    fn update(
        &self,
        pool: &PoolId,
        ip: IpAddr,
        decide: &dyn Fn(Option<&Owner>) -> Change,
    ) -> Result<(Option<Owner>, Change), StoreError>;
    /// The sticky reservations of `mac` that CNI network `network` made in the pool.
    fn find_sticky(
        &self,
        pool: &PoolId,
        network: &str,
        mac: &str,
    ) -> Result<Vec<Reservation>, StoreError>;
    /// Releases everything (container ID, ifname) holds in the pool; returns what was freed. A
    /// sticky reservation is not freed: the attachment leaves it, and when none is left it is
    /// parked for its MAC ([`crate::sticky::leave`]).
    fn release(
        &self,
        pool: &PoolId,
        container_id: &str,
        ifname: &str,
    ) -> Result<Vec<IpAddr>, StoreError>;
    /// What (container ID, ifname) holds in the pool.
    fn find(
        &self,
        pool: &PoolId,
        container_id: &str,
        ifname: &str,
    ) -> Result<Vec<Reservation>, StoreError>;
    /// Every reservation of the pool, ordered by address.
    fn list(&self, pool: &PoolId) -> Result<Vec<Reservation>, StoreError>;
    /// Every pool the store holds.
    fn pools(&self) -> Result<Vec<PoolId>, StoreError>;
    /// Releases every reservation that CNI network `network` made whose (container ID,
    /// ifname) is not in `valid`; returns them. Sticky reservations lose their attachments that
    /// are not valid, park when none is left, and are freed once parked past their retention
    /// ([`crate::sticky::collect`]). Other networks' reservations in the same pool are
    /// never touched. Only reservations listed before the first release can go, and each
    /// release checks the owner again, so an ADD racing the GC keeps its address.
    fn gc(
        &self,
        pool: &PoolId,
        network: &str,
        valid: &BTreeSet<(String, String)>,
    ) -> Result<Vec<Reservation>, StoreError> {
        collect_pool(self, pool, network, valid, now_s())
    }
    /// Ok when ADD could be served: reachable, writable, readable.
    fn status(&self) -> Result<(), StoreError>;
}

/// GC of one pool through [`Store::update`]: every reservation of `network` listed now is
/// decided on again, as it is when changed ([`crate::sticky::collect`]); returns the freed ones.
pub fn collect_pool<S: Store + ?Sized>(
    store: &S,
    pool: &PoolId,
    network: &str,
    valid: &BTreeSet<(String, String)>,
    now: u64,
) -> Result<Vec<Reservation>, StoreError> {
    let mut freed = Vec::new();
    for r in store.list(pool)? {
        if r.owner.network.as_deref() != Some(network) {
            continue;
        }
        let listed = r.owner.clone();
        let decide = |cur: Option<&Owner>| crate::sticky::collect(cur, &listed, valid, now);
        if let (_, Change::Free) = store.update(pool, r.ip, &decide)? {
            freed.push(r);
        }
    }
    Ok(freed)
}
