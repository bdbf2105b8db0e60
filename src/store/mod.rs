//! Durable state behind one trait: task copies and their indexes, interests,
//! workers and counters.
//!
//! The broker decides *what* happens (routing, defaults, retry policy, which
//! lanes a worker takes from); a store makes each step atomic and durable.
//! Every operation is one step of one state machine (`engine`), made
//! durable by a log beneath it: group commit to a redb file (`embedded`), or
//! an entry of a log in a Couchbase bucket shared by several nodes
//! (`couchbase`). The store never sees HTTP and never reads the clock: time
//! comes in as `now`.
//!
//! Durability contract: every operation that changes something returns only
//! once its change is durable; an error means it may not be.

pub mod couchbase;
pub mod embedded;
pub mod engine;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::model::{
    Acted, AuditEntry, BatchRecord, BulkStep, CancelTarget, Cancellation, Counters, HeldLock, Lane,
    LockKind, Millis, NewTask, Page, PublishRecord, QueueCounts, QueueFilter, QueueGroups,
    QueueName, QueueSettings, RetryPolicy, RetryTarget, ScheduleRecord, Task, TaskFilter, TaskId,
    TaskLog, TaskSelector, TaskState, WorkerId, WorkerRecord,
};

/// Most archived copies one `list_archived` looks at.
pub const ARCHIVE_SCAN: usize = 100_000;

/// What went wrong in a store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("task {0} does not exist")]
    UnknownTask(TaskId),
    #[error("task {task} is {state}, not running")]
    NotRunning { task: TaskId, state: TaskState },
    #[error("task {task} is leased to another worker")]
    NotLeaseHolder { task: TaskId },
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The disk (or a quota) is full: nothing more can be made durable
    /// until space is freed.
    #[error("the store's disk is full: {0}")]
    Full(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The same caller asked again sooner than it may.
    #[error("too soon; retry in {retry_after_ms} ms")]
    Throttled { retry_after_ms: u64 },
    /// A publish's `dependsOn` names no task the store keeps.
    #[error("a dependency names nothing: {0}")]
    UnknownDependency(String),
    /// The batch takes no more tasks.
    #[error("batch {0} is closed: it takes no more tasks")]
    BatchClosed(String),
    /// The copy is not in a state the operation applies to.
    #[error("task {task} is {state}; only {wanted} tasks can be {action}")]
    WrongState {
        task: TaskId,
        state: TaskState,
        wanted: TaskState,
        action: &'static str,
    },
}

/// The result of enqueueing one copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    Created(TaskId),
    /// `singularlyEnqueue` found this identical copy already waiting.
    Existing(TaskId),
    /// Created, cancelling the waiting twin it replaces.
    Replaced {
        created: TaskId,
        replaced: TaskId,
    },
}

impl Enqueued {
    pub fn task_id(self) -> TaskId {
        match self {
            Self::Created(id) | Self::Existing(id) | Self::Replaced { created: id, .. } => id,
        }
    }
}

/// One worker's report on one copy.
#[derive(Debug, Clone)]
pub struct WorkerReport {
    pub task: TaskId,
    pub worker: WorkerId,
    pub what: ReportKind,
}

/// What a worker says of its copy.
#[derive(Debug, Clone)]
pub enum ReportKind {
    /// It ended the claim.
    Finish(Outcome),
    /// It is alive (with progress, when given).
    Heartbeat(Option<Value>),
}

/// The answer to a single report.
fn one(mut answers: Vec<Result<Task, StoreError>>) -> Result<Task, StoreError> {
    answers
        .pop()
        .unwrap_or_else(|| Err(StoreError::Unavailable("a report got no answer".into())))
}

/// How a worker ended its claim.
#[derive(Debug, Clone)]
pub enum Outcome {
    Complete {
        re_enqueue: bool,
        output: Option<Value>,
    },
    Fail {
        reason: Option<String>,
        re_enqueue: bool,
        retry: RetryPolicy,
    },
}

/// Turns a completed copy's output into the copies of a new publish,
/// routed through the interests as any publish is. A store calls it inside
/// the change that completes the copy, so that the copy's end and the new
/// copies are durable together or not at all.
pub trait Outputs: Send + Sync {
    /// The copies of `task` (a publish whose `parent` is the completed
    /// copy), of a new publish; none when no queue wants it.
    fn copies(&self, task: NewTask, now: Millis) -> Vec<Task>;
    /// Deepest a task made from outputs may be; a copy whose output would
    /// be deeper fails instead.
    fn max_depth(&self) -> u32;
}

