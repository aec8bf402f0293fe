//! A cluster's services (the Python modules its servers must run) and configuration (enmasse
//! files, and their env values sealed), stored whole by name with their SHA-256.

use super::*;

impl SqlStore {
    pub(super) async fn set_services(
        &self,
        cluster: &str,
        files: &[v1::ServiceFile],
        actor: &Actor,
    ) -> Result<(String, bool), StoreError> {
        let files = muster_proto::services::checked(files)
            .map_err(|refused| StoreError::Invalid(refused.to_string()))?;
        let revision = muster_proto::services::revision(&files);
        let mut transaction = self.begin_write().await?;
        let current = self.cluster_in(&mut **transaction, cluster).await?;
        if current.services_revision == revision {
            return Ok((revision, false));
        }
        let stored: Vec<(&str, &str, &str)> = files
            .iter()
            .map(|file| {
                (
                    file.name.as_str(),
                    file.sha256.as_str(),
                    file.content.as_str(),
                )
            })
            .collect();
        self.replace_cluster_files(&mut transaction, "cluster_services", &current.id, &stored)
            .await?;
        let update = self.sql("UPDATE clusters SET services_revision = $1 WHERE id = $2");
        sqlx::query(&update)
            .bind(&revision)
            .bind(&current.id)
            .run(&mut **transaction, "set a cluster's services revision")
            .await?;
        let names: Vec<&str> = files.iter().map(|file| file.name.as_str()).collect();
        let message = if files.is_empty() {
            "services removed from Muster's care: servers keep what Zato has deployed".to_owned()
        } else {
            format!(
                "services revision {} ({} file(s): {})",
                muster_proto::services::short(&revision),
                files.len(),
                names.join(", ")
            )
        };
        // Servers read their services; load balancers keep a server without them out of
        // rotation only while the cluster has services.
        let mut changes = vec![policy::Change::Servers];
        if current.services_revision.is_empty() != revision.is_empty() {
            changes.push(policy::Change::Balancers);
        }
        self.commit_environment_change(
            transaction,
            &current,
            actor,
            &changes,
            ("cluster.services-changed", &message),
            "commit a cluster's services",
        )
        .await?;
        Ok((revision, true))
    }

    pub(super) async fn cluster_services(
        &self,
        cluster: &str,
        with_content: bool,
    ) -> Result<Vec<v1::ServiceFile>, StoreError> {
        let cluster = self.get_cluster(cluster).await?;
        let files = self
            .cluster_files(&self.pool, "cluster_services", &cluster.id, with_content)
            .await?;
        Ok(files
            .into_iter()
            .map(|(name, sha256, content)| v1::ServiceFile {
                name,
                sha256,
                content,
            })
            .collect())
    }

    /// Ends a change of a cluster's environment (its services, configuration, Python
    /// dependencies or user-config files) in `transaction`: the hosts `changes` affect are told,
    /// the event (kind, message) is recorded, and it commits.
    pub(super) async fn commit_environment_change(
        &self,
        mut transaction: WriteTransaction,
        cluster: &Cluster,
        actor: &Actor,
        changes: &[policy::Change],
        (kind, message): (&str, &str),
        action: &'static str,
    ) -> Result<(), StoreError> {
        for change in changes {
            self.bump(&mut transaction, &cluster.id, change.clone())
                .await?;
        }
        self.insert_event(&mut transaction, kind, &cluster.name, "", actor, message)
            .await?;
        transaction.commit(action).await
    }

    /// Replaces a cluster's files in `table` (`cluster_services`, `cluster_config_files`) with
    /// `files`: (name, SHA-256, content).
    async fn replace_cluster_files(
        &self,
        transaction: &mut PoolConnection<Any>,
        table: &str,
        cluster_id: &str,
        files: &[(&str, &str, &str)],
    ) -> Result<(), StoreError> {
        let delete = self.sql(&format!("DELETE FROM {table} WHERE cluster_id = $1"));
        sqlx::query(&delete)
            .bind(cluster_id)
            .run(&mut **transaction, "replace a cluster's files")
            .await?;
        let insert = self.sql(&format!(
            "INSERT INTO {table} (cluster_id, name, sha256, content) VALUES ($1, $2, $3, $4)"
        ));
        for (name, sha256, content) in files {
            sqlx::query(&insert)
                .bind(cluster_id)
                .bind(*name)
                .bind(*sha256)
                .bind(*content)
                .run(&mut **transaction, "store a cluster's file")
                .await?;
        }
        Ok(())
    }

