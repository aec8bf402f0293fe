//! `AgentService`: what agents call. `Enroll` is authenticated by a join token; every other call by
//! the host's client certificate (mTLS, verified against the coordinator's CA by rustls), whose
//! subject names the host. A host reads and reports only for itself, and a host that was removed is
//! refused even while its certificate is still valid.
//!
//! Each `WatchDesiredState` stream is one task: it sends the current desired state at once, then
//! sleeps until the coordinator's [`Fanout`] says its host's generation moved (see `fanout.rs`
//! for how changes committed here and through other coordinators reach it), and sends again.
//! Unchanged heartbeats are answered from memory and their liveness written in batches (see
//! `liveness.rs`).

use std::sync::Arc;
use std::time::Duration;

use muster_proto::v1::agent_service_server::AgentService;
use muster_proto::v1::{self, BootstrapKind, Role};
use muster_proto::{ApiError, token, validate};
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::audit::{Door, Refusals};
use crate::error::api_error;
use crate::fanout::{Fanout, Known};
use crate::liveness::{self, Liveness};
use crate::pki::{self, CertifiedKey};
use crate::secrets;
use crate::store::{
    BootstrapReport, BootstrapTask, ComponentStatus, NewHost, StatusReport, Store, StoreError,
};

/// Enrollments handled at once; more are answered UNAVAILABLE so agents back off and retry.
pub const MAX_CONCURRENT_ENROLLMENTS: usize = 16;
/// Desired states rendered at once (each reads the host's assignments and clusters): after a
/// coordinator restart every agent opens its watch within seconds. The others wait their turn;
/// their number is bounded by the open streams.
pub const MAX_CONCURRENT_RENDERS: usize = 32;
/// How long a stream waits before rendering again after the database failed it.
const RENDER_RETRY: Duration = Duration::from_secs(1);

pub struct AgentApi {
    store: Arc<dyn Store>,
    ca: Arc<CertifiedKey>,
    host_certificate_ttl: Duration,
    fanout: Arc<Fanout>,
    liveness: Arc<Liveness>,
    enrollments: Arc<Semaphore>,
    renders: Arc<Semaphore>,
    shutdown: CancellationToken,
    refusals: Arc<Refusals>,
}

impl AgentApi {
    pub fn new(
        store: Arc<dyn Store>,
        ca: Arc<CertifiedKey>,
        host_certificate_ttl: Duration,
        fanout: Arc<Fanout>,
        liveness: Arc<Liveness>,
        shutdown: CancellationToken,
        refusals: Arc<Refusals>,
    ) -> Self {
        AgentApi {
            store,
            ca,
            host_certificate_ttl,
            fanout,
            liveness,
            enrollments: Arc::new(Semaphore::new(MAX_CONCURRENT_ENROLLMENTS)),
            renders: Arc::new(Semaphore::new(MAX_CONCURRENT_RENDERS)),
            shutdown,
            refusals,
        }
    }

