//! Components: `muster create server|scheduler|web-admin|load-balancer`, `remove`,
//! `configure load-balancer`, `component list` and `backends`.

use std::collections::BTreeMap;

use super::*;

#[derive(Debug, Subcommand)]
pub(super) enum ConfigureCommand {
    /// Change the settings given; the others keep their values.
    LoadBalancer(ConfigureLoadBalancerArgs),
    /// Set or unset the cluster's server settings; a change restarts its servers at their turn
    /// (one at a time, unless `muster configure rollout --max-unavailable` says more).
    ///
    /// Settings are server.conf keys and logging.conf levels from this list (an unset one is
    /// what `zato create server` writes), environment variables of the servers' processes
    /// (env.NAME, put into server.conf's [os_environ]; not for secrets: settings are stored and
    /// shown in clear) and the Zato installation they run:
    ///
    ///   main.gunicorn_workers           worker processes of each server, 1-10 (default 1)
    ///   main.gunicorn_graceful_timeout  seconds a stopping worker finishes its requests, 1-3600 (default 1)
    ///   main.gunicorn_timeout           seconds a silent worker lives, 1-1234567890 (default 1234567890)
    ///   misc.return_tracebacks          True or False (default True)
    ///   misc.http_server_header         the HTTP Server header, a word (default Apache)
    ///   stats.expire_after              hours statistics are kept, 1-87600 (default 168)
    ///   env.NAME                        letters, digits, inner spaces and ._:/@+=-
    ///   logging.LOGGER                  a logger's level in logging.conf: DEBUG, INFO, WARNING,
    ///                                   ERROR or CRITICAL (default INFO); LOGGER is root, zato,
    ///                                   zato_rest, zato_access_log, zato_admin, zato_pubsub or
    ///                                   gunicorn.main
    ///   zato.install                    the Zato installation the servers run, by the name
    ///                                   each agent's agent.toml gives it ([zato_installs];
    ///                                   default: zato_bin); every host of the cluster's servers
    ///                                   must have it (`muster host show` lists them)
    ///
    /// Anything else is refused before anything changes. A change starts a rolling restart
    /// (`muster rollout status`): each server, at its turn, out of rotation, starts with the new
    /// settings.
    #[command(verbatim_doc_comment)]
    Server(ConfigureServerArgs),
    /// Set or unset the settings of the cluster's scheduler; a change restarts it at the
    /// scheduler's turn of a rolling restart (after the servers and load balancers due).
    ///
    /// Settings are logging.conf levels from this list (an unset one is what `zato create
    /// scheduler` writes), environment variables of the scheduler's process (env.NAME; not
    /// for secrets: settings are stored and shown in clear) and the Zato installation it runs:
    ///
    ///   logging.LOGGER                  a logger's level in logging.conf: DEBUG, INFO, WARNING,
    ///                                   ERROR or CRITICAL (default INFO); LOGGER is root, zato
    ///                                   (at DEBUG it logs each job it runs) or zato_scheduler
    ///   env.NAME                        letters, digits, inner spaces and ._:/@+=- (not
    ///                                   LD_*, PYTHON*, PATH, ENV, BASH_ENV or IFS)
    ///   zato.install                    the Zato installation the scheduler runs, by the name
    ///                                   its agent's agent.toml gives it ([zato_installs];
    ///                                   default: zato_bin)
    ///
    /// Anything else is refused before anything changes.
    #[command(verbatim_doc_comment)]
    Scheduler(ConfigureServerArgs),
    /// Set or unset the settings of the cluster's dashboards; a change restarts each at the
    /// dashboards' turn of a rolling restart (first, before the servers).
    ///
    /// Settings are a web-admin.conf key and logging.conf levels from this list (an unset one is
    /// what `zato create web-admin` writes), environment variables of the dashboard's process
    /// (env.NAME, such as Zato's own Zato_Dashboard_CSRF_Trusted_Origins, the origin it is
    /// reached at through a proxy, as https://dashboard.example.com; not for secrets: settings
    /// are stored and shown in clear) and the Zato installation it runs. Two variables Zato
    /// 3.2's dashboard reads are refused: Zato_Dashboard_Session_Timeout (read as text, it
    /// makes every login fail) and Zato_Dashboard_Debug_Enabled (any value turns on Django's
    /// debug pages for whoever reaches the dashboard):
    ///
    ///   TIME_ZONE                       the time zone it shows times in, an IANA name such as
    ///                                   Europe/Prague or UTC (default America/New_York)
    ///   logging.LOGGER                  a logger's level in logging.conf: DEBUG, INFO, WARNING,
    ///                                   ERROR or CRITICAL (default INFO); LOGGER is root or zato
    ///   env.NAME                        letters, digits, inner spaces and ._:/@+=- (not
    ///                                   LD_*, PYTHON*, PATH, ENV, BASH_ENV or IFS)
    ///   zato.install                    the Zato installation the dashboards run, by the name
    ///                                   each agent's agent.toml gives it ([zato_installs];
    ///                                   default: zato_bin)
    ///
    /// Anything else is refused before anything changes.
    #[command(verbatim_doc_comment)]
    WebAdmin(ConfigureServerArgs),
    /// Set how the cluster's rollouts go and what they do when a server fails them. A rollout
    /// (a rolling restart, new server settings, new Python dependencies) restarts servers while
    /// no more than max-unavailable are out of rotation. A server that restarted into it and is
    /// not healthy within the healthy deadline stops it: the restart turn is paused with the
    /// reason (`muster rollout status`), or, with auto-revert, a rollout of server settings is
    /// undone (the settings before it come back; only the servers that run the new ones
    /// restart again). Options left out keep their values.
    Rollout(ConfigureRolloutArgs),
}

