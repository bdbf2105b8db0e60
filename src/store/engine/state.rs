//! The engine's in-memory state: one compact record per copy (no payload:
//! that stays in the log, once per publish) and the indexes that make claims,
//! schedules, leases and the singular rules cheap.
//!
//! Every state change goes through `insert`, `remove` or `update`, which keep
//! the indexes and per-queue counts in step with the copy's state: one place
//! where a task moves.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::ops::Bound::{Excluded, Unbounded};
use std::sync::Arc;

use serde_json::Value;

use super::batch::Follow;
use super::meta::Meta;
use crate::model::{
    Counters, Lane, Millis, Priority, QueueCounts, QueueName, QueueSettings, TaskId, TaskState,
    WorkerId, WorkerRecord,
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
    /// The last bytes of each copy's log kept (whole pages of
    /// `output::PAGE`, at least one).
    pub log_kept_bytes: u64,
    /// How long the publish log keeps a publish (0: no log), and about how
    /// many bytes it may hold.
    pub replay_keep_ms: u64,
    pub replay_max_bytes: u64,
    /// Finished copies leaving the state go to the log's archive (set from
    /// `Log::archives` when the engine opens).
    pub archive: bool,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            finished_per_queue: 100,
            failed_per_queue: 100_000,
            finished_ms: 7 * 86_400_000,
            failed_ms: 30 * 86_400_000,
            sweep_batch: 1000,
            log_kept_bytes: 1 << 20,
            replay_keep_ms: 600_000,
            replay_max_bytes: 64 << 20,
            archive: false,
        }
    }
}

fn forget(lists: &mut HashMap<QueueName, Ended>, queue: &QueueName, key: (Millis, TaskId)) {
    if let Some(list) = lists.get_mut(queue) {
        list.remove(&key);
        if list.is_empty() {
            lists.remove(queue);
        }
    }
}

/// Ended copies by when they ended, oldest first: a copy leaves its queue's
/// set in a step of the tree, however long the set (a retry of a hundred
/// thousand failed copies took a scan of the list per copy).
pub(super) type Ended = BTreeSet<(Millis, TaskId)>;

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
    /// The last copy a search stepped through (see `listing`).
    Copy(TaskId),
    Done,
}

