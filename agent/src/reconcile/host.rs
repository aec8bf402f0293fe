//! What every component of the host shares, whatever its kind: the `zato` command and the user
//! it runs as, the addresses components bind and advertise, where components live, which programs
//! and ODB files the host's own config allows, and the lock on SQLite writes. The drivers
//! ([`super::drivers`]) do their kind's steps with it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use muster_proto::v1::{self, Component, Role};

use super::error::StepError;
use super::facilities::Facilities;
use super::{Key, role_of};
use crate::zato::Zato;

/// The host's settings and shared means, as the agent's config gives them.
pub(super) struct Host {
    /// The `zato` command: its program (beside which Zato's Python is) and the user it runs as.
    pub zato: Zato,
    /// What the host's processes are run, found and asked through.
    pub facilities: Box<dyn Facilities>,
    /// The address components listen on.
    pub bind_address: IpAddr,
    /// The address other hosts reach this one at: each server's `[preferred_address] address`,
    /// where the other servers of its cluster call it. `None` leaves Zato to find one.
    pub advertise_address: Option<IpAddr>,
    pub components_dir: PathBuf,
    /// The first of Zato's IPC ports for this host's servers.
    pub ipc_port_start: u16,
    /// Each server's first IPC port, by the order of the host's servers' HTTP ports (set at the
    /// start of every pass).
    pub ipc_port_starts: BTreeMap<Key, u16>,
    /// The HAProxy binaries this host agrees to run (its own config decides).
    pub haproxy_bins: Vec<PathBuf>,
    /// Where an SQLite ODB file may be besides the components directory (its own config decides).
    pub sqlite_odb_dirs: Vec<PathBuf>,
    /// The Python that runs Zato, for `pip`; `None`: the one beside the `zato` command.
    pub python_bin: Option<PathBuf>,
    /// The other Zato installations servers may run, by name: each its `zato` command (the
    /// host's own config decides; a cluster's `zato.install` setting names one).
    pub zato_installs: BTreeMap<String, PathBuf>,
    /// `STATE_DIR/wheels`: the clusters' wheels by SHA-256, as the daemon fetched them.
    pub wheel_cache: PathBuf,
    /// Held by a `zato` command that writes an SQLite ODB: components converge side by side, but
    /// Python's SQLite waits only 5 s for a lock that another Zato command holds.
    pub sqlite_writes: tokio::sync::Mutex<()>,
}

/// The file a program path or name (looked up in `PATH`) runs, with symlinks resolved.
pub(super) fn resolve_program(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return std::fs::canonicalize(program).ok();
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|directory| Path::new(directory).join(program))
        .find(|candidate| candidate.is_file())
        .and_then(|found| std::fs::canonicalize(found).ok())
}

/// The password of a server's admin channel (`admin.invoke`), from its desired state; empty when
/// it carries none.
pub(super) fn admin_invoke_password(component: &Component) -> &str {
    component
        .secrets
        .as_ref()
        .map(|secrets| secrets.admin_invoke_password.as_str())
        .unwrap_or_default()
}

/// Makes `path` a directory of mode 0700 (creating it if needed).
pub(super) fn private_dir(path: &Path) -> Result<(), StepError> {
    use std::os::unix::fs::PermissionsExt as _;
    if !path.exists() {
        std::fs::create_dir_all(path)
            .map_err(|error| format!("cannot create {}: {error}", path.display()))?;
    }
    let metadata =
        std::fs::metadata(path).map_err(|error| format!("{}: {error}", path.display()))?;
    if metadata.permissions().mode() & 0o777 != 0o700 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .map_err(|error| format!("cannot make {} private: {error}", path.display()))?;
    }
    Ok(())
}

impl Host {
    /// The `zato` command of installation `name` (`zato.install`): `None` for the host's own
    /// (`default`, or no name); refused, naming the ones it has, when the host has no such one.
    pub(super) fn zato_install(&self, name: &str) -> Result<Option<&Path>, String> {
        if name.is_empty() || name == muster_proto::server_settings::DEFAULT_INSTALL {
            return Ok(None);
        }
        self.zato_installs
            .get(name)
            .map(|bin| Some(bin.as_path()))
            .ok_or_else(|| {
                let known: Vec<&str> =
                    std::iter::once(muster_proto::server_settings::DEFAULT_INSTALL)
                        .chain(self.zato_installs.keys().map(String::as_str))
                        .collect();
                format!(
                    "Zato installation {name:?} (the cluster's zato.install) is not one of this \
                     host's: its agent.toml names {} (zato_bin, [zato_installs])",
                    known.join(", ")
                )
            })
    }

    pub(super) fn cluster_dir(&self, cluster: &str) -> PathBuf {
        self.components_dir.join(cluster)
    }

    /// The SQLite file of a cluster whose ODB settings name none.
    pub(super) fn default_sqlite(&self, cluster: &str) -> PathBuf {
        self.cluster_dir(cluster).join("odb.db")
    }

