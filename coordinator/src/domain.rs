//! The coordinator's domain: clusters, hosts, join tokens, assignments, components' status,
//! bootstrap tasks, events, and the inputs of a host's plan. Plain data, read and written by the
//! store ([`crate::store`], which re-exports them) and read by the pure rules ([`crate::policy`],
//! [`crate::planner`], [`crate::condition`]), which so depend on no storage.

use std::collections::BTreeMap;
use std::fmt;

use muster_proto::v1::{self, OdbType, Role};

/// The ODB settings of a Zato cluster, as Zato's `--odb-*` options carry them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OdbSettings {
    pub odb_type: OdbType,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub db_name: String,
    pub postgresql_schema: String,
}

/// The secrets of one cluster. Debug shows none of them.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterSecrets {
    /// Empty when the ODB needs no password (SQLite).
    pub odb_password: String,
    pub secret_key: String,
    pub jwt_secret: String,
    pub admin_invoke_password: String,
}

impl fmt::Debug for ClusterSecrets {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("ClusterSecrets(..)")
    }
}

#[derive(Debug, Clone)]
pub struct NewCluster {
    pub name: String,
    pub description: String,
    pub odb: OdbSettings,
    pub secrets: ClusterSecrets,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    pub id: String,
    pub name: String,
    pub description: String,
    pub odb: OdbSettings,
    pub has_odb_password: bool,
    pub created_at_ms: i64,
    /// The server the scheduler points at, chosen by health; empty until a server is healthy.
    pub scheduler_target: String,
    /// A server of the cluster has been healthy: its ODB holds Zato's internal services, and its
    /// servers no longer start one first ([`crate::policy::first_server`]).
    pub servers_started: bool,
    /// Until then, the server created and started first; the others wait for it.
    pub first_server: String,
    /// The revision of its services ([`muster_proto::services::revision`]); empty when none.
    pub services_revision: String,
    /// The revision of its configuration ([`muster_proto::config::revision`]); empty when none.
    pub config_revision: String,
    /// The revision of its Python dependencies ([`muster_proto::python::revision`]); empty when
    /// none.
    pub python_revision: String,
    /// The revision of its user-config files ([`muster_proto::user_conf::revision`]); empty
    /// when none.
    pub user_conf_revision: String,
    /// Its ODB's generation: 0 for the ODB it was created on, one more for each rebuild on an
    /// empty one ([`crate::store::Store::rebuild_odb`]).
    pub odb_epoch: u64,
    /// A server created under the current generation reports that the ODB answers and holds no
    /// row of the cluster: it was replaced by an empty one.
    pub odb_empty: bool,
    /// One more for each rolling restart of its servers ([`crate::store::Store::restart_servers`]).
    pub restart_epoch: u64,
    /// An operator holds its restart turn ([`crate::store::Store::pause_rollout`]).
    pub rollout_paused: bool,
    /// Its servers' settings ([`muster_proto::server_settings`]), as checked.
    pub server_settings: BTreeMap<String, String>,
    /// Why Muster paused its restart turn (a server missed its healthy deadline); empty when
    /// an operator paused it, or it is not paused.
    pub rollout_pause_reason: String,
    /// Why `auto_revert` undid its last rollout of server settings; empty once another starts.
    pub rollout_revert_reason: String,
    /// What its rollouts do when a server fails them.
    pub rollout_strategy: muster_proto::rollout::Strategy,
    /// After an undo of server settings: servers started under this restart epoch already run
    /// the current settings ([`crate::policy::RestartGoal::same_epoch`]).
    pub restart_epoch_same: Option<u64>,
    /// The restart epochs of its dashboards, load balancers and scheduler, by role
    /// (`web-admin`, `load-balancer`, `scheduler`): one more for each rolling restart of the
    /// role; a role left out: 0.
    pub role_restart_epochs: BTreeMap<String, u64>,
    /// The settings of its scheduler and dashboards, by role (`scheduler`, `web-admin`;
    /// [`muster_proto::server_settings`]), as checked; a role left out: none.
    pub role_settings: BTreeMap<String, BTreeMap<String, String>>,
}

