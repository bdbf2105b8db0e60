//! The Couchbase store's cluster lock (`store::couchbase::lock`) over a
//! model bucket on tokio's paused clock: a busy node that keeps taking the
//! lock back lets a waiting node have its turn, and a dead node's lock goes
//! when the bucket expires it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use interq::store::couchbase::lock::{self, LockDocs, LEASE, LOCK};
use interq::store::StoreError;
use tokio::time::Instant;

/// A document's bytes, CAS, and when the bucket expires it.
type Doc = (Vec<u8>, u64, Option<Instant>);

#[derive(Default)]
struct Bucket {
    docs: Mutex<HashMap<String, Doc>>,
    cas: std::sync::atomic::AtomicU64,
}

impl Bucket {
    fn live(&self, name: &str) -> Option<(Vec<u8>, u64)> {
        let mut docs = self.docs.lock().unwrap();
        if docs
            .get(name)
            .is_some_and(|(_, _, at)| at.is_some_and(|at| at <= Instant::now()))
        {
            docs.remove(name);
        }
        docs.get(name).map(|(b, c, _)| (b.clone(), *c))
    }

    fn put(&self, name: &str, bytes: &[u8], expiry: Duration) -> u64 {
        let cas = self.cas.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        let at = Some(Instant::now() + expiry);
        self.docs
            .lock()
            .unwrap()
            .insert(name.to_owned(), (bytes.to_vec(), cas, at));
        cas
    }

    fn release(&self, cas: u64) {
        let mut docs = self.docs.lock().unwrap();
        if docs.get(LOCK).is_some_and(|(_, c, _)| *c == cas) {
            docs.remove(LOCK);
        }
    }
}

impl LockDocs for Bucket {
    async fn insert_expiring(
        &self,
        name: &str,
        bytes: &[u8],
        expiry: Duration,
    ) -> Result<Option<u64>, StoreError> {
        Ok(match self.live(name) {
            Some(_) => None,
            None => Some(self.put(name, bytes, expiry)),
        })
    }

    async fn upsert_expiring(
        &self,
        name: &str,
        bytes: &[u8],
        expiry: Duration,
    ) -> Result<(), StoreError> {
        self.put(name, bytes, expiry);
        Ok(())
    }

    async fn replace_expiring(
        &self,
        name: &str,
        bytes: &[u8],
        cas: u64,
        expiry: Duration,
    ) -> Result<Option<u64>, StoreError> {
        Ok(match self.live(name) {
            Some((_, c)) if c == cas => Some(self.put(name, bytes, expiry)),
            _ => None,
        })
    }

    async fn read(&self, name: &str) -> Result<Option<(Vec<u8>, u64)>, StoreError> {
        Ok(self.live(name))
    }

    async fn remove_version(&self, name: &str, cas: u64) -> Result<(), StoreError> {
        let mut docs = self.docs.lock().unwrap();
        if docs.get(name).is_some_and(|(_, c, _)| *c == cas) {
            docs.remove(name);
        }
        Ok(())
    }
}

const TIMEOUT: Duration = Duration::from_secs(10);

/// A node whose changes never stop: it holds the lock for a turn of
/// 200 ms, lets go and takes it again, as the store does, `fair` or not.
fn busy_node(bucket: Arc<Bucket>, fair: bool, stop: Arc<std::sync::atomic::AtomicBool>) {
    tokio::spawn(async move {
        let mut first = true;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            let cas = match (first, fair) {
                (false, true) => lock::take_after_busy(&*bucket, "busy", TIMEOUT).await,
                _ => lock::take(&*bucket, "busy", TIMEOUT).await,
            }
            .expect("the busy node's turn");
            first = false;
            tokio::time::sleep(Duration::from_millis(200)).await;
            bucket.release(cas);
        }
    });
}

