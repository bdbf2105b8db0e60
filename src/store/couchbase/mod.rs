//! The Couchbase backend: several nodes serve one store through a bucket
//! (`bucket`, built with the `couchbase` cargo feature). Its settings are
//! always known, so that a build without the backend can say so when asked
//! for it rather than refuse the settings file.

#[cfg(feature = "couchbase")]
mod bucket;
pub mod lock;
pub mod retention;
mod settings;

#[cfg(feature = "couchbase")]
pub use self::bucket::{CouchbaseLog, CouchbaseStore, FORMAT_VERSION};
pub use self::settings::{CouchbaseSettings, Durability};

/// Whether this build has the Couchbase backend.
pub const BUILT_IN: bool = cfg!(feature = "couchbase");

/// What a build without it answers `store.kind = "couchbase"`.
pub const NOT_BUILT_IN: &str = "store.kind is \"couchbase\", but this interq was built without the Couchbase backend: build it with `cargo build --release --features couchbase`";
