//! `/task`: publish (PUT), claim (GET), report (POST), delete (DELETE).

use std::time::Duration;

use serde_json::{json, Value};

use super::call::{json, Answer, Call};
use super::error::ApiError;
use super::params::{Body, Params};
use super::AppState;
use crate::broker::{BrokerError, NewTask, Report};
use crate::model::{CancelTarget, Cancellation, TaskSelector};
use crate::model::{Dependency, Millis, Priority, Scope, TaskId, WorkerId, MAX_DEPENDENCIES};

const PUBLISH_FIELDS: &[&str] = &[
    "publisher",
    "data",
    "runAt",
    "scope",
    "singularlyEnqueue",
    "singularlyRun",
    "priority",
    "maxAttempts",
    "ttr",
    "key",
    "group",
    "expireAt",
    "ttl",
    "requireRoute",
    "publishOutput",
    "dependsOn",
    "dependencyFailed",
];

pub use crate::model::MAX_KEY_BYTES;

/// A task key: 1 to 256 bytes, no control characters.
pub fn parse_key(p: &Params, field: &str) -> Result<Option<String>, ApiError> {
    let Some(key) = p.string(field)? else {
        return Ok(None);
    };
    if !crate::model::is_valid_key(&key) {
        return Err(p.invalid(
            field,
            format!("a key is 1 to {MAX_KEY_BYTES} bytes without control characters"),
        ));
    }
    Ok(Some(key))
}

/// A fairness group: 1 to 128 bytes, no control characters.
pub fn parse_group(p: &Params, field: &str) -> Result<Option<String>, ApiError> {
    let Some(group) = p.string(field)? else {
        return Ok(None);
    };
    if !crate::model::is_valid_group(&group) {
        return Err(p.invalid(
            field,
            format!(
                "a group is 1 to {} bytes without control characters",
                crate::model::MAX_GROUP_BYTES
            ),
        ));
    }
    Ok(Some(group))
}

