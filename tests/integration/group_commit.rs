//! Group commit on the Couchbase log (`store::couchbase::group`), over a
//! bucket in memory whose every call takes a round trip's time (on tokio's
//! paused clock, so that the tests wait for none of it): a node under load
//! writes many changes per entry and answers each once its entry exists;
//! an entry that fails fails those after it, and nothing acknowledged is
//! lost; nodes on one bucket hand out every copy once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use interq::model::{Counters, Lane, Page, TaskId, TaskState, WorkerId};
use interq::store::couchbase::{CouchbaseLog, CouchbaseSettings, MemoryBucket};
use interq::store::engine::{Engine, Retention};
use interq::store::Store;

use crate::simulation::{queue, task, T0};

type Node = Engine<CouchbaseLog<Arc<MemoryBucket>>>;

/// A round trip to the bucket.
const TRIP: Duration = Duration::from_millis(1);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap()
}

/// A bucket whose every call takes a round trip.
fn slow_bucket() -> Arc<MemoryBucket> {
    let bucket = MemoryBucket::new();
    bucket.set_delay(TRIP);
    bucket
}

async fn node(bucket: &Arc<MemoryBucket>) -> Node {
    Engine::open_shared(
        Arc::clone(bucket),
        CouchbaseSettings::default(),
        Retention::default(),
    )
    .await
    .unwrap()
}

/// Publishes `first`, then `then` once `first`'s entry is being written
/// (its payload write has begun): the ones acknowledged of each.
async fn publish_while_writing(
    bucket: &MemoryBucket,
    node: &Node,
    first: std::ops::Range<u64>,
    then: std::ops::Range<u64>,
) -> (Vec<TaskId>, Vec<TaskId>) {
    let payloads = bucket.calls_to("payload");
    tokio::join!(publish(node, first), async {
        while bucket.calls_to("payload") == payloads {
            tokio::time::sleep(TRIP / 10).await;
        }
        publish(node, then).await
    })
}

/// Publishes `ns` on `node`, all at once: the ones it acknowledged.
pub(crate) async fn publish(node: &impl Store, ns: std::ops::Range<u64>) -> Vec<TaskId> {
    let answers = join_all(ns.map(|n| async move {
        let t = task(n, 0, None, Vec::new(), T0);
        let id = t.task_id;
        node.enqueue(vec![t], Counters::default())
            .await
            .ok()
            .map(|_| id)
    }))
    .await;
    answers.into_iter().flatten().collect()
}

async fn ready(node: &Node) -> HashSet<TaskId> {
    let page = Page {
        offset: 0,
        limit: 100_000,
    };
    node.list_tasks(Some(&queue()), TaskState::Ready, &Default::default(), page)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.task_id)
        .collect()
}

#[test]
fn a_node_under_load_writes_many_changes_per_entry() {
    runtime().block_on(async {
        let bucket = slow_bucket();
        let a = node(&bucket).await;
        let before = a.stats().commits;
        let acked = publish(&a, 0..300).await;
        assert_eq!(acked.len(), 300);
        let entries = a.stats().commits - before;
        assert!(
            entries <= 30,
            "300 publishes at once took {entries} entries"
        );
        // Another node reads every one back from the bucket alone.
        let b = node(&bucket).await;
        let expected: HashSet<TaskId> = acked.into_iter().collect();
        assert_eq!(ready(&b).await, expected);
        assert_eq!(ready(&a).await, expected);
    });
}

#[test]
fn one_at_a_time_each_change_is_its_own_entry() {
    // The control for the figure above: with nothing waiting there is
    // nothing to group, and each change still costs one entry.
    runtime().block_on(async {
        let bucket = slow_bucket();
        let a = node(&bucket).await;
        let before = a.stats().commits;
        for n in 0..20 {
            assert_eq!(publish(&a, n..n + 1).await.len(), 1);
        }
        assert_eq!(a.stats().commits - before, 20);
    });
}

