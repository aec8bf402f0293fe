//! `muster-agent`: run, enroll and validate. The work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use muster_agent::config::{AgentConfig, RawConfig};
use muster_agent::identity::{self, Enrollment};
use tokio_util::sync::CancellationToken;

const DEFAULT_CONFIG: &str = "/etc/muster/agent.toml";

/// The Muster host agent: pulls what this host must run from the coordinator and keeps the local
/// Zato components created, running and healthy.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Settings a config file, the environment or a flag may give; flags win over the environment,
/// which wins over the file.
#[derive(Args)]
struct Settings {
    /// The TOML config file [default: /etc/muster/agent.toml when it exists].
    #[arg(long, env = "MUSTER_AGENT_CONFIG")]
    config: Option<PathBuf>,
    /// The coordinator's URL, https://HOST[:PORT].
    #[arg(long, env = "MUSTER_AGENT_COORDINATOR")]
    coordinator: Option<String>,
    /// A join token, MUSTER1-<ca-sha256>::<id>.<secret>; used only when this host has no identity.
    #[arg(long, env = "MUSTER_AGENT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// This host's name [default: the system's host name].
    #[arg(long, env = "MUSTER_AGENT_HOST_NAME")]
    host_name: Option<String>,
    /// The address other hosts reach this one at [default: the host name].
    #[arg(long, env = "MUSTER_AGENT_ADVERTISE_ADDRESS")]
    advertise_address: Option<String>,
    /// The IP address components listen on [default: 0.0.0.0].
    #[arg(long, env = "MUSTER_AGENT_BIND_ADDRESS")]
    bind_address: Option<String>,
    /// Where the identity and the ledger live [default: /var/lib/muster-agent].
    #[arg(long, env = "MUSTER_AGENT_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// The zato command [default: zato].
    #[arg(long, env = "MUSTER_AGENT_ZATO_BIN")]
    zato_bin: Option<PathBuf>,
    /// The Python that runs Zato, whose pip installs a cluster's Python dependencies [default:
    /// the interpreter on the zato command's first line].
    #[arg(long, env = "MUSTER_AGENT_ZATO_PYTHON")]
    zato_python: Option<PathBuf>,
    /// Where components are created [default: /opt/zato].
    #[arg(long, env = "MUSTER_AGENT_COMPONENTS_DIR")]
    components_dir: Option<PathBuf>,
    /// The user Zato commands run as [default: the agent's own].
    #[arg(long, env = "MUSTER_AGENT_RUN_AS")]
    run_as: Option<String>,
    /// How often to report, e.g. 5s [default: 5s].
    #[arg(long, env = "MUSTER_AGENT_HEARTBEAT_INTERVAL")]
    heartbeat_interval: Option<String>,
    /// A label this host expects, KEY=VALUE; repeat for several (replaces the file's labels). A
    /// host's labels come from its join token: the enrollment is refused if one is not the token's.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// A role to ask for at enrollment (server, scheduler, web-admin, load-balancer); repeat for
    /// several [default: every role the join token names].
    #[arg(long = "role", value_name = "ROLE")]
    roles: Vec<String>,
    /// A HAProxy binary this host agrees to run; repeat for several [default: haproxy].
    #[arg(long = "haproxy-bin", value_name = "PATH")]
    haproxy_bins: Vec<PathBuf>,
    /// A directory (absolute) where a cluster's SQLite ODB file may be, besides the components
    /// directory; repeat for several [default: none].
    #[arg(long = "sqlite-odb-dir", value_name = "DIR")]
    sqlite_odb_dirs: Vec<PathBuf>,
    /// The first of Zato's IPC ports for this host's servers [default: 17050].
    #[arg(long, env = "MUSTER_AGENT_ZATO_IPC_PORT_START")]
    zato_ipc_port_start: Option<u16>,
    /// Where to serve /metrics (Prometheus), IP:PORT [default: nowhere].
    #[arg(long, env = "MUSTER_AGENT_METRICS_LISTEN")]
    metrics_listen: Option<String>,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("invalid label {text:?}: give KEY=VALUE"))
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent until SIGTERM; components keep running after it stops.
    Run {
        #[command(flatten)]
        settings: Settings,
    },
    /// Enroll this host with a join token and store its identity, then exit.
    Enroll {
        #[command(flatten)]
        settings: Settings,
    },
    /// Check a config file and name any bad key or value, and whether its run_as user may run
    /// Zato's programs; exits non-zero if it is not valid.
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

