//! `/task/log`: a worker appends what its command writes (POST); an admin
//! reads it back (GET), or follows it while the copy runs (GET with
//! `follow`: server-sent events, one `log` event per piece and an `end`
//! event once the copy has ended).

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::call::{json, over_http, Answer, Call};
use super::error::ApiError;
use super::params::{Body, Params};
use crate::broker::BrokerError;
use crate::model::{TaskId, TaskLog};

/// How often a follower looks for what another node appended, or for an
/// end that no local report announced.
const FOLLOW_POLL: Duration = Duration::from_millis(500);
/// A comment sent on a quiet stream, so that proxies keep it open.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// The most one `log` event carries.
const EVENT_BYTES: usize = 64 * 1024;

/// `POST /task/log`: adds `text` to the log of the copy the worker holds.
pub async fn append(call: Call, body: Body) -> Answer {
    let p = body.params()?;
    let state = &call.state;
    p.only(&["workerId", "taskId", "text"])?;
    let worker = p.required("workerId", p.worker_id("workerId")?)?;
    let task = p.required("taskId", p.task_id("taskId")?)?;
    let text = p.required("text", p.string("text")?)?;
    let max = state.settings.limits.max_log_append_bytes;
    if text.is_empty() || text.len() > max {
        return Err(p.invalid("text", format!("must be 1 to {max} bytes")));
    }
    if !state.broker.keeps_logs() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "logs_off",
            "`text`: this interq keeps no task logs (tasks.log_kept_bytes is 0)",
        ));
    }
    call.may_act_for(worker).await?;
    let total = state
        .broker
        .append_log(worker, task, text.into_bytes())
        .await?;
    json(&json!({"taskId": task, "total": total}))
}

/// `GET /task/log`: the copy's log kept, or from `offset`.
pub async fn read(call: Call, body: Body) -> Answer {
    let p = body.params()?;
    let (task, offset) = parse_read(&p, None)?;
    if p.boolean("follow")?.unwrap_or(false) {
        return Err(p.invalid(
            "follow",
            "streams over HTTP only (server-sent events); read with `offset` instead",
        ));
    }
    let state = &call.state;
    let max = state.broker.log_read_max();
    let log = read_within(&call, task, offset, max).await?;
    json(&view(&log))
}

/// `GET /task/log` over HTTP: as `read`, or with `follow` a stream.
pub async fn read_over_http(req: HttpRequest, body: Body) -> Result<HttpResponse, ApiError> {
    let following = match &body {
        Body::Params(p) => p.boolean("follow")?.unwrap_or(false),
        Body::Batch(_) => false,
    };
    if !following {
        return over_http(|c, b| Box::pin(read(c, b)), req, body).await;
    }
    let p = body.params()?;
    // EventSource reconnects with the last event's id: the offset to go on
    // from.
    let resumed = req
        .headers()
        .get("Last-Event-ID")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let (task, offset) = parse_read(&p, resumed)?;
    let call = Call::from_http(&req);
    // An unknown copy or a queue the key may not see is an error now, not
    // an empty stream.
    let first = read_within(&call, task, offset, EVENT_BYTES).await?;
    let stream = futures_util::stream::unfold(
        Follower {
            call,
            task,
            next: Some(first),
            offset: 0,
            news: None,
            quiet_since: tokio::time::Instant::now(),
            behind: false,
            done: false,
        },
        |mut f| async move {
            let event = f.next_event().await?;
            Some((Ok::<_, std::convert::Infallible>(event), f))
        },
    );
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream))
}

fn parse_read(p: &Params, resumed: Option<u64>) -> Result<(TaskId, Option<u64>), ApiError> {
    p.only(&["taskId", "offset", "follow"])?;
    let task = p.required("taskId", p.task_id("taskId")?)?;
    let offset = p.integer("offset", 0, i64::MAX as u64)?.or(resumed);
    Ok((task, offset))
}

/// Reads a log, as if the copy did not exist for a key limited to other
/// queues.
async fn read_within(
    call: &Call,
    task: TaskId,
    offset: Option<u64>,
    max: usize,
) -> Result<TaskLog, ApiError> {
    let log = call.state.broker.task_log(task, offset, max).await?;
    if let Some(within) = call.within() {
        if !within.allows(log.queue.as_str()) {
            return Err(BrokerError::UnknownTask(task).into());
        }
    }
    Ok(log)
}

/// A log as the API answers it: `text` from `offset` to `total`, cut at
/// whole characters.
fn view(log: &TaskLog) -> Value {
    let (offset, text) = log.whole_text();
    json!({
        "taskId": log.task_id,
        "queue": log.queue,
        "state": log.state,
        "start": log.start,
        "offset": offset,
        "next": offset + text.len() as u64,
        "total": log.total,
        "text": text,
    })
}

/// One follower's place in a log.
struct Follower {
    call: Call,
    task: TaskId,
    /// A read not yet sent.
    next: Option<TaskLog>,
    /// Where the next read begins.
    offset: u64,
    news: Option<tokio::sync::watch::Receiver<u64>>,
    quiet_since: tokio::time::Instant,
    /// The last read stopped short of the log's end: read on at once.
    behind: bool,
    done: bool,
}

impl Follower {
    /// The next event of the stream; `None` ends it.
    async fn next_event(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        loop {
            let log = match self.next.take() {
                Some(log) => log,
                None => {
                    if !std::mem::take(&mut self.behind) {
                        self.wait().await;
                    }
                    if self.call.state.broker.is_shutting_down() {
                        // No `end`: the client reconnects elsewhere, from
                        // the last id.
                        return None;
                    }
                    if self.quiet_since.elapsed() >= KEEPALIVE {
                        self.quiet_since = tokio::time::Instant::now();
                        return Some(Bytes::from_static(b": still following\n\n"));
                    }
                    match read_within(&self.call, self.task, Some(self.offset), EVENT_BYTES).await {
                        Ok(log) => log,
                        Err(e) if e.code == "unknown_task" => {
                            self.done = true;
                            return Some(event("end", &json!({"state": null, "gone": true})));
                        }
                        // A store that does not answer now may later.
                        Err(_) => continue,
                    }
                }
            };
            let (offset, text) = log.whole_text();
            self.offset = offset + text.len() as u64;
            self.behind = self.offset < log.total && !text.is_empty();
            if !text.is_empty() {
                self.quiet_since = tokio::time::Instant::now();
                let data = json!({"offset": offset, "start": log.start, "text": text});
                let mut out = format!("id: {}\n", self.offset).into_bytes();
                out.extend_from_slice(&event("log", &data));
                return Some(Bytes::from(out));
            }
            if log.state.has_ended() && self.offset >= log.total {
                self.done = true;
                let data = json!({"state": log.state, "total": log.total});
                return Some(event("end", &data));
            }
        }
    }

    /// Until something may have changed: a local append or end, or a poll's
    /// worth of time for what other nodes did.
    async fn wait(&mut self) {
        let broker = &self.call.state.broker;
        let news = self.news.get_or_insert_with(|| {
            let mut rx = broker.log_news();
            rx.mark_unchanged();
            rx
        });
        let _ = tokio::time::timeout(FOLLOW_POLL, news.changed()).await;
    }
}

fn event(name: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}
