//! What callers ask the store for beyond single copies: which copies a bulk
//! removal, retry or cancellation takes, and a page of a listing. Plain
//! values, so that `api` and `web` build them without knowing the store.

use super::{QueueName, TaskId, TaskState, WorkerId};

/// Which copies a bulk delete removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskSelector {
    /// Every copy of a queue, in any state but completed.
    Queue(QueueName),
    /// A worker's own queue and the copies it is running.
    Worker(WorkerId),
    /// One copy, in any state.
    Task(TaskId),
    /// Every failed copy (of one queue, when given).
    Failed(Option<QueueName>),
    /// Those of these copies that are failed (a step of a removal by
    /// search).
    FailedAmong(Vec<TaskId>),
}

/// Which failed copies a retry puts back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryTarget {
    /// One failed copy.
    Task(TaskId),
    /// Every failed copy (of one queue, when given).
    Failed(Option<QueueName>),
    /// Those of these copies that are still failed (a step of a retry by
    /// search).
    FailedAmong(Vec<TaskId>),
}

/// What `DELETE /task` stops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelTarget {
    /// One copy, or every copy of a publish (by the publish's id).
    Task(TaskId),
    /// Every copy published with this key.
    Key(String),
}

/// What a cancellation did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Cancellation {
    /// Waiting copies, now `cancelled`.
    pub cancelled: Vec<TaskId>,
    /// Running copies, now flagged: their workers learn it at their next
    /// heartbeat or report.
    pub requested: Vec<TaskId>,
    /// Copies matched that were already finished or failed, left alone.
    pub untouched: Vec<TaskId>,
}

/// A page of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub offset: usize,
    pub limit: usize,
}

/// What a bulk action does to each copy it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BulkAction {
    /// A failed copy gets a fresh set of attempts.
    Retry,
    /// A copy in any state is removed.
    Remove,
    /// A waiting copy is cancelled; a running one is flagged for its worker.
    Cancel,
    /// A scheduled copy becomes ready now.
    RunNow,
    /// A waiting or failed copy is published again, as one copy, into this
    /// queue; the original becomes `cancelled`, naming its replacement.
    Move(QueueName),
}

impl BulkAction {
    /// The names the API and the site use, in the order they offer them.
    pub const NAMES: [&'static str; 5] = ["retry", "cancel", "runNow", "move", "remove"];

    /// The action named `name`; `to` is the queue a move goes to. `Err`
    /// names what is wrong, for the field `action` (or `to`).
    pub fn parse(name: &str, to: Option<QueueName>) -> Result<Self, (&'static str, String)> {
        let action = match name {
            "retry" => BulkAction::Retry,
            "remove" => BulkAction::Remove,
            "cancel" => BulkAction::Cancel,
            "runNow" | "run-now" => BulkAction::RunNow,
            "move" => match to {
                Some(q) => return Ok(BulkAction::Move(q)),
                None => return Err(("to", "is required to move: the queue to move to".into())),
            },
            _ => {
                return Err((
                    "action",
                    format!("must be one of {}", BulkAction::NAMES.join(", ")),
                ))
            }
        };
        match to {
            Some(_) => Err(("to", "is only for `move`".into())),
            None => Ok(action),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            BulkAction::Retry => "retry",
            BulkAction::Remove => "remove",
            BulkAction::Cancel => "cancel",
            BulkAction::RunNow => "runNow",
            BulkAction::Move(_) => "move",
        }
    }

    /// Whether the action takes a copy in `state`.
    pub fn takes(&self, state: TaskState) -> bool {
        use TaskState::*;
        match self {
            BulkAction::Retry => state == Failed,
            BulkAction::Remove => true,
            BulkAction::Cancel => matches!(state, Ready | Scheduled | Blocked | Running),
            BulkAction::RunNow => state == Scheduled,
            BulkAction::Move(_) => Self::moves(state),
        }
    }

    /// Whether a move takes a copy in `state`: a waiting or failed one (a
    /// running one is its worker's; a blocked one waits on others).
    pub fn moves(state: TaskState) -> bool {
        matches!(
            state,
            TaskState::Ready | TaskState::Scheduled | TaskState::Failed
        )
    }

    /// The states it takes, for an error message.
    pub fn states(&self) -> String {
        let names: Vec<&str> = TaskState::ALL
            .iter()
            .filter(|s| self.takes(**s))
            .map(|s| s.as_str())
            .collect();
        names.join(", ")
    }

    /// Whether copies it took may now be claimed.
    pub fn wakes_workers(&self) -> bool {
        matches!(
            self,
            BulkAction::Retry | BulkAction::RunNow | BulkAction::Move(_)
        )
    }
}

/// Which copies a bulk action takes.
#[derive(Debug, Clone, PartialEq)]
pub enum Selection {
    /// These copies (those the action does not take are skipped).
    Ids(Vec<TaskId>),
    /// Every copy in `state` (of `queue`, when given) that passes `filter`
    /// and was published before the action began.
    Matching {
        state: TaskState,
        queue: Option<QueueName>,
        filter: super::TaskFilter,
    },
    /// Every archived copy in `state` of `queue` that passes `filter` (the
    /// archive's copies have finished: only a removal takes them).
    Archived {
        state: TaskState,
        queue: QueueName,
        filter: super::TaskFilter,
    },
}

/// One step of a bulk action, as the store makes it: at most a thousand
/// copies in one durable change.
#[derive(Debug, Clone)]
pub struct BulkStep {
    pub action: BulkAction,
    pub ids: Vec<TaskId>,
    /// For a move: each copy's replacement, in the order of `ids` (a new
    /// publish of one copy, in the queue it moves to).
    pub replacements: Vec<super::Task>,
}

/// What a bulk action (or one step of it) did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Acted {
    /// Copies the action took: retried, removed, cancelled, made ready, or
    /// moved (the originals).
    pub done: Vec<TaskId>,
    /// Running copies flagged by a cancel: their workers learn it at their
    /// next heartbeat or report.
    pub requested: Vec<TaskId>,
    /// Copies the action did not take: unknown, outside the key's queues, or
    /// in a state it does not take (a running copy already flagged, a move
    /// into the queue a copy is in).
    pub skipped: u64,
    /// Of a step's copies, how many are still in the state it listed (a
    /// flagged running copy, a skipped one): where the next step's listing
    /// starts.
    pub stayed: usize,
}

impl Acted {
    /// Adds a step's outcome to the action's.
    pub fn absorb(&mut self, step: Acted) {
        self.done.extend(step.done);
        self.requested.extend(step.requested);
        self.skipped += step.skipped;
    }
}
