//! Patterns in their literal form (see `classify`), filed by where their
//! literals must stand: whole values and affixes in hash maps, literals
//! anywhere in one Aho-Corasick automaton.

use std::collections::{BTreeMap, HashMap};

use aho_corasick::{AhoCorasick, MatchKind};

use crate::classify::{EndRule, LiteralForm, StartRule};
use crate::hits::Hits;

/// Seeded per process, so that nobody can choose keys that collide.
pub(crate) type Hashed<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The targets of one entry of a table. Most literals belong to one queue,
/// so one is kept in place: about 40 bytes less per literal than a `Vec`.
#[derive(Debug)]
pub(crate) enum Targets {
    One(u32),
    Many(Box<[u32]>),
}

impl Targets {
    pub fn as_slice(&self) -> &[u32] {
        match self {
            Targets::One(t) => std::slice::from_ref(t),
            Targets::Many(all) => all,
        }
    }
}

impl From<Vec<u32>> for Targets {
    fn from(targets: Vec<u32>) -> Self {
        match targets.as_slice() {
            [one] => Targets::One(*one),
            _ => Targets::Many(targets.into_boxed_slice()),
        }
    }
}

/// A table's entries with their targets compacted, once nothing is added.
pub(crate) fn compact<K: Eq + std::hash::Hash>(table: Hashed<K, Vec<u32>>) -> Hashed<K, Targets> {
    let mut out = Hashed::with_capacity_and_hasher(table.len(), Default::default());
    out.extend(table.into_iter().map(|(k, v)| (k, Targets::from(v))));
    out
}

/// Literal forms, each literal with the targets that asked for it.
#[derive(Debug, Default)]
pub(crate) struct Literals {
    /// `^lit$`: the whole text, to its targets.
    exact: Hashed<Box<[u8]>, Targets>,
    /// `^lit` and `prefix`.
    prefixes: Affixes,
    /// `lit$` and `suffix`.
    suffixes: Affixes,
    /// Every other non-empty literal: one automaton over all of them.
    automaton: Option<AhoCorasick>,
    /// For each automaton pattern: which targets it stands for, under which
    /// rules.
    automaton_hits: Vec<Vec<LiteralHit>>,
    /// Patterns whose literal is the empty string (`.*`, `^$`).
    empty_hits: Vec<LiteralHit>,
}

impl Literals {
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty()
            && self.prefixes.lengths.is_empty()
            && self.suffixes.lengths.is_empty()
            && self.automaton.is_none()
            && self.empty_hits.is_empty()
    }

    /// Marks the targets of every literal that stands in `text` where its
    /// rules allow.
    pub fn mark(&self, text: &str, hits: &mut Hits) {
        let bytes = text.as_bytes();
        if let Some(targets) = self.exact.get(bytes) {
            hits.set_all(targets.as_slice());
        }
        self.prefixes
            .each(bytes, |len| &bytes[..len], |t| hits.set_all(t));
        self.suffixes.each(
            bytes,
            |len| &bytes[bytes.len() - len..],
            |t| hits.set_all(t),
        );
        if let Some(ac) = &self.automaton {
            let lines = Lines::of(text);
            for m in ac.find_overlapping_iter(text) {
                for h in &self.automaton_hits[m.pattern().as_usize()] {
                    if !hits.is_set(h.target) && lines.allows(h, m.start(), m.end()) {
                        hits.set(h.target);
                    }
                }
            }
        }
        if !self.empty_hits.is_empty() {
            let lines = Lines::of(text);
            for h in &self.empty_hits {
                if !hits.is_set(h.target) && lines.allows_empty(h) {
                    hits.set(h.target);
                }
            }
        }
    }

    /// The bytes a text of `len` bytes hashes for its prefixes and suffixes.
    pub fn affix_bytes(&self, len: usize) -> usize {
        self.prefixes
            .lengths
            .iter()
            .chain(&self.suffixes.lengths)
            .map(|&l| l.min(len))
            .sum()
    }

    /// How many lengths of affix a text is hashed at.
    pub fn affix_lengths(&self) -> usize {
        self.prefixes.lengths.len() + self.suffixes.lengths.len()
    }
}

