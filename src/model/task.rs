use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::{Millis, QueueName, TaskId, WorkerId};

/// Where a task copy is in its life. `docs/state-machine.md` draws the moves.
///
/// - `scheduled`: waiting for its `runAt` (a future publish, or a retry's
///   backoff); becomes `ready` when that time comes.
/// - `ready`: waiting in its queue to be claimed.
/// - `running`: claimed by a worker under a lease of `ttr` seconds. The worker
///   completes or fails it; a lease that runs out puts it back to `ready`.
/// - `completed`: done; kept in a bounded recent history.
/// - `failed`: out of attempts (or failed by an expired lease on its last
///   attempt); kept in the failed set until retried or removed.
/// - `cancelled`: stopped by `DELETE /task` (by id or key) while it waited, or
///   reported by its worker after a cancellation; never retried, kept in the
///   bounded recent history.
/// - `expired`: waited past its `expireAt` without being claimed; kept in the
///   recent history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    Scheduled,
    Ready,
    Running,
    Completed,
    Failed,
    Cancelled,
    /// Not claimed before its `expireAt`.
    Expired,
    // New states go last: postcard stores the variant's index.
    /// Waiting for the tasks it depends on (`dependsOn`) to complete.
    Blocked,
}

impl TaskState {
    /// Every state, in the order lists show them.
    pub const ALL: [TaskState; 8] = [
        Self::Ready,
        Self::Blocked,
        Self::Scheduled,
        Self::Running,
        Self::Failed,
        Self::Completed,
        Self::Cancelled,
        Self::Expired,
    ];

    /// The state the API spells `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|state| state.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Ready => "ready",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
            Self::Blocked => "blocked",
        }
    }

    /// Waiting to run: what `singularlyEnqueue` compares against, what a
    /// cancellation ends at once, what `expireAt` drops.
    pub fn is_waiting(self) -> bool {
        matches!(self, Self::Scheduled | Self::Ready | Self::Blocked)
    }

    /// Done for good, kept only in the bounded recent history.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled | Self::Expired)
    }

    /// Will not run again on its own: finished, or failed for good.
    pub fn has_ended(self) -> bool {
        self.is_finished() || self == Self::Failed
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many workers a publish reaches in each interested queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// One copy per interested queue, taken by any one of its workers.
    #[default]
    Any,
    /// One copy per worker registered on an interested queue, in that
    /// worker's own queue.
    All,
}

/// A task's priority: higher runs first; FIFO within a priority.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Priority(pub i16);

/// Why a priority was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a priority is an integer from -100 to 100 or one of urgent, high, normal, low, bulk")]
pub struct PriorityError;

impl Priority {
    pub const MIN: i16 = -100;
    pub const MAX: i16 = 100;
    pub const NAMES: [(&'static str, i16); 5] = [
        ("urgent", 20),
        ("high", 10),
        ("normal", 0),
        ("low", -10),
        ("bulk", -20),
    ];

    pub fn from_number(n: i64) -> Result<Self, PriorityError> {
        if (Self::MIN as i64..=Self::MAX as i64).contains(&n) {
            Ok(Self(n as i16))
        } else {
            Err(PriorityError)
        }
    }

    pub fn from_name(name: &str) -> Result<Self, PriorityError> {
        if let Ok(n) = name.trim().parse::<i64>() {
            return Self::from_number(n);
        }
        Self::NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.trim()))
            .map(|&(_, p)| Self(p))
            .ok_or(PriorityError)
    }
}

/// A queue a task copy waits in to be claimed: a named queue, or one worker's
/// own queue (`scope: all`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    Queue(QueueName),
    Worker(WorkerId),
}

