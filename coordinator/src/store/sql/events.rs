//! The event log: one writer for every change's event, and its reading.

use super::*;

impl SqlStore {
    pub(super) async fn insert_event(
        &self,
        transaction: &mut PoolConnection<Any>,
        kind: &str,
        cluster: &str,
        host: &str,
        actor: &Actor,
        message: &str,
    ) -> Result<(), StoreError> {
        let sql = self.sql(
            "INSERT INTO events (created_at, kind, cluster_name, host_name, actor, message)
             VALUES ($1, $2, $3, $4, $5, $6)",
        );
        sqlx::query(&sql)
            .bind(now_ms())
            .bind(kind)
            .bind(cluster)
            .bind(host)
            .bind(&actor.0)
            .bind(message)
            .run(&mut **transaction, "record an event")
            .await?;
        Ok(())
    }

    pub(super) async fn list_events(
        &self,
        cluster: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let columns = "id, created_at, kind, cluster_name, host_name, actor, message";
        let rows = match cluster {
            Some(cluster) => {
                let sql = self.sql(&format!(
                    "SELECT {columns} FROM events WHERE cluster_name = $1 ORDER BY id DESC LIMIT $2"
                ));
                sqlx::query(&sql)
                    .bind(cluster)
                    .bind(i64::from(limit))
                    .rows(&self.pool, "list events")
                    .await
            }
            None => {
                let sql = self.sql(&format!(
                    "SELECT {columns} FROM events ORDER BY id DESC LIMIT $1"
                ));
                sqlx::query(&sql)
                    .bind(i64::from(limit))
                    .rows(&self.pool, "list events")
                    .await
            }
        }?;
        rows.iter().map(event_from_row).collect()
    }
}
