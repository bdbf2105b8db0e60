//! The embedded backend: one node, zero set-up, files in the data
//! directory. Changes are made durable in a write-ahead log (`wal`) by a
//! group-commit thread (`journal`), and folded into a redb file at
//! checkpoints (`tables`). It is the engine's [`Log`] for one node;
//! [`EmbeddedStore`] is the engine over it.
//!
//! The file carries a format version (`meta` table, key `format`), checked
//! when it is opened: a file written by a newer interq is refused, an older
//! one is upgraded in place. On opening, what the log holds beyond the
//! file's last checkpoint is folded into it before anything is served.

mod archive;
mod journal;
mod tables;
mod wal;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use redb::{Database, ReadableDatabase, ReadableTable};

pub use self::archive::ArchiveRules;
pub use self::journal::Checkpoints;
use self::journal::{classify, Journal};
use self::tables::{
    Coalesced, Table, ARCHIVE, ARCHIVE_IDS, AUDIT, BATCHES, COPIES, COUNTERS_KEY, INTERESTS, META,
    OUTPUT, OUTPUT_HEADS, PAYLOADS, QUEUE_SETTINGS, RECENT, SAMPLES, SCHEDULES, WAL_SEQ_KEY,
    WORKERS,
};
use self::wal::Wal;
use super::engine::log::{ArchivePlace, ArchiveWalk};
use super::engine::{Batch, Engine, Log, News, Op, Payloads, Retention};
use super::{StoreError, StoreStats};

/// The file inside the data directory.
pub const FILE_NAME: &str = "interq.redb";

/// Bytes of redb's page cache unless told otherwise.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// The layout this build reads and writes. 1: the tables of `tables`,
/// written by every commit; 2: the same, written at checkpoints, with a
/// write-ahead log in `wal/` beside the file (`meta.wal_seq` says how far
/// the file holds it). A file of format 1 is format 2 with an empty log.
/// 3: format 2 and the copies' logs (`output`, `output_heads`), which the log
/// may carry records of; a file of format 2 is format 3 without logs.
/// 4: format 3, batches (`batches`), and copies' records that may end with
/// their place in a workflow (see `engine::ops::put_copy`), which an older
/// build would misread; a file of format 3 is format 4 without either.
/// 5: format 4, the throughput chart's samples (`samples`) and the publish
/// log (`recent`), which the log may carry records of; a file of format 4 is
/// format 5 without either.
/// 6: format 5 and the archive (`archive`, `archive_ids`), which the log may
/// carry records of (`Op::ArchiveCopy`); a file of format 5 is format 6 with
/// an empty archive.
/// 7: format 6, archived copies' logs (left in `output` and `output_heads`
/// when their copies are archived, swept with them), and `Op::DeleteArchived`
/// in the log; a file of format 6 is format 7 with no archived logs.
pub const FORMAT_VERSION: u64 = 7;
/// The directory of the write-ahead log, inside the data directory.
pub const WAL_DIR: &str = "wal";
const FORMAT_KEY: &str = "format";

/// Copies read back per batch at start-up: decoded a batch at a time, so
/// that a large store never holds every row at once.
const LOAD_BATCH: usize = 1024;

/// The engine over a redb file: the default store.
pub type EmbeddedStore = Engine<EmbeddedLog>;

/// How to open the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenOptions {
    /// Bytes of redb's page cache (it otherwise grows to hold the whole
    /// file).
    pub cache_bytes: usize,
    /// Check every page of the file before serving (corruption is then
    /// found at start-up, not by the claim that meets it).
    pub check: bool,
    /// A damaged or empty file is moved aside and an empty store started,
    /// instead of refusing to start.
    pub start_fresh: bool,
    /// When the log is folded into the file.
    pub checkpoints: Checkpoints,
    /// How long finished copies out of the state are kept in the file.
    pub archive: ArchiveRules,
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            cache_bytes: DEFAULT_CACHE_BYTES,
            check: true,
            start_fresh: false,
            checkpoints: Checkpoints::default(),
            archive: ArchiveRules::default(),
        }
    }
}

impl Engine<EmbeddedLog> {
    /// Opens the store in `data_dir` (created if missing), keeping the last
    /// `history` finished copies per queue and the default retention times.
    pub async fn open_dir(data_dir: &Path, history: usize) -> Result<Self, StoreError> {
        let retention = Retention {
            finished_per_queue: history,
            ..Retention::default()
        };
        Self::open_with(data_dir, retention, OpenOptions::default()).await
    }

