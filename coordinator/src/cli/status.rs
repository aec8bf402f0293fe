//! `muster ping` and `muster status`: what runs where, at a glance.

use super::*;

#[derive(Debug, Serialize)]
pub(super) struct ClusterStatus {
    pub(super) name: String,
    /// How many components are healthy, of how many, and the others by state.
    pub(super) summary: Summary,
    /// What an operator should look at: hosts assigned components that never enrolled.
    pub(super) warnings: Vec<String>,
    /// Its services and which servers run them; `None` when it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) services: Option<ServicesSummary>,
    /// Its Python dependencies and which servers run another revision; `None` when it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) python: Option<ServicesSummary>,
    /// Its user-config files and which servers have another revision in place; `None` when it
    /// has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) user_conf: Option<ServicesSummary>,
    /// The hosts with a component of this cluster.
    pub(super) hosts: Vec<HostView>,
    pub(super) components: Vec<ComponentView>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub(super) struct Summary {
    pub(super) components: usize,
    pub(super) healthy: usize,
    /// The components not healthy, counted by state (`failed`, `pending`, `drained`, …).
    pub(super) not_healthy: std::collections::BTreeMap<String, usize>,
}

impl Summary {
    pub(super) fn of(components: &[ComponentView]) -> Summary {
        let mut not_healthy = std::collections::BTreeMap::new();
        for component in components.iter().filter(|component| !component.healthy) {
            *not_healthy.entry(component.state.clone()).or_insert(0) += 1;
        }
        Summary {
            components: components.len(),
            healthy: components.iter().filter(|c| c.healthy).count(),
            not_healthy,
        }
    }
}

impl std::fmt::Display for Summary {
    /// `7/8 healthy, 1 failed`.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}/{} healthy", self.healthy, self.components)?;
        for (state, count) in &self.not_healthy {
            write!(formatter, ", {count} {state}")?;
        }
        Ok(())
    }
}

/// A cluster's services (or Python dependencies) revision and the servers that run another (or
/// none yet).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub(super) struct ServicesSummary {
    /// "services", "Python dependencies" or "user config".
    #[serde(skip)]
    pub(super) what: &'static str,
    pub(super) revision: String,
    pub(super) servers: usize,
    /// The servers that do not run it yet, with the revision they run (empty: none).
    pub(super) drift: std::collections::BTreeMap<String, String>,
}

impl ServicesSummary {
    fn of(revision: &str, components: &[ComponentView]) -> Option<ServicesSummary> {
        Self::of_kind("services", revision, components, |server| {
            &server.services_revision
        })
    }

    fn of_python(revision: &str, components: &[ComponentView]) -> Option<ServicesSummary> {
        Self::of_kind("Python dependencies", revision, components, |server| {
            &server.python_revision
        })
    }

    fn of_user_conf(revision: &str, components: &[ComponentView]) -> Option<ServicesSummary> {
        Self::of_kind("user config", revision, components, |server| {
            &server.user_conf_revision
        })
    }

    fn of_kind(
        what: &'static str,
        revision: &str,
        components: &[ComponentView],
        runs: impl Fn(&ComponentView) -> &String,
    ) -> Option<ServicesSummary> {
        if revision.is_empty() {
            return None;
        }
        let servers: Vec<&ComponentView> = components
            .iter()
            .filter(|component| component.role == Role::Server.cli_name())
            .collect();
        Some(ServicesSummary {
            what,
            revision: revision.to_owned(),
            servers: servers.len(),
            drift: servers
                .iter()
                .filter(|server| runs(server) != revision)
                .map(|server| (server.name.clone(), runs(server).clone()))
                .collect(),
        })
    }
}

impl std::fmt::Display for ServicesSummary {
    /// `services revision 4e3ed65d93a6 on 2/3 servers; server3 runs none yet`.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{} revision {} on {}/{} servers",
            self.what,
            muster_proto::services::short(&self.revision),
            self.servers - self.drift.len(),
            self.servers
        )?;
        for (server, revision) in &self.drift {
            if revision.is_empty() {
                write!(formatter, "; {server} runs none yet")?;
            } else {
                write!(
                    formatter,
                    "; {server} runs {}",
                    muster_proto::services::short(revision)
                )?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Serialize)]
pub(super) struct StatusView {
    pub(super) clusters: Vec<ClusterStatus>,
    /// Enrolled hosts with no component in any cluster.
    pub(super) idle_hosts: Vec<HostView>,
}

