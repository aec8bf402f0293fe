//! The admin API's messages made from the store's records, and the store's inputs checked and
//! made from the API's messages.

use muster_proto::v1::{self, OdbType, Role};
use muster_proto::{ApiError, validate};

use crate::store::{
    Assignment, Cluster, ComponentStatus, Event, Host, JoinToken, OdbSettings, ServersConfigured,
};

pub(super) fn odb_settings(odb: Option<v1::OdbSettings>) -> Result<OdbSettings, ApiError> {
    let odb = odb.unwrap_or_default();
    let odb_type = match OdbType::try_from(odb.odb_type) {
        Ok(OdbType::Unspecified) => OdbType::Sqlite,
        Ok(odb_type) => odb_type,
        Err(_) => {
            return Err(ApiError::InvalidArgument(format!(
                "unknown ODB type {}",
                odb.odb_type
            )));
        }
    };
    let port = match (odb.port, odb_type) {
        (0, OdbType::Postgresql) => 5432,
        (0, OdbType::Mysql) => 3306,
        (0, _) => 0,
        (port, _) => u16::try_from(port).map_err(|_| {
            ApiError::InvalidArgument(format!("invalid --odb-port {port}: must be 1 to 65535"))
        })?,
    };
    match odb_type {
        // An empty file name lets the agent choose the file in its components directory.
        OdbType::Sqlite if odb.db_name.is_empty() => {}
        OdbType::Sqlite => {
            validate::odb_identifier("--odb-db-name (the SQLite file)", &odb.db_name)?;
            if !odb.db_name.starts_with('/') {
                return Err(ApiError::InvalidArgument(format!(
                    "invalid --odb-db-name {:?}: the SQLite file must be an absolute path",
                    odb.db_name
                )));
            }
        }
        _ => {
            validate::host("--odb-host", &odb.host)?;
            validate::odb_identifier("--odb-user", &odb.user)?;
            validate::odb_identifier("--odb-db-name", &odb.db_name)?;
        }
    }
    if !odb.postgresql_schema.is_empty() {
        if odb_type != OdbType::Postgresql {
            return Err(ApiError::InvalidArgument(
                "--postgresql-schema applies only to --odb-type postgresql".to_owned(),
            ));
        }
        validate::odb_identifier("--postgresql-schema", &odb.postgresql_schema)?;
    }
    Ok(OdbSettings {
        odb_type,
        host: odb.host,
        port,
        user: odb.user,
        db_name: odb.db_name,
        postgresql_schema: odb.postgresql_schema,
    })
}

pub(super) fn cluster_message(cluster: Cluster) -> v1::Cluster {
    let role_settings = |role: Role| cluster.settings_of(role).into_iter().collect();
    let (scheduler_settings, web_admin_settings) = (
        role_settings(Role::Scheduler),
        role_settings(Role::WebAdmin),
    );
    v1::Cluster {
        name: cluster.name,
        description: cluster.description,
        odb: Some(v1::OdbSettings {
            odb_type: cluster.odb.odb_type as i32,
            host: cluster.odb.host,
            port: u32::from(cluster.odb.port),
            user: cluster.odb.user,
            db_name: cluster.odb.db_name,
            postgresql_schema: cluster.odb.postgresql_schema,
        }),
        has_odb_password: cluster.has_odb_password,
        created_at_unix_ms: cluster.created_at_ms,
        scheduler_target: cluster.scheduler_target,
        services_revision: cluster.services_revision,
        services: Vec::new(),
        config_revision: cluster.config_revision,
        config_files: Vec::new(),
        config_env_names: Vec::new(),
        python_revision: cluster.python_revision,
        python_requirements: String::new(),
        python_wheels: Vec::new(),
        user_conf_revision: cluster.user_conf_revision,
        user_conf_names: Vec::new(),
        odb_empty: cluster.odb_empty,
        odb_epoch: cluster.odb_epoch,
        restart_epoch: cluster.restart_epoch,
        rollout_paused: cluster.rollout_paused,
        scheduler_settings,
        web_admin_settings,
        server_settings: cluster.server_settings.into_iter().collect(),
        rollout_pause_reason: cluster.rollout_pause_reason,
        rollout_revert_reason: cluster.rollout_revert_reason,
        rollout_strategy: Some(strategy_message(cluster.rollout_strategy)),
        restart_epoch_same: cluster.restart_epoch_same,
        restart_epochs: cluster.role_restart_epochs.into_iter().collect(),
    }
}