#[derive(Debug, Args)]
pub(super) struct ConfigureServerArgs {
    /// The cluster.
    #[arg(long)]
    pub(super) cluster: String,
    /// A setting to set, NAME=VALUE (repeat it).
    #[arg(long = "set", value_name = "NAME=VALUE")]
    pub(super) set: Vec<String>,
    /// A setting to unset (repeat it).
    #[arg(long = "unset", value_name = "NAME")]
    pub(super) unset: Vec<String>,
}

#[derive(Debug, Args)]
pub(super) struct ConfigureLoadBalancerArgs {
    #[command(flatten)]
    pub(super) target: RemoveArgs,
    #[command(flatten)]
    pub(super) settings: LoadBalancerSettingsArgs,
}

#[derive(Debug, Args)]
pub(super) struct LoadBalancerArgs {
    #[command(flatten)]
    pub(super) assign: AssignArgs,
    #[command(flatten)]
    pub(super) settings: LoadBalancerSettingsArgs,
}

#[derive(Debug, Args)]
pub(super) struct LoadBalancerSettingsArgs {
    /// The HAProxy binary on the host: an absolute path, or a name looked up in PATH
    /// [default: haproxy].
    #[arg(long)]
    pub(super) haproxy_bin: Option<String>,
    /// The IP address the frontend binds [default: 0.0.0.0].
    #[arg(long)]
    pub(super) frontend_address: Option<String>,
    /// How often each server is checked (`GET /zato/ping`) [default: 2s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(super) check_inter: Option<Duration>,
    /// How many passed checks bring a server back [default: 2].
    #[arg(long)]
    pub(super) check_rise: Option<u32>,
    /// How many failed checks take a server out [default: 2].
    #[arg(long)]
    pub(super) check_fall: Option<u32>,
    /// How long HAProxy waits to connect to a server before it tries another: what a silent
    /// server (a host cut off) costs a request (100ms to 60s) [default: 1s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(super) connect_timeout: Option<Duration>,
    /// How long HAProxy waits for a server's answer (1s to 1h) [default: 60s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(super) server_timeout: Option<Duration>,
    /// How often a request whose server could not be reached is tried again, each time on
    /// another server (1 to 10) [default: 3].
    #[arg(long)]
    pub(super) retries: Option<u32>,
}

/// A duration option in milliseconds (0 when not given), or why not.
pub(super) fn milliseconds(key: &str, value: Option<Duration>, range: &str) -> Result<u32, String> {
    match value {
        None => Ok(0),
        Some(duration) => u32::try_from(duration.as_millis())
            .ok()
            .filter(|milliseconds| *milliseconds > 0)
            .ok_or_else(|| {
                format!(
                    "invalid {key} {}: must be from {range}",
                    humantime::format_duration(duration)
                )
            }),
    }
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
        given_settings(
            v1::LoadBalancerSettings {
                haproxy_bin: self.haproxy_bin.clone().unwrap_or_default(),
                frontend_address: self.frontend_address.clone().unwrap_or_default(),
                check_inter_ms,
                check_rise: self.check_rise.unwrap_or(0),
                check_fall: self.check_fall.unwrap_or(0),
                connect_timeout_ms: milliseconds(
                    "--connect-timeout",
                    self.connect_timeout,
                    "100ms to 60s",
                )
                .map_err(CliError::Usage)?,
                server_timeout_ms: milliseconds(
                    "--server-timeout",
                    self.server_timeout,
                    "1s to 1h",
                )
                .map_err(CliError::Usage)?,
                retries: self.retries.unwrap_or(0),
            },
            [self.check_rise, self.check_fall, self.retries],
            |key| format!("--{}", key.replace('_', "-")),
        )
        .map_err(CliError::Usage)
    }
}

