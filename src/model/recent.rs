//! The publish log's records: a client's publish as kept for a while, so
//! that a queue whose interests are set later may have it copied in
//! (`replay`).

use serde::{Deserialize, Serialize};

use super::{Millis, NewTask, QueueName, TaskId};

/// One publish in the publish log. Its data is its payload, kept with it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishRecord {
    pub publish_id: TaskId,
    pub at: Millis,
    /// Its settings as published; `data` is left empty here.
    pub task: NewTask,
    /// The queues it has copies in (or had): those it reached when
    /// published, then those a replay copied it into. A replay never copies
    /// it into one of them again.
    pub queues: Vec<QueueName>,
    /// Copy indices taken so far: a replay's copy takes the next.
    pub copies: u16,
    /// About how many bytes it and its payload take.
    pub bytes: u64,
}
