//! `mock-zato`: a TEST AND DEMO DOUBLE for Zato 3.2's `zato` command, for machines where Zato is
//! not installed. Every line it prints starts with `[mock-zato]`. Production hosts use the real
//! `zato`; `tests/tests/real_zato.rs` runs Muster against it.
//!
//! It has the command-line surface of the sub-commands Muster calls — `create odb|cluster|server|
//! scheduler|web-admin`, `update password`, `start`, `stop`, `check-config` — and reproduces what
//! the real Zato 3.2 does where Muster depends on it (`packaging/docs/zato.md`):
//! - argv: the word `quickstart` before the first option is taken as Zato's quickstart command
//!   and fails (IndexError); a separate value that starts with `-` is taken for an option (exit 2);
//!   unknown options and missing positionals are refused (exit 2);
//! - secrets: `create cluster` and `update password` fail on a missing or empty password or
//!   secret option (Zato would ask on a terminal); `create odb|server|scheduler|web-admin` accept
//!   empty ones, as Zato does;
//! - the ODB is real (SQLite, PostgreSQL or MySQL): `create odb` makes the `install_state`,
//!   `cluster` and `server` tables and refuses when they exist; `create cluster --skip-if-exists`
//!   skips whenever the tables exist (so never creates the row), and a cluster that exists is an
//!   IntegrityError (exit 16); `create server` writes its tree first, then fails with
//!   NO_SUCH_CLUSTER (exit 8) or SERVER_NAME_ALREADY_EXISTS (exit 7); a running server sets its
//!   `up_status`;
//! - files: `.zato-info` (written last), `server.conf` (`[main] ipc_port_start`, `[scheduler]` with
//!   the API client), `scheduler.conf` (`[api_clients]`), `web-admin.conf`, mode 0644 as Zato writes
//!   them; an absolute `config/repo/user-conf` symlink;
//! - credentials: without `--scheduler-api-client-for-server-*`, server and scheduler each make
//!   up their own; the scheduler refuses a call without its credentials (HTTP 500, "Credentials
//!   error" in its log); the dashboard's user `admin` gets a password nobody sees until `update
//!   password` sets one, and `POST /accounts/login/` answers 302 with a session only to it;
//! - processes: `start` returns at once and the component (`-m zato.server.main DIR`; the
//!   dashboard's `-m zato.admin.main` runs in DIR) writes its pidfile later
//!   (`MOCK_ZATO_PIDFILE_DELAY_MS`, default 1000; the real Zato takes 3-25 s), then binds its port:
//!   a second process fails on the port and removes the pidfile; a server binds its IPC ports
//!   (`ipc_port_start` + workers) and fails on a taken one; a component that gives up logs
//!   `Exception: ...`; `start` refuses a stale pidfile or a taken port, `stop` ends the pid.
//!
//! What it does not reproduce: TLS, Zato's services, jobs and pub/sub (a server answers every GET
//! with JSON naming itself, `{"pong": "zato", "zato_env": {"result": "ZATO_OK"}, "server": NAME,
//! "cluster": CLUSTER, "mock": true, ...}`), the scheduler calling servers, the dashboard's pages
//! beyond its login, Zato's CPU and memory (a real server takes ~430 MB), encryption of secrets in
//! its files, the MariaDB incompatibility of Zato's servers, and commands Muster does not call.
//!
//! Every invocation is appended, with the values of options whose names hold `password` or
//! `secret` masked, to `mock-zato.log` in the working directory and in the component directory.
//!
//! Test hooks: `MOCK_ZATO_CREATE_DELAY_MS` makes `create server|scheduler|web-admin` pause after
//! writing the directory tree and before `.zato-info`, so a test can interrupt a half-made create.
//! `MOCK_ZATO_START_DELAY_MS` makes a started component wait that long after binding its port
//! before it answers, as a real Zato server takes seconds to boot.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{AnyConnection, Connection as _, Row as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const LABEL: &str = "[mock-zato]";
const ODB_OPTIONS: &[&str] = &[
    "--odb-type",
    "--odb-host",
    "--odb-port",
    "--odb-user",
    "--odb-db-name",
    "--odb-password",
    "--postgresql-schema",
];
const TLS_OPTIONS: &[&str] = &[
    "--pub-key-path",
    "--priv-key-path",
    "--cert-path",
    "--ca-certs-path",
];

#[derive(Debug)]
enum MockError {
    /// A command line Zato would refuse (exit status 2, as argparse does).
    Usage(String),
    /// A command that ran and failed (exit status 1).
    Failed(String),
    /// A failure Zato reports with one of its own exit statuses (`SYS_ERROR` in `zato.cli`).
    Exit(u8, String),
}

/// Zato's `SYS_ERROR` exit statuses that Muster meets.
const SERVER_NAME_ALREADY_EXISTS: u8 = 7;
const NO_SUCH_CLUSTER: u8 = 8;
/// Any exception a command did not handle itself (an IntegrityError, say).
const EXCEPTION_CAUGHT: u8 = 16;

type Result<T> = std::result::Result<T, MockError>;

fn failed(message: impl Into<String>) -> MockError {
    MockError::Failed(message.into())
}

fn say(message: &str) {
    println!("{LABEL} {message}");
}

// ---------------------------------------------------------------------------------------------
// Strict argument parsing

struct Spec {
    command: &'static str,
    positionals: &'static [&'static str],
    /// Options that take a value.
    options: Vec<&'static str>,
    flags: &'static [&'static str],
}

#[derive(Debug, Default)]
struct Parsed {
    positionals: Vec<String>,
    options: BTreeMap<String, String>,
    flags: BTreeSet<String>,
}

impl Parsed {
    fn get(&self, option: &str) -> Option<&str> {
        self.options.get(option).map(String::as_str)
    }
    fn get_or<'a>(&'a self, option: &str, default: &'a str) -> &'a str {
        self.get(option).unwrap_or(default)
    }
    fn require(&self, option: &str, why: &str) -> Result<&str> {
        self.get(option)
            .ok_or_else(|| MockError::Usage(format!("{option} is missing; {why}")))
    }
}

fn parse(spec: &Spec, args: &[String]) -> Result<Parsed> {
    let mut parsed = Parsed::default();
    let mut unrecognized = Vec::new();
    let mut index = 0;
    while index < args.len() {
        let arg = &args[index];
        index += 1;
        if !arg.starts_with("--") {
            parsed.positionals.push(arg.clone());
            continue;
        }
        let (name, inline_value) = match arg.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (arg.clone(), None),
        };
        if spec.flags.contains(&name.as_str()) {
            parsed.flags.insert(name);
        } else if spec.options.contains(&name.as_str()) {
            let value = match inline_value {
                Some(value) => value,
                // argparse takes a separate value that starts with `-` for an option.
                None if index < args.len() && !args[index].starts_with('-') => {
                    index += 1;
                    args[index - 1].clone()
                }
                None => {
                    return Err(MockError::Usage(format!(
                        "zato {}: error: argument {name}: expected one argument",
                        spec.command
                    )));
                }
            };
            parsed.options.insert(name, value);
        } else {
            unrecognized.push(arg.clone());
        }
    }
    if parsed.positionals.len() > spec.positionals.len() {
        unrecognized.extend(parsed.positionals.drain(spec.positionals.len()..));
    }
    if !unrecognized.is_empty() {
        return Err(MockError::Usage(format!(
            "zato {}: error: unrecognized arguments: {}",
            spec.command,
            unrecognized.join(" ")
        )));
    }
    if parsed.positionals.len() < spec.positionals.len() {
        let missing = &spec.positionals[parsed.positionals.len()..];
        return Err(MockError::Usage(format!(
            "zato {}: error: the following arguments are required: {}",
            spec.command,
            missing.join(", ")
        )));
    }
    if let Some(odb_type) = parsed.get("--odb-type")
        && !["sqlite", "postgresql", "mysql"].contains(&odb_type)
    {
        return Err(MockError::Usage(format!(
            "zato {}: error: argument --odb-type: invalid choice: '{odb_type}' (choose from 'mysql', 'postgresql', 'sqlite')",
            spec.command
        )));
    }
    Ok(parsed)
}

