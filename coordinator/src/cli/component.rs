//! Components: `muster create server|scheduler|web-admin|load-balancer`, `remove`,
//! `configure load-balancer`, `component list` and `backends`.

use super::*;

#[derive(Debug, Subcommand)]
pub(super) enum ConfigureCommand {
    /// Change the settings given; the others keep their values.
    LoadBalancer(ConfigureLoadBalancerArgs),
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
    /// List components, with the state, health and restarts their hosts last reported.
    List {
        /// Only this cluster's components.
        #[arg(long)]
        cluster: Option<String>,
    },
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct ComponentView {
    pub(super) cluster: String,
    pub(super) role: String,
    pub(super) name: String,
    pub(super) host: String,
    pub(super) port: u32,
    /// Empty while the host has not reported it.
    pub(super) state: String,
    pub(super) healthy: bool,
    pub(super) restarts: u32,
    pub(super) last_error: String,
    /// A load balancer's settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) load_balancer: Option<LoadBalancerView>,
    /// A load balancer's backend servers as its HAProxy last reported them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(super) backends: Vec<BackendStateView>,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct LoadBalancerView {
    pub(super) haproxy_bin: String,
    pub(super) frontend_address: String,
    pub(super) check_inter_ms: u32,
    pub(super) check_rise: u32,
    pub(super) check_fall: u32,
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct BackendStateView {
    pub(super) server: String,
    pub(super) address: String,
    /// HAProxy's own word: UP, DOWN, DRAIN, MAINT, ...
    pub(super) state: String,
    /// HAProxy sends it new requests (UP, or "no check").
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
                    in_rotation: backend.status().in_rotation(),
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
    let response = connection
        .client
        .create_component(request)
        .await
        .answer(&connection)?;
    let component = ComponentView::from(response.component.unwrap_or_default());
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

/// The components of one cluster, or of all.
pub(super) async fn list_components(
    connection: &mut Connection,
    cluster: Option<&str>,
) -> Result<Vec<ComponentView>, CliError> {
    Ok(connection
        .client
        .list_components(v1::ListComponentsRequest {
            cluster: cluster.unwrap_or_default().to_owned(),
        })
        .await
        .answer(connection)?
        .components
        .into_iter()
        .map(ComponentView::from)
        .collect())
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
             --check-inter, --check-rise, --check-fall"
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
