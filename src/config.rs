//! Settings, layered: compiled-in defaults < `interq.toml` (or the file named
//! by `--config`) < `INTERQ_*` environment variables (`__` between levels:
//! `INTERQ_TASKS__TTR_SECS=60`) < command-line flags.

use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};
use serde::{Deserialize, Serialize};

use crate::broker::BrokerSettings;
use crate::model::RetryPolicy;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Address and port to listen on.
    pub listen: String,
    /// Where the embedded store keeps its file.
    pub data_dir: PathBuf,
    pub store: StoreSettings,
    pub log: LogSettings,
    pub limits: LimitSettings,
    pub tasks: TaskSettings,
    pub workers: WorkerSettings,
    pub auth: AuthSettings,
    pub tls: TlsSettings,
    pub line: LineSettings,
    /// Seconds a graceful shutdown may take: requests in flight get this long
    /// to finish.
    pub shutdown_timeout_secs: u64,
    pub site: SiteSettings,
    pub testing: TestingSettings,
}

/// The management site.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SiteSettings {
    /// Signs the site's form tokens. Give every node behind one address the
    /// same one; without it each process draws its own at start (and forms
    /// open before a restart must be reloaded). A secret: never logged.
    pub secret: Option<String>,
}

impl std::fmt::Debug for SiteSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SiteSettings")
            .field("secret", &self.secret.as_ref().map(|_| "<secret>"))
            .finish()
    }
}

/// Keys, by role, as hashes made by `interq key new`
/// (`sha256:<salt>:<digest>`). No key at all turns auth off.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    pub admin: Vec<String>,
    pub publisher: Vec<String>,
    pub worker: Vec<String>,
    /// Keys that see everything an admin sees and change nothing.
    pub viewer: Vec<String>,
    /// Keys with more to say than a role: a label, and the queues they may
    /// use (`[[auth.keys]]`).
    pub keys: Vec<KeyConfig>,
}

impl std::fmt::Debug for KeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyConfig")
            .field("roles", &self.roles)
            .field("role", &self.role)
            .field("label", &self.label)
            .field("queues", &self.queues)
            .finish_non_exhaustive()
    }
}

/// One `[[auth.keys]]` entry.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// `admin`, `publisher`, `worker` or `viewer`; or several in `roles`.
    #[serde(default)]
    pub role: Option<crate::auth::Role>,
    #[serde(default)]
    pub roles: Vec<crate::auth::Role>,
    /// As `interq key new` prints it.
    pub hash: String,
    /// A name for people, shown in the audit log and as a worker's owner.
    #[serde(default)]
    pub label: Option<String>,
    /// Queue names or patterns (`*` for any run of characters) the key may
    /// publish to, register on and claim from; all when absent.
    #[serde(default)]
    pub queues: Option<Vec<String>>,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Hashes, not keys, but nothing about credentials belongs in logs.
        f.debug_struct("AuthSettings")
            .field("admin", &self.admin.len())
            .field("publisher", &self.publisher.len())
            .field("worker", &self.worker.len())
            .field("keys", &self.keys.len())
            .finish()
    }
}

/// Which store holds the state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSettings {
    pub kind: StoreKind,
    /// The cluster, with `kind = "couchbase"`.
    pub couchbase: crate::store::couchbase::CouchbaseSettings,
    /// The embedded store checks every page of its file before serving, so
    /// that a damaged file is refused at start-up rather than met by a claim.
    pub check_on_open: bool,
    /// A damaged or empty embedded store file is moved aside (kept beside
    /// it) and an empty store started, instead of refusing to start.
    pub start_fresh: bool,
    /// Bytes of one segment of the embedded store's write-ahead log,
    /// allocated ahead.
    pub wal_segment_bytes: u64,
    /// Changes held in memory (and in the log) that start a checkpoint
    /// into the file, in bytes.
    pub checkpoint_bytes: usize,
    /// Longest time between checkpoints, in ms.
    pub checkpoint_every_ms: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            kind: StoreKind::default(),
            couchbase: Default::default(),
            check_on_open: true,
            start_fresh: false,
            wal_segment_bytes: 64 << 20,
            checkpoint_bytes: 32 << 20,
            checkpoint_every_ms: 2000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// One node, a file in `data_dir`.
    #[default]
    Embedded,
    /// Any number of nodes sharing one Couchbase bucket.
    Couchbase,
}

/// Serve HTTPS with this certificate chain and private key (PEM files).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    pub cert_path: Option<PathBuf>,
    pub key_path: Option<PathBuf>,
}

