//! `AdminService`: the operators' API. Every call is authenticated by an admin token (a bearer
//! token, looked up by its SHA-256), its input validated before anything is stored, and every change
//! recorded as an event by the store in the same transaction.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use muster_proto::token::{self, AdminToken};
use muster_proto::v1::admin_service_server::AdminService;
use muster_proto::v1::{self, OdbType, Role};
use muster_proto::{ApiError, validate};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

mod messages;
mod python;

pub use self::messages::assignment_message;
use self::messages::{
    cluster_message, configured_response, event_message, host_message, join_token_message,
    odb_settings, optional_cluster, roles_from_request, strategy_message,
};
use self::python::read_python_pieces;
pub(crate) use self::python::wheel_pieces;
use crate::audit::{Door, Refusals};
use crate::condition::condition_seen_by_balancers;
use crate::secrets;
use crate::store::{
    Actor, Assignment, ClusterSecrets, Event, Host, NewAssignment, NewCluster, NewJoinToken,
    RolloutChange, Store, now_ms,
};

/// A join token's lifetime when the request names none.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest lifetime a join token may have.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Clone)]
pub struct AdminApi {
    /// Writes through [`crate::store::Writes`]: retried on collisions, the watches woken.
    store: Arc<dyn Store>,
    ca_sha256: String,
    refusals: Arc<Refusals>,
    /// Ends the event watches when the coordinator stops.
    shutdown: CancellationToken,
    /// When this process started: hosts' reports from before are doubted (`condition::Now`).
    started_ms: i64,
}

/// How often an event watch reads the log for new events. Events of other coordinators over the
/// same database appear as soon; one small indexed query per watching operator.
const EVENT_POLL: Duration = Duration::from_secs(1);

impl AdminApi {
    /// `store` is the [`crate::store::Writes`] around the store: each committed change that may
    /// alter a host's desired state wakes the watches that host holds, so they send it at once
    /// (see `fanout.rs` for other coordinators').
    pub fn new(
        store: Arc<dyn Store>,
        ca_sha256: String,
        refusals: Arc<Refusals>,
        shutdown: CancellationToken,
    ) -> Self {
        AdminApi {
            store,
            ca_sha256,
            refusals,
            shutdown,
            started_ms: now_ms(),
        }
    }

    /// Each event as the API shows it, a host's own events with the clusters of their host.
    async fn event_messages(&self, events: Vec<Event>) -> Result<Vec<v1::Event>, ApiError> {
        let needs_clusters = events
            .iter()
            .any(|event| event.cluster.is_empty() && !event.host.is_empty());
        let mut host_clusters: BTreeMap<String, Vec<String>> = Default::default();
        if needs_clusters {
            for assignment in self.store.list_assignments(None).await? {
                let clusters = host_clusters.entry(assignment.host).or_default();
                if !clusters.contains(&assignment.cluster) {
                    clusters.push(assignment.cluster);
                }
            }
        }
        Ok(events
            .into_iter()
            .map(|event| {
                let clusters = if event.cluster.is_empty() {
                    host_clusters.get(&event.host).cloned().unwrap_or_default()
                } else {
                    vec![event.cluster.clone()]
                };
                event_message(event, clusters)
            })
            .collect())
    }

    /// Every host, by name.
    async fn hosts_by_name(&self) -> Result<BTreeMap<String, Host>, ApiError> {
        Ok(self
            .store
            .list_hosts()
            .await?
            .into_iter()
            .map(|host| (host.name.clone(), host))
            .collect())
    }

