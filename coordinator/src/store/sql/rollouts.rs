//! A cluster's rollouts when a server fails them: the strategy an operator sets, and the watch
//! that stops a rollout whose server missed its healthy deadline (paused with the reason, or
//! its server settings brought back).

use super::*;

/// What a cluster's current restart epoch was started for (`clusters.rollout_cause`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RolloutCause {
    /// A change of server settings (`muster configure server`, a cluster file).
    Settings,
    /// `muster rollout undo`.
    Undo,
    /// `auto_revert`, after a server missed its healthy deadline.
    Revert,
    /// `muster rollout restart`.
    Restart,
}

impl RolloutCause {
    pub(super) fn word(self) -> &'static str {
        match self {
            RolloutCause::Settings => "settings",
            RolloutCause::Undo => "undo",
            RolloutCause::Revert => "revert",
            RolloutCause::Restart => "restart",
        }
    }
}

/// A rollout about to start: why, and when (what a failing server's healthy deadline is then
/// measured from).
#[derive(Debug, Clone, Copy)]
pub(super) struct RolloutStart {
    pub(super) cause: RolloutCause,
    pub(super) at_ms: i64,
}

impl RolloutStart {
    /// One started now, for `cause`.
    pub(super) fn now(cause: RolloutCause) -> RolloutStart {
        RolloutStart {
            cause,
            at_ms: now_ms(),
        }
    }
}

/// A server that restarted into a rollout and has not been healthy since.
struct Stalled {
    cluster: String,
    server: String,
    host: String,
    since_ms: i64,
    /// Since when it has been healthy without a break (held for min_healthy_time).
    healthy_since: Option<i64>,
    /// Its cluster's healthy deadline and min_healthy_time.
    deadline_ms: i64,
    min_healthy_ms: i64,
    /// Its cluster's restart turn is paused.
    paused: bool,
    restart_epoch: u64,
    last_error: String,
    /// The server its cluster's scheduler points at.
    scheduler_target: String,
}

impl SqlStore {
    /// Sets cluster `name`'s rollout strategy; fields left `None` stay as they are.
    pub(super) async fn configure_rollout(
        &self,
        name: &str,
        change: RolloutChange,
        actor: &Actor,
    ) -> Result<RolloutConfigured, StoreError> {
        let mut transaction = self.begin_write().await?;
        let cluster = self.locked_cluster(&mut transaction, name).await?;
        let mut strategy = cluster.rollout_strategy;
        if let Some(seconds) = change.healthy_deadline_seconds {
            strategy.healthy_deadline_seconds = seconds;
        }
        if let Some(seconds) = change.min_healthy_time_seconds {
            strategy.min_healthy_time_seconds = seconds;
        }
        if let Some(revert) = change.auto_revert {
            strategy.auto_revert = revert;
        }
        if let Some(servers) = change.max_unavailable {
            strategy.max_unavailable = servers;
        }
        strategy
            .check()
            .map_err(|error| StoreError::Invalid(error.to_string()))?;
        if strategy == cluster.rollout_strategy {
            return Ok(RolloutConfigured {
                strategy,
                changed: false,
            });
        }
        let json = serde_json::to_string(&strategy)
            .map_err(|error| StoreError::Invalid(format!("rollout strategy: {error}")))?;
        sqlx::query(&self.sql("UPDATE clusters SET rollout_strategy = $1 WHERE id = $2"))
            .bind(json)
            .bind(&cluster.id)
            .run(&mut **transaction, "store a cluster's rollout strategy")
            .await?;
        self.insert_event(
            &mut transaction,
            "cluster.rollout-strategy",
            name,
            "",
            actor,
            &format!("rollout strategy now: {}", strategy.shown()),
        )
        .await?;
        transaction
            .commit("commit a cluster's rollout strategy")
            .await?;
        Ok(RolloutConfigured {
            strategy,
            changed: true,
        })
    }

