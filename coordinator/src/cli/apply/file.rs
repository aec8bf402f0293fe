//! The cluster file: its keys, its checks, and a cluster written back as one.

use std::collections::BTreeMap;

use super::*;

/// A cluster as a file describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClusterFile {
    pub(super) cluster: ClusterSpec,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) servers: Vec<ComponentSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) scheduler: Option<ComponentSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) web_admins: Vec<ComponentSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) load_balancers: Vec<ComponentSpec>,
    /// The cluster's services; without the section, apply leaves them as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) services: Option<ServicesSpec>,
    /// The cluster's configuration; without the section, apply leaves it as it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) config: Option<ConfigSpec>,
    /// The cluster's Python dependencies; without the section, apply leaves them as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) python: Option<PythonSpec>,
    /// The cluster's user-config files; without the section, apply leaves them as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) user_conf: Option<UserConfSpec>,
    /// The cluster's server settings, by section (`[server_settings.main]`,
    /// `[server_settings.env]`); without the section, apply leaves them as they are; with it,
    /// the whole set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) server_settings: Option<SettingsSpec>,
    /// The scheduler's settings likewise (`[scheduler_settings.logging]`,
    /// `[scheduler_settings.env]`, `[scheduler_settings.zato]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) scheduler_settings: Option<SettingsSpec>,
    /// The dashboards' settings likewise (`TIME_ZONE` in `[web_admin_settings]`, its sections as
    /// the scheduler's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) web_admin_settings: Option<SettingsSpec>,
    /// What the cluster's rollouts do when a server fails them; without the section, apply
    /// leaves it as it is; with it, a key left out is the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) rollout: Option<RolloutSpec>,
}

/// `[rollout]`: `max_unavailable = 2`, `healthy_deadline = "5m"`, `min_healthy_time = "10s"`,
/// `auto_revert = true`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RolloutSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) max_unavailable: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) healthy_deadline: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) min_healthy_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) auto_revert: Option<bool>,
}

/// `[rollout]` as the strategy it sets (a key left out: the default), checked.
pub(super) fn rollout_of(spec: &RolloutSpec) -> Result<muster_proto::rollout::Strategy, String> {
    let mut strategy = muster_proto::rollout::Strategy::default();
    if let Some(text) = &spec.healthy_deadline {
        let deadline = humantime::parse_duration(text).map_err(|_| {
            format!("[rollout] invalid healthy_deadline {text:?}: must be 10s to 24h")
        })?;
        strategy.healthy_deadline_seconds = u32::try_from(deadline.as_secs()).unwrap_or(u32::MAX);
    }
    if let Some(text) = &spec.min_healthy_time {
        let held = humantime::parse_duration(text).map_err(|_| {
            format!("[rollout] invalid min_healthy_time {text:?}: must be 0s to 1h")
        })?;
        strategy.min_healthy_time_seconds = u32::try_from(held.as_secs()).unwrap_or(u32::MAX);
    }
    strategy.auto_revert = spec.auto_revert.unwrap_or(false);
    strategy.max_unavailable = spec.max_unavailable.unwrap_or(1);
    strategy
        .check()
        .map_err(|error| format!("[rollout] {error}"))?;
    Ok(strategy)
}

/// A server setting's value in the file: a string, a number or a boolean.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub(super) enum SettingValue {
    Text(String),
    Number(i64),
    Flag(bool),
}

/// A `[ROLE_settings]` table: sections of keys (`[server_settings.main]`), and keys of no
/// section (a dashboard's `TIME_ZONE`).
pub(super) type SettingsSpec = BTreeMap<String, SettingEntry>;

/// An entry of a `[ROLE_settings]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub(super) enum SettingEntry {
    Value(SettingValue),
    Section(BTreeMap<String, SettingValue>),
}

/// The table a role's settings are in, as errors name it.
pub(super) fn settings_table(role: Role) -> &'static str {
    match role {
        Role::Scheduler => "[scheduler_settings]",
        Role::WebAdmin => "[web_admin_settings]",
        _ => "[server_settings]",
    }
}

