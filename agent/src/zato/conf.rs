//! The files Zato writes that the agent changes afterwards, each rewritten atomically with its mode
//! kept: `server.conf` and `scheduler.conf` (INI, `key=value` without spaces, as Zato writes them)
//! and `web-admin.conf` (JSON); and the absolute symlink `config/repo/user-conf` that `zato create
//! server` points into the directory it was given, which the agent renames.

use std::path::Path;

use muster_proto::{v1, validate};

use crate::files;

/// Zato's first IPC port of a server (`[main] ipc_port_start`); each of its worker processes binds
/// the next one.
pub const IPC_PORT_START: u16 = 17050;
/// IPC ports kept for each server on a host: a server may run up to this many worker processes
/// (the most `main.gunicorn_workers` may be).
pub const IPC_PORTS_PER_SERVER: u16 = muster_proto::server_settings::MAX_WORKERS as u16;

/// The error of one file operation, with the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    File(#[from] files::FileError),
    #[error("{path}: not the JSON Zato writes: {source}")]
    Json {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ConfError + '_ {
    move |source| ConfError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Sets `key=value` in `[section]` of an INI text, adding the key (or the section) if missing.
pub fn set_ini(text: &str, section: &str, key: &str, value: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let header = format!("[{section}]");
    let Some(start) = lines.iter().position(|line| line.trim() == header) else {
        lines.push(String::new());
        lines.push(header);
        lines.push(format!("{key}={value}"));
        return lines.join("\n") + "\n";
    };
    let end = lines[start + 1..]
        .iter()
        .position(|line| line.trim_start().starts_with('['))
        .map_or(lines.len(), |offset| start + 1 + offset);
    let existing = (start + 1..end).find(|&index| {
        lines[index]
            .split_once('=')
            .is_some_and(|(name, _)| name.trim() == key)
    });
    match existing {
        Some(index) => lines[index] = format!("{key}={value}"),
        None => {
            let insert_at = (start + 1..end)
                .rev()
                .find(|&index| !lines[index].trim().is_empty())
                .map_or(start + 1, |index| index + 1);
            lines.insert(insert_at, format!("{key}={value}"));
        }
    }
    lines.join("\n") + "\n"
}

pub fn get_ini(text: &str, section: &str, key: &str) -> Option<String> {
    let mut in_section = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_section = line == format!("[{section}]");
        } else if in_section
            && let Some((name, value)) = line.split_once('=')
            && name.trim() == key
        {
            return Some(value.trim().to_owned());
        }
    }
    None
}

/// Replaces the body of `[section]` with exactly `entries` (`key=value`, in order of key), adding
/// the section if missing.
pub fn replace_section(
    text: &str,
    section: &str,
    entries: &std::collections::BTreeMap<String, String>,
) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let header = format!("[{section}]");
    let body: Vec<String> = entries
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    match lines.iter().position(|line| line.trim() == header) {
        Some(start) => {
            let end = lines[start + 1..]
                .iter()
                .position(|line| line.trim_start().starts_with('['))
                .map_or(lines.len(), |offset| start + 1 + offset);
            let mut replaced = body;
            replaced.push(String::new());
            lines.splice(start + 1..end, replaced);
        }
        None => {
            lines.push(String::new());
            lines.push(header);
            lines.extend(body);
        }
    }
    lines.join("\n") + "\n"
}

/// Writes a cluster's server settings into a server's `server.conf`
/// ([`muster_proto::server_settings::server_conf`]: every listed key, and `[os_environ]` as
/// exactly the variables); says whether the file changed.
pub fn apply_server_settings(
    path: &Path,
    settings: &std::collections::BTreeMap<String, String>,
) -> Result<bool, ConfError> {
    let muster_proto::server_settings::ServerConf { keys, environment } =
        muster_proto::server_settings::server_conf(settings);
    let text = std::fs::read_to_string(path).map_err(io_error(path))?;
    let mut updated = text.clone();
    for (section, key, value) in &keys {
        if get_ini(&updated, section, key).as_deref() != Some(value.as_str()) {
            updated = set_ini(&updated, section, key, value);
        }
    }
    updated = replace_section(
        &updated,
        muster_proto::server_settings::ENV_SECTION,
        &environment,
    );
    if updated == text {
        return Ok(false);
    }
    write_keeping_mode(path, updated.as_bytes())?;
    Ok(true)
}

