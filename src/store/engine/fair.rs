//! Fairness groups: within a lane, claims take turns between the groups
//! that have ready copies, so that one group's backlog cannot delay
//! another's; and a queue may limit how many copies of one group run at once
//! and how many of its claims are made per second.
//!
//! Turns are stride scheduling: each group has a pass, the group with the
//! lowest pass is served next, and serving adds `STRIDE / weight`. A group
//! that comes back (its first ready copy) starts at the pass of the last
//! group served, so a quiet group's copy goes next rather than after every
//! backlog.
//!
//! A lane has a rotation from its first grouped ready copy until it has no
//! ready copy; while it has one, its ungrouped copies take turns as one more
//! group (named `""`: a group name is never empty). Lanes without groups are claimed as before, at no
//! cost. A group held back by a limit leaves the order until it may be
//! served again, so that claims never walk the groups that cannot have one.
//!
//! Everything here follows from the copies' states, on every node alike,
//! except the passes, which are the claiming node's own: limits hold across
//! a cluster, turns are each node's.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use super::state::{Names, ReadyKey, State};
use crate::model::{GroupCount, Lane, Millis, Priority, QueueGroups, QueueName, TaskId};

/// What a turn of weight 1 adds to a pass: divisible by every weight up to
/// 16 and by many above, so that weights share turns exactly.
const STRIDE: u64 = 720_720;

/// Why a group is out of the order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// As many of its copies run as its queue allows a group.
    Running,
    /// It had its queue's claims per second for a group, until then.
    Until(Millis),
}

/// A group's place in a lane's rotation.
#[derive(Debug)]
struct Turn {
    ready: BTreeSet<ReadyKey>,
    pass: u64,
    held: Option<Held>,
}

impl Turn {
    /// When a rate limit lets it be served again, if one holds it.
    fn until(&self) -> Option<Millis> {
        match self.held {
            Some(Held::Until(at)) => Some(at),
            _ => None,
        }
    }
}

type OrderKey = (Reverse<Priority>, u64, Arc<str>);

/// The groups of one lane, and whose turn it is.
#[derive(Debug, Default)]
pub(super) struct Rotation {
    groups: HashMap<Arc<str>, Turn>,
    /// The groups that may be served, the next first.
    order: BTreeSet<OrderKey>,
    /// Groups held by a rate limit, by when they may be served again.
    until: BTreeSet<(Millis, Arc<str>)>,
    /// The pass of the last group served.
    clock: u64,
    /// Whether the order goes by the groups' next copies' priorities first.
    strict: bool,
}

impl Rotation {
    fn key(&self, name: &Arc<str>, turn: &Turn) -> Option<OrderKey> {
        if turn.held.is_some() {
            return None;
        }
        let head = turn.ready.first()?;
        let priority = if self.strict {
            head.0
        } else {
            Reverse(Priority(0))
        };
        Some((priority, turn.pass, Arc::clone(name)))
    }

    /// Changes one group, keeping its place in the order in step.
    fn with_group<R>(&mut self, name: &Arc<str>, change: impl FnOnce(&mut Turn) -> R) -> R {
        let clock = self.clock;
        self.groups.entry(Arc::clone(name)).or_insert(Turn {
            ready: BTreeSet::new(),
            pass: clock,
            held: None,
        });
        let before = self.key(name, &self.groups[name]);
        let turn = self.groups.get_mut(name).expect("inserted above");
        let was_until = turn.until();
        let out = change(turn);
        let turn = &self.groups[name];
        let after = self.key(name, turn);
        let now_until = turn.until();
        let empty = turn.ready.is_empty();
        if before != after {
            if let Some(k) = before {
                self.order.remove(&k);
            }
            if let Some(k) = after {
                self.order.insert(k);
            }
        }
        if was_until != now_until || empty {
            if let Some(at) = was_until {
                self.until.remove(&(at, Arc::clone(name)));
            }
            if let (Some(at), false) = (now_until, empty) {
                self.until.insert((at, Arc::clone(name)));
            }
        }
        if empty {
            self.groups.remove(name);
        }
        out
    }