/// `[server_settings]` (`[scheduler_settings]`, `[web_admin_settings]`: `role`'s) as the
/// coordinator takes them (`section.key`, `env.NAME`, `TIME_ZONE`), each checked
/// ([`muster_proto::server_settings::check`]); a number or a boolean is written as Zato reads it.
pub(super) fn settings_of(
    role: Role,
    entries: &SettingsSpec,
) -> Result<BTreeMap<String, String>, String> {
    let text = |value: &SettingValue| match value {
        SettingValue::Text(text) => text.clone(),
        SettingValue::Number(number) => number.to_string(),
        SettingValue::Flag(true) => "True".to_owned(),
        SettingValue::Flag(false) => "False".to_owned(),
    };
    let mut settings = BTreeMap::new();
    for (name, entry) in entries {
        match entry {
            SettingEntry::Value(value) => {
                settings.insert(name.clone(), text(value));
            }
            SettingEntry::Section(keys) => {
                for (key, value) in keys {
                    settings.insert(format!("{name}.{key}"), text(value));
                }
            }
        }
    }
    muster_proto::server_settings::check_all(role, &settings)
        .map_err(|error| format!("{} {error}", settings_table(role)))
}

/// Settings as a `[ROLE_settings]` table: `section.key` in its section, a name of no section
/// as a key of its own.
fn settings_spec(settings: &std::collections::HashMap<String, String>) -> Option<SettingsSpec> {
    if settings.is_empty() {
        return None;
    }
    let mut entries = SettingsSpec::new();
    for (name, value) in settings {
        let value = SettingValue::Text(value.clone());
        match name.split_once('.') {
            Some((section, key)) => {
                if let SettingEntry::Section(keys) = entries
                    .entry(section.to_owned())
                    .or_insert_with(|| SettingEntry::Section(BTreeMap::new()))
                {
                    keys.insert(key.to_owned(), value);
                }
            }
            None => {
                entries.insert(name.clone(), SettingEntry::Value(value));
            }
        }
    }
    Some(entries)
}

/// `[user_conf]`: the files every server's services read as `self.config.NAME`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UserConfSpec {
    /// NAME.ini or NAME.conf files, relative to the cluster file's directory; the whole set (an
    /// empty list removes those Muster wrote). Secrets: keep them out of version control.
    pub(super) files: Vec<PathBuf>,
}

/// `[python]`: the pip requirements every server installs beside itself, the wheels to install
/// them from, and the Python packages the services import; the whole set (a section with none
/// of them removes them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PythonSpec {
    /// A pip requirements file, relative to the cluster file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) requirements: Option<PathBuf>,
    /// A directory of wheels (`*.whl`) to install them from, for hosts without a package index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) wheelhouse: Option<PathBuf>,
    /// Directories of Python packages (each with an `__init__.py`), relative to the cluster
    /// file's directory, installed onto every server's import path with the requirements.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) packages: Vec<PathBuf>,
}

/// `[config]`: enmasse files and the env file with their placeholders' values.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConfigSpec {
    /// Enmasse files (NAME.yaml), relative to the cluster file's directory; the whole set.
    pub(super) files: Vec<PathBuf>,
    /// An INI file whose `[env]` section gives each `{Zato_Enmasse_Env.NAME}` its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) env_file: Option<PathBuf>,
}

/// `[services]`: the Python modules every server of the cluster runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServicesSpec {
    /// Modules (NAME.py) and directories of them, relative to the cluster file's directory; the
    /// whole set (an empty list: no services of Muster's).
    pub(super) paths: Vec<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClusterSpec {
    pub(super) name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(super) description: String,
    pub(super) odb: OdbSpec,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct OdbSpec {
    /// sqlite, postgresql or mysql.
    #[serde(rename = "type")]
    pub(super) odb_type: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(super) host: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) port: Option<u16>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(super) user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(super) db_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(super) postgresql_schema: String,
    /// A file holding the ODB password, read when the cluster is created (relative paths from the
    /// cluster file's directory). The password is never written back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) password_file: Option<PathBuf>,
}

/// One component, or with a selector as many as `count`, of a role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ComponentSpec {
    /// The host, by its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) host: Option<String>,
    /// Or enrolled hosts whose labels hold all of these, `count` of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) selector: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) port: Option<u16>,
    /// Load balancers only, as `create load-balancer` takes them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) haproxy_bin: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) frontend_address: Option<String>,
    /// A duration: "2s", "500ms".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) check_inter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) check_rise: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) check_fall: Option<u32>,
    /// Durations: "1s", "500ms".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) connect_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) server_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) retries: Option<u32>,
}

pub(super) fn invalid(path: &Path, message: impl std::fmt::Display) -> CliError {
    CliError::Usage(format!("{}: {message}", path.display()))
}

