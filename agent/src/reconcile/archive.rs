//! Archiving: a component no longer desired (or created on an ODB since rebuilt) is stopped as
//! its kind stops and moved to `COMPONENTS_DIR/.archive`, where an operator can still read it.

use std::path::Path;

use muster_proto::v1::Role;

use super::error::StepError;
use super::host::{Host, private_dir};
use super::zato_steps::stop_zato_component;
use crate::haproxy::{self, HaProxy};

/// A component in the components directory, known by its directory's name (`ROLE-NAME`), as
/// archiving finds it: without its desired state, its kind still says whether it is a finished
/// one (only those are archived: a `.creating-` one is the create's) and how it stops.
pub(super) struct Found {
    pub role: Role,
    pub name: String,
}

impl Found {
    pub fn parse(base: &str) -> Option<Found> {
        [
            Role::WebAdmin,
            Role::Scheduler,
            Role::Server,
            Role::LoadBalancer,
        ]
        .into_iter()
        .find_map(|role| {
            let name = base.strip_prefix(role.cli_name())?.strip_prefix('-')?;
            Some(Found {
                role,
                name: name.to_owned(),
            })
        })
    }

    /// Whether its kind's last file of a finished component is there: Zato's `.zato-info`, or the
    /// HAProxy config the agent writes.
    pub fn finished(&self, directory: &Path) -> bool {
        let marker = if self.role == Role::LoadBalancer {
            "zato.config"
        } else {
            ".zato-info"
        };
        directory.join(marker).exists()
    }

    async fn stop(&self, host: &Host, directory: &Path) -> Result<(), StepError> {
        if self.role == Role::LoadBalancer {
            let paths = haproxy::Paths::new(directory);
            let balancer = HaProxy {
                paths: &paths,
                run_as: host.zato.run_as.as_ref(),
            };
            return Ok(balancer.stop().await?);
        }
        if host.facilities.component_process(directory).is_none() {
            return Ok(());
        }
        stop_zato_component(host, directory).await
    }
}

/// Stops a component and moves it into `COMPONENTS_DIR/.archive`; says whether it did. `why` is
/// for the log.
pub(super) async fn archive(host: &Host, cluster: &str, directory: &Path, why: &str) -> bool {
    let base = directory
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(found) = Found::parse(&base)
        && let Err(error) = found.stop(host, directory).await
    {
        tracing::warn!(component = %directory.display(), why, error = %error, "cannot stop a component to archive it; will retry");
        return false;
    }
    let archive_dir = host.components_dir.join(".archive");
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default();
    let target = archive_dir.join(format!("{cluster}.{base}.{stamp}"));
    let moved = private_dir(&archive_dir).and_then(|()| {
        std::fs::rename(directory, &target).map_err(StepError::file("move", directory))
    });
    match moved {
        Ok(()) => {
            tracing::info!(component = %directory.display(), archive = %target.display(), why, "component stopped and archived");
            true
        }
        Err(error) => {
            tracing::warn!(component = %directory.display(), why, error = %error, "cannot archive a component; will retry");
            false
        }
    }
}
