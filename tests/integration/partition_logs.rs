//! A partition's own log, written by its owner alone
//! (`CouchbaseLog::of_partition`): no lock, no catch-up within a tenure, a
//! non-owner refused, a killed owner's partition written by the next owner
//! with everything acknowledged in it. Then a deterministic simulation:
//! nodes taking and losing partitions under a network that refuses, loses
//! and delays calls (up to 8 s, landing after their node lost its lease or
//! died), stalling, dying and joining, each publishing and claiming on the
//! partitions it owns; afterwards every acknowledged publish is in its
//! partition's log and every acknowledged claim holds, none twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use interq::model::{Counters, Lane, TaskId, TaskState, WorkerId};
use interq::store::couchbase::kv::{Kv, Scoped};
use interq::store::couchbase::owned::{partition_of, OwnedPartitions};
use interq::store::couchbase::partitions::{Ownership, Tenures};
use interq::store::couchbase::{CouchbaseLog, CouchbaseSettings, MemoryBucket};
use interq::store::engine::{Engine, Retention};
use interq::store::{Outcome, Store, StoreError};
use tokio::time::Instant;

use crate::group_commit::publish;
use crate::partitions::{calm_net, paused, seeds, settle, start, Link, Net, Skewed, SETTINGS};
use crate::simulation::{queue, task, T0};

type Part<K> = Engine<CouchbaseLog<Scoped<K>>>;

/// Nobody's tenure: a reader of what the owners wrote.
#[derive(Debug)]
struct NoOne;

impl Tenures for NoOne {
    fn tenure(&self, _: u32) -> Option<u64> {
        None
    }
}

async fn open<K: Kv>(
    kv: &Arc<K>,
    tenures: Arc<dyn Tenures>,
    p: u32,
) -> Result<Part<K>, StoreError> {
    Engine::open_partition(
        Arc::clone(kv),
        CouchbaseSettings::default(),
        Retention::default(),
        tenures,
        p,
    )
    .await
}

fn lane() -> Vec<Lane> {
    vec![Lane::Queue(queue())]
}

/// The ids of the copies in `node` in `state`.
async fn in_state<K: Kv>(node: &Part<K>, state: TaskState) -> Vec<TaskId> {
    let page = interq::model::Page {
        offset: 0,
        limit: 100_000,
    };
    let tasks = node
        .list_tasks(Some(&queue()), state, &Default::default(), page)
        .await
        .unwrap();
    let mut ids: Vec<TaskId> = tasks.into_iter().map(|t| t.task_id).collect();
    ids.sort();
    ids
}

#[tokio::test(start_paused = true)]
async fn an_owner_writes_its_partitions_log_in_two_calls_a_change_and_others_are_refused() {
    let net = calm_net();
    let nodes = [start(&net, 0, 1.0), start(&net, 1, 1.0)];
    let all: Vec<_> = nodes.iter().map(|n| Arc::clone(&n.ownership)).collect();
    settle(&all, &[6, 6]).await;
    let link = Arc::new(Link(Arc::clone(&net)));
    let (a, b) = (&nodes[0].ownership, &nodes[1].ownership);
    let p = a.owned()[0];
    let on_a = open(&link, Arc::clone(a) as Arc<dyn Tenures>, p)
        .await
        .unwrap();
    assert_eq!(publish(&on_a, 0..50).await.len(), 50);
    // The first change after the first entry writes the first snapshot.
    assert_eq!(publish(&on_a, 50..51).await.len(), 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let space = format!("p{p}");
    for n in 51..56 {
        let before = net.bucket.calls_to(&space);
        assert_eq!(publish(&on_a, n..n + 1).await.len(), 1);
        assert_eq!(
            net.bucket.calls_to(&space) - before,
            2,
            "a publish on its owner: its payload and its entry, no lock, no read"
        );
    }
    assert_eq!(net.bucket.calls_to("lock"), 0);
    assert!(net.bucket.names().iter().all(|n| !n.ends_with("lock")));

    // Another node reads the partition but may not change it.
    let on_b = open(&link, Arc::clone(b) as Arc<dyn Tenures>, p)
        .await
        .unwrap();
    assert_eq!(in_state(&on_b, TaskState::Ready).await.len(), 56);
    let before = net.bucket.calls_to(&space);
    let refused = on_b
        .enqueue(vec![task(99, 0, None, Vec::new(), T0)], Counters::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, StoreError::Unavailable(m) if m.contains(&format!("partition {p} "))),
        "{refused:?}"
    );
    assert_eq!(
        net.bucket.calls_to(&space),
        before,
        "a refused change writes nothing"
    );
    let claimed = on_b
        .claim(WorkerId::new(), &lane(), T0, 10)
        .await
        .unwrap_err();
    assert!(matches!(claimed, StoreError::Unavailable(_)), "{claimed:?}");
    // Its own partition it writes, in its own documents.
    let q = b.owned()[0];
    let on_b_own = open(&link, Arc::clone(b) as Arc<dyn Tenures>, q)
        .await
        .unwrap();
    assert_eq!(publish(&on_b_own, 0..5).await.len(), 5);
    assert_eq!(in_state(&on_a, TaskState::Ready).await.len(), 56);
    for n in nodes {
        n.rounds.abort();
    }
}