/// The pipelined protocol: JSON calls, one per line, over TCP (see
/// docs/protocol.md). Off unless `listen` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LineSettings {
    /// Address and port to listen on (`127.0.0.1:7701`); TLS as `tls` says.
    pub listen: Option<String>,
    /// Longest line a client may send, in bytes; a longer one is answered
    /// with an error and skipped.
    pub max_line_bytes: usize,
    /// Calls one connection may have in flight; past it the server reads no
    /// more of its lines until one is answered.
    pub max_in_flight: usize,
}

impl Default for LineSettings {
    fn default() -> Self {
        Self {
            listen: None,
            max_line_bytes: (4 << 20) + 4096,
            max_in_flight: 256,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `human` or `json`.
    pub format: LogFormat,
    /// A `RUST_LOG`-style filter, used when `RUST_LOG` is not set.
    pub filter: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Most tasks in one batch publish.
    pub max_batch: usize,
    /// Most tasks one claim may ask for (`count`).
    pub max_claim_count: usize,
    /// Longest long poll (`wait`), in seconds.
    pub max_wait_secs: u64,
    /// Longest `publisher`, `failReason` and `progress`, in bytes.
    pub max_text_bytes: usize,
    /// Largest `output` a worker may attach, in bytes of JSON.
    pub max_output_bytes: usize,
    /// Largest piece of a task's log one append may carry, in bytes.
    pub max_log_append_bytes: usize,
    /// Fields one queue's interests may list.
    pub max_interest_fields: usize,
    /// Bytes of one interest pattern.
    pub max_pattern_bytes: usize,
    /// Bytes one compiled pattern may take.
    pub max_compiled_pattern_bytes: usize,
    /// What one queue's interests may cost to match (see
    /// `interest::Limits::max_cost`).
    pub max_interest_cost: usize,
    /// Seconds a request's body may take to arrive (408 after).
    pub body_timeout_secs: f64,
    /// Seconds a client may take to send a request's head.
    pub header_timeout_secs: f64,
    /// Connections held at once; past it, requests are answered 503 and the
    /// connection closed (`/healthz` and `/readyz` still answered).
    pub max_connections: usize,
    /// Connections one client address may hold at once (429 past it).
    pub max_connections_per_client: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TaskSettings {
    /// Seconds a claim may run before its lease runs out (`ttr`).
    pub ttr_secs: u32,
    pub max_ttr_secs: u32,
    /// Attempts before a failing task goes to the failed set.
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles for each further one.
    pub retry_base_secs: f64,
    pub retry_max_secs: f64,
    /// Fraction of a backoff drawn at random either way.
    pub retry_jitter: f64,
    /// Finished (completed, cancelled, expired) copies kept in memory per
    /// queue; older ones go to the archive (embedded store) or away.
    pub history: usize,
    /// Seconds the embedded store's archive keeps a finished copy after it
    /// left memory; 0: no archive (finished copies are deleted).
    pub archive_secs: u64,
    /// The newest archived copies of each queue kept however old.
    pub archive_at_least: usize,
    /// Failed copies kept per queue.
    pub failed_per_queue: usize,
    /// Seconds a finished copy is kept before the sweep removes it.
    pub keep_finished_secs: u64,
    /// Seconds a failed copy is kept before the sweep removes it.
    pub keep_failed_secs: u64,
    /// Most copies one sweep (one tick) removes.
    pub sweep_batch: usize,
    /// How often scheduled tasks, leases and idle workers are checked, in ms.
    pub tick_ms: u64,
    /// The last bytes of each task's log (its command's output, as its
    /// worker sends it) kept with the task; 0 keeps no logs.
    pub log_kept_bytes: u64,
    /// Least time between two appends to one task's log, in ms (sooner is
    /// answered 429: a worker sends what came meanwhile with its next).
    pub log_every_ms: u64,
    /// Most steps of outputs published on as tasks (`publishOutput`) from a
    /// client's publish; a copy whose output would go deeper fails, which
    /// ends a loop of queues feeding each other.
    pub max_output_depth: u32,
    /// Seconds the publish log keeps a client's publish, for an interest
    /// set with `replay` to copy in; 0 keeps no log.
    pub replay_keep_secs: u64,
    /// Most bytes (about) the publish log holds; the oldest go first.
    pub replay_max_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkerSettings {
    /// Seconds without a poll before a worker shows as STALE.
    pub stale_after_secs: u64,
    /// Seconds without a poll before an idle worker is removed.
    pub idle_timeout_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TestingSettings {
    /// Runs on a clock that only `POST /_testing/clock` moves. For tests only.
    pub manual_clock: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7700".into(),
            data_dir: PathBuf::from("data"),
            store: StoreSettings::default(),
            log: LogSettings::default(),
            limits: LimitSettings::default(),
            tasks: TaskSettings::default(),
            workers: WorkerSettings::default(),
            auth: AuthSettings::default(),
            tls: TlsSettings::default(),
            line: LineSettings::default(),
            shutdown_timeout_secs: 10,
            site: SiteSettings::default(),
            testing: TestingSettings::default(),
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Human,
            filter: "info".into(),
        }
    }
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 << 20,
            max_batch: 1000,
            max_claim_count: 1000,
            max_wait_secs: 60,
            max_text_bytes: 4096,
            max_output_bytes: 65_536,
            max_log_append_bytes: 262_144,
            max_interest_fields: 32,
            max_pattern_bytes: 1024,
            max_compiled_pattern_bytes: 1 << 20,
            max_interest_cost: 16_384,
            body_timeout_secs: 30.0,
            header_timeout_secs: 5.0,
            max_connections: 4096,
            max_connections_per_client: 512,
        }
    }
}

impl Default for TaskSettings {
    fn default() -> Self {
        Self {
            ttr_secs: 300,
            max_ttr_secs: 86_400,
            max_attempts: 5,
            retry_base_secs: 2.0,
            retry_max_secs: 3600.0,
            retry_jitter: 0.2,
            history: 100,
            archive_secs: 3600,
            archive_at_least: 10_000,
            failed_per_queue: 100_000,
            keep_finished_secs: 7 * 86_400,
            keep_failed_secs: 30 * 86_400,
            sweep_batch: 1000,
            tick_ms: 100,
            log_kept_bytes: 1 << 20,
            log_every_ms: 200,
            max_output_depth: 32,
            replay_keep_secs: 600,
            replay_max_bytes: 64 << 20,
        }
    }
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            stale_after_secs: 60,
            idle_timeout_secs: 600,
        }
    }
}

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("settings: {0}")]
    Config(#[from] config::ConfigError),
    #[error("settings: {0}")]
    Invalid(String),
}

