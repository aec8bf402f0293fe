//! `muster quickstart`: a whole Zato cluster on this host in one command.
//!
//! It checks everything it needs before it starts anything (the binaries, Zato or `--demo`,
//! HAProxy, free ports — naming what holds one —, an unused directory), then initializes a coordinator on SQLite in
//! `DIR/coordinator`, starts it and an agent in the background, assigns web-admin, a load balancer,
//! N servers and the scheduler to this host, and waits, showing each component's progress, until
//! every one is healthy. Everything listens on 127.0.0.1 only. On the directory of a stopped
//! quickstart it starts the coordinator and the agent again, which start every component again.

use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use muster_proto::v1::{self, Role};
use muster_proto::validate;
use serde::{Deserialize, Serialize};

use super::{
    Answer as _, CliError, Connection, ConnectionArgs, connect, converged, fetch_status,
    list_components, not_healthy, state_line, write_json, write_status,
};

const GRPC_PORT: u16 = muster_proto::DEFAULT_GRPC_PORT;
const HTTP_PORT: u16 = muster_proto::DEFAULT_HTTP_PORT;
const LOAD_BALANCER_PORT: u16 = muster_proto::haproxy::DEFAULT_FRONTEND_PORT;
const DASHBOARD_PORT: u16 = muster_proto::zato::DASHBOARD_PORT;
const SCHEDULER_PORT: u16 = muster_proto::zato::SCHEDULER_PORT;
const FIRST_SERVER_PORT: u16 = muster_proto::zato::FIRST_SERVER_PORT;
const HOST_NAME: &str = "local";
const STATE_FILE: &str = "quickstart.json";
const DEFAULT_DIR: &str = "muster-quickstart";

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub(super) struct QuickstartArgs {
    #[command(subcommand)]
    action: Option<QuickstartAction>,
    #[command(flatten)]
    start: StartArgs,
}

