//! Clusters: durable across restarts, unique by name, seen by every coordinator on the database.

use super::*;

pub(crate) async fn cluster_survives_a_coordinator_restart(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = open(&database).await;
    let created = store
        .create_cluster(new_cluster("prod"), &actor())
        .await
        .unwrap();
    store.close().await;

    let reopened = open(&database).await;
    assert_eq!(reopened.get_cluster("prod").await.unwrap(), created);
    assert_eq!(reopened.list_clusters().await.unwrap(), vec![created]);
    let secrets = reopened.cluster_secrets("prod").await.unwrap();
    assert_eq!(secrets, new_cluster("prod").secrets);
    reopened.close().await;
}

pub(crate) async fn duplicate_cluster_names_are_refused(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = open(&database).await;
    store
        .create_cluster(new_cluster("prod"), &actor())
        .await
        .unwrap();
    let duplicate = store.create_cluster(new_cluster("prod"), &actor()).await;
    assert!(
        matches!(&duplicate, Err(StoreError::AlreadyExists { kind: "cluster", name }) if name == "prod"),
        "{duplicate:?}"
    );
    assert_eq!(store.list_clusters().await.unwrap().len(), 1);
    store.close().await;
}

/// The health probe commits a write, from several coordinators on one database at once.
pub(crate) async fn the_health_probe_commits_a_write(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let first = open(&database).await;
    let second = open(&database).await;
    for _ in 0..5 {
        let (one, other) = tokio::join!(first.probe_write(), second.probe_write());
        one.unwrap();
        other.unwrap();
    }
    first.ping().await.unwrap();
}

pub(crate) async fn two_coordinators_see_each_others_writes(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let first = open(&database).await;
    let second = open(&database).await;
    first
        .create_cluster(new_cluster("alpha"), &actor())
        .await
        .unwrap();
    second
        .create_cluster(new_cluster("beta"), &actor())
        .await
        .unwrap();
    let token = issue_token(&second, "alpha", 0, 60_000).await;

    for store in [&first, &second] {
        let names: Vec<_> = store
            .list_clusters()
            .await
            .unwrap()
            .into_iter()
            .map(|cluster| cluster.name)
            .collect();
        assert_eq!(names, ["alpha", "beta"]);
        let tokens = store.list_join_tokens(Some("alpha")).await.unwrap();
        assert_eq!(tokens.len(), 1);
        assert_eq!(tokens[0].id, token.id);
    }
    first
        .redeem_join_token(&token.id, &token.secret_hash, now_ms())
        .await
        .unwrap();
    assert_eq!(second.list_join_tokens(None).await.unwrap()[0].uses, 1);
    first.close().await;
    second.close().await;
}

/// A cluster's services: stored whole under their revision, the same set again changes nothing,
/// the hosts of its servers (only) get a new desired state with them, and a reported revision
/// is read back.
pub(crate) async fn services_are_stored_by_revision_and_reach_the_servers(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = open(&database).await;
    store
        .create_cluster(new_cluster("prod"), &actor())
        .await
        .unwrap();
    let app = enroll(&store, "prod", "app-1").await;
    let lb = enroll(&store, "prod", "lb").await;
    for (role, host) in [(Role::Server, "app-1"), (Role::LoadBalancer, "lb")] {
        store
            .create_assignment(assign("prod", role, host, None, None), &actor())
            .await
            .unwrap();
    }
    finish_bootstrap(&store, &app.id, 1, "10.0.0.5").await;
    let generation = |host: &Host| {
        let store = &store;
        let id = host.id.clone();
        async move { store.host_generation(&id).await.unwrap().unwrap() }
    };
    let (app_before, lb_before) = (generation(&app).await, generation(&lb).await);
    let file = |name: &str, content: &str| v1::ServiceFile {
        name: name.to_owned(),
        content: content.to_owned(),
        ..Default::default()
    };
    // A module of 100 KiB: more than MySQL's TEXT holds.
    let big = format!("# {}\nx = 1\n", "x".repeat(100 * 1024));
    let files = vec![file("orders.py", "x = 1\n"), file("billing.py", &big)];
    let (revision, changed) = store.set_services("prod", &files, &actor()).await.unwrap();
    assert!(changed);
    assert_eq!(revision.len(), 64);
    assert_eq!(
        store.get_cluster("prod").await.unwrap().services_revision,
        revision
    );
    let stored = store.cluster_services("prod", true).await.unwrap();
    assert_eq!(
        stored
            .iter()
            .map(|file| file.name.as_str())
            .collect::<Vec<_>>(),
        ["billing.py", "orders.py"]
    );
    assert_eq!(stored[0].content, big, "stored whole");
    assert_eq!(stored[1].sha256, muster_proto::services::sha256("x = 1\n"));
    assert!(
        store.cluster_services("prod", false).await.unwrap()[0]
            .content
            .is_empty(),
        "names and hashes only"
    );
    assert!(
        generation(&app).await > app_before,
        "the server's host moves"
    );
    assert_eq!(
        generation(&lb).await,
        lb_before,
        "the load balancer's does not"
    );
    let plan = planner::render(&store.plan_inputs(&app.id).await.unwrap());
    assert_eq!(plan.components[0].services_revision, revision);
    assert_eq!(plan.components[0].services.len(), 2);

    let app_now = generation(&app).await;
    let (same, changed) = store.set_services("prod", &files, &actor()).await.unwrap();
    assert_eq!((same.as_str(), changed), (revision.as_str(), false));
    assert_eq!(
        generation(&app).await,
        app_now,
        "the same set changes nothing"
    );

    let refused = store
        .set_services("prod", &[file("../x.py", "x")], &actor())
        .await;
    assert!(
        matches!(refused, Err(StoreError::Invalid(_))),
        "{refused:?}"
    );

    let mut reported = report(app_now, "10.0.0.5", Vec::new());
    reported.components = vec![ComponentStatus {
        cluster: "prod".to_owned(),
        role: Role::Server,
        name: "server1".to_owned(),
        state: "running".to_owned(),
        healthy: true,
        last_error: String::new(),
        restarts: 0,
        backends: Vec::new(),
        services_revision: revision.clone(),
        config_revision: String::new(),
    }];
    let lb_before_report = generation(&lb).await;
    store.record_status(&app.id, reported).await.unwrap();
    assert!(
        generation(&lb).await > lb_before_report,
        "a server's first deployed services change its load balancers' rotation"
    );
    let server = store
        .list_assignments(Some("prod"))
        .await
        .unwrap()
        .into_iter()
        .find(|assignment| assignment.role == Role::Server)
        .unwrap();
    assert_eq!(server.status.unwrap().services_revision, revision);
    let events = store.list_events(Some("prod"), None, 100).await.unwrap();
    assert!(
        events
            .iter()
            .any(|event| event.kind == "cluster.services-changed"
                && event.message.contains("2 file(s): billing.py, orders.py")),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|event| event.kind == "component.services"),
        "{events:?}"
    );
    store.close().await;
}

