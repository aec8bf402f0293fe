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

pub mod browser;
pub mod disk;
pub mod harness;
pub mod netns;
pub mod nspawn;
pub mod proxy;
pub mod rollout_bench;
pub mod scheduler_jobs;
pub mod traffic;

use std::future::Future;
use std::path::{Path, PathBuf};
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
    /// A login of this database's own, with a password (Zato 3.2 refuses an empty ODB password):
    /// the owner of the database (PostgreSQL) or a user with every privilege on it (MariaDB).
    /// Empty for SQLite.
    pub odb_user: String,
    pub odb_password: String,
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

pub(crate) fn random_suffix() -> String {
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
                    odb_user: String::new(),
                    odb_password: String::new(),
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
                let password = format!("-Odb-{}", random_suffix());
                for statement in [
                    format!("CREATE ROLE {name} LOGIN PASSWORD '{password}'"),
                    format!("CREATE DATABASE {name} OWNER {name}"),
                ] {
                    sqlx::raw_sql(&statement)
                        .execute(&mut connection)
                        .await
                        .expect("create a PostgreSQL test database and its owner");
                }
                TestDatabase {
                    backend,
                    url: with_database(&admin_url, &name),
                    odb_user: name.clone(),
                    odb_password: password,
                    name,
                    directory: None,
                }
            }
            Backend::MySql => {
                let admin_url = mysql_admin_url();
                let mut connection = sqlx::MySqlConnection::connect(&admin_url)
                    .await
                    .unwrap_or_else(|error| panic!("connect to MariaDB at {admin_url}: {error}"));
                let password = format!("-Odb-{}", random_suffix());
                sqlx::raw_sql(&format!(
                    "CREATE DATABASE {name} CHARACTER SET utf8mb4; \
                     CREATE USER '{name}'@'%' IDENTIFIED BY '{password}'; \
                     GRANT ALL PRIVILEGES ON {name}.* TO '{name}'@'%'"
                ))
                .execute(&mut connection)
                .await
                .expect("create a MariaDB test database and its user");
                TestDatabase {
                    backend,
                    url: with_database(&admin_url, &name),
                    odb_user: name.clone(),
                    odb_password: password,
                    name,
                    directory: None,
                }
            }
        }
    }

    /// Replaces the database by an empty one of the same name, owner and password (what an
    /// operator meets when a lost database server is restored empty): PostgreSQL's `DROP DATABASE
    /// … WITH (FORCE)` ends the connections into it. Not for SQLite.
    pub async fn replace_with_empty(&self) {
        let name = &self.name;
        match self.backend {
            Backend::Sqlite => panic!("replace_with_empty is for PostgreSQL and MariaDB"),
            Backend::Postgres => {
                let mut connection = sqlx::PgConnection::connect(&postgres_admin_url())
                    .await
                    .expect("connect to PostgreSQL");
                for statement in [
                    format!("DROP DATABASE {name} WITH (FORCE)"),
                    format!("CREATE DATABASE {name} OWNER {name}"),
                ] {
                    sqlx::raw_sql(&statement)
                        .execute(&mut connection)
                        .await
                        .expect("replace the PostgreSQL test database");
                }
            }
            Backend::MySql => {
                let mut connection = sqlx::MySqlConnection::connect(&mysql_admin_url())
                    .await
                    .expect("connect to MariaDB");
                sqlx::raw_sql(&format!(
                    "DROP DATABASE {name}; CREATE DATABASE {name} CHARACTER SET utf8mb4"
                ))
                .execute(&mut connection)
                .await
                .expect("replace the MariaDB test database");
            }
        }
    }

    /// This database as Zato's `--odb-*` options take it, each `--name=value` (the password may
    /// start with `-`). SQLite's file is `sqlite_file`, since a Zato ODB is a separate database
    /// from Muster's own.
    pub fn zato_odb_options(&self, sqlite_file: &Path) -> Vec<String> {
        let mut options = Vec::new();
        let mut push = |name: &str, value: String| options.push(format!("{name}={value}"));
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
                push("--odb-user", self.odb_user.clone());
                push(
                    "--odb-db-name",
                    url.path().trim_start_matches('/').to_owned(),
                );
                push("--odb-password", self.odb_password.clone());
            }
        }
        options
    }

    /// This database as `muster create cluster` takes it: the `--odb-*` options, with the password
    /// in a file written into `directory`.
    pub fn muster_odb_options(&self, directory: &Path) -> Vec<String> {
        let password_file = directory.join(format!("{}.odb-password", self.name));
        std::fs::write(&password_file, &self.odb_password).expect("write the ODB password file");
        self.zato_odb_options(Path::new("/unused"))
            .into_iter()
            .map(|option| {
                if option.starts_with("--odb-password=") {
                    format!("--odb-password-file={}", password_file.display())
                } else {
                    option
                }
            })
            .collect()
    }

    /// [`TestDatabase::muster_odb_options`] for hosts that reach the database at `host` (a
    /// forwarder on a test host, see `netns::forward`) rather than at 127.0.0.1.
    pub fn muster_odb_options_via(
        &self,
        host: std::net::Ipv4Addr,
        directory: &Path,
    ) -> Vec<String> {
        self.muster_odb_options(directory)
            .into_iter()
            .map(|option| {
                if option.starts_with("--odb-host=") {
                    format!("--odb-host={host}")
                } else {
                    option
                }
            })
            .collect()
    }

    async fn drop_database(backend: Backend, name: String) -> Result<(), sqlx::Error> {
        match backend {
            Backend::Sqlite => Ok(()),
            Backend::Postgres => {
                let mut connection = sqlx::PgConnection::connect(&postgres_admin_url()).await?;
                for statement in [
                    format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                    format!("DROP ROLE IF EXISTS {name}"),
                ] {
                    sqlx::raw_sql(&statement).execute(&mut connection).await?;
                }
                Ok(())
            }
            Backend::MySql => {
                let mut connection = sqlx::MySqlConnection::connect(&mysql_admin_url()).await?;
                sqlx::raw_sql(&format!(
                    "DROP DATABASE IF EXISTS {name}; DROP USER IF EXISTS '{name}'@'%'"
                ))
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

const INSTALLED_ZATO: &str = "/opt/zato-3.2/code/bin/zato";

/// The real `zato` (`MUSTER_TEST_ZATO_BIN`, or where `../shared/zato/install.sh` puts it); `None` only where there is none, this is not CI and skipping was asked for
/// (`MUSTER_SKIP_REAL_ZATO=1`): a run without the real Zato is never green by accident.
pub fn real_zato() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("MUSTER_TEST_ZATO_BIN").filter(|path| !path.is_empty()) {
        let path = PathBuf::from(path);
        assert!(
            path.exists(),
            "MUSTER_TEST_ZATO_BIN={} does not exist",
            path.display()
        );
        return Some(path);
    }
    if Path::new(INSTALLED_ZATO).exists() {
        return Some(PathBuf::from(INSTALLED_ZATO));
    }
    let in_ci = std::env::var("CI").is_ok_and(|value| !value.is_empty() && value != "false");
    assert!(
        !in_ci,
        "CI runs the real-Zato suite: no Zato at {INSTALLED_ZATO} and MUSTER_TEST_ZATO_BIN is not \
         set (`.ci/setup` installs it with ../shared/zato/install.sh)"
    );
    let skip = std::env::var("MUSTER_SKIP_REAL_ZATO").is_ok_and(|value| value == "1");
    assert!(
        skip,
        "no real Zato at {INSTALLED_ZATO} and MUSTER_TEST_ZATO_BIN is not set: install it with \
         ../shared/zato/install.sh (`.ci/setup` does when ../shared is beside the checkout), or \
         set MUSTER_SKIP_REAL_ZATO=1 to skip the real-Zato suite"
    );
    eprintln!("skipped: no real Zato, and MUSTER_SKIP_REAL_ZATO=1");
    None
}

/// Where [`free_port_block`] reserves its blocks: below the kernel's ephemeral ports (32768 on
/// Debian), where no outgoing connection is given one, and clear of the ports Zato and Muster
/// bind by default (17010, 17050, 20151, 31530).
const RESERVED_PORTS: std::ops::Range<u16> = 21000..31000;

/// The size of one reservation; a block is at most this long.
const RESERVED_BLOCK: u16 = 64;

/// Where [`free_port`] takes its single ports: below the ephemeral range as well, apart from the
/// blocks, and clear of Zato's defaults (8183, 11223, 17010 and up).
const SINGLE_PORTS: std::ops::Range<u16> = 12000..17000;

/// The lock files (one per reservation) that keep a port or a block this test process's own.
static RESERVATIONS: std::sync::Mutex<Vec<nix::fcntl::Flock<std::fs::File>>> =
    std::sync::Mutex::new(Vec::new());

/// An exclusive `flock` on the reservation file `name`, unless another test process (or this
/// one) holds it; the kernel releases it when the process ends, however it ends.
fn reserve(name: &str) -> Option<nix::fcntl::Flock<std::fs::File>> {
    let directory = std::env::temp_dir().join("muster-test-ports");
    std::fs::create_dir_all(&directory).expect("the port reservations' directory");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(directory.join(format!("{name}.lock")))
        .expect("a port reservation file");
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).ok()
}

/// Whether every port of `ports` can be bound on 127.0.0.1 now.
fn bindable(mut ports: std::ops::Range<u16>) -> bool {
    ports.all(|port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
}

/// Where this process starts looking in a range of `count` places: test processes started side
/// by side look in different places.
fn start_of_search(count: u16) -> u16 {
    u16::try_from(std::process::id().wrapping_mul(7919) % u32::from(count)).expect("below count")
}

/// The first of `count` consecutive ports on 127.0.0.1, free now and kept for this test process
/// until it ends.
///
/// A port handed out by the kernel's ephemeral range is not safe to hold for the length of a
/// test: every outgoing connection on the machine (a load test's requests, another test's
/// coordinator) may be given it, and a server that binds it later then fails (CI saw a mock
/// server's IPC port taken for a whole test this way). So blocks come from below that range,
/// and each is reserved against the other test processes with an exclusive `flock`.
pub fn free_port_block(count: u16) -> u16 {
    assert!(
        (1..=RESERVED_BLOCK).contains(&count),
        "a port block holds 1 to {RESERVED_BLOCK} ports, not {count}"
    );
    let blocks = (RESERVED_PORTS.end - RESERVED_PORTS.start) / RESERVED_BLOCK;
    let offset = start_of_search(blocks);
    for step in 0..blocks {
        let block = (offset + step) % blocks;
        let first = RESERVED_PORTS.start + block * RESERVED_BLOCK;
        let Some(lock) = reserve(&first.to_string()) else {
            continue;
        };
        if bindable(first..first + count) {
            RESERVATIONS.lock().expect("the reservations").push(lock);
            return first;
        }
    }
    panic!("no block of {count} free ports in {RESERVED_PORTS:?}");
}

/// A TCP port on 127.0.0.1, free now and kept for this test process until it ends, for the same
/// reason as [`free_port_block`]'s blocks (CI saw a coordinator's HTTP port, taken from the
/// ephemeral range, bound by something else before the coordinator started).
pub fn free_port() -> u16 {
    let count = SINGLE_PORTS.end - SINGLE_PORTS.start;
    let offset = start_of_search(count);
    for step in 0..count {
        let port = SINGLE_PORTS.start + (offset + step) % count;
        let Some(lock) = reserve(&format!("port-{port}")) else {
            continue;
        };
        if bindable(port..port + 1) {
            RESERVATIONS.lock().expect("the reservations").push(lock);
            return port;
        }
    }
    panic!("no free port in {SINGLE_PORTS:?}");
}
