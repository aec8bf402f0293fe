//! A cluster rebuilt on an empty ODB. Zato keeps nothing of a cluster outside its ODB that a
//! component could bring back: once the ODB is replaced by an empty one (a lost database server
//! restored empty, its tables dropped), every server, the scheduler and the dashboard must be
//! created again on it, after `zato create odb` and `create cluster`. A running server goes on
//! serving what it loaded meanwhile, so nothing is stopped before an operator asks:
//! - a healthy server's agent looks for the cluster's row every [`ODB_CHECK`] and reports the ODB
//!   empty when the ODB answers without it (an ODB it cannot reach is not empty);
//! - the coordinator rebuilds only on an operator's word (`muster apply`), with the next ODB
//!   generation (`odb_epoch`); each component records the generation it was created under
//!   ([`EPOCH_RECORD`]);
//! - a component of an older generation runs on as it is while the coordinator holds it (the
//!   bootstrap first, then the first server alone), then is stopped, archived and created again;
//!   its services, configuration, user config and Python dependencies follow, as for a new one.

use std::path::Path;
use std::time::{Duration, Instant};

use muster_proto::v1::{Component, Role};

use super::error::StepError;
use super::lifecycle::Local;
use super::role_of;
use super::zato_steps::ZatoComponent;
use crate::files;
use crate::zato;

/// The record, in a component's directory, of the ODB generation it was created under; a
/// directory without one dates from generation 0.
const EPOCH_RECORD: &str = ".muster-odb-epoch";
/// How often a healthy server's agent looks for the cluster's row.
const ODB_CHECK: Duration = Duration::from_secs(15);

/// The ODB generation the finished component in `directory` was created under; `None` while it
/// is not created.
pub(super) fn created_epoch(directory: &Path) -> Option<u64> {
    if !directory.join(".zato-info").exists() {
        return None;
    }
    Some(
        std::fs::read_to_string(directory.join(EPOCH_RECORD))
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0),
    )
}

/// Records in a finished create's directory the generation it was created under.
pub(super) fn record_epoch(directory: &Path, epoch: u64) -> Result<(), StepError> {
    files::write_atomic(
        &directory.join(EPOCH_RECORD),
        format!("{epoch}\n").as_bytes(),
        0o600,
    )
    .map_err(StepError::from)
}

/// Whether the component in `directory` was created under an older ODB generation than the
/// desired one (a newer one, from a coordinator restored from an older backup, is left alone).
pub(super) fn older(component: &Component, directory: &Path) -> bool {
    created_epoch(directory).is_some_and(|epoch| epoch < component.odb_epoch)
}

impl ZatoComponent<'_> {
    /// Stops and archives a component created under an older ODB generation once the coordinator
    /// no longer holds it, so that it is created again; says whether it did. Held, it runs on.
    pub(super) async fn retire_older(
        &self,
        directory: &Path,
        local: &mut Local,
    ) -> Result<bool, StepError> {
        let component = self.component;
        if !older(component, directory) || !component.hold.is_empty() {
            return Ok(false);
        }
        if !super::archive::archive(
            self.host,
            &component.cluster,
            directory,
            "created under an older ODB generation",
        )
        .await
        {
            return Err(StepError::Other(format!(
                "cannot stop and archive {} to create it again on the rebuilt ODB (see the \
                 agent's log)",
                directory.display()
            )));
        }
        tracing::info!(component = %directory.display(), odb_epoch = component.odb_epoch, "creating the component again on the rebuilt ODB");
        *local = Local {
            restarts: local.restarts,
            spec: local.spec.take(),
            ..Local::default()
        };
        Ok(true)
    }

    /// On a healthy server of the current generation, every [`ODB_CHECK`]: whether the ODB
    /// answers and holds no row of the cluster (`local.odb_empty`, and why, as its error).
    pub(super) async fn check_odb(&self, local: &mut Local) {
        let component = self.component;
        if role_of(component) != Role::Server {
            return;
        }
        let (settings, password, default_sqlite) = self.host.odb_parts(component);
        let odb = zato::odb::Odb {
            settings: &settings,
            password: &password,
            default_sqlite: &default_sqlite,
        };
        if local
            .odb_checked_at
            .is_none_or(|at| at.elapsed() >= ODB_CHECK)
        {
            match odb.cluster_exists(&component.cluster).await {
                Ok(exists) => {
                    if !exists && !local.odb_empty {
                        tracing::error!(cluster = %component.cluster, odb = %odb.describe(), "the ODB answers and holds no row of the cluster: replaced by an empty one?");
                    }
                    local.odb_empty = !exists;
                }
                // Unreachable is not empty: nothing is concluded.
                Err(error) => {
                    tracing::debug!(error = %error, "cannot look for the cluster's row");
                }
            }
            local.odb_checked_at = Some(Instant::now());
        }
        if local.odb_empty {
            local.last_error = format!(
                "Zato's ODB ({}) answers but holds no cluster {}: it was replaced by an empty one \
                 or its tables were dropped. This server runs on with what it loaded; `muster \
                 apply` the cluster's file to rebuild the cluster on it (every server, the \
                 scheduler and the dashboard are created again)",
                odb.describe(),
                component.cluster
            );
        }
    }
}
