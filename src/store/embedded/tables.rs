//! The redb file's tables, and the coalesced form in which changes reach
//! them: the last write of each record since the previous checkpoint, so
//! that a copy made ready, claimed, completed and trimmed between two
//! checkpoints costs the file nothing.

use std::collections::{HashMap, HashSet};

use redb::{Database, ReadableDatabase, TableDefinition};

use super::archive::{self, ArchiveRules, SweepPlan};
use crate::model::Counters;
use crate::store::engine::{output, Op};

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
/// Copy id and page number (big-endian) -> one page of the copy's log.
pub(super) const OUTPUT: TableDefinition<&[u8], &[u8]> = TableDefinition::new("output");
/// Copy id -> its log's first page kept and length (big-endian u32, u64).
pub(super) const OUTPUT_HEADS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("output_heads");
/// Batch id -> the batch and its totals (JSON).
pub(super) const BATCHES: TableDefinition<&str, &[u8]> = TableDefinition::new("batches");
/// Sequence number -> one operator action (JSON).
pub(super) const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// The publish log, by publish id.
pub(super) const RECENT: TableDefinition<&[u8], &[u8]> = TableDefinition::new("recent");
/// The throughput chart's samples, by time (ms).
pub(super) const SAMPLES: TableDefinition<u64, &[u8]> = TableDefinition::new("samples");
/// Finished copies out of the state, by queue, finish time and id (see
/// `archive::key`) -> the copy's record (as `COPIES`').
pub(super) const ARCHIVE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("archive");
/// Archived copy id -> its key in `ARCHIVE`.
pub(super) const ARCHIVE_IDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("archive_ids");

pub(super) const COUNTERS_KEY: &str = "counters";
/// The last write-ahead log entry the tables hold.
pub(super) const WAL_SEQ_KEY: &str = "wal_seq";

/// Which table a record lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Table {
    Copies,
    Payloads,
    Interests,
    Workers,
    QueueSettings,
    Schedules,
    Audit,
    Output,
    OutputHeads,
    Batches,
    Samples,
    Recent,
    Archive,
    ArchiveIds,
}

/// A record's place: its table and key.
pub(super) type Key = (Table, Box<[u8]>);

/// The last write of each record, not yet in the file.
#[derive(Debug, Default)]
pub(super) struct Coalesced {
    /// `None`: removed.
    pub entries: HashMap<Key, Option<Vec<u8>>>,
    pub counters: Option<Counters>,
    /// The last log entry folded in.
    pub last_seq: u64,
    /// About the bytes held.
    pub bytes: usize,
    /// Queues that copies were archived into.
    pub archived_queues: HashSet<String>,
    /// Publishes that copies were archived from (by the publish id's
    /// bytes): their payloads stay even when the state lets go of them.
    pub archived_publishes: HashSet<[u8; 16]>,
    /// Publishes that archived copies were removed from: the checkpoint
    /// lets go of their payloads when nothing else needs them.
    pub unarchived_publishes: HashSet<[u8; 16]>,
}

