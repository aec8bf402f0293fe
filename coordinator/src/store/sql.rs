//! [`SqlStore`]: the [`Store`] on SQLite, PostgreSQL or MySQL/MariaDB through sqlx's `Any` driver.
//!
//! Queries are written once with `$1, $2, …` placeholders in order; for MySQL they become `?`.
//! Everything else that differs between dialects lives in the per-dialect migrations.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use muster_proto::v1::{self, OdbType, Role};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyPool, Executor, Row};

use super::{
    Actor, Assignment, BootstrapState, BootstrapTask, Cluster, ClusterSecrets, ComponentStatus,
    Event, Host, JoinToken, NewAssignment, NewCluster, NewHost, NewJoinToken, OdbSettings,
    PlanInputs, StatusReport, Store, StoreError, TokenRefusal, now_ms,
};
use crate::policy;
use crate::secrets::{self, SecretBox};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");
static MYSQL_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/mysql");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
    MySql,
}

/// A checked database URL. Display and [`DatabaseUrl::redacted`] never show its password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    url: String,
    dialect: Dialect,
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "DatabaseUrl({})", self.redacted())
    }
}

impl std::fmt::Display for DatabaseUrl {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.redacted())
    }
}

impl DatabaseUrl {
    /// Checks `text` as a database URL: `sqlite://PATH`, `postgres://USER@HOST[:PORT]/DB` or
    /// `mysql://USER@HOST[:PORT]/DB` (`postgresql://` and `mariadb://` are accepted too).
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        let invalid = |reason: &str| StoreError::InvalidUrl {
            url: redact(text),
            reason: reason.to_owned(),
        };
        let parsed = url::Url::parse(text).map_err(|error| {
            invalid(&format!(
                "not a URL ({error}); expected sqlite://PATH, postgres://USER@HOST/DB or mysql://USER@HOST/DB"
            ))
        })?;
        let dialect = match parsed.scheme() {
            "sqlite" => Dialect::Sqlite,
            "postgres" | "postgresql" => Dialect::Postgres,
            "mysql" | "mariadb" => Dialect::MySql,
            _ => {
                return Err(invalid(
                    "unknown scheme; expected sqlite://PATH, postgres://USER@HOST/DB or mysql://USER@HOST/DB",
                ));
            }
        };
        let mut url = text.to_owned();
        match dialect {
            Dialect::Sqlite => {
                let path = text.trim_start_matches("sqlite:").trim_start_matches("//");
                if path.is_empty() || path.starts_with('?') {
                    return Err(invalid("the database file's path is missing"));
                }
                if !text.contains("mode=") {
                    let separator = if text.contains('?') { '&' } else { '?' };
                    url = format!("{text}{separator}mode=rwc");
                }
            }
            Dialect::Postgres | Dialect::MySql => {
                if parsed.host_str().unwrap_or_default().is_empty() {
                    return Err(invalid("the host is missing"));
                }
                if parsed.path().trim_start_matches('/').is_empty() {
                    return Err(invalid(
                        "the database name is missing (for example /muster)",
                    ));
                }
                if parsed.scheme() == "mariadb" {
                    url = format!("mysql{}", &text["mariadb".len()..]);
                }
            }
        }
        Ok(DatabaseUrl { url, dialect })
    }

    /// An SQLite URL's database file; `None` for PostgreSQL and MySQL.
    pub fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        if self.dialect != Dialect::Sqlite {
            return None;
        }
        let path = self
            .url
            .trim_start_matches("sqlite:")
            .trim_start_matches("//");
        let path = path.split_once('?').map_or(path, |(path, _)| path);
        Some(std::path::PathBuf::from(path))
    }

    /// The same database, never created: an SQLite file that is missing is an error (only `init`
    /// creates a database).
    pub fn existing_only(&self) -> DatabaseUrl {
        DatabaseUrl {
            url: self.url.replace("mode=rwc", "mode=rw"),
            dialect: self.dialect,
        }
    }

    /// The embedded default: a SQLite file, created when missing.
    pub fn sqlite_file(path: &std::path::Path) -> Self {
        DatabaseUrl {
            url: format!("sqlite://{}?mode=rwc", path.display()),
            dialect: Dialect::Sqlite,
        }
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The URL as it can be shown: any password replaced by `***`.
    pub fn redacted(&self) -> String {
        redact(&self.url)
    }

    /// The URL with its password, for connecting only.
    pub fn expose(&self) -> &str {
        &self.url
    }
}

