//! The agent's `/metrics` (Prometheus text), on `metrics_listen` when it is set: what this host
//! runs as the agent last saw it — each component's health, state and restarts, each load
//! balancer's backend servers — the generation applied, and how long ago the coordinator last
//! took a report. It holds no secret and changes nothing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use muster_proto::metrics::Family;
use muster_proto::v1::{BackendStatus, ComponentState, Role};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::reconcile::HostStatus;

/// Serves `/metrics` on `listen` until `shutdown`. `last_report` holds the Unix time (seconds)
/// of the last report the coordinator took; 0 before any.
pub async fn serve(
    listen: SocketAddr,
    status: watch::Receiver<HostStatus>,
    last_report: Arc<AtomicU64>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(listen = %listen, "serving /metrics");
    let router = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let text = render(&status.borrow(), last_report.load(Ordering::Relaxed), now());
            async move { ([("content-type", "text/plain; version=0.0.4")], text) }
        }),
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}

/// The metrics text. Names reached the agent validated, so they need no escaping.
pub fn render(status: &HostStatus, last_report: u64, now: u64) -> String {
    let mut build = Family::new("muster_agent_build_info", "The agent's version.", "gauge");
    build.sample(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION")), 1);
    let mut applied = Family::new(
        "muster_agent_applied_generation",
        "The generation of the desired state the agent last applied.",
        "gauge",
    );
    applied.sample("", status.applied_generation);
    let mut report_age = Family::new(
        "muster_agent_last_report_age_seconds",
        "Seconds since the coordinator last took this host's report (absent before the first).",
        "gauge",
    );
    if last_report > 0 {
        report_age.sample("", now.saturating_sub(last_report));
    }
    let mut healthy = Family::new(
        "muster_agent_component_healthy",
        "Whether the component answers as its role must.",
        "gauge",
    );
    let mut state = Family::new(
        "muster_agent_component_state",
        "The component's state: 1 for the state it is in.",
        "gauge",
    );
    let mut restarts = Family::new(
        "muster_agent_component_restarts_total",
        "How often the agent restarted the component after it died.",
        "counter",
    );
    let mut rotation = Family::new(
        "muster_agent_backend_server_in_rotation",
        "Whether this host's HAProxy sends the server new requests.",
        "gauge",
    );
    for component in &status.components {
        let role = Role::try_from(component.role).unwrap_or_default();
        let labels = format!(
            "cluster=\"{}\",role=\"{role}\",name=\"{}\"",
            component.cluster, component.name
        );
        healthy.sample(&labels, u8::from(component.healthy));
        let word = ComponentState::try_from(component.state)
            .unwrap_or_default()
            .word();
        let word = if word.is_empty() { "unknown" } else { word };
        state.sample(&format!("{labels},state=\"{word}\""), 1);
        restarts.sample(&labels, component.restarts);
        for backend in &component.backends {
            let backend_status = BackendStatus::try_from(backend.status).unwrap_or_default();
            rotation.sample(
                &format!(
                    "cluster=\"{}\",load_balancer=\"{}\",server=\"{}\",status=\"{}\"",
                    component.cluster,
                    component.name,
                    backend.name,
                    backend_status.word()
                ),
                u8::from(backend_status.in_rotation()),
            );
        }
    }
    let mut text = String::new();
    for family in [
        build, applied, report_age, healthy, state, restarts, rotation,
    ] {
        family.write(&mut text);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use muster_proto::v1;

    #[test]
    fn what_the_host_runs_is_in_the_metrics() {
        let status = HostStatus {
            applied_generation: 7,
            components: vec![v1::ComponentStatus {
                role: Role::LoadBalancer as i32,
                name: "load-balancer".to_owned(),
                cluster: "prod".to_owned(),
                state: ComponentState::Running as i32,
                healthy: true,
                restarts: 2,
                backends: vec![v1::BackendServerState {
                    name: "server1".to_owned(),
                    status: BackendStatus::Up as i32,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            bootstrap: Vec::new(),
        };
        let text = render(&status, 100, 103);
        for line in [
            "muster_agent_applied_generation 7",
            "muster_agent_last_report_age_seconds 3",
            "muster_agent_component_healthy{cluster=\"prod\",role=\"load-balancer\",name=\"load-balancer\"} 1",
            "muster_agent_component_state{cluster=\"prod\",role=\"load-balancer\",name=\"load-balancer\",state=\"running\"} 1",
            "muster_agent_component_restarts_total{cluster=\"prod\",role=\"load-balancer\",name=\"load-balancer\"} 2",
            "muster_agent_backend_server_in_rotation{cluster=\"prod\",load_balancer=\"load-balancer\",server=\"server1\",status=\"up\"} 1",
        ] {
            assert!(text.contains(line), "{line} not in:\n{text}");
        }
        // Each sample follows its family's TYPE line.
        let restarts_type = text
            .find("# TYPE muster_agent_component_restarts_total counter")
            .unwrap();
        let restarts = text.find("muster_agent_component_restarts_total{").unwrap();
        assert!(restarts_type < restarts);
        assert!(!render(&status, 0, 103).contains("muster_agent_last_report_age_seconds 1"));
    }
}
