//! The agent's configuration: a TOML file (`--config`, default `/etc/muster/agent.toml`), then the
//! environment (`MUSTER_AGENT_*`), then flags; then [`RawConfig::validate`], whose errors name the
//! file and the key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use muster_proto::validate;
use serde::Deserialize;

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

/// Every key the file may hold; unknown keys are refused by name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// The coordinator's gRPC URL, `https://HOST[:PORT]`.
    pub coordinator: Option<String>,
    /// A join token, used on the first start only (when the state directory holds no identity).
    pub token: Option<String>,
    /// This host's name in the cluster; `None` means the system's host name.
    pub host_name: Option<String>,
    /// The address other hosts reach this one at; `None` means the host name.
    pub advertise_address: Option<String>,
    /// The IP address components listen on; `None` means `0.0.0.0` (every address).
    pub bind_address: Option<String>,
    /// Labels the host expects; its join token gives them (an enrollment that asks for one the
    /// token does not give is refused). `None` asks for none.
    pub labels: Option<BTreeMap<String, String>>,
    /// Roles this host asks for when it enrolls (`server`, `scheduler`, `web-admin`,
    /// `load-balancer`); granted only when the join token allows them. `None` or empty means every
    /// role the token names.
    pub roles: Option<Vec<String>>,
    /// Where the identity (key, certificate) and the ledger live; `None` means
    /// `/var/lib/muster-agent`.
    pub state_dir: Option<PathBuf>,
    /// The `zato` command; `None` means `zato` from `PATH`. The installation named `default`.
    pub zato_bin: Option<PathBuf>,
    /// Other Zato installations this host can run servers with, by name: each the absolute path
    /// of its `zato` command (`next = "/opt/zato-3.2.1/code/bin/zato"`). A cluster's
    /// `zato.install` server setting picks one by name; the coordinator never sends a path.
    pub zato_installs: Option<BTreeMap<String, PathBuf>>,
    /// The Python that runs Zato, whose `pip` installs a cluster's Python dependencies beside its
    /// servers; `None` means the interpreter the `zato` command names on its first line (`#!`),
    /// else `python` beside it.
    pub zato_python: Option<PathBuf>,
    /// Where components are created; `None` means `/opt/zato`.
    pub components_dir: Option<PathBuf>,
    /// The user Zato commands run as; `None` or empty means the agent's own.
    pub run_as: Option<String>,
    /// The HAProxy binaries this host runs for a load-balancer role (absolute paths, or names looked
    /// up in `PATH`); an assignment that names another one is refused. `None` means `["haproxy"]`.
    /// The host decides what it executes, not whoever holds an admin token.
    pub haproxy_bins: Option<Vec<PathBuf>>,
    /// Directories (absolute) where a cluster's SQLite ODB file may be, besides the components
    /// directory; an assignment whose `--odb-db-name` is elsewhere is refused. `None` means none.
    /// The agent writes that file as root: the host decides where, not whoever holds an admin
    /// token.
    pub sqlite_odb_dirs: Option<Vec<PathBuf>>,
    /// The first of Zato's IPC ports for this host's servers (each server gets ten from here, in
    /// the order of their HTTP ports); `None` means 17050, Zato's own. Change it only when 17050 is
    /// taken or several agents share one network namespace.
    pub zato_ipc_port_start: Option<u16>,
    /// How often to report, e.g. `5s`; `None` means 5 s.
    pub heartbeat_interval: Option<String>,
    /// Where to serve `/metrics` (Prometheus), `IP:PORT`; `None` or empty means nowhere.
    pub metrics_listen: Option<String>,
}

