//! The scheduler's target and drains: what follows a server's health and a load balancer's view.

use super::*;

pub(crate) async fn the_scheduler_follows_a_healthy_server(backend: Backend) {
    let (_database, store) = store_with_prod(backend).await;
    store
        .create_assignment(
            assign("prod", Role::Scheduler, "sched", None, None),
            &actor(),
        )
        .await
        .unwrap();
    store
        .create_assignment(assign("prod", Role::Server, "app-b", None, None), &actor())
        .await
        .unwrap();
    store
        .create_assignment(assign("prod", Role::Server, "app-c", None, None), &actor())
        .await
        .unwrap();
    let scheduler_host = enroll(&store, "prod", "sched").await;
    let server_b = enroll(&store, "prod", "app-b").await;
    let server_c = enroll(&store, "prod", "app-c").await;
    finish_bootstrap(&store, &scheduler_host.id, 1, "10.0.0.1").await;
    let healthy = |name: &str| ComponentStatus {
        cluster: "prod".to_owned(),
        role: Role::Server,
        name: name.to_owned(),
        state: v1::ComponentState::Running,
        healthy: true,
        last_error: String::new(),
        restarts: 0,
        backends: Vec::new(),
        services_revision: String::new(),
        config_revision: String::new(),
        python_revision: String::new(),
        python_installed: String::new(),
        user_conf_revision: String::new(),
        odb_epoch: 0,
        odb_empty: false,
        restart_epoch: 0,
        rollout_held_since: None,
        rolls: false,
    };
    let mut report_b = report(1, "10.0.0.2", Vec::new());
    report_b.components = vec![healthy("server1")];
    store.record_status(&server_b.id, report_b).await.unwrap();
    let mut report_c = report(1, "10.0.0.3", Vec::new());
    report_c.components = vec![healthy("server2")];
    store.record_status(&server_c.id, report_c).await.unwrap();

    assert_eq!(
        scheduler_peer(&store, &scheduler_host.id).await,
        ["http://10.0.0.2:17010"]
    );
    assert_eq!(
        store.get_cluster("prod").await.unwrap().scheduler_target,
        "server1"
    );

    // Host B stops reporting; when it is marked down the scheduler moves to C.
    let mut keep_c = report(1, "10.0.0.3", Vec::new());
    keep_c.components = vec![healthy("server2")];
    // C reports again until its heartbeat is strictly newer than B's, so that a cutoff at C's
    // heartbeat finds B (and no other server) silent.
    let last_seen_b = store.get_host("app-b").await.unwrap().last_seen_ms.unwrap();
    let mut last_seen_c = 0;
    for _ in 0..1000 {
        let recorded = store
            .record_status(&server_c.id, keep_c.clone())
            .await
            .unwrap();
        if !recorded.written {
            // An unchanged report's liveness is written in a batch, as the coordinator does.
            store
                .record_liveness(&[(server_c.id.clone(), now_ms())])
                .await
                .unwrap();
        }
        last_seen_c = store.get_host("app-c").await.unwrap().last_seen_ms.unwrap();
        if last_seen_c > last_seen_b {
            break;
        }
    }
    assert!(last_seen_c > last_seen_b);
    let generation_before = store
        .host_generation(&scheduler_host.id)
        .await
        .unwrap()
        .unwrap();
    let marked = store.mark_stale_hosts_down(last_seen_c, 0).await.unwrap();
    assert!(!marked.contains(&"app-c".to_owned()), "{marked:?}");
    assert!(marked.contains(&"app-b".to_owned()), "{marked:?}");
    assert_eq!(
        store.get_cluster("prod").await.unwrap().scheduler_target,
        "server2"
    );
    assert!(
        store
            .host_generation(&scheduler_host.id)
            .await
            .unwrap()
            .unwrap()
            > generation_before
    );
    assert_eq!(
        scheduler_peer(&store, &scheduler_host.id).await,
        ["http://10.0.0.3:17010"]
    );
    let why = store
        .list_events(Some("prod"), None, 50)
        .await
        .unwrap()
        .into_iter()
        .find(|event| event.kind == "scheduler.target")
        .unwrap();
    assert!(
        why.message.contains("server2")
            && why.message.contains("host app-b of server server1 is down"),
        "{}",
        why.message
    );
    store.close().await;
}

