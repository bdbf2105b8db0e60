//! The embedded store's archive: finished copies past the in-memory history
//! kept in the file, read newest first, across restarts, and swept by age
//! keeping the newest of each queue.

use std::path::Path;
use std::time::{Duration, Instant};

use interq::store::embedded::{ArchiveRules, Checkpoints, EmbeddedStore, OpenOptions};
use interq::store::engine::Retention;

use crate::conformance::{complete, copy, lanes, q, T0};
use crate::conformance::{Arc, Counters, Page, Store, Task, TaskFilter, TaskId, TaskState};
use crate::conformance::{StoreError, WorkerId};

/// Copies a queue keeps in memory in these tests.
const HOT: usize = 3;

async fn open(dir: &Path, archive: ArchiveRules) -> Arc<dyn Store> {
    open_checkpointing(dir, archive, Duration::from_millis(1)).await
}

async fn open_checkpointing(dir: &Path, archive: ArchiveRules, every: Duration) -> Arc<dyn Store> {
    let retention = Retention {
        finished_per_queue: HOT,
        ..Retention::default()
    };
    let options = OpenOptions {
        archive,
        // Checkpoints (and with them sweeps) at almost every change, by
        // default.
        checkpoints: Checkpoints {
            every,
            ..Checkpoints::default()
        },
        ..OpenOptions::default()
    };
    let s: Arc<dyn Store> = Arc::new(
        EmbeddedStore::open_with(dir, retention, options)
            .await
            .expect("open the embedded store"),
    );
    // The sweep measures ages by the time the ticks tell it, and by the
    // system's clock before the first: the tests' clock starts at `T0`,
    // whatever the date.
    s.tick(T0).await.expect("a tick");
    s
}

/// Enqueues `n` copies in `queue` and completes them one by one, the `i`th
/// at `T0 + i` s; their ids in that order.
async fn complete_many(s: &dyn Store, queue: &str, n: u64) -> Result<Vec<TaskId>, StoreError> {
    complete_many_from(s, queue, n, 0).await
}

/// As `complete_many`, finishing them from `from` seconds past `T0`.
async fn complete_many_from(
    s: &dyn Store,
    queue: &str,
    n: u64,
    from: u64,
) -> Result<Vec<TaskId>, StoreError> {
    let copies: Vec<Task> = (0..n).map(|i| copy(queue, 0, i)).collect();
    let ids: Vec<TaskId> = copies.iter().map(|t| t.task_id).collect();
    s.enqueue(copies, Counters::default()).await?;
    let w = WorkerId::new();
    for (i, id) in ids.iter().enumerate() {
        s.claim(w, &lanes(&[queue]), T0, 1).await?;
        s.finish(*id, w, T0.plus_secs(from + 1 + i as u64), complete())
            .await?;
    }
    Ok(ids)
}

async fn archived(
    s: &dyn Store,
    queue: &str,
    filter: &TaskFilter,
    before: Option<TaskId>,
    limit: usize,
) -> Result<Vec<TaskId>, StoreError> {
    let tasks = s
        .list_archived(&q(queue), TaskState::Completed, filter, before, limit)
        .await?;
    Ok(tasks.iter().map(|t| t.task_id).collect())
}

/// The completed copies of `queue` still in memory, as listed.
async fn in_memory(s: &dyn Store, queue: &str) -> Result<Vec<TaskId>, StoreError> {
    let page = Page {
        offset: 0,
        limit: 100,
    };
    let none = TaskFilter::default();
    let hot = s
        .list_tasks(Some(&q(queue)), TaskState::Completed, &none, page)
        .await?;
    Ok(hot.iter().map(|t| t.task_id).collect())
}

fn rev(ids: &[TaskId]) -> Vec<TaskId> {
    ids.iter().rev().copied().collect()
}

