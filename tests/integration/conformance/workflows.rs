//! Workflows: a completed copy's output made a new publish in the same
//! step as the copy's end, with its parent and depth kept; the depth limit.

use interest::{Interests, Limits, Router};
use interq::broker::{Defaults, OutputRouter};
use interq::store::Outputs;

use super::*;

/// Routes outputs through these interests, as the broker would.
fn router(queues: &[(&str, serde_json::Value)], max_depth: u32) -> OutputRouter {
    let parsed = queues.iter().map(|(name, value)| {
        let interests = Interests::parse(name, value, &Limits::default()).expect("interests");
        (Arc::<str>::from(*name), interests)
    });
    let routes = Router::build(parsed.collect::<Vec<_>>()).expect("a router");
    OutputRouter::new(
        Arc::new(routes),
        Defaults {
            max_attempts: 3,
            ttr_secs: 30,
        },
        max_depth,
    )
}

fn completing(task: TaskId, worker: WorkerId, output: serde_json::Value) -> WorkerReport {
    WorkerReport {
        task,
        worker,
        what: ReportKind::Finish(Outcome::Complete {
            re_enqueue: false,
            output: Some(output),
        }),
    }
}

/// Lets the leases of `queue`'s copies run out from `now` until their last
/// attempt (3) has: each claimed again after its lease ends, then failed.
async fn run_out_of_attempts(s: &dyn Store, w: WorkerId, queue: &str, now: Millis) -> R {
    let mut at = now;
    for _ in 0..3 {
        at = at.plus_secs(3_600);
        s.tick(at).await?;
        s.claim(w, &lanes(&[queue]), at, 5).await?;
    }
    s.tick(at.plus_secs(3_600)).await?;
    Ok(())
}

/// Claims `t` (enqueued first) and completes it with `output`.
async fn run(
    s: &dyn Store,
    t: Task,
    output: serde_json::Value,
    outputs: &dyn Outputs,
) -> Result<interq::store::Reported, StoreError> {
    let queue = t.queue.to_string();
    let id = t.task_id;
    s.enqueue(vec![t], Counters::default()).await?;
    let w = WorkerId::new();
    let got = s.claim(w, &lanes(&[&queue]), T0.plus_secs(1), 1).await?;
    assert_eq!(ids(&got), [id]);
    s.report(vec![completing(id, w, output)], T0.plus_secs(2), outputs)
        .await
}

pub async fn an_output_becomes_a_publish_in_the_step_that_completes_its_copy(
    h: &mut dyn Harness,
) -> R {
    let s = h.open().await;
    let outputs = router(
        &[
            ("one", json!({"stage": "^one$"})),
            ("two", json!({"stage": "^two$"})),
            ("also", json!({"stage": "^two$", "urgent": "yes"})),
        ],
        8,
    );
    let mut t = copy("one", 5, 0);
    t.publish_output = true;
    let parent = t.task_id;
    let reported = run(&*s, t, json!({"stage": "two", "n": 7}), &outputs).await?;
    assert_eq!(reported.answers.len(), 1);
    assert_eq!(
        reported.answers[0].as_ref().map(|t| t.state).ok(),
        Some(TaskState::Completed)
    );
    let mut made: Vec<(String, Option<TaskId>, u32)> = reported
        .spawned
        .iter()
        .map(|c| (c.queue.to_string(), c.parent, c.depth))
        .collect();
    made.sort();
    assert_eq!(
        made,
        [
            ("also".to_owned(), Some(parent), 1),
            ("two".to_owned(), Some(parent), 1)
        ]
    );
    let counters = s.counters().await?;
    // The parent's copy was enqueued uncounted as a publish; the output
    // counts as one publish of two routed copies.
    assert_eq!(
        (counters.published, counters.routed, counters.completed),
        (1, 3, 1),
    );
    // What a new process sees: the copies, ready, with their payload, their
    // parent and what they carry on; the parent names them.
    let s = h.reopen(s).await;
    let children = s.children(parent).await?;
    assert_eq!(children.len(), 2);
    for c in &children {
        assert_eq!(c.state, TaskState::Ready);
        assert_eq!(c.parent, Some(parent));
        assert_eq!(c.depth, 1);
        assert!(c.publish_output, "a publish's option goes on");
        assert_eq!(c.priority, Priority(5));
        assert_eq!(
            *c.data,
            *json!({"stage": "two", "n": 7}).as_object().unwrap()
        );
    }
    assert_eq!(s.lane_len(&Lane::Queue(q("two"))).await?, 1);
    let w = WorkerId::new();
    let got = s.claim(w, &lanes(&["two"]), T0.plus_secs(3), 1).await?;
    assert_eq!(got[0].parent, Some(parent));
    Ok(())
}