/// The largest cluster file read.
pub(super) const MAX_CLUSTER_FILE: u64 = 1024 * 1024;

/// Reads and checks a cluster file: every key known, every name valid, every value in range. A
/// syntax error names its line and column, without the line itself (the path may lead anywhere).
pub(super) fn read_file(path: &Path) -> Result<ClusterFile, CliError> {
    let text = muster_proto::files::read_regular(path, MAX_CLUSTER_FILE)
        .map_err(|error| CliError::Usage(error_chain(&error)))?;
    let file: ClusterFile = toml::from_str(&text).map_err(|error| {
        let place = error
            .span()
            .map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |at| at + 1) + 1;
                format!("line {line}, column {column}: ")
            })
            .unwrap_or_default();
        invalid(path, format!("{place}{}", error.message()))
    })?;
    check_file(&file).map_err(|message| invalid(path, message))?;
    Ok(file)
}

/// Where a file named in the cluster file at `cluster_file` is: an absolute path as it is, a
/// relative one inside the cluster file's directory (after `..` and symbolic links), else refused.
pub(super) fn named_file(cluster_file: &Path, named: &Path) -> Result<PathBuf, CliError> {
    if named.is_absolute() {
        return Ok(named.to_owned());
    }
    let directory = cluster_file.parent().unwrap_or(Path::new("."));
    let directory = if directory.as_os_str().is_empty() {
        Path::new(".")
    } else {
        directory
    };
    let joined = directory.join(named);
    let resolved = (directory.canonicalize(), joined.canonicalize());
    match resolved {
        (Ok(inside), Ok(target)) if target.starts_with(&inside) => Ok(target),
        (Ok(inside), Ok(_)) => Err(invalid(
            cluster_file,
            format!(
                "{} leads outside {} (through `..` or a symbolic link): give an absolute path to \
                 name a file elsewhere",
                named.display(),
                inside.display()
            ),
        )),
        (Err(error), _) | (_, Err(error)) => Err(invalid(
            cluster_file,
            format!("cannot read {}: {error}", joined.display()),
        )),
    }
}

/// An error and its causes in one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

pub(super) fn check_file(file: &ClusterFile) -> Result<(), String> {
    validate::name("cluster name", &file.cluster.name).map_err(|error| error.to_string())?;
    validate::description("description", &file.cluster.description)
        .map_err(|error| error.to_string())?;
    file.cluster
        .odb
        .odb_type
        .parse::<OdbType>()
        .map_err(|error| format!("[cluster.odb] type: {error}"))?;
    for (role, spec) in specs(file) {
        let what = format!("a {role} entry");
        match (&spec.host, &spec.selector, spec.count) {
            (Some(host), None, None) => {
                validate::name("host name", host).map_err(|error| error.to_string())?;
            }
            (None, Some(selector), count) => {
                if selector.is_empty() {
                    return Err(format!("{what} has an empty selector"));
                }
                if count == Some(0) {
                    return Err(format!("{what} has count 0: leave the entry out instead"));
                }
                if count.unwrap_or(1) > 1 && (spec.name.is_some() || spec.port.is_some()) {
                    return Err(format!(
                        "{what} with count {} names a name or port: each of its components \
                         takes its own default",
                        count.unwrap_or(1)
                    ));
                }
                if role == Role::Scheduler && count.unwrap_or(1) > 1 {
                    return Err("a cluster runs at most one scheduler: its count must be 1".into());
                }
            }
            (Some(_), Some(_), _) => return Err(format!("{what} has both host and selector")),
            (Some(_), None, Some(_)) => {
                return Err(format!("{what} has a count without a selector"));
            }
            (None, None, _) => return Err(format!("{what} names no host and no selector")),
        }
        if let Some(name) = &spec.name {
            validate::name("component name", name).map_err(|error| error.to_string())?;
        }
        if role != Role::LoadBalancer {
            let balancer_only = [
                ("haproxy_bin", spec.haproxy_bin.is_some()),
                ("frontend_address", spec.frontend_address.is_some()),
                ("check_inter", spec.check_inter.is_some()),
                ("check_rise", spec.check_rise.is_some()),
                ("check_fall", spec.check_fall.is_some()),
                ("connect_timeout", spec.connect_timeout.is_some()),
                ("server_timeout", spec.server_timeout.is_some()),
                ("retries", spec.retries.is_some()),
            ];
            if let Some((key, _)) = balancer_only.iter().find(|(_, given)| *given) {
                return Err(format!("{what} has {key}, which only load balancers take"));
            }
        } else {
            balancer_settings(spec)?;
        }
    }
    Ok(())
}

