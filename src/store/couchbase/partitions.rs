//! Which node of a Couchbase cluster owns which partition, decided in the
//! bucket by leases that the bucket's own clock ends (document expiry) and
//! that only the holder can extend (CAS): never by comparing the clocks of
//! two nodes.
//!
//! Documents (names without the key prefix):
//! - `partitions`: `{"count": P}`, written once by the first node to use the
//!   bucket; every later node goes by it, whatever its own settings say.
//! - `member::<node>`: a node's word that it is alive, which the bucket
//!   expires one lease after the node last wrote it.
//! - `members`: the nodes that have joined, which any node prunes of those
//!   whose `member::` document is gone (replaced with CAS).
//! - `partition::<p>`: `{"node": id}`, the lease of partition `p`, which the
//!   bucket expires one lease after its holder last wrote it. It is only
//!   ever created where absent (`insert`), extended by its holder (`replace`
//!   with the CAS of its last write) and given up by its holder (`remove`
//!   with that CAS).
//!
//! A holder trusts its lease for less than the bucket keeps it: from the
//! moment it *sent* the write that took or extended it, for a share
//! (`TRUSTED`) of the lease less the second Couchbase rounds expiries to.
//! So a reply that comes late, a clock that runs slower than the bucket's
//! (by less than a quarter), or a node that stalls past its lease never has
//! two nodes trusting one partition at once.
//!
//! Every round (a sixth of the lease) a node says it is alive, reads the
//! members and the partitions' leases, extends its own, and moves towards an
//! even spread: with N live nodes and P partitions each should hold ⌊P/N⌋
//! or ⌈P/N⌉. A node above ⌈P/N⌉ gives up its extras; the node holding the
//! most (the first by id among equals) gives up one while another is below
//! ⌊P/N⌋; a node takes free partitions up to ⌊P/N⌋, or up to ⌈P/N⌉ when no
//! node is below ⌊P/N⌋. A dead node's leases end by themselves, and the
//! others take its partitions at their next round.
//!
//! A lease held without a break is one *tenure* (`Tenures`): a partition's
//! own log is written by its owner with no lock, and read again only when
//! a new tenure begins.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::kv::Kv;
use crate::store::StoreError;

/// The partition count's document.
pub const COUNT: &str = "partitions";
/// The list of the nodes that joined.
pub const MEMBERS: &str = "members";

/// A lease is trusted for this share of its length after the write that
/// took or extended it was sent.
const TRUSTED: f64 = 0.75;
/// Couchbase keeps expiries in whole seconds: a document may go up to this
/// much before the lease asked for.
const EXPIRY_GRAIN: Duration = Duration::from_secs(1);
/// Requests in flight at once when reading many documents.
const IN_FLIGHT: usize = 16;

/// The name of partition `p`'s lease.
pub fn lease_doc(p: u32) -> String {
    format!("partition::{p}")
}

/// The name of `node`'s word that it is alive.
pub fn member_doc(node: &str) -> String {
    format!("member::{node}")
}

/// How many partitions a bucket new to interq is given, and how long a
/// lease lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSettings {
    pub partitions: u32,
    pub lease: Duration,
}

impl LeaseSettings {
    /// How often a node renews its leases and looks at the others'.
    pub fn round(&self) -> Duration {
        self.lease / 6
    }

    /// How long after sending the write that took or extended a lease its
    /// holder may count on it.
    pub fn trusted(&self) -> Duration {
        self.lease.mul_f64(TRUSTED).saturating_sub(EXPIRY_GRAIN)
    }
}

/// A node's clock: tokio's in service, a skewed one in the simulation.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn now(&self) -> Instant;
}

#[derive(Debug, Default, Clone, Copy)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A lease this node holds: the CAS of its last write, until when (by this
/// node's clock) it counts on it, and its tenure.
#[derive(Debug, Clone, Copy)]
struct Held {
    cas: u64,
    until: Instant,
    tenure: u64,
}

