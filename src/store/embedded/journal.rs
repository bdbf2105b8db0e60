//! Group commit: changes queue up in order; one thread writes everything
//! that queued while the previous commit ran in one redb transaction, one
//! fsync, and then tells every waiter at once.
//!
//! A commit that fails (a full disk, an I/O error) is not retried: its
//! changes, and every change queued after it (computed on top of it), are
//! *lost*, and their waiters are told so at once. The journal then refuses
//! everything until the database has been reopened (`reopen`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use redb::{Database, TableDefinition};
use tokio::sync::watch;

use crate::model::Counters;
use crate::store::engine::{Batch, Op};
use crate::store::StoreError;

/// Copy id -> the copy without its payload (postcard).
pub(super) const COPIES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("copies");
/// Publish id -> the publish's `data` (JSON), shared by all its copies.
pub(super) const PAYLOADS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("payloads");
pub(super) const INTERESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("interests");
pub(super) const WORKERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("workers");
pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Schedule name -> the schedule (JSON).
pub(super) const SCHEDULES: TableDefinition<&str, &[u8]> = TableDefinition::new("schedules");
/// Queue name -> its limits (JSON).
pub(super) const QUEUE_SETTINGS: TableDefinition<&str, &[u8]> =
    TableDefinition::new("queue_settings");
/// Sequence number -> one operator action (JSON).
pub(super) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
pub(super) const COUNTERS_KEY: &str = "counters";

/// How many lost ranges are remembered for waiters that have not looked
/// yet; each needs a failed commit, and reopening waits between those.
const LOST_KEPT: usize = 256;

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

/// The queue of changes waiting for the commit thread.
#[derive(Debug)]
pub(super) struct Journal {
    pending: Mutex<Pending>,
    wake: Condvar,
    progress: watch::Sender<Progress>,
    /// Why the journal refuses changes, until the database is reopened.
    broken: Mutex<Option<StoreError>>,
    /// The database the commit thread writes to; none while reopening.
    pub(super) db: RwLock<Option<Arc<Database>>>,
    pub(super) commits: AtomicU64,
    pub(super) writes: AtomicU64,
}

impl Journal {
    pub(super) fn new(db: Database) -> Self {
        Self {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            progress: watch::channel(Progress::default()).0,
            broken: Mutex::new(None),
            db: RwLock::new(Some(Arc::new(db))),
            commits: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        }
    }

    /// Why changes are refused now, if they are.
    pub(super) fn broken(&self) -> Option<StoreError> {
        self.broken
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Queues a batch; batches become durable in order. Returns the number
    /// to wait for. Callers push while holding the state lock, so the
    /// journal's order is the order the state changed in.
    pub(super) fn push(&self, batch: Batch) -> u64 {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.ops.extend(batch.ops);
        pending.counters = Some(batch.counters);
        pending.seq += 1;
        self.wake.notify_one();
        pending.seq
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

    /// After the database was reopened: changes are taken again.
    pub(super) fn mend(&self) {
        *self.broken.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub(super) fn close(&self) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closing = true;
        self.wake.notify_one();
    }

    fn current_db(&self) -> Option<Arc<Database>> {
        self.db.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The commit thread's loop: until the journal closes and is drained.
pub(super) fn run(journal: &Journal) {
    let mut last = 0;
    loop {
        let (ops, counters, seq) = {
            let mut pending = journal.pending.lock().unwrap_or_else(|e| e.into_inner());
            while pending.ops.is_empty() && !pending.closing {
                pending = journal
                    .wake
                    .wait(pending)
                    .unwrap_or_else(|e| e.into_inner());
            }
            if pending.ops.is_empty() {
                return;
            }
            let counters = pending.counters.take().unwrap_or_default();
            (std::mem::take(&mut pending.ops), counters, pending.seq)
        };
        let first = last + 1;
        last = seq;
        let result = match (journal.broken(), journal.current_db()) {
            (Some(cause), _) => Err(cause),
            (None, None) => Err(StoreError::Unavailable(
                "the database is being reopened".into(),
            )),
            (None, Some(db)) => {
                // redb checks its own invariants with panics in some builds:
                // a panic is a failed commit, not a dead thread.
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    commit(&db, &ops, &counters)
                }));
                match outcome {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(e)) => Err(classify("committing", e)),
                    Err(_) => Err(StoreError::Corrupt(
                        "the database panicked while committing".into(),
                    )),
                }
            }
        };
        journal.progress.send_modify(|p| match result {
            Ok(()) => {
                p.done = seq;
            }
            Err(e) => {
                if journal.broken().is_none() {
                    tracing::error!(error = %e, "a commit failed; changes are refused until the database is reopened");
                    *journal.broken.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.clone());
                }
                match p.lost.last_mut() {
                    Some((_, to, _)) if *to + 1 == first => *to = seq,
                    _ => p.lost.push((first, seq, e)),
                }
                if p.lost.len() > LOST_KEPT {
                    p.lost.remove(0);
                }
                p.done = seq;
            }
        });
        if journal.broken().is_none() {
            journal.commits.fetch_add(1, Ordering::Relaxed);
            journal
                .writes
                .fetch_add(ops.len() as u64, Ordering::Relaxed);
        }
    }
}

