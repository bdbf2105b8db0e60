//! A deterministic simulation of several nodes sharing one log: each node
//! is a real `Engine` (the state machine both backends run) over an
//! in-memory log with the shared log's rules (one change at a time, every
//! node applying the others' entries in order before its own), driven by
//! a seeded generator through publishes, claims, reports, ticks, batches
//! and dependencies on random nodes, with commits that fail (having stored
//! the entry or not). After every step the invariants are checked from a
//! random node's view. A failing seed is printed and replays alike.
//!
//! What it covers: the rules that must hold across nodes (a group's running
//! limit, a lease, a batch's callback, a dependency's release) on the
//! replication the engine does over any shared log; and, in a second run,
//! the same over the Couchbase log's own protocol (its lock, entries,
//! snapshot and head check) on a bucket in memory with Couchbase's rules,
//! where any bucket call of a step may fail, before or after it took
//! effect. What a real server adds (its timing, failover) runs only
//! against one (`cluster.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use interq::model::{
    BatchRecord, BatchTotals, Counters, Dependency, GroupSettings, Lane, Millis, NewTask, Priority,
    QueueName, QueueSettings, Scope, Task, TaskId, TaskState, WorkerId,
};
use interq::store::couchbase::{CouchbaseLog, CouchbaseSettings, MemoryBucket};
use interq::store::engine::{Batch, Engine, Log, News, Op, Payloads, Retention};
use interq::store::{NoOutputs, Outcome, ReportKind, Store, StoreError, StoreStats, WorkerReport};
use serde_json::json;

/// What every node sees: the entries, and the one change in progress.
#[derive(Debug, Default)]
struct Shared {
    entries: Vec<Batch>,
    /// Commits to fail from now on: (stored anyway, how many).
    failing: Option<(bool, u32)>,
}

/// One node's handle on the shared log.
#[derive(Debug, Clone)]
struct SimLog {
    shared: Arc<Mutex<Shared>>,
    /// One change at a time across the nodes, as the cluster lock makes it.
    turn: Arc<tokio::sync::Mutex<()>>,
}

struct SimTurn {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    staged: Option<(u64, Batch)>,
}

impl std::fmt::Debug for SimTurn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimTurn").finish_non_exhaustive()
    }
}

impl SimLog {
    fn entries_after(&self, applied: u64) -> News {
        let shared = self.shared.lock().unwrap();
        shared
            .entries
            .iter()
            .enumerate()
            .skip(applied as usize)
            .map(|(i, b)| (i as u64 + 1, b.clone()))
            .collect()
    }
}

impl Log for SimLog {
    type Turn = SimTurn;

    async fn begin(
        &self,
        applied: &(dyn Fn() -> u64 + Sync),
    ) -> Result<(SimTurn, News), StoreError> {
        let guard = Arc::clone(&self.turn).lock_owned().await;
        Ok((
            SimTurn {
                _guard: guard,
                staged: None,
            },
            self.entries_after(applied()),
        ))
    }

    fn stage(&self, turn: &mut SimTurn, applied: u64, batch: Batch) -> u64 {
        turn.staged = Some((applied + 1, batch));
        applied + 1
    }

    fn durable(&self) -> u64 {
        self.shared.lock().unwrap().entries.len() as u64
    }

    async fn commit(&self, turn: SimTurn) -> Result<(), StoreError> {
        let mut shared = self.shared.lock().unwrap();
        let Some((seq, batch)) = turn.staged else {
            return Ok(());
        };
        assert_eq!(seq, shared.entries.len() as u64 + 1, "entries in order");
        if let Some((stored, left)) = shared.failing {
            shared.failing = (left > 1).then_some((stored, left - 1));
            if stored {
                shared.entries.push(batch);
            }
            return Err(StoreError::Unavailable(
                "injected: the commit's answer was lost".into(),
            ));
        }
        shared.entries.push(batch);
        Ok(())
    }

    fn abandon(&self, _turn: SimTurn) {}

    async fn news(&self, applied: u64) -> Result<News, StoreError> {
        Ok(self.entries_after(applied))
    }

