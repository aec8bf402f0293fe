//! A cluster's Python dependencies: pip requirements, stored whole, and the wheels to install
//! them from, stored whole by name with their SHA-256 (agents fetch each by hash).

use super::*;

impl SqlStore {
    pub(super) async fn set_python(
        &self,
        cluster: &str,
        requirements: &str,
        wheels: &[v1::PythonWheel],
        actor: &Actor,
    ) -> Result<(String, bool), StoreError> {
        let wheels = muster_proto::python::checked_wheels(requirements, wheels)
            .map_err(|refused| StoreError::Invalid(refused.to_string()))?;
        let revision = muster_proto::python::revision(requirements, &wheels);
        let mut transaction = self.begin_write().await?;
        let current = self.cluster_in(&mut **transaction, cluster).await?;
        if current.python_revision == revision {
            return Ok((revision, false));
        }
        let delete = self.sql("DELETE FROM cluster_python_wheels WHERE cluster_id = $1");
        sqlx::query(&delete)
            .bind(&current.id)
            .run(&mut **transaction, "replace a cluster's wheels")
            .await?;
        // One row, one statement per wheel: each stays well under MySQL's max_allowed_packet.
        let insert = self.sql(
            "INSERT INTO cluster_python_wheels (cluster_id, name, sha256, size, content, package)
             VALUES ($1, $2, $3, $4, $5, $6)",
        );
        for wheel in &wheels {
            sqlx::query(&insert)
                .bind(&current.id)
                .bind(&wheel.name)
                .bind(&wheel.sha256)
                .bind(i64::try_from(wheel.size).unwrap_or(i64::MAX))
                .bind(wheel.content.clone())
                .bind(i64::from(wheel.package))
                .run(&mut **transaction, "store a cluster's wheel")
                .await?;
        }
        let update = self.sql(
            "UPDATE clusters SET python_revision = $1, python_requirements = $2 WHERE id = $3",
        );
        sqlx::query(&update)
            .bind(&revision)
            .bind(requirements)
            .bind(&current.id)
            .run(&mut **transaction, "set a cluster's Python dependencies")
            .await?;
        let required = muster_proto::python::checked_requirements(requirements)
            .map_err(|refused| StoreError::Invalid(refused.to_string()))?;
        let message = if revision.is_empty() {
            "Python dependencies removed from Muster's care: servers keep what they have \
             installed until they restart"
                .to_owned()
        } else {
            format!(
                "Python dependencies revision {} ({})",
                muster_proto::services::short(&revision),
                muster_proto::python::summary(&required, &wheels)
            )
        };
        self.commit_environment_change(
            transaction,
            &current,
            actor,
            // Servers read them; which one restarts for them, out of rotation, follows.
            &[
                policy::Change::Servers,
                policy::Change::Restarts { was_due: false },
            ],
            ("cluster.python-changed", &message),
            "commit a cluster's Python dependencies",
        )
        .await?;
        Ok((revision, true))
    }

    pub(super) async fn cluster_python(
        &self,
        cluster: &str,
    ) -> Result<(String, Vec<v1::PythonWheel>), StoreError> {
        let cluster = self.get_cluster(cluster).await?;
        let sql = self.sql("SELECT python_requirements FROM clusters WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(&cluster.id)
            .row(&self.pool, "read a cluster's requirements")
            .await?;
        let requirements = self.long_text(&row, "python_requirements")?;
        let sql = self.sql(
            "SELECT name, sha256, size, package FROM cluster_python_wheels WHERE cluster_id = $1
             ORDER BY name",
        );
        let mut wheels = Vec::new();
        for row in sqlx::query(&sql)
            .bind(&cluster.id)
            .rows(&self.pool, "read a cluster's wheels")
            .await?
        {
            wheels.push(v1::PythonWheel {
                name: row.value("name")?,
                sha256: row.value("sha256")?,
                size: u64::try_from(row.value::<i64>("size")?).unwrap_or_default(),
                content: Vec::new(),
                package: row.value::<i64>("package")? != 0,
            });
        }
        Ok((requirements.unwrap_or_default(), wheels))
    }

    pub(super) async fn python_wheel(
        &self,
        cluster: &str,
        sha256: &str,
    ) -> Result<Option<v1::PythonWheel>, StoreError> {
        let cluster = self.get_cluster(cluster).await?;
        let sql = self.sql(
            "SELECT name, sha256, size, content, package FROM cluster_python_wheels
             WHERE cluster_id = $1 AND sha256 = $2",
        );
        let Some(row) = sqlx::query(&sql)
            .bind(&cluster.id)
            .bind(sha256)
            .optional_row(&self.pool, "read a wheel")
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(v1::PythonWheel {
            name: row.value("name")?,
            sha256: row.value("sha256")?,
            size: u64::try_from(row.value::<i64>("size")?).unwrap_or_default(),
            content: row.value("content")?,
            package: row.value::<i64>("package")? != 0,
        }))
    }
}
