//! Delivery of desired-state changes to the watch streams a coordinator holds, without polling per
//! stream.
//!
//! One [`Fanout`] per coordinator keeps, for each host with a watch open here, the newest
//! generation it knows (a `tokio::sync::watch` channel per host): only the streams of hosts whose
//! generation moved are woken. What moves it:
//!
//! - this coordinator's own commits: the API calls [`Fanout::committed`] after a write, and one
//!   refresher task runs one indexed query for every host whose generation changed recently
//!   (`hosts.generation_changed_at`);
//! - another coordinator's commits: on PostgreSQL a trigger sends `NOTIFY muster_generation` with
//!   the host and its generation, which every coordinator `LISTEN`s to; SQLite (one coordinator)
//!   and MySQL (no notifications) are covered by the same one query, run every
//!   [`SHARED_POLL_INTERVAL`] for the whole coordinator instead of 4 times a second per stream;
//! - a full read of every host's generation every [`RECONCILE_INTERVAL`], after the PostgreSQL
//!   listener reconnects, and after a host is removed here: it catches removals, which the recent
//!   changes cannot show, and anything a clock step made the recent-changes window miss.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::store::{DatabaseUrl, Store, now_ms};

/// How often a coordinator without database notifications reads the recently changed generations.
pub const SHARED_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How often every host's generation is read in full, whatever else woke the refresher.
pub const RECONCILE_INTERVAL: Duration = Duration::from_secs(30);
/// How far back "recently changed" reaches before the previous read: longer than any write
/// transaction (whose timestamp is taken before it commits) and than the clock skew between
/// coordinators. A change read twice wakes nobody twice: a stream is woken only by a new value.
const CHANGE_WINDOW_MS: i64 = 10_000;
/// The PostgreSQL channel the `hosts` trigger notifies (see the PostgreSQL migration 0006).
const CHANNEL: &str = "muster_generation";

/// What a coordinator knows of one watched host's generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Known {
    /// Not read yet.
    Unknown,
    Generation(u64),
    /// The host was removed: its streams end.
    Removed,
}

#[derive(Default)]
pub struct Fanout {
    hosts: Mutex<HashMap<String, watch::Sender<Known>>>,
    /// A commit here may have moved generations.
    committed: Notify,
    /// Every host's generation should be read in full.
    reconcile: Notify,
}

/// One watch stream's view of its host; dropping it forgets the host once no stream watches it.
pub struct Subscription {
    fanout: Arc<Fanout>,
    host_id: String,
    pub receiver: watch::Receiver<Known>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut hosts = self
            .fanout
            .hosts
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        // This subscription's receiver still counts; the last one leaves a count of 1.
        if hosts
            .get(&self.host_id)
            .is_some_and(|sender| sender.receiver_count() <= 1)
        {
            hosts.remove(&self.host_id);
        }
    }
}

impl Fanout {
    pub fn new() -> Arc<Self> {
        Arc::new(Fanout::default())
    }

    /// Watches `host_id`'s generation.
    pub fn subscribe(self: &Arc<Self>, host_id: &str) -> Subscription {
        let mut hosts = self
            .hosts
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let receiver = hosts
            .entry(host_id.to_owned())
            .or_insert_with(|| watch::channel(Known::Unknown).0)
            .subscribe();
        Subscription {
            fanout: self.clone(),
            host_id: host_id.to_owned(),
            receiver,
        }
    }

    /// Records what is known of a watched host; wakes its streams only when that moved. A
    /// generation never goes back (an old notification arriving late changes nothing), and a
    /// removed host stays removed.
    pub fn observe(&self, host_id: &str, known: Known) {
        let hosts = self
            .hosts
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(sender) = hosts.get(host_id) {
            sender.send_if_modified(|current| {
                let newer = match (*current, known) {
                    (Known::Removed, _) | (_, Known::Unknown) => false,
                    (Known::Generation(old), Known::Generation(new)) => new > old,
                    (Known::Unknown, _) | (Known::Generation(_), Known::Removed) => true,
                };
                if newer {
                    *current = known;
                }
                newer
            });
        }
    }

    /// What this coordinator knows of the host, when a stream here watches it.
    pub fn known(&self, host_id: &str) -> Known {
        let hosts = self
            .hosts
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        hosts
            .get(host_id)
            .map_or(Known::Unknown, |sender| *sender.borrow())
    }