    /// `open_dir`, with the whole retention policy and the file's options.
    pub async fn open_with(
        data_dir: &Path,
        retention: Retention,
        options: OpenOptions,
    ) -> Result<Self, StoreError> {
        let log = EmbeddedLog::open(data_dir, options)?;
        Engine::open(log, retention).await
    }
}

/// The redb file, the log in front of it, and the threads that write them.
#[derive(Debug)]
pub struct EmbeddedLog {
    path: PathBuf,
    options: OpenOptions,
    journal: Arc<Journal>,
    threads: std::sync::Mutex<Vec<JoinHandle<()>>>,
    /// The log's records not in the file, when they could not be folded
    /// into it at start (a full disk): the state is read from both.
    replayed: std::sync::Mutex<Vec<Batch>>,
    /// The engine's number of an entry less the journal's (`stage`).
    numbering: std::sync::atomic::AtomicI64,
}

/// A change's place in the journal (0 until it stages something).
#[derive(Debug)]
pub struct Ticket(u64);

impl EmbeddedLog {
    /// Opens (or creates) the file in `data_dir` and starts the commit
    /// thread.
    pub fn open(data_dir: &Path, options: OpenOptions) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join(FILE_NAME);
        let db = match open_file(&path, options) {
            Err(StoreError::Corrupt(why)) if options.start_fresh => {
                let aside = set_aside(&path)?;
                tracing::warn!(reason = %why, moved_to = %aside.display(), "the store's file was damaged; it was moved aside and an empty store started");
                open_file(&path, options)?
            }
            other => other?,
        };
        let dir = data_dir.join(WAL_DIR);
        let (journal, replayed) = match fold_log(&db, &dir, options.checkpoints.segment_bytes) {
            Ok(wal) => (
                Journal::new(
                    db,
                    Some(wal),
                    None,
                    Coalesced::default(),
                    options.checkpoints,
                    options.archive,
                ),
                Vec::new(),
            ),
            // A full disk: serve what the file and the log hold, refusing
            // changes, until space returns (`reset` folds the log then).
            Err(e @ StoreError::Full(_)) => {
                tracing::warn!(error = %e, "the log cannot be folded into the file now; changes are refused until there is space");
                // After a failed write redb must be opened again.
                drop(db);
                let db = open_file(
                    &path,
                    OpenOptions {
                        check: false,
                        ..options
                    },
                )?;
                let (replayed, unfolded) = read_log(&db, &dir)?;
                (
                    Journal::new(
                        db,
                        None,
                        Some(e),
                        unfolded,
                        options.checkpoints,
                        options.archive,
                    ),
                    replayed,
                )
            }
            Err(e) => return Err(e),
        };
        let journal = Arc::new(journal);
        let spawn = |name: &str, run: fn(&Journal)| {
            let for_thread = Arc::clone(&journal);
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || run(&for_thread))
                .map_err(|e| StoreError::Unavailable(format!("cannot start {name}: {e}")))
        };
        let threads = vec![
            spawn("interq-commit", journal::run)?,
            spawn("interq-checkpoint", journal::run_checkpoints)?,
        ];
        Ok(Self {
            path,
            options,
            journal,
            threads: std::sync::Mutex::new(threads),
            replayed: std::sync::Mutex::new(replayed),
            numbering: std::sync::atomic::AtomicI64::new(0),
        })
    }

    fn wal_dir(&self) -> PathBuf {
        self.path
            .parent()
            .map_or_else(|| PathBuf::from(WAL_DIR), |d| d.join(WAL_DIR))
    }

    fn db(&self) -> Result<Arc<Database>, StoreError> {
        self.journal
            .db
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| {
                StoreError::Unavailable(
                    "the database is closed (shutting down) or being reopened".into(),
                )
            })
    }

    /// `f` over the changes in memory, not yet in the file: the active cut,
    /// and the one a checkpoint is writing when there is one.
    fn with_unfolded<T>(&self, f: impl FnOnce(&Coalesced, Option<&Coalesced>) -> T) -> T {
        let active = self
            .journal
            .unfolded
            .active
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let folding = self
            .journal
            .unfolded
            .folding
            .read()
            .unwrap_or_else(|e| e.into_inner());
        f(&active, folding.as_deref())
    }

    /// `read` over a read transaction of the file, its failures (and
    /// panics) as the store's.
    fn read_file<T>(
        &self,
        what: &str,
        read: impl FnOnce(&redb::ReadTransaction) -> Result<T, redb::Error>,
    ) -> Result<T, StoreError> {
        let db = self.db()?;
        let done =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read(&db.begin_read()?)));
        match done {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(classify(&format!("reading {what}"), e)),
            Err(_) => Err(StoreError::Corrupt(format!(
                "the database panicked while reading {what}"
            ))),
        }
    }

    /// Records by key, newest first: the log's changes in memory (the
    /// active batch, then the one a checkpoint is writing), then the file.
    /// A change is visible once durable, so its records are in the log and
    /// in memory until a checkpoint has them in the file. Absent keys are
    /// left out.
    fn read_through<K: Copy>(
        &self,
        keys: impl IntoIterator<Item = K>,
        held: impl for<'c> Fn(&'c Coalesced, &K) -> Option<Option<&'c [u8]>>,
        table: redb::TableDefinition<&[u8], &[u8]>,
        key_of: impl Fn(&K) -> Box<[u8]>,
        what: &str,
    ) -> Result<Vec<(K, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        let mut rest = Vec::new();
        self.with_unfolded(|active, folding| {
            for k in keys {
                match held(active, &k).or_else(|| folding.and_then(|f| held(f, &k))) {
                    Some(Some(bytes)) => out.push((k, bytes.to_vec())),
                    Some(None) => {}
                    None => rest.push(k),
                }
            }
        });
        if rest.is_empty() {
            return Ok(out);
        }
        self.read_file(what, |txn| {
            // A file from before the table existed has none of them.
            if let Some(table) = open_if(txn, table)? {
                for k in rest {
                    if let Some(v) = table.get(&key_of(&k)[..])? {
                        out.push((k, v.value().to_vec()));
                    }
                }
            }
            Ok(())
        })?;
        Ok(out)
    }
}

