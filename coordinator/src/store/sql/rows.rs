//! Rows read back into the store's types, and the few values stored as text.

use super::*;

pub(super) fn role_from(text: &str) -> Result<Role, StoreError> {
    text.parse::<Role>()
        .map_err(|error| StoreError::Corrupt(error.to_string()))
}

/// A component's state from its word in `component_status.state`: a word no state has (a row
/// written by a later Muster) reads as not looked at, never as an error that would stop the
/// cluster's planning.
pub(super) fn component_state_from(word: &str) -> v1::ComponentState {
    v1::ComponentState::from_word(word).unwrap_or_default()
}

pub(super) fn port_from(value: i64) -> Result<u16, StoreError> {
    u16::try_from(value).map_err(|_| StoreError::Corrupt(format!("port {value} out of range")))
}

pub(super) fn assignment_from_row(row: &AnyRow) -> Result<Assignment, StoreError> {
    let cluster: String = row.value("cluster_name")?;
    let role = role_from(&row.value::<String>("role")?)?;
    let name: String = row.value("name")?;
    let state: Option<String> = row.value("state")?;
    let status = match state {
        Some(state) => Some(ComponentStatus {
            cluster: cluster.clone(),
            role,
            name: name.clone(),
            state: component_state_from(&state),
            healthy: row.value::<Option<i64>>("healthy")?.unwrap_or(0) != 0,
            last_error: row
                .value::<Option<String>>("last_error")?
                .unwrap_or_default(),
            restarts: count_from(
                row.value::<Option<i64>>("restarts")?.unwrap_or(0),
                "restarts",
            )?,
            backends: Vec::new(),
            services_revision: row
                .value::<Option<String>>("services_revision")?
                .unwrap_or_default(),
            config_revision: row
                .value::<Option<String>>("config_revision")?
                .unwrap_or_default(),
            python_revision: row
                .value::<Option<String>>("python_revision")?
                .unwrap_or_default(),
            python_installed: row
                .value::<Option<String>>("python_installed")?
                .unwrap_or_default(),
            user_conf_revision: row
                .value::<Option<String>>("user_conf_revision")?
                .unwrap_or_default(),
            odb_epoch: epoch_from(row.value::<Option<i64>>("odb_epoch")?.unwrap_or(0))?,
            odb_empty: row.value::<Option<i64>>("odb_empty")? == Some(1),
            restart_epoch: epoch_from(row.value::<Option<i64>>("restart_epoch")?.unwrap_or(0))?,
            rolls: role == Role::Server || row.value::<Option<i64>>("rolls")? == Some(1),
            rollout_held_since: row.value("rollout_healthy_since")?,
        }),
        None => None,
    };
    let settings: String = row.value("settings")?;
    let load_balancer = (role == Role::LoadBalancer)
        .then(|| settings_from_json(&settings))
        .transpose()?;
    Ok(Assignment {
        cluster,
        role,
        name,
        host: row.value("host_name")?,
        port: port_from(row.value("port")?)?,
        created_at_ms: row.value("created_at")?,
        load_balancer,
        status,
    })
}

/// A load balancer's settings as the `assignments.settings` column keeps them.
#[derive(serde::Serialize, serde::Deserialize, Default)]
pub(super) struct StoredSettings {
    #[serde(default)]
    haproxy_bin: String,
    #[serde(default)]
    frontend_address: String,
    #[serde(default)]
    check_inter_ms: u32,
    #[serde(default)]
    check_rise: u32,
    #[serde(default)]
    check_fall: u32,
    #[serde(default)]
    connect_timeout_ms: u32,
    #[serde(default)]
    server_timeout_ms: u32,
    #[serde(default)]
    retries: u32,
}

pub(super) fn settings_json(settings: &v1::LoadBalancerSettings) -> Result<String, StoreError> {
    serde_json::to_string(&StoredSettings {
        haproxy_bin: settings.haproxy_bin.clone(),
        frontend_address: settings.frontend_address.clone(),
        check_inter_ms: settings.check_inter_ms,
        check_rise: settings.check_rise,
        check_fall: settings.check_fall,
        connect_timeout_ms: settings.connect_timeout_ms,
        server_timeout_ms: settings.server_timeout_ms,
        retries: settings.retries,
    })
    .map_err(|error| StoreError::Corrupt(format!("load-balancer settings: {error}")))
}

pub(super) fn settings_with_defaults(
    settings: &v1::LoadBalancerSettings,
) -> Result<v1::LoadBalancerSettings, StoreError> {
    muster_proto::haproxy::settings(settings)
        .map_err(|error| StoreError::Corrupt(format!("load-balancer settings: {error}")))
}

