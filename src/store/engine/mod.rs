//! The state machine every backend shares: one compact record per copy in
//! memory with the indexes that make claims, schedules, leases and the
//! singular rules cheap, and the transitions that move copies between
//! states. Where changes become durable is a [`Log`]: a redb file
//! (`store::embedded`) or a log in a Couchbase bucket (`store::couchbase`).
//! The engine knows nothing of either.
//!
//! Every change goes through [`Engine::change`]: wait for the log's turn,
//! apply what other nodes committed, compute the change on the state under
//! one `std::sync::Mutex` (never held across an await), stage its records
//! while still holding it (so the log's order is the state's order), and
//! answer only once the log says the records are durable. A change that
//! fails to commit may have been half seen by other requests, so the engine
//! is then *fenced*: no further change is made until the state has been read
//! back from the log, whole, while no other change runs.
//!
//! A transition validates before it mutates: one that returns an error has
//! changed nothing.

mod batch;
mod claim;
mod deps;
mod enqueue;
mod fair;
mod fence;
mod listing;
pub mod log;
mod meta;
mod operator;
pub mod ops;
pub mod output;
mod recent;
mod records;
mod report;
mod state;
mod tick;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde_json::{Map, Value};

use self::enqueue::Staged;
use self::fence::Fence;
pub use self::log::{Log, News, Payloads};
use self::meta::Meta;
pub use self::ops::{Batch, Op};
pub use self::state::Retention;
use self::state::State;
use super::{
    Enqueued, Outputs, ReportKind, Reported, Store, StoreError, StoreStats, Tick, WorkerReport,
};
use crate::model::{
    Acted, AuditEntry, BatchRecord, BulkAction, BulkStep, CancelTarget, Cancellation, Counters,
    HeldLock, Lane, LockKind, Millis, Page, PublishRecord, QueueCounts, QueueFilter, QueueGroups,
    QueueName, QueueSettings, RetryTarget, ScheduleRecord, Task, TaskFilter, TaskId, TaskLog,
    TaskSelector, TaskState, WorkerId, WorkerRecord,
};

/// How often a change waiting for its turn on a shared log applies what
/// other nodes committed meanwhile (`follow_while_waiting`).
const FOLLOW_WHILE_WAITING: std::time::Duration = std::time::Duration::from_millis(10);

/// The state machine over a log. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Engine<L: Log> {
    state: Mutex<State>,
    log: L,
    retention: Retention,
    fence: Fence,
    /// A change is applying others' entries while it waits for its turn.
    following: std::sync::atomic::AtomicBool,
    /// The broker's clock, for a shared log (`follow_clock`).
    clock: std::sync::OnceLock<Arc<dyn crate::broker::clock::Clock>>,
}

