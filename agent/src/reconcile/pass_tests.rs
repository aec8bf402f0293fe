//! Whole passes over a temporary components directory, with the host's processes scripted
//! ([`Facilities`]): what a pass creates, starts, restarts and archives, as a user would find it
//! on disk and in the host's report. The `zato` commands a pass runs are recorded, and those it
//! depends on do what Zato 3.2's do to the files the agent reads afterwards (a create writes its
//! `.zato-info` and config and, for a web-admin, the dashboard's user in the ODB).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use muster_proto::v1::{self, Component, ComponentState, DesiredState, Role};
use sqlx::Connection as _;

use super::Reconciler;
use super::facilities::Facilities;
use crate::zato::{Arg, Zato, ZatoError};

/// The host as the test scripts it: which components run, whether they answer, what was run.
#[derive(Default)]
struct World {
    /// Running components, by directory: their (made-up) pid.
    running: BTreeMap<PathBuf, i32>,
    answering: bool,
    /// The `zato` commands run, as `WORDS DIRECTORY-NAME` (`create web-admin`, `start
    /// web-admin-dashboard`).
    commands: Vec<String>,
    next_pid: i32,
    /// What a started component logs as it fails at once, its process never seen (Zato's
    /// `zato start` exits 0 all the same); `None`: it runs.
    start_fails_with: Option<String>,
}

#[derive(Clone, Default)]
struct Scripted(Arc<Mutex<World>>);

impl Scripted {
    fn commands(&self) -> Vec<String> {
        self.0.lock().unwrap().commands.clone()
    }

    fn answer(&self, answering: bool) {
        self.0.lock().unwrap().answering = answering;
    }

    /// The component in `directory` dies (its pidfile stays, as after a crash).
    fn kill(&self, directory: &Path) {
        self.0.lock().unwrap().running.remove(directory);
    }

    fn fail_starts_with(&self, logged: Option<&str>) {
        self.0.lock().unwrap().start_fails_with = logged.map(str::to_owned);
    }

    fn run(&self, directory: &Path) {
        let mut world = self.0.lock().unwrap();
        if let Some(logged) = &world.start_fails_with {
            std::fs::create_dir_all(directory.join("logs")).unwrap();
            std::fs::write(directory.join("logs/web-admin.log"), format!("{logged}\n")).unwrap();
            return;
        }
        world.next_pid += 1;
        let pid = 4_000_000 + world.next_pid;
        std::fs::write(directory.join("pidfile"), format!("{pid}\n")).unwrap();
        world.running.insert(directory.to_owned(), pid);
    }
}

fn option<'a>(texts: &'a [String], name: &str) -> Option<&'a str> {
    texts
        .iter()
        .find_map(|text| text.strip_prefix(&format!("{name}=")))
}

/// What `zato create web-admin` leaves that the agent reads: `.zato-info`, `web-admin.conf`, and
/// the dashboard's user `admin` in the ODB (an SQLite file here).
async fn create_web_admin(texts: &[String], path: &Path) {
    std::fs::create_dir_all(path.join("config/repo")).unwrap();
    std::fs::write(
        path.join("config/repo/web-admin.conf"),
        "{\"host\": \"localhost\", \"port\": 8183}\n",
    )
    .unwrap();
    std::fs::write(path.join(".zato-info"), "{\"created_ts\": \"now\"}\n").unwrap();
    let odb = option(texts, "--odb-db-name").expect("an SQLite ODB");
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(odb)
        .create_if_missing(true);
    let mut connection = sqlx::SqliteConnection::connect_with(&options)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE auth_user (username TEXT)")
        .execute(&mut connection)
        .await
        .unwrap();
    sqlx::query("INSERT INTO auth_user VALUES ('admin')")
        .execute(&mut connection)
        .await
        .unwrap();
}

