//! What hosts report (component status, HAProxy's backends, bootstrap tasks), the re-planning
//! it causes, and the facts the planner renders a host's desired state from.

use super::*;

/// The most events of one host's reports recorded in a minute.
pub const MAX_HOST_EVENTS_PER_MINUTE: usize = 60;

impl SqlStore {
    /// `report` without the components that are not assigned to host `host_id`, and their names:
    /// a host reports only for its own components (one host must not write status and events
    /// into clusters it has nothing of).
    async fn only_assigned(
        &self,
        host_id: &str,
        mut report: StatusReport,
    ) -> Result<(StatusReport, Vec<String>), StoreError> {
        let sql = self.sql(
            "SELECT c.name AS cluster_name, a.role, a.name
             FROM assignments a JOIN clusters c ON c.id = a.cluster_id
             JOIN hosts h ON h.name = a.host_name WHERE h.id = $1",
        );
        let rows = sqlx::query(&sql)
            .bind(host_id)
            .rows(&self.pool, "read a host's assignments")
            .await?;
        let mut assigned = std::collections::BTreeSet::new();
        for row in &rows {
            assigned.insert((
                row.value::<String>("cluster_name")?,
                role_from(&row.value::<String>("role")?)?,
                row.value::<String>("name")?,
            ));
        }
        let mut ignored = Vec::new();
        report.components.retain(|component| {
            let key = (
                component.cluster.clone(),
                component.role,
                component.name.clone(),
            );
            let mine = assigned.contains(&key);
            if !mine {
                ignored.push(format!(
                    "{} {} of cluster {}",
                    component.role, component.name, component.cluster
                ));
            }
            mine
        });
        Ok((report, ignored))
    }