    pub fn insert(&mut self, group: &Arc<str>, key: ReadyKey) {
        self.with_group(group, |t| t.ready.insert(key));
    }

    pub fn remove(&mut self, group: &Arc<str>, key: &ReadyKey) {
        if self.groups.contains_key(group) {
            self.with_group(group, |t| t.ready.remove(key));
        }
    }

    fn hold(&mut self, group: &Arc<str>, why: Held) {
        self.with_group(group, |t| t.held = Some(why));
    }

    /// Puts a group back in the order, if it was held.
    pub fn release(&mut self, group: &Arc<str>) {
        if self.groups.get(group).is_some_and(|t| t.held.is_some()) {
            self.with_group(group, |t| t.held = None);
        }
    }

    /// Puts back every group held by a limit (the limits changed).
    fn release_all(&mut self) {
        let held: Vec<Arc<str>> = self
            .groups
            .iter()
            .filter(|(_, t)| t.held.is_some())
            .map(|(g, _)| Arc::clone(g))
            .collect();
        for g in held {
            self.release(&g);
        }
    }

    /// Puts back the groups held by a rate limit until `now` or before.
    fn release_due(&mut self, now: Millis) {
        while let Some((at, g)) = self.until.first().cloned() {
            if at > now {
                break;
            }
            self.release(&g);
        }
    }

    /// A group was served: its pass moves on by its weight's stride.
    fn served(&mut self, group: &Arc<str>, weight: u32) {
        let pass = self.groups.get(group).map_or(self.clock, |t| t.pass);
        self.clock = self.clock.max(pass);
        let step = STRIDE / u64::from(weight.clamp(1, 1000));
        self.with_group(group, |t| t.pass = pass + step);
    }

    /// The first group in the order not in `skip`.
    fn next(&self, skip: &HashSet<Arc<str>>) -> Option<Arc<str>> {
        self.order
            .iter()
            .map(|(_, _, g)| g)
            .find(|g| !skip.contains(*g))
            .cloned()
    }

    /// A group's first ready copy after `after`, in claim order.
    fn ready_after(&self, group: &Arc<str>, after: Option<ReadyKey>) -> Option<ReadyKey> {
        let turn = self.groups.get(group)?;
        match after {
            None => turn.ready.first().copied(),
            Some(k) => turn
                .ready
                .range((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded))
                .next()
                .copied(),
        }
    }

    /// Empties the rotation, keeping what its maps had allocated.
    fn clear(&mut self) {
        self.groups.clear();
        self.order.clear();
        self.until.clear();
        self.clock = 0;
    }

    fn set_strict(&mut self, strict: bool) {
        if self.strict == strict {
            return;
        }
        self.strict = strict;
        self.order.clear();
        let keys: Vec<OrderKey> = self
            .groups
            .iter()
            .filter_map(|(g, t)| self.key(g, t))
            .collect();
        self.order.extend(keys);
    }

    /// The groups with ready copies (the ungrouped left out).
    pub fn groups(&self) -> impl Iterator<Item = (&Arc<str>, usize, Option<Held>)> {
        self.groups
            .iter()
            .filter(|(g, _)| !g.is_empty())
            .map(|(g, t)| (g, t.ready.len(), t.held))
    }
}

/// The claims of one group within a rate limit's window, by when they were
/// made: every node sees the same claims, so the limit holds across nodes.
#[derive(Debug, Default)]
pub(super) struct Claims(BTreeSet<(Millis, TaskId)>);

/// A rate as a window and how many claims it allows in it: as many as a
/// second's worth (at least one, the burst a queue's `rateLimit` also
/// allows), in the time they take at that rate, so that a rate with a
/// fraction (2.5 a second: 2 in 800 ms) holds within a rounded millisecond.
fn window(rate: f64) -> (u64, usize) {
    let allowed = rate.floor().max(1.0);
    (
        ((1000.0 * allowed / rate).round() as u64).max(1),
        allowed as usize,
    )
}

