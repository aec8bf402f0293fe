//! What the agent reads and changes in a Zato ODB itself, because Zato's command line cannot tell it
//! or do it:
//! - whether the `cluster` row exists. `zato create cluster --skip-if-exists` skips whenever the
//!   ODB's tables exist (always, after `create odb`), and a plain second `create cluster` fails
//!   with an IntegrityError (exit status 16, the same as any other failure), so the bootstrap
//!   looks at the row before and after it runs the command;
//! - removing a server's row. Zato 3.2 keeps a removed server's row for ever and has no command to
//!   delete one (only the admin service `zato.server.delete`, which needs another running server of
//!   the cluster), so a server removed and later created again under the same name, or a create
//!   killed after Zato inserted the row, would fail with SERVER_NAME_ALREADY_EXISTS for good. The
//!   agent deletes the row as Zato's own service does: the `server` row, and with it (`ON DELETE
//!   CASCADE`) what refers to it — only a row it proved stale (`ServerRow`);
//! - whether a create made what it should: Zato writes `.zato-info` before it commits a server's
//!   row and before a dashboard's tables and user, and `create server` exits 0 after most errors.

use std::path::Path;

use muster_proto::v1::{OdbSettings, OdbType};
use sqlx::Connection as _;

#[derive(Debug, thiserror::Error)]
pub enum OdbError {
    #[error("cannot reach the ODB ({odb}): {source}")]
    Connect {
        odb: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot {action} in the ODB ({odb}): {source}")]
    Query {
        action: String,
        odb: String,
        #[source]
        source: sqlx::Error,
    },
}

/// A connection to a Zato ODB of any of its three kinds.
enum Connection {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
    MySql(sqlx::MySqlConnection),
}

impl Connection {
    /// `text` with PostgreSQL's `$1`, `$2`, ... as MySQL's `?` where this is MySQL.
    fn sql(&self, text: &str) -> String {
        match self {
            Connection::MySql(_) => muster_proto::sql::mysql_placeholders(text),
            _ => text.to_owned(),
        }
    }

    /// `column` as text in this dialect (a timestamp as `YYYY-MM-DD HH:MM:SS[.ffffff]`).
    fn as_text(&self, column: &str) -> String {
        match self {
            Connection::Sqlite(_) => column.to_owned(),
            Connection::Postgres(_) => format!("CAST({column} AS TEXT)"),
            Connection::MySql(_) => format!("CAST({column} AS CHAR)"),
        }
    }

    /// The SQL that counts the tables named `$1` of the current database or schema.
    fn table_count_sql(&self) -> &'static str {
        match self {
            Connection::Sqlite(_) => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1"
            }
            Connection::Postgres(_) => {
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = $1"
            }
            Connection::MySql(_) => {
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = DATABASE() AND table_name = ?"
            }
        }
    }
}

/// Runs `$body` with `$connection` bound to the open connection, whatever its kind.
macro_rules! on_connection {
    ($open:expr, $connection:ident => $body:expr) => {
        match $open {
            Connection::Sqlite(mut $connection) => $body,
            Connection::Postgres(mut $connection) => $body,
            Connection::MySql(mut $connection) => $body,
        }
    };
}

/// Why Zato 3.2 cannot keep its ODB on the database server whose `SELECT VERSION()` is `version`:
/// MariaDB 10.5 and later refuse what every Zato 3.2 server runs at its start (its SQL lock calls
/// `get_lock` with a number: "Illegal parameter data type bigint for operation 'get_lock'"), so
/// the servers die at every start. `None` for MySQL and older MariaDB.
/// The tables of Zato's objects the agent looks up by name (to delete one through Zato).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectTable {
    /// Security definitions of every type (`sec_base`).
    Security,
    /// Scheduler jobs (`job`).
    Job,
}

