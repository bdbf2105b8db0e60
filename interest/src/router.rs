//! Routing that takes one queue's change without compiling every queue
//! again.
//!
//! A [`Router`] is levels of compiled queues, newest last: a *base*
//! ([`Matcher`] over every queue as it was), a *middle* of the queues
//! changed since, and a *top* of the few changed since the middle was
//! compiled. A queue's entry in a newer level hides its entries in older
//! ones. A change compiles the top again (a few queues); when the top is
//! full it is folded into the middle (hundreds), so a change costs about the
//! same at ten queues or a hundred thousand. Once the middle outgrows
//! [`Router::needs_compaction`], a service compiles a new base off its hot
//! path ([`Router::compacted`]) and carries over what changed meanwhile
//! ([`Router::rebased`]).
//!
//! Positions (`route_indices`) run through the levels in order; they hold
//! for one `Router` value only.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::interests::Interests;
use crate::matcher::{BuildError, Explanation, Matcher};

/// How many changes each level holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// Changes the top holds before it is folded into the middle.
    pub top: usize,
    /// Changes the middle holds before a new base is due.
    pub middle: usize,
    /// Past this many changes since the base, a change compiles every
    /// queue at once: a bulk load would otherwise compile a growing middle
    /// again and again while the compaction catches up.
    pub whole: usize,
}

impl Default for Sizes {
    fn default() -> Self {
        Self {
            top: 32,
            middle: 1024,
            whole: 4096,
        }
    }
}

/// Queues changed since a level below was compiled, to their interests now
/// (`None`: removed).
type Changes = BTreeMap<Arc<str>, Option<Arc<Interests>>>;

/// Every queue's interests, compiled for routing; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Router {
    base: Level,
    middle: Level,
    top: Level,
    /// The base's positions that the middle hides (the top hides more).
    base_under_middle: Arc<[u64]>,
    sizes: Sizes,
}

/// One level: its queues compiled, the changes it holds (none for the
/// base), and which of its positions newer levels hide.
#[derive(Debug, Clone, Default)]
struct Level {
    matcher: Arc<Matcher>,
    changes: Arc<Changes>,
    hidden: Arc<[u64]>,
}

impl Level {
    fn of(changes: Changes) -> Result<Self, BuildError> {
        let matcher = Matcher::build(
            changes
                .iter()
                .filter_map(|(q, i)| i.as_ref().map(|i| (Arc::clone(q), Arc::clone(i)))),
        )?;
        Ok(Self {
            hidden: vec![0; matcher.len().div_ceil(64)].into(),
            matcher: Arc::new(matcher),
            changes: Arc::new(changes),
        })
    }

    fn base(matcher: Matcher) -> Self {
        Self {
            hidden: vec![0; matcher.len().div_ceil(64)].into(),
            matcher: Arc::new(matcher),
            changes: Arc::default(),
        }
    }

    /// This level with the positions of these queues hidden, besides those
    /// `under` hides.
    fn hiding<'q>(&self, under: &[u64], queues: impl Iterator<Item = &'q Arc<str>>) -> Self {
        let mut hidden = under.to_vec();
        hidden.resize(self.matcher.len().div_ceil(64), 0);
        for queue in queues {
            if let Some(p) = self.matcher.position(queue) {
                hidden[p / 64] |= 1 << (p % 64);
            }
        }
        Self {
            matcher: Arc::clone(&self.matcher),
            changes: Arc::clone(&self.changes),
            hidden: hidden.into(),
        }
    }

    fn is_hidden(&self, position: usize) -> bool {
        self.hidden[position / 64] & (1 << (position % 64)) != 0
    }

    fn live(&self) -> usize {
        let hidden: usize = self.hidden.iter().map(|w| w.count_ones() as usize).sum();
        self.matcher.len() - hidden
    }

    fn entries(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<Interests>)> {
        (0..self.matcher.len())
            .filter(|&p| !self.is_hidden(p))
            .map(|p| self.matcher.entry(p))
    }
}

impl Router {
    /// Compiles every queue's interests into a new base.
    pub fn build<I, S, T>(queues: I) -> Result<Self, BuildError>
    where
        I: IntoIterator<Item = (S, T)>,
        S: Into<Arc<str>>,
        T: Into<Arc<Interests>>,
    {
        Ok(Self::over(Matcher::build(queues)?, Sizes::default()))
    }

    /// The same router with other level sizes (tests use tiny ones to reach
    /// every level).
    pub fn with_sizes(mut self, sizes: Sizes) -> Self {
        self.sizes = sizes;
        self
    }

