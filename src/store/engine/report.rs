//! A worker's reports on the copy it holds: completed, failed (retried
//! after a backoff, or into the failed set), re-enqueued, or still alive.

use serde_json::Value;

use super::meta::{EventKind, Meta};
use super::ops::{put_copy, Op};
use super::state::State;
use crate::model::{Counters, Millis, TaskId, TaskState, WorkerId};
use crate::store::{Outcome, StoreError};

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
    /// now, without its history.
    pub fn finish(
        &mut self,
        id: TaskId,
        worker: WorkerId,
        now: Millis,
        outcome: Outcome,
        ops: &mut Vec<Op>,
    ) -> Result<Meta, StoreError> {
        let t = self.leased(id, worker)?;
        let (attempt, max_attempts) = (t.attempt, t.max_attempts);
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
                        let what = if re_enqueue {
                            EventKind::Requeued
                        } else if attempt < max_attempts {
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
                        } else if attempt < max_attempts {
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
        self.trim_history(ops);
        Ok(answer)
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
