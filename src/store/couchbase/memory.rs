//! A bucket in memory with Couchbase's key-value rules: every write gives a
//! document a new CAS, `insert` fails on a document that exists, `replace`
//! and `remove` may be bound to a CAS, and documents expire by tokio's clock
//! (so a test on a paused clock can let a week pass). It stands in for the
//! cluster where none can run: the storage conformance suite and the
//! multi-node tests run the Couchbase log's own code over it, and it injects
//! the faults a network and a database bring (a call refused before or after
//! it took effect, an outage, a bucket restarted empty, a delay per call).
//!
//! Several logs over one `Arc<MemoryBucket>` are several nodes on one
//! bucket.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::kv::Kv;
use crate::store::StoreError;

#[derive(Debug, Default)]
pub struct MemoryBucket {
    world: Mutex<World>,
    /// Calls made, of every kind.
    calls: AtomicU64,
    /// Calls made, by the kind of document (its name up to `::`).
    kinds: Mutex<HashMap<String, u64>>,
    /// While set, every call fails as if the database did not answer.
    down: AtomicBool,
}

#[derive(Debug, Default)]
struct World {
    docs: HashMap<String, Doc>,
    cas: u64,
    /// Each call waits this long before it is answered...
    delay: Duration,
    /// ...and up to this much longer, drawn from the generator: calls sent
    /// one after another may land in another order, as over a network.
    jitter: Option<(Duration, fastrand::Rng)>,
    planned: Option<Plan>,
}

/// A call to fail.
#[derive(Debug)]
struct Plan {
    /// Only calls on documents whose names start with this count...
    prefix: String,
    /// ...and, when set, only `insert`s.
    inserts: bool,
    /// After how many more of them.
    after: u32,
    /// Whether it takes effect first (its reply lost) or not.
    taken: bool,
}

#[derive(Debug, Clone)]
struct Doc {
    bytes: Vec<u8>,
    cas: u64,
    expires: Option<Instant>,
}

/// Whether a call fails, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Before,
    After,
}

impl World {
    fn fault(&mut self, name: &str, inserting: bool) -> Fault {
        let Some(plan) = self.planned.as_mut() else {
            return Fault::None;
        };
        if !name.starts_with(&plan.prefix) || (plan.inserts && !inserting) {
            return Fault::None;
        }
        if plan.after > 0 {
            plan.after -= 1;
            return Fault::None;
        }
        let taken = plan.taken;
        self.planned = None;
        if taken {
            Fault::After
        } else {
            Fault::Before
        }
    }

    fn live(&mut self, name: &str) -> Option<&mut Doc> {
        let now = Instant::now();
        if self.docs.get(name)?.expires.is_some_and(|at| at <= now) {
            self.docs.remove(name);
            return None;
        }
        self.docs.get_mut(name)
    }

    fn write(&mut self, name: &str, bytes: &[u8], expiry: Option<Duration>) -> u64 {
        self.cas += 1;
        let doc = Doc {
            bytes: bytes.to_vec(),
            cas: self.cas,
            expires: expiry.map(|e| Instant::now() + e),
        };
        self.docs.insert(name.to_owned(), doc);
        self.cas
    }
}

fn refused(name: &str, fault: Fault) -> StoreError {
    let when = match fault {
        Fault::After => "its reply was lost",
        _ => "it was refused",
    };
    StoreError::Unavailable(format!("bucket: {name}: {when} (an injected fault)"))
}

impl MemoryBucket {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes each call wait `delay` before it is answered, as a network
    /// round trip would.
    pub fn set_delay(&self, delay: Duration) {
        self.world().delay = delay;
    }

    /// Makes each call wait up to `most` longer than the delay, drawn from
    /// a generator seeded with `seed`.
    pub fn set_jitter(&self, most: Duration, seed: u64) {
        self.world().jitter = Some((most, fastrand::Rng::with_seed(seed)));
    }

    /// Fails the call `after` calls from now (0: the next one): having
    /// taken effect (`taken`, its reply lost) or not.
    pub fn fail_call(&self, after: u32, taken: bool) {
        self.fail_call_to("", after, taken);
    }

    /// `fail_call`, counting only calls on documents whose names start
    /// with `prefix` (`log::` for entries, `payload::`, `lock`).
    pub fn fail_call_to(&self, prefix: &str, after: u32, taken: bool) {
        self.world().planned = Some(Plan {
            prefix: prefix.to_owned(),
            inserts: false,
            after,
            taken,
        });
    }

