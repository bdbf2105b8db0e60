//! The cluster lock of a Couchbase store: a document the bucket expires,
//! so that who holds it is decided by the bucket's clock alone; and turns
//! for the nodes that wait for it.
//!
//! A node whose changes keep coming keeps the lock from one to the next,
//! for a bounded while, then renews it ([`renew`]) unless another node
//! waits, in which case it lets go; without more, it would take the lock
//! back at once, before a node that waits (and looks again every 20 ms at
//! most) could, and starve it. So a node that has waited says so in a
//! short-lived document, which stops the holder renewing, and a node
//! letting go of a busy turn that finds it pauses for [`YIELD`] before
//! taking the lock again.
//!
//! Written over [`LockDocs`], which the bucket implements with its calls and
//! `tests/integration/retention.rs` with a model on tokio's paused clock.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use crate::store::StoreError;

/// The lock's document.
pub const LOCK: &str = "lock";
/// Who waits for the lock.
pub const WANTED: &str = "lock_wanted";
/// How long the lock is held at most before the bucket expires it and
/// another node may take it (a node that stalls longer finds its commit
/// refused, and reloads).
pub const LEASE: Duration = Duration::from_secs(5);
/// A node that has waited this long says so.
const ASK_AFTER: Duration = Duration::from_millis(50);
/// And says it again this often while it waits.
const ASK_EVERY: Duration = Duration::from_millis(500);
/// How long a node's word that it waits stands.
const WANTED_KEPT: Duration = Duration::from_secs(1);
/// How long a node letting go of a busy turn stands back when another waits:
/// longer than a waiting node's longest pause between tries.
pub const YIELD: Duration = Duration::from_millis(40);
/// A waiting node's longest pause between tries.
const LONGEST_PAUSE: Duration = Duration::from_millis(20);

/// The key-value calls the lock makes (names without the bucket's prefix).
pub trait LockDocs: Sync {
    /// Creates a document that the bucket expires after `expiry`: its CAS,
    /// or `None` when it exists.
    fn insert_expiring(
        &self,
        name: &str,
        bytes: &[u8],
        expiry: Duration,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;
    /// Writes a document that the bucket expires after `expiry`.
    fn upsert_expiring(
        &self,
        name: &str,
        bytes: &[u8],
        expiry: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Replaces the version `cas` of a document, to expire after `expiry`:
    /// its new CAS, or `None` when it changed or went.
    fn replace_expiring(
        &self,
        name: &str,
        bytes: &[u8],
        cas: u64,
        expiry: Duration,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;
    /// A document's bytes and CAS, if it exists.
    fn read(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<(Vec<u8>, u64)>, StoreError>> + Send;
    /// Removes the version `cas` of a document (not another).
    fn remove_version(
        &self,
        name: &str,
        cas: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

fn naming(node: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "node": node })).expect("json encodes")
}

/// Takes the lock for `node`, waiting at most `timeout`; its CAS (to let go
/// of it with).
pub async fn take(docs: &impl LockDocs, node: &str, timeout: Duration) -> Result<u64, StoreError> {
    let started = Instant::now();
    let mine = naming(node);
    let mut pause = Duration::from_micros(200);
    let mut asked: Option<Instant> = None;
    loop {
        if let Some(cas) = docs.insert_expiring(LOCK, &mine, LEASE).await? {
            if asked.is_some() {
                // Its turn came: its word no longer holds the others back
                // (unless another waiter has written its own since).
                if let Ok(Some((bytes, version))) = docs.read(WANTED).await {
                    if bytes == mine {
                        let _ = docs.remove_version(WANTED, version).await;
                    }
                }
            }
            return Ok(cas);
        }
        let waited = started.elapsed();
        if waited > timeout {
            return Err(StoreError::Unavailable(
                "couchbase: lock: another node held it too long".into(),
            ));
        }
        if waited >= ASK_AFTER && asked.is_none_or(|at| at.elapsed() >= ASK_EVERY) {
            // Only a hint: a node that cannot say it waits still gets the
            // lock when it is free.
            if docs
                .upsert_expiring(WANTED, &mine, WANTED_KEPT)
                .await
                .is_ok()
            {
                asked = Some(Instant::now());
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LONGEST_PAUSE);
    }
}

/// `take`, for a node that just let go of a busy turn: when another node
/// has said it waits, this one stands back for `YIELD` first.
pub async fn take_after_busy(
    docs: &impl LockDocs,
    node: &str,
    timeout: Duration,
) -> Result<u64, StoreError> {
    if another_waits(docs, node).await {
        tokio::time::sleep(YIELD).await;
    }
    take(docs, node, timeout).await
}

/// Keeps the lock `node` holds as version `cas` for another lease, unless
/// another node has said it waits: its new CAS, or `None` when it is to be
/// let go of (another waits) or is no longer `node`'s (it lapsed and
/// another took it; the bucket's CAS says so, not a clock).
pub async fn renew(docs: &impl LockDocs, node: &str, cas: u64) -> Result<Option<u64>, StoreError> {
    if another_waits(docs, node).await {
        return Ok(None);
    }
    docs.replace_expiring(LOCK, &naming(node), cas, LEASE).await
}

/// Whether a node other than `node` has said it waits for the lock.
async fn another_waits(docs: &impl LockDocs, node: &str) -> bool {
    match docs.read(WANTED).await {
        Ok(Some((bytes, _))) => bytes != naming(node),
        _ => false,
    }
}
