//! One behaviour suite for the store, run against SQLite, PostgreSQL and MariaDB.
//! Each test makes its own database (see `muster_testkit::TestDatabase`) and drops it afterwards.

use std::collections::BTreeMap;

use muster_coordinator::planner;
use muster_coordinator::secrets::{self, SecretBox};
use muster_coordinator::store::{
    Actor, BootstrapReport, BootstrapTask, ClusterSecrets, ComponentStatus, DatabaseUrl, Host,
    NewAssignment, NewCluster, NewHost, NewJoinToken, OdbSettings, SqlStore, StatusReport, Store,
    StoreError, TokenRefusal, now_ms,
};
use muster_proto::v1::{self, BootstrapKind, OdbType, Role};
use muster_testkit::{Backend, TestDatabase};
use sqlx::Row;

const KEY: [u8; 32] = [7; 32];

async fn open(database: &TestDatabase) -> SqlStore {
    let url = DatabaseUrl::parse(&database.url).unwrap();
    SqlStore::connect(&url, SecretBox::new(&KEY).unwrap())
        .await
        .unwrap()
}

fn actor() -> Actor {
    Actor("test".to_owned())
}

fn new_cluster(name: &str) -> NewCluster {
    NewCluster {
        name: name.to_owned(),
        description: "conformance".to_owned(),
        odb: OdbSettings {
            odb_type: OdbType::Postgresql,
            host: "db.internal".to_owned(),
            port: 5432,
            user: "zato".to_owned(),
            db_name: "zato_odb".to_owned(),
            postgresql_schema: "public".to_owned(),
        },
        secrets: ClusterSecrets {
            odb_password: format!("odb-password-of-{name}"),
            secret_key: format!("secret-key-of-{name}"),
            jwt_secret: format!("jwt-secret-of-{name}"),
            admin_invoke_password: format!("invoke-password-of-{name}"),
        },
    }
}

struct IssuedToken {
    id: String,
    secret_hash: String,
}

async fn issue_token(store: &SqlStore, cluster: &str, max_uses: u32, ttl_ms: i64) -> IssuedToken {
    let id = secrets::random_hex(8).unwrap();
    let secret_hash = secrets::sha256_hex(secrets::random_hex(16).unwrap().as_bytes());
    store
        .create_join_token(
            NewJoinToken {
                id: id.clone(),
                secret_hash: secret_hash.clone(),
                cluster: cluster.to_owned(),
                roles: Vec::new(),
                description: String::new(),
                expires_at_ms: now_ms() + ttl_ms,
                max_uses,
            },
            &actor(),
        )
        .await
        .unwrap();
    IssuedToken { id, secret_hash }
}

fn refusal(result: Result<impl std::fmt::Debug, StoreError>) -> TokenRefusal {
    match result {
        Err(StoreError::TokenRefused { reason, .. }) => reason,
        other => panic!("expected a refused token, got {other:?}"),
    }
}

