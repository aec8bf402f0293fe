//! The coordinator's configuration: a TOML file, then the environment, then command-line flags,
//! each overriding the one before; then [`RawConfig::validate`], whose errors name the key.
//!
//! Without `--config`, `DIR/coordinator.toml` (written by `init`) is the file layer, so
//! `run --data-dir DIR` finds the database `init` was given.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::{DatabaseUrl, StoreError};

/// The file `init` writes into the data directory.
pub const DATA_DIR_CONFIG: &str = "coordinator.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    File(#[from] muster_proto::files::ConfigFileError),
    #[error("{origin}: {key} = {value:?}: {reason}")]
    Invalid {
        origin: String,
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error("{origin}: {key} is required")]
    Missing { origin: String, key: &'static str },
}

/// Every key the config file may hold. Unknown keys are refused, by name.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Where the CA, the server certificate, the secret key and (by default) the SQLite file live.
    pub data_dir: Option<PathBuf>,
    /// `sqlite://PATH`, `postgres://USER@HOST[:PORT]/DB` or `mysql://USER@HOST[:PORT]/DB`;
    /// `None` means the SQLite file `DATA_DIR/muster.db`.
    pub database_url: Option<String>,
    /// gRPC listener; `None` means `0.0.0.0:17300`.
    pub listen: Option<String>,
    /// HTTP listener for /healthz and /metrics; `None` means `127.0.0.1:17301`.
    pub http_listen: Option<String>,
    /// How long a host may go without a heartbeat before it is marked down, e.g. `15s`; `None`
    /// means 15 s.
    pub heartbeat_ttl: Option<String>,
    /// How long a host certificate is valid, e.g. `30d`; agents renew after two thirds of it.
    /// `None` means 30 days.
    pub host_certificate_ttl: Option<String>,
    /// How long events are kept, e.g. `90d`; `None` means 90 days.
    pub event_retention: Option<String>,
    /// The most events kept (the oldest beyond go first); `None` means 100,000.
    pub event_max: Option<u64>,
}

impl RawConfig {
    /// Reads a TOML file; errors name the file and the key.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        Ok(muster_proto::files::read_toml(path)?)
    }

    /// Every key set in `other` replaces this one's.
    pub fn overlay(mut self, other: RawConfig) -> Self {
        if other.data_dir.is_some() {
            self.data_dir = other.data_dir;
        }
        if other.database_url.is_some() {
            self.database_url = other.database_url;
        }
        if other.listen.is_some() {
            self.listen = other.listen;
        }
        if other.http_listen.is_some() {
            self.http_listen = other.http_listen;
        }
        if other.heartbeat_ttl.is_some() {
            self.heartbeat_ttl = other.heartbeat_ttl;
        }
        if other.host_certificate_ttl.is_some() {
            self.host_certificate_ttl = other.host_certificate_ttl;
        }
        if other.event_retention.is_some() {
            self.event_retention = other.event_retention;
        }
        if other.event_max.is_some() {
            self.event_max = other.event_max;
        }
        self
    }

    /// Checks every value; `origin` says where the values came from, for the error message.
    pub fn validate(&self, origin: &str) -> Result<CoordinatorConfig, ConfigError> {
        let data_dir = self.data_dir.clone().ok_or_else(|| ConfigError::Missing {
            origin: origin.to_owned(),
            key: "data_dir",
        })?;
        let database_url = match &self.database_url {
            Some(text) => DatabaseUrl::parse(text).map_err(|error| {
                let reason = match error {
                    StoreError::InvalidUrl { reason, .. } => reason,
                    other => other.to_string(),
                };
                ConfigError::Invalid {
                    origin: origin.to_owned(),
                    key: "database_url",
                    value: DatabaseUrl::parse(text)
                        .map(|url| url.redacted())
                        .unwrap_or_else(|_| "<not shown: it may hold a password>".to_owned()),
                    reason,
                }
            })?,
            None => DatabaseUrl::sqlite_file(&data_dir.join("muster.db")),
        };
        let listen = socket_address(origin, "listen", self.listen.as_deref(), "0.0.0.0:17300")?;
        let http_listen = socket_address(
            origin,
            "http_listen",
            self.http_listen.as_deref(),
            "127.0.0.1:17301",
        )?;
        let heartbeat_ttl = duration(
            origin,
            "heartbeat_ttl",
            self.heartbeat_ttl.as_deref(),
            "15s",
        )?;
        let host_certificate_ttl = duration(
            origin,
            "host_certificate_ttl",
            self.host_certificate_ttl.as_deref(),
            "30d",
        )?;
        let event_retention = duration(
            origin,
            "event_retention",
            self.event_retention.as_deref(),
            "90d",
        )?;
        let event_max = self.event_max.unwrap_or(DEFAULT_EVENT_MAX);
        if event_max < 1000 {
            return Err(ConfigError::Invalid {
                origin: origin.to_owned(),
                key: "event_max",
                value: event_max.to_string(),
                reason: "must be at least 1000".to_owned(),
            });
        }
        Ok(CoordinatorConfig {
            data_dir,
            database_url,
            listen,
            http_listen,
            heartbeat_ttl,
            host_certificate_ttl,
            event_retention,
            event_max,
        })
    }
}