fn redact(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => text.to_owned(),
        // Without a parse, credentials cannot be told apart; show the value only when it has none.
        Err(_) if !text.contains('@') => text.escape_debug().to_string(),
        Err(_) => "<not shown: it may hold a password>".to_owned(),
    }
}

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
    async fn commit(mut self) -> Result<(), sqlx::Error> {
        match self.connection.take() {
            Some(connection) => end_transaction(connection, "COMMIT").await,
            None => Ok(()),
        }
    }

    async fn rollback(mut self) -> Result<(), sqlx::Error> {
        match self.connection.take() {
            Some(connection) => end_transaction(connection, "ROLLBACK").await,
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

    /// The SQL of `query` for this dialect: `$N` placeholders become `?` for MySQL.
    fn sql(&self, query: &str) -> String {
        if self.dialect != Dialect::MySql {
            return query.to_owned();
        }
        let mut converted = String::with_capacity(query.len());
        let mut characters = query.chars().peekable();
        while let Some(character) = characters.next() {
            if character == '$' && characters.peek().is_some_and(char::is_ascii_digit) {
                while characters.peek().is_some_and(char::is_ascii_digit) {
                    characters.next();
                }
                converted.push('?');
            } else {
                converted.push(character);
            }
        }
        converted
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

    async fn insert_event(
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
            .execute(&mut **transaction)
            .await
            .map_err(database("record an event"))?;
        Ok(())
    }

    async fn fetch_join_token(
        &self,
        executor: impl Executor<'_, Database = Any>,
        id: &str,
    ) -> Result<Option<(JoinToken, String)>, StoreError> {
        let sql = self.sql(&format!("{JOIN_TOKEN_SELECT} WHERE t.id = $1"));
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(executor)
            .await
            .map_err(database("read a join token"))?;
        row.map(|row| {
            let secret_hash: String = row
                .try_get("secret_hash")
                .map_err(database("read a join token"))?;
            Ok((join_token_from_row(&row)?, secret_hash))
        })
        .transpose()
    }
}

impl SqlStore {
    /// Counts one use of a join token inside `transaction`, or says why it is refused. One
    /// conditional write decides: of several coordinators redeeming the last use at once, exactly
    /// one matches. (Comparing hashes in SQL leaks nothing useful about the secret.)
    async fn redeem_in(
        &self,
        transaction: &mut PoolConnection<Any>,
        id: &str,
        secret_hash: &str,
        now_ms: i64,
    ) -> Result<JoinToken, StoreError> {
        let sql = self.sql(
            "UPDATE join_tokens SET uses = uses + 1
             WHERE id = $1 AND secret_hash = $2 AND revoked_at IS NULL AND expires_at > $3
                 AND (max_uses = 0 OR uses < max_uses)",
        );
        let updated = sqlx::query(&sql)
            .bind(id)
            .bind(secret_hash)
            .bind(now_ms)
            .execute(&mut **transaction)
            .await
            .map_err(database("count a join token's use"))?;
        let found = self.fetch_join_token(&mut **transaction, id).await?;
        let refused = |reason| StoreError::TokenRefused {
            id: id.to_owned(),
            reason,
        };
        let (token, stored_hash) = found.ok_or_else(|| refused(TokenRefusal::Unknown))?;
        if updated.rows_affected() == 1 {
            return Ok(token);
        }
        let reason = if !secrets::constant_time_eq(&stored_hash, secret_hash) {
            TokenRefusal::WrongSecret
        } else if token.revoked_at_ms.is_some() {
            TokenRefusal::Revoked
        } else if token.expires_at_ms <= now_ms {
            TokenRefusal::Expired
        } else {
            TokenRefusal::UsedUp
        };
        Err(refused(reason))
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

    /// Re-chooses the server the cluster's scheduler points at ([`policy::scheduler_target`]). A
    /// change bumps the cluster's hosts and is recorded with its reason.
    async fn replan_scheduler(
        &self,
        transaction: &mut PoolConnection<Any>,
        cluster_id: &str,
        cluster_name: &str,
    ) -> Result<(), StoreError> {
        let read = || database("re-plan the scheduler");
        let sql = self.sql(
            "SELECT a.role, a.name, a.host_name, h.state, h.drained, s.healthy
             FROM assignments a
             LEFT JOIN hosts h ON h.name = a.host_name
             LEFT JOIN component_status s ON s.host_id = h.id AND s.cluster_name = $1
                 AND s.role = a.role AND s.name = a.name
             WHERE a.cluster_id = $2 ORDER BY a.name",
        );
        let rows = sqlx::query(&sql)
            .bind(cluster_name)
            .bind(cluster_id)
            .fetch_all(&mut **transaction)
            .await
            .map_err(read())?;
        let mut has_scheduler = false;
        let mut servers = Vec::new();
        for row in &rows {
            let role: String = row.try_get("role").map_err(read())?;
            if role == Role::Scheduler.cli_name() {
                has_scheduler = true;
            } else if role == Role::Server.cli_name() {
                let state: Option<String> = row.try_get("state").map_err(read())?;
                let drained = row.try_get::<Option<i64>, _>("drained").map_err(read())? == Some(1);
                servers.push(policy::ServerCandidate {
                    name: row.try_get("name").map_err(read())?,
                    host: row.try_get("host_name").map_err(read())?,
                    host_up: state.as_deref() == Some("up") && !drained,
                    healthy: row.try_get::<Option<i64>, _>("healthy").map_err(read())? == Some(1),
                });
            }
        }
        if !has_scheduler {
            return Ok(());
        }
        let current_sql = self.sql("SELECT scheduler_target FROM clusters WHERE id = $1");
        let current: String = sqlx::query(&current_sql)
            .bind(cluster_id)
            .fetch_one(&mut **transaction)
            .await
            .map_err(read())?
            .try_get("scheduler_target")
            .map_err(read())?;
        let Some(moved) = policy::scheduler_target(&current, &servers) else {
            return Ok(());
        };
        let update = self.sql("UPDATE clusters SET scheduler_target = $1 WHERE id = $2");
        sqlx::query(&update)
            .bind(&moved.server)
            .bind(cluster_id)
            .execute(&mut **transaction)
            .await
            .map_err(read())?;
        self.bump_cluster_hosts(transaction, cluster_id).await?;
        let actor = Actor("planner".to_owned());
        self.insert_event(
            transaction,
            "scheduler.target",
            cluster_name,
            &moved.host,
            &actor,
            &moved.message(),
        )
        .await?;
        Ok(())
    }

    /// Re-plans the scheduler of every cluster `host_name` has a component in.
    async fn replan_host_clusters(
        &self,
        transaction: &mut PoolConnection<Any>,
        host_name: &str,
    ) -> Result<(), StoreError> {
        for (id, name) in self.host_clusters(transaction, host_name, None).await? {
            self.replan_scheduler(transaction, &id, &name).await?;
        }
        Ok(())
    }

    /// The (id, name) of each cluster the host has a component in (of `role`, if given).
    async fn host_clusters(
        &self,
        transaction: &mut PoolConnection<Any>,
        host_name: &str,
        role: Option<Role>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let read = || database("read a host's clusters");
        let sql =
            self.sql(&format!(
            "SELECT DISTINCT c.id, c.name FROM assignments a JOIN clusters c ON c.id = a.cluster_id
             WHERE a.host_name = $1{}",
            if role.is_some() { " AND a.role = $2" } else { "" }
        ));
        let mut query = sqlx::query(&sql).bind(host_name);
        if let Some(role) = role {
            query = query.bind(role.cli_name());
        }
        let rows = query.fetch_all(&mut **transaction).await.map_err(read())?;
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get("id").map_err(read())?,
                    row.try_get("name").map_err(read())?,
                ))
            })
            .collect()
    }

    /// Replaces the host's reported backend states with those of `report`; returns the previous
    /// ones as (server, state) by (cluster, load balancer), sorted.
    async fn replace_backend_states(
        &self,
        transaction: &mut PoolConnection<Any>,
        host_id: &str,
        report: &StatusReport,
    ) -> Result<BTreeMap<(String, String), Vec<(String, String)>>, StoreError> {
        let read = || database("read backend states");
        let sql = self.sql(
            "SELECT cluster_name, lb_name, server_name, state FROM backend_status
             WHERE host_id = $1",
        );
        let mut previous: BTreeMap<_, Vec<_>> = BTreeMap::new();
        for row in sqlx::query(&sql)
            .bind(host_id)
            .fetch_all(&mut **transaction)
            .await
            .map_err(read())?
        {
            previous
                .entry((
                    row.try_get("cluster_name").map_err(read())?,
                    row.try_get("lb_name").map_err(read())?,
                ))
                .or_default()
                .push((
                    row.try_get("server_name").map_err(read())?,
                    row.try_get("state").map_err(read())?,
                ));
        }
        for states in previous.values_mut() {
            states.sort();
        }
        let delete = self.sql("DELETE FROM backend_status WHERE host_id = $1");
        sqlx::query(&delete)
            .bind(host_id)
            .execute(&mut **transaction)
            .await
            .map_err(database("replace backend states"))?;
        let insert = self.sql(
            "INSERT INTO backend_status (host_id, cluster_name, lb_name, server_name, address,
                 state, check_result, sessions) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        );
        for component in &report.components {
            for backend in &component.backends {
                sqlx::query(&insert)
                    .bind(host_id)
                    .bind(&component.cluster)
                    .bind(&component.name)
                    .bind(&backend.name)
                    .bind(&backend.address)
                    .bind(&backend.state)
                    .bind(&backend.check)
                    .bind(i64::from(backend.sessions))
                    .execute(&mut **transaction)
                    .await
                    .map_err(database("record backend states"))?;
            }
        }
        Ok(previous)
    }

    /// Bumps the generation of the drained hosts with a server in the cluster: whether such a server
    /// may stop depends on what the cluster's load balancers report (see the planner).
    async fn bump_draining_servers(
        &self,
        transaction: &mut PoolConnection<Any>,
        cluster_name: &str,
    ) -> Result<(), StoreError> {
        let sql = self.sql(
            "UPDATE hosts SET generation = generation + 1 WHERE drained = 1 AND name IN
                 (SELECT a.host_name FROM assignments a JOIN clusters c ON c.id = a.cluster_id
                  WHERE c.name = $1 AND a.role = 'server')",
        );
        sqlx::query(&sql)
            .bind(cluster_name)
            .execute(&mut **transaction)
            .await
            .map_err(database("bump draining hosts' generations"))?;
        Ok(())
    }

    /// Inserts a new host; a taken name is `AlreadyExists`.
    async fn insert_host(
        &self,
        transaction: &mut PoolConnection<Any>,
        new: &NewHost,
        enrolled_at_ms: i64,
    ) -> Result<(), StoreError> {
        let labels = serde_json::to_string(&new.labels)
            .map_err(|error| StoreError::Corrupt(format!("host labels: {error}")))?;
        let sql = self.sql(
            "INSERT INTO hosts (id, name, advertise_address, labels, state, enrolled_at,
                 last_seen_at, generation, applied_generation)
             VALUES ($1, $2, $3, $4, 'new', $5, NULL, 1, 0)",
        );
        let inserted = sqlx::query(&sql)
            .bind(&new.id)
            .bind(&new.name)
            .bind(&new.advertise_address)
            .bind(&labels)
            .bind(enrolled_at_ms)
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

    /// Assigns a component inside `transaction`: chooses its name and port, refuses conflicts,
    /// claims the cluster's bootstrap for the host if it is enrolled and none has it, and bumps
    /// the generation of every host of the cluster.
    async fn assign_in(
        &self,
        transaction: &mut PoolConnection<Any>,
        cluster: &Cluster,
        new: NewAssignment,
        actor: &Actor,
    ) -> Result<Assignment, StoreError> {
        // Assignments to one cluster take turns, also across coordinators, so two of them never
        // choose the same default name or port. (SQLite has one writer already.)
        if self.dialect != Dialect::Sqlite {
            let lock = self.sql("SELECT id FROM clusters WHERE id = $1 FOR UPDATE");
            sqlx::query(&lock)
                .bind(&cluster.id)
                .fetch_optional(&mut **transaction)
                .await
                .map_err(database("lock a cluster for an assignment"))?;
        }
        let sql = self.sql(
            "SELECT c.name AS cluster_name, a.role, a.name, a.host_name, a.port
             FROM assignments a JOIN clusters c ON c.id = a.cluster_id
             WHERE a.cluster_id = $1 OR a.host_name = $2",
        );
        let rows = sqlx::query(&sql)
            .bind(&cluster.id)
            .bind(&new.host)
            .fetch_all(&mut **transaction)
            .await
            .map_err(database("read assignments"))?;
        let mut in_cluster = Vec::new();
        let mut on_host = Vec::new();
        for row in &rows {
            let read = || database("read assignments");
            let entry = (
                row.try_get::<String, _>("cluster_name").map_err(read())?,
                role_from(&row.try_get::<String, _>("role").map_err(read())?)?,
                row.try_get::<String, _>("name").map_err(read())?,
                row.try_get::<String, _>("host_name").map_err(read())?,
                port_from(row.try_get("port").map_err(read())?)?,
            );
            if entry.3 == new.host {
                on_host.push(entry.clone());
            }
            if entry.0 == cluster.name {
                in_cluster.push(entry);
            }
        }
        if cluster.odb.odb_type == OdbType::Sqlite
            && cluster.odb.db_name.is_empty()
            && let Some(elsewhere) = in_cluster.iter().find(|entry| entry.3 != new.host)
        {
            return Err(StoreError::Conflict(format!(
                "cluster '{}' keeps its ODB in an SQLite file on host '{}', so all its components \
                 must run there; use PostgreSQL or MySQL for a cluster of several hosts (or an \
                 SQLite --odb-db-name that every host shares)",
                cluster.name, elsewhere.3
            )));
        }
        if new.role == Role::Scheduler
            && let Some(existing) = in_cluster.iter().find(|entry| entry.1 == Role::Scheduler)
        {
            return Err(StoreError::Conflict(format!(
                "cluster '{}' already has a scheduler ('{}' on host '{}'); a cluster runs at most one",
                cluster.name, existing.2, existing.3
            )));
        }
        let name = match new.name {
            Some(name) => name,
            None if new.role == Role::Server => (1..)
                .map(|number| format!("server{number}"))
                .find(|candidate| {
                    !in_cluster
                        .iter()
                        .any(|entry| entry.1 == Role::Server && &entry.2 == candidate)
                })
                .unwrap_or_default(),
            None => new.role.cli_name().to_owned(),
        };
        if let Some(existing) = in_cluster
            .iter()
            .find(|entry| entry.1 == new.role && entry.2 == name)
        {
            return Err(StoreError::AlreadyExists {
                kind: "component",
                name: format!(
                    "{} {name} of cluster {} (on host {})",
                    new.role, cluster.name, existing.3
                ),
            });
        }
        let taken: Vec<u16> = on_host.iter().map(|entry| entry.4).collect();
        let port = new
            .port
            .unwrap_or_else(|| muster_proto::zato::default_port(new.role, &taken));
        if let Some(holder) = on_host.iter().find(|entry| entry.4 == port) {
            return Err(StoreError::Conflict(format!(
                "port {port} is already taken on host '{}' by {} {} of cluster {}",
                new.host, holder.1, holder.2, holder.0
            )));
        }
        let created_at_ms = now_ms();
        let load_balancer =
            (new.role == Role::LoadBalancer).then(|| new.load_balancer.clone().unwrap_or_default());
        let settings = match &load_balancer {
            Some(given) => settings_json(given)?,
            None => String::new(),
        };
        let insert = self.sql(
            "INSERT INTO assignments (id, cluster_id, role, name, host_name, port, created_at,
                 settings)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        );
        let inserted = sqlx::query(&insert)
            .bind(secrets::random_hex(8)?)
            .bind(&cluster.id)
            .bind(new.role.cli_name())
            .bind(&name)
            .bind(&new.host)
            .bind(i64::from(port))
            .bind(created_at_ms)
            .bind(&settings)
            .execute(&mut **transaction)
            .await;
        match inserted {
            Err(error) if is_unique_violation(&error) => {
                return Err(StoreError::Conflict(format!(
                    "{} {name} of cluster {} or port {port} on host '{}' was taken by a concurrent change; retry",
                    new.role, cluster.name, new.host
                )));
            }
            other => other.map_err(database("assign a component"))?,
        };
        if self
            .host_in(&mut **transaction, "name", &new.host)
            .await?
            .is_some()
        {
            self.claim_bootstrap(transaction, &new.host).await?;
        }
        self.bump_cluster_hosts(transaction, &cluster.id).await?;
        let message = format!(
            "{} {name} assigned to host {} on port {port}",
            new.role, new.host
        );
        self.insert_event(
            transaction,
            "component.assigned",
            &cluster.name,
            &new.host,
            actor,
            &message,
        )
        .await?;
        Ok(Assignment {
            cluster: cluster.name.clone(),
            role: new.role,
            name,
            host: new.host,
            port,
            created_at_ms,
            load_balancer: load_balancer
                .as_ref()
                .map(settings_with_defaults)
                .transpose()?,
            status: None,
        })
    }

    /// Bumps the generation of every host with an assignment in the cluster with this id.
    async fn bump_cluster_hosts(
        &self,
        transaction: &mut PoolConnection<Any>,
        cluster_id: &str,
    ) -> Result<(), StoreError> {
        let sql = self.sql(
            "UPDATE hosts SET generation = generation + 1
             WHERE name IN (SELECT host_name FROM assignments WHERE cluster_id = $1)",
        );
        sqlx::query(&sql)
            .bind(cluster_id)
            .execute(&mut **transaction)
            .await
            .map_err(database("bump hosts' generations"))?;
        Ok(())
    }

    /// Chooses `host_name` to run the bootstrap tasks of every cluster it has an assignment in
    /// that has no bootstrap host yet; returns the ids of those clusters.
    async fn claim_bootstrap(
        &self,
        transaction: &mut PoolConnection<Any>,
        host_name: &str,
    ) -> Result<Vec<String>, StoreError> {
        // Only a host whose roles reach the ODB bootstraps: the tasks carry the ODB password,
        // the secret key and the admin.invoke password, which a load balancer has no use for.
        let sql = self.sql(
            "SELECT DISTINCT cluster_id FROM assignments a WHERE host_name = $1
             AND a.role IN ('server', 'scheduler', 'web-admin')
             AND NOT EXISTS (SELECT 1 FROM bootstrap_tasks b WHERE b.cluster_id = a.cluster_id)",
        );
        let rows = sqlx::query(&sql)
            .bind(host_name)
            .fetch_all(&mut **transaction)
            .await
            .map_err(database("find clusters to bootstrap"))?;
        let mut claimed = Vec::new();
        for row in rows {
            let cluster_id: String = row
                .try_get("cluster_id")
                .map_err(database("find clusters to bootstrap"))?;
            for task in BootstrapTask::ALL {
                // Two coordinators may claim at once: the first row wins, the other is ignored.
                let insert = self.insert_ignoring_duplicates(
                    "bootstrap_tasks (cluster_id, task, host_name, done, last_error, updated_at)
                     VALUES ($1, $2, $3, 0, '', $4)",
                );
                sqlx::query(&insert)
                    .bind(&cluster_id)
                    .bind(task.as_str())
                    .bind(host_name)
                    .bind(now_ms())
                    .execute(&mut **transaction)
                    .await
                    .map_err(database("choose a bootstrap host"))?;
            }
            claimed.push(cluster_id);
        }
        Ok(claimed)
    }

    async fn host_in(
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
            .fetch_optional(executor)
            .await
            .map_err(database("read a host"))?;
        row.as_ref().map(host_from_row).transpose()
    }

    async fn assignments_where(
        &self,
        filter: &str,
        value: Option<&str>,
    ) -> Result<Vec<Assignment>, StoreError> {
        let sql = self.sql(&format!(
            "SELECT c.name AS cluster_name, a.role, a.name, a.host_name, a.port, a.created_at,
                 a.settings, s.state, s.healthy, s.last_error, s.restarts
             FROM assignments a JOIN clusters c ON c.id = a.cluster_id
             LEFT JOIN hosts h ON h.name = a.host_name
             LEFT JOIN component_status s ON s.host_id = h.id AND s.cluster_name = c.name
                 AND s.role = a.role AND s.name = a.name
             {filter} ORDER BY c.name, a.role, a.name"
        ));
        let mut query = sqlx::query(&sql);
        if let Some(value) = value {
            query = query.bind(value);
        }
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(database("list assignments"))?;
        let mut assignments: Vec<Assignment> = rows
            .iter()
            .map(assignment_from_row)
            .collect::<Result<_, _>>()?;
        if assignments
            .iter()
            .any(|assignment| assignment.role == Role::LoadBalancer)
        {
            let mut backends = self.backend_states(value).await?;
            for assignment in &mut assignments {
                if let Some(status) = &mut assignment.status
                    && let Some(states) = backends.remove(&(
                        assignment.host.clone(),
                        assignment.cluster.clone(),
                        assignment.name.clone(),
                    ))
                {
                    status.backends = states;
                }
            }
        }
        Ok(assignments)
    }

    /// The one assignment of `role` on `host` in `cluster` (named `name`, if given).
    async fn find_assignment(
        &self,
        cluster: &str,
        role: Role,
        host: &str,
        name: Option<&str>,
    ) -> Result<Assignment, StoreError> {
        let candidates: Vec<Assignment> = self
            .list_assignments(Some(cluster))
            .await?
            .into_iter()
            .filter(|assignment| assignment.role == role && assignment.host == host)
            .filter(|assignment| name.is_none_or(|name| assignment.name == name))
            .collect();
        match candidates.as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(StoreError::NotFound {
                kind: "component",
                name: format!(
                    "{role} {} of cluster {cluster} on host {host}",
                    name.unwrap_or("")
                ),
            }),
            several => {
                let names: Vec<&str> = several
                    .iter()
                    .map(|assignment| assignment.name.as_str())
                    .collect();
                Err(StoreError::Conflict(format!(
                    "host '{host}' has {} {role}s of cluster {cluster} ({}); name one with --name",
                    names.len(),
                    names.join(", ")
                )))
            }
        }
    }

    /// The load balancers' reported backend servers, of one cluster or of all, by (host name,
    /// cluster, load balancer).
    async fn backend_states(
        &self,
        cluster: Option<&str>,
    ) -> Result<BTreeMap<(String, String, String), Vec<v1::BackendServerState>>, StoreError> {
        let sql = self.sql(&format!(
            "SELECT h.name AS host_name, b.cluster_name, b.lb_name, b.server_name, b.address,
                 b.state, b.check_result, b.sessions
             FROM backend_status b JOIN hosts h ON h.id = b.host_id
             {} ORDER BY b.server_name",
            if cluster.is_some() {
                "WHERE b.cluster_name = $1"
            } else {
                ""
            }
        ));
        let mut query = sqlx::query(&sql);
        if let Some(cluster) = cluster {
            query = query.bind(cluster);
        }
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(database("read backend states"))?;
        let mut states: BTreeMap<_, Vec<_>> = BTreeMap::new();
        for row in rows {
            let read = || database("read backend states");
            let key = (
                row.try_get("host_name").map_err(read())?,
                row.try_get("cluster_name").map_err(read())?,
                row.try_get("lb_name").map_err(read())?,
            );
            states.entry(key).or_default().push(v1::BackendServerState {
                name: row.try_get("server_name").map_err(read())?,
                address: row.try_get("address").map_err(read())?,
                state: row.try_get("state").map_err(read())?,
                check: row.try_get("check_result").map_err(read())?,
                sessions: count_from(row.try_get("sessions").map_err(read())?, "sessions")?,
            });
        }
        Ok(states)
    }
}