/// A rolling restart takes the scheduler's server out for its turn: the scheduler stays with it
/// (a move would restart the scheduler, once per server of the rollout) while it is within the
/// cluster's healthy deadline, and moves to a healthy server once it is late.
pub(crate) async fn the_scheduler_stays_with_its_server_through_its_rollout_restart(
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
    for host in ["app-b", "app-c"] {
        store
            .create_assignment(assign("prod", Role::Server, host, None, None), &actor())
            .await
            .unwrap();
    }
    let scheduler_host = enroll(&store, "prod", "sched").await;
    let server_b = enroll(&store, "prod", "app-b").await;
    let server_c = enroll(&store, "prod", "app-c").await;
    finish_bootstrap(&store, &scheduler_host.id, 1, "10.0.0.1").await;
    let status = |name: &str, healthy: bool, restart_epoch: u64| ComponentStatus {
        state: if healthy {
            v1::ComponentState::Running
        } else {
            v1::ComponentState::Starting
        },
        healthy,
        ..server_status(name, None, restart_epoch)
    };
    let report_from = |address: &str, component: ComponentStatus| {
        let mut report = report(1, address, Vec::new());
        report.components = vec![component];
        report
    };
    store
        .record_status(
            &server_b.id,
            report_from("10.0.0.2", status("server1", true, 0)),
        )
        .await
        .unwrap();
    store
        .record_status(
            &server_c.id,
            report_from("10.0.0.3", status("server2", true, 0)),
        )
        .await
        .unwrap();
    let target = || async { store.get_cluster("prod").await.unwrap().scheduler_target };
    assert_eq!(target().await, "server1");
    store
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
    store.restart_servers("prod", &actor()).await.unwrap();

    // server1 restarted into the rollout and is starting: the scheduler stays with it.
    let restarted = now_ms();
    store
        .record_status(
            &server_b.id,
            report_from("10.0.0.2", status("server1", false, 1)),
        )
        .await
        .unwrap();
    assert_eq!(target().await, "server1");
    assert_eq!(
        scheduler_peer(&store, &scheduler_host.id).await,
        ["http://10.0.0.2:17010"]
    );
    store
        .stop_failed_rollouts(restarted + 20_000)
        .await
        .unwrap();
    assert_eq!(target().await, "server1", "within its healthy deadline");

    // Late: the rollout stops, and the scheduler moves to the healthy server.
    let stopped = store
        .stop_failed_rollouts(restarted + 36_000)
        .await
        .unwrap();
    assert_eq!(stopped.len(), 1, "{stopped:?}");
    assert_eq!(target().await, "server2");
    assert_eq!(
        scheduler_peer(&store, &scheduler_host.id).await,
        ["http://10.0.0.3:17010"]
    );
    let moved = store
        .list_events(Some("prod"), None, 50)
        .await
        .unwrap()
        .into_iter()
        .find(|event| event.kind == "scheduler.target")
        .unwrap();
    assert!(
        moved
            .message
            .contains("server server1 on host app-b is not healthy"),
        "{}",
        moved.message
    );
    store.close().await;
}

pub(crate) async fn a_drained_server_runs_until_load_balancers_stop_sending_to_it(
    backend: Backend,
) {
    let (_database, store) = store_with_prod(backend).await;
    store
        .create_assignment(assign("prod", Role::Server, "app-b", None, None), &actor())
        .await
        .unwrap();
    let mut edge = assign("prod", Role::LoadBalancer, "edge", None, None);
    edge.load_balancer = Some(v1::LoadBalancerSettings {
        haproxy_bin: "/usr/local/sbin/haproxy".into(),
        check_inter_ms: 5000,
        ..Default::default()
    });
    store.create_assignment(edge, &actor()).await.unwrap();
    let balancer_host = enroll(&store, "prod", "edge").await;
    let server_host = enroll(&store, "prod", "app-b").await;
    let done = |task| BootstrapReport {
        cluster: "prod".to_owned(),
        task,
        done: true,
        last_error: String::new(),
    };
    // Whichever host was chosen to bootstrap the cluster reports it done.
    for host in [&balancer_host, &server_host] {
        store
            .record_status(
                &host.id,
                report(
                    1,
                    &host.advertise_address,
                    vec![done(BootstrapTask::Odb), done(BootstrapTask::Cluster)],
                ),
            )
            .await
            .unwrap();
    }
    store
        .record_status(&balancer_host.id, balancer_report("UP"))
        .await
        .unwrap();

    // The settings and the reported backend come back as stored, defaults filled in.
    let listed = store.list_assignments(Some("prod")).await.unwrap();
    let balancer = listed
        .iter()
        .find(|assignment| assignment.role == Role::LoadBalancer)
        .unwrap();
    let settings = balancer.load_balancer.as_ref().unwrap();
    assert_eq!(settings.haproxy_bin, "/usr/local/sbin/haproxy");
    assert_eq!(settings.check_inter_ms, 5000);
    assert_eq!(settings.check_rise, 2);
    let reported = &balancer.status.as_ref().unwrap().backends;
    assert_eq!(reported.len(), 1);
    assert_eq!(
        (reported[0].state.as_str(), reported[0].sessions),
        ("UP", 3)
    );

    store
        .set_host_drained("app-b", true, &actor())
        .await
        .unwrap();
    let server_plan = planner::render(&store.plan_inputs(&server_host.id).await.unwrap());
    assert!(
        !server_plan.components[0].stopped,
        "the server serves on while the load balancer still sends it requests"
    );
    let balancer_plan = planner::render(&store.plan_inputs(&balancer_host.id).await.unwrap());
    assert!(
        balancer_plan.components[0].backends[0].drain,
        "the load balancer is told to drain it"
    );

    let before = store
        .host_generation(&server_host.id)
        .await
        .unwrap()
        .unwrap();
    store
        .record_status(&balancer_host.id, balancer_report("DRAIN"))
        .await
        .unwrap();
    let plan = planner::render(&store.plan_inputs(&server_host.id).await.unwrap());
    assert!(
        plan.generation > before,
        "the server's host gets a new generation"
    );
    assert!(
        plan.components[0].stopped,
        "and stops once the load balancer drained it"
    );
    store.close().await;
}

