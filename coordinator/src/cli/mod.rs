//! `muster`: the operator's client of `AdminService`.
//!
//! It finds the coordinator from `--coordinator`, `--ca-file` and `--token`/`--token-file`, or the
//! environment (`MUSTER_COORDINATOR`, `MUSTER_CA_FILE`, `MUSTER_TOKEN`, `MUSTER_TOKEN_FILE`), or a
//! local coordinator's data directory (`--data-dir`, `MUSTER_DATA_DIR`: its `ca.pem` and
//! `admin.token`). Output is a table for people and `--output json` for programs. Every failure is
//! one line on stderr and a non-zero exit.
//!
//! One module per noun: `cluster`, `tokens`, `host`, `component` (assignments, load
//! balancers, backends), `status` (and `ping`), `events`, `quickstart`; each holds its
//! arguments, its views and the function that runs it. `connection` reaches the coordinator and
//! words its errors; `output` writes tables and JSON. This file holds the command tree and
//! [`run`], which hands each command to its module.

mod apply;
mod cluster;
mod component;
mod connection;
mod events;
mod host;
mod output;
mod quickstart;
mod rollout;
mod services;
mod status;
mod tokens;
mod wait;

use apply::*;
use cluster::*;
use component::*;
use connection::*;
use events::*;

use host::*;
use output::*;
use rollout::*;
use services::*;
use status::*;
use tokens::*;
use wait::*;

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand, ValueEnum};
use muster_proto::state::Condition;
use muster_proto::token::{self, AdminToken};
use muster_proto::v1::admin_service_client::AdminServiceClient;
use muster_proto::v1::{self, OdbType, Role};
use muster_proto::validate;
use serde::{Deserialize, Serialize};
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};