impl RawConfig {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        Ok(muster_proto::files::read_toml(path)?)
    }

    /// Every key set in `other` replaces this one's.
    pub fn overlay(self, other: RawConfig) -> Self {
        RawConfig {
            coordinator: other.coordinator.or(self.coordinator),
            token: other.token.or(self.token),
            host_name: other.host_name.or(self.host_name),
            advertise_address: other.advertise_address.or(self.advertise_address),
            bind_address: other.bind_address.or(self.bind_address),
            labels: other.labels.or(self.labels),
            roles: other.roles.or(self.roles),
            state_dir: other.state_dir.or(self.state_dir),
            zato_bin: other.zato_bin.or(self.zato_bin),
            zato_installs: other.zato_installs.or(self.zato_installs),
            zato_python: other.zato_python.or(self.zato_python),
            components_dir: other.components_dir.or(self.components_dir),
            run_as: other.run_as.or(self.run_as),
            haproxy_bins: other.haproxy_bins.or(self.haproxy_bins),
            sqlite_odb_dirs: other.sqlite_odb_dirs.or(self.sqlite_odb_dirs),
            zato_ipc_port_start: other.zato_ipc_port_start.or(self.zato_ipc_port_start),
            heartbeat_interval: other.heartbeat_interval.or(self.heartbeat_interval),
            metrics_listen: other.metrics_listen.or(self.metrics_listen),
        }
    }

    pub fn validate(&self, origin: &str) -> Result<AgentConfig, ConfigError> {
        let invalid = |key: &'static str, value: &str, reason: String| ConfigError::Invalid {
            origin: origin.to_owned(),
            key,
            value: value.to_owned(),
            reason,
        };
        let coordinator = self
            .coordinator
            .clone()
            .ok_or_else(|| ConfigError::Missing {
                origin: origin.to_owned(),
                key: "coordinator",
            })?;
        let parsed = url::Url::parse(&coordinator)
            .map_err(|error| invalid("coordinator", &coordinator, error.to_string()))?;
        if parsed.scheme() != "https" || parsed.host_str().is_none() {
            return Err(invalid(
                "coordinator",
                &coordinator,
                "expected https://HOST[:PORT]; the coordinator speaks TLS only".to_owned(),
            ));
        }
        let host_name = match &self.host_name {
            Some(name) => name.clone(),
            None => nix::unistd::gethostname()
                .ok()
                .and_then(|name| name.into_string().ok())
                .unwrap_or_default(),
        };
        validate::name("host_name", &host_name)
            .map_err(|error| invalid("host_name", &host_name, error.reason.to_owned()))?;
        let advertise_address = self
            .advertise_address
            .clone()
            .unwrap_or_else(|| host_name.clone());
        validate::host("advertise_address", &advertise_address).map_err(|error| {
            invalid(
                "advertise_address",
                &advertise_address,
                error.reason.to_owned(),
            )
        })?;
        let bind_text = self
            .bind_address
            .clone()
            .unwrap_or_else(|| "0.0.0.0".to_owned());
        let bind_address: std::net::IpAddr = bind_text.parse().map_err(|_| {
            invalid(
                "bind_address",
                &bind_text,
                "expected an IP address".to_owned(),
            )
        })?;
        let labels = self.labels.clone().unwrap_or_default();
        for (key, value) in &labels {
            validate::name("labels key", key)
                .map_err(|error| invalid("labels", key, error.reason.to_owned()))?;
            validate::description("labels value", value)
                .map_err(|error| invalid("labels", value, error.reason.to_owned()))?;
        }
        if let Some(token) = &self.token {
            muster_proto::token::JoinToken::parse(token)
                .map_err(|error| invalid("token", "<not shown>", error.reason))?;
        }
        let mut roles = Vec::new();
        for name in self.roles.clone().unwrap_or_default() {
            let role = name.parse::<muster_proto::v1::Role>().map_err(|error| {
                invalid(
                    "roles",
                    &name,
                    format!("expected one of: {}", error.expected),
                )
            })?;
            roles.push(role);
        }
        let run_as = self.run_as.clone().filter(|user| !user.is_empty());
        if let Some(user) = &run_as {
            validate::name("run_as", user)
                .map_err(|error| invalid("run_as", user, error.reason.to_owned()))?;
        }
        let heartbeat_text = self
            .heartbeat_interval
            .clone()
            .unwrap_or_else(|| "5s".to_owned());
        let heartbeat_interval = humantime::parse_duration(&heartbeat_text)
            .map_err(|error| invalid("heartbeat_interval", &heartbeat_text, error.to_string()))?;
        if heartbeat_interval < Duration::from_millis(100) {
            return Err(invalid(
                "heartbeat_interval",
                &heartbeat_text,
                "must be at least 100ms".to_owned(),
            ));
        }
        let metrics_listen = match self.metrics_listen.as_deref() {
            None | Some("") => None,
            Some(text) => Some(text.parse::<std::net::SocketAddr>().map_err(|error| {
                invalid("metrics_listen", text, format!("{error}: give IP:PORT"))
            })?),
        };
        let components_dir = self
            .components_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/opt/zato"));
        if !components_dir.is_absolute() {
            return Err(invalid(
                "components_dir",
                &components_dir.display().to_string(),
                "must be an absolute path".to_owned(),
            ));
        }
        let state_dir = self
            .state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("/var/lib/muster-agent"));
        let zato_ipc_port_start = self
            .zato_ipc_port_start
            .unwrap_or(muster_proto::zato::FIRST_IPC_PORT);
        if !(1024..=64000).contains(&zato_ipc_port_start) {
            return Err(invalid(
                "zato_ipc_port_start",
                &zato_ipc_port_start.to_string(),
                "must be between 1024 and 64000".to_owned(),
            ));
        }
        let haproxy_bins = self
            .haproxy_bins
            .clone()
            .unwrap_or_else(|| vec![PathBuf::from("haproxy")]);
        if let Some(relative) = haproxy_bins
            .iter()
            .find(|bin| !bin.is_absolute() && bin.components().count() > 1)
        {
            return Err(invalid(
                "haproxy_bins",
                &relative.display().to_string(),
                "each must be an absolute path or a program name looked up in PATH".to_owned(),
            ));
        }
        let zato_installs = self.zato_installs.clone().unwrap_or_default();
        for (name, bin) in &zato_installs {
            muster_proto::server_settings::check_install_name(name)
                .map_err(|error| invalid("zato_installs", name, error.reason.to_owned()))?;
            if name == muster_proto::server_settings::DEFAULT_INSTALL {
                return Err(invalid(
                    "zato_installs",
                    name,
                    "is zato_bin's name; give the others other names".to_owned(),
                ));
            }
            if !bin.is_absolute()
                || bin
                    .components()
                    .any(|part| part == std::path::Component::ParentDir)
            {
                return Err(invalid(
                    "zato_installs",
                    &bin.display().to_string(),
                    format!("{name}: must be the absolute path of a zato command, without `..`"),
                ));
            }
        }
        let sqlite_odb_dirs = self.sqlite_odb_dirs.clone().unwrap_or_default();
        if let Some(relative) = sqlite_odb_dirs.iter().find(|directory| {
            !directory.is_absolute()
                || directory
                    .components()
                    .any(|part| part == std::path::Component::ParentDir)
        }) {
            return Err(invalid(
                "sqlite_odb_dirs",
                &relative.display().to_string(),
                "each must be an absolute path without `..`".to_owned(),
            ));
        }
        Ok(AgentConfig {
            coordinator,
            token: self.token.clone(),
            host_name,
            advertise_address,
            bind_address,
            labels,
            roles,
            state_dir,
            zato_bin: self
                .zato_bin
                .clone()
                .unwrap_or_else(|| PathBuf::from("zato")),
            zato_installs,
            zato_python: self.zato_python.clone(),
            components_dir,
            run_as,
            haproxy_bins,
            sqlite_odb_dirs,
            zato_ipc_port_start,
            heartbeat_interval,
            metrics_listen,
        })
    }
}