    /// A cluster's files in `table`, in name order: (name, SHA-256, content, empty unless
    /// `with_content`).
    async fn cluster_files(
        &self,
        executor: impl Executor<'_, Database = Any>,
        table: &str,
        cluster_id: &str,
        with_content: bool,
    ) -> Result<Vec<(String, String, String)>, StoreError> {
        let columns = if with_content {
            "name, sha256, content"
        } else {
            "name, sha256, NULL AS content"
        };
        let sql = self.sql(&format!(
            "SELECT {columns} FROM {table} WHERE cluster_id = $1 ORDER BY name"
        ));
        let rows = sqlx::query(&sql)
            .bind(cluster_id)
            .rows(executor, "read a cluster's files")
            .await?;
        let mut files = Vec::new();
        for row in &rows {
            let content = match (with_content, self.dialect) {
                (false, _) => String::new(),
                // MySQL's MEDIUMTEXT reaches sqlx's Any driver as a BLOB.
                (true, Dialect::MySql) => String::from_utf8(row.value("content")?)
                    .map_err(|_| StoreError::Corrupt(format!("a file in {table} is not UTF-8")))?,
                (true, _) => row.value("content")?,
            };
            files.push((row.value("name")?, row.value("sha256")?, content));
        }
        Ok(files)
    }

    pub(super) async fn set_config(
        &self,
        cluster: &str,
        files: &[v1::EnmasseFile],
        env: &BTreeMap<String, String>,
        actor: &Actor,
    ) -> Result<(String, bool), StoreError> {
        let files = muster_proto::config::checked(files, env)
            .map_err(|refused| StoreError::Invalid(refused.to_string()))?;
        let secrets = self.cluster_secrets(cluster).await?;
        let revision = muster_proto::config::revision(&files, env, &secrets.secret_key);
        let mut transaction = self.begin_write().await?;
        let current = self.cluster_in(&mut **transaction, cluster).await?;
        if current.config_revision == revision {
            return Ok((revision, false));
        }
        // What the files held before and the new ones lack is deleted once the new ones are
        // imported, with what earlier revisions left and no server imported yet. No file: the
        // configuration leaves Muster's care, and Zato keeps every object it has.
        let removals = if files.is_empty() {
            Vec::new()
        } else {
            let previous = self
                .cluster_files(
                    &mut **transaction,
                    "cluster_config_files",
                    &current.id,
                    true,
                )
                .await?;
            let mut before = Vec::new();
            for (_, _, content) in &previous {
                // Stored files were checked; one that no longer parses names nothing.
                before.extend(muster_proto::config::objects(content).unwrap_or_default());
            }
            let mut now = Vec::new();
            for file in &files {
                now.extend(muster_proto::config::objects(&file.content).unwrap_or_default());
            }
            let pending = self
                .config_removals_in(&mut **transaction, &current.id)
                .await?;
            muster_proto::config::removals(&pending, &before, &now)
        };
        let stored: Vec<(&str, &str, &str)> = files
            .iter()
            .map(|file| {
                (
                    file.name.as_str(),
                    file.sha256.as_str(),
                    file.content.as_str(),
                )
            })
            .collect();
        self.replace_cluster_files(
            &mut transaction,
            "cluster_config_files",
            &current.id,
            &stored,
        )
        .await?;
        let env_json =
            serde_json::to_string(env).map_err(|error| StoreError::Corrupt(error.to_string()))?;
        let update = self.sql(
            "UPDATE clusters SET config_revision = $1, config_env_sealed = $2, config_removals = $3 \
             WHERE id = $4",
        );
        sqlx::query(&update)
            .bind(&revision)
            .bind(self.seal(&current.id, "config_env", &env_json)?)
            .bind(removals_json(&removals)?)
            .bind(&current.id)
            .run(&mut **transaction, "set a cluster's configuration revision")
            .await?;
        let names: Vec<&str> = files.iter().map(|file| file.name.as_str()).collect();
        let message = if files.is_empty() {
            "configuration removed from Muster's care: Zato keeps the objects it has".to_owned()
        } else {
            format!(
                "configuration revision {} ({} file(s): {}; {} env value(s))",
                muster_proto::services::short(&revision),
                files.len(),
                names.join(", "),
                env.len()
            )
        };
        self.commit_environment_change(
            transaction,
            &current,
            actor,
            &[policy::Change::Servers],
            ("cluster.config-changed", &message),
            "commit a cluster's configuration",
        )
        .await?;
        Ok((revision, true))
    }

