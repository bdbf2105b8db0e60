//! The storage conformance suite: what every `Store` backend must do, written
//! once and split by area. A backend's test file implements [`Harness`] and
//! expands [`conformance_tests!`](crate::conformance_tests) to get one test
//! per case.
//!
//! Each case opens a fresh, empty store through the harness; `reopen` must
//! return the same store's data as a new process would see it.

mod claims;
mod groups;
mod listings;
mod logs;
mod operator;
mod records;
mod reports;
mod singular;
mod time;
mod workflows;

pub use std::sync::Arc;
pub use std::time::Duration;

pub use async_trait::async_trait;
pub use serde_json::json;

pub use interq::model::{
    fingerprint, AuditEntry, BatchRecord, BatchTotals, Counters, Dependency, Lane, LockKind,
    Millis, NewTask, Priority, PublishRecord, QueueName, QueueSettings, RetryPolicy, Scope, Task,
    TaskId, TaskState, WorkerId, WorkerRecord,
};
pub use interq::model::{CancelTarget, FieldMatch, Page, RetryTarget, TaskFilter, TaskSelector};
pub use interq::store::{
    Enqueued, NoOutputs, Outcome, ReportKind, Store, StoreError, WorkerReport,
};

/// How many completed copies a harness's stores keep.
pub const HISTORY: usize = 3;

/// Opens stores for the suite.
#[async_trait]
pub trait Harness: Send + Sync {
    /// A new, empty store keeping [`HISTORY`] completed copies.
    async fn open(&mut self) -> Arc<dyn Store>;
    /// The same store again, after `store` (its only handle) is dropped.
    async fn reopen(&mut self, store: Arc<dyn Store>) -> Arc<dyn Store>;
}

pub const T0: Millis = Millis(1_800_000_000_000);

pub fn q(name: &str) -> QueueName {
    QueueName::parse(name).expect("a valid queue name")
}

/// A ready copy in `queue` made at `T0 + at_ms`: copy 0 of a new publish
/// (copy ids derive from their publish's id, see `TaskId::copy`).
pub fn copy(queue: &str, priority: i16, at_ms: u64) -> Task {
    let data = json!({"n": at_ms, "q": queue});
    let data = data.as_object().expect("object").clone();
    let publish = TaskId::new_publish();
    Task {
        task_id: publish.copy(0),
        publish_id: publish,
        queue: q(queue),
        worker_queue: None,
        fingerprint: fingerprint(&data),
        data: Arc::new(data),
        publisher: "conformance".into(),
        priority: Priority(priority),
        scope: Scope::Any,
        singularly_enqueue: false,
        replace_waiting: false,
        singularly_run: false,
        state: TaskState::Ready,
        attempt: 0,
        max_attempts: 3,
        ttr: 30,
        created_at: T0.plus_millis(at_ms),
        run_at: T0.plus_millis(at_ms),
        expire_at: None,
        worker_id: None,
        lease_until: None,
        started_at: None,
        finished_at: None,
        fail_reason: None,
        progress: None,
        output: None,
        key: None,
        group: None,
        cancelled: false,
        parent: None,
        depth: 0,
        publish_output: false,
        batch: None,
        depends_on: Vec::new(),
        run_if_dependency_failed: false,
        history: Vec::new(),
        archived: false,
    }
}

/// The same task published again: equal data, its own ids.
fn twin(t: &Task) -> Task {
    let publish = TaskId::new_publish();
    Task {
        task_id: publish.copy(0),
        publish_id: publish,
        ..t.clone()
    }
}

pub fn lanes(names: &[&str]) -> Vec<Lane> {
    names.iter().map(|n| Lane::Queue(q(n))).collect()
}

const NO_JITTER: RetryPolicy = RetryPolicy {
    base_ms: 1_000,
    max_ms: 60_000,
    jitter: 0.0,
};

fn fail() -> Outcome {
    Outcome::Fail {
        reason: Some("boom".into()),
        re_enqueue: false,
        retry: NO_JITTER,
    }
}

pub fn complete() -> Outcome {
    Outcome::Complete {
        re_enqueue: false,
        output: None,
    }
}

type R = Result<(), StoreError>;

/// Enqueues `t` with one attempt, claims it and fails it into the failed set.
async fn into_failed(s: &dyn Store, mut t: Task, reason: &str) -> Result<TaskId, StoreError> {
    t.max_attempts = 1;
    let id = t.task_id;
    let queue = t.queue.to_string();
    s.enqueue(vec![t], Counters::default()).await?;
    let w = WorkerId::new();
    let got = s.claim(w, &lanes(&[&queue]), T0.plus_secs(1), 1).await?;
    assert_eq!(got.len(), 1, "the copy to fail was claimed");
    let failed = s
        .finish(
            id,
            w,
            T0.plus_secs(1),
            Outcome::Fail {
                reason: Some(reason.into()),
                re_enqueue: false,
                retry: NO_JITTER,
            },
        )
        .await?;
    assert_eq!(failed.state, TaskState::Failed);
    Ok(id)
}

