//! A typed async client for the whole interq API, over HTTP or the line
//! protocol: the one Rust client that `interq worker`, `interq bench` and the
//! integration tests use.
//!
//! ```no_run
//! # async fn demo() -> Result<(), interq::client::ClientError> {
//! use interq::client::{Client, Publish};
//! use serde_json::json;
//!
//! let interq = Client::new("http://127.0.0.1:7700")?;
//! interq.set_interests("emails", json!({"email": "@example\\.com$"})).await?;
//! let published = interq.publish(&Publish::new(json!({"email": "a@example.com"}))).await?;
//! let worker = interq.register(&["emails"]).await?;
//! if let Some(task) = interq.claim(worker, Some(std::time::Duration::from_secs(10))).await? {
//!     interq.complete(worker, task.task_id, None).await?;
//! }
//! # let _ = published;
//! # Ok(()) }
//! ```

use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::line::client::LineClient;
use crate::model::{Published, QueueCounts, Task, TaskId, WorkerId};

/// What can go wrong talking to interq.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the URL `{0}` is not an http(s) URL")]
    BadUrl(String),
    #[error("cannot reach interq: {0}")]
    Transport(#[from] reqwest::Error),
    /// The line protocol's connection could not be made, or broke.
    #[error("cannot reach interq: {0}")]
    Connection(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{0}")]
    Unsupported(&'static str),
    /// interq refused the request; `code` is the API's stable error code.
    #[error("interq answered {status} ({code}): {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    #[error("unexpected answer from interq: {0}")]
    Decode(String),
}

impl ClientError {
    /// The API error code, when interq answered with an error.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Api { code, .. } => Some(code),
            Self::BadUrl(_)
            | Self::Transport(_)
            | Self::Connection(_)
            | Self::Tls(_)
            | Self::Unsupported(_)
            | Self::Decode(_) => None,
        }
    }
}

type Result<T> = std::result::Result<T, ClientError>;

/// A task to publish. `Publish::new(data)` then the options that matter.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Publish {
    pub data: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
    /// Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_at: Option<f64>,
    /// `"any"` or `"all"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub singularly_enqueue: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub singularly_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttr: Option<u32>,
    /// The caller's name for the task, to find or stop it by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Its fairness group (a tenant, a customer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// A copy that completes with an object as its output has the output
    /// published on as a task.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub publish_output: bool,
}

impl Publish {
    /// A task with this `data` (a JSON object; anything else publishes `{}`
    /// and the server would say so).
    pub fn new(data: Value) -> Self {
        Self {
            data: match data {
                Value::Object(m) => m,
                _ => Map::new(),
            },
            ..Self::default()
        }
    }

    pub fn publisher(mut self, publisher: impl Into<String>) -> Self {
        self.publisher = Some(publisher.into());
        self
    }

    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    pub fn priority(mut self, priority: i16) -> Self {
        self.priority = Some(priority);
        self
    }

    pub fn ttr(mut self, secs: u32) -> Self {
        self.ttr = Some(secs);
        self
    }

    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }

    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    pub fn scope_all(mut self) -> Self {
        self.scope = Some("all".into());
        self
    }
}

/// One item's answer in a batch of updates.
pub type UpdateResult = std::result::Result<Task, ClientError>;

/// Installs the process-wide TLS provider (ring) that `reqwest` clients need;
/// calling it again does nothing.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// What every request says of its client, so that a server's operators can
/// tell which version called.
pub const USER_AGENT: &str = concat!("interq/", env!("CARGO_PKG_VERSION"));

/// A connection to one interq, over HTTP (`http://`, `https://`) or the
/// pipelined line protocol (`interq://`, `interqs://`): the same calls
/// either way.
#[derive(Clone)]
pub struct Client {
    base: String,
    transport: Transport,
}

#[derive(Clone)]
enum Transport {
    Http {
        http: reqwest::Client,
        /// `Authorization` header value, when a key is given.
        auth: Option<String>,
    },
    Line(Arc<LineClient>),
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Client");
        d.field("base", &self.base);
        match &self.transport {
            Transport::Http { auth, .. } => d.field("key", &auth.as_ref().map(|_| "..")),
            Transport::Line(line) => d.field("line", line),
        };
        d.finish()
    }
}

/// How to reach an interq beyond its URL.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// The key to present (`Authorization: Bearer`, or `auth` on the line
    /// protocol).
    pub key: Option<String>,
    /// PEM certificates to trust instead of the system's (a private CA or a
    /// self-signed server certificate).
    pub ca_pem: Option<Vec<u8>>,
}

