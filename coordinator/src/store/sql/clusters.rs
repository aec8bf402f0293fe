//! Clusters: their ODB settings and sealed secrets.

use super::*;

impl SqlStore {
    pub(super) async fn create_cluster(
        &self,
        new: NewCluster,
        actor: &Actor,
    ) -> Result<Cluster, StoreError> {
        let id = secrets::random_hex(8)?;
        let created_at_ms = now_ms();
        let secrets = &new.secrets;
        let sql = self.sql(
            "INSERT INTO clusters (id, name, description, odb_type, odb_host, odb_port, odb_user,
                 odb_db_name, odb_schema, has_odb_password, odb_password_sealed, secret_key_sealed,
                 jwt_secret_sealed, admin_invoke_password_sealed, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        );
        let mut transaction = self.begin_write().await?;
        let inserted = sqlx::query(&sql)
            .bind(&id)
            .bind(&new.name)
            .bind(&new.description)
            .bind(new.odb.odb_type.zato_name())
            .bind(&new.odb.host)
            .bind(i64::from(new.odb.port))
            .bind(&new.odb.user)
            .bind(&new.odb.db_name)
            .bind(&new.odb.postgresql_schema)
            .bind(i64::from(!secrets.odb_password.is_empty()))
            .bind(self.seal(&id, "odb_password", &secrets.odb_password)?)
            .bind(self.seal(&id, "secret_key", &secrets.secret_key)?)
            .bind(self.seal(&id, "jwt_secret", &secrets.jwt_secret)?)
            .bind(self.seal(&id, "admin_invoke_password", &secrets.admin_invoke_password)?)
            .bind(created_at_ms)
            .execute(&mut **transaction)
            .await;
        match inserted {
            Err(error) if is_unique_violation(&error) => {
                return Err(StoreError::AlreadyExists {
                    kind: "cluster",
                    name: new.name,
                });
            }
            other => other.map_err(database("create a cluster"))?,
        };
        let message = match new.odb.odb_type {
            OdbType::Sqlite if new.odb.db_name.is_empty() => {
                "cluster created (ODB sqlite, a file on the agent's host)".to_owned()
            }
            OdbType::Sqlite => format!("cluster created (ODB sqlite {})", new.odb.db_name),
            odb_type => format!(
                "cluster created (ODB {odb_type} {}@{}:{}/{})",
                new.odb.user, new.odb.host, new.odb.port, new.odb.db_name
            ),
        };
        self.insert_event(
            &mut transaction,
            "cluster.created",
            &new.name,
            "",
            actor,
            &message,
        )
        .await?;
        transaction.commit("commit a new cluster").await?;
        Ok(Cluster {
            id,
            name: new.name,
            description: new.description,
            has_odb_password: !secrets.odb_password.is_empty(),
            odb: new.odb,
            created_at_ms,
            scheduler_target: String::new(),
            servers_started: false,
            first_server: String::new(),
            services_revision: String::new(),
            config_revision: String::new(),
            python_revision: String::new(),
            user_conf_revision: String::new(),
            odb_epoch: 0,
            odb_empty: false,
            restart_epoch: 0,
            rollout_paused: false,
            server_settings: BTreeMap::new(),
            rollout_pause_reason: String::new(),
            rollout_revert_reason: String::new(),
            rollout_strategy: Default::default(),
            restart_epoch_same: None,
            role_restart_epochs: BTreeMap::new(),
            role_settings: BTreeMap::new(),
        })
    }

    pub(super) async fn list_clusters(&self) -> Result<Vec<Cluster>, StoreError> {
        let sql = format!("SELECT {CLUSTER_COLUMNS} FROM clusters ORDER BY created_at, name");
        let rows = sqlx::query(&sql).rows(&self.pool, "list clusters").await?;
        rows.iter().map(cluster_from_row).collect()
    }

    pub(super) async fn get_cluster(&self, name: &str) -> Result<Cluster, StoreError> {
        self.cluster_in(&self.pool, name).await
    }