/// A redb error as the store's: a full disk or file-size limit is `Full`.
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

fn commit(db: &Database, ops: &[Op], counters: &Counters) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut copies = txn.open_table(COPIES)?;
        let mut payloads = txn.open_table(PAYLOADS)?;
        let mut interests = txn.open_table(INTERESTS)?;
        let mut workers = txn.open_table(WORKERS)?;
        let mut meta = txn.open_table(META)?;
        let mut queue_settings = txn.open_table(QUEUE_SETTINGS)?;
        let mut schedules = txn.open_table(SCHEDULES)?;
        // Opened only by the rare commits that carry an audit entry.
        let mut audit = None;
        for op in ops {
            match op {
                Op::PutCopy(k, v) => {
                    copies.insert(k.as_slice(), v.as_slice())?;
                }
                Op::DeleteCopy(k) => {
                    copies.remove(k.as_slice())?;
                }
                Op::PutPayload(k, v) => {
                    payloads.insert(k.as_slice(), v.as_slice())?;
                }
                Op::DeletePayload(k) => {
                    payloads.remove(k.as_slice())?;
                }
                Op::PutInterests(k, v) => {
                    interests.insert(k.as_str(), v.as_slice())?;
                }
                Op::DeleteInterests(k) => {
                    interests.remove(k.as_str())?;
                }
                Op::PutWorker(k, v) => {
                    workers.insert(k.as_slice(), v.as_slice())?;
                }
                Op::DeleteWorker(k) => {
                    workers.remove(k.as_slice())?;
                }
                Op::PutQueueSettings(k, v) => {
                    queue_settings.insert(k.as_str(), v.as_slice())?;
                }
                Op::DeleteQueueSettings(k) => {
                    queue_settings.remove(k.as_str())?;
                }
                Op::PutSchedule(k, v) => {
                    schedules.insert(k.as_str(), v.as_slice())?;
                }
                Op::DeleteSchedule(k) => {
                    schedules.remove(k.as_str())?;
                }
                Op::PutAudit(k, v) => {
                    if audit.is_none() {
                        audit = Some(txn.open_table(AUDIT)?);
                    }
                    if let Some(t) = audit.as_mut() {
                        t.insert(*k, v.as_slice())?;
                    }
                }
                Op::DeleteAudit(k) => {
                    if audit.is_none() {
                        audit = Some(txn.open_table(AUDIT)?);
                    }
                    if let Some(t) = audit.as_mut() {
                        t.remove(*k)?;
                    }
                }
                Op::Sync => {}
            }
        }
        let encoded = serde_json::to_vec(counters).unwrap_or_default();
        meta.insert(COUNTERS_KEY, encoded.as_slice())?;
    }
    txn.commit()?;
    Ok(())
}
