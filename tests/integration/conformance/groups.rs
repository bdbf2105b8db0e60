//! Fairness groups: claims take turns between a queue's groups (weighted,
//! or by priority first where the queue is strict), and a queue's limits per
//! group hold, across a reopen.

use std::collections::BTreeMap;

use super::*;
use interq::model::GroupSettings;

/// A ready copy of `group` (ungrouped when `None`) in `queue`.
fn grouped(queue: &str, group: Option<&str>, priority: i16, at_ms: u64) -> Task {
    Task {
        group: group.map(str::to_owned),
        ..copy(queue, priority, at_ms)
    }
}

/// Claims one copy at a time, `n` times, and says whose each was.
async fn turns(
    s: &dyn Store,
    queue: &str,
    n: usize,
    now: Millis,
) -> Result<Vec<String>, StoreError> {
    let w = WorkerId::new();
    let mut out = Vec::new();
    for _ in 0..n {
        let got = s.claim(w, &lanes(&[queue]), now, 1).await?;
        match got.first() {
            Some(t) => out.push(t.group.clone().unwrap_or_default()),
            None => out.push("-".into()),
        }
    }
    Ok(out)
}

fn settings(change: impl FnOnce(&mut QueueSettings)) -> QueueSettings {
    let mut s = QueueSettings::default();
    change(&mut s);
    s
}

pub async fn claims_take_turns_between_groups(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    // A backlog published first, then one quiet copy and two ungrouped.
    let mut copies: Vec<Task> = (0..50).map(|i| grouped("a", Some("noisy"), 0, i)).collect();
    copies.push(grouped("a", Some("quiet"), 0, 100));
    copies.push(grouped("a", None, 0, 200));
    copies.push(grouped("a", None, 0, 201));
    s.enqueue(copies, Counters::default()).await?;
    let got = turns(&*s, "a", 6, T0.plus_secs(1)).await?;
    // Each group, the ungrouped as one, has a turn before any has two.
    let mut first_three = got[..3].to_vec();
    first_three.sort();
    assert_eq!(first_three, ["", "noisy", "quiet"], "{got:?}");
    assert_eq!(got[3..], ["", "noisy", "noisy"], "{got:?}");
    // Within a group, priority then age, as in a queue without groups.
    let mut more = grouped("a", Some("noisy"), 5, 300);
    more.data = Arc::new(json!({"urgent": true}).as_object().unwrap().clone());
    s.enqueue(vec![more.clone()], Counters::default()).await?;
    let w = WorkerId::new();
    let next = s.claim(w, &lanes(&["a"]), T0.plus_secs(1), 1).await?;
    assert_eq!(ids(&next), [more.task_id]);
    // The group and the turns survive a reopen.
    let s = h.reopen(s).await;
    let next = s.claim(w, &lanes(&["a"]), T0.plus_secs(1), 1).await?;
    assert_eq!(next[0].group.as_deref(), Some("noisy"));
    Ok(())
}

pub async fn weights_share_turns_and_a_claim_of_many_takes_turns_too(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let mut copies: Vec<Task> = (0..40).map(|i| grouped("a", Some("big"), 0, i)).collect();
    copies.extend((0..40).map(|i| grouped("a", Some("small"), 0, i)));
    s.enqueue(copies, Counters::default()).await?;
    let mut own = BTreeMap::new();
    own.insert(
        "big".to_owned(),
        GroupSettings {
            weight: Some(3),
            ..GroupSettings::default()
        },
    );
    s.put_queue_settings(&q("a"), settings(|s| s.groups = own))
        .await?;
    let got = turns(&*s, "a", 20, T0.plus_secs(1)).await?;
    let big = got.iter().filter(|g| *g == "big").count();
    assert_eq!(big, 15, "three turns to one: {got:?}");
    // One claim of eight takes the same turns as eight claims of one.
    let many = s
        .claim(WorkerId::new(), &lanes(&["a"]), T0.plus_secs(1), 8)
        .await?;
    let big = many
        .iter()
        .filter(|t| t.group.as_deref() == Some("big"))
        .count();
    assert_eq!((many.len(), big), (8, 6), "{:?}", ids(&many));
    Ok(())
}

