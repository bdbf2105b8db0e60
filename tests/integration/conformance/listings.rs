//! Listings of copies by state, and their pages.

use super::*;

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
    s.enqueue(
        vec![
            low.clone(),
            high.clone(),
            mid.clone(),
            elsewhere,
            later,
            sooner,
        ],
        Counters::default(),
    )
    .await?;
    let a = q("a");
    // Ready copies list in claim order: priority, then age.
    let ready = s
        .list_tasks(
            Some(&a),
            TaskState::Ready,
            &TaskFilter::default(),
            page(0, 10),
        )
        .await?;
    assert_eq!(ids(&ready), [all[1], all[2], all[0]]);
    assert!(ready.iter().all(|t| !t.data.is_empty()), "with their data");
    let second = s
        .list_tasks(
            Some(&a),
            TaskState::Ready,
            &TaskFilter::default(),
            page(1, 1),
        )
        .await?;
    assert_eq!(ids(&second), [all[2]]);
    assert!(s
        .list_tasks(
            Some(&a),
            TaskState::Ready,
            &TaskFilter::default(),
            page(3, 10)
        )
        .await?
        .is_empty());
    let every_ready = s
        .list_tasks(None, TaskState::Ready, &TaskFilter::default(), page(0, 10))
        .await?;
    assert_eq!(every_ready.len(), 4);
    // Scheduled copies list soonest first.
    let scheduled = s
        .list_tasks(
            Some(&a),
            TaskState::Scheduled,
            &TaskFilter::default(),
            page(0, 10),
        )
        .await?;
    assert_eq!(ids(&scheduled), [all[5], all[4]]);
    assert!(s
        .list_tasks(
            Some(&q("b")),
            TaskState::Scheduled,
            &TaskFilter::default(),
            page(0, 10)
        )
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
    s.enqueue(all.clone(), Counters::default()).await?;
    let big = q("big");
    for offset in [0, 4090, 4096, 5980] {
        let got = s
            .list_tasks(
                Some(&big),
                TaskState::Ready,
                &TaskFilter::default(),
                page(offset, 20),
            )
            .await?;
        let want: Vec<TaskId> = expected.iter().skip(offset).take(20).copied().collect();
        assert_eq!(ids(&got), want, "page at {offset}");
    }
    let everything = s
        .list_tasks(
            None,
            TaskState::Ready,
            &TaskFilter::default(),
            page(8990, 50),
        )
        .await?;
    assert_eq!(everything.len(), 10, "the last of 9000");
    Ok(())
}

fn with_data(mut t: Task, data: serde_json::Value) -> Task {
    let data = data.as_object().expect("object").clone();
    t.fingerprint = fingerprint(&data);
    t.data = Arc::new(data);
    t
}

fn data_filter(conditions: &[&str]) -> TaskFilter {
    TaskFilter {
        data: conditions
            .iter()
            .map(|c| FieldMatch::parse(c).expect("a condition"))
            .collect(),
        ..TaskFilter::default()
    }
}