fn with(base: &[&'static str], more: &[&'static str]) -> Vec<&'static str> {
    base.iter().chain(more).copied().collect()
}

/// Zato asks on the terminal for every option whose name holds `password` or `secret` that is
/// missing or empty (except `--secret-key`, and the ODB password on SQLite), unless the command
/// allows empty secrets: `create odb|server|scheduler|web-admin` do, `create cluster` and `update
/// password` do not. Without a terminal the question fails, so the mock fails as Zato would there.
fn require_secrets(parsed: &Parsed, secrets: &[&str]) -> Result<()> {
    let why =
        "Zato would ask for it on the terminal (and fail without one); pass it on the command line";
    let mut asked: Vec<&str> = secrets.to_vec();
    if parsed.get_or("--odb-type", "sqlite") != "sqlite" {
        asked.insert(0, "--odb-password");
    }
    for secret in asked {
        if parsed.get(secret).is_none_or(str::is_empty) {
            return Err(failed(format!("{secret} is missing or empty; {why}")));
        }
    }
    Ok(())
}

fn masked(args: &[String]) -> String {
    let mut shown = Vec::new();
    let mut mask_next = false;
    for arg in args {
        if mask_next {
            shown.push("***".to_owned());
            mask_next = false;
            continue;
        }
        let sensitive =
            arg.starts_with("--") && (arg.contains("password") || arg.contains("secret"));
        match arg.split_once('=') {
            Some((name, _)) if sensitive => shown.push(format!("{name}=***")),
            None if sensitive => {
                shown.push(arg.clone());
                mask_next = true;
            }
            _ => shown.push(arg.clone()),
        }
    }
    shown.join(" ")
}

fn now_text() -> String {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    format!("{}.{:03}", elapsed.as_secs(), elapsed.subsec_millis())
}

fn append_log(path: &Path, line: &str) {
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(file, "{line}");
    }
}

fn log_invocation(args: &[String], component_path: Option<&Path>) {
    let line = format!(
        "{} pid={} zato {}",
        now_text(),
        std::process::id(),
        masked(args)
    );
    append_log(Path::new("mock-zato.log"), &line);
    let working_dir = std::env::current_dir().ok();
    if let Some(path) = component_path
        && path.is_dir()
        && std::fs::canonicalize(path).ok() != working_dir
    {
        append_log(&path.join("mock-zato.log"), &line);
    }
}

// ---------------------------------------------------------------------------------------------
// The ODB

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
    MySql,
}

#[derive(Debug, Clone)]
struct Odb {
    odb_type: String,
    host: String,
    port: String,
    user: String,
    db_name: String,
    password: String,
}

impl Odb {
    fn from_options(parsed: &Parsed) -> Result<Odb> {
        let odb_type = parsed.get_or("--odb-type", "sqlite").to_owned();
        let default_port = match odb_type.as_str() {
            "postgresql" => "5432",
            "mysql" => "3306",
            _ => "",
        };
        let odb = Odb {
            host: parsed.get_or("--odb-host", "").to_owned(),
            port: parsed.get_or("--odb-port", default_port).to_owned(),
            user: parsed.get_or("--odb-user", "").to_owned(),
            db_name: parsed.get_or("--odb-db-name", "").to_owned(),
            password: parsed.get_or("--odb-password", "").to_owned(),
            odb_type,
        };
        if odb.db_name.is_empty() {
            return Err(MockError::Usage("--odb-db-name is missing".to_owned()));
        }
        Ok(odb)
    }

    fn from_ini(ini: &Ini) -> Result<Odb> {
        let get = |key: &str| ini.get("odb", key).unwrap_or_default().to_owned();
        Ok(Odb {
            odb_type: get("engine"),
            host: get("host"),
            port: get("port"),
            user: get("username"),
            db_name: get("db_name"),
            password: reveal(&get("password")),
        })
    }

    fn dialect(&self) -> Dialect {
        match self.odb_type.as_str() {
            "postgresql" => Dialect::Postgres,
            "mysql" => Dialect::MySql,
            _ => Dialect::Sqlite,
        }
    }

    fn url(&self, create: bool) -> Result<String> {
        if self.dialect() == Dialect::Sqlite {
            let mode = if create { "rwc" } else { "rw" };
            return Ok(format!("sqlite://{}?mode={mode}", self.db_name));
        }
        let scheme = if self.dialect() == Dialect::Postgres {
            "postgres"
        } else {
            "mysql"
        };
        let mut url = url::Url::parse(&format!("{scheme}://placeholder/"))
            .map_err(|error| failed(error.to_string()))?;
        url.set_host(Some(&self.host))
            .map_err(|error| failed(format!("--odb-host: {error}")))?;
        let port: u16 = self
            .port
            .parse()
            .map_err(|_| failed(format!("invalid --odb-port {:?}", self.port)))?;
        let _ = url.set_port(Some(port));
        let _ = url.set_username(&self.user);
        if !self.password.is_empty() {
            let _ = url.set_password(Some(&self.password));
        }
        url.set_path(&self.db_name);
        Ok(url.to_string())
    }

    async fn connect(&self, create: bool) -> Result<AnyConnection> {
        sqlx::any::install_default_drivers();
        let url = self.url(create)?;
        let connecting = AnyConnection::connect(&url);
        match tokio::time::timeout(Duration::from_secs(10), connecting).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(failed(format!(
                "cannot connect to the ODB ({} {}): {error}",
                self.odb_type,
                self.location()
            ))),
            Err(_) => Err(failed(format!(
                "cannot connect to the ODB ({} {}): timed out",
                self.odb_type,
                self.location()
            ))),
        }
    }

    fn location(&self) -> String {
        match self.dialect() {
            Dialect::Sqlite => self.db_name.clone(),
            _ => format!("{}@{}:{}/{}", self.user, self.host, self.port, self.db_name),
        }
    }

    /// `$N` placeholders become `?` for MySQL.
    fn sql(&self, query: &str) -> String {
        if self.dialect() != Dialect::MySql {
            return query.to_owned();
        }
        let mut converted = String::new();
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

    fn ini_section(&self) -> String {
        format!(
            "[odb]\nengine={}\nhost={}\nport={}\nusername={}\ndb_name={}\npassword={}\n",
            self.odb_type,
            self.host,
            self.port,
            self.user,
            self.db_name,
            conceal(&self.password)
        )
    }
}

