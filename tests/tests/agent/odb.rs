//! A server on a PostgreSQL ODB, a MariaDB ODB refused before anything is created (Zato 3.2's
//! servers cannot run there), and an ODB that cannot be reached.

use super::*;

/// A coordinator with cluster `orders` whose ODB is `database`, an agent `db-1` of it running,
/// and `server1` assigned to db-1 on the returned port.
async fn orders_on(
    database: &muster_testkit::TestDatabase,
    scratch: &Path,
) -> (Coordinator, Agent, Agent, u16) {
    let (coordinator, first_agent) = cluster_with_agent(scratch, &[]).await;
    let options = database.muster_odb_options(scratch);
    let mut create = vec!["create", "cluster", "orders"];
    create.extend(options.iter().map(String::as_str));
    coordinator.ok(&create);
    let port = free_port();
    let token = coordinator.join_token("orders", &[], 1);
    let mut agent = Agent::configure(scratch, &coordinator, "db-1", &token);
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
    (coordinator, first_agent, agent, port)
}

async fn server_on_a_database_odb(backend: muster_testkit::Backend) {
    use sqlx::Row as _;
    let database = muster_testkit::TestDatabase::create(backend).await;
    let scratch = tempfile::tempdir().unwrap();
    let (_coordinator, _app_host, _db_host, port) = orders_on(&database, scratch.path()).await;
    let pong = wait_for_ping(port, "a server whose ODB is a real database").await;
    assert_eq!(pong["cluster"], "orders");

    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&database.url).await.unwrap();
    let row = sqlx::query("SELECT s.up_status, c.name, s.preferred_address FROM server s JOIN cluster c ON c.id = s.cluster_id WHERE s.name = 'server1'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        row.try_get::<String, _>(0).unwrap(),
        "running",
        "the running server set its up_status"
    );
    assert_eq!(row.try_get::<String, _>(1).unwrap(), "orders");
    assert_eq!(
        row.try_get::<String, _>(2).unwrap(),
        "127.0.0.1",
        "where the other servers call it: its agent's advertise address, not the first address \
         Zato finds on the host's interfaces"
    );
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
async fn a_mariadb_odb_is_refused_before_anything_is_created() {
    use sqlx::Row as _;
    let database = muster_testkit::TestDatabase::create(muster_testkit::Backend::MySql).await;
    let scratch = tempfile::tempdir().unwrap();
    let (coordinator, _app, agent, _port) = orders_on(&database, scratch.path()).await;
    let server = wait_for_component(&coordinator, "server1", "the refusal in the status", |c| {
        c["reason"]
            .as_str()
            .is_some_and(|reason| reason.contains("MariaDB"))
    })
    .await;
    let reason = server["reason"].as_str().unwrap();
    assert!(
        reason.contains("`zato create odb` on host db-1 failed")
            && reason.contains("Zato 3.2 cannot run on MariaDB 10.5 or later")
            && reason.contains("use PostgreSQL or MySQL"),
        "{reason}"
    );
    assert_eq!(server["state"], "pending", "{server}");
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&database.url).await.unwrap();
    let tables = sqlx::query(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE()",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        tables.try_get::<i64, _>(0).unwrap(),
        0,
        "nothing was created in the ODB"
    );
    assert!(
        !agent.zato_invocations().contains("zato create"),
        "no zato create ran"
    );
    pool.close().await;
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
    // app-1 enrolled with prod's token: it runs this cluster's components once admitted.
    coordinator.ok(&["host", "admit", "app-1", "--cluster", "unreachable"]);
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
    assert_eq!(
        component["state"], "pending",
        "the server was never released"
    );
    let reason = component["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("waiting for the cluster's bootstrap: `zato create odb` on host app-1")
            && reason.contains("cannot connect to the ODB"),
        "{reason}"
    );
}

