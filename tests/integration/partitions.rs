//! Partition ownership over a bucket in memory: a deterministic simulation
//! of several nodes taking, extending and giving up leases while the network
//! refuses, loses and delays their calls, nodes stall, die and join, and
//! their clocks run at different rates. After every few milliseconds of
//! simulated time it checks that no partition is trusted by two nodes at
//! once; once the faults stop, that every partition has one owner and the
//! spread is even. Every run is reproducible from its seed
//! (`INTERQ_SIM_SEEDS=N` runs seeds 0..N).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use interq::store::couchbase::kv::Kv;
use interq::store::couchbase::partitions::{
    lease_doc, member_doc, Clock, LeaseSettings, Ownership, MEMBERS,
};
use interq::store::couchbase::MemoryBucket;
use interq::store::StoreError;
use tokio::time::Instant;

pub(crate) const SETTINGS: LeaseSettings = LeaseSettings {
    partitions: 12,
    lease: Duration::from_secs(6),
};

/// A node's clock, running `rate` times as fast as the bucket's.
#[derive(Debug)]
pub(crate) struct Skewed {
    origin: Instant,
    rate: f64,
}

impl Clock for Skewed {
    fn now(&self) -> Instant {
        self.origin + (Instant::now() - self.origin).mul_f64(self.rate)
    }
}

/// The network between the nodes and the bucket: while `faulty`, a call may
/// be refused, take effect with its reply lost, reach the bucket late, or be
/// answered late. A call reaches the bucket even when the node that made it
/// died meanwhile, as a request already sent would.
#[derive(Debug)]
pub(crate) struct Net {
    pub bucket: Arc<MemoryBucket>,
    pub rng: Mutex<fastrand::Rng>,
    pub faulty: AtomicBool,
}

#[derive(Debug, Clone, Copy)]
enum Fate {
    Refused,
    ReplyLost,
    Late(Duration, Duration),
}

impl Net {
    fn fate(&self) -> Fate {
        let mut rng = self.rng.lock().unwrap();
        let quick = Duration::from_micros(rng.u64(100..3_000));
        if !self.faulty.load(Ordering::SeqCst) {
            return Fate::Late(quick, Duration::ZERO);
        }
        match rng.u32(..100) {
            0..=3 => Fate::Refused,
            4..=7 => Fate::ReplyLost,
            // Past a whole lease on the way there, or back.
            8..=11 => Fate::Late(Duration::from_millis(rng.u64(0..8_000)), quick),
            12..=15 => Fate::Late(quick, Duration::from_millis(rng.u64(0..8_000))),
            _ => Fate::Late(quick, quick),
        }
    }

    async fn call<T: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce(
                Arc<MemoryBucket>,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send>,
            > + Send
            + 'static,
    ) -> Result<T, StoreError> {
        let fate = self.fate();
        if let Fate::Refused = fate {
            return Err(StoreError::Unavailable(format!("{name}: refused")));
        }
        let (there, back) = match fate {
            Fate::Late(there, back) => (there, back),
            _ => (Duration::from_micros(500), Duration::ZERO),
        };
        let bucket = Arc::clone(&self.bucket);
        let sent = tokio::spawn(async move {
            tokio::time::sleep(there).await;
            f(bucket).await
        });
        let answer = sent.await.expect("the call's task ends");
        tokio::time::sleep(back).await;
        match fate {
            Fate::ReplyLost => Err(StoreError::Unavailable(format!("{name}: reply lost"))),
            _ => answer,
        }
    }
}

/// One node's link to the bucket.
#[derive(Debug, Clone)]
pub(crate) struct Link(pub Arc<Net>);

impl Kv for Link {
    async fn get(&self, name: &str) -> Result<Option<(Vec<u8>, u64)>, StoreError> {
        let n = name.to_owned();
        self.0
            .call(name, move |b| Box::pin(async move { b.get(&n).await }))
            .await
    }

