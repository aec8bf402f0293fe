//! Hosts and events: enrollment, silence, roles from tokens, names that are not the token's to give.

use super::*;

pub(crate) async fn events_are_listed_newest_first_and_by_cluster(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = open(&database).await;
    store
        .create_cluster(new_cluster("alpha"), &actor())
        .await
        .unwrap();
    store
        .create_cluster(new_cluster("beta"), &actor())
        .await
        .unwrap();
    store.delete_cluster("alpha", &actor()).await.unwrap();

    let kinds: Vec<_> = store
        .list_events(None, None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|event| format!("{} {}", event.kind, event.cluster))
        .collect();
    assert_eq!(
        kinds,
        [
            "cluster.deleted alpha",
            "cluster.created beta",
            "cluster.created alpha"
        ]
    );
    let alpha = store.list_events(Some("alpha"), None, 10).await.unwrap();
    assert_eq!(alpha.len(), 2);
    assert!(alpha.iter().all(|event| event.actor == "test"));
    assert_eq!(store.list_events(None, None, 1).await.unwrap().len(), 1);
    store.close().await;
}

pub(crate) async fn hosts_are_listed_and_unique(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = open(&database).await;
    let labels = BTreeMap::from([("zone".to_owned(), "eu-1".to_owned())]);
    for name in ["app-2", "app-1"] {
        let new = NewHost {
            id: secrets::random_hex(8).unwrap(),
            name: name.to_owned(),
            advertise_address: "10.0.0.5".to_owned(),
            labels: labels.clone(),
        };
        store.create_host(new, &actor()).await.unwrap();
    }
    let duplicate = NewHost {
        id: secrets::random_hex(8).unwrap(),
        name: "app-1".to_owned(),
        advertise_address: "10.0.0.6".to_owned(),
        labels: BTreeMap::new(),
    };
    assert!(matches!(
        store.create_host(duplicate, &actor()).await,
        Err(StoreError::AlreadyExists { kind: "host", .. })
    ));
    let names: Vec<_> = store
        .list_hosts()
        .await
        .unwrap()
        .into_iter()
        .map(|host| host.name)
        .collect();
    assert_eq!(names, ["app-1", "app-2"]);
    let host = store.get_host("app-2").await.unwrap();
    assert_eq!(
        (host.labels, host.state.as_str(), host.last_seen_ms),
        (labels, "new", None)
    );
    assert!(matches!(
        store.get_host("nope").await,
        Err(StoreError::NotFound { .. })
    ));
    store.close().await;
}

pub(crate) async fn silent_hosts_are_marked_down_once_and_up_again(backend: Backend) {
    let (_database, store) = store_with_prod(backend).await;
    let host = enroll(&store, "prod", "app-1").await;
    store
        .record_status(&host.id, report(1, "10.0.0.5", Vec::new()))
        .await
        .unwrap();
    assert_eq!(store.get_host("app-1").await.unwrap().state, "up");
    assert!(
        store
            .mark_stale_hosts_down(now_ms(), 15_000)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .mark_stale_hosts_down(now_ms() + 16_000, 15_000)
            .await
            .unwrap(),
        ["app-1"]
    );
    assert!(
        store
            .mark_stale_hosts_down(now_ms() + 17_000, 15_000)
            .await
            .unwrap()
            .is_empty(),
        "marked once"
    );
    assert_eq!(store.get_host("app-1").await.unwrap().state, "down");
    store
        .record_status(&host.id, report(1, "10.0.0.5", Vec::new()))
        .await
        .unwrap();
    assert_eq!(store.get_host("app-1").await.unwrap().state, "up");
    let kinds: Vec<_> = store
        .list_events(None, None, 3)
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.kind)
        .collect();
    assert_eq!(kinds, ["host.up", "host.down", "host.up"]);
    store.close().await;
}

