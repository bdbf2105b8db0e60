//! The embedded store's in-memory state: one compact record per copy (no
//! payload: that stays on disk, once per publish) and the indexes that make
//! claims, schedules, leases and the singular rules cheap.
//!
//! Every state change goes through `insert`, `remove` or `update`, which keep
//! the indexes and per-queue counts in step with the copy's state: one place
//! where a task moves.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::ops::Bound::{Excluded, Unbounded};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::{
    Counters, Lane, Millis, Priority, QueueCounts, QueueName, QueueSettings, Scope, Task, TaskId,
    TaskState, WorkerId, WorkerRecord,
};

/// How long finished and failed copies are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Completed, cancelled and expired copies kept per queue.
    pub finished_per_queue: usize,
    /// Failed copies kept per queue.
    pub failed_per_queue: usize,
    /// Age after which a finished copy is swept away.
    pub finished_ms: u64,
    /// Age after which a failed copy is swept away.
    pub failed_ms: u64,
    /// Most copies one sweep removes (a sweep runs at every tick).
    pub sweep_batch: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            finished_per_queue: 100,
            failed_per_queue: 100_000,
            finished_ms: 7 * 86_400_000,
            failed_ms: 30 * 86_400_000,
            sweep_batch: 1000,
        }
    }
}

fn forget(lists: &mut HashMap<QueueName, VecDeque<TaskId>>, queue: &QueueName, id: TaskId) {
    if let Some(list) = lists.get_mut(queue) {
        if list.front() == Some(&id) {
            list.pop_front();
        } else {
            list.retain(|x| *x != id);
        }
        if list.is_empty() {
            lists.remove(queue);
        }
    }
}

/// Ready copies of a lane in claim order: priority (high first), then the time
/// they became runnable, then id (creation order).
pub(super) type ReadyKey = (Reverse<Priority>, Millis, TaskId);

/// One step of `State::walk`: an entry, whether it needs no look-up, and its
/// mark; says where to stop, if there.
type Visit<'a> = dyn FnMut(TaskId, bool, &dyn Fn() -> Mark) -> Option<Mark> + 'a;

/// Where a walk through a listing's index stopped (see `State::walk`).
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Mark {
    Start,
    /// The last entry visited in the ready lanes.
    Ready(Lane, ReadyKey),
    /// The last entry visited in an index ordered by time.
    Timed(Millis, TaskId),
    /// The position of the next entry of a per-queue list.
    At(usize),
    Done,
}

/// One copy without its payload: what stays in memory, and what is stored
/// per copy (postcard-encoded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Meta {
    /// Its publish's id is derived from it (`TaskId::publish`).
    pub task_id: TaskId,
    pub queue: QueueName,
    pub worker_queue: Option<WorkerId>,
    pub worker_id: Option<WorkerId>,
    pub publisher: Arc<str>,
    pub fingerprint: [u8; 16],
    pub priority: Priority,
    pub scope: Scope,
    pub singularly_enqueue: bool,
    pub replace_waiting: bool,
    pub singularly_run: bool,
    pub state: TaskState,
    pub attempt: u32,
    pub max_attempts: u32,
    pub ttr: u32,
    pub created_at: Millis,
    pub run_at: Millis,
    pub lease_until: Option<Millis>,
    /// A cancellation was asked for while it ran.
    pub cancel_requested: bool,
    /// What most waiting copies do not have, kept out of line.
    pub extra: Option<Box<Extra>>,
}

/// The rarely-set parts of a copy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Extra {
    pub expire_at: Option<Millis>,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub fail_reason: Option<String>,
    /// JSON text.
    pub progress: Option<String>,
    /// JSON text.
    pub output: Option<String>,
    pub key: Option<String>,
    pub history: Vec<StoredEvent>,
}

/// A `TaskEvent` as stored: every field always written, which a format that
/// does not describe itself (postcard) needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct StoredEvent {
    pub at: Millis,
    pub event: EventKind,
    pub worker_id: Option<WorkerId>,
    pub detail: Option<String>,
}

/// What happened, in one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum EventKind {
    Claimed,
    Progress,
    Completed,
    Failed,
    Retrying,
    Requeued,
    Due,
    CancelRequested,
    Cancelled,
    Expired,
    Replaced,
    // New kinds go last: postcard stores the variant's index.
    /// An operator gave a failed copy new attempts.
    Retried,
    /// An operator retried a failed copy with new data, as a new copy.
    Edited,
    /// An operator made a scheduled copy ready early.
    RunNow,
    /// An operator released the singular lock this copy held.
    LockBroken,
}

