//! The HTTP JSON API: one file per resource, parameters from a JSON body or
//! the query string (`params`), one error mapping (`error`), and one table of
//! every endpoint (`routes`) that mounts them, guards them (`guard`) and
//! describes them (`GET /openapi.json`).

pub mod admission;
mod batch;
pub mod call;
pub mod error;
mod guard;
mod health;
mod interest;
mod logs;
mod metrics;
mod openapi;
pub(crate) mod params;
pub mod queue;
pub mod routes;
pub mod schedule;
mod status;
pub mod task;
pub mod tasks;
mod testing;
mod worker;

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse};

use self::error::ApiError;
pub use self::guard::{caller, caller_role, check_access};
use crate::auth::Keys;
use crate::broker::clock::ManualClock;
use crate::broker::Broker;
use crate::config::Settings;

/// What every handler shares.
#[derive(Debug)]
pub struct AppState {
    pub broker: Arc<Broker>,
    pub settings: Settings,
    /// The configured keys; none means auth is off.
    pub keys: Keys,
    /// Set when the settings ask for a manual clock (tests).
    pub manual_clock: Option<Arc<ManualClock>>,
    /// Signs the management site's form tokens.
    pub csrf_secret: crate::web::csrf::Secret,
}

/// Mounts every API route.
pub fn configure(cfg: &mut actix_web::web::ServiceConfig, testing: bool) {
    routes::mount(cfg, testing);
}

/// A handler that panics answers 500, like any failure of ours: the
/// connection and the worker thread serving it carry on. (The request is
/// not held meanwhile: routing needs it unshared.)
pub async fn catch_panics(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use futures_util::FutureExt;
    match std::panic::AssertUnwindSafe(next.call(req))
        .catch_unwind()
        .await
    {
        Ok(answer) => answer,
        Err(panic) => {
            Err(ApiError::panicked(panic.as_ref(), "a request handler", "request").into())
        }
    }
}

/// A known path with another method: 405, with the methods it takes in
/// `Allow`.
async fn method_not_allowed(req: HttpRequest) -> HttpResponse {
    let testing = req
        .app_data::<actix_web::web::Data<AppState>>()
        .is_some_and(|s| s.manual_clock.is_some());
    let allowed: Vec<&str> = routes::endpoints()
        .iter()
        .filter(|e| e.path == req.path() && (testing || !e.testing_only))
        .map(|e| e.method)
        .collect();
    let mut answer = actix_web::ResponseError::error_response(&ApiError::new(
        actix_web::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} is not allowed on {}; it takes {}",
            req.method(),
            req.path(),
            allowed.join(", ")
        ),
    ));
    if let Ok(value) = actix_web::http::header::HeaderValue::from_str(&allowed.join(", ")) {
        answer
            .headers_mut()
            .insert(actix_web::http::header::ALLOW, value);
    }
    answer
}

/// The answer for paths no route serves.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::not_found(
        "not_found",
        format!("no route for {} {}", req.method(), req.path()),
    ))
}
