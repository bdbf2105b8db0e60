//! `GET /healthz`, `GET /readyz` and `GET /openapi.json`: for load balancers,
//! orchestrators and client generators. Open to all.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::AppState;

/// The process answers.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The store takes a durable write within two seconds, and the service is not
/// shutting down.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.broker.is_shutting_down() {
        return HttpResponse::ServiceUnavailable().json(json!({"status": "shutting_down"}));
    }
    match tokio::time::timeout(Duration::from_secs(2), state.broker.store().flush()).await {
        Ok(Ok(())) => HttpResponse::Ok().json(json!({"status": "ready"})),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "readiness check failed");
            HttpResponse::ServiceUnavailable().json(json!({"status": "store_unavailable"}))
        }
        Err(_) => HttpResponse::ServiceUnavailable().json(json!({"status": "store_slow"})),
    }
}

pub async fn openapi(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(super::openapi::document(
        &state.settings,
        state.manual_clock.is_some(),
    ))
}