impl Client {
    /// A client for the interq at `base`: `http://host:port` or `https://`,
    /// or its line protocol at `interq://host:port` or `interqs://`.
    pub fn new(base: &str) -> Result<Self> {
        Self::with_options(base, ClientOptions::default())
    }

    pub fn with_options(base: &str, options: ClientOptions) -> Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        if base.starts_with("interq://") || base.starts_with("interqs://") {
            let line = LineClient::new(&base, &options)?;
            return Ok(Self {
                base,
                transport: Transport::Line(Arc::new(line)),
            });
        }
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::BadUrl(base));
        }
        install_tls_provider();
        let mut builder = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true);
        if let Some(pem) = &options.ca_pem {
            builder = builder.tls_certs_only(reqwest::Certificate::from_pem_bundle(pem)?);
        }
        Ok(Self {
            base,
            transport: Transport::Http {
                http: builder.build()?,
                auth: options.key.map(|k| format!("Bearer {k}")),
            },
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// Whether it speaks the line protocol.
    pub fn is_line(&self) -> bool {
        matches!(self.transport, Transport::Line(_))
    }

    /// Calls the API's operation `name` (as `api::routes` names it) with
    /// `args`: over HTTP, its method and path with `args` as the JSON body
    /// (the query string for a GET); over the line protocol, one call.
    async fn op<A, T>(&self, name: &str, args: &A) -> Result<T>
    where
        A: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let (http, auth) = match &self.transport {
            Transport::Line(line) => return line.call(name, args).await,
            Transport::Http { http, auth } => (http, auth),
        };
        let endpoint = crate::api::routes::op(name).expect("an operation of the API");
        let method = Method::from_bytes(endpoint.method.as_bytes()).expect("an HTTP method");
        let mut req = http.request(method.clone(), format!("{}{}", self.base, endpoint.path));
        if let Some(a) = auth {
            req = req.header(reqwest::header::AUTHORIZATION, a);
        }
        req = if method == Method::GET {
            req.query(&query_pairs(args)?)
        } else {
            req.json(args)
        };
        let bytes = answer(req.send().await?).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// Any operation of the API by its name (`"listTasks"`, `"setQueue"`:
    /// `GET /openapi.json` and docs/protocol.md list them), with its
    /// parameters as JSON; the answer as JSON.
    pub async fn call(&self, op: &str, args: &Value) -> Result<Value> {
        if crate::api::routes::op(op).is_none() {
            return Err(ClientError::Unsupported("no such operation of the API"));
        }
        self.op(op, args).await
    }

    /// `GET /tasks`: a page of the copies in a state, of one queue or all,
    /// that pass the query's filters.
    pub async fn list_tasks(&self, query: &TaskQuery) -> Result<Vec<Task>> {
        self.op("listTasks", query).await
    }

    /// `POST /retry`: fresh attempts for a failed copy (or, with `queue`,
    /// every failed copy of it). Returns the ids retried.
    pub async fn retry(&self, task: Option<TaskId>, queue: Option<&str>) -> Result<Vec<TaskId>> {
        let args = match (task, queue) {
            (Some(id), _) => json!({"taskId": id}),
            (None, Some(q)) => json!({"queue": q}),
            (None, None) => json!({"all": true}),
        };
        let answer: Value = self.op("retry", &args).await?;
        serde_json::from_value(answer["retried"].clone())
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// `POST /retry` with a search: fresh attempts for the failed copies of
    /// `queue` (or of every queue) that match it. Returns the ids retried.
    pub async fn retry_matching(
        &self,
        queue: Option<&str>,
        search: &TaskSearch,
    ) -> Result<Vec<TaskId>> {
        let mut args =
            serde_json::to_value(search).map_err(|e| ClientError::Decode(e.to_string()))?;
        match queue {
            Some(q) => args["queue"] = json!(q),
            None => args["all"] = json!(true),
        }
        let answer: Value = self.op("retry", &args).await?;
        serde_json::from_value(answer["retried"].clone())
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// `PUT /queue`: changes a queue's settings (`{"paused": true}`,
    /// `{"maxRunning": 5}`); absent fields keep their value.
    pub async fn set_queue(&self, queue: &str, settings: Map<String, Value>) -> Result<Value> {
        let mut args = settings;
        args.insert("queue".into(), json!(queue));
        self.op("setQueue", &args).await
    }

    /// `PUT /task`: one task.
    pub async fn publish(&self, task: &Publish) -> Result<Published> {
        self.op("publish", task).await
    }

    /// `PUT /task` with an array: one durable commit for all of them.
    pub async fn publish_batch(&self, tasks: &[Publish]) -> Result<Vec<Published>> {
        self.op("publish", tasks).await
    }

    /// `PUT /interest`: replaces a queue's interests. Returns them normalized.
    pub async fn set_interests(&self, queue: &str, interests: Value) -> Result<Value> {
        let body: Value = self
            .op(
                "setInterests",
                &json!({"queue": queue, "interests": interests}),
            )
            .await?;
        Ok(body["interests"].clone())
    }

    /// `PUT /interest` with an array: several queues at once, one rebuild.
    pub async fn set_many_interests(&self, updates: &[(String, Value)]) -> Result<()> {
        let body: Vec<Value> = updates
            .iter()
            .map(|(queue, interests)| json!({"queue": queue, "interests": interests}))
            .collect();
        let _: Value = self.op("setInterests", &body).await?;
        Ok(())
    }

    /// `DELETE /queue`.
    pub async fn delete_queue(&self, queue: &str) -> Result<u64> {
        let body: Value = self.op("deleteQueue", &json!({"queue": queue})).await?;
        Ok(body["deletedTasks"].as_u64().unwrap_or(0))
    }

    /// `PUT /worker`: registers on `queues`, in the order to take from them.
    pub async fn register(&self, queues: &[&str]) -> Result<WorkerId> {
        self.register_named(queues, None).await
    }

    /// `register`, with a name for people (shown in status).
    pub async fn register_named(&self, queues: &[&str], name: Option<&str>) -> Result<WorkerId> {
        self.register_weighted(queues, &[], name).await
    }

    /// `register_named`, with one weight per queue (none: strict order).
    pub async fn register_weighted(
        &self,
        queues: &[&str],
        weights: &[u32],
        name: Option<&str>,
    ) -> Result<WorkerId> {
        let mut body = json!({"queues": queues});
        if !weights.is_empty() {
            let by_queue: serde_json::Map<String, Value> = queues
                .iter()
                .zip(weights)
                .map(|(q, w)| ((*q).to_owned(), json!(w)))
                .collect();
            body["weights"] = Value::Object(by_queue);
        }
        if let Some(n) = name {
            body["name"] = Value::from(n);
        }
        let body: Value = self.op("register", &body).await?;
        serde_json::from_value(body["workerId"].clone())
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// `DELETE /worker`: its running tasks go back to their queues.
    pub async fn deregister(&self, worker: WorkerId) -> Result<()> {
        let _: Value = self.op("deregister", &json!({"workerId": worker})).await?;
        Ok(())
    }

    /// `GET /task`: the next task, waiting up to `wait` for one.
    pub async fn claim(&self, worker: WorkerId, wait: Option<Duration>) -> Result<Option<Task>> {
        let mut args = json!({"workerId": worker});
        if let Some(w) = wait {
            args["wait"] = json!(w.as_secs_f64());
        }
        self.op("claim", &args).await
    }

    /// `GET /task?count=N`: up to `count` tasks in one request.
    pub async fn claim_many(
        &self,
        worker: WorkerId,
        count: usize,
        wait: Option<Duration>,
    ) -> Result<Vec<Task>> {
        let mut args = json!({"workerId": worker, "count": count});
        if let Some(w) = wait {
            args["wait"] = json!(w.as_secs_f64());
        }
        self.op("claim", &args).await
    }

    async fn report(&self, body: Value) -> Result<Task> {
        self.op("report", &body).await
    }

    /// `POST /task` `state: complete`, with an optional `output`.
    pub async fn complete(
        &self,
        worker: WorkerId,
        task: TaskId,
        output: Option<Value>,
    ) -> Result<Task> {
        let mut body = json!({"workerId": worker, "taskId": task, "state": "complete"});
        if let Some(o) = output {
            body["output"] = o;
        }
        self.report(body).await
    }

    /// `POST /task` `state: fail`: retried with backoff while attempts remain.
    pub async fn fail(&self, worker: WorkerId, task: TaskId, reason: &str) -> Result<Task> {
        self.report(
            json!({"workerId": worker, "taskId": task, "state": "fail", "failReason": reason}),
        )
        .await
    }

    /// `POST /task` `state: progress`: extends the lease, records `progress`.
    pub async fn progress(
        &self,
        worker: WorkerId,
        task: TaskId,
        progress: Option<Value>,
    ) -> Result<Task> {
        let mut body = json!({"workerId": worker, "taskId": task, "state": "progress"});
        if let Some(p) = progress {
            body["progress"] = p;
        }
        self.report(body).await
    }

    /// `POST /task` with an array: completes every task in one request.
    pub async fn complete_many(
        &self,
        worker: WorkerId,
        tasks: &[TaskId],
    ) -> Result<Vec<UpdateResult>> {
        let body: Vec<Value> = tasks
            .iter()
            .map(|t| json!({"workerId": worker, "taskId": t, "state": "complete"}))
            .collect();
        let answers: Vec<Value> = self.op("report", &body).await?;
        Ok(answers
            .into_iter()
            .map(|a| match a.get("task") {
                Some(t) => serde_json::from_value(t.clone())
                    .map_err(|e| ClientError::Decode(e.to_string())),
                None => Err(ClientError::Api {
                    status: 200,
                    code: a["error"]["code"].as_str().unwrap_or("unknown").to_owned(),
                    message: a["error"]["message"].as_str().unwrap_or("").to_owned(),
                }),
            })
            .collect())
    }

    /// `DELETE /task` by key: waiting copies cancelled, running ones flagged.
    /// Returns the answer (`cancelled`, `cancelRequested`, `untouched`).
    pub async fn cancel_key(&self, key: &str) -> Result<Value> {
        self.op("cancel", &json!({"key": key})).await
    }

    /// `DELETE /task` by id (a copy, or every copy of a publish).
    pub async fn cancel_task(&self, id: TaskId) -> Result<Value> {
        self.op("cancel", &json!({"taskId": id})).await
    }

    /// Every copy published with `key`, in any state.
    pub async fn tasks_with_key(&self, key: &str) -> Result<Vec<Task>> {
        let body = self.status(&[("key", key)]).await?;
        serde_json::from_value(body["key"].clone()).map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// `GET /status` with the given parameters (`[("queue", "q"), ("counters", "")]`).
    pub async fn status(&self, params: &[(&str, &str)]) -> Result<Value> {
        let args: Map<String, Value> = params
            .iter()
            .map(|(k, v)| {
                // Paging goes as numbers: the line protocol's JSON needs
                // them, and a query string writes them as text anyway.
                let value = match (*k, v.parse::<u64>()) {
                    ("offset" | "limit", Ok(n)) => Value::from(n),
                    _ => Value::from(*v),
                };
                ((*k).to_owned(), value)
            })
            .collect();
        self.op("status", &args).await
    }

    /// `GET /metrics`: the Prometheus text (an admin key when keys are set).
    /// HTTP only: the line protocol carries the JSON operations.
    pub async fn metrics(&self) -> Result<String> {
        let Transport::Http { http, auth } = &self.transport else {
            return Err(ClientError::Unsupported(
                "metrics are served over HTTP only (GET /metrics)",
            ));
        };
        let mut req = http.get(format!("{}/metrics", self.base));
        if let Some(a) = auth {
            req = req.header(reqwest::header::AUTHORIZATION, a);
        }
        let bytes = answer(req.send().await?).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// One queue's counts.
    pub async fn queue(&self, queue: &str) -> Result<QueueCounts> {
        let body = self.status(&[("queue", queue)]).await?;
        serde_json::from_value(body["queue"].clone())
            .map_err(|e| ClientError::Decode(e.to_string()))
    }

    /// One task copy, or every copy of a publish.
    pub async fn task(&self, id: TaskId) -> Result<Value> {
        Ok(self.status(&[("task", &id.to_string())]).await?["task"].clone())
    }

    /// `POST /task/log`: adds what the command of a claimed task wrote to
    /// its log. Returns the log's length.
    pub async fn append_log(&self, worker: WorkerId, task: TaskId, text: &str) -> Result<u64> {
        let body = json!({"workerId": worker, "taskId": task, "text": text});
        let answer: Value = self.op("appendLog", &body).await?;
        answer["total"]
            .as_u64()
            .ok_or_else(|| ClientError::Decode("an append's answer has no `total`".into()))
    }

    /// `GET /task/log`: a task's log kept, or from `offset` (a previous
    /// answer's `next`).
    pub async fn task_log(&self, task: TaskId, offset: Option<u64>) -> Result<Value> {
        let mut args = json!({"taskId": task});
        if let Some(o) = offset {
            args["offset"] = json!(o);
        }
        self.op("taskLog", &args).await
    }

    /// `GET /task/log?follow`: the log from `offset` as it grows, each piece
    /// handed to `on_text`, until the task ends; returns the `end` event's
    /// data (`state`, `total`). Over the line protocol, which carries no
    /// streams, it reads again every half second.
    pub async fn follow_log(
        &self,
        task: TaskId,
        offset: Option<u64>,
        mut on_text: impl FnMut(&str),
    ) -> Result<Value> {
        let (http, auth) = match &self.transport {
            Transport::Http { http, auth } => (http, auth),
            Transport::Line(_) => {
                let mut offset = offset;
                loop {
                    let log = self.task_log(task, offset).await?;
                    on_text(log["text"].as_str().unwrap_or(""));
                    offset = log["next"].as_u64();
                    let ended =
                        serde_json::from_value::<crate::model::TaskState>(log["state"].clone())
                            .is_ok_and(crate::model::TaskState::has_ended);
                    if ended && offset == log["total"].as_u64() {
                        return Ok(json!({"state": log["state"], "total": log["total"]}));
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
        let mut query = vec![("taskId", task.to_string()), ("follow", "true".into())];
        if let Some(o) = offset {
            query.push(("offset", o.to_string()));
        }
        let mut req = http
            .get(format!("{}/task/log", self.base))
            .query(&query)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(a) = auth {
            req = req.header(reqwest::header::AUTHORIZATION, a);
        }
        let mut resp = req.send().await?;
        if !resp.status().is_success() {
            answer(resp).await?;
            return Err(ClientError::Decode("an error without a body".into()));
        }
        let mut events = SseParser::default();
        while let Some(chunk) = resp.chunk().await? {
            for (name, data) in events.feed(&chunk) {
                let data: Value = serde_json::from_str(&data)
                    .map_err(|e| ClientError::Decode(format!("an event's data: {e}")))?;
                match name.as_str() {
                    "log" => on_text(data["text"].as_str().unwrap_or("")),
                    "end" => return Ok(data),
                    _ => {}
                }
            }
        }
        Err(ClientError::Connection(
            "the log's stream ended before the task did".into(),
        ))
    }
}

/// Server-sent events out of a byte stream: (event name, data) as each
/// completes.
#[derive(Debug, Default)]
struct SseParser {
    buffer: Vec<u8>,
}

impl SseParser {
    fn feed(&mut self, bytes: &[u8]) -> Vec<(String, String)> {
        self.buffer.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
            let text = String::from_utf8_lossy(&block);
            let (mut name, mut data) = ("message".to_owned(), Vec::new());
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push(v.strip_prefix(' ').unwrap_or(v).to_owned());
                }
            }
            if !data.is_empty() {
                out.push((name, data.join("\n")));
            }
        }
        out
    }
}

/// The body of a successful answer; an error answer as its code and message.
/// What `list_tasks` asks for: a state, a page, and a search.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TaskQuery {
    /// ready, scheduled, running, failed, completed, cancelled or expired.
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Copies skipped (not with `archived`).
    #[serde(skip_serializing_if = "is_zero")]
    pub offset: usize,
    pub limit: usize,
    /// The queue's archive (embedded store), newest first.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub archived: bool,
    /// With `archived`: the copies archived before this one (the last id of
    /// the page before).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    #[serde(flatten)]
    pub search: TaskSearch,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The filters `GET /tasks` and `POST /retry` take; all that are given must
/// hold.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TaskSearch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publisher: Option<String>,
    /// Its fairness group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Text in the failure reason, in any case.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Published at or after: Unix seconds or a UTC date and time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// `field=pattern` conditions on `data`, all of which must hold.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub data: Vec<String>,
    /// Published after this copy: the last id of a page, for the next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// A GET's parameters as query text: strings as they are, anything else as
/// its JSON (which the API reads back), as a form cannot nest.
fn query_pairs<A: Serialize + ?Sized>(args: &A) -> Result<Vec<(String, String)>> {
    let value = serde_json::to_value(args).map_err(|e| ClientError::Decode(e.to_string()))?;
    let Value::Object(fields) = value else {
        return Ok(Vec::new());
    };
    Ok(fields
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| match v {
            Value::String(s) => (k, s),
            other => (k, other.to_string()),
        })
        .collect())
}

async fn answer(resp: reqwest::Response) -> Result<bytes::Bytes> {
    let status = resp.status();
    let bytes = resp.bytes().await?;
    if status.is_success() {
        return Ok(bytes);
    }
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Err(ClientError::Api {
        status: status.as_u16(),
        code: body["error"]["code"]
            .as_str()
            .unwrap_or("unknown")
            .to_owned(),
        message: body["error"]["message"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned()),
    })
}