/// A publish is written alone while two more, computed on top of it, wait in
/// the next entry; its payload's write fails before it took effect. All
/// three fail: the next entry is never written after one that does not
/// exist (a node reading the log would stop at the gap, and the two would
/// be lost although acknowledged). The node then reads the log back and
/// takes changes again.
#[test]
fn an_entry_that_fails_fails_the_entry_computed_on_it() {
    runtime().block_on(async {
        let bucket = slow_bucket();
        let a = node(&bucket).await;
        a.flush().await.unwrap();
        bucket.fail_call_to("payload::", 0, false);
        let entries = a.stats().commits;
        let (first, then) = publish_while_writing(&bucket, &a, 0..1, 1..3).await;
        assert_eq!((first.len(), then.len()), (0, 0), "none acknowledged");
        assert_eq!(a.stats().commits, entries, "no entry written");
        bucket.heal();
        a.flush().await.unwrap();
        assert!(ready(&a).await.is_empty());
        let b = node(&bucket).await;
        assert!(ready(&b).await.is_empty());
        let acked = publish(&a, 3..6).await;
        assert_eq!(acked.len(), 3);
        b.flush().await.unwrap();
        assert_eq!(ready(&b).await, acked.into_iter().collect());
    });
}

/// Seeds of three nodes publishing at once, then claiming at once, one
/// bucket call of each phase failing (before or after it took effect), over
/// a bucket whose calls take 1-3 ms (so calls land in any order).
/// Every acknowledged publish is on every node and on a node started
/// afterwards; no copy is handed to two workers; every copy a worker was
/// given is running under that worker.
#[test]
fn nodes_grouping_on_one_bucket_lose_nothing_acknowledged_and_hand_out_each_copy_once() {
    let seeds: u64 = std::env::var("INTERQ_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    for seed in 0..seeds {
        runtime().block_on(three_nodes(seed));
    }
}

/// One call of the phase to come fails: any call, or one on an entry, a
/// payload or the lock (calls on the lock outnumber the others many times,
/// as waiting nodes poll it), or the write of an entry (which may leave the
/// entry after it, in flight, a stray).
fn plan_a_fault(bucket: &MemoryBucket, rng: &mut fastrand::Rng) {
    let which = rng.usize(..5);
    if which == 4 {
        bucket.fail_insert_to("log::", rng.u32(..20), rng.bool());
        return;
    }
    let (prefix, within) = [("", 600), ("log::", 60), ("payload::", 240), ("lock", 300)][which];
    bucket.fail_call_to(prefix, rng.u32(..within), rng.bool());
}

async fn three_nodes(seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let bucket = slow_bucket();
    // Calls take 1-3 ms, so writes sent together land in any order.
    bucket.set_jitter(2 * TRIP, seed);
    let nodes = [
        node(&bucket).await,
        node(&bucket).await,
        node(&bucket).await,
    ];
    plan_a_fault(&bucket, &mut rng);
    // On each node eight publishers, each publishing ten in a row, the
    // first after a pause of its own: a load that keeps an entry open while
    // the one before it is written.
    let pauses: Vec<u64> = (0..24).map(|_| rng.u64(..3000)).collect();
    let pauses = &pauses;
    let acked: Vec<TaskId> = join_all(nodes.iter().enumerate().flat_map(|(i, n)| {
        (0..8u64).map(move |p| async move {
            let mut acked = Vec::new();
            let pause = pauses[i * 8 + p as usize];
            tokio::time::sleep(Duration::from_micros(pause)).await;
            for k in 0..10 {
                let first = i as u64 * 1000 + p * 10 + k;
                acked.extend(publish(n, first..first + 1).await);
            }
            acked
        })
    }))
    .await
    .into_iter()
    .flatten()
    .collect();
    bucket.heal();
    for n in &nodes {
        n.flush()
            .await
            .unwrap_or_else(|e| panic!("seed {seed}: a node did not recover: {e}"));
    }
    let fresh = node(&bucket).await;
    for (i, n) in nodes.iter().chain([&fresh]).enumerate() {
        let known = ready(n).await;
        for id in &acked {
            assert!(known.contains(id), "seed {seed}: node {i} lost {id}");
        }
    }
    // Claims from every node at once, five workers each, until none is left.
    plan_a_fault(&bucket, &mut rng);
    let lanes = [Lane::Queue(queue())];
    let lanes = &lanes;
    let given: Vec<(WorkerId, TaskId)> = join_all(nodes.iter().enumerate().flat_map(|(i, n)| {
        (0..5u8).map(move |w| {
            let worker = WorkerId::from_bytes([i as u8 * 10 + w + 1; 16]);
            async move {
                let mut got = Vec::new();
                for _ in 0..40 {
                    match n.claim(worker, lanes, T0, 3).await {
                        Ok(ts) if ts.is_empty() => break,
                        Ok(ts) => got.extend(ts.into_iter().map(|t| (worker, t.task_id))),
                        Err(_) => {}
                    }
                }
                got
            }
        })
    }))
    .await
    .into_iter()
    .flatten()
    .collect();
    bucket.heal();
    let mut once = HashSet::new();
    for (_, id) in &given {
        assert!(once.insert(*id), "seed {seed}: {id} handed out twice");
    }
    let fresh = node(&bucket).await;
    for (worker, id) in &given {
        let t = fresh.task(*id).await.unwrap().unwrap();
        assert_eq!(t.state, TaskState::Running, "seed {seed}: {id}");
        assert_eq!(t.worker_id, Some(*worker), "seed {seed}: {id}");
    }
    for id in &acked {
        assert!(
            fresh.task(*id).await.unwrap().is_some(),
            "seed {seed}: {id} lost"
        );
    }
}

