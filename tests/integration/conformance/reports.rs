//! Workers' reports: who may report, heartbeats, failures and retries, re-enqueue, cancellation while running.

use super::*;

pub async fn only_the_lease_holder_finishes_a_running_copy(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let t = copy("a", 0, 0);
    let id = t.task_id;
    s.enqueue(vec![t], Counters::default()).await?;
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
    s.enqueue(vec![t], Counters::default()).await?;
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

pub async fn failures_back_off_then_land_in_the_failed_set(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let t = copy("a", 0, 0);
    let id = t.task_id;
    s.enqueue(vec![t], Counters::default()).await?;
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
            &TaskFilter::default(),
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
    s.enqueue(vec![t], Counters::default()).await?;
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

pub async fn a_cancelled_lease_ends_cancelled_and_a_late_completion_counts(
    h: &mut dyn Harness,
) -> R {
    let s = h.open().await;
    let (a, b) = (copy("a", 0, 0), copy("a", 0, 1));
    let (a_id, b_id) = (a.task_id, b.task_id);
    s.enqueue(vec![a, b], Counters::default()).await?;
    let w = WorkerId::new();
    s.claim(w, &lanes(&["a"]), T0, 2).await?;
    s.cancel(CancelTarget::Task(a_id), T0, None).await?;
    s.cancel(CancelTarget::Task(b_id.publish()), T0, None)
        .await?;
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

pub async fn a_batch_of_reports_is_one_step_each_answered_alone(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let tasks: Vec<Task> = (0..3).map(|i| copy("a", 0, i)).collect();
    let ids: Vec<TaskId> = tasks.iter().map(|t| t.task_id).collect();
    s.enqueue(tasks, Counters::default()).await?;
    let w = WorkerId::new();
    let now = T0.plus_secs(1);
    s.claim(w, &lanes(&["a"]), now, 3).await?;
    let commits = s.stats().commits;
    let answers = s
        .report(
            vec![
                WorkerReport {
                    task: ids[0],
                    worker: w,
                    what: ReportKind::Finish(complete()),
                },
                WorkerReport {
                    task: ids[1],
                    worker: WorkerId::new(),
                    what: ReportKind::Finish(complete()),
                },
                WorkerReport {
                    task: ids[1],
                    worker: w,
                    what: ReportKind::Heartbeat(Some(json!(50))),
                },
                WorkerReport {
                    task: ids[2],
                    worker: w,
                    what: ReportKind::Finish(fail()),
                },
            ],
            now,
            &NoOutputs,
        )
        .await?
        .answers;
    assert_eq!(answers.len(), 4);
    assert_eq!(answers[0].as_ref().unwrap().state, TaskState::Completed);
    assert!(matches!(answers[1], Err(StoreError::NotLeaseHolder { .. })));
    assert_eq!(answers[2].as_ref().unwrap().progress, Some(json!(50)));
    assert_eq!(answers[3].as_ref().unwrap().state, TaskState::Scheduled);
    assert!(s.stats().commits <= commits + 1, "one durable step");
    let s = h.reopen(s).await;
    assert_eq!(s.task(ids[0]).await?.unwrap().state, TaskState::Completed);
    assert_eq!(s.task(ids[1]).await?.unwrap().state, TaskState::Running);
    assert_eq!(s.task(ids[2]).await?.unwrap().state, TaskState::Scheduled);
    Ok(())
}
