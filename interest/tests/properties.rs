//! The compiled matcher against the plain rule, on random interests and tasks.

use interest::{Interests, Limits, Matcher, Router, Sizes};
use proptest::prelude::*;
use serde_json::{Map, Value};

mod common;

/// Pieces that users write, and a few that stress anchors, newlines and
/// classes, combined into patterns.
fn pattern() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        "[ab]{1,3}",
        Just("a|b".to_owned()),
        Just("(ab|ba)".to_owned()),
        Just(".*".to_owned()),
        Just("(?s).*".to_owned()),
        Just("[a-c]".to_owned()),
        Just(r"\d+".to_owned()),
        Just(r"\n".to_owned()),
        Just(r"\b".to_owned()),
        Just("(?i)A".to_owned()),
        // Case-insensitive letters, whose folding takes `K` (U+212A) for
        // `k` and `ſ` (U+017F) for `s`; a case-sensitive one beside them.
        Just("(?i)ks".to_owned()),
        Just("(?i:b)A".to_owned()),
        Just("(?i)[a-b]".to_owned()),
        Just("[kK]".to_owned()),
        // Bounded repetitions, expanded into literals when small.
        Just("[ab]{2}".to_owned()),
        Just("(ab|a){0,2}".to_owned()),
        Just("b?".to_owned()),
        Just("(?i)k{1,2}".to_owned()),
        Just("".to_owned()),
    ];
    anchored("", atom, 1..4)
}

/// `flags`, then some of `atoms` in a row, perhaps anchored at either end.
fn anchored(
    flags: &'static str,
    atom: impl Strategy<Value = String>,
    count: std::ops::Range<usize>,
) -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        prop::collection::vec(atom, count),
        any::<bool>(),
    )
        .prop_map(move |(s, atoms, e)| {
            format!(
                "{flags}{}{}{}",
                if s { "^" } else { "" },
                atoms.concat(),
                if e { "$" } else { "" }
            )
        })
}

/// A case-insensitive pattern, perhaps with a case-sensitive letter, over
/// the folding letters.
fn folding_pattern() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        2 => Just("ks".to_owned()),
        2 => Just("sk".to_owned()),
        2 => Just("(?-i:S)".to_owned()),
        1 => Just("[ak]".to_owned()),
        1 => Just("(kk|a)".to_owned()),
        1 => Just("[ks]{1,2}".to_owned()),
        1 => Just("k?".to_owned()),
        1 => Just("-".to_owned()),
        1 => Just(".*".to_owned()),
    ];
    anchored("(?i)", atom, 2..5)
}

/// One alternative of a field: a regex, or an operator over the same small
/// alphabet the tasks use.
fn alternative() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => pattern().prop_map(Value::from),
        1 => "[ab\n1]{0,2}".prop_map(|p| serde_json::json!({"prefix": p})),
        1 => "[ab1]{0,2}".prop_map(|s| serde_json::json!({"suffix": s})),
        1 => "[aAbB]{0,2}".prop_map(|s| serde_json::json!({"equalsIgnoreCase": s})),
        1 => prop::collection::vec(prop_oneof!["[ab]{0,2}".prop_map(Value::from), (0u32..30).prop_map(Value::from), Just(Value::Bool(true))], 1..3)
            .prop_map(|v| serde_json::json!({"anythingBut": v})),
        1 => (prop::sample::select(vec!["<", "<=", "=", ">=", ">"]), 0u32..30, any::<bool>())
            .prop_map(|(op, n, strings)| serde_json::json!({"numeric": [op, n], "strings": strings})),
        1 => (prop::sample::select(vec![">=", ">", "="]), 0u32..30, prop::sample::select(vec!["<", "<=", "="]), 0u32..30)
            .prop_map(|(a, x, b, y)| serde_json::json!({"numeric": [a, x, b, y]})),
        1 => any::<bool>().prop_map(|b| serde_json::json!({"exists": b})),
        1 => Just(serde_json::json!({"cidr": "10.0.0.0/8"})),
    ]
}

/// An object of fields: OR-wise at the top, a rule (AND) in a list.
fn fields() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(
        prop::sample::select(vec!["f", "g", "h"]),
        field_interest(),
        1..3,
    )
    .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

/// What a field maps to: one alternative, or a list of them.
fn field_interest() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => alternative(),
        1 => prop::collection::vec(alternative(), 1..3).prop_map(Value::Array),
    ]
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[ab\n1]{0,6}".prop_map(Value::from),
        "[ab1]{0,2}".prop_map(Value::from),
        "[aAbBkKsS\u{212A}\u{17F}]{0,4}".prop_map(Value::from),
        Just(Value::from("10.1.2.3")),
        Just(Value::from(" 7")),
        (0u32..30).prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Null),
        prop::collection::vec("[ab]{0,3}", 0..3)
            .prop_map(|v| Value::Array(v.into_iter().map(Value::from).collect())),
    ]
}