    /// The number of hosts with a watch open here.
    pub fn watched(&self) -> usize {
        self.hosts
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .len()
    }

    /// Says that a write committed here may have moved generations.
    pub fn committed(&self) {
        self.committed.notify_one();
    }

    /// Whether [`Fanout::committed`] was called since the refresher (or this) last looked; takes
    /// the call.
    #[cfg(test)]
    pub(crate) fn take_committed(&self) -> bool {
        let notified = std::pin::pin!(self.committed.notified());
        notified
            .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
            .is_ready()
    }

    /// Asks for every host's generation to be read in full (after a host was removed here).
    pub fn reconcile_soon(&self) {
        self.reconcile.notify_one();
    }

    /// Applies one read of generations; `full` when it holds every host, so that a watched host
    /// missing from it was removed.
    fn apply(&self, generations: &[(String, u64)], full: bool) {
        for (host_id, generation) in generations {
            self.observe(host_id, Known::Generation(*generation));
        }
        if full {
            let present: HashSet<&str> = generations.iter().map(|(id, _)| id.as_str()).collect();
            let watched: Vec<String> = self
                .hosts
                .lock()
                .unwrap_or_else(|poison| poison.into_inner())
                .keys()
                .filter(|id| !present.contains(id.as_str()))
                .cloned()
                .collect();
            for host_id in watched {
                self.observe(&host_id, Known::Removed);
            }
        }
    }
}

/// Starts the refresher (and, on PostgreSQL, the listener) that keep `fanout` current.
pub fn spawn(
    fanout: Arc<Fanout>,
    store: Arc<dyn Store>,
    url: &DatabaseUrl,
    shutdown: CancellationToken,
) {
    let notifications = url.dialect() == crate::store::Dialect::Postgres;
    if notifications {
        tokio::spawn(listen(
            fanout.clone(),
            url.expose().to_owned(),
            shutdown.clone(),
        ));
    }
    let poll = (!notifications).then_some(SHARED_POLL_INTERVAL);
    tokio::spawn(refresh(fanout, store, poll, shutdown));
}

