//! The key-value calls the Couchbase log makes, as a trait: the bucket
//! answers them through the SDK (`sdk`), and [`super::memory`] answers them
//! in memory with the same rules (CAS, insert that fails on an existing
//! document, expiry), so that the log's own protocol runs in CI: the storage
//! conformance suite, several nodes in one process, and faults injected
//! between any two calls.
//!
//! Names are the log's, without the configured key prefix.

use std::future::Future;
use std::time::Duration;

use crate::store::StoreError;

pub trait Kv: Send + Sync + std::fmt::Debug + 'static {
    /// A document's bytes and CAS; `None` when it does not exist.
    fn get(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<(Vec<u8>, u64)>, StoreError>> + Send;

    /// Creates a document, expiring after `expiry` if given: its CAS, or
    /// `None` when it exists. `durable` asks for the configured durability.
    fn insert(
        &self,
        name: &str,
        bytes: &[u8],
        expiry: Option<Duration>,
        durable: bool,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// Writes a document whether or not it exists.
    fn upsert(
        &self,
        name: &str,
        bytes: &[u8],
        expiry: Option<Duration>,
        durable: bool,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Replaces the version `cas` of a document, expiring after `expiry` if
    /// given: its new CAS, or `None` when it changed or went. `durable` asks
    /// for the configured durability.
    fn replace(
        &self,
        name: &str,
        bytes: &[u8],
        cas: u64,
        expiry: Option<Duration>,
        durable: bool,
    ) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;

    /// Removes a document, only the version `cas` if given; one that is gone
    /// or changed is no error.
    fn remove(
        &self,
        name: &str,
        cas: Option<u64>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Gives a document an expiry, `after` from now; one that is gone is no
    /// error.
    fn touch(
        &self,
        name: &str,
        after: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Where partition `p`'s own documents are: its log, snapshots, payloads
/// and task-log pages, named as the cluster's log names its own.
pub fn partition_space(p: u32) -> String {
    format!("p{p}::")
}

/// The documents of `kv` whose names begin with `prefix`, under the names
/// that follow it: a partition's log is the cluster log's code over them.
#[derive(Debug)]
pub struct Scoped<K: Kv> {
    kv: std::sync::Arc<K>,
    prefix: String,
}

impl<K: Kv> Scoped<K> {
    pub fn new(kv: std::sync::Arc<K>, prefix: String) -> Self {
        Self { kv, prefix }
    }

    fn name(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

impl<K: Kv> Kv for Scoped<K> {
    async fn get(&self, name: &str) -> Result<Option<(Vec<u8>, u64)>, StoreError> {
        self.kv.get(&self.name(name)).await
    }

    async fn insert(
        &self,
        name: &str,
        bytes: &[u8],
        expiry: Option<Duration>,
        durable: bool,
    ) -> Result<Option<u64>, StoreError> {
        self.kv
            .insert(&self.name(name), bytes, expiry, durable)
            .await
    }

    async fn upsert(
        &self,
        name: &str,
        bytes: &[u8],
        expiry: Option<Duration>,
        durable: bool,
    ) -> Result<(), StoreError> {
        self.kv
            .upsert(&self.name(name), bytes, expiry, durable)
            .await
    }

    async fn replace(
        &self,
        name: &str,
        bytes: &[u8],
        cas: u64,
        expiry: Option<Duration>,
        durable: bool,
    ) -> Result<Option<u64>, StoreError> {
        self.kv
            .replace(&self.name(name), bytes, cas, expiry, durable)
            .await
    }

    async fn remove(&self, name: &str, cas: Option<u64>) -> Result<(), StoreError> {
        self.kv.remove(&self.name(name), cas).await
    }

    async fn touch(&self, name: &str, after: Duration) -> Result<(), StoreError> {
        self.kv.touch(&self.name(name), after).await
    }
}
