//! `muster-coordinator run`: serves gRPC over TLS (AdminService, `grpc.health.v1`, server
//! reflection) and HTTP (health, metrics) until the root cancellation token fires, then drains for
//! at most [`DRAIN_DEADLINE`].
//!
//! Tasks: the tonic server and the axum server, both stopped by the same token.

use std::sync::Arc;
use std::time::Duration;

use muster_proto::v1::admin_service_server::AdminServiceServer;
use muster_proto::v1::agent_service_server::AgentServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::admin::AdminApi;
use crate::agent_api::AgentApi;
use crate::config::{CoordinatorConfig, DataDir};
use crate::files::{self, FileError};
use crate::init::{self, InitError};
use crate::pki::CertifiedKey;
use crate::pki::{self, PkiError};
use crate::store::Store;
use crate::store::{SqlStore, StoreError};

/// How long in-flight calls may take to finish after a shutdown signal.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(
        "{0} is not an initialized data directory (no ca.pem); run `muster-coordinator init --data-dir {0}` first"
    )]
    NotInitialized(String),
    #[error(
        "the database {path} of the initialized data directory {data_dir} is missing; restore it \
         from a backup (muster-coordinator never makes a new database on `run`: every host would \
         be unknown and the admin token invalid; only `init` creates one)"
    )]
    DatabaseMissing { path: String, data_dir: String },
    #[error(transparent)]
    File(#[from] FileError),
    #[error(transparent)]
    Init(#[from] InitError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {address} ({key})")]
    Bind {
        address: std::net::SocketAddr,
        key: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the gRPC server failed")]
    Grpc(#[source] tonic::transport::Error),
    #[error("the HTTP server failed")]
    Http(#[source] std::io::Error),
    #[error("cannot build the reflection service")]
    Reflection(#[source] tonic_reflection::server::Error),
}

/// Runs the coordinator until `shutdown` is cancelled.
pub async fn run(config: CoordinatorConfig, shutdown: CancellationToken) -> Result<(), RunError> {
    let layout = DataDir::new(&config.data_dir);
    if !layout.ca_certificate().exists() {
        return Err(RunError::NotInitialized(
            config.data_dir.display().to_string(),
        ));
    }
    let ca_pem = files::read_to_string(&layout.ca_certificate())?;
    let ca_key_pem = files::read_to_string(&layout.ca_key())?;
    let certificate_pem = files::read_to_string(&layout.server_certificate())?;
    let key_pem = files::read_to_string(&layout.server_key())?;
    let secret_box = init::read_secret_box(&layout)?;
    let ca_sha256 =
        pki::certificate_sha256(&ca_pem, &layout.ca_certificate().display().to_string())?;

    if let Some(path) = config.database_url.sqlite_path()
        && !path.exists()
    {
        return Err(RunError::DatabaseMissing {
            path: path.display().to_string(),
            data_dir: config.data_dir.display().to_string(),
        });
    }
    let store =
        Arc::new(SqlStore::connect(&config.database_url.existing_only(), secret_box).await?);
    tracing::info!(database = %config.database_url, "database ready");

    let grpc_listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|source| RunError::Bind {
                address: config.listen,
                key: "listen",
                source,
            })?;
    let http_listener = TcpListener::bind(config.http_listen)
        .await
        .map_err(|source| RunError::Bind {
            address: config.http_listen,
            key: "http_listen",
            source,
        })?;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<AdminServiceServer<AdminApi>>()
        .await;
    // Both versions of reflection: grpcurl and grpcui as Debian and most distributions ship
    // them still ask v1alpha; newer clients ask v1.
    let reflection_builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(muster_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection = reflection_builder()
        .build_v1()
        .map_err(RunError::Reflection)?;
    let reflection_v1alpha = reflection_builder()
        .build_v1alpha()
        .map_err(RunError::Reflection)?;
    let fanout = crate::fanout::Fanout::new();
    crate::fanout::spawn(
        fanout.clone(),
        store.clone(),
        &config.database_url,
        shutdown.clone(),
    );
    let liveness = crate::liveness::Liveness::new();
    let flusher = liveness
        .clone()
        .spawn_flusher(store.clone(), shutdown.clone());
    let refusals = Arc::new(crate::audit::Refusals::default());
    // The APIs write through `Writes`: retried on collisions, and the watches woken.
    let writes: Arc<dyn Store> = Arc::new(crate::store::Writes::new(store.clone(), fanout.clone()));
    let admin_api = AdminApi::new(
        writes.clone(),
        ca_sha256,
        refusals.clone(),
        shutdown.clone(),
    );
    // The HTTP/JSON gateway calls the same implementation, on the same port and TLS.
    let gateway = tonic::service::Routes::from(crate::gateway::router(admin_api.clone()));
    let admin = AdminServiceServer::new(admin_api)
        .max_decoding_message_size(muster_proto::MAX_REQUEST_BYTES);
    let ca = Arc::new(CertifiedKey {
        certificate_pem: ca_pem.clone(),
        key_pem: ca_key_pem,
    });
    let agent = AgentServiceServer::new(AgentApi::new(
        writes.clone(),
        ca,
        config.host_certificate_ttl,
        fanout.clone(),
        liveness,
        shutdown.clone(),
        refusals.clone(),
    ))
    .max_decoding_message_size(muster_proto::MAX_REQUEST_BYTES);
    // The chain includes the CA, so an agent that pins the CA by its hash finds it in the
    // handshake. Client certificates are optional: Enroll and AdminService have none.
    let chain = format!("{certificate_pem}{ca_pem}");
    let tls = ServerTlsConfig::new()
        .identity(Identity::from_pem(chain, key_pem))
        .client_ca_root(Certificate::from_pem(&ca_pem))
        .client_auth_optional(true);
    spawn_down_sweeper(writes.clone(), config.heartbeat_ttl, shutdown.clone());
    spawn_rollout_watch(writes.clone(), shutdown.clone());
    spawn_event_pruner(
        store.clone(),
        config.event_retention,
        config.event_max,
        shutdown.clone(),
    );

    let latencies = Arc::new(crate::rpc_metrics::RpcLatencies::new(
        muster_proto::FILE_DESCRIPTOR_SET,
    ));
    // HTTP/1.1 too, for the gateway's clients that do not ask for HTTP/2 (TLS offers h2 by ALPN).
    let grpc = Server::builder()
        .accept_http1(true)
        // Bounds what one connection holds: each stream may carry a request of up to
        // MAX_REQUEST_BYTES (an agent uses two streams, the CLI one).
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .tls_config(tls)
        .map_err(RunError::Grpc)?
        .layer(crate::rpc_metrics::RpcLatencyLayer(latencies.clone()))
        .add_routes(gateway)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(admin)
        .add_service(agent)
        .serve_with_incoming_shutdown(
            TcpListenerStream::new(grpc_listener),
            shutdown.clone().cancelled_owned(),
        );
    let http = axum::serve(
        http_listener,
        crate::http::router(store.clone(), refusals, latencies),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned());

    tracing::info!(grpc = %config.listen, http = %config.http_listen, "coordinator listening");
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);

    let servers = async {
        tokio::try_join!(async { grpc.await.map_err(RunError::Grpc) }, async {
            http.await.map_err(RunError::Http)
        },)
    };
    let drain_deadline = async {
        shutdown.cancelled().await;
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
        tracing::info!("shutting down; draining in-flight calls");
        tokio::time::sleep(DRAIN_DEADLINE).await;
    };
    // Both arms are cancel-safe: dropping the servers closes their listeners and connections.
    tokio::select! {
        result = servers => { result?; }
        () = drain_deadline => tracing::warn!(deadline = ?DRAIN_DEADLINE, "drain deadline passed; closing"),
    }
    // The last batch of heartbeats is written before the database closes.
    let _ = flusher.await;
    store.close().await;
    tracing::info!("coordinator stopped");
    Ok(())
}

/// The most HTTP/2 streams one connection may have open at once.
const MAX_STREAMS_PER_CONNECTION: u32 = 32;

/// Removes events past `retention` and beyond the newest `max`, at start and every minute. Every
/// coordinator runs one; removing what another removed already removes nothing.
fn spawn_event_pruner(
    store: Arc<SqlStore>,
    retention: Duration,
    max: u64,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let mut ticks = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = shutdown.cancelled() => return,
            }
            let older_than = crate::store::now_ms().saturating_sub(retention_ms);
            match store.prune_events(older_than, max).await {
                Ok(0) => {}
                Ok(removed) => tracing::info!(removed, "old events removed"),
                Err(error) => {
                    tracing::warn!(error = %crate::error_chain(&error), "cannot remove old events");
                }
            }
        }
    });
}

