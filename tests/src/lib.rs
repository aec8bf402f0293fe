//! Muster's test harness.
//!
//! - [`TestDatabase`]: a throwaway database on the local PostgreSQL or MariaDB (created with a
//!   random name, dropped when the value is dropped, also after a failed assertion), or a SQLite
//!   file in a temporary directory.
//! - [`wait_for`]: polls a condition with a bound on time, instead of sleeping.
//!
//! The server URLs default to the services every development and CI machine runs
//! (`postgres://postgres@127.0.0.1:5432/postgres`, `mysql://root@127.0.0.1:3306/mysql`) and can be
//! pointed elsewhere with `MUSTER_TEST_POSTGRES_URL` and `MUSTER_TEST_MYSQL_URL`.

pub mod harness;
pub mod netns;
pub mod traffic;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sqlx::Connection;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDatabase {
    pub backend: Backend,
    /// The URL the code under test connects to.
    pub url: String,
    name: String,
    directory: Option<PathBuf>,
}

fn postgres_admin_url() -> String {
    std::env::var("MUSTER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn mysql_admin_url() -> String {
    std::env::var("MUSTER_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/mysql".to_owned())
}

/// `admin_url` with its database name replaced by `database`.
fn with_database(admin_url: &str, database: &str) -> String {
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("a server URL ends with /DATABASE");
    format!("{base}/{database}")
}

fn random_suffix() -> String {
    let mut bytes = [0u8; 6];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .expect("system random");
    hex::encode(bytes)
}

impl TestDatabase {
    pub async fn create(backend: Backend) -> TestDatabase {
        let name = format!("muster_t_{}", random_suffix());
        match backend {
            Backend::Sqlite => {
                let directory = std::env::temp_dir().join(&name);
                std::fs::create_dir_all(&directory).expect("create a temporary directory");
                let url = format!("sqlite://{}/muster.db", directory.display());
                TestDatabase {
                    backend,
                    url,
                    name,
                    directory: Some(directory),
                }
            }
            Backend::Postgres => {
                let admin_url = postgres_admin_url();
                let mut connection = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .unwrap_or_else(|error| {
                        panic!("connect to PostgreSQL at {admin_url}: {error}")
                    });
                sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
                    .execute(&mut connection)
                    .await
                    .expect("create a PostgreSQL test database");
                TestDatabase {
                    backend,
                    url: with_database(&admin_url, &name),
                    name,
                    directory: None,
                }
            }
            Backend::MySql => {
                let admin_url = mysql_admin_url();
                let mut connection = sqlx::MySqlConnection::connect(&admin_url)
                    .await
                    .unwrap_or_else(|error| panic!("connect to MariaDB at {admin_url}: {error}"));
                sqlx::raw_sql(&format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"))
                    .execute(&mut connection)
                    .await
                    .expect("create a MariaDB test database");
                TestDatabase {
                    backend,
                    url: with_database(&admin_url, &name),
                    name,
                    directory: None,
                }
            }
        }
    }

    /// This database as Zato's `--odb-*` options take it. SQLite's file is `sqlite_file`, since a
    /// Zato ODB is a separate database from Muster's own.
    pub fn zato_odb_options(&self, sqlite_file: &std::path::Path) -> Vec<String> {
        let mut options = Vec::new();
        let mut push = |name: &str, value: String| {
            options.push(name.to_owned());
            options.push(value);
        };
        match self.backend {
            Backend::Sqlite => {
                push("--odb-type", "sqlite".to_owned());
                push("--odb-db-name", sqlite_file.display().to_string());
            }
            Backend::Postgres | Backend::MySql => {
                let url = url::Url::parse(&self.url).expect("a test database URL");
                let odb_type = if self.backend == Backend::Postgres {
                    "postgresql"
                } else {
                    "mysql"
                };
                push("--odb-type", odb_type.to_owned());
                push("--odb-host", url.host_str().unwrap_or_default().to_owned());
                push("--odb-port", url.port().unwrap_or_default().to_string());
                push("--odb-user", url.username().to_owned());
                push(
                    "--odb-db-name",
                    url.path().trim_start_matches('/').to_owned(),
                );
                push(
                    "--odb-password",
                    url.password().unwrap_or_default().to_owned(),
                );
            }
        }
        options
    }

    async fn drop_database(backend: Backend, name: String) -> Result<(), sqlx::Error> {
        match backend {
            Backend::Sqlite => Ok(()),
            Backend::Postgres => {
                let mut connection = sqlx::PgConnection::connect(&postgres_admin_url()).await?;
                sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut connection)
                    .await?;
                Ok(())
            }
            Backend::MySql => {
                let mut connection = sqlx::MySqlConnection::connect(&mysql_admin_url()).await?;
                sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name}"))
                    .execute(&mut connection)
                    .await?;
                Ok(())
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(directory) = &self.directory {
            let _ = std::fs::remove_dir_all(directory);
        }
        let (backend, name) = (self.backend, self.name.clone());
        // Drop runs inside the test's runtime, which cannot be blocked on; a short-lived thread
        // with its own runtime drops the database.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime to drop the test database");
            runtime.block_on(Self::drop_database(backend, name))
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("could not drop test database {}: {error}", self.name);
        }
    }
}

/// Polls `check` every `interval` until it returns `Some`, for at most `timeout`.
/// Returns what it found, or an error that says what was awaited.
pub async fn wait_for<T, F, Fut>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: F,
) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = check().await {
            return Ok(found);
        }
        if Instant::now() >= deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        tokio::time::sleep(interval).await;
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("bind an ephemeral port")
}
