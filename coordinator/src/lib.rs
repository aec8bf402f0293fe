//! The Muster coordinator and the `muster` CLI.
//!
//! What runs in `muster-coordinator run` ([`server::run`]): one tonic server over rustls with
//! `AdminService` ([`admin`]), `grpc.health.v1` and server reflection, and one axum server for
//! `/healthz` and `/metrics` ([`http`]); both hold an `Arc<dyn Store>` ([`store`]) and stop on one
//! root `CancellationToken` cancelled by SIGTERM or SIGINT. No fact lives only in memory: every one
//! is in the database, so several coordinators can share one PostgreSQL or MySQL database. What is
//! in memory is derived and can be lost: [`fanout`] (which hosts' watch streams to wake) and
//! [`liveness`] (unchanged heartbeats, written in batches).
//!
//! - [`init`]: the data directory (CA, server certificate, secret key, first admin token).
//! - [`config`]: file, environment and flags, validated.
//! - [`cli`]: the `muster` command, a client of `AdminService`.
//! - [`policy`]: the cluster's rules as pure functions (the scheduler's target), which the store
//!   calls inside its transactions; [`planner`]: a host's desired state from the database's facts.
//! - [`error`]: store errors as callers see them; [`audit`]: refused calls, logged and counted.

pub mod admin;
pub mod agent_api;
pub mod audit;
pub mod cli;
pub mod condition;
pub mod config;
pub mod domain;
pub mod error;
pub mod fanout;
pub mod gateway;
pub mod http;
pub mod init;
pub mod liveness;
pub mod pki;
pub mod planner;
pub mod policy;
pub mod rpc_metrics;
pub mod secrets;
pub mod server;
pub mod store;

pub use muster_proto::daemon::error_chain;
pub use muster_proto::files;

/// A time in milliseconds since the Unix epoch as RFC 3339 (UTC, seconds); empty for 0.
pub fn unix_ms_text(unix_ms: i64) -> String {
    if unix_ms <= 0 {
        return String::new();
    }
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(unix_ms.unsigned_abs());
    humantime::format_rfc3339_seconds(time).to_string()
}
