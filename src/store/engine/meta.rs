//! One copy's record without its payload: what stays in memory and what is
//! stored per copy (postcard), with its bounded event history.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::{Lane, Millis, Priority, QueueName, Scope, Task, TaskId, TaskState, WorkerId};

/// One copy without its payload: what stays in memory, and what is stored
/// per copy (postcard-encoded).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Meta {
    /// Its publish's id is derived from it (`TaskId::publish`).
    pub task_id: TaskId,
    pub queue: QueueName,
    pub worker_queue: Option<WorkerId>,
    pub worker_id: Option<WorkerId>,
    pub publisher: Arc<str>,
    pub fingerprint: [u8; 16],
    pub priority: Priority,
    pub scope: Scope,
    pub singularly_enqueue: bool,
    pub replace_waiting: bool,
    pub singularly_run: bool,
    pub state: TaskState,
    pub attempt: u32,
    pub max_attempts: u32,
    pub ttr: u32,
    pub created_at: Millis,
    pub run_at: Millis,
    pub lease_until: Option<Millis>,
    /// A cancellation was asked for while it ran.
    pub cancel_requested: bool,
    /// What most waiting copies do not have, kept out of line.
    pub extra: Option<Box<Extra>>,
    /// Its fairness group. Stored after the record (see `ops::put_copy`):
    /// records written before groups existed end where this begins.
    #[serde(skip)]
    pub group: Option<Arc<str>>,
    /// Its place in a workflow, when it has one; stored after the group.
    #[serde(skip)]
    pub flow: Option<Box<Flow>>,
    /// Its queue's search fields as it was published; stored after the
    /// workflow place.
    #[serde(skip)]
    pub search: Option<Box<SearchFields>>,
}

/// The values of a queue's search fields in a copy's data (see
/// `model::search_fields_of`), so that a search on them reads no payload.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SearchFields(pub Vec<(Box<str>, Option<Box<str>>)>);

/// Where a copy stands in a workflow: what made it, and whether its output
/// goes on as a task.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Flow {
    pub parent: Option<TaskId>,
    pub depth: u32,
    pub publish_output: bool,
    pub batch: Option<String>,
    /// The copies it waits for (resolved when it was published).
    pub depends_on: Vec<TaskId>,
    pub run_if_dependency_failed: bool,
}

impl Flow {
    fn of(t: &Task) -> Option<Box<Self>> {
        let flow = Self {
            parent: t.parent,
            depth: t.depth,
            publish_output: t.publish_output,
            batch: t.batch.clone(),
            depends_on: t
                .depends_on
                .iter()
                .filter_map(|d| match d {
                    crate::model::Dependency::Task(id) => Some(*id),
                    crate::model::Dependency::Key { .. } => None,
                })
                .collect(),
            run_if_dependency_failed: t.run_if_dependency_failed,
        };
        (flow != Self::default()).then(|| Box::new(flow))
    }
}

/// The rarely-set parts of a copy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(super) struct Extra {
    pub expire_at: Option<Millis>,
    pub started_at: Option<Millis>,
    pub finished_at: Option<Millis>,
    pub fail_reason: Option<String>,
    /// JSON text.
    pub progress: Option<String>,
    /// JSON text.
    pub output: Option<String>,
    pub key: Option<String>,
    pub history: Vec<StoredEvent>,
}

/// A `TaskEvent` as stored: every field always written, which a format that
/// does not describe itself (postcard) needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct StoredEvent {
    pub at: Millis,
    pub event: EventKind,
    pub worker_id: Option<WorkerId>,
    pub detail: Option<String>,
}

/// What happened, in one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum EventKind {
    Claimed,
    Progress,
    Completed,
    Failed,
    Retrying,
    Requeued,
    Due,
    CancelRequested,
    Cancelled,
    Expired,
    Replaced,
    // New kinds go last: postcard stores the variant's index.
    /// An operator gave a failed copy new attempts.
    Retried,
    /// An operator retried a failed copy with new data, as a new copy.
    Edited,
    /// An operator made a scheduled copy ready early.
    RunNow,
    /// An operator released the singular lock this copy held.
    LockBroken,
    /// What it waited for completed: it may run.
    Unblocked,
    /// An operator moved it to another queue, as a new copy.
    Moved,
}

