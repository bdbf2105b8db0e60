//! Routing that takes one queue's change without compiling every queue
//! again.
//!
//! A [`Router`] is a compiled *base* ([`Matcher`] over every queue as it was)
//! and a small *delta*: the queues changed since, compiled on their own,
//! with the base's old entries for them hidden. A change compiles only the
//! delta, so its cost follows the number of changes since the base, not the
//! number of queues. Once the delta outgrows [`Router::needs_compaction`], a
//! service compiles a new base off its hot path ([`Router::compacted`]) and
//! carries over what changed meanwhile ([`Router::rebased`]).
//!
//! Positions (`route_indices`) are the base's queues, then the delta's; they
//! hold for one `Router` value only.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::interests::Interests;
use crate::matcher::{BuildError, Explanation, Matcher};

/// Changes the delta may hold before a new base is due: its compile time is
/// what each change waits for.
const MAX_DELTA: usize = 256;
/// Past this many changes since the base, a change compiles every queue at
/// once: a bulk load would otherwise compile a growing delta again and
/// again while the compaction catches up.
const COMPILE_WHOLE_PAST: usize = 4 * MAX_DELTA;

/// Every queue's interests, compiled for routing; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Router {
    base: Arc<Matcher>,
    /// Positions of `base` whose queue changed or went since it was built.
    shadowed: Arc<[u64]>,
    /// Queues changed since `base` was built, to their interests now
    /// (`None`: removed).
    changed: Arc<BTreeMap<Arc<str>, Option<Arc<Interests>>>>,
    /// `changed`'s queues that have interests, compiled.
    delta: Arc<Matcher>,
}

impl Router {
    /// Compiles every queue's interests into a new base.
    pub fn build<I, S, T>(queues: I) -> Result<Self, BuildError>
    where
        I: IntoIterator<Item = (S, T)>,
        S: Into<Arc<str>>,
        T: Into<Arc<Interests>>,
    {
        Ok(Self::over(Matcher::build(queues)?))
    }

    fn over(base: Matcher) -> Self {
        Self {
            shadowed: vec![0; base.len().div_ceil(64)].into(),
            base: Arc::new(base),
            changed: Arc::default(),
            delta: Arc::default(),
        }
    }

    /// This router with some queues' interests replaced (`Some`) or removed
    /// (`None`), later changes to one queue winning; compiles only the
    /// queues changed since the base.
    pub fn with_changes<I, S>(&self, changes: I) -> Result<Self, BuildError>
    where
        I: IntoIterator<Item = (S, Option<Interests>)>,
        S: Into<Arc<str>>,
    {
        let mut changed = (*self.changed).clone();
        for (queue, interests) in changes {
            changed.insert(queue.into(), interests.map(Arc::new));
        }
        self.with_changed(changed)
    }

    fn with_changed(
        &self,
        changed: BTreeMap<Arc<str>, Option<Arc<Interests>>>,
    ) -> Result<Self, BuildError> {
        if changed.len() > COMPILE_WHOLE_PAST {
            let kept = (0..self.base.len())
                .map(|p| self.base.entry(p))
                .filter(|(q, _)| !changed.contains_key(*q))
                .map(|(q, i)| (Arc::clone(q), Arc::clone(i)));
            let now = changed
                .iter()
                .filter_map(|(q, i)| i.as_ref().map(|i| (Arc::clone(q), Arc::clone(i))));
            return Ok(Self::over(Matcher::build(kept.chain(now))?));
        }
        let mut shadowed = vec![0u64; self.base.len().div_ceil(64)];
        for queue in changed.keys() {
            if let Some(p) = self.base.position(queue) {
                shadowed[p / 64] |= 1 << (p % 64);
            }
        }
        let delta = Matcher::build(
            changed
                .iter()
                .filter_map(|(q, i)| i.as_ref().map(|i| (Arc::clone(q), Arc::clone(i)))),
        )?;
        Ok(Self {
            base: Arc::clone(&self.base),
            shadowed: shadowed.into(),
            changed: Arc::new(changed),
            delta: Arc::new(delta),
        })
    }