impl<L: Log> Engine<L> {
    /// Builds the state from everything `log` holds.
    pub async fn open(log: L, retention: Retention) -> Result<Self, StoreError> {
        let retention = Retention {
            archive: log.archives(),
            ..retention
        };
        let state = load(&log, retention).await?;
        Ok(Self {
            state: Mutex::new(state),
            log,
            retention,
            fence: Fence::default(),
            clock: std::sync::OnceLock::new(),
            following: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn log(&self) -> &L {
        &self.log
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves indexes that were consistent
        // before each single-step change; carry on rather than wedge.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes one change: `f` computes it on the current state, pushing the
    /// records it writes; it is answered once they are durable.
    async fn change<R: Send>(
        &self,
        f: impl FnOnce(&mut State, &mut Vec<Op>) -> Result<R, StoreError> + Send,
    ) -> Result<R, StoreError> {
        self.change_then(f, |_, r| r).await
    }

    /// `change`, then `after` on the state once the change is durable, with
    /// no other change in between that could undo it (new copies become
    /// visible this way: only once their payloads are stored).
    async fn change_then<R: Send, T>(
        &self,
        f: impl FnOnce(&mut State, &mut Vec<Op>) -> Result<R, StoreError> + Send,
        after: impl FnOnce(&mut State, R) -> T + Send,
    ) -> Result<T, StoreError> {
        self.change_during(f, |_| std::future::ready(()), |st, r, ()| after(st, r))
            .await
    }

    /// `change_then`, reading meanwhile what `read` asks of the change's
    /// result (what it reads must not depend on the change being durable):
    /// the read's round trips overlap the change's write, not follow it.
    async fn change_during<R: Send, D: Future + Send, T>(
        &self,
        f: impl FnOnce(&mut State, &mut Vec<Op>) -> Result<R, StoreError> + Send,
        read: impl FnOnce(&R) -> D + Send,
        after: impl FnOnce(&mut State, R, D::Output) -> T + Send,
    ) -> Result<T, StoreError> {
        let _entered = self.fence.enter(|| self.reload()).await?;
        let applied = || self.lock().applied;
        let begun = {
            let begin = self.log.begin(&applied);
            tokio::pin!(begin);
            let shared = self.log.poll_interval().is_some();
            loop {
                tokio::select! {
                    biased;
                    begun = &mut begin => break begun,
                    () = tokio::time::sleep(FOLLOW_WHILE_WAITING), if shared => {
                        self.follow_while_waiting().await;
                    }
                }
            }
        };
        let (mut turn, news) = match begun {
            Ok(begun) => begun,
            Err(e) => {
                if self.log.needs_reset() {
                    self.fence.poison(&e);
                }
                return Err(e);
            }
        };
        if let Err(e) = self.apply_news(news) {
            self.log.abandon(turn);
            self.fence.poison(&e);
            return Err(e);
        }
        let snapshot = {
            let mut st = self.lock();
            st.reveal_through(self.log.durable());
            // A snapshot holds every copy of the entries it covers: none may
            // still wait to be shown.
            (st.unrevealed.is_empty() && self.log.snapshot_due(st.applied))
                .then(|| (st.applied, ops::snapshot(&st)))
        };
        if let Some((at, snapshot)) = snapshot {
            if let Err(e) = self.log.write_snapshot(&mut turn, at, snapshot).await {
                self.log.abandon(turn);
                return Err(e);
            }
        }
        let result = {
            let mut st = self.lock();
            let mut ops = Vec::new();
            // A transition that panics may have changed the state halfway:
            // refuse further changes until it is read back whole.
            let computed =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut st, &mut ops)))
                    .unwrap_or_else(|_| {
                        let e = StoreError::Corrupt("a change failed halfway (a panic)".into());
                        self.fence.poison(&e);
                        Err(e)
                    });
            match computed {
                Ok(r) => {
                    st.settle_dependencies(&mut ops);
                    st.flush_batches(&mut ops);
                    if !ops.is_empty() || st.counters != st.counters_committed {
                        if ops.is_empty() {
                            ops.push(Op::Sync);
                        }
                        // Under the log's turn the state holds every entry
                        // before this one, whoever wrote them.
                        st.counters_committed = st.counters;
                        let counters = st.counters;
                        st.applied = self
                            .log
                            .stage(&mut turn, st.applied, Batch { ops, counters });
                        let seq = st.applied;
                        st.staged_in(seq);
                    }
                    debug_assert!(st.staging.is_empty(), "copies staged in no entry");
                    r
                }
                Err(e) => {
                    st.staging.clear();
                    drop(st);
                    self.log.abandon(turn);
                    return Err(e);
                }
            }
        };
        let (committed, read) = tokio::join!(self.log.commit(turn), read(&result));
        if let Err(e) = committed {
            self.fence.poison(&e);
            return Err(e);
        }
        self.fence.succeeded();
        let mut st = self.lock();
        st.reveal_through(self.log.durable());
        Ok(after(&mut st, result, read))
    }

    /// Applies entries other nodes committed, each once, in order.
    fn apply_news(&self, news: News) -> Result<(), StoreError> {
        if news.is_empty() {
            return Ok(());
        }
        let mut st = self.lock();
        st.lease_floor = self.clock.get().map(|clock| clock.now());
        let applied = ops::apply_entries(&mut st, news);
        st.lease_floor = None;
        applied
    }

    /// Reads the whole state back from the log, replacing the one in
    /// memory. Runs with no change in progress (the fence sees to it).
    async fn reload(&self) -> Result<(), StoreError> {
        self.log.reset().await?;
        let mut fresh = load(&self.log, self.retention).await?;
        if let Some(clock) = self.clock.get() {
            fresh.lengthen_leases_from(clock.now());
        }
        *self.lock() = fresh;
        tracing::warn!("the store's state was read back from disk after a failed write");
        Ok(())
    }

    /// While a change waits for its turn on a shared log (another node
    /// holds the lock), applies what the other nodes commit meanwhile, one
    /// change per node at a time: the change then starts on a state that is
    /// nearly current, rather than read and apply a whole turn's entries
    /// while it holds the lock (100-160 entries, 40-120 ms, with three busy
    /// nodes: half of every turn).
    async fn follow_while_waiting(&self) {
        if self
            .following
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        struct Done<'a>(&'a std::sync::atomic::AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(false, std::sync::atomic::Ordering::SeqCst);
            }
        }
        let _done = Done(&self.following);
        // A failure here is the waiting change's to meet, in its turn.
        let _ = self.sync().await;
    }

    /// Before a read: with a shared log, applies what other nodes committed.
    async fn sync(&self) -> Result<(), StoreError> {
        {
            let mut st = self.lock();
            if !st.unrevealed.is_empty() {
                st.reveal_through(self.log.durable());
            }
        }
        if self.log.poll_interval().is_none() {
            return Ok(());
        }
        let applied = self.lock().applied;
        let news = self.log.news(applied).await?;
        self.apply_news(news)
    }

    /// Joins copies with their payloads. A copy whose payload is gone was
    /// deleted meanwhile and is left out.
    async fn with_payloads(
        &self,
        metas: Vec<Meta>,
        with_history: bool,
    ) -> Result<Vec<Task>, StoreError> {
        if metas.is_empty() {
            return Ok(Vec::new());
        }
        let data = self.payloads_of(&metas).await?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                data.get(m.publish_id().as_bytes())
                    .map(|d| m.to_task(Arc::clone(d), with_history))
            })
            .collect())
    }
}