    async fn payloads(&self, publishes: &[[u8; 16]]) -> Result<Payloads, StoreError> {
        let want: HashSet<&[u8; 16]> = publishes.iter().collect();
        let shared = self.shared.lock().unwrap();
        let mut out = Payloads::new();
        for b in &shared.entries {
            for op in &b.ops {
                match op {
                    Op::PutPayload(k, v) if want.contains(k) => {
                        out.insert(*k, v.clone());
                    }
                    Op::DeletePayload(k) => {
                        out.remove(k);
                    }
                    _ => {}
                }
            }
        }
        Ok(out)
    }

    async fn output_pages(
        &self,
        _copy: [u8; 16],
        _pages: std::ops::Range<u32>,
    ) -> Result<Vec<(u32, Vec<u8>)>, StoreError> {
        Ok(Vec::new())
    }

    async fn load(
        &self,
        apply: &mut (dyn FnMut(Batch) -> Result<(), StoreError> + Send),
    ) -> Result<u64, StoreError> {
        let entries = self.entries_after(0);
        let last = entries.len() as u64;
        for (_, b) in entries {
            apply(b)?;
        }
        Ok(last)
    }

    async fn reset(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn stats(&self) -> StoreStats {
        StoreStats::default()
    }

    fn poll_interval(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_millis(100))
    }
}

const NODES: usize = 3;
const GROUPS: usize = 4;
pub(crate) const T0: Millis = Millis(1_800_000_000_000);

pub(crate) fn queue() -> QueueName {
    QueueName::parse("q").unwrap()
}

/// Publish `n`'s id: made from the step's count rather than the clock and
/// randomness, so that a seed orders everything alike every run.
fn publish_id(n: u64) -> TaskId {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&n.to_be_bytes());
    bytes[6] = 0x70 | (bytes[6] & 0x0F);
    bytes[14] = 0xFF;
    bytes[15] = 0xFF;
    TaskId::from_bytes(bytes)
}

pub(crate) fn task(
    n: u64,
    group: usize,
    batch: Option<&str>,
    deps: Vec<TaskId>,
    now: Millis,
) -> Task {
    let publish = publish_id(n);
    let data = json!({"n": n}).as_object().unwrap().clone();
    Task {
        task_id: publish.copy(0),
        publish_id: publish,
        queue: queue(),
        worker_queue: None,
        fingerprint: String::new(),
        data: Arc::new(data),
        publisher: "sim".into(),
        priority: Priority(0),
        scope: Scope::Any,
        singularly_enqueue: false,
        replace_waiting: false,
        singularly_run: false,
        state: TaskState::Ready,
        attempt: 0,
        max_attempts: 2,
        ttr: 30,
        created_at: now,
        run_at: now,
        expire_at: None,
        worker_id: None,
        lease_until: None,
        started_at: None,
        finished_at: None,
        fail_reason: None,
        progress: None,
        output: None,
        key: None,
        group: Some(format!("g{group}")),
        cancelled: false,
        parent: None,
        depth: 0,
        publish_output: false,
        batch: batch.map(str::to_owned),
        depends_on: deps.into_iter().map(Dependency::Task).collect(),
        run_if_dependency_failed: false,
        history: Vec::new(),
        archived: false,
    }
}

/// One run of the simulation; panics with the seed on a broken invariant.
/// What the nodes share, and how one step's fault is injected into it.
trait Cluster {
    type L: Log;
    /// A node on it.
    async fn node(&self, retention: Retention) -> Engine<Self::L>;
    /// Plans one failure in the step to come.
    fn fault(&self, rng: &mut fastrand::Rng);
    /// Fails nothing more.
    fn heal(&self);
}

impl Cluster for SimLog {
    type L = SimLog;

    async fn node(&self, retention: Retention) -> Engine<SimLog> {
        Engine::open(self.clone(), retention).await.unwrap()
    }

    /// This step's first commit fails: its entry stored or not, and the
    /// answer lost either way.
    fn fault(&self, rng: &mut fastrand::Rng) {
        self.shared.lock().unwrap().failing = Some((rng.bool(), 1));
    }

    fn heal(&self) {
        self.shared.lock().unwrap().failing = None;
    }
}

/// The Couchbase log's own code (lock, entries, snapshots) over a bucket in
/// memory with Couchbase's rules.
struct Bucket(Arc<MemoryBucket>);

impl Cluster for Bucket {
    type L = CouchbaseLog<Arc<MemoryBucket>>;

