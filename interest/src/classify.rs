//! Turns a pattern into literal searches where that is exact.
//!
//! Most interests are a literal or a few alternatives, perhaps anchored at one
//! end, perhaps padded with `.*` (`^user\.`, `@example\.com$`, `^(eu|us)-west$`,
//! `.*evan.*`). Such a pattern matches exactly when one of its literals occurs
//! at a position that satisfies its anchors, and one Aho-Corasick scan over a
//! field's value finds every literal of every queue at once. Small classes
//! and short bounded repetitions expand into their literals (`[0-9]{2}` is a
//! hundred). Anything else (unbounded repetitions, big classes, word
//! boundaries, multi-line mode) goes to a regex set.

use regex_syntax::hir::{Class, Hir, HirKind, Look};

/// A pattern's literal bytes may not expand past this many alternatives:
/// enough for two digits (`[0-9]{2}`), and a bound on what one pattern's
/// literals cost in the tables (about 100 bytes each).
const MAX_LITERALS: usize = 128;
/// A class is expanded into its characters only when it is this small.
const MAX_CLASS_CHARS: usize = 16;
/// A bounded repetition is expanded only up to this many times, so that a
/// single literal repeated (`a{5000}`) does not become a long one.
const MAX_REPEAT: u32 = 16;

/// Where a literal's match may start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StartRule {
    /// Anywhere.
    Any,
    /// At the start of the value (`^lit`).
    AtStart,
    /// Before the value's first newline (`^.*lit`: `.` does not match `\n`).
    FirstLine,
}

/// Where a literal's match may end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndRule {
    Any,
    /// At the end of the value (`lit$`).
    AtEnd,
    /// After the value's last newline (`lit.*$`).
    LastLine,
}

/// A pattern that matches exactly when one of `literals` occurs where the rules
/// allow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LiteralForm {
    pub literals: Vec<Vec<u8>>,
    pub start: StartRule,
    pub end: EndRule,
}

/// The literal form of a pattern, or `None` when only a regex engine can
/// answer it exactly.
pub(crate) fn literal_form(pattern: &str) -> Option<LiteralForm> {
    form_of(&regex_syntax::parse(pattern).ok()?, false)
}

/// How a field's index answers a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Form {
    /// By its literals.
    Literal(LiteralForm),
    /// By these literals for ASCII text, lower-cased; by the regex for
    /// other text. A pattern has this form when it has case-insensitive
    /// letters (`(?i)`) and no case-sensitive ones: an ASCII text matches
    /// it exactly when its lower-cased bytes match the literals. Only ASCII
    /// text: Unicode folding also takes `K` (U+212A) for `k` and `ſ`
    /// (U+017F) for `s`, which lower-casing does not.
    Folded(LiteralForm),
    /// By the regex alone.
    Regex,
}

/// The pattern's form, parsing it once.
pub(crate) fn classify(pattern: &str) -> Form {
    let Ok(hir) = regex_syntax::parse(pattern) else {
        return Form::Regex;
    };
    if let Some(form) = form_of(&hir, false) {
        Form::Literal(form)
    } else if let Some(form) = form_of(&hir, true) {
        Form::Folded(form)
    } else {
        Form::Regex
    }
}

fn form_of(hir: &Hir, fold: bool) -> Option<LiteralForm> {
    let mut items: Vec<&Hir> = match strip_captures(hir).kind() {
        HirKind::Concat(items) => items.iter().collect(),
        _ => vec![strip_captures(hir)],
    };
    let anchored_start = matches!(
        items.first().map(|h| h.kind()),
        Some(HirKind::Look(Look::Start))
    );
    if anchored_start {
        items.remove(0);
    }
    let anchored_end = matches!(
        items.last().map(|h| h.kind()),
        Some(HirKind::Look(Look::End))
    );
    if anchored_end {
        items.pop();
    }
    let mut lead = Dots::None;
    while let Some(d) = items.first().and_then(|h| dot_star(h)) {
        lead = lead.join(d);
        items.remove(0);
    }
    let mut trail = Dots::None;
    while let Some(d) = items.last().and_then(|h| dot_star(h)) {
        trail = trail.join(d);
        items.pop();
    }
    let start = match (anchored_start, lead) {
        (false, _) | (true, Dots::All) => StartRule::Any,
        (true, Dots::None) => StartRule::AtStart,
        (true, Dots::NoNewline) => StartRule::FirstLine,
    };
    let end = match (anchored_end, trail) {
        (false, _) | (true, Dots::All) => EndRule::Any,
        (true, Dots::None) => EndRule::AtEnd,
        (true, Dots::NoNewline) => EndRule::LastLine,
    };
    let mut literals = vec![Vec::new()];
    for item in items {
        literals = concat(literals, &literal_set(item, fold)?)?;
    }
    literals.sort();
    literals.dedup();
    Some(LiteralForm {
        literals,
        start,
        end,
    })
}

/// What a run of `.*` at one end of a pattern may cross.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dots {
    None,
    NoNewline,
    All,
}

impl Dots {
    fn join(self, other: Dots) -> Dots {
        match (self, other) {
            (Dots::All, _) | (_, Dots::All) => Dots::All,
            _ => Dots::NoNewline,
        }
    }
}

