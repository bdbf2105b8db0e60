//! What a Couchbase bucket keeps of its log (`store::couchbase::retention`),
//! simulated: the snapshot and retirement steps the bucket runs, over a
//! model bucket whose documents expire by a simulated clock, through many
//! seeds of commits, snapshots, quiet weeks, stalled writers racing a newer
//! one and calls that fail (before or after taking effect). After every
//! step a starting node must find the latest snapshot and every entry after
//! it; at the end nothing is kept that nothing needs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use interq::store::couchbase::retention::{
    self, chunk_key, entry_key, Docs, Head, SnapshotPointer, Written, POINTER, RETIRED_KEPT,
};
use interq::store::StoreError;

const DAY_MS: u64 = 86_400_000;

#[derive(Debug, Clone)]
struct Doc {
    bytes: Vec<u8>,
    cas: u64,
    /// When it expires (ms), if it does.
    expires: Option<u64>,
}

/// Another node's snapshot, written just before a call of this one.
type Race = (u64, u32);

#[derive(Default)]
struct World {
    docs: HashMap<String, Doc>,
    now: u64,
    cas: u64,
    rng: Option<fastrand::Rng>,
    /// The chance that a call fails: half before it takes effect, half after.
    fail: f64,
    race: Option<Race>,
}

#[derive(Default)]
struct Model(Mutex<World>);

enum Fault {
    None,
    Before,
    After,
}

impl World {
    fn fault(&mut self) -> Fault {
        let fail = self.fail;
        let Some(rng) = self.rng.as_mut() else {
            return Fault::None;
        };
        match (rng.f64() < fail, rng.bool()) {
            (false, _) => Fault::None,
            (true, true) => Fault::Before,
            (true, false) => Fault::After,
        }
    }

    fn live(&mut self, name: &str) -> Option<&Doc> {
        let now = self.now;
        if self.docs.get(name)?.expires.is_some_and(|at| at <= now) {
            self.docs.remove(name);
        }
        self.docs.get(name)
    }

    fn put(&mut self, name: &str, bytes: &[u8]) {
        self.cas += 1;
        let doc = Doc {
            bytes: bytes.to_vec(),
            cas: self.cas,
            expires: None,
        };
        self.docs.insert(name.to_owned(), doc);
    }

    /// Another node writes its snapshot as of `seq` (noted first, as
    /// `write_snapshot` notes it) and moves the pointer.
    fn other_node_snapshots(&mut self, (seq, chunks): Race) {
        let mut retired: retention::Retired = self
            .live("retired")
            .map(|d| serde_json::from_slice(&d.bytes).unwrap())
            .unwrap_or_default();
        retired.snapshots.push((seq, chunks));
        self.put("retired", &serde_json::to_vec(&retired).unwrap());
        for i in 0..chunks {
            self.put(&chunk_key(seq, i), &seq.to_le_bytes());
        }
        let p = SnapshotPointer {
            seq,
            chunks,
            format: Some(1),
            link: None,
        };
        self.put(POINTER, &serde_json::to_vec(&p).unwrap());
    }
}

fn unavailable() -> StoreError {
    StoreError::Unavailable("injected".into())
}

impl Model {
    /// Runs `call` on the world, with a fault perhaps before or after it.
    fn with<T>(&self, call: impl FnOnce(&mut World) -> T) -> Result<T, StoreError> {
        let mut w = self.0.lock().unwrap();
        match w.fault() {
            Fault::Before => Err(unavailable()),
            Fault::None => Ok(call(&mut w)),
            Fault::After => {
                call(&mut w);
                Err(unavailable())
            }
        }
    }
}

impl Docs for Model {
    async fn get(&self, name: &str) -> Result<Option<(Vec<u8>, u64)>, StoreError> {
        self.with(|w| w.live(name).map(|d| (d.bytes.clone(), d.cas)))
    }

    async fn upsert(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.with(|w| w.put(name, bytes))
    }

    async fn insert(&self, name: &str, bytes: &[u8]) -> Result<bool, StoreError> {
        self.with(|w| {
            let absent = w.live(name).is_none();
            if absent {
                w.put(name, bytes);
            }
            absent
        })
    }

    async fn replace(&self, name: &str, bytes: &[u8], cas: u64) -> Result<bool, StoreError> {
        self.with(|w| {
            if name == POINTER {
                if let Some(race) = w.race.take() {
                    w.other_node_snapshots(race);
                }
            }
            let current = w.live(name).is_some_and(|d| d.cas == cas);
            if current {
                w.put(name, bytes);
            }
            current
        })
    }

    async fn remove(&self, name: &str) -> Result<(), StoreError> {
        self.with(|w| drop(w.docs.remove(name)))
    }