impl Coalesced {
    /// Folds one change's records in. A copy archived without its record
    /// (`Op::ArchiveCopy`) takes the one this holds, else `elsewhere`'s (an
    /// older cut's, or the file's, by table and key); one found nowhere is
    /// not archived. A removed archived copy (`Op::DeleteArchived`) is
    /// found the same way, with its log.
    pub fn add(&mut self, ops: Vec<Op>, elsewhere: impl Fn(Table, &[u8]) -> Option<Vec<u8>>) {
        for op in ops {
            let (key, value) = match op {
                Op::PutCopy(k, v) => ((Table::Copies, boxed(&k)), Some(v)),
                Op::DeleteCopy(k) => ((Table::Copies, boxed(&k)), None),
                Op::PutPayload(k, v) => ((Table::Payloads, boxed(&k)), Some(v)),
                // The archive may hold a copy of the publish: the file keeps
                // the payload then (see `checkpoint`).
                Op::DeletePayload(k) if self.archived_publishes.contains(&k) => continue,
                Op::DeletePayload(k) => ((Table::Payloads, boxed(&k)), None),
                Op::PutInterests(k, v) => ((Table::Interests, boxed(k.as_bytes())), Some(v)),
                Op::DeleteInterests(k) => ((Table::Interests, boxed(k.as_bytes())), None),
                Op::PutWorker(k, v) => ((Table::Workers, boxed(&k)), Some(v)),
                Op::DeleteWorker(k) => ((Table::Workers, boxed(&k)), None),
                Op::PutQueueSettings(k, v) => {
                    ((Table::QueueSettings, boxed(k.as_bytes())), Some(v))
                }
                Op::DeleteQueueSettings(k) => ((Table::QueueSettings, boxed(k.as_bytes())), None),
                Op::PutSchedule(k, v) => ((Table::Schedules, boxed(k.as_bytes())), Some(v)),
                Op::DeleteSchedule(k) => ((Table::Schedules, boxed(k.as_bytes())), None),
                Op::PutAudit(k, v) => ((Table::Audit, boxed(&k.to_be_bytes())), Some(v)),
                Op::DeleteAudit(k) => ((Table::Audit, boxed(&k.to_be_bytes())), None),
                Op::PutOutput(k, n, v) => ((Table::Output, page_key(&k, n)), Some(v)),
                Op::DeleteOutput(k, n) => ((Table::Output, page_key(&k, n)), None),
                Op::OutputHead(k, first, total) => {
                    let mut v = first.to_be_bytes().to_vec();
                    v.extend_from_slice(&total.to_be_bytes());
                    ((Table::OutputHeads, boxed(&k)), Some(v))
                }
                Op::DropOutput(k) => ((Table::OutputHeads, boxed(&k)), None),
                Op::PutBatch(k, v) => ((Table::Batches, boxed(k.as_bytes())), Some(v)),
                Op::DeleteBatch(k) => ((Table::Batches, boxed(k.as_bytes())), None),
                Op::PutSample(k, v) => ((Table::Samples, boxed(&k.to_be_bytes())), Some(v)),
                Op::DeleteSample(k) => ((Table::Samples, boxed(&k.to_be_bytes())), None),
                Op::PutRecent(k, v) => ((Table::Recent, boxed(&k)), Some(v)),
                Op::DeleteRecent(k) => ((Table::Recent, boxed(&k)), None),
                Op::ArchiveCopy(k, queue, at, mut record) => {
                    let place = super::archive::key(&queue, (at, k));
                    self.archived_queues.insert(queue);
                    self.archived_publishes
                        .insert(super::archive::publish_of(k));
                    let copy = (Table::Copies, boxed(&k));
                    if record.is_empty() {
                        record = match self.entries.get_mut(&copy) {
                            Some(Some(held)) => std::mem::take(held),
                            _ => elsewhere(Table::Copies, &k).unwrap_or_default(),
                        };
                    }
                    self.put(copy, None);
                    if record.is_empty() {
                        continue;
                    }
                    self.put((Table::ArchiveIds, boxed(&k)), Some(place.to_vec()));
                    ((Table::Archive, place), Some(record))
                }
                Op::DeleteArchived(k) => {
                    let Some(place) = self.found(Table::ArchiveIds, &k, &elsewhere) else {
                        continue;
                    };
                    let head = self.found(Table::OutputHeads, &k, &elsewhere);
                    if let Some((first, total)) = head.as_deref().and_then(decode_head) {
                        for page in first..total.div_ceil(output::PAGE) as u32 {
                            self.put((Table::Output, page_key(&k, page)), None);
                        }
                    }
                    self.put((Table::OutputHeads, boxed(&k)), None);
                    self.put((Table::ArchiveIds, boxed(&k)), None);
                    self.unarchived_publishes
                        .insert(super::archive::publish_of(k));
                    ((Table::Archive, place.into()), None)
                }
                Op::Sync | Op::Link { .. } => continue,
            };
            self.put(key, value);
        }
    }

    /// A record's bytes from the last write this holds, else `elsewhere`.
    fn found(
        &self,
        table: Table,
        key: &[u8],
        elsewhere: impl Fn(Table, &[u8]) -> Option<Vec<u8>>,
    ) -> Option<Vec<u8>> {
        match self.entries.get(&(table, boxed(key))) {
            Some(held) => held.clone(),
            None => elsewhere(table, key),
        }
    }

    fn put(&mut self, key: Key, value: Option<Vec<u8>>) {
        {
            let size = key.1.len() + value.as_ref().map_or(0, Vec::len) + 48;
            if let Some(old) = self.entries.insert(key, value) {
                self.bytes = self.bytes.saturating_sub(old.map_or(0, |v| v.len()));
            }
            self.bytes += size;
        }
    }

    /// A payload's bytes, if this holds its last write. A removal reads
    /// through to the file: the file keeps a payload that an archived copy
    /// needs (`checkpoint`), and a copy in the state never needs a removed
    /// one.
    pub fn payload(&self, publish: &[u8; 16]) -> Option<Option<&[u8]>> {
        match self.entries.get(&(Table::Payloads, boxed(publish))) {
            Some(Some(v)) => Some(Some(v)),
            _ => None,
        }
    }