pub(crate) async fn token_roles_join_hosts_to_the_cluster(backend: Backend) {
    let (_database, store) = store_with_prod(backend).await;
    let token = |roles: Vec<Role>| {
        let store = store.clone();
        async move {
            let id = secrets::random_hex(8).unwrap();
            let secret_hash = secrets::sha256_hex(b"secret");
            let new = NewJoinToken {
                labels: BTreeMap::new(),
                id: id.clone(),
                secret_hash: secret_hash.clone(),
                cluster: "prod".to_owned(),
                roles,
                description: String::new(),
                expires_at_ms: now_ms() + 60_000,
                max_uses: 0,
            };
            store.create_join_token(new, &actor()).await.unwrap();
            (id, secret_hash)
        }
    };
    let host = |name: &str| NewHost {
        id: secrets::random_hex(8).unwrap(),
        name: name.to_owned(),
        advertise_address: "10.0.0.1".to_owned(),
        labels: BTreeMap::new(),
    };
    let (servers, servers_hash) = token(vec![Role::Server]).await;
    for name in ["auto-1", "auto-2", "auto-3"] {
        store
            .enroll_host(&servers, &servers_hash, host(name), &[])
            .await
            .unwrap();
    }
    let joined: Vec<String> = store
        .list_assignments(Some("prod"))
        .await
        .unwrap()
        .into_iter()
        .map(|a| format!("{} {} {} {}", a.role, a.name, a.host, a.port))
        .collect();
    assert_eq!(
        joined,
        [
            "server server1 auto-1 17010",
            "server server2 auto-2 17010",
            "server server3 auto-3 17010"
        ]
    );

    let (both, both_hash) = token(vec![Role::Server, Role::WebAdmin]).await;
    store
        .enroll_host(&both, &both_hash, host("asks-server"), &[Role::Server])
        .await
        .unwrap();
    let refused = store
        .enroll_host(
            &both,
            &both_hash,
            host("asks-scheduler"),
            &[Role::Scheduler],
        )
        .await;
    assert_eq!(
        refusal(refused.map(|(host, _)| host)),
        TokenRefusal::RoleNotAllowed
    );
    let roles_of = |name: &str| {
        let store = store.clone();
        let name = name.to_owned();
        async move {
            store
                .list_assignments(Some("prod"))
                .await
                .unwrap()
                .into_iter()
                .filter(|a| a.host == name)
                .map(|a| a.role)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        roles_of("asks-server").await,
        [Role::Server],
        "only the requested role"
    );
    assert!(matches!(
        store.get_host("asks-scheduler").await,
        Err(StoreError::NotFound { .. })
    ));

    let (schedulers, schedulers_hash) = token(vec![Role::Scheduler]).await;
    store
        .enroll_host(&schedulers, &schedulers_hash, host("sched-1"), &[])
        .await
        .unwrap();
    store
        .enroll_host(&schedulers, &schedulers_hash, host("sched-2"), &[])
        .await
        .unwrap();
    assert_eq!(roles_of("sched-1").await, [Role::Scheduler]);
    assert!(
        roles_of("sched-2").await.is_empty(),
        "a cluster has one scheduler"
    );
    let skipped = store.list_events(Some("prod"), None, 50).await.unwrap();
    assert!(
        skipped
            .iter()
            .any(|event| event.kind == "host.join-skipped" && event.host == "sched-2")
    );
    let bootstraps: Vec<_> = store
        .list_events(Some("prod"), None, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "component.assigned")
        .collect();
    assert_eq!(bootstraps.len(), 5);
    store.close().await;
}

/// A host belongs to the cluster of its join token; a component of another cluster is refused on
/// it with the reason, so that cluster's secrets never reach it. (Found by attacking Muster: a
/// host of `evilc` that labelled itself `tier=app` was placed by prod's selector and got prod's
/// ODB password.) A host not enrolled yet may still be named.
pub(crate) async fn a_host_of_another_cluster_never_gets_this_clusters_components(
    backend: Backend,
) {
    let database = TestDatabase::create(backend).await;
    let store = open(&database).await;
    for cluster in ["prod", "evilc"] {
        store
            .create_cluster(new_cluster(cluster), &actor())
            .await
            .unwrap();
    }
    let evil = enroll(&store, "evilc", "evil2").await;
    assert_eq!(evil.cluster, "evilc");
    let listed = store.list_hosts().await.unwrap();
    assert_eq!(listed[0].cluster, "evilc", "{listed:?}");
    let refused = store
        .create_assignment(assign("prod", Role::Server, "evil2", None, None), &actor())
        .await;
    let Err(StoreError::Conflict(reason)) = refused else {
        panic!("a prod server on evilc's host was not refused: {refused:?}");
    };
    assert!(
        reason.contains("host 'evil2' belongs to cluster 'evilc'") && reason.contains("secrets"),
        "{reason}"
    );
    assert!(
        store
            .list_assignments(Some("prod"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        reason.contains("muster host admit evil2 --cluster prod"),
        "the refusal says how to admit it: {reason}"
    );
    // An admin may admit it (once; again changes nothing): then prod's components may go there.
    for _ in 0..2 {
        let admitted = store.admit_host("evil2", "prod", &actor()).await.unwrap();
        assert_eq!(admitted.admitted, ["prod"]);
    }
    store
        .create_assignment(
            assign("prod", Role::WebAdmin, "evil2", None, None),
            &actor(),
        )
        .await
        .unwrap();
    let listed = store.list_hosts().await.unwrap();
    assert_eq!(listed[0].admitted, ["prod"], "{listed:?}");
    // Its own cluster's components go there; a host not enrolled yet may be named for prod.
    store
        .create_assignment(assign("evilc", Role::Server, "evil2", None, None), &actor())
        .await
        .unwrap();
    store
        .create_assignment(assign("prod", Role::Server, "app-1", None, None), &actor())
        .await
        .unwrap();
    let app = enroll(&store, "prod", "app-1").await;
    assert_eq!(app.cluster, "prod");
    store.close().await;
}

/// A report records only the components assigned to the reporting host: a member of `evilc` that
/// reports a component of cluster `quickstart` (with an error text of its choosing) writes no
/// status and no event there; its own component is recorded, and the store names what it ignored.
pub(crate) async fn a_host_reports_only_for_its_own_components(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = open(&database).await;
    for cluster in ["quickstart", "evilc"] {
        store
            .create_cluster(new_cluster(cluster), &actor())
            .await
            .unwrap();
    }
    store
        .create_assignment(
            assign("quickstart", Role::Server, "local", None, None),
            &actor(),
        )
        .await
        .unwrap();
    let evil = enroll(&store, "evilc", "evil2").await;
    store
        .create_assignment(assign("evilc", Role::Server, "evil2", None, None), &actor())
        .await
        .unwrap();
    let status = |cluster: &str, error: &str| ComponentStatus {
        cluster: cluster.to_owned(),
        role: Role::Server,
        name: "server1".to_owned(),
        state: v1::ComponentState::Failed,
        healthy: false,
        last_error: error.to_owned(),
        restarts: 3,
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
    let mut hostile = report(1, "10.0.0.5", Vec::new());
    hostile.components = vec![
        status("quickstart", "INJECTED: everything is on fire"),
        status("evilc", "its own error"),
    ];
    let recorded = store.record_status(&evil.id, hostile).await.unwrap();
    assert_eq!(recorded.ignored, ["server server1 of cluster quickstart"]);
    let quickstart = store.list_assignments(Some("quickstart")).await.unwrap();
    assert!(
        quickstart
            .iter()
            .all(|assignment| assignment.status.is_none()),
        "{quickstart:?}"
    );
    let events = store
        .list_events(Some("quickstart"), None, 50)
        .await
        .unwrap();
    assert!(
        events
            .iter()
            .all(|event| !event.message.contains("INJECTED")),
        "{events:?}"
    );
    let own = store.list_assignments(Some("evilc")).await.unwrap();
    let own_status = own[0].status.as_ref().expect("its own component's status");
    assert_eq!(own_status.last_error, "its own error");
    store.close().await;
}

/// One host's reports record at most 60 events a minute, and one `host.events-limited` event
/// (its status is still recorded whole); events are pruned by age and by count, oldest first.
pub(crate) async fn a_hosts_events_are_limited_per_minute_and_old_events_pruned(backend: Backend) {
    let (_database, store) = store_with_prod(backend).await;
    let host = enroll(&store, "prod", "flappy").await;
    for name in ["server1", "server2"] {
        store
            .create_assignment(
                assign("prod", Role::Server, "flappy", Some(name), None),
                &actor(),
            )
            .await
            .unwrap();
    }
    // Each report: a new error and one more restart for both servers, four events.
    for round in 1..=20_u32 {
        let mut flapping = report(1, "10.0.0.6", Vec::new());
        flapping.components = ["server1", "server2"]
            .into_iter()
            .map(|name| ComponentStatus {
                cluster: "prod".to_owned(),
                role: Role::Server,
                name: name.to_owned(),
                state: v1::ComponentState::Failed,
                healthy: false,
                last_error: format!("error {round}"),
                restarts: round,
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
            })
            .collect();
        store.record_status(&host.id, flapping).await.unwrap();
    }
    let events = store.list_events(Some("prod"), None, 1000).await.unwrap();
    let of_host = events.iter().filter(|event| event.host == "flappy").count();
    assert_eq!(of_host, 61, "60 and the notice: {events:?}");
    let limited: Vec<&muster_coordinator::store::Event> = events
        .iter()
        .filter(|event| event.kind == "host.events-limited")
        .collect();
    assert_eq!(limited.len(), 1, "{events:?}");
    let statuses = store.list_assignments(Some("prod")).await.unwrap();
    assert!(
        statuses.iter().all(|assignment| assignment
            .status
            .as_ref()
            .is_some_and(|status| status.last_error == "error 20")),
        "the status is recorded whole: {statuses:?}"
    );

    let total = store.list_events(None, None, 10_000).await.unwrap().len() as u64;
    assert!(total > 10, "{total}");
    assert_eq!(store.prune_events(0, 10).await.unwrap(), total - 10);
    let kept = store.list_events(None, None, 10_000).await.unwrap();
    assert_eq!(kept.len(), 10);
    assert_eq!(
        kept[0].id,
        events.iter().map(|event| event.id).max().unwrap(),
        "the newest stay"
    );
    assert_eq!(store.prune_events(now_ms() + 1, 1_000).await.unwrap(), 10);
    assert!(store.list_events(None, None, 10).await.unwrap().is_empty());
    store.close().await;
}

/// The labels selectors match come from the admin who made the join token: an agent may repeat
/// them, and an agent that asks for another label (or another value) is refused.
pub(crate) async fn a_hosts_labels_come_from_its_join_token(backend: Backend) {
    let (_database, store) = store_with_prod(backend).await;
    let labelled = NewJoinToken {
        labels: BTreeMap::from([("tier".to_owned(), "app".to_owned())]),
        id: secrets::random_hex(8).unwrap(),
        secret_hash: secrets::sha256_hex(b"labelled"),
        cluster: "prod".to_owned(),
        roles: Vec::new(),
        description: String::new(),
        expires_at_ms: now_ms() + 60_000,
        max_uses: 0,
    };
    store
        .create_join_token(labelled.clone(), &actor())
        .await
        .unwrap();
    let host = |name: &str, labels: &[(&str, &str)]| NewHost {
        id: secrets::random_hex(8).unwrap(),
        name: name.to_owned(),
        advertise_address: "10.0.0.7".to_owned(),
        labels: labels
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect(),
    };
    for (name, asked) in [("silent", &[][..]), ("repeats", &[("tier", "app")][..])] {
        let (enrolled, _) = store
            .enroll_host(&labelled.id, &labelled.secret_hash, host(name, asked), &[])
            .await
            .unwrap();
        assert_eq!(enrolled.labels, labelled.labels, "{name}");
    }
    for (name, asked) in [
        ("changes", &[("tier", "db")][..]),
        ("adds", &[("tier", "app"), ("zone", "eu")][..]),
    ] {
        let refused = store
            .enroll_host(&labelled.id, &labelled.secret_hash, host(name, asked), &[])
            .await;
        assert_eq!(
            refusal(refused.map(|(host, _)| host)),
            TokenRefusal::LabelNotBound,
            "{name}"
        );
        assert!(store.get_host(name).await.is_err(), "{name} was enrolled");
    }
    store.close().await;
}

/// A host enrolling under a name an admin gave roles of another cluster (or, with a token that
/// names roles, other roles of the token's cluster) gets nothing: no host, no role, no bootstrap,
/// no secret; the token keeps its use; an event says who tried what. (Found by attacking Muster:
/// a role-less token of `dev` took over a pre-assigned server of `pg` and its secrets.)
pub(crate) async fn enrollment_never_hands_a_host_what_its_token_does_not_allow(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = open(&database).await;
    for cluster in ["pg", "dev"] {
        store
            .create_cluster(new_cluster(cluster), &actor())
            .await
            .unwrap();
    }
    store
        .create_assignment(assign("pg", Role::Server, "app-9", None, None), &actor())
        .await
        .unwrap();
    let host = |name: &str| NewHost {
        id: secrets::random_hex(8).unwrap(),
        name: name.to_owned(),
        advertise_address: "10.0.0.9".to_owned(),
        labels: BTreeMap::new(),
    };
    let dev = issue_token(&store, "dev", 5, 60_000).await;
    let refused = store
        .enroll_host(&dev.id, &dev.secret_hash, host("app-9"), &[])
        .await;
    assert_eq!(
        refusal(refused.map(|(host, _)| host)),
        TokenRefusal::HostNameClaimed
    );
    assert!(matches!(
        store.get_host("app-9").await,
        Err(StoreError::NotFound { .. })
    ));
    let tokens = store.list_join_tokens(Some("dev")).await.unwrap();
    assert_eq!(tokens[0].uses, 0, "a refused enrollment uses nothing");
    let events = store.list_events(Some("dev"), None, 10).await.unwrap();
    let event = events
        .iter()
        .find(|event| event.kind == "host.enroll-refused")
        .expect("an event");
    assert!(
        event.host == "app-9" && event.message.contains("server of cluster pg"),
        "{event:?}"
    );
    // The same token under a name of its own enrolls.
    store
        .enroll_host(&dev.id, &dev.secret_hash, host("dev-1"), &[])
        .await
        .unwrap();

    // A token that names roles cannot take others pre-assigned in its own cluster either.
    store
        .create_assignment(assign("pg", Role::WebAdmin, "app-10", None, None), &actor())
        .await
        .unwrap();
    let servers_only = NewJoinToken {
        labels: BTreeMap::new(),
        id: secrets::random_hex(8).unwrap(),
        secret_hash: secrets::sha256_hex(b"servers"),
        cluster: "pg".to_owned(),
        roles: vec![Role::Server],
        description: String::new(),
        expires_at_ms: now_ms() + 60_000,
        max_uses: 0,
    };
    store
        .create_join_token(servers_only.clone(), &actor())
        .await
        .unwrap();
    let refused = store
        .enroll_host(
            &servers_only.id,
            &servers_only.secret_hash,
            host("app-10"),
            &[],
        )
        .await;
    assert_eq!(
        refusal(refused.map(|(host, _)| host)),
        TokenRefusal::HostNameClaimed
    );

    // A role-less token of pg takes what an admin assigned to that name in pg: its purpose.
    let pg = issue_token(&store, "pg", 1, 60_000).await;
    store
        .enroll_host(&pg.id, &pg.secret_hash, host("app-9"), &[])
        .await
        .unwrap();
    store.close().await;
}

/// A load balancer needs no cluster secret: a host with only that role never bootstraps the
/// cluster (the tasks carry the ODB password, the secret key and the admin.invoke password).
pub(crate) async fn only_a_host_that_reaches_the_odb_bootstraps(backend: Backend) {
    let (_database, store) = store_with_prod(backend).await;
    store
        .create_assignment(
            assign("prod", Role::LoadBalancer, "lb-1", None, None),
            &actor(),
        )
        .await
        .unwrap();
    let balancer = enroll(&store, "prod", "lb-1").await;
    let plan = store.plan_inputs(&balancer.id).await.unwrap();
    assert!(
        plan.bootstrap.iter().all(|task| task.host != "lb-1"),
        "{:?}",
        plan.bootstrap
    );
    let rendered = planner::render(&plan);
    assert!(rendered.bootstrap_tasks.is_empty());
    store
        .create_assignment(assign("prod", Role::Server, "app-1", None, None), &actor())
        .await
        .unwrap();
    let server = enroll(&store, "prod", "app-1").await;
    let plan = store.plan_inputs(&server.id).await.unwrap();
    assert!(
        !plan.bootstrap.is_empty() && plan.bootstrap.iter().all(|task| task.host == "app-1"),
        "{:?}",
        plan.bootstrap
    );
    store.close().await;
}

pub(crate) async fn an_unchanged_heartbeat_is_only_read_and_its_liveness_batched(backend: Backend) {
    let (_database, store) = store_with_prod(backend).await;
    let host = enroll(&store, "prod", "app-1").await;
    let silent = enroll(&store, "prod", "app-2").await;
    let first = store
        .record_status(&host.id, report(1, "10.0.0.5", Vec::new()))
        .await
        .unwrap();
    assert!(first.written, "the first report brings the host up");
    let seen = store.get_host("app-1").await.unwrap().last_seen_ms;

    let statements = muster_coordinator::store::statements();
    let again = store
        .record_status(&host.id, report(1, "10.0.0.5", Vec::new()))
        .await
        .unwrap();
    // Reads only: the host, its components, its backends; no transaction.
    assert_eq!(muster_coordinator::store::statements() - statements, 3);
    assert_eq!(
        (again.written, again.desired_generation),
        (false, first.desired_generation)
    );
    assert_eq!(store.get_host("app-1").await.unwrap().last_seen_ms, seen);

    let changed = store
        .record_status(&host.id, report(2, "10.0.0.5", Vec::new()))
        .await
        .unwrap();
    assert!(changed.written, "a new applied generation is written");
    assert_eq!(store.get_host("app-1").await.unwrap().applied_generation, 2);
    assert_eq!(
        store.get_host("app-1").await.unwrap().heartbeat_interval_ms,
        1_000,
        "how often it reports, as it said"
    );
    let mut slower = report(2, "10.0.0.5", Vec::new());
    slower.heartbeat_interval_ms = 5_000;
    let changed = store.record_status(&host.id, slower).await.unwrap();
    assert!(changed.written, "a new heartbeat interval is written");
    assert_eq!(
        store.get_host("app-1").await.unwrap().heartbeat_interval_ms,
        5_000
    );

    // Liveness in one batch: the up host is recorded; the one that never reported, and an id
    // that names no host, are handed back for the whole path.
    let at = now_ms() + 5_000;
    let not_up = store
        .record_liveness(&[
            (host.id.clone(), at),
            (silent.id.clone(), at),
            ("no-such-host".to_owned(), at),
        ])
        .await
        .unwrap();
    assert_eq!(
        not_up.iter().collect::<std::collections::BTreeSet<_>>(),
        [&silent.id, &"no-such-host".to_owned()]
            .into_iter()
            .collect()
    );
    assert_eq!(
        store.get_host("app-1").await.unwrap().last_seen_ms,
        Some(at)
    );
    assert_eq!(store.get_host("app-2").await.unwrap().last_seen_ms, None);
    store.close().await;
}

pub(crate) async fn recently_moved_generations_are_read_in_one_query(backend: Backend) {
    let (_database, store) = store_with_prod(backend).await;
    let moved = enroll(&store, "prod", "app-1").await;
    let still = enroll(&store, "prod", "app-2").await;
    let all = store.host_generations(None).await.unwrap();
    assert_eq!(all.len(), 2);
    // Past the enrollments' millisecond: `since` is inclusive.
    let since = now_ms() + 1;
    while now_ms() < since {
        tokio::task::yield_now().await;
    }
    assert!(
        store
            .host_generations(Some(since))
            .await
            .unwrap()
            .is_empty(),
        "nothing moved since"
    );
    store
        .set_host_drained("app-1", true, &actor())
        .await
        .unwrap();
    let recent = store.host_generations(Some(since)).await.unwrap();
    let generation = store.host_generation(&moved.id).await.unwrap().unwrap();
    assert_eq!(recent, [(moved.id.clone(), generation)]);
    assert!(!recent.iter().any(|(id, _)| *id == still.id));
    store.close().await;
}

/// A heartbeat batch skips a host whose row another write holds (a status report, a bump) and
/// records the others at once; the held one once that write ended. (SQLite has one writer: there
/// is nothing to skip.)
pub(crate) async fn a_heartbeat_batch_never_waits_for_a_host_another_write_holds(backend: Backend) {
    if backend == Backend::Sqlite {
        return;
    }
    let (database, store) = store_with_prod(backend).await;
    let held = enroll(&store, "prod", "app-1").await;
    let free = enroll(&store, "prod", "app-2").await;
    for host in [&held, &free] {
        store
            .record_status(&host.id, report(0, "10.0.0.5", Vec::new()))
            .await
            .unwrap();
    }
    use sqlx::Connection;
    let mut other = sqlx::AnyConnection::connect(&database.url).await.unwrap();
    let mut write = other.begin().await.unwrap();
    // The id is hex: written into the statement, it reads the same in both dialects.
    sqlx::query(&format!(
        "SELECT id FROM hosts WHERE id = '{}' FOR UPDATE",
        held.id
    ))
    .fetch_all(&mut *write)
    .await
    .unwrap();

    let at = now_ms() + 5_000;
    let batch = {
        let store = store.clone();
        let seen = [(held.id.clone(), at), (free.id.clone(), at)];
        tokio::spawn(async move { store.record_liveness(&seen).await })
    };
    muster_testkit::wait_for(
        "app-2's heartbeat, recorded while app-1 is held",
        std::time::Duration::from_secs(20),
        std::time::Duration::from_millis(20),
        || async {
            (store.get_host("app-2").await.unwrap().last_seen_ms == Some(at)).then_some(())
        },
    )
    .await
    .unwrap();
    assert_ne!(
        store.get_host("app-1").await.unwrap().last_seen_ms,
        Some(at),
        "the held host waits for the write that holds it"
    );
    write.rollback().await.unwrap();
    let not_up = batch.await.unwrap().unwrap();
    assert!(not_up.is_empty(), "both are up: {not_up:?}");
    assert_eq!(
        store.get_host("app-1").await.unwrap().last_seen_ms,
        Some(at)
    );
    store.close().await;
}

/// Assignments, status reports, drains and heartbeats of one cluster's hosts, all at once, as two
/// coordinators and a fleet send them: each write succeeds (none is failed to break a circle of
/// writes waiting for each other's rows, a deadlock) and the last applies.
pub(crate) async fn writes_to_one_cluster_at_once_all_succeed(backend: Backend) {
    let (_database, store) = store_with_prod(backend).await;
    let mut hosts = Vec::new();
    for index in 0..6 {
        let host = enroll(&store, "prod", &format!("app-{index}")).await;
        store
            .record_status(&host.id, report(0, "10.0.0.5", Vec::new()))
            .await
            .unwrap();
        hosts.push(host);
    }
    for round in 1..=4u64 {
        let mut writes = tokio::task::JoinSet::new();
        for (index, host) in hosts.iter().enumerate() {
            let store = store.clone();
            let host = host.clone();
            writes.spawn(async move {
                if round == 1 {
                    store
                        .create_assignment(
                            assign("prod", Role::Server, &host.name, None, None),
                            &actor(),
                        )
                        .await
                        .map(|_| ())?;
                }
                if index == round as usize {
                    store.set_host_drained(&host.name, true, &actor()).await?;
                    store.set_host_drained(&host.name, false, &actor()).await?;
                }
                let address = format!("10.0.{round}.{index}");
                store
                    .record_status(&host.id, report(round, &address, Vec::new()))
                    .await?;
                let ids: Vec<(String, i64)> = vec![(host.id.clone(), now_ms())];
                store.record_liveness(&ids).await.map(|_| ())
            });
        }
        while let Some(done) = writes.join_next().await {
            done.unwrap()
                .unwrap_or_else(|error| panic!("round {round}: {error:?}"));
        }
    }
    for (index, host) in hosts.iter().enumerate() {
        let stored = store.get_host(&host.name).await.unwrap();
        assert_eq!(
            (stored.applied_generation, stored.advertise_address.as_str()),
            (4, format!("10.0.4.{index}").as_str())
        );
    }
    assert_eq!(store.list_assignments(Some("prod")).await.unwrap().len(), 6);
    store.close().await;
}
