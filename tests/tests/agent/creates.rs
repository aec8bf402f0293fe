//! `zato create` as the real Zato fails: killed after it wrote `.zato-info` but before its ODB
//! work, exiting 0 without its row, and a name whose row a server elsewhere still holds.

use super::*;

/// The pid in a create's marker file (`.creating-ROLE-NAME.pid`), once there.
async fn create_pid(agent: &Agent, base: &str) -> i32 {
    let marker = agent
        .components_dir
        .join(format!("prod/.creating-{base}.pid"));
    wait_for(&format!("{base}'s create"), PATIENCE, POLL, || {
        let pid = std::fs::read_to_string(&marker)
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok());
        async move { pid }
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_create_killed_after_zatos_info_file_is_made_again_and_gets_its_row() {
    let scratch = tempfile::tempdir().unwrap();
    let (coordinator, mut agent) = cluster_with_agent(scratch.path(), &[]).await;
    // Bootstrap first, with a fast mock, so the slow creates below are the components'.
    first_server(&coordinator).await;

    // Zato writes `.zato-info` before it commits the server's row, and before the dashboard's
    // tables and user: the host goes down (agent and create killed) in that window. One at a
    // time: on SQLite the creates take turns.
    let (port, dashboard_port) = (free_port(), free_port());
    for (role, name, base, component_port) in [
        ("server", "server2", "server-server2", port),
        (
            "web-admin",
            "web-admin",
            "web-admin-web-admin",
            dashboard_port,
        ),
    ] {
        agent.stop();
        agent.env("MOCK_ZATO_CREATE_DELAY_MS", "60000");
        agent.start();
        coordinator.ok(&[
            "create",
            role,
            "--cluster",
            "prod",
            "--host",
            "app-1",
            "--name",
            name,
            "--port",
            &component_port.to_string(),
        ]);
        let pid = create_pid(&agent, base).await;
        let info = agent
            .components_dir
            .join(format!("prod/.creating-{base}/.zato-info"));
        wait_for(&format!("{base}'s .zato-info"), PATIENCE, POLL, || {
            let written = info.exists();
            async move { written.then_some(()) }
        })
        .await
        .unwrap();
        agent.kill();
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);

        agent.env("MOCK_ZATO_CREATE_DELAY_MS", "0");
        agent.start();
        // A server without its row cannot start (it finds its name by its token in the ODB),
        // and a dashboard without its user never gets its password: healthy proves each was
        // made again.
        wait_for_component(&coordinator, name, &format!("{name} healthy"), |c| {
            c["healthy"] == true
        })
        .await;
        assert!(
            !agent
                .components_dir
                .join(format!("prod/.creating-{base}"))
                .exists(),
            "no half-made {base} is left"
        );
    }
    let pong = wait_for_ping(port, "server2").await;
    assert_eq!(pong["server"], "server2");
}

#[tokio::test]
async fn a_create_server_that_exits_0_without_its_row_is_a_failed_step() {
    let scratch = tempfile::tempdir().unwrap();
    let (coordinator, mut agent) = cluster_with_agent(scratch.path(), &[]).await;
    first_server(&coordinator).await;

    // Zato's `create server` logs an error at its commit, rolls back, and exits 0.
    agent.stop();
    agent.env("MOCK_ZATO_CREATE_SERVER_COMMIT_FAILS", "1");
    agent.start();
    let port = free_port();
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
        &port.to_string(),
    ]);
    let failed = wait_for_component(&coordinator, "server2", "server2's create to fail", |c| {
        c["state"] == "failed"
    })
    .await;
    let error = failed["last_error"].as_str().unwrap();
    assert!(
        error.contains("exited 0 but Zato's ODB has no row")
            && error.contains("Could not create the server"),
        "{failed}"
    );
    assert!(
        !agent.components_dir.join("prod/server-server2").exists(),
        "nothing is moved into place"
    );

    // The ODB works again: the retry makes it.
    agent.stop();
    agent.env_remove("MOCK_ZATO_CREATE_SERVER_COMMIT_FAILS");
    agent.start();
    let pong = wait_for_ping(port, "server2 made again").await;
    assert_eq!(pong["server"], "server2");
}

/// A host cut off and removed with `--force` may still run its server: another host that gets
/// the name must not delete that server's row while it answers, and says why; once the old one
/// is gone (its address refuses), the row is stale and the name is taken over.
#[tokio::test]
async fn a_servers_row_is_removed_only_when_the_server_is_provably_gone() {
    let database = muster_testkit::TestDatabase::create(muster_testkit::Backend::Postgres).await;
    let scratch = tempfile::tempdir().unwrap();
    let coordinator = Coordinator::start(scratch.path(), None, &[]).await;
    let options = database.muster_odb_options(scratch.path());
    let mut create = vec!["create", "cluster", "prod"];
    create.extend(options.iter().map(String::as_str));
    coordinator.ok(&create);
    let token = coordinator.join_token("prod", &[], 2);
    let mut old_host = Agent::configure(scratch.path(), &coordinator, "db-1", &token);
    old_host.start();
    let old_port = free_port();
    coordinator.ok(&[
        "create",
        "server",
        "--cluster",
        "prod",
        "--host",
        "db-1",
        "--port",
        &old_port.to_string(),
    ]);
    let old_pid = wait_for_ping(old_port, "server1 on db-1").await["pid"]
        .as_u64()
        .unwrap();

    // db-1 is cut off (its agent gone, its server still running) and removed with --force;
    // server1 goes to db-2.
    old_host.kill();
    coordinator.ok(&["host", "remove", "db-1", "--force"]);
    let mut new_host = Agent::configure(scratch.path(), &coordinator, "db-2", &token);
    new_host.start();
    let new_port = free_port();
    coordinator.ok(&[
        "create",
        "server",
        "--cluster",
        "prod",
        "--host",
        "db-2",
        "--name",
        "server1",
        "--port",
        &new_port.to_string(),
    ]);
    let refused = wait_for_component(
        &coordinator,
        "server1",
        "db-2's create to be refused",
        |c| c["host"] == "db-2" && c["state"] == "failed",
    )
    .await;
    let error = refused["last_error"].as_str().unwrap();
    assert!(
        error.contains("something answers there") && error.contains(&old_port.to_string()),
        "{refused}"
    );
    assert_eq!(
        ping(old_port).unwrap()["pid"].as_u64(),
        Some(old_pid),
        "the old server runs on, with its row"
    );
    assert_eq!(ping(old_port).unwrap()["server"], "server1");

    // The old server dies (its host is switched off): its address refuses, the row is stale.
    signal(u32::try_from(old_pid).unwrap(), Signal::SIGKILL);
    let pong = wait_for_ping(new_port, "server1 on db-2").await;
    assert_eq!(pong["server"], "server1");
    wait_for_component(&coordinator, "server1", "server1 healthy on db-2", |c| {
        c["host"] == "db-2" && c["healthy"] == true
    })
    .await;
    old_host.stop_components();
}
