//! Group commit: changes queue up in order; one thread writes everything that
//! queued while the previous commit ran in one redb transaction, one fsync,
//! and then tells every waiter at once.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::watch;

use crate::model::Counters;
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

/// One change to make durable. Also what the Couchbase backend's log
/// carries (postcard), so variants are only ever added at the end.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) enum Op {
    PutCopy([u8; 16], Vec<u8>),
    DeleteCopy([u8; 16]),
    PutPayload([u8; 16], Vec<u8>),
    DeletePayload([u8; 16]),
    PutInterests(String, Vec<u8>),
    DeleteInterests(String),
    PutWorker([u8; 16], Vec<u8>),
    DeleteWorker([u8; 16]),
    PutQueueSettings(String, Vec<u8>),
    DeleteQueueSettings(String),
    PutSchedule(String, Vec<u8>),
    DeleteSchedule(String),
    PutAudit(u64, Vec<u8>),
    DeleteAudit(u64),
    /// Nothing but a commit, so that counters and earlier changes are written.
    Sync,
}

impl Op {
    /// Roughly its encoded size.
    pub(super) fn size(&self) -> usize {
        16 + match self {
            Op::PutCopy(_, v) | Op::PutPayload(_, v) | Op::PutWorker(_, v) | Op::PutAudit(_, v) => {
                v.len()
            }
            Op::PutInterests(k, v) | Op::PutQueueSettings(k, v) | Op::PutSchedule(k, v) => {
                k.len() + v.len()
            }
            Op::DeleteInterests(k) | Op::DeleteQueueSettings(k) | Op::DeleteSchedule(k) => k.len(),
            Op::DeleteCopy(_)
            | Op::DeletePayload(_)
            | Op::DeleteWorker(_)
            | Op::DeleteAudit(_)
            | Op::Sync => 0,
        }
    }
}

#[derive(Debug, Default)]
struct Pending {
    ops: Vec<Op>,
    /// Sequence number of the last batch of ops pushed.
    seq: u64,
    closing: bool,
}

/// The queue of changes waiting for the commit thread.
#[derive(Debug)]
pub(super) struct Journal {
    pending: Mutex<Pending>,
    wake: Condvar,
    committed: watch::Sender<u64>,
    pub(super) commits: AtomicU64,
    pub(super) writes: AtomicU64,
}

impl Journal {
    /// Queues changes; they become durable in order. Returns the sequence
    /// number to wait for. Callers push while holding the state lock, so the
    /// journal's order is the order the state changed in.
    pub(super) fn push(&self, ops: impl IntoIterator<Item = Op>) -> u64 {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let before = pending.ops.len();
        pending.ops.extend(ops);
        // With nothing new, wait for whatever is already queued: an empty
        // batch would get a number the commit thread never reaches.
        if pending.ops.len() > before {
            pending.seq += 1;
            self.wake.notify_one();
        }
        pending.seq
    }

    /// Waits until the batch `seq` (and all before it) is durable.
    pub(super) async fn durable(&self, seq: u64) -> Result<(), StoreError> {
        let mut rx = self.committed.subscribe();
        rx.wait_for(|&c| c >= seq)
            .await
            .map(|_| ())
            .map_err(|_| StoreError::Unavailable("the commit thread stopped".into()))
    }

    fn close(&self) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .closing = true;
        self.wake.notify_one();
    }
}

