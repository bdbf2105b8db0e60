//! Making a publish's copies once routing has chosen their queues: what a
//! client's publish and a completed copy's output (`publishOutput`) share.

use std::sync::Arc;

use interest::{Capture, Router};
use serde_json::{Map, Value};

use crate::model::{
    identity, Millis, NewTask, QueueName, Task, TaskId, TaskState, WorkerId, MAX_COPIES,
};
use crate::store::Outputs;

/// What a copy takes from the settings when its publish does not say.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    pub max_attempts: u32,
    pub ttr_secs: u32,
}

/// The copies of one publish, one per target, in order. Each takes the key
/// and group its queue's interests capture from the data (`(?P<key>…)`,
/// `(?P<group>…)`) in place of the publisher's; a capture that is not valid
/// (empty, too long) leaves the publisher's. `indices` are the routed
/// queues the captures are read from.
#[allow(clippy::too_many_arguments)]
pub(super) fn copies_of(
    routes: &Router,
    indices: &[usize],
    new: &NewTask,
    data: &Arc<Map<String, Value>>,
    publish_id: TaskId,
    targets: Vec<(QueueName, Option<WorkerId>)>,
    defaults: Defaults,
    now: Millis,
) -> Vec<Task> {
    let captured = |capture: Capture, valid: fn(&str) -> bool| -> Vec<(&str, String)> {
        indices
            .iter()
            .filter(|&&i| routes.interests_at(i).sets(capture))
            .filter_map(|&i| {
                let text = routes.interests_at(i).capture_from(capture, data)?;
                valid(&text).then(|| (&**routes.name(i), text))
            })
            .collect()
    };
    let keys = captured(Capture::Key, crate::model::is_valid_key);
    let groups = captured(Capture::Group, crate::model::is_valid_group);
    // Only the singular rules compare tasks; others skip the hash.
    let singular = new.singularly_enqueue || new.singularly_run;
    let fp = if singular {
        identity(new.key.as_deref(), data)
    } else {
        String::new()
    };
    let mut copies = Vec::with_capacity(targets.len());
    for (index, (queue, worker_queue)) in targets.into_iter().enumerate() {
        let id = publish_id.copy(index as u16);
        let mut copy = make_copy(new, data, id, queue, worker_queue, &fp, defaults, now);
        if let Some((_, key)) = keys.iter().find(|(q, _)| *q == copy.queue.as_str()) {
            if singular {
                copy.fingerprint = identity(Some(key), data);
            }
            copy.key = Some(key.clone());
        }
        if let Some((_, g)) = groups.iter().find(|(q, _)| *q == copy.queue.as_str()) {
            copy.group = Some(g.clone());
        }
        copies.push(copy);
    }
    copies
}

/// A logged publish's copy for `queue`, replayed into it: as `copies_of`
/// makes it, with the key and group that queue's interests capture.
pub(super) fn replayed_copy(
    interests: &interest::Interests,
    new: &NewTask,
    data: &Arc<Map<String, Value>>,
    task_id: TaskId,
    queue: QueueName,
    defaults: Defaults,
    now: Millis,
) -> Task {
    let singular = new.singularly_enqueue || new.singularly_run;
    let key = interests
        .sets(Capture::Key)
        .then(|| interests.capture_from(Capture::Key, data))
        .flatten()
        .filter(|k| crate::model::is_valid_key(k));
    let fp = match (singular, &key) {
        (false, _) => String::new(),
        (true, Some(k)) => identity(Some(k), data),
        (true, None) => identity(new.key.as_deref(), data),
    };
    let mut copy = make_copy(new, data, task_id, queue, None, &fp, defaults, now);
    if let Some(k) = key {
        copy.key = Some(k);
    }
    if let Some(g) = interests
        .sets(Capture::Group)
        .then(|| interests.capture_from(Capture::Group, data))
        .flatten()
        .filter(|g| crate::model::is_valid_group(g))
    {
        copy.group = Some(g);
    }
    copy
}