/// A cluster whose ODB a server finds empty is rebuilt only when asked: the next ODB
/// generation, the bootstrap again, every component held (running on) until then, then the
/// servers one first again, counted healthy only once created under the new generation.
pub(crate) async fn a_cluster_is_rebuilt_on_an_empty_odb_only_when_asked(backend: Backend) {
    let (_database, store) = store_with_prod(backend).await;
    for (role, host) in [
        (Role::Scheduler, "sched"),
        (Role::Server, "app-b"),
        (Role::Server, "app-c"),
    ] {
        store
            .create_assignment(assign("prod", role, host, None, None), &actor())
            .await
            .unwrap();
    }
    let scheduler_host = enroll(&store, "prod", "sched").await;
    let server_b = enroll(&store, "prod", "app-b").await;
    let server_c = enroll(&store, "prod", "app-c").await;
    finish_bootstrap(&store, &scheduler_host.id, 1, "10.0.0.1").await;
    let server = |name: &str, healthy: bool, epoch: u64, empty: bool| ComponentStatus {
        cluster: "prod".to_owned(),
        role: Role::Server,
        name: name.to_owned(),
        state: if healthy {
            v1::ComponentState::Running
        } else {
            v1::ComponentState::Creating
        },
        healthy,
        odb_epoch: epoch,
        odb_empty: empty,
        ..ComponentStatus::default()
    };
    let report_of = |address: &str, component: ComponentStatus| {
        let mut report = report(1, address, Vec::new());
        report.components = vec![component];
        report
    };
    store
        .record_status(
            &server_b.id,
            report_of("10.0.0.2", server("server1", true, 0, false)),
        )
        .await
        .unwrap();
    store
        .record_status(
            &server_c.id,
            report_of("10.0.0.3", server("server2", true, 0, false)),
        )
        .await
        .unwrap();
    assert!(store.get_cluster("prod").await.unwrap().servers_started);

    let refused = store.rebuild_odb("prod", &actor()).await.unwrap_err();
    assert!(
        matches!(&refused, StoreError::Conflict(message) if message.contains("reports its ODB empty")),
        "{refused}"
    );

    store
        .record_status(
            &server_b.id,
            report_of("10.0.0.2", server("server1", true, 0, true)),
        )
        .await
        .unwrap();
    let cluster = store.get_cluster("prod").await.unwrap();
    assert!(cluster.odb_empty, "a server's report marks the ODB empty");
    assert_eq!(cluster.odb_epoch, 0);

    assert_eq!(store.rebuild_odb("prod", &actor()).await.unwrap(), 1);
    let cluster = store.get_cluster("prod").await.unwrap();
    assert_eq!(cluster.odb_epoch, 1);
    assert!(
        !cluster.odb_empty,
        "a report of the older generation no longer counts"
    );
    assert!(
        !cluster.servers_started,
        "the servers start one first again"
    );
    assert!(
        store
            .list_events(Some("prod"), None, 50)
            .await
            .unwrap()
            .iter()
            .any(|event| event.kind == "cluster.odb-rebuild"),
        "the rebuild is an event"
    );
    let plan = |host: Host| {
        let store = &store;
        async move { planner::render(&store.plan_inputs(&host.id).await.unwrap()) }
    };
    let bootstrap = plan(scheduler_host.clone()).await.bootstrap_tasks;
    assert_eq!(bootstrap.len(), 2, "the bootstrap runs again");
    assert!(bootstrap.iter().all(|task| task.odb_epoch == 1));
    let [server1] = plan(server_b.clone()).await.components.try_into().unwrap();
    assert_eq!(server1.odb_epoch, 1);
    assert!(
        server1
            .hold
            .starts_with("waiting for the cluster's ODB to be created again")
            && server1.hold.contains("it runs on as it was"),
        "held, not removed, while the bootstrap runs again: {}",
        server1.hold
    );

    finish_bootstrap(&store, &scheduler_host.id, 2, "10.0.0.1").await;
    // server2 still healthy under the old generation: not a started server of the new one.
    let mut restarted = server("server2", true, 0, false);
    restarted.restarts = 1;
    store
        .record_status(&server_c.id, report_of("10.0.0.3", restarted))
        .await
        .unwrap();
    assert!(!store.get_cluster("prod").await.unwrap().servers_started);
    let [server1] = plan(server_b.clone()).await.components.try_into().unwrap();
    assert_eq!(
        server1.hold, "",
        "the first server is created again at once"
    );
    let [server2] = plan(server_c.clone()).await.components.try_into().unwrap();
    assert!(
        server2
            .hold
            .starts_with("waiting for server server1 on host app-b to start first"),
        "{}",
        server2.hold
    );

    // The cluster has services: the others, which serve meanwhile, are created again only once
    // the first runs them too.
    let (services, _) = store
        .set_services(
            "prod",
            &[v1::ServiceFile {
                name: "orders.py".to_owned(),
                content: "x = 1\n".to_owned(),
                ..Default::default()
            }],
            &actor(),
        )
        .await
        .unwrap();
    store
        .record_status(
            &server_b.id,
            report_of("10.0.0.2", server("server1", true, 1, false)),
        )
        .await
        .unwrap();
    assert!(
        !store.get_cluster("prod").await.unwrap().servers_started,
        "healthy, without the services yet"
    );
    let mut serving = server("server1", true, 1, false);
    serving.services_revision = services;
    store
        .record_status(&server_b.id, report_of("10.0.0.2", serving))
        .await
        .unwrap();
    let cluster = store.get_cluster("prod").await.unwrap();
    assert!(cluster.servers_started);
    assert_eq!(cluster.scheduler_target, "server1");
    let [server2] = plan(server_c.clone()).await.components.try_into().unwrap();
    assert_eq!(server2.hold, "", "then the others");

    // Later, a server still on the older revision during a deployment stays healthy: server2
    // coming up with the new one moves nothing.
    let (newer, _) = store
        .set_services(
            "prod",
            &[v1::ServiceFile {
                name: "orders.py".to_owned(),
                content: "x = 2\n".to_owned(),
                ..Default::default()
            }],
            &actor(),
        )
        .await
        .unwrap();
    let mut second = server("server2", true, 1, false);
    second.services_revision = newer;
    store
        .record_status(&server_c.id, report_of("10.0.0.3", second))
        .await
        .unwrap();
    assert_eq!(
        store.get_cluster("prod").await.unwrap().scheduler_target,
        "server1",
        "the scheduler stays"
    );
}