/// The commit thread and the journal it drains.
#[derive(Debug)]
pub(super) struct Committer {
    pub(super) journal: Arc<Journal>,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    /// Starts the commit thread. `counters` is read at each commit, so totals
    /// are written with every batch.
    pub(super) fn start(
        db: Arc<Database>,
        counters: impl Fn() -> Counters + Send + 'static,
    ) -> Self {
        let (committed, _) = watch::channel(0);
        let journal = Arc::new(Journal {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            committed,
            commits: AtomicU64::new(0),
            writes: AtomicU64::new(0),
        });
        let j = Arc::clone(&journal);
        let thread = std::thread::Builder::new()
            .name("interq-commit".into())
            .spawn(move || run(db, &j, counters))
            .expect("spawn the commit thread");
        Self {
            journal,
            thread: Some(thread),
        }
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.journal.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(db: Arc<Database>, journal: &Journal, counters: impl Fn() -> Counters) {
    loop {
        let (ops, seq) = {
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
            (std::mem::take(&mut pending.ops), pending.seq)
        };
        let mut delay = Duration::from_millis(50);
        // A failed commit (a full disk, say) is retried rather than skipped:
        // the waiters have not been answered, and their changes must not be
        // reordered behind later ones.
        while let Err(e) = commit(&db, &ops, &counters()) {
            tracing::error!(error = %e, retry_in_ms = delay.as_millis() as u64, "commit failed");
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(5));
        }
        journal.commits.fetch_add(1, Ordering::Relaxed);
        journal
            .writes
            .fetch_add(ops.len() as u64, Ordering::Relaxed);
        journal.committed.send_replace(seq);
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

/// Everything stored, read back at start-up.
#[derive(Debug, Default)]
pub(super) struct Loaded {
    /// Every record but the copies, as the changes that would write it
    /// (the audit log oldest first).
    pub records: Vec<Op>,
    pub counters: Option<Vec<u8>>,
}

/// Opens (or creates) the database file and reads its interests, workers and
/// counters (copies are streamed by `for_each_copy`).
/// `cache_bytes` bounds redb's page cache, which otherwise grows to hold the
/// whole file.
pub(super) fn open(path: &Path, cache_bytes: usize) -> Result<(Database, Loaded), redb::Error> {
    let db = Database::builder()
        .set_cache_size(cache_bytes)
        .create(path)?;
    {
        // Create the tables, so that reading a new file finds them.
        let txn = db.begin_write()?;
        txn.open_table(COPIES)?;
        txn.open_table(PAYLOADS)?;
        txn.open_table(INTERESTS)?;
        txn.open_table(WORKERS)?;
        txn.open_table(META)?;
        txn.open_table(QUEUE_SETTINGS)?;
        txn.open_table(SCHEDULES)?;
        txn.open_table(AUDIT)?;
        txn.commit()?;
    }
    let mut loaded = Loaded::default();
    let txn = db.begin_read()?;
    for row in txn.open_table(INTERESTS)?.iter()? {
        let (k, v) = row?;
        let op = Op::PutInterests(k.value().to_owned(), v.value().to_vec());
        loaded.records.push(op);
    }
    for row in txn.open_table(WORKERS)?.iter()? {
        let (k, v) = row?;
        let key = k.value().try_into().unwrap_or_default();
        loaded.records.push(Op::PutWorker(key, v.value().to_vec()));
    }
    for row in txn.open_table(QUEUE_SETTINGS)?.iter()? {
        let (k, v) = row?;
        let op = Op::PutQueueSettings(k.value().to_owned(), v.value().to_vec());
        loaded.records.push(op);
    }
    for row in txn.open_table(SCHEDULES)?.iter()? {
        let (k, v) = row?;
        let op = Op::PutSchedule(k.value().to_owned(), v.value().to_vec());
        loaded.records.push(op);
    }
    for row in txn.open_table(AUDIT)?.iter()? {
        let (k, v) = row?;
        loaded
            .records
            .push(Op::PutAudit(k.value(), v.value().to_vec()));
    }
    loaded.counters = txn
        .open_table(META)?
        .get(COUNTERS_KEY)?
        .map(|v| v.value().to_vec());
    drop(txn);
    Ok((db, loaded))
}

/// Reads the payloads of `publishes` (JSON bytes), in one read transaction.
/// Only committed payloads are seen, which is why a copy is made visible
/// only after its enqueue committed.
pub(super) fn read_payloads(
    db: &Database,
    publishes: &[[u8; 16]],
) -> Result<Vec<Option<Vec<u8>>>, redb::Error> {
    let txn = db.begin_read()?;
    let table = txn.open_table(PAYLOADS)?;
    publishes
        .iter()
        .map(|k| Ok(table.get(k.as_slice())?.map(|v| v.value().to_vec())))
        .collect()
}

/// Calls `f` with each stored copy's bytes, without holding them all at once.
pub(super) fn for_each_copy(
    db: &Database,
    mut f: impl FnMut(&[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let unavailable = |e: redb::Error| StoreError::Unavailable(format!("reading copies: {e}"));
    let txn = db.begin_read().map_err(|e| unavailable(e.into()))?;
    let table = txn.open_table(COPIES).map_err(|e| unavailable(e.into()))?;
    for row in table.iter().map_err(|e| unavailable(e.into()))? {
        let (_, v) = row.map_err(|e| unavailable(e.into()))?;
        f(v.value())?;
    }
    Ok(())
}
