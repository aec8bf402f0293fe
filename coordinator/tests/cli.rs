//! The real `muster-coordinator` and `muster` binaries, run as processes the way README tells a
//! new user to, on SQLite, PostgreSQL and MariaDB.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use muster_coordinator::config::DataDir;
use muster_coordinator::init::read_secret_box;
use muster_coordinator::pki::certificate_sha256;
use muster_coordinator::store::{DatabaseUrl, SqlStore, Store};
use muster_proto::v1;
use muster_proto::v1::admin_service_client::AdminServiceClient;
use muster_testkit::harness::{command, http_get, text};
use muster_testkit::{Backend, TestDatabase, free_port, wait_for};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

const COORDINATOR: &str = env!("CARGO_BIN_EXE_muster-coordinator");
const MUSTER: &str = env!("CARGO_BIN_EXE_muster");

fn init(data_dir: &Path, database_url: Option<&str>) -> Output {
    let mut init = command(Path::new(COORDINATOR));
    init.arg("init").arg("--data-dir").arg(data_dir);
    if let Some(url) = database_url {
        init.arg("--database-url").arg(url);
    }
    init.output().unwrap()
}

/// A running `muster-coordinator run`, stopped (SIGTERM) when dropped.
struct Coordinator {
    data_dir: PathBuf,
    process: Child,
    grpc_port: u16,
    http_port: u16,
    log: PathBuf,
}

impl Coordinator {
    async fn start(data_dir: &Path) -> Coordinator {
        let (grpc_port, http_port) = (free_port(), free_port());
        let log = data_dir.with_extension(format!("{grpc_port}.log"));
        let process = command(Path::new(COORDINATOR))
            .args(["run", "--data-dir"])
            .arg(data_dir)
            .args(["--listen", &format!("127.0.0.1:{grpc_port}")])
            .args(["--http-listen", &format!("127.0.0.1:{http_port}")])
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut coordinator = Coordinator {
            data_dir: data_dir.to_owned(),
            process,
            grpc_port,
            http_port,
            log,
        };
        let ready = wait_for(
            "the coordinator's /healthz",
            Duration::from_secs(20),
            Duration::from_millis(50),
            || {
                let answer = http_get(http_port, "/healthz");
                async move { answer }
            },
        )
        .await;
        if let Err(error) = ready {
            let exited = coordinator.process.try_wait().unwrap();
            panic!(
                "{error}; exited: {exited:?}; log:\n{}",
                coordinator.log_text()
            );
        }
        coordinator
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.grpc_port)
    }

    fn muster(&self, args: &[&str]) -> Output {
        self.muster_with_stdin(args, "")
    }

    fn muster_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = command(Path::new(MUSTER))
            .env("MUSTER_DATA_DIR", &self.data_dir)
            .env("MUSTER_COORDINATOR", self.url())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs `muster ARGS` and returns its stdout, failing the test if it fails.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.muster(args);
        assert!(
            output.status.success(),
            "muster {args:?} failed: {}",
            text(&output.stderr)
        );
        text(&output.stdout)
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut with_json = vec!["--output", "json"];
        with_json.extend_from_slice(args);
        serde_json::from_str(&self.ok(&with_json)).unwrap()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for a clean exit.
    fn stop(mut self) -> std::process::ExitStatus {
        self.terminate()
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.process.id().to_string()])
            .status();
        self.process.wait().unwrap()
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        if self.process.try_wait().ok().flatten().is_none() {
            self.terminate();
        }
    }
}

async fn grpc_channel(coordinator: &Coordinator) -> Channel {
    let ca = std::fs::read_to_string(coordinator.data_dir.join("ca.pem")).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("127.0.0.1");
    Endpoint::from_shared(coordinator.url())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn with_admin_token<T>(coordinator: &Coordinator, message: T) -> tonic::Request<T> {
    let token = std::fs::read_to_string(coordinator.data_dir.join("admin.token")).unwrap();
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", token.trim()).parse().unwrap(),
    );
    request
}

fn one_line_error(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "expected a failure, got {}",
        text(&output.stdout)
    );
    let stderr = text(&output.stderr);
    assert_eq!(
        stderr.lines().count(),
        1,
        "expected one line, got: {stderr}"
    );
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}

fn snapshot(directory: &Path) -> BTreeMap<String, (Vec<u8>, std::time::SystemTime)> {
    std::fs::read_dir(directory)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let metadata = entry.metadata().unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                (
                    std::fs::read(entry.path()).unwrap(),
                    metadata.modified().unwrap(),
                ),
            )
        })
        .collect()
}

