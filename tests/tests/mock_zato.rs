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

const SERVER_SECRETS: [&str; 4] = [
    "--jwt-secret",
    "jwt-secret-value",
    "--scheduler-api-client-for-server-password",
    "scheduler-api-password-value",
];

/// One HTTP exchange: (status, body).
fn http(port: u16, request: &str) -> Option<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let (_, body) = response.split_once("\r\n\r\n")?;
    Some((status, body.to_owned()))
}

fn http_get(port: u16) -> Option<serde_json::Value> {
    let (_, body) = http(port, "GET /zato/ping HTTP/1.1\r\nHost: x\r\n\r\n")?;
    serde_json::from_str(&body).ok()
}

fn http_post(port: u16, path: &str, headers: &str, body: &str) -> Option<(u16, String)> {
    http(
        port,
        &format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// Gives the server in `server_dir` IPC ports of its own: tests run side by side on one host.
fn own_ipc_range(server_dir: &Path) {
    let path = server_dir.join("config/repo/server.conf");
    let conf = std::fs::read_to_string(&path).unwrap();
    let first = muster_testkit::free_port_block(5);
    std::fs::write(
        &path,
        conf.replace("ipc_port_start=17050", &format!("ipc_port_start={first}")),
    )
    .unwrap();
}

async fn answering(port: u16) -> serde_json::Value {
    wait_for(
        "the mock component",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let answer = http_get(port);
            async move { answer }
        },
    )
    .await
    .unwrap()
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

    // Out of order: no ODB yet. Zato writes the server's tree before it fails.
    assert!(!zato(work, &server_args, &odb).status.success());
    std::fs::remove_dir_all(&server_dir).unwrap();
    std::fs::create_dir(&server_dir).unwrap();
    ok(zato(work, &["create", "odb"], &odb));
    refused(&zato(work, &["create", "odb"], &odb), 1, "ODB_EXISTS");
    ok(zato(work, &["create", "odb", "--skip-if-exists"], &odb));
    // As in Zato 3.2, `--skip-if-exists` skips whenever the ODB's tables exist: no cluster row.
    ok(zato(
        work,
        &[
            "create",
            "cluster",
            "prod",
            "--admin-invoke-password",
            "invoke-value",
            "--skip-if-exists",
        ],
        &odb,
    ));
    refused(
        &zato(work, &server_args, &odb),
        8,
        "Cluster `prod` doesn't exist in ODB",
    );
    std::fs::remove_dir_all(&server_dir).unwrap();
    std::fs::create_dir(&server_dir).unwrap();
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
        16,
        "IntegrityError",
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
    refused(&zato(work, &duplicate, &odb), 7, "already exists");
    refused(&zato(work, &server_args, &odb), 1, "not empty");

    own_ipc_range(&server_dir);
    ok(zato(work, &["start", "server1"], &[]));
    if backend == Backend::MySql {
        // Zato 3.2's server dies at its start on MariaDB 10.5 and later (get_lock).
        let log = server_dir.join("logs/server.log");
        wait_for(
            "the server to die on MariaDB",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || {
                let died = !server_dir.join("pidfile").exists()
                    && std::fs::read_to_string(&log).is_ok_and(|text| {
                        text.contains("Illegal parameter data type bigint for operation 'get_lock'")
                    });
                async move { died.then_some(()) }
            },
        )
        .await
        .unwrap();
        assert!(http_get(port).is_none(), "no server answers");
        return;
    }
    let pong = answering(port).await;
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
        1,
        "--admin-invoke-password is missing or empty",
    );
    refused(
        &zato(
            work,
            &["create", "cluster", "prod", "--admin-invoke-password="],
            &sqlite,
        ),
        1,
        "--admin-invoke-password is missing or empty",
    );
    // argparse takes a separate value that starts with `-` for an option.
    refused(
        &zato(
            work,
            &[
                "create",
                "cluster",
                "prod",
                "--admin-invoke-password",
                "-abc",
            ],
            &sqlite,
        ),
        2,
        "argument --admin-invoke-password: expected one argument",
    );
    // A Zato command word before the first option is taken as that command.
    refused(
        &zato(
            work,
            &[
                "create",
                "cluster",
                "quickstart",
                "--admin-invoke-password=x",
            ],
            &sqlite,
        ),
        1,
        "IndexError",
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
        &zato(
            work,
            &["create", "cluster", "prod", "--admin-invoke-password=x"],
            &postgres,
        ),
        1,
        "--odb-password is missing or empty",
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

/// A cluster with an SQLite ODB in `work`; returns its `--odb-*` options.
fn sqlite_cluster(work: &Path) -> [String; 2] {
    let odb = [
        "--odb-type=sqlite".to_owned(),
        format!("--odb-db-name={}", work.join("odb.db").display()),
    ];
    ok(zato(work, &["create", "odb"], &odb));
    ok(zato(
        work,
        &["create", "cluster", "--admin-invoke-password=x", "prod"],
        &odb,
    ));
    odb
}

fn create_server(work: &Path, odb: &[String], name: &str, port: u16, extra: &[&str]) {
    std::fs::create_dir(work.join(name)).unwrap();
    let mut args = vec![
        "create".to_owned(),
        "server".to_owned(),
        format!("--http-port={port}"),
        "--jwt-secret=j".to_owned(),
    ];
    args.extend(extra.iter().map(|arg| (*arg).to_owned()));
    args.extend([name.to_owned(), "prod".to_owned(), name.to_owned()]);
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(zato(work, &words, odb));
}

/// `zato start` returns before the component writes its pidfile; a second start in that window
/// makes a second process that fails on the port and removes the pidfile, and the first one
/// serves on, unmanaged: what a real Zato server does.
#[tokio::test]
async fn start_returns_before_the_pidfile_and_a_second_start_orphans_the_first() {
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path();
    let odb = sqlite_cluster(work);
    let port = free_port();
    create_server(work, &odb, "s", port, &[]);
    let conf = std::fs::read_to_string(work.join("s/config/repo/server.conf")).unwrap();
    assert!(conf.contains("ipc_port_start=17050"), "{conf}");
    let link = std::fs::read_link(work.join("s/config/repo/user-conf")).unwrap();
    assert!(
        link.is_absolute(),
        "Zato links user-conf absolutely: {link:?}"
    );
    own_ipc_range(&work.join("s"));
    ok(zato(work, &["start", "s"], &[]));
    assert!(
        !work.join("s/pidfile").exists(),
        "the pidfile comes seconds after start returned"
    );
    ok(zato(work, &["start", "s"], &[]));
    let first = answering(port).await;
    wait_for(
        "the second process to give up",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let log =
                std::fs::read_to_string(work.join("s/logs/mock-component.log")).unwrap_or_default();
            log.contains("cannot bind port").then_some(())
        },
    )
    .await
    .unwrap();
    assert!(
        !work.join("s/pidfile").exists(),
        "the second process removed the pidfile"
    );
    assert_eq!(
        http_get(port).unwrap()["pid"],
        first["pid"],
        "the first serves on"
    );
    let pid = i32::try_from(first["pid"].as_i64().unwrap()).unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    );
}