    /// A record of `table` (`Some(None)`: removed), if this holds its last
    /// write.
    pub fn held(&self, table: Table, key: &[u8]) -> Option<Option<&[u8]>> {
        self.entries.get(&(table, boxed(key))).map(|v| v.as_deref())
    }

    /// The archive's records of this that `range` holds, by key (`None`:
    /// removed).
    pub fn archived_in<'c>(
        &'c self,
        range: &'c std::ops::Range<Vec<u8>>,
    ) -> impl Iterator<Item = (&'c [u8], Option<&'c [u8]>)> + 'c {
        self.entries.iter().filter_map(move |((t, k), v)| match t {
            Table::Archive if range.start[..] <= k[..] && k[..] < range.end[..] => {
                Some((&k[..], v.as_deref()))
            }
            _ => None,
        })
    }

    /// The archived copies of this whose ids `ids` holds, with their places.
    pub fn archived_ids_in(
        &self,
        ids: std::ops::RangeInclusive<[u8; 16]>,
    ) -> impl Iterator<Item = ([u8; 16], &[u8])> + '_ {
        self.entries
            .iter()
            .filter_map(move |((t, k), v)| match (t, v) {
                (Table::ArchiveIds, Some(place)) => {
                    let id = <[u8; 16]>::try_from(&k[..]).ok()?;
                    ids.contains(&id).then_some((id, &place[..]))
                }
                _ => None,
            })
    }

    /// A log page's bytes, if this holds its last write (as `payload`).
    pub fn output_page(&self, copy: &[u8; 16], page: u32) -> Option<Option<&[u8]>> {
        self.entries
            .get(&(Table::Output, page_key(copy, page)))
            .map(|v| v.as_deref())
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.counters.is_none()
    }
}

fn boxed(bytes: &[u8]) -> Box<[u8]> {
    bytes.into()
}

/// A log page's key: in key order, a copy's pages are one range, in order.
pub(super) fn page_key(copy: &[u8; 16], page: u32) -> Box<[u8]> {
    let mut key = Vec::with_capacity(20);
    key.extend_from_slice(copy);
    key.extend_from_slice(&page.to_be_bytes());
    key.into()
}

/// A log head as `OUTPUT_HEADS` stores it.
pub(super) fn decode_head(bytes: &[u8]) -> Option<(u32, u64)> {
    let first = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?);
    let total = u64::from_be_bytes(bytes.get(4..12)?.try_into().ok()?);
    Some((first, total))
}