fn role_from(text: &str) -> Result<Role, StoreError> {
    text.parse::<Role>()
        .map_err(|error| StoreError::Corrupt(error.to_string()))
}

fn port_from(value: i64) -> Result<u16, StoreError> {
    u16::try_from(value).map_err(|_| StoreError::Corrupt(format!("port {value} out of range")))
}

fn assignment_from_row(row: &AnyRow) -> Result<Assignment, StoreError> {
    let read = || database("read an assignment");
    let cluster: String = row.try_get("cluster_name").map_err(read())?;
    let role = role_from(&row.try_get::<String, _>("role").map_err(read())?)?;
    let name: String = row.try_get("name").map_err(read())?;
    let state: Option<String> = row.try_get("state").map_err(read())?;
    let status = match state {
        Some(state) => Some(ComponentStatus {
            cluster: cluster.clone(),
            role,
            name: name.clone(),
            state,
            healthy: row
                .try_get::<Option<i64>, _>("healthy")
                .map_err(read())?
                .unwrap_or(0)
                != 0,
            last_error: row
                .try_get::<Option<String>, _>("last_error")
                .map_err(read())?
                .unwrap_or_default(),
            restarts: count_from(
                row.try_get::<Option<i64>, _>("restarts")
                    .map_err(read())?
                    .unwrap_or(0),
                "restarts",
            )?,
            backends: Vec::new(),
        }),
        None => None,
    };
    let settings: String = row.try_get("settings").map_err(read())?;
    let load_balancer = (role == Role::LoadBalancer)
        .then(|| settings_from_json(&settings))
        .transpose()?;
    Ok(Assignment {
        cluster,
        role,
        name,
        host: row.try_get("host_name").map_err(read())?,
        port: port_from(row.try_get("port").map_err(read())?)?,
        created_at_ms: row.try_get("created_at").map_err(read())?,
        load_balancer,
        status,
    })
}

