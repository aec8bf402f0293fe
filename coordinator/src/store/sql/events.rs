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

    /// Events of one cluster (with the events of its hosts) or of all: the newest `limit`,
    /// newest first; or with `after`, the first `limit` after that id, oldest first.
    pub(super) async fn list_events(
        &self,
        cluster: Option<&str>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        let mut conditions = Vec::new();
        let mut binds = Vec::new();
        if let Some(cluster) = cluster {
            // A host's own events (up, down, drained) name no cluster: they belong to the
            // clusters the host has components in.
            conditions.push(format!(
                "(cluster_name = ${} OR (cluster_name = '' AND host_name IN (
                     SELECT a.host_name FROM assignments a JOIN clusters c ON c.id = a.cluster_id
                     WHERE c.name = ${})))",
                binds.len() + 1,
                binds.len() + 2
            ));
            binds.push(cluster.to_owned());
            binds.push(cluster.to_owned());
        }
        if after.is_some() {
            conditions.push(format!("id > ${}", binds.len() + 1));
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let order = if after.is_some() { "ASC" } else { "DESC" };
        let limit_position = binds.len() + usize::from(after.is_some()) + 1;
        let sql = self.sql(&format!(
            "SELECT id, created_at, kind, cluster_name, host_name, actor, message FROM events
             {filter} ORDER BY id {order} LIMIT ${limit_position}"
        ));
        let mut query = sqlx::query(&sql);
        for bind in binds {
            query = query.bind(bind);
        }
        if let Some(after) = after {
            query = query.bind(after);
        }
        let rows = query
            .bind(i64::from(limit))
            .rows(&self.pool, "list events")
            .await?;
        rows.iter().map(event_from_row).collect()
    }
}
