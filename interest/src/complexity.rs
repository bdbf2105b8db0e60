//! What a pattern may cost to match. The `regex` crate runs in linear time,
//! but its constant is the size of the automaton: patterns whose lazily
//! built DFA keeps outgrowing its cache (counted repetitions of wide
//! classes, `[a-z ]{100}q[a-z ]{200}[0-9]`) fall back to simulating the NFA,
//! at a cost of every state for every byte. Two hundred such patterns on one
//! field made a 2,000-byte value take half a second to route.
//!
//! So each pattern is *probed*: its DFA, with a bounded cache, scans a
//! synthetic value made of the characters the pattern itself names; a
//! pattern whose DFA gives up there is refused. And the patterns of a field
//! are grouped so that each group's DFA passes the same probe: routing a
//! value then costs its length times the number of groups, each scanned by a
//! DFA that stays within its cache.

use regex_automata::hybrid::dfa::{OverlappingState, DFA};
use regex_automata::{Input, MatchKind};
use regex_syntax::hir::{Class, Hir, HirKind};

/// Bytes of the synthetic value a probe scans.
const PROBE_BYTES: usize = 32 << 10;
/// The DFA cache a probe allows; routing gives its sets far more.
const PROBE_CACHE: usize = 512 << 10;
/// Cache clears before a probe counts the DFA as given up.
const PROBE_CLEARS: usize = 3;
/// Ordinary text, the other probe's alphabet.
const TEXT: &str = " abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,-_@:/\n ";

/// Whether these patterns, matched together, stay within a bounded DFA on
/// values built to stress them: one of the characters the patterns name,
/// one of ordinary text.
pub(crate) fn well_behaved(patterns: &[&str]) -> bool {
    let dfa = DFA::builder()
        .configure(
            DFA::config()
                .match_kind(MatchKind::All)
                .unicode_word_boundary(true)
                .cache_capacity(PROBE_CACHE)
                .minimum_cache_clear_count(Some(PROBE_CLEARS)),
        )
        .build_many(patterns);
    // Too large to build within the cache at all: not well behaved.
    let Ok(dfa) = dfa else {
        return false;
    };
    let text: Vec<char> = TEXT.chars().collect();
    let behaved = scans_within_cache(&dfa, &near_matches(patterns))
        && scans_within_cache(&dfa, &probe_value(&text))
        && alphabets(patterns)
            .iter()
            .all(|alphabet| scans_within_cache(&dfa, &probe_value(alphabet)));
    behaved
}

/// Text made of strings each of the patterns matches, or nearly: what keeps
/// the most of an automaton's states alive at once. Each piece is generated
/// from a pattern (a class gives one of its characters, a repetition a count
/// within its bounds), and one byte in 64 is then changed at random.
fn near_matches(patterns: &[&str]) -> Vec<u8> {
    let parsed: Vec<Hir> = patterns
        .iter()
        .filter_map(|p| regex_syntax::parse(p).ok())
        .collect();
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut out = Vec::with_capacity(PROBE_BYTES + 256);
    if parsed.is_empty() {
        return out;
    }
    let noise = TEXT.as_bytes();
    while out.len() < PROBE_BYTES {
        let hir = &parsed[rng.below(parsed.len())];
        let start = out.len();
        generate(hir, &mut rng, &mut out, 0);
        for b in &mut out[start..] {
            if rng.below(64) == 0 && b.is_ascii() {
                *b = noise[rng.below(noise.len())];
            }
        }
        if out.len() == start {
            out.push(noise[rng.below(noise.len())]);
        }
    }
    out
}

