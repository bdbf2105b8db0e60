//! The vocabulary that the broker and the stores share: tasks, their states,
//! ids, queue names, workers, counters.
//!
//! Plain data with parsing at the edge ("parse, don't validate"): a
//! `QueueName` or a `TaskId` is valid by construction. Nothing here knows of
//! HTTP, storage engines or the clock.

mod access;
mod batch;
mod filter;
mod ids;
mod recent;
mod requests;
mod task;
mod time;

pub use access::{QueueFilter, QueuePatternError};
pub use batch::{is_valid_batch_id, BatchRecord, BatchTotals, MAX_BATCH_ID_BYTES};
pub use filter::{
    check_search_fields, parse_time, search_fields_of, FieldMatch, FieldMatchError, TaskFilter,
    MAX_FIELD_MATCH_BYTES, MAX_SEARCH_FIELDS,
};
pub use ids::{
    IdError, QueueName, QueueNameError, TaskId, WorkerId, MAX_COPIES, MAX_QUEUE_NAME_LEN,
};
pub use recent::PublishRecord;
pub use requests::{
    Acted, BulkAction, BulkStep, CancelTarget, Cancellation, Page, RetryTarget, Selection,
    TaskSelector,
};
pub use task::{
    fingerprint, identity, is_valid_group, is_valid_key, AuditEntry, CopyRef, Counters, Dependency,
    GroupCount, GroupSettings, HeldLock, Lane, LockKind, NewTask, Priority, PriorityError,
    Published, QueueCounts, QueueGroups, QueueSettings, RetryPolicy, ScheduleRecord, Scope, Spec,
    Task, TaskEvent, TaskLog, TaskState, WorkerRecord, WorkerState, MAX_DEPENDENCIES,
    MAX_GROUP_BYTES, MAX_KEY_BYTES,
};
pub use time::Millis;
