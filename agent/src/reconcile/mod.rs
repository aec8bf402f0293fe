//! One reconcile pass drives the host toward its desired state and says how it stands.
//!
//! Where things are: this file runs the pass (bootstrap tasks, every component side by side,
//! archiving what is no longer wanted); `host` is what every component of the host shares (the
//! `zato` command, addresses, directories, what the host's config allows); `lifecycle` is one
//! component's state machine and its `Driver` trait; `drivers` implements it for Zato's
//! components and for HAProxy; `archive` says how each kind is found on disk, stopped and
//! archived. A Zato component's steps are its driver's own: `zato_steps` (create, recover,
//! configure, stop, probe), and a server's environment in `services` (services, configuration),
//! `python`, `user_conf` and `rebuild` (the ODB it was created on). `facilities` is how a pass
//! runs `zato` and finds, ends and probes processes (scripted in `pass_tests`); `error` is why a
//! step failed, and how soon it is tried again.
//!
//! - Bootstrap tasks run in order, once, one a pass: `zato create odb --skip-if-exists`, then
//!   `zato create cluster`, which is done when it creates the cluster row or finds it in the ODB.
//!   A finished task is recorded in `STATE_DIR/bootstrap-done.json`.
//! - A missing component is created in `COMPONENTS_DIR/CLUSTER/.creating-ROLE-NAME` (the pid of
//!   the `zato create` is kept beside it) and renamed into `ROLE-NAME` only when Zato finished, so an
//!   interrupted create never leaves a half-made component in place: the next pass waits for a
//!   create still running, adopts one that finished (its `.zato-info` is written last), or removes
//!   the leftovers and creates again. A server whose name Zato's ODB still holds (a removed server,
//!   or a create killed after Zato inserted the row) has that stale row removed, and is created
//!   again. Symlinks into the `.creating-` directory are re-pointed after the rename. A web-admin
//!   gets the password of the dashboard's user `admin` set once, with `zato update password`.
//! - Cluster and component directories are mode 0700, owned by `run_as`: Zato writes the cluster's
//!   secrets into files of mode 0644 in them.
//! - A component whose port, peer address or IPC range changed gets its config file rewritten
//!   (atomically) and is restarted. Each server of the host gets its own range of Zato's IPC ports.
//! - A stopped component is started (a stale pidfile is removed first, which `zato start` would
//!   refuse). A component counts as running while its process lives, found by its pidfile or, in
//!   the seconds before a real Zato writes one, by its command line; it is never started twice. One
//!   that died is restarted with backoff and the restart is counted and reported.
//! - Health proves the role works (see `zato::health`): a server's `/zato/ping` says `ZATO_OK`,
//!   the scheduler accepts the servers' credentials and runs its jobs (its heartbeat job ran
//!   lately, see `zato::jobs`), the dashboard serves its login form.
//! - A component no longer desired is stopped and moved to `COMPONENTS_DIR/.archive`; a server's
//!   row is removed from Zato's ODB too.
//!
//! Every failed step is retried with backoff and its error text (with secrets scrubbed) reported.
//! A failing `zato` command backs off from [`STEP_BACKOFF_FLOOR`] to [`STEP_BACKOFF_CEILING`]: each
//! run is a Python process of seconds of CPU.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use muster_proto::v1::{self, BootstrapKind, Component, DesiredState, Role};
use muster_proto::validate;

mod archive;
mod drivers;
mod error;
mod facilities;
mod host;
mod lifecycle;
#[cfg(test)]
mod pass_tests;
pub mod python;
mod rebuild;
mod services;
mod user_conf;
mod zato_steps;

use self::archive::Found;
use self::error::StepError;
use self::facilities::Real;
use self::host::{Host, admin_invoke_password, private_dir, resolve_program};
use self::lifecycle::{ComponentState, Local};
use self::zato_steps::ZatoComponent;
use crate::files;
use crate::haproxy;
use crate::zato::{self, Zato, ZatoError, command, conf, health, jobs, process::read_pid};

