//! `muster rollout`: changing a running cluster's servers a few at a time (one unless the
//! cluster's `max_unavailable` says more) while the others serve. A rolling restart takes each
//! server out of its load balancers' rotation, restarts it, and takes it back once it answers
//! and they have it UP; then the next (the planner's restart turn, the same one new Python
//! dependencies take). With `--role`, the dashboards, load balancers and scheduler too, in
//! Zato's order.

use super::*;

#[derive(Debug, Subcommand)]
pub(super) enum RolloutCommand {
    /// Restart the cluster's servers one at a time (up to the cluster's max_unavailable at
    /// once, `muster configure rollout`): each is taken out of its load balancers' rotation,
    /// restarted, and taken back once it answers and they have it UP; then the next. A server
    /// that restarts by itself meanwhile counts as restarted. With --role, the components of
    /// those roles, in Zato's order: dashboards, servers, load balancers (HAProxy reloaded,
    /// hitless), the scheduler, each role once those before it have restarted. `muster wait`
    /// returns once every one has restarted.
    Restart {
        #[arg(long)]
        cluster: String,
        /// A role to restart: server, web-admin, load-balancer, scheduler, or all (repeat for
        /// several) [default: server].
        #[arg(long = "role", value_name = "ROLE")]
        roles: Vec<String>,
    },
    /// Where the cluster's last rolling restart stands: each server restarted, unchanged (after
    /// an undo: it runs those settings already), restarting, or waiting for its turn; each
    /// dashboard, load balancer and scheduler of a role restarted with --role (restarted,
    /// restarting, waiting for the roles before it, or left out: its agent is older); whether
    /// the turn is paused, why Muster paused it or undid the change (a server missed its healthy
    /// deadline), and the strategy (`muster configure rollout`).
    Status {
        #[arg(long)]
        cluster: String,
    },
    /// Hold the cluster's restart turn: no server starts a restart (for a rolling restart or new
    /// Python dependencies) until `muster rollout resume`; one already restarting finishes.
    Pause {
        #[arg(long)]
        cluster: String,
    },
    /// Let the cluster's restart turn go on after `muster rollout pause`, or after Muster paused
    /// it because a server missed its healthy deadline (each server still failing gets a new
    /// deadline).
    Resume {
        #[arg(long)]
        cluster: String,
    },
    /// Bring back the cluster's server settings from before their last change (`muster configure
    /// server`, a cluster file's [server_settings]), with a rolling restart; a second undo goes
    /// back again. Refused when they never changed.
    Undo {
        #[arg(long)]
        cluster: String,
    },
}

#[derive(Debug, Args)]
pub(super) struct ConfigureRolloutArgs {
    /// The cluster.
    #[arg(long)]
    cluster: String,
    /// How long a server that restarted into a rollout may take to become healthy, 10s to 24h
    /// [default: 5m].
    #[arg(long, value_parser = humantime::parse_duration)]
    healthy_deadline: Option<Duration>,
    /// How long a server that restarted into a rollout stays out of rotation once healthy,
    /// healthy without a break, before the next server's turn; 0s to 1h, shorter than the
    /// healthy deadline [default: 0s: at its first healthy report].
    #[arg(long, value_parser = humantime::parse_duration)]
    min_healthy_time: Option<Duration>,
    /// Undo a rollout of server settings that a server failed, instead of pausing it
    /// [default: false].
    #[arg(long, value_name = "BOOL", action = clap::ArgAction::Set)]
    auto_revert: Option<bool>,
    /// How many of the cluster's servers may be out of rotation at once for a rollout, 1 to
    /// 32: those it restarts and those out already (down, starting, held, drained) count alike.
    /// As many as the cluster has servers means an outage while they restart [default: 1].
    #[arg(long, value_name = "SERVERS")]
    max_unavailable: Option<u32>,
}

/// The rollout strategy as the CLI shows it.
#[derive(Debug, Serialize)]
struct StrategyView {
    cluster: String,
    #[serde(flatten)]
    strategy: muster_proto::rollout::Strategy,
    changed: bool,
}

