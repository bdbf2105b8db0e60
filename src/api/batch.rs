//! `/batch`: tasks published under one id, counted as their copies move,
//! with a task published once when every copy has ended.

use serde_json::{json, Value};

use super::call::{json, Answer, Call};
use super::error::ApiError;
use super::params::Body;
use super::task::{check_batch_size, parse_new_task};
use crate::broker::{BrokerError, NewBatch};
use crate::model::{is_valid_batch_id, BatchRecord, Scope, MAX_BATCH_ID_BYTES};

/// `PUT /batch`: `tasks` (the parameters of `PUT /task` each) published in
/// one commit as batch `batch` (an id is made when none is given), with
/// `onComplete` published once every copy has ended, and `more: true` to
/// keep it open for later `PUT /batch`es of the same id.
pub async fn publish(call: Call, body: Body) -> Answer {
    let p = body.params()?;
    let state = &call.state;
    p.only(&["batch", "tasks", "onComplete", "more"])?;
    let id = match p.string("batch")? {
        Some(id) if !is_valid_batch_id(&id) => {
            return Err(p.invalid(
                "batch",
                format!("a batch id is 1 to {MAX_BATCH_ID_BYTES} bytes without control characters"),
            ))
        }
        id => id,
    };
    let items = p.required("tasks", p.items("tasks")?)?;
    let more = p.boolean("more")?.unwrap_or(false);
    // An empty list closes a batch opened with `more`, or makes one that
    // ends at once.
    if !items.is_empty() {
        check_batch_size(items.len(), state)?;
    }
    let tasks = items
        .into_iter()
        .map(|item| parse_new_task(item, state))
        .collect::<Result<Vec<_>, _>>()?;
    let on_complete = match p.nested("onComplete")? {
        None => None,
        Some(nested) => {
            let task = parse_new_task(nested, state)?;
            if task.scope == Scope::All {
                return Err(p.invalid(
                    "onComplete.scope",
                    "a batch's callback goes once to each interested queue: `any`",
                ));
            }
            if !task.depends_on.is_empty() {
                return Err(p.invalid(
                    "onComplete.dependsOn",
                    "the callback is published when the batch ends: it waits for nothing else",
                ));
            }
            if task.require_route {
                return Err(p.invalid(
                    "onComplete.requireRoute",
                    "nobody would hear the refusal: the callback is published when the batch ends",
                ));
            }
            Some(task)
        }
    };
    let within = call.within();
    // The callback is routed when the batch ends, with nobody's limits to
    // hold it to: a key limited to some queues may not give one.
    if on_complete.is_some() && within.is_some() {
        return Err(ApiError::queue_not_allowed(
            "`onComplete`: a key limited to some queues may not give a batch a callback",
        ));
    }
    let batch = NewBatch {
        id,
        tasks,
        on_complete,
        more,
    };
    let (id, published) = state
        .broker
        .publish_batch(batch, within.as_ref())
        .await
        .map_err(|e| match e {
            BrokerError::Unrouted { index } => ApiError::unrouted_in("tasks", index),
            other => other.into(),
        })?;
    json(&json!({"batch": id, "published": published}))
}

/// A batch as status shows it.
pub fn view(b: &BatchRecord) -> Value {
    let mut v = json!(b);
    v["copies"] = json!(b.totals.copies());
    v["ended"] = json!(b.has_ended());
    v
}