/// Writes what `changes` holds into the file in one transaction, with the
/// log entry it reaches, durably.
/// With `sweep`, also sweeps the archive by its rules at a time (ms).
pub(super) fn checkpoint(
    db: &Database,
    changes: &Coalesced,
    sweep: Option<(ArchiveRules, &mut SweepPlan, u64)>,
) -> Result<(), redb::Error> {
    // Durable (redb's default): the log entries it covers are deleted next.
    let txn = db.begin_write()?;
    {
        let mut copies = txn.open_table(COPIES)?;
        let mut payloads = txn.open_table(PAYLOADS)?;
        let mut interests = txn.open_table(INTERESTS)?;
        let mut workers = txn.open_table(WORKERS)?;
        let mut settings = txn.open_table(QUEUE_SETTINGS)?;
        let mut schedules = txn.open_table(SCHEDULES)?;
        let mut audit = txn.open_table(AUDIT)?;
        let mut output = txn.open_table(OUTPUT)?;
        let mut heads = txn.open_table(OUTPUT_HEADS)?;
        let mut batches = txn.open_table(BATCHES)?;
        let mut samples = txn.open_table(SAMPLES)?;
        let mut recent = txn.open_table(RECENT)?;
        let mut meta = txn.open_table(META)?;
        let mut archive = txn.open_table(ARCHIVE)?;
        let mut archive_ids = txn.open_table(ARCHIVE_IDS)?;
        let mut let_go = Vec::new();
        let text = |k: &[u8]| String::from_utf8_lossy(k).into_owned();
        // In key order: ids are time-ordered, so sorted writes walk each
        // tree's pages once, left to right, where the map's order jumps
        // between pages at random for every record.
        let mut entries: Vec<_> = changes.entries.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for ((table, key), value) in entries {
            match (table, value) {
                (Table::Recent, Some(v)) => drop(recent.insert(&key[..], v.as_slice())?),
                (Table::Recent, None) => drop(recent.remove(&key[..])?),
                (Table::Copies, Some(v)) => drop(copies.insert(&key[..], v.as_slice())?),
                (Table::Copies, None) => drop(copies.remove(&key[..])?),
                (Table::Payloads, Some(v)) => drop(payloads.insert(&key[..], v.as_slice())?),
                // After the archive's writes, which may need it.
                (Table::Payloads, None) => let_go.push(key),
                (Table::Archive, Some(v)) => drop(archive.insert(&key[..], v.as_slice())?),
                (Table::ArchiveIds, Some(v)) => drop(archive_ids.insert(&key[..], v.as_slice())?),
                (Table::Archive, None) => drop(archive.remove(&key[..])?),
                (Table::ArchiveIds, None) => drop(archive_ids.remove(&key[..])?),
                (Table::Workers, Some(v)) => drop(workers.insert(&key[..], v.as_slice())?),
                (Table::Workers, None) => drop(workers.remove(&key[..])?),
                (Table::Interests, Some(v)) => {
                    drop(interests.insert(text(key).as_str(), v.as_slice())?)
                }
                (Table::Interests, None) => drop(interests.remove(text(key).as_str())?),
                (Table::QueueSettings, Some(v)) => {
                    drop(settings.insert(text(key).as_str(), v.as_slice())?)
                }
                (Table::QueueSettings, None) => drop(settings.remove(text(key).as_str())?),
                (Table::Schedules, Some(v)) => {
                    drop(schedules.insert(text(key).as_str(), v.as_slice())?)
                }
                (Table::Schedules, None) => drop(schedules.remove(text(key).as_str())?),
                (Table::Output, Some(v)) => drop(output.insert(&key[..], v.as_slice())?),
                (Table::Output, None) => drop(output.remove(&key[..])?),
                (Table::OutputHeads, Some(v)) => drop(heads.insert(&key[..], v.as_slice())?),
                (Table::OutputHeads, None) => drop(heads.remove(&key[..])?),
                (Table::Batches, Some(v)) => {
                    drop(batches.insert(text(key).as_str(), v.as_slice())?)
                }
                (Table::Batches, None) => drop(batches.remove(text(key).as_str())?),
                (Table::Audit | Table::Samples, value) => {
                    let n = u64::from_be_bytes(key[..].try_into().unwrap_or_default());
                    let t = if *table == Table::Audit {
                        &mut audit
                    } else {
                        &mut samples
                    };
                    match value {
                        Some(v) => drop(t.insert(n, v.as_slice())?),
                        None => drop(t.remove(n)?),
                    }
                }
            }
        }
        let mut t = archive::Tables {
            archive: &mut archive,
            ids: &mut archive_ids,
            copies: &mut copies,
            payloads: &mut payloads,
            recent: &mut recent,
            output: &mut output,
            heads: &mut heads,
        };
        for key in let_go {
            // An archived copy keeps its publish's payload: the archive's
            // sweep lets go of it with the last of them.
            let archived = match <[u8; 16]>::try_from(&key[..]) {
                Ok(p) => archive::holds_copy_of(&t, p)?,
                Err(_) => false,
            };
            if !archived {
                t.payloads.remove(&key[..])?;
            }
        }
        for &p in &changes.unarchived_publishes {
            if !archive::payload_needed(&t, p)? {
                t.payloads.remove(&p[..])?;
            }
        }
        if let Some((rules, plan, now)) = sweep {
            plan.archived(&changes.archived_queues, now);
            archive::sweep(&mut t, rules, plan, now)?;
        }
        if let Some(c) = &changes.counters {
            let encoded = serde_json::to_vec(c).unwrap_or_default();
            meta.insert(COUNTERS_KEY, encoded.as_slice())?;
        }
        let seq = serde_json::to_vec(&changes.last_seq).expect("a number encodes");
        meta.insert(WAL_SEQ_KEY, seq.as_slice())?;
    }
    txn.commit()?;
    Ok(())
}

/// A record in the file that a change to the archive needs and no cut
/// holds (see `Coalesced::add`): an archived copy's record, a removed
/// one's place or log. A failed read finds nothing, and is logged: the
/// copy is then deleted rather than archived, or stays archived.
pub(super) fn file_record(db: &Database, table: Table, key: &[u8]) -> Option<Vec<u8>> {
    let def = match table {
        Table::Copies => COPIES,
        Table::ArchiveIds => ARCHIVE_IDS,
        Table::OutputHeads => OUTPUT_HEADS,
        _ => return None,
    };
    let read = || -> Result<Option<Vec<u8>>, redb::Error> {
        let txn = db.begin_read()?;
        let t = match txn.open_table(def) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(t.get(key)?.map(|v| v.value().to_vec()))
    };
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)) {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => {
            tracing::error!(error = %e, ?table, "a record the archive needs could not be read");
            None
        }
        Err(_) => {
            tracing::error!(?table, "reading a record the archive needs panicked");
            None
        }
    }
}
