//! `/tasks` and `/retry`: the task lists and the retry an operator reaches
//! for, as the management site offers them, for scripts and the CLI.

use serde_json::{json, Value};

use super::call::{json, Answer, Call};
use super::error::ApiError;
use super::params::{Body, Params};
use crate::model::{
    parse_time, BulkAction, FieldMatch, FieldMatchError, Millis, Page, QueueName, RetryTarget,
    Selection, TaskFilter, TaskState,
};

/// States a list may ask for, as the API spells them.
pub const STATES: &[&str] = &[
    "ready",
    "blocked",
    "scheduled",
    "running",
    "failed",
    "completed",
    "cancelled",
    "expired",
];

/// `GET /tasks`: a page of copies in one state, of one queue or all.
pub async fn list(call: Call, body: Body) -> Answer {
    let p = body.params()?;
    let mut allowed = vec!["state", "queue", "offset", "limit", "archived", "before"];
    allowed.extend(FILTERS);
    p.only(&allowed)?;
    let state = p.required("state", p.string("state")?)?;
    let state = TaskState::parse(&state)
        .ok_or_else(|| p.invalid("state", format!("must be one of {}", STATES.join(", "))))?;
    let queue = p.queue("queue")?;
    may_use(&call, queue.as_ref())?;
    let page = Page {
        offset: p.integer("offset", 0, u32::MAX as u64)?.unwrap_or(0) as usize,
        limit: p.integer("limit", 1, 1000)?.unwrap_or(100) as usize,
    };
    let filter = filter_of(&p)?;
    if p.boolean("archived")?.unwrap_or(false) {
        return archived(&call, &p, queue, state, &filter, page).await;
    }
    if p.task_id("before")?.is_some() {
        return Err(p.invalid(
            "before",
            "is a cursor of the archive: only with archived=true",
        ));
    }
    let tasks = call
        .state
        .broker
        .list_tasks(queue.as_ref(), state, &filter, page)
        .await?;
    json(&tasks)
}

/// `GET /tasks?archived=true`: a page of a queue's archive, newest first,
/// from the copy after `before` (the last of the page shown), or the page
/// newer than `after` (the first of the page shown).
async fn archived(
    call: &Call,
    p: &Params,
    queue: Option<QueueName>,
    state: TaskState,
    filter: &TaskFilter,
    page: Page,
) -> Answer {
    let queue = p.required("queue", queue)?;
    if !state.is_finished() {
        return Err(p.invalid(
            "state",
            "the archive holds finished copies: completed, cancelled or expired",
        ));
    }
    if page.offset != 0 {
        return Err(p.invalid(
            "offset",
            "the archive is paged by before and after, not offset",
        ));
    }
    let before = p.task_id("before")?;
    if before.is_some() && filter.after.is_some() {
        return Err(p.invalid("after", "give `before` or `after`, not both"));
    }
    let cursor = if filter.after.is_some() {
        "after"
    } else {
        "before"
    };
    let tasks = call
        .state
        .broker
        .list_archived(&queue, state, filter, before, page.limit)
        .await
        .map_err(|e| match e {
            crate::broker::BrokerError::UnknownTask(id) => p.invalid(
                cursor,
                format!("{id} is not in the archive (swept, or never archived)"),
            ),
            other => other.into(),
        })?;
    json(&tasks)
}

/// Longest text a `publisher` or `reason` search takes.
const MAX_SEARCH_BYTES: usize = 256;

/// The search parameters of a listing: `key`, `publisher`, `group`, `reason` (text
/// in the failure reason, any case), `since` and `until` (publish times) and
/// `data` (`field=pattern`, or an object of fields and patterns, or a list
/// of `field=pattern`).
fn filter_of(p: &Params) -> Result<TaskFilter, ApiError> {
    let text = |field: &str| -> Result<Option<String>, ApiError> {
        match p.string(field)? {
            Some(s) if s.is_empty() || s.len() > MAX_SEARCH_BYTES => {
                Err(p.invalid(field, format!("must be 1 to {MAX_SEARCH_BYTES} bytes")))
            }
            other => Ok(other),
        }
    };
    let filter = TaskFilter {
        key: p.string("key")?,
        publisher: text("publisher")?,
        group: p.string("group")?,
        reason: text("reason")?,
        since: time_of(p, "since")?,
        until: time_of(p, "until")?,
        data: data_of(p)?,
        after: p.task_id("after")?,
    };
    filter
        .check()
        .map_err(|(field, why)| p.invalid(field, why))?;
    Ok(filter)
}