/// The distinct publishes of these copies, as the log keys their payloads.
fn publishes_of<'a>(metas: impl IntoIterator<Item = &'a Meta>) -> Vec<[u8; 16]> {
    let mut publishes: Vec<[u8; 16]> = metas
        .into_iter()
        .map(|m| *m.publish_id().as_bytes())
        .collect();
    publishes.sort_unstable();
    publishes.dedup();
    publishes
}

/// Builds a state from everything a log holds. Finished copies are indexed
/// last and oldest first, so that the recent history keeps its order.
async fn load<L: Log>(log: &L, retention: Retention) -> Result<State, StoreError> {
    let mut st = State::new(retention);
    let mut finished: HashMap<TaskId, Meta> = HashMap::new();
    // Logs' heads wait for the copies (finished ones come in last): the
    // log also holds those of archived copies, which the state does not.
    let mut heads: HashMap<TaskId, (u32, u64)> = HashMap::new();
    let mut counters = None;
    let last = log
        .load(&mut |batch: Batch| {
            for op in &batch.ops {
                match op {
                    Op::PutCopy(_, bytes) => {
                        let m = ops::decode_copy(bytes)?;
                        st.remove(m.task_id);
                        if m.state.is_finished() {
                            finished.insert(m.task_id, m);
                        } else {
                            finished.remove(&m.task_id);
                            st.insert(m);
                        }
                    }
                    Op::DeleteCopy(k) | Op::ArchiveCopy(k, ..) => {
                        let id = TaskId::from_bytes(*k);
                        st.remove(id);
                        finished.remove(&id);
                        heads.remove(&id);
                    }
                    Op::OutputHead(k, first, total) => {
                        heads.insert(TaskId::from_bytes(*k), (*first, *total));
                    }
                    Op::DropOutput(k) => {
                        heads.remove(&TaskId::from_bytes(*k));
                    }
                    other => ops::apply(&mut st, other)?,
                }
            }
            counters = Some(batch.counters);
            Ok(())
        })
        .await?;
    let mut finished: Vec<Meta> = finished.into_values().collect();
    finished.sort_by_key(|m| (m.finished_at(), m.task_id));
    for m in finished {
        st.insert(m);
    }
    for (id, (first, total)) in heads {
        if st.tasks.contains_key(&id) {
            let head = st.outputs.entry(id).or_default();
            (head.first, head.total) = (first, total);
        }
    }
    // The log may hold a queue's limits after the copies claimed under them,
    // and a copy before what it waits for.
    st.recount_claims(None);
    st.relink_dependencies();
    if let Some(c) = counters {
        st.counters = c;
        st.counters_committed = c;
    }
    st.applied = last;
    Ok(st)
}

#[async_trait]
impl<L: Log> Store for Engine<L> {
    async fn enqueue(
        &self,
        tasks: Vec<Task>,
        counters: Counters,
    ) -> Result<Vec<Enqueued>, StoreError> {
        self.change_then(
            |st, ops| {
                let staged = st.enqueue(tasks, ops)?;
                st.counters.add(&counters);
                Ok(staged)
            },
            State::reveal,
        )
        .await
    }

    async fn enqueue_logged(
        &self,
        tasks: Vec<Task>,
        counters: Counters,
        log: Vec<(PublishRecord, Option<Vec<u8>>)>,
        now: Millis,
    ) -> Result<Vec<Enqueued>, StoreError> {
        self.change_then(
            |st, ops| {
                let staged = st.enqueue(tasks, ops)?;
                st.log_publishes(log, now, ops);
                st.counters.add(&counters);
                Ok(staged)
            },
            State::reveal,
        )
        .await
    }

