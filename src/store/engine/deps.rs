//! Dependencies: a copy published with `dependsOn` is `blocked` until every
//! copy it waits for has completed; when one fails for good, is cancelled
//! or expires, it is cancelled too, or released if it asked to run anyway.
//! Every release and cancellation is made in the change that ended the
//! dependency (`settle_dependencies`, at the end of each change), so a
//! crash can neither lose nor double one.
//!
//! Costs are linear: each dependency keeps the list of its blocked
//! dependants, and each dependant a count of what it still waits for, so
//! a copy with 10,000 dependencies or 10,000 dependants is 10,000 steps.

use std::collections::HashSet;

use super::meta::{EventKind, Meta};
use super::ops::{put_copy, Op};
use super::state::State;
use crate::model::{Dependency, Millis, Task, TaskId, TaskState};
use crate::store::StoreError;

/// What a dependency's end means for a dependant.
fn satisfies(state: TaskState, run_anyway: bool) -> Option<bool> {
    match state {
        TaskState::Completed => Some(true),
        s if s.has_ended() => Some(run_anyway),
        _ => None,
    }
}

impl State {
    /// The copies `deps` name now: a copy by id, every copy of a publish,
    /// every copy with a key. Refused when one names nothing kept.
    pub(super) fn resolve_dependencies(
        &self,
        deps: &[Dependency],
    ) -> Result<Vec<TaskId>, StoreError> {
        let mut out = Vec::new();
        let mut seen = HashSet::new();
        for d in deps {
            let found: Vec<TaskId> = match d {
                Dependency::Task(id) if self.tasks.contains_key(id) => vec![*id],
                Dependency::Task(id) if id.is_publish() => {
                    self.copies_of(*id).map(|m| m.task_id).collect()
                }
                Dependency::Task(_) => Vec::new(),
                Dependency::Key { key } => self.with_key(key),
            };
            if found.is_empty() {
                return Err(StoreError::UnknownDependency(match d {
                    Dependency::Task(id) => format!("no task kept has the id {id}"),
                    Dependency::Key { key } => format!("no task kept has the key `{key}`"),
                }));
            }
            out.extend(found.into_iter().filter(|id| seen.insert(*id)));
        }
        Ok(out)
    }

    /// Resolves a new copy's dependencies and sets how it starts: blocked
    /// while any is unfinished, cancelled when one already failed (unless it
    /// runs anyway), as published otherwise.
    pub(super) fn start_dependent(&self, t: &mut Task) -> Result<(), StoreError> {
        if t.depends_on.is_empty() {
            return Ok(());
        }
        let ids = self.resolve_dependencies(&t.depends_on)?;
        let mut waiting = false;
        let mut failed = None;
        for id in &ids {
            let state = self.tasks.get(id).map_or(TaskState::Completed, |m| m.state);
            match satisfies(state, t.run_if_dependency_failed) {
                Some(true) => {}
                Some(false) => failed = failed.or(Some(*id)),
                None => waiting = true,
            }
        }
        t.depends_on = ids.into_iter().map(Dependency::Task).collect();
        if let Some(dep) = failed {
            t.state = TaskState::Cancelled;
            t.cancelled = true;
            t.finished_at = Some(t.created_at);
            t.fail_reason = Some(format!("its dependency {dep} did not complete"));
        } else if waiting {
            t.state = TaskState::Blocked;
        }
        Ok(())
    }

    /// A copy came in: a blocked one is linked to what it waits for.
    pub(super) fn link_dependencies(&mut self, m: &Meta) {
        if !m.depends_on().is_empty() {
            for dep in m.depends_on() {
                self.waited_by.entry(*dep).or_default().push(m.task_id);
            }
        }
        if m.state != TaskState::Blocked {
            return;
        }
        let run_anyway = m.flow.as_ref().is_some_and(|f| f.run_if_dependency_failed);
        let mut unmet = 0;
        for dep in m.depends_on() {
            // One no longer kept ended (and was followed) before.
            let Some(state) = self.tasks.get(dep).map(|d| d.state) else {
                continue;
            };
            match satisfies(state, run_anyway) {
                Some(true) => {}
                // Ended badly while this one was on its way in.
                Some(false) => {
                    let why = format!("its dependency {dep} ended {state}");
                    self.to_cancel.push((m.task_id, why, None));
                }
                None => {
                    unmet += 1;
                    self.dependants.entry(*dep).or_default().push(m.task_id);
                }
            }
        }
        if unmet == 0 {
            self.to_release.push((m.task_id, None));
        } else {
            self.unmet.insert(m.task_id, unmet);
        }
    }

