//! The seam between the engine and where its changes become durable: a redb
//! file written by one node (`store::embedded`), or a log in a Couchbase
//! bucket shared by several (`store::couchbase`). A log stores and returns
//! [`Batch`]es; it knows nothing of tasks.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use super::ops::Batch;
use crate::store::{StoreError, StoreStats};

/// Publishes' payloads (their `data` as JSON text), by the publish id's
/// bytes.
pub type Payloads = HashMap<[u8; 16], Vec<u8>>;

/// Entries other nodes committed, with their numbers, oldest first.
pub type News = Vec<(u64, Batch)>;

/// An archived copy's place in its queue's archive: when it finished (ms)
/// and its id. A queue's archive is in this order.
pub type ArchivePlace = (u64, [u8; 16]);

/// Which way a page of an archive is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveWalk {
    /// Newest first, from the one before this place (from the newest
    /// without one).
    Older(Option<ArchivePlace>),
    /// Oldest first, from the one after this place.
    Newer(ArchivePlace),
}

/// Where the engine's changes are made durable.
///
/// A change goes `begin` -> `stage` (under the engine's state lock, so that
/// the log's order is the order the state changed in) -> `commit`, or
/// `begin` -> `abandon` when it changed nothing. A failed `commit` may or may
/// not have stored the change; the engine then reads the whole state back
/// (`reset`, `load`) before it makes another.
pub trait Log: Send + Sync + std::fmt::Debug + 'static {
    /// The right to make one change, from `begin` to `commit` or `abandon`.
    type Turn: Send;

    /// Waits until a change may be made. `applied` says the last entry the
    /// state holds, asked once the wait is over (the state may have taken
    /// in other nodes' entries meanwhile); the answer brings the entries
    /// other nodes committed since, numbered, to be applied before the
    /// change is computed.
    fn begin(
        &self,
        applied: &(dyn Fn() -> u64 + Sync),
    ) -> impl Future<Output = Result<(Self::Turn, News), StoreError>> + Send;

    /// Queues the change's records. `applied` is the last entry the state
    /// holds; the answer is the entry the change goes in, which the state
    /// then holds: `applied + 1`, or `applied` itself when the log groups
    /// this change into an entry still open (several changes of one node
    /// in one write). Called while the state is locked.
    fn stage(&self, turn: &mut Self::Turn, applied: u64, batch: Batch) -> u64;

    /// Every entry up to this one is durable, as far as this node knows
    /// (entries of its own, numbered as `stage` answered; 0 while a failed
    /// write waits for the state to be read back).
    fn durable(&self) -> u64;

    /// Makes what was staged durable. Returns only once it is, or failed.
    fn commit(&self, turn: Self::Turn) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Lets go of a turn that staged nothing.
    fn abandon(&self, turn: Self::Turn);

    /// For reads: the entries other nodes committed after `applied`.
    fn news(&self, applied: u64) -> impl Future<Output = Result<News, StoreError>> + Send;

    /// The payloads of these publishes; absent ones are left out.
    fn payloads(
        &self,
        publishes: &[[u8; 16]],
    ) -> impl Future<Output = Result<Payloads, StoreError>> + Send;

    /// Pages of a copy's log (`engine::output`) in `pages`, in order; absent
    /// ones are left out.
    fn output_pages(
        &self,
        copy: [u8; 16],
        pages: std::ops::Range<u32>,
    ) -> impl Future<Output = Result<Vec<(u32, Vec<u8>)>, StoreError>> + Send;

    /// Everything stored, oldest first, as batches for `apply`; the number of
    /// the last entry it holds.
    fn load(
        &self,
        apply: &mut (dyn FnMut(Batch) -> Result<(), StoreError> + Send),
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Makes the log readable from the start again after a failed commit
    /// (reopening a file, forgetting a position). Fails while the cause
    /// lasts (a full disk, a database that does not answer).
    fn reset(&self) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Whether a snapshot of the state as of entry `applied` should be
    /// written in this turn (shared logs, so that a starting node reads a
    /// bounded log).
    fn snapshot_due(&self, _applied: u64) -> bool {
        false
    }

    /// Writes the whole state as of entry `applied`.
    fn write_snapshot(
        &self,
        _turn: &mut Self::Turn,
        _applied: u64,
        _snapshot: Batch,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        async { Ok(()) }
    }

    /// Whether the log refuses changes until it is read back whole (its
    /// changes may have been refused after the state took them).
    fn needs_reset(&self) -> bool {
        false
    }

    fn stats(&self) -> StoreStats;

    /// At shutdown, before `close`: gives up what this node holds for the
    /// cluster (its partitions' leases), so that other nodes take it at once.
    fn leave(&self) -> impl Future<Output = Result<(), StoreError>> + Send {
        async { Ok(()) }
    }

    /// Closes what the log holds open, at shutdown, rather than whenever its
    /// last handle happens to be dropped (which an exiting process may never
    /// reach); changes after it fail.
    fn close(&self) {}

    /// Whether finished copies that leave the state are kept in an archive
    /// (`Op::ArchiveCopy`), which the log sweeps by its own rules and which
    /// keeps the payloads its copies need past the state's `DeletePayload`.
    /// A log that does not archive is never given `ArchiveCopy`.
    fn archives(&self) -> bool {
        false
    }

    /// The time by the service's clock, at every tick: what the archive's
    /// sweep measures ages by.
    fn tell_time(&self, _now: crate::model::Millis) {}

    /// An archived copy's record (as `PutCopy` carries it).
    fn archived(
        &self,
        _copy: [u8; 16],
    ) -> impl Future<Output = Result<Option<Vec<u8>>, StoreError>> + Send {
        async { Ok(None) }
    }

    /// Where an archived copy's log stands (its first page kept and its
    /// length), when it has one; its pages are read by `output_pages`.
    fn archived_log(
        &self,
        _copy: [u8; 16],
    ) -> impl Future<Output = Result<Option<(u32, u64)>, StoreError>> + Send {
        async { Ok(None) }
    }

    /// The archived records of a publish's copies, in id order.
    fn archived_of_publish(
        &self,
        _publish: [u8; 16],
    ) -> impl Future<Output = Result<Vec<Vec<u8>>, StoreError>> + Send {
        async { Ok(Vec::new()) }
    }

    /// Up to `limit` of a queue's archived records with their places, read
    /// as `walk` says.
    fn archive_page(
        &self,
        _queue: &str,
        _walk: ArchiveWalk,
        _limit: usize,
    ) -> impl Future<Output = Result<Vec<(ArchivePlace, Vec<u8>)>, StoreError>> + Send {
        async { Ok(Vec::new()) }
    }

    /// For a log other nodes write too: how often a node should look for
    /// their changes that no local event announces.
    fn poll_interval(&self) -> Option<Duration> {
        None
    }
}