impl Claims {
    fn trim(&mut self, before: Millis) {
        while self.0.first().is_some_and(|&(at, _)| at < before) {
            self.0.pop_first();
        }
    }
}

/// Per group state of the lanes and queues that have groups.
#[derive(Debug, Default)]
pub(super) struct Fairness {
    pub rotations: HashMap<Lane, Rotation>,
    /// The last rotation emptied, kept for the next lane to have groups: a
    /// lane whose workers keep up empties and fills again all the time,
    /// and growing a rotation's maps anew each time cost a tenth of the
    /// claim path's time with many groups.
    spare: Option<Rotation>,
    /// Copies of each group running, by queue and group.
    pub running: HashMap<(QueueName, Arc<str>), u32>,
    /// The lanes where a group is held by its running limit.
    held_running: HashMap<(QueueName, Arc<str>), Vec<Lane>>,
    /// Recent claims of groups whose queue limits their rate.
    claims: HashMap<(QueueName, Arc<str>), Claims>,
    /// Group names, one allocation each.
    names: Names,
    /// The name the ungrouped take turns under (`""`: no group is named
    /// so), allocated once.
    ungrouped: Arc<str>,
}

impl Fairness {
    pub fn intern(&mut self, group: &Arc<str>) -> Arc<str> {
        self.names.share_arc(group)
    }

    /// Forgets group names nothing holds, once they have doubled, and the
    /// claim windows emptied meanwhile.
    pub fn prune(&mut self) {
        if self.names.prune() {
            self.claims.retain(|_, c| !c.0.is_empty());
        }
    }
}

impl State {
    /// A ready copy entered `lane`.
    pub(super) fn rotate_in(&mut self, lane: &Lane, group: Option<&Arc<str>>, key: ReadyKey) {
        if group.is_none() && !self.fair.rotations.contains_key(lane) {
            return;
        }
        if !self.fair.rotations.contains_key(lane) {
            // The lane's first group: the copies already waiting take turns
            // as the ungrouped.
            let mut rotation = self.fair.spare.take().unwrap_or_default();
            rotation.strict = self.strict_in(lane);
            let ungrouped = Arc::clone(&self.fair.ungrouped);
            if let Some(ready) = self.ready.get(lane) {
                for k in ready.iter().filter(|k| **k != key) {
                    rotation.insert(&ungrouped, *k);
                }
            }
            self.fair.rotations.insert(lane.clone(), rotation);
        }
        let rotation = self.fair.rotations.get_mut(lane).expect("made above");
        match group {
            Some(g) => rotation.insert(g, key),
            None => rotation.insert(&self.fair.ungrouped, key),
        }
    }

    /// A ready copy left `lane`; `emptied` when it was the lane's last.
    pub(super) fn rotate_out(
        &mut self,
        lane: &Lane,
        group: Option<&Arc<str>>,
        key: &ReadyKey,
        emptied: bool,
    ) {
        if emptied {
            if let Some(mut rotation) = self.fair.rotations.remove(lane) {
                rotation.clear();
                self.fair.spare = Some(rotation);
            }
            return;
        }
        if let Some(rotation) = self.fair.rotations.get_mut(lane) {
            match group {
                Some(g) => rotation.remove(g, key),
                None => rotation.remove(&self.fair.ungrouped, key),
            }
        }
    }

