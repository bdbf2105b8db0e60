//! What callers ask the store for beyond single copies: which copies a bulk
//! removal, retry or cancellation takes, and a page of a listing. Plain
//! values, so that `api` and `web` build them without knowing the store.

use super::{QueueName, TaskId, WorkerId};

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