/// README's first steps: init, run, create a cluster, list it; then tokens, events, delete.
async fn new_user_flow(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("muster");
    let url = (backend != Backend::Sqlite).then_some(database.url.as_str());

    let initialized = init(&data_dir, url);
    assert!(
        initialized.status.success(),
        "init failed: {}",
        text(&initialized.stderr)
    );
    let printed = text(&initialized.stdout);
    let token_file = std::fs::read_to_string(data_dir.join("admin.token")).unwrap();
    assert!(
        printed.contains(token_file.trim()),
        "init prints the admin token once: {printed}"
    );
    for private in ["admin.token", "ca.key", "server.key", "secret.key"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(data_dir.join(private))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{private}");
    }

    let coordinator = Coordinator::start(&data_dir).await;
    assert_eq!(
        coordinator.ok(&["create", "cluster", "demo"]).trim(),
        "created cluster demo"
    );
    let table = coordinator.ok(&["cluster", "list"]);
    assert!(table.lines().next().unwrap().starts_with("NAME"), "{table}");
    assert!(
        table.lines().nth(1).unwrap().starts_with("demo "),
        "{table}"
    );
    let clusters = coordinator.json(&["cluster", "list"]);
    assert_eq!(clusters[0]["name"], "demo");
    assert_eq!(clusters[0]["odb_type"], "sqlite");

    let created = coordinator.json(&[
        "token",
        "create",
        "--cluster",
        "demo",
        "--role",
        "server",
        "--max-uses",
        "2",
    ]);
    let secret_token = created["secret_token"].as_str().unwrap();
    let parsed = muster_proto::token::JoinToken::parse(secret_token).unwrap();
    let ca_pem = std::fs::read_to_string(data_dir.join("ca.pem")).unwrap();
    assert_eq!(
        parsed.ca_sha256,
        certificate_sha256(&ca_pem, "ca.pem").unwrap()
    );
    let tokens = coordinator.json(&["token", "list", "--cluster", "demo"]);
    assert_eq!(tokens[0]["id"], parsed.id.as_str());
    assert_eq!(
        (tokens[0]["state"].as_str(), tokens[0]["max_uses"].as_u64()),
        (Some("active"), Some(2))
    );
    coordinator.ok(&["token", "revoke", &parsed.id]);
    assert_eq!(coordinator.json(&["token", "list"])[0]["state"], "revoked");

    let events = coordinator.json(&["events", "--cluster", "demo"]);
    let kinds: Vec<_> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["token.revoked", "token.created", "cluster.created"]);

    coordinator.ok(&["cluster", "delete", "demo", "--yes"]);
    assert_eq!(
        coordinator.json(&["cluster", "list"]),
        serde_json::json!([])
    );
    assert_eq!(coordinator.json(&["token", "list"]), serde_json::json!([]));
    assert!(
        coordinator.stop().success(),
        "the coordinator exits cleanly on SIGTERM"
    );
}

#[tokio::test]
async fn new_user_flow_on_sqlite() {
    new_user_flow(Backend::Sqlite).await;
}

#[tokio::test]
async fn new_user_flow_on_postgres() {
    new_user_flow(Backend::Postgres).await;
}

#[tokio::test]
async fn new_user_flow_on_mariadb() {
    new_user_flow(Backend::MySql).await;
}

#[tokio::test]
async fn a_cluster_survives_a_coordinator_restart() {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("muster");
    assert!(init(&data_dir, None).status.success());
    let coordinator = Coordinator::start(&data_dir).await;
    coordinator.ok(&["create", "cluster", "kept", "--description", "survives"]);
    assert!(coordinator.stop().success());

    let restarted = Coordinator::start(&data_dir).await;
    let cluster = restarted.json(&["cluster", "show", "kept"]);
    assert_eq!(
        (cluster["name"].as_str(), cluster["description"].as_str()),
        (Some("kept"), Some("survives"))
    );
}

