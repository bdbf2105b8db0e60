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
    s.enqueue(all.clone(), Counters::default()).await?;
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
