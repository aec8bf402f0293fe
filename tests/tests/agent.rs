//! The agent end to end: real coordinator, agent and mock-zato processes on this machine.

use std::path::Path;
use std::time::{Duration, Instant};

use muster_testkit::disk::SmallFilesystem;
use muster_testkit::harness::{Agent, Coordinator, ping, signal, text, workspace_binary};
use muster_testkit::netns::Network;
use muster_testkit::{free_port, wait_for};
use nix::sys::signal::Signal;

const PATIENCE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

async fn wait_for_ping(port: u16, what: &str) -> serde_json::Value {
    wait_for(what, PATIENCE, POLL, || {
        let answer = ping(port);
        async move { answer }
    })
    .await
    .unwrap()
}

/// The component list entry of `name`, once `check` holds for it.
async fn wait_for_component(
    coordinator: &Coordinator,
    name: &str,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_for(what, PATIENCE, Duration::from_millis(200), || {
        let components = coordinator.json(&["component", "list"]);
        let found = components
            .as_array()
            .and_then(|all| {
                all.iter()
                    .find(|component| component["name"] == name)
                    .cloned()
            })
            .filter(|component| check(component));
        async move { found }
    })
    .await
    .unwrap()
}

fn creates_in(invocations: &str) -> usize {
    invocations
        .lines()
        .filter(|line| line.contains(" zato create "))
        .count()
}

/// A coordinator with cluster `prod` on SQLite, and an enrolled, running agent `app-1`.
async fn cluster_with_agent(scratch: &Path, coordinator_args: &[&str]) -> (Coordinator, Agent) {
    let coordinator = Coordinator::start(scratch, None, coordinator_args).await;
    coordinator.ok(&["create", "cluster", "prod"]);
    let token = coordinator.join_token("prod", &[], 1);
    let mut agent = Agent::configure(scratch, &coordinator, "app-1", &token);
    agent.start();
    wait_for(
        "app-1 to enroll and report",
        PATIENCE,
        Duration::from_millis(100),
        || {
            let hosts = coordinator.json(&["host", "list"]);
            let up = hosts.as_array().is_some_and(|all| {
                all.iter()
                    .any(|host| host["name"] == "app-1" && host["state"] == "up")
            });
            async move { up.then_some(()) }
        },
    )
    .await
    .unwrap();
    (coordinator, agent)
}

