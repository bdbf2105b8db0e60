//! The embedded backend: one node, zero set-up, a redb file in the data
//! directory. The same state machine also runs over a log in a Couchbase
//! bucket shared by several nodes (`couchbase`): only where changes are made
//! durable differs (`Backend`), and with it when a change may start
//! (`begin`: the cluster lock, and the other nodes' changes applied first).
//!
//! Every copy's record (without payload) lives in memory under one
//! `std::sync::Mutex` (every operation is short and never awaits while
//! holding it), with the indexes that make claims cheap. Payloads stay on disk,
//! once per publish, and are read when a task is handed out. Every change is
//! journaled in order to redb by a commit thread that groups concurrent changes
//! into one transaction (see `journal`). On start the copies are read back and
//! the indexes rebuilt; payloads are not read.
//!
//! A new copy becomes visible (claimable, countable) only once its enqueue is
//! committed, so its payload is always on disk by the time anyone reads it.

mod couchbase;
mod journal;
mod state;

use std::collections::{HashMap, HashSet};
use std::ops::Bound::{Excluded, Unbounded};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use redb::Database;
use serde_json::{Map, Value};

use self::couchbase::{CommitError, CouchbaseLog, Entry};
pub use self::couchbase::{CouchbaseSettings, Durability};
use self::journal::{Committer, Op};
pub use self::state::Retention;
use self::state::{EventKind, Mark, Meta, ReadyKey, State};
use super::{
    CancelTarget, Cancellation, Enqueued, Outcome, Page, RetryTarget, Store, StoreError,
    StoreStats, TaskSelector, Tick, AUDIT_KEPT,
};
use crate::model::{
    AuditEntry, Counters, HeldLock, Lane, LockKind, Millis, QueueCounts, QueueName, QueueSettings,
    ScheduleRecord, Task, TaskId, TaskState, WorkerId, WorkerRecord,
};

/// The file inside the data directory.
pub const FILE_NAME: &str = "interq.redb";

/// How often nodes sharing a Couchbase store look for each other's changes
/// (the bound on how late a long-polling worker learns of a copy another
/// node made ready).
pub const POLL_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// Bytes of redb's page cache unless told otherwise.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// The embedded store. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct EmbeddedStore {
    state: Arc<Mutex<State>>,
    backend: Backend,
    retention: Retention,
    /// With Couchbase: totals added here and not yet committed.
    pending_counters: Mutex<Counters>,
    /// With Couchbase: this node computed a change another node's commit
    /// beat; its state must be reloaded before it is used again.
    stale: std::sync::atomic::AtomicBool,
}

/// Where changes are made durable.
#[derive(Debug)]
enum Backend {
    /// One node: a redb file, written by a group-commit thread.
    Redb {
        db: Arc<Database>,
        committer: Committer,
    },
    /// Any number of nodes: a log in a Couchbase bucket (see `couchbase`).
    Couchbase(Arc<CouchbaseLog>),
}

/// A change in progress. With Couchbase, the cluster lock and this node's
/// turn, from before the change is computed until it is committed.
#[derive(Debug)]
enum Session {
    Local,
    Shared(couchbase::Turn),
}

impl EmbeddedStore {
    /// Opens the store in `data_dir` (created if missing), keeping the last
    /// `history` finished copies per queue and the default retention times.
    pub fn open(data_dir: &Path, history: usize) -> Result<Self, StoreError> {
        let retention = Retention {
            finished_per_queue: history,
            ..Retention::default()
        };
        Self::open_with(data_dir, retention, DEFAULT_CACHE_BYTES)
    }

