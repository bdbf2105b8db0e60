//! The compiled, immutable router over every queue's interests.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::hits::Hits;
use crate::index::{FieldBuilder, FieldIndex};
use crate::interests::Interests;
use crate::path::FieldPath;

/// Why a `Matcher` could not be built from interests that were each valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: the patterns of all queues together cannot be compiled: {message}")]
pub struct BuildError {
    pub field: String,
    pub message: String,
}

/// Every queue's interests compiled together: each task field is scanned once,
/// however many queues there are. The default routes nowhere.
#[derive(Debug, Default)]
pub struct Matcher {
    /// Sorted by name: routes come out in this order.
    queues: Vec<(Arc<str>, Arc<Interests>)>,
    /// Queues whose interests are `"*"`.
    takes_all: Vec<u32>,
    /// Queues whose interests are `"unrouted"`.
    unrouted: Vec<u32>,
    /// Rules of several fields that must all match: the queue, and the
    /// targets its fields mark. The indexes mark targets: a queue's own
    /// number for a field that alone takes the task, one past the queues
    /// for each field of such a rule.
    and_rules: Vec<(u32, Vec<u32>)>,
    /// For each rule field's target (less the number of queues): its rule.
    rule_of: Vec<u32>,
    /// Queues and rule fields.
    targets: usize,
    fields: Vec<FieldIndex>,
}

/// Why a queue would take a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation<'a> {
    pub queue: &'a str,
    /// Empty when the queue takes every task (`"*"`), or what no other
    /// queue takes (`unrouted`).
    pub fields: Vec<FieldHit<'a>>,
    /// Taken because no other queue's interests take it.
    pub unrouted: bool,
}

/// One field whose pattern matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldHit<'a> {
    pub field: &'a str,
    pub pattern: &'a str,
    /// The text that matched (an array's matching element).
    pub value: String,
}

