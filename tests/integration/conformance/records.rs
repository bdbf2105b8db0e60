//! What is kept beside the copies, and that everything survives a reopen.

use super::*;

pub async fn lineage_and_counts(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let a = copy("a", 0, 0);
    let mut b = copy("b", 0, 0);
    b.publish_id = a.publish_id;
    b.task_id = a.publish_id.copy(1);
    let publish = a.publish_id;
    s.enqueue(vec![a, b, copy("b", 0, 1)], Counters::default())
        .await?;
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
    s.enqueue(vec![a, b], Counters::default()).await?;
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
        weights: vec![3, 1],
        registered_at: T0,
        owner: Some("mailer".into()),
        seen_at: None,
    };
    let gone = WorkerRecord {
        worker_id: WorkerId::new(),
        ..w.clone()
    };
    s.put_worker(&w).await?;
    s.put_worker(&gone).await?;
    assert!(s.delete_worker(gone.worker_id).await?);
    assert!(!s.delete_worker(gone.worker_id).await?);
    // A sighting is noted in a registered worker's record, and in no
    // removed one's (it would come back).
    assert!(s.worker_seen(w.worker_id, T0.plus_secs(5)).await?);
    assert!(!s.worker_seen(gone.worker_id, T0.plus_secs(5)).await?);
    let w = WorkerRecord {
        seen_at: Some(T0.plus_secs(5)),
        ..w
    };
    // Publishes are counted in the same step as the copies they made.
    s.enqueue(
        Vec::new(),
        Counters {
            discarded: 2,
            published: 4,
            ..Counters::default()
        },
    )
    .await?;
    s.enqueue(
        vec![copy("a", 0, 0)],
        Counters {
            published: 1,
            ..Counters::default()
        },
    )
    .await?;
    // Several at once, in one step: a replaced one and new ones.
    let many = [
        (q("a"), json!({"h": "z"})),
        (q("c"), json!("*")),
        (q("d"), json!({"i": {"prefix": "v"}})),
    ];
    s.put_many_interests(&many).await?;
    let s = h.reopen(s).await;
    let mut kept = s.interests().await?;
    kept.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(kept, many);
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
    s.enqueue(
        vec![scheduled, dedupe.clone(), running, failing],
        Counters::default(),
    )
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
        s.enqueue(vec![twin(&dedupe)], Counters::default()).await?,
        [Enqueued::Existing(ids[1])]
    );
    let tick = s.tick(T0.plus_secs(2_000_000)).await?;
    assert_eq!(tick.woken, lanes(&["a", "r"]));
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

pub async fn samples_are_kept_once_per_time_and_thinned_with_age(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let totals = |n: u64| Counters {
        published: n,
        ..Counters::default()
    };
    // A day and a half of samples, every 5 s for its last two hours and
    // every 30 s before (a node that sampled less often).
    let start = Millis(T0.0 - T0.0 % 60_000);
    let end = start.plus_secs(36 * 3600);
    let mut at = start;
    while at <= end {
        assert!(s.put_sample(at, totals(at.since(start) / 1000)).await?);
        let step = if end.since(at) <= 2 * 3600 * 1000 {
            5
        } else {
            30
        };
        at = at.plus_secs(step);
    }
    // Another node sampled the same time: it is kept once, as first stored.
    assert!(!s.put_sample(end, totals(0)).await?);
    let s = h.reopen(s).await;
    let kept = s.samples(Millis(0)).await?;
    let last = kept.last().expect("samples");
    assert_eq!((last.0, last.1.published), (end, 36 * 3600));
    let hour_ago = Millis(end.0 - 3_600_000);
    let day_ago = Millis(end.0 - 86_400_000);
    assert!(kept.iter().all(|(t, _)| *t >= day_ago), "a day at most");
    assert_eq!(
        kept.iter().filter(|(t, _)| *t >= hour_ago).count(),
        721,
        "every 5 s for an hour"
    );
    assert!(
        kept.iter()
            .filter(|(t, _)| *t < hour_ago)
            .all(|(t, _)| t.0 % 60_000 == 0),
        "one a minute before"
    );
    assert_eq!(kept.iter().filter(|(t, _)| *t < hour_ago).count(), 23 * 60);
    assert_eq!(s.samples(hour_ago).await?.len(), 721);
    Ok(())
}

pub async fn the_publish_log_replays_each_publish_once_into_a_queue(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let record = |t: &Task, queues: &[&str]| PublishRecord {
        publish_id: t.publish_id,
        at: t.created_at,
        task: NewTask {
            publisher: "conformance".into(),
            ..NewTask::default()
        },
        queues: queues.iter().map(|n| q(n)).collect(),
        copies: queues.len() as u16,
        bytes: 0,
    };
    let routed = copy("a", 0, 0);
    let discarded = copy("nowhere", 0, 1);
    let payload = serde_json::to_vec(&*discarded.data).unwrap();
    let log = vec![
        (record(&routed, &["a"]), None),
        (record(&discarded, &[]), Some(payload)),
    ];
    s.enqueue_logged(vec![routed.clone()], Counters::default(), log, T0)
        .await?;
    let s = h.reopen(s).await;
    let logged = s.recent_publishes(T0, None, 10).await?;
    assert_eq!(logged.len(), 2);
    assert_eq!(
        *logged[1].1, *discarded.data,
        "a discarded publish keeps its data"
    );
    // Replays into b: each publish once, by its next copy index.
    let replayed = |t: &Task, index: u16| {
        let mut c = t.clone();
        c.task_id = t.publish_id.copy(index);
        c.queue = q("b");
        c
    };
    let copies = vec![
        (routed.publish_id, replayed(&routed, 1)),
        (discarded.publish_id, replayed(&discarded, 0)),
    ];
    assert_eq!(s.replay(&q("b"), copies.clone()).await?.len(), 2);
    assert_eq!(s.replay(&q("b"), copies).await?.len(), 0, "never twice");
    let s = h.reopen(s).await;
    let logged = s.recent_publishes(T0, None, 10).await?;
    assert_eq!(logged[0].0.queues, [q("a"), q("b")]);
    assert_eq!(logged[1].0.copies, 1);
    assert_eq!(
        s.queue_counts()
            .await?
            .iter()
            .find(|(n, _)| *n == q("b"))
            .map(|(_, c)| c.ready),
        Some(2)
    );
    // Past the log's age it is gone; copies keep their own payloads.
    s.tick(T0.plus_secs(3600)).await?;
    assert!(s.recent_publishes(Millis(0), None, 10).await?.is_empty());
    let b = s
        .list_tasks(
            Some(&q("b")),
            TaskState::Ready,
            &TaskFilter::default(),
            page(0, 10),
        )
        .await?;
    assert_eq!(b.len(), 2, "the replayed copies are read with their data");
    Ok(())
}