    async fn node(&self, retention: Retention) -> Engine<Self::L> {
        Engine::open_shared(Arc::clone(&self.0), CouchbaseSettings::default(), retention)
            .await
            .unwrap()
    }

    /// One of the step's next bucket calls fails, whichever it is (taking
    /// the lock, reading entries, writing a payload or the entry, letting go
    /// of the lock), having taken effect or not.
    fn fault(&self, rng: &mut fastrand::Rng) {
        self.0.fail_call(rng.u32(..8), rng.bool());
    }

    fn heal(&self) {
        self.0.heal();
    }
}

async fn simulate(cluster: &impl Cluster, seed: u64, steps: usize) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let retention = Retention {
        finished_per_queue: 1_000_000,
        ..Retention::default()
    };
    let mut nodes = Vec::new();
    for _ in 0..NODES {
        nodes.push(cluster.node(retention).await);
    }
    let limit = 1 + (seed % 2) as u32;
    let settings = QueueSettings {
        group_max_running: Some(limit),
        groups: [(
            "g0".to_owned(),
            GroupSettings {
                max_running: Some(1),
                ..GroupSettings::default()
            },
        )]
        .into_iter()
        .collect(),
        ..QueueSettings::default()
    };
    nodes[0]
        .put_queue_settings(&queue(), settings)
        .await
        .unwrap();
    let workers: Vec<WorkerId> = (0..NODES * 2)
        .map(|i| WorkerId::from_bytes([i as u8 + 1; 16]))
        .collect();
    let mut now = T0;
    // What clients were told: copies acknowledged, leases held, batches.
    let mut acked: Vec<TaskId> = Vec::new();
    let mut leases: HashMap<TaskId, (WorkerId, Millis)> = HashMap::new();
    let mut batches: Vec<String> = Vec::new();
    let mut callbacks: HashMap<String, u32> = HashMap::new();
    let mut n = 0u64;
    for step in 0..steps {
        let at = rng.usize(..NODES);
        let node = &nodes[at];
        if rng.u32(..10) == 0 {
            cluster.fault(&mut rng);
        }
        let ctx = format!("seed {seed}, step {step}, node {at}");
        match rng.u32(..100) {
            0..=29 => {
                // A publish, sometimes in a batch, sometimes waiting for an
                // acknowledged copy.
                n += 1;
                let batch = (rng.u32(..4) == 0).then(|| format!("b{n}"));
                let deps: Vec<TaskId> = if rng.u32(..4) == 0 && !acked.is_empty() {
                    (0..1 + rng.usize(..3))
                        .map(|_| acked[rng.usize(..acked.len())])
                        .collect()
                } else {
                    Vec::new()
                };
                let t = task(n, rng.usize(..GROUPS), batch.as_deref(), deps, now);
                let id = t.task_id;
                let done = match &batch {
                    Some(b) => {
                        let record = BatchRecord {
                            id: b.clone(),
                            created_at: now,
                            totals: BatchTotals::default(),
                            open_for_more: false,
                            on_complete: Some(NewTask::default()),
                            ended_at: None,
                            callback: None,
                        };
                        node.open_batch(record, vec![t], Counters::default()).await
                    }
                    None => node.enqueue(vec![t], Counters::default()).await,
                };
                match done {
                    Ok(_) => {
                        acked.push(id);
                        batches.extend(batch);
                    }
                    // A dependency swept or unknown: refused, nothing stored.
                    Err(StoreError::UnknownDependency(_)) => {}
                    Err(_) => {}
                }
            }
            30..=59 => {
                let w = workers[rng.usize(..workers.len())];
                let count = 1 + rng.usize(..3);
                if let Ok(got) = node.claim(w, &[Lane::Queue(queue())], now, count).await {
                    for t in got {
                        if let Some((holder, until)) = leases.get(&t.task_id) {
                            assert!(
                                *until <= now,
                                "{ctx}: {} handed to {w} while {holder}'s lease holds",
                                t.task_id
                            );
                        }
                        leases.insert(t.task_id, (w, t.lease_until.unwrap()));
                    }
                }
            }
            60..=84 => {
                let held: Vec<(TaskId, WorkerId)> = leases
                    .iter()
                    .filter(|(_, (_, until))| *until > now)
                    .map(|(id, (w, _))| (*id, *w))
                    .collect();
                if let Some(&(id, w)) = held.get(rng.usize(..held.len().max(1))) {
                    let outcome = if rng.u32(..4) == 0 {
                        Outcome::Fail {
                            reason: Some("sim".into()),
                            re_enqueue: false,
                            retry: interq::model::RetryPolicy {
                                base_ms: 1_000,
                                max_ms: 1_000,
                                jitter: 0.0,
                            },
                        }
                    } else {
                        Outcome::Complete {
                            re_enqueue: false,
                            output: None,
                        }
                    };
                    let report = WorkerReport {
                        task: id,
                        worker: w,
                        what: ReportKind::Finish(outcome),
                    };
                    // An error may still have stored the report (its answer was
                    // lost): the lease is no longer known either way.
                    let _ = node.report(vec![report], now, &NoOutputs).await;
                    leases.remove(&id);
                }
            }
            85..=94 => {
                now = now.plus_millis(rng.u64(..40_000));
                let _ = node.tick(now).await;
                leases.retain(|_, (_, until)| *until > now);
            }
            _ => {
                // Batch callbacks: whichever node fires, once.
                if let Ok(due) = node.due_batches().await {
                    for b in due {
                        n += 1;
                        if let Ok(Some(_)) = node.fire_batch(&b.id, publish_id(n), Vec::new()).await
                        {
                            *callbacks.entry(b.id).or_default() += 1;
                        }
                    }
                }
            }
        }
        // Every node makes a change with no fault pending: one that failed
        // reads the log back now. (A second failure before that would make
        // it wait a wall-clock pause, which a seed could not replay.)
        cluster.heal();
        for node in &nodes {
            node.flush()
                .await
                .unwrap_or_else(|e| panic!("{ctx}: a node did not recover: {e}"));
        }
        // The invariants, from a random node's view.
        let viewer = &nodes[rng.usize(..NODES)];
        let Ok(running) = viewer
            .list_tasks(
                None,
                TaskState::Running,
                &Default::default(),
                interq::model::Page {
                    offset: 0,
                    limit: 10_000,
                },
            )
            .await
        else {
            continue;
        };
        let mut per_group: HashMap<String, u32> = HashMap::new();
        for t in &running {
            *per_group.entry(t.group.clone().unwrap()).or_default() += 1;
        }
        for (g, k) in &per_group {
            let max = if g == "g0" { 1 } else { limit };
            assert!(*k <= max, "{ctx}: group {g} has {k} running, over {max}");
        }
        assert!(
            callbacks.values().all(|&c| c == 1),
            "{ctx}: a callback twice: {callbacks:?}"
        );
    }
    // Every acknowledged copy is known to every node; a blocked one still
    // waits for a copy that has not ended, and one let go had every
    // dependency completed (or swept, which only a completed one is here).
    for (i, node) in nodes.iter().enumerate() {
        node.flush().await.unwrap();
        for id in &acked {
            let t = node.task(*id).await.unwrap();
            let t = t.unwrap_or_else(|| panic!("seed {seed}: node {i} lost acknowledged {id}"));
            let mut deps = Vec::new();
            for d in &t.depends_on {
                let Dependency::Task(dep) = d else { continue };
                deps.push(node.task(*dep).await.unwrap().map(|d| d.state));
            }
            match t.state {
                TaskState::Blocked => assert!(
                    deps.iter().any(|s| s.is_some_and(|s| !s.has_ended())),
                    "seed {seed}: node {i}: {id} blocked on {deps:?}"
                ),
                TaskState::Cancelled => {}
                _ => assert!(
                    deps.iter()
                        .all(|s| s.is_none_or(|s| s == TaskState::Completed)),
                    "seed {seed}: node {i}: {id} {:?} before {deps:?}",
                    t.state
                ),
            }
        }
    }
    // Every ended batch has had its callback: once (a firing whose answer
    // was lost counts, and is never repeated).
    for b in nodes[1].due_batches().await.unwrap() {
        n += 1;
        nodes[1]
            .fire_batch(&b.id, publish_id(n), Vec::new())
            .await
            .unwrap();
    }
    for b in &batches {
        let record = nodes[2].batch(b).await.unwrap().unwrap();
        assert_eq!(
            record.has_ended(),
            record.callback.is_some(),
            "seed {seed}: batch {b}: {record:?}"
        );
        assert!(
            callbacks.get(b).copied().unwrap_or(0) <= 1,
            "seed {seed}: batch {b}"
        );
    }
}