pub(super) fn strategy_message(strategy: muster_proto::rollout::Strategy) -> v1::RolloutStrategy {
    strategy.into()
}

/// What a change of server settings did, and how many servers its rollout takes out at once.
pub(super) fn configured_response(
    configured: ServersConfigured,
    max_unavailable: u32,
) -> v1::ConfigureServersResponse {
    v1::ConfigureServersResponse {
        settings: configured.settings.into_iter().collect(),
        changed: configured.changed,
        restart_epoch: configured.restart_epoch,
        servers: configured.servers,
        max_unavailable,
    }
}

pub(super) fn join_token_message(token: JoinToken) -> v1::JoinToken {
    v1::JoinToken {
        id: token.id,
        cluster: token.cluster,
        roles: token.roles.into_iter().map(|role| role as i32).collect(),
        created_at_unix_ms: token.created_at_ms,
        expires_at_unix_ms: token.expires_at_ms,
        max_uses: token.max_uses,
        uses: token.uses,
        revoked_at_unix_ms: token.revoked_at_ms.unwrap_or(0),
        description: token.description,
        labels: token.labels.into_iter().collect(),
    }
}

pub(super) fn host_message(host: Host) -> v1::Host {
    v1::Host {
        id: host.id,
        name: host.name,
        advertise_address: host.advertise_address,
        labels: host.labels.into_iter().collect(),
        state: host.state.as_str().to_owned(),
        enrolled_at_unix_ms: host.enrolled_at_ms,
        last_seen_unix_ms: host.last_seen_ms.unwrap_or(0),
        generation: host.generation,
        applied_generation: host.applied_generation,
        drained: host.drained,
        cluster: host.cluster,
        admitted: host.admitted,
        zato_installs: host.zato_installs,
    }
}

pub(super) fn event_message(event: Event, clusters: Vec<String>) -> v1::Event {
    v1::Event {
        clusters,
        id: event.id,
        at_unix_ms: event.at_ms,
        kind: event.kind,
        cluster: event.cluster,
        host: event.host,
        actor: event.actor,
        message: event.message,
    }
}

/// A token's roles; none means the host only enrolls and gets its roles through the API.
pub(super) fn roles_from_request(roles: &[i32]) -> Result<Vec<Role>, ApiError> {
    let mut parsed = Vec::new();
    for &value in roles {
        match Role::try_from(value) {
            Ok(Role::Unspecified) | Err(_) => {
                return Err(ApiError::InvalidArgument(format!("unknown role {value}")));
            }
            Ok(role) if !parsed.contains(&role) => parsed.push(role),
            Ok(_) => {}
        }
    }
    Ok(parsed)
}

pub(super) fn optional_cluster(name: &str) -> Result<Option<&str>, ApiError> {
    if name.is_empty() {
        return Ok(None);
    }
    validate::name("cluster name", name)?;
    Ok(Some(name))
}

pub fn assignment_message(assignment: Assignment) -> v1::ComponentAssignment {
    let status = assignment.status.unwrap_or_else(|| ComponentStatus {
        cluster: assignment.cluster.clone(),
        role: assignment.role,
        name: assignment.name.clone(),
        ..ComponentStatus::default()
    });
    v1::ComponentAssignment {
        cluster: assignment.cluster,
        role: assignment.role as i32,
        name: assignment.name,
        host: assignment.host,
        port: u32::from(assignment.port),
        created_at_unix_ms: assignment.created_at_ms,
        state: status.state.word().to_owned(),
        healthy: status.healthy,
        last_error: status.last_error,
        restarts: status.restarts,
        load_balancer: assignment.load_balancer,
        backends: status.backends,
        reason: String::new(),
        services_revision: status.services_revision,
        config_revision: status.config_revision,
        python_revision: status.python_revision,
        user_conf_revision: status.user_conf_revision,
        odb_epoch: status.odb_epoch,
        restart_epoch: status.restart_epoch,
        rolls: assignment.role == Role::Server || status.rolls,
    }
}