#[allow(clippy::too_many_arguments)]
fn make_copy(
    new: &NewTask,
    data: &Arc<Map<String, Value>>,
    task_id: TaskId,
    queue: QueueName,
    worker_queue: Option<WorkerId>,
    fp: &str,
    defaults: Defaults,
    now: Millis,
) -> Task {
    let run_at = new.run_at.unwrap_or(now).max(now);
    Task {
        task_id,
        publish_id: task_id.publish(),
        queue,
        worker_queue,
        data: Arc::clone(data),
        publisher: new.publisher.clone(),
        priority: new.priority,
        scope: new.scope,
        singularly_enqueue: new.singularly_enqueue,
        replace_waiting: new.replace_waiting && new.singularly_enqueue,
        singularly_run: new.singularly_run,
        state: if run_at > now {
            TaskState::Scheduled
        } else {
            TaskState::Ready
        },
        attempt: 0,
        max_attempts: new.max_attempts.unwrap_or(defaults.max_attempts),
        ttr: new.ttr.unwrap_or(defaults.ttr_secs),
        created_at: now,
        run_at,
        expire_at: new.expire_at.or(new.ttl_ms.map(|ms| now.plus_millis(ms))),
        worker_id: None,
        lease_until: None,
        started_at: None,
        finished_at: None,
        fail_reason: None,
        progress: None,
        output: None,
        key: new.key.clone(),
        group: new.group.clone(),
        cancelled: false,
        parent: new.parent,
        depth: new.depth,
        publish_output: new.publish_output,
        batch: new.batch.clone(),
        depends_on: new.depends_on.clone(),
        run_if_dependency_failed: new.run_if_dependency_failed,
        history: Vec::new(),
        fingerprint: fp.to_owned(),
        archived: false,
    }
}

/// Routes completed copies' outputs through the interests as the router
/// stood when the reports came in (see `Store::report`).
pub struct OutputRouter {
    routes: Arc<Router>,
    defaults: Defaults,
    max_depth: u32,
}

impl std::fmt::Debug for OutputRouter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutputRouter")
            .field("defaults", &self.defaults)
            .field("max_depth", &self.max_depth)
            .finish_non_exhaustive()
    }
}

impl OutputRouter {
    pub fn new(routes: Arc<Router>, defaults: Defaults, max_depth: u32) -> Self {
        Self {
            routes,
            defaults,
            max_depth,
        }
    }
}

/// The copies of a task interq publishes itself (an output, a batch's
/// callback), one per queue that wants it (`scope: any`).
pub(super) fn copies_routed(
    routes: &Router,
    mut task: NewTask,
    publish_id: TaskId,
    defaults: Defaults,
    now: Millis,
) -> Vec<Task> {
    let indices = routes.route_indices(&task.data);
    let mut targets: Vec<(QueueName, Option<WorkerId>)> = indices
        .iter()
        .map(|&i| (QueueName::from_shared(Arc::clone(routes.name(i))), None))
        .collect();
    if targets.len() > MAX_COPIES {
        // A client's publish would be refused; this one has nobody to hear
        // it, so it goes to the first queues and says so.
        tracing::warn!(
            target: "interq::tasks",
            publish = %publish_id, wanted = targets.len(), kept = MAX_COPIES,
            "a task interq published reached more queues than one publish may; the rest get no copy"
        );
        targets.truncate(MAX_COPIES);
    }
    let data = Arc::new(std::mem::take(&mut task.data));
    copies_of(
        routes, &indices, &task, &data, publish_id, targets, defaults, now,
    )
}

impl Outputs for OutputRouter {
    fn copies(&self, task: NewTask, now: Millis) -> Vec<Task> {
        copies_routed(
            &self.routes,
            task,
            TaskId::new_publish(),
            self.defaults,
            now,
        )
    }

    fn max_depth(&self) -> u32 {
        self.max_depth
    }
}
