//! Bulk actions: retry, remove, cancel, run now or move the copies an
//! operator selected (by id) or every copy that matches a search, a step of
//! at most `BULK_STEP` copies a durable change, so that a selection of
//! 100,000 copies never holds the store (and the publishes waiting on it)
//! for long.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{Broker, Result};
use crate::model::{
    identity, Acted, BulkAction, BulkStep, Millis, Page, QueueFilter, QueueName, Scope, Selection,
    Task, TaskFilter, TaskId, TaskState,
};

/// Copies a step of a bulk action changes at once.
pub const BULK_STEP: usize = 1000;

impl Broker {
    /// Acts on a selection, in steps; one audit entry names the action, the
    /// selection and how many copies it took. A search takes only copies
    /// published before the action began, so that it ends however fast
    /// publishers add to what it matches.
    pub async fn act_on(
        &self,
        selection: Selection,
        action: BulkAction,
        within: Option<&QueueFilter>,
        actor: &str,
    ) -> Result<Acted> {
        let mut acted = Acted::default();
        let what = match &selection {
            Selection::Ids(ids) => format!("{} selected task(s)", ids.len()),
            Selection::Matching {
                state,
                queue,
                filter,
            } => bulk_target(*state, queue.as_ref(), filter),
            Selection::Archived {
                state,
                queue,
                filter,
            } => format!("archived {}", bulk_target(*state, Some(queue), filter)),
        };
        match selection {
            Selection::Ids(ids) => {
                for chunk in ids.chunks(BULK_STEP) {
                    let step = self.step_of(&action, chunk.to_vec(), None).await?;
                    acted.absorb(self.store.act(step, None, self.clock.now(), within).await?);
                    self.wake_after(&action);
                }
            }
            Selection::Matching {
                state,
                queue,
                mut filter,
            } => {
                let began = Millis(self.clock.now().0 + 1);
                filter.until = Some(filter.until.map_or(began, |u| u.min(began)));
                // Copies a step leaves in the listed state (a flagged
                // running copy), and a move's own new copies, are stepped
                // over, not taken again.
                let mut offset = 0;
                let mut made = HashSet::new();
                loop {
                    let page = Page {
                        offset,
                        limit: BULK_STEP,
                    };
                    let listed = self
                        .store
                        .list_tasks(queue.as_ref(), state, &filter, page)
                        .await?;
                    if listed.is_empty() {
                        break;
                    }
                    let (ours, listed): (Vec<Task>, Vec<Task>) =
                        listed.into_iter().partition(|t| made.contains(&t.task_id));
                    offset += ours.len();
                    if listed.is_empty() {
                        continue;
                    }
                    let ids = listed.iter().map(|t| t.task_id).collect();
                    let step = self.step_of(&action, ids, Some(listed)).await?;
                    made.extend(step.replacements.iter().map(|t| t.task_id));
                    let done = self
                        .store
                        .act(step, Some(state), self.clock.now(), within)
                        .await?;
                    self.wake_after(&action);
                    offset += done.stayed;
                    acted.absorb(done);
                }
            }
            Selection::Archived {
                state,
                queue,
                filter,
            } => {
                // The archive is paged by the last copy listed, so each
                // page's last copy is taken with the next page, once it is
                // no longer needed to find it.
                let mut cursor: Option<TaskId> = None;
                loop {
                    let listed = self
                        .store
                        .list_archived(&queue, state, &filter, cursor, BULK_STEP)
                        .await;
                    let listed = match listed {
                        // The sweep took the cursor, and so everything older.
                        Err(crate::store::StoreError::UnknownTask(_)) if cursor.is_some() => {
                            Vec::new()
                        }
                        other => other?,
                    };
                    let mut ids: Vec<TaskId> = listed.iter().map(|t| t.task_id).collect();
                    let next = ids.pop();
                    ids.extend(cursor);
                    if !ids.is_empty() {
                        let step = self.step_of(&action, ids, None).await?;
                        acted.absorb(self.store.act(step, None, self.clock.now(), within).await?);
                    }
                    match next {
                        Some(id) => cursor = Some(id),
                        None => break,
                    }
                }
            }
        }
        let mut detail = format!("{} task(s)", acted.done.len());
        if !acted.requested.is_empty() {
            detail += &format!(", {} running asked to stop", acted.requested.len());
        }
        if acted.skipped > 0 {
            detail += &format!(", {} skipped", acted.skipped);
        }
        let (name, what) = match &action {
            BulkAction::Move(to) => ("move", format!("{what} to {to}")),
            BulkAction::RunNow => ("run_now", what),
            other => (other.name(), what),
        };
        self.audit_event(actor, name, &what, Some(detail)).await?;
        Ok(acted)
    }

