//! `muster-coordinator`: init, run and validate. The work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use muster_coordinator::config::{DataDir, RawConfig};
use muster_coordinator::store::DatabaseUrl;
use muster_coordinator::{init, server};
use tokio_util::sync::CancellationToken;

/// The Muster coordinator: holds clusters, hosts and tokens in its database and serves the
/// gRPC API that agents and the `muster` CLI call.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Settings that a config file, the environment or a flag may give; flags win over the
/// environment, which wins over the file.
#[derive(clap::Args)]
struct Settings {
    /// TOML config file (keys: data_dir, database_url, listen, http_listen, heartbeat_ttl,
    /// host_certificate_ttl, event_retention, event_max). Default:
    /// DATA_DIR/coordinator.toml when it exists.
    #[arg(long, env = "MUSTER_CONFIG")]
    config: Option<PathBuf>,
    /// Directory of the CA, the server certificate, the secret key and the SQLite file.
    #[arg(long, env = "MUSTER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL: sqlite://PATH, postgres://USER@HOST[:PORT]/DB or mysql://USER@HOST[:PORT]/DB.
    /// Default: the SQLite file DATA_DIR/muster.db.
    #[arg(long, env = "MUSTER_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// gRPC listen address [default: 0.0.0.0:17300].
    #[arg(long, env = "MUSTER_LISTEN")]
    listen: Option<String>,
    /// HTTP listen address for /healthz and /metrics [default: 127.0.0.1:17301].
    #[arg(long, env = "MUSTER_HTTP_LISTEN")]
    http_listen: Option<String>,
    /// A host without a heartbeat for this long is marked down [default: 15s].
    #[arg(long, env = "MUSTER_HEARTBEAT_TTL")]
    heartbeat_ttl: Option<String>,
    /// How long host certificates are valid; agents renew after two thirds [default: 30d].
    #[arg(long, env = "MUSTER_HOST_CERTIFICATE_TTL")]
    host_certificate_ttl: Option<String>,
    /// Events older than this are removed [default: 90d].
    #[arg(long, env = "MUSTER_EVENT_RETENTION")]
    event_retention: Option<String>,
    /// The most events kept; the oldest beyond go first (at least 1000) [default: 100000].
    #[arg(long, env = "MUSTER_EVENT_MAX")]
    event_max: Option<u64>,
}

#[derive(Subcommand)]
enum Command {
    /// Create the CA, the server certificate, the secret key and an admin token, and migrate the
    /// database. The database must exist (SQLite's file is created). Refuses an initialized
    /// directory.
    Init {
        /// A config file to take data_dir and database_url from (flags win), as the packaged
        /// service's /etc/muster/coordinator.toml; `run --config FILE` then reads the same file.
        /// Without it, init records the database URL in DATA_DIR/coordinator.toml.
        #[arg(long, env = "MUSTER_CONFIG")]
        config: Option<PathBuf>,
        /// The data directory to create (or fill, when it exists and is empty).
        #[arg(long, env = "MUSTER_DATA_DIR", required_unless_present = "config")]
        data_dir: Option<PathBuf>,
        /// Database URL (see `run --help`). Default: the SQLite file DATA_DIR/muster.db.
        #[arg(long, env = "MUSTER_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// A name or IP address clients use to reach this coordinator; repeat for several. Goes
        /// into the server certificate beside 127.0.0.1 and localhost.
        #[arg(long = "advertise", value_name = "NAME_OR_IP")]
        advertise: Vec<String>,
    },
    /// Serve the gRPC API (TLS) and the HTTP health and metrics endpoints until SIGTERM.
    Run {
        #[command(flatten)]
        settings: Settings,
    },
    /// Check a config file and name any bad key or value; exits non-zero if it is not valid.
    Validate {
        /// The config file to check.
        #[arg(long)]
        config: PathBuf,
    },
    /// Write man pages and shell completions into a directory (for packaging).
    #[command(hide = true)]
    GenerateDocs {
        #[arg(long)]
        out: PathBuf,
    },
}

fn resolve(settings: Settings) -> anyhow::Result<muster_coordinator::config::CoordinatorConfig> {
    let flags = RawConfig {
        data_dir: settings.data_dir,
        database_url: settings.database_url,
        listen: settings.listen,
        http_listen: settings.http_listen,
        heartbeat_ttl: settings.heartbeat_ttl,
        host_certificate_ttl: settings.host_certificate_ttl,
        event_retention: settings.event_retention,
        event_max: settings.event_max,
    };
    let file_path = settings.config.or_else(|| {
        let default = DataDir::new(flags.data_dir.as_ref()?).config();
        default.exists().then_some(default)
    });
    let (file, origin) = match &file_path {
        Some(path) => (RawConfig::from_file(path)?, path.display().to_string()),
        None => (RawConfig::default(), "the command line".to_owned()),
    };
    Ok(file.overlay(flags).validate(&origin)?)
}

async fn main_inner(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::GenerateDocs { out } => {
            use clap::CommandFactory as _;
            Ok(muster_proto::docs::write(Cli::command(), &out)?)
        }
        Command::Init {
            config,
            data_dir,
            database_url,
            advertise,
        } => {
            let (data_dir, database_url, record) = match &config {
                Some(path) => {
                    let file = RawConfig::from_file(path)?.overlay(RawConfig {
                        data_dir,
                        database_url,
                        ..RawConfig::default()
                    });
                    let origin = path.display().to_string();
                    let data_dir = file.data_dir.clone().ok_or_else(|| {
                        anyhow::anyhow!("{origin}: data_dir is required (or --data-dir)")
                    })?;
                    (data_dir, file.database_url, init::ConfigRecord::ConfigFile)
                }
                None => (
                    data_dir.expect("clap requires --data-dir without --config"),
                    database_url,
                    init::ConfigRecord::DataDir,
                ),
            };
            let database_url = database_url
                .as_deref()
                .map(DatabaseUrl::parse)
                .transpose()?;
            let initialized =
                init::init(&data_dir, database_url.as_ref(), &advertise, record).await?;
            let layout = DataDir::new(&data_dir);
            let database = database_url
                .map(|url| url.redacted())
                .unwrap_or_else(|| format!("SQLite file {}", data_dir.join("muster.db").display()));
            println!(
                "Initialized coordinator data directory {}",
                data_dir.display()
            );
            println!("  CA certificate  {}", layout.ca_certificate().display());
            println!("  CA sha256       {}", initialized.ca_sha256);
            println!("  database        {database}");
            println!("  admin token     {}", initialized.admin_token);
            println!(
                "                  (shown once; also in {}, mode 0600)",
                layout.admin_token().display()
            );
            match &config {
                Some(path) => println!(
                    "Next: systemctl start muster-coordinator, or muster-coordinator run --config {}",
                    path.display()
                ),
                None => println!(
                    "Next: muster-coordinator run --data-dir {}",
                    data_dir.display()
                ),
            }
            Ok(())
        }
        Command::Run { settings } => {
            let config = resolve(settings)?;
            let shutdown = CancellationToken::new();
            muster_proto::daemon::cancel_on_signal(shutdown.clone());
            server::run(config, shutdown)
                .await
                .context("the coordinator stopped with an error")
        }
        Command::Validate { config } => {
            let raw = RawConfig::from_file(&config)?;
            raw.validate(&config.display().to_string())?;
            println!("{} is valid", config.display());
            Ok(())
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Run { .. }) {
        muster_proto::daemon::init_logging();
    }
    match main_inner(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", muster_coordinator::error_chain(error.as_ref()));
            ExitCode::FAILURE
        }
    }
}
