//! The planner: renders what one host must run from the store's facts ([`PlanInputs`]).
//!
//! Rules, for each cluster the host has a component in:
//! - until both bootstrap tasks (`zato create odb`, then `zato create cluster`) are done, the
//!   cluster's components are withheld everywhere except load balancers (which need neither the
//!   ODB nor a secret), and the chosen bootstrap host (one with a server, scheduler or web-admin)
//!   gets the tasks;
//! - a server gets the scheduler's address when the cluster's scheduler is on an enrolled host;
//! - the scheduler gets the address of the server the store chose by health
//!   (`Cluster::scheduler_target`), or before any server was healthy, of the cluster's first server
//!   (by name) on an enrolled host;
//! - a load balancer gets its settings and every server of the cluster on an enrolled host, those on
//!   drained hosts marked `drain`;
//! - a server on a drained host keeps running until no load balancer of the cluster still sends it
//!   new requests: every one that is up and healthy reports it as drained, in maintenance, down or
//!   gone. Load balancers that are down or unhealthy are not waited for. (Every change of a load
//!   balancer's report bumps the generations of the cluster's drained server hosts.)
//! - until a server of the cluster has been healthy (a fresh ODB), only its first server
//!   ([`policy::first_server`]) is created: the others are sent with `hold`, the reason they wait;
//! - each component gets only the secrets its role needs.
//!
//! The render depends only on assignments, enrolled hosts and their addresses, bootstrap progress,
//! the clusters and load balancers' reports; every change to one of those bumps the affected hosts'
//! generations.

use muster_proto::v1::{self, BootstrapKind, Role};

use crate::domain::{Assignment, BootstrapTask, Cluster, ClusterSecrets, HostState, PlanInputs};
use crate::policy;

fn odb_message(cluster: &Cluster) -> v1::OdbSettings {
    v1::OdbSettings {
        odb_type: cluster.odb.odb_type as i32,
        host: cluster.odb.host.clone(),
        port: u32::from(cluster.odb.port),
        user: cluster.odb.user.clone(),
        db_name: cluster.odb.db_name.clone(),
        postgresql_schema: cluster.odb.postgresql_schema.clone(),
    }
}

/// A password for one of the API clients that servers and the scheduler share, or the dashboard's,
/// derived from the cluster's secret key so every side gets the same value without another stored
/// secret.
fn derived_password(secrets: &ClusterSecrets, purpose: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secrets.secret_key.as_bytes());
    hex::encode(&ring::hmac::sign(&key, purpose.as_bytes()).as_ref()[..16])
}

fn secrets_for(role: Role, secrets: &ClusterSecrets) -> v1::ComponentSecrets {
    let api_passwords = || {
        (
            derived_password(secrets, "scheduler-api-client-for-server"),
            derived_password(secrets, "server-api-client-for-scheduler"),
        )
    };
    match role {
        Role::Server => {
            let (scheduler_api, server_api) = api_passwords();
            v1::ComponentSecrets {
                odb_password: secrets.odb_password.clone(),
                secret_key: secrets.secret_key.clone(),
                jwt_secret: secrets.jwt_secret.clone(),
                scheduler_api_password: scheduler_api,
                server_api_password: server_api,
                // Its agent deploys the cluster's services through the server's admin channel
                // (Zato's `zato.service.upload-package`), as the dashboard does.
                admin_invoke_password: secrets.admin_invoke_password.clone(),
                ..Default::default()
            }
        }
        Role::Scheduler => {
            let (scheduler_api, server_api) = api_passwords();
            v1::ComponentSecrets {
                odb_password: secrets.odb_password.clone(),
                secret_key: secrets.secret_key.clone(),
                scheduler_api_password: scheduler_api,
                server_api_password: server_api,
                ..Default::default()
            }
        }
        Role::WebAdmin => v1::ComponentSecrets {
            odb_password: secrets.odb_password.clone(),
            admin_invoke_password: secrets.admin_invoke_password.clone(),
            dashboard_password: dashboard_password(secrets),
            ..Default::default()
        },
        Role::LoadBalancer | Role::Unspecified => v1::ComponentSecrets::default(),
    }
}

/// The password of the dashboard's user `admin` (`muster_proto::zato::DASHBOARD_USER`); the agent
/// of every web-admin sets it.
pub fn dashboard_password(secrets: &ClusterSecrets) -> String {
    derived_password(secrets, "dashboard-admin")
}

/// Where the cluster's dashboards send their calls to servers: its first load balancer (by name)
/// on an enrolled host, or else its first server on one.
fn dashboard_target(inputs: &PlanInputs, cluster: &str) -> Option<v1::Endpoint> {
    let mut candidates: Vec<&Assignment> = inputs
        .assignments
        .iter()
        .filter(|assignment| assignment.cluster == cluster)
        .filter(|assignment| matches!(assignment.role, Role::LoadBalancer | Role::Server))
        .collect();
    candidates.sort_by_key(|assignment| (assignment.role != Role::LoadBalancer, &assignment.name));
    candidates.into_iter().find_map(|assignment| {
        let host = inputs
            .hosts
            .get(&assignment.host)
            .filter(|host| !host.advertise_address.is_empty())?;
        Some(v1::Endpoint {
            host: host.advertise_address.clone(),
            port: u32::from(assignment.port),
            tls: false,
        })
    })
}

/// Where `assignment` listens: its host's advertised address and its port (Zato's components
/// speak plain HTTP to each other, as Zato's quickstart sets them up).
fn endpoint_of(inputs: &PlanInputs, assignment: &Assignment) -> Option<v1::Endpoint> {
    let host = inputs.hosts.get(&assignment.host)?;
    Some(v1::Endpoint {
        host: host.advertise_address.clone(),
        port: u32::from(assignment.port),
        tls: false,
    })
}

/// The peer a server or the scheduler calls: the scheduler for a server; for the scheduler, the
/// cluster's scheduler target first, then the other servers by name. The first with an address.
fn peer(inputs: &PlanInputs, assignment: &Assignment) -> Option<v1::Endpoint> {
    let wanted = match assignment.role {
        Role::Server => Role::Scheduler,
        Role::Scheduler => Role::Server,
        _ => return None,
    };
    let mut candidates: Vec<&Assignment> = inputs
        .assignments
        .iter()
        .filter(|other| other.cluster == assignment.cluster && other.role == wanted)
        .collect();
    candidates.sort_by(|left, right| left.name.cmp(&right.name));
    let target = inputs
        .clusters
        .get(&assignment.cluster)
        .map(|(cluster, _)| cluster.scheduler_target.as_str())
        .unwrap_or_default();
    if wanted == Role::Server
        && let Some(chosen) = candidates.iter().position(|server| server.name == target)
    {
        let preferred = candidates.remove(chosen);
        candidates.insert(0, preferred);
    }
    candidates
        .into_iter()
        .find_map(|candidate| endpoint_of(inputs, candidate))
}

/// A load balancer's backend: every server of its cluster on an enrolled host, by name.
fn backends(inputs: &PlanInputs, assignment: &Assignment) -> Vec<v1::BackendServer> {
    if assignment.role != Role::LoadBalancer {
        return Vec::new();
    }
    let cluster_servers: Vec<&Assignment> = inputs
        .assignments
        .iter()
        .filter(|other| other.cluster == assignment.cluster && other.role == Role::Server)
        .collect();
    let mut gated = services_gate(inputs, &assignment.cluster, &cluster_servers);
    gated.extend(
        restart_turn(inputs, &assignment.cluster)
            .into_iter()
            .map(|server| server.name.as_str()),
    );
    // One that restarted into a rollout stays out while it is held healthy (min_healthy_time).
    gated.extend(
        cluster_servers
            .iter()
            .filter(|server| held(server))
            .map(|server| server.name.as_str()),
    );
    let mut servers: Vec<v1::BackendServer> = cluster_servers
        .iter()
        .filter_map(|server| {
            let host = inputs.hosts.get(&server.host)?;
            Some(v1::BackendServer {
                name: server.name.clone(),
                address: host.advertise_address.clone(),
                port: u32::from(server.port),
                drain: host.drained || gated.contains(server.name.as_str()),
            })
        })
        .collect();
    servers.sort_by(|left, right| left.name.cmp(&right.name));
    servers
}