/// The stored settings (empty for defaults) with the defaults filled in.
pub(super) fn settings_from_json(text: &str) -> Result<v1::LoadBalancerSettings, StoreError> {
    let stored: StoredSettings = if text.is_empty() {
        StoredSettings::default()
    } else {
        serde_json::from_str(text)
            .map_err(|error| StoreError::Corrupt(format!("load-balancer settings: {error}")))?
    };
    settings_with_defaults(&v1::LoadBalancerSettings {
        haproxy_bin: stored.haproxy_bin,
        frontend_address: stored.frontend_address,
        check_inter_ms: stored.check_inter_ms,
        check_rise: stored.check_rise,
        check_fall: stored.check_fall,
        connect_timeout_ms: stored.connect_timeout_ms,
        server_timeout_ms: stored.server_timeout_ms,
        retries: stored.retries,
    })
}

pub(super) const CLUSTER_COLUMNS: &str = "id, name, description, odb_type, odb_host, odb_port, odb_user, \
     odb_db_name, odb_schema, has_odb_password, created_at, scheduler_target, servers_started, first_server, services_revision, config_revision, \
     python_revision, user_conf_revision, odb_epoch, restart_epoch, rollout_paused, server_settings, \
     rollout_pause_reason, rollout_revert_reason, rollout_strategy, restart_epoch_same, restart_epochs, role_settings, \
     (SELECT COUNT(*) FROM component_status s WHERE s.cluster_name = clusters.name \
      AND s.odb_empty = 1 AND s.odb_epoch = clusters.odb_epoch) AS odb_empty_reports";

pub(super) const JOIN_TOKEN_SELECT: &str = "SELECT t.id, c.name AS cluster_name, t.secret_hash, t.roles, \
     t.labels, t.description, t.created_at, t.expires_at, t.max_uses, t.uses, t.revoked_at \
     FROM join_tokens t JOIN clusters c ON c.id = t.cluster_id";

pub(super) const HOST_COLUMNS: &str = "id, name, advertise_address, labels, state, enrolled_at, \
     last_seen_at, generation, applied_generation, drained, heartbeat_interval_ms, zato_installs, \
     COALESCE((SELECT c.name FROM clusters c WHERE c.id = hosts.cluster_id), '') AS member_of";

pub(super) fn cluster_from_row(row: &AnyRow) -> Result<Cluster, StoreError> {
    let odb_type_name: String = row.value("odb_type")?;
    let odb_type = odb_type_name
        .parse::<OdbType>()
        .map_err(|error| StoreError::Corrupt(error.to_string()))?;
    let port: i64 = row.value("odb_port")?;
    let has_odb_password: i64 = row.value("has_odb_password")?;
    Ok(Cluster {
        id: row.value("id")?,
        name: row.value("name")?,
        description: row.value("description")?,
        odb: OdbSettings {
            odb_type,
            host: row.value("odb_host")?,
            port: u16::try_from(port)
                .map_err(|_| StoreError::Corrupt(format!("ODB port {port} out of range")))?,
            user: row.value("odb_user")?,
            db_name: row.value("odb_db_name")?,
            postgresql_schema: row.value("odb_schema")?,
        },
        has_odb_password: has_odb_password != 0,
        created_at_ms: row.value("created_at")?,
        scheduler_target: row.value("scheduler_target")?,
        servers_started: row.value::<i64>("servers_started")? != 0,
        first_server: row.value("first_server")?,
        services_revision: row.value("services_revision")?,
        config_revision: row.value("config_revision")?,
        python_revision: row.value("python_revision")?,
        user_conf_revision: row.value("user_conf_revision")?,
        odb_epoch: epoch_from(row.value("odb_epoch")?)?,
        odb_empty: row.value::<i64>("odb_empty_reports")? > 0,
        restart_epoch: epoch_from(row.value("restart_epoch")?)?,
        rollout_paused: row.value::<i64>("rollout_paused")? != 0,
        server_settings: settings_json_column(row, "server_settings")?.unwrap_or_default(),
        rollout_pause_reason: long_text(row, "rollout_pause_reason")?.unwrap_or_default(),
        rollout_revert_reason: long_text(row, "rollout_revert_reason")?.unwrap_or_default(),
        rollout_strategy: rollout_strategy(row)?,
        restart_epoch_same: row
            .value::<Option<i64>>("restart_epoch_same")?
            .map(epoch_from)
            .transpose()?,
        role_restart_epochs: role_restart_epochs(row)?,
        role_settings: json_column(row, "role_settings")?.unwrap_or_default(),
    })
}

/// A cluster's `restart_epochs` (JSON, [`long_text`]): empty for NULL.
pub(super) fn role_restart_epochs(row: &AnyRow) -> Result<BTreeMap<String, u64>, StoreError> {
    json_column(row, "restart_epochs").map(Option::unwrap_or_default)
}