/// Appends one string `hir` matches (or would, but for its anchors).
fn generate(hir: &Hir, rng: &mut Rng, out: &mut Vec<u8>, depth: usize) {
    // Deeply nested patterns are cut off: the probe needs text, not
    // completeness.
    if depth > 32 || out.len() > PROBE_BYTES + 128 {
        return;
    }
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => {}
        HirKind::Literal(lit) => out.extend_from_slice(&lit.0),
        HirKind::Class(Class::Unicode(c)) => {
            let ranges = c.ranges();
            if let Some(r) = ranges.get(rng.below(ranges.len().max(1))) {
                let span = r.end() as u32 - r.start() as u32 + 1;
                let c = char::from_u32(r.start() as u32 + rng.below(span as usize) as u32)
                    .unwrap_or(r.start());
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
        HirKind::Class(Class::Bytes(c)) => {
            let ranges = c.ranges();
            if let Some(r) = ranges.get(rng.below(ranges.len().max(1))) {
                let span = r.end() as usize - r.start() as usize + 1;
                out.push(r.start() + rng.below(span) as u8);
            }
        }
        HirKind::Repetition(r) => {
            let min = r.min as usize;
            let max = r.max.map_or(min + 16, |m| (m as usize).min(min + 16));
            for _ in 0..min + rng.below(max - min + 1) {
                generate(&r.sub, rng, out, depth + 1);
            }
        }
        HirKind::Capture(c) => generate(&c.sub, rng, out, depth + 1),
        HirKind::Concat(items) => {
            for item in items {
                generate(item, rng, out, depth + 1);
            }
        }
        HirKind::Alternation(items) => {
            if !items.is_empty() {
                generate(&items[rng.below(items.len())], rng, out, depth + 1);
            }
        }
    }
}

/// xorshift: fixed, so that a pattern is judged the same every time.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

/// Whether one overlapping scan of `hay` (as a regex set's `matches` does)
/// keeps the DFA within its cache.
fn scans_within_cache(dfa: &DFA, hay: &[u8]) -> bool {
    let mut cache = dfa.create_cache();
    let input = Input::new(hay);
    let mut state = OverlappingState::start();
    loop {
        match dfa.try_search_overlapping_fwd(&mut cache, &input, &mut state) {
            // A byte the DFA cannot decide on (a Unicode word boundary next
            // to non-ASCII text): the regex engine answers those with its
            // NFA engines, bounded by the pattern's compiled size.
            Err(e) if matches!(e.kind(), regex_automata::MatchErrorKind::Quit { .. }) => {
                return true
            }
            Err(_) => return false,
            Ok(()) if state.get_match().is_none() => return true,
            Ok(()) => {}
        }
    }
}

/// The characters the patterns name, a group per literal or class: the
/// alphabets to probe with are all of them, and all but one group at a time
/// (a class that only ends a match, say, would otherwise keep breaking the
/// runs the rest of the pattern counts).
fn alphabets(patterns: &[&str]) -> Vec<Vec<char>> {
    let mut groups: Vec<Vec<char>> = Vec::new();
    for p in patterns {
        if let Ok(hir) = regex_syntax::parse(p) {
            collect_groups(&hir, &mut groups);
        }
    }
    for g in &mut groups {
        g.sort_unstable();
        g.dedup();
    }
    groups.sort();
    groups.dedup();
    groups.truncate(MAX_GROUPS);
    let join = |skip: Option<usize>| -> Vec<char> {
        let mut chars: Vec<char> = groups
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != skip)
            .flat_map(|(_, g)| g.iter().copied())
            .collect();
        chars.sort_unstable();
        chars.dedup();
        chars
    };
    let mut out = vec![join(None)];
    if groups.len() > 1 {
        out.extend((0..groups.len()).map(|i| join(Some(i))));
    }
    out.retain(|a| !a.is_empty());
    if out.is_empty() {
        out.push(TEXT.chars().collect());
    }
    out
}

/// Groups of characters taken from one pattern's literals and classes.
const MAX_GROUPS: usize = 6;

/// `PROBE_BYTES` of characters from `alphabet`, in a fixed pseudo-random
/// order.
fn probe_value(alphabet: &[char]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PROBE_BYTES + 4);
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = [0u8; 4];
    while out.len() < PROBE_BYTES {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let c = alphabet[(seed % alphabet.len() as u64) as usize];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
    out
}

/// At most this many characters are taken from one pattern.
const CHARS_PER_PATTERN: usize = 96;

fn collect_groups(hir: &Hir, out: &mut Vec<Vec<char>>) {
    let mut taken = 0;
    let mut stack = vec![hir];
    while let Some(h) = stack.pop() {
        if taken >= CHARS_PER_PATTERN {
            return;
        }
        let mut group = Vec::new();
        match h.kind() {
            HirKind::Literal(lit) => {
                group.extend(String::from_utf8_lossy(&lit.0).chars());
            }
            HirKind::Class(Class::Unicode(c)) => {
                for r in c.ranges().iter().take(8) {
                    let (a, b) = (r.start(), r.end());
                    let mid = char::from_u32((a as u32 + b as u32) / 2).unwrap_or(a);
                    group.extend([a, mid, b]);
                }
            }
            HirKind::Class(Class::Bytes(c)) => {
                for r in c.ranges().iter().take(8) {
                    group.extend(
                        [r.start(), r.end()]
                            .into_iter()
                            .filter(u8::is_ascii)
                            .map(char::from),
                    );
                }
            }
            HirKind::Repetition(r) => stack.push(&r.sub),
            HirKind::Capture(c) => stack.push(&c.sub),
            HirKind::Concat(items) | HirKind::Alternation(items) => stack.extend(items.iter()),
            HirKind::Empty | HirKind::Look(_) => {}
        }
        if !group.is_empty() {
            taken += group.len();
            out.push(group);
        }
    }
}