pub async fn a_queue_publishes_its_outputs_and_the_depth_limit_ends_a_loop(
    h: &mut dyn Harness,
) -> R {
    let s = h.open().await;
    let outputs = router(&[("loop", json!({"n": ".*"}))], 2);
    s.put_queue_settings(
        &q("loop"),
        QueueSettings {
            publish_output: true,
            ..QueueSettings::default()
        },
    )
    .await?;
    let first = run(&*s, copy("loop", 0, 0), json!({"n": "1"}), &outputs).await?;
    assert_eq!(first.spawned.len(), 1);
    assert!(
        !first.spawned[0].publish_output,
        "a queue's setting is its own"
    );
    let w = WorkerId::new();
    let mut depths = Vec::new();
    let mut last = None;
    for at in 3..6 {
        let now = T0.plus_secs(at);
        let Some(t) = s.claim(w, &lanes(&["loop"]), now, 1).await?.pop() else {
            break;
        };
        depths.push(t.depth);
        let reported = s
            .report(
                vec![completing(t.task_id, w, json!({"n": "x"}))],
                now,
                &outputs,
            )
            .await?;
        last = reported.answers.into_iter().next().transpose()?;
    }
    assert_eq!(depths, [1, 2], "the copy at depth 2 made nothing deeper");
    let last = last.expect("a last answer");
    assert_eq!(
        last.state,
        TaskState::Failed,
        "for good, though attempts remain"
    );
    assert!(last.attempt < last.max_attempts);
    let reason = last.fail_reason.unwrap_or_default();
    assert!(reason.contains("past the limit of 2"), "{reason}");
    assert_eq!(s.lane_len(&Lane::Queue(q("loop"))).await?, 0);
    assert!(s.children(last.task_id).await?.is_empty());
    // An output that is not an object, and one no queue wants.
    let plain = run(&*s, copy("loop", 0, 9), json!("text"), &outputs).await?;
    assert!(plain.spawned.is_empty());
    let before = s.counters().await?;
    let nobody = router(&[], 2);
    let unwanted = run(&*s, copy("loop", 0, 10), json!({"n": "1"}), &nobody).await?;
    assert!(unwanted.spawned.is_empty());
    let after = s.counters().await?;
    assert_eq!(after.published, before.published + 1);
    assert_eq!(after.discarded, before.discarded + 1);
    Ok(())
}

fn batch_of(id: &str, more: bool) -> BatchRecord {
    BatchRecord {
        id: id.into(),
        created_at: T0,
        totals: BatchTotals::default(),
        open_for_more: more,
        on_complete: Some(NewTask {
            data: json!({"done": id}).as_object().unwrap().clone(),
            ..NewTask::default()
        }),
        ended_at: None,
        callback: None,
    }
}

fn in_batch(queue: &str, at_ms: u64, batch: &str) -> Task {
    Task {
        batch: Some(batch.into()),
        ..copy(queue, 0, at_ms)
    }
}

