//! Names of roles and ODB types as people type them (`server`, `web-admin`, `postgresql`).

use std::fmt;
use std::str::FromStr;

use crate::v1::{OdbType, Role};

/// A role or ODB type name that is not one Muster knows.
#[derive(Debug, thiserror::Error)]
#[error("unknown {kind} '{value}' (expected one of: {expected})")]
pub struct UnknownName {
    pub kind: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl Role {
    /// The name people use on the command line and in config files.
    pub fn cli_name(self) -> &'static str {
        match self {
            Role::Unspecified => "unspecified",
            Role::Server => "server",
            Role::Scheduler => "scheduler",
            Role::WebAdmin => "web-admin",
            Role::LoadBalancer => "load-balancer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.cli_name())
    }
}

impl FromStr for Role {
    type Err = UnknownName;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "server" => Ok(Role::Server),
            "scheduler" => Ok(Role::Scheduler),
            "web-admin" => Ok(Role::WebAdmin),
            "load-balancer" => Ok(Role::LoadBalancer),
            _ => Err(UnknownName {
                kind: "role",
                value: value.to_owned(),
                expected: "server, scheduler, web-admin, load-balancer",
            }),
        }
    }
}

impl OdbType {
    /// The name Zato's `--odb-type` takes.
    pub fn zato_name(self) -> &'static str {
        match self {
            OdbType::Unspecified => "unspecified",
            OdbType::Sqlite => "sqlite",
            OdbType::Postgresql => "postgresql",
            OdbType::Mysql => "mysql",
        }
    }
}

impl fmt::Display for OdbType {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.zato_name())
    }
}

impl FromStr for OdbType {
    type Err = UnknownName;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "sqlite" => Ok(OdbType::Sqlite),
            "postgresql" => Ok(OdbType::Postgresql),
            "mysql" => Ok(OdbType::Mysql),
            _ => Err(UnknownName {
                kind: "ODB type",
                value: value.to_owned(),
                expected: "sqlite, postgresql, mysql",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_names_round_trip() {
        for role in [
            Role::Server,
            Role::Scheduler,
            Role::WebAdmin,
            Role::LoadBalancer,
        ] {
            assert_eq!(role.cli_name().parse::<Role>().unwrap(), role);
        }
        let error = "dashboard".parse::<Role>().unwrap_err().to_string();
        assert!(error.contains("'dashboard'"), "{error}");
    }

    #[test]
    fn odb_type_names_round_trip() {
        for odb_type in [OdbType::Sqlite, OdbType::Postgresql, OdbType::Mysql] {
            assert_eq!(odb_type.zato_name().parse::<OdbType>().unwrap(), odb_type);
        }
        assert!(
            "oracle"
                .parse::<OdbType>()
                .unwrap_err()
                .to_string()
                .contains("'oracle'")
        );
    }
}

impl crate::v1::ComponentState {
    /// The word people see (`muster status`, `--output json`, the database): "running", ...;
    /// empty for a component not yet looked at.
    pub fn word(self) -> &'static str {
        use crate::v1::ComponentState;
        match self {
            ComponentState::Unspecified => "",
            ComponentState::Creating => "creating",
            ComponentState::Waiting => "waiting",
            ComponentState::Starting => "starting",
            ComponentState::Running => "running",
            ComponentState::Unhealthy => "unhealthy",
            ComponentState::Restarting => "restarting",
            ComponentState::Stopped => "stopped",
            ComponentState::Failed => "failed",
        }
    }
}

impl crate::v1::BackendStatus {
    /// A word for labels and programs: up, down, drain, maint, unchecked, or unknown.
    pub fn word(self) -> &'static str {
        use crate::v1::BackendStatus;
        match self {
            BackendStatus::Unspecified => "unknown",
            BackendStatus::Up => "up",
            BackendStatus::Down => "down",
            BackendStatus::Drain => "drain",
            BackendStatus::Maint => "maint",
            BackendStatus::Unchecked => "unchecked",
        }
    }

    /// What HAProxy's status column says: `UP`, `UP 1/2`, `DOWN`, `DOWN 1/2`, `DRAIN`, `MAINT`,
    /// `no check`, ... (`MAINT (via ...)` and the like count as their first word).
    pub fn from_haproxy(status: &str) -> Self {
        use crate::v1::BackendStatus;
        let first = status.split_whitespace().next().unwrap_or_default();
        match first {
            "UP" => BackendStatus::Up,
            "DOWN" | "NOLB" => BackendStatus::Down,
            "DRAIN" => BackendStatus::Drain,
            "MAINT" => BackendStatus::Maint,
            "no" if status.trim() == "no check" => BackendStatus::Unchecked,
            _ => BackendStatus::Unspecified,
        }
    }

    /// Whether a backend server's `check` (`BackendServerState::check`: HAProxy's check status,
    /// code and description) says its last health check passed. A server HAProxy has not checked
    /// yet (`INI`: it has just started) counts as UP there without being known to answer.
    pub fn check_passed(check: &str) -> bool {
        let status = check.trim_start_matches("* ").split_whitespace().next();
        matches!(status, Some("L4OK" | "L6OK" | "L7OK" | "L7OKC"))
    }

    /// HAProxy sends it new requests.
    pub fn in_rotation(self) -> bool {
        matches!(
            self,
            crate::v1::BackendStatus::Up | crate::v1::BackendStatus::Unchecked
        )
    }
}

#[cfg(test)]
mod status_tests {
    use crate::v1::BackendStatus;

    #[test]
    fn only_a_passed_check_counts_as_passed() {
        for (check, passed) in [
            ("L7OK 200", true),
            ("* L7OK 200", true),
            ("L4OK", true),
            ("INI", false),
            ("L4CON Connection refused", false),
            ("L7STS 503", false),
            ("", false),
        ] {
            assert_eq!(BackendStatus::check_passed(check), passed, "{check}");
        }
    }

    #[test]
    fn haproxys_status_column_is_understood() {
        for (text, status, in_rotation) in [
            ("UP", BackendStatus::Up, true),
            ("UP 1/2", BackendStatus::Up, true),
            ("DOWN", BackendStatus::Down, false),
            ("DOWN 1/2", BackendStatus::Down, false),
            ("NOLB", BackendStatus::Down, false),
            ("DRAIN", BackendStatus::Drain, false),
            ("MAINT", BackendStatus::Maint, false),
            ("MAINT (via bck/server1)", BackendStatus::Maint, false),
            ("no check", BackendStatus::Unchecked, true),
            ("", BackendStatus::Unspecified, false),
            ("UPPER", BackendStatus::Unspecified, false),
        ] {
            assert_eq!(BackendStatus::from_haproxy(text), status, "{text}");
            assert_eq!(status.in_rotation(), in_rotation, "{text}");
        }
    }
}
