//! `muster token create|list|revoke`: join tokens.

use super::*;

#[derive(Debug, Subcommand)]
pub(super) enum TokenCommand {
    /// Create a join token; it is shown once, only its hash is kept.
    Create {
        /// The cluster that hosts enrolling with it join.
        #[arg(long)]
        cluster: String,
        /// A role every host that enrolls with it gets in the cluster (server, scheduler, web-admin
        /// or load-balancer); repeat for several. Without one, hosts only enroll and get their
        /// roles through `muster create`.
        #[arg(long = "role", value_parser = parse_role)]
        roles: Vec<Role>,
        /// How long it is valid, e.g. 24h or 30m (at most 365d).
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// How many hosts may enroll with it; 0 means unlimited.
        #[arg(long, default_value_t = 1)]
        max_uses: u32,
        /// A note for people.
        #[arg(long, default_value = "")]
        description: String,
        /// A label every host that enrolls with it gets, KEY=VALUE; repeat for several. A host's
        /// labels (what cluster files' selectors match) come only from its token: its agent may
        /// repeat them in its config, never add or change one.
        #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
    /// List join tokens.
    List {
        /// Only this cluster's tokens.
        #[arg(long)]
        cluster: Option<String>,
    },
    /// Revoke a join token by its id (as `muster token list` shows it).
    Revoke {
        /// The token's id (`muster token list` shows them).
        id: String,
    },
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("invalid label {text:?}: give KEY=VALUE"))
}

#[derive(Debug, Serialize)]
pub(super) struct JoinTokenView {
    pub(super) id: String,
    pub(super) cluster: String,
    pub(super) roles: Vec<String>,
    pub(super) state: &'static str,
    pub(super) uses: u32,
    /// `None` means unlimited.
    pub(super) max_uses: Option<u32>,
    pub(super) created_at: String,
    pub(super) expires_at: String,
    /// `None` while the token is not revoked.
    pub(super) revoked_at: Option<String>,
    pub(super) description: String,
    pub(super) labels: std::collections::BTreeMap<String, String>,
}

impl From<v1::JoinToken> for JoinTokenView {
    fn from(token: v1::JoinToken) -> Self {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or_default();
        let state = if token.revoked_at_unix_ms != 0 {
            "revoked"
        } else if token.expires_at_unix_ms <= now_ms {
            "expired"
        } else if token.max_uses != 0 && token.uses >= token.max_uses {
            "used up"
        } else {
            "active"
        };
        JoinTokenView {
            id: token.id,
            cluster: token.cluster,
            roles: role_names(&token.roles),
            state,
            uses: token.uses,
            max_uses: (token.max_uses != 0).then_some(token.max_uses),
            created_at: format_time(token.created_at_unix_ms),
            expires_at: format_time(token.expires_at_unix_ms),
            revoked_at: (token.revoked_at_unix_ms != 0)
                .then(|| format_time(token.revoked_at_unix_ms)),
            description: token.description,
            labels: token.labels.into_iter().collect(),
        }
    }
}

pub(super) fn token_rows(tokens: &[JoinTokenView]) -> Vec<Vec<String>> {
    tokens
        .iter()
        .map(|token| {
            let uses = match token.max_uses {
                Some(max_uses) => format!("{}/{max_uses}", token.uses),
                None => format!("{}/unlimited", token.uses),
            };
            vec![
                token.id.clone(),
                token.cluster.clone(),
                token.roles.join(","),
                token.state.to_owned(),
                uses,
                token.expires_at.clone(),
                token.description.clone(),
            ]
        })
        .collect()
}

pub(super) const TOKEN_HEADERS: [&str; 7] = [
    "ID",
    "CLUSTER",
    "ROLES",
    "STATE",
    "USES",
    "EXPIRES",
    "DESCRIPTION",
];

/// `muster token …`.
pub(super) async fn token_command(
    command: TokenCommand,
    connection_args: &ConnectionArgs,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    match command {
        TokenCommand::Create {
            cluster,
            roles,
            ttl,
            max_uses,
            description,
            labels,
        } => {
            validate::name("cluster name", &cluster)?;
            validate::description("description", &description)?;
            for (key, value) in &labels {
                validate::name("label key", key)?;
                validate::description("label value", value)?;
            }
            let mut connection = connect(connection_args).await?;
            let request = v1::CreateJoinTokenRequest {
                cluster,
                roles: roles.into_iter().map(|role| role as i32).collect(),
                ttl_seconds: ttl.as_secs().max(1),
                max_uses,
                description,
                labels: labels.into_iter().collect(),
            };
            let response = connection
                .client
                .create_join_token(request)
                .await
                .answer(&connection)?;
            let token = JoinTokenView::from(response.token.unwrap_or_default());
            if json {
                write_json(
                    out,
                    &serde_json::json!({"token": token, "secret_token": response.secret_token}),
                )?;
            } else {
                let uses = token
                    .max_uses
                    .map_or("unlimited".to_owned(), |uses| uses.to_string());
                writeln!(
                    out,
                    "join token {} for cluster {}: roles {}, uses {uses}, expires {}",
                    token.id,
                    token.cluster,
                    token.roles.join(","),
                    token.expires_at
                )?;
                writeln!(out, "{}", response.secret_token)?;
                writeln!(
                    out,
                    "This is the only time the token is shown; only its hash is kept."
                )?;
            }
        }
        TokenCommand::List { cluster } => {
            if let Some(cluster) = &cluster {
                validate::name("cluster name", cluster)?;
            }
            let mut connection = connect(connection_args).await?;
            let request = v1::ListJoinTokensRequest {
                cluster: cluster.unwrap_or_default(),
            };
            let response = connection
                .client
                .list_join_tokens(request)
                .await
                .answer(&connection)?;
            let tokens: Vec<JoinTokenView> = response
                .tokens
                .into_iter()
                .map(JoinTokenView::from)
                .collect();
            if json {
                write_json(out, &tokens)?;
            } else {
                write_table(out, &TOKEN_HEADERS, &token_rows(&tokens))?;
            }
        }
        TokenCommand::Revoke { id } => {
            if !token::is_token_id(&id) {
                return Err(CliError::Usage(format!(
                    "invalid join token id {id:?}: expected {} lowercase hex digits, as `muster token list` shows",
                    token::ID_LEN
                )));
            }
            let mut connection = connect(connection_args).await?;
            let response = connection
                .client
                .revoke_join_token(v1::RevokeJoinTokenRequest { id })
                .await
                .answer(&connection)?;
            let token = JoinTokenView::from(response.token.unwrap_or_default());
            if json {
                write_json(out, &token)?;
            } else {
                writeln!(
                    out,
                    "revoked join token {} of cluster {}",
                    token.id, token.cluster
                )?;
            }
        }
    }
    Ok(())
}
