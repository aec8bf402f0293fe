//! Muster against the real Zato 3.2: no mock anywhere. The `zato` command is
//! `MUSTER_TEST_ZATO_BIN`, or `/opt/zato-3.2/code/bin/zato` where `../shared/zato/install.sh` put
//! it (`.ci/setup` runs that script). Without a real Zato each test prints one line saying it was
//! skipped and why; under CI (`CI` set) a missing Zato fails the test instead: CI never skips
//! this suite.
//!
//! A real server takes ~430 MB and seconds of CPU to start, so these tests run one at a time (the
//! `real-zato` test group in `.config/nextest.toml`), each on test hosts of its own (network
//! namespaces), and print how long the cluster took to come up.

use std::collections::BTreeMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use muster_testkit::harness::{Agent, Coordinator, text, workspace_binary};
use muster_testkit::netns::{self, Host, Network};
use muster_testkit::rollout_bench::children_of;
use muster_testkit::{Backend, TestDatabase, real_zato, wait_for};
use muster_testkit::{scheduler_jobs, traffic};

/// How long a real cluster may take to come up on a busy 2-core machine.
const PATIENCE: Duration = Duration::from_secs(420);
const POLL: Duration = Duration::from_millis(500);
/// The hosts of the distributed clusters' servers.
const SERVER_HOSTS: [&str; 3] = ["app-1", "app-2", "app-3"];

/// Every Zato component log under `directory` that holds `needle`.
fn logs_with(directory: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(directory) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            found.extend(logs_with(&path, needle));
        } else if path.extension().is_some_and(|extension| extension == "log")
            && std::fs::read_to_string(&path).is_ok_and(|content| content.contains(needle))
        {
            found.push(path);
        }
    }
    found
}

/// The lines around the call `cid` in every log under `directory`, with the log's path: where a
/// failed request's cause is.
fn log_context(directory: &Path, cid: &str) -> String {
    let mut context = String::new();
    for log in logs_with(directory, cid) {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        if let Some(at) = lines.iter().position(|line| line.contains(cid)) {
            context.push_str(&format!("--- {}\n", log.display()));
            for line in &lines[at.saturating_sub(25)..(at + 25).min(lines.len())] {
                context.push_str(&line.chars().take(400).collect::<String>());
                context.push('\n');
            }
        }
    }
    context
}

/// What the scheduler or a server writes when the other refuses its credentials.
const CREDENTIAL_ERRORS: [&str; 2] = ["Credentials error", "Invalid_Username_Or_Password"];

fn assert_no_credential_errors(components: &Path) {
    for needle in CREDENTIAL_ERRORS {
        let logs = logs_with(components, needle);
        assert!(logs.is_empty(), "{needle:?} in {logs:?}");
    }
}

/// Sends `count` requests to the load balancer from `host` and returns how many each server got,
/// from HAProxy's own counters.
fn spread_through_balancer(
    host: &Host,
    frontend: SocketAddr,
    stats_socket: &Path,
    count: usize,
) -> BTreeMap<String, u64> {
    let before = traffic::haproxy_sessions(stats_socket);
    for _ in 0..count {
        let (status, body) = traffic::get_from(&host.namespace, frontend, "/zato/ping")
            .expect("an answer through the load balancer");
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("ZATO_OK"), "{body}");
    }
    traffic::haproxy_sessions(stats_socket)
        .into_iter()
        .map(|(server, total)| {
            let earlier = before.get(&server).copied().unwrap_or(0);
            (server, total - earlier)
        })
        .collect()
}

/// Requests `/zato/ping` through the load balancer from a test host in a loop, on a thread,
/// until finished (at most 100,000 requests): what a user's traffic sees while the cluster
/// changes.
struct LoadLoop {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<(usize, Vec<String>)>>,
}

/// A test that fails while it runs stops it too, before its hosts go.
impl Drop for LoadLoop {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl LoadLoop {
    fn start(host: &Host, frontend: SocketAddr) -> LoadLoop {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let namespace = host.namespace.clone();
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut answered, mut failed) = (0, Vec::new());
            for _ in 0..100_000 {
                if stopped.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                match traffic::get_from(&namespace, frontend, "/zato/ping") {
                    Some((200, body)) if body.contains("ZATO_OK") => answered += 1,
                    other => failed.push(format!("{other:?}")),
                }
            }
            (answered, failed)
        });
        LoadLoop {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops it: how many requests were answered, and each that was not.
    fn finish(mut self) -> (usize, Vec<String>) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

/// The services revision each server of cluster `prod` reports, once all `count` report `revision`.
async fn prod_servers_run(coordinator: &Coordinator, count: usize, revision: &str) {
    wait_for(
        "every server to run the services revision",
        PATIENCE,
        POLL,
        || {
            let listed = coordinator.json(&["component", "list", "--cluster", "prod"]);
            let servers: Vec<&serde_json::Value> = listed
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter(|component| component["role"] == "server")
                .collect();
            let done = servers.len() == count
                && servers
                    .iter()
                    .all(|server| server["services_revision"] == revision);
            async move { done.then_some(()) }
        },
    )
    .await
    .unwrap();
}

/// Logs in to the dashboard at `address` from `host` as Django's login form does; says whether it
/// was accepted (a redirect and a session cookie).
fn dashboard_login(host: &Host, address: SocketAddr, user: &str, password: &str) -> bool {
    let (status, head, body) = traffic::exchange_from(
        &host.namespace,
        address,
        &format!("GET /accounts/login/ HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"),
    )
    .expect("the dashboard's login page");
    assert_eq!(status, 200, "{body}");
    let cookie = head
        .lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| name.eq_ignore_ascii_case("set-cookie"))
        .filter_map(|(_, value)| value.trim().split(';').next())
        .find(|pair| pair.starts_with("csrftoken="))
        .unwrap_or_default()
        .to_owned();
    let marker = "name=\"csrfmiddlewaretoken\" value=\"";
    let token = body
        .split_once(marker)
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(token, _)| token.to_owned())
        .expect("the login form's CSRF token");
    let form = format!("csrfmiddlewaretoken={token}&username={user}&password={password}");
    let (status, head, _) = traffic::exchange_from(
        &host.namespace,
        address,
        &format!(
            "POST /accounts/login/ HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
             Cookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
             Content-Length: {}\r\n\r\n{form}",
            form.len()
        ),
    )
    .expect("the dashboard's answer to the login");
    let logged_in = status == 302 && head.contains("sessionid=");
    if !logged_in {
        eprintln!("the dashboard answered the login {status}: {head}");
    }
    logged_in
}

/// How many times job `marker` ran on the servers under `components` (its input in their logs).
fn job_runs(components: &Path, marker: &str) -> usize {
    logs_with(components, marker)
        .into_iter()
        .filter(|log| log.ends_with("server.log"))
        .map(|log| {
            std::fs::read_to_string(log)
                .unwrap_or_default()
                .matches(&format!("muster_marker': '{marker}"))
                .count()
        })
        .sum()
}

/// Creates an interval job (every second) through Zato's own admin service on the server in
/// `server_dir`, waits until the job's service ran on a server of the cluster (its input in a
/// server's log), and returns the job's marker.
async fn a_job_reaches_a_server(
    host: &Host,
    zato: &Path,
    server_dir: &Path,
    components: &Path,
) -> String {
    let marker = format!("muster-job-{}", std::process::id());
    let start = time_in_a_second();
    let payload = serde_json::json!({
        "cluster_id": 1,
        "name": marker,
        "is_active": true,
        "job_type": "interval_based",
        "service": "zato.helpers.input-logger",
        "seconds": 1,
        "start_date": start,
        "extra": format!("muster_marker={marker}"),
    });
    let created = host
        .command(zato)
        .arg("service")
        .arg("invoke")
        .arg(format!("--payload={payload}"))
        .arg(server_dir)
        .arg("zato.scheduler.job.create")
        .output()
        .unwrap();
    assert!(
        created.status.success() && text(&created.stdout).contains(&marker),
        "zato.scheduler.job.create: {}{}",
        text(&created.stdout),
        text(&created.stderr)
    );
    let reached = wait_for("the job to run on a server", PATIENCE, POLL, || {
        let logs: Vec<PathBuf> = logs_with(components, &format!("muster_marker': '{marker}"))
            .into_iter()
            .filter(|log| log.ends_with("server.log"))
            .collect();
        async move { (!logs.is_empty()).then_some(logs) }
    })
    .await
    .unwrap();
    println!("the scheduler ran job {marker} on a server: {reached:?}");
    marker
}

/// Kills the scheduler's process in `scheduler_dir` as a crash would, and waits until its agent
/// has started it again and the job `marker` (every second) runs again: Zato's scheduler started
/// without `server_prefer_odb_config=True` runs no job of the ODB after a restart. Says how long
/// the job did not run.
async fn the_job_survives_a_scheduler_crash(scheduler_dir: &Path, components: &Path, marker: &str) {
    let pid_of = || {
        std::fs::read_to_string(scheduler_dir.join("pidfile"))
            .ok()
            .and_then(|pid| pid.trim().parse::<i32>().ok())
    };
    let killed = pid_of().expect("the scheduler's pid");
    let runs_before = job_runs(components, marker);
    let killed_at = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(killed),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let restarted = wait_for(
        "the agent to start the scheduler again",
        PATIENCE,
        POLL,
        || {
            let pid = pid_of().filter(|pid| *pid != killed);
            async move { pid }
        },
    )
    .await
    .unwrap();
    // A run already under way when the process died may still reach a server's log: two more
    // than that are the new process's.
    wait_for(
        "the job to run again after the restart",
        PATIENCE,
        POLL,
        || {
            let ran = job_runs(components, marker) > runs_before + 2;
            async move { ran.then_some(()) }
        },
    )
    .await
    .unwrap();
    println!(
        "figure: job {marker} ran again {:?} after the scheduler (pid {killed}) was killed; the \
         agent started pid {restarted}",
        killed_at.elapsed()
    );
}

/// Waits until job `marker` (every second) ran twice more on the servers under `components`
/// after `what`, and says how long that took.
async fn the_job_runs_on(components: &Path, marker: &str, what: &str) {
    let runs_before = job_runs(components, marker);
    let since = Instant::now();
    wait_for(
        &format!("the job to run after {what}"),
        PATIENCE,
        POLL,
        || {
            let ran = job_runs(components, marker) >= runs_before + 2;
            async move { ran.then_some(()) }
        },
    )
    .await
    .unwrap();
    println!(
        "figure: job {marker} ran twice more {:?} after {what}",
        since.elapsed()
    );
}

/// A module of one service, `muster.orders.get`, that answers `version`.
fn orders_module(version: &str) -> String {
    format!(
        "from zato.server.service import Service\n\nclass Orders(Service):\n    name = \
         'muster.orders.get'\n\n    def handle(self):\n        self.response.payload = \
         {{'version': '{version}'}}\n"
    )
}

/// A user-config file's secret.
const CRM_PASSWORD: &str = "Crm-Pa55word";

/// A module of one service, `muster.settings.get`, that answers what it reads of the cluster's
/// user config `partners` (`self.config.partners`, from `partners.ini`).
const SETTINGS_MODULE: &str = "from zato.server.service import Service\n\n\
    class Settings(Service):\n    name = 'muster.settings.get'\n\n    def handle(self):\n        \
    crm = (self.config.get('partners') or {}).get('crm') or {}\n        \
    self.response.payload = {'address': crm.get('address', '')}\n";

/// What `muster.orders.get` answers on the server in `server_dir` (`zato service invoke`).
fn orders_answer(host: &Host, zato: &Path, server_dir: &Path) -> String {
    let output = host
        .command(zato)
        .arg("service")
        .arg("invoke")
        .arg(server_dir)
        .arg("muster.orders.get")
        .output()
        .unwrap();
    text(&output.stdout)
}

