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
