//! The engine's state shared by several nodes through one Couchbase bucket:
//! a totally ordered log of changes, plus snapshots, in key-value documents
//! only (no N1QL). `docs/couchbase.md` describes the documents and why each
//! step is safe when nodes race.
//!
//! Every node keeps the whole state in memory and changes it only under the
//! cluster lock, after applying every entry before the one it writes: so a
//! change is always computed on the latest state, and the log's order is the
//! one order of every change in the cluster. A change is committed by
//! inserting the next log entry (insert fails if the entry exists, so two
//! nodes can never both commit entry N; the one that loses reads its state
//! back). Until then no other node sees it, and a node that dies before it
//! loses nothing that was acknowledged.
//!
//! The same code is a partition's own log (`of_partition`): there the
//! partition's lease stands in for the lock, so its owner writes with no
//! lock and, within one tenure, reads nothing first; the `insert` still
//! decides, so a former owner's late entry is never absorbed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex as AsyncMutex, Notify, OwnedMutexGuard};

use super::chain::{self, Links};
use super::group::{Done, Held, Pipeline, Writing};
use super::kv::{partition_space, Kv, Scoped};
use super::lock::{self, LockDocs};
use super::partitions::{not_owner, Ownership, Tenures, TokioClock};
use super::retention::{self, Docs, Written};
use super::settings::CouchbaseSettings;
use crate::store::engine::{Batch, Engine, Log, News, Op, Payloads, Retention};
use crate::store::{StoreError, StoreStats};

/// The engine over a Couchbase bucket.
#[cfg(feature = "couchbase")]
pub type CouchbaseStore = Engine<CouchbaseLog<super::sdk::SdkBucket>>;

#[cfg(feature = "couchbase")]
impl Engine<CouchbaseLog<super::sdk::SdkBucket>> {
    /// Connects to the bucket and builds the state from the latest snapshot
    /// and the log after it.
    pub async fn open_couchbase(
        settings: CouchbaseSettings,
        retention: Retention,
    ) -> Result<Self, StoreError> {
        let bucket = super::sdk::SdkBucket::connect(settings.clone()).await?;
        Engine::join_shared(bucket, settings, retention).await
    }
}

impl<K: Kv> Engine<CouchbaseLog<K>> {
    /// The engine over any bucket `kv` answers for, as one node of those
    /// that share it.
    pub async fn open_shared(
        kv: K,
        settings: CouchbaseSettings,
        retention: Retention,
    ) -> Result<Self, StoreError> {
        Engine::open(CouchbaseLog::over(kv, settings), retention).await
    }

    /// `open_shared`, for a node that takes part in the partitions' leases
    /// as a node in service does.
    pub async fn join_shared(
        kv: K,
        settings: CouchbaseSettings,
        retention: Retention,
    ) -> Result<Self, StoreError> {
        let log = CouchbaseLog::over(kv, settings);
        log.join_cluster();
        Engine::open(log, retention).await
    }
}

impl<K: Kv> Engine<CouchbaseLog<Scoped<K>>> {
    /// Partition `partition`'s engine on the node `tenures` speaks for: its
    /// state read from the partition's own log, which it changes only while
    /// it owns the partition (`CouchbaseLog::of_partition`).
    pub async fn open_partition(
        kv: Arc<K>,
        settings: CouchbaseSettings,
        retention: Retention,
        tenures: Arc<dyn Tenures>,
        partition: u32,
    ) -> Result<Self, StoreError> {
        let log = CouchbaseLog::of_partition(kv, settings, tenures, partition);
        Engine::open(log, retention).await
    }
}

/// The format of the snapshot pointer and what it points to; checked when a
/// node starts. 2: entries and snapshots may hold copies' log heads, and
/// `output::` documents their pages. 3: they may hold batches, and copies'
/// records that end with their place in a workflow. 4: they may hold the
/// throughput chart's samples and the publish log. 5: entries and snapshots
/// are kept until a newer snapshot retires them (`retention`), which an
/// older node would not do. 6: entries name the entry before them
/// (`Op::Link`, `chain`), and the pointer names its entry's id.
pub const FORMAT_VERSION: u64 = 6;

/// A node keeps the cluster lock from one of its changes to the next while
/// more of them wait (saving the round trips of letting go, taking it again
/// and catching up), but for no longer than this, so that other nodes get
/// their turn, and far within the lease.
const KEEP_AT_MOST: Duration = Duration::from_millis(200);
/// Nor for more changes than this.
const KEEP_CHANGES: u32 = 256;
/// A kept lock no change of this node takes up is let go after this.
const KEEP_IDLE: Duration = Duration::from_millis(20);
/// Entries a node writes at once: the next is written while the last is in
/// flight (its changes computed on the state that holds the last), so a
/// node is not held to one entry per round trip. `chain` keeps an entry
/// written after one that failed from being read.
const ENTRIES_IN_FLIGHT: usize = 2;
/// A snapshot every this many entries (and at the first change after a
/// start that found none), so that a starting node reads a bounded log.
const SNAPSHOT_EVERY: u64 = 10_000;
/// Bytes of one snapshot document (Couchbase's limit is 20 MiB).
const CHUNK_BYTES: usize = 4 << 20;

/// Whether a held lock may serve another change.
fn young(held: &Held) -> bool {
    held.since.elapsed() < KEEP_AT_MOST && held.changes < KEEP_CHANGES
}

/// The connection to the bucket, and this node's side of the cluster lock.
#[derive(Debug)]
pub struct CouchbaseLog<K: Kv> {
    inner: Arc<Inner<K>>,
}

