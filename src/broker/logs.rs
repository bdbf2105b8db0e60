//! Copies' logs: a worker appends what its command writes; anyone allowed
//! reads it back, or follows it while the copy runs.

use super::{Broker, BrokerError, Result};
use crate::model::{TaskId, TaskLog, WorkerId};

impl Broker {
    /// Whether this interq keeps task logs at all (`tasks.log_kept_bytes`).
    pub fn keeps_logs(&self) -> bool {
        self.settings.log_kept_bytes > 0
    }

    /// The most of one log a read returns: all that may be kept.
    pub fn log_read_max(&self) -> usize {
        use crate::store::engine::output::{kept_pages, PAGE};
        kept_pages(self.settings.log_kept_bytes) as usize * PAGE as usize
    }

    /// Adds `text` to the log of the copy `worker` holds; returns the log's
    /// length after it.
    pub async fn append_log(&self, worker: WorkerId, task: TaskId, text: Vec<u8>) -> Result<u64> {
        if !self.workers.contains_key(&worker) {
            return Err(BrokerError::UnknownWorker(worker));
        }
        self.touch(worker);
        let now = self.clock.now();
        let total = self
            .store
            .append_log(task, worker, text, now, self.settings.log_every_ms)
            .await?;
        self.log_changed();
        Ok(total)
    }

    /// A copy's log from `from` (its first byte kept when absent), at most
    /// `max` bytes.
    pub async fn task_log(&self, task: TaskId, from: Option<u64>, max: usize) -> Result<TaskLog> {
        self.store
            .task_log(task, from, max)
            .await?
            .ok_or(BrokerError::UnknownTask(task))
    }

    /// Wakes this node's log followers, when it has any (every report calls
    /// it: with none it costs one atomic read).
    pub(super) fn log_changed(&self) {
        if self.log_news.receiver_count() > 0 {
            self.log_news.send_modify(|n| *n += 1);
        }
    }

    /// Changes when a log on this node grew or a copy ended: a follower
    /// waits on it (and polls, for what other nodes did).
    pub fn log_news(&self) -> tokio::sync::watch::Receiver<u64> {
        self.log_news.subscribe()
    }
}