/// An estimate of the automaton a pattern compiles to, in units of about
/// one NFA state: counted repetitions multiply what they repeat.
pub(crate) fn weight(pattern: &str) -> usize {
    fn walk(h: &Hir) -> usize {
        match h.kind() {
            HirKind::Empty | HirKind::Look(_) => 1,
            HirKind::Literal(lit) => lit.0.len(),
            HirKind::Class(Class::Unicode(c)) => c.ranges().len(),
            HirKind::Class(Class::Bytes(c)) => c.ranges().len(),
            HirKind::Repetition(r) => {
                let times = r.max.unwrap_or(r.min).max(r.min).max(1) as usize;
                walk(&r.sub).saturating_mul(times)
            }
            HirKind::Capture(c) => walk(&c.sub),
            HirKind::Concat(items) | HirKind::Alternation(items) => {
                items.iter().map(walk).fold(0, usize::saturating_add)
            }
        }
    }
    regex_syntax::parse(pattern).map_or(1, |h| walk(&h).max(1))
}

/// Whether a pattern could blow up its automaton, and so must be probed:
/// it repeats something more than a few times by count, or is heavy (large
/// classes, as Unicode's `\w`). Plain patterns (`^user-[0-9]+$`) need not.
pub(crate) fn needs_probe(pattern: &str) -> bool {
    fn counted(h: &Hir) -> bool {
        match h.kind() {
            HirKind::Repetition(r) => r.min > 4 || r.max.is_some_and(|m| m > 4) || counted(&r.sub),
            HirKind::Capture(c) => counted(&c.sub),
            HirKind::Concat(items) | HirKind::Alternation(items) => items.iter().any(counted),
            HirKind::Empty | HirKind::Look(_) | HirKind::Literal(_) | HirKind::Class(_) => false,
        }
    }
    weight(pattern) > 256 || regex_syntax::parse(pattern).is_ok_and(|h| counted(&h))
}

/// Probes `pattern` alone, once per distinct pattern text in this process.
pub(crate) fn pattern_well_behaved(pattern: &str) -> bool {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    /// Distinct patterns remembered; past it the memory starts afresh.
    const REMEMBERED: usize = 65_536;
    static SEEN: OnceLock<Mutex<HashMap<String, bool>>> = OnceLock::new();
    let seen = SEEN.get_or_init(Mutex::default);
    if let Some(&known) = seen.lock().unwrap_or_else(|e| e.into_inner()).get(pattern) {
        return known;
    }
    let verdict = !needs_probe(pattern) || well_behaved(&[pattern]);
    let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    if seen.len() >= REMEMBERED {
        seen.clear();
    }
    seen.insert(pattern.to_owned(), verdict);
    verdict
}

/// Most weight one regex set of a field holds: sets are kept small enough
/// that their lazy DFA's states stay cheap to build and fit its cache.
pub(crate) const GROUP_WEIGHT: usize = 16384;

/// Splits `patterns` (by index), in order, into groups of at most
/// [`GROUP_WEIGHT`] (a heavier pattern is a group of its own).
pub(crate) fn groups(patterns: &[&str]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut held = 0;
    for (i, p) in patterns.iter().enumerate() {
        let w = weight(p);
        if i > start && held + w > GROUP_WEIGHT {
            out.push(start..i);
            start = i;
            held = 0;
        }
        held += w;
    }
    if start < patterns.len() {
        out.push(start..patterns.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counted repetitions of wide classes: fine alone, too much together.
    fn counted(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("[a-z ]{{{}}}q[a-z ]{{{}}}[0-9]", 100 + i, 200 + i))
            .collect()
    }

    #[test]
    fn hostile_patterns_are_found_by_their_probe() {
        assert!(well_behaved(&["^user-[0-9]+$"]));
        assert!(well_behaved(&[r"\w+@example\.com", r"\bab\b"]));
        assert!(!well_behaved(&[&counted(1)[0]]));
        assert!(!well_behaved(&["[ab]*a[ab]{20}"]));
    }

    #[test]
    fn only_patterns_that_could_blow_up_are_probed() {
        assert!(!needs_probe("^user-[0-9]+$"));
        assert!(!needs_probe("^web-[0-9]{2}07$"));
        assert!(needs_probe("[ab]*a[ab]{20}"));
        assert!(needs_probe(r"\w+@x"));
        assert!(!pattern_well_behaved("[ab]*a[ab]{20}"));
        assert!(pattern_well_behaved("^user-[0-9]+$"));
    }

    #[test]
    fn heavy_sets_are_split_by_weight() {
        assert_eq!(weight("abc"), 3);
        assert!(weight("[a-z ]{100}q") > 200);
        let patterns = counted(200);
        let refs: Vec<&str> = patterns.iter().map(String::as_str).collect();
        let split = groups(&refs);
        assert!(split.len() > 10, "{split:?}");
        assert_eq!(split.iter().map(|g| g.len()).sum::<usize>(), 200);
        let light: Vec<String> = (0..500).map(|i| format!("^x{i}[0-9]+$")).collect();
        let refs: Vec<&str> = light.iter().map(String::as_str).collect();
        assert!(groups(&refs).len() <= 3);
    }
}