impl Drop for EmbeddedLog {
    fn drop(&mut self) {
        self.shut();
    }
}

impl EmbeddedLog {
    /// Stops the threads, folds what is left into the file and closes it
    /// (once: later calls find nothing to do).
    fn shut(&self) {
        self.close_journal();
        // The last handle on the database: dropping it closes the file
        // cleanly, so the next start need not check it for repair.
        let db = self
            .journal
            .db
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(db);
    }

    fn close_journal(&self) {
        self.journal.close();
        self.journal.close_checkpoints();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for t in threads {
            let _ = t.join();
        }
        // What is left in memory goes into the file now, so that the next
        // start has little log to fold (it would fold it anyway).
        let mut left = Coalesced::default();
        if let Some(cut) = self
            .journal
            .unfolded
            .folding
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            merge(&mut left, &cut);
        }
        let active = std::mem::take(
            &mut *self
                .journal
                .unfolded
                .active
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        merge(&mut left, &active);
        if left.is_empty() || self.journal.broken().is_some() {
            return;
        }
        if let Some(db) = self.journal.current_db() {
            let folded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                tables::checkpoint(&db, &left, None)
            }));
            match folded {
                Ok(Ok(())) => {
                    if let Some(wal) = self
                        .journal
                        .wal
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .as_mut()
                    {
                        let _ = wal
                            .rotate()
                            .and_then(|()| wal.delete_through(left.last_seq));
                    }
                }
                _ => {
                    tracing::warn!("the last checkpoint failed at close; the log keeps its changes")
                }
            }
        }
    }
}

type ByteTable = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

