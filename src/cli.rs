//! The operator's commands: `interq status`, `queues`, `tasks`, `retry` and
//! the rest, over the API with the Rust client. Tables for people, `--json`
//! for scripts; the exit code says what happened (see [`Exit`]).

use std::io::Read;
use std::path::PathBuf;

use serde_json::{json, Map, Value};

use crate::client::{Client, ClientError, ClientOptions, Publish, TaskQuery, TaskSearch};
use crate::model::{Millis, TaskId};

/// Where the commands go, and how they answer.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The interq to talk to: http(s)://, or interq(s):// for the line
    /// protocol.
    #[arg(long, env = "INTERQ_URL", default_value = "http://127.0.0.1:7700")]
    pub url: String,
    /// The key to present (an admin key for most commands).
    #[arg(long, env = "INTERQ_KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// PEM certificates to trust for https:// and interqs:// URLs.
    #[arg(long)]
    pub ca_cert: Option<PathBuf>,
    /// The API's JSON answer, for scripts, instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// The operator's commands.
#[derive(Debug, clap::Subcommand)]
pub enum Op {
    /// Queues, workers and counters at a glance.
    Status {
        #[command(flatten)]
        target: Target,
    },
    /// Every queue with its counts.
    Queues {
        #[command(flatten)]
        target: Target,
    },
    /// Every registered worker.
    Workers {
        #[command(flatten)]
        target: Target,
    },
    /// Every schedule, with its next run.
    Schedules {
        #[command(flatten)]
        target: Target,
    },
    /// A queue's fairness groups with ready or running copies, the most
    /// ready first, and which a limit holds back.
    Groups {
        queue: String,
        /// How many to list.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        target: Target,
    },
    /// A batch's totals, whether it ended, and its callback.
    Batch {
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// A page of copies in one state, of one queue or all.
    Tasks {
        /// ready, scheduled, running, failed, completed, cancelled, expired.
        #[arg(long, default_value = "ready")]
        state: String,
        #[arg(long)]
        queue: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// The queue's archive of finished copies past its recent history
        /// (embedded store), newest first; --after ID gives the page newer
        /// than ID.
        #[arg(long, requires = "queue", conflicts_with = "offset")]
        archived: bool,
        /// With --archived: the copies archived before this task id (the
        /// last id of the page before).
        #[arg(long, requires = "archived")]
        before: Option<String>,
        #[command(flatten)]
        search: SearchArgs,
        #[command(flatten)]
        target: Target,
    },
    /// One copy (or every copy of a publish), with its history and the end
    /// of its log.
    Task {
        id: String,
        #[command(flatten)]
        target: Target,
    },
    /// A copy's log: what its command wrote. With `--follow`, as it comes,
    /// until the copy ends (exit 4 when it did not complete).
    Log {
        id: String,
        #[arg(long, short)]
        follow: bool,
        /// Begin at this byte (a previous read's `next`).
        #[arg(long)]
        offset: Option<u64>,
        #[command(flatten)]
        target: Target,
    },
    /// Publishes a task: its data as a JSON object, from the argument or
    /// standard input.
    Publish {
        /// The task's data (`-` or nothing: read standard input).
        data: Option<String>,
        /// -100..100, or urgent, high, normal, low, bulk.
        #[arg(long)]
        priority: Option<String>,
        /// Your name for the task, to find or stop it by.
        #[arg(long = "task-key")]
        task_key: Option<String>,
        /// Its fairness group (a tenant, a customer).
        #[arg(long)]
        group: Option<String>,
        /// A copy that completes with an object as its output has the
        /// output published on as a task (docs/workflows.md).
        #[arg(long)]
        publish_output: bool,
        /// Unix seconds before which it does not run.
        #[arg(long)]
        run_at: Option<f64>,
        #[arg(long)]
        max_attempts: Option<u32>,
        /// Seconds a claim may run.
        #[arg(long)]
        ttr: Option<u32>,
        #[arg(long)]
        publisher: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Fresh attempts for failed copies: one, a queue's (`--queue`), or all
    /// (`--all`); with a search, only those that match it.
    Retry {
        id: Option<String>,
        #[arg(long, conflicts_with = "id")]
        queue: Option<String>,
        #[arg(long, conflicts_with_all = ["id", "queue"])]
        all: bool,
        #[command(flatten)]
        search: SearchArgs,
        #[command(flatten)]
        target: Target,
    },
    /// Acts on many copies at once (`POST /tasks`): the ids given, or every
    /// copy in `--state` of `--queue` (or `--all`) that matches the search,
    /// a thousand a step.
    Act {
        /// retry, cancel, run-now, move (with --to) or remove.
        action: String,
        /// Copies to act on (up to 1,000).
        ids: Vec<String>,
        /// With move: the queue the copies go to.
        #[arg(long)]
        to: Option<String>,
        #[arg(long, conflicts_with = "ids")]
        queue: Option<String>,
        #[arg(long, conflicts_with_all = ["ids", "queue"])]
        all: bool,
        /// The state of the copies a search takes (retry: failed, run-now:
        /// scheduled by default).
        #[arg(long)]
        state: Option<String>,
        /// With remove, --queue and a finished --state: the queue's
        /// archived copies that match.
        #[arg(long, requires = "queue")]
        archived: bool,
        #[command(flatten)]
        search: SearchArgs,
        #[command(flatten)]
        target: Target,
    },
    /// Stops a copy (or every copy of a publish), or every copy with a key.
    Cancel {
        id: Option<String>,
        #[arg(long = "task-key", conflicts_with = "id")]
        task_key: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// A queue keeps taking tasks but hands none out.
    Pause {
        queue: String,
        #[command(flatten)]
        target: Target,
    },
    /// A paused queue hands out tasks again.
    Resume {
        queue: String,
        #[command(flatten)]
        target: Target,
    },
    /// Every queue's interests; with `--set`, replaces one queue's; with
    /// `--try`, which queues a task would reach and why.
    Interests {
        queue: Option<String>,
        /// The new interests, as JSON: `"*"` or `{"field": "regex"}`.
        #[arg(long, requires = "queue")]
        set: Option<String>,
        /// A task's data, as a JSON object: the queues it would reach now
        /// (of `queue` alone, when given), with the field and pattern that
        /// took it. Nothing is published.
        #[arg(long = "try", conflicts_with = "set")]
        try_data: Option<String>,
        #[command(flatten)]
        target: Target,
    },
}

/// A search over task lists; every filter given must hold.
#[derive(Debug, Clone, clap::Args)]
pub struct SearchArgs {
    /// Only copies published with this key.
    #[arg(long = "task-key")]
    task_key: Option<String>,
    /// Only copies from this publisher.
    #[arg(long)]
    publisher: Option<String>,
    /// Only copies of this fairness group.
    #[arg(long)]
    group: Option<String>,
    /// Only copies whose failure reason holds this text (any case).
    #[arg(long)]
    reason: Option<String>,
    /// Only copies published at or after: Unix seconds or a UTC date and
    /// time (2026-12-03T05:30).
    #[arg(long)]
    since: Option<String>,
    /// Only copies published before.
    #[arg(long)]
    until: Option<String>,
    /// `field=pattern` on the task's data (a dotted path, `*` for any run);
    /// repeat for several.
    #[arg(long)]
    data: Vec<String>,
    /// Only copies published after this task id: the last id of a page
    /// lists the next one, at the cost of the first.
    #[arg(long)]
    after: Option<String>,
}

impl SearchArgs {
    fn is_empty(&self) -> bool {
        self.task_key.is_none()
            && self.publisher.is_none()
            && self.group.is_none()
            && self.reason.is_none()
            && self.since.is_none()
            && self.until.is_none()
            && self.data.is_empty()
            && self.after.is_none()
    }
}

impl From<SearchArgs> for TaskSearch {
    fn from(a: SearchArgs) -> Self {
        TaskSearch {
            key: a.task_key,
            publisher: a.publisher,
            group: a.group,
            reason: a.reason,
            since: a.since,
            until: a.until,
            data: a.data,
            after: a.after,
        }
    }
}

/// What a command's exit code means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It did what was asked.
    Done = 0,
    /// interq refused it (a 4xx: bad input, unknown id, a key that may not).
    Refused = 1,
    /// The command line itself is wrong (clap uses 2 as well).
    Usage = 2,
    /// interq could not be reached, or failed (a 5xx).
    Unavailable = 3,
    /// A followed task ended without completing (failed, cancelled,
    /// expired).
    NotCompleted = 4,
}

/// A command's failure, and its exit code.
#[derive(Debug)]
pub struct Failure {
    pub exit: Exit,
    pub message: String,
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        let exit = match &e {
            ClientError::Api { status, .. } if *status < 500 => Exit::Refused,
            ClientError::BadUrl(_) => Exit::Usage,
            _ => Exit::Unavailable,
        };
        Self {
            exit,
            message: e.to_string(),
        }
    }
}

fn usage(message: impl Into<String>) -> Failure {
    Failure {
        exit: Exit::Usage,
        message: message.into(),
    }
}

/// Runs `op`; what to print on success.
pub async fn run(op: Op) -> Result<String, Failure> {
    let target = match &op {
        Op::Status { target }
        | Op::Queues { target }
        | Op::Workers { target }
        | Op::Schedules { target }
        | Op::Groups { target, .. }
        | Op::Batch { target, .. }
        | Op::Tasks { target, .. }
        | Op::Task { target, .. }
        | Op::Log { target, .. }
        | Op::Publish { target, .. }
        | Op::Retry { target, .. }
        | Op::Act { target, .. }
        | Op::Cancel { target, .. }
        | Op::Pause { target, .. }
        | Op::Resume { target, .. }
        | Op::Interests { target, .. } => target.clone(),
    };
    let ca_pem = match &target.ca_cert {
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| usage(format!("reading --ca-cert {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let client = Client::with_options(
        &target.url,
        ClientOptions {
            key: target.key.clone(),
            ca_pem,
        },
    )?;
    let json_out = target.json;
    let (answer, human): (Value, fn(&Value) -> String) = match op {
        Op::Status { .. } => (client.status(&[]).await?, show_status),
        Op::Queues { .. } => (
            client.status(&[("queues", "")]).await?["queues"].take(),
            show_queues,
        ),
        Op::Workers { .. } => (
            client.status(&[("workers", "")]).await?["workers"].take(),
            show_workers,
        ),
        Op::Schedules { .. } => (
            client.status(&[("schedules", "")]).await?["schedules"].take(),
            show_schedules,
        ),
        Op::Groups { queue, limit, .. } => (
            client
                .status(&[("groups", queue.as_str()), ("limit", &limit.to_string())])
                .await?["groups"]
                .take(),
            show_groups,
        ),
        Op::Batch { id, .. } => (
            client.status(&[("batch", id.as_str())]).await?["batch"].take(),
            show_batch,
        ),
        Op::Tasks {
            state,
            queue,
            limit,
            offset,
            archived,
            before,
            search,
            ..
        } => {
            let query = TaskQuery {
                state,
                queue,
                offset,
                limit,
                archived,
                before,
                search: search.into(),
            };
            let tasks = client.list_tasks(&query).await?;
            (json!(tasks), show_tasks)
        }
        Op::Task { id, .. } => {
            let id = task_id(&id)?;
            let mut task = client.status(&[("task", &id.to_string())]).await?["task"].take();
            // One copy (not a publish's list) has a log.
            if task.get("taskId").is_some() {
                task["log"] = client.task_log(id, None).await?;
            }
            (task, show_task)
        }
        Op::Log {
            id, follow, offset, ..
        } => {
            let id = task_id(&id)?;
            if !follow {
                (client.task_log(id, offset).await?, show_log)
            } else {
                return follow_log(&client, id, offset, json_out).await;
            }
        }
        Op::Publish {
            data,
            priority,
            task_key,
            group,
            publish_output,
            run_at,
            max_attempts,
            ttr,
            publisher,
            ..
        } => {
            let data = read_data(data)?;
            let mut task = Publish::new(data);
            task.key = task_key;
            task.group = group;
            task.publish_output = publish_output;
            task.run_at = run_at;
            task.max_attempts = max_attempts;
            task.ttr = ttr;
            task.publisher = publisher;
            let mut args = serde_json::to_value(&task).expect("a task encodes");
            if let Some(p) = priority {
                // A number or a name: the server checks either.
                args["priority"] = p.parse::<i64>().map_or(json!(p), |n| json!(n));
            }
            (client.call("publish", &args).await?, show_published)
        }
        Op::Retry {
            id,
            queue,
            all,
            search,
            ..
        } => {
            let id = id.as_deref().map(task_id).transpose()?;
            if id.is_none() && queue.is_none() && !all {
                return Err(usage(
                    "give a task id, --queue Q, or --all (every failed task)",
                ));
            }
            if id.is_some() && !search.is_empty() {
                return Err(usage("a search retries by --queue or --all, not one task"));
            }
            let retried = match search.is_empty() {
                true => client.retry(id, queue.as_deref()).await?,
                false => {
                    client
                        .retry_matching(queue.as_deref(), &search.into())
                        .await?
                }
            };
            (json!({"retried": retried}), show_retried)
        }
        Op::Act {
            action,
            ids,
            to,
            queue,
            all,
            state,
            archived,
            search,
            ..
        } => {
            if ids.is_empty() && queue.is_none() && !all {
                return Err(usage("give task ids, --queue Q, or --all"));
            }
            if !ids.is_empty() && (state.is_some() || !search.is_empty()) {
                return Err(usage("task ids take no --state or search"));
            }
            let mut args =
                serde_json::to_value(TaskSearch::from(search)).expect("a search encodes");
            args["action"] = json!(if action == "run-now" {
                "runNow"
            } else {
                action.as_str()
            });
            if !ids.is_empty() {
                args["taskIds"] = json!(ids);
            }
            let fields = [("to", to), ("queue", queue), ("state", state)];
            for (field, value) in fields {
                if let Some(v) = value {
                    args[field] = json!(v);
                }
            }
            for (field, on) in [("all", all), ("archived", archived)] {
                if on {
                    args[field] = json!(true);
                }
            }
            (client.call("actOnTasks", &args).await?, show_acted)
        }
        Op::Cancel { id, task_key, .. } => {
            let answer = match (id, task_key) {
                (Some(id), _) => client.cancel_task(task_id(&id)?).await?,
                (None, Some(key)) => client.cancel_key(&key).await?,
                (None, None) => return Err(usage("give a task id, or --task-key K")),
            };
            (answer, show_cancelled)
        }
        Op::Pause { queue, .. } => (
            client.set_queue(&queue, paused(true)).await?,
            show_queue_settings,
        ),
        Op::Resume { queue, .. } => (
            client.set_queue(&queue, paused(false)).await?,
            show_queue_settings,
        ),
        Op::Interests {
            queue,
            try_data: Some(data),
            ..
        } => {
            let data: Value = serde_json::from_str(&data)
                .map_err(|e| usage(format!("--try is not JSON: {e}")))?;
            let mut answer = client.call("tryTask", &json!({ "data": data })).await?;
            if let (Some(q), Some(list)) = (queue, answer["queues"].as_array_mut()) {
                list.retain(|r| r["queue"] == q.as_str());
            }
            (answer, show_reach)
        }
        Op::Interests { queue, set, .. } => match (queue, set) {
            (Some(queue), Some(set)) => {
                let interests: Value = serde_json::from_str(&set)
                    .map_err(|e| usage(format!("--set is not JSON: {e}")))?;
                let answer = client
                    .call(
                        "setInterests",
                        &json!({"queue": queue, "interests": interests}),
                    )
                    .await?;
                (answer, show_one_interest)
            }
            (queue, _) => {
                let mut all = client.status(&[("interests", "")]).await?["interests"].take();
                if let Some(q) = queue {
                    let one = all.get_mut(&q).map(Value::take).ok_or_else(|| Failure {
                        exit: Exit::Refused,
                        message: format!("queue {q} has no interests"),
                    })?;
                    all = json!({ q: one });
                }
                (all, show_interests)
            }
        },
    };
    Ok(if json_out {
        serde_json::to_string_pretty(&answer).expect("JSON encodes")
    } else {
        human(&answer)
    })
}

/// Writes a log to standard output as it grows (with `--json`, a line per
/// piece and one for the end); the exit code says how the task ended.
async fn follow_log(
    client: &Client,
    id: TaskId,
    offset: Option<u64>,
    json_out: bool,
) -> Result<String, Failure> {
    use std::io::Write;
    let end = client
        .follow_log(id, offset, |text| {
            let mut out = std::io::stdout().lock();
            let _ = if json_out {
                writeln!(out, "{}", json!({"text": text}))
            } else {
                write!(out, "{text}")
            };
            let _ = out.flush();
        })
        .await?;
    let state = end["state"].as_str().unwrap_or("gone").to_owned();
    if json_out {
        println!("{}", json!({"end": end}));
    }
    if state == "completed" {
        Ok(String::new())
    } else {
        Err(Failure {
            exit: Exit::NotCompleted,
            message: format!("task {id} ended {state}"),
        })
    }
}

fn show_log(v: &Value) -> String {
    v["text"].as_str().unwrap_or("").to_owned()
}

fn paused(on: bool) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("paused".into(), json!(on));
    m
}

fn task_id(text: &str) -> Result<TaskId, Failure> {
    text.parse()
        .map_err(|_| usage(format!("{text:?} is not a task id (a UUID)")))
}

/// The data to publish: the argument, or standard input.
fn read_data(arg: Option<String>) -> Result<Value, Failure> {
    let text = match arg.as_deref() {
        Some("-") | None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| usage(format!("reading standard input: {e}")))?;
            text
        }
        Some(text) => text.to_owned(),
    };
    match serde_json::from_str(&text) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(usage("the data must be a JSON object: '{\"to\": \"ada\"}'")),
        Err(e) => Err(usage(format!("the data is not JSON: {e}"))),
    }
}