/// The agent.toml key that names installation `install`: `zato_bin` for `default`.
pub fn install_key(install: &str) -> String {
    if install == muster_proto::server_settings::DEFAULT_INSTALL {
        "zato_bin".to_owned()
    } else {
        format!("zato_installs.{install}")
    }
}

impl AgentConfig {
    /// Every Zato installation this host can run servers with, by name: `default` (`zato_bin`)
    /// first, then `zato_installs`.
    pub fn installs(&self) -> Vec<(String, PathBuf)> {
        std::iter::once((
            muster_proto::server_settings::DEFAULT_INSTALL.to_owned(),
            self.zato_bin.clone(),
        ))
        .chain(
            self.zato_installs
                .iter()
                .map(|(name, bin)| (name.clone(), bin.clone())),
        )
        .collect()
    }

    /// Replaces a DNS name in `advertise_address` (the default is the host name) with the address
    /// it resolves to on this host, once, at start: the coordinator and every load balancer get an
    /// address, never a name they may be unable to resolve (HAProxy refuses a whole config for one
    /// name it cannot resolve). `origin` names the config for errors.
    pub fn resolve_advertise_address(&mut self, origin: &str) -> Result<(), ConfigError> {
        let value = self.advertise_address.clone();
        let invalid = |reason: String| ConfigError::Invalid {
            origin: origin.to_owned(),
            key: "advertise_address",
            value: value.clone(),
            reason,
        };
        let address = match value.parse::<std::net::IpAddr>() {
            Ok(address) => address,
            Err(_) => {
                let found: Vec<std::net::IpAddr> =
                    std::net::ToSocketAddrs::to_socket_addrs(&(value.as_str(), 0))
                        .map_err(|error| {
                            invalid(format!(
                                "this name does not resolve on this host ({error}); set \
                                 advertise_address to the IP address other hosts reach this one at"
                            ))
                        })?
                        .map(|socket| socket.ip())
                        .collect();
                advertised_among(&found).map_err(invalid)?
            }
        };
        // The same rule the coordinator applies to what agents send.
        validate::ip_address("advertise_address", &address.to_string())
            .map_err(|error| invalid(error.reason.to_owned()))?;
        if address.to_string() != value {
            tracing::info!(name = %value, %address, "advertise_address resolved");
        }
        self.advertise_address = address.to_string();
        Ok(())
    }
}