pub async fn listings_filter_by_key_publisher_reason_time_and_data(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let mut keyed = with_data(
        copy("a", 0, 0),
        json!({"email": "evan@x.org", "order": {"id": 42}}),
    );
    keyed.key = Some("order-42".into());
    let mut other_key = with_data(
        copy("a", 0, 10),
        json!({"email": "eve@y.org", "order": {"id": 7}}),
    );
    other_key.key = Some("order-7".into());
    let mut by_billing = with_data(copy("a", 0, 20), json!({"email": "bob@x.org"}));
    by_billing.publisher = "billing".into();
    let elsewhere = with_data(copy("b", 0, 30), json!({"email": "evan@x.org"}));
    let ids_in = [&keyed, &other_key, &by_billing, &elsewhere].map(|t| t.task_id);
    s.enqueue(
        vec![keyed, other_key, by_billing, elsewhere],
        Counters::default(),
    )
    .await?;
    let boom = into_failed(&*s, copy("c", 0, 40), "Exit code 3: Boom").await?;
    let _bang = into_failed(&*s, copy("c", 0, 50), "timed out").await?;
    let list = |queue: Option<&'static str>, state, filter: TaskFilter| {
        let s = Arc::clone(&s);
        async move {
            let queue = queue.map(q);
            s.list_tasks(queue.as_ref(), state, &filter, page(0, 10))
                .await
                .map(|t| ids(&t))
        }
    };
    let ready = TaskState::Ready;
    let by_key = TaskFilter {
        key: Some("order-42".into()),
        ..TaskFilter::default()
    };
    assert_eq!(list(Some("a"), ready, by_key.clone()).await?, [ids_in[0]]);
    assert_eq!(list(None, ready, by_key.clone()).await?, [ids_in[0]]);
    assert!(
        list(Some("b"), ready, by_key.clone()).await?.is_empty(),
        "another queue"
    );
    assert!(
        list(None, TaskState::Failed, by_key).await?.is_empty(),
        "another state"
    );
    let billing = TaskFilter {
        publisher: Some("billing".into()),
        ..TaskFilter::default()
    };
    assert_eq!(list(None, ready, billing).await?, [ids_in[2]]);
    let reason = TaskFilter {
        reason: Some("exit CODE".into()),
        ..TaskFilter::default()
    };
    assert_eq!(list(None, TaskState::Failed, reason.clone()).await?, [boom]);
    assert!(
        list(None, ready, reason).await?.is_empty(),
        "ready copies have no reason"
    );
    let window = TaskFilter {
        since: Some(T0.plus_millis(10)),
        until: Some(T0.plus_millis(30)),
        ..TaskFilter::default()
    };
    assert_eq!(list(None, ready, window).await?, [ids_in[1], ids_in[2]]);
    assert_eq!(
        list(Some("a"), ready, data_filter(&["email=*@x.org"])).await?,
        [ids_in[0], ids_in[2]]
    );
    assert_eq!(
        list(None, ready, data_filter(&["email=evan*"])).await?,
        [ids_in[0], ids_in[3]]
    );
    assert_eq!(
        list(None, ready, data_filter(&["email=evan*", "order.id=42"])).await?,
        [ids_in[0]],
        "every condition holds"
    );
    let mut key_and_data = data_filter(&["order.id=7"]);
    key_and_data.key = Some("order-42".into());
    assert!(list(None, ready, key_and_data).await?.is_empty());
    let found = s
        .list_tasks(None, ready, &data_filter(&["order.id=4*"]), page(0, 10))
        .await?;
    assert_eq!(found[0].data["email"], "evan@x.org", "with their data");
    Ok(())
}