fn seeds() -> u64 {
    std::env::var("INTERQ_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
}

#[test]
fn many_seeds_of_three_nodes_keep_limits_leases_batches_and_dependencies() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for seed in 0..seeds() {
        let log = SimLog {
            shared: Arc::default(),
            turn: Arc::new(tokio::sync::Mutex::new(())),
        };
        runtime.block_on(simulate(&log, seed, 300));
    }
}

/// The same, with the nodes on the Couchbase log over a bucket in memory,
/// any of its calls failing. On tokio's paused clock: a lock whose letting
/// go failed lapses after its 5 s lease without 5 s of waiting.
#[test]
fn many_seeds_of_three_nodes_on_one_bucket_keep_the_same_rules() {
    for seed in 0..seeds() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        runtime.block_on(simulate(&Bucket(MemoryBucket::new()), seed, 300));
    }
}

/// Brokers over the shared log, as nodes over one Couchbase bucket: what
/// one sets, the others take in at their next tick.
#[tokio::test]
async fn brokers_take_in_the_interests_another_node_set() {
    use interq::broker::clock::ManualClock;
    use interq::broker::{Broker, BrokerSettings};
    let log = SimLog {
        shared: Arc::default(),
        turn: Arc::new(tokio::sync::Mutex::new(())),
    };
    let mut brokers = Vec::new();
    for _ in 0..2 {
        let store: Arc<dyn Store> = Arc::new(
            Engine::open(log.clone(), Retention::default())
                .await
                .unwrap(),
        );
        let clock = Arc::new(ManualClock::new());
        brokers.push(
            Broker::start(store, clock, BrokerSettings::default())
                .await
                .unwrap(),
        );
    }
    let (a, b) = (&brokers[0], &brokers[1]);
    let routes = |broker: &Broker, data: serde_json::Value| {
        let data = data.as_object().unwrap().clone();
        broker
            .try_task(&data)
            .into_iter()
            .map(|r| r.queue)
            .collect::<Vec<_>>()
    };
    a.set_interests(queue(), &json!({"kind": "^email$"}))
        .await
        .unwrap();
    assert!(
        routes(b, json!({"kind": "email"})).is_empty(),
        "not before its tick"
    );
    b.tick().await.unwrap();
    assert_eq!(routes(b, json!({"kind": "email"})), ["q"]);
    // A tick with nothing changed skips the comparison; later changes are
    // still taken in: several at once, then a removal.
    b.tick().await.unwrap();
    let other = QueueName::parse("sms").unwrap();
    a.set_many_interests(vec![
        (queue(), json!({"kind": "^mail$"})),
        (other.clone(), json!("*")),
    ])
    .await
    .unwrap();
    b.tick().await.unwrap();
    assert_eq!(routes(b, json!({"kind": "mail"})), ["q", "sms"]);
    a.delete_interests(&other).await.unwrap();
    b.tick().await.unwrap();
    assert_eq!(routes(b, json!({"kind": "mail"})), ["q"]);
    assert_eq!(
        routes(a, json!({"kind": "mail"})),
        ["q"],
        "the setter's own router"
    );
}