    async fn expire(&self, names: Vec<String>, after: Duration) -> Result<(), StoreError> {
        self.with(|w| {
            let at = w.now + after.as_millis() as u64;
            for name in names {
                if w.live(&name).is_some() {
                    w.docs.get_mut(&name).unwrap().expires = Some(at);
                }
            }
        })
    }
}

impl Model {
    fn world<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        f(&mut self.0.lock().unwrap())
    }

    /// A node's commit of entry `seq`, as the bucket makes it (commits are
    /// not the subject here: they do not fail).
    async fn commit(&self, seq: u64) {
        let fail = self.world(|w| std::mem::replace(&mut w.fail, 0.0));
        let made = retention::append(self, seq, &seq.to_le_bytes()).await;
        assert!(made.unwrap(), "entry {seq} exists");
        self.world(|w| w.fail = fail);
    }

    /// Names alive now.
    fn alive(&self) -> Vec<String> {
        self.world(|w| {
            let names: Vec<String> = w.docs.keys().cloned().collect();
            names.into_iter().filter(|n| w.live(n).is_some()).collect()
        })
    }
}

/// What a node starting now reads must be every entry up to `head`: the
/// snapshot's (its chunks say up to which entry) and the entries after it.
async fn a_start_reads_everything(m: &Model, head: u64, seed: u64, step: usize) {
    let fail = m.world(|w| std::mem::replace(&mut w.fail, 0.0));
    let read = retention::read_all(m)
        .await
        .unwrap_or_else(|e| panic!("seed {seed} step {step}: a start fails: {e}"));
    let from = match read.pointer {
        Some(p) => {
            assert_eq!(read.chunks.len(), p.chunks as usize);
            for chunk in &read.chunks {
                assert_eq!(chunk, &p.seq.to_le_bytes(), "seed {seed} step {step}");
            }
            p.seq
        }
        None => 0,
    };
    let seqs: Vec<u64> = read.entries.iter().map(|(s, _)| *s).collect();
    let want: Vec<u64> = (from + 1..=head).collect();
    assert_eq!(
        seqs, want,
        "seed {seed} step {step}: the entries after the snapshot as of {from}"
    );
    // A node that applied everything may write the next entry.
    let at_head = retention::check_head(m, head).await;
    assert_eq!(at_head.ok(), Some(Head::Current), "seed {seed} step {step}");
    m.world(|w| w.fail = fail);
}

/// A node that applied up to `applied` and finds no entry after it: at the
/// head it writes on; behind it, the entries it missed expired under a
/// newer snapshot, and it reads that.
async fn a_lagging_node_knows_it(m: &Model, applied: u64, head: u64, seed: u64) {
    let fail = m.world(|w| std::mem::replace(&mut w.fail, 0.0));
    if retention::entries_after(m, applied)
        .await
        .unwrap()
        .is_empty()
    {
        let want = if applied == head {
            Head::Current
        } else {
            Head::Behind
        };
        let got = retention::check_head(m, applied).await;
        assert_eq!(
            got.ok(),
            Some(want),
            "seed {seed}: applied {applied} of {head}"
        );
    }
    m.world(|w| w.fail = fail);
}

/// A node's snapshot as of `seq` in `chunks` chunks, and its retirement.
async fn snapshot(m: &Model, seq: u64, chunks: u32) -> Result<Written, StoreError> {
    let bytes = vec![seq.to_le_bytes().to_vec(); chunks as usize];
    let written = retention::write_snapshot(m, seq, None, &bytes, 1).await?;
    if let Written::Latest { replaced } = written {
        retention::retire(m, replaced, seq).await?;
    }
    Ok(written)
}

async fn latest(m: &Model) -> Option<SnapshotPointer> {
    let fail = m.world(|w| std::mem::replace(&mut w.fail, 0.0));
    let p = retention::pointer(m).await.unwrap().map(|(p, _)| p);
    m.world(|w| w.fail = fail);
    p
}