#[derive(Debug, Default)]
struct View {
    /// The bucket's partition count, once read.
    count: Option<u32>,
    held: BTreeMap<u32, Held>,
    /// The live members and the partitions' holders, as the last round saw
    /// them.
    members: Vec<String>,
    holders: Vec<Option<String>>,
    /// Rounds that ended without an error.
    rounds: u64,
    /// Leases taken and given up by this node.
    taken: u64,
    given_up: u64,
    /// The last tenure begun (`Ownership::tenure`).
    tenures: u64,
}

impl View {
    /// Counts on partition `p` until `until`: a lease it held already goes
    /// on in the same tenure, one it did not begins a new one.
    fn hold(&mut self, p: u32, cas: u64, until: Instant) {
        let tenure = match self.held.get(&p) {
            Some(h) => h.tenure,
            None => {
                self.tenures += 1;
                self.tenures
            }
        };
        self.held.insert(p, Held { cas, until, tenure });
    }
}

/// What a change or a request for partition `p` gets on a node that does
/// not own it.
pub fn not_owner(p: u32) -> StoreError {
    StoreError::Unavailable(format!(
        "partition {p} is not held by this node; its owner serves it"
    ))
}

/// Who may write a partition's log now (`CouchbaseLog::of_partition`).
pub trait Tenures: Send + Sync + std::fmt::Debug + 'static {
    /// While this node may act as partition `p`'s owner, the tenure it
    /// does so in: the same number for as long as no other node can have
    /// held the partition since, a new one once another could.
    fn tenure(&self, p: u32) -> Option<u64>;
}

impl<C: Clock> Tenures for Ownership<C> {
    fn tenure(&self, p: u32) -> Option<u64> {
        let now = self.clock.now();
        self.view()
            .held
            .get(&p)
            .filter(|h| h.until > now)
            .map(|h| h.tenure)
    }
}

/// The cluster as one node sees it, for `/status` and `/metrics`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterView {
    pub node: String,
    pub partitions: u32,
    pub lease_ms: u64,
    /// The partitions this node holds a lease on now.
    pub owned: Vec<u32>,
    /// Every live node with the partitions it held at this node's last
    /// round.
    pub members: Vec<MemberView>,
    /// Partitions no node held at the last round.
    pub unowned: Vec<u32>,
    pub rounds: u64,
    pub leases_taken: u64,
    pub leases_given_up: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    pub node: String,
    pub partitions: Vec<u32>,
}

#[derive(Serialize, Deserialize)]
struct Count {
    count: u32,
}

#[derive(Serialize, Deserialize)]
struct Naming {
    node: String,
}

/// One node's side of partition ownership.
#[derive(Debug)]
pub struct Ownership<C: Clock = TokioClock> {
    node: String,
    settings: LeaseSettings,
    clock: C,
    view: Mutex<View>,
    /// One round, or the leaving, at a time: a round under way when the
    /// node leaves could otherwise extend or take a lease after `leave`
    /// gave them up.
    one_at_a_time: tokio::sync::Mutex<()>,
    /// Set by `leave`: rounds after it do nothing.
    left: AtomicBool,
}

