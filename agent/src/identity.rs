//! The host's identity: its key, its certificate from the coordinator's CA, and that CA.
//!
//! Enrollment pins the coordinator's CA before any secret is sent: the coordinator presents its
//! certificate chain with the CA in it, and [`PinnedCa`] accepts the connection only if a certificate
//! in that chain has the SHA-256 the join token carries and the server's certificate verifies
//! against it. Only then does the token's secret go out, with a CSR for a key made on this host.
//! After that every call is mTLS with the stored certificate.
//!
//! Files in the state directory, each replaced atomically: `host.key` (0600), `host.pem`, `ca.pem`,
//! `host.id`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use muster_proto::token::JoinToken;
use muster_proto::v1::agent_service_client::AgentServiceClient;
use muster_proto::v1::{EnrollRequest, RenewCertificateRequest};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject as _;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity as TlsIdentity};

use crate::files::{self, FileError};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Token(#[from] muster_proto::token::Malformed),
    #[error(
        "this host is not enrolled: {0} holds no identity; enroll with `muster-agent enroll --coordinator URL --token TOKEN` or put a join token in the config"
    )]
    NotEnrolled(String),
    #[error("invalid coordinator URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    #[error("cannot reach the coordinator at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("the coordinator refused the enrollment: {0}")]
    Refused(String),
    /// The coordinator is overloaded or its database unavailable: retry after `retry_after`.
    #[error(
        "the coordinator at {url} cannot enroll now: {message}; retry after {}",
        humantime::format_duration(*retry_after)
    )]
    Busy {
        url: String,
        message: String,
        retry_after: Duration,
    },
    #[error(
        "the coordinator's CA does not match the join token's CA hash {expected}: the token is for another coordinator"
    )]
    CaMismatch { expected: String },
    #[error("cannot make a key or a certificate request")]
    Key(#[from] rcgen::Error),
    #[error("the stored certificate {0} cannot be read")]
    BadCertificate(PathBuf),
    #[error(transparent)]
    File(#[from] FileError),
}

/// The files of an enrolled host.
#[derive(Debug, Clone)]
pub struct Identity {
    pub host_id: String,
    pub certificate_pem: String,
    pub key_pem: String,
    pub ca_pem: String,
}

impl std::fmt::Display for Identity {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "host {}", self.host_id)
    }
}

struct Paths {
    key: PathBuf,
    certificate: PathBuf,
    ca: PathBuf,
    host_id: PathBuf,
}

fn paths(state_dir: &Path) -> Paths {
    Paths {
        key: state_dir.join("host.key"),
        certificate: state_dir.join("host.pem"),
        ca: state_dir.join("ca.pem"),
        host_id: state_dir.join("host.id"),
    }
}

impl Identity {
    /// The stored identity, or `None` when this host never enrolled.
    pub fn load(state_dir: &Path) -> Result<Option<Identity>, IdentityError> {
        let paths = paths(state_dir);
        if !paths.host_id.exists() {
            return Ok(None);
        }
        Ok(Some(Identity {
            host_id: files::read_to_string(&paths.host_id)?.trim().to_owned(),
            certificate_pem: files::read_to_string(&paths.certificate)?,
            key_pem: files::read_to_string(&paths.key)?,
            ca_pem: files::read_to_string(&paths.ca)?,
        }))
    }

    /// Writes the identity; the host id last, since its presence marks a finished enrollment.
    pub fn store(&self, state_dir: &Path) -> Result<(), IdentityError> {
        files::create_private_dir(state_dir)?;
        let paths = paths(state_dir);
        files::write_atomic(&paths.key, self.key_pem.as_bytes(), 0o600)?;
        files::write_atomic(&paths.certificate, self.certificate_pem.as_bytes(), 0o600)?;
        files::write_atomic(&paths.ca, self.ca_pem.as_bytes(), 0o644)?;
        files::write_atomic(
            &paths.host_id,
            format!("{}\n", self.host_id).as_bytes(),
            0o644,
        )?;
        Ok(())
    }