    async fn insert(
        &self,
        name: &str,
        bytes: &[u8],
        expiry: Option<Duration>,
        durable: bool,
    ) -> Result<Option<u64>, StoreError> {
        let (n, bytes) = (name.to_owned(), bytes.to_vec());
        self.0
            .call(name, move |b| {
                Box::pin(async move { b.insert(&n, &bytes, expiry, durable).await })
            })
            .await
    }

    async fn upsert(
        &self,
        name: &str,
        bytes: &[u8],
        expiry: Option<Duration>,
        durable: bool,
    ) -> Result<(), StoreError> {
        let (n, bytes) = (name.to_owned(), bytes.to_vec());
        self.0
            .call(name, move |b| {
                Box::pin(async move { b.upsert(&n, &bytes, expiry, durable).await })
            })
            .await
    }

    async fn replace(
        &self,
        name: &str,
        bytes: &[u8],
        cas: u64,
        expiry: Option<Duration>,
        durable: bool,
    ) -> Result<Option<u64>, StoreError> {
        let (n, bytes) = (name.to_owned(), bytes.to_vec());
        self.0
            .call(name, move |b| {
                Box::pin(async move { b.replace(&n, &bytes, cas, expiry, durable).await })
            })
            .await
    }

    async fn remove(&self, name: &str, cas: Option<u64>) -> Result<(), StoreError> {
        let n = name.to_owned();
        self.0
            .call(name, move |b| {
                Box::pin(async move { b.remove(&n, cas).await })
            })
            .await
    }

    async fn touch(&self, name: &str, after: Duration) -> Result<(), StoreError> {
        let n = name.to_owned();
        self.0
            .call(name, move |b| {
                Box::pin(async move { b.touch(&n, after).await })
            })
            .await
    }
}

/// A node: its side of ownership, and the task that runs its rounds.
pub(crate) struct Node {
    pub ownership: Arc<Ownership<Skewed>>,
    pub rounds: tokio::task::JoinHandle<()>,
}

/// Starts node `id`: a round at once, then one every sixth of a lease (by
/// the bucket's clock), with a stall now and then while the network is
/// faulty.
pub(crate) fn start(net: &Arc<Net>, id: usize, rate: f64) -> Node {
    let ownership = Arc::new(Ownership::new(
        format!("node-{id}"),
        SETTINGS,
        Skewed {
            origin: Instant::now(),
            rate,
        },
    ));
    let rounds = tokio::spawn({
        let ownership = Arc::clone(&ownership);
        let link = Link(Arc::clone(net));
        let net = Arc::clone(net);
        async move {
            loop {
                let _ = ownership.round(&link).await;
                let stall = {
                    let mut rng = net.rng.lock().unwrap();
                    (net.faulty.load(Ordering::SeqCst) && rng.u32(..30) == 0)
                        .then(|| Duration::from_millis(rng.u64(0..12_000)))
                };
                tokio::time::sleep(SETTINGS.round() + stall.unwrap_or_default()).await;
            }
        }
    });
    Node { ownership, rounds }
}

/// No partition is trusted by two live nodes at once.
fn check_one_owner(seed: u64, nodes: &BTreeMap<usize, Node>) {
    let mut owner: BTreeMap<u32, usize> = BTreeMap::new();
    for (id, node) in nodes {
        for p in node.ownership.owned() {
            if let Some(other) = owner.insert(p, *id) {
                panic!("seed {seed}: partition {p} trusted by node-{other} and node-{id} at once");
            }
        }
    }
}

/// Holder of each partition by the bucket's documents.
async fn holders(bucket: &Arc<MemoryBucket>) -> BTreeMap<u32, String> {
    let mut out = BTreeMap::new();
    for p in 0..SETTINGS.partitions {
        if let Some((bytes, _)) = bucket.get(&lease_doc(p)).await.unwrap() {
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            out.insert(p, v["node"].as_str().unwrap().to_owned());
        }
    }
    out
}

