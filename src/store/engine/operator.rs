//! What callers do to copies besides claiming them: cancel by id or key,
//! remove in bulk, retry failed ones, run scheduled ones now, and list or
//! break the singular locks.

use super::enqueue::Staged;
use super::meta::{EventKind, Meta};
use super::ops::{put_copy, Op};
use super::state::State;
use crate::model::{
    Acted, BulkAction, BulkStep, CancelTarget, Cancellation, HeldLock, LockKind, Millis,
    QueueFilter, QueueName, RetryTarget, Task, TaskId, TaskSelector, TaskState,
};
use crate::store::StoreError;

impl State {
    /// Cancels: waiting copies become `cancelled`, running ones are flagged
    /// for their workers.
    pub fn cancel(
        &mut self,
        target: &CancelTarget,
        now: Millis,
        within: Option<&QueueFilter>,
        ops: &mut Vec<Op>,
    ) -> Cancellation {
        let mut ids: Vec<TaskId> = match target {
            CancelTarget::Task(id) if self.tasks.contains_key(id) => vec![*id],
            CancelTarget::Task(id) => self.copies_of(*id).map(|m| m.task_id).collect(),
            CancelTarget::Key(key) => self.with_key(key),
        };
        if let Some(within) = within {
            ids.retain(|id| within.allows(self.tasks[id].queue.as_str()));
        }
        self.cancel_ids(ids, now, ops)
    }

    /// Cancels these copies (each known): waiting ones at once, running ones
    /// by a flag for their workers; the rest are untouched.
    fn cancel_ids(&mut self, ids: Vec<TaskId>, now: Millis, ops: &mut Vec<Op>) -> Cancellation {
        let mut outcome = Cancellation::default();
        for id in ids {
            let t = &self.tasks[&id];
            let m = match t.state {
                TaskState::Ready | TaskState::Scheduled | TaskState::Blocked => {
                    self.counters.cancelled += 1;
                    outcome.cancelled.push(id);
                    self.update(id, |t| {
                        t.state = TaskState::Cancelled;
                        t.extra_mut().finished_at = Some(now);
                        t.event(now, EventKind::Cancelled, None, None);
                    })
                }
                TaskState::Running if !t.cancel_requested => {
                    outcome.requested.push(id);
                    self.update(id, |t| {
                        t.cancel_requested = true;
                        t.event(now, EventKind::CancelRequested, None, None);
                    })
                }
                _ => {
                    outcome.untouched.push(id);
                    None
                }
            };
            if let Some(m) = m {
                ops.push(put_copy(m));
            }
        }
        self.trim_history(ops);
        outcome
    }

    /// Removes the selected copies; returns how many.
    pub fn delete_tasks(&mut self, selector: &TaskSelector, ops: &mut Vec<Op>) -> u64 {
        let ids: Vec<TaskId> = match selector {
            TaskSelector::Task(id) => self.tasks.get(id).map(|t| t.task_id).into_iter().collect(),
            TaskSelector::Failed(queue) => self.failed_of(queue.as_ref()),
            TaskSelector::FailedAmong(ids) => self.still_failed(ids),
            TaskSelector::Queue(_) | TaskSelector::Worker(_) => self
                .tasks
                .values()
                .filter(|t| t.state != TaskState::Completed)
                .filter(|t| match selector {
                    TaskSelector::Queue(q) => &t.queue == q,
                    TaskSelector::Worker(w) => {
                        t.worker_queue == Some(*w)
                            || (t.state == TaskState::Running && t.worker_id == Some(*w))
                    }
                    _ => false,
                })
                .map(|t| t.task_id)
                .collect(),
        };
        self.remove_copies(&ids, ops);
        ids.len() as u64
    }

    /// Gives failed copies a fresh set of attempts: each becomes ready now.
    pub fn retry_failed(
        &mut self,
        target: &RetryTarget,
        now: Millis,
        ops: &mut Vec<Op>,
    ) -> Result<Vec<TaskId>, StoreError> {
        let ids: Vec<TaskId> = match target {
            RetryTarget::Task(id) => {
                self.check_failed(*id, "retried")?;
                vec![*id]
            }
            RetryTarget::Failed(queue) => self.failed_of(queue.as_ref()),
            RetryTarget::FailedAmong(ids) => self.still_failed(ids),
        };
        self.retry_ids(&ids, now, ops);
        Ok(ids)
    }

