//! The partitions a node serves: the engine of each partition it owns,
//! read from the partition's own log when its tenure begins and dropped
//! once it no longer owns it, so that a node holds only its share. Which
//! partition a queue is in is `partition_of`, the same on every node and in
//! every version.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::kv::{Kv, Scoped};
use super::log::CouchbaseLog;
use super::partitions::{not_owner, Clock, Ownership, Tenures};
use super::settings::CouchbaseSettings;
use crate::model::QueueName;
use crate::store::engine::{Engine, Retention};
use crate::store::{Store, StoreError};

/// A partition's engine on its owner.
pub type PartitionEngine<K> = Engine<CouchbaseLog<Scoped<K>>>;

/// The partition of `count` that `queue` is in: FNV-1a (64 bits) of its
/// name, modulo `count`. Written out rather than taken from `std`, whose
/// hashers may change between Rust versions: nodes of one cluster must
/// agree on it whatever built them.
pub fn partition_of(queue: &QueueName, count: u32) -> u32 {
    let hash = queue
        .as_str()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    (hash % u64::from(count.max(1))) as u32
}

/// The engines of the partitions this node owns.
#[derive(Debug)]
pub struct OwnedPartitions<K: Kv, C: Clock> {
    kv: Arc<K>,
    settings: CouchbaseSettings,
    retention: Retention,
    ownership: Arc<Ownership<C>>,
    /// The node's clock for task times: an engine read from the bucket ends
    /// the leases it found no sooner than a lease after it read them.
    clock: Arc<dyn crate::broker::clock::Clock>,
    engines: Mutex<BTreeMap<u32, Arc<PartitionEngine<K>>>>,
    /// One partition read at a time: two requests arriving together for a
    /// partition just taken read it once.
    opening: tokio::sync::Mutex<()>,
}

impl<K: Kv, C: Clock> OwnedPartitions<K, C> {
    pub fn new(
        kv: Arc<K>,
        settings: CouchbaseSettings,
        retention: Retention,
        ownership: Arc<Ownership<C>>,
        clock: Arc<dyn crate::broker::clock::Clock>,
    ) -> Self {
        Self {
            kv,
            settings,
            retention,
            ownership,
            clock,
            engines: Mutex::default(),
            opening: tokio::sync::Mutex::new(()),
        }
    }

    fn engines(&self) -> std::sync::MutexGuard<'_, BTreeMap<u32, Arc<PartitionEngine<K>>>> {
        self.engines.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops the engines of partitions this node no longer owns.
    fn prune(&self) {
        let ownership = &self.ownership;
        self.engines().retain(|p, _| ownership.tenure(*p).is_some());
    }

    /// The partitions whose engines this node holds now.
    pub fn serving(&self) -> Vec<u32> {
        self.prune();
        self.engines().keys().copied().collect()
    }

    /// Partition `p`'s engine, read from its log if this node has not yet;
    /// refused (503) unless this node owns it. An engine kept from an
    /// earlier tenure reads what others wrote meanwhile at its next change.
    pub async fn engine(&self, p: u32) -> Result<Arc<PartitionEngine<K>>, StoreError> {
        self.prune();
        if self.ownership.tenure(p).is_none() {
            return Err(not_owner(p));
        }
        if let Some(engine) = self.engines().get(&p) {
            return Ok(Arc::clone(engine));
        }
        let _alone = self.opening.lock().await;
        if let Some(engine) = self.engines().get(&p) {
            return Ok(Arc::clone(engine));
        }
        let engine = Arc::new(
            Engine::open_partition(
                Arc::clone(&self.kv),
                self.settings.clone(),
                self.retention,
                Arc::clone(&self.ownership) as Arc<dyn Tenures>,
                p,
            )
            .await?,
        );
        engine.follow_clock(Arc::clone(&self.clock));
        self.engines().insert(p, Arc::clone(&engine));
        Ok(engine)
    }

    /// The engine of `queue`'s partition (by the bucket's partition count).
    pub async fn for_queue(
        &self,
        queue: &QueueName,
    ) -> Result<Arc<PartitionEngine<K>>, StoreError> {
        let count = self.ownership.partitions().ok_or_else(|| {
            StoreError::Unavailable("this node has not yet read the partition count".into())
        })?;
        self.engine(partition_of(queue, count)).await
    }
}
