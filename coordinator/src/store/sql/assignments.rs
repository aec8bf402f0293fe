//! Assignments of roles to hosts, the bootstrap tasks, and the generations they bump.

use super::*;

impl SqlStore {
    /// Assigns a component inside `transaction`: its name and port, or a refusal, by the
    /// placement rules ([`policy::place`], given the cluster's and the host's assignments);
    /// claims the cluster's bootstrap for the host if it is enrolled and none has it, and bumps
    /// the generation of the hosts whose desired state it changes ([`policy::Change::Server`] for
    /// a server, [`policy::Change::Cluster`] for any other role).
    pub(super) async fn assign_in(
        &self,
        transaction: &mut PoolConnection<Any>,
        cluster: &Cluster,
        new: NewAssignment,
        actor: &Actor,
    ) -> Result<Assignment, StoreError> {
        // Assignments to one cluster take turns, also across coordinators, so two of them never
        // choose the same default name or port.
        self.lock_clusters(transaction, [cluster.id.clone()])
            .await?;
        // A host that belongs to another cluster (enrolled with its join token) gets this
        // cluster's components, and so their secrets, only once an admin admitted it here. A host
        // not enrolled yet may be named; it can then only enroll with this cluster's token.
        let sql = self.sql(
            "SELECT COALESCE((SELECT c.name FROM clusters c WHERE c.id = hosts.cluster_id), '')
                 AS member_of
             FROM hosts WHERE name = $1 AND cluster_id <> '' AND cluster_id <> $2
                 AND NOT EXISTS (SELECT 1 FROM host_admissions h
                     WHERE h.host_name = hosts.name AND h.cluster_id = $3)",
        );
        if let Some(row) = sqlx::query(&sql)
            .bind(&new.host)
            .bind(&cluster.id)
            .bind(&cluster.id)
            .optional_row(&mut **transaction, "read a host's cluster")
            .await?
        {
            let member_of: String = row.value("member_of")?;
            return Err(StoreError::Conflict(format!(
                "host '{}' belongs to cluster '{member_of}' (it enrolled with that cluster's join \
                 token), not to '{}': a {} of '{}' there would hand '{}'s secrets to another \
                 cluster's host; enroll a host with a join token of '{}', or admit this one \
                 (muster host admit {} --cluster {}) if it is to run both clusters",
                new.host,
                cluster.name,
                new.role,
                cluster.name,
                cluster.name,
                cluster.name,
                new.host,
                cluster.name
            )));
        }
        let sql = self.sql(
            "SELECT c.name AS cluster_name, a.role, a.name, a.host_name, a.port
             FROM assignments a JOIN clusters c ON c.id = a.cluster_id
             WHERE a.cluster_id = $1 OR a.host_name = $2",
        );
        let rows = sqlx::query(&sql)
            .bind(&cluster.id)
            .bind(&new.host)
            .rows(&mut **transaction, "read assignments")
            .await?;
        let mut placed = Vec::new();
        for row in &rows {
            placed.push(policy::Placed {
                cluster: row.value("cluster_name")?,
                role: role_from(&row.value::<String>("role")?)?,
                name: row.value("name")?,
                host: row.value("host_name")?,
                port: port_from(row.value("port")?)?,
            });
        }
        let request = policy::PlacementRequest {
            cluster: &cluster.name,
            odb_on_one_host: cluster.odb.odb_type == OdbType::Sqlite
                && cluster.odb.db_name.is_empty(),
            role: new.role,
            name: new.name.as_deref(),
            host: &new.host,
            port: new.port,
        };
        let (name, port) = policy::place(&request, &placed).map_err(|refusal| match refusal {
            policy::PlacementRefusal::Conflict(message) => StoreError::Conflict(message),
            policy::PlacementRefusal::AlreadyExists(name) => StoreError::AlreadyExists {
                kind: "component",
                name,
            },
        })?;
        let created_at_ms = now_ms();
        let load_balancer =
            (new.role == Role::LoadBalancer).then(|| new.load_balancer.clone().unwrap_or_default());
        let settings = match &load_balancer {
            Some(given) => settings_json(given)?,
            None => String::new(),
        };
        let insert = self.sql(
            "INSERT INTO assignments (id, cluster_id, role, name, host_name, port, created_at,
                 settings)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        );
        let inserted = sqlx::query(&insert)
            .bind(secrets::random_hex(8)?)
            .bind(&cluster.id)
            .bind(new.role.cli_name())
            .bind(&name)
            .bind(&new.host)
            .bind(i64::from(port))
            .bind(created_at_ms)
            .bind(&settings)
            .execute(&mut **transaction)
            .await;
        match inserted {
            Err(error) if is_unique_violation(&error) => {
                return Err(StoreError::Conflict(format!(
                    "{} {name} of cluster {} or port {port} on host '{}' was taken by a concurrent change; retry",
                    new.role, cluster.name, new.host
                )));
            }
            other => other.map_err(database("assign a component"))?,
        };
        if self
            .host_in(&mut **transaction, "name", &new.host)
            .await?
            .is_some()
        {
            self.claim_bootstrap(transaction, &new.host).await?;
        }
        // Tasks left with a host that has nothing of the cluster any more come to this one.
        if self.rehome_bootstrap(transaction, &cluster.id).await? {
            self.bump(transaction, &cluster.id, policy::Change::Cluster)
                .await?;
        }
        if new.role == Role::Server {
            self.bump(
                transaction,
                &cluster.id,
                policy::Change::Server {
                    host: new.host.clone(),
                },
            )
            .await?;
        } else {
            self.bump(transaction, &cluster.id, policy::Change::Cluster)
                .await?;
        }
        let message = format!(
            "{} {name} assigned to host {} on port {port}",
            new.role, new.host
        );
        self.insert_event(
            transaction,
            "component.assigned",
            &cluster.name,
            &new.host,
            actor,
            &message,
        )
        .await?;
        Ok(Assignment {
            cluster: cluster.name.clone(),
            role: new.role,
            name,
            host: new.host,
            port,
            created_at_ms,
            load_balancer: load_balancer
                .as_ref()
                .map(settings_with_defaults)
                .transpose()?,
            status: None,
        })
    }

    pub(super) async fn assignments_where(
        &self,
        filter: &str,
        value: Option<&str>,
    ) -> Result<Vec<Assignment>, StoreError> {
        let sql = self.sql(&format!(
            "SELECT c.name AS cluster_name, a.role, a.name, a.host_name, a.port, a.created_at,
                 a.settings, s.state, s.healthy, s.last_error, s.restarts, s.services_revision,
                 s.config_revision, s.python_revision, s.python_installed, s.user_conf_revision,
                 s.odb_epoch, s.odb_empty, s.restart_epoch, s.rollout_healthy_since, s.rolls
             FROM assignments a JOIN clusters c ON c.id = a.cluster_id
             LEFT JOIN hosts h ON h.name = a.host_name
             LEFT JOIN component_status s ON s.host_id = h.id AND s.cluster_name = c.name
                 AND s.role = a.role AND s.name = a.name
             {filter} ORDER BY c.name, a.role, a.name"
        ));
        let mut query = sqlx::query(&sql);
        if let Some(value) = value {
            query = query.bind(value);
        }
        let rows = query.rows(&self.pool, "list assignments").await?;
        let mut assignments: Vec<Assignment> = rows
            .iter()
            .map(assignment_from_row)
            .collect::<Result<_, _>>()?;
        if assignments
            .iter()
            .any(|assignment| assignment.role == Role::LoadBalancer)
        {
            let mut backends = self.backend_states(value).await?;
            for assignment in &mut assignments {
                if let Some(status) = &mut assignment.status
                    && let Some(states) = backends.remove(&(
                        assignment.host.clone(),
                        assignment.cluster.clone(),
                        assignment.name.clone(),
                    ))
                {
                    status.backends = states;
                }
            }
        }
        Ok(assignments)
    }

    /// The one assignment of `role` on `host` in `cluster` (named `name`, if given).
    pub(super) async fn find_assignment(
        &self,
        cluster: &str,
        role: Role,
        host: &str,
        name: Option<&str>,
    ) -> Result<Assignment, StoreError> {
        let candidates: Vec<Assignment> = self
            .list_assignments(Some(cluster))
            .await?
            .into_iter()
            .filter(|assignment| assignment.role == role && assignment.host == host)
            .filter(|assignment| name.is_none_or(|name| assignment.name == name))
            .collect();
        match candidates.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(StoreError::NotFound {
                kind: "component",
                name: format!(
                    "{role} {} of cluster {cluster} on host {host}",
                    name.unwrap_or("")
                ),
            }),
            several => {
                let names: Vec<&str> = several
                    .iter()
                    .map(|assignment| assignment.name.as_str())
                    .collect();
                Err(StoreError::Conflict(format!(
                    "host '{host}' has {} {role}s of cluster {cluster} ({}); name one with --name",
                    names.len(),
                    names.join(", ")
                )))
            }
        }
    }

    pub(super) async fn create_assignment(
        &self,
        new: NewAssignment,
        actor: &Actor,
    ) -> Result<Assignment, StoreError> {
        let cluster = self.get_cluster(&new.cluster).await?;
        let mut transaction = self.begin_write().await?;
        let assignment = self
            .assign_in(&mut transaction, &cluster, new, actor)
            .await?;
        self.replan_cluster(&mut transaction, &cluster.id, &cluster.name)
            .await?;
        transaction.commit("commit an assignment").await?;
        Ok(assignment)
    }

    pub(super) async fn delete_assignment(
        &self,
        cluster: &str,
        role: Role,
        host: &str,
        name: Option<&str>,
        actor: &Actor,
    ) -> Result<Assignment, StoreError> {
        let cluster_row = self.get_cluster(cluster).await?;
        let assignment = self.find_assignment(cluster, role, host, name).await?;
        let mut transaction = self.begin_write().await?;
        // Bumped while the assignment still names its host, so that host learns of the removal.
        if role == Role::Server {
            self.bump(
                &mut transaction,
                &cluster_row.id,
                policy::Change::Server {
                    host: assignment.host.clone(),
                },
            )
            .await?;
        } else {
            self.bump(&mut transaction, &cluster_row.id, policy::Change::Cluster)
                .await?;
        }
        let sql =
            self.sql("DELETE FROM assignments WHERE cluster_id = $1 AND role = $2 AND name = $3");
        let deleted = sqlx::query(&sql)
            .bind(&cluster_row.id)
            .bind(role.cli_name())
            .bind(&assignment.name)
            .run(&mut **transaction, "unassign a component")
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                kind: "component",
                name: assignment.name,
            });
        }
        let message = format!("{role} {} unassigned from host {host}", assignment.name);
        self.insert_event(
            &mut transaction,
            "component.removed",
            cluster,
            host,
            actor,
            &message,
        )
        .await?;
        self.replan_cluster(&mut transaction, &cluster_row.id, cluster)
            .await?;
        transaction.commit("commit an unassignment").await?;
        Ok(assignment)
    }

    pub(super) async fn configure_load_balancer(
        &self,
        cluster: &str,
        host: &str,
        name: Option<&str>,
        changes: &v1::LoadBalancerSettings,
        actor: &Actor,
    ) -> Result<Assignment, StoreError> {
        let cluster_row = self.get_cluster(cluster).await?;
        let mut assignment = self
            .find_assignment(cluster, Role::LoadBalancer, host, name)
            .await?;
        let current = assignment.load_balancer.clone().unwrap_or_default();
        let pick =
            |given: &str, current: &str| if given.is_empty() { current } else { given }.to_owned();
        let pick_number = |given: u32, current: u32| if given == 0 { current } else { given };
        let merged = v1::LoadBalancerSettings {
            haproxy_bin: pick(&changes.haproxy_bin, &current.haproxy_bin),
            frontend_address: pick(&changes.frontend_address, &current.frontend_address),
            check_inter_ms: pick_number(changes.check_inter_ms, current.check_inter_ms),
            check_rise: pick_number(changes.check_rise, current.check_rise),
            check_fall: pick_number(changes.check_fall, current.check_fall),
            connect_timeout_ms: pick_number(changes.connect_timeout_ms, current.connect_timeout_ms),
            server_timeout_ms: pick_number(changes.server_timeout_ms, current.server_timeout_ms),
            retries: pick_number(changes.retries, current.retries),
        };
        let merged = settings_with_defaults(&merged)?;
        let mut transaction = self.begin_write().await?;
        let sql = self.sql(
            "UPDATE assignments SET settings = $1 WHERE cluster_id = $2 AND role = $3 AND name = $4",
        );
        sqlx::query(&sql)
            .bind(settings_json(&merged)?)
            .bind(&cluster_row.id)
            .bind(Role::LoadBalancer.cli_name())
            .bind(&assignment.name)
            .run(&mut **transaction, "configure a load balancer")
            .await?;
        let bump = self.sql(
            "UPDATE hosts SET generation = generation + 1, generation_changed_at = $1
             WHERE name = $2",
        );
        sqlx::query(&bump)
            .bind(now_ms())
            .bind(host)
            .run(&mut **transaction, "bump a host's generation")
            .await?;
        let message = format!(
            "load-balancer {} reconfigured: HAProxy {}, frontend {}, {}",
            assignment.name,
            merged.haproxy_bin,
            merged.frontend_address,
            muster_proto::haproxy::check_keywords(&merged)
        );
        self.insert_event(
            &mut transaction,
            "component.configured",
            cluster,
            host,
            actor,
            &message,
        )
        .await?;
        transaction
            .commit("commit a load balancer's settings")
            .await?;
        assignment.load_balancer = Some(merged);
        Ok(assignment)
    }

    pub(super) async fn list_assignments(
        &self,
        cluster: Option<&str>,
    ) -> Result<Vec<Assignment>, StoreError> {
        match cluster {
            Some(cluster) => {
                self.assignments_where("WHERE c.name = $1", Some(cluster))
                    .await
            }
            None => self.assignments_where("", None).await,
        }
    }

    /// Hands the bootstrap tasks of cluster `cluster_id` to another host when the one they name
    /// has no component there that reaches the ODB any more (removed, or its components
    /// unassigned): the first such host by name, one that is up first. A finished task stays
    /// finished (the cluster stays bootstrapped; only a rebuild on an empty ODB runs it again);
    /// with no such host the tasks stay as they are. Says whether it moved them (the new host's
    /// desired state then changes).
    pub(super) async fn rehome_bootstrap(
        &self,
        transaction: &mut PoolConnection<Any>,
        cluster_id: &str,
    ) -> Result<bool, StoreError> {
        let sql = self.sql(
            "SELECT a.host_name, h.state FROM assignments a LEFT JOIN hosts h ON h.name = a.host_name
             WHERE a.cluster_id = $1 AND a.role IN ('server', 'scheduler', 'web-admin')
             ORDER BY a.host_name",
        );
        let rows = sqlx::query(&sql)
            .bind(cluster_id)
            .rows(&mut **transaction, "find a cluster's bootstrap hosts")
            .await?;
        let mut eligible = Vec::new();
        for row in &rows {
            let host: String = row.value("host_name")?;
            let up =
                row.value::<Option<String>>("state")?.as_deref() == Some(HostState::Up.as_str());
            eligible.push((!up, host));
        }
        eligible.sort();
        let Some((_, chosen)) = eligible.first() else {
            return Ok(false);
        };
        let mut moved = false;
        let current =
            self.sql("SELECT DISTINCT host_name FROM bootstrap_tasks WHERE cluster_id = $1");
        for row in sqlx::query(&current)
            .bind(cluster_id)
            .rows(&mut **transaction, "read a cluster's bootstrap host")
            .await?
        {
            let host: String = row.value("host_name")?;
            if eligible.iter().any(|(_, name)| *name == host) {
                continue;
            }
            let update = self.sql(
                "UPDATE bootstrap_tasks SET host_name = $1, updated_at = $2
                 WHERE cluster_id = $3 AND host_name = $4",
            );
            sqlx::query(&update)
                .bind(chosen)
                .bind(now_ms())
                .bind(cluster_id)
                .bind(&host)
                .run(&mut **transaction, "choose another bootstrap host")
                .await?;
            moved = true;
        }
        Ok(moved)
    }

    /// Chooses `host_name` to run the bootstrap tasks of every cluster it has an assignment in
    /// that has no bootstrap host yet; returns the ids of those clusters.
    pub(super) async fn claim_bootstrap(
        &self,
        transaction: &mut PoolConnection<Any>,
        host_name: &str,
    ) -> Result<Vec<String>, StoreError> {
        // Only a host whose roles reach the ODB bootstraps: the tasks carry the ODB password,
        // the secret key and the admin.invoke password, which a load balancer has no use for.
        let sql = self.sql(
            "SELECT DISTINCT cluster_id FROM assignments a WHERE host_name = $1
             AND a.role IN ('server', 'scheduler', 'web-admin')
             AND NOT EXISTS (SELECT 1 FROM bootstrap_tasks b WHERE b.cluster_id = a.cluster_id)",
        );
        let rows = sqlx::query(&sql)
            .bind(host_name)
            .rows(&mut **transaction, "find clusters to bootstrap")
            .await?;
        let mut claimed = Vec::new();
        for row in rows {
            let cluster_id: String = row.value("cluster_id")?;
            for task in BootstrapTask::ALL {
                // Two coordinators may claim at once: the first row wins, the other is ignored.
                let insert = self.insert_ignoring_duplicates(
                    "bootstrap_tasks (cluster_id, task, host_name, done, last_error, updated_at)
                     VALUES ($1, $2, $3, 0, '', $4)",
                );
                sqlx::query(&insert)
                    .bind(&cluster_id)
                    .bind(task.as_str())
                    .bind(host_name)
                    .bind(now_ms())
                    .run(&mut **transaction, "choose a bootstrap host")
                    .await?;
            }
            claimed.push(cluster_id);
        }
        Ok(claimed)
    }

    /// Locks the rows of these clusters, in one order (by id) for every transaction, until the
    /// transaction ends. (SQLite has one writer already.)
    ///
    /// The lock order of every write: the clusters it changes or bumps hosts of, then hosts. A
    /// transaction that bumps hosts' generations takes its cluster first ([`Self::bump`] does),
    /// and one that changes a host's own row before it bumps (a status report, a drain, a host
    /// marked down) takes that host's clusters before the host's row
    /// ([`Self::lock_clusters_of_host`]): two such writes to one cluster then take turns instead
    /// of each holding a host the other waits for (a deadlock, which the database breaks by
    /// failing one of them).
    pub(super) async fn lock_clusters(
        &self,
        transaction: &mut PoolConnection<Any>,
        ids: impl IntoIterator<Item = String>,
    ) -> Result<(), StoreError> {
        if self.dialect == Dialect::Sqlite {
            return Ok(());
        }
        let ids: std::collections::BTreeSet<String> = ids.into_iter().collect();
        let lock = self.sql("SELECT id FROM clusters WHERE id = $1 FOR UPDATE");
        for id in &ids {
            sqlx::query(&lock)
                .bind(id)
                .optional_row(&mut **transaction, "lock a cluster")
                .await?;
        }
        Ok(())
    }

    /// [`Self::lock_clusters`] of every cluster the host has a component in.
    pub(super) async fn lock_clusters_of_host(
        &self,
        transaction: &mut PoolConnection<Any>,
        host_name: &str,
    ) -> Result<(), StoreError> {
        if self.dialect == Dialect::Sqlite {
            return Ok(());
        }
        let clusters = self.host_clusters(transaction, host_name, None).await?;
        self.lock_clusters(transaction, clusters.into_iter().map(|(id, _)| id))
            .await
    }

    /// Bumps the generation of each host whose desired state `change` alters in the cluster with
    /// this id ([`policy::affected_hosts`], from the cluster's shape as the store holds it), one
    /// host at a time, in order of name, under the cluster's lock ([`Self::lock_clusters`]).
    pub(super) async fn bump(
        &self,
        transaction: &mut PoolConnection<Any>,
        cluster_id: &str,
        change: policy::Change,
    ) -> Result<(), StoreError> {
        self.lock_clusters(transaction, [cluster_id.to_owned()])
            .await?;
        let sql = self.sql(
            "SELECT (SELECT COUNT(*) FROM bootstrap_tasks WHERE cluster_id = $1 AND done = 1)
                 AS finished, config_revision, python_revision, restart_epoch,
                 restart_epoch_same, restart_epochs FROM clusters WHERE id = $2",
        );
        let Some(cluster_row) = sqlx::query(&sql)
            .bind(cluster_id)
            .bind(cluster_id)
            .optional_row(&mut **transaction, "read a cluster's bootstrap")
            .await?
        else {
            return Ok(());
        };
        let python_revision: String = cluster_row.value("python_revision")?;
        let role_epochs = role_restart_epochs(&cluster_row)?;
        let goal = policy::RestartGoal {
            python_revision: &python_revision,
            restart_epoch: epoch_from(cluster_row.value("restart_epoch")?)?,
            same_epoch: cluster_row
                .value::<Option<i64>>("restart_epoch_same")?
                .map(epoch_from)
                .transpose()?,
            others: policy::RoleEpochs::of(&role_epochs),
        };
        let sql = self.sql(
            "SELECT a.role, a.host_name, h.drained, s.state, s.python_revision, s.restart_epoch,
                 s.rolls
             FROM assignments a JOIN clusters c ON c.id = a.cluster_id
             LEFT JOIN hosts h ON h.name = a.host_name
             LEFT JOIN component_status s ON s.host_id = h.id AND s.cluster_name = c.name
                 AND s.role = a.role AND s.name = a.name
             WHERE a.cluster_id = $1",
        );
        let mut members = Vec::new();
        for row in sqlx::query(&sql)
            .bind(cluster_id)
            .rows(&mut **transaction, "read a cluster's members")
            .await?
        {
            let role = role_from(&row.value::<String>("role")?)?;
            let restart_due = match row.value::<Option<String>>("state")? {
                None => false,
                Some(state) => goal.due_as(
                    role,
                    &policy::ComponentReport {
                        state: component_state_from(&state),
                        python_revision: row
                            .value::<Option<String>>("python_revision")?
                            .unwrap_or_default(),
                        restart_epoch: epoch_from(
                            row.value::<Option<i64>>("restart_epoch")?.unwrap_or(0),
                        )?,
                        rolls: row.value::<Option<i64>>("rolls")? == Some(1),
                        ..Default::default()
                    },
                ),
            };
            members.push(policy::Member {
                role,
                host: row.value("host_name")?,
                host_drained: row.value::<Option<i64>>("drained")? == Some(1),
                restart_due,
            });
        }
        let finished: i64 = cluster_row.value("finished")?;
        let cluster = policy::ClusterShape {
            members,
            bootstrapped: usize::try_from(finished).unwrap_or(0) >= BootstrapTask::ALL.len(),
            has_config: !cluster_row.value::<String>("config_revision")?.is_empty(),
            has_python: !python_revision.is_empty(),
        };
        let hosts = policy::affected_hosts(&change, &cluster);
        let update = self.sql(
            "UPDATE hosts SET generation = generation + 1, generation_changed_at = $1
             WHERE name = $2",
        );
        let now = now_ms();
        for host in &hosts {
            sqlx::query(&update)
                .bind(now)
                .bind(host)
                .run(&mut **transaction, "bump a host's generation")
                .await?;
        }
        Ok(())
    }

    /// [`Self::bump`] for the cluster named `cluster` (none: nothing to bump).
    pub(super) async fn bump_named(
        &self,
        transaction: &mut PoolConnection<Any>,
        cluster: &str,
        change: policy::Change,
    ) -> Result<(), StoreError> {
        let sql = self.sql("SELECT id FROM clusters WHERE name = $1");
        let row = sqlx::query(&sql)
            .bind(cluster)
            .optional_row(&mut **transaction, "read a cluster's id")
            .await?;
        match row {
            Some(row) => {
                let id: String = row.value("id")?;
                self.bump(transaction, &id, change).await
            }
            None => Ok(()),
        }
    }

    /// The (id, name) of each cluster the host has a component in (of `role`, if given).
    pub(super) async fn host_clusters(
        &self,
        transaction: &mut PoolConnection<Any>,
        host_name: &str,
        role: Option<Role>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let sql =
            self.sql(&format!(
            "SELECT DISTINCT c.id, c.name FROM assignments a JOIN clusters c ON c.id = a.cluster_id
             WHERE a.host_name = $1{}",
            if role.is_some() { " AND a.role = $2" } else { "" }
        ));
        let mut query = sqlx::query(&sql).bind(host_name);
        if let Some(role) = role {
            query = query.bind(role.cli_name());
        }
        let rows = query
            .rows(&mut **transaction, "read a host's clusters")
            .await?;
        rows.iter()
            .map(|row| Ok((row.value("id")?, row.value("name")?)))
            .collect()
    }
}