async fn simulate(seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let net = Arc::new(Net {
        bucket: MemoryBucket::new(),
        rng: Mutex::new(fastrand::Rng::with_seed(seed ^ 0x9e37_79b9)),
        faulty: AtomicBool::new(true),
    });
    let mut nodes: BTreeMap<usize, Node> = BTreeMap::new();
    let mut next = 0;
    for _ in 0..rng.usize(1..=4) {
        nodes.insert(next, start(&net, next, rng.f64() * 0.2 + 0.9));
        next += 1;
    }
    let check_every = Duration::from_millis(5);
    // Under faults, nodes die, leave and join.
    let faulty_for = Duration::from_secs(rng.u64(30..90));
    let began = Instant::now();
    while began.elapsed() < faulty_for {
        tokio::time::sleep(check_every).await;
        check_one_owner(seed, &nodes);
        match rng.u32(..2_000) {
            0 if nodes.len() > 1 => {
                // Killed: its rounds stop; its leases end by themselves.
                let id = *nodes.keys().nth(rng.usize(..nodes.len())).unwrap();
                nodes.remove(&id).unwrap().rounds.abort();
            }
            1 if nodes.len() > 1 => {
                let id = *nodes.keys().nth(rng.usize(..nodes.len())).unwrap();
                // Leaves while its rounds go on, as a node at shutdown
                // does; they stop once it has left.
                let node = nodes.remove(&id).unwrap();
                let _ = node.ownership.leave(&Link(Arc::clone(&net))).await;
                node.rounds.abort();
            }
            2 if nodes.len() < 5 => {
                nodes.insert(next, start(&net, next, rng.f64() * 0.2 + 0.9));
                next += 1;
            }
            _ => {}
        }
    }
    // Calm: every call answers at once; the late ones still land.
    net.faulty.store(false, Ordering::SeqCst);
    let calm = Instant::now();
    while calm.elapsed() < SETTINGS.lease * 5 {
        tokio::time::sleep(check_every).await;
        check_one_owner(seed, &nodes);
    }
    // Each partition has one live owner, which the bucket names, and the
    // spread is even.
    let by_bucket = holders(&net.bucket).await;
    let mut counts: BTreeMap<usize, usize> = nodes.keys().map(|id| (*id, 0)).collect();
    for p in 0..SETTINGS.partitions {
        let trusted: Vec<usize> = nodes
            .iter()
            .filter(|(_, n)| n.ownership.owns(p))
            .map(|(id, _)| *id)
            .collect();
        assert_eq!(trusted.len(), 1, "seed {seed}: partition {p}: {trusted:?}");
        assert_eq!(
            by_bucket.get(&p),
            Some(&format!("node-{}", trusted[0])),
            "seed {seed}: partition {p}"
        );
        *counts.get_mut(&trusted[0]).unwrap() += 1;
    }
    let (low, high) = (
        counts.values().min().unwrap(),
        counts.values().max().unwrap(),
    );
    assert!(high - low <= 1, "seed {seed}: uneven spread {counts:?}");
    // The members list names the live nodes only.
    let (bytes, _) = net.bucket.get(MEMBERS).await.unwrap().unwrap();
    let listed: BTreeSet<String> = serde_json::from_slice(&bytes).unwrap();
    let live: BTreeSet<String> = nodes.keys().map(|id| format!("node-{id}")).collect();
    assert_eq!(listed, live, "seed {seed}");
    for node in nodes.into_values() {
        node.rounds.abort();
    }
}

