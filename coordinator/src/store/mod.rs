//! The coordinator's only state: one [`Store`] trait over the ODB.
//!
//! Durable here: clusters with their sealed secrets, join tokens and admin tokens (hashes only),
//! hosts, and the append-only event log. Nothing is cached in a coordinator's memory, so any number
//! of coordinators can share one PostgreSQL or MySQL database. Every change and its event are written
//! in one transaction.
//!
//! [`SqlStore`] implements the trait for SQLite, PostgreSQL and MySQL/MariaDB (one implementation
//! over sqlx's `Any` driver, with migrations per dialect and SQL per dialect where they differ); the
//! conformance suite in `tests/store_conformance/` runs the same behaviour tests on all three.
//! The APIs hold it behind [`Writes`], which retries a write that collided and wakes the
//! desired-state watches after one that moved something.

mod sql;
mod writes;

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use muster_proto::v1::{self, Role};

pub use crate::domain::*;
pub use sql::{DatabaseUrl, Dialect, SqlStore, statements};
pub use writes::Writes;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{kind} '{name}' not found")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} '{name}' already exists")]
    AlreadyExists { kind: &'static str, name: String },
    #[error("{0}")]
    Conflict(String),
    /// What was given is refused (the caller checks it first; the store checks it again).
    #[error("{0}")]
    Invalid(String),
    #[error("join token {id} refused: {reason}")]
    TokenRefused { id: String, reason: TokenRefusal },
    #[error("invalid database URL '{url}': {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot open the database at {url}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot apply the database migrations at {url}")]
    Migrate {
        url: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("database error while trying to {action}")]
    Database {
        action: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Secret(#[from] crate::secrets::SecretError),
}

/// Why a join token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    /// No such token: never issued, or its cluster was deleted.
    Unknown,
    WrongSecret,
    Revoked,
    Expired,
    UsedUp,
    /// The host asked for a role the token does not allow.
    RoleNotAllowed,
    /// The host's name holds assignments the token does not allow: another cluster's, or roles
    /// the token does not name.
    HostNameClaimed,
    /// The agent asked for a label the token does not give it.
    LabelNotBound,
}

impl TokenRefusal {
    /// The reason's label in `/metrics` (`muster_enrollments_refused_total{reason=...}`).
    pub fn label(&self) -> &'static str {
        match self {
            TokenRefusal::Unknown => "unknown-token",
            TokenRefusal::WrongSecret => "wrong-secret",
            TokenRefusal::Revoked => "revoked",
            TokenRefusal::Expired => "expired",
            TokenRefusal::UsedUp => "used-up",
            TokenRefusal::RoleNotAllowed => "role-not-allowed",
            TokenRefusal::HostNameClaimed => "host-name-claimed",
            TokenRefusal::LabelNotBound => "label-not-bound",
        }
    }
}

impl fmt::Display for TokenRefusal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            TokenRefusal::Unknown => "no such token (never issued, or its cluster was deleted)",
            TokenRefusal::WrongSecret => "the secret does not match",
            TokenRefusal::Revoked => "it was revoked",
            TokenRefusal::Expired => "it has expired",
            TokenRefusal::UsedUp => "it has been used as often as it allows",
            TokenRefusal::RoleNotAllowed => "it does not allow a role this host asked for",
            TokenRefusal::HostNameClaimed => {
                "this host name holds assignments the token does not allow (another cluster's, or \
                 roles it does not name); enroll under another name, or with a token that allows them"
            }
            TokenRefusal::LabelNotBound => {
                "the agent's labels are not the token's: a host's labels come from its join token \
                 (muster token create --label KEY=VALUE), and the agent may only repeat them"
            }
        })
    }
}

