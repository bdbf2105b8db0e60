//! The `interq` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use interq::config::Settings;
use interq::startup::Application;

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

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the service.
    Serve {
        /// Address to listen on (default 127.0.0.1:7700).
        #[arg(long)]
        listen: Option<String>,
        /// Directory of the embedded store (default ./data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { listen, data_dir } => {
            let mut overrides = Vec::new();
            if let Some(l) = listen {
                overrides.push(("listen", l));
            }
            if let Some(d) = data_dir {
                overrides.push(("data_dir", d.display().to_string()));
            }
            let settings = Settings::load(cli.config.as_deref(), &overrides)?;
            interq::telemetry::init(&settings.log);
            let app = Application::build(settings.clone()).await?;
            tracing::info!(
                listen = %settings.listen,
                port = app.port(),
                data_dir = %settings.data_dir.display(),
                "interq is serving"
            );
            app.run_until_stopped().await
        }
    }
}
