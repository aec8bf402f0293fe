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