fn time_of(p: &Params, field: &str) -> Result<Option<Millis>, ApiError> {
    let at = match p.get(field) {
        None => return Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .and_then(Millis::from_secs_f64)
            .ok_or_else(|| "must be Unix seconds or a UTC date and time".to_owned()),
        Some(Value::String(s)) => parse_time(s),
        Some(_) => Err("must be Unix seconds or a UTC date and time".to_owned()),
    };
    at.map(Some).map_err(|why| p.invalid(field, why))
}

/// Conditions a search takes on `data`, so that one search costs what a
/// person's does.
const MAX_DATA_CONDITIONS: usize = 16;

fn data_of(p: &Params) -> Result<Vec<FieldMatch>, ApiError> {
    let bad = |why: String| p.invalid("data", why);
    let parsed: Vec<Result<FieldMatch, FieldMatchError>> = match p.json("data")? {
        None => return Ok(Vec::new()),
        Some(Value::String(s)) => vec![FieldMatch::parse(&s)],
        Some(Value::Object(m)) => m
            .iter()
            .map(|(field, pattern)| match pattern {
                Value::String(pattern) => FieldMatch::new(field, pattern),
                _ => Err(FieldMatchError(format!("`{field}`'s pattern must be a string"))),
            })
            .collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => FieldMatch::parse(s),
                _ => Err(FieldMatchError("each condition is a `field=pattern` string".into())),
            })
            .collect(),
        Some(_) => {
            return Err(bad(
                "must be `field=pattern`, an object of fields and patterns, or a list of `field=pattern`".into(),
            ))
        }
    };
    if parsed.len() > MAX_DATA_CONDITIONS {
        return Err(bad(format!(
            "takes at most {MAX_DATA_CONDITIONS} conditions"
        )));
    }
    parsed
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(|e| bad(e.0))
}

/// Parameters of a search, beside a listing's or a bulk action's own.
pub const FILTERS: [&str; 8] = [
    "key",
    "publisher",
    "group",
    "reason",
    "since",
    "until",
    "data",
    "after",
];

/// `POST /retry`: failed copies get a fresh set of attempts: one (`taskId`),
/// a queue's (`queue`), or all of them (`all: true`); with a search, only
/// those of the queue's (or all) that match it, a thousand a step.
pub async fn retry(call: Call, body: Body) -> Answer {
    let p = body.params()?;
    let mut allowed = vec!["taskId", "queue", "all"];
    allowed.extend(FILTERS);
    p.only(&allowed)?;
    let filter = filter_of(&p)?;
    let id = p.task_id("taskId")?;
    let queue = p.queue("queue")?;
    let all = p.boolean("all")?.unwrap_or(false);
    // A key limited to some queues retries by queue, within them.
    if call.within().is_some() && queue.is_none() {
        return Err(ApiError::queue_not_allowed(
            "`queue`: a key limited to some queues retries by `queue`",
        ));
    }
    may_use(&call, queue.as_ref())?;
    if !filter.is_empty() {
        if id.is_some() {
            return Err(p.invalid(
                "taskId",
                "a search retries by `queue` or `all`, not one copy",
            ));
        }
        if queue.is_none() && !all {
            return Err(ApiError::missing("queue` (or `all"));
        }
        let retried = call
            .state
            .broker
            .retry_matching(queue.as_ref(), &filter, &call.role())
            .await?;
        return json(&json!({"retried": retried}));
    }
    let target = match (id, queue, all) {
        (Some(id), None, false) => RetryTarget::Task(id),
        (None, Some(q), false) => RetryTarget::Failed(Some(q)),
        (None, None, true) => RetryTarget::Failed(None),
        (None, None, false) => return Err(ApiError::missing("taskId` (or `queue`, or `all")),
        _ => return Err(p.invalid("taskId", "give one of `taskId`, `queue` and `all: true`")),
    };
    let retried = call.state.broker.retry(target, &call.role()).await?;
    json(&json!({"retried": retried}))
}

/// Ids a bulk action takes in one call.
pub const MAX_SELECTED: usize = 1000;

