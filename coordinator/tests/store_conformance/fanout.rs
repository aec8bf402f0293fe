//! The fan-out over each database: a watch held through one coordinator is woken by a change
//! committed through another, by PostgreSQL's notifications or by the one shared poll, never by a
//! poll of its own.

use std::sync::Arc;
use std::time::Duration;

use muster_coordinator::fanout::{self, Fanout, Known, RECONCILE_INTERVAL};
use tokio_util::sync::CancellationToken;

use super::*;

pub(crate) async fn a_change_committed_through_one_coordinator_wakes_a_watch_held_by_another(
    backend: Backend,
) {
    let database = TestDatabase::create(backend).await;
    let first = open(&database).await;
    let second = Arc::new(open(&database).await);
    first
        .create_cluster(new_cluster("prod"), &actor())
        .await
        .unwrap();
    let host = enroll(&first, "prod", "app-1").await;
    let other = enroll(&first, "prod", "app-2").await;

    // The second coordinator's fan-out, with a stream of its own on each host.
    let fanout = Fanout::new();
    let mut watch = fanout.subscribe(&host.id);
    let mut other_watch = fanout.subscribe(&other.id);
    let shutdown = CancellationToken::new();
    let url = DatabaseUrl::parse(&database.url).unwrap();
    fanout::spawn(fanout.clone(), second.clone(), &url, shutdown.clone());
    // Its first full read brings what is there now.
    let mut generation = first.host_generation(&host.id).await.unwrap().unwrap();
    watch.receiver.changed().await.unwrap();
    assert_eq!(
        *watch.receiver.borrow_and_update(),
        Known::Generation(generation)
    );
    // The same read brings the other host's (it may land a moment later: hosts one by one).
    while *other_watch.receiver.borrow_and_update() == Known::Unknown {
        other_watch.receiver.changed().await.unwrap();
    }

    // Two changes through the first coordinator. The second must arrive well before the next
    // full read (RECONCILE_INTERVAL): only the notification, or the shared poll, can bring it.
    for drained in [true, false] {
        first
            .set_host_drained("app-1", drained, &actor())
            .await
            .unwrap();
        generation = first.host_generation(&host.id).await.unwrap().unwrap();
        let arrived = tokio::time::timeout(RECONCILE_INTERVAL * 2 / 3, async {
            loop {
                watch.receiver.changed().await.unwrap();
                if *watch.receiver.borrow_and_update() == Known::Generation(generation) {
                    return;
                }
            }
        })
        .await;
        assert!(
            arrived.is_ok(),
            "generation {generation} did not reach the other coordinator's watch"
        );
    }
    assert!(
        !other_watch.receiver.has_changed().unwrap(),
        "the other host's generation did not move; its stream was not woken"
    );

    // A host removed through the first coordinator ends its streams at the second. Removal is
    // seen by PostgreSQL's trigger at once, elsewhere by a full read (asked for here as the admin
    // API does after a removal).
    first.remove_host("app-1", true, &actor()).await.unwrap();
    fanout.reconcile_soon();
    let removed = tokio::time::timeout(Duration::from_secs(10), async {
        while *watch.receiver.borrow_and_update() != Known::Removed {
            watch.receiver.changed().await.unwrap();
        }
    })
    .await;
    assert!(
        removed.is_ok(),
        "the removal did not reach the other coordinator"
    );
    shutdown.cancel();
    first.close().await;
    second.close().await;
}
