//! What the agent refuses or survives: who Zato runs as, an unreadable ledger, a program the host
//! does not allow, a full disk.

use super::*;

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
    let repo = agent.components_dir.join("prod/server-server1/config/repo");
    let mode_of = |file: &str| {
        std::fs::metadata(repo.join(file))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    for file in ["server.conf", "secrets.conf"] {
        assert_eq!(mode_of(file), 0o600, "{file}");
    }
    // A file written again as Zato writes it is closed again.
    std::fs::set_permissions(
        repo.join("server.conf"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    wait_for("server.conf closed again", PATIENCE, POLL, || {
        let closed = mode_of("server.conf") == 0o600;
        async move { closed.then_some(()) }
    })
    .await
    .unwrap();
}

/// Zato's installer makes `bin/zato` mode 0740, owned by root: a `run_as` user outside root's group
/// cannot run it, and the agent says so before it tries anything, as does `muster-agent validate`.
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
    // The unit's ExecStartPre refuses it too, so systemd does not restart the agent for ever.
    let validated = std::process::Command::new(workspace_binary("muster-agent"))
        .args(["validate", "--config"])
        .arg(&agent.config)
        .output()
        .unwrap();
    let said = text_of(&validated);
    assert!(!validated.status.success(), "{said}");
    assert!(
        said.contains(&format!(
            "zato_bin: run_as user nobody cannot run {}",
            zato.display()
        )),
        "{said}"
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

/// Where the agent writes is the host's decision too: an SQLite ODB file (`--odb-db-name`, set by
/// anyone with an admin token) outside the components directory and the agent's `sqlite_odb_dirs`
/// is refused, naming the setting, and nothing is written there: no new file, and an existing
/// database gets no tables of Zato's.
#[tokio::test]
async fn an_sqlite_odb_outside_the_hosts_allowed_directories_is_refused_and_never_written() {
    let scratch = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let coordinator = Coordinator::start(scratch.path(), None, &[]).await;
    let new_file = outside.path().join("odb.db");
    let existing = outside.path().join("precious.db");
    std::fs::write(&existing, b"someone else's data").unwrap();
    let mut agents = Vec::new();
    for (cluster, host, file) in [("away", "app-1", &new_file), ("over", "app-2", &existing)] {
        coordinator.ok(&[
            "create",
            "cluster",
            cluster,
            "--odb-db-name",
            file.to_str().unwrap(),
        ]);
        let token = coordinator.join_token(cluster, &[], 1);
        let mut agent = Agent::configure(scratch.path(), &coordinator, host, &token);
        agent.start();
        agents.push(agent);
        coordinator.ok(&[
            "create",
            "server",
            "--cluster",
            cluster,
            "--host",
            host,
            "--port",
            &free_port().to_string(),
        ]);
    }
    for cluster in ["away", "over"] {
        let status = wait_for(
            "the ODB outside the allowed directories to be refused",
            PATIENCE,
            Duration::from_millis(200),
            || {
                let status = text(&coordinator.muster(&["status", "--cluster", cluster]).stdout);
                async move {
                    status
                        .contains("refused: the SQLite ODB file")
                        .then_some(status)
                }
            },
        )
        .await
        .unwrap();
        assert!(
            status.contains("sqlite_odb_dirs"),
            "the refusal names the setting: {status}"
        );
    }
    assert!(!new_file.exists(), "no ODB file was made outside");
    assert_eq!(
        std::fs::read(&existing).unwrap(),
        b"someone else's data",
        "the existing file is untouched"
    );
}

/// A host of another cluster is never placed, whatever labels it has: `evil2`, enrolled with a
/// join token of cluster `evilc` that gives it `tier=app`, matches no selector of cluster `prod`
/// (only `app-1`, enrolled with prod's token and the same label, does), naming it for prod is
/// refused with the reason, and prod's ODB password never reaches its agent. An agent that asks
/// for a label its token does not give is refused at enrollment.
#[tokio::test]
async fn a_host_of_another_cluster_is_never_placed_and_never_gets_the_clusters_secrets() {
    let scratch = tempfile::tempdir().unwrap();
    let coordinator = Coordinator::start(scratch.path(), None, &[]).await;
    coordinator.ok(&["create", "cluster", "evilc"]);
    let labelled_token = |cluster: &str| {
        coordinator.json(&[
            "token",
            "create",
            "--cluster",
            cluster,
            "--label",
            "tier=app",
        ])["secret_token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let mut evil = Agent::configure(
        scratch.path(),
        &coordinator,
        "evil2",
        &labelled_token("evilc"),
    );
    evil.start();
    wait_for("evil2 to enroll", PATIENCE, POLL, || {
        let host = coordinator.muster(&["-o", "json", "host", "show", "evil2"]);
        async move { host.status.success().then_some(()) }
    })
    .await
    .unwrap();

    // prod, whose secrets only its own servers may get.
    coordinator.ok(&["create", "cluster", "prod"]);
    let file = scratch.path().join("prod.toml");
    std::fs::write(
        &file,
        "[cluster]\nname = \"prod\"\n\n[cluster.odb]\ntype = \"sqlite\"\n\n\
         [[servers]]\nselector = { tier = \"app\" }\ncount = 1\n",
    )
    .unwrap();
    let refused = coordinator.muster(&["apply", "-f", file.to_str().unwrap(), "--dry-run"]);
    assert!(!refused.status.success());
    let error = text(&refused.stderr);
    assert!(
        error.contains("asks for 1 host(s) and 0 enrolled, undrained host(s) of cluster prod"),
        "{error}"
    );
    let named = coordinator.muster(&["create", "server", "--cluster", "prod", "--host", "evil2"]);
    assert!(!named.status.success());
    let error = text(&named.stderr);
    assert!(
        error.contains("host 'evil2' belongs to cluster 'evilc'"),
        "{error}"
    );
    let secret_key = cluster_secrets(&coordinator).await.remove(0);

    // prod's own host with the label is the one chosen.
    let mut app = Agent::configure(
        scratch.path(),
        &coordinator,
        "app-1",
        &labelled_token("prod"),
    );
    app.start();
    wait_for("app-1 to enroll", PATIENCE, POLL, || {
        let host = coordinator.muster(&["-o", "json", "host", "show", "app-1"]);
        async move { host.status.success().then_some(()) }
    })
    .await
    .unwrap();
    let applied = coordinator.ok(&["apply", "-f", file.to_str().unwrap()]);
    assert!(
        applied.contains("created server server1 on app-1"),
        "{applied}"
    );
    let servers = coordinator.json(&["component", "list", "--cluster", "prod"]);
    assert_eq!(servers.as_array().unwrap().len(), 1, "{servers}");
    assert_eq!(servers[0]["host"], "app-1", "{servers}");
    let holds_secret = |agent: &Agent| {
        std::fs::read(agent.state_dir.join("desired-state.pb"))
            .unwrap_or_default()
            .windows(secret_key.len())
            .any(|window| window == secret_key.as_bytes())
    };
    wait_for("app-1 to hold prod's secrets", PATIENCE, POLL, || {
        let found = holds_secret(&app);
        async move { found.then_some(()) }
    })
    .await
    .unwrap();
    assert!(!holds_secret(&evil), "prod's secret key reached evil2");

    // An agent that asks for a label its token does not give is refused.
    let mut asking = Agent::configure(
        scratch.path(),
        &coordinator,
        "asking",
        &coordinator.join_token("prod", &[], 1),
    );
    let mut config = std::fs::read_to_string(&asking.config).unwrap();
    config.push_str("labels = { tier = \"db\" }\n");
    std::fs::write(&asking.config, config).unwrap();
    asking.start();
    wait_for("the enrollment to be refused", PATIENCE, POLL, || {
        let log = asking.log_text();
        async move { log.contains("labels are not the token's").then_some(()) }
    })
    .await
    .unwrap();
    assert!(
        !coordinator
            .muster(&["host", "show", "asking"])
            .status
            .success(),
        "the asking host was not enrolled"
    );
}