    /// `fail_call_to`, counting only `insert`s (`log::`: the writes of
    /// entries, not the reads).
    pub fn fail_insert_to(&self, prefix: &str, after: u32, taken: bool) {
        self.world().planned = Some(Plan {
            prefix: prefix.to_owned(),
            inserts: true,
            after,
            taken,
        });
    }

    /// Fails no planned call.
    pub fn heal(&self) {
        self.world().planned = None;
    }

    /// While `down`, every call fails at once (a database that does not
    /// answer, with the SDK's timeout already spent).
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Forgets every document, as a database restarted empty would.
    pub fn wipe(&self) {
        self.world().docs.clear();
    }

    /// Calls made so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Calls made so far on documents of one kind (`payload`, `log`,
    /// `lock`: a name up to its first `::`).
    pub fn calls_to(&self, kind: &str) -> u64 {
        let kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
        kinds.get(kind).copied().unwrap_or(0)
    }

    /// The names of the documents that exist now, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut w = self.world();
        let all: Vec<String> = w.docs.keys().cloned().collect();
        let mut names: Vec<String> = all.into_iter().filter(|n| w.live(n).is_some()).collect();
        names.sort();
        names
    }

    /// One call (an `insert` when `inserting`, for the faults planned on
    /// inserts only): waits the delay, then runs `f` on the documents unless
    /// a fault refuses it before; a fault after runs it and loses the reply.
    async fn call<T>(
        &self,
        name: &str,
        inserting: bool,
        f: impl FnOnce(&mut World) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        {
            let kind = name.split("::").next().unwrap_or(name);
            let mut kinds = self.kinds.lock().unwrap_or_else(|e| e.into_inner());
            *kinds.entry(kind.to_owned()).or_default() += 1;
        }
        let delay = {
            let mut w = self.world();
            let extra = match &mut w.jitter {
                Some((most, rng)) => most.mul_f64(rng.f64()),
                None => Duration::ZERO,
            };
            w.delay + extra
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable(format!(
                "bucket: {name}: no answer (the database is down)"
            )));
        }
        let mut w = self.world();
        let fault = w.fault(name, inserting);
        if fault == Fault::Before {
            return Err(refused(name, fault));
        }
        let answer = f(&mut w)?;
        match fault {
            Fault::After => Err(refused(name, fault)),
            _ => Ok(answer),
        }
    }
}

impl Kv for Arc<MemoryBucket> {
    async fn get(&self, name: &str) -> Result<Option<(Vec<u8>, u64)>, StoreError> {
        self.call(name, false, |w| {
            Ok(w.live(name).map(|d| (d.bytes.clone(), d.cas)))
        })
        .await
    }

    async fn insert(
        &self,
        name: &str,
        bytes: &[u8],
        expiry: Option<Duration>,
        _durable: bool,
    ) -> Result<Option<u64>, StoreError> {
        self.call(name, true, |w| {
            Ok(match w.live(name) {
                Some(_) => None,
                None => Some(w.write(name, bytes, expiry)),
            })
        })
        .await
    }

    async fn upsert(
        &self,
        name: &str,
        bytes: &[u8],
        expiry: Option<Duration>,
        _durable: bool,
    ) -> Result<(), StoreError> {
        self.call(name, false, |w| {
            w.write(name, bytes, expiry);
            Ok(())
        })
        .await
    }

    async fn replace(
        &self,
        name: &str,
        bytes: &[u8],
        cas: u64,
        expiry: Option<Duration>,
        _durable: bool,
    ) -> Result<Option<u64>, StoreError> {
        self.call(name, false, |w| {
            // Couchbase's replace keeps no expiry unless given one.
            Ok(match w.live(name) {
                Some(d) if d.cas == cas => Some(w.write(name, bytes, expiry)),
                _ => None,
            })
        })
        .await
    }

    async fn remove(&self, name: &str, cas: Option<u64>) -> Result<(), StoreError> {
        self.call(name, false, |w| {
            if let Some(d) = w.live(name) {
                if cas.is_none_or(|c| c == d.cas) {
                    w.docs.remove(name);
                }
            }
            Ok(())
        })
        .await
    }

    async fn touch(&self, name: &str, after: Duration) -> Result<(), StoreError> {
        self.call(name, false, |w| {
            let cas = w.cas + 1;
            if let Some(d) = w.live(name) {
                d.expires = Some(Instant::now() + after);
                d.cas = cas;
            } else {
                return Ok(());
            }
            w.cas = cas;
            Ok(())
        })
        .await
    }
}