/// A table of the file, if it has it (a file from before it existed may
/// not).
fn open_if(
    txn: &redb::ReadTransaction,
    table: redb::TableDefinition<&'static [u8], &'static [u8]>,
) -> Result<Option<ByteTable>, redb::Error> {
    match txn.open_table(table) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Folds `later` (a newer cut) over `into`.
fn merge(into: &mut Coalesced, later: &Coalesced) {
    for (k, v) in &later.entries {
        // A payload the newer cut let go of that the older archived a copy
        // of stays (the file would otherwise never get it).
        if let (tables::Table::Payloads, None) = (k.0, v) {
            if <[u8; 16]>::try_from(&k.1[..]).is_ok_and(|p| into.archived_publishes.contains(&p)) {
                continue;
            }
        }
        into.entries.insert(k.clone(), v.clone());
    }
    into.archived_queues
        .extend(later.archived_queues.iter().cloned());
    into.archived_publishes
        .extend(later.archived_publishes.iter().copied());
    into.unarchived_publishes
        .extend(later.unarchived_publishes.iter().copied());
    if later.counters.is_some() {
        into.counters = later.counters;
    }
    into.last_seq = into.last_seq.max(later.last_seq);
    into.bytes += later.bytes;
}

/// Reads the log beyond the file's last checkpoint and folds it into the
/// file, then opens the log for appending.
fn fold_log(db: &Database, dir: &Path, segment_bytes: u64) -> Result<Wal, StoreError> {
    let after = wal_seq(db)?;
    let mut folded = Coalesced {
        last_seq: after,
        ..Coalesced::default()
    };
    let mut wal = Wal::open(dir, after, segment_bytes, |record| {
        folded.add(record.batch.ops, |t, k| tables::file_record(db, t, k));
        folded.counters = Some(record.batch.counters);
        folded.last_seq = record.last;
        Ok(())
    })?;
    if folded.last_seq > after {
        tracing::info!(
            from = after + 1,
            to = folded.last_seq,
            "folding the log into the file"
        );
        tables::checkpoint(db, &folded, None).map_err(|e| classify("folding the log", e))?;
        wal.rotate()?;
        wal.delete_through(folded.last_seq)?;
    }
    Ok(wal)
}

/// The log's records beyond the file's last checkpoint, read without
/// writing anything: as batches for the state, and coalesced for reads.
fn read_log(db: &Database, dir: &Path) -> Result<(Vec<Batch>, Coalesced), StoreError> {
    let after = wal_seq(db)?;
    let mut batches = Vec::new();
    let mut unfolded = Coalesced {
        last_seq: after,
        ..Coalesced::default()
    };
    Wal::read(dir, after, |record| {
        unfolded.add(record.batch.ops.clone(), |t, k| {
            tables::file_record(db, t, k)
        });
        unfolded.counters = Some(record.batch.counters);
        unfolded.last_seq = record.last;
        batches.push(record.batch);
        Ok(())
    })?;
    Ok((batches, unfolded))
}

/// The last log entry the file holds.
fn wal_seq(db: &Database) -> Result<u64, StoreError> {
    let read = || -> Result<Option<u64>, redb::Error> {
        let txn = db.begin_read()?;
        let meta = txn.open_table(META)?;
        let seq = meta
            .get(WAL_SEQ_KEY)?
            .and_then(|v| serde_json::from_slice::<u64>(v.value()).ok());
        Ok(seq)
    };
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read))
        .unwrap_or_else(|_| Err(redb::Error::Corrupted("reading the log's position".into())))
        .map(|seq| seq.unwrap_or(0))
        .map_err(|e| classify("reading the log's position", e))
}

/// Bytes written to see whether the disk takes writes again before the
/// database is reopened: cheaper than reopening and reading it all back only
/// to fail at the next commit.
const PROBE_BYTES: usize = 1 << 20;

fn probe_space(db_path: &Path) -> Result<(), StoreError> {
    use std::io::Write;
    let probe = db_path.with_extension("space-probe");
    let wrote = std::fs::File::create(&probe).and_then(|mut f| {
        f.write_all(&vec![0u8; PROBE_BYTES])?;
        f.sync_all()
    });
    let _ = std::fs::remove_file(&probe);
    wrote.map_err(|e| classify("checking for free space", e))
}

/// Moves a damaged file out of the way, keeping it for inspection.
fn set_aside(path: &Path) -> Result<PathBuf, StoreError> {
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let aside = path.with_extension(format!("redb.damaged-{stamp}"));
    std::fs::rename(path, &aside).map_err(|e| {
        StoreError::Unavailable(format!("cannot move {} aside: {e}", path.display()))
    })?;
    Ok(aside)
}