    /// The certificate's validity, `not_before` and `not_after`, by the coordinator's clock.
    pub fn validity(&self) -> Result<(SystemTime, SystemTime), IdentityError> {
        let bad = || IdentityError::BadCertificate(PathBuf::from("host.pem"));
        let der =
            CertificateDer::from_pem_slice(self.certificate_pem.as_bytes()).map_err(|_| bad())?;
        let (_, certificate) = x509_parser::parse_x509_certificate(&der).map_err(|_| bad())?;
        let validity = certificate.validity();
        let to_time = |seconds: i64| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
        };
        Ok((
            to_time(validity.not_before.timestamp()),
            to_time(validity.not_after.timestamp()),
        ))
    }

    /// An mTLS channel to the coordinator. It connects lazily, so it can be made while the
    /// coordinator is down.
    pub fn channel(&self, coordinator: &str) -> Result<Channel, IdentityError> {
        let (endpoint, host) = endpoint(coordinator)?;
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .identity(TlsIdentity::from_pem(&self.certificate_pem, &self.key_pem))
            .domain_name(host);
        let endpoint = endpoint
            .tls_config(tls)
            .map_err(|error| IdentityError::Url {
                url: coordinator.to_owned(),
                reason: error.to_string(),
            })?;
        Ok(endpoint.connect_lazy())
    }

    /// Trades a new key's CSR for a new certificate.
    pub async fn renew(&self, channel: Channel) -> Result<Identity, tonic::Status> {
        let (key_pem, csr_pem) = key_and_csr(&self.host_id)
            .map_err(|error| tonic::Status::internal(error.to_string()))?;
        let mut client = AgentServiceClient::new(channel);
        let response = client
            .renew_certificate(RenewCertificateRequest { csr_pem })
            .await?;
        Ok(Identity {
            host_id: self.host_id.clone(),
            certificate_pem: response.into_inner().certificate_pem,
            key_pem,
            ca_pem: self.ca_pem.clone(),
        })
    }
}

fn endpoint(coordinator: &str) -> Result<(Endpoint, String), IdentityError> {
    let url_error = |reason: String| IdentityError::Url {
        url: coordinator.to_owned(),
        reason,
    };
    let parsed = url::Url::parse(coordinator).map_err(|error| url_error(error.to_string()))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| url_error("no host".to_owned()))?;
    let host = host.trim_matches(['[', ']']).to_owned();
    let endpoint = Endpoint::from_shared(coordinator.to_owned())
        .map_err(|error| url_error(error.to_string()))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10));
    Ok((endpoint, host))
}

/// A new key, made on this host, and a CSR for it.
fn key_and_csr(host_name: &str) -> Result<(String, String), rcgen::Error> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, host_name);
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

/// Accepts the coordinator only if its chain holds the CA whose SHA-256 the join token carries and
/// its certificate verifies against that CA.
#[derive(Debug)]
struct PinnedCa {
    ca_sha256: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let pinned = intermediates
            .iter()
            .find(|certificate| sha256_hex(certificate) == self.ca_sha256)
            .ok_or_else(|| {
                rustls::Error::General(format!(
                    "CA hash mismatch: no certificate in the coordinator's chain has SHA-256 {}",
                    self.ca_sha256
                ))
            })?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pinned.clone().into_owned())?;
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|error| rustls::Error::General(error.to_string()))?;
        verifier.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// What enrollment needs to know about this host.
#[derive(Debug, Clone)]
pub struct Enrollment {
    pub coordinator: String,
    pub host_name: String,
    pub advertise_address: String,
    pub labels: std::collections::BTreeMap<String, String>,
    pub requested_roles: Vec<muster_proto::v1::Role>,
}