/// Columns padded to their widest cell.
fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Unix seconds as a UTC time, to the second.
fn when(v: &Value) -> String {
    match v.as_f64() {
        Some(secs) => {
            let at = Millis::from_secs_f64(secs)
                .and_then(|m| chrono::DateTime::from_timestamp_millis(m.0 as i64));
            at.map_or_else(|| text(v), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        }
        None => "-".into(),
    }
}

fn queue_rows(queues: &Value) -> Vec<Vec<String>> {
    queues
        .as_array()
        .into_iter()
        .flatten()
        .map(|q| {
            ["name", "ready", "scheduled", "running", "failed"]
                .iter()
                .map(|k| text(&q[*k]))
                .collect()
        })
        .collect()
}

fn show_status(v: &Value) -> String {
    let mut out = table(
        &["QUEUE", "READY", "SCHEDULED", "RUNNING", "FAILED"],
        &queue_rows(&v["queues"]),
    );
    out.push_str(&format!("\nworkers: {}\n", text(&v["workers"])));
    if let Some(counters) = v["counters"].as_object() {
        let parts: Vec<String> = counters
            .iter()
            .map(|(k, n)| format!("{k} {}", text(n)))
            .collect();
        out.push_str(&format!("counters: {}\n", parts.join(", ")));
    }
    out
}

fn show_queues(v: &Value) -> String {
    table(
        &["QUEUE", "READY", "SCHEDULED", "RUNNING", "FAILED"],
        &queue_rows(v),
    )
}

fn show_workers(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            vec![
                text(&w["workerId"]),
                text(&w["name"]),
                text(&w["state"]),
                text(&w["queues"]),
                w["running"].as_array().map_or(0, Vec::len).to_string(),
                when(&w["lastSeen"]),
            ]
        })
        .collect();
    table(
        &["ID", "NAME", "STATE", "QUEUES", "RUNNING", "LAST SEEN"],
        &rows,
    )
}