struct Inner<K: Kv> {
    kv: K,
    settings: CouchbaseSettings,
    node: String,
    /// One change of this node at a time.
    turns: Arc<AsyncMutex<()>>,
    /// The entry of the last snapshot written or read.
    snapshot_seq: AtomicU64,
    /// A retirement (`retention::retire`) is under way.
    retiring: std::sync::atomic::AtomicBool,
    /// This node is writing a snapshot.
    snapshotting: std::sync::atomic::AtomicBool,
    /// This node let go of the lock at the end of a busy turn.
    busy: std::sync::atomic::AtomicBool,
    /// This node found itself behind a snapshot: read the state back.
    behind: std::sync::atomic::AtomicBool,
    /// The cluster lock as this node holds it, and the entries it is
    /// writing (`group`).
    pipeline: std::sync::Mutex<Pipeline>,
    /// Told when an entry's write ends, and when the flusher stops.
    written: Notify,
    /// Told when a change joins an entry, for the flusher to take it up
    /// while the last is in flight.
    staged: Notify,
    /// The ids of the latest entries (`chain`).
    links: std::sync::Mutex<Links>,
    /// The payloads and log pages of entries staged and not yet written,
    /// by name, with the entry that writes them: a change computed on the
    /// state holding them (the next append to a copy's log reads the page
    /// the last one ended in) reads them from here.
    unwritten: std::sync::Mutex<HashMap<String, (u64, Vec<u8>)>>,
    /// The payloads entries staged here drop, by name, with the entry: one
    /// written again meanwhile waits for its removal (`write_ahead`).
    dropping: std::sync::Mutex<HashMap<String, u64>>,
    /// This node's changes waiting for their turn.
    waiting: AtomicUsize,
    /// Every entry up to this one is in the bucket.
    durable: AtomicU64,
    /// Log entries written by this node, and the changes in them.
    commits: AtomicU64,
    writes: AtomicU64,
    /// The partitions this node holds leases on (`partitions`), once it
    /// has joined them.
    ownership: Ownership<TokioClock>,
    joined: std::sync::atomic::AtomicBool,
    /// Who may write this log.
    writer: Writer,
}

/// Who writes a log.
#[derive(Debug)]
enum Writer {
    /// Any node, under the cluster lock.
    Lock,
    /// Partition `partition`'s owner alone, with no lock: while its tenure
    /// lasts, no other node writes (`partitions`).
    Owner {
        partition: u32,
        tenures: Arc<dyn Tenures>,
    },
}

impl<K: Kv> std::fmt::Debug for Inner<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CouchbaseLog")
            .field("settings", &self.settings)
            .field("node", &self.node)
            .finish()
    }
}

/// The right to change the state: this node's turn (one change computed at
/// a time), under the cluster lock. A turn dropped without being staged
/// (the change failed, say a report from a worker that does not hold the
/// lease) lets go of the lock when nothing else needs it.
pub struct Turn<K: Kv> {
    mine: Option<OwnedMutexGuard<()>>,
    /// How the entry this change joined is written, once staged.
    done: Option<Arc<Done>>,
    log: Arc<Inner<K>>,
}

impl<K: Kv> Drop for Turn<K> {
    fn drop(&mut self) {
        // Only the holder of the turn computes: clear the mark before the
        // next change may set it.
        self.log.pipeline().computing = false;
        drop(self.mine.take());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let log = Arc::clone(&self.log);
            runtime.spawn(async move { log.settle().await });
        }
    }
}

impl<K: Kv> std::fmt::Debug for Turn<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn")
            .field("staged", &self.done.is_some())
            .finish()
    }
}

/// Counts a change among those waiting for their turn while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// What a change's `begin` does next.
enum Next {
    /// The lock is held and has room: compute.
    Go,
    /// The lock has served its while: renew it, unless another node waits.
    Renew(Held),
    /// The lock is not renewed: let go of it, then take it again.
    LetGo(Held),
    /// Take the lock.
    Take,
}

impl<K: Kv> CouchbaseLog<K> {
    /// This node's log over the bucket `kv` answers for.
    pub fn over(kv: K, settings: CouchbaseSettings) -> Self {
        Self::written_by(kv, settings, Writer::Lock)
    }

    fn written_by(kv: K, settings: CouchbaseSettings, writer: Writer) -> Self {
        let node = uuid::Uuid::new_v4().simple().to_string();
        Self {
            inner: Arc::new(Inner {
                kv,
                ownership: Ownership::new(node.clone(), settings.leases(), TokioClock),
                joined: std::sync::atomic::AtomicBool::new(false),
                writer,
                node,
                settings,
                turns: Arc::new(AsyncMutex::new(())),
                snapshot_seq: AtomicU64::new(0),
                retiring: std::sync::atomic::AtomicBool::new(false),
                snapshotting: std::sync::atomic::AtomicBool::new(false),
                behind: std::sync::atomic::AtomicBool::new(false),
                busy: std::sync::atomic::AtomicBool::new(false),
                pipeline: std::sync::Mutex::default(),
                written: Notify::new(),
                staged: Notify::new(),
                links: std::sync::Mutex::default(),
                unwritten: std::sync::Mutex::default(),
                dropping: std::sync::Mutex::default(),
                waiting: AtomicUsize::new(0),
                durable: AtomicU64::new(0),
                commits: AtomicU64::new(0),
                writes: AtomicU64::new(0),
            }),
        }
    }
}

impl<K: Kv> CouchbaseLog<Scoped<K>> {
    /// Partition `partition`'s own log in the bucket `kv` answers for (its
    /// documents under `partition_space`), written only while `tenures`
    /// says this node owns the partition; a change asked for otherwise is
    /// refused. A change in a new tenure reads what the owners before
    /// wrote first; within one, none is read, and no lock is taken.
    pub fn of_partition(
        kv: Arc<K>,
        settings: CouchbaseSettings,
        tenures: Arc<dyn Tenures>,
        partition: u32,
    ) -> Self {
        Self::written_by(
            Scoped::new(kv, partition_space(partition)),
            settings,
            Writer::Owner { partition, tenures },
        )
    }
}

impl<K: Kv> CouchbaseLog<K> {
    /// Takes part in the partitions' leases from now on: a round at once,
    /// then every sixth of a lease, until the log leaves or is dropped.
    pub fn join_cluster(&self) {
        if self.inner.joined.swap(true, Ordering::SeqCst) {
            return;
        }
        tokio::spawn(hold_leases(Arc::downgrade(&self.inner)));
    }
}

