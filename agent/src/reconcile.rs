//! One reconcile pass drives the host toward its desired state and says how it stands.
//!
//! - Bootstrap tasks run in order (`zato create odb`, then `zato create cluster`, both with
//!   `--skip-if-exists`), once: a finished task is recorded in `STATE_DIR/bootstrap-done.json`.
//! - A missing component is created in `COMPONENTS_DIR/CLUSTER/.creating-ROLE-NAME` (the pid of
//!   the `zato create` is kept beside it) and renamed into `ROLE-NAME` only when Zato finished, so an
//!   interrupted create never leaves a half-made component in place: the next pass waits for a
//!   create still running, adopts one that finished (its `.zato-info` is written last), or removes
//!   the leftovers and creates again.
//! - A component whose port or peer address changed gets its config file rewritten (atomically)
//!   and is restarted.
//! - A stopped component is started (a stale pidfile is removed first, which `zato start` would
//!   refuse); one that died is restarted with backoff and the restart is counted and reported.
//! - Health is the component's HTTP answer: `/zato/ping` with 200 for a server, any answer below
//!   500 for the scheduler and web-admin.
//! - A component no longer desired is stopped and moved to `COMPONENTS_DIR/.archive`.
//!
//! Every failed step is retried with backoff and its error text (with secrets scrubbed) reported.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use muster_proto::v1::{self, BootstrapKind, Component, DesiredState, Role};
use muster_proto::validate;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::files;
use crate::haproxy::{self, HaProxy};
use crate::zato::{self, Arg, Zato, option, secret_option};

/// How often a pass runs when nothing else wakes it: the time to notice a component that died.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long a started component may take to answer before it is reported unhealthy.
pub const START_GRACE: Duration = Duration::from_secs(30);
const BACKOFF_FLOOR: Duration = Duration::from_secs(1);
const BACKOFF_CEILING: Duration = Duration::from_secs(60);
const SCHEDULER_API_USER: &str = "scheduler_api_client";
const SERVER_API_USER: &str = "server_api_client";

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

#[derive(Debug, Default)]
struct Local {
    state: String,
    healthy: bool,
    last_error: String,
    restarts: u32,
    failures: u32,
    retry_at: Option<Instant>,
    /// Whether the process was last seen alive: if it is gone at the next look, it died.
    seen_alive: bool,
    started_at: Option<Instant>,
    /// A load balancer's backend servers as its HAProxy last showed them.
    backends: Vec<v1::BackendServerState>,
}

impl Local {
    fn fail(&mut self, error: String) {
        tracing::warn!(error = %error, "component step failed; will retry");
        self.last_error = error;
        self.state = "failed".to_owned();
        self.healthy = false;
        self.failures += 1;
        self.retry_at = Some(Instant::now() + backoff(self.failures));
    }

    fn waiting(&self) -> bool {
        self.retry_at.is_some_and(|at| at > Instant::now())
    }

    /// The process was alive at the last look and is gone now: counts a restart and schedules
    /// it, at once the first time and with backoff when it keeps dying.
    fn died(&mut self, what: &str, pid: Option<i32>) {
        self.seen_alive = false;
        self.restarts += 1;
        self.failures += 1;
        self.retry_at = Some(
            Instant::now()
                + if self.failures <= 1 {
                    Duration::ZERO
                } else {
                    backoff(self.failures - 1)
                },
        );
        self.last_error = format!(
            "the process (pid {}) died; restarting",
            pid.unwrap_or_default()
        );
        tracing::warn!(component = %what, restarts = self.restarts, "component died; restarting");
    }
}

/// The reconciler's retry delay for the `attempt`-th failure in a row.
pub fn backoff(attempt: u32) -> Duration {
    muster_proto::daemon::backoff(attempt, BACKOFF_FLOOR, BACKOFF_CEILING)
}

#[derive(Debug, Default)]
struct BootstrapLocal {
    last_error: String,
    failures: u32,
    retry_at: Option<Instant>,
}

