//! `/task`: publish (PUT), claim (GET), report (POST), delete (DELETE).

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde_json::{json, Value};

use super::error::ApiError;
use super::params::{Body, Params};
use super::AppState;
use crate::broker::{NewTask, Report};
use crate::model::{Millis, Priority, Scope};
use crate::store::TaskSelector;

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
];

/// `PUT /task`: one task, or a JSON array of tasks published in one commit.
pub async fn publish_task(
    state: web::Data<AppState>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let limits = &state.settings.limits;
    match body {
        Body::Params(p) => {
            let task = parse_new_task(&p, &state)?;
            let mut published = state.broker.publish(vec![task]).await?;
            Ok(HttpResponse::Ok().json(published.remove(0)))
        }
        Body::Batch(items) => {
            if items.is_empty() {
                return Err(ApiError::invalid(
                    "[]",
                    "a batch must hold at least one task",
                ));
            }
            if items.len() > limits.max_batch {
                return Err(ApiError::new(
                    actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
                    "batch_too_large",
                    format!(
                        "a batch may hold at most {} tasks; this one has {}",
                        limits.max_batch,
                        items.len()
                    ),
                ));
            }
            let tasks = items
                .into_iter()
                .enumerate()
                .map(|(i, item)| parse_new_task(&Params::item(i, item)?, &state))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(HttpResponse::Ok().json(state.broker.publish(tasks).await?))
        }
    }
}

fn parse_new_task(p: &Params, state: &AppState) -> Result<NewTask, ApiError> {
    p.only(PUBLISH_FIELDS)?;
    let limits = &state.settings.limits;
    let data = p.required("data", p.object("data")?)?;
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
    Ok(NewTask {
        publisher,
        data,
        run_at,
        scope,
        singularly_enqueue: p.boolean("singularlyEnqueue")?.unwrap_or(false),
        singularly_run: p.boolean("singularlyRun")?.unwrap_or(false),
        priority,
        max_attempts: p.integer("maxAttempts", 1, 1000)?.map(|n| n as u32),
        ttr: p.integer("ttr", 1, max_ttr)?.map(|n| n as u32),
        expire_at: None,
    })
}

/// `GET /task`: the next task for a worker (`null` when none), or with
/// `count` an array of up to that many. `wait` long-polls.
pub async fn claim_task(state: web::Data<AppState>, p: Params) -> Result<HttpResponse, ApiError> {
    let limits = &state.settings.limits;
    p.only(&["workerId", "count", "wait"])?;
    let worker = p.required("workerId", p.worker_id("workerId")?)?;
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
    Ok(match count {
        Some(_) => HttpResponse::Ok().json(tasks),
        None => HttpResponse::Ok().json(tasks.pop()),
    })
}

/// `POST /task`: a worker completes or fails its task.
pub async fn update_task(state: web::Data<AppState>, p: Params) -> Result<HttpResponse, ApiError> {
    let limits = &state.settings.limits;
    p.only(&["workerId", "taskId", "state", "failReason", "reEnqueue"])?;
    let worker = p.required("workerId", p.worker_id("workerId")?)?;
    let task = p.required("taskId", p.task_id("taskId")?)?;
    let fail_reason = p.string("failReason")?;
    if fail_reason
        .as_ref()
        .is_some_and(|r| r.len() > limits.max_text_bytes)
    {
        return Err(ApiError::invalid(
            "failReason",
            format!("may be at most {} bytes", limits.max_text_bytes),
        ));
    }
    let report = match p.required("state", p.string("state")?)?.as_str() {
        "complete" => Report::Complete,
        "fail" => Report::Fail {
            reason: fail_reason,
        },
        other => {
            return Err(ApiError::invalid(
                "state",
                format!("must be `complete` or `fail`, not `{other}`"),
            ))
        }
    };
    let re_enqueue = p.boolean("reEnqueue")?.unwrap_or(false);
    let task = state
        .broker
        .report(worker, task, report, re_enqueue)
        .await?;
    Ok(HttpResponse::Ok().json(task))
}

/// `DELETE /task`: removes every task of a worker or of a queue.
pub async fn delete_tasks(state: web::Data<AppState>, p: Params) -> Result<HttpResponse, ApiError> {
    p.only(&["workerId", "queue"])?;
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
    let deleted = state.broker.delete_tasks(selector).await?;
    Ok(HttpResponse::Ok().json(json!({"deleted": deleted})))
}