    /// Whether the delta is large enough that changes would be cheaper
    /// against a new base.
    pub fn needs_compaction(&self) -> bool {
        self.changed.len() > MAX_DELTA
    }

    /// Queues changed since the base was built.
    pub fn pending_changes(&self) -> usize {
        self.changed.len()
    }

    /// The same queues and interests compiled into one new base: what
    /// every queue costs to compile, so run it off the hot path.
    pub fn compacted(&self) -> Result<Self, BuildError> {
        let queues: Vec<(Arc<str>, Arc<Interests>)> = self
            .entries()
            .map(|(q, i)| (Arc::clone(q), Arc::clone(i)))
            .collect();
        Ok(Self::over(Matcher::build(queues)?))
    }

    /// `compacted`, which was made from `from` (an earlier state of this
    /// router), with every change made since `from` applied again: `None`
    /// when this router no longer stands on `from`'s base (it was rebuilt
    /// whole meanwhile), so the compaction is stale.
    pub fn rebased(&self, from: &Router, compacted: &Router) -> Result<Option<Self>, BuildError> {
        if !Arc::ptr_eq(&self.base, &from.base) {
            return Ok(None);
        }
        let same = |a: &Option<Arc<Interests>>, b: &Option<Arc<Interests>>| match (a, b) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        let mut since = BTreeMap::new();
        for (queue, now) in self.changed.iter() {
            if !from.changed.get(queue).is_some_and(|then| same(then, now)) {
                since.insert(Arc::clone(queue), now.clone());
            }
        }
        compacted.with_changed(since).map(Some)
    }

    fn is_shadowed(&self, position: usize) -> bool {
        self.shadowed[position / 64] & (1 << (position % 64)) != 0
    }

    /// The names of the queues that want this task, in name order.
    pub fn route(&self, data: &Map<String, Value>) -> Vec<&str> {
        self.route_indices(data)
            .into_iter()
            .map(|i| &**self.name(i))
            .collect()
    }

    /// `route`, as positions: see [`Router::name`].
    pub fn route_indices(&self, data: &Map<String, Value>) -> Vec<usize> {
        let wanted = self.wanted_indices(data);
        if !wanted.is_empty() {
            return wanted;
        }
        self.merge(self.base.unrouted_indices(), self.delta.unrouted_indices())
    }

    /// The queues whose interests take the task, leaving out the
    /// `unrouted` queues that take it when none does.
    pub fn wanted_indices(&self, data: &Map<String, Value>) -> Vec<usize> {
        let base = self.base.wanted_indices(data);
        if self.changed.is_empty() {
            return base;
        }
        self.merge(base, self.delta.wanted_indices(data))
    }

    /// The base's live positions and the delta's, as one list in name
    /// order.
    fn merge(
        &self,
        base: impl IntoIterator<Item = usize>,
        delta: impl IntoIterator<Item = usize>,
    ) -> Vec<usize> {
        let offset = self.base.len();
        let mut base = base
            .into_iter()
            .filter(|&p| !self.is_shadowed(p))
            .peekable();
        let mut delta = delta.into_iter().map(|p| p + offset).peekable();
        let mut out = Vec::new();
        loop {
            let next = match (base.peek(), delta.peek()) {
                (Some(&b), Some(&d)) if self.name(b) < self.name(d) => base.next(),
                (Some(_), Some(_)) | (None, Some(_)) => delta.next(),
                (Some(_), None) => base.next(),
                (None, None) => break,
            };
            out.extend(next);
        }
        out
    }

    /// The queue at a position of `route_indices`.
    pub fn name(&self, position: usize) -> &Arc<str> {
        self.entry(position).0
    }

    fn entry(&self, position: usize) -> (&Arc<str>, &Arc<Interests>) {
        match position.checked_sub(self.base.len()) {
            Some(p) => self.delta.entry(p),
            None => self.base.entry(position),
        }
    }

