//! What a Couchbase bucket keeps of its log, and for how long.
//!
//! A node starts from the latest snapshot and the log entries after it, so
//! those never expire, however quiet the cluster is (a week with fewer
//! changes than a snapshot takes, or every node stopped for a month). Once a
//! newer snapshot covers them, the entries and the snapshot it replaced are
//! *retired*: given an expiry of [`RETIRED_KEPT`], so that a node that lags
//! or is still reading the older snapshot has that long to finish. The
//! snapshot's pointer only moves forward: a writer that stalled and finds a
//! newer pointer drops its snapshot. A snapshot is noted in the `retired`
//! document before its chunks are written, so that the chunks of one that
//! was never finished are retired too, rather than kept for good.
//!
//! The steps are written over [`Docs`], which the bucket implements with its
//! key-value calls and `tests/integration/retention.rs` with a model bucket
//! whose documents expire by a simulated clock.

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::StoreError;

/// How long retired entries and snapshots stay readable.
pub const RETIRED_KEPT: Duration = Duration::from_secs(7 * 86_400);
/// The latest snapshot's pointer.
pub const POINTER: &str = "snapshot";
/// How far retirement got.
pub const RETIRED: &str = "retired";
/// Documents given their expiry in one step of a retirement.
const RETIRE_STEP: u64 = 1000;

/// Log entry `seq`.
pub fn entry_key(seq: u64) -> String {
    format!("log::{seq}")
}

/// Chunk `i` of the snapshot as of entry `seq`.
pub fn chunk_key(seq: u64, i: u32) -> String {
    format!("snapshot::{seq}::{i}")
}

/// Where the latest snapshot is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotPointer {
    /// The log entry the snapshot includes, and all before it.
    pub seq: u64,
    pub chunks: u32,
    /// Absent in pointers written before formats were numbered (format 1).
    #[serde(default)]
    pub format: Option<u64>,
    /// The id of entry `seq` (`chain`); absent before entries had ids.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<u64>,
}

/// The `retired` document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retired {
    /// Entries up to this one have their expiry.
    pub seq: u64,
    /// Snapshots (their entry, their chunks) whose chunks do not have
    /// theirs yet: each is noted before its chunks are written, and the
    /// first retirement of a newer snapshot retires it.
    #[serde(default)]
    pub snapshots: Vec<(u64, u32)>,
}

/// Changes the `retired` document with `change`, over other writers' changes
/// (by CAS); the document as written.
async fn update_retired(
    docs: &impl Docs,
    change: impl Fn(&mut Retired),
    fresh: Retired,
) -> Result<Retired, StoreError> {
    for _ in 0..16 {
        let (mut retired, cas) = match docs.get(RETIRED).await? {
            Some((bytes, cas)) => {
                let r = serde_json::from_slice(&bytes)
                    .map_err(|e| StoreError::Corrupt(format!("the retired document: {e}")))?;
                (r, Some(cas))
            }
            None => (fresh.clone(), None),
        };
        change(&mut retired);
        let bytes = serde_json::to_vec(&retired).expect("json encodes");
        let written = match cas {
            Some(cas) => docs.replace(RETIRED, &bytes, cas).await?,
            None => docs.insert(RETIRED, &bytes).await?,
        };
        if written {
            return Ok(retired);
        }
    }
    Err(StoreError::Unavailable(
        "the retired document kept changing under this node".into(),
    ))
}