    /// Stops each rollout (of a cluster whose restart turn is not paused) in which a server on a
    /// host that is up and not drained restarted and has not been healthy for longer than its
    /// cluster's healthy deadline. With `auto_revert`, and when the rollout is one of new server
    /// settings the server runs, the settings before it come back (only the servers that run
    /// the new ones restart again); else the turn is paused with the reason. Each cluster in its
    /// own transaction, under its lock, its facts read again there.
    pub(super) async fn stop_failed_rollouts(
        &self,
        now_ms: i64,
    ) -> Result<Vec<StoppedRollout>, StoreError> {
        let mut stopped = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        let late = |stalled: &Stalled| now_ms - stalled.since_ms > stalled.deadline_ms;
        let candidates = self.stalled_servers(&self.pool, None).await?;
        // A scheduler kept on its server while the server was out for its restart in the
        // rollout (`policy::scheduler_target`) moves once the server is late, paused or not.
        let mut replanned = std::collections::BTreeSet::new();
        for late_target in candidates
            .iter()
            .filter(|stalled| late(stalled) && stalled.scheduler_target == stalled.server)
        {
            if !replanned.insert(late_target.cluster.clone()) {
                continue;
            }
            let mut transaction = self.begin_write().await?;
            let cluster = self
                .locked_cluster(&mut transaction, &late_target.cluster)
                .await?;
            self.replan_cluster_at(&mut transaction, &cluster.id, &cluster.name, now_ms)
                .await?;
            transaction
                .commit("commit a scheduler moved off a late server")
                .await?;
        }
        for candidate in candidates {
            if candidate.paused || !late(&candidate) || seen.contains(&candidate.cluster) {
                continue;
            }
            seen.insert(candidate.cluster.clone());
            let mut transaction = self.begin_write().await?;
            let cluster = self
                .locked_cluster(&mut transaction, &candidate.cluster)
                .await?;
            if cluster.rollout_paused {
                continue;
            }
            let Some(stalled) = self
                .stalled_servers(&mut **transaction, Some(&cluster.name))
                .await?
                .into_iter()
                .find(late)
            else {
                continue;
            };
            let cause: Option<String> =
                sqlx::query(&self.sql("SELECT rollout_cause FROM clusters WHERE id = $1"))
                    .bind(&cluster.id)
                    .row(&mut **transaction, "read a cluster's rollout cause")
                    .await
                    .and_then(|row| long_text(&row, "rollout_cause"))?;
            let deadline =
                muster_proto::rollout::humanize(cluster.rollout_strategy.healthy_deadline_seconds);
            let waited = muster_proto::rollout::humanize(
                u32::try_from((now_ms - stalled.since_ms) / 1000).unwrap_or(u32::MAX),
            );
            let mut reason = match stalled.healthy_since {
                None => format!(
                    "{} on {} not healthy {waited} after it restarted into the rollout \
                     (healthy_deadline {deadline})",
                    stalled.server, stalled.host
                ),
                Some(since) => format!(
                    "{} on {} healthy for only {} of its min_healthy_time {} {waited} after it \
                     restarted into the rollout (healthy_deadline {deadline})",
                    stalled.server,
                    stalled.host,
                    muster_proto::rollout::humanize(
                        u32::try_from((now_ms - since) / 1000).unwrap_or(0)
                    ),
                    muster_proto::rollout::humanize(
                        u32::try_from(stalled.min_healthy_ms / 1000).unwrap_or(0)
                    ),
                ),
            };
            if !stalled.last_error.is_empty() {
                reason.push_str(&format!(": {}", stalled.last_error));
            }
            let revert = cluster.rollout_strategy.auto_revert
                && cause.as_deref() == Some(RolloutCause::Settings.word())
                && stalled.restart_epoch == cluster.restart_epoch;
            let actor = Actor("coordinator".to_owned());
            if revert {
                let previous = self
                    .previous_server_settings(&mut transaction, &cluster)
                    .await?;
                self.insert_event(
                    &mut transaction,
                    "cluster.rollout-reverted",
                    &cluster.name,
                    &stalled.host,
                    &actor,
                    &format!(
                        "rollout of server settings failed: {reason}; auto_revert brings back \
                         the settings before it"
                    ),
                )
                .await?;
                self.replace_server_settings(
                    &mut transaction,
                    &cluster,
                    previous,
                    &actor,
                    "server settings reverted (auto_revert), now",
                    RolloutStart {
                        cause: RolloutCause::Revert,
                        at_ms: now_ms,
                    },
                )
                .await?;
                sqlx::query(
                    &self.sql("UPDATE clusters SET rollout_revert_reason = $1 WHERE id = $2"),
                )
                .bind(&reason)
                .bind(&cluster.id)
                .run(&mut **transaction, "record why a rollout was reverted")
                .await?;
            } else {
                sqlx::query(&self.sql(
                    "UPDATE clusters SET rollout_paused = 1, rollout_pause_reason = $1
                     WHERE id = $2",
                ))
                .bind(&reason)
                .bind(&cluster.id)
                .run(&mut **transaction, "pause a failed rollout")
                .await?;
                self.bump(
                    &mut transaction,
                    &cluster.id,
                    policy::Change::Restarts { was_due: false },
                )
                .await?;
                self.insert_event(
                    &mut transaction,
                    "cluster.rollout-paused",
                    &cluster.name,
                    &stalled.host,
                    &actor,
                    &format!(
                        "restart turn paused: {reason}; no other server restarts until `muster \
                         rollout resume` (or `muster rollout undo`, then resume)"
                    ),
                )
                .await?;
            }
            transaction.commit("commit a stopped rollout").await?;
            stopped.push(StoppedRollout {
                cluster: cluster.name.clone(),
                reason,
                reverted: revert,
            });
        }
        Ok(stopped)
    }