async fn run(seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let m = Model::default();
    m.world(|w| {
        w.rng = Some(fastrand::Rng::with_seed(seed ^ 0x5eed));
        w.fail = 0.05;
        w.now = DAY_MS;
    });
    let every = rng.u64(3..30);
    let mut head = 0;
    // The bucket as a backup at some step would restore it.
    let backup_at = rng.usize(0..400);
    let mut backup = None;
    for step in 0..400 {
        if step == backup_at {
            backup = Some(m.world(|w| w.docs.clone()));
        }
        match rng.u32(0..100) {
            // Changes, a few at a time.
            0..=59 => {
                for _ in 0..rng.u64(1..5) {
                    head += 1;
                    m.commit(head).await;
                }
            }
            // The snapshot a node takes every `every` entries; one that
            // fails is taken again at a later change.
            60..=74 => {
                let last = latest(&m).await.map_or(0, |p| p.seq);
                if head > 0 && head >= last + every {
                    let _ = snapshot(&m, head, rng.u32(1..4)).await;
                }
            }
            // A stalled node wakes and writes the snapshot it began, of an
            // older entry: it must not move the pointer back.
            75..=79 => {
                let last = latest(&m).await;
                if let Some(p) = last.filter(|p| p.seq > 1) {
                    let stale = rng.u64(1..=p.seq);
                    let got = snapshot(&m, stale, rng.u32(1..3)).await;
                    assert!(
                        !matches!(got, Ok(Written::Latest { .. })),
                        "seed {seed} step {step}: an older snapshot became the latest"
                    );
                    assert_eq!(latest(&m).await, last, "seed {seed} step {step}");
                }
            }
            // Two nodes write snapshots at once: the other moves the
            // pointer between this one's read of it and its replace.
            80..=84 => {
                let before = latest(&m).await;
                let last = before.map_or(0, |p| p.seq);
                if head > last + 1 && last > 0 {
                    let mine = rng.u64(last + 1..head);
                    let theirs = rng.u64(mine..=head);
                    m.world(|w| w.race = Some((theirs, 2)));
                    let got = snapshot(&m, mine, 1).await;
                    let raced = m.world(|w| w.race.take()).is_none();
                    if raced {
                        assert!(!matches!(got, Ok(Written::Latest { .. })), "seed {seed}");
                        assert_eq!(latest(&m).await.map(|p| p.seq), Some(theirs));
                        // The other node retires as it would.
                        let _ = retention::retire(&m, before, theirs).await;
                    }
                }
            }
            // Time: minutes, hours, or a quiet stretch of weeks.
            85..=92 => m.world(|w| w.now += rng.u64(1..3_600_000)),
            93..=94 => {
                let applied = rng.u64(0..=head);
                a_lagging_node_knows_it(&m, applied, head, seed).await;
            }
            _ => m.world(|w| w.now += rng.u64(8..40) * DAY_MS),
        }
        a_start_reads_everything(&m, head, seed, step).await;
    }
    // Then calm: one more change and a snapshot that succeeds, and a week
    // and a day for the retired documents to go.
    m.world(|w| w.fail = 0.0);
    head += 1;
    m.commit(head).await;
    let written = snapshot(&m, head, 1)
        .await
        .expect("a snapshot without faults");
    assert!(matches!(written, Written::Latest { .. }), "seed {seed}");
    m.world(|w| w.now += RETIRED_KEPT.as_millis() as u64 + DAY_MS);
    a_start_reads_everything(&m, head, seed, usize::MAX).await;
    let mut alive = m.alive();
    alive.sort();
    let want = vec![
        "retired".to_owned(),
        "snapshot".to_owned(),
        chunk_key(head, 0),
    ];
    assert_eq!(
        alive, want,
        "seed {seed}: all that is kept is what a start needs"
    );
    // Restored from the backup, or emptied, the bucket's log went back: a
    // node that applied the head refuses to write after it.
    for docs in [backup.expect("a backup"), HashMap::new()] {
        let restored = Model::default();
        let now = m.world(|w| w.now);
        restored.world(|w| {
            w.docs = docs;
            w.now = now;
        });
        let refused = retention::check_head(&restored, head).await;
        assert!(
            matches!(refused, Err(StoreError::Corrupt(_))),
            "seed {seed}: {refused:?}"
        );
    }
}

#[tokio::test]
async fn a_bucket_keeps_what_a_start_needs_through_quiet_weeks_races_and_faults() {
    for seed in 0..200 {
        run(seed).await;
    }
}

#[tokio::test]
async fn a_bucket_written_before_retirement_is_retired_from_its_snapshot_on() {
    let m = Model::default();
    m.world(|w| w.now = DAY_MS);
    // An older interq's bucket: entries that expire, a snapshot as of 5
    // whose chunk expires, and no `retired` document.
    for seq in 1..=8 {
        m.commit(seq).await;
    }
    m.world(|w| {
        w.other_node_snapshots((5, 1));
        w.docs.remove("retired");
        let week = w.now + RETIRED_KEPT.as_millis() as u64;
        for seq in 1..=8 {
            w.docs.get_mut(&entry_key(seq)).unwrap().expires = Some(week);
        }
        w.docs.get_mut(&chunk_key(5, 0)).unwrap().expires = Some(week);
    });
    let got = snapshot(&m, 8, 1).await.unwrap();
    assert_eq!(
        got,
        Written::Latest {
            replaced: Some(SnapshotPointer {
                seq: 5,
                chunks: 1,
                format: Some(1),
                link: None,
            })
        }
    );
    // Entries 6-8 were retired from 5 on, not the whole history.
    let retired: retention::Retired =
        m.world(|w| serde_json::from_slice(&w.live("retired").unwrap().bytes).unwrap());
    assert_eq!((retired.seq, retired.snapshots), (8, vec![(8, 1)]));
    m.world(|w| w.now += 30 * DAY_MS);
    a_start_reads_everything(&m, 8, 0, 0).await;
}
