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
    let (_database, store) = store_with_prod(backend).await;
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
    let (_database, store) = store_with_prod(backend).await;
    let (app, lb) = server_and_balancer(&store).await;
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
    // A cluster that now has services keeps a server without them out of rotation: its load
    // balancers re-render.
    assert!(
        generation(&lb).await > lb_before,
        "the load balancer's moves with the cluster's first services"
    );
    let plan = planner::render(&store.plan_inputs(&app.id).await.unwrap());
    assert_eq!(plan.components[0].services_revision, revision);
    assert_eq!(plan.components[0].services.len(), 2);

    let app_now = generation(&app).await;
    let lb_now = generation(&lb).await;
    let (same, changed) = store.set_services("prod", &files, &actor()).await.unwrap();
    assert_eq!((same.as_str(), changed), (revision.as_str(), false));
    assert_eq!(
        generation(&app).await,
        app_now,
        "the same set changes nothing"
    );
    let other = vec![file("orders.py", "x = 2\n"), file("billing.py", &big)];
    store.set_services("prod", &other, &actor()).await.unwrap();
    assert!(
        generation(&app).await > app_now,
        "another revision moves the server's host"
    );
    assert_eq!(
        generation(&lb).await,
        lb_now,
        "and not the load balancer's: which servers have services is unchanged"
    );
    store.set_services("prod", &files, &actor()).await.unwrap();
    let app_now = generation(&app).await;

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
        state: v1::ComponentState::Running,
        healthy: true,
        last_error: String::new(),
        restarts: 0,
        backends: Vec::new(),
        services_revision: revision.clone(),
        config_revision: String::new(),
        python_revision: String::new(),
        python_installed: String::new(),
        user_conf_revision: String::new(),
        odb_epoch: 0,
        odb_empty: false,
        restart_epoch: 0,
        rollout_held_since: None,
        rolls: false,
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
/// same set is none; a placeholder without a value is refused. Its user-config files: sealed
/// whole (neither content nor names in the database's text), opened for every server's plan,
/// names only otherwise; a file ConfigObj would not parse is refused, named by file and line.
pub(crate) async fn configuration_and_user_config_are_sealed_and_reach_only_the_servers_needing_them(
    backend: Backend,
) {
    let (database, store) = store_with_prod(backend).await;
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
        content: "security:\n  - name: orders.basic\n    type: basic_auth\n    \
                  password: \"{Zato_Enmasse_Env.ORDERS_PASSWORD}\"\n"
            .to_owned(),
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
    assert!(
        plans[0].config_removals.is_empty(),
        "nothing left the files yet"
    );

    // An object that leaves the files is for the importing server to delete once it imported
    // the new revision, and no more after.
    let channel_only = v1::EnmasseFile {
        name: "api.yaml".to_owned(),
        content: "channel_rest:\n  - name: orders.get\n    service: orders.get\n".to_owned(),
        ..Default::default()
    };
    let (without_security, _) = store
        .set_config("prod", &[channel_only], &BTreeMap::new(), &actor())
        .await
        .unwrap();
    let plan = planner::render(&store.plan_inputs(&first.id).await.unwrap())
        .components
        .remove(0);
    assert_eq!(
        plan.config_removals,
        [v1::EnmasseObject {
            section: "security".to_owned(),
            name: "orders.basic".to_owned(),
            kind: "basic_auth".to_owned(),
        }]
    );
    let mut imported = report(2, "10.0.0.5", Vec::new());
    imported.components = vec![ComponentStatus {
        cluster: "prod".to_owned(),
        role: Role::Server,
        name: "server1".to_owned(),
        state: v1::ComponentState::Running,
        healthy: true,
        last_error: String::new(),
        restarts: 0,
        backends: Vec::new(),
        services_revision: String::new(),
        config_revision: without_security,
        python_revision: String::new(),
        python_installed: String::new(),
        user_conf_revision: String::new(),
        odb_epoch: 0,
        odb_empty: false,
        restart_epoch: 0,
        rollout_held_since: None,
        rolls: false,
    }];
    store.record_status(&first.id, imported).await.unwrap();
    let plan = planner::render(&store.plan_inputs(&first.id).await.unwrap())
        .components
        .remove(0);
    assert!(
        plan.config_removals.is_empty(),
        "{:?}",
        plan.config_removals
    );

    // The user-config files: sealed, to every server, names only to admins.
    let partners = |password: &str| v1::UserConfFile {
        name: "partners.ini".to_owned(),
        content: format!("[crm]\npassword = {password}\n"),
    };
    let broken = v1::UserConfFile {
        name: "partners.ini".to_owned(),
        content: "[crm\n".to_owned(),
    };
    let refused = store.set_user_conf("prod", &[broken], &actor()).await;
    assert!(
        matches!(&refused, Err(StoreError::Invalid(message)) if message.contains("partners.ini") && message.contains("line 1")),
        "{refused:?}"
    );
    let generation = store.host_generation(&second.id).await.unwrap().unwrap();
    let (user_conf, changed) = store
        .set_user_conf("prod", &[partners("Crm-One")], &actor())
        .await
        .unwrap();
    assert!(changed && user_conf.len() == 64);
    assert!(
        store.host_generation(&second.id).await.unwrap().unwrap() > generation,
        "every server's host is told"
    );
    let (same, changed) = store
        .set_user_conf("prod", &[partners("Crm-One")], &actor())
        .await
        .unwrap();
    assert_eq!((same.as_str(), changed), (user_conf.as_str(), false));
    let (user_conf, changed) = store
        .set_user_conf("prod", &[partners("Crm-Two")], &actor())
        .await
        .unwrap();
    assert!(changed && user_conf != same);
    assert_eq!(
        store.get_cluster("prod").await.unwrap().user_conf_revision,
        user_conf
    );
    let names = store.cluster_user_conf("prod", false).await.unwrap();
    assert_eq!(
        names,
        [v1::UserConfFile {
            name: "partners.ini".to_owned(),
            content: String::new()
        }]
    );
    for host in [&first, &second] {
        let plan = planner::render(&store.plan_inputs(&host.id).await.unwrap());
        assert_eq!(plan.components[0].user_conf_revision, user_conf);
        assert_eq!(plan.components[0].user_conf, [partners("Crm-Two")]);
    }
    let events = store.list_events(Some("prod"), None, 100).await.unwrap();
    let changed_events: Vec<&str> = events
        .iter()
        .filter(|event| event.kind == "cluster.user-conf-changed")
        .map(|event| event.message.as_str())
        .collect();
    assert_eq!(changed_events.len(), 2, "{changed_events:?}");
    assert!(
        changed_events
            .iter()
            .all(|message| message.contains("partners.ini") && !message.contains("Crm-"))
    );
    let url = database.url.clone();
    store.close().await;
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&url).await.unwrap();
    // A text column as stored (MariaDB answers its MEDIUMTEXT as bytes through sqlx's Any).
    let column = |name: &'static str| {
        let pool = &pool;
        async move {
            let query = format!("SELECT {name} FROM clusters");
            match backend {
                Backend::MySql => String::from_utf8(
                    sqlx::query(&query)
                        .fetch_one(pool)
                        .await
                        .unwrap()
                        .get::<Vec<u8>, _>(0),
                )
                .unwrap(),
                _ => sqlx::query(&query).fetch_one(pool).await.unwrap().get(0),
            }
        }
    };
    let sealed = column("config_env_sealed").await;
    assert!(
        !sealed.contains("Secret-Two") && !sealed.is_empty(),
        "sealed"
    );
    let sealed = column("user_conf_sealed").await;
    assert!(
        !sealed.contains("Crm-Two") && !sealed.contains("partners") && !sealed.is_empty(),
        "sealed"
    );
    pool.close().await;
}