pub struct Reconciler {
    zato: Zato,
    /// The address components listen on.
    bind_address: std::net::IpAddr,
    components_dir: PathBuf,
    bootstrap_record: PathBuf,
    /// Bootstrap tasks finished on this host, as `CLUSTER/odb` and `CLUSTER/cluster`.
    bootstrap_done: BTreeSet<String>,
    bootstrap: BTreeMap<String, BootstrapLocal>,
    local: BTreeMap<Key, Local>,
}

fn role_of(component: &Component) -> Role {
    Role::try_from(component.role).unwrap_or(Role::Unspecified)
}

fn alive(pid: i32) -> bool {
    pid > 0 && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Sets `key=value` in `[section]` of an INI text, adding the key (or the section) if missing.
pub fn set_ini(text: &str, section: &str, key: &str, value: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let header = format!("[{section}]");
    let Some(start) = lines.iter().position(|line| line.trim() == header) else {
        lines.push(String::new());
        lines.push(header);
        lines.push(format!("{key}={value}"));
        return lines.join("\n") + "\n";
    };
    let end = lines[start + 1..]
        .iter()
        .position(|line| line.trim_start().starts_with('['))
        .map_or(lines.len(), |offset| start + 1 + offset);
    let existing = (start + 1..end).find(|&index| {
        lines[index]
            .split_once('=')
            .is_some_and(|(name, _)| name.trim() == key)
    });
    match existing {
        Some(index) => lines[index] = format!("{key}={value}"),
        None => {
            let insert_at = (start + 1..end)
                .rev()
                .find(|&index| !lines[index].trim().is_empty())
                .map_or(start + 1, |index| index + 1);
            lines.insert(insert_at, format!("{key}={value}"));
        }
    }
    lines.join("\n") + "\n"
}

fn get_ini(text: &str, section: &str, key: &str) -> Option<String> {
    let mut in_section = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_section = line == format!("[{section}]");
        } else if in_section
            && let Some((name, value)) = line.split_once('=')
            && name.trim() == key
        {
            return Some(value.trim().to_owned());
        }
    }
    None
}

/// `http://HOST:PORT` → (host, port, use TLS).
fn split_address(address: &str, default_port: u16) -> Option<(String, u16, bool)> {
    let (use_tls, rest) = match address.split_once("://") {
        Some(("https", rest)) => (true, rest),
        Some(("http", rest)) => (false, rest),
        _ => (true, address),
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().ok()?),
        None => (rest, default_port),
    };
    validate::host("peer address", host).ok()?;
    Some((host.to_owned(), port, use_tls))
}

fn python_bool(value: bool) -> &'static str {
    if value { "True" } else { "False" }
}

/// Sends one HTTP GET to `address`:`port` and returns the status code.
async fn http_status(address: std::net::IpAddr, port: u16, path: &str) -> Option<u16> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect((address, port)).await.ok()?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 64];
        let mut read = 0;
        while read < 12 {
            let count = stream.read(&mut head[read..]).await.ok()?;
            if count == 0 {
                break;
            }
            read += count;
        }
        let line = String::from_utf8_lossy(&head[..read]).into_owned();
        line.split_whitespace().nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(2), exchange)
        .await
        .ok()
        .flatten()
}

async fn healthy(role: Role, address: std::net::IpAddr, port: u16) -> bool {
    match role {
        Role::Server => http_status(address, port, "/zato/ping").await == Some(200),
        _ => http_status(address, port, "/")
            .await
            .is_some_and(|status| status < 500),
    }
}

impl Reconciler {
    pub fn new(
        zato: Zato,
        components_dir: PathBuf,
        state_dir: &Path,
        bind_address: std::net::IpAddr,
    ) -> Reconciler {
        let bootstrap_record = state_dir.join("bootstrap-done.json");
        let bootstrap_done = std::fs::read_to_string(&bootstrap_record)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        Reconciler {
            zato,
            bind_address,
            components_dir,
            bootstrap_record,
            bootstrap_done,
            bootstrap: BTreeMap::new(),
            local: BTreeMap::new(),
        }
    }

    fn cluster_dir(&self, cluster: &str) -> PathBuf {
        self.components_dir.join(cluster)
    }

    fn chown(&self, path: &Path) -> Result<(), String> {
        self.zato
            .run_as
            .as_ref()
            .map_or(Ok(()), |user| user.give(path))
    }