fn strip_captures(mut hir: &Hir) -> &Hir {
    while let HirKind::Capture(c) = hir.kind() {
        hir = &c.sub;
    }
    hir
}

/// Whether `hir` is `.*` (any run of characters but newline) or `(?s).*`.
fn dot_star(hir: &Hir) -> Option<Dots> {
    let HirKind::Repetition(rep) = strip_captures(hir).kind() else {
        return None;
    };
    if rep.min != 0 || rep.max.is_some() {
        return None;
    }
    let HirKind::Class(Class::Unicode(class)) = strip_captures(&rep.sub).kind() else {
        return None;
    };
    let ranges: Vec<(char, char)> = class
        .ranges()
        .iter()
        .map(|r| (r.start(), r.end()))
        .collect();
    match ranges.as_slice() {
        [('\0', '\u{10FFFF}')] => Some(Dots::All),
        [('\0', '\t'), ('\u{b}', '\u{10FFFF}')] => Some(Dots::NoNewline),
        _ => None,
    }
}

/// The finite set of strings `hir` matches, when it is small; folded (see
/// `Form::Folded`), the set of lower-cased ASCII strings it matches.
fn literal_set(hir: &Hir, fold: bool) -> Option<Vec<Vec<u8>>> {
    match hir.kind() {
        HirKind::Empty => Some(vec![Vec::new()]),
        // A letter written as such is case-sensitive: lower-casing the text
        // would take what it refuses.
        HirKind::Literal(lit) if fold => lit
            .0
            .iter()
            .all(|b| b.is_ascii() && !b.is_ascii_alphabetic())
            .then(|| vec![lit.0.to_vec()]),
        HirKind::Literal(lit) => Some(vec![lit.0.to_vec()]),
        HirKind::Class(Class::Unicode(class)) if fold => {
            let ascii: Vec<u8> = class
                .ranges()
                .iter()
                .filter(|r| r.start().is_ascii())
                .flat_map(|r| r.start() as u8..=(r.end().min('\x7f') as u8))
                .collect();
            // Every letter with its other case, or lower-casing would take
            // a case the class refuses.
            let closed = ascii.iter().all(|b| {
                !b.is_ascii_alphabetic()
                    || ascii.contains(&b.to_ascii_lowercase())
                        && ascii.contains(&b.to_ascii_uppercase())
            });
            if !closed {
                return None;
            }
            let mut lowered: Vec<u8> = ascii.iter().map(u8::to_ascii_lowercase).collect();
            lowered.sort_unstable();
            lowered.dedup();
            (!lowered.is_empty() && lowered.len() <= MAX_CLASS_CHARS)
                .then(|| lowered.into_iter().map(|b| vec![b]).collect())
        }
        HirKind::Class(Class::Unicode(class)) => {
            let count: u32 = class
                .ranges()
                .iter()
                .map(|r| r.end() as u32 - r.start() as u32 + 1)
                .sum();
            if count as usize > MAX_CLASS_CHARS {
                return None;
            }
            let mut out = Vec::new();
            for r in class.ranges() {
                for c in r.start()..=r.end() {
                    out.push(c.to_string().into_bytes());
                }
            }
            Some(out)
        }
        HirKind::Capture(c) => literal_set(&c.sub, fold),
        HirKind::Concat(items) => {
            let mut acc = vec![Vec::new()];
            for item in items {
                acc = concat(acc, &literal_set(item, fold)?)?;
            }
            Some(acc)
        }
        HirKind::Alternation(alts) => {
            let mut out = Vec::new();
            for alt in alts {
                out.extend(literal_set(alt, fold)?);
                if out.len() > MAX_LITERALS {
                    return None;
                }
            }
            Some(out)
        }
        // `[0-9]{2}`, `x?`, `(ab){1,3}`: every count from min to max.
        HirKind::Repetition(rep) => {
            let max = rep.max.filter(|&m| m <= MAX_REPEAT)?;
            let one = literal_set(&rep.sub, fold)?;
            let mut power = vec![Vec::new()];
            let mut out = Vec::new();
            for count in 0..=max {
                if count >= rep.min {
                    out.extend(power.iter().cloned());
                    if out.len() > MAX_LITERALS {
                        return None;
                    }
                }
                if count < max {
                    power = concat(power, &one)?;
                    power.sort_unstable();
                    power.dedup();
                }
            }
            out.sort_unstable();
            out.dedup();
            Some(out)
        }
        // Byte classes and assertions inside a pattern are left to the regex
        // engine.
        HirKind::Class(Class::Bytes(_)) | HirKind::Look(_) => None,
    }
}