impl EventKind {
    const ALL: [EventKind; 17] = [
        Self::Claimed,
        Self::Progress,
        Self::Completed,
        Self::Failed,
        Self::Retrying,
        Self::Requeued,
        Self::Due,
        Self::CancelRequested,
        Self::Cancelled,
        Self::Expired,
        Self::Replaced,
        Self::Retried,
        Self::Edited,
        Self::RunNow,
        Self::LockBroken,
        Self::Unblocked,
        Self::Moved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Claimed => "claimed",
            Self::Progress => "progress",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Retrying => "retrying",
            Self::Requeued => "requeued",
            Self::Due => "due",
            Self::CancelRequested => "cancel_requested",
            Self::Cancelled => "cancelled",
            Self::Expired => "expired",
            Self::Replaced => "replaced",
            Self::Retried => "retried",
            Self::Edited => "edited",
            Self::RunNow => "run_now",
            Self::LockBroken => "lock_broken",
            Self::Unblocked => "unblocked",
            Self::Moved => "moved",
        }
    }

    fn parse(s: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .unwrap_or(Self::Progress)
    }
}

impl From<&crate::model::TaskEvent> for StoredEvent {
    fn from(e: &crate::model::TaskEvent) -> Self {
        Self {
            at: e.at,
            event: EventKind::parse(&e.event),
            worker_id: e.worker_id,
            detail: e.detail.clone(),
        }
    }
}

impl From<StoredEvent> for crate::model::TaskEvent {
    fn from(e: StoredEvent) -> Self {
        Self {
            at: e.at,
            event: e.event.as_str().to_owned(),
            worker_id: e.worker_id,
            detail: e.detail,
        }
    }
}

/// Events kept per copy.
pub(super) const MAX_EVENTS: usize = 32;

impl Meta {
    /// The record of `t`, naming its publisher with `publisher` (a shared,
    /// interned copy of `t.publisher`).
    pub fn from_task(t: &Task, publisher: Arc<str>) -> Self {
        let mut fingerprint = [0u8; 16];
        // Tasks without a singular rule have no fingerprint to parse.
        for (i, b) in fingerprint
            .iter_mut()
            .enumerate()
            .take(t.fingerprint.len() / 2)
        {
            *b = u8::from_str_radix(t.fingerprint.get(2 * i..2 * i + 2).unwrap_or("00"), 16)
                .unwrap_or(0);
        }
        let extra = Extra {
            expire_at: t.expire_at,
            started_at: t.started_at,
            finished_at: t.finished_at,
            fail_reason: t.fail_reason.clone(),
            progress: t.progress.as_ref().map(Value::to_string),
            output: t.output.as_ref().map(Value::to_string),
            key: t.key.clone(),
            history: t.history.iter().map(StoredEvent::from).collect(),
        };
        Self {
            task_id: t.task_id,
            queue: t.queue.clone(),
            worker_queue: t.worker_queue,
            worker_id: t.worker_id,
            publisher,
            fingerprint,
            priority: t.priority,
            scope: t.scope,
            singularly_enqueue: t.singularly_enqueue,
            replace_waiting: t.replace_waiting,
            singularly_run: t.singularly_run,
            state: t.state,
            attempt: t.attempt,
            max_attempts: t.max_attempts,
            ttr: t.ttr,
            created_at: t.created_at,
            run_at: t.run_at,
            lease_until: t.lease_until,
            cancel_requested: t.cancelled && t.state != TaskState::Cancelled,
            extra: (extra != Extra::default()).then(|| Box::new(extra)),
            group: t.group.as_deref().map(Arc::from),
            flow: Flow::of(t),
            search: None,
        }
    }

    /// The whole task, with its payload.
    /// The whole task, with its payload, and its history when asked (the
    /// hot paths, claims and reports, leave it out).
    pub fn to_task(&self, data: Arc<Map<String, Value>>, with_history: bool) -> Task {
        let empty = Extra::default();
        let extra = self.extra.as_deref().unwrap_or(&empty);
        let json = |s: &Option<String>| s.as_ref().and_then(|s| serde_json::from_str(s).ok());
        Task {
            task_id: self.task_id,
            publish_id: self.task_id.publish(),
            queue: self.queue.clone(),
            worker_queue: self.worker_queue,
            data,
            publisher: self.publisher.to_string(),
            priority: self.priority,
            scope: self.scope,
            singularly_enqueue: self.singularly_enqueue,
            replace_waiting: self.replace_waiting,
            singularly_run: self.singularly_run,
            state: self.state,
            attempt: self.attempt,
            max_attempts: self.max_attempts,
            ttr: self.ttr,
            created_at: self.created_at,
            run_at: self.run_at,
            expire_at: extra.expire_at,
            worker_id: self.worker_id,
            lease_until: self.lease_until,
            started_at: extra.started_at,
            finished_at: extra.finished_at,
            fail_reason: extra.fail_reason.clone(),
            progress: json(&extra.progress),
            output: json(&extra.output),
            key: extra.key.clone(),
            group: self.group.as_deref().map(str::to_owned),
            history: if with_history {
                extra.history.iter().cloned().map(Into::into).collect()
            } else {
                Vec::new()
            },
            cancelled: self.cancel_requested || self.state == TaskState::Cancelled,
            parent: self.flow.as_ref().and_then(|f| f.parent),
            depth: self.flow.as_ref().map_or(0, |f| f.depth),
            publish_output: self.flow.as_ref().is_some_and(|f| f.publish_output),
            batch: self.flow.as_ref().and_then(|f| f.batch.clone()),
            depends_on: self.flow.as_ref().map_or_else(Vec::new, |f| {
                f.depends_on
                    .iter()
                    .map(|&id| crate::model::Dependency::Task(id))
                    .collect()
            }),
            run_if_dependency_failed: self
                .flow
                .as_ref()
                .is_some_and(|f| f.run_if_dependency_failed),
            // Only copies under a singular rule have one; the others' bytes
            // are zero, which is not a hash worth showing.
            fingerprint: if self.fingerprint == [0; 16] {
                String::new()
            } else {
                self.fingerprint
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect()
            },
            archived: false,
        }
    }