/// Load balancer settings as a command line or a cluster file gives them (unset ones zero, the
/// coordinator's defaults), checked: `counts` (check rise, check fall, retries) as given (a
/// given 0 is refused), `name` says a
/// key the caller's way (`--check-rise`, `check_rise`).
pub(super) fn given_settings(
    given: v1::LoadBalancerSettings,
    counts: [Option<u32>; 3],
    name: impl Fn(&str) -> String,
) -> Result<v1::LoadBalancerSettings, String> {
    for (key, value) in ["check_rise", "check_fall", "retries"]
        .into_iter()
        .zip(counts)
    {
        if value == Some(0) {
            let range = if key == "retries" {
                "1 to 10"
            } else {
                "1 to 100"
            };
            return Err(format!("invalid {} 0: must be from {range}", name(key)));
        }
    }
    muster_proto::haproxy::settings(&given).map_err(|error| error.to_string())?;
    Ok(given)
}

/// The settings `asked` changes on `has`, as `check-inter 2000ms → 5000ms`.
pub(super) fn setting_changes(
    asked: &v1::LoadBalancerSettings,
    has: &v1::LoadBalancerSettings,
) -> Vec<String> {
    let mut changes = Vec::new();
    let mut compare = |key: &str, asked: String, has: String, given: bool| {
        if given && asked != has {
            changes.push(format!("{key} {has} → {asked}"));
        }
    };
    compare(
        "haproxy-bin",
        asked.haproxy_bin.clone(),
        has.haproxy_bin.clone(),
        !asked.haproxy_bin.is_empty(),
    );
    compare(
        "frontend-address",
        asked.frontend_address.clone(),
        has.frontend_address.clone(),
        !asked.frontend_address.is_empty(),
    );
    compare(
        "check-inter",
        format!("{}ms", asked.check_inter_ms),
        format!("{}ms", has.check_inter_ms),
        asked.check_inter_ms != 0,
    );
    compare(
        "check-rise",
        asked.check_rise.to_string(),
        has.check_rise.to_string(),
        asked.check_rise != 0,
    );
    compare(
        "check-fall",
        asked.check_fall.to_string(),
        has.check_fall.to_string(),
        asked.check_fall != 0,
    );
    compare(
        "connect-timeout",
        format!("{}ms", asked.connect_timeout_ms),
        format!("{}ms", has.connect_timeout_ms),
        asked.connect_timeout_ms != 0,
    );
    compare(
        "server-timeout",
        format!("{}ms", asked.server_timeout_ms),
        format!("{}ms", has.server_timeout_ms),
        asked.server_timeout_ms != 0,
    );
    compare(
        "retries",
        asked.retries.to_string(),
        has.retries.to_string(),
        asked.retries != 0,
    );
    changes
}

#[derive(Debug, Args)]
pub(super) struct AssignArgs {
    /// The cluster.
    #[arg(long)]
    pub(super) cluster: String,
    /// The host's name, as its agent enrolls it.
    #[arg(long)]
    pub(super) host: String,
    /// The component's name [default: serverN for servers, the role's name otherwise].
    #[arg(long)]
    pub(super) name: Option<String>,
    /// Its port [default: the first free one from 17010 for servers, 31530 for the scheduler,
    /// 8183 for web-admin, 11223 for a load balancer].
    #[arg(long)]
    pub(super) port: Option<u16>,
}

#[derive(Debug, Args)]
pub(super) struct RemoveArgs {
    /// The cluster.
    #[arg(long)]
    pub(super) cluster: String,
    /// The host the component runs on.
    #[arg(long)]
    pub(super) host: String,
    /// The component's name; needed only when the host has several of that role.
    #[arg(long)]
    pub(super) name: Option<String>,
}