/// Zato keeps the ODB password encrypted in its config; the mock only hides it from casual reads.
fn conceal(secret: &str) -> String {
    format!("mock-hex:{}", hex::encode(secret))
}

fn reveal(stored: &str) -> String {
    stored
        .strip_prefix("mock-hex:")
        .and_then(|encoded| hex::decode(encoded).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_default()
}

fn odb_error(action: &str) -> impl FnOnce(sqlx::Error) -> MockError + '_ {
    move |error| failed(format!("ODB error while trying to {action}: {error}"))
}

async fn table_exists(connection: &mut AnyConnection, table: &str) -> bool {
    sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(connection)
        .await
        .is_ok()
}

fn schema(dialect: Dialect) -> [String; 3] {
    let (serial, text) = match dialect {
        Dialect::Sqlite => ("INTEGER PRIMARY KEY AUTOINCREMENT", "VARCHAR(200)"),
        Dialect::Postgres => ("SERIAL PRIMARY KEY", "VARCHAR(200)"),
        Dialect::MySql => ("INTEGER AUTO_INCREMENT PRIMARY KEY", "VARCHAR(200)"),
    };
    [
        format!(
            "CREATE TABLE install_state (id {serial}, version {text} NOT NULL UNIQUE, install_time {text} NOT NULL, source_host {text} NOT NULL, source_user {text} NOT NULL, opaque1 {text})"
        ),
        format!(
            "CREATE TABLE cluster (id {serial}, name {text} NOT NULL UNIQUE, description {text}, odb_type {text} NOT NULL, odb_host {text}, odb_port INTEGER, odb_user {text}, odb_db_name {text}, odb_schema {text}, broker_host {text}, broker_port INTEGER, lb_host {text} NOT NULL, lb_port INTEGER NOT NULL, lb_agent_port INTEGER NOT NULL, cw_srv_id INTEGER, cw_srv_keep_alive_dt {text}, opaque1 {text})"
        ),
        format!(
            "CREATE TABLE server (id {serial}, name {text} NOT NULL, host {text}, bind_host {text}, bind_port INTEGER, preferred_address {text}, crypto_use_tls INTEGER, last_join_status {text}, last_join_mod_date {text}, last_join_mod_by {text}, up_status {text}, up_mod_date {text}, token VARCHAR(32) NOT NULL, opaque1 {text}, cluster_id INTEGER NOT NULL REFERENCES cluster (id) ON DELETE CASCADE, UNIQUE (name, cluster_id))"
        ),
    ]
}

fn user_and_host() -> (String, String) {
    let user = std::env::var("USER").unwrap_or_else(|_| "root".to_owned());
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "localhost".to_owned());
    (user, host)
}

async fn create_odb(parsed: &Parsed) -> Result<()> {
    let odb = Odb::from_options(parsed)?;
    let mut connection = odb.connect(true).await?;
    if table_exists(&mut connection, "install_state").await {
        if parsed.flags.contains("--skip-if-exists") {
            say("ODB already exists, skipped (--skip-if-exists)");
            return Ok(());
        }
        return Err(failed(
            "ODB_EXISTS: the ODB already exists (table install_state is present)",
        ));
    }
    for statement in schema(odb.dialect()) {
        sqlx::query(&statement)
            .execute(&mut connection)
            .await
            .map_err(odb_error("create tables"))?;
    }
    let (user, host) = user_and_host();
    sqlx::query(&odb.sql(
        "INSERT INTO install_state (version, install_time, source_host, source_user) VALUES ($1, $2, $3, $4)",
    ))
    .bind("3.2-mock")
    .bind(now_text())
    .bind(host)
    .bind(user)
    .execute(&mut connection)
    .await
    .map_err(odb_error("record the install state"))?;
    say(&format!(
        "ODB created ({} {})",
        odb.odb_type,
        odb.location()
    ));
    Ok(())
}

async fn create_cluster(parsed: &Parsed) -> Result<()> {
    require_secrets(parsed, &["--admin-invoke-password"])?;
    let odb = Odb::from_options(parsed)?;
    let name = &parsed.positionals[0];
    let lb_port: i64 = parsed
        .get_or("--lb-port", "11223")
        .parse()
        .map_err(|_| MockError::Usage("argument --lb-port: invalid int value".into()))?;
    let lb_agent_port: i64 = parsed
        .get_or("--lb-agent_port", "20151")
        .parse()
        .map_err(|_| MockError::Usage("argument --lb-agent_port: invalid int value".into()))?;
    let mut connection = odb.connect(false).await?;
    // Zato 3.2 skips when the ODB's tables exist, which they always do after `create odb`: the
    // flag never creates the cluster.
    if parsed.flags.contains("--skip-if-exists")
        && table_exists(&mut connection, "install_state").await
    {
        say("OK (--skip-if-exists: the ODB's tables exist; no cluster was created)");
        return Ok(());
    }
    if !table_exists(&mut connection, "cluster").await {
        return Err(failed(
            "the ODB has no cluster table; run `zato create odb` first",
        ));
    }
    let existing = sqlx::query(&odb.sql("SELECT id FROM cluster WHERE name = $1"))
        .bind(name.as_str())
        .fetch_optional(&mut connection)
        .await
        .map_err(odb_error("look up the cluster"))?;
    if existing.is_some() {
        return Err(MockError::Exit(
            EXCEPTION_CAUGHT,
            format!(
                "IntegrityError: ('(sqlite3.IntegrityError) UNIQUE constraint failed: cluster.name',) (cluster {name})"
            ),
        ));
    }
    let port: i64 = odb.port.parse().unwrap_or(0);
    sqlx::query(&odb.sql(
        "INSERT INTO cluster (name, description, odb_type, odb_host, odb_port, odb_user, odb_db_name, odb_schema, lb_host, lb_port, lb_agent_port) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    ))
    .bind(name.as_str())
    .bind("Created by mock-zato")
    .bind(odb.odb_type.as_str())
    .bind(odb.host.as_str())
    .bind(port)
    .bind(odb.user.as_str())
    .bind(odb.db_name.as_str())
    .bind(parsed.get_or("--postgresql-schema", ""))
    .bind(parsed.get_or("--lb-host", "127.0.0.1"))
    .bind(lb_port)
    .bind(lb_agent_port)
    .execute(&mut connection)
    .await
    .map_err(odb_error("insert the cluster"))?;
    say(&format!("cluster {name} created"));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Component directories

/// A minimal INI reader for the files the mock writes.
#[derive(Debug, Default)]
struct Ini {
    sections: BTreeMap<String, BTreeMap<String, String>>,
}

impl Ini {
    fn read(path: &Path) -> Result<Ini> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| failed(format!("cannot read {}: {error}", path.display())))?;
        let mut ini = Ini::default();
        let mut section = String::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(name) = line
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
            {
                section = name.to_owned();
            } else if let Some((key, value)) = line.split_once('=') {
                ini.sections
                    .entry(section.clone())
                    .or_default()
                    .insert(key.trim().to_owned(), value.trim().to_owned());
            }
        }
        Ok(ini)
    }

    fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.sections.get(section)?.get(key).map(String::as_str)
    }
}

