//! `/queue`: removing a whole queue.

use serde_json::json;

use super::call::{json, Answer, Call};
use super::error::ApiError;
use super::params::Body;

/// `DELETE /queue`: removes a queue's interests and every task in it.
pub async fn delete(call: Call, body: Body) -> Answer {
    let p = body.params()?;
    p.only(&["queue"])?;
    let queue = p.required("queue", p.queue("queue")?)?;
    let deleted = call.state.broker.delete_queue(&queue).await?;
    let detail = format!("{deleted} task(s)");
    call.audit("delete_queue", queue.as_str(), Some(detail))
        .await?;
    json(&json!({"queue": queue, "deletedTasks": deleted}))
}

/// `PUT /queue`: sets a queue's limits: `maxRunning` (copies running at once
/// across all workers), `rateLimit` (claims per second), `paused`. An absent
/// field keeps its value; `null` clears it.
pub async fn update(call: Call, body: Body) -> Answer {
    let p = body.params()?;
    p.only(&["queue", "maxRunning", "rateLimit", "paused"])?;
    let queue = p.required("queue", p.queue("queue")?)?;
    let max_running = if p.is_null("maxRunning") {
        Some(None)
    } else {
        p.integer("maxRunning", 1, 1_000_000)?
            .map(|n| Some(n as u32))
    };
    let rate_limit = if p.is_null("rateLimit") {
        Some(None)
    } else {
        match p.number("rateLimit")? {
            Some(r) if r > 0.0 && r <= 1e6 => Some(Some(r)),
            Some(_) => {
                return Err(ApiError::invalid(
                    "rateLimit",
                    "must be claims per second, above 0 and at most 1e6",
                ))
            }
            None => None,
        }
    };
    let paused = p.boolean("paused")?;
    let settings = call
        .state
        .broker
        .update_queue_settings(&queue, max_running, rate_limit, paused)
        .await?;
    let detail = serde_json::to_string(&settings).ok();
    call.audit("queue_settings", queue.as_str(), detail).await?;
    json(&json!({"queue": queue, "settings": settings}))
}
