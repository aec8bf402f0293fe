//! `muster create cluster` and `muster cluster list|show|delete|dashboard-login`.

use super::*;

#[derive(Debug, Args)]
pub(super) struct CreateClusterArgs {
    /// The cluster's name: letters, digits, '.', '_' and '-'.
    pub(super) name: String,
    /// A note for people.
    #[arg(long, default_value = "")]
    pub(super) description: String,
    /// The ODB's type: sqlite, postgresql or mysql.
    #[arg(long, default_value = "sqlite", value_parser = parse_odb_type)]
    pub(super) odb_type: OdbType,
    /// The ODB's host (postgresql, mysql).
    #[arg(long, default_value = "")]
    pub(super) odb_host: String,
    /// The ODB's port [default: 5432 for postgresql, 3306 for mysql].
    #[arg(long)]
    pub(super) odb_port: Option<u16>,
    /// The ODB's user (postgresql, mysql).
    #[arg(long, default_value = "")]
    pub(super) odb_user: String,
    /// The ODB's database name; with sqlite, the database file's path [default with sqlite: a
    /// file the agent keeps in its components directory].
    #[arg(long, default_value = "")]
    pub(super) odb_db_name: String,
    /// A file holding the ODB password, or - for standard input. A trailing newline is removed.
    #[arg(long)]
    pub(super) odb_password_file: Option<PathBuf>,
    /// The PostgreSQL schema (postgresql only).
    #[arg(long, default_value = "")]
    pub(super) postgresql_schema: String,
}

#[derive(Debug, Subcommand)]
pub(super) enum ClusterCommand {
    /// List every cluster.
    List,
    /// Show one cluster.
    Show {
        /// The cluster's name.
        name: String,
    },
    /// Show the user and password that log in to the cluster's Zato dashboard, and where it is.
    DashboardLogin {
        /// The cluster's name.
        name: String,
    },
    /// Delete a cluster and its join tokens.
    Delete {
        /// The cluster's name.
        name: String,
        /// Do not ask for confirmation (required when standard input is not a terminal).
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Serialize)]
pub(super) struct ClusterView {
    pub(super) name: String,
    pub(super) description: String,
    pub(super) odb_type: String,
    pub(super) odb_host: String,
    pub(super) odb_port: u32,
    pub(super) odb_user: String,
    pub(super) odb_db_name: String,
    pub(super) postgresql_schema: String,
    pub(super) has_odb_password: bool,
    pub(super) created_at: String,
    /// The server the scheduler is pointed at; empty before any.
    pub(super) scheduler_target: String,
    /// The revision of its services; empty when it has none.
    pub(super) services_revision: String,
    /// Their modules, by name.
    pub(super) services: Vec<String>,
    /// The revision of its configuration; empty when it has none.
    pub(super) config_revision: String,
    /// Its enmasse files, and the names of its env values (never the values).
    pub(super) config_files: Vec<String>,
    pub(super) config_env_names: Vec<String>,
    /// The revision of its Python dependencies; empty when it has none.
    pub(super) python_revision: String,
    /// Their requirements (the text), wheels (file names) and packages (the wheels Muster built
    /// of them).
    pub(super) python_requirements: String,
    pub(super) python_wheels: Vec<String>,
    pub(super) python_packages: Vec<String>,
    /// The revision of its user-config files, and their names (never their content).
    pub(super) user_conf_revision: String,
    pub(super) user_conf_files: Vec<String>,
    /// A server reports the ODB answering without the cluster's row (replaced by an empty one).
    pub(super) odb_empty: bool,
    /// The ODB's generation: 0 for the one it was created on, one more for each rebuild.
    pub(super) odb_epoch: u64,
    /// Its servers' settings (`muster configure server`).
    pub(super) server_settings: std::collections::BTreeMap<String, String>,
    /// Its scheduler's settings (`muster configure scheduler`).
    pub(super) scheduler_settings: std::collections::BTreeMap<String, String>,
    /// Its dashboards' settings (`muster configure web-admin`).
    pub(super) web_admin_settings: std::collections::BTreeMap<String, String>,
    /// What its rollouts do when a server fails them (`muster configure rollout`).
    #[serde(flatten)]
    pub(super) rollout_strategy: muster_proto::rollout::Strategy,
    /// Its restart turn is paused; why, when Muster paused it.
    pub(super) rollout_paused: bool,
    pub(super) rollout_pause_reason: String,
    /// Why auto_revert undid its last rollout of server settings.
    pub(super) rollout_revert_reason: String,
    /// Its servers' restart epoch (`muster rollout restart`, server settings), and those of its
    /// dashboards, load balancers and scheduler by role (`muster rollout restart --role`).
    pub(super) restart_epoch: u64,
    pub(super) restart_epochs: std::collections::BTreeMap<String, u64>,
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
            services_revision: cluster.services_revision,
            services: cluster.services.into_iter().map(|file| file.name).collect(),
            config_revision: cluster.config_revision,
            config_files: cluster
                .config_files
                .into_iter()
                .map(|file| file.name)
                .collect(),
            config_env_names: cluster.config_env_names,
            python_revision: cluster.python_revision,
            python_requirements: cluster.python_requirements,
            python_wheels: cluster
                .python_wheels
                .iter()
                .filter(|wheel| !wheel.package)
                .map(|wheel| wheel.name.clone())
                .collect(),
            python_packages: cluster
                .python_wheels
                .into_iter()
                .filter(|wheel| wheel.package)
                .map(|wheel| wheel.name)
                .collect(),
            user_conf_revision: cluster.user_conf_revision,
            user_conf_files: cluster.user_conf_names,
            odb_empty: cluster.odb_empty,
            odb_epoch: cluster.odb_epoch,
            server_settings: cluster.server_settings.into_iter().collect(),
            scheduler_settings: cluster.scheduler_settings.into_iter().collect(),
            web_admin_settings: cluster.web_admin_settings.into_iter().collect(),
            rollout_strategy: cluster.rollout_strategy.unwrap_or_default().into(),
            rollout_paused: cluster.rollout_paused,
            rollout_pause_reason: cluster.rollout_pause_reason,
            rollout_revert_reason: cluster.rollout_revert_reason,
            restart_epoch: cluster.restart_epoch,
            restart_epochs: cluster.restart_epochs.into_iter().collect(),
        }
    }
}

