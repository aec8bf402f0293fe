//! `muster wait`: block until a cluster has converged, for scripts and pipelines (as `kubectl
//! wait` and `nomad job run` do), showing each component's progress on stderr.

use super::*;

/// A component's state as progress lines show it: `running, healthy`, `pending: host app-3 has
/// not enrolled: …`.
pub(super) fn state_line(component: &ComponentView) -> String {
    match (component.healthy, component.reason.is_empty()) {
        (true, _) => format!("{}, healthy", component.state),
        (false, true) => component.state.clone(),
        (false, false) => format!("{}: {}", component.state, component.reason),
    }
}

/// Whether a component is as it was asked to be: healthy, or stopped because its host is drained.
fn settled(component: &ComponentView) -> bool {
    component.healthy || component.condition == Some(Condition::Drained)
}

/// The components that are not healthy, each with its host and why: `server server1 on app-3
/// (pending)`.
pub(super) fn not_healthy(components: &[ComponentView]) -> Vec<String> {
    components
        .iter()
        .filter(|component| !settled(component))
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

/// Whether a cluster is what it was asked to be: it has components, every one reports healthy
/// (or is stopped because its host is drained), and every load balancer has in rotation every
/// server whose host is not drained.
pub(super) fn converged(
    components: &[ComponentView],
    drained: &std::collections::BTreeSet<String>,
) -> bool {
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
    !components.is_empty() && components.iter().all(settled) && balancers_route_every_server
}

/// The components (of hosts not drained) that have not restarted yet for the cluster's last
/// rolling restart of their role: servers to `epoch` (but those started under `same`, which
/// run what it asks already), the others to their role's in `role_epochs` (those whose agent
/// does not roll them are left out of it), each with where it stands: `server server2 on app-2
/// (restart epoch 0 of 1)`.
fn not_restarted(
    components: &[ComponentView],
    drained: &std::collections::BTreeSet<String>,
    epoch: u64,
    same: Option<u64>,
    role_epochs: &std::collections::HashMap<String, u64>,
) -> Vec<String> {
    components
        .iter()
        .filter(|component| !drained.contains(&component.host))
        .filter_map(|component| {
            let wanted = still_to_restart(component, epoch, same, role_epochs)?;
            Some(format!(
                "{} {} on {} (restart epoch {} of {wanted})",
                component.role, component.name, component.host, component.restart_epoch
            ))
        })
        .collect()
}

/// `muster wait --cluster NAME --for healthy [--timeout 5m]`: converged once every host of the
/// cluster has applied its newest generation, [`converged`] holds for what they report, and
/// every server has restarted for the cluster's last rolling restart. A rollout Muster paused
/// (a server missed its healthy deadline) ends the wait at once, with the reason; one that
/// `auto_revert` undid ends it once converged, with the reason, until another rollout starts
/// or `muster rollout resume` acknowledges it.
pub(super) async fn wait_command(
    cluster: String,
    timeout: Duration,
    connection_args: &ConnectionArgs,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    validate::name("cluster name", &cluster)?;
    let mut connection = connect(connection_args).await?;
    let deadline = Instant::now() + timeout;
    let mut shown: std::collections::BTreeMap<String, String> = Default::default();
    let mut progress = std::io::stderr().lock();
    loop {
        // Read each time: a revert (`auto_revert`) moves the epoch, a failure pauses the turn.
        let rollout = cluster_now(&mut connection, &cluster).await?;
        if !rollout.rollout_pause_reason.is_empty() {
            return Err(CliError::Refused(format!(
                "cluster {cluster}'s rollout is paused: {}; `muster rollout status --cluster \
                 {cluster}` shows where it stands",
                rollout.rollout_pause_reason
            )));
        }
        let components = list_components(&mut connection, Some(&cluster)).await?;
        let hosts = list_hosts(&mut connection).await?;
        let drained: std::collections::BTreeSet<String> = hosts
            .iter()
            .filter(|host| host.drained)
            .map(|host| host.name.clone())
            .collect();
        // What a host reports of a generation it has not applied yet (a drain just made) is
        // what was, not what was asked.
        let applying: Vec<String> = hosts
            .iter()
            .filter(|host| host.applied_generation < host.generation)
            .filter(|host| {
                components
                    .iter()
                    .any(|component| component.host == host.name)
            })
            .map(|host| {
                format!(
                    "host {} applying generation {} (at {})",
                    host.name, host.generation, host.applied_generation
                )
            })
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
        let restarting = not_restarted(
            &components,
            &drained,
            rollout.restart_epoch,
            rollout.restart_epoch_same,
            &rollout.restart_epochs,
        );
        if applying.is_empty() && restarting.is_empty() && converged(&components, &drained) {
            if !rollout.rollout_revert_reason.is_empty() {
                return Err(CliError::Refused(format!(
                    "cluster {cluster} converged on the server settings from before its last \
                     change: auto_revert undid the change, {} (`muster rollout resume --cluster \
                     {cluster}` acknowledges it)",
                    rollout.rollout_revert_reason
                )));
            }
            if json {
                write_json(out, &components)?;
            } else {
                writeln!(
                    out,
                    "cluster {cluster}: {}, every server in rotation",
                    Summary::of(&components)
                )?;
            }
            return Ok(());
        }
        if Instant::now() >= deadline {
            let mut waiting = not_healthy(&components);
            waiting.extend(applying);
            waiting.extend(restarting);
            let what = if components.is_empty() {
                "it has no components".to_owned()
            } else if waiting.is_empty() {
                "a load balancer does not route to every server yet".to_owned()
            } else {
                format!("waiting for {}", waiting.join("; "))
            };
            return Err(CliError::TimedOut(format!(
                "cluster {cluster} did not converge within {}: {what}",
                humantime::format_duration(timeout)
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
