//! A Zato component's own steps, as its driver's ([`super::drivers::ZatoComponent`]) methods: the
//! `zato create` it needs (and the interrupted create it recovers from), its config files, the
//! dashboard's password, stopping it, and probing it.

use super::*;

/// Muster's record, in a create's temporary directory, that the create finished: written only
/// after `zato create` exited 0 and its effect was found in the ODB. Zato's own `.zato-info` says
/// less: Zato writes it before its transaction commits (a server) and before Django's migrations
/// and the dashboard's user (a web-admin), so a create killed in between leaves one.
const CREATED_RECORD: &str = ".muster-created";

/// The restart epoch (`Component.restart_epoch`) a server's running process was started under,
/// written as it is started.
const RESTART_EPOCH_RECORD: &str = ".muster-restart-epoch";

/// The restart epoch the server in `directory` was last started under; 0 before any.
pub(super) fn started_restart_epoch(directory: &Path) -> u64 {
    std::fs::read_to_string(directory.join(RESTART_EPOCH_RECORD))
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

/// Records that the server in `directory` is started under `epoch`.
pub(super) fn record_restart_epoch(directory: &Path, epoch: u64) -> Result<(), StepError> {
    files::write_atomic(
        &directory.join(RESTART_EPOCH_RECORD),
        format!("{epoch}\n").as_bytes(),
        0o600,
    )
    .map_err(StepError::from)
}

/// How long the agent waits for the address of a server row that says it runs.
const STALE_ROW_PROBE: Duration = Duration::from_secs(2);

/// A server, scheduler or web-admin.
pub(super) struct ZatoComponent<'a> {
    pub host: &'a Host,
    pub component: &'a Component,
    pub directory: PathBuf,
}