impl EventKind {
    const ALL: [EventKind; 15] = [
        Self::Claimed,
        Self::Progress,
        Self::Completed,
        Self::Failed,
        Self::Retrying,
        Self::Requeued,
        Self::Due,
        Self::CancelRequested,
        Self::Cancelled,
        Self::Expired,
        Self::Replaced,
        Self::Retried,
        Self::Edited,
        Self::RunNow,
        Self::LockBroken,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Claimed => "claimed",
            Self::Progress => "progress",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Retrying => "retrying",
            Self::Requeued => "requeued",
            Self::Due => "due",
            Self::CancelRequested => "cancel_requested",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
            Self::Replaced => "replaced",
            Self::Retried => "retried",
            Self::Edited => "edited",
            Self::RunNow => "run_now",
            Self::LockBroken => "lock_broken",
        }
    }

    fn parse(s: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .unwrap_or(Self::Progress)
    }
}

impl From<&crate::model::TaskEvent> for StoredEvent {
    fn from(e: &crate::model::TaskEvent) -> Self {
        Self {
            at: e.at,
            event: EventKind::parse(&e.event),
            worker_id: e.worker_id,
            detail: e.detail.clone(),
        }
    }
}

impl From<StoredEvent> for crate::model::TaskEvent {
    fn from(e: StoredEvent) -> Self {
        Self {
            at: e.at,
            event: e.event.as_str().to_owned(),
            worker_id: e.worker_id,
            detail: e.detail,
        }
    }
}

/// Events kept per copy.
pub(super) const MAX_EVENTS: usize = 32;

impl Meta {
    /// The record of `t`, naming its publisher with `publisher` (a shared,
    /// interned copy of `t.publisher`).
    pub fn from_task(t: &Task, publisher: Arc<str>) -> Self {
        let mut fingerprint = [0u8; 16];
        // Tasks without a singular rule have no fingerprint to parse.
        for (i, b) in fingerprint
            .iter_mut()
            .enumerate()
            .take(t.fingerprint.len() / 2)
        {
            *b = u8::from_str_radix(t.fingerprint.get(2 * i..2 * i + 2).unwrap_or("00"), 16)
                .unwrap_or(0);
        }
        let extra = Extra {
            expire_at: t.expire_at,
            started_at: t.started_at,
            finished_at: t.finished_at,
            fail_reason: t.fail_reason.clone(),
            progress: t.progress.as_ref().map(Value::to_string),
            output: t.output.as_ref().map(Value::to_string),
            key: t.key.clone(),
            history: t.history.iter().map(StoredEvent::from).collect(),
        };
        Self {
            task_id: t.task_id,
            queue: t.queue.clone(),
            worker_queue: t.worker_queue,
            worker_id: t.worker_id,
            publisher,
            fingerprint,
            priority: t.priority,
            scope: t.scope,
            singularly_enqueue: t.singularly_enqueue,
            replace_waiting: t.replace_waiting,
            singularly_run: t.singularly_run,
            state: t.state,
            attempt: t.attempt,
            max_attempts: t.max_attempts,
            ttr: t.ttr,
            created_at: t.created_at,
            run_at: t.run_at,
            lease_until: t.lease_until,
            cancel_requested: t.cancelled && t.state != TaskState::Cancelled,
            extra: (extra != Extra::default()).then(|| Box::new(extra)),
        }
    }