fn duration(
    origin: &str,
    key: &'static str,
    value: Option<&str>,
    default: &str,
) -> Result<std::time::Duration, ConfigError> {
    let text = value.unwrap_or(default);
    let invalid = |reason: String| ConfigError::Invalid {
        origin: origin.to_owned(),
        key,
        value: text.to_owned(),
        reason,
    };
    let parsed = humantime::parse_duration(text)
        .map_err(|error| invalid(format!("{error}; expected a duration such as 15s or 30d")))?;
    if parsed < std::time::Duration::from_secs(1) {
        return Err(invalid("must be at least 1s".to_owned()));
    }
    Ok(parsed)
}

fn socket_address(
    origin: &str,
    key: &'static str,
    value: Option<&str>,
    default: &str,
) -> Result<SocketAddr, ConfigError> {
    let text = value.unwrap_or(default);
    text.parse().map_err(|_| ConfigError::Invalid {
        origin: origin.to_owned(),
        key,
        value: text.to_owned(),
        reason: "expected IP:PORT, for example 0.0.0.0:17300".to_owned(),
    })
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    pub data_dir: PathBuf,
    pub database_url: DatabaseUrl,
    pub listen: SocketAddr,
    pub http_listen: SocketAddr,
    pub heartbeat_ttl: std::time::Duration,
    pub host_certificate_ttl: std::time::Duration,
    /// Events older than this are removed.
    pub event_retention: std::time::Duration,
    /// The most events kept.
    pub event_max: u64,
}

/// The most events kept unless `event_max` says otherwise.
pub const DEFAULT_EVENT_MAX: u64 = 100_000;

/// The files of an initialized data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    pub fn new(root: &Path) -> Self {
        DataDir {
            root: root.to_owned(),
        }
    }
    pub fn ca_certificate(&self) -> PathBuf {
        self.root.join("ca.pem")
    }
    pub fn ca_key(&self) -> PathBuf {
        self.root.join("ca.key")
    }
    pub fn server_certificate(&self) -> PathBuf {
        self.root.join("server.pem")
    }
    pub fn server_key(&self) -> PathBuf {
        self.root.join("server.key")
    }
    pub fn secret_key(&self) -> PathBuf {
        self.root.join("secret.key")
    }
    pub fn admin_token(&self) -> PathBuf {
        self.root.join("admin.token")
    }
    pub fn config(&self) -> PathBuf {
        self.root.join(DATA_DIR_CONFIG)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RawConfig, ConfigError> {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("coordinator.toml");
        std::fs::write(&path, text).unwrap();
        RawConfig::from_file(&path)
    }

    #[test]
    fn unknown_keys_are_named_with_their_line() {
        let error = parse("data_dir = \"/x\"\nlisen = \"0.0.0.0:1\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `lisen`"), "{error}");
        assert!(error.contains("line 2"), "{error}");
    }

    #[test]
    fn later_layers_override_earlier_ones() {
        let file = parse("data_dir = \"/a\"\nlisten = \"0.0.0.0:1\"\n").unwrap();
        let flags = RawConfig {
            listen: Some("127.0.0.1:2".into()),
            ..RawConfig::default()
        };
        let config = file.overlay(flags).validate("test").unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:2");
        assert_eq!(config.data_dir, PathBuf::from("/a"));
        assert_eq!(config.http_listen.to_string(), "127.0.0.1:17301");
        assert!(
            config
                .database_url
                .expose()
                .starts_with("sqlite:///a/muster.db")
        );
    }

    #[test]
    fn bad_values_name_their_key_and_hide_passwords() {
        let raw = RawConfig {
            data_dir: Some("/a".into()),
            listen: Some("everywhere".into()),
            ..RawConfig::default()
        };
        let error = raw.validate("f.toml").unwrap_err().to_string();
        assert!(error.contains("f.toml: listen = \"everywhere\""), "{error}");
        let raw = RawConfig {
            data_dir: Some("/a".into()),
            database_url: Some("postgres://u:hunter2@h".into()),
            ..RawConfig::default()
        };
        let error = raw.validate("f.toml").unwrap_err().to_string();
        assert!(
            error.contains("database_url") && !error.contains("hunter2"),
            "{error}"
        );
        let error = RawConfig::default()
            .validate("f.toml")
            .unwrap_err()
            .to_string();
        assert_eq!(error, "f.toml: data_dir is required");
    }
}
