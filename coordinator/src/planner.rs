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
//! - each component gets only the secrets its role needs.
//!
//! The render depends only on assignments, enrolled hosts and their addresses, bootstrap progress,
//! the clusters and load balancers' reports; every change to one of those bumps the affected hosts'
//! generations.

use muster_proto::v1::{self, BootstrapKind, Role};

use crate::store::{Assignment, BootstrapTask, Cluster, ClusterSecrets, HostState, PlanInputs};

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
    let mut servers: Vec<v1::BackendServer> = inputs
        .assignments
        .iter()
        .filter(|other| other.cluster == assignment.cluster && other.role == Role::Server)
        .filter_map(|server| {
            let host = inputs.hosts.get(&server.host)?;
            Some(v1::BackendServer {
                name: server.name.clone(),
                address: host.advertise_address.clone(),
                port: u32::from(server.port),
                drain: host.drained,
            })
        })
        .collect();
    servers.sort_by(|left, right| left.name.cmp(&right.name));
    servers
}

/// Whether a load balancer that is up and healthy still sends new requests to `server`.
fn still_routed(inputs: &PlanInputs, server: &Assignment) -> bool {
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
        .any(|status| {
            status
                .backends
                .iter()
                .any(|backend| backend.name == server.name && backend.status().in_rotation())
        })
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
                });
            }
        }
        let mine = inputs.assignments.iter().filter(|assignment| {
            &assignment.cluster == cluster_name && assignment.host == inputs.host.name
        });
        // A load balancer needs neither the ODB nor a secret: it runs before the bootstrap too.
        for assignment in
            mine.filter(|assignment| bootstrapped || assignment.role == Role::LoadBalancer)
        {
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
