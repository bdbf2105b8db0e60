//! The records a change writes: what the embedded journal stores in its
//! tables and what a shared log carries between nodes (postcard), and the one
//! way a stored record becomes state (`apply`), used at start-up, after a
//! failed commit, and for other nodes' changes.

use serde::{Deserialize, Serialize};

use super::meta::{Flow, Meta, SearchFields};
use super::state::State;
use crate::model::{
    AuditEntry, BatchRecord, Counters, QueueName, QueueSettings, ScheduleRecord, TaskId, TaskState,
    WorkerId, WorkerRecord,
};
use crate::store::{StoreError, AUDIT_KEPT};

/// One record written or removed. Carried by shared logs (postcard), so
/// variants are only ever added at the end.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Op {
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
    /// Nothing but a commit, so that the totals it carries are written.
    Sync,
    /// Page `n` of a copy's log (see `engine::output`).
    PutOutput([u8; 16], u32, Vec<u8>),
    DeleteOutput([u8; 16], u32),
    /// Where a copy's log stands: its first page kept, its length.
    OutputHead([u8; 16], u32, u64),
    /// A removed copy's log is gone.
    DropOutput([u8; 16]),
    /// A batch by its id (JSON).
    PutBatch(String, Vec<u8>),
    DeleteBatch(String),
    /// The totals at a time (ms), for the throughput chart (JSON).
    PutSample(u64, Vec<u8>),
    DeleteSample(u64),
    /// A publish in the publish log, by its id (JSON).
    PutRecent([u8; 16], Vec<u8>),
    DeleteRecent([u8; 16]),
    /// A finished copy leaves the state for the log's archive: its record
    /// (as `PutCopy`'s; empty: the one the log holds, written by the last
    /// `PutCopy` of the copy), its queue and when it finished (ms). Only a
    /// log that `archives` is given these.
    ArchiveCopy([u8; 16], String, u64, Vec<u8>),
    /// An archived copy is removed, with its log (an operator's removal;
    /// the archive's own sweep needs no record).
    DeleteArchived([u8; 16]),
    /// A shared log's entry names the entry before it and itself (random
    /// ids): an entry written after one that was never written is then not
    /// read as the successor of whatever was written there since (see
    /// `couchbase::log`). First in the entry; nothing to the state.
    Link {
        prev: u64,
        this: u64,
    },
}

impl Op {
    /// Roughly its encoded size.
    pub fn size(&self) -> usize {
        16 + match self {
            Op::PutCopy(_, v)
            | Op::PutPayload(_, v)
            | Op::PutWorker(_, v)
            | Op::PutAudit(_, v)
            | Op::PutSample(_, v)
            | Op::PutRecent(_, v)
            | Op::PutOutput(_, _, v) => v.len(),
            Op::ArchiveCopy(_, q, _, v) => q.len() + 8 + v.len(),
            Op::PutInterests(k, v)
            | Op::PutQueueSettings(k, v)
            | Op::PutSchedule(k, v)
            | Op::PutBatch(k, v) => k.len() + v.len(),
            Op::DeleteInterests(k)
            | Op::DeleteQueueSettings(k)
            | Op::DeleteSchedule(k)
            | Op::DeleteBatch(k) => k.len(),
            Op::DeleteCopy(_)
            | Op::DeletePayload(_)
            | Op::DeleteWorker(_)
            | Op::DeleteAudit(_)
            | Op::DeleteSample(_)
            | Op::DeleteRecent(_)
            | Op::DeleteOutput(..)
            | Op::OutputHead(..)
            | Op::DropOutput(_)
            | Op::DeleteArchived(_)
            | Op::Sync
            | Op::Link { .. } => 0,
        }
    }
}

/// One change as it is made durable: its records, and the totals after it.
/// Totals travel with the change that moved them, so that a crash can never
/// leave them ahead of or behind the records.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Batch {
    pub ops: Vec<Op>,
    pub counters: Counters,
}

/// A copy's record: the `Meta` (postcard), then its group when it has one
/// or anything after (empty for none), then its workflow place when it has
/// one or search fields (the empty place for none), then its search fields.
/// Fields added later go after the record rather than into it, so that
/// records written before them read as they were (postcard does not
/// describe itself: a field added inside would misread every older record).
pub(super) fn put_copy(m: &Meta) -> Op {
    let mut bytes = postcard::to_stdvec(m).expect("a copy encodes");
    if m.group.is_some() || m.flow.is_some() || m.search.is_some() {
        let group = m.group.as_deref().unwrap_or("");
        bytes = postcard::to_extend(group, bytes).expect("a group encodes");
    }
    if m.flow.is_some() || m.search.is_some() {
        let none = Flow::default();
        let flow = m.flow.as_deref().unwrap_or(&none);
        bytes = postcard::to_extend(flow, bytes).expect("a workflow place encodes");
    }
    if let Some(search) = &m.search {
        bytes = postcard::to_extend(&**search, bytes).expect("search fields encode");
    }
    Op::PutCopy(*m.task_id.as_bytes(), bytes)
}

