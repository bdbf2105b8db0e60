//! `interq worker`: registers on queues, long-polls for tasks and runs a
//! command once per task, so that any program becomes a worker.
//!
//! The command gets the task's `data` as JSON on standard input and its
//! identity in the environment (`INTERQ_TASK_ID`, `INTERQ_PUBLISH_ID`,
//! `INTERQ_QUEUE`, `INTERQ_ATTEMPT`, `INTERQ_MAX_ATTEMPTS`, and
//! `INTERQ_DATA_<KEY>` for each top-level string, number or boolean of `data`,
//! the key upper-cased with other characters than letters and digits made `_`).
//! Exit 0 completes the task with the tail of standard output as `output`;
//! anything else fails it with the tail of standard error, and the server's
//! retries apply. The command runs in its own process group, which a timeout or
//! a shutdown kills whole. While it runs, what it writes goes to the task's
//! log on the server (`live`).

mod live;

use std::collections::HashMap;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::client::{Client, ClientError};
use crate::model::{Task, WorkerId};

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub url: String,
    pub queues: Vec<String>,
    /// One weight per queue, or none for strict order.
    pub weights: Vec<u32>,
    /// Commands run at once.
    pub concurrency: usize,
    /// Hard limit per command; the task's `ttr` when absent.
    pub timeout: Option<Duration>,
    /// On shutdown, how long running commands may finish before they are
    /// killed and their tasks failed.
    pub grace: Duration,
    /// Longest long poll per claim.
    pub poll_wait: Duration,
    /// Let a task's `data.command` (an array of strings) and `data.env` (an
    /// object of strings) replace the command and add to its environment.
    pub allow_task_command: bool,
    /// Bytes kept of standard output (for `output`) and error (for the
    /// failure reason).
    pub tail_bytes: usize,
    /// The command and its arguments.
    pub command: Vec<String>,
    /// Key and trusted certificates for the interq.
    pub client: crate::client::ClientOptions,
    /// The name shown in status (default: host and process id).
    pub name: Option<String>,
    /// How often a running task's lease is renewed (and a cancellation
    /// noticed); default: a third of its ttr, at most 10 s.
    pub heartbeat: Option<Duration>,
    /// After SIGTERM to a command being stopped, how long until SIGKILL.
    pub kill_after: Duration,
    /// At start, exit when interq cannot be reached instead of waiting for
    /// it.
    pub fail_fast: bool,
    /// How often a running command's output is sent to the task's log;
    /// `None` sends none.
    pub log_every: Option<Duration>,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:7700".into(),
            queues: Vec::new(),
            weights: Vec::new(),
            concurrency: 1,
            timeout: None,
            grace: Duration::from_secs(30),
            poll_wait: Duration::from_secs(20),
            allow_task_command: false,
            tail_bytes: 4096,
            command: Vec::new(),
            client: crate::client::ClientOptions::default(),
            name: None,
            heartbeat: None,
            kill_after: Duration::from_secs(5),
            fail_fast: false,
            log_every: Some(Duration::from_secs(1)),
        }
    }
}