    /// `open`, with the whole retention policy and redb's page cache bounded
    /// to `cache_bytes`.
    pub fn open_with(
        data_dir: &Path,
        retention: Retention,
        cache_bytes: usize,
    ) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join(FILE_NAME);
        let (db, loaded) = journal::open(&path, cache_bytes)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        let mut state = State::new(retention);
        // Decoded one row at a time: holding every row and every record at
        // once would double the memory a large queue needs after a restart.
        let mut completed = Vec::new();
        journal::for_each_copy(&db, |bytes| {
            let m: Meta =
                postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            if m.state == TaskState::Completed {
                completed.push(m);
            } else {
                state.insert(m);
            }
            Ok(())
        })?;
        // The completed history is rebuilt oldest first.
        completed.sort_by_key(|m| (m.finished_at(), m.task_id));
        for m in completed {
            state.insert(m);
        }
        for op in &loaded.records {
            apply_op(&mut state, op)?;
        }
        if let Some(bytes) = &loaded.counters {
            state.counters = decode_json(bytes)?;
        }
        let state = Arc::new(Mutex::new(state));
        let db = Arc::new(db);
        let for_commits = Arc::clone(&state);
        let committer = Committer::start(Arc::clone(&db), move || {
            for_commits
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .counters
        });
        Ok(Self {
            state,
            backend: Backend::Redb { db, committer },
            retention,
            pending_counters: Mutex::new(Counters::default()),
            stale: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Opens the store on a Couchbase bucket shared with other nodes: loads
    /// the latest snapshot and the log after it.
    pub async fn open_couchbase(
        settings: CouchbaseSettings,
        retention: Retention,
    ) -> Result<Self, StoreError> {
        let log = Arc::new(CouchbaseLog::connect(settings).await?);
        let store = Self {
            state: Arc::new(Mutex::new(State::new(retention))),
            backend: Backend::Couchbase(log),
            retention,
            pending_counters: Mutex::new(Counters::default()),
            stale: std::sync::atomic::AtomicBool::new(false),
        };
        store.reload().await?;
        Ok(store)
    }

    /// Rebuilds the state from the shared log: at start, and after another
    /// node committed the entry this node meant to write.
    async fn reload(&self) -> Result<(), StoreError> {
        let Backend::Couchbase(log) = &self.backend else {
            return Ok(());
        };
        let fresh = Arc::new(Mutex::new(State::new(self.retention)));
        log.reset().await;
        log.load(|e| apply_entry(&fresh, e)).await?;
        drop(log.catch_up(|e| apply_entry(&fresh, e)).await?);
        let fresh = std::mem::take(&mut *fresh.lock().unwrap_or_else(|e| e.into_inner()));
        *self.lock() = fresh;
        Ok(())
    }

    async fn reload_if_stale(&self) -> Result<(), StoreError> {
        // A load first: every read passes here, and a swap would write the
        // shared flag each time.
        if self.stale.load(std::sync::atomic::Ordering::SeqCst)
            && self.stale.swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            if let Err(e) = self.reload().await {
                self.stale.store(true, std::sync::atomic::Ordering::SeqCst);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Starts a change. With Couchbase: waits for the cluster lock and
    /// applies every change other nodes made first.
    async fn begin(&self) -> Result<Session, StoreError> {
        self.reload_if_stale().await?;
        match &self.backend {
            Backend::Redb { .. } => Ok(Session::Local),
            Backend::Couchbase(log) => {
                let turn = log
                    .begin(
                        |e| apply_entry(&self.state, e),
                        || {
                            let st = self.lock();
                            (snapshot_ops(&st), st.counters)
                        },
                    )
                    .await?;
                // Totals added since the last change join this one.
                let pending = std::mem::take(
                    &mut *self
                        .pending_counters
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()),
                );
                if pending != Counters::default() {
                    self.lock().counters.add(&pending);
                    self.push(vec![Op::Sync]);
                }
                Ok(Session::Shared(turn))
            }
        }
    }

    /// Ends a change: with redb, waits for batch `seq` to be durable when
    /// `wait` (claims and reports may be durable lazily); with Couchbase,
    /// commits the change as the next log entry and lets go of the lock.
    async fn commit(&self, session: &mut Session, seq: u64, wait: bool) -> Result<(), StoreError> {
        match (session, &self.backend) {
            (Session::Local, _) => {
                if wait {
                    self.durable(seq).await?;
                }
                Ok(())
            }
            (Session::Shared(turn), Backend::Couchbase(log)) => {
                let counters = self.lock().counters;
                match log.commit(turn, counters).await {
                    Ok(()) => Ok(()),
                    Err(CommitError::Store(e)) => Err(e),
                    Err(CommitError::Conflict) => {
                        // Reloaded before the next change or read, once this
                        // turn (and this node's place in the log) is let go.
                        tracing::warn!("another node committed first; the state will be reloaded");
                        self.stale.store(true, std::sync::atomic::Ordering::SeqCst);
                        Err(StoreError::Unavailable(
                            "another node changed the store at the same moment; retry".into(),
                        ))
                    }
                }
            }
            (Session::Shared(_), Backend::Redb { .. }) => Ok(()),
        }
    }

    /// Before a read: with Couchbase, applies what other nodes committed.
    async fn sync(&self) -> Result<(), StoreError> {
        self.reload_if_stale().await?;
        if let Backend::Couchbase(log) = &self.backend {
            drop(log.catch_up(|e| apply_entry(&self.state, e)).await?);
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves indexes that were consistent
        // before each single-step change; carry on rather than wedge.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, ops: Vec<Op>) -> u64 {
        match &self.backend {
            Backend::Redb { committer, .. } => committer.journal.push(ops),
            Backend::Couchbase(log) => {
                log.stage(ops);
                0
            }
        }
    }

    async fn durable(&self, seq: u64) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb { committer, .. } => committer.journal.durable(seq).await,
            Backend::Couchbase(_) => Ok(()),
        }
    }

    /// Enqueues `tasks`, journaling `extra` changes in the same commit.
    async fn enqueue_with(
        &self,
        session: &mut Session,
        tasks: Vec<Task>,
        extra: Vec<Op>,
    ) -> Result<Vec<Enqueued>, StoreError> {
        let (seq, out, staged) = {
            let mut st = self.lock();
            let mut ops = extra;
            ops.reserve(tasks.len() + 1);
            let mut out = Vec::with_capacity(tasks.len());
            let mut staged = Vec::with_capacity(tasks.len());
            let mut payloads = HashSet::new();
            for t in tasks {
                if t.task_id.publish() != t.publish_id {
                    return Err(StoreError::Corrupt(format!(
                        "copy {} does not derive from publish {}",
                        t.task_id, t.publish_id
                    )));
                }
                let publisher = st.publisher(&t.publisher);
                let meta = Meta::from_task(&t, publisher);
                let mut replaced = None;
                if meta.singularly_enqueue {
                    let key = (meta.lane(), meta.fingerprint);
                    if let Some(&existing) = st.enqueue_locks.get(&key) {
                        st.counters.deduplicated += 1;
                        // A twin still being enqueued (not yet in `tasks`)
                        // cannot be replaced; the newcomer folds into it.
                        if !meta.replace_waiting || !st.tasks.contains_key(&existing) {
                            out.push(Enqueued::Existing(existing));
                            continue;
                        }
                        let reason = format!("replaced by {}", meta.task_id);
                        let old = st
                            .update(existing, |t| {
                                t.state = TaskState::Cancelled;
                                let at = t.created_at.max(meta.created_at);
                                t.event(at, EventKind::Replaced, None, Some(reason.clone()));
                                let extra = t.extra_mut();
                                extra.finished_at = Some(at);
                                extra.fail_reason = Some(reason);
                            })
                            .expect("a locked twin exists")
                            .clone();
                        ops.push(put_copy(&old));
                        replaced = Some(existing);
                    }
                    // Reserved now, so that a twin enqueued before this one
                    // commits finds it.
                    st.enqueue_locks.insert(key, meta.task_id);
                }
                st.counters.routed += 1;
                if payloads.insert(t.publish_id) {
                    ops.push(Op::PutPayload(
                        *t.publish_id.as_bytes(),
                        serde_json::to_vec(&t.data).expect("json encodes"),
                    ));
                }
                ops.push(put_copy(&meta));
                out.push(match replaced {
                    Some(old) => Enqueued::Replaced {
                        created: meta.task_id,
                        replaced: old,
                    },
                    None => Enqueued::Created(meta.task_id),
                });
                staged.push(meta);
            }
            (self.push(ops), out, staged)
        };
        self.commit(session, seq, true).await?;
        let mut st = self.lock();
        for meta in staged {
            st.insert(meta);
        }
        Ok(out)
    }

    /// Records one change of a record (an interest, a worker, a schedule,
    /// queue settings) durably, changing the state exactly as a restart or
    /// another node applies it. Returns whether the record `existed` before.
    async fn record(
        &self,
        op: Op,
        existed: impl FnOnce(&State) -> bool,
    ) -> Result<bool, StoreError> {
        let mut session = self.begin().await?;
        let (seq, existed) = {
            let mut st = self.lock();
            let existed = existed(&st);
            apply_op(&mut st, &op)?;
            (self.push(vec![op]), existed)
        };
        self.commit(&mut session, seq, true).await?;
        Ok(existed)
    }

    /// Joins copies with their payloads. A copy whose payload is gone was
    /// deleted meanwhile and is left out.
    async fn with_payloads(
        &self,
        metas: Vec<Meta>,
        with_history: bool,
    ) -> Result<Vec<Task>, StoreError> {
        if metas.is_empty() {
            return Ok(Vec::new());
        }
        let mut publishes: Vec<[u8; 16]> =
            metas.iter().map(|m| *m.publish_id().as_bytes()).collect();
        publishes.sort_unstable();
        publishes.dedup();
        let data: HashMap<[u8; 16], Arc<Map<String, Value>>> = match &self.backend {
            Backend::Redb { db, .. } => {
                let found = journal::read_payloads(db, &publishes)
                    .map_err(|e| StoreError::Unavailable(format!("reading payloads: {e}")))?;
                let mut data = HashMap::with_capacity(publishes.len());
                for (key, bytes) in publishes.into_iter().zip(found) {
                    if let Some(bytes) = bytes {
                        data.insert(key, Arc::new(decode_json(&bytes)?));
                    }
                }
                data
            }
            Backend::Couchbase(log) => log.payloads(&publishes).await?,
        };
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                data.get(m.publish_id().as_bytes())
                    .map(|d| m.to_task(Arc::clone(d), with_history))
            })
            .collect())
    }

    /// Applies the passing of time to the state (see `Store::tick`).
    fn tick_now(&self, now: Millis) -> Tick {
        let mut st = self.lock();
        let end = Millis(now.0.saturating_add(1));
        let first = TaskId::from_bytes([0; 16]);
        let due: Vec<TaskId> = st
            .scheduled
            .range(..(end, first))
            .map(|&(_, id)| id)
            .collect();
        let expired: Vec<TaskId> = st.leases.range(..(end, first)).map(|&(_, id)| id).collect();
        let stale: Vec<TaskId> = st
            .expiries
            .range(..(end, first))
            .map(|&(_, id)| id)
            .collect();
        let aged = st.aged(now);
        if due.is_empty() && expired.is_empty() && stale.is_empty() && aged.is_empty() {
            return Tick::default();
        }
        let mut woken = Vec::new();
        let mut ops = Vec::new();
        for id in stale {
            let m = st
                .update(id, |t| {
                    t.state = TaskState::Expired;
                    t.extra_mut().finished_at = Some(now);
                    t.event(now, EventKind::Expired, None, None);
                })
                .expect("indexed")
                .clone();
            st.counters.expired += 1;
            ops.push(put_copy(&m));
        }
        for id in due {
            let m = st
                .update(id, |t| {
                    t.state = TaskState::Ready;
                    t.event(now, EventKind::Due, None, None);
                })
                .expect("indexed");
            ops.push(put_copy(m));
            woken.push(m.lane());
        }
        for id in expired {
            let m = st
                .update(id, |t| {
                    t.lease_until = None;
                    let holder = t.worker_id;
                    if std::mem::take(&mut t.cancel_requested) {
                        t.state = TaskState::Cancelled;
                        t.extra_mut().finished_at = Some(now);
                        t.event(
                            now,
                            EventKind::Cancelled,
                            holder,
                            Some("lease expired".into()),
                        );
                    } else if t.attempt >= t.max_attempts {
                        t.event(
                            now,
                            EventKind::Failed,
                            holder,
                            Some("lease expired on the last attempt".into()),
                        );
                        t.state = TaskState::Failed;
                        let extra = t.extra_mut();
                        extra.finished_at = Some(now);
                        extra.fail_reason = Some("lease expired on the last attempt".to_owned());
                    } else {
                        t.event(
                            now,
                            EventKind::Requeued,
                            holder,
                            Some("lease expired".into()),
                        );
                        t.state = TaskState::Ready;
                        t.extra_mut().fail_reason = Some("lease expired".to_owned());
                    }
                })
                .expect("indexed")
                .clone();
            st.counters.lease_expired += 1;
            match m.state {
                TaskState::Failed => st.counters.failed += 1,
                TaskState::Cancelled => st.counters.cancelled += 1,
                _ => woken.push(m.lane()),
            }
            ops.push(put_copy(&m));
        }
        let mut old = st.over_history();
        old.extend(aged);
        remove_copies(&mut st, &old, &mut ops);
        self.push(ops);
        woken.sort();
        woken.dedup();
        Tick { woken }
    }

    /// One copy for the answer to a worker's report: without its history or
    /// its payload (the worker has it), so that no payload is read.
    fn for_report(meta: Meta) -> Task {
        meta.to_task(Arc::new(Map::new()), false)
    }
}