/// The key-value calls the snapshot's steps make. Names are without the
/// bucket's key prefix; documents are written without an expiry.
pub trait Docs: Sync {
    /// A document's bytes and CAS; `None` when it does not exist.
    fn get(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<(Vec<u8>, u64)>, StoreError>> + Send;
    fn upsert(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Creates a document; false when it exists.
    fn insert(
        &self,
        name: &str,
        bytes: &[u8],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Replaces the version `cas` of a document; false when it changed or
    /// went.
    fn replace(
        &self,
        name: &str,
        bytes: &[u8],
        cas: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Removes a document; one that is gone is no error.
    fn remove(&self, name: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Gives documents an expiry, `after` from now; those that are gone are
    /// no error.
    fn expire(
        &self,
        names: Vec<String>,
        after: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Commits entry `seq`, kept until a snapshot covers it; false when
/// another node committed an entry `seq` first.
pub async fn append(docs: &impl Docs, seq: u64, bytes: &[u8]) -> Result<bool, StoreError> {
    docs.insert(&entry_key(seq), bytes).await
}

/// What writing a snapshot came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// It is the latest; it replaced this one (to retire), if any.
    Latest { replaced: Option<SnapshotPointer> },
    /// Another node's snapshot, as of this entry or a later one, is the
    /// latest: this one was not kept.
    Superseded,
}

/// The latest snapshot's pointer and its CAS.
pub async fn pointer(docs: &impl Docs) -> Result<Option<(SnapshotPointer, u64)>, StoreError> {
    match docs.get(POINTER).await? {
        Some((bytes, cas)) => serde_json::from_slice(&bytes)
            .map(|p| Some((p, cas)))
            .map_err(|e| StoreError::Corrupt(format!("the snapshot pointer: {e}"))),
        None => Ok(None),
    }
}

/// Writes a snapshot of the state as of entry `seq`, its chunks then its
/// pointer, which moves only forward.
pub async fn write_snapshot(
    docs: &impl Docs,
    seq: u64,
    link: Option<u64>,
    chunks: &[Vec<u8>],
    format: u64,
) -> Result<Written, StoreError> {
    let before = pointer(docs).await?;
    if before.is_some_and(|(p, _)| p.seq >= seq) {
        return Ok(Written::Superseded);
    }
    let noted = (seq, chunks.len() as u32);
    let fresh = Retired {
        seq: before.map_or(0, |(p, _)| p.seq),
        snapshots: Vec::new(),
    };
    update_retired(docs, |r| push_new(&mut r.snapshots, noted), fresh).await?;
    for (i, chunk) in chunks.iter().enumerate() {
        docs.upsert(&chunk_key(seq, i as u32), chunk).await?;
    }
    let mine = SnapshotPointer {
        seq,
        chunks: chunks.len() as u32,
        format: Some(format),
        link,
    };
    let bytes = serde_json::to_vec(&mine).expect("json encodes");
    let written = match before {
        Some((_, cas)) => docs.replace(POINTER, &bytes, cas).await?,
        None => docs.insert(POINTER, &bytes).await?,
    };
    if written {
        return Ok(Written::Latest {
            replaced: before.map(|(p, _)| p),
        });
    }
    // Another node moved the pointer meanwhile. Chunks of another entry are
    // this snapshot's alone; those of the same entry are the same bytes
    // (the same state, encoded alike), and may be the latest's.
    if pointer(docs).await?.is_none_or(|(p, _)| p.seq != seq) {
        for i in 0..chunks.len() as u32 {
            docs.remove(&chunk_key(seq, i)).await?;
        }
    }
    Ok(Written::Superseded)
}

fn push_new(snapshots: &mut Vec<(u64, u32)>, s: (u64, u32)) {
    if !snapshots.contains(&s) {
        snapshots.push(s);
    }
}

/// Retires what the snapshot as of entry `newest` (one that became the
/// latest) covers: the entries up to it, and the snapshots before it,
/// `replaced` among them. Snapshots noted as of `newest` or later are left:
/// one of them is the latest (the pointer only moves forward).
pub async fn retire(
    docs: &impl Docs,
    replaced: Option<SnapshotPointer>,
    newest: u64,
) -> Result<(), StoreError> {
    // A bucket written before retirement has no such document: the
    // entries up to the snapshot replaced were written with their expiry.
    let fresh = Retired {
        seq: replaced.map_or(0, |p| p.seq),
        snapshots: Vec::new(),
    };
    let retired = update_retired(
        docs,
        |r| {
            if let Some(p) = replaced {
                push_new(&mut r.snapshots, (p.seq, p.chunks));
            }
        },
        fresh.clone(),
    )
    .await?;
    let mut from = retired.seq + 1;
    while from <= newest {
        let to = newest.min(from + RETIRE_STEP - 1);
        docs.expire((from..=to).map(entry_key).collect(), RETIRED_KEPT)
            .await?;
        from = to + 1;
    }
    let older: Vec<(u64, u32)> = retired
        .snapshots
        .iter()
        .copied()
        .filter(|&(seq, _)| seq < newest)
        .collect();
    for &(seq, chunks) in &older {
        docs.expire(
            (0..chunks).map(|i| chunk_key(seq, i)).collect(),
            RETIRED_KEPT,
        )
        .await?;
    }
    update_retired(
        docs,
        |r| {
            r.seq = r.seq.max(newest);
            r.snapshots.retain(|s| !older.contains(s));
        },
        fresh.clone(),
    )
    .await?;
    Ok(())
}

/// Where a node that applied entry `applied` stands, when the bucket has no
/// entry after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// `applied` is the log's last entry: the next change is `applied + 1`.
    Current,
    /// A snapshot newer than `applied` exists and the entries between were
    /// retired and have expired: the node must read the snapshot.
    Behind,
}

/// Checks that the log did not go back behind `applied` (the bucket
/// emptied, or restored from an older copy) before a node writes the entry
/// after it, which would otherwise succeed and absorb the loss. Refused
/// (`Corrupt`) when it did.
pub async fn check_head(docs: &impl Docs, applied: u64) -> Result<Head, StoreError> {
    if applied > 0 && docs.get(&entry_key(applied)).await?.is_some() {
        return Ok(Head::Current);
    }
    match pointer(docs).await? {
        None if applied == 0 => Ok(Head::Current),
        Some((p, _)) if p.seq == applied => Ok(Head::Current),
        Some((p, _)) if p.seq > applied => Ok(Head::Behind),
        found => Err(StoreError::Corrupt(format!(
            "the bucket's log ends before entry {applied}, which this node applied (latest snapshot: {}): it was emptied or restored from an older copy; this node refuses to write into it",
            found.map_or("none".to_owned(), |(p, _)| format!("as of {}", p.seq))
        ))),
    }
}

/// What a starting node reads: the latest snapshot's pointer and chunks,
/// then the entries after it, in order, until one is missing.
pub async fn read_all(docs: &impl Docs) -> Result<Bucket, StoreError> {
    let mut read = Bucket::default();
    let mut seq = 0;
    if let Some((p, _)) = pointer(docs).await? {
        for i in 0..p.chunks {
            let name = chunk_key(p.seq, i);
            let (bytes, _) = docs
                .get(&name)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("{name} is missing")))?;
            read.chunks.push(bytes);
        }
        seq = p.seq;
        read.pointer = Some(p);
    }
    read.entries = entries_after(docs, seq).await?;
    Ok(read)
}

/// The entries after `after`, in order, until one is missing.
pub async fn entries_after(
    docs: &impl Docs,
    after: u64,
) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    let mut out = Vec::new();
    let mut seq = after + 1;
    // The log's head is not known: one entry first (a node that is caught
    // up, the usual case, pays one call), then ever wider windows read at
    // once, so that a node catching up on K entries another wrote pays
    // about K / 64 round trips rather than K. A reader stops at the first
    // entry missing, as it always did: the entries after a gap are not
    // applied.
    let mut width = 1u64;
    loop {
        let names: Vec<String> = (seq..seq + width).map(entry_key).collect();
        let window =
            futures_util::future::try_join_all(names.iter().map(|name| docs.get(name))).await?;
        for found in window {
            let Some((bytes, _)) = found else {
                return Ok(out);
            };
            out.push((seq, bytes));
            seq += 1;
        }
        width = (width * 4).min(ENTRIES_AT_ONCE);
    }
}

/// The widest window of entries read at once.
const ENTRIES_AT_ONCE: u64 = 64;

/// A bucket's log as a starting node reads it.
#[derive(Debug, Default)]
pub struct Bucket {
    pub pointer: Option<SnapshotPointer>,
    pub chunks: Vec<Vec<u8>>,
    pub entries: Vec<(u64, Vec<u8>)>,
}