/// Opens the file, refusing one that is empty (a file of zero bytes is not
/// a store: it is a store lost), damaged, or of a newer format.
fn open_file(path: &Path, options: OpenOptions) -> Result<Database, StoreError> {
    let exists = match std::fs::metadata(path) {
        Ok(m) if m.len() == 0 => {
            return Err(StoreError::Corrupt(format!(
                "{} is empty (0 bytes): the store it held is gone. Restore it from a backup, or start with --start-fresh to begin an empty store",
                path.display()
            )))
        }
        Ok(_) => true,
        Err(_) => false,
    };
    let opened = std::panic::catch_unwind(|| {
        let mut builder = Database::builder();
        builder.set_cache_size(options.cache_bytes);
        if exists && options.check {
            builder.set_check_integrity_on_open(true);
        }
        builder.create(path)
    });
    let db = match opened {
        Ok(Ok(db)) => db,
        Ok(Err(e)) => {
            let e = classify(&format!("opening {}", path.display()), e);
            return Err(match e {
                StoreError::Corrupt(why) => StoreError::Corrupt(format!(
                    "{why}. Restore the file from a backup, or start with --start-fresh to move it aside and begin an empty store"
                )),
                other => other,
            });
        }
        Err(_) => {
            return Err(StoreError::Corrupt(format!(
                "{} is damaged (reading it failed). Restore it from a backup, or start with --start-fresh",
                path.display()
            )))
        }
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| prepare(&db, path))) {
        Ok(prepared) => prepared?,
        Err(_) => {
            return Err(StoreError::Corrupt(format!(
                "{} is damaged (reading it failed). Restore it from a backup, or start with --start-fresh",
                path.display()
            )))
        }
    }
    Ok(db)
}

/// Checks the file's format, and on a new (or pre-format) file creates the
/// tables and writes it. A file already prepared is only read: reopening it
/// on a full disk must not need space.
fn prepare(db: &Database, path: &Path) -> Result<(), StoreError> {
    let err = |e: redb::Error| classify(&format!("preparing {}", path.display()), e);
    let found = {
        let txn = db.begin_read().map_err(|e| err(e.into()))?;
        match txn.open_table(META) {
            Ok(meta) => meta
                .get(FORMAT_KEY)
                .map_err(|e| err(e.into()))?
                .map(|v| serde_json::from_slice::<u64>(v.value()).unwrap_or(u64::MAX)),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(e) => return Err(err(e.into())),
        }
    };
    match found {
        Some(v) if v > FORMAT_VERSION => Err(StoreError::Corrupt(format!(
            "{} is in format {v}, written by a newer interq; this one reads up to format {FORMAT_VERSION}",
            path.display()
        ))),
        Some(v) if v == FORMAT_VERSION => Ok(()),
        // An older file (2, 1 with an empty log, or none before formats
        // were numbered) is this format without what came later: marked so,
        // so that an older interq refuses it rather than misread the log.
        _ => {
            let txn = db.begin_write().map_err(|e| err(e.into()))?;
            {
                for t in [COPIES, PAYLOADS, WORKERS] {
                    txn.open_table(t).map_err(|e| err(e.into()))?;
                }
                for t in [INTERESTS, QUEUE_SETTINGS, SCHEDULES, BATCHES] {
                    txn.open_table(t).map_err(|e| err(e.into()))?;
                }
                for t in [AUDIT, SAMPLES] {
                    txn.open_table(t).map_err(|e| err(e.into()))?;
                }
                for t in [OUTPUT, OUTPUT_HEADS, RECENT, ARCHIVE, ARCHIVE_IDS] {
                    txn.open_table(t).map_err(|e| err(e.into()))?;
                }
                let mut meta = txn.open_table(META).map_err(|e| err(e.into()))?;
                let v = serde_json::to_vec(&FORMAT_VERSION).expect("a number encodes");
                meta.insert(FORMAT_KEY, v.as_slice())
                    .map_err(|e| err(e.into()))?;
            }
            txn.commit().map_err(|e| err(e.into()))
        }
    }
}

impl Log for EmbeddedLog {
    type Turn = Ticket;

    fn close(&self) {
        self.shut();
    }

    async fn begin(
        &self,
        _applied: &(dyn Fn() -> u64 + Sync),
    ) -> Result<(Ticket, News), StoreError> {
        match self.journal.broken() {
            Some(cause) => Err(cause),
            None => Ok((Ticket(0), Vec::new())),
        }
    }

    fn stage(&self, turn: &mut Ticket, applied: u64, batch: Batch) -> u64 {
        turn.0 = self.journal.push(batch);
        // The journal numbers its batches from its own start: one batch per
        // entry, so the two numberings differ by a constant.
        self.numbering
            .store(applied as i64 + 1 - turn.0 as i64, Ordering::SeqCst);
        applied + 1
    }

