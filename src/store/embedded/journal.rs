//! Group commit over a write-ahead log, and checkpoints into the redb file.
//!
//! Changes queue up in order; one thread appends everything that queued
//! while the previous append ran as one log record, makes it durable with
//! one `fdatasync`, and then tells every waiter at once. The records'
//! contents are kept in memory, coalesced (the last write of each record),
//! and a second thread folds them into the redb file at checkpoints (every
//! `checkpoint_bytes` or `checkpoint_every`), after which the log segments
//! they came from are deleted. A copy made ready, claimed, completed and
//! trimmed between two checkpoints never reaches the file at all.
//!
//! A write that fails (a full disk, an I/O error) is not retried: its
//! changes, and every change queued after it (computed on top of it), are
//! *lost*, and their waiters are told so at once. The journal then refuses
//! everything until it has been reopened (`EmbeddedLog::reset`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use redb::Database;
use tokio::sync::watch;

use super::archive::{ArchiveRules, SweepPlan};
use super::tables::{self, Coalesced};
use super::wal::Wal;
use crate::model::Counters;
use crate::store::engine::{Batch, Op};
use crate::store::StoreError;

/// How many lost ranges are remembered for waiters that have not looked
/// yet; each needs a failed write, and reopening waits between those.
const LOST_KEPT: usize = 256;

/// When to fold the log into the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoints {
    /// Bytes of changes held in memory (and in the log) that start one.
    pub bytes: usize,
    /// Time after which one starts anyway.
    pub every: Duration,
    /// Bytes of one log segment, allocated ahead.
    pub segment_bytes: u64,
}

impl Default for Checkpoints {
    fn default() -> Self {
        Self {
            bytes: 32 << 20,
            every: Duration::from_secs(2),
            segment_bytes: 64 << 20,
        }
    }
}

#[derive(Debug, Default)]
struct Pending {
    ops: Vec<Op>,
    /// The totals after the last batch queued.
    counters: Option<Counters>,
    /// Sequence number of the last batch queued.
    seq: u64,
    closing: bool,
}

/// What the commit thread has done, for waiters.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// Every batch up to this one is durable, except the lost ones.
    done: u64,
    /// Ranges of batches that were not stored, with why.
    lost: Vec<(u64, u64, StoreError)>,
}

/// Changes in memory, not yet in the file: those since the last cut, and
/// those being written by the checkpoint in progress.
#[derive(Debug, Default)]
pub(super) struct Unfolded {
    pub active: Mutex<Coalesced>,
    pub folding: RwLock<Option<Arc<Coalesced>>>,
}

#[derive(Debug, Default)]
struct CheckpointState {
    /// A cut is waiting in `Unfolded::folding` to be written.
    due: bool,
    closing: bool,
    /// The checkpoint thread is writing.
    busy: bool,
}

/// The queue of changes waiting for the commit thread, and what it shares
/// with the checkpoint thread and readers.
#[derive(Debug)]
pub(super) struct Journal {
    pending: Mutex<Pending>,
    wake: Condvar,
    progress: watch::Sender<Progress>,
    /// Why the journal refuses changes, until it is reopened.
    broken: Mutex<Option<StoreError>>,
    /// The database checkpoints write to and readers read; none while
    /// reopening.
    pub(super) db: RwLock<Option<Arc<Database>>>,
    pub(super) wal: Mutex<Option<Wal>>,
    pub(super) unfolded: Unfolded,
    checkpoint: Mutex<CheckpointState>,
    checkpoint_wake: Condvar,
    pub(super) checkpoints: Checkpoints,
    pub(super) archive: ArchiveRules,
    /// When each queue's archive is next swept (by the checkpoint thread).
    sweeps: Mutex<SweepPlan>,
    /// The service's time (ms) as its last tick told it; 0 before.
    pub(super) clock: AtomicU64,
    pub(super) commits: AtomicU64,
    pub(super) writes: AtomicU64,
    pub(super) folds: AtomicU64,
    pub(super) folded: AtomicU64,
}