/// Sets the levels of the loggers Muster sets of a component of `role`
/// ([`muster_proto::server_settings::loggers`]) in its `logging.conf` (the YAML Zato writes,
/// read at start) to the cluster's `settings`, an unset one to Zato's default; says whether the
/// file changed. Without the file, fine as long as no level is set (Zato's defaults are what it
/// would hold).
pub fn apply_logging_levels(
    path: &Path,
    role: v1::Role,
    settings: &std::collections::BTreeMap<String, String>,
) -> Result<bool, ConfError> {
    let levels = muster_proto::server_settings::logging_levels(role, settings);
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error)
            if error.kind() == std::io::ErrorKind::NotFound
                && !settings.keys().any(|name| {
                    name.starts_with(muster_proto::server_settings::LOGGING_PREFIX)
                }) =>
        {
            return Ok(false);
        }
        Err(error) => return Err(io_error(path)(error)),
    };
    let updated = with_logging_levels(&text, &levels);
    if updated == text {
        return Ok(false);
    }
    write_keeping_mode(path, updated.as_bytes())?;
    Ok(true)
}

/// `logging.conf`'s text with the `level:` of each logger of `levels` (by its key under
/// `loggers:`, as the file writes it: `zato`, `''`, `'gunicorn.main'`) replaced; the rest as it is.
fn with_logging_levels(text: &str, levels: &[(&str, String)]) -> String {
    let mut in_loggers = false;
    let mut current: Option<&str> = None;
    let mut lines: Vec<String> = Vec::new();
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        if indent == 0 && !line.trim().is_empty() {
            in_loggers = line.trim_end() == "loggers:";
            current = None;
        } else if in_loggers && indent == 4 {
            current = line.trim().strip_suffix(':');
        } else if in_loggers
            && indent == 8
            && line.trim_start().starts_with("level:")
            && let Some((_, level)) = levels.iter().find(|(key, _)| Some(*key) == current)
        {
            lines.push(format!("        level: {level}"));
            continue;
        }
        lines.push(line.to_owned());
    }
    let mut updated = lines.join("\n");
    if text.ends_with('\n') {
        updated.push('\n');
    }
    updated
}

/// Sets every `(section, key, value)` of `settings` in the INI file at `path`; says whether the
/// file changed.
pub fn edit_ini(path: &Path, settings: &[(&str, &str, String)]) -> Result<bool, ConfError> {
    let text = std::fs::read_to_string(path).map_err(io_error(path))?;
    let mut updated = text.clone();
    for (section, key, value) in settings {
        if get_ini(&updated, section, key).as_deref() != Some(value.as_str()) {
            updated = set_ini(&updated, section, key, value);
        }
    }
    if updated == text {
        return Ok(false);
    }
    write_keeping_mode(path, updated.as_bytes())?;
    Ok(true)
}

/// Rewrites a config file keeping its owner, and its mode without any bit for group and others
/// (Zato's config files hold the cluster's secrets).
pub(crate) fn write_keeping_mode(path: &Path, contents: &[u8]) -> Result<(), ConfError> {
    let metadata = std::fs::metadata(path).map_err(io_error(path))?;
    let mode = std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o700;
    files::write_atomic(path, contents, mode)?;
    let owner = std::os::unix::fs::MetadataExt::uid(&metadata);
    let group = std::os::unix::fs::MetadataExt::gid(&metadata);
    std::os::unix::fs::chown(path, Some(owner), Some(group)).map_err(io_error(path))
}

