//! `POST /_testing/clock`: moves the manual clock. Mounted only when the
//! settings ask for a manual clock (`testing.manual_clock`), which tests do.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::error::ApiError;
use super::params::Params;
use super::AppState;

pub async fn advance_clock(
    state: web::Data<AppState>,
    p: Params,
) -> Result<HttpResponse, ApiError> {
    p.only(&["advance"])?;
    let secs = p.required("advance", p.number("advance")?)?;
    if !(0.0..=1e9).contains(&secs) {
        return Err(ApiError::invalid(
            "advance",
            "must be from 0 to 1e9 seconds",
        ));
    }
    let clock = state
        .manual_clock
        .as_ref()
        .ok_or_else(|| ApiError::not_found("not_found", "the clock is not manual"))?;
    clock.advance_ms((secs * 1000.0).round() as u64);
    state.broker.tick().await?;
    Ok(HttpResponse::Ok().json(json!({"now": state.broker.now()})))
}