/// Applies a committed log entry (another node's change, or a snapshot's
/// part) to the state, as `open` applies the redb file's rows.
fn apply_entry(state: &Mutex<State>, entry: &Entry) -> Result<(), StoreError> {
    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
    for op in &entry.ops {
        apply_op(&mut st, op)?;
    }
    st.counters = entry.counters;
    Ok(())
}

fn queue_of(name: &str) -> Result<QueueName, StoreError> {
    QueueName::parse(name).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn apply_op(st: &mut State, op: &Op) -> Result<(), StoreError> {
    match op {
        Op::PutCopy(_, bytes) => {
            let m: Meta =
                postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            st.remove(m.task_id);
            st.insert(m);
        }
        Op::DeleteCopy(k) => {
            st.remove(TaskId::from_bytes(*k));
        }
        Op::PutInterests(name, bytes) => {
            st.interests.insert(queue_of(name)?, decode_json(bytes)?);
        }
        Op::DeleteInterests(name) => {
            st.interests.remove(&queue_of(name)?);
        }
        Op::PutWorker(_, bytes) => {
            let w: WorkerRecord = decode_json(bytes)?;
            st.workers.insert(w.worker_id, w);
        }
        Op::DeleteWorker(k) => {
            st.workers.remove(&WorkerId::from_bytes(*k));
        }
        // New limits start a new token bucket.
        Op::PutQueueSettings(name, bytes) => {
            let queue = queue_of(name)?;
            st.buckets.remove(&queue);
            st.queue_settings.insert(queue, decode_json(bytes)?);
        }
        Op::DeleteQueueSettings(name) => {
            let queue = queue_of(name)?;
            st.buckets.remove(&queue);
            st.queue_settings.remove(&queue);
        }
        Op::PutSchedule(_, bytes) => {
            let schedule: ScheduleRecord = decode_json(bytes)?;
            st.schedules.insert(schedule.name.clone(), schedule);
        }
        Op::DeleteSchedule(name) => {
            st.schedules.remove(name);
        }
        Op::PutAudit(seq, bytes) => {
            st.audit.push_back((*seq, decode_json(bytes)?));
            while st.audit.len() > AUDIT_KEPT {
                st.audit.pop_front();
            }
        }
        Op::DeleteAudit(seq) => st.audit.retain(|(s, _)| s != seq),
        // Payloads live in their own documents; nothing else to apply.
        Op::PutPayload(..) | Op::DeletePayload(_) | Op::Sync => {}
    }
    Ok(())
}

/// The whole state as changes that rebuild it from nothing.
fn snapshot_ops(st: &State) -> Vec<Op> {
    let mut ops: Vec<Op> = st.tasks.values().map(put_copy).collect();
    ops.extend(st.interests.iter().map(|(q, v)| interests_op(q, v)));
    ops.extend(st.workers.values().map(worker_op));
    ops.extend(st.queue_settings.iter().map(|(q, s)| settings_op(q, s)));
    ops.extend(st.schedules.values().map(schedule_op));
    ops.extend(st.audit.iter().map(|(seq, e)| audit_op(*seq, e)));
    ops
}

fn interests_op(queue: &QueueName, interests: &Value) -> Op {
    Op::PutInterests(
        queue.to_string(),
        serde_json::to_vec(interests).expect("json encodes"),
    )
}

fn worker_op(w: &WorkerRecord) -> Op {
    Op::PutWorker(
        *w.worker_id.as_bytes(),
        serde_json::to_vec(w).expect("a worker encodes"),
    )
}

fn settings_op(queue: &QueueName, settings: &QueueSettings) -> Op {
    Op::PutQueueSettings(
        queue.to_string(),
        serde_json::to_vec(settings).expect("settings encode"),
    )
}

fn audit_op(seq: u64, entry: &AuditEntry) -> Op {
    Op::PutAudit(
        seq,
        serde_json::to_vec(entry).expect("an audit entry encodes"),
    )
}

fn decode_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The copy, if it is running under `worker`'s lease.
fn leased(st: &State, id: TaskId, worker: WorkerId) -> Result<&Meta, StoreError> {
    let t = st.tasks.get(&id).ok_or(StoreError::UnknownTask(id))?;
    if t.state != TaskState::Running {
        return Err(StoreError::NotRunning {
            task: id,
            state: t.state,
        });
    }
    if t.worker_id != Some(worker) {
        return Err(StoreError::NotLeaseHolder { task: id });
    }
    Ok(t)
}

fn schedule_op(s: &ScheduleRecord) -> Op {
    Op::PutSchedule(
        s.name.clone(),
        serde_json::to_vec(s).expect("a schedule encodes"),
    )
}

fn put_copy(m: &Meta) -> Op {
    Op::PutCopy(
        *m.task_id.as_bytes(),
        postcard::to_stdvec(m).expect("a copy encodes"),
    )
}

/// Removes copies, and the payloads no remaining copy needs.
fn remove_copies(st: &mut State, ids: &[TaskId], ops: &mut Vec<Op>) {
    let mut publishes = HashSet::new();
    for id in ids {
        if let Some(m) = st.remove(*id) {
            publishes.insert(m.publish_id());
            ops.push(Op::DeleteCopy(*id.as_bytes()));
        }
    }
    for p in publishes {
        if !st.publish_has_copies(p) {
            ops.push(Op::DeletePayload(*p.as_bytes()));
        }
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn enqueue(&self, tasks: Vec<Task>) -> Result<Vec<Enqueued>, StoreError> {
        let mut session = self.begin().await?;
        self.enqueue_with(&mut session, tasks, Vec::new()).await
    }

    async fn claim(
        &self,
        worker: WorkerId,
        lanes: &[Lane],
        now: Millis,
        count: usize,
    ) -> Result<Vec<Task>, StoreError> {
        if let Backend::Couchbase(_) = &self.backend {
            // Waiting workers poll: take the cluster lock only when there is
            // something to claim.
            self.sync().await?;
            let st = self.lock();
            if lanes
                .iter()
                .all(|l| st.ready.get(l).is_none_or(|r| r.is_empty()))
            {
                return Ok(Vec::new());
            }
        }
        let mut session = self.begin().await?;
        let claimed = {
            let mut st = self.lock();
            let mut picked: Vec<TaskId> = Vec::new();
            let mut picked_locks: Vec<(QueueName, [u8; 16])> = Vec::new();
            // What each queue may still hand out in this claim.
            let mut remaining: HashMap<QueueName, usize> = HashMap::new();
            for lane in lanes {
                if picked.len() >= count {
                    break;
                }
                if let Lane::Queue(q) = lane {
                    // A paused or full queue is skipped whole, not scanned.
                    let allowed = *remaining
                        .entry(q.clone())
                        .or_insert_with(|| st.allowance(q, now));
                    if allowed == 0 {
                        continue;
                    }
                }
                let mut cursor: Option<ReadyKey> = None;
                while picked.len() < count {
                    let next = {
                        let Some(ready) = st.ready.get(lane) else {
                            break;
                        };
                        match cursor {
                            None => ready.iter().next().copied(),
                            Some(k) => ready.range((Excluded(k), Unbounded)).next().copied(),
                        }
                    };
                    let Some(key) = next else {
                        break;
                    };
                    cursor = Some(key);
                    let id = key.2;
                    let t = &st.tasks[&id];
                    // Past its time: the next tick expires it.
                    if t.expire_at().is_some_and(|at| at <= now) {
                        continue;
                    }
                    let run_key = t.singularly_run.then(|| (t.queue.clone(), t.fingerprint));
                    if let Some(k) = &run_key {
                        if st.run_locked(t) || picked_locks.contains(k) {
                            continue;
                        }
                    }
                    let queue = t.queue.clone();
                    let allowed = remaining
                        .entry(queue.clone())
                        .or_insert_with(|| st.allowance(&queue, now));
                    if *allowed == 0 {
                        if matches!(lane, Lane::Queue(_)) {
                            break;
                        }
                        continue;
                    }
                    *allowed -= 1;
                    picked_locks.extend(run_key);
                    picked.push(id);
                }
            }
            let mut spent: HashMap<QueueName, usize> = HashMap::new();
            for id in &picked {
                *spent.entry(st.tasks[id].queue.clone()).or_default() += 1;
            }
            for (queue, n) in spent {
                st.spend(&queue, n);
            }
            let mut claimed = Vec::with_capacity(picked.len());
            let mut ops = Vec::with_capacity(picked.len());
            for id in picked {
                let m = st
                    .update(id, |t| {
                        t.state = TaskState::Running;
                        t.attempt += 1;
                        t.worker_id = Some(worker);
                        t.lease_until = Some(now.plus_secs(t.ttr as u64));
                        t.extra_mut().started_at = Some(now);
                        t.event(now, EventKind::Claimed, Some(worker), None);
                    })
                    .expect("a picked copy exists");
                ops.push(put_copy(m));
                claimed.push(m.for_answer());
            }
            if !ops.is_empty() {
                self.push(ops);
            }
            claimed
        };
        self.commit(&mut session, 0, false).await?;
        self.with_payloads(claimed, false).await
    }

    async fn finish(
        &self,
        id: TaskId,
        worker: WorkerId,
        now: Millis,
        outcome: Outcome,
    ) -> Result<Task, StoreError> {
        let mut session = self.begin().await?;
        let updated = {
            let mut st = self.lock();
            let t = leased(&st, id, worker)?;
            let (attempt, max_attempts) = (t.attempt, t.max_attempts);
            let mut counters = Counters::default();
            let updated = st
                .update(id, |t| {
                    t.lease_until = None;
                    let cancelling = std::mem::take(&mut t.cancel_requested);
                    match outcome {
                        // Stopped on request: whatever else it says, it
                        // neither retries nor counts as failed.
                        Outcome::Fail { reason, .. } if cancelling => {
                            counters.cancelled += 1;
                            t.event(now, EventKind::Cancelled, Some(worker), reason.clone());
                            t.state = TaskState::Cancelled;
                            let extra = t.extra_mut();
                            extra.finished_at = Some(now);
                            extra.fail_reason = reason;
                        }
                        Outcome::Complete { .. } if cancelling => {
                            counters.completed += 1;
                            t.event(now, EventKind::Completed, Some(worker), None);
                            t.state = TaskState::Completed;
                            t.extra_mut().finished_at = Some(now);
                        }
                        Outcome::Complete { re_enqueue, output } => {
                            counters.completed += 1;
                            t.event(
                                now,
                                if re_enqueue {
                                    EventKind::Requeued
                                } else {
                                    EventKind::Completed
                                },
                                Some(worker),
                                None,
                            );
                            let extra = t.extra_mut();
                            extra.fail_reason = None;
                            extra.output = output.map(|o| o.to_string());
                            if re_enqueue {
                                t.state = TaskState::Ready;
                                t.run_at = now;
                            } else {
                                t.state = TaskState::Completed;
                                t.extra_mut().finished_at = Some(now);
                            }
                        }
                        Outcome::Fail {
                            reason,
                            re_enqueue,
                            retry,
                        } => {
                            let reason = reason.unwrap_or_else(|| "failed".to_owned());
                            let what = if re_enqueue {
                                EventKind::Requeued
                            } else if attempt < max_attempts {
                                EventKind::Retrying
                            } else {
                                EventKind::Failed
                            };
                            t.event(now, what, Some(worker), Some(reason.clone()));
                            t.extra_mut().fail_reason = Some(reason);
                            if re_enqueue {
                                counters.retried += 1;
                                t.state = TaskState::Ready;
                                t.run_at = now;
                            } else if attempt < max_attempts {
                                counters.retried += 1;
                                t.state = TaskState::Scheduled;
                                t.run_at = now.plus_millis(retry.delay_ms(attempt));
                            } else {
                                counters.failed += 1;
                                t.state = TaskState::Failed;
                                t.extra_mut().finished_at = Some(now);
                            }
                        }
                    }
                })
                .expect("the copy exists");
            // The journal gets the whole record; the worker's answer, the
            // record without its history.
            let mut ops = vec![put_copy(updated)];
            let updated = updated.for_answer();
            st.counters.add(&counters);
            let old = st.over_history();
            remove_copies(&mut st, &old, &mut ops);
            self.push(ops);
            updated
        };
        self.commit(&mut session, 0, false).await?;
        Ok(Self::for_report(updated))
    }

    async fn heartbeat(
        &self,
        id: TaskId,
        worker: WorkerId,
        now: Millis,
        progress: Option<Value>,
    ) -> Result<Task, StoreError> {
        let mut session = self.begin().await?;
        let updated = {
            let mut st = self.lock();
            leased(&st, id, worker)?;
            let m = st
                .update(id, |t| {
                    t.lease_until = Some(now.plus_secs(t.ttr as u64));
                    if let Some(p) = progress {
                        t.event(now, EventKind::Progress, Some(worker), Some(p.to_string()));
                        t.extra_mut().progress = Some(p.to_string());
                    }
                })
                .expect("the copy exists")
                .clone();
            self.push(vec![put_copy(&m)]);
            m
        };
        self.commit(&mut session, 0, false).await?;
        Ok(Self::for_report(updated))
    }

    async fn tick(&self, now: Millis) -> Result<Tick, StoreError> {
        if let Backend::Couchbase(_) = &self.backend {
            // Every node ticks often: take the cluster lock only when
            // something is due.
            self.sync().await?;
            let pending = *self
                .pending_counters
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if !self.lock().due(now) && pending == Counters::default() {
                return Ok(Tick::default());
            }
        }
        let mut session = self.begin().await?;
        let tick = self.tick_now(now);
        self.commit(&mut session, 0, false).await?;
        Ok(tick)
    }

    async fn release_worker(&self, worker: WorkerId, now: Millis) -> Result<Tick, StoreError> {
        let mut session = self.begin().await?;
        let (seq, mut woken) = {
            let mut st = self.lock();
            let ids: Vec<TaskId> = st
                .running_by
                .get(&worker)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default();
            let mut woken = Vec::new();
            let mut ops = Vec::new();
            for id in ids {
                let m = st
                    .update(id, |t| {
                        t.lease_until = None;
                        if std::mem::take(&mut t.cancel_requested) {
                            t.state = TaskState::Cancelled;
                            t.extra_mut().finished_at = Some(now);
                            t.event(
                                now,
                                EventKind::Cancelled,
                                Some(worker),
                                Some("worker removed".into()),
                            );
                        } else {
                            t.state = TaskState::Ready;
                            t.extra_mut().fail_reason = Some("worker removed".to_owned());
                            t.event(
                                now,
                                EventKind::Requeued,
                                Some(worker),
                                Some("worker removed".into()),
                            );
                        }
                    })
                    .expect("indexed")
                    .clone();
                if m.state == TaskState::Ready {
                    woken.push(m.lane());
                } else {
                    st.counters.cancelled += 1;
                }
                ops.push(put_copy(&m));
            }
            (self.push(ops), woken)
        };
        self.commit(&mut session, seq, true).await?;
        woken.sort();
        woken.dedup();
        Ok(Tick { woken })
    }

    async fn delete_tasks(&self, selector: TaskSelector) -> Result<u64, StoreError> {
        let mut session = self.begin().await?;
        let (seq, count) = {
            let mut st = self.lock();
            let ids: Vec<TaskId> = match &selector {
                TaskSelector::Task(id) => st.tasks.get(id).map(|t| t.task_id).into_iter().collect(),
                TaskSelector::Failed(Some(q)) => {
                    st.failed.get(q).into_iter().flatten().copied().collect()
                }
                TaskSelector::Failed(None) => st.failed_by_age.iter().map(|k| k.1).collect(),
                TaskSelector::Queue(_) | TaskSelector::Worker(_) => st
                    .tasks
                    .values()
                    .filter(|t| t.state != TaskState::Completed)
                    .filter(|t| match &selector {
                        TaskSelector::Queue(q) => &t.queue == q,
                        TaskSelector::Worker(w) => {
                            t.worker_queue == Some(*w)
                                || (t.state == TaskState::Running && t.worker_id == Some(*w))
                        }
                        _ => false,
                    })
                    .map(|t| t.task_id)
                    .collect(),
            };
            let mut ops = Vec::with_capacity(ids.len());
            remove_copies(&mut st, &ids, &mut ops);
            (self.push(ops), ids.len() as u64)
        };
        self.commit(&mut session, seq, true).await?;
        Ok(count)
    }

    async fn task(&self, id: TaskId) -> Result<Option<Task>, StoreError> {
        self.sync().await?;
        let meta = self.lock().tasks.get(&id).cloned();
        Ok(self
            .with_payloads(meta.into_iter().collect(), true)
            .await?
            .pop())
    }

    async fn tasks_of_publish(&self, publish_id: TaskId) -> Result<Vec<Task>, StoreError> {
        self.sync().await?;
        let metas: Vec<Meta> = self.lock().copies_of(publish_id).cloned().collect();
        self.with_payloads(metas, true).await
    }

    async fn tasks_with_key(&self, key: &str) -> Result<Vec<Task>, StoreError> {
        self.sync().await?;
        let metas: Vec<Meta> = {
            let st = self.lock();
            st.with_key(key)
                .iter()
                .filter_map(|id| st.tasks.get(id).cloned())
                .collect()
        };
        self.with_payloads(metas, true).await
    }

    async fn cancel(&self, target: CancelTarget, now: Millis) -> Result<Cancellation, StoreError> {
        let mut session = self.begin().await?;
        let (seq, outcome) = {
            let mut st = self.lock();
            let ids: Vec<TaskId> = match &target {
                CancelTarget::Task(id) if st.tasks.contains_key(id) => vec![*id],
                CancelTarget::Task(id) => st.copies_of(*id).map(|m| m.task_id).collect(),
                CancelTarget::Key(key) => st.with_key(key),
            };
            let mut outcome = Cancellation::default();
            let mut ops = Vec::new();
            for id in ids {
                let state = st.tasks[&id].state;
                let m = match state {
                    TaskState::Ready | TaskState::Scheduled => {
                        st.counters.cancelled += 1;
                        outcome.cancelled.push(id);
                        st.update(id, |t| {
                            t.state = TaskState::Cancelled;
                            t.extra_mut().finished_at = Some(now);
                            t.event(now, EventKind::Cancelled, None, None);
                        })
                    }
                    TaskState::Running if !st.tasks[&id].cancel_requested => {
                        outcome.requested.push(id);
                        st.update(id, |t| {
                            t.cancel_requested = true;
                            t.event(now, EventKind::CancelRequested, None, None);
                        })
                    }
                    _ => {
                        outcome.untouched.push(id);
                        None
                    }
                };
                if let Some(m) = m {
                    ops.push(put_copy(m));
                }
            }
            let old = st.over_history();
            remove_copies(&mut st, &old, &mut ops);
            (self.push(ops), outcome)
        };
        self.commit(&mut session, seq, true).await?;
        Ok(outcome)
    }

    async fn list_tasks(
        &self,
        queue: Option<&QueueName>,
        state: TaskState,
        page: Page,
    ) -> Result<Vec<Task>, StoreError> {
        self.sync().await?;
        // Walked a piece at a time: a deep page of a million copies must not
        // hold the lock that every claim and publish needs.
        // About 2.5 ms of walking, holding the lock (on the development VM).
        const PIECE: usize = 65_536;
        let mut skip = page.offset;
        let mut metas: Vec<Meta> = Vec::with_capacity(page.limit.min(1000));
        let mut mark = Mark::Start;
        while mark != Mark::Done && metas.len() < page.limit {
            if mark != Mark::Start {
                // A pause, not a yield: std's mutex is not fair, and a thread
                // waiting for it would lose the race to an immediate
                // re-lock every time.
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            let st = self.lock();
            let mut ids = Vec::new();
            let wanted = page.limit - metas.len();
            mark = st.walk(queue, state, &mark, PIECE, |id| {
                if skip > 0 {
                    skip -= 1;
                    return true;
                }
                ids.push(id);
                ids.len() < wanted
            });
            metas.extend(ids.iter().filter_map(|id| st.tasks.get(id).cloned()));
        }
        self.with_payloads(metas, true).await
    }

    async fn running_of(&self, worker: WorkerId) -> Result<Vec<TaskId>, StoreError> {
        self.sync().await?;
        Ok(self
            .lock()
            .running_by
            .get(&worker)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default())
    }

    async fn queue_counts(&self) -> Result<Vec<(QueueName, QueueCounts)>, StoreError> {
        self.sync().await?;
        Ok(self
            .lock()
            .counts
            .iter()
            .map(|(q, c)| (q.clone(), *c))
            .collect())
    }

    async fn lane_len(&self, lane: &Lane) -> Result<u64, StoreError> {
        self.sync().await?;
        Ok(self.lock().ready.get(lane).map_or(0, |s| s.len() as u64))
    }

    async fn put_interests(&self, queue: &QueueName, interests: &Value) -> Result<(), StoreError> {
        self.record(interests_op(queue, interests), |_| true)
            .await?;
        Ok(())
    }

    async fn delete_interests(&self, queue: &QueueName) -> Result<bool, StoreError> {
        self.record(Op::DeleteInterests(queue.to_string()), |st| {
            st.interests.contains_key(queue)
        })
        .await
    }

    async fn interests(&self) -> Result<Vec<(QueueName, Value)>, StoreError> {
        self.sync().await?;
        Ok(self
            .lock()
            .interests
            .iter()
            .map(|(q, v)| (q.clone(), v.clone()))
            .collect())
    }

    async fn put_queue_settings(
        &self,
        queue: &QueueName,
        settings: QueueSettings,
    ) -> Result<(), StoreError> {
        let op = if settings.is_default() {
            Op::DeleteQueueSettings(queue.to_string())
        } else {
            settings_op(queue, &settings)
        };
        self.record(op, |_| true).await?;
        Ok(())
    }

    async fn queue_settings(&self) -> Result<Vec<(QueueName, QueueSettings)>, StoreError> {
        self.sync().await?;
        let mut all: Vec<_> = self
            .lock()
            .queue_settings
            .iter()
            .map(|(q, s)| (q.clone(), *s))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(all)
    }

    async fn put_schedule(&self, schedule: &ScheduleRecord) -> Result<(), StoreError> {
        self.record(schedule_op(schedule), |_| true).await?;
        Ok(())
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool, StoreError> {
        self.record(Op::DeleteSchedule(name.to_owned()), |st| {
            st.schedules.contains_key(name)
        })
        .await
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        self.sync().await?;
        Ok(self.lock().schedules.values().cloned().collect())
    }

    async fn due_schedules(&self, now: Millis) -> Result<Vec<ScheduleRecord>, StoreError> {
        self.sync().await?;
        Ok(self
            .lock()
            .schedules
            .values()
            .filter(|s| s.next_run.is_some_and(|at| at <= now))
            .cloned()
            .collect())
    }

    async fn fire_schedule(
        &self,
        schedule: &ScheduleRecord,
        tasks: Vec<Task>,
    ) -> Result<Vec<Enqueued>, StoreError> {
        let mut session = self.begin().await?;
        self.lock()
            .schedules
            .insert(schedule.name.clone(), schedule.clone());
        self.enqueue_with(&mut session, tasks, vec![schedule_op(schedule)])
            .await
    }

    async fn put_worker(&self, worker: &WorkerRecord) -> Result<(), StoreError> {
        self.record(worker_op(worker), |_| true).await?;
        Ok(())
    }

    async fn delete_worker(&self, worker: WorkerId) -> Result<bool, StoreError> {
        self.record(Op::DeleteWorker(*worker.as_bytes()), |st| {
            st.workers.contains_key(&worker)
        })
        .await
    }

    async fn workers(&self) -> Result<Vec<WorkerRecord>, StoreError> {
        self.sync().await?;
        Ok(self.lock().workers.values().cloned().collect())
    }

    async fn add_counters(&self, delta: Counters) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb { .. } => {
                self.lock().counters.add(&delta);
                self.push(vec![Op::Sync]);
            }
            // Not a change of its own (that would double the cost of every
            // publish): the delta rides with this node's next change, at the
            // latest the next tick's.
            Backend::Couchbase(_) => self
                .pending_counters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .add(&delta),
        }
        Ok(())
    }

    async fn counters(&self) -> Result<Counters, StoreError> {
        self.sync().await?;
        let mut counters = self.lock().counters;
        counters.add(
            &self
                .pending_counters
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        Ok(counters)
    }

    async fn retry_failed(
        &self,
        target: RetryTarget,
        now: Millis,
    ) -> Result<Vec<TaskId>, StoreError> {
        let mut session = self.begin().await?;
        let (seq, ids) = {
            let mut st = self.lock();
            let ids: Vec<TaskId> = match &target {
                RetryTarget::Task(id) => {
                    let t = st.tasks.get(id).ok_or(StoreError::UnknownTask(*id))?;
                    if t.state != TaskState::Failed {
                        return Err(StoreError::WrongState {
                            task: *id,
                            state: t.state,
                            wanted: TaskState::Failed,
                            action: "retried",
                        });
                    }
                    vec![*id]
                }
                RetryTarget::Failed(Some(q)) => {
                    st.failed.get(q).into_iter().flatten().copied().collect()
                }
                RetryTarget::Failed(None) => st.failed_by_age.iter().map(|k| k.1).collect(),
            };
            let mut ops = Vec::with_capacity(ids.len());
            for &id in &ids {
                let m = st.update(id, |t| {
                    t.state = TaskState::Ready;
                    t.attempt = 0;
                    t.run_at = now;
                    t.worker_id = None;
                    t.lease_until = None;
                    let extra = t.extra_mut();
                    extra.finished_at = None;
                    extra.fail_reason = None;
                    extra.started_at = None;
                    t.event(now, EventKind::Retried, None, None);
                });
                if let Some(m) = m {
                    ops.push(put_copy(m));
                }
            }
            (self.push(ops), ids)
        };
        self.commit(&mut session, seq, true).await?;
        Ok(ids)
    }

    async fn retry_edited(
        &self,
        failed: TaskId,
        replacement: Task,
        now: Millis,
    ) -> Result<TaskId, StoreError> {
        let mut session = self.begin().await?;
        let new_id = replacement.task_id;
        let old = {
            let mut st = self.lock();
            let t = st
                .tasks
                .get(&failed)
                .ok_or(StoreError::UnknownTask(failed))?;
            if t.state != TaskState::Failed {
                return Err(StoreError::WrongState {
                    task: failed,
                    state: t.state,
                    wanted: TaskState::Failed,
                    action: "edited",
                });
            }
            let reason = format!("retried with new data as {new_id}");
            st.update(failed, |t| {
                t.state = TaskState::Cancelled;
                t.event(now, EventKind::Edited, None, Some(reason.clone()));
                let extra = t.extra_mut();
                extra.finished_at = Some(now);
                extra.fail_reason = Some(reason);
            })
            .map(put_copy)
        };
        // The cancelled original is journaled in the replacement's commit.
        let out = self
            .enqueue_with(&mut session, vec![replacement], old.into_iter().collect())
            .await?;
        Ok(out.first().map_or(new_id, |e| e.task_id()))
    }

    async fn run_now(&self, id: TaskId, now: Millis) -> Result<Task, StoreError> {
        let mut session = self.begin().await?;
        let (seq, meta) = {
            let mut st = self.lock();
            let t = st.tasks.get(&id).ok_or(StoreError::UnknownTask(id))?;
            if t.state != TaskState::Scheduled {
                return Err(StoreError::WrongState {
                    task: id,
                    state: t.state,
                    wanted: TaskState::Scheduled,
                    action: "run now",
                });
            }
            let m = st
                .update(id, |t| {
                    t.state = TaskState::Ready;
                    t.run_at = now;
                    t.event(now, EventKind::RunNow, None, None);
                })
                .expect("the copy exists")
                .clone();
            (self.push(vec![put_copy(&m)]), m)
        };
        self.commit(&mut session, seq, true).await?;
        Ok(self
            .with_payloads(vec![meta], true)
            .await?
            .pop()
            .ok_or(StoreError::UnknownTask(id))?)
    }

    async fn locks(&self) -> Result<Vec<HeldLock>, StoreError> {
        self.sync().await?;
        let st = self.lock();
        let hex = |fp: &[u8; 16]| fp.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let mut out: Vec<HeldLock> = st
            .enqueue_locks
            .iter()
            .filter_map(|((_, fp), id)| {
                let m = st.tasks.get(id)?;
                Some(HeldLock {
                    kind: LockKind::Enqueue,
                    queue: m.queue.clone(),
                    task_id: *id,
                    worker_id: None,
                    identity: hex(fp),
                })
            })
            .chain(st.run_locks.iter().filter_map(|((queue, fp), id)| {
                Some(HeldLock {
                    kind: LockKind::Run,
                    queue: queue.clone(),
                    task_id: *id,
                    worker_id: st.tasks.get(id)?.worker_id,
                    identity: hex(fp),
                })
            }))
            .collect();
        out.sort_by(|a, b| (&a.queue, a.task_id).cmp(&(&b.queue, b.task_id)));
        Ok(out)
    }

    async fn break_lock(
        &self,
        holder: TaskId,
        kind: LockKind,
        now: Millis,
    ) -> Result<bool, StoreError> {
        let mut session = self.begin().await?;
        let seq = {
            let mut st = self.lock();
            let Some(t) = st.tasks.get(&holder) else {
                return Ok(false);
            };
            let held = match kind {
                LockKind::Enqueue => {
                    st.enqueue_locks.get(&(t.lane(), t.fingerprint)) == Some(&holder)
                }
                LockKind::Run => {
                    st.run_locks.get(&(t.queue.clone(), t.fingerprint)) == Some(&holder)
                }
            };
            if !held {
                return Ok(false);
            }
            let m = st
                .update(holder, |t| {
                    match kind {
                        LockKind::Enqueue => t.singularly_enqueue = false,
                        LockKind::Run => t.singularly_run = false,
                    }
                    t.event(now, EventKind::LockBroken, None, Some(kind.as_str().into()));
                })
                .expect("the holder exists");
            let op = put_copy(m);
            self.push(vec![op])
        };
        self.commit(&mut session, seq, true).await?;
        Ok(true)
    }

    async fn append_audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        let mut session = self.begin().await?;
        let seq = {
            let mut st = self.lock();
            let next = st.audit.back().map_or(1, |(n, _)| n + 1);
            let mut ops = vec![audit_op(next, &entry)];
            st.audit.push_back((next, entry));
            while st.audit.len() > AUDIT_KEPT {
                if let Some((old, _)) = st.audit.pop_front() {
                    ops.push(Op::DeleteAudit(old));
                }
            }
            self.push(ops)
        };
        self.commit(&mut session, seq, true).await
    }

    async fn audit(&self, page: Page) -> Result<(u64, Vec<AuditEntry>), StoreError> {
        self.sync().await?;
        let st = self.lock();
        let entries = st
            .audit
            .iter()
            .rev()
            .skip(page.offset)
            .take(page.limit)
            .map(|(_, e)| e.clone())
            .collect();
        Ok((st.audit.len() as u64, entries))
    }

    async fn flush(&self) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Redb { committer, .. } => {
                let seq = committer.journal.push([Op::Sync]);
                self.durable(seq).await
            }
            // Taking and releasing the cluster lock proves the bucket
            // answers and takes writes; nothing is staged.
            Backend::Couchbase(_) => {
                let mut session = self.begin().await?;
                self.commit(&mut session, 0, false).await
            }
        }
    }

    fn poll_interval(&self) -> Option<std::time::Duration> {
        match self.backend {
            Backend::Redb { .. } => None,
            Backend::Couchbase(_) => Some(POLL_INTERVAL),
        }
    }

    fn stats(&self) -> StoreStats {
        match &self.backend {
            Backend::Redb { committer, .. } => {
                let j = &committer.journal;
                StoreStats {
                    commits: j.commits.load(std::sync::atomic::Ordering::Relaxed),
                    writes: j.writes.load(std::sync::atomic::Ordering::Relaxed),
                }
            }
            Backend::Couchbase(log) => log.stats(),
        }
    }
}