/// A queue's `rateLimit` is the cluster's: a copy claimed on one node takes
/// its token on every node that applies the claim, so two nodes let 2/s
/// through, not 2/s each.
#[tokio::test]
async fn a_queues_rate_limit_holds_across_nodes() {
    use interq::model::{Lane, QueueSettings};
    let bucket = MemoryBucket::new();
    let mut nodes = Vec::new();
    for _ in 0..2 {
        nodes.push(on_bucket(&bucket).await.unwrap());
    }
    let (a, b) = (&nodes[0], &nodes[1]);
    let limited = QueueSettings {
        rate_limit: Some(2.0),
        ..QueueSettings::default()
    };
    a.put_queue_settings(&queue(), limited).await.unwrap();
    let tasks: Vec<Task> = (0..10).map(|n| task(n, 0, None, vec![], T0)).collect();
    a.enqueue(tasks, Default::default()).await.unwrap();
    let lanes = [Lane::Queue(queue())];
    let (wa, wb) = (WorkerId::from_bytes([1; 16]), WorkerId::from_bytes([2; 16]));
    // A full bucket of two, spent on node A.
    assert_eq!(a.claim(wa, &lanes, T0, 10).await.unwrap().len(), 2);
    assert!(
        b.claim(wb, &lanes, T0.plus_millis(10), 10)
            .await
            .unwrap()
            .is_empty(),
        "node B let A's two through again"
    );
    // Half a second later the rate has paid one token back, on either node,
    // and only one.
    let later = T0.plus_millis(510);
    assert_eq!(b.claim(wb, &lanes, later, 10).await.unwrap().len(), 1);
    assert!(a.claim(wa, &lanes, later, 10).await.unwrap().is_empty());
    // Over the next two seconds, both nodes together: about the rate.
    let mut claimed = 0;
    for step in 1..=20 {
        let now = later.plus_millis(step * 100);
        for (node, w) in [(a, wa), (b, wb)] {
            claimed += node.claim(w, &lanes, now, 10).await.unwrap().len();
        }
    }
    eprintln!("{claimed} claims over two nodes in 2 s at 2/s");
    assert!((3..=5).contains(&claimed), "{claimed} claims in 2 s at 2/s");
}

