//! Secrets at rest and the random values the coordinator makes.
//!
//! Cluster secrets are sealed with ChaCha20-Poly1305 under the coordinator's key (`DIR/secret.key`,
//! 32 random bytes, mode 0600; every coordinator sharing a database needs the same file). Each sealed
//! value is bound to the row and column it belongs to (the associated data), so a sealed value
//! copied into another cluster's row does not open. Tokens are high-entropy random values, so they
//! are stored as plain SHA-256 hashes: a slow password hash would add nothing.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use ring::aead::{self, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

const SEALED_PREFIX: &str = "v1:";
pub const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the coordinator's secret key must be {KEY_LEN} bytes, found {0}")]
    KeyLength(usize),
    #[error("a sealed secret ({context}) does not open with this coordinator's key")]
    Open { context: String },
    #[error("the system random generator failed")]
    Random,
}

/// Seals and opens secrets with the coordinator's key.
pub struct SecretBox {
    key: LessSafeKey,
}

impl fmt::Debug for SecretBox {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("SecretBox(..)")
    }
}

impl SecretBox {
    pub fn new(key_bytes: &[u8]) -> Result<Self, SecretError> {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, key_bytes)
            .map_err(|_| SecretError::KeyLength(key_bytes.len()))?;
        Ok(SecretBox {
            key: LessSafeKey::new(unbound),
        })
    }

    /// Seals `plaintext`, bound to `context` (for example `cluster:<id>:secret_key`).
    pub fn seal(&self, context: &str, plaintext: &str) -> Result<String, SecretError> {
        let mut nonce_bytes = [0u8; aead::NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce_bytes)
            .map_err(|_| SecretError::Random)?;
        let mut buffer = plaintext.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(context.as_bytes()),
                &mut buffer,
            )
            .map_err(|_| SecretError::Random)?;
        let mut sealed = nonce_bytes.to_vec();
        sealed.extend_from_slice(&buffer);
        Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(sealed)))
    }

    /// Opens a value sealed by [`SecretBox::seal`] with the same `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<String, SecretError> {
        let open_error = || SecretError::Open {
            context: context.to_owned(),
        };
        let encoded = sealed.strip_prefix(SEALED_PREFIX).ok_or_else(open_error)?;
        let mut bytes = STANDARD.decode(encoded).map_err(|_| open_error())?;
        if bytes.len() < aead::NONCE_LEN {
            return Err(open_error());
        }
        let mut ciphertext = bytes.split_off(aead::NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| open_error())?;
        let plaintext = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut ciphertext)
            .map_err(|_| open_error())?;
        String::from_utf8(plaintext.to_vec()).map_err(|_| open_error())
    }
}

/// `count` random bytes.
pub fn random_bytes(count: usize) -> Result<Vec<u8>, SecretError> {
    let mut bytes = vec![0u8; count];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| SecretError::Random)?;
    Ok(bytes)
}

/// `count` random bytes as lowercase hex (ids, token secrets).
pub fn random_hex(count: usize) -> Result<String, SecretError> {
    Ok(hex::encode(random_bytes(count)?))
}

/// A Fernet key as Zato's `--secret-key` and `--jwt-secret` take it: 32 random bytes, URL-safe
/// base64 with padding.
pub fn fernet_key() -> Result<String, SecretError> {
    Ok(URL_SAFE.encode(random_bytes(32)?))
}

/// The SHA-256 of `value`, as lowercase hex.
pub fn sha256_hex(value: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, value))
}

/// Compares two strings in time that does not depend on where they differ.
pub fn constant_time_eq(left: &str, right: &str) -> bool {
    let (left, right) = (left.as_bytes(), right.as_bytes());
    if left.len() != right.len() {
        return false;
    }
    left.iter()
        .zip(right)
        .fold(0u8, |difference, (a, b)| difference | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_round_trip_and_bind_context() {
        let secret_box = SecretBox::new(&random_bytes(KEY_LEN).unwrap()).unwrap();
        let sealed = secret_box.seal("cluster:a:secret_key", "hunter2").unwrap();
        assert!(!sealed.contains("hunter2"));
        assert_eq!(
            secret_box.open("cluster:a:secret_key", &sealed).unwrap(),
            "hunter2"
        );
        assert!(secret_box.open("cluster:b:secret_key", &sealed).is_err());
        let other_box = SecretBox::new(&random_bytes(KEY_LEN).unwrap()).unwrap();
        assert!(other_box.open("cluster:a:secret_key", &sealed).is_err());
    }

    #[test]
    fn fernet_keys_are_32_bytes_url_safe() {
        let key = fernet_key().unwrap();
        assert_eq!(URL_SAFE.decode(&key).unwrap().len(), 32);
        assert!(!key.contains('+') && !key.contains('/'));
    }

    #[test]
    fn wrong_key_length_is_refused() {
        assert!(matches!(
            SecretBox::new(&[0u8; 16]),
            Err(SecretError::KeyLength(16))
        ));
    }
}
