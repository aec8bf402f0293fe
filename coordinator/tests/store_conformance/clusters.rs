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