/// The servers of `cluster` kept out of rotation until their services are in place: the cluster
/// has services, a server's agent has found none of them deployed on it yet, and another server
/// has (so the cluster's services are live elsewhere: a server joining, or rebuilt, gets no
/// request it would answer with "no such channel"). When all of them lack them (the cluster's
/// first deployment, an ODB replaced), none is kept out.
fn services_gate<'a>(
    inputs: &PlanInputs,
    cluster: &str,
    servers: &[&'a Assignment],
) -> std::collections::BTreeSet<&'a str> {
    let has_services = inputs
        .clusters
        .get(cluster)
        .is_some_and(|(cluster, _)| !cluster.services_revision.is_empty());
    let (deployed, lacking): (Vec<&Assignment>, Vec<&Assignment>) =
        servers.iter().copied().partition(|server| {
            server
                .status
                .as_ref()
                .is_some_and(|status| !status.services_revision.is_empty())
        });
    if !has_services || deployed.is_empty() {
        return std::collections::BTreeSet::new();
    }
    lacking
        .into_iter()
        .map(|server| server.name.as_str())
        .collect()
}

/// The servers of `cluster` that may restart now, for the cluster's Python dependencies or its
/// rolling restart: those due to ([`policy::RestartGoal`]: a server whose running process was
/// started with another revision, or under an older restart epoch), by name, as long as the
/// servers out of rotation and those given the turn stay within the cluster's
/// `max_unavailable`. Out of rotation: not healthy, held healthy for its own restart's
/// `min_healthy_time`, or not in every load balancer's rotation (its load balancers drain the
/// ones given the turn meanwhile). A due server out already restarts within that count (its
/// restart takes no other one out: a server a bad setting broke can take the settings before
/// back); while more are out than `max_unavailable` (reports from before they rose) nobody
/// restarts. For new Python dependencies a server restarts once they are installed beside
/// it (a rolling restart does not wait for that); the turn goes by name, whatever order they
/// install in, so that it never moves past a server before this one has restarted. Servers on
/// a host that is down or drained neither restart nor count: they are out on purpose.
/// Nobody while an operator holds the turn (`muster rollout pause`).
fn restart_turn<'a>(inputs: &'a PlanInputs, cluster: &str) -> Vec<&'a Assignment> {
    let Some((cluster, _)) = inputs.clusters.get(cluster) else {
        return Vec::new();
    };
    // An operator holds the turn: no server starts a restart. A dashboard restarting first, in
    // Zato's order, holds it too.
    if cluster.rollout_paused || role_due(inputs, cluster, Role::WebAdmin) {
        return Vec::new();
    }
    let mut servers: Vec<&Assignment> = inputs
        .assignments
        .iter()
        .filter(|other| other.cluster == cluster.name && other.role == Role::Server)
        .filter(|other| {
            inputs
                .hosts
                .get(&other.host)
                .is_some_and(|host| host.state == HostState::Up && !host.drained)
        })
        .collect();
    servers.sort_by(|left, right| left.name.cmp(&right.name));
    let goal = policy::RestartGoal::of(cluster);
    let out_of_rotation = |server: &Assignment| {
        !(server.status.as_ref().is_some_and(|status| status.healthy)
            && !held(server)
            && routed_by_every_balancer(inputs, server))
    };
    let budget = usize::try_from(cluster.rollout_strategy.max_unavailable.max(1)).unwrap_or(1);
    let mut unavailable = servers
        .iter()
        .filter(|server| out_of_rotation(server))
        .count();
    let mut turn = Vec::new();
    for server in servers {
        let Some(status) = server.status.as_ref().filter(|status| {
            goal.due_with(status.state, &status.python_revision, status.restart_epoch)
        }) else {
            continue;
        };
        // New Python dependencies not installed beside it yet: it waits, and those after it.
        let installed = cluster.python_revision.is_empty()
            || status.python_installed == cluster.python_revision;
        if !installed && status.restart_epoch >= cluster.restart_epoch {
            break;
        }
        if out_of_rotation(server) {
            // Counted already (drained for this very turn, or broken): its restart takes no
            // other one out.
            if unavailable <= budget {
                turn.push(server);
            }
        } else if unavailable < budget {
            unavailable += 1;
            turn.push(server);
        }
    }
    turn
}

/// Whether a component of `role` in `cluster`, on a host that is up and not drained, is due to
/// restart in a rolling restart of its role ([`policy::RestartGoal::due_as`]); for servers, also
/// one its agent is restarting under an older epoch, one restarted into the current epoch and
/// still on its way up (Zato's order waits for each server to boot), and one held healthy for
/// `min_healthy_time` after its restart. (A server that never comes up stops the rollout at its
/// healthy deadline.)
fn role_due(inputs: &PlanInputs, cluster: &Cluster, role: Role) -> bool {
    let goal = policy::RestartGoal::of(cluster);
    inputs
        .assignments
        .iter()
        .filter(|other| other.cluster == cluster.name && other.role == role)
        .filter(|other| {
            inputs
                .hosts
                .get(&other.host)
                .is_some_and(|host| host.state == HostState::Up && !host.drained)
        })
        .any(|other| {
            other.status.as_ref().is_some_and(|status| {
                if role != Role::Server {
                    return goal.other_due(role, status.state, status.restart_epoch, status.rolls);
                }
                let on_its_way = matches!(
                    status.state,
                    v1::ComponentState::Restarting | v1::ComponentState::Starting
                ) && !status.healthy;
                goal.due_with(status.state, &status.python_revision, status.restart_epoch)
                    || (on_its_way && goal.restart_epoch > 0)
                    || held(other)
            })
        })
}

/// Whether `assignment`, a dashboard, load balancer or scheduler, restarts now in a rolling
/// restart of its role: it is due, and no component of a role before it in Zato's order
/// ([`policy::ROLLOUT_ORDER`]) is (servers: due, or held after their restart). Never while an
/// operator holds the turn. A load balancer reloads HAProxy (hitless), all of a cluster's at
/// once; there is one scheduler.
fn role_turn(inputs: &PlanInputs, cluster: &Cluster, assignment: &Assignment) -> bool {
    let role = assignment.role;
    if cluster.rollout_paused || role == Role::Server {
        return false;
    }
    let goal = policy::RestartGoal::of(cluster);
    let due = assignment.status.as_ref().is_some_and(|status| {
        goal.other_due(role, status.state, status.restart_epoch, status.rolls)
    });
    due && policy::ROLLOUT_ORDER
        .iter()
        .take_while(|earlier| **earlier != role)
        .all(|earlier| !role_due(inputs, cluster, *earlier))
}

/// Whether `server` restarted into a rollout and is still held healthy, out of rotation, for its
/// cluster's `min_healthy_time` ([`crate::domain::ComponentStatus::rollout_held_since`]).
fn held(server: &Assignment) -> bool {
    server
        .status
        .as_ref()
        .is_some_and(|status| status.rollout_held_since.is_some())
}

/// Whether every load balancer of `server`'s cluster that is up and healthy sends it new
/// requests (HAProxy has it UP, not still rising after a restart); true when there is none.
fn routed_by_every_balancer(inputs: &PlanInputs, server: &Assignment) -> bool {
    balancer_views(inputs, server).all(|routes| routes)
}

/// Whether a load balancer that is up and healthy still sends new requests to `server`.
fn still_routed(inputs: &PlanInputs, server: &Assignment) -> bool {
    balancer_views(inputs, server).any(|routes| routes)
}

/// For each load balancer of `server`'s cluster that is up and healthy: whether its HAProxy
/// sends `server` new requests.
fn balancer_views<'a>(
    inputs: &'a PlanInputs,
    server: &'a Assignment,
) -> impl Iterator<Item = bool> + 'a {
    inputs
        .assignments
        .iter()
        .filter(|other| other.cluster == server.cluster && other.role == Role::LoadBalancer)
        .filter(|balancer| {
            inputs
                .hosts
                .get(&balancer.host)
                .is_some_and(|host| host.state == HostState::Up)
        })
        .filter_map(|balancer| balancer.status.as_ref().filter(|status| status.healthy))
        .map(|status| {
            status
                .backends
                .iter()
                .any(|backend| backend.name == server.name && backend.status().in_rotation())
        })
}

/// Whether `server`'s agent deploys the cluster's missing services at once: it is the first
/// server of the cluster by name on a host that is up and not drained (the others wait for Zato
/// to bring the modules to them).
fn deploys_services(inputs: &PlanInputs, server: &Assignment) -> bool {
    inputs
        .assignments
        .iter()
        .filter(|other| other.cluster == server.cluster && other.role == Role::Server)
        .filter(|other| {
            inputs
                .hosts
                .get(&other.host)
                .is_some_and(|host| host.state == HostState::Up && !host.drained)
        })
        .map(|other| other.name.as_str())
        .min()
        == Some(server.name.as_str())
}

