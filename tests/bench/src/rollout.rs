//! `muster-rollout-bench`: a rolling restart of a quickstart's servers under load, as an operator
//! runs one. It starts `muster quickstart` with N servers (the real Zato with `--zato-bin`,
//! mock-zato with `--demo`), sends a steady stream of requests through its load balancer (HAProxy),
//! runs `muster rollout restart`, and watches HAProxy's view of each server until `muster rollout
//! status` says every server restarted and `muster wait` that they are back. With
//! `--kill-coordinator` it kills the coordinator (SIGKILL) once the first server has restarted and
//! starts it again (`muster quickstart start`): the rollout goes on where it was. With `--set
//! NAME=VALUE` the rollout is new server settings (`muster configure server --set`), and each
//! server's worker processes are counted before and after it; `--zato-install NAME=PATH` gives
//! the agent a second installation first (for `--set zato.install=NAME`); with `--auto-revert`
//! (and `--healthy-deadline`) a setting no server becomes healthy with is undone, and the
//! benchmark ends once the settings before are back.
//!
//! It prints the rollout's time, the requests answered and failed, how long each server was out of
//! the load balancer's rotation (not UP in HAProxy) and the most out at once, and how many
//! servers' processes were replaced; `--json FILE` writes them too. It asserts nothing about
//! speed: the figures go into `packaging/docs/benchmarks.md`. It fails only when the rollout does
//! not finish within `--timeout`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use muster_testkit::traffic;

/// The quickstart's cluster.
const CLUSTER: &str = "quickstart";
/// The quickstart's load balancer.
const FRONTEND: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
    muster_proto::haproxy::DEFAULT_FRONTEND_PORT,
);
/// How often HAProxy's view is read.
const POLL: Duration = Duration::from_millis(50);
/// How often the rollout's progress is read (every this many polls).
const STATUS_EVERY: u32 = 10;
/// The longest a request stream runs, even if nobody stops it.
const LOAD_LIMIT: Duration = Duration::from_secs(1800);

/// Roll a quickstart's servers under load and measure it.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// The quickstart's servers.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=32))]
    servers: u16,
    /// The zato command of the real Zato.
    #[arg(long, required_unless_present = "demo")]
    zato_bin: Option<PathBuf>,
    /// mock-zato instead of Zato.
    #[arg(long, conflicts_with = "zato_bin")]
    demo: bool,
    /// Request streams through the load balancer (each one request at a time).
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// The cluster's `max_unavailable` (unset: the default, 1).
    #[arg(long)]
    max_unavailable: Option<u32>,
    /// Kill the coordinator once the first server has restarted, and start it again.
    #[arg(long)]
    kill_coordinator: bool,
    /// A role to restart (`muster rollout restart --role`: server, web-admin, load-balancer,
    /// scheduler, all; repeat for several) [default: server].
    #[arg(long = "role", value_name = "ROLE")]
    roles: Vec<String>,
    /// Roll new server settings instead of a plain restart (`muster configure server --set`;
    /// repeat for several), such as main.gunicorn_workers=2.
    #[arg(long = "set", value_name = "NAME=VALUE", conflicts_with = "roles")]
    settings: Vec<String>,
    /// The cluster's healthy deadline (unset: the default, 5m), such as 60s.
    #[arg(long)]
    healthy_deadline: Option<String>,
    /// A rollout of settings that a server fails is undone (`auto_revert`): the benchmark then
    /// ends once the settings before are back on every server.
    #[arg(long)]
    auto_revert: bool,
    /// A second Zato installation for the agent, NAME=PATH of its `zato` ([zato_installs] in
    /// agent.toml; the agent is restarted with it before the rollout, its components run on),
    /// for `--set zato.install=NAME`.
    #[arg(long, value_name = "NAME=PATH")]
    zato_install: Option<String>,
    /// The longest the rollout may take.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// The quickstart's directory [default: a new temporary one].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Where muster is (default: beside this program).
    #[arg(long)]
    muster_bin: Option<PathBuf>,
    /// Write the results as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// What a rollout measured.