/// Checks that `path` is an empty directory, as Zato's create commands require.
fn require_empty_directory(path: &Path) -> Result<()> {
    let mut entries = std::fs::read_dir(path).map_err(|error| {
        failed(format!(
            "path {} must be an existing empty directory: {error}",
            path.display()
        ))
    })?;
    // The invocation log is the mock's own.
    let foreign = entries.find(|entry| {
        entry
            .as_ref()
            .map(|entry| entry.file_name() != "mock-zato.log")
            .unwrap_or(true)
    });
    if foreign.is_some() {
        return Err(failed(format!(
            "directory {} is not empty, please re-run the command in an empty directory",
            path.display()
        )));
    }
    Ok(())
}

fn write(path: &Path, contents: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|error| failed(format!("cannot create {}: {error}", parent.display())))?;
    }
    std::fs::write(path, contents)
        .map_err(|error| failed(format!("cannot write {}: {error}", path.display())))
}

fn make_tree(path: &Path) -> Result<()> {
    for directory in ["config/repo", "logs", "pickup/incoming", "work"] {
        std::fs::create_dir_all(path.join(directory))
            .map_err(|error| failed(format!("cannot create {directory}: {error}")))?;
    }
    Ok(())
}

fn create_pause() {
    let delay = std::env::var("MOCK_ZATO_CREATE_DELAY_MS")
        .ok()
        .and_then(|ms| ms.parse().ok());
    if let Some(milliseconds) = delay {
        #[allow(
            clippy::disallowed_methods,
            reason = "the mock is synchronous here; a test hook"
        )]
        std::thread::sleep(Duration::from_millis(milliseconds));
    }
}

/// `.zato-info`, written last: its presence marks a finished create.
fn write_zato_info(path: &Path, component: &str) -> Result<()> {
    let (user, host) = user_and_host();
    let info = serde_json::json!({
        "version": "Zato 3.2 (mock-zato, a test double)",
        "created_user_host": format!("{user}@{host}"),
        "created_ts": now_text(),
        "component": component,
        "mock": true,
    });
    write(&path.join(".zato-info"), &format!("{info:#}\n"))
}

/// `SCHEME://HOST[:PORT]` as Zato reads it: no scheme means https, no port the default.
fn split_address(address: &str, default_port: u16) -> Result<(String, u16, bool)> {
    let (use_tls, rest) = match address.split_once("://") {
        Some(("https", rest)) => (true, rest),
        Some(("http", rest)) => (false, rest),
        Some((scheme, _)) => {
            return Err(failed(format!(
                "unsupported scheme {scheme:?} in {address:?}"
            )));
        }
        None => (true, address),
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (
            host.to_owned(),
            port.parse()
                .map_err(|_| failed(format!("invalid port in {address:?}")))?,
        ),
        None => (rest.to_owned(), default_port),
    };
    if host.is_empty() {
        return Err(failed(format!("no host in {address:?}")));
    }
    Ok((host, port, use_tls))
}

fn python_bool(value: bool) -> &'static str {
    if value { "True" } else { "False" }
}

fn random_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| failed("no system randomness"))?;
    Ok(hex::encode(bytes))
}