impl ZatoComponent<'_> {
    /// The `zato create` arguments for a component in `path`; `Err` with a reason when it must
    /// wait (held by the coordinator, or the scheduler before any server has an address).
    pub(super) fn create_args(&self, path: &Path) -> Result<Vec<zato::Arg>, String> {
        let component = self.component;
        if !component.hold.is_empty() {
            return Err(component.hold.clone());
        }
        let default_sqlite = self.host.default_sqlite(&component.cluster);
        match role_of(component) {
            Role::Server => {
                let scheduler = component
                    .scheduler
                    .as_ref()
                    .and_then(conf::peer)
                    .map(|scheduler| scheduler.zato_address());
                Ok(command::create_server(
                    component,
                    path,
                    scheduler.as_deref(),
                    &default_sqlite,
                ))
            }
            Role::Scheduler => {
                let server = component
                    .server
                    .as_ref()
                    .and_then(conf::peer)
                    .ok_or_else(|| {
                        "waiting for a server of the cluster to have an address".to_owned()
                    })?;
                Ok(command::create_scheduler(
                    component,
                    path,
                    &server.zato_address(),
                    &default_sqlite,
                ))
            }
            Role::WebAdmin => Ok(command::create_web_admin(component, path, &default_sqlite)),
            Role::LoadBalancer | Role::Unspecified => Err(format!(
                "the {} role has no `zato create`",
                role_of(component)
            )),
        }
    }

    /// Runs `zato create` in `temporary` and returns what it said; for a server whose name
    /// Zato's ODB still holds, the row is removed when it is provably stale
    /// ([`ZatoComponent::stale_server_row`]) and the create runs again.
    pub(super) async fn create_server_or_recover(
        &self,
        args: &[zato::Arg],
        temporary: &Path,
        marker: &Path,
    ) -> Result<String, StepError> {
        let component = self.component;
        let cluster_dir = self.host.cluster_dir(&component.cluster);
        let record_pid = |pid: u32| {
            let _ = files::write_atomic(marker, format!("{pid}\n").as_bytes(), 0o644);
        };
        let first = self
            .host
            .facilities
            .zato(args, &cluster_dir, &record_pid)
            .await;
        let error = match first {
            Ok(output) => return Ok(output),
            Err(error) => error,
        };
        if role_of(component) != Role::Server
            || !error.exited_with(zato::EXIT_SERVER_NAME_ALREADY_EXISTS)
        {
            return Err(error.into());
        }
        let (settings, password, default_sqlite) = self.host.odb_parts(component);
        let odb = zato::odb::Odb {
            settings: &settings,
            password: &password,
            default_sqlite: &default_sqlite,
        };
        let row = odb
            .server_row(&component.cluster, &component.name)
            .await
            .map_err(|odb_error| StepError::Create(format!("{error}; and then: {odb_error}")))?;
        if let Some(row) = row {
            self.stale_server_row(&row).await?;
            let removed = odb
                .remove_server(&component.cluster, &component.name)
                .await
                .map_err(|odb_error| {
                    StepError::Create(format!("{error}; and then: {odb_error}"))
                })?;
            tracing::warn!(
                cluster = %component.cluster,
                server = %component.name,
                rows = removed,
                up_status = row.up_status.as_deref().unwrap_or("NULL"),
                "removed a stale server row from Zato's ODB (a removed server, or a create that was interrupted); creating the server again"
            );
        }
        let _ = std::fs::remove_dir_all(temporary);
        std::fs::create_dir(temporary)
            .map_err(|source| format!("cannot create {}: {source}", temporary.display()))?;
        let _ = private_dir(temporary);
        let _ = self.host.chown(temporary);
        self.host
            .facilities
            .zato(args, &cluster_dir, &record_pid)
            .await
            .map_err(StepError::from)
    }

    /// `Ok` when the row Zato's ODB holds for `component`'s name is provably stale: the server
    /// never started (a create killed after Zato's commit) or stopped cleanly, or it said it runs
    /// at an address where nothing listens now (its host is gone or it died). `Err` with why not:
    /// something answers there, or nothing answers at all (a server cut off by a partition may
    /// still run there, and deleting its row would break it).
    async fn stale_server_row(&self, row: &zato::odb::ServerRow) -> Result<(), StepError> {
        let component = self.component;
        if row.up_status.as_deref() != Some("running") {
            return Ok(());
        }
        let name = format!("server {} of cluster {}", component.name, component.cluster);
        let (Some(address), Some(port)) = (
            row.preferred_address
                .as_deref()
                .filter(|address| !address.is_empty()),
            row.bind_port.and_then(|port| u16::try_from(port).ok()),
        ) else {
            return Err(StepError::Create(format!(
                "Zato's ODB holds a row for {name} that says it runs, with no address to check: \
                 it is not removed; if no such server runs, stop it cleanly or remove the row"
            )));
        };
        let target = muster_proto::haproxy::address_text(address, u32::from(port));
        let probe = tokio::time::timeout(
            STALE_ROW_PROBE,
            tokio::net::TcpStream::connect((address, port)),
        )
        .await;
        match probe {
            Ok(Err(error))
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::HostUnreachable
                        | std::io::ErrorKind::NetworkUnreachable
                ) =>
            {
                Ok(())
            }
            Ok(Ok(_)) => Err(StepError::Create(format!(
                "Zato's ODB holds a row for {name} that says it runs at {target}, and something \
                 answers there: another server of this name may still run (a host removed with \
                 --force while cut off?); its row is not removed. Stop that server (`zato stop`) \
                 and this one is created"
            ))),
            Ok(Err(error)) => Err(StepError::Create(format!(
                "Zato's ODB holds a row for {name} that says it runs at {target}, which cannot be \
                 checked ({error}); its row is not removed"
            ))),
            Err(_) => Err(StepError::Create(format!(
                "Zato's ODB holds a row for {name} that says it runs at {target}, which does not \
                 answer within {STALE_ROW_PROBE:?}: the server may run behind a network \
                 partition, so its row is not removed. If its host is gone for good, stop its \
                 server or remove the row"
            ))),
        }
    }

    /// Checks what a `zato create` made in `temporary`, then writes Muster's record that the
    /// create finished. `output`: what the command said when it exited 0; `None` for a create that
    /// ended while the agent was away. A server's row must be in the ODB: Zato's `create server`
    /// logs any error but an IntegrityError, rolls back and exits 0 (a row that was there before
    /// makes it fail, so after an exit 0 the row is this create's); for a create that ended
    /// unseen, the row must date from it (`last_join_mod_date` within minutes of `.zato-info`'s
    /// `created_ts`), not from an earlier server of that name. A dashboard's user `admin` must
    /// exist (Zato writes `.zato-info` before Django's migrations and the user).
    async fn check_created(&self, temporary: &Path, output: Option<&str>) -> Result<(), StepError> {
        let component = self.component;
        let unseen = output.is_none();
        let output = output.unwrap_or_default();
        let (settings, password, default_sqlite) = self.host.odb_parts(component);
        let odb = zato::odb::Odb {
            settings: &settings,
            password: &password,
            default_sqlite: &default_sqlite,
        };
        let cause = || {
            let said: String = output
                .lines()
                .rev()
                .find(|line| line.contains("rror") || line.contains("xception"))
                .unwrap_or_else(|| output.lines().last().unwrap_or("nothing"))
                .chars()
                .take(300)
                .collect();
            format!("Zato said: {said}")
        };
        match role_of(component) {
            Role::Server => {
                let row = odb.server_row(&component.cluster, &component.name).await?;
                let created_ts = || {
                    let text = std::fs::read_to_string(temporary.join(".zato-info")).ok()?;
                    let info: serde_json::Value = serde_json::from_str(&text).ok()?;
                    zato::odb::utc_seconds(info["created_ts"].as_str()?)
                };
                let this_create = match (&row, unseen) {
                    (None, _) => false,
                    (Some(_), false) => true,
                    (Some(row), true) => row
                        .created_at
                        .zip(created_ts())
                        .is_some_and(|(row_at, info_at)| (row_at - info_at).abs() <= 600.0),
                };
                if !this_create {
                    return Err(StepError::Create(format!(
                        "`zato create server` {} but Zato's ODB has no row of this create for \
                         server {} of cluster {} ({})",
                        if unseen {
                            "ended while the agent was away"
                        } else {
                            "exited 0"
                        },
                        component.name,
                        component.cluster,
                        cause()
                    )));
                }
            }
            Role::WebAdmin => {
                let exists = odb
                    .dashboard_user_exists(muster_proto::zato::DASHBOARD_USER)
                    .await?;
                if !exists {
                    return Err(StepError::Create(format!(
                        "`zato create web-admin` exited 0 but the dashboard's tables or its user \
                         {} are not in Zato's ODB ({})",
                        muster_proto::zato::DASHBOARD_USER,
                        cause()
                    )));
                }
            }
            _ => {}
        }
        files::write_atomic(&temporary.join(CREATED_RECORD), b"", 0o600).map_err(StepError::from)
    }

    /// Makes sure the component's directory exists, creating it if needed. `Ok(false)` means it is
    /// not there yet (a create is in flight or must wait).
    pub(super) async fn ensure_created(&self, local: &mut Local) -> Result<bool, StepError> {
        let component = self.component;
        let (directory, temporary, marker) = self.host.component_dirs(component);
        if directory.join(".zato-info").exists() {
            return Ok(true);
        }
        if directory.exists() {
            return Err(StepError::Other(format!(
                "{} exists but is not a finished Zato component (no .zato-info); move it away",
                directory.display()
            )));
        }
        if read_pid(&marker).is_some_and(|pid| self.host.facilities.alive(pid)) {
            local.state = ComponentState::Creating;
            return Ok(false);
        }
        // A create that ended while the agent was away: adopted when Muster's record says it
        // finished, or when Zato's `.zato-info` is there and its effect is in the ODB (the agent
        // was killed between the two). Otherwise it was cut short and starts again. The ODB is
        // not asked again on every pass of a backoff.
        let adoptable = temporary.join(CREATED_RECORD).exists()
            || (!local.waiting()
                && temporary.join(".zato-info").exists()
                && self.check_created(&temporary, None).await.is_ok());
        if adoptable {
            self.finish_create(&temporary, &directory)?;
            let _ = std::fs::remove_file(&marker);
            tracing::info!(component = %directory.display(), "adopted a component whose create finished while the agent was away");
            return Ok(true);
        }
        if local.waiting() {
            return Ok(false);
        }
        if temporary.exists() {
            tracing::info!(directory = %temporary.display(), "removing a half-made component left by an interrupted create");
            std::fs::remove_dir_all(&temporary)
                .map_err(|error| format!("cannot remove {}: {error}", temporary.display()))?;
        }
        let _ = std::fs::remove_file(&marker);
        let args = match self.create_args(&temporary) {
            Ok(args) => args,
            Err(reason) => {
                local.state = ComponentState::Waiting;
                local.last_error = reason;
                return Ok(false);
            }
        };
        self.host.ensure_cluster_dir(&component.cluster)?;
        std::fs::create_dir(&temporary)
            .map_err(|error| format!("cannot create {}: {error}", temporary.display()))?;
        private_dir(&temporary)?;
        self.host.chown(&temporary)?;
        local.state = ComponentState::Creating;
        let writing = self.host.odb_writer(component).await;
        let created = match self
            .create_server_or_recover(&args, &temporary, &marker)
            .await
        {
            Ok(output) => self.check_created(&temporary, Some(&output)).await,
            Err(error) => Err(error),
        };
        drop(writing);
        if let Err(error) = created {
            let _ = std::fs::remove_dir_all(&temporary);
            let _ = std::fs::remove_file(&marker);
            return Err(error);
        }
        if role_of(component) == Role::WebAdmin {
            conf::set_web_admin_bind(
                &temporary,
                &self.host.bind_address.to_string(),
                component.port,
            )?;
        }
        self.finish_create(&temporary, &directory)?;
        let _ = std::fs::remove_file(&marker);
        tracing::info!(component = %directory.display(), "component created");
        Ok(true)
    }

    /// Moves a finished create into place: the directory renamed, the symlinks Zato made into the
    /// old path re-pointed.
    pub(super) fn finish_create(
        &self,
        temporary: &Path,
        directory: &Path,
    ) -> Result<(), StepError> {
        let component = self.component;
        rebuild::record_epoch(temporary, component.odb_epoch)?;
        std::fs::rename(temporary, directory)
            .map_err(|error| format!("cannot move {} into place: {error}", temporary.display()))?;
        if role_of(component) == Role::Server {
            conf::repoint_symlinks(directory, temporary)?;
        }
        Ok(())
    }

    /// Sets the password of the dashboard's user `admin` once per web-admin (`zato create
    /// web-admin` makes one up and never shows it).
    pub(super) async fn ensure_dashboard_password(
        &self,
        directory: &Path,
    ) -> Result<(), ZatoError> {
        let component = self.component;
        let marker = directory.join(DASHBOARD_PASSWORD_MARKER);
        let password = component
            .secrets
            .as_ref()
            .map(|secrets| secrets.dashboard_password.as_str())
            .unwrap_or_default();
        if marker.exists() || password.is_empty() {
            return Ok(());
        }
        let _writing = self.host.odb_writer(component).await;
        self.host
            .facilities
            .zato(
                &command::set_dashboard_password(directory, password),
                directory,
                &|_| {},
            )
            .await?;
        let _ = files::write_atomic(&marker, b"", 0o600);
        tracing::info!(component = %directory.display(), "dashboard password set");
        Ok(())
    }

    /// Rewrites the component's config where the desired port, peer or IPC range changed; says
    /// whether it did (the component must then restart).
    pub(super) fn reconfigure(&self, directory: &Path) -> Result<bool, StepError> {
        let component = self.component;
        let repo = directory.join("config/repo");
        let port = u16::try_from(component.port)
            .map_err(|_| format!("invalid port {}", component.port))?;
        let changed = match role_of(component) {
            Role::Server => {
                let bind = self.host.bind_address;
                let mut settings = vec![("main", "gunicorn_bind", format!("{bind}:{port}"))];
                if let Some(ipc_start) = self.host.ipc_port_starts.get(&key_of(component)) {
                    settings.push(("main", "ipc_port_start", ipc_start.to_string()));
                }
                // Where the other servers call it (Zato's server-to-server calls, a deployment
                // among them): left to Zato, a server takes the first private address of its
                // interfaces, which on a host with a docker0 bridge or a second NIC may be one
                // the other servers cannot reach.
                if let Some(advertise) = self.host.advertise_address {
                    settings.push(("preferred_address", "address", advertise.to_string()));
                }
                if let Some(scheduler) = component.scheduler.as_ref().and_then(conf::peer) {
                    settings.push(("scheduler", "scheduler_host", scheduler.host));
                    settings.push(("scheduler", "scheduler_port", scheduler.port.to_string()));
                    settings.push((
                        "scheduler",
                        "scheduler_use_tls",
                        conf::python_bool(scheduler.tls).to_owned(),
                    ));
                }
                conf::edit_ini(&repo.join("server.conf"), &settings)
            }
            Role::Scheduler => {
                // `zato create scheduler` writes `server_prefer_odb_config=False`: the scheduler
                // then loads its jobs in the background after its start loop and never starts
                // them, so every restart would leave every job dormant (Zato 3.2's
                // `zato.scheduler.backend`, `init_jobs` and `run`). With True it reads them from
                // the ODB before that loop, which starts them all.
                let mut settings = vec![
                    ("bind", "host", self.host.bind_address.to_string()),
                    ("bind", "port", port.to_string()),
                    ("server", "server_prefer_odb_config", "True".to_owned()),
                ];
                if let Some(server) = component.server.as_ref().and_then(conf::peer) {
                    settings.push(("server", "server_host", server.host));
                    settings.push(("server", "server_port", server.port.to_string()));
                    settings.push((
                        "server",
                        "server_use_tls",
                        conf::python_bool(server.tls).to_owned(),
                    ));
                }
                // Its heartbeat job and the log of its job runs: what says its jobs run.
                conf::edit_ini(&repo.join("scheduler.conf"), &settings).and_then(|edited| {
                    let heartbeat = jobs::add_heartbeat(&repo)?;
                    let job_log = jobs::add_job_log(&repo)?;
                    Ok(edited | heartbeat | job_log)
                })
            }
            Role::WebAdmin => conf::set_web_admin_bind(
                directory,
                &self.host.bind_address.to_string(),
                component.port,
            ),
            _ => Ok(false),
        }?;
        if changed {
            tracing::info!(component = %directory.display(), "component reconfigured");
        }
        // Checked on every pass: Zato writes them 0644, and a file it (or a person) writes again
        // is closed again.
        let closed = conf::close_config_files(directory)?;
        if !closed.is_empty() {
            tracing::info!(component = %directory.display(), files = ?closed, "config files closed to group and others (they hold the cluster's secrets)");
        }
        Ok(changed)
    }

    /// Whether the scheduler's current process has started its jobs (read from its log once per
    /// process: a job started stays in its loop).
    fn scheduler_jobs_started(&self, local: &mut Local) -> Result<(), String> {
        let component = self.component;
        let (directory, _, _) = self.host.component_dirs(component);
        let pid = read_pid(&directory.join("pidfile"))
            .ok_or_else(|| "the scheduler has not written its pidfile yet".to_owned())?;
        if local.jobs_started_by == Some(pid) {
            return Ok(());
        }
        let log = files::read_tail(
            &directory.join(health::SCHEDULER_JOBS_LOG),
            health::SCHEDULER_LOG_TAIL,
        )
        .unwrap_or_default();
        health::scheduler_jobs(&log, pid)?;
        local.jobs_started_by = Some(pid);
        Ok(())
    }

    /// Whether the scheduler's current process ran its heartbeat job lately (read from its job
    /// log as it grows; [`jobs`]).
    fn scheduler_heartbeat(&self, local: &mut Local) -> Result<(), String> {
        let component = self.component;
        let Some(pid) = local.jobs_started_by else {
            return Err("the scheduler has not started its jobs yet".to_owned());
        };
        let (directory, _, _) = self.host.component_dirs(component);
        let reader = match &mut local.job_log {
            Some(reader) if reader.pid() == pid => reader,
            other => other.insert(jobs::JobLogReader::new(pid)),
        };
        reader.look(&directory.join(jobs::JOB_LOG))
    }

    /// Whether the component answers as its role must; `Err` says why not.
    pub(super) async fn answers(&self, local: &mut Local) -> Result<(), String> {
        let component = self.component;
        let port = u16::try_from(component.port).unwrap_or_default();
        let address = self.host.probe_address();
        let facilities = &self.host.facilities;
        match role_of(component) {
            role @ (Role::Server | Role::WebAdmin) => {
                facilities.answers(role, address, port, "").await
            }
            Role::Scheduler => {
                // The API call is logged by the scheduler: made once per interval while it
                // passes (a start clears it), even while the jobs are not started yet.
                let asked_recently = local
                    .deep_probe_at
                    .is_some_and(|at| at.elapsed() < health::SCHEDULER_PROBE_INTERVAL);
                if !asked_recently {
                    let password = component
                        .secrets
                        .as_ref()
                        .map(|secrets| secrets.scheduler_api_password.clone())
                        .unwrap_or_default();
                    facilities
                        .answers(Role::Scheduler, address, port, &password)
                        .await?;
                    local.deep_probe_at = Some(Instant::now());
                }
                self.scheduler_jobs_started(local)?;
                self.scheduler_heartbeat(local)
            }
            Role::LoadBalancer | Role::Unspecified => Ok(()),
        }
    }
}

/// Stops the component in `directory`: `zato stop` when it has a pidfile, signals to its
/// processes when it has none yet.
pub(super) async fn stop_zato_component(host: &Host, directory: &Path) -> Result<(), StepError> {
    if read_pid(&directory.join("pidfile")).is_some_and(|pid| host.facilities.alive(pid)) {
        return host
            .facilities
            .zato(&command::stop(directory), directory, &|_| {})
            .await
            .map(|_| ())
            .map_err(StepError::from);
    }
    if host.facilities.terminate(directory, STOP_PATIENCE).await {
        Ok(())
    } else {
        Err(StepError::Other(format!(
            "the processes of {} did not end after SIGTERM and SIGKILL",
            directory.display()
        )))
    }
}