    /// Lets each server that has been held healthy for its cluster's `min_healthy_time` since it
    /// restarted into a rollout back into rotation, and the next server's turn come. Returns
    /// them as `server on host` (cluster). Each in its own transaction, under its cluster's lock.
    pub(super) async fn release_held_servers(
        &self,
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut released = Vec::new();
        for held in self.stalled_servers(&self.pool, None).await? {
            let progress = policy::RolloutProgress {
                pending_since: Some(held.since_ms),
                healthy_since: held.healthy_since,
            };
            if !policy::rollout_held(progress, now_ms, held.min_healthy_ms) {
                continue;
            }
            let mut transaction = self.begin_write().await?;
            let cluster = self.locked_cluster(&mut transaction, &held.cluster).await?;
            // Only while it is as it was read: a report since may have changed it.
            let cleared = sqlx::query(&self.sql(
                "UPDATE component_status SET rollout_pending_since = NULL,
                     rollout_healthy_since = NULL
                 WHERE cluster_name = $1 AND role = 'server' AND name = $2
                     AND rollout_healthy_since = $3
                     AND host_id = (SELECT id FROM hosts WHERE name = $4)",
            ))
            .bind(&cluster.name)
            .bind(&held.server)
            .bind(held.healthy_since)
            .bind(&held.host)
            .run(&mut **transaction, "release a server held healthy")
            .await?
            .rows_affected();
            if cleared == 0 {
                continue;
            }
            self.bump(
                &mut transaction,
                &cluster.id,
                policy::Change::Restarts { was_due: true },
            )
            .await?;
            transaction.commit("commit a server held healthy").await?;
            released.push(format!(
                "{} on {} ({})",
                held.server, held.host, cluster.name
            ));
        }
        Ok(released)
    }

    /// Gives each server of `cluster` that has not been healthy since it restarted into a
    /// rollout a new healthy deadline from `now_ms`: a new rollout (a revert among them) or a
    /// resumed one is not failed for the time a server spent failing before it.
    pub(super) async fn restart_deadline_clocks(
        &self,
        transaction: &mut PoolConnection<Any>,
        cluster: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(&self.sql(
            "UPDATE component_status SET rollout_pending_since = $1
             WHERE cluster_name = $2 AND role = 'server' AND rollout_pending_since IS NOT NULL",
        ))
        .bind(now_ms)
        .bind(cluster)
        .run(&mut **transaction, "restart servers' healthy deadlines")
        .await
        .map(|_| ())
    }

    /// The servers (of `cluster`, or of every cluster) on hosts that are up and not drained that
    /// restarted into a rollout and are not through it (not healthy yet, or held healthy for
    /// min_healthy_time), the longest first.
    async fn stalled_servers(
        &self,
        executor: impl Executor<'_, Database = Any>,
        cluster: Option<&str>,
    ) -> Result<Vec<Stalled>, StoreError> {
        let sql = self.sql(
            "SELECT c.name AS cluster_name, s.name, h.name AS host_name, s.rollout_pending_since,
                 s.rollout_healthy_since, s.restart_epoch, s.last_error, c.rollout_strategy,
                 c.rollout_paused, c.scheduler_target
             FROM component_status s
             JOIN clusters c ON c.name = s.cluster_name
             JOIN hosts h ON h.id = s.host_id
             JOIN assignments a ON a.cluster_id = c.id AND a.host_name = h.name
                 AND a.role = 'server' AND a.name = s.name
             WHERE s.role = 'server' AND s.rollout_pending_since IS NOT NULL
                 AND h.state = 'up' AND h.drained = 0
                 AND ($1 = '' OR c.name = $2)
             ORDER BY s.rollout_pending_since, c.name, s.name",
        );
        let cluster = cluster.unwrap_or_default();
        sqlx::query(&sql)
            .bind(cluster)
            .bind(cluster)
            .rows(executor, "read servers that restarted into a rollout")
            .await?
            .iter()
            .map(|row| {
                let strategy = rollout_strategy(row)?;
                Ok(Stalled {
                    deadline_ms: i64::from(strategy.healthy_deadline_seconds) * 1000,
                    min_healthy_ms: i64::from(strategy.min_healthy_time_seconds) * 1000,
                    paused: row.value::<i64>("rollout_paused")? != 0,
                    healthy_since: row.value("rollout_healthy_since")?,
                    cluster: row.value("cluster_name")?,
                    server: row.value("name")?,
                    host: row.value("host_name")?,
                    since_ms: row.value("rollout_pending_since")?,
                    restart_epoch: epoch_from(row.value("restart_epoch")?)?,
                    last_error: row.value("last_error")?,
                    scheduler_target: row.value("scheduler_target")?,
                })
            })
            .collect()
    }
}