/// Outputs that no queue wants: each is counted as a discarded publish.
#[derive(Debug, Clone, Copy)]
pub struct NoOutputs;

impl Outputs for NoOutputs {
    fn copies(&self, _: NewTask, _: Millis) -> Vec<Task> {
        Vec::new()
    }

    fn max_depth(&self) -> u32 {
        u32::MAX
    }
}

/// The answer to workers' reports.
#[derive(Debug, Default)]
pub struct Reported {
    /// One per report, in order.
    pub answers: Vec<Result<Task, StoreError>>,
    /// The copies completed copies' outputs became (without payload).
    pub spawned: Vec<Task>,
    /// Lanes that copies waiting for the reported ones were released into.
    pub woken: Vec<Lane>,
}

/// How many audit entries a store keeps; older ones are dropped.
pub const AUDIT_KEPT: usize = 10_000;

/// Most distinct failure reasons `failed_reasons` lists.
pub const REASONS_LISTED: usize = 100;

/// What a change of the clock did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tick {
    /// Lanes that received ready copies: their waiting workers should wake.
    pub woken: Vec<Lane>,
    /// Leases that ended without a report, and what became of their copies:
    /// for the log, where an operator looks for stuck or dying workers.
    pub lease_ends: Vec<LeaseEnded>,
}

/// A lease that ended without a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseEnded {
    pub task_id: TaskId,
    pub queue: QueueName,
    pub worker: Option<WorkerId>,
    pub attempt: u32,
    /// Its time ran out (rather than its worker being removed).
    pub expired: bool,
    /// `ready` again, `failed` for good, or `cancelled`.
    pub state: TaskState,
}

/// How hard the store works, since it opened.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreStats {
    /// Durable commits (each one fsync).
    pub commits: u64,
    /// Records written or removed by those commits.
    pub writes: u64,
    /// For a store several nodes share: the cluster as this node sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<couchbase::partitions::ClusterView>,
}