/// Lets servers held healthy for `min_healthy_time` back into rotation
/// ([`Store::release_held_servers`]) and stops the rollouts whose server missed its cluster's
/// healthy deadline ([`Store::stop_failed_rollouts`]), checking every second (a hold ends
/// within a second of its time). Every coordinator runs one;
/// each cluster is decided under its row lock, so exactly one stops it.
fn spawn_rollout_watch(store: Arc<dyn Store>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = shutdown.cancelled() => return,
            }
            match store.release_held_servers(crate::store::now_ms()).await {
                Ok(released) => {
                    for server in released {
                        tracing::info!(server = %server, "held healthy for min_healthy_time: back in rotation");
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %crate::error_chain(&error), "cannot release servers held healthy");
                }
            }
            match store.stop_failed_rollouts(crate::store::now_ms()).await {
                Ok(stopped) => {
                    for rollout in stopped {
                        tracing::warn!(cluster = %rollout.cluster, reverted = rollout.reverted, reason = %rollout.reason, "rollout stopped: a server missed its healthy deadline");
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %crate::error_chain(&error), "cannot check rollouts for servers past their healthy deadline");
                }
            }
        }
    });
}

/// Marks hosts down when their heartbeats stop for longer than `ttl`, checking every second. Every
/// coordinator runs one; the conditional update lets exactly one record each transition.
fn spawn_down_sweeper(store: Arc<dyn Store>, ttl: Duration, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                () = shutdown.cancelled() => return,
            }
            match store
                .mark_stale_hosts_down(crate::store::now_ms(), ttl_ms)
                .await
            {
                // Through `Writes`: a host marked down wakes the watches (the scheduler may
                // have moved off a server on it).
                Ok(hosts) => {
                    for host in hosts {
                        tracing::warn!(host = %host, ttl = ?ttl, "host marked down: heartbeats stopped");
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %crate::error_chain(&error), "cannot check for silent hosts");
                }
            }
        }
    });
}
