//! Listings of copies by state, filtered and walked a piece at a time.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::log::{ArchiveWalk, Log};
use super::meta::Meta;
use std::ops::Bound::{Excluded, Unbounded};

use super::state::{Mark, State};
use super::Engine;
use crate::model::{Page, QueueFilter, QueueName, Task, TaskFilter, TaskId, TaskState};
use crate::store::StoreError;

/// Index entries walked per hold of the lock: about 2.5 ms (on the
/// development VM), so that a deep page of a million copies never holds up
/// the claims and publishes that need the lock.
const PIECE: usize = 65_536;

/// Copies whose payloads are read at once when a filter looks into `data`:
/// one read of the log's payloads per this many candidates.
const DATA_CHUNK: usize = 512;

impl<L: Log> Engine<L> {
    /// A page of the copies in `state` (of `queue`, when given) that pass
    /// `filter`: unfiltered, in the order the state keeps them, a page
    /// costing its offset plus its length; filtered, in publish order, a
    /// page costing the copies stepped through until it fills (all of them
    /// at worst), and a filter on `data` a payload read for each copy that
    /// passes the rest. By a key, only that key's copies are looked at.
    pub(super) async fn list_filtered(
        &self,
        queue: Option<&QueueName>,
        state: TaskState,
        filter: &TaskFilter,
        page: Page,
    ) -> Result<Vec<Task>, StoreError> {
        if let Some(key) = &filter.key {
            // The key index holds few copies per key: no walk at all.
            let mut metas: Vec<Meta> = {
                let st = self.lock();
                st.with_key(key)
                    .iter()
                    .filter_map(|id| st.tasks.get(id))
                    .filter(|m| m.state == state && queue.is_none_or(|q| &m.queue == q))
                    .filter(|m| passes(filter, m))
                    .cloned()
                    .collect()
            };
            metas.sort_by_key(|m| m.task_id);
            if !filter.reads_data() {
                let metas = metas.into_iter().skip(page.offset).take(page.limit);
                return self.with_payloads(metas.collect(), true).await;
            }
            return self
                .data_passing(metas, filter, &mut page.offset.clone(), page.limit)
                .await;
        }
        let mut mark = Mark::Start;
        if !filter.reads_data() {
            let metas = self
                .walk_metas(
                    queue,
                    state,
                    filter,
                    &mut page.offset.clone(),
                    page.limit,
                    &mut mark,
                )
                .await;
            return self.with_payloads(metas, true).await;
        }
        let mut skip = page.offset;
        let mut tasks = Vec::with_capacity(page.limit.min(1000));
        while mark != Mark::Done && tasks.len() < page.limit {
            let candidates = self
                .walk_metas(queue, state, filter, &mut 0, DATA_CHUNK, &mut mark)
                .await;
            let found = self
                .data_passing(candidates, filter, &mut skip, page.limit - tasks.len())
                .await?;
            tasks.extend(found);
            // A backend may read payloads without a wait (the embedded one
            // reads its file on this thread): the other requests this
            // thread serves go between chunks.
            tokio::task::yield_now().await;
        }
        Ok(tasks)
    }