/// A node catching up on entries another node wrote reads them in windows
/// at once, not one round trip after another: 200 entries cost a handful of
/// round trips (it cost 201 when each waited for the last).
#[tokio::test(start_paused = true)]
async fn a_node_catches_up_on_many_entries_in_a_few_round_trips() {
    let bucket = MemoryBucket::new();
    let open = || on_bucket(&bucket);
    let (a, b) = (open().await.unwrap(), open().await.unwrap());
    b.counters().await.unwrap();
    for n in 0..200 {
        a.enqueue(vec![task(n, 0, None, vec![], T0)], Default::default())
            .await
            .unwrap();
    }
    let trip = std::time::Duration::from_millis(5);
    bucket.set_delay(trip);
    let started = tokio::time::Instant::now();
    let counters = b.counters().await.unwrap();
    let took = started.elapsed();
    assert_eq!(counters, a.counters().await.unwrap());
    let trips = took.as_millis() / trip.as_millis();
    eprintln!("200 entries caught up on in {trips} round trips");
    assert!(trips <= 10, "{trips} round trips");
}

/// A node of the Couchbase log on `bucket`, with the default settings.
async fn on_bucket(
    bucket: &Arc<MemoryBucket>,
) -> Result<Engine<CouchbaseLog<Arc<MemoryBucket>>>, StoreError> {
    Engine::open_shared(
        Arc::clone(bucket),
        CouchbaseSettings::default(),
        Retention::default(),
    )
    .await
}

/// A clock a test sets, one per node.
#[derive(Debug)]
struct NodeClock(std::sync::atomic::AtomicU64);

impl NodeClock {
    fn at(t: Millis) -> Arc<Self> {
        Arc::new(Self(std::sync::atomic::AtomicU64::new(t.0)))
    }

    fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl interq::broker::clock::Clock for NodeClock {
    fn now(&self) -> Millis {
        Millis(self.0.load(std::sync::atomic::Ordering::SeqCst))
    }
}

/// A node whose clock runs ahead of the one that granted a lease does not
/// end that lease early: it ends it a full `ttr` after it learnt of it at
/// the soonest. Before, node B, a minute ahead, ended a 30 s lease at its
/// first tick and handed the copy out again while its worker still ran it.
#[tokio::test]
async fn a_node_whose_clock_runs_ahead_does_not_end_another_nodes_lease_early() {
    use interq::broker::clock::Clock;
    use interq::model::Lane;
    let bucket = MemoryBucket::new();
    let open = || on_bucket(&bucket);
    let (a, b) = (open().await.unwrap(), open().await.unwrap());
    let clock_a = NodeClock::at(T0);
    let clock_b = NodeClock::at(T0.plus_secs(60));
    a.follow_clock(clock_a.clone());
    b.follow_clock(clock_b.clone());
    a.enqueue(vec![task(1, 0, None, vec![], T0)], Default::default())
        .await
        .unwrap();
    let lanes = [Lane::Queue(queue())];
    let (wa, wb) = (WorkerId::from_bytes([1; 16]), WorkerId::from_bytes([2; 16]));
    let claimed = a.claim(wa, &lanes, clock_a.now(), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let id = claimed[0].task_id;
    // Node B, a minute ahead, ticks through the lease's 30 s and more.
    for _ in 0..29 {
        clock_a.advance(1_000);
        clock_b.advance(1_000);
        let tick = b.tick(clock_b.now()).await.unwrap();
        assert!(
            tick.lease_ends.is_empty(),
            "node B ended node A's lease {} s into it",
            clock_a.now().0.saturating_sub(T0.0) / 1000
        );
        assert!(b
            .claim(wb, &lanes, clock_b.now(), 10)
            .await
            .unwrap()
            .is_empty());
    }
    let copy = b.task(id).await.unwrap().unwrap();
    assert_eq!(copy.state, TaskState::Running);
    assert_eq!(copy.worker_id, Some(wa));
    // Its worker went silent: the lease ends, on node B's clock too, a
    // little after its 30 s.
    clock_a.advance(2_000);
    clock_b.advance(2_000);
    let tick = b.tick(clock_b.now()).await.unwrap();
    assert_eq!(tick.lease_ends.len(), 1, "the lease ended by node B");
    // A node started since, learning of a lease from the bucket, gives it
    // its full ttr from then too.
    let claimed = a.claim(wa, &lanes, clock_a.now(), 10).await;
    let claimed = match claimed {
        Ok(c) if !c.is_empty() => c,
        _ => {
            // The retry waits out its backoff first.
            clock_a.advance(120_000);
            clock_b.advance(120_000);
            a.claim(wa, &lanes, clock_a.now(), 10).await.unwrap()
        }
    };
    assert_eq!(claimed.len(), 1, "the copy runs again once its lease ended");
    let c = open().await.unwrap();
    let clock_c = NodeClock::at(clock_b.now());
    c.follow_clock(clock_c.clone());
    clock_c.advance(1_000);
    let tick = c.tick(clock_c.now()).await.unwrap();
    assert!(
        tick.lease_ends.is_empty(),
        "a new node ended a running lease at once"
    );
    clock_c.advance(30_000);
    let tick = c.tick(clock_c.now()).await.unwrap();
    assert_eq!(
        tick.lease_ends.len(),
        1,
        "the new node ends it after its ttr"
    );
}

/// A worker that polls node A shows as alive on node B too, and once it
/// goes silent node B removes it, though it never heard from it itself.
/// Before, node B showed it STALE while it worked, and never removed it
/// (only a node that had heard from a worker removed it).
#[tokio::test]
async fn every_node_knows_a_worker_is_alive_and_removes_it_once_silent() {
    use interq::broker::clock::ManualClock;
    use interq::broker::{Broker, BrokerSettings};
    use interq::model::WorkerState;
    let bucket = MemoryBucket::new();
    let clock = Arc::new(ManualClock::new());
    let settings = BrokerSettings {
        worker_stale_after_ms: 4_000,
        worker_idle_timeout_ms: 8_000,
        ..BrokerSettings::default()
    };
    let mut brokers = Vec::new();
    for _ in 0..2 {
        let store: Arc<dyn Store> = Arc::new(on_bucket(&bucket).await.unwrap());
        brokers.push(
            Broker::start(store, clock.clone(), settings.clone())
                .await
                .unwrap(),
        );
    }
    let (a, b) = (&brokers[0], &brokers[1]);
    let worker = a
        .register_worker(vec![queue()], Vec::new(), "w".into(), None)
        .await
        .unwrap()
        .worker_id;
    let state_on_b = || async {
        b.workers()
            .await
            .unwrap()
            .into_iter()
            .find(|w| w.worker_id == worker)
            .map(|w| w.state)
    };
    b.tick().await.unwrap();
    assert_eq!(state_on_b().await, Some(WorkerState::Idle));
    for second in 1..=12 {
        clock.advance_ms(1_000);
        a.claim(worker, 1, std::time::Duration::ZERO).await.unwrap();
        // The sighting is written in the background.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        a.tick().await.unwrap();
        b.tick().await.unwrap();
        assert_eq!(
            state_on_b().await,
            Some(WorkerState::Idle),
            "node B after {second} s of claims on node A"
        );
    }
    // Silent from now on (node A is gone too): node B removes it.
    for _ in 0..10 {
        clock.advance_ms(1_000);
        b.tick().await.unwrap();
    }
    assert_eq!(state_on_b().await, None, "node B kept a silent worker");
}
