//! The embedded store against a plain model of the task state machine, on
//! random sequences of publishes, claims, completions, failures and time,
//! with copies in fairness groups (turns, and at most `GROUP_MAX_RUNNING` of
//! a group running).

use std::collections::{BTreeMap, HashMap};

use crate::conformance::copy;
use interq::model::{Millis, QueueName, RetryPolicy, Task, TaskId, TaskState, WorkerId};
use interq::store::embedded::EmbeddedStore;
use interq::store::{Outcome, Store};
use proptest::prelude::*;

const RETRY: RetryPolicy = RetryPolicy {
    base_ms: 1000,
    max_ms: 8000,
    jitter: 0.0,
};
const TTR: u32 = 10;
const MAX_ATTEMPTS: u32 = 3;
const GROUP_MAX_RUNNING: usize = 2;

#[derive(Debug, Clone)]
enum Op {
    Publish {
        priority: i16,
        delay: u64,
        group: Option<u8>,
    },
    Claim {
        count: usize,
    },
    Complete {
        pick: usize,
    },
    Fail {
        pick: usize,
    },
    Wait {
        secs: u64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (-2i16..=2, prop_oneof![Just(0u64), 1u64..5], prop_oneof![Just(None), (0u8..3).prop_map(Some)])
            .prop_map(|(priority, delay, group)| Op::Publish { priority, delay, group }),
        3 => (1usize..4).prop_map(|count| Op::Claim { count }),
        2 => any::<usize>().prop_map(|pick| Op::Complete { pick }),
        2 => any::<usize>().prop_map(|pick| Op::Fail { pick }),
        2 => (1u64..15).prop_map(|secs| Op::Wait { secs }),
    ]
}

/// What the model knows of a copy.
#[derive(Debug, Clone, PartialEq)]
struct Copy {
    state: TaskState,
    priority: i16,
    run_at: Millis,
    attempt: u32,
    lease_until: Option<Millis>,
    /// Its group; the ungrouped take turns as "" where groups take turns.
    group: Option<String>,
}

/// The turns of a queue with groups (docs/fairness.md): each group with
/// ready copies has a pass; the lowest (then the name) goes next, and a
/// turn adds one. A group joins at the pass of the last served. Kept from
/// the first grouped ready copy until no copy is ready.
#[derive(Debug, Default)]
struct Turns {
    passes: BTreeMap<String, u64>,
    clock: u64,
}

/// The state machine of docs/state-machine.md, written plainly.
#[derive(Debug, Default)]
struct Model {
    copies: BTreeMap<TaskId, Copy>,
    turns: Option<Turns>,
}

impl Model {
    fn ready_of(&self) -> Vec<(std::cmp::Reverse<i16>, Millis, TaskId)> {
        let mut ready: Vec<_> = self
            .copies
            .iter()
            .filter(|(_, c)| c.state == TaskState::Ready)
            .map(|(id, c)| (std::cmp::Reverse(c.priority), c.run_at, *id))
            .collect();
        ready.sort();
        ready
    }

    /// After each step: turns begin with a grouped ready copy and end when
    /// none is ready; groups join and leave with their ready copies.
    fn settle(&mut self) {
        let ready: Vec<&Copy> = self
            .copies
            .values()
            .filter(|c| c.state == TaskState::Ready)
            .collect();
        if ready.is_empty() {
            self.turns = None;
            return;
        }
        if self.turns.is_none() && ready.iter().any(|c| c.group.is_some()) {
            self.turns = Some(Turns::default());
        }
        let Some(turns) = &mut self.turns else {
            return;
        };
        let groups: std::collections::BTreeSet<String> = ready
            .iter()
            .map(|c| c.group.clone().unwrap_or_default())
            .collect();
        turns.passes.retain(|g, _| groups.contains(g));
        for g in groups {
            turns.passes.entry(g).or_insert(turns.clock);
        }
    }

    fn claim(&mut self, now: Millis, count: usize) -> Vec<TaskId> {
        let ready = self.ready_of();
        let picked: Vec<TaskId> = match &mut self.turns {
            None => ready.into_iter().take(count).map(|(_, _, id)| id).collect(),
            Some(turns) => {
                let mut running: HashMap<String, usize> = HashMap::new();
                for c in self.copies.values() {
                    if let (TaskState::Running, Some(g)) = (c.state, &c.group) {
                        *running.entry(g.clone()).or_default() += 1;
                    }
                }
                let group_of = |id: &TaskId| self.copies[id].group.clone().unwrap_or_default();
                let mut picked = Vec::new();
                while picked.len() < count {
                    let next = turns
                        .passes
                        .iter()
                        .filter(|(g, _)| {
                            g.is_empty()
                                || running.get(*g).copied().unwrap_or(0) < GROUP_MAX_RUNNING
                        })
                        .filter_map(|(g, pass)| {
                            let first = ready
                                .iter()
                                .map(|k| k.2)
                                .find(|id| !picked.contains(id) && group_of(id) == *g)?;
                            Some((*pass, g.clone(), first))
                        })
                        .min();
                    let Some((pass, g, id)) = next else {
                        break;
                    };
                    picked.push(id);
                    if !g.is_empty() {
                        *running.entry(g.clone()).or_default() += 1;
                    }
                    turns.clock = turns.clock.max(pass);
                    turns.passes.insert(g, pass + 1);
                }
                picked
            }
        };
        for id in &picked {
            let c = self.copies.get_mut(id).unwrap();
            c.state = TaskState::Running;
            c.attempt += 1;
            c.lease_until = Some(now.plus_secs(TTR as u64));
        }
        picked
    }