    /// Whether the queue at a position takes only what no other queue
    /// takes.
    pub fn is_unrouted(&self, position: usize) -> bool {
        matches!(**self.entry(position).1, Interests::Unrouted)
    }

    /// About how much work routing `data` takes (see [`Matcher::scan_cost`]).
    pub fn scan_cost(&self, data: &Map<String, Value>) -> usize {
        self.base
            .scan_cost(data)
            .saturating_add(self.delta.scan_cost(data))
    }

    /// For every queue that wants the task: which fields and patterns
    /// matched, in name order.
    pub fn explain(&self, data: &Map<String, Value>) -> Vec<Explanation<'_>> {
        let base = self.base.len();
        self.route_indices(data)
            .into_iter()
            .filter_map(|p| {
                let (name, interests) = self.entry(p);
                if matches!(**interests, Interests::Unrouted) {
                    // Routed here only because nobody else wants it.
                    return Some(Explanation {
                        queue: name,
                        fields: Vec::new(),
                        unrouted: true,
                    });
                }
                let matcher = if p < base { &self.base } else { &self.delta };
                matcher.explain_queue(name, data)
            })
            .collect()
    }

    /// Why one queue would take the task, if it would.
    pub fn explain_queue(&self, queue: &str, data: &Map<String, Value>) -> Option<Explanation<'_>> {
        self.explain(data).into_iter().find(|e| e.queue == queue)
    }

    /// One queue's interests.
    pub fn get(&self, queue: &str) -> Option<&Interests> {
        match self.changed.get(queue) {
            Some(now) => now.as_deref(),
            None => self.base.position(queue).map(|p| &**self.base.entry(p).1),
        }
    }

    fn entries(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<Interests>)> {
        let base = (0..self.base.len())
            .filter(|&p| !self.is_shadowed(p))
            .map(|p| self.base.entry(p));
        let delta = (0..self.delta.len()).map(|p| self.delta.entry(p));
        MergeByName {
            a: base.peekable(),
            b: delta.peekable(),
        }
    }

    /// Every queue with interests, in name order.
    pub fn queues(&self) -> impl Iterator<Item = (&str, &Interests)> {
        self.entries().map(|(q, i)| (&**q, &**i))
    }

    /// How many queues have interests.
    pub fn len(&self) -> usize {
        let shadowed: usize = self.shadowed.iter().map(|w| w.count_ones() as usize).sum();
        self.base.len() - shadowed + self.delta.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Regex groups a value may be scanned by, over both parts.
    pub fn regex_groups(&self) -> usize {
        self.base.regex_groups() + self.delta.regex_groups()
    }
}

/// Two name-ordered lists of distinct names as one.
struct MergeByName<A: Iterator, B: Iterator> {
    a: std::iter::Peekable<A>,
    b: std::iter::Peekable<B>,
}