    /// The host the client certificate names, if that host is still enrolled and `asked` (the
    /// host the request is about; empty when it names none) is that host. A refusal is logged and
    /// counted.
    async fn authenticate<T>(&self, request: &Request<T>, asked: &str) -> Result<String, ApiError> {
        let refuse = |reason: &'static str, who: &str, error: ApiError| {
            self.refusals
                .refused(Door::Agent, reason, who, request.remote_addr(), &error);
            error
        };
        let Some(host_id) = certified_host(request) else {
            return Err(refuse(
                "no-certificate",
                "nobody",
                ApiError::Unauthenticated(
                    "this call needs the host's client certificate; enroll first".to_owned(),
                ),
            ));
        };
        let host_id = host_id.map_err(|error| {
            refuse(
                "bad-certificate",
                "unknown",
                ApiError::PermissionDenied(error.to_string()),
            )
        })?;
        let who = format!("host {host_id}");
        match self.store.get_host_by_id(&host_id).await {
            Ok(_) => {}
            Err(StoreError::NotFound { .. }) => {
                return Err(refuse(
                    "host-removed",
                    &who,
                    ApiError::PermissionDenied(format!("host {host_id} is no longer enrolled")),
                ));
            }
            Err(error) => return Err(api_error(error)),
        }
        if !asked.is_empty() && asked != host_id {
            return Err(refuse(
                "other-host",
                &who,
                ApiError::PermissionDenied(format!("host {host_id} may not act for host {asked}")),
            ));
        }
        Ok(host_id)
    }

    /// The answer to a heartbeat identical to the one last recorded for its host, from memory:
    /// the certificate names the host (checked by rustls against the CA; whether the host still
    /// exists was checked when the report was recorded, and a removal ends that), the host's
    /// liveness is queued for the next batch. `None` when the report must go the whole way.
    async fn unchanged_report(
        &self,
        request: &Request<v1::ReportStatusRequest>,
        fingerprint: u64,
    ) -> Result<Option<v1::ReportStatusResponse>, ApiError> {
        let Some(Ok(host_id)) = certified_host(request) else {
            return Ok(None);
        };
        let asked = &request.get_ref().host_id;
        if (!asked.is_empty() && *asked != host_id)
            || !self.liveness.unchanged(&host_id, fingerprint)
        {
            return Ok(None);
        }
        let desired_generation = match self.fanout.known(&host_id) {
            Known::Generation(generation) => generation,
            Known::Removed => return Ok(None),
            Known::Unknown => match self.store.host_generation(&host_id).await? {
                Some(generation) => generation,
                None => return Ok(None),
            },
        };
        self.liveness.seen(&host_id, crate::store::now_ms());
        Ok(Some(v1::ReportStatusResponse { desired_generation }))
    }

    /// Enrolls the host `request` describes with join token `token_id`/`secret`.
    async fn enroll_checked(
        &self,
        token_id: &str,
        secret: &str,
        request: v1::EnrollRequest,
    ) -> Result<v1::EnrollResponse, Refused> {
        validate::name("host name", &request.host_name)?;
        validate::ip_address("advertise address", &request.advertise_address)?;
        for (key, value) in &request.labels {
            validate::name("label key", key)?;
            validate::description("label value", value)?;
        }
        // A CSR that does not parse must not use up the token.
        rcgen::CertificateSigningRequestParams::from_pem(&request.csr_pem).map_err(|_| {
            ApiError::InvalidArgument("the certificate signing request is not valid".to_owned())
        })?;
        let new = NewHost {
            id: secrets::random_hex(token::ID_LEN / 2)
                .map_err(|error| ApiError::Internal(error.to_string()))?,
            name: request.host_name,
            advertise_address: request.advertise_address,
            labels: request.labels.into_iter().collect(),
        };
        let mut requested = Vec::new();
        for value in &request.requested_roles {
            match Role::try_from(*value) {
                Ok(Role::Unspecified) | Err(_) => {
                    return Err(ApiError::InvalidArgument(format!("unknown role {value}")).into());
                }
                Ok(role) => requested.push(role),
            }
        }
        let secret_hash = secrets::sha256_hex(secret.as_bytes());
        let (host, join_token) = self
            .store
            .enroll_host(token_id, &secret_hash, new.clone(), &requested)
            .await
            .map_err(|error| {
                let reason = match &error {
                    StoreError::TokenRefused { reason, .. } => Some(reason.label()),
                    _ => None,
                };
                Refused {
                    reason,
                    error: api_error(error),
                }
            })?;
        let certificate_pem = self.sign(&request.csr_pem, &host.id)?;
        tracing::info!(host = %host.name, host_id = %host.id, token = %join_token.id, cluster = %join_token.cluster, "host enrolled");
        Ok(v1::EnrollResponse {
            host_id: host.id,
            certificate_pem,
            ca_certificate_pem: self.ca.certificate_pem.clone(),
        })
    }

    fn sign(&self, csr_pem: &str, host_id: &str) -> Result<String, ApiError> {
        pki::sign_host_csr(&self.ca, csr_pem, host_id, self.host_certificate_ttl)
            .map_err(|error| ApiError::InvalidArgument(crate::error_chain(&error)))
    }
}