pub(super) fn status_view(
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
        let enrolled: Vec<String> = hosts.iter().map(|host| host.name.clone()).collect();
        let mut warnings: Vec<String> = host_names
            .iter()
            .filter_map(|host| not_enrolled_warning(host, &enrolled))
            .collect();
        warnings.extend(odb_warning(cluster, &mine));
        warnings.extend(rollout_warning(cluster));
        result.push(ClusterStatus {
            name: cluster.name.clone(),
            summary: Summary::of(&mine),
            warnings,
            services: ServicesSummary::of(&cluster.services_revision, &mine),
            python: ServicesSummary::of_python(&cluster.python_revision, &mine),
            user_conf: ServicesSummary::of_user_conf(&cluster.user_conf_revision, &mine),
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

/// A rollout a server failed: paused (and how to go on), or undone by auto_revert.
fn rollout_warning(cluster: &ClusterView) -> Option<String> {
    if !cluster.rollout_pause_reason.is_empty() {
        return Some(format!(
            "rollout paused: {}; `muster rollout resume --cluster {}` goes on",
            cluster.rollout_pause_reason, cluster.name
        ));
    }
    (!cluster.rollout_revert_reason.is_empty()).then(|| {
        format!(
            "last rollout undone by auto_revert: {}",
            cluster.rollout_revert_reason
        )
    })
}

/// What an operator must know of a cluster's ODB: a server finds it empty (and what to do), or
/// a rebuild on it is under way (how far).
fn odb_warning(cluster: &ClusterView, components: &[ComponentView]) -> Option<String> {
    if cluster.odb_empty {
        return Some(
            "a server finds the cluster's ODB answering without the cluster (replaced by an \
             empty one?); its components run on with what they loaded. `muster apply` the \
             cluster's file to rebuild it on the ODB (every server, the scheduler and the \
             dashboard are created again)"
                .to_owned(),
        );
    }
    let zato: Vec<&ComponentView> = components
        .iter()
        .filter(|component| component.role != Role::LoadBalancer.cli_name())
        .collect();
    let older = zato
        .iter()
        .filter(|component| component.odb_epoch < cluster.odb_epoch)
        .count();
    (older > 0).then(|| {
        format!(
            "rebuilding on the ODB (generation {}): {}/{} components created again",
            cluster.odb_epoch,
            zato.len() - older,
            zato.len()
        )
    })
}

pub(super) fn write_status(
    out: &mut impl std::io::Write,
    status: &StatusView,
) -> std::io::Result<()> {
    for (index, cluster) in status.clusters.iter().enumerate() {
        if index > 0 {
            writeln!(out)?;
        }
        writeln!(out, "cluster {}: {}", cluster.name, cluster.summary)?;
        if let Some(python) = &cluster.python {
            writeln!(out, "{python}")?;
        }
        if let Some(services) = &cluster.services {
            writeln!(out, "{services}")?;
        }
        if let Some(user_conf) = &cluster.user_conf {
            writeln!(out, "{user_conf}")?;
        }
        for warning in &cluster.warnings {
            writeln!(out, "warning: {warning}")?;
        }
        writeln!(out)?;
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

/// Each cluster's hosts and components (or one cluster's), as `muster status` shows them.
pub(super) async fn fetch_status(
    connection: &mut Connection,
    cluster: Option<String>,
) -> Result<StatusView, CliError> {
    let clusters: Vec<ClusterView> = match &cluster {
        Some(name) => vec![ClusterView::from(
            connection
                .client
                .get_cluster(v1::GetClusterRequest {
                    name: name.clone(),
                    with_content: false,
                })
                .await
                .answer(connection)?
                .cluster
                .unwrap_or_default(),
        )],
        None => connection
            .client
            .list_clusters(v1::ListClustersRequest {})
            .await
            .answer(connection)?
            .clusters
            .into_iter()
            .map(ClusterView::from)
            .collect(),
    };
    let hosts: Vec<HostView> = list_hosts(connection)
        .await?
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

/// `muster ping`: the coordinator answers and takes the admin token (waiting up to `wait`).
pub(super) async fn ping(
    wait: Option<Duration>,
    connection_args: &ConnectionArgs,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    let deadline = Instant::now() + wait.unwrap_or_default();
    loop {
        let attempt = async {
            let mut connection = connect(connection_args).await?;
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

/// `muster status`, once or (with `watch`: how often to ask) whenever it changes.
pub(super) async fn status_command(
    cluster: Option<String>,
    watch: Option<Duration>,
    connection_args: &ConnectionArgs,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    if let Some(cluster) = &cluster {
        validate::name("cluster name", cluster)?;
    }
    let mut connection = connect(connection_args).await?;
    let Some(interval) = watch else {
        let status = fetch_status(&mut connection, cluster).await?;
        if json {
            write_json(out, &status)?;
        } else {
            write_status(out, &status)?;
        }
        return Ok(());
    };
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut last = Vec::new();
    loop {
        let status = fetch_status(&mut connection, cluster.clone()).await?;
        let mut shown = Vec::new();
        if json {
            let line = serde_json::to_string(&status)
                .map_err(|error| CliError::Output(std::io::Error::other(error)))?;
            writeln!(shown, "{line}")?;
        } else {
            write_status(&mut shown, &status)?;
        }
        if shown != last {
            let now = format_time(crate::store::now_ms());
            if !json && terminal {
                // Clear the screen and go home, as `watch` does.
                write!(out, "\x1b[2J\x1b[H")?;
                writeln!(
                    out,
                    "every {}, at {now}",
                    humantime::format_duration(interval)
                )?;
                writeln!(out)?;
            } else if !json {
                writeln!(out, "--- {now}")?;
            }
            // With -o json, only the objects: one per line, as `jq` reads a stream.
            out.write_all(&shown)?;
            out.flush()?;
            last = shown;
        }
        tokio::time::sleep(interval).await;
    }
}
