//! The two kinds of component, as [`Driver`]s: Zato's (server, scheduler, web-admin), run with
//! `zato` commands, and the load balancer, HAProxy run by the agent itself.

use std::path::PathBuf;

use muster_proto::v1::{self, Component, Role};

use super::error::StepError;
use super::host::{Host, private_dir};
use super::lifecycle::{Driver, Health, Local, Prepared};
use super::zato_steps::{
    ZatoComponent, record_restart_epoch, started_restart_epoch, stop_zato_component,
};
use super::{python, rebuild, role_of, user_conf};
use crate::haproxy::{self, HaProxy};
use crate::zato::{command, conf, health, process};

impl Driver for ZatoComponent<'_> {
    fn describe(&self) -> String {
        self.directory.display().to_string()
    }

    fn desired_stopped(&self) -> bool {
        self.component.stopped
    }

    async fn prepare(&self, local: &mut Local) -> Result<Prepared, StepError> {
        self.retire_older(&self.directory, local).await?;
        if !self.ensure_created(local).await? {
            return Ok(Prepared::NotYet);
        }
        if role_of(self.component) == Role::WebAdmin {
            self.ensure_dashboard_password(&self.directory).await?;
        }
        let mut restart = self.reconfigure(&self.directory)?;
        // The Zato installation it must run: without it here, a component that runs is kept as
        // it is (a restart could not bring it back; `tend` says why), one that does not cannot
        // start.
        let install_missing = match self.install() {
            Ok(_) => false,
            Err(_) if self.running() => true,
            Err(error) => return Err(StepError::Other(error)),
        };
        if role_of(self.component) == Role::Server {
            let reload = self
                .prepare_python(&self.directory, self.running(), local)
                .await?;
            if reload && !install_missing {
                tracing::info!(component = %self.describe(), revision = %self.component.python_revision, "restarting to load new Python dependencies");
            }
            restart |= reload;
            // Read by the server at start; a running one has them loaded once it is healthy.
            if !self.running() {
                self.write_user_conf(&self.directory)?;
            }
        }
        let rolling = self.rolling();
        if rolling && !install_missing {
            tracing::info!(component = %self.describe(), restart_epoch = self.component.restart_epoch, "restarting for the cluster's rolling restart of its role");
        }
        restart |= rolling;
        if restart && install_missing {
            // Said in its status each pass (`tend`); logged here only at debug.
            tracing::debug!(component = %self.describe(), "not restarted: its Zato installation is not on this host");
            restart = false;
        }
        Ok(Prepared::Ready { restart })
    }

    fn running(&self) -> bool {
        self.host
            .facilities
            .component_process(&self.directory)
            .is_some()
    }

    fn pid(&self) -> Option<i32> {
        process::read_pid(&self.directory.join("pidfile"))
    }

    fn death_cause(&self) -> Option<String> {
        process::last_logged_error(&self.directory)
    }

    async fn stop(&self) -> Result<(), StepError> {
        if !self.running() {
            return Ok(());
        }
        stop_zato_component(self.host, &self.directory).await
    }

    async fn start(&self, _local: &mut Local) -> Result<(), StepError> {
        // `zato start` refuses a pidfile left by a process that is gone.
        let pidfile = self.directory.join("pidfile");
        if pidfile.exists() {
            let _ = std::fs::remove_file(&pidfile);
        }
        let mut args = command::start(&self.directory);
        let install = self.install().map_err(StepError::Other)?;
        // The cluster's settings of its role, read by the component at start: written at each
        // start (a change comes with a rolling restart of the role, whose turn starts it again).
        let role = role_of(self.component);
        let settings = self.settings();
        if role == Role::Server {
            let server_conf = self.directory.join("config/repo/server.conf");
            if conf::apply_server_settings(&server_conf, &settings).map_err(StepError::from)? {
                tracing::info!(component = %self.describe(), settings = ?settings.keys().collect::<Vec<_>>(), "server settings written to server.conf");
            }
            if let Some(python) = self.python_for_start(&self.directory) {
                args.push(crate::zato::env("PYTHONPATH", python.display()));
            }
        } else {
            // Neither the scheduler nor a dashboard reads `[os_environ]`: the variables go into
            // the environment of `zato start`, which the process it starts inherits.
            args.extend(settings.iter().filter_map(|(name, value)| {
                let variable = name.strip_prefix(muster_proto::server_settings::ENV_PREFIX)?;
                Some(crate::zato::env(variable, value))
            }));
        }
        if role == Role::WebAdmin {
            let time_zone = settings
                .get(muster_proto::server_settings::TIME_ZONE.name)
                .map(String::as_str)
                .unwrap_or(muster_proto::server_settings::TIME_ZONE.default);
            if conf::set_web_admin_time_zone(&self.directory, time_zone).map_err(StepError::from)? {
                tracing::info!(component = %self.describe(), time_zone, "time zone written to web-admin.conf");
            }
        }
        let logging_conf = self.directory.join("config/repo/logging.conf");
        if conf::apply_logging_levels(&logging_conf, role, &settings).map_err(StepError::from)? {
            tracing::info!(component = %self.describe(), "loggers' levels written to logging.conf");
        }
        record_restart_epoch(&self.directory, self.component.restart_epoch)?;
        self.host
            .facilities
            .zato_with(install, &args, &self.directory, &|_| {})
            .await
            .map(|_| ())
            .map_err(StepError::from)
    }

    async fn update(&self) -> Option<Result<String, StepError>> {
        None
    }

    async fn probe(&self, local: &mut Local) -> Health {
        let answers = self.answers(local).await;
        Health {
            alive: self.running(),
            answers,
        }
    }

    fn unhealthy_error(&self, health: &Health, _last_error: &str) -> Option<String> {
        let (role, name) = (role_of(self.component), &self.component.name);
        Some(match &health.answers {
            Err(reason) => format!("{role} {name}: {reason}"),
            Ok(()) => format!("{role} {name} has no process"),
        })
    }

    fn clears_error_when_healthy(&self) -> bool {
        true
    }

    /// The kind's work on a component once its life's step is done: a server that answers gets
    /// the cluster's environment (services, configuration, user-config files; its ODB is looked
    /// at), unless it was created on an ODB since rebuilt, which holds it as it is.
    async fn tend(&self, local: &mut Local) {
        if role_of(self.component) == Role::Server
            && local.healthy
            && !local.python.error.is_empty()
        {
            // It serves with the dependencies it had; why the new ones are not there is its
            // error until they are.
            local.last_error = local.python.error.clone();
        }
        if local.healthy
            && let Err(error) = self.install()
        {
            // It serves with the installation it was started with.
            local.last_error = error;
        }
        if rebuild::older(self.component, &self.directory) {
            // Held until it is created again on the rebuilt ODB: it serves what it loaded, and
            // nothing new is brought to it.
            if local.healthy {
                local.last_error = format!(
                    "created on the cluster's ODB before it was rebuilt; {}",
                    self.component.hold
                );
            }
        } else if role_of(self.component) == Role::Server && local.healthy {
            self.deploy_services(local).await;
            self.import_config(local).await;
            self.load_user_conf(local).await;
            self.check_odb(local).await;
        }
    }
}

