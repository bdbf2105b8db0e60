//! Claims: order, lanes, leases and the queues' limits.

use super::*;

pub async fn claims_by_priority_then_age(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let low_old = copy("a", 0, 1);
    let high_new = copy("a", 10, 3);
    let low_new = copy("a", 0, 2);
    let ids = [high_new.task_id, low_old.task_id, low_new.task_id];
    s.enqueue(vec![low_old, high_new, low_new], Counters::default())
        .await?;
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
    s.enqueue(vec![a, b, own], Counters::default()).await?;
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
    s.enqueue(vec![theirs], Counters::default()).await?;
    assert!(s.claim(w, &order, T0.plus_secs(1), 2).await?.is_empty());
    Ok(())
}

pub async fn a_claim_is_a_lease_that_counts_an_attempt(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let t = copy("a", 0, 0);
    let id = t.task_id;
    s.enqueue(vec![t], Counters::default()).await?;
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

pub async fn claims_obey_queue_limits_which_persist(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let copies: Vec<Task> = (0..6).map(|i| copy("a", 0, i)).collect();
    s.enqueue(copies, Counters::default()).await?;
    let w = WorkerId::new();
    let paused = QueueSettings {
        paused: true,
        ..QueueSettings::default()
    };
    s.put_queue_settings(&q("a"), paused.clone()).await?;
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

/// A publish whose caller stops waiting once its change is staged (a client
/// that hung up, a timeout) still lands: its copy is offered to a claim on
/// this store, and is in a store opened afterwards.
pub async fn a_publish_whose_caller_stopped_waiting_is_still_offered(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let t = copy("a", 0, 1);
    let id = t.task_id;
    // Polled once: the change is computed and staged, then dropped while
    // its write is under way (or already answered, on a store that writes
    // at once).
    let dropped =
        tokio::time::timeout(Duration::ZERO, s.enqueue(vec![t], Counters::default())).await;
    if let Ok(answer) = dropped {
        answer?;
    }
    // Every change before this one is durable once it is.
    s.flush().await?;
    let w = WorkerId::new();
    let got = s.claim(w, &lanes(&["a"]), T0.plus_secs(1), 10).await?;
    assert_eq!(ids(&got), vec![id], "the copy is offered here");
    let again = h.reopen(s).await;
    let task = again.task(id).await?.expect("the copy is kept");
    assert_eq!(task.state, TaskState::Running);
    Ok(())
}