/// Drive a Muster coordinator: clusters, join tokens, hosts and the event log.
#[derive(Debug, Parser)]
#[command(
    name = "muster",
    version,
    after_help = "Exit status: 0 done (or already so), 1 refused as things stand, 2 bad command \
                  line or value, 3 not found, 4 exists and differs, 5 coordinator unreachable, \
                  6 admin token refused, 7 `wait` timed out."
)]
pub struct Cli {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// Output format: a table for people, JSON for programs (toml: for `muster get`).
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Make a cluster what a file describes: its ODB, its servers, scheduler, web-admins and
    /// load balancers by host or by label selector, its services ([services]), configuration
    /// ([config]), Python dependencies ([python]) and user-config files ([user_conf]). Shows the
    /// plan (+ create, ~ configure, - remove, = unchanged) and carries it out; components the
    /// file does not name are removed. When a server reports the cluster's ODB empty (replaced by
    /// an empty one), it rebuilds the cluster on it (! rebuild): every server, the scheduler and
    /// the dashboard are created again.
    Apply {
        /// The cluster file (TOML; `muster get cluster NAME` writes one).
        #[arg(long, short = 'f')]
        file: PathBuf,
        /// Show the plan and change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Set a cluster's services: the Python modules every server of it runs. Takes files
    /// (NAME.py) and directories of them; the set given is the whole set. Each server's agent
    /// deploys what its server lacks; `muster component list` shows the revision each runs. With
    /// --config, --requirements or --user-conf instead: its configuration, Python dependencies or
    /// user-config files.
    Deploy {
        #[arg(long)]
        cluster: String,
        /// Python modules, or directories whose `*.py` are taken.
        paths: Vec<PathBuf>,
        /// Set the cluster's configuration instead: enmasse files (NAME.yaml), the whole set.
        /// One server's agent imports them with `zato enmasse`.
        #[arg(long, num_args = 1..)]
        config: Vec<PathBuf>,
        /// With --config: the INI file whose `[env]` section gives each
        /// `{Zato_Enmasse_Env.NAME}` its value (secrets: sealed, never shown).
        #[arg(long)]
        env_file: Option<PathBuf>,
        /// Set the cluster's Python dependencies instead: a pip requirements file (one
        /// `NAME[EXTRAS] SPECIFIERS` per line). Every server installs them beside itself before
        /// it starts; running servers restart at their turn to load them. The whole set: with
        /// --wheelhouse and --package, what is left out is removed.
        #[arg(long)]
        requirements: Option<PathBuf>,
        /// With --requirements: a directory of wheels to install them from, for hosts without a
        /// package index.
        #[arg(long)]
        wheelhouse: Option<PathBuf>,
        /// Python packages the services import (each a directory with an `__init__.py`),
        /// installed with the Python dependencies onto every server's import path; with
        /// --requirements when the cluster has requirements (the whole set is set).
        #[arg(long, num_args = 1..)]
        package: Vec<PathBuf>,
        /// Set the cluster's user-config files instead (NAME.ini or NAME.conf, what services read
        /// as `self.config.NAME`), the whole set. Their content is secret: sealed, never shown.
        /// Every server's agent writes them and loads them into its running server.
        #[arg(long, num_args = 1..)]
        user_conf: Vec<PathBuf>,
    },
    /// Write a cluster as the file `muster apply` takes (TOML; with -o json as JSON).
    Get {
        #[command(subcommand)]
        what: GetCommand,
    },
    /// Create a cluster, or assign a server, scheduler, web-admin or load balancer to a host.
    Create {
        #[command(subcommand)]
        what: CreateCommand,
    },
    /// List, show or delete clusters.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Change a load balancer's settings (applied with a hitless HAProxy reload), the cluster's
    /// server, scheduler or dashboard settings (applied by a rolling restart of that role) or its
    /// rollout strategy.
    Configure {
        #[command(subcommand)]
        what: ConfigureCommand,
    },
    /// Create, list or revoke join tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Unassign a server, scheduler or web-admin from a host; the host stops and archives it.
    Remove {
        /// The role: server, scheduler, web-admin or load-balancer.
        #[arg(value_parser = parse_role)]
        role: Role,
        #[command(flatten)]
        target: RemoveArgs,
    },
    /// List assigned components and what their hosts report of them.
    Component {
        #[command(subcommand)]
        command: ComponentCommand,
    },
    /// List or show enrolled hosts.
    Host {
        #[command(subcommand)]
        command: HostCommand,
    },
    /// The audit log of every change, newest first.
    Events {
        /// Only this cluster's events.
        #[arg(long)]
        cluster: Option<String>,
        /// How many events, at most 1000 (with --follow: how many recent ones first).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Keep following: after the recent events, show each new one as it is recorded (with
        /// -o json one object per line). Reconnects after a coordinator restart without losing
        /// or repeating an event. Until interrupted.
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Each cluster's hosts and components at a glance: state, generation applied versus
    /// desired, health, restarts and the last error.
    Status {
        /// Only this cluster.
        #[arg(long)]
        cluster: Option<String>,
        /// Keep watching: show the status again whenever it changes (a terminal is redrawn; a
        /// pipe gets each new status after a `---` line, or with -o json one object per line).
        /// Until interrupted.
        #[arg(long, short = 'w')]
        watch: bool,
        /// How often --watch asks the coordinator.
        #[arg(long, default_value = "2s", value_parser = humantime::parse_duration, requires = "watch")]
        interval: Duration,
    },
    /// Wait until a cluster has converged: every component healthy, every load balancer
    /// routing to every server (of hosts not drained), and every server restarted for the
    /// cluster's last rolling restart (`muster rollout restart`). Progress on stderr; exit status
    /// 0 once converged, 7 with what is still waiting when the timeout runs out, 1 with the
    /// reason when a server failed a rollout (its turn paused, or the change undone by
    /// auto_revert: `muster configure rollout`).
    Wait {
        /// The cluster.
        #[arg(long)]
        cluster: String,
        /// The condition; `healthy` is the one there is.
        #[arg(long = "for", value_enum, default_value_t = WaitFor::Healthy)]
        condition: WaitFor,
        /// How long to wait at most, e.g. 5m.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "5m")]
        timeout: Duration,
    },
    /// Change a running cluster's servers a few at a time (max_unavailable, one unless set)
    /// while the others serve: a rolling restart, and where it stands.
    Rollout {
        #[command(subcommand)]
        command: RolloutCommand,
    },
    /// A cluster's servers for an external load balancer (hosts that are enrolled and not drained).
    Backends {
        #[arg(long)]
        cluster: String,
        /// table, json or haproxy [default: as --output says].
        #[arg(long, value_enum)]
        format: Option<BackendFormat>,
    },
    /// A whole Zato cluster on this host in one command: a coordinator on SQLite, an agent,
    /// web-admin, a load balancer, N servers and the scheduler, all on 127.0.0.1. Also
    /// `quickstart status --dir DIR` and `quickstart stop --dir DIR`.
    Quickstart(quickstart::QuickstartArgs),
    /// Check that the coordinator answers and accepts the admin token.
    Ping {
        /// Keep trying for this long while the coordinator cannot be reached, e.g. 30s.
        #[arg(long, value_parser = humantime::parse_duration)]
        wait: Option<Duration>,
    },
    /// Write man pages and shell completions into a directory (for packaging).
    #[command(hide = true)]
    GenerateDocs {
        #[arg(long)]
        out: PathBuf,
    },
}

/// What `muster wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum WaitFor {
    Healthy,
}

#[derive(Debug, Subcommand)]
enum CreateCommand {
    /// Create a cluster with the ODB settings that Zato's --odb-* options take. Its Zato secret
    /// key, JWT secret and admin.invoke password are generated by the coordinator.
    Cluster(CreateClusterArgs),
    /// Assign a Zato server to a host (which may enroll later).
    Server(AssignArgs),
    /// Assign the cluster's scheduler to a host (at most one per cluster).
    Scheduler(AssignArgs),
    /// Assign a web-admin dashboard to a host.
    WebAdmin(AssignArgs),
    /// Assign a load balancer to a host: its agent runs HAProxy (port 11223 by default) with every
    /// server of the cluster as a backend, kept up to date as servers come and go.
    LoadBalancer(LoadBalancerArgs),
}

fn parse_odb_type(text: &str) -> Result<OdbType, String> {
    text.parse()
        .map_err(|error: muster_proto::UnknownName| error.to_string())
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse()
        .map_err(|error: muster_proto::UnknownName| error.to_string())
}

#[derive(Debug, Subcommand)]
enum GetCommand {
    /// One cluster, every component by host and name; the ODB password is not written.
    Cluster {
        /// The cluster's name.
        name: String,
        /// Write it into this new (or empty) directory instead, whole: cluster.toml with its
        /// services, enmasse files, requirements and wheels beside it (env values, secrets, are
        /// not written: config/env.ini.example names them).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// A failure, said in one line. Each kind has its own exit status ([`CliError::exit_code`]), so
/// scripts can tell "not found" from "cannot reach the coordinator".
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A bad command line or value, caught here or by the coordinator (exit 2, as clap's own).
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach the coordinator at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("the coordinator at {url} refused the admin token: {message}")]
    Unauthenticated { url: String, message: String },
    /// The coordinator refused the request as it stands (a conflict, a precondition).
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    NotFound(String),
    /// Something different already holds the name (the same request again succeeds instead).
    #[error("{0}")]
    Exists(String),
    /// `muster wait` ran out of time.
    #[error("{0}")]
    TimedOut(String),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl CliError {
    /// The exit status for this failure, as README's "Exit status" lists them.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Refused(_) | CliError::Output(_) => 1,
            CliError::Usage(_) => 2,
            CliError::NotFound(_) => 3,
            CliError::Exists(_) => 4,
            CliError::Unreachable { .. } => 5,
            CliError::Unauthenticated { .. } => 6,
            CliError::TimedOut(_) => 7,
        }
    }
}

impl From<validate::Invalid> for CliError {
    fn from(error: validate::Invalid) -> Self {
        CliError::Usage(error.to_string())
    }
}

/// Runs one `muster` command, writing what it shows to `out`.
pub async fn run(cli: Cli, out: &mut impl std::io::Write) -> Result<(), CliError> {
    let json = cli.output == OutputFormat::Json;
    let connection = &cli.connection;
    if cli.output == OutputFormat::Toml && !matches!(cli.command, Command::Get { .. }) {
        return Err(CliError::Usage(
            "-o toml is for `muster get`; other commands write a table or JSON".to_owned(),
        ));
    }
    match cli.command {
        Command::Apply { file, dry_run } => {
            apply_command(file, dry_run, connection, json, out).await
        }
        Command::Get {
            what: GetCommand::Cluster { name, dir },
        } => get_cluster_command(name, dir, connection, json, out).await,
        Command::Deploy {
            cluster,
            paths,
            config,
            env_file,
            requirements,
            wheelhouse,
            package,
            user_conf,
        } => {
            let what = Deploy {
                paths,
                config,
                env_file,
                requirements,
                wheelhouse,
                packages: package,
                user_conf,
            };
            deploy_command(cluster, what, connection, json, out).await
        }
        Command::GenerateDocs { out: directory } => {
            use clap::CommandFactory as _;
            muster_proto::docs::write(Cli::command(), &directory).map_err(CliError::Output)
        }
        Command::Ping { wait } => ping(wait, connection, json, out).await,
        Command::Create { what } => match what {
            CreateCommand::Cluster(args) => create_cluster(args, connection, json, out).await,
            CreateCommand::Server(args) => assign(connection, json, Role::Server, args, out).await,
            CreateCommand::Scheduler(args) => {
                assign(connection, json, Role::Scheduler, args, out).await
            }
            CreateCommand::WebAdmin(args) => {
                assign(connection, json, Role::WebAdmin, args, out).await
            }
            CreateCommand::LoadBalancer(args) => {
                create_load_balancer(args, connection, json, out).await
            }
        },
        Command::Quickstart(args) => quickstart::run(args, json, out).await,
        Command::Configure {
            what: ConfigureCommand::LoadBalancer(args),
        } => configure_load_balancer(args, connection, json, out).await,
        Command::Configure {
            what: ConfigureCommand::Server(args),
        } => configure_servers(args, connection, json, out).await,
        Command::Configure {
            what: ConfigureCommand::Scheduler(args),
        } => configure_role(Role::Scheduler, args, connection, json, out).await,
        Command::Configure {
            what: ConfigureCommand::WebAdmin(args),
        } => configure_role(Role::WebAdmin, args, connection, json, out).await,
        Command::Configure {
            what: ConfigureCommand::Rollout(args),
        } => configure_rollout(args, connection, json, out).await,
        Command::Remove { role, target } => {
            remove_component(role, target, connection, json, out).await
        }
        Command::Component { command } => match command {
            ComponentCommand::List { cluster } => {
                component_list(cluster, connection, json, out).await
            }
            ComponentCommand::Show {
                role,
                name,
                cluster,
            } => component_show(role, name, cluster, connection, json, out).await,
        },
        Command::Cluster { command } => cluster_command(command, connection, json, out).await,
        Command::Token { command } => token_command(command, connection, json, out).await,
        Command::Host { command } => host_command(command, connection, json, out).await,
        Command::Status {
            cluster,
            watch,
            interval,
        } => {
            let every = watch.then_some(interval);
            status_command(cluster, every, connection, json, out).await
        }
        Command::Wait {
            cluster,
            condition: WaitFor::Healthy,
            timeout,
        } => wait_command(cluster, timeout, connection, json, out).await,
        Command::Backends { cluster, format } => {
            backends(cluster, format, connection, json, out).await
        }
        Command::Rollout { command } => rollout_command(command, connection, json, out).await,
        Command::Events {
            cluster,
            limit,
            follow,
        } => events_command(cluster, limit, follow, connection, json, out).await,
    }
}
