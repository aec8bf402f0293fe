//! The cluster's rules, as pure functions: the store gathers what they need and calls them inside
//! its transaction, then writes what they decide. A rule is tested here in milliseconds, without a
//! database.

use muster_proto::v1::{ComponentState, Role};

/// A component already assigned, as the placement rules see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub cluster: String,
    pub role: Role,
    pub name: String,
    pub host: String,
    pub port: u16,
}

/// A component asked for: `name` and `port` `None` for the defaults.
#[derive(Debug, Clone, Copy)]
pub struct PlacementRequest<'a> {
    pub cluster: &'a str,
    /// The cluster keeps its ODB in an SQLite file on one host (no `--odb-db-name` every host
    /// shares): all its components must run there.
    pub odb_on_one_host: bool,
    pub role: Role,
    pub name: Option<&'a str>,
    pub host: &'a str,
    pub port: Option<u16>,
}

/// Why a component cannot be placed as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlacementRefusal {
    /// Against a rule of the cluster or the host.
    Conflict(String),
    /// The component exists; what names it.
    AlreadyExists(String),
}

/// The name and port of a new component, by the placement rules: an SQLite ODB on one host keeps
/// every component on that host; a server asked for without a name is "a server of the cluster on
/// this host" (a second one there must be named) and is named `serverN`, the first free N; a
/// cluster has at most one scheduler; other roles are named after the role; a name is unique per
/// role in the cluster; a port is unique per host, by default the role's first free one.
/// `placed`: the components of the cluster and those on the host.
pub fn place(
    request: &PlacementRequest,
    placed: &[Placed],
) -> Result<(String, u16), PlacementRefusal> {
    let in_cluster: Vec<&Placed> = placed
        .iter()
        .filter(|other| other.cluster == request.cluster)
        .collect();
    let on_host: Vec<&Placed> = placed
        .iter()
        .filter(|other| other.host == request.host)
        .collect();
    if request.odb_on_one_host
        && let Some(elsewhere) = in_cluster.iter().find(|other| other.host != request.host)
    {
        return Err(PlacementRefusal::Conflict(format!(
            "cluster '{}' keeps its ODB in an SQLite file on host '{}', so all its components \
             must run there; use PostgreSQL or MySQL for a cluster of several hosts (or an \
             SQLite --odb-db-name that every host shares)",
            request.cluster, elsewhere.host
        )));
    }
    if request.role == Role::Server
        && request.name.is_none()
        && let Some(existing) = in_cluster
            .iter()
            .find(|other| other.role == Role::Server && other.host == request.host)
    {
        return Err(PlacementRefusal::AlreadyExists(format!(
            "server {} of cluster {} (on host {}; give a name for another server there)",
            existing.name, request.cluster, existing.host
        )));
    }
    if request.role == Role::Scheduler
        && let Some(existing) = in_cluster
            .iter()
            .find(|other| other.role == Role::Scheduler)
        && (existing.host != request.host || request.name.is_some_and(|name| name != existing.name))
    {
        return Err(PlacementRefusal::Conflict(format!(
            "cluster '{}' already has a scheduler ('{}' on host '{}'); a cluster runs at most one",
            request.cluster, existing.name, existing.host
        )));
    }
    let name = match request.name {
        Some(name) => name.to_owned(),
        None if request.role == Role::Server => (1..)
            .map(|number| format!("server{number}"))
            .find(|candidate| {
                !in_cluster
                    .iter()
                    .any(|other| other.role == Role::Server && &other.name == candidate)
            })
            .unwrap_or_default(),
        None => request.role.cli_name().to_owned(),
    };
    if let Some(existing) = in_cluster
        .iter()
        .find(|other| other.role == request.role && other.name == name)
    {
        return Err(PlacementRefusal::AlreadyExists(format!(
            "{} {name} of cluster {} (on host {})",
            request.role, request.cluster, existing.host
        )));
    }
    let taken: Vec<u16> = on_host.iter().map(|other| other.port).collect();
    let port = request
        .port
        .unwrap_or_else(|| muster_proto::zato::default_port(request.role, &taken));
    if let Some(holder) = on_host.iter().find(|other| other.port == port) {
        return Err(PlacementRefusal::Conflict(format!(
            "port {port} is already taken on host '{}' by {} {} of cluster {}",
            request.host, holder.role, holder.name, holder.cluster
        )));
    }
    Ok((name, port))
}

/// A server of the cluster, as the choice of the scheduler's target sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCandidate {
    pub name: String,
    /// The host it is assigned to.
    pub host: String,
    /// Its host is up (heartbeats arrive).
    pub host_up: bool,
    /// Its host is drained.
    pub host_drained: bool,
    /// It reports healthy.
    pub healthy: bool,
    /// It is out for its own restart in a rollout, within its cluster's `healthy_deadline`: it
    /// reports being restarted, or restarted into the rollout and has not been through it yet.
    pub rollout_restart: bool,
}

impl ServerCandidate {
    fn eligible(&self) -> bool {
        self.host_up && !self.host_drained && self.healthy
    }
}

/// A new server for the scheduler to point at, and why it moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerMove {
    pub server: String,
    pub host: String,
    pub reason: String,
}

impl SchedulerMove {
    /// The `scheduler.target` event's message.
    pub fn message(&self) -> String {
        format!(
            "scheduler now points at server {} on host {} ({})",
            self.server, self.host, self.reason
        )
    }
}

