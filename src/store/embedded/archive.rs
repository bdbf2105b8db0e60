//! The archive: finished copies that left the state (`Op::ArchiveCopy`),
//! kept in the file by queue and finish time so that history reaches back
//! an hour or more without costing memory. Copies are swept from it by age
//! at checkpoints, keeping at least the newest few of each queue, and with
//! the last of a publish's copies goes its payload.

use std::collections::{BTreeMap, HashSet};

use redb::{ReadableTable, Table as RedbTable};

use crate::model::TaskId;
use crate::store::engine::log::ArchivePlace;
use crate::store::engine::output::PAGE;

/// Most archived copies one checkpoint sweeps: a backlog (after a long
/// stop, or a lowered retention) is worked off over several.
const SWEEP_MAX: usize = 20_000;

/// How long the archive keeps copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveRules {
    /// Finished copies are archived and kept this long (ms) after they
    /// finished; 0: not archived (they are deleted when they leave the
    /// state, and what an earlier run archived is swept).
    pub keep_ms: u64,
    /// The newest copies of each queue kept however old.
    pub at_least: usize,
}

impl Default for ArchiveRules {
    fn default() -> Self {
        Self {
            keep_ms: 3_600_000,
            at_least: 10_000,
        }
    }
}

/// A copy's key in the archive: its queue (names hold no NUL), a NUL, when
/// it finished and its id, so that a queue's copies are one range, oldest
/// first.
pub(super) fn key(queue: &str, (at, id): ArchivePlace) -> Box<[u8]> {
    let mut k = Vec::with_capacity(queue.len() + 25);
    k.extend_from_slice(queue.as_bytes());
    k.push(0);
    k.extend_from_slice(&at.to_be_bytes());
    k.extend_from_slice(&id);
    k.into()
}

/// A key's place (its last 24 bytes).
pub(super) fn place_of(key: &[u8]) -> Option<ArchivePlace> {
    let tail = key.len().checked_sub(24).map(|n| &key[n..])?;
    let at = u64::from_be_bytes(tail[..8].try_into().ok()?);
    let id = tail[8..].try_into().ok()?;
    Some((at, id))
}

/// The keys of a queue's archive before `before` (all of them without).
pub(super) fn range(queue: &str, before: Option<ArchivePlace>) -> std::ops::Range<Vec<u8>> {
    let mut start = queue.as_bytes().to_vec();
    start.push(0);
    let end = match before {
        Some(place) => key(queue, place).to_vec(),
        None => {
            let mut end = queue.as_bytes().to_vec();
            end.push(1);
            end
        }
    };
    start..end
}

/// The keys of a queue's archive after `after`.
pub(super) fn range_after(queue: &str, after: ArchivePlace) -> std::ops::Range<Vec<u8>> {
    // Keys of a queue are of one length: the next after a key is it and a 0.
    let mut start = key(queue, after).to_vec();
    start.push(0);
    let mut end = queue.as_bytes().to_vec();
    end.push(1);
    start..end
}

/// The id of the publish a copy belongs to, as bytes.
pub(super) fn publish_of(copy: [u8; 16]) -> [u8; 16] {
    *TaskId::from_bytes(copy).publish().as_bytes()
}

/// The copy ids a publish's copies may have, as bytes.
pub(super) fn copies_of(publish: [u8; 16]) -> std::ops::RangeInclusive<[u8; 16]> {
    let (lo, hi) = TaskId::from_bytes(publish).copy_range();
    *lo.as_bytes()..=*hi.as_bytes()
}

/// When each queue's archive is next worth sweeping, so that a quiet queue
/// holding its `at_least` is not walked at every checkpoint.
#[derive(Debug, Default)]
pub(super) struct SweepPlan {
    /// Queue -> the time (ms) from which a sweep may find something. A
    /// queue absent has nothing to sweep until copies are archived into it.
    due: BTreeMap<String, u64>,
    /// Every queue in the file is looked at (after opening it).
    looked: bool,
}

impl SweepPlan {
    /// Copies were archived into these queues.
    pub fn archived(&mut self, queues: &HashSet<String>, now: u64) {
        for q in queues {
            // A queue waiting for its next copy to age gains nothing from
            // more copies before then.
            self.due.entry(q.clone()).or_insert(now);
        }
    }
}

type Tree<'t> = RedbTable<'t, &'static [u8], &'static [u8]>;

/// The tables a sweep changes, open in the checkpoint's transaction.
pub(super) struct Tables<'a, 't> {
    pub archive: &'a mut Tree<'t>,
    pub ids: &'a mut Tree<'t>,
    pub copies: &'a mut Tree<'t>,
    pub payloads: &'a mut Tree<'t>,
    pub recent: &'a mut Tree<'t>,
    pub output: &'a mut Tree<'t>,
    pub heads: &'a mut Tree<'t>,
}