/// Every entry of the file with its role.
pub(super) fn specs(file: &ClusterFile) -> Vec<(Role, &ComponentSpec)> {
    file.servers
        .iter()
        .map(|spec| (Role::Server, spec))
        .chain(file.scheduler.iter().map(|spec| (Role::Scheduler, spec)))
        .chain(file.web_admins.iter().map(|spec| (Role::WebAdmin, spec)))
        .chain(
            file.load_balancers
                .iter()
                .map(|spec| (Role::LoadBalancer, spec)),
        )
        .collect()
}

/// A load balancer entry's settings, unset ones zero (the coordinator's defaults).
pub(super) fn balancer_settings(spec: &ComponentSpec) -> Result<v1::LoadBalancerSettings, String> {
    let check_inter_ms = match &spec.check_inter {
        None => 0,
        Some(text) => humantime::parse_duration(text)
            .ok()
            .and_then(|inter| u32::try_from(inter.as_millis()).ok())
            .filter(|milliseconds| *milliseconds > 0)
            .ok_or_else(|| format!("invalid check_inter {text:?}: must be from 100ms to 1h"))?,
    };
    let duration = |key: &str, text: &Option<String>, range: &str| -> Result<u32, String> {
        let parsed = text
            .as_deref()
            .map(|text| {
                humantime::parse_duration(text)
                    .map_err(|_| format!("invalid {key} {text:?}: must be from {range}"))
            })
            .transpose()?;
        milliseconds(key, parsed, range)
    };
    given_settings(
        v1::LoadBalancerSettings {
            haproxy_bin: spec.haproxy_bin.clone().unwrap_or_default(),
            frontend_address: spec.frontend_address.clone().unwrap_or_default(),
            check_inter_ms,
            check_rise: spec.check_rise.unwrap_or(0),
            check_fall: spec.check_fall.unwrap_or(0),
            connect_timeout_ms: duration("connect_timeout", &spec.connect_timeout, "100ms to 60s")?,
            server_timeout_ms: duration("server_timeout", &spec.server_timeout, "1s to 1h")?,
            retries: spec.retries.unwrap_or(0),
        },
        [spec.check_rise, spec.check_fall, spec.retries],
        str::to_owned,
    )
}

/// A cluster and its components as a file, every component by host and name.
pub(super) fn file_of(cluster: &v1::Cluster, components: &[ComponentView]) -> ClusterFile {
    let odb = cluster.odb.clone().unwrap_or_default();
    let spec = |component: &ComponentView| ComponentSpec {
        host: Some(component.host.clone()),
        name: Some(component.name.clone()),
        port: u16::try_from(component.port).ok(),
        haproxy_bin: component
            .load_balancer
            .as_ref()
            .map(|settings| settings.haproxy_bin.clone()),
        frontend_address: component
            .load_balancer
            .as_ref()
            .map(|settings| settings.frontend_address.clone()),
        check_inter: component
            .load_balancer
            .as_ref()
            .map(|settings| format!("{}ms", settings.check_inter_ms)),
        check_rise: component
            .load_balancer
            .as_ref()
            .map(|settings| settings.check_rise),
        check_fall: component
            .load_balancer
            .as_ref()
            .map(|settings| settings.check_fall),
        connect_timeout: component
            .load_balancer
            .as_ref()
            .map(|settings| format!("{}ms", settings.connect_timeout_ms)),
        server_timeout: component
            .load_balancer
            .as_ref()
            .map(|settings| format!("{}ms", settings.server_timeout_ms)),
        retries: component
            .load_balancer
            .as_ref()
            .map(|settings| settings.retries),
        ..ComponentSpec::default()
    };
    let of_role = |role: Role| -> Vec<ComponentSpec> {
        components
            .iter()
            .filter(|component| component.role == role.cli_name())
            .map(spec)
            .collect()
    };
    ClusterFile {
        cluster: ClusterSpec {
            name: cluster.name.clone(),
            description: cluster.description.clone(),
            odb: OdbSpec {
                odb_type: OdbType::try_from(odb.odb_type)
                    .unwrap_or_default()
                    .zato_name()
                    .to_owned(),
                host: odb.host,
                port: u16::try_from(odb.port).ok().filter(|port| *port != 0),
                user: odb.user,
                db_name: odb.db_name,
                postgresql_schema: odb.postgresql_schema,
                password_file: None,
            },
        },
        servers: of_role(Role::Server),
        scheduler: of_role(Role::Scheduler).into_iter().next(),
        web_admins: of_role(Role::WebAdmin),
        load_balancers: of_role(Role::LoadBalancer),
        services: None,
        config: None,
        python: None,
        user_conf: None,
        rollout: cluster
            .rollout_strategy
            .map(muster_proto::rollout::Strategy::from)
            .filter(|strategy| *strategy != muster_proto::rollout::Strategy::default())
            .map(|strategy| RolloutSpec {
                max_unavailable: Some(strategy.max_unavailable),
                healthy_deadline: Some(muster_proto::rollout::humanize(
                    strategy.healthy_deadline_seconds,
                )),
                min_healthy_time: Some(muster_proto::rollout::humanize(
                    strategy.min_healthy_time_seconds,
                )),
                auto_revert: Some(strategy.auto_revert),
            }),
        server_settings: settings_spec(&cluster.server_settings),
        scheduler_settings: settings_spec(&cluster.scheduler_settings),
        web_admin_settings: settings_spec(&cluster.web_admin_settings),
    }
}

