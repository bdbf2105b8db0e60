//! Copies' logs: appended by the lease holder only, kept as the last bytes
//! of the stream, read from any offset, across a reopen, removed with the
//! copy.

use super::*;

/// The copy `t`, enqueued and claimed by a new worker.
async fn running(s: &dyn Store, t: Task) -> Result<(TaskId, WorkerId), StoreError> {
    let id = t.task_id;
    let queue = t.queue.to_string();
    s.enqueue(vec![t], Counters::default()).await?;
    let w = WorkerId::new();
    let got = s.claim(w, &lanes(&[&queue]), T0, 1).await?;
    assert_eq!(ids(&got), vec![id]);
    Ok((id, w))
}

pub async fn only_the_lease_holder_appends_to_a_running_copys_log(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let t = copy("a", 0, 0);
    let waiting = t.task_id;
    s.enqueue(vec![t], Counters::default()).await?;
    let not_running = s
        .append_log(waiting, WorkerId::new(), b"x".to_vec(), T0, 0)
        .await;
    assert!(matches!(not_running, Err(StoreError::NotRunning { .. })));
    let (id, w) = running(&*s, copy("b", 0, 1)).await?;
    let stranger = s
        .append_log(id, WorkerId::new(), b"x".to_vec(), T0, 0)
        .await;
    assert!(matches!(stranger, Err(StoreError::NotLeaseHolder { .. })));
    let unknown = s.append_log(TaskId::new(), w, b"x".to_vec(), T0, 0).await;
    assert!(matches!(unknown, Err(StoreError::UnknownTask(_))));
    assert_eq!(
        s.append_log(id, w, b"one\n".to_vec(), T0.plus_secs(1), 500)
            .await?,
        4
    );
    let soon = s
        .append_log(id, w, b"two\n".to_vec(), T0.plus_millis(1200), 500)
        .await;
    assert!(
        matches!(
            soon,
            Err(StoreError::Throttled {
                retry_after_ms: 300
            })
        ),
        "{soon:?}"
    );
    s.append_log(id, w, b"two\n".to_vec(), T0.plus_millis(1500), 500)
        .await?;
    let log = s
        .task_log(id, None, 1 << 20)
        .await?
        .expect("the copy is kept");
    assert_eq!(log.text, b"one\ntwo\n");
    assert_eq!((log.start, log.offset, log.total), (0, 0, 8));
    assert_eq!(log.state, TaskState::Running);
    assert_eq!(log.queue.as_str(), "b");
    let from = s.task_log(id, Some(4), 1 << 20).await?.unwrap();
    assert_eq!((from.offset, from.text.as_slice()), (4, &b"two\n"[..]));
    let capped = s.task_log(id, Some(1), 2).await?.unwrap();
    assert_eq!((capped.offset, capped.text.as_slice()), (1, &b"ne"[..]));
    let past = s.task_log(id, Some(100), 1 << 20).await?.unwrap();
    assert_eq!((past.offset, past.text.len()), (8, 0));
    // A copy without a log has an empty one; an unknown copy none.
    let empty = s.task_log(waiting, None, 1 << 20).await?.unwrap();
    assert_eq!((empty.total, empty.text.len()), (0, 0));
    assert!(s.task_log(TaskId::new(), None, 1 << 20).await?.is_none());
    // The log outlives the attempt and the process.
    s.finish(id, w, T0.plus_secs(2), complete()).await?;
    let ended = s
        .append_log(id, w, b"late".to_vec(), T0.plus_secs(3), 0)
        .await;
    assert!(matches!(ended, Err(StoreError::NotRunning { .. })));
    let s = h.reopen(s).await;
    let log = s.task_log(id, None, 1 << 20).await?.unwrap();
    assert_eq!(log.text, b"one\ntwo\n");
    assert_eq!(log.state, TaskState::Completed);
    Ok(())
}

