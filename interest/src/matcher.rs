//! The compiled, immutable router over every queue's interests.

use std::collections::{BTreeMap, HashMap};

use aho_corasick::{AhoCorasick, MatchKind};
use regex::{RegexSet, RegexSetBuilder};
use serde_json::{Map, Value};

use crate::classify::{literal_form, EndRule, StartRule};
use crate::interests::Interests;
use crate::operators::Condition;
use crate::path::{for_each_text, FieldPath};

/// The regex set of one field holds every pattern that has no literal form, so
/// its size is bounded by the sum of already-bounded patterns; this only keeps
/// the `regex` crate's own default from refusing a large but legitimate set.
const SET_SIZE_LIMIT: usize = 1 << 30;
/// The lazy DFA thrashes with the default 2 MiB cache once a set holds
/// hundreds of patterns; memory here is cheap next to that.
const SET_DFA_LIMIT: usize = 64 << 20;

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
    queues: Vec<(String, Interests)>,
    /// Queues whose interests are `"*"`.
    takes_all: Vec<u32>,
    /// Queues whose interests are `"unrouted"`.
    unrouted: Vec<u32>,
    /// Rules of several fields that must all match: the queue, and the
    /// targets its fields mark. The indexes mark targets: a queue's own
    /// number for a field that alone takes the task, one past the queues
    /// for each field of such a rule.
    and_rules: Vec<(u32, Vec<u32>)>,
    /// Queues and rule fields.
    targets: usize,
    fields: Vec<FieldIndex>,
}

/// All patterns that look at one field path.
#[derive(Debug)]
struct FieldIndex {
    path: FieldPath,
    /// One automaton over every non-empty literal of every queue's pattern.
    literals: Option<AhoCorasick>,
    /// For each automaton pattern: which queues it stands for, under which rules.
    literal_hits: Vec<Vec<LiteralHit>>,
    /// Patterns whose literal is the empty string (`.*`, `^$`).
    empty_hits: Vec<LiteralHit>,
    /// The patterns without a literal form, in groups whose DFA stays
    /// within bounds (see `complexity`), each with the queue of each of its
    /// patterns.
    regexes: Vec<(RegexSet, Vec<u32>)>,
    /// `equalsIgnoreCase`: the lower-cased value to its queues.
    ignore_case: HashMap<String, Vec<u32>>,
    /// `exists: true` and `exists: false`.
    present: Vec<u32>,
    absent: Vec<u32>,
    /// Operators asked one by one (`anythingBut`, `numeric`, `cidr`).
    others: Vec<(u32, Condition)>,
}

#[derive(Debug, Clone, Copy)]
struct LiteralHit {
    queue: u32,
    start: StartRule,
    end: EndRule,
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
    pub fn build<I, S>(queues: I) -> Result<Self, BuildError>
    where
        I: IntoIterator<Item = (S, Interests)>,
        S: Into<String>,
    {
        let queues: Vec<(String, Interests)> = queues
            .into_iter()
            .map(|(name, interests)| (name.into(), interests))
            .collect::<BTreeMap<_, _>>()
            .into_iter()
            .collect();
        let mut takes_all = Vec::new();
        let mut unrouted = Vec::new();
        let mut by_field: BTreeMap<FieldPath, FieldBuilder> = BTreeMap::new();
        let mut and_rules = Vec::new();
        let mut next_target = queues.len() as u32;
        let mut index_field = |target: u32, f: &crate::interests::FieldInterest| {
            let builder = by_field.entry(f.path().clone()).or_default();
            for a in f.alternatives() {
                builder.add_condition(target, &a.condition);
            }
        };
        for (index, (_, interests)) in queues.iter().enumerate() {
            let queue = index as u32;
            match interests {
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
            targets: next_target as usize,
            fields,
        })
    }