/// The requirements and wheels `[python]` names, read and checked before anything changes.
pub(super) fn python_of(
    cluster_file: &Path,
    spec: &PythonSpec,
) -> Result<(String, Vec<v1::PythonWheel>), CliError> {
    let requirements = spec
        .requirements
        .as_ref()
        .map(|path| named_file(cluster_file, path))
        .transpose()?;
    let wheelhouse = spec
        .wheelhouse
        .as_ref()
        .map(|path| named_file(cluster_file, path))
        .transpose()?;
    let packages = spec
        .packages
        .iter()
        .map(|path| named_file(cluster_file, path))
        .collect::<Result<Vec<_>, _>>()?;
    read_python(
        requirements.as_deref(),
        wheelhouse.as_deref(),
        &packages,
        &format!("{} [python]", cluster_file.display()),
    )
}

/// The enmasse files and env values `[config]` names, read and checked (every placeholder with a
/// value) before anything changes.
pub(super) fn config_of(
    cluster_file: &Path,
    spec: &ConfigSpec,
) -> Result<(Vec<v1::EnmasseFile>, BTreeMap<String, String>), CliError> {
    let files = spec
        .files
        .iter()
        .map(|path| named_file(cluster_file, path))
        .collect::<Result<Vec<_>, _>>()?;
    let env_file = spec
        .env_file
        .as_ref()
        .map(|path| named_file(cluster_file, path))
        .transpose()?;
    read_config(
        &files,
        env_file.as_deref(),
        &format!("{} [config]", cluster_file.display()),
    )
}

/// The files `[user_conf]` names, read and checked before anything changes.
pub(super) fn user_conf_of(
    cluster_file: &Path,
    spec: &UserConfSpec,
) -> Result<Vec<v1::UserConfFile>, CliError> {
    let files = spec
        .files
        .iter()
        .map(|path| named_file(cluster_file, path))
        .collect::<Result<Vec<_>, _>>()?;
    read_user_conf(&files, &format!("{} [user_conf]", cluster_file.display()))
}

/// The modules `[services]` names, read and checked (paths relative to the cluster file's
/// directory, confined to it as every file it names).
pub(super) fn services_of(
    cluster_file: &Path,
    spec: &ServicesSpec,
) -> Result<Vec<v1::ServiceFile>, CliError> {
    let paths = spec
        .paths
        .iter()
        .map(|path| named_file(cluster_file, path))
        .collect::<Result<Vec<_>, _>>()?;
    read_modules(&paths, &format!("{} [services]", cluster_file.display()))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::cli) const FILE: &str = r#"
[cluster]
name = "prod"
[cluster.odb]
type = "postgresql"
host = "db"
user = "zato"
db_name = "zato"

[[servers]]
selector = { tier = "app" }
count = 2

[scheduler]
host = "admin"

