//! The coordinator's HTTP listener (127.0.0.1:17301 by default): `/healthz` answers 200 when the
//! database takes a write, and 503 when it does not or takes longer than [`HEALTH_CHECK_TIMEOUT`];
//! `/metrics` is the Prometheus text format: the fleet's gauges (hosts, heartbeat ages, components'
//! health and restarts, load balancers' backend servers) read from the database at scrape time,
//! refused calls, and gRPC latencies by method.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use muster_proto::metrics::Family;
use muster_proto::v1::Role;

use crate::audit::Refusals;
use crate::rpc_metrics::RpcLatencies;
use crate::store::{Assignment, Host, HostState, Store};

/// What the handlers read.
#[derive(Clone)]
struct Shared {
    store: Arc<dyn Store>,
    refusals: Arc<Refusals>,
    latencies: Arc<RpcLatencies>,
}

pub fn router(
    store: Arc<dyn Store>,
    refusals: Arc<Refusals>,
    latencies: Arc<RpcLatencies>,
) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(Shared {
            store,
            refusals,
            latencies,
        })
}

/// How long `/healthz` and `/metrics` wait for the database: a database that hangs (a network
/// partition, a full connection pool) is reported as down within this bound.
pub const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

async fn healthz(State(Shared { store, .. }): State<Shared>) -> impl IntoResponse {
    let unhealthy = match tokio::time::timeout(HEALTH_CHECK_TIMEOUT, store.probe_write()).await {
        Ok(Ok(())) => return (StatusCode::OK, "ok\n".to_owned()),
        Ok(Err(error)) => crate::error_chain(&error),
        Err(_) => format!(
            "the database did not take a write within {} s",
            HEALTH_CHECK_TIMEOUT.as_secs()
        ),
    };
    tracing::warn!(error = %unhealthy, "health check failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the database cannot take a write; see the coordinator's log\n".to_owned(),
    )
}

