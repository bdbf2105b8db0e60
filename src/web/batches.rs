//! A batch's page: its totals, whether it ended, and its callback.

use actix_web::{web, HttpRequest};
use askama::Template;

use super::pages::{render, Chrome, Data, Res};
use super::view;
use crate::model::BatchRecord;

#[derive(Template)]
#[template(path = "batch.html")]
struct BatchPage {
    chrome: Chrome,
    b: BatchRecord,
    /// (state, count), in the order copies move through them.
    totals: Vec<(&'static str, u64)>,
    created: String,
    ended: Option<String>,
    callback: Option<String>,
    /// What it publishes when it ends (JSON).
    on_complete: Option<String>,
}

pub async fn batch(req: HttpRequest, state: Data, path: web::Path<String>) -> Res {
    let id = path.into_inner();
    let b = state.broker.batch(&id).await?;
    let now = state.broker.now();
    let totals = b.totals.by_state().to_vec();
    render(BatchPage {
        chrome: Chrome::new(&req, format!("Batch {id}"), ""),
        totals,
        created: format!(
            "{} ({})",
            view::time(b.created_at),
            view::relative(b.created_at, now)
        ),
        ended: b
            .ended_at
            .map(|at| format!("{} ({})", view::time(at), view::relative(at, now))),
        callback: b.callback.map(|p| p.to_string()),
        on_complete: b
            .on_complete
            .as_ref()
            .map(|t| view::pretty(&serde_json::Value::Object(t.data.clone()))),
        b,
    })
}