/// Why the importing server does not import the cluster's configuration yet: another server of
/// the cluster on a host that is up is on its way up (not reported yet, created, waiting,
/// starting or restarting, or created under an older ODB generation). Zato 3.2 sends an import's
/// objects, one at a time, to the servers running at that moment: one starting meanwhile misses
/// some (seen with the real Zato: a server that missed the security definition kept failing its
/// channel with a KeyError, HTTP 500), while one that starts after the import loads them all from
/// the ODB. A server that failed or is unhealthy does not hold it. Empty when it may import.
fn config_hold(inputs: &PlanInputs, cluster: &Cluster, importer: &Assignment) -> String {
    let starting: Vec<&str> = inputs
        .assignments
        .iter()
        .filter(|other| {
            other.cluster == importer.cluster
                && other.role == Role::Server
                && other.name != importer.name
                && inputs
                    .hosts
                    .get(&other.host)
                    .is_some_and(|host| host.state == HostState::Up && !host.drained)
        })
        .filter(|other| match &other.status {
            None => true,
            Some(status) => {
                status.odb_epoch < cluster.odb_epoch
                    || (!status.healthy
                        && matches!(
                            status.state,
                            v1::ComponentState::Creating
                                | v1::ComponentState::Waiting
                                | v1::ComponentState::Starting
                                | v1::ComponentState::Restarting
                        ))
            }
        })
        .map(|other| other.name.as_str())
        .collect();
    if starting.is_empty() {
        return String::new();
    }
    format!(
        "waiting for {} to start: a server starting during an import misses part of it",
        starting.join(", ")
    )
}

/// Why a server of a cluster whose servers have not started may not be created yet: another is
/// the first (`Cluster::first_server`, chosen by [`policy::first_server`]). Empty for every other
/// component.
fn hold(inputs: &PlanInputs, cluster: &Cluster, assignment: &Assignment) -> String {
    if assignment.role != Role::Server
        || cluster.servers_started
        || cluster.first_server.is_empty()
        || cluster.first_server == assignment.name
    {
        return String::new();
    }
    let host = inputs
        .assignments
        .iter()
        .find(|other| {
            other.cluster == assignment.cluster
                && other.role == Role::Server
                && other.name == cluster.first_server
        })
        .map(|first| first.host.as_str())
        .unwrap_or_default();
    policy::first_start_hold(&cluster.first_server, host)
}