#[derive(Debug, Default)]
pub(super) struct State {
    /// Ordered, so that the copies of one publish (which share an id prefix)
    /// are one range.
    pub tasks: BTreeMap<TaskId, Meta>,
    /// New copies of the change being computed (`enqueue`), then of staged
    /// entries not yet durable, by entry: shown only once durable
    /// (`reveal_through`), whether or not their caller still waits.
    pub staging: Vec<Meta>,
    pub unrevealed: std::collections::VecDeque<(u64, Vec<Meta>)>,
    pub ready: HashMap<Lane, BTreeSet<ReadyKey>>,
    pub scheduled: BTreeSet<(Millis, TaskId)>,
    /// Copies waiting for their dependencies, by when they were made.
    pub blocked: BTreeSet<(Millis, TaskId)>,
    pub leases: BTreeSet<(Millis, TaskId)>,
    /// Waiting copies that expire, by `expire_at`.
    pub expiries: BTreeSet<(Millis, TaskId)>,
    /// `singularlyEnqueue` copies waiting (or being enqueued), by lane and
    /// fingerprint.
    pub enqueue_locks: HashMap<(Lane, [u8; 16]), TaskId>,
    /// `singularlyRun` copies running, by queue and fingerprint.
    pub run_locks: HashMap<(QueueName, [u8; 16]), TaskId>,
    /// `singularlyRun` copies waiting, counted by queue and fingerprint: the
    /// twins a run lock holds back.
    pub run_twins: HashMap<(QueueName, [u8; 16]), u32>,
    pub running_by: HashMap<WorkerId, BTreeSet<TaskId>>,
    pub counts: BTreeMap<QueueName, QueueCounts>,
    /// Finished (completed, cancelled, expired) copies of each queue, oldest
    /// first, trimmed to `retention.finished_per_queue`.
    pub finished: HashMap<QueueName, Ended>,
    /// Failed copies of each queue, oldest first.
    pub failed: HashMap<QueueName, Ended>,
    /// Finished and failed copies by the time they ended, for the age sweep.
    pub finished_by_age: BTreeSet<(Millis, TaskId)>,
    pub failed_by_age: BTreeSet<(Millis, TaskId)>,
    /// Queues whose finished or failed copies grew since the last trim.
    pub(super) touched: Vec<QueueName>,
    /// Copies published with a key, by key.
    pub by_key: HashMap<Box<str>, Vec<TaskId>>,
    /// Copies made from a copy's output, by that copy.
    pub children: HashMap<TaskId, Vec<TaskId>>,
    pub retention: Retention,
    pub interests: BTreeMap<QueueName, Value>,
    /// Moves on at every change of `interests`, whoever made it: a node
    /// following the store compares interests only when it moved.
    pub interests_version: u64,
    pub workers: BTreeMap<WorkerId, WorkerRecord>,
    pub counters: Counters,
    /// The totals as the last staged change carried them.
    pub counters_committed: Counters,
    /// The last log entry this state holds (shared logs number them).
    pub applied: u64,
    pub queue_settings: HashMap<QueueName, QueueSettings>,
    pub schedules: BTreeMap<String, crate::model::ScheduleRecord>,
    /// Claim tokens of rate-limited queues: (tokens, when last refilled).
    pub buckets: HashMap<QueueName, (f64, Millis)>,
    /// The audit log's last entries, oldest first, by sequence number.
    pub audit: VecDeque<(u64, crate::model::AuditEntry)>,
    /// The totals sampled for the throughput chart, by time (see
    /// `records::SAMPLES_FINE_MS`).
    pub samples: BTreeMap<u64, crate::model::Counters>,
    /// The publish log: recent client publishes, oldest first (ids are
    /// time-ordered), for replays into new interests.
    pub recent: super::recent::Recent,
    /// Copies with a log, and where it stands (its pages are in the log).
    pub outputs: HashMap<TaskId, super::output::Head>,
    /// The rotations and running counts of fairness groups.
    pub(super) fair: super::fair::Fairness,
    /// Batches, with their totals.
    pub(super) batches: super::batch::Batches,
    /// Blocked copies by what they wait for (until it ends).
    pub(super) dependants: HashMap<TaskId, Vec<TaskId>>,
    /// What each blocked copy still waits for.
    pub(super) unmet: HashMap<TaskId, u32>,
    /// Every kept copy that names a copy among its dependencies.
    pub(super) waited_by: HashMap<TaskId, Vec<TaskId>>,
    /// Blocked copies freed, and doomed (with why), when their change
    /// settles.
    pub(super) to_release: Vec<(TaskId, Option<Millis>)>,
    pub(super) to_cancel: Vec<(TaskId, String, Option<Millis>)>,
    /// Lanes released copies became ready in, for the next report's or
    /// tick's answer to wake.
    pub(super) released: Vec<Lane>,
    /// Leases this node ends later than their record says (`lease_key`),
    /// by copy: its key in `leases`.
    pub(super) lease_keys: HashMap<TaskId, Millis>,
    /// This node's time, while it applies what another node of a shared
    /// log wrote: a lease in it ends no sooner than its full `ttr` from
    /// here (`lease_key`).
    pub(super) lease_floor: Option<Millis>,
    /// One shared allocation per distinct queue name and publisher.
    queue_names: HashSet<QueueName>,
    publishers: Names,
}

/// Names many copies share (publishers, groups), one allocation each.
#[derive(Debug, Default)]
pub(super) struct Names {
    set: HashSet<Arc<str>>,
    /// How many were kept after the last pruning.
    kept: usize,
}

impl Names {
    /// The shared copy of `name`.
    pub fn share(&mut self, name: &str) -> Arc<str> {
        if let Some(shared) = self.set.get(name) {
            return Arc::clone(shared);
        }
        let shared: Arc<str> = name.into();
        self.set.insert(Arc::clone(&shared));
        shared
    }

    /// `share`, keeping `name`'s own allocation when it is new.
    pub fn share_arc(&mut self, name: &Arc<str>) -> Arc<str> {
        if let Some(shared) = self.set.get(name) {
            return Arc::clone(shared);
        }
        self.set.insert(Arc::clone(name));
        Arc::clone(name)
    }