/// The rounds of a node's partition leases, while its log lives.
async fn hold_leases<K: Kv>(log: std::sync::Weak<Inner<K>>) {
    // A failing bucket fails every round the same way: say so when it
    // starts and when it ends.
    let mut failing: Option<u64> = None;
    loop {
        let Some(inner) = log.upgrade() else {
            return;
        };
        if inner.ownership.has_left() {
            return;
        }
        match inner.ownership.round(&inner.kv).await {
            Ok(()) => {
                if let Some(n) = failing.take() {
                    tracing::info!(failed_rounds = n, "partition leases are renewed again");
                }
            }
            Err(e) => match &mut failing {
                None => {
                    tracing::warn!(error = %e, "a round of partition leases failed; leases not renewed run out");
                    failing = Some(1);
                }
                Some(n) => *n += 1,
            },
        }
        let every = inner.ownership.settings().round();
        drop(inner);
        tokio::time::sleep(every).await;
    }
}

impl<K: Kv> Inner<K> {
    /// Documents by name, in order, a few requests in flight at once rather
    /// than one round trip after another; absent ones are `None`.
    /// Those this node staged and has not written yet come from memory.
    async fn get_many(&self, names: Vec<String>) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        use futures_util::{StreamExt, TryStreamExt};
        let staged: Vec<Option<Vec<u8>>> = {
            let unwritten = self.unwritten();
            names
                .iter()
                .map(|name| unwritten.get(name).map(|(_, bytes)| bytes.clone()))
                .collect()
        };
        futures_util::stream::iter(names.into_iter().zip(staged))
            .map(|(name, staged)| async move {
                match staged {
                    Some(bytes) => Ok(Some(bytes)),
                    None => Ok(self.kv.get(&name).await?.map(|(bytes, _)| bytes)),
                }
            })
            .buffered(GETS_IN_FLIGHT)
            .try_collect()
            .await
    }

    fn unwritten(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Vec<u8>)>> {
        self.unwritten.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn links(&self) -> std::sync::MutexGuard<'_, Links> {
        self.links.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn dropping(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.dropping.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts writing the payloads of a change staged into entry `seq`,
    /// and takes them out of its batch: a payload is only ever read through
    /// an entry that names it, so it may exist before the entry. One that
    /// an entry before drops, and whose removal may not have run yet, is
    /// left to the flusher, which writes it after that removal.
    fn write_ahead(self: &Arc<Self>, seq: u64, batch: Batch) -> (Batch, Option<(usize, Writing)>) {
        let mut dropping = self.dropping();
        let mut ahead: Vec<Side> = Vec::new();
        let mut ops = Vec::with_capacity(batch.ops.len());
        for op in batch.ops {
            match op {
                Op::PutPayload(k, bytes) if !dropping.contains_key(&payload_key(&k)) => {
                    ahead.push((payload_key(&k), bytes));
                }
                Op::DeletePayload(k) => {
                    dropping.insert(payload_key(&k), seq);
                    ops.push(op);
                }
                other => ops.push(other),
            }
        }
        drop(dropping);
        let batch = Batch {
            ops,
            counters: batch.counters,
        };
        if ahead.is_empty() {
            return (batch, None);
        }
        let bytes = ahead.iter().map(|(n, b)| n.len() + b.len()).sum();
        let inner = Arc::clone(self);
        let writing = tokio::spawn(async move { inner.write_all(ahead).await });
        (batch, Some((bytes, writing)))
    }

    /// Renews the lock `held` for another while, unless another node waits
    /// or the CAS says it lapsed: then it is let go once its entries are
    /// written. The changes waiting meanwhile are told either way.
    async fn renew_lock(&self, held: Held) {
        let since = tokio::time::Instant::now();
        let renewed = lock::renew(self, &self.node, held.cas).await;
        let mut p = self.pipeline();
        p.renewing = false;
        if let Some(h) = p.lock.as_mut().filter(|h| h.generation == held.generation) {
            match renewed {
                Ok(Some(cas)) => {
                    h.cas = cas;
                    h.since = since;
                    h.changes = 0;
                }
                Ok(None) => h.ending = true,
                Err(e) => {
                    tracing::warn!(error = %e, "could not renew the cluster lock; it is let go of");
                    h.ending = true;
                }
            }
        }
        drop(p);
        self.written.notify_waiters();
    }

    /// Writes documents, many at a time.
    async fn write_all(&self, docs: Vec<Side>) -> Result<(), StoreError> {
        use futures_util::{StreamExt, TryStreamExt};
        futures_util::stream::iter(docs)
            .map(|(name, bytes)| async move { self.kv.upsert(&name, &bytes, None, true).await })
            .buffer_unordered(WRITES_IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await
            .map(drop)
    }

    /// Entry `seq`'s write ended (its documents are in the bucket, or it
    /// failed and the state is read back from the bucket): what it staged
    /// is read from there, unless a later entry writes it again.
    fn written_up_to(&self, seq: u64) {
        self.unwritten().retain(|_, (by, _)| *by > seq);
    }

    async fn get(&self, name: &str) -> Result<Option<(Vec<u8>, u64)>, StoreError> {
        self.kv.get(name).await
    }

    async fn remove(&self, name: &str, cas: Option<u64>) -> Result<(), StoreError> {
        self.kv.remove(name, cas).await
    }

    /// Takes the cluster lock (see `lock`): after a busy turn of this node,
    /// standing back first when another node has said it waits.
    async fn take_lock(&self) -> Result<u64, StoreError> {
        let timeout = self.settings.timeout();
        match self.busy.swap(false, Ordering::SeqCst) {
            true => lock::take_after_busy(self, &self.node, timeout).await,
            false => lock::take(self, &self.node, timeout).await,
        }
    }

    /// Reads the entries after `after`, in order, until one is missing or
    /// does not follow the one before it (`chain`).
    async fn entries_after(&self, after: u64) -> Result<Vec<(u64, Batch)>, StoreError> {
        let mut out = Vec::new();
        let mut before = self.links().of(after);
        for (seq, bytes) in retention::entries_after(self, after).await? {
            let mut entry: Batch = postcard::from_bytes(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("log entry {seq}: {e}")))?;
            let link = chain::take_link(&mut entry);
            if !chain::follows(before, link) {
                tracing::debug!(
                    seq,
                    "log entry {seq} was written after an entry that never was; the log ends before it"
                );
                break;
            }
            before = link.map(|(_, this)| this);
            let mut links = self.links();
            links.note(seq, before);
            links.confirm(seq);
            drop(links);
            out.push((seq, entry));
        }
        Ok(out)
    }

    /// Inserts entry `seq`, which follows the entry whose id is `prev`.
    /// Where an entry exists already, it is replaced only when it does not
    /// follow that entry and that entry is known to be in the bucket: it was
    /// written after an entry that never was, and nobody reads it (`chain`).
    /// Otherwise another node wrote `seq` first: false.
    async fn append(&self, seq: u64, bytes: &[u8], prev: u64) -> Result<bool, StoreError> {
        if retention::append(self, seq, bytes).await? {
            return Ok(true);
        }
        if prev == 0 {
            return Ok(false);
        }
        // The entry before this one may still be in flight: its fate
        // decides whether the one in the way is a stray.
        let before_written = self
            .wait_for(|p| {
                if p.broken.is_some() {
                    Some(false)
                } else if self.links().confirmed() + 1 >= seq {
                    Some(true)
                } else {
                    None
                }
            })
            .await;
        if !before_written {
            return Ok(false);
        }
        let name = retention::entry_key(seq);
        let Some((found, cas)) = self.get(&name).await? else {
            return Ok(false);
        };
        let theirs: Batch = postcard::from_bytes(&found)
            .map_err(|e| StoreError::Corrupt(format!("log entry {seq}: {e}")))?;
        if chain::follows(Some(prev), chain::link_of(&theirs)) {
            return Ok(false);
        }
        tracing::info!(
            seq,
            "replacing a log entry written after an entry that never was"
        );
        Docs::replace(self, &name, bytes, cas).await
    }

    /// Whether a snapshot as of `applied` is due by what this node knows.
    fn snapshot_due(&self, applied: u64) -> bool {
        let last = self.snapshot_seq.load(Ordering::Relaxed);
        applied > 0 && (last == 0 || applied >= last + SNAPSHOT_EVERY)
    }

    /// The entries after `applied`, read under the lock before a change. With
    /// none, the log must still reach `applied`: a change written after a
    /// log that went back would absorb the loss (`retention::check_head`);
    /// a node behind a retired stretch reads the snapshot instead.
    async fn caught_up(&self, applied: u64) -> Result<News, StoreError> {
        let news = self.entries_after(applied).await?;
        // Another node may have written a snapshot since this one last
        // looked: one per interval for the cluster, not one per node.
        let reached = news.last().map_or(applied, |(seq, _)| *seq);
        if self.snapshot_due(reached) && !self.snapshotting.load(Ordering::SeqCst) {
            if let Ok(Some((p, _))) = retention::pointer(self).await {
                self.snapshot_seq.fetch_max(p.seq, Ordering::SeqCst);
            }
        }
        if !news.is_empty() {
            return Ok(news);
        }
        match retention::check_head(self, applied).await? {
            retention::Head::Current => Ok(news),
            retention::Head::Behind => {
                self.behind.store(true, Ordering::SeqCst);
                Err(StoreError::Unavailable(format!(
                    "this node is behind a snapshot (it applied entry {applied}, and the entries after it have expired); it reads the snapshot"
                )))
            }
        }
    }

    /// Retires what the snapshot as of `newest` covers, in the background
    /// (after the turn that wrote it), one retirement at a time: one that
    /// fails or is skipped is finished by the next.
    fn retire_later(self: &Arc<Self>, replaced: Option<retention::SnapshotPointer>, newest: u64) {
        if self.retiring.swap(true, Ordering::SeqCst) {
            return;
        }
        let inner = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = retention::retire(&*inner, replaced, newest).await {
                tracing::warn!(error = %e, newest, "retiring the log a snapshot covers failed; the next snapshot finishes it");
            }
            inner.retiring.store(false, Ordering::SeqCst);
        });
    }

    fn pipeline(&self) -> std::sync::MutexGuard<'_, Pipeline> {
        self.pipeline.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Once nothing of this node needs the lock, keeps it for a short while
    /// (`KEEP_IDLE`) unless it is ending: a client that sends its next change
    /// as soon as the last is answered finds the lock still held, and skips
    /// taking it and catching up (three round trips) on every change.
    async fn settle(self: &Arc<Self>) {
        let waiting = self.waiting.load(Ordering::SeqCst) > 0;
        let mut kept = None;
        let gone = self.pipeline().let_go(|held| {
            // One that served its while is renewed by the next change,
            // unless another node waits.
            let keep = !held.ending;
            if keep {
                kept = Some((held.generation, held.served));
            }
            keep
        });
        if let Some(held) = gone {
            if waiting || held.changes > 1 {
                // Let go at the end of a busy turn: the next take lets a
                // node that said it waits go first.
                self.busy.store(true, Ordering::SeqCst);
            }
            self.let_go(held).await;
        }
        if let Some((generation, served)) = kept {
            // No change may come: let go soon anyway.
            let inner = Arc::clone(self);
            tokio::spawn(async move {
                tokio::time::sleep(KEEP_IDLE).await;
                let gone = inner.pipeline().let_go_of(generation, served);
                if let Some(held) = gone {
                    inner.let_go(held).await;
                }
            });
        }
    }

    /// `begin` on a partition's log: its owner computes with no lock, and
    /// reads what the owners before it wrote only in a new tenure, once its
    /// own entries of the last are written.
    async fn begin_owned(
        self: &Arc<Self>,
        partition: u32,
        tenures: &dyn Tenures,
        mine: OwnedMutexGuard<()>,
        applied: &(dyn Fn() -> u64 + Sync),
    ) -> Result<(Turn<K>, News), StoreError> {
        let turn = Turn {
            mine: Some(mine),
            done: None,
            log: Arc::clone(self),
        };
        let fresh = self
            .wait_for(|p| {
                if let Some(why) = &p.broken {
                    return Some(Err(why.clone()));
                }
                let Some(tenure) = tenures.tenure(partition) else {
                    return Some(Err(not_owner(partition)));
                };
                if p.tenure == Some(tenure) {
                    if p.full() {
                        return None;
                    }
                    p.computing = true;
                    return Some(Ok(None));
                }
                p.drained().then_some(Ok(Some(tenure)))
            })
            .await?;
        let Some(tenure) = fresh else {
            return Ok((turn, Vec::new()));
        };
        let news = self.caught_up(applied()).await?;
        // Another node may have taken the partition while this one read.
        if tenures.tenure(partition) != Some(tenure) {
            return Err(not_owner(partition));
        }
        let mut p = self.pipeline();
        p.tenure = Some(tenure);
        p.computing = true;
        drop(p);
        Ok((turn, news))
    }

    async fn let_go(&self, held: Held) {
        if let Err(e) = self.remove(lock::LOCK, Some(held.cas)).await {
            tracing::warn!(error = %e, "could not let go of the cluster lock; it lapses by itself");
        }
    }

    /// Until `ready` says so of the pipeline, waking at every write's end.
    async fn wait_for<T>(&self, mut ready: impl FnMut(&mut Pipeline) -> Option<T>) -> T {
        loop {
            let written = self.written.notified();
            tokio::pin!(written);
            written.as_mut().enable();
            if let Some(t) = ready(&mut self.pipeline()) {
                return t;
            }
            written.await;
        }
    }

    /// Writes the open entries in order, [`ENTRIES_IN_FLIGHT`] at once,
    /// until none is left; then lets go of the lock unless something takes
    /// it up. Entries end in order: one that failed fails those after it,
    /// whether or not they landed (they are strays nobody reads, `chain`).
    async fn flush(self: Arc<Self>) {
        let mut removing: Option<Removing> = None;
        let mut in_flight: VecDeque<InFlight> = VecDeque::new();
        loop {
            let staged = self.staged.notified();
            tokio::pin!(staged);
            staged.as_mut().enable();
            let next = if in_flight.is_empty() {
                match self.pipeline().next_to_write() {
                    Some(group) => Some(group),
                    None => break,
                }
            } else if in_flight.len() < ENTRIES_IN_FLIGHT {
                self.pipeline().take_open()
            } else {
                None
            };
            if let Some(group) = next {
                let (side, entry, gone) = split(group.batch);
                // A document an entry in flight writes or drops (the page
                // a copy's log ends in, appended to again) is written
                // after that entry's writes: writes in flight together
                // land in any order, and the older page could land last.
                let again = |names: &HashSet<String>| side.iter().any(|(n, _)| names.contains(n));
                if in_flight.iter().any(|f| again(&f.gone) || again(&f.writes)) {
                    while let Some(mut f) = in_flight.pop_front() {
                        let result = flatten((&mut f.writing).await);
                        self.ended(f, result, &mut removing).await;
                    }
                }
                // Nor may one written again after an entry before dropped
                // it (none is, today) be removed after it.
                if removing.as_ref().is_some_and(|(_, names)| again(names)) {
                    if let Some((removal, _)) = removing.take() {
                        let _ = removal.await;
                    }
                }
                in_flight.push_back(self.start(
                    group.seq,
                    group.done,
                    group.writing,
                    side,
                    entry,
                    gone,
                ));
                continue;
            }
            let room = in_flight.len() < ENTRIES_IN_FLIGHT;
            let Some(front) = in_flight.front_mut() else {
                continue;
            };
            let result = tokio::select! {
                ended = &mut front.writing => flatten(ended),
                _ = &mut staged, if room => continue,
            };
            if let Some(f) = in_flight.pop_front() {
                self.ended(f, result, &mut removing).await;
            }
        }
        if let Some((removal, _)) = removing {
            let _ = removal.await;
        }
        self.settle().await;
        self.written.notify_waiters();
    }

    /// Starts writing entry `seq`: its payloads (under way since staged),
    /// the documents beside it, then the entry, linked to the one before.
    fn start(
        self: &Arc<Self>,
        seq: u64,
        done: Arc<Done>,
        writing: Vec<Writing>,
        side: Vec<Side>,
        mut entry: Batch,
        gone: Vec<String>,
    ) -> InFlight {
        let (prev, this) = self.links().link_new(seq);
        entry.ops.insert(0, Op::Link { prev, this });
        let changes = entry.ops.len() as u64 - 1;
        let writes = side.iter().map(|(name, _)| name.clone()).collect();
        let inner = Arc::clone(self);
        let writing = tokio::spawn(async move {
            written_ahead(writing).await?;
            inner.write(seq, side, entry, prev).await
        });
        InFlight {
            seq,
            done,
            changes,
            writes,
            gone: gone.into_iter().collect(),
            writing,
        }
    }

    /// Entry `f`'s write ended with `result` (failed, when one before it
    /// did): its changes are answered.
    async fn ended(
        self: &Arc<Self>,
        f: InFlight,
        result: Result<(), StoreError>,
        removing: &mut Option<Removing>,
    ) {
        let broken = self.pipeline().broken.clone();
        let result = match broken {
            Some(why) => Err(why),
            None => result,
        };
        self.written_up_to(f.seq);
        match &result {
            Ok(()) => {
                // Before its changes are answered: they show their copies.
                self.durable.fetch_max(f.seq, Ordering::SeqCst);
                self.links().confirm(f.seq);
                self.commits.fetch_add(1, Ordering::Relaxed);
                self.writes.fetch_add(f.changes, Ordering::Relaxed);
                if !f.gone.is_empty() {
                    if let Some((removal, _)) = removing.take() {
                        let _ = removal.await;
                    }
                    let names: Vec<String> = f.gone.iter().cloned().collect();
                    let inner = Arc::clone(self);
                    let seq = f.seq;
                    *removing = Some((
                        tokio::spawn(async move {
                            inner.remove_all(names).await;
                            inner.dropping().retain(|_, by| *by > seq);
                        }),
                        f.gone,
                    ));
                }
            }
            Err(e) => {
                // Nothing this entry or a later one drops is removed.
                self.dropping().retain(|_, by| *by < f.seq);
                self.pipeline().broken = Some(e.clone());
            }
        }
        f.done.set(result);
        self.written.notify_waiters();
    }

    /// Writes entry `seq`: the payloads and log pages it names first, many
    /// at a time (an entry is only ever read after it exists, and then they
    /// do too), then the entry itself.
    async fn write(
        &self,
        seq: u64,
        side: Vec<Side>,
        entry: Batch,
        prev: u64,
    ) -> Result<(), StoreError> {
        self.write_all(side).await?;
        if let Some(why) = self.pipeline().broken.clone() {
            // An entry before this one failed: this one would be a stray.
            return Err(why);
        }
        let bytes = postcard::to_stdvec(&entry).expect("an entry encodes");
        if !self.append(seq, &bytes, prev).await? {
            return Err(StoreError::Unavailable(
                "another node changed the store at the same moment; retry".into(),
            ));
        }
        Ok(())
    }

    /// Removes the payloads and log pages an entry dropped: after the entry
    /// exists, and after its changes were answered. One that stays (the
    /// call failed, or the node died first) is only space: no entry names
    /// it any more.
    async fn remove_all(&self, names: Vec<String>) {
        use futures_util::StreamExt;
        let failed = futures_util::stream::iter(names)
            .map(|name| async move { self.kv.remove(&name, None).await })
            .buffer_unordered(WRITES_IN_FLIGHT)
            .filter(|r| std::future::ready(r.is_err()))
            .count()
            .await;
        if failed > 0 {
            tracing::warn!(
                failed,
                "documents a log entry dropped could not be removed; they stay in the bucket"
            );
        }
    }
}

