//! The Couchbase backend: several nodes serve one store through a bucket.
//! The log (`log`, with its lock and retention) is written over the
//! key-value calls of [`kv::Kv`]: the SDK answers them (`sdk`, built with
//! the `couchbase` cargo feature), and so does [`MemoryBucket`], which the
//! tests run the log's own code over where no cluster can run. The settings
//! are always known, so that a build without the SDK can say so when asked
//! for it rather than refuse the settings file.

mod chain;
mod group;
pub mod kv;
pub mod lock;
mod log;
pub mod memory;
pub mod owned;
pub mod partitions;
pub mod retention;
#[cfg(feature = "couchbase")]
mod sdk;
mod settings;

#[cfg(feature = "couchbase")]
pub use self::log::CouchbaseStore;
pub use self::log::{CouchbaseLog, FORMAT_VERSION};
pub use self::memory::MemoryBucket;
pub use self::settings::{CouchbaseSettings, Durability};

/// Whether this build has the Couchbase backend.
pub const BUILT_IN: bool = cfg!(feature = "couchbase");

/// What a build without it answers `store.kind = "couchbase"`.
pub const NOT_BUILT_IN: &str = "store.kind is \"couchbase\", but this interq was built without the Couchbase backend: build it with `cargo build --release --features couchbase`";
