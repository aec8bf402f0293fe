//! A cluster's server settings: the `server.conf` keys Muster sets on every server of a cluster, from
//! an allowlist, and the environment variables of the servers' processes (`[os_environ]`, which a
//! Zato server puts into its environment before its workers start: `zato/server/main.py`).
//!
//! The coordinator refuses a key outside the list and a value outside its grammar before anything
//! is stored; the agent writes them into `server.conf` when a server starts (at its turn of the
//! rolling restart a change starts), a listed key not set as Zato's `zato create server` writes it,
//! and `[os_environ]` as exactly the variables set. Zato reads `server.conf` with ConfigObj: a `#`
//! starts a comment, a comma makes a list, `%` and `$` interpolate; no value here can hold any of
//! them.
//!
//! One setting is not a `server.conf` key: `zato.install`, the Zato installation that runs the
//! servers (a name an agent's `[zato_installs]` gives a `zato` command; unset: the agent's
//! `zato_bin`). The coordinator never sends a path.
//!
//! The scheduler and the dashboards have settings of the same kinds, each role its own
//! ([`check`] with the role): `zato.install`, `env.NAME` (put into the environment of the
//! `zato start` that starts them, which their process inherits: neither reads `[os_environ]`),
//! the levels of the loggers their `logging.conf` names and they log through, and the
//! dashboard's `web-admin.conf` key `TIME_ZONE`. A load balancer's are `muster configure
//! load-balancer`'s.

use std::collections::BTreeMap;

use crate::v1::Role;
use crate::validate::Invalid;

/// What a setting's value may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A whole number in this range.
    Number { min: u64, max: u64 },
    /// `True` or `False` (Python's spelling; `true`/`false` are accepted and written so).
    Bool,
    /// A word: letters, digits and `._-/`, at most 64.
    Word,
}

/// One `server.conf` key Muster may set.
#[derive(Debug, Clone, Copy)]
pub struct Setting {
    /// `section.key`, as the CLI and the cluster file name it.
    pub name: &'static str,
    pub kind: Kind,
    /// What `zato create server` writes (Zato 3.2's `create_server.py`): what an unset key is.
    pub default: &'static str,
}

/// The worker processes a server may run: each binds one IPC port, and the agent keeps this many
/// for each server of a host.
pub const MAX_WORKERS: u64 = 10;

/// The `server.conf` keys Muster sets.
pub const SERVER_SETTINGS: &[Setting] = &[
    Setting {
        name: "main.gunicorn_workers",
        kind: Kind::Number {
            min: 1,
            max: MAX_WORKERS,
        },
        default: "1",
    },
    Setting {
        name: "main.gunicorn_graceful_timeout",
        kind: Kind::Number { min: 1, max: 3600 },
        default: "1",
    },
    Setting {
        name: "main.gunicorn_timeout",
        kind: Kind::Number {
            min: 1,
            max: 1_234_567_890,
        },
        default: "1234567890",
    },
    Setting {
        name: "misc.return_tracebacks",
        kind: Kind::Bool,
        default: "True",
    },
    Setting {
        name: "misc.http_server_header",
        kind: Kind::Word,
        default: "Apache",
    },
    Setting {
        name: "stats.expire_after",
        kind: Kind::Number {
            min: 1,
            max: 87_600,
        },
        default: "168",
    },
];

/// The prefix of a logger's level among the settings: `logging.LOGGER`.
pub const LOGGING_PREFIX: &str = "logging.";

/// A logger of a server's `logging.conf` (the YAML Zato's `zato create server` writes, which the
/// server reads at start) whose level Muster sets: `logging.NAME`, its key in the file, and the
/// level Zato writes (what an unset one is).
#[derive(Debug, Clone, Copy)]
pub struct Logger {
    pub name: &'static str,
    pub key: &'static str,
    pub default: &'static str,
}

/// The root logger and `zato`, which every Zato component logs through (its modules' loggers,
/// `zato.*`, go to `zato`'s handlers).
const ROOT_LOGGER: Logger = Logger {
    name: "logging.root",
    key: "''",
    default: "INFO",
};
const ZATO_LOGGER: Logger = Logger {
    name: "logging.zato",
    key: "zato",
    default: "INFO",
};