pub(crate) fn seeds() -> u64 {
    std::env::var("INTERQ_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100)
}

pub(crate) fn paused() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

#[test]
fn many_seeds_never_have_two_nodes_trust_one_partition_and_settle_evenly() {
    for seed in 0..seeds() {
        paused().block_on(simulate(seed));
    }
}

/// Rounds of `nodes` until each holds its share, on a network without
/// faults: how long it took.
pub(crate) async fn settle(nodes: &[Arc<Ownership<Skewed>>], shares: &[usize]) -> Duration {
    let began = Instant::now();
    loop {
        let owned: Vec<usize> = nodes.iter().map(|n| n.owned().len()).collect();
        let mut sorted = owned.clone();
        sorted.sort();
        if sorted == shares {
            return began.elapsed();
        }
        assert!(began.elapsed() < Duration::from_secs(60), "{owned:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub(crate) fn calm_net() -> Arc<Net> {
    Arc::new(Net {
        bucket: MemoryBucket::new(),
        rng: Mutex::new(fastrand::Rng::with_seed(7)),
        faulty: AtomicBool::new(false),
    })
}

/// A killed node's partitions are served again once its leases end (6 s)
/// and a round of the others passes, and not before its trust ran out.
#[tokio::test(start_paused = true)]
async fn a_killed_nodes_partitions_are_taken_over_after_its_lease() {
    let net = calm_net();
    let nodes: Vec<Node> = (0..3).map(|id| start(&net, id, 1.0)).collect();
    let all: Vec<_> = nodes.iter().map(|n| Arc::clone(&n.ownership)).collect();
    settle(&all, &[4, 4, 4]).await;
    let mut nodes = nodes;
    let killed = nodes.pop().unwrap();
    killed.rounds.abort();
    let left: Vec<_> = nodes.iter().map(|n| Arc::clone(&n.ownership)).collect();
    let took = settle(&left, &[6, 6]).await;
    eprintln!("a killed node's partitions were taken over after {took:?}");
    assert!(
        took >= SETTINGS.trusted() && took <= SETTINGS.lease + SETTINGS.round() * 2,
        "{took:?}"
    );
    assert!(killed.ownership.owned().is_empty());
    let by_bucket = holders(&net.bucket).await;
    assert!(by_bucket.values().all(|n| n != "node-2"), "{by_bucket:?}");
}

/// A node that leaves gives its partitions up at once: the others take
/// them within two rounds, not a lease; its word that it lives is gone.
#[tokio::test(start_paused = true)]
async fn a_node_that_leaves_hands_its_partitions_over_within_rounds() {
    let net = calm_net();
    let mut nodes: Vec<Node> = (0..3).map(|id| start(&net, id, 1.0)).collect();
    let all: Vec<_> = nodes.iter().map(|n| Arc::clone(&n.ownership)).collect();
    settle(&all, &[4, 4, 4]).await;
    let leaving = nodes.pop().unwrap();
    leaving.rounds.abort();
    leaving
        .ownership
        .leave(&Link(Arc::clone(&net)))
        .await
        .unwrap();
    assert!(leaving.ownership.owned().is_empty());
    let left: Vec<_> = nodes.iter().map(|n| Arc::clone(&n.ownership)).collect();
    let took = settle(&left, &[6, 6]).await;
    eprintln!("a leaving node's partitions were taken over after {took:?}");
    assert!(took <= SETTINGS.round() * 2, "{took:?}");
    assert!(net
        .bucket
        .get(&member_doc("node-2"))
        .await
        .unwrap()
        .is_none());
    let (bytes, _) = net.bucket.get(MEMBERS).await.unwrap().unwrap();
    let listed: Vec<String> = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(listed, ["node-0", "node-1"]);
}

/// A node joining a settled cluster gets its share from the others, who
/// give up one partition a round, and the count the bucket was first used
/// with holds for a node configured otherwise.
#[tokio::test(start_paused = true)]
async fn a_joining_node_gets_its_share_and_the_buckets_count_holds() {
    let net = calm_net();
    let nodes: Vec<Node> = (0..2).map(|id| start(&net, id, 1.0)).collect();
    let mut all: Vec<_> = nodes.iter().map(|n| Arc::clone(&n.ownership)).collect();
    settle(&all, &[6, 6]).await;
    let other = Arc::new(Ownership::new(
        "node-9",
        LeaseSettings {
            partitions: 64,
            ..SETTINGS
        },
        Skewed {
            origin: Instant::now(),
            rate: 1.0,
        },
    ));
    let link = Link(Arc::clone(&net));
    let joiner = tokio::spawn({
        let other = Arc::clone(&other);
        async move {
            loop {
                other.round(&link).await.unwrap();
                tokio::time::sleep(SETTINGS.round()).await;
            }
        }
    });
    all.push(Arc::clone(&other));
    let took = settle(&all, &[4, 4, 4]).await;
    eprintln!("a joining node had its share after {took:?}");
    assert!(took <= SETTINGS.round() * 12, "{took:?}");
    let view = other.cluster();
    assert_eq!(view.partitions, 12);
    assert_eq!(view.members.len(), 3);
    assert_eq!(view.owned.len(), 4);
    assert!(view.unowned.is_empty(), "{view:?}");
    joiner.abort();
}

/// A bucket whose lease documents another node holds, read while the
/// bucket is down: the round fails and trust runs out by the clock alone.
#[tokio::test(start_paused = true)]
async fn trust_runs_out_while_the_bucket_does_not_answer() {
    let net = calm_net();
    let node = start(&net, 0, 1.0);
    settle(&[Arc::clone(&node.ownership)], &[12]).await;
    net.bucket.set_down(true);
    let down = Instant::now();
    while !node.ownership.owned().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let lost = down.elapsed();
    eprintln!("trust ran out {lost:?} after the bucket went down");
    assert!(lost <= SETTINGS.trusted(), "{lost:?}");
    net.bucket.set_down(false);
    settle(&[Arc::clone(&node.ownership)], &[12]).await;
    node.rounds.abort();
}

/// Nodes in service: their stores hold leases by themselves, show the
/// cluster in their stats, and one that leaves at shutdown hands its
/// partitions over at once.
#[tokio::test(start_paused = true)]
async fn stores_in_service_hold_leases_show_the_cluster_and_leave_at_shutdown() {
    use interq::store::couchbase::CouchbaseSettings;
    use interq::store::engine::{Engine, Retention};
    use interq::store::Store;
    let bucket = MemoryBucket::new();
    let settings = CouchbaseSettings {
        partitions: 8,
        ..CouchbaseSettings::default()
    };
    let mut stores = Vec::new();
    for _ in 0..2 {
        stores.push(
            Engine::join_shared(Arc::clone(&bucket), settings.clone(), Retention::default())
                .await
                .unwrap(),
        );
    }
    let owned = |s: &dyn Store| s.stats().cluster.unwrap().owned.len();
    let began = Instant::now();
    while stores.iter().map(|s| owned(s)).collect::<Vec<_>>() != [4, 4] {
        assert!(began.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // What a node shows of the others is what its last round read.
    let view = loop {
        let view = stores[0].stats().cluster.unwrap();
        if view.members.iter().all(|m| m.partitions.len() == 4) {
            break view;
        }
        assert!(began.elapsed() < Duration::from_secs(30), "{view:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!((view.partitions, view.lease_ms), (8, 6_000));
    assert_eq!(view.members.len(), 2);
    assert!(view.unowned.is_empty(), "{view:?}");
    let leaving = stores.pop().unwrap();
    leaving.flush().await.unwrap();
    leaving.leave().await.unwrap();
    leaving.close();
    assert_eq!(owned(&leaving), 0);
    let left = Instant::now();
    while owned(&stores[0]) != 8 {
        assert!(left.elapsed() < Duration::from_secs(3), "not handed over");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Two servers over one bucket, over real HTTP: each shows the cluster in
/// `/status?store` and `/metrics`; a task published on one is claimed on
/// the other; the one stopped gracefully hands its partitions over at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_on_one_bucket_show_the_cluster_and_hand_over_on_stop() {
    use crate::helpers::{spawn_cluster, until_spread};
    use serde_json::json;
    let bucket = MemoryBucket::new();
    let mut apps = spawn_cluster(&bucket, 2, 8).await;
    let (a, b) = (&apps[0], &apps[1]);
    until_spread(&[&a.api, &b.api], &[4, 4]).await;
    let cluster = &a.status("store").await["store"]["cluster"];
    assert_eq!(cluster["partitions"], 8);
    assert_eq!(cluster["leaseMs"], 6_000);
    assert_eq!(cluster["unowned"], json!([]));
    assert_ne!(
        cluster["node"],
        b.status("store").await["store"]["cluster"]["node"]
    );
    let metrics = a.metrics().await;
    for line in [
        "interq_cluster_members 2",
        "interq_partitions_owned 4",
        "interq_partitions_unowned 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    // One queue, served by both.
    a.put_interest("jobs", json!({"kind": "^job$"})).await.ok();
    b.advance(0.1).await;
    let published = b.publish_data(json!({"kind": "job", "n": 1})).await;
    assert_eq!(published["queues"], json!(["jobs"]));
    let worker = a.register(&["jobs"]).await;
    let claimed = a.claim(&worker).await;
    assert_eq!(claimed["data"]["n"], 1, "{claimed}");
    // Stopped, B leaves: A holds all eight within a round or two, far
    // sooner than B's leases would have run out.
    let stopped = std::time::Instant::now();
    apps.pop().unwrap().stop().await;
    let a = &apps[0];
    until_spread(&[&a.api], &[8]).await;
    let took = stopped.elapsed();
    eprintln!("a stopped node's partitions were taken over after {took:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert!(a
        .metrics()
        .await
        .lines()
        .any(|l| l == "interq_cluster_members 1"));
}

/// A store of one node shows no cluster.
#[tokio::test]
async fn an_embedded_server_shows_no_cluster() {
    let app = crate::helpers::spawn_app().await;
    let store = &app.status("store").await["store"];
    assert!(store["commits"].is_u64(), "{store}");
    assert!(store.get("cluster").is_none(), "{store}");
    assert!(!app.metrics().await.contains("interq_partitions_owned"));
}

/// What one publisher saw of one request: when it was sent (since the
/// start), how long its answer took, its status, and the ids acknowledged.
type Seen = (Duration, Duration, u16, Vec<String>);

/// A database outage of 5 s under load from two servers: every request is
/// answered promptly (503 while the bucket does not answer), both nodes
/// serve again by themselves afterwards, and every acknowledged publish is
/// claimed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_gets_prompt_503s_and_the_nodes_recover_by_themselves() {
    use crate::helpers::spawn_cluster;
    use serde_json::json;
    let bucket = MemoryBucket::new();
    let apps = spawn_cluster(&bucket, 2, 4).await;
    apps[0].put_interest("jobs", json!("*")).await.ok();
    apps[1].advance(0.1).await;
    let began = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let publishers: Vec<_> = (0..4)
        .map(|c| {
            let api = apps[c % 2].api.clone();
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut seen: Vec<Seen> = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let sent = Instant::now();
                    let answer = api
                        .client
                        .put(format!("{}/task", api.base))
                        .json(&json!({"data": {"c": c, "n": n}}))
                        .timeout(Duration::from_secs(30))
                        .send()
                        .await
                        .expect("an answer, never a hang");
                    let status = answer.status().as_u16();
                    let body: serde_json::Value = answer.json().await.expect("a JSON body");
                    let ids = match body["taskId"].as_str() {
                        Some(id) if status == 200 => vec![id.to_owned()],
                        _ => Vec::new(),
                    };
                    seen.push((sent - began, sent.elapsed(), status, ids));
                    n += 1;
                    if status != 200 {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
                seen
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    bucket.set_down(true);
    tokio::time::sleep(Duration::from_secs(5)).await;
    bucket.set_down(false);
    let up = began.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    let mut seen: Vec<(usize, Seen)> = Vec::new();
    for (c, p) in publishers.into_iter().enumerate() {
        seen.extend(p.await.unwrap().into_iter().map(|s| (c, s)));
    }
    let slowest = seen.iter().map(|(_, s)| s.1).max().unwrap();
    let statuses: BTreeSet<u16> = seen.iter().map(|(_, s)| s.2).collect();
    let refused = seen.iter().filter(|(_, s)| s.2 == 503).count();
    eprintln!(
        "{} requests, {refused} answered 503, statuses {statuses:?}, the slowest answer {slowest:?}",
        seen.len()
    );
    assert!(slowest < Duration::from_secs(3), "{slowest:?}");
    assert!(refused > 0, "the outage was not noticed");
    assert!(statuses.is_subset(&[200, 503].into()), "{statuses:?}");
    // Both nodes serve again by themselves: each publisher's requests sent
    // a second after the bucket came back are all acknowledged.
    for c in 0..4 {
        let first_ok = seen
            .iter()
            .filter(|(p, s)| *p == c && s.0 > up && s.2 == 200)
            .map(|(_, s)| s.0 - up)
            .min();
        let last_refused = seen
            .iter()
            .filter(|(p, s)| *p == c && s.0 > up && s.2 != 200)
            .map(|(_, s)| s.0 - up)
            .max();
        eprintln!("publisher {c} (node {}) served again {first_ok:?} after, last refused {last_refused:?} after", c % 2);
        let after: Vec<u16> = seen
            .iter()
            .filter(|(p, s)| *p == c && s.0 > up + Duration::from_secs(1))
            .map(|(_, s)| s.2)
            .collect();
        assert!(!after.is_empty(), "publisher {c} sent nothing after");
        assert!(after.iter().all(|s| *s == 200), "publisher {c}: {after:?}");
    }
    // Every acknowledged publish is there once.
    let acknowledged: BTreeSet<String> = seen.into_iter().flat_map(|(_, s)| s.3).collect();
    let claimed = claim_all_once(&apps[1], "jobs").await;
    let lost: Vec<_> = acknowledged.difference(&claimed).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged, {} lost",
        acknowledged.len(),
        lost.len()
    );
}

/// Claims every copy of `queue` through `app`, as a new worker: their
/// publish ids, each claimed once.
async fn claim_all_once(app: &crate::helpers::Api, queue: &str) -> BTreeSet<String> {
    let worker = app.register(&[queue]).await;
    let mut claimed = BTreeSet::new();
    loop {
        let tasks = app.claim_n(&worker, 500).await;
        if tasks.is_empty() {
            return claimed;
        }
        for t in tasks {
            let id = t["publishId"].as_str().unwrap().to_owned();
            assert!(claimed.insert(id), "claimed twice");
        }
    }
}

/// A node that leaves while one of its rounds is under way waits for it:
/// the round cannot take or extend a lease after the leases were given up.
#[tokio::test(start_paused = true)]
async fn leaving_during_a_round_leaves_no_lease_behind() {
    for head_start in [10, 50, 90, 130, 170] {
        let net = calm_net();
        let nodes: Vec<Node> = (0..2).map(|id| start(&net, id, 1.0)).collect();
        let all: Vec<_> = nodes.iter().map(|n| Arc::clone(&n.ownership)).collect();
        settle(&all, &[6, 6]).await;
        for node in &nodes {
            node.rounds.abort();
        }
        // Node 0 dies meanwhile: its leases lapse, so node 1's round would
        // take them.
        tokio::time::sleep(SETTINGS.lease).await;
        net.bucket.set_delay(Duration::from_millis(20));
        let leaving = Arc::clone(&nodes[1].ownership);
        let round = tokio::spawn({
            let (leaving, link) = (Arc::clone(&leaving), Link(Arc::clone(&net)));
            async move { leaving.round(&link).await }
        });
        tokio::time::sleep(Duration::from_millis(head_start)).await;
        leaving.leave(&Link(Arc::clone(&net))).await.unwrap();
        round.await.unwrap().unwrap();
        let by_bucket = holders(&net.bucket).await;
        assert!(by_bucket.is_empty(), "{head_start} ms: {by_bucket:?}");
        assert!(leaving.owned().is_empty());
        let listed = net
            .bucket
            .get(MEMBERS)
            .await
            .unwrap()
            .map(|(bytes, _)| serde_json::from_slice::<Vec<String>>(&bytes).unwrap());
        assert!(
            listed.iter().flatten().all(|m| m != "node-1"),
            "{head_start} ms: {listed:?}"
        );
        // Rounds after leaving do nothing.
        leaving.round(&Link(Arc::clone(&net))).await.unwrap();
        assert!(holders(&net.bucket).await.is_empty());
    }
}

/// Three servers on one bucket, on the real clock with the usual 100 ms
/// tick: an interest set on one routes on the others within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interest_set_on_one_node_routes_on_the_others_within_a_second() {
    use serde_json::json;
    let bucket = MemoryBucket::new();
    let apps = crate::helpers::spawn_cluster_with(&bucket, 3, 4, |s| {
        s.testing.manual_clock = false;
        s.tasks.tick_ms = 100;
    })
    .await;
    apps[0]
        .put_interest("mail", json!({"kind": "^mail$"}))
        .await
        .ok();
    let set = std::time::Instant::now();
    let mut routed = [None, None];
    while routed.iter().any(Option::is_none) {
        for (i, app) in apps[1..].iter().enumerate() {
            if routed[i].is_none() {
                let answer = app.publish_data(json!({"kind": "mail"})).await;
                if answer["queues"] == json!(["mail"]) {
                    routed[i] = Some(set.elapsed());
                }
            }
        }
        assert!(set.elapsed() < Duration::from_secs(5), "{routed:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("an interest set on node 0 routed on nodes 1 and 2 after {routed:?}");
    assert!(
        routed.iter().flatten().all(|t| *t < Duration::from_secs(1)),
        "{routed:?}"
    );
}

/// A third server joins two under load: it gets its share of partitions,
/// and every publish acknowledged meanwhile is claimed once, on the new
/// node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joining_under_load_gets_its_share_and_loses_nothing() {
    use crate::helpers::{spawn_cluster, until_spread, Load};
    use serde_json::json;
    let bucket = MemoryBucket::new();
    let mut apps = spawn_cluster(&bucket, 2, 8).await;
    apps[0].put_interest("jobs", json!("*")).await.ok();
    apps[1].advance(0.1).await;
    let loads: Vec<Load> = apps.iter().map(|a| Load::start(&a.api, 3, true)).collect();
    loads[0].until(200).await;
    apps.extend(spawn_cluster(&bucket, 1, 8).await);
    let joined = std::time::Instant::now();
    until_spread(&[&apps[0].api, &apps[1].api, &apps[2].api], &[2, 3, 3]).await;
    eprintln!(
        "the joining node had its share after {:?}",
        joined.elapsed()
    );
    loads[1].until(400).await;
    let mut acknowledged: BTreeSet<String> = BTreeSet::new();
    for load in loads {
        acknowledged.extend(load.stop().await);
    }
    // The new node takes in the interests at its next tick.
    apps[2].advance(0.1).await;
    let claimed = claim_all_once(&apps[2], "jobs").await;
    eprintln!(
        "{} acknowledged, {} claimed",
        acknowledged.len(),
        claimed.len()
    );
    assert!(acknowledged.len() >= 600, "{}", acknowledged.len());
    assert_eq!(acknowledged, claimed);
}