/// Where the cluster's scheduler points: at `current` while its host is up and it reports healthy,
/// otherwise at the first healthy server (by name) on an up host. `None` means no change: the
/// current one is fine, or no server is healthy (a scheduler pointed at nothing better stays).
/// A `current` out for its own restart in a rollout keeps it too, within the rollout's
/// `healthy_deadline`: a move restarts the scheduler (its `scheduler.conf` names the server),
/// and in a rolling restart every server takes its turn, so moving off each would restart the
/// scheduler once per server (twice for three real servers, seen), each time longer than the
/// server is out.
pub fn scheduler_target(current: &str, servers: &[ServerCandidate]) -> Option<SchedulerMove> {
    let current_server = servers.iter().find(|server| server.name == current);
    if current_server.is_some_and(|server| {
        server.eligible() || (server.host_up && !server.host_drained && server.rollout_restart)
    }) {
        return None;
    }
    let chosen = servers
        .iter()
        .filter(|server| server.eligible())
        .min_by(|left, right| left.name.cmp(&right.name))?;
    let reason = match current_server {
        None if current.is_empty() => "the first healthy server".to_owned(),
        None => format!("server {current} was unassigned"),
        Some(server) if server.host_drained => {
            format!("host {} of server {current} is drained", server.host)
        }
        Some(server) if !server.host_up => {
            format!("host {} of server {current} is down", server.host)
        }
        Some(server) => format!("server {current} on host {} is not healthy", server.host),
    };
    Some(SchedulerMove {
        server: chosen.name.clone(),
        host: chosen.host.clone(),
        reason,
    })
}

/// The server created and started alone while no server of the cluster has been healthy
/// (`started` false): on a fresh ODB each Zato server writes Zato's ~600 internal services at its
/// first start, two at once deadlock, and a server whose row has no address yet breaks the others'
/// calls to every server. The first by name on an up, undrained host, else the first by name;
/// `None` once the cluster's servers have started.
pub fn first_server(started: bool, servers: &[ServerCandidate]) -> Option<&ServerCandidate> {
    if started {
        return None;
    }
    servers
        .iter()
        .filter(|server| server.host_up && !server.host_drained)
        .min_by(|left, right| left.name.cmp(&right.name))
        .or_else(|| {
            servers
                .iter()
                .min_by(|left, right| left.name.cmp(&right.name))
        })
}

/// Why a server other than `first` on `host` is not created yet (what its host reports as the
/// reason).
pub fn first_start_hold(first: &str, host: &str) -> String {
    format!(
        "waiting for server {first} on host {host} to start first (the cluster's ODB is fresh: \
         its first server writes Zato's internal services alone)"
    )
}

/// Why a component of a cluster being rebuilt on an empty ODB is not created again yet: the
/// bootstrap on `host` has not run again.
pub fn odb_rebuild_hold(host: &str) -> String {
    format!(
        "waiting for the cluster's ODB to be created again (`zato create odb`, `zato create \
         cluster` on host {host}); it runs on as it was until it is created again"
    )
}

/// The first healthy server of a cluster whose servers have not started, and the
/// `cluster.servers-started` event it makes.
pub fn servers_started(servers: &[ServerCandidate]) -> Option<(&ServerCandidate, Happened)> {
    let healthy = servers
        .iter()
        .filter(|server| server.healthy)
        .min_by(|left, right| left.name.cmp(&right.name))?;
    let happened = Happened::new(
        "cluster.servers-started",
        format!(
            "server {} on host {} is healthy: the cluster's other servers are created now",
            healthy.name, healthy.host
        ),
    );
    Some((healthy, happened))
}

/// Something a rule says happened, for the store to record as an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Happened {
    pub kind: &'static str,
    pub message: String,
}

impl Happened {
    fn new(kind: &'static str, message: String) -> Self {
        Happened { kind, message }
    }
}

/// The events of a host's report about the host itself: it is up again (or for the first time),
/// its advertised address changed. `came_up`: this report changed the stored state to up;
/// `last_seen_ms` is what was stored.
pub fn host_report_events(
    came_up: bool,
    last_seen_ms: Option<i64>,
    now_ms: i64,
    address_before: &str,
    address_now: &str,
) -> Vec<Happened> {
    let mut happened = Vec::new();
    if came_up {
        let message = match last_seen_ms {
            None => "host reported for the first time".to_owned(),
            Some(last) => format!(
                "host reported again after {}s without heartbeats",
                (now_ms - last) / 1000
            ),
        };
        happened.push(Happened::new("host.up", message));
    }
    if address_before != address_now {
        happened.push(Happened::new(
            "host.address",
            format!("advertised address changed from {address_before} to {address_now}"),
        ));
    }
    happened
}