#[tokio::test]
async fn two_coordinators_on_one_postgres_database_see_each_others_writes() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let scratch = tempfile::tempdir().unwrap();
    let first_dir = scratch.path().join("first");
    assert!(init(&first_dir, Some(&database.url)).status.success());
    // A second copy shares the CA, keys and database: copy the data directory, as an operator would.
    let second_dir = scratch.path().join("second");
    std::fs::create_dir(&second_dir).unwrap();
    for entry in std::fs::read_dir(&first_dir).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), second_dir.join(entry.file_name())).unwrap();
    }
    let first = Coordinator::start(&first_dir).await;
    let second = Coordinator::start(&second_dir).await;

    first.ok(&["create", "cluster", "alpha"]);
    second.ok(&["create", "cluster", "beta"]);
    for coordinator in [&first, &second] {
        let names: Vec<_> = coordinator
            .json(&["cluster", "list"])
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["alpha", "beta"]);
    }
    let duplicate = second.muster(&["create", "cluster", "alpha"]);
    assert!(one_line_error(&duplicate).contains("cluster 'alpha' already exists"));
}

#[tokio::test]
async fn init_refuses_an_initialized_directory_and_changes_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("muster");
    assert!(init(&data_dir, None).status.success());
    let before = snapshot(&data_dir);
    let again = init(&data_dir, None);
    let error = one_line_error(&again);
    assert!(error.contains("already initialized"), "{error}");
    assert_eq!(snapshot(&data_dir), before);
}

/// An initialized data directory whose SQLite database is gone (deleted, a lost volume) is not
/// a new coordinator: `run` refuses, names the file, and creates nothing.
#[tokio::test]
async fn run_refuses_an_initialized_directory_whose_database_is_missing() {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("muster");
    assert!(init(&data_dir, None).status.success());
    let database = data_dir.join("muster.db");
    assert!(database.exists(), "init made the embedded database");
    for file in ["muster.db", "muster.db-wal", "muster.db-shm"] {
        let _ = std::fs::remove_file(data_dir.join(file));
    }
    let run = command(Path::new(COORDINATOR))
        .arg("run")
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--http-listen")
        .arg("127.0.0.1:0")
        .output()
        .unwrap();
    let error = one_line_error(&run);
    assert!(
        error.contains(&format!(
            "the database {} of the initialized data directory",
            database.display()
        )) && error.contains("restore it from a backup"),
        "{error}"
    );
    assert!(!database.exists(), "run made no new database");
}

#[tokio::test]
async fn init_with_a_bad_database_url_creates_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    for (url, expected) in [
        ("postgress://postgres@127.0.0.1/x", "unknown scheme"),
        ("not a url", "not a URL"),
        (
            "postgres://postgres@127.0.0.1:5432/muster_does_not_exist",
            "does not exist",
        ),
    ] {
        let data_dir = scratch.path().join("muster");
        let error = one_line_error(&init(&data_dir, Some(url)));
        assert!(error.contains(expected), "{url}: {error}");
        assert!(!data_dir.exists(), "{url} left {}", data_dir.display());
    }
}