/// The API client servers call the scheduler with: from Zato's environment variables, else the
/// options, else one Zato makes up (then the servers and the scheduler disagree, as with the real
/// Zato).
fn scheduler_api_client(parsed: &Parsed) -> Result<(String, String)> {
    // As Zato: its environment variables first, then the options.
    let from_env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let username = from_env("Zato_Scheduler_API_Client_For_Server_Username")
        .or_else(|| {
            parsed
                .get("--scheduler-api-client-for-server-username")
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "server_api_client1".to_owned());
    let password = match from_env("Zato_Scheduler_API_Client_For_Server_Password").or_else(|| {
        parsed
            .get("--scheduler-api-client-for-server-password")
            .filter(|password| !password.is_empty())
            .map(str::to_owned)
    }) {
        Some(password) => password,
        None => random_token()?,
    };
    Ok((username, password))
}

async fn create_server(parsed: &Parsed) -> Result<()> {
    let path = PathBuf::from(&parsed.positionals[0]);
    let (cluster_name, server_name) = (&parsed.positionals[1], &parsed.positionals[2]);
    let odb = Odb::from_options(parsed)?;
    let http_port: u16 = parsed
        .get_or("--http-port", "17010")
        .parse()
        .map_err(|_| MockError::Usage("argument --http-port: invalid int value".into()))?;
    let threads = parsed.get_or("--threads", "1");
    let scheduler = parsed.get_or("--scheduler-address-for-server", "https://127.0.0.1:31530");
    let (scheduler_host, scheduler_port, scheduler_tls) = split_address(scheduler, 31530)?;
    let (api_username, api_password) = scheduler_api_client(parsed)?;
    require_empty_directory(&path)?;
    let absolute = std::fs::canonicalize(&path).map_err(|error| failed(error.to_string()))?;

    // Zato writes the directory tree before it looks at the ODB: a refused create leaves it.
    make_tree(&path)?;
    std::fs::create_dir_all(path.join("pickup/incoming/user-conf"))
        .map_err(|error| failed(format!("cannot create pickup/incoming/user-conf: {error}")))?;
    std::os::unix::fs::symlink(
        absolute.join("pickup/incoming/user-conf"),
        path.join("config/repo/user-conf"),
    )
    .map_err(|error| failed(format!("cannot link config/repo/user-conf: {error}")))?;

    let mut connection = odb.connect(false).await?;
    let cluster = sqlx::query(&odb.sql("SELECT id FROM cluster WHERE name = $1"))
        .bind(cluster_name.as_str())
        .fetch_optional(&mut connection)
        .await
        .map_err(odb_error("look up the cluster"))?
        .ok_or_else(|| {
            MockError::Exit(
                NO_SUCH_CLUSTER,
                format!("Cluster `{cluster_name}` doesn't exist in ODB"),
            )
        })?;
    let cluster_id: i64 = cluster
        .try_get::<i32, _>(0)
        .map(i64::from)
        .or_else(|_| cluster.try_get(0))
        .map_err(odb_error("read the cluster"))?;
    let taken = sqlx::query(&odb.sql("SELECT id FROM server WHERE name = $1 AND cluster_id = $2"))
        .bind(server_name.as_str())
        .bind(cluster_id)
        .fetch_optional(&mut connection)
        .await
        .map_err(odb_error("look up the server"))?;
    if taken.is_some() {
        return Err(MockError::Exit(
            SERVER_NAME_ALREADY_EXISTS,
            format!("Server name `{server_name}` already exists"),
        ));
    }
    let token = random_token()?;
    let (_, host) = user_and_host();
    sqlx::query(&odb.sql(
        "INSERT INTO server (name, host, bind_host, bind_port, token, cluster_id, last_join_status, up_status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    ))
    .bind(server_name.as_str())
    .bind(host)
    .bind("0.0.0.0")
    .bind(i64::from(http_port))
    .bind(token.as_str())
    .bind(cluster_id)
    .bind("ACCEPTED")
    .bind("")
    .execute(&mut connection)
    .await
    .map_err(odb_error("insert the server"))?;

    let server_conf = format!(
        "[main]\ngunicorn_bind=0.0.0.0:{http_port}\ngunicorn_workers={threads}\nipc_host=127.0.0.1\nipc_port_start=17050\ntoken={token}\n\n{}\n[scheduler]\nscheduler_host={scheduler_host}\nscheduler_port={scheduler_port}\nscheduler_use_tls={}\nscheduler_api_username={api_username}\nscheduler_api_password={api_password}\n",
        odb.ini_section(),
        python_bool(scheduler_tls)
    );
    write(&path.join("config/repo/server.conf"), &server_conf)?;
    let secrets = format!(
        "[secret_keys]\nkey1={}\n\n[zato]\nserver_conf.kvdb.password=\n",
        conceal(parsed.get_or("--secret-key", ""))
    );
    write(&path.join("config/repo/secrets.conf"), &secrets)?;
    create_pause();
    write_zato_info(&path, "SERVER")?;
    say(&format!(
        "server {server_name} of cluster {cluster_name} created in {}",
        path.display()
    ));
    Ok(())
}

async fn create_scheduler(parsed: &Parsed) -> Result<()> {
    let path = PathBuf::from(&parsed.positionals[0]);
    let odb = Odb::from_options(parsed)?;
    let cluster_name = parsed.require("--cluster-name", "the scheduler needs its cluster")?;
    let server_address = match (
        parsed.get("--server-address-for-scheduler"),
        parsed.get("--server-path"),
    ) {
        (Some(address), _) => address.to_owned(),
        (None, Some(server_path)) => {
            let server_conf = Ini::read(&Path::new(server_path).join("config/repo/server.conf"))?;
            let bind = server_conf
                .get("main", "gunicorn_bind")
                .unwrap_or("127.0.0.1:17010");
            format!("http://{bind}")
        }
        (None, None) => {
            return Err(MockError::Usage(
                "one of --server-address-for-scheduler or --server-path is required".into(),
            ));
        }
    };
    let (server_host, server_port, server_tls) = split_address(&server_address, 17010)?;
    let bind_host = parsed.get_or("--bind-host", "0.0.0.0");
    let bind_port = parsed.get_or("--bind-port", "31530");
    let (api_username, api_password) = scheduler_api_client(parsed)?;
    require_empty_directory(&path)?;
    make_tree(&path)?;
    let conf = format!(
        "[bind]\nhost={bind_host}\nport={bind_port}\n\n[cluster]\nname={cluster_name}\n\n[server]\nserver_host={server_host}\nserver_port={server_port}\nserver_use_tls={}\n\n{}\n[api_clients]\nauth_required=True\n{api_username}={api_password}\n",
        python_bool(server_tls),
        odb.ini_section()
    );
    write(&path.join("config/repo/scheduler.conf"), &conf)?;
    create_pause();
    write_zato_info(&path, "SCHEDULER")?;
    say(&format!(
        "scheduler of cluster {cluster_name} created in {}",
        path.display()
    ));
    Ok(())
}

async fn create_web_admin(parsed: &Parsed) -> Result<()> {
    let path = PathBuf::from(&parsed.positionals[0]);
    let odb = Odb::from_options(parsed)?;
    require_empty_directory(&path)?;
    let mut connection = odb.connect(false).await?;
    if !table_exists(&mut connection, "cluster").await {
        return Err(failed(
            "the ODB has no cluster table; run `zato create odb` first",
        ));
    }
    if !table_exists(&mut connection, "auth_user").await {
        sqlx::query("CREATE TABLE auth_user (id INTEGER PRIMARY KEY, username VARCHAR(150) NOT NULL UNIQUE, password VARCHAR(128) NOT NULL)")
            .execute(&mut connection)
            .await
            .map_err(odb_error("create the dashboard's tables"))?;
        // As Zato: user `admin` gets a password that nobody is shown.
        sqlx::query(
            &odb.sql("INSERT INTO auth_user (id, username, password) VALUES (1, 'admin', $1)"),
        )
        .bind(password_hash(&random_token()?))
        .execute(&mut connection)
        .await
        .map_err(odb_error("create the dashboard's admin user"))?;
    }
    make_tree(&path)?;
    let conf = serde_json::json!({
        "host": "0.0.0.0",
        "port": 8183,
        "db_type": odb.odb_type,
        "DATABASE_NAME": odb.db_name,
        "DATABASE_HOST": odb.host,
        "DATABASE_PORT": odb.port,
        "DATABASE_USER": odb.user,
    });
    write(
        &path.join("config/repo/web-admin.conf"),
        &format!("{conf:#}\n"),
    )?;
    write(&path.join("config/repo/odb.conf"), &odb.ini_section())?;
    create_pause();
    write_zato_info(&path, "WEB_ADMIN")?;
    say(&format!("web-admin created in {}", path.display()));
    Ok(())
}

fn password_hash(password: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        password.as_bytes(),
    ))
}

/// `zato update password PATH USERNAME --password=...`: a dashboard user's password, in the ODB
/// that the web-admin in PATH uses.
async fn update_password(parsed: &Parsed) -> Result<()> {
    require_secrets(parsed, &["--password"])?;
    let path = PathBuf::from(&parsed.positionals[0]);
    let username = &parsed.positionals[1];
    let component = read_component(&path)?;
    let Some(odb) = component.odb.filter(|_| component.kind == "WEB_ADMIN") else {
        return Err(failed(format!("{} is not a web-admin", path.display())));
    };
    let mut connection = odb.connect(false).await?;
    let updated = sqlx::query(&odb.sql("UPDATE auth_user SET password = $1 WHERE username = $2"))
        .bind(password_hash(parsed.get_or("--password", "")))
        .bind(username.as_str())
        .execute(&mut connection)
        .await
        .map_err(odb_error("update the password"))?;
    if updated.rows_affected() == 0 {
        return Err(failed(format!("No such user `{username}`")));
    }
    say(&format!("password of {username} updated"));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// start, stop, check-config, and the component process

#[derive(Debug)]
struct Component {
    kind: String,
    /// The address it binds, as its config file says (`0.0.0.0` for all).
    host: String,
    port: u16,
    odb: Option<Odb>,
    /// The server's token, by which it finds its name and cluster in the ODB.
    token: Option<String>,
    detail: serde_json::Value,
    /// A server's IPC ports: (ipc_host, ipc_port_start, gunicorn_workers).
    ipc: Option<(String, u16, u16)>,
    /// The scheduler's API client for servers: (user name, password).
    api_client: Option<(String, String)>,
}

fn read_component(path: &Path) -> Result<Component> {
    let info_text = std::fs::read_to_string(path.join(".zato-info")).map_err(|_| {
        failed(format!(
            "{} is not a Zato component directory (no .zato-info)",
            path.display()
        ))
    })?;
    let info: serde_json::Value =
        serde_json::from_str(&info_text).map_err(|error| failed(format!(".zato-info: {error}")))?;
    let kind = info["component"].as_str().unwrap_or_default().to_owned();
    let repo = path.join("config/repo");
    let host_of = |bind: &str| {
        bind.rsplit_once(':')
            .map_or("0.0.0.0", |(host, _)| host)
            .to_owned()
    };
    let port_of = |bind: &str| -> Result<u16> {
        bind.rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .ok_or_else(|| failed(format!("invalid bind address {bind:?}")))
    };
    match kind.as_str() {
        "SERVER" => {
            let conf = Ini::read(&repo.join("server.conf"))?;
            Ok(Component {
                host: host_of(conf.get("main", "gunicorn_bind").unwrap_or_default()),
                port: port_of(conf.get("main", "gunicorn_bind").unwrap_or_default())?,
                token: conf.get("main", "token").map(str::to_owned),
                detail: serde_json::json!({
                    "scheduler_host": conf.get("scheduler", "scheduler_host"),
                    "scheduler_port": conf.get("scheduler", "scheduler_port"),
                }),
                ipc: Some((
                    conf.get("main", "ipc_host")
                        .unwrap_or("127.0.0.1")
                        .to_owned(),
                    conf.get("main", "ipc_port_start")
                        .and_then(|port| port.parse().ok())
                        .unwrap_or(17050),
                    conf.get("main", "gunicorn_workers")
                        .and_then(|workers| workers.parse().ok())
                        .unwrap_or(1),
                )),
                api_client: None,
                odb: Some(Odb::from_ini(&conf)?),
                kind,
            })
        }
        "SCHEDULER" => {
            let conf = Ini::read(&repo.join("scheduler.conf"))?;
            Ok(Component {
                host: conf.get("bind", "host").unwrap_or("0.0.0.0").to_owned(),
                port: conf
                    .get("bind", "port")
                    .unwrap_or("31530")
                    .parse()
                    .map_err(|_| failed("invalid [bind] port"))?,
                token: None,
                detail: serde_json::json!({
                    "cluster": conf.get("cluster", "name"),
                    "server_host": conf.get("server", "server_host"),
                    "server_port": conf.get("server", "server_port"),
                }),
                ipc: None,
                api_client: conf
                    .sections
                    .get("api_clients")
                    .and_then(|clients| {
                        clients
                            .iter()
                            .find(|(name, _)| name.as_str() != "auth_required")
                    })
                    .map(|(name, password)| (name.clone(), password.clone())),
                odb: Some(Odb::from_ini(&conf)?),
                kind,
            })
        }
        "WEB_ADMIN" => {
            let text = std::fs::read_to_string(repo.join("web-admin.conf"))
                .map_err(|error| failed(format!("web-admin.conf: {error}")))?;
            let conf: serde_json::Value = serde_json::from_str(&text)
                .map_err(|error| failed(format!("web-admin.conf: {error}")))?;
            let port = conf["port"]
                .as_u64()
                .and_then(|port| u16::try_from(port).ok())
                .ok_or_else(|| failed("web-admin.conf: invalid port"))?;
            Ok(Component {
                host: conf["host"].as_str().unwrap_or("0.0.0.0").to_owned(),
                port,
                token: None,
                detail: serde_json::json!({}),
                ipc: None,
                api_client: None,
                odb: Some(Odb::from_ini(&Ini::read(&repo.join("odb.conf"))?)?),
                kind,
            })
        }
        other => Err(failed(format!(
            "unsupported component {other:?} in {}",
            path.display()
        ))),
    }
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path.join("pidfile"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

async fn check_config(path: &Path) -> Result<Component> {
    let component = read_component(path)?;
    if let Some(pid) = read_pid(path) {
        if alive(pid) {
            return Err(failed(format!(
                "the component in {} is already running (pid {pid})",
                path.display()
            )));
        }
        return Err(failed(format!(
            "stale pidfile {} (pid {pid} is not running); remove it before starting",
            path.join("pidfile").display()
        )));
    }
    if std::net::TcpListener::bind((component.host.as_str(), component.port)).is_err() {
        return Err(failed(format!("port {} is already in use", component.port)));
    }
    if let Some(odb) = &component.odb {
        let mut connection = odb.connect(false).await?;
        sqlx::query("SELECT 1")
            .execute(&mut connection)
            .await
            .map_err(odb_error("ping the ODB"))?;
    }
    Ok(component)
}

/// The module a real Zato component runs as (`python -m MODULE DIR`).
fn module_of(kind: &str) -> &'static str {
    match kind {
        "SERVER" => "zato.server.main",
        "SCHEDULER" => "zato.scheduler.main",
        _ => "zato.admin.main",
    }
}

/// Launches the component and returns at once, as `zato start` does: the component process
/// (`mock-zato -m zato.server.main DIR`, a command line like the real one's; the dashboard's is
/// `-m zato.admin.main` run in DIR) writes its own pidfile later.
async fn start(parsed: &Parsed) -> Result<()> {
    let path = PathBuf::from(&parsed.positionals[0]);
    let component = check_config(&path).await?;
    if parsed.flags.contains("--fg") {
        return serve(&path).await;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path.join("logs/mock-component.log"))
        .map_err(|error| failed(format!("cannot open the component log: {error}")))?;
    let executable = std::env::current_exe().map_err(|error| failed(error.to_string()))?;
    let absolute = std::fs::canonicalize(&path).map_err(|error| failed(error.to_string()))?;
    use std::os::unix::process::CommandExt as _;
    let mut launch = std::process::Command::new(executable);
    launch.arg("-m").arg(module_of(&component.kind));
    // As Zato does: the dashboard gets no directory, it runs in it.
    if component.kind != "WEB_ADMIN" {
        launch.arg(&absolute);
    }
    let child = launch
        .current_dir(&absolute)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().map_err(|error| failed(error.to_string()))?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|error| failed(format!("cannot launch the component: {error}")))?;
    say(&format!(
        "{} starting in {} (pid {}, port {}); it writes its pidfile when it has bound its port",
        component.kind,
        path.display(),
        child.id(),
        component.port
    ));
    Ok(())
}

async fn stop(parsed: &Parsed) -> Result<()> {
    let path = PathBuf::from(&parsed.positionals[0]);
    let pid =
        read_pid(&path).ok_or_else(|| failed(format!("No pidfile found in {}", path.display())))?;
    let process = nix::unistd::Pid::from_raw(pid);
    if alive(pid) {
        nix::sys::signal::kill(process, nix::sys::signal::Signal::SIGTERM)
            .map_err(|error| failed(format!("cannot signal pid {pid}: {error}")))?;
        for _ in 0..200 {
            if !alive(pid) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if alive(pid) {
            return Err(failed(format!("pid {pid} did not stop within 10 s")));
        }
    }
    let _ = std::fs::remove_file(path.join("pidfile"));
    say(&format!(
        "stopped the component in {} (pid {pid})",
        path.display()
    ));
    Ok(())
}

async fn set_up_status(component: &Component, status: &str) -> Result<(String, String)> {
    let (Some(odb), Some(token)) = (&component.odb, &component.token) else {
        return Ok((String::new(), String::new()));
    };
    let mut connection = odb.connect(false).await?;
    let row = sqlx::query(&odb.sql(
        "SELECT server.name, cluster.name FROM server JOIN cluster ON cluster.id = server.cluster_id WHERE server.token = $1",
    ))
    .bind(token.as_str())
    .fetch_optional(&mut connection)
    .await
    .map_err(odb_error("look up this server"))?
    .ok_or_else(|| failed("this server's token is not in the ODB"))?;
    let names: (String, String) = (
        row.try_get(0).map_err(odb_error("read"))?,
        row.try_get(1).map_err(odb_error("read"))?,
    );
    sqlx::query(&odb.sql("UPDATE server SET up_status = $1, up_mod_date = $2 WHERE token = $3"))
        .bind(status)
        .bind(now_text())
        .bind(token.as_str())
        .execute(&mut connection)
        .await
        .map_err(odb_error("set up_status"))?;
    Ok(names)
}

fn env_milliseconds(name: &str, default: u64) -> Duration {
    Duration::from_millis(
        std::env::var(name)
            .ok()
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(default),
    )
}

/// What the component process answers with.
struct Responder {
    kind: &'static str,
    /// A server's and a scheduler's JSON answer to every GET.
    body: String,
    /// The scheduler's API client: (user name, password).
    api_client: Option<(String, String)>,
    /// The web-admin's ODB, where its users are.
    odb: Option<Odb>,
}

/// One HTTP request as the component read it.
struct Request {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: String,
}

async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Request> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = received.windows(4).position(|window| window == b"\r\n\r\n") {
            break end;
        }
        if received.len() > 64 * 1024 {
            return None;
        }
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await {
            Ok(Ok(read)) if read > 0 => received.extend_from_slice(&buffer[..read]),
            _ => return None,
        }
    };
    let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next()?.split_whitespace();
    let (method, path) = (first.next()?.to_owned(), first.next()?.to_owned());
    let headers: BTreeMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|length| length.parse().ok())
        .unwrap_or(0)
        .min(64 * 1024);
    let mut body = received[head_end + 4..].to_vec();
    while body.len() < length {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await {
            Ok(Ok(read)) if read > 0 => body.extend_from_slice(&buffer[..read]),
            _ => return None,
        }
    }
    Some(Request {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn form_value(body: &str, name: &str) -> Option<String> {
    body.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| {
            url::form_urlencoded::parse(format!("v={value}").as_bytes())
                .next()
                .map(|(_, value)| value.into_owned())
                .unwrap_or_default()
        })
    })
}

