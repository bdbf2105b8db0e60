//! A fixed routing workload, for counting instructions where the wall clock
//! is too noisy to compare two builds:
//!
//! ```text
//! cargo build --release -p interest --example route_fixed
//! valgrind --tool=callgrind --toggle-collect='*route_all*' \
//!     target/release/examples/route_fixed scale 500
//! ```
//!
//! `scale N` routes 10,000 tasks (ten rounds of the bench's 1,000) through the
//! bench's 100,000 scale queues with one mix queue in N (500 is
//! `scale/100000_queues_10_matches`); `mix N` through N queues of the mix alone
//! (10,000 is `route/10000_queues`). It prints the routes made, the heap the
//! matcher holds per queue, and the fastest and median round's time per task.

use std::time::Instant;

use interest::{Interests, Limits, Matcher};
use serde_json::{Map, Value};

#[path = "../tests/common/mix.rs"]
mod mix;

#[global_allocator]
static ALLOCATOR: cap::Cap<std::alloc::System> = cap::Cap::new(std::alloc::System, usize::MAX);

#[inline(never)]
fn route_all(matcher: &Matcher, tasks: &[Map<String, Value>]) -> usize {
    tasks.iter().map(|t| matcher.route(t).len()).sum()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let number = |i: usize, default: usize| {
        args.get(i)
            .map_or(default, |s| s.parse().expect("a number"))
    };
    let vocab = mix::Vocabulary::load();
    let limits = Limits::default();
    let (json, tasks) = match args.first().map(String::as_str) {
        Some("mix") => {
            let queues = number(1, 10_000);
            (vocab.queue_json(queues, 7), vocab.tasks(1_000, 11))
        }
        Some("scale") | None => {
            let scale = mix::Scale {
                queues: 100_000,
                per_kind: 2.0,
                mix_every: number(1, 500),
            };
            (scale.queue_json(&vocab, 7), scale.tasks(&vocab, 1_000, 11))
        }
        Some(other) => panic!("`{other}`: expected `scale N` or `mix N`"),
    };
    let before = ALLOCATOR.allocated();
    let matcher = Matcher::build(json.iter().map(|(name, value)| {
        (
            name.clone(),
            Interests::parse(name, value, &limits).unwrap(),
        )
    }))
    .unwrap();
    let held = ALLOCATOR.allocated() - before;
    let mut routes = 0;
    let mut rounds: Vec<f64> = (0..10)
        .map(|_| {
            let started = Instant::now();
            routes += route_all(&matcher, &tasks);
            started.elapsed().as_nanos() as f64 / tasks.len() as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    println!(
        "{routes} routes; {} bytes per queue; {:.0} ns per task at best, {:.0} ns median",
        held / json.len(),
        rounds[0],
        rounds[rounds.len() / 2]
    );
}
