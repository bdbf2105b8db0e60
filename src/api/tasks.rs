//! `/tasks` and `/retry`: the task lists and the retry an operator reaches
//! for, as the management site offers them, for scripts and the CLI.

use serde_json::json;

use super::call::{json, Answer, Call};
use super::error::ApiError;
use super::params::Body;
use crate::model::{Page, QueueName, RetryTarget, TaskState};

/// States a list may ask for, as the API spells them.
pub const STATES: &[&str] = &[
    "ready",
    "scheduled",
    "running",
    "failed",
    "completed",
    "cancelled",
    "expired",
];

fn parse_state(s: &str) -> Option<TaskState> {
    Some(match s {
        "ready" => TaskState::Ready,
        "scheduled" => TaskState::Scheduled,
        "running" => TaskState::Running,
        "failed" => TaskState::Failed,
        "completed" => TaskState::Completed,
        "cancelled" => TaskState::Cancelled,
        "expired" => TaskState::Expired,
        _ => return None,
    })
}

/// `GET /tasks`: a page of copies in one state, of one queue or all.
pub async fn list(call: Call, body: Body) -> Answer {
    let p = body.params()?;
    p.only(&["state", "queue", "offset", "limit"])?;
    let state = p.required("state", p.string("state")?)?;
    let state = parse_state(&state)
        .ok_or_else(|| p.invalid("state", format!("must be one of {}", STATES.join(", "))))?;
    let queue = p.queue("queue")?;
    may_use(&call, queue.as_ref())?;
    let page = Page {
        offset: p.integer("offset", 0, u32::MAX as u64)?.unwrap_or(0) as usize,
        limit: p.integer("limit", 1, 1000)?.unwrap_or(100) as usize,
    };
    let tasks = call
        .state
        .broker
        .list_tasks(queue.as_ref(), state, page)
        .await?;
    json(&tasks)
}

/// `POST /retry`: failed copies get a fresh set of attempts: one (`taskId`),
/// a queue's (`queue`), or all of them (`all: true`).
pub async fn retry(call: Call, body: Body) -> Answer {
    let p = body.params()?;
    p.only(&["taskId", "queue", "all"])?;
    let id = p.task_id("taskId")?;
    let queue = p.queue("queue")?;
    let all = p.boolean("all")?.unwrap_or(false);
    // A key limited to some queues retries by queue, within them.
    if call.within().is_some() && queue.is_none() {
        return Err(ApiError::queue_not_allowed(
            "`queue`: a key limited to some queues retries by `queue`",
        ));
    }
    may_use(&call, queue.as_ref())?;
    let target = match (id, queue, all) {
        (Some(id), None, false) => RetryTarget::Task(id),
        (None, Some(q), false) => RetryTarget::Failed(Some(q)),
        (None, None, true) => RetryTarget::Failed(None),
        (None, None, false) => return Err(ApiError::missing("taskId` (or `queue`, or `all")),
        _ => return Err(p.invalid("taskId", "give one of `taskId`, `queue` and `all: true`")),
    };
    let retried = call.state.broker.retry(target, &call.role()).await?;
    json(&json!({"retried": retried}))
}

/// A key limited to some queues names one of them.
fn may_use(call: &Call, queue: Option<&QueueName>) -> Result<(), ApiError> {
    let Some(within) = call.within() else {
        return Ok(());
    };
    match queue {
        None => Err(ApiError::queue_not_allowed(
            "`queue`: a key limited to some queues lists one of them",
        )),
        Some(q) if !within.allows(q.as_str()) => Err(ApiError::queue_not_allowed(format!(
            "`queue`: this key may not use queue `{q}`"
        ))),
        Some(_) => Ok(()),
    }
}
