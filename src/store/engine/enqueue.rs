//! New copies: the singular enqueue rule, and visibility once durable.

use std::collections::HashSet;

use super::batch::Follow;
use super::meta::{EventKind, Meta};
use super::ops::{put_copy, Op};
use super::state::State;
use crate::model::{Task, TaskState};
use crate::store::{Enqueued, StoreError};

/// What an enqueue made: its answers, and the copies it staged (held by the
/// state until their change, and with it their payload, is durable).
#[derive(Debug, Default)]
pub(super) struct Staged {
    answers: Vec<Enqueued>,
    made: usize,
}

impl Staged {
    /// Takes in another enqueue's copies, after its own.
    pub fn absorb(&mut self, other: Staged) {
        self.answers.extend(other.answers);
        self.made += other.made;
    }

    /// What each task enqueued became, in their order.
    pub fn answers(&self) -> &[Enqueued] {
        &self.answers
    }

    /// Whether it made no copy.
    pub fn made_none(&self) -> bool {
        self.made == 0
    }
}

impl State {
    /// Stages new copies (`ready` or `scheduled`). A copy with
    /// `singularly_enqueue` whose twin waits in its lane is not made: the
    /// twin is named instead, or replaced by it with `replace_waiting`.
    pub fn enqueue(&mut self, tasks: Vec<Task>, ops: &mut Vec<Op>) -> Result<Staged, StoreError> {
        if let Some(t) = tasks.iter().find(|t| t.task_id.publish() != t.publish_id) {
            return Err(StoreError::Corrupt(format!(
                "copy {} does not derive from publish {}",
                t.task_id, t.publish_id
            )));
        }
        // Every dependency is resolved before anything changes: one that
        // names nothing refuses the whole enqueue.
        let mut tasks = tasks;
        for t in &mut tasks {
            self.start_dependent(t)?;
        }
        let doomed = tasks
            .iter()
            .filter(|t| t.state == TaskState::Cancelled)
            .count();
        self.counters.cancelled += doomed as u64;
        ops.reserve(tasks.len() + 1);
        let mut staged = Staged {
            answers: Vec::with_capacity(tasks.len()),
            made: 0,
        };
        let mut payloads = HashSet::new();
        for t in tasks {
            let publisher = self.publisher(&t.publisher);
            let mut meta = Meta::from_task(&t, publisher);
            if let Some(fields) = self
                .queue_settings
                .get(&t.queue)
                .map(|s| &s.search_fields)
                .filter(|f| !f.is_empty())
            {
                let values = crate::model::search_fields_of(&t.data, fields);
                meta.search = Some(Box::new(super::meta::SearchFields(values)));
            }
            let mut replaced = None;
            if meta.singularly_enqueue {
                let key = (meta.lane(), meta.fingerprint);
                if let Some(&existing) = self.enqueue_locks.get(&key) {
                    self.counters.deduplicated += 1;
                    // A twin still being enqueued (not yet in `tasks`)
                    // cannot be replaced; the newcomer folds into it.
                    if !meta.replace_waiting || !self.tasks.contains_key(&existing) {
                        staged.answers.push(Enqueued::Existing(existing));
                        continue;
                    }
                    let reason = format!("replaced by {}", meta.task_id);
                    let old = self
                        .update(existing, |t| {
                            t.state = TaskState::Cancelled;
                            let at = t.created_at.max(meta.created_at);
                            t.event(at, EventKind::Replaced, None, Some(reason.clone()));
                            let extra = t.extra_mut();
                            extra.finished_at = Some(at);
                            extra.fail_reason = Some(reason);
                        })
                        .expect("a locked twin exists");
                    ops.push(put_copy(old));
                    replaced = Some(existing);
                }
                // Reserved now, so that a twin enqueued before this one is
                // durable finds it.
                self.enqueue_locks.insert(key, meta.task_id);
            }
            self.counters.routed += 1;
            if payloads.insert(t.publish_id) {
                ops.push(Op::PutPayload(
                    *t.publish_id.as_bytes(),
                    serde_json::to_vec(&t.data).expect("json encodes"),
                ));
            }
            ops.push(put_copy(&meta));
            if let Some(batch) = meta.batch() {
                self.batch_follows(batch, Follow::Entered(meta.state), None);
            }
            staged.answers.push(match replaced {
                Some(old) => Enqueued::Replaced {
                    created: meta.task_id,
                    replaced: old,
                },
                None => Enqueued::Created(meta.task_id),
            });
            staged.made += 1;
            self.staging.push(meta);
        }
        Ok(staged)
    }

    /// An enqueue's answers, once its change is durable (the engine has
    /// shown its copies by then).
    pub fn reveal(&mut self, staged: Staged) -> Vec<Enqueued> {
        staged.answers
    }

    /// The change just computed went into entry `seq`: its new copies wait
    /// for it to be durable.
    pub fn staged_in(&mut self, seq: u64) {
        if !self.staging.is_empty() {
            let copies = std::mem::take(&mut self.staging);
            self.unrevealed.push_back((seq, copies));
        }
    }

    /// Shows the copies of every entry up to `durable`.
    pub fn reveal_through(&mut self, durable: u64) {
        while self
            .unrevealed
            .front()
            .is_some_and(|(seq, _)| *seq <= durable)
        {
            let (_, copies) = self.unrevealed.pop_front().expect("a front");
            for meta in copies {
                self.insert(meta);
            }
        }
    }
}