    /// The objects the importing server's agent is to delete once it imports the cluster's
    /// configuration (of the cluster of id `cluster_id`).
    pub(super) async fn config_removals_in(
        &self,
        executor: impl Executor<'_, Database = Any>,
        cluster_id: &str,
    ) -> Result<Vec<v1::EnmasseObject>, StoreError> {
        let row = sqlx::query(&self.sql("SELECT config_removals FROM clusters WHERE id = $1"))
            .bind(cluster_id)
            .row(executor, "read a cluster's configuration removals")
            .await?;
        let Some(text) = self.long_text(&row, "config_removals")? else {
            return Ok(Vec::new());
        };
        let listed: Vec<(String, String, String)> = serde_json::from_str(&text)
            .map_err(|error| StoreError::Corrupt(format!("configuration removals: {error}")))?;
        Ok(listed
            .into_iter()
            .map(|(section, name, kind)| v1::EnmasseObject {
                section,
                name,
                kind,
            })
            .collect())
    }

    /// A cluster's enmasse files (with their contents when `with_content`) and its env values
    /// (opened only when `with_content`; else their names with empty values).
    pub(super) async fn cluster_config(
        &self,
        cluster: &str,
        with_content: bool,
    ) -> Result<(Vec<v1::EnmasseFile>, BTreeMap<String, String>), StoreError> {
        let cluster = self.get_cluster(cluster).await?;
        let files: Vec<v1::EnmasseFile> = self
            .cluster_files(
                &self.pool,
                "cluster_config_files",
                &cluster.id,
                with_content,
            )
            .await?
            .into_iter()
            .map(|(name, sha256, content)| v1::EnmasseFile {
                name,
                sha256,
                content,
            })
            .collect();
        let sql = self.sql("SELECT config_env_sealed FROM clusters WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(&cluster.id)
            .row(&self.pool, "read a cluster's env values")
            .await?;
        let env: BTreeMap<String, String> = match self.long_text(&row, "config_env_sealed")? {
            Some(sealed) => {
                let opened = self.open(&cluster.id, "config_env", &sealed)?;
                serde_json::from_str(&opened)
                    .map_err(|error| StoreError::Corrupt(format!("env values: {error}")))?
            }
            None => BTreeMap::new(),
        };
        let env = if with_content {
            env
        } else {
            env.into_keys().map(|name| (name, String::new())).collect()
        };
        Ok((files, env))
    }
}

/// The objects to delete as the `config_removals` column keeps them (a JSON list of section,
/// name and security type); NULL for none.
fn removals_json(removals: &[v1::EnmasseObject]) -> Result<Option<String>, StoreError> {
    if removals.is_empty() {
        return Ok(None);
    }
    let listed: Vec<(&str, &str, &str)> = removals
        .iter()
        .map(|object| {
            (
                object.section.as_str(),
                object.name.as_str(),
                object.kind.as_str(),
            )
        })
        .collect();
    serde_json::to_string(&listed)
        .map(Some)
        .map_err(|error| StoreError::Corrupt(error.to_string()))
}
