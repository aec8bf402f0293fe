//! A cluster's services: the Python modules its servers must run, stored whole by name.

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
        let delete = self.sql("DELETE FROM cluster_services WHERE cluster_id = $1");
        sqlx::query(&delete)
            .bind(&current.id)
            .run(&mut **transaction, "replace a cluster's services")
            .await?;
        let insert = self.sql(
            "INSERT INTO cluster_services (cluster_id, name, sha256, content) VALUES ($1, $2, $3, $4)",
        );
        for file in &files {
            sqlx::query(&insert)
                .bind(&current.id)
                .bind(&file.name)
                .bind(&file.sha256)
                .bind(&file.content)
                .run(&mut **transaction, "store a service file")
                .await?;
        }
        let update = self.sql("UPDATE clusters SET services_revision = $1 WHERE id = $2");
        sqlx::query(&update)
            .bind(&revision)
            .bind(&current.id)
            .run(&mut **transaction, "set a cluster's services revision")
            .await?;
        self.bump_server_hosts(&mut transaction, &current.id)
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
        self.insert_event(
            &mut transaction,
            "cluster.services-changed",
            cluster,
            "",
            actor,
            &message,
        )
        .await?;
        transaction.commit("commit a cluster's services").await?;
        Ok((revision, true))
    }

    pub(super) async fn cluster_services(
        &self,
        cluster: &str,
        with_content: bool,
    ) -> Result<Vec<v1::ServiceFile>, StoreError> {
        let cluster = self.get_cluster(cluster).await?;
        let columns = if with_content {
            "name, sha256, content"
        } else {
            "name, sha256, NULL AS content"
        };
        let sql = self.sql(&format!(
            "SELECT {columns} FROM cluster_services WHERE cluster_id = $1 ORDER BY name"
        ));
        let rows = sqlx::query(&sql)
            .bind(&cluster.id)
            .rows(&self.pool, "read a cluster's services")
            .await?;
        rows.iter()
            .map(|row| {
                let content = match (with_content, self.dialect) {
                    (false, _) => String::new(),
                    // MySQL's MEDIUMTEXT reaches sqlx's Any driver as a BLOB.
                    (true, Dialect::MySql) => String::from_utf8(row.value("content")?)
                        .map_err(|_| StoreError::Corrupt("a service file is not UTF-8".into()))?,
                    (true, _) => row.value("content")?,
                };
                Ok(v1::ServiceFile {
                    name: row.value("name")?,
                    sha256: row.value("sha256")?,
                    content,
                })
            })
            .collect()
    }
}