#[derive(Debug, Subcommand)]
enum QuickstartAction {
    /// Start the quickstart (the same as `muster quickstart` without a command): a new one, or a
    /// stopped one again as it was (of one whose coordinator or agent alone stopped, that one).
    Start(StartArgs),
    /// Show whether the quickstart's coordinator and agent run, and the cluster's status.
    Status {
        /// The quickstart's directory.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
    },
    /// Stop the agent, every component (Zato's and HAProxy) and the coordinator.
    Stop {
        /// The quickstart's directory.
        #[arg(long, default_value = DEFAULT_DIR)]
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
struct StartArgs {
    /// The directory to create; it holds everything (coordinator, agent, components, logs). A
    /// directory of a stopped quickstart is started again as it was.
    #[arg(long, default_value = DEFAULT_DIR)]
    dir: PathBuf,
    /// How many Zato servers, 1 to 32 (ports from 17010 upward) [default: 2; a stopped
    /// quickstart starts again with the number it had].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=32))]
    servers: Option<u16>,
    /// The cluster's name [default: quickstart; a stopped quickstart keeps its own].
    #[arg(long)]
    cluster: Option<String>,
    /// Use mock-zato (built with Muster, a stand-in for Zato) instead of Zato.
    #[arg(long)]
    demo: bool,
    /// The zato command [default: `zato` from PATH].
    #[arg(long, conflicts_with = "demo")]
    zato_bin: Option<PathBuf>,
    /// How long to wait for every component to be healthy.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    wait: Duration,
}

/// What `DIR/quickstart.json` records for `status` and `stop`.
#[derive(Debug, Serialize, Deserialize)]
struct Recorded {
    cluster: String,
    servers: u16,
    zato_bin: PathBuf,
    demo: bool,
}

#[derive(Debug, Serialize)]
struct Summary {
    cluster: String,
    demo: bool,
    load_balancer: String,
    dashboard: String,
    servers: Vec<String>,
    scheduler: String,
    coordinator: String,
    data_dir: PathBuf,
}

pub(super) async fn run(
    args: QuickstartArgs,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    match args.action {
        Some(QuickstartAction::Status { dir }) => status(&existing(&dir)?, json, out).await,
        Some(QuickstartAction::Stop { dir }) => stop(&existing(&dir)?, out).await,
        Some(QuickstartAction::Start(start_args)) => start(start_args, json, out).await,
        None => start(args.start, json, out).await,
    }
}

/// The quickstart's directory as an absolute path (commands run in other directories get it).
fn existing(dir: &Path) -> Result<PathBuf, CliError> {
    std::fs::canonicalize(dir).map_err(|error| {
        usage(format!(
            "{} is not a quickstart directory: {error}",
            dir.display()
        ))
    })
}

fn usage(message: impl Into<String>) -> CliError {
    CliError::Usage(message.into())
}

/// A program beside this `muster` binary (they are built and installed together).
fn sibling(name: &str) -> Result<PathBuf, CliError> {
    let here = std::env::current_exe().map_err(|error| {
        usage(format!(
            "cannot find the muster binary's directory: {error}"
        ))
    })?;
    let path = here.with_file_name(name);
    if path.exists() {
        Ok(path)
    } else {
        Err(usage(format!(
            "{} is missing; build or install it beside muster (cargo build --release builds both)",
            path.display()
        )))
    }
}

/// `name` found in PATH (or in /usr/sbin and /sbin, where Debian puts HAProxy).
fn in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|directory| directory.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate).is_ok_and(|metadata| {
                metadata.is_file()
                    && std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o111 != 0
            })
        })
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// The process listening on TCP `port`, as `pid 1234 (haproxy)`, when this user may see it
/// (`/proc/net/tcp*` for the socket, then the `/proc/PID/fd` that holds it).
fn port_holder(port: u16) -> Option<String> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let local_port = fields.get(1)?.rsplit(':').next()?;
                    // State 0A is LISTEN.
                    (u16::from_str_radix(local_port, 16).ok()? == port && fields.get(3)? == &"0A")
                        .then(|| fields.get(9).map(|inode| inode.to_string()))
                        .flatten()
                })
                .collect::<Vec<_>>()
        })
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes
        .iter()
        .map(|inode| format!("socket:[{inode}]"))
        .collect();
    for process in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = process.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(descriptors) = std::fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        let holds = descriptors.flatten().any(|descriptor| {
            std::fs::read_link(descriptor.path()).is_ok_and(|target| {
                wanted
                    .iter()
                    .any(|want| target.as_os_str() == want.as_str())
            })
        });
        if holds {
            let name = std::fs::read_to_string(process.path().join("comm")).unwrap_or_default();
            return Some(format!("pid {pid} ({})", name.trim()));
        }
    }
    None
}

/// The ports the quickstart's coordinator listens on, with what each is for.
fn coordinator_ports() -> Vec<(u16, String)> {
    vec![
        (GRPC_PORT, "the coordinator".to_owned()),
        (HTTP_PORT, "the coordinator's health endpoint".to_owned()),
    ]
}

/// The ports the quickstart's processes will listen on, with what each is for.
fn ports(servers: u16) -> Vec<(u16, String)> {
    let mut ports = coordinator_ports();
    ports.extend([
        (LOAD_BALANCER_PORT, "the load balancer".to_owned()),
        (DASHBOARD_PORT, "the dashboard".to_owned()),
        (SCHEDULER_PORT, "the scheduler".to_owned()),
    ]);
    for index in 0..servers {
        ports.push((FIRST_SERVER_PORT + index, format!("server{}", index + 1)));
    }
    ports
}

/// A command for one of Muster's own programs, without the caller's MUSTER_* variables (they
/// would override the quickstart's settings).
fn muster_process(program: &Path) -> Process {
    let mut command = Process::new(program);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MUSTER_") {
            command.env_remove(key);
        }
    }
    command
}