impl Cluster {
    /// The restart epoch of its components of `role`: the servers' [`Cluster::restart_epoch`],
    /// the others' [`Cluster::role_restart_epochs`].
    pub fn restart_epoch_of(&self, role: Role) -> u64 {
        if role == Role::Server {
            return self.restart_epoch;
        }
        self.role_restart_epochs
            .get(role.cli_name())
            .copied()
            .unwrap_or(0)
    }

    /// The settings of its components of `role`: the servers' [`Cluster::server_settings`], the
    /// scheduler's and dashboards' [`Cluster::role_settings`]; none for a load balancer.
    pub fn settings_of(&self, role: Role) -> BTreeMap<String, String> {
        if role == Role::Server {
            return self.server_settings.clone();
        }
        self.role_settings
            .get(role.cli_name())
            .cloned()
            .unwrap_or_default()
    }
}

/// A rolling restart [`crate::store::Store::restart_roles`] started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollingRestart {
    /// The servers' restart epoch (unchanged when they do not restart).
    pub restart_epoch: u64,
    /// The servers that restart, by name.
    pub servers: Vec<String>,
    /// The dashboards, load balancers and scheduler that restart, in Zato's order, by role
    /// then name.
    pub others: Vec<(Role, String)>,
}

/// What [`crate::store::Store::configure_rollout`] changes: each `Some` field; the others stay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RolloutChange {
    pub healthy_deadline_seconds: Option<u32>,
    pub min_healthy_time_seconds: Option<u32>,
    pub auto_revert: Option<bool>,
    pub max_unavailable: Option<u32>,
}

/// What [`crate::store::Store::configure_rollout`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutConfigured {
    pub strategy: muster_proto::rollout::Strategy,
    pub changed: bool,
}

/// A rollout Muster stopped because a server missed its healthy deadline
/// ([`crate::store::Store::stop_failed_rollouts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoppedRollout {
    pub cluster: String,
    /// What happened to the server, as the event and status say it.
    pub reason: String,
    /// Its server settings were brought back (`auto_revert`) instead of the turn paused.
    pub reverted: bool,
}

/// What [`crate::store::Store::configure_servers`] (or [`crate::store::Store::configure_role`])
/// did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServersConfigured {
    /// The cluster's server settings (the role's) now.
    pub settings: BTreeMap<String, String>,
    /// Whether they changed (and so a rolling restart started, if the cluster has servers: its
    /// components of the role).
    pub changed: bool,
    /// The restart epoch the servers (the role's components) restart under (the current one
    /// when nothing changed).
    pub restart_epoch: u64,
    /// The servers (the role's components) that restart, by name.
    pub servers: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct NewJoinToken {
    pub id: String,
    pub secret_hash: String,
    pub cluster: String,
    pub roles: Vec<Role>,
    /// Labels the hosts it enrolls get (what selectors match).
    pub labels: BTreeMap<String, String>,
    pub description: String,
    pub expires_at_ms: i64,
    /// 0 means unlimited.
    pub max_uses: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinToken {
    pub id: String,
    pub cluster: String,
    pub roles: Vec<Role>,
    /// Labels the hosts it enrolls get (what selectors match).
    pub labels: BTreeMap<String, String>,
    pub description: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    /// 0 means unlimited.
    pub max_uses: u32,
    pub uses: u32,
    /// `None` while the token is not revoked.
    pub revoked_at_ms: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewHost {
    pub id: String,
    pub name: String,
    pub advertise_address: String,
    pub labels: BTreeMap<String, String>,
}

/// Whether a host's heartbeats arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostState {
    /// Enrolled, and has not reported yet.
    New,
    /// Reports within the heartbeat TTL.
    Up,
    /// Has not reported within the heartbeat TTL.
    Down,
}

impl HostState {
    pub const ALL: [HostState; 3] = [HostState::New, HostState::Up, HostState::Down];

    /// The word stored in the database and shown to people.
    pub fn as_str(self) -> &'static str {
        match self {
            HostState::New => "new",
            HostState::Up => "up",
            HostState::Down => "down",
        }
    }

    pub fn from_word(word: &str) -> Option<HostState> {
        HostState::ALL
            .into_iter()
            .find(|state| state.as_str() == word)
    }
}