/// The host the client certificate names (rustls checked it against the CA); `None` without one.
fn certified_host<T>(request: &Request<T>) -> Option<Result<String, pki::PkiError>> {
    let leaf = request.peer_certs()?.first()?.clone();
    Some(pki::host_id_from_certificate(leaf.as_ref()))
}

/// An enrollment refused: what the caller is told, and the reason it is counted under (`None`
/// when it is not the caller's doing, such as a database outage).
struct Refused {
    reason: Option<&'static str>,
    error: ApiError,
}

impl From<ApiError> for Refused {
    fn from(error: ApiError) -> Self {
        let reason = matches!(error, ApiError::InvalidArgument(_)).then_some("invalid-request");
        Refused { reason, error }
    }
}

impl From<validate::Invalid> for Refused {
    fn from(invalid: validate::Invalid) -> Self {
        Refused::from(ApiError::from(invalid))
    }
}

/// Renders the desired state at one generation: if the generation moved while rendering, again.
async fn render_consistent(store: &dyn Store, host_id: &str) -> Result<v1::DesiredState, ApiError> {
    let mut attempts = 0;
    loop {
        let inputs = store.plan_inputs(host_id).await?;
        let rendered = crate::planner::render(&inputs);
        let now = store.host_generation(host_id).await?;
        attempts += 1;
        if now == Some(rendered.generation) || attempts >= 5 {
            return Ok(rendered);
        }
    }
}

/// Error text from an agent, made safe to store and show: at most 1024 characters, no control
/// or bidirectional control characters (which make a text read otherwise than it is stored).
fn clean_text(text: &str) -> String {
    text.chars()
        .filter(|character| !character.is_control() && !validate::is_bidi_control(*character))
        .take(1024)
        .collect()
}

/// The most characters of a reported error kept (the status table's column holds 2048).
const ERROR_MAX_CHARS: usize = 2000;

/// A reported error without control characters but its line breaks (the cause of a failed
/// command is its output's last line), shortened in its middle: its start names what failed,
/// its end says why.
fn clean_error(text: &str) -> String {
    let kept: Vec<char> = text
        .chars()
        .filter(|character| {
            (*character == '\n' || !character.is_control())
                && !validate::is_bidi_control(*character)
        })
        .collect();
    if kept.len() <= ERROR_MAX_CHARS {
        return kept.into_iter().collect();
    }
    let head: String = kept[..600].iter().collect();
    let tail: String = kept[kept.len() - (ERROR_MAX_CHARS - 603)..]
        .iter()
        .collect();
    format!("{head}\n…\n{tail}")
}

/// The most components one report may hold (a host runs a handful).
const MAX_REPORTED_COMPONENTS: usize = 256;
/// The most Zato installations an agent may report.
const MAX_ZATO_INSTALLS: usize = 32;

/// The most backend servers one load balancer may report.
const MAX_BACKENDS: usize = 1000;