/// One copy of a published task, in one queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub task_id: TaskId,
    /// The publish that made this copy; every copy of one publish shares it.
    pub publish_id: TaskId,
    pub queue: QueueName,
    /// For `scope: all`: the worker whose own queue holds this copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_queue: Option<WorkerId>,
    /// Shared by every copy of a publish, always exactly as published (an
    /// empty object included). Answers to a worker's reports leave it out
    /// (the worker has it): see `api::task`.
    #[serde(default)]
    pub data: std::sync::Arc<Map<String, Value>>,
    pub publisher: String,
    pub priority: Priority,
    pub scope: Scope,
    pub singularly_enqueue: bool,
    /// With `singularly_enqueue`: a new twin replaces the waiting one
    /// (`"singularlyEnqueue": "replace"`) instead of being folded into it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace_waiting: bool,
    pub singularly_run: bool,
    pub state: TaskState,
    /// How many times it was claimed.
    pub attempt: u32,
    pub max_attempts: u32,
    /// Seconds a claim may run before its lease runs out.
    pub ttr: u32,
    pub created_at: Millis,
    /// When it may run: its publish's `runAt`, or the end of a retry's backoff.
    pub run_at: Millis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<WorkerId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Millis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_reason: Option<String>,
    /// The last progress a worker reported (a number 0-100 or an object).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<serde_json::Value>,
    /// What the worker attached when completing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
    /// The caller's own name for the task (`build-1234`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The fairness group it belongs to (a tenant, a customer): claims in
    /// its queue rotate between groups, and a queue may limit each group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// A cancellation was asked for: the worker should stop it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancelled: bool,
    /// For a task made from a completed copy's output: that copy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<TaskId>,
    /// How many outputs lead to it from a client's publish (0: published by
    /// a client).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub depth: u32,
    /// Completed with an object as its output, the output is published as a
    /// new task (whose copies carry this on).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub publish_output: bool,
    /// The batch it was published in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<String>,
    /// What it waits for: as published, task ids or keys; as stored, the
    /// copies they named then.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Dependency>,
    /// When a dependency fails for good, is cancelled or expires: run
    /// anyway (`true`), or be cancelled (the default).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub run_if_dependency_failed: bool,
    /// What happened to this copy after it was published, oldest first (the
    /// last 32 events).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<TaskEvent>,
    /// Identity for the singular rules: a hash of the canonical `data`;
    /// empty for tasks that use neither rule.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub fingerprint: String,
    /// Read from the archive (embedded store): finished, and out of memory.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub archived: bool,
}

impl Task {
    /// The queue this copy waits in while ready.
    pub fn lane(&self) -> Lane {
        match self.worker_queue {
            Some(w) => Lane::Worker(w),
            None => Lane::Queue(self.queue.clone()),
        }
    }
}

/// Longest task key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;

/// A task key is 1 to `MAX_KEY_BYTES` bytes without control characters.
pub fn is_valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_BYTES && !key.chars().any(char::is_control)
}

/// Longest fairness group name, in bytes.
pub const MAX_GROUP_BYTES: usize = 128;

/// A group name is 1 to `MAX_GROUP_BYTES` bytes without control characters.
pub fn is_valid_group(group: &str) -> bool {
    !group.is_empty() && group.len() <= MAX_GROUP_BYTES && !group.chars().any(char::is_control)
}

/// The identity the singular rules compare: the task's key when it has one,
/// else its whole `data`.
pub fn identity(key: Option<&str>, data: &Map<String, Value>) -> String {
    match key {
        Some(k) => {
            let digest = Sha256::digest(format!("key\0{k}").as_bytes());
            digest[..16].iter().map(|b| format!("{b:02x}")).collect()
        }
        None => fingerprint(data),
    }
}

/// A hash of `data` that is the same for equal objects whatever their key
/// order, stable across versions and nodes (it names locks in shared stores).
pub fn fingerprint(data: &Map<String, Value>) -> String {
    fn write(value: &Value, out: &mut Vec<u8>) {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push(b'{');
                for k in keys {
                    out.extend_from_slice(serde_json::to_string(k).unwrap_or_default().as_bytes());
                    out.push(b':');
                    write(&map[k], out);
                    out.push(b',');
                }
                out.push(b'}');
            }
            Value::Array(items) => {
                out.push(b'[');
                for item in items {
                    write(item, out);
                    out.push(b',');
                }
                out.push(b']');
            }
            other => out.extend_from_slice(other.to_string().as_bytes()),
        }
    }
    let mut canonical = Vec::new();
    write(&Value::Object(data.clone()), &mut canonical);
    let digest = Sha256::digest(&canonical);
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// How many copies of one queue are in each state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueCounts {
    pub ready: u64,
    pub scheduled: u64,
    pub running: u64,
    pub failed: u64,
    /// Waiting for their dependencies.
    #[serde(default)]
    pub blocked: u64,
}

/// Totals since the store was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Counters {
    /// Publishes accepted (a batch counts each of its tasks).
    pub published: u64,
    /// Copies made into queues.
    pub routed: u64,
    /// Publishes no queue wanted.
    pub discarded: u64,
    /// Copies that `singularlyEnqueue` folded into one already waiting.
    pub deduplicated: u64,
    pub completed: u64,
    /// Copies that ran out of attempts into the failed set.
    pub failed: u64,
    /// Failures scheduled to run again after a backoff.
    pub retried: u64,
    /// Leases that ran out before the worker answered.
    pub lease_expired: u64,
    /// Copies cancelled (waiting, or running and then reported).
    pub cancelled: u64,
    /// Copies not claimed before their `expireAt`.
    pub expired: u64,
}

