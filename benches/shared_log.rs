//! The write path end to end with no HTTP in front: publishers publishing
//! batches through the broker, workers claiming batches and reporting each
//! batch in one step, until every task is completed. Over the embedded
//! store, and over the Couchbase log (its lock, entries and group commit)
//! on a bucket in memory whose every call waits a round trip, so that what
//! the log costs per task shows without a cluster: tasks per second, log
//! entries written, bucket calls per task.
//!
//! `cargo bench --bench shared_log -- [--tasks N] [--trips-ms 0,1,2]
//! [--nodes 1,3]`: with several nodes on one bucket, each has its own
//! publishers and workers, and workers claim what any node published.
//! Each run is then made again over partition logs: each node holds one
//! partition of as many as there are nodes and writes its log alone, its
//! clients publishing and claiming on it (`CouchbaseLog::of_partition`).
//! (tokio's timer rounds a wait up to whole milliseconds, so a round trip
//! is 0, 1, 2… ms here; a durable write to a Couchbase cluster on one
//! network is about 1 ms).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use interq::broker::clock::SystemClock;
use interq::broker::{Broker, BrokerSettings, Report};
use interq::model::{NewTask, QueueName};
use interq::store::couchbase::kv::Scoped;
use interq::store::couchbase::partitions::{LeaseSettings, Ownership, Tenures, TokioClock};
use interq::store::couchbase::{CouchbaseSettings, MemoryBucket};
use interq::store::embedded::EmbeddedStore;
use interq::store::engine::{Engine, Retention};
use interq::store::Store;

const PUBLISHERS: u64 = 4;
const WORKERS: usize = 4;
const BATCH: usize = 100;

struct Run {
    seconds: f64,
    entries: u64,
}

async fn drive(stores: Vec<Arc<dyn Store>>, tasks: u64) -> Run {
    let mut brokers = Vec::new();
    for store in stores {
        brokers.push(
            Broker::start(store, Arc::new(SystemClock), BrokerSettings::default())
                .await
                .expect("a broker"),
        );
    }
    let queue = QueueName::parse("q").expect("a name");
    let mut workers = Vec::new();
    for broker in &brokers {
        // Each partition's log has its own; on one shared log the others
        // are the same change again.
        broker
            .set_interests(queue.clone(), &serde_json::json!("*"))
            .await
            .expect("interests");
        for i in 0..WORKERS {
            let record = broker
                .register_worker(vec![queue.clone()], Vec::new(), format!("w{i}"), None)
                .await
                .expect("a worker");
            workers.push((Arc::clone(broker), record.worker_id));
        }
    }
    let commits = |brokers: &[Arc<Broker>]| -> u64 {
        brokers.iter().map(|b| b.store().stats().commits).sum()
    };
    let entries = commits(&brokers);
    let completed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut jobs = Vec::new();
    let publishers = PUBLISHERS * brokers.len() as u64;
    for p in 0..publishers {
        let broker = Arc::clone(&brokers[p as usize % brokers.len()]);
        jobs.push(tokio::spawn(async move {
            let share = tasks / publishers + u64::from(p < tasks % publishers);
            let mut sent = 0;
            while sent < share {
                let n = (share - sent).min(BATCH as u64);
                let batch: Vec<NewTask> = (0..n)
                    .map(|k| NewTask {
                        publisher: "bench".into(),
                        data: serde_json::json!({"p": p, "n": sent + k})
                            .as_object()
                            .cloned()
                            .unwrap_or_default(),
                        ..NewTask::default()
                    })
                    .collect();
                broker.publish(batch).await.expect("a publish");
                sent += n;
            }
        }));
    }
    for (broker, worker) in workers {
        let completed = Arc::clone(&completed);
        jobs.push(tokio::spawn(async move {
            while completed.load(Ordering::SeqCst) < tasks {
                let got = broker
                    .claim(worker, BATCH, Duration::from_millis(20))
                    .await
                    .expect("a claim");
                if got.is_empty() {
                    continue;
                }
                let reports = got
                    .iter()
                    .map(|t| (worker, t.task_id, Report::Complete { output: None }, false))
                    .collect();
                for answer in broker.report_many(reports).await.expect("a report") {
                    answer.expect("a completion");
                }
                completed.fetch_add(got.len() as u64, Ordering::SeqCst);
            }
        }));
    }
    for job in jobs {
        job.await.expect("a job");
    }
    Run {
        seconds: started.elapsed().as_secs_f64(),
        entries: commits(&brokers) - entries,
    }
}

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let tasks: u64 = arg("--tasks")
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let trips: Vec<u64> = arg("--trips-ms")
        .unwrap_or_else(|| "0,1,2".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let nodes: Vec<usize> = arg("--nodes")
        .unwrap_or_else(|| "1".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|n| *n > 0)
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    println!(
        "{tasks} tasks, {PUBLISHERS} publishers and {WORKERS} workers per node, batches of {BATCH}, end to end"
    );
    println!("| Store | Nodes | Round trip | Tasks/s | Log entries | Bucket calls per task | CPU ms per 1,000 tasks |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("a directory");
        let store = EmbeddedStore::open_dir(dir.path(), 10_000)
            .await
            .expect("the embedded store");
        let cpu = interq::metrics::process::cpu_seconds();
        let run = drive(vec![Arc::new(store)], tasks).await;
        println!(
            "| embedded | 1 | - | {:.0} | {} | - | {:.0} |",
            tasks as f64 / run.seconds,
            run.entries,
            (interq::metrics::process::cpu_seconds() - cpu) * 1e6 / tasks as f64
        );
        for trip in trips {
            for &n in &nodes {
                let bucket = MemoryBucket::new();
                bucket.set_delay(Duration::from_millis(trip));
                let mut stores: Vec<Arc<dyn Store>> = Vec::new();
                for _ in 0..n {
                    let store = Engine::open_shared(
                        Arc::clone(&bucket),
                        CouchbaseSettings::default(),
                        Retention::default(),
                    )
                    .await
                    .expect("a node");
                    stores.push(Arc::new(store));
                }
                measure(
                    "Couchbase log, bucket in memory",
                    &bucket,
                    stores,
                    n,
                    trip,
                    tasks,
                )
                .await;
                let (stores, rounds) = owners(&bucket, n).await;
                measure(
                    "partition logs, each node its own, no lock",
                    &bucket,
                    stores,
                    n,
                    trip,
                    tasks,
                )
                .await;
                for r in rounds {
                    r.abort();
                }
            }
        }
    });
}

