//! Batches: their totals follow their copies through every transition, in
//! the change that moves the copy; a batch whose copies have all ended owes
//! its callback, which is published once (`fire_batch`).

use std::collections::BTreeSet;

use super::enqueue::Staged;
use super::ops::{batch_op, Op};
use super::state::State;
use crate::model::{BatchRecord, Millis, Task, TaskId, TaskState};
use crate::store::StoreError;

/// The batches of a state, with what makes ticks and sweeps cheap.
#[derive(Debug, Default)]
pub(super) struct Batches {
    pub records: std::collections::BTreeMap<String, BatchRecord>,
    /// Batches that owe their callback.
    due: BTreeSet<String>,
    /// Ended batches with nothing owed, by when they ended, for the sweep.
    ended: BTreeSet<(Millis, String)>,
    /// Changed by the change being computed: written at its end.
    dirty: BTreeSet<String>,
}

impl Batches {
    /// Stores `record` as it now is, indexing it.
    pub fn put(&mut self, record: BatchRecord) {
        self.unindex(&record.id);
        if record.callback_due() {
            self.due.insert(record.id.clone());
        } else if let (true, Some(at)) = (record.has_ended(), record.ended_at) {
            self.ended.insert((at, record.id.clone()));
        }
        self.records.insert(record.id.clone(), record);
    }

    pub fn remove(&mut self, id: &str) {
        self.unindex(id);
        self.records.remove(id);
    }

    fn unindex(&mut self, id: &str) {
        if let Some(old) = self.records.get(id) {
            self.due.remove(id);
            if let Some(at) = old.ended_at {
                self.ended.remove(&(at, id.to_owned()));
            }
        }
    }

    pub fn due(&self) -> impl Iterator<Item = &BatchRecord> {
        self.due.iter().filter_map(|id| self.records.get(id))
    }
}

/// How a copy of a batch changed.
#[derive(Debug, Clone, Copy)]
pub(super) enum Follow {
    Entered(TaskState),
    Moved(TaskState, TaskState),
    Removed(TaskState),
}

impl State {
    /// A copy of `batch` entered, moved or left: its totals follow. `at`
    /// is when (the batch's end, if this ended it).
    pub(super) fn batch_follows(&mut self, batch: &str, follow: Follow, at: Option<Millis>) {
        let Some(mut record) = self.batches.records.get(batch).cloned() else {
            return;
        };
        match follow {
            Follow::Entered(s) => record.totals.add(s),
            Follow::Moved(from, to) => record.totals.moved(from, to),
            // An ended copy swept for its age still counts as it ended.
            Follow::Removed(s) if s.has_ended() => return,
            Follow::Removed(s) => record.totals.removed_in(s),
        }
        mark_end(&mut record, at);
        self.batches.dirty.insert(batch.to_owned());
        self.batches.put(record);
    }

    /// Writes the batches the change moved (at its end, once per batch).
    pub(super) fn flush_batches(&mut self, ops: &mut Vec<Op>) {
        for id in std::mem::take(&mut self.batches.dirty) {
            if let Some(r) = self.batches.records.get(&id) {
                ops.push(batch_op(r));
            }
        }
    }

    /// Opens a batch (or adds to one still open for more) with `tasks`,
    /// built to name it. Refused when the batch is closed.
    pub fn open_batch(
        &mut self,
        mut record: BatchRecord,
        tasks: Vec<Task>,
        ops: &mut Vec<Op>,
    ) -> Result<Staged, StoreError> {
        if let Some(existing) = self.batches.records.get(&record.id) {
            if !existing.open_for_more {
                return Err(StoreError::BatchClosed(record.id));
            }
            let open_for_more = record.open_for_more;
            let on_complete = record.on_complete.take();
            record = BatchRecord {
                open_for_more,
                on_complete: on_complete.or_else(|| existing.on_complete.clone()),
                ..existing.clone()
            };
        }
        let id = record.id.clone();
        let created_at = record.created_at;
        self.batches.put(record);
        let staged = self.enqueue(tasks, ops)?;
        // A batch that made no copy (or whose last adds made none) may have
        // ended already.
        if let Some(mut r) = self.batches.records.get(&id).cloned() {
            mark_end(&mut r, Some(created_at));
            self.batches.put(r);
        }
        self.batches.dirty.insert(id);
        Ok(staged)
    }

    /// Publishes a batch's callback as `tasks` (the copies of publish
    /// `publish`, none when no queue wants it), if it is still owed.
    pub fn fire_batch(
        &mut self,
        id: &str,
        tasks: Vec<Task>,
        publish: TaskId,
        ops: &mut Vec<Op>,
    ) -> Result<Option<Staged>, StoreError> {
        let Some(mut record) = self
            .batches
            .records
            .get(id)
            .filter(|r| r.callback_due())
            .cloned()
        else {
            return Ok(None);
        };
        let staged = self.enqueue(tasks, ops)?;
        self.counters.published += 1;
        if staged.made_none() {
            self.counters.discarded += 1;
        }
        record.callback = Some(publish);
        self.batches.put(record);
        self.batches.dirty.insert(id.to_owned());
        Ok(Some(staged))
    }

    /// Forgets ended batches that owe nothing, past the age finished copies
    /// are kept.
    /// Whether `sweep_batches` has a batch to drop.
    pub(super) fn batches_due(&self, now: Millis) -> bool {
        let before = Millis(now.0.saturating_sub(self.retention.finished_ms));
        self.batches
            .ended
            .iter()
            .next()
            .is_some_and(|(at, _)| *at < before)
    }

    pub(super) fn sweep_batches(&mut self, now: Millis, ops: &mut Vec<Op>) {
        let before = Millis(now.0.saturating_sub(self.retention.finished_ms));
        let old: Vec<String> = self
            .batches
            .ended
            .iter()
            .take_while(|(at, _)| *at < before)
            .take(self.retention.sweep_batch)
            .map(|(_, id)| id.clone())
            .collect();
        for id in old {
            self.batches.remove(&id);
            ops.push(Op::DeleteBatch(id));
        }
    }
}

/// Sets or clears when the batch ended.
fn mark_end(record: &mut BatchRecord, at: Option<Millis>) {
    if record.has_ended() {
        if record.ended_at.is_none() {
            record.ended_at = Some(at.unwrap_or(record.created_at).max(record.created_at));
        }
    } else {
        record.ended_at = None;
    }
}
