//! `interq bench`: a load generator that drives an interq over real HTTP,
//! through the same client as every other user, and reports throughput and
//! latency percentiles.
//!
//! Without `--url` it starts an interq in this process on a temporary data
//! directory, so the figures include the load generator sharing the machine.
//!
//! The load: `queues` queues named `bench-0`.. in groups of `fanout`, each group
//! interested in one value of the task field `route`, so each task reaches
//! exactly `fanout` queues. `publishers` publish `tasks` tasks of about `size`
//! bytes of JSON, `publish_batch` per request; `workers` claim
//! `claim_batch` per request (long-polling `wait` seconds) and complete them.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{json, Value};

use crate::client::{Client, Publish};
use crate::config::Settings;
use crate::startup::Application;

pub mod batch;
pub mod noisy;

/// What to run; also `interq bench`'s flags.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// A running interq to drive: `http(s)://host:port`, or its line
    /// protocol at `interq(s)://host:port`.
    #[arg(long)]
    pub url: Option<String>,
    /// How the clients call: `http`, or `line` (one connection, many calls
    /// in flight). With `--url`, the URL's scheme says, and this must agree.
    #[arg(long, value_enum)]
    pub protocol: Option<Protocol>,
    /// Where to read the server's CPU (`/metrics`) when `--url` is a line
    /// protocol address: its HTTP URL.
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// Data directory for the interq started here.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Concurrent publishers.
    #[arg(short = 'P', long, default_value_t = 16)]
    pub publishers: usize,
    /// Workers claiming and completing (0: publish only).
    #[arg(short = 'W', long, default_value_t = 4)]
    pub workers: usize,
    /// Tasks to publish.
    #[arg(short = 'N', long, default_value_t = 100_000)]
    pub tasks: usize,
    /// Approximate bytes of each task's data.
    #[arg(short = 'S', long, default_value_t = 200)]
    pub size: usize,
    /// Queues with interests.
    #[arg(short = 'Q', long, default_value_t = 1)]
    pub queues: usize,
    /// Queues each task reaches.
    #[arg(short = 'F', long, default_value_t = 1)]
    pub fanout: usize,
    /// Tasks per publish request.
    #[arg(long, default_value_t = 1)]
    pub publish_batch: usize,
    /// Tasks per claim request.
    #[arg(long, default_value_t = 1)]
    pub claim_batch: usize,
    /// Seconds a claim long-polls (0: poll).
    #[arg(long, default_value_t = 5.0)]
    pub wait: f64,
    /// Bytes each worker adds to each task's log (`POST /task/log`) before
    /// completing it, as a command that wrote that much would (0: none).
    #[arg(long, default_value_t = 0)]
    pub log_bytes: usize,
    /// Total publish rate to hold, tasks per second.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Interest changes per second while publishing (`PUT /interest` on
    /// queues of their own, `bench-churn-0` to `-4999`, that no task
    /// reaches: enough that the router compiles its base again now and
    /// then), each timed: what changing interests costs, and what it does
    /// to publishes.
    #[arg(long, default_value_t = 0.0)]
    pub interest_changes: f64,
    /// Fairness groups the tasks are spread over (`t0`..), round robin
    /// (0: none): what turns between groups cost the claim path.
    #[arg(long, default_value_t = 0)]
    pub groups: usize,
    /// What to measure: `throughput` (the load above);
    /// `noisy-neighbour`: quiet groups' publish-to-claim latency, first
    /// alone, then behind one group's backlog of `--backlog` copies; or
    /// `batch`: one `PUT /batch` batch of `--tasks` copies drained by
    /// `--workers`, and how soon its callback follows its last copy.
    #[arg(long, value_enum, default_value_t = Scenario::Throughput)]
    pub scenario: Scenario,
    /// noisy-neighbour: copies of the noisy group ready before the second
    /// phase.
    #[arg(long, default_value_t = 1_000_000)]
    pub backlog: usize,
    /// noisy-neighbour: quiet groups, each publishing one task a second.
    #[arg(long, default_value_t = 100)]
    pub quiet_groups: usize,
    /// noisy-neighbour: seconds each phase lasts.
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
    /// Show a progress bar.
    #[arg(skip)]
    pub progress: bool,
    /// First measure the data disk's fsync rate (with the interq started here).
    #[arg(long)]
    pub probe_disk: bool,
    /// Key and trusted certificates for `url`.
    #[arg(skip)]
    pub client: crate::client::ClientOptions,
}