/// Starts `command` in the background, in its own process group, with its output appended to
/// `log`; records its pid in `pidfile`.
fn spawn_background(mut command: Process, log: &Path, pidfile: &Path) -> Result<u32, CliError> {
    use std::os::unix::process::CommandExt as _;
    let output = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|error| usage(format!("cannot open {}: {error}", log.display())))?;
    let errors = output
        .try_clone()
        .map_err(|error| usage(format!("cannot open {}: {error}", log.display())))?;
    let child = command
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(errors)
        .process_group(0)
        .spawn()
        .map_err(|error| usage(format!("cannot start {command:?}: {error}")))?;
    let pid = child.id();
    std::fs::write(pidfile, format!("{pid}\n"))
        .map_err(|error| usage(format!("cannot write {}: {error}", pidfile.display())))?;
    Ok(pid)
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether process `pid` runs: it exists and is not a zombie (one killed whose parent, gone, left
/// it to an init that has not reaped it yet).
fn alive(pid: i32) -> bool {
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'))
    });
    !zombie && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

fn connection_args(dir: &Path) -> ConnectionArgs {
    ConnectionArgs {
        coordinator: format!("https://127.0.0.1:{GRPC_PORT}"),
        ca_file: None,
        token: None,
        token_file: None,
        data_dir: Some(dir.join("coordinator")),
        timeout: Duration::from_secs(30),
    }
}