pub(super) fn interests_op(queue: &QueueName, interests: &serde_json::Value) -> Op {
    Op::PutInterests(queue.to_string(), json(interests))
}

pub(super) fn worker_op(w: &WorkerRecord) -> Op {
    Op::PutWorker(*w.worker_id.as_bytes(), json(w))
}

pub(super) fn settings_op(queue: &QueueName, settings: &QueueSettings) -> Op {
    Op::PutQueueSettings(queue.to_string(), json(settings))
}

pub(super) fn schedule_op(s: &ScheduleRecord) -> Op {
    Op::PutSchedule(s.name.clone(), json(s))
}

pub(super) fn batch_op(b: &BatchRecord) -> Op {
    Op::PutBatch(b.id.clone(), json(b))
}

pub(super) fn put_recent(r: &crate::model::PublishRecord) -> Op {
    Op::PutRecent(*r.publish_id.as_bytes(), json(r))
}

pub(super) fn sample_op(at: u64, counters: &crate::model::Counters) -> Op {
    Op::PutSample(at, json(counters))
}

pub(super) fn audit_op(seq: u64, entry: &AuditEntry) -> Op {
    Op::PutAudit(seq, json(entry))
}

fn json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("a record encodes as JSON")
}

pub(super) fn decode_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn decode_copy(bytes: &[u8]) -> Result<Meta, StoreError> {
    let corrupt = |e: postcard::Error| StoreError::Corrupt(format!("a copy's record: {e}"));
    let (mut meta, rest): (Meta, &[u8]) = postcard::take_from_bytes(bytes).map_err(corrupt)?;
    if rest.is_empty() {
        return Ok(meta);
    }
    let (group, rest): (&str, &[u8]) = postcard::take_from_bytes(rest).map_err(corrupt)?;
    if !group.is_empty() {
        meta.group = Some(group.into());
    }
    if rest.is_empty() {
        return Ok(meta);
    }
    let (flow, rest): (Flow, &[u8]) = postcard::take_from_bytes(rest).map_err(corrupt)?;
    if flow != Flow::default() {
        meta.flow = Some(Box::new(flow));
    }
    if !rest.is_empty() {
        let (fields, _): (SearchFields, &[u8]) =
            postcard::take_from_bytes(rest).map_err(corrupt)?;
        meta.search = Some(Box::new(fields));
    }
    Ok(meta)
}