impl Journal {
    /// A journal over `db` and `wal`; without a log (it could not be
    /// opened: a full disk), refusing changes with `broken`, its unfolded
    /// changes held in `active`.
    pub(super) fn new(
        db: Database,
        wal: Option<Wal>,
        broken: Option<StoreError>,
        active: Coalesced,
        checkpoints: Checkpoints,
        archive: ArchiveRules,
    ) -> Self {
        Self {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            progress: watch::channel(Progress::default()).0,
            broken: Mutex::new(broken),
            db: RwLock::new(Some(Arc::new(db))),
            wal: Mutex::new(wal),
            unfolded: Unfolded {
                active: Mutex::new(active),
                folding: RwLock::new(None),
            },
            checkpoint: Mutex::new(CheckpointState::default()),
            checkpoint_wake: Condvar::new(),
            checkpoints,
            archive: ArchiveRules {
                // Not archiving: what an earlier run archived goes whole.
                at_least: if archive.keep_ms == 0 {
                    0
                } else {
                    archive.at_least
                },
                ..archive
            },
            sweeps: Mutex::new(SweepPlan::default()),
            clock: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            folds: AtomicU64::new(0),
            folded: AtomicU64::new(0),
        }
    }

    /// Why changes are refused now, if they are.
    pub(super) fn broken(&self) -> Option<StoreError> {
        lock(&self.broken).clone()
    }

    fn set_broken(&self, e: &StoreError) {
        let mut broken = lock(&self.broken);
        if broken.is_none() {
            tracing::error!(error = %e, "a write failed; changes are refused until the store is reopened");
            *broken = Some(e.clone());
        }
    }

    /// Queues a batch; batches become durable in order. Returns the number
    /// to wait for. Callers push while holding the state lock, so the
    /// journal's order is the order the state changed in.
    pub(super) fn push(&self, batch: Batch) -> u64 {
        let mut pending = lock(&self.pending);
        if pending.ops.is_empty() {
            pending.ops = batch.ops;
        } else {
            pending.ops.extend(batch.ops);
        }
        pending.counters = Some(batch.counters);
        pending.seq += 1;
        self.wake.notify_one();
        pending.seq
    }

    /// Every batch up to this one is durable; `None` while a write that
    /// failed keeps changes refused.
    pub(super) fn durable_through(&self) -> Option<u64> {
        let done = self.progress.borrow().done;
        self.broken().is_none().then_some(done)
    }