#[tokio::test]
async fn an_assigned_server_is_created_started_and_kept_through_outages() {
    let scratch = tempfile::tempdir().unwrap();
    let (mut coordinator, mut agent) = cluster_with_agent(scratch.path(), &[]).await;
    let port = free_port();

    let assigned_at = Instant::now();
    coordinator.ok(&[
        "create",
        "server",
        "--cluster",
        "prod",
        "--host",
        "app-1",
        "--port",
        &port.to_string(),
    ]);
    wait_for(
        "the agent to act on the assignment",
        PATIENCE,
        Duration::from_millis(10),
        || {
            let started = agent.zato_invocations().contains("zato create odb");
            async move { started.then_some(()) }
        },
    )
    .await
    .unwrap();
    println!(
        "figure: assignment reached the agent and its first zato command ran after {:?}",
        assigned_at.elapsed()
    );

    let pong = wait_for_ping(port, "server1 to answer /zato/ping").await;
    assert_eq!(
        (
            pong["server"].as_str(),
            pong["cluster"].as_str(),
            pong["mock"].as_bool()
        ),
        (Some("server1"), Some("prod"), Some(true))
    );
    let component = wait_for_component(&coordinator, "server1", "server1 reported healthy", |c| {
        c["healthy"] == true
    })
    .await;
    assert_eq!(component["state"], "running");

    // The seed order ran once, with secrets only on the command line and masked in the log.
    let invocations = agent.zato_invocations();
    let order: Vec<&str> = invocations
        .lines()
        .filter_map(|line| {
            if line.contains("zato create cluster ") && line.ends_with(" prod") {
                return Some("create cluster prod");
            }
            ["create odb", "create server"]
                .into_iter()
                .find(|step| line.contains(step))
        })
        .collect();
    assert_eq!(
        order,
        ["create odb", "create cluster prod", "create server"],
        "{invocations}"
    );
    assert!(
        invocations.contains("--secret-key=***") && invocations.contains("--jwt-secret=***"),
        "{invocations}"
    );
    let server_dir = agent.components_dir.join("prod/server-server1");
    // Started once: a second `zato start` before the first process wrote its pidfile would have
    // made a second process (mock-zato writes it a second after start returns, as Zato does).
    let server_invocations = std::fs::read_to_string(server_dir.join("mock-zato.log")).unwrap();
    let starts = server_invocations
        .lines()
        .filter(|line| line.contains(" zato start "))
        .count();
    assert_eq!(starts, 1, "{server_invocations}");
    assert!(
        server_dir.join("config/repo/user-conf").is_dir(),
        "Zato's user-conf symlink points into the renamed directory"
    );
    let server_conf = std::fs::read_to_string(server_dir.join("config/repo/server.conf")).unwrap();
    assert!(
        server_conf.contains(&format!("gunicorn_bind=0.0.0.0:{port}")),
        "{server_conf}"
    );
    let first_pid = pong["pid"].as_u64().unwrap();

    // The coordinator dies: the server keeps answering.
    let seen_before = coordinator.json(&["host", "show", "app-1"])["last_seen"]
        .as_str()
        .map(str::to_owned);
    coordinator.kill();
    assert_eq!(ping(port).unwrap()["pid"].as_u64(), Some(first_pid));

    // The agent restarts while the coordinator is down: it resumes from its ledger.
    let creates_before = creates_in(&agent.zato_invocations());
    assert!(
        agent.stop().unwrap().success(),
        "the agent stops cleanly on SIGTERM"
    );
    assert_eq!(
        ping(port).unwrap()["pid"].as_u64(),
        Some(first_pid),
        "components outlive the agent"
    );
    agent.start();
    wait_for("the agent to start from its ledger", PATIENCE, POLL, || {
        let log = agent.log_text();
        async move { log.contains("starting from the ledger").then_some(()) }
    })
    .await
    .unwrap();
    wait_for(
        "the agent's first pass after its restart",
        PATIENCE,
        POLL,
        || {
            let log = agent.log_text();
            async move { (log.matches("host status").count() >= 2).then_some(()) }
        },
    )
    .await
    .unwrap();
    assert_eq!(
        creates_in(&agent.zato_invocations()),
        creates_before,
        "nothing was created again"
    );
    assert_eq!(
        ping(port).unwrap()["pid"].as_u64(),
        Some(first_pid),
        "nothing was restarted"
    );

    // The coordinator comes back: the host reports again, and nothing was restarted.
    coordinator.restart().await;
    wait_for(
        "app-1 to report to the restarted coordinator",
        PATIENCE,
        Duration::from_millis(200),
        || {
            let host = coordinator.json(&["host", "show", "app-1"]);
            let fresh = host["last_seen"].as_str().map(str::to_owned) != seen_before
                && host["state"] == "up";
            async move { fresh.then_some(()) }
        },
    )
    .await
    .unwrap();
    let component = wait_for_component(
        &coordinator,
        "server1",
        "server1 healthy after the outage",
        |c| c["healthy"] == true,
    )
    .await;
    assert_eq!(component["restarts"], 0);
    assert_eq!(ping(port).unwrap()["pid"].as_u64(), Some(first_pid));
    assert_eq!(creates_in(&agent.zato_invocations()), creates_before);

    // kill -9 the component: the agent restarts it and reports the restart.
    signal(u32::try_from(first_pid).unwrap(), Signal::SIGKILL);
    let restarted = wait_for("a new server1 process", PATIENCE, POLL, || {
        let pid = ping(port)
            .and_then(|pong| pong["pid"].as_u64())
            .filter(|pid| *pid != first_pid);
        async move { pid }
    })
    .await
    .unwrap();
    assert_ne!(restarted, first_pid);
    wait_for_component(&coordinator, "server1", "the restart to be reported", |c| {
        c["restarts"] == 1 && c["healthy"] == true
    })
    .await;
    let events = coordinator.json(&["events", "--cluster", "prod"]);
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|event| event["kind"] == "component.restarted" && event["host"] == "app-1"),
        "{events}"
    );

    // No secret of the cluster reached the agent's log or the coordinator's.
    let secrets_store = cluster_secrets(&coordinator).await;
    for secret in secrets_store {
        assert!(
            !agent.log_text().contains(&secret),
            "the agent's log holds a secret"
        );
        assert!(
            !coordinator.log_text().contains(&secret),
            "the coordinator's log holds a secret"
        );
        assert!(
            !agent.zato_invocations().contains(&secret),
            "the zato invocation log holds a secret"
        );
    }
}