pub async fn a_batch_counts_its_copies_through_every_end_and_owes_one_callback(
    h: &mut dyn Harness,
) -> R {
    let s = h.open().await;
    let tasks: Vec<Task> = (0..5).map(|i| in_batch("b", i, "nightly")).collect();
    let ids = ids(&tasks);
    s.open_batch(batch_of("nightly", false), tasks, Counters::default())
        .await?;
    let b = s.batch("nightly").await?.expect("the batch");
    assert_eq!((b.totals.ready, b.totals.copies()), (5, 5));
    assert!(!b.has_ended() && s.due_batches().await?.is_empty());
    // One completes, one fails for good, one is cancelled while waiting,
    // one is removed, one expires its lease on its last attempt.
    let w = WorkerId::new();
    let now = T0.plus_secs(1);
    let claimed = s.claim(w, &lanes(&["b"]), now, 5).await?;
    assert_eq!(claimed.len(), 5);
    assert_eq!(s.batch("nightly").await?.unwrap().totals.running, 5);
    s.finish(ids[0], w, now, complete()).await?;
    s.finish(
        ids[1],
        w,
        now,
        Outcome::Fail {
            reason: Some("no".into()),
            re_enqueue: false,
            retry: NO_JITTER,
        },
    )
    .await?;
    // Put back, so that it can be cancelled while waiting.
    s.finish(
        ids[2],
        w,
        now,
        Outcome::Complete {
            re_enqueue: true,
            output: None,
        },
    )
    .await?;
    s.cancel(CancelTarget::Task(ids[2]), now, None).await?;
    s.delete_tasks(TaskSelector::Task(ids[3])).await?;
    let b = s.batch("nightly").await?.unwrap();
    assert_eq!(
        (
            b.totals.completed,
            b.totals.cancelled,
            b.totals.removed,
            b.totals.running
        ),
        (1, 1, 1, 1),
        "{b:?}"
    );
    // The failure retries later: the copy is scheduled, still open.
    assert_eq!(b.totals.scheduled, 1);
    let b = s.batch("nightly").await?.unwrap();
    assert!(!b.has_ended());
    // The last running copy's lease runs out on its last attempt (ttr 30 s,
    // 3 attempts: run it twice more).
    run_out_of_attempts(&*s, w, "b", now).await?;
    let b = s.batch("nightly").await?.unwrap();
    assert_eq!(b.totals.open(), 0, "{b:?}");
    assert_eq!(b.totals.copies(), 5, "every copy counted once: {b:?}");
    assert!(b.has_ended() && b.callback_due());
    assert_eq!(
        s.due_batches()
            .await?
            .iter()
            .map(|b| b.id.as_str())
            .collect::<Vec<_>>(),
        ["nightly"]
    );
    // What is owed survives a restart.
    let s = h.reopen(s).await;
    assert_eq!(s.due_batches().await?.len(), 1);
    // The callback, once: a second firing (another node, a later tick)
    // publishes nothing.
    let publish = TaskId::new_publish();
    let callback = Task {
        task_id: publish.copy(0),
        publish_id: publish,
        ..copy("done", 0, 0)
    };
    let fired = s
        .fire_batch("nightly", publish, vec![callback.clone()])
        .await?;
    assert_eq!(fired.map(|e| e.len()), Some(1));
    let again = TaskId::new_publish();
    let twice = Task {
        task_id: again.copy(0),
        publish_id: again,
        ..callback
    };
    assert!(s.fire_batch("nightly", again, vec![twice]).await?.is_none());
    assert_eq!(s.lane_len(&Lane::Queue(q("done"))).await?, 1);
    let s = h.reopen(s).await;
    let b = s.batch("nightly").await?.unwrap();
    assert_eq!(b.callback, Some(publish));
    assert!(s.due_batches().await?.is_empty());
    Ok(())
}

