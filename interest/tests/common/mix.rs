//! Expands `fixtures/interest-mix.json` into queues and tasks, deterministically
//! from a seed, for the benchmarks and the property tests.

#![allow(dead_code)]

use interest::{Interests, Limits};
use serde_json::{json, Map, Value};

pub struct Vocabulary {
    action: Vec<String>,
    region: Vec<String>,
    names: Vec<String>,
    domains: Vec<String>,
    plan: Vec<String>,
    platforms: Vec<String>,
}

fn words(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("fixture lacks `{key}`"))
        .iter()
        .map(|w| w.as_str().unwrap().to_owned())
        .collect()
}

fn esc(s: &str) -> String {
    regex::escape(s)
}

impl Vocabulary {
    pub fn load() -> Self {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/interest-mix.json");
        let v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        Self {
            action: words(&v, "action"),
            region: words(&v, "region"),
            names: words(&v, "names"),
            domains: words(&v, "domains"),
            plan: words(&v, "plan"),
            platforms: words(&v, "platforms"),
        }
    }

    /// One task: 5 string fields, about 25 bytes each on average with keys.
    pub fn task(&self, rng: &mut fastrand::Rng) -> Map<String, Value> {
        let pick = |rng: &mut fastrand::Rng, v: &[String]| v[rng.usize(..v.len())].clone();
        let email = format!(
            "{}.{}{}@{}",
            pick(rng, &self.names),
            pick(rng, &self.names),
            rng.u32(1..100),
            pick(rng, &self.domains)
        );
        let source = format!("{}-{:04}", pick(rng, &self.platforms), rng.u32(0..10_000));
        let action = format!("{}.v{}", pick(rng, &self.action), rng.u32(1..=3));
        let region = format!(
            "{}{}",
            pick(rng, &self.region),
            rng.choice(['a', 'b', 'c', 'd', 'e', 'f']).unwrap()
        );
        let plan = format!(
            "{}-{}-{}",
            pick(rng, &self.plan),
            rng.choice(["monthly", "yearly"]).unwrap(),
            rng.choice(["usd", "eur", "gbp", "jpy", "inr"]).unwrap()
        );
        let task = json!({
            "action": action,
            "region": region,
            "email": email,
            "plan": plan,
            "source": source,
        });
        task.as_object().unwrap().clone()
    }

    pub fn tasks(&self, n: usize, seed: u64) -> Vec<Map<String, Value>> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..n).map(|_| self.task(&mut rng)).collect()
    }

    /// One field's pattern, in one of the shapes users write.
    fn pattern(&self, rng: &mut fastrand::Rng, field: &str) -> String {
        let pick = |rng: &mut fastrand::Rng, v: &[String]| v[rng.usize(..v.len())].clone();
        let version = |rng: &mut fastrand::Rng| rng.u32(1..=3);
        let shape = rng.u8(0..10);
        match field {
            "action" => match shape {
                0..=5 => format!("^{}\\.v{}$", esc(&pick(rng, &self.action)), version(rng)),
                6..=7 => {
                    let a = format!("{}.v{}", pick(rng, &self.action), version(rng));
                    let b = format!("{}.v{}", pick(rng, &self.action), version(rng));
                    format!("^({}|{})$", esc(&a), esc(&b))
                }
                8 => format!("^{}\\.", esc(&pick(rng, &self.action))),
                _ => {
                    let verb = pick(rng, &self.action);
                    let verb = verb.split('.').nth(1).unwrap();
                    format!("\\.{}\\.v{}$", esc(verb), version(rng))
                }
            },
            "region" => match shape {
                0..=7 => {
                    let zone = rng.choice(["a", "b", "c"]).unwrap();
                    format!("^{}{zone}$", esc(&pick(rng, &self.region)))
                }
                _ => format!("^{}[ab]$", esc(&pick(rng, &self.region))),
            },
            "email" => match shape {
                0..=3 => {
                    let (a, b) = (pick(rng, &self.names), pick(rng, &self.names));
                    format!(".*{}\\.{}.*", esc(&a), esc(&b))
                }
                4..=6 => format!("^{}\\.", esc(&pick(rng, &self.names))),
                _ => {
                    let (name, domain) = (pick(rng, &self.names), pick(rng, &self.domains));
                    format!("{}[0-9]@{}$", esc(&name), esc(&domain))
                }
            },
            "plan" => match shape {
                0..=6 => format!("^{}-monthly-usd$", esc(&pick(rng, &self.plan))),
                _ => format!("(?i)^{}-YEARLY-(usd|eur)$", esc(&pick(rng, &self.plan))),
            },
            _ => {
                let platform = pick(rng, &self.platforms);
                match shape {
                    0..=6 => format!("^{}-{:02}", esc(&platform), rng.u32(0..100)),
                    _ => format!("^{}-[0-9]{{2}}{:02}$", esc(&platform), rng.u32(0..100)),
                }
            }
        }
    }

    /// Queues `q00000`.. with 1-3 field interests each, and one `"*"` queue in
    /// a thousand.
    pub fn queue_json(&self, n: usize, seed: u64) -> Vec<(String, Value)> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let fields = ["action", "region", "email", "plan", "source"];
        (0..n)
            .map(|i| {
                let name = format!("q{i:05}");
                if i % 1000 == 999 {
                    return (name, json!("*"));
                }
                let mut interests = Map::new();
                for _ in 0..rng.usize(1..=3) {
                    let field = fields[rng.usize(..fields.len())];
                    interests.insert(
                        field.to_owned(),
                        Value::String(self.pattern(&mut rng, field)),
                    );
                }
                (name, Value::Object(interests))
            })
            .collect()
    }

    pub fn queues(&self, n: usize, seed: u64) -> Vec<(String, Interests)> {
        let limits = Limits::default();
        self.queue_json(n, seed)
            .into_iter()
            .map(|(name, value)| {
                let interests = Interests::parse(&name, &value, &limits).unwrap();
                (name, interests)
            })
            .collect()
    }
}

