//! The singular rules and their locks.

use super::*;

pub async fn singularly_enqueue_folds_waiting_twins(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let mut first = copy("a", 0, 0);
    first.singularly_enqueue = true;
    let twin = twin(&first);
    let mut other_queue = first.clone();
    other_queue.task_id = first.publish_id.copy(1);
    other_queue.queue = q("b");
    let first_id = first.task_id;
    let got = s
        .enqueue(vec![first, twin.clone(), other_queue], Counters::default())
        .await?;
    assert_eq!(got[0], Enqueued::Created(first_id));
    assert_eq!(got[1], Enqueued::Existing(first_id));
    assert!(matches!(got[2], Enqueued::Created(_)));
    assert_eq!(s.counters().await?.deduplicated, 1);
    // Once the first runs, a twin may wait again.
    s.claim(WorkerId::new(), &lanes(&["a"]), T0.plus_secs(1), 1)
        .await?;
    let again = s.enqueue(vec![twin.clone()], Counters::default()).await?;
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
    s.enqueue(vec![first, twin, other], Counters::default())
        .await?;
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

pub async fn replace_keeps_the_newest_waiting_twin(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let mut first = copy("a", 0, 0);
    first.singularly_enqueue = true;
    first.replace_waiting = true;
    let mut newer = twin(&first);
    newer.data = Arc::new(json!({"version": 2}).as_object().expect("object").clone());
    let (first_id, newer_id) = (first.task_id, newer.task_id);
    s.enqueue(vec![first], Counters::default()).await?;
    let got = s.enqueue(vec![newer], Counters::default()).await?;
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

pub async fn singular_locks_are_listed_and_can_be_broken(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let mut waiting = copy("a", 0, 0);
    waiting.singularly_enqueue = true;
    let mut running = copy("b", 0, 10);
    running.singularly_run = true;
    let run_twin = twin(&running);
    let (waiting_id, running_id, twin_id) = (waiting.task_id, running.task_id, run_twin.task_id);
    s.enqueue(
        vec![waiting.clone(), running, run_twin],
        Counters::default(),
    )
    .await?;
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
    assert_eq!(
        s.enqueue(vec![again], Counters::default()).await?,
        [Enqueued::Created(again_id)]
    );
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
