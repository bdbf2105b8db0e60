//! Replays: a queue whose interests were just set has the matching
//! publishes of the publish log copied in, once each (see
//! `store::engine::recent`).

use super::copies::replayed_copy;
use super::{Broker, Result};
use crate::model::{Lane, Millis, QueueName, Task, TaskId, TaskState};
use crate::store::Enqueued;

/// Logged publishes read (and matched) at once.
const REPLAY_STEP: usize = 1000;

impl Broker {
    /// Copies into `queue` every publish of the last `secs` seconds in the
    /// publish log that its interests (as they are now) want and that has
    /// no copy in it yet. Returns how many copies it made.
    pub async fn replay(&self, queue: &QueueName, secs: u64) -> Result<u64> {
        let routes = self.routes.load_full();
        let Some(interests) = routes.get(queue.as_str()) else {
            return Ok(0);
        };
        let now = self.clock.now();
        let since = Millis(now.0.saturating_sub(secs.saturating_mul(1000)));
        let mut after: Option<TaskId> = None;
        let mut made = 0;
        loop {
            let page = self
                .store
                .recent_publishes(since, after, REPLAY_STEP)
                .await?;
            let Some((last, _)) = page.last() else {
                break;
            };
            after = Some(last.publish_id);
            let copies: Vec<(TaskId, Task)> = page
                .iter()
                .filter(|(r, data)| !r.queues.contains(queue) && interests.matches(data))
                .map(|(r, data)| {
                    let id = r.publish_id.copy(r.copies);
                    let copy = replayed_copy(
                        interests,
                        &r.task,
                        data,
                        id,
                        queue.clone(),
                        self.defaults(),
                        now,
                    );
                    (r.publish_id, copy)
                })
                .collect();
            if copies.is_empty() {
                continue;
            }
            let ready = copies.iter().any(|(_, t)| t.state == TaskState::Ready);
            let done = self.store.replay(queue, copies).await?;
            made += done
                .iter()
                .filter(|e| !matches!(e, Enqueued::Existing(_)))
                .count() as u64;
            if ready {
                self.wakers.wake(&Lane::Queue(queue.clone()));
            }
        }
        Ok(made)
    }
}
