//! Assignments and the bootstrap: names, ports, conflicts, and who bootstraps each cluster.

use super::*;

pub(crate) async fn assignments_get_names_and_ports_and_conflicts_are_refused(backend: Backend) {
    let (_database, store) = store_with_prod(backend).await;
    store
        .create_cluster(new_cluster("test"), &actor())
        .await
        .unwrap();

    let first = store
        .create_assignment(assign("prod", Role::Server, "app-1", None, None), &actor())
        .await
        .unwrap();
    // The same request again ("a server of prod on app-1") is there already; a second server
    // on the host is asked for by its name.
    let again = store
        .create_assignment(assign("prod", Role::Server, "app-1", None, None), &actor())
        .await;
    assert!(
        matches!(&again, Err(StoreError::AlreadyExists { name, .. }) if name.starts_with("server server1 of cluster prod (on host app-1")),
        "{again:?}"
    );
    let second = store
        .create_assignment(
            assign("prod", Role::Server, "app-1", Some("server2"), None),
            &actor(),
        )
        .await
        .unwrap();
    assert_eq!((first.name.as_str(), first.port), ("server1", 17010));
    assert_eq!((second.name.as_str(), second.port), ("server2", 17011));
    let other_cluster = store
        .create_assignment(assign("test", Role::Server, "app-1", None, None), &actor())
        .await
        .unwrap();
    assert_eq!(
        (other_cluster.name.as_str(), other_cluster.port),
        ("server1", 17012)
    );
    let scheduler = store
        .create_assignment(
            assign("prod", Role::Scheduler, "app-2", None, None),
            &actor(),
        )
        .await
        .unwrap();
    assert_eq!(
        (scheduler.name.as_str(), scheduler.port),
        ("scheduler", 31530)
    );

    let second_scheduler = store
        .create_assignment(
            assign("prod", Role::Scheduler, "app-3", Some("s2"), None),
            &actor(),
        )
        .await;
    assert!(
        matches!(&second_scheduler, Err(StoreError::Conflict(message)) if message.contains("already has a scheduler")),
        "{second_scheduler:?}"
    );
    let taken_port = store
        .create_assignment(
            assign("prod", Role::WebAdmin, "app-1", None, Some(17010)),
            &actor(),
        )
        .await;
    assert!(
        matches!(&taken_port, Err(StoreError::Conflict(message)) if message.contains("port 17010")),
        "{taken_port:?}"
    );
    let same_name = store
        .create_assignment(
            assign("prod", Role::Server, "app-9", Some("server1"), None),
            &actor(),
        )
        .await;
    assert!(matches!(
        same_name,
        Err(StoreError::AlreadyExists {
            kind: "component",
            ..
        })
    ));
    let mut local = new_cluster("local");
    local.odb = OdbSettings {
        odb_type: OdbType::Sqlite,
        host: String::new(),
        port: 0,
        user: String::new(),
        db_name: String::new(),
        postgresql_schema: String::new(),
    };
    store.create_cluster(local, &actor()).await.unwrap();
    store
        .create_assignment(assign("local", Role::Server, "solo", None, None), &actor())
        .await
        .unwrap();
    let spread = store
        .create_assignment(assign("local", Role::Server, "other", None, None), &actor())
        .await;
    assert!(
        matches!(&spread, Err(StoreError::Conflict(message)) if message.contains("SQLite file on host 'solo'")),
        "{spread:?}"
    );
    let unknown = store
        .create_assignment(assign("nope", Role::Server, "app-1", None, None), &actor())
        .await;
    assert!(matches!(
        unknown,
        Err(StoreError::NotFound {
            kind: "cluster",
            ..
        })
    ));

    let listed: Vec<_> = store
        .list_assignments(Some("prod"))
        .await
        .unwrap()
        .into_iter()
        .map(|a| format!("{} {} {}", a.role, a.name, a.host))
        .collect();
    assert_eq!(
        listed,
        [
            "scheduler scheduler app-2",
            "server server1 app-1",
            "server server2 app-1"
        ]
    );
    store.close().await;
}