    fn durable(&self) -> u64 {
        match self.journal.durable_through() {
            Some(done) => (done as i64 + self.numbering.load(Ordering::SeqCst)).max(0) as u64,
            None => 0,
        }
    }

    async fn commit(&self, turn: Ticket) -> Result<(), StoreError> {
        if turn.0 == 0 {
            return Ok(());
        }
        self.journal.durable(turn.0).await
    }

    fn abandon(&self, _turn: Ticket) {}

    async fn news(&self, _applied: u64) -> Result<News, StoreError> {
        Ok(Vec::new())
    }

    async fn payloads(&self, publishes: &[[u8; 16]]) -> Result<Payloads, StoreError> {
        let found = self.read_through(
            publishes.iter().copied(),
            |c, k| c.payload(k),
            PAYLOADS,
            |k| k.to_vec().into_boxed_slice(),
            "payloads",
        )?;
        Ok(found.into_iter().collect())
    }

    fn archives(&self) -> bool {
        self.options.archive.keep_ms > 0
    }

    fn tell_time(&self, now: crate::model::Millis) {
        self.journal.clock.store(now.0, Ordering::Relaxed);
    }

    async fn archived(&self, copy: [u8; 16]) -> Result<Option<Vec<u8>>, StoreError> {
        let one = |table: Table, def, key: &[u8], what| {
            self.read_through([()], |c, _| c.held(table, key), def, |_| key.into(), what)
                .map(|mut found| found.pop().map(|(_, v)| v))
        };
        let Some(place) = one(Table::ArchiveIds, ARCHIVE_IDS, &copy, "the archive")? else {
            return Ok(None);
        };
        one(Table::Archive, ARCHIVE, &place, "the archive")
    }

    async fn archived_log(&self, copy: [u8; 16]) -> Result<Option<(u32, u64)>, StoreError> {
        let found = self.read_through(
            [()],
            |c, _| c.held(Table::OutputHeads, &copy),
            OUTPUT_HEADS,
            |_| copy.into(),
            "a log",
        )?;
        match found.first() {
            None => Ok(None),
            Some((_, v)) => tables::decode_head(v)
                .map(Some)
                .ok_or_else(|| StoreError::Corrupt("a log's head is not 12 bytes".into())),
        }
    }

    async fn archived_of_publish(&self, publish: [u8; 16]) -> Result<Vec<Vec<u8>>, StoreError> {
        let (lo, hi) = crate::model::TaskId::from_bytes(publish).copy_range();
        let (lo, hi) = (*lo.as_bytes(), *hi.as_bytes());
        // Their places: those archived since the last checkpoint, then the
        // file's (a copy is archived once).
        let mut places: std::collections::BTreeMap<[u8; 16], Vec<u8>> =
            self.with_unfolded(|active, folding| {
                std::iter::once(active)
                    .chain(folding)
                    .flat_map(|cut| cut.archived_ids_in(lo..=hi))
                    .map(|(id, place)| (id, place.to_vec()))
                    .collect()
            });
        self.read_file("the archive", |txn| {
            let Some(ids) = open_if(txn, ARCHIVE_IDS)? else {
                return Ok(());
            };
            for row in ids.range(&lo[..]..=&hi[..])? {
                let (k, v) = row?;
                if let Ok(id) = <[u8; 16]>::try_from(k.value()) {
                    places.entry(id).or_insert_with(|| v.value().to_vec());
                }
            }
            Ok(())
        })?;
        let found = self.read_through(
            places.values(),
            |c, k| c.held(Table::Archive, k),
            ARCHIVE,
            |k| k.as_slice().into(),
            "the archive",
        )?;
        Ok(found.into_iter().map(|(_, record)| record).collect())
    }