/// Takes every bit for group and others off the regular files of the component's `config/repo`
/// (Zato writes them 0644: `server.conf`, `secrets.conf`, `scheduler.conf`, `web-admin.conf` and
/// the private keys hold the cluster's secrets) and of a server's user-config directory (the
/// users' credentials; Zato creates a file it is sent 0644); returns the files it had to close.
/// The component runs as their owner, who keeps read and write.
pub fn close_config_files(directory: &Path) -> Result<Vec<std::path::PathBuf>, ConfError> {
    let mut closed = close_files_in(&directory.join("config/repo"))?;
    let user_conf = directory.join(USER_CONF_DIR);
    if user_conf.is_dir() {
        closed.extend(close_files_in(&user_conf)?);
    }
    Ok(closed)
}

/// Where a Zato 3.2 server reads its user-config files at start (`pickup.conf`'s `[user_conf]`
/// `pickup_from`, relative to the server's directory).
pub const USER_CONF_DIR: &str = "pickup/incoming/user-conf";

fn close_files_in(repo: &Path) -> Result<Vec<std::path::PathBuf>, ConfError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mut closed = Vec::new();
    for entry in std::fs::read_dir(repo).map_err(io_error(repo))? {
        let path = entry.map_err(io_error(repo))?.path();
        let metadata = std::fs::symlink_metadata(&path).map_err(io_error(&path))?;
        let mode = metadata.permissions().mode() & 0o777;
        if !metadata.file_type().is_file() || mode & 0o077 == 0 {
            continue;
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode & 0o700))
            .map_err(io_error(&path))?;
        closed.push(path);
    }
    Ok(closed)
}

/// `web-admin.conf`'s `TIME_ZONE`: the cluster's setting, or what `zato create web-admin` writes
/// ([`muster_proto::server_settings::TIME_ZONE`]); says whether it changed.
pub fn set_web_admin_time_zone(directory: &Path, time_zone: &str) -> Result<bool, ConfError> {
    edit_web_admin_conf(directory, |conf| {
        if conf["TIME_ZONE"].as_str() == Some(time_zone) {
            return false;
        }
        conf["TIME_ZONE"] = time_zone.into();
        true
    })
}

/// Changes `web-admin.conf` (JSON) with `change`, which says whether it changed anything;
/// rewritten only then. Says whether it was.
fn edit_web_admin_conf(
    directory: &Path,
    change: impl FnOnce(&mut serde_json::Value) -> bool,
) -> Result<bool, ConfError> {
    let path = directory.join("config/repo/web-admin.conf");
    let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
    let mut conf: serde_json::Value =
        serde_json::from_str(&text).map_err(|source| ConfError::Json {
            path: path.display().to_string(),
            source,
        })?;
    if !change(&mut conf) {
        return Ok(false);
    }
    write_keeping_mode(&path, format!("{conf:#}\n").as_bytes())?;
    Ok(true)
}

/// `web-admin.conf`'s `host` and `port`; says whether they changed.
pub fn set_web_admin_bind(directory: &Path, host: &str, port: u32) -> Result<bool, ConfError> {
    edit_web_admin_conf(directory, |conf| {
        if conf["port"].as_u64() == Some(u64::from(port)) && conf["host"].as_str() == Some(host) {
            return false;
        }
        conf["host"] = host.into();
        conf["port"] = port.into();
        true
    })
}