pub async fn a_long_log_keeps_its_last_bytes(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let (id, w) = running(&*s, copy("a", 0, 0)).await?;
    let mut written: Vec<u8> = Vec::new();
    for i in 0..22u32 {
        // Pieces that end inside pages, of a kept 1 MiB.
        let piece: Vec<u8> = (0..(50_000 + i * 7))
            .map(|j| b'a' + ((i + j) % 26) as u8)
            .collect();
        written.extend_from_slice(&piece);
        let total = s
            .append_log(id, w, piece, T0.plus_secs(i as u64), 0)
            .await?;
        assert_eq!(total, written.len() as u64);
    }
    let check = |log: &interq::model::TaskLog, written: &[u8]| {
        assert_eq!(log.total, written.len() as u64);
        assert!(log.start > 0, "the front was trimmed");
        assert!(
            log.total - log.start >= 1 << 20,
            "at least 1 MiB kept, not {}",
            log.total - log.start
        );
        assert!(
            log.total - log.start <= (1 << 20) + 16 * 1024,
            "about 1 MiB kept, not {}",
            log.total - log.start
        );
        assert_eq!(log.offset, log.start);
        assert_eq!(log.text, &written[log.start as usize..]);
    };
    check(&s.task_log(id, None, 4 << 20).await?.unwrap(), &written);
    // Asking for trimmed bytes answers from the first kept.
    check(&s.task_log(id, Some(0), 4 << 20).await?.unwrap(), &written);
    let s = h.reopen(s).await;
    check(&s.task_log(id, None, 4 << 20).await?.unwrap(), &written);
    // Appends go on after a reopen where the stream ended.
    s.append_log(id, w, b"end".to_vec(), T0.plus_secs(30), 0)
        .await?;
    written.extend_from_slice(b"end");
    check(&s.task_log(id, None, 4 << 20).await?.unwrap(), &written);
    Ok(())
}

pub async fn a_log_goes_with_its_copy(h: &mut dyn Harness) -> R {
    let s = h.open().await;
    let mut done = Vec::new();
    for i in 0..(HISTORY as u64 + 2) {
        let (id, w) = running(&*s, copy("a", 0, i)).await?;
        s.append_log(id, w, format!("copy {i}").into_bytes(), T0, 0)
            .await?;
        s.finish(id, w, T0.plus_secs(1 + i), complete()).await?;
        done.push(id);
    }
    // The oldest copies went past the history, and their logs with them
    // (or, in a store that archives, into the archive with them).
    past_the_history(&*s, &done[..2]).await?;
    let kept = s.task_log(done[4], None, 1 << 20).await?.unwrap();
    assert_eq!(kept.text, b"copy 4");
    let (id, _) = running(&*s, copy("b", 0, 9)).await?;
    s.delete_tasks(TaskSelector::Task(id)).await?;
    assert!(s.task_log(id, None, 1 << 20).await?.is_none());
    let s = h.reopen(s).await;
    past_the_history(&*s, &done[..2]).await?;
    assert!(s.task_log(id, None, 1 << 20).await?.is_none());
    assert_eq!(
        s.task_log(done[4], None, 1 << 20).await?.unwrap().text,
        b"copy 4"
    );
    Ok(())
}

/// Copies `i` of `ids` that wrote `copy i` left memory: each log is gone
/// with its copy, or the archive has both.
async fn past_the_history(s: &dyn Store, ids: &[TaskId]) -> R {
    for (i, id) in ids.iter().enumerate() {
        let log = s.task_log(*id, None, 1 << 20).await?;
        match s.task(*id).await? {
            None => assert!(log.is_none(), "copy {i}: the log outlived its copy"),
            Some(archived) => {
                assert_eq!(archived.state, TaskState::Completed);
                let log = log.expect("an archived copy's log");
                assert_eq!(log.text, format!("copy {i}").into_bytes());
            }
        }
    }
    Ok(())
}