#[tokio::test(start_paused = true)]
async fn a_killed_owners_partition_is_served_by_the_next_owner_with_all_it_acknowledged() {
    let net = calm_net();
    let mut nodes = vec![start(&net, 0, 1.0), start(&net, 1, 1.0)];
    let all: Vec<_> = nodes.iter().map(|n| Arc::clone(&n.ownership)).collect();
    settle(&all, &[6, 6]).await;
    let link = Arc::new(Link(Arc::clone(&net)));
    let p = nodes[1].ownership.owned()[0];
    let on_dying = open(
        &link,
        Arc::clone(&nodes[1].ownership) as Arc<dyn Tenures>,
        p,
    )
    .await
    .unwrap();
    let published = publish(&on_dying, 0..100).await;
    assert_eq!(published.len(), 100);
    let first = WorkerId::new();
    let held: Vec<TaskId> = on_dying
        .claim(first, &lane(), T0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.task_id)
        .collect();
    assert_eq!(held.len(), 10);

    let dying = nodes.pop().unwrap();
    dying.rounds.abort();
    drop(on_dying);
    let killed = Instant::now();
    let next = Arc::clone(&nodes[0].ownership);
    while next.tenure(p).is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let took = killed.elapsed();
    eprintln!("a killed owner's partition was served again after {took:?}");
    assert!(took <= SETTINGS.lease + SETTINGS.round() * 2, "{took:?}");
    let on_next = open(&link, next as Arc<dyn Tenures>, p).await.unwrap();
    let mut running = held.clone();
    running.sort();
    assert_eq!(in_state(&on_next, TaskState::Running).await, running);
    let rest: Vec<TaskId> = on_next
        .claim(WorkerId::new(), &lane(), T0, 1_000)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.task_id)
        .collect();
    assert_eq!(rest.len(), 90);
    assert!(rest.iter().all(|id| !held.contains(id)));
    assert_eq!(publish(&on_next, 100..110).await.len(), 10);
    nodes[0].rounds.abort();
}

/// What the nodes were told was durable.
#[derive(Debug, Default)]
struct Acked {
    published: BTreeMap<u32, Vec<TaskId>>,
    /// Each copy's last acknowledged claim: its worker, and when (by the
    /// bucket's clock) the claim was asked for.
    claimed: HashMap<TaskId, (WorkerId, Instant)>,
    /// Copies whose completion was acknowledged.
    completed: HashMap<TaskId, WorkerId>,
    /// Copies whose completion was sent: one may have taken effect with
    /// its reply lost.
    finishing: HashMap<TaskId, WorkerId>,
}

/// A task's lease: `task`'s `ttr`.
const TTR: Duration = Duration::from_secs(30);
/// The fastest node clock, against the bucket's.
const FASTEST: f64 = 1.1;

/// A node's clock for task times, `rate` times as fast as the bucket's,
/// from `T0` at the simulation's start.
#[derive(Debug)]
struct TaskClock {
    origin: Instant,
    rate: f64,
}

impl interq::broker::clock::Clock for TaskClock {
    fn now(&self) -> interq::model::Millis {
        let ms = (Instant::now() - self.origin)
            .mul_f64(self.rate)
            .as_millis() as u64;
        interq::model::Millis(T0.0 + ms)
    }
}

