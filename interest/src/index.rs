//! One field's index: every queue's conditions on one field path, each filed
//! in the structure that answers it cheapest, so that the cost of a field
//! grows with the value's length and the number of matches, not with the
//! number of queues: exact values, prefixes and suffixes in hash maps,
//! numeric ranges in an interval tree, networks in one map per prefix
//! length, and only what has no cheaper form in an Aho-Corasick automaton
//! (literals anywhere in the value) or regex sets. Identical conditions are
//! stored once, with every target that asked for them.

use std::collections::BTreeMap;
use std::net::IpAddr;

use regex::{RegexSet, RegexSetBuilder};
use serde_json::Value;

use crate::classify::{classify, Form};
use crate::hits::Hits;
use crate::literals::{compact, push_once, Hashed, Literals, LiteralsBuilder, Targets};
use crate::matcher::BuildError;
use crate::operators::{Cmp, Condition};
use crate::path::{for_each_text, FieldPath};

/// The regex set of one field holds every pattern that has no literal form, so
/// its size is bounded by the sum of already-bounded patterns; this only keeps
/// the `regex` crate's own default from refusing a large but legitimate set.
const SET_SIZE_LIMIT: usize = 1 << 30;
/// The lazy DFA thrashes with the default 2 MiB cache once a set holds
/// hundreds of patterns; memory here is cheap next to that.
const SET_DFA_LIMIT: usize = 64 << 20;

/// All conditions that look at one field path.
#[derive(Debug)]
pub(crate) struct FieldIndex {
    pub path: FieldPath,
    /// Patterns with a literal form, and prefixes and suffixes.
    literals: Literals,
    /// Patterns with only a case-insensitive literal form.
    folded: Option<Box<Folded>>,
    /// Distinct patterns without a literal form, in groups whose DFA stays
    /// within bounds (see `complexity`), each pattern with its targets.
    regexes: RegexGroups,
    /// `equalsIgnoreCase`: the lower-cased value to its targets.
    ignore_case: Hashed<String, Targets>,
    /// `exists: true` and `exists: false`.
    pub present: Vec<u32>,
    pub absent: Vec<u32>,
    /// `numeric`, on numbers only.
    numbers: Intervals,
    /// `numeric` with `"strings": true`.
    numbers_or_strings: Intervals,
    anything_but: AnythingBut,
    networks: Networks,
    /// Whether any of the above but presence and numbers reads the text.
    reads_text: bool,
}

/// Regex sets, each pattern with its targets.
type RegexGroups = Vec<(RegexSet, Vec<Vec<u32>>)>;

/// Case-insensitive patterns (`(?i)^pro-yearly-(usd|eur)$`): ASCII text is
/// lower-cased once and looked up as literals are; other text goes to
/// their regexes, since Unicode folding takes more than lower-casing does
/// (see `classify::Form::Folded`).
#[derive(Debug)]
struct Folded {
    literals: Literals,
    regexes: RegexGroups,
}

impl Folded {
    fn mark(&self, text: &str, hits: &mut Hits) {
        if !text.is_ascii() {
            mark_regexes(&self.regexes, text, hits);
        } else if text.bytes().any(|b| b.is_ascii_uppercase()) {
            self.literals.mark(&text.to_ascii_lowercase(), hits);
        } else {
            // Already lower-case: no copy.
            self.literals.mark(text, hits);
        }
    }
}

fn mark_regexes(groups: &RegexGroups, text: &str, hits: &mut Hits) {
    for (set_, targets) in groups {
        for i in set_.matches(text).iter() {
            hits.set_all(&targets[i]);
        }
    }
}

impl FieldIndex {
    /// Marks every target whose condition holds for the value at the path.
    pub fn mark(&self, value: &Value, hits: &mut Hits) {
        if self.reads_text {
            for_each_text(value, |text| self.mark_text(text, hits));
        }
        if !self.numbers.is_empty() || !self.numbers_or_strings.is_empty() {
            for_each_number(value, |x, from_string| {
                if !from_string {
                    self.numbers.mark(x, hits);
                }
                self.numbers_or_strings.mark(x, hits);
            });
        }
    }

