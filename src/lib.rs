//! interq: a pub/sub, interest-routing job queue service.
//!
//! Publishers `PUT /task`; the [`interest`] matcher routes each task to every
//! queue whose interests match and the broker stores one copy per queue (or per
//! worker, for `scope: all`). Workers register, claim copies under a lease,
//! and complete or fail them; failures retry with backoff.
//!
//! Layers, each only calling down: `api` (HTTP, parsing, error mapping) ->
//! `broker` (behaviour; no HTTP) -> `store` (durable state; no behaviour
//! policy) -> `model` (plain types). `web` (the management site under
//! `/admin`) sits beside `api`, over the broker. `config`, `telemetry` and `startup` wire
//! them together for `main`.

pub mod api;
pub mod auth;
pub mod bench;
pub mod broker;
pub mod cli;
pub mod client;
pub mod config;
pub mod line;
pub mod metrics;
pub mod model;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod web;
pub mod worker;