impl Matcher {
    /// Compiles the interests of every queue. A queue named twice keeps its
    /// last interests, as registering replaces.
    pub fn build<I, S, T>(queues: I) -> Result<Self, BuildError>
    where
        I: IntoIterator<Item = (S, T)>,
        S: Into<Arc<str>>,
        T: Into<Arc<Interests>>,
    {
        let queues: Vec<(Arc<str>, Arc<Interests>)> = queues
            .into_iter()
            .map(|(name, interests)| (name.into(), interests.into()))
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .collect();
        let mut takes_all = Vec::new();
        let mut unrouted = Vec::new();
        let mut by_field: BTreeMap<FieldPath, FieldBuilder> = BTreeMap::new();
        let mut and_rules = Vec::new();
        let mut rule_of = Vec::new();
        let mut next_target = queues.len() as u32;
        let mut index_field = |target: u32, f: &crate::interests::FieldInterest| {
            let builder = by_field.entry(f.path().clone()).or_default();
            for a in f.alternatives() {
                builder.add_condition(target, &a.condition);
            }
        };
        for (index, (_, interests)) in queues.iter().enumerate() {
            let queue = index as u32;
            match &**interests {
                Interests::All => takes_all.push(queue),
                Interests::Unrouted => unrouted.push(queue),
                Interests::Fields(fields) => fields.iter().for_each(|f| index_field(queue, f)),
                Interests::Rules(rules) => {
                    for rule in rules {
                        if let [only] = rule.as_slice() {
                            index_field(queue, only);
                            continue;
                        }
                        let mut slots = Vec::with_capacity(rule.len());
                        for f in rule {
                            index_field(next_target, f);
                            slots.push(next_target);
                            rule_of.push(and_rules.len() as u32);
                            next_target += 1;
                        }
                        and_rules.push((queue, slots));
                    }
                }
            }
        }
        let fields = by_field
            .into_iter()
            .map(|(path, builder)| builder.build(path))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            queues,
            takes_all,
            unrouted,
            and_rules,
            rule_of,
            targets: next_target as usize,
            fields,
        })
    }

    /// The names of the queues that want this task, without duplicates, in
    /// name order.
    pub fn route(&self, data: &Map<String, Value>) -> Vec<&str> {
        self.route_indices(data)
            .into_iter()
            .map(|i| &*self.queues[i].0)
            .collect()
    }

    /// `route`, as positions in [`Matcher::queues`] order: callers that keep
    /// their own per-queue values in that order look them up without hashing.
    pub fn route_indices(&self, data: &Map<String, Value>) -> Vec<usize> {
        let wanted = self.wanted_indices(data);
        if wanted.is_empty() {
            return self.unrouted.iter().map(|&q| q as usize).collect();
        }
        wanted
    }

    /// The queues whose interests take the task, leaving out the `unrouted`
    /// queues that take it when none does: empty when nothing wants it.
    pub fn wanted_indices(&self, data: &Map<String, Value>) -> Vec<usize> {
        if self.queues.is_empty() {
            return Vec::new();
        }
        Hits::with(self.targets, |hits| {
            hits.set_all(&self.takes_all);
            for field in &self.fields {
                let value = field.path.resolve(data);
                if value.is_some_and(|v| !v.is_null()) {
                    hits.set_all(&field.present);
                } else {
                    hits.set_all(&field.absent);
                }
                if let Some(value) = value {
                    field.mark(value, hits);
                }
            }
            let queues = self.queues.len();
            if !self.and_rules.is_empty() {
                let mut rules = Vec::new();
                hits.each_from(queues as u32, |slot| {
                    rules.push(self.rule_of[slot as usize - queues])
                });
                rules.sort_unstable();
                rules.dedup();
                for rule in rules {
                    let (queue, slots) = &self.and_rules[rule as usize];
                    if slots.iter().all(|s| hits.is_set(*s)) {
                        hits.set(*queue);
                    }
                }
            }
            let mut out = Vec::new();
            hits.drain(queues, &mut out);
            out
        })
    }

    /// About how much work routing `data` takes: the bytes of text that
    /// regex sets scan, once per set. Callers route costly tasks off their
    /// request threads.
    pub fn scan_cost(&self, data: &Map<String, Value>) -> usize {
        self.fields
            .iter()
            .filter_map(|f| f.path.resolve(data).map(|v| f.scan_cost(v)))
            .fold(0, usize::saturating_add)
    }

    /// For every queue that wants the task: which fields and patterns matched.
    /// Slower than `route`: it asks each queue's patterns one by one.
    pub fn explain(&self, data: &Map<String, Value>) -> Vec<Explanation<'_>> {
        let wanted: Vec<Explanation<'_>> = self
            .wanted_indices(data)
            .into_iter()
            .filter_map(|i| {
                let (name, interests) = &self.queues[i];
                explain_one(name, interests, data)
            })
            .collect();
        if !wanted.is_empty() {
            return wanted;
        }
        self.unrouted
            .iter()
            .map(|&q| Explanation {
                queue: &self.queues[q as usize].0,
                fields: Vec::new(),
                unrouted: true,
            })
            .collect()
    }

    /// Why `queue` would take the task (`explain`, for one queue), or `None`
    /// when it would not or has no interests.
    pub fn explain_queue(&self, queue: &str, data: &Map<String, Value>) -> Option<Explanation<'_>> {
        let index = self
            .queues
            .binary_search_by(|(n, _)| (**n).cmp(queue))
            .ok()?;
        let (name, interests) = &self.queues[index];
        match &**interests {
            Interests::Unrouted => self.explain(data).into_iter().find(|e| e.queue == queue),
            _ => explain_one(name, interests, data),
        }
    }

    /// Every queue with its interests, in name order.
    pub fn queues(&self) -> impl Iterator<Item = (&str, &Interests)> {
        self.queues.iter().map(|(n, i)| (&**n, &**i))
    }

    /// The queue at `index` (in `route_indices` order), shared.
    pub fn entry(&self, index: usize) -> (&Arc<str>, &Arc<Interests>) {
        let (name, interests) = &self.queues[index];
        (name, interests)
    }

    /// Where a queue is in `route_indices` order.
    pub fn position(&self, queue: &str) -> Option<usize> {
        self.queues.binary_search_by(|(n, _)| (**n).cmp(queue)).ok()
    }

    /// The queues that take what no other queue takes, in `route_indices`
    /// order.
    pub fn unrouted_indices(&self) -> impl Iterator<Item = usize> + '_ {
        self.unrouted.iter().map(|&q| q as usize)
    }

    /// How many regex sets a value of some field may be scanned by: the
    /// groups of patterns without a literal form, over every field.
    pub fn regex_groups(&self) -> usize {
        self.fields.iter().map(|f| f.regex_groups()).sum()
    }

    /// Whether the queue at `index` (in `route_indices` order) takes only
    /// what no other queue takes.
    pub fn is_unrouted(&self, index: usize) -> bool {
        self.queues
            .get(index)
            .is_some_and(|(_, i)| matches!(**i, Interests::Unrouted))
    }

    /// How many queues have interests.
    pub fn len(&self) -> usize {
        self.queues.len()
    }

    /// Whether no queue has interests (every task would be discarded).
    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }
}