/// The loggers of a server whose levels Muster sets (`zato.common.util.logging_`, Zato 3.2).
pub const LOGGERS: &[Logger] = &[
    ROOT_LOGGER,
    ZATO_LOGGER,
    Logger {
        name: "logging.zato_rest",
        key: "zato_rest",
        default: "INFO",
    },
    Logger {
        name: "logging.zato_access_log",
        key: "zato_access_log",
        default: "INFO",
    },
    Logger {
        name: "logging.zato_admin",
        key: "zato_admin",
        default: "INFO",
    },
    Logger {
        name: "logging.zato_pubsub",
        key: "zato_pubsub",
        default: "INFO",
    },
    Logger {
        name: "logging.gunicorn.main",
        key: "'gunicorn.main'",
        default: "INFO",
    },
];

/// The loggers of the scheduler whose levels Muster sets: its jobs' lines (``Executing `NAME` ``,
/// `zato.scheduler.backend`) are `zato`'s at DEBUG.
pub const SCHEDULER_LOGGERS: &[Logger] = &[
    ROOT_LOGGER,
    ZATO_LOGGER,
    Logger {
        name: "logging.zato_scheduler",
        key: "zato_scheduler",
        default: "INFO",
    },
];

/// The loggers of a dashboard whose levels Muster sets (Django's own go to the root logger).
pub const WEB_ADMIN_LOGGERS: &[Logger] = &[ROOT_LOGGER, ZATO_LOGGER];

/// The loggers of `role` whose levels Muster sets (none for a load balancer).
pub fn loggers(role: Role) -> &'static [Logger] {
    match role {
        Role::Server => LOGGERS,
        Role::Scheduler => SCHEDULER_LOGGERS,
        Role::WebAdmin => WEB_ADMIN_LOGGERS,
        Role::LoadBalancer | Role::Unspecified => &[],
    }
}

/// The `web-admin.conf` key Muster sets: the dashboard's time zone (Django's `TIME_ZONE`), an
/// IANA name (`Europe/Prague`, `UTC`; `zato create web-admin` writes `America/New_York`).
/// A name the dashboard's host does not know stops it at start.
pub const TIME_ZONE: Setting = Setting {
    name: "TIME_ZONE",
    kind: Kind::Word,
    default: "America/New_York",
};

/// Variables Zato 3.2's dashboard reads that Muster does not set, and why (`settings.py`).
pub const WEB_ADMIN_REFUSED_VARIABLES: &[(&str, &str)] = &[
    (
        "Zato_Dashboard_Session_Timeout",
        "Zato 3.2 reads it as text, and then every login fails (Django adds it to a number: \
         TypeError); a login lasts Zato's day",
    ),
    (
        "Zato_Dashboard_Debug_Enabled",
        "any value, even False, turns on Django's debug pages, which show tracebacks and \
         settings to whoever reaches the dashboard",
    ),
];

/// The levels a logger may have (Python's; `WARN` is written `WARNING`).
pub const LEVELS: &[&str] = &["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"];

/// Every listed logger's level a component of `role` starts with, as `(key in logging.conf,
/// level)`: its setting, or Zato's default.
pub fn logging_levels(
    role: Role,
    settings: &BTreeMap<String, String>,
) -> Vec<(&'static str, String)> {
    loggers(role)
        .iter()
        .map(|logger| {
            let level = settings
                .get(logger.name)
                .cloned()
                .unwrap_or_else(|| logger.default.to_owned());
            (logger.key, level)
        })
        .collect()
}

/// The setting that names the Zato installation the servers run (`zato start` with its `zato`
/// command); not written into `server.conf`.
pub const ZATO_INSTALL: &str = "zato.install";
/// The installation an agent's `zato_bin` is: what a server runs unless `zato.install` names
/// another.
pub const DEFAULT_INSTALL: &str = "default";

/// An installation's name (`zato.install`, a key of an agent's `[zato_installs]`): a letter or
/// digit, then letters, digits and `._-`, at most 64.
pub fn check_install_name(name: &str) -> Result<(), Invalid> {
    let mut characters = name.chars();
    let fits = name.len() <= 64
        && characters.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && characters.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if fits {
        Ok(())
    } else {
        Err(Invalid {
            field: ZATO_INSTALL,
            value: name.to_owned(),
            reason: "not a name of letters, digits and ._- that starts with a letter or digit (at most 64)",
        })
    }
}

/// The prefix of an environment variable's name among the settings: `env.NAME`.
pub const ENV_PREFIX: &str = "env.";
/// The `server.conf` section the variables go to.
pub const ENV_SECTION: &str = "os_environ";
/// The longest value a setting may have.
pub const VALUE_MAX: usize = 1024;
/// The most settings (keys and variables) a cluster may have.
pub const SETTINGS_MAX: usize = 64;

