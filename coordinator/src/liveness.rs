//! Cheap heartbeats: a report identical to the one this coordinator last recorded for the host is
//! answered from memory, and the host's liveness (`last_seen_at`) is written for every such host at
//! once, every [`FLUSH_INTERVAL`], in one transaction.
//!
//! The durability choice: the acknowledgement of an unchanged heartbeat does not wait for the
//! database. Liveness is the one fact that may be lost in a crash, for at most one interval: the
//! hosts' next heartbeats rewrite it, and the down sweeper's TTL (15 s by default) is far longer.
//! Everything a report changes (a component's state, the applied generation, a host coming up)
//! still goes through the store's write transaction before the reply.
//!
//! What keeps the memory honest:
//! - an entry is only trusted for [`TRUST_FOR`]; then the report is compared with the database
//!   again (reads only, when nothing changed);
//! - a host whose liveness write finds it not up (marked down meanwhile, or removed) is forgotten,
//!   so its next heartbeat records it coming up, or is refused;
//! - a host that opens a watch here is forgotten: it may have reported through another
//!   coordinator in between.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// How often the liveness of hosts with unchanged reports is written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// How long a remembered report stands for what the database holds.
const TRUST_FOR: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Liveness {
    /// The fingerprint of the report last recorded per host, and when.
    recorded: Mutex<HashMap<String, (u64, Instant)>>,
    /// Hosts seen since the last flush, with the time (ms) they were last seen.
    seen: Mutex<HashMap<String, i64>>,
}

/// A report's fingerprint: equal reports have equal ones (within one process).
pub fn fingerprint(report: &impl prost::Message) -> u64 {
    let mut hasher = DefaultHasher::new();
    report.encode_to_vec().hash(&mut hasher);
    hasher.finish()
}

impl Liveness {
    pub fn new() -> Arc<Self> {
        Arc::new(Liveness::default())
    }

    /// Whether `fingerprint` is the report last recorded for the host, recently enough.
    pub fn unchanged(&self, host_id: &str, fingerprint: u64) -> bool {
        let recorded = self
            .recorded
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        recorded
            .get(host_id)
            .is_some_and(|(known, at)| *known == fingerprint && at.elapsed() < TRUST_FOR)
    }

    /// Remembers that the host's report with `fingerprint` is what the database holds.
    pub fn recorded(&self, host_id: &str, fingerprint: u64) {
        self.recorded
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(host_id.to_owned(), (fingerprint, Instant::now()));
    }

    pub fn forget(&self, host_id: &str) {
        self.recorded
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .remove(host_id);
    }

    /// Queues the host's liveness for the next flush.
    pub fn seen(&self, host_id: &str, at_ms: i64) {
        self.seen
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .insert(host_id.to_owned(), at_ms);
    }

    /// Writes the queued liveness; a host it finds not up is forgotten. On a database error the
    /// batch is queued again (newer times win), so nothing is lost while the database is away.
    pub async fn flush(&self, store: &dyn Store) -> Result<usize, crate::store::StoreError> {
        let batch: Vec<(String, i64)> = std::mem::take(
            &mut *self
                .seen
                .lock()
                .unwrap_or_else(|poison| poison.into_inner()),
        )
        .into_iter()
        .collect();
        if batch.is_empty() {
            return Ok(0);
        }
        match store.record_liveness(&batch).await {
            Ok(not_up) => {
                for host_id in not_up {
                    self.forget(&host_id);
                }
                Ok(batch.len())
            }
            Err(error) => {
                let mut seen = self
                    .seen
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner());
                for (host_id, at) in batch {
                    let entry = seen.entry(host_id).or_insert(at);
                    *entry = (*entry).max(at);
                }
                Err(error)
            }
        }
    }

    /// Flushes every [`FLUSH_INTERVAL`], and once more at shutdown.
    pub fn spawn_flusher(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(FLUSH_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                let stopping = tokio::select! {
                    _ = ticks.tick() => false,
                    () = shutdown.cancelled() => true,
                };
                match self.flush(store.as_ref()).await {
                    Ok(_) => failing = false,
                    Err(error) if !failing => {
                        tracing::warn!(error = %crate::error_chain(&error), "cannot record hosts' heartbeats; keeping them for the next try");
                        failing = true;
                    }
                    Err(_) => {}
                }
                if stopping {
                    return;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_is_unchanged_only_against_the_one_recorded_for_its_host() {
        let liveness = Liveness::new();
        assert!(!liveness.unchanged("a", 1), "nothing recorded yet");
        liveness.recorded("a", 1);
        assert!(liveness.unchanged("a", 1));
        assert!(!liveness.unchanged("a", 2), "another report");
        assert!(!liveness.unchanged("b", 1), "another host");
        liveness.forget("a");
        assert!(!liveness.unchanged("a", 1));
    }

    #[test]
    fn equal_reports_have_equal_fingerprints() {
        let report = |generation| muster_proto::v1::ReportStatusRequest {
            applied_generation: generation,
            ..Default::default()
        };
        assert_eq!(fingerprint(&report(3)), fingerprint(&report(3)));
        assert_ne!(fingerprint(&report(3)), fingerprint(&report(4)));
    }
}
