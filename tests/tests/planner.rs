//! The planner end to end: several agents (each on its own loopback address), real coordinators
//! and mock-zato components.

use std::time::Duration;

use muster_testkit::harness::{Agent, Coordinator, signal};
use muster_testkit::{Backend, TestDatabase, free_port, wait_for};
use nix::sys::signal::Signal;

const PATIENCE: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(100);

/// The JSON a component at `address`:`port` answers with.
fn answer(address: &str, port: u16) -> Option<serde_json::Value> {
    let address = std::net::SocketAddr::new(address.parse().ok()?, port);
    let (_, body) = muster_testkit::traffic::get(address, "/zato/ping")?;
    serde_json::from_str(&body).ok()
}

async fn wait_for_answer(address: &str, port: u16, what: &str) -> serde_json::Value {
    wait_for(what, PATIENCE, POLL, || {
        let found = answer(address, port);
        async move { found }
    })
    .await
    .unwrap()
}

async fn all_healthy(coordinator: &Coordinator, count: usize) {
    let waited = wait_for(
        "every component healthy",
        PATIENCE,
        Duration::from_millis(250),
        || {
            let components = coordinator.json(&["component", "list"]);
            let all = components.as_array().unwrap();
            let done =
                all.len() == count && all.iter().all(|component| component["healthy"] == true);
            async move { done.then_some(()) }
        },
    )
    .await;
    if let Err(error) = waited {
        panic!(
            "{error}; components:\n{}",
            coordinator.ok(&["component", "list"])
        );
    }
}

/// Waits until `hosts` hosts are up and each applied its newest generation; returns the status.
async fn converged(coordinator: &Coordinator, hosts: usize) -> serde_json::Value {
    wait_for(
        "every host to apply its newest generation",
        PATIENCE,
        Duration::from_millis(250),
        || {
            let status = coordinator.json(&["status"]);
            let done = status["clusters"][0]["hosts"]
                .as_array()
                .is_some_and(|all| {
                    all.len() == hosts
                        && all.iter().all(|host| {
                            host["state"] == "up"
                                && host["generation"] == host["applied_generation"]
                        })
                });
            async move { done.then_some(status) }
        },
    )
    .await
    .unwrap()
}

fn count_in(agents: &[&Agent], needle: &str) -> usize {
    agents
        .iter()
        .map(|agent| agent.zato_invocations().matches(needle).count())
        .sum()
}

/// Cluster `prod` with its ODB in an SQLite file every agent of this machine shares.
fn create_cluster(coordinator: &Coordinator, scratch: &std::path::Path) {
    let odb = scratch.join("odb.db");
    coordinator.ok(&[
        "create",
        "cluster",
        "prod",
        "--odb-db-name",
        odb.to_str().unwrap(),
    ]);
}

/// Hosts A (127.0.0.BASE), B (BASE+1) and C (BASE+2), enrolled with role-less tokens and running.
fn three_agents(
    scratch: &std::path::Path,
    coordinators: [&Coordinator; 3],
    base: usize,
) -> [Agent; 3] {
    let mut agents = Vec::new();
    for (index, (name, coordinator)) in ["host-a", "host-b", "host-c"]
        .into_iter()
        .zip(coordinators)
        .enumerate()
    {
        let token = coordinator.join_token("prod", &[], 1);
        let mut agent = Agent::configure(scratch, coordinator, name, &token)
            .with_address(&format!("127.0.0.{}", base + index));
        agent.start();
        agents.push(agent);
    }
    agents.try_into().ok().unwrap()
}