/// The listed setting of this name of `role`'s config file (a server's `server.conf`, a
/// dashboard's `web-admin.conf`; the scheduler has none).
pub fn setting(role: Role, name: &str) -> Option<&'static Setting> {
    let listed: &'static [Setting] = match role {
        Role::Server => SERVER_SETTINGS,
        Role::WebAdmin => std::slice::from_ref(&TIME_ZONE),
        Role::Scheduler | Role::LoadBalancer | Role::Unspecified => &[],
    };
    listed.iter().find(|setting| setting.name == name)
}

/// `role` has settings here (a server, the scheduler, a dashboard); a load balancer's are its
/// own (`muster configure load-balancer`).
fn refuse_role(role: Role) -> Result<(), Invalid> {
    match role {
        Role::Server | Role::Scheduler | Role::WebAdmin => Ok(()),
        Role::LoadBalancer | Role::Unspecified => Err(Invalid {
            field: "role",
            value: role.cli_name().to_owned(),
            reason: "has no such settings (a load balancer's are `muster configure load-balancer`)",
        }),
    }
}

/// Checks a setting's name alone (one to unset): a listed key of `role`, `env.NAME`, a listed
/// `logging.LOGGER`, or `zato.install`.
pub fn check_name(role: Role, name: &str) -> Result<(), Invalid> {
    refuse_role(role)?;
    if let Some(variable) = name.strip_prefix(ENV_PREFIX) {
        return check_variable_name(variable);
    }
    let known = name == ZATO_INSTALL
        || setting(role, name).is_some()
        || loggers(role).iter().any(|logger| logger.name == name);
    if known {
        Ok(())
    } else {
        Err(unknown_setting(role, name))
    }
}

/// Whether a variable changes what a program loads and runs: the dynamic linker's (`LD_*`),
/// Python's (`PYTHON*`), the shell's (`PATH`, `ENV`, `BASH_ENV`, `IFS`). The scheduler's and
/// dashboards' variables are the environment of the agent's own `zato start` (its interpreter,
/// the shell it starts the component with), so these are refused for them.
fn loads_programs(variable: &str) -> bool {
    variable.starts_with("LD_")
        || variable.starts_with("PYTHON")
        || matches!(variable, "PATH" | "ENV" | "BASH_ENV" | "IFS")
}

/// A variable `role`'s Zato must not get ([`WEB_ADMIN_REFUSED_VARIABLES`], and for the
/// scheduler and dashboards those that change what programs load).
fn refuse_variable(role: Role, variable: &str) -> Result<(), Invalid> {
    if matches!(role, Role::Scheduler | Role::WebAdmin) && loads_programs(variable) {
        return Err(Invalid {
            field: "environment variable",
            value: variable.to_owned(),
            reason: "changes what `zato start` and the interpreter it runs load (LD_*, PYTHON*, \
                     PATH, ENV, BASH_ENV, IFS): not a setting of the scheduler or a dashboard",
        });
    }
    let refused = match role {
        Role::WebAdmin => WEB_ADMIN_REFUSED_VARIABLES,
        _ => &[],
    };
    match refused.iter().find(|(name, _)| *name == variable) {
        Some((_, why)) => Err(Invalid {
            field: "environment variable",
            value: variable.to_owned(),
            reason: why,
        }),
        None => Ok(()),
    }
}

/// What a setting of `role` is called in a refusal.
fn setting_field(role: Role) -> &'static str {
    match role {
        Role::Scheduler => "scheduler setting",
        Role::WebAdmin => "web-admin setting",
        _ => "server setting",
    }
}

/// The refusal of a setting Muster does not set.
fn unknown_setting(role: Role, name: &str) -> Invalid {
    Invalid {
        field: setting_field(role),
        value: name.to_owned(),
        reason: match role {
            Role::Scheduler => {
                "not one Muster sets (see `muster configure scheduler --help`): env.NAME, \
                 logging.LOGGER or zato.install"
            }
            Role::WebAdmin => {
                "not one Muster sets (see `muster configure web-admin --help`): TIME_ZONE, \
                 env.NAME, logging.LOGGER or zato.install"
            }
            _ => {
                "not one Muster sets (see `muster configure server --help`), nor env.NAME, \
                 logging.LOGGER or zato.install"
            }
        },
    }
}