impl Acked {
    /// A claim of `copy` by `worker`, asked for at `asked`, was
    /// acknowledged at `now`: no other claim's lease may still hold, and
    /// no completed copy is handed out again.
    fn claim(&mut self, seed: u64, copy: TaskId, worker: WorkerId, asked: Instant) {
        if let Some(by) = self.completed.get(&copy) {
            panic!("seed {seed}: copy {copy} handed to {worker} after {by} completed it");
        }
        if let Some((other, at)) = self.claimed.get(&copy) {
            // Its lease ran `TTR` by some node's clock from after the claim
            // was asked for: at least this long by the bucket's.
            let held = TTR.div_f64(FASTEST);
            assert!(
                Instant::now() - *at >= held,
                "seed {seed}: copy {copy} handed to {worker} {:?} after {other} claimed it",
                Instant::now() - *at
            );
        }
        self.claimed.insert(copy, (worker, asked));
    }

    fn complete(&mut self, seed: u64, copy: TaskId, worker: WorkerId) {
        let last = self.claimed.get(&copy).map(|(w, _)| *w);
        assert_eq!(
            last,
            Some(worker),
            "seed {seed}: {worker} completed {copy}, last claimed by {last:?}"
        );
        self.completed.insert(copy, worker);
    }
}

/// A node's work: every few tens of milliseconds, on each partition it
/// owns (`OwnedPartitions`: its engine read when it begins to own it,
/// dropped once it stops), a publish, a claim, a completion of a copy it
/// holds or a tick, by its own clock, noting what was acknowledged.
fn work(
    seed: u64,
    id: usize,
    link: Arc<Link>,
    ownership: Arc<Ownership<Skewed>>,
    clock: Arc<TaskClock>,
    acked: Arc<Mutex<Acked>>,
) -> tokio::task::JoinHandle<()> {
    use interq::broker::clock::Clock;
    tokio::spawn(async move {
        let mut rng = fastrand::Rng::with_seed(seed ^ (id as u64) << 20);
        let worker = WorkerId::new();
        let owned = OwnedPartitions::new(
            link,
            CouchbaseSettings::default(),
            Retention::default(),
            ownership,
            Arc::clone(&clock) as Arc<dyn Clock>,
        );
        let mut holding: Vec<TaskId> = Vec::new();
        let mut n = (id as u64) << 32;
        loop {
            tokio::time::sleep(Duration::from_millis(rng.u64(10..100))).await;
            for p in 0..SETTINGS.partitions {
                let Ok(engine) = owned.engine(p).await else {
                    continue;
                };
                let now = clock.now();
                match rng.u32(..10) {
                    0..=3 => {
                        n += 1;
                        let t = task(n, 0, None, Vec::new(), now);
                        let copy = t.task_id;
                        if engine.enqueue(vec![t], Counters::default()).await.is_ok() {
                            let mut acked = acked.lock().unwrap();
                            acked.published.entry(p).or_default().push(copy);
                        }
                    }
                    4..=6 => {
                        let asked = Instant::now();
                        if let Ok(got) = engine.claim(worker, &lane(), now, rng.usize(1..4)).await {
                            let mut acked = acked.lock().unwrap();
                            for t in got {
                                acked.claim(seed, t.task_id, worker, asked);
                                holding.push(t.task_id);
                            }
                        }
                    }
                    7..=8 if !holding.is_empty() => {
                        let copy = holding.swap_remove(rng.usize(..holding.len()));
                        let done = Outcome::Complete {
                            re_enqueue: false,
                            output: None,
                        };
                        // One this worker lost (its lease ended, or it is
                        // another partition's) is refused.
                        acked.lock().unwrap().finishing.insert(copy, worker);
                        if engine.finish(copy, worker, now, done).await.is_ok() {
                            acked.lock().unwrap().complete(seed, copy, worker);
                        }
                    }
                    _ => {
                        let _ = engine.tick(now).await;
                    }
                }
            }
        }
    })
}