impl<'r, A, B> Iterator for MergeByName<A, B>
where
    A: Iterator<Item = (&'r Arc<str>, &'r Arc<Interests>)>,
    B: Iterator<Item = (&'r Arc<str>, &'r Arc<Interests>)>,
{
    type Item = (&'r Arc<str>, &'r Arc<Interests>);

    fn next(&mut self) -> Option<Self::Item> {
        match (self.a.peek(), self.b.peek()) {
            (Some(a), Some(b)) if a.0 < b.0 => self.a.next(),
            (Some(_), Some(_)) | (None, Some(_)) => self.b.next(),
            (Some(_), None) => self.a.next(),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Limits;
    use serde_json::json;

    fn parse(name: &str, v: Value) -> Interests {
        Interests::parse(name, &v, &Limits::default()).unwrap()
    }

    fn task(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_change_hides_the_base_entry_and_routes_by_the_new_one() {
        let r = Router::build([
            ("a", parse("a", json!({"f": "^x$"}))),
            ("c", parse("c", json!({"f": "^x$"}))),
        ])
        .unwrap();
        let r = r
            .with_changes([
                ("a", Some(parse("a", json!({"f": "^y$"})))),
                ("b", Some(parse("b", json!({"f": "^x$"})))),
            ])
            .unwrap();
        assert_eq!(r.route(&task(json!({"f": "x"}))), ["b", "c"]);
        assert_eq!(r.route(&task(json!({"f": "y"}))), ["a"]);
        assert_eq!(r.len(), 3);
        let r = r.with_changes([("c", None::<Interests>)]).unwrap();
        assert_eq!(r.route(&task(json!({"f": "x"}))), ["b"]);
        assert!(r.get("c").is_none() && r.get("a").is_some());
        let names: Vec<&str> = r.queues().map(|(q, _)| q).collect();
        assert_eq!(names, ["a", "b"]);
        // Compacted, the same queues route the same way.
        let c = r.compacted().unwrap();
        assert_eq!(c.pending_changes(), 0);
        assert_eq!(c.route(&task(json!({"f": "x"}))), ["b"]);
        assert_eq!(c.route(&task(json!({"f": "y"}))), ["a"]);
    }

    #[test]
    fn unrouted_queues_of_both_parts_take_what_nobody_wants() {
        let r = Router::build([
            ("lost", parse("lost", json!("unrouted"))),
            ("mail", parse("mail", json!({"email": "evan"}))),
        ])
        .unwrap()
        .with_changes([("also-lost", Some(parse("also-lost", json!("unrouted"))))])
        .unwrap();
        let nobody = task(json!({"email": "ada"}));
        assert_eq!(r.route(&nobody), ["also-lost", "lost"]);
        assert!(r.wanted_indices(&nobody).is_empty());
        let why = r.explain(&nobody);
        assert!(why.iter().all(|e| e.unrouted) && why.len() == 2);
        assert_eq!(r.route(&task(json!({"email": "evan"}))), ["mail"]);
    }

    #[test]
    fn a_rebase_carries_over_what_changed_during_the_compaction() {
        let start = Router::build([("a", parse("a", json!({"f": "a"})))])
            .unwrap()
            .with_changes([("b", Some(parse("b", json!({"f": "b"}))))])
            .unwrap();
        let compacted = start.compacted().unwrap();
        // Meanwhile: `c` arrives and `b` changes.
        let now = start
            .with_changes([
                ("c", Some(parse("c", json!({"f": "c"})))),
                ("b", Some(parse("b", json!({"f": "bb"})))),
            ])
            .unwrap();
        let rebased = now.rebased(&start, &compacted).unwrap().unwrap();
        assert_eq!(rebased.pending_changes(), 2);
        assert_eq!(rebased.route(&task(json!({"f": "c"}))), ["c"]);
        assert!(rebased.route(&task(json!({"f": "b"}))).is_empty());
        assert_eq!(rebased.route(&task(json!({"f": "bb"}))), ["b"]);
        // A bulk change compiles everything at once.
        let bulk: Vec<(String, Option<Interests>)> = (0..COMPILE_WHOLE_PAST + 1)
            .map(|n| {
                (
                    format!("n{n:05}"),
                    Some(parse("n", json!({"f": format!("^{n}$")}))),
                )
            })
            .collect();
        let loaded = rebased.with_changes(bulk).unwrap();
        assert_eq!(loaded.pending_changes(), 0);
        assert_eq!(loaded.len(), 3 + COMPILE_WHOLE_PAST + 1);
        assert_eq!(loaded.route(&task(json!({"f": "7"}))), ["n00007"]);
        assert_eq!(loaded.route(&task(json!({"f": "bb"}))), ["b"]);
        // A router rebuilt whole meanwhile leaves the compaction stale.
        let rebuilt = Router::build([("z", parse("z", json!("*")))]).unwrap();
        assert!(rebuilt.rebased(&start, &compacted).unwrap().is_none());
    }
}