/// Whether anything the file holds still needs the payload of `publish`:
/// a copy in the state or the archive, or the publish log.
pub(super) fn payload_needed(t: &Tables<'_, '_>, publish: [u8; 16]) -> Result<bool, redb::Error> {
    let range = copies_of(publish);
    let (lo, hi) = (range.start(), range.end());
    Ok(holds_copy_of(t, publish)?
        || t.copies.range(&lo[..]..=&hi[..])?.next().is_some()
        || t.recent.get(&publish[..])?.is_some())
}

/// Whether the archive holds a copy of the publish `publish`.
pub(super) fn holds_copy_of(t: &Tables<'_, '_>, publish: [u8; 16]) -> Result<bool, redb::Error> {
    let range = copies_of(publish);
    let (lo, hi) = (range.start(), range.end());
    Ok(t.ids.range(&lo[..]..=&hi[..])?.next().is_some())
}

/// Sweeps the copies past `rules` at `now` from the queues due, at most
/// `SWEEP_MAX` of them, with the payloads nothing needs any more. Returns
/// how many were swept.
pub(super) fn sweep(
    t: &mut Tables<'_, '_>,
    rules: ArchiveRules,
    plan: &mut SweepPlan,
    now: u64,
) -> Result<usize, redb::Error> {
    if !plan.looked {
        plan.looked = true;
        for q in queues(t.archive)? {
            plan.due.insert(q, now);
        }
    }
    let due: Vec<String> = plan
        .due
        .iter()
        .filter(|(_, at)| **at <= now)
        .map(|(q, _)| q.clone())
        .collect();
    let cutoff = match rules.keep_ms {
        // No archive: whatever an earlier run kept goes, however young.
        0 => u64::MAX,
        keep => now.saturating_sub(keep),
    };
    let mut swept = 0;
    let mut publishes = HashSet::new();
    for q in due {
        if swept >= SWEEP_MAX {
            break;
        }
        let all = range(&q, None);
        // The newest copy past the floor of `at_least`: it and those
        // before it may go once they are old enough.
        let floor = t
            .archive
            .range(&all.start[..]..&all.end[..])?
            .rev()
            .nth(rules.at_least)
            .transpose()?
            .map(|(k, _)| k.value().to_vec());
        let Some(floor) = floor else {
            plan.due.remove(&q);
            continue;
        };
        let mut gone = Vec::new();
        let mut next_due = None;
        for row in t.archive.range(&all.start[..]..=&floor[..])? {
            let (k, _) = row?;
            let Some((at, id)) = place_of(k.value()) else {
                gone.push((k.value().to_vec(), None));
                continue;
            };
            if at > cutoff {
                next_due = Some(at.saturating_add(rules.keep_ms));
                break;
            }
            if swept + gone.len() >= SWEEP_MAX {
                next_due = Some(now);
                break;
            }
            gone.push((k.value().to_vec(), Some(id)));
        }
        swept += gone.len();
        for (k, id) in gone {
            t.archive.remove(&k[..])?;
            if let Some(id) = id {
                t.ids.remove(&id[..])?;
                drop_log(t, id)?;
                publishes.insert(publish_of(id));
            }
        }
        match next_due {
            Some(at) => drop(plan.due.insert(q, at)),
            None => drop(plan.due.remove(&q)),
        }
    }
    for p in publishes {
        if !payload_needed(t, p)? {
            t.payloads.remove(&p[..])?;
        }
    }
    Ok(swept)
}

/// Removes a swept copy's log, if it kept one.
fn drop_log(t: &mut Tables<'_, '_>, id: [u8; 16]) -> Result<(), redb::Error> {
    let head = t.heads.remove(&id[..])?.map(|v| v.value().to_vec());
    if let Some((first, total)) = head.as_deref().and_then(super::tables::decode_head) {
        for page in first..total.div_ceil(PAGE) as u32 {
            t.output.remove(&super::tables::page_key(&id, page)[..])?;
        }
    }
    Ok(())
}

/// The queues with archived copies.
fn queues(archive: &Tree<'_>) -> Result<Vec<String>, redb::Error> {
    let mut out = Vec::new();
    let mut from: Vec<u8> = Vec::new();
    while let Some(row) = archive.range(&from[..]..)?.next() {
        let (k, _) = row?;
        let k = k.value();
        let name = &k[..k.iter().position(|&b| b == 0).unwrap_or(k.len())];
        out.push(String::from_utf8_lossy(name).into_owned());
        from = name.to_vec();
        from.push(1);
    }
    Ok(out)
}