pub async fn strict_priority_goes_across_groups(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let mut copies: Vec<Task> = (0..4).map(|i| grouped("a", Some("low"), 0, i)).collect();
    copies.extend((0..4).map(|i| grouped("a", Some("high"), 10, 10 + i)));
    s.enqueue(copies, Counters::default()).await?;
    let got = turns(&*s, "a", 2, T0.plus_secs(1)).await?;
    let mut sorted = got.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["high", "low"],
        "turns whatever the priority: {got:?}"
    );
    s.put_queue_settings(&q("a"), settings(|s| s.strict_priority = true))
        .await?;
    let got = turns(&*s, "a", 5, T0.plus_secs(1)).await?;
    assert_eq!(
        got,
        ["high", "high", "high", "low", "low"],
        "strict: {got:?}"
    );
    Ok(())
}

pub async fn a_group_limit_holds_running_copies_and_frees_on_finish(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let mut copies: Vec<Task> = (0..5).map(|i| grouped("a", Some("t1"), 0, i)).collect();
    copies.extend((0..5).map(|i| grouped("a", Some("vip"), 0, 10 + i)));
    copies.push(grouped("a", Some("t2"), 0, 20));
    copies.push(grouped("a", None, 0, 30));
    s.enqueue(copies, Counters::default()).await?;
    let mut own = BTreeMap::new();
    own.insert(
        "vip".to_owned(),
        GroupSettings {
            max_running: Some(3),
            ..GroupSettings::default()
        },
    );
    s.put_queue_settings(
        &q("a"),
        settings(|s| {
            s.group_max_running = Some(2);
            s.groups = own;
        }),
    )
    .await?;
    let w = WorkerId::new();
    let now = T0.plus_secs(1);
    let got = s.claim(w, &lanes(&["a"]), now, 20).await?;
    let of =
        |tasks: &[Task], g: Option<&str>| tasks.iter().filter(|t| t.group.as_deref() == g).count();
    // Two of t1, three of vip (its own limit), t2's one; the ungrouped are
    // not limited.
    assert_eq!(
        (
            of(&got, Some("t1")),
            of(&got, Some("vip")),
            of(&got, Some("t2")),
            of(&got, None)
        ),
        (2, 3, 1, 1),
        "{got:?}"
    );
    assert!(s.claim(w, &lanes(&["a"]), now, 20).await?.is_empty());
    let status = s.groups(&q("a"), 10).await?;
    assert_eq!(status.total, 3);
    let t1 = status.groups.iter().find(|g| g.group == "t1").unwrap();
    assert_eq!(
        (t1.ready, t1.running, t1.held.as_deref()),
        (3, 2, Some("maxRunning"))
    );
    assert_eq!(status.groups[0].group, "t1", "the most ready first");
    // Still held after a reopen: the running copies are the count.
    let s = h.reopen(s).await;
    assert!(s.claim(w, &lanes(&["a"]), now, 20).await?.is_empty());
    let first_t1 = got
        .iter()
        .find(|t| t.group.as_deref() == Some("t1"))
        .unwrap();
    s.finish(first_t1.task_id, w, now, complete()).await?;
    let next = s.claim(w, &lanes(&["a"]), now, 20).await?;
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].group.as_deref(), Some("t1"));
    // Raising the limit frees the held at once.
    s.put_queue_settings(&q("a"), settings(|s| s.group_max_running = Some(4)))
        .await?;
    let next = s.claim(w, &lanes(&["a"]), now, 20).await?;
    assert_eq!(of(&next, Some("t1")), 2, "t1 had 2 running of 4");
    assert_eq!(of(&next, Some("vip")), 1, "vip's own limit is gone: 4 now");
    Ok(())
}