/// `muster configure rollout`.
pub(super) async fn configure_rollout(
    args: ConfigureRolloutArgs,
    connection_args: &ConnectionArgs,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    validate::name("cluster name", &args.cluster)?;
    if args.healthy_deadline.is_none()
        && args.min_healthy_time.is_none()
        && args.auto_revert.is_none()
        && args.max_unavailable.is_none()
    {
        return Err(CliError::Usage(
            "nothing to change: give --max-unavailable SERVERS, --healthy-deadline DURATION, \
             --min-healthy-time DURATION or --auto-revert true|false"
                .to_owned(),
        ));
    }
    // Each checked alone here; together, against the cluster's, by the coordinator.
    let seconds = |duration: Option<Duration>| {
        duration.map(|duration| u32::try_from(duration.as_secs()).unwrap_or(u32::MAX))
    };
    let healthy_deadline_seconds = seconds(args.healthy_deadline);
    let min_healthy_time_seconds = seconds(args.min_healthy_time);
    if let Some(deadline) = healthy_deadline_seconds {
        muster_proto::rollout::Strategy {
            healthy_deadline_seconds: deadline,
            ..Default::default()
        }
        .check()
        .map_err(|error| CliError::Usage(error.to_string()))?;
    }
    if let Some(held) = min_healthy_time_seconds {
        muster_proto::rollout::Strategy {
            healthy_deadline_seconds: muster_proto::rollout::MAX_HEALTHY_DEADLINE_SECONDS,
            min_healthy_time_seconds: held,
            ..Default::default()
        }
        .check()
        .map_err(|error| CliError::Usage(error.to_string()))?;
    }
    if let Some(servers) = args.max_unavailable {
        muster_proto::rollout::Strategy {
            max_unavailable: servers,
            ..Default::default()
        }
        .check()
        .map_err(|error| CliError::Usage(error.to_string()))?;
    }
    let mut connection = connect(connection_args).await?;
    let response = connection
        .client
        .configure_rollout(v1::ConfigureRolloutRequest {
            cluster: args.cluster.clone(),
            healthy_deadline_seconds,
            auto_revert: args.auto_revert,
            min_healthy_time_seconds,
            max_unavailable: args.max_unavailable,
        })
        .await
        .answer(&connection)?;
    let view = StrategyView {
        cluster: args.cluster,
        strategy: response.strategy.unwrap_or_default().into(),
        changed: response.changed,
    };
    if json {
        return write_json(out, &view);
    }
    writeln!(
        out,
        "cluster {}: rollout strategy {}: {}",
        view.cluster,
        if view.changed { "now" } else { "unchanged" },
        view.strategy.shown()
    )?;
    Ok(())
}

/// Cluster `name` as the coordinator has it now (its restart epoch, pause, strategy), without
/// the content of its files.
pub(super) async fn cluster_now(
    connection: &mut Connection,
    name: &str,
) -> Result<v1::Cluster, CliError> {
    Ok(connection
        .client
        .get_cluster(v1::GetClusterRequest {
            name: name.to_owned(),
            with_content: false,
        })
        .await
        .answer(connection)?
        .cluster
        .unwrap_or_default())
}

#[derive(Debug, Serialize)]
struct Paused {
    cluster: String,
    paused: bool,
    changed: bool,
}

#[derive(Debug, Serialize)]
struct Started {
    cluster: String,
    restart_epoch: u64,
    servers: Vec<String>,
    /// How many may be out of rotation at once.
    max_unavailable: u32,
    /// The dashboards, load balancers and scheduler that restart, in Zato's order.
    others: Vec<OtherComponent>,
}

/// A dashboard, load balancer or scheduler in a rolling restart of its role.
#[derive(Debug, Serialize)]
struct OtherComponent {
    role: String,
    name: String,
}

/// A dashboard, load balancer or scheduler in the last rolling restart of its role.
#[derive(Debug, Serialize)]
struct OtherProgress {
    role: String,
    name: String,
    host: String,
    restart_epoch: u64,
    /// `restarted`, `restarting` (its turn), `waiting` (for the roles before it), or `left out`
    /// (its agent is older than rolling restarts of its role).
    progress: &'static str,
    state: String,
}