pub(crate) async fn enrollment_uses_the_token_and_one_host_bootstraps_each_cluster(
    backend: Backend,
) {
    let (_database, store) = store_with_prod(backend).await;
    store
        .create_assignment(assign("prod", Role::Server, "app-1", None, None), &actor())
        .await
        .unwrap();
    store
        .create_assignment(assign("prod", Role::Server, "app-2", None, None), &actor())
        .await
        .unwrap();

    let token = issue_token(&store, "prod", 1, 60_000).await;
    let new = |name: &str| NewHost {
        id: secrets::random_hex(8).unwrap(),
        name: name.to_owned(),
        advertise_address: "10.0.0.1".to_owned(),
        labels: BTreeMap::new(),
    };
    let (first, used) = store
        .enroll_host(&token.id, &token.secret_hash, new("app-1"), &[])
        .await
        .unwrap();
    assert_eq!(used.uses, 1);
    let reused = store
        .enroll_host(&token.id, &token.secret_hash, new("app-2"), &[])
        .await;
    assert_eq!(refusal(reused.map(|(host, _)| host)), TokenRefusal::UsedUp);
    assert!(
        matches!(
            store.get_host("app-2").await,
            Err(StoreError::NotFound { .. })
        ),
        "a refused enrollment records no host"
    );
    let second = enroll(&store, "prod", "app-2").await;
    let fresh = issue_token(&store, "prod", 1, 60_000).await;
    let duplicate = store
        .enroll_host(&fresh.id, &fresh.secret_hash, new("app-1"), &[])
        .await;
    assert!(matches!(
        duplicate,
        Err(StoreError::AlreadyExists { kind: "host", .. })
    ));
    assert_eq!(
        store
            .list_join_tokens(None)
            .await
            .unwrap()
            .iter()
            .find(|t| t.id == fresh.id)
            .unwrap()
            .uses,
        0,
        "a refused enrollment uses nothing"
    );

    let first_plan = planner::render(&store.plan_inputs(&first.id).await.unwrap());
    let kinds: Vec<_> = first_plan
        .bootstrap_tasks
        .iter()
        .map(|task| task.kind)
        .collect();
    assert_eq!(
        kinds,
        [BootstrapKind::Odb as i32, BootstrapKind::Cluster as i32]
    );
    assert!(
        first_plan.components.is_empty(),
        "components wait for the bootstrap"
    );
    let odb_task = &first_plan.bootstrap_tasks[0];
    assert_eq!(
        odb_task.secrets.as_ref().unwrap().odb_password,
        "odb-password-of-prod"
    );
    assert!(
        odb_task.secrets.as_ref().unwrap().jwt_secret.is_empty(),
        "only the secrets the task needs"
    );
    let second_plan = planner::render(&store.plan_inputs(&second.id).await.unwrap());
    assert!(second_plan.bootstrap_tasks.is_empty() && second_plan.components.is_empty());
    store.close().await;
}

pub(crate) async fn a_finished_bootstrap_releases_components_with_new_generations(
    backend: Backend,
) {
    let (_database, store) = store_with_prod(backend).await;
    store
        .create_assignment(
            assign("prod", Role::Scheduler, "sched", None, None),
            &actor(),
        )
        .await
        .unwrap();
    store
        .create_assignment(assign("prod", Role::Server, "app", None, None), &actor())
        .await
        .unwrap();
    let scheduler_host = enroll(&store, "prod", "sched").await;
    let server_host = enroll(&store, "prod", "app").await;
    let before = store
        .host_generation(&server_host.id)
        .await
        .unwrap()
        .unwrap();

    let done = |task| BootstrapReport {
        cluster: "prod".to_owned(),
        task,
        done: true,
        last_error: String::new(),
    };
    // Only the chosen host may finish a bootstrap task.
    store
        .record_status(
            &server_host.id,
            report(
                before,
                "10.0.0.3",
                vec![done(BootstrapTask::Odb), done(BootstrapTask::Cluster)],
            ),
        )
        .await
        .unwrap();
    assert!(
        planner::render(&store.plan_inputs(&server_host.id).await.unwrap())
            .components
            .is_empty()
    );
    store
        .record_status(
            &scheduler_host.id,
            report(
                1,
                "10.0.0.5",
                vec![done(BootstrapTask::Odb), done(BootstrapTask::Cluster)],
            ),
        )
        .await
        .unwrap();

    let after = store
        .host_generation(&server_host.id)
        .await
        .unwrap()
        .unwrap();
    assert!(after > before, "generation {after} after {before}");
    let plan = planner::render(&store.plan_inputs(&server_host.id).await.unwrap());
    assert_eq!(plan.generation, after);
    assert!(plan.bootstrap_tasks.is_empty());
    assert_eq!(plan.components.len(), 1);
    let server = &plan.components[0];
    assert_eq!((server.name.as_str(), server.port), ("server1", 17010));
    assert_eq!(
        peer_address(server.scheduler.as_ref()),
        ["http://10.0.0.5:31530"],
        "the server gets the scheduler's address"
    );
    let secrets = server.secrets.as_ref().unwrap();
    assert_eq!(secrets.jwt_secret, "jwt-secret-of-prod");
    assert_eq!(
        secrets.admin_invoke_password, "invoke-password-of-prod",
        "a server's agent deploys the cluster's services through its admin channel"
    );
    assert!(
        secrets.dashboard_password.is_empty(),
        "a server does not get the dashboard's password"
    );
    store
        .create_assignment(
            assign("prod", Role::LoadBalancer, "sched", None, None),
            &actor(),
        )
        .await
        .unwrap();
    let balancer = planner::render(&store.plan_inputs(&scheduler_host.id).await.unwrap());
    let balancer = balancer
        .components
        .iter()
        .find(|component| component.role == Role::LoadBalancer as i32)
        .unwrap();
    assert_eq!(balancer.port, 11223);
    assert_eq!(
        balancer.backends,
        [v1::BackendServer {
            name: "server1".into(),
            address: "10.0.0.3".into(),
            port: 17010,
            drain: false,
        }],
        "a load balancer gets every server"
    );
    let settings = balancer.load_balancer.as_ref().unwrap();
    assert_eq!(
        (
            settings.haproxy_bin.as_str(),
            settings.frontend_address.as_str(),
            settings.check_inter_ms
        ),
        ("haproxy", "0.0.0.0", 2000),
        "with the default settings"
    );
    assert!(
        balancer.secrets.as_ref().unwrap().secret_key.is_empty(),
        "and no secret"
    );
    let scheduler_plan = planner::render(&store.plan_inputs(&scheduler_host.id).await.unwrap());
    let scheduler = scheduler_plan
        .components
        .iter()
        .find(|component| component.role == Role::Scheduler as i32)
        .unwrap();
    assert_eq!(
        peer_address(scheduler.server.as_ref()),
        ["http://10.0.0.3:17010"]
    );
    assert_eq!(
        scheduler.secrets.as_ref().unwrap().scheduler_api_password,
        secrets.scheduler_api_password
    );

    let kinds: Vec<_> = store
        .list_events(Some("prod"), None, 20)
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.kind)
        .collect();
    assert_eq!(
        kinds
            .iter()
            .filter(|kind| *kind == "bootstrap.done")
            .count(),
        2,
        "{kinds:?}"
    );
    store.close().await;
}