fn show_schedules(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            vec![
                text(&s["name"]),
                text(&s["spec"]),
                when(&s["nextRun"]),
                when(&s["lastRun"]),
            ]
        })
        .collect();
    table(&["NAME", "SPEC", "NEXT RUN", "LAST RUN"], &rows)
}

fn show_groups(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| {
            vec![
                text(&g["group"]),
                text(&g["ready"]),
                text(&g["running"]),
                g.get("held").map_or_else(|| "-".into(), text),
            ]
        })
        .collect();
    format!(
        "{}{} groups with ready or running copies\n",
        table(&["GROUP", "READY", "RUNNING", "HELD BY"], &rows),
        text(&v["total"])
    )
}

fn show_batch(v: &Value) -> String {
    let state = if v["ended"] == Value::Bool(true) {
        "ended"
    } else if v["openForMore"] == Value::Bool(true) {
        "open for more tasks"
    } else {
        "running"
    };
    let totals: crate::model::BatchTotals =
        serde_json::from_value(v["totals"].clone()).unwrap_or_default();
    let rows: Vec<Vec<String>> = totals
        .by_state()
        .iter()
        .map(|(s, n)| vec![(*s).to_owned(), n.to_string()])
        .collect();
    let callback = match (&v["callback"], v.get("onComplete")) {
        (Value::String(p), _) => format!("callback: published as {p}\n"),
        (_, Some(_)) => "callback: published when the batch ends\n".to_owned(),
        _ => String::new(),
    };
    format!(
        "batch {} ({state}), {} copies\n{}{callback}",
        text(&v["id"]),
        text(&v["copies"]),
        table(&["STATE", "COPIES"], &rows)
    )
}