fn task() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(prop::sample::select(vec!["f", "g", "h"]), value(), 0..3)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn interests() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => Just(Value::from("*")),
        1 => Just(Value::from("unrouted")),
        9 => fields(),
        4 => prop::collection::vec(fields(), 1..3).prop_map(Value::Array),
    ]
}

/// One step of changes to a router: queues (of ten names) replaced or
/// removed, then perhaps a compaction (carried over from the step before
/// when `rebase`).
#[derive(Debug, Clone)]
struct Step {
    changes: Vec<(usize, Option<Value>)>,
    compact: bool,
    rebase: bool,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    let change = (0usize..10, prop::option::weighted(0.8, interests()));
    let step = (
        prop::collection::vec(change, 1..4),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(changes, compact, rebase)| Step {
            changes,
            compact,
            rebase,
        });
    prop::collection::vec(step, 1..8)
}

fn queues() -> impl Strategy<Value = Vec<(String, Interests)>> {
    let interests = interests();
    prop::collection::vec(interests, 0..8).prop_map(|all| {
        all.into_iter()
            .enumerate()
            .filter_map(|(i, v)| {
                let name = format!("q{i}");
                Interests::parse(&name, &v, &Limits::default())
                    .ok()
                    .map(|x| (name, x))
            })
            .collect()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn compiled_routes_equal_the_plain_loop(queues in queues(), tasks in prop::collection::vec(task(), 1..8)) {
        let matcher = Matcher::build(queues.clone()).unwrap();
        for task in &tasks {
            let expected = interest::route_plainly(&queues, task);
            prop_assert_eq!(matcher.route(task), expected.clone());
            let explained: Vec<&str> = matcher.explain(task).into_iter().map(|e| e.queue).collect();
            prop_assert_eq!(explained, expected);
        }
    }

    #[test]
    fn a_router_changed_step_by_step_routes_like_the_plain_loop(
        queues in queues(),
        steps in steps(),
        tasks in prop::collection::vec(task(), 1..6),
    ) {
        let mut current: std::collections::BTreeMap<String, Interests> = queues.iter().cloned().collect();
        // Tiny levels, so that changes fold into the middle and past it.
        let sizes = Sizes { top: 2, middle: 4, whole: 7 };
        let mut router = Router::build(queues).unwrap().with_sizes(sizes);
        for step in steps {
            let before = router.clone();
            let mut changes = Vec::new();
            for (n, value) in step.changes {
                let name = format!("q{n}");
                let parsed = value.and_then(|v| Interests::parse(&name, &v, &Limits::default()).ok());
                match &parsed {
                    Some(i) => current.insert(name.clone(), i.clone()),
                    None => current.remove(&name),
                };
                changes.push((name, parsed));
            }
            router = router.with_changes(changes).unwrap();
            if step.compact {
                let compacted = before.compacted().unwrap();
                router = if step.rebase {
                    // Stale when the changes compiled every queue anew
                    // meanwhile: the service then keeps what it has.
                    router.rebased(&before, &compacted).unwrap().unwrap_or(router)
                } else {
                    router.compacted().unwrap()
                };
            }
            let plain: Vec<(String, Interests)> = current.clone().into_iter().collect();
            prop_assert_eq!(router.len(), plain.len());
            for task in &tasks {
                let expected = interest::route_plainly(&plain, task);
                prop_assert_eq!(router.route(task), expected.clone());
                let explained: Vec<&str> = router.explain(task).into_iter().map(|e| e.queue).collect();
                prop_assert_eq!(explained, expected);
            }
        }
    }

    /// Case-insensitive patterns over the letters whose Unicode folding
    /// takes more than lower-casing (`k`: `K`, `s`: `ſ`), on texts of them.
    #[test]
    fn case_insensitive_patterns_route_like_the_plain_loop(
        patterns in prop::collection::vec(folding_pattern(), 1..6),
        texts in prop::collection::vec("[kKsS\u{212A}\u{17F}a\n-]{0,8}", 1..12),
    ) {
        let queues: Vec<(String, Interests)> = patterns
            .iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let name = format!("q{i}");
                Interests::parse(&name, &serde_json::json!({ "f": p }), &Limits::default())
                    .ok()
                    .map(|x| (name, x))
            })
            .collect();
        let matcher = Matcher::build(queues.clone()).unwrap();
        for text in texts {
            let task: Map<String, Value> = [("f".to_owned(), Value::from(text))].into_iter().collect();
            prop_assert_eq!(matcher.route(&task), interest::route_plainly(&queues, &task));
        }
    }

    #[test]
    fn random_bytes_never_panic(pattern in prop::collection::vec(any::<u8>(), 0..40),
                                field in prop::collection::vec(any::<u8>(), 0..10),
                                task in prop::collection::vec(any::<u8>(), 0..80)) {
        let pattern = String::from_utf8_lossy(&pattern).into_owned();
        let field = String::from_utf8_lossy(&field).into_owned();
        let mut object = Map::new();
        object.insert(field, Value::from(pattern));
        if let Ok(interests) = Interests::parse("q", &Value::Object(object), &Limits::default()) {
            let matcher = Matcher::build([("q", interests)]).unwrap();
            if let Ok(Value::Object(task)) = serde_json::from_slice::<Value>(&task) {
                let _ = matcher.route(&task);
                let _ = matcher.explain(&task);
            }
            let _ = matcher.route(&Map::new());
        }
    }
}

