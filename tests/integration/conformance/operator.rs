//! What callers and operators do to copies: release a worker, delete, cancel by key, retry failed ones, run now.

use super::*;

pub async fn releasing_a_worker_returns_its_copies(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let t = copy("a", 0, 0);
    let id = t.task_id;
    s.enqueue(vec![t], Counters::default()).await?;
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
    s.enqueue(
        vec![copy("a", 0, 0), copy("a", 0, 1), own, running, keep],
        Counters::default(),
    )
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
    s.enqueue(
        vec![waiting, scheduled, running, other],
        Counters::default(),
    )
    .await?;
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
        .cancel(CancelTarget::Key("build-1".into()), T0.plus_secs(2), None)
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
        .cancel(CancelTarget::Key("build-1".into()), T0.plus_secs(5), None)
        .await?;
    assert_eq!((again.cancelled.len(), again.untouched.len()), (0, 3));
    assert_eq!(
        s.cancel(CancelTarget::Key("nobody".into()), T0, None)
            .await?,
        Default::default()
    );
    Ok(())
}

pub async fn failed_copies_are_retried_one_or_all(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let one = into_failed(&*s, copy("a", 0, 0), "boom").await?;
    let two = into_failed(&*s, copy("a", 0, 10), "bang").await?;
    let three = into_failed(&*s, copy("b", 0, 20), "bust").await?;
    let listed = s
        .list_tasks(None, TaskState::Failed, &TaskFilter::default(), page(0, 10))
        .await?;
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
    s.enqueue(vec![t], Counters::default()).await?;
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

pub async fn removes_one_copy_or_the_failed_set(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let waiting = copy("c", 0, 0);
    let waiting_id = waiting.task_id;
    s.enqueue(vec![waiting], Counters::default()).await?;
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