pub(super) fn cluster_rows(clusters: &[ClusterView]) -> Vec<Vec<String>> {
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

pub(super) const CLUSTER_HEADERS: [&str; 5] =
    ["NAME", "ODB", "ODB LOCATION", "CREATED", "DESCRIPTION"];

/// The largest password file read.
const MAX_PASSWORD_FILE: u64 = 64 * 1024;

pub(super) fn read_password_file(path: &Path) -> Result<String, CliError> {
    let mut text = String::new();
    let read = if path == Path::new("-") {
        std::io::stdin()
            .take(MAX_PASSWORD_FILE)
            .read_to_string(&mut text)
            .map(|_| ())
    } else {
        muster_proto::files::read_regular(path, MAX_PASSWORD_FILE)
            .map(|contents| text = contents)
            .map_err(|error| error.source)
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

pub(super) fn confirm_deletion(name: &str, yes: bool) -> Result<(), CliError> {
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

/// `muster create cluster`.
pub(super) async fn create_cluster(
    args: CreateClusterArgs,
    connection_args: &ConnectionArgs,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
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
    let mut connection = connect(connection_args).await?;
    let wanted = request.clone();
    let (cluster, created) = match connection.client.create_cluster(request).await {
        Ok(response) => (response.into_inner().cluster.unwrap_or_default(), true),
        Err(status) if status.code() == Code::AlreadyExists => {
            // The same request again is done already; a different one under that name is not.
            let existing = connection
                .client
                .get_cluster(v1::GetClusterRequest {
                    name: wanted.name.clone(),
                    with_content: false,
                })
                .await
                .answer(&connection)?
                .cluster
                .unwrap_or_default();
            let differences = cluster_differences(&wanted, &existing);
            if !differences.is_empty() {
                return Err(CliError::Exists(format!(
                    "cluster '{}' already exists with other settings: {}",
                    wanted.name,
                    differences.join(", ")
                )));
            }
            (existing, false)
        }
        Err(status) => return Err(connection.status_error(&status)),
    };
    let cluster = ClusterView::from(cluster);
    if json {
        write_json(out, &cluster)?;
    } else if created {
        writeln!(out, "created cluster {}", cluster.name)?;
    } else {
        writeln!(
            out,
            "cluster {} already exists with these settings; unchanged",
            cluster.name
        )?;
    }
    Ok(())
}

/// What `existing` has other than `wanted` asks, as `odb-host db-1 (asked: db-2)`; only what
/// the request sets is compared (the coordinator fills defaults), and never the password, which
/// the coordinator does not give back.
pub(super) fn cluster_differences(
    wanted: &v1::CreateClusterRequest,
    existing: &v1::Cluster,
) -> Vec<String> {
    let asked = wanted.odb.clone().unwrap_or_default();
    let has = existing.odb.clone().unwrap_or_default();
    let kind = |odb: &v1::OdbSettings| {
        OdbType::try_from(odb.odb_type)
            .unwrap_or_default()
            .zato_name()
            .to_owned()
    };
    let pairs = [
        ("odb-type", kind(&has), kind(&asked)),
        ("odb-host", has.host, asked.host),
        ("odb-port", has.port.to_string(), asked.port.to_string()),
        ("odb-user", has.user, asked.user),
        ("odb-db-name", has.db_name, asked.db_name),
        (
            "postgresql-schema",
            has.postgresql_schema,
            asked.postgresql_schema,
        ),
        (
            "description",
            existing.description.clone(),
            wanted.description.clone(),
        ),
    ];
    pairs
        .into_iter()
        .filter(|(_, has, asked)| !asked.is_empty() && asked != "0" && has != asked)
        .map(|(field, has, asked)| format!("{field} {has:?} (asked: {asked:?})"))
        .collect()
}

/// `muster cluster …`.
pub(super) async fn cluster_command(
    command: ClusterCommand,
    connection_args: &ConnectionArgs,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    let mut connection = connect(connection_args).await?;
    match command {
        ClusterCommand::List => {
            let response = connection
                .client
                .list_clusters(v1::ListClustersRequest {})
                .await
                .answer(&connection)?;
            let clusters: Vec<ClusterView> = response
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
                .answer(&connection)?;
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
                .get_cluster(v1::GetClusterRequest {
                    name,
                    with_content: false,
                })
                .await
                .answer(&connection)?;
            let cluster = ClusterView::from(response.cluster.unwrap_or_default());
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
                    (
                        "odb state",
                        match (cluster.odb_empty, cluster.odb_epoch) {
                            (true, _) => "empty: a server finds no row of the cluster in it; \
                                          `muster apply` the cluster's file to rebuild it"
                                .to_owned(),
                            (false, 0) => "holds the cluster".to_owned(),
                            (false, epoch) => {
                                format!(
                                    "holds the cluster (rebuilt {epoch} time(s) on an empty ODB)"
                                )
                            }
                        },
                    ),
                    (
                        "scheduler target",
                        if cluster.scheduler_target.is_empty() {
                            "none yet (no healthy server)".to_owned()
                        } else {
                            cluster.scheduler_target.clone()
                        },
                    ),
                    (
                        "services",
                        if cluster.services_revision.is_empty() {
                            "none".to_owned()
                        } else {
                            format!(
                                "revision {} ({})",
                                muster_proto::services::short(&cluster.services_revision),
                                cluster.services.join(", ")
                            )
                        },
                    ),
                    (
                        "configuration",
                        if cluster.config_revision.is_empty() {
                            "none".to_owned()
                        } else {
                            format!(
                                "revision {} ({}; env values: {})",
                                muster_proto::services::short(&cluster.config_revision),
                                cluster.config_files.join(", "),
                                cluster.config_env_names.join(", ")
                            )
                        },
                    ),
                    (
                        "python",
                        if cluster.python_revision.is_empty() {
                            "none".to_owned()
                        } else {
                            let names = muster_proto::python::checked_requirements(
                                &cluster.python_requirements,
                            )
                            .unwrap_or_default();
                            let packages: Vec<&str> = cluster
                                .python_packages
                                .iter()
                                .map(|wheel| wheel.split('-').next().unwrap_or_default())
                                .collect();
                            format!(
                                "revision {} (requirements: {}; {} wheel(s); packages: {})",
                                muster_proto::services::short(&cluster.python_revision),
                                names.join(", "),
                                cluster.python_wheels.len(),
                                if packages.is_empty() {
                                    "none".to_owned()
                                } else {
                                    packages.join(", ")
                                }
                            )
                        },
                    ),
                    (
                        "user config",
                        if cluster.user_conf_revision.is_empty() {
                            "none".to_owned()
                        } else {
                            format!(
                                "revision {} ({})",
                                muster_proto::services::short(&cluster.user_conf_revision),
                                cluster.user_conf_files.join(", ")
                            )
                        },
                    ),
                    (
                        "server settings",
                        muster_proto::server_settings::shown(&cluster.server_settings),
                    ),
                    (
                        "scheduler settings",
                        muster_proto::server_settings::shown(&cluster.scheduler_settings),
                    ),
                    (
                        "web-admin settings",
                        muster_proto::server_settings::shown(&cluster.web_admin_settings),
                    ),
                    (
                        "rollouts",
                        cluster.rollout_strategy.shown()
                            + &if !cluster.rollout_pause_reason.is_empty() {
                                format!("; paused: {}", cluster.rollout_pause_reason)
                            } else if cluster.rollout_paused {
                                "; paused by an operator".to_owned()
                            } else if !cluster.rollout_revert_reason.is_empty() {
                                format!("; last one reverted: {}", cluster.rollout_revert_reason)
                            } else {
                                String::new()
                            },
                    ),
                    ("created", cluster.created_at.clone()),
                ];
                write_fields(out, &rows)?;
            }
        }
        ClusterCommand::Delete { name, yes } => {
            validate::name("cluster name", &name)?;
            connection
                .client
                .get_cluster(v1::GetClusterRequest {
                    name: name.clone(),
                    with_content: false,
                })
                .await
                .answer(&connection)?;
            confirm_deletion(&name, yes)?;
            connection
                .client
                .delete_cluster(v1::DeleteClusterRequest { name: name.clone() })
                .await
                .answer(&connection)?;
            if json {
                write_json(out, &serde_json::json!({"deleted": name}))?;
            } else {
                writeln!(out, "deleted cluster {name}")?;
            }
        }
    }
    Ok(())
}