/// A cluster's Python dependencies: the requirements and the wheels stored whole (a wheel of
/// 6 MiB: most of MariaDB's default packet), fetched by hash; the servers'
/// plans carry names and hashes only; and a running server started with other dependencies may
/// restart to load them one at a time, the others healthy and in their load balancers' rotation,
/// out of it meanwhile.
pub(crate) async fn python_dependencies_reach_the_servers_one_restart_at_a_time(backend: Backend) {
    let (_database, store) = store_with_prod(backend).await;
    let first = enroll(&store, "prod", "app-1").await;
    let second = enroll(&store, "prod", "app-2").await;
    let lb = enroll(&store, "prod", "lb").await;
    for (role, host) in [
        (Role::Server, "app-1"),
        (Role::Server, "app-2"),
        (Role::LoadBalancer, "lb"),
    ] {
        store
            .create_assignment(assign("prod", role, host, None, None), &actor())
            .await
            .unwrap();
    }
    finish_bootstrap(&store, &first.id, 1, "10.0.0.5").await;
    let mut content = b"PK\x03\x04".to_vec();
    content.extend((0..6 * 1024 * 1024).map(|index| (index % 251) as u8));
    let wheel = v1::PythonWheel {
        name: "inflection-0.5.1-py2.py3-none-any.whl".to_owned(),
        content: content.clone(),
        ..Default::default()
    };
    let refused = store
        .set_python("prod", "--index-url http://x/simple\n", &[], &actor())
        .await;
    assert!(
        matches!(&refused, Err(StoreError::Invalid(message)) if message.contains("--index-url")),
        "{refused:?}"
    );
    let requirements = "inflection==0.5.1\n";
    // A package of the cluster's file, as the CLI builds it: kept marked as one.
    let package = muster_proto::package::wheel(
        "pricing",
        &[("__init__.py".to_owned(), b"RATE = 21\n".to_vec())],
    )
    .unwrap();
    let mut tampered = package.clone();
    tampered.content.extend_from_slice(b"more");
    let refused = store
        .set_python("prod", requirements, &[wheel.clone(), tampered], &actor())
        .await;
    assert!(
        matches!(&refused, Err(StoreError::Invalid(message)) if message.contains("not one as Muster builds them")),
        "{refused:?}"
    );
    let both = [wheel.clone(), package.clone()];
    let (revision, changed) = store
        .set_python("prod", requirements, &both, &actor())
        .await
        .unwrap();
    assert!(changed && revision.len() == 64);
    let (same, changed) = store
        .set_python("prod", requirements, &both, &actor())
        .await
        .unwrap();
    assert_eq!((same.as_str(), changed), (revision.as_str(), false));
    let (stored_requirements, wheels) = store.cluster_python("prod").await.unwrap();
    assert_eq!(stored_requirements, requirements);
    assert_eq!(wheels.len(), 2);
    assert!(wheels[0].content.is_empty(), "names, hashes and sizes only");
    assert_eq!(wheels[0].size, content.len() as u64);
    assert_eq!(
        (
            wheels[0].package,
            wheels[1].package,
            wheels[1].name.as_str()
        ),
        (false, true, package.name.as_str())
    );
    let fetched_package = store
        .python_wheel("prod", &package.sha256)
        .await
        .unwrap()
        .unwrap();
    assert!(fetched_package.package && fetched_package.content == package.content);
    let fetched = store
        .python_wheel("prod", &wheels[0].sha256)
        .await
        .unwrap()
        .unwrap();
    assert!(fetched.content == content, "stored whole");
    assert!(
        store
            .python_wheel("prod", &"0".repeat(64))
            .await
            .unwrap()
            .is_none()
    );

    // Both servers run, started before the cluster had Python dependencies.
    let running = |name: &str, healthy: bool, python: &str| ComponentStatus {
        cluster: "prod".to_owned(),
        role: Role::Server,
        name: name.to_owned(),
        state: if healthy {
            v1::ComponentState::Running
        } else {
            v1::ComponentState::Starting
        },
        healthy,
        last_error: String::new(),
        restarts: 0,
        backends: Vec::new(),
        services_revision: String::new(),
        config_revision: String::new(),
        python_revision: python.to_owned(),
        python_installed: revision.clone(),
        user_conf_revision: String::new(),
        odb_epoch: 0,
        odb_empty: false,
        restart_epoch: 0,
        rollout_held_since: None,
        rolls: false,
    };
    let plan = |host: &Host| {
        let store = &store;
        let id = host.id.clone();
        async move { planner::render(&store.plan_inputs(&id).await.unwrap()) }
    };
    let restarts = || async {
        let mut permitted = Vec::new();
        for host in [&first, &second] {
            let component = plan(host).await.components.remove(0);
            assert_eq!(component.python_revision, revision);
            assert_eq!(component.python_requirements, requirements);
            assert!(component.python_wheels[0].content.is_empty());
            assert!(
                component.python_wheels[1].package,
                "the agent installs it by its path"
            );
            if component.python_restart {
                permitted.push(component.name);
            }
        }
        let drained: Vec<String> = plan(&lb).await.components[0]
            .backends
            .iter()
            .filter(|backend| backend.drain)
            .map(|backend| backend.name.clone())
            .collect();
        (permitted, drained)
    };
    // Neither has it installed yet: neither restarts, neither leaves the rotation.
    let not_installed = |name: &str| ComponentStatus {
        python_installed: String::new(),
        user_conf_revision: String::new(),
        odb_epoch: 0,
        odb_empty: false,
        ..running(name, true, "")
    };
    report_server(&store, &first, not_installed("server1")).await;
    report_server(&store, &second, not_installed("server2")).await;
    assert_eq!(restarts().await, (vec![], vec![]));
    // server2 installs first: the turn stays with server1, by name, so that it never moves
    // before a server has restarted.
    report_server(&store, &second, running("server2", true, "")).await;
    assert_eq!(restarts().await, (vec![], vec![]));
    report_server(&store, &first, running("server1", true, "")).await;
    assert_eq!(
        restarts().await,
        (vec!["server1".to_owned()], vec!["server1".to_owned()]),
        "one server at a time, out of rotation"
    );
    // server1 restarts: while it starts, server2 waits.
    let lb_before = store.host_generation(&lb.id).await.unwrap().unwrap();
    report_server(&store, &first, running("server1", false, &revision)).await;
    assert!(
        store.host_generation(&lb.id).await.unwrap().unwrap() > lb_before,
        "the load balancers follow"
    );
    assert_eq!(restarts().await, (vec![], vec![]));
    report_server(&store, &first, running("server1", true, &revision)).await;
    // Healthy, but its load balancer has not taken it back yet (HAProxy's checks rise): server2
    // waits for that too.
    let mut balancer = with_server2_up(balancer_report("DOWN"));
    store.record_status(&lb.id, balancer.clone()).await.unwrap();
    assert_eq!(restarts().await, (vec![], vec![]));
    let second_before = store.host_generation(&second.id).await.unwrap().unwrap();
    balancer.components[0].backends[0].state = "UP".into();
    balancer.components[0].backends[0].status = v1::BackendStatus::Up as i32;
    store.record_status(&lb.id, balancer).await.unwrap();
    assert!(
        store.host_generation(&second.id).await.unwrap().unwrap() > second_before,
        "the servers' hosts follow the load balancers' rotation"
    );
    assert_eq!(
        restarts().await,
        (vec!["server2".to_owned()], vec!["server2".to_owned()])
    );
    report_server(&store, &second, running("server2", true, &revision)).await;
    assert_eq!(restarts().await, (vec![], vec![]));
    let events = store.list_events(Some("prod"), None, 100).await.unwrap();
    assert!(
        events
            .iter()
            .any(|event| event.kind == "cluster.python-changed"
                && event
                    .message
                    .contains("1 requirement(s): inflection; 1 wheel(s); package(s): pricing")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|event| event.kind == "component.python"),
        "{events:?}"
    );
    store.delete_cluster("prod", &actor()).await.unwrap();
    store.close().await;
}

