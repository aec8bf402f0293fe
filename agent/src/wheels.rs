//! The wheels this host's servers install their clusters' Python dependencies from: fetched from
//! the coordinator by SHA-256 (`FetchWheel`, in pieces), checked against that hash, and kept in
//! `STATE_DIR/wheels/SHA256.whl` (mode 0600) for the reconciler, which copies them beside the
//! server that installs them. A wheel no server of the desired state names any more is removed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use muster_proto::v1::agent_service_client::AgentServiceClient;
use muster_proto::v1::{DesiredState, FetchWheelRequest, PythonWheel, Role};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::files;

/// When a wheel that could not be fetched is tried again.
const RETRY: Duration = Duration::from_secs(10);

/// The wheels the desired state's servers name, by SHA-256, with the cluster that has each.
fn wanted(desired: &DesiredState) -> BTreeMap<String, (String, PythonWheel)> {
    desired
        .components
        .iter()
        .filter(|component| component.role == Role::Server as i32)
        .flat_map(|component| {
            component.python_wheels.iter().map(|wheel| {
                (
                    wheel.sha256.clone(),
                    (component.cluster.clone(), wheel.clone()),
                )
            })
        })
        .filter(|(sha256, _)| muster_proto::python::valid_sha256(sha256))
        .collect()
}

/// Keeps `cache` holding the wheels of the desired state, until shutdown.
pub async fn keep_fetched(
    channel: watch::Receiver<Channel>,
    mut desired: watch::Receiver<Option<DesiredState>>,
    cache: PathBuf,
    shutdown: CancellationToken,
) {
    loop {
        let state = desired.borrow_and_update().clone();
        let mut failed = false;
        if let Some(state) = state {
            let wanted = wanted(&state);
            if !wanted.is_empty()
                && let Err(error) = files::create_private_dir(&cache)
            {
                tracing::error!(error = %error, "cannot create the wheel cache");
                failed = true;
            }
            for (sha256, (cluster, wheel)) in &wanted {
                let path = cache.join(format!("{sha256}.whl"));
                if path.exists() || failed {
                    continue;
                }
                let client = AgentServiceClient::new(channel.borrow().clone());
                match fetch(client, cluster, wheel, &path).await {
                    Ok(()) => {
                        tracing::info!(cluster = %cluster, wheel = %wheel.name, "wheel fetched");
                    }
                    Err(error) => {
                        tracing::warn!(cluster = %cluster, wheel = %wheel.name, error = %error, "cannot fetch a wheel; retrying");
                        failed = true;
                    }
                }
            }
            prune(&cache, &wanted);
        }
        let wait = if failed {
            RETRY
        } else {
            Duration::from_secs(86_400)
        };
        tokio::select! {
            // Cancel-safe: `changed` only waits.
            changed = desired.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

async fn fetch(
    mut client: AgentServiceClient<Channel>,
    cluster: &str,
    wheel: &PythonWheel,
    path: &Path,
) -> Result<(), String> {
    let mut pieces = client
        .fetch_wheel(FetchWheelRequest {
            cluster: cluster.to_owned(),
            sha256: wheel.sha256.clone(),
        })
        .await
        .map_err(|status| status.message().to_owned())?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(piece) = pieces
        .message()
        .await
        .map_err(|status| status.message().to_owned())?
    {
        bytes.extend_from_slice(&piece.piece);
        if bytes.len() > muster_proto::python::MAX_WHEEL_BYTES {
            return Err(format!(
                "more than {} bytes",
                muster_proto::python::MAX_WHEEL_BYTES
            ));
        }
    }
    let got = muster_proto::python::sha256_bytes(&bytes);
    if got != wheel.sha256 {
        return Err(format!("its SHA-256 is {got}, not {}", wheel.sha256));
    }
    files::write_atomic(path, &bytes, 0o600).map_err(|error| error.to_string())
}

/// Removes the cached wheels no server wants any more.
fn prune(cache: &Path, wanted: &BTreeMap<String, (String, PythonWheel)>) {
    let Ok(entries) = std::fs::read_dir(cache) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let kept = name
            .strip_suffix(".whl")
            .is_some_and(|sha256| wanted.contains_key(sha256));
        if !kept {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