impl Settings {
    /// Loads the layers. `file` is an explicit settings file (which must
    /// exist); without it `interq.toml` in the working directory is read if
    /// present. `overrides` are flag values as (key, value).
    pub fn load(file: Option<&Path>, overrides: &[(&str, String)]) -> Result<Self, SettingsError> {
        let mut builder = Config::builder().add_source(Config::try_from(&Settings::default())?);
        builder = match file {
            Some(path) => builder.add_source(File::from(path).format(FileFormat::Toml)),
            // Only `interq.toml`: a bare name would also find a file called
            // `interq` (the binary itself, in its own directory).
            None => builder.add_source(
                File::from(Path::new("interq.toml"))
                    .format(FileFormat::Toml)
                    .required(false),
            ),
        };
        // Only variables that name a setting: others share the prefix
        // (`INTERQ_KEY` for the bench, `INTERQ_TASK_ID` for a worker's
        // command, `INTERQ_COUCHBASE_CONNSTR` for the tests) and would be
        // refused as unknown settings.
        let sections: Vec<String> = match serde_json::to_value(Settings::default()) {
            Ok(serde_json::Value::Object(map)) => map.keys().map(|k| k.to_uppercase()).collect(),
            _ => Vec::new(),
        };
        let variables: std::collections::HashMap<String, String> = std::env::vars()
            .filter(|(name, _)| {
                name.strip_prefix("INTERQ_").is_some_and(|rest| {
                    let section = rest.split("__").next().unwrap_or_default();
                    sections.iter().any(|s| s == section)
                })
            })
            .collect();
        builder = builder.add_source(
            Environment::with_prefix("INTERQ")
                .source(Some(variables))
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("auth.admin")
                .with_list_parse_key("auth.publisher")
                .with_list_parse_key("auth.worker")
                .with_list_parse_key("auth.viewer"),
        );
        for (key, value) in overrides {
            builder = builder.set_override(*key, value.as_str())?;
        }
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        let t = &self.tasks;
        let check = |ok: bool, what: &str| {
            if ok {
                Ok(())
            } else {
                Err(SettingsError::Invalid(what.to_owned()))
            }
        };
        check(
            t.ttr_secs > 0 && t.ttr_secs <= t.max_ttr_secs,
            "tasks.ttr_secs must be from 1 to tasks.max_ttr_secs",
        )?;
        check(t.max_attempts > 0, "tasks.max_attempts must be at least 1")?;
        check(
            t.retry_base_secs >= 0.0 && t.retry_max_secs >= t.retry_base_secs,
            "tasks.retry_base_secs must be >= 0 and <= tasks.retry_max_secs",
        )?;
        check(
            (0.0..=1.0).contains(&t.retry_jitter),
            "tasks.retry_jitter must be from 0 to 1",
        )?;
        check(t.tick_ms > 0, "tasks.tick_ms must be at least 1")?;
        check(
            (1..=10_000).contains(&t.max_output_depth),
            "tasks.max_output_depth must be from 1 to 10000",
        )?;
        check(
            t.log_kept_bytes <= 1 << 30,
            "tasks.log_kept_bytes must be at most 1073741824",
        )?;
        check(
            t.replay_keep_secs <= 7 * 86_400 && t.replay_max_bytes <= 16 << 30,
            "tasks.replay_keep_secs must be at most 604800 and tasks.replay_max_bytes at most 17179869184",
        )?;
        check(
            self.limits.max_batch > 0 && self.limits.max_claim_count > 0,
            "limits.max_batch and limits.max_claim_count must be at least 1",
        )?;
        let st = &self.store;
        check(
            st.wal_segment_bytes >= 64 << 10 && st.checkpoint_bytes >= 64 << 10 && st.checkpoint_every_ms >= 10,
            "store.wal_segment_bytes and store.checkpoint_bytes must be at least 65536, store.checkpoint_every_ms at least 10",
        )?;
        let l = &self.limits;
        check(
            l.body_timeout_secs > 0.0 && l.body_timeout_secs <= 3600.0,
            "limits.body_timeout_secs must be above 0 and at most 3600",
        )?;
        check(
            l.header_timeout_secs > 0.0 && l.header_timeout_secs <= 3600.0,
            "limits.header_timeout_secs must be above 0 and at most 3600",
        )?;
        check(
            l.max_connections > 0 && l.max_connections_per_client > 0,
            "limits.max_connections and limits.max_connections_per_client must be at least 1",
        )?;
        check(
            self.line.max_line_bytes >= 1024 && self.line.max_in_flight > 0,
            "line.max_line_bytes must be at least 1024, line.max_in_flight at least 1",
        )?;
        check(
            self.tls.cert_path.is_some() == self.tls.key_path.is_some(),
            "tls.cert_path and tls.key_path go together",
        )?;
        if self.store.kind == StoreKind::Couchbase {
            let c = &self.store.couchbase;
            check(
                crate::store::couchbase::BUILT_IN,
                crate::store::couchbase::NOT_BUILT_IN,
            )?;
            check(
                !c.connection_string.is_empty(),
                "store.couchbase.connection_string is required with store.kind = \"couchbase\"",
            )?;
            check(
                !c.username.is_empty() && !c.bucket.is_empty(),
                "store.couchbase.username and store.couchbase.bucket are required",
            )?;
            check(
                c.timeout_ms >= 100,
                "store.couchbase.timeout_ms must be at least 100",
            )?;
            check(
                (1..=1024).contains(&c.partitions),
                "store.couchbase.partitions must be between 1 and 1024",
            )?;
            check(
                (3_000..=600_000).contains(&c.lease_ms),
                "store.couchbase.lease_ms must be between 3000 and 600000 (a lease is trusted for three quarters of it less a second)",
            )?;
        }
        self.keys()?;
        Ok(())
    }