    /// The whole task, with its payload.
    /// The whole task, with its payload, and its history when asked (the
    /// hot paths, claims and reports, leave it out).
    pub fn to_task(&self, data: Arc<Map<String, Value>>, with_history: bool) -> Task {
        let empty = Extra::default();
        let extra = self.extra.as_deref().unwrap_or(&empty);
        let json = |s: &Option<String>| s.as_ref().and_then(|s| serde_json::from_str(s).ok());
        Task {
            task_id: self.task_id,
            publish_id: self.task_id.publish(),
            queue: self.queue.clone(),
            worker_queue: self.worker_queue,
            data,
            publisher: self.publisher.to_string(),
            priority: self.priority,
            scope: self.scope,
            singularly_enqueue: self.singularly_enqueue,
            replace_waiting: self.replace_waiting,
            singularly_run: self.singularly_run,
            state: self.state,
            attempt: self.attempt,
            max_attempts: self.max_attempts,
            ttr: self.ttr,
            created_at: self.created_at,
            run_at: self.run_at,
            expire_at: extra.expire_at,
            worker_id: self.worker_id,
            lease_until: self.lease_until,
            started_at: extra.started_at,
            finished_at: extra.finished_at,
            fail_reason: extra.fail_reason.clone(),
            progress: json(&extra.progress),
            output: json(&extra.output),
            key: extra.key.clone(),
            history: if with_history {
                extra.history.iter().cloned().map(Into::into).collect()
            } else {
                Vec::new()
            },
            cancelled: self.cancel_requested || self.state == TaskState::Cancelled,
            // Only copies under a singular rule have one; the others' bytes
            // are zero, which is not a hash worth showing.
            fingerprint: if self.fingerprint == [0; 16] {
                String::new()
            } else {
                self.fingerprint
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            },
        }
    }

    /// A copy of this record for an answer to a worker: without the event
    /// history, which such answers leave out.
    pub fn for_answer(&self) -> Meta {
        Meta {
            extra: self.extra.as_ref().map(|e| {
                Box::new(Extra {
                    history: Vec::new(),
                    fail_reason: e.fail_reason.clone(),
                    progress: e.progress.clone(),
                    output: e.output.clone(),
                    key: e.key.clone(),
                    ..**e
                })
            }),
            queue: self.queue.clone(),
            publisher: Arc::clone(&self.publisher),
            ..*self
        }
    }

    pub fn publish_id(&self) -> TaskId {
        self.task_id.publish()
    }

    pub fn lane(&self) -> Lane {
        match self.worker_queue {
            Some(w) => Lane::Worker(w),
            None => Lane::Queue(self.queue.clone()),
        }
    }

    /// The out-of-line part, created on first write.
    pub fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    /// Records an event in the copy's bounded history.
    pub fn event(
        &mut self,
        at: Millis,
        event: EventKind,
        worker: Option<WorkerId>,
        detail: Option<String>,
    ) {
        let history = &mut self.extra_mut().history;
        if history.len() >= MAX_EVENTS {
            history.remove(0);
        }
        history.push(StoredEvent {
            at,
            event,
            worker_id: worker,
            detail,
        });
    }

    pub fn finished_at(&self) -> Option<Millis> {
        self.extra.as_ref().and_then(|e| e.finished_at)
    }

    pub fn expire_at(&self) -> Option<Millis> {
        self.extra.as_ref().and_then(|e| e.expire_at)
    }

    pub fn key(&self) -> Option<&str> {
        self.extra.as_ref().and_then(|e| e.key.as_deref())
    }
}

#[derive(Debug, Default)]
pub(super) struct State {
    /// Ordered, so that the copies of one publish (which share an id prefix)
    /// are one range.
    pub tasks: BTreeMap<TaskId, Meta>,
    pub ready: HashMap<Lane, BTreeSet<ReadyKey>>,
    pub scheduled: BTreeSet<(Millis, TaskId)>,
    pub leases: BTreeSet<(Millis, TaskId)>,
    /// Waiting copies that expire, by `expire_at`.
    pub expiries: BTreeSet<(Millis, TaskId)>,
    /// `singularlyEnqueue` copies waiting (or being enqueued), by lane and
    /// fingerprint.
    pub enqueue_locks: HashMap<(Lane, [u8; 16]), TaskId>,
    /// `singularlyRun` copies running, by queue and fingerprint.
    pub run_locks: HashMap<(QueueName, [u8; 16]), TaskId>,
    pub running_by: HashMap<WorkerId, BTreeSet<TaskId>>,
    pub counts: BTreeMap<QueueName, QueueCounts>,
    /// Finished (completed, cancelled, expired) copies of each queue, oldest
    /// first, trimmed to `retention.finished_per_queue`.
    pub finished: HashMap<QueueName, VecDeque<TaskId>>,
    /// Failed copies of each queue, oldest first.
    pub failed: HashMap<QueueName, VecDeque<TaskId>>,
    /// Finished and failed copies by the time they ended, for the age sweep.
    pub finished_by_age: BTreeSet<(Millis, TaskId)>,
    pub failed_by_age: BTreeSet<(Millis, TaskId)>,
    /// Queues whose finished or failed copies grew since the last trim.
    touched: Vec<QueueName>,
    /// Copies published with a key, by key.
    pub by_key: HashMap<Box<str>, Vec<TaskId>>,
    pub retention: Retention,
    pub interests: BTreeMap<QueueName, Value>,
    pub workers: BTreeMap<WorkerId, WorkerRecord>,
    pub counters: Counters,
    pub queue_settings: HashMap<QueueName, QueueSettings>,
    pub schedules: BTreeMap<String, crate::model::ScheduleRecord>,
    /// Claim tokens of rate-limited queues: (tokens, when last refilled).
    pub buckets: HashMap<QueueName, (f64, Millis)>,
    /// The audit log's last entries, oldest first, by sequence number.
    pub audit: VecDeque<(u64, crate::model::AuditEntry)>,
    /// One shared allocation per distinct queue name and publisher.
    queue_names: HashSet<QueueName>,
    publishers: HashSet<Arc<str>>,
}