/// A change to a cluster's facts, named by who reads what changed: [`affected_hosts`] turns it
/// into the hosts whose desired state it alters, which the store bumps (one generation each), so
/// that the rule of who re-renders lives here, beside the planner whose reads it mirrors (and a
/// property test in `planner.rs` holds the two together).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// What every component of the cluster reads: the cluster itself (removed, its ODB rebuilt),
    /// its bootstrap, its scheduler's target, a member host's address or enrolment, a component
    /// of a role other than server arriving or leaving.
    Cluster,
    /// A server of the cluster arriving at or leaving `host`.
    Server { host: String },
    /// Which server starts first on a fresh ODB: only servers are held for it.
    Servers,
    /// A server's state, health or ODB generation: the importing server waits for a server on
    /// its way up.
    ServerProgress,
    /// Which servers run the cluster's services: its load balancers keep the others out of
    /// rotation.
    Balancers,
    /// A load balancer's report: whether a server on a drained host may stop.
    DrainingServers,
    /// What a rolling restart goes by (the servers' Python dependencies revisions, restart
    /// epochs and health, the load balancers' rotation): which server may restart, and which is
    /// out of rotation for it. `was_due`: the reporting server was due to restart before this
    /// report (its restart may just have ended).
    Restarts { was_due: bool },
    /// A member host went down or came up: servers read which other servers are on their way
    /// (the importing one waits for those on hosts that are up) and which may restart (for new
    /// Python dependencies, or a rolling restart), load balancers which one is out of rotation
    /// for it, drained server
    /// hosts whether a load balancer is still waited for.
    HostState,
}

/// One component of a cluster, as [`affected_hosts`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub role: Role,
    pub host: String,
    /// Its host is drained.
    pub host_drained: bool,
    /// A server's: it runs, with other Python dependencies than the cluster's or under an older
    /// restart epoch ([`RestartGoal::due`]; it restarts at its turn, within the cluster's
    /// `max_unavailable`).
    pub restart_due: bool,
}

/// A cluster as [`affected_hosts`] reads it: its components, whether its bootstrap is done,
/// whether it has a configuration to import and Python dependencies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterShape {
    pub members: Vec<Member>,
    pub bootstrapped: bool,
    pub has_config: bool,
    pub has_python: bool,
}

/// The hosts whose desired state `change` alters in `cluster`. The planner's reads, turned
/// around:
/// - before the bootstrap is done its tasks name a server, so a server moving moves every host;
///   after, a server's desired state names no other server but the scheduler, so only its host
///   and the hosts of the other roles (load balancers list the servers, the scheduler calls one,
///   dashboards call one) move, and the other servers' when they wait for servers: to import
///   the configuration, or to restart at their turn (Python dependencies, a rolling restart);
/// - servers read the cluster's environment (services, configuration, Python dependencies,
///   user config), load balancers the rotation that follows from it (a server lacking the
///   services is out while others have them; those restarting at their turn are
///   out); a drained server host reads whether the load balancers let it stop.
pub fn affected_hosts(
    change: &Change,
    cluster: &ClusterShape,
) -> std::collections::BTreeSet<String> {
    let of = |keep: &dyn Fn(&Member) -> bool| {
        cluster
            .members
            .iter()
            .filter(|member| keep(member))
            .map(|member| member.host.clone())
            .collect::<std::collections::BTreeSet<String>>()
    };
    let restarting = cluster.has_python || cluster.members.iter().any(|member| member.restart_due);
    let servers_and_balancers =
        || of(&|member| matches!(member.role, Role::Server | Role::LoadBalancer));
    match change {
        Change::Cluster => of(&|_| true),
        Change::Server { .. } if !cluster.bootstrapped => of(&|_| true),
        Change::Server { host } => {
            let servers_wait = cluster.has_config || restarting;
            let mut hosts = of(&|member| member.role != Role::Server || servers_wait);
            hosts.insert(host.clone());
            hosts
        }
        Change::Servers => of(&|member| member.role == Role::Server),
        Change::ServerProgress if cluster.has_config => of(&|member| member.role == Role::Server),
        Change::ServerProgress => std::collections::BTreeSet::new(),
        Change::HostState => servers_and_balancers(),
        Change::Balancers => of(&|member| member.role == Role::LoadBalancer),
        Change::DrainingServers => of(&|member| member.role == Role::Server && member.host_drained),
        // The turns of a rolling restart: its servers', and its other roles' in Zato's order.
        Change::Restarts { was_due } if restarting || *was_due => of(&|_| true),
        Change::Restarts { .. } => std::collections::BTreeSet::new(),
    }
}

/// The restart epochs of a cluster's dashboards, load balancers and scheduler
/// ([`crate::domain::Cluster::role_restart_epochs`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoleEpochs {
    pub web_admin: u64,
    pub load_balancer: u64,
    pub scheduler: u64,
}

impl RoleEpochs {
    /// From a cluster's `role_restart_epochs`, by role name.
    pub fn of(epochs: &std::collections::BTreeMap<String, u64>) -> RoleEpochs {
        let of = |role: Role| epochs.get(role.cli_name()).copied().unwrap_or(0);
        RoleEpochs {
            web_admin: of(Role::WebAdmin),
            load_balancer: of(Role::LoadBalancer),
            scheduler: of(Role::Scheduler),
        }
    }

    /// The restart epoch of `role` (0 for a server's: that is [`RestartGoal::restart_epoch`]).
    pub fn get(&self, role: Role) -> u64 {
        match role {
            Role::WebAdmin => self.web_admin,
            Role::LoadBalancer => self.load_balancer,
            Role::Scheduler => self.scheduler,
            _ => 0,
        }
    }
}

/// The order in which a cluster's roles take their turns in a rolling restart, Zato's (its
/// update guide: the dashboard, each server one at a time, the load balancer, the scheduler).
pub const ROLLOUT_ORDER: [Role; 4] = [
    Role::WebAdmin,
    Role::Server,
    Role::LoadBalancer,
    Role::Scheduler,
];

