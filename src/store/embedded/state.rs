//! The embedded store's in-memory indexes. Every state change goes through
//! `insert`, `remove` or `update`, which keep the indexes and per-queue counts
//! in step with the task's state: one place where a task moves.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde_json::Value;

use crate::model::{
    Counters, Lane, Millis, Priority, QueueCounts, QueueName, Task, TaskId, TaskState, WorkerId,
    WorkerRecord,
};

/// Ready copies of a lane in claim order: priority (high first), then the time
/// they became runnable, then id (creation order).
pub(super) type ReadyKey = (Reverse<Priority>, Millis, TaskId);

#[derive(Debug, Default)]
pub(super) struct State {
    pub tasks: HashMap<TaskId, Task>,
    pub ready: HashMap<Lane, BTreeSet<ReadyKey>>,
    pub scheduled: BTreeSet<(Millis, TaskId)>,
    pub leases: BTreeSet<(Millis, TaskId)>,
    /// `singularlyEnqueue` copies waiting, by lane and fingerprint.
    pub enqueue_locks: HashMap<(Lane, String), TaskId>,
    /// `singularlyRun` copies running, by queue and fingerprint.
    pub run_locks: HashMap<(QueueName, String), TaskId>,
    pub running_by: HashMap<WorkerId, BTreeSet<TaskId>>,
    pub by_publish: HashMap<TaskId, Vec<TaskId>>,
    pub counts: BTreeMap<QueueName, QueueCounts>,
    /// Completed copies, oldest first, trimmed to `history_limit`.
    pub completed: VecDeque<TaskId>,
    pub history_limit: usize,
    pub interests: BTreeMap<QueueName, Value>,
    pub workers: BTreeMap<WorkerId, WorkerRecord>,
    pub counters: Counters,
}

impl State {
    pub fn insert(&mut self, task: Task) {
        self.index(&task);
        self.by_publish
            .entry(task.publish_id)
            .or_default()
            .push(task.task_id);
        self.tasks.insert(task.task_id, task);
    }

    pub fn remove(&mut self, id: TaskId) -> Option<Task> {
        let task = self.tasks.remove(&id)?;
        self.unindex(&task);
        if let Some(copies) = self.by_publish.get_mut(&task.publish_id) {
            copies.retain(|c| *c != id);
            if copies.is_empty() {
                self.by_publish.remove(&task.publish_id);
            }
        }
        Some(task)
    }

    /// Changes a task in place, moving it between indexes as its state
    /// changes. Returns the task as changed.
    pub fn update(&mut self, id: TaskId, change: impl FnOnce(&mut Task)) -> Option<&Task> {
        let mut task = self.tasks.remove(&id)?;
        self.unindex(&task);
        change(&mut task);
        self.index(&task);
        self.tasks.insert(id, task);
        self.tasks.get(&id)
    }

    fn index(&mut self, t: &Task) {
        let counts = self.counts.entry(t.queue.clone()).or_default();
        match t.state {
            TaskState::Ready => {
                counts.ready += 1;
                self.ready.entry(t.lane()).or_default().insert((
                    Reverse(t.priority),
                    t.run_at,
                    t.task_id,
                ));
            }
            TaskState::Scheduled => {
                counts.scheduled += 1;
                self.scheduled.insert((t.run_at, t.task_id));
            }
            TaskState::Running => {
                counts.running += 1;
                self.leases
                    .insert((t.lease_until.unwrap_or_default(), t.task_id));
                if let Some(w) = t.worker_id {
                    self.running_by.entry(w).or_default().insert(t.task_id);
                }
                if t.singularly_run {
                    self.run_locks
                        .insert((t.queue.clone(), t.fingerprint.clone()), t.task_id);
                }
            }
            TaskState::Completed => self.completed.push_back(t.task_id),
            TaskState::Failed => counts.failed += 1,
        }
        if t.state.is_waiting() && t.singularly_enqueue {
            self.enqueue_locks
                .insert((t.lane(), t.fingerprint.clone()), t.task_id);
        }
    }

    fn unindex(&mut self, t: &Task) {
        if let Some(counts) = self.counts.get_mut(&t.queue) {
            let n = match t.state {
                TaskState::Ready => &mut counts.ready,
                TaskState::Scheduled => &mut counts.scheduled,
                TaskState::Running => &mut counts.running,
                TaskState::Failed => &mut counts.failed,
                TaskState::Completed => &mut 0,
            };
            *n = n.saturating_sub(1);
            if *counts == QueueCounts::default() {
                self.counts.remove(&t.queue);
            }
        }
        match t.state {
            TaskState::Ready => {
                let lane = t.lane();
                if let Some(set) = self.ready.get_mut(&lane) {
                    set.remove(&(Reverse(t.priority), t.run_at, t.task_id));
                    if set.is_empty() {
                        self.ready.remove(&lane);
                    }
                }
            }
            TaskState::Scheduled => {
                self.scheduled.remove(&(t.run_at, t.task_id));
            }
            TaskState::Running => {
                self.leases
                    .remove(&(t.lease_until.unwrap_or_default(), t.task_id));
                if let Some(w) = t.worker_id {
                    if let Some(set) = self.running_by.get_mut(&w) {
                        set.remove(&t.task_id);
                        if set.is_empty() {
                            self.running_by.remove(&w);
                        }
                    }
                }
                if t.singularly_run {
                    let key = (t.queue.clone(), t.fingerprint.clone());
                    if self.run_locks.get(&key) == Some(&t.task_id) {
                        self.run_locks.remove(&key);
                    }
                }
            }
            TaskState::Completed => {
                if self.completed.front() == Some(&t.task_id) {
                    self.completed.pop_front();
                } else {
                    self.completed.retain(|id| *id != t.task_id);
                }
            }
            TaskState::Failed => {}
        }
        if t.state.is_waiting() && t.singularly_enqueue {
            let key = (t.lane(), t.fingerprint.clone());
            if self.enqueue_locks.get(&key) == Some(&t.task_id) {
                self.enqueue_locks.remove(&key);
            }
        }
    }

    /// Whether a running twin holds this copy's run lock.
    pub fn run_locked(&self, t: &Task) -> bool {
        t.singularly_run
            && self
                .run_locks
                .contains_key(&(t.queue.clone(), t.fingerprint.clone()))
    }

    /// Ids of completed copies past the history limit, oldest first.
    pub fn over_history(&self) -> Vec<TaskId> {
        let excess = self.completed.len().saturating_sub(self.history_limit);
        self.completed.iter().take(excess).copied().collect()
    }
}