impl State {
    pub fn new(retention: Retention) -> Self {
        Self {
            retention,
            ..Self::default()
        }
    }

    pub fn insert(&mut self, mut meta: Meta) {
        meta.queue = self.intern_queue(&meta.queue);
        meta.publisher = self.intern_publisher(&meta.publisher);
        self.index(&meta);
        if let Some(key) = meta.key() {
            self.by_key
                .entry(key.into())
                .or_default()
                .push(meta.task_id);
        }
        self.tasks.insert(meta.task_id, meta);
    }

    pub fn remove(&mut self, id: TaskId) -> Option<Meta> {
        let meta = self.tasks.remove(&id)?;
        self.unindex(&meta);
        if let Some(key) = meta.key() {
            if let Some(ids) = self.by_key.get_mut(key) {
                ids.retain(|i| *i != id);
                if ids.is_empty() {
                    self.by_key.remove(key);
                }
            }
        }
        Some(meta)
    }

    /// The copies published with `key`, in id order.
    pub fn with_key(&self, key: &str) -> Vec<TaskId> {
        let mut ids = self.by_key.get(key).cloned().unwrap_or_default();
        ids.sort();
        ids
    }

    /// Changes a copy in place, moving it between indexes as its state
    /// changes. Returns the copy as changed.
    pub fn update(&mut self, id: TaskId, change: impl FnOnce(&mut Meta)) -> Option<&Meta> {
        let mut meta = self.tasks.remove(&id)?;
        self.unindex(&meta);
        change(&mut meta);
        self.index(&meta);
        self.tasks.insert(id, meta);
        self.tasks.get(&id)
    }

    /// Whether any copy of this publish is still kept (its payload is needed).
    pub fn publish_has_copies(&self, publish_id: TaskId) -> bool {
        let (lo, hi) = publish_id.copy_range();
        self.tasks.range(lo..=hi).next().is_some()
    }

    /// The copies of one publish, in copy order.
    pub fn copies_of(&self, publish_id: TaskId) -> impl Iterator<Item = &Meta> {
        let (lo, hi) = publish_id.copy_range();
        self.tasks.range(lo..=hi).map(|(_, m)| m)
    }

    fn intern_queue(&mut self, q: &QueueName) -> QueueName {
        if let Some(shared) = self.queue_names.get(q) {
            return shared.clone();
        }
        self.queue_names.insert(q.clone());
        q.clone()
    }

    fn intern_publisher(&mut self, p: &Arc<str>) -> Arc<str> {
        if let Some(shared) = self.publishers.get(p) {
            return Arc::clone(shared);
        }
        self.publishers.insert(Arc::clone(p));
        Arc::clone(p)
    }

    /// The shared copy of a publisher's name.
    pub fn publisher(&mut self, name: &str) -> Arc<str> {
        if let Some(shared) = self.publishers.get(name) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = name.into();
        self.publishers.insert(Arc::clone(&shared));
        shared
    }