/// What a cluster's components restart for, at their turn: the cluster's Python dependencies
/// revision and its restart epoch (one more for each rolling restart an operator asks for, and
/// for each change of server settings) for its servers, and each other role's restart epoch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestartGoal<'a> {
    pub python_revision: &'a str,
    pub restart_epoch: u64,
    /// After an undo of server settings: servers started under this epoch already run the
    /// settings brought back, and are not due for it ([`crate::domain::Cluster::restart_epoch_same`]).
    pub same_epoch: Option<u64>,
    /// The dashboards', load balancers' and scheduler's restart epochs.
    pub others: RoleEpochs,
}

impl<'a> RestartGoal<'a> {
    /// What `cluster`'s components restart for now.
    pub fn of(cluster: &'a crate::domain::Cluster) -> RestartGoal<'a> {
        RestartGoal {
            python_revision: &cluster.python_revision,
            restart_epoch: cluster.restart_epoch,
            same_epoch: cluster.restart_epoch_same,
            others: RoleEpochs::of(&cluster.role_restart_epochs),
        }
    }

    /// Whether a component of `role` that reports `report` is due to restart: a server as
    /// [`Self::due`] says; a dashboard, load balancer or scheduler as [`Self::other_due`].
    pub fn due_as(&self, role: Role, report: &ComponentReport) -> bool {
        if role == Role::Server {
            return self.due(report);
        }
        self.other_due(role, report.state, report.restart_epoch, report.rolls)
    }

    /// Whether a dashboard, load balancer or scheduler is due in a rolling restart of its
    /// `role`: its agent rolls it, it runs (or started and is not answering, or its agent is
    /// restarting it), started (reloaded) under an older epoch of its role.
    pub fn other_due(
        &self,
        role: Role,
        state: ComponentState,
        restart_epoch: u64,
        rolls: bool,
    ) -> bool {
        rolls
            && matches!(
                state,
                ComponentState::Running
                    | ComponentState::Starting
                    | ComponentState::Unhealthy
                    | ComponentState::Restarting
            )
            && restart_epoch < self.others.get(role)
    }

    /// Whether a server that reports `report` is due to restart: its process is up (running,
    /// or started and not answering: a restart is what may mend it), with other Python
    /// dependencies or under an older restart epoch that is not the same one.
    pub fn due(&self, report: &ComponentReport) -> bool {
        self.due_with(report.state, &report.python_revision, report.restart_epoch)
    }

    /// [`Self::due`], from a report's three fields (no copy of the rest on the planner's path).
    pub fn due_with(
        &self,
        state: ComponentState,
        python_revision: &str,
        restart_epoch: u64,
    ) -> bool {
        matches!(
            state,
            ComponentState::Running | ComponentState::Starting | ComponentState::Unhealthy
        ) && (python_revision != self.python_revision
            || (restart_epoch < self.restart_epoch && Some(restart_epoch) != self.same_epoch))
    }
}

/// Where a server stands in the rollout it restarted into (both `None`: in none, or through
/// it), for [`muster_proto::rollout::Strategy`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RolloutProgress {
    /// Since when (ms) it has been in it: its healthy deadline runs from there.
    pub pending_since: Option<i64>,
    /// Since when it has been healthy without a break in it: once `min_healthy_time` has
    /// passed, it is through ([`rollout_held`]: the rollout watch, or its next report).
    pub healthy_since: Option<i64>,
}

/// A server's [`RolloutProgress`] after its report `now` at `now_ms`: it restarted into a
/// rollout when it reports another restart epoch or Python revision than `before`, whose
/// progress was `before_progress`. Through it once healthy without a break for
/// `min_healthy_ms`. Other roles, and a server reported for the first time (a new one is no
/// rollout's), are in none.
pub fn rollout_progress(
    role: Role,
    before: Option<&ComponentReport>,
    before_progress: RolloutProgress,
    now: &ComponentReport,
    now_ms: i64,
    min_healthy_ms: i64,
) -> RolloutProgress {
    let Some(before) = before.filter(|_| role == Role::Server) else {
        return RolloutProgress::default();
    };
    let restarted =
        before.restart_epoch != now.restart_epoch || before.python_revision != now.python_revision;
    let pending_since = if restarted {
        Some(now_ms)
    } else {
        before_progress.pending_since
    };
    if pending_since.is_none() {
        return RolloutProgress::default();
    }
    let healthy_since = match (now.healthy, restarted) {
        (false, _) => None,
        (true, true) => Some(now_ms),
        (true, false) => before_progress.healthy_since.or(Some(now_ms)),
    };
    let progress = RolloutProgress {
        pending_since,
        healthy_since,
    };
    if rollout_held(progress, now_ms, min_healthy_ms) {
        RolloutProgress::default()
    } else {
        progress
    }
}

/// Whether a server in a rollout has been healthy without a break for `min_healthy_ms` at
/// `now_ms`: it is through, and the next server's turn may come.
pub fn rollout_held(progress: RolloutProgress, now_ms: i64, min_healthy_ms: i64) -> bool {
    progress
        .healthy_since
        .is_some_and(|since| now_ms - since >= min_healthy_ms)
}

