//! The Schedules page: every named schedule, what it publishes and when;
//! run now, pause and resume, edit, delete.

use actix_web::{web, HttpRequest};
use askama::Template;
use serde_json::{json, Map, Value};

use super::pages::{
    bad, json_object, not_found, render, see_other, url_encode, Chrome, Data, Form, Res,
};
use super::view;
use crate::api::caller_role;
use crate::api::params::Body;
use crate::model::{parse_time, Millis, ScheduleRecord, Spec};

#[derive(Template)]
#[template(path = "schedules.html")]
struct SchedulesPage {
    chrome: Chrome,
    rows: Vec<ScheduleLine>,
}

struct ScheduleLine {
    name: String,
    paused: bool,
    /// For the action URLs.
    path: String,
    spec: String,
    timezone: String,
    next: String,
    last: String,
    publishes: String,
    /// The edit form's fields as they stand.
    form: EditFields,
}

/// A schedule as its edit form shows it.
#[derive(Default)]
struct EditFields {
    cron: String,
    timezone: String,
    every: String,
    at: String,
    task: String,
}

impl EditFields {
    fn of(s: &ScheduleRecord) -> Self {
        let mut f = EditFields {
            task: serde_json::to_string_pretty(&crate::api::task::publish_params(&s.task))
                .unwrap_or_default(),
            ..Default::default()
        };
        match &s.spec {
            Spec::Cron { expr, timezone } => {
                f.cron = expr.clone();
                f.timezone = timezone.clone();
            }
            Spec::Every { secs } => f.every = secs.to_string(),
            Spec::At { at } => f.at = view::time(*at).trim_end_matches(" UTC").replace(' ', "T"),
        }
        f
    }
}

fn spec_text(spec: &Spec) -> (String, String) {
    match spec {
        Spec::Cron { expr, timezone } => (format!("cron {expr}"), timezone.clone()),
        Spec::Every { secs } => (format!("every {secs} s"), "-".into()),
        Spec::At { at } => (format!("once at {}", view::time(*at)), "UTC".into()),
    }
}

pub async fn schedules(req: HttpRequest, state: Data) -> Res {
    let now = state.broker.now();
    let mut schedules = state.broker.schedules().await?;
    schedules.sort_by(|a, b| a.name.cmp(&b.name));
    let rows = schedules
        .iter()
        .map(|s| {
            let (spec, timezone) = spec_text(&s.spec);
            let when = |at: Option<Millis>, none: &str| {
                at.map_or_else(
                    || none.to_owned(),
                    |at| format!("{} ({})", view::time(at), view::relative(at, now)),
                )
            };
            ScheduleLine {
                path: url_encode(&s.name),
                name: s.name.clone(),
                paused: s.paused,
                form: EditFields::of(s),
                spec,
                timezone,
                next: match s.paused {
                    true => "paused".into(),
                    false => when(s.next_run, "never again"),
                },
                last: when(s.last_run, "not yet"),
                publishes: view::preview(&s.task.data),
            }
        })
        .collect();
    render(SchedulesPage {
        chrome: Chrome::new(&req, "Schedules", "schedules"),
        rows,
    })
}

pub async fn schedule_action(
    req: HttpRequest,
    state: Data,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Res {
    let form = Form::read(&req, &body)?;
    let (name, action) = path.into_inner();
    let who = caller_role(&req);
    match action.as_str() {
        "run-now" => {
            let id = state.broker.run_schedule_now(&name, &who).await?;
            Ok(see_other(
                form.back("/admin/schedules"),
                &format!("Schedule {name} published task {id} now; its next run is unchanged"),
            ))
        }
        "pause" | "resume" => {
            let paused = action == "pause";
            let s = state.broker.pause_schedule(&name, paused).await?;
            let (audited, done) = match paused {
                true => ("pause_schedule", format!("Paused schedule {name}")),
                false => (
                    "resume_schedule",
                    format!(
                        "Resumed schedule {name}; its next run is {}",
                        s.next_run.map_or("never".into(), view::time)
                    ),
                ),
            };
            state.broker.audit_event(&who, audited, &name, None).await?;
            Ok(see_other(form.back("/admin/schedules"), &done))
        }
        "edit" => {
            let old = state
                .broker
                .schedules()
                .await?
                .into_iter()
                .find(|s| s.name == name)
                .ok_or_else(|| crate::broker::BrokerError::UnknownSchedule(name.clone()))?;
            let params = Body::from_args(Some(Value::Object(edited(&form)?)))?.params()?;
            let (spec, task) = crate::api::schedule::parse(&params, &state)?;
            let s = state
                .broker
                .set_schedule(name.clone(), spec, task, old.paused)
                .await?;
            let detail = serde_json::to_string(&s.spec).ok();
            state
                .broker
                .audit_event(&who, "edit_schedule", &name, detail)
                .await?;
            Ok(see_other(
                form.back("/admin/schedules"),
                &format!("Saved schedule {name}"),
            ))
        }
        "delete" => {
            state.broker.remove_schedule(&name, &who).await?;
            Ok(see_other(
                form.back("/admin/schedules"),
                &format!("Deleted schedule {name}"),
            ))
        }
        _ => not_found(req).await,
    }
}

/// The edit form's fields as `PUT /schedule` parameters: whichever of
/// `cron`, `every` and `at` is filled, and `task` as JSON.
fn edited(form: &Form) -> Result<Map<String, Value>, super::pages::PageError> {
    let field = |name: &str| form.get(name).map(str::trim).filter(|v| !v.is_empty());
    let mut p = Map::new();
    if let Some(cron) = field("cron") {
        p.insert("cron".into(), json!(cron));
        if let Some(tz) = field("timezone") {
            p.insert("timezone".into(), json!(tz));
        }
    }
    if let Some(every) = field("every") {
        let secs: u64 = every
            .parse()
            .map_err(|_| bad("every", format!("is whole seconds, not `{every}`")))?;
        p.insert("every".into(), json!(secs));
    }
    if let Some(at) = field("at") {
        let at: Millis = parse_time(at).map_err(|why| bad("at", why))?;
        p.insert("at".into(), json!(at.as_secs_f64()));
    }
    let task = form.required("task")?;
    p.insert("task".into(), Value::Object(json_object("task", task)?));
    Ok(p)
}
