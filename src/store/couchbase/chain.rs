//! Each log entry names the entry before it (`Op::Link`), so that a node
//! may write its next entry while the last is still in flight.
//!
//! Without names, an entry is the successor of whatever sits before it in
//! the bucket. A node writing entries N and N+1 at once whose N fails (an
//! error, a lost reply, a full disk) while N+1 lands leaves a gap: readers
//! stop at N, and the node's changes in N+1 are answered as failed. But
//! once another node writes its own N, a reader would go on into N+1,
//! computed on a state that never was, and apply it. With names it does
//! not: N+1 names the N that failed, not the one written since, so it is
//! not read (the log ends at N for everyone), and the next writer of N+1
//! replaces it (with its CAS).
//!
//! An entry names itself and its predecessor by random ids. An entry
//! without a link (written before entries had them) is taken as it
//! stands, and so is the first entry after one whose id is not known
//! here (a start from a snapshot written before snapshots named theirs).

use std::collections::BTreeMap;

use crate::store::engine::{Batch, Op};

/// The ids of the latest entries this node read, wrote or is writing.
#[derive(Debug, Default)]
pub(super) struct Links {
    /// By entry: its id, or `None` for an entry without one.
    ids: BTreeMap<u64, Option<u64>>,
    /// Every entry up to this one is known to be in the bucket (read from
    /// it, or written by this node).
    confirmed: u64,
}

/// Ids kept: far more than the entries a node has in flight, and than one
/// catch-up reads between two of its writes.
const KEPT: usize = 1024;

impl Links {
    /// Forgets everything: the state is being read back from the bucket.
    pub fn clear(&mut self) {
        self.ids.clear();
        self.confirmed = 0;
    }

    /// Entry `seq` is in the bucket, and so is every entry before it.
    pub fn confirm(&mut self, seq: u64) {
        self.confirmed = self.confirmed.max(seq);
    }

    pub fn confirmed(&self) -> u64 {
        self.confirmed
    }

    pub fn note(&mut self, seq: u64, id: Option<u64>) {
        self.ids.insert(seq, id);
        while self.ids.len() > KEPT {
            self.ids.pop_first();
        }
    }

    /// The id of entry `seq`, when it is known and it has one.
    pub fn of(&self, seq: u64) -> Option<u64> {
        self.ids.get(&seq).copied().flatten()
    }

    /// The link for a new entry `seq` (its predecessor's id, 0 when
    /// unknown, and a fresh id of its own), noted as entry `seq`'s.
    pub fn link_new(&mut self, seq: u64) -> (u64, u64) {
        let prev = seq.checked_sub(1).and_then(|p| self.of(p)).unwrap_or(0);
        // Never 0, which says "unknown".
        let this = uuid::Uuid::new_v4().as_u64_pair().0 | 1;
        self.note(seq, Some(this));
        (prev, this)
    }
}

/// Takes an entry's link out of it: (the id it names before it, its own).
pub(super) fn take_link(entry: &mut Batch) -> Option<(u64, u64)> {
    let link = link_of(entry)?;
    entry.ops.remove(0);
    Some(link)
}

/// An entry's link, read without taking it out.
pub(super) fn link_of(entry: &Batch) -> Option<(u64, u64)> {
    match entry.ops.first() {
        Some(&Op::Link { prev, this }) => Some((prev, this)),
        _ => None,
    }
}

/// Whether an entry with `link` follows the entry whose id is `before`.
pub(super) fn follows(before: Option<u64>, link: Option<(u64, u64)>) -> bool {
    match (before, link) {
        (Some(want), Some((prev, _))) => prev == want,
        // An entry's predecessor (or the entry) has no id: as it stands.
        _ => true,
    }
}
