//! The state machine of this store shared by several nodes through one
//! Couchbase bucket: a totally ordered log of changes, plus snapshots, in
//! key-value documents only (no N1QL). `docs/couchbase.md` describes the
//! documents and why each step is safe when nodes race.
//!
//! Every node keeps the whole state in memory, as the embedded backend does,
//! and changes it only under the cluster lock, after catching up with the
//! log: so a change is always computed on the latest state, and the log's
//! order is the one order of every change in the cluster. A change is
//! committed by inserting the next log entry (insert fails if the entry
//! exists, so two nodes can never both commit entry N); until then no other
//! node sees it, and a node that dies before it loses nothing that was
//! acknowledged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use couchbase::authenticator::PasswordAuthenticator;
use couchbase::cluster::Cluster;
use couchbase::collection::Collection;
use couchbase::error::ErrorKind;
use couchbase::options::cluster_options::ClusterOptions;
use couchbase::options::kv_options::{InsertOptions, RemoveOptions, ReplaceOptions, UpsertOptions};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

use super::journal::Op;
use crate::model::Counters;
use crate::store::StoreError;

/// Where and how to reach the cluster: `[store.couchbase]` in the
/// settings.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CouchbaseSettings {
    /// `couchbase://host1,host2` (or `couchbases://` for TLS).
    pub connection_string: String,
    pub username: String,
    /// A secret: kept out of `Debug` and logs.
    pub password: String,
    pub bucket: String,
    pub scope: String,
    pub collection: String,
    /// Every document's key starts with it: several interq clusters (or
    /// tests) can share one collection.
    pub key_prefix: String,
    /// Bound on every SDK call, in ms: some retry for a long time or forever
    /// (an unknown bucket, a wrong password, a locked document).
    pub timeout_ms: u64,
    /// What a commit waits for (see `Durability`).
    pub durability: Durability,
}

impl Default for CouchbaseSettings {
    fn default() -> Self {
        Self {
            connection_string: String::new(),
            username: String::new(),
            password: String::new(),
            bucket: "interq".into(),
            scope: "_default".into(),
            collection: "_default".into(),
            key_prefix: "interq::".into(),
            timeout_ms: 10_000,
            durability: Durability::None,
        }
    }
}

impl CouchbaseSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

/// Couchbase's durability levels, for the writes that commit a change:
/// `none` (the active node has it in memory), `majority`,
/// `majority_and_persist_active`, `persist_to_majority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    #[default]
    None,
    Majority,
    MajorityAndPersistActive,
    PersistToMajority,
}

impl Durability {
    fn level(self) -> Option<couchbase::durability_level::DurabilityLevel> {
        use couchbase::durability_level::DurabilityLevel as L;
        match self {
            Self::None => None,
            Self::Majority => Some(L::MAJORITY),
            Self::MajorityAndPersistActive => Some(L::MAJORITY_AND_PERSIST_ACTIVE),
            Self::PersistToMajority => Some(L::PERSIST_TO_MAJORITY),
        }
    }
}

impl std::fmt::Debug for CouchbaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CouchbaseSettings")
            .field("connection_string", &self.connection_string)
            .field("username", &self.username)
            .field("password", &"<secret>")
            .field("bucket", &self.bucket)
            .field("scope", &self.scope)
            .field("collection", &self.collection)
            .field("key_prefix", &self.key_prefix)
            .field("timeout_ms", &self.timeout_ms)
            .field("durability", &self.durability)
            .finish()
    }
}

/// One committed batch of changes, and the totals after it.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Entry {
    pub ops: Vec<Op>,
    pub counters: Counters,
}

/// Where the latest snapshot is.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotPointer {
    /// The log entry the snapshot includes, and all before it.
    seq: u64,
    chunks: u32,
}

/// How long the cluster lock is held at most before another node may take
/// it (a node that stalls longer finds its commit refused, and reloads).
const LOCK_LEASE: Duration = Duration::from_secs(5);
/// A node keeps the cluster lock from one of its changes to the next while
/// more of them wait (saving the round trips of letting go, taking it again
/// and catching up), but for no longer than this, so that other nodes get
/// their turn, and far within the lease.
const KEEP_AT_MOST: Duration = Duration::from_millis(200);
/// Nor for more changes than this.
const KEEP_CHANGES: u32 = 256;
/// A kept lock no change of this node takes up is let go after this.
const KEEP_IDLE: Duration = Duration::from_millis(20);
/// Log entries are kept this long; snapshots are taken far more often.
const LOG_KEPT: Duration = Duration::from_secs(7 * 86_400);
/// A snapshot every this many entries (and at the first change after a
/// start that found none), so that a starting node reads a bounded log.
const SNAPSHOT_EVERY: u64 = 10_000;
/// Bytes of one snapshot document (Couchbase's limit is 20 MiB).
const CHUNK_BYTES: usize = 4 << 20;

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn binary_flags() -> u32 {
    couchbase::transcoding::raw_binary::encode(&[])
        .map(|(_, f)| f)
        .unwrap_or(0)
}

