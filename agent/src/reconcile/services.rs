//! A server's services: the agent of each server makes sure Zato recorded every module of the
//! cluster's desired revision as deployed *on that server* (`deployed_service` in the ODB, by the
//! module's SHA-256), and reports the revision once it did. What is missing is sent through the
//! server (`zato::services::upload`), and Zato deploys it on every running server of the cluster:
//! one server's agent (`deploys_services`) sends at once, the others wait [`OTHERS_WAIT`] for
//! Zato to bring it to them first. A module that is not recorded within [`DEPLOY_PATIENCE`] did
//! not import: the agent reports Python's error line from the server's log, sends back the
//! version of the last revision found deployed (so that the file Zato keeps is the good one, and
//! a restart does not lose the service), and tries again after [`RETRY_AFTER_FAILURE`]. Once a
//! revision is in place, the services of the modules Muster deployed before and the revision no
//! longer has are deleted through Zato (`remove_left_modules`).
//!
//! The cluster's configuration goes through the same server: once its services are in place, its
//! agent imports the enmasse files with `zato enmasse`, once per revision ([`CONFIG_RECORD`]).

use super::*;
use crate::zato::services;

/// How long a sent module may take to be recorded as deployed on the server.
const DEPLOY_PATIENCE: Duration = Duration::from_secs(30);
/// How long a server that does not deploy waits for the module to reach it from the one that does.
const OTHERS_WAIT: Duration = Duration::from_secs(60);
/// When a revision that did not deploy is tried again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(300);
/// How often a deployed revision is checked again (an ODB replaced by an empty one loses it).
const RECHECK: Duration = Duration::from_secs(60);
/// How much of the end of the server's log is searched for an import error.
const LOG_TAIL: u64 = 256 * 1024;

