//! The behaviour of interq: routing publishes through interests, fan-out,
//! claiming with leases and long polls, completion, retries with backoff,
//! scheduling, the singular rules, and the worker registry.
//!
//! The broker takes typed, already-valid input (the API layer parses) and
//! never imports actix. It reads time only from its `Clock`, and keeps its
//! durable state in a `Store`.

pub mod admin;
mod batches;
mod bulk;
pub mod clock;
mod copies;
mod logs;
mod replay;
pub mod schedule;
mod settings;
mod wakers;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use dashmap::DashMap;
use interest::{InterestError, Interests, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{Mutex, Notify};

pub use self::batches::NewBatch;
use self::clock::Clock;
pub use self::copies::{Defaults, OutputRouter};
use self::schedule::{Spec, Timing};
pub use self::settings::{SettingsChange, MAX_GROUP_OVERRIDES};
use self::wakers::Wakers;
use crate::metrics::{Metrics, QueueEvent};
pub use crate::model::NewTask;
use crate::model::{
    CancelTarget, Cancellation, CopyRef, Counters, Lane, Millis, Page, PublishRecord, Published,
    QueueCounts, QueueFilter, QueueGroups, QueueName, RetryPolicy, ScheduleRecord, Scope, Task,
    TaskFilter, TaskId, TaskSelector, TaskState, WorkerId, WorkerRecord, WorkerState, MAX_COPIES,
};
use crate::store::{Enqueued, Outcome, ReportKind, Store, StoreError, WorkerReport};

/// Who publishes, which decides where the copies go in the store.
enum Via<'a> {
    Client,
    /// A schedule's firing: its new state, stored in the same commit as the
    /// copies.
    Schedule(&'a ScheduleRecord),
    /// A batch: opened (or added to) in the same commit as its copies.
    Batch(Box<crate::model::BatchRecord>),
}

/// Bytes of text routing may scan (summed over the regex sets it passes
/// through) before a publish is routed on the blocking pool instead.
const OFF_THREAD_SCAN_BYTES: usize = 256 << 10;

/// Policies the broker applies; from the settings.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    pub default_ttr_secs: u32,
    pub default_max_attempts: u32,
    pub retry: RetryPolicy,
    /// A worker not heard from for this long shows as STALE.
    pub worker_stale_after_ms: u64,
    /// A worker not heard from for this long, holding no task, is removed.
    pub worker_idle_timeout_ms: u64,
    pub interest_limits: interest::Limits,
    /// Least time between two appends to one copy's log; 0 keeps no logs
    /// when `log_kept_bytes` is 0.
    pub log_every_ms: u64,
    pub log_kept_bytes: u64,
    /// Deepest a task made from outputs may be (`tasks.max_output_depth`).
    pub max_output_depth: u32,
    /// How long the publish log keeps a client's publish (0: no log).
    pub replay_keep_ms: u64,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        Self {
            default_ttr_secs: 300,
            default_max_attempts: 5,
            retry: RetryPolicy {
                base_ms: 2_000,
                max_ms: 3_600_000,
                jitter: 0.2,
            },
            worker_stale_after_ms: 60_000,
            worker_idle_timeout_ms: 600_000,
            interest_limits: interest::Limits::default(),
            log_every_ms: 200,
            log_kept_bytes: 1 << 20,
            max_output_depth: 32,
            replay_keep_ms: 600_000,
        }
    }
}

/// What went wrong in the broker; the API maps each to a status.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("worker {0} is not registered")]
    UnknownWorker(WorkerId),
    #[error("task {0} does not exist")]
    UnknownTask(TaskId),
    #[error("queue `{0}` does not exist")]
    UnknownQueue(QueueName),
    #[error("no task has the key `{0}`")]
    UnknownKey(String),
    #[error("no schedule is called `{0}`")]
    UnknownSchedule(String),
    #[error("no batch is called `{0}`")]
    UnknownBatch(String),
    #[error("batch `{0}` is closed: it takes no more tasks")]
    BatchClosed(String),
    #[error("`dependsOn`: {0}")]
    UnknownDependency(String),
    #[error("`{field}`: {message}")]
    InvalidSchedule {
        field: &'static str,
        message: String,
    },
    #[error("`{field}`: {message}")]
    InvalidSetting {
        field: &'static str,
        message: String,
    },
    #[error("task {task} is {state}, not running")]
    NotRunning { task: TaskId, state: TaskState },
    #[error("task {task} is leased to another worker")]
    NotLeaseHolder { task: TaskId },
    #[error("task {task} is {state}; only {wanted} tasks can be {action}")]
    WrongState {
        task: TaskId,
        state: TaskState,
        wanted: TaskState,
        action: &'static str,
    },
    #[error(transparent)]
    Interest(#[from] InterestError),
    #[error(transparent)]
    Matcher(#[from] interest::BuildError),
    #[error("the service is shutting down")]
    ShuttingDown,
    #[error("this publish would make {0} copies; one publish makes at most {MAX_COPIES}")]
    TooManyCopies(usize),
    #[error("too soon; retry in {retry_after_ms} ms")]
    Throttled { retry_after_ms: u64 },
    /// Publish `index` asked `requireRoute` and no queue's interests want it.
    #[error("no queue's interests want task {index} of the publish")]
    Unrouted { index: usize },
    #[error("store: {0}")]
    Store(StoreError),
}

impl From<StoreError> for BrokerError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::UnknownTask(id) => Self::UnknownTask(id),
            StoreError::NotRunning { task, state } => Self::NotRunning { task, state },
            StoreError::NotLeaseHolder { task } => Self::NotLeaseHolder { task },
            StoreError::WrongState {
                task,
                state,
                wanted,
                action,
            } => Self::WrongState {
                task,
                state,
                wanted,
                action,
            },
            StoreError::Throttled { retry_after_ms } => Self::Throttled { retry_after_ms },
            StoreError::BatchClosed(id) => Self::BatchClosed(id),
            StoreError::UnknownDependency(why) => Self::UnknownDependency(why),
            other @ (StoreError::Unavailable(_) | StoreError::Full(_) | StoreError::Corrupt(_)) => {
                Self::Store(other)
            }
        }
    }
}

type Result<T> = std::result::Result<T, BrokerError>;

/// What a worker reports about its claim.
#[derive(Debug, Clone)]
pub enum Report {
    /// Done, with what the worker attached.
    Complete {
        output: Option<Value>,
    },
    Fail {
        reason: Option<String>,
    },
    /// Still working: extends the lease, and records progress when given.
    Progress {
        progress: Option<Value>,
    },
}

/// A worker as status shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerView {
    pub worker_id: WorkerId,
    pub name: String,
    pub queues: Vec<QueueName>,
    /// Each queue's weight, in `queues`' order, when they are weighted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<u32>,
    pub state: WorkerState,
    pub running: Vec<TaskId>,
    pub registered_at: Millis,
    pub last_seen: Millis,
    /// The key that registered it, when auth is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