/// What `interq bench` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    Throughput,
    NoisyNeighbour,
    /// One batch of `--tasks` copies: how soon after its last copy ended its
    /// callback is claimed.
    Batch,
}

/// The bench clients' transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http,
    Line,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            url: None,
            protocol: None,
            metrics_url: None,
            data_dir: None,
            publishers: 16,
            workers: 4,
            tasks: 100_000,
            size: 200,
            queues: 1,
            fanout: 1,
            publish_batch: 1,
            claim_batch: 1,
            wait: 5.0,
            log_bytes: 0,
            rate: None,
            interest_changes: 0.0,
            groups: 0,
            scenario: Scenario::Throughput,
            backlog: 1_000_000,
            quiet_groups: 100,
            seconds: 30.0,
            progress: true,
            probe_disk: false,
            client: crate::client::ClientOptions::default(),
        }
    }
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub url: String,
    pub publishers: usize,
    pub workers: usize,
    pub tasks: usize,
    pub size: usize,
    pub queues: usize,
    pub fanout: usize,
    /// Fairness groups the tasks were spread over (0: none).
    pub groups: usize,
    pub publish_batch: usize,
    pub claim_batch: usize,
    pub wait: f64,
    pub log_bytes: usize,
    pub rate: Option<f64>,
    pub interest_changes: f64,
    /// Interest changes made during the publishes, and how long each took
    /// to be answered; absent without `--interest-changes`.
    pub interest_change_latency: Option<Latency>,
    /// Publishes that failed (not counted in throughput).
    pub errors: u64,
    pub publish_secs: f64,
    pub publish_tasks_per_sec: f64,
    pub routed_copies_per_sec: f64,
    /// From the first publish to the last completion; absent without workers.
    pub end_to_end_secs: Option<f64>,
    pub end_to_end_copies_per_sec: Option<f64>,
    pub publish_latency: Latency,
    pub claim_latency: Option<Latency>,
    pub publish_to_claim: Option<Latency>,
    /// Durable commits during the run, and records per commit.
    pub commits: Option<u64>,
    pub writes_per_commit: Option<f64>,
    /// With `--url`: the server's CPU over the run (user and system, from
    /// its `/metrics`), and per task published and per copy delivered
    /// (routed, without workers).
    pub server_cpu_secs: Option<f64>,
    pub server_cpu_us_per_task: Option<f64>,
    pub server_cpu_us_per_copy: Option<f64>,
    /// This process's CPU over the run: the clients' alone with `--url`,
    /// clients and server together without it.
    pub client_cpu_secs: Option<f64>,
    /// With `--url`: the server's resident memory at the end, in MiB.
    pub server_rss_mib: Option<f64>,
    /// Resident memory of this process at the end (it hosts the interq when
    /// none was given), in MiB.
    pub rss_mib: Option<f64>,
    /// The data disk: fsyncs per second after appending to a file, and after
    /// overwriting space already in it.
    pub disk: Option<DiskProbe>,
}

/// How fast the data disk makes writes durable.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiskProbe {
    pub append_fsyncs_per_sec: f64,
    pub overwrite_fsyncs_per_sec: f64,
}

