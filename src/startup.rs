//! Builds the application from settings and runs it until a shutdown signal.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use anyhow::Context;

use crate::api::{self, AppState};
use crate::broker::clock::{Clock, ManualClock, SystemClock};
use crate::broker::Broker;
use crate::config::Settings;
use crate::config::StoreKind;
#[cfg(feature = "couchbase")]
use crate::store::couchbase::CouchbaseStore;
use crate::store::embedded::{Checkpoints, EmbeddedStore, OpenOptions};
use crate::store::Store;

/// A built, bound, not yet running interq.
pub struct Application {
    port: u16,
    server: Server,
    broker: Arc<Broker>,
    store: Arc<dyn Store>,
    tick: Duration,
    /// The pipelined protocol, when `line.listen` is set.
    line: Option<crate::line::LineServer>,
    /// Installed when built, before anyone is told it serves: a SIGTERM
    /// that follows "interq is serving" at once is a graceful stop, not
    /// the default death.
    signals: Signals,
}

/// SIGTERM and SIGINT, caught from the moment this exists.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// The first SIGTERM or SIGINT.
    async fn first(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Opens the store, loads the broker and binds the listener (port 0 picks
    /// a free port).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let store: Arc<dyn Store> = match settings.store.kind {
            StoreKind::Embedded => Arc::new(
                EmbeddedStore::open_with(
                    &settings.data_dir,
                    settings.retention(),
                    OpenOptions {
                        check: settings.store.check_on_open,
                        start_fresh: settings.store.start_fresh,
                        checkpoints: Checkpoints {
                            bytes: settings.store.checkpoint_bytes,
                            every: Duration::from_millis(settings.store.checkpoint_every_ms),
                            segment_bytes: settings.store.wal_segment_bytes,
                        },
                        archive: settings.archive(),
                        ..OpenOptions::default()
                    },
                )
                .await
                .context("opening the embedded store")?,
            ),
            // The settings refuse it first; kept for a caller that built
            // them by hand.
            #[cfg(not(feature = "couchbase"))]
            StoreKind::Couchbase => anyhow::bail!(crate::store::couchbase::NOT_BUILT_IN),
            #[cfg(feature = "couchbase")]
            StoreKind::Couchbase => {
                let c = &settings.store.couchbase;
                tracing::info!(
                    connection_string = %c.connection_string,
                    bucket = %c.bucket,
                    scope = %c.scope,
                    collection = %c.collection,
                    "opening the Couchbase store"
                );
                Arc::new(
                    CouchbaseStore::open_couchbase(c.clone(), settings.retention())
                        .await
                        .context("opening the Couchbase store")?,
                )
            }
        };
        Self::build_over(settings, store).await
    }

    /// `build` over a store already open (the one `settings.store` names,
    /// or, in tests, several nodes' stores over one bucket in memory).
    pub async fn build_over(settings: Settings, store: Arc<dyn Store>) -> anyhow::Result<Self> {
        let manual_clock = settings
            .testing
            .manual_clock
            .then(|| Arc::new(ManualClock::new()));
        let clock: Arc<dyn Clock> = match &manual_clock {
            Some(c) => Arc::clone(c) as Arc<dyn Clock>,
            None => Arc::new(SystemClock),
        };
        let broker = Broker::start(Arc::clone(&store), clock, settings.broker())
            .await
            .context("loading interests and workers")?;
        let listener = TcpListener::bind(&settings.listen)
            .with_context(|| format!("binding {}", settings.listen))?;
        let addr = listener.local_addr()?;
        let port = addr.port();
        let keys = settings.keys()?;
        if !keys.enabled() {
            if addr.ip().is_loopback() {
                tracing::warn!(%addr, "no keys are configured: anyone who can reach this address may use interq; it listens on loopback only");
            } else {
                tracing::warn!(%addr, "no keys are configured and interq listens beyond loopback: anyone who can reach it may use it; set [auth] keys (interq key new)");
            }
        }
        let tls = match (&settings.tls.cert_path, &settings.tls.key_path) {
            (Some(cert), Some(key)) => Some(tls_config(cert, key)?),
            _ => None,
        };
        let testing = manual_clock.is_some();
        let tick = Duration::from_millis(settings.tasks.tick_ms);
        let shutdown_timeout = settings.shutdown_timeout_secs;
        let csrf_secret = crate::web::csrf::Secret::new(settings.site.secret.as_deref());
        let state = web::Data::new(AppState {
            csrf_secret,
            broker: Arc::clone(&broker),
            settings,
            keys,
            manual_clock,
        });
        let caps = connection_caps(&state.settings.limits);
        let connections = api::admission::Connections::new(caps.soft, caps.per_client);
        let line = match state.settings.line.listen.clone() {
            Some(listen) => Some(
                crate::line::LineServer::start(
                    &listen,
                    state.clone().into_inner(),
                    tls.clone(),
                    Arc::clone(&connections),
                )
                .await?,
            ),
            None => None,
        };
        let header_timeout = Duration::from_secs_f64(state.settings.limits.header_timeout_secs);
        let server = HttpServer::new(move || {
            App::new()
                .wrap(from_fn(api::check_access))
                .wrap(from_fn(api::admission::admit))
                .wrap(from_fn(crate::telemetry::log_request))
                .wrap(from_fn(api::catch_panics))
                .app_data(state.clone())
                .configure(|cfg| api::configure(cfg, testing))
                .configure(crate::web::configure)
                .default_service(web::to(api::not_found))
        })
        // Connection settings first: a listener takes those set before it.
        .workers(caps.workers)
        .max_connections(caps.hard_per_worker)
        .client_request_timeout(header_timeout)
        // A connection closed with its body unread (refused, too large, too
        // slow) is dropped at once after its answer, not kept reading what
        // the client may never send: that is what let trickling clients
        // hold every file.
        .client_disconnect_timeout(Duration::ZERO)
        .on_connect(api::admission::on_connect(connections));
        let server = match tls {
            Some(config) => server.listen_rustls_0_23(listener, config)?,
            None => server.listen(listener)?,
        }
        .disable_signals()
        .shutdown_timeout(shutdown_timeout)
        .run();
        let signals = Signals::install().context("installing the SIGTERM and SIGINT handlers")?;
        Ok(Self {
            port,
            server,
            broker,
            store,
            tick,
            line,
            signals,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The pipelined protocol's port, when it is on.
    pub fn line_port(&self) -> Option<u16> {
        self.line.as_ref().map(|l| l.local_addr().port())
    }

    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// A handle that stops the server (as a signal would).
    pub fn handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            server: self.server.handle(),
            broker: Arc::clone(&self.broker),
            line: self.line.as_ref().map(crate::line::LineServer::stopper),
        }
    }

    /// Serves until SIGINT, SIGTERM or a `ShutdownHandle` stops it; then lets
    /// requests in flight finish, answers long polls, flushes the store.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.handle();
        let caught = self.signals;
        let signals = tokio::spawn({
            let handle = handle.clone();
            async move {
                caught.first().await;
                tracing::info!("shutdown signal received");
                handle.stop().await;
            }
        });
        let ticker = tokio::spawn(tick_loop(Arc::clone(&self.broker), self.tick));
        let compactor = tokio::spawn({
            let broker = Arc::clone(&self.broker);
            async move { broker.compact_routes_when_due().await }
        });
        let served = self.server.await;
        if let Some(line) = self.line {
            line.stopped().await;
        }
        signals.abort();
        ticker.abort();
        compactor.abort();
        self.store.flush().await.context("flushing the store")?;
        if let Err(e) = self.store.leave().await {
            tracing::warn!(error = %e, "leaving the cluster failed; this node's partitions are taken over when their leases end");
        }
        self.store.close();
        tracing::info!("stopped");
        served.context("serving HTTP")
    }
}