async fn cluster_secrets(coordinator: &Coordinator) -> Vec<String> {
    use muster_coordinator::config::DataDir;
    use muster_coordinator::init::read_secret_box;
    use muster_coordinator::store::{DatabaseUrl, SqlStore, Store};
    let layout = DataDir::new(&coordinator.data_dir);
    let url = DatabaseUrl::sqlite_file(&coordinator.data_dir.join("muster.db"));
    let store = SqlStore::connect(&url, read_secret_box(&layout).unwrap())
        .await
        .unwrap();
    let secrets = store.cluster_secrets("prod").await.unwrap();
    store.close().await;
    [
        secrets.secret_key,
        secrets.jwt_secret,
        secrets.admin_invoke_password,
    ]
    .into_iter()
    .filter(|secret| !secret.is_empty())
    .collect()
}

#[tokio::test]
async fn an_agent_killed_while_creating_converges_on_its_next_start() {
    let scratch = tempfile::tempdir().unwrap();
    let (coordinator, mut agent) = cluster_with_agent(scratch.path(), &[]).await;
    // Bootstrap first, with a fast mock, so the slow create below is the server's.
    let first_port = free_port();
    coordinator.ok(&[
        "create",
        "server",
        "--cluster",
        "prod",
        "--host",
        "app-1",
        "--port",
        &first_port.to_string(),
    ]);
    wait_for_ping(first_port, "server1").await;

    agent.stop();
    agent.env("MOCK_ZATO_CREATE_DELAY_MS", "3000");
    agent.start();
    let port = free_port();
    coordinator.ok(&[
        "create",
        "server",
        "--cluster",
        "prod",
        "--host",
        "app-1",
        "--port",
        &port.to_string(),
    ]);
    let half_made = agent.components_dir.join("prod/.creating-server-server2");
    wait_for("the create to be under way", PATIENCE, POLL, || {
        let under_way = half_made.join("config/repo/server.conf").exists();
        async move { under_way.then_some(()) }
    })
    .await
    .unwrap();
    agent.kill();
    assert!(
        !agent.components_dir.join("prod/server-server2").exists(),
        "nothing half-made is in place"
    );

    agent.env("MOCK_ZATO_CREATE_DELAY_MS", "0");
    agent.start();
    let pong = wait_for_ping(port, "server2 after the interrupted create").await;
    assert_eq!(pong["server"], "server2");
    assert!(
        agent
            .components_dir
            .join("prod/server-server2/.zato-info")
            .exists()
    );
    assert!(!half_made.exists(), "no half-made directory is left");
    wait_for_component(&coordinator, "server2", "server2 reported healthy", |c| {
        c["healthy"] == true
    })
    .await;
}

