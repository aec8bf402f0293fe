//! [`SqlStore`]: the [`Store`] on SQLite, PostgreSQL or MySQL/MariaDB through sqlx's `Any` driver.
//!
//! Queries are written once with `$1, $2, …` placeholders in order; for MySQL they become `?`.
//! Everything else that differs between dialects lives in the per-dialect migrations.
//!
//! This file holds what every query shares: the pool, write transactions (see
//! [`WriteTransaction`] for why Muster runs BEGIN/COMMIT itself), dialect SQL, sealing, and the
//! [`Store`] impl, each method of which hands over to the aggregate's module:
//! `clusters`, `tokens`, `hosts`, `assignments` (and the bootstrap tasks and generation
//! bumps), `status` (reports, re-planning, the planner's inputs), `events`; rows become types
//! in `rows`, database URLs are `url`'s. The rules a change follows are not here but in
//! [`crate::policy`]: the store gathers their inputs inside the transaction and writes what they
//! decide.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use muster_proto::v1::{self, OdbType, Role};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Executor};

use super::{
    Actor, Assignment, BootstrapState, BootstrapTask, Cluster, ClusterSecrets, ComponentStatus,
    Event, Host, HostState, JoinToken, NewAssignment, NewCluster, NewHost, NewJoinToken,
    OdbSettings, PlanInputs, RollingRestart, RolloutChange, RolloutConfigured, ServersConfigured,
    StatusRecorded, StatusReport, StoppedRollout, Store, StoreError, TokenRefusal, now_ms,
};
use crate::policy;
use crate::secrets::{self, SecretBox};
use rollouts::{RolloutCause, RolloutStart};

mod assignments;
mod clusters;
mod events;
mod hosts;
mod python;
mod query;
mod rollouts;
mod rows;
mod services;
mod status;
mod tokens;
mod url;
mod user_conf;

pub use query::statements;
use query::{Run, Value};
use rows::*;
pub use url::{DatabaseUrl, Dialect};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");
static MYSQL_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/mysql");

/// The store on a SQL database. Cheap to clone: clones share the pool.
#[derive(Clone)]
pub struct SqlStore {
    pool: AnyPool,
    dialect: Dialect,
    secret_box: std::sync::Arc<SecretBox>,
    /// SQLite only: write transactions of this process take turns, so a transaction that read
    /// before it writes is never refused with SQLITE_BUSY_SNAPSHOT. (SQLite is the one-coordinator
    /// embedded mode; PostgreSQL and MySQL need no such lock.)
    sqlite_write_lock: Option<std::sync::Arc<tokio::sync::Mutex<()>>>,
    /// Rollbacks of write transactions dropped uncommitted; `close` waits for them, so no
    /// connection ends with a transaction open (MariaDB would keep its locks).
    rollbacks: tokio_util::task::TaskTracker,
}

type WriteGuard = Option<tokio::sync::OwnedMutexGuard<()>>;

/// A write transaction on a pooled connection of its own. Muster runs `BEGIN`, `COMMIT` and
/// `ROLLBACK` itself rather than through sqlx's `Transaction`: when a commit fails (SQLite on a full
/// or unwritable disk), sqlx kept counting the transaction as open, so the connection went back to
/// the pool with a stale depth; the next "transaction" on it was only a savepoint inside the
/// failed one, acknowledged but never committed, and holding SQLite's write lock ("database is
/// locked" for every other connection). Here a connection whose commit or rollback failed is
/// closed, never reused. Dropped without `commit` or `rollback` (an early return with `?`), it
/// rolls back in a task of its own.
struct WriteTransaction {
    connection: Option<PoolConnection<Any>>,
    guard: WriteGuard,
    rollbacks: tokio_util::task::TaskTracker,
}

impl std::ops::Deref for WriteTransaction {
    type Target = PoolConnection<Any>;

    fn deref(&self) -> &Self::Target {
        self.connection
            .as_ref()
            .expect("a write transaction is open until it ends")
    }
}

impl std::ops::DerefMut for WriteTransaction {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.connection
            .as_mut()
            .expect("a write transaction is open until it ends")
    }
}

