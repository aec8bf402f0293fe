//! The argument lists of the `zato` commands the agent runs, in the order and with the options that
//! Zato's own `quickstart.py` uses, so that every component of a cluster agrees with the others:
//! - `create odb --skip-if-exists` (Zato's flag works for this command);
//! - `create cluster` without `--skip-if-exists`: in 3.2 that flag skips whenever the ODB's tables
//!   exist, which is always after `create odb`, so it would never create the cluster row; a
//!   cluster that exists makes Zato exit with CLUSTER_NAME_ALREADY_EXISTS, which the caller
//!   treats as done;
//! - `create server` and `create scheduler` with the same
//!   `--scheduler-api-client-for-server-username/-password`: without them the scheduler makes up
//!   its own and refuses every call from the servers (`--server-api-client-for-scheduler-*` on
//!   `create server` is ignored by 3.2: the scheduler reads the server's credentials from the ODB);
//! - `create web-admin` with the cluster's admin.invoke password, then `update password` for its
//!   user `admin`, whose password `create web-admin` makes up and never shows.
//!
//! Every option is one argument `--name=value` and comes before the positional arguments (see
//! the module above for why).

use std::path::Path;

use muster_proto::v1::{self, OdbSettings, OdbType};
use muster_proto::zato::DASHBOARD_USER;

use super::{Arg, option, secret_env, secret_option};

/// The user name of the API client that servers call the scheduler with.
pub const SCHEDULER_API_USER: &str = "scheduler_api_client";

fn words(words: &[&str]) -> Vec<Arg> {
    words.iter().map(|word| Arg::plain(*word)).collect()
}

fn path_arg(path: &Path) -> Arg {
    Arg::plain(path.display().to_string())
}

/// Zato's `--odb-*` options for a cluster's ODB. An SQLite ODB without a file name gets
/// `default_sqlite`. The password goes only to a server database; Zato does not ask for one with
/// SQLite.
pub fn odb_options(odb: &OdbSettings, password: &str, default_sqlite: &Path) -> Vec<Arg> {
    let odb_type = OdbType::try_from(odb.odb_type).unwrap_or(OdbType::Sqlite);
    match odb_type {
        OdbType::Sqlite | OdbType::Unspecified => {
            let file = if odb.db_name.is_empty() {
                default_sqlite.display().to_string()
            } else {
                odb.db_name.clone()
            };
            vec![
                option("--odb-type", "sqlite"),
                option("--odb-db-name", file),
            ]
        }
        OdbType::Postgresql | OdbType::Mysql => {
            let mut args = vec![
                option("--odb-type", odb_type.zato_name()),
                option("--odb-host", &odb.host),
                option("--odb-port", odb.port),
                option("--odb-user", &odb.user),
                option("--odb-db-name", &odb.db_name),
                secret_option("--odb-password", password),
            ];
            if !odb.postgresql_schema.is_empty() {
                args.push(option("--postgresql-schema", &odb.postgresql_schema));
            }
            args
        }
    }
}

/// `zato create odb`, idempotent through Zato's own `--skip-if-exists`.
pub fn create_odb(task: &v1::BootstrapTask, default_sqlite: &Path) -> Vec<Arg> {
    let odb = task.odb.clone().unwrap_or_default();
    let secrets = task.secrets.clone().unwrap_or_default();
    let mut args = words(&["create", "odb"]);
    args.extend(odb_options(&odb, &secrets.odb_password, default_sqlite));
    args.push(Arg::plain("--skip-if-exists"));
    args
}

/// `zato create cluster NAME`, with the dashboard's target as the cluster row's `lb_host` and
/// `lb_port` when the plan has one.
pub fn create_cluster(task: &v1::BootstrapTask, default_sqlite: &Path) -> Vec<Arg> {
    let odb = task.odb.clone().unwrap_or_default();
    let secrets = task.secrets.clone().unwrap_or_default();
    let mut args = words(&["create", "cluster"]);
    args.extend(odb_options(&odb, &secrets.odb_password, default_sqlite));
    if let Some(target) = &task.dashboard_target {
        args.push(option("--lb-host", &target.host));
        args.push(option("--lb-port", target.port));
    }
    args.push(secret_option("--secret-key", &secrets.secret_key));
    args.push(secret_option(
        "--admin-invoke-password",
        &secrets.admin_invoke_password,
    ));
    args.push(Arg::plain(task.cluster.clone()));
    args
}

