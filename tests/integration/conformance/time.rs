//! The passing of time: due copies, expired leases, deadlines, retention and per-copy history.

use super::*;

pub async fn completed_history_is_bounded(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let copies: Vec<Task> = (0..HISTORY as u64 + 2).map(|i| copy("a", 0, i)).collect();
    let ids: Vec<TaskId> = copies.iter().map(|t| t.task_id).collect();
    s.enqueue(copies, Counters::default()).await?;
    let w = WorkerId::new();
    for (i, id) in ids.iter().enumerate() {
        s.claim(w, &lanes(&["a"]), T0.plus_secs(1), 1).await?;
        s.finish(*id, w, T0.plus_secs(2 + i as u64), complete())
            .await?;
    }
    assert_eq!(completed_in(&*s, "a").await?, ids[2..].to_vec());
    // Past the history: gone, or in the archive of a store that keeps one,
    // newest first.
    let archived: Vec<TaskId> = s
        .list_archived(
            &q("a"),
            TaskState::Completed,
            &TaskFilter::default(),
            None,
            10,
        )
        .await?
        .iter()
        .map(|t| t.task_id)
        .collect();
    assert!(
        archived.is_empty() || archived == [ids[1], ids[0]],
        "{archived:?}"
    );
    for id in &ids[..2] {
        let found = s.task(*id).await?.map(|t| t.state);
        let expected = (!archived.is_empty()).then_some(TaskState::Completed);
        assert_eq!(found, expected);
    }
    assert_eq!(
        s.task(ids[2]).await?.map(|t| t.state),
        Some(TaskState::Completed)
    );
    assert_eq!(s.counters().await?.completed, ids.len() as u64);
    Ok(())
}

/// The completed copies a queue keeps in the state, oldest first.
async fn completed_in(s: &dyn Store, queue: &str) -> Result<Vec<TaskId>, StoreError> {
    let page = Page {
        offset: 0,
        limit: 1000,
    };
    let listed = s
        .list_tasks(
            Some(&q(queue)),
            TaskState::Completed,
            &TaskFilter::default(),
            page,
        )
        .await?;
    Ok(listed.iter().map(|t| t.task_id).collect())
}

pub async fn scheduled_copies_become_ready_when_due(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let mut t = copy("a", 0, 0);
    t.state = TaskState::Scheduled;
    t.run_at = T0.plus_secs(60);
    s.enqueue(vec![t], Counters::default()).await?;
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
    s.enqueue(vec![t], Counters::default()).await?;
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

pub async fn waiting_copies_expire_unclaimed(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let mut soon = copy("a", 10, 0);
    soon.expire_at = Some(T0.plus_secs(10));
    let mut later = copy("a", 0, 1);
    later.expire_at = Some(T0.plus_secs(100));
    let plain = copy("a", 0, 2);
    let (soon_id, later_id) = (soon.task_id, later.task_id);
    s.enqueue(vec![soon, later, plain], Counters::default())
        .await?;
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

pub async fn a_copy_keeps_the_history_of_what_happened_to_it(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let t = copy("a", 0, 0);
    let id = t.task_id;
    s.enqueue(vec![t], Counters::default()).await?;
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
    s.enqueue(all, Counters::default()).await?;
    let w = WorkerId::new();
    for _ in &ids[..ids.len() - 1] {
        let got = s
            .claim(w, &[Lane::Queue(q("a")), Lane::Queue(q("b"))], T0, 1)
            .await?;
        s.finish(got[0].task_id, w, T0, complete()).await?;
    }
    s.claim(w, &lanes(&["f"]), T0, 1).await?;
    s.finish(doomed_id, w, T0, fail()).await?;
    // HISTORY per queue: the oldest of each of the two queues went (to
    // the archive, in a store that keeps one).
    let kept = completed_in(&*s, "a").await?;
    assert!(
        !kept.contains(&ids[0]) && kept.contains(&ids[2]),
        "{kept:?}"
    );
    let kept = completed_in(&*s, "b").await?;
    assert!(
        !kept.contains(&ids[1]) && kept.contains(&ids[3]),
        "{kept:?}"
    );
    s.tick(T0.plus_secs(8 * 86_400)).await?;
    assert!(
        completed_in(&*s, "a").await?.is_empty(),
        "finished copies leave the state after 7 days"
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