    fn over(base: Matcher, sizes: Sizes) -> Self {
        let base = Level::base(base);
        Self {
            base_under_middle: Arc::clone(&base.hidden),
            base,
            middle: Level::default(),
            top: Level::default(),
            sizes,
        }
    }

    fn levels(&self) -> [&Level; 3] {
        [&self.base, &self.middle, &self.top]
    }

    /// This router with some queues' interests replaced (`Some`) or removed
    /// (`None`), later changes to one queue winning; compiles only the
    /// queues changed since the middle was, or, now and then, since the
    /// base was.
    pub fn with_changes<I, S>(&self, changes: I) -> Result<Self, BuildError>
    where
        I: IntoIterator<Item = (S, Option<Interests>)>,
        S: Into<Arc<str>>,
    {
        let mut top = (*self.top.changes).clone();
        for (queue, interests) in changes {
            top.insert(queue.into(), interests.map(Arc::new));
        }
        if top.len() <= self.sizes.top {
            return self.with_top(top);
        }
        let mut middle = (*self.middle.changes).clone();
        middle.extend(top);
        self.with_middle(middle)
    }

    fn with_top(&self, top: Changes) -> Result<Self, BuildError> {
        let middle = self.middle.hiding(&[], top.keys());
        let base = self.base.hiding(&self.base_under_middle, top.keys());
        Ok(Self {
            base,
            middle,
            top: Level::of(top)?,
            base_under_middle: Arc::clone(&self.base_under_middle),
            sizes: self.sizes,
        })
    }

    fn with_middle(&self, middle: Changes) -> Result<Self, BuildError> {
        if middle.len() > self.sizes.whole {
            let base = &self.base.matcher;
            let kept = (0..base.len())
                .map(|p| base.entry(p))
                .filter(|(q, _)| !middle.contains_key(*q))
                .map(|(q, i)| (Arc::clone(q), Arc::clone(i)));
            let now = middle
                .iter()
                .filter_map(|(q, i)| i.as_ref().map(|i| (Arc::clone(q), Arc::clone(i))));
            return Ok(Self::over(Matcher::build(kept.chain(now))?, self.sizes));
        }
        let base = self.base.hiding(&[], middle.keys());
        Ok(Self {
            base_under_middle: Arc::clone(&base.hidden),
            base,
            middle: Level::of(middle)?,
            top: Level::default(),
            sizes: self.sizes,
        })
    }

    /// Whether the changes since the base are many enough that a new base
    /// is due.
    pub fn needs_compaction(&self) -> bool {
        self.middle.changes.len() > self.sizes.middle
    }

    /// Queues changed since the base was compiled.
    pub fn pending_changes(&self) -> usize {
        self.effective_changes().len()
    }

    /// Every change since the base, the newest for each queue.
    fn effective_changes(&self) -> Changes {
        let mut all = (*self.middle.changes).clone();
        all.extend(
            self.top
                .changes
                .iter()
                .map(|(q, i)| (Arc::clone(q), i.clone())),
        );
        all
    }

    /// The same queues and interests compiled into one new base: what
    /// every queue costs to compile, so run it off the hot path.
    pub fn compacted(&self) -> Result<Self, BuildError> {
        let queues: Vec<(Arc<str>, Arc<Interests>)> = self
            .entries()
            .map(|(q, i)| (Arc::clone(q), Arc::clone(i)))
            .collect();
        Ok(Self::over(Matcher::build(queues)?, self.sizes))
    }