/// Enrolls this host with a join token and stores the identity it gets.
pub async fn enroll(
    state_dir: &Path,
    enrollment: &Enrollment,
    token_text: &str,
) -> Result<Identity, IdentityError> {
    let token = JoinToken::parse(token_text)?;
    let (_, host) = endpoint(&enrollment.coordinator)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|error| IdentityError::Url {
            url: enrollment.coordinator.clone(),
            reason: error.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCa {
            ca_sha256: token.ca_sha256.clone(),
            provider,
        }))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let server_name = ServerName::try_from(host.clone()).map_err(|error| IdentityError::Url {
        url: enrollment.coordinator.clone(),
        reason: error.to_string(),
    })?;
    let port = url::Url::parse(&enrollment.coordinator)
        .ok()
        .and_then(|url| url.port())
        .unwrap_or(muster_proto::DEFAULT_GRPC_PORT);
    // TLS is done here, with the pinning verifier; tonic sees a plain stream.
    let plain_endpoint = Endpoint::from_shared(format!("http://{}:{port}", url_host(&host)))
        .map_err(|error| IdentityError::Url {
            url: enrollment.coordinator.clone(),
            reason: error.to_string(),
        })?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30));
    let dial_host = host.clone();
    let channel = plain_endpoint
        .connect_with_connector(tower::service_fn(move |_uri| {
            let connector = connector.clone();
            let server_name = server_name.clone();
            let dial_host = dial_host.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect((dial_host.as_str(), port)).await?;
                let tls = connector.connect(server_name, tcp).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        }))
        .await
        .map_err(|error| {
            let detail = muster_proto::daemon::error_chain(&error);
            if detail.contains("CA hash mismatch") {
                IdentityError::CaMismatch {
                    expected: token.ca_sha256.clone(),
                }
            } else {
                IdentityError::Unreachable {
                    url: enrollment.coordinator.clone(),
                    detail: with_clock_hint(detail),
                }
            }
        })?;

    let (key_pem, csr_pem) = key_and_csr(&enrollment.host_name)?;
    let mut client = AgentServiceClient::new(channel);
    let request = EnrollRequest {
        token: token.credential(),
        csr_pem,
        host_name: enrollment.host_name.clone(),
        advertise_address: enrollment.advertise_address.clone(),
        labels: enrollment.labels.clone().into_iter().collect(),
        requested_roles: enrollment
            .requested_roles
            .iter()
            .map(|role| *role as i32)
            .collect(),
    };
    let response = client
        .enroll(request)
        .await
        .map_err(|status| match muster_proto::daemon::retry_hint(&status) {
            Some(retry_after) => IdentityError::Busy {
                url: enrollment.coordinator.clone(),
                message: status.message().to_owned(),
                retry_after,
            },
            None => IdentityError::Refused(status.message().to_owned()),
        })?
        .into_inner();
    let returned_ca = CertificateDer::from_pem_slice(response.ca_certificate_pem.as_bytes())
        .map_err(|_| IdentityError::CaMismatch {
            expected: token.ca_sha256.clone(),
        })?;
    if sha256_hex(&returned_ca) != token.ca_sha256 {
        return Err(IdentityError::CaMismatch {
            expected: token.ca_sha256,
        });
    }
    let identity = Identity {
        host_id: response.host_id,
        certificate_pem: response.certificate_pem,
        key_pem,
        ca_pem: response.ca_certificate_pem,
    };
    identity.store(state_dir)?;
    Ok(identity)
}