    /// A step's copies, with a move's replacements (from the copies as
    /// listed, or read now).
    async fn step_of(
        &self,
        action: &BulkAction,
        ids: Vec<TaskId>,
        listed: Option<Vec<Task>>,
    ) -> Result<BulkStep> {
        let mut step = BulkStep {
            action: action.clone(),
            ids,
            replacements: Vec::new(),
        };
        let BulkAction::Move(to) = action else {
            return Ok(step);
        };
        let originals = match listed {
            Some(tasks) => tasks,
            None => {
                let mut found = Vec::with_capacity(step.ids.len());
                for &id in &step.ids {
                    // An unknown id is skipped by the store, as any other.
                    if let Some(t) = self.store.task(id).await? {
                        found.push(t);
                    }
                }
                step.ids = found.iter().map(|t| t.task_id).collect();
                found
            }
        };
        let now = self.clock.now();
        step.replacements = originals
            .into_iter()
            .map(|old| {
                let run_at = old.run_at.max(now);
                let scheduled = old.state == TaskState::Scheduled && run_at > now;
                let data = Arc::clone(&old.data);
                let mut t = fresh_copy(old, data, now);
                t.queue = to.clone();
                t.worker_queue = None;
                t.scope = Scope::Any;
                if scheduled {
                    t.state = TaskState::Scheduled;
                    t.run_at = run_at;
                }
                t
            })
            .collect();
        Ok(step)
    }

    fn wake_after(&self, action: &BulkAction) {
        if action.wakes_workers() {
            self.wakers.wake_all();
        }
    }

    /// Retries the failed copies (of `queue`, when given) that pass
    /// `filter`, in steps.
    pub async fn retry_matching(
        &self,
        queue: Option<&QueueName>,
        filter: &TaskFilter,
        actor: &str,
    ) -> Result<Vec<TaskId>> {
        let selection = Selection::Matching {
            state: TaskState::Failed,
            queue: queue.cloned(),
            filter: filter.clone(),
        };
        let acted = self
            .act_on(selection, BulkAction::Retry, None, actor)
            .await?;
        Ok(acted.done)
    }

    /// Removes the failed copies (of `queue`, when given) that pass
    /// `filter`, in steps.
    pub async fn remove_matching(
        &self,
        queue: Option<&QueueName>,
        filter: &TaskFilter,
        actor: &str,
    ) -> Result<u64> {
        let selection = Selection::Matching {
            state: TaskState::Failed,
            queue: queue.cloned(),
            filter: filter.clone(),
        };
        let acted = self
            .act_on(selection, BulkAction::Remove, None, actor)
            .await?;
        Ok(acted.done.len() as u64)
    }
}

/// A new publish of one copy made from `old` by an operator (a retry with
/// new data, a move): ready now, with fresh attempts and no history, its
/// other settings as they were. What it waited for was done, so it waits
/// for nothing.
pub(super) fn fresh_copy(old: Task, data: Arc<Map<String, Value>>, now: Millis) -> Task {
    let publish = TaskId::new_publish();
    Task {
        task_id: publish.copy(0),
        publish_id: publish,
        fingerprint: if old.singularly_enqueue || old.singularly_run {
            identity(old.key.as_deref(), &data)
        } else {
            String::new()
        },
        data,
        state: TaskState::Ready,
        attempt: 0,
        created_at: now,
        run_at: now,
        expire_at: None,
        worker_id: None,
        lease_until: None,
        started_at: None,
        finished_at: None,
        fail_reason: None,
        progress: None,
        output: None,
        cancelled: false,
        history: Vec::new(),
        depends_on: Vec::new(),
        ..old
    }
}

/// How the audit log names the copies a search selects.
fn bulk_target(state: TaskState, queue: Option<&QueueName>, filter: &TaskFilter) -> String {
    let mut parts = Vec::new();
    if let Some(k) = &filter.key {
        parts.push(format!("key={k}"));
    }
    if let Some(g) = &filter.group {
        parts.push(format!("group={g}"));
    }
    if let Some(p) = &filter.publisher {
        parts.push(format!("publisher={p}"));
    }
    if let Some(r) = &filter.reason {
        parts.push(format!("reason~{r}"));
    }
    if let Some(t) = filter.since {
        parts.push(format!("since={}", t.as_secs_f64()));
    }
    if let Some(t) = filter.until {
        parts.push(format!("until={}", t.as_secs_f64()));
    }
    for m in &filter.data {
        parts.push(format!("{}={}", m.field(), m.pattern()));
    }
    let of = queue.map_or("every queue".to_owned(), |q| q.to_string());
    match parts.is_empty() {
        true => format!("{state} of {of}"),
        false => format!("{state} of {of} matching {}", parts.join(", ")),
    }
}
