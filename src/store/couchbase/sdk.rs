//! [`Kv`] over a Couchbase bucket, through the official SDK: every call
//! bounded by the configured timeout, keys prefixed, durable writes at the
//! configured level.

use std::time::Duration;

use couchbase::authenticator::PasswordAuthenticator;
use couchbase::cluster::Cluster;
use couchbase::collection::Collection;
use couchbase::error::ErrorKind;
use couchbase::options::cluster_options::ClusterOptions;
use couchbase::options::kv_options::{InsertOptions, RemoveOptions, ReplaceOptions, UpsertOptions};

use super::kv::Kv;
use super::settings::CouchbaseSettings;
use crate::store::StoreError;

/// A collection of a Couchbase cluster.
pub struct SdkBucket {
    // Kept alive: dropping the cluster closes its connections.
    _cluster: Cluster,
    collection: Collection,
    settings: CouchbaseSettings,
}

impl std::fmt::Debug for SdkBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SdkBucket")
            .field("settings", &self.settings)
            .finish()
    }
}

/// An SDK call under a time limit: the call's own result, or the store's
/// error when it did not answer in time.
type Bounded<'a, T> = std::pin::Pin<
    Box<
        dyn std::future::Future<Output = Result<couchbase::error::Result<T>, StoreError>>
            + Send
            + 'a,
    >,
>;

fn binary_flags() -> u32 {
    couchbase::transcoding::raw_binary::encode(&[])
        .map(|(_, f)| f)
        .unwrap_or(0)
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("couchbase: {what}: {e}"))
}

/// A durable write's failure, saying what to do when the bucket has fewer
/// replicas available than the durability asks for.
fn not_written(what: &str, e: couchbase::error::Error) -> StoreError {
    if matches!(e.kind(), ErrorKind::DurabilityImpossible) {
        return unavailable(
            what,
            format!("{e}: the bucket has fewer replicas available than store.couchbase.durability asks for (give it replicas on other nodes, or set the durability to \"none\" for a cluster of one node)"),
        );
    }
    unavailable(what, e)
}

impl SdkBucket {
    pub async fn connect(settings: CouchbaseSettings) -> Result<Self, StoreError> {
        let options = ClusterOptions::new(
            PasswordAuthenticator::new(settings.username.clone(), settings.password.clone()).into(),
        );
        let connecting: std::pin::Pin<
            Box<dyn std::future::Future<Output = couchbase::error::Result<Cluster>> + Send>,
        > = Box::pin(Cluster::connect(
            settings.connection_string.clone(),
            options,
        ));
        let cluster = tokio::time::timeout(settings.timeout(), connecting)
            .await
            .map_err(|_| unavailable("connecting", "timed out"))?
            .map_err(|e| unavailable("connecting", e))?;
        let collection = cluster
            .bucket(settings.bucket.clone())
            .scope(settings.scope.clone())
            .collection(settings.collection.clone());
        Ok(Self {
            _cluster: cluster,
            collection,
            settings,
        })
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.settings.key_prefix)
    }

    /// `call`, bounded by the configured timeout, boxed: the SDK's futures
    /// nest deeply, and unboxed they would make every future of the store
    /// (and of its callers) too deep for the compiler to lay out.
    fn bounded<'a, T: Send + 'a>(
        &'a self,
        what: &'a str,
        call: impl std::future::Future<Output = couchbase::error::Result<T>> + Send + 'a,
    ) -> Bounded<'a, T> {
        let limit = self.settings.timeout();
        Box::pin(async move {
            tokio::time::timeout(limit, call)
                .await
                .map_err(|_| unavailable(what, format!("no answer within {limit:?}")))
        })
    }

    fn level(&self, durable: bool) -> Option<couchbase::durability_level::DurabilityLevel> {
        durable.then(|| self.settings.durability.level()).flatten()
    }
}

impl Kv for SdkBucket {
    async fn get(&self, name: &str) -> Result<Option<(Vec<u8>, u64)>, StoreError> {
        match self
            .bounded(name, self.collection.get(self.key(name), None))
            .await?
        {
            Ok(r) => Ok(Some((r.content_as_raw().0.to_vec(), r.cas()))),
            Err(e) if matches!(e.kind(), ErrorKind::DocumentNotFound) => Ok(None),
            Err(e) => Err(unavailable(name, e)),
        }
    }

    async fn insert(
        &self,
        name: &str,
        bytes: &[u8],
        expiry: Option<Duration>,
        durable: bool,
    ) -> Result<Option<u64>, StoreError> {
        let mut options = InsertOptions::new();
        if let Some(e) = expiry {
            options = options.expiry(e);
        }
        if let Some(level) = self.level(durable) {
            options = options.durability_level(level);
        }
        let call = self
            .collection
            .insert_raw(self.key(name), bytes, binary_flags(), options);
        match self.bounded(name, call).await? {
            Ok(r) => Ok(Some(r.cas())),
            Err(e) if matches!(e.kind(), ErrorKind::DocumentExists) => Ok(None),
            Err(e) => Err(not_written(name, e)),
        }
    }

    async fn upsert(
        &self,
        name: &str,
        bytes: &[u8],
        expiry: Option<Duration>,
        durable: bool,
    ) -> Result<(), StoreError> {
        let mut options = UpsertOptions::new();
        if let Some(e) = expiry {
            options = options.expiry(e);
        }
        if let Some(level) = self.level(durable) {
            options = options.durability_level(level);
        }
        let call = self
            .collection
            .upsert_raw(self.key(name), bytes, binary_flags(), options);
        self.bounded(name, call)
            .await?
            .map(|_| ())
            .map_err(|e| not_written(name, e))
    }

    async fn replace(
        &self,
        name: &str,
        bytes: &[u8],
        cas: u64,
        expiry: Option<Duration>,
        durable: bool,
    ) -> Result<Option<u64>, StoreError> {
        let mut options = ReplaceOptions::new().cas(cas);
        if let Some(e) = expiry {
            options = options.expiry(e);
        }
        if let Some(level) = self.level(durable) {
            options = options.durability_level(level);
        }
        let call = self
            .collection
            .replace_raw(self.key(name), bytes, binary_flags(), options);
        match self.bounded(name, call).await? {
            Ok(r) => Ok(Some(r.cas())),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::CasMismatch | ErrorKind::DocumentNotFound
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(not_written(name, e)),
        }
    }

    async fn remove(&self, name: &str, cas: Option<u64>) -> Result<(), StoreError> {
        let mut options = RemoveOptions::new();
        if let Some(c) = cas {
            options = options.cas(c);
        }
        match self
            .bounded(name, self.collection.remove(self.key(name), options))
            .await?
        {
            Ok(_) => Ok(()),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::DocumentNotFound | ErrorKind::CasMismatch
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(unavailable(name, e)),
        }
    }

    async fn touch(&self, name: &str, after: Duration) -> Result<(), StoreError> {
        let call = self.collection.touch(self.key(name), after, None);
        match self.bounded(name, call).await? {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.kind(), ErrorKind::DocumentNotFound) => Ok(()),
            Err(e) => Err(unavailable(name, e)),
        }
    }
}