fn url_host(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// The coordinator dates a host certificate's `not_before` this long before it issues it.
const CERTIFICATE_BACKDATE: Duration =
    Duration::from_secs(muster_proto::HOST_CERTIFICATE_BACKDATE_SECONDS);
/// A failed call to the coordinator in words: its message and every cause under it (tonic's own
/// message is often only "transport error"), with [`with_clock_hint`].
pub fn describe_failure(status: &tonic::Status) -> String {
    let mut text = status.message().to_owned();
    if let Some(source) = std::error::Error::source(status) {
        text.push_str(": ");
        text.push_str(&muster_proto::daemon::error_chain(source));
    }
    with_clock_hint(text)
}

/// `detail`, with what it means added when TLS refused the coordinator's certificate for its
/// dates: the certificate is checked against this host's clock, so a coordinator certificate that
/// looks expired or not yet valid usually means this host's clock is wrong.
pub fn with_clock_hint(detail: String) -> String {
    let dated = ["expired", "not valid yet", "NotValidYet"]
        .iter()
        .any(|words| detail.contains(words));
    if !dated || !detail.contains("certificate") {
        return detail;
    }
    format!(
        "{detail} — the coordinator's certificate is outside its validity by this host's clock \
         ({}); if the certificate is current, this host's clock is wrong: set it right (NTP)",
        humantime::format_rfc3339_seconds(SystemTime::now())
    )
}

/// How far this host's clock may be off the coordinator's before the agent says so.
const SKEW_TOLERANCE: Duration = Duration::from_secs(120);

/// How long to wait before renewing a certificate valid `not_before..not_after`: until two thirds
/// of its lifetime (counted from its issue, `not_before` plus the backdating). For a certificate this host received `received_ago` (its monotonic clock), that
/// is counted from then, so a host whose clock is off neither renews at once, again and again, nor
/// too late; a certificate found on disk at start is judged by the wall clock `now`.
pub fn renewal_delay(
    now: SystemTime,
    not_before: SystemTime,
    not_after: SystemTime,
    received_ago: Option<Duration>,
) -> Duration {
    let issued = not_before + CERTIFICATE_BACKDATE;
    let renew_after = not_after.duration_since(issued).unwrap_or_default() * 2 / 3;
    match received_ago {
        Some(age) => renew_after.saturating_sub(age),
        None => (issued + renew_after)
            .duration_since(now)
            .unwrap_or_default(),
    }
}

/// This host's clock against the coordinator's, read from the `not_before` of a certificate the
/// coordinator just issued: words for an operator when they differ by more than two minutes.
pub fn clock_skew(now: SystemTime, not_before: SystemTime) -> Option<String> {
    let coordinator_now = not_before + CERTIFICATE_BACKDATE;
    let (direction, difference) = match now.duration_since(coordinator_now) {
        Ok(ahead) => ("ahead of", ahead),
        Err(behind) => ("behind", behind.duration()),
    };
    (difference > SKEW_TOLERANCE).then(|| {
        format!(
            "this host's clock is {} {direction} the coordinator's; certificate renewals are timed \
             by elapsed time, but set the clock right (NTP): TLS checks certificates against it",
            humantime::format_duration(Duration::from_secs(difference.as_secs()))
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    /// A host whose clock is 25 days ahead, with 30-day certificates, used to renew at once, every
    /// time (3,265 renewals in 162 s): each new certificate looked two thirds spent by its clock.
    #[test]
    fn a_host_clock_ahead_renews_by_elapsed_time_and_says_so() {
        let issued = SystemTime::UNIX_EPOCH + 20_000 * DAY;
        let not_before = issued - CERTIFICATE_BACKDATE;
        let not_after = issued + 30 * DAY;
        let host_now = issued + 25 * DAY;
        // Just received: two thirds of its lifetime from now, whatever the wall clock says.
        let delay = renewal_delay(host_now, not_before, not_after, Some(Duration::ZERO));
        assert!(delay > 19 * DAY && delay < 21 * DAY, "{delay:?}");
        // Found on disk at start: judged by the wall clock, so renewed at once, once.
        assert_eq!(
            renewal_delay(host_now, not_before, not_after, None),
            Duration::ZERO
        );
        let said = clock_skew(host_now, not_before).unwrap();
        assert!(
            said.starts_with("this host's clock is 25days ahead of the coordinator's"),
            "{said}"
        );
        assert!(clock_skew(issued + Duration::from_secs(30), not_before).is_none());
        let behind = clock_skew(issued - DAY, not_before).unwrap();
        assert!(behind.contains("1day behind"), "{behind}");
    }
}