async fn metrics(
    State(Shared {
        store,
        refusals,
        latencies,
    }): State<Shared>,
) -> impl IntoResponse {
    let mut text = String::new();
    let _ = writeln!(text, "# HELP muster_build_info The coordinator's version.");
    let _ = writeln!(text, "# TYPE muster_build_info gauge");
    let _ = writeln!(
        text,
        "muster_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    // Read before this scrape's own queries.
    let mut statements = Family::new(
        "muster_store_statements_total",
        "Statements this coordinator process sent to the database (queries, and each write \
         transaction's begin and end).",
        "counter",
    );
    statements.sample("", crate::store::statements());
    statements.write(&mut text);
    let database_up = matches!(
        tokio::time::timeout(HEALTH_CHECK_TIMEOUT, store.ping()).await,
        Ok(Ok(()))
    );
    let _ = writeln!(
        text,
        "# HELP muster_database_up Whether the database answers."
    );
    let _ = writeln!(text, "# TYPE muster_database_up gauge");
    let _ = writeln!(text, "muster_database_up {}", u8::from(database_up));
    let clusters = match database_up {
        true => tokio::time::timeout(HEALTH_CHECK_TIMEOUT, store.list_clusters())
            .await
            .ok()
            .and_then(Result::ok),
        false => None,
    };
    if let Some(clusters) = clusters {
        let _ = writeln!(text, "# HELP muster_clusters Clusters defined.");
        let _ = writeln!(text, "# TYPE muster_clusters gauge");
        let _ = writeln!(text, "muster_clusters {}", clusters.len());
    }
    let hosts = match database_up {
        true => tokio::time::timeout(HEALTH_CHECK_TIMEOUT, store.list_hosts())
            .await
            .ok()
            .and_then(Result::ok),
        false => None,
    };
    if let Some(hosts) = &hosts {
        let _ = writeln!(text, "# HELP muster_hosts Enrolled hosts by state.");
        let _ = writeln!(text, "# TYPE muster_hosts gauge");
        for state in HostState::ALL {
            let count = hosts.iter().filter(|host| host.state == state).count();
            let _ = writeln!(text, "muster_hosts{{state=\"{state}\"}} {count}");
        }
        render_hosts(&mut text, hosts, crate::store::now_ms());
    }
    let assignments = match database_up {
        true => tokio::time::timeout(HEALTH_CHECK_TIMEOUT, store.list_assignments(None))
            .await
            .ok()
            .and_then(Result::ok),
        false => None,
    };
    if let Some(assignments) = &assignments {
        render_components(&mut text, assignments);
    }
    refusals.render(&mut text);
    latencies.render(&mut text);
    ([("content-type", "text/plain; version=0.0.4")], text)
}

/// Each host's heartbeat age and drain.
fn render_hosts(text: &mut String, hosts: &[Host], now_ms: i64) {
    let mut age = Family::new(
        "muster_host_heartbeat_age_seconds",
        "Seconds since the host's last report (hosts that reported).",
        "gauge",
    );
    let mut drained = Family::new(
        "muster_host_drained",
        "Whether the host is drained.",
        "gauge",
    );
    for host in hosts {
        let labels = format!("host=\"{}\"", host.name);
        if let Some(last_seen) = host.last_seen_ms {
            age.sample(&labels, (now_ms - last_seen).max(0) as f64 / 1000.0);
        }
        drained.sample(&labels, u8::from(host.drained));
    }
    age.write(text);
    drained.write(text);
}

/// Each component's reported health and restarts, and each load balancer's backend servers as
/// its HAProxy reports them: only the cluster's assigned servers, so a host cannot make series by
/// reporting names (one series per server and load balancer at most). Names are validated before
/// they are stored, so they need no escaping.
fn render_components(text: &mut String, assignments: &[Assignment]) {
    let servers: std::collections::BTreeSet<(&str, &str)> = assignments
        .iter()
        .filter(|assignment| assignment.role == Role::Server)
        .map(|assignment| (assignment.cluster.as_str(), assignment.name.as_str()))
        .collect();
    let mut healthy = Family::new(
        "muster_component_healthy",
        "Whether the component's host reports it healthy (0 before it reports).",
        "gauge",
    );
    let mut restarts = Family::new(
        "muster_component_restarts",
        "How often the component's agent restarted it after it died, as last reported.",
        "gauge",
    );
    let mut rotation = Family::new(
        "muster_backend_server_in_rotation",
        "Whether a load balancer's HAProxy sends the server new requests (UP or no check).",
        "gauge",
    );
    for assignment in assignments {
        let labels = format!(
            "cluster=\"{}\",role=\"{}\",name=\"{}\",host=\"{}\"",
            assignment.cluster, assignment.role, assignment.name, assignment.host
        );
        let status = assignment.status.as_ref();
        healthy.sample(
            &labels,
            u8::from(status.is_some_and(|status| status.healthy)),
        );
        restarts.sample(&labels, status.map_or(0, |status| status.restarts));
        for backend in status
            .map(|status| status.backends.as_slice())
            .unwrap_or_default()
            .iter()
            .filter(|backend| {
                servers.contains(&(assignment.cluster.as_str(), backend.name.as_str()))
            })
        {
            rotation.sample(
                &format!(
                    "cluster=\"{}\",load_balancer=\"{}\",server=\"{}\",status=\"{}\"",
                    assignment.cluster,
                    assignment.name,
                    backend.name,
                    backend.status().word()
                ),
                u8::from(backend.status().in_rotation()),
            );
        }
    }
    healthy.write(text);
    restarts.write(text);
    rotation.write(text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use muster_proto::v1;

    fn assignment(role: Role, name: &str, backends: &[&str]) -> Assignment {
        Assignment {
            cluster: "prod".to_owned(),
            role,
            name: name.to_owned(),
            host: "lb".to_owned(),
            port: 11223,
            created_at_ms: 0,
            load_balancer: None,
            status: Some(crate::store::ComponentStatus {
                cluster: "prod".to_owned(),
                role,
                name: name.to_owned(),
                state: v1::ComponentState::Running,
                healthy: true,
                last_error: String::new(),
                restarts: 0,
                backends: backends
                    .iter()
                    .map(|backend| v1::BackendServerState {
                        name: (*backend).to_owned(),
                        state: "UP".to_owned(),
                        status: v1::BackendStatus::from_haproxy("UP") as i32,
                        ..Default::default()
                    })
                    .collect(),
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
            }),
        }
    }

    /// A load balancer's report of invented backend names makes no series: only the cluster's
    /// assigned servers are shown (a hostile host reported 1,000 and made 1,000 series).
    #[test]
    fn backend_series_are_only_for_the_clusters_servers() {
        let invented: Vec<String> = (0..1000)
            .map(|number| format!("invented{number}"))
            .collect();
        let mut reported: Vec<&str> = invented.iter().map(String::as_str).collect();
        reported.push("server1");
        let assignments = [
            assignment(Role::Server, "server1", &[]),
            assignment(Role::LoadBalancer, "load-balancer", &reported),
        ];
        let mut text = String::new();
        render_components(&mut text, &assignments);
        let series: Vec<&str> = text
            .lines()
            .filter(|line| line.starts_with("muster_backend_server_in_rotation{"))
            .collect();
        assert_eq!(
            series,
            [
                "muster_backend_server_in_rotation{cluster=\"prod\",load_balancer=\"load-balancer\",\
                 server=\"server1\",status=\"up\"} 1"
            ]
        );
    }
}
