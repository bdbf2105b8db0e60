//! The passing of time and the end of leases: scheduled copies become
//! ready, waiting copies past their deadline expire, leases that ran out (or
//! whose worker went away) end by one rule, and old copies are swept.

use std::collections::HashSet;

use super::batch::Follow;
use super::meta::EventKind;
use super::ops::{put_copy, Op};
use super::state::State;
use crate::model::{Lane, Millis, TaskId, TaskState, WorkerId};
use crate::store::{LeaseEnded, Tick};

/// Why a lease ended without a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LeaseEnd {
    /// Its time ran out: the attempt counts, and on the last one the copy
    /// fails.
    Expired,
    /// Its worker was removed: the copy goes back, whatever its attempts.
    WorkerRemoved,
}

impl LeaseEnd {
    fn reason(self) -> &'static str {
        match self {
            Self::Expired => "lease expired",
            Self::WorkerRemoved => "worker removed",
        }
    }
}

impl State {
    /// Applies the passing of time up to `now`.
    pub fn tick(&mut self, now: Millis, ops: &mut Vec<Op>) -> Tick {
        let end = Millis(now.0.saturating_add(1));
        let first = TaskId::from_bytes([0; 16]);
        let due: Vec<TaskId> = self
            .scheduled
            .range(..(end, first))
            .map(|&(_, id)| id)
            .collect();
        let expired: Vec<TaskId> = self
            .leases
            .range(..(end, first))
            .map(|&(_, id)| id)
            .collect();
        let stale: Vec<TaskId> = self
            .expiries
            .range(..(end, first))
            .map(|&(_, id)| id)
            .collect();
        let aged = self.aged(now);
        let mut woken = Vec::new();
        for id in stale {
            let m = self
                .update(id, |t| {
                    t.state = TaskState::Expired;
                    t.extra_mut().finished_at = Some(now);
                    t.event(now, EventKind::Expired, None, None);
                })
                .expect("indexed");
            ops.push(put_copy(m));
            self.counters.expired += 1;
        }
        for id in due {
            let m = self
                .update(id, |t| {
                    t.state = TaskState::Ready;
                    t.event(now, EventKind::Due, None, None);
                })
                .expect("indexed");
            ops.push(put_copy(m));
            woken.push(m.lane());
        }
        let mut lease_ends = Vec::new();
        for id in expired {
            woken.extend(self.end_lease(id, now, LeaseEnd::Expired, ops, &mut lease_ends));
        }
        self.trim_history(ops);
        self.retire_copies(&aged, ops);
        self.sweep_batches(now, ops);
        self.trim_recent(now, ops);
        self.prune_names();
        woken.sort();
        woken.dedup();
        Tick { woken, lease_ends }
    }

    /// Ends a running copy's lease by the one rule: a copy whose
    /// cancellation was asked for ends `cancelled`; one that ran out of time
    /// on its last attempt, `failed`; any other goes back to `ready`. Returns
    /// the lane to wake when it went back.
    pub fn end_lease(
        &mut self,
        id: TaskId,
        now: Millis,
        why: LeaseEnd,
        ops: &mut Vec<Op>,
        ended: &mut Vec<LeaseEnded>,
    ) -> Option<Lane> {
        let reason = why.reason();
        let mut holder = None;
        let m = self.update(id, |t| {
            t.lease_until = None;
            holder = t.worker_id;
            if std::mem::take(&mut t.cancel_requested) {
                t.state = TaskState::Cancelled;
                t.extra_mut().finished_at = Some(now);
                t.event(now, EventKind::Cancelled, holder, Some(reason.into()));
            } else if why == LeaseEnd::Expired && t.attempt >= t.max_attempts {
                let last = format!("{reason} on the last attempt");
                t.event(now, EventKind::Failed, holder, Some(last.clone()));
                t.state = TaskState::Failed;
                let extra = t.extra_mut();
                extra.finished_at = Some(now);
                extra.fail_reason = Some(last);
            } else {
                t.event(now, EventKind::Requeued, holder, Some(reason.into()));
                t.state = TaskState::Ready;
                t.extra_mut().fail_reason = Some(reason.to_owned());
            }
        })?;
        ops.push(put_copy(m));
        let (state, lane) = (m.state, m.lane());
        ended.push(LeaseEnded {
            task_id: id,
            queue: m.queue.clone(),
            worker: holder,
            attempt: m.attempt,
            expired: why == LeaseEnd::Expired,
            state,
        });
        if why == LeaseEnd::Expired {
            self.counters.lease_expired += 1;
        }
        match state {
            TaskState::Failed => self.counters.failed += 1,
            TaskState::Cancelled => self.counters.cancelled += 1,
            _ => return Some(lane),
        }
        None
    }

    /// Puts the copies `worker` is running back to ready.
    pub fn release_worker(&mut self, worker: WorkerId, now: Millis, ops: &mut Vec<Op>) -> Tick {
        let ids: Vec<TaskId> = self
            .running_by
            .get(&worker)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        let mut lease_ends = Vec::new();
        let mut woken: Vec<Lane> = ids
            .into_iter()
            .filter_map(|id| self.end_lease(id, now, LeaseEnd::WorkerRemoved, ops, &mut lease_ends))
            .collect();
        self.trim_history(ops);
        woken.sort();
        woken.dedup();
        Tick { woken, lease_ends }
    }

    /// Removes finished and failed copies past their queue's count limits.
    pub fn trim_history(&mut self, ops: &mut Vec<Op>) {
        let old = self.over_history();
        self.retire_copies(&old, ops);
    }

    /// Copies leaving the state by the retention rules: finished ones go to
    /// the log's archive when it keeps one, the others are removed.
    pub fn retire_copies(&mut self, ids: &[TaskId], ops: &mut Vec<Op>) {
        if !self.retention.archive {
            return self.remove_copies(ids, ops);
        }
        let (finished, rest): (Vec<TaskId>, Vec<TaskId>) = ids
            .iter()
            .partition(|id| self.tasks.get(id).is_some_and(|m| m.state.is_finished()));
        self.drop_copies(&finished, true, ops);
        self.drop_copies(&rest, false, ops);
    }

    /// Removes copies, and the payloads no remaining copy needs.
    pub fn remove_copies(&mut self, ids: &[TaskId], ops: &mut Vec<Op>) {
        self.drop_copies(ids, false, ops);
    }

    /// Takes copies out of the state, into the archive or for good. A
    /// payload no copy in the state needs is let go of all the same: the
    /// archive keeps what its copies need (`Log::archives`).
    fn drop_copies(&mut self, ids: &[TaskId], archive: bool, ops: &mut Vec<Op>) {
        let mut publishes = HashSet::new();
        for id in ids {
            if let Some(m) = self.remove(*id) {
                if let Some(batch) = m.batch() {
                    self.batch_follows(batch, Follow::Removed(m.state), None);
                }
                if !m.state.has_ended() {
                    self.dependency_ended(*id, None, None);
                }
                publishes.insert(m.publish_id());
                // The log holds the copy's record already (it wrote it when
                // the copy finished): an empty one says to take that. The
                // archive keeps the copy's log where it is.
                if archive {
                    let (at, _) = m.archive_place();
                    let queue = m.queue.to_string();
                    ops.push(Op::ArchiveCopy(*id.as_bytes(), queue, at, Vec::new()));
                    self.outputs.remove(id);
                } else {
                    ops.push(Op::DeleteCopy(*id.as_bytes()));
                    self.drop_log(*id, ops);
                }
            }
        }
        for p in publishes {
            if !self.payload_needed(p) {
                ops.push(Op::DeletePayload(*p.as_bytes()));
            }
        }
    }
}