fn component_status(status: v1::ComponentStatus) -> Result<ComponentStatus, ApiError> {
    validate::name("cluster name", &status.cluster)?;
    validate::name("component name", &status.name)?;
    let role = match Role::try_from(status.role) {
        Ok(Role::Unspecified) | Err(_) => {
            return Err(ApiError::InvalidArgument(format!(
                "unknown role {}",
                status.role
            )));
        }
        Ok(role) => role,
    };
    if status.backends.len() > MAX_BACKENDS {
        return Err(ApiError::InvalidArgument(format!(
            "{} backend servers reported; at most {MAX_BACKENDS} are accepted",
            status.backends.len()
        )));
    }
    let state = status.state();
    let mut backends = Vec::with_capacity(status.backends.len());
    for backend in status.backends {
        validate::name("backend server name", &backend.name)?;
        let state: String = clean_text(&backend.state).chars().take(64).collect();
        backends.push(v1::BackendServerState {
            name: backend.name,
            address: clean_text(&backend.address).chars().take(300).collect(),
            // Read from HAProxy's words here too: the coordinator does not take an agent's word
            // for what they mean.
            status: v1::BackendStatus::from_haproxy(&state) as i32,
            state,
            check: clean_text(&backend.check),
            sessions: backend.sessions,
        });
    }
    backends.sort_by(|left, right| left.name.cmp(&right.name));
    Ok(ComponentStatus {
        cluster: status.cluster,
        role,
        name: status.name,
        state,
        healthy: status.healthy,
        last_error: clean_error(&status.last_error),
        restarts: status.restarts,
        backends,
        services_revision: clean_text(&status.services_revision)
            .chars()
            .take(64)
            .collect(),
        config_revision: clean_text(&status.config_revision)
            .chars()
            .take(64)
            .collect(),
        python_revision: clean_text(&status.python_revision)
            .chars()
            .take(64)
            .collect(),
        python_installed: clean_text(&status.python_installed)
            .chars()
            .take(64)
            .collect(),
        user_conf_revision: clean_text(&status.user_conf_revision)
            .chars()
            .take(64)
            .collect(),
        odb_epoch: status.odb_epoch.min(i64::MAX as u64),
        // Only a server's agent looks for the cluster's row.
        odb_empty: status.odb_empty && role == Role::Server,
        // A dashboard's, scheduler's or load balancer's only from an agent that rolls it.
        restart_epoch: if role == Role::Server || status.rolls {
            status.restart_epoch.min(i64::MAX as u64)
        } else {
            0
        },
        rolls: role == Role::Server || status.rolls,
        // The coordinator's own (`record_status`), never an agent's word.
        rollout_held_since: None,
    })
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    type WatchDesiredStateStream = ReceiverStream<Result<v1::DesiredState, Status>>;
    type FetchWheelStream =
        tokio_stream::Iter<std::vec::IntoIter<Result<v1::FetchWheelPiece, Status>>>;

    async fn enroll(
        &self,
        request: Request<v1::EnrollRequest>,
    ) -> Result<Response<v1::EnrollResponse>, Status> {
        let _permit = self.enrollments.clone().try_acquire_owned().map_err(|_| {
            ApiError::Unavailable("too many enrollments at once; retry with backoff".to_owned())
        })?;
        let from = request.remote_addr();
        let request = request.into_inner();
        let shown_name: String = request.host_name.chars().take(64).collect();
        let credential = token::parse_join_credential(&request.token);
        let who = match &credential {
            Ok((token_id, _)) => format!("host name {shown_name:?}, join token {token_id}"),
            Err(_) => format!("host name {shown_name:?}"),
        };
        let enrolled = match credential {
            Ok((token_id, secret)) => self.enroll_checked(&token_id, &secret, request).await,
            Err(error) => Err(Refused {
                reason: Some("malformed-token"),
                error: error.into(),
            }),
        };
        match enrolled {
            Ok(response) => Ok(Response::new(response)),
            Err(Refused { reason, error }) => {
                if let Some(reason) = reason {
                    self.refusals
                        .refused(Door::Enrollment, reason, &who, from, &error);
                }
                Err(error.into())
            }
        }
    }

    async fn watch_desired_state(
        &self,
        request: Request<v1::WatchDesiredStateRequest>,
    ) -> Result<Response<Self::WatchDesiredStateStream>, Status> {
        let host_id = self
            .authenticate(&request, &request.get_ref().host_id)
            .await?;
        // It may have reported through another coordinator since it last reported here.
        self.liveness.forget(&host_id);
        let (sender, receiver) = mpsc::channel(4);
        let store = self.store.clone();
        let mut subscription = self.fanout.subscribe(&host_id);
        let fanout = self.fanout.clone();
        let renders = self.renders.clone();
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut sent: Option<u64> = None;
            let mut failing = false;
            loop {
                let known = *subscription.receiver.borrow_and_update();
                let outcome = match known {
                    // Read once when the stream opens; the fan-out keeps it current after.
                    Known::Unknown => match store.host_generation(&host_id).await {
                        Ok(Some(generation)) => {
                            fanout.observe(&host_id, Known::Generation(generation));
                            continue;
                        }
                        Ok(None) => {
                            fanout.observe(&host_id, Known::Removed);
                            continue;
                        }
                        Err(error) => Err(ApiError::from(error)),
                    },
                    Known::Removed => {
                        let status = Status::permission_denied(format!(
                            "host {host_id} is no longer enrolled"
                        ));
                        let _ = sender.send(Err(status)).await;
                        return;
                    }
                    Known::Generation(generation) if sent != Some(generation) => {
                        let rendered = {
                            let Ok(_permit) = renders.acquire().await else {
                                return;
                            };
                            render_consistent(store.as_ref(), &host_id).await
                        };
                        match rendered {
                            Ok(state) => {
                                let generation = state.generation;
                                if sender.send(Ok(state)).await.is_err() {
                                    return;
                                }
                                sent = Some(generation);
                                Ok(())
                            }
                            Err(error) => Err(error),
                        }
                    }
                    Known::Generation(_) => Ok(()),
                };
                match outcome {
                    Ok(()) => failing = false,
                    Err(error) => {
                        if !failing {
                            tracing::warn!(host_id = %host_id, error = %error, "cannot render a desired state; will retry");
                        }
                        failing = true;
                    }
                }
                // Every arm is cancel-safe: each only waits, and the loop reads what is known
                // again. After a failure the stream tries again in a while, woken or not.
                let retry = async {
                    if failing {
                        tokio::time::sleep(RENDER_RETRY).await;
                    } else {
                        std::future::pending::<()>().await;
                    }
                };
                tokio::select! {
                    changed = subscription.receiver.changed() => {
                        if changed.is_err() {
                            return;
                        }
                    }
                    () = retry => {}
                    () = sender.closed() => return,
                    () = shutdown.cancelled() => return,
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn report_status(
        &self,
        request: Request<v1::ReportStatusRequest>,
    ) -> Result<Response<v1::ReportStatusResponse>, Status> {
        let fingerprint = liveness::fingerprint(request.get_ref());
        if let Some(response) = self.unchanged_report(&request, fingerprint).await? {
            return Ok(Response::new(response));
        }
        let host_id = self
            .authenticate(&request, &request.get_ref().host_id)
            .await?;
        let from = request.remote_addr();
        let request = request.into_inner();
        validate::ip_address("advertise address", &request.advertise_address)
            .map_err(ApiError::from)?;
        if request.components.len() > MAX_REPORTED_COMPONENTS {
            return Err(ApiError::InvalidArgument(format!(
                "{} components reported; at most {MAX_REPORTED_COMPONENTS} are accepted",
                request.components.len()
            ))
            .into());
        }
        let components = request
            .components
            .into_iter()
            .map(component_status)
            .collect::<Result<Vec<_>, _>>()?;
        // Names the coordinator stores and shows, and checks a cluster's setting against.
        if request.zato_installs.len() > MAX_ZATO_INSTALLS {
            return Err(ApiError::InvalidArgument(format!(
                "{} Zato installations reported; at most {MAX_ZATO_INSTALLS} are accepted",
                request.zato_installs.len()
            ))
            .into());
        }
        for install in &request.zato_installs {
            muster_proto::server_settings::check_install_name(install).map_err(ApiError::from)?;
        }
        let mut bootstrap = Vec::new();
        for task in request.bootstrap {
            validate::name("cluster name", &task.cluster).map_err(ApiError::from)?;
            let kind = match BootstrapKind::try_from(task.kind) {
                Ok(BootstrapKind::Odb) => BootstrapTask::Odb,
                Ok(BootstrapKind::Cluster) => BootstrapTask::Cluster,
                _ => {
                    return Err(ApiError::InvalidArgument(format!(
                        "unknown bootstrap task {}",
                        task.kind
                    ))
                    .into());
                }
            };
            bootstrap.push(BootstrapReport {
                cluster: task.cluster,
                task: kind,
                done: task.done,
                last_error: clean_error(&task.last_error),
            });
        }
        let report = StatusReport {
            applied_generation: request.applied_generation,
            advertise_address: request.advertise_address,
            heartbeat_interval_ms: request.heartbeat_interval_ms,
            zato_installs: request.zato_installs,
            components,
            bootstrap,
        };
        let recorded = self.store.record_status(&host_id, report.clone()).await?;
        if !recorded.ignored.is_empty() {
            // Recorded without them: the heartbeat itself is good.
            let error = ApiError::PermissionDenied(format!(
                "reported components not assigned to it, ignored: {}",
                recorded.ignored.join(", ")
            ));
            self.refusals.refused(
                Door::Agent,
                "unassigned-component",
                &format!("host {host_id}"),
                from,
                &error,
            );
        }
        // A written report woke the watches (it can move generations: a finished bootstrap, a
        // re-planned scheduler, a load balancer's backends that let a drained server stop); a
        // heartbeat that changed nothing is only seen.
        if !recorded.written {
            self.liveness.seen(&host_id, crate::store::now_ms());
        }
        self.liveness.recorded(&host_id, fingerprint);
        Ok(Response::new(v1::ReportStatusResponse {
            desired_generation: recorded.desired_generation,
        }))
    }

    async fn renew_certificate(
        &self,
        request: Request<v1::RenewCertificateRequest>,
    ) -> Result<Response<v1::RenewCertificateResponse>, Status> {
        let host_id = self.authenticate(&request, "").await?;
        let certificate_pem = self.sign(&request.get_ref().csr_pem, &host_id)?;
        tracing::info!(host_id = %host_id, "host certificate renewed");
        Ok(Response::new(v1::RenewCertificateResponse {
            certificate_pem,
        }))
    }

    async fn fetch_wheel(
        &self,
        request: Request<v1::FetchWheelRequest>,
    ) -> Result<Response<Self::FetchWheelStream>, Status> {
        let host_id = self.authenticate(&request, "").await?;
        let request = request.into_inner();
        validate::name("cluster name", &request.cluster).map_err(ApiError::from)?;
        // A cluster's wheels go where its servers run, and nowhere else.
        let host = self.store.get_host_by_id(&host_id).await?;
        let runs_a_server = self
            .store
            .list_assignments(Some(&request.cluster))
            .await?
            .iter()
            .any(|assignment| assignment.role == Role::Server && assignment.host == host.name);
        if !runs_a_server {
            return Err(ApiError::PermissionDenied(format!(
                "host {} runs no server of cluster {}",
                host.name, request.cluster
            ))
            .into());
        }
        let pieces: Vec<Result<v1::FetchWheelPiece, Status>> =
            crate::admin::wheel_pieces(self.store.as_ref(), &request.cluster, &request.sha256)
                .await?
                .into_iter()
                .map(|piece| Ok(v1::FetchWheelPiece { piece }))
                .collect();
        Ok(Response::new(tokio_stream::iter(pieces)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reported_error_keeps_its_lines_and_its_end() {
        let error = "`zato enmasse` failed (exit status: 16): Importing\n\u{1b}[31mred\u{1b}[0m \u{202e}x\nAttributeError: no id";
        assert_eq!(
            clean_error(error),
            "`zato enmasse` failed (exit status: 16): Importing\n[31mred[0m x\nAttributeError: no id"
        );
        let long = format!("start\n{}\nTheCause: at the end", "x".repeat(5000));
        let kept = clean_error(&long);
        assert!(kept.chars().count() <= ERROR_MAX_CHARS, "{}", kept.len());
        assert!(kept.starts_with("start\n") && kept.ends_with("TheCause: at the end"));
        assert!(kept.contains("\n…\n"));
    }
}