    /// Waits until batch `seq` is durable, or known lost.
    pub(super) async fn durable(&self, seq: u64) -> Result<(), StoreError> {
        let mut rx = self.progress.subscribe();
        let lost = |p: &Progress| {
            p.lost
                .iter()
                .find(|(from, to, _)| (*from..=*to).contains(&seq))
                .map(|(_, _, e)| e.clone())
        };
        let progress = rx
            .wait_for(|p| p.done >= seq || lost(p).is_some())
            .await
            .map_err(|_| StoreError::Unavailable("the commit thread stopped".into()))?;
        match lost(&progress) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// After the store was reopened: changes are taken again.
    pub(super) fn mend(&self) {
        *lock(&self.broken) = None;
    }

    pub(super) fn close(&self) {
        lock(&self.pending).closing = true;
        self.wake.notify_one();
    }

    pub(super) fn close_checkpoints(&self) {
        lock(&self.checkpoint).closing = true;
        self.checkpoint_wake.notify_all();
    }

    pub(super) fn current_db(&self) -> Option<Arc<Database>> {
        self.db.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits until no checkpoint is being written, and keeps others from
    /// starting while `f` runs (to reopen the store under it).
    pub(super) fn with_checkpoints_paused<T>(&self, f: impl FnOnce() -> T) -> T {
        let mut cp = lock(&self.checkpoint);
        while cp.busy {
            cp = self
                .checkpoint_wake
                .wait(cp)
                .unwrap_or_else(|e| e.into_inner());
        }
        let was_closing = cp.closing;
        cp.closing = true;
        drop(cp);
        let out = f();
        let mut cp = lock(&self.checkpoint);
        cp.closing = was_closing;
        cp.due = false;
        out
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The commit thread's loop: until the journal closes and is drained.
pub(super) fn run(journal: &Journal) {
    let mut last = 0;
    let mut last_cut = Instant::now();
    loop {
        let taken = {
            let mut pending = lock(&journal.pending);
            while pending.ops.is_empty() && !pending.closing {
                // Woken at least every so often, to cut a checkpoint of what
                // a quiet store holds.
                let (p, _) = journal
                    .wake
                    .wait_timeout(pending, journal.checkpoints.every)
                    .unwrap_or_else(|e| e.into_inner());
                pending = p;
                if pending.ops.is_empty() && last_cut.elapsed() >= journal.checkpoints.every {
                    break;
                }
            }
            if pending.ops.is_empty() && pending.closing {
                return;
            }
            if pending.ops.is_empty() {
                None
            } else {
                let counters = pending.counters.take().unwrap_or_default();
                Some((std::mem::take(&mut pending.ops), counters, pending.seq))
            }
        };
        if let Some((ops, counters, seq)) = taken {
            let first = last + 1;
            last = seq;
            let n = ops.len() as u64;
            let result = append(journal, ops, counters);
            journal.progress.send_modify(|p| {
                if let Err(e) = result {
                    journal.set_broken(&e);
                    match p.lost.last_mut() {
                        Some((_, to, _)) if *to + 1 == first => *to = seq,
                        _ => p.lost.push((first, seq, e)),
                    }
                    if p.lost.len() > LOST_KEPT {
                        p.lost.remove(0);
                    }
                } else {
                    journal.commits.fetch_add(1, Ordering::Relaxed);
                    journal.writes.fetch_add(n, Ordering::Relaxed);
                }
                p.done = seq;
            });
        }
        if journal.broken().is_none() {
            if let Err(e) = maybe_cut(journal, &mut last_cut) {
                journal.set_broken(&e);
            }
        }
    }
}

/// Appends one group's changes to the log, durably, then keeps them in
/// memory until a checkpoint folds them into the file.
fn append(journal: &Journal, ops: Vec<Op>, counters: Counters) -> Result<(), StoreError> {
    if let Some(cause) = journal.broken() {
        return Err(cause);
    }
    // The file is not keeping up (a checkpoint takes long): hold no more in
    // memory than a few checkpoints' worth. Refused before it is written,
    // so that a refusal means not stored.
    let held = lock(&journal.unfolded.active).bytes;
    if held > 8 * journal.checkpoints.bytes {
        return Err(StoreError::Unavailable(
            "the store's checkpoints fall behind its writes; retry".into(),
        ));
    }
    let batch = Batch { ops, counters };
    {
        let mut wal = lock(&journal.wal);
        let wal = wal
            .as_mut()
            .ok_or_else(|| StoreError::Unavailable("the store is being reopened".into()))?;
        let seq = wal.last + 1;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wal.append(seq, seq, &batch)
        }))
        .unwrap_or_else(|_| Err(StoreError::Corrupt("writing the log panicked".into())))?;
        let mut active = lock(&journal.unfolded.active);
        // Archived copies' records from the cut being written, else the
        // file (which has them once that cut is written, before it goes).
        let folding = journal
            .unfolded
            .folding
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let db = journal.current_db();
        active.add(batch.ops, |table, k| {
            match folding.as_deref().and_then(|f| f.held(table, k)) {
                Some(held) => held.map(<[u8]>::to_vec),
                None => db
                    .as_deref()
                    .and_then(|db| tables::file_record(db, table, k)),
            }
        });
        drop(folding);
        active.counters = Some(counters);
        active.last_seq = seq;
    }
    Ok(())
}

/// Hands what memory holds to the checkpoint thread, when one is due and
/// none is in progress: a new log segment starts, so that the ones before
/// can go once the file has their changes.
fn maybe_cut(journal: &Journal, last_cut: &mut Instant) -> Result<(), StoreError> {
    let held = lock(&journal.unfolded.active).bytes;
    let due = held >= journal.checkpoints.bytes
        || (held > 0 && last_cut.elapsed() >= journal.checkpoints.every);
    if !due {
        return Ok(());
    }
    let mut cp = lock(&journal.checkpoint);
    if cp.due || cp.busy || cp.closing {
        return Ok(());
    }
    if let Some(wal) = lock(&journal.wal).as_mut() {
        wal.rotate()?;
    }
    let cut = std::mem::take(&mut *lock(&journal.unfolded.active));
    *journal
        .unfolded
        .folding
        .write()
        .unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(cut));
    cp.due = true;
    *last_cut = Instant::now();
    journal.checkpoint_wake.notify_all();
    Ok(())
}