impl WriteTransaction {
    /// Commits; a failure is a database error naming `action`.
    async fn commit(mut self, action: &'static str) -> Result<(), StoreError> {
        match self.connection.take() {
            Some(connection) => end_transaction(connection, "COMMIT")
                .await
                .map_err(database(action)),
            None => Ok(()),
        }
    }

    /// Rolls back; a failure is a database error naming `action`.
    async fn rollback(mut self, action: &'static str) -> Result<(), StoreError> {
        match self.connection.take() {
            Some(connection) => end_transaction(connection, "ROLLBACK")
                .await
                .map_err(database(action)),
            None => Ok(()),
        }
    }
}

/// Ends the transaction open on `connection` with `COMMIT` or `ROLLBACK`. The connection returns
/// to the pool only when that succeeded; otherwise whatever remains of the transaction is rolled
/// back and the connection closed, so no pooled connection is ever left inside a transaction.
async fn end_transaction(
    mut connection: PoolConnection<Any>,
    statement: &'static str,
) -> Result<(), sqlx::Error> {
    query::counted();
    match connection.execute(statement).await {
        Ok(_) => Ok(()),
        Err(error) => {
            let _ = connection.execute("ROLLBACK").await;
            let _ = connection.close().await;
            Err(error)
        }
    }
}

impl Drop for WriteTransaction {
    fn drop(&mut self) {
        let (Some(connection), Ok(runtime)) = (
            self.connection.take(),
            tokio::runtime::Handle::try_current(),
        ) else {
            return;
        };
        let guard = self.guard.take();
        let rollback = async move {
            let _ = end_transaction(connection, "ROLLBACK").await;
            drop(guard);
        };
        self.rollbacks.spawn_on(rollback, &runtime);
    }
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "SqlStore({:?})", self.dialect)
    }
}

fn database(action: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Database { action, source }
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(database_error) if database_error.is_unique_violation())
}