    async fn recent_publishes(
        &self,
        since: Millis,
        after: Option<TaskId>,
        limit: usize,
    ) -> Result<Vec<(PublishRecord, Arc<Map<String, Value>>)>, StoreError> {
        self.sync().await?;
        let records = self.lock().recent_page(since, after, limit);
        let keys: Vec<[u8; 16]> = records.iter().map(|r| *r.publish_id.as_bytes()).collect();
        let mut data: HashMap<[u8; 16], Arc<Map<String, Value>>> = HashMap::new();
        for (k, bytes) in self.log.payloads(&keys).await? {
            if let Ok(d) = ops::decode_json(&bytes) {
                data.insert(k, Arc::new(d));
            }
        }
        // A publish whose payload is unreadable cannot be replayed.
        Ok(records
            .into_iter()
            .filter_map(|r| {
                let d = data.get(r.publish_id.as_bytes())?.clone();
                Some((r, d))
            })
            .collect())
    }

    async fn replay(
        &self,
        queue: &QueueName,
        copies: Vec<(TaskId, Task)>,
    ) -> Result<Vec<Enqueued>, StoreError> {
        self.change_then(|st, ops| st.replay_into(queue, copies, ops), State::reveal)
            .await
    }

    async fn claim(
        &self,
        worker: WorkerId,
        lanes: &[Lane],
        now: Millis,
        count: usize,
    ) -> Result<Vec<Task>, StoreError> {
        self.claim_copies(worker, lanes, now, count).await
    }

    async fn report(
        &self,
        reports: Vec<WorkerReport>,
        now: Millis,
        outputs: &dyn Outputs,
    ) -> Result<Reported, StoreError> {
        let (answers, spawned, woken) = self
            .change_then(
                |st, ops| {
                    let mut spawned = Staged::default();
                    let answers = reports
                        .into_iter()
                        .map(|r| match r.what {
                            ReportKind::Finish(outcome) => st.finish(
                                r.task,
                                r.worker,
                                now,
                                outcome,
                                outputs,
                                &mut spawned,
                                ops,
                            ),
                            ReportKind::Heartbeat(progress) => {
                                st.heartbeat(r.task, r.worker, now, progress, ops)
                            }
                        })
                        .collect::<Vec<_>>();
                    // This change's copies, before they wait for it.
                    let made: Vec<Task> = st.staging.iter().map(Meta::for_report).collect();
                    Ok((answers, made))
                },
                |st, (answers, made)| (answers, made, std::mem::take(&mut st.released)),
            )
            .await?;
        Ok(Reported {
            answers: answers
                .into_iter()
                .map(|a| a.map(|m| m.for_report()))
                .collect(),
            spawned,
            woken,
        })
    }

    async fn tick(&self, now: Millis) -> Result<Tick, StoreError> {
        self.log.tell_time(now);
        if self.log.poll_interval().is_some() {
            // Every node ticks often: make a change (take the cluster lock)
            // only when something is due.
            self.sync().await?;
            if !self.lock().due(now) {
                return Ok(Tick::default());
            }
        }
        self.change_then(
            |st, ops| Ok(st.tick(now, ops)),
            |st, mut tick| {
                tick.woken.append(&mut st.released);
                tick.woken.sort();
                tick.woken.dedup();
                tick
            },
        )
        .await
    }

    async fn release_worker(&self, worker: WorkerId, now: Millis) -> Result<Tick, StoreError> {
        self.change(|st, ops| Ok(st.release_worker(worker, now, ops)))
            .await
    }

    async fn delete_tasks(&self, selector: TaskSelector) -> Result<u64, StoreError> {
        let archived = match &selector {
            TaskSelector::Task(id) => self.archived_among(&[*id], None).await?,
            _ => Vec::new(),
        };
        self.change(|st, ops| {
            let n = st.delete_tasks(&selector, ops);
            ops.extend(archived.iter().map(|id| Op::DeleteArchived(*id.as_bytes())));
            Ok(n + archived.len() as u64)
        })
        .await
    }

