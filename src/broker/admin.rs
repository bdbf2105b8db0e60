//! What operators do besides the API's own calls: retry or remove failed
//! copies, run scheduled ones now, break singular locks, try tasks and
//! interests against the matcher, and keep an audit log of it all. The
//! management site (`crate::web`) is its only caller.

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{Broker, BrokerError, Result};
use crate::model::{
    AuditEntry, Counters, HeldLock, LockKind, Millis, Page, QueueName, RetryTarget, Task,
    TaskFilter, TaskId, TaskSelector, TaskState,
};

/// Published tasks remembered for trying interests against.
pub const RECENT_KEPT: usize = 1000;
/// Bytes those may take in all: one publisher sending large tasks must not
/// make the console's preview hold gigabytes.
pub const RECENT_BYTES: usize = 16 << 20;
/// A task larger than this is not remembered at all.
pub const RECENT_ONE_BYTES: usize = 64 << 10;
/// How often the totals are sampled for the throughput chart: samples are
/// taken at the multiples of this, so that every node takes the same ones.
pub const SAMPLE_EVERY_MS: u64 = 5_000;

/// The totals at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at: Millis,
    pub counters: Counters,
}

/// In-memory views the site shows: the recent publishes (per node, and
/// empty after a restart), and when this node last sampled the totals (the
/// samples are in the store).
#[derive(Debug, Default)]
pub(crate) struct Observed {
    recent: std::sync::Mutex<Recent>,
    sampled: std::sync::Mutex<Option<Millis>>,
}

/// The last publishes, each with its estimated size, within both bounds.
#[derive(Debug, Default)]
struct Recent {
    tasks: VecDeque<(Arc<Map<String, Value>>, usize)>,
    bytes: usize,
}

impl Observed {
    pub(crate) fn published(&self, batch: Vec<Arc<Map<String, Value>>>) {
        // Sized before the lock, and only up to the bound: a task of a
        // hundred thousand fields is not walked whole.
        let sized: Vec<_> = batch
            .into_iter()
            .filter_map(|d| size_within(&d, RECENT_ONE_BYTES).map(|n| (d, n)))
            .collect();
        let mut evicted = Vec::new();
        {
            let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
            for (d, n) in sized {
                recent.bytes += n;
                recent.tasks.push_back((d, n));
            }
            while recent.tasks.len() > RECENT_KEPT || recent.bytes > RECENT_BYTES {
                let Some((d, n)) = recent.tasks.pop_front() else {
                    break;
                };
                recent.bytes -= n;
                evicted.push(d);
            }
        }
        // Publishes share this lock: free the evicted payloads after it.
        drop(evicted);
    }

    /// What the recent publishes hold now: how many, and their bytes.
    pub(crate) fn recent_size(&self) -> (usize, usize) {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        (recent.tasks.len(), recent.bytes)
    }

    /// The sampling time due at `now`, unless this node took it already.
    fn sample_due(&self, now: Millis) -> Option<Millis> {
        let at = Millis(now.0 - now.0 % SAMPLE_EVERY_MS);
        let sampled = self.sampled.lock().unwrap_or_else(|e| e.into_inner());
        (*sampled != Some(at)).then_some(at)
    }

    fn sampled(&self, at: Millis) {
        *self.sampled.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
    }
}

/// About the bytes `data` holds in memory, or `None` once past `limit`
/// (the walk stops there).
fn size_within(data: &Map<String, Value>, limit: usize) -> Option<usize> {
    fn walk(v: &Value, budget: &mut isize) {
        if *budget < 0 {
            return;
        }
        // Each value costs its own slot besides its contents.
        *budget -= 32;
        match v {
            Value::String(s) => *budget -= s.len() as isize,
            Value::Array(items) => items.iter().for_each(|i| walk(i, budget)),
            Value::Object(map) => {
                for (k, v) in map {
                    *budget -= k.len() as isize + 32;
                    walk(v, budget);
                }
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
        }
    }
    let mut budget = limit as isize;
    for (k, v) in data {
        budget -= k.len() as isize + 32;
        walk(v, &mut budget);
        if budget < 0 {
            return None;
        }
    }
    Some(limit - budget as usize)
}

/// How a candidate interest would have routed the recent publishes.
#[derive(Debug, Clone, PartialEq)]
pub struct Preview {
    /// Recent publishes looked at.
    pub considered: usize,
    /// How many of them the candidate takes.
    pub matched: usize,
    /// Up to five of those, newest first.
    pub examples: Vec<Arc<Map<String, Value>>>,
}

/// One queue a tried task reaches, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    pub queue: String,
    /// (field, pattern, value) of each matching field; empty for `"*"`
    /// and `"unrouted"`.
    pub fields: Vec<(String, String, String)>,
    /// Reached because no other queue's interests want it.
    pub unrouted: bool,
}