impl ZatoComponent<'_> {
    /// The cluster's settings of its role: a server's `server_settings`, the scheduler's and a
    /// dashboard's `settings`.
    fn role_settings(&self) -> &std::collections::HashMap<String, String> {
        if role_of(self.component) == Role::Server {
            &self.component.server_settings
        } else {
            &self.component.settings
        }
    }

    /// [`Self::role_settings`], in order.
    fn settings(&self) -> std::collections::BTreeMap<String, String> {
        self.role_settings().clone().into_iter().collect()
    }

    /// The `zato` command the component starts with: its role's `zato.install`, one of this
    /// host's installations (`None`: the host's own).
    pub(super) fn install(&self) -> Result<Option<&std::path::Path>, String> {
        let name = self
            .role_settings()
            .get(muster_proto::server_settings::ZATO_INSTALL)
            .map(String::as_str)
            .unwrap_or_default();
        self.host.zato_install(name)
    }

    /// Its turn in a rolling restart of its role has come, and its running process was started
    /// under an older restart epoch.
    fn rolling(&self) -> bool {
        self.component.python_restart
            && self.running()
            && started_restart_epoch(&self.directory) < self.component.restart_epoch
    }

    /// What the component's directory says of it: the Python dependencies a server started with
    /// and has installed, its user-config files, the ODB epoch it was created on.
    pub(super) fn report(&self, local: &Local, status: &mut v1::ComponentStatus) {
        status.rolls = true;
        if local.seen_alive {
            status.restart_epoch = started_restart_epoch(&self.directory);
        }
        if role_of(self.component) == Role::Server {
            if local.seen_alive {
                status.python_revision = python::started_revision(&self.directory);
                status.user_conf_revision = user_conf::in_place(&self.directory);
            }
            if python::installed(&self.directory, &self.component.python_revision) {
                status.python_installed = self.component.python_revision.clone();
            }
        }
        if let Some(epoch) = rebuild::created_epoch(&self.directory) {
            status.odb_epoch = epoch;
        }
    }
}