/// In a bootstrapped cluster a server's arrival and departure move only its own host and the
/// hosts whose desired state names servers (load balancer, scheduler); the other servers' hosts
/// keep their generation, and what they must run is indeed the same.
pub(crate) async fn a_server_added_or_removed_moves_only_the_hosts_that_name_servers(
    backend: Backend,
) {
    let (_database, store) = store_with_prod(backend).await;
    for (role, host) in [
        (Role::Server, "app-1"),
        (Role::Scheduler, "sched"),
        (Role::LoadBalancer, "lb"),
    ] {
        store
            .create_assignment(assign("prod", role, host, None, None), &actor())
            .await
            .unwrap();
    }
    let server_host = enroll(&store, "prod", "app-1").await;
    let scheduler_host = enroll(&store, "prod", "sched").await;
    let balancer_host = enroll(&store, "prod", "lb").await;
    let new_host = enroll(&store, "prod", "app-2").await;
    let done = |task| BootstrapReport {
        cluster: "prod".to_owned(),
        task,
        done: true,
        last_error: String::new(),
    };
    store
        .record_status(
            &server_host.id,
            report(
                1,
                "10.0.0.5",
                vec![done(BootstrapTask::Odb), done(BootstrapTask::Cluster)],
            ),
        )
        .await
        .unwrap();
    let generation = async |host: &Host| store.host_generation(&host.id).await.unwrap().unwrap();
    let rendered = async |host: &Host| {
        let mut plan = planner::render(&store.plan_inputs(&host.id).await.unwrap());
        plan.generation = 0;
        plan
    };
    let backends = async || {
        let plan = planner::render(&store.plan_inputs(&balancer_host.id).await.unwrap());
        plan.components[0]
            .backends
            .iter()
            .map(|backend| backend.name.clone())
            .collect::<Vec<_>>()
    };
    let server_before = (generation(&server_host).await, rendered(&server_host).await);
    let scheduler_before = generation(&scheduler_host).await;
    let balancer_before = generation(&balancer_host).await;
    let new_before = generation(&new_host).await;

    store
        .create_assignment(assign("prod", Role::Server, "app-2", None, None), &actor())
        .await
        .unwrap();
    assert_eq!(backends().await, ["server1", "server2"]);
    assert!(generation(&balancer_host).await > balancer_before);
    assert!(generation(&scheduler_host).await > scheduler_before);
    assert!(generation(&new_host).await > new_before);
    assert_eq!(
        (generation(&server_host).await, rendered(&server_host).await),
        server_before,
        "the other server's host neither moved nor needed to"
    );

    let balancer_before = generation(&balancer_host).await;
    store
        .delete_assignment("prod", Role::Server, "app-2", None, &actor())
        .await
        .unwrap();
    assert_eq!(backends().await, ["server1"]);
    assert!(generation(&balancer_host).await > balancer_before);
    assert!(
        planner::render(&store.plan_inputs(&new_host.id).await.unwrap())
            .components
            .is_empty(),
        "the removed server's host learns of it"
    );
    assert_eq!(
        (generation(&server_host).await, rendered(&server_host).await),
        server_before
    );
    store.close().await;
}
