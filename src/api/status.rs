//! `GET /status`: the state of the system, piece by piece.

use serde_json::{json, Map, Value};

use super::call::{json, Answer, Call};
use super::error::ApiError;
use super::params::{Body, Params};
use super::AppState;
use crate::model::Page;
use crate::model::QueueName;

const FIELDS: &[&str] = &[
    "queue",
    "queues",
    "workerQueue",
    "interests",
    "workers",
    "failedQueue",
    "failedReasons",
    "task",
    "key",
    "batch",
    "groups",
    "schedules",
    "locks",
    "counters",
    "store",
    "offset",
    "limit",
];

/// `GET /status`: each parameter adds its own top-level key; with none, a
/// summary of queues, workers and counters.
pub async fn show(call: Call, body: Body) -> Answer {
    let p = body.params()?;
    let state = &call.state;
    p.only(FIELDS)?;
    let broker = &state.broker;
    let mut out = Map::new();
    // Paging alone asks for nothing.
    let asked = FIELDS
        .iter()
        .filter(|f| !matches!(**f, "offset" | "limit"))
        .any(|f| p.flag(f));

    if let Some(queue) = p.queue("queue")? {
        let c = broker.queue_counts(&queue).await?;
        let settings = broker.queue_settings(&queue).await?;
        if !settings.is_default() {
            out.insert("settings".into(), json!(settings));
        }
        out.insert(
            "queue".into(),
            json!({"name": queue, "ready": c.ready, "scheduled": c.scheduled, "running": c.running, "failed": c.failed, "blocked": c.blocked}),
        );
    }
    if p.flag("queues") || !asked {
        let queues: Vec<Value> = broker
            .queues()
            .await?
            .into_iter()
            .map(|(q, c)| json!({"name": q, "ready": c.ready, "scheduled": c.scheduled, "running": c.running, "failed": c.failed, "blocked": c.blocked}))
            .collect();
        out.insert("queues".into(), Value::Array(queues));
    }
    if p.flag("workerQueue") {
        out.insert("workerQueue".into(), worker_queues(&p, state).await?);
    }
    if p.flag("interests") {
        out.insert("interests".into(), json!(broker.interests().await));
    }
    if p.flag("workers") || !asked {
        let workers = broker.workers().await?;
        out.insert(
            "workers".into(),
            if asked {
                json!(workers)
            } else {
                json!(workers.len())
            },
        );
    }
    if p.flag("failedQueue") {
        let queue = optional_queue(&p, "failedQueue")?;
        let page = Page {
            offset: p.integer("offset", 0, u32::MAX as u64)?.unwrap_or(0) as usize,
            limit: p.integer("limit", 1, 1000)?.unwrap_or(100) as usize,
        };
        out.insert(
            "failedQueue".into(),
            json!(broker.failed(queue.as_ref(), page).await?),
        );
    }
    if p.flag("failedReasons") {
        let queue = optional_queue(&p, "failedReasons")?;
        let reasons: Vec<Value> = broker
            .failed_reasons(queue.as_ref())
            .await?
            .into_iter()
            .map(|(reason, count)| json!({"reason": reason, "count": count}))
            .collect();
        out.insert("failedReasons".into(), Value::Array(reasons));
    }
    if let Some(key) = super::task::parse_key(&p, "key")? {
        out.insert("key".into(), json!(broker.tasks_with_key(&key).await?));
    }
    if let Some(id) = p.string("batch")? {
        out.insert(
            "batch".into(),
            super::batch::view(&broker.batch(&id).await?),
        );
    }
    if let Some(queue) = p.queue("groups")? {
        let top = p.integer("limit", 1, 1000)?.unwrap_or(100) as usize;
        out.insert("groups".into(), json!(broker.groups(&queue, top).await?));
    }
    if let Some(id) = p.task_id("task")? {
        out.insert("task".into(), broker.find_task(id).await?);
    }
    if p.flag("schedules") {
        let all: Vec<Value> = broker
            .schedules()
            .await?
            .iter()
            .map(super::schedule::view)
            .collect();
        out.insert("schedules".into(), Value::Array(all));
    }
    if p.flag("locks") {
        // A key limited to some queues sees only their locks.
        let within = call.within();
        let locks: Vec<_> = broker
            .locks()
            .await?
            .into_iter()
            .filter(|l| within.as_ref().is_none_or(|w| w.allows(l.queue.as_str())))
            .collect();
        out.insert("locks".into(), json!(locks));
    }
    if p.flag("store") {
        out.insert("store".into(), json!(broker.store().stats()));
    }
    if p.flag("counters") || !asked {
        out.insert("counters".into(), json!(broker.counters().await?));
    }
    json(&out)
}

/// A parameter that is a flag alone, or names one queue.
fn optional_queue(p: &Params, field: &str) -> Result<Option<QueueName>, ApiError> {
    match p.string(field)?.as_deref() {
        None | Some("" | "true" | "1") => Ok(None),
        Some(name) => Ok(Some(
            QueueName::parse(name).map_err(|e| ApiError::invalid(field, e))?,
        )),
    }
}

/// `workerQueue=ID`: that worker's own queue length; `workerQueue` alone:
/// every worker's.
async fn worker_queues(p: &Params, state: &AppState) -> Result<Value, ApiError> {
    let broker = &state.broker;
    match p.string("workerQueue")?.as_deref() {
        None | Some("" | "true" | "1") => {
            let mut all = Map::new();
            for w in broker.workers().await? {
                let n = broker.worker_queue_len(w.worker_id).await?;
                all.insert(w.worker_id.to_string(), json!(n));
            }
            Ok(Value::Object(all))
        }
        Some(_) => {
            let id = p.required("workerQueue", p.worker_id("workerQueue")?)?;
            Ok(json!({"workerId": id, "ready": broker.worker_queue_len(id).await?}))
        }
    }
}