impl Facilities for Scripted {
    fn zato_with<'a>(
        &'a self,
        install: Option<&'a Path>,
        args: &'a [Arg],
        _directory: &'a Path,
        _on_spawn: &'a (dyn Fn(u32) + Sync),
    ) -> BoxFuture<'a, Result<String, ZatoError>> {
        Box::pin(async move {
            let texts: Vec<String> = args.iter().filter_map(Arg::text).collect();
            let words: Vec<&str> = texts
                .iter()
                .map(String::as_str)
                .filter(|text| !text.starts_with("--"))
                .collect();
            let verb: Vec<&str> = words
                .iter()
                .copied()
                .take_while(|word| !Path::new(word).is_absolute())
                .collect();
            let path = Path::new(words[verb.len()]);
            let name = path.file_name().unwrap().to_string_lossy();
            let with = install
                .map(|bin| format!(" with {}", bin.display()))
                .unwrap_or_default();
            self.0
                .lock()
                .unwrap()
                .commands
                .push(format!("{} {name}{with}", verb.join(" ")));
            match verb.as_slice() {
                ["create", "web-admin"] => create_web_admin(&texts, path).await,
                ["start"] => self.run(path),
                ["stop"] => self.kill(path),
                _ => {}
            }
            Ok(String::new())
        })
    }

    fn component_process(&self, directory: &Path) -> Option<i32> {
        self.0.lock().unwrap().running.get(directory).copied()
    }

    fn alive(&self, pid: i32) -> bool {
        self.0
            .lock()
            .unwrap()
            .running
            .values()
            .any(|&run| run == pid)
    }

    fn terminate<'a>(&'a self, directory: &'a Path, _patience: Duration) -> BoxFuture<'a, bool> {
        self.0
            .lock()
            .unwrap()
            .commands
            .push(format!("terminate {}", directory.display()));
        self.kill(directory);
        Box::pin(async { true })
    }

    fn answers<'a>(
        &'a self,
        role: Role,
        _address: IpAddr,
        port: u16,
        _api_password: &'a str,
    ) -> BoxFuture<'a, Result<(), String>> {
        let answering = self.0.lock().unwrap().answering;
        Box::pin(async move {
            if answering {
                Ok(())
            } else {
                Err(format!("the {role} on port {port} does not answer"))
            }
        })
    }
}

struct Host {
    _scratch: tempfile::TempDir,
    components: PathBuf,
    reconciler: Reconciler,
    world: Scripted,
}

fn host() -> Host {
    let scratch = tempfile::tempdir().unwrap();
    let components = scratch.path().join("components");
    let state = scratch.path().join("state");
    std::fs::create_dir_all(&components).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    let zato = Zato {
        bin: PathBuf::from("/nonexistent/zato"),
        run_as: None,
    };
    let mut reconciler = Reconciler::new(
        zato,
        components.clone(),
        &state,
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    );
    let world = Scripted::default();
    reconciler.host.facilities = Box::new(world.clone());
    Host {
        _scratch: scratch,
        components,
        reconciler,
        world,
    }
}