/// The ODB replaced by an empty one: a server's agent reports it and nothing is stopped; the
/// cluster's file applied again rebuilds the cluster on it (the bootstrap again, server1 first,
/// then server2, the dashboard), each component archived and created again.
#[tokio::test]
async fn an_odb_replaced_by_an_empty_one_is_rebuilt_when_the_file_is_applied_again() {
    use sqlx::Row as _;
    let database = muster_testkit::TestDatabase::create(muster_testkit::Backend::Postgres).await;
    let scratch = tempfile::tempdir().unwrap();
    let (coordinator, _app_host, agent, port1) = orders_on(&database, scratch.path()).await;
    let (port2, dashboard_port) = (free_port(), free_port());
    for (role, name, port) in [
        ("server", "server2", port2),
        ("web-admin", "web-admin", dashboard_port),
    ] {
        coordinator.ok(&[
            "create",
            role,
            "--cluster",
            "orders",
            "--host",
            "db-1",
            "--name",
            name,
            "--port",
            &port.to_string(),
        ]);
    }
    let mut pids = Vec::new();
    for port in [port1, port2] {
        pids.push(
            wait_for_ping(port, "both servers").await["pid"]
                .as_u64()
                .unwrap(),
        );
    }
    for name in ["server1", "server2", "web-admin"] {
        wait_for_component(&coordinator, name, "every component healthy", |c| {
            c["healthy"] == true
        })
        .await;
    }
    let creates_before = creates_in(&agent.zato_invocations());

    database.replace_with_empty().await;
    let shown = wait_for(
        "a server's agent to report the ODB empty",
        PATIENCE,
        Duration::from_millis(200),
        || {
            let cluster = coordinator.json(&["cluster", "show", "orders"]);
            async move { (cluster["odb_empty"] == true).then_some(cluster) }
        },
    )
    .await
    .unwrap();
    assert_eq!(shown["odb_epoch"], 0, "{shown}");
    let status = coordinator.ok(&["status"]);
    assert!(
        status.contains("replaced by an empty one?") && status.contains("`muster apply`"),
        "{status}"
    );
    for (port, pid) in [port1, port2].into_iter().zip(&pids) {
        assert_eq!(
            ping(port).and_then(|pong| pong["pid"].as_u64()),
            Some(*pid),
            "nothing is stopped before an operator asks"
        );
    }
    assert_eq!(creates_in(&agent.zato_invocations()), creates_before);

    let file = scratch.path().join("orders.toml");
    std::fs::write(&file, coordinator.ok(&["get", "cluster", "orders"])).unwrap();
    let dry_run = coordinator.ok(&["apply", "--file", &file.display().to_string(), "--dry-run"]);
    assert!(
        dry_run.contains("! rebuild cluster orders on its ODB") && dry_run.contains("1 change(s)"),
        "{dry_run}"
    );
    let applied = coordinator.ok(&["apply", "--file", &file.display().to_string()]);
    assert!(
        applied.contains("rebuilding cluster orders on its empty ODB (generation 1)"),
        "{applied}"
    );
    for name in ["server1", "server2", "web-admin"] {
        wait_for_component(
            &coordinator,
            name,
            "every component created again and healthy",
            |c| c["healthy"] == true && c["odb_epoch"] == 1,
        )
        .await;
    }
    for (port, pid) in [port1, port2].into_iter().zip(&pids) {
        let pong = wait_for_ping(port, "the servers created again").await;
        assert_ne!(pong["pid"].as_u64(), Some(*pid), "a new process: {pong}");
    }

    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&database.url).await.unwrap();
    let servers: Vec<String> = sqlx::query(
        "SELECT s.name FROM server s JOIN cluster c ON c.id = s.cluster_id \
         WHERE c.name = 'orders' ORDER BY s.name",
    )
    .fetch_all(&pool)
    .await
    .unwrap()
    .iter()
    .map(|row| row.try_get::<String, _>(0).unwrap())
    .collect();
    assert_eq!(
        servers,
        ["server1", "server2"],
        "both servers are in the new ODB"
    );
    let users = sqlx::query("SELECT COUNT(*) FROM auth_user WHERE username = 'admin'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(
        users.try_get::<i64, _>(0).unwrap(),
        1,
        "the dashboard's user"
    );
    pool.close().await;

    // server1 first, as on a fresh ODB, then server2.
    let invocations = agent.zato_invocations();
    let rebuilt: Vec<&str> = invocations
        .lines()
        .filter(|line| line.contains(" zato create "))
        .skip(creates_before)
        .collect();
    let position = |what: &str| {
        rebuilt
            .iter()
            .position(|line| line.contains(what))
            .unwrap_or_else(|| panic!("no `{what}` among the creates: {rebuilt:#?}"))
    };
    assert!(position("create odb") < position("create cluster"));
    assert!(position("create cluster") < position("server1"));
    assert!(position("server1") < position("server2"), "{rebuilt:#?}");
    let archived: Vec<String> = std::fs::read_dir(agent.components_dir.join(".archive"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for base in ["server-server1", "server-server2", "web-admin-web-admin"] {
        assert!(
            archived
                .iter()
                .any(|name| name.starts_with(&format!("orders.{base}."))),
            "{base} archived, not deleted: {archived:?}"
        );
    }
    assert!(
        coordinator
            .json(&["events", "--cluster", "orders"])
            .as_array()
            .unwrap()
            .iter()
            .any(|event| event["kind"] == "cluster.odb-rebuild"),
        "the rebuild is an event"
    );
    let again = coordinator.ok(&["apply", "--file", &file.display().to_string()]);
    assert!(again.contains("unchanged"), "{again}");
    assert!(!coordinator.ok(&["status"]).contains("warning"));
}
