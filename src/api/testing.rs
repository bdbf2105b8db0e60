//! `POST /_testing/clock`: moves the manual clock. Mounted only when the
//! settings ask for a manual clock (`testing.manual_clock`), which tests do.

use serde_json::json;

use super::call::{json, Answer, Call};
use super::error::ApiError;
use super::params::Body;

pub async fn advance_clock(call: Call, body: Body) -> Answer {
    let p = body.params()?;
    let state = &call.state;
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
    json(&json!({"now": state.broker.now()}))
}
