//! A copy's log: what its command wrote, as its worker sends it, kept as the
//! last pages of one byte stream per copy (across its attempts).
//!
//! The stream is cut into pages of [`PAGE`] bytes at fixed offsets, so that
//! an append rewrites at most the one page it ends in and adds whole pages
//! after it, and trimming the front is deleting pages. The pages live where
//! payloads do, out of memory; the state holds one [`Head`] per copy with a
//! log: which pages are kept and how long the stream is.

use super::ops::Op;
use super::state::State;
use crate::model::{Millis, TaskId, WorkerId};
use crate::store::StoreError;

/// Bytes per page. Part of the stored format: pages are keyed by number.
pub const PAGE: u64 = 16 * 1024;

/// Pages kept of each log to keep its last `kept_bytes`: one more than they
/// fill, as the last is partly filled.
pub fn kept_pages(kept_bytes: u64) -> u32 {
    kept_bytes.div_ceil(PAGE) as u32 + 1
}

/// Where a copy's log stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Head {
    /// The first page kept; the ones before it were trimmed.
    pub first: u32,
    /// Bytes ever written; the stream's end.
    pub total: u64,
    /// When this node last took an append (not stored: a throttle).
    pub appended_at: Millis,
}

impl Head {
    /// The offset of the first byte kept.
    pub fn start(&self) -> u64 {
        (self.first as u64 * PAGE).min(self.total)
    }

    /// The page the stream ends in, if it has a byte.
    fn last_page(&self) -> Option<u32> {
        (self.total > 0).then(|| ((self.total - 1) / PAGE) as u32)
    }
}

/// One append to a copy's log, as read before the change.
#[derive(Debug)]
pub struct Append<'a> {
    pub id: TaskId,
    /// The head when the log was read.
    pub seen: Head,
    /// What the last, partial page held then.
    pub tail: &'a [u8],
    pub text: &'a [u8],
    /// Pages kept: the stream's last.
    pub kept_pages: u32,
}

impl State {
    /// The log's head of a copy `worker` holds, for an append: refused when
    /// the copy is not running under its lease or appended to within
    /// `min_gap_ms` (429 for the worker to slow down).
    pub fn log_head_for(
        &self,
        id: TaskId,
        worker: WorkerId,
        now: Millis,
        min_gap_ms: u64,
    ) -> Result<Head, StoreError> {
        self.leased(id, worker)?;
        let head = self.outputs.get(&id).copied().unwrap_or_default();
        let since = now.0.saturating_sub(head.appended_at.0);
        if head.appended_at.0 > 0 && since < min_gap_ms {
            return Err(StoreError::Throttled {
                retry_after_ms: min_gap_ms - since,
            });
        }
        Ok(head)
    }

    /// Makes an append to a copy's log. `None` when another append came in
    /// since its head was read (read again and retry).
    pub fn append_log(&mut self, a: Append<'_>, now: Millis, ops: &mut Vec<Op>) -> Option<Head> {
        let Append {
            id,
            seen,
            tail,
            text,
            kept_pages,
        } = a;
        let current = self.outputs.get(&id).copied().unwrap_or_default();
        if (current.first, current.total) != (seen.first, seen.total) {
            return None;
        }
        let page_start = seen.total - seen.total % PAGE;
        let mut bytes = Vec::with_capacity(tail.len() + text.len());
        bytes.extend_from_slice(tail);
        bytes.extend_from_slice(text);
        let total = page_start + bytes.len() as u64;
        let last = ((total - 1) / PAGE) as u32;
        let first = (last + 1).saturating_sub(kept_pages.max(1));
        let key = *id.as_bytes();
        let pages = ((page_start / PAGE) as u32..).zip(bytes.chunks(PAGE as usize));
        // Pages that would be trimmed at once are never written.
        for (n, chunk) in pages.filter(|(n, _)| *n >= first) {
            ops.push(Op::PutOutput(key, n, chunk.to_vec()));
        }
        if let Some(old_last) = seen.last_page() {
            for p in seen.first..first.min(old_last + 1) {
                ops.push(Op::DeleteOutput(key, p));
            }
        }
        let head = Head {
            first: seen.first.max(first),
            total,
            appended_at: now,
        };
        ops.push(Op::OutputHead(key, head.first, head.total));
        self.outputs.insert(id, head);
        Some(head)
    }