async fn simulate(seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let net = Arc::new(Net {
        bucket: MemoryBucket::new(),
        rng: Mutex::new(fastrand::Rng::with_seed(seed ^ 0x5bd1_e995)),
        faulty: std::sync::atomic::AtomicBool::new(true),
    });
    let link = Arc::new(Link(Arc::clone(&net)));
    let acked = Arc::new(Mutex::new(Acked::default()));
    let mut nodes = BTreeMap::new();
    let mut next = 0;
    let origin = Instant::now();
    let spawn = |id: usize, rng: &mut fastrand::Rng| {
        let rate = rng.f64() * 0.2 + 0.9;
        let node = start(&net, id, rate);
        let clock = Arc::new(TaskClock { origin, rate });
        let worker = work(
            seed,
            id,
            Arc::clone(&link),
            Arc::clone(&node.ownership),
            clock,
            Arc::clone(&acked),
        );
        (node, worker)
    };
    for _ in 0..rng.usize(1..=3) {
        nodes.insert(next, spawn(next, &mut rng));
        next += 1;
    }
    let faulty_for = Duration::from_secs(rng.u64(20..40));
    let began = Instant::now();
    while began.elapsed() < faulty_for {
        tokio::time::sleep(Duration::from_millis(50)).await;
        match rng.u32(..300) {
            0 if nodes.len() > 1 => {
                // Killed: it stops; its calls already sent still land.
                let id = *nodes.keys().nth(rng.usize(..nodes.len())).unwrap();
                let (node, worker) = nodes.remove(&id).unwrap();
                node.rounds.abort();
                worker.abort();
            }
            1 if nodes.len() < 4 => {
                nodes.insert(next, spawn(next, &mut rng));
                next += 1;
            }
            _ => {}
        }
    }
    net.faulty.store(false, Ordering::SeqCst);
    tokio::time::sleep(SETTINGS.lease * 2).await;
    for (node, worker) in nodes.into_values() {
        node.rounds.abort();
        worker.abort();
    }
    // Calls sent before the end land within 8 s.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let mut total = 0;
    for p in 0..SETTINGS.partitions {
        let reader = open(&link, Arc::new(NoOne), p).await.unwrap();
        for copy in acked.published.get(&p).into_iter().flatten() {
            let found = reader.task(*copy).await.unwrap();
            let completed = |t: &interq::model::Task, worker: &WorkerId| {
                t.state == TaskState::Completed && t.worker_id == Some(*worker)
            };
            // Finished copies past the queue's retention are swept.
            match (acked.completed.get(copy), acked.finishing.get(copy)) {
                (Some(worker), _) => assert!(
                    found.as_ref().is_none_or(|t| completed(t, worker)),
                    "seed {seed}: completed {copy}: {found:?}"
                ),
                // Its completion took effect, or it did not.
                (None, Some(worker)) => assert!(
                    found
                        .as_ref()
                        .is_none_or(|t| t.state != TaskState::Completed || completed(t, worker)),
                    "seed {seed}: completing {copy}: {found:?}"
                ),
                (None, None) => {
                    assert!(
                    found.as_ref().is_some_and(|t| t.state != TaskState::Completed),
                    "seed {seed}: partition {p}: acknowledged publish {copy} is lost: {found:?}"
                )
                }
            }
            total += 1;
        }
    }
    assert!(
        total > 0 && !acked.completed.is_empty(),
        "seed {seed}: {total} published, {} completed",
        acked.completed.len()
    );
}

#[test]
fn many_seeds_of_owners_changing_under_faults_lose_nothing_and_hand_out_nothing_twice() {
    for seed in 0..seeds() / 2 {
        paused().block_on(simulate(seed));
    }
}

/// Where a former owner's entry in flight lands, against the next owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lands {
    /// Before the next owner takes the partition.
    BeforeTakeover,
    /// After the next owner read the log in, before its first change.
    AfterOpen,
    /// After the next owner's first change read the log, before it wrote.
    BetweenReadAndWrite,
    /// After the next owner's first entry.
    AfterWrite,
}

/// The former owner's entry, held back until `open`; `landed` once it is
/// in the bucket (or refused).
#[derive(Debug)]
struct Gate {
    open: tokio::sync::watch::Sender<bool>,
    landed: tokio::sync::watch::Sender<bool>,
}

impl Gate {
    async fn release(&self) {
        self.open.send_replace(true);
        self.landed.subscribe().wait_for(|l| *l).await.unwrap();
    }
}

/// A node's link, with the gate: the former owner's holds its entries back
/// once `holding`; the next owner's, when `armed`, releases the held entry
/// just before its own first entry's insert.
#[derive(Debug)]
struct Gated {
    link: Link,
    gate: Arc<Gate>,
    holding: std::sync::atomic::AtomicBool,
    armed: std::sync::atomic::AtomicBool,
}

impl Gated {
    fn new(net: &Arc<Net>, gate: &Arc<Gate>) -> Arc<Self> {
        Arc::new(Self {
            link: Link(Arc::clone(net)),
            gate: Arc::clone(gate),
            holding: false.into(),
            armed: false.into(),
        })
    }
}

impl Kv for Gated {
    async fn get(&self, name: &str) -> Result<Option<(Vec<u8>, u64)>, StoreError> {
        self.link.get(name).await
    }

