//! Claims: which ready copies a worker gets (its lanes in order, priority
//! then age within a lane, the singular run rule and the queues' limits),
//! and an answer that hands out only what it can deliver whole.

use std::collections::HashMap;
use std::ops::Bound::{Excluded, Unbounded};
use std::sync::Arc;

use serde_json::{Map, Value};

use super::batch::Follow;
use super::log::Log;
use super::meta::{EventKind, Meta};
use super::ops::{decode_json, put_copy, Op};
use super::state::{ReadyKey, State};
use super::{publishes_of, Engine, Payloads};
use crate::model::{Counters, Lane, Millis, QueueName, Task, TaskId, TaskState, WorkerId};
use crate::store::StoreError;

/// A claimed copy: as it is now, and as it was before the claim (to put it
/// back if its answer cannot be built).
type Claimed = (Meta, Meta);

/// A payload as read for a claim: the task's data, or why it cannot be.
type Decoded = Result<Arc<Map<String, Value>>, String>;

/// What one claim has taken so far, against what it may take.
#[derive(Default)]
struct Gate {
    /// The singular run locks of the copies taken.
    locks: Vec<(QueueName, [u8; 16])>,
    /// What each queue may still hand out in this claim.
    remaining: HashMap<QueueName, usize>,
}

impl<L: Log> Engine<L> {
    /// Claims up to `count` copies and joins them with their payloads. When
    /// payloads cannot be read, the claims are undone and nothing is handed
    /// out; a copy whose payload is lost for good is failed, so that it
    /// stops coming back.
    pub(super) async fn claim_copies(
        &self,
        worker: WorkerId,
        lanes: &[Lane],
        now: Millis,
        count: usize,
    ) -> Result<Vec<Task>, StoreError> {
        if self.log.poll_interval().is_some() {
            // Waiting workers poll a shared log: make a change (take the
            // cluster lock) only when there is something to claim.
            self.sync().await?;
            let st = self.lock();
            if lanes
                .iter()
                .all(|l| st.ready.get(l).is_none_or(|r| r.is_empty()))
            {
                return Ok(Vec::new());
            }
        }
        // The payloads are read while the claim is written: they are
        // stored already (a copy is offered only once they are).
        let (claimed, raw) = self
            .change_during(
                |st, ops| Ok(st.claim(worker, lanes, now, count, ops)),
                |claimed: &Vec<Claimed>| {
                    let publishes = publishes_of(claimed.iter().map(|(m, _)| m));
                    async move {
                        match publishes.is_empty() {
                            true => Ok(Payloads::new()),
                            false => self.log.payloads(&publishes).await,
                        }
                    }
                },
                |_, claimed, raw| (claimed, raw),
            )
            .await?;
        if claimed.is_empty() {
            return Ok(Vec::new());
        }
        let raw = match raw {
            Ok(raw) => raw,
            Err(e) => {
                tracing::error!(error = %e, worker = %worker, "a claim's payloads could not be read; the claim is undone");
                let before: Vec<Meta> = claimed.into_iter().map(|(_, b)| b).collect();
                self.change(|st, ops| {
                    st.unclaim(&before, worker, ops);
                    Ok(())
                })
                .await?;
                return Err(e);
            }
        };
        let mut decoded: HashMap<[u8; 16], Decoded> = HashMap::with_capacity(raw.len());
        for (k, bytes) in raw {
            decoded.insert(
                k,
                decode_json::<Map<String, Value>>(&bytes)
                    .map(Arc::new)
                    .map_err(|e| e.to_string()),
            );
        }
        let mut tasks = Vec::with_capacity(claimed.len());
        let mut lost: Vec<(TaskId, String)> = Vec::new();
        for (m, _) in claimed {
            match decoded.get(m.publish_id().as_bytes()) {
                Some(Ok(data)) => tasks.push(m.to_task(Arc::clone(data), false)),
                Some(Err(why)) => lost.push((m.task_id, format!("its payload is corrupt: {why}"))),
                None => lost.push((m.task_id, "its payload is missing from the store".into())),
            }
        }
        if !lost.is_empty() {
            for (id, why) in &lost {
                tracing::error!(task = %id, reason = %why, "a claimed copy cannot be delivered; it is failed");
            }
            self.change(|st, ops| {
                st.fail_undeliverable(&lost, worker, now, ops);
                Ok(())
            })
            .await?;
        }
        Ok(tasks)
    }
}