/// A document written beside an entry: its name and bytes.
type Side = (String, Vec<u8>);

/// The removal of the documents an entry dropped, and their names.
type Removing = (tokio::task::JoinHandle<()>, HashSet<String>);

/// An entry being written.
struct InFlight {
    seq: u64,
    done: Arc<Done>,
    /// The changes in it, for the stats.
    changes: u64,
    /// The documents written beside it, and those it drops (removed once
    /// it is written).
    writes: HashSet<String>,
    gone: HashSet<String>,
    writing: tokio::task::JoinHandle<Result<(), StoreError>>,
}

/// A write task's end as the write's result.
fn flatten(
    ended: Result<Result<(), StoreError>, tokio::task::JoinError>,
) -> Result<(), StoreError> {
    ended.unwrap_or_else(|e| Err(StoreError::Unavailable(format!("writing a log entry: {e}"))))
}

/// How the writes ahead of an entry ended: the first failure, if any.
async fn written_ahead(writing: Vec<Writing>) -> Result<(), StoreError> {
    let mut result = Ok(());
    for w in writing {
        let ended = w
            .await
            .unwrap_or_else(|e| Err(StoreError::Unavailable(format!("writing payloads: {e}"))));
        result = result.and(ended);
    }
    result
}

/// The document an op writes beside its entry (a payload, a log page): its
/// name and bytes (`split` takes them apart by value, the same way).
fn written_beside(op: &Op) -> Option<(String, &[u8])> {
    match op {
        Op::PutPayload(k, bytes) => Some((payload_key(k), bytes)),
        Op::PutOutput(k, n, bytes) => Some((page_key(k, *n), bytes)),
        _ => None,
    }
}