/// A queue's search fields answer `data` conditions as the payloads do,
/// for copies published before and after they were named and after a
/// reopen; a cursor (`after`) goes on from the copy it names.
pub async fn search_fields_answer_as_payloads_do_and_a_cursor_goes_on(h: &mut dyn Harness) -> R {
    let mut s = h.open().await;
    let made = |n: u64| {
        let email = if n.is_multiple_of(3) {
            json!(null)
        } else {
            json!(format!("user-{n}@x.org"))
        };
        with_data(
            copy("a", 0, n),
            json!({"n": n, "email": email, "order": {"id": n % 4}}),
        )
    };
    let mut all = Vec::new();
    let before: Vec<Task> = (0..10).map(made).collect();
    all.extend(before.iter().map(|t| t.task_id));
    s.enqueue(before, Counters::default()).await?;
    s.put_queue_settings(
        &q("a"),
        interq::model::QueueSettings {
            search_fields: vec!["email".into(), "order.id".into()],
            ..Default::default()
        },
    )
    .await?;
    let after: Vec<Task> = (10..20).map(made).collect();
    all.extend(after.iter().map(|t| t.task_id));
    s.enqueue(after, Counters::default()).await?;
    // The ids each search should find, by n.
    let want = |keep: &dyn Fn(u64) -> bool| -> Vec<TaskId> {
        (0..20u64)
            .filter(|&n| keep(n))
            .map(|n| all[n as usize])
            .collect()
    };
    type Search<'a> = (&'a [&'a str], &'a dyn Fn(u64) -> bool);
    let searches: [Search; 4] = [
        (&["email=user-1*"], &|n| {
            !n.is_multiple_of(3) && n.to_string().starts_with('1')
        }),
        (&["order.id=2"], &|n| n % 4 == 2),
        (&["email=*", "order.id=1"], &|n| {
            !n.is_multiple_of(3) && n % 4 == 1
        }),
        (&["n=1*"], &|n| n.to_string().starts_with('1')),
    ];
    for round in 0..2 {
        for (conditions, keep) in &searches {
            let found = s
                .list_tasks(
                    Some(&q("a")),
                    TaskState::Ready,
                    &data_filter(conditions),
                    page(0, 50),
                )
                .await?;
            assert_eq!(ids(&found), want(*keep), "{conditions:?}, round {round}");
        }
        s = h.reopen(s).await;
    }
    // A cursor: the copies after one, and after one that is gone.
    let cursor = TaskFilter {
        after: Some(all[14]),
        ..TaskFilter::default()
    };
    let next = s
        .list_tasks(Some(&q("a")), TaskState::Ready, &cursor, page(0, 3))
        .await?;
    assert_eq!(ids(&next), all[15..18]);
    s.delete_tasks(TaskSelector::Task(all[15])).await?;
    let cursor = TaskFilter {
        after: Some(all[15]),
        ..data_filter(&["order.id=*"])
    };
    let next = s
        .list_tasks(Some(&q("a")), TaskState::Ready, &cursor, page(0, 50))
        .await?;
    assert_eq!(ids(&next), all[16..20]);
    Ok(())
}

pub async fn a_filter_pages_through_more_than_a_walk_and_a_read_hold(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    // Enough copies that a filtered walk stops and goes on several times
    // (a backend reads payloads a few hundred at a time).
    let mut all = Vec::new();
    for i in 0..3000u64 {
        let queue = if i % 2 == 0 { "big" } else { "other" };
        let t = with_data(copy(queue, 0, i), json!({"n": i, "tenth": i % 10 == 0}));
        all.push(t);
    }
    let want: Vec<TaskId> = all
        .iter()
        .filter(|t| t.queue.as_str() == "big" && t.data["tenth"] == true)
        .map(|t| t.task_id)
        .collect();
    assert_eq!(want.len(), 300);
    s.enqueue(all, Counters::default()).await?;
    let filter = data_filter(&["tenth=true"]);
    let big = q("big");
    let mut got = Vec::new();
    for offset in (0..340).step_by(40) {
        let page = s
            .list_tasks(Some(&big), TaskState::Ready, &filter, page(offset, 40))
            .await?;
        got.extend(ids(&page));
    }
    assert_eq!(
        got, want,
        "pages of matches, in order, none twice or missed"
    );
    let late = TaskFilter {
        since: Some(T0.plus_millis(2990)),
        ..TaskFilter::default()
    };
    let last = s
        .list_tasks(None, TaskState::Ready, &late, page(3, 100))
        .await?;
    assert_eq!(last.len(), 7, "the last ten, past three skipped");
    Ok(())
}

pub async fn failed_copies_are_grouped_by_the_first_line_of_their_reason(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    assert!(s.failed_reasons(None).await?.is_empty());
    into_failed(&*s, copy("a", 0, 0), "exit code 3\nTraceback: one").await?;
    into_failed(&*s, copy("a", 0, 10), "exit code 3\nTraceback: two").await?;
    into_failed(&*s, copy("b", 0, 20), "exit code 3").await?;
    into_failed(&*s, copy("b", 0, 30), "timed out").await?;
    let all = s.failed_reasons(None).await?;
    assert_eq!(
        all,
        [("exit code 3".to_owned(), 3), ("timed out".to_owned(), 1)]
    );
    let of_b = s.failed_reasons(Some(&q("b"))).await?;
    assert_eq!(
        of_b,
        [("exit code 3".to_owned(), 1), ("timed out".to_owned(), 1)],
        "equal counts in the reason's order"
    );
    Ok(())
}