/// Checks a setting of `role` (a server, the scheduler, a dashboard), its name and value;
/// returns the value as it is written (`True`/`False` for a boolean).
pub fn check(role: Role, name: &str, value: &str) -> Result<String, Invalid> {
    refuse_role(role)?;
    let invalid = |field: &'static str, value: &str, reason: &'static str| Invalid {
        field,
        value: value.to_owned(),
        reason,
    };
    if let Some(variable) = name.strip_prefix(ENV_PREFIX) {
        check_variable_name(variable)?;
        refuse_variable(role, variable)?;
        return check_env_value(value).map(str::to_owned);
    }
    if name == ZATO_INSTALL {
        check_install_name(value)?;
        return Ok(value.to_owned());
    }
    if name.starts_with(LOGGING_PREFIX) {
        let Some(logger) = loggers(role).iter().find(|logger| logger.name == name) else {
            return Err(invalid(
                setting_field(role),
                name,
                match role {
                    Role::Scheduler => {
                        "not a logger Muster sets (see `muster configure scheduler --help`)"
                    }
                    Role::WebAdmin => {
                        "not a logger Muster sets (see `muster configure web-admin --help`)"
                    }
                    _ => "not a logger Muster sets (see `muster configure server --help`)",
                },
            ));
        };
        let level = match value.to_ascii_uppercase().as_str() {
            "WARN" => "WARNING".to_owned(),
            upper => upper.to_owned(),
        };
        if !LEVELS.contains(&level.as_str()) {
            return Err(invalid(
                logger.name,
                value,
                "not a level: DEBUG, INFO, WARNING, ERROR or CRITICAL",
            ));
        }
        return Ok(level);
    }
    let Some(setting) = setting(role, name) else {
        return Err(unknown_setting(role, name));
    };
    if setting.name == TIME_ZONE.name {
        return check_time_zone(value);
    }
    match setting.kind {
        Kind::Number { min, max } => match value.parse::<u64>() {
            Ok(number) if (min..=max).contains(&number) && !value.starts_with('0') => {
                Ok(number.to_string())
            }
            _ => Err(Invalid {
                field: setting.name,
                value: value.to_owned(),
                reason: "not a whole number in its range (see `muster configure server --help`)",
            }),
        },
        Kind::Bool => match value {
            "True" | "true" => Ok("True".to_owned()),
            "False" | "false" => Ok("False".to_owned()),
            _ => Err(invalid(setting.name, value, "not True or False")),
        },
        Kind::Word => {
            let fits = !value.is_empty()
                && value.len() <= 64
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
            if fits {
                Ok(value.to_owned())
            } else {
                Err(invalid(
                    setting.name,
                    value,
                    "not a word of letters, digits and ._-/ (at most 64)",
                ))
            }
        }
    }
}

/// A time zone's IANA name: letters, digits and `/_+-`, parts apart by `/`, none empty nor `.`
/// or `..`, at most 64 (it is written into `web-admin.conf`, a JSON file).
fn check_time_zone(value: &str) -> Result<String, Invalid> {
    let fits = value.len() <= 64
        && value.split('/').all(|part| {
            part.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-'))
        });
    if fits {
        Ok(value.to_owned())
    } else {
        Err(Invalid {
            field: TIME_ZONE.name,
            value: value.to_owned(),
            reason: "not a time zone's name, such as Europe/Prague or UTC",
        })
    }
}

/// An environment variable's name: a letter or `_`, then letters, digits and `_`, at most 128.
pub fn check_variable_name(name: &str) -> Result<(), Invalid> {
    let mut characters = name.chars();
    let fits = name.len() <= 128
        && characters
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && characters.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if fits {
        Ok(())
    } else {
        Err(Invalid {
            field: "environment variable",
            value: name.to_owned(),
            reason: "not a name of letters, digits and _ that starts with a letter or _",
        })
    }
}

/// An environment variable's value: letters, digits, spaces inside and `._:/@+=-`, at most
/// [`VALUE_MAX`]. Not a secret: settings are stored and shown in clear (a secret goes into the
/// cluster's configuration, which is sealed).
fn check_env_value(value: &str) -> Result<&str, Invalid> {
    let fits = value.len() <= VALUE_MAX
        && value.trim() == value
        && value.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, ' ' | '.' | '_' | ':' | '/' | '@' | '+' | '=' | '-')
        });
    if fits {
        Ok(value)
    } else {
        Err(Invalid {
            field: "environment variable's value",
            value: value.to_owned(),
            reason: "only letters, digits, inner spaces and ._:/@+=- (at most 1024; ConfigObj reads # , % $ and quotes otherwise)",
        })
    }
}