/// Waits until every component is healthy and every server is in HAProxy's rotation, showing
/// each component's state as it changes; at most `args.wait`.
async fn wait_until_up(
    connection: &mut Connection,
    plan: &Plan,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    let expected = usize::from(plan.servers) + 3;
    let deadline = Instant::now() + plan.wait;
    let mut shown: std::collections::BTreeMap<String, String> = Default::default();
    loop {
        // The host first: components read after a report since the start reflect it.
        let reported_now = plan.reported_since_ms == 0
            || connection
                .client
                .get_host(v1::GetHostRequest {
                    name: HOST_NAME.to_owned(),
                })
                .await
                .answer(connection)?
                .host
                .is_some_and(|host| host.last_seen_unix_ms >= plan.reported_since_ms);
        let components = list_components(connection, Some(&plan.cluster)).await?;
        let healthy = components
            .iter()
            .filter(|component| component.healthy)
            .count();
        // A cluster may have more than the quickstart made (`muster create server`): it waits
        // for all of them.
        let total = expected.max(components.len());
        // What the database held from before a stop is not shown as progress.
        for component in components.iter().filter(|_| reported_now) {
            let label = format!("{} {}", component.role, component.name);
            let state = state_line(component);
            if shown.get(&label) != Some(&state) {
                progress(
                    out,
                    json,
                    &format!("  [{healthy}/{total}] {label:<28} {state}"),
                )?;
                shown.insert(label, state);
            }
        }
        // Healthy servers are not yet in HAProxy's rotation: it adds each one down until its
        // checks pass. The cluster is up when requests through the load balancer reach them all,
        // as `muster wait` has it (no host of the quickstart is drained).
        if reported_now
            && components.len() >= expected
            && converged(&components, &Default::default())
        {
            break;
        }
        if Instant::now() >= deadline {
            let waiting = not_healthy(&components);
            return Err(usage(format!(
                "not every component was healthy within {}: {}; everything keeps running (see \
                 `muster quickstart status --dir {}` and the logs there; `muster quickstart stop \
                 --dir {2}` stops it)",
                humantime::format_duration(plan.wait),
                waiting.join(", "),
                plan.dir.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

/// What `start` runs, found and checked before anything starts.
struct Tools {
    coordinator_bin: PathBuf,
    agent_bin: PathBuf,
    zato_bin: PathBuf,
    haproxy: PathBuf,
}

/// How long a port held by no process (the socket of a process that was just killed, closing)
/// may take to come free before it counts as in use.
const PORT_SETTLE: Duration = Duration::from_secs(5);

/// Finds the programs the quickstart runs and checks that `ports`, those of what it starts, are
/// free.
async fn tools(args: &StartArgs, ports: Vec<(u16, String)>) -> Result<Tools, CliError> {
    let coordinator_bin = sibling("muster-coordinator")?;
    let agent_bin = sibling("muster-agent")?;
    let zato_bin = if args.demo {
        sibling("mock-zato")?
    } else if let Some(given) = args.zato_bin.clone() {
        if !given.exists() {
            return Err(usage(format!(
                "--zato-bin {} does not exist",
                given.display()
            )));
        }
        given
    } else {
        in_path("zato").ok_or_else(|| {
            usage(
                "no `zato` in PATH: install Zato 3.2 (https://zato.io/docs), pass --zato-bin PATH, \
                 or run `muster quickstart --demo` to use mock-zato, Muster's stand-in for Zato",
            )
        })?
    };
    let haproxy = in_path("haproxy").ok_or_else(|| {
        usage(
            "no `haproxy` found for the load balancer: install it (Debian: apt-get install haproxy)",
        )
    })?;
    let settled = Instant::now() + PORT_SETTLE;
    while Instant::now() < settled
        && ports
            .iter()
            .any(|(port, _)| !port_free(*port) && port_holder(*port).is_none())
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let taken: Vec<String> = ports
        .into_iter()
        .filter(|(port, _)| !port_free(*port))
        .map(|(port, what)| match port_holder(port) {
            Some(holder) => format!("{port} ({what}) is held by {holder}"),
            None => format!("{port} ({what})"),
        })
        .collect();
    if !taken.is_empty() {
        return Err(usage(format!(
            "ports in use on 127.0.0.1: {}; stop what holds them (another quickstart: `muster \
             quickstart stop --dir DIR`) and try again",
            taken.join(", ")
        )));
    }
    Ok(Tools {
        coordinator_bin,
        agent_bin,
        zato_bin,
        haproxy,
    })
}

/// A line of progress for people: on the output, or with `--output json` on stderr (the output
/// holds only the JSON).
fn progress(out: &mut dyn std::io::Write, json: bool, line: &str) -> Result<(), CliError> {
    if json {
        eprintln!("{line}");
    } else {
        writeln!(out, "{line}")?;
        out.flush()?;
    }
    Ok(())
}

/// What a start brings up: the directory and the cluster it holds.
struct Plan {
    dir: PathBuf,
    cluster: String,
    servers: u16,
    wait: Duration,
    /// On a start again: the agent's reports count from this time (Unix ms) on; what the
    /// database holds from before the stop says nothing of now.
    reported_since_ms: i64,
}

async fn start(args: StartArgs, json: bool, out: &mut impl std::io::Write) -> Result<(), CliError> {
    let dir = args.dir.clone();
    if dir.join(STATE_FILE).exists() {
        return restart(args, json, out).await;
    }
    let cluster = args
        .cluster
        .clone()
        .unwrap_or_else(|| "quickstart".to_owned());
    let servers = args.servers.unwrap_or(2);
    validate::name("cluster name", &cluster)?;

    // Everything is checked before anything starts.
    if dir.join("coordinator").exists() {
        return Err(usage(format!(
            "{} holds a coordinator but no {STATE_FILE}: it is not a quickstart this muster can \
             start again; choose another --dir",
            dir.display()
        )));
    }
    let tools = tools(&args, ports(servers)).await?;
    if args.demo {
        progress(
            out,
            json,
            &format!(
                "demo mode: components are run by mock-zato ({}), a stand-in for Zato that \
                 answers like it",
                tools.zato_bin.display()
            ),
        )?;
    }
    std::fs::create_dir_all(&dir)
        .map_err(|error| usage(format!("cannot create {}: {error}", dir.display())))?;
    let dir = std::fs::canonicalize(&dir)
        .map_err(|error| usage(format!("cannot resolve {}: {error}", dir.display())))?;
    let data_dir = dir.join("coordinator");
    let recorded = Recorded {
        cluster: cluster.clone(),
        servers,
        zato_bin: tools.zato_bin.clone(),
        demo: args.demo,
    };
    let record = serde_json::to_string_pretty(&recorded)
        .map_err(|error| usage(format!("cannot record the quickstart: {error}")))?;
    muster_proto::files::write_atomic(&dir.join(STATE_FILE), record.as_bytes(), 0o600)
        .map_err(|error| usage(error.to_string()))?;
    progress(
        out,
        json,
        &format!("initializing a coordinator in {}", data_dir.display()),
    )?;
    let init = muster_process(&tools.coordinator_bin)
        .arg("init")
        .arg("--data-dir")
        .arg(&data_dir)
        .output()
        .map_err(|error| usage(format!("cannot run muster-coordinator init: {error}")))?;
    if !init.status.success() {
        return Err(usage(format!(
            "muster-coordinator init failed: {}",
            String::from_utf8_lossy(&init.stderr).trim()
        )));
    }
    let mut connection = start_coordinator(&tools, &dir, json, out).await?;
    connection
        .client
        .create_cluster(v1::CreateClusterRequest {
            name: cluster.clone(),
            description: "made by muster quickstart".to_owned(),
            odb: Some(v1::OdbSettings {
                odb_type: v1::OdbType::Sqlite as i32,
                ..Default::default()
            }),
            odb_password: String::new(),
        })
        .await
        .answer(&connection)?;
    let token = connection
        .client
        .create_join_token(v1::CreateJoinTokenRequest {
            cluster: cluster.clone(),
            roles: Vec::new(),
            ttl_seconds: 3600,
            max_uses: 1,
            description: "the quickstart's agent".to_owned(),
            labels: Default::default(),
        })
        .await
        .answer(&connection)?
        .secret_token;
    progress(out, json, &format!("cluster {cluster} created on SQLite"))?;
    let agent_config = dir.join("agent.toml");
    let toml = format!(
        "# The quickstart's agent: this host, everything on 127.0.0.1.\n\
         coordinator = \"https://127.0.0.1:{GRPC_PORT}\"\n\
         token = \"{token}\"\n\
         host_name = \"{HOST_NAME}\"\n\
         advertise_address = \"127.0.0.1\"\n\
         bind_address = \"127.0.0.1\"\n\
         state_dir = \"{}\"\n\
         components_dir = \"{}\"\n\
         zato_bin = \"{}\"\n\
         haproxy_bins = [\"{}\"]\n\
         heartbeat_interval = \"2s\"\n",
        dir.join("agent").display(),
        dir.join("zato").display(),
        tools.zato_bin.display(),
        tools.haproxy.display()
    );
    muster_proto::files::write_atomic(&agent_config, toml.as_bytes(), 0o600)
        .map_err(|error| usage(error.to_string()))?;
    start_agent(&tools, &dir, json, out)?;
    let mut assignments = vec![
        (Role::WebAdmin, String::new(), u32::from(DASHBOARD_PORT)),
        (
            Role::LoadBalancer,
            String::new(),
            u32::from(LOAD_BALANCER_PORT),
        ),
    ];
    for index in 0..servers {
        assignments.push((
            Role::Server,
            format!("server{}", index + 1),
            u32::from(FIRST_SERVER_PORT + index),
        ));
    }
    assignments.push((Role::Scheduler, String::new(), u32::from(SCHEDULER_PORT)));
    for (role, name, port) in assignments {
        let load_balancer = (role == Role::LoadBalancer).then(|| v1::LoadBalancerSettings {
            haproxy_bin: tools.haproxy.display().to_string(),
            frontend_address: "127.0.0.1".to_owned(),
            ..Default::default()
        });
        connection
            .client
            .create_component(v1::CreateComponentRequest {
                cluster: cluster.clone(),
                role: role as i32,
                host: HOST_NAME.to_owned(),
                name,
                port,
                load_balancer,
            })
            .await
            .answer(&connection)?;
    }
    progress(
        out,
        json,
        &format!(
            "assigned web-admin, load-balancer, {servers} server(s) and the scheduler; waiting \
             for them (at most {})",
            humantime::format_duration(args.wait)
        ),
    )?;
    let plan = Plan {
        dir,
        cluster,
        servers,
        wait: args.wait,
        reported_since_ms: 0,
    };
    finish(&mut connection, &plan, args.demo, json, out).await
}

/// Starts a stopped quickstart again as it was: its coordinator with its database, its agent
/// with its identity, and through it every component, then waits as a first start does. Of a
/// quickstart whose coordinator or agent alone stopped (killed, crashed), it starts that one and
/// leaves the other, and the components, running.
async fn restart(
    args: StartArgs,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    let dir = existing(&args.dir)?;
    let recorded = recorded(&dir)?;
    let running = |name: &str| read_pid(&dir.join(format!("{name}.pid"))).filter(|pid| alive(*pid));
    let (coordinator_pid, agent_pid) = (running("coordinator"), running("agent"));
    // What starts, and the ports it takes: the components of a quickstart whose agent alone
    // stopped run on, holding theirs.
    let (what, starting_ports) = match (coordinator_pid, agent_pid) {
        (None, None) => ("the stopped quickstart".to_owned(), ports(recorded.servers)),
        (Some(pid), None) => (
            format!("the agent of the quickstart (its coordinator runs, pid {pid})"),
            Vec::new(),
        ),
        (None, Some(pid)) => (
            format!(
                "the coordinator of the quickstart (its agent and components run, agent pid {pid})"
            ),
            coordinator_ports(),
        ),
        (Some(coordinator_pid), Some(agent_pid)) => {
            return Err(usage(format!(
                "{} holds a quickstart that runs (coordinator pid {coordinator_pid}, agent pid \
                 {agent_pid}): see `muster quickstart status --dir {0}`; `muster quickstart stop \
                 --dir {0}` stops it",
                dir.display()
            )));
        }
    };
    let differs = |given: Option<String>, had: String, flag: &str| match given {
        Some(given) if given != had => Some(format!("{flag} {given} (it has {had})")),
        _ => None,
    };
    let conflicts: Vec<String> = [
        differs(args.cluster.clone(), recorded.cluster.clone(), "--cluster"),
        differs(
            args.servers.map(|servers| servers.to_string()),
            recorded.servers.to_string(),
            "--servers",
        ),
        differs(
            args.zato_bin
                .as_ref()
                .map(|path| path.display().to_string()),
            recorded.zato_bin.display().to_string(),
            "--zato-bin",
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !conflicts.is_empty() {
        return Err(usage(format!(
            "{} holds a stopped quickstart that starts again as it was, not with {}; choose \
             another --dir for a different one",
            dir.display(),
            conflicts.join(", ")
        )));
    }
    let as_recorded = StartArgs {
        dir: dir.clone(),
        servers: Some(recorded.servers),
        cluster: Some(recorded.cluster.clone()),
        demo: recorded.demo,
        zato_bin: (!recorded.demo).then(|| recorded.zato_bin.clone()),
        wait: args.wait,
    };
    let tools = tools(&as_recorded, starting_ports).await?;
    progress(
        out,
        json,
        &format!(
            "starting {what} in {} again: cluster {}, {} server(s)",
            dir.display(),
            recorded.cluster,
            recorded.servers
        ),
    )?;
    let started_ms = crate::store::now_ms();
    let mut connection = match coordinator_pid {
        Some(_) => connect(&connection_args(&dir)).await?,
        None => start_coordinator(&tools, &dir, json, out).await?,
    };
    if agent_pid.is_none() {
        start_agent(&tools, &dir, json, out)?;
    }
    let plan = Plan {
        dir,
        cluster: recorded.cluster,
        servers: recorded.servers,
        wait: args.wait,
        reported_since_ms: started_ms,
    };
    finish(&mut connection, &plan, recorded.demo, json, out).await
}

/// Starts the coordinator of `dir` in the background and connects to it.
async fn start_coordinator(
    tools: &Tools,
    dir: &Path,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<Connection, CliError> {
    let mut coordinator = muster_process(&tools.coordinator_bin);
    coordinator
        .arg("run")
        .arg("--data-dir")
        .arg(dir.join("coordinator"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{GRPC_PORT}"))
        .arg("--http-listen")
        .arg(format!("127.0.0.1:{HTTP_PORT}"));
    let pid = spawn_background(
        coordinator,
        &dir.join("coordinator.log"),
        &dir.join("coordinator.pid"),
    )?;
    progress(
        out,
        json,
        &format!(
            "coordinator started (pid {pid}), log in {}/coordinator.log",
            dir.display()
        ),
    )?;
    let connection_args = connection_args(dir);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match connect(&connection_args).await {
            Ok(connection) => return Ok(connection),
            Err(CliError::Unreachable { .. }) if Instant::now() < deadline && alive(pid as i32) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(CliError::Unreachable { detail, .. }) => {
                return Err(usage(format!(
                    "the coordinator did not come up ({detail}): see {}/coordinator.log",
                    dir.display()
                )));
            }
            Err(error) => return Err(error),
        }
    }
}

/// Starts the agent of `dir` in the background with its `agent.toml`.
fn start_agent(
    tools: &Tools,
    dir: &Path,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    let mut agent = muster_process(&tools.agent_bin);
    agent.arg("run").arg("--config").arg(dir.join("agent.toml"));
    let pid = spawn_background(agent, &dir.join("agent.log"), &dir.join("agent.pid"))?;
    progress(
        out,
        json,
        &format!(
            "agent started (pid {pid}) as host {HOST_NAME}, log in {}/agent.log",
            dir.display()
        ),
    )
}

/// Waits for the cluster, then says what runs where.
async fn finish(
    connection: &mut Connection,
    plan: &Plan,
    demo: bool,
    json: bool,
    out: &mut impl std::io::Write,
) -> Result<(), CliError> {
    wait_until_up(connection, plan, json, out).await?;
    let summary = Summary {
        cluster: plan.cluster.clone(),
        demo,
        load_balancer: format!("http://127.0.0.1:{LOAD_BALANCER_PORT}"),
        dashboard: format!("http://127.0.0.1:{DASHBOARD_PORT}"),
        servers: (0..plan.servers)
            .map(|index| format!("http://127.0.0.1:{}", FIRST_SERVER_PORT + index))
            .collect(),
        scheduler: format!("http://127.0.0.1:{SCHEDULER_PORT}"),
        coordinator: format!("https://127.0.0.1:{GRPC_PORT}"),
        data_dir: plan.dir.join("coordinator"),
    };
    if json {
        return write_json(out, &summary);
    }
    write_summary(out, &summary, &plan.dir)
}

/// What the quickstart made, for people.
fn write_summary(
    out: &mut impl std::io::Write,
    summary: &Summary,
    dir: &Path,
) -> Result<(), CliError> {
    writeln!(out)?;
    writeln!(
        out,
        "Zato cluster {} is up on this host{}:",
        summary.cluster,
        if summary.demo {
            " (demo: mock-zato stands in for Zato)"
        } else {
            ""
        }
    )?;
    writeln!(
        out,
        "  load balancer  {}/zato/ping  (HAProxy, round robin over the servers)",
        summary.load_balancer
    )?;
    writeln!(
        out,
        "  dashboard      {}  (user admin; `muster cluster dashboard-login {}` shows the password)",
        summary.dashboard, summary.cluster
    )?;
    for (index, server) in summary.servers.iter().enumerate() {
        writeln!(out, "  server{:<8} {server}", index + 1)?;
    }
    writeln!(out, "  scheduler      {}", summary.scheduler)?;
    writeln!(
        out,
        "  coordinator    {}  (admin token in {}/admin.token)",
        summary.coordinator,
        summary.data_dir.display()
    )?;
    // The hints name this very muster: after `cargo build`, `muster` is not on PATH.
    let muster = std::env::current_exe()
        .map(|path| path.display().to_string())
        .unwrap_or_else(|_| "muster".to_owned());
    writeln!(out)?;
    writeln!(out, "Use the CLI against it:")?;
    writeln!(
        out,
        "  export MUSTER_DATA_DIR={}",
        summary.data_dir.display()
    )?;
    writeln!(out, "  {muster} status")?;
    writeln!(
        out,
        "Stop everything: {muster} quickstart stop --dir {}",
        dir.display()
    )?;
    Ok(())
}

fn recorded(dir: &Path) -> Result<Recorded, CliError> {
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|error| {
        usage(format!(
            "{} is not a quickstart directory (cannot read {}: {error})",
            dir.display(),
            path.display()
        ))
    })?;
    serde_json::from_str(&text)
        .map_err(|error| usage(format!("{} is damaged: {error}", path.display())))
}

fn process_line(dir: &Path, name: &str) -> String {
    match read_pid(&dir.join(format!("{name}.pid"))) {
        Some(pid) if alive(pid) => format!("{name}: running (pid {pid})"),
        Some(pid) => format!("{name}: stopped (was pid {pid})"),
        None => format!("{name}: never started"),
    }
}

async fn status(dir: &Path, json: bool, out: &mut impl std::io::Write) -> Result<(), CliError> {
    let recorded = recorded(dir)?;
    let coordinator_up = read_pid(&dir.join("coordinator.pid")).is_some_and(alive);
    if !json {
        writeln!(out, "{}", process_line(dir, "coordinator"))?;
        writeln!(out, "{}", process_line(dir, "agent"))?;
    }
    if !coordinator_up {
        if json {
            write_json(out, &serde_json::json!({"coordinator": "stopped"}))?;
        }
        return Ok(());
    }
    let mut connection = connect(&connection_args(dir)).await?;
    let status = fetch_status(&mut connection, Some(recorded.cluster)).await?;
    if json {
        write_json(out, &status)
    } else {
        writeln!(out)?;
        write_status(out, &status)?;
        Ok(())
    }
}

/// Signals `pid` and waits up to `patience` for it to exit, then kills it; says whether it exited
/// by itself.
async fn stop_process(pid: i32, signal: nix::sys::signal::Signal, patience: Duration) -> bool {
    let process = nix::unistd::Pid::from_raw(pid);
    if nix::sys::signal::kill(process, signal).is_err() {
        return true;
    }
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = nix::sys::signal::kill(process, nix::sys::signal::Signal::SIGKILL);
    false
}

async fn stop(dir: &Path, out: &mut impl std::io::Write) -> Result<(), CliError> {
    use nix::sys::signal::Signal;
    let recorded = recorded(dir)?;
    // The agent first, so that it does not start again what is stopped next.
    if let Some(pid) = read_pid(&dir.join("agent.pid")).filter(|pid| alive(*pid)) {
        stop_process(pid, Signal::SIGTERM, Duration::from_secs(20)).await;
        writeln!(out, "agent stopped (pid {pid})")?;
    }
    let cluster_dir = dir.join("zato").join(&recorded.cluster);
    let mut entries: Vec<PathBuf> = std::fs::read_dir(&cluster_dir)
        .map(|entries| entries.flatten().map(|entry| entry.path()).collect())
        .unwrap_or_default();
    entries.sort();
    // Zato's components stop side by side; each `zato stop` waits for its own.
    let mut stopping = Vec::new();
    for path in entries {
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(pid) = read_pid(&path.join("haproxy.pid")).filter(|pid| alive(*pid)) {
            // A soft stop: workers finish their requests first.
            stop_process(pid, Signal::SIGUSR1, Duration::from_secs(10)).await;
            writeln!(out, "{name} stopped (HAProxy pid {pid})")?;
        } else if read_pid(&path.join("pidfile")).is_some_and(alive) {
            let child = tokio::process::Command::new(&recorded.zato_bin)
                .arg("stop")
                .arg(&path)
                .current_dir(&path)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|error| usage(format!("cannot run zato stop: {error}")))?;
            stopping.push((name, child));
        }
    }
    for (name, child) in stopping {
        match child.wait_with_output().await {
            Ok(stopped) if stopped.status.success() => writeln!(out, "{name} stopped")?,
            Ok(stopped) => writeln!(
                out,
                "{name}: `zato stop` failed: {}",
                String::from_utf8_lossy(&stopped.stderr).trim()
            )?,
            Err(error) => writeln!(out, "{name}: cannot run `zato stop`: {error}")?,
        }
    }
    if let Some(pid) = read_pid(&dir.join("coordinator.pid")).filter(|pid| alive(*pid)) {
        stop_process(pid, Signal::SIGTERM, Duration::from_secs(20)).await;
        writeln!(out, "coordinator stopped (pid {pid})")?;
    }
    writeln!(
        out,
        "quickstart in {} stopped; `muster quickstart --dir {0}` starts it again, or remove the \
         directory to start over",
        dir.display()
    )?;
    Ok(())
}