    fn mark_text(&self, text: &str, hits: &mut Hits) {
        self.literals.mark(text, hits);
        if let Some(folded) = &self.folded {
            folded.mark(text, hits);
        }
        mark_regexes(&self.regexes, text, hits);
        if !self.ignore_case.is_empty() {
            if let Some(targets) = self.ignore_case.get(&text.to_lowercase()) {
                hits.set_all(targets.as_slice());
            }
        }
        self.anything_but.mark(text, hits);
        self.networks.mark(text, hits);
    }

    /// About how much work the value takes beyond one look-up per
    /// structure: the bytes regex sets scan, once per set, and the bytes
    /// hashed for prefixes and suffixes.
    pub fn scan_cost(&self, value: &Value) -> usize {
        // A folded pattern's regexes scan only non-ASCII text: counted as
        // if they scanned every text.
        let per_byte = self.regexes.len() + self.folded.as_ref().map_or(0, |f| f.regexes.len());
        if per_byte == 0 && self.literals.affix_lengths() == 0 {
            return 0;
        }
        let mut cost = 0usize;
        for_each_text(value, |text| {
            let hashed = self.literals.affix_bytes(text.len());
            cost = cost
                .saturating_add(text.len().saturating_mul(per_byte))
                .saturating_add(hashed / 8);
        });
        cost
    }

    pub fn regex_groups(&self) -> usize {
        self.regexes.len() + self.folded.as_ref().map_or(0, |f| f.regexes.len())
    }
}

/// Numbers in the value (an array's elements too), and whether each came
/// from a string.
fn for_each_number(value: &Value, mut f: impl FnMut(f64, bool)) {
    let mut one = |v: &Value| match v {
        Value::Number(n) => {
            if let Some(x) = n.as_f64() {
                f(x, false);
            }
        }
        Value::String(s) => {
            if let Ok(x) = s.trim().parse::<f64>() {
                if x.is_finite() {
                    f(x, true);
                }
            }
        }
        _ => {}
    };
    match value {
        Value::Array(items) => items.iter().for_each(&mut one),
        other => one(other),
    }
}

/// One `numeric` condition as the interval of numbers it takes.
#[derive(Debug, Clone, Copy)]
struct Interval {
    low: f64,
    low_open: bool,
    high: f64,
    high_open: bool,
    target: u32,
}

impl Interval {
    /// The numbers every comparison takes; `None` when none does
    /// (`[">", 5, "<", 3]`).
    fn of(bounds: &[(Cmp, f64)], target: u32) -> Option<Self> {
        let mut i = Self {
            low: f64::NEG_INFINITY,
            low_open: false,
            high: f64::INFINITY,
            high_open: false,
            target,
        };
        for &(op, b) in bounds {
            if matches!(op, Cmp::Gt | Cmp::Ge | Cmp::Eq) {
                let open = op == Cmp::Gt;
                if b > i.low {
                    (i.low, i.low_open) = (b, open);
                } else if b == i.low {
                    i.low_open |= open;
                }
            }
            if matches!(op, Cmp::Lt | Cmp::Le | Cmp::Eq) {
                let open = op == Cmp::Lt;
                if b < i.high {
                    (i.high, i.high_open) = (b, open);
                } else if b == i.high {
                    i.high_open |= open;
                }
            }
        }
        let empty = i.low > i.high || (i.low == i.high && (i.low_open || i.high_open));
        (!empty).then_some(i)
    }

    fn contains(&self, x: f64) -> bool {
        (x > self.low || (!self.low_open && x == self.low))
            && (x < self.high || (!self.high_open && x == self.high))
    }
}

/// A static interval tree: intervals sorted by their low end, read as an
/// implicit balanced tree (each range's middle is its root) where every root
/// keeps the highest high end of its range. A look-up visits the roots on
/// the paths to its matches: O((k + 1) log n).
#[derive(Debug, Default)]
struct Intervals {
    items: Vec<Interval>,
    max_high: Vec<f64>,
}

impl Intervals {
    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    fn finish(&mut self) {
        self.items.sort_by(|a, b| a.low.total_cmp(&b.low));
        self.items.shrink_to_fit();
        self.max_high = vec![f64::NEG_INFINITY; self.items.len()];
        self.fill(0, self.items.len());
    }

    fn fill(&mut self, from: usize, to: usize) -> f64 {
        if from >= to {
            return f64::NEG_INFINITY;
        }
        let mid = from + (to - from) / 2;
        let high = self.items[mid]
            .high
            .max(self.fill(from, mid))
            .max(self.fill(mid + 1, to));
        self.max_high[mid] = high;
        high
    }

