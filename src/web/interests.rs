//! The Interests page: every queue's interests, the editor (a row per field
//! with its regex or operator, or JSON for what rows cannot say), trying a
//! task, and trying a candidate against the recent publishes.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest};
use askama::Template;
use serde_json::Value;

use super::interest_form::{interests_of, rows_of, with_spares, Row, Takes, OPERATORS};
use super::pages::{
    bad, json_object, render, see_other, url_encode, Chrome, Data, Form, ListQuery, PageError, Res,
};
use super::view::{self, Pager};
use crate::api::{caller_role, AppState};
use crate::broker::admin::{Preview, Reach};
use crate::broker::BrokerError;
use crate::model::QueueName;

#[derive(Template)]
#[template(path = "interests.html")]
struct InterestsPage {
    chrome: Chrome,
    queues: Vec<(String, String, String)>,
    /// The name filter, and how many queues it leaves.
    find: String,
    found: usize,
    pager: Pager,
    /// The add/edit form's contents.
    editor: Editor,
    operators: &'static [(&'static str, &'static str)],
    sample_task: String,
    reach: Option<Vec<Reach>>,
    preview: Option<Preview>,
    preview_examples: Vec<String>,
}

/// The add/edit form: rows, or JSON.
#[derive(Debug, Clone)]
struct Editor {
    queue: String,
    as_json: bool,
    json: String,
    takes: &'static str,
    rows: Vec<Row>,
    /// Why the last save was refused, when not one row's fault.
    error: Option<String>,
}

impl Editor {
    fn empty() -> Self {
        Self {
            queue: String::new(),
            as_json: false,
            json: String::new(),
            takes: Takes::Fields.as_str(),
            rows: with_spares(Vec::new()),
            error: None,
        }
    }

    /// The editor for a queue's current interests: rows when they can say
    /// them (and JSON was not asked for).
    fn of(queue: &str, interests: &Value, as_json: bool) -> Self {
        let json = view::pretty(interests);
        match rows_of(interests).filter(|_| !as_json) {
            Some((takes, rows)) => Self {
                queue: queue.to_owned(),
                json,
                takes: takes.as_str(),
                rows,
                ..Self::empty()
            },
            None => Self {
                queue: queue.to_owned(),
                as_json: true,
                json,
                ..Self::empty()
            },
        }
    }
}

/// Recent publishes a candidate interest is tried against.
const PREVIEW_TASKS: usize = 1000;
/// Queues listed on one page of the interests page.
const INTERESTS_PER_PAGE: usize = 100;

/// Which queues the interests page lists: a page of those whose names
/// contain `find`.
#[derive(Debug, Clone, Default)]
struct Listing {
    find: String,
    page: usize,
}

impl Listing {
    fn of(q: &ListQuery) -> Result<Self, PageError> {
        Ok(Self {
            find: q.find.as_deref().unwrap_or("").trim().to_owned(),
            page: q.page()?,
        })
    }
}

async fn interests_page(
    req: &HttpRequest,
    state: &AppState,
    listing: Listing,
    editor: Editor,
    sample_task: String,
    reach: Option<Vec<Reach>>,
    preview: Option<Preview>,
) -> Res {
    let (page, found) = state.broker.interests_page(
        &listing.find,
        (listing.page.max(1) - 1) * INTERESTS_PER_PAGE,
        INTERESTS_PER_PAGE,
    );
    let queues: Vec<(String, String, String)> = page
        .into_iter()
        .map(|(q, v)| (q.to_string(), url_encode(q.as_str()), view::pretty(&v)))
        .collect();
    let base = if listing.find.is_empty() {
        "/admin/interests?".to_owned()
    } else {
        format!("/admin/interests?find={}&", url_encode(&listing.find))
    };
    let pager = Pager::sized(
        &base,
        listing.page,
        INTERESTS_PER_PAGE,
        Some(found as u64),
        queues.len(),
    );
    let preview_examples = preview
        .as_ref()
        .map(|p| p.examples.iter().map(|d| view::preview(d)).collect())
        .unwrap_or_default();
    render(InterestsPage {
        chrome: Chrome::new(req, "Interests", "interests"),
        queues,
        find: listing.find,
        found,
        pager,
        editor,
        operators: &OPERATORS,
        sample_task,
        reach,
        preview,
        preview_examples,
    })
}

pub async fn interests(req: HttpRequest, state: Data, q: web::Query<ListQuery>) -> Res {
    let editor = match q.edit.as_deref() {
        Some(name) => {
            let queue = QueueName::parse(name).map_err(|e| bad("queue", e))?;
            let current = state.broker.interests_of(&queue);
            let current = current.ok_or(BrokerError::UnknownQueue(queue))?;
            Editor::of(name, &current, q.view_as.as_deref() == Some("json"))
        }
        None => Editor {
            as_json: q.view_as.as_deref() == Some("json"),
            ..Editor::empty()
        },
    };
    interests_page(
        &req,
        &state,
        Listing::of(&q)?,
        editor,
        String::new(),
        None,
        None,
    )
    .await
}