pub async fn a_batch_open_for_more_ends_only_once_closed(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let first = in_batch("b", 0, "growing");
    let id = first.task_id;
    s.open_batch(batch_of("growing", true), vec![first], Counters::default())
        .await?;
    let w = WorkerId::new();
    s.claim(w, &lanes(&["b"]), T0.plus_secs(1), 1).await?;
    s.finish(id, w, T0.plus_secs(1), complete()).await?;
    // Every copy so far ended, but more may come: nothing is owed.
    assert!(s.due_batches().await?.is_empty());
    let more = in_batch("b", 2, "growing");
    s.open_batch(batch_of("growing", false), vec![more], Counters::default())
        .await?;
    let b = s.batch("growing").await?.unwrap();
    assert_eq!(
        (b.totals.completed, b.totals.ready, b.open_for_more),
        (1, 1, false)
    );
    // Closed: it takes no more.
    let late = s
        .open_batch(
            batch_of("growing", false),
            vec![in_batch("b", 3, "growing")],
            Counters::default(),
        )
        .await;
    assert!(matches!(late, Err(StoreError::BatchClosed(_))), "{late:?}");
    assert_eq!(
        s.lane_len(&Lane::Queue(q("b"))).await?,
        1,
        "the refused copy was not made"
    );
    // A batch that makes no copy ends at once.
    s.open_batch(batch_of("empty", false), Vec::new(), Counters::default())
        .await?;
    assert_eq!(
        s.due_batches()
            .await?
            .iter()
            .map(|b| b.id.as_str())
            .collect::<Vec<_>>(),
        ["empty"]
    );
    Ok(())
}

fn depending(queue: &str, at_ms: u64, on: &[TaskId], run_anyway: bool) -> Task {
    Task {
        depends_on: on.iter().map(|&id| Dependency::Task(id)).collect(),
        run_if_dependency_failed: run_anyway,
        ..copy(queue, 0, at_ms)
    }
}

pub async fn dependants_wait_are_released_or_cancelled_and_relinked_after_a_reopen(
    h: &mut dyn Harness,
) -> R {
    let s = h.open().await;
    let (a, b) = (copy("a", 0, 0), copy("a", 0, 1));
    let (a_id, b_id) = (a.task_id, b.task_id);
    s.enqueue(vec![a, b], Counters::default()).await?;
    let both = depending("c", 2, &[a_id, b_id], false);
    let after_b = depending("c", 3, &[b_id], false);
    let anyway = depending("c", 4, &[b_id], true);
    let ids = ids(&[both.clone(), after_b.clone(), anyway.clone()]);
    s.enqueue(vec![both, after_b, anyway], Counters::default())
        .await?;
    for id in &ids {
        assert_eq!(s.task(*id).await?.unwrap().state, TaskState::Blocked);
    }
    assert!(s
        .claim(WorkerId::new(), &lanes(&["c"]), T0, 3)
        .await?
        .is_empty());
    let unknown = s
        .enqueue(
            vec![depending("c", 5, &[TaskId::new_publish()], false)],
            Counters::default(),
        )
        .await;
    assert!(
        matches!(unknown, Err(StoreError::UnknownDependency(_))),
        "{unknown:?}"
    );
    // What they wait for is read back whole after a restart.
    let s = h.reopen(s).await;
    let w = WorkerId::new();
    let now = T0.plus_secs(1);
    s.claim(w, &lanes(&["a"]), now, 2).await?;
    s.finish(a_id, w, now, complete()).await?;
    assert_eq!(s.task(ids[0]).await?.unwrap().state, TaskState::Blocked);
    // b fails for good (its last attempt runs out): the one that waits for
    // both, and the one after b, are cancelled; the one that runs anyway is
    // released.
    run_out_of_attempts(&*s, w, "a", now).await?;
    assert_eq!(s.task(b_id).await?.unwrap().state, TaskState::Failed);
    let states: Vec<TaskState> = {
        let mut v = Vec::new();
        for id in &ids {
            v.push(s.task(*id).await?.unwrap().state);
        }
        v
    };
    assert_eq!(
        states,
        [TaskState::Cancelled, TaskState::Cancelled, TaskState::Ready]
    );
    let s = h.reopen(s).await;
    assert_eq!(s.lane_len(&Lane::Queue(q("c"))).await?, 1);
    assert_eq!(ids_of(&s.dependants(b_id).await?), {
        let mut v = ids[..].to_vec();
        v.sort();
        v
    });
    Ok(())
}

fn ids_of(tasks: &[Task]) -> Vec<TaskId> {
    let mut v = ids(tasks);
    v.sort();
    v
}