    fn mark(&self, x: f64, hits: &mut Hits) {
        self.visit(x, 0, self.items.len(), hits);
    }

    fn visit(&self, x: f64, from: usize, to: usize, hits: &mut Hits) {
        if from >= to {
            return;
        }
        let mid = from + (to - from) / 2;
        if self.max_high[mid] < x {
            return;
        }
        self.visit(x, from, mid, hits);
        let item = &self.items[mid];
        if item.low > x {
            // Everything to the right starts later still.
            return;
        }
        if item.contains(x) {
            hits.set(item.target);
        }
        self.visit(x, mid + 1, to, hits);
    }
}

/// `anythingBut`: every such condition's target, less those whose condition
/// lists the text. Conditions, not targets, are left out: a queue with two
/// `anythingBut` alternatives is taken when either holds.
#[derive(Debug, Default)]
struct AnythingBut {
    /// Each condition's target.
    targets: Vec<u32>,
    /// A listed text to the conditions that list it, ascending.
    except: Hashed<Box<str>, Vec<u32>>,
}

impl AnythingBut {
    fn insert(&mut self, values: &[String], target: u32) {
        let condition = self.targets.len() as u32;
        self.targets.push(target);
        for v in values {
            let listed = self.except.entry(v.as_str().into()).or_default();
            if listed.last() != Some(&condition) {
                listed.push(condition);
            }
        }
    }

    fn mark(&self, text: &str, hits: &mut Hits) {
        if self.targets.is_empty() {
            return;
        }
        let Some(except) = self.except.get(text) else {
            hits.set_all(&self.targets);
            return;
        };
        let mut except = except.iter().peekable();
        for (condition, &t) in self.targets.iter().enumerate() {
            if except.next_if_eq(&&(condition as u32)).is_none() {
                hits.set(t);
            }
        }
    }
}

/// `cidr`: per address family, per prefix length, the network's leading bits
/// to its targets.
#[derive(Debug, Default)]
struct Networks {
    v4: BTreeMap<u8, Hashed<u32, Vec<u32>>>,
    v6: BTreeMap<u8, Hashed<u128, Vec<u32>>>,
}

fn leading_v4(address: u32, bits: u8) -> u32 {
    address.checked_shr(32 - bits as u32).unwrap_or(0)
}

fn leading_v6(address: u128, bits: u8) -> u128 {
    address.checked_shr(128 - bits as u32).unwrap_or(0)
}

impl Networks {
    fn insert(&mut self, network: IpAddr, bits: u8, target: u32) {
        match network {
            IpAddr::V4(n) => self
                .v4
                .entry(bits)
                .or_default()
                .entry(leading_v4(n.into(), bits))
                .or_default()
                .push(target),
            IpAddr::V6(n) => self
                .v6
                .entry(bits)
                .or_default()
                .entry(leading_v6(n.into(), bits))
                .or_default()
                .push(target),
        }
    }

    fn mark(&self, text: &str, hits: &mut Hits) {
        if self.v4.is_empty() && self.v6.is_empty() {
            return;
        }
        match text.parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) => {
                for (&bits, networks) in &self.v4 {
                    if let Some(t) = networks.get(&leading_v4(a.into(), bits)) {
                        hits.set_all(t);
                    }
                }
            }
            Ok(IpAddr::V6(a)) => {
                for (&bits, networks) in &self.v6 {
                    if let Some(t) = networks.get(&leading_v6(a.into(), bits)) {
                        hits.set_all(t);
                    }
                }
            }
            Err(_) => {}
        }
    }
}

/// Collects one field's conditions, then compiles them.
#[derive(Default)]
pub(crate) struct FieldBuilder {
    literals: LiteralsBuilder,
    folded: LiteralsBuilder,
    /// Distinct sources, to their targets: those without a literal form,
    /// and those with only a folded one.
    regexes: BTreeMap<String, Vec<u32>>,
    folded_regexes: BTreeMap<String, Vec<u32>>,
    ignore_case: Hashed<String, Vec<u32>>,
    present: Vec<u32>,
    absent: Vec<u32>,
    numbers: Intervals,
    numbers_or_strings: Intervals,
    anything_but: AnythingBut,
    networks: Networks,
}

