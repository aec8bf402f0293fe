//! `muster`: the operator's client of `AdminService`.
//!
//! It finds the coordinator from `--coordinator`, `--ca-file` and `--token`/`--token-file`, or the
//! environment (`MUSTER_COORDINATOR`, `MUSTER_CA_FILE`, `MUSTER_TOKEN`, `MUSTER_TOKEN_FILE`), or a
//! local coordinator's data directory (`--data-dir`, `MUSTER_DATA_DIR`: its `ca.pem` and
//! `admin.token`). Output is a table for people and `--output json` for programs. Every failure is
//! one line on stderr and a non-zero exit.

mod quickstart;

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand, ValueEnum};
use muster_proto::token::{self, AdminToken};
use muster_proto::v1::admin_service_client::AdminServiceClient;
use muster_proto::v1::{self, OdbType, Role};
use muster_proto::validate;
use serde::Serialize;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Request, Status};

/// Drive a Muster coordinator: clusters, join tokens, hosts and the event log.
#[derive(Debug, Parser)]
#[command(name = "muster", version)]
pub struct Cli {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// Output format: a table for people, JSON for programs.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = OutputFormat::Table)]
    output: OutputFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct ConnectionArgs {
    /// The coordinator's gRPC URL.
    #[arg(
        long,
        global = true,
        env = "MUSTER_COORDINATOR",
        default_value = "https://127.0.0.1:17300"
    )]
    coordinator: String,
    /// The CA certificate that signed the coordinator's certificate (its ca.pem).
    #[arg(long, global = true, env = "MUSTER_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// The admin token. Prefer --token-file: a command line is visible to other local users.
    #[arg(long, global = true, env = "MUSTER_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A file holding the admin token.
    #[arg(long, global = true, env = "MUSTER_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// A local coordinator's data directory: its ca.pem and admin.token are used unless
    /// --ca-file or a token is given.
    #[arg(long, global = true, env = "MUSTER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// How long one call may take, e.g. 30s.
    #[arg(long, global = true, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum OutputFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
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
    /// Change a load balancer's settings; its agent applies them with a hitless HAProxy reload.
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
        /// How many events, at most 1000.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Each cluster's hosts and components at a glance: state, generation applied versus
    /// desired, health, restarts and the last error.
    Status {
        /// Only this cluster.
        #[arg(long)]
        cluster: Option<String>,
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

#[derive(Debug, Subcommand)]
enum ConfigureCommand {
    /// Change the settings given; the others keep their values.
    LoadBalancer(ConfigureLoadBalancerArgs),
}

#[derive(Debug, Args)]
struct ConfigureLoadBalancerArgs {
    #[command(flatten)]
    target: RemoveArgs,
    #[command(flatten)]
    settings: LoadBalancerSettingsArgs,
}

#[derive(Debug, Args)]
struct LoadBalancerArgs {
    #[command(flatten)]
    assign: AssignArgs,
    #[command(flatten)]
    settings: LoadBalancerSettingsArgs,
}

#[derive(Debug, Args)]
struct LoadBalancerSettingsArgs {
    /// The HAProxy binary on the host: an absolute path, or a name looked up in PATH
    /// [default: haproxy].
    #[arg(long)]
    haproxy_bin: Option<String>,
    /// The IP address the frontend binds [default: 0.0.0.0].
    #[arg(long)]
    frontend_address: Option<String>,
    /// How often each server is checked (`GET /zato/ping`) [default: 2s].
    #[arg(long, value_parser = humantime::parse_duration)]
    check_inter: Option<Duration>,
    /// How many passed checks bring a server back [default: 2].
    #[arg(long)]
    check_rise: Option<u32>,
    /// How many failed checks take a server out [default: 2].
    #[arg(long)]
    check_fall: Option<u32>,
}

impl LoadBalancerSettingsArgs {
    /// The settings as given, checked; unset ones stay zero (the coordinator's defaults).
    fn settings(&self) -> Result<v1::LoadBalancerSettings, CliError> {
        let check_inter_ms = match self.check_inter {
            None => 0,
            Some(inter) => u32::try_from(inter.as_millis())
                .ok()
                .filter(|milliseconds| *milliseconds > 0)
                .ok_or_else(|| {
                    CliError::Usage(format!(
                        "invalid --check-inter {}: must be from 100ms to 1h",
                        humantime::format_duration(inter)
                    ))
                })?,
        };
        let given = v1::LoadBalancerSettings {
            haproxy_bin: self.haproxy_bin.clone().unwrap_or_default(),
            frontend_address: self.frontend_address.clone().unwrap_or_default(),
            check_inter_ms,
            check_rise: self.check_rise.unwrap_or(0),
            check_fall: self.check_fall.unwrap_or(0),
        };
        for (flag, value) in [
            ("--check-rise", self.check_rise),
            ("--check-fall", self.check_fall),
        ] {
            if value == Some(0) {
                return Err(CliError::Usage(format!(
                    "invalid {flag} 0: must be from 1 to 100"
                )));
            }
        }
        muster_proto::haproxy::settings(&given)?;
        Ok(given)
    }
}

#[derive(Debug, Args)]
struct AssignArgs {
    /// The cluster.
    #[arg(long)]
    cluster: String,
    /// The host's name, as its agent enrolls it.
    #[arg(long)]
    host: String,
    /// The component's name [default: serverN for servers, the role's name otherwise].
    #[arg(long)]
    name: Option<String>,
    /// Its port [default: the first free one from 17010 for servers, 31530 for the scheduler,
    /// 8183 for web-admin, 11223 for a load balancer].
    #[arg(long)]
    port: Option<u16>,
}

#[derive(Debug, Args)]
struct RemoveArgs {
    /// The cluster.
    #[arg(long)]
    cluster: String,
    /// The host the component runs on.
    #[arg(long)]
    host: String,
    /// The component's name; needed only when the host has several of that role.
    #[arg(long)]
    name: Option<String>,
}

#[derive(Debug, Subcommand)]
enum ComponentCommand {
    /// List components, with the state, health and restarts their hosts last reported.
    List {
        /// Only this cluster's components.
        #[arg(long)]
        cluster: Option<String>,
    },
}

#[derive(Debug, Clone, Serialize)]
struct ComponentView {
    cluster: String,
    role: String,
    name: String,
    host: String,
    port: u32,
    /// Empty while the host has not reported it.
    state: String,
    healthy: bool,
    restarts: u32,
    last_error: String,
    /// A load balancer's settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    load_balancer: Option<LoadBalancerView>,
    /// A load balancer's backend servers as its HAProxy last reported them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    backends: Vec<BackendStateView>,
}

#[derive(Debug, Clone, Serialize)]
struct LoadBalancerView {
    haproxy_bin: String,
    frontend_address: String,
    check_inter_ms: u32,
    check_rise: u32,
    check_fall: u32,
}

#[derive(Debug, Clone, Serialize)]
struct BackendStateView {
    server: String,
    address: String,
    /// HAProxy's own word: UP, DOWN, DRAIN, MAINT, ...
    state: String,
    check: String,
    sessions: u32,
}

impl From<v1::ComponentAssignment> for ComponentView {
    fn from(component: v1::ComponentAssignment) -> Self {
        ComponentView {
            cluster: component.cluster,
            role: Role::try_from(component.role)
                .map(|role| role.cli_name().to_owned())
                .unwrap_or_default(),
            name: component.name,
            host: component.host,
            port: component.port,
            state: component.state,
            healthy: component.healthy,
            restarts: component.restarts,
            last_error: component.last_error,
            load_balancer: component.load_balancer.map(|settings| LoadBalancerView {
                haproxy_bin: settings.haproxy_bin,
                frontend_address: settings.frontend_address,
                check_inter_ms: settings.check_inter_ms,
                check_rise: settings.check_rise,
                check_fall: settings.check_fall,
            }),
            backends: component
                .backends
                .into_iter()
                .map(|backend| BackendStateView {
                    server: backend.name,
                    address: backend.address,
                    state: backend.state,
                    check: backend.check,
                    sessions: backend.sessions,
                })
                .collect(),
        }
    }
}

/// Each load balancer's backend servers, as its HAProxy last reported them.
fn write_balancer_backends(
    out: &mut impl std::io::Write,
    components: &[ComponentView],
) -> std::io::Result<()> {
    for balancer in components
        .iter()
        .filter(|component| component.load_balancer.is_some())
    {
        writeln!(out)?;
        writeln!(
            out,
            "backend of load-balancer {} on host {} (as its HAProxy sees it)",
            balancer.name, balancer.host
        )?;
        if balancer.backends.is_empty() {
            writeln!(out, "  no server reported")?;
            continue;
        }
        let rows: Vec<Vec<String>> = balancer
            .backends
            .iter()
            .map(|backend| {
                vec![
                    backend.server.clone(),
                    backend.address.clone(),
                    backend.state.clone(),
                    backend.check.clone(),
                    backend.sessions.to_string(),
                ]
            })
            .collect();
        write_table(
            out,
            &["SERVER", "ADDRESS", "STATE", "CHECK", "SESSIONS"],
            &rows,
        )?;
    }
    Ok(())
}

fn write_components(
    out: &mut impl std::io::Write,
    components: &[ComponentView],
) -> std::io::Result<()> {
    let rows: Vec<Vec<String>> = components
        .iter()
        .map(|component| {
            vec![
                component.cluster.clone(),
                component.role.clone(),
                component.name.clone(),
                component.host.clone(),
                component.port.to_string(),
                if component.state.is_empty() {
                    "pending".to_owned()
                } else {
                    component.state.clone()
                },
                if component.healthy { "yes" } else { "no" }.to_owned(),
                component.restarts.to_string(),
                component.last_error.clone(),
            ]
        })
        .collect();
    write_table(
        out,
        &[
            "CLUSTER",
            "ROLE",
            "NAME",
            "HOST",
            "PORT",
            "STATE",
            "HEALTHY",
            "RESTARTS",
            "LAST ERROR",
        ],
        &rows,
    )
}

#[derive(Debug, Args)]
struct CreateClusterArgs {
    /// The cluster's name: letters, digits, '.', '_' and '-'.
    name: String,
    /// A note for people.
    #[arg(long, default_value = "")]
    description: String,
    /// The ODB's type: sqlite, postgresql or mysql.
    #[arg(long, default_value = "sqlite", value_parser = parse_odb_type)]
    odb_type: OdbType,
    /// The ODB's host (postgresql, mysql).
    #[arg(long, default_value = "")]
    odb_host: String,
    /// The ODB's port [default: 5432 for postgresql, 3306 for mysql].
    #[arg(long)]
    odb_port: Option<u16>,
    /// The ODB's user (postgresql, mysql).
    #[arg(long, default_value = "")]
    odb_user: String,
    /// The ODB's database name; with sqlite, the database file's path [default with sqlite: a
    /// file the agent keeps in its components directory].
    #[arg(long, default_value = "")]
    odb_db_name: String,
    /// A file holding the ODB password, or - for standard input. A trailing newline is removed.
    #[arg(long)]
    odb_password_file: Option<PathBuf>,
    /// The PostgreSQL schema (postgresql only).
    #[arg(long, default_value = "")]
    postgresql_schema: String,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// List every cluster.
    List,
    /// Show one cluster.
    Show { name: String },
    /// Show the user and password that log in to the cluster's Zato dashboard, and where it is.
    DashboardLogin { name: String },
    /// Delete a cluster and its join tokens.
    Delete {
        name: String,
        /// Do not ask for confirmation (required when standard input is not a terminal).
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a join token; it is shown once, only its hash is kept.
    Create {
        /// The cluster that hosts enrolling with it join.
        #[arg(long)]
        cluster: String,
        /// A role every host that enrolls with it gets in the cluster (server, scheduler, web-admin
        /// or load-balancer); repeat for several. Without one, hosts only enroll and get their
        /// roles through `muster create`.
        #[arg(long = "role", value_parser = parse_role)]
        roles: Vec<Role>,
        /// How long it is valid, e.g. 24h or 30m (at most 365d).
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// How many hosts may enroll with it; 0 means unlimited.
        #[arg(long, default_value_t = 1)]
        max_uses: u32,
        /// A note for people.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List join tokens.
    List {
        /// Only this cluster's tokens.
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Revoke a join token by its id (as `muster token list` shows it).
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
enum HostCommand {
    /// List enrolled hosts.
    List,
    /// Show one host.
    Show { name: String },
    /// Drain a host: its servers leave the backends, the scheduler moves off it, and its
    /// components stop (they stay created).
    Drain { name: String },
    /// Undrain a host: its components start again.
    Undrain { name: String },
    /// Remove a drained host: its assignments are deleted and its certificate stops working.
    Remove {
        name: String,
        /// Remove it even if it is not drained or has not stopped its components.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum BackendFormat {
    Table,
    Json,
    /// HAProxy `server` lines, as Zato's `zato.config` has them.
    Haproxy,
}

fn parse_odb_type(text: &str) -> Result<OdbType, String> {
    text.parse()
        .map_err(|error: muster_proto::UnknownName| error.to_string())
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.parse()
        .map_err(|error: muster_proto::UnknownName| error.to_string())
}

/// A failure, said in one line.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach the coordinator at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("the coordinator at {url} refused the admin token: {message}")]
    Unauthenticated { url: String, message: String },
    #[error("{0}")]
    Refused(String),
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
}

impl From<validate::Invalid> for CliError {
    fn from(error: validate::Invalid) -> Self {
        CliError::Usage(error.to_string())
    }
}

#[derive(Clone)]
struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

type Client = AdminServiceClient<InterceptedService<Channel, Bearer>>;

struct Connection {
    client: Client,
    url: String,
}

impl Connection {
    fn status_error(&self, status: &Status) -> CliError {
        match status.code() {
            Code::Unauthenticated => CliError::Unauthenticated {
                url: self.url.clone(),
                message: status.message().to_owned(),
            },
            Code::Unavailable if status.message().contains("transport") => CliError::Unreachable {
                url: self.url.clone(),
                detail: transport_detail(status),
            },
            _ => CliError::Refused(status.message().to_owned()),
        }
    }
}

fn transport_detail(status: &Status) -> String {
    use std::error::Error as _;
    match status.source() {
        Some(source) => crate::error_chain(source),
        None => status.message().to_owned(),
    }
}

fn read_admin_token(args: &ConnectionArgs) -> Result<AdminToken, CliError> {
    let text = if let Some(token) = &args.token {
        token.clone()
    } else {
        let path = match (&args.token_file, &args.data_dir) {
            (Some(path), _) => path.clone(),
            (None, Some(data_dir)) => data_dir.join("admin.token"),
            (None, None) => {
                return Err(CliError::Usage(
                    "no admin token: pass --token-file or --token, set MUSTER_TOKEN_FILE or MUSTER_TOKEN, or point --data-dir at a local coordinator's data directory".to_owned(),
                ));
            }
        };
        std::fs::read_to_string(&path).map_err(|error| {
            CliError::Usage(format!(
                "cannot read the admin token file {}: {error}",
                path.display()
            ))
        })?
    };
    AdminToken::parse(&text).map_err(|error| CliError::Usage(error.to_string()))
}

fn read_ca(args: &ConnectionArgs) -> Result<String, CliError> {
    let path = match (&args.ca_file, &args.data_dir) {
        (Some(path), _) => path.clone(),
        (None, Some(data_dir)) => data_dir.join("ca.pem"),
        (None, None) => {
            return Err(CliError::Usage(
                "no CA certificate: pass --ca-file, set MUSTER_CA_FILE, or point --data-dir at a local coordinator's data directory".to_owned(),
            ));
        }
    };
    std::fs::read_to_string(&path).map_err(|error| {
        CliError::Usage(format!(
            "cannot read the CA file {}: {error}",
            path.display()
        ))
    })
}

async fn connect(args: &ConnectionArgs) -> Result<Connection, CliError> {
    let token = read_admin_token(args)?;
    let ca_pem = read_ca(args)?;
    let url = args.coordinator.clone();
    let parsed = url::Url::parse(&url)
        .map_err(|error| CliError::Usage(format!("invalid --coordinator URL {url:?}: {error}")))?;
    if parsed.scheme() != "https" {
        return Err(CliError::Usage(format!(
            "invalid --coordinator URL {url:?}: the coordinator speaks TLS only, use https://"
        )));
    }
    let host = parsed
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(host);
    let endpoint = Endpoint::from_shared(url.clone())
        .and_then(|endpoint| endpoint.tls_config(tls))
        .map_err(|error| CliError::Usage(format!("invalid --coordinator URL {url:?}: {error}")))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(args.timeout);
    let channel = endpoint
        .connect()
        .await
        .map_err(|error| CliError::Unreachable {
            url: url.clone(),
            detail: {
                use std::error::Error as _;
                error
                    .source()
                    .map(crate::error_chain)
                    .unwrap_or_else(|| error.to_string())
            },
        })?;
    let mut header = MetadataValue::try_from(format!("Bearer {token}"))
        .map_err(|_| CliError::Usage("the admin token cannot be sent as a header".to_owned()))?;
    header.set_sensitive(true);
    Ok(Connection {
        client: AdminServiceClient::with_interceptor(channel, Bearer(header)),
        url,
    })
}

fn format_time(unix_ms: i64) -> String {
    crate::unix_ms_text(unix_ms)
}

fn role_names(roles: &[i32]) -> Vec<String> {
    roles
        .iter()
        .map(|&role| {
            Role::try_from(role)
                .map(|role| role.cli_name().to_owned())
                .unwrap_or_default()
        })
        .collect()
}

#[derive(Debug, Serialize)]
struct ClusterView {
    name: String,
    description: String,
    odb_type: String,
    odb_host: String,
    odb_port: u32,
    odb_user: String,
    odb_db_name: String,
    postgresql_schema: String,
    has_odb_password: bool,
    created_at: String,
    /// The server the scheduler is pointed at; empty before any.
    scheduler_target: String,
}

impl From<v1::Cluster> for ClusterView {
    fn from(cluster: v1::Cluster) -> Self {
        let odb = cluster.odb.unwrap_or_default();
        ClusterView {
            name: cluster.name,
            description: cluster.description,
            odb_type: OdbType::try_from(odb.odb_type)
                .unwrap_or_default()
                .zato_name()
                .to_owned(),
            odb_host: odb.host,
            odb_port: odb.port,
            odb_user: odb.user,
            odb_db_name: odb.db_name,
            postgresql_schema: odb.postgresql_schema,
            has_odb_password: cluster.has_odb_password,
            created_at: format_time(cluster.created_at_unix_ms),
            scheduler_target: cluster.scheduler_target,
        }
    }
}

#[derive(Debug, Serialize)]
struct JoinTokenView {
    id: String,
    cluster: String,
    roles: Vec<String>,
    state: &'static str,
    uses: u32,
    /// `None` means unlimited.
    max_uses: Option<u32>,
    created_at: String,
    expires_at: String,
    /// `None` while the token is not revoked.
    revoked_at: Option<String>,
    description: String,
}

impl From<v1::JoinToken> for JoinTokenView {
    fn from(token: v1::JoinToken) -> Self {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or_default();
        let state = if token.revoked_at_unix_ms != 0 {
            "revoked"
        } else if token.expires_at_unix_ms <= now_ms {
            "expired"
        } else if token.max_uses != 0 && token.uses >= token.max_uses {
            "used up"
        } else {
            "active"
        };
        JoinTokenView {
            id: token.id,
            cluster: token.cluster,
            roles: role_names(&token.roles),
            state,
            uses: token.uses,
            max_uses: (token.max_uses != 0).then_some(token.max_uses),
            created_at: format_time(token.created_at_unix_ms),
            expires_at: format_time(token.expires_at_unix_ms),
            revoked_at: (token.revoked_at_unix_ms != 0)
                .then(|| format_time(token.revoked_at_unix_ms)),
            description: token.description,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct HostView {
    name: String,
    id: String,
    state: String,
    advertise_address: String,
    labels: std::collections::BTreeMap<String, String>,
    enrolled_at: String,
    /// `None` while the host has never reported.
    last_seen: Option<String>,
    generation: u64,
    applied_generation: u64,
    drained: bool,
}

impl From<v1::Host> for HostView {
    fn from(host: v1::Host) -> Self {
        HostView {
            name: host.name,
            id: host.id,
            state: host.state,
            advertise_address: host.advertise_address,
            labels: host.labels.into_iter().collect(),
            enrolled_at: format_time(host.enrolled_at_unix_ms),
            last_seen: (host.last_seen_unix_ms != 0).then(|| format_time(host.last_seen_unix_ms)),
            generation: host.generation,
            applied_generation: host.applied_generation,
            drained: host.drained,
        }
    }
}

#[derive(Debug, Serialize)]
struct EventView {
    id: i64,
    at: String,
    kind: String,
    cluster: String,
    host: String,
    actor: String,
    message: String,
}

impl From<v1::Event> for EventView {
    fn from(event: v1::Event) -> Self {
        EventView {
            id: event.id,
            at: format_time(event.at_unix_ms),
            kind: event.kind,
            cluster: event.cluster,
            host: event.host,
            actor: event.actor,
            message: event.message,
        }
    }
}

/// Writes rows as aligned columns under a header.
fn write_table(
    out: &mut impl std::io::Write,
    headers: &[&str],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = headers.iter().map(|header| header.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        padded.join("  ").trim_end().to_owned()
    };
    writeln!(out, "{}", line(headers.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

fn write_json(out: &mut impl std::io::Write, value: &impl Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|error| CliError::Output(std::io::Error::other(error)))?;
    writeln!(out, "{text}")?;
    Ok(())
}

fn cluster_rows(clusters: &[ClusterView]) -> Vec<Vec<String>> {
    clusters
        .iter()
        .map(|cluster| {
            let location = match cluster.odb_type.as_str() {
                "sqlite" if cluster.odb_db_name.is_empty() => "(on the agent's host)".to_owned(),
                "sqlite" => cluster.odb_db_name.clone(),
                _ => format!(
                    "{}@{}:{}/{}",
                    cluster.odb_user, cluster.odb_host, cluster.odb_port, cluster.odb_db_name
                ),
            };
            vec![
                cluster.name.clone(),
                cluster.odb_type.clone(),
                location,
                cluster.created_at.clone(),
                cluster.description.clone(),
            ]
        })
        .collect()
}

const CLUSTER_HEADERS: [&str; 5] = ["NAME", "ODB", "ODB LOCATION", "CREATED", "DESCRIPTION"];

fn token_rows(tokens: &[JoinTokenView]) -> Vec<Vec<String>> {
    tokens
        .iter()
        .map(|token| {
            let uses = match token.max_uses {
                Some(max_uses) => format!("{}/{max_uses}", token.uses),
                None => format!("{}/unlimited", token.uses),
            };
            vec![
                token.id.clone(),
                token.cluster.clone(),
                token.roles.join(","),
                token.state.to_owned(),
                uses,
                token.expires_at.clone(),
                token.description.clone(),
            ]
        })
        .collect()
}

const TOKEN_HEADERS: [&str; 7] = [
    "ID",
    "CLUSTER",
    "ROLES",
    "STATE",
    "USES",
    "EXPIRES",
    "DESCRIPTION",
];

fn read_password_file(path: &Path) -> Result<String, CliError> {
    let mut text = String::new();
    let read = if path == Path::new("-") {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(path).map(|contents| text = contents)
    };
    read.map_err(|error| {
        CliError::Usage(format!(
            "cannot read the ODB password file {}: {error}",
            path.display()
        ))
    })?;
    let trimmed = text.strip_suffix('\n').unwrap_or(&text);
    Ok(trimmed.strip_suffix('\r').unwrap_or(trimmed).to_owned())
}

fn confirm_deletion(name: &str, yes: bool) -> Result<(), CliError> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Usage(format!(
            "refusing to delete cluster '{name}' without --yes (standard input is not a terminal to ask)"
        )));
    }
    eprint!("Delete cluster '{name}' and its join tokens? Type its name to confirm: ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if answer.trim() != name {
        return Err(CliError::Usage(format!("cluster '{name}' was not deleted")));
    }
    Ok(())
}

async fn assign(
    connection_args: &ConnectionArgs,
    json: bool,
    role: Role,
    args: AssignArgs,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    assign_with(connection_args, json, role, args, None, out).await
}

async fn assign_with(
    connection_args: &ConnectionArgs,
    json: bool,
    role: Role,
    args: AssignArgs,
    load_balancer: Option<v1::LoadBalancerSettings>,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    validate::name("cluster name", &args.cluster)?;
    validate::name("host name", &args.host)?;
    if let Some(name) = &args.name {
        validate::name("component name", name)?;
    }
    let mut connection = connect(connection_args).await?;
    let request = v1::CreateComponentRequest {
        cluster: args.cluster,
        role: role as i32,
        host: args.host,
        name: args.name.unwrap_or_default(),
        port: u32::from(args.port.unwrap_or(0)),
        load_balancer,
    };
    let response = connection
        .client
        .create_component(request)
        .await
        .map_err(|status| connection.status_error(&status))?;
    let component = ComponentView::from(response.into_inner().component.unwrap_or_default());
    if json {
        write_json(out, &component)?;
    } else {
        writeln!(
            out,
            "assigned {} {} of cluster {} to host {} on port {}",
            component.role, component.name, component.cluster, component.host, component.port
        )?;
    }
    Ok(())
}

fn write_hosts(out: &mut impl std::io::Write, hosts: &[HostView]) -> std::io::Result<()> {
    let rows: Vec<Vec<String>> = hosts
        .iter()
        .map(|host| {
            let state = if host.drained {
                format!("{} (drained)", host.state)
            } else {
                host.state.clone()
            };
            vec![
                host.name.clone(),
                state,
                host.advertise_address.clone(),
                format!("{}/{}", host.applied_generation, host.generation),
                host.last_seen.clone().unwrap_or_else(|| "never".to_owned()),
            ]
        })
        .collect();
    write_table(
        out,
        &["HOST", "STATE", "ADDRESS", "GENERATION", "LAST SEEN"],
        &rows,
    )
}

#[derive(Debug, Serialize)]
struct ClusterStatus {
    name: String,
    /// The hosts with a component of this cluster.
    hosts: Vec<HostView>,
    components: Vec<ComponentView>,
}

#[derive(Debug, Serialize)]
struct StatusView {
    clusters: Vec<ClusterStatus>,
    /// Enrolled hosts with no component in any cluster.
    idle_hosts: Vec<HostView>,
}

fn status_view(
    clusters: &[ClusterView],
    hosts: &[HostView],
    components: &[ComponentView],
    with_idle_hosts: bool,
) -> StatusView {
    let mut result = Vec::new();
    for cluster in clusters {
        let mine: Vec<ComponentView> = components
            .iter()
            .filter(|component| component.cluster == cluster.name)
            .cloned()
            .collect();
        let host_names: std::collections::BTreeSet<&str> = mine
            .iter()
            .map(|component| component.host.as_str())
            .collect();
        let cluster_hosts = hosts
            .iter()
            .filter(|host| host_names.contains(host.name.as_str()))
            .cloned()
            .collect();
        result.push(ClusterStatus {
            name: cluster.name.clone(),
            hosts: cluster_hosts,
            components: mine,
        });
    }
    let busy: std::collections::BTreeSet<&str> = components
        .iter()
        .map(|component| component.host.as_str())
        .collect();
    let idle_hosts = if with_idle_hosts {
        hosts
            .iter()
            .filter(|host| !busy.contains(host.name.as_str()))
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    StatusView {
        clusters: result,
        idle_hosts,
    }
}

fn write_status(out: &mut impl std::io::Write, status: &StatusView) -> std::io::Result<()> {
    for (index, cluster) in status.clusters.iter().enumerate() {
        if index > 0 {
            writeln!(out)?;
        }
        writeln!(out, "cluster {}", cluster.name)?;
        write_hosts(out, &cluster.hosts)?;
        writeln!(out)?;
        write_components(out, &cluster.components)?;
        write_balancer_backends(out, &cluster.components)?;
    }
    if !status.idle_hosts.is_empty() {
        writeln!(out)?;
        writeln!(out, "hosts without components")?;
        write_hosts(out, &status.idle_hosts)?;
    }
    Ok(())
}

/// The components of one cluster, or of all.
async fn list_components(
    connection: &mut Connection,
    cluster: Option<&str>,
) -> Result<Vec<ComponentView>, CliError> {
    Ok(connection
        .client
        .list_components(v1::ListComponentsRequest {
            cluster: cluster.unwrap_or_default().to_owned(),
        })
        .await
        .map_err(|status| connection.status_error(&status))?
        .into_inner()
        .components
        .into_iter()
        .map(ComponentView::from)
        .collect())
}

/// Each cluster's hosts and components (or one cluster's), as `muster status` shows them.
async fn fetch_status(
    connection: &mut Connection,
    cluster: Option<String>,
) -> Result<StatusView, CliError> {
    let clusters: Vec<ClusterView> = match &cluster {
        Some(name) => vec![ClusterView::from(
            connection
                .client
                .get_cluster(v1::GetClusterRequest { name: name.clone() })
                .await
                .map_err(|status| connection.status_error(&status))?
                .into_inner()
                .cluster
                .unwrap_or_default(),
        )],
        None => connection
            .client
            .list_clusters(v1::ListClustersRequest {})
            .await
            .map_err(|status| connection.status_error(&status))?
            .into_inner()
            .clusters
            .into_iter()
            .map(ClusterView::from)
            .collect(),
    };
    let hosts: Vec<HostView> = connection
        .client
        .list_hosts(v1::ListHostsRequest {})
        .await
        .map_err(|status| connection.status_error(&status))?
        .into_inner()
        .hosts
        .into_iter()
        .map(HostView::from)
        .collect();
    let components = list_components(connection, cluster.as_deref()).await?;
    Ok(status_view(
        &clusters,
        &hosts,
        &components,
        cluster.is_none(),
    ))
}

/// Runs one `muster` command, writing its output to `out`.
pub async fn run(cli: Cli, out: &mut impl std::io::Write) -> Result<(), CliError> {
    let json = cli.output == OutputFormat::Json;
    match cli.command {
        Command::Ping { wait } => {
            let deadline = Instant::now() + wait.unwrap_or_default();
            loop {
                let attempt = async {
                    let mut connection = connect(&cli.connection).await?;
                    let request = v1::ListClustersRequest {};
                    match connection.client.list_clusters(request).await {
                        Ok(_) => Ok(connection.url),
                        Err(status) => Err(connection.status_error(&status)),
                    }
                };
                match attempt.await {
                    Ok(url) => {
                        if json {
                            write_json(out, &serde_json::json!({"coordinator": url, "ok": true}))?;
                        } else {
                            writeln!(out, "coordinator at {url} answers; admin token accepted")?;
                        }
                        return Ok(());
                    }
                    Err(CliError::Unreachable { .. }) if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(error) => return Err(error),
                }
            }
        }
        Command::Create {
            what: CreateCommand::Cluster(args),
        } => {
            validate::name("cluster name", &args.name)?;
            validate::description("description", &args.description)?;
            let odb_password = match &args.odb_password_file {
                Some(path) => read_password_file(path)?,
                None => String::new(),
            };
            let request = v1::CreateClusterRequest {
                name: args.name,
                description: args.description,
                odb: Some(v1::OdbSettings {
                    odb_type: args.odb_type as i32,
                    host: args.odb_host,
                    port: u32::from(args.odb_port.unwrap_or(0)),
                    user: args.odb_user,
                    db_name: args.odb_db_name,
                    postgresql_schema: args.postgresql_schema,
                }),
                odb_password,
            };
            let mut connection = connect(&cli.connection).await?;
            let response = connection
                .client
                .create_cluster(request)
                .await
                .map_err(|status| connection.status_error(&status))?;
            let cluster = ClusterView::from(response.into_inner().cluster.unwrap_or_default());
            if json {
                write_json(out, &cluster)?;
            } else {
                writeln!(out, "created cluster {}", cluster.name)?;
            }
        }
        Command::Create {
            what: CreateCommand::Server(args),
        } => {
            assign(&cli.connection, json, Role::Server, args, out).await?;
        }
        Command::Create {
            what: CreateCommand::Scheduler(args),
        } => {
            assign(&cli.connection, json, Role::Scheduler, args, out).await?;
        }
        Command::Create {
            what: CreateCommand::WebAdmin(args),
        } => {
            assign(&cli.connection, json, Role::WebAdmin, args, out).await?;
        }
        Command::Create {
            what: CreateCommand::LoadBalancer(args),
        } => {
            let settings = args.settings.settings()?;
            assign_with(
                &cli.connection,
                json,
                Role::LoadBalancer,
                args.assign,
                Some(settings),
                out,
            )
            .await?;
        }
        Command::Quickstart(args) => quickstart::run(args, json, out).await?,
        Command::Configure {
            what: ConfigureCommand::LoadBalancer(args),
        } => {
            validate::name("cluster name", &args.target.cluster)?;
            validate::name("host name", &args.target.host)?;
            if let Some(name) = &args.target.name {
                validate::name("component name", name)?;
            }
            let settings = args.settings.settings()?;
            if settings == v1::LoadBalancerSettings::default() {
                return Err(CliError::Usage(
                    "nothing to change: give at least one of --haproxy-bin, --frontend-address, \
                     --check-inter, --check-rise, --check-fall"
                        .to_owned(),
                ));
            }
            let mut connection = connect(&cli.connection).await?;
            let request = v1::ConfigureLoadBalancerRequest {
                cluster: args.target.cluster,
                host: args.target.host,
                name: args.target.name.unwrap_or_default(),
                settings: Some(settings),
            };
            let response = connection
                .client
                .configure_load_balancer(request)
                .await
                .map_err(|status| connection.status_error(&status))?;
            let component =
                ComponentView::from(response.into_inner().component.unwrap_or_default());
            if json {
                write_json(out, &component)?;
            } else if let Some(settings) = &component.load_balancer {
                writeln!(
                    out,
                    "load-balancer {} on host {} now runs {} with its frontend on {}, checking \
                     every {}ms (rise {}, fall {})",
                    component.name,
                    component.host,
                    settings.haproxy_bin,
                    settings.frontend_address,
                    settings.check_inter_ms,
                    settings.check_rise,
                    settings.check_fall
                )?;
            }
        }
        Command::Remove { role, target } => {
            validate::name("cluster name", &target.cluster)?;
            validate::name("host name", &target.host)?;
            if let Some(name) = &target.name {
                validate::name("component name", name)?;
            }
            let mut connection = connect(&cli.connection).await?;
            let request = v1::DeleteComponentRequest {
                cluster: target.cluster,
                role: role as i32,
                host: target.host,
                name: target.name.unwrap_or_default(),
            };
            let response = connection
                .client
                .delete_component(request)
                .await
                .map_err(|status| connection.status_error(&status))?;
            let component =
                ComponentView::from(response.into_inner().component.unwrap_or_default());
            if json {
                write_json(out, &component)?;
            } else {
                writeln!(
                    out,
                    "unassigned {} {} of cluster {} from host {}",
                    component.role, component.name, component.cluster, component.host
                )?;
            }
        }
        Command::Component {
            command: ComponentCommand::List { cluster },
        } => {
            if let Some(cluster) = &cluster {
                validate::name("cluster name", cluster)?;
            }
            let mut connection = connect(&cli.connection).await?;
            let components = list_components(&mut connection, cluster.as_deref()).await?;
            if json {
                write_json(out, &components)?;
            } else {
                write_components(out, &components)?;
                write_balancer_backends(out, &components)?;
            }
        }
        Command::Cluster { command } => {
            let mut connection = connect(&cli.connection).await?;
            match command {
                ClusterCommand::List => {
                    let response = connection
                        .client
                        .list_clusters(v1::ListClustersRequest {})
                        .await
                        .map_err(|status| connection.status_error(&status))?;
                    let clusters: Vec<ClusterView> = response
                        .into_inner()
                        .clusters
                        .into_iter()
                        .map(ClusterView::from)
                        .collect();
                    if json {
                        write_json(out, &clusters)?;
                    } else {
                        write_table(out, &CLUSTER_HEADERS, &cluster_rows(&clusters))?;
                    }
                }
                ClusterCommand::DashboardLogin { name } => {
                    validate::name("cluster name", &name)?;
                    let login = connection
                        .client
                        .get_dashboard_login(v1::GetDashboardLoginRequest { cluster: name })
                        .await
                        .map_err(|status| connection.status_error(&status))?
                        .into_inner();
                    if json {
                        write_json(
                            out,
                            &serde_json::json!({
                                "username": login.username,
                                "password": login.password,
                                "urls": login.urls,
                            }),
                        )?;
                    } else {
                        writeln!(out, "user       {}", login.username)?;
                        writeln!(out, "password   {}", login.password)?;
                        for url in &login.urls {
                            writeln!(out, "dashboard  {url}")?;
                        }
                    }
                }
                ClusterCommand::Show { name } => {
                    validate::name("cluster name", &name)?;
                    let response = connection
                        .client
                        .get_cluster(v1::GetClusterRequest { name })
                        .await
                        .map_err(|status| connection.status_error(&status))?;
                    let cluster =
                        ClusterView::from(response.into_inner().cluster.unwrap_or_default());
                    if json {
                        write_json(out, &cluster)?;
                    } else {
                        let port = if cluster.odb_port == 0 {
                            String::new()
                        } else {
                            cluster.odb_port.to_string()
                        };
                        let rows = [
                            ("name", cluster.name.clone()),
                            ("description", cluster.description.clone()),
                            ("odb type", cluster.odb_type.clone()),
                            ("odb host", cluster.odb_host.clone()),
                            ("odb port", port),
                            ("odb user", cluster.odb_user.clone()),
                            ("odb db name", cluster.odb_db_name.clone()),
                            ("postgresql schema", cluster.postgresql_schema.clone()),
                            (
                                "odb password",
                                if cluster.has_odb_password {
                                    "set"
                                } else {
                                    "none"
                                }
                                .to_owned(),
                            ),
                            ("created", cluster.created_at.clone()),
                        ];
                        for (key, value) in rows {
                            writeln!(out, "{key:<18} {value}")?;
                        }
                    }
                }
                ClusterCommand::Delete { name, yes } => {
                    validate::name("cluster name", &name)?;
                    connection
                        .client
                        .get_cluster(v1::GetClusterRequest { name: name.clone() })
                        .await
                        .map_err(|status| connection.status_error(&status))?;
                    confirm_deletion(&name, yes)?;
                    connection
                        .client
                        .delete_cluster(v1::DeleteClusterRequest { name: name.clone() })
                        .await
                        .map_err(|status| connection.status_error(&status))?;
                    if json {
                        write_json(out, &serde_json::json!({"deleted": name}))?;
                    } else {
                        writeln!(out, "deleted cluster {name}")?;
                    }
                }
            }
        }
        Command::Token { command } => match command {
            TokenCommand::Create {
                cluster,
                roles,
                ttl,
                max_uses,
                description,
            } => {
                validate::name("cluster name", &cluster)?;
                validate::description("description", &description)?;
                let mut connection = connect(&cli.connection).await?;
                let request = v1::CreateJoinTokenRequest {
                    cluster,
                    roles: roles.into_iter().map(|role| role as i32).collect(),
                    ttl_seconds: ttl.as_secs().max(1),
                    max_uses,
                    description,
                };
                let response = connection
                    .client
                    .create_join_token(request)
                    .await
                    .map_err(|status| connection.status_error(&status))?
                    .into_inner();
                let token = JoinTokenView::from(response.token.unwrap_or_default());
                if json {
                    write_json(
                        out,
                        &serde_json::json!({"token": token, "secret_token": response.secret_token}),
                    )?;
                } else {
                    let uses = token
                        .max_uses
                        .map_or("unlimited".to_owned(), |uses| uses.to_string());
                    writeln!(
                        out,
                        "join token {} for cluster {}: roles {}, uses {uses}, expires {}",
                        token.id,
                        token.cluster,
                        token.roles.join(","),
                        token.expires_at
                    )?;
                    writeln!(out, "{}", response.secret_token)?;
                    writeln!(
                        out,
                        "This is the only time the token is shown; only its hash is kept."
                    )?;
                }
            }
            TokenCommand::List { cluster } => {
                if let Some(cluster) = &cluster {
                    validate::name("cluster name", cluster)?;
                }
                let mut connection = connect(&cli.connection).await?;
                let request = v1::ListJoinTokensRequest {
                    cluster: cluster.unwrap_or_default(),
                };
                let response = connection
                    .client
                    .list_join_tokens(request)
                    .await
                    .map_err(|status| connection.status_error(&status))?;
                let tokens: Vec<JoinTokenView> = response
                    .into_inner()
                    .tokens
                    .into_iter()
                    .map(JoinTokenView::from)
                    .collect();
                if json {
                    write_json(out, &tokens)?;
                } else {
                    write_table(out, &TOKEN_HEADERS, &token_rows(&tokens))?;
                }
            }
            TokenCommand::Revoke { id } => {
                if !token::is_token_id(&id) {
                    return Err(CliError::Usage(format!(
                        "invalid join token id {id:?}: expected {} lowercase hex digits, as `muster token list` shows",
                        token::ID_LEN
                    )));
                }
                let mut connection = connect(&cli.connection).await?;
                let response = connection
                    .client
                    .revoke_join_token(v1::RevokeJoinTokenRequest { id })
                    .await
                    .map_err(|status| connection.status_error(&status))?;
                let token = JoinTokenView::from(response.into_inner().token.unwrap_or_default());
                if json {
                    write_json(out, &token)?;
                } else {
                    writeln!(
                        out,
                        "revoked join token {} of cluster {}",
                        token.id, token.cluster
                    )?;
                }
            }
        },
        Command::Host { command } => {
            let mut connection = connect(&cli.connection).await?;
            let drain = matches!(command, HostCommand::Drain { .. });
            let hosts: Vec<HostView> = match command {
                HostCommand::List => connection
                    .client
                    .list_hosts(v1::ListHostsRequest {})
                    .await
                    .map_err(|status| connection.status_error(&status))?
                    .into_inner()
                    .hosts
                    .into_iter()
                    .map(HostView::from)
                    .collect(),
                HostCommand::Show { name } => {
                    validate::name("host name", &name)?;
                    let response = connection
                        .client
                        .get_host(v1::GetHostRequest { name })
                        .await
                        .map_err(|status| connection.status_error(&status))?;
                    let host = HostView::from(response.into_inner().host.unwrap_or_default());
                    if json {
                        return write_json(out, &host);
                    }
                    vec![host]
                }
                HostCommand::Drain { name } | HostCommand::Undrain { name } => {
                    validate::name("host name", &name)?;
                    let response = connection
                        .client
                        .drain_host(v1::DrainHostRequest {
                            name: name.clone(),
                            drain,
                        })
                        .await
                        .map_err(|status| connection.status_error(&status))?;
                    let host = HostView::from(response.into_inner().host.unwrap_or_default());
                    if json {
                        return write_json(out, &host);
                    }
                    let verb = if drain { "drained" } else { "undrained" };
                    writeln!(out, "{verb} host {name} (generation {})", host.generation)?;
                    return Ok(());
                }
                HostCommand::Remove { name, force } => {
                    validate::name("host name", &name)?;
                    connection
                        .client
                        .remove_host(v1::RemoveHostRequest {
                            name: name.clone(),
                            force,
                        })
                        .await
                        .map_err(|status| connection.status_error(&status))?;
                    if json {
                        return write_json(out, &serde_json::json!({"removed": name}));
                    }
                    writeln!(out, "removed host {name}; its certificate no longer works")?;
                    return Ok(());
                }
            };
            if json {
                write_json(out, &hosts)?;
            } else {
                write_hosts(out, &hosts)?;
            }
        }
        Command::Status { cluster } => {
            if let Some(cluster) = &cluster {
                validate::name("cluster name", cluster)?;
            }
            let mut connection = connect(&cli.connection).await?;
            let status = fetch_status(&mut connection, cluster).await?;
            if json {
                write_json(out, &status)?;
            } else {
                write_status(out, &status)?;
            }
        }
        Command::Backends { cluster, format } => {
            validate::name("cluster name", &cluster)?;
            let mut connection = connect(&cli.connection).await?;
            let backends = connection
                .client
                .list_backends(v1::ListBackendsRequest { cluster })
                .await
                .map_err(|status| connection.status_error(&status))?
                .into_inner()
                .backends;
            let format = format.unwrap_or(if json {
                BackendFormat::Json
            } else {
                BackendFormat::Table
            });
            match format {
                BackendFormat::Haproxy => {
                    let settings =
                        muster_proto::haproxy::settings(&v1::LoadBalancerSettings::default())?;
                    for backend in &backends {
                        writeln!(
                            out,
                            "{}",
                            muster_proto::haproxy::server_line(
                                &backend.name,
                                &backend.address,
                                backend.port,
                                &settings
                            )
                        )?;
                    }
                }
                BackendFormat::Json => {
                    let views: Vec<serde_json::Value> = backends
                        .iter()
                        .map(|backend| {
                            serde_json::json!({
                                "name": backend.name,
                                "host": backend.host,
                                "address": backend.address,
                                "port": backend.port,
                                "host_state": backend.host_state,
                                "healthy": backend.healthy,
                            })
                        })
                        .collect();
                    write_json(out, &views)?;
                }
                BackendFormat::Table => {
                    let rows: Vec<Vec<String>> = backends
                        .iter()
                        .map(|backend| {
                            vec![
                                backend.name.clone(),
                                format!("{}:{}", backend.address, backend.port),
                                backend.host.clone(),
                                backend.host_state.clone(),
                                if backend.healthy { "yes" } else { "no" }.to_owned(),
                            ]
                        })
                        .collect();
                    write_table(
                        out,
                        &["SERVER", "ADDRESS", "HOST", "HOST STATE", "HEALTHY"],
                        &rows,
                    )?;
                }
            }
        }
        Command::Events { cluster, limit } => {
            if let Some(cluster) = &cluster {
                validate::name("cluster name", cluster)?;
            }
            let mut connection = connect(&cli.connection).await?;
            let request = v1::ListEventsRequest {
                cluster: cluster.unwrap_or_default(),
                limit,
            };
            let response = connection
                .client
                .list_events(request)
                .await
                .map_err(|status| connection.status_error(&status))?;
            let events: Vec<EventView> = response
                .into_inner()
                .events
                .into_iter()
                .map(EventView::from)
                .collect();
            if json {
                write_json(out, &events)?;
            } else {
                let rows: Vec<Vec<String>> = events
                    .iter()
                    .map(|event| {
                        vec![
                            event.at.clone(),
                            event.kind.clone(),
                            event.cluster.clone(),
                            event.host.clone(),
                            event.actor.clone(),
                            event.message.clone(),
                        ]
                    })
                    .collect();
                write_table(
                    out,
                    &["TIME", "KIND", "CLUSTER", "HOST", "ACTOR", "MESSAGE"],
                    &rows,
                )?;
            }
        }
    }
    Ok(())
}