/// An entry's changes: the documents written beside it (payloads, log
/// pages), the entry itself, and the documents it drops.
fn split(batch: Batch) -> (Vec<Side>, Batch, Vec<String>) {
    let mut logged = Vec::with_capacity(batch.ops.len());
    let mut side: Vec<Side> = Vec::new();
    // A document two changes of one entry write (the page a log ends in,
    // appended to twice) is written once, as the later left it: writes
    // in flight together land in any order.
    let mut at: HashMap<String, usize> = HashMap::new();
    let mut gone = Vec::new();
    for op in batch.ops {
        let (name, bytes) = match op {
            Op::PutPayload(k, bytes) => (payload_key(&k), bytes),
            Op::PutOutput(k, n, bytes) => (page_key(&k, n), bytes),
            Op::DeletePayload(k) => {
                gone.push(payload_key(&k));
                continue;
            }
            Op::DeleteOutput(k, n) => {
                gone.push(page_key(&k, n));
                continue;
            }
            other => {
                logged.push(other);
                continue;
            }
        };
        match at.get(&name) {
            Some(&i) => side[i].1 = bytes,
            None => {
                at.insert(name.clone(), side.len());
                side.push((name, bytes));
            }
        }
    }
    let entry = Batch {
        ops: logged,
        counters: batch.counters,
    };
    (side, entry, gone)
}