const LOGIN_FORM: &str = "<html><body><!-- mock-zato dashboard -->\
<form method=\"post\" action=\"/accounts/login/\">\
<input type=\"hidden\" name=\"csrfmiddlewaretoken\" value=\"mock-csrf-token\">\
<input name=\"username\"><input type=\"password\" name=\"password\"></form></body></html>\n";

impl Responder {
    /// (status line, content type, extra headers, body)
    async fn respond(&self, request: &Request) -> (&'static str, &'static str, String, String) {
        match self.kind {
            "scheduler" if request.method == "POST" && !request.body.is_empty() => {
                // Zato's scheduler checks Basic credentials against its [api_clients].
                let given = request
                    .headers
                    .get("authorization")
                    .and_then(|value| value.strip_prefix("Basic "))
                    .and_then(|encoded| {
                        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded)
                            .ok()
                    })
                    .map(|decoded| String::from_utf8_lossy(&decoded).into_owned());
                let expected = self
                    .api_client
                    .as_ref()
                    .map(|(user, password)| format!("{user}:{password}"));
                if given.is_some() && given == expected {
                    (
                        "200 OK",
                        "application/json",
                        String::new(),
                        "{\"status\": \"ok\", \"response\": {}}\n".to_owned(),
                    )
                } else {
                    say("Credentials error -> Invalid_Username_Or_Password");
                    (
                        "500 Internal Server Error",
                        "application/json",
                        String::new(),
                        "{\"status\": \"error\", \"response\": {}}\n".to_owned(),
                    )
                }
            }
            "web-admin" if request.path.starts_with("/accounts/login") => {
                if request.method != "POST" {
                    return ("200 OK", "text/html", String::new(), LOGIN_FORM.to_owned());
                }
                let username = form_value(&request.body, "username").unwrap_or_default();
                let password = form_value(&request.body, "password").unwrap_or_default();
                if self.login(&username, &password).await {
                    (
                        "302 Found",
                        "text/html",
                        "Location: /\r\nSet-Cookie: sessionid=mock-session; HttpOnly; Path=/\r\n"
                            .to_owned(),
                        String::new(),
                    )
                } else {
                    ("200 OK", "text/html", String::new(), LOGIN_FORM.to_owned())
                }
            }
            _ => (
                "200 OK",
                "application/json",
                String::new(),
                self.body.clone(),
            ),
        }
    }

    async fn login(&self, username: &str, password: &str) -> bool {
        let Some(odb) = &self.odb else { return false };
        let Ok(mut connection) = odb.connect(false).await else {
            return false;
        };
        let stored: Option<String> =
            sqlx::query(&odb.sql("SELECT password FROM auth_user WHERE username = $1"))
                .bind(username)
                .fetch_optional(&mut connection)
                .await
                .ok()
                .flatten()
                .and_then(|row| row.try_get(0).ok());
        stored.is_some_and(|stored| stored == password_hash(password))
    }
}