/// The checkpoint thread's loop: writes each cut into the file, then
/// deletes the log segments it covered. A checkpoint that fails breaks the
/// journal like a failed append: the file must be reopened, which folds the
/// log (that still holds everything) into it again.
pub(super) fn run_checkpoints(journal: &Journal) {
    loop {
        let changes = {
            let mut cp = lock(&journal.checkpoint);
            while !cp.due && !cp.closing {
                cp = journal
                    .checkpoint_wake
                    .wait(cp)
                    .unwrap_or_else(|e| e.into_inner());
            }
            if !cp.due {
                return;
            }
            cp.busy = true;
            journal
                .unfolded
                .folding
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
        };
        let result = match (changes.as_deref(), journal.current_db()) {
            (None, _) => Ok(()),
            (Some(_), None) => Err(StoreError::Unavailable(
                "the store is being reopened".into(),
            )),
            (Some(c), Some(db)) => fold(journal, &db, c),
        };
        let mut cp = lock(&journal.checkpoint);
        cp.busy = false;
        cp.due = false;
        match result {
            Ok(()) => {
                *journal
                    .unfolded
                    .folding
                    .write()
                    .unwrap_or_else(|e| e.into_inner()) = None;
            }
            // The cut stays in memory for reads until the store is reopened.
            Err(e) => journal.set_broken(&e),
        }
        journal.checkpoint_wake.notify_all();
    }
}

/// Writes one cut into the file, then deletes the log it came from.
fn fold(journal: &Journal, db: &Database, changes: &Coalesced) -> Result<(), StoreError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let rules = journal.archive;
        let now = match journal.clock.load(Ordering::Relaxed) {
            0 => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            told => told,
        };
        let mut plan = lock(&journal.sweeps);
        tables::checkpoint(db, changes, Some((rules, &mut plan, now)))
    }))
    .unwrap_or_else(|_| Err(redb::Error::Corrupted("a checkpoint panicked".into())))
    .map_err(|e| classify("writing a checkpoint", e))?;
    journal.folds.fetch_add(1, Ordering::Relaxed);
    journal
        .folded
        .fetch_add(changes.entries.len() as u64, Ordering::Relaxed);
    if let Some(wal) = lock(&journal.wal).as_mut() {
        wal.delete_through(changes.last_seq)?;
    }
    Ok(())
}

/// A storage error as the store's: a full disk or file-size limit is
/// `Full`.
pub(super) fn classify(what: &str, e: impl Into<redb::Error>) -> StoreError {
    let e: redb::Error = e.into();
    let full = match &e {
        redb::Error::Io(io) => matches!(
            io.kind(),
            std::io::ErrorKind::StorageFull
                | std::io::ErrorKind::FileTooLarge
                | std::io::ErrorKind::QuotaExceeded
        ),
        _ => false,
    };
    if full {
        StoreError::Full(format!("{what}: {e}"))
    } else if matches!(e, redb::Error::Corrupted(_)) {
        StoreError::Corrupt(format!("{what}: {e}"))
    } else {
        StoreError::Unavailable(format!("{what}: {e}"))
    }
}