/// Points every symlink under `directory/config/repo` that leads into `old` (the directory the
/// component was created in) at the same place under `directory`, so that renaming a component
/// leaves none dangling.
pub fn repoint_symlinks(directory: &Path, old: &Path) -> Result<(), ConfError> {
    let repo = directory.join("config/repo");
    let entries = std::fs::read_dir(&repo).map_err(io_error(&repo))?;
    for entry in entries {
        let entry = entry.map_err(io_error(&repo))?;
        let link = entry.path();
        let Ok(target) = std::fs::read_link(&link) else {
            continue;
        };
        let Ok(inside) = target.strip_prefix(old) else {
            continue;
        };
        let temporary = link.with_extension("muster-new");
        let _ = std::fs::remove_file(&temporary);
        std::os::unix::fs::symlink(directory.join(inside), &temporary)
            .map_err(io_error(&temporary))?;
        if let Ok(metadata) = std::fs::symlink_metadata(&link) {
            let _ = std::os::unix::fs::lchown(
                &temporary,
                Some(std::os::unix::fs::MetadataExt::uid(&metadata)),
                Some(std::os::unix::fs::MetadataExt::gid(&metadata)),
            );
        }
        std::fs::rename(&temporary, &link).map_err(io_error(&link))?;
    }
    Ok(())
}

/// A peer as the config files take it: its host, port and TLS, or `None` when the host is not an
/// IP address or DNS name, or the port is 0 or out of range (nothing of it reaches a file then).
pub fn peer(endpoint: &v1::Endpoint) -> Option<Peer> {
    validate::host("peer address", &endpoint.host).ok()?;
    let port = u16::try_from(endpoint.port).ok().filter(|port| *port > 0)?;
    Some(Peer {
        host: endpoint.host.clone(),
        port,
        tls: endpoint.tls,
    })
}

/// A checked peer endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl Peer {
    /// As Zato's `--scheduler-address-for-server` and `--server-address-for-scheduler` take it.
    pub fn zato_address(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}:{}", self.host, self.port)
    }
}