    fn index(&mut self, t: &Meta) {
        let counts = self.counts.entry(t.queue.clone()).or_default();
        match t.state {
            TaskState::Ready => {
                counts.ready += 1;
                self.ready.entry(t.lane()).or_default().insert((
                    Reverse(t.priority),
                    t.run_at,
                    t.task_id,
                ));
            }
            TaskState::Scheduled => {
                counts.scheduled += 1;
                self.scheduled.insert((t.run_at, t.task_id));
            }
            TaskState::Running => {
                counts.running += 1;
                self.leases
                    .insert((t.lease_until.unwrap_or_default(), t.task_id));
                if let Some(w) = t.worker_id {
                    self.running_by.entry(w).or_default().insert(t.task_id);
                }
                if t.singularly_run {
                    self.run_locks
                        .insert((t.queue.clone(), t.fingerprint), t.task_id);
                }
            }
            TaskState::Completed | TaskState::Cancelled | TaskState::Expired => {
                self.finished
                    .entry(t.queue.clone())
                    .or_default()
                    .push_back(t.task_id);
                self.finished_by_age
                    .insert((t.finished_at().unwrap_or_default(), t.task_id));
                self.touched.push(t.queue.clone());
            }
            TaskState::Failed => {
                counts.failed += 1;
                self.failed
                    .entry(t.queue.clone())
                    .or_default()
                    .push_back(t.task_id);
                self.failed_by_age
                    .insert((t.finished_at().unwrap_or_default(), t.task_id));
                self.touched.push(t.queue.clone());
            }
        }
        if let (true, Some(at)) = (t.state.is_waiting(), t.expire_at()) {
            self.expiries.insert((at, t.task_id));
        }
        if t.state.is_waiting() && t.singularly_enqueue {
            self.enqueue_locks
                .insert((t.lane(), t.fingerprint), t.task_id);
        }
    }

    fn unindex(&mut self, t: &Meta) {
        if let Some(counts) = self.counts.get_mut(&t.queue) {
            let n = match t.state {
                TaskState::Ready => &mut counts.ready,
                TaskState::Scheduled => &mut counts.scheduled,
                TaskState::Running => &mut counts.running,
                TaskState::Failed => &mut counts.failed,
                TaskState::Completed | TaskState::Cancelled | TaskState::Expired => &mut 0,
            };
            *n = n.saturating_sub(1);
            if *counts == QueueCounts::default() {
                self.counts.remove(&t.queue);
            }
        }
        match t.state {
            TaskState::Ready => {
                let lane = t.lane();
                if let Some(set) = self.ready.get_mut(&lane) {
                    set.remove(&(Reverse(t.priority), t.run_at, t.task_id));
                    if set.is_empty() {
                        self.ready.remove(&lane);
                    }
                }
            }
            TaskState::Scheduled => {
                self.scheduled.remove(&(t.run_at, t.task_id));
            }
            TaskState::Running => {
                self.leases
                    .remove(&(t.lease_until.unwrap_or_default(), t.task_id));
                if let Some(w) = t.worker_id {
                    if let Some(set) = self.running_by.get_mut(&w) {
                        set.remove(&t.task_id);
                        if set.is_empty() {
                            self.running_by.remove(&w);
                        }
                    }
                }
                if t.singularly_run {
                    let key = (t.queue.clone(), t.fingerprint);
                    if self.run_locks.get(&key) == Some(&t.task_id) {
                        self.run_locks.remove(&key);
                    }
                }
            }
            TaskState::Completed | TaskState::Cancelled | TaskState::Expired => {
                forget(&mut self.finished, &t.queue, t.task_id);
                self.finished_by_age
                    .remove(&(t.finished_at().unwrap_or_default(), t.task_id));
            }
            TaskState::Failed => {
                forget(&mut self.failed, &t.queue, t.task_id);
                self.failed_by_age
                    .remove(&(t.finished_at().unwrap_or_default(), t.task_id));
            }
        }
        if let (true, Some(at)) = (t.state.is_waiting(), t.expire_at()) {
            self.expiries.remove(&(at, t.task_id));
        }
        if t.state.is_waiting() && t.singularly_enqueue {
            let key = (t.lane(), t.fingerprint);
            if self.enqueue_locks.get(&key) == Some(&t.task_id) {
                self.enqueue_locks.remove(&key);
            }
        }
    }