async fn refresh(
    fanout: Arc<Fanout>,
    store: Arc<dyn Store>,
    poll: Option<Duration>,
    shutdown: CancellationToken,
) {
    let mut since = now_ms() - CHANGE_WINDOW_MS;
    let mut reconcile = tokio::time::interval(RECONCILE_INTERVAL);
    reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        let polled = async {
            match poll {
                Some(interval) => tokio::time::sleep(interval).await,
                None => std::future::pending().await,
            }
        };
        // Every arm only waits; a notification that arrives while a read runs is kept by
        // `Notify` for the next turn.
        let full = tokio::select! {
            () = fanout.committed.notified() => false,
            () = polled => false,
            () = fanout.reconcile.notified() => true,
            _ = reconcile.tick() => true,
            () = shutdown.cancelled() => return,
        };
        if fanout.watched() == 0 {
            continue;
        }
        let started = now_ms();
        match store.host_generations((!full).then_some(since)).await {
            Ok(generations) => {
                fanout.apply(&generations, full);
                since = started - CHANGE_WINDOW_MS;
                failing = false;
            }
            Err(error) => {
                if !failing {
                    tracing::warn!(error = %crate::error_chain(&error), "cannot read hosts' generations; watch streams wait for the next read");
                }
                failing = true;
                // Read everything once the database answers again.
                fanout.reconcile_soon();
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Follows PostgreSQL's `muster_generation` notifications. After every (re)connection a full read
/// covers what was committed while no connection listened.
async fn listen(fanout: Arc<Fanout>, url: String, shutdown: CancellationToken) {
    let mut attempt = 0u32;
    loop {
        let connected = async {
            let mut listener = sqlx::postgres::PgListener::connect(&url).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let listener = tokio::select! {
            connected = connected => connected,
            () = shutdown.cancelled() => return,
        };
        let mut listener = match listener {
            Ok(listener) => listener,
            Err(error) => {
                attempt += 1;
                if attempt == 1 || attempt.is_multiple_of(30) {
                    tracing::warn!(error = %error, attempt, "cannot listen for other coordinators' changes; retrying (changes committed through them wait for the periodic read)");
                }
                let delay = muster_proto::daemon::backoff(
                    attempt,
                    Duration::from_millis(200),
                    Duration::from_secs(10),
                );
                tokio::select! {
                    () = tokio::time::sleep(delay) => continue,
                    () = shutdown.cancelled() => return,
                }
            }
        };
        attempt = 0;
        fanout.reconcile_soon();
        loop {
            // Cancel-safe: `try_recv` only waits for the next notification.
            let received = tokio::select! {
                received = listener.try_recv() => received,
                () = shutdown.cancelled() => return,
            };
            match received {
                Ok(Some(notification)) => {
                    if let Some((host_id, known)) = parse(notification.payload()) {
                        fanout.observe(host_id, known);
                    }
                }
                // The connection was lost; the next `try_recv` reconnects. Notifications sent
                // meanwhile are lost, so read everything.
                Ok(None) => fanout.reconcile_soon(),
                Err(error) => {
                    tracing::warn!(error = %error, "lost the listener for other coordinators' changes; reconnecting");
                    break;
                }
            }
        }
    }
}

/// Reads a `muster_generation` payload: "host id:generation", or "host id:" for a removed host.
fn parse(payload: &str) -> Option<(&str, Known)> {
    let (host_id, generation) = payload.split_once(':')?;
    if generation.is_empty() {
        return Some((host_id, Known::Removed));
    }
    Some((host_id, Known::Generation(generation.parse().ok()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_the_streams_of_the_host_whose_generation_moved_are_woken() {
        let fanout = Fanout::new();
        let mut first = fanout.subscribe("a");
        let mut second = fanout.subscribe("b");
        fanout.apply(&[("a".into(), 3), ("b".into(), 7)], false);
        assert!(first.receiver.has_changed().unwrap());
        assert!(second.receiver.has_changed().unwrap());
        first.receiver.borrow_and_update();
        second.receiver.borrow_and_update();

        fanout.apply(&[("a".into(), 4), ("b".into(), 7)], false);
        assert_eq!(*first.receiver.borrow(), Known::Generation(4));
        assert!(first.receiver.has_changed().unwrap());
        assert!(!second.receiver.has_changed().unwrap(), "b did not move");
    }

    #[tokio::test]
    async fn a_late_notification_never_moves_a_generation_back() {
        let fanout = Fanout::new();
        let mut watch = fanout.subscribe("a");
        fanout.observe("a", Known::Generation(5));
        watch.receiver.borrow_and_update();
        fanout.observe("a", Known::Generation(4));
        assert!(!watch.receiver.has_changed().unwrap());
        assert_eq!(fanout.known("a"), Known::Generation(5));
    }

    #[tokio::test]
    async fn a_full_read_without_a_watched_host_ends_its_streams() {
        let fanout = Fanout::new();
        let gone = fanout.subscribe("gone");
        let kept = fanout.subscribe("kept");
        fanout.apply(&[("kept".into(), 2)], true);
        assert_eq!(*gone.receiver.borrow(), Known::Removed);
        assert_eq!(*kept.receiver.borrow(), Known::Generation(2));
        // A removed host stays removed, whatever arrives later.
        fanout.observe("gone", Known::Generation(9));
        assert_eq!(*gone.receiver.borrow(), Known::Removed);
    }

    #[tokio::test]
    async fn a_host_is_forgotten_when_its_last_stream_ends() {
        let fanout = Fanout::new();
        let first = fanout.subscribe("a");
        let second = fanout.subscribe("a");
        assert_eq!(fanout.watched(), 1);
        drop(first);
        assert_eq!(fanout.watched(), 1, "one stream still watches");
        drop(second);
        assert_eq!(fanout.watched(), 0);
        // A host nobody watches is not tracked.
        fanout.observe("a", Known::Generation(1));
        assert_eq!(fanout.known("a"), Known::Unknown);
    }

    #[test]
    fn notification_payloads_are_read_and_bad_ones_ignored() {
        assert_eq!(parse("abc:12"), Some(("abc", Known::Generation(12))));
        assert_eq!(parse("abc:"), Some(("abc", Known::Removed)));
        assert_eq!(parse("abc"), None);
        assert_eq!(parse("abc:x"), None);
    }
}
