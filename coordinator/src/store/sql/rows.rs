//! Rows read back into the store's types, and the few values stored as text.

use super::*;

pub(super) fn role_from(text: &str) -> Result<Role, StoreError> {
    text.parse::<Role>()
        .map_err(|error| StoreError::Corrupt(error.to_string()))
}

pub(super) fn port_from(value: i64) -> Result<u16, StoreError> {
    u16::try_from(value).map_err(|_| StoreError::Corrupt(format!("port {value} out of range")))
}

pub(super) fn assignment_from_row(row: &AnyRow) -> Result<Assignment, StoreError> {
    let read = || database("read an assignment");
    let cluster: String = row.try_get("cluster_name").map_err(read())?;
    let role = role_from(&row.try_get::<String, _>("role").map_err(read())?)?;
    let name: String = row.try_get("name").map_err(read())?;
    let state: Option<String> = row.try_get("state").map_err(read())?;
    let status = match state {
        Some(state) => Some(ComponentStatus {
            cluster: cluster.clone(),
            role,
            name: name.clone(),
            state,
            healthy: row
                .try_get::<Option<i64>, _>("healthy")
                .map_err(read())?
                .unwrap_or(0)
                != 0,
            last_error: row
                .try_get::<Option<String>, _>("last_error")
                .map_err(read())?
                .unwrap_or_default(),
            restarts: count_from(
                row.try_get::<Option<i64>, _>("restarts")
                    .map_err(read())?
                    .unwrap_or(0),
                "restarts",
            )?,
            backends: Vec::new(),
        }),
        None => None,
    };
    let settings: String = row.try_get("settings").map_err(read())?;
    let load_balancer = (role == Role::LoadBalancer)
        .then(|| settings_from_json(&settings))
        .transpose()?;
    Ok(Assignment {
        cluster,
        role,
        name,
        host: row.try_get("host_name").map_err(read())?,
        port: port_from(row.try_get("port").map_err(read())?)?,
        created_at_ms: row.try_get("created_at").map_err(read())?,
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
}

pub(super) fn settings_json(settings: &v1::LoadBalancerSettings) -> Result<String, StoreError> {
    serde_json::to_string(&StoredSettings {
        haproxy_bin: settings.haproxy_bin.clone(),
        frontend_address: settings.frontend_address.clone(),
        check_inter_ms: settings.check_inter_ms,
        check_rise: settings.check_rise,
        check_fall: settings.check_fall,
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
    })
}

pub(super) const CLUSTER_COLUMNS: &str = "id, name, description, odb_type, odb_host, odb_port, odb_user, \
     odb_db_name, odb_schema, has_odb_password, created_at, scheduler_target";

pub(super) const JOIN_TOKEN_SELECT: &str = "SELECT t.id, c.name AS cluster_name, t.secret_hash, t.roles, \
     t.description, t.created_at, t.expires_at, t.max_uses, t.uses, t.revoked_at \
     FROM join_tokens t JOIN clusters c ON c.id = t.cluster_id";

pub(super) const HOST_COLUMNS: &str = "id, name, advertise_address, labels, state, enrolled_at, \
     last_seen_at, generation, applied_generation, drained";

pub(super) fn cluster_from_row(row: &AnyRow) -> Result<Cluster, StoreError> {
    let read = database("read a cluster");
    let odb_type_name: String = row.try_get("odb_type").map_err(read)?;
    let odb_type = odb_type_name
        .parse::<OdbType>()
        .map_err(|error| StoreError::Corrupt(error.to_string()))?;
    let port: i64 = row
        .try_get("odb_port")
        .map_err(database("read a cluster"))?;
    let has_odb_password: i64 = row
        .try_get("has_odb_password")
        .map_err(database("read a cluster"))?;
    Ok(Cluster {
        id: row.try_get("id").map_err(database("read a cluster"))?,
        name: row.try_get("name").map_err(database("read a cluster"))?,
        description: row
            .try_get("description")
            .map_err(database("read a cluster"))?,
        odb: OdbSettings {
            odb_type,
            host: row
                .try_get("odb_host")
                .map_err(database("read a cluster"))?,
            port: u16::try_from(port)
                .map_err(|_| StoreError::Corrupt(format!("ODB port {port} out of range")))?,
            user: row
                .try_get("odb_user")
                .map_err(database("read a cluster"))?,
            db_name: row
                .try_get("odb_db_name")
                .map_err(database("read a cluster"))?,
            postgresql_schema: row
                .try_get("odb_schema")
                .map_err(database("read a cluster"))?,
        },
        has_odb_password: has_odb_password != 0,
        created_at_ms: row
            .try_get("created_at")
            .map_err(database("read a cluster"))?,
        scheduler_target: row
            .try_get("scheduler_target")
            .map_err(database("read a cluster"))?,
    })
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

pub(super) fn count_from(value: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value} out of range")))
}

pub(super) fn join_token_from_row(row: &AnyRow) -> Result<JoinToken, StoreError> {
    let read = || database("read a join token");
    let roles: String = row.try_get("roles").map_err(read())?;
    let max_uses: i64 = row.try_get("max_uses").map_err(read())?;
    let uses: i64 = row.try_get("uses").map_err(read())?;
    Ok(JoinToken {
        id: row.try_get("id").map_err(read())?,
        cluster: row.try_get("cluster_name").map_err(read())?,
        roles: roles_from_text(&roles)?,
        description: row.try_get("description").map_err(read())?,
        created_at_ms: row.try_get("created_at").map_err(read())?,
        expires_at_ms: row.try_get("expires_at").map_err(read())?,
        max_uses: count_from(max_uses, "max_uses")?,
        uses: count_from(uses, "uses")?,
        revoked_at_ms: row.try_get("revoked_at").map_err(read())?,
    })
}

pub(super) fn host_from_row(row: &AnyRow) -> Result<Host, StoreError> {
    let read = || database("read a host");
    let labels: String = row.try_get("labels").map_err(read())?;
    Ok(Host {
        id: row.try_get("id").map_err(read())?,
        name: row.try_get("name").map_err(read())?,
        advertise_address: row.try_get("advertise_address").map_err(read())?,
        labels: serde_json::from_str(&labels)
            .map_err(|error| StoreError::Corrupt(format!("host labels: {error}")))?,
        state: {
            let word: String = row.try_get("state").map_err(read())?;
            HostState::from_word(&word)
                .ok_or_else(|| StoreError::Corrupt(format!("host state {word:?}")))?
        },
        enrolled_at_ms: row.try_get("enrolled_at").map_err(read())?,
        last_seen_ms: row.try_get("last_seen_at").map_err(read())?,
        generation: generation_from(row.try_get("generation").map_err(read())?)?,
        applied_generation: generation_from(row.try_get("applied_generation").map_err(read())?)?,
        drained: row.try_get::<i64, _>("drained").map_err(read())? != 0,
    })
}

pub(super) fn generation_from(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("generation {value} out of range")))
}

pub(super) fn event_from_row(row: &AnyRow) -> Result<Event, StoreError> {
    let read = || database("read an event");
    Ok(Event {
        id: row.try_get("id").map_err(read())?,
        at_ms: row.try_get("created_at").map_err(read())?,
        kind: row.try_get("kind").map_err(read())?,
        cluster: row.try_get("cluster_name").map_err(read())?,
        host: row.try_get("host_name").map_err(read())?,
        actor: row.try_get("actor").map_err(read())?,
        message: row.try_get("message").map_err(read())?,
    })
}