    /// Visits up to `budget` entries (a quarter as many where each needs a
    /// look-up) of the index that keeps copies in
    /// `state`, after `from`, passing each copy of `queue` (when given) to
    /// `take`, which says whether to go on. Returns where it stopped
    /// (`Mark::Done` at the end, or when `take` said stop), so that a long
    /// listing is walked a piece at a time, letting go of the lock between
    /// pieces.
    pub fn walk(
        &self,
        queue: Option<&QueueName>,
        state: TaskState,
        from: &Mark,
        budget: usize,
        mut take: impl FnMut(TaskId) -> bool,
    ) -> Mark {
        let budget = budget.max(1);
        let mine = |id: &TaskId| {
            self.tasks
                .get(id)
                .is_some_and(|m| m.state == state && queue.is_none_or(|q| &m.queue == q))
        };
        let mut visited = 0;
        // Visits one entry; `Some` when the walk must stop there.
        let mut visit = |id: TaskId, trusted: bool, here: &dyn Fn() -> Mark| -> Option<Mark> {
            if (trusted || mine(&id)) && !take(id) {
                return Some(Mark::Done);
            }
            // A look-up costs about four times a step through an index.
            visited += if trusted { 1 } else { 4 };
            (visited >= budget).then(here)
        };
        let timed = |set: &BTreeSet<(Millis, TaskId)>, visit: &mut Visit<'_>| -> Mark {
            let after = match from {
                Mark::Timed(at, id) => Excluded((*at, *id)),
                _ => Unbounded,
            };
            for &(at, id) in set.range((after, Unbounded)) {
                if let Some(stop) = visit(id, false, &|| Mark::Timed(at, id)) {
                    return stop;
                }
            }
            Mark::Done
        };
        let listed = |list: Option<&VecDeque<TaskId>>, visit: &mut Visit<'_>| -> Mark {
            let start = match from {
                Mark::At(i) => *i,
                _ => 0,
            };
            for (i, &id) in list.into_iter().flatten().enumerate().skip(start) {
                if let Some(stop) = visit(id, false, &|| Mark::At(i + 1)) {
                    return stop;
                }
            }
            Mark::Done
        };
        match state {
            TaskState::Ready => {
                // A queue's own lane first, then the workers' own lanes
                // (`scope: all`) that hold its copies.
                let mut lanes: Vec<&Lane> = self
                    .ready
                    .keys()
                    .filter(|l| match (l, queue) {
                        (Lane::Queue(q), Some(want)) => q == want,
                        _ => true,
                    })
                    .collect();
                lanes.sort();
                for lane in lanes {
                    let after = match from {
                        Mark::Ready(at, _) if lane < at => continue,
                        Mark::Ready(at, key) if lane == at => Excluded(*key),
                        _ => Unbounded,
                    };
                    // A queue's own lane holds only that queue's ready
                    // copies: its entries need no look-up.
                    let trusted = matches!(lane, Lane::Queue(_));
                    for &key in self.ready[lane].range((after, Unbounded)) {
                        if let Some(stop) =
                            visit(key.2, trusted, &|| Mark::Ready(lane.clone(), key))
                        {
                            return stop;
                        }
                    }
                }
                Mark::Done
            }
            TaskState::Scheduled => timed(&self.scheduled, &mut visit),
            TaskState::Running => timed(&self.leases, &mut visit),
            TaskState::Failed => match queue {
                Some(q) => listed(self.failed.get(q), &mut visit),
                None => timed(&self.failed_by_age, &mut visit),
            },
            TaskState::Completed | TaskState::Cancelled | TaskState::Expired => match queue {
                Some(q) => listed(self.finished.get(q), &mut visit),
                None => timed(&self.finished_by_age, &mut visit),
            },
        }
    }

    /// Whether a tick at `now` has anything to do.
    pub fn due(&self, now: Millis) -> bool {
        let passed =
            |set: &BTreeSet<(Millis, TaskId)>| set.first().is_some_and(|&(at, _)| at <= now);
        passed(&self.scheduled)
            || passed(&self.leases)
            || passed(&self.expiries)
            || !self.touched.is_empty()
            || !self.aged(now).is_empty()
    }

    /// Whether a running twin holds this copy's run lock.
    pub fn run_locked(&self, t: &Meta) -> bool {
        t.singularly_run
            && self
                .run_locks
                .contains_key(&(t.queue.clone(), t.fingerprint))
    }

    /// How many more copies of `queue` may be claimed now: unbounded without
    /// limits, none while paused. Refills the queue's token bucket.
    pub fn allowance(&mut self, queue: &QueueName, now: Millis) -> usize {
        let Some(settings) = self.queue_settings.get(queue).copied() else {
            return usize::MAX;
        };
        if settings.paused {
            return 0;
        }
        let mut allowed = usize::MAX;
        if let Some(max) = settings.max_running {
            let running = self.counts.get(queue).map_or(0, |c| c.running);
            allowed = allowed.min((max as u64).saturating_sub(running) as usize);
        }
        if let Some(rate) = settings.rate_limit {
            let burst = rate.max(1.0);
            let (tokens, last) = self.buckets.entry(queue.clone()).or_insert((burst, now));
            *tokens = (*tokens + rate * now.since(*last) as f64 / 1000.0).min(burst);
            *last = now;
            allowed = allowed.min(tokens.floor() as usize);
        }
        allowed
    }

    /// Takes `n` claim tokens from a rate-limited queue.
    pub fn spend(&mut self, queue: &QueueName, n: usize) {
        if let Some((tokens, _)) = self.buckets.get_mut(queue) {
            *tokens -= n as f64;
        }
    }

    /// Ids of finished and failed copies past their queue's count limits,
    /// oldest first. Looks only at queues that grew since the last call.
    pub fn over_history(&mut self) -> Vec<TaskId> {
        let mut touched = std::mem::take(&mut self.touched);
        touched.sort();
        touched.dedup();
        let mut out = Vec::new();
        for queue in touched {
            for (lists, keep) in [
                (&self.finished, self.retention.finished_per_queue),
                (&self.failed, self.retention.failed_per_queue),
            ] {
                if let Some(list) = lists.get(&queue) {
                    out.extend(list.iter().take(list.len().saturating_sub(keep)).copied());
                }
            }
        }
        out
    }

    /// Finished and failed copies older than their retention at `now`, at
    /// most `sweep_batch` of them, oldest first.
    pub fn aged(&self, now: Millis) -> Vec<TaskId> {
        let r = &self.retention;
        let limit = r.sweep_batch;
        let cutoff = |keep_ms: u64| Millis(now.0.saturating_sub(keep_ms));
        let finished_cutoff = cutoff(r.finished_ms);
        let failed_cutoff = cutoff(r.failed_ms);
        let mut out: Vec<TaskId> = self
            .finished_by_age
            .iter()
            .take_while(|(at, _)| *at <= finished_cutoff)
            .take(limit)
            .map(|&(_, id)| id)
            .collect();
        out.extend(
            self.failed_by_age
                .iter()
                .take_while(|(at, _)| *at <= failed_cutoff)
                .take(limit - out.len().min(limit))
                .map(|&(_, id)| id),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fingerprint;
    use serde_json::json;

    #[test]
    fn a_task_survives_the_trip_through_meta() {
        let data = Arc::new(json!({"a": 1}).as_object().unwrap().clone());
        let p = TaskId::new_publish();
        let task = Task {
            task_id: p.copy(0),
            publish_id: p,
            queue: QueueName::parse("q").unwrap(),
            worker_queue: Some(WorkerId::new()),
            fingerprint: fingerprint(&data),
            data: data.clone(),
            publisher: "pub".into(),
            priority: Priority(-3),
            scope: Scope::All,
            singularly_enqueue: true,
            replace_waiting: true,
            singularly_run: false,
            state: TaskState::Running,
            attempt: 2,
            max_attempts: 3,
            ttr: 9,
            created_at: Millis(5),
            run_at: Millis(6),
            expire_at: None,
            worker_id: Some(WorkerId::new()),
            lease_until: None,
            started_at: Some(Millis(7)),
            finished_at: Some(Millis(8)),
            fail_reason: Some("no".into()),
            progress: Some(json!(40)),
            output: Some(json!({"o": [1]})),
            key: Some("build-7".into()),
            cancelled: true,
            history: vec![crate::model::TaskEvent {
                at: Millis(7),
                event: "claimed".into(),
                worker_id: None,
                detail: None,
            }],
        };
        let meta = Meta::from_task(&task, task.publisher.as_str().into());
        let bytes = postcard::to_stdvec(&meta).unwrap();
        let back: Meta = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(back.to_task(data, true), task);
        let plain = Meta::from_task(
            &Task {
                started_at: None,
                finished_at: None,
                fail_reason: None,
                progress: None,
                output: None,
                key: None,
                history: Vec::new(),
                ..task
            },
            "pub".into(),
        );
        assert!(
            plain.extra.is_none(),
            "a plain copy keeps nothing out of line"
        );
    }
}
