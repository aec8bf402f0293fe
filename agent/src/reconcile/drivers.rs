//! The two kinds of component, as [`Driver`]s: Zato's (server, scheduler, web-admin), run with
//! `zato` commands, and the load balancer, HAProxy run by the agent itself.

use std::path::PathBuf;

use muster_proto::v1::{Component, Role};

use super::lifecycle::{Driver, Failure, Health, Local, Prepared};
use super::{Reconciler, private_dir, role_of};
use crate::haproxy::{self, HaProxy};
use crate::zato::{command, health, process};

/// A server, scheduler or web-admin.
pub(super) struct ZatoComponent<'a> {
    pub reconciler: &'a Reconciler,
    pub component: &'a Component,
    pub directory: PathBuf,
}

impl Driver for ZatoComponent<'_> {
    fn describe(&self) -> String {
        self.directory.display().to_string()
    }

    fn desired_stopped(&self) -> bool {
        self.component.stopped
    }

    async fn prepare(&self, local: &mut Local) -> Result<Prepared, Failure> {
        self.reconciler
            .retire_older(self.component, &self.directory, local)
            .await
            .map_err(Failure::Other)?;
        match self.reconciler.ensure_created(self.component, local).await {
            Ok(true) => {}
            Ok(false) => return Ok(Prepared::NotYet),
            Err(error) => return Err(Failure::Step(error)),
        }
        if role_of(self.component) == Role::WebAdmin {
            self.reconciler
                .ensure_dashboard_password(self.component, &self.directory)
                .await
                .map_err(|error| Failure::Step(error.to_string()))?;
        }
        let mut restart = self
            .reconciler
            .reconfigure(self.component, &self.directory)
            .map_err(Failure::Other)?;
        if role_of(self.component) == Role::Server {
            let reload = self
                .reconciler
                .prepare_python(self.component, &self.directory, self.running(), local)
                .await
                .map_err(Failure::Other)?;
            if reload {
                tracing::info!(component = %self.describe(), revision = %self.component.python_revision, "restarting to load new Python dependencies");
            }
            restart |= reload;
            // Read by the server at start; a running one has them loaded once it is healthy.
            if !self.running() {
                self.reconciler
                    .write_user_conf(self.component, &self.directory)
                    .map_err(Failure::Other)?;
            }
        }
        Ok(Prepared::Ready { restart })
    }

    fn running(&self) -> bool {
        process::find(&self.directory).is_some()
    }

    fn pid(&self) -> Option<i32> {
        process::read_pid(&self.directory.join("pidfile"))
    }

    fn death_cause(&self) -> Option<String> {
        process::last_logged_error(&self.directory)
    }

    async fn stop(&self) -> Result<(), String> {
        if !self.running() {
            return Ok(());
        }
        self.reconciler.stop_component(&self.directory).await
    }

    async fn start(&self, _local: &mut Local) -> Result<(), Failure> {
        // `zato start` refuses a pidfile left by a process that is gone.
        let pidfile = self.directory.join("pidfile");
        if pidfile.exists() {
            let _ = std::fs::remove_file(&pidfile);
        }
        let mut args = command::start(&self.directory);
        if role_of(self.component) == Role::Server
            && let Some(python) = self
                .reconciler
                .python_for_start(self.component, &self.directory)
        {
            args.push(crate::zato::env("PYTHONPATH", python.display()));
        }
        self.reconciler
            .zato
            .run(&args, &self.directory, |_| {})
            .await
            .map(|_| ())
            .map_err(|error| Failure::Step(error.to_string()))
    }

    async fn update(&self) -> Option<Result<String, String>> {
        None
    }

    async fn probe(&self, local: &mut Local) -> Health {
        let answers = self.reconciler.probe(self.component, local).await;
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
}

/// A load balancer: HAProxy, started by the agent and changed in place while it runs.
pub(super) struct LoadBalancer<'a> {
    pub reconciler: &'a Reconciler,
    pub component: &'a Component,
    pub plan: haproxy::Plan,
    pub directory: PathBuf,
    pub paths: haproxy::Paths,
}

impl LoadBalancer<'_> {
    fn haproxy(&self) -> HaProxy<'_> {
        HaProxy {
            paths: &self.paths,
            run_as: self.reconciler.zato.run_as.as_ref(),
        }
    }
}

impl Driver for LoadBalancer<'_> {
    fn describe(&self) -> String {
        self.directory.display().to_string()
    }

    fn desired_stopped(&self) -> bool {
        self.component.stopped
    }

    async fn prepare(&self, _local: &mut Local) -> Result<Prepared, Failure> {
        if !self.directory.exists() {
            self.reconciler
                .ensure_cluster_dir(&self.component.cluster)
                .and_then(|_| {
                    private_dir(&self.directory)?;
                    self.reconciler.chown(&self.directory)
                })
                .map_err(Failure::Other)?;
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

    async fn stop(&self) -> Result<(), String> {
        self.haproxy().stop().await
    }

    async fn start(&self, local: &mut Local) -> Result<(), Failure> {
        match self.haproxy().start(&self.plan).await {
            Ok(()) => {
                local.last_error.clear();
                Ok(())
            }
            Err(error) => {
                local.backends.clear();
                Err(Failure::Other(error))
            }
        }
    }

    async fn update(&self) -> Option<Result<String, String>> {
        Some(
            self.haproxy()
                .converge(&self.plan)
                .await
                .map(|applied| applied.note),
        )
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