/// Servers `server1` on `app-1` and `server2` on `app-2` and a load balancer on `lb` in
/// `prod`, bootstrapped; returns the three hosts.
async fn two_servers_and_a_balancer(store: &SqlStore) -> (Host, Host, Host) {
    let first = enroll(store, "prod", "app-1").await;
    let second = enroll(store, "prod", "app-2").await;
    let lb = enroll(store, "prod", "lb").await;
    for (role, host) in [
        (Role::Server, "app-1"),
        (Role::Server, "app-2"),
        (Role::LoadBalancer, "lb"),
    ] {
        store
            .create_assignment(assign("prod", role, host, None, None), &actor())
            .await
            .unwrap();
    }
    finish_bootstrap(store, &first.id, 1, "10.0.0.5").await;
    (first, second, lb)
}

/// Server `name` of `prod` under `restart_epoch`: running and healthy, or `unwell` (starting,
/// or unhealthy) and not.
pub(crate) fn server_status(
    name: &str,
    unwell: Option<v1::ComponentState>,
    restart_epoch: u64,
) -> ComponentStatus {
    ComponentStatus {
        cluster: "prod".to_owned(),
        role: Role::Server,
        name: name.to_owned(),
        state: unwell.unwrap_or(v1::ComponentState::Running),
        healthy: unwell.is_none(),
        restart_epoch,
        ..ComponentStatus::default()
    }
}

/// `host` reports `status` as its one component.
/// Which servers on `servers`' hosts may restart now, and which the load balancer on `lb` keeps
/// out of rotation, as the planner renders them from the store.
async fn restart_turns(
    store: &SqlStore,
    servers: [&Host; 2],
    lb: &Host,
) -> (Vec<String>, Vec<String>) {
    let mut permitted = Vec::new();
    for host in servers {
        let inputs = store.plan_inputs(&host.id).await.unwrap();
        let component = planner::render(&inputs).components.remove(0);
        if component.python_restart {
            permitted.push(component.name);
        }
    }
    let inputs = store.plan_inputs(&lb.id).await.unwrap();
    let drained: Vec<String> = planner::render(&inputs).components[0]
        .backends
        .iter()
        .filter(|backend| backend.drain)
        .map(|backend| backend.name.clone())
        .collect();
    (permitted, drained)
}

async fn report_server(store: &SqlStore, host: &Host, status: ComponentStatus) {
    let mut reported = report(0, "10.0.0.5", Vec::new());
    reported.components = vec![status];
    store.record_status(&host.id, reported).await.unwrap();
}

/// `balancer` ([`balancer_report`]: server1) with server2 UP too.
fn with_server2_up(mut balancer: StatusReport) -> StatusReport {
    balancer.components[0]
        .backends
        .push(v1::BackendServerState {
            name: "server2".into(),
            state: "UP".into(),
            status: v1::BackendStatus::Up as i32,
            ..Default::default()
        });
    balancer
}

/// The load balancer on `lb` reports both servers UP.
async fn both_servers_up(store: &SqlStore, lb: &Host) -> StatusReport {
    let balancer = with_server2_up(balancer_report("UP"));
    store.record_status(&lb.id, balancer.clone()).await.unwrap();
    balancer
}