    async fn append_log(
        &self,
        id: TaskId,
        worker: WorkerId,
        text: Vec<u8>,
        now: Millis,
        min_gap_ms: u64,
    ) -> Result<u64, StoreError> {
        let kept_pages = output::kept_pages(self.retention.log_kept_bytes);
        let key = *id.as_bytes();
        // The page the log ends in is read outside the state's lock; an
        // append that came in meanwhile makes this one read again.
        for _ in 0..8 {
            self.sync().await?;
            let seen = self.lock().log_head_for(id, worker, now, min_gap_ms)?;
            let partial = (seen.total % output::PAGE) as usize;
            let tail = if partial == 0 {
                Vec::new()
            } else {
                let n = (seen.total / output::PAGE) as u32;
                let (_, bytes) = self
                    .log
                    .output_pages(key, n..n + 1)
                    .await?
                    .pop()
                    .ok_or_else(|| {
                        StoreError::Corrupt(format!("the last page of task {id}'s log is missing"))
                    })?;
                bytes
            };
            if tail.len() != partial {
                return Err(StoreError::Corrupt(format!(
                    "the last page of task {id}'s log holds {} bytes, not {partial}",
                    tail.len()
                )));
            }
            let appended = self
                .change(|st, ops| {
                    st.log_head_for(id, worker, now, min_gap_ms)?;
                    let append = output::Append {
                        id,
                        seen,
                        tail: &tail,
                        text: &text,
                        kept_pages,
                    };
                    Ok(st.append_log(append, now, ops))
                })
                .await?;
            if let Some(head) = appended {
                return Ok(head.total);
            }
        }
        Err(StoreError::Unavailable(format!(
            "task {id}'s log kept changing under this append; retry"
        )))
    }

    async fn task_log(
        &self,
        id: TaskId,
        from: Option<u64>,
        max: usize,
    ) -> Result<Option<TaskLog>, StoreError> {
        self.sync().await?;
        let found = {
            let st = self.lock();
            st.tasks.get(&id).map(|t| {
                let head = st.outputs.get(&id).copied().unwrap_or_default();
                (t.state, t.queue.clone(), head)
            })
        };
        let (state, queue, head) = match found {
            Some(found) => found,
            None if self.retention.archive => {
                let Some(m) = self.archived_meta(id).await? else {
                    return Ok(None);
                };
                let head = match self.log.archived_log(*id.as_bytes()).await? {
                    Some((first, total)) => output::Head {
                        first,
                        total,
                        ..Default::default()
                    },
                    None => output::Head::default(),
                };
                (m.state, m.queue, head)
            }
            None => return Ok(None),
        };
        let from = from.unwrap_or(0).clamp(head.start(), head.total);
        let until = from.saturating_add(max as u64).min(head.total);
        let pages = output::pages_between(&head, from, until);
        let got = self.log.output_pages(*id.as_bytes(), pages).await?;
        let (offset, mut text) = output::join_pages(got, from);
        text.truncate(until.saturating_sub(offset) as usize);
        Ok(Some(TaskLog {
            task_id: id,
            queue,
            state,
            start: head.start(),
            offset,
            total: head.total,
            text,
        }))
    }

    async fn task(&self, id: TaskId) -> Result<Option<Task>, StoreError> {
        self.sync().await?;
        let held = self.lock().tasks.get(&id).cloned();
        if let Some(meta) = held {
            return Ok(self.with_payloads(vec![meta], true).await?.pop());
        }
        if !self.retention.archive {
            return Ok(None);
        }
        let Some(meta) = self.archived_meta(id).await? else {
            return Ok(None);
        };
        let mut found = self.with_payloads(vec![meta], true).await?;
        Ok(found.pop().map(|t| Task {
            archived: true,
            ..t
        }))
    }

    async fn tasks_of_publish(&self, publish_id: TaskId) -> Result<Vec<Task>, StoreError> {
        self.sync().await?;
        let mut metas: Vec<Meta> = self.lock().copies_of(publish_id).cloned().collect();
        let in_memory: std::collections::HashSet<TaskId> =
            metas.iter().map(|m| m.task_id).collect();
        if self.retention.archive {
            // A copy is in the state or the archive, never both for long:
            // the state's is the newer.
            for record in self.log.archived_of_publish(*publish_id.as_bytes()).await? {
                let m = ops::decode_copy(&record)?;
                if !in_memory.contains(&m.task_id) {
                    metas.push(m);
                }
            }
            metas.sort_by_key(|m| m.task_id);
        }
        let mut tasks = self.with_payloads(metas, true).await?;
        for t in &mut tasks {
            t.archived = !in_memory.contains(&t.task_id);
        }
        Ok(tasks)
    }

    async fn tasks_with_key(&self, key: &str) -> Result<Vec<Task>, StoreError> {
        self.sync().await?;
        let metas = {
            let st = self.lock();
            st.kept(&st.with_key(key))
        };
        self.with_payloads(metas, true).await
    }

    async fn dependants(&self, id: TaskId) -> Result<Vec<Task>, StoreError> {
        self.sync().await?;
        let metas = {
            let st = self.lock();
            st.kept(&st.dependants_of(id))
        };
        self.with_payloads(metas, false).await
    }