    /// Makes these failed copies ready now, with fresh attempts.
    fn retry_ids(&mut self, ids: &[TaskId], now: Millis, ops: &mut Vec<Op>) {
        for &id in ids {
            let m = self.update(id, |t| {
                t.state = TaskState::Ready;
                t.attempt = 0;
                t.run_at = now;
                t.worker_id = None;
                t.lease_until = None;
                let extra = t.extra_mut();
                extra.finished_at = None;
                extra.fail_reason = None;
                extra.started_at = None;
                t.event(now, EventKind::Retried, None, None);
            });
            if let Some(m) = m {
                ops.push(put_copy(m));
            }
        }
    }

    /// Every failed copy (of `queue`, when given), oldest first.
    fn failed_of(&self, queue: Option<&QueueName>) -> Vec<TaskId> {
        match queue {
            Some(q) => self
                .failed
                .get(q)
                .into_iter()
                .flatten()
                .map(|k| k.1)
                .collect(),
            None => self.failed_by_age.iter().map(|k| k.1).collect(),
        }
    }

    /// Those of `ids` that are failed now.
    fn still_failed(&self, ids: &[TaskId]) -> Vec<TaskId> {
        ids.iter()
            .copied()
            .filter(|id| {
                self.tasks
                    .get(id)
                    .is_some_and(|t| t.state == TaskState::Failed)
            })
            .collect()
    }

    /// `WrongState` unless copy `id` is failed.
    pub fn check_failed(&self, id: TaskId, action: &'static str) -> Result<(), StoreError> {
        let t = self.tasks.get(&id).ok_or(StoreError::UnknownTask(id))?;
        if t.state != TaskState::Failed {
            return Err(StoreError::WrongState {
                task: id,
                state: t.state,
                wanted: TaskState::Failed,
                action,
            });
        }
        Ok(())
    }

    /// The original of a failed copy retried with new data: `cancelled`,
    /// naming its replacement.
    pub fn cancel_edited(
        &mut self,
        failed: TaskId,
        replacement: TaskId,
        now: Millis,
        ops: &mut Vec<Op>,
    ) {
        let reason = format!("retried with new data as {replacement}");
        self.end_replaced(failed, EventKind::Edited, reason, now, ops);
    }

    /// Ends a copy an operator replaced with a new one: `cancelled`, with
    /// `reason` naming the replacement.
    fn end_replaced(
        &mut self,
        id: TaskId,
        kind: EventKind,
        reason: String,
        now: Millis,
        ops: &mut Vec<Op>,
    ) {
        if let Some(m) = self.update(id, |t| {
            t.state = TaskState::Cancelled;
            t.event(now, kind, None, Some(reason.clone()));
            let extra = t.extra_mut();
            extra.finished_at = Some(now);
            extra.fail_reason = Some(reason);
        }) {
            ops.push(put_copy(m));
        }
    }

    /// Makes a scheduled copy ready now.
    pub fn run_now(
        &mut self,
        id: TaskId,
        now: Millis,
        ops: &mut Vec<Op>,
    ) -> Result<super::meta::Meta, StoreError> {
        let t = self.tasks.get(&id).ok_or(StoreError::UnknownTask(id))?;
        if t.state != TaskState::Scheduled {
            return Err(StoreError::WrongState {
                task: id,
                state: t.state,
                wanted: TaskState::Scheduled,
                action: "run now",
            });
        }
        Ok(self.ready_now(id, now, ops).clone())
    }

    /// Makes a scheduled copy (known) ready now.
    fn ready_now(&mut self, id: TaskId, now: Millis, ops: &mut Vec<Op>) -> &Meta {
        let m = self
            .update(id, |t| {
                t.state = TaskState::Ready;
                t.run_at = now;
                t.event(now, EventKind::RunNow, None, None);
            })
            .expect("the copy exists");
        ops.push(put_copy(m));
        m
    }

