//! Batches: tasks published under one id, counted as their copies move,
//! and a callback task published once when every copy has ended.

use serde_json::json;

use super::copies::copies_routed;
use super::{dedup, Broker, BrokerError, Result, Via};
use crate::metrics::QueueEvent;
use crate::model::{
    BatchRecord, BatchTotals, Lane, NewTask, Published, QueueFilter, Task, TaskId, TaskState,
};

/// A batch publish, as the API parsed it.
#[derive(Debug, Clone, Default)]
pub struct NewBatch {
    /// Its id; one is made when none is given.
    pub id: Option<String>,
    pub tasks: Vec<NewTask>,
    /// Published once when every copy of the batch has ended.
    pub on_complete: Option<NewTask>,
    /// More tasks will join it (a later `PUT /batch` with the same id): it
    /// does not end before one says no more.
    pub more: bool,
}

impl Broker {
    /// Publishes `batch.tasks` in one commit as batch `batch.id` (made
    /// when absent), or adds them to it while it is open for more. Returns
    /// the batch's id and what each task made.
    pub async fn publish_batch(
        &self,
        batch: NewBatch,
        within: Option<&QueueFilter>,
    ) -> Result<(String, Vec<Published>)> {
        let id = batch
            .id
            .unwrap_or_else(|| TaskId::new_publish().copy(0).to_string());
        let record = BatchRecord {
            id: id.clone(),
            created_at: self.clock.now(),
            totals: BatchTotals::default(),
            open_for_more: batch.more,
            on_complete: batch.on_complete,
            ended_at: None,
            callback: None,
        };
        let published = self
            .publish_via(batch.tasks, Via::Batch(Box::new(record)), within)
            .await?;
        // A batch none of whose tasks any queue wanted has ended already.
        self.fire_due_batches().await?;
        Ok((id, published))
    }

    pub async fn batch(&self, id: &str) -> Result<BatchRecord> {
        self.store
            .batch(id)
            .await?
            .ok_or_else(|| BrokerError::UnknownBatch(id.to_owned()))
    }

    /// Publishes the callbacks of batches whose copies have all ended. Each
    /// is published once: the store refuses a second firing, whichever
    /// node or tick tries.
    pub(super) async fn fire_due_batches(&self) -> Result<()> {
        let due = self.store.due_batches().await?;
        if due.is_empty() {
            return Ok(());
        }
        let routes = self.routes.load_full();
        let now = self.clock.now();
        for b in due {
            let Some(mut task) = b.on_complete.clone() else {
                continue;
            };
            task.data.insert(
                "batch".into(),
                json!({"id": b.id, "copies": b.totals.copies(), "totals": b.totals}),
            );
            let publish = TaskId::new_publish();
            let copies = copies_routed(&routes, task, publish, self.defaults(), now);
            let lanes: Vec<Lane> = copies
                .iter()
                .filter(|t| t.state == TaskState::Ready)
                .map(Task::lane)
                .collect();
            let queues: Vec<_> = copies.iter().map(|t| t.queue.clone()).collect();
            if self
                .store
                .fire_batch(&b.id, publish, copies)
                .await?
                .is_none()
            {
                continue;
            }
            tracing::info!(
                target: "interq::tasks",
                batch = %b.id, publish = %publish, copies = queues.len(),
                "a batch ended: its callback was published"
            );
            for lane in dedup(lanes) {
                self.wakers.wake(&lane);
            }
            for q in &queues {
                self.metrics.add(QueueEvent::Routed, q, 1);
            }
        }
        Ok(())
    }
}
