//! `muster rollout`: changing a running cluster's servers a few at a time (one unless the
//! cluster's `max_unavailable` says more) while the others serve. A rolling restart takes each
//! server out of its load balancers' rotation, restarts it, and takes it back once it answers
//! and they have it UP; then the next (the planner's restart turn, the same one new Python
//! dependencies take).

use super::*;

#[derive(Debug, Subcommand)]
pub(super) enum RolloutCommand {
    /// Restart the cluster's servers one at a time (up to the cluster's max_unavailable at
    /// once, `muster configure rollout`): each is taken out of its load balancers' rotation,
    /// restarted, and taken back once it answers and they have it UP; then the next. A server
    /// that restarts by itself meanwhile counts as restarted. `muster wait` returns once every
    /// server has restarted.
    Restart {
        #[arg(long)]
        cluster: String,
    },
    /// Where the cluster's last rolling restart stands: each server restarted, unchanged (after
    /// an undo: it runs those settings already), restarting, or waiting for its turn; whether
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
        RolloutCommand::Restart { cluster } => {
            validate::name("cluster name", &cluster)?;
            let started = connection
                .client
                .restart_servers(v1::RestartServersRequest {
                    cluster: cluster.clone(),
                })
                .await
                .answer(&connection)?;
            let started = Started {
                cluster,
                restart_epoch: started.restart_epoch,
                servers: started.servers,
                max_unavailable: started.max_unavailable.max(1),
            };
            if json {
                return write_json(out, &started);
            }
            writeln!(
                out,
                "rolling restart of cluster {}'s servers (restart epoch {}): {}; {}, each out \
                 of rotation until its load balancers have it back UP. Follow it with `muster \
                 rollout status --cluster {0}`, or `muster wait --cluster {0}`",
                started.cluster,
                started.restart_epoch,
                started.servers.join(", "),
                at_a_time(started.max_unavailable)
            )?;
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
            let servers: Vec<ServerProgress> = list_components(&mut connection, Some(&cluster))
                .await?
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
            };
            if json {
                return write_json(out, &progress);
            }
            if epoch == 0 {
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
            writeln!(
                out,
                "cluster {}: rolling restart {epoch}: {}/{} servers restarted{}",
                progress.cluster,
                progress.restarted,
                progress.servers.len(),
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
            Ok(())
        }
    }
}