    /// A copy left: it no longer waits, nor is it waited for by name.
    pub(super) fn unlink_dependencies(&mut self, m: &Meta) {
        self.unmet.remove(&m.task_id);
        for dep in m.depends_on() {
            if let Some(ids) = self.waited_by.get_mut(dep) {
                ids.retain(|i| *i != m.task_id);
                if ids.is_empty() {
                    self.waited_by.remove(dep);
                }
            }
        }
    }

    /// Copy `dep` ended (`Some(state)`) or was removed before it ended
    /// (`None`): what waits for it counts one less, and is released or
    /// cancelled when the change settles. Called for this node's changes
    /// and for records other nodes wrote alike, so that the counts agree;
    /// only the node that made the change settles it (elsewhere the
    /// settled records arrive with it).
    pub(super) fn dependency_ended(
        &mut self,
        dep: TaskId,
        how: Option<TaskState>,
        at: Option<Millis>,
    ) {
        let Some(waiting) = self.dependants.remove(&dep) else {
            return;
        };
        for d in waiting {
            let Some(m) = self.tasks.get(&d) else {
                continue;
            };
            if m.state != TaskState::Blocked {
                continue;
            }
            let run_anyway = m.flow.as_ref().is_some_and(|f| f.run_if_dependency_failed);
            // Removed before it ended: as if it failed.
            let ok = how
                .and_then(|s| satisfies(s, run_anyway))
                .unwrap_or(run_anyway);
            if ok {
                if let Some(n) = self.unmet.get_mut(&d) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.unmet.remove(&d);
                        self.to_release.push((d, at));
                    }
                }
            } else {
                self.unmet.remove(&d);
                let why = match how {
                    Some(s) => format!("its dependency {dep} ended {s}"),
                    None => format!("its dependency {dep} was removed"),
                };
                self.to_cancel.push((d, why, at));
            }
        }
    }

    /// Releases or cancels what the change's ends freed or doomed, and what
    /// those cancellations doom in turn, writing each.
    pub(super) fn settle_dependencies(&mut self, ops: &mut Vec<Op>) {
        loop {
            if let Some((d, why, at)) = self.to_cancel.pop() {
                let Some(m) = self.tasks.get(&d).filter(|m| m.state == TaskState::Blocked) else {
                    continue;
                };
                let at = at.unwrap_or(m.created_at);
                self.unmet.remove(&d);
                let m = self
                    .update(d, |t| {
                        t.state = TaskState::Cancelled;
                        t.event(at, EventKind::Cancelled, None, Some(why.clone()));
                        let extra = t.extra_mut();
                        extra.finished_at = Some(at);
                        extra.fail_reason = Some(why);
                    })
                    .expect("a blocked copy exists");
                ops.push(put_copy(m));
                self.counters.cancelled += 1;
                continue;
            }
            let Some((d, at)) = self.to_release.pop() else {
                break;
            };
            let free = self
                .tasks
                .get(&d)
                .is_some_and(|m| m.state == TaskState::Blocked)
                && !self.unmet.contains_key(&d);
            if free {
                let m = self
                    .update(d, |t| {
                        let at = at.unwrap_or(t.created_at).max(t.created_at);
                        t.state = if t.run_at > at {
                            TaskState::Scheduled
                        } else {
                            TaskState::Ready
                        };
                        t.event(at, EventKind::Unblocked, None, None);
                    })
                    .expect("a blocked copy exists");
                ops.push(put_copy(m));
                let lane = (m.state == TaskState::Ready).then(|| m.lane());
                // Drained by the next report or tick; bounded in case
                // neither comes for a while.
                if let Some(lane) = lane.filter(|_| self.released.len() < 10_000) {
                    self.released.push(lane);
                }
            }
        }
    }

    /// After a load: links every blocked copy afresh (a copy may have been
    /// read before what it waits for).
    pub(super) fn relink_dependencies(&mut self) {
        self.dependants.clear();
        self.unmet.clear();
        self.waited_by.clear();
        self.to_release.clear();
        self.to_cancel.clear();
        let waiting: Vec<Meta> = self
            .tasks
            .values()
            .filter(|m| !m.depends_on().is_empty())
            .cloned()
            .collect();
        for m in waiting {
            self.link_dependencies(&m);
        }
    }

    /// The kept copies that depend on `id`, whatever their state.
    pub fn dependants_of(&self, id: TaskId) -> Vec<TaskId> {
        let mut ids = self.waited_by.get(&id).cloned().unwrap_or_default();
        ids.sort();
        ids
    }
}
