//! The embedded backend: one node, zero set-up, a redb file in the data
//! directory, written by a group-commit thread (`journal`). It is the
//! engine's [`Log`] for one node; [`EmbeddedStore`] is the engine over it.
//!
//! The file carries a format version (`meta` table, key `format`), checked
//! when it is opened: a file written by a newer interq is refused, an older
//! one is upgraded in place.

mod journal;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use redb::{Database, ReadableDatabase, ReadableTable};

use self::journal::{
    classify, Journal, AUDIT, COPIES, COUNTERS_KEY, INTERESTS, META, PAYLOADS, QUEUE_SETTINGS,
    SCHEDULES, WORKERS,
};
use super::engine::{Batch, Engine, Log, News, Op, Payloads, Retention};
use super::{StoreError, StoreStats};

/// The file inside the data directory.
pub const FILE_NAME: &str = "interq.redb";

/// Bytes of redb's page cache unless told otherwise.
pub const DEFAULT_CACHE_BYTES: usize = 64 << 20;

/// The layout this build reads and writes. 1: the tables of `journal`.
pub const FORMAT_VERSION: u64 = 1;
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
}

impl Default for OpenOptions {
    fn default() -> Self {
        Self {
            cache_bytes: DEFAULT_CACHE_BYTES,
            check: true,
            start_fresh: false,
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

/// The redb file and its commit thread.
#[derive(Debug)]
pub struct EmbeddedLog {
    path: PathBuf,
    options: OpenOptions,
    journal: Arc<Journal>,
    thread: Option<JoinHandle<()>>,
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
        let journal = Arc::new(Journal::new(db));
        let for_thread = Arc::clone(&journal);
        let thread = std::thread::Builder::new()
            .name("interq-commit".into())
            .spawn(move || journal::run(&for_thread))
            .map_err(|e| StoreError::Unavailable(format!("cannot start the commit thread: {e}")))?;
        Ok(Self {
            path,
            options,
            journal,
            thread: Some(thread),
        })
    }

    fn db(&self) -> Result<Arc<Database>, StoreError> {
        self.journal
            .db
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or_else(|| StoreError::Unavailable("the database is being reopened".into()))
    }
}

impl Drop for EmbeddedLog {
    fn drop(&mut self) {
        self.journal.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
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
        Some(_) => Ok(()),
        // A new file, or one from before formats were numbered (format 1).
        None => {
            let txn = db.begin_write().map_err(|e| err(e.into()))?;
            {
                for t in [COPIES, PAYLOADS, WORKERS] {
                    txn.open_table(t).map_err(|e| err(e.into()))?;
                }
                for t in [INTERESTS, QUEUE_SETTINGS, SCHEDULES] {
                    txn.open_table(t).map_err(|e| err(e.into()))?;
                }
                txn.open_table(AUDIT).map_err(|e| err(e.into()))?;
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

    async fn begin(&self, _applied: u64) -> Result<(Ticket, News), StoreError> {
        match self.journal.broken() {
            Some(cause) => Err(cause),
            None => Ok((Ticket(0), Vec::new())),
        }
    }

    fn stage(&self, turn: &mut Ticket, _seq: u64, batch: Batch) {
        turn.0 = self.journal.push(batch);
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
        let db = self.db()?;
        // Only committed payloads are read: a copy becomes visible once its
        // enqueue committed, so its payload is here by then.
        let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let txn = db.begin_read()?;
            let table = txn.open_table(PAYLOADS)?;
            let mut out = Payloads::with_capacity(publishes.len());
            for k in publishes {
                if let Some(v) = table.get(k.as_slice())? {
                    out.insert(*k, v.value().to_vec());
                }
            }
            Ok::<_, redb::Error>(out)
        }));
        match read {
            Ok(Ok(out)) => Ok(out),
            Ok(Err(e)) => Err(classify("reading payloads", e)),
            Err(_) => Err(StoreError::Corrupt(
                "the database panicked while reading payloads".into(),
            )),
        }
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
        // redb must be closed and opened again after an I/O error. The old
        // handle goes first: a file is opened by one handle at a time.
        let old = self
            .journal
            .db
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(old);
        let reopened = open_file(
            &self.path,
            OpenOptions {
                check: false,
                ..self.options
            },
        )?;
        *self.journal.db.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(reopened));
        self.journal.mend();
        tracing::info!(path = %self.path.display(), "the database was reopened");
        Ok(())
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            commits: self.journal.commits.load(Ordering::Relaxed),
            writes: self.journal.writes.load(Ordering::Relaxed),
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
        .open_table(AUDIT)
        .map_err(|e| err(e.into()))?
        .iter()
        .map_err(|e| err(e.into()))?
    {
        let (k, v) = row.map_err(|e| err(e.into()))?;
        ops.push(Op::PutAudit(k.value(), v.value().to_vec()));
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