impl<C: Clock> Ownership<C> {
    pub fn new(node: impl Into<String>, settings: LeaseSettings, clock: C) -> Self {
        Self {
            node: node.into(),
            settings,
            clock,
            view: Mutex::default(),
            one_at_a_time: tokio::sync::Mutex::new(()),
            left: AtomicBool::new(false),
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    /// The bucket's partition count, once a round has read it.
    pub fn partitions(&self) -> Option<u32> {
        self.view().count
    }

    pub fn settings(&self) -> LeaseSettings {
        self.settings
    }

    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `leave` was called: rounds do nothing from then on.
    pub fn has_left(&self) -> bool {
        self.left.load(Ordering::SeqCst)
    }

    /// Whether this node may act as partition `p`'s owner now.
    pub fn owns(&self, p: u32) -> bool {
        let now = self.clock.now();
        self.view().held.get(&p).is_some_and(|h| h.until > now)
    }

    /// The partitions this node may act as the owner of now.
    pub fn owned(&self) -> Vec<u32> {
        let now = self.clock.now();
        let view = self.view();
        view.held
            .iter()
            .filter(|(_, h)| h.until > now)
            .map(|(p, _)| *p)
            .collect()
    }

    pub fn cluster(&self) -> ClusterView {
        let owned = self.owned();
        let view = self.view();
        let mut by_member: BTreeMap<&str, Vec<u32>> = view
            .members
            .iter()
            .map(|m| (m.as_str(), Vec::new()))
            .collect();
        let mut unowned = Vec::new();
        for (p, holder) in view.holders.iter().enumerate() {
            match holder {
                Some(node) => by_member.entry(node).or_default().push(p as u32),
                None => unowned.push(p as u32),
            }
        }
        ClusterView {
            node: self.node.clone(),
            partitions: view.count.unwrap_or(0),
            lease_ms: self.settings.lease.as_millis() as u64,
            owned,
            members: by_member
                .into_iter()
                .map(|(node, partitions)| MemberView {
                    node: node.to_owned(),
                    partitions,
                })
                .collect(),
            unowned,
            rounds: view.rounds,
            leases_taken: view.taken,
            leases_given_up: view.given_up,
        }
    }

    fn naming(&self) -> Vec<u8> {
        serde_json::to_vec(&Naming {
            node: self.node.clone(),
        })
        .expect("json encodes")
    }

    /// The bucket's partition count: written by the first node to ask.
    async fn count(&self, kv: &impl Kv) -> Result<u32, StoreError> {
        if let Some(count) = self.view().count {
            return Ok(count);
        }
        let wanted = self.settings.partitions;
        let mut found = None;
        for _ in 0..3 {
            if let Some((bytes, _)) = kv.get(COUNT).await? {
                let c: Count = serde_json::from_slice(&bytes)
                    .map_err(|e| StoreError::Corrupt(format!("{COUNT}: {e}")))?;
                found = Some(c.count);
                break;
            }
            let bytes = serde_json::to_vec(&Count { count: wanted }).expect("json encodes");
            if kv.insert(COUNT, &bytes, None, true).await?.is_some() {
                found = Some(wanted);
                break;
            }
        }
        let count = found.ok_or_else(|| {
            StoreError::Unavailable(format!("{COUNT}: written and gone again, three times"))
        })?;
        if count == 0 {
            return Err(StoreError::Corrupt(format!("{COUNT}: a count of 0")));
        }
        if count != wanted {
            tracing::warn!(
                configured = wanted,
                bucket = count,
                "store.couchbase.partitions differs from the count the bucket was first used with, which holds"
            );
        }
        let mut view = self.view();
        view.count = Some(count);
        view.holders.resize(count as usize, None);
        Ok(count)
    }

    /// Reads documents by name, a few at a time.
    async fn read_all(
        kv: &impl Kv,
        names: Vec<String>,
    ) -> Result<Vec<Option<(Vec<u8>, u64)>>, StoreError> {
        use futures_util::{StreamExt, TryStreamExt};
        futures_util::stream::iter(names)
            .map(|name| async move { kv.get(&name).await })
            .buffered(IN_FLIGHT)
            .try_collect()
            .await
    }

    /// The live members, this node among them: it adds itself to the list
    /// and takes off those whose word that they are alive is gone.
    async fn members(&self, kv: &impl Kv) -> Result<Vec<String>, StoreError> {
        for _ in 0..3 {
            let (listed, cas): (Vec<String>, Option<u64>) = match kv.get(MEMBERS).await? {
                Some((bytes, cas)) => (
                    serde_json::from_slice(&bytes)
                        .map_err(|e| StoreError::Corrupt(format!("{MEMBERS}: {e}")))?,
                    Some(cas),
                ),
                None => (Vec::new(), None),
            };
            let others: Vec<&String> = listed.iter().filter(|m| **m != self.node).collect();
            let words = Self::read_all(kv, others.iter().map(|m| member_doc(m)).collect()).await?;
            let mut live: BTreeSet<String> = others
                .into_iter()
                .zip(words)
                .filter(|(_, word)| word.is_some())
                .map(|(m, _)| m.clone())
                .collect();
            live.insert(self.node.clone());
            let live: Vec<String> = live.into_iter().collect();
            let mut sorted = listed.clone();
            sorted.sort();
            if sorted == live {
                return Ok(live);
            }
            let bytes = serde_json::to_vec(&live).expect("json encodes");
            let written = match cas {
                Some(cas) => kv.replace(MEMBERS, &bytes, cas, None, false).await?,
                None => kv.insert(MEMBERS, &bytes, None, false).await?,
            };
            if written.is_some() {
                return Ok(live);
            }
        }
        Err(StoreError::Unavailable(format!(
            "{MEMBERS}: changed under this node three times running"
        )))
    }

    /// One round: says this node is alive, extends its leases, and takes or
    /// gives up partitions towards an even spread. A failed call ends the
    /// round; the leases it did not extend run out by themselves.
    pub async fn round(&self, kv: &impl Kv) -> Result<(), StoreError> {
        let _alone = self.one_at_a_time.lock().await;
        if self.left.load(Ordering::SeqCst) {
            return Ok(());
        }
        let count = self.count(kv).await?;
        kv.upsert(
            &member_doc(&self.node),
            b"{}",
            Some(self.settings.lease),
            false,
        )
        .await?;
        let members = self.members(kv).await?;
        let leases = Self::read_all(kv, (0..count).map(lease_doc).collect()).await?;
        let mine = self.naming();
        let mut holders: Vec<Option<String>> = Vec::with_capacity(count as usize);
        let mut failed = None;
        for (p, lease) in leases.into_iter().enumerate() {
            let p = p as u32;
            let Some((bytes, cas)) = lease else {
                self.view().held.remove(&p);
                holders.push(None);
                continue;
            };
            if bytes != mine {
                // Not this node's (any more): its lease lapsed and another
                // took it, which the bucket decided.
                self.view().held.remove(&p);
                let holder = serde_json::from_slice::<Naming>(&bytes)
                    .map(|n| n.node)
                    .unwrap_or_else(|_| "?".into());
                holders.push(Some(holder));
                continue;
            }
            // This node's, known or not: an `insert` whose reply was lost
            // made it so. Extending it with the CAS just read is safe, since
            // only this node ever writes a lease naming it.
            let sent = self.clock.now();
            match kv
                .replace(&lease_doc(p), &mine, cas, Some(self.settings.lease), false)
                .await
            {
                Ok(Some(cas)) => {
                    let until = sent + self.settings.trusted();
                    self.view().hold(p, cas, until);
                    holders.push(Some(self.node.clone()));
                }
                Ok(None) => {
                    self.view().held.remove(&p);
                    holders.push(None);
                }
                Err(e) => {
                    // Its reply may be lost after it took effect: the CAS
                    // held is then stale, and the next round reads the new
                    // one. Until then the lease counts as before.
                    holders.push(Some(self.node.clone()));
                    failed.get_or_insert(e);
                }
            }
        }
        {
            let mut view = self.view();
            view.members = members.clone();
            view.holders = holders.clone();
        }
        if let Some(e) = failed {
            return Err(e);
        }
        self.spread(kv, &members, &holders).await?;
        self.view().rounds += 1;
        Ok(())
    }

    /// Takes or gives up partitions towards an even spread over `members`.
    async fn spread(
        &self,
        kv: &impl Kv,
        members: &[String],
        holders: &[Option<String>],
    ) -> Result<(), StoreError> {
        let count = holders.len();
        let n = members.len().max(1);
        let (floor, ceil) = (count / n, count.div_ceil(n));
        let mut held: BTreeMap<&str, usize> = members.iter().map(|m| (m.as_str(), 0)).collect();
        for node in holders.iter().flatten() {
            if let Some(c) = held.get_mut(node.as_str()) {
                *c += 1;
            }
        }
        let mine = held.get(self.node.as_str()).copied().unwrap_or(0);
        let short = held.values().any(|c| *c < floor);
        // The node holding the most, the first by id among equals.
        let richest = held
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(m, _)| *m);
        let give_up = if mine > ceil {
            mine - ceil
        } else if short && mine > floor && richest == Some(self.node.as_str()) {
            1
        } else {
            0
        };
        if give_up > 0 {
            let mut ours: Vec<u32> = self.view().held.keys().copied().collect();
            ours.reverse();
            for p in ours.into_iter().take(give_up) {
                self.give_up(kv, p).await?;
            }
            return Ok(());
        }
        let room = if short {
            floor.saturating_sub(mine)
        } else {
            ceil.saturating_sub(mine)
        };
        if room == 0 {
            return Ok(());
        }
        // Start from a place of this node's own, so that nodes taking at
        // once do not all race for partition 0.
        let start = self
            .node
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize))
            % count;
        let free = (0..count)
            .map(|i| (start + i) % count)
            .filter(|p| holders[*p].is_none());
        let mine = self.naming();
        let mut took = 0;
        for p in free {
            if took == room {
                break;
            }
            let p = p as u32;
            let sent = self.clock.now();
            if let Some(cas) = kv
                .insert(&lease_doc(p), &mine, Some(self.settings.lease), false)
                .await?
            {
                let until = sent + self.settings.trusted();
                {
                    let mut view = self.view();
                    view.hold(p, cas, until);
                    view.taken += 1;
                    if let Some(h) = view.holders.get_mut(p as usize) {
                        *h = Some(self.node.clone());
                    }
                }
                took += 1;
            }
        }
        Ok(())
    }

    /// Stops counting on partition `p`, then removes its lease.
    async fn give_up(&self, kv: &impl Kv, p: u32) -> Result<(), StoreError> {
        let held = {
            let mut view = self.view();
            let held = view.held.remove(&p);
            if held.is_some() {
                view.given_up += 1;
                if let Some(h) = view.holders.get_mut(p as usize) {
                    *h = None;
                }
            }
            held
        };
        if let Some(held) = held {
            kv.remove(&lease_doc(p), Some(held.cas)).await?;
        }
        Ok(())
    }

    /// Gives up every lease and leaves the members, at shutdown, so that
    /// the others take the partitions at once rather than after the lease.
    pub async fn leave(&self, kv: &impl Kv) -> Result<(), StoreError> {
        if self.left.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        // A round stuck on a bucket that does not answer is not waited for
        // past a lease: what it holds then runs out by itself.
        let _alone = tokio::time::timeout(self.settings.lease, self.one_at_a_time.lock())
            .await
            .map_err(|_| {
                StoreError::Unavailable("a round of partition leases is still under way".into())
            })?;
        let ours: Vec<u32> = self.view().held.keys().copied().collect();
        let mut result = Ok(());
        for p in ours {
            result = result.and(self.give_up(kv, p).await);
        }
        for _ in 0..3 {
            let Some((bytes, cas)) = kv.get(MEMBERS).await? else {
                break;
            };
            let mut listed: Vec<String> = serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("{MEMBERS}: {e}")))?;
            listed.retain(|m| *m != self.node);
            let bytes = serde_json::to_vec(&listed).expect("json encodes");
            if kv
                .replace(MEMBERS, &bytes, cas, None, false)
                .await?
                .is_some()
            {
                break;
            }
        }
        kv.remove(&member_doc(&self.node), None).await?;
        result
    }
}