impl FieldBuilder {
    /// Files one condition where it is cheapest to answer.
    pub fn add_condition(&mut self, target: u32, condition: &Condition) {
        match condition {
            Condition::Regex(r) => self.add_regex(target, r.as_str()),
            Condition::Prefix(p) if !p.is_empty() => {
                self.literals.add_prefix(p.clone().into_bytes(), target)
            }
            Condition::Suffix(s) if !s.is_empty() => {
                self.literals.add_suffix(s.clone().into_bytes(), target)
            }
            // Every text starts and ends with "".
            Condition::Prefix(_) | Condition::Suffix(_) => self.add_regex(target, ""),
            Condition::EqualsIgnoreCase(s) => {
                push_once(self.ignore_case.entry(s.clone()).or_default(), target)
            }
            Condition::Exists(true) => self.present.push(target),
            Condition::Exists(false) => self.absent.push(target),
            Condition::Numeric { bounds, strings } => {
                if let Some(interval) = Interval::of(bounds, target) {
                    if *strings {
                        self.numbers_or_strings.items.push(interval);
                    } else {
                        self.numbers.items.push(interval);
                    }
                }
            }
            Condition::AnythingBut(values) => self.anything_but.insert(values, target),
            Condition::Cidr { network, bits } => self.networks.insert(*network, *bits, target),
        }
    }

    fn add_regex(&mut self, target: u32, pattern: &str) {
        match classify(pattern) {
            Form::Literal(form) => self.literals.add_form(form, target),
            Form::Folded(form) => {
                self.folded.add_form(form, target);
                push_once(
                    self.folded_regexes.entry(pattern.to_owned()).or_default(),
                    target,
                );
            }
            Form::Regex => push_once(self.regexes.entry(pattern.to_owned()).or_default(), target),
        }
    }

    pub fn build(mut self, path: FieldPath) -> Result<FieldIndex, BuildError> {
        let error = |message: String| BuildError {
            field: path.as_str().to_owned(),
            message,
        };
        let literals = self.literals.build().map_err(error)?;
        let regexes = regex_groups(self.regexes).map_err(error)?;
        let folded_regexes = regex_groups(self.folded_regexes).map_err(error)?;
        let folded = self.folded.build().map_err(error)?;
        let folded = (!folded_regexes.is_empty()).then(|| {
            Box::new(Folded {
                literals: folded,
                regexes: folded_regexes,
            })
        });
        self.numbers.finish();
        self.numbers_or_strings.finish();
        let reads_text = !literals.is_empty()
            || folded.is_some()
            || !regexes.is_empty()
            || !self.ignore_case.is_empty()
            || !self.anything_but.targets.is_empty()
            || !self.networks.v4.is_empty()
            || !self.networks.v6.is_empty();
        Ok(FieldIndex {
            path,
            literals,
            folded,
            regexes,
            ignore_case: compact(self.ignore_case),
            present: self.present,
            absent: self.absent,
            numbers: self.numbers,
            numbers_or_strings: self.numbers_or_strings,
            anything_but: self.anything_but,
            networks: self.networks,
            reads_text,
        })
    }
}