    /// One step of a bulk action. Copies that are unknown, outside
    /// `within`, or in a state the action does not take are skipped (a move
    /// also skips a copy already in the queue it moves to). A move's
    /// replacements are staged: they become visible once durable.
    pub fn act(
        &mut self,
        step: BulkStep,
        now: Millis,
        within: Option<&QueueFilter>,
        ops: &mut Vec<Op>,
    ) -> Result<(Acted, Staged), StoreError> {
        let total = step.ids.len();
        let taken = |st: &State, id: &TaskId| {
            st.tasks.get(id).is_some_and(|m| {
                step.action.takes(m.state) && within.is_none_or(|w| w.allows(m.queue.as_str()))
            })
        };
        let kept = |st: &State| -> Vec<TaskId> {
            step.ids
                .iter()
                .copied()
                .filter(|id| taken(st, id))
                .collect()
        };
        let mut acted = Acted::default();
        let mut staged = Staged::default();
        acted.done = match &step.action {
            BulkAction::Move(to) => {
                let (olds, news): (Vec<TaskId>, Vec<Task>) = step
                    .ids
                    .iter()
                    .copied()
                    .zip(step.replacements.iter().cloned())
                    .filter(|(id, _)| taken(self, id) && self.tasks[id].queue != *to)
                    .unzip();
                staged = self.enqueue(news, ops)?;
                for (old, answer) in olds.iter().zip(staged.answers()) {
                    let reason = format!("moved to {to} as {}", answer.task_id());
                    self.end_replaced(*old, EventKind::Moved, reason, now, ops);
                }
                self.trim_history(ops);
                olds
            }
            BulkAction::Retry => {
                let ids = kept(self);
                self.retry_ids(&ids, now, ops);
                ids
            }
            BulkAction::Remove => {
                let ids = kept(self);
                self.remove_copies(&ids, ops);
                ids
            }
            BulkAction::RunNow => {
                let ids = kept(self);
                for &id in &ids {
                    self.ready_now(id, now, ops);
                }
                ids
            }
            BulkAction::Cancel => {
                let c = self.cancel_ids(kept(self), now, ops);
                acted.requested = c.requested;
                c.cancelled
            }
        };
        acted.skipped = (total - acted.done.len() - acted.requested.len()) as u64;
        Ok((acted, staged))
    }

    /// The singular locks held now, by queue.
    pub fn held_locks(&self) -> Vec<HeldLock> {
        let hex = |fp: &[u8; 16]| fp.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let mut out: Vec<HeldLock> = self
            .enqueue_locks
            .iter()
            .filter_map(|((_, fp), id)| {
                let m = self.tasks.get(id)?;
                Some(HeldLock {
                    kind: LockKind::Enqueue,
                    queue: m.queue.clone(),
                    task_id: *id,
                    worker_id: None,
                    identity: hex(fp),
                    key: m.key().map(str::to_owned),
                    // Its twins fold into it rather than wait.
                    waiting: 0,
                })
            })
            .chain(self.run_locks.iter().filter_map(|((queue, fp), id)| {
                let m = self.tasks.get(id)?;
                Some(HeldLock {
                    kind: LockKind::Run,
                    queue: queue.clone(),
                    task_id: *id,
                    worker_id: m.worker_id,
                    identity: hex(fp),
                    key: m.key().map(str::to_owned),
                    waiting: self
                        .run_twins
                        .get(&(queue.clone(), *fp))
                        .copied()
                        .unwrap_or(0),
                })
            }))
            .collect();
        out.sort_by(|a, b| (&a.queue, a.task_id).cmp(&(&b.queue, b.task_id)));
        out
    }

    /// Releases the lock `holder` holds: the copy carries on, but no longer
    /// holds back its twins. False when it held no such lock.
    pub fn break_lock(
        &mut self,
        holder: TaskId,
        kind: LockKind,
        now: Millis,
        ops: &mut Vec<Op>,
    ) -> bool {
        let Some(t) = self.tasks.get(&holder) else {
            return false;
        };
        let held = match kind {
            LockKind::Enqueue => {
                self.enqueue_locks.get(&(t.lane(), t.fingerprint)) == Some(&holder)
            }
            LockKind::Run => self.run_locks.get(&(t.queue.clone(), t.fingerprint)) == Some(&holder),
        };
        if !held {
            return false;
        }
        let m = self
            .update(holder, |t| {
                match kind {
                    LockKind::Enqueue => t.singularly_enqueue = false,
                    LockKind::Run => t.singularly_run = false,
                }
                t.event(now, EventKind::LockBroken, None, Some(kind.as_str().into()));
            })
            .expect("the holder exists");
        ops.push(put_copy(m));
        true
    }
}