#[derive(Debug)]
struct LiveWorker {
    record: WorkerRecord,
    /// When this node last heard from it, or learnt that another node had
    /// (by this node's clock).
    last_seen: AtomicU64,
    /// With a shared store: when this node last told the others it heard
    /// from it (`Broker::touch`), and the sighting in the stored record it
    /// last took in (`follow_workers`; another node's clock).
    told: AtomicU64,
    noted: AtomicU64,
    /// With weighted queues: each queue's standing in the smooth weighted
    /// round robin that picks the queue a claim tries first.
    turns: std::sync::Mutex<Vec<i64>>,
}

impl LiveWorker {
    fn new(record: WorkerRecord, last_seen: Millis) -> Self {
        Self {
            turns: std::sync::Mutex::new(vec![0; record.weights.len()]),
            told: AtomicU64::new(last_seen.0),
            noted: AtomicU64::new(record.seen_at.map_or(0, |t| t.0)),
            record,
            last_seen: AtomicU64::new(last_seen.0),
        }
    }

    /// The queue a claim tries first, when the worker's queues are
    /// weighted: each turn every queue gains its weight, and the one
    /// standing highest is chosen and loses the total. Over any run of
    /// turns each queue is chosen in proportion to its weight, evenly
    /// spread (not all of one queue's turns together).
    fn first_queue(&self) -> Option<usize> {
        let weights = &self.record.weights;
        if weights.len() != self.record.queues.len() || weights.is_empty() {
            return None;
        }
        let mut turns = self.turns.lock().unwrap_or_else(|p| p.into_inner());
        let total: i64 = weights.iter().map(|&w| i64::from(w)).sum();
        let mut best = 0;
        for (i, w) in weights.iter().enumerate() {
            turns[i] += i64::from(*w);
            if turns[i] > turns[best] {
                best = i;
            }
        }
        turns[best] -= total;
        Some(best)
    }
}

/// The queue service's behaviour, shared by every request handler.
#[derive(Debug)]
pub struct Broker {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: BrokerSettings,
    /// Serializes interest changes (never publishes): each router is made
    /// from the one before.
    interest_changes: Mutex<()>,
    /// Every queue's interests, compiled; publishes read it without a lock.
    routes: ArcSwap<Router>,
    /// Wakes the compaction loop when the router's delta has grown.
    compaction_due: Notify,
    compactions: AtomicU64,
    workers: DashMap<WorkerId, LiveWorker>,
    wakers: Wakers,
    metrics: Arc<Metrics>,
    shutting_down: AtomicBool,
    /// One more than the store's interests version last taken in by
    /// `follow_store` (0: none yet).
    interests_followed: AtomicU64,
    shutdown: Notify,
    observed: admin::Observed,
    /// Bumped when a log grew or a copy ended here: wakes log followers.
    log_news: tokio::sync::watch::Sender<u64>,
}

impl Broker {
    /// Builds the broker over a store, loading interests and workers from it.
    pub async fn start(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        settings: BrokerSettings,
    ) -> Result<Arc<Self>> {
        store.follow_clock(Arc::clone(&clock));
        let mut registry = Vec::new();
        for (queue, value) in store.interests().await? {
            let parsed = Interests::parse(queue.as_str(), &value, &settings.interest_limits)?;
            registry.push((queue, parsed));
        }
        let router = build_router(registry).await?;
        let now = clock.now();
        let workers = DashMap::new();
        for record in store.workers().await? {
            // Nobody knows when a worker was last heard of before a restart;
            // count from now, so that it has its full idle time to come back.
            workers.insert(record.worker_id, LiveWorker::new(record, now));
        }
        Ok(Arc::new(Self {
            store,
            clock,
            settings,
            interest_changes: Mutex::new(()),
            routes: ArcSwap::from_pointee(router),
            compaction_due: Notify::new(),
            compactions: AtomicU64::new(0),
            workers,
            wakers: Wakers::default(),
            metrics: Arc::new(Metrics::default()),
            shutting_down: AtomicBool::new(false),
            interests_followed: AtomicU64::new(0),
            shutdown: Notify::new(),
            observed: admin::Observed::default(),
            log_news: tokio::sync::watch::Sender::new(0),
        }))
    }