    fn ensure_cluster_dir(&self, cluster: &str) -> Result<PathBuf, String> {
        let directory = self.cluster_dir(cluster);
        if !directory.exists() {
            std::fs::create_dir_all(&directory)
                .map_err(|error| format!("cannot create {}: {error}", directory.display()))?;
            self.chown(&directory)?;
        }
        Ok(directory)
    }

    /// One pass toward `desired`; returns the host's status and when to run again at the latest.
    pub async fn pass(&mut self, desired: &DesiredState) -> (HostStatus, Duration) {
        let bootstrap = self.bootstrap(desired).await;
        let mut components = Vec::new();
        for component in &desired.components {
            components.push(self.converge(component).await);
        }
        self.archive_unwanted(desired).await;
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
        for task in &desired.bootstrap_tasks {
            let kind = BootstrapKind::try_from(task.kind).unwrap_or(BootstrapKind::Unspecified);
            let kind_name = match kind {
                BootstrapKind::Odb => "odb",
                BootstrapKind::Cluster => "cluster",
                BootstrapKind::Unspecified => continue,
            };
            let record = format!("{}/{kind_name}", task.cluster);
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
            if waiting || blocked_clusters.contains(&task.cluster) {
                status.last_error = local.last_error.clone();
                statuses.push(status);
                blocked_clusters.insert(task.cluster.clone());
                continue;
            }
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
                    local.retry_at = Some(Instant::now() + backoff(local.failures));
                    local.last_error.clone_from(&error);
                    status.last_error = error;
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
    ) -> Result<(), String> {
        validate::name("cluster name", &task.cluster).map_err(|error| error.to_string())?;
        let directory = self.ensure_cluster_dir(&task.cluster)?;
        let odb = task.odb.clone().unwrap_or_default();
        let secrets = task.secrets.clone().unwrap_or_default();
        let mut args = vec![Arg::plain("create")];
        match kind {
            BootstrapKind::Odb => args.push(Arg::plain("odb")),
            _ => {
                args.push(Arg::plain("cluster"));
                args.push(Arg::plain(task.cluster.clone()));
            }
        }
        args.extend(zato::odb_options(
            &odb,
            &secrets.odb_password,
            &directory.join("odb.db"),
        ));
        if kind == BootstrapKind::Cluster {
            args.extend(secret_option("--secret-key", &secrets.secret_key));
            args.extend(secret_option(
                "--admin-invoke-password",
                &secrets.admin_invoke_password,
            ));
        }
        args.push(Arg::plain("--skip-if-exists"));
        self.zato
            .run(&args, &directory, |_| {})
            .await
            .map(|_| ())
            .map_err(|error| error.to_string())
    }

    fn component_dirs(&self, component: &Component) -> (PathBuf, PathBuf, PathBuf) {
        let cluster_dir = self.cluster_dir(&component.cluster);
        let base = format!("{}-{}", role_of(component).cli_name(), component.name);
        (
            cluster_dir.join(&base),
            cluster_dir.join(format!(".creating-{base}")),
            cluster_dir.join(format!(".creating-{base}.pid")),
        )
    }

    /// The `zato create` arguments for a component in `path`; `Err` with a reason when it must
    /// wait (the scheduler before any server has an address).
    fn create_args(&self, component: &Component, path: &Path) -> Result<Vec<Arg>, String> {
        let odb = component.odb.clone().unwrap_or_default();
        let secrets = component.secrets.clone().unwrap_or_default();
        let default_sqlite = self.cluster_dir(&component.cluster).join("odb.db");
        let path_text = path.display().to_string();
        let mut args = vec![Arg::plain("create")];
        match role_of(component) {
            Role::Server => {
                args.extend([
                    Arg::plain("server"),
                    Arg::plain(path_text),
                    Arg::plain(component.cluster.clone()),
                    Arg::plain(component.name.clone()),
                ]);
                args.extend(zato::odb_options(
                    &odb,
                    &secrets.odb_password,
                    &default_sqlite,
                ));
                args.extend(secret_option("--secret-key", &secrets.secret_key));
                args.extend(secret_option("--jwt-secret", &secrets.jwt_secret));
                args.extend(option("--http-port", component.port.to_string()));
                if let Some(scheduler) = component.peer_addresses.first() {
                    args.extend(option("--scheduler-address-for-server", scheduler.clone()));
                }
                args.extend(option(
                    "--scheduler-api-client-for-server-username",
                    SCHEDULER_API_USER,
                ));
                args.extend(secret_option(
                    "--scheduler-api-client-for-server-password",
                    &secrets.scheduler_api_password,
                ));
                args.extend(option(
                    "--server-api-client-for-scheduler-username",
                    SERVER_API_USER,
                ));
                args.extend(secret_option(
                    "--server-api-client-for-scheduler-password",
                    &secrets.server_api_password,
                ));
            }
            Role::Scheduler => {
                let server = component.peer_addresses.first().ok_or_else(|| {
                    "waiting for a server of the cluster to have an address".to_owned()
                })?;
                args.extend([Arg::plain("scheduler"), Arg::plain(path_text)]);
                args.extend(zato::odb_options(
                    &odb,
                    &secrets.odb_password,
                    &default_sqlite,
                ));
                args.extend(option("--cluster-name", component.cluster.clone()));
                args.extend(secret_option("--secret-key", &secrets.secret_key));
                args.extend(option("--server-address-for-scheduler", server.clone()));
                args.extend(option("--bind-port", component.port.to_string()));
            }
            Role::WebAdmin => {
                args.extend([Arg::plain("web-admin"), Arg::plain(path_text)]);
                args.extend(zato::odb_options(
                    &odb,
                    &secrets.odb_password,
                    &default_sqlite,
                ));
                args.extend(secret_option(
                    "--admin-invoke-password",
                    &secrets.admin_invoke_password,
                ));
            }
            Role::LoadBalancer | Role::Unspecified => {
                return Err(format!(
                    "the {} role has no `zato create`",
                    role_of(component)
                ));
            }
        }
        Ok(args)
    }

    /// Makes sure the component's directory exists, creating it if needed. `Ok(false)` means it is
    /// not there yet (a create is in flight or must wait).
    async fn ensure_created(&mut self, component: &Component, key: &Key) -> Result<bool, String> {
        let (directory, temporary, marker) = self.component_dirs(component);
        if directory.join(".zato-info").exists() {
            return Ok(true);
        }
        if directory.exists() {
            return Err(format!(
                "{} exists but is not a finished Zato component (no .zato-info); move it away",
                directory.display()
            ));
        }
        if read_pid(&marker).is_some_and(alive) {
            self.local.entry(key.clone()).or_default().state = "creating".to_owned();
            return Ok(false);
        }
        if temporary.join(".zato-info").exists() {
            std::fs::rename(&temporary, &directory).map_err(|error| {
                format!("cannot move {} into place: {error}", temporary.display())
            })?;
            let _ = std::fs::remove_file(&marker);
            tracing::info!(component = %directory.display(), "adopted a component whose create finished while the agent was away");
            return Ok(true);
        }
        if self.local.get(key).is_some_and(Local::waiting) {
            return Ok(false);
        }
        if temporary.exists() {
            tracing::info!(directory = %temporary.display(), "removing a half-made component left by an interrupted create");
            std::fs::remove_dir_all(&temporary)
                .map_err(|error| format!("cannot remove {}: {error}", temporary.display()))?;
        }
        let _ = std::fs::remove_file(&marker);
        let args = match self.create_args(component, &temporary) {
            Ok(args) => args,
            Err(reason) => {
                let local = self.local.entry(key.clone()).or_default();
                local.state = "waiting".to_owned();
                local.last_error = reason;
                return Ok(false);
            }
        };
        let cluster_dir = self.ensure_cluster_dir(&component.cluster)?;
        std::fs::create_dir(&temporary)
            .map_err(|error| format!("cannot create {}: {error}", temporary.display()))?;
        self.chown(&temporary)?;
        self.local.entry(key.clone()).or_default().state = "creating".to_owned();
        let marker_path = marker.clone();
        let created = self
            .zato
            .run(&args, &cluster_dir, move |pid| {
                let _ = files::write_atomic(&marker_path, format!("{pid}\n").as_bytes(), 0o644);
            })
            .await;
        if let Err(error) = created {
            let _ = std::fs::remove_dir_all(&temporary);
            let _ = std::fs::remove_file(&marker);
            return Err(error.to_string());
        }
        if role_of(component) == Role::WebAdmin {
            set_web_admin_bind(&temporary, &self.bind_address.to_string(), component.port)?;
        }
        std::fs::rename(&temporary, &directory)
            .map_err(|error| format!("cannot move {} into place: {error}", temporary.display()))?;
        let _ = std::fs::remove_file(&marker);
        tracing::info!(component = %directory.display(), "component created");
        Ok(true)
    }

    /// Rewrites the component's config where the desired port or peer changed; says whether it
    /// did (the component must then restart).
    fn reconfigure(&self, component: &Component, directory: &Path) -> Result<bool, String> {
        let repo = directory.join("config/repo");
        let port = u16::try_from(component.port)
            .map_err(|_| format!("invalid port {}", component.port))?;
        let peer = component.peer_addresses.first();
        match role_of(component) {
            Role::Server => {
                let bind = self.bind_address;
                let mut settings = vec![("main", "gunicorn_bind", format!("{bind}:{port}"))];
                if let Some((host, peer_port, tls)) =
                    peer.and_then(|address| split_address(address, 31530))
                {
                    settings.push(("scheduler", "scheduler_host", host));
                    settings.push(("scheduler", "scheduler_port", peer_port.to_string()));
                    settings.push((
                        "scheduler",
                        "scheduler_use_tls",
                        python_bool(tls).to_owned(),
                    ));
                }
                self.edit_ini(&repo.join("server.conf"), &settings)
            }
            Role::Scheduler => {
                let mut settings = vec![
                    ("bind", "host", self.bind_address.to_string()),
                    ("bind", "port", port.to_string()),
                ];
                if let Some((host, peer_port, tls)) =
                    peer.and_then(|address| split_address(address, 17010))
                {
                    settings.push(("server", "server_host", host));
                    settings.push(("server", "server_port", peer_port.to_string()));
                    settings.push(("server", "server_use_tls", python_bool(tls).to_owned()));
                }
                self.edit_ini(&repo.join("scheduler.conf"), &settings)
            }
            Role::WebAdmin => {
                let path = repo.join("web-admin.conf");
                let text = files::read_to_string(&path).map_err(|error| error.to_string())?;
                let conf: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|error| format!("{}: {error}", path.display()))?;
                let host = self.bind_address.to_string();
                if conf["port"].as_u64() == Some(u64::from(port))
                    && conf["host"].as_str() == Some(host.as_str())
                {
                    return Ok(false);
                }
                set_web_admin_bind(directory, &host, component.port)?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    fn edit_ini(&self, path: &Path, settings: &[(&str, &str, String)]) -> Result<bool, String> {
        let text = files::read_to_string(path).map_err(|error| error.to_string())?;
        let mut updated = text.clone();
        for (section, key, value) in settings {
            if get_ini(&updated, section, key).as_deref() != Some(value.as_str()) {
                updated = set_ini(&updated, section, key, value);
            }
        }
        if updated == text {
            return Ok(false);
        }
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(path)
                .map_err(|error| error.to_string())?
                .permissions(),
        );
        files::write_atomic(path, updated.as_bytes(), mode & 0o777)
            .map_err(|error| error.to_string())?;
        self.chown(path)?;
        tracing::info!(file = %path.display(), "component reconfigured");
        Ok(true)
    }

    async fn converge(&mut self, component: &Component) -> v1::ComponentStatus {
        let role = role_of(component);
        let key = Key {
            cluster: component.cluster.clone(),
            role: role.cli_name().to_owned(),
            name: component.name.clone(),
        };
        let names_valid = validate::name("cluster name", &component.cluster)
            .and_then(|()| validate::name("component name", &component.name));
        match names_valid {
            Err(error) => self
                .local
                .entry(key.clone())
                .or_default()
                .fail(format!("refused: {error}")),
            Ok(()) => self.converge_valid(component, &key).await,
        }
        let local = self.local.entry(key).or_default();
        v1::ComponentStatus {
            role: component.role,
            name: component.name.clone(),
            cluster: component.cluster.clone(),
            state: local.state.clone(),
            healthy: local.healthy,
            last_error: local.last_error.clone(),
            restarts: local.restarts,
            backends: local.backends.clone(),
        }
    }

    async fn converge_valid(&mut self, component: &Component, key: &Key) {
        let role = role_of(component);
        if role == Role::LoadBalancer {
            return self.converge_load_balancer(component, key).await;
        }
        let (directory, _, _) = self.component_dirs(component);
        if component.stopped {
            return self.keep_stopped(&directory, key).await;
        }
        match self.ensure_created(component, key).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(error) => return self.local.entry(key.clone()).or_default().fail(error),
        }
        let reconfigured = match self.reconfigure(component, &directory) {
            Ok(changed) => changed,
            Err(error) => return self.local.entry(key.clone()).or_default().fail(error),
        };
        let pidfile = directory.join("pidfile");
        let pid = read_pid(&pidfile);
        let mut running = pid.is_some_and(alive);
        let directory_arg = Arg::plain(directory.display().to_string());
        if running && reconfigured {
            if let Err(error) = self
                .zato
                .run(
                    &[Arg::plain("stop"), directory_arg.clone()],
                    &directory,
                    |_| {},
                )
                .await
            {
                return self
                    .local
                    .entry(key.clone())
                    .or_default()
                    .fail(error.to_string());
            }
            running = false;
            self.local.entry(key.clone()).or_default().seen_alive = false;
        }
        if !running {
            let local = self.local.entry(key.clone()).or_default();
            if local.seen_alive {
                local.died(&directory.display().to_string(), pid);
            }
            if local.waiting() {
                local.state = "restarting".to_owned();
                local.healthy = false;
                return;
            }
            if pid.is_some() {
                let _ = std::fs::remove_file(&pidfile);
            }
            if let Err(error) = self
                .zato
                .run(&[Arg::plain("start"), directory_arg], &directory, |_| {})
                .await
            {
                return self
                    .local
                    .entry(key.clone())
                    .or_default()
                    .fail(error.to_string());
            }
            let local = self.local.entry(key.clone()).or_default();
            local.started_at = Some(Instant::now());
            local.state = "starting".to_owned();
        }
        let port = u16::try_from(component.port).unwrap_or_default();
        let probe_address = if self.bind_address.is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            self.bind_address
        };
        let answers = healthy(role, probe_address, port).await;
        let alive_now = read_pid(&pidfile).is_some_and(alive);
        let local = self.local.entry(key.clone()).or_default();
        local.seen_alive = alive_now;
        local.healthy = answers && alive_now;
        if local.healthy {
            local.state = "running".to_owned();
            local.last_error.clear();
            local.failures = 0;
            local.retry_at = None;
        } else if local
            .started_at
            .is_some_and(|at| at.elapsed() > START_GRACE)
            || local.started_at.is_none()
        {
            local.state = "unhealthy".to_owned();
            local.last_error = format!("{role} {} does not answer on port {port}", component.name);
        } else {
            local.state = "starting".to_owned();
        }
    }