/// The connection, and this node's place in the log.
pub(super) struct CouchbaseLog {
    // Kept alive: dropping the cluster closes its connections.
    _cluster: Cluster,
    collection: Collection,
    settings: CouchbaseSettings,
    node: String,
    /// Serializes this node's changes; holds the last entry applied here.
    applied: Arc<AsyncMutex<u64>>,
    /// Changes staged by the operation in progress.
    staged: std::sync::Mutex<Vec<Op>>,
    /// The entry of the last snapshot written or read.
    snapshot_seq: std::sync::atomic::AtomicU64,
    /// The cluster lock, kept between two of this node's changes.
    kept: std::sync::Mutex<Option<Kept>>,
    kept_generation: std::sync::atomic::AtomicU64,
    /// This node's changes waiting for their turn.
    waiting: std::sync::atomic::AtomicUsize,
    /// Log entries written by this node, and the changes in them.
    commits: std::sync::atomic::AtomicU64,
    writes: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for CouchbaseLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CouchbaseLog")
            .field("settings", &self.settings)
            .field("node", &self.node)
            .finish()
    }
}

/// An SDK call under a time limit: the call's own result, or the store's
/// error when it did not answer in time.
type Bounded<'a, T> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<couchbase::error::Result<T>, StoreError>>
            + Send
            + 'a,
    >,
>;

/// The right to change the state: this node's turn, and the cluster lock.
/// A turn dropped without a commit (the change failed, say a report from a
/// worker that does not hold the lease) still lets go of the lock.
pub(super) struct Turn {
    applied: OwnedMutexGuard<u64>,
    lock_cas: u64,
    /// When the lock was taken, and how many changes it has served.
    since: std::time::Instant,
    changes: u32,
    log: Arc<CouchbaseLog>,
    released: bool,
}

/// The cluster lock, held between two changes of this node.
#[derive(Debug)]
struct Kept {
    cas: u64,
    since: std::time::Instant,
    changes: u32,
    generation: u64,
}

impl Drop for Turn {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        self.log
            .staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
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

impl std::fmt::Debug for Turn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Turn")
            .field("applied", &*self.applied)
            .finish()
    }
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("couchbase: {what}: {e}"))
}

