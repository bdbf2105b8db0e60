//! The storage conformance suite: what every `Store` backend must do, written
//! once. A backend's test file implements [`Harness`] and expands
//! [`conformance_tests!`](crate::conformance_tests) to get one test per case.
//!
//! Each case opens a fresh, empty store through the harness; `reopen` must
//! return the same store's data as a new process would see it.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::json;

use super::{CancelTarget, Enqueued, Outcome, Page, RetryTarget, Store, StoreError, TaskSelector};
use crate::model::{
    fingerprint, AuditEntry, Counters, Lane, LockKind, Millis, Priority, QueueName, QueueSettings,
    RetryPolicy, Scope, Task, TaskId, TaskState, WorkerId, WorkerRecord,
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

const T0: Millis = Millis(1_800_000_000_000);

fn q(name: &str) -> QueueName {
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
        cancelled: false,
        history: Vec::new(),
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

fn lanes(names: &[&str]) -> Vec<Lane> {
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

fn complete() -> Outcome {
    Outcome::Complete {
        re_enqueue: false,
        output: None,
    }
}

type R = Result<(), StoreError>;

pub async fn claims_by_priority_then_age(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let low_old = copy("a", 0, 1);
    let high_new = copy("a", 10, 3);
    let low_new = copy("a", 0, 2);
    let ids = [high_new.task_id, low_old.task_id, low_new.task_id];
    s.enqueue(vec![low_old, high_new, low_new]).await?;
    let w = WorkerId::new();
    let got = s.claim(w, &lanes(&["a"]), T0.plus_secs(1), 10).await?;
    let got: Vec<TaskId> = got.iter().map(|t| t.task_id).collect();
    assert_eq!(got, ids);
    Ok(())
}

pub async fn claims_lanes_in_order_and_respects_count(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let w = WorkerId::new();
    let mut own = copy("b", -50, 5);
    own.worker_queue = Some(w);
    let (a, b) = (copy("a", 0, 1), copy("b", 100, 0));
    let (own_id, a_id, b_id) = (own.task_id, a.task_id, b.task_id);
    s.enqueue(vec![a, b, own]).await?;
    let mut order = vec![Lane::Worker(w)];
    order.extend(lanes(&["a", "b"]));
    let first = s.claim(w, &order, T0.plus_secs(1), 2).await?;
    assert_eq!(
        first.iter().map(|t| t.task_id).collect::<Vec<_>>(),
        [own_id, a_id]
    );
    let rest = s.claim(w, &order, T0.plus_secs(1), 2).await?;
    assert_eq!(rest.iter().map(|t| t.task_id).collect::<Vec<_>>(), [b_id]);
    assert!(s.claim(w, &order, T0.plus_secs(1), 2).await?.is_empty());
    // Another worker's own queue is not ours.
    let mut theirs = copy("a", 0, 9);
    theirs.worker_queue = Some(WorkerId::new());
    s.enqueue(vec![theirs]).await?;
    assert!(s.claim(w, &order, T0.plus_secs(1), 2).await?.is_empty());
    Ok(())
}

pub async fn a_claim_is_a_lease_that_counts_an_attempt(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let t = copy("a", 0, 0);
    let id = t.task_id;
    s.enqueue(vec![t]).await?;
    let w = WorkerId::new();
    let now = T0.plus_secs(1);
    let got = s.claim(w, &lanes(&["a"]), now, 1).await?.remove(0);
    assert_eq!(got.state, TaskState::Running);
    assert_eq!(got.attempt, 1);
    assert_eq!(got.worker_id, Some(w));
    assert_eq!(got.lease_until, Some(now.plus_secs(30)));
    assert_eq!(s.running_of(w).await?, [id]);
    assert_eq!(s.task(id).await?.map(|t| t.state), Some(TaskState::Running));
    assert!(s
        .claim(WorkerId::new(), &lanes(&["a"]), now, 1)
        .await?
        .is_empty());
    Ok(())
}

pub async fn only_the_lease_holder_finishes_a_running_copy(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let t = copy("a", 0, 0);
    let id = t.task_id;
    s.enqueue(vec![t]).await?;
    let now = T0.plus_secs(1);
    let unknown = s
        .finish(TaskId::new(), WorkerId::new(), now, complete())
        .await;
    assert!(matches!(unknown, Err(StoreError::UnknownTask(_))));
    let not_running = s.finish(id, WorkerId::new(), now, complete()).await;
    assert!(matches!(
        not_running,
        Err(StoreError::NotRunning {
            state: TaskState::Ready,
            ..
        })
    ));
    let w = WorkerId::new();
    s.claim(w, &lanes(&["a"]), now, 1).await?;
    let stranger = s.finish(id, WorkerId::new(), now, complete()).await;
    assert!(matches!(stranger, Err(StoreError::NotLeaseHolder { .. })));
    let done = s.finish(id, w, now, complete()).await?;
    assert_eq!(done.state, TaskState::Completed);
    assert_eq!(done.finished_at, Some(now));
    assert_eq!(s.counters().await?.completed, 1);
    assert!(s.running_of(w).await?.is_empty());
    Ok(())
}

pub async fn heartbeats_extend_the_lease_and_keep_progress(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let t = copy("a", 0, 0);
    let id = t.task_id;
    s.enqueue(vec![t]).await?;
    let w = WorkerId::new();
    s.claim(w, &lanes(&["a"]), T0, 1).await?;
    let beat = s
        .heartbeat(id, w, T0.plus_secs(20), Some(json!(40)))
        .await?;
    assert_eq!(beat.lease_until, Some(T0.plus_secs(50)));
    assert_eq!(beat.progress, Some(json!(40)));
    // Past the first lease, within the extended one: still running.
    s.tick(T0.plus_secs(40)).await?;
    assert_eq!(s.task(id).await?.map(|t| t.state), Some(TaskState::Running));
    let stranger = s
        .heartbeat(id, WorkerId::new(), T0.plus_secs(41), None)
        .await;
    assert!(matches!(stranger, Err(StoreError::NotLeaseHolder { .. })));
    let output = Some(json!({"sent": 3}));
    let done = s
        .finish(
            id,
            w,
            T0.plus_secs(42),
            Outcome::Complete {
                re_enqueue: false,
                output: output.clone(),
            },
        )
        .await?;
    assert_eq!((done.output, done.progress), (output, Some(json!(40))));
    let late = s.heartbeat(id, w, T0.plus_secs(43), None).await;
    assert!(matches!(late, Err(StoreError::NotRunning { .. })));
    Ok(())
}

pub async fn completed_history_is_bounded(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let copies: Vec<Task> = (0..HISTORY as u64 + 2).map(|i| copy("a", 0, i)).collect();
    let ids: Vec<TaskId> = copies.iter().map(|t| t.task_id).collect();
    s.enqueue(copies).await?;
    let w = WorkerId::new();
    for (i, id) in ids.iter().enumerate() {
        s.claim(w, &lanes(&["a"]), T0.plus_secs(1), 1).await?;
        s.finish(*id, w, T0.plus_secs(2 + i as u64), complete())
            .await?;
    }
    assert!(s.task(ids[0]).await?.is_none());
    assert!(s.task(ids[1]).await?.is_none());
    assert_eq!(
        s.task(ids[2]).await?.map(|t| t.state),
        Some(TaskState::Completed)
    );
    assert_eq!(s.counters().await?.completed, ids.len() as u64);
    Ok(())
}

pub async fn failures_back_off_then_land_in_the_failed_set(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let t = copy("a", 0, 0);
    let id = t.task_id;
    s.enqueue(vec![t]).await?;
    let w = WorkerId::new();
    let mut now = T0.plus_secs(1);
    for attempt in 1..=3u32 {
        let got = s.claim(w, &lanes(&["a"]), now, 1).await?;
        assert_eq!(got.len(), 1, "attempt {attempt} is claimable");
        let failed = s.finish(id, w, now, fail()).await?;
        assert_eq!(failed.fail_reason.as_deref(), Some("boom"));
        if attempt < 3 {
            assert_eq!(failed.state, TaskState::Scheduled);
            let delay = NO_JITTER.delay_ms(attempt);
            assert_eq!(failed.run_at, now.plus_millis(delay));
            // Not before its time...
            s.tick(now.plus_millis(delay - 1)).await?;
            assert!(s
                .claim(w, &lanes(&["a"]), now.plus_millis(delay - 1), 1)
                .await?
                .is_empty());
            // ...then ready again.
            now = now.plus_millis(delay);
            let tick = s.tick(now).await?;
            assert_eq!(tick.woken, lanes(&["a"]));
        } else {
            assert_eq!(failed.state, TaskState::Failed);
        }
    }
    let failed = s
        .list_tasks(
            Some(&q("a")),
            TaskState::Failed,
            Page {
                offset: 0,
                limit: 10,
            },
        )
        .await?;
    assert_eq!(failed.iter().map(|t| t.task_id).collect::<Vec<_>>(), [id]);
    let c = s.counters().await?;
    assert_eq!((c.retried, c.failed), (2, 1));
    let counts = s.queue_counts().await?;
    assert_eq!(counts[0].1.failed, 1);
    Ok(())
}

pub async fn re_enqueue_puts_a_copy_straight_back(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let t = copy("a", 0, 0);
    let id = t.task_id;
    s.enqueue(vec![t]).await?;
    let w = WorkerId::new();
    let now = T0.plus_secs(1);
    for outcome in [
        Outcome::Complete {
            re_enqueue: true,
            output: None,
        },
        Outcome::Fail {
            reason: None,
            re_enqueue: true,
            retry: NO_JITTER,
        },
    ] {
        s.claim(w, &lanes(&["a"]), now, 1).await?;
        let back = s.finish(id, w, now, outcome).await?;
        assert_eq!(back.state, TaskState::Ready);
    }
    assert_eq!(s.lane_len(&Lane::Queue(q("a"))).await?, 1);
    Ok(())
}

pub async fn scheduled_copies_become_ready_when_due(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let mut t = copy("a", 0, 0);
    t.state = TaskState::Scheduled;
    t.run_at = T0.plus_secs(60);
    s.enqueue(vec![t]).await?;
    let w = WorkerId::new();
    assert_eq!(s.tick(T0.plus_secs(59)).await?.woken, []);
    assert!(s
        .claim(w, &lanes(&["a"]), T0.plus_secs(59), 1)
        .await?
        .is_empty());
    assert_eq!(s.queue_counts().await?[0].1.scheduled, 1);
    assert_eq!(s.tick(T0.plus_secs(60)).await?.woken, lanes(&["a"]));
    assert_eq!(
        s.claim(w, &lanes(&["a"]), T0.plus_secs(60), 1).await?.len(),
        1
    );
    Ok(())
}

pub async fn expired_leases_go_back_until_the_last_attempt(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let mut t = copy("a", 0, 0);
    t.max_attempts = 2;
    let id = t.task_id;
    s.enqueue(vec![t]).await?;
    let w = WorkerId::new();
    let now = T0.plus_secs(1);
    s.claim(w, &lanes(&["a"]), now, 1).await?;
    s.tick(now.plus_secs(29)).await?;
    assert_eq!(s.task(id).await?.map(|t| t.state), Some(TaskState::Running));
    assert_eq!(s.tick(now.plus_secs(30)).await?.woken, lanes(&["a"]));
    let back = s.task(id).await?.expect("kept");
    assert_eq!((back.state, back.attempt), (TaskState::Ready, 1));
    // The late worker can no longer finish it.
    assert!(s
        .finish(id, w, now.plus_secs(31), complete())
        .await
        .is_err());
    let later = now.plus_secs(40);
    s.claim(w, &lanes(&["a"]), later, 1).await?;
    s.tick(later.plus_secs(30)).await?;
    let last = s.task(id).await?.expect("kept");
    assert_eq!((last.state, last.attempt), (TaskState::Failed, 2));
    let c = s.counters().await?;
    assert_eq!((c.lease_expired, c.failed), (2, 1));
    Ok(())
}

pub async fn singularly_enqueue_folds_waiting_twins(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let mut first = copy("a", 0, 0);
    first.singularly_enqueue = true;
    let twin = twin(&first);
    let mut other_queue = first.clone();
    other_queue.task_id = first.publish_id.copy(1);
    other_queue.queue = q("b");
    let first_id = first.task_id;
    let got = s.enqueue(vec![first, twin.clone(), other_queue]).await?;
    assert_eq!(got[0], Enqueued::Created(first_id));
    assert_eq!(got[1], Enqueued::Existing(first_id));
    assert!(matches!(got[2], Enqueued::Created(_)));
    assert_eq!(s.counters().await?.deduplicated, 1);
    // Once the first runs, a twin may wait again.
    s.claim(WorkerId::new(), &lanes(&["a"]), T0.plus_secs(1), 1)
        .await?;
    let again = s.enqueue(vec![twin.clone()]).await?;
    assert_eq!(again, [Enqueued::Created(twin.task_id)]);
    Ok(())
}

pub async fn singularly_run_holds_twins_while_one_runs(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let mut first = copy("a", 0, 0);
    first.singularly_run = true;
    let mut twin = twin(&first);
    twin.created_at = first.created_at.plus_millis(1);
    twin.run_at = twin.created_at;
    let other = copy("a", 0, 5);
    let (first_id, twin_id, other_id) = (first.task_id, twin.task_id, other.task_id);
    s.enqueue(vec![first, twin, other]).await?;
    let (w1, w2) = (WorkerId::new(), WorkerId::new());
    let now = T0.plus_secs(1);
    let got = s.claim(w1, &lanes(&["a"]), now, 10).await?;
    assert_eq!(
        got.iter().map(|t| t.task_id).collect::<Vec<_>>(),
        [first_id, other_id]
    );
    assert!(s.claim(w2, &lanes(&["a"]), now, 10).await?.is_empty());
    s.finish(first_id, w1, now, complete()).await?;
    let got = s.claim(w2, &lanes(&["a"]), now, 10).await?;
    assert_eq!(got.iter().map(|t| t.task_id).collect::<Vec<_>>(), [twin_id]);
    Ok(())
}

pub async fn releasing_a_worker_returns_its_copies(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let t = copy("a", 0, 0);
    let id = t.task_id;
    s.enqueue(vec![t]).await?;
    let w = WorkerId::new();
    s.claim(w, &lanes(&["a"]), T0.plus_secs(1), 1).await?;
    let tick = s.release_worker(w, T0.plus_secs(2)).await?;
    assert_eq!(tick.woken, lanes(&["a"]));
    let back = s.task(id).await?.expect("kept");
    assert_eq!((back.state, back.attempt), (TaskState::Ready, 1));
    assert!(s.running_of(w).await?.is_empty());
    Ok(())
}

pub async fn deletes_by_queue_and_by_worker(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let w = WorkerId::new();
    let mut own = copy("b", 0, 0);
    own.worker_queue = Some(w);
    let running = copy("c", 0, 0);
    let keep = copy("c", 0, 1);
    let keep_id = keep.task_id;
    s.enqueue(vec![copy("a", 0, 0), copy("a", 0, 1), own, running, keep])
        .await?;
    s.claim(w, &lanes(&["c"]), T0.plus_secs(1), 1).await?;
    assert_eq!(s.delete_tasks(TaskSelector::Queue(q("a"))).await?, 2);
    assert_eq!(s.delete_tasks(TaskSelector::Worker(w)).await?, 2);
    let left: Vec<(QueueName, u64)> = s
        .queue_counts()
        .await?
        .into_iter()
        .map(|(q, c)| (q, c.ready))
        .collect();
    assert_eq!(left, [(q("c"), 1)]);
    assert!(s.task(keep_id).await?.is_some());
    Ok(())
}

pub async fn lineage_and_counts(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let a = copy("a", 0, 0);
    let mut b = copy("b", 0, 0);
    b.publish_id = a.publish_id;
    b.task_id = a.publish_id.copy(1);
    let publish = a.publish_id;
    s.enqueue(vec![a, b, copy("b", 0, 1)]).await?;
    let copies = s.tasks_of_publish(publish).await?;
    assert_eq!(
        copies.iter().map(|t| t.queue.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert_eq!(s.lane_len(&Lane::Queue(q("b"))).await?, 2);
    assert!(s.tasks_of_publish(TaskId::new()).await?.is_empty());
    Ok(())
}

pub async fn a_payload_lives_as_long_as_any_copy_of_its_publish(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let a = copy("a", 0, 0);
    let mut b = copy("b", 0, 0);
    b.publish_id = a.publish_id;
    b.task_id = a.publish_id.copy(1);
    let (a_id, b_id, data) = (a.task_id, b.task_id, a.data.clone());
    s.enqueue(vec![a, b]).await?;
    assert_eq!(s.delete_tasks(TaskSelector::Queue(q("a"))).await?, 1);
    let left = s.task(b_id).await?.expect("the other copy is kept");
    assert_eq!(left.data, data, "its payload too");
    let w = WorkerId::new();
    let claimed = s.claim(w, &lanes(&["b"]), T0.plus_secs(1), 1).await?;
    assert_eq!(claimed[0].data, data);
    assert!(s.task(a_id).await?.is_none());
    let s = h.reopen(s).await;
    assert_eq!(s.task(b_id).await?.map(|t| t.data), Some(data));
    Ok(())
}

pub async fn keys_find_and_cancel_every_copy(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let mut waiting = copy("a", 0, 0);
    waiting.key = Some("build-1".into());
    let mut scheduled = waiting.clone();
    scheduled.task_id = waiting.publish_id.copy(1);
    scheduled.queue = q("b");
    scheduled.state = TaskState::Scheduled;
    scheduled.run_at = T0.plus_secs(600);
    let mut running = copy("c", 0, 0);
    running.key = Some("build-1".into());
    let mut other = copy("a", 0, 5);
    other.key = Some("build-2".into());
    let ids = [waiting.task_id, scheduled.task_id, running.task_id];
    s.enqueue(vec![waiting, scheduled, running, other]).await?;
    let w = WorkerId::new();
    s.claim(w, &lanes(&["c"]), T0.plus_secs(1), 1).await?;

    let found: Vec<TaskId> = s
        .tasks_with_key("build-1")
        .await?
        .iter()
        .map(|t| t.task_id)
        .collect();
    assert_eq!(found, ids);
    let done = s
        .cancel(CancelTarget::Key("build-1".into()), T0.plus_secs(2))
        .await?;
    assert_eq!(done.cancelled, ids[..2]);
    assert_eq!(done.requested, [ids[2]]);
    let states: Vec<TaskState> = s
        .tasks_with_key("build-1")
        .await?
        .iter()
        .map(|t| t.state)
        .collect();
    assert_eq!(
        states,
        [
            TaskState::Cancelled,
            TaskState::Cancelled,
            TaskState::Running
        ]
    );
    // The running one tells its worker, then ends cancelled, not failed.
    let beat = s.heartbeat(ids[2], w, T0.plus_secs(3), None).await?;
    assert!(beat.cancelled);
    let ended = s.finish(ids[2], w, T0.plus_secs(4), fail()).await?;
    assert_eq!((ended.state, ended.cancelled), (TaskState::Cancelled, true));
    assert!(
        s.tick(T0.plus_secs(10_000)).await?.woken.is_empty(),
        "nothing comes back"
    );
    let c = s.counters().await?;
    assert_eq!((c.cancelled, c.failed, c.retried), (3, 0, 0));
    assert_eq!(
        s.lane_len(&Lane::Queue(q("a"))).await?,
        1,
        "the other key's copy waits on"
    );
    let again = s
        .cancel(CancelTarget::Key("build-1".into()), T0.plus_secs(5))
        .await?;
    assert_eq!((again.cancelled.len(), again.untouched.len()), (0, 3));
    assert_eq!(
        s.cancel(CancelTarget::Key("nobody".into()), T0).await?,
        Default::default()
    );
    Ok(())
}

pub async fn a_cancelled_lease_ends_cancelled_and_a_late_completion_counts(
    h: &mut dyn Harness,
) -> R {
    let s = h.open().await;
    let (a, b) = (copy("a", 0, 0), copy("a", 0, 1));
    let (a_id, b_id) = (a.task_id, b.task_id);
    s.enqueue(vec![a, b]).await?;
    let w = WorkerId::new();
    s.claim(w, &lanes(&["a"]), T0, 2).await?;
    s.cancel(CancelTarget::Task(a_id), T0).await?;
    s.cancel(CancelTarget::Task(b_id.publish()), T0).await?;
    let b_done = s.finish(b_id, w, T0.plus_secs(1), complete()).await?;
    assert_eq!(
        b_done.state,
        TaskState::Completed,
        "work that finished is not undone"
    );
    s.tick(T0.plus_secs(31)).await?;
    assert_eq!(
        s.task(a_id).await?.map(|t| t.state),
        Some(TaskState::Cancelled)
    );
    let s = h.reopen(s).await;
    assert_eq!(
        s.task(a_id).await?.map(|t| (t.state, t.cancelled)),
        Some((TaskState::Cancelled, true))
    );
    Ok(())
}

pub async fn waiting_copies_expire_unclaimed(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let mut soon = copy("a", 10, 0);
    soon.expire_at = Some(T0.plus_secs(10));
    let mut later = copy("a", 0, 1);
    later.expire_at = Some(T0.plus_secs(100));
    let plain = copy("a", 0, 2);
    let (soon_id, later_id) = (soon.task_id, later.task_id);
    s.enqueue(vec![soon, later, plain]).await?;
    let w = WorkerId::new();
    // Past its time, it is not handed out even before a tick expires it.
    let got = s.claim(w, &lanes(&["a"]), T0.plus_secs(11), 1).await?;
    assert_eq!(
        got[0].task_id, later_id,
        "claimed in time, it does not expire"
    );
    // After its expiry, within the claimed copy's lease.
    s.tick(T0.plus_secs(20)).await?;
    let expired = s.task(soon_id).await?.expect("kept in history");
    assert_eq!(expired.state, TaskState::Expired);
    assert_eq!(
        s.task(later_id).await?.map(|t| t.state),
        Some(TaskState::Running)
    );
    assert_eq!(s.counters().await?.expired, 1);
    assert_eq!(s.lane_len(&Lane::Queue(q("a"))).await?, 1);
    Ok(())
}

pub async fn replace_keeps_the_newest_waiting_twin(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let mut first = copy("a", 0, 0);
    first.singularly_enqueue = true;
    first.replace_waiting = true;
    let mut newer = twin(&first);
    newer.data = Arc::new(json!({"version": 2}).as_object().expect("object").clone());
    let (first_id, newer_id) = (first.task_id, newer.task_id);
    s.enqueue(vec![first]).await?;
    let got = s.enqueue(vec![newer]).await?;
    assert_eq!(
        got,
        [Enqueued::Replaced {
            created: newer_id,
            replaced: first_id
        }]
    );
    assert_eq!(
        s.task(first_id).await?.map(|t| t.state),
        Some(TaskState::Cancelled)
    );
    assert_eq!(s.lane_len(&Lane::Queue(q("a"))).await?, 1);
    let claimed = s
        .claim(WorkerId::new(), &lanes(&["a"]), T0.plus_secs(1), 5)
        .await?;
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        (claimed[0].task_id, claimed[0].data.get("version")),
        (newer_id, Some(&json!(2)))
    );
    Ok(())
}

pub async fn claims_obey_queue_limits_which_persist(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let copies: Vec<Task> = (0..6).map(|i| copy("a", 0, i)).collect();
    s.enqueue(copies).await?;
    let w = WorkerId::new();
    let paused = QueueSettings {
        paused: true,
        ..QueueSettings::default()
    };
    s.put_queue_settings(&q("a"), paused).await?;
    assert!(
        s.claim(w, &lanes(&["a"]), T0, 10).await?.is_empty(),
        "paused"
    );
    let s = h.reopen(s).await;
    assert_eq!(s.queue_settings().await?, [(q("a"), paused)]);
    assert!(
        s.claim(w, &lanes(&["a"]), T0, 10).await?.is_empty(),
        "still paused after a restart"
    );
    let capped = QueueSettings {
        max_running: Some(2),
        ..QueueSettings::default()
    };
    s.put_queue_settings(&q("a"), capped).await?;
    let first = s.claim(w, &lanes(&["a"]), T0, 10).await?;
    assert_eq!(first.len(), 2);
    assert!(
        s.claim(w, &lanes(&["a"]), T0, 10).await?.is_empty(),
        "two running already"
    );
    s.finish(first[0].task_id, w, T0, complete()).await?;
    assert_eq!(s.claim(w, &lanes(&["a"]), T0, 10).await?.len(), 1);
    let limited = QueueSettings {
        rate_limit: Some(2.0),
        ..QueueSettings::default()
    };
    s.put_queue_settings(&q("a"), limited).await?;
    assert_eq!(
        s.claim(w, &lanes(&["a"]), T0, 10).await?.len(),
        2,
        "a full bucket"
    );
    assert!(s
        .claim(w, &lanes(&["a"]), T0.plus_millis(100), 10)
        .await?
        .is_empty());
    assert_eq!(
        s.claim(w, &lanes(&["a"]), T0.plus_millis(600), 10)
            .await?
            .len(),
        1,
        "refilled by 2/s"
    );
    s.put_queue_settings(&q("a"), QueueSettings::default())
        .await?;
    assert!(
        s.queue_settings().await?.is_empty(),
        "defaults are no settings"
    );
    Ok(())
}

pub async fn a_copy_keeps_the_history_of_what_happened_to_it(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let t = copy("a", 0, 0);
    let id = t.task_id;
    s.enqueue(vec![t]).await?;
    let w = WorkerId::new();
    s.claim(w, &lanes(&["a"]), T0, 1).await?;
    s.heartbeat(id, w, T0.plus_secs(1), Some(json!(50))).await?;
    s.finish(id, w, T0.plus_secs(2), fail()).await?;
    s.tick(T0.plus_secs(3)).await?;
    s.claim(w, &lanes(&["a"]), T0.plus_secs(3), 1).await?;
    s.finish(id, w, T0.plus_secs(4), complete()).await?;
    let s = h.reopen(s).await;
    let history = s.task(id).await?.expect("kept").history;
    let events: Vec<(&str, Option<WorkerId>)> = history
        .iter()
        .map(|e| (e.event.as_str(), e.worker_id))
        .collect();
    assert_eq!(
        events,
        [
            ("claimed", Some(w)),
            ("progress", Some(w)),
            ("retrying", Some(w)),
            ("due", None),
            ("claimed", Some(w)),
            ("completed", Some(w)),
        ]
    );
    assert_eq!(history[2].detail.as_deref(), Some("boom"));
    assert_eq!(history[5].at, T0.plus_secs(4));
    Ok(())
}

pub async fn retention_keeps_failed_longer_than_finished_and_counts_per_queue(
    h: &mut dyn Harness,
) -> R {
    let s = h.open().await;
    // Harness stores keep HISTORY finished copies per queue, finished copies
    // 7 days and failed ones 30 (the defaults).
    let mut all = Vec::new();
    for i in 0..HISTORY as u64 + 1 {
        all.push(copy("a", 0, i));
        all.push(copy("b", 0, i));
    }
    let mut doomed = copy("f", 0, 0);
    doomed.max_attempts = 1;
    let doomed_id = doomed.task_id;
    all.push(doomed);
    let ids: Vec<TaskId> = all.iter().map(|t| t.task_id).collect();
    s.enqueue(all).await?;
    let w = WorkerId::new();
    for _ in &ids[..ids.len() - 1] {
        let got = s
            .claim(w, &[Lane::Queue(q("a")), Lane::Queue(q("b"))], T0, 1)
            .await?;
        s.finish(got[0].task_id, w, T0, complete()).await?;
    }
    s.claim(w, &lanes(&["f"]), T0, 1).await?;
    s.finish(doomed_id, w, T0, fail()).await?;
    // HISTORY per queue: the oldest of each of the two queues went.
    assert!(s.task(ids[0]).await?.is_none() && s.task(ids[1]).await?.is_none());
    assert!(s.task(ids[2]).await?.is_some() && s.task(ids[3]).await?.is_some());
    s.tick(T0.plus_secs(8 * 86_400)).await?;
    assert!(
        s.task(ids[2]).await?.is_none(),
        "finished copies go after 7 days"
    );
    assert_eq!(
        s.task(doomed_id).await?.map(|t| t.state),
        Some(TaskState::Failed),
        "failed ones stay"
    );
    s.tick(T0.plus_secs(31 * 86_400)).await?;
    assert!(s.task(doomed_id).await?.is_none(), "and go after 30");
    assert!(s.queue_counts().await?.is_empty());
    Ok(())
}

pub async fn interests_workers_and_counters_are_kept(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    s.put_interests(&q("a"), &json!({"f": "x"})).await?;
    s.put_interests(&q("a"), &json!("*")).await?;
    s.put_interests(&q("b"), &json!({"g": "y"})).await?;
    assert!(s.delete_interests(&q("b")).await?);
    assert!(!s.delete_interests(&q("b")).await?);
    let w = WorkerRecord {
        worker_id: WorkerId::new(),
        name: "host:1".into(),
        queues: vec![q("a"), q("b")],
        registered_at: T0,
    };
    let gone = WorkerRecord {
        worker_id: WorkerId::new(),
        ..w.clone()
    };
    s.put_worker(&w).await?;
    s.put_worker(&gone).await?;
    assert!(s.delete_worker(gone.worker_id).await?);
    assert!(!s.delete_worker(gone.worker_id).await?);
    s.add_counters(Counters {
        discarded: 2,
        published: 5,
        ..Counters::default()
    })
    .await?;
    s.enqueue(vec![copy("a", 0, 0)]).await?;
    let s = h.reopen(s).await;
    assert_eq!(s.interests().await?, [(q("a"), json!("*"))]);
    assert_eq!(s.workers().await?, [w]);
    let c = s.counters().await?;
    assert_eq!((c.discarded, c.published, c.routed), (2, 5, 1));
    Ok(())
}

pub async fn every_state_survives_a_reopen(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let w = WorkerId::new();
    let mut scheduled = copy("a", 0, 0);
    scheduled.state = TaskState::Scheduled;
    scheduled.run_at = T0.plus_secs(1_000_000);
    let mut dedupe = copy("a", 0, 1);
    dedupe.singularly_enqueue = true;
    let mut running = copy("r", 0, 0);
    running.ttr = 100_000;
    let failing = copy("f", 0, 0);
    let ids = [
        scheduled.task_id,
        dedupe.task_id,
        running.task_id,
        failing.task_id,
    ];
    s.enqueue(vec![scheduled, dedupe.clone(), running, failing])
        .await?;
    let now = T0.plus_secs(1);
    s.claim(w, &lanes(&["r"]), now, 1).await?;
    // Three failed attempts, each after the previous backoff.
    for hour in 1..=3 {
        let at = now.plus_secs(3600 * hour);
        s.tick(at).await?;
        assert_eq!(s.claim(w, &lanes(&["f"]), at, 1).await?.len(), 1);
        s.finish(ids[3], w, at, fail()).await?;
    }
    s.flush().await?;
    let before: Vec<Option<Task>> = {
        let mut v = Vec::new();
        for id in ids {
            v.push(s.task(id).await?);
        }
        v
    };
    let s = h.reopen(s).await;
    for (id, expected) in ids.iter().zip(&before) {
        assert_eq!(&s.task(*id).await?, expected);
    }
    let states: Vec<TaskState> = before
        .iter()
        .map(|t| t.as_ref().expect("kept").state)
        .collect();
    assert_eq!(
        states,
        [
            TaskState::Scheduled,
            TaskState::Ready,
            TaskState::Running,
            TaskState::Failed
        ]
    );
    // Indexes are rebuilt, not just records: the lease still expires, the
    // dedupe lock still holds, the schedule still fires.
    assert_eq!(s.running_of(w).await?, [ids[2]]);
    assert_eq!(
        s.enqueue(vec![twin(&dedupe)]).await?,
        [Enqueued::Existing(ids[1])]
    );
    let tick = s.tick(T0.plus_secs(2_000_000)).await?;
    assert_eq!(tick.woken, lanes(&["a", "r"]));
    Ok(())
}

/// Enqueues `t` with one attempt, claims it and fails it into the failed set.
async fn into_failed(s: &dyn Store, mut t: Task, reason: &str) -> Result<TaskId, StoreError> {
    t.max_attempts = 1;
    let id = t.task_id;
    let queue = t.queue.to_string();
    s.enqueue(vec![t]).await?;
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

pub async fn listings_page_through_each_state_in_its_order(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let low = copy("a", -5, 0);
    let high = copy("a", 5, 10);
    let mid = copy("a", 0, 20);
    let elsewhere = copy("b", 0, 30);
    let mut later = copy("a", 0, 40);
    later.state = TaskState::Scheduled;
    later.run_at = T0.plus_secs(100);
    let mut sooner = copy("a", 0, 50);
    sooner.state = TaskState::Scheduled;
    sooner.run_at = T0.plus_secs(50);
    let all = [&low, &high, &mid, &elsewhere, &later, &sooner].map(|t| t.task_id);
    s.enqueue(vec![
        low.clone(),
        high.clone(),
        mid.clone(),
        elsewhere,
        later,
        sooner,
    ])
    .await?;
    let a = q("a");
    // Ready copies list in claim order: priority, then age.
    let ready = s
        .list_tasks(Some(&a), TaskState::Ready, page(0, 10))
        .await?;
    assert_eq!(ids(&ready), [all[1], all[2], all[0]]);
    assert!(ready.iter().all(|t| !t.data.is_empty()), "with their data");
    let second = s.list_tasks(Some(&a), TaskState::Ready, page(1, 1)).await?;
    assert_eq!(ids(&second), [all[2]]);
    assert!(s
        .list_tasks(Some(&a), TaskState::Ready, page(3, 10))
        .await?
        .is_empty());
    let every_ready = s.list_tasks(None, TaskState::Ready, page(0, 10)).await?;
    assert_eq!(every_ready.len(), 4);
    // Scheduled copies list soonest first.
    let scheduled = s
        .list_tasks(Some(&a), TaskState::Scheduled, page(0, 10))
        .await?;
    assert_eq!(ids(&scheduled), [all[5], all[4]]);
    assert!(s
        .list_tasks(Some(&q("b")), TaskState::Scheduled, page(0, 10))
        .await?
        .is_empty());
    Ok(())
}

pub async fn deep_pages_list_in_the_same_order(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    // More copies than one piece of a backend's walk, over two lanes' worth
    // of priorities, with other queues' copies interleaved.
    let mut all = Vec::new();
    for i in 0..9000u64 {
        all.push(copy(
            if i % 3 == 0 { "other" } else { "big" },
            (i % 2) as i16,
            i,
        ));
    }
    let mut expected: Vec<&Task> = all.iter().filter(|t| t.queue.as_str() == "big").collect();
    expected.sort_by_key(|t| (std::cmp::Reverse(t.priority), t.run_at, t.task_id));
    let expected: Vec<TaskId> = expected.iter().map(|t| t.task_id).collect();
    s.enqueue(all.clone()).await?;
    let big = q("big");
    for offset in [0, 4090, 4096, 5980] {
        let got = s
            .list_tasks(Some(&big), TaskState::Ready, page(offset, 20))
            .await?;
        let want: Vec<TaskId> = expected.iter().skip(offset).take(20).copied().collect();
        assert_eq!(ids(&got), want, "page at {offset}");
    }
    let everything = s.list_tasks(None, TaskState::Ready, page(8990, 50)).await?;
    assert_eq!(everything.len(), 10, "the last of 9000");
    Ok(())
}

pub async fn failed_copies_are_retried_one_or_all(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let one = into_failed(&*s, copy("a", 0, 0), "boom").await?;
    let two = into_failed(&*s, copy("a", 0, 10), "bang").await?;
    let three = into_failed(&*s, copy("b", 0, 20), "bust").await?;
    let listed = s.list_tasks(None, TaskState::Failed, page(0, 10)).await?;
    assert_eq!(ids(&listed), [one, two, three]);
    let now = T0.plus_secs(60);
    assert_eq!(s.retry_failed(RetryTarget::Task(one), now).await?, [one]);
    let back = s.task(one).await?.expect("kept");
    assert_eq!(back.state, TaskState::Ready);
    assert_eq!(back.attempt, 0, "a fresh set of attempts");
    assert_eq!(back.run_at, now);
    assert_eq!(back.fail_reason, None);
    assert_eq!(
        back.history.last().map(|e| e.event.as_str()),
        Some("retried")
    );
    // Only failed copies can be retried.
    assert!(matches!(
        s.retry_failed(RetryTarget::Task(one), now).await,
        Err(StoreError::WrongState {
            state: TaskState::Ready,
            ..
        })
    ));
    assert!(matches!(
        s.retry_failed(RetryTarget::Task(TaskId::new_publish().copy(0)), now)
            .await,
        Err(StoreError::UnknownTask(_))
    ));
    // All of one queue, then all.
    assert_eq!(
        s.retry_failed(RetryTarget::Failed(Some(q("b"))), now)
            .await?,
        [three]
    );
    assert_eq!(s.retry_failed(RetryTarget::Failed(None), now).await?, [two]);
    let counts = s.queue_counts().await?;
    assert!(counts.iter().all(|(_, c)| c.failed == 0));
    assert_eq!(s.lane_len(&Lane::Queue(q("a"))).await?, 2);
    // A retried copy is claimable again.
    let got = s.claim(WorkerId::new(), &lanes(&["b"]), now, 1).await?;
    assert_eq!(ids(&got), [three]);
    assert_eq!(got[0].attempt, 1);
    Ok(())
}

pub async fn a_failed_copy_is_retried_with_new_data_as_a_new_copy(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let failed = into_failed(&*s, copy("a", 7, 0), "bad input").await?;
    let mut replacement = copy("a", 7, 100);
    let data = json!({"fixed": true}).as_object().expect("object").clone();
    replacement.data = Arc::new(data.clone());
    let new_id = replacement.task_id;
    let now = T0.plus_secs(60);
    assert_eq!(
        s.retry_edited(failed, replacement.clone(), now).await?,
        new_id
    );
    let old = s.task(failed).await?.expect("the original is kept");
    assert_eq!(old.state, TaskState::Cancelled);
    assert!(old
        .fail_reason
        .as_deref()
        .unwrap_or("")
        .contains(&new_id.to_string()));
    let got = s.claim(WorkerId::new(), &lanes(&["a"]), now, 5).await?;
    assert_eq!(ids(&got), [new_id]);
    assert_eq!(*got[0].data, data);
    // The original can no longer be edited or retried.
    assert!(matches!(
        s.retry_edited(failed, copy("a", 0, 200), now).await,
        Err(StoreError::WrongState { .. })
    ));
    let h2 = h.reopen(s).await;
    assert_eq!(
        h2.task(failed).await?.map(|t| t.state),
        Some(TaskState::Cancelled)
    );
    assert_eq!(
        h2.task(new_id).await?.map(|t| t.state),
        Some(TaskState::Running)
    );
    Ok(())
}

pub async fn a_scheduled_copy_runs_now_when_asked(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let mut t = copy("a", 0, 0);
    t.state = TaskState::Scheduled;
    t.run_at = T0.plus_secs(3600);
    let id = t.task_id;
    s.enqueue(vec![t]).await?;
    let now = T0.plus_secs(5);
    let ready = s.run_now(id, now).await?;
    assert_eq!((ready.state, ready.run_at), (TaskState::Ready, now));
    assert!(!ready.data.is_empty());
    let got = s.claim(WorkerId::new(), &lanes(&["a"]), now, 1).await?;
    assert_eq!(ids(&got), [id]);
    assert!(matches!(
        s.run_now(id, now).await,
        Err(StoreError::WrongState {
            state: TaskState::Running,
            ..
        })
    ));
    Ok(())
}

pub async fn singular_locks_are_listed_and_can_be_broken(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let mut waiting = copy("a", 0, 0);
    waiting.singularly_enqueue = true;
    let mut running = copy("b", 0, 10);
    running.singularly_run = true;
    let run_twin = twin(&running);
    let (waiting_id, running_id, twin_id) = (waiting.task_id, running.task_id, run_twin.task_id);
    s.enqueue(vec![waiting.clone(), running, run_twin]).await?;
    let w = WorkerId::new();
    let now = T0.plus_secs(1);
    let got = s.claim(w, &lanes(&["b"]), now, 5).await?;
    assert_eq!(ids(&got), [running_id], "the twin is held back");
    let locks = s.locks().await?;
    assert_eq!(
        locks
            .iter()
            .map(|l| (l.kind, l.queue.as_str(), l.task_id, l.worker_id))
            .collect::<Vec<_>>(),
        [
            (LockKind::Enqueue, "a", waiting_id, None),
            (LockKind::Run, "b", running_id, Some(w)),
        ]
    );
    // Wrong kind or holder: nothing to break.
    assert!(!s.break_lock(waiting_id, LockKind::Run, now).await?);
    assert!(!s.break_lock(twin_id, LockKind::Run, now).await?);
    assert!(s.break_lock(running_id, LockKind::Run, now).await?);
    let got = s.claim(WorkerId::new(), &lanes(&["b"]), now, 5).await?;
    assert_eq!(
        ids(&got),
        [twin_id],
        "the twin runs once the lock is broken"
    );
    assert!(s.break_lock(waiting_id, LockKind::Enqueue, now).await?);
    let again = twin(&waiting);
    let again_id = again.task_id;
    assert_eq!(s.enqueue(vec![again]).await?, [Enqueued::Created(again_id)]);
    let holder = s.task(running_id).await?.expect("kept");
    assert_eq!(holder.state, TaskState::Running, "the holder carries on");
    let locks = s.locks().await?;
    assert!(locks
        .iter()
        .all(|l| l.task_id != running_id && l.task_id != waiting_id));
    let s = h.reopen(s).await;
    assert!(
        !s.task(running_id).await?.expect("kept").singularly_run,
        "broken for good"
    );
    Ok(())
}

pub async fn removes_one_copy_or_the_failed_set(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let waiting = copy("c", 0, 0);
    let waiting_id = waiting.task_id;
    s.enqueue(vec![waiting]).await?;
    let f1 = into_failed(&*s, copy("a", 0, 10), "x").await?;
    let f2 = into_failed(&*s, copy("b", 0, 20), "y").await?;
    assert_eq!(s.delete_tasks(TaskSelector::Task(waiting_id)).await?, 1);
    assert_eq!(s.delete_tasks(TaskSelector::Task(waiting_id)).await?, 0);
    assert_eq!(s.delete_tasks(TaskSelector::Failed(Some(q("b")))).await?, 1);
    assert!(s.task(f2).await?.is_none());
    assert_eq!(s.delete_tasks(TaskSelector::Failed(None)).await?, 1);
    assert!(s.task(f1).await?.is_none());
    assert!(s.queue_counts().await?.is_empty());
    Ok(())
}

pub async fn the_audit_log_is_kept_newest_first(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    for i in 0..5u64 {
        s.append_audit(AuditEntry {
            at: T0.plus_secs(i),
            role: "admin".into(),
            action: "retry".into(),
            target: format!("t{i}"),
            detail: (i == 4).then(|| "last".to_string()),
        })
        .await?;
    }
    let s = h.reopen(s).await;
    let (total, entries) = s.audit(page(1, 2)).await?;
    assert_eq!(total, 5);
    assert_eq!(
        entries
            .iter()
            .map(|e| e.target.as_str())
            .collect::<Vec<_>>(),
        ["t3", "t2"]
    );
    let (_, newest) = s.audit(page(0, 1)).await?;
    assert_eq!(newest[0].detail.as_deref(), Some("last"));
    Ok(())
}

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
            a_copy_keeps_the_history_of_what_happened_to_it,
            retention_keeps_failed_longer_than_finished_and_counts_per_queue,
            a_cancelled_lease_ends_cancelled_and_a_late_completion_counts,
            interests_workers_and_counters_are_kept,
            every_state_survives_a_reopen,
            listings_page_through_each_state_in_its_order,
            deep_pages_list_in_the_same_order,
            failed_copies_are_retried_one_or_all,
            a_failed_copy_is_retried_with_new_data_as_a_new_copy,
            a_scheduled_copy_runs_now_when_asked,
            singular_locks_are_listed_and_can_be_broken,
            removes_one_copy_or_the_failed_set,
            the_audit_log_is_kept_newest_first,
        );
    };
    (@cases $harness:tt; $($case:ident,)*) => {
        $(
            #[tokio::test]
            async fn $case() {
                let Some(mut harness) = $harness else {
                    return;
                };
                $crate::store::conformance::$case(&mut harness).await.expect("store error");
            }
        )*
    };
}