/// `dependsOn`: task ids (a copy's, or a publish's for all its copies) and
/// `{"key": K}` for every copy with a key.
fn parse_dependencies(p: &Params) -> Result<Vec<Dependency>, ApiError> {
    let Some(value) = p.json("dependsOn")? else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = value else {
        return Err(p.invalid(
            "dependsOn",
            "must be an array of task ids and {\"key\": …} objects",
        ));
    };
    if items.is_empty() || items.len() > MAX_DEPENDENCIES {
        return Err(p.invalid(
            "dependsOn",
            format!("names 1 to {MAX_DEPENDENCIES} tasks, not {}", items.len()),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(s) => s.parse::<TaskId>().map(Dependency::Task).map_err(|_| {
                p.invalid(
                    &format!("dependsOn[{i}]"),
                    format!("`{s}` is not a task id"),
                )
            }),
            Value::Object(o) if o.len() == 1 => match o.get("key") {
                Some(Value::String(k)) if crate::model::is_valid_key(k) => {
                    Ok(Dependency::Key { key: k.clone() })
                }
                _ => Err(p.invalid(
                    &format!("dependsOn[{i}].key"),
                    format!("a key is 1 to {MAX_KEY_BYTES} bytes without control characters"),
                )),
            },
            _ => Err(p.invalid(&format!("dependsOn[{i}]"), "is a task id or {\"key\": …}")),
        })
        .collect()
}

/// `PUT /task`: one task, or a JSON array of tasks published in one commit.
/// A key limited to some queues reaches only those.
pub async fn publish(call: Call, body: Body) -> Answer {
    let state = &call.state;
    let within = call.within();
    match body {
        Body::Params(p) => {
            let task = parse_new_task(p, state)?;
            let mut published = state
                .broker
                .publish_within(vec![task], within.as_ref())
                .await?;
            json(&published.remove(0))
        }
        Body::Batch(items) => {
            check_batch_size(items.len(), state)?;
            let tasks = items
                .into_iter()
                .enumerate()
                .map(|(i, item)| parse_new_task(Params::item(i, item)?, state))
                .collect::<Result<Vec<_>, _>>()?;
            let published = state
                .broker
                .publish_within(tasks, within.as_ref())
                .await
                .map_err(|e| match e {
                    BrokerError::Unrouted { index } => ApiError::unrouted(Some(index)),
                    other => other.into(),
                })?;
            json(&published)
        }
    }
}

/// A task to publish as `PUT /task`'s parameters: what `parse_new_task`
/// reads back into the same task (a schedule's task is shown, and edited,
/// this way).
pub fn publish_params(t: &NewTask) -> Value {
    let mut p = serde_json::Map::new();
    p.insert("publisher".into(), json!(t.publisher));
    p.insert("data".into(), Value::Object(t.data.clone()));
    let mut put = |name: &str, value: Value| {
        p.insert(name.into(), value);
    };
    if let Some(at) = t.run_at {
        put("runAt", json!(at.as_secs_f64()));
    }
    if t.scope == Scope::All {
        put("scope", json!("all"));
    }
    match (t.singularly_enqueue, t.replace_waiting) {
        (true, true) => put("singularlyEnqueue", json!("replace")),
        (true, false) => put("singularlyEnqueue", json!(true)),
        _ => {}
    }
    if t.singularly_run {
        put("singularlyRun", json!(true));
    }
    if t.priority != Priority::default() {
        put("priority", json!(t.priority.0));
    }
    if let Some(n) = t.max_attempts {
        put("maxAttempts", json!(n));
    }
    if let Some(n) = t.ttr {
        put("ttr", json!(n));
    }
    if let Some(at) = t.expire_at {
        put("expireAt", json!(at.as_secs_f64()));
    }
    if let Some(ms) = t.ttl_ms {
        put("ttl", json!(ms as f64 / 1000.0));
    }
    if let Some(k) = &t.key {
        put("key", json!(k));
    }
    if let Some(g) = &t.group {
        put("group", json!(g));
    }
    if t.require_route {
        put("requireRoute", json!(true));
    }
    if t.publish_output {
        put("publishOutput", json!(true));
    }
    if !t.depends_on.is_empty() {
        put("dependsOn", json!(t.depends_on));
    }
    if t.run_if_dependency_failed {
        put("dependencyFailed", json!("run"));
    }
    Value::Object(p)
}

pub(super) fn parse_new_task(mut p: Params, state: &AppState) -> Result<NewTask, ApiError> {
    p.only(PUBLISH_FIELDS)?;
    let limits = &state.settings.limits;
    let data = p.take_object("data")?;
    let data = p.required("data", data)?;
    let publisher = p
        .string("publisher")?
        .unwrap_or_else(|| "unknown".to_owned());
    if publisher.len() > limits.max_text_bytes {
        return Err(ApiError::invalid(
            "publisher",
            format!("may be at most {} bytes", limits.max_text_bytes),
        ));
    }
    let run_at = p
        .number("runAt")?
        .map(|secs| {
            Millis::from_secs_f64(secs)
                .ok_or_else(|| ApiError::invalid("runAt", "must be unix seconds, 0 or more"))
        })
        .transpose()?;
    let scope = match p.string("scope")?.as_deref() {
        None | Some("any") => Scope::Any,
        Some("all") => Scope::All,
        Some(other) => {
            return Err(ApiError::invalid(
                "scope",
                format!("must be `any` or `all`, not `{other}`"),
            ))
        }
    };
    let priority = match p.json("priority")? {
        None => Priority::default(),
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or(crate::model::PriorityError)
            .and_then(Priority::from_number)
            .map_err(|e| ApiError::invalid("priority", e))?,
        Some(Value::String(s)) => {
            Priority::from_name(&s).map_err(|e| ApiError::invalid("priority", e))?
        }
        Some(_) => return Err(ApiError::invalid("priority", crate::model::PriorityError)),
    };
    let max_ttr = state.settings.tasks.max_ttr_secs as u64;
    // true keeps the first waiting twin; "replace" keeps the newest.
    let (singularly_enqueue, replace_waiting) = match p.json("singularlyEnqueue")? {
        None | Some(Value::Bool(false)) => (false, false),
        Some(Value::Bool(true)) => (true, false),
        Some(Value::String(s)) if s == "replace" => (true, true),
        Some(Value::String(s)) if s == "true" || s == "false" => (s == "true", false),
        Some(_) => {
            return Err(ApiError::invalid(
                "singularlyEnqueue",
                "must be true, false or \"replace\"",
            ))
        }
    };
    let (expire_at, ttl_ms) = match (p.number("expireAt")?, p.number("ttl")?) {
        (Some(_), Some(_)) => return Err(p.invalid("ttl", "give `expireAt` or `ttl`, not both")),
        (Some(at), None) => {
            let at = Millis::from_secs_f64(at)
                .ok_or_else(|| p.invalid("expireAt", "must be unix seconds, 0 or more"))?;
            (Some(at), None)
        }
        (None, Some(ttl)) if ttl > 0.0 && ttl <= 1e9 => (None, Some((ttl * 1000.0) as u64)),
        (None, Some(_)) => return Err(p.invalid("ttl", "must be a number of seconds above 0")),
        (None, None) => (None, None),
    };
    Ok(NewTask {
        publisher,
        data,
        run_at,
        scope,
        singularly_enqueue,
        replace_waiting,
        singularly_run: p.boolean("singularlyRun")?.unwrap_or(false),
        priority,
        max_attempts: p.integer("maxAttempts", 1, 1000)?.map(|n| n as u32),
        ttr: p.integer("ttr", 1, max_ttr)?.map(|n| n as u32),
        expire_at,
        ttl_ms,
        key: parse_key(&p, "key")?,
        group: parse_group(&p, "group")?,
        require_route: p.boolean("requireRoute")?.unwrap_or(false),
        publish_output: p.boolean("publishOutput")?.unwrap_or(false),
        parent: None,
        depth: 0,
        batch: None,
        depends_on: parse_dependencies(&p)?,
        run_if_dependency_failed: match p.string("dependencyFailed")?.as_deref() {
            None | Some("cancel") => false,
            Some("run") => true,
            Some(other) => {
                return Err(p.invalid(
                    "dependencyFailed",
                    format!("is `cancel` (the default) or `run`, not `{other}`"),
                ))
            }
        },
    })
}

/// `GET /task`: the next task for a worker (`null` when none), or with
/// `count` an array of up to that many. `wait` long-polls.
pub async fn claim(call: Call, body: Body) -> Answer {
    let p = body.params()?;
    let state = &call.state;
    let limits = &state.settings.limits;
    p.only(&["workerId", "count", "wait"])?;
    let worker = p.required("workerId", p.worker_id("workerId")?)?;
    call.may_act_for(worker).await?;
    let count = p.integer("count", 1, limits.max_claim_count as u64)?;
    let wait = match p.number("wait")? {
        None => Duration::ZERO,
        Some(w) if (0.0..=limits.max_wait_secs as f64).contains(&w) => Duration::from_secs_f64(w),
        Some(_) => {
            return Err(ApiError::invalid(
                "wait",
                format!("must be from 0 to {} seconds", limits.max_wait_secs),
            ))
        }
    };
    let mut tasks = state
        .broker
        .claim(worker, count.unwrap_or(1) as usize, wait)
        .await?;
    match count {
        Some(_) => json(&tasks),
        None => json(&tasks.pop()),
    }
}

/// `POST /task`: a worker completes, fails, or reports progress on its task.
/// An array of updates is applied in order; the answer then holds, for each,
/// the task or the error it met.
pub async fn report(call: Call, body: Body) -> Answer {
    let state = &call.state;
    match body {
        Body::Params(p) => {
            let (worker, task, report, re_enqueue) = parse_update(&p, state)?;
            call.may_act_for(worker).await?;
            let task = state
                .broker
                .report(worker, task, report, re_enqueue)
                .await?;
            json(&report_view(&task))
        }
        Body::Batch(items) => {
            check_batch_size(items.len(), state)?;
            // Every item is parsed before any is applied: a malformed batch
            // changes nothing.
            let updates = items
                .into_iter()
                .enumerate()
                .map(|(i, item)| parse_update(&Params::item(i, item)?, state))
                .collect::<Result<Vec<_>, _>>()?;
            let mut workers: Vec<WorkerId> = updates.iter().map(|u| u.0).collect();
            workers.sort();
            workers.dedup();
            for worker in workers {
                call.may_act_for(worker).await?;
            }
            // One durable step for the whole array.
            let answers: Vec<Value> = state
                .broker
                .report_many(updates)
                .await?
                .into_iter()
                .map(|answer| match answer {
                    Ok(task) => json!({"task": report_view(&task)}),
                    Err(e) => {
                        let e = ApiError::from(e);
                        json!({"error": {"code": e.code, "message": e.message}})
                    }
                })
                .collect();
            json(&answers)
        }
    }
}

type Update = (WorkerId, TaskId, Report, bool);

/// A task as the answer to its worker's report: without its `data`, which
/// the worker has (nor its history, which reports never carry).
fn report_view(task: &crate::model::Task) -> Value {
    let mut view = serde_json::to_value(task).unwrap_or(Value::Null);
    if let Some(fields) = view.as_object_mut() {
        fields.remove("data");
    }
    view
}

fn parse_update(p: &Params, state: &AppState) -> Result<Update, ApiError> {
    let limits = &state.settings.limits;
    p.only(&[
        "workerId",
        "taskId",
        "state",
        "failReason",
        "reEnqueue",
        "output",
        "progress",
    ])?;
    let worker = p.required("workerId", p.worker_id("workerId")?)?;
    let task = p.required("taskId", p.task_id("taskId")?)?;
    let state_name = p.required("state", p.string("state")?)?;
    let allowed = |field: &str, states: &[&str]| {
        if p.flag(field) && !states.contains(&state_name.as_str()) {
            Err(p.invalid(
                field,
                format!("goes only with state `{}`", states.join("` or `")),
            ))
        } else {
            Ok(())
        }
    };
    allowed("failReason", &["fail"])?;
    allowed("output", &["complete"])?;
    allowed("progress", &["progress"])?;
    allowed("reEnqueue", &["complete", "fail"])?;
    let report = match state_name.as_str() {
        "complete" => {
            let output = p.json("output")?;
            let size = output.as_ref().map_or(0, |o| o.to_string().len());
            if size > limits.max_output_bytes {
                return Err(p.invalid(
                    "output",
                    format!("may be at most {} bytes of JSON", limits.max_output_bytes),
                ));
            }
            Report::Complete { output }
        }
        "fail" => {
            let reason = p.string("failReason")?;
            if reason
                .as_ref()
                .is_some_and(|r| r.len() > limits.max_text_bytes)
            {
                return Err(p.invalid(
                    "failReason",
                    format!("may be at most {} bytes", limits.max_text_bytes),
                ));
            }
            Report::Fail { reason }
        }
        "progress" => {
            let progress = match p.json("progress")? {
                None => None,
                Some(Value::Number(n))
                    if n.as_f64().is_some_and(|n| (0.0..=100.0).contains(&n)) =>
                {
                    Some(Value::Number(n))
                }
                Some(Value::Object(o))
                    if Value::Object(o.clone()).to_string().len() <= limits.max_text_bytes =>
                {
                    Some(Value::Object(o))
                }
                Some(_) => {
                    return Err(p.invalid(
                        "progress",
                        format!(
                            "must be a number from 0 to 100 or a JSON object of at most {} bytes",
                            limits.max_text_bytes
                        ),
                    ))
                }
            };
            Report::Progress { progress }
        }
        other => {
            return Err(p.invalid(
                "state",
                format!("must be `complete`, `fail` or `progress`, not `{other}`"),
            ))
        }
    };
    let re_enqueue = p.boolean("reEnqueue")?.unwrap_or(false);
    Ok((worker, task, report, re_enqueue))
}

pub(super) fn check_batch_size(len: usize, state: &AppState) -> Result<(), ApiError> {
    let max = state.settings.limits.max_batch;
    if len == 0 {
        return Err(ApiError::invalid(
            "[]",
            "a batch must hold at least one item",
        ));
    }
    if len > max {
        return Err(ApiError::new(
            actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!("a batch may hold at most {max} items; this one has {len}"),
        ));
    }
    Ok(())
}

/// `DELETE /task`: stops one task (`taskId`: a copy, or every copy of a
/// publish) or every task with a `key`: waiting copies are cancelled, running
/// ones flagged for their workers. With `workerId` or `queue` (admin only),
/// removes every task of that worker or queue.
pub async fn cancel(call: Call, body: Body) -> Answer {
    let p = body.params()?;
    let state = &call.state;
    p.only(&["workerId", "queue", "taskId", "key"])?;
    let given = ["workerId", "queue", "taskId", "key"]
        .iter()
        .filter(|f| p.flag(f))
        .count();
    if given != 1 {
        return Err(ApiError::invalid(
            "taskId",
            "give exactly one of `taskId`, `key`, `workerId` and `queue`",
        ));
    }
    // A key limited to some queues stops tasks in those only.
    let within = call.within();
    if let Some(id) = p.task_id("taskId")? {
        let target = CancelTarget::Task(id);
        return cancelled(state.broker.cancel(target, within.as_ref()).await?);
    }
    if let Some(key) = parse_key(&p, "key")? {
        let target = CancelTarget::Key(key);
        return cancelled(state.broker.cancel(target, within.as_ref()).await?);
    }
    if !call.is_admin() {
        return Err(ApiError::new(
            actix_web::http::StatusCode::FORBIDDEN,
            "forbidden",
            "removing every task of a worker or a queue needs an admin key",
        ));
    }
    let selector = match (p.worker_id("workerId")?, p.queue("queue")?) {
        (Some(w), None) => TaskSelector::Worker(w),
        (None, Some(q)) => TaskSelector::Queue(q),
        _ => {
            return Err(ApiError::invalid(
                "workerId",
                "give exactly one of `workerId` and `queue`",
            ))
        }
    };
    let target = match &selector {
        TaskSelector::Worker(w) => format!("tasks of worker {w}"),
        TaskSelector::Queue(q) => format!("tasks of {q}"),
        TaskSelector::Task(id) => id.to_string(),
        TaskSelector::Failed(_) => "failed tasks".into(),
        TaskSelector::FailedAmong(ids) => format!("{} failed tasks", ids.len()),
    };
    let deleted = state.broker.delete_tasks(selector).await?;
    let detail = Some(format!("{deleted} task(s)"));
    call.audit("remove_tasks", &target, detail).await?;
    json(&json!({"deleted": deleted}))
}

fn cancelled(c: Cancellation) -> Answer {
    json(&json!({
        "cancelled": c.cancelled,
        "cancelRequested": c.requested,
        "untouched": c.untouched,
    }))
}