    /// The names of the queues that want this task, without duplicates, in
    /// name order.
    pub fn route(&self, data: &Map<String, Value>) -> Vec<&str> {
        self.route_indices(data)
            .into_iter()
            .map(|i| self.queues[i].0.as_str())
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
        let mut hit = vec![0u64; self.targets.div_ceil(64)];
        for &q in &self.takes_all {
            set(&mut hit, q);
        }
        for field in &self.fields {
            let value = field.path.resolve(data);
            let present = value.is_some_and(|v| !v.is_null());
            for &q in if present {
                &field.present
            } else {
                &field.absent
            } {
                set(&mut hit, q);
            }
            if let Some(value) = value {
                for_each_text(value, |text| field.mark(text, &mut hit));
                for (q, condition) in &field.others {
                    if !is_set(&hit, *q) && condition.matches(Some(value)).is_some() {
                        set(&mut hit, *q);
                    }
                }
            }
        }
        for (queue, slots) in &self.and_rules {
            if slots.iter().all(|s| is_set(&hit, *s)) {
                set(&mut hit, *queue);
            }
        }
        let mut out = Vec::new();
        'words: for (word_index, mut word) in hit.into_iter().enumerate() {
            while word != 0 {
                let bit = word_index * 64 + word.trailing_zeros() as usize;
                if bit >= self.queues.len() {
                    break 'words;
                }
                out.push(bit);
                word &= word - 1;
            }
        }
        out
    }

    /// About how much work routing `data` takes: the bytes of text that
    /// regex sets scan, once per set. Callers route costly tasks off their
    /// request threads.
    pub fn scan_cost(&self, data: &Map<String, Value>) -> usize {
        let mut cost = 0usize;
        for field in self.fields.iter().filter(|f| !f.regexes.is_empty()) {
            if let Some(value) = field.path.resolve(data) {
                for_each_text(value, |text| {
                    cost = cost.saturating_add(text.len().saturating_mul(field.regexes.len()));
                });
            }
        }
        cost
    }

    /// For every queue that wants the task: which fields and patterns matched.
    /// Slower than `route`: it asks each queue's patterns one by one.
    pub fn explain(&self, data: &Map<String, Value>) -> Vec<Explanation<'_>> {
        let wanted: Vec<Explanation<'_>> = self
            .queues
            .iter()
            .filter_map(|(name, interests)| explain_one(name, interests, data))
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
            .binary_search_by(|(n, _)| n.as_str().cmp(queue))
            .ok()?;
        let (name, interests) = &self.queues[index];
        match interests {
            Interests::Unrouted => self.explain(data).into_iter().find(|e| e.queue == queue),
            _ => explain_one(name, interests, data),
        }
    }

    /// Every queue with its interests, in name order.
    pub fn queues(&self) -> impl Iterator<Item = (&str, &Interests)> {
        self.queues.iter().map(|(n, i)| (n.as_str(), i))
    }

    /// How many regex sets a value of some field may be scanned by: the
    /// groups of patterns without a literal form, over every field.
    pub fn regex_groups(&self) -> usize {
        self.fields.iter().map(|f| f.regexes.len()).sum()
    }

    /// Whether the queue at `index` (in `route_indices` order) takes only
    /// what no other queue takes.
    pub fn is_unrouted(&self, index: usize) -> bool {
        matches!(self.queues.get(index), Some((_, Interests::Unrouted)))
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
fn explain_one<'a>(
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
                pattern: &alternative.shown,
                value,
            })
        })
        .collect()
}

fn set(bits: &mut [u64], queue: u32) {
    bits[queue as usize / 64] |= 1 << (queue % 64);
}

fn is_set(bits: &[u64], queue: u32) -> bool {
    bits[queue as usize / 64] & (1 << (queue % 64)) != 0
}

impl FieldIndex {
    fn mark(&self, text: &str, hit: &mut [u64]) {
        let lines = Lines::of(text);
        if let Some(ac) = &self.literals {
            for m in ac.find_overlapping_iter(text) {
                for h in &self.literal_hits[m.pattern().as_usize()] {
                    if !is_set(hit, h.queue) && lines.allows(h, m.start(), m.end()) {
                        set(hit, h.queue);
                    }
                }
            }
        }
        for h in &self.empty_hits {
            if !is_set(hit, h.queue) && lines.allows_empty(h) {
                set(hit, h.queue);
            }
        }
        for (set_, queues) in &self.regexes {
            for i in set_.matches(text).iter() {
                set(hit, queues[i]);
            }
        }
        if !self.ignore_case.is_empty() {
            if let Some(queues) = self.ignore_case.get(&text.to_lowercase()) {
                for &q in queues {
                    set(hit, q);
                }
            }
        }
    }
}

/// Where a value's first and last newlines are, which `^.*lit` and `lit.*$`
/// must not cross.
struct Lines {
    len: usize,
    first_newline: Option<usize>,
    last_newline: Option<usize>,
}

impl Lines {
    fn of(text: &str) -> Self {
        let first_newline = text.find('\n');
        Self {
            len: text.len(),
            first_newline,
            last_newline: first_newline.and_then(|_| text.rfind('\n')),
        }
    }