    /// A copy of this record for an answer to a worker: without the event
    /// history, which such answers leave out.
    pub fn for_answer(&self) -> Meta {
        Meta {
            extra: self.extra.as_ref().map(|e| {
                Box::new(Extra {
                    history: Vec::new(),
                    fail_reason: e.fail_reason.clone(),
                    progress: e.progress.clone(),
                    output: e.output.clone(),
                    key: e.key.clone(),
                    ..**e
                })
            }),
            queue: self.queue.clone(),
            publisher: Arc::clone(&self.publisher),
            group: self.group.clone(),
            flow: self.flow.clone(),
            search: None,
            ..*self
        }
    }

    pub fn publish_id(&self) -> TaskId {
        self.task_id.publish()
    }

    /// The copies it waits for.
    pub fn depends_on(&self) -> &[TaskId] {
        self.flow.as_ref().map_or(&[], |f| &f.depends_on)
    }

    /// The batch it was published in.
    pub fn batch(&self) -> Option<&str> {
        self.flow.as_ref().and_then(|f| f.batch.as_deref())
    }

    pub fn lane(&self) -> Lane {
        match self.worker_queue {
            Some(w) => Lane::Worker(w),
            None => Lane::Queue(self.queue.clone()),
        }
    }

    /// The out-of-line part, created on first write.
    pub fn extra_mut(&mut self) -> &mut Extra {
        self.extra.get_or_insert_with(Box::default)
    }

    /// Records an event in the copy's bounded history.
    pub fn event(
        &mut self,
        at: Millis,
        event: EventKind,
        worker: Option<WorkerId>,
        detail: Option<String>,
    ) {
        let history = &mut self.extra_mut().history;
        if history.len() >= MAX_EVENTS {
            history.remove(0);
        }
        history.push(StoredEvent {
            at,
            event,
            worker_id: worker,
            detail,
        });
    }

    pub fn finished_at(&self) -> Option<Millis> {
        self.extra.as_ref().and_then(|e| e.finished_at)
    }

    /// Its place in its queue's archive: when it finished, and its id.
    pub fn archive_place(&self) -> super::log::ArchivePlace {
        let at = self.finished_at().unwrap_or(self.created_at).0;
        (at, *self.task_id.as_bytes())
    }

    pub fn expire_at(&self) -> Option<Millis> {
        self.extra.as_ref().and_then(|e| e.expire_at)
    }

    pub fn key(&self) -> Option<&str> {
        self.extra.as_ref().and_then(|e| e.key.as_deref())
    }