pub fn zato_refuses(version: &str) -> Option<String> {
    if !version.contains("MariaDB") {
        return None;
    }
    let mut numbers = version
        .split(|character: char| !character.is_ascii_digit())
        .filter(|part| !part.is_empty())
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let (major, minor) = (numbers.next()?, numbers.next().unwrap_or(0));
    ((major, minor) >= (10, 5)).then(|| {
        format!(
            "Zato 3.2 cannot run on MariaDB 10.5 or later (this ODB: MariaDB {major}.{minor}, \
             {version}): its servers die at every start on get_lock; use PostgreSQL or MySQL for \
             the cluster's ODB"
        )
    })
}

/// `up_status, preferred_address, bind_port, last_join_mod_date` of a `server` row.
type ServerColumns = (Option<String>, Option<String>, Option<i32>, Option<String>);

/// Seconds since the epoch of a UTC time as Zato writes them: `2026-12-06 07:34:00.123456` in the
/// ODB, `2026-12-06T07:34:00.123456` in `.zato-info` (a trailing `Z` is taken too).
pub fn utc_seconds(text: &str) -> Option<f64> {
    let text = text.trim().trim_end_matches('Z');
    let (date, time) = text.split_once(['T', ' '])?;
    let mut date_parts = date.splitn(3, '-').map(str::parse::<i64>);
    let (year, month, day) = (
        date_parts.next()?.ok()?,
        date_parts.next()?.ok()?,
        date_parts.next()?.ok()?,
    );
    let mut time_parts = time.splitn(3, ':');
    let hours: f64 = time_parts.next()?.parse().ok()?;
    let minutes: f64 = time_parts.next()?.parse().ok()?;
    let seconds: f64 = time_parts.next()?.parse().ok()?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    #[allow(
        clippy::cast_precision_loss,
        reason = "days since 1970 fit an f64 exactly"
    )]
    let days = days as f64;
    Some(days * 86_400.0 + hours * 3600.0 + minutes * 60.0 + seconds)
}

/// A server's row in Zato's ODB, as far as the agent reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerRow {
    /// `running` from its start, `clean-down` from a clean stop; NULL until it first started.
    pub up_status: Option<String>,
    /// Where the others reach it, as it said at its start.
    pub preferred_address: Option<String>,
    pub bind_port: Option<i32>,
    /// When `zato create server` made it (`last_join_mod_date`), as seconds since the epoch.
    pub created_at: Option<f64>,
}

/// One ODB, as the settings a component got describe it.
pub struct Odb<'a> {
    pub settings: &'a OdbSettings,
    pub password: &'a str,
    /// The SQLite file when the settings name none.
    pub default_sqlite: &'a Path,
}