impl ZatoComponent<'_> {
    /// One step of bringing the healthy server `component` to its desired services revision; its
    /// error, if any, goes to the component's last error (the server itself keeps serving).
    pub(super) async fn deploy_services(&self, local: &mut Local) {
        let component = self.component;
        let desired = component.services_revision.clone();
        let state = &mut local.services;
        if desired.is_empty() {
            *state = lifecycle::ServicesLocal::default();
            return;
        }
        // The services may import the cluster's Python dependencies: they wait for the server to
        // run with them (a restart the planner allows one server at a time).
        let python = python::started_revision(&self.host.component_dirs(component).0);
        if !component.python_revision.is_empty() && python != component.python_revision {
            return;
        }
        if state.python != python {
            state.python = python;
            state.retry_at = None;
            state.sent = None;
            state.error.clear();
        }
        let fresh = state.checked_at.is_some_and(|at| at.elapsed() < RECHECK);
        if state.deployed == desired && fresh {
            return;
        }
        // A new revision is tried at once, whatever became of the last one.
        if state
            .missing_since
            .as_ref()
            .is_some_and(|(revision, _)| *revision != desired)
        {
            state.missing_since = None;
            state.retry_at = None;
            state.error.clear();
        }
        if state.retry_at.is_some_and(|at| Instant::now() < at) {
            local.last_error = state.error.clone();
            return;
        }
        let (settings, password, default_sqlite) = self.host.odb_parts(component);
        let odb = zato::odb::Odb {
            settings: &settings,
            password: &password,
            default_sqlite: &default_sqlite,
        };
        let found = match odb
            .deployed_modules(&component.cluster, &component.name)
            .await
        {
            Ok(Some(found)) => found,
            Ok(None) => return,
            Err(error) => {
                state.error = format!("services: cannot read what is deployed: {error}");
                state.retry_at = Some(Instant::now() + Duration::from_secs(10));
                local.last_error = state.error.clone();
                return;
            }
        };
        let (cluster_id, hashes) = found;
        let missing: Vec<&v1::ServiceFile> = component
            .services
            .iter()
            .filter(|file| !hashes.contains(&file.sha256))
            .collect();
        if missing.is_empty() {
            if let Err(error) = self.remove_left_modules(&odb).await {
                state.error = format!(
                    "services revision {}: {error}",
                    muster_proto::services::short(&desired)
                );
                state.retry_at = Some(Instant::now() + Duration::from_secs(10));
                local.last_error = state.error.clone();
                return;
            }
            if state.deployed != desired {
                tracing::info!(component = %component.name, revision = %desired, "services revision deployed");
            }
            *state = lifecycle::ServicesLocal {
                deployed: desired,
                checked_at: Some(Instant::now()),
                good: component
                    .services
                    .iter()
                    .map(|file| (file.name.clone(), file.content.clone()))
                    .collect(),
                python: std::mem::take(&mut state.python),
                ..Default::default()
            };
            return;
        }
        let short = muster_proto::services::short(&desired).to_owned();
        match &state.sent {
            Some((revision, at)) if *revision == desired && at.elapsed() < DEPLOY_PATIENCE => {}
            Some((revision, _)) if *revision == desired => {
                state.error = self
                    .import_failure(&short, &missing, true)
                    .unwrap_or_default();
                tracing::warn!(component = %component.name, error = %state.error, "services did not deploy");
                // Zato keeps the file it was sent: the good version goes back in its place.
                for file in &missing {
                    if let Some(good) = state.good.get(&file.name) {
                        let _ = self.upload_module(cluster_id, &file.name, good).await;
                    }
                }
                state.sent = None;
                state.retry_at = Some(Instant::now() + RETRY_AFTER_FAILURE);
                local.last_error = state.error.clone();
            }
            _ => {
                let noticed = match &state.missing_since {
                    Some((revision, at)) if *revision == desired => *at,
                    _ => {
                        let now = Instant::now();
                        state.missing_since = Some((desired.clone(), now));
                        now
                    }
                };
                if !component.deploys_services {
                    if noticed.elapsed() < OTHERS_WAIT {
                        return;
                    }
                    // Zato brought the module here and it did not import: the deploying
                    // server's agent saw the same and restores the good version; sending it
                    // again would only fail again.
                    if let Some(error) = self.import_failure(&short, &missing, false) {
                        state.error = error;
                        state.retry_at = Some(Instant::now() + RETRY_AFTER_FAILURE);
                        local.last_error = state.error.clone();
                        return;
                    }
                }
                for file in &missing {
                    if let Err(error) = self
                        .upload_module(cluster_id, &file.name, &file.content)
                        .await
                    {
                        state.error = format!("services revision {short}: {error}");
                        state.retry_at = Some(Instant::now() + DEPLOY_PATIENCE);
                        local.last_error = state.error.clone();
                        return;
                    }
                }
                tracing::info!(component = %component.name, revision = %desired, modules = missing.len(), "services sent to the server");
                state.sent = Some((desired, Instant::now()));
            }
        }
    }

    /// Removes from the cluster the services of the modules Muster deployed before
    /// ([`SERVICES_RECORD`]) that the desired revision no longer has: the deploying server's
    /// agent deletes them through its server (`zato.service.delete`: Zato removes each from the
    /// ODB and from every running server, with its file); the others only note the new set.
    /// Services Muster did not deploy (uploaded in the dashboard) are left alone.
    async fn remove_left_modules(&self, odb: &zato::odb::Odb<'_>) -> Result<(), StepError> {
        let component = self.component;
        let record = self.host.component_dirs(component).0.join(SERVICES_RECORD);
        let recorded: BTreeSet<String> = std::fs::read_to_string(&record)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        let desired: BTreeSet<String> = component
            .services
            .iter()
            .map(|file| file.name.clone())
            .collect();
        if recorded == desired {
            return Ok(());
        }
        let left: BTreeSet<&String> = recorded.difference(&desired).collect();
        if component.deploys_services && !left.is_empty() {
            let deployed = odb
                .deployed_user_services(&component.cluster, &component.name)
                .await
                .map_err(|error| format!("cannot read what is deployed: {error}"))?;
            let password = admin_invoke_password(component);
            for (id, name, module) in deployed
                .iter()
                .filter(|(_, _, module)| left.contains(module))
            {
                services::delete(
                    self.host.probe_address(),
                    u16::try_from(component.port).unwrap_or_default(),
                    password,
                    *id,
                    name,
                )
                .await?;
                tracing::info!(component = %component.name, service = %name, module = %module, "service removed: its module left the cluster's services");
            }
        }
        let text = serde_json::to_string(&desired).unwrap_or_default();
        files::write_atomic(&record, text.as_bytes(), 0o600).map_err(StepError::from)
    }

    /// Why `missing` did not deploy on the server, from Python's errors in its log; a module
    /// without one counts only when `all` (then: not recorded in time). `None` when none counts.
    fn import_failure(
        &self,
        short: &str,
        missing: &[&v1::ServiceFile],
        all: bool,
    ) -> Option<String> {
        let component = self.component;
        let (directory, _, _) = self.host.component_dirs(component);
        let log =
            files::read_tail(&directory.join("logs/server.log"), LOG_TAIL).unwrap_or_default();
        let causes: Vec<String> = missing
            .iter()
            .filter_map(|file| {
                let cause = services::import_error(&log, &file.name).or_else(|| {
                    all.then(|| {
                        format!(
                            "not recorded as deployed within {}s",
                            DEPLOY_PATIENCE.as_secs()
                        )
                    })
                })?;
                Some(format!("{} did not deploy: {cause}", file.name))
            })
            .collect();
        (!causes.is_empty()).then(|| {
            format!(
                "services revision {short}: {}; the version deployed before keeps serving",
                causes.join("; ")
            )
        })
    }

    async fn upload_module(
        &self,
        cluster_id: i32,
        name: &str,
        content: &str,
    ) -> Result<(), StepError> {
        let component = self.component;
        let password = admin_invoke_password(component);
        services::upload(
            self.host.probe_address(),
            u16::try_from(component.port).unwrap_or_default(),
            password,
            cluster_id,
            name,
            content,
        )
        .await
        .map_err(StepError::Other)
    }
}

