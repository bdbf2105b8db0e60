//! `/queue`: removing a whole queue.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::error::ApiError;
use super::params::Params;
use super::AppState;

/// `DELETE /queue`: removes a queue's interests and every task in it.
pub async fn delete_queue(state: web::Data<AppState>, p: Params) -> Result<HttpResponse, ApiError> {
    p.only(&["queue"])?;
    let queue = p.required("queue", p.queue("queue")?)?;
    let deleted = state.broker.delete_queue(&queue).await?;
    Ok(HttpResponse::Ok().json(json!({"queue": queue, "deletedTasks": deleted})))
}