impl Counters {
    pub fn add(&mut self, other: &Counters) {
        self.published += other.published;
        self.routed += other.routed;
        self.discarded += other.discarded;
        self.deduplicated += other.deduplicated;
        self.completed += other.completed;
        self.failed += other.failed;
        self.retried += other.retried;
        self.lease_expired += other.lease_expired;
        self.cancelled += other.cancelled;
        self.expired += other.expired;
    }
}

/// When a failed attempt runs again: exponential backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub base_ms: u64,
    pub max_ms: u64,
    /// Fraction of the delay drawn at random either way (0.2: ±20%), so that
    /// tasks failed together do not all come back together.
    pub jitter: f64,
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1`, after `attempt` failures.
    pub fn delay_ms(&self, attempt: u32) -> u64 {
        let exp = attempt.saturating_sub(1).min(40);
        let delay = self.base_ms.saturating_mul(1u64 << exp).min(self.max_ms);
        let spread = (delay as f64 * self.jitter.clamp(0.0, 1.0)) as u64;
        if spread == 0 {
            return delay;
        }
        delay - spread + fastrand::u64(0..=2 * spread)
    }
}

/// A registered worker, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerRecord {
    pub worker_id: WorkerId,
    /// A name for people (host and process id, by default).
    #[serde(default)]
    pub name: String,
    /// Queues in the order the worker takes from them.
    pub queues: Vec<QueueName>,
    /// With weights (one per queue, in `queues`' order), each claim first
    /// tries a queue chosen in proportion to them, so that the later
    /// queues are never starved; without, the order is strict.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weights: Vec<u32>,
    pub registered_at: Millis,
    /// The key that registered it (its label, or a name derived from its
    /// hash), when auth is on: only that key (or an admin) may claim and
    /// report for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// With a store several nodes share: when a node last told the others
    /// it heard from the worker (by that node's clock), so that every node
    /// knows it is alive, not only the one it talks to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen_at: Option<Millis>,
}

/// One operator action that changed state, as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub at: Millis,
    /// The role the caller's credentials carry (`admin`), or `open` when
    /// auth is off.
    pub role: String,
    /// What was done: `retry`, `remove`, `clear_queue`, `edit`, ...
    pub action: String,
    /// What it was done to: a task id, a queue, a worker, a lock.
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// Which singular rule a lock enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockKind {
    /// Held by a waiting `singularlyEnqueue` copy: twins fold into it.
    Enqueue,
    /// Held by a running `singularlyRun` copy: twins wait.
    Run,
}

impl LockKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enqueue => "enqueue",
            Self::Run => "run",
        }
    }
}

/// A singular lock held now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldLock {
    pub kind: LockKind,
    pub queue: QueueName,
    /// The copy holding it.
    pub task_id: TaskId,
    /// For a run lock: the worker running the holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<WorkerId>,
    /// What twins are compared by: the task's key, or its data's hash.
    pub identity: String,
    /// The holder's key, when it was published with one (what people call
    /// it by).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// For a run lock: its twins waiting for it to end.
    #[serde(default)]
    pub waiting: u32,
}

/// What a worker is doing, as status shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkerState {
    /// Polling, holding no task.
    Idle,
    /// Holding at least one task.
    Processing,
    /// Not heard from for longer than the stale time.
    Stale,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn log_reads_begin_and_end_at_whole_characters() {
        let text = "añb€c".as_bytes();
        // Cut inside `ñ` (2 bytes) at the start: skipped.
        assert_eq!(whole_chars(10, &text[2..]), (11, "b€c".to_owned()));
        // Cut inside `€` (3 bytes) at the end: left for the next read.
        assert_eq!(whole_chars(0, &text[..6]), (0, "añb".to_owned()));
        assert_eq!(whole_chars(0, text), (0, "añb€c".to_owned()));
        assert_eq!(whole_chars(5, b""), (5, String::new()));
        // Not UTF-8 at all: replaced, not dropped.
        assert_eq!(whole_chars(0, b"a\xffb"), (0, "a\u{fffd}b".to_owned()));
    }

    #[test]
    fn fingerprint_ignores_key_order_only() {
        let a = json!({"a": 1, "b": {"x": [1, 2], "y": "z"}});
        let b = json!({"b": {"y": "z", "x": [1, 2]}, "a": 1});
        let c = json!({"a": 1, "b": {"x": [2, 1], "y": "z"}});
        let f = |v: &Value| fingerprint(v.as_object().unwrap());
        assert_eq!(f(&a), f(&b));
        assert_ne!(f(&a), f(&c));
        assert_eq!(f(&a).len(), 32);
    }

    #[test]
    fn priorities_by_number_or_name() {
        assert_eq!(Priority::from_name("urgent"), Ok(Priority(20)));
        assert_eq!(Priority::from_name("BULK"), Ok(Priority(-20)));
        assert_eq!(Priority::from_name("7"), Ok(Priority(7)));
        assert!(Priority::from_name("101").is_err());
        assert!(Priority::from_name("soon").is_err());
    }

    #[test]
    fn backoff_doubles_within_jitter_and_caps() {
        let p = RetryPolicy {
            base_ms: 1000,
            max_ms: 10_000,
            jitter: 0.2,
        };
        for _ in 0..100 {
            assert!((800..=1200).contains(&p.delay_ms(1)));
            assert!((1600..=2400).contains(&p.delay_ms(2)));
            assert!((8000..=12_000).contains(&p.delay_ms(10)));
        }
        let exact = RetryPolicy { jitter: 0.0, ..p };
        assert_eq!(exact.delay_ms(3), 4000);
    }
}

/// The answer to one publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Published {
    /// The publish's id; every copy carries it as `publishId`.
    pub task_id: TaskId,
    /// The queues that received a copy; empty when the task was discarded.
    pub queues: Vec<QueueName>,
    pub copies: Vec<CopyRef>,
}

/// Where one copy of a publish went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CopyRef {
    pub queue: QueueName,
    pub task_id: TaskId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_queue: Option<WorkerId>,
    /// `singularlyEnqueue` found this identical copy already waiting.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub existing: bool,
    /// `singularlyEnqueue: "replace"` cancelled this waiting twin for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replaced: Option<TaskId>,
}

/// Limits on how a queue's copies are handed out.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueSettings {
    /// Most copies of the queue running at once, across all workers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_running: Option<u32>,
    /// Most claims per second (a token bucket holding up to one second's
    /// worth, and at least one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<f64>,
    /// A paused queue takes tasks and hands none out.
    #[serde(default)]
    pub paused: bool,
    /// Most copies of one group running at once (1: each group in order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_max_running: Option<u32>,
    /// Most claims per second of one group (a bucket as `rate_limit`'s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_rate_limit: Option<f64>,
    /// Claims go to the highest priority among the groups' next copies,
    /// rotating only between groups at that priority; without it groups
    /// take turns whatever their priorities (priority orders each group).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub strict_priority: bool,
    /// Settings of single groups, over the queue's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub groups: BTreeMap<String, GroupSettings>,
    /// Every copy that completes here with an object as its output has the
    /// output published as a new task (as a publish's `publishOutput`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub publish_output: bool,
    /// Fields of `data` each copy published here keeps in memory, so that a
    /// search on them reads no payloads (see `filter::search_fields_of`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search_fields: Vec<String>,
}

/// A queue's fairness groups as status shows them: the ones with the most
/// ready copies, and how many groups have ready or running copies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueGroups {
    pub queue: QueueName,
    pub total: usize,
    pub groups: Vec<GroupCount>,
}

/// One fairness group of a queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupCount {
    pub group: String,
    pub ready: u64,
    pub running: u64,
    /// Why its ready copies are not handed out now: `maxRunning` (as many
    /// run as the queue allows a group) or `rateLimit` (it had its claims
    /// per second).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<String>,
    /// With `rateLimit`: when it may be claimed again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_until: Option<Millis>,
}

/// One group's own limits and weight in its queue.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_running: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<f64>,
    /// Turns it takes per turn of a group of weight 1 (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

impl QueueSettings {
    /// Most copies of `group` running at once, if limited.
    pub fn max_running_of(&self, group: &str) -> Option<u32> {
        self.groups
            .get(group)
            .and_then(|g| g.max_running)
            .or(self.group_max_running)
    }

    /// Most claims per second of `group`, if limited.
    pub fn rate_limit_of(&self, group: &str) -> Option<f64> {
        self.groups
            .get(group)
            .and_then(|g| g.rate_limit)
            .or(self.group_rate_limit)
    }

    /// The weight of `group`'s turns.
    pub fn weight_of(&self, group: &str) -> u32 {
        self.groups.get(group).and_then(|g| g.weight).unwrap_or(1)
    }
}

impl QueueSettings {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// A task to publish, as the API parsed it (also what a schedule publishes).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct NewTask {
    pub publisher: String,
    pub data: Map<String, Value>,
    pub run_at: Option<Millis>,
    pub scope: Scope,
    pub singularly_enqueue: bool,
    pub replace_waiting: bool,
    pub singularly_run: bool,
    pub priority: Priority,
    pub max_attempts: Option<u32>,
    pub ttr: Option<u32>,
    pub expire_at: Option<Millis>,
    /// Milliseconds from the publish to `expire_at`, when that is not given.
    pub ttl_ms: Option<u64>,
    /// The caller's name for the task; the singular rules compare it.
    pub key: Option<String>,
    /// The fairness group of its copies (a queue's `group` capture may
    /// give its copies another).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Refuse the publish (nothing stored) when no queue's interests want
    /// the task, rather than discard it or leave it to an `unrouted` queue.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub require_route: bool,
    /// Its copies' outputs are published on as tasks (see `Task`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub publish_output: bool,
    /// Set only for a task made from a completed copy's output.
    #[serde(skip)]
    pub parent: Option<TaskId>,
    #[serde(skip)]
    pub depth: u32,
    /// Set only for a task published in a batch (`PUT /batch`).
    #[serde(skip)]
    pub batch: Option<String>,
    /// Tasks that must complete before its copies may run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<Dependency>,
    /// See `Task::run_if_dependency_failed`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub run_if_dependency_failed: bool,
}

/// A task another waits for: a copy or a publish (every copy of it) by id,
/// or every copy with a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Dependency {
    Task(TaskId),
    Key { key: String },
}

/// Most dependencies one task may name.
pub const MAX_DEPENDENCIES: usize = 10_000;

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// When a schedule fires.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Spec {
    /// A cron expression (5 fields, or 6 with seconds first) in an IANA time
    /// zone.
    Cron { expr: String, timezone: String },
    /// Every so many seconds, from when the schedule was set.
    Every { secs: u64 },
    /// Once, at this time.
    At { at: Millis },
}

/// A named schedule, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleRecord {
    pub name: String,
    pub spec: Spec,
    /// What each firing publishes.
    pub task: NewTask,
    /// When it was set: intervals count from here.
    pub anchor: Millis,
    /// The next due time; none once a one-off has fired.
    pub next_run: Option<Millis>,
    /// The due time it last fired for.
    pub last_run: Option<Millis>,
    /// Paused: it does not fire until resumed (then from its next due time
    /// after the resume: what it missed is not made up).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

/// Part of a copy's log: what its command wrote, as its worker sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskLog {
    pub task_id: TaskId,
    pub queue: QueueName,
    /// The copy's state when it was read: a follower stops once it ended.
    pub state: TaskState,
    /// The offset of the first byte still kept (the front is trimmed).
    pub start: u64,
    /// The offset `text` begins at.
    pub offset: u64,
    /// Bytes ever written: where the next read begins.
    pub total: u64,
    pub text: Vec<u8>,
}

impl TaskLog {
    /// `text` as characters: where they begin, and they.
    pub fn whole_text(&self) -> (u64, String) {
        whole_chars(self.offset, &self.text)
    }
}

/// The text of `bytes` read from `offset`: a character cut by the start of
/// the read (or by trimming) is skipped, one cut by its end left for the
/// next read. Bytes that are no UTF-8 at all are replaced.
pub fn whole_chars(offset: u64, bytes: &[u8]) -> (u64, String) {
    let skip = bytes
        .iter()
        .take(3)
        .take_while(|b| (**b & 0xC0) == 0x80)
        .count();
    let mut body = &bytes[skip..];
    if let Err(e) = std::str::from_utf8(body) {
        // An incomplete character at the very end: the next read has it.
        if e.error_len().is_none() {
            body = &body[..e.valid_up_to()];
        }
    }
    (
        offset + skip as u64,
        String::from_utf8_lossy(body).into_owned(),
    )
}

/// One thing that happened to a copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskEvent {
    pub at: Millis,
    /// `claimed`, `progress`, `completed`, `failed`, `retrying`, `requeued`,
    /// `due`, `cancel_requested`, `cancelled`, `expired`, `replaced`.
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<WorkerId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}