    async fn children(&self, parent: TaskId) -> Result<Vec<Task>, StoreError> {
        self.sync().await?;
        let metas = {
            let st = self.lock();
            let mut ids = st.children.get(&parent).cloned().unwrap_or_default();
            ids.sort();
            st.kept(&ids)
        };
        self.with_payloads(metas, false).await
    }

    async fn cancel(
        &self,
        target: CancelTarget,
        now: Millis,
        within: Option<&QueueFilter>,
    ) -> Result<Cancellation, StoreError> {
        self.change(|st, ops| Ok(st.cancel(&target, now, within, ops)))
            .await
    }

    async fn list_tasks(
        &self,
        queue: Option<&QueueName>,
        state: TaskState,
        filter: &TaskFilter,
        page: Page,
    ) -> Result<Vec<Task>, StoreError> {
        self.sync().await?;
        self.list_filtered(queue, state, filter, page).await
    }

    async fn list_archived(
        &self,
        queue: &QueueName,
        state: TaskState,
        filter: &TaskFilter,
        before: Option<TaskId>,
        limit: usize,
    ) -> Result<Vec<Task>, StoreError> {
        self.archive_listing(queue, state, filter, before, limit)
            .await
    }

    async fn failed_reasons(
        &self,
        queue: Option<&QueueName>,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        self.sync().await?;
        Ok(self.reasons_of_failed(queue).await)
    }

    async fn groups(&self, queue: &QueueName, top: usize) -> Result<QueueGroups, StoreError> {
        self.sync().await?;
        Ok(self.lock().groups_of(queue, top))
    }

    async fn held_by(&self, id: TaskId, now: Millis) -> Result<Option<String>, StoreError> {
        self.sync().await?;
        Ok(self.lock().held_by(id, now))
    }

    async fn group_summary(&self) -> Result<Vec<(QueueName, [u64; 3])>, StoreError> {
        self.sync().await?;
        Ok(self.lock().group_summary())
    }

    async fn running_of(&self, worker: WorkerId) -> Result<Vec<TaskId>, StoreError> {
        self.sync().await?;
        Ok(self
            .lock()
            .running_by
            .get(&worker)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default())
    }

    async fn queue_counts(&self) -> Result<Vec<(QueueName, QueueCounts)>, StoreError> {
        self.sync().await?;
        Ok(self
            .lock()
            .counts
            .iter()
            .map(|(q, c)| (q.clone(), *c))
            .collect())
    }

    async fn oldest_ready(&self, queue: &QueueName) -> Result<Option<Millis>, StoreError> {
        self.sync().await?;
        Ok(self.lock().oldest_ready(queue))
    }

    async fn lane_len(&self, lane: &Lane) -> Result<u64, StoreError> {
        self.sync().await?;
        Ok(self.lock().ready.get(lane).map_or(0, |s| s.len() as u64))
    }

    async fn put_interests(&self, queue: &QueueName, interests: &Value) -> Result<(), StoreError> {
        self.record(ops::interests_op(queue, interests), |_| true)
            .await?;
        Ok(())
    }

    async fn put_many_interests(&self, all: &[(QueueName, Value)]) -> Result<(), StoreError> {
        self.change(|st, ops| {
            for (queue, interests) in all {
                let op = ops::interests_op(queue, interests);
                ops::apply(st, &op)?;
                ops.push(op);
            }
            Ok(())
        })
        .await
    }

    async fn delete_interests(&self, queue: &QueueName) -> Result<bool, StoreError> {
        self.record(Op::DeleteInterests(queue.to_string()), |st| {
            st.interests.contains_key(queue)
        })
        .await
    }

    async fn interests(&self) -> Result<Vec<(QueueName, Value)>, StoreError> {
        self.sync().await?;
        Ok(self
            .lock()
            .interests
            .iter()
            .map(|(q, v)| (q.clone(), v.clone()))
            .collect())
    }

    async fn version(&self) -> Result<u64, StoreError> {
        self.sync().await?;
        Ok(self.lock().applied)
    }

    async fn interests_version(&self) -> Result<u64, StoreError> {
        self.sync().await?;
        Ok(self.lock().interests_version)
    }

    async fn put_queue_settings(
        &self,
        queue: &QueueName,
        settings: QueueSettings,
    ) -> Result<(), StoreError> {
        let op = if settings.is_default() {
            Op::DeleteQueueSettings(queue.to_string())
        } else {
            ops::settings_op(queue, &settings)
        };
        self.record(op, |_| true).await?;
        Ok(())
    }

