//! `interq bench --scenario batch`: one batch of `--tasks` copies, published
//! through `PUT /batch` a thousand at a time, drained by `--workers`
//! workers; measures how soon after its last copy ended the batch's
//! callback can be claimed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use serde_json::json;

use super::{serve, BenchOptions};
use crate::client::Client;

const QUEUE: &str = "bench-batch";
const DONE: &str = "bench-batch-done";
const CHUNK: usize = 1000;

/// What the scenario measured.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchReport {
    pub url: String,
    pub tasks: usize,
    pub workers: usize,
    pub claim_batch: usize,
    /// Seconds publishing the batch took, and the rate.
    pub publish_secs: f64,
    pub publish_per_sec: f64,
    /// Seconds from the first claim to the last copy's report answered.
    pub drain_secs: f64,
    pub drain_per_sec: f64,
    /// From the last report being sent to the callback being claimed by a
    /// worker long-polling its queue.
    pub callback_after_last_report_ms: f64,
    /// The batch's totals as status shows them at the end.
    pub completed: u64,
    pub ended: bool,
}

pub async fn run(opts: BenchOptions) -> anyhow::Result<BatchReport> {
    anyhow::ensure!(
        opts.workers > 0 && opts.tasks > 0 && opts.claim_batch > 0,
        "--workers, --tasks and --claim-batch must be at least 1"
    );
    let (url, server, _) = serve(&opts).await?;
    let client = Client::with_options(&url, opts.client.clone())?;
    client
        .set_interests(QUEUE, json!({"bench": "^batch$"}))
        .await
        .context("setting interests")?;
    client
        .set_interests(DONE, json!({"benchDone": "."}))
        .await
        .context("setting interests")?;
    let id = format!("bench-{}", crate::model::TaskId::new_publish().copy(0));
    let started = Instant::now();
    let mut from = 0;
    while from < opts.tasks {
        let to = (from + CHUNK).min(opts.tasks);
        let tasks: Vec<_> = (from..to)
            .map(|i| json!({"data": {"bench": "batch", "seq": i}, "publisher": "bench"}))
            .collect();
        client
            .call(
                "publishBatch",
                &json!({"batch": id, "tasks": tasks, "more": to < opts.tasks,
                        "onComplete": {"data": {"benchDone": id}, "publisher": "bench"}}),
            )
            .await
            .context("publishing the batch")?;
        from = to;
    }
    let publish_secs = started.elapsed().as_secs_f64();
    // Waits for the callback from the start, as a downstream worker would.
    let watcher = {
        let client = client.clone();
        let worker = client.register(&[DONE]).await.context("registering")?;
        tokio::spawn(async move {
            loop {
                match client.claim(worker, Some(Duration::from_secs(5))).await {
                    Ok(Some(_)) => return Instant::now(),
                    Ok(None) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        })
    };
    let done = Arc::new(AtomicU64::new(0));
    let last_sent = Arc::new(Mutex::new(Instant::now()));
    let drain_started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..opts.workers {
        let worker = client.register(&[QUEUE]).await.context("registering")?;
        let (client, done, last_sent) = (client.clone(), done.clone(), last_sent.clone());
        let (total, batch) = (opts.tasks as u64, opts.claim_batch);
        workers.spawn(async move {
            while done.load(Ordering::SeqCst) < total {
                let Ok(tasks) = client
                    .claim_many(worker, batch, Some(Duration::from_millis(200)))
                    .await
                else {
                    continue;
                };
                if tasks.is_empty() {
                    continue;
                }
                let ids: Vec<_> = tasks.iter().map(|t| t.task_id).collect();
                *last_sent.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                client
                    .complete_many(worker, &ids)
                    .await
                    .context("reporting")?;
                done.fetch_add(ids.len() as u64, Ordering::SeqCst);
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = workers.join_next().await {
        r??;
    }
    let drain_secs = drain_started.elapsed().as_secs_f64();
    let last = *last_sent.lock().unwrap_or_else(|e| e.into_inner());
    let claimed = tokio::time::timeout(Duration::from_secs(30), watcher)
        .await
        .context("the callback never came")??;
    let status = client
        .status(&[("batch", id.as_str())])
        .await
        .context("reading the batch")?;
    let report = BatchReport {
        url,
        tasks: opts.tasks,
        workers: opts.workers,
        claim_batch: opts.claim_batch,
        publish_secs,
        publish_per_sec: opts.tasks as f64 / publish_secs.max(1e-9),
        drain_secs,
        drain_per_sec: opts.tasks as f64 / drain_secs.max(1e-9),
        callback_after_last_report_ms: claimed.saturating_duration_since(last).as_secs_f64()
            * 1000.0,
        completed: status["batch"]["totals"]["completed"].as_u64().unwrap_or(0),
        ended: status["batch"]["ended"].as_bool().unwrap_or(false),
    };
    if let Some(server) = server {
        server.stop().await?;
    }
    Ok(report)
}

impl BatchReport {
    /// The report for people.
    pub fn human(&self) -> String {
        format!(
            "interq bench batch: {} tasks in one batch, {} workers claiming {} at a time\n  published in {:.2} s ({:.0}/s)\n  drained in {:.2} s ({:.0}/s)\n  callback claimed {:.1} ms after the last report was sent\n  batch: {} completed, ended {}\n",
            self.tasks,
            self.workers,
            self.claim_batch,
            self.publish_secs,
            self.publish_per_sec,
            self.drain_secs,
            self.drain_per_sec,
            self.callback_after_last_report_ms,
            self.completed,
            self.ended,
        )
    }
}