/// `zato create server PATH CLUSTER NAME`. `scheduler` is the scheduler's address as Zato takes
/// it (`http://HOST:PORT`), when the cluster has one.
pub fn create_server(
    component: &v1::Component,
    path: &Path,
    scheduler: Option<&str>,
    default_sqlite: &Path,
) -> Vec<Arg> {
    let odb = component.odb.clone().unwrap_or_default();
    let secrets = component.secrets.clone().unwrap_or_default();
    let mut args = words(&["create", "server"]);
    args.extend(odb_options(&odb, &secrets.odb_password, default_sqlite));
    args.push(secret_option("--secret-key", &secrets.secret_key));
    args.push(secret_option("--jwt-secret", &secrets.jwt_secret));
    args.push(option("--http-port", component.port));
    if let Some(scheduler) = scheduler {
        args.push(option("--scheduler-address-for-server", scheduler));
    }
    args.extend(scheduler_api_client(&secrets));
    args.push(path_arg(path));
    args.push(Arg::plain(component.cluster.clone()));
    args.push(Arg::plain(component.name.clone()));
    args
}

/// `zato create scheduler PATH`, pointed at `server` (`http://HOST:PORT`).
pub fn create_scheduler(
    component: &v1::Component,
    path: &Path,
    server: &str,
    default_sqlite: &Path,
) -> Vec<Arg> {
    let odb = component.odb.clone().unwrap_or_default();
    let secrets = component.secrets.clone().unwrap_or_default();
    let mut args = words(&["create", "scheduler"]);
    args.extend(odb_options(&odb, &secrets.odb_password, default_sqlite));
    args.push(option("--cluster-name", &component.cluster));
    args.push(secret_option("--secret-key", &secrets.secret_key));
    args.push(option("--server-address-for-scheduler", server));
    args.push(option("--bind-port", component.port));
    args.extend(scheduler_api_client(&secrets));
    args.push(path_arg(path));
    args
}

/// Zato reads the scheduler API client's password from this environment variable before its
/// option (`zato.common.util.config.get_scheduler_api_client_for_server_password`).
pub const SCHEDULER_API_PASSWORD_ENV: &str = "Zato_Scheduler_API_Client_For_Server_Password";

/// The credentials servers call the scheduler with; both sides must get the same. The password
/// goes in Zato's environment variable, out of the command line.
fn scheduler_api_client(secrets: &v1::ComponentSecrets) -> [Arg; 2] {
    [
        option(
            "--scheduler-api-client-for-server-username",
            SCHEDULER_API_USER,
        ),
        secret_env(SCHEDULER_API_PASSWORD_ENV, &secrets.scheduler_api_password),
    ]
}

/// `zato create web-admin PATH`.
pub fn create_web_admin(component: &v1::Component, path: &Path, default_sqlite: &Path) -> Vec<Arg> {
    let odb = component.odb.clone().unwrap_or_default();
    let secrets = component.secrets.clone().unwrap_or_default();
    let mut args = words(&["create", "web-admin"]);
    args.extend(odb_options(&odb, &secrets.odb_password, default_sqlite));
    args.push(secret_option(
        "--admin-invoke-password",
        &secrets.admin_invoke_password,
    ));
    args.push(path_arg(path));
    args
}

/// `zato update password PATH admin`: sets the password of the dashboard's user `admin`, in the
/// ODB that the web-admin in `path` uses.
pub fn set_dashboard_password(path: &Path, password: &str) -> Vec<Arg> {
    let mut args = words(&["update", "password"]);
    args.push(secret_option("--password", password));
    args.push(path_arg(path));
    args.push(Arg::plain(DASHBOARD_USER));
    args
}

/// Where `zato start` sends the started process's stderr: `logs/` of the component, a file each
/// start replaces. Without `--stderr-path`, Zato 3.2 makes a new file in /tmp at every start
/// (`mkstemp`, never removed) and the reason a component died right after its start (a Python
/// error before its logging is set up) is found nowhere else.
pub const START_STDERR: &str = "zato-start-stderr.log";

/// `zato start PATH`, its stderr into [`START_STDERR`] when the path can go into the shell
/// command Zato builds with it (`2> PATH`, unquoted): letters, digits and `/._-` only.
pub fn start(path: &Path) -> Vec<Arg> {
    let mut args = vec![Arg::plain("start"), path_arg(path)];
    let stderr = path.join("logs").join(START_STDERR);
    let shell_safe = stderr.to_str().is_some_and(|text| {
        text.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'))
    });
    if shell_safe {
        args.push(option("--stderr-path", stderr.display()));
    }
    args
}

pub fn stop(path: &Path) -> Vec<Arg> {
    vec![Arg::plain("stop"), path_arg(path)]
}