/// What `inputs.host` must run, at `inputs.host.generation`.
pub fn render(inputs: &PlanInputs) -> v1::DesiredState {
    let mut components = Vec::new();
    let mut bootstrap_tasks = Vec::new();
    for (cluster_name, (cluster, secrets)) in &inputs.clusters {
        let tasks: Vec<_> = inputs
            .bootstrap
            .iter()
            .filter(|task| &task.cluster == cluster_name)
            .collect();
        let bootstrapped =
            tasks.len() == BootstrapTask::ALL.len() && tasks.iter().all(|task| task.done);
        if !bootstrapped {
            for task in tasks
                .iter()
                .filter(|task| task.host == inputs.host.name && !task.done)
            {
                let kind = match task.task {
                    BootstrapTask::Odb => BootstrapKind::Odb,
                    BootstrapTask::Cluster => BootstrapKind::Cluster,
                };
                bootstrap_tasks.push(v1::BootstrapTask {
                    cluster: cluster_name.clone(),
                    kind: kind as i32,
                    odb: Some(odb_message(cluster)),
                    secrets: Some(v1::ComponentSecrets {
                        odb_password: secrets.odb_password.clone(),
                        secret_key: secrets.secret_key.clone(),
                        admin_invoke_password: secrets.admin_invoke_password.clone(),
                        ..Default::default()
                    }),
                    dashboard_target: (kind == BootstrapKind::Cluster)
                        .then(|| dashboard_target(inputs, cluster_name))
                        .flatten(),
                    odb_epoch: cluster.odb_epoch,
                });
            }
        }
        let mine = inputs.assignments.iter().filter(|assignment| {
            &assignment.cluster == cluster_name && assignment.host == inputs.host.name
        });
        // A load balancer needs neither the ODB nor a secret: it runs before the bootstrap too.
        // While a cluster is rebuilt on an empty ODB, its other components stay, held: each runs
        // on as it was until the bootstrap ran again.
        let rebuilding = !bootstrapped && cluster.odb_epoch > 0;
        let rebuild_hold = rebuilding.then(|| {
            let host = tasks
                .iter()
                .find(|task| !task.done)
                .map(|task| task.host.as_str())
                .unwrap_or_default();
            policy::odb_rebuild_hold(host)
        });
        for assignment in mine.filter(|assignment| {
            bootstrapped || rebuilding || assignment.role == Role::LoadBalancer
        }) {
            // One server deploys what is missing at once and imports the configuration.
            let deploys = assignment.role == Role::Server && deploys_services(inputs, assignment);
            let config = inputs.config.get(cluster_name).filter(|_| deploys);
            let python = inputs
                .python
                .get(cluster_name)
                .filter(|_| assignment.role == Role::Server);
            components.push(v1::Component {
                role: assignment.role as i32,
                name: assignment.name.clone(),
                cluster: cluster_name.clone(),
                port: u32::from(assignment.port),
                odb: (assignment.role != Role::LoadBalancer).then(|| odb_message(cluster)),
                scheduler: (assignment.role == Role::Server)
                    .then(|| peer(inputs, assignment))
                    .flatten(),
                server: (assignment.role == Role::Scheduler)
                    .then(|| peer(inputs, assignment))
                    .flatten(),
                secrets: Some(secrets_for(assignment.role, secrets)),
                stopped: inputs.host.drained
                    && !(assignment.role == Role::Server && still_routed(inputs, assignment)),
                load_balancer: assignment.load_balancer.clone(),
                backends: backends(inputs, assignment),
                hold: match &rebuild_hold {
                    Some(reason) if assignment.role != Role::LoadBalancer => reason.clone(),
                    _ => hold(inputs, cluster, assignment),
                },
                odb_epoch: cluster.odb_epoch,
                services_revision: if assignment.role == Role::Server {
                    cluster.services_revision.clone()
                } else {
                    String::new()
                },
                services: if assignment.role == Role::Server {
                    inputs
                        .services
                        .get(cluster_name)
                        .cloned()
                        .unwrap_or_default()
                } else {
                    Vec::new()
                },
                deploys_services: deploys,
                // The configuration, with its secrets, only to the server that imports it.
                config_revision: if deploys {
                    cluster.config_revision.clone()
                } else {
                    String::new()
                },
                config_files: config.map(|(files, _)| files.clone()).unwrap_or_default(),
                config_env: config
                    .map(|(_, env)| env.clone().into_iter().collect())
                    .unwrap_or_default(),
                config_hold: if config.is_some() {
                    config_hold(inputs, cluster, assignment)
                } else {
                    String::new()
                },
                config_removals: inputs
                    .config_removals
                    .get(cluster_name)
                    .filter(|_| deploys)
                    .cloned()
                    .unwrap_or_default(),
                python_revision: if assignment.role == Role::Server {
                    cluster.python_revision.clone()
                } else {
                    String::new()
                },
                python_requirements: python.map(|(text, _)| text.clone()).unwrap_or_default(),
                python_wheels: python.map(|(_, wheels)| wheels.clone()).unwrap_or_default(),
                python_restart: if assignment.role == Role::Server {
                    restart_turn(inputs, cluster_name)
                        .iter()
                        .any(|server| server.name == assignment.name)
                } else {
                    role_turn(inputs, cluster, assignment)
                },
                restart_epoch: cluster.restart_epoch_of(assignment.role),
                server_settings: if assignment.role == Role::Server {
                    cluster.server_settings.clone().into_iter().collect()
                } else {
                    Default::default()
                },
                // The scheduler's and dashboards' own; a server's are `server_settings`.
                settings: if assignment.role == Role::Server {
                    Default::default()
                } else {
                    cluster.settings_of(assignment.role).into_iter().collect()
                },
                // The user-config files, secrets, only to the servers that read them.
                user_conf_revision: if assignment.role == Role::Server {
                    cluster.user_conf_revision.clone()
                } else {
                    String::new()
                },
                user_conf: if assignment.role == Role::Server {
                    inputs
                        .user_conf
                        .get(cluster_name)
                        .cloned()
                        .unwrap_or_default()
                } else {
                    Vec::new()
                },
            });
        }
    }
    v1::DesiredState {
        host_id: inputs.host.id.clone(),
        generation: inputs.host.generation,
        components,
        bootstrap_tasks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    use crate::domain::{BootstrapState, Host, HostState, OdbSettings};

    fn host(name: &str, address: &str) -> Host {
        Host {
            id: format!("id-{name}"),
            name: name.to_owned(),
            advertise_address: address.to_owned(),
            labels: Default::default(),
            cluster: String::new(),
            admitted: Vec::new(),
            state: HostState::Up,
            enrolled_at_ms: 0,
            last_seen_ms: Some(0),
            generation: 7,
            applied_generation: 7,
            drained: false,
            heartbeat_interval_ms: 0,
            zato_installs: Vec::new(),
        }
    }

    fn assignment(role: Role, name: &str, host: &str, port: u16) -> Assignment {
        Assignment {
            cluster: "prod".to_owned(),
            role,
            name: name.to_owned(),
            host: host.to_owned(),
            port,
            created_at_ms: 0,
            load_balancer: (role == Role::LoadBalancer).then(v1::LoadBalancerSettings::default),
            status: None,
        }
    }

    /// The cluster `prod` bootstrapped, with a scheduler on `admin`, servers on `app-1` and
    /// `app-2` and a load balancer on `lb`; planned for `for_host`.
    fn inputs(for_host: &str) -> PlanInputs {
        let hosts: BTreeMap<String, Host> = [
            ("admin", "10.0.0.2"),
            ("lb", "10.0.0.3"),
            ("app-1", "10.0.0.4"),
            ("app-2", "10.0.0.5"),
        ]
        .into_iter()
        .map(|(name, address)| (name.to_owned(), host(name, address)))
        .collect();
        let cluster = Cluster {
            id: "c1".to_owned(),
            name: "prod".to_owned(),
            description: String::new(),
            odb: OdbSettings {
                odb_type: v1::OdbType::Postgresql,
                host: "10.0.0.9".to_owned(),
                port: 5432,
                user: "zato".to_owned(),
                db_name: "zato".to_owned(),
                postgresql_schema: String::new(),
            },
            has_odb_password: true,
            created_at_ms: 0,
            scheduler_target: "server2".to_owned(),
            servers_started: true,
            first_server: String::new(),
            services_revision: "rev-1".to_owned(),
            config_revision: "config-1".to_owned(),
            python_revision: String::new(),
            user_conf_revision: "user-conf-1".to_owned(),
            odb_epoch: 0,
            odb_empty: false,
            restart_epoch: 0,
            rollout_paused: false,
            server_settings: Default::default(),
            rollout_pause_reason: String::new(),
            rollout_revert_reason: String::new(),
            rollout_strategy: Default::default(),
            restart_epoch_same: None,
            role_restart_epochs: BTreeMap::new(),
            role_settings: BTreeMap::new(),
        };
        let secrets = ClusterSecrets {
            odb_password: "odb-password".to_owned(),
            secret_key: "secret-key".to_owned(),
            jwt_secret: "jwt-secret".to_owned(),
            admin_invoke_password: "admin-invoke".to_owned(),
        };
        let bootstrap = BootstrapTask::ALL
            .into_iter()
            .map(|task| BootstrapState {
                cluster: "prod".to_owned(),
                task,
                host: "admin".to_owned(),
                done: true,
                last_error: String::new(),
            })
            .collect();
        PlanInputs {
            host: hosts[for_host].clone(),
            assignments: vec![
                assignment(Role::Scheduler, "scheduler", "admin", 31530),
                assignment(Role::LoadBalancer, "load-balancer", "lb", 11223),
                assignment(Role::Server, "server1", "app-1", 17010),
                assignment(Role::Server, "server2", "app-2", 17010),
            ],
            hosts,
            clusters: BTreeMap::from([("prod".to_owned(), (cluster, secrets))]),
            services: BTreeMap::from([(
                "prod".to_owned(),
                vec![v1::ServiceFile {
                    name: "orders.py".to_owned(),
                    sha256: "0".repeat(64),
                    content: "x = 1\n".to_owned(),
                }],
            )]),
            config: BTreeMap::from([(
                "prod".to_owned(),
                (
                    vec![v1::EnmasseFile {
                        name: "api.yaml".to_owned(),
                        sha256: "1".repeat(64),
                        content: "x: 1\n".to_owned(),
                    }],
                    BTreeMap::from([("ORDERS_PASSWORD".to_owned(), "s3cret".to_owned())]),
                ),
            )]),
            config_removals: BTreeMap::from([(
                "prod".to_owned(),
                vec![v1::EnmasseObject {
                    section: "channel_rest".to_owned(),
                    name: "orders.old".to_owned(),
                    kind: String::new(),
                }],
            )]),
            python: BTreeMap::new(),
            user_conf: BTreeMap::from([(
                "prod".to_owned(),
                vec![v1::UserConfFile {
                    name: "partners.ini".to_owned(),
                    content: "[crm]\npassword = s3cret-too\n".to_owned(),
                }],
            )]),
            bootstrap,
        }
    }

    #[test]
    fn the_configuration_and_its_secrets_go_to_the_importing_server_only() {
        let importer = &render(&inputs("app-1")).components[0];
        assert_eq!(importer.config_revision, "config-1");
        assert_eq!(importer.config_files.len(), 1);
        assert_eq!(importer.config_env["ORDERS_PASSWORD"], "s3cret");
        assert_eq!(importer.config_removals[0].name, "orders.old");
        for host in ["app-2", "admin", "lb"] {
            for other in render(&inputs(host)).components {
                assert!(
                    other.config_revision.is_empty()
                        && other.config_files.is_empty()
                        && other.config_env.is_empty()
                        && other.config_removals.is_empty(),
                    "{other:?}"
                );
            }
        }
    }

    #[test]
    fn the_importing_server_waits_while_another_server_is_on_its_way_up() {
        let server2 = |state: &str, healthy: bool, odb_epoch: u64| crate::domain::ComponentStatus {
            cluster: "prod".to_owned(),
            role: Role::Server,
            name: "server2".to_owned(),
            state: v1::ComponentState::from_word(state).unwrap(),
            healthy,
            odb_epoch,
            ..Default::default()
        };
        let hold = |status: Option<crate::domain::ComponentStatus>,
                    change: &dyn Fn(&mut PlanInputs)| {
            let mut inputs = inputs("app-1");
            inputs.assignments[3].status = status;
            change(&mut inputs);
            let importer = render(&inputs).components.remove(0);
            assert_eq!(importer.config_revision, "config-1");
            importer.config_hold
        };
        let unchanged = |_: &mut PlanInputs| {};
        assert_eq!(
            hold(None, &unchanged),
            "waiting for server2 to start: a server starting during an import misses part of it"
        );
        for state in ["creating", "waiting", "starting", "restarting"] {
            assert_ne!(
                hold(Some(server2(state, false, 0)), &unchanged),
                "",
                "{state}"
            );
        }
        assert_eq!(hold(Some(server2("running", true, 0)), &unchanged), "");
        for state in ["failed", "unhealthy"] {
            assert_eq!(
                hold(Some(server2(state, false, 0)), &unchanged),
                "",
                "a {state} server does not hold it"
            );
        }
        let drained = |inputs: &mut PlanInputs| {
            inputs.hosts.get_mut("app-2").unwrap().drained = true;
        };
        assert_eq!(hold(None, &drained), "", "nor one on a drained host");
        let rebuilt = |inputs: &mut PlanInputs| {
            inputs.clusters.get_mut("prod").unwrap().0.odb_epoch = 1;
        };
        assert_ne!(
            hold(Some(server2("running", true, 0)), &rebuilt),
            "",
            "a server still of the ODB before the rebuild is created again soon"
        );
        assert_eq!(hold(Some(server2("running", true, 1)), &rebuilt), "");
    }

    #[test]
    fn the_user_config_files_go_to_every_server_and_to_nothing_else() {
        for host in ["app-1", "app-2"] {
            let server = &render(&inputs(host)).components[0];
            assert_eq!(server.user_conf_revision, "user-conf-1");
            assert_eq!(server.user_conf.len(), 1, "{host}");
        }
        for host in ["admin", "lb"] {
            for other in render(&inputs(host)).components {
                assert!(
                    other.user_conf_revision.is_empty() && other.user_conf.is_empty(),
                    "{other:?}"
                );
            }
        }
    }

    #[test]
    fn a_server_without_the_services_others_run_is_kept_out_of_rotation() {
        let drains = |inputs: &PlanInputs| -> Vec<(String, bool)> {
            render(inputs).components[0]
                .backends
                .iter()
                .map(|backend| (backend.name.clone(), backend.drain))
                .collect()
        };
        let reported = |revision: &str| {
            Some(crate::domain::ComponentStatus {
                cluster: "prod".to_owned(),
                role: Role::Server,
                name: String::new(),
                state: v1::ComponentState::Running,
                healthy: true,
                last_error: String::new(),
                restarts: 0,
                backends: Vec::new(),
                services_revision: revision.to_owned(),
                config_revision: String::new(),
                python_revision: String::new(),
                python_installed: String::new(),
                user_conf_revision: String::new(),
                odb_epoch: 0,
                odb_empty: false,
                restart_epoch: 0,
                rollout_held_since: None,
                rolls: false,
            })
        };
        let mut balancer = inputs("lb");
        assert_eq!(
            drains(&balancer),
            [("server1".into(), false), ("server2".into(), false)],
            "no server runs the services yet: all in rotation"
        );
        balancer.assignments[2].status = reported("rev-1");
        balancer.assignments[3].status = reported("");
        assert_eq!(
            drains(&balancer),
            [("server1".into(), false), ("server2".into(), true)],
            "server2 lacks what server1 runs"
        );
        balancer.assignments[3].status = reported("rev-0");
        assert_eq!(
            drains(&balancer),
            [("server1".into(), false), ("server2".into(), false)],
            "a server with an older revision keeps serving it during a deployment"
        );
        balancer
            .clusters
            .get_mut("prod")
            .unwrap()
            .0
            .services_revision = String::new();
        balancer.assignments[3].status = reported("");
        assert!(
            drains(&balancer).iter().all(|(_, drain)| !drain),
            "no services: no gate"
        );
    }

    #[test]
    fn the_services_go_to_the_servers_only() {
        let server = &render(&inputs("app-1")).components[0];
        assert_eq!(server.services_revision, "rev-1");
        assert_eq!(server.services.len(), 1);
        assert_eq!(server.services[0].name, "orders.py");
        assert!(
            server.deploys_services,
            "server1 is the first server by name"
        );
        assert!(!render(&inputs("app-2")).components[0].deploys_services);
        for other in render(&inputs("admin"))
            .components
            .iter()
            .chain(&render(&inputs("lb")).components)
        {
            assert!(
                other.services.is_empty() && other.services_revision.is_empty(),
                "{other:?}"
            );
        }
    }

    #[test]
    fn on_a_fresh_odb_only_the_first_server_is_created_until_one_is_healthy() {
        let fresh = |for_host: &str| {
            let mut inputs = inputs(for_host);
            let cluster = &mut inputs.clusters.get_mut("prod").unwrap().0;
            cluster.servers_started = false;
            cluster.first_server = "server1".to_owned();
            inputs
        };
        let holds = |inputs: &PlanInputs| -> Vec<(String, String)> {
            render(inputs)
                .components
                .into_iter()
                .map(|component| (component.name, component.hold))
                .collect()
        };
        assert_eq!(holds(&fresh("app-1")), [("server1".into(), String::new())]);
        let [(name, hold)] = holds(&fresh("app-2")).try_into().unwrap();
        assert_eq!(name, "server2");
        assert!(
            hold.starts_with("waiting for server server1 on host app-1 to start first"),
            "{hold}"
        );
        // Nothing else waits: the scheduler has no server address yet anyway.
        assert!(
            holds(&fresh("admin"))
                .iter()
                .all(|(_, hold)| hold.is_empty())
        );
        // The store chose server2 (app-1 went down): it starts first.
        let mut moved = fresh("app-2");
        moved.clusters.get_mut("prod").unwrap().0.first_server = "server2".to_owned();
        assert_eq!(holds(&moved), [("server2".into(), String::new())]);
        // Once a server was healthy, no server waits.
        assert_eq!(holds(&inputs("app-2")), [("server2".into(), String::new())]);
    }

    #[test]
    fn a_server_gets_the_scheduler_and_only_its_roles_secrets() {
        let plan = render(&inputs("app-1"));
        assert_eq!((plan.host_id.as_str(), plan.generation), ("id-app-1", 7));
        let [server] = plan.components.as_slice() else {
            panic!("{plan:?}")
        };
        assert_eq!(server.name, "server1");
        let scheduler = server.scheduler.as_ref().unwrap();
        assert_eq!(
            (scheduler.host.as_str(), scheduler.port),
            ("10.0.0.2", 31530)
        );
        let secrets = server.secrets.as_ref().unwrap();
        assert_eq!(secrets.odb_password, "odb-password");
        assert_eq!(
            secrets.admin_invoke_password, "admin-invoke",
            "its agent deploys the cluster's services through the admin channel"
        );
        assert!(secrets.dashboard_password.is_empty());
        assert!(
            plan.bootstrap_tasks.is_empty(),
            "the cluster is bootstrapped"
        );
    }

    #[test]
    fn the_scheduler_calls_its_target_server() {
        let plan = render(&inputs("admin"));
        let scheduler = &plan.components[0];
        let server = scheduler.server.as_ref().unwrap();
        assert_eq!((server.host.as_str(), server.port), ("10.0.0.5", 17010));
    }

    #[test]
    fn a_load_balancer_gets_every_server_and_no_secret() {
        let plan = render(&inputs("lb"));
        let balancer = &plan.components[0];
        let backends: Vec<(&str, &str)> = balancer
            .backends
            .iter()
            .map(|backend| (backend.name.as_str(), backend.address.as_str()))
            .collect();
        assert_eq!(backends, [("server1", "10.0.0.4"), ("server2", "10.0.0.5")]);
        assert_eq!(balancer.secrets, Some(v1::ComponentSecrets::default()));
        assert!(balancer.odb.is_none());
    }

    #[test]
    fn before_the_bootstrap_only_the_load_balancer_runs() {
        let mut unbootstrapped = inputs("lb");
        unbootstrapped.bootstrap[1].done = false;
        assert_eq!(render(&unbootstrapped).components.len(), 1);
        let mut server_host = inputs("app-1");
        server_host.bootstrap[1].done = false;
        assert!(render(&server_host).components.is_empty());
    }

    #[test]
    fn a_drained_hosts_server_stops_once_no_load_balancer_routes_to_it() {
        let mut drained = inputs("app-1");
        drained.host.drained = true;
        // The load balancer still sends it requests: it runs on until they stop.
        drained.assignments[1].status = Some(crate::domain::ComponentStatus {
            cluster: "prod".to_owned(),
            role: Role::LoadBalancer,
            name: "load-balancer".to_owned(),
            state: v1::ComponentState::Running,
            healthy: true,
            last_error: String::new(),
            restarts: 0,
            backends: vec![v1::BackendServerState {
                name: "server1".to_owned(),
                state: "UP".to_owned(),
                status: v1::BackendStatus::Up as i32,
                ..Default::default()
            }],
            services_revision: String::new(),
            config_revision: String::new(),
            python_revision: String::new(),
            python_installed: String::new(),
            user_conf_revision: String::new(),
            odb_epoch: 0,
            odb_empty: false,
            restart_epoch: 0,
            rollout_held_since: None,
            rolls: false,
        });
        assert!(!render(&drained).components[0].stopped);
        drained.assignments[1].status = None;
        assert!(render(&drained).components[0].stopped);
    }

    /// [`inputs`] with a third server (on `app-3`), a rolling restart asked for (epoch 1) with
    /// `max_unavailable` servers at once, and `reports` for server1-3 as (state, healthy), each
    /// UP in the load balancer while healthy, running under epoch 0.
    fn rolling_restart(
        max_unavailable: u32,
        reports: [(v1::ComponentState, bool); 3],
        for_host: &str,
    ) -> PlanInputs {
        let mut world = inputs(for_host);
        world
            .hosts
            .insert("app-3".to_owned(), host("app-3", "10.0.0.6"));
        if for_host == "app-3" {
            world.host = world.hosts["app-3"].clone();
        }
        world
            .assignments
            .push(assignment(Role::Server, "server3", "app-3", 17010));
        let (cluster, _) = world.clusters.get_mut("prod").unwrap();
        cluster.restart_epoch = 1;
        cluster.rollout_strategy.max_unavailable = max_unavailable;
        let mut backends = Vec::new();
        for (index, (state, healthy)) in reports.into_iter().enumerate() {
            let name = format!("server{}", index + 1);
            let word = if healthy { "UP" } else { "DOWN" };
            backends.push(v1::BackendServerState {
                name: name.clone(),
                state: word.to_owned(),
                status: v1::BackendStatus::from_haproxy(word) as i32,
                ..Default::default()
            });
            world.assignments[2 + index].status = Some(crate::domain::ComponentStatus {
                cluster: "prod".to_owned(),
                role: Role::Server,
                name,
                state,
                healthy,
                services_revision: "rev-1".to_owned(),
                ..Default::default()
            });
        }
        world.assignments[1].status = Some(crate::domain::ComponentStatus {
            cluster: "prod".to_owned(),
            role: Role::LoadBalancer,
            name: "load-balancer".to_owned(),
            state: v1::ComponentState::Running,
            healthy: true,
            backends,
            ..Default::default()
        });
        world
    }

    /// The servers a rolling restart drains (those given the turn), and those told to restart.
    fn turn_of(world: &PlanInputs) -> (Vec<String>, Vec<String>) {
        let drained = render(&PlanInputs {
            host: world.hosts["lb"].clone(),
            ..world.clone()
        })
        .components[0]
            .backends
            .iter()
            .filter(|backend| backend.drain)
            .map(|backend| backend.name.clone())
            .collect();
        (drained, restarting_now(world))
    }

    /// Every component told to restart now (`python_restart`), on every host.
    fn restarting_now(world: &PlanInputs) -> Vec<String> {
        ["admin", "lb", "app-1", "app-2", "app-3"]
            .into_iter()
            .flat_map(|host| {
                render(&PlanInputs {
                    host: world.hosts[host].clone(),
                    ..world.clone()
                })
                .components
            })
            .filter(|component| component.python_restart)
            .map(|component| component.name)
            .collect()
    }

    #[test]
    fn a_rolling_restart_of_every_role_goes_in_zatos_order() {
        use v1::ComponentState::Running;
        let mut world = rolling_restart(1, [(Running, true); 3], "admin");
        world
            .assignments
            .push(assignment(Role::WebAdmin, "web-admin", "admin", 8183));
        let (cluster, _) = world.clusters.get_mut("prod").unwrap();
        cluster.role_restart_epochs = BTreeMap::from([
            ("web-admin".to_owned(), 1),
            ("load-balancer".to_owned(), 1),
            ("scheduler".to_owned(), 1),
        ]);
        let running = |role: Role, name: &str, restart_epoch: u64| crate::domain::ComponentStatus {
            cluster: "prod".to_owned(),
            role,
            name: name.to_owned(),
            state: Running,
            healthy: true,
            restart_epoch,
            rolls: true,
            ..Default::default()
        };
        let at = |world: &PlanInputs, name: &str| {
            world
                .assignments
                .iter()
                .position(|assignment| assignment.name == name)
                .unwrap()
        };
        let restarted = |world: &mut PlanInputs, name: &str| {
            let index = at(world, name);
            let status = world.assignments[index].status.as_mut().unwrap();
            status.restart_epoch = 1;
        };
        for (role, name) in [
            (Role::Scheduler, "scheduler"),
            (Role::WebAdmin, "web-admin"),
        ] {
            let index = at(&world, name);
            world.assignments[index].status = Some(running(role, name, 0));
        }
        let balancer = at(&world, "load-balancer");
        world.assignments[balancer].status.as_mut().unwrap().rolls = true;

        // The dashboard first; the servers wait for it.
        assert_eq!(restarting_now(&world), ["web-admin"]);
        let desired = render(&world);
        let dashboard = desired
            .components
            .iter()
            .find(|component| component.name == "web-admin")
            .unwrap();
        assert_eq!(dashboard.restart_epoch, 1, "its role's epoch");
        // A paused turn holds every role.
        world.clusters.get_mut("prod").unwrap().0.rollout_paused = true;
        assert!(restarting_now(&world).is_empty());
        world.clusters.get_mut("prod").unwrap().0.rollout_paused = false;

        // Then the servers, one at a time; the load balancer and the scheduler wait for them.
        restarted(&mut world, "web-admin");
        assert_eq!(restarting_now(&world), ["server1"]);
        for server in ["server1", "server2"] {
            restarted(&mut world, server);
        }
        assert_eq!(restarting_now(&world), ["server3"]);
        restarted(&mut world, "server3");
        // The last server on its way up: the load balancer waits for it to boot.
        let last = at(&world, "server3");
        let status = world.assignments[last].status.as_mut().unwrap();
        (status.state, status.healthy) = (v1::ComponentState::Starting, false);
        assert!(restarting_now(&world).is_empty());
        let status = world.assignments[last].status.as_mut().unwrap();
        (status.state, status.healthy) = (Running, true);

        // Then the load balancer (HAProxy reloaded), then the scheduler, then nobody.
        assert_eq!(restarting_now(&world), ["load-balancer"]);
        restarted(&mut world, "load-balancer");
        assert_eq!(restarting_now(&world), ["scheduler"]);
        restarted(&mut world, "scheduler");
        assert!(restarting_now(&world).is_empty());

        // A dashboard whose agent does not roll it is left out: it holds nobody.
        let mut older = rolling_restart(1, [(Running, true); 3], "admin");
        older
            .assignments
            .push(assignment(Role::WebAdmin, "web-admin", "admin", 8183));
        older
            .clusters
            .get_mut("prod")
            .unwrap()
            .0
            .role_restart_epochs = BTreeMap::from([("web-admin".to_owned(), 1)]);
        let index = at(&older, "web-admin");
        older.assignments[index].status = Some(crate::domain::ComponentStatus {
            rolls: false,
            ..running(Role::WebAdmin, "web-admin", 0)
        });
        assert_eq!(restarting_now(&older), ["server1"]);
    }

    #[test]
    fn servers_restart_by_name_while_those_out_stay_within_max_unavailable() {
        use v1::ComponentState::{Running, Starting};
        let names = |list: &[&str]| list.iter().map(|name| name.to_string()).collect::<Vec<_>>();
        let both = |list: &[&str]| (names(list), names(list));
        // One at a time (the default), two at a time: the first by name.
        let all_up = [(Running, true); 3];
        assert_eq!(
            turn_of(&rolling_restart(1, all_up, "lb")),
            both(&["server1"])
        );
        assert_eq!(
            turn_of(&rolling_restart(2, all_up, "lb")),
            both(&["server1", "server2"])
        );
        // server1 is on its way back (restarted, not healthy yet): it is out, and counts.
        let mut first_back = rolling_restart(
            2,
            [(Starting, false), (Running, true), (Running, true)],
            "lb",
        );
        first_back.assignments[2]
            .status
            .as_mut()
            .unwrap()
            .restart_epoch = 1;
        assert_eq!(turn_of(&first_back), both(&["server2"]));
        let (cluster, _) = first_back.clusters.get_mut("prod").unwrap();
        cluster.rollout_strategy.max_unavailable = 1;
        assert_eq!(turn_of(&first_back), both(&[]));
        // server2 is due and not answering: it is out already, so its restart costs nothing,
        // and it does not let server1 go too.
        let broken = rolling_restart(
            1,
            [(Running, true), (Running, false), (Running, true)],
            "lb",
        );
        assert_eq!(turn_of(&broken), both(&["server2"]));
        let broken = rolling_restart(
            2,
            [(Running, true), (Running, false), (Running, true)],
            "lb",
        );
        assert_eq!(turn_of(&broken), both(&["server1", "server2"]));
        // Drained for its turn, server1 keeps it.
        let mut drained = rolling_restart(1, all_up, "lb");
        let backend_of = |world: &mut PlanInputs, index: usize, word: &str| {
            let backend = &mut world.assignments[1].status.as_mut().unwrap().backends[index];
            backend.state = word.to_owned();
            backend.status = v1::BackendStatus::from_haproxy(word) as i32;
        };
        backend_of(&mut drained, 0, "DRAIN");
        assert_eq!(turn_of(&drained), both(&["server1"]));
        // Healthy, but the load balancer's last report has server2 and server3 still rising:
        // they only look out, and count; nobody restarts until it has them back.
        let mut rising = rolling_restart(1, all_up, "lb");
        backend_of(&mut rising, 1, "DOWN 1/2");
        backend_of(&mut rising, 2, "DOWN 1/2");
        assert_eq!(turn_of(&rising), both(&[]));
        // Paused: nobody.
        let mut paused = rolling_restart(3, all_up, "lb");
        paused.clusters.get_mut("prod").unwrap().0.rollout_paused = true;
        assert_eq!(turn_of(&paused), both(&[]));
    }

    /// The facts of the cluster of [`inputs`] that the property below varies.
    #[derive(Debug, Clone)]
    struct Facts {
        bootstrapped: bool,
        has_services: bool,
        has_config: bool,
        python: bool,
        servers_started: bool,
        first_server: usize,
        scheduler_target: usize,
        drained: [bool; 4],
        /// Each server's report.
        servers: [Option<Reported>; 2],
        /// The load balancer's report: healthy, and each server's backend status.
        balancer: Option<(bool, [usize; 2])>,
        odb_epoch: u64,
        restart_epoch: u64,
        rollout_paused: bool,
        max_unavailable: u32,
    }

    /// A server's report: state, healthy, services found, Python installed, ODB epoch, restart
    /// epoch.
    type Reported = (i32, bool, bool, bool, u64, u64);

    /// A change of those facts, as the store meets it.
    #[derive(Debug, Clone)]
    enum Fact {
        ServerAssigned,
        ServerRemoved,
        WebAdminAssigned,
        Services,
        Config,
        Python,
        UserConf,
        SchedulerTarget,
        FirstServer,
        ServerReport(usize, Option<Reported>),
        BalancerReport(Option<(bool, [usize; 2])>),
        HostAddress,
        HostDown(usize),
        RollingRestart,
        RolloutPaused,
    }

    const HOSTS: [&str; 4] = ["admin", "lb", "app-1", "app-2"];
    const BACKEND_WORDS: [&str; 4] = ["UP", "DOWN", "DRAIN", "MAINT"];

    fn report() -> impl proptest::strategy::Strategy<Value = Option<Reported>> {
        use proptest::prelude::*;
        proptest::option::of((
            0..9i32,
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            0..2u64,
            0..3u64,
        ))
    }

    fn balancer_report() -> impl proptest::strategy::Strategy<Value = Option<(bool, [usize; 2])>> {
        use proptest::prelude::*;
        proptest::option::of((any::<bool>(), [0..4usize, 0..4usize]))
    }

    fn facts() -> impl proptest::strategy::Strategy<Value = Facts> {
        use proptest::prelude::*;
        (
            (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
            (0..2usize, 0..2usize, [any::<bool>(); 4], any::<bool>()),
            [report(), report()],
            balancer_report(),
            (0..2u64, 0..3u64, any::<bool>(), 1..3u32),
        )
            .prop_map(
                |(
                    (bootstrapped, has_config, python, servers_started),
                    (first_server, scheduler_target, drained, has_services),
                    servers,
                    balancer,
                    (odb_epoch, restart_epoch, rollout_paused, max_unavailable),
                )| Facts {
                    bootstrapped,
                    has_services,
                    has_config,
                    python,
                    servers_started,
                    first_server,
                    scheduler_target,
                    drained,
                    servers,
                    balancer,
                    odb_epoch,
                    restart_epoch,
                    rollout_paused,
                    max_unavailable,
                },
            )
    }

    fn fact() -> impl proptest::strategy::Strategy<Value = Fact> {
        use proptest::prelude::*;
        prop_oneof![
            Just(Fact::ServerAssigned),
            Just(Fact::ServerRemoved),
            Just(Fact::WebAdminAssigned),
            Just(Fact::Services),
            Just(Fact::Config),
            Just(Fact::Python),
            Just(Fact::UserConf),
            Just(Fact::SchedulerTarget),
            Just(Fact::FirstServer),
            (0..2usize, report()).prop_map(|(server, report)| Fact::ServerReport(server, report)),
            balancer_report().prop_map(Fact::BalancerReport),
            Just(Fact::HostAddress),
            (0..4usize).prop_map(Fact::HostDown),
            Just(Fact::RollingRestart),
            Just(Fact::RolloutPaused),
        ]
    }

    /// The whole cluster under `facts`, planned for `admin` (the host changes per render).
    fn world(facts: &Facts) -> PlanInputs {
        let mut world = inputs("admin");
        let (cluster, _) = world.clusters.get_mut("prod").unwrap();
        cluster.servers_started = facts.servers_started;
        cluster.first_server = ["server1", "server2"][facts.first_server].to_owned();
        cluster.scheduler_target = ["server1", "server2"][facts.scheduler_target].to_owned();
        cluster.odb_epoch = facts.odb_epoch;
        cluster.restart_epoch = facts.restart_epoch;
        cluster.rollout_paused = facts.rollout_paused;
        cluster.rollout_strategy.max_unavailable = facts.max_unavailable;
        if !facts.has_services {
            cluster.services_revision.clear();
            world.services.clear();
        }
        if !facts.has_config {
            cluster.config_revision.clear();
            world.config.clear();
            world.config_removals.clear();
        }
        if facts.python {
            cluster.python_revision = "py-1".to_owned();
            world
                .python
                .insert("prod".to_owned(), ("x==1\n".to_owned(), Vec::new()));
        }
        if !facts.bootstrapped {
            world.bootstrap[1].done = false;
        }
        for (name, drained) in HOSTS.iter().zip(facts.drained) {
            world.hosts.get_mut(*name).unwrap().drained = drained;
        }
        for (index, reported) in facts.servers.iter().enumerate() {
            world.assignments[2 + index].status = server_report(index, *reported);
        }
        world.assignments[1].status = balancer_status(facts.balancer);
        world
    }

    fn server_report(
        index: usize,
        reported: Option<Reported>,
    ) -> Option<crate::domain::ComponentStatus> {
        reported.map(
            |(state, healthy, services, python, odb_epoch, restart_epoch)| {
                crate::domain::ComponentStatus {
                    cluster: "prod".to_owned(),
                    role: Role::Server,
                    name: format!("server{}", index + 1),
                    state: v1::ComponentState::try_from(state).unwrap(),
                    healthy,
                    services_revision: if services { "rev-1" } else { "" }.to_owned(),
                    python_revision: if python { "py-1" } else { "" }.to_owned(),
                    python_installed: if python { "py-1" } else { "" }.to_owned(),
                    odb_epoch,
                    restart_epoch,
                    ..Default::default()
                }
            },
        )
    }

    fn balancer_status(
        reported: Option<(bool, [usize; 2])>,
    ) -> Option<crate::domain::ComponentStatus> {
        reported.map(|(healthy, backends)| crate::domain::ComponentStatus {
            cluster: "prod".to_owned(),
            role: Role::LoadBalancer,
            name: "load-balancer".to_owned(),
            state: v1::ComponentState::Running,
            healthy,
            backends: backends
                .iter()
                .enumerate()
                .map(|(index, word)| v1::BackendServerState {
                    name: format!("server{}", index + 1),
                    state: BACKEND_WORDS[*word].to_owned(),
                    status: v1::BackendStatus::from_haproxy(BACKEND_WORDS[*word]) as i32,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    /// The cluster's server that is not `name`.
    fn other_server(name: &str) -> String {
        if name == "server1" {
            "server2"
        } else {
            "server1"
        }
        .to_owned()
    }

    /// `world` after `fact`, and the change the store bumps for it.
    fn changed(world: &PlanInputs, fact: &Fact) -> (PlanInputs, Vec<policy::Change>) {
        let mut after = world.clone();
        let (cluster, _) = after.clusters.get_mut("prod").unwrap();
        let change = match fact {
            Fact::ServerAssigned => {
                after
                    .hosts
                    .insert("app-3".to_owned(), host("app-3", "10.0.0.6"));
                after
                    .assignments
                    .push(assignment(Role::Server, "server3", "app-3", 17010));
                vec![policy::Change::Server {
                    host: "app-3".to_owned(),
                }]
            }
            Fact::ServerRemoved => {
                after.assignments.remove(3);
                vec![policy::Change::Server {
                    host: "app-2".to_owned(),
                }]
            }
            Fact::WebAdminAssigned => {
                after
                    .assignments
                    .push(assignment(Role::WebAdmin, "web-admin", "admin", 8183));
                vec![policy::Change::Cluster]
            }
            Fact::Services => {
                let had_none = cluster.services_revision.is_empty();
                cluster.services_revision = "rev-2".to_owned();
                after.services.insert(
                    "prod".to_owned(),
                    vec![v1::ServiceFile {
                        name: "orders.py".to_owned(),
                        sha256: "2".repeat(64),
                        content: "x = 2\n".to_owned(),
                    }],
                );
                let mut changes = vec![policy::Change::Servers];
                if had_none {
                    changes.push(policy::Change::Balancers);
                }
                changes
            }
            Fact::Config => {
                cluster.config_revision = "config-2".to_owned();
                after.config.insert(
                    "prod".to_owned(),
                    (
                        vec![v1::EnmasseFile {
                            name: "api.yaml".to_owned(),
                            sha256: "2".repeat(64),
                            content: "x: 2\n".to_owned(),
                        }],
                        BTreeMap::new(),
                    ),
                );
                vec![policy::Change::Servers]
            }
            Fact::Python => {
                cluster.python_revision = "py-2".to_owned();
                after
                    .python
                    .insert("prod".to_owned(), ("x==2\n".to_owned(), Vec::new()));
                vec![
                    policy::Change::Servers,
                    policy::Change::Restarts { was_due: false },
                ]
            }
            Fact::UserConf => {
                cluster.user_conf_revision = "user-conf-2".to_owned();
                vec![policy::Change::Servers]
            }
            Fact::SchedulerTarget => {
                cluster.scheduler_target = other_server(&cluster.scheduler_target);
                vec![policy::Change::Cluster]
            }
            Fact::FirstServer => {
                cluster.servers_started = !cluster.servers_started;
                cluster.first_server = other_server(&cluster.first_server);
                vec![policy::Change::Servers]
            }
            Fact::ServerReport(index, reported) => {
                after.assignments[2 + index].status = server_report(*index, *reported);
                let before = world.assignments[2 + index]
                    .status
                    .as_ref()
                    .map(policy::ComponentReport::from);
                let now = after.assignments[2 + index]
                    .status
                    .as_ref()
                    .map(policy::ComponentReport::from);
                policy::report_changes(
                    Role::Server,
                    before.as_ref(),
                    now.as_ref(),
                    false,
                    policy::RestartGoal::of(cluster),
                )
            }
            Fact::BalancerReport(reported) => {
                after.assignments[1].status = balancer_status(*reported);
                let before = world.assignments[1].status.as_ref();
                let now = after.assignments[1].status.as_ref();
                let backends = |status: Option<&crate::domain::ComponentStatus>| {
                    status
                        .map(|status| {
                            status
                                .backends
                                .iter()
                                .map(|backend| (backend.name.clone(), backend.state.clone()))
                                .collect::<Vec<_>>()
                        })
                        .unwrap_or_default()
                };
                policy::report_changes(
                    Role::LoadBalancer,
                    before.map(policy::ComponentReport::from).as_ref(),
                    now.map(policy::ComponentReport::from).as_ref(),
                    backends(before) != backends(now),
                    policy::RestartGoal::of(cluster),
                )
            }
            Fact::HostAddress => {
                after.hosts.get_mut("app-1").unwrap().advertise_address = "10.0.0.40".to_owned();
                vec![policy::Change::Cluster]
            }
            Fact::HostDown(index) => {
                after.hosts.get_mut(HOSTS[*index]).unwrap().state = HostState::Down;
                vec![policy::Change::HostState]
            }
            Fact::RolloutPaused => {
                cluster.rollout_paused = !cluster.rollout_paused;
                vec![policy::Change::Restarts { was_due: false }]
            }
            Fact::RollingRestart => {
                cluster.restart_epoch += 1;
                vec![
                    policy::Change::Servers,
                    policy::Change::Restarts { was_due: false },
                ]
            }
        };
        (after, change)
    }

    /// The store's re-planning of the cluster after a change of its servers or their health
    /// (`replan_cluster`): which server starts first, where the scheduler points; applied to
    /// `world`, with the changes the store bumps for it.
    fn replan(world: &mut PlanInputs) -> Vec<policy::Change> {
        let hosts = world.hosts.clone();
        let assignments = world.assignments.clone();
        let (cluster, _) = world.clusters.get_mut("prod").unwrap();
        let servers: Vec<policy::ServerCandidate> = assignments
            .iter()
            .filter(|assignment| assignment.role == Role::Server)
            .map(|server| policy::ServerCandidate {
                name: server.name.clone(),
                host: server.host.clone(),
                host_up: hosts
                    .get(&server.host)
                    .is_some_and(|host| host.state == HostState::Up),
                host_drained: hosts.get(&server.host).is_some_and(|host| host.drained),
                // As `replan_cluster` has it, of what these facts hold: one restarting.
                rollout_restart: server
                    .status
                    .as_ref()
                    .is_some_and(|status| status.state == v1::ComponentState::Restarting),
                healthy: server.status.as_ref().is_some_and(|status| {
                    // As `replan_cluster` counts health: under the current ODB generation and,
                    // while a rebuild waits for its first server, with the cluster's services.
                    let rebuild_waits = cluster.odb_epoch > 0
                        && !cluster.servers_started
                        && !cluster.services_revision.is_empty();
                    status.healthy
                        && status.odb_epoch == cluster.odb_epoch
                        && (!rebuild_waits || status.services_revision == cluster.services_revision)
                }),
            })
            .collect();
        let mut changes = Vec::new();
        if !cluster.servers_started {
            let started = policy::servers_started(&servers);
            let first_now = match &started {
                Some(_) => String::new(),
                None => policy::first_server(false, &servers)
                    .map(|first| first.name.clone())
                    .unwrap_or_default(),
            };
            if started.is_some() || first_now != cluster.first_server {
                cluster.servers_started = started.is_some();
                cluster.first_server = first_now;
                changes.push(policy::Change::Servers);
            }
        }
        if let Some(moved) = policy::scheduler_target(&cluster.scheduler_target, &servers) {
            cluster.scheduler_target = moved.server;
            changes.push(policy::Change::Cluster);
        }
        changes
    }

    /// What `host` must run in `world`: as the store gives the planner its inputs (nothing of a
    /// cluster the host has no component in; the environment only where it runs a server).
    fn render_for(world: &PlanInputs, host: &str) -> v1::DesiredState {
        let Some(me) = world.hosts.get(host) else {
            return v1::DesiredState::default();
        };
        let mut inputs = world.clone();
        inputs.host = me.clone();
        if !inputs
            .assignments
            .iter()
            .any(|assignment| assignment.host == host)
        {
            inputs.assignments.clear();
            inputs.clusters.clear();
        }
        if !inputs
            .assignments
            .iter()
            .any(|assignment| assignment.host == host && assignment.role == Role::Server)
        {
            inputs.services.clear();
            inputs.config.clear();
            inputs.config_removals.clear();
            inputs.python.clear();
            inputs.user_conf.clear();
        }
        render(&inputs)
    }

    proptest::proptest! {
        /// Whatever the cluster's facts, a change of them alters the desired state of no host
        /// outside what `policy::affected_hosts` names for the change the store bumps: no host
        /// is left with a stale desired state.
        #[test]
        fn a_change_re_renders_only_the_hosts_affected_hosts_names(facts in facts(), fact in fact()) {
            let mut before = world(&facts);
            replan(&mut before);
            let (mut after, mut changes) = changed(&before, &fact);
            if matches!(
                fact,
                Fact::ServerAssigned | Fact::ServerRemoved | Fact::ServerReport(..) | Fact::HostDown(..)
            ) {
                changes.extend(replan(&mut after));
            }
            // The store bumps a removal while the component is still assigned, an arrival
            // once it is.
            let members_of = match fact {
                Fact::ServerRemoved => &before,
                _ => &after,
            };
            let members: Vec<policy::Member> = members_of
                .assignments
                .iter()
                .map(|assignment| policy::Member {
                    role: assignment.role,
                    host: assignment.host.clone(),
                    host_drained: members_of.hosts[&assignment.host].drained,
                    restart_due: assignment.status.as_ref().is_some_and(|status| {
                        let (cluster, _) = &members_of.clusters["prod"];
                        policy::RestartGoal::of(cluster)
                        .due(&policy::ComponentReport::from(status))
                    }),
                })
                .collect();
            let (cluster, _) = &after.clusters["prod"];
            let shape = policy::ClusterShape {
                members,
                bootstrapped: facts.bootstrapped,
                has_config: !cluster.config_revision.is_empty(),
                has_python: !cluster.python_revision.is_empty(),
            };
            let mut affected = std::collections::BTreeSet::new();
            for change in &changes {
                affected.extend(policy::affected_hosts(change, &shape));
            }
            for host in HOSTS.iter().chain(["app-3"].iter()) {
                // A host that is down gets its desired state whole when its agent connects again.
                let down = after.hosts.get(*host).is_some_and(|host| host.state == HostState::Down);
                if affected.contains(*host) || down {
                    continue;
                }
                proptest::prop_assert_eq!(
                    render_for(&before, host),
                    render_for(&after, host),
                    "host {} re-renders after {:?}, but {:?} names only {:?}",
                    host,
                    fact,
                    changes,
                    affected
                );
            }
        }
    }
}