/// The roles `--role` names (`all`: every one), in Zato's order; none: the servers.
fn roles_from(given: &[String]) -> Result<Vec<Role>, CliError> {
    let mut roles = Vec::new();
    for word in given {
        if word == "all" {
            roles.extend(crate::policy::ROLLOUT_ORDER);
            continue;
        }
        let role = word
            .parse::<Role>()
            .ok()
            .filter(|role| crate::policy::ROLLOUT_ORDER.contains(role))
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "--role {word}: not a role (server, web-admin, load-balancer, scheduler, or all)"
                ))
            })?;
        roles.push(role);
    }
    if roles.is_empty() {
        roles.push(Role::Server);
    }
    Ok(crate::policy::ROLLOUT_ORDER
        .into_iter()
        .filter(|role| roles.contains(role))
        .collect())
}

/// The restart epoch `component` is still to restart to in the last rolling restart of its role:
/// a server to `epoch` (unless it was started under `same`, which runs what that asks already),
/// a dashboard, load balancer or scheduler to its role's in `role_epochs` (unless its agent does
/// not roll it); `None` once it has restarted, or when it is left out.
pub(super) fn still_to_restart(
    component: &ComponentView,
    epoch: u64,
    same: Option<u64>,
    role_epochs: &std::collections::HashMap<String, u64>,
) -> Option<u64> {
    let wanted = if component.role == Role::Server.cli_name() {
        if Some(component.restart_epoch) == same {
            return None;
        }
        epoch
    } else if component.rolls {
        role_epochs.get(&component.role).copied().unwrap_or(0)
    } else {
        return None;
    };
    (component.restart_epoch < wanted).then_some(wanted)
}

/// Where a dashboard, load balancer or scheduler stands in the last rolling restart of its role
/// (`epoch`): its turn has come (`restarting`) once no component of a role before it in Zato's
/// order is still to restart (`earlier_pending`).
fn other_progress_of(component: &ComponentView, epoch: u64, earlier_pending: bool) -> &'static str {
    if !component.rolls {
        "left out"
    } else if component.restart_epoch >= epoch {
        "restarted"
    } else if earlier_pending {
        "waiting"
    } else {
        "restarting"
    }
}

/// A server in a rolling restart.
#[derive(Debug, Serialize)]
struct ServerProgress {
    name: String,
    host: String,
    restart_epoch: u64,
    /// `restarted`, `unchanged` (it runs what the rollout asks already: after an undo),
    /// `restarting` (its turn: out of rotation, or on its way back), or `waiting`.
    progress: &'static str,
    state: String,
}

#[derive(Debug, Serialize)]
struct Progress {
    cluster: String,
    restart_epoch: u64,
    paused: bool,
    /// Why Muster paused it (a server missed its healthy deadline); empty otherwise.
    pause_reason: String,
    /// Why auto_revert undid the last rollout of server settings; empty otherwise.
    revert_reason: String,
    #[serde(flatten)]
    strategy: muster_proto::rollout::Strategy,
    /// Servers restarted or unchanged.
    restarted: usize,
    servers: Vec<ServerProgress>,
    /// The dashboards, load balancers and scheduler, once a rolling restart of their role was
    /// asked for, in Zato's order.
    others: Vec<OtherProgress>,
}

/// `muster rollout pause` (`paused`) and `resume`.
async fn pause(
    connection: &mut Connection,
    cluster: String,
    paused: bool,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    validate::name("cluster name", &cluster)?;
    let changed = connection
        .client
        .pause_rollout(v1::PauseRolloutRequest {
            cluster: cluster.clone(),
            paused,
        })
        .await
        .answer(connection)?
        .changed;
    if json {
        return write_json(
            out,
            &Paused {
                cluster,
                paused,
                changed,
            },
        );
    }
    let said = match (paused, changed) {
        (true, true) => {
            "restart turn paused: no server starts a restart until `muster rollout resume`"
        }
        (true, false) => "restart turn already paused",
        (false, true) => "restart turn resumed",
        (false, false) => "restart turn was not paused",
    };
    writeln!(out, "cluster {cluster}: {said}")?;
    Ok(())
}

/// How many servers a rollout restarts at once, as its messages say it.
pub(super) use muster_proto::rollout::at_a_time;