    async fn archive_page(
        &self,
        queue: &str,
        walk: ArchiveWalk,
        limit: usize,
    ) -> Result<Vec<(ArchivePlace, Vec<u8>)>, StoreError> {
        let (range, newest_first) = match walk {
            ArchiveWalk::Older(before) => (archive::range(queue, before), true),
            ArchiveWalk::Newer(after) => (archive::range_after(queue, after), false),
        };
        // The copies archived or removed since the last checkpoint (the
        // newer cut's word wins), then the file's.
        let mut found: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>> =
            self.with_unfolded(|active, folding| {
                folding
                    .into_iter()
                    .chain(std::iter::once(active))
                    .flat_map(|cut| cut.archived_in(&range))
                    .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
                    .collect()
            });
        // Rows the cuts removed take no place in the page.
        let removed = found.values().filter(|v| v.is_none()).count();
        self.read_file("the archive", |txn| {
            let Some(table) = open_if(txn, ARCHIVE)? else {
                return Ok(());
            };
            let rows = table.range(&range.start[..]..&range.end[..])?;
            let rows: Box<dyn Iterator<Item = _>> = match newest_first {
                true => Box::new(rows.rev()),
                false => Box::new(rows),
            };
            for row in rows.take(limit + removed) {
                let (k, v) = row?;
                found
                    .entry(k.value().to_vec())
                    .or_insert_with(|| Some(v.value().to_vec()));
            }
            Ok(())
        })?;
        let found: Box<dyn Iterator<Item = _>> = match newest_first {
            true => Box::new(found.into_iter().rev()),
            false => Box::new(found.into_iter()),
        };
        Ok(found
            .filter_map(|(k, v)| Some((archive::place_of(&k)?, v?)))
            .take(limit)
            .collect())
    }

    async fn output_pages(
        &self,
        copy: [u8; 16],
        pages: std::ops::Range<u32>,
    ) -> Result<Vec<(u32, Vec<u8>)>, StoreError> {
        let mut found = self.read_through(
            pages,
            |c, n| c.output_page(&copy, *n),
            OUTPUT,
            |n| tables::page_key(&copy, *n),
            "a log",
        )?;
        found.sort_unstable_by_key(|(n, _)| *n);
        Ok(found)
    }

    async fn load(
        &self,
        apply: &mut (dyn FnMut(Batch) -> Result<(), StoreError> + Send),
    ) -> Result<u64, StoreError> {
        let db = self.db()?;
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_all(&db, apply)));
        match read {
            Ok(result) => result.map(|()| 0),
            Err(_) => Err(StoreError::Corrupt(
                "the database panicked while being read".into(),
            )),
        }
    }

    async fn reset(&self) -> Result<(), StoreError> {
        probe_space(&self.path)?;
        self.journal.with_checkpoints_paused(|| {
            // redb must be closed and opened again after an I/O error. The
            // old handles go first: a file is opened by one handle at a time.
            let old = self
                .journal
                .db
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            drop(old);
            *self.journal.wal.lock().unwrap_or_else(|e| e.into_inner()) = None;
            let reopened = open_file(
                &self.path,
                OpenOptions {
                    check: false,
                    ..self.options
                },
            )?;
            // What memory held is read back from the log, and folded.
            let wal = fold_log(
                &reopened,
                &self.wal_dir(),
                self.options.checkpoints.segment_bytes,
            )?;
            *self
                .journal
                .unfolded
                .active
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Coalesced::default();
            *self
                .journal
                .unfolded
                .folding
                .write()
                .unwrap_or_else(|e| e.into_inner()) = None;
            *self.journal.wal.lock().unwrap_or_else(|e| e.into_inner()) = Some(wal);
            self.replayed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            *self.journal.db.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(reopened));
            self.journal.mend();
            tracing::info!(path = %self.path.display(), "the store was reopened");
            Ok(())
        })
    }

    fn needs_reset(&self) -> bool {
        self.journal.broken().is_some()
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            commits: self.journal.commits.load(Ordering::Relaxed),
            writes: self.journal.writes.load(Ordering::Relaxed),
            cluster: None,
        }
    }
}