    /// Removes a removed copy's log: its pages and its head.
    pub fn drop_log(&mut self, id: TaskId, ops: &mut Vec<Op>) {
        let Some(head) = self.outputs.remove(&id) else {
            return;
        };
        let key = *id.as_bytes();
        if let Some(last) = head.last_page() {
            for p in head.first..=last {
                ops.push(Op::DeleteOutput(key, p));
            }
        }
        ops.push(Op::DropOutput(key));
    }
}

/// The pages that hold a log's bytes from `from` up to `until`.
pub fn pages_between(head: &Head, from: u64, until: u64) -> std::ops::Range<u32> {
    let until = until.min(head.total);
    let from = from.max(head.start());
    if from >= until {
        return 0..0;
    }
    let first = ((from / PAGE) as u32).max(head.first);
    first..((until - 1) / PAGE) as u32 + 1
}

/// The bytes from `from` out of the pages read (each with its number): the
/// offset they begin at, and the bytes. Where a page is missing (trimmed
/// since the head was read) the text begins after it.
pub fn join_pages(pages: Vec<(u32, Vec<u8>)>, from: u64) -> (u64, Vec<u8>) {
    let mut out = Vec::new();
    let mut offset = None;
    let mut expected = None;
    for (n, bytes) in pages {
        let page_start = n as u64 * PAGE;
        if expected.is_some_and(|e| e != n) {
            // A gap: what came before it is older than what follows.
            out.clear();
            offset = None;
        }
        expected = Some(n + 1);
        let skip = from.saturating_sub(page_start).min(bytes.len() as u64) as usize;
        if offset.is_none() {
            offset = Some(page_start + skip as u64);
        }
        out.extend_from_slice(&bytes[skip..]);
    }
    (offset.unwrap_or(from), out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TaskState;

    fn state_with_running(worker: WorkerId) -> (State, TaskId) {
        let mut st = State::default();
        let id = TaskId::new();
        let mut meta = super::super::meta::Meta::for_test(id);
        meta.state = TaskState::Running;
        meta.worker_id = Some(worker);
        st.insert(meta);
        (st, id)
    }

    /// Appends through the state alone, keeping pages in a map as a log
    /// would.
    fn append(
        st: &mut State,
        pages: &mut std::collections::BTreeMap<u32, Vec<u8>>,
        id: TaskId,
        text: &[u8],
        kept: u32,
    ) -> Head {
        let seen = st.outputs.get(&id).copied().unwrap_or_default();
        let tail = if seen.total % PAGE == 0 {
            Vec::new()
        } else {
            pages[&((seen.total / PAGE) as u32)].clone()
        };
        let mut ops = Vec::new();
        let a = Append {
            id,
            seen,
            tail: &tail,
            text,
            kept_pages: kept,
        };
        let head = st
            .append_log(a, Millis(1), &mut ops)
            .expect("no append in between");
        for op in ops {
            match op {
                Op::PutOutput(_, n, b) => drop(pages.insert(n, b)),
                Op::DeleteOutput(_, n) => drop(pages.remove(&n)),
                _ => {}
            }
        }
        head
    }

    fn read(pages: &std::collections::BTreeMap<u32, Vec<u8>>, head: &Head, from: u64) -> Vec<u8> {
        let range = pages_between(head, from, u64::MAX);
        let got: Vec<(u32, Vec<u8>)> = range
            .filter_map(|n| pages.get(&n).map(|b| (n, b.clone())))
            .collect();
        join_pages(got, from).1
    }

    #[test]
    fn appends_keep_the_last_pages_of_the_stream() {
        let worker = WorkerId::new();
        let (mut st, id) = state_with_running(worker);
        let mut pages = std::collections::BTreeMap::new();
        let mut written = Vec::new();
        for i in 0..200u32 {
            let line = format!("line {i} {}\n", "x".repeat((i as usize * 37) % 900));
            written.extend_from_slice(line.as_bytes());
            let head = append(&mut st, &mut pages, id, line.as_bytes(), 4);
            assert_eq!(head.total, written.len() as u64);
            assert!(pages.len() <= 4, "{} pages kept", pages.len());
            assert_eq!(
                read(&pages, &head, 0),
                &written[head.start() as usize..],
                "after append {i}"
            );
        }
        let head = st.outputs[&id];
        assert!(head.start() > 0, "the front was trimmed");
        let from = written.len() as u64 - 10;
        assert_eq!(read(&pages, &head, from), &written[from as usize..]);
        assert!(read(&pages, &head, head.total).is_empty());
    }

    #[test]
    fn an_append_larger_than_what_is_kept_writes_only_its_tail() {
        let worker = WorkerId::new();
        let (mut st, id) = state_with_running(worker);
        let mut pages = std::collections::BTreeMap::new();
        let big: Vec<u8> = (0..(PAGE * 5 + 100))
            .map(|i| b'a' + (i % 26) as u8)
            .collect();
        let head = append(&mut st, &mut pages, id, &big, 2);
        assert_eq!(head.total, big.len() as u64);
        assert_eq!(pages.len(), 2);
        assert_eq!(read(&pages, &head, 0), &big[head.start() as usize..]);
    }

    #[test]
    fn a_stale_head_is_refused_and_a_dropped_log_removes_every_page() {
        let worker = WorkerId::new();
        let (mut st, id) = state_with_running(worker);
        let mut pages = std::collections::BTreeMap::new();
        append(&mut st, &mut pages, id, b"first", 4);
        let mut ops = Vec::new();
        let stale = Append {
            id,
            seen: Head::default(),
            tail: b"",
            text: b"late",
            kept_pages: 4,
        };
        assert!(st.append_log(stale, Millis(2), &mut ops).is_none());
        assert!(ops.is_empty(), "a refused append writes nothing");
        append(&mut st, &mut pages, id, &vec![b'z'; PAGE as usize * 2], 4);
        st.drop_log(id, &mut ops);
        let deleted: Vec<u32> = ops
            .iter()
            .filter_map(|op| match op {
                Op::DeleteOutput(_, n) => Some(*n),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, pages.keys().copied().collect::<Vec<_>>());
        assert!(matches!(ops.last(), Some(Op::DropOutput(_))));
        assert!(!st.outputs.contains_key(&id));
    }

    #[test]
    fn only_the_lease_holder_appends_and_not_too_often() {
        let worker = WorkerId::new();
        let (mut st, id) = state_with_running(worker);
        assert!(matches!(
            st.log_head_for(id, WorkerId::new(), Millis(10), 0),
            Err(StoreError::NotLeaseHolder { .. })
        ));
        assert!(matches!(
            st.log_head_for(TaskId::new(), worker, Millis(10), 0),
            Err(StoreError::UnknownTask(_))
        ));
        let head = st.log_head_for(id, worker, Millis(1000), 250).unwrap();
        let mut ops = Vec::new();
        let a = Append {
            id,
            seen: head,
            tail: b"",
            text: b"a",
            kept_pages: 4,
        };
        st.append_log(a, Millis(1000), &mut ops).unwrap();
        match st.log_head_for(id, worker, Millis(1100), 250) {
            Err(StoreError::Throttled { retry_after_ms }) => assert_eq!(retry_after_ms, 150),
            other => panic!("{other:?}"),
        }
        assert!(st.log_head_for(id, worker, Millis(1250), 250).is_ok());
    }
}