    /// A load balancer: HAProxy started, or brought to the plan while it runs; healthy only while
    /// it answers `/zato-lb-alive`.
    async fn converge_load_balancer(&mut self, component: &Component, key: &Key) {
        let plan = match haproxy::Plan::from_component(component) {
            Ok(plan) => plan,
            Err(error) => return self.local.entry(key.clone()).or_default().fail(error),
        };
        let (directory, _, _) = self.component_dirs(component);
        let paths = haproxy::Paths::new(&directory);
        let balancer = HaProxy {
            paths: &paths,
            run_as: self.zato.run_as.as_ref(),
        };
        if component.stopped {
            let stopped = balancer.stop().await;
            let local = self.local.entry(key.clone()).or_default();
            if let Err(error) = stopped {
                return local.fail(error);
            }
            local.state = "stopped".to_owned();
            local.healthy = false;
            local.seen_alive = false;
            local.last_error.clear();
            local.retry_at = None;
            local.backends.clear();
            return;
        }
        if !directory.exists() {
            let created = self.ensure_cluster_dir(&component.cluster).and_then(|_| {
                std::fs::create_dir(&directory)
                    .map_err(|error| format!("cannot create {}: {error}", directory.display()))?;
                self.chown(&directory)
            });
            if let Err(error) = created {
                return self.local.entry(key.clone()).or_default().fail(error);
            }
        }
        let pid = haproxy::master_pid(&paths);
        let local = self.local.entry(key.clone()).or_default();
        if pid.is_none() {
            if local.seen_alive {
                local.died(&directory.display().to_string(), read_pid(&paths.pidfile));
            }
            if local.waiting() {
                local.state = "restarting".to_owned();
                local.healthy = false;
                return;
            }
            let started = balancer.start(&plan).await;
            let local = self.local.entry(key.clone()).or_default();
            if let Err(error) = started {
                local.backends.clear();
                return local.fail(error);
            }
            local.started_at = Some(Instant::now());
            local.state = "starting".to_owned();
            local.last_error.clear();
        } else if !local.waiting() {
            let converged = balancer.converge(&plan).await;
            let local = self.local.entry(key.clone()).or_default();
            match converged {
                Ok(applied) => {
                    local.last_error = applied.note;
                    local.failures = 0;
                    local.retry_at = None;
                }
                Err(error) => {
                    // HAProxy serves on as it was; the change is tried again with backoff.
                    tracing::warn!(error = %error, "load balancer change failed; will retry");
                    local.last_error = error;
                    local.failures += 1;
                    local.retry_at = Some(Instant::now() + backoff(local.failures));
                }
            }
        }
        let alive = haproxy::master_pid(&paths).is_some();
        let answers = alive
            && http_status(plan.probe_address(), plan.port, "/zato-lb-alive").await == Some(200);
        let backends = if alive {
            balancer.backend_states().await.unwrap_or_default()
        } else {
            Vec::new()
        };
        let local = self.local.entry(key.clone()).or_default();
        local.seen_alive = alive;
        local.healthy = answers;
        local.backends = backends;
        if answers {
            local.state = "running".to_owned();
        } else if local
            .started_at
            .is_some_and(|at| at.elapsed() <= START_GRACE)
        {
            local.state = "starting".to_owned();
        } else {
            local.state = "unhealthy".to_owned();
            if local.last_error.is_empty() {
                local.last_error = format!(
                    "load balancer {} does not answer /zato-lb-alive on port {}",
                    component.name, plan.port
                );
            }
        }
    }