pub async fn a_group_limit_of_one_runs_each_group_in_order(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let copies: Vec<Task> = (0..3)
        .flat_map(|i| [grouped("a", Some("x"), 0, i), grouped("a", Some("y"), 0, i)])
        .collect();
    let order: Vec<TaskId> = copies.iter().map(|t| t.task_id).collect();
    s.enqueue(copies, Counters::default()).await?;
    s.put_queue_settings(&q("a"), settings(|s| s.group_max_running = Some(1)))
        .await?;
    let w = WorkerId::new();
    let now = T0.plus_secs(1);
    let mut done = Vec::new();
    for _ in 0..3 {
        let got = s.claim(w, &lanes(&["a"]), now, 10).await?;
        assert_eq!(got.len(), 2, "one of each group at a time");
        for t in &got {
            done.push(t.task_id);
            s.finish(t.task_id, w, now, complete()).await?;
        }
    }
    let x: Vec<TaskId> = order.iter().step_by(2).copied().collect();
    let done_x: Vec<TaskId> = done.iter().filter(|id| x.contains(id)).copied().collect();
    assert_eq!(done_x, x, "x's copies one after another, oldest first");
    Ok(())
}

pub async fn a_group_rate_limit_counts_claims_in_a_window(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let mut copies: Vec<Task> = (0..10).map(|i| grouped("a", Some("r"), 0, i)).collect();
    copies.extend((0..10).map(|i| grouped("a", Some("s"), 0, i)));
    s.enqueue(copies, Counters::default()).await?;
    s.put_queue_settings(&q("a"), settings(|s| s.group_rate_limit = Some(2.0)))
        .await?;
    let w = WorkerId::new();
    let claim = |at: u64| {
        let s = Arc::clone(&s);
        async move { s.claim(w, &lanes(&["a"]), T0.plus_millis(at), 10).await }
    };
    assert_eq!(claim(0).await?.len(), 4, "two of each group");
    assert!(
        claim(500).await?.is_empty(),
        "both had their two this second"
    );
    let status = s.groups(&q("a"), 10).await?;
    assert!(status
        .groups
        .iter()
        .all(|g| g.held.as_deref() == Some("rateLimit")
            && g.held_until == Some(T0.plus_millis(1000))));
    assert_eq!(claim(999).await?.len(), 0);
    assert_eq!(claim(1000).await?.len(), 4, "the window moved on");
    // A claim made by one store is counted by the same store reopened (and
    // by every node of a cluster: the claims are the copies' own records).
    let s = h.reopen(s).await;
    assert!(s
        .claim(w, &lanes(&["a"]), T0.plus_millis(1500), 10)
        .await?
        .is_empty());
    assert_eq!(
        s.claim(w, &lanes(&["a"]), T0.plus_millis(2000), 10)
            .await?
            .len(),
        4
    );
    Ok(())
}

pub async fn a_group_rate_limit_holds_over_a_minute_of_claims(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let copies: Vec<Task> = (0..2000)
        .flat_map(|i| [grouped("a", Some("x"), 0, i), grouped("a", Some("y"), 0, i)])
        .collect();
    s.enqueue(copies, Counters::default()).await?;
    let mut own = BTreeMap::new();
    own.insert(
        "y".to_owned(),
        GroupSettings {
            rate_limit: Some(2.5),
            ..GroupSettings::default()
        },
    );
    s.put_queue_settings(
        &q("a"),
        settings(|s| {
            s.group_rate_limit = Some(10.0);
            s.groups = own;
        }),
    )
    .await?;
    // Claims every 7 ms for a minute, each taking all it may; every copy
    // completed at once, so only the rate holds them back.
    let w = WorkerId::new();
    let (mut x, mut y) = (0u64, 0u64);
    let mut at = 0;
    while at < 60_000 {
        let now = T0.plus_millis(at);
        for t in s.claim(w, &lanes(&["a"]), now, 50).await? {
            match t.group.as_deref() {
                Some("x") => x += 1,
                _ => y += 1,
            }
            s.finish(t.task_id, w, now, complete()).await?;
        }
        at += 7;
    }
    // 10 a second over 60 s, and y's own 2.5, each within 1%.
    assert!((594..=606).contains(&x), "x: {x}");
    assert!((148..=152).contains(&y), "y: {y}");
    Ok(())
}