/// Durable queue state. See the module doc for the durability contract.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug + 'static {
    /// Stores new copies (`ready` or `scheduled`) in one durable step, with
    /// `counters` (the publishes and discards they come from) added in the
    /// same step. A copy with `singularly_enqueue` whose identical twin
    /// waits in the same lane is not stored; the twin's id is returned
    /// instead.
    async fn enqueue(
        &self,
        tasks: Vec<Task>,
        counters: Counters,
    ) -> Result<Vec<Enqueued>, StoreError>;

    /// `enqueue` for a client's publishes, logging each in the publish log
    /// (`log`: its record, and its payload when it reached no queue, which
    /// `tasks` then does not carry) in the same durable step.
    async fn enqueue_logged(
        &self,
        tasks: Vec<Task>,
        counters: Counters,
        log: Vec<(PublishRecord, Option<Vec<u8>>)>,
        now: Millis,
    ) -> Result<Vec<Enqueued>, StoreError>;

    /// A page of the publish log: up to `limit` publishes made at or after
    /// `since` (and after publish `after`), oldest first, with their data.
    async fn recent_publishes(
        &self,
        since: Millis,
        after: Option<TaskId>,
        limit: usize,
    ) -> Result<Vec<(PublishRecord, Arc<Map<String, Value>>)>, StoreError>;

    /// Copies logged publishes into `queue` (see `State::replay_into`):
    /// each `(publish, copy)` whose publish is still logged and has no copy
    /// in `queue` yet, in one durable step. Returns the copies made.
    async fn replay(
        &self,
        queue: &QueueName,
        copies: Vec<(TaskId, Task)>,
    ) -> Result<Vec<Enqueued>, StoreError>;

    /// Claims up to `count` ready copies for `worker`, from `lanes` in order
    /// and by priority then age within a lane, skipping copies whose
    /// `singularly_run` twin is running, copies of paused queues, and copies
    /// beyond their queue's `max_running` or `rate_limit`. Each claim counts an attempt and
    /// leases the copy until `now + ttr`.
    async fn claim(
        &self,
        worker: WorkerId,
        lanes: &[Lane],
        now: Millis,
        count: usize,
    ) -> Result<Vec<Task>, StoreError>;

    /// Workers' reports on the copies they hold, in order, in one durable
    /// step; each answered on its own (a report from the wrong worker fails
    /// alone). The copies come back without payload or history. A copy
    /// that completes with an object as output and publishes its output
    /// (its own `publish_output` or its queue's) has it made a task by
    /// `outputs`, in the same step.
    async fn report(
        &self,
        reports: Vec<WorkerReport>,
        now: Millis,
        outputs: &dyn Outputs,
    ) -> Result<Reported, StoreError>;

    /// Ends `worker`'s claim of a running copy.
    async fn finish(
        &self,
        id: TaskId,
        worker: WorkerId,
        now: Millis,
        outcome: Outcome,
    ) -> Result<Task, StoreError> {
        let report = WorkerReport {
            task: id,
            worker,
            what: ReportKind::Finish(outcome),
        };
        one(self.report(vec![report], now, &NoOutputs).await?.answers)
    }

    /// A running copy's worker says it is alive: its lease runs `ttr`
    /// seconds from `now` again, and `progress` (when given) is recorded.
    async fn heartbeat(
        &self,
        id: TaskId,
        worker: WorkerId,
        now: Millis,
        progress: Option<Value>,
    ) -> Result<Task, StoreError> {
        let report = WorkerReport {
            task: id,
            worker,
            what: ReportKind::Heartbeat(progress),
        };
        one(self.report(vec![report], now, &NoOutputs).await?.answers)
    }

    /// Moves scheduled copies whose time has come to ready, copies whose
    /// lease ran out back to ready (or to failed, on their last attempt), and
    /// waiting copies past their `expire_at` to expired.
    async fn tick(&self, now: Millis) -> Result<Tick, StoreError>;

    /// Puts the copies `worker` is running back to ready, attempt counted.
    async fn release_worker(&self, worker: WorkerId, now: Millis) -> Result<Tick, StoreError>;

    /// Removes the selected copies; returns how many.
    async fn delete_tasks(&self, selector: TaskSelector) -> Result<u64, StoreError>;

    /// Adds `text` to the log of a copy `worker` runs under its lease,
    /// keeping its last pages; refused (`Throttled`) within `min_gap_ms` of
    /// the last append. Returns the log's length.
    async fn append_log(
        &self,
        id: TaskId,
        worker: WorkerId,
        text: Vec<u8>,
        now: Millis,
        min_gap_ms: u64,
    ) -> Result<u64, StoreError>;

    /// A kept copy's log from `from` (or its first byte kept), at most `max`
    /// bytes. `None`: no such copy.
    async fn task_log(
        &self,
        id: TaskId,
        from: Option<u64>,
        max: usize,
    ) -> Result<Option<TaskLog>, StoreError>;

    /// One copy, in any state still kept.
    async fn task(&self, id: TaskId) -> Result<Option<Task>, StoreError>;

    /// Every copy one publish made, still kept.
    async fn tasks_of_publish(&self, publish_id: TaskId) -> Result<Vec<Task>, StoreError>;

    /// Every copy published with `key`, still kept, in any state.
    async fn tasks_with_key(&self, key: &str) -> Result<Vec<Task>, StoreError>;

    /// Opens batch `record.id` with `tasks` (each naming it), or adds them
    /// to it while it is open for more, in one durable step; refused
    /// (`BatchClosed`) once it is closed. `counters` as for `enqueue`.
    async fn open_batch(
        &self,
        record: BatchRecord,
        tasks: Vec<Task>,
        counters: Counters,
    ) -> Result<Vec<Enqueued>, StoreError>;

    async fn batch(&self, id: &str) -> Result<Option<BatchRecord>, StoreError>;

    /// Batches whose copies have all ended and whose callback is owed.
    async fn due_batches(&self) -> Result<Vec<BatchRecord>, StoreError>;

    /// Publishes batch `id`'s callback as `tasks` (the copies of publish
    /// `publish`; none when no queue wants it), if it is still owed: once,
    /// whoever else tries. `None` when it was not owed.
    async fn fire_batch(
        &self,
        id: &str,
        publish: TaskId,
        tasks: Vec<Task>,
    ) -> Result<Option<Vec<Enqueued>>, StoreError>;

    /// The kept copies that named `id` among their dependencies, in id
    /// order.
    async fn dependants(&self, id: TaskId) -> Result<Vec<Task>, StoreError>;

    /// The copies made from `parent`'s output (`publishOutput`), kept ones
    /// only, in id order.
    async fn children(&self, parent: TaskId) -> Result<Vec<Task>, StoreError>;

    /// Cancels: waiting copies become `cancelled`, running ones are flagged
    /// (a report then ends them `cancelled`, a completion `completed`, an
    /// expired lease `cancelled`). Durable before it returns.
    /// Only copies in queues `within` allows are touched (or seen), when
    /// given.
    async fn cancel(
        &self,
        target: CancelTarget,
        now: Millis,
        within: Option<&QueueFilter>,
    ) -> Result<Cancellation, StoreError>;

    /// Copies in `state` (of `queue`, when given) that pass `filter`.
    /// Unfiltered, in the order the state keeps them (ready by claim order,
    /// scheduled and running soonest first, failed and finished oldest
    /// first), a page costing its offset plus its length, not the size of
    /// the store. Filtered, in publish order, a page costing the copies
    /// stepped through until it fills. Totals come from `queue_counts`.
    async fn list_tasks(
        &self,
        queue: Option<&QueueName>,
        state: TaskState,
        filter: &TaskFilter,
        page: Page,
    ) -> Result<Vec<Task>, StoreError>;

    /// A queue's archived copies in `state` that pass `filter`, newest
    /// first: up to `limit`, from the one after `before` (an archived copy:
    /// `UnknownTask` when it is not) or the newest; with the filter's
    /// `after` (an archived copy, as `before`), the `limit` nearest that
    /// finished after it instead: the page before a page.
    /// Looks at no more than `ARCHIVE_SCAN` archived copies of any state:
    /// a page of a search may come back short before the archive's end.
    /// Empty for a store without an archive.
    async fn list_archived(
        &self,
        queue: &QueueName,
        state: TaskState,
        filter: &TaskFilter,
        before: Option<TaskId>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError>;

    /// The distinct failure reasons of the failed copies (of `queue`, when
    /// given), each as its first line, with how many copies have it, most
    /// first; at most `REASONS_LISTED` of them.
    async fn failed_reasons(
        &self,
        queue: Option<&QueueName>,
    ) -> Result<Vec<(String, u64)>, StoreError>;

    /// The fairness groups of `queue` with ready or running copies: the
    /// `top` with the most ready copies, and how many there are.
    async fn groups(&self, queue: &QueueName, top: usize) -> Result<QueueGroups, StoreError>;

    /// Per queue with fairness groups: how many groups have ready or
    /// running copies, and how many are held by `maxRunning` and by
    /// `rateLimit`.
    async fn group_summary(&self) -> Result<Vec<(QueueName, [u64; 3])>, StoreError>;

    /// Why a ready copy is not handed out at `now`, when a rule holds it
    /// (its queue paused or at a limit, a running twin, its group at a
    /// limit).
    async fn held_by(&self, id: TaskId, now: Millis) -> Result<Option<String>, StoreError>;

    /// The ids of the copies a worker is running.
    async fn running_of(&self, worker: WorkerId) -> Result<Vec<TaskId>, StoreError>;

    /// Counts by state of every queue that holds a copy.
    async fn queue_counts(&self) -> Result<Vec<(QueueName, QueueCounts)>, StoreError>;

    /// When the longest-waiting ready copy of `queue` became ready.
    async fn oldest_ready(&self, queue: &QueueName) -> Result<Option<Millis>, StoreError>;

    /// Ready copies waiting in a lane.
    async fn lane_len(&self, lane: &Lane) -> Result<u64, StoreError>;

    /// Replaces a queue's interests (their JSON form, already validated).
    async fn put_interests(&self, queue: &QueueName, interests: &Value) -> Result<(), StoreError>;

    /// Replaces several queues' interests in one durable step: all or none.
    async fn put_many_interests(&self, all: &[(QueueName, Value)]) -> Result<(), StoreError>;

    /// Removes a queue's interests; false when it had none.
    async fn delete_interests(&self, queue: &QueueName) -> Result<bool, StoreError>;

    /// Every queue's interests.
    async fn interests(&self) -> Result<Vec<(QueueName, Value)>, StoreError>;

    /// A number that moves on with every change the store makes durable,
    /// here or on another node (read after catching up): equal numbers mean
    /// nothing changed in between.
    async fn version(&self) -> Result<u64, StoreError>;

    /// A number that moves on whenever any queue's interests change (here
    /// or on another node), read after catching up with the store: equal
    /// numbers mean nothing changed in between.
    async fn interests_version(&self) -> Result<u64, StoreError>;

    /// Sets a queue's limits (the default removes them); `claim` obeys them.
    async fn put_queue_settings(
        &self,
        queue: &QueueName,
        settings: QueueSettings,
    ) -> Result<(), StoreError>;

    /// Every queue with limits.
    async fn queue_settings(&self) -> Result<Vec<(QueueName, QueueSettings)>, StoreError>;

    /// Creates or replaces a named schedule.
    async fn put_schedule(&self, schedule: &ScheduleRecord) -> Result<(), StoreError>;

    /// Removes a schedule; false when it was unknown.
    async fn delete_schedule(&self, name: &str) -> Result<bool, StoreError>;

    /// Every schedule, by name.
    async fn schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError>;

    /// The schedules due at `now` (their `next_run` is not after it).
    async fn due_schedules(&self, now: Millis) -> Result<Vec<ScheduleRecord>, StoreError>;

    /// Enqueues one firing's copies (as `enqueue`) and stores the schedule's
    /// advanced state in the same durable step: a due time fires once, even
    /// across a crash.
    async fn fire_schedule(
        &self,
        schedule: &ScheduleRecord,
        tasks: Vec<Task>,
        counters: Counters,
    ) -> Result<Vec<Enqueued>, StoreError>;

    async fn put_worker(&self, worker: &WorkerRecord) -> Result<(), StoreError>;

    /// Notes in a worker's record that it was heard from at `at`; false
    /// (and nothing written) when it is not registered.
    async fn worker_seen(&self, worker: WorkerId, at: Millis) -> Result<bool, StoreError>;

    /// Removes a worker's registration; false when it was unknown.
    async fn delete_worker(&self, worker: WorkerId) -> Result<bool, StoreError>;

    async fn workers(&self) -> Result<Vec<WorkerRecord>, StoreError>;

    async fn counters(&self) -> Result<Counters, StoreError>;

    /// Gives failed copies a fresh set of attempts: each becomes ready now,
    /// with its attempt count at zero. Returns the copies retried; a single
    /// copy that is not failed is `WrongState`.
    async fn retry_failed(
        &self,
        target: RetryTarget,
        now: Millis,
    ) -> Result<Vec<TaskId>, StoreError>;

    /// Retries a failed copy with new data: `replacement` (a new publish of
    /// one copy, in the same queue) is enqueued and `failed` becomes
    /// `cancelled`, naming its replacement, in one durable step.
    async fn retry_edited(
        &self,
        failed: TaskId,
        replacement: Task,
        now: Millis,
    ) -> Result<TaskId, StoreError>;

    /// Makes a scheduled copy ready now.
    async fn run_now(&self, id: TaskId, now: Millis) -> Result<Task, StoreError>;

    /// One step of a bulk action, in one durable change: the copies the
    /// action takes are changed, the rest skipped; only copies in queues
    /// `within` allows are taken, when given. `listed` is the state the
    /// step's copies were listed in, to count `Acted::stayed`. A move's
    /// replacements are enqueued as `enqueue` does.
    async fn act(
        &self,
        step: BulkStep,
        listed: Option<TaskState>,
        now: Millis,
        within: Option<&QueueFilter>,
    ) -> Result<Acted, StoreError>;

    /// The singular locks held now, by queue.
    async fn locks(&self) -> Result<Vec<HeldLock>, StoreError>;

    /// Releases the lock `holder` holds: the copy carries on, but no longer
    /// holds back its twins. False when it held no such lock.
    async fn break_lock(
        &self,
        holder: TaskId,
        kind: LockKind,
        now: Millis,
    ) -> Result<bool, StoreError>;

    /// Stores the totals sampled at `at` for the throughput chart, once
    /// per time whichever node samples it; older samples are thinned out
    /// (every one for an hour, one a minute for a day).
    async fn put_sample(&self, at: Millis, counters: Counters) -> Result<bool, StoreError>;

    /// The stored samples since `since`, oldest first.
    async fn samples(&self, since: Millis) -> Result<Vec<(Millis, Counters)>, StoreError>;

    /// Appends to the audit log, durably; only the last [`AUDIT_KEPT`]
    /// entries are kept.
    async fn append_audit(&self, entry: AuditEntry) -> Result<(), StoreError>;

    /// A page of the audit log, newest first, and how many entries it holds.
    async fn audit(&self, page: Page) -> Result<(u64, Vec<AuditEntry>), StoreError>;

    /// Makes everything done so far durable (called at shutdown).
    async fn flush(&self) -> Result<(), StoreError>;

    /// At shutdown, after `flush`: gives up what this node holds for a
    /// cluster (nothing for a store of one node).
    async fn leave(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// At shutdown, after `flush`: leaves the store's files whole and
    /// closed, as the next start expects them; changes after it fail.
    fn close(&self);

    fn stats(&self) -> StoreStats;

    /// For a store other nodes change too: how often a node should look
    /// for their changes (interests, workers, copies made ready) that no
    /// local event announces. `None` for a store only this node changes.
    fn poll_interval(&self) -> Option<std::time::Duration> {
        None
    }

    /// The clock this node's broker reads. A store other nodes change too
    /// ends the leases they granted by it (see `engine::State::lease_key`);
    /// a store of one node needs none.
    fn follow_clock(&self, _clock: Arc<dyn crate::broker::clock::Clock>) {}
}