/// The component process. Like a real Zato component it writes its pidfile only seconds after
/// `zato start` returned (`MOCK_ZATO_PIDFILE_DELAY_MS`, default 1000), then binds its port; if the
/// port is taken it removes the pidfile (another process's, by then) and exits, as a second real
/// server does. A server also binds Zato's IPC ports (`[main] ipc_port_start` and one more
/// per worker) on `ipc_host`. Then it answers HTTP until SIGTERM, stops accepting and finishes
/// the requests under way (as Zato's gunicorn does on a graceful stop).
async fn serve(path: &Path) -> Result<()> {
    let component = read_component(path)?;
    tokio::time::sleep(env_milliseconds("MOCK_ZATO_PIDFILE_DELAY_MS", 1000)).await;
    let pidfile = path.join("pidfile");
    write(&pidfile, &format!("{}\n", std::process::id()))?;
    let give_up = |message: String| {
        let _ = std::fs::remove_file(&pidfile);
        failed(message)
    };
    let listener = tokio::net::TcpListener::bind((component.host.as_str(), component.port))
        .await
        .map_err(|error| give_up(format!("cannot bind port {}: {error}", component.port)))?;
    let mut ipc_listeners = Vec::new();
    if let Some((ipc_host, ipc_start, workers)) = &component.ipc {
        for port in *ipc_start..ipc_start.saturating_add(*workers) {
            let ipc = std::net::TcpListener::bind((ipc_host.as_str(), port)).map_err(|error| {
                give_up(format!(
                    "cannot bind the IPC port {ipc_host}:{port} (ipc_port_start): {error}"
                ))
            })?;
            ipc_listeners.push(ipc);
        }
    }
    tokio::time::sleep(env_milliseconds("MOCK_ZATO_START_DELAY_MS", 0)).await;
    let (server_name, cluster_name) = set_up_status(&component, "running").await?;
    let kind = match component.kind.as_str() {
        "SERVER" => "server",
        "SCHEDULER" => "scheduler",
        _ => "web-admin",
    };
    let mut body = serde_json::json!({
        "pong": "zato",
        "zato_env": {"result": "ZATO_OK"},
        "mock": true,
        "component": kind,
        "pid": std::process::id(),
        "port": component.port,
        "detail": component.detail,
    });
    if kind == "server" {
        body["server"] = server_name.into();
        body["cluster"] = cluster_name.into();
    } else if let Some(cluster) = component.detail.get("cluster") {
        body["cluster"] = cluster.clone();
    }
    let responder = std::sync::Arc::new(Responder {
        kind,
        body: format!("{body}\n"),
        api_client: component.api_client.clone(),
        odb: component.odb.clone(),
    });
    say(&format!(
        "{kind} listening on {}:{}",
        component.host, component.port
    ));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|error| failed(error.to_string()))?;
    let mut in_flight = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((mut stream, _)) = accepted else { continue };
                let responder = responder.clone();
                while in_flight.try_join_next().is_some() {}
                in_flight.spawn(async move {
                    let Some(request) = read_request(&mut stream).await else { return };
                    let (status, content_type, extra, body) = responder.respond(&request).await;
                    let response = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
            _ = terminate.recv() => break,
        }
    }
    drop(listener);
    drop(ipc_listeners);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
    if kind == "server" {
        let _ = set_up_status(&component, "clean-down").await;
    }
    say(&format!("{kind} stopped"));
    Ok(())
}