impl<K: Kv> Log for CouchbaseLog<K> {
    type Turn = Turn<K>;

    async fn begin(
        &self,
        applied: &(dyn Fn() -> u64 + Sync),
    ) -> Result<(Turn<K>, News), StoreError> {
        let log = &self.inner;
        if let Writer::Owner { partition, tenures } = &log.writer {
            let mine = Arc::clone(&log.turns).lock_owned().await;
            return log.begin_owned(*partition, &**tenures, mine, applied).await;
        }
        // Counted as waiting until it computes: the lock is kept for it.
        let waiting = Waiting::new(&log.waiting);
        let mine = Arc::clone(&log.turns).lock_owned().await;
        let turn = |log: &Arc<Inner<K>>| Turn {
            mine: Some(mine),
            done: None,
            log: Arc::clone(log),
        };
        loop {
            let next = log.wait_for(|p| {
                if let Some(why) = &p.broken {
                    return Some(Err(why.clone()));
                }
                let drained = p.drained();
                let held = p.lock;
                Some(Ok(match held.map(|h| (young(&h), h.ending)) {
                    // Held since this node's last change: nobody else
                    // committed, whatever this node is still writing.
                    Some((true, _)) => {
                        if p.full() {
                            return None;
                        }
                        if let Some(held) = p.lock.as_mut() {
                            held.changes += 1;
                            held.served += 1;
                        }
                        p.computing = true;
                        Next::Go
                    }
                    // Renewed while what was computed under it is being
                    // written: the lock is never let go of meanwhile.
                    Some((false, false)) if !p.renewing => {
                        p.renewing = true;
                        Next::Renew(held.expect("held"))
                    }
                    // Let go only once what was computed under it is
                    // written: the next hold reads the log from there.
                    Some((false, true)) if drained => Next::LetGo(p.lock.take().expect("held")),
                    None if drained => Next::Take,
                    _ => return None,
                }))
            });
            match next.await? {
                Next::Go => {
                    drop(waiting);
                    return Ok((turn(log), Vec::new()));
                }
                Next::Renew(held) => log.renew_lock(held).await,
                Next::LetGo(held) => {
                    // This node's changes kept coming for a whole turn.
                    log.busy.store(true, Ordering::SeqCst);
                    log.remove(lock::LOCK, Some(held.cas)).await?;
                }
                Next::Take => {
                    drop(waiting);
                    let cas = log.take_lock().await?;
                    return match log.caught_up(applied()).await {
                        Ok(news) => {
                            let mut p = log.pipeline();
                            p.hold(cas);
                            if let Some(held) = p.lock.as_mut() {
                                held.changes = 1;
                                held.served = 1;
                            }
                            p.computing = true;
                            drop(p);
                            Ok((turn(log), news))
                        }
                        Err(e) => {
                            log.remove(lock::LOCK, Some(cas)).await?;
                            Err(e)
                        }
                    };
                }
            }
        }
    }