impl SqlStore {
    /// Connects and applies this dialect's migrations. Safe to run from several coordinators at
    /// once: sqlx takes a database lock around migrations on PostgreSQL and MySQL.
    pub async fn connect(url: &DatabaseUrl, secret_box: SecretBox) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let mut options = AnyPoolOptions::new()
            .max_connections(if url.dialect == Dialect::Sqlite { 4 } else { 8 })
            .acquire_timeout(Duration::from_secs(10));
        if url.dialect == Dialect::Sqlite {
            options = options.after_connect(|connection, _metadata| {
                Box::pin(async move {
                    connection.execute("PRAGMA journal_mode = WAL").await?;
                    // A commit is on disk when it is acknowledged.
                    connection.execute("PRAGMA synchronous = FULL").await?;
                    connection.execute("PRAGMA busy_timeout = 5000").await?;
                    connection.execute("PRAGMA foreign_keys = ON").await?;
                    Ok(())
                })
            });
        }
        let pool = options
            .connect(url.expose())
            .await
            .map_err(|source| StoreError::Connect {
                url: url.redacted(),
                source,
            })?;
        let migrator = match url.dialect {
            Dialect::Sqlite => &SQLITE_MIGRATIONS,
            Dialect::Postgres => &POSTGRES_MIGRATIONS,
            Dialect::MySql => &MYSQL_MIGRATIONS,
        };
        migrator
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                url: url.redacted(),
                source,
            })?;
        let sqlite_write_lock = (url.dialect == Dialect::Sqlite)
            .then(|| std::sync::Arc::new(tokio::sync::Mutex::new(())));
        Ok(SqlStore {
            pool,
            dialect: url.dialect,
            secret_box: std::sync::Arc::new(secret_box),
            sqlite_write_lock,
            rollbacks: tokio_util::task::TaskTracker::new(),
        })
    }

    /// Begins a transaction that will write.
    async fn begin_write(&self) -> Result<WriteTransaction, StoreError> {
        let guard = match &self.sqlite_write_lock {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        let mut connection = self
            .pool
            .acquire()
            .await
            .map_err(database("begin a transaction"))?;
        // SQLite: take the write lock now, not at the first write after a read.
        let begin = match self.dialect {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres | Dialect::MySql => "BEGIN",
        };
        query::counted();
        if let Err(error) = connection.execute(begin).await {
            let _ = connection.close().await;
            return Err(StoreError::Database {
                action: "begin a transaction",
                source: error,
            });
        }
        Ok(WriteTransaction {
            connection: Some(connection),
            guard,
            rollbacks: self.rollbacks.clone(),
        })
    }

    pub async fn close(&self) {
        self.rollbacks.close();
        self.rollbacks.wait().await;
        self.pool.close().await;
    }

    /// A nullable long-text column of `row` (MySQL's MEDIUMTEXT reaches sqlx's Any driver as a
    /// BLOB); `None` for NULL or an empty text.
    fn long_text(&self, row: &AnyRow, column: &str) -> Result<Option<String>, StoreError> {
        long_text(row, column)
    }

    /// The SQL of `query` for this dialect: `$N` placeholders become `?` for MySQL.
    fn sql(&self, query: &str) -> String {
        if self.dialect != Dialect::MySql {
            return query.to_owned();
        }
        muster_proto::sql::mysql_placeholders(query)
    }

    fn seal(&self, cluster_id: &str, column: &str, value: &str) -> Result<String, StoreError> {
        Ok(self
            .secret_box
            .seal(&format!("cluster:{cluster_id}:{column}"), value)?)
    }

    fn open(&self, cluster_id: &str, column: &str, sealed: &str) -> Result<String, StoreError> {
        Ok(self
            .secret_box
            .open(&format!("cluster:{cluster_id}:{column}"), sealed)?)
    }

    /// `INSERT INTO {rest}` that does nothing when the row's key exists, in this dialect.
    fn insert_ignoring_duplicates(&self, rest: &str) -> String {
        match self.dialect {
            Dialect::MySql => self.sql(&format!("INSERT IGNORE INTO {rest}")),
            Dialect::Sqlite | Dialect::Postgres => {
                self.sql(&format!("INSERT INTO {rest} ON CONFLICT DO NOTHING"))
            }
        }
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .run(&self.pool, "ping the database")
            .await?;
        Ok(())
    }

    async fn probe_write(&self) -> Result<(), StoreError> {
        let mut transaction = self.begin_write().await?;
        sqlx::query(&self.sql("UPDATE store_probe SET written_at = $1 WHERE id = 1"))
            .bind(now_ms())
            .run(&mut **transaction, "write the health probe")
            .await?;
        transaction.commit("commit the health probe").await
    }

    async fn list_events(
        &self,
        cluster: Option<&str>,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<Event>, StoreError> {
        SqlStore::list_events(self, cluster, after, limit).await
    }

    async fn prune_events(&self, older_than_ms: i64, keep: u64) -> Result<u64, StoreError> {
        SqlStore::prune_events(self, older_than_ms, keep).await
    }

    async fn create_join_token(
        &self,
        new: NewJoinToken,
        actor: &Actor,
    ) -> Result<JoinToken, StoreError> {
        SqlStore::create_join_token(self, new, actor).await
    }

    async fn list_join_tokens(&self, cluster: Option<&str>) -> Result<Vec<JoinToken>, StoreError> {
        SqlStore::list_join_tokens(self, cluster).await
    }

    async fn revoke_join_token(&self, id: &str, actor: &Actor) -> Result<JoinToken, StoreError> {
        SqlStore::revoke_join_token(self, id, actor).await
    }

    async fn redeem_join_token(
        &self,
        id: &str,
        secret_hash: &str,
        now_ms: i64,
    ) -> Result<JoinToken, StoreError> {
        SqlStore::redeem_join_token(self, id, secret_hash, now_ms).await
    }

    async fn add_admin_token(
        &self,
        id: &str,
        token_hash: &str,
        description: &str,
    ) -> Result<(), StoreError> {
        SqlStore::add_admin_token(self, id, token_hash, description).await
    }

    async fn find_admin_token(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        SqlStore::find_admin_token(self, token_hash).await
    }

    async fn create_cluster(&self, new: NewCluster, actor: &Actor) -> Result<Cluster, StoreError> {
        SqlStore::create_cluster(self, new, actor).await
    }

    async fn list_clusters(&self) -> Result<Vec<Cluster>, StoreError> {
        SqlStore::list_clusters(self).await
    }

    async fn get_cluster(&self, name: &str) -> Result<Cluster, StoreError> {
        SqlStore::get_cluster(self, name).await
    }

    async fn cluster_secrets(&self, name: &str) -> Result<ClusterSecrets, StoreError> {
        SqlStore::cluster_secrets(self, name).await
    }

    async fn delete_cluster(&self, name: &str, actor: &Actor) -> Result<(), StoreError> {
        SqlStore::delete_cluster(self, name, actor).await
    }

    async fn create_host(&self, new: NewHost, actor: &Actor) -> Result<Host, StoreError> {
        SqlStore::create_host(self, new, actor).await
    }

    async fn list_hosts(&self) -> Result<Vec<Host>, StoreError> {
        SqlStore::list_hosts(self).await
    }

    async fn get_host(&self, name: &str) -> Result<Host, StoreError> {
        SqlStore::get_host(self, name).await
    }

    async fn enroll_host(
        &self,
        token_id: &str,
        secret_hash: &str,
        new: NewHost,
        requested: &[Role],
    ) -> Result<(Host, JoinToken), StoreError> {
        SqlStore::enroll_host(self, token_id, secret_hash, new, requested).await
    }

    async fn get_host_by_id(&self, id: &str) -> Result<Host, StoreError> {
        SqlStore::get_host_by_id(self, id).await
    }

    async fn host_generation(&self, id: &str) -> Result<Option<u64>, StoreError> {
        SqlStore::host_generation(self, id).await
    }

    async fn mark_stale_hosts_down(
        &self,
        now_ms: i64,
        ttl_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        SqlStore::mark_stale_hosts_down(self, now_ms, ttl_ms).await
    }

    async fn admit_host(
        &self,
        name: &str,
        cluster: &str,
        actor: &Actor,
    ) -> Result<Host, StoreError> {
        SqlStore::admit_host(self, name, cluster, actor).await
    }

    async fn set_host_drained(
        &self,
        name: &str,
        drained: bool,
        actor: &Actor,
    ) -> Result<Host, StoreError> {
        SqlStore::set_host_drained(self, name, drained, actor).await
    }

    async fn remove_host(&self, name: &str, force: bool, actor: &Actor) -> Result<(), StoreError> {
        SqlStore::remove_host(self, name, force, actor).await
    }

    async fn create_assignment(
        &self,
        new: NewAssignment,
        actor: &Actor,
    ) -> Result<Assignment, StoreError> {
        SqlStore::create_assignment(self, new, actor).await
    }

    async fn delete_assignment(
        &self,
        cluster: &str,
        role: Role,
        host: &str,
        name: Option<&str>,
        actor: &Actor,
    ) -> Result<Assignment, StoreError> {
        SqlStore::delete_assignment(self, cluster, role, host, name, actor).await
    }

    async fn set_services(
        &self,
        cluster: &str,
        files: &[v1::ServiceFile],
        actor: &Actor,
    ) -> Result<(String, bool), StoreError> {
        SqlStore::set_services(self, cluster, files, actor).await
    }

    async fn cluster_services(
        &self,
        cluster: &str,
        with_content: bool,
    ) -> Result<Vec<v1::ServiceFile>, StoreError> {
        SqlStore::cluster_services(self, cluster, with_content).await
    }

    async fn set_python(
        &self,
        cluster: &str,
        requirements: &str,
        wheels: &[v1::PythonWheel],
        actor: &Actor,
    ) -> Result<(String, bool), StoreError> {
        SqlStore::set_python(self, cluster, requirements, wheels, actor).await
    }

    async fn cluster_python(
        &self,
        cluster: &str,
    ) -> Result<(String, Vec<v1::PythonWheel>), StoreError> {
        SqlStore::cluster_python(self, cluster).await
    }

    async fn python_wheel(
        &self,
        cluster: &str,
        sha256: &str,
    ) -> Result<Option<v1::PythonWheel>, StoreError> {
        SqlStore::python_wheel(self, cluster, sha256).await
    }

    async fn restart_servers(
        &self,
        cluster: &str,
        actor: &Actor,
    ) -> Result<(u64, Vec<String>), StoreError> {
        SqlStore::restart_servers(self, cluster, actor).await
    }

    async fn restart_roles(
        &self,
        cluster: &str,
        roles: &[Role],
        actor: &Actor,
    ) -> Result<RollingRestart, StoreError> {
        SqlStore::restart_roles(self, cluster, roles, actor).await
    }

    async fn configure_servers(
        &self,
        cluster: &str,
        set: &BTreeMap<String, String>,
        unset: &[String],
        actor: &Actor,
    ) -> Result<ServersConfigured, StoreError> {
        SqlStore::configure_servers(self, cluster, set, unset, actor).await
    }

    async fn configure_role(
        &self,
        cluster: &str,
        role: Role,
        set: &BTreeMap<String, String>,
        unset: &[String],
        actor: &Actor,
    ) -> Result<ServersConfigured, StoreError> {
        SqlStore::configure_role(self, cluster, role, set, unset, actor).await
    }

    async fn undo_server_settings(
        &self,
        cluster: &str,
        actor: &Actor,
    ) -> Result<ServersConfigured, StoreError> {
        SqlStore::undo_server_settings(self, cluster, actor).await
    }

    async fn configure_rollout(
        &self,
        cluster: &str,
        change: RolloutChange,
        actor: &Actor,
    ) -> Result<RolloutConfigured, StoreError> {
        SqlStore::configure_rollout(self, cluster, change, actor).await
    }

    async fn stop_failed_rollouts(&self, now_ms: i64) -> Result<Vec<StoppedRollout>, StoreError> {
        SqlStore::stop_failed_rollouts(self, now_ms).await
    }

    async fn release_held_servers(&self, now_ms: i64) -> Result<Vec<String>, StoreError> {
        SqlStore::release_held_servers(self, now_ms).await
    }

    async fn pause_rollout(
        &self,
        cluster: &str,
        paused: bool,
        actor: &Actor,
    ) -> Result<bool, StoreError> {
        SqlStore::pause_rollout(self, cluster, paused, actor).await
    }

    async fn rebuild_odb(&self, cluster: &str, actor: &Actor) -> Result<u64, StoreError> {
        SqlStore::rebuild_odb(self, cluster, actor).await
    }

    async fn set_user_conf(
        &self,
        cluster: &str,
        files: &[v1::UserConfFile],
        actor: &Actor,
    ) -> Result<(String, bool), StoreError> {
        SqlStore::set_user_conf(self, cluster, files, actor).await
    }

    async fn cluster_user_conf(
        &self,
        cluster: &str,
        with_content: bool,
    ) -> Result<Vec<v1::UserConfFile>, StoreError> {
        SqlStore::cluster_user_conf(self, cluster, with_content).await
    }

    async fn set_config(
        &self,
        cluster: &str,
        files: &[v1::EnmasseFile],
        env: &BTreeMap<String, String>,
        actor: &Actor,
    ) -> Result<(String, bool), StoreError> {
        SqlStore::set_config(self, cluster, files, env, actor).await
    }

    async fn cluster_config(
        &self,
        cluster: &str,
        with_content: bool,
    ) -> Result<(Vec<v1::EnmasseFile>, BTreeMap<String, String>), StoreError> {
        SqlStore::cluster_config(self, cluster, with_content).await
    }

    async fn configure_load_balancer(
        &self,
        cluster: &str,
        host: &str,
        name: Option<&str>,
        changes: &v1::LoadBalancerSettings,
        actor: &Actor,
    ) -> Result<Assignment, StoreError> {
        SqlStore::configure_load_balancer(self, cluster, host, name, changes, actor).await
    }

    async fn list_assignments(&self, cluster: Option<&str>) -> Result<Vec<Assignment>, StoreError> {
        SqlStore::list_assignments(self, cluster).await
    }

    async fn record_status(
        &self,
        host_id: &str,
        report: StatusReport,
    ) -> Result<StatusRecorded, StoreError> {
        SqlStore::record_status(self, host_id, report).await
    }

    async fn record_liveness(&self, seen: &[(String, i64)]) -> Result<Vec<String>, StoreError> {
        SqlStore::record_liveness(self, seen).await
    }

    async fn host_generations(
        &self,
        changed_since_ms: Option<i64>,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        SqlStore::host_generations(self, changed_since_ms).await
    }

    async fn plan_inputs(&self, host_id: &str) -> Result<PlanInputs, StoreError> {
        SqlStore::plan_inputs(self, host_id).await
    }

    async fn list_bootstrap(
        &self,
        cluster: Option<&str>,
    ) -> Result<Vec<BootstrapState>, StoreError> {
        SqlStore::list_bootstrap(self, cluster).await
    }
}