#[tokio::test]
async fn roles_assigned_in_any_order_come_up_wired_to_the_scheduler() {
    let scratch = tempfile::tempdir().unwrap();
    let coordinator = Coordinator::start(scratch.path(), None, &[]).await;
    create_cluster(&coordinator, scratch.path());
    let [a, b, c] = three_agents(scratch.path(), [&coordinator; 3], 11);
    let (scheduler_port, dashboard_port) = (free_port(), free_port());

    // Servers first, then the scheduler and the dashboard: the planner orders Zato's steps.
    coordinator.ok(&["create", "server", "--cluster", "prod", "--host", "host-b"]);
    coordinator.ok(&["create", "server", "--cluster", "prod", "--host", "host-c"]);
    coordinator.ok(&[
        "create",
        "scheduler",
        "--cluster",
        "prod",
        "--host",
        "host-a",
        "--port",
        &scheduler_port.to_string(),
    ]);
    coordinator.ok(&[
        "create",
        "web-admin",
        "--cluster",
        "prod",
        "--host",
        "host-a",
        "--port",
        &dashboard_port.to_string(),
    ]);
    all_healthy(&coordinator, 4).await;

    assert_eq!(
        wait_for_answer("127.0.0.12", 17010, "server1 on B").await["server"],
        "server1"
    );
    assert_eq!(
        wait_for_answer("127.0.0.13", 17010, "server2 on C").await["server"],
        "server2"
    );
    assert_eq!(
        wait_for_answer("127.0.0.11", scheduler_port, "the scheduler on A").await["component"],
        "scheduler"
    );
    assert_eq!(
        wait_for_answer("127.0.0.11", dashboard_port, "the dashboard on A").await["component"],
        "web-admin"
    );
    for (agent, name) in [(&b, "server1"), (&c, "server2")] {
        let conf = std::fs::read_to_string(
            agent
                .components_dir
                .join(format!("prod/server-{name}/config/repo/server.conf")),
        )
        .unwrap();
        assert!(
            conf.contains(&format!("scheduler_host=127.0.0.11\nscheduler_port={scheduler_port}\nscheduler_use_tls=False")),
            "{name}'s server.conf names the scheduler on host A:\n{conf}"
        );
    }
    let agents = [&a, &b, &c];
    assert_eq!(
        count_in(&agents, "zato create odb"),
        1,
        "the ODB was created once"
    );
    assert_eq!(
        count_in(&agents, "zato create cluster "),
        1,
        "the cluster was created once"
    );

    // status and backends tell the same story, once every host applied its newest generation.
    let status = converged(&coordinator, 3).await;
    assert_eq!(
        status["clusters"][0]["components"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let table = coordinator.ok(&["status"]);
    assert!(table.starts_with("cluster prod: "), "{table}");
    assert!(table.contains("\nHOST "), "{table}");
    let haproxy = coordinator.ok(&["backends", "--cluster", "prod", "--format", "haproxy"]);
    assert_eq!(
        haproxy,
        "server http_plain--server1 127.0.0.12:17010 check inter 2s rise 2 fall 2 fastinter 250ms \
         downinter 250ms observe layer4 error-limit 1 on-error mark-down # ZATO backend \
         bck_http_plain:server--server1\nserver http_plain--server2 127.0.0.13:17010 check inter \
         2s rise 2 fall 2 fastinter 250ms downinter 250ms observe layer4 error-limit 1 on-error \
         mark-down # ZATO backend bck_http_plain:server--server2\n"
    );
}

#[tokio::test]
async fn the_scheduler_moves_off_a_host_that_stops() {
    let scratch = tempfile::tempdir().unwrap();
    let coordinator = Coordinator::start(scratch.path(), None, &["--heartbeat-ttl", "3s"]).await;
    create_cluster(&coordinator, scratch.path());
    let [a, mut b, mut c] = three_agents(scratch.path(), [&coordinator; 3], 14);
    let scheduler_port = free_port();
    coordinator.ok(&["create", "server", "--cluster", "prod", "--host", "host-b"]);
    coordinator.ok(&["create", "server", "--cluster", "prod", "--host", "host-c"]);
    let port_text = scheduler_port.to_string();
    coordinator.ok(&[
        "create",
        "scheduler",
        "--cluster",
        "prod",
        "--host",
        "host-a",
        "--port",
        &port_text,
    ]);
    all_healthy(&coordinator, 3).await;
    // The planner points the scheduler at whichever server was healthy first (its event says
    // which); wait until the scheduler follows, then stop that server's host.
    let chosen_host = wait_for(
        "the planner to choose the scheduler's server",
        PATIENCE,
        POLL,
        || {
            let events = coordinator.json(&["events", "--cluster", "prod"]);
            let host = events
                .as_array()
                .unwrap()
                .iter()
                .find(|event| event["kind"] == "scheduler.target")
                .and_then(|event| event["host"].as_str().map(str::to_owned));
            async move { host }
        },
    )
    .await
    .unwrap();
    let target = if chosen_host == "host-b" {
        "127.0.0.15"
    } else {
        "127.0.0.16"
    };
    wait_for(
        "the scheduler to point at the chosen server",
        PATIENCE,
        POLL,
        || {
            let host = answer("127.0.0.14", scheduler_port)
                .and_then(|pong| pong["detail"]["server_host"].as_str().map(str::to_owned));
            async move { (host.as_deref() == Some(target)).then_some(()) }
        },
    )
    .await
    .unwrap();
    let (stopped, survivor, stopped_host, stopped_server, survivor_server) =
        if target == "127.0.0.15" {
            (&mut b, "127.0.0.16", "host-b", "server1", "server2")
        } else {
            (&mut c, "127.0.0.15", "host-c", "server2", "server1")
        };
    let server_pid = answer(target, 17010).unwrap()["pid"].as_u64().unwrap();
    stopped.kill();
    signal(u32::try_from(server_pid).unwrap(), Signal::SIGKILL);
    wait_for(
        "the scheduler to point at the surviving server",
        PATIENCE,
        POLL,
        || {
            let host = answer("127.0.0.14", scheduler_port)
                .and_then(|pong| pong["detail"]["server_host"].as_str().map(str::to_owned));
            async move { (host.as_deref() == Some(survivor)).then_some(()) }
        },
    )
    .await
    .unwrap();
    let conf = std::fs::read_to_string(
        a.components_dir
            .join("prod/scheduler-scheduler/config/repo/scheduler.conf"),
    )
    .unwrap();
    assert!(conf.contains(&format!("server_host={survivor}")), "{conf}");
    let events = coordinator.json(&["events", "--cluster", "prod"]);
    let why = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["kind"] == "scheduler.target")
        .map(|event| event["message"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>();
    let expected = format!("host {stopped_host} of server {stopped_server} is down");
    assert!(
        why.iter()
            .any(|message| message.contains(survivor_server) && message.contains(&expected)),
        "{why:?}"
    );
    let host = coordinator.json(&["host", "show", stopped_host]);
    assert_eq!(host["state"], "down");
}

#[tokio::test]
async fn a_server_token_turns_fresh_hosts_into_servers() {
    let scratch = tempfile::tempdir().unwrap();
    let coordinator = Coordinator::start(scratch.path(), None, &[]).await;
    create_cluster(&coordinator, scratch.path());
    let token = coordinator.join_token("prod", &["server"], 3);
    let mut agents = Vec::new();
    for (index, name) in ["auto-1", "auto-2", "auto-3"].into_iter().enumerate() {
        let mut agent = Agent::configure(scratch.path(), &coordinator, name, &token)
            .with_address(&format!("127.0.0.{}", 21 + index));
        agent.start();
        agents.push(agent);
    }
    all_healthy(&coordinator, 3).await;
    let mut names = Vec::new();
    for index in 0..3 {
        let pong = wait_for_answer(
            &format!("127.0.0.{}", 21 + index),
            17010,
            "an auto-joined server",
        )
        .await;
        names.push(pong["server"].as_str().unwrap().to_owned());
    }
    names.sort();
    assert_eq!(names, ["server1", "server2", "server3"]);
    let tokens = coordinator.json(&["token", "list"]);
    assert_eq!(
        (tokens[0]["uses"].as_u64(), tokens[0]["state"].as_str()),
        (Some(3), Some("used up"))
    );
}

#[tokio::test]
async fn a_drained_host_stops_serving_and_a_removed_one_is_refused() {
    let scratch = tempfile::tempdir().unwrap();
    let coordinator = Coordinator::start(scratch.path(), None, &[]).await;
    create_cluster(&coordinator, scratch.path());
    let token = coordinator.join_token("prod", &["server"], 2);
    let mut one =
        Agent::configure(scratch.path(), &coordinator, "one", &token).with_address("127.0.0.31");
    let mut two =
        Agent::configure(scratch.path(), &coordinator, "two", &token).with_address("127.0.0.32");
    one.start();
    two.start();
    all_healthy(&coordinator, 2).await;
    assert_eq!(
        coordinator
            .json(&["backends", "--cluster", "prod"])
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let refused = coordinator.muster(&["host", "remove", "two"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is not drained"));
    coordinator.ok(&["host", "drain", "two"]);
    let backends = coordinator.json(&["backends", "--cluster", "prod"]);
    assert_eq!(backends.as_array().unwrap().len(), 1, "{backends}");
    assert_eq!(backends[0]["host"], "one");
    wait_for("two's server to stop", PATIENCE, POLL, || {
        let stopped = answer("127.0.0.32", 17010).is_none();
        async move { stopped.then_some(()) }
    })
    .await
    .unwrap();
    let kept = std::fs::read_dir(two.components_dir.join("prod"))
        .unwrap()
        .flatten()
        .any(|entry| {
            entry.file_name().to_string_lossy().starts_with("server-")
                && entry.path().join(".zato-info").exists()
        });
    assert!(kept, "drained, not deleted");
    assert!(
        answer("127.0.0.31", 17010).is_some(),
        "the other host serves on"
    );

    coordinator.ok(&["host", "undrain", "two"]);
    wait_for_answer("127.0.0.32", 17010, "two's server back after undrain").await;
    coordinator.ok(&["host", "drain", "two"]);
    wait_for(
        "two to apply its drain",
        PATIENCE,
        Duration::from_millis(250),
        || {
            let host = coordinator.json(&["host", "show", "two"]);
            let applied = host["generation"] == host["applied_generation"]
                && answer("127.0.0.32", 17010).is_none();
            async move { applied.then_some(()) }
        },
    )
    .await
    .unwrap();
    coordinator.ok(&["host", "remove", "two"]);
    wait_for("two's agent to be refused", PATIENCE, POLL, || {
        let refused = two.log_text().contains("no longer enrolled");
        async move { refused.then_some(()) }
    })
    .await
    .unwrap();
    let hosts = coordinator.json(&["host", "list"]);
    assert_eq!(hosts.as_array().unwrap().len(), 1);
    drop(one);
}

#[tokio::test]
async fn two_coordinators_on_one_postgres_database_converge() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let scratch = tempfile::tempdir().unwrap();
    let first_dir = scratch.path().join("first");
    let second_dir = scratch.path().join("second");
    std::fs::create_dir_all(&first_dir).unwrap();
    let first = Coordinator::start(&first_dir, Some(&database.url), &[]).await;
    // The second copy shares the CA, the keys and the database.
    std::fs::create_dir_all(second_dir.join("coordinator")).unwrap();
    for entry in std::fs::read_dir(&first.data_dir).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(
            entry.path(),
            second_dir.join("coordinator").join(entry.file_name()),
        )
        .unwrap();
    }
    let second = Coordinator::attach(&second_dir).await;
    // The cluster's ODB is a PostgreSQL database of its own, as a multi-host cluster's must be.
    let odb = TestDatabase::create(Backend::Postgres).await;
    let mut create = vec!["create", "cluster", "prod"];
    let options = odb.muster_odb_options(scratch.path());
    create.extend(options.iter().map(String::as_str));
    first.ok(&create);
    let [a, b, c] = three_agents(scratch.path(), [&first, &second, &first], 41);
    let scheduler_port = free_port();

    // Commands to both coordinators at once.
    let commands: Vec<(&Coordinator, Vec<String>)> = vec![
        (
            &second,
            vec![
                "create".into(),
                "server".into(),
                "--cluster".into(),
                "prod".into(),
                "--host".into(),
                "host-b".into(),
            ],
        ),
        (
            &first,
            vec![
                "create".into(),
                "server".into(),
                "--cluster".into(),
                "prod".into(),
                "--host".into(),
                "host-c".into(),
            ],
        ),
        (
            &second,
            vec![
                "create".into(),
                "scheduler".into(),
                "--cluster".into(),
                "prod".into(),
                "--host".into(),
                "host-a".into(),
                "--port".into(),
                scheduler_port.to_string(),
            ],
        ),
    ];
    std::thread::scope(|scope| {
        for (coordinator, args) in &commands {
            scope.spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                coordinator.ok(&args);
            });
        }
    });
    all_healthy(&first, 3).await;
    let agents = [&a, &b, &c];
    assert_eq!(
        count_in(&agents, "zato create odb"),
        1,
        "the ODB was created once"
    );
    assert_eq!(
        count_in(&agents, "zato create cluster "),
        1,
        "the cluster was created once"
    );
    for agent in agents {
        assert!(
            !agent.log_text().contains("refused a desired state"),
            "no generation went backwards for {}",
            agent.host_name
        );
    }
    converged(&second, 3).await;
}