/// The host that ran a cluster's bootstrap removed (`host remove --force`, as a scale-in does):
/// the tasks pass to another host of the cluster, still done, so the others keep their
/// components (deleted, they left the cluster not bootstrapped, and every host dropped its
/// components).
pub(crate) async fn removing_the_bootstrap_host_keeps_the_cluster_bootstrapped(backend: Backend) {
    let (_database, store) = store_with_prod(backend).await;
    for host in ["app-b", "app-c"] {
        store
            .create_assignment(assign("prod", Role::Server, host, None, None), &actor())
            .await
            .unwrap();
    }
    let server_b = enroll(&store, "prod", "app-b").await;
    let server_c = enroll(&store, "prod", "app-c").await;
    let bootstrap = store.list_bootstrap(Some("prod")).await.unwrap();
    assert!(
        bootstrap.iter().all(|task| task.host == "app-b"),
        "{bootstrap:?}"
    );
    finish_bootstrap(&store, &server_b.id, 1, "10.0.0.2").await;
    let plan = planner::render(&store.plan_inputs(&server_c.id).await.unwrap());
    assert_eq!(plan.components.len(), 1);

    store.remove_host("app-b", true, &actor()).await.unwrap();
    let bootstrap = store.list_bootstrap(Some("prod")).await.unwrap();
    assert_eq!(bootstrap.len(), 2, "{bootstrap:?}");
    assert!(
        bootstrap
            .iter()
            .all(|task| task.host == "app-c" && task.done),
        "{bootstrap:?}"
    );
    let plan = planner::render(&store.plan_inputs(&server_c.id).await.unwrap());
    assert_eq!(
        plan.components
            .iter()
            .map(|component| component.name.as_str())
            .collect::<Vec<_>>(),
        ["server2"],
        "app-c keeps its server"
    );
    assert!(plan.bootstrap_tasks.is_empty(), "nothing to run again");
}