/// Collects literal forms, then builds [`Literals`].
#[derive(Debug, Default)]
pub(crate) struct LiteralsBuilder {
    exact: Hashed<Box<[u8]>, Vec<u32>>,
    prefixes: Hashed<Box<[u8]>, Vec<u32>>,
    suffixes: Hashed<Box<[u8]>, Vec<u32>>,
    automaton: BTreeMap<Vec<u8>, Vec<LiteralHit>>,
    empty_hits: Vec<LiteralHit>,
}

impl LiteralsBuilder {
    pub fn add_form(&mut self, form: LiteralForm, target: u32) {
        for literal in form.literals {
            let hit = LiteralHit {
                target,
                start: form.start,
                end: form.end,
            };
            match (literal.is_empty(), form.start, form.end) {
                (true, _, _) => self.empty_hits.push(hit),
                (false, StartRule::AtStart, EndRule::AtEnd) => push_once(
                    self.exact.entry(literal.into_boxed_slice()).or_default(),
                    target,
                ),
                (false, StartRule::AtStart, EndRule::Any) => self.add_prefix(literal, target),
                (false, StartRule::Any, EndRule::AtEnd) => self.add_suffix(literal, target),
                (false, _, _) => self.automaton.entry(literal).or_default().push(hit),
            }
        }
    }

    /// A non-empty prefix.
    pub fn add_prefix(&mut self, prefix: Vec<u8>, target: u32) {
        push_once(
            self.prefixes.entry(prefix.into_boxed_slice()).or_default(),
            target,
        )
    }

    /// A non-empty suffix.
    pub fn add_suffix(&mut self, suffix: Vec<u8>, target: u32) {
        push_once(
            self.suffixes.entry(suffix.into_boxed_slice()).or_default(),
            target,
        )
    }

    pub fn build(self) -> Result<Literals, String> {
        let (patterns, automaton_hits): (Vec<Vec<u8>>, Vec<Vec<LiteralHit>>) =
            self.automaton.into_iter().unzip();
        let automaton = if patterns.is_empty() {
            None
        } else {
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .build(&patterns)
                    .map_err(|e| e.to_string())?,
            )
        };
        Ok(Literals {
            exact: compact(self.exact),
            prefixes: Affixes::of(self.prefixes),
            suffixes: Affixes::of(self.suffixes),
            automaton,
            automaton_hits,
            empty_hits: self.empty_hits,
        })
    }
}

/// A target asks for the same condition once when its alternatives name it
/// twice in a row; a repeat further apart only marks it twice.
pub(crate) fn push_once(targets: &mut Vec<u32>, target: u32) {
    if targets.last() != Some(&target) {
        targets.push(target);
    }
}

#[derive(Debug, Clone, Copy)]
struct LiteralHit {
    target: u32,
    start: StartRule,
    end: EndRule,
}

/// Prefixes (or suffixes) by their text, with the lengths that occur: a value
/// is looked up once per distinct length, however many queues.
#[derive(Debug, Default)]
struct Affixes {
    by_text: Hashed<Box<[u8]>, Targets>,
    /// Ascending.
    lengths: Vec<usize>,
}

impl Affixes {
    fn of(by_text: Hashed<Box<[u8]>, Vec<u32>>) -> Self {
        let mut lengths: Vec<usize> = by_text.keys().map(|k| k.len()).collect();
        lengths.sort_unstable();
        lengths.dedup();
        Self {
            by_text: compact(by_text),
            lengths,
        }
    }

    fn each<'t>(&self, text: &'t [u8], cut: impl Fn(usize) -> &'t [u8], mut f: impl FnMut(&[u32])) {
        for &len in &self.lengths {
            if len > text.len() {
                break;
            }
            if let Some(targets) = self.by_text.get(cut(len)) {
                f(targets.as_slice());
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
