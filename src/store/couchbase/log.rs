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

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use super::kv::Kv;
use super::lock::{self, LockDocs};
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
        Engine::open(CouchbaseLog::over(bucket, settings), retention).await
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
}

/// The format of the snapshot pointer and what it points to; checked when a
/// node starts. 2: entries and snapshots may hold copies' log heads, and
/// `output::` documents their pages. 3: they may hold batches, and copies'
/// records that end with their place in a workflow. 4: they may hold the
/// throughput chart's samples and the publish log. 5: entries and snapshots
/// are kept until a newer snapshot retires them (`retention`), which an
/// older node would not do.
pub const FORMAT_VERSION: u64 = 5;

/// A node keeps the cluster lock from one of its changes to the next while
/// more of them wait (saving the round trips of letting go, taking it again
/// and catching up), but for no longer than this, so that other nodes get
/// their turn, and far within the lease.
const KEEP_AT_MOST: Duration = Duration::from_millis(200);
/// Nor for more changes than this.
const KEEP_CHANGES: u32 = 256;
/// A kept lock no change of this node takes up is let go after this.
const KEEP_IDLE: Duration = Duration::from_millis(20);
/// A snapshot every this many entries (and at the first change after a
/// start that found none), so that a starting node reads a bounded log.
const SNAPSHOT_EVERY: u64 = 10_000;
/// Bytes of one snapshot document (Couchbase's limit is 20 MiB).
const CHUNK_BYTES: usize = 4 << 20;

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
    /// The cluster lock, kept between two of this node's changes.
    kept: std::sync::Mutex<Option<Kept>>,
    kept_generation: AtomicU64,
    /// This node's changes waiting for their turn.
    waiting: AtomicUsize,
    /// Log entries written by this node, and the changes in them.
    commits: AtomicU64,
    writes: AtomicU64,
}

impl<K: Kv> std::fmt::Debug for Inner<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CouchbaseLog")
            .field("settings", &self.settings)
            .field("node", &self.node)
            .finish()
    }
}

/// The right to change the state: this node's turn, and the cluster lock.
/// A turn dropped without a commit (the change failed, say a report from a
/// worker that does not hold the lease) still lets go of the lock.
pub struct Turn<K: Kv> {
    _mine: OwnedMutexGuard<()>,
    lock_cas: u64,
    /// When the lock was taken, and how many changes it has served.
    since: Instant,
    changes: u32,
    /// The entry this change writes.
    next: u64,
    staged: Option<Batch>,
    log: Arc<Inner<K>>,
    released: bool,
}

/// The cluster lock, held between two changes of this node.
#[derive(Debug)]
struct Kept {
    cas: u64,
    since: Instant,
    changes: u32,
    generation: u64,
}

impl<K: Kv> Drop for Turn<K> {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        let (log, cas) = (Arc::clone(&self.log), self.lock_cas);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = log.remove("lock", Some(cas)).await {
                    tracing::warn!(error = %e, "could not let go of the cluster lock; it lapses by itself");
                }
            });
        }
    }
}

impl<K: Kv> std::fmt::Debug for Turn<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn").field("next", &self.next).finish()
    }
}

impl<K: Kv> CouchbaseLog<K> {
    /// This node's log over the bucket `kv` answers for.
    pub fn over(kv: K, settings: CouchbaseSettings) -> Self {
        Self {
            inner: Arc::new(Inner {
                kv,
                node: uuid::Uuid::new_v4().simple().to_string(),
                settings,
                turns: Arc::new(AsyncMutex::new(())),
                snapshot_seq: AtomicU64::new(0),
                retiring: std::sync::atomic::AtomicBool::new(false),
                snapshotting: std::sync::atomic::AtomicBool::new(false),
                behind: std::sync::atomic::AtomicBool::new(false),
                busy: std::sync::atomic::AtomicBool::new(false),
                kept: std::sync::Mutex::new(None),
                kept_generation: AtomicU64::new(0),
                waiting: AtomicUsize::new(0),
                commits: AtomicU64::new(0),
                writes: AtomicU64::new(0),
            }),
        }
    }
}

