//! `/schedule`: named recurring (cron, interval) and one-off publishes.

use serde_json::{json, Value};

use super::call::{json, Answer, Call};
use super::error::ApiError;
use super::params::{Body, Params};
use super::task::parse_new_task;
use super::AppState;
use crate::model::{Millis, NewTask, ScheduleRecord, Spec};

/// How a schedule is shown: its timing, next and last due times, and task.
pub fn view(s: &ScheduleRecord) -> Value {
    json!({
        "name": s.name,
        "spec": s.spec,
        "nextRun": s.next_run,
        "lastRun": s.last_run,
        "paused": s.paused,
        "task": super::task::publish_params(&s.task),
    })
}

/// `PUT /schedule`: creates or replaces the schedule `name`, which publishes
/// `task` (the parameters of `PUT /task`) by `cron` (with `timezone`), `every`
/// so many seconds, or once `at` a time; `paused` creates it paused. With
/// only `name` and `paused`, pauses or resumes the schedule as it is.
pub async fn set(call: Call, body: Body) -> Answer {
    let p = body.params()?;
    let state = &call.state;
    p.only(&["name", "cron", "timezone", "every", "at", "task", "paused"])?;
    let name = p.required("name", p.string("name")?)?;
    let paused = p.boolean("paused")?;
    let replaced = SPEC_FIELDS.iter().any(|f| p.get(f).is_some());
    if let (Some(paused), false) = (paused, replaced) {
        let record = state.broker.pause_schedule(&name, paused).await?;
        let action = if paused {
            "pause_schedule"
        } else {
            "resume_schedule"
        };
        call.audit(action, &record.name, None).await?;
        return json(&view(&record));
    }
    let (spec, task) = parse(&p, state)?;
    let record = state
        .broker
        .set_schedule(name, spec, task, paused.unwrap_or(false))
        .await?;
    let detail = serde_json::to_string(&record.spec).ok();
    call.audit("set_schedule", &record.name, detail).await?;
    json(&view(&record))
}

/// The fields that say what a schedule is, beside its name.
const SPEC_FIELDS: [&str; 5] = ["cron", "timezone", "every", "at", "task"];

/// A schedule's timing and task, checked: for `PUT /schedule` and the
/// management site's edit form alike.
pub fn parse(p: &Params, state: &AppState) -> Result<(Spec, NewTask), ApiError> {
    let spec = match (
        p.string("cron")?,
        p.integer("every", 1, 10 * 365 * 86_400)?,
        p.number("at")?,
    ) {
        (Some(expr), None, None) => Spec::Cron {
            expr,
            timezone: p.string("timezone")?.unwrap_or_else(|| "UTC".to_owned()),
        },
        (None, Some(secs), None) => Spec::Every { secs },
        (None, None, Some(at)) => Spec::At {
            at: Millis::from_secs_f64(at)
                .ok_or_else(|| ApiError::invalid("at", "must be unix seconds, 0 or more"))?,
        },
        _ => {
            return Err(ApiError::invalid(
                "cron",
                "give exactly one of `cron`, `every` and `at`",
            ))
        }
    };
    if p.flag("timezone") && !matches!(spec, Spec::Cron { .. }) {
        return Err(ApiError::invalid("timezone", "goes only with `cron`"));
    }
    let task = p.nested("task")?;
    let task = parse_new_task(p.required("task", task)?, state)?;
    if task.require_route {
        return Err(ApiError::invalid(
            "task",
            "a scheduled task takes no `requireRoute`: nobody would hear the refusal",
        ));
    }
    if !task.depends_on.is_empty() {
        return Err(ApiError::invalid(
            "task.dependsOn",
            "a scheduled task takes no `dependsOn`: each firing would wait on the same tasks",
        ));
    }
    if task.run_at.is_some() || task.expire_at.is_some() {
        return Err(ApiError::invalid(
            "task",
            "a scheduled task takes no `runAt` or `expireAt` (the schedule says when; use `ttl`)",
        ));
    }
    Ok((spec, task))
}

/// `DELETE /schedule`: stops a schedule.
pub async fn delete(call: Call, body: Body) -> Answer {
    let p = body.params()?;
    p.only(&["name"])?;
    let name = p.required("name", p.string("name")?)?;
    call.state.broker.delete_schedule(&name).await?;
    call.audit("remove_schedule", &name, None).await?;
    json(&json!({"name": name, "deleted": true}))
}
