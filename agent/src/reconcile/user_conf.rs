//! A server's user-config files: the cluster's `NAME.ini`/`NAME.conf` files, which its services
//! read as `self.config.NAME`. Zato 3.2 reads the files of `pickup/incoming/user-conf` when the
//! server starts; its pickup, which would load a changed one into a running server, does
//! nothing in this build (its file observers die at start). So the agent writes the files
//! (mode 0600: they hold the users' credentials) before the server starts, and loads a changed
//! revision into a running server through its admin service `zato.pickup.on-update-user-conf`
//! (file by file: Zato writes the file and replaces what the services read), without a restart.
//! A file that leaves the revision is emptied in the running server, then removed. Files Muster
//! did not write are left alone ([`RECORD`] names those it did).

use serde::{Deserialize, Serialize};

use super::*;
use crate::zato::conf::USER_CONF_DIR;
use crate::zato::services;

/// The record, in the server's directory, of the revision in place and the files Muster wrote.
const RECORD: &str = ".muster-user-conf";
/// When a revision that did not load is tried again.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Record {
    revision: String,
    names: Vec<String>,
}

/// What the agent knows of one server's user-config files between passes.
#[derive(Debug, Default)]
pub struct UserConfLocal {
    /// The revision that last did not load, why, and when to try again.
    pub failed: String,
    pub error: String,
    pub retry_at: Option<Instant>,
}

fn record(directory: &Path) -> Record {
    std::fs::read_to_string(directory.join(RECORD))
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default()
}

/// The user-config revision in place in the server's directory (empty: none).
pub fn in_place(directory: &Path) -> String {
    record(directory).revision
}

impl ZatoComponent<'_> {
    /// Before the server in `directory` starts: its user-config files as the desired state has
    /// them, the files Muster wrote before and the revision lacks removed. Nothing to do when
    /// the revision is in place already.
    pub(super) fn write_user_conf(&self, directory: &Path) -> Result<(), StepError> {
        let component = self.component;
        let before = record(directory);
        if before.revision == component.user_conf_revision {
            return Ok(());
        }
        self.write_user_conf_files(directory)?;
        for name in left(&before, component) {
            remove_file(&directory.join(USER_CONF_DIR).join(name))?;
        }
        self.write_record(directory)
    }

    /// On a running, healthy server with another revision in place: each file written and loaded
    /// into the server, each file left emptied in it and removed. Its error, if any, goes to the
    /// component's last error (the server keeps serving with what it had).
    pub(super) async fn load_user_conf(&self, local: &mut Local) {
        let component = self.component;
        let directory = self.host.component_dirs(component).0;
        let before = record(&directory);
        let desired = &component.user_conf_revision;
        if before.revision == *desired {
            local.user_conf = UserConfLocal::default();
            return;
        }
        let state = &mut local.user_conf;
        if state.failed == *desired && state.retry_at.is_some_and(|at| Instant::now() < at) {
            local.last_error = state.error.clone();
            return;
        }
        match self.load_into_server(&directory, &before).await {
            Ok(()) => {
                tracing::info!(component = %component.name, revision = %desired, files = component.user_conf.len(), "user-config files loaded");
                *state = UserConfLocal::default();
            }
            Err(error) => {
                let short = muster_proto::services::short(desired);
                state.error = format!("user-config revision {short}: {error}");
                state.failed = desired.clone();
                state.retry_at = Some(Instant::now() + RETRY_AFTER_FAILURE);
                tracing::warn!(component = %component.name, error = %state.error, "user-config files did not load");
                local.last_error = state.error.clone();
            }
        }
    }

    async fn load_into_server(&self, directory: &Path, before: &Record) -> Result<(), StepError> {
        let component = self.component;
        let password = admin_invoke_password(component);
        let port = u16::try_from(component.port).unwrap_or_default();
        // Written first, 0600 and the server's own: Zato writes an existing file in place,
        // keeping its mode (one it creates would be 0644).
        self.write_user_conf_files(directory)?;
        let user_conf = directory.join(USER_CONF_DIR);
        for file in &component.user_conf {
            let path = user_conf.join(&file.name);
            services::load_user_conf(
                self.host.probe_address(),
                port,
                password,
                &path,
                &file.name,
                &file.content,
            )
            .await?;
        }
        for name in left(before, component) {
            let path = user_conf.join(name);
            if path.exists() {
                services::load_user_conf(
                    self.host.probe_address(),
                    port,
                    password,
                    &path,
                    name,
                    "",
                )
                .await?;
            }
            remove_file(&path)?;
        }
        self.write_record(directory)
    }

    fn write_user_conf_files(&self, directory: &Path) -> Result<(), StepError> {
        let component = self.component;
        if component.user_conf.is_empty() {
            return Ok(());
        }
        let user_conf = directory.join(USER_CONF_DIR);
        if !user_conf.is_dir() {
            std::fs::create_dir_all(&user_conf)
                .map_err(|error| format!("cannot create {}: {error}", user_conf.display()))?;
            self.host.chown(&user_conf)?;
        }
        for file in &component.user_conf {
            // Checked by the coordinator; checked again before the name becomes a path.
            if !muster_proto::user_conf::valid_name(&file.name) {
                return Err(StepError::Refused(format!(
                    "user-config file name {:?}",
                    file.name
                )));
            }
            let path = user_conf.join(&file.name);
            files::write_atomic(&path, file.content.as_bytes(), 0o600)?;
            self.host.chown(&path)?;
        }
        Ok(())
    }

    fn write_record(&self, directory: &Path) -> Result<(), StepError> {
        let component = self.component;
        let path = directory.join(RECORD);
        if component.user_conf_revision.is_empty() {
            return remove_file(&path);
        }
        let now = Record {
            revision: component.user_conf_revision.clone(),
            names: component
                .user_conf
                .iter()
                .map(|file| file.name.clone())
                .collect(),
        };
        let text =
            serde_json::to_string(&now).map_err(|error| StepError::Other(error.to_string()))?;
        files::write_atomic(&path, text.as_bytes(), 0o600).map_err(StepError::from)
    }
}

/// The files Muster wrote for the revision before that the desired one lacks (names checked
/// before they become paths: the record is a file a person could edit).
fn left<'a>(before: &'a Record, component: &Component) -> Vec<&'a str> {
    before
        .names
        .iter()
        .filter(|name| muster_proto::user_conf::valid_name(name))
        .filter(|name| !component.user_conf.iter().any(|file| &file.name == *name))
        .map(String::as_str)
        .collect()
}

fn remove_file(path: &Path) -> Result<(), StepError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(StepError::file("remove", path)(error)),
    }
}