/// A cluster's rollout strategy (JSON, [`long_text`]): the defaults for NULL.
pub(super) fn rollout_strategy(
    row: &AnyRow,
) -> Result<muster_proto::rollout::Strategy, StoreError> {
    match long_text(row, "rollout_strategy")? {
        None => Ok(Default::default()),
        Some(json) => serde_json::from_str(&json)
            .map_err(|error| StoreError::Corrupt(format!("a cluster's rollout strategy: {error}"))),
    }
}

/// A TEXT column (MySQL hands it over as bytes); `None` for NULL or empty.
pub(super) fn long_text(row: &AnyRow, column: &str) -> Result<Option<String>, StoreError> {
    let text = row.value::<Option<String>>(column).or_else(|_| {
        row.value::<Option<Vec<u8>>>(column)
            .map(|bytes| bytes.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    })?;
    Ok(text.filter(|text| !text.is_empty()))
}

/// A column of server settings (JSON, [`long_text`]); `None` for NULL or empty.
pub(super) fn settings_json_column(
    row: &AnyRow,
    column: &str,
) -> Result<Option<BTreeMap<String, String>>, StoreError> {
    json_column(row, column)
}

/// A cluster's column of JSON ([`long_text`]); `None` for NULL.
fn json_column<T: serde::de::DeserializeOwned>(
    row: &AnyRow,
    column: &str,
) -> Result<Option<T>, StoreError> {
    long_text(row, column)?
        .map(|json| {
            serde_json::from_str(&json)
                .map_err(|error| StoreError::Corrupt(format!("a cluster's {column}: {error}")))
        })
        .transpose()
}

pub(super) fn roles_to_text(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|role| role.cli_name())
        .collect::<Vec<_>>()
        .join(",")
}

pub(super) fn roles_from_text(text: &str) -> Result<Vec<Role>, StoreError> {
    text.split(',')
        .filter(|name| !name.is_empty())
        .map(|name| {
            name.parse::<Role>()
                .map_err(|error| StoreError::Corrupt(error.to_string()))
        })
        .collect()
}

/// An ODB generation from its column.
pub(super) fn epoch_from(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("ODB generation {value} out of range")))
}

pub(super) fn count_from(value: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value} out of range")))
}

pub(super) fn join_token_from_row(row: &AnyRow) -> Result<JoinToken, StoreError> {
    let roles: String = row.value("roles")?;
    let labels: String = row.value("labels")?;
    let max_uses: i64 = row.value("max_uses")?;
    let uses: i64 = row.value("uses")?;
    Ok(JoinToken {
        id: row.value("id")?,
        cluster: row.value("cluster_name")?,
        roles: roles_from_text(&roles)?,
        labels: serde_json::from_str(&labels)
            .map_err(|error| StoreError::Corrupt(format!("join token labels: {error}")))?,
        description: row.value("description")?,
        created_at_ms: row.value("created_at")?,
        expires_at_ms: row.value("expires_at")?,
        max_uses: count_from(max_uses, "max_uses")?,
        uses: count_from(uses, "uses")?,
        revoked_at_ms: row.value("revoked_at")?,
    })
}

pub(super) fn host_from_row(row: &AnyRow) -> Result<Host, StoreError> {
    let labels: String = row.value("labels")?;
    Ok(Host {
        id: row.value("id")?,
        name: row.value("name")?,
        advertise_address: row.value("advertise_address")?,
        labels: serde_json::from_str(&labels)
            .map_err(|error| StoreError::Corrupt(format!("host labels: {error}")))?,
        cluster: row.value("member_of")?,
        admitted: Vec::new(),
        state: {
            let word: String = row.value("state")?;
            HostState::from_word(&word)
                .ok_or_else(|| StoreError::Corrupt(format!("host state {word:?}")))?
        },
        enrolled_at_ms: row.value("enrolled_at")?,
        last_seen_ms: row.value("last_seen_at")?,
        generation: generation_from(row.value("generation")?)?,
        applied_generation: generation_from(row.value("applied_generation")?)?,
        drained: row.value::<i64>("drained")? != 0,
        heartbeat_interval_ms: u32::try_from(row.value::<i64>("heartbeat_interval_ms")?)
            .unwrap_or(u32::MAX),
        zato_installs: long_text(row, "zato_installs")?
            .unwrap_or_default()
            .split(',')
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}

pub(super) fn generation_from(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("generation {value} out of range")))
}

pub(super) fn event_from_row(row: &AnyRow) -> Result<Event, StoreError> {
    Ok(Event {
        id: row.value("id")?,
        at_ms: row.value("created_at")?,
        kind: row.value("kind")?,
        cluster: row.value("cluster_name")?,
        host: row.value("host_name")?,
        actor: row.value("actor")?,
        message: row.value("message")?,
    })
}