    /// Forgets the names nothing else holds, once their number has doubled
    /// since the last time: a publisher that names itself anew in every
    /// publish must not grow the state for ever. Whether it pruned.
    pub fn prune(&mut self) -> bool {
        if self.set.len() <= 2 * self.kept.max(1024) {
            return false;
        }
        self.set.retain(|n| Arc::strong_count(n) > 1);
        self.kept = self.set.len();
        true
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.set.len()
    }
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
        meta.publisher = self.publishers.share_arc(&meta.publisher);
        if let Some(g) = &meta.group {
            meta.group = Some(self.fair.intern(g));
        }
        self.index(&meta);
        if let Some(key) = meta.key() {
            self.by_key
                .entry(key.into())
                .or_default()
                .push(meta.task_id);
        }
        if let Some(parent) = meta.flow.as_ref().and_then(|f| f.parent) {
            self.children.entry(parent).or_default().push(meta.task_id);
        }
        if meta.flow.is_some() {
            self.link_dependencies(&meta);
        }
        self.tasks.insert(meta.task_id, meta);
    }

    /// When the longest-waiting ready copy of `queue` became ready (its
    /// `run_at`): the first of each priority in its lane, so a seek per
    /// priority present rather than a walk of the lane.
    pub fn oldest_ready(&self, queue: &QueueName) -> Option<Millis> {
        let lane = self.ready.get(&Lane::Queue(queue.clone()))?;
        let mut oldest: Option<Millis> = None;
        let mut next = lane.first();
        while let Some(&(Reverse(priority), run_at, _)) = next {
            oldest = Some(oldest.map_or(run_at, |o| o.min(run_at)));
            let Some(lower) = priority.0.checked_sub(1) else {
                break;
            };
            let from = (
                Reverse(Priority(lower)),
                Millis(0),
                TaskId::from_bytes([0; 16]),
            );
            next = lane.range(from..).next();
        }
        oldest
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
        if meta.flow.is_some() {
            self.unlink_dependencies(&meta);
        }
        if let Some(parent) = meta.flow.as_ref().and_then(|f| f.parent) {
            if let Some(ids) = self.children.get_mut(&parent) {
                ids.retain(|i| *i != id);
                if ids.is_empty() {
                    self.children.remove(&parent);
                }
            }
        }
        Some(meta)
    }

    /// The records of those of `ids` still kept, in `ids`' order.
    pub fn kept(&self, ids: &[TaskId]) -> Vec<Meta> {
        ids.iter()
            .filter_map(|id| self.tasks.get(id).cloned())
            .collect()
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
        let was = meta.state;
        change(&mut meta);
        self.index(&meta);
        if was != meta.state {
            if let Some(batch) = meta.batch() {
                let (batch, to, at) = (batch.to_owned(), meta.state, meta.finished_at());
                self.batch_follows(&batch, Follow::Moved(was, to), at);
            }
            if was == TaskState::Blocked {
                self.unmet.remove(&id);
            }
            if !was.has_ended() && meta.state.has_ended() {
                self.dependency_ended(id, Some(meta.state), meta.finished_at());
            }
        }
        self.tasks.insert(id, meta);
        self.tasks.get(&id)
    }

    /// Whether any copy of this publish is still kept (its payload is needed).
    pub fn publish_has_copies(&self, publish_id: TaskId) -> bool {
        let (lo, hi) = publish_id.copy_range();
        self.tasks.range(lo..=hi).next().is_some()
    }

    /// Whether a publish's payload is still needed: by a copy, or by the
    /// publish log.
    pub fn payload_needed(&self, publish_id: TaskId) -> bool {
        self.publish_has_copies(publish_id) || self.recent.records.contains_key(&publish_id)
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

    /// Forgets the names of publishers and groups no copy names any more
    /// (see `Names::prune`).
    pub fn prune_names(&mut self) {
        self.publishers.prune();
        self.fair.prune();
    }

    /// The shared copy of a publisher's name.
    pub fn publisher(&mut self, name: &str) -> Arc<str> {
        self.publishers.share(name)
    }

    /// When this node ends a running copy's lease. A lease's end is a time
    /// on the clock of the node that granted it, and another node's clock
    /// may run ahead of that one's: judged by it, the lease would end early
    /// and the copy run twice. So a node that learns of a lease from
    /// another node's entry (or from the bucket, at start) ends it no
    /// sooner than a full `ttr` after it learnt of it, which is after the
    /// lease began whatever the clocks say; only later than written, never
    /// sooner.
    fn lease_key(&mut self, t: &Meta) -> Millis {
        let written = t.lease_until.unwrap_or_default();
        let ours = self.lease_floor.map(|now| now.plus_secs(t.ttr as u64));
        match ours {
            Some(ours) if ours > written => {
                self.lease_keys.insert(t.task_id, ours);
                ours
            }
            _ => written,
        }
    }

    /// Ends every lease no sooner than a full `ttr` after `now`, for a
    /// node that has just read the state from a shared log: it cannot
    /// know when, by its own clock, those leases began.
    pub fn lengthen_leases_from(&mut self, now: Millis) {
        let later: Vec<(Millis, TaskId, Millis)> = self
            .leases
            .iter()
            .filter_map(|&(key, id)| {
                let ours = now.plus_secs(self.tasks.get(&id)?.ttr as u64);
                (ours > key).then_some((key, id, ours))
            })
            .collect();
        for (key, id, ours) in later {
            self.leases.remove(&(key, id));
            self.leases.insert((ours, id));
            self.lease_keys.insert(id, ours);
        }
    }

    fn index(&mut self, t: &Meta) {
        let counts = self.counts.entry(t.queue.clone()).or_default();
        match t.state {
            TaskState::Ready => {
                counts.ready += 1;
                let lane = t.lane();
                let key = (Reverse(t.priority), t.run_at, t.task_id);
                self.ready.entry(lane.clone()).or_default().insert(key);
                self.rotate_in(&lane, t.group.as_ref(), key);
            }
            TaskState::Scheduled => {
                counts.scheduled += 1;
                self.scheduled.insert((t.run_at, t.task_id));
            }
            TaskState::Blocked => {
                counts.blocked += 1;
                self.blocked.insert((t.created_at, t.task_id));
            }
            TaskState::Running => {
                counts.running += 1;
                let key = self.lease_key(t);
                self.leases.insert((key, t.task_id));
                if let Some(w) = t.worker_id {
                    self.running_by.entry(w).or_default().insert(t.task_id);
                }
                if t.singularly_run {
                    self.run_locks
                        .insert((t.queue.clone(), t.fingerprint), t.task_id);
                }
                if let Some(g) = &t.group {
                    self.group_running(&t.queue, g, true);
                }
            }
            TaskState::Completed | TaskState::Cancelled | TaskState::Expired => {
                self.finished
                    .entry(t.queue.clone())
                    .or_default()
                    .insert((t.finished_at().unwrap_or_default(), t.task_id));
                self.finished_by_age
                    .insert((t.finished_at().unwrap_or_default(), t.task_id));
                self.touched.push(t.queue.clone());
            }
            TaskState::Failed => {
                counts.failed += 1;
                self.failed
                    .entry(t.queue.clone())
                    .or_default()
                    .insert((t.finished_at().unwrap_or_default(), t.task_id));
                self.failed_by_age
                    .insert((t.finished_at().unwrap_or_default(), t.task_id));
                self.touched.push(t.queue.clone());
            }
        }
        if let (true, Some(at)) = (t.state.is_waiting(), t.expire_at()) {
            self.expiries.insert((at, t.task_id));
        }
        if let (Some(g), Some(at)) = (&t.group, t.extra.as_ref().and_then(|e| e.started_at)) {
            self.group_claimed(&t.queue, g, at, t.task_id);
        }
        if t.state.is_waiting() && t.singularly_enqueue {
            self.enqueue_locks
                .insert((t.lane(), t.fingerprint), t.task_id);
        }
        if t.state.is_waiting() && t.singularly_run {
            *self
                .run_twins
                .entry((t.queue.clone(), t.fingerprint))
                .or_default() += 1;
        }
    }

    fn unindex(&mut self, t: &Meta) {
        if let Some(counts) = self.counts.get_mut(&t.queue) {
            let n = match t.state {
                TaskState::Ready => &mut counts.ready,
                TaskState::Scheduled => &mut counts.scheduled,
                TaskState::Blocked => &mut counts.blocked,
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
                let key = (Reverse(t.priority), t.run_at, t.task_id);
                if let Some(set) = self.ready.get_mut(&lane) {
                    set.remove(&key);
                    let emptied = set.is_empty();
                    if emptied {
                        self.ready.remove(&lane);
                    }
                    self.rotate_out(&lane, t.group.as_ref(), &key, emptied);
                }
            }
            TaskState::Scheduled => {
                self.scheduled.remove(&(t.run_at, t.task_id));
            }
            TaskState::Blocked => {
                self.blocked.remove(&(t.created_at, t.task_id));
            }
            TaskState::Running => {
                let key = self
                    .lease_keys
                    .remove(&t.task_id)
                    .unwrap_or(t.lease_until.unwrap_or_default());
                self.leases.remove(&(key, t.task_id));
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
                if let Some(g) = &t.group {
                    self.group_running(&t.queue, g, false);
                }
            }
            TaskState::Completed | TaskState::Cancelled | TaskState::Expired => {
                forget(
                    &mut self.finished,
                    &t.queue,
                    (t.finished_at().unwrap_or_default(), t.task_id),
                );
                self.finished_by_age
                    .remove(&(t.finished_at().unwrap_or_default(), t.task_id));
            }
            TaskState::Failed => {
                forget(
                    &mut self.failed,
                    &t.queue,
                    (t.finished_at().unwrap_or_default(), t.task_id),
                );
                self.failed_by_age
                    .remove(&(t.finished_at().unwrap_or_default(), t.task_id));
            }
        }
        if let (true, Some(at)) = (t.state.is_waiting(), t.expire_at()) {
            self.expiries.remove(&(at, t.task_id));
        }
        if t.state.is_waiting() && t.singularly_run {
            let key = (t.queue.clone(), t.fingerprint);
            if let Some(n) = self.run_twins.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    self.run_twins.remove(&key);
                }
            }
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
    /// (`Mark::Done` at the end; after the entry `take` refused), so that a long
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
            // Stopped by `take`: the mark after this entry, from which a
            // further walk goes on.
            if (trusted || mine(&id)) && !take(id) {
                return Some(here());
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
            TaskState::Blocked => timed(&self.blocked, &mut visit),
            TaskState::Running => timed(&self.leases, &mut visit),
            TaskState::Failed => match queue {
                Some(q) => self
                    .failed
                    .get(q)
                    .map_or(Mark::Done, |set| timed(set, &mut visit)),
                None => timed(&self.failed_by_age, &mut visit),
            },
            TaskState::Completed | TaskState::Cancelled | TaskState::Expired => match queue {
                Some(q) => self
                    .finished
                    .get(q)
                    .map_or(Mark::Done, |set| timed(set, &mut visit)),
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
            || self.recent_due(now)
            || self.batches_due(now)
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
        let Some(settings) = self.queue_settings.get(queue) else {
            return usize::MAX;
        };
        let (paused, max_running, rate_limit) =
            (settings.paused, settings.max_running, settings.rate_limit);
        if paused {
            return 0;
        }
        let mut allowed = usize::MAX;
        if let Some(max) = max_running {
            let running = self.counts.get(queue).map_or(0, |c| c.running);
            allowed = allowed.min((max as u64).saturating_sub(running) as usize);
        }
        if let Some(rate) = rate_limit {
            let burst = rate.max(1.0);
            let (tokens, last) = self.buckets.entry(queue.clone()).or_insert((burst, now));
            *tokens = refilled(*tokens, *last, rate, now).min(burst);
            *last = now;
            allowed = allowed.min(tokens.floor() as usize);
        }
        allowed
    }

    /// A copy of `queue` another node claimed at `at` (its record came
    /// through the log): takes its token here too, refilling the bucket up
    /// to `at` first. Tokens may go below zero: this node then lets none
    /// through until the rate has paid them back.
    pub fn spend_claimed_elsewhere(&mut self, queue: &QueueName, at: Millis) {
        let Some(rate) = self.queue_settings.get(queue).and_then(|s| s.rate_limit) else {
            return;
        };
        let burst = rate.max(1.0);
        let (tokens, last) = self.buckets.entry(queue.clone()).or_insert((burst, at));
        if at > *last {
            *tokens = refilled(*tokens, *last, rate, at).min(burst);
            *last = at;
        }
        *tokens -= 1.0;
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
                    let over = list.len().saturating_sub(keep);
                    out.extend(list.iter().take(over).map(|&(_, id)| id));
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

/// A queue's claim tokens at `now`, from `tokens` at `last` (before the
/// bucket's cap).
pub(super) fn refilled(tokens: f64, last: Millis, rate: f64, now: Millis) -> f64 {
    tokens + rate * now.since(last) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publisher_names_no_copy_holds_are_forgotten() {
        let mut st = State::default();
        let held = st.publisher("kept");
        for i in 0..3000 {
            st.publisher(&format!("once-{i}"));
        }
        st.prune_names();
        assert_eq!(st.publishers.len(), 1);
        assert!(Arc::ptr_eq(&st.publisher("kept"), &held));
        // Below twice what was kept (and 1024), nothing is walked.
        st.publisher("again");
        st.prune_names();
        assert_eq!(st.publishers.len(), 2);
    }
}