impl<K: Kv> Inner<K> {
    /// Documents by name, in order, a few requests in flight at once rather
    /// than one round trip after another; absent ones are `None`.
    async fn get_many(&self, names: Vec<String>) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        use futures_util::{StreamExt, TryStreamExt};
        futures_util::stream::iter(names)
            .map(|name| async move { Ok(self.kv.get(&name).await?.map(|(bytes, _)| bytes)) })
            .buffered(GETS_IN_FLIGHT)
            .try_collect()
            .await
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

    /// Reads the entries after `after`, in order, until one is missing.
    async fn entries_after(&self, after: u64) -> Result<Vec<(u64, Batch)>, StoreError> {
        let mut out = Vec::new();
        for (seq, bytes) in retention::entries_after(self, after).await? {
            let entry: Batch = postcard::from_bytes(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("log entry {seq}: {e}")))?;
            out.push((seq, entry));
        }
        Ok(out)
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

    /// Lets go of a kept lock that no change took up.
    async fn let_go_of_kept(&self, generation: u64) {
        let kept = {
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            match kept.as_ref() {
                Some(k) if k.generation == generation => kept.take(),
                _ => None,
            }
        };
        if let Some(k) = kept {
            if let Err(e) = self.remove("lock", Some(k.cas)).await {
                tracing::warn!(error = %e, "could not let go of the cluster lock; it lapses by itself");
            }
        }
    }

    /// Writes a change as entry `seq`: its payloads and log pages first, a
    /// few at a time (an entry is only ever read after it exists, and then
    /// they do too), then the entry itself, then removes the payloads and
    /// pages it dropped.
    async fn write(&self, seq: u64, batch: Batch) -> Result<(), StoreError> {
        use futures_util::{StreamExt, TryStreamExt};
        let mut logged = Vec::with_capacity(batch.ops.len());
        let mut side: Vec<(String, Vec<u8>)> = Vec::new();
        let mut gone = Vec::new();
        for op in batch.ops {
            match op {
                Op::PutPayload(k, bytes) => side.push((payload_key(&k), bytes)),
                Op::DeletePayload(k) => gone.push(payload_key(&k)),
                Op::PutOutput(k, n, bytes) => side.push((page_key(&k, n), bytes)),
                Op::DeleteOutput(k, n) => gone.push(page_key(&k, n)),
                other => logged.push(other),
            }
        }
        futures_util::stream::iter(side)
            .map(|(name, bytes)| async move { self.kv.upsert(&name, &bytes, None, true).await })
            .buffer_unordered(WRITES_IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?;
        let entry = Batch {
            ops: logged,
            counters: batch.counters,
        };
        let bytes = postcard::to_stdvec(&entry).expect("an entry encodes");
        if !retention::append(self, seq, &bytes).await? {
            return Err(StoreError::Unavailable(
                "another node changed the store at the same moment; retry".into(),
            ));
        }
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.writes
            .fetch_add(entry.ops.len() as u64, Ordering::Relaxed);
        futures_util::stream::iter(gone)
            .map(|name| async move { self.kv.remove(&name, None).await })
            .buffer_unordered(WRITES_IN_FLIGHT)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }
}

impl<K: Kv> Log for CouchbaseLog<K> {
    type Turn = Turn<K>;

    async fn begin(&self, applied: u64) -> Result<(Turn<K>, News), StoreError> {
        let log = &self.inner;
        log.waiting.fetch_add(1, Ordering::SeqCst);
        let mine = Arc::clone(&log.turns).lock_owned().await;
        log.waiting.fetch_sub(1, Ordering::SeqCst);
        let kept = log.kept.lock().unwrap_or_else(|e| e.into_inner()).take();
        let (lock_cas, since, changes) = match kept {
            // Held since this node's last change: nobody else committed.
            Some(k) if k.since.elapsed() < KEEP_AT_MOST => (k.cas, k.since, k.changes),
            other => {
                if let Some(k) = other {
                    // This node's changes kept coming for a whole turn.
                    log.busy.store(true, Ordering::SeqCst);
                    log.remove("lock", Some(k.cas)).await?;
                }
                (log.take_lock().await?, Instant::now(), 0)
            }
        };
        let news = if changes == 0 {
            match log.caught_up(applied).await {
                Ok(news) => news,
                Err(e) => {
                    log.remove("lock", Some(lock_cas)).await?;
                    return Err(e);
                }
            }
        } else {
            Vec::new()
        };
        Ok((
            Turn {
                _mine: mine,
                lock_cas,
                since,
                changes: changes + 1,
                next: 0,
                staged: None,
                log: Arc::clone(log),
                released: false,
            },
            news,
        ))
    }