/// Measures fsyncs per second in `dir` for `secs` seconds each: 4 KiB
/// appended then fsync (the file grows, so metadata is flushed too), and 4 KiB
/// overwritten in place then fsync.
pub fn probe_disk(dir: &std::path::Path, secs: f64) -> std::io::Result<DiskProbe> {
    use std::io::{Seek, SeekFrom, Write};
    let path = dir.join(".interq-disk-probe");
    let block = [0x5au8; 4096];
    let rate = |overwrite: bool| -> std::io::Result<f64> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&path)?;
        if overwrite {
            f.write_all(&block)?;
            f.sync_all()?;
        }
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed().as_secs_f64() < secs {
            if overwrite {
                f.seek(SeekFrom::Start(0))?;
            }
            f.write_all(&block)?;
            f.sync_data()?;
            n += 1;
        }
        Ok(n as f64 / start.elapsed().as_secs_f64())
    };
    let probe = DiskProbe {
        append_fsyncs_per_sec: rate(false)?,
        overwrite_fsyncs_per_sec: rate(true)?,
    };
    std::fs::remove_file(&path)?;
    Ok(probe)
}

fn micros_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros() as u64
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

/// An interq this process started for a run.
struct Served {
    handle: crate::startup::ShutdownHandle,
    running: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// Removed when the run ends, unless `--data-dir` named it.
    _dir: Option<TempDir>,
}

impl Served {
    async fn stop(self) -> anyhow::Result<()> {
        self.handle.stop().await;
        self.running.await?
    }
}

/// The interq to drive: `--url`'s, or one started here (and the data
/// disk's speed, when asked).
async fn serve(opts: &BenchOptions) -> anyhow::Result<(String, Option<Served>, Option<DiskProbe>)> {
    if let Some(u) = &opts.url {
        let line = u.starts_with("interq://") || u.starts_with("interqs://");
        match opts.protocol {
            Some(Protocol::Line) if !line => anyhow::bail!(
                "--protocol line: give the line protocol's address, --url interq://host:port"
            ),
            Some(Protocol::Http) if line => {
                anyhow::bail!("--protocol http: give an http:// or https:// --url")
            }
            _ => return Ok((u.clone(), None, None)),
        }
    }
    let mut tempdir = None;
    let dir = match &opts.data_dir {
        Some(d) => d.clone(),
        None => {
            let t = tempfile_dir()?;
            let p = t.clone();
            tempdir = Some(TempDir(t));
            p
        }
    };
    let disk = match opts.probe_disk {
        true => Some(probe_disk(&dir, 1.0).context("probing the data disk")?),
        false => None,
    };
    let mut settings = Settings {
        listen: "127.0.0.1:0".into(),
        data_dir: dir,
        ..Settings::default()
    };
    settings.limits.max_batch = settings.limits.max_batch.max(opts.publish_batch);
    settings.limits.max_claim_count = settings.limits.max_claim_count.max(opts.claim_batch);
    let line = opts.protocol == Some(Protocol::Line);
    if line {
        settings.line.listen = Some("127.0.0.1:0".into());
    }
    let app = Application::build(settings)
        .await
        .context("starting interq")?;
    let url = match app.line_port() {
        Some(port) if line => format!("interq://127.0.0.1:{port}"),
        _ => format!("http://127.0.0.1:{}", app.port()),
    };
    let handle = app.handle();
    let running = tokio::spawn(app.run_until_stopped());
    let served = Served {
        handle,
        running,
        _dir: tempdir,
    };
    Ok((url, Some(served), disk))
}

