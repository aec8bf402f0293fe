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
//!   NO_SUCH_CLUSTER (exit 8) or SERVER_NAME_ALREADY_EXISTS (exit 7), and any other failure of its
//!   insert is logged and exits 0; a running server sets its `up_status`, `preferred_address` and
//!   `bind_port` (its `preferred_address` as Zato finds it: `[preferred_address] address`, else
//!   the bind address, else from the host's interfaces; with none it does not start), a clean
//!   stop `up_status` `clean-down`;
//! - files: `.zato-info` (a server's before its row is committed, a dashboard's before its tables and
//!   user `admin`, as Zato writes them), `server.conf` (`[main] ipc_port_start`, `[scheduler]` with
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
//!   `Exception: ...`; `start` refuses a stale pidfile or a taken port, `stop` ends the pid;
//!   `start --stderr-path PATH` sends the component's stderr there (replaced at each start, as
//!   Zato's `2> PATH`); the process inherits `start`'s environment (`/proc/PID/environ`);
//! - the dashboard, like Django's `setup()`, dies after writing its pidfile when web-admin.conf's
//!   `TIME_ZONE` is not in the host's time zone database (`ValueError: Incorrect timezone
//!   setting: NAME`, on its stderr only); `create web-admin` writes `TIME_ZONE` and a
//!   `logging.conf`, as Zato's does;
//! - a server's first start on a fresh PostgreSQL or MySQL ODB (no server of its cluster was up
//!   before) writes Zato's internal services (`MOCK_ZATO_INTERNAL_SERVICES_MS`, default 3000):
//!   when another server of the cluster with a smaller name does the same at once, this one dies
//!   as the real Zato's does, logging `OperationalError: ... deadlock detected`;
//! - services (`deploy.rs`): a server's admin channel takes `zato.service.upload-package` with the
//!   cluster's `admin.invoke` password; every running server of the cluster then writes the module
//!   to `work/hot-deploy/current`, and records `deployed_service` rows with its SHA-256 when it
//!   "imports" (a `def`/`class` line without its `:` is Python's `SyntaxError: expected ':'`, an
//!   import of a package neither provided nor on the server's `PYTHONPATH` is
//!   `ModuleNotFoundError`, each logged with its line, and records nothing);
//!   `zato.service.delete` removes a service, what the servers recorded of it, and its module;
//! - `enmasse --import` (`deploy.rs`): placeholders filled from `--env-file`'s `[env]` (one without
//!   a value becomes `Missing_Value_NAME`), a REST channel of a service no server deployed fails
//!   (exit 16, as Zato's does), the filled-in file kept in the ODB;
//! - the scheduler's jobs (`scheduler.rs`): `startup_jobs.conf` and `logging.conf` as Zato writes
//!   them; started (`Job starting`) only with `server_prefer_odb_config=True`; each job given in
//!   seconds run at its interval and logged ``Executing `NAME` `` at DEBUG wherever `logging.conf`
//!   sends logger `zato.scheduler.backend`; `SCHEDULER.DELETE` stops a job until the next start;
//! - a server on MariaDB 10.5 or later dies at its start as Zato 3.2's does (`OperationalError:
//!   ... Illegal parameter data type bigint for operation 'get_lock'`);
//! - an ODB replaced by an empty one under running components: they keep running and answering
//!   (what they serve is in memory, as Zato's is: each ODB step connects anew and a failed one is
//!   not fatal), and `stop` ends them (tested in `tests/tests/agent/odb.rs`; the real Zato in the
//!   distributed real-Zato test).
//!
//! What it does not reproduce: TLS, Zato's services and REST channels (so nor a server that missed
//! part of an import's broadcast while it started, which `planner::config_hold` avoids; the
//! real-Zato suite shows it), the jobs of the ODB and pub/sub (a server answers every GET
//! with JSON naming itself, `{"pong": "zato", "zato_env": {"result": "ZATO_OK"}, "server": NAME,
//! "cluster": CLUSTER, "mock": true, ...}`), the scheduler calling servers, the dashboard's pages
//! beyond its login, Zato's CPU and memory (a real server takes ~430 MB), encryption of secrets in
//! its files, and commands Muster does not call.
//!
//! Every invocation is appended, with the values of options whose names hold `password` or
//! `secret` masked, to `mock-zato.log` in the working directory and in the component directory.
//!
//! Test hooks: `MOCK_ZATO_CREATE_DELAY_MS` makes `create server|scheduler|web-admin` pause after
//! writing `.zato-info` and before the ODB's row, tables or user (the scheduler's: before its
//! `.zato-info`), so a test can interrupt a half-made create. `MOCK_ZATO_CREATE_SERVER_COMMIT_FAILS`
//! makes `create server` fail at its commit as Zato does on a lost ODB connection: logged, exit 0.
//! `MOCK_ZATO_START_DELAY_MS` makes a started component wait that long after binding its port
//! before it answers, as a real Zato server takes seconds to boot.

mod argv;
mod create;
mod deploy;
mod odb;
mod process;
mod scheduler;
mod serve;
mod user_conf;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::{AnyConnection, Connection as _, Row as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use argv::*;
use create::*;
use odb::*;
use process::*;
use serve::*;

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
                options: vec!["--stderr-path"],
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
        ["enmasse", rest @ ..] => {
            let spec = Spec {
                command: "enmasse",
                positionals: &["path"],
                options: vec!["--input", "--env-file"],
                flags: &["--import", "--replace-odb-objects", "--replace"],
            };
            deploy::enmasse(&parse(&spec, &owned(rest))?).await
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
        Some("enmasse") => args.last().map(PathBuf::from),
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