#[derive(Debug, serde::Serialize)]
struct Results {
    servers: u16,
    /// The roles restarted (`--role`; empty: the servers).
    roles: Vec<String>,
    /// The server settings rolled out (`--set`; empty: a plain rolling restart).
    settings: Vec<String>,
    /// Each server's worker processes (its gunicorn master's children) before the rollout and
    /// after it: one more for each `main.gunicorn_workers` added (mock-zato's servers fork none).
    workers_before: BTreeMap<String, usize>,
    workers_after: BTreeMap<String, usize>,
    /// The command lines of each server's process after the rollout and of its parent (a real
    /// server's pidfile names its gunicorn master, which Zato's `py` of its installation
    /// started; mock-zato's process names the installation itself).
    started_by: BTreeMap<String, String>,
    /// The cluster's server settings once the rollout is over.
    settings_after: BTreeMap<String, String>,
    /// Why `auto_revert` undid the rollout (`muster rollout status`), when it did.
    reverted: Option<String>,
    zato: &'static str,
    max_unavailable: u32,
    quickstart_seconds: f64,
    rollout_seconds: f64,
    answered: u64,
    failed: u64,
    /// The first failures, described.
    failures: Vec<String>,
    most_out_at_once: usize,
    out_of_rotation_seconds: BTreeMap<String, f64>,
    processes_replaced: usize,
    /// How many times each Zato component's process changed (from its pidfile, read at every
    /// poll): 1 for each server in a rollout that went on where it was; the scheduler and the
    /// dashboard are not part of a rolling restart of the servers.
    restarts: BTreeMap<String, u32>,
    /// The components in the order of their first restart (a load balancer's: its HAProxy's
    /// reload, a new worker).
    restart_order: Vec<String>,
    coordinator_killed: bool,
    /// From the kill until `muster rollout status` answered again.
    coordinator_down_seconds: Option<f64>,
}

/// Stops the quickstart however the benchmark ends.
struct Quickstart {
    muster: PathBuf,
    dir: PathBuf,
}

impl Quickstart {
    fn muster(&self, args: &[&str]) -> anyhow::Result<Output> {
        Command::new(&self.muster)
            .args(args)
            .env("MUSTER_DATA_DIR", self.dir.join("coordinator"))
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run {}", self.muster.display()))
    }