/// What a component's report changes for its cluster's other hosts: `before` and `now` (of a
/// component of `role`; `now` `None`: its host reports it no more), whether a load balancer's
/// backends changed (`backends_changed`), what the cluster's servers restart for (`goal`).
pub fn report_changes(
    role: Role,
    before: Option<&ComponentReport>,
    now: Option<&ComponentReport>,
    backends_changed: bool,
    goal: RestartGoal<'_>,
) -> Vec<Change> {
    let Some(now) = now else {
        // What it was is gone: as if it changed every way.
        let gone = ComponentReport::default();
        return report_changes(role, before, Some(&gone), true, goal)
            .into_iter()
            .chain((role == Role::Server).then_some(Change::Balancers))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
    };
    let mut changes = Vec::new();
    match role {
        Role::Server => {
            let moved = |differs: &dyn Fn(&ComponentReport) -> bool| before.is_none_or(differs);
            if moved(&|before| {
                before.state != now.state
                    || before.healthy != now.healthy
                    || before.odb_epoch != now.odb_epoch
            }) {
                changes.push(Change::ServerProgress);
            }
            // A server's first deployed services take it into its load balancers' rotation,
            // and losing them out of it.
            let lacked = before.is_none_or(|before| before.services_revision.is_empty());
            if lacked != now.services_revision.is_empty() {
                changes.push(Change::Balancers);
            }
            // A running server due to restart is the one that restarts.
            if moved(&|before| {
                before.python_revision != now.python_revision
                    || before.python_installed != now.python_installed
                    || before.restart_epoch != now.restart_epoch
                    || before.healthy != now.healthy
                    || before.state != now.state
            }) {
                let was_due = before.is_some_and(|before| goal.due(before));
                changes.push(Change::Restarts { was_due });
            }
        }
        Role::LoadBalancer => {
            let healthy_before = before.is_some_and(|before| before.healthy);
            if backends_changed || healthy_before != now.healthy {
                changes.push(Change::DrainingServers);
                // The next server's restart waits for the balancers to have the others back.
                changes.push(Change::Restarts { was_due: false });
            }
        }
        _ => {}
    }
    // A dashboard, load balancer or scheduler due in a rolling restart of its role, or through
    // it now, moves its own turn and the next role's when its report changes.
    let due_before = before.is_some_and(|before| goal.due_as(role, before));
    let changed = before.is_none_or(|before| {
        before.restart_epoch != now.restart_epoch
            || before.state != now.state
            || before.healthy != now.healthy
            || before.rolls != now.rolls
    });
    if role != Role::Server && changed && (due_before || goal.due_as(role, now)) {
        changes.retain(|change| !matches!(change, Change::Restarts { .. }));
        changes.push(Change::Restarts { was_due: true });
    }
    changes
}

/// A component's status as its host reported it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentReport {
    pub state: ComponentState,
    pub healthy: bool,
    pub last_error: String,
    pub restarts: u32,
    /// A server's services revision, found deployed on it.
    pub services_revision: String,
    /// The importing server's configuration revision, imported.
    pub config_revision: String,
    /// A server's Python dependencies revision, that of its running process.
    pub python_revision: String,
    /// The desired revision once installed beside it.
    pub python_installed: String,
    /// A server's user-config revision, in place on it.
    pub user_conf_revision: String,
    /// The ODB generation it was created under, and whether a server finds the ODB empty.
    pub odb_epoch: u64,
    pub odb_empty: bool,
    /// Its restart epoch, that of its running process (a load balancer's: HAProxy's reload).
    pub restart_epoch: u64,
    /// Its agent rolls it ([`crate::domain::ComponentStatus::rolls`]).
    pub rolls: bool,
}

impl From<&crate::domain::ComponentStatus> for ComponentReport {
    fn from(status: &crate::domain::ComponentStatus) -> Self {
        ComponentReport {
            state: status.state,
            healthy: status.healthy,
            last_error: status.last_error.clone(),
            restarts: status.restarts,
            services_revision: status.services_revision.clone(),
            config_revision: status.config_revision.clone(),
            python_revision: status.python_revision.clone(),
            python_installed: status.python_installed.clone(),
            user_conf_revision: status.user_conf_revision.clone(),
            odb_epoch: status.odb_epoch,
            odb_empty: status.odb_empty,
            restart_epoch: status.restart_epoch,
            rolls: status.rolls,
        }
    }
}

/// The events of one component's report against its previous one (`None`: its first): it died
/// and was restarted, it has a new error, it became running and healthy. `label` names it
/// (`server server1`).
pub fn component_report_events(
    label: &str,
    before: Option<&ComponentReport>,
    now: &ComponentReport,
) -> Vec<Happened> {
    let first = ComponentReport::default();
    let before = before.unwrap_or(&first);
    let mut happened = Vec::new();
    if now.restarts > before.restarts {
        happened.push(Happened::new(
            "component.restarted",
            format!(
                "{label} died and was restarted by the agent ({} restart(s) so far)",
                now.restarts
            ),
        ));
    }
    if !now.last_error.is_empty() && now.last_error != before.last_error {
        happened.push(Happened::new(
            "component.error",
            format!("{label}: {}", now.last_error),
        ));
    }
    if !now.services_revision.is_empty() && now.services_revision != before.services_revision {
        happened.push(Happened::new(
            "component.services",
            format!(
                "{label} runs services revision {}",
                muster_proto::services::short(&now.services_revision)
            ),
        ));
    }
    if !now.config_revision.is_empty() && now.config_revision != before.config_revision {
        happened.push(Happened::new(
            "component.config",
            format!(
                "{label} imported configuration revision {}",
                muster_proto::services::short(&now.config_revision)
            ),
        ));
    }
    if !now.python_revision.is_empty() && now.python_revision != before.python_revision {
        happened.push(Happened::new(
            "component.python",
            format!(
                "{label} runs Python dependencies revision {}",
                muster_proto::services::short(&now.python_revision)
            ),
        ));
    }
    if !now.user_conf_revision.is_empty() && now.user_conf_revision != before.user_conf_revision {
        happened.push(Happened::new(
            "component.user-conf",
            format!(
                "{label} has user-config revision {}",
                muster_proto::services::short(&now.user_conf_revision)
            ),
        ));
    }
    if now.state != before.state && now.state == ComponentState::Running && now.healthy {
        happened.push(Happened::new(
            "component.running",
            format!("{label} is running and healthy"),
        ));
    }
    happened
}