/// How many connections the server takes: `soft`, past which requests are
/// refused with an answer; and a hard cap per worker thread, past which it
/// accepts no more, kept below the file descriptors the process may open.
#[derive(Debug, Clone, Copy)]
struct Caps {
    workers: usize,
    soft: usize,
    per_client: usize,
    hard_per_worker: usize,
}

fn connection_caps(limits: &crate::config::LimitSettings) -> Caps {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    // A server should not be held to the shell's default of 1024 files.
    let files = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => hard,
            Err(_) => soft,
        },
        Ok((soft, _)) => soft,
        Err(_) => 1024,
    } as usize;
    // Room for the store's files, logs and the refusals' own connections.
    let usable = files.saturating_sub(128).max(64);
    let hard = usable.min(
        limits
            .max_connections
            .saturating_mul(2)
            .max(limits.max_connections + 64),
    );
    let soft = limits.max_connections.min(hard.saturating_sub(32).max(1));
    if soft < limits.max_connections {
        tracing::warn!(
            configured = limits.max_connections,
            taken = soft,
            open_files = files,
            "limits.max_connections is more than this process may open files for; lowered"
        );
    }
    Caps {
        workers,
        soft,
        per_client: limits.max_connections_per_client,
        hard_per_worker: hard.div_ceil(workers).max(1),
    }
}

/// The server's TLS set-up from PEM files: a certificate chain and its key.
fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<rustls::ServerConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading tls.cert_path {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing tls.cert_path {}", cert.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "tls.cert_path {} holds no certificate",
        cert.display()
    );
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading tls.key_path {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the TLS certificate and key do not fit together")
}

/// Stops a running application gracefully.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    server: ServerHandle,
    broker: Arc<Broker>,
    line: Option<Arc<tokio::sync::watch::Sender<bool>>>,
}

impl ShutdownHandle {
    pub async fn stop(&self) {
        self.broker.begin_shutdown();
        if let Some(line) = &self.line {
            line.send_replace(true);
        }
        self.server.stop(true).await;
    }
}

async fn tick_loop(broker: Arc<Broker>, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // While the store refuses changes (a full disk), every tick fails the
    // same way: say so when it starts, every minute, and when it ends.
    let mut failing: Option<(std::time::Instant, u64)> = None;
    loop {
        interval.tick().await;
        if broker.is_shutting_down() {
            return;
        }
        match broker.tick().await {
            Ok(()) => {
                if let Some((since, n)) = failing.take() {
                    tracing::info!(
                        failed_ticks = n,
                        for_secs = since.elapsed().as_secs(),
                        "ticks succeed again"
                    );
                }
            }
            Err(e) => match &mut failing {
                None => {
                    tracing::error!(error = %e, "tick failed");
                    failing = Some((std::time::Instant::now(), 1));
                }
                Some((since, n)) => {
                    *n += 1;
                    if n.is_multiple_of((60_000 / every.as_millis().max(1) as u64).max(1)) {
                        tracing::error!(error = %e, failed_ticks = *n, for_secs = since.elapsed().as_secs(), "ticks still fail");
                    }
                }
            },
        }
    }
}