    async fn queue_settings(&self) -> Result<Vec<(QueueName, QueueSettings)>, StoreError> {
        self.sync().await?;
        let mut all: Vec<_> = self
            .lock()
            .queue_settings
            .iter()
            .map(|(q, s)| (q.clone(), s.clone()))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(all)
    }

    async fn put_schedule(&self, schedule: &ScheduleRecord) -> Result<(), StoreError> {
        self.record(ops::schedule_op(schedule), |_| true).await?;
        Ok(())
    }

    async fn delete_schedule(&self, name: &str) -> Result<bool, StoreError> {
        self.record(Op::DeleteSchedule(name.to_owned()), |st| {
            st.schedules.contains_key(name)
        })
        .await
    }

    async fn schedules(&self) -> Result<Vec<ScheduleRecord>, StoreError> {
        self.sync().await?;
        Ok(self.lock().schedules.values().cloned().collect())
    }

    async fn due_schedules(&self, now: Millis) -> Result<Vec<ScheduleRecord>, StoreError> {
        self.sync().await?;
        Ok(self
            .lock()
            .schedules
            .values()
            .filter(|s| !s.paused && s.next_run.is_some_and(|at| at <= now))
            .cloned()
            .collect())
    }

    async fn fire_schedule(
        &self,
        schedule: &ScheduleRecord,
        tasks: Vec<Task>,
        counters: Counters,
    ) -> Result<Vec<Enqueued>, StoreError> {
        let fired = ops::schedule_op(schedule);
        self.change_then(
            |st, ops| {
                // Paused or removed since it was read as due: it does not
                // fire (nor come back).
                if st.schedules.get(&schedule.name).is_none_or(|s| s.paused) {
                    return Ok(Staged::default());
                }
                let staged = st.enqueue(tasks, ops)?;
                ops::apply(st, &fired)?;
                ops.push(fired);
                st.counters.add(&counters);
                Ok(staged)
            },
            State::reveal,
        )
        .await
    }

    async fn open_batch(
        &self,
        record: BatchRecord,
        tasks: Vec<Task>,
        counters: Counters,
    ) -> Result<Vec<Enqueued>, StoreError> {
        self.change_then(
            |st, ops| {
                let staged = st.open_batch(record, tasks, ops)?;
                st.counters.add(&counters);
                Ok(staged)
            },
            State::reveal,
        )
        .await
    }

    async fn batch(&self, id: &str) -> Result<Option<BatchRecord>, StoreError> {
        self.sync().await?;
        Ok(self.lock().batches.records.get(id).cloned())
    }

    async fn due_batches(&self) -> Result<Vec<BatchRecord>, StoreError> {
        self.sync().await?;
        Ok(self.lock().batches.due().cloned().collect())
    }

    async fn fire_batch(
        &self,
        id: &str,
        publish: TaskId,
        tasks: Vec<Task>,
    ) -> Result<Option<Vec<Enqueued>>, StoreError> {
        self.change_then(
            |st, ops| st.fire_batch(id, tasks, publish, ops),
            |st, staged| staged.map(|s| st.reveal(s)),
        )
        .await
    }

    async fn put_worker(&self, worker: &WorkerRecord) -> Result<(), StoreError> {
        self.record(ops::worker_op(worker), |_| true).await?;
        Ok(())
    }

    async fn worker_seen(&self, worker: WorkerId, at: Millis) -> Result<bool, StoreError> {
        self.change(|st, out| {
            let Some(record) = st.workers.get(&worker) else {
                return Ok(false);
            };
            let seen = WorkerRecord {
                seen_at: Some(at),
                ..record.clone()
            };
            let op = ops::worker_op(&seen);
            ops::apply(st, &op)?;
            out.push(op);
            Ok(true)
        })
        .await
    }

    async fn delete_worker(&self, worker: WorkerId) -> Result<bool, StoreError> {
        self.record(Op::DeleteWorker(*worker.as_bytes()), |st| {
            st.workers.contains_key(&worker)
        })
        .await
    }

    async fn workers(&self) -> Result<Vec<WorkerRecord>, StoreError> {
        self.sync().await?;
        Ok(self.lock().workers.values().cloned().collect())
    }

    async fn counters(&self) -> Result<Counters, StoreError> {
        self.sync().await?;
        Ok(self.lock().counters)
    }

    async fn retry_failed(
        &self,
        target: RetryTarget,
        now: Millis,
    ) -> Result<Vec<TaskId>, StoreError> {
        self.change(|st, ops| st.retry_failed(&target, now, ops))
            .await
    }

