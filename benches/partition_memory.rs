//! What one node holds in memory for waiting tasks: on the shared log,
//! where every node holds the whole state, and on partition logs, where a
//! node holds the partitions it owns. Tasks are published through the
//! broker onto a bucket in memory; then each node's state is read back
//! from the bucket alone, and the bytes it keeps allocated are counted by
//! this binary's allocator (the bucket's own documents are not counted).
//!
//! `cargo bench --bench partition_memory -- [--tasks N] [--nodes 3]`

use std::alloc::System;
use std::sync::Arc;
use std::time::Duration;

use interq::broker::clock::SystemClock;
use interq::broker::{Broker, BrokerSettings};
use interq::model::{NewTask, QueueName};
use interq::store::couchbase::partitions::{LeaseSettings, Ownership, Tenures, TokioClock};
use interq::store::couchbase::{CouchbaseSettings, MemoryBucket};
use interq::store::engine::{Engine, Retention};
use interq::store::Store;
use stats_alloc::{StatsAlloc, INSTRUMENTED_SYSTEM};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated and not yet freed, by anyone in this process.
fn live() -> i64 {
    let stats = ALLOCATOR.stats();
    stats.bytes_allocated as i64 - stats.bytes_deallocated as i64 + stats.bytes_reallocated as i64
}

const BATCH: u64 = 1_000;

fn arg(name: &str) -> Option<u64> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
}

/// Publishes `tasks` waiting tasks on `store` through a broker.
async fn fill(store: Arc<dyn Store>, tasks: u64) {
    let broker = Broker::start(store, Arc::new(SystemClock), BrokerSettings::default())
        .await
        .expect("a broker");
    let queue = QueueName::parse("q").expect("a name");
    broker
        .set_interests(queue, &serde_json::json!("*"))
        .await
        .expect("interests");
    let mut sent = 0;
    while sent < tasks {
        let n = (tasks - sent).min(BATCH);
        let batch = (sent..sent + n)
            .map(|k| NewTask {
                publisher: "bench".into(),
                data: serde_json::json!({"n": k})
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                ..NewTask::default()
            })
            .collect();
        broker.publish(batch).await.expect("a publish");
        sent += n;
    }
    broker.store().flush().await.expect("a flush");
    broker.store().close();
}

/// The bytes a store keeps once `open` has read it from the bucket.
async fn held<S, F>(open: F) -> (S, i64)
where
    F: std::future::Future<Output = S>,
{
    let before = live();
    let store = open.await;
    // Background work started by the read (none should keep memory).
    tokio::time::sleep(Duration::from_millis(200)).await;
    (store, live() - before)
}

fn row(what: &str, node: usize, held: u64, bytes: i64) {
    println!(
        "| {what} | {node} | {held} | {:.1} | {:.0} |",
        bytes as f64 / f64::from(1 << 20),
        bytes as f64 / held.max(1) as f64
    );
}

fn main() {
    let tasks = arg("--tasks").unwrap_or(1_000_000);
    let nodes = arg("--nodes").unwrap_or(3).max(1) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    println!("{tasks} waiting tasks over {nodes} nodes, each node read back from the bucket");
    println!("| Log | Node | Waiting tasks it holds | MiB it holds | Bytes per task |");
    println!("| --- | --- | --- | --- | --- |");
    let no_publish_log = Retention {
        replay_keep_ms: 0,
        ..Retention::default()
    };
    for (retention, with) in [
        (Retention::default(), "publish log"),
        (no_publish_log, "no publish log"),
    ] {
        runtime.block_on(shared(tasks, retention, with));
        runtime.block_on(partitioned(tasks, nodes, retention, with));
    }
}

/// One node of the shared log, holding every task.
async fn shared(tasks: u64, retention: Retention, with: &str) {
    let bucket = MemoryBucket::new();
    let settings = CouchbaseSettings::default();
    let store = Engine::open_shared(Arc::clone(&bucket), settings.clone(), retention)
        .await
        .expect("a node");
    fill(Arc::new(store), tasks).await;
    let (node, bytes) = held(async {
        Engine::open_shared(Arc::clone(&bucket), settings.clone(), retention)
            .await
            .expect("a node")
    })
    .await;
    row(&format!("shared, {with} (every node)"), 1, tasks, bytes);
    drop(node);
}

/// `nodes` nodes, each owning one partition of as many, with its share.
async fn partitioned(tasks: u64, nodes: usize, retention: Retention, with: &str) {
    let bucket = Arc::new(MemoryBucket::new());
    let settings = CouchbaseSettings::default();
    let leases = LeaseSettings {
        partitions: nodes as u32,
        lease: Duration::from_secs(60),
    };
    let owners: Vec<Arc<Ownership>> = (0..nodes)
        .map(|i| Arc::new(Ownership::new(format!("node-{i}"), leases, TokioClock)))
        .collect();
    // Rounds until each holds one partition (a long lease: no renewal is
    // needed while this runs).
    while owners.iter().any(|o| o.owned().len() != 1) {
        for o in &owners {
            o.round(&*bucket).await.expect("a round");
        }
    }
    let open = |o: &Arc<Ownership>| {
        let tenures = Arc::clone(o) as Arc<dyn Tenures>;
        let p = o.owned()[0];
        let bucket = Arc::clone(&bucket);
        let settings = settings.clone();
        async move {
            Engine::open_partition(bucket, settings, retention, tenures, p)
                .await
                .expect("a partition's engine")
        }
    };
    let share = |i: usize| tasks / nodes as u64 + u64::from((i as u64) < tasks % nodes as u64);
    for (i, o) in owners.iter().enumerate() {
        fill(Arc::new(open(o).await), share(i)).await;
    }
    for (i, o) in owners.iter().enumerate() {
        let (node, bytes) = held(open(o)).await;
        row(
            &format!("partition logs, {with} (its own partition)"),
            i + 1,
            share(i),
            bytes,
        );
        drop(node);
    }
}
