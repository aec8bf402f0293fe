//! `muster wait`: block until a cluster has converged, for scripts and pipelines (as `kubectl
//! wait` and `nomad job run` do), showing each component's progress on stderr.

use super::*;

/// A component's state as progress lines show it.
pub(super) fn state_line(component: &ComponentView) -> String {
    match (component.state.as_str(), component.healthy) {
        ("", _) => "pending".to_owned(),
        (state, true) => format!("{state}, healthy"),
        (state, false) if component.last_error.is_empty() => state.to_owned(),
        (state, false) => format!("{state}: {}", component.last_error),
    }
}

/// The components that are not healthy, each with its host and why: `server server1 on app-3
/// (pending)`.
pub(super) fn not_healthy(components: &[ComponentView]) -> Vec<String> {
    components
        .iter()
        .filter(|component| !component.healthy)
        .map(|component| {
            format!(
                "{} {} on {} ({})",
                component.role,
                component.name,
                component.host,
                state_line(component)
            )
        })
        .collect()
}

/// Whether a cluster is what it was asked to be: it has components, every one reports healthy,
/// and every load balancer has in rotation every server whose host is not drained.
fn converged(components: &[ComponentView], drained: &std::collections::BTreeSet<String>) -> bool {
    let servers = components
        .iter()
        .filter(|component| component.role == Role::Server.cli_name())
        .filter(|server| !drained.contains(&server.host))
        .count();
    let balancers_route_every_server = components
        .iter()
        .filter(|component| component.role == Role::LoadBalancer.cli_name())
        .all(|balancer| {
            balancer
                .backends
                .iter()
                .filter(|backend| backend.in_rotation)
                .count()
                >= servers
        });
    !components.is_empty()
        && components.iter().all(|component| component.healthy)
        && balancers_route_every_server
}

/// `muster wait --cluster NAME --for healthy [--timeout 5m]`.
pub(super) async fn wait_command(
    cluster: String,
    timeout: Duration,
    connection_args: &ConnectionArgs,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    validate::name("cluster name", &cluster)?;
    let mut connection = connect(connection_args).await?;
    connection
        .client
        .get_cluster(v1::GetClusterRequest {
            name: cluster.clone(),
        })
        .await
        .answer(&connection)?;
    let deadline = Instant::now() + timeout;
    let mut shown: std::collections::BTreeMap<String, String> = Default::default();
    let mut progress = std::io::stderr().lock();
    loop {
        let components = list_components(&mut connection, Some(&cluster)).await?;
        let drained: std::collections::BTreeSet<String> = connection
            .client
            .list_hosts(v1::ListHostsRequest {})
            .await
            .answer(&connection)?
            .hosts
            .into_iter()
            .filter(|host| host.drained)
            .map(|host| host.name)
            .collect();
        let healthy = components.iter().filter(|c| c.healthy).count();
        for component in &components {
            let label = format!(
                "{} {} on {}",
                component.role, component.name, component.host
            );
            let state = state_line(component);
            if shown.get(&label) != Some(&state) {
                writeln!(
                    progress,
                    "[{healthy}/{}] {label:<36} {state}",
                    components.len()
                )?;
                shown.insert(label, state);
            }
        }
        if converged(&components, &drained) {
            if json {
                write_json(out, &components)?;
            } else {
                writeln!(
                    out,
                    "cluster {cluster}: {healthy}/{} healthy, every server in rotation",
                    components.len()
                )?;
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            let waiting = not_healthy(&components);
            let what = if components.is_empty() {
                "it has no components".to_owned()
            } else if waiting.is_empty() {
                "a load balancer does not route to every server yet".to_owned()
            } else {
                format!("waiting for {}", waiting.join("; "))
            };
            return Err(CliError::Refused(format!(
                "cluster {cluster} did not converge within {}: {what}",
                humantime::format_duration(timeout)
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