/// Checks the names that pick a component (cluster, host and, if given, the component's own)
/// before anything is sent.
fn validate_component(cluster: &str, host: &str, name: Option<&str>) -> Result<(), CliError> {
    validate::name("cluster name", cluster)?;
    validate::name("host name", host)?;
    if let Some(name) = name {
        validate::name("component name", name)?;
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub(super) enum ComponentCommand {
    /// List components, with the state, health and restarts their hosts last reported and, for
    /// each one not healthy, why in one line.
    List {
        /// Only this cluster's components.
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Show one component: every field, and its last error whole.
    Show {
        /// The role: server, scheduler, web-admin or load-balancer.
        #[arg(value_parser = parse_role)]
        role: Role,
        /// The component's name (`muster component list` shows them).
        name: String,
        /// The cluster.
        #[arg(long)]
        cluster: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct ComponentView {
    pub(super) cluster: String,
    pub(super) role: String,
    pub(super) name: String,
    pub(super) host: String,
    pub(super) port: u32,
    /// What its host reported, or `pending`, `down`, `drained` or `unreachable` (the
    /// coordinator's words for what the host cannot say), as the API said it; shown as it is.
    pub(super) state: String,
    /// The same, read: what decisions go by (`None`: a word this CLI does not know).
    #[serde(skip)]
    pub(super) condition: Option<Condition>,
    pub(super) healthy: bool,
    /// Why it is not healthy (or the error it reports while healthy), in one line.
    pub(super) reason: String,
    pub(super) restarts: u32,
    /// The last error its host reported, whole.
    pub(super) last_error: String,
    /// A load balancer's settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) load_balancer: Option<LoadBalancerView>,
    /// A load balancer's backend servers as its HAProxy last reported them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) backends: Vec<BackendStateView>,
    /// A server's: the services revision its agent found deployed on it (empty: none yet).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) services_revision: String,
    /// The server that imports the cluster's configuration: the revision it imported.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) config_revision: String,
    /// A server's: the Python dependencies revision its running process was started with.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) python_revision: String,
    /// A server's: the user-config revision its agent found in place on it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(super) user_conf_revision: String,
    /// The cluster's ODB generation it was created under.
    pub(super) odb_epoch: u64,
    /// The restart epoch its running process was started under (a load balancer's: HAProxy
    /// reloaded under; its role's once it has restarted for the last rolling restart of it).
    pub(super) restart_epoch: u64,
    /// Its agent restarts it in rolling restarts of its role (an agent before that: false, for
    /// a dashboard, load balancer or scheduler).
    #[serde(skip)]
    pub(super) rolls: bool,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct LoadBalancerView {
    pub(super) haproxy_bin: String,
    pub(super) frontend_address: String,
    pub(super) check_inter_ms: u32,
    pub(super) check_rise: u32,
    pub(super) check_fall: u32,
    pub(super) connect_timeout_ms: u32,
    pub(super) server_timeout_ms: u32,
    pub(super) retries: u32,
}

impl From<&LoadBalancerView> for v1::LoadBalancerSettings {
    fn from(view: &LoadBalancerView) -> Self {
        v1::LoadBalancerSettings {
            haproxy_bin: view.haproxy_bin.clone(),
            frontend_address: view.frontend_address.clone(),
            check_inter_ms: view.check_inter_ms,
            check_rise: view.check_rise,
            check_fall: view.check_fall,
            connect_timeout_ms: view.connect_timeout_ms,
            server_timeout_ms: view.server_timeout_ms,
            retries: view.retries,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct BackendStateView {
    pub(super) server: String,
    pub(super) address: String,
    /// HAProxy's own word: UP, DOWN, DRAIN, MAINT, ...
    pub(super) state: String,
    /// HAProxy sends it new requests (UP, or "no check") and, when checked, its last check
    /// passed: a server HAProxy has just started with counts as UP before its first check.
    pub(super) in_rotation: bool,
    pub(super) check: String,
    pub(super) sessions: u32,
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
            condition: Condition::from_word(&component.state),
            state: component.state,
            healthy: component.healthy,
            reason: component.reason,
            restarts: component.restarts,
            last_error: component.last_error,
            services_revision: component.services_revision,
            config_revision: component.config_revision,
            python_revision: component.python_revision,
            user_conf_revision: component.user_conf_revision,
            odb_epoch: component.odb_epoch,
            restart_epoch: component.restart_epoch,
            rolls: component.rolls,
            load_balancer: component.load_balancer.map(|settings| LoadBalancerView {
                haproxy_bin: settings.haproxy_bin,
                frontend_address: settings.frontend_address,
                check_inter_ms: settings.check_inter_ms,
                check_rise: settings.check_rise,
                check_fall: settings.check_fall,
                connect_timeout_ms: settings.connect_timeout_ms,
                server_timeout_ms: settings.server_timeout_ms,
                retries: settings.retries,
            }),
            backends: component
                .backends
                .into_iter()
                .map(|backend| BackendStateView {
                    in_rotation: backend.status().in_rotation()
                        && (backend.status() == v1::BackendStatus::Unchecked
                            || v1::BackendStatus::check_passed(&backend.check)),
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
pub(super) fn write_balancer_backends(
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
                // A server stopped because its host is drained is out of rotation on purpose.
                let drained = components.iter().any(|server| {
                    server.cluster == balancer.cluster
                        && server.role == Role::Server.cli_name()
                        && server.name == backend.server
                        && server.condition == Some(Condition::Drained)
                });
                vec![
                    backend.server.clone(),
                    backend.address.clone(),
                    if drained {
                        format!("{} (host drained)", backend.state)
                    } else {
                        backend.state.clone()
                    },
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

pub(super) fn write_components(
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
                component.state.clone(),
                if component.healthy { "yes" } else { "no" }.to_owned(),
                component.restarts.to_string(),
                component.reason.clone(),
            ]
        })
        .collect();
    write_table(
        out,
        &[
            "CLUSTER", "ROLE", "NAME", "HOST", "PORT", "STATE", "HEALTHY", "RESTARTS", "REASON",
        ],
        &rows,
    )
}

/// `muster component show`: every field of one component, its last error whole.
fn write_component(
    out: &mut impl std::io::Write,
    component: &ComponentView,
) -> std::io::Result<()> {
    let mut fields = vec![
        ("cluster", component.cluster.clone()),
        ("role", component.role.clone()),
        ("name", component.name.clone()),
        ("host", component.host.clone()),
        ("port", component.port.to_string()),
        ("state", component.state.clone()),
        (
            "healthy",
            if component.healthy { "yes" } else { "no" }.to_owned(),
        ),
        ("restarts", component.restarts.to_string()),
        ("reason", component.reason.clone()),
    ];
    if component.role == Role::Server.cli_name() {
        fields.push((
            "services",
            if component.services_revision.is_empty() {
                "none found deployed".to_owned()
            } else {
                format!(
                    "revision {}",
                    muster_proto::services::short(&component.services_revision)
                )
            },
        ));
    }
    if !component.python_revision.is_empty() {
        fields.push((
            "python",
            format!(
                "revision {}",
                muster_proto::services::short(&component.python_revision)
            ),
        ));
    }
    if !component.user_conf_revision.is_empty() {
        fields.push((
            "user config",
            format!(
                "revision {}",
                muster_proto::services::short(&component.user_conf_revision)
            ),
        ));
    }
    if !component.config_revision.is_empty() {
        fields.push((
            "configuration",
            format!(
                "revision {} imported through it",
                muster_proto::services::short(&component.config_revision)
            ),
        ));
    }
    if let Some(settings) = &component.load_balancer {
        fields.extend([
            ("haproxy", settings.haproxy_bin.clone()),
            ("frontend address", settings.frontend_address.clone()),
            (
                "checks",
                format!(
                    "every {} ms, rise {}, fall {}",
                    settings.check_inter_ms, settings.check_rise, settings.check_fall
                ),
            ),
            (
                "timeouts",
                format!(
                    "connect {} ms (then another server, {} retries), server {} ms",
                    settings.connect_timeout_ms, settings.retries, settings.server_timeout_ms
                ),
            ),
        ]);
    }
    write_fields(out, &fields)?;
    writeln!(out)?;
    if component.last_error.is_empty() {
        writeln!(out, "last error: none")?;
    } else {
        writeln!(out, "last error:")?;
        for line in component.last_error.lines() {
            writeln!(out, "  {line}")?;
        }
    }
    write_balancer_backends(out, std::slice::from_ref(component))
}

/// The order people read components in: by cluster, then role (servers first), then name with
/// its number read as a number (`server2` before `server10`).
fn reading_order(component: &ComponentView) -> (String, i32, String, u64, String) {
    let role = component
        .role
        .parse::<Role>()
        .map(|role| role as i32)
        .unwrap_or(i32::MAX);
    let prefix = component
        .name
        .trim_end_matches(|c: char| c.is_ascii_digit());
    let number = component.name[prefix.len()..].parse().unwrap_or(0);
    (
        component.cluster.clone(),
        role,
        prefix.to_owned(),
        number,
        component.name.clone(),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum BackendFormat {
    Table,
    Json,
    /// HAProxy `server` lines, as Zato's `zato.config` has them.
    Haproxy,
}

pub(super) async fn assign(
    connection_args: &ConnectionArgs,
    json: bool,
    role: Role,
    args: AssignArgs,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    assign_with(connection_args, json, role, args, None, out).await
}

pub(super) async fn assign_with(
    connection_args: &ConnectionArgs,
    json: bool,
    role: Role,
    args: AssignArgs,
    load_balancer: Option<v1::LoadBalancerSettings>,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    validate_component(&args.cluster, &args.host, args.name.as_deref())?;
    let mut connection = connect(connection_args).await?;
    let request = v1::CreateComponentRequest {
        cluster: args.cluster,
        role: role as i32,
        host: args.host,
        name: args.name.unwrap_or_default(),
        port: u32::from(args.port.unwrap_or(0)),
        load_balancer,
    };
    let wanted = request.clone();
    let (component, created) = match connection.client.create_component(request).await {
        Ok(response) => (
            ComponentView::from(response.into_inner().component.unwrap_or_default()),
            true,
        ),
        Err(status) if status.code() == Code::AlreadyExists => {
            // The same request again is done already; a different one under that name is not.
            let existing = list_components(&mut connection, Some(&wanted.cluster))
                .await?
                .into_iter()
                .find(|component| same_component(&wanted, component))
                .ok_or_else(|| CliError::Exists(status.message().to_owned()))?;
            (existing, false)
        }
        Err(status) => return Err(connection.status_error(&status)),
    };
    if json {
        write_json(out, &component)?;
    } else if created {
        writeln!(
            out,
            "assigned {} {} of cluster {} to host {} on port {}",
            component.role, component.name, component.cluster, component.host, component.port
        )?;
    } else {
        writeln!(
            out,
            "{} {} of cluster {} is already on host {} on port {}; unchanged",
            component.role, component.name, component.cluster, component.host, component.port
        )?;
    }
    warn_if_not_enrolled(&mut connection, &component.host).await
}

/// Whether `existing` is what `wanted` asks for: the role and host, and the name, port and load
/// balancer settings where the request gives them.
fn same_component(wanted: &v1::CreateComponentRequest, existing: &ComponentView) -> bool {
    let role = Role::try_from(wanted.role).unwrap_or_default();
    let settings_match = match (&wanted.load_balancer, &existing.load_balancer) {
        (None, _) => true,
        (Some(asked), Some(has)) => setting_changes(asked, &has.into()).is_empty(),
        (Some(_), None) => false,
    };
    existing.role == role.cli_name()
        && existing.host == wanted.host
        && (wanted.name.is_empty() || existing.name == wanted.name)
        && (wanted.port == 0 || existing.port == wanted.port)
        && settings_match
}

/// Says on stderr when `host` has not enrolled: the component waits for an agent of that name,
/// which a typo would make forever. Names the enrolled hosts that come close.
async fn warn_if_not_enrolled(connection: &mut Connection, host: &str) -> Result<(), CliError> {
    let hosts: Vec<String> = list_hosts(connection)
        .await?
        .into_iter()
        .map(|host| host.name)
        .collect();
    if let Some(warning) = not_enrolled_warning(host, &hosts) {
        eprintln!("warning: {warning}");
    }
    Ok(())
}

/// The warning for components assigned to `host` when no host of that name has enrolled;
/// `None` when it has.
pub(super) fn not_enrolled_warning(host: &str, enrolled: &[String]) -> Option<String> {
    if enrolled.iter().any(|name| name == host) {
        return None;
    }
    let close: Vec<&str> = enrolled
        .iter()
        .filter(|name| strsim::levenshtein(name, host) <= 2)
        .map(String::as_str)
        .collect();
    let hint = if close.is_empty() {
        "it runs once an agent enrolls with that name".to_owned()
    } else {
        format!("did you mean {}?", close.join(" or "))
    };
    Some(format!("host {host} has not enrolled: {hint}"))
}

/// The components of one cluster, or of all.
pub(super) async fn list_components(
    connection: &mut Connection,
    cluster: Option<&str>,
) -> Result<Vec<ComponentView>, CliError> {
    let mut components: Vec<ComponentView> = connection
        .client
        .list_components(v1::ListComponentsRequest {
            cluster: cluster.unwrap_or_default().to_owned(),
        })
        .await
        .answer(connection)?
        .components
        .into_iter()
        .map(ComponentView::from)
        .collect();
    components.sort_by_cached_key(reading_order);
    Ok(components)
}

/// `muster create load-balancer`.
pub(super) async fn create_load_balancer(
    args: LoadBalancerArgs,
    connection_args: &ConnectionArgs,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    let settings = args.settings.settings()?;
    assign_with(
        connection_args,
        json,
        Role::LoadBalancer,
        args.assign,
        Some(settings),
        out,
    )
    .await?;
    Ok(())
}

/// `muster configure load-balancer`.
pub(super) async fn configure_load_balancer(
    args: ConfigureLoadBalancerArgs,
    connection_args: &ConnectionArgs,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    validate::name("cluster name", &args.target.cluster)?;
    validate::name("host name", &args.target.host)?;
    if let Some(name) = &args.target.name {
        validate::name("component name", name)?;
    }
    let settings = args.settings.settings()?;
    if settings == v1::LoadBalancerSettings::default() {
        return Err(CliError::Usage(
            "nothing to change: give at least one of --haproxy-bin, --frontend-address, \
             --check-inter, --check-rise, --check-fall, --connect-timeout, --server-timeout, \
             --retries"
                .to_owned(),
        ));
    }
    let mut connection = connect(connection_args).await?;
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
        .answer(&connection)?;
    let component = ComponentView::from(response.component.unwrap_or_default());
    if json {
        write_json(out, &component)?;
    } else if let Some(settings) = &component.load_balancer {
        writeln!(
            out,
            "load-balancer {} on host {} now runs {} with its frontend on {}, checking \
             every {}ms (rise {}, fall {}), connect timeout {}ms, {} retries, server timeout {}ms",
            component.name,
            component.host,
            settings.haproxy_bin,
            settings.frontend_address,
            settings.check_inter_ms,
            settings.check_rise,
            settings.check_fall,
            settings.connect_timeout_ms,
            settings.retries,
            settings.server_timeout_ms
        )?;
    }
    Ok(())
}

/// What `muster configure server` did, for `--output json`.
#[derive(Debug, Serialize)]
struct ServersConfiguredView {
    cluster: String,
    settings: BTreeMap<String, String>,
    changed: bool,
    restart_epoch: u64,
    servers: Vec<String>,
    /// How many may be out of rotation at once.
    max_unavailable: u32,
}

pub(super) async fn configure_servers(
    args: ConfigureServerArgs,
    connection_args: &ConnectionArgs,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    let set = settings_to_set(Role::Server, &args)?;
    let mut connection = connect(connection_args).await?;
    let response = connection
        .client
        .configure_servers(v1::ConfigureServersRequest {
            cluster: args.cluster.clone(),
            set: set.into_iter().collect(),
            unset: args.unset,
        })
        .await
        .answer(&connection)?;
    write_servers_configured(args.cluster, response, json, out)
}

/// The settings `--set` gives, each checked as `role`'s; refused when there is nothing to
/// change.
fn settings_to_set(
    role: Role,
    args: &ConfigureServerArgs,
) -> Result<BTreeMap<String, String>, CliError> {
    validate::name("cluster name", &args.cluster)?;
    if args.set.is_empty() && args.unset.is_empty() {
        return Err(CliError::Usage(
            "nothing to change: give --set NAME=VALUE or --unset NAME".to_owned(),
        ));
    }
    let mut set = BTreeMap::new();
    for pair in &args.set {
        let Some((name, value)) = pair.split_once('=') else {
            return Err(CliError::Usage(format!(
                "--set {pair:?}: expected NAME=VALUE, such as {}",
                match role {
                    Role::Server => "main.gunicorn_workers=2",
                    _ => "logging.zato=DEBUG",
                }
            )));
        };
        let value = muster_proto::server_settings::check(role, name, value)
            .map_err(|error| CliError::Usage(error.to_string()))?;
        set.insert(name.to_owned(), value);
    }
    Ok(set)
}

/// Settings as a table of names and values; `none` said instead when there are none.
fn write_settings(
    out: &mut impl std::io::Write,
    settings: &BTreeMap<String, String>,
    none: &str,
) -> Result<(), CliError> {
    if settings.is_empty() {
        writeln!(out, "{none}")?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = settings
        .iter()
        .map(|(name, value)| vec![name.clone(), value.clone()])
        .collect();
    write_table(out, &["SETTING", "VALUE"], &rows)?;
    Ok(())
}

/// What `muster configure scheduler|web-admin` did, for `--output json`.
#[derive(Debug, Serialize)]
struct RoleConfiguredView {
    cluster: String,
    role: String,
    settings: BTreeMap<String, String>,
    changed: bool,
    /// The role's restart epoch its components restart under.
    restart_epoch: u64,
    /// The components that restart, by name.
    components: Vec<String>,
}

/// `muster configure scheduler|web-admin`: sets and unsets the role's settings; says what the
/// change restarts.
pub(super) async fn configure_role(
    role: Role,
    args: ConfigureServerArgs,
    connection_args: &ConnectionArgs,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    let set = settings_to_set(role, &args)?;
    let mut connection = connect(connection_args).await?;
    let response = connection
        .client
        .configure_role(v1::ConfigureRoleRequest {
            cluster: args.cluster.clone(),
            role: role as i32,
            set: set.into_iter().collect(),
            unset: args.unset,
        })
        .await
        .answer(&connection)?;
    let view = RoleConfiguredView {
        cluster: args.cluster,
        role: role.cli_name().to_owned(),
        settings: response.settings.into_iter().collect(),
        changed: response.changed,
        restart_epoch: response.restart_epoch,
        components: response.components,
    };
    if json {
        return write_json(out, &view);
    }
    write_settings(
        out,
        &view.settings,
        &format!(
            "cluster {}'s {} runs with Zato's defaults",
            view.cluster, view.role
        ),
    )?;
    if !view.changed {
        writeln!(out, "unchanged: nothing restarts")?;
    } else if view.components.is_empty() {
        writeln!(
            out,
            "the cluster has no {} yet: it starts with them",
            view.role
        )?;
    } else {
        writeln!(
            out,
            "rolling restart of the {} (restart epoch {}): {}, at the role's turn in Zato's \
             order. Follow it with `muster rollout status --cluster {}`",
            view.role,
            view.restart_epoch,
            view.components.join(", "),
            view.cluster
        )?;
    }
    Ok(())
}

/// Says what a change of server settings did: the settings as a table (or JSON), and the
/// rolling restart it started.
pub(super) fn write_servers_configured(
    cluster: String,
    response: v1::ConfigureServersResponse,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    let view = ServersConfiguredView {
        cluster,
        settings: response.settings.into_iter().collect(),
        changed: response.changed,
        restart_epoch: response.restart_epoch,
        servers: response.servers,
        max_unavailable: response.max_unavailable.max(1),
    };
    if json {
        return write_json(out, &view);
    }
    write_settings(
        out,
        &view.settings,
        &format!(
            "cluster {}'s servers run with Zato's defaults",
            view.cluster
        ),
    )?;
    if !view.changed {
        writeln!(out, "unchanged: no server restarts")?;
    } else if view.servers.is_empty() {
        writeln!(out, "the cluster has no server yet: each starts with them")?;
    } else {
        writeln!(
            out,
            "rolling restart (restart epoch {}): {}; {}, each out of rotation until its load \
             balancers have it back UP. Follow it with `muster rollout status --cluster {}`",
            view.restart_epoch,
            view.servers.join(", "),
            at_a_time(view.max_unavailable),
            view.cluster
        )?;
    }
    Ok(())
}

/// `muster remove ROLE`.
pub(super) async fn remove_component(
    role: Role,
    target: RemoveArgs,
    connection_args: &ConnectionArgs,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    validate_component(&target.cluster, &target.host, target.name.as_deref())?;
    let mut connection = connect(connection_args).await?;
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
        .answer(&connection)?;
    let component = ComponentView::from(response.component.unwrap_or_default());
    if json {
        write_json(out, &component)?;
    } else {
        writeln!(
            out,
            "unassigned {} {} of cluster {} from host {}",
            component.role, component.name, component.cluster, component.host
        )?;
    }
    Ok(())
}

/// `muster component list`.
pub(super) async fn component_list(
    cluster: Option<String>,
    connection_args: &ConnectionArgs,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    if let Some(cluster) = &cluster {
        validate::name("cluster name", cluster)?;
    }
    let mut connection = connect(connection_args).await?;
    let components = list_components(&mut connection, cluster.as_deref()).await?;
    if json {
        write_json(out, &components)?;
    } else {
        write_components(out, &components)?;
        write_balancer_backends(out, &components)?;
    }
    Ok(())
}

/// `muster component show ROLE NAME --cluster C`.
pub(super) async fn component_show(
    role: Role,
    name: String,
    cluster: String,
    connection_args: &ConnectionArgs,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    validate::name("cluster name", &cluster)?;
    validate::name("component name", &name)?;
    let mut connection = connect(connection_args).await?;
    let component = list_components(&mut connection, Some(&cluster))
        .await?
        .into_iter()
        .find(|component| component.role == role.cli_name() && component.name == name)
        .ok_or_else(|| {
            CliError::NotFound(format!("{role} '{name}' not found in cluster '{cluster}'"))
        })?;
    if json {
        write_json(out, &component)?;
    } else {
        write_component(out, &component)?;
    }
    Ok(())
}

/// `muster backends`.
pub(super) async fn backends(
    cluster: String,
    format: Option<BackendFormat>,
    connection_args: &ConnectionArgs,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    validate::name("cluster name", &cluster)?;
    let mut connection = connect(connection_args).await?;
    let backends = connection
        .client
        .list_backends(v1::ListBackendsRequest { cluster })
        .await
        .answer(&connection)?
        .backends;
    let format = format.unwrap_or(if json {
        BackendFormat::Json
    } else {
        BackendFormat::Table
    });
    match format {
        BackendFormat::Haproxy => {
            let settings = muster_proto::haproxy::settings(&v1::LoadBalancerSettings::default())?;
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::super::Cli;
    use muster_proto::v1::Role;

    /// The help lists what the coordinator accepts: every listed key with its default.
    #[test]
    fn configure_server_help_lists_every_setting_muster_sets() {
        let mut cli = Cli::command();
        let help = cli
            .find_subcommand_mut("configure")
            .and_then(|configure| configure.find_subcommand_mut("server"))
            .expect("muster configure server")
            .render_long_help()
            .to_string();
        for setting in muster_proto::server_settings::SERVER_SETTINGS {
            let line = help
                .lines()
                .find(|line| line.trim_start().starts_with(setting.name))
                .unwrap_or_else(|| panic!("{} is not in the help:\n{help}", setting.name));
            assert!(
                line.ends_with(&format!("(default {})", setting.default)),
                "{line}: its default is {}",
                setting.default
            );
        }
    }

    /// The scheduler's and dashboards' help lists their loggers and the dashboard's key, with
    /// the defaults the coordinator knows.
    #[test]
    fn configure_scheduler_and_web_admin_help_list_their_settings() {
        let mut cli = Cli::command();
        let configure = cli.find_subcommand_mut("configure").unwrap();
        for role in [Role::Scheduler, Role::WebAdmin] {
            let help = configure
                .find_subcommand_mut(role.cli_name())
                .unwrap_or_else(|| panic!("muster configure {role}"))
                .render_long_help()
                .to_string();
            for logger in muster_proto::server_settings::loggers(role) {
                let name = logger.name.trim_start_matches("logging.");
                assert!(
                    help.contains(name),
                    "{role}: {name} is not in the help:\n{help}"
                );
            }
            if role == Role::WebAdmin {
                let time_zone = muster_proto::server_settings::TIME_ZONE;
                assert!(
                    help.lines()
                        .any(|line| line.trim_start().starts_with(time_zone.name))
                        && help.contains(&format!("(default {})", time_zone.default)),
                    "TIME_ZONE and its default are not in the help:\n{help}"
                );
            }
        }
    }
}