/// Why the worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("give a command after `--`, or allow tasks to carry one with --allow-task-command")]
    NoCommand,
    #[error("give at least one --queue")]
    NoQueue,
    /// The command cannot run: caught before anything is claimed.
    #[error("{0}")]
    Command(String),
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// Runs until `stop` resolves, then stops claiming, lets running commands
/// finish within the grace time, fails what is left, and deregisters.
pub async fn run(
    opts: WorkerOptions,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), WorkerError> {
    if opts.command.is_empty() && !opts.allow_task_command {
        return Err(WorkerError::NoCommand);
    }
    if opts.queues.is_empty() {
        return Err(WorkerError::NoQueue);
    }
    if let Some(program) = opts.command.first() {
        executable(program).map_err(WorkerError::Command)?;
    }
    let client = Client::with_options(&opts.url, opts.client.clone())?;
    let name = opts.name.clone().unwrap_or_else(|| {
        let host = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_else(|| "localhost".into());
        format!("{host}:{}", std::process::id())
    });
    tokio::pin!(stop);
    let Some(mut worker) = register(&client, &opts, &name, opts.fail_fast, &mut stop).await? else {
        return Ok(());
    };
    tracing::info!(%worker, name, queues = ?opts.queues, concurrency = opts.concurrency, "worker registered");
    warn_of_queues_without_interests(&client, &opts.queues).await;

    let opts = Arc::new(opts);
    let slots = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let (kill_tx, kill_rx) = watch::channel(false);
    let mut running = JoinSet::new();
    let tally = Arc::new(Tally::default());
    let mut backoff = Duration::from_millis(100);
    loop {
        let first = tokio::select! {
            permit = Arc::clone(&slots).acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = &mut stop => break,
        };
        let wanted = 1 + slots.available_permits();
        let claimed = tokio::select! {
            claimed = client.claim_many(worker, wanted, Some(opts.poll_wait)) => claimed,
            // Dropping a claim in flight may orphan what it took; the
            // deregistration at the end puts such tasks back.
            _ = &mut stop => break,
        };
        let tasks = match claimed {
            Ok(tasks) => {
                backoff = Duration::from_millis(100);
                tasks
            }
            Err(e) if e.code() == Some("unknown_worker") => {
                // Removed from the console, idle past the server's timeout,
                // or a restored backup: the same worker, registered again.
                match register(&client, &opts, &name, false, &mut stop).await? {
                    Some(again) => {
                        tracing::info!(old = %worker, new = %again, name, "the server no longer knew this worker; registered again");
                        worker = again;
                        continue;
                    }
                    None => break,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "claim failed");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = &mut stop => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        let mut permit = Some(first);
        for task in tasks {
            let permit = match permit.take() {
                Some(p) => p,
                None => Arc::clone(&slots)
                    .try_acquire_owned()
                    .expect("claimed no more tasks than free slots"),
            };
            let (client, opts, kill) = (client.clone(), Arc::clone(&opts), kill_rx.clone());
            let tally = Arc::clone(&tally);
            running.spawn(async move {
                let outcome = run_task(&client, worker, task, &opts, kill).await;
                tally.count(outcome);
                drop(permit);
            });
        }
    }

    tracing::info!(
        running = running.len(),
        grace_ms = opts.grace.as_millis() as u64,
        "worker stopping"
    );
    let drained = tokio::time::timeout(opts.grace, async {
        while running.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        let _ = kill_tx.send(true);
        while running.join_next().await.is_some() {}
    }
    if let Err(e) = client.deregister(worker).await {
        tracing::warn!(error = %e, "deregistering failed; the server removes idle workers");
    }
    tally.log_stopped(worker);
    Ok(())
}

/// Registers, waiting for interq while it cannot be reached (unless
/// `fail_fast`); `None` when stopped meanwhile.
async fn register(
    client: &Client,
    opts: &WorkerOptions,
    name: &str,
    fail_fast: bool,
    stop: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Result<Option<WorkerId>, WorkerError> {
    let queues: Vec<&str> = opts.queues.iter().map(String::as_str).collect();
    let mut backoff = Duration::from_millis(200);
    loop {
        let e = match client
            .register_weighted(&queues, &opts.weights, Some(name))
            .await
        {
            Ok(worker) => return Ok(Some(worker)),
            Err(e) => e,
        };
        // Our own mistakes (a bad queue name, a refused key) do not mend
        // by waiting; an unreachable or unready server may.
        let transient = match &e {
            ClientError::Transport(_) | ClientError::Connection(_) => true,
            ClientError::Api { status, .. } => *status >= 500,
            _ => false,
        };
        if !transient || fail_fast {
            return Err(e.into());
        }
        tracing::warn!(url = %opts.url, error = %e, retry_in_ms = backoff.as_millis() as u64, "cannot register yet; waiting for interq");
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.as_mut() => return Ok(None),
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// A queue without interests receives no task: most likely a misspelt name.
async fn warn_of_queues_without_interests(client: &Client, queues: &[String]) {
    let Ok(status) = client.status(&[("interests", "")]).await else {
        return;
    };
    let Some(interests) = status["interests"].as_object() else {
        return;
    };
    for queue in queues
        .iter()
        .filter(|q| !interests.contains_key(q.as_str()))
    {
        tracing::warn!(queue = %queue, "this queue has no interests: no task reaches it until some are set (PUT /interest)");
    }
}

/// Whether `program` can be run: a path, or a name found on `PATH`.
fn executable(program: &str) -> Result<std::path::PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let candidates: Vec<std::path::PathBuf> = if program.contains('/') {
        vec![program.into()]
    } else {
        std::env::var_os("PATH")
            .map(|path| {
                std::env::split_paths(&path)
                    .map(|dir| dir.join(program))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut found_not_executable = None;
    for candidate in candidates {
        match std::fs::metadata(&candidate) {
            Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => return Ok(candidate),
            Ok(_) => found_not_executable = Some(candidate),
            Err(_) => {}
        }
    }
    Err(match found_not_executable {
        Some(path) => format!("the command `{}` is not an executable file", path.display()),
        None if program.contains('/') => format!("the command `{program}` does not exist"),
        None => format!("the command `{program}` is not found on PATH"),
    })
}

/// How each task ended, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Completed,
    Failed,
    TimedOut,
    Cancelled,
    /// Stopped at shutdown, past the grace time.
    Stopped,
    /// Given up: its lease was gone, or the report could not be made.
    Lost,
}

/// Tasks by how they ended, indexed by `Outcome`.
#[derive(Debug, Default)]
struct Tally([std::sync::atomic::AtomicU64; 6]);

impl Tally {
    fn count(&self, outcome: Outcome) {
        self.0[outcome as usize].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn log_stopped(&self, worker: WorkerId) {
        let n = |o: Outcome| self.0[o as usize].load(std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            %worker,
            completed = n(Outcome::Completed),
            failed = n(Outcome::Failed),
            timed_out = n(Outcome::TimedOut),
            cancelled = n(Outcome::Cancelled),
            stopped = n(Outcome::Stopped),
            lost = n(Outcome::Lost),
            "worker stopped"
        );
    }
}

/// How a command ended.
enum Ending {
    Exited(ExitStatus),
    TimedOut(Duration),
    Stopped,
    /// A heartbeat's answer said the task was cancelled.
    Cancelled,
    /// The server no longer holds our lease: someone else owns the task now.
    LeaseLost(String),
}

async fn run_task(
    client: &Client,
    worker: WorkerId,
    task: Task,
    opts: &WorkerOptions,
    mut kill: watch::Receiver<bool>,
) -> Outcome {
    let id = task.task_id;
    let argv = match command_for(&task, opts) {
        Ok(argv) => argv,
        Err(why) => return report_failure(client, worker, &task, &why).await,
    };
    let mut cmd = tokio::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .envs(environment(&task, opts))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return report_failure(
                client,
                worker,
                &task,
                &format!("cannot start `{}`: {e}", argv[0]),
            )
            .await;
        }
    };
    let started = std::time::Instant::now();
    tracing::info!(task = %id, queue = %task.queue, attempt = task.attempt, "running");
    let pid = child.id().map(|p| Pid::from_raw(p as i32));
    if let Some(mut stdin) = child.stdin.take() {
        let input = serde_json::to_vec(&task.data).unwrap_or_default();
        tokio::spawn(async move {
            // A command that does not read its input closes the pipe early.
            let _ = stdin.write_all(&input).await;
        });
    }
    let live = opts.log_every.map(|_| live::Live::default());
    let (ended_tx, ended_rx) = watch::channel(false);
    let sender = opts.log_every.zip(live.clone()).map(|(every, live)| {
        tokio::spawn(live::stream(
            client.clone(),
            worker,
            id,
            live,
            every,
            ended_rx,
        ))
    });
    let stdout = tokio::spawn(tail(child.stdout.take(), opts.tail_bytes, live.clone()));
    let stderr = tokio::spawn(tail(child.stderr.take(), opts.tail_bytes, live));

    let limit = opts
        .timeout
        .unwrap_or(Duration::from_secs(task.ttr.max(1) as u64));
    let deadline = tokio::time::sleep(limit);
    tokio::pin!(deadline);
    let every = opts
        .heartbeat
        .unwrap_or_else(|| Duration::from_secs((task.ttr as u64 / 3).clamp(1, 10)));
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    let ending = loop {
        tokio::select! {
            status = child.wait() => break match status {
                Ok(s) => Ending::Exited(s),
                Err(e) => Ending::LeaseLost(format!("lost the command: {e}")),
            },
            _ = heartbeat.tick() => {
                match client.progress(worker, id, None).await {
                    Ok(t) if t.cancelled => {
                        stop_group(pid, &mut child, opts.kill_after).await;
                        break Ending::Cancelled;
                    }
                    Ok(_) => {}
                    Err(e) if matches!(e.code(), Some("not_lease_holder" | "task_not_running" | "unknown_task" | "unknown_worker")) => {
                        signal_group(pid, Signal::SIGKILL);
                        let _ = child.wait().await;
                        break Ending::LeaseLost(e.to_string());
                    }
                    Err(e) => tracing::warn!(task = %id, error = %e, "heartbeat failed"),
                }
            }
            _ = &mut deadline => {
                signal_group(pid, Signal::SIGKILL);
                let _ = child.wait().await;
                break Ending::TimedOut(limit);
            }
            // The guard `wait_for` returns must not live across the awaits below.
            _ = async { let _ = kill.wait_for(|k| *k).await; } => {
                stop_group(pid, &mut child, opts.kill_after).await;
                break Ending::Stopped;
            }
        }
    };
    // Descendants may keep the pipes open after the command itself ended.
    signal_group(pid, Signal::SIGKILL);
    let out = stdout.await.unwrap_or_default();
    let err = stderr.await.unwrap_or_default();
    // The log is whole before the task ends: appends are refused after.
    let _ = ended_tx.send(true);
    if let Some(sender) = sender {
        let _ = sender.await;
    }
    let ms = started.elapsed().as_millis() as u64;
    let (outcome, result) = match ending {
        Ending::Exited(s) if s.success() => {
            let r = client.complete(worker, id, Some(Value::String(out))).await;
            if r.is_ok() {
                tracing::info!(task = %id, queue = %task.queue, duration_ms = ms, "task completed");
            }
            (Outcome::Completed, r.map(|_| ()))
        }
        Ending::Exited(s) => {
            let how = match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
                (Some(code), _) => format!("exit code {code}"),
                (None, Some(sig)) => format!("killed by signal {sig}"),
                (None, None) => "ended abnormally".to_owned(),
            };
            let why = reason(&how, &err);
            let r = client.fail(worker, id, &why).await;
            if r.is_ok() {
                tracing::warn!(task = %id, queue = %task.queue, duration_ms = ms, reason = first_line(&why), "task failed");
            }
            (Outcome::Failed, r.map(|_| ()))
        }
        Ending::TimedOut(limit) => {
            let how = format!("timed out after {} s", limit.as_secs_f64());
            let r = client.fail(worker, id, &reason(&how, &err)).await;
            if r.is_ok() {
                tracing::warn!(task = %id, queue = %task.queue, duration_ms = ms, "task timed out; its process group was killed");
            }
            (Outcome::TimedOut, r.map(|_| ()))
        }
        Ending::Stopped => {
            let r = client
                .fail(worker, id, &reason("worker shutting down", &err))
                .await;
            if r.is_ok() {
                tracing::warn!(task = %id, queue = %task.queue, duration_ms = ms, "task killed at shutdown, past the grace time; failed");
            }
            (Outcome::Stopped, r.map(|_| ()))
        }
        // A failure report on a cancelled task ends it `cancelled`.
        Ending::Cancelled => {
            let r = client.fail(worker, id, "cancelled").await;
            if r.is_ok() {
                tracing::info!(task = %id, queue = %task.queue, duration_ms = ms, "task cancelled; its command was stopped");
            }
            (Outcome::Cancelled, r.map(|_| ()))
        }
        Ending::LeaseLost(why) => {
            tracing::warn!(task = %id, why, "gave up a task whose lease is gone");
            (Outcome::Lost, Ok(()))
        }
    };
    match result {
        Ok(()) => outcome,
        Err(e) => {
            tracing::warn!(task = %id, error = %e, "report failed; the lease will return the task");
            Outcome::Lost
        }
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

async fn report_failure(client: &Client, worker: WorkerId, task: &Task, why: &str) -> Outcome {
    tracing::warn!(task = %task.task_id, why, "cannot run task");
    match client.fail(worker, task.task_id, why).await {
        Ok(_) => Outcome::Failed,
        Err(e) => {
            tracing::warn!(task = %task.task_id, error = %e, "report failed; the lease will return the task");
            Outcome::Lost
        }
    }
}

fn reason(how: &str, stderr: &str) -> String {
    let stderr = stderr.trim();
    if stderr.is_empty() {
        how.to_owned()
    } else {
        format!("{how}: {stderr}")
    }
}

/// SIGTERM to the command's group, then SIGKILL if it outlives `grace`.
async fn stop_group(pid: Option<Pid>, child: &mut tokio::process::Child, grace: Duration) {
    signal_group(pid, Signal::SIGTERM);
    if tokio::time::timeout(grace, child.wait()).await.is_err() {
        signal_group(pid, Signal::SIGKILL);
        let _ = child.wait().await;
    }
}

fn signal_group(pid: Option<Pid>, signal: Signal) {
    if let Some(pid) = pid {
        // The group may be gone already; nothing to do then.
        let _ = killpg(pid, signal);
    }
}

/// The command to run: the task's own when allowed and present, else ours.
fn command_for(task: &Task, opts: &WorkerOptions) -> Result<Vec<String>, String> {
    if opts.allow_task_command {
        if let Some(own) = task.data.get("command") {
            let argv: Option<Vec<String>> = own
                .as_array()
                .and_then(|a| a.iter().map(|v| v.as_str().map(str::to_owned)).collect());
            return match argv {
                Some(argv) if !argv.is_empty() => Ok(argv),
                _ => Err("`data.command` must be a non-empty array of strings".to_owned()),
            };
        }
    }
    if opts.command.is_empty() {
        return Err("the task has no `data.command` and the worker no command".to_owned());
    }
    Ok(opts.command.clone())
}

/// The variables a command sees on top of the worker's own environment.
fn environment(task: &Task, opts: &WorkerOptions) -> HashMap<String, String> {
    let mut env = HashMap::new();
    for (key, value) in task.data.iter() {
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Null | Value::Array(_) | Value::Object(_) => continue,
        };
        let name: String = key
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        env.insert(format!("INTERQ_DATA_{name}"), text);
    }
    if opts.allow_task_command {
        if let Some(Value::Object(vars)) = task.data.get("env") {
            for (k, v) in vars {
                if let Some(v) = v.as_str() {
                    env.insert(k.clone(), v.to_owned());
                }
            }
        }
    }
    env.insert("INTERQ_TASK_ID".into(), task.task_id.to_string());
    env.insert("INTERQ_PUBLISH_ID".into(), task.publish_id.to_string());
    env.insert("INTERQ_QUEUE".into(), task.queue.to_string());
    env.insert("INTERQ_ATTEMPT".into(), task.attempt.to_string());
    env.insert("INTERQ_MAX_ATTEMPTS".into(), task.max_attempts.to_string());
    env
}

/// Reads a stream to its end, keeping only its last `keep` bytes (as text),
/// and handing all of it to `live` as it comes.
async fn tail(
    stream: Option<impl AsyncRead + Unpin>,
    keep: usize,
    live: Option<live::Live>,
) -> String {
    let Some(mut stream) = stream else {
        return String::new();
    };
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if let Some(live) = &live {
                    live::push(live, &buf[..n]);
                }
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * keep {
                    kept.drain(..kept.len() - keep);
                }
            }
        }
    }
    if kept.len() > keep {
        kept.drain(..kept.len() - keep);
    }
    String::from_utf8_lossy(&kept).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tail_keeps_the_last_bytes() {
        let data: Vec<u8> = (0..20_000u32).map(|i| b'a' + (i % 26) as u8).collect();
        let kept = tail(Some(&data[..]), 100, None).await;
        assert_eq!(kept.as_bytes(), &data[data.len() - 100..]);
        assert_eq!(tail(Some(&b"short"[..]), 100, None).await, "short");
    }
}