/// `GET /api/orders` (the configuration's REST channel) from `host` through the load balancer at
/// `frontend`, with Basic `credentials` when given: status, head and body.
fn orders_channel(
    host: &Host,
    frontend: SocketAddr,
    credentials: Option<&str>,
) -> (u16, String, String) {
    channel_answer(host, frontend, "/api/orders", credentials)
}

/// `GET path` from `host` through the load balancer at `frontend`, with Basic `credentials`
/// when given: status, head and body.
fn channel_answer(
    host: &Host,
    frontend: SocketAddr,
    path: &str,
    credentials: Option<&str>,
) -> (u16, String, String) {
    let authorization = credentials
        .map(|credentials| {
            use base64::Engine as _;
            format!(
                "Authorization: Basic {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(credentials)
            )
        })
        .unwrap_or_default();
    traffic::exchange_from(
        &host.namespace,
        frontend,
        &format!(
            "GET {path} HTTP/1.1\r\nHost: {frontend}\r\n{authorization}Connection: close\r\n\r\n"
        ),
    )
    .expect("an answer through the load balancer")
}

/// The services revision and reason of each server of cluster `quickstart`, once `check` holds.
async fn quickstart_servers_when(
    muster: &impl Fn(&[&str]) -> std::process::Output,
    what: &str,
    check: impl Fn(&[(String, String)]) -> bool,
) -> Vec<(String, String)> {
    wait_for(what, PATIENCE, POLL, || {
        let listed = muster(&["-o", "json", "component", "list", "--cluster", "quickstart"]);
        let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap_or_default();
        let servers: Vec<(String, String)> = listed
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|component| component["role"] == "server")
            .map(|component| {
                (
                    component["services_revision"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                    component["reason"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        let done = servers.len() == 2 && check(&servers);
        async move { done.then_some(servers) }
    })
    .await
    .unwrap()
}

/// Calls `call` through the load balancer, 20 at a time, until `muster rollout status` says both
/// servers of cluster `quickstart` restarted (at most twice the patience); returns how many were
/// answered and the failed ones.
fn answered_until_both_restarted(
    muster: &impl Fn(&[&str]) -> std::process::Output,
    call: &dyn Fn() -> (u16, String, String),
) -> (usize, Vec<(u16, String)>) {
    let (mut answered, mut failed) = (0, Vec::new());
    let deadline = Instant::now() + PATIENCE * 2;
    loop {
        assert!(
            Instant::now() < deadline,
            "the servers did not restart within {:?}",
            PATIENCE * 2
        );
        for _ in 0..20 {
            let (status, _, body) = call();
            if status == 200 {
                answered += 1;
            } else {
                failed.push((status, body));
            }
        }
        let progress = muster(&["-o", "json", "rollout", "status", "--cluster", "quickstart"]);
        let progress: serde_json::Value =
            serde_json::from_slice(&progress.stdout).unwrap_or_default();
        if progress["restarted"] == 2 {
            return (answered, failed);
        }
    }
}

/// A second installation of the Zato whose `zato` command is `zato`, at `root`: the first's files
/// (hard links where the file system allows), its `code/bin/zato` and `code/bin/py` new files
/// that run `root`'s own `code/bin/python` (the first's name their own). Returns its `zato`.
fn copy_installation(zato: &Path, root: &Path) -> PathBuf {
    let original = zato.parent().unwrap().parent().unwrap().parent().unwrap();
    let linked = std::process::Command::new("cp")
        .arg("-al")
        .arg(original)
        .arg(root)
        .status()
        .unwrap();
    if !linked.success() {
        let _ = std::fs::remove_dir_all(root);
        let copied = std::process::Command::new("cp")
            .arg("-a")
            .arg(original)
            .arg(root)
            .status()
            .unwrap();
        assert!(
            copied.success(),
            "cp -a {} {}",
            original.display(),
            root.display()
        );
    }
    let bin = root.join("code/bin");
    let python = bin.join("python");
    let script = std::fs::read_to_string(zato).unwrap();
    let (_, rest) = script.split_once('\n').unwrap();
    for (name, text) in [
        ("zato", format!("#!{}\n{rest}", python.display())),
        (
            "py",
            format!("#!/bin/sh\n\"{}\" \"$@\"\n", python.display()),
        ),
    ] {
        use std::os::unix::fs::PermissionsExt as _;
        // A new file: the original's hard link stays as it was.
        std::fs::remove_file(bin.join(name)).unwrap();
        std::fs::write(bin.join(name), text).unwrap();
        std::fs::set_permissions(bin.join(name), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    bin.join("zato")
}

/// The `code` directory of the Zato installation whose `zato` command is `zato`
/// (`.../code/bin/zato`): in the command line of every process that installation runs.
fn code_root(zato: &Path) -> String {
    zato.parent()
        .and_then(Path::parent)
        .unwrap_or(zato)
        .display()
        .to_string()
}

/// Stops the agent of the quickstart in `dir` (its components run on), adds `config` to the end
/// of its `agent.toml`, and starts it again on `host` as `muster quickstart` does.
async fn restart_quickstart_agent(host: &Host, dir: &Path, config: &str) {
    use std::os::unix::process::CommandExt as _;
    let pidfile = dir.join("agent.pid");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    );
    wait_for("the quickstart's agent to stop", PATIENCE, POLL, || {
        let gone = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err();
        async move { gone.then_some(()) }
    })
    .await
    .unwrap();
    let toml = dir.join("agent.toml");
    let text = std::fs::read_to_string(&toml).unwrap() + config;
    std::fs::write(&toml, text).unwrap();
    let log = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.join("agent.log"))
        .unwrap();
    #[expect(
        clippy::zombie_processes,
        reason = "a daemon, as `muster quickstart` starts it: `muster quickstart stop` ends it"
    )]
    let child = host
        .command(&workspace_binary("muster-agent"))
        .args(["run", "--config"])
        .arg(&toml)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap();
    std::fs::write(&pidfile, format!("{}\n", child.id())).unwrap();
}

/// The pids in the pidfiles' texts.
fn pids_in<const N: usize>(pidfiles: &[String; N]) -> [u32; N] {
    pidfiles
        .each_ref()
        .map(|text| text.trim().parse().unwrap_or(0))
}

/// Ends every process in `host`'s network namespace, as a host that is switched off.
fn kill_everything_in(host: &Host) {
    let output = std::process::Command::new("ip")
        .args(["netns", "pids", &host.namespace])
        .output()
        .unwrap();
    for pid in text(&output.stdout)
        .lines()
        .filter_map(|line| line.trim().parse::<i32>().ok())
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// UTC one second from now, as Zato's job `start_date` takes it.
fn time_in_a_second() -> String {
    let output = std::process::Command::new("date")
        .args(["-u", "-d", "+1 second", "+%Y-%m-%dT%H:%M:%S"])
        .output()
        .unwrap();
    text(&output.stdout).trim().to_owned()
}

#[tokio::test]
async fn quickstart_with_the_real_zato_makes_a_working_cluster() {
    let Some(zato) = real_zato() else { return };
    netns::sweep_stale();
    let mut network = Network::create();
    let host = network.add_host("box");
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("qs");
    let muster = |args: &[&str]| {
        host.command(&workspace_binary("muster"))
            .args(args)
            .env("MUSTER_DATA_DIR", dir.join("coordinator"))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };

    // The default cluster name is `quickstart`, a word Zato's command line takes for a command.
    let started_at = Instant::now();
    let started = muster(&[
        "quickstart",
        "--dir",
        dir.to_str().unwrap(),
        "--zato-bin",
        zato.to_str().unwrap(),
    ]);
    let output = text(&started.stdout);
    assert!(
        started.status.success(),
        "{output}\n{}",
        text(&started.stderr)
    );
    println!(
        "figure: muster quickstart with the real Zato: every component healthy and both servers in \
         the load balancer's rotation after {:?} (Zato's own quickstart and zato-qs-start.sh: ~26 s \
         on this machine kind)",
        started_at.elapsed()
    );
    assert!(output.contains("[5/5]"), "{output}");
    assert!(
        !output.contains("demo") && !output.contains("mock"),
        "{output}"
    );
    assert!(
        output.contains("muster cluster dashboard-login quickstart"),
        "the quickstart says how to log in to the dashboard:\n{output}"
    );

    // Requests through the load balancer alternate between the real servers.
    let components = dir.join("zato/quickstart");
    let stats_socket = components.join("load-balancer-load-balancer/stats.sock");
    let spread = spread_through_balancer(
        &host,
        SocketAddr::from(([127, 0, 0, 1], 11223)),
        &stats_socket,
        20,
    );
    assert_eq!(
        spread.keys().collect::<Vec<_>>(),
        ["server1", "server2"],
        "{spread:?}"
    );
    assert!(
        spread.values().all(|count| *count >= 9),
        "round robin over both servers: {spread:?}"
    );

    // Each server's row says where the other servers call it: the agent's advertise address
    // (server.conf's `[preferred_address] address`), as the real Zato writes it at its start.
    {
        use sqlx::{Connection as _, Row as _};
        let odb = components.join("odb.db");
        let mut connection =
            sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", odb.display()))
                .await
                .unwrap();
        let rows = sqlx::query("SELECT name, preferred_address FROM server ORDER BY name")
            .fetch_all(&mut connection)
            .await
            .unwrap();
        let addresses: Vec<(String, String)> =
            rows.iter().map(|row| (row.get(0), row.get(1))).collect();
        assert_eq!(
            addresses,
            [
                ("server1".to_owned(), "127.0.0.1".to_owned()),
                ("server2".to_owned(), "127.0.0.1".to_owned())
            ]
        );
    }

    // The dashboard takes the credentials Muster gives, and refuses others.
    let login = muster(&["-o", "json", "cluster", "dashboard-login", "quickstart"]);
    assert!(login.status.success(), "{}", text(&login.stderr));
    let login: serde_json::Value = serde_json::from_slice(&login.stdout).unwrap();
    let (user, password) = (
        login["username"].as_str().unwrap(),
        login["password"].as_str().unwrap(),
    );
    let dashboard = SocketAddr::from(([127, 0, 0, 1], 8183));
    let dashboard_password = password;
    assert!(dashboard_login(&host, dashboard, user, password));
    assert!(!dashboard_login(&host, dashboard, user, "not-the-password"));
    assert_eq!(
        logs_with(scratch.path(), password),
        Vec::<PathBuf>::new(),
        "the dashboard password is in no log"
    );

    // The scheduler accepts the servers' calls, and a job created through Zato reaches a server.
    let marker = a_job_reaches_a_server(
        &host,
        &zato,
        &components.join("server-server1"),
        &components,
    )
    .await;
    assert_no_credential_errors(&components);

    // The scheduler's health is that its jobs run: Muster's heartbeat job runs, logged in
    // Muster's job log (and no DEBUG line in the scheduler's server.log); stopped through the
    // scheduler's API, the scheduler turns unhealthy and says why.
    let scheduler_dir = components.join("scheduler-scheduler");
    wait_for("the heartbeat to run", PATIENCE, POLL, || {
        let ran = scheduler_jobs::runs(&scheduler_dir, scheduler_jobs::HEARTBEAT_JOB) > 0;
        async move { ran.then_some(()) }
    })
    .await
    .unwrap();
    assert_eq!(scheduler_jobs::debug_lines_in_server_log(&scheduler_dir), 0);
    let scheduler_address = SocketAddr::from(([127, 0, 0, 1], 31530));
    let (status, _, body) = traffic::exchange_from(
        &host.namespace,
        scheduler_address,
        &scheduler_jobs::stop_request(
            &scheduler_dir,
            scheduler_address,
            scheduler_jobs::HEARTBEAT_JOB,
        ),
    )
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let stopped_at = Instant::now();
    let reason = wait_for(
        "the scheduler unhealthy without its heartbeat",
        PATIENCE,
        POLL,
        || {
            let shown = muster(&[
                "-o",
                "json",
                "component",
                "show",
                "scheduler",
                "scheduler",
                "--cluster",
                "quickstart",
            ]);
            let shown: serde_json::Value =
                serde_json::from_slice(&shown.stdout).unwrap_or_default();
            let reason = (shown["healthy"] == false)
                .then(|| shown["reason"].as_str().unwrap_or_default().to_owned());
            async move { reason }
        },
    )
    .await
    .unwrap();
    assert!(reason.contains("its jobs are not running"), "{reason}");
    println!(
        "figure: the scheduler was unhealthy {:?} after its heartbeat job stopped",
        stopped_at.elapsed()
    );

    // The job keeps running across a crash of the scheduler (which runs the heartbeat again),
    // and the status waits for it.
    the_job_survives_a_scheduler_crash(
        &components.join("scheduler-scheduler"),
        &components,
        &marker,
    )
    .await;
    let waited = muster(&["wait", "--cluster", "quickstart", "--timeout", "5m"]);
    assert!(waited.status.success(), "{}", text(&waited.stderr));

    // The cluster's services: deployed on both servers through Zato's admin service, each
    // server's revision reported; a module that does not import is reported with Python's line
    // while the version before keeps answering on both; the fix reaches both.
    let services = scratch.path().join("services");
    std::fs::create_dir(&services).unwrap();
    let orders = services.join("orders.py");
    std::fs::write(&orders, orders_module("v1")).unwrap();
    let deploy = || {
        let output = muster(&[
            "-o",
            "json",
            "deploy",
            "--cluster",
            "quickstart",
            services.to_str().unwrap(),
        ]);
        assert!(output.status.success(), "{}", text(&output.stderr));
        let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        answer["revision"].as_str().unwrap().to_owned()
    };
    let sent_at = Instant::now();
    let first = deploy();
    quickstart_servers_when(&muster, "both servers to run the services", |servers| {
        servers.iter().all(|(revision, _)| *revision == first)
    })
    .await;
    println!(
        "figure: a module deployed on both real servers and reported {:?} after `muster deploy`",
        sent_at.elapsed()
    );
    for server in ["server1", "server2"] {
        let answer = orders_answer(&host, &zato, &components.join(format!("server-{server}")));
        assert!(answer.contains("'version': 'v1'"), "{server}: {answer}");
    }
    std::fs::write(
        &orders,
        orders_module("v2").replace("def handle(self):", "def handle(self)"),
    )
    .unwrap();
    deploy();
    let servers = quickstart_servers_when(&muster, "the import error to be reported", |servers| {
        servers.iter().any(|(_, reason)| !reason.is_empty())
    })
    .await;
    let reason = &servers
        .iter()
        .find(|(_, reason)| !reason.is_empty())
        .unwrap()
        .1;
    assert!(
        reason.contains("orders.py did not deploy: line 6: SyntaxError: expected ':'"),
        "{reason}"
    );
    for server in ["server1", "server2"] {
        let server_dir = components.join(format!("server-{server}"));
        let answer = orders_answer(&host, &zato, &server_dir);
        assert!(
            answer.contains("'version': 'v1'"),
            "{server} keeps v1: {answer}"
        );
    }
    wait_for("the good module to be restored", PATIENCE, POLL, || {
        let kept = std::fs::read_to_string(
            components.join("server-server1/work/hot-deploy/current/orders.py"),
        )
        .unwrap_or_default();
        let restored = kept == orders_module("v1");
        async move { restored.then_some(()) }
    })
    .await
    .unwrap();
    std::fs::write(&orders, orders_module("v2")).unwrap();
    let second = deploy();
    quickstart_servers_when(&muster, "both servers to run the fix", |servers| {
        servers
            .iter()
            .all(|(revision, reason)| *revision == second && reason.is_empty())
    })
    .await;
    for server in ["server1", "server2"] {
        let answer = orders_answer(&host, &zato, &components.join(format!("server-{server}")));
        assert!(answer.contains("'version': 'v2'"), "{server}: {answer}");
    }

    // The configuration: an enmasse file with a REST channel of that service behind basic auth,
    // its password from the env file; imported once, it answers through the load balancer from
    // both servers with the password and refuses without it; the password is in no log.
    let password = "Orders-Real-Pa55";
    let api = services.join("../api.yaml");
    let first_api = "security:\n  - name: orders.basic\n    type: basic_auth\n    username: orders\n    \
         password: \"{Zato_Enmasse_Env.ORDERS_PASSWORD}\"\n    realm: orders\n\n\
         channel_rest:\n  - name: orders.get\n    service: muster.orders.get\n    \
         url_path: /api/orders\n    security: orders.basic\n    data_format: json\n";
    let env = services.join("../env.ini");
    std::fs::write(&env, format!("[env]\nORDERS_PASSWORD={password}\n")).unwrap();
    // `muster deploy --config` of `content`: the revision set.
    let set_config = |content: &str| {
        std::fs::write(&api, content).unwrap();
        let configured = muster(&[
            "-o",
            "json",
            "deploy",
            "--cluster",
            "quickstart",
            "--config",
            api.to_str().unwrap(),
            "--env-file",
            env.to_str().unwrap(),
        ]);
        assert!(configured.status.success(), "{}", text(&configured.stderr));
        serde_json::from_slice::<serde_json::Value>(&configured.stdout).unwrap()["revision"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let imported = |revision: String| {
        wait_for(
            "the configuration to be imported",
            PATIENCE,
            POLL,
            move || {
                let listed =
                    muster(&["-o", "json", "component", "list", "--cluster", "quickstart"]);
                let listed: serde_json::Value =
                    serde_json::from_slice(&listed.stdout).unwrap_or_default();
                let done = listed.as_array().is_some_and(|all| {
                    all.iter()
                        .any(|component| component["config_revision"] == revision.as_str())
                });
                async move { done.then_some(()) }
            },
        )
    };
    let configured_at = Instant::now();
    imported(set_config(first_api)).await.unwrap();
    println!(
        "figure: the configuration (a security definition and a REST channel) imported {:?} \
         after `muster deploy --config`",
        configured_at.elapsed()
    );
    let frontend = SocketAddr::from(([127, 0, 0, 1], 11223));
    let call = |credentials: Option<&str>| orders_channel(&host, frontend, credentials);
    let before = traffic::haproxy_sessions(&stats_socket);
    for _ in 0..10 {
        let (status, _, body) = call(Some(&format!("orders:{password}")));
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("v2"), "{body}");
    }
    let after = traffic::haproxy_sessions(&stats_socket);
    for server in ["server1", "server2"] {
        assert!(
            after.get(server).copied().unwrap_or(0) > before.get(server).copied().unwrap_or(0),
            "{server} answered the channel: {before:?} {after:?}"
        );
    }
    assert_eq!(call(None).0, 401);
    assert_eq!(call(Some("orders:not-the-password")).0, 401);
    assert_eq!(
        logs_with(scratch.path(), password),
        Vec::<PathBuf>::new(),
        "the channel's password is in no log"
    );

    // An object that leaves the files leaves the cluster: a second channel imported, then gone
    // from both servers once the files no longer have it (enmasse itself never deletes).
    let extra =
        |credentials: Option<&str>| channel_answer(&host, frontend, "/api/extra", credentials);
    imported(set_config(&format!(
        "{first_api}  - name: orders.extra\n    service: muster.orders.get\n    \
         url_path: /api/extra\n    security: orders.basic\n    data_format: json\n"
    )))
    .await
    .unwrap();
    assert_eq!(extra(Some(&format!("orders:{password}"))).0, 200);
    imported(set_config(first_api)).await.unwrap();
    let removed_at = Instant::now();
    wait_for("the extra channel to be gone", PATIENCE, POLL, || {
        let gone = (0..4).all(|_| extra(Some(&format!("orders:{password}"))).0 == 404);
        async move { gone.then_some(()) }
    })
    .await
    .unwrap();
    println!(
        "a removed channel, asked for through the load balancer {:?} after its import: {:?}",
        removed_at.elapsed(),
        extra(Some(&format!("orders:{password}")))
    );
    for _ in 0..6 {
        assert_eq!(
            extra(Some(&format!("orders:{password}"))).0,
            404,
            "gone from both servers"
        );
        assert_eq!(
            call(Some(&format!("orders:{password}"))).0,
            200,
            "the other channel stays"
        );
    }

    // The Python dependencies. A module that imports a third-party package the servers lack
    // does not import (Python's error, named) and v2 keeps serving; the package, from a
    // wheelhouse, is installed beside each server (not into Zato's environment); the servers
    // restart one at a time to load it while requests through the load balancer keep being
    // answered, none failing; then the module imports on both.
    std::fs::write(
        &orders,
        orders_module("v3")
            .replace(
                "from zato.server.service import Service",
                "import inflection\nfrom zato.server.service import Service",
            )
            .replace(
                "'version': 'v3'",
                "'version': inflection.camelize('v3_with_inflection')",
            ),
    )
    .unwrap();
    let third = deploy();
    let servers =
        quickstart_servers_when(&muster, "the missing package to be reported", |servers| {
            servers
                .iter()
                .any(|(_, reason)| reason.contains("ModuleNotFoundError"))
        })
        .await;
    let reason = &servers
        .iter()
        .find(|(_, reason)| !reason.is_empty())
        .unwrap()
        .1;
    assert!(
        reason.contains(
            "orders.py did not deploy: line 1: ModuleNotFoundError: No module named 'inflection'"
        ),
        "{reason}"
    );
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/examples/python");
    let python_sent = Instant::now();
    let set = muster(&[
        "-o",
        "json",
        "deploy",
        "--cluster",
        "quickstart",
        "--requirements",
        example.join("requirements.txt").to_str().unwrap(),
        "--wheelhouse",
        example.join("wheelhouse").to_str().unwrap(),
    ]);
    assert!(set.status.success(), "{}", text(&set.stderr));
    let python = serde_json::from_slice::<serde_json::Value>(&set.stdout).unwrap()["revision"]
        .as_str()
        .unwrap()
        .to_owned();
    let (mut answered, mut failed) = (0, Vec::new());
    let deadline = Instant::now() + PATIENCE * 2;
    loop {
        assert!(
            Instant::now() < deadline,
            "the servers did not load the Python dependencies and the module within {:?}",
            PATIENCE * 2
        );
        for _ in 0..20 {
            let (status, _, body) = call(Some(&format!("orders:{password}")));
            if status == 200 {
                answered += 1;
            } else {
                failed.push((status, body));
            }
        }
        let listed = muster(&["-o", "json", "component", "list", "--cluster", "quickstart"]);
        let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap_or_default();
        let done = listed.as_array().is_some_and(|all| {
            all.iter()
                .filter(|component| component["role"] == "server")
                .all(|server| {
                    server["python_revision"] == python.as_str()
                        && server["services_revision"] == third.as_str()
                        && server["healthy"] == true
                })
        });
        if done {
            break;
        }
    }
    println!(
        "figure: the Python dependencies installed and loaded by both real servers (one restart \
         at a time) and the module that imports them deployed {:?} after `muster deploy \
         --requirements`; {answered} requests through the load balancer answered meanwhile",
        python_sent.elapsed()
    );
    assert_eq!(
        failed.len(),
        0,
        "no request failed during the rolling restart: {:?}",
        failed.first()
    );
    for server in ["server1", "server2"] {
        let server_dir = components.join(format!("server-{server}"));
        assert!(
            server_dir
                .join(format!("muster-python/{python}/inflection/__init__.py"))
                .exists(),
            "installed beside {server}"
        );
        let answer = orders_answer(&host, &zato, &server_dir);
        assert!(answer.contains("V3WithInflection"), "{server}: {answer}");
    }
    assert!(
        !Path::new("/opt/zato-3.2/code/lib/python3.10/site-packages/inflection").exists(),
        "Zato's own environment is left as it was"
    );

    // A module that leaves the files leaves the cluster: deleted through Zato on both servers
    // (its service answers no more, its file is gone), the other module still answering.
    let extra = services.join("extra.py");
    std::fs::write(
        &extra,
        orders_module("extra")
            .replace("muster.orders.get", "muster.extra.get")
            .replace("class Orders", "class Extra"),
    )
    .unwrap();
    let fourth = deploy();
    quickstart_servers_when(&muster, "both servers to run the extra module", |servers| {
        servers.iter().all(|(revision, _)| *revision == fourth)
    })
    .await;
    let extra_answer = |server: &str| {
        let output = host
            .command(&zato)
            .arg("service")
            .arg("invoke")
            .arg(components.join(format!("server-{server}")))
            .arg("muster.extra.get")
            .output()
            .unwrap();
        format!("{}{}", text(&output.stdout), text(&output.stderr))
    };
    assert!(
        extra_answer("server2").contains("'version': 'extra'"),
        "{}",
        extra_answer("server2")
    );
    std::fs::remove_file(&extra).unwrap();
    assert_eq!(deploy(), third, "the set before: its revision");
    wait_for(
        "the extra service to be gone from both servers",
        PATIENCE,
        POLL,
        || {
            let gone = ["server1", "server2"].iter().all(|server| {
                !extra_answer(server).contains("'version': 'extra'")
                    && !components
                        .join(format!("server-{server}/work/hot-deploy/current/extra.py"))
                        .exists()
            });
            async move { gone.then_some(()) }
        },
    )
    .await
    .unwrap();
    println!(
        "a removed module's service, asked for: {}",
        extra_answer("server1")
    );
    for server in ["server1", "server2"] {
        let answer = orders_answer(&host, &zato, &components.join(format!("server-{server}")));
        assert!(answer.contains("V3WithInflection"), "{server}: {answer}");
    }

    // User-config files: written beside both servers and loaded into them as they run (no
    // restart), what a service reads as `self.config.partners`; a change likewise; the secret
    // in no log.
    std::fs::write(services.join("settings.py"), SETTINGS_MODULE).unwrap();
    let fifth = deploy();
    quickstart_servers_when(
        &muster,
        "both servers to run the settings module",
        |servers| servers.iter().all(|(revision, _)| *revision == fifth),
    )
    .await;
    let settings_answer = |server: &str| {
        let output = host
            .command(&zato)
            .arg("service")
            .arg("invoke")
            .arg(components.join(format!("server-{server}")))
            .arg("muster.settings.get")
            .output()
            .unwrap();
        text(&output.stdout)
    };
    let pids = || {
        ["server1", "server2"].map(|server| {
            std::fs::read_to_string(components.join(format!("server-{server}/pidfile")))
                .unwrap_or_default()
        })
    };
    let before = pids();
    let partners = scratch.path().join("partners.ini");
    let set_partners = |address: &str| {
        std::fs::write(
            &partners,
            format!("[crm]\naddress = {address}\npassword = {CRM_PASSWORD}\n"),
        )
        .unwrap();
        let output = muster(&[
            "-o",
            "json",
            "deploy",
            "--cluster",
            "quickstart",
            "--user-conf",
            partners.to_str().unwrap(),
        ]);
        assert!(output.status.success(), "{}", text(&output.stderr));
        let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        answer["revision"].as_str().unwrap().to_owned()
    };
    for address in ["https://crm.example.com", "https://crm2.example.com"] {
        let sent_at = Instant::now();
        let revision = set_partners(address);
        wait_for(
            "both servers to load the user config",
            PATIENCE,
            POLL,
            || {
                let listed =
                    muster(&["-o", "json", "component", "list", "--cluster", "quickstart"]);
                let listed: serde_json::Value =
                    serde_json::from_slice(&listed.stdout).unwrap_or_default();
                let loaded = listed
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .filter(|component| component["role"] == "server")
                    .filter(|component| component["user_conf_revision"] == revision.as_str())
                    .count()
                    == 2;
                async move { loaded.then_some(()) }
            },
        )
        .await
        .unwrap();
        println!(
            "figure: a user-config file loaded into both real servers {:?} after `muster deploy --user-conf`",
            sent_at.elapsed()
        );
        for server in ["server1", "server2"] {
            let answer = settings_answer(server);
            assert!(
                answer.contains(&format!("'address': '{address}'")),
                "{server}: {answer}"
            );
        }
    }
    assert_eq!(pids(), before, "loaded without a restart");
    for server in ["server1", "server2"] {
        use std::os::unix::fs::PermissionsExt as _;
        let written = components.join(format!(
            "server-{server}/pickup/incoming/user-conf/partners.ini"
        ));
        let mode = std::fs::metadata(&written).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", written.display());
    }
    assert_eq!(
        logs_with(&dir, CRM_PASSWORD),
        Vec::<PathBuf>::new(),
        "the user config's secret is in no log"
    );

    // A rolling restart: both real servers' processes replaced, one at a time, while requests
    // through the load balancer keep being answered, none failing.
    let restart_sent = Instant::now();
    let restarted = muster(&["rollout", "restart", "--cluster", "quickstart"]);
    assert!(restarted.status.success(), "{}", text(&restarted.stderr));
    let (answered, failed) =
        answered_until_both_restarted(&muster, &|| call(Some(&format!("orders:{password}"))));
    let waited = muster(&["wait", "--cluster", "quickstart", "--timeout", "5m"]);
    assert!(waited.status.success(), "{}", text(&waited.stderr));
    println!(
        "figure: both real servers restarted one at a time {:?} after `muster rollout restart`; \
         {answered} requests through the load balancer answered meanwhile",
        restart_sent.elapsed()
    );
    assert_eq!(
        failed.len(),
        0,
        "no request failed during the rolling restart: {:?}",
        failed.first()
    );
    let after = pids();
    for (index, (old, new)) in before.iter().zip(&after).enumerate() {
        assert_ne!(old, new, "server{} was restarted", index + 1);
    }

    // Server settings: two gunicorn workers on each server and the `zato` logger at DEBUG,
    // rolled out one server at a time while requests keep being answered; each server then
    // runs one more worker process and logs DEBUG lines.
    let workers = || pids_in(&pids()).map(children_of);
    let one_worker = workers();
    // `muster configure server --set` of `settings`, rolled over both servers under requests
    // through the load balancer, and `muster wait` after it: when it was sent, the requests
    // answered meanwhile, and those that failed.
    let rolled = |settings: &[&str]| {
        let mut args = vec!["configure", "server", "--cluster", "quickstart"];
        for setting in settings {
            args.extend(["--set", setting]);
        }
        let configured = muster(&args);
        assert!(configured.status.success(), "{}", text(&configured.stderr));
        let sent = Instant::now();
        let (answered, failed) =
            answered_until_both_restarted(&muster, &|| call(Some(&format!("orders:{password}"))));
        let waited = muster(&["wait", "--cluster", "quickstart", "--timeout", "5m"]);
        assert!(waited.status.success(), "{}", text(&waited.stderr));
        (sent, answered, failed)
    };
    let (configure_sent, answered, failed) =
        rolled(&["main.gunicorn_workers=2", "logging.zato=DEBUG"]);
    println!(
        "figure: gunicorn_workers 1 -> 2 rolled over both real servers in {:?}; {answered} \
         requests answered meanwhile",
        configure_sent.elapsed()
    );
    assert_eq!(
        failed.len(),
        0,
        "no request failed while the setting rolled out: {:?}",
        failed.first()
    );
    let two_workers = workers();
    for (index, (one, two)) in one_worker.iter().zip(&two_workers).enumerate() {
        assert_eq!(
            *two,
            one + 1,
            "server{} runs one more worker process ({one} children before, {two} after)",
            index + 1
        );
    }
    for server in ["server1", "server2"] {
        let log =
            std::fs::read_to_string(components.join(format!("server-{server}/logs/server.log")))
                .unwrap();
        assert!(
            log.lines()
                .any(|line| line.contains("DEBUG") && line.contains(" - zato:")),
            "{server} logs the zato logger's DEBUG lines"
        );
    }

    // A setting with which a real server never becomes healthy: `main.gunicorn_timeout=1`, and
    // Zato's arbiter kills every worker before it has booted. The rollout stops at server1;
    // with auto_revert the settings before come back and server1 alone restarts again, server2
    // is never touched, and no request through the load balancer fails meanwhile.
    let strategy = muster(&[
        "configure",
        "rollout",
        "--cluster",
        "quickstart",
        "--healthy-deadline",
        "60s",
        "--auto-revert",
        "true",
    ]);
    assert!(strategy.status.success(), "{}", text(&strategy.stderr));
    let before_bad = pids();
    let configured = muster(&[
        "configure",
        "server",
        "--cluster",
        "quickstart",
        "--set",
        "main.gunicorn_timeout=1",
    ]);
    assert!(configured.status.success(), "{}", text(&configured.stderr));
    let bad_sent = Instant::now();
    let (answered, failed) =
        answered_until_both_restarted(&muster, &|| call(Some(&format!("orders:{password}"))));
    let waited = muster(&["wait", "--cluster", "quickstart", "--timeout", "5m"]);
    assert_eq!(waited.status.code(), Some(1), "{}", text(&waited.stderr));
    assert!(
        text(&waited.stderr).contains("auto_revert undid the change, server1 on local not healthy"),
        "{}",
        text(&waited.stderr)
    );
    println!(
        "figure: a bad setting (gunicorn_timeout=1) stopped and reverted {:?} after `muster \
         configure server` (healthy_deadline 60s); {answered} requests answered meanwhile",
        bad_sent.elapsed()
    );
    assert_eq!(
        failed.len(),
        0,
        "no request failed while the bad setting was tried and reverted: {:?}",
        failed.first()
    );
    let after_bad = pids();
    assert_ne!(after_bad[0], before_bad[0], "server1 restarted twice");
    assert_eq!(after_bad[1], before_bad[1], "server2 was never restarted");
    let log = std::fs::read_to_string(components.join("server-server1/logs/server.log")).unwrap();
    assert!(
        log.contains("WORKER TIMEOUT (pid:"),
        "Zato's arbiter killed the workers"
    );
    let shown = muster(&["-o", "json", "cluster", "show", "quickstart"]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(
        shown["server_settings"],
        serde_json::json!({"main.gunicorn_workers": "2", "logging.zato": "DEBUG"}),
        "the settings before the bad one"
    );
    assert_eq!(
        workers(),
        two_workers,
        "each server runs its two workers again"
    );

    // A second Zato installation: a copy of the one in use at another path, named in the
    // agent's [zato_installs] (the agent restarted with it; its components run on). The servers
    // switch to it one at a time, each then run by the copy's `py`, while requests through the
    // load balancer keep being answered, none failing.
    let next = copy_installation(&zato, &scratch.path().join("zato-next"));
    restart_quickstart_agent(
        &host,
        &dir,
        &format!("[zato_installs]\nnext = \"{}\"\n", next.display()),
    )
    .await;
    let installs = || {
        let shown = muster(&["-o", "json", "host", "show", "local"]);
        serde_json::from_slice::<serde_json::Value>(&shown.stdout).unwrap_or_default()
            ["zato_installs"]
            .clone()
    };
    wait_for(
        "the agent to report its installations",
        PATIENCE,
        POLL,
        || {
            let reported = installs() == serde_json::json!(["default", "next"]);
            async move { reported.then_some(()) }
        },
    )
    .await
    .unwrap();
    // A server's pidfile names its gunicorn master (which retitles itself); Zato's `py`
    // script, which started it, is its parent.
    let run_by = |pidfile_text: &str| {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pidfile_text.trim()))
            .unwrap_or_default();
        let parent = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .unwrap_or_default()
            .to_owned();
        std::fs::read(format!("/proc/{parent}/cmdline"))
            .map(|cmdline| text(&cmdline).replace('\0', " "))
            .unwrap_or_default()
    };
    let next_root = code_root(&next);
    let (switch_sent, answered, failed) = rolled(&["zato.install=next"]);
    println!(
        "figure: both real servers switched to a second Zato installation in {:?}; {answered} \
         requests answered meanwhile",
        switch_sent.elapsed()
    );
    assert_eq!(
        failed.len(),
        0,
        "no request failed while the servers switched installations: {:?}",
        failed.first()
    );
    for pidfile in pids() {
        let command = run_by(&pidfile);
        assert!(command.contains(&next_root), "{command}");
    }

    // The scheduler and the dashboard switch to it too, each with settings of its own: each
    // restarts once, at its role's turn, and then runs the copy's Python with them; the
    // servers are not restarted again.
    let role_pids = || {
        ["scheduler-scheduler", "web-admin-web-admin"].map(|name| {
            std::fs::read_to_string(components.join(name).join("pidfile")).unwrap_or_default()
        })
    };
    let (roles_before, servers_before) = (pids_in(&role_pids()), pids());
    for args in [
        &[
            "scheduler",
            "--set",
            "zato.install=next",
            "--set",
            "logging.zato=DEBUG",
            "--set",
            "env.APP_MODE=blue",
        ][..],
        &[
            "web-admin",
            "--set",
            "zato.install=next",
            "--set",
            "TIME_ZONE=Europe/Prague",
            "--set",
            "env.Zato_Dashboard_CSRF_Trusted_Origins=https://dashboard.example.com",
        ][..],
    ] {
        let mut command = vec!["configure"];
        command.extend(args);
        command.extend(["--cluster", "quickstart"]);
        let configured = muster(&command);
        assert!(configured.status.success(), "{}", text(&configured.stderr));
    }
    let roles_sent = Instant::now();
    let waited = muster(&["wait", "--cluster", "quickstart", "--timeout", "5m"]);
    assert!(waited.status.success(), "{}", text(&waited.stderr));
    println!(
        "figure: the real scheduler and dashboard restarted with new settings and the second \
         installation in {:?}",
        roles_sent.elapsed()
    );
    let roles_after = pids_in(&role_pids());
    assert_eq!(pids(), servers_before, "no server restarted again");
    for ((name, before), after) in ["scheduler", "web-admin"]
        .iter()
        .zip(roles_before)
        .zip(roles_after)
    {
        assert_ne!(before, after, "the {name} restarted");
        let command = std::fs::read(format!("/proc/{after}/cmdline"))
            .map(|cmdline| text(&cmdline).replace('\0', " "))
            .unwrap_or_default();
        assert!(command.contains(&next_root), "the {name} runs {command}");
    }
    let environment = |pid: u32| std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let has = |pid: u32, variable: &[u8]| {
        environment(pid)
            .split(|byte| *byte == 0)
            .any(|entry| entry == variable)
    };
    assert!(has(roles_after[0], b"APP_MODE=blue"));
    assert!(has(
        roles_after[1],
        b"Zato_Dashboard_CSRF_Trusted_Origins=https://dashboard.example.com"
    ));
    let web_admin: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(components.join("web-admin-web-admin/config/repo/web-admin.conf"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(web_admin["TIME_ZONE"], "Europe/Prague");
    // A time zone the host does not know: Django ends the dashboard at its start, saying why on
    // stderr only; `muster status` says it in Zato's words. Set back, it comes back.
    let set_time_zone = |time_zone: &str| {
        let configured = muster(&[
            "configure",
            "web-admin",
            "--cluster",
            "quickstart",
            "--set",
            &format!("TIME_ZONE={time_zone}"),
        ]);
        assert!(configured.status.success(), "{}", text(&configured.stderr));
    };
    set_time_zone("Mars/Olympus");
    wait_for(
        "the dashboard's failure in muster status",
        PATIENCE,
        POLL,
        || {
            let status = text(&muster(&["status", "--cluster", "quickstart"]).stdout);
            let said = status
                .contains("ValueError: Incorrect timezone setting: Mars/Olympus")
                .then_some(());
            async move { said }
        },
    )
    .await
    .unwrap();
    set_time_zone("Europe/Prague");
    let waited = muster(&["wait", "--cluster", "quickstart", "--timeout", "5m"]);
    assert!(waited.status.success(), "{}", text(&waited.stderr));
    assert!(
        dashboard_login(&host, dashboard, user, dashboard_password),
        "the dashboard in Prague's time takes the credentials Muster gives"
    );
    // The scheduler's `zato` logger at DEBUG: its process logs DEBUG lines (its calls to the
    // servers, `zato.client`), which at INFO it does not.
    let scheduler_log = components.join("scheduler-scheduler/logs/server.log");
    wait_for("the scheduler's DEBUG lines", PATIENCE, POLL, || {
        let debug = std::fs::read_to_string(&scheduler_log)
            .unwrap_or_default()
            .lines()
            .any(|line| {
                line.contains("DEBUG") && line.contains(&format!(" - {}:", roles_after[0]))
            });
        async move { debug.then_some(()) }
    })
    .await
    .unwrap();

    let stopped = muster(&["quickstart", "stop", "--dir", dir.to_str().unwrap()]);
    assert!(stopped.status.success(), "{}", text(&stopped.stderr));
}

/// One cluster `prod` of real Zato components on separate test hosts: `coord` (the coordinator),
/// `db` (a forwarder to this machine's PostgreSQL or MariaDB), `admin` (web-admin and the
/// scheduler), `lb` (the load balancer), `app-1`..`app-3` (servers) and `client`.
/// Fields drop in order: agents, the coordinator, the hosts (and what runs in them), the database.
struct Site {
    agents: BTreeMap<String, Agent>,
    coordinator: Coordinator,
    network: Network,
    hosts: BTreeMap<String, Host>,
    zato: PathBuf,
    scratch: tempfile::TempDir,
    database: TestDatabase,
    assigned_at: Instant,
}

impl Site {
    async fn start(zato: PathBuf, backend: Backend) -> Site {
        netns::sweep_stale();
        let scratch = tempfile::tempdir().unwrap();
        let mut network = Network::create();
        let coord = network.add_host("coord");
        let coordinator = Coordinator::start_on(&coord, scratch.path(), None, &[]).await;
        let mut hosts = BTreeMap::from([("coord".to_owned(), coord)]);
        for name in ["admin", "lb", "app-1", "app-2", "app-3", "client", "db"] {
            hosts.insert(name.to_owned(), network.add_host(name));
        }
        let database = TestDatabase::create(backend).await;
        let port = url::Url::parse(&database.url).unwrap().port().unwrap();
        let db = &hosts["db"];
        netns::forward(
            &db.namespace,
            SocketAddrV4::new(db.address, port),
            SocketAddr::from(([127, 0, 0, 1], port)),
        );
        let options = database.muster_odb_options_via(db.address, scratch.path());
        let mut create = vec!["create", "cluster", "prod"];
        create.extend(options.iter().map(String::as_str));
        coordinator.ok(&create);
        let mut site = Site {
            agents: BTreeMap::new(),
            coordinator,
            network,
            hosts,
            zato,
            scratch,
            database,
            assigned_at: Instant::now(),
        };
        for name in ["admin", "lb", "app-1", "app-2", "app-3"] {
            let token = site.coordinator.join_token("prod", &[], 1);
            site.start_agent(name, &token);
        }
        for (role, host) in [
            ("web-admin", "admin"),
            ("scheduler", "admin"),
            ("load-balancer", "lb"),
            ("server", "app-1"),
            ("server", "app-2"),
            ("server", "app-3"),
        ] {
            site.coordinator
                .ok(&["create", role, "--cluster", "prod", "--host", host]);
        }
        site.assigned_at = Instant::now();
        site
    }

    /// Waits until every component is healthy and the load balancer has every server in rotation.
    async fn up(&self) {
        self.all_healthy(6).await;
        self.backend_is(&[("server1", "UP"), ("server2", "UP"), ("server3", "UP")])
            .await;
        println!(
            "figure: a distributed real-Zato cluster on {:?} (3 servers, scheduler, dashboard, \
             load balancer on 5 hosts) healthy and in rotation {:?} after assignment",
            self.database.backend,
            self.assigned_at.elapsed()
        );
    }

    fn start_agent(&mut self, host: &str, token: &str) {
        let mut agent = Agent::configure_on(
            &self.hosts[host],
            self.scratch.path(),
            &self.coordinator,
            token,
        )
        .with_zato(&self.zato);
        agent.start();
        self.agents.insert(host.to_owned(), agent);
    }

    fn stats_socket(&self) -> PathBuf {
        self.agents["lb"]
            .components_dir
            .join("prod/load-balancer-load-balancer/stats.sock")
    }

    fn frontend(&self) -> SocketAddr {
        SocketAddr::from((self.hosts["lb"].address, 11223))
    }

    async fn all_healthy(&self, count: usize) {
        let waited = wait_for("every component healthy", PATIENCE, POLL, || {
            let components = self.coordinator.json(&["component", "list"]);
            let done = components.as_array().is_some_and(|components| {
                components.len() == count
                    && components
                        .iter()
                        .all(|component| component["healthy"] == true)
            });
            async move { done.then_some(()) }
        })
        .await;
        if let Err(error) = waited {
            panic!("{error}\n{}", self.coordinator.ok(&["status"]));
        }
    }

    async fn backend_is(&self, expected: &[(&str, &str)]) {
        if let Err(error) = traffic::await_backend(&self.stats_socket(), expected, PATIENCE).await {
            panic!("{error}\n{}", self.coordinator.ok(&["status"]));
        }
    }

    /// The ODB's cluster names and server names, read from the database itself.
    async fn odb_rows(&self) -> (Vec<String>, Vec<String>) {
        use sqlx::Row as _;
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&self.database.url).await.unwrap();
        let names = |rows: Vec<sqlx::any::AnyRow>| -> Vec<String> {
            let mut names: Vec<String> = rows
                .iter()
                .map(|row| row.try_get::<String, _>(0).unwrap())
                .collect();
            names.sort();
            names
        };
        let clusters = sqlx::query("SELECT name FROM cluster")
            .fetch_all(&pool)
            .await
            .unwrap();
        let servers = sqlx::query("SELECT name FROM server")
            .fetch_all(&pool)
            .await
            .unwrap();
        (names(clusters), names(servers))
    }

    /// Makes every commit that inserts a `server` row hang for `seconds`, then fail (a deferred
    /// constraint trigger: it runs at COMMIT, after `zato create server` wrote its `.zato-info`),
    /// or, with `None`, ends the commit held and lets the next ones through. The trigger stays
    /// (dropping it would wait for the running servers' open transactions): its function becomes
    /// a no-op.
    async fn hold_server_commits(&self, seconds: Option<u32>) {
        use sqlx::Connection as _;
        sqlx::any::install_default_drivers();
        let mut connection = sqlx::AnyConnection::connect(&self.database.url)
            .await
            .unwrap();
        // Waiting on the servers' locks would stall them and the test: fail instead.
        sqlx::query("SET lock_timeout = '20s'")
            .execute(&mut connection)
            .await
            .unwrap();
        let function = |body: &str| {
            format!(
                "CREATE OR REPLACE FUNCTION muster_test_hold() RETURNS trigger AS $$ BEGIN {body} \
                 END $$ LANGUAGE plpgsql"
            )
        };
        let statements = match seconds {
            Some(seconds) => vec![
                function(&format!(
                    "PERFORM pg_sleep({seconds}); RAISE EXCEPTION 'held by the test';"
                )),
                "CREATE CONSTRAINT TRIGGER muster_test_hold AFTER INSERT ON server \
                 DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION muster_test_hold()"
                    .to_owned(),
            ],
            None => vec![
                function("RETURN NULL;"),
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = current_database() AND wait_event = 'PgSleep'"
                    .to_owned(),
            ],
        };
        for statement in statements {
            sqlx::query(&statement)
                .execute(&mut connection)
                .await
                .unwrap();
        }
        connection.close().await.unwrap();
    }

    /// Whether a commit is held by [`Site::hold_server_commits`] right now.
    async fn commit_held(&self) -> bool {
        use sqlx::Connection as _;
        sqlx::any::install_default_drivers();
        let mut connection = sqlx::AnyConnection::connect(&self.database.url)
            .await
            .unwrap();
        let held: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event = 'PgSleep'",
        )
        .fetch_one(&mut connection)
        .await
        .unwrap();
        connection.close().await.unwrap();
        held > 0
    }

    /// The cluster row's `lb_host` and `lb_port`: where Zato's dashboard sends calls to servers.
    async fn odb_load_balancer(&self) -> (String, i64) {
        use sqlx::Row as _;
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&self.database.url).await.unwrap();
        let row = sqlx::query("SELECT lb_host, CAST(lb_port AS BIGINT) FROM cluster")
            .fetch_one(&pool)
            .await
            .unwrap();
        (row.try_get(0).unwrap(), row.try_get(1).unwrap())
    }

    fn assert_served_by(&self, servers: &[&str]) {
        let spread = spread_through_balancer(
            &self.hosts["client"],
            self.frontend(),
            &self.stats_socket(),
            10 * servers.len(),
        );
        for server in servers {
            assert!(
                spread.get(*server).copied().unwrap_or(0) > 0,
                "{server} got no request through the load balancer: {spread:?}"
            );
        }
    }

    fn components_of(&self, host: &str) -> PathBuf {
        self.agents[host].components_dir.join("prod")
    }
}

/// Run by hand (`cargo nextest run -p muster-testkit --test real_zato --run-ignored only
/// first_start`): `MUSTER_SOAK_RUNS` (default 5) fresh PostgreSQL clusters of three servers
/// assigned at once, each checked for a deadlock in any log and a server that died. CI runs one
/// such start in the distributed test below.
#[tokio::test]
#[ignore = "a soak of several real clusters: minutes of CPU"]
async fn first_start_of_fresh_postgresql_clusters_never_deadlocks() {
    let Some(zato) = real_zato() else { return };
    let runs: usize = std::env::var("MUSTER_SOAK_RUNS")
        .ok()
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(5);
    for run in 1..=runs {
        let site = Site::start(zato.clone(), Backend::Postgres).await;
        site.up().await;
        let components = site.coordinator.json(&["component", "list"]);
        for component in components.as_array().unwrap() {
            assert_eq!(component["restarts"], 0, "run {run}: {component}");
        }
        for host in SERVER_HOSTS {
            let deadlocked = logs_with(&site.components_of(host), "deadlock detected");
            assert!(deadlocked.is_empty(), "run {run}: {deadlocked:?}");
        }
        println!("figure: run {run} of {runs}: no deadlock, no server restarted");
        // Dropped: its agents stop, and their components with them.
    }
}

/// Every component of a quickstart of three real servers restarted in Zato's order (`muster
/// rollout restart --role all`: the dashboard, the servers one at a time behind the load
/// balancer, the load balancer's HAProxy reloaded, the scheduler) under a steady stream of
/// requests, with the coordinator killed (SIGKILL) once the first server has restarted and
/// started again: `muster-rollout-bench`, whose table is the figures in benchmarks.md. No request
/// fails, each component restarts once and in that order (the rollout goes on where it was:
/// none restarts again), never two servers out of rotation at once.
#[test]
fn a_real_cluster_rolls_in_zatos_order_under_load_through_a_killed_coordinator() {
    let Some(results) = bench_three_real_servers(&["--role", "all", "--kill-coordinator"]) else {
        return;
    };
    muster_testkit::rollout_bench::assert_rolled_one_at_a_time(&results, 3);
    assert_eq!(results["zato"], "Zato");
}

/// `muster-rollout-bench ARGS` on a quickstart of three real servers, two request streams
/// through its load balancer, on a test host of its own; `None` where the real Zato is not.
fn bench_three_real_servers(args: &[&str]) -> Option<serde_json::Value> {
    let zato = real_zato()?;
    netns::sweep_stale();
    let mut network = Network::create();
    let host = network.add_host("roll");
    let mut all = vec![
        "--zato-bin",
        zato.to_str().unwrap(),
        "--servers",
        "3",
        "--clients",
        "2",
    ];
    all.extend(args);
    Some(muster_testkit::rollout_bench::run(&host, &all))
}

/// New server settings rolled over three real servers under load (`muster-rollout-bench --set`):
/// `main.gunicorn_workers` 1 -> 2, one server at a time, no request through the load balancer
/// failing, and each server then runs one more worker process.
#[test]
fn three_real_servers_roll_a_second_gunicorn_worker_without_a_failed_request() {
    let Some(results) = bench_three_real_servers(&["--set", "main.gunicorn_workers=2"]) else {
        return;
    };
    muster_testkit::rollout_bench::assert_rolled_one_at_a_time(&results, 3);
    for server in ["server1", "server2", "server3"] {
        let (before, after) = (
            results["workers_before"][server].as_u64().unwrap(),
            results["workers_after"][server].as_u64().unwrap(),
        );
        assert_eq!(
            after,
            before + 1,
            "{server} runs one more worker: {results:#}"
        );
    }
}

/// A server setting with which a real server never becomes healthy (`main.gunicorn_timeout=1`:
/// Zato's arbiter kills every worker before it has booted), rolled over three real servers under
/// load with `auto_revert`: the rollout stops at server1, the settings before come back, server1
/// alone restarts again, server2 and server3 are never touched, and no request fails.
#[test]
fn a_bad_setting_on_three_real_servers_is_reverted_after_the_first_without_a_failed_request() {
    let Some(results) = bench_three_real_servers(&[
        "--set",
        "main.gunicorn_timeout=1",
        "--healthy-deadline",
        "60s",
        "--auto-revert",
    ]) else {
        return;
    };
    muster_testkit::rollout_bench::assert_reverted_after_the_first(&results, 3);
}

/// Three real servers switched to a second Zato installation (a copy of the one in use at
/// another path, named in the agent's [zato_installs]) under load: one at a time, none failing,
/// each then started by the copy's `py`.
#[test]
fn three_real_servers_switch_zato_installations_without_a_failed_request() {
    let Some(zato) = real_zato() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let next = copy_installation(&zato, &scratch.path().join("zato-next"));
    let install = format!("next={}", next.display());
    let Some(results) =
        bench_three_real_servers(&["--zato-install", &install, "--set", "zato.install=next"])
    else {
        return;
    };
    muster_testkit::rollout_bench::assert_rolled_one_at_a_time(&results, 3);
    let next_root = code_root(&next);
    for server in ["server1", "server2", "server3"] {
        let command = results["started_by"][server].as_str().unwrap_or_default();
        assert!(
            command.contains(&next_root),
            "{server} is run by the copy: {command}"
        );
    }
}

/// Zato 3.2's servers cannot run on MariaDB 10.5 and later (Debian 12's is 10.11): at every start
/// Zato's SQL lock calls `SELECT get_lock(<a number>, 0)`, which MariaDB refuses ("Illegal
/// parameter data type bigint for operation 'get_lock'"), and the server exits. Muster refuses
/// such an ODB at the cluster's bootstrap, before anything is created, and the status says why.
#[tokio::test]
async fn on_mariadb_the_bootstrap_is_refused_with_the_reason_before_anything_is_created() {
    let Some(zato) = real_zato() else { return };
    let site = Site::start(zato, Backend::MySql).await;
    let reason = wait_for("the status to name the refusal", PATIENCE, POLL, || {
        let components = site.coordinator.json(&["component", "list"]);
        let reason = components
            .as_array()
            .unwrap()
            .iter()
            .filter(|component| component["role"] == "server")
            .filter_map(|component| component["reason"].as_str().map(str::to_owned))
            .find(|reason| reason.contains("MariaDB"));
        async move { reason }
    })
    .await
    .unwrap();
    println!("what the status says of a cluster on MariaDB: {reason}");
    assert!(
        reason.contains("get_lock") && reason.contains("PostgreSQL or MySQL"),
        "{reason}"
    );
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&site.database.url).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE()",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(tables, 0, "nothing was created in the ODB");
    for host in ["admin", "app-1", "app-2", "app-3"] {
        let made: Vec<_> = std::fs::read_dir(site.components_of(host))
            .map(|entries| entries.flatten().map(|entry| entry.file_name()).collect())
            .unwrap_or_default();
        assert!(
            made.iter()
                .all(|name| !name.to_string_lossy().contains("server-")),
            "{host}: {made:?}"
        );
    }
}

/// On PostgreSQL, then: a server removed and added again under its name; a scale-in followed by a
/// host that auto-joins and gets the freed name; and that host's agent killed, together with its
/// `zato create server`, in the middle of the create.
#[tokio::test]
async fn a_distributed_real_cluster_on_postgresql_reuses_names_and_survives_a_killed_create() {
    let Some(zato) = real_zato() else { return };
    let mut site = Site::start(zato, Backend::Postgres).await;
    // Zato's `create web-admin` writes `.zato-info` seconds before Django's migrations and the
    // user `admin`: the admin host goes down right then (its agent and the create killed), and
    // boots. The dashboard is made again, not adopted half-made.
    let half_made = site
        .components_of("admin")
        .join(".creating-web-admin-web-admin");
    wait_for(
        "the dashboard's .zato-info",
        PATIENCE,
        Duration::from_millis(20),
        || {
            let written = half_made.join(".zato-info").exists();
            async move { written.then_some(()) }
        },
    )
    .await
    .unwrap();
    kill_everything_in(&site.hosts["admin"]);
    if let Some(admin) = site.agents.get_mut("admin") {
        admin.kill();
        admin.start();
    }
    site.up().await;
    // Three servers assigned at once to a fresh ODB: the first started alone and wrote Zato's
    // internal services, then the other two. Together they deadlock (40P01) and one dies.
    let components = site.coordinator.json(&["component", "list"]);
    for component in components.as_array().unwrap() {
        assert_eq!(component["restarts"], 0, "{component}");
    }
    for host in SERVER_HOSTS {
        let deadlocked = logs_with(&site.components_of(host), "deadlock detected");
        assert!(deadlocked.is_empty(), "{deadlocked:?}");
    }
    let events = site.coordinator.json(&["events", "--cluster", "prod"]);
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|event| event["kind"] == "cluster.servers-started"),
        "{events}"
    );
    let (clusters, servers) = site.odb_rows().await;
    assert_eq!(clusters, ["prod"], "one cluster row");
    assert_eq!(
        servers,
        ["server1", "server2", "server3"],
        "three server rows"
    );
    assert_eq!(
        site.odb_load_balancer().await,
        (site.hosts["lb"].address.to_string(), 11223),
        "the dashboard reaches the servers through the cluster's load balancer"
    );
    site.assert_served_by(&["server1", "server2", "server3"]);
    for host in ["admin", "app-1", "app-2", "app-3"] {
        assert_no_credential_errors(&site.components_of(host));
    }
    let login = site
        .coordinator
        .json(&["cluster", "dashboard-login", "prod"]);
    let dashboard = SocketAddr::from((site.hosts["admin"].address, 8183));
    assert_eq!(
        login["urls"][0].as_str(),
        Some(format!("http://{dashboard}").as_str())
    );
    assert!(dashboard_login(
        &site.hosts["client"],
        dashboard,
        login["username"].as_str().unwrap(),
        login["password"].as_str().unwrap(),
    ));

    // The cluster's services on three servers on separate hosts: deployed, then changed while
    // requests through the load balancer keep being answered, none failing.
    let services = site.scratch.path().join("services");
    std::fs::create_dir(&services).unwrap();
    let orders = services.join("orders.py");
    let deploy = || {
        site.coordinator
            .json(&["deploy", "--cluster", "prod", services.to_str().unwrap()])["revision"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    std::fs::write(&orders, orders_module("v1")).unwrap();
    let sent = Instant::now();
    let first = deploy();
    prod_servers_run(&site.coordinator, 3, &first).await;
    println!(
        "figure: a module deployed on three real servers (distributed, PostgreSQL) and reported \
         {:?} after `muster deploy`",
        sent.elapsed()
    );
    std::fs::write(&orders, orders_module("v2")).unwrap();
    let load = LoadLoop::start(&site.hosts["client"], site.frontend());
    let sent = Instant::now();
    let second = deploy();
    prod_servers_run(&site.coordinator, 3, &second).await;
    let changed_in = sent.elapsed();
    let (answered, failed) = load.finish();
    println!(
        "figure: a changed module on all three real servers {changed_in:?} after `muster deploy`; \
         {answered} requests through the load balancer answered meanwhile"
    );
    assert_eq!(
        failed,
        Vec::<String>::new(),
        "no request failed during the change"
    );
    for host in SERVER_HOSTS {
        let number = host.trim_start_matches("app-");
        let answer = orders_answer(
            &site.hosts[host],
            &site.zato,
            &site
                .components_of(host)
                .join(format!("server-server{number}")),
        );
        assert!(answer.contains("'version': 'v2'"), "{host}: {answer}");
    }

    // The Python dependencies on three servers, a requirement from the wheelhouse and the
    // example's own package (`pricing`, relative imports inside): installed beside each and
    // loaded one restart at a time, no request failing. Then a module that imports both, a REST
    // channel of it behind basic auth (the password from the env file) and a scheduler job that
    // calls it every two seconds, from one enmasse file.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/examples/python");
    let load = LoadLoop::start(&site.hosts["client"], site.frontend());
    let sent = Instant::now();
    let python = site.coordinator.json(&[
        "deploy",
        "--cluster",
        "prod",
        "--requirements",
        example.join("requirements.txt").to_str().unwrap(),
        "--wheelhouse",
        example.join("wheelhouse").to_str().unwrap(),
        "--package",
        example.join("packages/pricing").to_str().unwrap(),
    ])["revision"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for(
        "every server to run with the Python dependencies",
        PATIENCE * 2,
        POLL,
        || {
            let listed = site
                .coordinator
                .json(&["component", "list", "--cluster", "prod"]);
            let done = listed.as_array().is_some_and(|all| {
                all.iter()
                    .filter(|component| component["role"] == "server")
                    .all(|server| {
                        server["python_revision"] == python.as_str() && server["healthy"] == true
                    })
            });
            async move { done.then_some(()) }
        },
    )
    .await
    .unwrap();
    let loaded_in = sent.elapsed();
    let (answered, failed) = load.finish();
    println!(
        "figure: the Python dependencies loaded by three real servers, one restart at a time, \
         {loaded_in:?} after `muster deploy --requirements`; {answered} requests through the load \
         balancer answered meanwhile"
    );
    assert_eq!(
        failed,
        Vec::<String>::new(),
        "no request failed during the rolling restart"
    );
    std::fs::write(
        &orders,
        "import inflection\nfrom pricing.tax import with_tax\n\n\
         from zato.server.service import Service\n\n\
         class Orders(Service):\n    name = 'muster.orders.get'\n\n    def handle(self):\n        \
         self.response.payload = {'version': inflection.camelize('v3_with_inflection'), \
         'total': with_tax(100, 'NL')}\n",
    )
    .unwrap();
    let third = deploy();
    prod_servers_run(&site.coordinator, 3, &third).await;
    let password = "Orders-Distributed-Pa55";
    let api = site.scratch.path().join("api.yaml");
    std::fs::write(
        &api,
        "security:\n  - name: orders.basic\n    type: basic_auth\n    username: orders\n    \
         password: \"{Zato_Enmasse_Env.ORDERS_PASSWORD}\"\n    realm: orders\n\n\
         channel_rest:\n  - name: orders.get\n    service: muster.orders.get\n    \
         url_path: /api/orders\n    security: orders.basic\n    data_format: json\n\n\
         scheduler:\n  - name: muster.orders.every-2s\n    service: muster.orders.get\n    \
         job_type: interval_based\n    start_date: \"START\"\n    seconds: 2\n"
            .replace("START", &time_in_a_second()),
    )
    .unwrap();
    let env = site.scratch.path().join("env.ini");
    std::fs::write(&env, format!("[env]\nORDERS_PASSWORD={password}\n")).unwrap();
    let deploy_config = || {
        site.coordinator.json(&[
            "deploy",
            "--cluster",
            "prod",
            "--config",
            api.to_str().unwrap(),
            "--env-file",
            env.to_str().unwrap(),
        ])["revision"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let config = deploy_config();
    wait_for("the configuration to be imported", PATIENCE, POLL, || {
        let listed = site
            .coordinator
            .json(&["component", "list", "--cluster", "prod"]);
        let imported = listed.as_array().is_some_and(|all| {
            all.iter()
                .any(|component| component["config_revision"] == config.as_str())
        });
        async move { imported.then_some(()) }
    })
    .await
    .unwrap();
    let call = |credentials: Option<&str>| {
        orders_channel(&site.hosts["client"], site.frontend(), credentials)
    };
    let before = traffic::haproxy_sessions(&site.stats_socket());
    for _ in 0..30 {
        let (status, _, body) = call(Some(&format!("orders:{password}")));
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains("V3WithInflection") && body.contains("121.0"),
            "the requirement and the package: {body}"
        );
    }
    let after = traffic::haproxy_sessions(&site.stats_socket());
    for server in ["server1", "server2", "server3"] {
        assert!(
            after.get(server).copied().unwrap_or(0) > before.get(server).copied().unwrap_or(0),
            "{server} answered the channel: {before:?} {after:?}"
        );
    }
    assert_eq!(call(None).0, 401);
    assert_eq!(call(Some("orders:not-the-password")).0, 401);
    // The job runs: the scheduler's job log (the agent's, `logs/muster-jobs.log`) says so at
    // every run.
    let job_log = site
        .components_of("admin")
        .join("scheduler-scheduler/logs/muster-jobs.log");
    wait_for(
        "the scheduler job to run three times",
        PATIENCE,
        POLL,
        || {
            let runs = std::fs::read_to_string(&job_log)
                .unwrap_or_default()
                .matches("Executing `muster.orders.every-2s`")
                .count();
            async move { (runs >= 3).then_some(()) }
        },
    )
    .await
    .unwrap();
    assert_eq!(
        logs_with(site.scratch.path(), password),
        Vec::<PathBuf>::new(),
        "the channel's password is in no log"
    );
    // The job leaves the file: deleted through Zato (from the ODB and the scheduler), it runs no
    // more, while the scheduler's heartbeat goes on.
    let without_job = std::fs::read_to_string(&api)
        .unwrap()
        .split("\n\nscheduler:")
        .next()
        .unwrap()
        .to_owned();
    std::fs::write(&api, format!("{without_job}\n")).unwrap();
    let config = deploy_config();
    let scheduler_dir = site.components_of("admin").join("scheduler-scheduler");
    wait_for("the scheduler to delete the job", PATIENCE, POLL, || {
        let deleted = !logs_with(&scheduler_dir, "Deleting job muster.orders.every-2s").is_empty();
        async move { deleted.then_some(()) }
    })
    .await
    .unwrap();
    let runs = |name: &str| {
        std::fs::read_to_string(&job_log)
            .unwrap_or_default()
            .matches(&format!("Executing `{name}`"))
            .count()
    };
    let (job_runs, heartbeats) = (
        runs("muster.orders.every-2s"),
        runs("muster.scheduler.heartbeat"),
    );
    wait_for("two more heartbeats (every 5 s)", PATIENCE, POLL, || {
        let beat = runs("muster.scheduler.heartbeat") >= heartbeats + 2;
        async move { beat.then_some(()) }
    })
    .await
    .unwrap();
    assert_eq!(
        runs("muster.orders.every-2s"),
        job_runs,
        "the removed job runs no more"
    );
    assert!(
        site.coordinator
            .json(&["component", "list", "--cluster", "prod"])
            .as_array()
            .unwrap()
            .iter()
            .any(|component| component["config_revision"] == config.as_str()),
        "the revision without the job is imported"
    );
    assert_eq!(
        call(Some(&format!("orders:{password}"))).0,
        200,
        "the channel stays"
    );

    // A job (every second) keeps running when the scheduler's host restarts its agent, and when
    // the scheduler is re-pointed at another server (its server's host drained).
    let everywhere = site.scratch.path().to_owned();
    let marker = a_job_reaches_a_server(
        &site.hosts["app-1"],
        &site.zato,
        &site.components_of("app-1").join("server-server1"),
        &everywhere,
    )
    .await;
    let scheduler_pid = || {
        std::fs::read_to_string(scheduler_dir.join("pidfile"))
            .ok()
            .and_then(|pid| pid.trim().parse::<i32>().ok())
    };
    let before = scheduler_pid();
    let admin = site.agents.get_mut("admin").unwrap();
    assert!(admin.stop().unwrap().success());
    admin.start();
    the_job_runs_on(&everywhere, &marker, "the scheduler host's agent restarted").await;
    assert_eq!(
        scheduler_pid(),
        before,
        "the agent's restart left the scheduler running"
    );
    let target = site.coordinator.json(&["cluster", "show", "prod"])["scheduler_target"]
        .as_str()
        .unwrap()
        .to_owned();
    let target_host = format!("app-{}", target.trim_start_matches("server"));
    site.coordinator.ok(&["host", "drain", &target_host]);
    wait_for("the scheduler to point elsewhere", PATIENCE, POLL, || {
        let now = site.coordinator.json(&["cluster", "show", "prod"])["scheduler_target"]
            .as_str()
            .map(str::to_owned);
        let moved = now.filter(|now| !now.is_empty() && *now != target);
        async move { moved }
    })
    .await
    .unwrap();
    wait_for("the re-pointed scheduler's restart", PATIENCE, POLL, || {
        let restarted = scheduler_pid().is_some_and(|pid| Some(pid) != before);
        async move { restarted.then_some(()) }
    })
    .await
    .unwrap();
    the_job_runs_on(&everywhere, &marker, "the scheduler was re-pointed").await;
    // The scheduler's host cut off the network until the coordinator marks it down, then healed.
    site.network.cut(&site.hosts["admin"]);
    wait_for("the scheduler's host marked down", PATIENCE, POLL, || {
        let down = site.coordinator.json(&["host", "show", "admin"])["state"] == "down";
        async move { down.then_some(()) }
    })
    .await
    .unwrap();
    site.network.heal(&site.hosts["admin"]);
    the_job_runs_on(
        &everywhere,
        &marker,
        "the scheduler's host was cut off and healed",
    )
    .await;
    // The scheduler's host switched off (every process of it killed) and booted: its agent
    // starts again and brings the scheduler back.
    kill_everything_in(&site.hosts["admin"]);
    if let Some(admin) = site.agents.get_mut("admin") {
        admin.kill();
        admin.start();
    }
    the_job_runs_on(&everywhere, &marker, "the scheduler's host was rebooted").await;
    site.coordinator.ok(&["host", "undrain", &target_host]);
    site.all_healthy(6).await;
    site.backend_is(&[("server1", "UP"), ("server2", "UP"), ("server3", "UP")])
        .await;

    // Removed: stopped, archived, out of the backend and out of Zato's ODB.
    site.coordinator.ok(&[
        "remove",
        "server",
        "--cluster",
        "prod",
        "--host",
        "app-3",
        "--name",
        "server3",
    ]);
    site.backend_is(&[("server1", "UP"), ("server2", "UP")])
        .await;
    wait_for("server3's row to leave the ODB", PATIENCE, POLL, || async {
        let (_, servers) = site.odb_rows().await;
        (servers == ["server1", "server2"]).then_some(())
    })
    .await
    .unwrap();
    // Added again under the same name.
    site.coordinator.ok(&[
        "create",
        "server",
        "--cluster",
        "prod",
        "--host",
        "app-3",
        "--name",
        "server3",
    ]);
    site.all_healthy(6).await;
    site.backend_is(&[("server1", "UP"), ("server2", "UP"), ("server3", "UP")])
        .await;
    site.assert_served_by(&["server3"]);

    // Scale-in as an autoscaling group does it: app-3's instance goes away with everything on it,
    // and the host is removed. Nothing removed server3's row from the ODB.
    if let Some(mut agent) = site.agents.remove("app-3") {
        agent.kill();
    }
    kill_everything_in(&site.hosts["app-3"]);
    site.coordinator.ok(&["host", "remove", "app-3", "--force"]);
    site.backend_is(&[("server1", "UP"), ("server2", "UP")])
        .await;
    let (_, servers) = site.odb_rows().await;
    assert_eq!(servers, ["server1", "server2", "server3"], "a stale row");

    // A new host auto-joins with a server token and gets the freed name, server3. Its agent is
    // killed with its `zato create server` at the worst point: `.zato-info` written, Zato's
    // commit of the server row under way (held by the test in PostgreSQL), then started again.
    let host = site.network.add_host("app-4");
    site.hosts.insert("app-4".to_owned(), host);
    let token = site.coordinator.join_token("prod", &["server"], 1);
    // Requests through the load balancer all along the join: none fails.
    let load = LoadLoop::start(&site.hosts["client"], site.frontend());
    site.hold_server_commits(Some(15)).await;
    site.start_agent("app-4", &token);
    let marker = site
        .components_of("app-4")
        .join(".creating-server-server3.pid");
    let half_made = site
        .components_of("app-4")
        .join(".creating-server-server3/.zato-info");
    let create_pid = wait_for(
        "app-4's zato create server to write .zato-info and commit",
        PATIENCE,
        Duration::from_millis(20),
        || {
            // Its first attempt fails on app-3's stale row, which the agent then removes; the
            // second is the one whose commit the test holds.
            let pid = std::fs::read_to_string(&marker)
                .ok()
                .and_then(|text| text.trim().parse::<i32>().ok())
                .filter(|_| half_made.exists());
            let site = &site;
            async move {
                match pid {
                    Some(pid) if site.commit_held().await => Some(pid),
                    _ => None,
                }
            }
        },
    )
    .await
    .unwrap();
    site.agents.get_mut("app-4").unwrap().kill();
    let killed = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(create_pid),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert!(
        killed.is_ok(),
        "the create was still under way when it was killed: {killed:?}"
    );
    site.hold_server_commits(None).await;
    let (_, servers) = site.odb_rows().await;
    assert_eq!(
        servers,
        ["server1", "server2"],
        "the killed create committed no row (the stale one went before it)"
    );
    site.agents.get_mut("app-4").unwrap().start();
    site.all_healthy(6).await;
    site.backend_is(&[("server1", "UP"), ("server2", "UP"), ("server3", "UP")])
        .await;
    // It runs the cluster's services: its agent found them deployed, and until then its load
    // balancer kept it out of rotation.
    prod_servers_run(&site.coordinator, 3, &third).await;
    site.assert_served_by(&["server1", "server2", "server3"]);
    let (answered, failed) = load.finish();
    println!("{answered} requests through the load balancer answered during app-4's join");
    assert_eq!(
        failed,
        Vec::<String>::new(),
        "no request failed during the join"
    );
    let answer = orders_answer(
        &site.hosts["app-4"],
        &site.zato,
        &site.components_of("app-4").join("server-server3"),
    );
    assert!(
        answer.contains("V3WithInflection"),
        "the joined server: {answer}"
    );
    let (_, servers) = site.odb_rows().await;
    assert_eq!(servers, ["server1", "server2", "server3"]);
    let status = site.coordinator.json(&["component", "list"]);
    let server3 = status
        .as_array()
        .unwrap()
        .iter()
        .find(|component| component["name"] == "server3")
        .unwrap();
    assert_eq!(server3["host"], "app-4", "{server3}");

    // A server of a name that still runs behind a partition keeps its row: app-4 cut off, its
    // server3 unassigned and assigned to app-1 (beside server1). app-1's agent does not delete
    // the row Zato holds for server3 (that would break the server still running there) and says
    // why; once app-4 is back, its agent stops server3 cleanly and app-1's is created.
    site.network.cut(&site.hosts["app-4"]);
    site.coordinator.ok(&[
        "remove",
        "server",
        "--cluster",
        "prod",
        "--host",
        "app-4",
        "--name",
        "server3",
    ]);
    site.coordinator.ok(&[
        "create",
        "server",
        "--cluster",
        "prod",
        "--host",
        "app-1",
        "--name",
        "server3",
        "--port",
        "17011",
    ]);
    let reason = wait_for("app-1's agent to say why it waits", PATIENCE, POLL, || {
        let reason = site
            .coordinator
            .json(&["component", "list", "--cluster", "prod"])
            .as_array()
            .unwrap()
            .iter()
            .find(|component| component["name"] == "server3")
            .and_then(|component| component["reason"].as_str().map(str::to_owned))
            .filter(|reason| reason.contains("network partition"));
        async move { reason }
    })
    .await
    .unwrap();
    println!("server3 on app-1 while app-4 is cut off: {reason}");
    let (_, servers) = site.odb_rows().await;
    assert_eq!(
        servers,
        ["server1", "server2", "server3"],
        "the row is kept"
    );
    assert!(
        !site.components_of("app-1").join("server-server3").exists(),
        "not created meanwhile"
    );
    site.network.heal(&site.hosts["app-4"]);
    site.all_healthy(6).await;
    site.backend_is(&[("server1", "UP"), ("server2", "UP"), ("server3", "UP")])
        .await;
    let status = site.coordinator.json(&["component", "list"]);
    let server3 = status
        .as_array()
        .unwrap()
        .iter()
        .find(|component| component["name"] == "server3")
        .unwrap();
    assert_eq!(server3["host"], "app-1", "{server3}");
    let answer = orders_answer(
        &site.hosts["app-1"],
        &site.zato,
        &site.components_of("app-1").join("server-server3"),
    );
    assert!(
        answer.contains("V3WithInflection"),
        "server3 on app-1: {answer}"
    );

    // The ODB replaced by an empty one (the database server restored empty): a server's agent
    // reports it and the servers serve on with what they loaded; the cluster's file applied
    // again rebuilds the cluster on it, and everything comes back: the servers (one first), the
    // scheduler, the dashboard, the services, the Python dependencies and the configuration.
    let channel = |credentials: Option<&str>| {
        orders_channel(&site.hosts["client"], site.frontend(), credentials)
    };
    let statuses = || {
        let mut statuses = BTreeMap::new();
        for _ in 0..12 {
            let (status, _, body) = channel(Some(&format!("orders:{password}")));
            let entry: &mut (usize, String) = statuses.entry(status).or_default();
            entry.0 += 1;
            entry.1 = body.chars().take(300).collect();
        }
        statuses
    };
    println!("the channel before the ODB is replaced: {:?}", statuses());
    site.database.replace_with_empty().await;
    wait_for("a server to report the ODB empty", PATIENCE, POLL, || {
        let shown = site.coordinator.json(&["cluster", "show", "prod"]);
        async move { (shown["odb_empty"] == true).then_some(()) }
    })
    .await
    .unwrap();
    println!("the channel on the empty ODB: {:?}", statuses());
    for host in ["app-1", "app-2"] {
        for log in logs_with(&site.components_of(host), "HTTP_SEPhaany") {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().filter(|line| line.contains("rror")).collect();
            println!(
                "{}: {:?}",
                log.display(),
                &lines[lines.len().saturating_sub(6)..]
            );
        }
    }
    let exported = site.scratch.path().join("exported");
    site.coordinator.ok(&[
        "get",
        "cluster",
        "prod",
        "--dir",
        exported.to_str().unwrap(),
    ]);
    // The env file is the operator's (a secret `muster get` never writes).
    std::fs::copy(&env, exported.join("config/env.ini")).unwrap();
    let load = LoadLoop::start(&site.hosts["client"], site.frontend());
    let sent = Instant::now();
    let applied = site.coordinator.ok(&[
        "apply",
        "--file",
        exported.join("cluster.toml").to_str().unwrap(),
    ]);
    assert!(
        applied.contains("rebuilding cluster prod on its empty ODB (generation 1)"),
        "{applied}"
    );
    wait_for(
        "every component created again, healthy",
        PATIENCE,
        POLL,
        || {
            let listed = site
                .coordinator
                .json(&["component", "list", "--cluster", "prod"]);
            let done = listed.as_array().is_some_and(|all| {
                all.len() == 6
                    && all.iter().all(|component| {
                        component["healthy"] == true
                            && (component["role"] == "load-balancer" || component["odb_epoch"] == 1)
                    })
            });
            async move { done.then_some(()) }
        },
    )
    .await
    .unwrap_or_else(|error| panic!("{error}\n{}", site.coordinator.ok(&["status"])));
    prod_servers_run(&site.coordinator, 3, &third).await;
    // Imported on one server, the channel reaches the others as Zato's own broadcast: a request
    // meanwhile may meet a server half-way through adding it (Zato 3.2 matches a request without
    // its lock: the channel without its security, a 500).
    wait_for(
        "the configuration imported again, on every server",
        PATIENCE,
        POLL,
        || {
            let answering = (0..12).all(|_| channel(Some(&format!("orders:{password}"))).0 == 200);
            async move { answering.then_some(()) }
        },
    )
    .await
    .unwrap();
    site.backend_is(&[("server1", "UP"), ("server2", "UP"), ("server3", "UP")])
        .await;
    let rebuilt_in = sent.elapsed();
    let (answered, failed) = load.finish();
    println!(
        "figure: the cluster rebuilt on an empty ODB (bootstrap, 3 servers, scheduler, dashboard, \
         services, Python dependencies, configuration) {rebuilt_in:?} after `muster apply`; {} \
         of {} pings through the load balancer answered meanwhile",
        answered,
        answered + failed.len()
    );
    let (clusters, servers) = site.odb_rows().await;
    assert_eq!(clusters, ["prod"]);
    assert_eq!(servers, ["server1", "server2", "server3"]);
    let before = traffic::haproxy_sessions(&site.stats_socket());
    let mut failures = Vec::new();
    for _ in 0..30 {
        let (status, _, body) = channel(Some(&format!("orders:{password}")));
        if status != 200 || !body.contains("V3WithInflection") {
            let cid = body
                .split("\"cid\":\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_default()
                .to_owned();
            let context = if cid.is_empty() {
                String::new()
            } else {
                log_context(site.scratch.path(), &cid)
            };
            failures.push(format!("{status} {body}\n{context}"));
        }
    }
    assert_eq!(
        failures,
        Vec::<String>::new(),
        "the channel on the rebuilt ODB"
    );
    let after = traffic::haproxy_sessions(&site.stats_socket());
    for server in ["server1", "server2", "server3"] {
        assert!(
            after.get(server).copied().unwrap_or(0) > before.get(server).copied().unwrap_or(0),
            "{server} answered the channel on the rebuilt ODB: {before:?} {after:?}"
        );
    }
    assert_eq!(channel(None).0, 401);
    let login = site
        .coordinator
        .json(&["cluster", "dashboard-login", "prod"]);
    assert!(
        dashboard_login(
            &site.hosts["client"],
            dashboard,
            login["username"].as_str().unwrap(),
            login["password"].as_str().unwrap(),
        ),
        "the dashboard made again on the rebuilt ODB takes its login"
    );
    let heartbeats = runs("muster.scheduler.heartbeat");
    wait_for("the rebuilt scheduler's heartbeat", PATIENCE, POLL, || {
        let beat = runs("muster.scheduler.heartbeat") > heartbeats;
        async move { beat.then_some(()) }
    })
    .await
    .unwrap();
    assert_eq!(
        logs_with(site.scratch.path(), password),
        Vec::<PathBuf>::new(),
        "the channel's password is in no log"
    );
}