impl Broker {
    /// A page of copies in `state` (of `queue`, when given) that pass
    /// `filter`.
    pub async fn list_tasks(
        &self,
        queue: Option<&QueueName>,
        state: TaskState,
        filter: &TaskFilter,
        page: Page,
    ) -> Result<Vec<Task>> {
        Ok(self.store.list_tasks(queue, state, filter, page).await?)
    }

    /// A page of a queue's archived copies, newest first (see
    /// `Store::list_archived`).
    pub async fn list_archived(
        &self,
        queue: &QueueName,
        state: TaskState,
        filter: &TaskFilter,
        before: Option<TaskId>,
        limit: usize,
    ) -> Result<Vec<Task>> {
        Ok(self
            .store
            .list_archived(queue, state, filter, before, limit)
            .await?)
    }

    /// One copy, with its history.
    pub async fn task(&self, id: TaskId) -> Result<Task> {
        self.store
            .task(id)
            .await?
            .ok_or(BrokerError::UnknownTask(id))
    }

    /// Every copy the publish of `id` made.
    pub async fn lineage(&self, id: TaskId) -> Result<Vec<Task>> {
        Ok(self.store.tasks_of_publish(id.publish()).await?)
    }

    /// Publishes a schedule's task now, as a firing would, leaving its next
    /// due time as it is.
    pub async fn run_schedule_now(&self, name: &str, actor: &str) -> Result<TaskId> {
        let schedule = self
            .schedules()
            .await?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| BrokerError::UnknownSchedule(name.to_owned()))?;
        let published = self.publish(vec![schedule.task]).await?;
        let id = published
            .first()
            .map(|p| p.task_id)
            .ok_or_else(|| BrokerError::UnknownSchedule(name.to_owned()))?;
        self.audit_event(actor, "run_schedule", name, Some(format!("published {id}")))
            .await?;
        Ok(id)
    }

    /// Removes a schedule, for the audit log's sake through the site.
    pub async fn remove_schedule(&self, name: &str, actor: &str) -> Result<()> {
        self.delete_schedule(name).await?;
        self.audit_event(actor, "delete_schedule", name, None).await
    }

    /// Gives failed copies a fresh set of attempts.
    pub async fn retry(&self, target: RetryTarget, actor: &str) -> Result<Vec<TaskId>> {
        let what = match &target {
            RetryTarget::Task(id) => id.to_string(),
            RetryTarget::Failed(Some(q)) => format!("failed of {q}"),
            RetryTarget::Failed(None) => "every failed task".into(),
            RetryTarget::FailedAmong(ids) => format!("{} failed task(s)", ids.len()),
        };
        let retried = self.store.retry_failed(target, self.clock.now()).await?;
        self.wakers.wake_all();
        let detail = format!("{} task(s)", retried.len());
        self.audit_event(actor, "retry", &what, Some(detail))
            .await?;
        Ok(retried)
    }

    /// Retries a failed copy with new data: a new publish of one copy in the
    /// same queue, which the original names.
    pub async fn retry_with_data(
        &self,
        id: TaskId,
        data: Map<String, Value>,
        actor: &str,
    ) -> Result<TaskId> {
        let old = self.task(id).await?;
        let now = self.clock.now();
        let replacement = super::bulk::fresh_copy(old, Arc::new(data), now);
        let lane = replacement.lane();
        let new_id = self.store.retry_edited(id, replacement, now).await?;
        self.wakers.wake(&lane);
        self.audit_event(
            actor,
            "edit_retry",
            &id.to_string(),
            Some(format!("as {new_id}")),
        )
        .await?;
        Ok(new_id)
    }

    /// Makes a scheduled copy ready now.
    pub async fn run_now(&self, id: TaskId, actor: &str) -> Result<Task> {
        let task = self.store.run_now(id, self.clock.now()).await?;
        self.wakers.wake(&task.lane());
        self.audit_event(actor, "run_now", &id.to_string(), None)
            .await?;
        Ok(task)
    }

    /// Removes one copy, whatever its state.
    pub async fn remove_task(&self, id: TaskId, actor: &str) -> Result<()> {
        if self.store.delete_tasks(TaskSelector::Task(id)).await? == 0 {
            return Err(BrokerError::UnknownTask(id));
        }
        self.audit_event(actor, "remove", &id.to_string(), None)
            .await
    }

    /// Removes every failed copy (of `queue`, when given).
    pub async fn remove_failed(&self, queue: Option<QueueName>, actor: &str) -> Result<u64> {
        let what = queue
            .as_ref()
            .map_or("every failed task".into(), |q| format!("failed of {q}"));
        let n = self.store.delete_tasks(TaskSelector::Failed(queue)).await?;
        self.audit_event(actor, "remove_failed", &what, Some(format!("{n} task(s)")))
            .await?;
        Ok(n)
    }

    /// Removes every copy in a queue but its completed history; its
    /// interests stay.
    pub async fn clear_queue(&self, queue: &QueueName, actor: &str) -> Result<u64> {
        let n = self
            .store
            .delete_tasks(TaskSelector::Queue(queue.clone()))
            .await?;
        self.audit_event(
            actor,
            "clear_queue",
            queue.as_str(),
            Some(format!("{n} task(s)")),
        )
        .await?;
        Ok(n)
    }

    pub async fn locks(&self) -> Result<Vec<HeldLock>> {
        Ok(self.store.locks().await?)
    }

    /// Releases a singular lock; its twins may then be enqueued or run.
    pub async fn break_lock(&self, holder: TaskId, kind: LockKind, actor: &str) -> Result<bool> {
        let broken = self
            .store
            .break_lock(holder, kind, self.clock.now())
            .await?;
        if broken {
            self.wakers.wake_all();
            let target = format!("{} lock of {holder}", kind.as_str());
            self.audit_event(actor, "break_lock", &target, None).await?;
        }
        Ok(broken)
    }

    /// Records an operator's action.
    pub async fn audit_event(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        detail: Option<String>,
    ) -> Result<()> {
        tracing::info!(role = actor, action, target, "operator action");
        Ok(self
            .store
            .append_audit(AuditEntry {
                at: self.clock.now(),
                role: actor.to_owned(),
                action: action.to_owned(),
                target: target.to_owned(),
                detail,
            })
            .await?)
    }

    /// A page of the audit log, newest first, and its length.
    pub async fn audit(&self, page: Page) -> Result<(u64, Vec<AuditEntry>)> {
        Ok(self.store.audit(page).await?)
    }

    /// The totals sampled since `since`, oldest first: the cluster's (they
    /// are in the store), every 5 s for the last hour and every minute for
    /// the last day.
    pub async fn samples(&self, since: Millis) -> Result<Vec<Sample>> {
        let samples = self.store.samples(since).await?;
        Ok(samples
            .into_iter()
            .map(|(at, counters)| Sample { at, counters })
            .collect())
    }

    /// The publishes remembered for the interest preview: how many, and
    /// about how many bytes they hold.
    pub fn recent_publishes(&self) -> (usize, usize) {
        self.observed.recent_size()
    }

    /// Samples the totals into the store when a sampling time has come. A
    /// sample that cannot be stored (a full disk) is skipped: the chart has
    /// a gap, and the tick goes on.
    pub(crate) async fn sample_counters(&self, now: Millis) {
        let Some(at) = self.observed.sample_due(now) else {
            return;
        };
        self.observed.sampled(at);
        let stored = match self.store.counters().await {
            Ok(counters) => self.store.put_sample(at, counters).await,
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            tracing::debug!(error = %e, "the throughput chart's sample was not stored");
        }
    }

    /// Which queues `data` would reach now, and by which field and pattern.
    pub fn try_task(&self, data: &Map<String, Value>) -> Vec<Reach> {
        self.routes
            .load()
            .explain(data)
            .into_iter()
            .map(|e| Reach {
                queue: e.queue.to_owned(),
                fields: e
                    .fields
                    .iter()
                    .map(|h| {
                        (
                            h.field.to_string(),
                            h.pattern.to_string(),
                            h.value.to_string(),
                        )
                    })
                    .collect(),
                unrouted: e.unrouted,
            })
            .collect()
    }

    /// How `interests` (not saved) would have routed the last `n` publishes
    /// this node accepted.
    pub fn preview_interests(
        &self,
        queue: &QueueName,
        interests: &Value,
        n: usize,
    ) -> Result<Preview> {
        let parsed =
            interest::Interests::parse(queue.as_str(), interests, &self.settings.interest_limits)?;
        let recent: Vec<Arc<Map<String, Value>>> = {
            let recent = self
                .observed
                .recent
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            recent
                .tasks
                .iter()
                .rev()
                .take(n)
                .map(|(d, _)| Arc::clone(d))
                .collect()
        };
        let matching: Vec<&Arc<Map<String, Value>>> =
            recent.iter().filter(|d| parsed.matches(d)).collect();
        Ok(Preview {
            considered: recent.len(),
            matched: matching.len(),
            examples: matching.into_iter().take(5).cloned().collect(),
        })
    }
}