/// `muster rollout restart --role`: each role's own restart epoch, stored; the dashboard's turn
/// first, the servers' once it has restarted (the rolls column read back from the store); a
/// role the cluster lacks refused before anything changes.
pub(crate) async fn a_rolling_restart_of_roles_goes_in_zatos_order(backend: Backend) {
    let (_database, store) = store_with_prod(backend).await;
    let (first, second, lb) = two_servers_and_a_balancer(&store).await;
    store
        .create_assignment(
            assign("prod", Role::WebAdmin, "admin", None, None),
            &actor(),
        )
        .await
        .unwrap();
    let admin = enroll(&store, "prod", "admin").await;
    report_server(&store, &first, server_status("server1", None, 0)).await;
    report_server(&store, &second, server_status("server2", None, 0)).await;
    both_servers_up(&store, &lb).await;
    let dashboard = |restart_epoch: u64, rolls: bool| ComponentStatus {
        role: Role::WebAdmin,
        name: "web-admin".to_owned(),
        rolls,
        ..server_status("web-admin", None, restart_epoch)
    };
    report_server(&store, &admin, dashboard(0, true)).await;

    let refused = store
        .restart_roles("prod", &[Role::Scheduler, Role::Server], &actor())
        .await;
    assert!(
        matches!(&refused, Err(StoreError::Conflict(message)) if message.contains("no scheduler")),
        "{refused:?}"
    );
    let unchanged = store.get_cluster("prod").await.unwrap();
    assert_eq!(
        (unchanged.restart_epoch, unchanged.role_restart_epochs.len()),
        (0, 0)
    );

    let restart = store
        .restart_roles("prod", &[Role::Server, Role::WebAdmin], &actor())
        .await
        .unwrap();
    assert_eq!(
        restart,
        RollingRestart {
            restart_epoch: 1,
            servers: vec!["server1".to_owned(), "server2".to_owned()],
            others: vec![(Role::WebAdmin, "web-admin".to_owned())],
        }
    );
    let cluster = store.get_cluster("prod").await.unwrap();
    assert_eq!(
        (
            cluster.restart_epoch,
            cluster.restart_epoch_of(Role::WebAdmin)
        ),
        (1, 1)
    );
    let turn = |host: &Host| {
        let store = &store;
        let id = host.id.clone();
        async move {
            planner::render(&store.plan_inputs(&id).await.unwrap())
                .components
                .into_iter()
                .filter(|component| component.python_restart)
                .map(|component| (component.name, component.restart_epoch))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(turn(&admin).await, [("web-admin".to_owned(), 1)]);
    assert!(turn(&first).await.is_empty(), "the servers wait for it");
    report_server(&store, &admin, dashboard(1, true)).await;
    assert!(turn(&admin).await.is_empty());
    assert_eq!(turn(&first).await, [("server1".to_owned(), 1)]);

    // The dashboard alone, again: its epoch moves, the servers' does not.
    let again = store
        .restart_roles("prod", &[Role::WebAdmin], &actor())
        .await
        .unwrap();
    assert_eq!((again.restart_epoch, again.servers.len()), (1, 0));
    assert_eq!(
        store
            .get_cluster("prod")
            .await
            .unwrap()
            .restart_epoch_of(Role::WebAdmin),
        2
    );
    // An agent that does not roll its dashboard leaves it out: it holds nobody.
    report_server(&store, &admin, dashboard(1, false)).await;
    assert!(turn(&admin).await.is_empty());
    assert_eq!(turn(&first).await, [("server1".to_owned(), 1)]);
    let event = store
        .list_events(Some("prod"), None, 50)
        .await
        .unwrap()
        .into_iter()
        .find(|event| event.kind == "cluster.rolling-restart" && event.message.contains("Zato"))
        .unwrap();
    assert!(
        event
            .message
            .contains("web-admin web-admin (restart epoch 2)"),
        "{}",
        event.message
    );
    store.close().await;
}

pub(crate) async fn a_rolling_restart_takes_the_servers_one_at_a_time(backend: Backend) {
    let (_database, store) = store_with_prod(backend).await;
    let refused = store.restart_servers("prod", &actor()).await;
    assert!(
        matches!(&refused, Err(StoreError::Conflict(message)) if message.contains("no server")),
        "{refused:?}"
    );
    let (first, second, lb) = two_servers_and_a_balancer(&store).await;
    let running = |name: &str, healthy: bool, restart_epoch: u64| {
        server_status(
            name,
            (!healthy).then_some(v1::ComponentState::Starting),
            restart_epoch,
        )
    };
    let plan = |host: &Host| {
        let store = &store;
        let id = host.id.clone();
        async move { planner::render(&store.plan_inputs(&id).await.unwrap()) }
    };
    // Which server may restart now, and which the load balancer keeps out of rotation.
    let turns = || async {
        let mut permitted = Vec::new();
        for host in [&first, &second] {
            let component = plan(host).await.components.remove(0);
            if component.python_restart {
                permitted.push((component.name, component.restart_epoch));
            }
        }
        let drained: Vec<String> = plan(&lb).await.components[0]
            .backends
            .iter()
            .filter(|backend| backend.drain)
            .map(|backend| backend.name.clone())
            .collect();
        (permitted, drained)
    };
    report_server(&store, &first, running("server1", true, 0)).await;
    report_server(&store, &second, running("server2", true, 0)).await;
    let mut balancer = both_servers_up(&store, &lb).await;
    assert_eq!(turns().await, (vec![], vec![]), "nothing to restart");

    let second_before = store.host_generation(&second.id).await.unwrap().unwrap();
    let (epoch, servers) = store.restart_servers("prod", &actor()).await.unwrap();
    assert_eq!(
        (epoch, servers),
        (1, vec!["server1".to_owned(), "server2".to_owned()])
    );
    assert_eq!(store.get_cluster("prod").await.unwrap().restart_epoch, 1);
    assert!(
        store.host_generation(&second.id).await.unwrap().unwrap() > second_before,
        "every server's host has the new epoch"
    );
    assert_eq!(plan(&second).await.components[0].restart_epoch, 1);
    assert_eq!(
        turns().await,
        (vec![("server1".to_owned(), 1)], vec!["server1".to_owned()]),
        "one server at a time, out of rotation"
    );
    // server1 restarts under the new epoch: while it starts and until its load balancer has it
    // back UP, server2 waits.
    report_server(&store, &first, running("server1", false, 1)).await;
    assert_eq!(turns().await, (vec![], vec![]));
    report_server(&store, &first, running("server1", true, 1)).await;
    balancer.components[0].backends[0].state = "DOWN".into();
    balancer.components[0].backends[0].status = v1::BackendStatus::Down as i32;
    store.record_status(&lb.id, balancer.clone()).await.unwrap();
    assert_eq!(turns().await, (vec![], vec![]), "not back in rotation yet");
    balancer.components[0].backends[0].state = "UP".into();
    balancer.components[0].backends[0].status = v1::BackendStatus::Up as i32;
    store.record_status(&lb.id, balancer).await.unwrap();
    assert_eq!(
        turns().await,
        (vec![("server2".to_owned(), 1)], vec!["server2".to_owned()])
    );
    // Paused, the turn is held: server2 stays in rotation and does not restart, until resumed.
    assert!(store.pause_rollout("prod", true, &actor()).await.unwrap());
    assert!(!store.pause_rollout("prod", true, &actor()).await.unwrap());
    assert!(store.get_cluster("prod").await.unwrap().rollout_paused);
    assert_eq!(turns().await, (vec![], vec![]), "held while paused");
    assert!(store.pause_rollout("prod", false, &actor()).await.unwrap());
    assert_eq!(
        turns().await,
        (vec![("server2".to_owned(), 1)], vec!["server2".to_owned()])
    );
    report_server(&store, &second, running("server2", true, 1)).await;
    assert_eq!(turns().await, (vec![], vec![]), "every server restarted");
    let listed = store.list_assignments(Some("prod")).await.unwrap();
    assert!(
        listed
            .iter()
            .filter(|assignment| assignment.role == Role::Server)
            .all(|server| server.status.as_ref().unwrap().restart_epoch == 1),
        "{listed:?}"
    );
    let events = store.list_events(Some("prod"), None, 100).await.unwrap();
    assert!(
        events
            .iter()
            .any(|event| event.kind == "cluster.rolling-restart"
                && event.message.contains("restart epoch 1): server1, server2")),
        "{events:?}"
    );
    let kinds: Vec<&str> = events.iter().map(|event| event.kind.as_str()).collect();
    assert!(
        kinds.contains(&"cluster.rollout-paused") && kinds.contains(&"cluster.rollout-resumed"),
        "{kinds:?}"
    );
    store.delete_cluster("prod", &actor()).await.unwrap();
    store.close().await;
}

/// Server settings: checked before anything changes, stored, sent to the servers only, and a
/// change starts a rolling restart (none without servers, none when nothing changed).
/// Settings from `(name, value)` pairs.
fn set(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect()
}

pub(crate) async fn scheduler_and_dashboard_settings_restart_only_their_role(backend: Backend) {
    let (_database, store) = store_with_prod(backend).await;
    // No scheduler yet: stored for the one the cluster gets, nothing restarts.
    let configured = store
        .configure_role(
            "prod",
            Role::Scheduler,
            &set(&[("logging.zato", "debug")]),
            &[],
            &actor(),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            configured.settings.clone(),
            configured.changed,
            configured.restart_epoch,
            configured.servers.len()
        ),
        (set(&[("logging.zato", "DEBUG")]), true, 0, 0)
    );
    let (server_host, _lb) = server_and_balancer(&store).await;
    for role in [Role::Scheduler, Role::WebAdmin] {
        store
            .create_assignment(assign("prod", role, "admin", None, None), &actor())
            .await
            .unwrap();
    }
    let admin = enroll(&store, "prod", "admin").await;
    let plan = |host: &Host| {
        let store = &store;
        let id = host.id.clone();
        async move { planner::render(&store.plan_inputs(&id).await.unwrap()).components }
    };
    let component = |components: &[v1::Component], name: &str| {
        components
            .iter()
            .find(|component| component.name == name)
            .cloned()
            .unwrap()
    };
    let scheduler = component(&plan(&admin).await, "scheduler");
    assert_eq!(
        (
            scheduler.settings.get("logging.zato"),
            scheduler.restart_epoch
        ),
        (Some(&"DEBUG".to_owned()), 0),
        "the scheduler created later starts with them"
    );

    // The dashboard's: its epoch moves on, the servers' and scheduler's do not.
    let configured = store
        .configure_role(
            "prod",
            Role::WebAdmin,
            &set(&[
                ("TIME_ZONE", "Europe/Prague"),
                (
                    "env.Zato_Dashboard_CSRF_Trusted_Origins",
                    "https://dash.example.com",
                ),
            ]),
            &[],
            &actor(),
        )
        .await
        .unwrap();
    assert_eq!(
        (configured.restart_epoch, configured.servers),
        (1, vec!["web-admin".to_owned()])
    );
    let cluster = store.get_cluster("prod").await.unwrap();
    assert_eq!(
        (
            cluster.restart_epoch_of(Role::WebAdmin),
            cluster.restart_epoch_of(Role::Scheduler),
            cluster.restart_epoch
        ),
        (1, 0, 0)
    );
    assert_eq!(cluster.settings_of(Role::WebAdmin), configured.settings);
    assert!(
        cluster.server_settings.is_empty(),
        "the servers' settings are their own"
    );
    let components = plan(&admin).await;
    let dashboard = component(&components, "web-admin");
    assert_eq!(
        (
            dashboard.settings.get("TIME_ZONE"),
            dashboard.restart_epoch,
            dashboard.server_settings.len()
        ),
        (Some(&"Europe/Prague".to_owned()), 1, 0)
    );
    assert!(
        !component(&components, "scheduler")
            .settings
            .contains_key("TIME_ZONE"),
        "each role gets its own settings"
    );
    let server = component(&plan(&server_host).await, "server1");
    assert!(server.settings.is_empty() && server.restart_epoch == 0);

    // The same again: nothing changes, nothing restarts; unset: back to Zato's default.
    let again = store
        .configure_role(
            "prod",
            Role::WebAdmin,
            &set(&[("TIME_ZONE", "Europe/Prague")]),
            &[],
            &actor(),
        )
        .await
        .unwrap();
    assert_eq!((again.changed, again.restart_epoch), (false, 1));
    let unset = store
        .configure_role(
            "prod",
            Role::Scheduler,
            &BTreeMap::new(),
            &["logging.zato".to_owned()],
            &actor(),
        )
        .await
        .unwrap();
    assert_eq!(
        (unset.settings.len(), unset.restart_epoch, unset.servers),
        (0, 1, vec!["scheduler".to_owned()])
    );

    // Refused, by name, before anything changes.
    for (role, pairs, unset, named) in [
        (
            Role::Scheduler,
            set(&[("main.gunicorn_workers", "2")]),
            vec![],
            "main.gunicorn_workers",
        ),
        (
            Role::WebAdmin,
            set(&[("TIME_ZONE", "Europe/Prague\", \"DEBUG\": 1")]),
            vec![],
            "DEBUG",
        ),
        (
            Role::WebAdmin,
            set(&[("logging.zato_scheduler", "DEBUG")]),
            vec![],
            "logging.zato_scheduler",
        ),
        (
            Role::WebAdmin,
            set(&[("env.Zato_Dashboard_Session_Timeout", "600")]),
            vec![],
            "every login fails",
        ),
        (
            Role::Scheduler,
            set(&[]),
            vec!["TIME_ZONE".to_owned()],
            "TIME_ZONE",
        ),
        (
            Role::Server,
            set(&[("env.A", "1")]),
            vec![],
            "muster configure server",
        ),
        (
            Role::LoadBalancer,
            set(&[("env.A", "1")]),
            vec![],
            "load-balancer",
        ),
    ] {
        let refused = store
            .configure_role("prod", role, &pairs, &unset, &actor())
            .await;
        assert!(
            matches!(&refused, Err(StoreError::Invalid(message)) if message.contains(named)),
            "{role} {pairs:?} unset {unset:?}: {refused:?}"
        );
    }
    let cluster = store.get_cluster("prod").await.unwrap();
    assert_eq!(
        (
            cluster.settings_of(Role::Scheduler).len(),
            cluster.restart_epoch_of(Role::Scheduler),
            cluster.settings_of(Role::WebAdmin).len()
        ),
        (0, 1, 2),
        "a refused change changes nothing"
    );
    let events = store.list_events(Some("prod"), None, 50).await.unwrap();
    assert!(
        events
            .iter()
            .any(|event| event.kind == "cluster.role-configured"
                && event.message.contains("TIME_ZONE=Europe/Prague")),
        "{events:?}"
    );
}

pub(crate) async fn server_settings_are_checked_stored_and_rolled_to_the_servers(backend: Backend) {
    let (_database, store) = store_with_prod(backend).await;
    // No server yet: stored, nothing restarts.
    let configured = store
        .configure_servers("prod", &set(&[("stats.expire_after", "24")]), &[], &actor())
        .await
        .unwrap();
    assert!(configured.changed);
    assert_eq!((configured.restart_epoch, configured.servers.len()), (0, 0));

    let (server_host, lb) = server_and_balancer(&store).await;
    let generation = |host: &Host| {
        let store = &store;
        let name = host.name.clone();
        async move { store.get_host(&name).await.unwrap().generation }
    };
    let before = generation(&server_host).await;

    let configured = store
        .configure_servers(
            "prod",
            &set(&[
                ("main.gunicorn_workers", "2"),
                ("misc.return_tracebacks", "false"),
            ]),
            &["stats.expire_after".to_owned()],
            &actor(),
        )
        .await
        .unwrap();
    assert_eq!(
        configured.settings,
        set(&[
            ("main.gunicorn_workers", "2"),
            ("misc.return_tracebacks", "False")
        ]),
        "stored as written, the unset one gone"
    );
    assert_eq!(
        (
            configured.changed,
            configured.restart_epoch,
            configured.servers
        ),
        (true, 1, vec!["server1".to_owned()])
    );
    assert!(
        generation(&server_host).await > before,
        "the server's host is told"
    );
    let plan = |host: &Host| {
        let store = &store;
        let id = host.id.clone();
        async move { planner::render(&store.plan_inputs(&id).await.unwrap()) }
    };
    let server = plan(&server_host).await.components.remove(0);
    assert_eq!(
        (
            server.server_settings.get("main.gunicorn_workers"),
            server.restart_epoch
        ),
        (Some(&"2".to_owned()), 1)
    );
    assert!(
        plan(&lb).await.components[0].server_settings.is_empty(),
        "a load balancer gets no server settings"
    );
    let cluster = store.get_cluster("prod").await.unwrap();
    assert_eq!(cluster.server_settings, configured.settings, "read back");

    // The same again: nothing changes, nothing restarts.
    let again = store
        .configure_servers(
            "prod",
            &set(&[("main.gunicorn_workers", "2")]),
            &[],
            &actor(),
        )
        .await
        .unwrap();
    assert_eq!((again.changed, again.restart_epoch), (false, 1));

    // Refused, by name, before anything changes.
    for (pairs, unset, named) in [
        (
            set(&[("main.gunicorn_bind", "0.0.0.0:1")]),
            vec![],
            "main.gunicorn_bind",
        ),
        (set(&[("main.gunicorn_workers", "11")]), vec![], "11"),
        (set(&[("env.MODE", "a # b")]), vec![], "a # b"),
        (
            set(&[("main.gunicorn_workers", "3")]),
            vec!["main.ipc_port_start".to_owned()],
            "main.ipc_port_start",
        ),
        (
            set(&[("main.gunicorn_workers", "3")]),
            vec!["main.gunicorn_workers".to_owned()],
            "both set and unset",
        ),
    ] {
        let refused = store
            .configure_servers("prod", &pairs, &unset, &actor())
            .await;
        assert!(
            matches!(&refused, Err(StoreError::Invalid(message)) if message.contains(named)),
            "{pairs:?} unset {unset:?}: {refused:?}"
        );
    }
    let cluster = store.get_cluster("prod").await.unwrap();
    assert_eq!(
        (cluster.server_settings, cluster.restart_epoch),
        (configured.settings.clone(), 1),
        "a refused change changes nothing"
    );
    let events = store.list_events(Some("prod"), None, 50).await.unwrap();
    assert!(
        events
            .iter()
            .any(|event| event.kind == "cluster.servers-configured"
                && event.message.contains("main.gunicorn_workers=2")),
        "{events:?}"
    );

    // Undo: the settings before the last change, with a rolling restart; again: back.
    let undone = store.undo_server_settings("prod", &actor()).await.unwrap();
    assert_eq!(
        (undone.settings, undone.restart_epoch, undone.servers),
        (
            set(&[("stats.expire_after", "24")]),
            2,
            vec!["server1".to_owned()]
        )
    );
    let redone = store.undo_server_settings("prod", &actor()).await.unwrap();
    assert_eq!(
        (redone.settings, redone.restart_epoch),
        (configured.settings.clone(), 3)
    );
    assert_eq!(
        store.get_cluster("prod").await.unwrap().server_settings,
        configured.settings
    );
    store
        .create_cluster(new_cluster("fresh"), &actor())
        .await
        .unwrap();
    let refused = store.undo_server_settings("fresh", &actor()).await;
    assert!(
        matches!(&refused, Err(StoreError::Conflict(message)) if message.contains("nothing to undo")),
        "{refused:?}"
    );
    store.close().await;
}

/// A server that restarted into a rollout and is not healthy within the cluster's healthy
/// deadline stops it: the restart turn paused with the reason (no other server restarts); with
/// auto_revert a rollout of server settings is undone instead, and only the server that ran the
/// new settings restarts again; a failed revert is paused, never reverted again.
pub(crate) async fn a_server_past_its_healthy_deadline_stops_the_rollout(backend: Backend) {
    let (_database, store) = store_with_prod(backend).await;
    let (first, second, lb) = two_servers_and_a_balancer(&store).await;
    let server = |name: &str, healthy: bool, restart_epoch: u64| ComponentStatus {
        last_error: if healthy {
            String::new()
        } else {
            "GET /zato/ping: connection refused".to_owned()
        },
        ..server_status(
            name,
            (!healthy).then_some(v1::ComponentState::Unhealthy),
            restart_epoch,
        )
    };
    let turn = || async { restart_turns(&store, [&first, &second], &lb).await.0 };
    report_server(&store, &first, server("server1", true, 0)).await;
    report_server(&store, &second, server("server2", true, 0)).await;
    both_servers_up(&store, &lb).await;

    // Out of range: refused, named, nothing changed.
    let refused = store
        .configure_rollout(
            "prod",
            RolloutChange {
                healthy_deadline_seconds: Some(5),
                min_healthy_time_seconds: None,
                auto_revert: None,
                max_unavailable: None,
            },
            &actor(),
        )
        .await;
    assert!(
        matches!(&refused, Err(StoreError::Invalid(message)) if message.contains("healthy_deadline")),
        "{refused:?}"
    );
    let configured = store
        .configure_rollout(
            "prod",
            RolloutChange {
                healthy_deadline_seconds: Some(30),
                min_healthy_time_seconds: None,
                auto_revert: None,
                max_unavailable: None,
            },
            &actor(),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            configured.strategy.healthy_deadline_seconds,
            configured.changed
        ),
        (30, true)
    );
    assert!(
        !store
            .configure_rollout(
                "prod",
                RolloutChange {
                    healthy_deadline_seconds: Some(30),
                    min_healthy_time_seconds: None,
                    auto_revert: Some(false),
                    max_unavailable: None,
                },
                &actor()
            )
            .await
            .unwrap()
            .changed
    );
    let workers = BTreeMap::from([("main.gunicorn_workers".to_owned(), "2".to_owned())]);
    store
        .configure_servers("prod", &workers, &[], &actor())
        .await
        .unwrap();
    assert_eq!(turn().await, vec!["server1".to_owned()]);

    // server1 restarts with the new settings and does not become healthy.
    let restarted = now_ms();
    report_server(&store, &first, server("server1", false, 1)).await;
    assert!(turn().await.is_empty(), "server2 waits for server1");
    assert!(
        store
            .stop_failed_rollouts(restarted + 20_000)
            .await
            .unwrap()
            .is_empty(),
        "within its deadline"
    );
    let stopped = store
        .stop_failed_rollouts(restarted + 31_000 + 5_000)
        .await
        .unwrap();
    assert_eq!(stopped.len(), 1, "{stopped:?}");
    assert!(!stopped[0].reverted);
    for expected in [
        "server1 on app-1",
        "healthy_deadline 30s",
        "connection refused",
    ] {
        assert!(stopped[0].reason.contains(expected), "{stopped:?}");
    }
    let cluster = store.get_cluster("prod").await.unwrap();
    assert!(cluster.rollout_paused);
    assert_eq!(cluster.rollout_pause_reason, stopped[0].reason);
    assert!(turn().await.is_empty());
    assert!(
        store
            .stop_failed_rollouts(restarted + 60_000)
            .await
            .unwrap()
            .is_empty(),
        "a paused turn is left"
    );
    let events = store.list_events(Some("prod"), None, 100).await.unwrap();
    assert!(
        events
            .iter()
            .any(|event| event.kind == "cluster.rollout-paused"
                && event.message.contains("server1 on app-1")),
        "{events:?}"
    );

    // With auto_revert, resumed: the settings before come back; server2, which never ran the
    // new ones, stays as it is.
    store
        .configure_rollout(
            "prod",
            RolloutChange {
                healthy_deadline_seconds: None,
                min_healthy_time_seconds: None,
                auto_revert: Some(true),
                max_unavailable: None,
            },
            &actor(),
        )
        .await
        .unwrap();
    assert!(store.pause_rollout("prod", false, &actor()).await.unwrap());
    assert!(
        store
            .get_cluster("prod")
            .await
            .unwrap()
            .rollout_pause_reason
            .is_empty(),
        "a resume clears the reason"
    );
    let stopped = store
        .stop_failed_rollouts(restarted + 60_000)
        .await
        .unwrap();
    assert_eq!(stopped.len(), 1, "{stopped:?}");
    assert!(stopped[0].reverted);
    let cluster = store.get_cluster("prod").await.unwrap();
    assert_eq!(
        (
            cluster.server_settings.is_empty(),
            cluster.restart_epoch,
            cluster.restart_epoch_same,
            cluster.rollout_paused
        ),
        (true, 2, Some(0), false)
    );
    assert_eq!(cluster.rollout_revert_reason, stopped[0].reason);
    assert_eq!(
        turn().await,
        vec!["server1".to_owned()],
        "only server1, unhealthy, restarts"
    );
    assert!(
        store
            .stop_failed_rollouts(restarted + 60_000 + 29_000)
            .await
            .unwrap()
            .is_empty(),
        "the revert has a deadline of its own, from its start"
    );
    // A resume acknowledges it (the turn was not paused); again, nothing changes.
    assert!(store.pause_rollout("prod", false, &actor()).await.unwrap());
    assert!(!store.pause_rollout("prod", false, &actor()).await.unwrap());
    assert!(
        store
            .get_cluster("prod")
            .await
            .unwrap()
            .rollout_revert_reason
            .is_empty()
    );
    let events = store.list_events(Some("prod"), None, 100).await.unwrap();
    assert!(
        events
            .iter()
            .any(|event| event.kind == "cluster.rollout-reverted"),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|event| event.kind == "cluster.rolling-restart"
                && event.message.contains("restart epoch 2): server1,")),
        "only server1 is named: {events:?}"
    );

    // The revert brings server1 back: done; server2 is not due.
    report_server(&store, &first, server("server1", true, 2)).await;
    assert!(turn().await.is_empty());
    assert!(
        store
            .stop_failed_rollouts(now_ms() + 3_600_000)
            .await
            .unwrap()
            .is_empty(),
        "healthy: nothing to stop"
    );

    // A revert that fails is paused, never reverted again.
    let restarted = now_ms();
    report_server(&store, &first, server("server1", true, 2)).await;
    store
        .configure_servers("prod", &workers, &[], &actor())
        .await
        .unwrap();
    store.undo_server_settings("prod", &actor()).await.unwrap();
    report_server(&store, &first, server("server1", false, 4)).await;
    let stopped = store
        .stop_failed_rollouts(restarted + 40_000 + 5_000)
        .await
        .unwrap();
    assert_eq!(
        (
            stopped.len(),
            stopped.first().map(|stopped| stopped.reverted)
        ),
        (1, Some(false)),
        "an operator's undo is not reverted: {stopped:?}"
    );
    store.delete_cluster("prod", &actor()).await.unwrap();
    store.close().await;
}