/// How often a pass runs when nothing else wakes it: the time to notice a component that died.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long a started component may take to answer before it is reported unhealthy (a real Zato
/// server takes up to ~25 s on a busy host to write its pidfile, more to answer).
pub const START_GRACE: Duration = Duration::from_secs(90);
const BACKOFF_FLOOR: Duration = Duration::from_secs(1);
const BACKOFF_CEILING: Duration = Duration::from_secs(60);
/// The first retry delay of a failing `zato` command (create, start, bootstrap).
pub const STEP_BACKOFF_FLOOR: Duration = Duration::from_secs(10);
/// The longest retry delay of a failing `zato` command.
pub const STEP_BACKOFF_CEILING: Duration = Duration::from_secs(300);
/// How long a component without a pidfile gets to end after SIGTERM.
const STOP_PATIENCE: Duration = Duration::from_secs(30);
/// The marker of a web-admin whose dashboard password Muster has set.
const DASHBOARD_PASSWORD_MARKER: &str = ".muster-dashboard-password-set";

/// What the host reports.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostStatus {
    /// The generation of the last desired state a whole pass was run for; 0 before any.
    pub applied_generation: u64,
    pub components: Vec<v1::ComponentStatus>,
    pub bootstrap: Vec<v1::BootstrapStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    cluster: String,
    role: String,
    name: String,
}

impl Key {
    /// The key in the agent's restart record.
    fn record(&self) -> String {
        format!("{}/{}/{}", self.cluster, self.role, self.name)
    }
}

/// The reconciler's retry delay for the `attempt`-th failure in a row.
pub fn backoff(attempt: u32) -> Duration {
    muster_proto::daemon::backoff(attempt, BACKOFF_FLOOR, BACKOFF_CEILING)
}

/// The retry delay after the `attempt`-th failure in a row of a `zato` command: more than half of
/// `STEP_BACKOFF_FLOOR * 2^(attempt-1)` and at most all of it, at most [`STEP_BACKOFF_CEILING`].
pub fn step_backoff(attempt: u32) -> Duration {
    let cap = STEP_BACKOFF_FLOOR
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(STEP_BACKOFF_CEILING);
    cap / 2 + muster_proto::daemon::backoff(1, cap / 2, cap / 2)
}

#[derive(Debug, Default)]
struct BootstrapLocal {
    last_error: String,
    failures: u32,
    retry_at: Option<Instant>,
}

pub struct Reconciler {
    host: Host,
    bootstrap_record: PathBuf,
    /// Bootstrap tasks finished on this host, as `CLUSTER/odb` and `CLUSTER/cluster`.
    bootstrap_done: BTreeSet<String>,
    /// `STATE_DIR/restarts.json`: how often each component (`cluster/role/name`) died and was
    /// restarted, kept so that the count a host reports survives the agent's own restarts.
    restarts_record: PathBuf,
    saved_restarts: BTreeMap<String, u32>,
    bootstrap: BTreeMap<String, BootstrapLocal>,
    local: BTreeMap<Key, Local>,
}

fn role_of(component: &Component) -> Role {
    Role::try_from(component.role).unwrap_or(Role::Unspecified)
}

fn key_of(component: &Component) -> Key {
    Key {
        cluster: component.cluster.clone(),
        role: role_of(component).cli_name().to_owned(),
        name: component.name.clone(),
    }
}

/// Each server of `desired` gets its own range of Zato's IPC ports, in the order of their HTTP
/// ports, so that servers on one host do not collide on `ipc_port_start`.
fn ipc_port_starts(desired: &DesiredState, first: u16) -> BTreeMap<Key, u16> {
    let mut servers: Vec<&Component> = desired
        .components
        .iter()
        .filter(|component| role_of(component) == Role::Server)
        .collect();
    servers.sort_by_key(|component| {
        (
            component.port,
            component.cluster.clone(),
            component.name.clone(),
        )
    });
    servers
        .into_iter()
        .enumerate()
        .map(|(index, component)| {
            let offset = u16::try_from(index).unwrap_or(u16::MAX / conf::IPC_PORTS_PER_SERVER);
            (
                key_of(component),
                first.saturating_add(offset.saturating_mul(conf::IPC_PORTS_PER_SERVER)),
            )
        })
        .collect()
}

