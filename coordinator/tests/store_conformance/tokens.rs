//! Join tokens: refused for the reason that applies, used up exactly, never stored in clear.

use super::*;

pub(crate) async fn a_deleted_clusters_tokens_stop_working(backend: Backend) {
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

pub(crate) async fn join_tokens_are_refused_for_the_reason_that_applies(backend: Backend) {
    let (_database, store) = store_with_prod(backend).await;

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

pub(crate) async fn the_last_use_of_a_token_goes_to_one_caller(backend: Backend) {
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

pub(crate) async fn no_secret_is_stored_in_clear(backend: Backend) {
    let (database, store) = store_with_prod(backend).await;
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
                labels: BTreeMap::new(),
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

/// More hosts than the pool has connections enroll with one token at once (a fleet brought up
/// together): each waits its turn for the token's row, and none fails.
pub(crate) async fn many_hosts_enroll_at_once_with_one_token(backend: Backend) {
    const HOSTS: u32 = 32;
    let (_database, store) = store_with_prod(backend).await;
    let token = issue_token(&store, "prod", HOSTS, 60_000).await;
    let mut enrollments = Vec::new();
    for index in 0..HOSTS {
        let store = store.clone();
        let (id, hash) = (token.id.clone(), token.secret_hash.clone());
        enrollments.push(tokio::spawn(async move {
            let new = NewHost {
                id: secrets::random_hex(8).unwrap(),
                name: format!("app-{index}"),
                advertise_address: "10.0.0.5".to_owned(),
                labels: BTreeMap::new(),
            };
            store.enroll_host(&id, &hash, new, &[]).await
        }));
    }
    for enrollment in enrollments {
        if let Err(error) = enrollment.await.unwrap() {
            panic!(
                "an enrollment failed: {}",
                muster_coordinator::error_chain(&error)
            );
        }
    }
    assert_eq!(store.list_hosts().await.unwrap().len(), HOSTS as usize);
    assert_eq!(store.list_join_tokens(None).await.unwrap()[0].uses, HOSTS);
    store.close().await;
}