/// Distinct sources with their targets, compiled in groups whose DFA stays
/// within bounds.
fn regex_groups(sources: BTreeMap<String, Vec<u32>>) -> Result<RegexGroups, String> {
    let (sources, targets): (Vec<String>, Vec<Vec<u32>>) = sources.into_iter().unzip();
    let sources: Vec<&str> = sources.iter().map(String::as_str).collect();
    crate::complexity::groups(&sources)
        .into_iter()
        .map(|range| {
            let set_ = RegexSetBuilder::new(&sources[range.clone()])
                .size_limit(SET_SIZE_LIMIT)
                .dfa_size_limit(SET_DFA_LIMIT)
                .build()
                .map_err(|e| e.to_string())?;
            Ok((set_, targets[range].to_vec()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(bounds: &[(Cmp, f64)]) -> Option<Interval> {
        Interval::of(bounds, 0)
    }

    #[test]
    fn comparisons_become_the_interval_they_take() {
        let i = interval(&[(Cmp::Ge, 10.0), (Cmp::Lt, 20.0)]).unwrap();
        assert!(i.contains(10.0) && i.contains(19.99) && !i.contains(20.0) && !i.contains(9.0));
        let eq = interval(&[(Cmp::Eq, 5.0)]).unwrap();
        assert!(eq.contains(5.0) && !eq.contains(5.0001));
        let gt = interval(&[(Cmp::Gt, -1.0)]).unwrap();
        assert!(gt.contains(0.0) && !gt.contains(-1.0) && gt.contains(f64::MAX));
        // Two lower bounds: the tighter holds.
        let both = interval(&[(Cmp::Gt, 1.0), (Cmp::Ge, 1.0)]).unwrap();
        assert!(!both.contains(1.0) && both.contains(1.5));
        assert!(interval(&[(Cmp::Gt, 5.0), (Cmp::Lt, 3.0)]).is_none());
        assert!(interval(&[(Cmp::Gt, 5.0), (Cmp::Le, 5.0)]).is_none());
        assert!(interval(&[(Cmp::Eq, 5.0), (Cmp::Eq, 6.0)]).is_none());
        assert!(interval(&[(Cmp::Ge, 5.0), (Cmp::Le, 5.0)]).is_some());
    }

    #[test]
    fn the_interval_tree_finds_exactly_the_intervals_that_hold() {
        let mut rng = fastrand::Rng::with_seed(3);
        for round in 0..200 {
            let mut tree = Intervals::default();
            let n = rng.usize(0..60);
            for target in 0..n as u32 {
                let a = rng.i32(-20..20) as f64;
                let b = a + rng.i32(0..15) as f64;
                let bounds = match rng.u8(0..4) {
                    0 => vec![(Cmp::Ge, a)],
                    1 => vec![(Cmp::Lt, b)],
                    2 => vec![(Cmp::Eq, a)],
                    _ => vec![
                        (if rng.bool() { Cmp::Gt } else { Cmp::Ge }, a),
                        (if rng.bool() { Cmp::Lt } else { Cmp::Le }, b),
                    ],
                };
                tree.items.extend(Interval::of(&bounds, target));
            }
            let plain = tree.items.clone();
            tree.finish();
            for x in -25..40 {
                let x = x as f64 / 2.0;
                let mut hits = Hits::default();
                hits.reset(n.max(1));
                tree.mark(x, &mut hits);
                let mut found = Vec::new();
                hits.drain(n, &mut found);
                let mut want: Vec<usize> = plain
                    .iter()
                    .filter(|i| i.contains(x))
                    .map(|i| i.target as usize)
                    .collect();
                want.sort_unstable();
                assert_eq!(found, want, "round {round}, x = {x}");
            }
        }
    }

    #[test]
    fn networks_match_by_their_leading_bits() {
        let mut n = Networks::default();
        n.insert("10.0.0.0".parse().unwrap(), 8, 0);
        n.insert("10.1.0.0".parse().unwrap(), 16, 1);
        n.insert("0.0.0.0".parse().unwrap(), 0, 2);
        n.insert("fd00::".parse().unwrap(), 8, 3);
        n.insert("192.168.1.7".parse().unwrap(), 32, 4);
        let found = |text: &str| {
            let mut hits = Hits::default();
            hits.reset(5);
            n.mark(text, &mut hits);
            let mut out = Vec::new();
            hits.drain(5, &mut out);
            out
        };
        assert_eq!(found("10.1.2.3"), [0, 1, 2]);
        assert_eq!(found("10.2.2.3"), [0, 2]);
        assert_eq!(found("192.168.1.7"), [2, 4]);
        assert_eq!(found("fdab::1"), [3]);
        assert!(found("fe80::1").is_empty());
        assert!(found("not an address").is_empty());
    }

    #[test]
    fn anything_but_leaves_out_only_who_lists_the_text() {
        let mut a = AnythingBut::default();
        a.insert(&["x".into(), "y".into()], 0);
        a.insert(&["y".into()], 1);
        a.insert(&["z".into(), "z".into()], 2);
        // Two conditions of one queue: either holding takes it.
        a.insert(&["w".into()], 3);
        a.insert(&["x".into()], 3);
        let found = |text: &str| {
            let mut hits = Hits::default();
            hits.reset(4);
            a.mark(text, &mut hits);
            let mut out = Vec::new();
            hits.drain(4, &mut out);
            out
        };
        assert_eq!(found("x"), [1, 2, 3]);
        assert_eq!(found("y"), [2, 3]);
        assert_eq!(found("z"), [0, 1, 3]);
        assert_eq!(found("w"), [0, 1, 2, 3]);
    }
}
