//! The Muster coordinator: a tonic gRPC server over rustls in front of the ODB, and the `muster` CLI.
//!
//! - [`store`]: the only state, in SQLite, PostgreSQL or MySQL.
//! - [`secrets`]: sealing cluster secrets at rest, random values, token hashes.

pub mod secrets;
pub mod store;
