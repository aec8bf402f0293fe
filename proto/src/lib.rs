//! Muster's wire protocol, package `muster.v1`, and what both sides of it must agree on.
//!
//! - [`v1`]: the generated messages and the `AgentService` / `AdminService` clients and servers.
//! - [`validate`]: the grammar every name and address must pass before it is stored or reaches a
//!   config file.
//! - [`token`]: the textual forms of join tokens and admin tokens.
//! - [`haproxy`]: a load balancer's settings and its backend's `server` lines.
//! - [`services`]: a cluster's Python modules, their limits and their revision.
//! - [`config`]: a cluster's enmasse files and their placeholders' values.
//! - [`ApiError`]: the one mapping from Muster's errors to `tonic::Status`.
//! - [`daemon`] and [`files`]: what both daemons do the same way as processes (logging, signals,
//!   error text, files replaced atomically).
//!
//! Agent and coordinator share types only through this crate.

/// How long before its issue the coordinator dates a host certificate's `not_before` (clocks a
/// little apart must not make a fresh certificate "not yet valid"); the agent counts a
/// certificate's lifetime from `not_before` plus this.
pub const HOST_CERTIFICATE_BACKDATE_SECONDS: u64 = 300;

pub mod config;
pub mod daemon;
pub mod docs;
pub mod files;
pub mod haproxy;
pub mod metrics;
pub use python::package;
pub mod python;
pub mod rollout;
pub mod server_settings;
pub mod services;
pub mod sql;
pub mod state;
pub mod token;
pub mod user_conf;
pub mod validate;
pub mod zato;

mod error;
mod role;

pub use role::UnknownName;

pub use error::ApiError;

/// The generated code of package `muster.v1`.
#[allow(clippy::all, clippy::pedantic, unused_qualifications, missing_docs)]
pub mod v1 {
    tonic::include_proto!("muster.v1");
    include!(concat!(env!("OUT_DIR"), "/muster.v1.serde.rs"));
}

/// The encoded `FileDescriptorSet` of `muster.v1`, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("muster_descriptor");

/// The default port of the coordinator's gRPC listener.
pub const DEFAULT_GRPC_PORT: u16 = 17300;
/// The default port of the coordinator's HTTP listener (health, metrics).
pub const DEFAULT_HTTP_PORT: u16 = 17301;
/// The largest request the coordinator decodes: a cluster's services or configuration (at most
/// 2 MiB each) with room to spare; wheels travel in pieces of [`PIECE_BYTES`].
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// The largest piece of a wheel in one message (SetPython, FetchWheel).
pub const PIECE_BYTES: usize = 1024 * 1024;
/// The largest desired state an agent decodes: a cluster's services and configuration with the
/// rest of a host's plan.
pub const MAX_DESIRED_STATE_BYTES: usize = 16 * 1024 * 1024;