/// Which of one queue's fields take the task; `None` when none does.
pub(crate) fn explain_one<'a>(
    name: &'a str,
    interests: &'a Interests,
    data: &Map<String, Value>,
) -> Option<Explanation<'a>> {
    match interests {
        Interests::All => Some(Explanation {
            queue: name,
            fields: Vec::new(),
            unrouted: false,
        }),
        Interests::Unrouted => None,
        Interests::Fields(fields) => {
            let hits = field_hits(fields, data);
            (!hits.is_empty()).then_some(Explanation {
                queue: name,
                fields: hits,
                unrouted: false,
            })
        }
        // The first rule whose every field matches, with those fields.
        Interests::Rules(rules) => rules.iter().find_map(|rule| {
            let hits = field_hits(rule, data);
            (hits.len() == rule.len()).then_some(Explanation {
                queue: name,
                fields: hits,
                unrouted: false,
            })
        }),
    }
}

/// Each of `fields` that matches, with the alternative and text that did.
fn field_hits<'a>(
    fields: &'a [crate::interests::FieldInterest],
    data: &Map<String, Value>,
) -> Vec<FieldHit<'a>> {
    fields
        .iter()
        .filter_map(|f| {
            f.matching(data).map(|(alternative, value)| FieldHit {
                field: f.path().as_str(),
                pattern: alternative.shown(),
                value,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Limits;
    use serde_json::json;

    fn matcher(queues: Value) -> Matcher {
        let queues = queues.as_object().unwrap().clone();
        Matcher::build(queues.into_iter().map(|(name, value)| {
            let interests = Interests::parse(&name, &value, &Limits::default()).unwrap();
            (name, interests)
        }))
        .unwrap()
    }

    fn route(m: &Matcher, data: Value) -> Vec<&str> {
        m.route(data.as_object().unwrap())
    }

    #[test]
    fn seed_example_fans_out_to_every_interested_queue() {
        let m = matcher(json!({
            "sendNewUserWelcomeEmail": {"action": "^userCreated$"},
            "giveNewUser20Points": {"action": "userCreated"},
            "audit": "*",
            "billing": {"action": "^invoice"},
        }));
        assert_eq!(
            route(&m, json!({"action": "userCreated", "userId": 7})),
            ["audit", "giveNewUser20Points", "sendNewUserWelcomeEmail"]
        );
        assert_eq!(route(&m, json!({"other": 1})), ["audit"]);
    }

    #[test]
    fn fields_match_or_wise_and_a_queue_is_listed_once() {
        let m = matcher(json!({"q": {"email": "^.*", "userId": "^.*"}}));
        assert_eq!(route(&m, json!({"email": "a", "userId": "b"})), ["q"]);
        assert_eq!(route(&m, json!({"userId": 3})), ["q"]);
        assert!(route(&m, json!({"name": "a"})).is_empty());
    }

    #[test]
    fn nested_paths_numbers_booleans_and_arrays() {
        let m = matcher(json!({
            "nested": {"user.email": "@x\\.com$"},
            "number": {"n": "^4[0-9]$"},
            "bool": {"flag": "^true$"},
            "array": {"tags": "^red$"},
            "dotted": {"a\\.b": "yes"},
        }));
        assert_eq!(route(&m, json!({"user": {"email": "e@x.com"}})), ["nested"]);
        assert_eq!(route(&m, json!({"n": 42})), ["number"]);
        assert!(route(&m, json!({"n": 4.5})).is_empty());
        assert_eq!(route(&m, json!({"flag": true})), ["bool"]);
        assert_eq!(route(&m, json!({"tags": ["blue", "red"]})), ["array"]);
        assert_eq!(route(&m, json!({"a.b": "yes"})), ["dotted"]);
        assert!(route(&m, json!({"a": {"b": "yes"}})).is_empty());
    }

    #[test]
    fn null_objects_and_missing_fields_never_match() {
        let m = matcher(json!({"q": {"f": ".*"}}));
        assert!(route(&m, json!({"f": null})).is_empty());
        assert!(route(&m, json!({"f": {"x": 1}})).is_empty());
        assert!(route(&m, json!({"g": "x"})).is_empty());
        assert_eq!(route(&m, json!({"f": ""})), ["q"]);
    }

    #[test]
    fn matching_is_unanchored_unless_the_pattern_anchors() {
        let m = matcher(json!({"loose": {"f": "van"}, "tight": {"f": "^van$"}}));
        assert_eq!(route(&m, json!({"f": "evan"})), ["loose"]);
        assert_eq!(route(&m, json!({"f": "van"})), ["loose", "tight"]);
    }

    #[test]
    fn dot_star_does_not_cross_newlines() {
        let m = matcher(json!({"first": {"f": "^.*evan"}, "last": {"f": "evan.*$"}}));
        assert_eq!(route(&m, json!({"f": "a evan b"})), ["first", "last"]);
        assert_eq!(route(&m, json!({"f": "a\nevan"})), ["last"]);
        assert_eq!(route(&m, json!({"f": "evan\nb"})), ["first"]);
    }

    #[test]
    fn patterns_without_a_literal_form_use_the_regex_set() {
        let m = matcher(json!({"digits": {"id": r"^\d+$"}, "word": {"id": r"\bab\b"}}));
        assert_eq!(route(&m, json!({"id": "123"})), ["digits"]);
        assert_eq!(route(&m, json!({"id": "x ab y"})), ["word"]);
    }

    #[test]
    fn registering_again_replaces_a_queues_interests() {
        let first = Interests::parse("q", &json!({"a": "x"}), &Limits::default()).unwrap();
        let second = Interests::parse("q", &json!({"b": "x"}), &Limits::default()).unwrap();
        let m = Matcher::build([("q", first), ("q", second)]).unwrap();
        assert!(route(&m, json!({"a": "x"})).is_empty());
        assert_eq!(route(&m, json!({"b": "x"})), ["q"]);
    }

    #[test]
    fn explain_names_queue_field_pattern_and_value() {
        let m = matcher(json!({"all": "*", "mail": {"email": "evan", "id": "^9"}}));
        let data = json!({"email": "evan@x", "id": 1});
        let explained = m.explain(data.as_object().unwrap());
        assert_eq!(
            explained,
            vec![
                Explanation {
                    queue: "all",
                    fields: vec![],
                    unrouted: false,
                },
                Explanation {
                    queue: "mail",
                    fields: vec![FieldHit {
                        field: "email",
                        pattern: "evan",
                        value: "evan@x".into()
                    }],
                    unrouted: false,
                },
            ]
        );
    }

    #[test]
    fn an_unrouted_queue_takes_and_explains_only_what_nobody_else_wants() {
        let m = matcher(json!({"lost": "unrouted", "mail": {"email": "evan"}}));
        let wanted = json!({"email": "evan@x"});
        let wanted = wanted.as_object().unwrap();
        let nobody = json!({"email": "ada@x"});
        let nobody = nobody.as_object().unwrap();
        assert_eq!(m.route(wanted), ["mail"]);
        assert_eq!(m.wanted_indices(wanted), [1]);
        assert_eq!(m.route(nobody), ["lost"]);
        assert!(m.wanted_indices(nobody).is_empty());
        let why = m.explain_queue("lost", nobody).unwrap();
        assert!(why.unrouted && why.fields.is_empty());
        assert!(m.explain_queue("lost", wanted).is_none());
        // A queue that takes every task leaves nothing unrouted.
        let m = matcher(json!({"all": "*", "lost": "unrouted"}));
        assert_eq!(m.route(nobody), ["all"]);
    }

    #[test]
    fn explain_one_queue() {
        let m = matcher(json!({"all": "*", "mail": {"email": "evan"}}));
        let data = json!({"email": "evan@x"});
        let data = data.as_object().unwrap();
        assert_eq!(
            m.explain_queue("mail", data).unwrap().fields[0].pattern,
            "evan"
        );
        assert!(m.explain_queue("all", data).unwrap().fields.is_empty());
        assert!(m.explain_queue("nope", data).is_none());
        assert!(m
            .explain_queue("mail", json!({"email": "x"}).as_object().unwrap())
            .is_none());
    }

    #[test]
    fn an_empty_matcher_routes_nowhere() {
        let m = Matcher::default();
        assert!(route(&m, json!({"a": 1})).is_empty());
        assert!(m.is_empty());
    }
}
