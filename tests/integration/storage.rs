//! The storage conformance suite against the embedded backend.

use std::sync::Arc;

use crate::conformance::{Harness, HISTORY};
use async_trait::async_trait;
use interq::store::embedded::EmbeddedStore;
use interq::store::Store;

struct Embedded {
    dir: tempfile::TempDir,
}

#[async_trait]
impl Harness for Embedded {
    async fn open(&mut self) -> Arc<dyn Store> {
        Arc::new(
            EmbeddedStore::open_dir(self.dir.path(), HISTORY)
                .await
                .expect("open the embedded store"),
        )
    }

    async fn reopen(&mut self, store: Arc<dyn Store>) -> Arc<dyn Store> {
        // The only handle: dropping it joins the commit thread and closes the
        // file, as a process exit would.
        drop(store);
        self.open().await
    }
}

crate::conformance_tests!(Embedded {
    dir: tempfile::tempdir().expect("a temporary directory"),
});

/// The same suite against a Couchbase cluster, when one is configured.
#[cfg(feature = "couchbase")]
mod couchbase {
    use super::*;
    use interq::store::couchbase::{CouchbaseSettings, CouchbaseStore};
    use interq::store::engine::Retention;

    pub struct Couchbase {
        settings: CouchbaseSettings,
    }

    pub fn harness() -> Option<Couchbase> {
        crate::helpers::couchbase_settings("the Couchbase conformance case")
            .map(|settings| Couchbase { settings })
    }

    #[async_trait]
    impl Harness for Couchbase {
        async fn open(&mut self) -> Arc<dyn Store> {
            let retention = Retention {
                finished_per_queue: HISTORY,
                ..Retention::default()
            };
            Arc::new(
                CouchbaseStore::open_couchbase(self.settings.clone(), retention)
                    .await
                    .expect("open the Couchbase store"),
            )
        }

        async fn reopen(&mut self, store: Arc<dyn Store>) -> Arc<dyn Store> {
            drop(store);
            self.open().await
        }
    }

    crate::conformance_tests!(optional harness());
}

/// The same suite against the Couchbase log's own code (its lock, entries,
/// snapshots and retention) over a bucket in memory with Couchbase's rules:
/// what runs here in place of a cluster.
mod shared_bucket {
    use super::*;
    use interq::store::couchbase::{CouchbaseSettings, MemoryBucket};
    use interq::store::engine::{Engine, Retention};

    pub struct SharedBucket {
        bucket: Arc<MemoryBucket>,
    }

    #[async_trait]
    impl Harness for SharedBucket {
        async fn open(&mut self) -> Arc<dyn Store> {
            let retention = Retention {
                finished_per_queue: HISTORY,
                ..Retention::default()
            };
            Arc::new(
                Engine::open_shared(
                    Arc::clone(&self.bucket),
                    CouchbaseSettings::default(),
                    retention,
                )
                .await
                .expect("open a node over the bucket"),
            )
        }

        async fn reopen(&mut self, store: Arc<dyn Store>) -> Arc<dyn Store> {
            // A new node on the same bucket: what it knows comes from the
            // bucket's documents alone.
            drop(store);
            self.open().await
        }
    }

    crate::conformance_tests!(SharedBucket {
        bucket: MemoryBucket::new(),
    });
}