    /// The configured keys, parsed.
    pub fn keys(&self) -> Result<crate::auth::Keys, SettingsError> {
        use crate::auth::{KeyEntry, KeyHash, Role};
        let mut keys = Vec::new();
        for (role, hashes) in [
            (Role::Admin, &self.auth.admin),
            (Role::Publisher, &self.auth.publisher),
            (Role::Worker, &self.auth.worker),
            (Role::Viewer, &self.auth.viewer),
        ] {
            for (i, h) in hashes.iter().enumerate() {
                let hash = KeyHash::parse(h)
                    .map_err(|e| SettingsError::Invalid(format!("auth.{role}[{i}]: {e}")))?;
                keys.push(KeyEntry {
                    roles: vec![role],
                    hash,
                    label: None,
                    queues: None,
                });
            }
        }
        for (i, k) in self.auth.keys.iter().enumerate() {
            let at = |what: &str| SettingsError::Invalid(format!("auth.keys[{i}].{what}"));
            let hash = KeyHash::parse(&k.hash).map_err(|e| at(&format!("hash: {e}")))?;
            let mut roles = k.roles.clone();
            roles.extend(k.role);
            if roles.is_empty() {
                return Err(at("role: give `role` or `roles`"));
            }
            if let Some(label) = &k.label {
                if label.is_empty() || label.len() > 64 || label.chars().any(char::is_control) {
                    return Err(at("label: 1 to 64 bytes without control characters"));
                }
            }
            let queues = k
                .queues
                .clone()
                .map(crate::model::QueueFilter::new)
                .transpose()
                .map_err(|e| at(&format!("queues: {e}")))?;
            keys.push(KeyEntry {
                roles,
                hash,
                label: k.label.clone(),
                queues,
            });
        }
        Ok(crate::auth::Keys::new(keys))
    }