    async fn insert(
        &self,
        name: &str,
        bytes: &[u8],
        expiry: Option<Duration>,
        durable: bool,
    ) -> Result<Option<u64>, StoreError> {
        let entry = name.contains("log::");
        if entry && self.armed.swap(false, Ordering::SeqCst) {
            self.gate.release().await;
        }
        if !(entry && self.holding.load(Ordering::SeqCst)) {
            return self.link.insert(name, bytes, expiry, durable).await;
        }
        let mut open = self.gate.open.subscribe();
        open.wait_for(|o| *o).await.unwrap();
        let landed = self.link.insert(name, bytes, expiry, durable).await;
        self.gate.landed.send_replace(true);
        landed
    }

    async fn upsert(
        &self,
        name: &str,
        bytes: &[u8],
        expiry: Option<Duration>,
        durable: bool,
    ) -> Result<(), StoreError> {
        self.link.upsert(name, bytes, expiry, durable).await
    }

    async fn replace(
        &self,
        name: &str,
        bytes: &[u8],
        cas: u64,
        expiry: Option<Duration>,
        durable: bool,
    ) -> Result<Option<u64>, StoreError> {
        self.link.replace(name, bytes, cas, expiry, durable).await
    }

    async fn remove(&self, name: &str, cas: Option<u64>) -> Result<(), StoreError> {
        self.link.remove(name, cas).await
    }

    async fn touch(&self, name: &str, after: Duration) -> Result<(), StoreError> {
        self.link.touch(name, after).await
    }
}

/// An owner stalls with an entry in flight and loses its lease; the entry
/// lands as `lands` says. What either node acknowledged is in the log,
/// what neither did is not, and the next owner's state is the log's:
/// whether the former owner's publish was acknowledged, and each of the
/// next owner's five.
async fn a_late_entry_of_a_former_owner(lands: Lands) -> (bool, Vec<bool>) {
    let net = calm_net();
    let mut nodes = vec![start(&net, 0, 1.0), start(&net, 1, 1.0)];
    let all: Vec<_> = nodes.iter().map(|n| Arc::clone(&n.ownership)).collect();
    settle(&all, &[6, 6]).await;
    let p = nodes[1].ownership.owned()[0];
    let gate = Arc::new(Gate {
        open: tokio::sync::watch::channel(false).0,
        landed: tokio::sync::watch::channel(false).0,
    });
    let (theirs, ours) = (Gated::new(&net, &gate), Gated::new(&net, &gate));
    let former = open_on(&theirs, &nodes[1].ownership, p).await;
    assert_eq!(publish(&former, 0..10).await.len(), 10);
    theirs.holding.store(true, Ordering::SeqCst);
    // It stalls: its rounds stop, its publish is on its way.
    let stalled = nodes.pop().unwrap();
    stalled.rounds.abort();
    let in_flight = tokio::spawn(async move { !publish(&former, 10..11).await.is_empty() });
    let next = Arc::clone(&nodes[0].ownership);
    while stalled.ownership.tenure(p).is_some() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if lands == Lands::BeforeTakeover {
        assert!(next.tenure(p).is_none());
        gate.release().await;
    }
    while next.tenure(p).is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let on_next = open_on(&ours, &next, p).await;
    match lands {
        Lands::AfterOpen => gate.release().await,
        Lands::BetweenReadAndWrite => ours.armed.store(true, Ordering::SeqCst),
        _ => {}
    }
    let mut acked = Vec::new();
    for n in 20..25 {
        acked.push(!publish(&on_next, n..n + 1).await.is_empty());
        if lands == Lands::AfterWrite && n == 20 {
            gate.release().await;
        }
    }
    let former_acked = in_flight.await.unwrap();
    let link = Arc::new(Link(Arc::clone(&net)));
    let reader = open(&link, Arc::new(NoOne), p).await.unwrap();
    let ready = in_state(&reader, TaskState::Ready).await;
    let number = |id: &TaskId| (0..30).find(|n| task(*n, 0, None, Vec::new(), T0).task_id == *id);
    let mut found: Vec<u64> = ready.iter().filter_map(number).collect();
    found.sort();
    let mut expected: Vec<u64> = (0..10).collect();
    if former_acked {
        expected.push(10);
    }
    expected.extend((20..25).filter(|n| acked[(*n - 20) as usize]));
    assert_eq!(
        found, expected,
        "{lands:?}: the former owner's publish acknowledged: {former_acked}; the next's: {acked:?}"
    );
    assert_eq!(
        in_state(&on_next, TaskState::Ready).await,
        ready,
        "{lands:?}"
    );
    nodes[0].rounds.abort();
    (former_acked, acked)
}

