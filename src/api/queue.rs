//! `/queue`: removing a whole queue.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::error::ApiError;
use super::params::Params;
use super::AppState;

/// `DELETE /queue`: removes a queue's interests and every task in it.
pub async fn delete_queue(
    state: web::Data<AppState>,
    req: HttpRequest,
    p: Params,
) -> Result<HttpResponse, ApiError> {
    p.only(&["queue"])?;
    let queue = p.required("queue", p.queue("queue")?)?;
    let deleted = state.broker.delete_queue(&queue).await?;
    let detail = format!("{deleted} task(s)");
    super::audit(&req, &state, "delete_queue", queue.as_str(), Some(detail)).await?;
    Ok(HttpResponse::Ok().json(json!({"queue": queue, "deletedTasks": deleted})))
}

/// `PUT /queue`: sets a queue's limits: `maxRunning` (copies running at once
/// across all workers), `rateLimit` (claims per second), `paused`. An absent
/// field keeps its value; `null` clears it.
pub async fn update_queue(
    state: web::Data<AppState>,
    req: HttpRequest,
    p: Params,
) -> Result<HttpResponse, ApiError> {
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
    let settings = state
        .broker
        .update_queue_settings(&queue, max_running, rate_limit, paused)
        .await?;
    let detail = serde_json::to_string(&settings).ok();
    super::audit(&req, &state, "queue_settings", queue.as_str(), detail).await?;
    Ok(HttpResponse::Ok().json(json!({"queue": queue, "settings": settings})))
}