    fn stage(&self, turn: &mut Turn<K>, applied: u64, batch: Batch) -> u64 {
        let (seq, done, start) = {
            let mut p = self.inner.pipeline();
            p.computing = false;
            let staged: Vec<(String, Vec<u8>)> = batch
                .ops
                .iter()
                .filter_map(|op| written_beside(op).map(|(name, bytes)| (name, bytes.to_vec())))
                .collect();
            let (batch, ahead) = self.inner.write_ahead(p.open_seq(applied), batch);
            let (seq, done) = p.join(applied, batch, ahead);
            // Under the pipeline's lock: the flusher cannot have taken the
            // entry, let alone written it, before these are noted.
            let mut unwritten = self.inner.unwritten();
            for (name, bytes) in staged {
                unwritten.insert(name, (seq, bytes));
            }
            drop(unwritten);
            let start = !p.flushing;
            p.flushing = true;
            (seq, done, start)
        };
        turn.done = Some(done);
        if start {
            tokio::spawn(Arc::clone(&self.inner).flush());
        } else {
            self.inner.staged.notify_waiters();
        }
        seq
    }

    async fn commit(&self, mut turn: Turn<K>) -> Result<(), StoreError> {
        let done = turn.done.take();
        // The next change may be computed while this one is written.
        drop(turn);
        let Some(done) = done else {
            return Ok(());
        };
        self.inner.wait_for(|_| done.result()).await
    }

    fn abandon(&self, turn: Turn<K>) {
        // Dropping it lets go of the cluster lock, if nothing else needs it.
        drop(turn);
    }

    async fn news(&self, applied: u64) -> Result<News, StoreError> {
        if let Writer::Owner { partition, tenures } = &self.inner.writer {
            // Its owner is the only writer: nothing to read.
            let tenure = tenures.tenure(*partition);
            if tenure.is_some() && self.inner.pipeline().tenure == tenure {
                return Ok(Vec::new());
            }
        }
        // While this node holds the lock no other node commits: its own
        // entries are applied here already, so there is nothing to read.
        if self.inner.pipeline().lock.as_ref().is_some_and(young) {
            return Ok(Vec::new());
        }
        self.inner.entries_after(applied).await
    }

    async fn payloads(&self, publishes: &[[u8; 16]]) -> Result<Payloads, StoreError> {
        let found = self
            .inner
            .get_many(publishes.iter().map(payload_key).collect())
            .await?;
        Ok(publishes
            .iter()
            .zip(found)
            .filter_map(|(k, bytes)| bytes.map(|b| (*k, b)))
            .collect())
    }

    async fn output_pages(
        &self,
        copy: [u8; 16],
        pages: std::ops::Range<u32>,
    ) -> Result<Vec<(u32, Vec<u8>)>, StoreError> {
        let found = self
            .inner
            .get_many(pages.clone().map(|n| page_key(&copy, n)).collect())
            .await?;
        Ok(pages
            .zip(found)
            .filter_map(|(n, bytes)| bytes.map(|b| (n, b)))
            .collect())
    }

    async fn load(
        &self,
        apply: &mut (dyn FnMut(Batch) -> Result<(), StoreError> + Send),
    ) -> Result<u64, StoreError> {
        let log = &self.inner;
        let mut seq = 0;
        log.links().clear();
        if let Some((pointer, _)) = retention::pointer(&**log).await? {
            let format = pointer.format.unwrap_or(1);
            if format > FORMAT_VERSION {
                return Err(StoreError::Corrupt(format!(
                    "the bucket's snapshot is in format {format}, written by a newer interq; this one reads up to format {FORMAT_VERSION}"
                )));
            }
            for i in 0..pointer.chunks {
                let name = retention::chunk_key(pointer.seq, i);
                let (bytes, _) = log
                    .get(&name)
                    .await?
                    .ok_or_else(|| StoreError::Corrupt(format!("{name} is missing")))?;
                let chunk: Batch = postcard::from_bytes(&bytes)
                    .map_err(|e| StoreError::Corrupt(format!("{name}: {e}")))?;
                apply(chunk)?;
            }
            seq = pointer.seq;
            log.links().note(pointer.seq, pointer.link);
            log.snapshot_seq.store(pointer.seq, Ordering::Relaxed);
        } else {
            log.snapshot_seq.store(0, Ordering::Relaxed);
        }
        for (n, entry) in log.entries_after(seq).await? {
            apply(entry)?;
            seq = n;
        }
        log.durable.store(seq, Ordering::SeqCst);
        log.links().confirm(seq);
        Ok(seq)
    }

    fn durable(&self) -> u64 {
        self.inner.durable.load(Ordering::SeqCst)
    }

    async fn reset(&self) -> Result<(), StoreError> {
        // No change runs now; an entry a dropped request left may still be
        // written (or failed).
        let log = &self.inner;
        log.wait_for(|p| p.drained().then_some(())).await;
        let held = {
            let mut p = log.pipeline();
            p.broken = None;
            p.tenure = None;
            p.lock.take()
        };
        if let Some(held) = held {
            log.remove(lock::LOCK, Some(held.cas)).await?;
        }
        Ok(())
    }

    fn needs_reset(&self) -> bool {
        self.inner.behind.swap(false, Ordering::SeqCst)
    }