    /// A component of a drained host: stopped if it runs, left as it is otherwise.
    async fn keep_stopped(&mut self, directory: &Path, key: &Key) {
        let running = read_pid(&directory.join("pidfile")).is_some_and(alive);
        if running {
            let stop = [
                Arg::plain("stop"),
                Arg::plain(directory.display().to_string()),
            ];
            if let Err(error) = self.zato.run(&stop, directory, |_| {}).await {
                return self
                    .local
                    .entry(key.clone())
                    .or_default()
                    .fail(error.to_string());
            }
            tracing::info!(component = %directory.display(), "component stopped: its host is drained");
        }
        let local = self.local.entry(key.clone()).or_default();
        local.state = "stopped".to_owned();
        local.healthy = false;
        local.seen_alive = false;
        local.last_error.clear();
        local.retry_at = None;
    }

    /// Stops and archives components of this host that are no longer desired.
    async fn archive_unwanted(&mut self, desired: &DesiredState) {
        let wanted: BTreeSet<(String, String)> = desired
            .components
            .iter()
            .map(|component| {
                (
                    component.cluster.clone(),
                    format!("{}-{}", role_of(component).cli_name(), component.name),
                )
            })
            .collect();
        let Ok(clusters) = std::fs::read_dir(&self.components_dir) else {
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
                let zato_component = ["web-admin-", "scheduler-", "server-"]
                    .iter()
                    .any(|prefix| base.starts_with(prefix))
                    && entry.path().join(".zato-info").exists();
                let balancer =
                    base.starts_with("load-balancer-") && entry.path().join("zato.config").exists();
                if !(zato_component || balancer)
                    || wanted.contains(&(cluster_name.clone(), base.clone()))
                {
                    continue;
                }
                self.archive(&cluster_name, &base, &entry.path()).await;
            }
        }
        let wanted_keys: BTreeSet<(String, String, String)> = desired
            .components
            .iter()
            .map(|component| {
                (
                    component.cluster.clone(),
                    role_of(component).cli_name().to_owned(),
                    component.name.clone(),
                )
            })
            .collect();
        self.local.retain(|key, _| {
            wanted_keys.contains(&(key.cluster.clone(), key.role.clone(), key.name.clone()))
        });
    }

    async fn archive(&self, cluster: &str, base: &str, directory: &Path) {
        if base.starts_with("load-balancer-") {
            let paths = haproxy::Paths::new(directory);
            let balancer = HaProxy {
                paths: &paths,
                run_as: self.zato.run_as.as_ref(),
            };
            if let Err(error) = balancer.stop().await {
                tracing::warn!(component = %directory.display(), error = %error, "cannot stop an unassigned load balancer; will retry");
                return;
            }
        } else if read_pid(&directory.join("pidfile")).is_some_and(alive) {
            let stop = [
                Arg::plain("stop"),
                Arg::plain(directory.display().to_string()),
            ];
            if let Err(error) = self.zato.run(&stop, directory, |_| {}).await {
                tracing::warn!(component = %directory.display(), error = %error, "cannot stop an unassigned component; will retry");
                return;
            }
        }
        let archive_dir = self.components_dir.join(".archive");
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs())
            .unwrap_or_default();
        let target = archive_dir.join(format!("{cluster}.{base}.{stamp}"));
        let moved = std::fs::create_dir_all(&archive_dir)
            .and_then(|()| std::fs::rename(directory, &target));
        match moved {
            Ok(()) => {
                tracing::info!(component = %directory.display(), archive = %target.display(), "component unassigned: stopped and archived")
            }
            Err(error) => {
                tracing::warn!(component = %directory.display(), error = %error, "cannot archive an unassigned component; will retry")
            }
        }
    }
}