/// What a host's report of a bootstrap task changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootstrapOutcome {
    /// The task is done: mark it, bump the cluster's hosts (they wait for it), record the event.
    Done(Happened),
    /// It failed with an error not recorded before: record the error and the event.
    Failed(Happened),
}

/// The outcome of a report of bootstrap task `task` (`create odb`, ...) from `reporting_host`,
/// against the stored task: only the host it is assigned to may change it, and a done task stays
/// done. `None` means nothing to record.
pub fn bootstrap_report_outcome(
    task: &str,
    assigned_to: &str,
    reporting_host: &str,
    was_done: bool,
    error_before: &str,
    report: &crate::domain::BootstrapReport,
) -> Option<BootstrapOutcome> {
    if assigned_to != reporting_host || was_done {
        return None;
    }
    if report.done {
        return Some(BootstrapOutcome::Done(Happened::new(
            "bootstrap.done",
            format!("bootstrap task `zato create {task}` done"),
        )));
    }
    if !report.last_error.is_empty() && report.last_error != error_before {
        return Some(BootstrapOutcome::Failed(Happened::new(
            "bootstrap.failed",
            format!(
                "bootstrap task `zato create {task}` failed: {}",
                report.last_error
            ),
        )));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_is_in_a_rollout_from_its_restart_into_it_until_held_healthy_long_enough() {
        let report = |restart_epoch: u64, healthy: bool| ComponentReport {
            state: ComponentState::Running,
            healthy,
            restart_epoch,
            ..ComponentReport::default()
        };
        let none = RolloutProgress::default();
        let step = |before: &ComponentReport, was, now: &ComponentReport, at, min| {
            rollout_progress(Role::Server, Some(before), was, now, at, min)
        };
        // Restarted into a rollout (another epoch), not healthy yet: in it since then.
        let restarted = step(&report(0, true), none, &report(1, false), 1_000, 10_000);
        assert_eq!(
            restarted,
            RolloutProgress {
                pending_since: Some(1_000),
                healthy_since: None
            }
        );
        // Healthy: held from then; a break starts the hold again; through after 10 s healthy.
        let healthy = step(
            &report(1, false),
            restarted,
            &report(1, true),
            4_000,
            10_000,
        );
        assert_eq!(healthy.healthy_since, Some(4_000));
        let broke = step(&report(1, true), healthy, &report(1, false), 6_000, 10_000);
        assert_eq!(
            (broke.pending_since, broke.healthy_since),
            (Some(1_000), None)
        );
        let again = step(&report(1, false), broke, &report(1, true), 7_000, 10_000);
        assert_eq!(again.healthy_since, Some(7_000));
        assert!(!rollout_held(again, 16_999, 10_000));
        assert!(rollout_held(again, 17_000, 10_000));
        assert_eq!(
            step(&report(1, true), again, &report(1, true), 17_000, 10_000),
            none,
            "through at its next report"
        );
        // Without min_healthy_time, through at its first healthy report.
        assert_eq!(
            step(&report(1, false), restarted, &report(1, true), 4_000, 0),
            none
        );
        // A server that never restarted into one, a new one, another role: in none.
        assert_eq!(
            step(&report(1, true), none, &report(1, false), 5_000, 0),
            none
        );
        assert_eq!(
            rollout_progress(Role::Server, None, none, &report(1, false), 5_000, 0),
            none
        );
        assert_eq!(
            rollout_progress(
                Role::Scheduler,
                Some(&report(0, true)),
                none,
                &report(1, false),
                5_000,
                0
            ),
            none
        );
    }

    fn placed(cluster: &str, role: Role, name: &str, host: &str, port: u16) -> Placed {
        Placed {
            cluster: cluster.to_owned(),
            role,
            name: name.to_owned(),
            host: host.to_owned(),
            port,
        }
    }

    fn request<'a>(role: Role, name: Option<&'a str>, host: &'a str) -> PlacementRequest<'a> {
        PlacementRequest {
            cluster: "prod",
            odb_on_one_host: false,
            role,
            name,
            host,
            port: None,
        }
    }

    #[test]
    fn placement_names_and_ports_by_default_and_refuses_what_breaks_a_rule() {
        let placed = [
            placed("prod", Role::Server, "server1", "app-1", 17010),
            placed("prod", Role::Scheduler, "scheduler", "admin", 31530),
            placed("other", Role::Server, "server1", "app-2", 17010),
        ];
        assert_eq!(
            place(&request(Role::Server, None, "app-2"), &placed),
            Ok(("server2".to_owned(), 17011)),
            "the next free name in the cluster, the next free port on the host"
        );
        assert_eq!(
            place(&request(Role::Server, None, "app-1"), &placed),
            Err(PlacementRefusal::AlreadyExists(
                "server server1 of cluster prod (on host app-1; give a name for another server \
                 there)"
                    .to_owned()
            ))
        );
        assert_eq!(
            place(&request(Role::Server, Some("server9"), "app-1"), &placed),
            Ok(("server9".to_owned(), 17011))
        );
        assert!(matches!(
            place(&request(Role::Scheduler, None, "app-1"), &placed),
            Err(PlacementRefusal::Conflict(message)) if message.contains("at most one")
        ));
        assert_eq!(
            place(&request(Role::Scheduler, None, "admin"), &placed),
            Err(PlacementRefusal::AlreadyExists(
                "scheduler scheduler of cluster prod (on host admin)".to_owned()
            )),
            "the same scheduler asked for again"
        );
        let mut taken = request(Role::WebAdmin, None, "app-1");
        taken.port = Some(17010);
        assert_eq!(
            place(&taken, &placed),
            Err(PlacementRefusal::Conflict(
                "port 17010 is already taken on host 'app-1' by server server1 of cluster prod"
                    .to_owned()
            ))
        );
        let quickstart = &placed[..1];
        let mut one_host = request(Role::WebAdmin, None, "app-2");
        one_host.odb_on_one_host = true;
        assert!(matches!(
            place(&one_host, quickstart),
            Err(PlacementRefusal::Conflict(message)) if message.contains("SQLite file on host 'app-1'")
        ));
        one_host.host = "app-1";
        assert_eq!(
            place(&one_host, quickstart),
            Ok(("web-admin".to_owned(), 8183))
        );
    }

    fn server(name: &str, host: &str, host_up: bool, healthy: bool) -> ServerCandidate {
        ServerCandidate {
            name: name.to_owned(),
            host: host.to_owned(),
            host_up,
            host_drained: false,
            rollout_restart: false,
            healthy,
        }
    }

    #[test]
    fn on_a_fresh_odb_the_first_server_by_name_on_an_up_host_starts_alone() {
        let mut servers = vec![
            server("server2", "app-2", true, false),
            server("server1", "app-1", false, false),
            server("server3", "app-3", true, false),
        ];
        let first = first_server(false, &servers).unwrap();
        assert_eq!(first.name, "server2");
        assert_eq!(
            first_start_hold(&first.name, &first.host),
            "waiting for server server2 on host app-2 to start first (the cluster's ODB is \
             fresh: its first server writes Zato's internal services alone)"
        );
        servers[0].host_drained = true;
        assert_eq!(first_server(false, &servers).unwrap().name, "server3");
        // No server host is up: the first by name, so that the others still wait for one.
        for candidate in &mut servers {
            candidate.host_up = false;
        }
        assert_eq!(first_server(false, &servers).unwrap().name, "server1");
        // Once a server was healthy, nobody waits.
        assert_eq!(first_server(true, &servers), None);
        assert_eq!(first_server(false, &[]), None);
    }

    #[test]
    fn the_servers_start_when_one_is_healthy() {
        let mut servers = vec![
            server("server1", "app-1", true, false),
            server("server2", "app-2", true, false),
        ];
        assert_eq!(servers_started(&servers), None);
        servers[1].healthy = true;
        let (server, happened) = servers_started(&servers).unwrap();
        assert_eq!(server.host, "app-2");
        assert_eq!(happened.kind, "cluster.servers-started");
        assert_eq!(
            happened.message,
            "server server2 on host app-2 is healthy: the cluster's other servers are created now"
        );
    }

    #[test]
    fn a_healthy_target_on_an_up_host_stays() {
        let servers = [
            server("server1", "app-1", true, true),
            server("server2", "app-2", true, true),
        ];
        assert_eq!(scheduler_target("server2", &servers), None);
    }

    #[test]
    fn the_first_target_is_the_first_healthy_server_by_name() {
        let servers = [
            server("server3", "app-3", true, true),
            server("server1", "app-1", true, false),
            server("server2", "app-2", true, true),
        ];
        let moved = scheduler_target("", &servers).unwrap();
        assert_eq!(
            (moved.server.as_str(), moved.host.as_str()),
            ("server2", "app-2")
        );
        assert_eq!(
            moved.message(),
            "scheduler now points at server server2 on host app-2 (the first healthy server)"
        );
    }

    #[test]
    fn the_target_moves_off_a_down_host_an_unhealthy_server_or_an_unassigned_one() {
        let down = [
            server("server1", "app-1", false, true),
            server("server2", "app-2", true, true),
        ];
        assert_eq!(
            scheduler_target("server1", &down).unwrap().reason,
            "host app-1 of server server1 is down"
        );
        let unhealthy = [
            server("server1", "app-1", true, false),
            server("server2", "app-2", true, true),
        ];
        assert_eq!(
            scheduler_target("server1", &unhealthy).unwrap().reason,
            "server server1 on host app-1 is not healthy"
        );
        let mut drained = down.clone();
        drained[0].host_up = true;
        drained[0].host_drained = true;
        assert_eq!(
            scheduler_target("server1", &drained).unwrap().reason,
            "host app-1 of server server1 is drained"
        );
        let gone = [server("server2", "app-2", true, true)];
        assert_eq!(
            scheduler_target("server1", &gone).unwrap().reason,
            "server server1 was unassigned"
        );
    }

    #[test]
    fn a_target_out_for_its_rollout_restart_keeps_the_scheduler_until_its_deadline() {
        let mut servers = [
            server("server1", "app-1", true, false),
            server("server2", "app-2", true, true),
        ];
        servers[0].rollout_restart = true;
        assert_eq!(scheduler_target("server1", &servers), None);
        // Past its healthy deadline (or through the rollout and still not healthy): it moves.
        servers[0].rollout_restart = false;
        assert_eq!(
            scheduler_target("server1", &servers).unwrap().reason,
            "server server1 on host app-1 is not healthy"
        );
        // A rollout restart does not keep it on a host that is down or drained.
        servers[0].rollout_restart = true;
        servers[0].host_up = false;
        assert_eq!(
            scheduler_target("server1", &servers).unwrap().reason,
            "host app-1 of server server1 is down"
        );
        servers[0].host_up = true;
        servers[0].host_drained = true;
        assert_eq!(
            scheduler_target("server1", &servers).unwrap().reason,
            "host app-1 of server server1 is drained"
        );
    }

    #[test]
    fn with_no_healthy_server_on_an_up_host_nothing_changes() {
        let servers = [
            server("server1", "app-1", false, true),
            server("server2", "app-2", true, false),
        ];
        assert_eq!(scheduler_target("server1", &servers), None);
        assert_eq!(scheduler_target("", &servers), None);
        assert_eq!(scheduler_target("server1", &[]), None);
    }

    fn kinds(happened: &[Happened]) -> Vec<&str> {
        happened.iter().map(|event| event.kind).collect()
    }

    #[test]
    fn a_host_is_up_again_or_for_the_first_time_and_its_new_address_is_said() {
        let first = host_report_events(true, None, 10_000, "", "10.0.0.5");
        assert_eq!(kinds(&first), ["host.up", "host.address"]);
        assert_eq!(first[0].message, "host reported for the first time");
        let back = host_report_events(true, Some(1_000), 31_000, "10.0.0.5", "10.0.0.5");
        assert_eq!(back.len(), 1);
        assert_eq!(
            back[0].message,
            "host reported again after 30s without heartbeats"
        );
        assert!(host_report_events(false, Some(1_000), 2_000, "10.0.0.5", "10.0.0.5").is_empty());
        let moved = host_report_events(false, Some(1_000), 2_000, "10.0.0.5", "10.0.0.6");
        assert_eq!(
            moved[0].message,
            "advertised address changed from 10.0.0.5 to 10.0.0.6"
        );
    }

    #[test]
    fn a_component_report_says_what_changed_once() {
        let running = ComponentReport {
            state: ComponentState::Running,
            healthy: true,
            ..Default::default()
        };
        let first = component_report_events("server server1", None, &running);
        assert_eq!(kinds(&first), ["component.running"]);
        assert_eq!(first[0].message, "server server1 is running and healthy");
        assert!(component_report_events("server server1", Some(&running), &running).is_empty());

        let died = ComponentReport {
            restarts: 2,
            last_error: "exited with 1".into(),
            ..running.clone()
        };
        let events = component_report_events("server server1", Some(&running), &died);
        assert_eq!(kinds(&events), ["component.restarted", "component.error"]);
        assert_eq!(
            events[0].message,
            "server server1 died and was restarted by the agent (2 restart(s) so far)"
        );
        assert_eq!(events[1].message, "server server1: exited with 1");
        // The same error again is not news.
        assert!(component_report_events("server server1", Some(&died), &died).is_empty());

        let starting_unhealthy = ComponentReport {
            state: ComponentState::Running,
            healthy: false,
            ..Default::default()
        };
        assert!(
            component_report_events("scheduler scheduler1", None, &starting_unhealthy).is_empty()
        );
    }

    #[test]
    fn only_the_assigned_host_moves_a_bootstrap_task_and_done_stays_done() {
        let report = |done: bool, error: &str| crate::domain::BootstrapReport {
            cluster: "prod".into(),
            task: crate::domain::BootstrapTask::Cluster,
            done,
            last_error: error.into(),
        };
        let done =
            bootstrap_report_outcome("cluster", "app-1", "app-1", false, "", &report(true, ""));
        assert_eq!(
            done,
            Some(BootstrapOutcome::Done(Happened::new(
                "bootstrap.done",
                "bootstrap task `zato create cluster` done".into()
            )))
        );
        assert_eq!(
            bootstrap_report_outcome("cluster", "app-1", "app-2", false, "", &report(true, "")),
            None,
            "another host's report changes nothing"
        );
        assert_eq!(
            bootstrap_report_outcome(
                "cluster",
                "app-1",
                "app-1",
                true,
                "",
                &report(false, "boom")
            ),
            None,
            "a done task stays done"
        );
        let failed = bootstrap_report_outcome(
            "cluster",
            "app-1",
            "app-1",
            false,
            "",
            &report(false, "boom"),
        );
        assert!(matches!(failed, Some(BootstrapOutcome::Failed(ref event))
            if event.message == "bootstrap task `zato create cluster` failed: boom"));
        assert_eq!(
            bootstrap_report_outcome(
                "cluster",
                "app-1",
                "app-1",
                false,
                "boom",
                &report(false, "boom")
            ),
            None,
            "the same error again is not news"
        );
    }
}