    pub(super) async fn record_status(
        &self,
        host_id: &str,
        report: StatusReport,
    ) -> Result<StatusRecorded, StoreError> {
        // The steady state (the same report every few seconds from every host) is only read: the
        // write transaction below is for reports that change something. (A report equal to what
        // is stored holds only the host's own components: what is stored was filtered so.)
        if let Some(generation) = self.status_unchanged(host_id, &report).await? {
            return Ok(StatusRecorded {
                desired_generation: generation,
                written: false,
                ignored: Vec::new(),
            });
        }
        let (report, ignored) = self.only_assigned(host_id, report).await?;
        let now = now_ms();
        let mut transaction = self.begin_write().await?;
        let host = self
            .host_in(&mut **transaction, "id", host_id)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "host",
                name: host_id.to_owned(),
            })?;
        let actor = Actor(format!("host:{}", host.name));
        self.lock_clusters_of_host(&mut transaction, &host.name)
            .await?;
        // Whether this report brings the host up is decided by the row it changes, not by the
        // read above: two reports in flight at once (an agent back from a partition) must not
        // both record `host.up`. The database's row lock makes the second wait and find it up.
        let came_up_sql = self.sql("UPDATE hosts SET state = 'up' WHERE id = $1 AND state <> 'up'");
        let came_up = sqlx::query(&came_up_sql)
            .bind(host_id)
            .run(&mut **transaction, "record a heartbeat")
            .await?
            .rows_affected()
            == 1;
        let sql = self.sql(
            "UPDATE hosts SET last_seen_at = $1, applied_generation = $2,
                 advertise_address = $3, heartbeat_interval_ms = $4, zato_installs = $5
                 WHERE id = $6",
        );
        sqlx::query(&sql)
            .bind(now)
            .bind(i64::try_from(report.applied_generation).unwrap_or(i64::MAX))
            .bind(&report.advertise_address)
            .bind(i64::from(report.heartbeat_interval_ms))
            .bind(report.zato_installs.join(","))
            .bind(host_id)
            .run(&mut **transaction, "record a heartbeat")
            .await?;
        if host.advertise_address != report.advertise_address {
            for (cluster_id, _) in self
                .host_clusters(&mut transaction, &host.name, None)
                .await?
            {
                self.bump(&mut transaction, &cluster_id, policy::Change::Cluster)
                    .await?;
            }
        }
        let happened = policy::host_report_events(
            came_up,
            host.last_seen_ms,
            now,
            &host.advertise_address,
            &report.advertise_address,
        );
        for event in happened {
            self.insert_event(
                &mut transaction,
                event.kind,
                "",
                &host.name,
                &actor,
                &event.message,
            )
            .await?;
        }

        let previous = self.stored_components(&mut **transaction, host_id).await?;
        let mut health_changed = previous.len() != report.components.len();
        // What the reported components change for their clusters' other hosts
        // (`policy::report_changes`), bumped once the whole report is recorded.
        let mut report_changes = std::collections::BTreeSet::new();
        // Each cluster's restart goal and min_healthy_time, read once per report.
        let mut restart_goals = BTreeMap::new();
        let previous_backends = self
            .replace_backend_states(&mut transaction, host_id, &report)
            .await?;
        let mut component_events = Vec::new();
        let progress_before = self.rollout_progress(&mut transaction, host_id).await?;
        let delete = self.sql("DELETE FROM component_status WHERE host_id = $1");
        sqlx::query(&delete)
            .bind(host_id)
            .run(&mut **transaction, "replace component status")
            .await?;
        for component in &report.components {
            let insert = self.sql(
                "INSERT INTO component_status (host_id, cluster_name, role, name, state, healthy,
                     last_error, restarts, updated_at, services_revision, config_revision,
                     python_revision, python_installed, user_conf_revision, odb_epoch, odb_empty,
                     restart_epoch, rollout_pending_since, rollout_healthy_since, rolls)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                     $17, $18, $19, $20)",
            );
            let (key, now_report) = reported_component(component);
            let before = previous.get(&key);
            let goal = self
                .restart_goal_of(&mut transaction, &mut restart_goals, &component.cluster)
                .await;
            let progress_was = progress_before.get(&key).copied().unwrap_or_default();
            let progress = policy::rollout_progress(
                component.role,
                before,
                progress_was,
                &now_report,
                now,
                goal.min_healthy_ms,
            );
            // Held healthy (min_healthy_time), it is out of its load balancers' rotation, and
            // the next server's turn waits.
            if progress.healthy_since.is_some() != progress_was.healthy_since.is_some() {
                report_changes.insert((
                    component.cluster.clone(),
                    policy::Change::Restarts { was_due: true },
                ));
            }
            sqlx::query(&insert)
                .bind(host_id)
                .bind(&component.cluster)
                .bind(component.role.cli_name())
                .bind(&component.name)
                .bind(component.state.word())
                .bind(i64::from(component.healthy))
                .bind(&component.last_error)
                .bind(i64::from(component.restarts))
                .bind(now)
                .bind(&component.services_revision)
                .bind(&component.config_revision)
                .bind(&component.python_revision)
                .bind(&component.python_installed)
                .bind(&component.user_conf_revision)
                .bind(i64::try_from(component.odb_epoch).unwrap_or(i64::MAX))
                .bind(i64::from(component.odb_empty))
                .bind(i64::try_from(component.restart_epoch).unwrap_or(i64::MAX))
                .bind(progress.pending_since)
                .bind(progress.healthy_since)
                .bind(i64::from(component.rolls))
                .run(&mut **transaction, "record component status")
                .await?;
            // The importing server imported the current configuration: what it was to delete
            // with it is deleted.
            if component.role == Role::Server
                && !component.config_revision.is_empty()
                && before.is_none_or(|before| before.config_revision != component.config_revision)
            {
                sqlx::query(&self.sql(
                    "UPDATE clusters SET config_removals = NULL \
                     WHERE name = $1 AND config_revision = $2 AND config_removals IS NOT NULL",
                ))
                .bind(&component.cluster)
                .bind(&component.config_revision)
                .run(
                    &mut **transaction,
                    "clear a cluster's configuration removals",
                )
                .await?;
            }
            // A server's health counts for the cluster's plans only under the current ODB
            // generation (`replan_cluster`).
            health_changed |= before.is_none_or(|before| {
                before.healthy != component.healthy
                    || before.odb_epoch != component.odb_epoch
                    || (component.role == Role::Server
                        && before.services_revision != component.services_revision)
            });
            let backends_changed = component.role == Role::LoadBalancer && {
                let backends_before = previous_backends
                    .get(&(component.cluster.clone(), component.name.clone()))
                    .cloned()
                    .unwrap_or_default();
                let mut backends_now: Vec<(String, String)> = component
                    .backends
                    .iter()
                    .map(|backend| (backend.name.clone(), backend.state.clone()))
                    .collect();
                backends_now.sort();
                backends_before != backends_now
            };
            let goal = goal.restart_goal();
            for change in policy::report_changes(
                component.role,
                before,
                Some(&now_report),
                backends_changed,
                goal,
            ) {
                report_changes.insert((component.cluster.clone(), change));
            }
            let label = format!("{} {}", component.role, component.name);
            for event in policy::component_report_events(&label, before, &now_report) {
                component_events.push((component.cluster.clone(), event));
            }
        }
        // At most MAX_HOST_EVENTS_PER_MINUTE events of a host are recorded a minute: a host
        // that flaps (or lies) cannot flood the log; the report itself is recorded whole.
        if !component_events.is_empty() {
            let recent = self
                .recent_host_events(&mut transaction, &host.name, None, now - 60_000)
                .await?;
            let room = MAX_HOST_EVENTS_PER_MINUTE
                .saturating_sub(recent)
                .min(component_events.len());
            let dropped = component_events.len() - room;
            for (cluster, event) in component_events.into_iter().take(room) {
                self.insert_event(
                    &mut transaction,
                    event.kind,
                    &cluster,
                    &host.name,
                    &actor,
                    &event.message,
                )
                .await?;
            }
            // One notice a minute, beyond the limit.
            if dropped > 0
                && self
                    .recent_host_events(
                        &mut transaction,
                        &host.name,
                        Some("host.events-limited"),
                        now - 60_000,
                    )
                    .await?
                    == 0
            {
                tracing::warn!(host = %host.name, dropped, "host events limited");
                self.insert_event(
                    &mut transaction,
                    "host.events-limited",
                    "",
                    &host.name,
                    &actor,
                    &format!(
                        "more than {MAX_HOST_EVENTS_PER_MINUTE} events of this host in a minute: \
                         {dropped} (and any more this minute) not recorded"
                    ),
                )
                .await?;
            }
        }

        for task in &report.bootstrap {
            let sql = self.sql(
                "SELECT b.cluster_id, b.host_name, b.done, b.last_error FROM bootstrap_tasks b
                 JOIN clusters c ON c.id = b.cluster_id WHERE c.name = $1 AND b.task = $2",
            );
            let Some(row) = sqlx::query(&sql)
                .bind(&task.cluster)
                .bind(task.task.as_str())
                .optional_row(&mut **transaction, "read a bootstrap task")
                .await?
            else {
                continue;
            };
            let cluster_id: String = row.value("cluster_id")?;
            let assigned_to: String = row.value("host_name")?;
            let was_done = row.value::<i64>("done")? != 0;
            let old_error: String = row.value("last_error")?;
            let outcome = policy::bootstrap_report_outcome(
                task.task.as_str(),
                &assigned_to,
                &host.name,
                was_done,
                &old_error,
                task,
            );
            let event = match outcome {
                None => continue,
                Some(policy::BootstrapOutcome::Done(event)) => {
                    let sql = self.sql(
                        "UPDATE bootstrap_tasks SET done = 1, last_error = '', updated_at = $1
                         WHERE cluster_id = $2 AND task = $3 AND done = 0",
                    );
                    let updated = sqlx::query(&sql)
                        .bind(now)
                        .bind(&cluster_id)
                        .bind(task.task.as_str())
                        .run(&mut **transaction, "record a bootstrap task")
                        .await?;
                    if updated.rows_affected() != 1 {
                        continue;
                    }
                    self.bump(&mut transaction, &cluster_id, policy::Change::Cluster)
                        .await?;
                    event
                }
                Some(policy::BootstrapOutcome::Failed(event)) => {
                    let sql = self.sql(
                        "UPDATE bootstrap_tasks SET last_error = $1, updated_at = $2
                         WHERE cluster_id = $3 AND task = $4",
                    );
                    sqlx::query(&sql)
                        .bind(&task.last_error)
                        .bind(now)
                        .bind(&cluster_id)
                        .bind(task.task.as_str())
                        .run(&mut **transaction, "record a bootstrap task")
                        .await?;
                    event
                }
            };
            self.insert_event(
                &mut transaction,
                event.kind,
                &task.cluster,
                &host.name,
                &actor,
                &event.message,
            )
            .await?;
        }
        // The scheduler's choice depends on whether hosts are up and servers healthy; a report
        // that changed neither leaves it as it is.
        if came_up || health_changed {
            self.replan_host_clusters(&mut transaction, &host.name)
                .await?;
        }
        if came_up {
            for (cluster_id, _) in self
                .host_clusters(&mut transaction, &host.name, None)
                .await?
            {
                self.bump(&mut transaction, &cluster_id, policy::Change::HostState)
                    .await?;
            }
        }
        // A component its host reports no more changes what it changed.
        for ((cluster, role, name), before) in &previous {
            let reported = report.components.iter().any(|component| {
                &component.cluster == cluster
                    && component.role.cli_name() == role
                    && &component.name == name
            });
            if reported {
                continue;
            }
            let goal = self
                .restart_goal_of(&mut transaction, &mut restart_goals, cluster)
                .await;
            let goal = goal.restart_goal();
            for change in policy::report_changes(role_from(role)?, Some(before), None, true, goal) {
                report_changes.insert((cluster.clone(), change));
            }
        }
        for (cluster, change) in report_changes {
            self.bump_named(&mut transaction, &cluster, change).await?;
        }
        let generation = self
            .host_in(&mut **transaction, "id", host_id)
            .await?
            .map(|host| host.generation)
            .unwrap_or(host.generation);
        transaction.commit("commit a heartbeat").await?;
        Ok(StatusRecorded {
            desired_generation: generation,
            written: true,
            ignored,
        })
    }

    /// The host's generation when `report` changes nothing the store holds: the host is up, at
    /// the same applied generation and address, its components and backends exactly as stored,
    /// and it reports no bootstrap task. `None` when the report must be written (or the host does
    /// not exist, which the write path reports).
    async fn status_unchanged(
        &self,
        host_id: &str,
        report: &StatusReport,
    ) -> Result<Option<u64>, StoreError> {
        if !report.bootstrap.is_empty() {
            return Ok(None);
        }
        let Some(host) = self.host_in(&self.pool, "id", host_id).await? else {
            return Ok(None);
        };
        if host.state != HostState::Up
            || host.applied_generation != report.applied_generation
            || host.advertise_address != report.advertise_address
            || host.heartbeat_interval_ms != report.heartbeat_interval_ms
            || host.zato_installs != report.zato_installs
        {
            return Ok(None);
        }
        let reported: BTreeMap<_, _> = report.components.iter().map(reported_component).collect();
        if self.stored_components(&self.pool, host_id).await? != reported {
            return Ok(None);
        }
        let sql = self.sql(
            "SELECT cluster_name, lb_name, server_name, address, state, check_result, sessions
             FROM backend_status WHERE host_id = $1",
        );
        let mut stored = Vec::new();
        for row in sqlx::query(&sql)
            .bind(host_id)
            .rows(&self.pool, "read backend states")
            .await?
        {
            stored.push((
                row.value::<String>("cluster_name")?,
                row.value::<String>("lb_name")?,
                row.value::<String>("server_name")?,
                row.value::<String>("address")?,
                row.value::<String>("state")?,
                row.value::<String>("check_result")?,
                row.value::<i64>("sessions")?,
            ));
        }
        let mut reported = Vec::new();
        for component in &report.components {
            for backend in &component.backends {
                reported.push((
                    component.cluster.clone(),
                    component.name.clone(),
                    backend.name.clone(),
                    backend.address.clone(),
                    backend.state.clone(),
                    backend.check.clone(),
                    i64::from(backend.sessions),
                ));
            }
        }
        stored.sort();
        reported.sort();
        Ok((stored == reported).then_some(host.generation))
    }

    /// Where each of the host's servers in a rollout stands ([`policy::rollout_progress`]), by
    /// (cluster, role, name).
    async fn rollout_progress(
        &self,
        transaction: &mut PoolConnection<Any>,
        host_id: &str,
    ) -> Result<BTreeMap<(String, String, String), policy::RolloutProgress>, StoreError> {
        let sql = self.sql(
            "SELECT cluster_name, role, name, rollout_pending_since, rollout_healthy_since
             FROM component_status WHERE host_id = $1 AND rollout_pending_since IS NOT NULL",
        );
        let mut pending = BTreeMap::new();
        for row in sqlx::query(&sql)
            .bind(host_id)
            .rows(&mut **transaction, "read servers' rollout deadlines")
            .await?
        {
            pending.insert(
                (
                    row.value("cluster_name")?,
                    row.value("role")?,
                    row.value("name")?,
                ),
                policy::RolloutProgress {
                    pending_since: row.value("rollout_pending_since")?,
                    healthy_since: row.value("rollout_healthy_since")?,
                },
            );
        }
        Ok(pending)
    }

    /// The host's stored component status by (cluster, role, name).
    async fn stored_components(
        &self,
        executor: impl Executor<'_, Database = Any>,
        host_id: &str,
    ) -> Result<BTreeMap<(String, String, String), policy::ComponentReport>, StoreError> {
        let sql = self.sql(
            "SELECT cluster_name, role, name, state, healthy, last_error, restarts,
                 services_revision, config_revision, python_revision, python_installed,
                 user_conf_revision, odb_epoch, odb_empty, restart_epoch, rolls
             FROM component_status WHERE host_id = $1",
        );
        let mut stored = BTreeMap::new();
        for row in sqlx::query(&sql)
            .bind(host_id)
            .rows(executor, "read component status")
            .await?
        {
            let key = (
                row.value("cluster_name")?,
                row.value("role")?,
                row.value("name")?,
            );
            let value = policy::ComponentReport {
                state: component_state_from(&row.value::<String>("state")?),
                healthy: row.value::<i64>("healthy")? != 0,
                last_error: row.value("last_error")?,
                restarts: u32::try_from(row.value::<i64>("restarts")?).unwrap_or(u32::MAX),
                services_revision: row.value("services_revision")?,
                config_revision: row.value("config_revision")?,
                python_revision: row.value("python_revision")?,
                python_installed: row.value("python_installed")?,
                user_conf_revision: row.value("user_conf_revision")?,
                odb_epoch: epoch_from(row.value("odb_epoch")?)?,
                odb_empty: row.value::<i64>("odb_empty")? != 0,
                restart_epoch: epoch_from(row.value("restart_epoch")?)?,
                rolls: row.value::<i64>("rolls")? != 0,
            };
            stored.insert(key, value);
        }
        Ok(stored)
    }

    /// Replaces the host's reported backend states with those of `report`; returns the previous
    /// ones as (server, state) by (cluster, load balancer), sorted.
    pub(super) async fn replace_backend_states(
        &self,
        transaction: &mut PoolConnection<Any>,
        host_id: &str,
        report: &StatusReport,
    ) -> Result<BTreeMap<(String, String), Vec<(String, String)>>, StoreError> {
        let sql = self.sql(
            "SELECT cluster_name, lb_name, server_name, state FROM backend_status
             WHERE host_id = $1",
        );
        let mut previous: BTreeMap<_, Vec<_>> = BTreeMap::new();
        for row in sqlx::query(&sql)
            .bind(host_id)
            .rows(&mut **transaction, "read backend states")
            .await?
        {
            previous
                .entry((row.value("cluster_name")?, row.value("lb_name")?))
                .or_default()
                .push((row.value("server_name")?, row.value("state")?));
        }
        for states in previous.values_mut() {
            states.sort();
        }
        let delete = self.sql("DELETE FROM backend_status WHERE host_id = $1");
        sqlx::query(&delete)
            .bind(host_id)
            .run(&mut **transaction, "replace backend states")
            .await?;
        let insert = self.sql(
            "INSERT INTO backend_status (host_id, cluster_name, lb_name, server_name, address,
                 state, check_result, sessions) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        );
        for component in &report.components {
            for backend in &component.backends {
                sqlx::query(&insert)
                    .bind(host_id)
                    .bind(&component.cluster)
                    .bind(&component.name)
                    .bind(&backend.name)
                    .bind(&backend.address)
                    .bind(&backend.state)
                    .bind(&backend.check)
                    .bind(i64::from(backend.sessions))
                    .run(&mut **transaction, "record backend states")
                    .await?;
            }
        }
        Ok(previous)
    }

    /// The load balancers' reported backend servers, of one cluster or of all, by (host name,
    /// cluster, load balancer).
    pub(super) async fn backend_states(
        &self,
        cluster: Option<&str>,
    ) -> Result<BTreeMap<(String, String, String), Vec<v1::BackendServerState>>, StoreError> {
        let sql = self.sql(&format!(
            "SELECT h.name AS host_name, b.cluster_name, b.lb_name, b.server_name, b.address,
                 b.state, b.check_result, b.sessions
             FROM backend_status b JOIN hosts h ON h.id = b.host_id
             {} ORDER BY b.server_name",
            if cluster.is_some() {
                "WHERE b.cluster_name = $1"
            } else {
                ""
            }
        ));
        let mut query = sqlx::query(&sql);
        if let Some(cluster) = cluster {
            query = query.bind(cluster);
        }
        let rows = query.rows(&self.pool, "read backend states").await?;
        let mut states: BTreeMap<_, Vec<_>> = BTreeMap::new();
        for row in rows {
            let key = (
                row.value("host_name")?,
                row.value("cluster_name")?,
                row.value("lb_name")?,
            );
            let state: String = row.value("state")?;
            states.entry(key).or_default().push(v1::BackendServerState {
                name: row.value("server_name")?,
                address: row.value("address")?,
                status: v1::BackendStatus::from_haproxy(&state) as i32,
                state,
                check: row.value("check_result")?,
                sessions: count_from(row.value("sessions")?, "sessions")?,
            });
        }
        Ok(states)
    }

    /// Re-plans what depends on the health of the cluster's servers and the state of their hosts:
    /// whether its servers have started ([`policy::servers_started`]) and, until then, which one
    /// starts first ([`policy::first_server`]; a change re-renders the cluster's server hosts,
    /// the only ones it holds), and the server its scheduler points at
    /// ([`policy::scheduler_target`]; a change bumps the cluster's hosts). The servers' start and
    /// each move of the scheduler are recorded as events. A server counts as healthy here only
    /// under the cluster's current ODB generation and, while a rebuild on an empty ODB waits for
    /// its first server, once it runs the cluster's services: the servers of the older
    /// generation, which serve meanwhile, are created again only when a new one can take their
    /// requests. (Later, a server running an older revision during a deployment is healthy.)
    pub(super) async fn replan_cluster(
        &self,
        transaction: &mut PoolConnection<Any>,
        cluster_id: &str,
        cluster_name: &str,
    ) -> Result<(), StoreError> {
        self.replan_cluster_at(transaction, cluster_id, cluster_name, now_ms())
            .await
    }

    /// [`Self::replan_cluster`] at `now` (ms): whether a server restarting in a rollout is
    /// still within its healthy deadline (the rollout watch's clock).
    pub(super) async fn replan_cluster_at(
        &self,
        transaction: &mut PoolConnection<Any>,
        cluster_id: &str,
        cluster_name: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let sql = self.sql(
            "SELECT a.role, a.name, a.host_name, h.state, h.drained,
                 s.state AS component_state, s.rollout_pending_since, c.rollout_strategy,
                 CASE WHEN s.odb_epoch <> c.odb_epoch THEN 0
                      WHEN c.odb_epoch > 0 AND c.servers_started = 0
                          AND c.services_revision <> ''
                          AND s.services_revision <> c.services_revision THEN 0
                      ELSE s.healthy END AS healthy
             FROM assignments a
             JOIN clusters c ON c.id = a.cluster_id
             LEFT JOIN hosts h ON h.name = a.host_name
             LEFT JOIN component_status s ON s.host_id = h.id AND s.cluster_name = $1
                 AND s.role = a.role AND s.name = a.name
             WHERE a.cluster_id = $2 ORDER BY a.name",
        );
        let rows = sqlx::query(&sql)
            .bind(cluster_name)
            .bind(cluster_id)
            .rows(&mut **transaction, "re-plan the scheduler")
            .await?;
        let mut has_scheduler = false;
        let mut servers = Vec::new();
        for row in &rows {
            let role: String = row.value("role")?;
            if role == Role::Scheduler.cli_name() {
                has_scheduler = true;
            } else if role == Role::Server.cli_name() {
                let state: Option<String> = row.value("state")?;
                let drained = row.value::<Option<i64>>("drained")? == Some(1);
                // Out for its own restart in a rollout: being restarted, or restarted into it
                // and not through it yet, within the cluster's healthy deadline.
                let deadline_ms = i64::from(rollout_strategy(row)?.healthy_deadline_seconds) * 1000;
                let pending_since: Option<i64> = row.value("rollout_pending_since")?;
                let component_state: Option<String> = row.value("component_state")?;
                let rollout_restart = component_state.as_deref()
                    == Some(v1::ComponentState::Restarting.word())
                    || pending_since.is_some_and(|since| now - since <= deadline_ms);
                servers.push(policy::ServerCandidate {
                    name: row.value("name")?,
                    host: row.value("host_name")?,
                    host_up: state.as_deref() == Some(HostState::Up.as_str()),
                    host_drained: drained,
                    healthy: row.value::<Option<i64>>("healthy")? == Some(1),
                    rollout_restart,
                });
            }
        }
        let current_sql = self.sql(
            "SELECT scheduler_target, servers_started, first_server FROM clusters WHERE id = $1",
        );
        let current_row = sqlx::query(&current_sql)
            .bind(cluster_id)
            .row(&mut **transaction, "re-plan the cluster")
            .await?;
        if current_row.value::<i64>("servers_started")? == 0 {
            let first_before: String = current_row.value("first_server")?;
            let started = policy::servers_started(&servers);
            let first_now = match &started {
                Some(_) => "",
                None => policy::first_server(false, &servers)
                    .map(|first| first.name.as_str())
                    .unwrap_or_default(),
            };
            if started.is_some() || first_now != first_before {
                let update = self.sql(
                    "UPDATE clusters SET servers_started = $1, first_server = $2 WHERE id = $3",
                );
                sqlx::query(&update)
                    .bind(i64::from(started.is_some()))
                    .bind(first_now)
                    .bind(cluster_id)
                    .run(&mut **transaction, "record the cluster's first server")
                    .await?;
                // Only servers are held, so only their hosts re-render.
                self.bump(transaction, cluster_id, policy::Change::Servers)
                    .await?;
            }
            if let Some((healthy, happened)) = started {
                let actor = Actor("planner".to_owned());
                self.insert_event(
                    transaction,
                    happened.kind,
                    cluster_name,
                    &healthy.host,
                    &actor,
                    &happened.message,
                )
                .await?;
            }
        }
        if !has_scheduler {
            return Ok(());
        }
        let current: String = current_row.value("scheduler_target")?;
        let Some(moved) = policy::scheduler_target(&current, &servers) else {
            return Ok(());
        };
        let update = self.sql("UPDATE clusters SET scheduler_target = $1 WHERE id = $2");
        sqlx::query(&update)
            .bind(&moved.server)
            .bind(cluster_id)
            .run(&mut **transaction, "re-plan the scheduler")
            .await?;
        self.bump(transaction, cluster_id, policy::Change::Cluster)
            .await?;
        let actor = Actor("planner".to_owned());
        self.insert_event(
            transaction,
            "scheduler.target",
            cluster_name,
            &moved.host,
            &actor,
            &moved.message(),
        )
        .await?;
        Ok(())
    }

    /// Re-plans the scheduler of every cluster `host_name` has a component in.
    pub(super) async fn replan_host_clusters(
        &self,
        transaction: &mut PoolConnection<Any>,
        host_name: &str,
    ) -> Result<(), StoreError> {
        for (id, name) in self.host_clusters(transaction, host_name, None).await? {
            self.replan_cluster(transaction, &id, &name).await?;
        }
        Ok(())
    }

    /// Where the bootstrap of each cluster (or of one) stands, by cluster and task.
    pub(super) async fn list_bootstrap(
        &self,
        cluster: Option<&str>,
    ) -> Result<Vec<BootstrapState>, StoreError> {
        let clusters = match cluster {
            Some(name) => vec![self.get_cluster(name).await?],
            None => self.list_clusters().await?,
        };
        let mut bootstrap = Vec::new();
        for cluster in &clusters {
            bootstrap.extend(self.bootstrap_of(cluster).await?);
        }
        bootstrap
            .sort_by(|left, right| (&left.cluster, left.task).cmp(&(&right.cluster, right.task)));
        Ok(bootstrap)
    }

    /// The bootstrap tasks of one cluster: none before its bootstrap host is chosen.
    async fn bootstrap_of(&self, cluster: &Cluster) -> Result<Vec<BootstrapState>, StoreError> {
        let sql = self.sql(
            "SELECT task, host_name, done, last_error FROM bootstrap_tasks WHERE cluster_id = $1",
        );
        let mut bootstrap = Vec::new();
        for task_row in sqlx::query(&sql)
            .bind(&cluster.id)
            .rows(&self.pool, "read bootstrap tasks")
            .await?
        {
            let task = match task_row.value::<String>("task")?.as_str() {
                "odb" => BootstrapTask::Odb,
                "cluster" => BootstrapTask::Cluster,
                other => return Err(StoreError::Corrupt(format!("bootstrap task {other:?}"))),
            };
            bootstrap.push(BootstrapState {
                cluster: cluster.name.clone(),
                task,
                host: task_row.value("host_name")?,
                done: task_row.value::<i64>("done")? != 0,
                last_error: task_row.value("last_error")?,
            });
        }
        Ok(bootstrap)
    }

    pub(super) async fn plan_inputs(&self, host_id: &str) -> Result<PlanInputs, StoreError> {
        let host = self.get_host_by_id(host_id).await?;
        let sql = self.sql(
            "SELECT DISTINCT c.name AS cluster_name FROM assignments a
             JOIN clusters c ON c.id = a.cluster_id WHERE a.host_name = $1",
        );
        let rows = sqlx::query(&sql)
            .bind(&host.name)
            .rows(&self.pool, "read a host's clusters")
            .await?;
        let mut clusters = BTreeMap::new();
        let mut assignments = Vec::new();
        let mut bootstrap = Vec::new();
        let mut hosts = BTreeMap::new();
        let mut services = BTreeMap::new();
        let mut config = BTreeMap::new();
        let mut python = BTreeMap::new();
        let mut user_conf = BTreeMap::new();
        let mut config_removals = BTreeMap::new();
        for row in rows {
            let name: String = row.value("cluster_name")?;
            let cluster = self.get_cluster(&name).await?;
            let secrets = self.cluster_secrets(&name).await?;
            for assignment in self.list_assignments(Some(&name)).await? {
                if !hosts.contains_key(&assignment.host)
                    && let Some(peer) = self.host_in(&self.pool, "name", &assignment.host).await?
                {
                    hosts.insert(peer.name.clone(), peer);
                }
                assignments.push(assignment);
            }
            bootstrap.extend(self.bootstrap_of(&cluster).await?);
            // Only a server's desired state carries the services and the configuration: other
            // hosts' plans do not read them.
            let runs_a_server = assignments.iter().any(|assignment: &Assignment| {
                assignment.cluster == name
                    && assignment.role == Role::Server
                    && assignment.host == host.name
            });
            if runs_a_server && !cluster.services_revision.is_empty() {
                services.insert(name.clone(), self.cluster_services(&name, true).await?);
            }
            if runs_a_server && !cluster.config_revision.is_empty() {
                config.insert(name.clone(), self.cluster_config(&name, true).await?);
                config_removals.insert(
                    name.clone(),
                    self.config_removals_in(&self.pool, &cluster.id).await?,
                );
            }
            if runs_a_server && !cluster.python_revision.is_empty() {
                python.insert(name.clone(), self.cluster_python(&name).await?);
            }
            if runs_a_server && !cluster.user_conf_revision.is_empty() {
                user_conf.insert(name.clone(), self.user_conf_of(&cluster.id, true).await?);
            }
            clusters.insert(name, (cluster, secrets));
        }
        bootstrap
            .sort_by(|left, right| (&left.cluster, left.task).cmp(&(&right.cluster, right.task)));
        Ok(PlanInputs {
            host,
            assignments,
            hosts,
            clusters,
            services,
            config,
            config_removals,
            python,
            user_conf,
            bootstrap,
        })
    }
}