impl Reconciler {
    pub fn new(
        zato: Zato,
        components_dir: PathBuf,
        state_dir: &Path,
        bind_address: IpAddr,
    ) -> Reconciler {
        let restarts_record = state_dir.join("restarts.json");
        let saved_restarts = std::fs::read_to_string(&restarts_record)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        let bootstrap_record = state_dir.join("bootstrap-done.json");
        let bootstrap_done = std::fs::read_to_string(&bootstrap_record)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        Reconciler {
            host: Host {
                facilities: Box::new(Real { zato: zato.clone() }),
                zato,
                bind_address,
                advertise_address: None,
                components_dir,
                ipc_port_start: conf::IPC_PORT_START,
                ipc_port_starts: BTreeMap::new(),
                haproxy_bins: vec![PathBuf::from("haproxy")],
                sqlite_odb_dirs: Vec::new(),
                python_bin: None,
                zato_installs: BTreeMap::new(),
                wheel_cache: state_dir.join(python::WHEEL_CACHE),
                sqlite_writes: tokio::sync::Mutex::new(()),
            },
            bootstrap_record,
            bootstrap_done,
            restarts_record,
            saved_restarts,
            bootstrap: BTreeMap::new(),
            local: BTreeMap::new(),
        }
    }

    /// The Python that runs Zato, when it is not the one beside the `zato` command.
    pub fn with_python_bin(mut self, python: Option<PathBuf>) -> Reconciler {
        self.host.python_bin = python;
        self
    }

    /// The other Zato installations this host can run servers with, by name.
    pub fn with_zato_installs(mut self, installs: BTreeMap<String, PathBuf>) -> Reconciler {
        self.host.zato_installs = installs;
        self
    }

    /// Directories besides the components directory where an SQLite ODB file may be.
    pub fn with_sqlite_odb_dirs(mut self, directories: Vec<PathBuf>) -> Reconciler {
        self.host.sqlite_odb_dirs = directories;
        self
    }

    pub fn with_advertise_address(mut self, address: IpAddr) -> Reconciler {
        self.host.advertise_address = Some(address);
        self
    }

    /// The HAProxy binaries this host runs; a load balancer that names another is refused.
    pub fn with_haproxy_bins(mut self, bins: Vec<PathBuf>) -> Reconciler {
        self.host.haproxy_bins = bins;
        self
    }

    /// Zato's IPC ports of this host's servers start at `port` rather than Zato's 17050.
    pub fn with_ipc_port_start(mut self, port: u16) -> Reconciler {
        self.host.ipc_port_start = port;
        self
    }

    /// Writes the components' restart counts when they changed (a failed write is logged; the
    /// counts are then lost only if the agent restarts before the next one).
    fn save_restarts(&mut self) {
        let now: BTreeMap<String, u32> = self
            .local
            .iter()
            .filter(|(_, local)| local.restarts > 0)
            .map(|(key, local)| (key.record(), local.restarts))
            .collect();
        if now == self.saved_restarts {
            return;
        }
        let text = serde_json::to_string(&now).unwrap_or_default();
        match files::write_atomic(&self.restarts_record, text.as_bytes(), 0o600) {
            Ok(()) => self.saved_restarts = now,
            Err(error) => tracing::warn!(error = %error, "cannot record restart counts"),
        }
    }

