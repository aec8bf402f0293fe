//! The coordinator's certificate authority and its own server certificate.
//!
//! `init` makes a CA (ECDSA P-256, valid 10 years) and a server certificate signed by it whose
//! SANs are the advertised names plus `127.0.0.1` and `localhost`. Clients trust `ca.pem`; agents
//! pin it by the SHA-256 of its DER, which every join token carries.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot make a certificate")]
    Generate(#[from] rcgen::Error),
    #[error("{what} is not a PEM certificate")]
    NotPem { what: String },
    #[error("the certificate signing request is not valid")]
    BadCsr(#[source] rcgen::Error),
    #[error("the client certificate does not name a Muster host")]
    NotAHostCertificate,
}

const HOST_PREFIX: &str = "host:";

/// Signs a host's CSR: the certificate's subject is `CN=host:<host_id>` whatever the CSR asked,
/// for client authentication only, valid for `ttl`.
pub fn sign_host_csr(
    ca: &CertifiedKey,
    csr_pem: &str,
    host_id: &str,
    ttl: std::time::Duration,
) -> Result<String, PkiError> {
    let mut csr =
        rcgen::CertificateSigningRequestParams::from_pem(csr_pem).map_err(PkiError::BadCsr)?;
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Muster");
    name.push(DnType::CommonName, format!("{HOST_PREFIX}{host_id}"));
    let params = &mut csr.params;
    params.distinguished_name = name;
    params.subject_alt_names = Vec::new();
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.custom_extensions = Vec::new();
    let now = OffsetDateTime::now_utc();
    params.not_before = now
        - Duration::seconds(
            i64::try_from(muster_proto::HOST_CERTIFICATE_BACKDATE_SECONDS).unwrap_or(300),
        );
    params.not_after = now + Duration::try_from(ttl).unwrap_or(Duration::days(30));
    let mut serial = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut serial)
        .map_err(|_| PkiError::Generate(rcgen::Error::RingUnspecified))?;
    serial[0] &= 0x7f;
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.certificate_pem, ca_key)?;
    Ok(csr.signed_by(&issuer)?.pem())
}

/// The host id a verified client certificate (DER) names.
pub fn host_id_from_certificate(der: &[u8]) -> Result<String, PkiError> {
    let (_, certificate) =
        x509_parser::parse_x509_certificate(der).map_err(|_| PkiError::NotAHostCertificate)?;
    let common_name = certificate
        .subject()
        .iter_common_name()
        .next()
        .and_then(|name| name.as_str().ok())
        .ok_or(PkiError::NotAHostCertificate)?;
    let host_id = common_name
        .strip_prefix(HOST_PREFIX)
        .ok_or(PkiError::NotAHostCertificate)?;
    if !muster_proto::token::is_token_id(host_id) {
        return Err(PkiError::NotAHostCertificate);
    }
    Ok(host_id.to_owned())
}

/// A certificate and its private key, both PEM. Debug shows no key.
pub struct CertifiedKey {
    pub certificate_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for CertifiedKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("CertifiedKey(..)")
    }
}

/// Makes a new CA.
pub fn create_ca() -> Result<CertifiedKey, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Muster");
    name.push(DnType::CommonName, "Muster coordinator CA");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(3650);
    let key = KeyPair::generate()?;
    let certificate = params.self_signed(&key)?;
    Ok(CertifiedKey {
        certificate_pem: certificate.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Makes the coordinator's server certificate, valid 5 years, for `names` plus 127.0.0.1 and
/// localhost.
pub fn issue_server_certificate(
    ca: &CertifiedKey,
    names: &[String],
) -> Result<CertifiedKey, PkiError> {
    let mut subject_alt_names = vec!["127.0.0.1".to_owned(), "localhost".to_owned()];
    for name in names {
        if !subject_alt_names.contains(name) {
            subject_alt_names.push(name.clone());
        }
    }
    let mut params = CertificateParams::new(subject_alt_names)?;
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "Muster");
    name.push(DnType::CommonName, "muster-coordinator");
    params.distinguished_name = name;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(5 * 365);
    let ca_key = KeyPair::from_pem(&ca.key_pem)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.certificate_pem, ca_key)?;
    let key = KeyPair::generate()?;
    let certificate = params.signed_by(&key, &issuer)?;
    Ok(CertifiedKey {
        certificate_pem: certificate.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// The SHA-256 of a PEM certificate's DER, as join tokens carry it.
pub fn certificate_sha256(certificate_pem: &str, what: &str) -> Result<String, PkiError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let der = CertificateDer::from_pem_slice(certificate_pem.as_bytes()).map_err(|_| {
        PkiError::NotPem {
            what: what.to_owned(),
        }
    })?;
    Ok(crate::secrets::sha256_hex(&der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_certificate_chains_to_the_ca_and_names_its_hosts() {
        let ca = create_ca().unwrap();
        let server = issue_server_certificate(&ca, &["coord.example".to_owned()]).unwrap();
        let hash = certificate_sha256(&ca.certificate_pem, "ca.pem").unwrap();
        assert_eq!(hash.len(), 64);
        assert_ne!(
            hash,
            certificate_sha256(&server.certificate_pem, "server.pem").unwrap()
        );
        assert!(
            certificate_sha256("garbage", "x.pem")
                .unwrap_err()
                .to_string()
                .contains("x.pem")
        );
    }
}