impl SqlStore {
    /// What cluster `name`'s servers restart for: its desired Python dependencies revision and
    /// restart epoch (empty and 0: none, or no such cluster), from `known` or read once into it.
    async fn restart_goal_of(
        &self,
        transaction: &mut PoolConnection<Any>,
        known: &mut BTreeMap<String, ClusterGoal>,
        name: &str,
    ) -> ClusterGoal {
        if let Some(goal) = known.get(name) {
            return goal.clone();
        }
        let goal = self
            .cluster_in(&mut **transaction, name)
            .await
            .map(|cluster| ClusterGoal {
                min_healthy_ms: i64::from(cluster.rollout_strategy.min_healthy_time_seconds) * 1000,
                python_revision: cluster.python_revision,
                restart_epoch: cluster.restart_epoch,
                same_epoch: cluster.restart_epoch_same,
                others: policy::RoleEpochs::of(&cluster.role_restart_epochs),
            })
            .unwrap_or_default();
        known.insert(name.to_owned(), goal.clone());
        goal
    }
}

/// What a cluster's servers restart for ([`policy::RestartGoal`]), and how long one that did is
/// held healthy before it is through, as a status report reads it.
#[derive(Debug, Clone, Default)]
struct ClusterGoal {
    python_revision: String,
    restart_epoch: u64,
    same_epoch: Option<u64>,
    others: policy::RoleEpochs,
    min_healthy_ms: i64,
}

impl ClusterGoal {
    fn restart_goal(&self) -> policy::RestartGoal<'_> {
        policy::RestartGoal {
            python_revision: &self.python_revision,
            restart_epoch: self.restart_epoch,
            same_epoch: self.same_epoch,
            others: self.others,
        }
    }
}

/// A reported component as the store keeps it: (cluster, role, name) and its status.
fn reported_component(
    component: &ComponentStatus,
) -> ((String, String, String), policy::ComponentReport) {
    (
        (
            component.cluster.clone(),
            component.role.cli_name().to_owned(),
            component.name.clone(),
        ),
        policy::ComponentReport::from(component),
    )
}