/// The editor's rows as submitted: each row's field, operator and value.
fn submitted_rows(form: &Form) -> Vec<Row> {
    form.all("field")
        .zip(form.all("op"))
        .zip(form.all("value"))
        .map(|((field, op), value)| Row {
            field: field.to_owned(),
            op: op.to_owned(),
            value: value.to_owned(),
            error: None,
        })
        .collect()
}

/// The form again, as it was sent, with why it was refused: next to the
/// row at fault when there is one.
async fn refused(
    req: &HttpRequest,
    state: &AppState,
    mut editor: Editor,
    row: Option<usize>,
    why: String,
) -> Res {
    match row.and_then(|i| editor.rows.get_mut(i)) {
        Some(r) => r.error = Some(why),
        None => editor.error = Some(why),
    }
    let mut page = interests_page(
        req,
        state,
        Listing::default(),
        editor,
        String::new(),
        None,
        None,
    )
    .await?;
    *page.status_mut() = StatusCode::BAD_REQUEST;
    Ok(page)
}

/// Saves a queue's interests, or (with `preview`) tries them against the
/// recent publishes without saving. From rows (`mode=fields`) or JSON.
pub async fn save_interests(req: HttpRequest, state: Data, body: web::Bytes) -> Res {
    let form = Form::read(&req, &body)?;
    let queue_text = form.required("queue")?.trim();
    let queue = QueueName::parse(queue_text).map_err(|e| bad("queue", e))?;
    let (value, editor) = if form.get("mode") == Some("fields") {
        let takes = match form.get("takes") {
            Some("every") => Takes::Every,
            Some("unrouted") => Takes::Unrouted,
            Some("fields") | None => Takes::Fields,
            Some(other) => {
                return Err(bad(
                    "takes",
                    format!("is fields, every or unrouted, not `{other}`"),
                ))
            }
        };
        let rows = submitted_rows(&form);
        let editor = Editor {
            queue: queue_text.to_owned(),
            takes: takes.as_str(),
            rows: rows.clone(),
            ..Editor::empty()
        };
        match interests_of(takes, &rows) {
            Ok(v) => (v, editor),
            Err((row, why)) => return refused(&req, &state, editor, row, why).await,
        }
    } else {
        let raw = form.required("interests")?;
        let value: Value = serde_json::from_str(raw)
            .map_err(|e| bad("interests", format!("is not valid JSON: {e}")))?;
        let editor = Editor {
            queue: queue_text.to_owned(),
            as_json: true,
            json: raw.to_owned(),
            ..Editor::empty()
        };
        (value, editor)
    };
    let outcome = match form.get("preview").is_some() {
        true => state
            .broker
            .preview_interests(&queue, &value, PREVIEW_TASKS)
            .map(Some),
        false => state
            .broker
            .set_interests(queue.clone(), &value)
            .await
            .map(|_| None),
    };
    match outcome {
        Ok(Some(preview)) => {
            interests_page(
                &req,
                &state,
                Listing::default(),
                editor,
                String::new(),
                None,
                Some(preview),
            )
            .await
        }
        Ok(None) => {
            state
                .broker
                .audit_event(
                    &caller_role(&req),
                    "set_interests",
                    queue.as_str(),
                    Some(value.to_string()),
                )
                .await?;
            Ok(see_other(
                "/admin/interests",
                &format!("Saved the interests of {queue}"),
            ))
        }
        // Rows: the message goes next to the row of the field at fault.
        Err(BrokerError::Interest(e)) if !editor.as_json => {
            let row = e
                .field()
                .and_then(|f| editor.rows.iter().position(|r| r.field.trim() == f));
            refused(&req, &state, editor, row, e.to_string()).await
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn remove_interests(
    req: HttpRequest,
    state: Data,
    path: web::Path<String>,
    body: web::Bytes,
) -> Res {
    Form::read(&req, &body)?;
    let queue = QueueName::parse(&path).map_err(|e| bad("queue", e))?;
    state.broker.delete_interests(&queue).await?;
    state
        .broker
        .audit_event(&caller_role(&req), "remove_interests", queue.as_str(), None)
        .await?;
    Ok(see_other(
        "/admin/interests",
        &format!("Removed the interests of {queue}: it receives no new tasks"),
    ))
}

pub async fn try_task(req: HttpRequest, state: Data, body: web::Bytes) -> Res {
    let form = Form::read(&req, &body)?;
    let raw = form.required("task")?;
    let data = json_object("task", raw)?;
    let reach = state.broker.try_task(&data);
    interests_page(
        &req,
        &state,
        Listing::default(),
        Editor::empty(),
        raw.to_owned(),
        Some(reach),
        None,
    )
    .await
}