/// `POST /tasks`: a bulk action (`action`: retry, cancel, runNow, move with
/// `to`, remove) on a selection (`taskIds`) or on every copy in `state` of a
/// `queue` (or `all: true`) that matches a search.
pub async fn act(call: Call, body: Body) -> Answer {
    let p = body.params()?;
    let mut allowed = vec![
        "action", "to", "taskIds", "state", "queue", "all", "archived",
    ];
    allowed.extend(FILTERS);
    p.only(&allowed)?;
    let name = p.required("action", p.string("action")?)?;
    let to = p.queue("to")?;
    let action =
        BulkAction::parse(&name, to.clone()).map_err(|(field, why)| p.invalid(field, why))?;
    if let Some(to) = &to {
        may_use(&call, Some(to))?;
    }
    let ids = p.task_ids("taskIds", MAX_SELECTED)?;
    let queue = p.queue("queue")?;
    let all = p.boolean("all")?.unwrap_or(false);
    let archived = p.boolean("archived")?.unwrap_or(false);
    let filter = filter_of(&p)?;
    let state = p
        .string("state")?
        .map(|s| {
            TaskState::parse(&s)
                .ok_or_else(|| p.invalid("state", format!("must be one of {}", STATES.join(", "))))
        })
        .transpose()?;
    let selection = match (ids, queue, all) {
        (Some(ids), None, false) => {
            if let Some(field) = ["state", "archived"]
                .into_iter()
                .chain(FILTERS)
                .find(|f| p.get(f).is_some())
            {
                return Err(p.invalid(field, "a selection by `taskIds` takes no search"));
            }
            Selection::Ids(ids)
        }
        (None, Some(q), false) if archived => {
            match matching(&p, &call, &action, state, Some(q), filter)? {
                Selection::Matching {
                    state,
                    queue: Some(queue),
                    filter,
                } if state.is_finished() => Selection::Archived {
                    state,
                    queue,
                    filter,
                },
                _ => {
                    return Err(p.invalid(
                        "archived",
                        "the archive holds completed, cancelled and expired copies",
                    ))
                }
            }
        }
        (None, None, true) if archived => {
            return Err(p.invalid("archived", "an archive is a queue's: give `queue`"))
        }
        (None, Some(q), false) => matching(&p, &call, &action, state, Some(q), filter)?,
        (None, None, true) => matching(&p, &call, &action, state, None, filter)?,
        (None, None, false) => return Err(ApiError::missing("taskIds` (or `queue`, or `all")),
        _ => return Err(p.invalid("taskIds", "give one of `taskIds`, `queue` and `all: true`")),
    };
    let acted = call
        .state
        .broker
        .act_on(
            selection,
            action.clone(),
            call.within().as_ref(),
            &call.role(),
        )
        .await?;
    json(&json!({
        "action": action.name(),
        "done": acted.done.len(),
        "requested": acted.requested.len(),
        "skipped": acted.skipped,
    }))
}

/// A bulk action's search: copies in `state` (retry's default failed,
/// runNow's scheduled) of `queue`, or of every queue.
fn matching(
    p: &Params,
    call: &Call,
    action: &BulkAction,
    state: Option<TaskState>,
    queue: Option<QueueName>,
    filter: TaskFilter,
) -> Result<Selection, ApiError> {
    if call.within().is_some() && queue.is_none() {
        return Err(ApiError::queue_not_allowed(
            "`queue`: a key limited to some queues acts by `queue`",
        ));
    }
    may_use(call, queue.as_ref())?;
    let state = match (state, action) {
        (Some(s), _) => s,
        (None, BulkAction::Retry) => TaskState::Failed,
        (None, BulkAction::RunNow) => TaskState::Scheduled,
        (None, _) => return Err(ApiError::missing("state")),
    };
    if !action.takes(state) {
        return Err(p.invalid(
            "state",
            format!("`{}` takes {} copies", action.name(), action.states()),
        ));
    }
    Ok(Selection::Matching {
        state,
        queue,
        filter,
    })
}

/// A key limited to some queues names one of them.
fn may_use(call: &Call, queue: Option<&QueueName>) -> Result<(), ApiError> {
    let Some(within) = call.within() else {
        return Ok(());
    };
    match queue {
        None => Err(ApiError::queue_not_allowed(
            "`queue`: a key limited to some queues lists one of them",
        )),
        Some(q) if !within.allows(q.as_str()) => Err(ApiError::queue_not_allowed(format!(
            "`queue`: this key may not use queue `{q}`"
        ))),
        Some(_) => Ok(()),
    }
}