/// Appends to one copy's log, all at once on one node: each reads the page
/// the log ends in, which the append before it may still be writing beside
/// its entry. Every append lands, whole and once, and another node reads the
/// same log from the bucket.
#[test]
fn appends_at_once_to_one_log_each_land_once() {
    runtime().block_on(appends_at_once(slow_bucket()));
}

/// The same over a bucket whose calls take 1-9 ms, so that writes sent one
/// after another land in any order: two entries that rewrite the same page
/// of a log (the page it ends in) must not be in flight at once, or the
/// older page may land last and cut the log short (it did: 4 lines of 12).
#[test]
fn appends_at_once_over_a_network_that_reorders_calls_each_land_once() {
    for seed in 0..20 {
        let bucket = slow_bucket();
        bucket.set_jitter(8 * TRIP, seed);
        runtime().block_on(appends_at_once(bucket));
    }
}

async fn appends_at_once(bucket: Arc<MemoryBucket>) {
    {
        let a = node(&bucket).await;
        let [id] = publish(&a, 0..1).await[..] else {
            panic!("one publish")
        };
        let w = WorkerId::new();
        let got = a.claim(w, &[Lane::Queue(queue())], T0, 1).await.unwrap();
        assert_eq!(got.len(), 1);
        let lines: Vec<String> = (0..12).map(|i| format!("line {i}\n")).collect();
        // A third of a round trip apart: several entries, each appending
        // to the page the one before it may still be writing.
        let a = &a;
        let answers = join_all(lines.iter().enumerate().map(|(i, l)| async move {
            tokio::time::sleep(TRIP * i as u32 / 3).await;
            a.append_log(id, w, l.clone().into_bytes(), T0, 0).await
        }))
        .await;
        for answer in &answers {
            assert!(answer.is_ok(), "an append failed: {answer:?}");
        }
        let b = node(&bucket).await;
        for n in [a, &b] {
            let log = n.task_log(id, None, 1 << 20).await.unwrap().unwrap();
            let text = String::from_utf8(log.text).unwrap();
            let mut got: Vec<&str> = text.split_inclusive('\n').collect();
            got.sort_unstable();
            let mut want: Vec<&str> = lines.iter().map(String::as_str).collect();
            want.sort_unstable();
            assert_eq!(got, want);
        }
    }
}

/// A publish dropped by its caller while its entry is written (a client that
/// hung up): the entry is written all the same, and the copy is offered on
/// the node that wrote it, not only on the others.
#[test]
fn a_publish_dropped_while_its_entry_is_written_is_offered_on_its_node() {
    runtime().block_on(async {
        let bucket = slow_bucket();
        let a = node(&bucket).await;
        a.flush().await.unwrap();
        let t = task(0, 0, None, Vec::new(), T0);
        let id = t.task_id;
        let dropped = tokio::time::timeout(TRIP / 2, a.enqueue(vec![t], Counters::default())).await;
        assert!(dropped.is_err(), "the publish was still being written");
        a.flush().await.unwrap();
        let b = node(&bucket).await;
        assert_eq!(ready(&b).await, HashSet::from([id]));
        assert_eq!(ready(&a).await, HashSet::from([id]));
        let w = WorkerId::new();
        let got = a.claim(w, &[Lane::Queue(queue())], T0, 10).await.unwrap();
        assert_eq!(got.iter().map(|t| t.task_id).collect::<Vec<_>>(), vec![id]);
    });
}