/// How long a node that wants one turn waits for it while a busy node
/// runs, `fair` or not.
async fn wait_for_a_turn(fair: bool) -> Result<Duration, StoreError> {
    let bucket = Arc::new(Bucket::default());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    busy_node(Arc::clone(&bucket), fair, Arc::clone(&stop));
    tokio::time::sleep(Duration::from_millis(10)).await;
    let started = Instant::now();
    let got = lock::take(&*bucket, "waiting", Duration::from_secs(3)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    got.map(|_| started.elapsed())
}

#[tokio::test(start_paused = true)]
async fn a_busy_node_stands_back_for_a_node_that_waits() {
    let waited = wait_for_a_turn(true).await.expect("a turn");
    // The busy node's turn (200 ms), then it stands back (40 ms).
    assert!(waited <= Duration::from_millis(260), "waited {waited:?}");
    // Without standing back, the busy node takes the lock back every time.
    let starved = wait_for_a_turn(false).await;
    assert!(starved.is_err(), "{starved:?}");
}

#[tokio::test(start_paused = true)]
async fn a_dead_nodes_lock_goes_when_the_bucket_expires_it() {
    let bucket = Bucket::default();
    // Taken, and never let go of.
    lock::take(&bucket, "dead", TIMEOUT).await.expect("taken");
    let started = Instant::now();
    lock::take(&bucket, "next", TIMEOUT)
        .await
        .expect("taken over");
    let waited = started.elapsed();
    assert!(
        waited >= LEASE && waited <= LEASE + Duration::from_millis(25),
        "waited {waited:?}"
    );
    // Not sooner, whatever the waiting node's clock says: a node cannot
    // take a lock that exists.
    assert_eq!(
        bucket.insert_expiring(LOCK, b"x", LEASE).await.unwrap(),
        None
    );
}

/// A node whose changes never stop and that renews the lock every 200 ms
/// rather than letting go, unless another node waits. Counts its renewals.
fn renewing_node(
    bucket: Arc<Bucket>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    renewals: Arc<std::sync::atomic::AtomicU32>,
) {
    tokio::spawn(async move {
        let mut cas = lock::take(&*bucket, "busy", TIMEOUT).await.expect("a turn");
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(200)).await;
            match lock::renew(&*bucket, "busy", cas).await.expect("renewed") {
                Some(renewed) => {
                    cas = renewed;
                    renewals.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                None => {
                    bucket.release(cas);
                    cas = lock::take_after_busy(&*bucket, "busy", TIMEOUT)
                        .await
                        .expect("a turn");
                }
            }
        }
    });
}

#[tokio::test(start_paused = true)]
async fn a_busy_node_keeps_the_lock_past_its_lease_while_none_waits_and_not_once_one_does() {
    let bucket = Arc::new(Bucket::default());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let renewals = Arc::new(std::sync::atomic::AtomicU32::new(0));
    renewing_node(
        Arc::clone(&bucket),
        Arc::clone(&stop),
        Arc::clone(&renewals),
    );
    // Past two leases, the lock is still the busy node's: renewed, not
    // lapsed, and never let go of.
    tokio::time::sleep(LEASE * 2 + Duration::from_millis(100)).await;
    assert!(renewals.load(std::sync::atomic::Ordering::SeqCst) >= 50);
    assert_eq!(
        bucket.insert_expiring(LOCK, b"x", LEASE).await.unwrap(),
        None
    );
    // A node that waits has its turn after the busy node's next renewal
    // (200 ms at most), not after a lease.
    let started = Instant::now();
    lock::take(&*bucket, "waiting", Duration::from_secs(3))
        .await
        .expect("a turn");
    let waited = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(waited <= Duration::from_millis(300), "waited {waited:?}");
}

#[tokio::test(start_paused = true)]
async fn a_lock_that_lapsed_and_was_taken_over_is_not_renewed() {
    let bucket = Bucket::default();
    let stale = lock::take(&bucket, "stalled", TIMEOUT)
        .await
        .expect("taken");
    tokio::time::sleep(LEASE + Duration::from_millis(1)).await;
    let other = lock::take(&bucket, "next", TIMEOUT)
        .await
        .expect("taken over");
    // The stalled node's renewal is refused by the CAS, and leaves the new
    // holder's lock as it was.
    assert_eq!(lock::renew(&bucket, "stalled", stale).await.unwrap(), None);
    assert_eq!(bucket.live(LOCK).map(|(_, cas)| cas), Some(other));
    // Nor is a lapsed lock nobody took renewed: it is gone.
    tokio::time::sleep(LEASE + Duration::from_millis(1)).await;
    assert_eq!(lock::renew(&bucket, "next", other).await.unwrap(), None);
    assert!(bucket.live(LOCK).is_none());
}