/// Two servers with the same `ipc_port_start` collide on Zato's IPC port.
#[tokio::test]
async fn two_servers_with_one_ipc_range_collide() {
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path();
    let odb = sqlite_cluster(work);
    let ipc = muster_testkit::free_port_block(5).to_string();
    let (first_port, second_port) = (free_port(), free_port());
    for (name, port) in [("a", first_port), ("b", second_port)] {
        create_server(work, &odb, name, port, &[]);
        let path = work.join(name).join("config/repo/server.conf");
        let conf = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            conf.replace("ipc_port_start=17050", &format!("ipc_port_start={ipc}")),
        )
        .unwrap();
        ok(zato(work, &["start", name], &[]));
        // The first holds its IPC ports once it answers (it binds them before it serves); only
        // then does the second start, so it is the second that collides, not either one.
        if name == "a" {
            answering(first_port).await;
        }
    }
    wait_for(
        "the second server to fail on the IPC port",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            let log =
                std::fs::read_to_string(work.join("b/logs/mock-component.log")).unwrap_or_default();
            log.contains("cannot bind the IPC port").then_some(())
        },
    )
    .await
    .unwrap();
    assert!(http_get(second_port).is_none());
    ok(zato(work, &["stop", "a"], &[]));
}

/// Without `--scheduler-api-client-for-server-*` the scheduler makes up its own credentials and
/// refuses the servers' calls; with the servers' ones it accepts them.
#[tokio::test]
async fn the_scheduler_accepts_only_the_credentials_it_was_created_with() {
    use base64::Engine as _;
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path();
    let odb = sqlite_cluster(work);
    let call = |port: u16, password: &str| {
        let credentials = base64::engine::general_purpose::STANDARD
            .encode(format!("scheduler_api_client:{password}"));
        http_post(
            port,
            "/",
            &format!("Authorization: Basic {credentials}\r\n"),
            "{\"action\": \"100004\", \"name\": \"x\"}",
        )
        .map(|(status, _)| status)
    };
    // The password as an option, or in Zato's environment variable (out of the command line).
    for (name, given, in_env) in [
        ("made-up", None, false),
        ("shared", Some("-shared-password"), false),
        ("from-env", Some("-shared-password"), true),
    ] {
        let port = free_port();
        std::fs::create_dir(work.join(name)).unwrap();
        let mut args = vec![
            "create".to_owned(),
            "scheduler".to_owned(),
            "--cluster-name=prod".to_owned(),
            "--server-address-for-scheduler=http://127.0.0.1:17010".to_owned(),
            format!("--bind-port={port}"),
        ];
        let mut command = Command::new(MOCK_ZATO);
        command.current_dir(work);
        if let Some(password) = given {
            args.push("--scheduler-api-client-for-server-username=scheduler_api_client".to_owned());
            if in_env {
                command.env("Zato_Scheduler_API_Client_For_Server_Password", password);
            } else {
                args.push(format!(
                    "--scheduler-api-client-for-server-password={password}"
                ));
            }
        }
        args.push(name.to_owned());
        ok(command.args(&args).args(&odb).output().unwrap());
        ok(zato(work, &["start", name], &[]));
        answering(port).await;
        let expected = if given.is_some() { 200 } else { 500 };
        assert_eq!(call(port, "-shared-password"), Some(expected), "{name}");
        ok(zato(work, &["stop", name], &[]));
    }
}