impl State {
    /// Claims up to `count` ready copies for `worker` from `lanes` in order:
    /// each claim counts an attempt and leases the copy until `now + ttr`.
    pub fn claim(
        &mut self,
        worker: WorkerId,
        lanes: &[Lane],
        now: Millis,
        count: usize,
        ops: &mut Vec<Op>,
    ) -> Vec<Claimed> {
        let picked = self.pick(lanes, now, count);
        let mut spent: HashMap<QueueName, usize> = HashMap::new();
        for id in &picked {
            *spent.entry(self.tasks[id].queue.clone()).or_default() += 1;
        }
        for (queue, n) in spent {
            self.spend(&queue, n);
        }
        let mut claimed = Vec::with_capacity(picked.len());
        ops.reserve(picked.len());
        for id in picked {
            let before = self.tasks[&id].clone();
            let m = self
                .update(id, |t| {
                    t.state = TaskState::Running;
                    t.attempt += 1;
                    t.worker_id = Some(worker);
                    t.lease_until = Some(now.plus_secs(t.ttr as u64));
                    t.extra_mut().started_at = Some(now);
                    t.event(now, EventKind::Claimed, Some(worker), None);
                })
                .expect("a picked copy exists");
            ops.push(put_copy(m));
            claimed.push((m.for_answer(), before));
        }
        claimed
    }

    /// The copies a claim takes, in order.
    fn pick(&mut self, lanes: &[Lane], now: Millis, count: usize) -> Vec<TaskId> {
        let mut picked: Vec<TaskId> = Vec::new();
        let mut gate = Gate::default();
        for lane in lanes {
            if picked.len() >= count {
                break;
            }
            if let Lane::Queue(q) = lane {
                // A paused or full queue is skipped whole, not scanned.
                let allowed = *gate
                    .remaining
                    .entry(q.clone())
                    .or_insert_with(|| self.allowance(q, now));
                if allowed == 0 {
                    continue;
                }
            }
            if self.fair.rotations.contains_key(lane) {
                self.pick_rotating(lane, now, count, &mut picked, &mut |st, id| {
                    st.admit(lane, id, now, &mut gate)
                });
                continue;
            }
            let mut cursor: Option<ReadyKey> = None;
            while picked.len() < count {
                let next = {
                    let Some(ready) = self.ready.get(lane) else {
                        break;
                    };
                    match cursor {
                        None => ready.iter().next().copied(),
                        Some(k) => ready.range((Excluded(k), Unbounded)).next().copied(),
                    }
                };
                let Some(key) = next else {
                    break;
                };
                cursor = Some(key);
                match self.admit(lane, key.2, now, &mut gate) {
                    Some(true) => picked.push(key.2),
                    Some(false) => break,
                    None => {}
                }
            }
        }
        picked
    }

    /// Whether a claim takes the ready copy `id` of `lane`: `Some(true)` it
    /// does (counted against its queue's allowance), `None` it skips it,
    /// `Some(false)` the lane has nothing more to give.
    fn admit(&mut self, lane: &Lane, id: TaskId, now: Millis, gate: &mut Gate) -> Option<bool> {
        let t = &self.tasks[&id];
        // Past its time: the next tick expires it.
        if t.expire_at().is_some_and(|at| at <= now) {
            return None;
        }
        let run_key = t.singularly_run.then(|| (t.queue.clone(), t.fingerprint));
        if let Some(k) = &run_key {
            if self.run_locked(t) || gate.locks.contains(k) {
                return None;
            }
        }
        let queue = t.queue.clone();
        let allowed = gate
            .remaining
            .entry(queue.clone())
            .or_insert_with(|| self.allowance(&queue, now));
        if *allowed == 0 {
            return matches!(lane, Lane::Queue(_)).then_some(false);
        }
        *allowed -= 1;
        gate.locks.extend(run_key);
        Some(true)
    }

    /// Undoes claims whose answer could not be built: each copy still
    /// running under `worker` from that claim is as it was before.
    pub fn unclaim(&mut self, before: &[Meta], worker: WorkerId, ops: &mut Vec<Op>) {
        for old in before {
            let ours = self.tasks.get(&old.task_id).is_some_and(|t| {
                t.state == TaskState::Running
                    && t.worker_id == Some(worker)
                    && t.attempt == old.attempt + 1
            });
            if ours {
                self.remove(old.task_id);
                if let Some(batch) = old.batch() {
                    let undone = Follow::Moved(TaskState::Running, old.state);
                    self.batch_follows(batch, undone, None);
                }
                self.insert(old.clone());
                ops.push(put_copy(old));
            }
        }
    }

    /// Fails copies claimed by `worker` whose payload cannot be read: they
    /// could never be delivered, and would otherwise come back for ever.
    pub fn fail_undeliverable(
        &mut self,
        lost: &[(TaskId, String)],
        worker: WorkerId,
        now: Millis,
        ops: &mut Vec<Op>,
    ) {
        let mut counters = Counters::default();
        for (id, why) in lost {
            let ours = self
                .tasks
                .get(id)
                .is_some_and(|t| t.state == TaskState::Running && t.worker_id == Some(worker));
            if !ours {
                continue;
            }
            let m = self
                .update(*id, |t| {
                    t.state = TaskState::Failed;
                    t.lease_until = None;
                    t.event(now, EventKind::Failed, None, Some(why.clone()));
                    let extra = t.extra_mut();
                    extra.finished_at = Some(now);
                    extra.fail_reason = Some(why.clone());
                })
                .expect("checked above");
            ops.push(put_copy(m));
            counters.failed += 1;
        }
        self.counters.add(&counters);
    }
}