    /// `compacted`, which was made from `from` (an earlier state of this
    /// router), with every change made since `from` applied again: `None`
    /// when this router no longer stands on `from`'s base (it was rebuilt
    /// whole meanwhile), so the compaction is stale.
    pub fn rebased(&self, from: &Router, compacted: &Router) -> Result<Option<Self>, BuildError> {
        if !Arc::ptr_eq(&self.base.matcher, &from.base.matcher) {
            return Ok(None);
        }
        let same = |a: &Option<Arc<Interests>>, b: &Option<Arc<Interests>>| match (a, b) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        };
        let then = from.effective_changes();
        let since: Changes = self
            .effective_changes()
            .into_iter()
            .filter(|(queue, now)| !then.get(queue).is_some_and(|t| same(t, now)))
            .collect();
        compacted.with_middle(since).map(Some)
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
        self.gather(|m| m.unrouted_indices().collect())
    }

    /// The queues whose interests take the task, leaving out the
    /// `unrouted` queues that take it when none does.
    pub fn wanted_indices(&self, data: &Map<String, Value>) -> Vec<usize> {
        if self.middle.changes.is_empty() && self.top.changes.is_empty() {
            return self.base.matcher.wanted_indices(data);
        }
        self.gather(|m| m.wanted_indices(data))
    }

    /// What `ask` finds in each level, less what newer levels hide, as
    /// positions in name order.
    fn gather(&self, ask: impl Fn(&Matcher) -> Vec<usize>) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::new();
        let mut offset = 0;
        for level in self.levels() {
            if !level.matcher.is_empty() {
                let found: Vec<usize> = ask(&level.matcher)
                    .into_iter()
                    .filter(|&p| !level.is_hidden(p))
                    .map(|p| p + offset)
                    .collect();
                out = if out.is_empty() {
                    found
                } else {
                    self.merge(out, found)
                };
            }
            offset += level.matcher.len();
        }
        out
    }

    /// Two lists of positions in name order as one.
    fn merge(&self, a: Vec<usize>, b: Vec<usize>) -> Vec<usize> {
        let mut out = Vec::with_capacity(a.len() + b.len());
        let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(&x), Some(&y)) if self.name(x) < self.name(y) => a.next(),
                (Some(_), Some(_)) | (None, Some(_)) => b.next(),
                (Some(_), None) => a.next(),
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

    fn entry(&self, mut position: usize) -> (&Arc<str>, &Arc<Interests>) {
        for level in self.levels() {
            if position < level.matcher.len() {
                return level.matcher.entry(position);
            }
            position -= level.matcher.len();
        }
        panic!("a position past the router's queues")
    }

    /// The interests of the queue at a position.
    pub fn interests_at(&self, position: usize) -> &Interests {
        self.entry(position).1
    }

    /// Whether the queue at a position takes only what no other queue
    /// takes.
    pub fn is_unrouted(&self, position: usize) -> bool {
        matches!(**self.entry(position).1, Interests::Unrouted)
    }

    /// About how much work routing `data` takes (see [`Matcher::scan_cost`]).
    pub fn scan_cost(&self, data: &Map<String, Value>) -> usize {
        self.levels()
            .iter()
            .map(|l| l.matcher.scan_cost(data))
            .fold(0, usize::saturating_add)
    }

    /// For every queue that wants the task: which fields and patterns
    /// matched, in name order.
    pub fn explain(&self, data: &Map<String, Value>) -> Vec<Explanation<'_>> {
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
                crate::matcher::explain_one(name, interests, data)
            })
            .collect()
    }

    /// Why one queue would take the task, if it would.
    pub fn explain_queue(&self, queue: &str, data: &Map<String, Value>) -> Option<Explanation<'_>> {
        self.explain(data).into_iter().find(|e| e.queue == queue)
    }

    /// One queue's interests.
    pub fn get(&self, queue: &str) -> Option<&Interests> {
        for changes in [&self.top.changes, &self.middle.changes] {
            if let Some(now) = changes.get(queue) {
                return now.as_deref();
            }
        }
        let base = &self.base.matcher;
        base.position(queue).map(|p| &**base.entry(p).1)
    }

    fn entries(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<Interests>)> {
        MergeByName {
            a: MergeByName {
                a: self.base.entries().peekable(),
                b: self.middle.entries().peekable(),
            }
            .peekable(),
            b: self.top.entries().peekable(),
        }
    }

    /// Every queue with interests, in name order.
    pub fn queues(&self) -> impl Iterator<Item = (&str, &Interests)> {
        self.entries().map(|(q, i)| (&**q, &**i))
    }

    /// How many queues have interests.
    pub fn len(&self) -> usize {
        self.levels().iter().map(|l| l.live()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Regex groups a value may be scanned by, over every level.
    pub fn regex_groups(&self) -> usize {
        self.levels().iter().map(|l| l.matcher.regex_groups()).sum()
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
        let whole = Sizes::default().whole;
        let bulk: Vec<(String, Option<Interests>)> = (0..whole + 1)
            .map(|n| {
                (
                    format!("n{n:05}"),
                    Some(parse("n", json!({"f": format!("^{n}$")}))),
                )
            })
            .collect();
        let loaded = rebased.with_changes(bulk).unwrap();
        assert_eq!(loaded.pending_changes(), 0);
        assert_eq!(loaded.len(), 3 + whole + 1);
        assert_eq!(loaded.route(&task(json!({"f": "7"}))), ["n00007"]);
        assert_eq!(loaded.route(&task(json!({"f": "bb"}))), ["b"]);
        // A router rebuilt whole meanwhile leaves the compaction stale.
        let rebuilt = Router::build([("z", parse("z", json!("*")))]).unwrap();
        assert!(rebuilt.rebased(&start, &compacted).unwrap().is_none());
    }
}