fn concat(prefixes: Vec<Vec<u8>>, suffixes: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
    if prefixes.len() * suffixes.len() > MAX_LITERALS {
        return None;
    }
    let mut out = Vec::with_capacity(prefixes.len() * suffixes.len());
    for p in &prefixes {
        for s in suffixes {
            let mut joined = p.clone();
            joined.extend_from_slice(s);
            out.push(joined);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Shown = Option<(Vec<String>, StartRule, EndRule)>;

    fn shown(form: Option<LiteralForm>) -> Shown {
        form.map(|f| {
            (
                f.literals
                    .into_iter()
                    .map(|l| String::from_utf8(l).unwrap())
                    .collect(),
                f.start,
                f.end,
            )
        })
    }

    fn form(p: &str) -> Shown {
        shown(literal_form(p))
    }

    fn folded(p: &str) -> Shown {
        shown(form_of(&regex_syntax::parse(p).unwrap(), true))
    }

    fn lits(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn common_shapes_become_literals() {
        use EndRule as E;
        use StartRule as S;
        assert_eq!(form("evan"), Some((lits(&["evan"]), S::Any, E::Any)));
        assert_eq!(form(".*evan.*"), Some((lits(&["evan"]), S::Any, E::Any)));
        assert_eq!(
            form("^.*evan.*"),
            Some((lits(&["evan"]), S::FirstLine, E::Any))
        );
        assert_eq!(
            form(r"^user\."),
            Some((lits(&["user."]), S::AtStart, E::Any))
        );
        assert_eq!(
            form(r"@x\.com$"),
            Some((lits(&["@x.com"]), S::Any, E::AtEnd))
        );
        assert_eq!(
            form("^(eu|us)-west$"),
            Some((lits(&["eu-west", "us-west"]), S::AtStart, E::AtEnd))
        );
        assert_eq!(form("(?s)^.*a"), Some((lits(&["a"]), S::Any, E::Any)));
        assert_eq!(form("a.*$"), Some((lits(&["a"]), S::Any, E::LastLine)));
        assert_eq!(form("^.*"), Some((lits(&[""]), S::FirstLine, E::Any)));
        assert_eq!(form("^$"), Some((lits(&[""]), S::AtStart, E::AtEnd)));
        assert_eq!(
            form("^[ab]c"),
            Some((lits(&["ac", "bc"]), S::AtStart, E::Any))
        );
    }

    #[test]
    fn bounded_repetitions_expand_into_every_count() {
        use EndRule as E;
        use StartRule as S;
        let (two_digits, start, end) = form("^web-[0-9]{2}07$").unwrap();
        assert_eq!((two_digits.len(), start, end), (100, S::AtStart, E::AtEnd));
        assert_eq!(two_digits[0], "web-0007");
        assert_eq!(two_digits[99], "web-9907");
        assert_eq!(
            form("^ax?$"),
            Some((lits(&["a", "ax"]), S::AtStart, E::AtEnd))
        );
        assert_eq!(
            form("(ab){1,3}c"),
            Some((lits(&["abababc", "ababc", "abc"]), S::Any, E::Any))
        );
        // Overlapping alternatives repeat into one literal each.
        assert_eq!(
            form("^(a|aa){2}$"),
            Some((lits(&["aa", "aaa", "aaaa"]), S::AtStart, E::AtEnd))
        );
        assert_eq!(
            folded("(?i)^ID-[0-9]{1,2}$").map(|(l, _, _)| l.len()),
            Some(110)
        );
        // Past the bounds: a regex.
        for p in ["[0-9]{3}", "a{17}", "[0-9]{0,3}", "a{2,}", "(?i)[a-z]{2}"] {
            assert_eq!(form(p).or_else(|| folded(p)), None, "{p}");
        }
    }

    #[test]
    fn case_insensitive_letters_fold_to_lower_case_for_ascii_text() {
        use EndRule as E;
        use StartRule as S;
        assert_eq!(literal_form("(?i)^pro-YEARLY-(usd|eur)$"), None);
        assert_eq!(
            folded("(?i)^pro-YEARLY-(usd|eur)$"),
            Some((
                lits(&["pro-yearly-eur", "pro-yearly-usd"]),
                S::AtStart,
                E::AtEnd
            ))
        );
        // `k` and `s` fold to two non-ASCII letters as well: still one.
        assert_eq!(folded("(?i)ks"), Some((lits(&["ks"]), S::Any, E::Any)));
        assert_eq!(
            folded("(?i)^[a-b]9"),
            Some((lits(&["a9", "b9"]), S::AtStart, E::Any))
        );
        // Both cases written out are a case-insensitive letter too.
        assert_eq!(folded("[pP]x?"), None);
        assert_eq!(
            folded("^[pP][Qq]$"),
            Some((lits(&["pq"]), S::AtStart, E::AtEnd))
        );
        // A letter of one case is case-sensitive: no folded form.
        for p in [
            "(?i:a)B",
            "(?i)a(?-i:[B])",
            "(?i)a(?-i)b",
            "(?i)k(?-i:S)",
            "[pQ]",
            "(?i)a+",
            "(?i)é",
        ] {
            assert_eq!(folded(p), None, "{p}");
        }
    }

    #[test]
    fn other_shapes_are_left_to_the_regex_engine() {
        for p in [
            r"^\d+$",
            "a+",
            r"\bword\b",
            "(?m)^a$",
            "a.b",
            "[a-z]{3}",
            "(?-u:\\xFF)",
        ] {
            assert_eq!(form(p), None, "{p}");
        }
    }
}