[[load_balancers]]
host = "lb"
check_inter = "5s"
"#;

    #[test]
    fn a_file_is_read_and_a_bad_one_is_refused_with_what_is_wrong() {
        let file: ClusterFile = toml::from_str(FILE).unwrap();
        check_file(&file).unwrap();
        let unknown = toml::from_str::<ClusterFile>(&FILE.replace("count = 2", "cuont = 2"));
        assert!(
            unknown
                .unwrap_err()
                .to_string()
                .contains("unknown field `cuont`")
        );
        for (from, to, says) in [
            ("host = \"admin\"", "host = \"ad min\"", "host name"),
            ("count = 2", "count = 0", "count 0"),
            (
                "check_inter = \"5s\"",
                "check_inter = \"soon\"",
                "invalid check_inter",
            ),
            (
                "[scheduler]\nhost = \"admin\"",
                "[scheduler]\nhost = \"admin\"\ncheck_rise = 3",
                "only load balancers",
            ),
            (
                "type = \"postgresql\"",
                "type = \"oracle\"",
                "unknown ODB type",
            ),
        ] {
            let file: ClusterFile = toml::from_str(&FILE.replace(from, to)).unwrap();
            let error = check_file(&file).unwrap_err();
            assert!(error.contains(says), "{error}");
        }
    }

    #[test]
    fn the_example_in_packaging_is_a_valid_cluster_file() {
        let example: ClusterFile =
            toml::from_str(include_str!("../../../../packaging/examples/cluster.toml")).unwrap();
        check_file(&example).unwrap();
        assert_eq!(example.servers.len(), 2);
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/examples/cluster.toml");
        let services = services_of(&file, example.services.as_ref().unwrap()).unwrap();
        assert_eq!(services.len(), 1);
        assert_eq!(services[0].name, "orders.py");
        // The env file is the operator's (out of version control); the example's template
        // gives every placeholder a value.
        let config = example.config.as_ref().unwrap();
        let example_env = ConfigSpec {
            env_file: Some("config/env.ini.example".into()),
            ..config.clone()
        };
        let (files, env) = config_of(&file, &example_env).unwrap();
        assert_eq!(files[0].name, "api.yaml");
        assert!(env.contains_key("ORDERS_PASSWORD"));
        let settings =
            settings_of(Role::Server, example.server_settings.as_ref().unwrap()).unwrap();
        assert_eq!(settings["main.gunicorn_workers"], "2");
        let (requirements, wheels) = python_of(&file, example.python.as_ref().unwrap()).unwrap();
        assert!(requirements.contains("inflection==0.5.1"), "{requirements}");
        assert_eq!(wheels[0].name, "inflection-0.5.1-py2.py3-none-any.whl");
        assert!(
            wheels[1].package && wheels[1].name.starts_with("pricing-0+muster."),
            "{}",
            wheels[1].name
        );
        // The user-config file is the operator's too; the example's template parses.
        let user_conf = example.user_conf.as_ref().unwrap();
        assert_eq!(user_conf.files, [PathBuf::from("user-conf/partners.ini")]);
        let template =
            std::fs::read_to_string(file.with_file_name("user-conf/partners.ini.example")).unwrap();
        muster_proto::user_conf::checked(&[v1::UserConfFile {
            name: "partners.ini".to_owned(),
            content: template,
        }])
        .unwrap();
    }

    #[test]
    fn a_cluster_written_back_reads_as_the_same_cluster() {
        let cluster = v1::Cluster {
            name: "prod".to_owned(),
            odb: Some(v1::OdbSettings {
                odb_type: OdbType::Postgresql as i32,
                host: "db".to_owned(),
                port: 5432,
                user: "zato".to_owned(),
                db_name: "zato".to_owned(),
                postgresql_schema: String::new(),
            }),
            ..Default::default()
        };
        let file = file_of(&cluster, &[]);
        let text = toml::to_string(&file).unwrap();
        let read: ClusterFile = toml::from_str(&text).unwrap();
        check_file(&read).unwrap();
        assert_eq!(read, file);
    }

    #[test]
    fn the_rollout_section_sets_the_whole_strategy_and_is_written_back_unless_default() {
        let file: ClusterFile = toml::from_str(&format!(
            "{FILE}\n[rollout]\nhealthy_deadline = \"2m\"\nauto_revert = true\n"
        ))
        .unwrap();
        let strategy = rollout_of(file.rollout.as_ref().unwrap()).unwrap();
        assert_eq!(
            (strategy.healthy_deadline_seconds, strategy.auto_revert),
            (120, true)
        );
        let alone: ClusterFile =
            toml::from_str(&format!("{FILE}\n[rollout]\nauto_revert = true\n")).unwrap();
        assert_eq!(
            rollout_of(alone.rollout.as_ref().unwrap())
                .unwrap()
                .healthy_deadline_seconds,
            muster_proto::rollout::DEFAULT_HEALTHY_DEADLINE_SECONDS,
            "a key left out is the default"
        );
        for (text, named) in [
            ("healthy_deadline = \"5s\"", "5s"),
            ("healthy_deadline = \"soon\"", "soon"),
        ] {
            let refused: ClusterFile =
                toml::from_str(&format!("{FILE}\n[rollout]\n{text}\n")).unwrap();
            let error = rollout_of(refused.rollout.as_ref().unwrap()).unwrap_err();
            assert!(
                error.contains("healthy_deadline") && error.contains(named),
                "{error}"
            );
        }
        assert!(
            toml::from_str::<ClusterFile>(&format!("{FILE}\n[rollout]\nmax_parallel = 2\n"))
                .is_err(),
            "an unknown key is refused"
        );
        let mut cluster = v1::Cluster {
            name: "prod".to_owned(),
            rollout_strategy: Some(v1::RolloutStrategy {
                healthy_deadline_seconds: 120,
                min_healthy_time_seconds: 0,
                auto_revert: true,
                max_unavailable: 2,
            }),
            ..Default::default()
        };
        let written = toml::to_string(&file_of(&cluster, &[])).unwrap();
        assert!(
            written.contains(
                "[rollout]\nmax_unavailable = 2\nhealthy_deadline = \"2m\"\nmin_healthy_time = \"0s\"\nauto_revert = true\n"
            ),
            "{written}"
        );
        cluster.rollout_strategy = Some(v1::RolloutStrategy {
            healthy_deadline_seconds: 300,
            min_healthy_time_seconds: 0,
            auto_revert: false,
            max_unavailable: 1,
        });
        assert!(
            !toml::to_string(&file_of(&cluster, &[]))
                .unwrap()
                .contains("[rollout]"),
            "the defaults are not written"
        );
    }

    #[test]
    fn server_settings_read_by_section_as_numbers_booleans_or_strings_and_written_back() {
        let text = format!(
            "{FILE}\n[server_settings]\nstats.expire_after = 24\n\n[server_settings.main]\n\
             gunicorn_workers = 2\n\n[server_settings.misc]\nreturn_tracebacks = false\n\n\
             [server_settings.env]\nAPP_MODE = \"blue green\"\n\n[server_settings.logging]\n\
             zato = \"debug\"\n\"gunicorn.main\" = \"WARN\"\n\n[server_settings.zato]\n\
             install = \"next\"\n"
        );
        let file: ClusterFile = toml::from_str(&text).unwrap();
        let settings = settings_of(Role::Server, file.server_settings.as_ref().unwrap()).unwrap();
        let expected: BTreeMap<String, String> = [
            ("stats.expire_after", "24"),
            ("main.gunicorn_workers", "2"),
            ("misc.return_tracebacks", "False"),
            ("env.APP_MODE", "blue green"),
            ("logging.zato", "DEBUG"),
            ("logging.gunicorn.main", "WARNING"),
            ("zato.install", "next"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        assert_eq!(settings, expected);

        // Written back (`muster get`), read as the same settings.
        let cluster = v1::Cluster {
            name: "prod".to_owned(),
            server_settings: expected.clone().into_iter().collect(),
            ..Default::default()
        };
        let written = toml::to_string(&file_of(&cluster, &[])).unwrap();
        let read: ClusterFile = toml::from_str(&written).unwrap();
        assert_eq!(
            settings_of(Role::Server, read.server_settings.as_ref().unwrap()).unwrap(),
            expected
        );

        for (bad, named) in [
            (
                "[server_settings.main]\ngunicorn_bind = \"0.0.0.0:1\"\n",
                "main.gunicorn_bind",
            ),
            ("[server_settings.main]\ngunicorn_workers = 0\n", "\"0\""),
            ("[server_settings.env]\nA = \"x # y\"\n", "x # y"),
        ] {
            let file: ClusterFile = toml::from_str(&format!("{FILE}\n{bad}")).unwrap();
            let refused =
                settings_of(Role::Server, file.server_settings.as_ref().unwrap()).unwrap_err();
            assert!(refused.contains(named), "{refused} names {named}");
        }
    }
}
