//! A worker's reports on the copy it holds: completed, failed (retried
//! after a backoff, or into the failed set), re-enqueued, or still alive.

use serde_json::Value;

use super::enqueue::Staged;
use super::meta::{EventKind, Meta};
use super::ops::{put_copy, Op};
use super::state::State;
use crate::model::{Counters, Millis, NewTask, Task, TaskId, TaskState, WorkerId};
use crate::store::{Outcome, Outputs, StoreError};

impl State {
    /// The copy, if it is running under `worker`'s lease.
    pub(super) fn leased(&self, id: TaskId, worker: WorkerId) -> Result<&Meta, StoreError> {
        let t = self.tasks.get(&id).ok_or(StoreError::UnknownTask(id))?;
        if t.state != TaskState::Running {
            return Err(StoreError::NotRunning {
                task: id,
                state: t.state,
            });
        }
        if t.worker_id != Some(worker) {
            return Err(StoreError::NotLeaseHolder { task: id });
        }
        Ok(t)
    }

    /// Ends `worker`'s claim of a running copy. Returns the copy as it is
    /// now, without its history. A completed copy that publishes its output
    /// stages the output's copies into `spawned`, made by `outputs`.
    #[allow(clippy::too_many_arguments)]
    pub fn finish(
        &mut self,
        id: TaskId,
        worker: WorkerId,
        now: Millis,
        outcome: Outcome,
        outputs: &dyn Outputs,
        spawned: &mut Staged,
        ops: &mut Vec<Op>,
    ) -> Result<Meta, StoreError> {
        let t = self.leased(id, worker)?;
        let (attempt, max_attempts) = (t.attempt, t.max_attempts);
        let mut outcome = outcome;
        // An output that would go past the depth limit fails its copy for
        // good: retrying would make the same output.
        let mut for_good = false;
        let mut next = None;
        if let Some(new) = self.output_task(t, &outcome) {
            if new.depth > outputs.max_depth() {
                for_good = true;
                outcome = Outcome::Fail {
                    reason: Some(format!(
                        "its output would be a task {} outputs deep, past the limit of {} \
                         (tasks.max_output_depth)",
                        new.depth,
                        outputs.max_depth()
                    )),
                    re_enqueue: false,
                    // Unused: the copy fails for good.
                    retry: crate::model::RetryPolicy {
                        base_ms: 0,
                        max_ms: 0,
                        jitter: 0.0,
                    },
                };
            } else {
                next = Some(outputs.copies(new, now));
            }
        }
        if let Some(t) = next
            .iter()
            .flatten()
            .find(|t| t.task_id.publish() != t.publish_id)
        {
            return Err(StoreError::Corrupt(format!(
                "copy {} does not derive from publish {}",
                t.task_id, t.publish_id
            )));
        }
        let mut counters = Counters::default();
        let updated = self
            .update(id, |t| {
                t.lease_until = None;
                let cancelling = std::mem::take(&mut t.cancel_requested);
                match outcome {
                    // Stopped on request: whatever else it says, it neither
                    // retries nor counts as failed.
                    Outcome::Fail { reason, .. } if cancelling => {
                        counters.cancelled += 1;
                        t.event(now, EventKind::Cancelled, Some(worker), reason.clone());
                        t.state = TaskState::Cancelled;
                        let extra = t.extra_mut();
                        extra.finished_at = Some(now);
                        extra.fail_reason = reason;
                    }
                    Outcome::Complete { .. } if cancelling => {
                        counters.completed += 1;
                        t.event(now, EventKind::Completed, Some(worker), None);
                        t.state = TaskState::Completed;
                        t.extra_mut().finished_at = Some(now);
                    }
                    Outcome::Complete { re_enqueue, output } => {
                        counters.completed += 1;
                        let what = if re_enqueue {
                            EventKind::Requeued
                        } else {
                            EventKind::Completed
                        };
                        t.event(now, what, Some(worker), None);
                        let extra = t.extra_mut();
                        extra.fail_reason = None;
                        extra.output = output.map(|o| o.to_string());
                        if re_enqueue {
                            t.state = TaskState::Ready;
                            t.run_at = now;
                        } else {
                            t.state = TaskState::Completed;
                            t.extra_mut().finished_at = Some(now);
                        }
                    }
                    Outcome::Fail {
                        reason,
                        re_enqueue,
                        retry,
                    } => {
                        let reason = reason.unwrap_or_else(|| "failed".to_owned());
                        let retries = attempt < max_attempts && !for_good;
                        let what = if re_enqueue {
                            EventKind::Requeued
                        } else if retries {
                            EventKind::Retrying
                        } else {
                            EventKind::Failed
                        };
                        t.event(now, what, Some(worker), Some(reason.clone()));
                        t.extra_mut().fail_reason = Some(reason);
                        if re_enqueue {
                            counters.retried += 1;
                            t.state = TaskState::Ready;
                            t.run_at = now;
                        } else if retries {
                            counters.retried += 1;
                            t.state = TaskState::Scheduled;
                            t.run_at = now.plus_millis(retry.delay_ms(attempt));
                        } else {
                            counters.failed += 1;
                            t.state = TaskState::Failed;
                            t.extra_mut().finished_at = Some(now);
                        }
                    }
                }
            })
            .expect("the copy exists");
        // The log gets the whole record; the worker's answer, the record
        // without its history.
        ops.push(put_copy(updated));
        let answer = updated.for_answer();
        self.counters.add(&counters);
        if let Some(copies) = next {
            self.publish_output(copies, spawned, ops);
        }
        self.trim_history(ops);
        Ok(answer)
    }

