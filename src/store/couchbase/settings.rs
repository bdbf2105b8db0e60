//! `[store.couchbase]`: where the cluster is and how to talk to it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where and how to reach the cluster: `[store.couchbase]` in the
/// settings.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CouchbaseSettings {
    /// `couchbase://host1,host2` (or `couchbases://` for TLS).
    pub connection_string: String,
    pub username: String,
    /// A secret: kept out of `Debug` and logs.
    pub password: String,
    pub bucket: String,
    pub scope: String,
    pub collection: String,
    /// Every document's key starts with it: several interq clusters (or
    /// tests) can share one collection.
    pub key_prefix: String,
    /// Bound on every SDK call, in ms: some retry for a long time or forever
    /// (an unknown bucket, a wrong password, a locked document).
    pub timeout_ms: u64,
    /// What a commit waits for (see `Durability`).
    pub durability: Durability,
    /// How many partitions a bucket new to interq is given; one used before
    /// keeps its own count (`docs/couchbase.md`, Partitions).
    pub partitions: u32,
    /// How long a node's lease on a partition lasts, in ms: a dead node's
    /// partitions are taken over about this long after it died.
    pub lease_ms: u64,
}

impl Default for CouchbaseSettings {
    fn default() -> Self {
        Self {
            connection_string: String::new(),
            username: String::new(),
            password: String::new(),
            bucket: "interq".into(),
            scope: "_default".into(),
            collection: "_default".into(),
            key_prefix: "interq::".into(),
            timeout_ms: 10_000,
            // What survives the failover of a data node: an entry
            // acknowledged once only the active node had it in memory dies
            // with that node.
            durability: Durability::Majority,
            partitions: 16,
            lease_ms: 6_000,
        }
    }
}

impl CouchbaseSettings {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn leases(&self) -> super::partitions::LeaseSettings {
        super::partitions::LeaseSettings {
            partitions: self.partitions,
            lease: Duration::from_millis(self.lease_ms),
        }
    }
}

/// Couchbase's durability levels, for the writes that commit a change:
/// `none` (the active node has it in memory), `majority`,
/// `majority_and_persist_active`, `persist_to_majority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    None,
    Majority,
    MajorityAndPersistActive,
    PersistToMajority,
}

#[cfg(feature = "couchbase")]
impl Durability {
    pub(super) fn level(self) -> Option<couchbase::durability_level::DurabilityLevel> {
        use couchbase::durability_level::DurabilityLevel as L;
        match self {
            Self::None => None,
            Self::Majority => Some(L::MAJORITY),
            Self::MajorityAndPersistActive => Some(L::MAJORITY_AND_PERSIST_ACTIVE),
            Self::PersistToMajority => Some(L::PERSIST_TO_MAJORITY),
        }
    }
}

impl std::fmt::Debug for CouchbaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CouchbaseSettings")
            .field("connection_string", &self.connection_string)
            .field("username", &self.username)
            .field("password", &"<secret>")
            .field("bucket", &self.bucket)
            .field("scope", &self.scope)
            .field("collection", &self.collection)
            .field("key_prefix", &self.key_prefix)
            .field("timeout_ms", &self.timeout_ms)
            .field("durability", &self.durability)
            .field("partitions", &self.partitions)
            .field("lease_ms", &self.lease_ms)
            .finish()
    }
}
