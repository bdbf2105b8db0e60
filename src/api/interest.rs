//! `/interest`: which tasks a queue wants.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::error::ApiError;
use super::params::Params;
use super::AppState;

/// `PUT /interest`: replaces a queue's interests, creating the queue.
pub async fn create_interest(
    state: web::Data<AppState>,
    p: Params,
) -> Result<HttpResponse, ApiError> {
    p.only(&["queue", "interests"])?;
    let queue = p.required("queue", p.queue("queue")?)?;
    let interests = p.required("interests", p.json("interests")?)?;
    let normalized = state
        .broker
        .set_interests(queue.clone(), &interests)
        .await?;
    Ok(HttpResponse::Ok().json(json!({"queue": queue, "interests": normalized})))
}

/// `DELETE /interest`: the queue stops receiving tasks; its tasks stay.
pub async fn delete_interest(
    state: web::Data<AppState>,
    p: Params,
) -> Result<HttpResponse, ApiError> {
    p.only(&["queue"])?;
    let queue = p.required("queue", p.queue("queue")?)?;
    state.broker.delete_interests(&queue).await?;
    Ok(HttpResponse::Ok().json(json!({"queue": queue, "deleted": true})))
}
