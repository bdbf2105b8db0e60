//! The embedded backend: one node, zero set-up, a redb file in the data
//! directory.
//!
//! All state lives in memory under one `std::sync::Mutex` (every operation is
//! short and never awaits while holding it), and every change is journaled in
//! order to redb by a commit thread that groups concurrent changes into one
//! transaction. On start the whole file is read back and the indexes rebuilt.

mod journal;
mod state;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde_json::Value;

use self::journal::{Committer, Op};
use self::state::State;
use super::{Enqueued, Outcome, Page, Store, StoreError, TaskSelector, Tick};
use crate::model::{
    Counters, Lane, Millis, QueueCounts, QueueName, Task, TaskId, TaskState, WorkerId, WorkerRecord,
};

/// The file inside the data directory.
pub const FILE_NAME: &str = "interq.redb";

/// The embedded store. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct EmbeddedStore {
    state: Arc<Mutex<State>>,
    committer: Committer,
    path: PathBuf,
}

impl EmbeddedStore {
    /// Opens the store in `data_dir` (created if missing), keeping the last
    /// `history_limit` completed copies.
    pub fn open(data_dir: &Path, history_limit: usize) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join(FILE_NAME);
        let (db, loaded) = journal::open(&path)
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        let mut state = State {
            history_limit,
            ..State::default()
        };
        let mut tasks = Vec::with_capacity(loaded.tasks.len());
        for bytes in &loaded.tasks {
            tasks.push(decode::<Task>(bytes)?);
        }
        // Completed history is rebuilt oldest first.
        tasks.sort_by_key(|t| (t.finished_at, t.task_id));
        for t in tasks {
            state.insert(t);
        }
        for (name, bytes) in &loaded.interests {
            let queue = QueueName::parse(name).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            state.interests.insert(queue, decode(bytes)?);
        }
        for bytes in &loaded.workers {
            let w: WorkerRecord = decode(bytes)?;
            state.workers.insert(w.worker_id, w);
        }
        if let Some(bytes) = &loaded.counters {
            state.counters = decode(bytes)?;
        }
        let state = Arc::new(Mutex::new(state));
        let for_commits = Arc::clone(&state);
        let committer = Committer::start(db, move || {
            for_commits
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .counters
        });
        Ok(Self {
            state,
            committer,
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves indexes that were consistent
        // before each single-step change; carry on rather than wedge.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, ops: Vec<Op>) -> u64 {
        self.committer.journal.push(ops)
    }

    async fn durable(&self, seq: u64) -> Result<(), StoreError> {
        self.committer.journal.durable(seq).await
    }
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The copy, if it is running under `worker`'s lease.
fn leased(st: &State, id: TaskId, worker: WorkerId) -> Result<&Task, StoreError> {
    let t = st.tasks.get(&id).ok_or(StoreError::UnknownTask(id))?;
    if t.state != TaskState::Running {
        return Err(StoreError::NotRunning {
            task: id,
            state: t.state,
        });
    }
    if t.worker_id != Some(worker) {
        return Err(StoreError::NotLeaseHolder { task: id });
    }
    Ok(t)
}

fn put_task(t: &Task) -> Op {
    Op::PutTask(
        *t.task_id.as_bytes(),
        serde_json::to_vec(t).expect("a task serializes"),
    )
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn enqueue(&self, tasks: Vec<Task>) -> Result<Vec<Enqueued>, StoreError> {
        let seq = {
            let mut st = self.lock();
            let mut ops = Vec::with_capacity(tasks.len());
            let mut out = Vec::with_capacity(tasks.len());
            for t in tasks {
                if t.singularly_enqueue {
                    let key = (t.lane(), t.fingerprint.clone());
                    if let Some(&existing) = st.enqueue_locks.get(&key) {
                        st.counters.deduplicated += 1;
                        out.push(Enqueued::Existing(existing));
                        continue;
                    }
                }
                st.counters.routed += 1;
                ops.push(put_task(&t));
                out.push(Enqueued::Created(t.task_id));
                st.insert(t);
            }
            let seq = self.push(ops);
            (seq, out)
        };
        self.durable(seq.0).await?;
        Ok(seq.1)
    }

    async fn claim(
        &self,
        worker: WorkerId,
        lanes: &[Lane],
        now: Millis,
        count: usize,
    ) -> Result<Vec<Task>, StoreError> {
        let mut st = self.lock();
        let mut picked: Vec<TaskId> = Vec::new();
        let mut picked_locks: Vec<(QueueName, String)> = Vec::new();
        for lane in lanes {
            if picked.len() >= count {
                break;
            }
            let Some(ready) = st.ready.get(lane) else {
                continue;
            };
            for &(_, _, id) in ready {
                let t = &st.tasks[&id];
                if t.singularly_run {
                    let key = (t.queue.clone(), t.fingerprint.clone());
                    if st.run_locked(t) || picked_locks.contains(&key) {
                        continue;
                    }
                    picked_locks.push(key);
                }
                picked.push(id);
                if picked.len() >= count {
                    break;
                }
            }
        }
        let mut out = Vec::with_capacity(picked.len());
        let mut ops = Vec::with_capacity(picked.len());
        for id in picked {
            let t = st
                .update(id, |t| {
                    t.state = TaskState::Running;
                    t.attempt += 1;
                    t.worker_id = Some(worker);
                    t.started_at = Some(now);
                    t.lease_until = Some(now.plus_secs(t.ttr as u64));
                })
                .expect("a picked task exists");
            ops.push(put_task(t));
            out.push(t.clone());
        }
        if !ops.is_empty() {
            self.push(ops);
        }
        Ok(out)
    }

    async fn finish(
        &self,
        id: TaskId,
        worker: WorkerId,
        now: Millis,
        outcome: Outcome,
    ) -> Result<Task, StoreError> {
        let mut st = self.lock();
        let t = leased(&st, id, worker)?;
        let (attempt, max_attempts) = (t.attempt, t.max_attempts);
        let mut counters = Counters::default();
        let updated = st
            .update(id, |t| {
                t.lease_until = None;
                t.worker_id = Some(worker);
                match outcome {
                    Outcome::Complete { re_enqueue, output } => {
                        counters.completed += 1;
                        t.fail_reason = None;
                        t.output = output;
                        if re_enqueue {
                            t.state = TaskState::Ready;
                            t.run_at = now;
                        } else {
                            t.state = TaskState::Completed;
                            t.finished_at = Some(now);
                        }
                    }
                    Outcome::Fail {
                        reason,
                        re_enqueue,
                        retry,
                    } => {
                        t.fail_reason = Some(reason.unwrap_or_else(|| "failed".to_owned()));
                        if re_enqueue {
                            counters.retried += 1;
                            t.state = TaskState::Ready;
                            t.run_at = now;
                        } else if attempt < max_attempts {
                            counters.retried += 1;
                            t.state = TaskState::Scheduled;
                            t.run_at = now.plus_millis(retry.delay_ms(attempt));
                        } else {
                            counters.failed += 1;
                            t.state = TaskState::Failed;
                            t.finished_at = Some(now);
                        }
                    }
                }
            })
            .expect("the task exists")
            .clone();
        st.counters.add(&counters);
        let mut ops = vec![put_task(&updated)];
        for old in st.over_history() {
            st.remove(old);
            ops.push(Op::DeleteTask(*old.as_bytes()));
        }
        self.push(ops);
        Ok(updated)
    }

    async fn heartbeat(
        &self,
        id: TaskId,
        worker: WorkerId,
        now: Millis,
        progress: Option<Value>,
    ) -> Result<Task, StoreError> {
        let mut st = self.lock();
        leased(&st, id, worker)?;
        let t = st
            .update(id, |t| {
                t.lease_until = Some(now.plus_secs(t.ttr as u64));
                if progress.is_some() {
                    t.progress = progress;
                }
            })
            .expect("the task exists")
            .clone();
        self.push(vec![put_task(&t)]);
        Ok(t)
    }

    async fn tick(&self, now: Millis) -> Result<Tick, StoreError> {
        let mut st = self.lock();
        let end = Millis(now.0.saturating_add(1));
        let due: Vec<TaskId> = st
            .scheduled
            .range(..(end, TaskId::from_bytes([0; 16])))
            .map(|&(_, id)| id)
            .collect();
        let expired: Vec<TaskId> = st
            .leases
            .range(..(end, TaskId::from_bytes([0; 16])))
            .map(|&(_, id)| id)
            .collect();
        if due.is_empty() && expired.is_empty() {
            return Ok(Tick::default());
        }
        let mut woken = Vec::new();
        let mut ops = Vec::new();
        for id in due {
            let t = st
                .update(id, |t| t.state = TaskState::Ready)
                .expect("indexed");
            ops.push(put_task(t));
            woken.push(t.lane());
        }
        for id in expired {
            let t = st
                .update(id, |t| {
                    t.lease_until = None;
                    if t.attempt >= t.max_attempts {
                        t.state = TaskState::Failed;
                        t.finished_at = Some(now);
                        t.fail_reason = Some("lease expired on the last attempt".to_owned());
                    } else {
                        t.state = TaskState::Ready;
                        t.fail_reason = Some("lease expired".to_owned());
                    }
                })
                .expect("indexed")
                .clone();
            st.counters.lease_expired += 1;
            if t.state == TaskState::Failed {
                st.counters.failed += 1;
            } else {
                woken.push(t.lane());
            }
            ops.push(put_task(&t));
        }
        self.push(ops);
        woken.sort();
        woken.dedup();
        Ok(Tick { woken })
    }

    async fn release_worker(&self, worker: WorkerId, _now: Millis) -> Result<Tick, StoreError> {
        let (seq, mut woken) = {
            let mut st = self.lock();
            let ids: Vec<TaskId> = st
                .running_by
                .get(&worker)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default();
            let mut woken = Vec::new();
            let mut ops = Vec::new();
            for id in ids {
                let t = st
                    .update(id, |t| {
                        t.state = TaskState::Ready;
                        t.lease_until = None;
                        t.fail_reason = Some("worker removed".to_owned());
                    })
                    .expect("indexed");
                woken.push(t.lane());
                ops.push(put_task(t));
            }
            (self.push(ops), woken)
        };
        self.durable(seq).await?;
        woken.sort();
        woken.dedup();
        Ok(Tick { woken })
    }

    async fn delete_tasks(&self, selector: TaskSelector) -> Result<u64, StoreError> {
        let seq_and_count = {
            let mut st = self.lock();
            let ids: Vec<TaskId> = st
                .tasks
                .values()
                .filter(|t| t.state != TaskState::Completed)
                .filter(|t| match &selector {
                    TaskSelector::Queue(q) => &t.queue == q,
                    TaskSelector::Worker(w) => {
                        t.worker_queue == Some(*w)
                            || (t.state == TaskState::Running && t.worker_id == Some(*w))
                    }
                })
                .map(|t| t.task_id)
                .collect();
            let mut ops = Vec::with_capacity(ids.len());
            for id in &ids {
                st.remove(*id);
                ops.push(Op::DeleteTask(*id.as_bytes()));
            }
            (self.push(ops), ids.len() as u64)
        };
        self.durable(seq_and_count.0).await?;
        Ok(seq_and_count.1)
    }

    async fn task(&self, id: TaskId) -> Result<Option<Task>, StoreError> {
        Ok(self.lock().tasks.get(&id).cloned())
    }

    async fn tasks_of_publish(&self, publish_id: TaskId) -> Result<Vec<Task>, StoreError> {
        let st = self.lock();
        let mut out: Vec<Task> = st
            .by_publish
            .get(&publish_id)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| st.tasks.get(id).cloned())
                    .collect()
            })
            .unwrap_or_default();
        out.sort_by(|a, b| (&a.queue, a.task_id).cmp(&(&b.queue, b.task_id)));
        Ok(out)
    }

    async fn list_tasks(
        &self,
        queue: Option<&QueueName>,
        state: TaskState,
        page: Page,
    ) -> Result<Vec<Task>, StoreError> {
        let st = self.lock();
        let mut found: Vec<&Task> = st
            .tasks
            .values()
            .filter(|t| t.state == state && queue.is_none_or(|q| &t.queue == q))
            .collect();
        found.sort_by_key(|t| (t.created_at, t.task_id));
        Ok(found
            .into_iter()
            .skip(page.offset)
            .take(page.limit)
            .cloned()
            .collect())
    }

    async fn running_of(&self, worker: WorkerId) -> Result<Vec<TaskId>, StoreError> {
        Ok(self
            .lock()
            .running_by
            .get(&worker)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default())
    }

    async fn queue_counts(&self) -> Result<Vec<(QueueName, QueueCounts)>, StoreError> {
        Ok(self
            .lock()
            .counts
            .iter()
            .map(|(q, c)| (q.clone(), *c))
            .collect())
    }

    async fn lane_len(&self, lane: &Lane) -> Result<u64, StoreError> {
        Ok(self.lock().ready.get(lane).map_or(0, |s| s.len() as u64))
    }

    async fn put_interests(&self, queue: &QueueName, interests: &Value) -> Result<(), StoreError> {
        let seq = {
            let mut st = self.lock();
            st.interests.insert(queue.clone(), interests.clone());
            self.push(vec![Op::PutInterests(
                queue.to_string(),
                serde_json::to_vec(interests).expect("json serializes"),
            )])
        };
        self.durable(seq).await
    }

    async fn delete_interests(&self, queue: &QueueName) -> Result<bool, StoreError> {
        let (seq, existed) = {
            let mut st = self.lock();
            let existed = st.interests.remove(queue).is_some();
            (
                self.push(vec![Op::DeleteInterests(queue.to_string())]),
                existed,
            )
        };
        self.durable(seq).await?;
        Ok(existed)
    }

    async fn interests(&self) -> Result<Vec<(QueueName, Value)>, StoreError> {
        Ok(self
            .lock()
            .interests
            .iter()
            .map(|(q, v)| (q.clone(), v.clone()))
            .collect())
    }

    async fn put_worker(&self, worker: &WorkerRecord) -> Result<(), StoreError> {
        let seq = {
            let mut st = self.lock();
            st.workers.insert(worker.worker_id, worker.clone());
            self.push(vec![Op::PutWorker(
                *worker.worker_id.as_bytes(),
                serde_json::to_vec(worker).expect("a worker serializes"),
            )])
        };
        self.durable(seq).await
    }

    async fn delete_worker(&self, worker: WorkerId) -> Result<bool, StoreError> {
        let (seq, existed) = {
            let mut st = self.lock();
            let existed = st.workers.remove(&worker).is_some();
            (
                self.push(vec![Op::DeleteWorker(*worker.as_bytes())]),
                existed,
            )
        };
        self.durable(seq).await?;
        Ok(existed)
    }

    async fn workers(&self) -> Result<Vec<WorkerRecord>, StoreError> {
        Ok(self.lock().workers.values().cloned().collect())
    }

    async fn add_counters(&self, delta: Counters) -> Result<(), StoreError> {
        self.lock().counters.add(&delta);
        self.push(vec![Op::Sync]);
        Ok(())
    }

    async fn counters(&self) -> Result<Counters, StoreError> {
        Ok(self.lock().counters)
    }

    async fn flush(&self) -> Result<(), StoreError> {
        let seq = self.committer.journal.push([Op::Sync]);
        self.durable(seq).await
    }
}