    /// The cluster named `name`, read through `executor` (inside a transaction: its own
    /// connection, never a second one from the pool that the transaction's locks could starve).
    pub(super) async fn cluster_in(
        &self,
        executor: impl Executor<'_, Database = Any>,
        name: &str,
    ) -> Result<Cluster, StoreError> {
        let sql = self.sql(&format!(
            "SELECT {CLUSTER_COLUMNS} FROM clusters WHERE name = $1"
        ));
        let row = sqlx::query(&sql)
            .bind(name)
            .optional_row(executor, "read a cluster")
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "cluster",
                name: name.to_owned(),
            })?;
        cluster_from_row(&row)
    }

    /// Refuses `install` (the `zato.install` server setting) when the host of one of the
    /// cluster's servers reports its Zato installations and names no such one: the server
    /// could not start with it (its agent would keep it running as it is, out of the turn). A
    /// host that never said (an agent before installations) is not held against it.
    async fn check_install_on_hosts(
        &self,
        transaction: &mut PoolConnection<Any>,
        cluster_id: &str,
        role: Role,
        install: &str,
    ) -> Result<(), StoreError> {
        let sql = self.sql(
            "SELECT a.name, a.host_name, h.zato_installs FROM assignments a
             JOIN hosts h ON h.name = a.host_name
             WHERE a.cluster_id = $1 AND a.role = $2 ORDER BY a.name",
        );
        let rows = sqlx::query(&sql)
            .bind(cluster_id)
            .bind(role.cli_name())
            .rows(
                &mut **transaction,
                "read the Zato installations of a cluster's hosts",
            )
            .await?;
        for row in &rows {
            let installs = long_text(row, "zato_installs")?.unwrap_or_default();
            if !installs.is_empty() && !installs.split(',').any(|name| name == install) {
                let component: String = row.value("name")?;
                let host: String = row.value("host_name")?;
                return Err(StoreError::Invalid(format!(
                    "zato.install {install:?}: host {host} ({role} {component}) has no Zato \
                     installation of that name; its agent has {} (agent.toml [zato_installs])",
                    installs.replace(',', ", ")
                )));
            }
        }
        Ok(())
    }

    /// [`Self::cluster_in`] under the cluster's row lock ([`Self::lock_clusters`]): read again
    /// once locked, so a change computed from it (a new restart epoch, merged settings) is not
    /// lost to another made at once.
    pub(super) async fn locked_cluster(
        &self,
        transaction: &mut PoolConnection<Any>,
        name: &str,
    ) -> Result<Cluster, StoreError> {
        let cluster = self.cluster_in(&mut **transaction, name).await?;
        self.lock_clusters(transaction, [cluster.id]).await?;
        self.cluster_in(&mut **transaction, name).await
    }

    pub(super) async fn cluster_secrets(&self, name: &str) -> Result<ClusterSecrets, StoreError> {
        let sql = self.sql(
            "SELECT id, odb_password_sealed, secret_key_sealed, jwt_secret_sealed,
                 admin_invoke_password_sealed FROM clusters WHERE name = $1",
        );
        let row = sqlx::query(&sql)
            .bind(name)
            .optional_row(&self.pool, "read a cluster's secrets")
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "cluster",
                name: name.to_owned(),
            })?;
        let id: String = row.value("id")?;
        let column = |column: &str| -> Result<String, StoreError> {
            let sealed: String = row.value(format!("{column}_sealed").as_str())?;
            self.open(&id, column, &sealed)
        };
        Ok(ClusterSecrets {
            odb_password: column("odb_password")?,
            secret_key: column("secret_key")?,
            jwt_secret: column("jwt_secret")?,
            admin_invoke_password: column("admin_invoke_password")?,
        })
    }

    pub(super) async fn delete_cluster(&self, name: &str, actor: &Actor) -> Result<(), StoreError> {
        let cluster = self.get_cluster(name).await?;
        let mut transaction = self.begin_write().await?;
        self.bump(&mut transaction, &cluster.id, policy::Change::Cluster)
            .await?;
        for table in [
            "assignments",
            "bootstrap_tasks",
            "cluster_services",
            "cluster_config_files",
            "cluster_python_wheels",
        ] {
            let sql = self.sql(&format!("DELETE FROM {table} WHERE cluster_id = $1"));
            sqlx::query(&sql)
                .bind(&cluster.id)
                .run(&mut **transaction, "delete a cluster's components")
                .await?;
        }
        let tokens_sql = self.sql("DELETE FROM join_tokens WHERE cluster_id = $1");
        let tokens = sqlx::query(&tokens_sql)
            .bind(&cluster.id)
            .run(&mut **transaction, "delete a cluster's join tokens")
            .await?;
        let cluster_sql = self.sql("DELETE FROM clusters WHERE id = $1");
        let deleted = sqlx::query(&cluster_sql)
            .bind(&cluster.id)
            .run(&mut **transaction, "delete a cluster")
            .await?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                kind: "cluster",
                name: name.to_owned(),
            });
        }
        let message = format!(
            "cluster deleted with its {} join token(s)",
            tokens.rows_affected()
        );
        self.insert_event(
            &mut transaction,
            "cluster.deleted",
            name,
            "",
            actor,
            &message,
        )
        .await?;
        transaction.commit("commit a cluster's deletion").await?;
        Ok(())
    }

    /// Rebuilds cluster `name` on its ODB, which a server reported empty: the next ODB
    /// generation, the bootstrap tasks to run again, the servers to start one first again (as on
    /// a fresh ODB), the removals of the configuration forgotten (the new ODB has none of the old
    /// objects), every host of the cluster re-rendered. Refused when no server of the current
    /// generation reports the ODB empty: a rebuild creates every server, the scheduler and the
    /// dashboard again.
    pub(super) async fn rebuild_odb(&self, name: &str, actor: &Actor) -> Result<u64, StoreError> {
        let mut transaction = self.begin_write().await?;
        let cluster = self.locked_cluster(&mut transaction, name).await?;
        if !cluster.odb_empty {
            return Err(StoreError::Conflict(format!(
                "no server of cluster {name} reports its ODB empty; a rebuild is only for an ODB \
                 replaced by an empty one (it creates every server, the scheduler and the \
                 dashboard again)"
            )));
        }
        let epoch = cluster.odb_epoch + 1;
        let update = self.sql(
            "UPDATE clusters SET odb_epoch = $1, servers_started = 0, first_server = '',
                 config_removals = NULL WHERE id = $2",
        );
        sqlx::query(&update)
            .bind(i64::try_from(epoch).unwrap_or(i64::MAX))
            .bind(&cluster.id)
            .run(&mut **transaction, "start a cluster's ODB generation")
            .await?;
        let tasks = self.sql(
            "UPDATE bootstrap_tasks SET done = 0, last_error = '', updated_at = $1
             WHERE cluster_id = $2",
        );
        sqlx::query(&tasks)
            .bind(now_ms())
            .bind(&cluster.id)
            .run(&mut **transaction, "run a cluster's bootstrap again")
            .await?;
        self.rehome_bootstrap(&mut transaction, &cluster.id).await?;
        self.replan_cluster(&mut transaction, &cluster.id, name)
            .await?;
        self.bump(&mut transaction, &cluster.id, policy::Change::Cluster)
            .await?;
        self.insert_event(
            &mut transaction,
            "cluster.odb-rebuild",
            name,
            "",
            actor,
            &format!(
                "rebuilding the cluster on its empty ODB (generation {epoch}): `zato create odb` \
                 and `create cluster` again, then every server (one first), the scheduler and \
                 the dashboard created again; each runs on as it was until then"
            ),
        )
        .await?;
        transaction.commit("commit a cluster's ODB rebuild").await?;
        Ok(epoch)
    }

    /// A rolling restart of cluster `name`'s servers: the next restart epoch, which every server
    /// gets; each restarts at its turn ([`policy::RestartGoal`]). Returns the epoch and the
    /// servers, by name. Refused when the cluster has no server.
    pub(super) async fn restart_servers(
        &self,
        name: &str,
        actor: &Actor,
    ) -> Result<(u64, Vec<String>), StoreError> {
        let restart = self.restart_roles(name, &[Role::Server], actor).await?;
        Ok((restart.restart_epoch, restart.servers))
    }

    /// A rolling restart of cluster `name`'s components of `roles`, in Zato's order
    /// ([`policy::ROLLOUT_ORDER`]): the servers under the next restart epoch
    /// ([`Self::start_rolling_restart`]), each other role under its own next one, which its
    /// components get; each restarts at its role's turn ([`policy::RestartGoal::due_as`]).
    /// Refused for a role the cluster has no component of.
    pub(super) async fn restart_roles(
        &self,
        name: &str,
        roles: &[Role],
        actor: &Actor,
    ) -> Result<RollingRestart, StoreError> {
        let mut transaction = self.begin_write().await?;
        let cluster = self.locked_cluster(&mut transaction, name).await?;
        let mut others = Vec::new();
        let mut epochs = cluster.role_restart_epochs.clone();
        let mut described = Vec::new();
        for role in policy::ROLLOUT_ORDER
            .into_iter()
            .filter(|role| roles.contains(role) && *role != Role::Server)
        {
            let names = self
                .components_of_role(&mut transaction, &cluster, role)
                .await?;
            if names.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "cluster {name} has no {} to restart",
                    role.cli_name()
                )));
            }
            let epoch = epochs.entry(role.cli_name().to_owned()).or_insert(0);
            *epoch += 1;
            described.push(format!(
                "{} {} (restart epoch {epoch})",
                role.cli_name(),
                names.join(", ")
            ));
            others.extend(names.into_iter().map(|component| (role, component)));
        }
        let (restart_epoch, servers) = if roles.contains(&Role::Server) {
            let restart = self
                .start_rolling_restart(
                    &mut transaction,
                    &cluster,
                    actor,
                    "rolling restart",
                    RolloutStart::now(RolloutCause::Restart),
                    None,
                )
                .await?;
            if restart.1.is_empty() {
                return Err(StoreError::Conflict(format!(
                    "cluster {name} has no server to restart"
                )));
            }
            restart
        } else {
            (cluster.restart_epoch, Vec::new())
        };
        if !others.is_empty() {
            self.store_role_epochs(&mut transaction, &cluster, &epochs)
                .await?;
            self.insert_event(
                &mut transaction,
                "cluster.rolling-restart",
                &cluster.name,
                "",
                actor,
                &format!(
                    "rolling restart in Zato's order (dashboards, servers, load balancers, the \
                     scheduler), each role once those before it have restarted: {}",
                    described.join("; ")
                ),
            )
            .await?;
        }
        transaction.commit("commit a rolling restart").await?;
        Ok(RollingRestart {
            restart_epoch,
            servers,
            others,
        })
    }

    /// The names of `cluster`'s components of `role`, in order.
    async fn components_of_role(
        &self,
        transaction: &mut PoolConnection<Any>,
        cluster: &Cluster,
        role: Role,
    ) -> Result<Vec<String>, StoreError> {
        sqlx::query(
            &self.sql(
                "SELECT name FROM assignments WHERE cluster_id = $1 AND role = $2 ORDER BY name",
            ),
        )
        .bind(&cluster.id)
        .bind(role.cli_name())
        .rows(&mut **transaction, "read a cluster's components of a role")
        .await?
        .iter()
        .map(|row| row.value("name"))
        .collect()
    }

    /// Stores `epochs` as `cluster`'s restart epochs of its dashboards, load balancers and
    /// scheduler, and re-renders its members: each component of a role whose epoch moved
    /// restarts at the role's turn.
    async fn store_role_epochs(
        &self,
        transaction: &mut PoolConnection<Any>,
        cluster: &Cluster,
        epochs: &BTreeMap<String, u64>,
    ) -> Result<(), StoreError> {
        sqlx::query(&self.sql("UPDATE clusters SET restart_epochs = $1 WHERE id = $2"))
            .bind(serde_json::to_string(epochs).map_err(|error| {
                StoreError::Corrupt(format!("a cluster's restart epochs: {error}"))
            })?)
            .bind(&cluster.id)
            .run(&mut **transaction, "start a rolling restart of a role")
            .await?;
        self.bump(
            transaction,
            &cluster.id,
            policy::Change::Restarts { was_due: true },
        )
        .await
    }

    /// `cluster`'s settings of `role` now, and with `set` (checked: [`checked_change`]) and
    /// `unset`, checked as a whole; a newly named `zato.install` must be on every host of the
    /// role's components.
    async fn changed_settings(
        &self,
        transaction: &mut PoolConnection<Any>,
        cluster: &Cluster,
        role: Role,
        set: BTreeMap<String, String>,
        unset: &[String],
    ) -> Result<(BTreeMap<String, String>, BTreeMap<String, String>), StoreError> {
        use muster_proto::server_settings::{self, DEFAULT_INSTALL, ZATO_INSTALL};
        let before = cluster.settings_of(role);
        let mut settings = before.clone();
        settings.extend(set);
        for key in unset {
            settings.remove(key);
        }
        server_settings::check_all(role, &settings)
            .map_err(|error| StoreError::Invalid(error.to_string()))?;
        let install = settings.get(ZATO_INSTALL);
        if let Some(install) = install
            .filter(|name| *name != DEFAULT_INSTALL && before.get(ZATO_INSTALL) != Some(*name))
        {
            self.check_install_on_hosts(transaction, &cluster.id, role, install)
                .await?;
        }
        Ok((before, settings))
    }

    /// Sets and unsets the settings of cluster `name`'s scheduler or dashboards (`role`;
    /// [`muster_proto::server_settings`], checked before anything changes); a change moves the
    /// role's restart epoch on, and each of its components restarts with them at the role's
    /// turn. Settings of a role the cluster has no component of yet are kept for the ones it
    /// gets.
    pub(super) async fn configure_role(
        &self,
        name: &str,
        role: Role,
        set: &BTreeMap<String, String>,
        unset: &[String],
        actor: &Actor,
    ) -> Result<ServersConfigured, StoreError> {
        use muster_proto::server_settings;
        if !matches!(role, Role::Scheduler | Role::WebAdmin) {
            return Err(StoreError::Invalid(format!(
                "role {role}: only the scheduler's and dashboards' settings are set so (a \
                 server's are `muster configure server`, a load balancer's `muster configure \
                 load-balancer`)"
            )));
        }
        let set = checked_change(role, set, unset)?;
        let mut transaction = self.begin_write().await?;
        let cluster = self.locked_cluster(&mut transaction, name).await?;
        let (before, settings) = self
            .changed_settings(&mut transaction, &cluster, role, set, unset)
            .await?;
        let mut epochs = cluster.role_restart_epochs.clone();
        let epoch = epochs.entry(role.cli_name().to_owned()).or_insert(0);
        if settings == before {
            return Ok(ServersConfigured {
                settings,
                changed: false,
                restart_epoch: *epoch,
                servers: Vec::new(),
            });
        }
        let mut all = cluster.role_settings.clone();
        if settings.is_empty() {
            all.remove(role.cli_name());
        } else {
            all.insert(role.cli_name().to_owned(), settings.clone());
        }
        sqlx::query(&self.sql("UPDATE clusters SET role_settings = $1 WHERE id = $2"))
            .bind(
                serde_json::to_string(&all)
                    .map_err(|error| StoreError::Invalid(format!("{role} settings: {error}")))?,
            )
            .bind(&cluster.id)
            .run(&mut **transaction, "store a cluster's settings of a role")
            .await?;
        let components = self
            .components_of_role(&mut transaction, &cluster, role)
            .await?;
        let restarts = if components.is_empty() {
            "it has none yet".to_owned()
        } else {
            *epoch += 1;
            format!(
                "{} restart{} with them at the role's turn (restart epoch {epoch})",
                components.join(", "),
                if components.len() == 1 { "s" } else { "" }
            )
        };
        let restart_epoch = *epoch;
        if !components.is_empty() {
            self.store_role_epochs(&mut transaction, &cluster, &epochs)
                .await?;
        }
        self.insert_event(
            &mut transaction,
            "cluster.role-configured",
            &cluster.name,
            "",
            actor,
            &format!(
                "{role} settings now: {}; {restarts}",
                server_settings::shown(&settings)
            ),
        )
        .await?;
        transaction
            .commit("commit a cluster's settings of a role")
            .await?;
        Ok(ServersConfigured {
            settings,
            changed: true,
            restart_epoch,
            servers: components,
        })
    }

    /// Sets and unsets server settings of cluster `name` ([`muster_proto::server_settings`],
    /// checked before anything changes); a change starts a rolling restart of its servers.
    pub(super) async fn configure_servers(
        &self,
        name: &str,
        set: &BTreeMap<String, String>,
        unset: &[String],
        actor: &Actor,
    ) -> Result<ServersConfigured, StoreError> {
        let set = checked_change(Role::Server, set, unset)?;
        let mut transaction = self.begin_write().await?;
        let cluster = self.locked_cluster(&mut transaction, name).await?;
        let (_, settings) = self
            .changed_settings(&mut transaction, &cluster, Role::Server, set, unset)
            .await?;
        if settings == cluster.server_settings {
            return Ok(ServersConfigured {
                settings,
                changed: false,
                restart_epoch: cluster.restart_epoch,
                servers: Vec::new(),
            });
        }
        let configured = self
            .replace_server_settings(
                &mut transaction,
                &cluster,
                settings,
                actor,
                "server settings now",
                RolloutStart::now(RolloutCause::Settings),
            )
            .await?;
        transaction
            .commit("commit a cluster's server settings")
            .await?;
        Ok(configured)
    }

    /// Brings back cluster `name`'s server settings from before their last change (and keeps
    /// those it replaces, so a second undo goes back again), with a rolling restart. Refused when
    /// they never changed.
    pub(super) async fn undo_server_settings(
        &self,
        name: &str,
        actor: &Actor,
    ) -> Result<ServersConfigured, StoreError> {
        let mut transaction = self.begin_write().await?;
        let cluster = self.locked_cluster(&mut transaction, name).await?;
        let previous = self
            .previous_server_settings(&mut transaction, &cluster)
            .await?;
        let configured = self
            .replace_server_settings(
                &mut transaction,
                &cluster,
                previous,
                actor,
                "server settings undone, now",
                RolloutStart::now(RolloutCause::Undo),
            )
            .await?;
        transaction
            .commit("commit an undo of server settings")
            .await?;
        Ok(configured)
    }

    /// The cluster's server settings from before their last change, as checked today; refused
    /// (`Conflict`) when they never changed or are no longer valid.
    pub(super) async fn previous_server_settings(
        &self,
        transaction: &mut PoolConnection<Any>,
        cluster: &Cluster,
    ) -> Result<BTreeMap<String, String>, StoreError> {
        let row =
            sqlx::query(&self.sql("SELECT previous_server_settings FROM clusters WHERE id = $1"))
                .bind(&cluster.id)
                .row(
                    &mut **transaction,
                    "read a cluster's previous server settings",
                )
                .await?;
        let name = &cluster.name;
        let Some(previous) = settings_json_column(&row, "previous_server_settings")? else {
            return Err(StoreError::Conflict(format!(
                "cluster {name}'s server settings never changed: nothing to undo"
            )));
        };
        // Stored by an earlier release, they pass today's checks too, or are not brought back.
        muster_proto::server_settings::check_all(Role::Server, &previous).map_err(|error| {
            StoreError::Conflict(format!(
                "cluster {name}'s previous server settings are not valid any more ({error}); set \
                 them with muster configure server"
            ))
        })?;
        Ok(previous)
    }

    /// Stores `settings` as the cluster's server settings, the current ones as the previous,
    /// records it (`what` and the settings), and starts a rolling restart (`start`). For an
    /// undo (or a revert) the servers started under the restart epoch before the last change
    /// run the settings brought back, and do not restart again.
    pub(super) async fn replace_server_settings(
        &self,
        transaction: &mut PoolConnection<Any>,
        cluster: &Cluster,
        settings: BTreeMap<String, String>,
        actor: &Actor,
        what: &str,
        start: RolloutStart,
    ) -> Result<ServersConfigured, StoreError> {
        let json = |settings: &BTreeMap<String, String>| {
            serde_json::to_string(settings)
                .map_err(|error| StoreError::Invalid(format!("server settings: {error}")))
        };
        let same = match start.cause {
            RolloutCause::Undo | RolloutCause::Revert => {
                sqlx::query(&self.sql("SELECT previous_restart_epoch FROM clusters WHERE id = $1"))
                    .bind(&cluster.id)
                    .row(
                        &mut **transaction,
                        "read a cluster's previous restart epoch",
                    )
                    .await?
                    .value::<Option<i64>>("previous_restart_epoch")?
                    .map(epoch_from)
                    .transpose()?
            }
            RolloutCause::Settings | RolloutCause::Restart => None,
        };
        sqlx::query(&self.sql(
            "UPDATE clusters SET server_settings = $1, previous_server_settings = $2,
                 previous_restart_epoch = $3 WHERE id = $4",
        ))
        .bind(json(&settings)?)
        .bind(json(&cluster.server_settings)?)
        .bind(i64::try_from(cluster.restart_epoch).unwrap_or(i64::MAX))
        .bind(&cluster.id)
        .run(&mut **transaction, "store a cluster's server settings")
        .await?;
        self.insert_event(
            transaction,
            "cluster.servers-configured",
            &cluster.name,
            "",
            actor,
            &format!(
                "{what}: {}",
                muster_proto::server_settings::shown(&settings)
            ),
        )
        .await?;
        let (restart_epoch, servers) = self
            .start_rolling_restart(
                transaction,
                cluster,
                actor,
                "rolling restart for new server settings",
                start,
                same,
            )
            .await?;
        Ok(ServersConfigured {
            settings,
            changed: true,
            restart_epoch,
            servers,
        })
    }

    /// Starts a rolling restart of the cluster's servers inside `transaction` (`start`: why, and when): a
    /// new restart epoch, which every server of the cluster gets; each restarts at its turn
    /// ([`policy::RestartGoal`]), but those started under epoch `same` (which already run what
    /// it asks). Returns the epoch and the servers that restart, by name (none in the cluster:
    /// nothing starts, the epoch stays).
    async fn start_rolling_restart(
        &self,
        transaction: &mut PoolConnection<Any>,
        cluster: &Cluster,
        actor: &Actor,
        what: &str,
        start: RolloutStart,
        same: Option<u64>,
    ) -> Result<(u64, Vec<String>), StoreError> {
        let mut servers = Vec::new();
        for row in sqlx::query(&self.sql(
            "SELECT a.name, s.restart_epoch FROM assignments a
             LEFT JOIN hosts h ON h.name = a.host_name
             LEFT JOIN component_status s ON s.host_id = h.id AND s.cluster_name = $1
                 AND s.role = 'server' AND s.name = a.name
             WHERE a.cluster_id = $2 AND a.role = 'server' ORDER BY a.name",
        ))
        .bind(&cluster.name)
        .bind(&cluster.id)
        .rows(&mut **transaction, "read a cluster's servers")
        .await?
        {
            let started: Option<i64> = row.value("restart_epoch")?;
            let runs_it = started.is_some_and(|started| {
                same.is_some_and(|same| u64::try_from(started).is_ok_and(|started| started == same))
            });
            servers.push((row.value::<String>("name")?, runs_it));
        }
        if servers.is_empty() {
            return Ok((cluster.restart_epoch, Vec::new()));
        }
        let servers: Vec<String> = servers
            .into_iter()
            .filter(|(_, runs_it)| !runs_it)
            .map(|(name, _)| name)
            .collect();
        let epoch = cluster.restart_epoch + 1;
        sqlx::query(&self.sql(
            "UPDATE clusters SET restart_epoch = $1, rollout_cause = $2, restart_epoch_same = $3,
                 rollout_revert_reason = NULL WHERE id = $4",
        ))
        .bind(i64::try_from(epoch).unwrap_or(i64::MAX))
        .bind(start.cause.word())
        .bind(same.map(|same| i64::try_from(same).unwrap_or(i64::MAX)))
        .bind(&cluster.id)
        .run(&mut **transaction, "start a rolling restart")
        .await?;
        self.restart_deadline_clocks(transaction, &cluster.name, start.at_ms)
            .await?;
        self.bump(transaction, &cluster.id, policy::Change::Servers)
            .await?;
        self.bump(
            transaction,
            &cluster.id,
            policy::Change::Restarts { was_due: false },
        )
        .await?;
        self.insert_event(
            transaction,
            "cluster.rolling-restart",
            &cluster.name,
            "",
            actor,
            &if servers.is_empty() {
                format!("{what} (restart epoch {epoch}): no server restarts, each runs it already")
            } else {
                format!(
                    "{what} of the cluster's servers (restart epoch {epoch}): {}, {}, each out of \
                     rotation until its load balancers have it back",
                    servers.join(", "),
                    muster_proto::rollout::at_a_time(cluster.rollout_strategy.max_unavailable)
                )
            },
        )
        .await?;
        Ok((epoch, servers))
    }

    /// Pauses (or resumes) cluster `name`'s restart turn; says whether it changed.
    pub(super) async fn pause_rollout(
        &self,
        name: &str,
        paused: bool,
        actor: &Actor,
    ) -> Result<bool, StoreError> {
        let mut transaction = self.begin_write().await?;
        let cluster = self.locked_cluster(&mut transaction, name).await?;
        // A resume also acknowledges a revert (`muster wait` fails on one until then).
        let acknowledged = !paused && !cluster.rollout_revert_reason.is_empty();
        if cluster.rollout_paused == paused && !acknowledged {
            return Ok(false);
        }
        // An operator's pause has no reason of Muster's; a resume clears Muster's, and the
        // reason of a revert.
        sqlx::query(&self.sql(
            "UPDATE clusters SET rollout_paused = $1, rollout_pause_reason = NULL,
                 rollout_revert_reason = CASE WHEN $2 = 1 THEN NULL ELSE rollout_revert_reason END
             WHERE id = $3",
        ))
        .bind(i64::from(paused))
        .bind(i64::from(!paused))
        .bind(&cluster.id)
        .run(&mut **transaction, "pause a cluster's restart turn")
        .await?;
        if !paused {
            self.restart_deadline_clocks(&mut transaction, name, now_ms())
                .await?;
        }
        self.bump(
            &mut transaction,
            &cluster.id,
            policy::Change::Restarts { was_due: false },
        )
        .await?;
        let (kind, message) = if paused {
            (
                "cluster.rollout-paused",
                "restart turn paused: no server starts a restart until it is resumed",
            )
        } else if cluster.rollout_paused {
            ("cluster.rollout-resumed", "restart turn resumed")
        } else {
            (
                "cluster.rollout-resumed",
                "the revert of the last rollout acknowledged (auto_revert)",
            )
        };
        self.insert_event(&mut transaction, kind, name, "", actor, message)
            .await?;
        transaction
            .commit("commit a cluster's restart turn")
            .await?;
        Ok(true)
    }
}

/// The settings of `role` to set, checked, and those to unset checked by name (none both),
/// before anything is read or changed.
fn checked_change(
    role: Role,
    set: &BTreeMap<String, String>,
    unset: &[String],
) -> Result<BTreeMap<String, String>, StoreError> {
    use muster_proto::server_settings;
    let invalid = |error: muster_proto::validate::Invalid| StoreError::Invalid(error.to_string());
    let set = server_settings::check_all(role, set).map_err(invalid)?;
    for key in unset {
        if set.contains_key(key) {
            return Err(StoreError::Invalid(format!(
                "{role} setting {key:?} is both set and unset"
            )));
        }
        server_settings::check_name(role, key).map_err(invalid)?;
    }
    Ok(set)
}