fn ids(tasks: &[Task]) -> Vec<TaskId> {
    tasks.iter().map(|t| t.task_id).collect()
}

fn page(offset: usize, limit: usize) -> Page {
    Page { offset, limit }
}

pub use claims::*;
pub use groups::*;
pub use listings::*;
pub use logs::*;
pub use operator::*;
pub use records::*;
pub use reports::*;
pub use singular::*;
pub use time::*;
pub use workflows::*;

/// Expands to one `#[tokio::test]` per conformance case, each with a fresh
/// harness from `$harness` (an expression).
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        $crate::conformance_tests!(@all (Some($harness)));
    };
    // `$harness` is an `Option`: `None` (a backend that cannot run here,
    // which says so) skips every case.
    (optional $harness:expr) => {
        $crate::conformance_tests!(@all ($harness));
    };
    (@all $harness:tt) => {
        $crate::conformance_tests!(@cases $harness;
            claims_by_priority_then_age,
            a_publish_whose_caller_stopped_waiting_is_still_offered,
            claims_lanes_in_order_and_respects_count,
            a_claim_is_a_lease_that_counts_an_attempt,
            only_the_lease_holder_finishes_a_running_copy,
            heartbeats_extend_the_lease_and_keep_progress,
            completed_history_is_bounded,
            failures_back_off_then_land_in_the_failed_set,
            re_enqueue_puts_a_copy_straight_back,
            scheduled_copies_become_ready_when_due,
            expired_leases_go_back_until_the_last_attempt,
            singularly_enqueue_folds_waiting_twins,
            singularly_run_holds_twins_while_one_runs,
            releasing_a_worker_returns_its_copies,
            deletes_by_queue_and_by_worker,
            lineage_and_counts,
            a_payload_lives_as_long_as_any_copy_of_its_publish,
            keys_find_and_cancel_every_copy,
            waiting_copies_expire_unclaimed,
            replace_keeps_the_newest_waiting_twin,
            claims_obey_queue_limits_which_persist,
            claims_take_turns_between_groups,
            weights_share_turns_and_a_claim_of_many_takes_turns_too,
            strict_priority_goes_across_groups,
            a_group_limit_holds_running_copies_and_frees_on_finish,
            a_group_limit_of_one_runs_each_group_in_order,
            a_group_rate_limit_counts_claims_in_a_window,
            a_group_rate_limit_holds_over_a_minute_of_claims,
            a_copy_keeps_the_history_of_what_happened_to_it,
            retention_keeps_failed_longer_than_finished_and_counts_per_queue,
            a_cancelled_lease_ends_cancelled_and_a_late_completion_counts,
            a_batch_of_reports_is_one_step_each_answered_alone,
            interests_workers_and_counters_are_kept,
            every_state_survives_a_reopen,
            listings_page_through_each_state_in_its_order,
            deep_pages_list_in_the_same_order,
            listings_filter_by_key_publisher_reason_time_and_data,
            search_fields_answer_as_payloads_do_and_a_cursor_goes_on,
            a_filter_pages_through_more_than_a_walk_and_a_read_hold,
            failed_copies_are_grouped_by_the_first_line_of_their_reason,
            failed_copies_are_retried_one_or_all,
            a_failed_copy_is_retried_with_new_data_as_a_new_copy,
            a_scheduled_copy_runs_now_when_asked,
            singular_locks_are_listed_and_can_be_broken,
            removes_one_copy_or_the_failed_set,
            the_audit_log_is_kept_newest_first,
            samples_are_kept_once_per_time_and_thinned_with_age,
            the_publish_log_replays_each_publish_once_into_a_queue,
            only_the_lease_holder_appends_to_a_running_copys_log,
            a_long_log_keeps_its_last_bytes,
            a_log_goes_with_its_copy,
            an_output_becomes_a_publish_in_the_step_that_completes_its_copy,
            a_queue_publishes_its_outputs_and_the_depth_limit_ends_a_loop,
            a_batch_counts_its_copies_through_every_end_and_owes_one_callback,
            a_batch_open_for_more_ends_only_once_closed,
            dependants_wait_are_released_or_cancelled_and_relinked_after_a_reopen,
        );
    };
    (@cases $harness:tt; $($case:ident,)*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some(mut harness) = $harness else {
                    return;
                };
                $crate::conformance::$case(&mut harness).await.expect("store error");
            }
        )*
    };
}
