//! Integration tests, compiled into one binary: the real server on a random
//! port over real HTTP, and the storage conformance suite.

mod admin;
mod archive;
mod bad_input;
mod batches;
mod bench;
mod browser;
mod bucket_lock;
mod bulk;
mod cli;
mod client;
#[cfg(feature = "couchbase")]
mod cluster;
mod conformance;
mod dependencies;
mod durability;
mod executor;
mod faults;
mod group_commit;
mod groups;
mod hardening;
mod helpers;
mod lifecycle;
mod limits;
mod line;
mod logs;
mod model;
mod operations;
mod partition_logs;
mod partitions;
mod publish;
mod retention;
mod schedules;
mod search;
mod simulation;
mod status;
mod storage;
mod worker;
mod workflows;