// ---------------------------------------------------------------------------------------------

/// Zato pre-processes its command line: `quickstart` among the words before the first `--` option
/// is taken as its `quickstart` command, which then fails on the rest (`IndexError` in
/// `pre_process_quickstart`). Options first, positional arguments last, is safe.
fn pre_process(args: &[String]) -> Result<()> {
    let options_at = args
        .iter()
        .position(|arg| arg.starts_with("--"))
        .unwrap_or(args.len());
    let is_component_process = args.first().map(String::as_str) == Some("-m");
    if !is_component_process
        && args.first().map(String::as_str) != Some("quickstart")
        && args[..options_at].iter().any(|arg| arg == "quickstart")
    {
        return Err(failed(
            "IndexError: list index out of range (in pre_process_quickstart: the word \
             `quickstart` before the first option was taken as Zato's quickstart command)",
        ));
    }
    Ok(())
}

async fn dispatch(args: &[String]) -> Result<()> {
    pre_process(args)?;
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["--version"] => {
            say("Zato 3.2 (mock-zato, a test and demo double)");
            Ok(())
        }
        ["create", "odb", rest @ ..] => {
            let spec = Spec {
                command: "create odb",
                positionals: &[],
                options: ODB_OPTIONS.to_vec(),
                flags: &["--skip-if-exists"],
            };
            create_odb(&parse(&spec, &owned(rest))?).await
        }
        ["create", "cluster", rest @ ..] => {
            let spec = Spec {
                command: "create cluster",
                positionals: &["cluster_name"],
                options: with(
                    ODB_OPTIONS,
                    &[
                        "--lb-host",
                        "--lb-port",
                        "--lb-agent_port",
                        "--secret-key",
                        "--admin-invoke-password",
                    ],
                ),
                flags: &["--skip-if-exists"],
            };
            create_cluster(&parse(&spec, &owned(rest))?).await
        }
        ["create", "server", rest @ ..] => {
            let spec = Spec {
                command: "create server",
                positionals: &["path", "cluster_name", "server_name"],
                options: with(
                    &with(ODB_OPTIONS, TLS_OPTIONS),
                    &[
                        "--secret-key",
                        "--jwt-secret",
                        "--http-port",
                        "--threads",
                        "--scheduler-address-for-server",
                        "--scheduler-api-client-for-server-username",
                        "--scheduler-api-client-for-server-password",
                        "--server-api-client-for-scheduler-username",
                        "--server-api-client-for-scheduler-password",
                    ],
                ),
                flags: &[],
            };
            create_server(&parse(&spec, &owned(rest))?).await
        }
        ["create", "scheduler", rest @ ..] => {
            let spec = Spec {
                command: "create scheduler",
                positionals: &["path"],
                options: with(
                    &with(ODB_OPTIONS, TLS_OPTIONS),
                    &[
                        "--cluster-name",
                        "--secret-key",
                        "--server-address-for-scheduler",
                        "--server-path",
                        "--bind-host",
                        "--bind-port",
                        "--scheduler-api-client-for-server-username",
                        "--scheduler-api-client-for-server-password",
                        "--server-api-client-for-scheduler-username",
                        "--server-api-client-for-scheduler-password",
                    ],
                ),
                flags: &[],
            };
            create_scheduler(&parse(&spec, &owned(rest))?).await
        }
        ["create", "web-admin", rest @ ..] => {
            let spec = Spec {
                command: "create web-admin",
                positionals: &["path"],
                options: with(
                    ODB_OPTIONS,
                    &[
                        "--admin-invoke-password",
                        "--pub-key-path",
                        "--priv_key-path",
                        "--cert-path",
                        "--ca-certs-path",
                    ],
                ),
                flags: &[],
            };
            create_web_admin(&parse(&spec, &owned(rest))?).await
        }
        ["create", other, ..] => Err(MockError::Usage(format!(
            "zato create: error: argument: invalid choice: '{other}' (mock-zato knows odb, cluster, server, scheduler, web-admin)"
        ))),
        ["start", rest @ ..] => {
            let spec = Spec {
                command: "start",
                positionals: &["path"],
                options: vec![],
                flags: &["--fg"],
            };
            start(&parse(&spec, &owned(rest))?).await
        }
        ["stop", rest @ ..] => {
            let spec = Spec {
                command: "stop",
                positionals: &["path"],
                options: vec![],
                flags: &[],
            };
            stop(&parse(&spec, &owned(rest))?).await
        }
        ["check-config", rest @ ..] => {
            let spec = Spec {
                command: "check-config",
                positionals: &["path"],
                options: vec![],
                flags: &[],
            };
            let parsed = parse(&spec, &owned(rest))?;
            check_config(Path::new(&parsed.positionals[0])).await?;
            say("config is OK");
            Ok(())
        }
        ["update", "password", rest @ ..] => {
            let spec = Spec {
                command: "update password",
                positionals: &["path", "username"],
                options: vec!["--password"],
                flags: &[],
            };
            update_password(&parse(&spec, &owned(rest))?).await
        }
        ["-m", _module, path] => serve(Path::new(path)).await,
        ["-m", _module] => serve(Path::new(".")).await,
        _ => Err(MockError::Usage(format!(
            "zato: error: unknown command {:?}",
            words.join(" ")
        ))),
    }
}

fn owned(words: &[&str]) -> Vec<String> {
    words.iter().map(|word| (*word).to_owned()).collect()
}

/// The component directory an invocation names, for its log.
fn component_path(args: &[String]) -> Option<PathBuf> {
    match args.first().map(String::as_str) {
        Some("create")
            if matches!(
                args.get(1).map(String::as_str),
                Some("server" | "scheduler" | "web-admin")
            ) =>
        {
            args.get(2).map(PathBuf::from)
        }
        Some("start" | "stop" | "check-config") => args.get(1).map(PathBuf::from),
        _ => None,
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) != Some("-m") {
        log_invocation(&args, component_path(&args).as_deref());
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("{LABEL} cannot start a runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(MockError::Usage(message)) => {
            eprintln!("{LABEL} {message}");
            ExitCode::from(2)
        }
        // A component process that gives up logs it as a Python component does.
        Err(MockError::Failed(message)) if args.first().map(String::as_str) == Some("-m") => {
            eprintln!("{LABEL} Exception: {message}");
            ExitCode::FAILURE
        }
        Err(MockError::Failed(message)) => {
            eprintln!("{LABEL} {message}");
            ExitCode::FAILURE
        }
        Err(MockError::Exit(code, message)) => {
            eprintln!("{LABEL} {message}");
            ExitCode::from(code)
        }
    }
}
