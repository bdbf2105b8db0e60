//! `/queue`: removing a whole queue.

use serde_json::{json, Value};

use super::call::{json, Answer, Call};
use super::error::ApiError;
use super::params::{Body, Params};
use crate::broker::{SettingsChange, MAX_GROUP_OVERRIDES};
use crate::model::{is_valid_group, GroupSettings, MAX_GROUP_BYTES};

/// `DELETE /queue`: removes a queue's interests and every task in it.
pub async fn delete(call: Call, body: Body) -> Answer {
    let p = body.params()?;
    p.only(&["queue"])?;
    let queue = p.required("queue", p.queue("queue")?)?;
    let deleted = call.state.broker.delete_queue(&queue).await?;
    let detail = format!("{deleted} task(s)");
    call.audit("delete_queue", queue.as_str(), Some(detail))
        .await?;
    json(&json!({"queue": queue, "deletedTasks": deleted}))
}

/// `PUT /queue`: sets a queue's limits: `maxRunning` (copies running at once
/// across all workers), `rateLimit` (claims per second), `paused`, and its
/// fairness groups': `groupMaxRunning`, `groupRateLimit`, `strictPriority`
/// and `groups` (single groups' own limits and weights); and
/// `publishOutput` (completed copies' outputs go on as tasks). An absent
/// field keeps its value; `null` clears it.
pub async fn update(call: Call, body: Body) -> Answer {
    let p = body.params()?;
    p.only(&[
        "queue",
        "maxRunning",
        "rateLimit",
        "paused",
        "groupMaxRunning",
        "groupRateLimit",
        "strictPriority",
        "groups",
        "publishOutput",
        "searchFields",
    ])?;
    let queue = p.required("queue", p.queue("queue")?)?;
    let change = parse_change(&p)?;
    let settings = call
        .state
        .broker
        .update_queue_settings(&queue, change)
        .await?;
    let detail = serde_json::to_string(&settings).ok();
    call.audit("queue_settings", queue.as_str(), detail).await?;
    json(&json!({"queue": queue, "settings": settings}))
}

/// The limits a change sets, as `PUT /queue` and the management site's
/// limits form give them.
pub fn parse_change(p: &Params) -> Result<SettingsChange, ApiError> {
    Ok(SettingsChange {
        max_running: clearable(p, "maxRunning", max_running)?,
        rate_limit: clearable(p, "rateLimit", rate_limit)?,
        paused: p.boolean("paused")?,
        group_max_running: clearable(p, "groupMaxRunning", max_running)?,
        group_rate_limit: clearable(p, "groupRateLimit", rate_limit)?,
        strict_priority: p.boolean("strictPriority")?,
        groups: group_settings(p)?,
        publish_output: p.boolean("publishOutput")?,
        search_fields: search_fields(p)?,
    })
}

/// `searchFields`: a list of dotted paths into `data` (`null` or `[]`:
/// none).
fn search_fields(p: &Params) -> Result<Option<Vec<String>>, ApiError> {
    if p.is_null("searchFields") {
        return Ok(Some(Vec::new()));
    }
    let Some(value) = p.json("searchFields")? else {
        return Ok(None);
    };
    let fields: Vec<String> = match value {
        Value::Array(items) => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => Ok(s),
                other => Err(p.invalid("searchFields", format!("holds field names, not {other}"))),
            })
            .collect::<Result<_, _>>()?,
        // A form sends them with commas between.
        Value::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        _ => return Err(p.invalid("searchFields", "is a list of fields of `data`")),
    };
    crate::model::check_search_fields(&fields).map_err(|why| p.invalid("searchFields", why))?;
    Ok(Some(fields))
}

/// A setting that `null` clears: `Some(None)`; absent: `None`.
fn clearable<T>(
    p: &Params,
    field: &str,
    parse: fn(&Params, &str) -> Result<Option<T>, ApiError>,
) -> Result<Option<Option<T>>, ApiError> {
    if p.is_null(field) {
        return Ok(Some(None));
    }
    Ok(parse(p, field)?.map(Some))
}

fn max_running(p: &Params, field: &str) -> Result<Option<u32>, ApiError> {
    Ok(p.integer(field, 1, 1_000_000)?.map(|n| n as u32))
}

fn rate_limit(p: &Params, field: &str) -> Result<Option<f64>, ApiError> {
    match p.number(field)? {
        Some(r) if r > 0.0 && r <= 1e6 => Ok(Some(r)),
        Some(_) => Err(p.invalid(field, "must be claims per second, above 0 and at most 1e6")),
        None => Ok(None),
    }
}

/// `groups`: an object from group names to their own settings
/// (`maxRunning`, `rateLimit`, `weight`), or `null` to remove a group's.
fn group_settings(p: &Params) -> Result<Vec<(String, Option<GroupSettings>)>, ApiError> {
    let Some(groups) = p.object("groups")? else {
        return Ok(Vec::new());
    };
    if groups.len() > MAX_GROUP_OVERRIDES {
        return Err(p.invalid(
            "groups",
            format!("at most {MAX_GROUP_OVERRIDES} groups in one change"),
        ));
    }
    let own = p.nested("groups")?.expect("an object, read above");
    let mut out = Vec::with_capacity(groups.len());
    for (name, value) in groups {
        if !is_valid_group(&name) {
            return Err(p.invalid(
                "groups",
                format!("`{name}` is not a group name: 1 to {MAX_GROUP_BYTES} bytes without control characters"),
            ));
        }
        if value.is_null() {
            out.push((name, None));
            continue;
        }
        let g = own
            .nested(&name)
            .map_err(|_| {
                own.invalid(
                    &name,
                    "must be an object of maxRunning, rateLimit and weight, or null",
                )
            })?
            .expect("not null, checked above");
        g.only(&["maxRunning", "rateLimit", "weight"])?;
        out.push((
            name,
            Some(GroupSettings {
                max_running: max_running(&g, "maxRunning")?,
                rate_limit: rate_limit(&g, "rateLimit")?,
                weight: g.integer("weight", 1, 1000)?.map(|n| n as u32),
            }),
        ));
    }
    Ok(out)
}