    /// One pass toward `desired`; returns the host's status and when to run again at the latest.
    pub async fn pass(&mut self, desired: &DesiredState) -> (HostStatus, Duration) {
        let bootstrap = self.bootstrap(desired).await;
        self.host.ipc_port_starts = ipc_port_starts(desired, self.host.ipc_port_start);
        // Every component's step runs side by side, each on its own state: a host's creates,
        // starts and probes overlap rather than queue (a real `zato create` or start takes
        // seconds).
        let mut work: Vec<(&Component, Local)> = desired
            .components
            .iter()
            .map(|component| {
                let key = key_of(component);
                let local = self.local.remove(&key).unwrap_or_else(|| Local {
                    restarts: self.saved_restarts.get(&key.record()).copied().unwrap_or(0),
                    ..Local::default()
                });
                (component, local)
            })
            .collect();
        let components = {
            let this = &*self;
            futures_util::future::join_all(
                work.iter_mut()
                    .map(|(component, local)| this.converge(component, local)),
            )
            .await
        };
        for (component, local) in work {
            self.local.insert(key_of(component), local);
        }
        self.archive_unwanted(desired).await;
        self.save_restarts();
        let soonest_retry = self
            .local
            .values()
            .filter_map(|local| local.retry_at)
            .chain(self.bootstrap.values().filter_map(|task| task.retry_at))
            .map(|at| at.saturating_duration_since(Instant::now()))
            .min()
            .unwrap_or(PROBE_INTERVAL);
        let status = HostStatus {
            applied_generation: desired.generation,
            components,
            bootstrap,
        };
        (
            status,
            soonest_retry.clamp(Duration::from_millis(50), PROBE_INTERVAL),
        )
    }

    async fn bootstrap(&mut self, desired: &DesiredState) -> Vec<v1::BootstrapStatus> {
        let mut statuses = Vec::new();
        let mut blocked_clusters = BTreeSet::new();
        // One task a pass: the next one runs with the newest desired state (`create cluster` takes
        // the load balancer's address, which may have been assigned while `create odb` ran).
        let mut ran_one = false;
        for task in &desired.bootstrap_tasks {
            let kind = BootstrapKind::try_from(task.kind).unwrap_or(BootstrapKind::Unspecified);
            let kind_name = match kind {
                BootstrapKind::Odb => "odb",
                BootstrapKind::Cluster => "cluster",
                BootstrapKind::Unspecified => continue,
            };
            // A rebuild on an empty ODB runs the tasks again, under the next generation.
            let record = match task.odb_epoch {
                0 => format!("{}/{kind_name}", task.cluster),
                epoch => format!("{}/{kind_name}@{epoch}", task.cluster),
            };
            let mut status = v1::BootstrapStatus {
                cluster: task.cluster.clone(),
                kind: task.kind,
                done: false,
                last_error: String::new(),
            };
            if self.bootstrap_done.contains(&record) {
                status.done = true;
                statuses.push(status);
                continue;
            }
            let local = self.bootstrap.entry(record.clone()).or_default();
            let waiting = local.retry_at.is_some_and(|at| at > Instant::now());
            if waiting || ran_one || blocked_clusters.contains(&task.cluster) {
                status.last_error = local.last_error.clone();
                statuses.push(status);
                blocked_clusters.insert(task.cluster.clone());
                continue;
            }
            ran_one = true;
            let result = self.run_bootstrap(task, kind).await;
            let local = self.bootstrap.entry(record.clone()).or_default();
            match result {
                Ok(()) => {
                    tracing::info!(cluster = %task.cluster, task = kind_name, "bootstrap task done");
                    self.bootstrap_done.insert(record);
                    let text = serde_json::to_string(&self.bootstrap_done).unwrap_or_default();
                    if let Err(error) =
                        files::write_atomic(&self.bootstrap_record, text.as_bytes(), 0o600)
                    {
                        tracing::warn!(error = %error, "cannot record a finished bootstrap task");
                    }
                    status.done = true;
                }
                Err(error) => {
                    tracing::warn!(cluster = %task.cluster, task = kind_name, error = %error, "bootstrap task failed; will retry");
                    local.failures += 1;
                    local.retry_at = Some(Instant::now() + step_backoff(local.failures));
                    local.last_error = error.to_string();
                    status.last_error = error.to_string();
                    blocked_clusters.insert(task.cluster.clone());
                }
            }
            statuses.push(status);
        }
        statuses
    }