/// Interests as traffic at scale has them: most queues name one exact id, a
/// tenant's prefix, a suffix or a numeric range, with as many distinct values
/// as there are queues of each kind over `per_kind` (so about that many queues
/// of each kind take a task, whatever the number of queues); one queue in
/// `mix_every` comes from the mix above instead.
pub struct Scale {
    pub queues: usize,
    /// Queues of each literal kind that take an average task.
    pub per_kind: f64,
    /// One queue in this many is drawn from the mix (0: none).
    pub mix_every: usize,
}

/// The literal kinds of `Scale`.
const KINDS: usize = 4;
/// `amount` is drawn below this.
const AMOUNT_RANGE: f64 = 1_000_000.0;

impl Scale {
    /// Distinct values of each kind's field.
    fn cardinality(&self) -> u64 {
        ((self.queues as f64 / KINDS as f64 / self.per_kind).round() as u64).max(1)
    }

    pub fn queue_json(&self, vocab: &Vocabulary, seed: u64) -> Vec<(String, Value)> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mixed = vocab.queue_json(self.queues, seed ^ 0x5eed);
        let c = self.cardinality();
        let width = AMOUNT_RANGE / c as f64;
        mixed
            .into_iter()
            .enumerate()
            .map(|(i, (name, mix))| {
                if self.mix_every > 0 && i % self.mix_every == 0 {
                    return (name, mix);
                }
                let k = rng.u64(..c);
                let interests = match i % KINDS {
                    0 => json!({"tenant": format!("^tenant-{k}$")}),
                    1 => json!({"account": {"prefix": format!("acct-{k}-")}}),
                    2 => json!({"sku": {"suffix": format!("-{k}")}}),
                    _ => {
                        let low = k as f64 * width;
                        json!({"amount": {"numeric": [">=", low, "<", low + width]}})
                    }
                };
                (name, interests)
            })
            .collect()
    }

    pub fn queues(&self, vocab: &Vocabulary, seed: u64) -> Vec<(String, Interests)> {
        let limits = Limits::default();
        self.queue_json(vocab, seed)
            .into_iter()
            .map(|(name, value)| {
                let interests = Interests::parse(&name, &value, &limits).unwrap();
                (name, interests)
            })
            .collect()
    }

    /// Tasks with the mix's five fields and one value of each literal kind.
    pub fn tasks(&self, vocab: &Vocabulary, n: usize, seed: u64) -> Vec<Map<String, Value>> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let c = self.cardinality();
        (0..n)
            .map(|_| {
                let mut task = vocab.task(&mut rng);
                task.insert("tenant".into(), json!(format!("tenant-{}", rng.u64(..c))));
                task.insert(
                    "account".into(),
                    json!(format!("acct-{}-{}", rng.u64(..c), rng.u32(..100_000))),
                );
                task.insert(
                    "sku".into(),
                    json!(format!("sku{}-{}", rng.u32(..1000), rng.u64(..c))),
                );
                task.insert("amount".into(), json!(rng.f64() * AMOUNT_RANGE));
                task
            })
            .collect()
    }
}
