//! Routing cost: one task of 5 string fields against 10, 1,000 and 10,000
//! queues of 1-3 field interests each, and the time to compile 10,000 queues;
//! then `scale/`: 1,000 to 100,000 queues of exact ids, prefixes, suffixes and
//! numeric ranges (with and without the mix among them), at about 10 queues
//! per task and at 2.5% of them. Each scale case prints its build time and
//! the heap its parsed interests and matcher hold, per queue.
//!
//! The queues and tasks are expanded deterministically from the vocabularies
//! in `fixtures/interest-mix.json`.

use std::time::Instant;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use interest::{Interests, Limits, Matcher};
use serde_json::{json, Map, Value};

#[path = "../tests/common/mix.rs"]
mod mix;

/// Counts the bytes live on the heap, to measure what a matcher holds.
#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

fn routing(c: &mut Criterion) {
    let vocab = mix::Vocabulary::load();
    let mut group = c.benchmark_group("route");
    for queues in [10, 1_000, 10_000] {
        let interests = vocab.queues(queues, 7);
        let matcher = Matcher::build(interests).unwrap();
        let tasks: Vec<Map<String, Value>> = vocab.tasks(1_000, 11);
        let routed: usize = tasks.iter().map(|t| matcher.route(t).len()).sum();
        eprintln!(
            "{queues} queues: {:.2}% of queues match a task on average",
            100.0 * routed as f64 / (tasks.len() * queues) as f64
        );
        let mut i = 0;
        group.bench_function(format!("{queues}_queues"), |b| {
            b.iter(|| {
                i = (i + 1) % tasks.len();
                matcher.route(&tasks[i]).len()
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    group.bench_function("10000_queues", |b| {
        b.iter_batched(
            || vocab.queues(10_000, 7),
            |queues| Matcher::build(queues).unwrap(),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("parse_and_compile_10000_queues", |b| {
        b.iter_batched(
            || vocab.queue_json(10_000, 7),
            |queues| {
                let limits = Limits::default();
                Matcher::build(queues.into_iter().map(|(name, value)| {
                    let i = Interests::parse(&name, &value, &limits).unwrap();
                    (name, i)
                }))
                .unwrap()
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
    scale(c, &vocab);
    hostile(c);
}

/// The scale cases: (name, queues, literal queues of each kind per task, one
/// mix queue in this many).
const SCALE: &[(&str, usize, f64, usize)] = &[
    ("literal_1000_queues", 1_000, 2.5, 0),
    ("literal_10000_queues", 10_000, 2.5, 0),
    ("literal_100000_queues", 100_000, 2.5, 0),
    ("100000_queues_10_matches", 100_000, 2.0, 500),
    ("100000_queues_2.5pct", 100_000, 625.0, 100),
];

fn scale(c: &mut Criterion, vocab: &mix::Vocabulary) {
    let mut group = c.benchmark_group("scale");
    for &(name, queues, per_kind, mix_every) in SCALE {
        let scale = mix::Scale {
            queues,
            per_kind,
            mix_every,
        };
        let json = scale.queue_json(vocab, 7);
        let before = ALLOCATOR.allocated() as isize;
        let started = Instant::now();
        let limits = Limits::default();
        let matcher = Matcher::build(json.iter().map(|(name, value)| {
            (
                name.clone(),
                Interests::parse(name, value, &limits).unwrap(),
            )
        }))
        .unwrap();
        let built = started.elapsed();
        let held = ALLOCATOR.allocated() as isize - before;
        let tasks = scale.tasks(vocab, 1_000, 11);
        let routed: usize = tasks.iter().map(|t| matcher.route(t).len()).sum();
        eprintln!(
            "scale/{name}: {:.1} queues ({:.2}%) take a task; parsed and built in {:.2} s; {:.0} bytes per queue",
            routed as f64 / tasks.len() as f64,
            100.0 * routed as f64 / (tasks.len() * queues) as f64,
            built.as_secs_f64(),
            held as f64 / queues as f64,
        );
        let mut i = 0;
        group.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % tasks.len();
                matcher.route(&tasks[i]).len()
            })
        });
    }
    group.finish();
}

/// Routing one long value against 200 queues whose patterns are each as
/// heavy as the complexity probe lets through (issue: 200 near-limit
/// patterns once made a 20,000-character value take 8.4 s, and every other
/// publish wait for it).
fn hostile(c: &mut Criterion) {
    let limits = Limits::default();
    let queues: Vec<(String, Interests)> = (0..200)
        .filter_map(|i| {
            let pattern = format!("(\\w+\\s+){{{}}}z", 5 + i % 4);
            Interests::parse(&format!("q{i}"), &json!({"body": pattern}), &limits)
                .ok()
                .map(|q| (format!("q{i}"), q))
        })
        .collect();
    assert_eq!(queues.len(), 200, "the heavy patterns are accepted");
    let refused = (0..200)
        .filter(|i| {
            let pattern = format!("[a-z ]{{{}}}q[a-z ]{{{}}}[0-9]", 100 + i, 200 + i);
            Interests::parse("q", &json!({"body": pattern}), &limits).is_err()
        })
        .count();
    eprintln!("hostile: {refused} of 200 counted-repetition patterns refused as too complex");
    let matcher = Matcher::build(queues).unwrap();
    let mut group = c.benchmark_group("hostile");
    for len in [2_000usize, 20_000, 100_000] {
        let mut n = 0u64;
        group.bench_function(format!("200_heavy_queues_{len}_chars"), |b| {
            b.iter_batched(
                || {
                    // A new value each time: warm automata would flatter.
                    n += 1;
                    // Words of five letters: what `(\w+\s+){5}` keeps
                    // counting.
                    let text: String = (0..len)
                        .map(|i| {
                            if i % 6 == 5 {
                                ' '
                            } else {
                                (b'a' + ((i as u64 * 7 + n) % 26) as u8) as char
                            }
                        })
                        .collect();
                    json!({"body": text}).as_object().unwrap().clone()
                },
                |task| matcher.route(&task).len(),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