/// A load balancer's settings as the `assignments.settings` column keeps them.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct StoredSettings {
    #[serde(default)]
    haproxy_bin: String,
    #[serde(default)]
    frontend_address: String,
    #[serde(default)]
    check_inter_ms: u32,
    #[serde(default)]
    check_rise: u32,
    #[serde(default)]
    check_fall: u32,
}

fn settings_json(settings: &v1::LoadBalancerSettings) -> Result<String, StoreError> {
    serde_json::to_string(&StoredSettings {
        haproxy_bin: settings.haproxy_bin.clone(),
        frontend_address: settings.frontend_address.clone(),
        check_inter_ms: settings.check_inter_ms,
        check_rise: settings.check_rise,
        check_fall: settings.check_fall,
    })
    .map_err(|error| StoreError::Corrupt(format!("load-balancer settings: {error}")))
}

fn settings_with_defaults(
    settings: &v1::LoadBalancerSettings,
) -> Result<v1::LoadBalancerSettings, StoreError> {
    muster_proto::haproxy::settings(settings)
        .map_err(|error| StoreError::Corrupt(format!("load-balancer settings: {error}")))
}

/// The stored settings (empty for defaults) with the defaults filled in.
fn settings_from_json(text: &str) -> Result<v1::LoadBalancerSettings, StoreError> {
    let stored: StoredSettings = if text.is_empty() {
        StoredSettings::default()
    } else {
        serde_json::from_str(text)
            .map_err(|error| StoreError::Corrupt(format!("load-balancer settings: {error}")))?
    };
    settings_with_defaults(&v1::LoadBalancerSettings {
        haproxy_bin: stored.haproxy_bin,
        frontend_address: stored.frontend_address,
        check_inter_ms: stored.check_inter_ms,
        check_rise: stored.check_rise,
        check_fall: stored.check_fall,
    })
}

const CLUSTER_COLUMNS: &str = "id, name, description, odb_type, odb_host, odb_port, odb_user, \
     odb_db_name, odb_schema, has_odb_password, created_at, scheduler_target";

const JOIN_TOKEN_SELECT: &str = "SELECT t.id, c.name AS cluster_name, t.secret_hash, t.roles, \
     t.description, t.created_at, t.expires_at, t.max_uses, t.uses, t.revoked_at \
     FROM join_tokens t JOIN clusters c ON c.id = t.cluster_id";

const HOST_COLUMNS: &str = "id, name, advertise_address, labels, state, enrolled_at, \
     last_seen_at, generation, applied_generation, drained";

fn cluster_from_row(row: &AnyRow) -> Result<Cluster, StoreError> {
    let read = database("read a cluster");
    let odb_type_name: String = row.try_get("odb_type").map_err(read)?;
    let odb_type = odb_type_name
        .parse::<OdbType>()
        .map_err(|error| StoreError::Corrupt(error.to_string()))?;
    let port: i64 = row
        .try_get("odb_port")
        .map_err(database("read a cluster"))?;
    let has_odb_password: i64 = row
        .try_get("has_odb_password")
        .map_err(database("read a cluster"))?;
    Ok(Cluster {
        id: row.try_get("id").map_err(database("read a cluster"))?,
        name: row.try_get("name").map_err(database("read a cluster"))?,
        description: row
            .try_get("description")
            .map_err(database("read a cluster"))?,
        odb: OdbSettings {
            odb_type,
            host: row
                .try_get("odb_host")
                .map_err(database("read a cluster"))?,
            port: u16::try_from(port)
                .map_err(|_| StoreError::Corrupt(format!("ODB port {port} out of range")))?,
            user: row
                .try_get("odb_user")
                .map_err(database("read a cluster"))?,
            db_name: row
                .try_get("odb_db_name")
                .map_err(database("read a cluster"))?,
            postgresql_schema: row
                .try_get("odb_schema")
                .map_err(database("read a cluster"))?,
        },
        has_odb_password: has_odb_password != 0,
        created_at_ms: row
            .try_get("created_at")
            .map_err(database("read a cluster"))?,
        scheduler_target: row
            .try_get("scheduler_target")
            .map_err(database("read a cluster"))?,
    })
}

fn roles_to_text(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|role| role.cli_name())
        .collect::<Vec<_>>()
        .join(",")
}

fn roles_from_text(text: &str) -> Result<Vec<Role>, StoreError> {
    text.split(',')
        .filter(|name| !name.is_empty())
        .map(|name| {
            name.parse::<Role>()
                .map_err(|error| StoreError::Corrupt(error.to_string()))
        })
        .collect()
}

fn count_from(value: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value} out of range")))
}

fn join_token_from_row(row: &AnyRow) -> Result<JoinToken, StoreError> {
    let read = || database("read a join token");
    let roles: String = row.try_get("roles").map_err(read())?;
    let max_uses: i64 = row.try_get("max_uses").map_err(read())?;
    let uses: i64 = row.try_get("uses").map_err(read())?;
    Ok(JoinToken {
        id: row.try_get("id").map_err(read())?,
        cluster: row.try_get("cluster_name").map_err(read())?,
        roles: roles_from_text(&roles)?,
        description: row.try_get("description").map_err(read())?,
        created_at_ms: row.try_get("created_at").map_err(read())?,
        expires_at_ms: row.try_get("expires_at").map_err(read())?,
        max_uses: count_from(max_uses, "max_uses")?,
        uses: count_from(uses, "uses")?,
        revoked_at_ms: row.try_get("revoked_at").map_err(read())?,
    })
}

