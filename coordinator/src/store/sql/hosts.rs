//! Hosts: enrollment, heartbeats going stale, drains and removal.

use super::*;

/// Hosts whose liveness one short transaction records.
const LIVENESS_CHUNK: usize = 250;

impl SqlStore {
    /// Inserts a new host; a taken name is `AlreadyExists`.
    pub(super) async fn insert_host(
        &self,
        transaction: &mut PoolConnection<Any>,
        new: &NewHost,
        cluster_id: &str,
        enrolled_at_ms: i64,
    ) -> Result<(), StoreError> {
        let labels = serde_json::to_string(&new.labels)
            .map_err(|error| StoreError::Corrupt(format!("host labels: {error}")))?;
        let sql = self.sql(
            "INSERT INTO hosts (id, name, advertise_address, labels, state, enrolled_at,
                 last_seen_at, generation, applied_generation, cluster_id)
             VALUES ($1, $2, $3, $4, 'new', $5, NULL, 1, 0, $6)",
        );
        let inserted = sqlx::query(&sql)
            .bind(&new.id)
            .bind(&new.name)
            .bind(&new.advertise_address)
            .bind(&labels)
            .bind(enrolled_at_ms)
            .bind(cluster_id)
            .execute(&mut **transaction)
            .await;
        match inserted {
            Err(error) if is_unique_violation(&error) => Err(StoreError::AlreadyExists {
                kind: "host",
                name: new.name.clone(),
            }),
            other => other.map(|_| ()).map_err(database("enroll a host")),
        }
    }

    pub(super) async fn host_in(
        &self,
        executor: impl Executor<'_, Database = Any>,
        column: &str,
        value: &str,
    ) -> Result<Option<Host>, StoreError> {
        let sql = self.sql(&format!(
            "SELECT {HOST_COLUMNS} FROM hosts WHERE {column} = $1"
        ));
        let row = sqlx::query(&sql)
            .bind(value)
            .optional_row(executor, "read a host")
            .await?;
        row.as_ref().map(host_from_row).transpose()
    }

    pub(super) async fn create_host(
        &self,
        new: NewHost,
        actor: &Actor,
    ) -> Result<Host, StoreError> {
        let enrolled_at_ms = now_ms();
        let mut transaction = self.begin_write().await?;
        self.insert_host(&mut transaction, &new, "", enrolled_at_ms)
            .await?;
        let message = format!("host enrolled with address {}", new.advertise_address);
        self.insert_event(
            &mut transaction,
            "host.enrolled",
            "",
            &new.name,
            actor,
            &message,
        )
        .await?;
        transaction.commit("commit a new host").await?;
        Ok(Host {
            id: new.id,
            name: new.name,
            advertise_address: new.advertise_address,
            labels: new.labels,
            cluster: String::new(),
            admitted: Vec::new(),
            state: HostState::New,
            enrolled_at_ms,
            last_seen_ms: None,
            generation: 1,
            applied_generation: 0,
            drained: false,
            heartbeat_interval_ms: 0,
            zato_installs: Vec::new(),
        })
    }

    pub(super) async fn list_hosts(&self) -> Result<Vec<Host>, StoreError> {
        let sql = format!("SELECT {HOST_COLUMNS} FROM hosts ORDER BY name");
        let rows = sqlx::query(&sql).rows(&self.pool, "list hosts").await?;
        let mut hosts: Vec<Host> = rows.iter().map(host_from_row).collect::<Result<_, _>>()?;
        let mut admitted = self.admissions(None).await?;
        for host in &mut hosts {
            host.admitted = admitted.remove(&host.name).unwrap_or_default();
        }
        Ok(hosts)
    }

    /// The clusters each host (or host `name`) was admitted to, by host name.
    async fn admissions(
        &self,
        name: Option<&str>,
    ) -> Result<BTreeMap<String, Vec<String>>, StoreError> {
        let filter = if name.is_some() {
            "WHERE a.host_name = $1"
        } else {
            ""
        };
        let sql = self.sql(&format!(
            "SELECT a.host_name, c.name AS cluster_name FROM host_admissions a
             JOIN clusters c ON c.id = a.cluster_id {filter} ORDER BY a.host_name, c.name"
        ));
        let mut query = sqlx::query(&sql);
        if let Some(name) = name {
            query = query.bind(name);
        }
        let mut admitted: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for row in query.rows(&self.pool, "read host admissions").await? {
            admitted
                .entry(row.value("host_name")?)
                .or_default()
                .push(row.value("cluster_name")?);
        }
        Ok(admitted)
    }

    pub(super) async fn admit_host(
        &self,
        name: &str,
        cluster: &str,
        actor: &Actor,
    ) -> Result<Host, StoreError> {
        let host = self.get_host(name).await?;
        let target = self.get_cluster(cluster).await?;
        if host.cluster != target.name && !host.admitted.contains(&target.name) {
            let mut transaction = self.begin_write().await?;
            let sql = self.sql(
                "INSERT INTO host_admissions (host_name, cluster_id, admitted_at) VALUES ($1, $2, $3)",
            );
            sqlx::query(&sql)
                .bind(name)
                .bind(&target.id)
                .bind(now_ms())
                .run(&mut **transaction, "admit a host")
                .await?;
            let message = format!(
                "host admitted to cluster {cluster} besides its own ({}): {cluster}'s components, \
                 and the secrets they need, may run there",
                if host.cluster.is_empty() {
                    "none"
                } else {
                    host.cluster.as_str()
                }
            );
            self.insert_event(
                &mut transaction,
                "host.admitted",
                cluster,
                name,
                actor,
                &message,
            )
            .await?;
            transaction.commit("commit a host's admission").await?;
        }
        self.get_host(name).await
    }

    pub(super) async fn get_host(&self, name: &str) -> Result<Host, StoreError> {
        let sql = self.sql(&format!("SELECT {HOST_COLUMNS} FROM hosts WHERE name = $1"));
        let row = sqlx::query(&sql)
            .bind(name)
            .optional_row(&self.pool, "read a host")
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "host",
                name: name.to_owned(),
            })?;
        let mut host = host_from_row(&row)?;
        host.admitted = self
            .admissions(Some(name))
            .await?
            .remove(name)
            .unwrap_or_default();
        Ok(host)
    }

    pub(super) async fn enroll_host(
        &self,
        token_id: &str,
        secret_hash: &str,
        new: NewHost,
        requested: &[Role],
    ) -> Result<(Host, JoinToken), StoreError> {
        // Read before the transaction: a read on another pooled connection while the transaction
        // holds the token's row lock starves the pool when many hosts enroll at once (every
        // connection then waits for that lock, and the holder for a connection).
        let on_this_name = self
            .assignments_where("WHERE a.host_name = $1", Some(&new.name))
            .await?;
        let mut transaction = self.begin_write().await?;
        let token = match self
            .redeem_in(&mut transaction, token_id, secret_hash, now_ms())
            .await
        {
            Ok(token) => token,
            Err(error) => {
                transaction.rollback("roll back an enrollment").await?;
                return Err(error);
            }
        };
        let granted: Vec<Role> = if requested.is_empty() {
            token.roles.clone()
        } else if let Some(refused) = requested.iter().find(|role| !token.roles.contains(role)) {
            tracing::debug!(role = %refused, "a requested role is not allowed by the token");
            transaction.rollback("roll back an enrollment").await?;
            return Err(StoreError::TokenRefused {
                id: token.id,
                reason: TokenRefusal::RoleNotAllowed,
            });
        } else {
            requested.to_vec()
        };
        // Whatever the host calls itself, it gets nothing its token does not allow: a name that an
        // admin assigned roles of another cluster (or, for a token that names roles, other roles)
        // is refused, so it cannot take over those roles and their secrets.
        let claimed: Vec<String> = on_this_name
            .iter()
            .filter(|assignment| {
                assignment.cluster != token.cluster
                    || (!token.roles.is_empty() && !token.roles.contains(&assignment.role))
            })
            .map(|assignment| format!("{} of cluster {}", assignment.role, assignment.cluster))
            .collect();
        if !claimed.is_empty() {
            transaction.rollback("roll back an enrollment").await?;
            let message = format!(
                "enrollment refused: host name {} holds {}, which join token {} (cluster {}) does \
                 not allow",
                new.name,
                claimed.join(", "),
                token.id,
                token.cluster
            );
            tracing::warn!(host = %new.name, token = %token.id, reason = %message, "enrollment refused");
            let mut events = self.begin_write().await?;
            self.insert_event(
                &mut events,
                "host.enroll-refused",
                &token.cluster,
                &new.name,
                &Actor(format!("token:{}", token.id)),
                &message,
            )
            .await?;
            events.commit("record a refused enrollment").await?;
            return Err(StoreError::TokenRefused {
                id: token.id,
                reason: TokenRefusal::HostNameClaimed,
            });
        }
        // The host's labels are its token's: an agent may repeat them, never add or change one.
        if let Some((key, value)) = new
            .labels
            .iter()
            .find(|(key, value)| token.labels.get(*key) != Some(*value))
        {
            tracing::warn!(host = %new.name, token = %token.id, label = %key, value = %value,
                "enrollment refused: a label the token does not give");
            transaction.rollback("roll back an enrollment").await?;
            return Err(StoreError::TokenRefused {
                id: token.id,
                reason: TokenRefusal::LabelNotBound,
            });
        }
        let new = NewHost {
            labels: token.labels.clone(),
            ..new
        };
        let cluster = self.cluster_in(&mut **transaction, &token.cluster).await?;
        self.insert_host(&mut transaction, &new, &cluster.id, now_ms())
            .await?;
        let actor = Actor(format!("token:{}", token.id));
        if !granted.is_empty() {
            let held: Vec<Role> = on_this_name
                .iter()
                .filter(|assignment| assignment.cluster == token.cluster)
                .map(|assignment| assignment.role)
                .collect();
            for role in granted.into_iter().filter(|role| !held.contains(role)) {
                let join = NewAssignment {
                    cluster: cluster.name.clone(),
                    role,
                    name: None,
                    host: new.name.clone(),
                    port: None,
                    load_balancer: None,
                };
                match self
                    .assign_in(&mut transaction, &cluster, join, &actor)
                    .await
                {
                    Ok(_) => {}
                    Err(StoreError::Conflict(reason)) => {
                        let message = format!("not joined as {role}: {reason}");
                        self.insert_event(
                            &mut transaction,
                            "host.join-skipped",
                            &cluster.name,
                            &new.name,
                            &actor,
                            &message,
                        )
                        .await?;
                    }
                    Err(error) => return Err(error),
                }
            }
        }
        let claimed = self.claim_bootstrap(&mut transaction, &new.name).await?;
        for cluster_id in &claimed {
            self.bump(&mut transaction, cluster_id, policy::Change::Cluster)
                .await?;
        }
        let message = format!(
            "host enrolled with join token {} at address {}",
            token.id, new.advertise_address
        );
        self.insert_event(
            &mut transaction,
            "host.enrolled",
            &token.cluster,
            &new.name,
            &actor,
            &message,
        )
        .await?;
        transaction.commit("commit an enrollment").await?;
        let host = self.get_host_by_id(&new.id).await?;
        Ok((host, token))
    }

    pub(super) async fn get_host_by_id(&self, id: &str) -> Result<Host, StoreError> {
        self.host_in(&self.pool, "id", id)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "host",
                name: id.to_owned(),
            })
    }

    pub(super) async fn host_generation(&self, id: &str) -> Result<Option<u64>, StoreError> {
        let sql = self.sql("SELECT generation FROM hosts WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .optional_row(&self.pool, "read a host's generation")
            .await?;
        row.map(|row| generation_from(row.value("generation")?))
            .transpose()
    }

    pub(super) async fn host_generations(
        &self,
        changed_since_ms: Option<i64>,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = match changed_since_ms {
            Some(since) => {
                let sql =
                    self.sql("SELECT id, generation FROM hosts WHERE generation_changed_at >= $1");
                sqlx::query(&sql)
                    .bind(since)
                    .rows(&self.pool, "read hosts' generations")
                    .await?
            }
            None => {
                sqlx::query("SELECT id, generation FROM hosts")
                    .rows(&self.pool, "read hosts' generations")
                    .await?
            }
        };
        rows.iter()
            .map(|row| Ok((row.value("id")?, generation_from(row.value("generation")?)?)))
            .collect()
    }

    /// Records liveness in chunks of one short transaction each: a commit (an fsync on SQLite)
    /// for up to [`LIVENESS_CHUNK`] hosts. A chunk never waits for a row lock: it skips the hosts
    /// another write holds (a status report, a bump of their generation) and records those one
    /// statement each once it committed. A batch that held some hosts while it waited for others
    /// could close a circle with a write that holds those and waits for these (a deadlock, which
    /// the database breaks by failing one of them). Returns the hosts not up (not recorded).
    pub(super) async fn record_liveness(
        &self,
        seen: &[(String, i64)],
    ) -> Result<Vec<String>, StoreError> {
        let mut sorted = seen.to_vec();
        sorted.sort();
        let mut not_up = Vec::new();
        for chunk in sorted.chunks(LIVENESS_CHUNK) {
            let mut transaction = self.begin_write().await?;
            let recorded = self.record_liveness_chunk(&mut transaction, chunk).await?;
            transaction.commit("commit hosts' heartbeats").await?;
            for (id, at) in chunk.iter().filter(|(id, _)| !recorded.contains(id)) {
                let sql =
                    self.sql("UPDATE hosts SET last_seen_at = $1 WHERE state = 'up' AND id = $2");
                let updated = sqlx::query(&sql)
                    .bind(at)
                    .bind(id)
                    .run(&self.pool, "record a host's heartbeat")
                    .await?
                    .rows_affected();
                if updated == 0 {
                    not_up.push(id.clone());
                }
            }
        }
        Ok(not_up)
    }

    /// Records the chunk's hosts that are up and that no other transaction holds; returns their
    /// ids.
    async fn record_liveness_chunk(
        &self,
        transaction: &mut PoolConnection<Any>,
        chunk: &[(String, i64)],
    ) -> Result<std::collections::BTreeSet<String>, StoreError> {
        // One time for the chunk: the latest heartbeat in it, at most one batch interval later
        // than the earliest.
        let at = chunk.iter().map(|(_, at)| *at).max().unwrap_or_default();
        let ids = |first: usize| placeholders(first, chunk.len());
        let ids_of = |rows: Vec<AnyRow>| -> Result<_, StoreError> {
            rows.iter().map(|row| row.value("id")).collect()
        };
        match self.dialect {
            Dialect::Sqlite | Dialect::Postgres => {
                // SQLite has one writer: nothing to skip.
                let sql = if self.dialect == Dialect::Sqlite {
                    format!(
                        "UPDATE hosts SET last_seen_at = $1 WHERE state = 'up' AND id IN ({})
                         RETURNING id",
                        ids(2)
                    )
                } else {
                    format!(
                        "UPDATE hosts SET last_seen_at = $1 WHERE id IN (SELECT id FROM hosts
                             WHERE state = 'up' AND id IN ({}) FOR UPDATE SKIP LOCKED)
                         RETURNING id",
                        ids(2)
                    )
                };
                let mut query = sqlx::query(&sql).bind(at);
                for (id, _) in chunk {
                    query = query.bind(id);
                }
                ids_of(
                    query
                        .rows(&mut **transaction, "record hosts' heartbeats")
                        .await?,
                )
            }
            // MySQL cannot read the table it updates in a subquery: the rows are locked first.
            Dialect::MySql => {
                let sql = self.sql(&format!(
                    "SELECT id FROM hosts WHERE state = 'up' AND id IN ({}) FOR UPDATE SKIP LOCKED",
                    ids(1)
                ));
                let mut query = sqlx::query(&sql);
                for (id, _) in chunk {
                    query = query.bind(id);
                }
                let locked: std::collections::BTreeSet<String> = ids_of(
                    query
                        .rows(&mut **transaction, "record hosts' heartbeats")
                        .await?,
                )?;
                if !locked.is_empty() {
                    let sql = self.sql(&format!(
                        "UPDATE hosts SET last_seen_at = $1 WHERE id IN ({})",
                        placeholders(2, locked.len())
                    ));
                    let mut query = sqlx::query(&sql).bind(at);
                    for id in &locked {
                        query = query.bind(id);
                    }
                    query
                        .run(&mut **transaction, "record hosts' heartbeats")
                        .await?;
                }
                Ok(locked)
            }
        }
    }

    pub(super) async fn mark_stale_hosts_down(
        &self,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let cutoff = now_ms - ttl_ms;
        let sql = self.sql(
            "SELECT id, name, last_seen_at FROM hosts WHERE state = 'up' AND last_seen_at < $1",
        );
        let rows = sqlx::query(&sql)
            .bind(cutoff)
            .rows(&self.pool, "find silent hosts")
            .await?;
        let mut marked = Vec::new();
        for row in rows {
            let id: String = row.value("id")?;
            let name: String = row.value("name")?;
            let last_seen: i64 = row.value("last_seen_at")?;
            let mut transaction = self.begin_write().await?;
            self.lock_clusters_of_host(&mut transaction, &name).await?;
            let update = self.sql(
                "UPDATE hosts SET state = 'down' WHERE id = $1 AND state = 'up' AND last_seen_at < $2",
            );
            let updated = sqlx::query(&update)
                .bind(&id)
                .bind(cutoff)
                .run(&mut **transaction, "mark a host down")
                .await?;
            if updated.rows_affected() == 1 {
                let message = format!(
                    "host marked down: no heartbeat for {}s (TTL {}s)",
                    (now_ms - last_seen) / 1000,
                    ttl_ms / 1000
                );
                let actor = Actor("coordinator".to_owned());
                self.insert_event(&mut transaction, "host.down", "", &name, &actor, &message)
                    .await?;
                self.replan_host_clusters(&mut transaction, &name).await?;
                // A load balancer that went down is no longer waited for, a server on it no
                // longer holds the others.
                for (cluster_id, _) in self.host_clusters(&mut transaction, &name, None).await? {
                    self.bump(&mut transaction, &cluster_id, policy::Change::HostState)
                        .await?;
                }
                marked.push(name);
            }
            transaction.commit("commit a host's state").await?;
        }
        Ok(marked)
    }

    pub(super) async fn set_host_drained(
        &self,
        name: &str,
        drained: bool,
        actor: &Actor,
    ) -> Result<Host, StoreError> {
        let mut transaction = self.begin_write().await?;
        self.lock_clusters_of_host(&mut transaction, name).await?;
        let sql =
            self.sql("UPDATE hosts SET drained = $1, generation = generation + 1, generation_changed_at = $2 WHERE name = $3");
        let updated = sqlx::query(&sql)
            .bind(i64::from(drained))
            .bind(now_ms())
            .bind(name)
            .run(&mut **transaction, "drain a host")
            .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                kind: "host",
                name: name.to_owned(),
            });
        }
        let clusters_sql =
            self.sql("SELECT DISTINCT cluster_id FROM assignments WHERE host_name = $1");
        let rows = sqlx::query(&clusters_sql)
            .bind(name)
            .rows(&mut **transaction, "read a host's clusters")
            .await?;
        for row in rows {
            let cluster_id: String = row.value("cluster_id")?;
            self.bump(&mut transaction, &cluster_id, policy::Change::Cluster)
                .await?;
        }
        self.replan_host_clusters(&mut transaction, name).await?;
        let (kind, message) = if drained {
            (
                "host.drained",
                "host drained: its servers leave the backends and its components stop",
            )
        } else {
            (
                "host.undrained",
                "host undrained: its components start again",
            )
        };
        self.insert_event(&mut transaction, kind, "", name, actor, message)
            .await?;
        transaction.commit("commit a drain").await?;
        self.get_host(name).await
    }

    pub(super) async fn remove_host(
        &self,
        name: &str,
        force: bool,
        actor: &Actor,
    ) -> Result<(), StoreError> {
        let host = self.get_host(name).await?;
        if !force {
            if !host.drained {
                return Err(StoreError::Conflict(format!(
                    "host '{name}' is not drained; drain it first (muster host drain {name}) or pass --force"
                )));
            }
            if host.last_seen_ms.is_some()
                && host.state == HostState::Up
                && host.applied_generation < host.generation
            {
                return Err(StoreError::Conflict(format!(
                    "host '{name}' has not yet applied its drain (generation {} of {}); wait, or pass --force",
                    host.applied_generation, host.generation
                )));
            }
        }
        let mut transaction = self.begin_write().await?;
        let clusters_sql =
            self.sql("SELECT DISTINCT cluster_id FROM assignments WHERE host_name = $1");
        let rows = sqlx::query(&clusters_sql)
            .bind(name)
            .rows(&mut **transaction, "read a host's clusters")
            .await?;
        let mut cluster_ids = Vec::new();
        for row in rows {
            let cluster_id: String = row.value("cluster_id")?;
            self.bump(&mut transaction, &cluster_id, policy::Change::Cluster)
                .await?;
            cluster_ids.push(cluster_id);
        }
        // Its bootstrap tasks go to another host of each cluster, finished ones finished: deleted,
        // they would leave the cluster not bootstrapped, and every host would drop its
        // components.
        for (table, column, value) in [
            ("assignments", "host_name", name),
            ("component_status", "host_id", host.id.as_str()),
            ("host_admissions", "host_name", name),
            ("hosts", "id", host.id.as_str()),
        ] {
            let sql = self.sql(&format!("DELETE FROM {table} WHERE {column} = $1"));
            sqlx::query(&sql)
                .bind(value)
                .run(&mut **transaction, "remove a host")
                .await?;
        }
        for cluster_id in &cluster_ids {
            self.rehome_bootstrap(&mut transaction, cluster_id).await?;
            let cluster_name_sql = self.sql("SELECT name FROM clusters WHERE id = $1");
            let cluster_name: String = sqlx::query(&cluster_name_sql)
                .bind(cluster_id)
                .row(&mut **transaction, "read a cluster")
                .await?
                .value("name")?;
            self.replan_cluster(&mut transaction, cluster_id, &cluster_name)
                .await?;
        }
        let message = format!(
            "host removed with its components; its certificate no longer works (host id {})",
            host.id
        );
        self.insert_event(&mut transaction, "host.removed", "", name, actor, &message)
            .await?;
        transaction.commit("commit a host's removal").await?;
        Ok(())
    }
}

/// `count` placeholders from `$first` on, for an `IN (…)` list: `$2, $3, $4`.
fn placeholders(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|index| format!("${index}"))
        .collect::<Vec<_>>()
        .join(", ")
}