async fn cluster_survives_a_coordinator_restart(backend: Backend) {
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

async fn duplicate_cluster_names_are_refused(backend: Backend) {
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
async fn the_health_probe_commits_a_write(backend: Backend) {
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

async fn two_coordinators_see_each_others_writes(backend: Backend) {
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

async fn a_deleted_clusters_tokens_stop_working(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = open(&database).await;
    store
        .create_cluster(new_cluster("doomed"), &actor())
        .await
        .unwrap();
    store
        .create_cluster(new_cluster("kept"), &actor())
        .await
        .unwrap();
    let doomed = issue_token(&store, "doomed", 0, 60_000).await;
    let kept = issue_token(&store, "kept", 0, 60_000).await;
    store
        .redeem_join_token(&doomed.id, &doomed.secret_hash, now_ms())
        .await
        .unwrap();

    store.delete_cluster("doomed", &actor()).await.unwrap();

    let result = store
        .redeem_join_token(&doomed.id, &doomed.secret_hash, now_ms())
        .await;
    assert_eq!(refusal(result), TokenRefusal::Unknown);
    store
        .redeem_join_token(&kept.id, &kept.secret_hash, now_ms())
        .await
        .unwrap();
    let remaining: Vec<_> = store
        .list_join_tokens(None)
        .await
        .unwrap()
        .into_iter()
        .map(|token| token.id)
        .collect();
    assert_eq!(remaining, [kept.id]);
    assert!(matches!(
        store.get_cluster("doomed").await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.delete_cluster("doomed", &actor()).await,
        Err(StoreError::NotFound { .. })
    ));
    store.close().await;
}

async fn join_tokens_are_refused_for_the_reason_that_applies(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = open(&database).await;
    store
        .create_cluster(new_cluster("prod"), &actor())
        .await
        .unwrap();

    let once = issue_token(&store, "prod", 1, 60_000).await;
    let wrong_hash = secrets::sha256_hex(b"wrong");
    assert_eq!(
        refusal(
            store
                .redeem_join_token(&once.id, &wrong_hash, now_ms())
                .await
        ),
        TokenRefusal::WrongSecret
    );
    let redeemed = store
        .redeem_join_token(&once.id, &once.secret_hash, now_ms())
        .await
        .unwrap();
    assert_eq!((redeemed.uses, redeemed.roles), (1, Vec::new()));
    assert_eq!(
        refusal(
            store
                .redeem_join_token(&once.id, &once.secret_hash, now_ms())
                .await
        ),
        TokenRefusal::UsedUp
    );

    let expiring = issue_token(&store, "prod", 0, 1_000).await;
    assert_eq!(
        refusal(
            store
                .redeem_join_token(&expiring.id, &expiring.secret_hash, now_ms() + 2_000)
                .await
        ),
        TokenRefusal::Expired
    );

    let revoked = issue_token(&store, "prod", 0, 60_000).await;
    let token = store
        .revoke_join_token(&revoked.id, &actor())
        .await
        .unwrap();
    assert!(token.revoked_at_ms.is_some());
    assert_eq!(
        refusal(
            store
                .redeem_join_token(&revoked.id, &revoked.secret_hash, now_ms())
                .await
        ),
        TokenRefusal::Revoked
    );
    assert_eq!(
        refusal(
            store
                .redeem_join_token("0000000000000000", &once.secret_hash, now_ms())
                .await
        ),
        TokenRefusal::Unknown
    );
    assert!(matches!(
        store.revoke_join_token("0000000000000000", &actor()).await,
        Err(StoreError::NotFound { .. })
    ));
    store.close().await;
}

async fn the_last_use_of_a_token_goes_to_one_caller(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let first = open(&database).await;
    let second = open(&database).await;
    first
        .create_cluster(new_cluster("prod"), &actor())
        .await
        .unwrap();
    let token = issue_token(&first, "prod", 3, 60_000).await;

    let mut attempts = Vec::new();
    for attempt in 0..8 {
        let store = if attempt % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        let (id, hash) = (token.id.clone(), token.secret_hash.clone());
        attempts.push(tokio::spawn(async move {
            store.redeem_join_token(&id, &hash, now_ms()).await
        }));
    }
    let mut granted = 0;
    for attempt in attempts {
        match attempt.await.unwrap() {
            Ok(_) => granted += 1,
            Err(StoreError::TokenRefused {
                reason: TokenRefusal::UsedUp,
                ..
            }) => {}
            Err(other) => panic!("unexpected error: {other}"),
        }
    }
    assert_eq!(granted, 3);
    assert_eq!(first.list_join_tokens(None).await.unwrap()[0].uses, 3);
    first.close().await;
    second.close().await;
}

async fn no_secret_is_stored_in_clear(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = open(&database).await;
    store
        .create_cluster(new_cluster("prod"), &actor())
        .await
        .unwrap();
    let token_secret = secrets::random_hex(16).unwrap();
    let admin_token = format!(
        "muster-admin.0123456789abcdef.{}",
        secrets::random_hex(16).unwrap()
    );
    store
        .add_admin_token(
            "0123456789abcdef",
            &secrets::sha256_hex(admin_token.as_bytes()),
            "test",
        )
        .await
        .unwrap();
    store
        .create_join_token(
            NewJoinToken {
                id: "fedcba9876543210".to_owned(),
                secret_hash: secrets::sha256_hex(token_secret.as_bytes()),
                cluster: "prod".to_owned(),
                roles: vec![Role::Server],
                description: String::new(),
                expires_at_ms: now_ms() + 60_000,
                max_uses: 0,
            },
            &actor(),
        )
        .await
        .unwrap();
    store.close().await;

    let secrets = new_cluster("prod").secrets;
    let forbidden = [
        secrets.odb_password.as_str(),
        &secrets.secret_key,
        &secrets.jwt_secret,
        &secrets.admin_invoke_password,
        &token_secret,
        &admin_token,
    ];
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&database.url).await.unwrap();
    let mut text_cells = 0;
    for table in ["clusters", "join_tokens", "admin_tokens", "hosts", "events"] {
        for row in sqlx::query(&format!("SELECT * FROM {table}"))
            .fetch_all(&pool)
            .await
            .unwrap()
        {
            for index in 0..row.len() {
                let Ok(Some(cell)) = row.try_get::<Option<String>, _>(index) else {
                    continue;
                };
                text_cells += 1;
                for secret in forbidden {
                    assert!(
                        !cell.contains(secret),
                        "{table} column {index} holds a secret in clear"
                    );
                }
            }
        }
    }
    assert!(text_cells > 20, "only {text_cells} text cells were read");
    pool.close().await;
}

async fn events_are_listed_newest_first_and_by_cluster(backend: Backend) {
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
        .list_events(None, 10)
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
    let alpha = store.list_events(Some("alpha"), 10).await.unwrap();
    assert_eq!(alpha.len(), 2);
    assert!(alpha.iter().all(|event| event.actor == "test"));
    assert_eq!(store.list_events(None, 1).await.unwrap().len(), 1);
    store.close().await;
}

async fn hosts_are_listed_and_unique(backend: Backend) {
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

fn assign(
    cluster: &str,
    role: Role,
    host: &str,
    name: Option<&str>,
    port: Option<u16>,
) -> NewAssignment {
    NewAssignment {
        cluster: cluster.to_owned(),
        role,
        name: name.map(str::to_owned),
        host: host.to_owned(),
        port,
        load_balancer: None,
    }
}

async fn enroll(store: &SqlStore, cluster: &str, host: &str) -> Host {
    let token = issue_token(store, cluster, 1, 60_000).await;
    let new = NewHost {
        id: secrets::random_hex(8).unwrap(),
        name: host.to_owned(),
        advertise_address: format!("10.0.0.{}", host.len()),
        labels: BTreeMap::new(),
    };
    store
        .enroll_host(&token.id, &token.secret_hash, new, &[])
        .await
        .unwrap()
        .0
}

fn report(generation: u64, address: &str, bootstrap: Vec<BootstrapReport>) -> StatusReport {
    StatusReport {
        applied_generation: generation,
        advertise_address: address.to_owned(),
        components: Vec::new(),
        bootstrap,
    }
}

async fn assignments_get_names_and_ports_and_conflicts_are_refused(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = open(&database).await;
    store
        .create_cluster(new_cluster("prod"), &actor())
        .await
        .unwrap();
    store
        .create_cluster(new_cluster("test"), &actor())
        .await
        .unwrap();

    let first = store
        .create_assignment(assign("prod", Role::Server, "app-1", None, None), &actor())
        .await
        .unwrap();
    let second = store
        .create_assignment(assign("prod", Role::Server, "app-1", None, None), &actor())
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

async fn enrollment_uses_the_token_and_one_host_bootstraps_each_cluster(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = open(&database).await;
    store
        .create_cluster(new_cluster("prod"), &actor())
        .await
        .unwrap();
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

async fn a_finished_bootstrap_releases_components_with_new_generations(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = open(&database).await;
    store
        .create_cluster(new_cluster("prod"), &actor())
        .await
        .unwrap();
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
    assert!(
        secrets.admin_invoke_password.is_empty(),
        "a server does not get the admin.invoke password"
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
        .list_events(Some("prod"), 20)
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

async fn silent_hosts_are_marked_down_once_and_up_again(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = open(&database).await;
    store
        .create_cluster(new_cluster("prod"), &actor())
        .await
        .unwrap();
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
        .list_events(None, 3)
        .await
        .unwrap()
        .into_iter()
        .map(|event| event.kind)
        .collect();
    assert_eq!(kinds, ["host.up", "host.down", "host.up"]);
    store.close().await;
}

async fn token_roles_join_hosts_to_the_cluster(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = open(&database).await;
    store
        .create_cluster(new_cluster("prod"), &actor())
        .await
        .unwrap();
    let token = |roles: Vec<Role>| {
        let store = store.clone();
        async move {
            let id = secrets::random_hex(8).unwrap();
            let secret_hash = secrets::sha256_hex(b"secret");
            let new = NewJoinToken {
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
    let skipped = store.list_events(Some("prod"), 50).await.unwrap();
    assert!(
        skipped
            .iter()
            .any(|event| event.kind == "host.join-skipped" && event.host == "sched-2")
    );
    let bootstraps: Vec<_> = store
        .list_events(Some("prod"), 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "component.assigned")
        .collect();
    assert_eq!(bootstraps.len(), 5);
    store.close().await;
}

async fn scheduler_peer(store: &SqlStore, host_id: &str) -> Vec<String> {
    let plan = planner::render(&store.plan_inputs(host_id).await.unwrap());
    let scheduler = plan
        .components
        .iter()
        .find(|component| component.name == "scheduler")
        .unwrap();
    peer_address(scheduler.server.as_ref())
}

/// A peer endpoint of a desired state as Zato's address options take it, in a list of one (or
/// none): how these tests say which peer a component gets.
fn peer_address(endpoint: Option<&v1::Endpoint>) -> Vec<String> {
    endpoint
        .map(|endpoint| {
            let scheme = if endpoint.tls { "https" } else { "http" };
            format!("{scheme}://{}:{}", endpoint.host, endpoint.port)
        })
        .into_iter()
        .collect()
}

async fn the_scheduler_follows_a_healthy_server(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = open(&database).await;
    store
        .create_cluster(new_cluster("prod"), &actor())
        .await
        .unwrap();
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
    let done = |task| BootstrapReport {
        cluster: "prod".to_owned(),
        task,
        done: true,
        last_error: String::new(),
    };
    store
        .record_status(
            &scheduler_host.id,
            report(
                1,
                "10.0.0.1",
                vec![done(BootstrapTask::Odb), done(BootstrapTask::Cluster)],
            ),
        )
        .await
        .unwrap();
    let healthy = |name: &str| ComponentStatus {
        cluster: "prod".to_owned(),
        role: Role::Server,
        name: name.to_owned(),
        state: "running".to_owned(),
        healthy: true,
        last_error: String::new(),
        restarts: 0,
        backends: Vec::new(),
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
        store
            .record_status(&server_c.id, keep_c.clone())
            .await
            .unwrap();
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
        .list_events(Some("prod"), 50)
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

/// The load balancer's report: healthy, with `server1` in `state`.
fn balancer_report(state: &str) -> StatusReport {
    let mut balancer = report(1, "10.0.0.9", Vec::new());
    balancer.components = vec![ComponentStatus {
        cluster: "prod".to_owned(),
        role: Role::LoadBalancer,
        name: "load-balancer".to_owned(),
        state: "running".to_owned(),
        healthy: true,
        last_error: String::new(),
        restarts: 0,
        backends: vec![v1::BackendServerState {
            name: "server1".into(),
            address: "10.0.0.2:17010".into(),
            state: state.into(),
            check: "L7OK 200 Layer7 check passed, code 200".into(),
            sessions: 3,
            status: v1::BackendStatus::from_haproxy(state) as i32,
        }],
    }];
    balancer
}

async fn a_drained_server_runs_until_load_balancers_stop_sending_to_it(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = open(&database).await;
    store
        .create_cluster(new_cluster("prod"), &actor())
        .await
        .unwrap();
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

/// A host enrolling under a name an admin gave roles of another cluster (or, with a token that
/// names roles, other roles of the token's cluster) gets nothing: no host, no role, no bootstrap,
/// no secret; the token keeps its use; an event says who tried what. (Found by attacking Muster:
/// a role-less token of `dev` took over a pre-assigned server of `pg` and its secrets.)
async fn enrollment_never_hands_a_host_what_its_token_does_not_allow(backend: Backend) {
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
    let events = store.list_events(Some("dev"), 10).await.unwrap();
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
async fn only_a_host_that_reaches_the_odb_bootstraps(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let store = open(&database).await;
    store
        .create_cluster(new_cluster("prod"), &actor())
        .await
        .unwrap();
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

macro_rules! store_conformance_suite {
    ($($backend_module:ident => $backend:expr),* $(,)?) => {$(
        mod $backend_module {
            use super::*;

            #[tokio::test]
            async fn cluster_survives_a_coordinator_restart() {
                super::cluster_survives_a_coordinator_restart($backend).await;
            }
            #[tokio::test]
            async fn duplicate_cluster_names_are_refused() {
                super::duplicate_cluster_names_are_refused($backend).await;
            }
            #[tokio::test]
            async fn the_health_probe_commits_a_write() {
                super::the_health_probe_commits_a_write($backend).await;
            }
            #[tokio::test]
            async fn two_coordinators_see_each_others_writes() {
                super::two_coordinators_see_each_others_writes($backend).await;
            }
            #[tokio::test]
            async fn a_deleted_clusters_tokens_stop_working() {
                super::a_deleted_clusters_tokens_stop_working($backend).await;
            }
            #[tokio::test]
            async fn join_tokens_are_refused_for_the_reason_that_applies() {
                super::join_tokens_are_refused_for_the_reason_that_applies($backend).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn the_last_use_of_a_token_goes_to_one_caller() {
                super::the_last_use_of_a_token_goes_to_one_caller($backend).await;
            }
            #[tokio::test]
            async fn no_secret_is_stored_in_clear() {
                super::no_secret_is_stored_in_clear($backend).await;
            }
            #[tokio::test]
            async fn events_are_listed_newest_first_and_by_cluster() {
                super::events_are_listed_newest_first_and_by_cluster($backend).await;
            }
            #[tokio::test]
            async fn hosts_are_listed_and_unique() {
                super::hosts_are_listed_and_unique($backend).await;
            }
            #[tokio::test]
            async fn assignments_get_names_and_ports_and_conflicts_are_refused() {
                super::assignments_get_names_and_ports_and_conflicts_are_refused($backend).await;
            }
            #[tokio::test]
            async fn enrollment_uses_the_token_and_one_host_bootstraps_each_cluster() {
                super::enrollment_uses_the_token_and_one_host_bootstraps_each_cluster($backend).await;
            }
            #[tokio::test]
            async fn a_finished_bootstrap_releases_components_with_new_generations() {
                super::a_finished_bootstrap_releases_components_with_new_generations($backend).await;
            }
            #[tokio::test]
            async fn token_roles_join_hosts_to_the_cluster() {
                super::token_roles_join_hosts_to_the_cluster($backend).await;
            }
            #[tokio::test]
            async fn the_scheduler_follows_a_healthy_server() {
                super::the_scheduler_follows_a_healthy_server($backend).await;
            }
            #[tokio::test]
            async fn a_drained_server_runs_until_load_balancers_stop_sending_to_it() {
                super::a_drained_server_runs_until_load_balancers_stop_sending_to_it($backend).await;
            }
            #[tokio::test]
            async fn enrollment_never_hands_a_host_what_its_token_does_not_allow() {
                super::enrollment_never_hands_a_host_what_its_token_does_not_allow($backend).await;
            }
            #[tokio::test]
            async fn only_a_host_that_reaches_the_odb_bootstraps() {
                super::only_a_host_that_reaches_the_odb_bootstraps($backend).await;
            }
            #[tokio::test]
            async fn silent_hosts_are_marked_down_once_and_up_again() {
                super::silent_hosts_are_marked_down_once_and_up_again($backend).await;
            }
        }
    )*};
}

store_conformance_suite! {
    sqlite => Backend::Sqlite,
    postgres => Backend::Postgres,
    mariadb => Backend::MySql,
}
