//! A cluster's user-config files: secrets, sealed together in one column of its row (a JSON
//! list of name and content), with their revision keyed by the cluster's secret key.

use super::*;

impl SqlStore {
    pub(super) async fn set_user_conf(
        &self,
        cluster: &str,
        files: &[v1::UserConfFile],
        actor: &Actor,
    ) -> Result<(String, bool), StoreError> {
        let files = muster_proto::user_conf::checked(files)
            .map_err(|refused| StoreError::Invalid(refused.to_string()))?;
        let secrets = self.cluster_secrets(cluster).await?;
        let revision = muster_proto::user_conf::revision(&files, &secrets.secret_key);
        let mut transaction = self.begin_write().await?;
        let current = self.cluster_in(&mut **transaction, cluster).await?;
        if current.user_conf_revision == revision {
            return Ok((revision, false));
        }
        let listed: Vec<(&str, &str)> = files
            .iter()
            .map(|file| (file.name.as_str(), file.content.as_str()))
            .collect();
        let json = serde_json::to_string(&listed)
            .map_err(|error| StoreError::Corrupt(error.to_string()))?;
        let sealed = (!files.is_empty())
            .then(|| self.seal(&current.id, "user_conf", &json))
            .transpose()?;
        let update = self.sql(
            "UPDATE clusters SET user_conf_revision = $1, user_conf_sealed = $2 WHERE id = $3",
        );
        sqlx::query(&update)
            .bind(&revision)
            .bind(sealed)
            .bind(&current.id)
            .run(&mut **transaction, "set a cluster's user-config files")
            .await?;
        let names: Vec<&str> = files.iter().map(|file| file.name.as_str()).collect();
        let message = if files.is_empty() {
            "user-config files removed".to_owned()
        } else {
            format!(
                "user-config revision {} ({} file(s): {})",
                muster_proto::services::short(&revision),
                files.len(),
                names.join(", ")
            )
        };
        self.commit_environment_change(
            transaction,
            &current,
            actor,
            &[policy::Change::Servers],
            ("cluster.user-conf-changed", &message),
            "commit a cluster's user-config files",
        )
        .await?;
        Ok((revision, true))
    }

    pub(super) async fn cluster_user_conf(
        &self,
        cluster: &str,
        with_content: bool,
    ) -> Result<Vec<v1::UserConfFile>, StoreError> {
        let cluster = self.get_cluster(cluster).await?;
        self.user_conf_of(&cluster.id, with_content).await
    }

    /// The user-config files of the cluster of id `cluster_id`, opened (names only without
    /// `with_content`).
    pub(super) async fn user_conf_of(
        &self,
        cluster_id: &str,
        with_content: bool,
    ) -> Result<Vec<v1::UserConfFile>, StoreError> {
        let sql = self.sql("SELECT user_conf_sealed FROM clusters WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(cluster_id)
            .row(&self.pool, "read a cluster's user-config files")
            .await?;
        let Some(sealed) = self.long_text(&row, "user_conf_sealed")? else {
            return Ok(Vec::new());
        };
        let opened = self.open(cluster_id, "user_conf", &sealed)?;
        let listed: Vec<(String, String)> = serde_json::from_str(&opened)
            .map_err(|error| StoreError::Corrupt(format!("user-config files: {error}")))?;
        Ok(listed
            .into_iter()
            .map(|(name, content)| v1::UserConfFile {
                name,
                content: if with_content { content } else { String::new() },
            })
            .collect())
    }
}