fn queue_of(name: &str) -> Result<QueueName, StoreError> {
    QueueName::parse(name).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Applies one stored record to the state, as the change that wrote it did.
pub(super) fn apply(st: &mut State, op: &Op) -> Result<(), StoreError> {
    match op {
        // Another node's change: what waits for a copy that ended there
        // counts it here too (that node released or cancelled it in the
        // same change, whose records follow).
        Op::PutCopy(_, bytes) => {
            let m = decode_copy(bytes)?;
            let was = st.remove(m.task_id).map(|old| old.state);
            let (id, now, at) = (m.task_id, m.state, m.finished_at());
            // Claimed there: it takes a token of its queue's rate here too,
            // or each node would let the whole rate through.
            let claimed = match m.extra.as_ref().and_then(|e| e.started_at) {
                Some(at) if now == TaskState::Running && was.is_some_and(|s| s != now) => {
                    Some((m.queue.clone(), at))
                }
                _ => None,
            };
            st.insert(m);
            if was.is_some_and(|s| !s.has_ended()) && now.has_ended() {
                st.dependency_ended(id, Some(now), at);
            }
            if let Some((queue, at)) = claimed {
                st.spend_claimed_elsewhere(&queue, at);
            }
        }
        Op::DeleteCopy(k) | Op::ArchiveCopy(k, ..) => {
            let id = TaskId::from_bytes(*k);
            if st.remove(id).is_some_and(|old| !old.state.has_ended()) {
                st.dependency_ended(id, None, None);
            }
            // An archived copy's log goes with it, out of memory (a
            // removed one's has its own `DropOutput`).
            st.outputs.remove(&id);
        }
        Op::PutInterests(name, bytes) => {
            st.interests.insert(queue_of(name)?, decode_json(bytes)?);
            st.interests_version += 1;
        }
        Op::DeleteInterests(name) => {
            st.interests.remove(&queue_of(name)?);
            st.interests_version += 1;
        }
        Op::PutWorker(_, bytes) => {
            let w: WorkerRecord = decode_json(bytes)?;
            st.workers.insert(w.worker_id, w);
        }
        Op::DeleteWorker(k) => {
            st.workers.remove(&WorkerId::from_bytes(*k));
        }
        // New limits start a new token bucket.
        Op::PutQueueSettings(name, bytes) => {
            let queue = queue_of(name)?;
            st.buckets.remove(&queue);
            st.queue_settings.insert(queue.clone(), decode_json(bytes)?);
            st.groups_reset(&queue);
        }
        Op::DeleteQueueSettings(name) => {
            let queue = queue_of(name)?;
            st.buckets.remove(&queue);
            st.queue_settings.remove(&queue);
            st.groups_reset(&queue);
        }
        Op::PutSchedule(_, bytes) => {
            let schedule: ScheduleRecord = decode_json(bytes)?;
            st.schedules.insert(schedule.name.clone(), schedule);
        }
        Op::DeleteSchedule(name) => {
            st.schedules.remove(name);
        }
        Op::PutAudit(seq, bytes) => {
            st.audit.push_back((*seq, decode_json(bytes)?));
            while st.audit.len() > AUDIT_KEPT {
                st.audit.pop_front();
            }
        }
        Op::DeleteAudit(seq) => st.audit.retain(|(s, _)| s != seq),
        Op::OutputHead(k, first, total) => {
            let head = st.outputs.entry(TaskId::from_bytes(*k)).or_default();
            head.first = *first;
            head.total = *total;
        }
        Op::DropOutput(k) => {
            st.outputs.remove(&TaskId::from_bytes(*k));
        }
        Op::PutBatch(_, bytes) => st.batches.put(decode_json(bytes)?),
        Op::DeleteBatch(id) => st.batches.remove(id),
        Op::PutSample(at, bytes) => {
            st.samples.insert(*at, decode_json(bytes)?);
        }
        Op::DeleteSample(at) => {
            st.samples.remove(at);
        }
        Op::PutRecent(_, bytes) => st.recent.put(decode_json(bytes)?),
        Op::DeleteRecent(id) => st.recent.remove(&TaskId::from_bytes(*id)),
        // Payloads and log pages are read where they are stored, never held
        // in the state.
        Op::PutPayload(..)
        | Op::DeletePayload(_)
        | Op::PutOutput(..)
        | Op::DeleteOutput(..)
        | Op::DeleteArchived(_)
        | Op::Sync
        | Op::Link { .. } => {}
    }
    Ok(())
}

/// Applies entries another node committed, each once, in order.
pub(super) fn apply_entries(st: &mut State, news: super::log::News) -> Result<(), StoreError> {
    for (seq, batch) in news {
        if seq <= st.applied {
            continue;
        }
        if seq != st.applied + 1 {
            return Err(StoreError::Corrupt(format!(
                "the log jumps from entry {} to {seq}",
                st.applied
            )));
        }
        for op in &batch.ops {
            apply(st, op)?;
        }
        st.counters = batch.counters;
        st.counters_committed = batch.counters;
        st.applied = seq;
    }
    Ok(())
}

/// The whole state as records that rebuild it from nothing.
pub(super) fn snapshot(st: &State) -> Batch {
    let mut ops: Vec<Op> = st.tasks.values().map(put_copy).collect();
    ops.extend(st.interests.iter().map(|(q, v)| interests_op(q, v)));
    ops.extend(st.workers.values().map(worker_op));
    ops.extend(st.queue_settings.iter().map(|(q, s)| settings_op(q, s)));
    ops.extend(st.schedules.values().map(schedule_op));
    ops.extend(st.batches.records.values().map(batch_op));
    ops.extend(st.audit.iter().map(|(seq, e)| audit_op(*seq, e)));
    ops.extend(st.samples.iter().map(|(at, c)| sample_op(*at, c)));
    ops.extend(st.recent.records.values().map(put_recent));
    ops.extend(
        st.outputs
            .iter()
            .map(|(id, h)| Op::OutputHead(*id.as_bytes(), h.first, h.total)),
    );
    Batch {
        ops,
        counters: st.counters,
    }
}
