//! The publish log: client publishes kept for `Retention::replay_keep_ms`
//! (and within `replay_max_bytes`), each with its payload, so that a queue
//! whose interests are set later may have the matching ones copied in once
//! each (`replay`).

use std::collections::{BTreeMap, HashMap};

use super::enqueue::Staged;
use super::ops::{put_recent, Op};
use super::state::State;
use crate::model::{Millis, PublishRecord, QueueName, Task, TaskId};
use crate::store::StoreError;

#[derive(Debug, Default)]
pub struct Recent {
    /// By publish id: oldest first.
    pub records: BTreeMap<TaskId, PublishRecord>,
    pub bytes: u64,
}

impl Recent {
    pub fn put(&mut self, r: PublishRecord) {
        self.bytes += r.bytes;
        if let Some(old) = self.records.insert(r.publish_id, r) {
            self.bytes -= old.bytes;
        }
    }

    pub fn remove(&mut self, id: &TaskId) {
        if let Some(old) = self.records.remove(id) {
            self.bytes -= old.bytes;
        }
    }
}

impl State {
    /// Logs publishes, in the change that enqueued their copies: the
    /// payload of one that reached no queue is stored for the log alone.
    pub fn log_publishes(
        &mut self,
        records: Vec<(PublishRecord, Option<Vec<u8>>)>,
        now: Millis,
        ops: &mut Vec<Op>,
    ) {
        if self.retention.replay_keep_ms == 0 || records.is_empty() {
            return;
        }
        // The payloads this change stores already, by publish: their size
        // counts against the log's bound.
        let stored: HashMap<[u8; 16], usize> = ops
            .iter()
            .filter_map(|op| match op {
                Op::PutPayload(k, v) => Some((*k, v.len())),
                _ => None,
            })
            .collect();
        for (mut r, payload) in records {
            let key = *r.publish_id.as_bytes();
            let payload_bytes = payload.as_ref().map_or(0, Vec::len);
            if let Some(bytes) = payload {
                ops.push(Op::PutPayload(key, bytes));
            }
            let op = put_recent(&r);
            r.bytes = (op.size() + payload_bytes + stored.get(&key).copied().unwrap_or(0)) as u64;
            ops.push(put_recent(&r));
            self.recent.put(r);
        }
        self.trim_recent(now, ops);
    }

    /// Whether `trim_recent` has a publish to drop.
    pub fn recent_due(&self, now: Millis) -> bool {
        let keep_from = Millis(now.0.saturating_sub(self.retention.replay_keep_ms));
        self.recent.records.first_key_value().is_some_and(|(_, r)| {
            r.at < keep_from || self.recent.bytes > self.retention.replay_max_bytes
        })
    }

    /// Drops publishes past the log's age or size, and their payloads when
    /// no copy needs them.
    pub fn trim_recent(&mut self, now: Millis, ops: &mut Vec<Op>) {
        let keep_from = Millis(now.0.saturating_sub(self.retention.replay_keep_ms));
        while let Some((&id, r)) = self.recent.records.first_key_value() {
            if r.at >= keep_from && self.recent.bytes <= self.retention.replay_max_bytes {
                break;
            }
            self.recent.remove(&id);
            ops.push(Op::DeleteRecent(*id.as_bytes()));
            if !self.payload_needed(id) {
                ops.push(Op::DeletePayload(*id.as_bytes()));
            }
        }
    }

    /// Up to `limit` logged publishes published at or after `since` and
    /// after publish `after`, oldest first.
    pub fn recent_page(
        &self,
        since: Millis,
        after: Option<TaskId>,
        limit: usize,
    ) -> Vec<PublishRecord> {
        let from = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        self.recent
            .records
            .range((from, std::ops::Bound::Unbounded))
            .map(|(_, r)| r)
            .filter(|r| r.at >= since)
            .take(limit)
            .cloned()
            .collect()
    }

    /// Copies logged publishes into `queue`: each `(publish, copy)` whose
    /// publish is still logged and has no copy in `queue` yet, its record
    /// saying so in the same change. Returns the copies enqueued.
    pub fn replay_into(
        &mut self,
        queue: &QueueName,
        copies: Vec<(TaskId, Task)>,
        ops: &mut Vec<Op>,
    ) -> Result<Staged, StoreError> {
        let mut taken = Vec::new();
        for (publish, copy) in copies {
            let Some(r) = self.recent.records.get(&publish) else {
                continue;
            };
            let next = publish.copy(r.copies);
            if r.queues.contains(queue) || copy.task_id != next || self.tasks.contains_key(&next) {
                continue;
            }
            let mut r = r.clone();
            r.queues.push(queue.clone());
            r.copies += 1;
            ops.push(put_recent(&r));
            self.recent.put(r);
            taken.push(copy);
        }
        self.enqueue(taken, ops)
    }
}