/// As Zato 3.2's: `create scheduler` writes `server_prefer_odb_config=False`, with which the
/// scheduler starts no job of the ODB (it loads them after its start loop); with True it starts
/// them. Its log says which, on lines that carry its process id.
#[tokio::test]
async fn the_scheduler_starts_its_jobs_only_when_it_prefers_the_odb_config() {
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path();
    let odb = sqlite_cluster(work);
    let port = free_port();
    std::fs::create_dir(work.join("s")).unwrap();
    ok(zato(
        work,
        &[
            "create",
            "scheduler",
            "--cluster-name=prod",
            "--server-address-for-scheduler=http://127.0.0.1:17010",
            &format!("--bind-port={port}"),
            "s",
        ],
        &odb,
    ));
    let conf_path = work.join("s/config/repo/scheduler.conf");
    let conf = std::fs::read_to_string(&conf_path).unwrap();
    assert!(conf.contains("server_prefer_odb_config=False"), "{conf}");
    let log_of_this_start = |pid: &str| {
        std::fs::read_to_string(work.join("s/logs/server.log"))
            .unwrap()
            .lines()
            .filter(|line| line.contains(&format!(" - {pid}:")))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    for (prefer, starts_jobs) in [("False", false), ("True", true)] {
        std::fs::write(
            &conf_path,
            conf.replace(
                "server_prefer_odb_config=False",
                &format!("server_prefer_odb_config={prefer}"),
            ),
        )
        .unwrap();
        ok(zato(work, &["start", "s"], &[]));
        answering(port).await;
        let pid = std::fs::read_to_string(work.join("s/pidfile")).unwrap();
        let lines = log_of_this_start(pid.trim());
        assert!(
            lines.iter().any(|line| line.contains("Scheduler started")),
            "{lines:?}"
        );
        assert_eq!(
            lines.iter().any(|line| line.contains("Job starting `")),
            starts_jobs,
            "server_prefer_odb_config={prefer}: {lines:?}"
        );
        ok(zato(work, &["stop", "s"], &[]));
    }
}

/// `create web-admin` gives user `admin` a password nobody sees; `update password` sets one that
/// the dashboard's login form then accepts.
#[tokio::test]
async fn the_dashboard_login_takes_the_password_set_with_update_password() {
    let scratch = tempfile::tempdir().unwrap();
    let work = scratch.path();
    let odb = sqlite_cluster(work);
    std::fs::create_dir(work.join("wa")).unwrap();
    ok(zato(
        work,
        &["create", "web-admin", "--admin-invoke-password=x", "wa"],
        &odb,
    ));
    let port = free_port();
    let path = work.join("wa/config/repo/web-admin.conf");
    let mut conf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    conf["port"] = port.into();
    std::fs::write(&path, conf.to_string()).unwrap();
    ok(zato(work, &["start", "wa"], &[]));
    answering(port).await;
    let login = |password: &str| {
        http_post(
            port,
            "/accounts/login/",
            "Content-Type: application/x-www-form-urlencoded\r\n",
            &format!("csrfmiddlewaretoken=t&username=admin&password={password}"),
        )
        .map(|(status, _)| status)
    };
    assert_eq!(
        login("-new-password"),
        Some(200),
        "refused before it is set"
    );
    refused(
        &zato(work, &["update", "password", "wa", "admin"], &[]),
        1,
        "--password is missing or empty",
    );
    ok(zato(
        work,
        &[
            "update",
            "password",
            "--password=-new-password",
            "wa",
            "admin",
        ],
        &[],
    ));
    assert_eq!(login("-new-password"), Some(302));
    assert_eq!(login("wrong"), Some(200));
    ok(zato(work, &["stop", "wa"], &[]));
}