/// `zato enmasse` importing `input` into the cluster of the server in `path`, replacing the
/// objects of the same names, with its placeholders' values from `env_file` (a file: never a
/// value on the command line).
pub fn enmasse_import(path: &Path, input: &Path, env_file: &Path) -> Vec<Arg> {
    vec![
        Arg::plain("enmasse"),
        Arg::plain("--import"),
        Arg::plain("--replace-odb-objects"),
        Arg::plain(format!("--input={}", input.display())),
        Arg::plain(format!("--env-file={}", env_file.display())),
        path_arg(path),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(args: &[Arg]) -> Vec<String> {
        args.iter().filter_map(Arg::text).collect()
    }

    #[test]
    fn start_sends_stderr_to_the_components_logs_only_where_a_shell_takes_the_path() {
        assert_eq!(
            texts(&start(Path::new(
                "/var/lib/muster/zato/prod/web-admin-web-admin"
            ))),
            vec![
                "start",
                "/var/lib/muster/zato/prod/web-admin-web-admin",
                "--stderr-path=/var/lib/muster/zato/prod/web-admin-web-admin/logs/zato-start-stderr.log",
            ]
        );
        for unsafe_path in ["/srv/zato data/prod/server-a", "/srv/$(reboot)/server-a"] {
            assert_eq!(
                texts(&start(Path::new(unsafe_path))),
                vec!["start", unsafe_path],
                "Zato puts the path unquoted into `2> PATH`"
            );
        }
    }

    #[test]
    fn odb_options_follow_the_odb_type() {
        let sqlite = OdbSettings {
            odb_type: OdbType::Sqlite as i32,
            ..Default::default()
        };
        assert_eq!(
            texts(&odb_options(
                &sqlite,
                "",
                Path::new("/opt/zato/prod/odb.db")
            )),
            ["--odb-type=sqlite", "--odb-db-name=/opt/zato/prod/odb.db"]
        );
        let postgres = OdbSettings {
            odb_type: OdbType::Postgresql as i32,
            host: "db".into(),
            port: 5432,
            user: "zato".into(),
            db_name: "odb".into(),
            postgresql_schema: String::new(),
        };
        let args = odb_options(&postgres, "-pw", Path::new("/unused"));
        assert!(matches!(&args[5], Arg::Secret { value, .. } if value == "-pw"));
        assert_eq!(texts(&args)[5], "--odb-password=-pw");
    }

    /// A cluster named like a Zato command (`quickstart`) and secrets that start with `-` reach
    /// Zato as arguments it cannot mistake: options first, each with its value.
    #[test]
    fn positional_arguments_come_after_every_option() {
        let task = v1::BootstrapTask {
            cluster: "quickstart".into(),
            kind: v1::BootstrapKind::Cluster as i32,
            odb: Some(OdbSettings::default()),
            secrets: Some(v1::ComponentSecrets {
                secret_key: "-starts-with-a-dash=".into(),
                admin_invoke_password: "pw".into(),
                ..Default::default()
            }),
            dashboard_target: Some(v1::Endpoint {
                host: "10.0.0.9".into(),
                port: 11223,
                tls: false,
            }),
            odb_epoch: 0,
        };
        let args = texts(&create_cluster(&task, Path::new("/z/odb.db")));
        assert_eq!(args[..2], ["create", "cluster"]);
        assert_eq!(args.last().map(String::as_str), Some("quickstart"));
        assert!(
            args[2..args.len() - 1]
                .iter()
                .all(|arg| arg.starts_with("--"))
        );
        assert!(args.contains(&"--secret-key=-starts-with-a-dash=".to_owned()));
        assert!(args.contains(&"--lb-host=10.0.0.9".to_owned()));
        assert!(args.contains(&"--lb-port=11223".to_owned()));
        assert!(!args.iter().any(|arg| arg == "--skip-if-exists"));
    }

    #[test]
    fn servers_and_the_scheduler_get_the_same_api_client() {
        let component = v1::Component {
            role: v1::Role::Server as i32,
            name: "server1".into(),
            cluster: "prod".into(),
            port: 17010,
            odb: Some(OdbSettings::default()),
            secrets: Some(v1::ComponentSecrets {
                scheduler_api_password: "shared".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let server_args = create_server(
            &component,
            Path::new("/z/server"),
            Some("http://10.0.0.2:31530"),
            Path::new("/z/odb.db"),
        );
        let scheduler_args = create_scheduler(
            &component,
            Path::new("/z/scheduler"),
            "http://10.0.0.1:17010",
            Path::new("/z/odb.db"),
        );
        let (server, scheduler) = (texts(&server_args), texts(&scheduler_args));
        let expected = "--scheduler-api-client-for-server-username=scheduler_api_client";
        assert!(server.contains(&expected.to_owned()), "{server:?}");
        assert!(scheduler.contains(&expected.to_owned()), "{scheduler:?}");
        for args in [&server_args, &scheduler_args] {
            assert!(
                args.iter()
                    .any(|arg| matches!(arg, Arg::SecretEnv { name, value }
                    if *name == SCHEDULER_API_PASSWORD_ENV && value == "shared")),
                "the password goes in Zato's environment"
            );
            assert!(!texts(args).iter().any(|arg| arg.contains("shared")));
        }
        assert_eq!(server[server.len() - 3..], ["/z/server", "prod", "server1"]);
        assert!(
            !server
                .iter()
                .any(|arg| arg.starts_with("--server-api-client"))
        );
    }
}