#[tokio::test]
async fn finished_copies_past_the_history_are_archived_with_their_data_across_restarts(
) -> Result<(), StoreError> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    // No checkpoint until the end: each copy's payload is written, let go of
    // by the state and kept for the archive within one cut of the log.
    let rarely = Duration::from_secs(3600);
    let mut s = open_checkpointing(dir.path(), ArchiveRules::default(), rarely).await;
    let ids = complete_many(&*s, "a", 10).await?;
    let none = TaskFilter::default();
    for round in 0..2 {
        let hot = in_memory(&*s, "a").await?;
        assert_eq!(hot, ids[7..].to_vec(), "round {round}: in memory");
        assert_eq!(archived(&*s, "a", &none, None, 100).await?, rev(&ids[..7]));
        // Paged by the last copy of the page before.
        assert_eq!(archived(&*s, "a", &none, None, 3).await?, rev(&ids[4..7]));
        assert_eq!(
            archived(&*s, "a", &none, Some(ids[4]), 3).await?,
            rev(&ids[1..4])
        );
        assert_eq!(archived(&*s, "a", &none, Some(ids[1]), 3).await?, [ids[0]]);
        // And back, by the first copy of a page: the nearest newer ones.
        let newer = |than: TaskId| TaskFilter {
            after: Some(than),
            ..TaskFilter::default()
        };
        assert_eq!(
            archived(&*s, "a", &newer(ids[1]), None, 3).await?,
            rev(&ids[2..5])
        );
        assert_eq!(archived(&*s, "a", &newer(ids[5]), None, 3).await?, [ids[6]]);
        assert!(archived(&*s, "a", &newer(ids[6]), None, 3)
            .await?
            .is_empty());
        assert_eq!(
            s.list_archived(&q("a"), TaskState::Completed, &none, Some(ids[8]), 3)
                .await
                .err()
                .map(|e| e.to_string()),
            Some(StoreError::UnknownTask(ids[8]).to_string()),
            "a copy still in memory is no cursor in the archive"
        );
        // Found by id, with its data and its history.
        let first = s.task(ids[0]).await?.expect("archived");
        assert_eq!(first.state, TaskState::Completed);
        assert!(first.archived, "says where it was read from");
        let hot = s.task(ids[9]).await?.expect("in memory");
        assert!(!hot.archived);
        assert_eq!(first.data.get("n"), Some(&serde_json::json!(0)));
        assert!(!first.history.is_empty());
        // A search looks into the archived data too.
        let by_data = TaskFilter {
            data: vec![interq::model::FieldMatch::parse("n=5").expect("a field match")],
            ..TaskFilter::default()
        };
        assert_eq!(archived(&*s, "a", &by_data, None, 10).await?, [ids[5]]);
        let other_state = s
            .list_archived(&q("a"), TaskState::Cancelled, &none, None, 10)
            .await?;
        assert!(other_state.is_empty());
        assert!(archived(&*s, "b", &none, None, 10).await?.is_empty());
        // The same after a restart, as a new process reads the file.
        drop(s);
        s = open_checkpointing(dir.path(), ArchiveRules::default(), rarely).await;
    }
    Ok(())
}

/// One publish with a copy in `a`, completed, and one in `b`, waiting.
async fn finished_in_a_waiting_in_b(s: &dyn Store) -> Result<(Task, Task), StoreError> {
    let mut first = copy("a", 0, 0);
    let mut sibling = first.clone();
    sibling.queue = q("b");
    sibling.task_id = first.publish_id.copy(1);
    first.created_at = T0;
    s.enqueue(vec![first.clone(), sibling.clone()], Counters::default())
        .await?;
    let w = WorkerId::new();
    s.claim(w, &lanes(&["a"]), T0, 1).await?;
    s.finish(first.task_id, w, T0, complete()).await?;
    Ok((first, sibling))
}

