//! `interq bench --scenario noisy-neighbour`: what one group's backlog does
//! to everybody else. Quiet groups each publish one task a second to a
//! queue that workers drain; their publish-to-claim latency is measured
//! first with nothing else waiting, then again once one noisy group has
//! `--backlog` copies ready in the same queue (the workers keep claiming
//! those too). With turns between groups, a quiet copy waits for one claim
//! of each other group, not for the backlog.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{json, Value};

use super::{histogram, micros_now, serve, BenchOptions, Latency};
use crate::client::{Client, Publish};

const QUEUE: &str = "bench-fair";

/// What the scenario measured.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NoisyReport {
    pub url: String,
    pub workers: usize,
    pub quiet_groups: usize,
    pub backlog: usize,
    pub seconds: f64,
    /// Seconds publishing the backlog took.
    pub backlog_publish_secs: f64,
    /// The quiet groups with nothing else waiting.
    pub alone: Phase,
    /// The quiet groups behind the noisy group's backlog.
    pub with_backlog: Phase,
    /// `with_backlog`'s quiet p99 over `alone`'s (the target: at most 2).
    pub p99_ratio: f64,
    /// Copies of the noisy group still ready at the end.
    pub backlog_left: u64,
}

/// One phase's figures.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Phase {
    /// Every quiet copy's publish to claim.
    pub quiet: Latency,
    /// The p99 of the quiet group whose p99 was highest.
    pub worst_group_p99_ms: f64,
    /// Copies claimed in the phase: quiet, and the noisy group's.
    pub quiet_claimed: u64,
    pub noisy_claimed: u64,
}

/// Per phase (0, 1): each quiet group's latencies, and the noisy claims.
struct Tally {
    quiet: [HashMap<u64, Histogram<u64>>; 2],
    noisy: [u64; 2],
}

pub async fn run(opts: BenchOptions) -> anyhow::Result<NoisyReport> {
    anyhow::ensure!(
        opts.workers > 0 && opts.quiet_groups > 0,
        "--workers and --quiet-groups must be at least 1"
    );
    anyhow::ensure!(opts.seconds > 0.0, "--seconds must be above 0");
    let (url, server, _) = serve(&opts).await?;
    let client = Client::with_options(&url, opts.client.clone())?;
    client
        .set_interests(QUEUE, json!({"bench": "^fair$"}))
        .await
        .context("setting interests")?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..opts.workers {
        let worker = client
            .register(&[QUEUE])
            .await
            .context("registering a worker")?;
        let client = client.clone();
        let mut stop = stop_rx.clone();
        workers.spawn(async move {
            let mut tally = Tally {
                quiet: [HashMap::new(), HashMap::new()],
                noisy: [0, 0],
            };
            loop {
                let claimed = tokio::select! {
                    c = client.claim_many(worker, 1, Some(Duration::from_secs(1))) => c,
                    _ = stop.wait_for(|s| *s) => break,
                };
                let Ok(tasks) = claimed else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let now = micros_now();
                for t in &tasks {
                    let p = t.data.get("phase").and_then(Value::as_u64).unwrap_or(0) as usize;
                    match t.data.get("quiet").and_then(Value::as_u64) {
                        Some(g) => {
                            let sent = t.data.get("t").and_then(Value::as_u64).unwrap_or(now);
                            let _ = tally.quiet[p.min(1)]
                                .entry(g)
                                .or_insert_with(histogram)
                                .record(now.saturating_sub(sent).max(1));
                        }
                        None => tally.noisy[p.min(1)] += 1,
                    }
                    let _ = client.complete(worker, t.task_id, None).await;
                }
            }
            tally
        });
    }
    let quiet = |phase_no: u8| {
        let client = client.clone();
        let (groups, secs) = (opts.quiet_groups, opts.seconds);
        tokio::spawn(async move { publish_quiet(&client, groups, secs, phase_no).await })
    };

    quiet(0).await??;
    // Let the last quiet copies of the first phase be claimed.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    publish_backlog(&client, opts.backlog).await?;
    let backlog_publish_secs = started.elapsed().as_secs_f64();
    quiet(1).await??;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop_tx.send(true);
    let mut tallies = Vec::new();
    while let Some(t) = workers.join_next().await {
        tallies.push(t?);
    }
    let left = client
        .status(&[("queue", QUEUE)])
        .await
        .ok()
        .and_then(|s| s["queue"]["ready"].as_u64())
        .unwrap_or(0);
    let phase_of = |p: usize| {
        let mut all = histogram();
        let mut per_group: HashMap<u64, Histogram<u64>> = HashMap::new();
        let mut noisy = 0;
        for t in &tallies {
            noisy += t.noisy[p];
            for (g, h) in &t.quiet[p] {
                all.add(h).ok();
                per_group.entry(*g).or_insert_with(histogram).add(h).ok();
            }
        }
        let worst = per_group
            .values()
            .map(|h| h.value_at_quantile(0.99))
            .max()
            .unwrap_or(0);
        Phase {
            quiet: Latency::of(&all),
            worst_group_p99_ms: worst as f64 / 1000.0,
            quiet_claimed: all.len(),
            noisy_claimed: noisy,
        }
    };
    let (alone, with_backlog) = (phase_of(0), phase_of(1));
    let report = NoisyReport {
        url,
        workers: opts.workers,
        quiet_groups: opts.quiet_groups,
        backlog: opts.backlog,
        seconds: opts.seconds,
        backlog_publish_secs,
        p99_ratio: with_backlog.quiet.p99_ms / alone.quiet.p99_ms.max(0.001),
        alone,
        with_backlog,
        backlog_left: left,
    };
    if let Some(server) = server {
        server.stop().await?;
    }
    Ok(report)
}

