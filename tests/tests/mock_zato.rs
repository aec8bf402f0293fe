//! mock-zato behaves as Zato 3.2's command line does where Muster depends on it, on SQLite,
//! PostgreSQL and MariaDB.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use muster_testkit::{Backend, TestDatabase, free_port, wait_for};

const MOCK_ZATO: &str = env!("CARGO_BIN_EXE_mock-zato");

fn zato(directory: &Path, args: &[&str], odb: &[String]) -> Output {
    Command::new(MOCK_ZATO)
        .current_dir(directory)
        .args(args)
        .args(odb)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "mock-zato failed: {}",
        stderr(&output)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.lines().all(|line| line.starts_with("[mock-zato] ")),
        "every line is labelled: {stdout}"
    );
    stdout
}

fn refused(output: &Output, status: i32, expected: &str) {
    assert_eq!(output.status.code(), Some(status), "{}", stderr(output));
    assert!(
        stderr(output).contains(expected),
        "expected {expected:?} in {}",
        stderr(output)
    );
}

const SERVER_SECRETS: [&str; 6] = [
    "--jwt-secret",
    "jwt-secret-value",
    "--scheduler-api-client-for-server-password",
    "scheduler-api-password-value",
    "--server-api-client-for-scheduler-password",
    "server-api-password-value",
];

fn http_get(port: u16) -> Option<serde_json::Value> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(stream, "GET /zato/ping HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (_, body) = response.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

async fn seed_procedure(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path();
    let odb = database.zato_odb_options(&work.join("odb.db"));
    let server_dir = work.join("server1");
    std::fs::create_dir(&server_dir).unwrap();
    let port = free_port();
    let port_text = port.to_string();
    let mut server_args = vec![
        "create",
        "server",
        "server1",
        "prod",
        "server1",
        "--http-port",
        &port_text,
        "--secret-key",
        "the-secret-key",
    ];
    server_args.extend(SERVER_SECRETS);

    // Out of order: no ODB yet.
    assert!(!zato(work, &server_args, &odb).status.success());
    ok(zato(work, &["create", "odb"], &odb));
    refused(&zato(work, &["create", "odb"], &odb), 1, "ODB_EXISTS");
    ok(zato(work, &["create", "odb", "--skip-if-exists"], &odb));
    refused(&zato(work, &server_args, &odb), 1, "NO_SUCH_CLUSTER");
    ok(zato(
        work,
        &[
            "create",
            "cluster",
            "prod",
            "--admin-invoke-password",
            "invoke-value",
        ],
        &odb,
    ));
    refused(
        &zato(
            work,
            &["create", "cluster", "prod", "--admin-invoke-password", "x"],
            &odb,
        ),
        1,
        "already exists",
    );
    ok(zato(work, &server_args, &odb));
    let conf = std::fs::read_to_string(server_dir.join("config/repo/server.conf")).unwrap();
    assert!(
        conf.contains(&format!("gunicorn_bind=0.0.0.0:{port}")),
        "{conf}"
    );
    assert!(
        conf.contains(
            "[scheduler]\nscheduler_host=127.0.0.1\nscheduler_port=31530\nscheduler_use_tls=True"
        ),
        "{conf}"
    );
    assert!(server_dir.join(".zato-info").exists());

    let again = work.join("again");
    std::fs::create_dir(&again).unwrap();
    let mut duplicate = server_args.clone();
    duplicate[2] = "again";
    refused(
        &zato(work, &duplicate, &odb),
        1,
        "SERVER_NAME_ALREADY_EXISTS",
    );
    refused(&zato(work, &server_args, &odb), 1, "not empty");

    ok(zato(work, &["start", "server1"], &[]));
    let pong = wait_for(
        "the mock server",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let answer = http_get(port);
            async move { answer }
        },
    )
    .await
    .unwrap();
    assert_eq!(
        (
            pong["pong"].as_str(),
            pong["server"].as_str(),
            pong["cluster"].as_str()
        ),
        (Some("zato"), Some("server1"), Some("prod"))
    );
    assert_eq!(pong["mock"], true);
    refused(
        &zato(work, &["start", "server1"], &[]),
        1,
        "already running",
    );
    ok(zato(work, &["stop", "server1"], &[]));
    assert!(!server_dir.join("pidfile").exists());
    assert!(http_get(port).is_none(), "the server stopped");

    let log = std::fs::read_to_string(work.join("mock-zato.log")).unwrap();
    for secret in [
        "jwt-secret-value",
        "scheduler-api-password-value",
        "server-api-password-value",
        "the-secret-key",
        "invoke-value",
    ] {
        assert!(
            !log.contains(secret),
            "the invocation log masks {secret}: {log}"
        );
    }
    assert!(
        log.contains("zato create server server1 prod server1"),
        "{log}"
    );
    assert!(
        std::fs::read_to_string(server_dir.join("mock-zato.log"))
            .unwrap()
            .contains("zato start server1")
    );
}