/// Where a server stands in the rolling restart to `epoch` (`same`: the epoch whose servers
/// run what it asks already).
fn progress_of(server: &ComponentView, epoch: u64, same: Option<u64>) -> &'static str {
    if server.restart_epoch >= epoch {
        "restarted"
    } else if Some(server.restart_epoch) == same {
        "unchanged"
    } else if server.healthy {
        "waiting"
    } else {
        "restarting"
    }
}

pub(super) async fn rollout_command(
    command: RolloutCommand,
    connection_args: &ConnectionArgs,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    let mut connection = connect(connection_args).await?;
    match command {
        RolloutCommand::Restart { cluster, roles } => {
            validate::name("cluster name", &cluster)?;
            let roles = roles_from(&roles)?;
            let started = connection
                .client
                .restart_servers(v1::RestartServersRequest {
                    cluster: cluster.clone(),
                    roles: roles.iter().map(|role| *role as i32).collect(),
                })
                .await
                .answer(&connection)?;
            let started = Started {
                cluster,
                restart_epoch: started.restart_epoch,
                servers: started.servers,
                max_unavailable: started.max_unavailable.max(1),
                others: started
                    .others
                    .into_iter()
                    .map(|component| OtherComponent {
                        role: Role::try_from(component.role)
                            .unwrap_or_default()
                            .cli_name()
                            .to_owned(),
                        name: component.name,
                    })
                    .collect(),
            };
            if json {
                return write_json(out, &started);
            }
            let servers = (!started.servers.is_empty()).then(|| {
                format!(
                    "servers (restart epoch {}): {}; {}, each out of rotation until its load \
                     balancers have it back UP",
                    started.restart_epoch,
                    started.servers.join(", "),
                    at_a_time(started.max_unavailable)
                )
            });
            let of_role = |role: Role| {
                let names: Vec<&str> = started
                    .others
                    .iter()
                    .filter(|other| other.role == role.cli_name())
                    .map(|other| other.name.as_str())
                    .collect();
                (!names.is_empty()).then(|| {
                    let what = match role {
                        Role::WebAdmin => "dashboard",
                        Role::LoadBalancer => "load balancer (HAProxy reloaded, hitless)",
                        _ => "scheduler",
                    };
                    format!("{what} {}", names.join(", "))
                })
            };
            let steps: Vec<String> = [
                of_role(Role::WebAdmin),
                servers,
                of_role(Role::LoadBalancer),
                of_role(Role::Scheduler),
            ]
            .into_iter()
            .flatten()
            .collect();
            if started.others.is_empty() {
                writeln!(
                    out,
                    "rolling restart of cluster {}'s {}. Follow it with `muster rollout status \
                     --cluster {0}`, or `muster wait --cluster {0}`",
                    started.cluster, steps[0]
                )?;
            } else {
                writeln!(
                    out,
                    "rolling restart of cluster {} in Zato's order: {}. Follow it with `muster \
                     rollout status --cluster {0}`, or `muster wait --cluster {0}`",
                    started.cluster,
                    steps.join("; then ")
                )?;
            }
            Ok(())
        }
        RolloutCommand::Pause { cluster } => pause(&mut connection, cluster, true, json, out).await,
        RolloutCommand::Resume { cluster } => {
            pause(&mut connection, cluster, false, json, out).await
        }
        RolloutCommand::Undo { cluster } => {
            validate::name("cluster name", &cluster)?;
            let response = connection
                .client
                .undo_server_settings(v1::UndoServerSettingsRequest {
                    cluster: cluster.clone(),
                })
                .await
                .answer(&connection)?;
            write_servers_configured(cluster, response, json, out)
        }
        RolloutCommand::Status { cluster } => {
            validate::name("cluster name", &cluster)?;
            let found = cluster_now(&mut connection, &cluster).await?;
            let (epoch, same, paused) = (
                found.restart_epoch,
                found.restart_epoch_same,
                found.rollout_paused,
            );
            let strategy: muster_proto::rollout::Strategy =
                found.rollout_strategy.unwrap_or_default().into();
            let components = list_components(&mut connection, Some(&cluster)).await?;
            let role_epoch = |role: Role| {
                found
                    .restart_epochs
                    .get(role.cli_name())
                    .copied()
                    .unwrap_or(0)
            };
            // Whether a component of `role` (on a host that reports, not drained) is still to
            // restart: the roles after it wait for it.
            let pending = |role: Role| {
                components
                    .iter()
                    .filter(|component| component.role == role.cli_name())
                    .filter(|component| !matches!(component.state.as_str(), "drained" | "down"))
                    .any(|component| {
                        still_to_restart(component, epoch, same, &found.restart_epochs).is_some()
                    })
            };
            let mut others = Vec::new();
            let mut earlier_pending = false;
            for role in crate::policy::ROLLOUT_ORDER {
                let role_epoch = role_epoch(role);
                let waits = earlier_pending;
                earlier_pending |= pending(role);
                if role == Role::Server || role_epoch == 0 {
                    continue;
                }
                others.extend(
                    components
                        .iter()
                        .filter(|component| component.role == role.cli_name())
                        .map(|component| OtherProgress {
                            role: component.role.clone(),
                            name: component.name.clone(),
                            host: component.host.clone(),
                            restart_epoch: component.restart_epoch,
                            progress: other_progress_of(component, role_epoch, waits),
                            state: component.state.clone(),
                        }),
                );
            }
            let servers: Vec<ServerProgress> = components
                .into_iter()
                .filter(|component| component.role == Role::Server.cli_name())
                .map(|server| ServerProgress {
                    progress: progress_of(&server, epoch, same),
                    name: server.name,
                    host: server.host,
                    restart_epoch: server.restart_epoch,
                    state: server.state,
                })
                .collect();
            let progress = Progress {
                restarted: servers
                    .iter()
                    .filter(|server| matches!(server.progress, "restarted" | "unchanged"))
                    .count(),
                cluster,
                restart_epoch: epoch,
                paused,
                pause_reason: found.rollout_pause_reason,
                revert_reason: found.rollout_revert_reason,
                strategy,
                servers,
                others,
            };
            if json {
                return write_json(out, &progress);
            }
            if epoch == 0 && progress.others.is_empty() {
                writeln!(
                    out,
                    "cluster {}: no rolling restart yet (`muster rollout restart`){}",
                    progress.cluster,
                    if paused {
                        "; the restart turn is paused"
                    } else {
                        ""
                    }
                )?;
                return Ok(());
            }
            let servers_said = if epoch == 0 {
                "no rolling restart of its servers yet".to_owned()
            } else {
                format!(
                    "rolling restart {epoch}: {}/{} servers restarted",
                    progress.restarted,
                    progress.servers.len()
                )
            };
            writeln!(
                out,
                "cluster {}: {servers_said}{}",
                progress.cluster,
                if paused {
                    " (paused: `muster rollout resume` goes on)"
                } else {
                    ""
                }
            )?;
            if !progress.pause_reason.is_empty() {
                writeln!(out, "stopped: {}", progress.pause_reason)?;
            }
            if !progress.revert_reason.is_empty() {
                writeln!(
                    out,
                    "reverted: {}; the servers that ran the change restart with the settings \
                     before it",
                    progress.revert_reason
                )?;
            }
            writeln!(out, "strategy: {}", progress.strategy.shown())?;
            let rows: Vec<Vec<String>> = progress
                .servers
                .iter()
                .map(|server| {
                    vec![
                        server.name.clone(),
                        server.host.clone(),
                        server.restart_epoch.to_string(),
                        server.progress.to_owned(),
                        server.state.clone(),
                    ]
                })
                .collect();
            write_table(
                out,
                &["SERVER", "HOST", "EPOCH", "PROGRESS", "STATE"],
                &rows,
            )?;
            if !progress.others.is_empty() {
                // Zato's order: dashboards before the servers, then load balancers and the
                // scheduler; each waits for the roles before it.
                writeln!(out)?;
                let rows: Vec<Vec<String>> = progress
                    .others
                    .iter()
                    .map(|other| {
                        vec![
                            other.role.clone(),
                            other.name.clone(),
                            other.host.clone(),
                            other.restart_epoch.to_string(),
                            other.progress.to_owned(),
                            other.state.clone(),
                        ]
                    })
                    .collect();
                write_table(
                    out,
                    &["ROLE", "NAME", "HOST", "EPOCH", "PROGRESS", "STATE"],
                    &rows,
                )?;
            }
            Ok(())
        }
    }
}