/// Every text of up to five of the folding letters, against
/// case-insensitive patterns with case-sensitive letters among them.
#[test]
fn folding_letters_route_like_the_plain_loop_on_every_short_text() {
    // Long enough (more than 64 spellings) to have no plain literal form.
    let patterns = [
        "(?i)ksks(?-i:S)",
        "(?i)^ksks$",
        "(?i)skks",
        "(?i)^(kssk|aaaaaaa)",
        "(?i)^.*ssss",
        "(?i)(?-i:K)ssss",
        "(?i)kssk$",
        "(?i)^[ak]sss",
        "(?i)ss(?-i:s)ss",
    ];
    let queues: Vec<(String, Interests)> = patterns
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let name = format!("q{i}");
            let parsed =
                Interests::parse(&name, &serde_json::json!({ "f": p }), &Limits::default());
            (name, parsed.unwrap())
        })
        .collect();
    let matcher = Matcher::build(queues.clone()).unwrap();
    let letters = ['k', 'K', 's', 'S', 'a', '\u{212A}', '\u{17F}'];
    let mut texts = vec![String::new()];
    for _ in 0..5 {
        let longer: Vec<String> = texts
            .iter()
            .flat_map(|t| letters.iter().map(move |c| format!("{t}{c}")))
            .collect();
        texts.extend(longer);
    }
    texts.sort();
    texts.dedup();
    let mut routed = vec![0usize; patterns.len()];
    for text in &texts {
        let task: Map<String, Value> = [("f".to_owned(), Value::from(text.as_str()))]
            .into_iter()
            .collect();
        let expected = interest::route_plainly(&queues, &task);
        for queue in &expected {
            routed[queue[1..].parse::<usize>().unwrap()] += 1;
        }
        assert_eq!(matcher.route(&task), expected, "{text:?}");
    }
    // Each pattern must take some texts and leave others, or it tests nothing.
    for (pattern, count) in patterns.iter().zip(&routed) {
        assert!(
            *count > 0 && *count < texts.len(),
            "{pattern} routed {count}"
        );
    }
}

#[test]
fn the_scale_benchmarks_queues_route_like_the_plain_loop() {
    let vocab = common::mix::Vocabulary::load();
    let scale = common::mix::Scale {
        queues: 4_000,
        per_kind: 2.0,
        mix_every: 50,
    };
    let queues = scale.queues(&vocab, 3);
    let matcher = Matcher::build(queues.clone()).unwrap();
    let mut routed = 0;
    for task in scale.tasks(&vocab, 300, 5) {
        let expected = interest::route_plainly(&queues, &task);
        let got = matcher.route(&task);
        routed += got.len();
        assert_eq!(got, expected);
    }
    // About two queues of each literal kind and some of the mix per task.
    assert!(routed > 300 * 8, "only {routed} copies for 300 tasks");
}

#[test]
fn the_benchmark_mix_routes_like_the_plain_loop() {
    let vocab = common::mix::Vocabulary::load();
    let queues = vocab.queues(2_000, 3);
    let matcher = Matcher::build(queues.clone()).unwrap();
    let mut routed = 0;
    for task in vocab.tasks(300, 5) {
        let expected: Vec<&str> = queues
            .iter()
            .filter(|(_, i)| i.matches(&task))
            .map(|(n, _)| n.as_str())
            .collect();
        let got = matcher.route(&task);
        routed += got.len();
        assert_eq!(got, expected);
    }
    assert!(
        routed > 0,
        "the mix must route some tasks for this test to mean anything"
    );
}
