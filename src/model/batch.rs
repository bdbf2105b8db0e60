//! Batches: tasks published together under one id, counted as their copies
//! move, with a task published once when every copy has ended.

use serde::{Deserialize, Serialize};

use super::{Millis, NewTask, TaskId, TaskState};

/// Longest batch id, in bytes.
pub const MAX_BATCH_ID_BYTES: usize = 128;

/// A batch id: 1 to 128 bytes, no control characters.
pub fn is_valid_batch_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_BATCH_ID_BYTES && !id.chars().any(char::is_control)
}

/// Where a batch's copies are: the waiting and running ones as they are
/// now, the ended ones as they ended (kept when the copies themselves have
/// been swept).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchTotals {
    #[serde(default)]
    pub blocked: u64,
    pub scheduled: u64,
    pub ready: u64,
    pub running: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub expired: u64,
    /// Removed before they ended (by an operator, or with their queue).
    pub removed: u64,
}

impl BatchTotals {
    fn slot(&mut self, state: TaskState) -> &mut u64 {
        match state {
            TaskState::Blocked => &mut self.blocked,
            TaskState::Scheduled => &mut self.scheduled,
            TaskState::Ready => &mut self.ready,
            TaskState::Running => &mut self.running,
            TaskState::Completed => &mut self.completed,
            TaskState::Failed => &mut self.failed,
            TaskState::Cancelled => &mut self.cancelled,
            TaskState::Expired => &mut self.expired,
        }
    }

    /// A copy entered the batch in `state`.
    pub fn add(&mut self, state: TaskState) {
        *self.slot(state) += 1;
    }

    /// A copy of the batch moved from `from` to `to`.
    pub fn moved(&mut self, from: TaskState, to: TaskState) {
        let old = self.slot(from);
        *old = old.saturating_sub(1);
        *self.slot(to) += 1;
    }

    /// A copy in `state` was removed.
    pub fn removed_in(&mut self, state: TaskState) {
        let old = self.slot(state);
        *old = old.saturating_sub(1);
        self.removed += 1;
    }

    /// Each state's count, in the order copies move through them.
    pub fn by_state(&self) -> [(&'static str, u64); 9] {
        [
            ("blocked", self.blocked),
            ("scheduled", self.scheduled),
            ("ready", self.ready),
            ("running", self.running),
            ("completed", self.completed),
            ("failed", self.failed),
            ("cancelled", self.cancelled),
            ("expired", self.expired),
            ("removed", self.removed),
        ]
    }

    /// Copies not yet ended.
    pub fn open(&self) -> u64 {
        self.blocked + self.scheduled + self.ready + self.running
    }

    pub fn copies(&self) -> u64 {
        self.open() + self.completed + self.failed + self.cancelled + self.expired + self.removed
    }
}

/// A batch as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchRecord {
    pub id: String,
    pub created_at: Millis,
    pub totals: BatchTotals,
    /// More tasks may still join it: it does not end before it is closed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub open_for_more: bool,
    /// Published once every copy has ended, with the totals in its data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_complete: Option<NewTask>,
    /// When its last copy ended (and it was closed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<Millis>,
    /// The publish `on_complete` became, once it was published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback: Option<TaskId>,
}

impl BatchRecord {
    /// Every copy has ended and no more may join.
    pub fn has_ended(&self) -> bool {
        !self.open_for_more && self.totals.open() == 0
    }

    /// Its callback is owed: it ended, has one, and it was not published.
    pub fn callback_due(&self) -> bool {
        self.has_ended() && self.on_complete.is_some() && self.callback.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_follow_copies_through_their_states() {
        let mut t = BatchTotals::default();
        t.add(TaskState::Ready);
        t.add(TaskState::Scheduled);
        t.moved(TaskState::Ready, TaskState::Running);
        t.moved(TaskState::Running, TaskState::Failed);
        assert_eq!((t.open(), t.copies()), (1, 2));
        // A failed copy retried is waiting again.
        t.moved(TaskState::Failed, TaskState::Ready);
        assert_eq!((t.failed, t.open()), (0, 2));
        t.removed_in(TaskState::Scheduled);
        t.moved(TaskState::Ready, TaskState::Completed);
        assert_eq!((t.open(), t.copies(), t.removed), (0, 2, 1));
    }

    #[test]
    fn batch_ids_are_bounded_text() {
        assert!(is_valid_batch_id("nightly-2026-12-03"));
        assert!(!is_valid_batch_id(""));
        assert!(!is_valid_batch_id(&"b".repeat(129)));
        assert!(!is_valid_batch_id("a\nb"));
    }
}