#[tokio::test]
async fn errors_are_one_clear_line() {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("muster");
    assert!(init(&data_dir, None).status.success());
    let coordinator = Coordinator::start(&data_dir).await;

    let unknown = one_line_error(&coordinator.muster(&["cluster", "show", "nope"]));
    assert_eq!(unknown.trim(), "error: cluster 'nope' not found");

    let wrong_token = format!("muster-admin.0123456789abcdef.{}", "0".repeat(32));
    let refused =
        one_line_error(&coordinator.muster(&["--token", &wrong_token, "cluster", "list"]));
    assert!(refused.contains("refused the admin token"), "{refused}");

    let malformed = one_line_error(&coordinator.muster(&["--token", "hunter2", "cluster", "list"]));
    assert!(malformed.contains("malformed admin token"), "{malformed}");
    assert!(!malformed.contains("hunter2"), "{malformed}");

    let closed_port = free_port();
    let unreachable = one_line_error(&coordinator.muster(&[
        "--coordinator",
        &format!("https://127.0.0.1:{closed_port}"),
        "cluster",
        "list",
    ]));
    assert!(
        unreachable.contains(&format!(
            "cannot reach the coordinator at https://127.0.0.1:{closed_port}"
        )),
        "{unreachable}"
    );

    let other_ca = tempfile::tempdir().unwrap();
    assert!(init(&other_ca.path().join("d"), None).status.success());
    let ca_file = other_ca.path().join("d/ca.pem");
    let untrusted = one_line_error(&coordinator.muster(&[
        "--ca-file",
        ca_file.to_str().unwrap(),
        "cluster",
        "list",
    ]));
    assert!(
        untrusted.contains("cannot reach the coordinator"),
        "{untrusted}"
    );
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("muster");
    assert!(init(&data_dir, None).status.success());
    let coordinator = Coordinator::start(&data_dir).await;

    for bad_name in ["two words", "line\nbreak", "semi;colon", "-dash"] {
        let error = one_line_error(&coordinator.muster(&["create", "cluster", "--", bad_name]));
        assert!(error.contains("invalid cluster name"), "{error}");
        assert!(
            error.contains(&format!("{bad_name:?}")),
            "the value is named: {error}"
        );
    }
    let bad_revoke = one_line_error(&coordinator.muster(&["token", "revoke", "MUSTER1-abc"]));
    assert!(bad_revoke.contains("invalid join token id"), "{bad_revoke}");
    let bad_role =
        coordinator.muster(&["token", "create", "--cluster", "x", "--role", "dashboard"]);
    assert!(!bad_role.status.success());
    assert!(
        text(&bad_role.stderr).contains("unknown role 'dashboard'"),
        "{}",
        text(&bad_role.stderr)
    );

    for (flag, value, named) in [
        (
            "--frontend-address",
            "0.0.0.0 ssl",
            r#"invalid frontend address "0.0.0.0 ssl""#,
        ),
        (
            "--haproxy-bin",
            "haproxy -d",
            r#"invalid HAProxy binary "haproxy -d""#,
        ),
        ("--check-inter", "10ms", r#"invalid check interval "10ms""#),
    ] {
        let error = one_line_error(&coordinator.muster(&[
            "create",
            "load-balancer",
            "--cluster",
            "prod",
            "--host",
            "edge",
            flag,
            value,
        ]));
        assert!(error.contains(named), "{error}");
    }
    let nothing = one_line_error(&coordinator.muster(&[
        "configure",
        "load-balancer",
        "--cluster",
        "prod",
        "--host",
        "edge",
    ]));
    assert!(nothing.contains("nothing to change"), "{nothing}");

    // The server checks too, whatever the client: a name with a newline and a 10 MB request.
    let mut client = AdminServiceClient::new(grpc_channel(&coordinator).await);
    let injected = v1::CreateComponentRequest {
        cluster: "prod".into(),
        role: v1::Role::LoadBalancer as i32,
        host: "edge".into(),
        load_balancer: Some(v1::LoadBalancerSettings {
            frontend_address: "0.0.0.0:80\n    bind *:81".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let status = client
        .create_component(with_admin_token(&coordinator, injected))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains(r#""0.0.0.0:80\n    bind *:81""#),
        "{}",
        status.message()
    );
    let injected = v1::CreateClusterRequest {
        name: "evil\nbackend x".into(),
        ..Default::default()
    };
    let status = client
        .create_cluster(with_admin_token(&coordinator, injected))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains(r#""evil\nbackend x""#),
        "{}",
        status.message()
    );
    let huge = v1::CreateClusterRequest {
        name: "huge".into(),
        description: "x".repeat(10 * 1024 * 1024),
        ..Default::default()
    };
    let status = client
        .create_cluster(with_admin_token(&coordinator, huge))
        .await
        .unwrap_err();
    assert!(
        matches!(
            status.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "{status:?}"
    );
    assert!(
        status.message().contains("too large"),
        "{}",
        status.message()
    );
    let no_token = client
        .list_clusters(v1::ListClustersRequest {})
        .await
        .unwrap_err();
    assert_eq!(no_token.code(), tonic::Code::Unauthenticated);

    assert_eq!(
        coordinator.json(&["cluster", "list"]),
        serde_json::json!([])
    );
    let events = coordinator.json(&["events"]);
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .all(|event| event["kind"] != "cluster.created")
    );
}

#[tokio::test]
async fn no_secret_reaches_a_log_or_an_output() {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("muster");
    assert!(init(&data_dir, None).status.success());
    let coordinator = Coordinator::start(&data_dir).await;
    let odb_password = "Odb-Password-7f3a91";

    let mut outputs = Vec::new();
    let mut run = |args: &[&str], stdin: &str| {
        let output = coordinator.muster_with_stdin(args, stdin);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            text(&output.stderr)
        );
        outputs.push(format!("{}{}", text(&output.stdout), text(&output.stderr)));
    };
    run(
        &[
            "create",
            "cluster",
            "prod",
            "--odb-type",
            "postgresql",
            "--odb-host",
            "db.internal",
            "--odb-user",
            "zato",
            "--odb-db-name",
            "zato",
            "--odb-password-file",
            "-",
        ],
        &format!("{odb_password}\n"),
    );
    run(&["cluster", "show", "prod"], "");
    run(&["--output", "json", "cluster", "show", "prod"], "");
    run(&["cluster", "list"], "");
    let created = coordinator.json(&["token", "create", "--cluster", "prod", "--role", "server"]);
    let join_secret =
        muster_proto::token::JoinToken::parse(created["secret_token"].as_str().unwrap())
            .unwrap()
            .secret;
    run(&["token", "list"], "");
    run(&["--output", "json", "token", "list"], "");
    run(&["events"], "");
    run(&["--output", "json", "events"], "");
    assert!(
        outputs[1].contains("odb password       set"),
        "{}",
        outputs[1]
    );
    coordinator.stop();

    let layout = DataDir::new(&data_dir);
    let store = SqlStore::connect(
        &DatabaseUrl::sqlite_file(&data_dir.join("muster.db")),
        read_secret_box(&layout).unwrap(),
    )
    .await
    .unwrap();
    let secrets = store.cluster_secrets("prod").await.unwrap();
    assert_eq!(
        secrets.odb_password, odb_password,
        "the password file's newline is removed"
    );
    let admin_token = std::fs::read_to_string(layout.admin_token()).unwrap();
    let log = std::fs::read_to_string(
        data_dir.with_extension(format!("{}.log", coordinator_port(&data_dir))),
    )
    .unwrap_or_default();
    for (what, secret) in [
        ("ODB password", secrets.odb_password.as_str()),
        ("secret key", &secrets.secret_key),
        ("JWT secret", &secrets.jwt_secret),
        ("admin.invoke password", &secrets.admin_invoke_password),
        ("admin token", admin_token.trim()),
        ("join token secret", &join_secret),
    ] {
        assert!(
            !log.contains(secret),
            "the coordinator's log holds the {what}"
        );
        for output in &outputs {
            assert!(
                !output.contains(secret),
                "a CLI output holds the {what}: {output}"
            );
        }
    }
    assert!(log.contains("cluster created"), "the log was read: {log}");
}

/// The port of the one coordinator log written beside `data_dir`.
fn coordinator_port(data_dir: &Path) -> String {
    let parent = data_dir.parent().unwrap();
    std::fs::read_dir(parent)
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .find_map(|name| {
            name.strip_prefix("muster.")?
                .strip_suffix(".log")
                .map(str::to_owned)
        })
        .expect("a coordinator log")
}

#[tokio::test]
async fn health_metrics_and_reflection_are_served() {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("muster");
    assert!(init(&data_dir, None).status.success());
    let coordinator = Coordinator::start(&data_dir).await;
    coordinator.ok(&["create", "cluster", "one"]);

    let metrics = http_get(coordinator.http_port, "/metrics").unwrap();
    assert!(metrics.contains("\nmuster_clusters 1\n"), "{metrics}");
    assert!(metrics.contains("\nmuster_database_up 1\n"), "{metrics}");

    let channel = grpc_channel(&coordinator).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "muster.v1.AdminService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        serving.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel);
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<_> = list
        .service
        .into_iter()
        .map(|service| service.name)
        .collect();
    for expected in ["muster.v1.AdminService", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|name| name == expected), "{names:?}");
    }
}

#[test]
fn validate_names_a_bad_key_and_accepts_a_good_file() {
    let scratch = tempfile::tempdir().unwrap();
    let bad = scratch.path().join("bad.toml");
    std::fs::write(
        &bad,
        "data_dir = \"/var/lib/muster\"\nlisen = \"0.0.0.0:17300\"\n",
    )
    .unwrap();
    let output = command(Path::new(COORDINATOR))
        .args(["validate", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let error = one_line_error(&output);
    assert!(
        error.contains("unknown field `lisen`") && error.contains("bad.toml"),
        "{error}"
    );

    let bad_value = scratch.path().join("bad-value.toml");
    std::fs::write(
        &bad_value,
        "data_dir = \"/x\"\nhttp_listen = \"localhost\"\n",
    )
    .unwrap();
    let output = command(Path::new(COORDINATOR))
        .args(["validate", "--config"])
        .arg(&bad_value)
        .output()
        .unwrap();
    assert!(one_line_error(&output).contains("http_listen = \"localhost\""));

    let good = scratch.path().join("good.toml");
    std::fs::write(&good, "data_dir = \"/var/lib/muster\"\ndatabase_url = \"postgres://muster@db/muster\"\nlisten = \"0.0.0.0:17300\"\n").unwrap();
    let output = command(Path::new(COORDINATOR))
        .args(["validate", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
}

/// The SQLite store through a full disk: writes that fail are refused and leave nothing behind,
/// `/healthz` says the store cannot write, and once there is room again every write that was
/// acknowledged is there (also after a restart), reads agree, and writes succeed at once.
#[tokio::test]
async fn the_sqlite_store_recovers_from_a_full_disk_and_keeps_what_it_acknowledged() {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("muster");
    let disk = muster_testkit::disk::SmallFilesystem::mount(&data_dir, "8m");
    assert!(init(&data_dir, None).status.success());
    let coordinator = Coordinator::start(&data_dir).await;
    coordinator.ok(&["create", "cluster", "before"]);
    let mut acknowledged = vec!["before".to_owned()];

    let filler = disk.fill();
    // The write-ahead log may still have room for a few writes; the first refusal comes soon.
    let mut refused = Vec::new();
    for attempt in 0..200 {
        let name = format!("full-{attempt}");
        let output = coordinator.muster(&["create", "cluster", &name]);
        if output.status.success() {
            acknowledged.push(name);
        } else {
            let error = one_line_error(&output);
            assert!(!error.is_empty(), "a refused write says why");
            refused.push(name);
            if refused.len() == 3 {
                break;
            }
        }
    }
    assert_eq!(refused.len(), 3, "writes to a full disk are refused");
    let health = http_status(coordinator.http_port, "/healthz");
    assert_eq!(health, 503, "/healthz reports a store that cannot write");

    std::fs::remove_file(filler).unwrap();
    let port = coordinator.http_port;
    wait_for(
        "/healthz to say the store writes again",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async move { (http_status(port, "/healthz") == 200).then_some(()) },
    )
    .await
    .unwrap();
    // At once, not after minutes of "database is locked".
    coordinator.ok(&["create", "cluster", "after"]);
    acknowledged.push("after".to_owned());

    let names = |coordinator: &Coordinator| -> Vec<String> {
        let mut names: Vec<String> = coordinator
            .json(&["cluster", "list"])
            .as_array()
            .unwrap()
            .iter()
            .map(|cluster| cluster["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    acknowledged.sort();
    for _ in 0..5 {
        assert_eq!(names(&coordinator), acknowledged, "reads agree");
    }
    coordinator.stop();
    let coordinator = Coordinator::start(&data_dir).await;
    assert_eq!(
        names(&coordinator),
        acknowledged,
        "every acknowledged write survived a restart, and no refused one appeared"
    );
}

/// The HTTP status code of `GET path` on 127.0.0.1, or 0 when nothing answers.
fn http_status(port: u16, path: &str) -> u16 {
    muster_testkit::traffic::get(std::net::SocketAddr::from(([127, 0, 0, 1], port)), path)
        .map_or(0, |(status, _)| status)
}

/// A database that falls silent (a partition: no refusal, no reset) is reported by `/healthz` as
/// 503 within its bound instead of a hang, and by `/metrics` as down; once the database answers
/// again, `/healthz` is 200 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_within_its_bound_while_the_database_is_silent() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let (before_host, rest) = database.url.split_once('@').unwrap();
    let (server, name) = rest.split_once('/').unwrap();
    let proxy = muster_testkit::proxy::FreezableProxy::start(server.parse().unwrap()).await;
    let url = format!("{before_host}@{}/{name}", proxy.address);
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("muster");
    assert!(init(&data_dir, Some(&url)).status.success());
    let coordinator = Coordinator::start(&data_dir).await;
    coordinator.ok(&["create", "cluster", "one"]);
    assert_eq!(http_status(coordinator.http_port, "/healthz"), 200);

    proxy.freeze();
    let asked = std::time::Instant::now();
    let health = http_status(coordinator.http_port, "/healthz");
    println!("/healthz answered {health} after {:?}", asked.elapsed());
    assert_eq!(health, 503, "a silent database is reported, not waited for");
    let metrics = http_get(coordinator.http_port, "/metrics").expect("/metrics answers");
    assert!(metrics.contains("\nmuster_database_up 0\n"), "{metrics}");
    assert!(
        coordinator
            .log_text()
            .contains("the database did not take a write within 3 s"),
        "the log says why"
    );

    proxy.thaw();
    let port = coordinator.http_port;
    wait_for(
        "/healthz once the database answers again",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async move { (http_status(port, "/healthz") == 200).then_some(()) },
    )
    .await
    .unwrap();
    coordinator.ok(&["create", "cluster", "two"]);
}
