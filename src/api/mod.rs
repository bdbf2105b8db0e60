//! The HTTP JSON API: one file per resource, parameters from a JSON body or
//! the query string (`params`), and one error mapping (`error`).

pub mod error;
mod interest;
mod params;
mod queue;
mod status;
mod task;
mod testing;
mod worker;

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use self::error::ApiError;
use crate::broker::clock::ManualClock;
use crate::broker::Broker;
use crate::config::Settings;

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    pub broker: Arc<Broker>,
    pub settings: Settings,
    /// Set when the settings ask for a manual clock (tests).
    pub manual_clock: Option<Arc<ManualClock>>,
}

/// Mounts every API route.
pub fn routes(cfg: &mut web::ServiceConfig, testing: bool) {
    cfg.service(
        web::resource("/task")
            .route(web::put().to(task::publish_task))
            .route(web::get().to(task::claim_task))
            .route(web::post().to(task::update_task))
            .route(web::delete().to(task::delete_tasks))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/worker")
            .route(web::put().to(worker::register_worker))
            .route(web::delete().to(worker::delete_worker))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/interest")
            .route(web::put().to(interest::create_interest))
            .route(web::delete().to(interest::delete_interest))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/queue")
            .route(web::delete().to(queue::delete_queue))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/status")
            .route(web::get().to(status::show_status))
            .default_service(web::to(method_not_allowed)),
    )
    .service(web::resource("/healthz").route(web::get().to(healthz)));
    if testing {
        cfg.service(web::resource("/_testing/clock").route(web::post().to(testing::advance_clock)));
    }
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::new(
        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.path()),
    ))
}

/// The answer for paths no route serves.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found(
        "not_found",
        format!("no route for {} {}", req.method(), req.path()),
    ))
}