/// Reads every record back as batches: the copies a batch at a time, then
/// the other records, with the totals last.
fn read_all(
    db: &Database,
    apply: &mut (dyn FnMut(Batch) -> Result<(), StoreError> + Send),
) -> Result<(), StoreError> {
    let err = |e: redb::Error| classify("reading the store", e);
    let txn = db.begin_read().map_err(|e| err(e.into()))?;
    let mut ops = Vec::with_capacity(LOAD_BATCH);
    let flush = |ops: &mut Vec<Op>, apply: &mut dyn FnMut(Batch) -> Result<(), StoreError>| {
        let batch = Batch {
            ops: std::mem::take(ops),
            ..Batch::default()
        };
        apply(batch)
    };
    let copies = txn.open_table(COPIES).map_err(|e| err(e.into()))?;
    for row in copies.iter().map_err(|e| err(e.into()))? {
        let (k, v) = row.map_err(|e| err(e.into()))?;
        let key: [u8; 16] = k
            .value()
            .try_into()
            .map_err(|_| StoreError::Corrupt("a copy's key is not 16 bytes".into()))?;
        ops.push(Op::PutCopy(key, v.value().to_vec()));
        if ops.len() >= LOAD_BATCH {
            flush(&mut ops, apply)?;
        }
    }
    for row in txn
        .open_table(INTERESTS)
        .map_err(|e| err(e.into()))?
        .iter()
        .map_err(|e| err(e.into()))?
    {
        let (k, v) = row.map_err(|e| err(e.into()))?;
        ops.push(Op::PutInterests(k.value().to_owned(), v.value().to_vec()));
    }
    for row in txn
        .open_table(WORKERS)
        .map_err(|e| err(e.into()))?
        .iter()
        .map_err(|e| err(e.into()))?
    {
        let (k, v) = row.map_err(|e| err(e.into()))?;
        let key = k.value().try_into().unwrap_or_default();
        ops.push(Op::PutWorker(key, v.value().to_vec()));
    }
    for row in txn
        .open_table(QUEUE_SETTINGS)
        .map_err(|e| err(e.into()))?
        .iter()
        .map_err(|e| err(e.into()))?
    {
        let (k, v) = row.map_err(|e| err(e.into()))?;
        ops.push(Op::PutQueueSettings(
            k.value().to_owned(),
            v.value().to_vec(),
        ));
    }
    for row in txn
        .open_table(SCHEDULES)
        .map_err(|e| err(e.into()))?
        .iter()
        .map_err(|e| err(e.into()))?
    {
        let (k, v) = row.map_err(|e| err(e.into()))?;
        ops.push(Op::PutSchedule(k.value().to_owned(), v.value().to_vec()));
    }
    for row in txn
        .open_table(BATCHES)
        .map_err(|e| err(e.into()))?
        .iter()
        .map_err(|e| err(e.into()))?
    {
        let (k, v) = row.map_err(|e| err(e.into()))?;
        ops.push(Op::PutBatch(k.value().to_owned(), v.value().to_vec()));
        if ops.len() >= LOAD_BATCH {
            flush(&mut ops, apply)?;
        }
    }
    for row in txn
        .open_table(AUDIT)
        .map_err(|e| err(e.into()))?
        .iter()
        .map_err(|e| err(e.into()))?
    {
        let (k, v) = row.map_err(|e| err(e.into()))?;
        ops.push(Op::PutAudit(k.value(), v.value().to_vec()));
    }
    for row in txn
        .open_table(SAMPLES)
        .map_err(|e| err(e.into()))?
        .iter()
        .map_err(|e| err(e.into()))?
    {
        let (k, v) = row.map_err(|e| err(e.into()))?;
        ops.push(Op::PutSample(k.value(), v.value().to_vec()));
    }
    for row in txn
        .open_table(RECENT)
        .map_err(|e| err(e.into()))?
        .iter()
        .map_err(|e| err(e.into()))?
    {
        let (k, v) = row.map_err(|e| err(e.into()))?;
        let key = k.value().try_into().unwrap_or_default();
        ops.push(Op::PutRecent(key, v.value().to_vec()));
        if ops.len() >= LOAD_BATCH {
            flush(&mut ops, apply)?;
        }
    }
    for row in txn
        .open_table(OUTPUT_HEADS)
        .map_err(|e| err(e.into()))?
        .iter()
        .map_err(|e| err(e.into()))?
    {
        let (k, v) = row.map_err(|e| err(e.into()))?;
        let key = k.value().try_into().unwrap_or_default();
        let (first, total) = tables::decode_head(v.value())
            .ok_or_else(|| StoreError::Corrupt("a log's head is not 12 bytes".into()))?;
        ops.push(Op::OutputHead(key, first, total));
        if ops.len() >= LOAD_BATCH {
            flush(&mut ops, apply)?;
        }
    }
    let counters = match txn
        .open_table(META)
        .map_err(|e| err(e.into()))?
        .get(COUNTERS_KEY)
        .map_err(|e| err(e.into()))?
    {
        Some(v) => serde_json::from_slice(v.value())
            .map_err(|e| StoreError::Corrupt(format!("the stored totals: {e}")))?,
        None => Default::default(),
    };
    apply(Batch { ops, counters })
}