/// Which of the addresses a name resolved to this host advertises: the first IPv4 address that
/// is not loopback, else the first such IPv6 one. A name that resolves only to loopback (Debian's
/// `/etc/hosts` maps the host's own name to 127.0.1.1) is refused: no other host could reach it.
pub fn advertised_among(found: &[std::net::IpAddr]) -> Result<std::net::IpAddr, String> {
    let reachable =
        |address: &&std::net::IpAddr| !address.is_loopback() && !address.is_unspecified();
    found
        .iter()
        .filter(reachable)
        .find(|address| address.is_ipv4())
        .or_else(|| found.iter().find(reachable))
        .copied()
        .ok_or_else(|| match found.first() {
            Some(loopback) => format!(
                "this name resolves only to {loopback}, which other hosts cannot reach; set \
                 advertise_address to this host's IP address (127.0.0.1 for a one-host cluster)"
            ),
            None => "this name resolves to no address".to_owned(),
        })
}

/// A validated configuration.
#[derive(Clone)]
pub struct AgentConfig {
    pub coordinator: String,
    /// Only for the first start; never logged.
    pub token: Option<String>,
    pub host_name: String,
    pub advertise_address: String,
    /// The address components listen on.
    pub bind_address: std::net::IpAddr,
    pub labels: BTreeMap<String, String>,
    /// Roles to ask for at enrollment; empty means every role the token names.
    pub roles: Vec<muster_proto::v1::Role>,
    pub state_dir: PathBuf,
    pub zato_bin: PathBuf,
    /// The other Zato installations, by name: each its `zato` command.
    pub zato_installs: BTreeMap<String, PathBuf>,
    /// `None`: the one the `zato` command names.
    pub zato_python: Option<PathBuf>,
    pub components_dir: PathBuf,
    /// `None` means the agent's own user.
    pub run_as: Option<String>,
    /// The HAProxy binaries this host agrees to run.
    pub haproxy_bins: Vec<PathBuf>,
    /// Where SQLite ODB files may be besides the components directory.
    pub sqlite_odb_dirs: Vec<PathBuf>,
    /// The first of Zato's IPC ports for this host's servers.
    pub zato_ipc_port_start: u16,
    pub heartbeat_interval: Duration,
    /// Where `/metrics` is served; `None`: nowhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl std::fmt::Debug for AgentConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AgentConfig")
            .field("coordinator", &self.coordinator)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("host_name", &self.host_name)
            .field("advertise_address", &self.advertise_address)
            .field("state_dir", &self.state_dir)
            .field("zato_bin", &self.zato_bin)
            .field("zato_installs", &self.zato_installs)
            .field("zato_python", &self.zato_python)
            .field("components_dir", &self.components_dir)
            .field("run_as", &self.run_as)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RawConfig, ConfigError> {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("agent.toml");
        std::fs::write(&path, text).unwrap();
        RawConfig::from_file(&path)
    }