    fn start_range(&self, rule: StartRule) -> (usize, usize) {
        match rule {
            StartRule::Any => (0, self.len),
            StartRule::AtStart => (0, 0),
            StartRule::FirstLine => (0, self.first_newline.unwrap_or(self.len)),
        }
    }

    fn end_range(&self, rule: EndRule) -> (usize, usize) {
        match rule {
            EndRule::Any => (0, self.len),
            EndRule::AtEnd => (self.len, self.len),
            EndRule::LastLine => (self.last_newline.map_or(0, |n| n + 1), self.len),
        }
    }

    fn allows(&self, hit: &LiteralHit, start: usize, end: usize) -> bool {
        let (s_lo, s_hi) = self.start_range(hit.start);
        let (e_lo, e_hi) = self.end_range(hit.end);
        (s_lo..=s_hi).contains(&start) && (e_lo..=e_hi).contains(&end)
    }

    /// An empty literal matches at one position that both rules allow.
    fn allows_empty(&self, hit: &LiteralHit) -> bool {
        let (s_lo, s_hi) = self.start_range(hit.start);
        let (e_lo, e_hi) = self.end_range(hit.end);
        s_lo.max(e_lo) <= s_hi.min(e_hi)
    }
}

#[derive(Default)]
struct FieldBuilder {
    literals: BTreeMap<Vec<u8>, Vec<LiteralHit>>,
    empty_hits: Vec<LiteralHit>,
    regexes: Vec<String>,
    regex_queues: Vec<u32>,
    ignore_case: HashMap<String, Vec<u32>>,
    present: Vec<u32>,
    absent: Vec<u32>,
    others: Vec<(u32, Condition)>,
}

impl FieldBuilder {
    /// Files one condition where it is cheapest to answer: prefixes and
    /// suffixes become anchored literals of the field's automaton.
    fn add_condition(&mut self, queue: u32, condition: &Condition) {
        match condition {
            Condition::Regex(r) => self.add(queue, r.as_str()),
            Condition::Prefix(p) => self.add(queue, &format!("^{}", regex::escape(p))),
            Condition::Suffix(s) => self.add(queue, &format!("{}$", regex::escape(s))),
            Condition::EqualsIgnoreCase(s) => {
                self.ignore_case.entry(s.clone()).or_default().push(queue)
            }
            Condition::Exists(true) => self.present.push(queue),
            Condition::Exists(false) => self.absent.push(queue),
            other => self.others.push((queue, other.clone())),
        }
    }

    fn add(&mut self, queue: u32, pattern: &str) {
        match literal_form(pattern) {
            Some(form) => {
                for literal in form.literals {
                    let hit = LiteralHit {
                        queue,
                        start: form.start,
                        end: form.end,
                    };
                    if literal.is_empty() {
                        self.empty_hits.push(hit);
                    } else {
                        self.literals.entry(literal).or_default().push(hit);
                    }
                }
            }
            None => {
                self.regexes.push(pattern.to_owned());
                self.regex_queues.push(queue);
            }
        }
    }

    fn build(self, path: FieldPath) -> Result<FieldIndex, BuildError> {
        let error = |message: String| BuildError {
            field: path.as_str().to_owned(),
            message,
        };
        let (patterns, literal_hits): (Vec<Vec<u8>>, Vec<Vec<LiteralHit>>) =
            self.literals.into_iter().unzip();
        let literals = if patterns.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .build(&patterns)
                    .map_err(|e| error(e.to_string()))?,
            )
        };
        let sources: Vec<&str> = self.regexes.iter().map(String::as_str).collect();
        let regexes = crate::complexity::groups(&sources)
            .into_iter()
            .map(|range| {
                let set_ = RegexSetBuilder::new(&sources[range.clone()])
                    .size_limit(SET_SIZE_LIMIT)
                    .dfa_size_limit(SET_DFA_LIMIT)
                    .build()
                    .map_err(|e| error(e.to_string()))?;
                Ok((set_, self.regex_queues[range].to_vec()))
            })
            .collect::<Result<_, BuildError>>()?;
        Ok(FieldIndex {
            path,
            literals,
            literal_hits,
            empty_hits: self.empty_hits,
            regexes,
            ignore_case: self.ignore_case,
            present: self.present,
            absent: self.absent,
            others: self.others,
        })
    }
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