    pub fn now(&self) -> Millis {
        self.clock.now()
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    // ----- publishing -------------------------------------------------------

    /// Routes and stores a batch of tasks in one durable step.
    pub async fn publish(&self, tasks: Vec<NewTask>) -> Result<Vec<Published>> {
        self.publish_via(tasks, Via::Client, None).await
    }

    /// `publish` for a publisher limited to some queues: its tasks reach
    /// only those (another queue's interest cannot make its publishes fail,
    /// nor receive them).
    pub async fn publish_within(
        &self,
        tasks: Vec<NewTask>,
        within: Option<&QueueFilter>,
    ) -> Result<Vec<Published>> {
        self.publish_via(tasks, Via::Client, within).await
    }

    /// `publish`, for a client, a schedule or a batch (see `Via`).
    async fn publish_via(
        &self,
        mut tasks: Vec<NewTask>,
        via: Via<'_>,
        within: Option<&QueueFilter>,
    ) -> Result<Vec<Published>> {
        if let Via::Batch(b) = &via {
            for t in &mut tasks {
                t.batch = Some(b.id.clone());
            }
        }
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(BrokerError::ShuttingDown);
        }
        let started = std::time::Instant::now();
        let routes = self.routes.load_full();
        // A costly route (long values under many patterns) runs off the
        // request threads, so that other requests never wait behind it.
        let cost: usize = tasks.iter().map(|t| routes.scan_cost(&t.data)).sum();
        let (tasks, routed): (Vec<NewTask>, Vec<Vec<usize>>) = if cost > OFF_THREAD_SCAN_BYTES {
            let routes = Arc::clone(&routes);
            tokio::task::spawn_blocking(move || {
                let routed = tasks
                    .iter()
                    .map(|t| routes.route_indices(&t.data))
                    .collect();
                (tasks, routed)
            })
            .await
            .map_err(|e| BrokerError::Store(StoreError::Unavailable(e.to_string())))?
        } else {
            let routed = tasks
                .iter()
                .map(|t| routes.route_indices(&t.data))
                .collect();
            (tasks, routed)
        };
        let now = self.clock.now();
        let mut copies: Vec<Task> = Vec::new();
        // For each publish: its id, and the range of `copies` it made.
        let mut spans = Vec::with_capacity(tasks.len());
        let mut discarded = 0;
        let mut accepted = Vec::with_capacity(tasks.len());
        // A client's publishes go into the publish log, for replays.
        let logging = matches!(via, Via::Client) && self.settings.replay_keep_ms > 0;
        let mut log = Vec::new();
        for (index, (mut new, indices)) in tasks.into_iter().zip(routed).enumerate() {
            // A schedule's firing has nobody to refuse: it publishes as any.
            if new.require_route && !matches!(via, Via::Schedule(_)) {
                let wanted = indices.iter().any(|&i| {
                    !routes.is_unrouted(i) && within.is_none_or(|w| w.allows(routes.name(i)))
                });
                if !wanted {
                    return Err(BrokerError::Unrouted { index });
                }
            }
            let publish_id = TaskId::new_publish();
            let start = copies.len();
            let indices: Vec<usize> = indices
                .into_iter()
                .filter(|&i| within.is_none_or(|w| w.allows(routes.name(i))))
                .collect();
            let queues: Vec<QueueName> = indices
                .iter()
                .map(|&i| QueueName::from_shared(Arc::clone(routes.name(i))))
                .collect();
            let targets: Vec<(QueueName, Option<WorkerId>)> = match new.scope {
                Scope::Any => queues.into_iter().map(|q| (q, None)).collect(),
                Scope::All => self.workers_on(&queues),
            };
            if targets.len() > MAX_COPIES {
                return Err(BrokerError::TooManyCopies(targets.len()));
            }
            let data = Arc::new(std::mem::take(&mut new.data));
            accepted.push(Arc::clone(&data));
            copies.extend(copies::copies_of(
                &routes,
                &indices,
                &new,
                &data,
                publish_id,
                targets,
                self.defaults(),
                now,
            ));
            if copies.len() == start {
                discarded += 1;
                tracing::info!(
                    target: "interq::tasks",
                    publish = %publish_id, publisher = %new.publisher,
                    "publish reached no queue: no interest matched; discarded"
                );
            }
            // What waits on other tasks, or copies itself per worker, is not
            // replayed.
            if logging && new.scope == Scope::Any && new.depends_on.is_empty() {
                let made = &copies[start..];
                let payload = made
                    .is_empty()
                    .then(|| serde_json::to_vec(&*data).expect("json encodes"));
                log.push((
                    PublishRecord {
                        publish_id,
                        at: now,
                        task: new.clone(),
                        queues: made.iter().map(|t| t.queue.clone()).collect(),
                        copies: made.len() as u16,
                        bytes: 0,
                    },
                    payload,
                ));
            }
            spans.push((publish_id, start..copies.len()));
        }
        let published = spans.len() as u64;
        let ready_lanes: Vec<Lane> = copies
            .iter()
            .filter(|t| t.state == TaskState::Ready)
            .map(Task::lane)
            .collect();
        let refs: Vec<(QueueName, Option<WorkerId>)> = copies
            .iter()
            .map(|t| (t.queue.clone(), t.worker_queue))
            .collect();
        // Counted in the same durable step as the copies they made.
        let counted = Counters {
            published,
            discarded,
            ..Counters::default()
        };
        let results = match via {
            Via::Schedule(schedule) => self.store.fire_schedule(schedule, copies, counted).await?,
            Via::Batch(batch) => self.store.open_batch(*batch, copies, counted).await?,
            Via::Client if !log.is_empty() => {
                self.store.enqueue_logged(copies, counted, log, now).await?
            }
            Via::Client => self.store.enqueue(copies, counted).await?,
        };
        self.observed.published(accepted);
        for lane in dedup(ready_lanes) {
            self.wakers.wake(&lane);
        }
        let mut routed: Vec<&QueueName> = refs
            .iter()
            .zip(&results)
            .filter(|(_, r)| !matches!(r, Enqueued::Existing(_)))
            .map(|((q, _), _)| q)
            .collect();
        routed.sort();
        for group in routed.chunk_by(|a, b| a == b) {
            self.metrics
                .add(QueueEvent::Routed, group[0], group.len() as u64);
        }
        self.metrics
            .publish_latency
            .observe(started.elapsed().as_secs_f64());
        Ok(spans
            .into_iter()
            .map(|(publish_id, range)| {
                let copies: Vec<CopyRef> = range
                    .map(|i| CopyRef {
                        queue: refs[i].0.clone(),
                        worker_queue: refs[i].1,
                        task_id: results[i].task_id(),
                        existing: matches!(results[i], Enqueued::Existing(_)),
                        replaced: match results[i] {
                            Enqueued::Replaced { replaced, .. } => Some(replaced),
                            Enqueued::Created(_) | Enqueued::Existing(_) => None,
                        },
                    })
                    .collect();
                let mut queues: Vec<QueueName> = copies.iter().map(|c| c.queue.clone()).collect();
                queues.dedup();
                Published {
                    task_id: publish_id,
                    queues,
                    copies,
                }
            })
            .collect())
    }

    fn defaults(&self) -> Defaults {
        Defaults {
            max_attempts: self.settings.default_max_attempts,
            ttr_secs: self.settings.default_ttr_secs,
        }
    }

    /// Turns completed copies' outputs into tasks, routed as they are now.
    fn output_router(&self) -> OutputRouter {
        OutputRouter::new(
            self.routes.load_full(),
            self.defaults(),
            self.settings.max_output_depth,
        )
    }

    /// `scope: all`: every worker registered on an interested queue, once,
    /// under the first of its queues (in its own order) that is interested.
    fn workers_on(&self, queues: &[QueueName]) -> Vec<(QueueName, Option<WorkerId>)> {
        let mut out: Vec<(QueueName, Option<WorkerId>)> = self
            .workers
            .iter()
            .filter_map(|w| {
                w.record
                    .queues
                    .iter()
                    .find(|q| queues.contains(q))
                    .map(|q| (q.clone(), Some(w.record.worker_id)))
            })
            .collect();
        out.sort();
        out
    }

    // ----- schedules ------------------------------------------------------------

    /// Creates or replaces a named schedule of `task`.
    pub async fn set_schedule(
        &self,
        name: String,
        spec: Spec,
        task: NewTask,
        paused: bool,
    ) -> Result<ScheduleRecord> {
        QueueName::parse(&name).map_err(|e| BrokerError::InvalidSchedule {
            field: "name",
            message: e.to_string().replace("queue name", "schedule name"),
        })?;
        let timing = Timing::new(&name, &spec).map_err(|e| BrokerError::InvalidSchedule {
            field: e.field,
            message: e.message,
        })?;
        let now = self.clock.now();
        let next_run = match spec {
            // A one-off in the past fires at the next tick.
            Spec::At { at } => Some(at),
            Spec::Cron { .. } | Spec::Every { .. } => timing.next_after(now, now),
        };
        let record = ScheduleRecord {
            name,
            spec,
            task,
            anchor: now,
            next_run,
            last_run: None,
            paused,
        };
        self.store.put_schedule(&record).await?;
        Ok(record)
    }

