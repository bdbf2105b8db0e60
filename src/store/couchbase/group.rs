//! Group commit on a shared log: the changes a node makes while its last
//! entry is being written join its next entry, so that a node under load
//! writes a few entries per round trip to the bucket, not one per change.
//!
//! A change is computed on the state that holds the changes before it,
//! durable or not yet (as the embedded backend does), so it may be computed
//! while the entry before it is written; it is answered once its own entry
//! exists. Entries are written by one flusher task (never by a request,
//! whose future a disconnecting client may drop), two at once, and end in
//! order. A write that fails fails the entries after it too, which were
//! computed on top of it, and every change after, until the engine has read
//! the state back (`reset`). One of them may land all the same: it names
//! the entry before it, which does not exist, so nobody reads it
//! (`chain`).
//!
//! A change's payloads do not wait for the flusher: they are written from
//! the moment it is staged, while the entries before it are written, and
//! the entry that names them is written once they are (a payload before
//! its entry is harmless; one whose entry fails is only space).
//!
//! This is the node's state of its side of the cluster lock too: the lock
//! is let go only once nothing is being computed, joined or written.

use std::sync::{Arc, OnceLock};

use tokio::time::Instant;

use tokio::task::JoinHandle;

use crate::store::engine::Batch;
use crate::store::StoreError;

/// Bytes of changes an open entry takes before further changes wait for it
/// to be written (Couchbase's limit for a document is 20 MiB; payloads and
/// log pages, counted here too, are written as documents of their own).
pub(super) const GROUP_BYTES: usize = 4 << 20;

#[derive(Debug, Default)]
pub(super) struct Pipeline {
    /// The cluster lock, while this node holds it.
    pub lock: Option<Held>,
    /// A change is between `begin` and its stage or abandon.
    pub computing: bool,
    /// The entry changes join now.
    pub open: Option<Group>,
    /// The flusher is running.
    pub flushing: bool,
    /// Why no entry may be written until the state has been read back.
    pub broken: Option<StoreError>,
    /// A change is renewing the lock (changes wait for it meanwhile).
    pub renewing: bool,
    /// A partition's log: the tenure of its owner this node caught up in
    /// (no other node writes while it lasts).
    pub tenure: Option<u64>,
    /// Names each hold of the lock, so that a late timer letting go of an
    /// idle one does not let go of a newer one.
    generation: u64,
}

/// The cluster lock as this node holds it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Held {
    pub cas: u64,
    /// When it was taken, and how many changes it has served.
    pub since: Instant,
    pub changes: u32,
    pub generation: u64,
    /// Changes served over the whole hold, renewals and all.
    pub served: u64,
    /// It is not renewed again: it is let go once what was computed under
    /// it is written (another node waits, or renewing it failed).
    pub ending: bool,
}

/// An entry that changes join until the flusher takes it.
#[derive(Debug)]
pub(super) struct Group {
    pub seq: u64,
    pub batch: Batch,
    pub bytes: usize,
    pub done: Arc<Done>,
    /// The writes of its changes' payloads, under way since they were
    /// staged.
    pub writing: Vec<Writing>,
}

/// Documents being written ahead of the entry that names them.
pub(super) type Writing = JoinHandle<Result<(), StoreError>>;

/// How an entry's write ended, for the changes in it.
#[derive(Debug, Default)]
pub(super) struct Done(OnceLock<Result<(), StoreError>>);

impl Done {
    pub fn result(&self) -> Option<Result<(), StoreError>> {
        self.0.get().cloned()
    }

    pub fn set(&self, result: Result<(), StoreError>) {
        let _ = self.0.set(result);
    }
}

impl Pipeline {
    /// Notes a lock just taken.
    pub fn hold(&mut self, cas: u64) {
        self.generation += 1;
        self.lock = Some(Held {
            cas,
            since: Instant::now(),
            changes: 0,
            generation: self.generation,
            served: 0,
            ending: false,
        });
    }

    /// Whether nothing of this node's is being joined or written.
    pub fn drained(&self) -> bool {
        self.open.is_none() && !self.flushing
    }

    /// Whether the lock may be let go: no change is being computed, joined
    /// or written, and it is not being renewed.
    pub fn idle(&self) -> bool {
        !self.computing && !self.renewing && self.drained()
    }

    /// Whether the open entry takes no more changes until it is written.
    pub fn full(&self) -> bool {
        self.open.as_ref().is_some_and(|g| g.bytes >= GROUP_BYTES)
    }

    /// The entry a change staged on a state holding entry `applied` joins.
    pub fn open_seq(&self, applied: u64) -> u64 {
        match &self.open {
            Some(g) if g.seq == applied => g.seq,
            _ => applied + 1,
        }
    }

    /// A change staged on a state holding entry `applied`: it joins the
    /// open entry (which is `applied` itself), or opens `applied + 1`, with
    /// the documents of `ahead` bytes it is writing already. Returns the
    /// entry it is in, and how that entry's write ends.
    pub fn join(
        &mut self,
        applied: u64,
        batch: Batch,
        ahead: Option<(usize, Writing)>,
    ) -> (u64, Arc<Done>) {
        let (ahead_bytes, writing) = match ahead {
            Some((bytes, w)) => (bytes, Some(w)),
            None => (0, None),
        };
        let bytes = ahead_bytes + batch.ops.iter().map(|op| op.size()).sum::<usize>();
        match &mut self.open {
            Some(g) if g.seq == applied => {
                g.batch.ops.extend(batch.ops);
                g.batch.counters = batch.counters;
                g.bytes += bytes;
                g.writing.extend(writing);
                (g.seq, Arc::clone(&g.done))
            }
            open => {
                // An open entry is always the state's last: the state
                // moved past it only by a read-back, which drops it.
                debug_assert!(open.is_none(), "an open entry behind the state");
                let done = Arc::new(Done::default());
                *open = Some(Group {
                    seq: applied + 1,
                    batch,
                    bytes,
                    done: Arc::clone(&done),
                    writing: writing.into_iter().collect(),
                });
                (applied + 1, done)
            }
        }
    }

    /// The next entry for the flusher to write. One that must not be
    /// written (a write before it failed) is failed here; `None` ends the
    /// flusher.
    pub fn next_to_write(&mut self) -> Option<Group> {
        loop {
            let group = self.open.take();
            match (group, &self.broken) {
                (None, _) => {
                    self.flushing = false;
                    return None;
                }
                (Some(g), Some(why)) => g.done.set(Err(why.clone())),
                (Some(g), None) => return Some(g),
            }
        }
    }

    /// The open entry, for the flusher to write while others are in
    /// flight; `None` when there is none, or when it must not be written
    /// (then it is failed here).
    pub fn take_open(&mut self) -> Option<Group> {
        let group = self.open.take()?;
        match &self.broken {
            Some(why) => {
                group.done.set(Err(why.clone()));
                None
            }
            None => Some(group),
        }
    }

    /// The lock to let go of, when nothing needs it any more and no change
    /// waits to take it up (`keep` says one does, and may): taken out.
    pub fn let_go(&mut self, keep: impl FnOnce(&Held) -> bool) -> Option<Held> {
        if !self.idle() {
            return None;
        }
        match &self.lock {
            Some(held) if !keep(held) => self.lock.take(),
            _ => None,
        }
    }

    /// The idle lock of hold `generation`, taken out to let go of, if it
    /// served no change since it had served `served`.
    pub fn let_go_of(&mut self, generation: u64, served: u64) -> Option<Held> {
        match &self.lock {
            Some(h) if h.generation == generation && h.served == served && self.idle() => {
                self.lock.take()
            }
            _ => None,
        }
    }
}