impl CouchbaseLog {
    pub(super) async fn connect(settings: CouchbaseSettings) -> Result<Self, StoreError> {
        let options = ClusterOptions::new(
            PasswordAuthenticator::new(settings.username.clone(), settings.password.clone()).into(),
        );
        let connecting: std::pin::Pin<
            Box<dyn std::future::Future<Output = couchbase::error::Result<Cluster>> + Send>,
        > = Box::pin(Cluster::connect(
            settings.connection_string.clone(),
            options,
        ));
        let cluster = tokio::time::timeout(settings.timeout(), connecting)
            .await
            .map_err(|_| unavailable("connecting", "timed out"))?
            .map_err(|e| unavailable("connecting", e))?;
        let collection = cluster
            .bucket(settings.bucket.clone())
            .scope(settings.scope.clone())
            .collection(settings.collection.clone());
        Ok(Self {
            _cluster: cluster,
            collection,
            node: uuid::Uuid::new_v4().simple().to_string(),
            settings,
            applied: Arc::new(AsyncMutex::new(0)),
            staged: std::sync::Mutex::new(Vec::new()),
            snapshot_seq: std::sync::atomic::AtomicU64::new(0),
            kept: std::sync::Mutex::new(None),
            kept_generation: std::sync::atomic::AtomicU64::new(0),
            waiting: std::sync::atomic::AtomicUsize::new(0),
            commits: std::sync::atomic::AtomicU64::new(0),
            writes: std::sync::atomic::AtomicU64::new(0),
        })
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.settings.key_prefix)
    }

    /// `call`, bounded by the configured timeout, boxed: the SDK's futures
    /// nest deeply, and unboxed they would make every future of the store
    /// (and of its callers) too deep for the compiler to lay out.
    fn bounded<'a, T: Send + 'a>(
        &'a self,
        what: &'a str,
        call: impl std::future::Future<Output = couchbase::error::Result<T>> + Send + 'a,
    ) -> Bounded<'a, T> {
        let limit = self.settings.timeout();
        Box::pin(async move {
            tokio::time::timeout(limit, call)
                .await
                .map_err(|_| unavailable(what, format!("no answer within {limit:?}")))
        })
    }

    /// A document's bytes and CAS, or `None` when it does not exist.
    async fn get(&self, name: &str) -> Result<Option<(Vec<u8>, u64)>, StoreError> {
        match self
            .bounded(name, self.collection.get(self.key(name), None))
            .await?
        {
            Ok(r) => Ok(Some((r.content_as_raw().0.to_vec(), r.cas()))),
            Err(e) if matches!(e.kind(), ErrorKind::DocumentNotFound) => Ok(None),
            Err(e) => Err(unavailable(name, e)),
        }
    }

    /// Writes a document: payloads and snapshots, with the configured
    /// durability.
    async fn upsert(
        &self,
        name: &str,
        bytes: &[u8],
        expiry: Option<Duration>,
    ) -> Result<(), StoreError> {
        let mut options = UpsertOptions::new();
        if let Some(e) = expiry {
            options = options.expiry(e);
        }
        if let Some(level) = self.settings.durability.level() {
            options = options.durability_level(level);
        }
        self.bounded(
            name,
            self.collection
                .upsert_raw(self.key(name), bytes, binary_flags(), options),
        )
        .await?
        .map(|_| ())
        .map_err(|e| unavailable(name, e))
    }

    /// Creates a document; false when it already exists.
    async fn insert(
        &self,
        name: &str,
        bytes: &[u8],
        expiry: Duration,
        durable: bool,
    ) -> Result<Option<u64>, StoreError> {
        let mut options = InsertOptions::new().expiry(expiry);
        if let (true, Some(level)) = (durable, self.settings.durability.level()) {
            options = options.durability_level(level);
        }
        match self
            .bounded(
                name,
                self.collection
                    .insert_raw(self.key(name), bytes, binary_flags(), options),
            )
            .await?
        {
            Ok(r) => Ok(Some(r.cas())),
            Err(e) if matches!(e.kind(), ErrorKind::DocumentExists) => Ok(None),
            Err(e) => Err(unavailable(name, e)),
        }
    }

    async fn remove(&self, name: &str, cas: Option<u64>) -> Result<(), StoreError> {
        let mut options = RemoveOptions::new();
        if let Some(c) = cas {
            options = options.cas(c);
        }
        match self
            .bounded(name, self.collection.remove(self.key(name), options))
            .await?
        {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::DocumentNotFound | ErrorKind::CasMismatch
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(unavailable(name, e)),
        }
    }

    /// Takes the cluster lock: a document naming this node, with a lease.
    /// A lock whose lease ran out (its node died or stalled) is taken over
    /// with CAS, so that two nodes cannot both take it.
    async fn take_lock(&self) -> Result<u64, StoreError> {
        let started = std::time::Instant::now();
        let mut pause = Duration::from_micros(200);
        loop {
            let mine = serde_json::to_vec(&serde_json::json!({
                "node": self.node,
                "until": wall_ms() + LOCK_LEASE.as_millis() as u64,
            }))
            .expect("json encodes");
            // The document also expires, a little after its lease, in case
            // every node is gone.
            let expiry = LOCK_LEASE + Duration::from_secs(5);
            if let Some(cas) = self.insert("lock", &mine, expiry, false).await? {
                return Ok(cas);
            }
            if let Some((held, cas)) = self.get("lock").await? {
                let until = serde_json::from_slice::<Value>(&held)
                    .ok()
                    .and_then(|v| v["until"].as_u64())
                    .unwrap_or(0);
                if until < wall_ms() {
                    let options = ReplaceOptions::new().cas(cas).expiry(expiry);
                    match self
                        .bounded(
                            "lock",
                            self.collection.replace_raw(
                                self.key("lock"),
                                &mine,
                                binary_flags(),
                                options,
                            ),
                        )
                        .await?
                    {
                        Ok(r) => {
                            tracing::warn!("took over the cluster lock after its lease ran out");
                            return Ok(r.cas());
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                ErrorKind::CasMismatch | ErrorKind::DocumentNotFound
                            ) => {}
                        Err(e) => return Err(unavailable("lock", e)),
                    }
                }
            }
            if started.elapsed() > self.settings.timeout() {
                return Err(unavailable("lock", "another node held it too long"));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Reads the entries after `after`, in order, until one is missing.
    async fn entries_after(&self, after: u64) -> Result<Vec<(u64, Entry)>, StoreError> {
        let mut out = Vec::new();
        let mut seq = after + 1;
        while let Some((bytes, _)) = self.get(&format!("log::{seq}")).await? {
            let entry: Entry = postcard::from_bytes(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("log entry {seq}: {e}")))?;
            out.push((seq, entry));
            seq += 1;
        }
        Ok(out)
    }

    /// Brings `apply` every entry this node has not applied yet. Returns the
    /// lock on this node's place in the log.
    pub(super) async fn catch_up(
        &self,
        apply: impl FnMut(&Entry) -> Result<(), StoreError>,
    ) -> Result<OwnedMutexGuard<u64>, StoreError> {
        let mut applied = Arc::clone(&self.applied).lock_owned().await;
        self.apply_new(&mut applied, apply).await?;
        Ok(applied)
    }

    async fn apply_new(
        &self,
        applied: &mut OwnedMutexGuard<u64>,
        mut apply: impl FnMut(&Entry) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        for (seq, entry) in self.entries_after(**applied).await? {
            apply(&entry)?;
            **applied = seq;
        }
        Ok(())
    }

    /// This node's turn to change the state: its own changes in order, the
    /// cluster lock, and every entry before it applied.
    ///
    /// This is also when snapshots are taken: the state is then exactly the
    /// log up to the last entry applied, with no change half made.
    pub(super) async fn begin(
        self: &Arc<Self>,
        apply: impl FnMut(&Entry) -> Result<(), StoreError>,
        snapshot: impl FnOnce() -> (Vec<Op>, Counters),
    ) -> Result<Turn, StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        self.waiting.fetch_add(1, SeqCst);
        let mut applied = Arc::clone(&self.applied).lock_owned().await;
        self.waiting.fetch_sub(1, SeqCst);
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner()).take();
        let (lock_cas, since, changes) = match kept {
            // Held since this node's last change: nobody else committed.
            Some(k) if k.since.elapsed() < KEEP_AT_MOST => (k.cas, k.since, k.changes),
            other => {
                if let Some(k) = other {
                    self.remove("lock", Some(k.cas)).await?;
                }
                (self.take_lock().await?, std::time::Instant::now(), 0)
            }
        };
        let mut ready = if changes == 0 {
            self.apply_new(&mut applied, apply).await
        } else {
            Ok(())
        };
        let last = self.snapshot_seq.load(std::sync::atomic::Ordering::Relaxed);
        if ready.is_ok() && *applied > 0 && (last == 0 || *applied >= last + SNAPSHOT_EVERY) {
            let (ops, counters) = snapshot();
            ready = self.write_snapshot(*applied, counters, ops).await;
        }
        if let Err(e) = ready {
            self.remove("lock", Some(lock_cas)).await?;
            return Err(e);
        }
        Ok(Turn {
            applied,
            lock_cas,
            since,
            changes: changes + 1,
            log: Arc::clone(self),
            released: false,
        })
    }

    pub(super) fn stage(&self, ops: Vec<Op>) {
        self.staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(ops);
    }

    /// Commits what was staged during `turn` as the next log entry, and
    /// lets go of the cluster lock. `Err(Conflict)` when another node
    /// committed that entry first (this node's lease ran out): the caller
    /// must reload its state.
    pub(super) async fn commit(
        &self,
        turn: &mut Turn,
        counters: Counters,
    ) -> Result<(), CommitError> {
        let ops = std::mem::take(&mut *self.staged.lock().unwrap_or_else(|e| e.into_inner()));
        let result = self.write(turn, ops, counters).await;
        turn.released = true;
        let keep = result.is_ok()
            && self.waiting.load(std::sync::atomic::Ordering::SeqCst) > 0
            && turn.since.elapsed() < KEEP_AT_MOST
            && turn.changes < KEEP_CHANGES;
        if keep {
            let generation = self
                .kept_generation
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                + 1;
            *self.kept.lock().unwrap_or_else(|e| e.into_inner()) = Some(Kept {
                cas: turn.lock_cas,
                since: turn.since,
                changes: turn.changes,
                generation,
            });
            // The change that waited may have given up: let go soon anyway.
            let log = Arc::clone(&turn.log);
            tokio::spawn(async move {
                tokio::time::sleep(KEEP_IDLE).await;
                log.let_go_of_kept(generation).await;
            });
        } else {
            self.remove("lock", Some(turn.lock_cas)).await?;
        }
        result
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

    async fn write(
        &self,
        turn: &mut Turn,
        ops: Vec<Op>,
        counters: Counters,
    ) -> Result<(), CommitError> {
        if ops.is_empty() {
            return Ok(());
        }
        // Payloads first: an entry is only ever read after it exists, and
        // then its payloads do too.
        let mut logged = Vec::with_capacity(ops.len());
        let mut gone = Vec::new();
        for op in ops {
            match op {
                Op::PutPayload(k, bytes) => {
                    self.upsert(&payload_key(&k), &bytes, None).await?;
                }
                Op::DeletePayload(k) => gone.push(k),
                other => logged.push(other),
            }
        }
        let seq = *turn.applied + 1;
        let entry = Entry {
            ops: logged,
            counters,
        };
        let bytes = postcard::to_stdvec(&entry).expect("an entry encodes");
        if self
            .insert(&format!("log::{seq}"), &bytes, LOG_KEPT, true)
            .await?
            .is_none()
        {
            return Err(CommitError::Conflict);
        }
        *turn.applied = seq;
        self.commits
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.writes
            .fetch_add(entry.ops.len() as u64, std::sync::atomic::Ordering::Relaxed);
        for k in gone {
            self.remove(&payload_key(&k), None).await?;
        }
        Ok(())
    }

    /// Writes the whole state as of entry `seq`, then points to it.
    async fn write_snapshot(
        &self,
        seq: u64,
        counters: Counters,
        ops: Vec<Op>,
    ) -> Result<(), StoreError> {
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        let mut current = Vec::new();
        let mut size = 0;
        let mut flush = |current: &mut Vec<Op>| {
            let entry = Entry {
                ops: std::mem::take(current),
                counters,
            };
            chunks.push(postcard::to_stdvec(&entry).expect("a chunk encodes"));
        };
        for op in ops {
            size += op.size();
            current.push(op);
            if size >= CHUNK_BYTES {
                flush(&mut current);
                size = 0;
            }
        }
        flush(&mut current);
        for (i, chunk) in chunks.iter().enumerate() {
            self.upsert(&format!("snapshot::{seq}::{i}"), chunk, Some(LOG_KEPT))
                .await?;
        }
        let pointer = serde_json::to_vec(&SnapshotPointer {
            seq,
            chunks: chunks.len() as u32,
        })
        .expect("json encodes");
        self.upsert("snapshot", &pointer, None).await?;
        self.snapshot_seq
            .store(seq, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(seq, chunks = chunks.len(), "wrote a snapshot");
        Ok(())
    }

    /// Loads the latest snapshot (if any) into `apply`, and notes its entry
    /// as applied; `catch_up` then reads the log after it.
    pub(super) async fn load(
        &self,
        mut apply: impl FnMut(&Entry) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut applied = Arc::clone(&self.applied).lock_owned().await;
        let Some((bytes, _)) = self.get("snapshot").await? else {
            *applied = 0;
            return Ok(());
        };
        let pointer: SnapshotPointer =
            serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        for i in 0..pointer.chunks {
            let name = format!("snapshot::{}::{i}", pointer.seq);
            let (bytes, _) = self
                .get(&name)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("{name} is missing")))?;
            let entry: Entry = postcard::from_bytes(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("{name}: {e}")))?;
            apply(&entry)?;
        }
        *applied = pointer.seq;
        self.snapshot_seq
            .store(pointer.seq, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Forgets this node's place: the next `load` starts again.
    pub(super) async fn reset(&self) {
        *self.applied.lock().await = 0;
        self.staged
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    pub(super) fn stats(&self) -> crate::store::StoreStats {
        crate::store::StoreStats {
            commits: self.commits.load(std::sync::atomic::Ordering::Relaxed),
            writes: self.writes.load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// The payloads of these publishes (absent ones are left out).
    pub(super) async fn payloads(
        &self,
        publishes: &[[u8; 16]],
    ) -> Result<HashMap<[u8; 16], Arc<Map<String, Value>>>, StoreError> {
        let mut out = HashMap::with_capacity(publishes.len());
        for k in publishes {
            if let Some((bytes, _)) = self.get(&payload_key(k)).await? {
                let data: Map<String, Value> = serde_json::from_slice(&bytes)
                    .map_err(|e| StoreError::Corrupt(format!("payload: {e}")))?;
                out.insert(*k, Arc::new(data));
            }
        }
        Ok(out)
    }
}

fn payload_key(k: &[u8; 16]) -> String {
    format!("payload::{}", uuid::Uuid::from_bytes(*k).simple())
}

/// Why a commit did not happen.
#[derive(Debug)]
pub(super) enum CommitError {
    /// Another node committed this entry first.
    Conflict,
    Store(StoreError),
}

impl From<StoreError> for CommitError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}