    /// Checks the bearer token and says who is acting. A refusal is logged and counted.
    pub(crate) async fn authorize<T>(&self, request: &Request<T>) -> Result<Actor, ApiError> {
        let refuse = |reason: &'static str, who: &str, error: ApiError| {
            self.refusals
                .refused(Door::Admin, reason, who, request.remote_addr(), &error);
            error
        };
        let Some(header) = request.metadata().get("authorization") else {
            return Err(refuse(
                "no-token",
                "nobody",
                ApiError::Unauthenticated("no admin token was sent".to_owned()),
            ));
        };
        let Some(text) = header
            .to_str()
            .ok()
            .and_then(|value| value.strip_prefix("Bearer "))
        else {
            return Err(refuse(
                "malformed-token",
                "unknown",
                ApiError::Unauthenticated("the authorization header must be 'Bearer TOKEN'".into()),
            ));
        };
        let admin_token = AdminToken::parse(text).map_err(|error| {
            refuse(
                "malformed-token",
                "unknown",
                ApiError::Unauthenticated(error.to_string()),
            )
        })?;
        let hash = secrets::sha256_hex(admin_token.to_string().as_bytes());
        match self.store.find_admin_token(&hash).await? {
            Some(id) => Ok(Actor(format!("admin:{id}"))),
            None => Err(refuse(
                "unknown-token",
                &format!("admin token {}", admin_token.id),
                ApiError::Unauthenticated("the admin token is not valid".to_owned()),
            )),
        }
    }

    /// How many of `cluster`'s servers its rollouts take out of rotation at once, for the
    /// answer to a change that starts one.
    async fn max_unavailable(&self, cluster: &str) -> Result<u32, ApiError> {
        Ok(self
            .store
            .get_cluster(cluster)
            .await?
            .rollout_strategy
            .max_unavailable)
    }
}

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn create_cluster(
        &self,
        request: Request<v1::CreateClusterRequest>,
    ) -> Result<Response<v1::CreateClusterResponse>, Status> {
        let actor = self.authorize(&request).await?;
        let request = request.into_inner();
        validate::name("cluster name", &request.name).map_err(ApiError::from)?;
        validate::description("description", &request.description).map_err(ApiError::from)?;
        let odb = odb_settings(request.odb)?;
        if odb.odb_type != OdbType::Sqlite && request.odb_password.is_empty() {
            return Err(ApiError::InvalidArgument(
                "a PostgreSQL or MySQL ODB needs a password (--odb-password-file): Zato 3.2's \
                 `create cluster` asks for an empty one on a terminal, and fails without one"
                    .to_owned(),
            )
            .into());
        }
        if request.odb_password.chars().any(char::is_control) || request.odb_password.len() > 1024 {
            return Err(ApiError::InvalidArgument(
                "the ODB password must be at most 1024 characters without control characters \
                 (a trailing newline in a password file is removed)"
                    .to_owned(),
            )
            .into());
        }
        let secrets = ClusterSecrets {
            odb_password: request.odb_password,
            secret_key: secrets::fernet_key().map_err(|error| internal(&error))?,
            jwt_secret: secrets::fernet_key().map_err(|error| internal(&error))?,
            admin_invoke_password: secrets::random_hex(16).map_err(|error| internal(&error))?,
        };
        let new = NewCluster {
            name: request.name,
            description: request.description,
            odb,
            secrets,
        };
        let cluster = self.store.create_cluster(new, &actor).await?;
        tracing::info!(cluster = %cluster.name, actor = %actor.0, "cluster created");
        Ok(Response::new(v1::CreateClusterResponse {
            cluster: Some(cluster_message(cluster)),
        }))
    }

    async fn list_clusters(
        &self,
        request: Request<v1::ListClustersRequest>,
    ) -> Result<Response<v1::ListClustersResponse>, Status> {
        self.authorize(&request).await?;
        let clusters = self.store.list_clusters().await?;
        Ok(Response::new(v1::ListClustersResponse {
            clusters: clusters.into_iter().map(cluster_message).collect(),
        }))
    }

    async fn get_cluster(
        &self,
        request: Request<v1::GetClusterRequest>,
    ) -> Result<Response<v1::GetClusterResponse>, Status> {
        self.authorize(&request).await?;
        let request = request.into_inner();
        let (name, with_content) = (request.name, request.with_content);
        validate::name("cluster name", &name).map_err(ApiError::from)?;
        let cluster = self.store.get_cluster(&name).await?;
        let services = self.store.cluster_services(&name, with_content).await?;
        // The env values are opened only with the files' contents, and never leave here.
        let (config_files, env) = self.store.cluster_config(&name, with_content).await?;
        let (requirements, wheels) = self.store.cluster_python(&name).await?;
        let mut message = cluster_message(cluster);
        message.python_requirements = requirements;
        message.python_wheels = wheels;
        message.services = services;
        message.config_files = config_files;
        message.config_env_names = env.into_keys().collect();
        // The user-config files' contents are secret: only their names leave here.
        message.user_conf_names = self
            .store
            .cluster_user_conf(&name, false)
            .await?
            .into_iter()
            .map(|file| file.name)
            .collect();
        Ok(Response::new(v1::GetClusterResponse {
            cluster: Some(message),
        }))
    }

    async fn delete_cluster(
        &self,
        request: Request<v1::DeleteClusterRequest>,
    ) -> Result<Response<v1::DeleteClusterResponse>, Status> {
        let actor = self.authorize(&request).await?;
        let name = request.into_inner().name;
        validate::name("cluster name", &name).map_err(ApiError::from)?;
        self.store.delete_cluster(&name, &actor).await?;
        tracing::info!(cluster = %name, actor = %actor.0, "cluster deleted");
        Ok(Response::new(v1::DeleteClusterResponse {}))
    }

    async fn create_join_token(
        &self,
        request: Request<v1::CreateJoinTokenRequest>,
    ) -> Result<Response<v1::CreateJoinTokenResponse>, Status> {
        let actor = self.authorize(&request).await?;
        let request = request.into_inner();
        validate::name("cluster name", &request.cluster).map_err(ApiError::from)?;
        validate::description("description", &request.description).map_err(ApiError::from)?;
        let roles = roles_from_request(&request.roles)?;
        for (key, value) in &request.labels {
            validate::name("label key", key).map_err(ApiError::from)?;
            validate::description("label value", value).map_err(ApiError::from)?;
        }
        let ttl = match request.ttl_seconds {
            0 => DEFAULT_TOKEN_TTL,
            seconds => Duration::from_secs(seconds),
        };
        if ttl > MAX_TOKEN_TTL {
            return Err(ApiError::InvalidArgument(format!(
                "a join token's lifetime of {} exceeds the limit of {}",
                humantime::format_duration(ttl),
                humantime::format_duration(MAX_TOKEN_TTL)
            ))
            .into());
        }
        let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        let token = token::JoinToken {
            ca_sha256: self.ca_sha256.clone(),
            id: secrets::random_hex(token::ID_LEN / 2).map_err(|error| internal(&error))?,
            secret: secrets::random_hex(token::SECRET_LEN / 2).map_err(|error| internal(&error))?,
        };
        let new = NewJoinToken {
            id: token.id.clone(),
            secret_hash: secrets::sha256_hex(token.secret.as_bytes()),
            cluster: request.cluster,
            roles,
            labels: request.labels.into_iter().collect(),
            description: request.description,
            expires_at_ms: now_ms().saturating_add(ttl_ms),
            max_uses: request.max_uses,
        };
        let stored = self.store.create_join_token(new, &actor).await?;
        tracing::info!(token = %stored.id, cluster = %stored.cluster, actor = %actor.0, "join token created");
        Ok(Response::new(v1::CreateJoinTokenResponse {
            token: Some(join_token_message(stored)),
            secret_token: token.to_string(),
        }))
    }

    async fn list_join_tokens(
        &self,
        request: Request<v1::ListJoinTokensRequest>,
    ) -> Result<Response<v1::ListJoinTokensResponse>, Status> {
        self.authorize(&request).await?;
        let request = request.into_inner();
        let cluster = optional_cluster(&request.cluster)?;
        if let Some(name) = cluster {
            self.store.get_cluster(name).await?;
        }
        let tokens = self.store.list_join_tokens(cluster).await?;
        Ok(Response::new(v1::ListJoinTokensResponse {
            tokens: tokens.into_iter().map(join_token_message).collect(),
        }))
    }

    async fn revoke_join_token(
        &self,
        request: Request<v1::RevokeJoinTokenRequest>,
    ) -> Result<Response<v1::RevokeJoinTokenResponse>, Status> {
        let actor = self.authorize(&request).await?;
        let id = request.into_inner().id;
        if !token::is_token_id(&id) {
            return Err(ApiError::InvalidArgument(format!(
                "invalid join token id {id:?}: expected {} lowercase hex digits, as `muster token list` shows",
                token::ID_LEN
            ))
            .into());
        }
        let revoked = self.store.revoke_join_token(&id, &actor).await?;
        tracing::info!(token = %id, actor = %actor.0, "join token revoked");
        Ok(Response::new(v1::RevokeJoinTokenResponse {
            token: Some(join_token_message(revoked)),
        }))
    }

    async fn list_hosts(
        &self,
        request: Request<v1::ListHostsRequest>,
    ) -> Result<Response<v1::ListHostsResponse>, Status> {
        self.authorize(&request).await?;
        let hosts = self.store.list_hosts().await?;
        Ok(Response::new(v1::ListHostsResponse {
            hosts: hosts.into_iter().map(host_message).collect(),
        }))
    }

    async fn get_host(
        &self,
        request: Request<v1::GetHostRequest>,
    ) -> Result<Response<v1::GetHostResponse>, Status> {
        self.authorize(&request).await?;
        let name = request.into_inner().name;
        validate::name("host name", &name).map_err(ApiError::from)?;
        let host = self.store.get_host(&name).await?;
        Ok(Response::new(v1::GetHostResponse {
            host: Some(host_message(host)),
        }))
    }

    async fn list_events(
        &self,
        request: Request<v1::ListEventsRequest>,
    ) -> Result<Response<v1::ListEventsResponse>, Status> {
        self.authorize(&request).await?;
        let request = request.into_inner();
        let cluster = optional_cluster(&request.cluster)?;
        let limit = match request.limit {
            0 => 100,
            limit => limit.min(1000),
        };
        let events = self.store.list_events(cluster, None, limit).await?;
        Ok(Response::new(v1::ListEventsResponse {
            events: self.event_messages(events).await?,
        }))
    }

    type WatchEventsStream = ReceiverStream<Result<v1::Event, Status>>;

    async fn watch_events(
        &self,
        request: Request<v1::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        self.authorize(&request).await?;
        let request = request.into_inner();
        let cluster = optional_cluster(&request.cluster)?.map(str::to_owned);
        let mut after = match request.after_id {
            None => self
                .store
                .list_events(None, None, 1)
                .await?
                .first()
                .map_or(0, |newest| newest.id),
            Some(id) => id,
        };
        let (sender, receiver) = tokio::sync::mpsc::channel(64);
        let api = self.clone();
        tokio::spawn(async move {
            loop {
                let batch = match api
                    .store
                    .list_events(cluster.as_deref(), Some(after), 100)
                    .await
                {
                    Ok(events) => api.event_messages(events).await.map_err(Status::from),
                    Err(error) => Err(Status::from(ApiError::from(error))),
                };
                match batch {
                    Ok(events) => {
                        let full = events.len() == 100;
                        for event in events {
                            after = event.id;
                            if sender.send(Ok(event)).await.is_err() {
                                return;
                            }
                        }
                        if full {
                            continue;
                        }
                    }
                    // A database hiccup is not the end of the log: say it, keep following.
                    Err(status) => tracing::warn!(error = %status.message(), "cannot read events"),
                }
                tokio::select! {
                    () = api.shutdown.cancelled() => return,
                    () = sender.closed() => return,
                    () = tokio::time::sleep(EVENT_POLL) => {}
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(receiver)))
    }

    async fn create_component(
        &self,
        request: Request<v1::CreateComponentRequest>,
    ) -> Result<Response<v1::CreateComponentResponse>, Status> {
        let actor = self.authorize(&request).await?;
        let request = request.into_inner();
        validate::name("cluster name", &request.cluster).map_err(ApiError::from)?;
        validate::name("host name", &request.host).map_err(ApiError::from)?;
        let role = match Role::try_from(request.role) {
            Ok(Role::Unspecified) | Err(_) => {
                return Err(
                    ApiError::InvalidArgument(format!("unknown role {}", request.role)).into(),
                );
            }
            Ok(role) => role,
        };
        let name = if request.name.is_empty() {
            None
        } else {
            validate::name("component name", &request.name).map_err(ApiError::from)?;
            Some(request.name)
        };
        let port = match request.port {
            0 => None,
            port => Some(
                u16::try_from(port)
                    .ok()
                    .filter(|port| *port >= 1024)
                    .ok_or_else(|| {
                        ApiError::InvalidArgument(format!(
                            "invalid --port {port}: must be 1024 to 65535"
                        ))
                    })?,
            ),
        };
        let load_balancer = match (role, request.load_balancer) {
            (Role::LoadBalancer, given) => Some(
                muster_proto::haproxy::settings(&given.unwrap_or_default())
                    .map_err(ApiError::from)?,
            ),
            (_, Some(given)) if given != v1::LoadBalancerSettings::default() => {
                return Err(ApiError::InvalidArgument(format!(
                    "load-balancer settings were given for a {role}; only a load balancer takes them"
                ))
                .into());
            }
            _ => None,
        };
        let new = NewAssignment {
            cluster: request.cluster,
            role,
            name,
            host: request.host,
            port,
            load_balancer,
        };
        let assignment = self.store.create_assignment(new, &actor).await?;
        tracing::info!(
            cluster = %assignment.cluster, role = %assignment.role, name = %assignment.name,
            host = %assignment.host, port = assignment.port, actor = %actor.0, "component assigned"
        );
        Ok(Response::new(v1::CreateComponentResponse {
            component: Some(assignment_message(assignment)),
        }))
    }

    async fn delete_component(
        &self,
        request: Request<v1::DeleteComponentRequest>,
    ) -> Result<Response<v1::DeleteComponentResponse>, Status> {
        let actor = self.authorize(&request).await?;
        let request = request.into_inner();
        validate::name("cluster name", &request.cluster).map_err(ApiError::from)?;
        validate::name("host name", &request.host).map_err(ApiError::from)?;
        let role = match Role::try_from(request.role) {
            Ok(Role::Unspecified) | Err(_) => {
                return Err(
                    ApiError::InvalidArgument(format!("unknown role {}", request.role)).into(),
                );
            }
            Ok(role) => role,
        };
        let name = if request.name.is_empty() {
            None
        } else {
            validate::name("component name", &request.name).map_err(ApiError::from)?;
            Some(request.name.as_str())
        };
        let removed = self
            .store
            .delete_assignment(&request.cluster, role, &request.host, name, &actor)
            .await?;
        tracing::info!(cluster = %removed.cluster, role = %role, name = %removed.name, host = %removed.host, actor = %actor.0, "component unassigned");
        Ok(Response::new(v1::DeleteComponentResponse {
            component: Some(assignment_message(removed)),
        }))
    }

    async fn set_services(
        &self,
        request: Request<v1::SetServicesRequest>,
    ) -> Result<Response<v1::SetServicesResponse>, Status> {
        let actor = self.authorize(&request).await?;
        let request = request.into_inner();
        validate::name("cluster name", &request.cluster).map_err(ApiError::from)?;
        muster_proto::services::checked(&request.files)
            .map_err(|refused| ApiError::InvalidArgument(refused.to_string()))?;
        let (revision, changed) = self
            .store
            .set_services(&request.cluster, &request.files, &actor)
            .await?;
        if changed {
            tracing::info!(cluster = %request.cluster, revision = %revision, files = request.files.len(), actor = %actor.0, "services set");
        }
        Ok(Response::new(v1::SetServicesResponse { revision, changed }))
    }

    async fn set_config(
        &self,
        request: Request<v1::SetConfigRequest>,
    ) -> Result<Response<v1::SetConfigResponse>, Status> {
        let actor = self.authorize(&request).await?;
        let request = request.into_inner();
        validate::name("cluster name", &request.cluster).map_err(ApiError::from)?;
        let env: BTreeMap<String, String> = request.env.into_iter().collect();
        muster_proto::config::checked(&request.files, &env)
            .map_err(|refused| ApiError::InvalidArgument(refused.to_string()))?;
        let (revision, changed) = self
            .store
            .set_config(&request.cluster, &request.files, &env, &actor)
            .await?;
        if changed {
            // The env values are never logged; their number is.
            tracing::info!(cluster = %request.cluster, revision = %revision, files = request.files.len(), env_values = env.len(), actor = %actor.0, "configuration set");
        }
        Ok(Response::new(v1::SetConfigResponse { revision, changed }))
    }

    async fn set_user_conf(
        &self,
        request: Request<v1::SetUserConfRequest>,
    ) -> Result<Response<v1::SetUserConfResponse>, Status> {
        let actor = self.authorize(&request).await?;
        let request = request.into_inner();
        validate::name("cluster name", &request.cluster).map_err(ApiError::from)?;
        muster_proto::user_conf::checked(&request.files)
            .map_err(|refused| ApiError::InvalidArgument(refused.to_string()))?;
        let (revision, changed) = self
            .store
            .set_user_conf(&request.cluster, &request.files, &actor)
            .await?;
        if changed {
            // The files' contents are never logged; their names are.
            let names: Vec<&str> = request
                .files
                .iter()
                .map(|file| file.name.as_str())
                .collect();
            tracing::info!(cluster = %request.cluster, revision = %revision, files = ?names, actor = %actor.0, "user-config files set");
        }
        Ok(Response::new(v1::SetUserConfResponse { revision, changed }))
    }

    async fn rebuild_cluster_odb(
        &self,
        request: Request<v1::RebuildClusterOdbRequest>,
    ) -> Result<Response<v1::RebuildClusterOdbResponse>, Status> {
        let actor = self.authorize(&request).await?;
        let request = request.into_inner();
        validate::name("cluster name", &request.cluster).map_err(ApiError::from)?;
        let odb_epoch = self.store.rebuild_odb(&request.cluster, &actor).await?;
        tracing::warn!(cluster = %request.cluster, odb_epoch, actor = %actor.0, "rebuilding the cluster on its empty ODB");
        Ok(Response::new(v1::RebuildClusterOdbResponse { odb_epoch }))
    }

    async fn restart_servers(
        &self,
        request: Request<v1::RestartServersRequest>,
    ) -> Result<Response<v1::RestartServersResponse>, Status> {
        let actor = self.authorize(&request).await?;
        let request = request.into_inner();
        validate::name("cluster name", &request.cluster).map_err(ApiError::from)?;
        let mut roles = Vec::new();
        for role in &request.roles {
            let role = Role::try_from(*role)
                .ok()
                .filter(|role| *role != Role::Unspecified)
                .ok_or_else(|| ApiError::InvalidArgument(format!("roles: {role} is not a role")))?;
            roles.push(role);
        }
        if roles.is_empty() {
            roles.push(Role::Server);
        }
        let restart = self
            .store
            .restart_roles(&request.cluster, &roles, &actor)
            .await?;
        tracing::info!(cluster = %request.cluster, restart_epoch = restart.restart_epoch, roles = ?roles, actor = %actor.0, "rolling restart");
        Ok(Response::new(v1::RestartServersResponse {
            restart_epoch: restart.restart_epoch,
            servers: restart.servers,
            max_unavailable: self.max_unavailable(&request.cluster).await?,
            others: restart
                .others
                .into_iter()
                .map(|(role, name)| v1::ComponentAssignment {
                    cluster: request.cluster.clone(),
                    role: role as i32,
                    name,
                    ..Default::default()
                })
                .collect(),
        }))
    }

    async fn configure_servers(
        &self,
        request: Request<v1::ConfigureServersRequest>,
    ) -> Result<Response<v1::ConfigureServersResponse>, Status> {
        let actor = self.authorize(&request).await?;
        let request = request.into_inner();
        validate::name("cluster name", &request.cluster).map_err(ApiError::from)?;
        let set: BTreeMap<String, String> = request.set.into_iter().collect();
        let configured = self
            .store
            .configure_servers(&request.cluster, &set, &request.unset, &actor)
            .await?;
        tracing::info!(cluster = %request.cluster, changed = configured.changed, restart_epoch = configured.restart_epoch, actor = %actor.0, "server settings");
        Ok(Response::new(configured_response(
            configured,
            self.max_unavailable(&request.cluster).await?,
        )))
    }

    async fn configure_role(
        &self,
        request: Request<v1::ConfigureRoleRequest>,
    ) -> Result<Response<v1::ConfigureRoleResponse>, Status> {
        let actor = self.authorize(&request).await?;
        let request = request.into_inner();
        validate::name("cluster name", &request.cluster).map_err(ApiError::from)?;
        let role = Role::try_from(request.role).unwrap_or(Role::Unspecified);
        let set: BTreeMap<String, String> = request.set.into_iter().collect();
        let configured = self
            .store
            .configure_role(&request.cluster, role, &set, &request.unset, &actor)
            .await?;
        tracing::info!(cluster = %request.cluster, role = %role, changed = configured.changed, restart_epoch = configured.restart_epoch, actor = %actor.0, "settings of a role");
        Ok(Response::new(v1::ConfigureRoleResponse {
            settings: configured.settings.into_iter().collect(),
            changed: configured.changed,
            restart_epoch: configured.restart_epoch,
            components: configured.servers,
        }))
    }

    async fn undo_server_settings(
        &self,
        request: Request<v1::UndoServerSettingsRequest>,
    ) -> Result<Response<v1::ConfigureServersResponse>, Status> {
        let actor = self.authorize(&request).await?;
        let request = request.into_inner();
        validate::name("cluster name", &request.cluster).map_err(ApiError::from)?;
        let configured = self
            .store
            .undo_server_settings(&request.cluster, &actor)
            .await?;
        tracing::info!(cluster = %request.cluster, restart_epoch = configured.restart_epoch, actor = %actor.0, "server settings undone");
        Ok(Response::new(configured_response(
            configured,
            self.max_unavailable(&request.cluster).await?,
        )))
    }

    async fn configure_rollout(
        &self,
        request: Request<v1::ConfigureRolloutRequest>,
    ) -> Result<Response<v1::ConfigureRolloutResponse>, Status> {
        let actor = self.authorize(&request).await?;
        let request = request.into_inner();
        validate::name("cluster name", &request.cluster).map_err(ApiError::from)?;
        let configured = self
            .store
            .configure_rollout(
                &request.cluster,
                RolloutChange {
                    healthy_deadline_seconds: request.healthy_deadline_seconds,
                    min_healthy_time_seconds: request.min_healthy_time_seconds,
                    auto_revert: request.auto_revert,
                    max_unavailable: request.max_unavailable,
                },
                &actor,
            )
            .await?;
        tracing::info!(cluster = %request.cluster, changed = configured.changed, strategy = %configured.strategy.shown(), actor = %actor.0, "rollout strategy");
        Ok(Response::new(v1::ConfigureRolloutResponse {
            strategy: Some(strategy_message(configured.strategy)),
            changed: configured.changed,
        }))
    }

    async fn pause_rollout(
        &self,
        request: Request<v1::PauseRolloutRequest>,
    ) -> Result<Response<v1::PauseRolloutResponse>, Status> {
        let actor = self.authorize(&request).await?;
        let request = request.into_inner();
        validate::name("cluster name", &request.cluster).map_err(ApiError::from)?;
        let changed = self
            .store
            .pause_rollout(&request.cluster, request.paused, &actor)
            .await?;
        tracing::info!(cluster = %request.cluster, paused = request.paused, changed, actor = %actor.0, "restart turn paused or resumed");
        Ok(Response::new(v1::PauseRolloutResponse { changed }))
    }

    type GetWheelStream = tokio_stream::Iter<std::vec::IntoIter<Result<v1::GetWheelPiece, Status>>>;

    async fn get_wheel(
        &self,
        request: Request<v1::GetWheelRequest>,
    ) -> Result<Response<Self::GetWheelStream>, Status> {
        self.authorize(&request).await?;
        let request = request.into_inner();
        validate::name("cluster name", &request.cluster).map_err(ApiError::from)?;
        let pieces: Vec<Result<v1::GetWheelPiece, Status>> =
            wheel_pieces(self.store.as_ref(), &request.cluster, &request.sha256)
                .await?
                .into_iter()
                .map(|piece| Ok(v1::GetWheelPiece { piece }))
                .collect();
        Ok(Response::new(tokio_stream::iter(pieces)))
    }

    async fn set_python(
        &self,
        request: Request<tonic::Streaming<v1::SetPythonPiece>>,
    ) -> Result<Response<v1::SetPythonResponse>, Status> {
        // Who calls is known from the headers, before any piece is read.
        let actor = self.authorize(&request).await?;
        let (cluster, requirements, wheels) = read_python_pieces(request.into_inner()).await?;
        validate::name("cluster name", &cluster).map_err(ApiError::from)?;
        let wheels = muster_proto::python::checked_wheels(&requirements, &wheels)
            .map_err(|refused| ApiError::InvalidArgument(refused.to_string()))?;
        let (revision, changed) = self
            .store
            .set_python(&cluster, &requirements, &wheels, &actor)
            .await?;
        if changed {
            tracing::info!(cluster = %cluster, revision = %revision, wheels = wheels.len(), actor = %actor.0, "Python dependencies set");
        }
        Ok(Response::new(v1::SetPythonResponse { revision, changed }))
    }

    async fn configure_load_balancer(
        &self,
        request: Request<v1::ConfigureLoadBalancerRequest>,
    ) -> Result<Response<v1::ConfigureLoadBalancerResponse>, Status> {
        let actor = self.authorize(&request).await?;
        let request = request.into_inner();
        validate::name("cluster name", &request.cluster).map_err(ApiError::from)?;
        validate::name("host name", &request.host).map_err(ApiError::from)?;
        let name = if request.name.is_empty() {
            None
        } else {
            validate::name("component name", &request.name).map_err(ApiError::from)?;
            Some(request.name.as_str())
        };
        let changes = request.settings.unwrap_or_default();
        // Every given value is checked; unset ones stand for the stored values.
        muster_proto::haproxy::settings(&changes).map_err(ApiError::from)?;
        let configured = self
            .store
            .configure_load_balancer(&request.cluster, &request.host, name, &changes, &actor)
            .await?;
        tracing::info!(cluster = %configured.cluster, name = %configured.name, host = %configured.host, actor = %actor.0, "load balancer reconfigured");
        Ok(Response::new(v1::ConfigureLoadBalancerResponse {
            component: Some(assignment_message(configured)),
        }))
    }

    async fn list_backends(
        &self,
        request: Request<v1::ListBackendsRequest>,
    ) -> Result<Response<v1::ListBackendsResponse>, Status> {
        self.authorize(&request).await?;
        let cluster = request.into_inner().cluster;
        validate::name("cluster name", &cluster).map_err(ApiError::from)?;
        self.store.get_cluster(&cluster).await?;
        let hosts = self.hosts_by_name().await?;
        let backends = self
            .store
            .list_assignments(Some(&cluster))
            .await?
            .into_iter()
            .filter(|assignment| assignment.role == Role::Server)
            .filter_map(|assignment| {
                let host = hosts.get(&assignment.host).filter(|host| !host.drained)?;
                Some(v1::Backend {
                    name: assignment.name,
                    host: host.name.clone(),
                    address: host.advertise_address.clone(),
                    port: u32::from(assignment.port),
                    host_state: host.state.as_str().to_owned(),
                    healthy: assignment.status.is_some_and(|status| status.healthy),
                })
            })
            .collect();
        Ok(Response::new(v1::ListBackendsResponse { backends }))
    }

    async fn get_dashboard_login(
        &self,
        request: Request<v1::GetDashboardLoginRequest>,
    ) -> Result<Response<v1::GetDashboardLoginResponse>, Status> {
        let actor = self.authorize(&request).await?;
        let cluster = request.into_inner().cluster;
        validate::name("cluster name", &cluster).map_err(ApiError::from)?;
        let secrets = self.store.cluster_secrets(&cluster).await?;
        let hosts = self.hosts_by_name().await?;
        let urls = self
            .store
            .list_assignments(Some(&cluster))
            .await?
            .into_iter()
            .filter(|assignment| assignment.role == Role::WebAdmin)
            .filter_map(|assignment| {
                let host = hosts
                    .get(&assignment.host)
                    .filter(|host| !host.advertise_address.is_empty())?;
                Some(format!(
                    "http://{}:{}",
                    host.advertise_address, assignment.port
                ))
            })
            .collect();
        tracing::info!(actor = %actor.0, cluster = %cluster, "dashboard login revealed");
        Ok(Response::new(v1::GetDashboardLoginResponse {
            username: muster_proto::zato::DASHBOARD_USER.to_owned(),
            password: crate::planner::dashboard_password(&secrets),
            urls,
        }))
    }

    async fn drain_host(
        &self,
        request: Request<v1::DrainHostRequest>,
    ) -> Result<Response<v1::DrainHostResponse>, Status> {
        let actor = self.authorize(&request).await?;
        let request = request.into_inner();
        validate::name("host name", &request.name).map_err(ApiError::from)?;
        let host = self
            .store
            .set_host_drained(&request.name, request.drain, &actor)
            .await?;
        tracing::info!(host = %host.name, drained = host.drained, actor = %actor.0, "host drain changed");
        Ok(Response::new(v1::DrainHostResponse {
            host: Some(host_message(host)),
        }))
    }

    async fn admit_host(
        &self,
        request: Request<v1::AdmitHostRequest>,
    ) -> Result<Response<v1::AdmitHostResponse>, Status> {
        let actor = self.authorize(&request).await?;
        let request = request.into_inner();
        validate::name("host name", &request.name).map_err(ApiError::from)?;
        validate::name("cluster name", &request.cluster).map_err(ApiError::from)?;
        let host = self
            .store
            .admit_host(&request.name, &request.cluster, &actor)
            .await?;
        tracing::info!(host = %host.name, cluster = %request.cluster, actor = %actor.0, "host admitted");
        Ok(Response::new(v1::AdmitHostResponse {
            host: Some(host_message(host)),
        }))
    }

    async fn remove_host(
        &self,
        request: Request<v1::RemoveHostRequest>,
    ) -> Result<Response<v1::RemoveHostResponse>, Status> {
        let actor = self.authorize(&request).await?;
        let request = request.into_inner();
        validate::name("host name", &request.name).map_err(ApiError::from)?;
        self.store
            .remove_host(&request.name, request.force, &actor)
            .await?;
        tracing::info!(host = %request.name, actor = %actor.0, "host removed");
        Ok(Response::new(v1::RemoveHostResponse {}))
    }

    async fn list_components(
        &self,
        request: Request<v1::ListComponentsRequest>,
    ) -> Result<Response<v1::ListComponentsResponse>, Status> {
        self.authorize(&request).await?;
        let request = request.into_inner();
        let cluster = optional_cluster(&request.cluster)?;
        let assignments = self.store.list_assignments(cluster).await?;
        let hosts = self.hosts_by_name().await?;
        let bootstrap = self.store.list_bootstrap(cluster).await?;
        let now = crate::condition::Now {
            ms: now_ms(),
            coordinator_started_ms: self.started_ms,
        };
        // What the load balancers of reporting hosts see of the servers.
        let balancers: Vec<Assignment> = assignments
            .iter()
            .filter(|assignment| assignment.role == Role::LoadBalancer)
            .filter(|assignment| {
                hosts.get(&assignment.host).is_some_and(|host| {
                    host.state == crate::store::HostState::Up
                        && crate::condition::doubt(host, now).is_none()
                })
            })
            .cloned()
            .collect();
        let components = assignments
            .into_iter()
            .map(|assignment| {
                let tasks: Vec<_> = bootstrap
                    .iter()
                    .filter(|task| task.cluster == assignment.cluster)
                    .cloned()
                    .collect();
                let shown = condition_seen_by_balancers(
                    &assignment,
                    hosts.get(&assignment.host),
                    &tasks,
                    &balancers,
                    now,
                );
                let mut message = assignment_message(assignment);
                message.state = shown.state.word().to_owned();
                message.healthy = shown.healthy;
                message.reason = shown.reason;
                message
            })
            .collect();
        Ok(Response::new(v1::ListComponentsResponse { components }))
    }
}

fn internal(error: &secrets::SecretError) -> ApiError {
    tracing::error!(error = %error, "cannot make a secret");
    ApiError::Internal("cannot make a secret".to_owned())
}