async fn measure(
    what: &str,
    bucket: &Arc<MemoryBucket>,
    stores: Vec<Arc<dyn Store>>,
    n: usize,
    trip: u64,
    tasks: u64,
) {
    let calls = bucket.calls();
    let cpu = interq::metrics::process::cpu_seconds();
    let run = drive(stores, tasks).await;
    println!(
        "| {what} | {n} | {trip} ms | {:.0} | {} | {:.2} | {:.0} |",
        tasks as f64 / run.seconds,
        run.entries,
        (bucket.calls() - calls) as f64 / tasks as f64,
        (interq::metrics::process::cpu_seconds() - cpu) * 1e6 / tasks as f64
    );
}

/// `n` nodes holding one partition each of `n` (leases in the bucket, as
/// nodes in service hold them), each with its partition's engine, written
/// by it alone; and the tasks renewing their leases.
async fn owners(
    bucket: &Arc<MemoryBucket>,
    n: usize,
) -> (Vec<Arc<dyn Store>>, Vec<tokio::task::JoinHandle<()>>) {
    // A bucket of its own for the leases' count: the run's own bucket
    // already names its partition count as the shared log's.
    let settings = LeaseSettings {
        partitions: n as u32,
        lease: Duration::from_secs(6),
    };
    let prefix = format!("owned{n}::");
    let kv = Arc::new(Scoped::new(Arc::new(Arc::clone(bucket)), prefix));
    let mut nodes = Vec::new();
    let mut rounds = Vec::new();
    for i in 0..n {
        let ownership = Arc::new(Ownership::new(format!("node-{i}"), settings, TokioClock));
        let (o, kv) = (Arc::clone(&ownership), Arc::clone(&kv));
        rounds.push(tokio::spawn(async move {
            loop {
                let _ = o.round(&*kv).await;
                tokio::time::sleep(settings.round()).await;
            }
        }));
        nodes.push(ownership);
    }
    while nodes.iter().any(|o| o.owned().len() != 1) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    for ownership in nodes {
        let p = ownership.owned()[0];
        let store = Engine::open_partition(
            Arc::clone(&kv),
            CouchbaseSettings::default(),
            Retention::default(),
            ownership as Arc<dyn Tenures>,
            p,
        )
        .await
        .expect("a partition's engine");
        stores.push(Arc::new(store));
    }
    (stores, rounds)
}