impl Odb<'_> {
    pub fn describe(&self) -> String {
        let settings = self.settings;
        match OdbType::try_from(settings.odb_type).unwrap_or(OdbType::Sqlite) {
            OdbType::Sqlite | OdbType::Unspecified => {
                format!("SQLite {}", self.sqlite_file().display())
            }
            OdbType::Postgresql => format!(
                "PostgreSQL {}:{}/{}",
                settings.host, settings.port, settings.db_name
            ),
            OdbType::Mysql => format!(
                "MySQL {}:{}/{}",
                settings.host, settings.port, settings.db_name
            ),
        }
    }

    fn sqlite_file(&self) -> std::path::PathBuf {
        if self.settings.db_name.is_empty() {
            self.default_sqlite.to_path_buf()
        } else {
            self.settings.db_name.clone().into()
        }
    }

    async fn connect(&self) -> Result<Connection, OdbError> {
        let settings = self.settings;
        let connect_error = |source| OdbError::Connect {
            odb: self.describe(),
            source,
        };
        let connection = match OdbType::try_from(settings.odb_type).unwrap_or(OdbType::Sqlite) {
            OdbType::Sqlite | OdbType::Unspecified => {
                let options = sqlx::sqlite::SqliteConnectOptions::new()
                    .filename(self.sqlite_file())
                    .create_if_missing(false)
                    .foreign_keys(true);
                Connection::Sqlite(
                    sqlx::SqliteConnection::connect_with(&options)
                        .await
                        .map_err(connect_error)?,
                )
            }
            OdbType::Postgresql => {
                let mut options = sqlx::postgres::PgConnectOptions::new()
                    .host(&settings.host)
                    .port(u16::try_from(settings.port).unwrap_or(5432))
                    .username(&settings.user)
                    .password(self.password)
                    .database(&settings.db_name);
                if !settings.postgresql_schema.is_empty() {
                    options =
                        options.options([("search_path", settings.postgresql_schema.as_str())]);
                }
                Connection::Postgres(
                    sqlx::PgConnection::connect_with(&options)
                        .await
                        .map_err(connect_error)?,
                )
            }
            OdbType::Mysql => {
                let options = sqlx::mysql::MySqlConnectOptions::new()
                    .host(&settings.host)
                    .port(u16::try_from(settings.port).unwrap_or(3306))
                    .username(&settings.user)
                    .password(self.password)
                    .database(&settings.db_name);
                Connection::MySql(
                    sqlx::MySqlConnection::connect_with(&options)
                        .await
                        .map_err(connect_error)?,
                )
            }
        };
        Ok(connection)
    }

    fn query_error(&self, action: String) -> impl FnOnce(sqlx::Error) -> OdbError + '_ {
        move |source| OdbError::Query {
            action,
            odb: self.describe(),
            source,
        }
    }

    /// Whether the ODB holds the row of cluster `cluster`. An ODB without Zato's tables holds none.
    pub async fn cluster_exists(&self, cluster: &str) -> Result<bool, OdbError> {
        let error = self.query_error(format!("look for cluster {cluster}"));
        let count: i64 = match self.connect().await? {
            Connection::Sqlite(mut connection) => {
                let tables: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'cluster'",
                )
                .fetch_one(&mut connection)
                .await
                .map_err(error)?;
                if tables == 0 {
                    return Ok(false);
                }
                sqlx::query_scalar("SELECT COUNT(*) FROM cluster WHERE name = $1")
                    .bind(cluster)
                    .fetch_one(&mut connection)
                    .await
                    .map_err(self.query_error(format!("look for cluster {cluster}")))?
            }
            Connection::Postgres(mut connection) => {
                let table: Option<String> =
                    sqlx::query_scalar("SELECT to_regclass('cluster')::text")
                        .fetch_one(&mut connection)
                        .await
                        .map_err(error)?;
                if table.is_none() {
                    return Ok(false);
                }
                sqlx::query_scalar("SELECT COUNT(*) FROM cluster WHERE name = $1")
                    .bind(cluster)
                    .fetch_one(&mut connection)
                    .await
                    .map_err(self.query_error(format!("look for cluster {cluster}")))?
            }
            Connection::MySql(mut connection) => {
                let tables: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM information_schema.tables \
                     WHERE table_schema = DATABASE() AND table_name = 'cluster'",
                )
                .fetch_one(&mut connection)
                .await
                .map_err(error)?;
                if tables == 0 {
                    return Ok(false);
                }
                sqlx::query_scalar("SELECT COUNT(*) FROM cluster WHERE name = ?")
                    .bind(cluster)
                    .fetch_one(&mut connection)
                    .await
                    .map_err(self.query_error(format!("look for cluster {cluster}")))?
            }
        };
        Ok(count > 0)
    }

    /// Why Zato 3.2 cannot use this ODB's database server ([`zato_refuses`]); `None` when it can.
    /// Only a MySQL-kind ODB is asked.
    pub async fn zato_refusal(&self) -> Result<Option<String>, OdbError> {
        if OdbType::try_from(self.settings.odb_type) != Ok(OdbType::Mysql) {
            return Ok(None);
        }
        let Connection::MySql(mut connection) = self.connect().await? else {
            return Ok(None);
        };
        let version: String = sqlx::query_scalar("SELECT VERSION()")
            .fetch_one(&mut connection)
            .await
            .map_err(self.query_error("read the database server's version".to_owned()))?;
        Ok(zato_refuses(&version))
    }

    /// The row of server `server` of cluster `cluster`, if the ODB holds one.
    pub async fn server_row(
        &self,
        cluster: &str,
        server: &str,
    ) -> Result<Option<ServerRow>, OdbError> {
        let open = self.connect().await?;
        let sql = open.sql(&format!(
            "SELECT s.up_status, s.preferred_address, s.bind_port, {} FROM server s \
             JOIN cluster c ON c.id = s.cluster_id WHERE s.name = $1 AND c.name = $2",
            open.as_text("s.last_join_mod_date")
        ));
        let row: Option<ServerColumns> = on_connection!(open, connection => sqlx::query_as(&sql)
                .bind(server)
                .bind(cluster)
                .fetch_optional(&mut connection)
                .await)
        .map_err(self.query_error(format!("read server {server} of cluster {cluster}")))?;
        Ok(row.map(
            |(up_status, preferred_address, bind_port, joined)| ServerRow {
                up_status,
                preferred_address,
                bind_port,
                created_at: joined.as_deref().and_then(utc_seconds),
            },
        ))
    }

    /// What Zato recorded as deployed on server `server` of cluster `cluster`: the cluster's id in
    /// the ODB and the SHA-256 of each module a service of which the server deployed
    /// (`deployed_service.source_hash`, which Zato computes over the module's text). `None` when
    /// the ODB has no such server.
    pub async fn deployed_modules(
        &self,
        cluster: &str,
        server: &str,
    ) -> Result<Option<(i32, std::collections::BTreeSet<String>)>, OdbError> {
        let open = self.connect().await?;
        let sql = open.sql(
            "SELECT c.id, d.source_hash FROM cluster c JOIN server s ON s.cluster_id = c.id \
             LEFT JOIN deployed_service d ON d.server_id = s.id WHERE c.name = $1 AND s.name = $2",
        );
        let rows: Vec<(i32, Option<String>)> =
            on_connection!(open, connection => sqlx::query_as(&sql)
                .bind(cluster)
                .bind(server)
                .fetch_all(&mut connection)
                .await)
            .map_err(self.query_error(format!(
                "read what server {server} of cluster {cluster} deployed"
            )))?;
        let Some((cluster_id, _)) = rows.first() else {
            return Ok(None);
        };
        Ok(Some((
            *cluster_id,
            rows.iter().filter_map(|(_, hash)| hash.clone()).collect(),
        )))
    }

    /// The services server `server` of cluster `cluster` deployed that are not Zato's own: (id,
    /// name, the module's file name).
    pub async fn deployed_user_services(
        &self,
        cluster: &str,
        server: &str,
    ) -> Result<Vec<(i64, String, String)>, OdbError> {
        let open = self.connect().await?;
        let sql = open.sql(
            "SELECT v.id, v.name, d.source_path FROM deployed_service d \
             JOIN service v ON v.id = d.service_id JOIN server s ON s.id = d.server_id \
             JOIN cluster c ON c.id = s.cluster_id \
             WHERE c.name = $1 AND s.name = $2 AND NOT v.is_internal",
        );
        let rows: Vec<(i32, String, Option<String>)> =
            on_connection!(open, connection => sqlx::query_as(&sql)
                .bind(cluster)
                .bind(server)
                .fetch_all(&mut connection)
                .await)
            .map_err(self.query_error(format!(
                "read the services server {server} of cluster {cluster} deployed"
            )))?;
        Ok(rows
            .into_iter()
            .map(|(id, name, path)| {
                let module = path
                    .as_deref()
                    .and_then(|path| path.rsplit('/').next())
                    .unwrap_or_default()
                    .to_owned();
                (i64::from(id), name, module)
            })
            .collect())
    }

    /// Whether the dashboard's tables hold user `user` (what `zato create web-admin` makes after
    /// Django's migrations, seconds after it wrote `.zato-info`).
    pub async fn dashboard_user_exists(&self, user: &str) -> Result<bool, OdbError> {
        let open = self.connect().await?;
        let tables_sql = open.table_count_sql();
        let users_sql = open.sql("SELECT COUNT(*) FROM auth_user WHERE username = $1");
        let error = || self.query_error(format!("look for the dashboard's user {user}"));
        let count: i64 = on_connection!(open, connection => {
            let tables: i64 = sqlx::query_scalar(tables_sql)
                .bind("auth_user")
                .fetch_one(&mut connection)
                .await
                .map_err(error())?;
            if tables == 0 {
                return Ok(false);
            }
            sqlx::query_scalar(&users_sql)
                .bind(user)
                .fetch_one(&mut connection)
                .await
                .map_err(error())?
        });
        Ok(count > 0)
    }

    /// The id of the object named `name` of kind `table` in cluster `cluster`; `None` when it
    /// has none (removed by hand, or never imported).
    pub async fn object_id(
        &self,
        cluster: &str,
        table: ObjectTable,
        name: &str,
    ) -> Result<Option<i32>, OdbError> {
        let open = self.connect().await?;
        let table_name = match table {
            ObjectTable::Security => "sec_base",
            ObjectTable::Job => "job",
        };
        let sql = open.sql(&format!(
            "SELECT o.id FROM {table_name} o JOIN cluster c ON c.id = o.cluster_id \
             WHERE c.name = $1 AND o.name = $2"
        ));
        let id: Option<i32> = on_connection!(open, connection => sqlx::query_scalar(&sql)
            .bind(cluster)
            .bind(name)
            .fetch_optional(&mut connection)
            .await)
        .map_err(self.query_error(format!("look up {table_name} {name} of cluster {cluster}")))?;
        Ok(id)
    }

    /// Deletes the `server` row named `server` of cluster `cluster`; returns how many rows went
    /// (0 or 1).
    pub async fn remove_server(&self, cluster: &str, server: &str) -> Result<u64, OdbError> {
        let error = self.query_error(format!("remove server {server} of cluster {cluster}"));
        let result = match self.connect().await? {
            Connection::Sqlite(mut connection) => sqlx::query(
                "DELETE FROM server WHERE name = $1 \
                 AND cluster_id IN (SELECT id FROM cluster WHERE name = $2)",
            )
            .bind(server)
            .bind(cluster)
            .execute(&mut connection)
            .await
            .map(|done| done.rows_affected()),
            Connection::Postgres(mut connection) => sqlx::query(
                "DELETE FROM server WHERE name = $1 \
                 AND cluster_id IN (SELECT id FROM cluster WHERE name = $2)",
            )
            .bind(server)
            .bind(cluster)
            .execute(&mut connection)
            .await
            .map(|done| done.rows_affected()),
            Connection::MySql(mut connection) => sqlx::query(
                "DELETE FROM server WHERE name = ? \
                 AND cluster_id IN (SELECT id FROM cluster WHERE name = ?)",
            )
            .bind(server)
            .bind(cluster)
            .execute(&mut connection)
            .await
            .map(|done| done.rows_affected()),
        };
        result.map_err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zatos_utc_times_read_as_seconds_since_the_epoch() {
        assert_eq!(utc_seconds("1970-01-01 00:00:00"), Some(0.0));
        assert_eq!(utc_seconds("2026-12-06 07:34:00"), Some(1_796_542_440.0));
        assert_eq!(
            utc_seconds("2026-12-06T07:34:00.5"),
            utc_seconds("2026-12-06 07:34:00.500000Z")
        );
        assert_eq!(utc_seconds("2024-02-29 00:00:00"), Some(1_709_164_800.0));
        assert_eq!(utc_seconds("yesterday"), None);
        assert_eq!(utc_seconds("2026-13-01 00:00:00"), None);
    }

    #[test]
    fn mariadb_from_10_5_is_refused_for_zato_3_2() {
        let refused = zato_refuses("10.11.6-MariaDB-0+deb12u1").unwrap();
        assert_eq!(
            refused,
            "Zato 3.2 cannot run on MariaDB 10.5 or later (this ODB: MariaDB 10.11, \
             10.11.6-MariaDB-0+deb12u1): its servers die at every start on get_lock; use \
             PostgreSQL or MySQL for the cluster's ODB"
        );
        assert!(refused.chars().count() <= muster_proto::daemon::CAUSE_MAX_CHARS);
        assert!(zato_refuses("10.5.0-MariaDB").is_some());
        assert_eq!(zato_refuses("10.4.32-MariaDB"), None);
        assert_eq!(zato_refuses("8.0.36"), None, "MySQL");
        assert_eq!(zato_refuses("5.7.44-log"), None);
    }
}