    /// Up to `want` copies that pass the filter's in-memory conditions,
    /// after skipping `skip` of them, walking on from `mark` a piece at a
    /// time and leaving `mark` where it stopped.
    async fn walk_metas(
        &self,
        queue: Option<&QueueName>,
        state: TaskState,
        filter: &TaskFilter,
        skip: &mut usize,
        want: usize,
        mark: &mut Mark,
    ) -> Vec<Meta> {
        let mut metas: Vec<Meta> = Vec::with_capacity(want.min(1000));
        let unfiltered = filter.is_empty();
        let mut first = true;
        while *mark != Mark::Done && metas.len() < want {
            if !first {
                // A pause, not a yield: std's mutex is not fair, and a thread
                // waiting for it would lose the race to an immediate re-lock
                // every time.
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            first = false;
            let st = self.lock();
            if !unfiltered {
                *mark = search_piece(&st, queue, state, filter, skip, want, mark, &mut metas);
                continue;
            }
            let wanted = want - metas.len();
            let mut ids = Vec::new();
            *mark = st.walk(queue, state, mark, PIECE, |id| {
                if *skip > 0 {
                    *skip -= 1;
                    return true;
                }
                ids.push(id);
                ids.len() < wanted
            });
            metas.extend(ids.iter().filter_map(|id| st.tasks.get(id).cloned()));
        }
        metas
    }

    /// The copies among `metas` whose data passes, with their payloads and
    /// histories: up to `want`, after skipping `skip` of them.
    async fn data_passing(
        &self,
        metas: Vec<Meta>,
        filter: &TaskFilter,
        skip: &mut usize,
        want: usize,
    ) -> Result<Vec<Task>, StoreError> {
        let data = self.payloads_of(&metas).await?;
        let mut tasks = Vec::new();
        for m in metas {
            if tasks.len() == want {
                break;
            }
            let Some(d) = data.get(m.publish_id().as_bytes()) else {
                continue;
            };
            if !filter.data_passes(d) {
                continue;
            }
            if *skip > 0 {
                *skip -= 1;
                continue;
            }
            tasks.push(m.to_task(Arc::clone(d), true));
        }
        Ok(tasks)
    }

    /// The payloads of these copies' publishes, decoded, by publish.
    pub(super) async fn payloads_of(
        &self,
        metas: &[Meta],
    ) -> Result<HashMap<[u8; 16], Arc<Map<String, Value>>>, StoreError> {
        let mut data = HashMap::new();
        if metas.is_empty() {
            return Ok(data);
        }
        for (k, bytes) in self.log.payloads(&super::publishes_of(metas)).await? {
            match super::ops::decode_json(&bytes) {
                Ok(d) => {
                    data.insert(k, Arc::new(d));
                }
                Err(e) => {
                    tracing::error!(publish = %crate::model::TaskId::from_bytes(k), error = %e, "a stored payload is corrupt")
                }
            }
        }
        Ok(data)
    }
}

impl<L: Log> Engine<L> {
    /// An archived copy, when the log has it.
    pub(super) async fn archived_meta(&self, id: TaskId) -> Result<Option<Meta>, StoreError> {
        match self.log.archived(*id.as_bytes()).await? {
            Some(record) => Ok(Some(super::ops::decode_copy(&record)?)),
            None => Ok(None),
        }
    }

    /// Of `ids`, those the state does not hold and the archive does, in
    /// queues `within` allows: what a removal takes from the archive.
    pub(super) async fn archived_among(
        &self,
        ids: &[TaskId],
        within: Option<&QueueFilter>,
    ) -> Result<Vec<TaskId>, StoreError> {
        if !self.retention.archive {
            return Ok(Vec::new());
        }
        let absent: Vec<TaskId> = {
            let st = self.lock();
            ids.iter()
                .copied()
                .filter(|id| !st.tasks.contains_key(id))
                .collect()
        };
        let mut found = Vec::new();
        for id in absent {
            if let Some(m) = self.archived_meta(id).await? {
                if within.is_none_or(|w| w.allows(m.queue.as_str())) {
                    found.push(id);
                }
            }
        }
        Ok(found)
    }

    /// See `Store::list_archived`: the archive read newest first, a chunk
    /// at a time, each chunk's payloads read together.
    pub(super) async fn archive_listing(
        &self,
        queue: &QueueName,
        state: TaskState,
        filter: &TaskFilter,
        before: Option<TaskId>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        if !self.retention.archive || limit == 0 {
            return Ok(Vec::new());
        }
        let place_of = |m: Option<Meta>, id| {
            m.map(|m| m.archive_place())
                .ok_or(StoreError::UnknownTask(id))
        };
        let mut walk = match (filter.after, before) {
            (Some(id), _) => ArchiveWalk::Newer(place_of(self.archived_meta(id).await?, id)?),
            (None, Some(id)) => {
                ArchiveWalk::Older(Some(place_of(self.archived_meta(id).await?, id)?))
            }
            (None, None) => ArchiveWalk::Older(None),
        };
        let filter = TaskFilter {
            after: None,
            ..filter.clone()
        };
        let mut tasks = Vec::new();
        let mut looked = 0;
        while tasks.len() < limit && looked < crate::store::ARCHIVE_SCAN {
            let records = self
                .log
                .archive_page(queue.as_str(), walk, DATA_CHUNK)
                .await?;
            let Some(&(last, _)) = records.last() else {
                break;
            };
            looked += records.len();
            walk = match walk {
                ArchiveWalk::Older(_) => ArchiveWalk::Older(Some(last)),
                ArchiveWalk::Newer(_) => ArchiveWalk::Newer(last),
            };
            let mut metas = Vec::with_capacity(records.len());
            for (_, record) in &records {
                let m = super::ops::decode_copy(record)?;
                if m.state == state && passes(&filter, &m) {
                    metas.push(m);
                }
            }
            let found = self
                .data_passing(metas, &filter, &mut 0, limit - tasks.len())
                .await?;
            tasks.extend(found);
            if records.len() < DATA_CHUNK {
                break;
            }
            tokio::task::yield_now().await;
        }
        if let ArchiveWalk::Newer(_) = walk {
            tasks.reverse();
        }
        for t in &mut tasks {
            t.archived = true;
        }
        Ok(tasks)
    }