    /// A copy of `group` in `queue` started or stopped running.
    pub(super) fn group_running(&mut self, queue: &QueueName, group: &Arc<str>, started: bool) {
        let key = (queue.clone(), Arc::clone(group));
        if started {
            *self.fair.running.entry(key).or_default() += 1;
            return;
        }
        if let Some(n) = self.fair.running.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.fair.running.remove(&key);
            }
        }
        if let Some(lanes) = self.fair.held_running.remove(&key) {
            for lane in lanes {
                if let Some(r) = self.fair.rotations.get_mut(&lane) {
                    r.release(group);
                }
            }
        }
    }

    /// A copy of `group` in `queue` was claimed at `at` (its `started_at`;
    /// seen again each time the copy's record is, which the set absorbs).
    /// Kept only where the queue limits a group's rate.
    pub(super) fn group_claimed(
        &mut self,
        queue: &QueueName,
        group: &Arc<str>,
        at: Millis,
        id: TaskId,
    ) {
        let Some(rate) = self
            .queue_settings
            .get(queue)
            .and_then(|s| s.rate_limit_of(group))
        else {
            return;
        };
        let claims = self
            .fair
            .claims
            .entry((queue.clone(), Arc::clone(group)))
            .or_default();
        claims.0.insert((at, id));
        let newest = claims.0.last().map_or(at, |&(t, _)| t);
        claims.trim(Millis(newest.0.saturating_sub(window(rate).0)));
    }

    /// The claims of groups whose rate is limited, from the copies kept
    /// (of `queue`, or of all): after loading, and when limits change.
    pub(super) fn recount_claims(&mut self, queue: Option<&QueueName>) {
        match queue {
            Some(q) => self.fair.claims.retain(|(cq, _), _| cq != q),
            None => self.fair.claims.clear(),
        }
        let limited: HashSet<&QueueName> = self
            .queue_settings
            .iter()
            .filter(|(q, _)| queue.is_none_or(|want| *q == want))
            .filter(|(_, s)| {
                s.group_rate_limit.is_some() || s.groups.values().any(|g| g.rate_limit.is_some())
            })
            .map(|(q, _)| q)
            .collect();
        // Most stores limit no group's rate: nothing to walk at start-up.
        if limited.is_empty() {
            return;
        }
        let claims: Vec<(QueueName, Arc<str>, Millis, TaskId)> = self
            .tasks
            .values()
            .filter(|m| limited.contains(&m.queue))
            .filter_map(|m| {
                let g = m.group.as_ref()?;
                let at = m.extra.as_ref()?.started_at?;
                Some((m.queue.clone(), Arc::clone(g), at, m.task_id))
            })
            .collect();
        for (q, g, at, id) in claims {
            self.group_claimed(&q, &g, at, id);
        }
    }

    fn strict_in(&self, lane: &Lane) -> bool {
        match lane {
            Lane::Queue(q) => self
                .queue_settings
                .get(q)
                .is_some_and(|s| s.strict_priority),
            Lane::Worker(_) => false,
        }
    }

    /// A queue's settings changed: its groups are weighed again.
    pub(super) fn groups_reset(&mut self, queue: &QueueName) {
        let strict = self.strict_in(&Lane::Queue(queue.clone()));
        self.fair.held_running.retain(|(q, _), _| q != queue);
        self.recount_claims(Some(queue));
        for (lane, rotation) in self.fair.rotations.iter_mut() {
            if lane == &Lane::Queue(queue.clone()) {
                rotation.set_strict(strict);
            }
            rotation.release_all();
        }
    }

    /// Whether a copy of `group` in `queue` may be claimed now, given the
    /// copies of groups already `taken` in this claim; if not, why.
    fn group_allows(
        &mut self,
        queue: &QueueName,
        group: &Arc<str>,
        now: Millis,
        taken: &HashMap<(QueueName, Arc<str>), u32>,
    ) -> Result<(), Held> {
        let Some(settings) = self.queue_settings.get(queue) else {
            return Ok(());
        };
        let (max_running, rate) = (
            settings.max_running_of(group),
            settings.rate_limit_of(group),
        );
        let key = (queue.clone(), Arc::clone(group));
        let taken = taken.get(&key).copied().unwrap_or(0);
        let running = self.fair.running.get(&key).copied().unwrap_or(0) + taken;
        if max_running.is_some_and(|max| running >= max) {
            return Err(Held::Running);
        }
        if let Some(rate) = rate {
            let (span, allowed) = window(rate);
            let claims = self.fair.claims.entry(key).or_default();
            claims.trim(Millis((now.0 + 1).saturating_sub(span)));
            if claims.0.len() + taken as usize >= allowed {
                let oldest = claims.0.first().map_or(now, |&(at, _)| at);
                return Err(Held::Until(Millis(oldest.0 + span).max(now.plus_millis(1))));
            }
        }
        Ok(())
    }

    /// Up to `count` ready copies of a lane with groups, taking turns, that
    /// `take` accepts (`Some(true)`; `Some(false)` stops the lane), added to
    /// `picked`.
    pub(super) fn pick_rotating(
        &mut self,
        lane: &Lane,
        now: Millis,
        count: usize,
        picked: &mut Vec<TaskId>,
        take: &mut dyn FnMut(&mut State, TaskId) -> Option<bool>,
    ) {
        let Some(rotation) = self.fair.rotations.get_mut(lane) else {
            return;
        };
        rotation.release_due(now);
        // Groups with no copy this claim can take (locked, expiring).
        let mut stuck: HashSet<Arc<str>> = HashSet::new();
        let mut cursors: HashMap<Arc<str>, ReadyKey> = HashMap::new();
        let mut taken: HashMap<(QueueName, Arc<str>), u32> = HashMap::new();
        while picked.len() < count {
            let Some(group) = self.fair.rotations.get(lane).and_then(|r| r.next(&stuck)) else {
                return;
            };
            let mut found = None;
            while let Some(key) =
                self.fair.rotations[lane].ready_after(&group, cursors.get(&group).copied())
            {
                let id = key.2;
                let queue = &self.tasks[&id].queue;
                // Only a queue with settings limits its groups.
                if !group.is_empty() && self.queue_settings.contains_key(queue) {
                    let queue = queue.clone();
                    if let Err(why) = self.group_allows(&queue, &group, now, &taken) {
                        let rotation = self.fair.rotations.get_mut(lane).expect("a rotation");
                        rotation.hold(&group, why);
                        if why == Held::Running {
                            let lanes = self
                                .fair
                                .held_running
                                .entry((queue, Arc::clone(&group)))
                                .or_default();
                            if !lanes.contains(lane) {
                                lanes.push(lane.clone());
                            }
                        }
                        break;
                    }
                }
                cursors.insert(Arc::clone(&group), key);
                match take(self, id) {
                    Some(true) => {
                        found = Some(id);
                        break;
                    }
                    Some(false) => return,
                    None => {}
                }
            }
            let Some(id) = found else {
                // Held (out of the order now), or nothing to take.
                stuck.insert(group);
                continue;
            };
            let queue = self.tasks[&id].queue.clone();
            let weight = self
                .queue_settings
                .get(&queue)
                .map_or(1, |s| s.weight_of(&group));
            if !group.is_empty() {
                *taken.entry((queue, Arc::clone(&group))).or_default() += 1;
            }
            picked.push(id);
            self.fair
                .rotations
                .get_mut(lane)
                .expect("a rotation")
                .served(&group, weight);
        }
    }

    /// Why a ready copy is not handed out now, when a rule holds it: its
    /// queue paused or at a limit, a running twin, or its group at a limit;
    /// for a blocked copy, what it still waits for.
    /// `None` for a copy that is not ready, or that the next claim of a
    /// worker on its queue may take.
    pub(super) fn held_by(&self, id: TaskId, now: Millis) -> Option<String> {
        let t = self.tasks.get(&id)?;
        if t.state == crate::model::TaskState::Blocked {
            let n = self.unmet.get(&id).copied().unwrap_or(0);
            return Some(format!(
                "it waits for {n} of its {} dependencies to complete",
                t.depends_on().len()
            ));
        }
        if t.state != crate::model::TaskState::Ready {
            return None;
        }
        let settings = self.queue_settings.get(&t.queue);
        if let Some(s) = settings {
            if s.paused {
                return Some("its queue is paused".into());
            }
            let running = self.counts.get(&t.queue).map_or(0, |c| c.running);
            if let Some(max) = s.max_running.filter(|&m| running >= u64::from(m)) {
                return Some(format!(
                    "its queue has {running} running, its maxRunning of {max}"
                ));
            }
            if let (Some(rate), Some((tokens, last))) = (s.rate_limit, self.buckets.get(&t.queue)) {
                if super::state::refilled(*tokens, *last, rate, now) < 1.0 {
                    return Some(format!(
                        "its queue had its rateLimit of {rate} claims a second"
                    ));
                }
            }
        }
        if self.run_locked(t) {
            return Some("an identical task runs in its queue (singularlyRun)".into());
        }
        let (Some(g), Some(s)) = (&t.group, settings) else {
            return None;
        };
        let key = (t.queue.clone(), Arc::clone(g));
        let running = self.fair.running.get(&key).copied().unwrap_or(0);
        if let Some(max) = s.max_running_of(g).filter(|&m| running >= m) {
            return Some(format!(
                "its group {g} has {running} running, the most its queue allows the group ({max})"
            ));
        }
        if let Some(rate) = s.rate_limit_of(g) {
            let (span, allowed) = window(rate);
            let since = Millis((now.0 + 1).saturating_sub(span));
            let made = self.fair.claims.get(&key).map_or(0, |c| {
                c.0.iter().rev().take_while(|(at, _)| *at >= since).count()
            });
            if made >= allowed {
                return Some(format!("its group {g} had its {rate} claims a second"));
            }
        }
        None
    }

    /// Every group of `queue` with ready or running copies, unordered.
    fn group_counts(&self, queue: &QueueName) -> HashMap<Arc<str>, GroupCount> {
        let mut views: HashMap<Arc<str>, GroupCount> = HashMap::new();
        let blank = |g: &Arc<str>| GroupCount {
            group: g.to_string(),
            ready: 0,
            running: 0,
            held: None,
            held_until: None,
        };
        if let Some(r) = self.fair.rotations.get(&Lane::Queue(queue.clone())) {
            for (g, ready, held) in r.groups() {
                let view = views.entry(Arc::clone(g)).or_insert_with(|| blank(g));
                view.ready = ready as u64;
                if let Some(Held::Until(at)) = held {
                    view.held = Some("rateLimit".into());
                    view.held_until = Some(at);
                }
            }
        }
        let settings = self.queue_settings.get(queue);
        for ((q, g), n) in &self.fair.running {
            if q != queue {
                continue;
            }
            let view = views.entry(Arc::clone(g)).or_insert_with(|| blank(g));
            view.running = u64::from(*n);
            let max = settings.and_then(|s| s.max_running_of(g));
            if max.is_some_and(|m| *n >= m) && view.ready > 0 {
                view.held = Some("maxRunning".into());
                view.held_until = None;
            }
        }
        views
    }

    /// Per queue with groups: how many, and how many are held by
    /// `maxRunning` and by `rateLimit`.
    pub(super) fn group_summary(&self) -> Vec<(QueueName, [u64; 3])> {
        let mut queues: Vec<QueueName> = self
            .fair
            .rotations
            .keys()
            .filter_map(|l| match l {
                Lane::Queue(q) => Some(q.clone()),
                Lane::Worker(_) => None,
            })
            .chain(self.fair.running.keys().map(|(q, _)| q.clone()))
            .collect();
        queues.sort();
        queues.dedup();
        queues
            .into_iter()
            .map(|q| {
                let counts = self.group_counts(&q);
                let held = |why: &str| {
                    counts
                        .values()
                        .filter(|g| g.held.as_deref() == Some(why))
                        .count() as u64
                };
                let summary = [counts.len() as u64, held("maxRunning"), held("rateLimit")];
                (q, summary)
            })
            .collect()
    }

    /// The groups of `queue` with ready copies or running ones: the `top`
    /// with the most ready copies, and how many there are.
    pub(super) fn groups_of(&self, queue: &QueueName, top: usize) -> QueueGroups {
        let views = self.group_counts(queue);
        let total = views.len();
        let mut groups: Vec<GroupCount> = views.into_values().collect();
        groups.sort_by(|a, b| {
            (Reverse(a.ready), Reverse(a.running), &a.group).cmp(&(
                Reverse(b.ready),
                Reverse(b.running),
                &b.group,
            ))
        });
        groups.truncate(top);
        QueueGroups {
            queue: queue.clone(),
            total,
            groups,
        }
    }
}
