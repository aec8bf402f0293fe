//! The Muster host agent.
//!
//! What runs in `muster-agent run` ([`daemon::run`]), each a task stopped by one root
//! `CancellationToken`:
//! - the watcher opens `WatchDesiredState`, passes every generation through the [`ledger`] (which
//!   persists it before anything acts on it) and publishes it on a `watch` channel;
//! - the reconciler ([`reconcile`]) waits on that channel, a retry timer and shutdown, and drives
//!   the local components toward the desired state through the `zato` command ([`zato`]); it
//!   publishes the host's status on another `watch` channel;
//! - the heartbeat reads that status and sends `ReportStatus` every interval and at once on change;
//! - the wheel fetcher keeps the wheels this host's servers install their clusters' Python
//!   dependencies from ([`wheels`]);
//! - the renewer replaces the host certificate after two thirds of its lifetime;
//! - the systemd notifier sends READY, STATUS and WATCHDOG.
//!
//! The agent leaves its components running when it stops, and starts from its ledger when the
//! coordinator cannot be reached.

pub mod config;
pub mod daemon;
pub mod haproxy;
pub mod identity;
pub mod ledger;
pub mod metrics;
pub mod reconcile;
pub mod watch;
pub mod wheels;
pub mod zato;

pub use muster_proto::files;