/// Each quiet group publishes one task a second for `secs` seconds, the
/// groups spread evenly over each second.
async fn publish_quiet(client: &Client, groups: usize, secs: f64, phase: u8) -> anyhow::Result<()> {
    let every = Duration::from_secs_f64(1.0 / groups as f64);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = (secs * groups as f64) as usize;
    let mut sends = tokio::task::JoinSet::new();
    for i in 0..total {
        tick.tick().await;
        let g = i % groups;
        let task =
            Publish::new(json!({"bench": "fair", "quiet": g, "phase": phase, "t": micros_now()}))
                .publisher("bench")
                .group(format!("quiet-{g}"));
        let client = client.clone();
        sends.spawn(async move { client.publish(&task).await.map(|_| ()) });
        while let Some(r) = sends.try_join_next() {
            r?.context("publishing a quiet task")?;
        }
    }
    while let Some(r) = sends.join_next().await {
        r?.context("publishing a quiet task")?;
    }
    Ok(())
}

/// `n` copies of the noisy group, in batches of 1000 from 4 publishers.
async fn publish_backlog(client: &Client, n: usize) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let mut publishers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (client, next) = (client.clone(), Arc::clone(&next));
        publishers.spawn(async move {
            loop {
                let from = next.fetch_add(1000, Ordering::Relaxed) as usize;
                if from >= n {
                    return anyhow::Ok(());
                }
                let batch: Vec<Publish> = (from..(from + 1000).min(n))
                    .map(|i| {
                        Publish::new(json!({"bench": "fair", "phase": 1, "seq": i}))
                            .publisher("bench")
                            .group("noisy")
                    })
                    .collect();
                client
                    .publish_batch(&batch)
                    .await
                    .context("publishing the backlog")?;
            }
        });
    }
    while let Some(r) = publishers.join_next().await {
        r??;
    }
    Ok(())
}

impl NoisyReport {
    /// The report for people.
    pub fn human(&self) -> String {
        let phase = |name: &str, p: &Phase| {
            format!(
                "  {name:<13} quiet publish to claim p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; worst group's p99 {:.2} ms; claimed {} quiet, {} noisy\n",
                p.quiet.p50_ms, p.quiet.p99_ms, p.quiet.max_ms, p.worst_group_p99_ms, p.quiet_claimed, p.noisy_claimed
            )
        };
        format!(
            "interq bench noisy-neighbour: {} quiet groups at 1 task/s each, {} workers, {} s per phase\n{}  backlog       {} copies of one group published in {:.1} s ({} still ready at the end)\n{}  p99 with the backlog / alone: {:.2}\n",
            self.quiet_groups,
            self.workers,
            self.seconds,
            phase("alone", &self.alone),
            self.backlog,
            self.backlog_publish_secs,
            self.backlog_left,
            phase("with backlog", &self.with_backlog),
            self.p99_ratio,
        )
    }
}