    async fn run_bootstrap(
        &self,
        task: &v1::BootstrapTask,
        kind: BootstrapKind,
    ) -> Result<(), StepError> {
        validate::name("cluster name", &task.cluster)?;
        self.host.sqlite_odb_allowed(task.odb.as_ref())?;
        let directory = self.host.ensure_cluster_dir(&task.cluster)?;
        let default_sqlite = self.host.default_sqlite(&task.cluster);
        let odb_settings = task.odb.clone().unwrap_or_default();
        let secrets = task.secrets.clone().unwrap_or_default();
        let odb = zato::odb::Odb {
            settings: &odb_settings,
            password: &secrets.odb_password,
            default_sqlite: &default_sqlite,
        };
        if kind == BootstrapKind::Odb {
            // Refused before anything is created, with the reason, where Zato cannot run.
            if let Some(refusal) = odb.zato_refusal().await? {
                return Err(StepError::Other(refusal));
            }
            return self
                .host
                .facilities
                .zato(
                    &command::create_odb(task, &default_sqlite),
                    &directory,
                    &|_| {},
                )
                .await
                .map(|_| ())
                .map_err(StepError::from);
        }
        if odb.cluster_exists(&task.cluster).await? {
            tracing::info!(cluster = %task.cluster, "the ODB already holds the cluster's row");
            return Ok(());
        }
        let created = self
            .host
            .facilities
            .zato(
                &command::create_cluster(task, &default_sqlite),
                &directory,
                &|_| {},
            )
            .await;
        match created {
            Ok(_) => Ok(()),
            // Another run (an agent killed after Zato committed) may have made it meanwhile.
            Err(error) => match odb.cluster_exists(&task.cluster).await {
                Ok(true) => Ok(()),
                _ => Err(error.into()),
            },
        }
    }

    async fn converge(&self, component: &Component, local: &mut Local) -> v1::ComponentStatus {
        let mut status = v1::ComponentStatus {
            role: component.role,
            name: component.name.clone(),
            cluster: component.cluster.clone(),
            odb_epoch: component.odb_epoch,
            ..Default::default()
        };
        let names_valid = validate::name("cluster name", &component.cluster)
            .and_then(|()| validate::name("component name", &component.name));
        match names_valid {
            Err(error) => local.fail(&error.into()),
            Ok(()) => {
                local.spec = Some(component.clone());
                if role_of(component) == Role::LoadBalancer {
                    match self.load_balancer(component) {
                        Ok(driver) => {
                            lifecycle::converge(&driver, local).await;
                            driver.report(&mut status);
                        }
                        Err(error) => local.fail(&error),
                    }
                } else if let Err(error) = self.host.sqlite_odb_allowed(component.odb.as_ref()) {
                    local.fail(&error);
                } else {
                    let driver = ZatoComponent {
                        host: &self.host,
                        component,
                        directory: self.host.component_dirs(component).0,
                    };
                    lifecycle::converge(&driver, local).await;
                    driver.report(local, &mut status);
                }
            }
        }
        status.state = local.state as i32;
        status.healthy = local.healthy;
        status.last_error = local.last_error.clone();
        status.restarts = local.restarts;
        status.backends = local.backends.clone();
        status.services_revision = local.services.deployed.clone();
        status.config_revision = local.config.imported.clone();
        status.odb_empty = local.odb_empty;
        status
    }