pub fn python_bool(value: bool) -> &'static str {
    if value { "True" } else { "False" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_settings_set_listed_keys_and_own_the_environment_section() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("server.conf");
        let zato = "[main]\ngunicorn_bind=0.0.0.0:17010\ngunicorn_workers=1\n\n[stats]\nexpire_after=168 # In hours\n\n[os_environ]\nsample_key=sample_value\n\n[command_set_scheduler]\n";
        std::fs::write(&path, zato).unwrap();
        let settings = std::collections::BTreeMap::from([
            ("main.gunicorn_workers".to_owned(), "2".to_owned()),
            ("env.APP_MODE".to_owned(), "blue".to_owned()),
        ]);
        assert!(apply_server_settings(&path, &settings).unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            get_ini(&text, "main", "gunicorn_workers").as_deref(),
            Some("2")
        );
        assert_eq!(
            get_ini(&text, "os_environ", "APP_MODE").as_deref(),
            Some("blue")
        );
        assert_eq!(get_ini(&text, "os_environ", "sample_key"), None);
        assert_eq!(
            get_ini(&text, "main", "gunicorn_bind").as_deref(),
            Some("0.0.0.0:17010")
        );
        assert!(text.contains("[command_set_scheduler]"));
        assert!(
            !apply_server_settings(&path, &settings).unwrap(),
            "applied again, nothing changes"
        );
        // Unset: Zato's default again, and no variable.
        assert!(apply_server_settings(&path, &Default::default()).unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            get_ini(&text, "main", "gunicorn_workers").as_deref(),
            Some("1")
        );
        assert_eq!(get_ini(&text, "os_environ", "APP_MODE"), None);
        assert!(
            text.contains("[os_environ]\n\n[command_set_scheduler]"),
            "{text}"
        );
    }

    #[test]
    fn ini_values_are_replaced_or_added_in_their_section() {
        let text = "[main]\ngunicorn_bind=0.0.0.0:17010\n\n[scheduler]\nscheduler_host=a\nscheduler_port=31530\n";
        let updated = set_ini(text, "scheduler", "scheduler_host", "10.0.0.5");
        assert_eq!(
            get_ini(&updated, "scheduler", "scheduler_host").as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(
            get_ini(&updated, "main", "gunicorn_bind").as_deref(),
            Some("0.0.0.0:17010")
        );
        let added = set_ini(&updated, "scheduler", "scheduler_use_tls", "False");
        assert!(
            added.contains("scheduler_port=31530\nscheduler_use_tls=False\n"),
            "{added}"
        );
        let new_section = set_ini(text, "odb", "engine", "sqlite");
        assert_eq!(
            get_ini(&new_section, "odb", "engine").as_deref(),
            Some("sqlite")
        );
    }

    #[test]
    fn a_peer_reaches_files_and_zato_only_when_it_is_valid() {
        let endpoint = |host: &str, port: u32, tls: bool| v1::Endpoint {
            host: host.into(),
            port,
            tls,
        };
        let scheduler = peer(&endpoint("10.0.0.5", 31530, false)).unwrap();
        assert_eq!(scheduler.zato_address(), "http://10.0.0.5:31530");
        assert_eq!(
            peer(&endpoint("sched.internal", 31530, true))
                .unwrap()
                .zato_address(),
            "https://sched.internal:31530"
        );
        for bad in [
            endpoint("bad host", 1, false),
            endpoint("a\nb", 1, false),
            endpoint("10.0.0.5", 0, false),
            endpoint("10.0.0.5", 70_000, false),
        ] {
            assert_eq!(peer(&bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_renamed_component_keeps_its_symlinks_working() {
        let scratch = tempfile::tempdir().unwrap();
        let old = scratch.path().join(".creating-server-server1");
        let new = scratch.path().join("server-server1");
        std::fs::create_dir_all(old.join("config/repo")).unwrap();
        std::fs::create_dir_all(old.join("pickup/incoming/user-conf")).unwrap();
        std::os::unix::fs::symlink(
            old.join("pickup/incoming/user-conf"),
            old.join("config/repo/user-conf"),
        )
        .unwrap();
        std::fs::rename(&old, &new).unwrap();
        assert!(!new.join("config/repo/user-conf").exists(), "dangles first");
        repoint_symlinks(&new, &old).unwrap();
        assert_eq!(
            std::fs::read_link(new.join("config/repo/user-conf")).unwrap(),
            new.join("pickup/incoming/user-conf")
        );
        assert!(new.join("config/repo/user-conf").is_dir());
    }

    #[test]
    fn logging_levels_set_the_listed_loggers_and_nothing_else() {
        // Zato 3.2's logging.conf (`zato.common.util.logging_`), abridged.
        let zato = "loggers:\n    '':\n        level: INFO\n        handlers: [stdout, default]\n    \
                    'gunicorn.main':\n        level: INFO\n        handlers: [stdout, default]\n    \
                    'pytds':\n        level: WARN\n        handlers: [stdout, default]\n    zato:\n        \
                    level: INFO\n        handlers: [stdout, default]\n        qualname: zato\n        \
                    propagate: false\nhandlers:\n    zato:\n        level: INFO\n        formatter: default\n";
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("logging.conf");
        std::fs::write(&path, zato).unwrap();
        let settings = std::collections::BTreeMap::from([
            ("logging.zato".to_owned(), "DEBUG".to_owned()),
            ("logging.gunicorn.main".to_owned(), "WARNING".to_owned()),
        ]);
        assert!(apply_logging_levels(&path, v1::Role::Server, &settings).unwrap());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            zato.replace(
                "    zato:\n        level: INFO\n        handlers",
                "    zato:\n        level: DEBUG\n        handlers"
            )
            .replace(
                "'gunicorn.main':\n        level: INFO",
                "'gunicorn.main':\n        level: WARNING"
            ),
            "the handler named zato keeps its level, pytds is not Muster's"
        );
        assert!(
            !apply_logging_levels(&path, v1::Role::Server, &settings).unwrap(),
            "unchanged"
        );
        assert!(apply_logging_levels(&path, v1::Role::Server, &Default::default()).unwrap());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            zato,
            "Zato's defaults again"
        );

        // No file: fine without levels, refused with one.
        let missing = directory.path().join("absent.conf");
        assert!(!apply_logging_levels(&missing, v1::Role::Server, &Default::default()).unwrap());
        assert!(apply_logging_levels(&missing, v1::Role::Server, &settings).is_err());
    }
}
