//! Finding and reaching the coordinator: URL, CA, admin token, and its errors in words.

use super::*;

#[derive(Debug, Args)]
pub(super) struct ConnectionArgs {
    /// The coordinator's gRPC URL.
    #[arg(
        long,
        global = true,
        help_heading = "Connection",
        env = "MUSTER_COORDINATOR",
        default_value = "https://127.0.0.1:17300"
    )]
    pub(super) coordinator: String,
    /// The CA certificate that signed the coordinator's certificate (its ca.pem).
    #[arg(
        long,
        global = true,
        help_heading = "Connection",
        env = "MUSTER_CA_FILE"
    )]
    pub(super) ca_file: Option<PathBuf>,
    /// The admin token. Prefer --token-file: a command line is visible to other local users.
    #[arg(
        long,
        global = true,
        help_heading = "Connection",
        env = "MUSTER_TOKEN",
        hide_env_values = true
    )]
    pub(super) token: Option<String>,
    /// A file holding the admin token.
    #[arg(
        long,
        global = true,
        help_heading = "Connection",
        env = "MUSTER_TOKEN_FILE"
    )]
    pub(super) token_file: Option<PathBuf>,
    /// A local coordinator's data directory: its ca.pem and admin.token are used unless
    /// --ca-file or a token is given.
    #[arg(
        long,
        global = true,
        help_heading = "Connection",
        env = "MUSTER_DATA_DIR"
    )]
    pub(super) data_dir: Option<PathBuf>,
    /// How long one call may take, e.g. 30s.
    #[arg(long, global = true, help_heading = "Connection", default_value = "30s", value_parser = humantime::parse_duration)]
    pub(super) timeout: Duration,
}

#[derive(Clone)]
pub(super) struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

pub(super) type Client = AdminServiceClient<InterceptedService<Channel, Bearer>>;

pub(super) struct Connection {
    pub(super) client: Client,
    pub(super) url: String,
}

/// A call's answer as the CLI uses it: the message, or the error that says what went wrong and
/// where (`connection.client.list_hosts(request).await.answer(&connection)?`).
pub(super) trait Answer<T> {
    fn answer(self, connection: &Connection) -> Result<T, CliError>;
}

impl<T> Answer<T> for Result<tonic::Response<T>, Status> {
    fn answer(self, connection: &Connection) -> Result<T, CliError> {
        self.map(tonic::Response::into_inner)
            .map_err(|status| connection.status_error(&status))
    }
}

impl Connection {
    pub(super) fn status_error(&self, status: &Status) -> CliError {
        match status.code() {
            Code::Unauthenticated => CliError::Unauthenticated {
                url: self.url.clone(),
                message: status.message().to_owned(),
            },
            Code::Unavailable if status.message().contains("transport") => CliError::Unreachable {
                url: self.url.clone(),
                detail: transport_detail(status),
            },
            Code::NotFound => CliError::NotFound(status.message().to_owned()),
            Code::AlreadyExists => CliError::Exists(status.message().to_owned()),
            Code::InvalidArgument => CliError::Usage(status.message().to_owned()),
            _ => CliError::Refused(status.message().to_owned()),
        }
    }
}

pub(super) fn transport_detail(status: &Status) -> String {
    use std::error::Error as _;
    match status.source() {
        Some(source) => crate::error_chain(source),
        None => status.message().to_owned(),
    }
}

pub(super) fn read_admin_token(args: &ConnectionArgs) -> Result<AdminToken, CliError> {
    let text = if let Some(token) = &args.token {
        token.clone()
    } else {
        let path = match (&args.token_file, &args.data_dir) {
            (Some(path), _) => path.clone(),
            (None, Some(data_dir)) => data_dir.join("admin.token"),
            (None, None) => {
                return Err(CliError::Usage(
                    "no admin token: pass --token-file or --token, set MUSTER_TOKEN_FILE or MUSTER_TOKEN, or point --data-dir at a local coordinator's data directory".to_owned(),
                ));
            }
        };
        std::fs::read_to_string(&path).map_err(|error| {
            CliError::Usage(format!(
                "cannot read the admin token file {}: {error}",
                path.display()
            ))
        })?
    };
    AdminToken::parse(&text).map_err(|error| CliError::Usage(error.to_string()))
}

pub(super) fn read_ca(args: &ConnectionArgs) -> Result<String, CliError> {
    let path = match (&args.ca_file, &args.data_dir) {
        (Some(path), _) => path.clone(),
        (None, Some(data_dir)) => data_dir.join("ca.pem"),
        (None, None) => {
            return Err(CliError::Usage(
                "no CA certificate: pass --ca-file, set MUSTER_CA_FILE, or point --data-dir at a local coordinator's data directory".to_owned(),
            ));
        }
    };
    std::fs::read_to_string(&path).map_err(|error| {
        CliError::Usage(format!(
            "cannot read the CA file {}: {error}",
            path.display()
        ))
    })
}

pub(super) async fn connect(args: &ConnectionArgs) -> Result<Connection, CliError> {
    let token = read_admin_token(args)?;
    let ca_pem = read_ca(args)?;
    let url = args.coordinator.clone();
    let parsed = url::Url::parse(&url)
        .map_err(|error| CliError::Usage(format!("invalid --coordinator URL {url:?}: {error}")))?;
    if parsed.scheme() != "https" {
        return Err(CliError::Usage(format!(
            "invalid --coordinator URL {url:?}: the coordinator speaks TLS only, use https://"
        )));
    }
    let host = parsed
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name(host);
    let endpoint = Endpoint::from_shared(url.clone())
        .and_then(|endpoint| endpoint.tls_config(tls))
        .map_err(|error| CliError::Usage(format!("invalid --coordinator URL {url:?}: {error}")))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(args.timeout);
    let channel = endpoint
        .connect()
        .await
        .map_err(|error| CliError::Unreachable {
            url: url.clone(),
            detail: {
                use std::error::Error as _;
                error
                    .source()
                    .map(crate::error_chain)
                    .unwrap_or_else(|| error.to_string())
            },
        })?;
    let mut header = MetadataValue::try_from(format!("Bearer {token}"))
        .map_err(|_| CliError::Usage("the admin token cannot be sent as a header".to_owned()))?;
    header.set_sensitive(true);
    Ok(Connection {
        client: AdminServiceClient::with_interceptor(channel, Bearer(header)),
        url,
    })
}