    fn snapshot_due(&self, applied: u64) -> bool {
        // Only with nothing of this node's being joined or written: then the
        // state as of `applied` is every entry up to it, all of them durable.
        self.inner.snapshot_due(applied) && !self.inner.snapshotting.load(Ordering::SeqCst) && {
            let p = self.inner.pipeline();
            p.drained() && p.broken.is_none()
        }
    }

    async fn write_snapshot(
        &self,
        _turn: &mut Turn<K>,
        seq: u64,
        snapshot: Batch,
    ) -> Result<(), StoreError> {
        let log = &self.inner;
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        let mut current = Vec::new();
        let mut size = 0;
        let counters = snapshot.counters;
        let mut flush = |current: &mut Vec<Op>| {
            let entry = Batch {
                ops: std::mem::take(current),
                counters,
            };
            chunks.push(postcard::to_stdvec(&entry).expect("a chunk encodes"));
        };
        for op in snapshot.ops {
            size += op.size();
            current.push(op);
            if size >= CHUNK_BYTES {
                flush(&mut current);
                size = 0;
            }
        }
        flush(&mut current);
        // Written after the turn, not under the cluster's lock, which every
        // other change waits for: the entries up to `seq` exist already, and
        // the pointer only moves forward whoever finishes first.
        if log.snapshotting.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let inner = Arc::clone(log);
        let link = log.links().of(seq);
        tokio::spawn(async move {
            match retention::write_snapshot(&*inner, seq, link, &chunks, FORMAT_VERSION).await {
                Ok(Written::Latest { replaced }) => {
                    tracing::info!(seq, chunks = chunks.len(), "wrote a snapshot");
                    inner.snapshot_seq.fetch_max(seq, Ordering::SeqCst);
                    inner.retire_later(replaced, seq);
                }
                Ok(Written::Superseded) => {
                    tracing::info!(
                        seq,
                        "another node's snapshot is as new; this one was not kept"
                    );
                    inner.snapshot_seq.fetch_max(seq, Ordering::SeqCst);
                }
                Err(e) => {
                    tracing::warn!(error = %e, seq, "writing a snapshot failed; the next change tries again");
                }
            }
            inner.snapshotting.store(false, Ordering::SeqCst);
        });
        Ok(())
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            commits: self.inner.commits.load(Ordering::Relaxed),
            writes: self.inner.writes.load(Ordering::Relaxed),
            cluster: self
                .inner
                .joined
                .load(Ordering::SeqCst)
                .then(|| self.inner.ownership.cluster()),
        }
    }

    async fn leave(&self) -> Result<(), StoreError> {
        let inner = &self.inner;
        if !inner.joined.load(Ordering::SeqCst) {
            return Ok(());
        }
        inner.ownership.leave(&inner.kv).await
    }

    fn poll_interval(&self) -> Option<Duration> {
        Some(POLL_INTERVAL)
    }
}

/// The cluster lock, over the bucket's calls.
impl<K: Kv> LockDocs for Inner<K> {
    async fn insert_expiring(
        &self,
        name: &str,
        bytes: &[u8],
        expiry: Duration,
    ) -> Result<Option<u64>, StoreError> {
        self.kv.insert(name, bytes, Some(expiry), false).await
    }

    async fn upsert_expiring(
        &self,
        name: &str,
        bytes: &[u8],
        expiry: Duration,
    ) -> Result<(), StoreError> {
        // A hint that lasts a second: not worth waiting for replicas.
        self.kv.upsert(name, bytes, Some(expiry), false).await
    }

    async fn replace_expiring(
        &self,
        name: &str,
        bytes: &[u8],
        cas: u64,
        expiry: Duration,
    ) -> Result<Option<u64>, StoreError> {
        self.kv.replace(name, bytes, cas, Some(expiry), false).await
    }

    async fn read(&self, name: &str) -> Result<Option<(Vec<u8>, u64)>, StoreError> {
        self.kv.get(name).await
    }

    async fn remove_version(&self, name: &str, cas: u64) -> Result<(), StoreError> {
        self.kv.remove(name, Some(cas)).await
    }
}

/// The snapshot's documents and retirement, over the bucket's calls.
impl<K: Kv> Docs for Inner<K> {
    async fn get(&self, name: &str) -> Result<Option<(Vec<u8>, u64)>, StoreError> {
        self.kv.get(name).await
    }

    async fn upsert(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.kv.upsert(name, bytes, None, true).await
    }

    async fn insert(&self, name: &str, bytes: &[u8]) -> Result<bool, StoreError> {
        Ok(self.kv.insert(name, bytes, None, true).await?.is_some())
    }

    async fn replace(&self, name: &str, bytes: &[u8], cas: u64) -> Result<bool, StoreError> {
        Ok(self
            .kv
            .replace(name, bytes, cas, None, true)
            .await?
            .is_some())
    }

    async fn remove(&self, name: &str) -> Result<(), StoreError> {
        self.kv.remove(name, None).await
    }

    async fn expire(&self, names: Vec<String>, after: Duration) -> Result<(), StoreError> {
        use futures_util::{StreamExt, TryStreamExt};
        futures_util::stream::iter(names)
            .map(|name| async move { self.kv.touch(&name, after).await })
            .buffered(GETS_IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await
            .map(drop)
    }
}

/// How often nodes sharing a Couchbase store look for each other's changes
/// (the bound on how late a long-polling worker learns of a copy another
/// node made ready).
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Document reads one look-up of payloads or log pages keeps in flight: a
/// claim of 100 tasks reads its payloads in one round trip, not seven (16
/// in flight held one node at 18,700 tasks/s in `benches/shared_log.rs`
/// with a 1 ms round trip; 128 gives 30,000). The SDK pipelines them over
/// its connections, as it does writes.
const GETS_IN_FLIGHT: usize = 128;
/// Payloads and log pages one entry writes (or removes) at once: the SDK
/// pipelines them over its connections.
const WRITES_IN_FLIGHT: usize = 512;

/// Page `n` of a copy's log.
fn page_key(k: &[u8; 16], n: u32) -> String {
    format!("output::{}::{n}", uuid::Uuid::from_bytes(*k).simple())
}

fn payload_key(k: &[u8; 16]) -> String {
    format!("payload::{}", uuid::Uuid::from_bytes(*k).simple())
}