/// A cluster's configuration: files stored whole, env values sealed (not in the database's
/// text) and opened for the importing server's plan only; a changed value is a new revision, the
/// same set is none; a placeholder without a value is refused.
pub(crate) async fn configuration_is_sealed_and_reaches_only_the_importing_server(
    backend: Backend,
) {
    let database = TestDatabase::create(backend).await;
    let store = open(&database).await;
    store
        .create_cluster(new_cluster("prod"), &actor())
        .await
        .unwrap();
    let first = enroll(&store, "prod", "app-1").await;
    let second = enroll(&store, "prod", "app-22").await;
    for host in ["app-1", "app-22"] {
        store
            .create_assignment(assign("prod", Role::Server, host, None, None), &actor())
            .await
            .unwrap();
    }
    finish_bootstrap(&store, &first.id, 1, "10.0.0.5").await;
    let api = v1::EnmasseFile {
        name: "api.yaml".to_owned(),
        content: "password: \"{Zato_Enmasse_Env.ORDERS_PASSWORD}\"\n".to_owned(),
        ..Default::default()
    };
    let env = |value: &str| BTreeMap::from([("ORDERS_PASSWORD".to_owned(), value.to_owned())]);
    let refused = store
        .set_config(
            "prod",
            std::slice::from_ref(&api),
            &BTreeMap::new(),
            &actor(),
        )
        .await;
    assert!(
        matches!(&refused, Err(StoreError::Invalid(message)) if message.contains("ORDERS_PASSWORD")),
        "{refused:?}"
    );
    let (revision, changed) = store
        .set_config(
            "prod",
            std::slice::from_ref(&api),
            &env("Secret-One"),
            &actor(),
        )
        .await
        .unwrap();
    assert!(changed);
    let (same, changed) = store
        .set_config(
            "prod",
            std::slice::from_ref(&api),
            &env("Secret-One"),
            &actor(),
        )
        .await
        .unwrap();
    assert_eq!((same.as_str(), changed), (revision.as_str(), false));
    let (other, changed) = store
        .set_config(
            "prod",
            std::slice::from_ref(&api),
            &env("Secret-Two"),
            &actor(),
        )
        .await
        .unwrap();
    assert!(
        changed && other != revision,
        "a changed value is a new revision"
    );
    let (files, names) = store.cluster_config("prod", false).await.unwrap();
    assert_eq!(files[0].name, "api.yaml");
    assert_eq!(names["ORDERS_PASSWORD"], "", "names only");
    let mut plans: Vec<v1::Component> = Vec::new();
    for host in [&first, &second] {
        let mut plan = planner::render(&store.plan_inputs(&host.id).await.unwrap());
        plans.push(plan.components.remove(0));
    }
    assert_eq!(plans[0].config_env["ORDERS_PASSWORD"], "Secret-Two");
    assert_eq!(plans[0].config_revision, other);
    assert!(plans[1].config_env.is_empty() && plans[1].config_files.is_empty());
    let url = database.url.clone();
    store.close().await;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    let sealed: String = match backend {
        Backend::MySql => String::from_utf8(
            sqlx::query("SELECT config_env_sealed FROM clusters")
                .fetch_one(&pool)
                .await
                .unwrap()
                .get::<Vec<u8>, _>(0),
        )
        .unwrap(),
        _ => sqlx::query("SELECT config_env_sealed FROM clusters")
            .fetch_one(&pool)
            .await
            .unwrap()
            .get(0),
    };
    assert!(
        !sealed.contains("Secret-Two") && !sealed.is_empty(),
        "sealed"
    );
    pool.close().await;
}
