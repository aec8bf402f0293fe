//! The coordinator's HTTP listener (127.0.0.1:17301 by default): `/healthz` answers 200 when the
//! database takes a write, and 503 when it does not or takes longer than [`HEALTH_CHECK_TIMEOUT`];
//! `/metrics` is the Prometheus text format, its gauges read from the database at scrape time.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::audit::Refusals;
use crate::store::{HostState, Store};

/// What the handlers read.
#[derive(Clone)]
struct Shared {
    store: Arc<dyn Store>,
    refusals: Arc<Refusals>,
}

pub fn router(store: Arc<dyn Store>, refusals: Arc<Refusals>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(Shared { store, refusals })
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

async fn metrics(State(Shared { store, refusals }): State<Shared>) -> impl IntoResponse {
    let mut text = String::new();
    let _ = writeln!(text, "# HELP muster_build_info The coordinator's version.");
    let _ = writeln!(text, "# TYPE muster_build_info gauge");
    let _ = writeln!(
        text,
        "muster_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
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
    if let Some(hosts) = hosts {
        let _ = writeln!(text, "# HELP muster_hosts Enrolled hosts by state.");
        let _ = writeln!(text, "# TYPE muster_hosts gauge");
        for state in HostState::ALL {
            let count = hosts.iter().filter(|host| host.state == state).count();
            let _ = writeln!(text, "muster_hosts{{state=\"{state}\"}} {count}");
        }
    }
    refusals.render(&mut text);
    ([("content-type", "text/plain; version=0.0.4")], text)
}