fn show_tasks(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            vec![
                text(&t["taskId"]),
                text(&t["queue"]),
                text(&t["state"]),
                format!("{}/{}", text(&t["attempt"]), text(&t["maxAttempts"])),
                text(&t["priority"]),
                when(&t["runAt"]),
                t.get("key").map_or("-".into(), text),
                t.get("failReason").map_or(String::new(), |r| {
                    text(r).lines().next().unwrap_or("").to_owned()
                }),
            ]
        })
        .collect();
    table(
        &[
            "ID", "QUEUE", "STATE", "ATTEMPT", "PRIORITY", "RUN AT", "KEY", "REASON",
        ],
        &rows,
    )
}

fn show_task(v: &Value) -> String {
    // A publish's id answers its copies.
    if let Some(copies) = v.get("copies") {
        return show_tasks(copies);
    }
    let mut out = String::new();
    for k in [
        "taskId",
        "publishId",
        "queue",
        "state",
        "attempt",
        "maxAttempts",
        "priority",
        "key",
        "publisher",
        "workerId",
        "failReason",
    ] {
        if let Some(value) = v.get(k).filter(|x| !x.is_null()) {
            out.push_str(&format!("{k:<12} {}\n", text(value)));
        }
    }
    for k in [
        "createdAt",
        "runAt",
        "startedAt",
        "finishedAt",
        "leaseUntil",
    ] {
        if let Some(value) = v.get(k).filter(|x| !x.is_null()) {
            out.push_str(&format!("{k:<12} {}\n", when(value)));
        }
    }
    if let Some(data) = v.get("data") {
        out.push_str(&format!("{:<12} {data}\n", "data"));
    }
    if let Some(history) = v["history"].as_array() {
        out.push_str("\nhistory:\n");
        for e in history {
            out.push_str(&format!(
                "  {}  {}{}\n",
                when(&e["at"]),
                text(&e["event"]),
                e.get("detail")
                    .filter(|d| !d.is_null())
                    .map_or(String::new(), |d| format!(": {}", text(d)))
            ));
        }
    }
    if let Some(log) = v.get("log").and_then(|l| l["text"].as_str()) {
        if !log.is_empty() {
            // The end of it: `interq log` has the rest.
            let lines: Vec<&str> = log.lines().collect();
            let shown = &lines[lines.len().saturating_sub(LOG_LINES_SHOWN)..];
            out.push_str(&format!(
                "\nlog ({} bytes kept; the last {} lines, `interq log` for all):\n",
                log.len(),
                shown.len()
            ));
            for line in shown {
                out.push_str(&format!("  {line}\n"));
            }
        }
    }
    out
}