/// Makes small changes (each one a checkpoint, with its sweep) until the
/// queue's archive holds `want` copies, for at most 10 s.
async fn sweep_until(s: &dyn Store, queue: &str, want: usize) -> Result<Vec<TaskId>, StoreError> {
    let start = Instant::now();
    loop {
        let now = archived(s, queue, &TaskFilter::default(), None, 1000).await?;
        if now.len() == want || start.elapsed() > Duration::from_secs(10) {
            return Ok(now);
        }
        s.enqueue(vec![copy("nudge", 0, 0)], Counters::default())
            .await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_archive_sweeps_copies_past_their_age_keeping_the_newest_of_each_queue(
) -> Result<(), StoreError> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let rules = ArchiveRules {
        keep_ms: 60_000,
        at_least: 2,
    };
    let s = open(dir.path(), rules).await;
    // `a`'s copy is archived and swept while `b`'s still waits, which
    // needs the payload they share.
    let (shared, sibling) = finished_in_a_waiting_in_b(&*s).await?;
    let ids = complete_many(&*s, "a", 8).await?;
    // 9 completed in `a`, 3 in memory: 6 archived, all young.
    s.tick(T0.plus_secs(30)).await?;
    let young = sweep_until(&*s, "a", 6).await?;
    assert_eq!(young.len(), 6, "nothing is old enough yet: {young:?}");
    // A minute past the newest: all old, the newest 2 stay.
    s.tick(T0.plus_secs(120)).await?;
    let left = sweep_until(&*s, "a", 2).await?;
    assert_eq!(left, rev(&ids[3..5]), "the newest two archived copies stay");
    assert!(s.task(ids[0]).await?.is_none(), "swept for good");
    assert!(s.task(shared.task_id).await?.is_none());
    let kept = s.task(sibling.task_id).await?.expect("waiting in b");
    assert_eq!(kept.state, TaskState::Ready);
    assert_eq!(
        *kept.data, *shared.data,
        "the payload stays for the copy in b"
    );
    // The sweep's work stays done after a restart.
    drop(s);
    let s = open(dir.path(), rules).await;
    assert_eq!(
        archived(&*s, "a", &TaskFilter::default(), None, 100).await?,
        rev(&ids[3..5])
    );
    Ok(())
}

#[tokio::test]
async fn without_an_archive_finished_copies_past_the_history_are_deleted() -> Result<(), StoreError>
{
    let dir = tempfile::tempdir().expect("a temporary directory");
    let off = ArchiveRules {
        keep_ms: 0,
        ..ArchiveRules::default()
    };
    let s = open(dir.path(), off).await;
    let ids = complete_many(&*s, "a", 5).await?;
    assert!(s.task(ids[0]).await?.is_none());
    assert!(archived(&*s, "a", &TaskFilter::default(), None, 10)
        .await?
        .is_empty());
    // What an earlier run archived goes once the archive is turned off.
    drop(s);
    let s = open(dir.path(), ArchiveRules::default()).await;
    let more = complete_many(&*s, "a", 5).await?;
    // The 3 in memory from before and 2 of the new go (the first run's
    // first 2 were deleted).
    let now = archived(&*s, "a", &TaskFilter::default(), None, 10).await?;
    assert_eq!(now.len(), 5, "{now:?}");
    assert!(now.contains(&more[0]) && now.contains(&ids[2]) && !now.contains(&ids[0]));
    drop(s);
    let s = open(dir.path(), off).await;
    for _ in 0..10 {
        // Changes, so that checkpoints (with their sweeps) run.
        s.enqueue(vec![copy("nudge", 0, 0)], Counters::default())
            .await?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(s);
    let s = open(dir.path(), ArchiveRules::default()).await;
    assert!(s.task(more[0]).await?.is_none());
    assert!(archived(&*s, "a", &TaskFilter::default(), None, 10)
        .await?
        .is_empty());
    Ok(())
}

#[tokio::test]
async fn copies_archived_out_of_finish_order_list_in_finish_order() -> Result<(), StoreError> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let s = open(dir.path(), ArchiveRules::default()).await;
    // The later finishes first, then copies that finished before them:
    // they fall among what the file holds.
    let late = complete_many_from(&*s, "a", 70, 1000).await?;
    sweep_until(&*s, "a", 67).await?;
    let early = complete_many_from(&*s, "a", 70, 0).await?;
    let all = sweep_until(&*s, "a", 137).await?;
    // Newest finish first: every late one before every early one, each in
    // reverse order of finishing.
    let order: Vec<(bool, usize)> = all
        .iter()
        .map(|id| match late.iter().position(|l| l == id) {
            Some(i) => (true, i),
            None => (
                false,
                early.iter().position(|e| e == id).expect("one of them"),
            ),
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(order, sorted, "newest finish first");
    // Each is found by id, and pages by cursor meet without a gap.
    for id in [late[0], late[66], early[0], early[66]] {
        assert!(s.task(id).await?.is_some(), "{id} is found");
    }
    let first = archived(&*s, "a", &TaskFilter::default(), None, 50).await?;
    let second = archived(&*s, "a", &TaskFilter::default(), first.last().copied(), 200).await?;
    assert_eq!([first, second].concat(), all);
    Ok(())
}

#[tokio::test]
async fn a_publish_whose_copies_were_archived_still_lists_them() -> Result<(), StoreError> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut s = open(dir.path(), ArchiveRules::default()).await;
    // A fan-out to `a` and `b`, both completed, then pushed out of memory
    // by later copies of each queue.
    let first = copy("a", 0, 0);
    let mut sibling = first.clone();
    sibling.queue = q("b");
    sibling.task_id = first.publish_id.copy(1);
    s.enqueue(vec![first.clone(), sibling.clone()], Counters::default())
        .await?;
    let w = WorkerId::new();
    for (queue, id) in [("a", first.task_id), ("b", sibling.task_id)] {
        s.claim(w, &lanes(&[queue]), T0, 1).await?;
        s.finish(id, w, T0, complete()).await?;
        complete_many_from(&*s, queue, HOT as u64, 10).await?;
    }
    for _ in 0..2 {
        let copies = s.tasks_of_publish(first.publish_id).await?;
        let ids: Vec<TaskId> = copies.iter().map(|t| t.task_id).collect();
        assert_eq!(
            ids,
            [first.task_id, sibling.task_id],
            "both, from the archive"
        );
        assert!(copies
            .iter()
            .all(|t| t.state == TaskState::Completed && t.archived));
        assert_eq!(*copies[1].data, *first.data, "with their data");
        // The same once a restart has them only in the file.
        drop(s);
        s = open(dir.path(), ArchiveRules::default()).await;
    }
    // A publish id that never existed still lists nothing.
    assert!(s.tasks_of_publish(TaskId::new_publish()).await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn a_copy_archived_after_a_checkpoint_has_its_record_before_and_after_the_next(
) -> Result<(), StoreError> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let rarely = Duration::from_secs(3600);
    let s = open_checkpointing(dir.path(), ArchiveRules::default(), rarely).await;
    // Finished, and in the file by the checkpoint at close, still in memory.
    let old = complete_many(&*s, "a", HOT as u64).await?;
    drop(s);
    // Pushed out of memory where no checkpoint runs: the log says only
    // "archived" (the record is the file's), and it is read so.
    let s = open_checkpointing(dir.path(), ArchiveRules::default(), rarely).await;
    let new = complete_many_from(&*s, "a", HOT as u64, 100).await?;
    let want: Vec<TaskId> = old.iter().rev().copied().collect();
    let none = TaskFilter::default();
    assert_eq!(archived(&*s, "a", &none, None, 10).await?, want);
    let first = s.task(old[0]).await?.expect("archived");
    assert_eq!(first.state, TaskState::Completed);
    assert_eq!(*first.data, *copy("a", 0, 0).data);
    assert_eq!(s.tasks_of_publish(old[1].publish()).await?.len(), 1);
    // The checkpoint at close moves it into the archive's table.
    drop(s);
    let s = open_checkpointing(dir.path(), ArchiveRules::default(), rarely).await;
    assert_eq!(archived(&*s, "a", &none, None, 10).await?, want);
    let first = s.task(old[0]).await?.expect("archived");
    assert_eq!(*first.data, *copy("a", 0, 0).data);
    assert_eq!(
        s.task(new[0]).await?.map(|t| t.state),
        Some(TaskState::Completed)
    );
    Ok(())
}

/// The keys of a table of the closed store's file that begin with `prefix`.
fn file_keys(dir: &Path, table: &str, prefix: &[u8]) -> Vec<Vec<u8>> {
    use redb::{ReadableDatabase, ReadableTable};
    let db = redb::Database::open(dir.join("interq.redb")).expect("the file opens");
    let txn = db.begin_read().expect("a read");
    let def: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new(table);
    let t = txn.open_table(def).expect("the table");
    let keys = t
        .iter()
        .expect("rows")
        .map(|row| row.expect("a row").0.value().to_vec())
        .filter(|k| k.starts_with(prefix))
        .collect();
    keys
}

/// Runs one copy in `queue` that writes `text` to its log, then completes
/// it and `HOT` more, which push it into the archive; its id.
async fn archive_one_with_a_log(
    s: &dyn Store,
    queue: &str,
    text: &[u8],
) -> Result<TaskId, StoreError> {
    let t = copy(queue, 1, 0);
    let id = t.task_id;
    s.enqueue(vec![t], Counters::default()).await?;
    let w = WorkerId::new();
    s.claim(w, &lanes(&[queue]), T0, 1).await?;
    // Two appends, so that the log spans more than one page.
    let half = text.len() / 2;
    s.append_log(id, w, text[..half].to_vec(), T0, 0).await?;
    s.append_log(id, w, text[half..].to_vec(), T0, 0).await?;
    s.finish(id, w, T0.plus_secs(1), complete()).await?;
    complete_many_from(s, queue, HOT as u64, 1).await?;
    Ok(id)
}

/// What the log of the copy `id` reads: all of `text`, and its tail.
async fn assert_log(s: &dyn Store, id: TaskId, text: &[u8]) -> Result<(), StoreError> {
    let log = s.task_log(id, None, 1 << 20).await?.expect("the log");
    assert_eq!(log.state, TaskState::Completed);
    assert_eq!(
        (log.start, log.offset, log.total),
        (0, 0, text.len() as u64)
    );
    assert!(log.text == text, "the whole log reads back");
    let from = text.len() as u64 - 10;
    let tail = s.task_log(id, Some(from), 100).await?.expect("the log");
    assert_eq!(
        (tail.offset, &tail.text[..]),
        (from, &text[from as usize..])
    );
    Ok(())
}

#[tokio::test]
async fn an_archived_copy_keeps_its_log_until_the_sweep_takes_both() -> Result<(), StoreError> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let rules = ArchiveRules {
        keep_ms: 60_000,
        at_least: 0,
    };
    // Three pages of the log.
    let text: Vec<u8> = (0..40_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let rarely = Duration::from_secs(3600);
    let s = open_checkpointing(dir.path(), rules, rarely).await;
    let id = archive_one_with_a_log(&*s, "a", &text).await?;
    let none = TaskFilter::default();
    assert!(archived(&*s, "a", &none, None, 10).await?.contains(&id));
    // From the log's changes in memory, then (after the checkpoint at
    // close) from the file.
    assert_log(&*s, id, &text).await?;
    drop(s);
    let prefix: &[u8] = id.as_bytes();
    assert_eq!(file_keys(dir.path(), "output", prefix).len(), 3);
    assert_eq!(file_keys(dir.path(), "output_heads", prefix).len(), 1);
    let s = open(dir.path(), rules).await;
    assert_log(&*s, id, &text).await?;
    // A minute past the newest: swept, and the log with it.
    s.tick(T0.plus_secs(120)).await?;
    assert!(sweep_until(&*s, "a", 0).await?.is_empty());
    assert!(s.task(id).await?.is_none());
    assert!(s.task_log(id, None, 100).await?.is_none());
    drop(s);
    assert!(file_keys(dir.path(), "output", prefix).is_empty());
    assert!(file_keys(dir.path(), "output_heads", prefix).is_empty());
    Ok(())
}

#[tokio::test]
async fn an_archived_copy_is_removed_with_its_log_and_payload() -> Result<(), StoreError> {
    use interq::model::{BulkAction, BulkStep, QueueFilter, TaskSelector};
    let dir = tempfile::tempdir().expect("a temporary directory");
    let rules = ArchiveRules::default();
    let rarely = Duration::from_secs(3600);
    // `early` reaches the file's archive (by the checkpoint at close);
    // `late` is archived by a change that only memory and the log hold.
    let s = open_checkpointing(dir.path(), rules, rarely).await;
    let early = archive_one_with_a_log(&*s, "a", b"early output\n").await?;
    drop(s);
    let mut s = open_checkpointing(dir.path(), rules, rarely).await;
    let late = archive_one_with_a_log(&*s, "a", b"late output\n").await?;
    let other = archive_one_with_a_log(&*s, "b", b"b's output\n").await?;
    let none = TaskFilter::default();
    let hot = in_memory(&*s, "a").await?[0];
    assert_eq!(s.delete_tasks(TaskSelector::Task(early)).await?, 1);
    assert_eq!(s.delete_tasks(TaskSelector::Task(early)).await?, 0, "gone");
    // A step of a bulk removal: one archived copy, one in memory, one
    // unknown, and one archived in a queue the caller may not use.
    let only_a = QueueFilter::new(vec!["a".into()]).expect("a pattern");
    let step = BulkStep {
        action: BulkAction::Remove,
        ids: vec![late, hot, TaskId::new_publish().copy(0), other],
        replacements: Vec::new(),
    };
    let acted = s.act(step, None, T0, Some(&only_a)).await?;
    assert_eq!(acted.done, [hot, late]);
    assert_eq!(acted.skipped, 2);
    // Nothing of them is left to read, now or after a restart.
    for round in 0..2 {
        let listed = archived(&*s, "a", &none, None, 100).await?;
        let oldest = *listed.last().expect("archived copies");
        let newer = TaskFilter {
            after: Some(oldest),
            ..TaskFilter::default()
        };
        assert_eq!(
            archived(&*s, "a", &newer, None, 100).await?,
            listed[..listed.len() - 1],
            "round {round}: removed copies take no place in a page, either way"
        );
        for id in [early, late, hot] {
            assert!(!listed.contains(&id), "round {round}");
            assert!(s.task(id).await?.is_none(), "round {round}");
            assert!(s.task_log(id, None, 100).await?.is_none(), "round {round}");
        }
        // Of 2 * (HOT + 1) completed, HOT in memory: HOT + 2 archived.
        assert_eq!(listed.len(), HOT, "round {round}: the others stay");
        let kept = s.task_log(other, None, 100).await?.expect("b's log");
        assert_eq!(kept.text, b"b's output\n");
        drop(s);
        if round == 1 {
            break;
        }
        s = open_checkpointing(dir.path(), rules, rarely).await;
    }
    for id in [early, late] {
        for table in ["output", "output_heads", "archive_ids"] {
            assert!(
                file_keys(dir.path(), table, id.as_bytes()).is_empty(),
                "{table}"
            );
        }
        let publish = id.publish();
        assert!(file_keys(dir.path(), "payloads", publish.as_bytes()).is_empty());
    }
    assert_eq!(
        file_keys(dir.path(), "output_heads", other.as_bytes()).len(),
        1
    );
    Ok(())
}

#[tokio::test]
async fn removing_an_archived_copy_keeps_the_payload_its_sibling_needs() -> Result<(), StoreError> {
    use interq::model::TaskSelector;
    let dir = tempfile::tempdir().expect("a temporary directory");
    for every in [Duration::from_millis(1), Duration::from_secs(3600)] {
        let s = open_checkpointing(dir.path(), ArchiveRules::default(), every).await;
        let (first, sibling) = finished_in_a_waiting_in_b(&*s).await?;
        complete_many(&*s, "a", HOT as u64).await?;
        assert!(s.task(first.task_id).await?.is_some(), "archived");
        assert_eq!(s.delete_tasks(TaskSelector::Task(first.task_id)).await?, 1);
        for round in 0..2 {
            let waiting = s.task(sibling.task_id).await?.expect("waiting in b");
            assert_eq!(
                *waiting.data, *first.data,
                "round {round}: its payload stays"
            );
            assert!(s.task(first.task_id).await?.is_none());
            if round == 0 {
                s.tick(T0.plus_secs(1)).await?;
            }
        }
        drop(s);
        let s = open(dir.path(), ArchiveRules::default()).await;
        let waiting = s.task(sibling.task_id).await?.expect("waiting in b");
        assert_eq!(*waiting.data, *first.data, "after a restart too");
        s.delete_tasks(TaskSelector::Task(sibling.task_id)).await?;
        drop(s);
    }
    Ok(())
}