/// Settings as one line, `NAME=VALUE` apart by spaces; Zato's defaults when there are none.
pub fn shown(settings: &BTreeMap<String, String>) -> String {
    if settings.is_empty() {
        return "none (Zato's defaults)".to_owned();
    }
    settings
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks every setting of `role`; returns them as they are written.
pub fn check_all(
    role: Role,
    settings: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, Invalid> {
    if settings.len() > SETTINGS_MAX {
        return Err(Invalid {
            field: setting_field(role),
            value: format!("{} settings", settings.len()),
            reason: "more than 64",
        });
    }
    settings
        .iter()
        .map(|(name, value)| Ok((name.clone(), check(role, name, value)?)))
        .collect()
}

/// What a server's `server.conf` holds of the cluster's server settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConf {
    /// Every listed key (its setting, or Zato's default), as `(section, key, value)`.
    pub keys: Vec<(&'static str, &'static str, String)>,
    /// The `[os_environ]` variables, by name.
    pub environment: BTreeMap<String, String>,
}

/// The `server.conf` a server starts with ([`ServerConf`]).
pub fn server_conf(settings: &BTreeMap<String, String>) -> ServerConf {
    let keys = SERVER_SETTINGS
        .iter()
        .map(|listed| {
            let (section, key) = listed.name.split_once('.').unwrap_or(("main", listed.name));
            let value = settings
                .get(listed.name)
                .cloned()
                .unwrap_or_else(|| listed.default.to_owned());
            (section, key, value)
        })
        .collect();
    let environment = settings
        .iter()
        .filter_map(|(name, value)| {
            Some((name.strip_prefix(ENV_PREFIX)?.to_owned(), value.clone()))
        })
        .collect();
    ServerConf { keys, environment }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_keys_and_variables_pass_in_their_grammar() {
        assert_eq!(
            check(Role::Server, "main.gunicorn_workers", "2").unwrap(),
            "2"
        );
        assert_eq!(
            check(Role::Server, "misc.return_tracebacks", "false").unwrap(),
            "False"
        );
        assert_eq!(
            check(Role::Server, "env.APP_MODE", "blue green:1").unwrap(),
            "blue green:1"
        );
        assert_eq!(
            check(Role::Server, "misc.http_server_header", "Zato/3.2").unwrap(),
            "Zato/3.2"
        );
        assert_eq!(
            check(Role::Server, "zato.install", "3.2.1-next").unwrap(),
            "3.2.1-next"
        );
        assert_eq!(
            check(Role::Server, "logging.zato", "debug").unwrap(),
            "DEBUG"
        );
        assert_eq!(
            check(Role::Server, "logging.gunicorn.main", "WARN").unwrap(),
            "WARNING"
        );
    }

    #[test]
    fn a_value_that_could_change_the_file_or_its_reading_is_refused_by_name() {
        for (name, value) in [
            ("main.gunicorn_workers", "0"),
            ("main.gunicorn_workers", "11"),
            ("main.gunicorn_workers", "02"),
            ("main.gunicorn_workers", "2\nipc_port_start=1"),
            ("main.gunicorn_bind", "0.0.0.0:1"),
            ("main.ipc_port_start", "17050"),
            ("env.A", "x # comment"),
            ("env.A", "a,b"),
            ("env.A", "%(x)s"),
            ("env.A", "$HOME"),
            ("env.A", " padded"),
            ("env.1A", "x"),
            ("env.A-B", "x"),
            ("misc.http_server_header", "Apache\r\nX: 1"),
            ("zato.install", "/opt/zato-3.2/code/bin/zato"),
            ("zato.install", "../other"),
            ("zato.install", ""),
            ("logging.zato", "TRACE"),
            ("logging.zato", "DEBUG\n"),
            ("logging.zato_scheduler", "DEBUG"),
        ] {
            let refused = check(Role::Server, name, value)
                .expect_err(&format!("{name}={value:?} must be refused"));
            let message = refused.to_string();
            assert!(
                message.contains(&format!("{:?}", value.chars().take(64).collect::<String>()))
                    || message.contains(&format!("{name:?}"))
                    || message.contains(&format!("{:?}", name.trim_start_matches(ENV_PREFIX))),
                "{message} names the offending value"
            );
        }
    }

    #[test]
    fn a_server_starts_with_every_listed_key_and_exactly_its_variables() {
        let settings = BTreeMap::from([
            ("main.gunicorn_workers".to_owned(), "2".to_owned()),
            ("env.APP_MODE".to_owned(), "blue".to_owned()),
        ]);
        let ServerConf { keys, environment } = server_conf(&settings);
        assert_eq!(keys.len(), SERVER_SETTINGS.len());
        assert!(keys.contains(&("main", "gunicorn_workers", "2".to_owned())));
        assert!(keys.contains(&("stats", "expire_after", "168".to_owned())));
        assert_eq!(
            environment,
            BTreeMap::from([("APP_MODE".to_owned(), "blue".to_owned())])
        );
        let with_install = BTreeMap::from([("zato.install".to_owned(), "next".to_owned())]);
        assert_eq!(
            server_conf(&with_install),
            server_conf(&BTreeMap::new()),
            "the installation is not a server.conf key"
        );
        let debug = BTreeMap::from([("logging.zato".to_owned(), "DEBUG".to_owned())]);
        assert_eq!(
            server_conf(&debug),
            server_conf(&BTreeMap::new()),
            "a logger's level is not a server.conf key"
        );
        let levels = logging_levels(Role::Server, &debug);
        assert_eq!(levels.len(), LOGGERS.len());
        assert!(levels.contains(&("zato", "DEBUG".to_owned())));
        assert!(levels.contains(&("''", "INFO".to_owned())));
    }

    #[test]
    fn the_scheduler_and_dashboards_take_their_own_loggers_variables_and_installation() {
        assert_eq!(
            check(Role::Scheduler, "logging.zato_scheduler", "debug").unwrap(),
            "DEBUG"
        );
        assert_eq!(
            check(Role::WebAdmin, "TIME_ZONE", "Europe/Prague").unwrap(),
            "Europe/Prague"
        );
        assert_eq!(
            check(
                Role::WebAdmin,
                "env.Zato_Dashboard_CSRF_Trusted_Origins",
                "https://dashboard.example.com"
            )
            .unwrap(),
            "https://dashboard.example.com"
        );
        assert_eq!(
            check(Role::Scheduler, "zato.install", "next").unwrap(),
            "next"
        );
        for (role, name, value) in [
            (Role::Scheduler, "main.gunicorn_workers", "2"),
            (Role::Scheduler, "TIME_ZONE", "UTC"),
            (Role::WebAdmin, "logging.zato_scheduler", "DEBUG"),
            (Role::WebAdmin, "main.gunicorn_workers", "2"),
            (Role::WebAdmin, "TIME_ZONE", "../../etc/passwd"),
            (Role::WebAdmin, "TIME_ZONE", "Europe/Prague\", \"DEBUG\": 1"),
            (Role::WebAdmin, "TIME_ZONE", ""),
            (Role::LoadBalancer, "env.A", "1"),
            (Role::WebAdmin, "env.Zato_Dashboard_Session_Timeout", "3600"),
            (Role::WebAdmin, "env.Zato_Dashboard_Debug_Enabled", "False"),
            (Role::Scheduler, "env.LD_PRELOAD", "/tmp/x.so"),
            (Role::Scheduler, "env.PYTHONPATH", "/tmp"),
            (Role::WebAdmin, "env.PATH", "/tmp"),
            (Role::WebAdmin, "env.BASH_ENV", "/tmp/x"),
        ] {
            let refused = check(role, name, value)
                .expect_err(&format!("{role} {name}={value:?} must be refused"));
            let message = refused.to_string();
            assert!(
                message.contains(&format!("{value:?}"))
                    || message.contains(&format!("{name:?}"))
                    || message.contains(&format!("{:?}", name.trim_start_matches(ENV_PREFIX)))
                    || message.contains(&format!("{:?}", role.cli_name())),
                "{message} names the offending value"
            );
        }
        assert!(check_name(Role::Scheduler, "logging.zato_scheduler").is_ok());
        assert!(check_name(Role::Scheduler, "misc.return_tracebacks").is_err());
        let levels = logging_levels(
            Role::Scheduler,
            &BTreeMap::from([("logging.zato".to_owned(), "DEBUG".to_owned())]),
        );
        assert_eq!(
            levels,
            vec![
                ("''", "INFO".to_owned()),
                ("zato", "DEBUG".to_owned()),
                ("zato_scheduler", "INFO".to_owned())
            ]
        );
    }
}
