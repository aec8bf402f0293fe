//! `muster host list|show|drain|undrain|admit|remove`.

use super::*;

#[derive(Debug, Subcommand)]
pub(super) enum HostCommand {
    /// List enrolled hosts.
    List,
    /// Show one host.
    Show {
        /// The host's name.
        name: String,
    },
    /// Drain a host: its servers leave the backends, the scheduler moves off it, and its
    /// components stop (they stay created).
    Drain {
        /// The host's name.
        name: String,
    },
    /// Undrain a host: its components start again.
    Undrain {
        /// The host's name.
        name: String,
    },
    /// Admit a host to a cluster besides its own (that of the join token it enrolled with), so
    /// that the cluster's components, and the secrets they need, may be assigned to it. Without
    /// it they are refused; a cluster file's selectors match admitted hosts too.
    Admit {
        /// The host's name.
        name: String,
        /// The cluster it is admitted to.
        #[arg(long)]
        cluster: String,
    },
    /// Remove a drained host: its assignments are deleted and its certificate stops working.
    Remove {
        /// The host's name.
        name: String,
        /// Remove it even if it is not drained or has not stopped its components.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Clone, Serialize)]
pub(super) struct HostView {
    pub(super) name: String,
    pub(super) id: String,
    /// The cluster it belongs to (its join token's); empty for none.
    pub(super) cluster: String,
    /// The other clusters an admin admitted it to.
    pub(super) admitted: Vec<String>,
    pub(super) state: String,
    pub(super) advertise_address: String,
    pub(super) labels: std::collections::BTreeMap<String, String>,
    pub(super) enrolled_at: String,
    /// `None` while the host has never reported.
    pub(super) last_seen: Option<String>,
    pub(super) generation: u64,
    pub(super) applied_generation: u64,
    pub(super) drained: bool,
    /// The Zato installations its agent can run servers with (`default` first); empty from an
    /// agent before them.
    pub(super) zato_installs: Vec<String>,
}

impl From<v1::Host> for HostView {
    fn from(host: v1::Host) -> Self {
        HostView {
            name: host.name,
            id: host.id,
            cluster: host.cluster,
            admitted: host.admitted,
            zato_installs: host.zato_installs,
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

/// Every enrolled host.
pub(super) async fn list_hosts(connection: &mut Connection) -> Result<Vec<v1::Host>, CliError> {
    Ok(connection
        .client
        .list_hosts(v1::ListHostsRequest {})
        .await
        .answer(connection)?
        .hosts)
}

pub(super) fn write_hosts(
    out: &mut impl std::io::Write,
    hosts: &[HostView],
) -> std::io::Result<()> {
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
                if host.cluster.is_empty() {
                    "-".to_owned()
                } else {
                    host.cluster.clone()
                },
                state,
                host.advertise_address.clone(),
                format!("{}/{}", host.applied_generation, host.generation),
                host.last_seen.clone().unwrap_or_else(|| "never".to_owned()),
            ]
        })
        .collect();
    write_table(
        out,
        &[
            "HOST",
            "CLUSTER",
            "STATE",
            "ADDRESS",
            "GENERATION",
            "LAST SEEN",
        ],
        &rows,
    )
}

/// `muster host show NAME`: every field, its labels, and what is assigned to it.
fn write_host(
    out: &mut impl std::io::Write,
    host: &HostView,
    components: &[ComponentView],
) -> Result<(), CliError> {
    let labels = host
        .labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join(", ");
    write_fields(
        out,
        &[
            ("name", host.name.clone()),
            ("id", host.id.clone()),
            ("cluster", host.cluster.clone()),
            ("admitted to", host.admitted.join(", ")),
            ("state", host.state.clone()),
            (
                "drained",
                if host.drained { "yes" } else { "no" }.to_owned(),
            ),
            ("address", host.advertise_address.clone()),
            ("labels", labels),
            ("zato installs", host.zato_installs.join(", ")),
            ("enrolled", host.enrolled_at.clone()),
            (
                "last seen",
                host.last_seen.clone().unwrap_or_else(|| "never".to_owned()),
            ),
            (
                "generation",
                format!("{} applied of {}", host.applied_generation, host.generation),
            ),
        ],
    )?;
    writeln!(out)?;
    if components.is_empty() {
        writeln!(out, "no components assigned")?;
    } else {
        write_components(out, components)?;
    }
    Ok(())
}

/// `muster host …`.
pub(super) async fn host_command(
    command: HostCommand,
    connection_args: &ConnectionArgs,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    let mut connection = connect(connection_args).await?;
    let drain = matches!(command, HostCommand::Drain { .. });
    let hosts: Vec<HostView> = match command {
        HostCommand::List => list_hosts(&mut connection)
            .await?
            .into_iter()
            .map(HostView::from)
            .collect(),
        HostCommand::Show { name } => {
            validate::name("host name", &name)?;
            let response = connection
                .client
                .get_host(v1::GetHostRequest { name })
                .await
                .answer(&connection)?;
            let host = HostView::from(response.host.unwrap_or_default());
            if json {
                return write_json(out, &host);
            }
            let components: Vec<ComponentView> = list_components(&mut connection, None)
                .await?
                .into_iter()
                .filter(|component| component.host == host.name)
                .collect();
            return write_host(out, &host, &components);
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
                .answer(&connection)?;
            let host = HostView::from(response.host.unwrap_or_default());
            if json {
                return write_json(out, &host);
            }
            let verb = if drain { "drained" } else { "undrained" };
            writeln!(out, "{verb} host {name} (generation {})", host.generation)?;
            return Ok(());
        }
        HostCommand::Admit { name, cluster } => {
            validate::name("host name", &name)?;
            validate::name("cluster name", &cluster)?;
            let response = connection
                .client
                .admit_host(v1::AdmitHostRequest {
                    name: name.clone(),
                    cluster: cluster.clone(),
                })
                .await
                .answer(&connection)?;
            let host = HostView::from(response.host.unwrap_or_default());
            if json {
                return write_json(out, &host);
            }
            writeln!(
                out,
                "admitted host {name} to cluster {cluster}: its components, and the secrets they \
                 need, may go there"
            )?;
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
                .answer(&connection)?;
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
    Ok(())
}