    /// Pauses a schedule, or resumes it from its next due time after now.
    pub async fn pause_schedule(&self, name: &str, paused: bool) -> Result<ScheduleRecord> {
        let mut record = self
            .store
            .schedules()
            .await?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| BrokerError::UnknownSchedule(name.to_owned()))?;
        if record.paused != paused {
            record.paused = paused;
            if !paused {
                let now = self.clock.now();
                record.next_run = match (&record.spec, Timing::new(&record.name, &record.spec)) {
                    // A one-off keeps its time: missed while paused, it fires
                    // at the next tick.
                    (Spec::At { at }, _) if record.last_run.is_none() => Some(*at),
                    (Spec::At { .. }, _) => None,
                    (_, Ok(timing)) => timing.next_after(now, record.anchor),
                    (_, Err(_)) => None,
                };
            }
            self.store.put_schedule(&record).await?;
        }
        Ok(record)
    }

    pub async fn delete_schedule(&self, name: &str) -> Result<()> {
        if self.store.delete_schedule(name).await? {
            Ok(())
        } else {
            Err(BrokerError::UnknownSchedule(name.to_owned()))
        }
    }

    pub async fn schedules(&self) -> Result<Vec<ScheduleRecord>> {
        Ok(self.store.schedules().await?)
    }

    /// Publishes every schedule that is due, once each however much it missed
    /// (the catch-up rule in `schedule`), and moves it to its next due time.
    async fn fire_due(&self, now: Millis) -> Result<()> {
        for s in self.store.due_schedules(now).await? {
            let Some(due) = s.next_run else {
                continue;
            };
            // A one-off's only due time is not after `now`: it gets none.
            let next_run = match Timing::new(&s.name, &s.spec) {
                Ok(timing) => timing.next_after(now, s.anchor),
                Err(e) => {
                    tracing::error!(schedule = %s.name, error = %e, "a stored schedule no longer parses");
                    None
                }
            };
            let task = s.task.clone();
            let fired = ScheduleRecord {
                next_run,
                last_run: Some(due),
                ..s
            };
            tracing::info!(schedule = %fired.name, due = %due, "schedule fired");
            self.publish_via(vec![task], Via::Schedule(&fired), None)
                .await?;
        }
        Ok(())
    }

    // ----- claiming and reporting --------------------------------------------

    /// Claims up to `count` copies for a worker: its own queue first, then its
    /// queues in order. With `wait`, holds the request until a copy becomes
    /// ready or the wait ends.
    pub async fn claim(&self, worker: WorkerId, count: usize, wait: Duration) -> Result<Vec<Task>> {
        self.know_worker(worker).await?;
        let lanes = self.lanes_of(worker)?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notifies = self.wakers.watch(&lanes);
            let armed = wakers::arm(&notifies);
            let stopping = self.shutdown.notified();
            tokio::pin!(stopping);
            stopping.as_mut().enable();
            let now = self.clock.now();
            let claimed = self.store.claim(worker, &lanes, now, count).await?;
            for t in &claimed {
                self.metrics
                    .wait_time
                    .observe(now.since(t.run_at) as f64 / 1000.0);
            }
            self.metrics
                .record_waits(claimed.iter().map(|t| (&t.queue, now.since(t.run_at))));
            self.touch(worker);
            if !claimed.is_empty() || wait.is_zero() || self.shutting_down.load(Ordering::SeqCst) {
                return Ok(claimed);
            }
            // Copies other nodes make ready announce themselves to nobody
            // here: with a shared store, look again every poll interval.
            let poll = self.store.poll_interval().unwrap_or(wait);
            tokio::select! {
                _ = wakers::any(armed) => {}
                _ = tokio::time::sleep(poll) => {}
                _ = tokio::time::sleep_until(deadline) => return Ok(Vec::new()),
                _ = &mut stopping => return Ok(Vec::new()),
            }
            // The worker may have been removed while it waited.
            if !self.workers.contains_key(&worker) {
                return Err(BrokerError::UnknownWorker(worker));
            }
        }
    }

    fn lanes_of(&self, worker: WorkerId) -> Result<Vec<Lane>> {
        let w = self
            .workers
            .get(&worker)
            .ok_or(BrokerError::UnknownWorker(worker))?;
        let mut lanes = Vec::with_capacity(w.record.queues.len() + 1);
        lanes.push(Lane::Worker(worker));
        let first = w.first_queue();
        if let Some(i) = first {
            lanes.push(Lane::Queue(w.record.queues[i].clone()));
        }
        lanes.extend(
            w.record
                .queues
                .iter()
                .enumerate()
                .filter(|(i, _)| Some(*i) != first)
                .map(|(_, q)| Lane::Queue(q.clone())),
        );
        Ok(lanes)
    }

    /// Notes that `worker` was heard from. With a store other nodes share,
    /// tells them too, a few times per stale time at most (in the
    /// background: a claim does not wait for it), so that a worker polling
    /// one node shows as alive on all, and any node removes it once it has
    /// gone silent everywhere.
    fn touch(&self, worker: WorkerId) {
        let now = self.clock.now();
        let Some(w) = self.workers.get(&worker) else {
            return;
        };
        w.last_seen.store(now.0, Ordering::Relaxed);
        if self.store.poll_interval().is_none() {
            return;
        }
        let told = w.told.load(Ordering::Relaxed);
        if now.since(Millis(told)) < self.tell_every_ms() {
            return;
        }
        if w.told
            .compare_exchange(told, now.0, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        drop(w);
        let store = Arc::clone(&self.store);
        tokio::spawn(async move {
            if let Err(e) = store.worker_seen(worker, now).await {
                tracing::debug!(%worker, error = %e, "could not tell the other nodes a worker was heard from");
            }
        });
    }

    /// How often a node tells the others it heard from a worker: a quarter
    /// of the shortest time that decides about it, so that they learn of it
    /// well within that time.
    fn tell_every_ms(&self) -> u64 {
        let s = &self.settings;
        (s.worker_stale_after_ms.min(s.worker_idle_timeout_ms) / 4).max(100)
    }

    /// A worker reports the end of its claim on a copy.
    pub async fn report(
        &self,
        worker: WorkerId,
        task: TaskId,
        report: Report,
        re_enqueue: bool,
    ) -> Result<Task> {
        self.report_many(vec![(worker, task, report, re_enqueue)])
            .await?
            .pop()
            .unwrap_or(Err(BrokerError::UnknownTask(task)))
    }

    /// Several reports, in order, in one durable step; each answered on its
    /// own (one from an unknown worker or for a copy not its own fails
    /// alone).
    pub async fn report_many(
        &self,
        reports: Vec<(WorkerId, TaskId, Report, bool)>,
    ) -> Result<Vec<Result<Task>>> {
        let now = self.clock.now();
        let mut answers: Vec<Option<Result<Task>>> = Vec::with_capacity(reports.len());
        let mut asked = Vec::with_capacity(reports.len());
        let mut failing = Vec::with_capacity(reports.len());
        for (worker, task, report, re_enqueue) in reports {
            if !self.workers.contains_key(&worker) {
                answers.push(Some(Err(BrokerError::UnknownWorker(worker))));
                continue;
            }
            self.touch(worker);
            failing.push(matches!(report, Report::Fail { .. }));
            let what = match report {
                Report::Complete { output } => {
                    ReportKind::Finish(Outcome::Complete { re_enqueue, output })
                }
                Report::Fail { reason } => ReportKind::Finish(Outcome::Fail {
                    reason,
                    re_enqueue,
                    retry: self.settings.retry,
                }),
                Report::Progress { progress } => ReportKind::Heartbeat(progress),
            };
            asked.push(WorkerReport { task, worker, what });
            answers.push(None);
        }
        let kinds: Vec<bool> = asked
            .iter()
            .map(|r| matches!(r.what, ReportKind::Heartbeat(_)))
            .collect();
        let reported = self.store.report(asked, now, &self.output_router()).await?;
        self.spawned(&reported.spawned);
        for lane in &reported.woken {
            self.wakers.wake(lane);
        }
        let batched = reported
            .answers
            .iter()
            .any(|a| a.as_ref().is_ok_and(|t| t.batch.is_some()));
        let mut stored = reported.answers.into_iter();
        let mut facts = kinds.into_iter().zip(failing);
        for slot in answers.iter_mut().filter(|a| a.is_none()) {
            let (heartbeat, failing) = facts.next().unwrap_or_default();
            let answer = stored
                .next()
                .unwrap_or_else(|| Err(StoreError::Unavailable("a report got no answer".into())));
            *slot = Some(answer.map_err(BrokerError::from).inspect(|t| {
                if !heartbeat {
                    self.reported(t, failing, now);
                }
            }));
        }
        // The copy that ended a batch publishes its callback now rather
        // than at the next tick; a failure here is the tick's to retry.
        if batched {
            if let Err(e) = self.fire_due_batches().await {
                tracing::warn!(error = %e, "a batch's callback waits for the next tick");
            }
        }
        Ok(answers.into_iter().flatten().collect())
    }

    /// What follows the copies completed copies' outputs became: waking
    /// their lanes' waiters, metrics.
    fn spawned(&self, copies: &[Task]) {
        if copies.is_empty() {
            return;
        }
        let lanes = copies
            .iter()
            .filter(|t| t.state == TaskState::Ready)
            .map(Task::lane)
            .collect();
        for lane in dedup(lanes) {
            self.wakers.wake(&lane);
        }
        for t in copies {
            self.metrics.add(QueueEvent::Routed, &t.queue, 1);
        }
    }

    /// What follows a copy's end: waking waiters, metrics.
    fn reported(&self, t: &Task, failing: bool, now: Millis) {
        self.log_changed();
        if t.state == TaskState::Ready {
            self.wakers.wake(&t.lane());
        }
        // A slot under the queue's `max_running` may have opened. Waking a
        // lane nobody waits on costs a map lookup, less than asking the store
        // whether the queue has that limit.
        if t.state != TaskState::Running {
            self.wakers.wake(&Lane::Queue(t.queue.clone()));
        }
        let event = match (t.state, failing) {
            (TaskState::Failed, _) => QueueEvent::Failed,
            (TaskState::Cancelled, _) => QueueEvent::Cancelled,
            (TaskState::Scheduled, _) | (TaskState::Ready, true) => QueueEvent::Retried,
            _ => QueueEvent::Completed,
        };
        let reason = t.fail_reason.as_deref().unwrap_or("");
        match event {
            QueueEvent::Failed => tracing::warn!(
                target: "interq::tasks",
                task = %t.task_id, queue = %t.queue, attempt = t.attempt, max_attempts = t.max_attempts, reason,
                "copy failed for good"
            ),
            QueueEvent::Retried => tracing::info!(
                target: "interq::tasks",
                task = %t.task_id, queue = %t.queue, attempt = t.attempt, max_attempts = t.max_attempts, reason,
                "copy failed; it will be retried"
            ),
            _ => {}
        }
        self.metrics.add(event, &t.queue, 1);
        if let Some(started) = t.started_at {
            self.metrics
                .run_time
                .observe(now.since(started) as f64 / 1000.0);
        }
    }

    /// Stops a task by id (a copy, or every copy of a publish) or by key:
    /// waiting copies are cancelled now, running ones flagged for their
    /// workers.
    pub async fn cancel(
        &self,
        target: CancelTarget,
        within: Option<&QueueFilter>,
    ) -> Result<Cancellation> {
        let missing = match &target {
            CancelTarget::Task(id) => BrokerError::UnknownTask(*id),
            CancelTarget::Key(key) => BrokerError::UnknownKey(key.clone()),
        };
        let outcome = self.store.cancel(target, self.clock.now(), within).await?;
        if outcome.cancelled.is_empty()
            && outcome.requested.is_empty()
            && outcome.untouched.is_empty()
        {
            return Err(missing);
        }
        Ok(outcome)
    }

    /// Every copy published with `key`, in any state.
    pub async fn tasks_with_key(&self, key: &str) -> Result<Vec<Task>> {
        Ok(self.store.tasks_with_key(key).await?)
    }

    /// Removes every copy of a queue, or a worker's own queue and the copies
    /// it runs. Returns how many.
    pub async fn delete_tasks(&self, selector: TaskSelector) -> Result<u64> {
        Ok(self.store.delete_tasks(selector).await?)
    }

    // ----- workers --------------------------------------------------------------

    /// Registers a worker; `owner` names the key that registered it, which
    /// alone may then claim and report for it (admins aside).
    /// Registers a worker on `queues` in order, or with `weights` (one per
    /// queue) in proportion to them.
    pub async fn register_worker(
        &self,
        queues: Vec<QueueName>,
        weights: Vec<u32>,
        name: String,
        owner: Option<String>,
    ) -> Result<WorkerRecord> {
        let record = WorkerRecord {
            worker_id: WorkerId::new(),
            name,
            queues,
            weights,
            registered_at: self.clock.now(),
            owner,
            seen_at: None,
        };
        self.store.put_worker(&record).await?;
        self.workers.insert(
            record.worker_id,
            LiveWorker::new(record.clone(), record.registered_at),
        );
        Ok(record)
    }

    /// The key that registered a worker (none when auth was off).
    pub async fn owner_of(&self, worker: WorkerId) -> Result<Option<String>> {
        self.know_worker(worker).await?;
        self.workers
            .get(&worker)
            .map(|w| w.record.owner.clone())
            .ok_or(BrokerError::UnknownWorker(worker))
    }

    /// Removes a worker; the copies it was running go back to their queues.
    pub async fn delete_worker(&self, worker: WorkerId) -> Result<()> {
        if self.workers.remove(&worker).is_none() {
            return Err(BrokerError::UnknownWorker(worker));
        }
        let tick = self.store.release_worker(worker, self.clock.now()).await?;
        log_lease_ends(&tick.lease_ends);
        self.store.delete_worker(worker).await?;
        for lane in &tick.woken {
            self.wakers.wake(lane);
        }
        // Wake its own long poll, which then finds the worker gone.
        self.wakers.wake(&Lane::Worker(worker));
        self.wakers.forget(&Lane::Worker(worker));
        Ok(())
    }

    /// Removes every worker registered on `queue`; returns their ids.
    pub async fn delete_workers_of(&self, queue: &QueueName) -> Result<Vec<WorkerId>> {
        let ids: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|w| w.record.queues.contains(queue))
            .map(|w| w.record.worker_id)
            .collect();
        for &id in &ids {
            match self.delete_worker(id).await {
                Ok(()) | Err(BrokerError::UnknownWorker(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(ids)
    }

    /// Moves on with every durable change to the store (see
    /// `Store::version`).
    pub async fn store_version(&self) -> Result<u64> {
        Ok(self.store.version().await?)
    }

    /// When `queue`'s longest-waiting ready copy became ready.
    pub async fn oldest_ready(&self, queue: &QueueName) -> Result<Option<Millis>> {
        Ok(self.store.oldest_ready(queue).await?)
    }

    /// How long `queue`'s last copies claimed on this node waited ready.
    pub fn queue_waits(&self, queue: &QueueName) -> Option<crate::metrics::Waits> {
        self.metrics.waits(queue)
    }

    /// How many workers this node knows, without building their views.
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    pub async fn workers(&self) -> Result<Vec<WorkerView>> {
        let now = self.clock.now();
        let mut out = Vec::with_capacity(self.workers.len());
        let live: Vec<(WorkerRecord, Millis)> = self
            .workers
            .iter()
            .map(|w| {
                (
                    w.record.clone(),
                    Millis(w.last_seen.load(Ordering::Relaxed)),
                )
            })
            .collect();
        for (record, last_seen) in live {
            let running = self.store.running_of(record.worker_id).await?;
            let state = if now.since(last_seen) > self.settings.worker_stale_after_ms {
                WorkerState::Stale
            } else if running.is_empty() {
                WorkerState::Idle
            } else {
                WorkerState::Processing
            };
            out.push(WorkerView {
                worker_id: record.worker_id,
                name: record.name,
                queues: record.queues,
                weights: record.weights,
                state,
                running,
                registered_at: record.registered_at,
                last_seen,
                owner: record.owner,
            });
        }
        out.sort_by_key(|w| w.worker_id);
        Ok(out)
    }

    // ----- interests and queues ---------------------------------------------

    /// Replaces a queue's interests (creating the queue). Returns their
    /// normalized JSON form. The new matcher is built off the publish path and
    /// swapped in whole.
    pub async fn set_interests(&self, queue: QueueName, value: &Value) -> Result<Value> {
        Ok(self
            .set_many_interests(vec![(queue, value.clone())])
            .await?
            .remove(0))
    }

    /// Replaces the interests of several queues; all are checked before any
    /// is stored. Only the queues changed since the router's last
    /// compaction are compiled again, so a change costs the same at ten
    /// queues or a hundred thousand.
    pub async fn set_many_interests(&self, updates: Vec<(QueueName, Value)>) -> Result<Vec<Value>> {
        let parsed = updates
            .into_iter()
            .map(|(queue, value)| {
                Interests::parse(queue.as_str(), &value, &self.settings.interest_limits)
                    .map(|i| (queue, i))
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let _turn = self.interest_changes.lock().await;
        let normalized: Vec<(QueueName, Value)> = parsed
            .iter()
            .map(|(q, i)| (q.clone(), i.to_json()))
            .collect();
        let changes = parsed
            .into_iter()
            .map(|(q, i)| (Arc::clone(q.shared()), Some(i)))
            .collect();
        let router = self.changed_router(changes).await?;
        // One durable step for the batch: a thousand queues set at once
        // were a thousand commits.
        self.store.put_many_interests(&normalized).await?;
        self.install(router);
        Ok(normalized.into_iter().map(|(_, v)| v).collect())
    }

    /// Removes a queue's interests: it receives no new tasks.
    pub async fn delete_interests(&self, queue: &QueueName) -> Result<()> {
        let _turn = self.interest_changes.lock().await;
        if self.routes.load().get(queue.as_str()).is_none() {
            return Err(BrokerError::UnknownQueue(queue.clone()));
        }
        let router = self
            .changed_router(vec![(Arc::clone(queue.shared()), None)])
            .await?;
        self.store.delete_interests(queue).await?;
        self.install(router);
        Ok(())
    }

    /// The router with these changes, compiled on a blocking thread (the
    /// changed queues may hold costly patterns).
    async fn changed_router(&self, changes: Vec<(Arc<str>, Option<Interests>)>) -> Result<Router> {
        let current = self.routes.load_full();
        tokio::task::spawn_blocking(move || current.with_changes(changes))
            .await
            .map_err(|e| BrokerError::Store(StoreError::Unavailable(e.to_string())))?
            .map_err(BrokerError::from)
    }

    /// Puts a router in use, and asks for a compaction when its delta has
    /// grown. Called holding `interest_changes`.
    fn install(&self, router: Router) {
        let due = router.needs_compaction();
        self.routes.store(Arc::new(router));
        if due {
            self.compaction_due.notify_one();
        }
    }

    /// Runs for the broker's life: whenever the router's delta has grown,
    /// compiles every queue into a new base off the request threads, then
    /// carries over the changes made meanwhile. Interest changes go on
    /// while it compiles.
    pub async fn compact_routes_when_due(&self) {
        loop {
            self.compaction_due.notified().await;
            if self.shutting_down.load(Ordering::SeqCst) {
                return;
            }
            if let Err(e) = self.compact_routes().await {
                tracing::warn!(error = %e, "the router could not be compacted; changes go on against its delta");
            }
        }
    }

    /// One compaction (see `compact_routes_when_due`).
    pub async fn compact_routes(&self) -> Result<()> {
        let from = self.routes.load_full();
        let started = std::time::Instant::now();
        let source = Arc::clone(&from);
        let compacted = tokio::task::spawn_blocking(move || source.compacted())
            .await
            .map_err(|e| BrokerError::Store(StoreError::Unavailable(e.to_string())))??;
        let _turn = self.interest_changes.lock().await;
        let now = self.routes.load_full();
        if let Some(router) = now.rebased(&from, &compacted)? {
            tracing::debug!(
                queues = router.len(),
                carried_over = router.pending_changes(),
                ms = started.elapsed().as_millis() as u64,
                "router compacted"
            );
            self.install(router);
            self.compactions.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The router's size and state, for metrics.
    pub fn router_stats(&self) -> RouterStats {
        let router = self.routes.load();
        RouterStats {
            queues: router.len(),
            pending_changes: router.pending_changes(),
            compactions: self.compactions.load(Ordering::Relaxed),
        }
    }

    /// Removes a queue: its interests and every copy in it. Returns how many
    /// copies went.
    pub async fn delete_queue(&self, queue: &QueueName) -> Result<u64> {
        let had_interests = match self.delete_interests(queue).await {
            Ok(()) => true,
            Err(BrokerError::UnknownQueue(_)) => false,
            Err(e) => return Err(e),
        };
        let removed = self
            .store
            .delete_tasks(TaskSelector::Queue(queue.clone()))
            .await?;
        if !had_interests && removed == 0 {
            return Err(BrokerError::UnknownQueue(queue.clone()));
        }
        Ok(removed)
    }

    /// One queue's interests, in their JSON form.
    pub fn interests_of(&self, queue: &QueueName) -> Option<Value> {
        self.routes
            .load()
            .get(queue.as_str())
            .map(Interests::to_json)
    }

    /// A page of the queues with interests whose names contain `find`, in
    /// name order, and how many such queues there are.
    pub fn interests_page(
        &self,
        find: &str,
        offset: usize,
        limit: usize,
    ) -> (Vec<(QueueName, Value)>, usize) {
        let router = self.routes.load();
        let mut total = 0;
        let mut page = Vec::new();
        for (queue, interests) in router.queues().filter(|(q, _)| q.contains(find)) {
            if total >= offset && page.len() < limit {
                page.push((QueueName::from_shared(queue.into()), interests.to_json()));
            }
            total += 1;
        }
        (page, total)
    }

    /// Every queue's interests, in name order.
    pub async fn interests(&self) -> BTreeMap<QueueName, Value> {
        self.routes
            .load()
            .queues()
            .map(|(q, i)| (QueueName::from_shared(q.into()), i.to_json()))
            .collect()
    }

    // ----- status -------------------------------------------------------------

    /// Counts of one queue (zeros for a queue with no copies).
    pub async fn queue_counts(&self, queue: &QueueName) -> Result<QueueCounts> {
        Ok(self
            .store
            .queue_counts()
            .await?
            .into_iter()
            .find(|(q, _)| q == queue)
            .map(|(_, c)| c)
            .unwrap_or_default())
    }

    /// Every known queue (with interests or with copies) and its counts.
    pub async fn queues(&self) -> Result<BTreeMap<QueueName, QueueCounts>> {
        let mut out: BTreeMap<QueueName, QueueCounts> = self
            .routes
            .load()
            .queues()
            .map(|(q, _)| (QueueName::from_shared(q.into()), QueueCounts::default()))
            .collect();
        for (q, c) in self.store.queue_counts().await? {
            out.insert(q, c);
        }
        Ok(out)
    }

    /// Ready copies in one worker's own queue.
    pub async fn worker_queue_len(&self, worker: WorkerId) -> Result<u64> {
        Ok(self.store.lane_len(&Lane::Worker(worker)).await?)
    }

    pub async fn failed(&self, queue: Option<&QueueName>, page: Page) -> Result<Vec<Task>> {
        Ok(self
            .store
            .list_tasks(queue, TaskState::Failed, &TaskFilter::default(), page)
            .await?)
    }

    /// Per queue with fairness groups: groups, held by `maxRunning`, held
    /// by `rateLimit`.
    pub async fn group_summary(&self) -> Result<Vec<(QueueName, [u64; 3])>> {
        Ok(self.store.group_summary().await?)
    }

    /// A queue's fairness groups, the most ready first.
    pub async fn groups(&self, queue: &QueueName, top: usize) -> Result<QueueGroups> {
        Ok(self.store.groups(queue, top).await?)
    }

    /// The failed copies' distinct reasons (first lines), most common first.
    pub async fn failed_reasons(&self, queue: Option<&QueueName>) -> Result<Vec<(String, u64)>> {
        Ok(self.store.failed_reasons(queue).await?)
    }

    /// A copy by its id, or every copy of a publish by the publish's id, each
    /// with `routedBy`: the field and pattern of its queue's interests that
    /// take it (as the interests are now).
    pub async fn find_task(&self, id: TaskId) -> Result<Value> {
        if let Some(t) = self.store.task(id).await? {
            let mut view = self.task_view(&t);
            if let Some(why) = self.held_by(id).await? {
                view["heldBy"] = Value::from(why);
            }
            let brief = |ts: &[Task]| -> Value {
                ts.iter()
                    .map(|c| serde_json::json!({"taskId": c.task_id, "queue": c.queue, "state": c.state}))
                    .collect()
            };
            let children = self.children(id).await?;
            if !children.is_empty() {
                view["children"] = brief(&children);
            }
            let dependants = self.dependants(id).await?;
            if !dependants.is_empty() {
                view["dependants"] = brief(&dependants);
            }
            return Ok(view);
        }
        // A copy's id that names no copy is unknown, even when its publish
        // exists: only a publish's own id lists the copies.
        if !id.is_publish() {
            return Err(BrokerError::UnknownTask(id));
        }
        let copies = self.store.tasks_of_publish(id).await?;
        if copies.is_empty() {
            return Err(BrokerError::UnknownTask(id));
        }
        let copies: Vec<Value> = copies.iter().map(|t| self.task_view(t)).collect();
        Ok(serde_json::json!({"publishId": id, "copies": copies}))
    }

    /// The kept copies that wait (or waited) for a copy.
    pub async fn dependants(&self, id: TaskId) -> Result<Vec<Task>> {
        Ok(self.store.dependants(id).await?)
    }

    /// The copies made from a copy's output, that are still kept.
    pub async fn children(&self, id: TaskId) -> Result<Vec<Task>> {
        Ok(self.store.children(id).await?)
    }

    /// Why a ready copy is not handed out now, when a rule holds it.
    pub async fn held_by(&self, id: TaskId) -> Result<Option<String>> {
        Ok(self.store.held_by(id, self.clock.now()).await?)
    }

    fn task_view(&self, t: &Task) -> Value {
        let mut view = serde_json::to_value(t).unwrap_or(Value::Null);
        let routes = self.routes.load();
        if let Some(why) = routes.explain_queue(t.queue.as_str(), &t.data) {
            let by: Vec<Value> = why
                .fields
                .iter()
                .map(|h| serde_json::json!({"field": h.field, "pattern": h.pattern, "value": h.value}))
                .collect();
            view["routedBy"] = if why.unrouted {
                Value::from(interest::UNROUTED)
            } else if by.is_empty() {
                Value::from("*")
            } else {
                Value::Array(by)
            };
        }
        view
    }

    pub async fn counters(&self) -> Result<Counters> {
        Ok(self.store.counters().await?)
    }

    // ----- time -----------------------------------------------------------------

    /// Applies the passing of time: scheduled copies that are due become ready,
    /// expired leases go back, idle workers are removed. The server calls this
    /// often; tests call it after moving a manual clock.
    pub async fn tick(&self) -> Result<()> {
        if self.store.poll_interval().is_some() {
            self.follow_store().await?;
        }
        let now = self.clock.now();
        let tick = self.store.tick(now).await?;
        log_lease_ends(&tick.lease_ends);
        for lane in &tick.woken {
            self.wakers.wake(lane);
        }
        if !self.shutting_down.load(Ordering::SeqCst) {
            self.fire_due(now).await?;
            self.fire_due_batches().await?;
        }
        self.sample_counters(now).await;
        // Rate-limited queues earn tokens as time passes: let their waiting
        // workers try again.
        for (queue, settings) in self.store.queue_settings().await? {
            if settings.rate_limit.is_some() {
                self.wakers.wake(&Lane::Queue(queue));
            }
        }
        let idle: Vec<WorkerId> = self
            .workers
            .iter()
            .filter(|w| {
                now.since(Millis(w.last_seen.load(Ordering::Relaxed)))
                    > self.settings.worker_idle_timeout_ms
            })
            .map(|w| w.record.worker_id)
            .collect();
        for worker in idle {
            // A worker busy with a long task may be silent; its leases decide.
            if self.store.running_of(worker).await?.is_empty() {
                tracing::info!(%worker, "removing idle worker");
                match self.delete_worker(worker).await {
                    Ok(()) | Err(BrokerError::UnknownWorker(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// With a store other nodes share: a worker registered on another node
    /// is looked up in the store before it is called unknown.
    async fn know_worker(&self, worker: WorkerId) -> Result<()> {
        if !self.workers.contains_key(&worker) && self.store.poll_interval().is_some() {
            self.follow_workers().await?;
        }
        Ok(())
    }

    /// With a store other nodes share: takes in the interests and worker
    /// registrations they changed. Called at every tick, so an interest set
    /// on one node routes on all within a tick or two.
    async fn follow_store(&self) -> Result<()> {
        // Comparing every queue's interests costs a walk of them all: only
        // when the store says some changed.
        let version = self.store.interests_version().await?;
        if self.interests_followed.load(Ordering::SeqCst) == version + 1 {
            return self.follow_workers().await;
        }
        let stored: BTreeMap<QueueName, Value> =
            self.store.interests().await?.into_iter().collect();
        let turn = self.interest_changes.lock().await;
        let current = self.routes.load_full();
        let mut changes = Vec::new();
        for (queue, value) in &stored {
            if current.get(queue.as_str()).map(Interests::to_json).as_ref() != Some(value) {
                let parsed =
                    Interests::parse(queue.as_str(), value, &self.settings.interest_limits)?;
                changes.push((Arc::clone(queue.shared()), Some(parsed)));
            }
        }
        for (queue, _) in current.queues() {
            if let Ok(name) = QueueName::parse(queue) {
                if !stored.contains_key(&name) {
                    changes.push((Arc::clone(name.shared()), None));
                }
            }
        }
        if !changes.is_empty() {
            let changed = changes.len();
            let router = self.changed_router(changes).await?;
            self.install(router);
            tracing::info!(changed, "took in interests changed on another node");
        }
        drop(turn);
        // Stored as one more than the version, so that 0 means not yet.
        self.interests_followed.store(version + 1, Ordering::SeqCst);
        self.follow_workers().await
    }

    async fn follow_workers(&self) -> Result<()> {
        let now = self.clock.now();
        let records = self.store.workers().await?;
        let known: std::collections::HashSet<WorkerId> =
            records.iter().map(|r| r.worker_id).collect();
        for record in records {
            match self.workers.get(&record.worker_id) {
                Some(w) => {
                    // Another node heard from it since: it was alive a
                    // moment ago, whatever that node's clock says.
                    let seen = record.seen_at.map_or(0, |t| t.0);
                    if w.noted.swap(seen, Ordering::Relaxed) != seen {
                        w.last_seen.fetch_max(now.0, Ordering::Relaxed);
                    }
                }
                None => {
                    self.workers
                        .insert(record.worker_id, LiveWorker::new(record, now));
                }
            }
        }
        // Removed on another node, unless registered here while the store
        // was being read.
        self.workers
            .retain(|id, w| known.contains(id) || w.record.registered_at >= now);
        Ok(())
    }

    /// Stops taking publishes and answers every long poll now (empty).
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.shutdown.notify_waiters();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }
}

/// What `/metrics` says of the router.
#[derive(Debug, Clone, Copy)]
pub struct RouterStats {
    pub queues: usize,
    pub pending_changes: usize,
    pub compactions: u64,
}

/// Compiles every queue's interests on a blocking thread: with thousands of
/// queues it takes long enough to stall the request threads.
async fn build_router(queues: Vec<(QueueName, Interests)>) -> Result<Router> {
    tokio::task::spawn_blocking(move || {
        Router::build(queues.into_iter().map(|(q, i)| (Arc::clone(q.shared()), i)))
    })
    .await
    .map_err(|e| BrokerError::Store(StoreError::Unavailable(e.to_string())))?
    .map_err(BrokerError::from)
}

fn dedup(mut lanes: Vec<Lane>) -> Vec<Lane> {
    lanes.sort();
    lanes.dedup();
    lanes
}

/// Leases that ended without a report are what an operator looks for when
/// workers hang or die: each is logged with its queue, task and worker.
fn log_lease_ends(ended: &[crate::store::LeaseEnded]) {
    for e in ended {
        let worker = e.worker.map(|w| w.to_string()).unwrap_or_default();
        let why = if e.expired {
            "lease expired"
        } else {
            "its worker was removed"
        };
        match e.state {
            TaskState::Failed => tracing::warn!(
                target: "interq::tasks",
                task = %e.task_id, queue = %e.queue, worker, attempt = e.attempt,
                "copy failed for good: {why} on its last attempt"
            ),
            TaskState::Cancelled => tracing::info!(
                target: "interq::tasks",
                task = %e.task_id, queue = %e.queue, worker, attempt = e.attempt,
                "copy cancelled: {why} after its cancellation was asked"
            ),
            _ if e.expired => tracing::warn!(
                target: "interq::tasks",
                task = %e.task_id, queue = %e.queue, worker, attempt = e.attempt,
                "lease expired: the copy goes back to its queue"
            ),
            _ => tracing::info!(
                target: "interq::tasks",
                task = %e.task_id, queue = %e.queue, worker, attempt = e.attempt,
                "worker removed: its copy goes back to its queue"
            ),
        }
    }
}