    /// See `Store::failed_reasons`: the failed index walked a piece at a
    /// time, as a listing is.
    pub(super) async fn reasons_of_failed(&self, queue: Option<&QueueName>) -> Vec<(String, u64)> {
        let mut counts: HashMap<String, u64> = HashMap::new();
        let mut mark = Mark::Start;
        let mut first = true;
        while mark != Mark::Done {
            if !first {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
            first = false;
            let st = self.lock();
            mark = st.walk(queue, TaskState::Failed, &mark, PIECE / 4, |id| {
                if let Some(m) = st.tasks.get(&id) {
                    let reason = m.extra.as_ref().and_then(|e| e.fail_reason.as_deref());
                    let label = reason_label(reason.unwrap_or(""));
                    match counts.get_mut(label) {
                        Some(n) => *n += 1,
                        None => {
                            counts.insert(label.to_owned(), 1);
                        }
                    }
                }
                true
            });
        }
        let mut reasons: Vec<(String, u64)> = counts.into_iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        reasons.truncate(crate::store::REASONS_LISTED);
        reasons
    }
}

/// A reason as failures are grouped by it: its first line, up to 200 bytes
/// (whole characters), so that reasons differing only in a trace group
/// together.
fn reason_label(reason: &str) -> &str {
    let line = reason.lines().next().unwrap_or("").trim();
    let mut end = line.len().min(200);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    &line[..end]
}

/// One piece of a search: the copies themselves, in id (publish) order,
/// rather than a state's index, since a filter reads each copy's record
/// anyway and a step through the copies costs a fifth of a look-up.
#[allow(clippy::too_many_arguments)]
fn search_piece(
    st: &State,
    queue: Option<&QueueName>,
    state: TaskState,
    filter: &TaskFilter,
    skip: &mut usize,
    want: usize,
    mark: &Mark,
    metas: &mut Vec<Meta>,
) -> Mark {
    let after = match mark {
        Mark::Copy(id) => Excluded(*id),
        _ => filter.after.map_or(Unbounded, Excluded),
    };
    for (visited, (id, m)) in st.tasks.range((after, Unbounded)).enumerate() {
        if m.state == state && queue.is_none_or(|q| &m.queue == q) && passes(filter, m) {
            if *skip > 0 {
                *skip -= 1;
            } else {
                metas.push(m.clone());
                if metas.len() == want {
                    return Mark::Copy(*id);
                }
            }
        }
        if visited + 1 >= PIECE {
            return Mark::Copy(*id);
        }
    }
    Mark::Done
}

/// The filter's conditions that a copy's record answers without its data.
fn passes(filter: &TaskFilter, m: &Meta) -> bool {
    filter.after.is_none_or(|a| m.task_id > a)
        && filter.time_passes(m.created_at)
        && filter
            .publisher
            .as_deref()
            .is_none_or(|p| &*m.publisher == p)
        && filter.key.as_deref().is_none_or(|k| m.key() == Some(k))
        && filter
            .group
            .as_deref()
            .is_none_or(|g| m.group.as_deref() == Some(g))
        && filter.reason_passes(m.extra.as_ref().and_then(|e| e.fail_reason.as_deref()))
        && m.search
            .as_ref()
            .is_none_or(|s| filter.data.iter().all(|c| c.answer(&s.0) != Some(false)))
}