    /// How long the store keeps finished and failed copies.
    pub fn retention(&self) -> crate::store::engine::Retention {
        let t = &self.tasks;
        crate::store::engine::Retention {
            finished_per_queue: t.history,
            failed_per_queue: t.failed_per_queue,
            finished_ms: t.keep_finished_secs.saturating_mul(1000),
            failed_ms: t.keep_failed_secs.saturating_mul(1000),
            sweep_batch: t.sweep_batch.max(1),
            log_kept_bytes: t.log_kept_bytes,
            replay_keep_ms: t.replay_keep_secs.saturating_mul(1000),
            replay_max_bytes: t.replay_max_bytes,
            archive: false,
        }
    }

    /// How long the embedded store's archive keeps finished copies.
    pub fn archive(&self) -> crate::store::embedded::ArchiveRules {
        crate::store::embedded::ArchiveRules {
            keep_ms: self.tasks.archive_secs.saturating_mul(1000),
            at_least: self.tasks.archive_at_least,
        }
    }

    /// The broker's share of the settings.
    pub fn broker(&self) -> BrokerSettings {
        BrokerSettings {
            default_ttr_secs: self.tasks.ttr_secs,
            default_max_attempts: self.tasks.max_attempts,
            retry: RetryPolicy {
                base_ms: (self.tasks.retry_base_secs * 1000.0) as u64,
                max_ms: (self.tasks.retry_max_secs * 1000.0) as u64,
                jitter: self.tasks.retry_jitter,
            },
            worker_stale_after_ms: self.workers.stale_after_secs * 1000,
            worker_idle_timeout_ms: self.workers.idle_timeout_secs * 1000,
            interest_limits: interest::Limits {
                max_fields: self.limits.max_interest_fields,
                max_pattern_len: self.limits.max_pattern_bytes,
                max_compiled_size: self.limits.max_compiled_pattern_bytes,
                max_cost: self.limits.max_interest_cost,
            },
            log_every_ms: self.tasks.log_every_ms,
            log_kept_bytes: self.tasks.log_kept_bytes,
            max_output_depth: self.tasks.max_output_depth,
            replay_keep_ms: self.tasks.replay_keep_secs.saturating_mul(1000),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_load_and_are_valid() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("interq.toml");
        std::fs::write(&empty, "").unwrap();
        let s = Settings::load(Some(&empty), &[]).unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.listen, "127.0.0.1:7700");
    }