fn host_from_row(row: &AnyRow) -> Result<Host, StoreError> {
    let read = || database("read a host");
    let labels: String = row.try_get("labels").map_err(read())?;
    Ok(Host {
        id: row.try_get("id").map_err(read())?,
        name: row.try_get("name").map_err(read())?,
        advertise_address: row.try_get("advertise_address").map_err(read())?,
        labels: serde_json::from_str(&labels)
            .map_err(|error| StoreError::Corrupt(format!("host labels: {error}")))?,
        state: row.try_get("state").map_err(read())?,
        enrolled_at_ms: row.try_get("enrolled_at").map_err(read())?,
        last_seen_ms: row.try_get("last_seen_at").map_err(read())?,
        generation: generation_from(row.try_get("generation").map_err(read())?)?,
        applied_generation: generation_from(row.try_get("applied_generation").map_err(read())?)?,
        drained: row.try_get::<i64, _>("drained").map_err(read())? != 0,
    })
}

fn generation_from(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("generation {value} out of range")))
}

fn event_from_row(row: &AnyRow) -> Result<Event, StoreError> {
    let read = || database("read an event");
    Ok(Event {
        id: row.try_get("id").map_err(read())?,
        at_ms: row.try_get("created_at").map_err(read())?,
        kind: row.try_get("kind").map_err(read())?,
        cluster: row.try_get("cluster_name").map_err(read())?,
        host: row.try_get("host_name").map_err(read())?,
        actor: row.try_get("actor").map_err(read())?,
        message: row.try_get("message").map_err(read())?,
    })
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(database("ping the database"))?;
        Ok(())
    }

    async fn probe_write(&self) -> Result<(), StoreError> {
        let mut transaction = self.begin_write().await?;
        sqlx::query(&self.sql("UPDATE store_probe SET written_at = $1 WHERE id = 1"))
            .bind(now_ms())
            .execute(&mut **transaction)
            .await
            .map_err(database("write the health probe"))?;
        transaction
            .commit()
            .await
            .map_err(database("commit the health probe"))
    }

    async fn create_cluster(&self, new: NewCluster, actor: &Actor) -> Result<Cluster, StoreError> {
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
        transaction
            .commit()
            .await
            .map_err(database("commit a new cluster"))?;
        Ok(Cluster {
            id,
            name: new.name,
            description: new.description,
            has_odb_password: !secrets.odb_password.is_empty(),
            odb: new.odb,
            created_at_ms,
            scheduler_target: String::new(),
        })
    }

    async fn list_clusters(&self) -> Result<Vec<Cluster>, StoreError> {
        let sql = format!("SELECT {CLUSTER_COLUMNS} FROM clusters ORDER BY created_at, name");
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(database("list clusters"))?;
        rows.iter().map(cluster_from_row).collect()
    }

    async fn get_cluster(&self, name: &str) -> Result<Cluster, StoreError> {
        let sql = self.sql(&format!(
            "SELECT {CLUSTER_COLUMNS} FROM clusters WHERE name = $1"
        ));
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(database("read a cluster"))?
            .ok_or_else(|| StoreError::NotFound {
                kind: "cluster",
                name: name.to_owned(),
            })?;
        cluster_from_row(&row)
    }

    async fn cluster_secrets(&self, name: &str) -> Result<ClusterSecrets, StoreError> {
        let sql = self.sql(
            "SELECT id, odb_password_sealed, secret_key_sealed, jwt_secret_sealed,
                 admin_invoke_password_sealed FROM clusters WHERE name = $1",
        );
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(database("read a cluster's secrets"))?
            .ok_or_else(|| StoreError::NotFound {
                kind: "cluster",
                name: name.to_owned(),
            })?;
        let read = || database("read a cluster's secrets");
        let id: String = row.try_get("id").map_err(read())?;
        let column = |column: &str| -> Result<String, StoreError> {
            let sealed: String = row
                .try_get(format!("{column}_sealed").as_str())
                .map_err(read())?;
            self.open(&id, column, &sealed)
        };
        Ok(ClusterSecrets {
            odb_password: column("odb_password")?,
            secret_key: column("secret_key")?,
            jwt_secret: column("jwt_secret")?,
            admin_invoke_password: column("admin_invoke_password")?,
        })
    }

    async fn delete_cluster(&self, name: &str, actor: &Actor) -> Result<(), StoreError> {
        let cluster = self.get_cluster(name).await?;
        let mut transaction = self.begin_write().await?;
        self.bump_cluster_hosts(&mut transaction, &cluster.id)
            .await?;
        for table in ["assignments", "bootstrap_tasks"] {
            let sql = self.sql(&format!("DELETE FROM {table} WHERE cluster_id = $1"));
            sqlx::query(&sql)
                .bind(&cluster.id)
                .execute(&mut **transaction)
                .await
                .map_err(database("delete a cluster's components"))?;
        }
        let tokens_sql = self.sql("DELETE FROM join_tokens WHERE cluster_id = $1");
        let tokens = sqlx::query(&tokens_sql)
            .bind(&cluster.id)
            .execute(&mut **transaction)
            .await
            .map_err(database("delete a cluster's join tokens"))?;
        let cluster_sql = self.sql("DELETE FROM clusters WHERE id = $1");
        let deleted = sqlx::query(&cluster_sql)
            .bind(&cluster.id)
            .execute(&mut **transaction)
            .await
            .map_err(database("delete a cluster"))?;
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
        transaction
            .commit()
            .await
            .map_err(database("commit a cluster's deletion"))?;
        Ok(())
    }

    async fn create_join_token(
        &self,
        new: NewJoinToken,
        actor: &Actor,
    ) -> Result<JoinToken, StoreError> {
        let cluster = self.get_cluster(&new.cluster).await?;
        let created_at_ms = now_ms();
        let sql = self.sql(
            "INSERT INTO join_tokens (id, cluster_id, secret_hash, roles, description, created_at,
                 expires_at, max_uses, uses, revoked_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, NULL)",
        );
        let mut transaction = self.begin_write().await?;
        sqlx::query(&sql)
            .bind(&new.id)
            .bind(&cluster.id)
            .bind(&new.secret_hash)
            .bind(roles_to_text(&new.roles))
            .bind(&new.description)
            .bind(created_at_ms)
            .bind(new.expires_at_ms)
            .bind(i64::from(new.max_uses))
            .execute(&mut **transaction)
            .await
            .map_err(database("create a join token"))?;
        let message = format!(
            "join token {} created for roles [{}], {} use(s)",
            new.id,
            roles_to_text(&new.roles),
            if new.max_uses == 0 {
                "unlimited".to_owned()
            } else {
                new.max_uses.to_string()
            }
        );
        self.insert_event(
            &mut transaction,
            "token.created",
            &cluster.name,
            "",
            actor,
            &message,
        )
        .await?;
        transaction
            .commit()
            .await
            .map_err(database("commit a new join token"))?;
        Ok(JoinToken {
            id: new.id,
            cluster: cluster.name,
            roles: new.roles,
            description: new.description,
            created_at_ms,
            expires_at_ms: new.expires_at_ms,
            max_uses: new.max_uses,
            uses: 0,
            revoked_at_ms: None,
        })
    }

    async fn list_join_tokens(&self, cluster: Option<&str>) -> Result<Vec<JoinToken>, StoreError> {
        let rows = match cluster {
            Some(cluster) => {
                let sql = self.sql(&format!(
                    "{JOIN_TOKEN_SELECT} WHERE c.name = $1 ORDER BY t.created_at DESC, t.id"
                ));
                sqlx::query(&sql).bind(cluster).fetch_all(&self.pool).await
            }
            None => {
                let sql = format!("{JOIN_TOKEN_SELECT} ORDER BY t.created_at DESC, t.id");
                sqlx::query(&sql).fetch_all(&self.pool).await
            }
        }
        .map_err(database("list join tokens"))?;
        rows.iter().map(join_token_from_row).collect()
    }

    async fn revoke_join_token(&self, id: &str, actor: &Actor) -> Result<JoinToken, StoreError> {
        let revoked_at_ms = now_ms();
        let mut transaction = self.begin_write().await?;
        // The write comes first, so SQLite takes its write lock before anything is read.
        let sql =
            self.sql("UPDATE join_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL");
        let updated = sqlx::query(&sql)
            .bind(revoked_at_ms)
            .bind(id)
            .execute(&mut **transaction)
            .await
            .map_err(database("revoke a join token"))?;
        let (token, _) = self
            .fetch_join_token(&mut **transaction, id)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "join token",
                name: id.to_owned(),
            })?;
        if updated.rows_affected() == 1 {
            let message = format!("join token {id} revoked");
            self.insert_event(
                &mut transaction,
                "token.revoked",
                &token.cluster,
                "",
                actor,
                &message,
            )
            .await?;
        }
        transaction
            .commit()
            .await
            .map_err(database("commit a token's revocation"))?;
        Ok(token)
    }

    async fn redeem_join_token(
        &self,
        id: &str,
        secret_hash: &str,
        now_ms: i64,
    ) -> Result<JoinToken, StoreError> {
        let mut transaction = self.begin_write().await?;
        match self
            .redeem_in(&mut transaction, id, secret_hash, now_ms)
            .await
        {
            Ok(token) => {
                transaction
                    .commit()
                    .await
                    .map_err(database("commit a join token's use"))?;
                Ok(token)
            }
            Err(error) => {
                transaction
                    .rollback()
                    .await
                    .map_err(database("roll back a join token's use"))?;
                Err(error)
            }
        }
    }

    async fn add_admin_token(
        &self,
        id: &str,
        token_hash: &str,
        description: &str,
    ) -> Result<(), StoreError> {
        let sql = self.sql(
            "INSERT INTO admin_tokens (id, token_hash, description, created_at)
             VALUES ($1, $2, $3, $4)",
        );
        let mut transaction = self.begin_write().await?;
        sqlx::query(&sql)
            .bind(id)
            .bind(token_hash)
            .bind(description)
            .bind(now_ms())
            .execute(&mut **transaction)
            .await
            .map_err(database("add an admin token"))?;
        let actor = Actor("coordinator".to_owned());
        let message = format!("admin token {id} created ({description})");
        self.insert_event(
            &mut transaction,
            "admin-token.created",
            "",
            "",
            &actor,
            &message,
        )
        .await?;
        transaction
            .commit()
            .await
            .map_err(database("commit an admin token"))?;
        Ok(())
    }

    async fn find_admin_token(&self, token_hash: &str) -> Result<Option<String>, StoreError> {
        let sql = self.sql("SELECT id FROM admin_tokens WHERE token_hash = $1");
        let row = sqlx::query(&sql)
            .bind(token_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(database("look up an admin token"))?;
        row.map(|row| row.try_get("id").map_err(database("read an admin token")))
            .transpose()
    }

    async fn create_host(&self, new: NewHost, actor: &Actor) -> Result<Host, StoreError> {
        let enrolled_at_ms = now_ms();
        let mut transaction = self.begin_write().await?;
        self.insert_host(&mut transaction, &new, enrolled_at_ms)
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
        transaction
            .commit()
            .await
            .map_err(database("commit a new host"))?;
        Ok(Host {
            id: new.id,
            name: new.name,
            advertise_address: new.advertise_address,
            labels: new.labels,
            state: "new".to_owned(),
            enrolled_at_ms,
            last_seen_ms: None,
            generation: 1,
            applied_generation: 0,
            drained: false,
        })
    }

    async fn list_hosts(&self) -> Result<Vec<Host>, StoreError> {
        let sql = format!("SELECT {HOST_COLUMNS} FROM hosts ORDER BY name");
        let rows = sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await
            .map_err(database("list hosts"))?;
        rows.iter().map(host_from_row).collect()
    }

    async fn get_host(&self, name: &str) -> Result<Host, StoreError> {
        let sql = self.sql(&format!("SELECT {HOST_COLUMNS} FROM hosts WHERE name = $1"));
        let row = sqlx::query(&sql)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(database("read a host"))?
            .ok_or_else(|| StoreError::NotFound {
                kind: "host",
                name: name.to_owned(),
            })?;
        host_from_row(&row)
    }

    async fn create_assignment(
        &self,
        new: NewAssignment,
        actor: &Actor,
    ) -> Result<Assignment, StoreError> {
        let cluster = self.get_cluster(&new.cluster).await?;
        let mut transaction = self.begin_write().await?;
        let assignment = self
            .assign_in(&mut transaction, &cluster, new, actor)
            .await?;
        self.replan_scheduler(&mut transaction, &cluster.id, &cluster.name)
            .await?;
        transaction
            .commit()
            .await
            .map_err(database("commit an assignment"))?;
        Ok(assignment)
    }

    async fn delete_assignment(
        &self,
        cluster: &str,
        role: Role,
        host: &str,
        name: Option<&str>,
        actor: &Actor,
    ) -> Result<Assignment, StoreError> {
        let cluster_row = self.get_cluster(cluster).await?;
        let assignment = self.find_assignment(cluster, role, host, name).await?;
        let mut transaction = self.begin_write().await?;
        // Bumped while the assignment still names its host, so that host learns of the removal.
        self.bump_cluster_hosts(&mut transaction, &cluster_row.id)
            .await?;
        let sql =
            self.sql("DELETE FROM assignments WHERE cluster_id = $1 AND role = $2 AND name = $3");
        let deleted = sqlx::query(&sql)
            .bind(&cluster_row.id)
            .bind(role.cli_name())
            .bind(&assignment.name)
            .execute(&mut **transaction)
            .await
            .map_err(database("unassign a component"))?;
        if deleted.rows_affected() == 0 {
            return Err(StoreError::NotFound {
                kind: "component",
                name: assignment.name,
            });
        }
        let message = format!("{role} {} unassigned from host {host}", assignment.name);
        self.insert_event(
            &mut transaction,
            "component.removed",
            cluster,
            host,
            actor,
            &message,
        )
        .await?;
        self.replan_scheduler(&mut transaction, &cluster_row.id, cluster)
            .await?;
        transaction
            .commit()
            .await
            .map_err(database("commit an unassignment"))?;
        Ok(assignment)
    }

    async fn configure_load_balancer(
        &self,
        cluster: &str,
        host: &str,
        name: Option<&str>,
        changes: &v1::LoadBalancerSettings,
        actor: &Actor,
    ) -> Result<Assignment, StoreError> {
        let cluster_row = self.get_cluster(cluster).await?;
        let mut assignment = self
            .find_assignment(cluster, Role::LoadBalancer, host, name)
            .await?;
        let current = assignment.load_balancer.clone().unwrap_or_default();
        let pick =
            |given: &str, current: &str| if given.is_empty() { current } else { given }.to_owned();
        let pick_number = |given: u32, current: u32| if given == 0 { current } else { given };
        let merged = v1::LoadBalancerSettings {
            haproxy_bin: pick(&changes.haproxy_bin, &current.haproxy_bin),
            frontend_address: pick(&changes.frontend_address, &current.frontend_address),
            check_inter_ms: pick_number(changes.check_inter_ms, current.check_inter_ms),
            check_rise: pick_number(changes.check_rise, current.check_rise),
            check_fall: pick_number(changes.check_fall, current.check_fall),
        };
        let merged = settings_with_defaults(&merged)?;
        let mut transaction = self.begin_write().await?;
        let sql = self.sql(
            "UPDATE assignments SET settings = $1 WHERE cluster_id = $2 AND role = $3 AND name = $4",
        );
        sqlx::query(&sql)
            .bind(settings_json(&merged)?)
            .bind(&cluster_row.id)
            .bind(Role::LoadBalancer.cli_name())
            .bind(&assignment.name)
            .execute(&mut **transaction)
            .await
            .map_err(database("configure a load balancer"))?;
        let bump = self.sql("UPDATE hosts SET generation = generation + 1 WHERE name = $1");
        sqlx::query(&bump)
            .bind(host)
            .execute(&mut **transaction)
            .await
            .map_err(database("bump a host's generation"))?;
        let message = format!(
            "load-balancer {} reconfigured: HAProxy {}, frontend {}, {}",
            assignment.name,
            merged.haproxy_bin,
            merged.frontend_address,
            muster_proto::haproxy::check_keywords(&merged)
        );
        self.insert_event(
            &mut transaction,
            "component.configured",
            cluster,
            host,
            actor,
            &message,
        )
        .await?;
        transaction
            .commit()
            .await
            .map_err(database("commit a load balancer's settings"))?;
        assignment.load_balancer = Some(merged);
        Ok(assignment)
    }

    async fn list_assignments(&self, cluster: Option<&str>) -> Result<Vec<Assignment>, StoreError> {
        match cluster {
            Some(cluster) => {
                self.assignments_where("WHERE c.name = $1", Some(cluster))
                    .await
            }
            None => self.assignments_where("", None).await,
        }
    }

    async fn enroll_host(
        &self,
        token_id: &str,
        secret_hash: &str,
        new: NewHost,
        requested: &[Role],
    ) -> Result<(Host, JoinToken), StoreError> {
        let mut transaction = self.begin_write().await?;
        let token = match self
            .redeem_in(&mut transaction, token_id, secret_hash, now_ms())
            .await
        {
            Ok(token) => token,
            Err(error) => {
                transaction
                    .rollback()
                    .await
                    .map_err(database("roll back an enrollment"))?;
                return Err(error);
            }
        };
        let granted: Vec<Role> = if requested.is_empty() {
            token.roles.clone()
        } else if let Some(refused) = requested.iter().find(|role| !token.roles.contains(role)) {
            tracing::debug!(role = %refused, "a requested role is not allowed by the token");
            transaction
                .rollback()
                .await
                .map_err(database("roll back an enrollment"))?;
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
        let on_this_name = self
            .assignments_where("WHERE a.host_name = $1", Some(&new.name))
            .await?;
        let claimed: Vec<String> = on_this_name
            .iter()
            .filter(|assignment| {
                assignment.cluster != token.cluster
                    || (!token.roles.is_empty() && !token.roles.contains(&assignment.role))
            })
            .map(|assignment| format!("{} of cluster {}", assignment.role, assignment.cluster))
            .collect();
        if !claimed.is_empty() {
            transaction
                .rollback()
                .await
                .map_err(database("roll back an enrollment"))?;
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
            events
                .commit()
                .await
                .map_err(database("record a refused enrollment"))?;
            return Err(StoreError::TokenRefused {
                id: token.id,
                reason: TokenRefusal::HostNameClaimed,
            });
        }
        self.insert_host(&mut transaction, &new, now_ms()).await?;
        let actor = Actor(format!("token:{}", token.id));
        if !granted.is_empty() {
            let cluster = self.get_cluster(&token.cluster).await?;
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
            self.bump_cluster_hosts(&mut transaction, cluster_id)
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
        transaction
            .commit()
            .await
            .map_err(database("commit an enrollment"))?;
        let host = self.get_host_by_id(&new.id).await?;
        Ok((host, token))
    }

    async fn get_host_by_id(&self, id: &str) -> Result<Host, StoreError> {
        self.host_in(&self.pool, "id", id)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "host",
                name: id.to_owned(),
            })
    }

    async fn host_generation(&self, id: &str) -> Result<Option<u64>, StoreError> {
        let sql = self.sql("SELECT generation FROM hosts WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(database("read a host's generation"))?;
        row.map(|row| {
            generation_from(
                row.try_get("generation")
                    .map_err(database("read a host's generation"))?,
            )
        })
        .transpose()
    }

    async fn plan_inputs(&self, host_id: &str) -> Result<PlanInputs, StoreError> {
        let host = self.get_host_by_id(host_id).await?;
        let sql = self.sql(
            "SELECT DISTINCT c.name AS cluster_name FROM assignments a
             JOIN clusters c ON c.id = a.cluster_id WHERE a.host_name = $1",
        );
        let rows = sqlx::query(&sql)
            .bind(&host.name)
            .fetch_all(&self.pool)
            .await
            .map_err(database("read a host's clusters"))?;
        let mut clusters = BTreeMap::new();
        let mut assignments = Vec::new();
        let mut bootstrap = Vec::new();
        let mut hosts = BTreeMap::new();
        for row in rows {
            let name: String = row
                .try_get("cluster_name")
                .map_err(database("read a host's clusters"))?;
            let cluster = self.get_cluster(&name).await?;
            let secrets = self.cluster_secrets(&name).await?;
            for assignment in self.list_assignments(Some(&name)).await? {
                if !hosts.contains_key(&assignment.host)
                    && let Some(peer) = self.host_in(&self.pool, "name", &assignment.host).await?
                {
                    hosts.insert(peer.name.clone(), peer);
                }
                assignments.push(assignment);
            }
            let sql = self.sql(
                "SELECT task, host_name, done, last_error FROM bootstrap_tasks WHERE cluster_id = $1",
            );
            for task_row in sqlx::query(&sql)
                .bind(&cluster.id)
                .fetch_all(&self.pool)
                .await
                .map_err(database("read bootstrap tasks"))?
            {
                let read = || database("read bootstrap tasks");
                let task = match task_row
                    .try_get::<String, _>("task")
                    .map_err(read())?
                    .as_str()
                {
                    "odb" => BootstrapTask::Odb,
                    "cluster" => BootstrapTask::Cluster,
                    other => return Err(StoreError::Corrupt(format!("bootstrap task {other:?}"))),
                };
                bootstrap.push(BootstrapState {
                    cluster: name.clone(),
                    task,
                    host: task_row.try_get("host_name").map_err(read())?,
                    done: task_row.try_get::<i64, _>("done").map_err(read())? != 0,
                    last_error: task_row.try_get("last_error").map_err(read())?,
                });
            }
            clusters.insert(name, (cluster, secrets));
        }
        bootstrap
            .sort_by(|left, right| (&left.cluster, left.task).cmp(&(&right.cluster, right.task)));
        Ok(PlanInputs {
            host,
            assignments,
            hosts,
            clusters,
            bootstrap,
        })
    }

    async fn record_status(&self, host_id: &str, report: StatusReport) -> Result<u64, StoreError> {
        let now = now_ms();
        let mut transaction = self.begin_write().await?;
        let host = self
            .host_in(&mut **transaction, "id", host_id)
            .await?
            .ok_or_else(|| StoreError::NotFound {
                kind: "host",
                name: host_id.to_owned(),
            })?;
        let actor = Actor(format!("host:{}", host.name));
        let sql = self.sql(
            "UPDATE hosts SET last_seen_at = $1, applied_generation = $2, state = 'up',
                 advertise_address = $3 WHERE id = $4",
        );
        sqlx::query(&sql)
            .bind(now)
            .bind(i64::try_from(report.applied_generation).unwrap_or(i64::MAX))
            .bind(&report.advertise_address)
            .bind(host_id)
            .execute(&mut **transaction)
            .await
            .map_err(database("record a heartbeat"))?;
        if host.advertise_address != report.advertise_address {
            for (cluster_id, _) in self
                .host_clusters(&mut transaction, &host.name, None)
                .await?
            {
                self.bump_cluster_hosts(&mut transaction, &cluster_id)
                    .await?;
            }
        }
        let happened = policy::host_report_events(
            &host.state,
            host.last_seen_ms,
            now,
            &host.advertise_address,
            &report.advertise_address,
        );
        for event in happened {
            self.insert_event(
                &mut transaction,
                event.kind,
                "",
                &host.name,
                &actor,
                &event.message,
            )
            .await?;
        }

        let previous_sql = self.sql(
            "SELECT cluster_name, role, name, state, healthy, last_error, restarts
             FROM component_status WHERE host_id = $1",
        );
        let mut previous = BTreeMap::new();
        for row in sqlx::query(&previous_sql)
            .bind(host_id)
            .fetch_all(&mut **transaction)
            .await
            .map_err(database("read component status"))?
        {
            let read = || database("read component status");
            let key: (String, String, String) = (
                row.try_get("cluster_name").map_err(read())?,
                row.try_get("role").map_err(read())?,
                row.try_get("name").map_err(read())?,
            );
            let value = policy::ComponentReport {
                state: row.try_get("state").map_err(read())?,
                healthy: row.try_get::<i64, _>("healthy").map_err(read())? != 0,
                last_error: row.try_get("last_error").map_err(read())?,
                restarts: u32::try_from(row.try_get::<i64, _>("restarts").map_err(read())?)
                    .unwrap_or(u32::MAX),
            };
            previous.insert(key, value);
        }
        let previous_backends = self
            .replace_backend_states(&mut transaction, host_id, &report)
            .await?;
        let delete = self.sql("DELETE FROM component_status WHERE host_id = $1");
        sqlx::query(&delete)
            .bind(host_id)
            .execute(&mut **transaction)
            .await
            .map_err(database("replace component status"))?;
        for component in &report.components {
            let insert = self.sql(
                "INSERT INTO component_status (host_id, cluster_name, role, name, state, healthy,
                     last_error, restarts, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            );
            sqlx::query(&insert)
                .bind(host_id)
                .bind(&component.cluster)
                .bind(component.role.cli_name())
                .bind(&component.name)
                .bind(&component.state)
                .bind(i64::from(component.healthy))
                .bind(&component.last_error)
                .bind(i64::from(component.restarts))
                .bind(now)
                .execute(&mut **transaction)
                .await
                .map_err(database("record component status"))?;
            let key = (
                component.cluster.clone(),
                component.role.cli_name().to_owned(),
                component.name.clone(),
            );
            let before = previous.get(&key);
            if component.role == Role::LoadBalancer {
                let backends_before = previous_backends
                    .get(&(component.cluster.clone(), component.name.clone()))
                    .cloned()
                    .unwrap_or_default();
                let mut backends_now: Vec<(String, String)> = component
                    .backends
                    .iter()
                    .map(|backend| (backend.name.clone(), backend.state.clone()))
                    .collect();
                backends_now.sort();
                let healthy_before = before.is_some_and(|before| before.healthy);
                if backends_before != backends_now || healthy_before != component.healthy {
                    self.bump_draining_servers(&mut transaction, &component.cluster)
                        .await?;
                }
            }
            let label = format!("{} {}", component.role, component.name);
            let now_report = policy::ComponentReport {
                state: component.state.clone(),
                healthy: component.healthy,
                last_error: component.last_error.clone(),
                restarts: component.restarts,
            };
            for event in policy::component_report_events(&label, before, &now_report) {
                self.insert_event(
                    &mut transaction,
                    event.kind,
                    &component.cluster,
                    &host.name,
                    &actor,
                    &event.message,
                )
                .await?;
            }
        }

        for task in &report.bootstrap {
            let sql = self.sql(
                "SELECT b.cluster_id, b.host_name, b.done, b.last_error FROM bootstrap_tasks b
                 JOIN clusters c ON c.id = b.cluster_id WHERE c.name = $1 AND b.task = $2",
            );
            let Some(row) = sqlx::query(&sql)
                .bind(&task.cluster)
                .bind(task.task.as_str())
                .fetch_optional(&mut **transaction)
                .await
                .map_err(database("read a bootstrap task"))?
            else {
                continue;
            };
            let read = || database("read a bootstrap task");
            let cluster_id: String = row.try_get("cluster_id").map_err(read())?;
            let assigned_to: String = row.try_get("host_name").map_err(read())?;
            let was_done = row.try_get::<i64, _>("done").map_err(read())? != 0;
            let old_error: String = row.try_get("last_error").map_err(read())?;
            let outcome = policy::bootstrap_report_outcome(
                task.task.as_str(),
                &assigned_to,
                &host.name,
                was_done,
                &old_error,
                task,
            );
            let event = match outcome {
                None => continue,
                Some(policy::BootstrapOutcome::Done(event)) => {
                    let sql = self.sql(
                        "UPDATE bootstrap_tasks SET done = 1, last_error = '', updated_at = $1
                         WHERE cluster_id = $2 AND task = $3 AND done = 0",
                    );
                    let updated = sqlx::query(&sql)
                        .bind(now)
                        .bind(&cluster_id)
                        .bind(task.task.as_str())
                        .execute(&mut **transaction)
                        .await
                        .map_err(database("record a bootstrap task"))?;
                    if updated.rows_affected() != 1 {
                        continue;
                    }
                    self.bump_cluster_hosts(&mut transaction, &cluster_id)
                        .await?;
                    event
                }
                Some(policy::BootstrapOutcome::Failed(event)) => {
                    let sql = self.sql(
                        "UPDATE bootstrap_tasks SET last_error = $1, updated_at = $2
                         WHERE cluster_id = $3 AND task = $4",
                    );
                    sqlx::query(&sql)
                        .bind(&task.last_error)
                        .bind(now)
                        .bind(&cluster_id)
                        .bind(task.task.as_str())
                        .execute(&mut **transaction)
                        .await
                        .map_err(database("record a bootstrap task"))?;
                    event
                }
            };
            self.insert_event(
                &mut transaction,
                event.kind,
                &task.cluster,
                &host.name,
                &actor,
                &event.message,
            )
            .await?;
        }
        self.replan_host_clusters(&mut transaction, &host.name)
            .await?;
        let generation = self
            .host_in(&mut **transaction, "id", host_id)
            .await?
            .map(|host| host.generation)
            .unwrap_or(host.generation);
        transaction
            .commit()
            .await
            .map_err(database("commit a heartbeat"))?;
        Ok(generation)
    }

    async fn mark_stale_hosts_down(
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
            .fetch_all(&self.pool)
            .await
            .map_err(database("find silent hosts"))?;
        let mut marked = Vec::new();
        for row in rows {
            let read = || database("find silent hosts");
            let id: String = row.try_get("id").map_err(read())?;
            let name: String = row.try_get("name").map_err(read())?;
            let last_seen: i64 = row.try_get("last_seen_at").map_err(read())?;
            let mut transaction = self.begin_write().await?;
            let update = self.sql(
                "UPDATE hosts SET state = 'down' WHERE id = $1 AND state = 'up' AND last_seen_at < $2",
            );
            let updated = sqlx::query(&update)
                .bind(&id)
                .bind(cutoff)
                .execute(&mut **transaction)
                .await
                .map_err(database("mark a host down"))?;
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
                // A load balancer that went down is no longer waited for by draining servers.
                let balanced = self
                    .host_clusters(&mut transaction, &name, Some(Role::LoadBalancer))
                    .await?;
                for (_, cluster) in balanced {
                    self.bump_draining_servers(&mut transaction, &cluster)
                        .await?;
                }
                marked.push(name);
            }
            transaction
                .commit()
                .await
                .map_err(database("commit a host's state"))?;
        }
        Ok(marked)
    }

    async fn set_host_drained(
        &self,
        name: &str,
        drained: bool,
        actor: &Actor,
    ) -> Result<Host, StoreError> {
        let mut transaction = self.begin_write().await?;
        let sql =
            self.sql("UPDATE hosts SET drained = $1, generation = generation + 1 WHERE name = $2");
        let updated = sqlx::query(&sql)
            .bind(i64::from(drained))
            .bind(name)
            .execute(&mut **transaction)
            .await
            .map_err(database("drain a host"))?;
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
            .fetch_all(&mut **transaction)
            .await
            .map_err(database("read a host's clusters"))?;
        for row in rows {
            let cluster_id: String = row
                .try_get("cluster_id")
                .map_err(database("read a host's clusters"))?;
            self.bump_cluster_hosts(&mut transaction, &cluster_id)
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
        transaction
            .commit()
            .await
            .map_err(database("commit a drain"))?;
        self.get_host(name).await
    }

    async fn remove_host(&self, name: &str, force: bool, actor: &Actor) -> Result<(), StoreError> {
        let host = self.get_host(name).await?;
        if !force {
            if !host.drained {
                return Err(StoreError::Conflict(format!(
                    "host '{name}' is not drained; drain it first (muster host drain {name}) or pass --force"
                )));
            }
            if host.last_seen_ms.is_some()
                && host.state == "up"
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
            .fetch_all(&mut **transaction)
            .await
            .map_err(database("read a host's clusters"))?;
        let mut cluster_ids = Vec::new();
        for row in rows {
            let cluster_id: String = row
                .try_get("cluster_id")
                .map_err(database("read a host's clusters"))?;
            self.bump_cluster_hosts(&mut transaction, &cluster_id)
                .await?;
            cluster_ids.push(cluster_id);
        }
        for (table, column, value) in [
            ("assignments", "host_name", name),
            ("bootstrap_tasks", "host_name", name),
            ("component_status", "host_id", host.id.as_str()),
            ("hosts", "id", host.id.as_str()),
        ] {
            let sql = self.sql(&format!("DELETE FROM {table} WHERE {column} = $1"));
            sqlx::query(&sql)
                .bind(value)
                .execute(&mut **transaction)
                .await
                .map_err(database("remove a host"))?;
        }
        for cluster_id in &cluster_ids {
            let cluster_name_sql = self.sql("SELECT name FROM clusters WHERE id = $1");
            let cluster_name: String = sqlx::query(&cluster_name_sql)
                .bind(cluster_id)
                .fetch_one(&mut **transaction)
                .await
                .map_err(database("read a cluster"))?
                .try_get("name")
                .map_err(database("read a cluster"))?;
            self.replan_scheduler(&mut transaction, cluster_id, &cluster_name)
                .await?;
        }
        let message = format!(
            "host removed with its components; its certificate no longer works (host id {})",
            host.id
        );
        self.insert_event(&mut transaction, "host.removed", "", name, actor, &message)
            .await?;
        transaction
            .commit()
            .await
            .map_err(database("commit a host's removal"))?;
        Ok(())
    }

    async fn list_events(
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
                    .fetch_all(&self.pool)
                    .await
            }
            None => {
                let sql = self.sql(&format!(
                    "SELECT {columns} FROM events ORDER BY id DESC LIMIT $1"
                ));
                sqlx::query(&sql)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
            }
        }
        .map_err(database("list events"))?;
        rows.iter().map(event_from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_are_checked_and_redacted() {
        let url = DatabaseUrl::parse("postgres://muster:s3cret@db.example:5432/muster").unwrap();
        assert_eq!(url.dialect(), Dialect::Postgres);
        assert!(!url.to_string().contains("s3cret"));
        assert!(!format!("{url:?}").contains("s3cret"));
        assert_eq!(
            DatabaseUrl::parse("mariadb://root@h/db").unwrap().expose(),
            "mysql://root@h/db"
        );
        assert!(
            DatabaseUrl::parse("sqlite:///tmp/x.db")
                .unwrap()
                .expose()
                .ends_with("?mode=rwc")
        );
        for (bad, expected) in [
            ("not a url", "not a URL"),
            ("redis://h/db", "unknown scheme"),
            ("postgres://u:pw@h", "database name is missing"),
            ("sqlite://", "path is missing"),
        ] {
            let error = DatabaseUrl::parse(bad).unwrap_err().to_string();
            assert!(error.contains(expected), "{bad}: {error}");
            assert!(!error.contains(":pw@"), "{error}");
        }
    }
}