fn set_web_admin_bind(directory: &Path, host: &str, port: u32) -> Result<(), String> {
    let path = directory.join("config/repo/web-admin.conf");
    let text = files::read_to_string(&path).map_err(|error| error.to_string())?;
    let mut conf: serde_json::Value =
        serde_json::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))?;
    conf["host"] = host.into();
    conf["port"] = port.into();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&path)
            .map_err(|error| error.to_string())?
            .permissions(),
    );
    files::write_atomic(&path, format!("{conf:#}\n").as_bytes(), mode & 0o777)
        .map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_values_are_replaced_or_added_in_their_section() {
        let text = "[main]\ngunicorn_bind=0.0.0.0:17010\n\n[scheduler]\nscheduler_host=a\nscheduler_port=31530\n";
        let updated = set_ini(text, "scheduler", "scheduler_host", "10.0.0.5");
        assert_eq!(
            get_ini(&updated, "scheduler", "scheduler_host").as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(
            get_ini(&updated, "main", "gunicorn_bind").as_deref(),
            Some("0.0.0.0:17010")
        );
        let added = set_ini(&updated, "scheduler", "scheduler_use_tls", "False");
        assert!(
            added.contains("scheduler_port=31530\nscheduler_use_tls=False\n"),
            "{added}"
        );
        let new_section = set_ini(text, "odb", "engine", "sqlite");
        assert_eq!(
            get_ini(&new_section, "odb", "engine").as_deref(),
            Some("sqlite")
        );
    }

    #[test]
    fn peer_addresses_are_split_as_zato_reads_them() {
        assert_eq!(
            split_address("http://10.0.0.5:31530", 1),
            Some(("10.0.0.5".into(), 31530, false))
        );
        assert_eq!(
            split_address("sched.internal", 31530),
            Some(("sched.internal".into(), 31530, true))
        );
        assert_eq!(split_address("http://bad host:1", 1), None);
    }
}