/// The last entry in the bucket.
fn head(bucket: &MemoryBucket) -> u64 {
    bucket
        .names()
        .iter()
        .filter_map(|n| n.strip_prefix("log::")?.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
}

/// A stray entry at `seq`: one a node wrote while the entry before it,
/// written at the same time, failed. It names that entry, which is not the
/// one the bucket holds there.
async fn put_stray(bucket: &Arc<MemoryBucket>, seq: u64) {
    use interq::store::couchbase::kv::Kv;
    use interq::store::engine::{Batch, Op};
    let stray = Batch {
        ops: vec![
            Op::Link { prev: 7, this: 9 },
            Op::PutInterests("stray".into(), b"\"*\"".to_vec()),
        ],
        counters: Counters::default(),
    };
    let bytes = postcard::to_stdvec(&stray).unwrap();
    let name = format!("log::{seq}");
    assert!(bucket
        .insert(&name, &bytes, None, true)
        .await
        .unwrap()
        .is_some());
}

async fn queues_of(node: &Node) -> Vec<String> {
    let mut names: Vec<String> = node
        .interests()
        .await
        .unwrap()
        .into_iter()
        .map(|(q, _)| q.to_string())
        .collect();
    names.sort();
    names
}

/// A node writes its next entry while the last is in flight, so an entry
/// may land after one that failed. Such a stray is never read, whether
/// the gap before it is filled or not, and the node that next writes its
/// place replaces it. (With every entry taken as the successor of the one
/// before, as before entries named it, nodes B and C apply the stray.)
#[test]
fn an_entry_written_after_one_that_never_was_is_never_read() {
    runtime().block_on(async {
        let bucket = slow_bucket();
        let a = node(&bucket).await;
        let q = |name: &str| interq::model::QueueName::parse(name).unwrap();
        a.put_interests(&q("one"), &serde_json::json!("*"))
            .await
            .unwrap();
        a.flush().await.unwrap();
        // Right after the head: the stray's predecessor was replaced since.
        put_stray(&bucket, head(&bucket) + 1).await;
        let b = node(&bucket).await;
        assert_eq!(queues_of(&b).await, ["one"], "a new node read the stray");
        a.put_interests(&q("two"), &serde_json::json!("*"))
            .await
            .unwrap();
        a.flush().await.unwrap();
        assert_eq!(queues_of(&b).await, ["one", "two"]);
        // Two on: the entry before it was never written at all.
        put_stray(&bucket, head(&bucket) + 2).await;
        a.put_interests(&q("three"), &serde_json::json!("*"))
            .await
            .unwrap();
        a.flush().await.unwrap();
        assert_eq!(
            queues_of(&b).await,
            ["one", "three", "two"],
            "node B read the stray once the gap before it was filled"
        );
        a.put_interests(&q("four"), &serde_json::json!("*"))
            .await
            .unwrap();
        a.flush().await.unwrap();
        let all = ["four", "one", "three", "two"];
        assert_eq!(queues_of(&b).await, all);
        let c = node(&bucket).await;
        assert_eq!(
            queues_of(&c).await,
            all,
            "a node started since read a stray"
        );
    });
}

/// Two entries in flight, the first refused, the second landing: the
/// second is a stray. Neither is acknowledged, no node reads either, and
/// the node, once it has read its state back, writes both places anew.
#[test]
fn an_entry_that_lands_after_one_that_failed_is_a_stray_nobody_reads() {
    runtime().block_on(async {
        let bucket = slow_bucket();
        let a = node(&bucket).await;
        assert_eq!(publish(&a, 0..1).await.len(), 1);
        let first = head(&bucket) + 1;
        bucket.fail_call_to(&format!("log::{first}"), 0, false);
        let (failed, stray) = publish_while_writing(&bucket, &a, 1..2, 2..3).await;
        assert_eq!((failed.len(), stray.len()), (0, 0), "none acknowledged");
        let names = bucket.names();
        assert!(!names.contains(&format!("log::{first}")));
        assert!(
            names.contains(&format!("log::{}", first + 1)),
            "the second entry landed (a stray), or this test tests nothing"
        );
        bucket.heal();
        a.flush().await.unwrap();
        let b = node(&bucket).await;
        let before: HashSet<TaskId> = ready(&b).await;
        assert_eq!(before.len(), 1, "node B read the stray: {before:?}");
        // Node A writes the failed entry's place, then the stray's.
        let acked = publish(&a, 3..4).await;
        assert_eq!(acked.len(), 1);
        assert!(bucket.names().contains(&format!("log::{first}")));
        let acked = [acked, publish(&a, 4..5).await].concat();
        assert_eq!(acked.len(), 2);
        b.flush().await.unwrap();
        let after = ready(&b).await;
        assert_eq!(after.len(), 3, "node B: {after:?}");
        assert!(acked.iter().all(|id| after.contains(id)));
        let c = node(&bucket).await;
        assert_eq!(ready(&c).await, after, "a node started since");
    });
}