/// Lines of its log `interq task` shows.
const LOG_LINES_SHOWN: usize = 20;

fn show_published(v: &Value) -> String {
    let queues = text(&v["queues"]);
    format!(
        "published {} to {}\n",
        text(&v["taskId"]),
        if queues.is_empty() {
            "no queue (no interest matched)".into()
        } else {
            queues
        }
    )
}

fn show_retried(v: &Value) -> String {
    let n = v["retried"].as_array().map_or(0, Vec::len);
    format!("retried {n} task(s)\n")
}

fn show_acted(v: &Value) -> String {
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    let mut out = format!("{}: {} task(s)", text(&v["action"]), n("done"));
    if n("requested") > 0 {
        out += &format!(", {} running asked to stop", n("requested"));
    }
    if n("skipped") > 0 {
        out += &format!(", {} skipped", n("skipped"));
    }
    out + "\n"
}

fn show_cancelled(v: &Value) -> String {
    if let Some(n) = v.get("deleted") {
        return format!("deleted {}\n", text(n));
    }
    let n = |k: &str| v[k].as_array().map_or(0, Vec::len);
    format!(
        "cancelled {}, cancellation asked of running {}, untouched {}\n",
        n("cancelled"),
        n("cancelRequested"),
        n("untouched")
    )
}