fn resolve(settings: Settings) -> anyhow::Result<AgentConfig> {
    let flags = RawConfig {
        coordinator: settings.coordinator,
        token: settings.token,
        host_name: settings.host_name,
        advertise_address: settings.advertise_address,
        bind_address: settings.bind_address,
        labels: (!settings.labels.is_empty()).then(|| settings.labels.into_iter().collect()),
        roles: (!settings.roles.is_empty()).then_some(settings.roles),
        state_dir: settings.state_dir,
        zato_bin: settings.zato_bin,
        zato_installs: None,
        zato_python: settings.zato_python,
        components_dir: settings.components_dir,
        run_as: settings.run_as,
        haproxy_bins: (!settings.haproxy_bins.is_empty()).then_some(settings.haproxy_bins),
        sqlite_odb_dirs: (!settings.sqlite_odb_dirs.is_empty()).then_some(settings.sqlite_odb_dirs),
        zato_ipc_port_start: settings.zato_ipc_port_start,
        heartbeat_interval: settings.heartbeat_interval,
        metrics_listen: settings.metrics_listen,
    };
    let path = settings
        .config
        .or_else(|| Some(PathBuf::from(DEFAULT_CONFIG)).filter(|default| default.exists()));
    let (file, origin) = match &path {
        Some(path) => (RawConfig::from_file(path)?, path.display().to_string()),
        None => (RawConfig::default(), "the command line".to_owned()),
    };
    let mut config = file.overlay(flags).validate(&origin)?;
    config.resolve_advertise_address(&origin)?;
    Ok(config)
}

async fn main_inner(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::GenerateDocs { out } => {
            use clap::CommandFactory as _;
            Ok(muster_proto::docs::write(Cli::command(), &out)?)
        }
        Command::Run { settings } => {
            let config = resolve(settings)?;
            let shutdown = CancellationToken::new();
            muster_proto::daemon::cancel_on_signal(shutdown.clone());
            muster_agent::daemon::run(config, shutdown).await?;
            Ok(())
        }
        Command::Enroll { settings } => {
            let config = resolve(settings)?;
            let token = config
                .token
                .clone()
                .ok_or_else(|| anyhow::anyhow!("enroll needs --token (or token in the config)"))?;
            if let Some(existing) = identity::Identity::load(&config.state_dir)? {
                anyhow::bail!(
                    "this host is already enrolled as {} ({}); nothing was changed",
                    existing.host_id,
                    config.state_dir.display()
                );
            }
            let enrollment = Enrollment {
                coordinator: config.coordinator.clone(),
                host_name: config.host_name.clone(),
                advertise_address: config.advertise_address.clone(),
                labels: config.labels.clone(),
                requested_roles: config.roles.clone(),
            };
            let identity = identity::enroll(&config.state_dir, &enrollment, &token).await?;
            // The certificate was issued just now: its date says how far this clock is off.
            if let Ok((not_before, _)) = identity.validity()
                && let Some(skew) = identity::clock_skew(std::time::SystemTime::now(), not_before)
            {
                eprintln!("warning: {skew}");
            }
            println!(
                "enrolled host {} as {} with {}; identity stored in {}",
                config.host_name,
                identity.host_id,
                config.coordinator,
                config.state_dir.display()
            );
            Ok(())
        }
        Command::Validate { config } => {
            let origin = config.display().to_string();
            let mut valid = RawConfig::from_file(&config)?.validate(&origin)?;
            valid.resolve_advertise_address(&origin)?;
            // What `run` refuses at its start, refused here too: the unit's ExecStartPre then
            // fails once, with the reason, instead of the unit restarting for ever.
            if let Some(name) = &valid.run_as {
                let user = muster_agent::zato::RunAs::lookup(name)?;
                for (install, bin) in valid.installs() {
                    if bin.exists() {
                        user.check_can_run_zato(&bin).map_err(|error| {
                            anyhow::anyhow!(
                                "{origin}: {}: {error}",
                                muster_agent::config::install_key(&install)
                            )
                        })?;
                    }
                }
            }
            println!("{} is valid", config.display());
            Ok(())
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Run { .. } | Command::Enroll { .. }) {
        muster_proto::daemon::init_logging();
    }
    match main_inner(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!(
                "error: {}",
                muster_proto::daemon::error_chain(error.as_ref())
            );
            ExitCode::FAILURE
        }
    }
}