    #[test]
    fn a_good_file_validates_with_defaults() {
        let raw = parse("coordinator = \"https://coord:17300\"\nhost_name = \"app-1\"\n").unwrap();
        let config = raw.validate("agent.toml").unwrap();
        assert_eq!(config.advertise_address, "app-1");
        assert_eq!(config.heartbeat_interval, Duration::from_secs(5));
        assert_eq!(config.components_dir, PathBuf::from("/opt/zato"));
        assert_eq!(config.run_as, None);
    }

    #[test]
    fn an_advertised_name_must_resolve_beyond_loopback() {
        let addresses = |texts: &[&str]| -> Vec<std::net::IpAddr> {
            texts.iter().map(|text| text.parse().unwrap()).collect()
        };
        assert_eq!(
            advertised_among(&addresses(&["::1", "fd00::5", "127.0.1.1", "10.0.0.5"])),
            Ok("10.0.0.5".parse().unwrap())
        );
        assert_eq!(
            advertised_among(&addresses(&["127.0.1.1", "fd00::5"])),
            Ok("fd00::5".parse().unwrap())
        );
        let refused = advertised_among(&addresses(&["127.0.1.1", "::1"])).unwrap_err();
        assert!(
            refused.contains("resolves only to 127.0.1.1, which other hosts cannot reach"),
            "{refused}"
        );
        let mut literal = parse(
            "coordinator = \"https://c\"\nhost_name = \"a\"\nadvertise_address = \"0.0.0.0\"",
        )
        .unwrap()
        .validate("agent.toml")
        .unwrap();
        let error = literal
            .resolve_advertise_address("agent.toml")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("advertise_address = \"0.0.0.0\": not an address other hosts"),
            "{error}"
        );
    }

    #[test]
    fn installations_are_named_default_first() {
        let config = parse(
            "coordinator = \"https://c\"\nhost_name = \"a\"\nzato_bin = \"/opt/zato-3.2/code/bin/zato\"\n\
             [zato_installs]\nnext = \"/opt/zato-next/code/bin/zato\"\n",
        )
        .unwrap()
        .validate("agent.toml")
        .unwrap();
        assert_eq!(
            config.installs(),
            [
                (
                    "default".to_owned(),
                    PathBuf::from("/opt/zato-3.2/code/bin/zato")
                ),
                (
                    "next".to_owned(),
                    PathBuf::from("/opt/zato-next/code/bin/zato")
                ),
            ]
        );
        assert_eq!(install_key("next"), "zato_installs.next");
        assert_eq!(install_key("default"), "zato_bin");
    }

    #[test]
    fn bad_keys_and_values_are_named() {
        let error = parse("coordinator = \"https://c\"\nhostname = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("unknown field `hostname`") && error.contains("line 2"),
            "{error}"
        );
        let bad = [
            (
                "coordinator = \"http://c\"\nhost_name = \"a\"",
                "coordinator",
            ),
            (
                "coordinator = \"https://c\"\nhost_name = \"a b\"",
                "host_name = \"a b\"",
            ),
            (
                "coordinator = \"https://c\"\nhost_name = \"a\"\nadvertise_address = \"x;y\"",
                "advertise_address",
            ),
            (
                "coordinator = \"https://c\"\nhost_name = \"a\"\nheartbeat_interval = \"soon\"",
                "heartbeat_interval",
            ),
            (
                "coordinator = \"https://c\"\nhost_name = \"a\"\ncomponents_dir = \"zato\"",
                "components_dir",
            ),
            (
                "coordinator = \"https://c\"\nhost_name = \"a\"\ntoken = \"K10xyz::secret\"",
                "token = \"<not shown>\"",
            ),
            (
                "coordinator = \"https://c\"\nhost_name = \"a\"\n[zato_installs]\n\"a/b\" = \"/opt/z/zato\"",
                "zato_installs = \"a/b\"",
            ),
            (
                "coordinator = \"https://c\"\nhost_name = \"a\"\n[zato_installs]\ndefault = \"/opt/z/zato\"",
                "zato_installs = \"default\": is zato_bin's name",
            ),
            (
                "coordinator = \"https://c\"\nhost_name = \"a\"\n[zato_installs]\nnext = \"zato\"",
                "zato_installs = \"zato\": next: must be the absolute path",
            ),
        ];
        for (text, expected) in bad {
            let error = parse(text)
                .unwrap()
                .validate("agent.toml")
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{text}: {error}");
            assert!(!error.contains("K10xyz"), "a token is never shown: {error}");
        }
    }
}