    async fn retry_edited(
        &self,
        failed: TaskId,
        replacement: Task,
        now: Millis,
    ) -> Result<TaskId, StoreError> {
        let new_id = replacement.task_id;
        let out = self
            .change_then(
                |st, ops| {
                    st.check_failed(failed, "edited")?;
                    let staged = st.enqueue(vec![replacement], ops)?;
                    st.cancel_edited(failed, new_id, now, ops);
                    Ok(staged)
                },
                State::reveal,
            )
            .await?;
        Ok(out.first().map_or(new_id, |e| e.task_id()))
    }

    async fn run_now(&self, id: TaskId, now: Millis) -> Result<Task, StoreError> {
        let meta = self.change(|st, ops| st.run_now(id, now, ops)).await?;
        self.with_payloads(vec![meta], true)
            .await?
            .pop()
            .ok_or(StoreError::UnknownTask(id))
    }

    async fn act(
        &self,
        step: BulkStep,
        listed: Option<TaskState>,
        now: Millis,
        within: Option<&QueueFilter>,
    ) -> Result<Acted, StoreError> {
        let ids = step.ids.clone();
        let archived = match step.action {
            BulkAction::Remove => self.archived_among(&step.ids, within).await?,
            _ => Vec::new(),
        };
        self.change_then(
            |st, ops| {
                let (mut acted, staged) = st.act(step, now, within, ops)?;
                ops.extend(archived.iter().map(|id| Op::DeleteArchived(*id.as_bytes())));
                acted.skipped -= archived.len() as u64;
                acted.done.extend(archived);
                Ok((acted, staged))
            },
            |st, (mut acted, staged): (Acted, Staged)| {
                st.reveal(staged);
                if let Some(listed) = listed {
                    acted.stayed = ids
                        .iter()
                        .filter(|id| st.tasks.get(id).is_some_and(|m| m.state == listed))
                        .count();
                }
                acted
            },
        )
        .await
    }

    async fn locks(&self) -> Result<Vec<HeldLock>, StoreError> {
        self.sync().await?;
        Ok(self.lock().held_locks())
    }

    async fn break_lock(
        &self,
        holder: TaskId,
        kind: LockKind,
        now: Millis,
    ) -> Result<bool, StoreError> {
        self.change(|st, ops| Ok(st.break_lock(holder, kind, now, ops)))
            .await
    }

    async fn put_sample(&self, at: Millis, counters: Counters) -> Result<bool, StoreError> {
        // Another node's sample for the same time is as good: skip the turn.
        if self.lock().samples.contains_key(&at.0) {
            return Ok(false);
        }
        self.change(|st, ops| Ok(st.put_sample(at.0, counters, ops)))
            .await
    }

    async fn samples(&self, since: Millis) -> Result<Vec<(Millis, Counters)>, StoreError> {
        self.sync().await?;
        Ok(self
            .lock()
            .samples
            .range(since.0..)
            .map(|(at, c)| (Millis(*at), *c))
            .collect())
    }

    async fn append_audit(&self, entry: AuditEntry) -> Result<(), StoreError> {
        self.change(|st, ops| {
            st.append_audit(entry, ops);
            Ok(())
        })
        .await
    }

    async fn audit(&self, page: Page) -> Result<(u64, Vec<AuditEntry>), StoreError> {
        self.sync().await?;
        let st = self.lock();
        let entries = st
            .audit
            .iter()
            .rev()
            .skip(page.offset)
            .take(page.limit)
            .map(|(_, e)| e.clone())
            .collect();
        Ok((st.audit.len() as u64, entries))
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // A change of nothing but a commit: it proves the log takes writes,
        // and (with group commit) waits for everything before it.
        self.change(|_, ops| {
            ops.push(Op::Sync);
            Ok(())
        })
        .await
    }

    async fn leave(&self) -> Result<(), StoreError> {
        self.log.leave().await
    }

    fn close(&self) {
        self.log.close();
    }

    fn poll_interval(&self) -> Option<std::time::Duration> {
        self.log.poll_interval()
    }

    fn follow_clock(&self, clock: Arc<dyn crate::broker::clock::Clock>) {
        if self.log.poll_interval().is_none() {
            return;
        }
        let at = clock.now();
        if self.clock.set(clock).is_ok() {
            // Loaded before there was a clock to read.
            self.lock().lengthen_leases_from(at);
        }
    }

    fn stats(&self) -> StoreStats {
        self.log.stats()
    }
}

impl Meta {
    /// One copy for the answer to a worker's report: without its history or
    /// its payload (the worker has it), so that no payload is read.
    fn for_report(&self) -> Task {
        self.for_answer().to_task(Arc::new(Map::new()), false)
    }
}