#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// A round trip to the database.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Commits a write to the database (one row kept for this), for health checks: a store that
    /// answers reads but cannot write is not healthy.
    async fn probe_write(&self) -> Result<(), StoreError>;

    async fn create_cluster(&self, new: NewCluster, actor: &Actor) -> Result<Cluster, StoreError>;
    /// Every cluster, oldest first.
    async fn list_clusters(&self) -> Result<Vec<Cluster>, StoreError>;
    async fn get_cluster(&self, name: &str) -> Result<Cluster, StoreError>;
    /// Opens the cluster's sealed secrets; only for what must send them to a host.
    async fn cluster_secrets(&self, name: &str) -> Result<ClusterSecrets, StoreError>;
    /// Deletes the cluster and its join tokens.
    async fn delete_cluster(&self, name: &str, actor: &Actor) -> Result<(), StoreError>;

    async fn create_join_token(
        &self,
        new: NewJoinToken,
        actor: &Actor,
    ) -> Result<JoinToken, StoreError>;
    /// Join tokens, newest first, of one cluster or of all.
    async fn list_join_tokens(&self, cluster: Option<&str>) -> Result<Vec<JoinToken>, StoreError>;
    async fn revoke_join_token(&self, id: &str, actor: &Actor) -> Result<JoinToken, StoreError>;
    /// Checks a presented token and counts one use of it, atomically: of two coordinators redeeming
    /// the last use at once, one is refused.
    async fn redeem_join_token(
        &self,
        id: &str,
        secret_hash: &str,
        now_ms: i64,
    ) -> Result<JoinToken, StoreError>;

    async fn add_admin_token(
        &self,
        id: &str,
        token_hash: &str,
        description: &str,
    ) -> Result<(), StoreError>;
    /// The id of the admin token with this hash, if there is one.
    async fn find_admin_token(&self, token_hash: &str) -> Result<Option<String>, StoreError>;

    async fn create_host(&self, new: NewHost, actor: &Actor) -> Result<Host, StoreError>;
    /// Every host, by name.
    async fn list_hosts(&self) -> Result<Vec<Host>, StoreError>;
    async fn get_host(&self, name: &str) -> Result<Host, StoreError>;

    /// Assigns a component to a host (which may enroll later), choosing its name and port when
    /// not given, and bumps the generation of the hosts whose desired state it changes.
    async fn create_assignment(
        &self,
        new: NewAssignment,
        actor: &Actor,
    ) -> Result<Assignment, StoreError>;
    /// Unassigns the component of `role` on `host` (named `name`, or the only one), bumping the
    /// generation of the hosts whose desired state it changes, this one included.
    async fn delete_assignment(
        &self,
        cluster: &str,
        role: Role,
        host: &str,
        name: Option<&str>,
        actor: &Actor,
    ) -> Result<Assignment, StoreError>;
    /// Changes the settings of the load balancer on `host` (named `name`, or the only one): each
    /// field of `changes` that is set replaces the stored one. Bumps the host's generation.
    /// Replaces a cluster's services with `files` (checked, hashed, in name order); bumps the
    /// hosts of its servers when the revision changed. Returns the revision and whether it
    /// changed.
    async fn set_services(
        &self,
        cluster: &str,
        files: &[v1::ServiceFile],
        actor: &Actor,
    ) -> Result<(String, bool), StoreError>;
    /// Replaces a cluster's configuration (checked; every placeholder must have a value); bumps
    /// the hosts of its servers when the revision changed.
    async fn set_config(
        &self,
        cluster: &str,
        files: &[v1::EnmasseFile],
        env: &BTreeMap<String, String>,
        actor: &Actor,
    ) -> Result<(String, bool), StoreError>;
    /// A cluster's enmasse files and env values; without `with_content`, names and hashes only
    /// (the env values' names, with empty values).
    async fn cluster_config(
        &self,
        cluster: &str,
        with_content: bool,
    ) -> Result<(Vec<v1::EnmasseFile>, BTreeMap<String, String>), StoreError>;
    /// Replaces a cluster's Python dependencies (requirements and wheels, checked); bumps the
    /// hosts of its servers when the revision changed.
    async fn set_python(
        &self,
        cluster: &str,
        requirements: &str,
        wheels: &[v1::PythonWheel],
        actor: &Actor,
    ) -> Result<(String, bool), StoreError>;
    /// A cluster's requirements and wheels (names, hashes and sizes; no contents).
    async fn cluster_python(
        &self,
        cluster: &str,
    ) -> Result<(String, Vec<v1::PythonWheel>), StoreError>;
    /// One of a cluster's wheels with its content, by hash; `None` when it has no such wheel.
    async fn python_wheel(
        &self,
        cluster: &str,
        sha256: &str,
    ) -> Result<Option<v1::PythonWheel>, StoreError>;
    /// Rebuilds a cluster on its ODB after a server reported it empty; returns the new ODB
    /// generation ([`Cluster::odb_epoch`]). Refused (`Conflict`) when none reports it empty.
    async fn rebuild_odb(&self, cluster: &str, actor: &Actor) -> Result<u64, StoreError>;
    /// Starts a rolling restart of a cluster's servers; returns its restart epoch
    /// ([`Cluster::restart_epoch`]) and the servers, by name. Refused (`Conflict`) when it has
    /// none.
    async fn restart_servers(
        &self,
        cluster: &str,
        actor: &Actor,
    ) -> Result<(u64, Vec<String>), StoreError>;
    /// Starts a rolling restart of a cluster's components of `roles` (servers, dashboards, load
    /// balancers, the scheduler), taken in Zato's order ([`crate::policy::ROLLOUT_ORDER`]): the
    /// servers as [`Store::restart_servers`] does, each other role under its next restart epoch
    /// ([`Cluster::role_restart_epochs`]). Refused (`Conflict`) for a role the cluster has no
    /// component of, before anything changes.
    async fn restart_roles(
        &self,
        cluster: &str,
        roles: &[Role],
        actor: &Actor,
    ) -> Result<RollingRestart, StoreError>;
    /// Sets (`set`) and unsets (`unset`) server settings of a cluster
    /// ([`muster_proto::server_settings`]); a change starts a rolling restart of its servers
    /// (none when it has no server yet). Refused (`Invalid`) for a key or value outside the
    /// allowlist, before anything changes.
    async fn configure_servers(
        &self,
        cluster: &str,
        set: &BTreeMap<String, String>,
        unset: &[String],
        actor: &Actor,
    ) -> Result<ServersConfigured, StoreError>;
    /// Sets (`set`) and unsets (`unset`) the settings of a cluster's scheduler or dashboards
    /// (`role`, [`muster_proto::server_settings`]); a change moves the role's restart epoch on
    /// (when the cluster has components of it), and each restarts with them at the role's turn.
    /// Refused (`Invalid`) for another role, or a name or value outside the role's allowlist,
    /// before anything changes.
    async fn configure_role(
        &self,
        cluster: &str,
        role: Role,
        set: &BTreeMap<String, String>,
        unset: &[String],
        actor: &Actor,
    ) -> Result<ServersConfigured, StoreError>;
    /// Brings back a cluster's server settings from before their last change, with a rolling
    /// restart (`muster rollout undo`). Refused (`Conflict`) when they never changed.
    async fn undo_server_settings(
        &self,
        cluster: &str,
        actor: &Actor,
    ) -> Result<ServersConfigured, StoreError>;
    /// Sets a cluster's rollout strategy (what `change` names; the rest as it was); refused
    /// (`Invalid`) out of range.
    async fn configure_rollout(
        &self,
        cluster: &str,
        change: RolloutChange,
        actor: &Actor,
    ) -> Result<RolloutConfigured, StoreError>;
    /// Stops the rollouts in which a server missed its cluster's healthy deadline
    /// ([`muster_proto::rollout::Strategy`]): the cluster's restart turn paused with the reason,
    /// or with `auto_revert` its server settings brought back. The coordinators' rollout watch
    /// calls it; a turn already paused is left.
    async fn stop_failed_rollouts(&self, now_ms: i64) -> Result<Vec<StoppedRollout>, StoreError>;
    /// Lets the servers held healthy for their cluster's `min_healthy_time` since they restarted
    /// into a rollout back into rotation (and the next server's turn come); returns them.
    async fn release_held_servers(&self, now_ms: i64) -> Result<Vec<String>, StoreError>;
    /// Pauses (`paused`) or resumes a cluster's restart turn ([`Cluster::rollout_paused`]);
    /// returns whether it changed.
    async fn pause_rollout(
        &self,
        cluster: &str,
        paused: bool,
        actor: &Actor,
    ) -> Result<bool, StoreError>;
    /// Replaces a cluster's user-config files (checked; sealed); bumps the hosts of its servers
    /// when the revision changed.
    async fn set_user_conf(
        &self,
        cluster: &str,
        files: &[v1::UserConfFile],
        actor: &Actor,
    ) -> Result<(String, bool), StoreError>;
    /// A cluster's user-config files, opened; their names only (empty contents) without
    /// `with_content`.
    async fn cluster_user_conf(
        &self,
        cluster: &str,
        with_content: bool,
    ) -> Result<Vec<v1::UserConfFile>, StoreError>;
    /// A cluster's services: names and hashes, with the contents when `with_content`.
    async fn cluster_services(
        &self,
        cluster: &str,
        with_content: bool,
    ) -> Result<Vec<v1::ServiceFile>, StoreError>;
    async fn configure_load_balancer(
        &self,
        cluster: &str,
        host: &str,
        name: Option<&str>,
        changes: &v1::LoadBalancerSettings,
        actor: &Actor,
    ) -> Result<Assignment, StoreError>;
    /// Assignments with their last reported status, of one cluster or of all.
    async fn list_assignments(&self, cluster: Option<&str>) -> Result<Vec<Assignment>, StoreError>;
    /// Where the bootstrap tasks of one cluster or of all stand (none before a cluster's bootstrap
    /// host is chosen).
    async fn list_bootstrap(
        &self,
        cluster: Option<&str>,
    ) -> Result<Vec<BootstrapState>, StoreError>;

    /// Redeems a join token and records the new host, in one transaction; a cluster whose first
    /// component waits on this host gets this host as its bootstrap host.
    /// Also the auto-join: the host gets a component of each role the token names (or of each of
    /// `requested`, which the token must allow) that it does not have yet in the token's cluster.
    async fn enroll_host(
        &self,
        token_id: &str,
        secret_hash: &str,
        new: NewHost,
        requested: &[Role],
    ) -> Result<(Host, JoinToken), StoreError>;
    async fn get_host_by_id(&self, id: &str) -> Result<Host, StoreError>;
    /// The host's current generation; `None` when the host no longer exists.
    async fn host_generation(&self, id: &str) -> Result<Option<u64>, StoreError>;
    /// What the planner needs to render the host's desired state.
    async fn plan_inputs(&self, host_id: &str) -> Result<PlanInputs, StoreError>;
    /// Records a heartbeat: marks the host up, stores its components' status, and records the
    /// bootstrap tasks it finished. A report that changes nothing the store holds (the steady
    /// state) is only read, never written: its liveness goes through [`Store::record_liveness`].
    async fn record_status(
        &self,
        host_id: &str,
        report: StatusReport,
    ) -> Result<StatusRecorded, StoreError>;
    /// Records that each (host id, time in ms) was seen alive, in one transaction; returns the ids
    /// of those it did not record because the host is not up (marked down meanwhile, or removed):
    /// their next heartbeat must go through [`Store::record_status`].
    async fn record_liveness(&self, seen: &[(String, i64)]) -> Result<Vec<String>, StoreError>;
    /// The (host id, generation) of every host, or of those whose generation moved at or after
    /// `changed_since_ms`: one query for all the watch streams a coordinator holds.
    async fn host_generations(
        &self,
        changed_since_ms: Option<i64>,
    ) -> Result<Vec<(String, u64)>, StoreError>;
    /// Marks down every up host whose last heartbeat is older than `ttl_ms`; returns their names.
    async fn mark_stale_hosts_down(
        &self,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Vec<String>, StoreError>;

    /// Drains (or undrains) a host, bumping its generation and its clusters' hosts'.
    /// Admits an enrolled host to `cluster` besides its own: that cluster's components (and
    /// secrets) may then go there. Doing it again changes nothing.
    async fn admit_host(
        &self,
        name: &str,
        cluster: &str,
        actor: &Actor,
    ) -> Result<Host, StoreError>;
    async fn set_host_drained(
        &self,
        name: &str,
        drained: bool,
        actor: &Actor,
    ) -> Result<Host, StoreError>;
    /// Removes a host with its assignments and reported status. Unless `force`, the host must be
    /// drained and have applied that (or never have reported).
    async fn remove_host(&self, name: &str, force: bool, actor: &Actor) -> Result<(), StoreError>;

    /// Events of one cluster (with its hosts' own events: up, down, drained) or of all: the
    /// newest `limit`, newest first; or with `after`, the first `limit` with a greater id, oldest
    /// first (to follow the log).
    async fn list_events(
        &self,
        cluster: Option<&str>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError>;
    /// Removes the events older than `older_than_ms` and the oldest beyond the newest `keep`;
    /// returns how many went.
    async fn prune_events(&self, older_than_ms: i64, keep: u64) -> Result<u64, StoreError>;
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    let elapsed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
}

impl StoreError {
    /// Whether the database aborted the transaction only because it collided with another one (a
    /// deadlock, a serialization failure, a busy SQLite file): running it again will likely work.
    pub fn is_transient(&self) -> bool {
        let StoreError::Database {
            source: sqlx::Error::Database(error),
            ..
        } = self
        else {
            return false;
        };
        let code = error.code();
        let message = error.message().to_ascii_lowercase();
        matches!(code.as_deref(), Some("40P01" | "40001"))
            || message.contains("deadlock")
            || message.contains("database is locked")
    }
}

/// How often [`retry_transient`] runs an operation at the most.
pub const TRANSIENT_ATTEMPTS: u32 = 5;

/// Runs a store operation again (up to [`TRANSIENT_ATTEMPTS`] times, with a short jittered pause)
/// while it fails only because its transaction collided with another one.
pub async fn retry_transient<T, F, Fut>(mut operation: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 1;
    loop {
        match operation().await {
            Err(error) if error.is_transient() && attempt < TRANSIENT_ATTEMPTS => {
                tracing::debug!(attempt, error = %crate::error_chain(&error), "transaction collided; running it again");
                let pause = muster_proto::daemon::backoff(
                    attempt,
                    std::time::Duration::from_millis(20),
                    std::time::Duration::from_millis(200),
                );
                tokio::time::sleep(pause).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}
