//! The `interq` command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use interq::bench::BenchOptions;
use interq::config::Settings;
use interq::startup::Application;
use interq::worker::WorkerOptions;

// glibc's allocator spent a third of the server's CPU under load (its
// arenas consolidating and unlinking chunks freed on other threads); a
// request allocates and frees many small buffers across tokio's threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "interq",
    version,
    about = "A pub/sub, interest-routing job queue service"
)]
struct Cli {
    /// A settings file (TOML); without it `./interq.toml` is read if present.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// How the client commands reach a protected or TLS interq.
#[derive(Debug, clap::Args)]
struct Access {
    /// The key to present (see `interq key new`).
    #[arg(long, env = "INTERQ_KEY", hide_env_values = true)]
    key: Option<String>,
    /// PEM file of certificates to trust for https:// URLs (a private CA or
    /// the server's self-signed certificate) instead of the system's.
    #[arg(long)]
    ca_cert: Option<PathBuf>,
}

impl Access {
    fn options(self) -> anyhow::Result<interq::client::ClientOptions> {
        let ca_pem = match self.ca_cert {
            Some(path) => Some(
                std::fs::read(&path)
                    .map_err(|e| anyhow::anyhow!("reading --ca-cert {}: {e}", path.display()))?,
            ),
            None => None,
        };
        Ok(interq::client::ClientOptions {
            key: self.key,
            ca_pem,
        })
    }
}

#[derive(Debug, Subcommand)]
enum KeyCommand {
    /// Makes a new random key and prints it with the hash to put in the
    /// settings. interq stores only the hash; give the key to the client.
    New {
        /// The role the key is for: admin, publisher or worker.
        #[arg(long, default_value = "admin")]
        role: String,
    },
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Op(interq::cli::Op),
    /// Makes keys for password protection.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Runs the service.
    Serve {
        /// Address to listen on (default 127.0.0.1:7700).
        #[arg(long)]
        listen: Option<String>,
        /// Directory of the embedded store (default ./data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// When the embedded store's file is damaged or empty, move it aside
        /// (it is kept beside, renamed) and start an empty store, instead of
        /// refusing to start.
        #[arg(long)]
        start_fresh: bool,
    },
    /// Drives an interq over HTTP and reports throughput and latency. Without
    /// --url it starts one in this process on a temporary data directory.
    Bench {
        #[command(flatten)]
        options: BenchOptions,
        /// Print one JSON object instead of the report.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        access: Access,
    },
    /// Runs a command once per task of some queues: the task's data as JSON on
    /// standard input, its id, queue, attempt and flat data fields as INTERQ_*
    /// variables. Exit 0 completes the task (standard output's tail becomes its
    /// output); any other ending fails it (standard error's tail becomes the
    /// reason) and the server's retries apply.
    #[command(
        after_help = "Example: interq worker --queue emails -- ./send-email.sh\n\n\
        SIGTERM or SIGINT stops claiming and lets running commands finish within \
        --grace; what is left is killed and failed. A second SIGINT exits at once."
    )]
    Worker {
        /// The interq to work for: http(s)://, or its line protocol at
        /// interq(s)://host:port.
        #[arg(long, env = "INTERQ_URL", default_value = "http://127.0.0.1:7700")]
        url: String,
        /// Exit at once when interq cannot be reached at start, instead of
        /// waiting for it.
        #[arg(long)]
        fail_fast: bool,
        /// A queue to take tasks from; repeat it, in priority order.
        #[arg(long = "queue", required = true)]
        queues: Vec<String>,
        /// QUEUE=N: weigh the queues instead of taking them in strict
        /// order (each claim first tries a queue chosen in proportion to
        /// the weights; a queue not named weighs 1). Repeatable.
        #[arg(long = "weight", value_name = "QUEUE=N")]
        weights: Vec<String>,
        /// Commands to run at once.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
        concurrency: u16,
        /// Seconds a command may run before its process group is killed and
        /// the task failed [default: the task's ttr].
        #[arg(long)]
        timeout: Option<f64>,
        /// Seconds running commands may take to finish after SIGTERM.
        #[arg(long, default_value_t = 30.0)]
        grace: f64,
        /// Let a task's data.command (array of strings) and data.env (object)
        /// choose the command and add to its environment.
        #[arg(long)]
        allow_task_command: bool,
        /// Bytes of standard output and error kept for the report.
        #[arg(long, default_value_t = 4096)]
        tail_bytes: usize,
        /// The name shown in status [default: host:pid].
        #[arg(long)]
        name: Option<String>,
        /// Seconds between heartbeats of a running task, which renew its lease
        /// and notice a cancellation [default: a third of its ttr, at most 10].
        #[arg(long)]
        heartbeat: Option<f64>,
        /// Seconds from SIGTERM to SIGKILL when a command is stopped
        /// (cancelled, or past the grace time at shutdown).
        #[arg(long, default_value_t = 5.0)]
        kill_after: f64,
        /// Seconds between sends of a running command's output to the
        /// task's log (GET /task/log); 0 sends none.
        #[arg(long, default_value_t = 1.0)]
        log_every: f64,
        #[command(flatten)]
        access: Access,
        /// The command to run per task, and its arguments.
        #[arg(last = true)]
        command: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let result = run(Cli::parse()).await;
    if let Err(e) = &result {
        tracing::error!(error = %format!("{e:#}"), "interq stopped");
    }
    interq::telemetry::flush();
    result
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Op(op) => match interq::cli::run(op).await {
            Ok(out) => {
                print!("{out}");
                Ok(())
            }
            Err(failure) => {
                eprintln!("interq: {}", failure.message);
                std::process::exit(failure.exit as i32)
            }
        },
        Command::Key(KeyCommand::New { role }) => {
            let role = match role.as_str() {
                "admin" => interq::auth::Role::Admin,
                "publisher" => interq::auth::Role::Publisher,
                "worker" => interq::auth::Role::Worker,
                "viewer" => interq::auth::Role::Viewer,
                other => {
                    anyhow::bail!("--role is admin, publisher, worker or viewer, not `{other}`")
                }
            };
            let (key, hash) = interq::auth::new_key();
            println!("key:  {key}");
            println!("      (give it to the {role}; interq does not store it)");
            println!("hash: {hash}");
            println!(
                "      (in interq.toml: [auth] {role} = [\"{hash}\"], or INTERQ_AUTH__{}={hash})",
                role.as_str().to_ascii_uppercase()
            );
            Ok(())
        }
        Command::Serve {
            listen,
            data_dir,
            start_fresh,
        } => {
            let mut overrides = Vec::new();
            if start_fresh {
                overrides.push(("store.start_fresh", "true".to_owned()));
            }
            if let Some(l) = listen {
                overrides.push(("listen", l));
            }
            if let Some(d) = data_dir {
                overrides.push(("data_dir", d.display().to_string()));
            }
            let settings = Settings::load(cli.config.as_deref(), &overrides)?;
            interq::telemetry::init(&settings.log);
            let app = Application::build(settings.clone()).await?;
            let store = match settings.store.kind {
                interq::config::StoreKind::Embedded => settings.data_dir.display().to_string(),
                interq::config::StoreKind::Couchbase => format!(
                    "couchbase bucket {} ({})",
                    settings.store.couchbase.bucket, settings.store.couchbase.connection_string
                ),
            };
            match app.line_port() {
                Some(line_port) => tracing::info!(
                    listen = %settings.listen,
                    port = app.port(),
                    line_port,
                    store = %store,
                    "interq is serving"
                ),
                None => tracing::info!(
                    listen = %settings.listen,
                    port = app.port(),
                    store = %store,
                    "interq is serving"
                ),
            }
            app.run_until_stopped().await
        }
        Command::Bench {
            options,
            json,
            access,
        } => {
            interq::telemetry::init(&interq::config::LogSettings {
                filter: "warn".into(),
                ..Default::default()
            });
            let options = BenchOptions {
                progress: !json,
                client: access.options()?,
                ..options
            };
            if options.scenario == interq::bench::Scenario::Batch {
                let report = interq::bench::batch::run(options).await?;
                match json {
                    true => println!("{}", serde_json::to_string_pretty(&report)?),
                    false => print!("{}", report.human()),
                }
                return Ok(());
            }
            if options.scenario == interq::bench::Scenario::NoisyNeighbour {
                let report = interq::bench::noisy::run(options).await?;
                match json {
                    true => println!("{}", serde_json::to_string_pretty(&report)?),
                    false => print!("{}", report.human()),
                }
                return Ok(());
            }
            let report = interq::bench::run(options).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.human());
            }
            Ok(())
        }
        Command::Worker {
            url,
            queues,
            weights,
            concurrency,
            timeout,
            grace,
            allow_task_command,
            tail_bytes,
            name,
            heartbeat,
            kill_after,
            fail_fast,
            log_every,
            access,
            command,
        } => {
            interq::telemetry::init(&Settings::default().log);
            let seconds = |s: f64, what: &str| {
                Duration::try_from_secs_f64(s)
                    .map_err(|_| anyhow::anyhow!("--{what} must be a number of seconds, 0 or more"))
            };
            let weights = queue_weights(&queues, &weights)?;
            let opts = WorkerOptions {
                url,
                queues,
                weights,
                concurrency: concurrency as usize,
                timeout: timeout.map(|t| seconds(t, "timeout")).transpose()?,
                grace: seconds(grace, "grace")?,
                allow_task_command,
                tail_bytes,
                command,
                client: access.options()?,
                name,
                heartbeat: heartbeat.map(|h| seconds(h, "heartbeat")).transpose()?,
                kill_after: seconds(kill_after, "kill-after")?,
                fail_fast,
                log_every: Some(seconds(log_every, "log-every")?).filter(|d| !d.is_zero()),
                ..WorkerOptions::default()
            };
            interq::worker::run(opts, stop_signal()).await?;
            Ok(())
        }
    }
}

/// Resolves at the first SIGTERM or SIGINT; a second SIGINT exits at once.
async fn stop_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("install a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("second interrupt: exiting now");
            std::process::exit(130);
        }
    });
}

/// `--weight QUEUE=N` flags as one weight per queue (empty without any).
fn queue_weights(queues: &[String], given: &[String]) -> anyhow::Result<Vec<u32>> {
    if given.is_empty() {
        return Ok(Vec::new());
    }
    let mut weights = vec![1u32; queues.len()];
    for g in given {
        let (queue, n) = g
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--weight takes QUEUE=N, not `{g}`"))?;
        let i = queues
            .iter()
            .position(|q| q == queue)
            .ok_or_else(|| anyhow::anyhow!("--weight names `{queue}`, which no --queue does"))?;
        weights[i] = n
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| {
                anyhow::anyhow!("--weight {queue}: a weight is a whole number 1 to 1000")
            })?;
    }
    Ok(weights)
}