    /// Where components answer this host's probes.
    pub(super) fn probe_address(&self) -> IpAddr {
        if self.bind_address.is_unspecified() {
            IpAddr::from([127, 0, 0, 1])
        } else {
            self.bind_address
        }
    }

    pub(super) fn chown(&self, path: &Path) -> Result<(), StepError> {
        self.zato
            .run_as
            .as_ref()
            .map_or(Ok(()), |user| user.give(path).map_err(StepError::Other))
    }

    /// The cluster's directory, mode 0700 and owned by the Zato user.
    pub(super) fn ensure_cluster_dir(&self, cluster: &str) -> Result<PathBuf, StepError> {
        let directory = self.cluster_dir(cluster);
        private_dir(&directory)?;
        self.chown(&directory)?;
        Ok(directory)
    }

    /// Refuses an SQLite ODB file outside the components directory and `sqlite_odb_dirs`: the
    /// agent creates and changes it (Zato's tables) as root or `run_as`, wherever an admin points.
    pub(super) fn sqlite_odb_allowed(
        &self,
        odb: Option<&v1::OdbSettings>,
    ) -> Result<(), StepError> {
        let Some(odb) = odb else { return Ok(()) };
        let sqlite = matches!(
            v1::OdbType::try_from(odb.odb_type),
            Ok(v1::OdbType::Sqlite | v1::OdbType::Unspecified) | Err(_)
        );
        if !sqlite || odb.db_name.is_empty() {
            return Ok(());
        }
        let file = Path::new(&odb.db_name);
        let allowed: Vec<&Path> = std::iter::once(self.components_dir.as_path())
            .chain(self.sqlite_odb_dirs.iter().map(PathBuf::as_path))
            .collect();
        // Lexically inside, and inside once the parts that exist are resolved (a symbolic link
        // in between could lead anywhere).
        let lexically = file.is_absolute()
            && !file
                .components()
                .any(|part| part == std::path::Component::ParentDir);
        let resolved = file
            .parent()
            .and_then(|parent| parent.canonicalize().ok())
            .unwrap_or_else(|| file.to_path_buf());
        let inside = |directory: &Path| {
            let canonical = directory
                .canonicalize()
                .unwrap_or_else(|_| directory.to_path_buf());
            file.starts_with(directory) && resolved.starts_with(&canonical)
        };
        if lexically && allowed.iter().any(|directory| inside(directory)) {
            return Ok(());
        }
        Err(StepError::Other(format!(
            "refused: the SQLite ODB file {:?} (--odb-db-name) is outside this host's components \
             directory and sqlite_odb_dirs ({}); the host's agent config decides where the agent \
             writes",
            odb.db_name,
            allowed
                .iter()
                .map(|directory| directory.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }

    /// Whether this host agrees to run `bin` (the same file as one of its `haproxy_bins`).
    pub(super) fn haproxy_allowed(&self, bin: &str) -> bool {
        let wanted = resolve_program(Path::new(if bin.is_empty() { "haproxy" } else { bin }));
        wanted.is_some()
            && self
                .haproxy_bins
                .iter()
                .any(|allowed| resolve_program(allowed) == wanted)
    }

    /// A component's directory, the temporary one its create runs in, and the create's pid file.
    pub(super) fn component_dirs(&self, component: &Component) -> (PathBuf, PathBuf, PathBuf) {
        let cluster_dir = self.cluster_dir(&component.cluster);
        let base = format!("{}-{}", role_of(component).cli_name(), component.name);
        (
            cluster_dir.join(&base),
            cluster_dir.join(format!(".creating-{base}")),
            cluster_dir.join(format!(".creating-{base}.pid")),
        )
    }

    /// Waits for the turn to write `component`'s ODB when it is an SQLite file; nothing to wait for
    /// with PostgreSQL and MySQL, nor for the scheduler (its create writes nothing to the ODB).
    pub(super) async fn odb_writer(
        &self,
        component: &Component,
    ) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        if role_of(component) == Role::Scheduler {
            return None;
        }
        let odb_type = component
            .odb
            .as_ref()
            .and_then(|odb| v1::OdbType::try_from(odb.odb_type).ok())
            .unwrap_or(v1::OdbType::Sqlite);
        match odb_type {
            v1::OdbType::Sqlite | v1::OdbType::Unspecified => Some(self.sqlite_writes.lock().await),
            v1::OdbType::Postgresql | v1::OdbType::Mysql => None,
        }
    }

    /// The component's ODB, as its desired state describes it.
    pub(super) fn odb_parts(&self, component: &Component) -> (v1::OdbSettings, String, PathBuf) {
        (
            component.odb.clone().unwrap_or_default(),
            component
                .secrets
                .as_ref()
                .map(|secrets| secrets.odb_password.clone())
                .unwrap_or_default(),
            self.default_sqlite(&component.cluster),
        )
    }
}