/// The record, in the server's directory, of the modules Muster deployed (a JSON list of names):
/// what a later revision without some of them removes.
const SERVICES_RECORD: &str = ".muster-services";

/// The record, in the server's directory, of the configuration revision imported through it.
const CONFIG_RECORD: &str = ".muster-config-revision";
/// When a configuration that did not import is tried again.
const CONFIG_RETRY: Duration = Duration::from_secs(60);

impl ZatoComponent<'_> {
    /// On the server that imports the cluster's configuration (its desired state carries it),
    /// once its services are in place: `zato enmasse --import` of each file, once per revision.
    /// The files and the env file (the placeholders' values, mode 0600) are written to
    /// `DIR/muster-config`; the env file is removed after each run. Enmasse's output reaches the
    /// status with the values replaced by `***`.
    pub(super) async fn import_config(&self, local: &mut Local) {
        let component = self.component;
        let desired = component.config_revision.clone();
        if desired.is_empty() {
            local.config = lifecycle::ConfigLocal::default();
            return;
        }
        let services_ready = component.services_revision.is_empty()
            || local.services.deployed == component.services_revision;
        let (directory, _, _) = self.host.component_dirs(component);
        let record = directory.join(CONFIG_RECORD);
        if local.config.imported.is_empty() {
            local.config.imported = std::fs::read_to_string(&record)
                .map(|text| text.trim().to_owned())
                .unwrap_or_default();
        }
        if local.config.imported == desired || !services_ready {
            return;
        }
        // Held while another server of the cluster is on its way up (it would miss part of the
        // import); said, since the revision waits.
        if !component.config_hold.is_empty() {
            local.last_error = format!(
                "configuration revision {} not imported yet: {}",
                muster_proto::services::short(&desired),
                component.config_hold
            );
            return;
        }
        if local.config.failed == desired
            && local.config.retry_at.is_some_and(|at| Instant::now() < at)
        {
            local.last_error = local.config.error.clone();
            return;
        }
        let short = muster_proto::services::short(&desired).to_owned();
        let imported = match self.run_enmasse(&directory).await {
            Ok(()) => self.remove_left_objects().await,
            Err(error) => Err(error),
        };
        match imported {
            Ok(()) => {
                let _ = files::write_atomic(&record, format!("{desired}\n").as_bytes(), 0o600);
                tracing::info!(component = %component.name, revision = %desired, files = component.config_files.len(), "configuration imported");
                local.config = lifecycle::ConfigLocal {
                    imported: desired,
                    ..Default::default()
                };
            }
            Err(error) => {
                local.config.error = format!("configuration revision {short}: {error}");
                local.config.failed = desired;
                local.config.retry_at = Some(Instant::now() + CONFIG_RETRY);
                tracing::warn!(component = %component.name, error = %local.config.error, "configuration did not import");
                local.last_error = local.config.error.clone();
            }
        }
    }

    /// After an import: the objects earlier revisions' files imported and the new ones lack
    /// (the coordinator keeps the list, `config_removals`, whichever server imported them) are
    /// deleted through Zato (enmasse itself never deletes), channels and jobs before the security
    /// definitions they may use. Only objects of the kinds Muster knows how to delete: REST
    /// channels and outgoing connections, scheduler jobs, basic-auth and API key definitions.
    /// Others are left, named in the agent's log. One already gone is no error.
    async fn remove_left_objects(&self) -> Result<(), StepError> {
        let component = self.component;
        let mut left: Vec<&v1::EnmasseObject> = component.config_removals.iter().collect();
        // What uses a security definition goes first.
        left.sort_by_key(|object| object.section == "security");
        let (settings, password, default_sqlite) = self.host.odb_parts(component);
        let odb = zato::odb::Odb {
            settings: &settings,
            password: &password,
            default_sqlite: &default_sqlite,
        };
        let port = u16::try_from(component.port).unwrap_or_default();
        for object in left {
            let what = format!("{} {}", object.section, object.name);
            let by_id = |table, service: &'static str| (Some(table), service);
            let (table, service) = match (object.section.as_str(), object.kind.as_str()) {
                ("channel_rest" | "outgoing_rest", _) => (None, "zato.http-soap.delete"),
                ("scheduler", _) => by_id(zato::odb::ObjectTable::Job, "zato.scheduler.job.delete"),
                ("security", "basic_auth") => by_id(
                    zato::odb::ObjectTable::Security,
                    "zato.security.basic-auth.delete",
                ),
                ("security", "apikey") => by_id(
                    zato::odb::ObjectTable::Security,
                    "zato.security.apikey.delete",
                ),
                _ => {
                    tracing::warn!(component = %component.name, object = %what, "left the configuration's files but is not removed: Muster removes REST channels and outgoing connections, scheduler jobs, basic-auth and API key definitions");
                    continue;
                }
            };
            let input = match table {
                None => serde_json::json!({
                    "name": object.name,
                    "connection": if object.section == "channel_rest" { "channel" } else { "outgoing" },
                    "should_raise_if_missing": false,
                }),
                Some(table) => {
                    let id = odb
                        .object_id(&component.cluster, table, &object.name)
                        .await?;
                    // Gone already (removed by hand): nothing to do.
                    let Some(id) = id else { continue };
                    serde_json::json!({ "id": id })
                }
            };
            services::delete_object(
                self.host.probe_address(),
                port,
                admin_invoke_password(component),
                service,
                &input,
                &what,
            )
            .await?;
            tracing::info!(component = %component.name, object = %what, "removed: it left the configuration's files");
        }
        Ok(())
    }

    async fn run_enmasse(&self, directory: &Path) -> Result<(), StepError> {
        let component = self.component;
        let config_dir = directory.join("muster-config");
        private_dir(&config_dir)?;
        self.host.chown(&config_dir)?;
        let env_file = config_dir.join("env.ini");
        let mut env_text = String::from("[env]\n");
        for (name, value) in &component.config_env {
            env_text.push_str(&format!("{name}={value}\n"));
        }
        let scrub = |text: String| {
            component
                .config_env
                .values()
                .filter(|value| !value.is_empty())
                .fold(text, |text, value| text.replace(value.as_str(), "***"))
        };
        let written = files::write_atomic(&env_file, env_text.as_bytes(), 0o600)
            .map_err(StepError::from)
            .and_then(|()| self.host.chown(&env_file));
        let mut outcome = written;
        if outcome.is_ok() {
            for file in &component.config_files {
                // Names are checked by the coordinator (NAME.yaml); checked again before they
                // become a path.
                if !file.name.ends_with(".yaml") && !file.name.ends_with(".yml")
                    || file.name.contains('/')
                {
                    outcome = Err(StepError::Refused(format!(
                        "enmasse file name {:?}",
                        file.name
                    )));
                    break;
                }
                let input = config_dir.join(&file.name);
                if let Err(error) = files::write_atomic(&input, file.content.as_bytes(), 0o600)
                    .map_err(StepError::from)
                    .and_then(|()| self.host.chown(&input))
                {
                    outcome = Err(error);
                    break;
                }
                let args = command::enmasse_import(directory, &input, &env_file);
                if let Err(error) = self.host.facilities.zato(&args, directory, &|_| {}).await {
                    outcome = Err(StepError::Other(format!(
                        "{} did not import: {}",
                        file.name,
                        scrub(error.to_string())
                    )));
                    break;
                }
            }
        }
        let _ = std::fs::remove_file(&env_file);
        outcome
    }
}