    /// `muster ARGS`, which must succeed: its standard output.
    fn ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = self.muster(args)?;
        if !output.status.success() {
            bail!(
                "muster {} failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Restarts the quickstart's agent with a second Zato installation, `NAME=PATH`, in its
    /// agent.toml (its components run on), and waits until it reports it.
    async fn add_install(&self, install: &str) -> anyhow::Result<()> {
        let (name, path) = install
            .split_once('=')
            .with_context(|| format!("--zato-install {install:?}: expected NAME=PATH"))?;
        let pid = self
            .pid(Path::new("agent.pid"))
            .context("the agent's pid")?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid)?),
            nix::sys::signal::Signal::SIGTERM,
        )?;
        let gone = Instant::now();
        while Path::new(&format!("/proc/{pid}")).exists()
            && gone.elapsed() < Duration::from_secs(30)
            && !zombie(pid)
        {
            tokio::time::sleep(POLL).await;
        }
        let config = self.dir.join("agent.toml");
        let mut text = std::fs::read_to_string(&config)?;
        text.push_str(&format!("\n[zato_installs]\n{name} = {path:?}\n"));
        std::fs::write(&config, text)?;
        let status = self.start_again()?.wait()?;
        if !status.success() {
            bail!("muster quickstart start failed ({status})");
        }
        let reported = Instant::now();
        loop {
            let shown: serde_json::Value =
                serde_json::from_str(&self.ok(&["-o", "json", "host", "show", "local"])?)?;
            let installs = shown["zato_installs"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if installs.iter().any(|known| known.as_str() == Some(name)) {
                eprintln!("the agent runs with installation {name} ({path})");
                return Ok(());
            }
            if reported.elapsed() > Duration::from_secs(60) {
                bail!("the agent did not report installation {name} within 60 s");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// `muster quickstart start`, in the background, its progress on this program's stderr.
    fn start_again(&self) -> anyhow::Result<Child> {
        Command::new(&self.muster)
            .args(["quickstart", "start", "--dir"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .context("run muster quickstart start")
    }

    fn stats_socket(&self) -> PathBuf {
        self.dir
            .join("zato")
            .join(CLUSTER)
            .join("load-balancer-load-balancer/stats.sock")
    }

    /// The current HAProxy worker of the load balancer (a reload starts another).
    fn balancer_worker(&self) -> Option<u32> {
        let master_socket = self
            .dir
            .join("zato")
            .join(CLUSTER)
            .join("load-balancer-load-balancer/master.sock");
        traffic::haproxy_workers(&master_socket).first().copied()
    }

    fn pid(&self, file: &Path) -> Option<u32> {
        std::fs::read_to_string(self.dir.join(file))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The pid of each Zato component's process, by name (`server1`…, `scheduler`, `web-admin`),
    /// from its pidfile, and the load balancer's current HAProxy worker (`load-balancer`).
    fn component_pids(&self, servers: u16) -> BTreeMap<String, Option<u32>> {
        let names = (1..=servers)
            .map(|index| (format!("server{index}"), format!("server-server{index}")))
            .chain([
                ("scheduler".to_owned(), "scheduler-scheduler".to_owned()),
                ("web-admin".to_owned(), "web-admin-web-admin".to_owned()),
            ]);
        names
            .map(|(name, directory)| {
                let pidfile = Path::new("zato")
                    .join(CLUSTER)
                    .join(directory)
                    .join("pidfile");
                (name, self.pid(&pidfile))
            })
            .chain([("load-balancer".to_owned(), self.balancer_worker())])
            .collect()
    }
}

impl Drop for Quickstart {
    fn drop(&mut self) {
        eprintln!("stopping the quickstart in {}", self.dir.display());
        let _ = Command::new(&self.muster)
            .args(["quickstart", "stop", "--dir"])
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
    }
}

/// Requests `/zato/ping` through the load balancer from `clients` threads until stopped: an
/// answer is a 200 that says `ZATO_OK` (the real Zato's and mock-zato's ping both do).
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    tally: Arc<Mutex<(u64, u64, Vec<String>)>>,
}

impl Load {
    fn start(clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new((0, 0, Vec::new())));
        let threads = (0..clients)
            .map(|_| {
                let (stop, tally) = (stop.clone(), tally.clone());
                std::thread::spawn(move || {
                    let started = Instant::now();
                    while !stop.load(Ordering::Relaxed) && started.elapsed() < LOAD_LIMIT {
                        let answer = traffic::get(FRONTEND, "/zato/ping");
                        let mut tally = tally.lock().expect("the tally");
                        match &answer {
                            Some((200, body)) if body.contains("ZATO_OK") => tally.0 += 1,
                            _ => {
                                tally.1 += 1;
                                if tally.2.len() < 10 {
                                    let after = started.elapsed().as_secs_f64();
                                    tally.2.push(format!("after {after:.3} s: {answer:?}"));
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            threads,
            tally,
        }
    }

    /// Stops the clients: requests answered, failed, and the first failures.
    fn finish(mut self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        self.tally.lock().expect("the tally").clone()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let muster = match &args.muster_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("this program's directory")?
            .join("muster"),
    };
    let scratch = tempfile::tempdir()?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| scratch.path().join("qs"));
    let results = run(&args, muster, dir).await?;
    print_table(&results);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&results)?)
            .with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

async fn run(args: &Args, muster: PathBuf, dir: PathBuf) -> anyhow::Result<Results> {
    let servers = args.servers.to_string();
    let mut quickstart_args = vec![
        "quickstart".to_owned(),
        "--dir".to_owned(),
        dir.display().to_string(),
        "--servers".to_owned(),
        servers,
    ];
    match &args.zato_bin {
        Some(zato) => quickstart_args.extend(["--zato-bin".to_owned(), zato.display().to_string()]),
        None => quickstart_args.push("--demo".to_owned()),
    }
    eprintln!("muster {}", quickstart_args.join(" "));
    let started = Instant::now();
    let status = Command::new(&muster)
        .args(&quickstart_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("run {}", muster.display()))?;
    let quickstart = Quickstart { muster, dir };
    if !status.success() {
        bail!("muster quickstart failed ({status})");
    }
    let quickstart_seconds = started.elapsed().as_secs_f64();
    let mut strategy = vec!["configure", "rollout", "--cluster", CLUSTER];
    let max_unavailable = args.max_unavailable.map(|max| max.to_string());
    if let Some(max) = &max_unavailable {
        strategy.extend(["--max-unavailable", max.as_str()]);
    }
    if let Some(deadline) = &args.healthy_deadline {
        strategy.extend(["--healthy-deadline", deadline.as_str()]);
    }
    if args.auto_revert {
        strategy.extend(["--auto-revert", "true"]);
    }
    if strategy.len() > 4 {
        quickstart.ok(&strategy)?;
    }
    if let Some(install) = &args.zato_install {
        quickstart.add_install(install).await?;
    }
    let before = quickstart.component_pids(args.servers);
    let workers_before = workers(&before);

    eprintln!(
        "{} request streams through the load balancer; rolling restart of {} servers",
        args.clients, args.servers
    );
    let load = Load::start(args.clients);
    let started = Instant::now();
    let mut restart_args = vec!["-o", "json", "rollout", "restart", "--cluster", CLUSTER];
    for role in &args.roles {
        restart_args.extend(["--role", role.as_str()]);
    }
    if !args.settings.is_empty() {
        restart_args = vec!["-o", "json", "configure", "server", "--cluster", CLUSTER];
        for setting in &args.settings {
            restart_args.extend(["--set", setting.as_str()]);
        }
    }
    let rollout: serde_json::Value = serde_json::from_str(&quickstart.ok(&restart_args)?)?;
    eprintln!("rolling restart: {rollout}");
    let mut watched = watch(args, &quickstart, started).await?;
    let waited = quickstart.muster(&["wait", "--cluster", CLUSTER, "--timeout", "5m"])?;
    let progress: serde_json::Value = serde_json::from_str(&quickstart.ok(&[
        "-o",
        "json",
        "rollout",
        "status",
        "--cluster",
        CLUSTER,
    ])?)?;
    let reverted = progress["revert_reason"]
        .as_str()
        .filter(|reason| !reason.is_empty())
        .map(str::to_owned);
    // After a revert `muster wait` says so and fails; otherwise it must succeed.
    let undone = args.auto_revert && reverted.is_some();
    if !(waited.status.success() || undone) {
        bail!(
            "muster wait failed: {}",
            String::from_utf8_lossy(&waited.stderr)
        );
    }
    // A process's pidfile may be written a while after it started: read them once more.
    watched
        .pids
        .observe(quickstart.component_pids(args.servers), started.elapsed());
    let rollout_seconds = started.elapsed().as_secs_f64();
    let (answered, failed, failures) = load.finish();
    let after = quickstart.component_pids(args.servers);
    let workers_after = workers(&after);
    let started_by = after
        .iter()
        .filter(|(name, _)| name.starts_with("server"))
        .filter_map(|(name, pid)| Some((name.clone(), parent_command(*pid)?)))
        .collect();
    let shown: serde_json::Value =
        serde_json::from_str(&quickstart.ok(&["-o", "json", "cluster", "show", CLUSTER])?)?;
    let settings_after = serde_json::from_value(shown["server_settings"].clone())?;
    let processes_replaced = before
        .iter()
        .filter(|(name, before)| {
            let after = after.get(*name).copied().flatten();
            name.starts_with("server") && before.is_some() && after.is_some() && **before != after
        })
        .count();
    let max_unavailable = rollout["max_unavailable"]
        .as_u64()
        .and_then(|max| u32::try_from(max).ok())
        .context("the rollout's max_unavailable")?;
    Ok(Results {
        servers: args.servers,
        roles: args.roles.clone(),
        settings: args.settings.clone(),
        workers_before,
        workers_after,
        started_by,
        settings_after,
        reverted,
        zato: if args.demo { "mock-zato" } else { "Zato" },
        max_unavailable,
        quickstart_seconds,
        rollout_seconds,
        answered,
        failed,
        failures,
        most_out_at_once: watched.most_out,
        out_of_rotation_seconds: watched
            .out_for
            .into_iter()
            .map(|(server, out)| (server, out.as_secs_f64()))
            .collect(),
        processes_replaced,
        restart_order: watched.pids.order(),
        restarts: watched.pids.restarts,
        coordinator_killed: args.kill_coordinator,
        coordinator_down_seconds: watched.coordinator_down.map(|down| down.as_secs_f64()),
    })
}

/// A process that ended and was not reaped (its parent, or this machine's PID 1, never waited).
fn zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_owned();
            Some(state == "Z")
        })
        .unwrap_or(true)
}

/// The command lines of `pid` and of its parent: `COMMAND; parent: COMMAND`.
fn parent_command(pid: Option<u32>) -> Option<String> {
    let pid = pid?;
    let command = |pid: &str| {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        String::from_utf8_lossy(&cmdline)
            .replace('\0', " ")
            .trim()
            .to_owned()
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let parent = stat
        .rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .to_owned();
    Some(format!(
        "{}; parent: {}",
        command(&pid.to_string()),
        command(&parent)
    ))
}

/// Each server's worker processes: the children of the process its pidfile names.
fn workers(pids: &BTreeMap<String, Option<u32>>) -> BTreeMap<String, usize> {
    pids.iter()
        .filter(|(name, _)| name.starts_with("server"))
        .map(|(name, pid)| {
            let children = pid.map_or(0, muster_testkit::rollout_bench::children_of);
            (name.clone(), children)
        })
        .collect()
}

/// Each component's process as its pidfile (a load balancer's: HAProxy's current worker) says,
/// read again and again: how many times it changed, and the first new pid of each (pids grow, so
/// their order is the order the new processes started in: a pidfile may be written a while after
/// its process starts).
struct PidWatch {
    seen: BTreeMap<String, Option<u32>>,
    restarts: BTreeMap<String, u32>,
    first_new: BTreeMap<String, u32>,
}

impl PidWatch {
    fn new(now: BTreeMap<String, Option<u32>>) -> PidWatch {
        PidWatch {
            restarts: now.keys().map(|name| (name.clone(), 0)).collect(),
            seen: now,
            first_new: BTreeMap::new(),
        }
    }

    /// Takes in the pids read `after` the rollout started.
    fn observe(&mut self, now: BTreeMap<String, Option<u32>>, after: Duration) {
        for (name, pid) in now {
            let seen = self.seen.entry(name.clone()).or_default();
            let (Some(new), Some(old)) = (pid, *seen) else {
                if pid.is_some() {
                    *seen = pid;
                }
                continue;
            };
            if new != old {
                eprintln!(
                    "{:.1} s: {name} restarted (pid {old} -> {new})",
                    after.as_secs_f64()
                );
                self.first_new.entry(name.clone()).or_insert(new);
                *self.restarts.entry(name).or_default() += 1;
                *seen = pid;
            }
        }
    }

    /// The components that restarted, in the order their new processes started.
    fn order(&self) -> Vec<String> {
        let mut order: Vec<(&u32, &String)> = self
            .first_new
            .iter()
            .map(|(name, pid)| (pid, name))
            .collect();
        order.sort();
        order.into_iter().map(|(_, name)| name.clone()).collect()
    }
}

/// What the watch of a rollout saw.
struct Watched {
    most_out: usize,
    out_for: BTreeMap<String, Duration>,
    pids: PidWatch,
    coordinator_down: Option<Duration>,
}

/// Reads HAProxy's view of the servers every [`POLL`] until `muster rollout status` says every
/// server restarted and HAProxy has them all UP again; kills and restarts the coordinator on the
/// way when asked.
async fn watch(args: &Args, quickstart: &Quickstart, started: Instant) -> anyhow::Result<Watched> {
    let stats_socket = quickstart.stats_socket();
    let mut most_out = 0;
    let mut out_since: BTreeMap<String, Instant> = BTreeMap::new();
    let mut out_for: BTreeMap<String, Duration> = BTreeMap::new();
    let mut restarted = 0;
    let mut killed_at: Option<Instant> = None;
    let mut coordinator_down = None;
    let mut starting_again: Option<Child> = None;
    let mut polls: u32 = 0;
    let mut pids = PidWatch::new(quickstart.component_pids(args.servers));
    // Servers restart unless --role leaves them out; the other roles are done once `rollout
    // status` has none of theirs left to restart.
    let servers_roll = args.roles.is_empty()
        || args
            .roles
            .iter()
            .any(|role| role == "server" || role == "all");
    let mut others_done = args.roles.iter().all(|role| role == "server");
    loop {
        if started.elapsed() > args.timeout {
            bail!(
                "the rollout did not finish within {:?}: {restarted}/{} restarted",
                args.timeout,
                args.servers
            );
        }
        let view = traffic::haproxy_servers(&stats_socket);
        for (name, status) in &view {
            if status.starts_with("UP") {
                if let Some(since) = out_since.remove(name) {
                    *out_for.entry(name.clone()).or_default() += since.elapsed();
                }
            } else {
                out_since.entry(name.clone()).or_insert_with(Instant::now);
            }
        }
        pids.observe(quickstart.component_pids(args.servers), started.elapsed());
        let up = view
            .values()
            .filter(|status| status.starts_with("UP"))
            .count();
        most_out = most_out.max(view.len() - up);
        if polls.is_multiple_of(STATUS_EVERY) {
            let progress =
                quickstart.muster(&["-o", "json", "rollout", "status", "--cluster", CLUSTER])?;
            if progress.status.success() {
                let progress: serde_json::Value = serde_json::from_slice(&progress.stdout)?;
                restarted = progress["restarted"].as_u64().unwrap_or(0);
                let others_were_done = others_done;
                others_done = progress["others"].as_array().is_some_and(|others| {
                    others.iter().all(|other| {
                        matches!(other["progress"].as_str(), Some("restarted" | "left out"))
                    })
                });
                if others_done && !others_were_done {
                    eprintln!(
                        "{:.1} s: every other role restarted: {}",
                        started.elapsed().as_secs_f64(),
                        progress["others"]
                    );
                }
                if let (Some(at), None) = (killed_at, coordinator_down) {
                    coordinator_down = Some(at.elapsed());
                    eprintln!("the coordinator answers again after {:?}", at.elapsed());
                }
            }
        }
        let first_done = if servers_roll {
            restarted >= 1
        } else {
            !pids.first_new.is_empty()
        };
        if args.kill_coordinator && killed_at.is_none() && first_done {
            let pid = quickstart
                .pid(Path::new("coordinator.pid"))
                .context("the coordinator's pid")?;
            eprintln!("{restarted} restarted: killing the coordinator (pid {pid})");
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(pid)?),
                nix::sys::signal::Signal::SIGKILL,
            )?;
            killed_at = Some(Instant::now());
            starting_again = Some(quickstart.start_again()?);
        }
        if let Some(child) = &mut starting_again
            && let Some(status) = child.try_wait()?
        {
            if !status.success() {
                bail!("muster quickstart start failed ({status})");
            }
            starting_again = None;
        }
        if (!servers_roll || restarted == u64::from(args.servers))
            && others_done
            && up == usize::from(args.servers)
            && starting_again.is_none()
        {
            break;
        }
        polls += 1;
        tokio::time::sleep(POLL).await;
    }
    for (name, since) in out_since {
        *out_for.entry(name).or_default() += since.elapsed();
    }
    Ok(Watched {
        most_out,
        out_for,
        pids,
        coordinator_down,
    })
}

fn print_table(results: &Results) {
    let rows: Vec<(String, String)> = [
        (
            "servers".to_owned(),
            format!("{} ({})", results.servers, results.zato),
        ),
        (
            "max_unavailable".to_owned(),
            results.max_unavailable.to_string(),
        ),
        (
            "quickstart".to_owned(),
            format!("{:.1} s", results.quickstart_seconds),
        ),
        (
            "rollout (until muster wait)".to_owned(),
            format!("{:.1} s", results.rollout_seconds),
        ),
        ("requests answered".to_owned(), results.answered.to_string()),
        ("requests failed".to_owned(), results.failed.to_string()),
        (
            "most out of rotation at once".to_owned(),
            results.most_out_at_once.to_string(),
        ),
        (
            "processes replaced".to_owned(),
            format!("{}/{}", results.processes_replaced, results.servers),
        ),
    ]
    .into_iter()
    .chain(
        results
            .out_of_rotation_seconds
            .iter()
            .map(|(server, seconds)| {
                (
                    format!("{server} out of rotation"),
                    format!("{seconds:.1} s"),
                )
            }),
    )
    .chain(
        results
            .restarts
            .iter()
            .map(|(server, restarts)| (format!("{server} restarts"), restarts.to_string())),
    )
    .chain(
        (!results.settings.is_empty())
            .then(|| ("settings rolled out".to_owned(), results.settings.join(" "))),
    )
    .chain(
        results
            .reverted
            .as_ref()
            .map(|reason| ("undone by auto_revert".to_owned(), reason.clone())),
    )
    .chain((!results.settings.is_empty()).then(|| {
        let after: Vec<String> = results
            .settings_after
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect();
        ("settings after".to_owned(), after.join(" "))
    }))
    .chain(results.workers_after.iter().map(|(server, after)| {
        let before = results.workers_before.get(server).copied().unwrap_or(0);
        (format!("{server} workers"), format!("{before} -> {after}"))
    }))
    .chain(
        (!results.restart_order.is_empty())
            .then(|| ("restart order".to_owned(), results.restart_order.join(", "))),
    )
    .chain(results.coordinator_down_seconds.map(|seconds| {
        (
            "coordinator killed, answered again after".to_owned(),
            format!("{seconds:.1} s"),
        )
    }))
    .collect();
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    println!("{:width$}  VALUE", "WHAT");
    for (name, value) in rows {
        println!("{name:width$}  {value}");
    }
    for failure in &results.failures {
        println!("failed: {failure}");
    }
}