impl PartialEq<&str> for HostState {
    fn eq(&self, word: &&str) -> bool {
        self.as_str() == *word
    }
}

impl fmt::Display for HostState {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub id: String,
    pub name: String,
    pub advertise_address: String,
    /// Set by an admin: the labels of the join token it enrolled with.
    pub labels: BTreeMap<String, String>,
    /// The cluster it belongs to (that of its join token); empty when none: created without a
    /// token, or enrolled before memberships were recorded and running no cluster's components.
    pub cluster: String,
    /// The other clusters an admin admitted it to (`muster host admit`), by name; filled by
    /// `list_hosts` and `get_host` (empty elsewhere).
    pub admitted: Vec<String>,
    pub state: HostState,
    pub enrolled_at_ms: i64,
    /// `None` while the host has never reported.
    pub last_seen_ms: Option<i64>,
    /// The generation of what the host must run; bumped with every change to it.
    pub generation: u64,
    /// The generation the host last reported applied; 0 before its first report.
    pub applied_generation: u64,
    /// A drained host keeps its components created but stopped, and serves in no backend.
    pub drained: bool,
    /// How often its agent reports, as it last said; 0 when it did not say.
    pub heartbeat_interval_ms: u32,
    /// The Zato installations its agent can run servers with, as it last said (`default`
    /// first); empty when it did not say.
    pub zato_installs: Vec<String>,
}

/// A request to run a component of a role on a host.
#[derive(Debug, Clone)]
pub struct NewAssignment {
    pub cluster: String,
    pub role: Role,
    /// `None` for the default: `serverN` (the first free N) for servers, the role's name otherwise.
    pub name: Option<String>,
    pub host: String,
    /// `None` for the role's default: the first free port from 17010 on the host for servers,
    /// 31530 for the scheduler, 8183 for web-admin, 11223 for the load balancer.
    pub port: Option<u16>,
    /// A load balancer's settings, defaults filled in; `None` for other roles.
    pub load_balancer: Option<v1::LoadBalancerSettings>,
}

/// A component assigned to a host, with what the host last reported of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub cluster: String,
    pub role: Role,
    pub name: String,
    pub host: String,
    pub port: u16,
    pub created_at_ms: i64,
    /// A load balancer's settings, defaults filled in; `None` for other roles.
    pub load_balancer: Option<v1::LoadBalancerSettings>,
    /// `None` while the host has not reported this component.
    pub status: Option<ComponentStatus>,
}

/// What an agent reported of one component (or bootstrap task); `Default` is nothing reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentStatus {
    pub cluster: String,
    pub role: Role,
    pub name: String,
    pub state: v1::ComponentState,
    pub healthy: bool,
    pub last_error: String,
    pub restarts: u32,
    /// A load balancer's backend servers as its HAProxy sees them, by name.
    pub backends: Vec<v1::BackendServerState>,
    /// A server's: the services revision its agent found deployed on it; empty before.
    pub services_revision: String,
    /// The importing server's: the configuration revision its agent imported; empty before.
    pub config_revision: String,
    /// A server's: the Python dependencies revision its running process was started with.
    pub python_revision: String,
    /// A server's: the desired revision once installed beside it; empty before.
    pub python_installed: String,
    /// A server's: the user-config revision its agent found in place on it; empty before.
    pub user_conf_revision: String,
    /// The ODB generation it was created under ([`Cluster::odb_epoch`]).
    pub odb_epoch: u64,
    /// A server's: its ODB answers and holds no row of the cluster.
    pub odb_empty: bool,
    /// The restart epoch its running process was started under (a load balancer's: HAProxy
    /// reloaded under; [`Cluster::restart_epoch_of`]).
    pub restart_epoch: u64,
    /// Its agent restarts it at its turn in a rolling restart of its role and reports its
    /// `restart_epoch` (always true of a server's).
    pub rolls: bool,
    /// A server's that restarted into a rollout and is healthy: since when (ms) it has been
    /// held so, out of rotation, for the cluster's `min_healthy_time`; the coordinator's own,
    /// never reported. `None` when it is in no rollout or through it.
    pub rollout_held_since: Option<i64>,
}