/// With `min_healthy_time`, a server that restarted into a rollout stays out of its load
/// balancers' rotation, and the next server's turn waits, until it has been healthy that long
/// without a break (the coordinator's rollout watch lets it back).
pub(crate) async fn a_restarted_server_is_held_out_of_rotation_for_min_healthy_time(
    backend: Backend,
) {
    let (_database, store) = store_with_prod(backend).await;
    let (first, second, lb) = two_servers_and_a_balancer(&store).await;
    report_server(&store, &first, server_status("server1", None, 0)).await;
    report_server(&store, &second, server_status("server2", None, 0)).await;
    both_servers_up(&store, &lb).await;
    let refused = store
        .configure_rollout(
            "prod",
            RolloutChange {
                min_healthy_time_seconds: Some(300),
                ..RolloutChange::default()
            },
            &actor(),
        )
        .await;
    assert!(
        matches!(&refused, Err(StoreError::Invalid(message)) if message.contains("min_healthy_time")),
        "not within the healthy deadline: {refused:?}"
    );
    store
        .configure_rollout(
            "prod",
            RolloutChange {
                min_healthy_time_seconds: Some(20),
                ..RolloutChange::default()
            },
            &actor(),
        )
        .await
        .unwrap();
    let turns = || restart_turns(&store, [&first, &second], &lb);
    store.restart_servers("prod", &actor()).await.unwrap();
    let server1 = vec!["server1".to_owned()];
    assert_eq!(turns().await, (server1.clone(), server1.clone()));
    report_server(
        &store,
        &first,
        server_status("server1", Some(v1::ComponentState::Starting), 1),
    )
    .await;
    let healthy_at = now_ms();
    report_server(&store, &first, server_status("server1", None, 1)).await;
    assert_eq!(
        turns().await,
        (vec![], server1.clone()),
        "held out of rotation; server2 waits"
    );
    assert!(
        store
            .release_held_servers(healthy_at + 10_000)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(turns().await, (vec![], server1));
    let released = store
        .release_held_servers(healthy_at + 21_000 + 5_000)
        .await
        .unwrap();
    assert_eq!(released, vec!["server1 on app-1 (prod)".to_owned()]);
    let server2 = vec!["server2".to_owned()];
    assert_eq!(
        turns().await,
        (server2.clone(), server2),
        "server1 back in rotation, server2's turn"
    );
    assert!(
        store
            .stop_failed_rollouts(healthy_at + 3_600_000)
            .await
            .unwrap()
            .is_empty(),
        "server1 is through its rollout"
    );

    // server2, healthy but not for its min_healthy_time within the healthy deadline: failed.
    report_server(
        &store,
        &second,
        server_status("server2", Some(v1::ComponentState::Starting), 1),
    )
    .await;
    let restarted = now_ms();
    report_server(&store, &second, server_status("server2", None, 1)).await;
    let stopped = store
        .stop_failed_rollouts(restarted + 300_000 + 5_000)
        .await
        .unwrap();
    assert_eq!(stopped.len(), 1, "{stopped:?}");
    assert!(
        stopped[0]
            .reason
            .contains("server2 on app-2 healthy for only")
            && stopped[0].reason.contains("of its min_healthy_time 20s"),
        "{stopped:?}"
    );
    store.close().await;
}

/// `max_unavailable`: how many servers a rollout takes out of rotation at once, stored with the
/// cluster, refused out of range by name, and kept by the restart turn.
pub(crate) async fn max_unavailable_servers_restart_at_once(backend: Backend) {
    let (_database, store) = store_with_prod(backend).await;
    let (first, second, lb) = two_servers_and_a_balancer(&store).await;
    report_server(&store, &first, server_status("server1", None, 0)).await;
    report_server(&store, &second, server_status("server2", None, 0)).await;
    both_servers_up(&store, &lb).await;
    let change = |servers: u32| RolloutChange {
        max_unavailable: Some(servers),
        ..RolloutChange::default()
    };
    for servers in [0, 33] {
        let refused = store
            .configure_rollout("prod", change(servers), &actor())
            .await;
        assert!(
            matches!(&refused, Err(StoreError::Invalid(message))
                if message.contains("max_unavailable") && message.contains(&servers.to_string())),
            "{refused:?}"
        );
    }
    let configured = store
        .configure_rollout("prod", change(2), &actor())
        .await
        .unwrap();
    assert!(configured.changed);
    assert_eq!(
        store
            .get_cluster("prod")
            .await
            .unwrap()
            .rollout_strategy
            .max_unavailable,
        2
    );
    store.restart_servers("prod", &actor()).await.unwrap();
    let both = vec!["server1".to_owned(), "server2".to_owned()];
    assert_eq!(
        restart_turns(&store, [&first, &second], &lb).await,
        (both.clone(), both),
        "both restart at once, both drained"
    );
    let events = store.list_events(Some("prod"), None, 100).await.unwrap();
    assert!(
        events
            .iter()
            .any(|event| event.kind == "cluster.rolling-restart"
                && event
                    .message
                    .contains("server1, server2, up to 2 at a time")),
        "{events:?}"
    );
    // One at a time again: server1 keeps its turn, server2 waits for it.
    store
        .configure_rollout("prod", change(1), &actor())
        .await
        .unwrap();
    let server1 = vec!["server1".to_owned()];
    assert_eq!(
        restart_turns(&store, [&first, &second], &lb).await,
        (server1.clone(), server1)
    );
    store.close().await;
}

/// `zato.install`: refused while a host of the cluster's servers reports its installations and
/// names no such one (its server could not start with it); stored once every such host has it.
/// A host that never said (an agent before installations) is not held against it.
pub(crate) async fn zato_install_must_be_on_every_server_host(backend: Backend) {
    let (_database, store) = store_with_prod(backend).await;
    let (first, second, _lb) = two_servers_and_a_balancer(&store).await;
    let installs = |host: &Host, names: &[&str]| {
        let mut reported = report(0, "10.0.0.5", Vec::new());
        reported.zato_installs = names.iter().map(|name| name.to_string()).collect();
        reported.components = vec![server_status(
            if host.name == "app-1" {
                "server1"
            } else {
                "server2"
            },
            None,
            0,
        )];
        let store = &store;
        let id = host.id.clone();
        async move { store.record_status(&id, reported).await.unwrap() }
    };
    installs(&first, &["default", "next"]).await;
    installs(&second, &["default"]).await;
    let next = BTreeMap::from([("zato.install".to_owned(), "next".to_owned())]);
    let refused = store.configure_servers("prod", &next, &[], &actor()).await;
    assert!(
        matches!(&refused, Err(StoreError::Invalid(message))
            if message.contains("zato.install \"next\": host app-2 (server server2) has no Zato installation of that name; its agent has default")),
        "{refused:?}"
    );
    assert!(
        store
            .get_cluster("prod")
            .await
            .unwrap()
            .server_settings
            .is_empty(),
        "nothing changed"
    );
    assert_eq!(
        store.get_host("app-1").await.unwrap().zato_installs,
        ["default", "next"]
    );
    installs(&second, &["default", "next"]).await;
    let configured = store
        .configure_servers("prod", &next, &[], &actor())
        .await
        .unwrap();
    assert!(
        configured.changed && configured.servers.len() == 2,
        "{configured:?}"
    );
    // Back to the host's own, by unsetting it.
    let unset = store
        .configure_servers(
            "prod",
            &BTreeMap::new(),
            &["zato.install".to_owned()],
            &actor(),
        )
        .await
        .unwrap();
    assert!(unset.changed && unset.settings.is_empty(), "{unset:?}");
    store.close().await;
}