    /// A ready copy in queue `q` with empty data, for the engine's own tests.
    #[cfg(test)]
    pub fn for_test(task_id: TaskId) -> Meta {
        let data = Map::new();
        let task = Task {
            task_id,
            publish_id: task_id,
            queue: QueueName::parse("q").expect("a queue name"),
            worker_queue: None,
            fingerprint: crate::model::fingerprint(&data),
            data: Arc::new(data),
            publisher: "test".into(),
            priority: Priority::default(),
            scope: Scope::Any,
            singularly_enqueue: false,
            replace_waiting: false,
            singularly_run: false,
            state: TaskState::Ready,
            attempt: 0,
            max_attempts: 1,
            ttr: 60,
            created_at: Millis(1),
            run_at: Millis(1),
            expire_at: None,
            worker_id: None,
            lease_until: None,
            started_at: None,
            finished_at: None,
            fail_reason: None,
            progress: None,
            output: None,
            key: None,
            group: None,
            cancelled: false,
            parent: None,
            depth: 0,
            publish_output: false,
            batch: None,
            depends_on: Vec::new(),
            run_if_dependency_failed: false,
            history: Vec::new(),
            archived: false,
        };
        Meta::from_task(&task, "test".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fingerprint;
    use serde_json::json;

    #[test]
    fn a_task_survives_the_trip_through_meta() {
        let data = Arc::new(json!({"a": 1}).as_object().unwrap().clone());
        let p = TaskId::new_publish();
        let task = Task {
            task_id: p.copy(0),
            publish_id: p,
            queue: QueueName::parse("q").unwrap(),
            worker_queue: Some(WorkerId::new()),
            fingerprint: fingerprint(&data),
            data: data.clone(),
            publisher: "pub".into(),
            priority: Priority(-3),
            scope: Scope::All,
            singularly_enqueue: true,
            replace_waiting: true,
            singularly_run: false,
            state: TaskState::Running,
            attempt: 2,
            max_attempts: 3,
            ttr: 9,
            created_at: Millis(5),
            run_at: Millis(6),
            expire_at: None,
            worker_id: Some(WorkerId::new()),
            lease_until: None,
            started_at: Some(Millis(7)),
            finished_at: Some(Millis(8)),
            fail_reason: Some("no".into()),
            progress: Some(json!(40)),
            output: Some(json!({"o": [1]})),
            key: Some("build-7".into()),
            group: Some("tenant-3".into()),
            cancelled: true,
            parent: Some(TaskId::new_publish().copy(2)),
            depth: 3,
            publish_output: true,
            batch: Some("nightly".into()),
            depends_on: vec![crate::model::Dependency::Task(
                TaskId::new_publish().copy(1),
            )],
            run_if_dependency_failed: true,
            history: vec![crate::model::TaskEvent {
                at: Millis(7),
                event: "claimed".into(),
                worker_id: None,
                detail: None,
            }],
            archived: false,
        };
        let trip = |task: &Task| {
            let meta = Meta::from_task(task, task.publisher.as_str().into());
            let super::super::ops::Op::PutCopy(_, bytes) = super::super::ops::put_copy(&meta)
            else {
                unreachable!("put_copy makes a PutCopy")
            };
            super::super::ops::decode_copy(&bytes)
                .unwrap()
                .to_task(data.clone(), true)
        };
        assert_eq!(trip(&task), task);
        // A workflow place without a group, and a group without one.
        let ungrouped = Task {
            group: None,
            ..task.clone()
        };
        assert_eq!(trip(&ungrouped), ungrouped);
        let unflowed = Task {
            parent: None,
            depth: 0,
            publish_output: false,
            batch: None,
            depends_on: Vec::new(),
            run_if_dependency_failed: false,
            ..task.clone()
        };
        assert_eq!(trip(&unflowed), unflowed);
        // Search fields after every combination of a group and a place.
        let fields = SearchFields(vec![
            ("email".into(), Some("evan@x".into())),
            ("n".into(), None),
        ]);
        for t in [
            &task,
            &ungrouped,
            &unflowed,
            &Task {
                group: None,
                ..unflowed.clone()
            },
        ] {
            let mut meta = Meta::from_task(t, t.publisher.as_str().into());
            meta.search = Some(Box::new(fields.clone()));
            let super::super::ops::Op::PutCopy(_, bytes) = super::super::ops::put_copy(&meta)
            else {
                unreachable!("put_copy makes a PutCopy")
            };
            let back = super::super::ops::decode_copy(&bytes).unwrap();
            assert_eq!(back, meta);
        }
        // A record written before groups existed has no group after it, nor
        // a workflow place.
        let meta = Meta::from_task(&task, task.publisher.as_str().into());
        let old = postcard::to_stdvec(&meta).unwrap();
        let back = super::super::ops::decode_copy(&old).unwrap();
        assert_eq!(back.group, None);
        assert_eq!(
            back.to_task(data, true),
            Task {
                group: None,
                parent: None,
                depth: 0,
                publish_output: false,
                batch: None,
                depends_on: Vec::new(),
                run_if_dependency_failed: false,
                ..task.clone()
            }
        );
        let plain = Meta::from_task(
            &Task {
                started_at: None,
                finished_at: None,
                fail_reason: None,
                progress: None,
                output: None,
                key: None,
                group: None,
                history: Vec::new(),
                ..task
            },
            "pub".into(),
        );
        assert!(
            plain.extra.is_none(),
            "a plain copy keeps nothing out of line"
        );
    }
}