#[tokio::test]
async fn tokens_are_refused_for_the_reason_that_applies() {
    let scratch = tempfile::tempdir().unwrap();
    let coordinator = Coordinator::start(scratch.path(), None, &[]).await;
    coordinator.ok(&["create", "cluster", "prod"]);
    let enroll =
        |name: &str, token: &str| coordinator.enroll(&scratch.path().join(name), name, token);
    let once = coordinator.join_token("prod", &[], 1);
    let first = enroll("first", &once);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let reused = enroll("second", &once);
    assert!(!reused.status.success());
    assert!(
        text(&reused.stderr).contains("used as often as it allows"),
        "{}",
        text(&reused.stderr)
    );

    let revoked = coordinator.join_token("prod", &[], 1);
    let id = muster_proto::token::JoinToken::parse(&revoked).unwrap().id;
    coordinator.ok(&["token", "revoke", &id]);
    assert!(text(&enroll("third", &revoked).stderr).contains("it was revoked"));

    let expiring = coordinator.expired_join_token("prod").await;
    let expired = enroll("fourth", &expiring);
    assert!(
        text(&expired.stderr).contains("it has expired"),
        "{}",
        text(&expired.stderr)
    );

    let other = tempfile::tempdir().unwrap();
    let other_coordinator = Coordinator::start(other.path(), None, &[]).await;
    other_coordinator.ok(&["create", "cluster", "prod"]);
    let foreign = other_coordinator.join_token("prod", &[], 1);
    let refused = enroll("fifth", &foreign);
    assert!(
        text(&refused.stderr).contains("the token is for another coordinator"),
        "{}",
        text(&refused.stderr)
    );
    assert!(!scratch.path().join("fifth/host.id").exists());
    let hosts: Vec<_> = coordinator
        .json(&["host", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(hosts, ["first"], "refused enrollments leave no host");
}

/// A coordinator certificate outside its validity by the agent's clock is what a host whose clock
/// is far off sees: the agent says so in words (the clock), at enrollment and while it runs, not
/// as "transport error". (The coordinator's certificate is made expired here; the agent cannot
/// tell that from its own clock being ahead.)
#[tokio::test]
async fn a_certificate_refused_for_its_dates_is_reported_as_a_clock_problem() {
    let scratch = tempfile::tempdir().unwrap();
    let (mut coordinator, agent) = cluster_with_agent(scratch.path(), &[]).await;
    let token = coordinator.join_token("prod", &[], 1);

    coordinator.kill();
    let layout = muster_coordinator::config::DataDir::new(&coordinator.data_dir);
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(layout.ca_key()).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(layout.ca_certificate()).unwrap(),
        ca_key,
    )
    .unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let expired = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(layout.server_certificate(), expired.pem()).unwrap();
    std::fs::write(layout.server_key(), key.serialize_pem()).unwrap();
    coordinator.restart().await;

    let clock = "by this host's clock";
    let enroll = coordinator.enroll(&scratch.path().join("second"), "second", &token);
    assert!(!enroll.status.success());
    let said = text(&enroll.stderr);
    assert!(
        said.contains("expired") && said.contains(clock) && said.contains("(NTP)"),
        "{said}"
    );
    wait_for("the running agent to say why", PATIENCE, POLL, || {
        let log = agent.log_text();
        async move { log.contains(clock).then_some(()) }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn silent_hosts_are_marked_down_and_certificates_renew() {
    let scratch = tempfile::tempdir().unwrap();
    let (coordinator, mut agent) = cluster_with_agent(
        scratch.path(),
        &["--heartbeat-ttl", "3s", "--host-certificate-ttl", "6s"],
    )
    .await;
    let certificate = agent.state_dir.join("host.pem");
    let original = std::fs::read_to_string(&certificate).unwrap();
    wait_for(
        "the host certificate to be renewed",
        PATIENCE,
        Duration::from_millis(200),
        || {
            let renewed = std::fs::read_to_string(&certificate)
                .ok()
                .filter(|current| *current != original);
            async move { renewed }
        },
    )
    .await
    .unwrap();
    assert!(agent.log_text().contains("host certificate renewed"));
    // The renewed certificate works: the host keeps reporting.
    let before = coordinator.json(&["host", "show", "app-1"])["last_seen"].clone();
    wait_for(
        "a report with the renewed certificate",
        PATIENCE,
        Duration::from_millis(200),
        || {
            let fresh = coordinator.json(&["host", "show", "app-1"])["last_seen"] != before;
            async move { fresh.then_some(()) }
        },
    )
    .await
    .unwrap();

    agent.kill();
    wait_for(
        "app-1 to be marked down",
        PATIENCE,
        Duration::from_millis(200),
        || {
            let state = coordinator.json(&["host", "show", "app-1"])["state"].clone();
            async move { (state == "down").then_some(()) }
        },
    )
    .await
    .unwrap();
    agent.start();
    wait_for(
        "app-1 to be up again",
        PATIENCE,
        Duration::from_millis(200),
        || {
            let state = coordinator.json(&["host", "show", "app-1"])["state"].clone();
            async move { (state == "up").then_some(()) }
        },
    )
    .await
    .unwrap();
    let kinds: Vec<String> = coordinator
        .json(&["events"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["host"] == "app-1")
        .map(|event| event["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        &kinds[..3],
        ["host.up", "host.down", "host.up"],
        "{kinds:?}"
    );
}

#[tokio::test]
async fn the_agent_speaks_the_systemd_notify_protocol() {
    let scratch = tempfile::tempdir().unwrap();
    let coordinator = Coordinator::start(scratch.path(), None, &[]).await;
    coordinator.ok(&["create", "cluster", "prod"]);
    let token = coordinator.join_token("prod", &[], 1);
    let mut agent = Agent::configure(scratch.path(), &coordinator, "app-1", &token);
    let socket_path = scratch.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    agent.env("NOTIFY_SOCKET", socket_path.to_str().unwrap());
    agent.start_with_watchdog(Duration::from_secs(1));
    let mut seen = String::new();
    let mut buffer = [0u8; 4096];
    while !(seen.contains("READY=1")
        && seen.contains("STATUS=")
        && seen.matches("WATCHDOG=1").count() >= 2)
    {
        let count = socket
            .recv(&mut buffer)
            .expect("a notification within 30 s");
        seen.push_str(&String::from_utf8_lossy(&buffer[..count]));
        seen.push('\n');
    }
    assert!(agent.stop().unwrap().success());
    let mut stopping = false;
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    while let Ok(count) = socket.recv(&mut buffer) {
        stopping |= String::from_utf8_lossy(&buffer[..count]).contains("STOPPING=1");
    }
    assert!(stopping, "the agent says STOPPING=1 on SIGTERM");
}

/// `validate` names a bad key, and resolves the advertised address as the agent will at start, on
/// a test host whose `/etc/hosts` names only itself (so no lookup leaves it).
#[test]
fn validate_names_a_bad_key_and_an_address_that_does_not_resolve() {
    let scratch = tempfile::tempdir().unwrap();
    let mut network = Network::create();
    let host = network.add_host("app-1");
    let config = scratch.path().join("agent.toml");
    let validate = |text: &str| {
        std::fs::write(&config, text).unwrap();
        let output = host
            .command(&workspace_binary("muster-agent"))
            .args(["validate", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        (output.status.success(), text_of(&output))
    };
    let base = "coordinator = \"https://coord:17300\"\nhost_name = \"app-1\"\n";
    let (valid, output) = validate(&format!("{base}zato = \"/usr/bin/zato\"\n"));
    assert!(
        !valid && output.contains("unknown field `zato`"),
        "{output}"
    );
    // The default advertised address is the host name, which this host resolves.
    let (valid, output) = validate(&format!("{base}zato_bin = \"/usr/bin/zato\"\n"));
    assert!(valid, "{output}");
    let (valid, output) = validate(&format!("{base}advertise_address = \"nowhere\"\n"));
    assert!(
        !valid
            && output.contains(
                "advertise_address = \"nowhere\": this name does not resolve on this host"
            ),
        "{output}"
    );
    let (valid, output) = validate(&format!("{base}advertise_address = \"localhost\"\n"));
    assert!(
        !valid
            && output
                .contains("this name resolves only to 127.0.0.1, which other hosts cannot reach"),
        "{output}"
    );
    drop(network);
}

fn text_of(output: &std::process::Output) -> String {
    format!("{}{}", text(&output.stdout), text(&output.stderr))
}

#[tokio::test]
async fn servers_follow_the_scheduler_and_unassigned_components_are_archived() {
    let scratch = tempfile::tempdir().unwrap();
    let (coordinator, agent) = cluster_with_agent(scratch.path(), &[]).await;
    let (server_port, scheduler_port, dashboard_port) = (free_port(), free_port(), free_port());
    coordinator.ok(&[
        "create",
        "server",
        "--cluster",
        "prod",
        "--host",
        "app-1",
        "--port",
        &server_port.to_string(),
    ]);
    let first_pid = wait_for_ping(server_port, "server1").await["pid"].as_u64();

    coordinator.ok(&[
        "create",
        "scheduler",
        "--cluster",
        "prod",
        "--host",
        "app-1",
        "--port",
        &scheduler_port.to_string(),
    ]);
    coordinator.ok(&[
        "create",
        "web-admin",
        "--cluster",
        "prod",
        "--host",
        "app-1",
        "--port",
        &dashboard_port.to_string(),
    ]);
    let scheduler = wait_for_ping(scheduler_port, "the scheduler").await;
    assert_eq!(
        (
            scheduler["component"].as_str(),
            scheduler["cluster"].as_str()
        ),
        (Some("scheduler"), Some("prod"))
    );
    assert_eq!(
        scheduler["detail"]["server_port"],
        server_port.to_string(),
        "the scheduler points at server1"
    );
    let dashboard = wait_for_ping(dashboard_port, "web-admin").await;
    assert_eq!(dashboard["component"], "web-admin");

    // The server learns the scheduler's address and restarts with it.
    let server_conf = agent
        .components_dir
        .join("prod/server-server1/config/repo/server.conf");
    wait_for("server.conf to name the scheduler", PATIENCE, POLL, || {
        let conf = std::fs::read_to_string(&server_conf).unwrap_or_default();
        let expected = format!(
            "scheduler_host=127.0.0.1\nscheduler_port={scheduler_port}\nscheduler_use_tls=False"
        );
        async move { conf.contains(&expected).then_some(()) }
    })
    .await
    .unwrap();
    let restarted = wait_for(
        "server1 restarted with its new config",
        PATIENCE,
        POLL,
        || {
            let pong = ping(server_port).filter(|pong| pong["pid"].as_u64() != first_pid);
            async move { pong }
        },
    )
    .await
    .unwrap();
    assert_eq!(
        restarted["detail"]["scheduler_port"],
        scheduler_port.to_string()
    );
    for name in ["server1", "scheduler", "web-admin"] {
        let component = wait_for_component(&coordinator, name, "every component healthy", |c| {
            c["healthy"] == true
        })
        .await;
        assert_eq!(
            component["restarts"], 0,
            "a planned restart is not a death: {component}"
        );
    }

    // Unassigned: stopped and archived.
    coordinator.ok(&[
        "remove",
        "web-admin",
        "--cluster",
        "prod",
        "--host",
        "app-1",
    ]);
    wait_for("web-admin to stop", PATIENCE, POLL, || {
        let gone = ping(dashboard_port).is_none()
            && !agent
                .components_dir
                .join("prod/web-admin-web-admin")
                .exists();
        async move { gone.then_some(()) }
    })
    .await
    .unwrap();
    let archived: Vec<String> = std::fs::read_dir(agent.components_dir.join(".archive"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        archived
            .iter()
            .any(|name| name.starts_with("prod.web-admin-web-admin.")),
        "{archived:?}"
    );
    let names: Vec<String> = coordinator
        .json(&["component", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["scheduler", "server1"]);
    assert!(ping(server_port).is_some(), "the others keep running");
}

async fn server_on_a_database_odb(backend: muster_testkit::Backend) {
    use sqlx::Row as _;
    let database = muster_testkit::TestDatabase::create(backend).await;
    let scratch = tempfile::tempdir().unwrap();
    let (coordinator, _agent) = cluster_with_agent(scratch.path(), &[]).await;
    let options = database.muster_odb_options(scratch.path());
    let mut create = vec!["create", "cluster", "orders"];
    create.extend(options.iter().map(String::as_str));
    coordinator.ok(&create);
    let port = free_port();
    let token = coordinator.join_token("orders", &[], 1);
    let mut agent = Agent::configure(scratch.path(), &coordinator, "db-1", &token);
    agent.start();
    coordinator.ok(&[
        "create",
        "server",
        "--cluster",
        "orders",
        "--host",
        "db-1",
        "--port",
        &port.to_string(),
    ]);
    let pong = wait_for_ping(port, "a server whose ODB is a real database").await;
    assert_eq!(pong["cluster"], "orders");

    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&database.url).await.unwrap();
    let row = sqlx::query("SELECT s.up_status, c.name FROM server s JOIN cluster c ON c.id = s.cluster_id WHERE s.name = 'server1'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        row.try_get::<String, _>(0).unwrap(),
        "running",
        "the running server set its up_status"
    );
    assert_eq!(row.try_get::<String, _>(1).unwrap(), "orders");
    let installs = sqlx::query("SELECT COUNT(*) FROM install_state")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        installs.try_get::<i64, _>(0).unwrap(),
        1,
        "the ODB was created once"
    );
    pool.close().await;
}

#[tokio::test]
async fn a_server_on_a_postgres_odb() {
    server_on_a_database_odb(muster_testkit::Backend::Postgres).await;
}

#[tokio::test]
async fn a_server_on_a_mariadb_odb() {
    server_on_a_database_odb(muster_testkit::Backend::MySql).await;
}

#[tokio::test]
async fn an_unreachable_odb_is_reported_and_nothing_is_released() {
    let scratch = tempfile::tempdir().unwrap();
    let (coordinator, agent) = cluster_with_agent(scratch.path(), &[]).await;
    let closed = free_port().to_string();
    let password_file = scratch.path().join("odb-password");
    std::fs::write(&password_file, "-odb-password").unwrap();
    let password_option = format!("--odb-password-file={}", password_file.display());
    coordinator.ok(&[
        "create",
        "cluster",
        "unreachable",
        &password_option,
        "--odb-type",
        "postgresql",
        "--odb-host",
        "127.0.0.1",
        "--odb-port",
        &closed,
        "--odb-user",
        "zato",
        "--odb-db-name",
        "zato",
    ]);
    coordinator.ok(&[
        "create",
        "server",
        "--cluster",
        "unreachable",
        "--host",
        "app-1",
    ]);
    let failure = wait_for(
        "the bootstrap failure to be reported",
        PATIENCE,
        Duration::from_millis(200),
        || {
            let events = coordinator.json(&["events", "--cluster", "unreachable"]);
            let failure = events
                .as_array()
                .unwrap()
                .iter()
                .find(|event| event["kind"] == "bootstrap.failed")
                .map(|event| event["message"].as_str().unwrap().to_owned());
            async move { failure }
        },
    )
    .await
    .unwrap();
    assert!(failure.contains("cannot connect to the ODB"), "{failure}");
    assert!(
        !agent.zato_invocations().contains("create server"),
        "no component before its cluster's bootstrap"
    );
    let component =
        wait_for_component(&coordinator, "server1", "the pending server", |_| true).await;
    assert_eq!(component["state"], "", "the server was never released");
}

#[tokio::test]
async fn zato_commands_and_components_run_as_the_configured_user() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let scratch = tempfile::tempdir().unwrap();
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .expect("a nobody user");
    let coordinator = Coordinator::start(scratch.path(), None, &[]).await;
    coordinator.ok(&["create", "cluster", "prod"]);
    let token = coordinator.join_token("prod", &[], 1);
    let mut agent = Agent::configure(scratch.path(), &coordinator, "app-1", &token);
    let config = std::fs::read_to_string(&agent.config).unwrap() + "run_as = \"nobody\"\n";
    std::fs::write(&agent.config, config).unwrap();
    agent.start();
    let port = free_port();
    coordinator.ok(&[
        "create",
        "server",
        "--cluster",
        "prod",
        "--host",
        "app-1",
        "--port",
        &port.to_string(),
    ]);
    let pong = wait_for_ping(port, "a server run as nobody").await;
    let pid = pong["pid"].as_u64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status
        .lines()
        .find(|line| line.starts_with("Uid:"))
        .unwrap();
    assert!(
        uid_line.split_whitespace().nth(1) == Some(&nobody.uid.to_string()),
        "{uid_line}"
    );
    let owner = std::fs::metadata(
        agent
            .components_dir
            .join("prod/server-server1/config/repo/server.conf"),
    )
    .unwrap()
    .uid();
    assert_eq!(owner, nobody.uid.as_raw());
    // Closed to other users: Zato writes the cluster's secrets into files of mode 0644.
    for directory in ["prod", "prod/server-server1"] {
        let metadata = std::fs::metadata(agent.components_dir.join(directory)).unwrap();
        assert_eq!(metadata.permissions().mode() & 0o777, 0o700, "{directory}");
        assert_eq!(metadata.uid(), nobody.uid.as_raw(), "{directory}");
    }
}

/// Zato's installer makes `bin/zato` mode 0740, owned by root: a `run_as` user outside root's group
/// cannot run it, and the agent says so before it tries anything.
#[tokio::test]
async fn an_agent_whose_run_as_cannot_run_zato_refuses_to_start_and_says_why() {
    use std::os::unix::fs::PermissionsExt as _;
    let scratch = tempfile::tempdir().unwrap();
    std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let zato = scratch.path().join("zato");
    std::fs::copy(workspace_binary("mock-zato"), &zato).unwrap();
    std::fs::set_permissions(&zato, std::fs::Permissions::from_mode(0o740)).unwrap();
    let coordinator = Coordinator::start(scratch.path(), None, &[]).await;
    coordinator.ok(&["create", "cluster", "prod"]);
    let token = coordinator.join_token("prod", &[], 1);
    let mut agent = Agent::configure(scratch.path(), &coordinator, "app-1", &token);
    let config = std::fs::read_to_string(&agent.config).unwrap().replace(
        &workspace_binary("mock-zato").display().to_string(),
        &zato.display().to_string(),
    ) + "run_as = \"nobody\"\n";
    std::fs::write(&agent.config, config).unwrap();
    agent.start();
    let said = wait_for("the agent to refuse", PATIENCE, POLL, || {
        let log = agent.log_text();
        async move { log.contains("cannot run").then_some(log) }
    })
    .await
    .unwrap();
    assert!(
        said.contains(&format!("run_as user nobody cannot run {}", zato.display())),
        "{said}"
    );
    let exited = agent.stop();
    assert!(exited.is_some_and(|status| !status.success()), "{exited:?}");
    assert!(
        coordinator
            .json(&["host", "list"])
            .as_array()
            .unwrap()
            .is_empty(),
        "it did not even enroll"
    );
}

/// A ledger left empty (a crash, a full disk) or garbled is no desired state: the agent keeps its
/// components running as they are, says so, waits for the coordinator, and then converges without
/// having stopped or archived anything.
#[tokio::test]
async fn an_unreadable_ledger_neither_stops_the_agent_nor_its_components() {
    let scratch = tempfile::tempdir().unwrap();
    let (mut coordinator, mut agent) = cluster_with_agent(scratch.path(), &[]).await;
    let port = free_port();
    coordinator.ok(&[
        "create",
        "server",
        "--cluster",
        "prod",
        "--host",
        "app-1",
        "--port",
        &port.to_string(),
    ]);
    let server = wait_for_component(&coordinator, "server1", "server1 healthy", |component| {
        component["healthy"] == true
    })
    .await;
    assert_eq!(server["state"], "running");
    let server_pid = ping(port).unwrap()["pid"].as_u64();
    let ledger = agent.state_dir.join("desired-state.pb");
    for contents in [&b""[..], &b"\xff\xff\xff garbage"[..]] {
        agent.stop();
        coordinator.kill();
        std::fs::write(&ledger, contents).unwrap();
        agent.start();
        wait_for(
            "the agent to say its ledger is unreadable",
            PATIENCE,
            POLL,
            || {
                let said = agent.log_text().matches("ledger unreadable").count();
                async move { (said >= 1).then_some(()) }
            },
        )
        .await
        .unwrap();
        assert!(
            agent
                .pid()
                .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists()),
            "the agent runs on"
        );
        coordinator.restart().await;
        wait_for(
            "the agent to accept the coordinator's state",
            PATIENCE,
            POLL,
            || {
                let written =
                    std::fs::read(&ledger).is_ok_and(|bytes| bytes.len() > contents.len());
                async move { written.then_some(()) }
            },
        )
        .await
        .unwrap();
        wait_for_component(
            &coordinator,
            "server1",
            "server1 healthy again",
            |component| component["healthy"] == true,
        )
        .await;
        assert_eq!(
            ping(port).unwrap()["pid"].as_u64(),
            server_pid,
            "the same server process ran throughout"
        );
        assert!(
            !agent.components_dir.join(".archive").exists(),
            "nothing was archived"
        );
    }
}

/// Which programs a host runs is the host's decision: a load balancer whose `--haproxy-bin` (set
/// by anyone with an admin token) is not among the agent's `haproxy_bins` is refused, and the
/// program never runs.
#[tokio::test]
async fn a_haproxy_bin_the_host_does_not_allow_is_refused_and_never_run() {
    use std::os::unix::fs::PermissionsExt as _;
    let scratch = tempfile::tempdir().unwrap();
    let (coordinator, _agent) = cluster_with_agent(scratch.path(), &[]).await;
    let marker = scratch.path().join("ran-as-root");
    let script = scratch.path().join("not-haproxy");
    std::fs::write(&script, format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    coordinator.ok(&[
        "create",
        "load-balancer",
        "--cluster",
        "prod",
        "--host",
        "app-1",
        "--port",
        &free_port().to_string(),
        "--haproxy-bin",
        script.to_str().unwrap(),
    ]);
    let component = wait_for_component(
        &coordinator,
        "load-balancer",
        "the load balancer to be refused",
        |component| {
            component["last_error"]
                .as_str()
                .is_some_and(|error| error.contains("refused: haproxy_bin"))
        },
    )
    .await;
    assert!(
        component["last_error"]
            .as_str()
            .unwrap()
            .contains("not among this host's haproxy_bins (haproxy)"),
        "{component}"
    );
    assert!(!marker.exists(), "the program never ran");
}

/// A desired state that cannot be written (the state directory's disk is full) is not acted on,
/// and not lost either: the agent keeps trying, and applies it once there is room.
#[tokio::test]
async fn a_desired_state_that_cannot_be_written_is_retried_until_there_is_room() {
    let scratch = tempfile::tempdir().unwrap();
    let coordinator = Coordinator::start(scratch.path(), None, &[]).await;
    coordinator.ok(&["create", "cluster", "prod"]);
    let token = coordinator.join_token("prod", &[], 1);
    let mut agent = Agent::configure(scratch.path(), &coordinator, "app-1", &token);
    let disk = SmallFilesystem::mount(&agent.state_dir, "256k");
    agent.start();
    let first = free_port();
    coordinator.ok(&[
        "create",
        "server",
        "--cluster",
        "prod",
        "--host",
        "app-1",
        "--name",
        "server1",
        "--port",
        &first.to_string(),
    ]);
    wait_for_ping(first, "server1").await;

    let filler = disk.fill();
    let second = free_port();
    coordinator.ok(&[
        "create",
        "server",
        "--cluster",
        "prod",
        "--host",
        "app-1",
        "--name",
        "server2",
        "--port",
        &second.to_string(),
    ]);
    wait_for("the agent to say it cannot persist", PATIENCE, POLL, || {
        let said = agent.log_text().contains("cannot persist a desired state");
        async move { said.then_some(()) }
    })
    .await
    .unwrap();
    let host = coordinator.json(&["host", "show", "app-1"]);
    assert!(
        host["applied_generation"].as_u64() < host["generation"].as_u64(),
        "the status shows the host behind: {host}"
    );
    assert!(ping(second).is_none(), "not acted on while not written");

    std::fs::remove_file(filler).unwrap();
    let pong = wait_for_ping(second, "server2 once there is room again").await;
    assert_eq!(pong["server"], "server2");
    drop(agent);
    drop(disk);
}