/// A load balancer: HAProxy, started by the agent and changed in place while it runs.
pub(super) struct LoadBalancer<'a> {
    pub host: &'a Host,
    pub component: &'a Component,
    pub plan: haproxy::Plan,
    pub directory: PathBuf,
    pub paths: haproxy::Paths,
}

impl LoadBalancer<'_> {
    fn haproxy(&self) -> HaProxy<'_> {
        HaProxy {
            paths: &self.paths,
            run_as: self.host.zato.run_as.as_ref(),
        }
    }

    /// The restart epoch its HAProxy was last started or reloaded under, for the coordinator.
    pub(super) fn report(&self, status: &mut v1::ComponentStatus) {
        status.rolls = true;
        status.restart_epoch = started_restart_epoch(&self.directory);
    }

    /// At its turn in a rolling restart of the load balancers, and reloaded last under an older
    /// restart epoch: HAProxy reloads (hitless: the master starts new workers, which read the
    /// binary and the config again, and the old ones finish their requests), and the epoch is
    /// recorded.
    async fn roll(&self) -> Result<(), StepError> {
        if !(self.component.python_restart
            && started_restart_epoch(&self.directory) < self.component.restart_epoch)
        {
            return Ok(());
        }
        tracing::info!(component = %self.describe(), restart_epoch = self.component.restart_epoch, "reloading HAProxy for the cluster's rolling restart of its load balancers");
        self.haproxy().reload().await?;
        record_restart_epoch(&self.directory, self.component.restart_epoch)
    }
}

impl Driver for LoadBalancer<'_> {
    fn describe(&self) -> String {
        self.directory.display().to_string()
    }

    fn desired_stopped(&self) -> bool {
        self.component.stopped
    }

    async fn prepare(&self, _local: &mut Local) -> Result<Prepared, StepError> {
        if !self.directory.exists() {
            self.host
                .ensure_cluster_dir(&self.component.cluster)
                .and_then(|_| {
                    private_dir(&self.directory)?;
                    self.host.chown(&self.directory)
                })?;
        }
        Ok(Prepared::Ready { restart: false })
    }

    fn running(&self) -> bool {
        haproxy::master_pid(&self.paths).is_some()
    }

    fn pid(&self) -> Option<i32> {
        process::read_pid(&self.paths.pidfile)
    }

    fn death_cause(&self) -> Option<String> {
        None
    }

    async fn stop(&self) -> Result<(), StepError> {
        Ok(self.haproxy().stop().await?)
    }

    async fn start(&self, local: &mut Local) -> Result<(), StepError> {
        match self.haproxy().start(&self.plan).await {
            Ok(()) => {
                local.last_error.clear();
                record_restart_epoch(&self.directory, self.component.restart_epoch)
            }
            Err(error) => {
                local.backends.clear();
                Err(error.into())
            }
        }
    }

    async fn update(&self) -> Option<Result<String, StepError>> {
        let applied = self
            .haproxy()
            .converge(&self.plan)
            .await
            .map(|applied| applied.note)
            .map_err(StepError::from);
        Some(match applied {
            Ok(note) => self.roll().await.map(|()| note),
            Err(error) => Err(error),
        })
    }

    async fn probe(&self, local: &mut Local) -> Health {
        let alive = self.running();
        let answers = alive
            && health::request(
                self.plan.probe_address(),
                self.plan.port,
                "GET",
                "/zato-lb-alive",
                &[],
                "",
            )
            .await
            .is_ok_and(|answer| answer.status == 200);
        local.backends = if alive {
            self.haproxy().backend_states().await.unwrap_or_default()
        } else {
            Vec::new()
        };
        Health {
            alive,
            answers: if answers {
                Ok(())
            } else {
                Err("it does not answer /zato-lb-alive".to_owned())
            },
        }
    }

    fn unhealthy_error(&self, _health: &Health, last_error: &str) -> Option<String> {
        last_error.is_empty().then(|| {
            format!(
                "load balancer {} does not answer /zato-lb-alive on port {}",
                self.component.name, self.plan.port
            )
        })
    }

    fn clears_error_when_healthy(&self) -> bool {
        false
    }
}