/// Runs the benchmark.
pub async fn run(opts: BenchOptions) -> anyhow::Result<Report> {
    anyhow::ensure!(
        opts.tasks > 0 && opts.publishers > 0,
        "--tasks and --publishers must be at least 1"
    );
    anyhow::ensure!(
        opts.fanout >= 1 && opts.queues >= opts.fanout,
        "--queues must be at least --fanout"
    );
    anyhow::ensure!(
        opts.publish_batch >= 1 && opts.claim_batch >= 1,
        "batches hold at least 1"
    );
    let (url, server, disk) = serve(&opts).await?;
    let client = Client::with_options(&url, opts.client.clone())?;

    // Queues in groups of `fanout`; group g takes tasks whose route is `g<g>`.
    let groups = opts.queues.div_ceil(opts.fanout);
    let interests: Vec<(String, Value)> = (0..opts.queues)
        .map(|j| {
            (
                format!("bench-{j}"),
                json!({"route": format!("^g{}$", j / opts.fanout)}),
            )
        })
        .collect();
    for chunk in interests.chunks(1000) {
        client
            .set_many_interests(chunk)
            .await
            .context("setting interests")?;
    }
    let copies_per_task: Vec<u64> = (0..groups)
        .map(|g| {
            ((g + 1) * opts.fanout)
                .min(opts.queues)
                .saturating_sub(g * opts.fanout) as u64
        })
        .collect();
    let expected: u64 = (0..opts.tasks).map(|i| copies_per_task[i % groups]).sum();

    let mut worker_ids = Vec::new();
    for w in 0..opts.workers {
        let queues: Vec<String> = if opts.queues <= opts.workers {
            vec![format!("bench-{}", w % opts.queues)]
        } else {
            (0..opts.queues)
                .filter(|j| j % opts.workers == w)
                .map(|j| format!("bench-{j}"))
                .collect()
        };
        let refs: Vec<&str> = queues.iter().map(String::as_str).collect();
        worker_ids.push(
            client
                .register(&refs)
                .await
                .context("registering a worker")?,
        );
    }
    let before = client.status(&[("store", "")]).await.ok();
    // The server's own CPU, when it is another process.
    let metrics = match (&opts.url, &opts.metrics_url) {
        (None, _) => None,
        (Some(_), Some(m)) => Some(Client::with_options(m, opts.client.clone())?),
        (Some(_), None) if client.is_line() => None,
        (Some(_), None) => Some(client.clone()),
    };
    let server_cpu_before = match &metrics {
        Some(m) => Some(server_sample(m).await?),
        None => None,
    };
    let client_cpu_before = own_cpu_secs();

    let bar = progress_bar(
        opts.progress,
        if opts.workers > 0 {
            expected
        } else {
            opts.tasks as u64
        },
    );
    let completed = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let errors = Arc::new(AtomicU64::new(0));
    let pad = "x".repeat(opts.size.saturating_sub(60).max(1));
    let started = Instant::now();

    let mut workers = tokio::task::JoinSet::new();
    for worker in worker_ids.iter().copied() {
        let (client, completed, bar) = (client.clone(), Arc::clone(&completed), bar.clone());
        let mut stop = stop_rx.clone();
        let (batch, wait) = (opts.claim_batch, opts.wait);
        let log_line = (opts.log_bytes > 0).then(|| {
            let mut text = "building step 42: ok\n".repeat(opts.log_bytes / 21 + 1);
            text.truncate(opts.log_bytes);
            text
        });
        workers.spawn(async move {
            let (mut claim_h, mut latency_h) = (histogram(), histogram());
            let wait = (wait > 0.0).then(|| Duration::from_secs_f64(wait));
            loop {
                let t0 = Instant::now();
                let claimed = tokio::select! {
                    claimed = client.claim_many(worker, batch, wait) => claimed,
                    // A worker in a long poll when the run ends stops here.
                    _ = stop.wait_for(|s| *s) => break,
                };
                let tasks = match claimed {
                    Ok(t) => t,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = claim_h.record(t0.elapsed().as_micros().max(1) as u64);
                if tasks.is_empty() {
                    if wait.is_none() {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    continue;
                }
                let now = micros_now();
                for t in &tasks {
                    if let Some(sent) = t.data.get("t").and_then(Value::as_u64) {
                        let _ = latency_h.record(now.saturating_sub(sent).max(1));
                    }
                }
                let ids: Vec<_> = tasks.iter().map(|t| t.task_id).collect();
                if let Some(text) = &log_line {
                    for id in &ids {
                        let _ = client.append_log(worker, *id, text).await;
                    }
                }
                let finished = if ids.len() == 1 {
                    client.complete(worker, ids[0], None).await.map(|_| 1)
                } else {
                    client
                        .complete_many(worker, &ids)
                        .await
                        .map(|r| r.iter().filter(|x| x.is_ok()).count())
                };
                if let Ok(n) = finished {
                    completed.fetch_add(n as u64, Ordering::Relaxed);
                    bar.inc(n as u64);
                }
            }
            (claim_h, latency_h)
        });
    }

    let mut publishers = tokio::task::JoinSet::new();
    let per_publisher_rate = opts.rate.map(|r| r / opts.publishers as f64);
    for p in 0..opts.publishers {
        let (client, errors, bar, pad) = (
            client.clone(),
            Arc::clone(&errors),
            bar.clone(),
            pad.clone(),
        );
        let count_workers = opts.workers > 0;
        let (batch, count, tasks, fair) =
            (opts.publish_batch, opts.publishers, opts.tasks, opts.groups);
        publishers.spawn(async move {
            let mut h = histogram();
            let mine: Vec<usize> = (p..tasks).step_by(count).collect();
            let mut pacing = per_publisher_rate.map(|r| {
                let mut i = tokio::time::interval(Duration::from_secs_f64(batch as f64 / r));
                i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                i
            });
            for chunk in mine.chunks(batch) {
                if let Some(i) = pacing.as_mut() {
                    i.tick().await;
                }
                let t = micros_now();
                let items: Vec<Publish> = chunk
                    .iter()
                    .map(|&i| {
                        let p = Publish::new(json!({"route": format!("g{}", i % groups), "seq": i, "t": t, "pad": pad}))
                            .publisher("bench");
                        match fair {
                            0 => p,
                            n => p.group(format!("t{}", i % n)),
                        }
                    })
                    .collect();
                let t0 = Instant::now();
                let ok = if items.len() == 1 {
                    client.publish(&items[0]).await.is_ok()
                } else {
                    client.publish_batch(&items).await.is_ok()
                };
                let _ = h.record(t0.elapsed().as_micros().max(1) as u64);
                if ok {
                    if !count_workers {
                        bar.inc(chunk.len() as u64);
                    }
                } else {
                    errors.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
            }
            h
        });
    }
    let (stop_changes, changes_stopped) = tokio::sync::watch::channel(false);
    let changer = (opts.interest_changes > 0.0).then(|| {
        let client = client.clone();
        let mut stop = changes_stopped;
        let every = Duration::from_secs_f64(1.0 / opts.interest_changes);
        tokio::spawn(async move {
            let mut h = histogram();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            for n in 0u64.. {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                let interests = json!({"churn": format!("^v{n}$")});
                let t0 = Instant::now();
                if client
                    .set_interests(&format!("bench-churn-{}", n % 5000), interests)
                    .await
                    .is_ok()
                {
                    let _ = h.record(t0.elapsed().as_micros().max(1) as u64);
                }
            }
            h
        })
    });
    let mut publish_h = histogram();
    while let Some(h) = publishers.join_next().await {
        publish_h.add(h?).ok();
    }
    let interest_change_latency = match changer {
        Some(task) => {
            let _ = stop_changes.send(true);
            Some(Latency::of(&task.await?))
        }
        None => None,
    };
    let publish_secs = started.elapsed().as_secs_f64();
    let errors = errors.load(Ordering::Relaxed);
    let published = (opts.tasks as u64).saturating_sub(errors);

    let mut end_to_end = None;
    let (mut claim_h, mut latency_h) = (histogram(), histogram());
    if opts.workers > 0 {
        let routed = expected.saturating_sub(errors * opts.fanout as u64);
        while completed.load(Ordering::Relaxed) < routed {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        end_to_end = Some(started.elapsed().as_secs_f64());
        let _ = stop_tx.send(true);
        while let Some(r) = workers.join_next().await {
            let (c, l) = r?;
            claim_h.add(c).ok();
            latency_h.add(l).ok();
        }
    }
    bar.finish_and_clear();

    let after = client.status(&[("store", "")]).await.ok();
    let client_cpu_secs = own_cpu_secs().zip(client_cpu_before).map(|(a, b)| a - b);
    let (server_cpu_secs, server_rss_mib) = match server_cpu_before {
        Some(b) => {
            let a = server_sample(metrics.as_ref().expect("sampled before")).await?;
            (Some(a.cpu_secs - b.cpu_secs), Some(a.rss_mib))
        }
        None => (None, None),
    };
    let (commits, writes_per_commit) = match (before, after) {
        (Some(b), Some(a)) => {
            let d = |k: &str| {
                a["store"][k]
                    .as_u64()
                    .unwrap_or(0)
                    .saturating_sub(b["store"][k].as_u64().unwrap_or(0))
            };
            let commits = d("commits");
            (
                Some(commits),
                (commits > 0).then(|| d("writes") as f64 / commits as f64),
            )
        }
        _ => (None, None),
    };
    let copies_done = completed.load(Ordering::Relaxed) as f64;
    let per = |n: f64| server_cpu_secs.filter(|_| n > 0.0).map(|c| c * 1e6 / n);
    let report = Report {
        url,
        publishers: opts.publishers,
        workers: opts.workers,
        tasks: opts.tasks,
        size: opts.size,
        queues: opts.queues,
        fanout: opts.fanout,
        groups: opts.groups,
        publish_batch: opts.publish_batch,
        claim_batch: opts.claim_batch,
        wait: opts.wait,
        log_bytes: opts.log_bytes,
        rate: opts.rate,
        interest_changes: opts.interest_changes,
        interest_change_latency,
        errors,
        publish_secs,
        publish_tasks_per_sec: published as f64 / publish_secs,
        routed_copies_per_sec: (published * opts.fanout as u64) as f64 / publish_secs,
        end_to_end_secs: end_to_end,
        end_to_end_copies_per_sec: end_to_end.map(|s| copies_done / s),
        publish_latency: Latency::of(&publish_h),
        claim_latency: (opts.workers > 0).then(|| Latency::of(&claim_h)),
        publish_to_claim: (opts.workers > 0).then(|| Latency::of(&latency_h)),
        commits,
        writes_per_commit,
        server_cpu_secs,
        server_cpu_us_per_task: per(published as f64),
        server_cpu_us_per_copy: per(if opts.workers > 0 {
            copies_done
        } else {
            (published * opts.fanout as u64) as f64
        }),
        client_cpu_secs,
        server_rss_mib,
        rss_mib: resident_mib(),
        disk,
    };
    if let Some(server) = server {
        server.stop().await?;
    }
    Ok(report)
}

impl Report {
    /// The report for people.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let line = |out: &mut String, s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        line(&mut out, format!(
            "interq bench: {} tasks of ~{} B, {} publishers (batch {}), {} workers (batch {}, wait {} s), {} queues, fan-out {}{}{}",
            self.tasks, self.size, self.publishers, self.publish_batch, self.workers, self.claim_batch, self.wait,
            self.queues, self.fanout,
            self.rate.map(|r| format!(", rate {r} tasks/s")).unwrap_or_default()
                + &match self.groups { 0 => String::new(), n => format!(", {n} groups") },
            if self.log_bytes > 0 { format!(", a {} B log per task", self.log_bytes) } else { String::new() }
        ) + &if self.interest_changes > 0.0 { format!(", {} interest changes/s", self.interest_changes) } else { String::new() });
        line(&mut out, format!("publish:        {:>12.0} tasks/s   {:>12.0} routed copies/s   ({:.2} s, {} errors)",
            self.publish_tasks_per_sec, self.routed_copies_per_sec, self.publish_secs, self.errors));
        if let (Some(s), Some(r)) = (self.end_to_end_secs, self.end_to_end_copies_per_sec) {
            line(
                &mut out,
                format!("end to end:     {r:>12.0} copies/s completed ({s:.2} s)"),
            );
        }
        let lat = |out: &mut String, name: &str, l: &Latency| {
            line(out, format!("{name:<16}p50 {:>8.2} ms   p90 {:>8.2} ms   p99 {:>8.2} ms   max {:>8.2} ms   (n={})",
                l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.count));
        };
        lat(&mut out, "publish", &self.publish_latency);
        if let Some(l) = &self.interest_change_latency {
            lat(&mut out, "interest change", l);
        }
        if let Some(l) = &self.claim_latency {
            lat(&mut out, "claim", l);
        }
        if let Some(l) = &self.publish_to_claim {
            lat(&mut out, "publish->claim", l);
        }
        if let (Some(c), Some(w)) = (self.commits, self.writes_per_commit) {
            line(
                &mut out,
                format!("store:          {c} commits, {w:.1} records per commit"),
            );
        }
        if let (Some(c), Some(t), Some(p)) = (
            self.server_cpu_secs,
            self.server_cpu_us_per_task,
            self.server_cpu_us_per_copy,
        ) {
            line(
                &mut out,
                format!("server CPU:     {c:.2} s: {t:.1} µs per task, {p:.1} µs per copy"),
            );
        }
        if let Some(c) = self.client_cpu_secs {
            let whose = if self.server_cpu_secs.is_some() {
                "the clients"
            } else {
                "clients and server in this process"
            };
            line(&mut out, format!("bench CPU:      {c:.2} s ({whose})"));
        }
        if let Some(m) = self.server_rss_mib {
            line(&mut out, format!("server memory:  {m:.0} MiB resident"));
        }
        if let Some(d) = self.disk {
            line(
                &mut out,
                format!(
                    "disk:           {:.0} fsyncs/s appending, {:.0} fsyncs/s overwriting",
                    d.append_fsyncs_per_sec, d.overwrite_fsyncs_per_sec
                ),
            );
        }
        if let Some(m) = self.rss_mib {
            line(
                &mut out,
                format!("memory:         {m:.0} MiB resident (this process)"),
            );
        }
        out
    }
}

fn progress_bar(show: bool, total: u64) -> indicatif::ProgressBar {
    if !show {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {pos}/{len} {per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar
}

/// What the server's `/metrics` says of its process.
struct ServerSample {
    cpu_secs: f64,
    rss_mib: f64,
}

async fn server_sample(client: &Client) -> anyhow::Result<ServerSample> {
    let text = client
        .metrics()
        .await
        .context("reading the server's /metrics (an admin key when keys are set)")?;
    let cpu_secs = metric(&text, "process_cpu_seconds_total")
        .context("the server's /metrics has no process_cpu_seconds_total")?;
    let rss = metric(&text, "process_resident_memory_bytes").unwrap_or(0.0);
    Ok(ServerSample {
        cpu_secs,
        rss_mib: rss / (1024.0 * 1024.0),
    })
}

/// The value of an unlabelled sample in Prometheus text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok()).flatten()
    })
}

/// This process's CPU time (user and system).
fn own_cpu_secs() -> Option<f64> {
    // A process that has just started may well have used no tick yet: zero
    // is a reading, only a missing /proc is none.
    std::path::Path::new("/proc/self/stat")
        .exists()
        .then(crate::metrics::process::cpu_seconds)
}

/// Resident set size of this process, from /proc.
pub fn resident_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("interq-bench-{}", uuid::Uuid::now_v7()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