    /// A load balancer's driver, once its plan is checked and its HAProxy binary is one this host
    /// runs.
    fn load_balancer<'a>(
        &'a self,
        component: &'a Component,
    ) -> Result<drivers::LoadBalancer<'a>, StepError> {
        let plan = haproxy::Plan::from_component(component)?;
        if !self.host.haproxy_allowed(&plan.settings.haproxy_bin) {
            return Err(StepError::Other(format!(
                "refused: haproxy_bin {:?} is not among this host's haproxy_bins ({}); the host's \
                 agent config decides which programs it runs",
                plan.settings.haproxy_bin,
                self.host
                    .haproxy_bins
                    .iter()
                    .map(|bin| bin.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let directory = self.host.component_dirs(component).0;
        let paths = haproxy::Paths::new(&directory);
        Ok(drivers::LoadBalancer {
            host: &self.host,
            component,
            plan,
            directory,
            paths,
        })
    }

    /// Stops and archives components of this host that are no longer desired.
    async fn archive_unwanted(&mut self, desired: &DesiredState) {
        let wanted: BTreeSet<Key> = desired.components.iter().map(key_of).collect();
        let Ok(clusters) = std::fs::read_dir(&self.host.components_dir) else {
            return;
        };
        for cluster in clusters.flatten() {
            let cluster_name = cluster.file_name().to_string_lossy().into_owned();
            if cluster_name.starts_with('.') || !cluster.path().is_dir() {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(cluster.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                let base = entry.file_name().to_string_lossy().into_owned();
                let Some(found) = Found::parse(&base) else {
                    continue;
                };
                let key = Key {
                    cluster: cluster_name.clone(),
                    role: found.role.cli_name().to_owned(),
                    name: found.name.clone(),
                };
                if !found.finished(&entry.path()) || wanted.contains(&key) {
                    continue;
                }
                if archive::archive(&self.host, &cluster_name, &entry.path(), "unassigned").await
                    && found.role == Role::Server
                {
                    self.remove_server_row(&key).await;
                }
            }
        }
        self.local.retain(|key, _| wanted.contains(key));
    }

    /// Removes an unassigned server's row from Zato's ODB, with the settings it was last desired
    /// with. Without them (the agent restarted since), the row stays until a server of that name
    /// is created again, which removes it then.
    async fn remove_server_row(&self, key: &Key) {
        let Some(spec) = self.local.get(key).and_then(|local| local.spec.as_ref()) else {
            return;
        };
        let odb_settings = spec.odb.clone().unwrap_or_default();
        let password = spec
            .secrets
            .as_ref()
            .map(|secrets| secrets.odb_password.clone())
            .unwrap_or_default();
        let default_sqlite = self.host.default_sqlite(&key.cluster);
        let odb = zato::odb::Odb {
            settings: &odb_settings,
            password: &password,
            default_sqlite: &default_sqlite,
        };
        let removed = odb.remove_server(&key.cluster, &key.name).await;
        match removed {
            Ok(rows) => {
                tracing::info!(cluster = %key.cluster, server = %key.name, rows, "server removed from Zato's ODB")
            }
            Err(error) => {
                tracing::warn!(error = %error, "cannot remove an unassigned server from Zato's ODB; a new server of that name will")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(cluster: &str, name: &str, port: u32) -> Component {
        Component {
            role: Role::Server as i32,
            name: name.into(),
            cluster: cluster.into(),
            port,
            ..Default::default()
        }
    }

    #[test]
    fn each_server_of_a_host_gets_its_own_ipc_ports() {
        let desired = DesiredState {
            components: vec![
                server("prod", "server2", 17011),
                server("prod", "server1", 17010),
                server("test", "server1", 17020),
            ],
            ..Default::default()
        };
        let starts = ipc_port_starts(&desired, conf::IPC_PORT_START);
        let start_of = |cluster: &str, name: &str| starts[&key_of(&server(cluster, name, 0))];
        assert_eq!(start_of("prod", "server1"), 17050);
        assert_eq!(start_of("prod", "server2"), 17060);
        assert_eq!(start_of("test", "server1"), 17070);
    }

    /// A `zato create` that keeps failing is a Python process of seconds of CPU each time: it is
    /// retried no more than a handful of times a minute at first, and then rarely.
    #[test]
    fn failing_zato_steps_back_off_to_a_ceiling() {
        let mut elapsed = Duration::ZERO;
        let mut attempts_in_45_seconds = 1;
        for attempt in 1..=20 {
            let delay = step_backoff(attempt);
            assert!(delay <= STEP_BACKOFF_CEILING, "{delay:?}");
            assert!(delay >= STEP_BACKOFF_FLOOR / 2, "{delay:?}");
            elapsed += delay;
            if elapsed <= Duration::from_secs(45) {
                attempts_in_45_seconds += 1;
            }
        }
        assert!(attempts_in_45_seconds <= 4, "{attempts_in_45_seconds}");
        assert!(step_backoff(20) >= STEP_BACKOFF_CEILING / 2);
    }

    #[test]
    fn component_directories_are_closed_to_other_users() {
        use std::os::unix::fs::PermissionsExt as _;
        let scratch = tempfile::tempdir().unwrap();
        let directory = scratch.path().join("prod");
        std::fs::create_dir(&directory).unwrap();
        std::fs::set_permissions(&directory, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&directory).unwrap();
        let mode = std::fs::metadata(&directory).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
    }
}
