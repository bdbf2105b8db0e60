//! Routing cost: one task of 5 string fields against 10, 1,000 and 10,000
//! queues of 1-3 field interests each, and the time to compile 10,000 queues.
//!
//! The queues and tasks are expanded deterministically from the vocabularies
//! in `fixtures/interest-mix.json`.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use interest::{Interests, Limits, Matcher};
use serde_json::{json, Map, Value};

#[path = "../tests/common/mix.rs"]
mod mix;

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
    let _ = json!(null);
}

criterion_group!(benches, routing);
criterion_main!(benches);