    fn fail(&mut self, id: TaskId, now: Millis) {
        let c = self.copies.get_mut(&id).unwrap();
        c.lease_until = None;
        if c.attempt < MAX_ATTEMPTS {
            c.state = TaskState::Scheduled;
            c.run_at = now.plus_millis(RETRY.delay_ms(c.attempt));
        } else {
            c.state = TaskState::Failed;
        }
    }

    fn tick(&mut self, now: Millis) {
        for c in self.copies.values_mut() {
            match c.state {
                TaskState::Scheduled if c.run_at <= now => c.state = TaskState::Ready,
                TaskState::Running if c.lease_until.is_some_and(|l| l <= now) => {
                    c.lease_until = None;
                    c.state = if c.attempt >= MAX_ATTEMPTS {
                        TaskState::Failed
                    } else {
                        TaskState::Ready
                    };
                }
                _ => {}
            }
        }
    }

    fn running(&self) -> Vec<TaskId> {
        self.copies
            .iter()
            .filter(|(_, c)| c.state == TaskState::Running)
            .map(|(id, _)| *id)
            .collect()
    }
}

/// A copy in `q`, published at `now` to run `delay` seconds later.
fn new_copy(priority: i16, now: Millis, delay: u64, group: Option<u8>) -> Task {
    let mut t = copy("q", priority, 0);
    t.group = group.map(|g| format!("g{g}"));
    t.created_at = now;
    t.run_at = now.plus_secs(delay);
    t.state = if delay > 0 {
        TaskState::Scheduled
    } else {
        TaskState::Ready
    };
    t.max_attempts = MAX_ATTEMPTS;
    t.ttr = TTR;
    t
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    // History large enough that no finished copy is trimmed during a case.
    let store = EmbeddedStore::open_dir(dir.path(), 10_000).await.unwrap();
    let mut model = Model::default();
    let worker = WorkerId::new();
    let queue = QueueName::parse("q").unwrap();
    let lanes = [interq::model::Lane::Queue(queue.clone())];
    let limits = interq::model::QueueSettings {
        group_max_running: Some(GROUP_MAX_RUNNING as u32),
        ..Default::default()
    };
    store.put_queue_settings(&queue, limits).await.unwrap();
    let mut now = Millis(1_800_000_000_000);
    let mut completed = 0u64;
    for op in ops {
        match op {
            Op::Publish {
                priority,
                delay,
                group,
            } => {
                let t = new_copy(priority, now, delay, group);
                model.copies.insert(
                    t.task_id,
                    Copy {
                        state: t.state,
                        priority,
                        run_at: t.run_at,
                        attempt: 0,
                        lease_until: None,
                        group: t.group.clone(),
                    },
                );
                store
                    .enqueue(vec![t], interq::model::Counters::default())
                    .await
                    .unwrap();
            }
            Op::Claim { count } => {
                let expected = model.claim(now, count);
                let got: Vec<TaskId> = store
                    .claim(worker, &lanes, now, count)
                    .await
                    .unwrap()
                    .iter()
                    .map(|t| t.task_id)
                    .collect();
                prop_assert_eq!(got, expected, "claim order");
            }
            Op::Complete { pick } => {
                let running = model.running();
                if let Some(&id) = running.get(pick % running.len().max(1)) {
                    model.copies.get_mut(&id).unwrap().state = TaskState::Completed;
                    completed += 1;
                    let t = store
                        .finish(
                            id,
                            worker,
                            now,
                            Outcome::Complete {
                                re_enqueue: false,
                                output: None,
                            },
                        )
                        .await
                        .unwrap();
                    prop_assert_eq!(t.state, TaskState::Completed);
                }
            }
            Op::Fail { pick } => {
                let running = model.running();
                if let Some(&id) = running.get(pick % running.len().max(1)) {
                    model.fail(id, now);
                    let outcome = Outcome::Fail {
                        reason: None,
                        re_enqueue: false,
                        retry: RETRY,
                    };
                    let t = store.finish(id, worker, now, outcome).await.unwrap();
                    prop_assert_eq!(t.state, model.copies[&id].state);
                }
            }
            Op::Wait { secs } => {
                now = now.plus_secs(secs);
                model.tick(now);
                store.tick(now).await.unwrap();
            }
        }
        model.settle();
        // After every step, every copy is where the model says.
        for (id, c) in &model.copies {
            let t = store.task(*id).await.unwrap().expect("kept");
            prop_assert_eq!((t.state, t.attempt), (c.state, c.attempt), "copy {}", id);
            if c.state.is_waiting() {
                prop_assert_eq!(t.run_at, c.run_at);
            }
        }
        let counts = store.queue_counts().await.unwrap();
        let count = |s: TaskState| model.copies.values().filter(|c| c.state == s).count() as u64;
        let stored = counts.first().map(|(_, c)| *c).unwrap_or_default();
        prop_assert_eq!(
            (
                stored.ready,
                stored.scheduled,
                stored.running,
                stored.failed
            ),
            (
                count(TaskState::Ready),
                count(TaskState::Scheduled),
                count(TaskState::Running),
                count(TaskState::Failed)
            )
        );
        prop_assert_eq!(store.counters().await.unwrap().completed, completed);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_store_follows_the_state_machine(ops in prop::collection::vec(op(), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(run(ops))?;
    }
}