/// One of a cluster's once-only bootstrap tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BootstrapTask {
    Odb,
    Cluster,
}

impl BootstrapTask {
    pub const ALL: [BootstrapTask; 2] = [BootstrapTask::Odb, BootstrapTask::Cluster];

    pub fn as_str(self) -> &'static str {
        match self {
            BootstrapTask::Odb => "odb",
            BootstrapTask::Cluster => "cluster",
        }
    }
}

/// Where a cluster's bootstrap stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapState {
    pub cluster: String,
    pub task: BootstrapTask,
    /// The host chosen to run it.
    pub host: String,
    pub done: bool,
    pub last_error: String,
}

/// What an agent reported of a bootstrap task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapReport {
    pub cluster: String,
    pub task: BootstrapTask,
    pub done: bool,
    pub last_error: String,
}

/// What recording a heartbeat did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusRecorded {
    /// The generation the host must run.
    pub desired_generation: u64,
    /// False when the report changed nothing (nothing was written, not even the host's liveness).
    pub written: bool,
    /// The reported components that are not assigned to the host, which were not recorded
    /// (`ROLE NAME of cluster CLUSTER`): a host reports only for its own components.
    pub ignored: Vec<String>,
}

/// A heartbeat, as the store records it.
#[derive(Debug, Clone)]
pub struct StatusReport {
    pub applied_generation: u64,
    pub advertise_address: String,
    /// How often the agent reports; 0 when it does not say.
    pub heartbeat_interval_ms: u32,
    /// The Zato installations the agent can run servers with; empty when it does not say.
    pub zato_installs: Vec<String>,
    pub components: Vec<ComponentStatus>,
    pub bootstrap: Vec<BootstrapReport>,
}

/// Everything the planner needs to render one host's desired state, read at one generation.
#[derive(Debug, Clone)]
pub struct PlanInputs {
    pub host: Host,
    /// Every assignment of every cluster the host has an assignment in.
    pub assignments: Vec<Assignment>,
    /// The enrolled hosts those assignments name, by name.
    pub hosts: BTreeMap<String, Host>,
    /// Those clusters, with their secrets.
    pub clusters: BTreeMap<String, (Cluster, ClusterSecrets)>,
    /// Their services (Python modules, with their contents), by cluster; only for clusters in
    /// which the host runs a server, and none for a cluster without any.
    pub services: BTreeMap<String, Vec<v1::ServiceFile>>,
    /// Their configuration (enmasse files with their contents, and env values), by cluster; as
    /// `services`, only where the host runs a server.
    pub config: BTreeMap<String, (Vec<v1::EnmasseFile>, BTreeMap<String, String>)>,
    /// The objects earlier revisions of their configuration imported and the current one lacks,
    /// to be deleted by the importing server's agent; as `config`.
    pub config_removals: BTreeMap<String, Vec<v1::EnmasseObject>>,
    /// Their Python dependencies (requirements, and wheels without their contents), by cluster;
    /// as `services`, only where the host runs a server.
    pub python: BTreeMap<String, (String, Vec<v1::PythonWheel>)>,
    /// Their user-config files (secrets, opened), by cluster; as `services`, only where the
    /// host runs a server.
    pub user_conf: BTreeMap<String, Vec<v1::UserConfFile>>,
    pub bootstrap: Vec<BootstrapState>,
}

/// Who did something, for the event log: an admin token's id, a host, or the coordinator itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(pub String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: i64,
    pub at_ms: i64,
    pub kind: String,
    /// Empty when the event concerns no cluster.
    pub cluster: String,
    /// Empty when the event concerns no host.
    pub host: String,
    pub actor: String,
    pub message: String,
}
