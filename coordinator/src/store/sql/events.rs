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

    /// How many events (of kind `kind`, or of any) host `host` has had since `since_ms`.
    pub(super) async fn recent_host_events(
        &self,
        transaction: &mut PoolConnection<Any>,
        host: &str,
        kind: Option<&str>,
        since_ms: i64,
    ) -> Result<usize, StoreError> {
        let of_host = "SELECT COUNT(*) AS n FROM events WHERE host_name = $1 AND created_at > $2";
        let sql = match kind {
            Some(_) => self.sql(&format!("{of_host} AND kind = $3")),
            None => self.sql(of_host),
        };
        let mut query = sqlx::query(&sql).bind(host).bind(since_ms);
        if let Some(kind) = kind {
            query = query.bind(kind);
        }
        let row = query
            .row(&mut **transaction, "count a host's events")
            .await?;
        Ok(usize::try_from(row.value::<i64>("n")?).unwrap_or(usize::MAX))
    }

    /// Removes the events older than `older_than_ms`, and the oldest beyond the newest `keep`;
    /// returns how many went.
    pub(super) async fn prune_events(
        &self,
        older_than_ms: i64,
        keep: u64,
    ) -> Result<u64, StoreError> {
        let mut transaction = self.begin_write().await?;
        let old = self.sql("DELETE FROM events WHERE created_at < $1");
        let mut removed = sqlx::query(&old)
            .bind(older_than_ms)
            .run(&mut **transaction, "remove old events")
            .await?
            .rows_affected();
        let newest_removed = self.sql("SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET $1");
        if let Some(row) = sqlx::query(&newest_removed)
            .bind(i64::try_from(keep).unwrap_or(i64::MAX))
            .optional_row(&mut **transaction, "find the events beyond the limit")
            .await?
        {
            let beyond = self.sql("DELETE FROM events WHERE id <= $1");
            removed += sqlx::query(&beyond)
                .bind(row.value::<i64>("id")?)
                .run(&mut **transaction, "remove the events beyond the limit")
                .await?
                .rows_affected();
        }
        transaction.commit("commit the removal of events").await?;
        Ok(removed)
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