#[tokio::test]
async fn seed_procedure_on_sqlite() {
    seed_procedure(Backend::Sqlite).await;
}

#[tokio::test]
async fn seed_procedure_on_postgres() {
    seed_procedure(Backend::Postgres).await;
}

#[tokio::test]
async fn seed_procedure_on_mariadb() {
    seed_procedure(Backend::MySql).await;
}

#[test]
fn strict_parsing_refuses_what_zato_refuses() {
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path();
    let sqlite = [
        "--odb-type",
        "sqlite",
        "--odb-db-name",
        "/nonexistent/odb.db",
    ]
    .map(String::from);
    refused(
        &zato(work, &["create", "odb", "--odb-tipe", "sqlite"], &[]),
        2,
        "unrecognized arguments: --odb-tipe",
    );
    refused(
        &zato(work, &["create", "odb", "--odb-type", "oracle"], &[]),
        2,
        "invalid choice: 'oracle'",
    );
    refused(
        &zato(work, &["create", "cluster"], &sqlite),
        2,
        "required: cluster_name",
    );
    refused(
        &zato(work, &["create", "cluster", "prod"], &sqlite),
        2,
        "--admin-invoke-password is missing",
    );
    let postgres = [
        "--odb-type",
        "postgresql",
        "--odb-host",
        "127.0.0.1",
        "--odb-user",
        "u",
        "--odb-db-name",
        "d",
    ]
    .map(String::from);
    refused(
        &zato(work, &["create", "odb"], &postgres),
        2,
        "--odb-password is missing",
    );
    refused(
        &zato(work, &["create", "server", "a", "prod"], &sqlite),
        2,
        "required: server_name",
    );
    refused(
        &zato(work, &["create", "load-balancer", "lb"], &[]),
        2,
        "invalid choice: 'load-balancer'",
    );
    refused(
        &zato(work, &["stop", "nowhere"], &[]),
        1,
        "No pidfile found",
    );
}

#[test]
fn a_stale_pidfile_or_a_taken_port_stops_start() {
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path();
    let odb = [
        "--odb-type".to_owned(),
        "sqlite".to_owned(),
        "--odb-db-name".to_owned(),
        work.join("odb.db").display().to_string(),
    ];
    ok(zato(work, &["create", "odb"], &odb));
    ok(zato(
        work,
        &["create", "cluster", "prod", "--admin-invoke-password", "x"],
        &odb,
    ));
    std::fs::create_dir(work.join("s")).unwrap();
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let mut args = vec!["create", "server", "s", "prod", "s", "--http-port", &port];
    args.extend(SERVER_SECRETS);
    ok(zato(work, &args, &odb));
    refused(
        &zato(work, &["start", "s"], &[]),
        1,
        &format!("port {port} is already in use"),
    );
    drop(listener);
    std::fs::write(work.join("s/pidfile"), "999999\n").unwrap();
    refused(&zato(work, &["start", "s"], &[]), 1, "stale pidfile");
}
