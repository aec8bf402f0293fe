//! The coordinator's HTTP listener (127.0.0.1:17301 by default): `/healthz` answers 200 when the
//! database answers and 503 otherwise; `/metrics` is the Prometheus text format, its gauges read
//! from the database at scrape time.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::store::Store;

pub fn router(store: Arc<dyn Store>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(store)
}

async fn healthz(State(store): State<Arc<dyn Store>>) -> impl IntoResponse {
    match store.ping().await {
        Ok(()) => (StatusCode::OK, "ok\n".to_owned()),
        Err(error) => {
            tracing::warn!(error = %crate::error_chain(&error), "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "database unreachable\n".to_owned(),
            )
        }
    }
}

async fn metrics(State(store): State<Arc<dyn Store>>) -> impl IntoResponse {
    let mut text = String::new();
    let _ = writeln!(text, "# HELP muster_build_info The coordinator's version.");
    let _ = writeln!(text, "# TYPE muster_build_info gauge");
    let _ = writeln!(
        text,
        "muster_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    let database_up = store.ping().await.is_ok();
    let _ = writeln!(
        text,
        "# HELP muster_database_up Whether the database answers."
    );
    let _ = writeln!(text, "# TYPE muster_database_up gauge");
    let _ = writeln!(text, "muster_database_up {}", u8::from(database_up));
    if let Ok(clusters) = store.list_clusters().await {
        let _ = writeln!(text, "# HELP muster_clusters Clusters defined.");
        let _ = writeln!(text, "# TYPE muster_clusters gauge");
        let _ = writeln!(text, "muster_clusters {}", clusters.len());
    }
    if let Ok(hosts) = store.list_hosts().await {
        let _ = writeln!(text, "# HELP muster_hosts Enrolled hosts by state.");
        let _ = writeln!(text, "# TYPE muster_hosts gauge");
        for state in ["new", "up", "down"] {
            let count = hosts.iter().filter(|host| host.state == state).count();
            let _ = writeln!(text, "muster_hosts{{state=\"{state}\"}} {count}");
        }
    }
    ([("content-type", "text/plain; version=0.0.4")], text)
}