fn dashboard() -> Component {
    Component {
        role: Role::WebAdmin as i32,
        name: "dashboard".into(),
        cluster: "prod".into(),
        port: 8183,
        secrets: Some(v1::ComponentSecrets {
            dashboard_password: "a dashboard password".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn desired(generation: u64, components: Vec<Component>) -> DesiredState {
    DesiredState {
        generation,
        components,
        ..Default::default()
    }
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

fn state_of(status: &super::HostStatus) -> (ComponentState, bool, u32, String) {
    let component = &status.components[0];
    (
        ComponentState::try_from(component.state).unwrap(),
        component.healthy,
        component.restarts,
        component.last_error.clone(),
    )
}

#[test]
fn a_dashboard_is_created_started_restarted_when_it_dies_and_archived_when_unassigned() {
    let mut host = host();
    let wanted = desired(1, vec![dashboard()]);
    let directory = host.components.join("prod/web-admin-dashboard");

    let (status, _) = block_on(host.reconciler.pass(&wanted));
    assert_eq!(
        host.world.commands(),
        [
            "create web-admin .creating-web-admin-dashboard",
            "update password web-admin-dashboard",
            "start web-admin-dashboard",
        ]
    );
    assert!(directory.join(".zato-info").exists(), "moved into place");
    assert!(
        !host
            .components
            .join("prod/.creating-web-admin-dashboard")
            .exists()
    );
    let conf = std::fs::read_to_string(directory.join("config/repo/web-admin.conf")).unwrap();
    assert!(conf.contains("\"host\": \"127.0.0.1\""), "{conf}");
    assert_eq!(
        state_of(&status),
        (ComponentState::Starting, false, 0, String::new()),
        "within its start grace, not yet unhealthy"
    );

    host.world.answer(true);
    let (status, _) = block_on(host.reconciler.pass(&wanted));
    assert_eq!(
        state_of(&status),
        (ComponentState::Running, true, 0, String::new())
    );
    assert_eq!(host.world.commands().len(), 3, "nothing run again");

    host.world.kill(&directory);
    let (status, _) = block_on(host.reconciler.pass(&wanted));
    let (state, healthy, restarts, error) = state_of(&status);
    assert_eq!(
        (state, healthy, restarts),
        (ComponentState::Running, true, 1)
    );
    assert!(error.is_empty(), "healthy again: {error}");
    assert_eq!(
        host.world.commands().last().unwrap(),
        "start web-admin-dashboard",
        "restarted at once, its password not set again"
    );
    assert_eq!(host.world.commands().len(), 4);

    let (status, _) = block_on(host.reconciler.pass(&desired(2, Vec::new())));
    assert!(status.components.is_empty());
    assert_eq!(
        host.world.commands().last().unwrap(),
        "stop web-admin-dashboard"
    );
    assert!(!directory.exists());
    let archived: Vec<String> = std::fs::read_dir(host.components.join(".archive"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(archived.len(), 1);
    assert!(
        archived[0].starts_with("prod.web-admin-dashboard."),
        "{archived:?}"
    );
}

#[test]
fn archiving_takes_only_finished_components_of_a_known_kind_and_stops_each_as_its_kind_does() {
    let mut host = host();
    let prod = host.components.join("prod");
    let make = |base: &str, marker: Option<&str>| {
        let directory = prod.join(base);
        std::fs::create_dir_all(&directory).unwrap();
        if let Some(marker) = marker {
            std::fs::write(directory.join(marker), "").unwrap();
        }
        directory
    };
    let server = make("server-server9", Some(".zato-info"));
    host.world.run(&server);
    let starting = make("server-starting", Some(".zato-info"));
    // Started, its pidfile not written yet: no `zato stop`, its processes are signalled.
    host.world.run(&starting);
    std::fs::remove_file(starting.join("pidfile")).unwrap();
    make("scheduler-scheduler1", Some(".zato-info"));
    make("load-balancer-edge", Some("zato.config"));
    let half_made = make("server-half", None);
    let creating = make(".creating-server-new", Some(".zato-info"));
    let unknown = make("notes", Some(".zato-info"));

    block_on(host.reconciler.pass(&desired(1, Vec::new())));

    let mut commands = host.world.commands();
    commands.sort();
    assert_eq!(
        commands,
        [
            "stop server-server9".to_owned(),
            format!("terminate {}", starting.display())
        ]
    );
    let mut archived: Vec<String> = std::fs::read_dir(host.components.join(".archive"))
        .unwrap()
        .map(|entry| {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            name.rsplit_once('.').unwrap().0.to_owned()
        })
        .collect();
    archived.sort();
    assert_eq!(
        archived,
        [
            "prod.load-balancer-edge",
            "prod.scheduler-scheduler1",
            "prod.server-server9",
            "prod.server-starting",
        ]
    );
    for kept in [half_made, creating, unknown] {
        assert!(
            kept.exists(),
            "{} is not a finished component",
            kept.display()
        );
    }
}

#[test]
fn a_scheduler_without_a_server_address_waits_and_runs_nothing() {
    let mut host = host();
    let scheduler = Component {
        role: Role::Scheduler as i32,
        name: "scheduler1".into(),
        cluster: "prod".into(),
        port: 31530,
        ..Default::default()
    };
    let (status, _) = block_on(host.reconciler.pass(&desired(1, vec![scheduler])));
    assert_eq!(
        state_of(&status),
        (
            ComponentState::Waiting,
            false,
            0,
            "waiting for a server of the cluster to have an address".to_owned()
        )
    );
    assert!(host.world.commands().is_empty());
    assert!(!host.components.join("prod/scheduler-scheduler1").exists());
}

#[test]
fn a_dashboard_whose_process_ends_at_its_start_says_why_and_is_not_started_at_every_pass() {
    let mut host = host();
    let wanted = desired(1, vec![dashboard()]);
    host.world.fail_starts_with(Some(
        "Traceback (most recent call last): PermissionError: [Errno 13] Permission denied: \
         '/opt/zato/code/bin/py'",
    ));
    let (status, _) = block_on(host.reconciler.pass(&wanted));
    assert_eq!(state_of(&status).0, ComponentState::Starting);
    let (status, _) = block_on(host.reconciler.pass(&wanted));
    assert_eq!(
        state_of(&status),
        (
            ComponentState::Failed,
            false,
            0,
            "the process ended right after it was started; its log says: PermissionError: \
             [Errno 13] Permission denied: '/opt/zato/code/bin/py'"
                .to_owned()
        )
    );
    let (status, _) = block_on(host.reconciler.pass(&wanted));
    assert_eq!(state_of(&status).0, ComponentState::Restarting);
    let starts = |world: &Scripted| {
        world
            .commands()
            .iter()
            .filter(|command| command.starts_with("start "))
            .count()
    };
    assert_eq!(
        starts(&host.world),
        1,
        "not started again within its backoff"
    );

    // The cause put right, it runs once its backoff is over.
    host.world.fail_starts_with(None);
    host.world.answer(true);
    host.reconciler
        .local
        .values_mut()
        .for_each(|local| local.retry_at = None);
    let (status, _) = block_on(host.reconciler.pass(&wanted));
    assert_eq!(
        state_of(&status),
        (ComponentState::Running, true, 0, String::new())
    );
    assert_eq!(starts(&host.world), 2);
}

/// Server `server1` of cluster `prod`, created (its server.conf as `zato create server` writes
/// the keys Muster reads) and running; its directory.
fn running_server(host: &mut Host) -> PathBuf {
    let directory = host.components.join("prod/server-server1");
    std::fs::create_dir_all(directory.join("config/repo")).unwrap();
    std::fs::write(directory.join(".zato-info"), "{}\n").unwrap();
    std::fs::write(
        directory.join("config/repo/server.conf"),
        "[main]\ngunicorn_bind=0.0.0.0:17010\ngunicorn_workers=1\nipc_port_start=17050\n\n\
         [preferred_address]\naddress=\n\n[scheduler]\nscheduler_host=\n\n[os_environ]\n\
         sample_key=sample_value\n",
    )
    .unwrap();
    host.world.run(&directory);
    directory
}

#[test]
fn a_running_server_restarts_for_a_rolling_restart_only_at_its_turn_and_once() {
    let mut host = host();
    // A server created and running, started before any rolling restart.
    running_server(&mut host);
    let server = |restart_epoch: u64, turn: bool| Component {
        role: Role::Server as i32,
        name: "server1".into(),
        cluster: "prod".into(),
        port: 17010,
        restart_epoch,
        python_restart: turn,
        ..Default::default()
    };
    let reported_epoch = |status: &super::HostStatus| status.components[0].restart_epoch;

    // Its first pass brings its config to the host's (a restart of its own, for that).
    let (status, _) = block_on(host.reconciler.pass(&desired(1, vec![server(0, false)])));
    assert_eq!(
        reported_epoch(&status),
        0,
        "started before any rolling restart"
    );
    let before = host.world.commands().len();
    let new_commands = |world: &Scripted| world.commands()[before..].to_vec();

    block_on(host.reconciler.pass(&desired(2, vec![server(1, false)])));
    assert!(
        new_commands(&host.world).is_empty(),
        "not its turn: it serves on: {:?}",
        new_commands(&host.world)
    );

    let (status, _) = block_on(host.reconciler.pass(&desired(3, vec![server(1, true)])));
    assert_eq!(
        new_commands(&host.world),
        ["stop server-server1", "start server-server1"]
    );
    assert_eq!(reported_epoch(&status), 1, "started under the new epoch");
    block_on(host.reconciler.pass(&desired(3, vec![server(1, true)])));
    assert_eq!(new_commands(&host.world).len(), 2, "restarted once");
}

#[test]
fn a_running_dashboard_restarts_for_a_rolling_restart_of_its_role_only_at_its_turn_and_once() {
    let mut host = host();
    let at = |restart_epoch: u64, turn: bool| Component {
        restart_epoch,
        python_restart: turn,
        ..dashboard()
    };
    let reported = |status: &super::HostStatus| {
        let component = &status.components[0];
        (component.restart_epoch, component.rolls)
    };
    block_on(host.reconciler.pass(&desired(1, vec![at(0, false)])));
    host.world.answer(true);
    let (status, _) = block_on(host.reconciler.pass(&desired(1, vec![at(0, false)])));
    assert_eq!(
        reported(&status),
        (0, true),
        "started before any rolling restart of its role; this agent rolls it"
    );
    let before = host.world.commands().len();
    let new_commands = |world: &Scripted| world.commands()[before..].to_vec();

    block_on(host.reconciler.pass(&desired(2, vec![at(1, false)])));
    assert!(
        new_commands(&host.world).is_empty(),
        "not its turn: it runs on: {:?}",
        new_commands(&host.world)
    );
    let (status, _) = block_on(host.reconciler.pass(&desired(3, vec![at(1, true)])));
    assert_eq!(
        new_commands(&host.world),
        ["stop web-admin-dashboard", "start web-admin-dashboard"],
        "its password is not set again"
    );
    assert_eq!(reported(&status), (1, true), "started under the new epoch");
    block_on(host.reconciler.pass(&desired(3, vec![at(1, true)])));
    assert_eq!(new_commands(&host.world).len(), 2, "restarted once");
}

#[test]
fn a_server_runs_the_installation_its_cluster_names_and_one_the_host_lacks_never_stops_it() {
    let mut host = host();
    host.reconciler.host.zato_installs = BTreeMap::from([(
        "next".to_owned(),
        PathBuf::from("/opt/zato-next/code/bin/zato"),
    )]);
    running_server(&mut host);
    let server = |restart_epoch: u64, install: &str| Component {
        role: Role::Server as i32,
        name: "server1".into(),
        cluster: "prod".into(),
        port: 17010,
        restart_epoch,
        python_restart: true,
        server_settings: [("zato.install".to_owned(), install.to_owned())].into(),
        ..Default::default()
    };
    host.world.answer(true);
    block_on(
        host.reconciler
            .pass(&desired(1, vec![server(0, "default")])),
    );
    let before = host.world.commands().len();

    // At its turn, started again with the named installation's `zato` command.
    block_on(host.reconciler.pass(&desired(2, vec![server(1, "next")])));
    assert_eq!(
        host.world.commands()[before..],
        [
            "stop server-server1",
            "start server-server1 with /opt/zato-next/code/bin/zato"
        ]
    );

    // One the host does not have: it serves on, not stopped, and says why.
    let before = host.world.commands().len();
    let (status, _) = block_on(host.reconciler.pass(&desired(3, vec![server(2, "3.3")])));
    assert_eq!(host.world.commands()[before..], [] as [&str; 0]);
    let reported = &status.components[0];
    assert!(reported.healthy, "{reported:?}");
    assert!(
        reported
            .last_error
            .contains("Zato installation \"3.3\" (the cluster's zato.install) is not one of this host's: its agent.toml names default, next"),
        "{reported:?}"
    );

    // Not running, it cannot start: it fails, saying why.
    host.world
        .kill(&host.components.join("prod/server-server1"));
    let (status, _) = block_on(host.reconciler.pass(&desired(4, vec![server(2, "3.3")])));
    assert_eq!(host.world.commands()[before..], [] as [&str; 0]);
    let reported = &status.components[0];
    assert!(
        !reported.healthy && reported.last_error.contains("\"3.3\""),
        "{reported:?}"
    );
}

#[test]
fn a_running_server_starts_with_new_server_settings_at_its_turn_and_not_before() {
    let mut host = host();
    let directory = running_server(&mut host);
    let server_conf = directory.join("config/repo/server.conf");
    let server = |restart_epoch: u64, turn: bool, workers: Option<&str>| Component {
        role: Role::Server as i32,
        name: "server1".into(),
        cluster: "prod".into(),
        port: 17010,
        restart_epoch,
        python_restart: turn,
        server_settings: workers
            .map(|workers| {
                [
                    ("main.gunicorn_workers".to_owned(), workers.to_owned()),
                    ("env.APP_MODE".to_owned(), "blue".to_owned()),
                ]
                .into()
            })
            .unwrap_or_default(),
        ..Default::default()
    };
    let read = |section: &str, key: &str| {
        crate::zato::conf::get_ini(
            &std::fs::read_to_string(&server_conf).unwrap(),
            section,
            key,
        )
    };
    block_on(
        host.reconciler
            .pass(&desired(1, vec![server(0, false, None)])),
    );
    let before = host.world.commands().len();
    let bind = read("main", "gunicorn_bind");

    block_on(
        host.reconciler
            .pass(&desired(2, vec![server(1, false, Some("2"))])),
    );
    assert_eq!(
        host.world.commands().len(),
        before,
        "not its turn: it serves on"
    );
    assert_eq!(read("main", "gunicorn_workers").as_deref(), Some("1"));

    block_on(
        host.reconciler
            .pass(&desired(3, vec![server(1, true, Some("2"))])),
    );
    assert_eq!(
        host.world.commands()[before..],
        ["stop server-server1", "start server-server1"]
    );
    assert_eq!(read("main", "gunicorn_workers").as_deref(), Some("2"));
    assert_eq!(read("os_environ", "APP_MODE").as_deref(), Some("blue"));
    assert_eq!(read("os_environ", "sample_key"), None);
    assert_eq!(
        read("main", "gunicorn_bind"),
        bind,
        "what Muster sets otherwise stays"
    );
}