    #[cfg(not(feature = "couchbase"))]
    #[test]
    fn a_build_without_couchbase_says_so_when_asked_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("interq.toml");
        std::fs::write(
            &file,
            "[store]\nkind = \"couchbase\"\n[store.couchbase]\nconnection_string = \"couchbase://db\"\nusername = \"iq\"\n",
        )
        .unwrap();
        let err = Settings::load(Some(&file), &[]).unwrap_err().to_string();
        assert!(err.contains("--features couchbase"), "{err}");
    }

    #[cfg(feature = "couchbase")]
    #[test]
    fn a_couchbase_store_needs_its_cluster_and_keeps_its_password_out_of_logs() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("interq.toml");
        std::fs::write(&file, "[store]\nkind = \"couchbase\"\n").unwrap();
        let err = Settings::load(Some(&file), &[]).unwrap_err().to_string();
        assert!(err.contains("store.couchbase.connection_string"), "{err}");
        std::fs::write(
            &file,
            "[store]\nkind = \"couchbase\"\n[store.couchbase]\nconnection_string = \"couchbase://db\"\nusername = \"iq\"\npassword = \"hunter2-secret\"\n",
        )
        .unwrap();
        let s = Settings::load(Some(&file), &[]).unwrap();
        assert_eq!(s.store.kind, StoreKind::Couchbase);
        assert_eq!(s.store.couchbase.bucket, "interq");
        // Unless told otherwise, a commit survives a data node's failover.
        assert_eq!(
            s.store.couchbase.durability,
            crate::store::couchbase::Durability::Majority
        );
        std::fs::write(&file, "[store]\nkind = \"couchbase\"\n[store.couchbase]\nconnection_string = \"couchbase://db\"\nusername = \"iq\"\ndurability = \"none\"\n").unwrap();
        let s = Settings::load(Some(&file), &[]).unwrap();
        assert_eq!(
            s.store.couchbase.durability,
            crate::store::couchbase::Durability::None
        );
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(
            (s.store.couchbase.partitions, s.store.couchbase.lease_ms),
            (16, 6_000)
        );
        for (line, field) in [
            ("partitions = 0", "store.couchbase.partitions"),
            ("partitions = 5000", "store.couchbase.partitions"),
            ("lease_ms = 500", "store.couchbase.lease_ms"),
        ] {
            std::fs::write(&file, format!("[store]\nkind = \"couchbase\"\n[store.couchbase]\nconnection_string = \"couchbase://db\"\nusername = \"iq\"\n{line}\n")).unwrap();
            let err = Settings::load(Some(&file), &[]).unwrap_err().to_string();
            assert!(err.contains(field), "{line}: {err}");
        }
        std::fs::write(&file, "[store]\nkind = \"cassandra\"\n").unwrap();
        assert!(Settings::load(Some(&file), &[]).is_err());
    }

    #[test]
    fn file_then_flags_override() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("interq.toml");
        std::fs::write(&file, "listen = \"0.0.0.0:1\"\n[tasks]\nttr_secs = 30\n").unwrap();
        let s = Settings::load(Some(&file), &[("listen", "127.0.0.1:9".into())]).unwrap();
        assert_eq!(s.tasks.ttr_secs, 30);
        assert_eq!(s.listen, "127.0.0.1:9");
    }

    #[test]
    fn keys_load_from_the_environment_style_lists() {
        let (_, a) = crate::auth::new_key();
        let (_, b) = crate::auth::new_key();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("interq.toml");
        std::fs::write(&file, format!("[auth]\nadmin = [\"{a}\", \"{b}\"]\n")).unwrap();
        let s = Settings::load(Some(&file), &[]).unwrap();
        assert!(s.keys().unwrap().enabled());
        assert!(
            !format!("{s:?}").contains(&a.to_string()),
            "no hash in Debug output"
        );
        std::fs::write(&file, "[auth]\nworker = [\"plain-password\"]\n").unwrap();
        let err = Settings::load(Some(&file), &[]).unwrap_err();
        assert!(err.to_string().contains("auth.worker[0]"), "{err}");
    }

    #[test]
    fn keys_may_carry_a_label_and_the_queues_they_use() {
        let (key, hash) = crate::auth::new_key();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("interq.toml");
        std::fs::write(
            &file,
            format!("[[auth.keys]]\nrole = \"worker\"\nhash = \"{hash}\"\nlabel = \"mailer\"\nqueues = [\"emails\", \"emails.*\"]\n"),
        )
        .unwrap();
        let s = Settings::load(Some(&file), &[]).unwrap();
        let caller = s.keys().unwrap().identify(&key).unwrap();
        assert_eq!(caller.key, "mailer");
        assert!(caller.allows("emails.eu") && !caller.allows("billing"));
        std::fs::write(
            &file,
            format!("[[auth.keys]]\nrole = \"worker\"\nhash = \"{hash}\"\nqueues = [\"a b\"]\n"),
        )
        .unwrap();
        let err = Settings::load(Some(&file), &[]).unwrap_err().to_string();
        assert!(err.contains("auth.keys[0].queues"), "{err}");
        std::fs::write(&file, format!("[[auth.keys]]\nhash = \"{hash}\"\n")).unwrap();
        let err = Settings::load(Some(&file), &[]).unwrap_err().to_string();
        assert!(err.contains("auth.keys[0].role"), "{err}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("interq.toml");
        std::fs::write(&file, "[tasks]\nttl_secs = 30\n").unwrap();
        assert!(Settings::load(Some(&file), &[]).is_err());
        std::fs::write(&file, "[tasks]\nmax_attempts = 0\n").unwrap();
        let err = Settings::load(Some(&file), &[]).unwrap_err();
        assert!(err.to_string().contains("max_attempts"), "{err}");
    }
}