    fn stage(&self, turn: &mut Turn<K>, seq: u64, batch: Batch) {
        turn.next = seq;
        match &mut turn.staged {
            Some(staged) => {
                staged.ops.extend(batch.ops);
                staged.counters = batch.counters;
            }
            None => turn.staged = Some(batch),
        }
    }

    async fn commit(&self, mut turn: Turn<K>) -> Result<(), StoreError> {
        let log = Arc::clone(&self.inner);
        let result = match turn.staged.take() {
            Some(batch) => log.write(turn.next, batch).await,
            None => Ok(()),
        };
        turn.released = true;
        let keep = result.is_ok()
            && log.waiting.load(Ordering::SeqCst) > 0
            && turn.since.elapsed() < KEEP_AT_MOST
            && turn.changes < KEEP_CHANGES;
        if keep {
            let generation = log.kept_generation.fetch_add(1, Ordering::SeqCst) + 1;
            *log.kept.lock().unwrap_or_else(|e| e.into_inner()) = Some(Kept {
                cas: turn.lock_cas,
                since: turn.since,
                changes: turn.changes,
                generation,
            });
            // The change that waited may have given up: let go soon anyway.
            let for_later = Arc::clone(&log);
            tokio::spawn(async move {
                tokio::time::sleep(KEEP_IDLE).await;
                for_later.let_go_of_kept(generation).await;
            });
        } else {
            if result.is_ok() && log.waiting.load(Ordering::SeqCst) > 0 {
                // Let go at the end of a busy turn, with changes waiting.
                log.busy.store(true, Ordering::SeqCst);
            }
            log.remove("lock", Some(turn.lock_cas)).await?;
        }
        result
    }

    fn abandon(&self, turn: Turn<K>) {
        // Dropping it lets go of the cluster lock.
        drop(turn);
    }

    async fn news(&self, applied: u64) -> Result<News, StoreError> {
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
            log.snapshot_seq.store(pointer.seq, Ordering::Relaxed);
        } else {
            log.snapshot_seq.store(0, Ordering::Relaxed);
        }
        for (n, entry) in log.entries_after(seq).await? {
            apply(entry)?;
            seq = n;
        }
        Ok(seq)
    }

    async fn reset(&self) -> Result<(), StoreError> {
        let kept = self
            .inner
            .kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(k) = kept {
            self.inner.remove("lock", Some(k.cas)).await?;
        }
        Ok(())
    }

    fn needs_reset(&self) -> bool {
        self.inner.behind.swap(false, Ordering::SeqCst)
    }

    fn snapshot_due(&self, applied: u64) -> bool {
        self.inner.snapshot_due(applied) && !self.inner.snapshotting.load(Ordering::SeqCst)
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
        tokio::spawn(async move {
            match retention::write_snapshot(&*inner, seq, &chunks, FORMAT_VERSION).await {
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
        }
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
        self.kv.replace(name, bytes, cas).await
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

/// Document reads one look-up of payloads or log pages keeps in flight.
const GETS_IN_FLIGHT: usize = 16;
/// Payloads and log pages one commit writes (or removes) at once.
const WRITES_IN_FLIGHT: usize = 32;

/// Page `n` of a copy's log.
fn page_key(k: &[u8; 16], n: u32) -> String {
    format!("output::{}::{n}", uuid::Uuid::from_bytes(*k).simple())
}

fn payload_key(k: &[u8; 16]) -> String {
    format!("payload::{}", uuid::Uuid::from_bytes(*k).simple())
}