    /// The task a copy's output becomes when it completes this way, if it
    /// publishes its output: a completion (not a re-enqueue, not of a copy
    /// asked to stop) whose output is an object, of a copy with
    /// `publish_output` or in a queue with it.
    fn output_task(&self, t: &Meta, outcome: &Outcome) -> Option<NewTask> {
        let Outcome::Complete {
            re_enqueue: false,
            output: Some(Value::Object(output)),
        } = outcome
        else {
            return None;
        };
        let own = t.flow.as_ref().is_some_and(|f| f.publish_output);
        let queue = self
            .queue_settings
            .get(&t.queue)
            .is_some_and(|s| s.publish_output);
        if t.cancel_requested || !(own || queue) {
            return None;
        }
        Some(NewTask {
            publisher: t.publisher.to_string(),
            data: output.clone(),
            priority: t.priority,
            publish_output: own,
            parent: Some(t.task_id),
            depth: t.flow.as_ref().map_or(0, |f| f.depth) + 1,
            // Its batch, which then ends only when the output's copies do.
            batch: t.batch().map(str::to_owned),
            ..NewTask::default()
        })
    }

    /// Stages the copies of a completed copy's output (checked to derive
    /// from their publish) as a new publish, counted as one (discarded when
    /// no queue wants it).
    fn publish_output(&mut self, copies: Vec<Task>, spawned: &mut Staged, ops: &mut Vec<Op>) {
        self.counters.published += 1;
        if copies.is_empty() {
            self.counters.discarded += 1;
            return;
        }
        let staged = self.enqueue(copies, ops).expect("the copies were checked");
        spawned.absorb(staged);
    }

    /// The worker of a running copy says it is alive: the lease runs `ttr`
    /// from `now` again, and `progress` (when given) is recorded.
    pub fn heartbeat(
        &mut self,
        id: TaskId,
        worker: WorkerId,
        now: Millis,
        progress: Option<Value>,
        ops: &mut Vec<Op>,
    ) -> Result<Meta, StoreError> {
        self.leased(id, worker)?;
        let m = self
            .update(id, |t| {
                t.lease_until = Some(now.plus_secs(t.ttr as u64));
                if let Some(p) = progress {
                    t.event(now, EventKind::Progress, Some(worker), Some(p.to_string()));
                    t.extra_mut().progress = Some(p.to_string());
                }
            })
            .expect("the copy exists");
        ops.push(put_copy(m));
        Ok(m.for_answer())
    }
}
