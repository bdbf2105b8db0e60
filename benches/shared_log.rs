//! The write path end to end with no HTTP in front: publishers publishing
//! batches through the broker, workers claiming batches and reporting each
//! batch in one step, until every task is completed. Over the embedded
//! store, and over the Couchbase log (its lock, entries and group commit)
//! on a bucket in memory whose every call waits a round trip, so that what
//! the log costs per task shows without a cluster: tasks per second, log
//! entries written, bucket calls per task.
//!
//! `cargo bench --bench shared_log -- [--tasks N] [--trips-ms 0,1,2]`
//! (tokio's timer rounds a wait up to whole milliseconds, so a round trip
//! is 0, 1, 2… ms here; a durable write to a Couchbase cluster on one
//! network is about 1 ms).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use interq::broker::clock::SystemClock;
use interq::broker::{Broker, BrokerSettings, Report};
use interq::model::{NewTask, QueueName};
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

async fn drive(store: Arc<dyn Store>, tasks: u64) -> Run {
    let broker = Broker::start(store, Arc::new(SystemClock), BrokerSettings::default())
        .await
        .expect("a broker");
    let queue = QueueName::parse("q").expect("a name");
    broker
        .set_interests(queue.clone(), &serde_json::json!("*"))
        .await
        .expect("interests");
    let mut workers = Vec::new();
    for i in 0..WORKERS {
        let record = broker
            .register_worker(vec![queue.clone()], Vec::new(), format!("w{i}"), None)
            .await
            .expect("a worker");
        workers.push(record.worker_id);
    }
    let entries = broker.store().stats().commits;
    let completed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut jobs = Vec::new();
    for p in 0..PUBLISHERS {
        let broker = Arc::clone(&broker);
        jobs.push(tokio::spawn(async move {
            let share = tasks / PUBLISHERS + u64::from(p < tasks % PUBLISHERS);
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
    for worker in workers {
        let (broker, completed) = (Arc::clone(&broker), Arc::clone(&completed));
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
        entries: broker.store().stats().commits - entries,
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    println!(
        "{tasks} tasks, {PUBLISHERS} publishers and {WORKERS} workers, batches of {BATCH}, end to end"
    );
    println!("| Store | Round trip | Tasks/s | Log entries | Bucket calls per task |");
    println!("| --- | --- | --- | --- | --- |");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("a directory");
        let store = EmbeddedStore::open_dir(dir.path(), 10_000)
            .await
            .expect("the embedded store");
        let run = drive(Arc::new(store), tasks).await;
        println!(
            "| embedded | - | {:.0} | {} | - |",
            tasks as f64 / run.seconds,
            run.entries
        );
        for trip in trips {
            let bucket = MemoryBucket::new();
            bucket.set_delay(Duration::from_millis(trip));
            let store = Engine::open_shared(
                Arc::clone(&bucket),
                CouchbaseSettings::default(),
                Retention::default(),
            )
            .await
            .expect("a node");
            let calls = bucket.calls();
            let run = drive(Arc::new(store), tasks).await;
            println!(
                "| Couchbase log, bucket in memory | {trip} ms | {:.0} | {} | {:.2} |",
                tasks as f64 / run.seconds,
                run.entries,
                (bucket.calls() - calls) as f64 / tasks as f64
            );
        }
    });
}