async fn open_on(kv: &Arc<Gated>, owner: &Arc<Ownership<Skewed>>, p: u32) -> Part<Gated> {
    open(kv, Arc::clone(owner) as Arc<dyn Tenures>, p)
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_former_owners_late_entry_is_either_read_by_the_next_owner_or_refused() {
    for lands in [Lands::BeforeTakeover, Lands::AfterOpen] {
        let (former, next) = a_late_entry_of_a_former_owner(lands).await;
        assert!(
            former && next.iter().all(|a| *a),
            "{lands:?}: {former} {next:?}"
        );
    }
    // The next owner's first entry finds the late one in its place: that
    // change is refused, and the next owner reads its state back.
    let (former, next) = a_late_entry_of_a_former_owner(Lands::BetweenReadAndWrite).await;
    assert!(former, "the late entry landed first");
    assert!(!next[0] && next[1..].iter().all(|a| *a), "{next:?}");
    let (former, next) = a_late_entry_of_a_former_owner(Lands::AfterWrite).await;
    assert!(!former && next.iter().all(|a| *a), "{former} {next:?}");
}

/// Every node, whatever built it, puts a queue in the same partition: the
/// hash is pinned here (FNV-1a, worked out apart from the code). And queues
/// spread about evenly.
#[test]
fn a_queue_is_in_the_same_partition_on_every_node_and_queues_spread_evenly() {
    let q = |s: &str| interq::model::QueueName::parse(s).unwrap();
    let pinned: Vec<u32> = ["a", "b", "c", "a.b.c"]
        .iter()
        .map(|s| partition_of(&q(s), 16))
        .collect();
    assert_eq!(pinned, PINNED);
    assert_eq!(partition_of(&q("emails"), 1), 0);
    let mut counts = [0u32; 16];
    for i in 0..16_000 {
        counts[partition_of(&q(&format!("queue-{i}")), 16) as usize] += 1;
    }
    let (low, high) = (counts.iter().min().unwrap(), counts.iter().max().unwrap());
    assert!(*low > 850 && *high < 1_150, "{counts:?}");
}

const PINNED: [u32; 4] = [12, 5, 2, 15];

/// A node serves a queue when it owns the queue's partition, refuses it
/// otherwise, and lets go of a partition's state once it no longer owns it;
/// a killed owner's queue is served by the next with what it acknowledged.
#[tokio::test(start_paused = true)]
async fn a_node_serves_the_queues_of_its_partitions_and_only_those() {
    let net = calm_net();
    let mut nodes = vec![start(&net, 0, 1.0), start(&net, 1, 1.0)];
    let all: Vec<_> = nodes.iter().map(|n| Arc::clone(&n.ownership)).collect();
    settle(&all, &[6, 6]).await;
    let p = partition_of(&queue(), SETTINGS.partitions);
    // The owner of queue q's partition goes last, to be killed.
    if nodes[0].ownership.tenure(p).is_some() {
        nodes.swap(0, 1);
    }
    let link = Arc::new(Link(Arc::clone(&net)));
    let serve = |o: &Arc<Ownership<Skewed>>| {
        OwnedPartitions::new(
            Arc::clone(&link),
            CouchbaseSettings::default(),
            Retention::default(),
            Arc::clone(o),
            Arc::new(interq::broker::clock::SystemClock),
        )
    };
    let (other, owner) = (serve(&nodes[0].ownership), serve(&nodes[1].ownership));
    let on_owner = owner.for_queue(&queue()).await.unwrap();
    assert_eq!(publish(&*on_owner, 0..20).await.len(), 20);
    assert_eq!(owner.serving(), vec![p]);
    let refused = other.for_queue(&queue()).await.unwrap_err();
    assert!(
        matches!(&refused, StoreError::Unavailable(m) if m.contains(&format!("partition {p} "))),
        "{refused:?}"
    );
    assert!(
        other.serving().is_empty(),
        "a refused queue's state is not read"
    );

    let killed = nodes.pop().unwrap();
    killed.rounds.abort();
    drop(on_owner);
    while nodes[0].ownership.tenure(p).is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let on_other = other.for_queue(&queue()).await.unwrap();
    assert_eq!(in_state(&on_other, TaskState::Ready).await.len(), 20);
    assert_eq!(other.serving(), vec![p]);
    // The killed node's trust ran out first: it holds nothing.
    assert!(owner.serving().is_empty());
    assert!(owner.for_queue(&queue()).await.is_err());
    nodes[0].rounds.abort();
}