fn show_queue_settings(v: &Value) -> String {
    let paused = v["settings"]["paused"].as_bool().unwrap_or(false);
    format!(
        "queue {} {}\n",
        text(&v["queue"]),
        if paused {
            "paused: it takes tasks and hands none out"
        } else {
            "hands out tasks"
        }
    )
}

fn show_one_interest(v: &Value) -> String {
    format!("{}  {}\n", text(&v["queue"]), v["interests"])
}

fn show_reach(v: &Value) -> String {
    let reached = v["queues"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if reached.is_empty() {
        return "no queue would take it\n".into();
    }
    let rows: Vec<Vec<String>> = reached
        .iter()
        .map(|r| {
            let why = match r["fields"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                [] if r["unrouted"] == true => "unrouted: no other queue wants it".to_owned(),
                [] => "\"*\": every task".to_owned(),
                fields => fields
                    .iter()
                    .map(|f| {
                        format!(
                            "{} = {} (matches {})",
                            text(&f["field"]),
                            text(&f["value"]),
                            text(&f["pattern"])
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            };
            vec![text(&r["queue"]), why]
        })
        .collect();
    table(&["QUEUE", "BECAUSE"], &rows)
}

fn show_interests(v: &Value) -> String {
    let rows: Vec<Vec<String>> = v
        .as_object()
        .into_iter()
        .flatten()
        .map(|(q, i)| vec![q.clone(), i.to_string()])
        .collect();
    table(&["QUEUE", "INTERESTS"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_to_the_widest_cell() {
        let t = table(
            &["A", "BB"],
            &[
                vec!["long cell".into(), "x".into()],
                vec!["s".into(), "".into()],
            ],
        );
        assert_eq!(t, "A          BB\nlong cell  x\ns\n");
    }

    #[test]
    fn times_read_as_utc() {
        assert_eq!(when(&json!(0.0)), "1970-01-01 00:00:00");
        assert_eq!(when(&Value::Null), "-");
    }
}
