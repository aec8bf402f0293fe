//! `muster-bench`: N simulated agents in one process against a real coordinator process, on SQLite,
//! PostgreSQL or MySQL. It reports the enrollment rate, heartbeat latency, assignment → agent
//! latency (for the host given the component, and for its cluster's load balancer, whose backend
//! list changes), the coordinator's CPU and memory, the database statements per second (also with
//! the fleet idle), and, with `--storm`, how long all agents take to come back after a coordinator
//! restart. It prints a table and writes JSON. It asserts nothing about speed: the figures go into
//! `packaging/docs/benchmarks.md`.

mod coordinator;
mod fleet;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use muster_proto::v1::{self, OdbType, Role};
use muster_testkit::{Backend, TestDatabase};
use tokio_util::sync::CancellationToken;

use coordinator::{Admin, CoordinatorProcess, CpuWindow, LogsOnFailure};
use fleet::{Expected, Fleet};

/// The coordinator's default `heartbeat_ttl`.
const HEARTBEAT_TTL: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Database {
    Sqlite,
    Postgres,
    Mysql,
}

/// Load-test a real coordinator with simulated agents.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Simulated agents (hosts). With --big-clusters, the clusters decide.
    #[arg(long, default_value_t = 1000)]
    agents: usize,
    /// The coordinator's database: a throwaway one on this machine's server (SQLite: a file).
    #[arg(long, value_enum, default_value = "sqlite")]
    database: Database,
    /// Clusters of servers instead of one cluster: CLUSTERSxSERVERS, each with a scheduler and a
    /// load balancer too, every component on a host of its own (100x50: 5,200 agents).
    #[arg(long, value_name = "CLUSTERSxSERVERS")]
    big_clusters: Option<String>,
    /// Coordinators over the one database (2 needs PostgreSQL or MySQL): agents alternate between
    /// them, assignments are made through the first.
    #[arg(long, default_value_t = 1)]
    coordinators: usize,
    /// How long to measure heartbeats and assignments.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    measure: Duration,
    /// How long the fleet stays connected without heartbeats or changes, to count the database
    /// statements an idle fleet costs. With the heartbeat interval and a second it must stay under
    /// the coordinator's heartbeat TTL (15 s), or hosts are marked down meanwhile.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    idle: Duration,
    /// Each agent's heartbeat interval.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    heartbeat_interval: Duration,
    /// How often a component is assigned while measuring.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    assign_interval: Duration,
    /// Enrollments sent at once.
    #[arg(long, default_value_t = 16)]
    enroll_concurrency: usize,
    /// Restart the (first) coordinator after measuring and time the fleet's return.
    #[arg(long)]
    storm: bool,
    /// Where muster-coordinator is (default: beside this program).
    #[arg(long)]
    coordinator_bin: Option<PathBuf>,
    /// Write the results as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Debug, Default, serde::Serialize)]
struct Latency {
    count: usize,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl Latency {
    fn of(mut samples: Vec<Duration>) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort();
        let at = |quantile: f64| {
            let index = ((samples.len() as f64 * quantile).ceil() as usize).clamp(1, samples.len());
            samples[index - 1].as_secs_f64() * 1000.0
        };
        Latency {
            count: samples.len(),
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            max_ms: at(1.0),
        }
    }

    fn text(&self) -> String {
        if self.count == 0 {
            return "—".to_owned();
        }
        format!(
            "{} / {} / {}",
            milliseconds(self.p50_ms),
            milliseconds(self.p99_ms),
            milliseconds(self.max_ms)
        )
    }
}

fn milliseconds(value: f64) -> String {
    if value >= 1000.0 {
        format!("{:.2} s", value / 1000.0)
    } else if value >= 10.0 {
        format!("{value:.0} ms")
    } else {
        format!("{value:.1} ms")
    }
}

#[derive(Debug, Default, serde::Serialize)]
struct Storm {
    /// From the restarted coordinator's start until every agent had a desired state and an
    /// answered heartbeat from it.
    all_back_s: f64,
    agents_back: usize,
    /// Failed calls (watch and heartbeat) from the second after the old process stopped (its
    /// broken streams are not counted): in the worst second, and in all.
    peak_errors_per_s: u64,
    errors: u64,
    coordinator_cpu_percent: f64,
}

#[derive(Debug, Default, serde::Serialize)]
struct Results {
    agents: usize,
    database: Option<Database>,
    coordinators: usize,
    clusters: usize,
    servers_per_cluster: usize,
    enrolled_per_s: f64,
    heartbeat: Latency,
    heartbeats_per_s: f64,
    /// From `CreateComponent` to the host's watch delivering the component.
    assignment_to_agent: Latency,
    /// The same, for hosts watching through another coordinator than the one assigned through.
    assignment_to_agent_via_other: Latency,
    /// From `CreateComponent` to the cluster's load balancer's watch delivering the new server.
    assignment_to_load_balancer: Latency,
    /// Assignments made while measuring; those the coordinator refused; those that did not reach
    /// their host, or their load balancer, within 60 s. Nothing is dropped from the counts
    /// silently.
    assignments: u64,
    assignments_refused: u64,
    assignments_lost_at_host: u64,
    assignments_lost_at_balancer: u64,
    coordinator_cpu_percent: f64,
    database_cpu_percent: Option<f64>,
    coordinator_rss_mib: f64,
    coordinator_peak_rss_mib: f64,
    /// Statements the coordinator(s) sent, per second, while measuring and while idle (`None`:
    /// a coordinator without the counter).
    statements_per_s: Option<f64>,
    idle_statements_per_s: Option<f64>,
    errors_while_measuring: u64,
    storm: Option<Storm>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    raise_open_files_limit();
    let results = run(&args).await?;
    print_table(&results);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&results)? + "\n")
            .with_context(|| format!("write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Every agent holds a connection, and so does the coordinator for each: raise the soft limit on
/// open files as far as the hard one (root: further), for this process and the coordinators it
/// starts.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let wanted = 200_000;
    if setrlimit(Resource::RLIMIT_NOFILE, wanted, wanted).is_err()
        && let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn progress(text: &str) {
    eprintln!(
        "[{}] {text}",
        humantime::format_rfc3339_seconds(std::time::SystemTime::now())
    );
}

/// A cluster of the run: its name, its hosts (agent indices), and where its load balancer is.
struct BenchCluster {
    name: String,
    load_balancer: usize,
    /// Hosts that get the measured assignments.
    targets: Vec<usize>,
}

async fn run(args: &Args) -> anyhow::Result<Results> {
    let (clusters, servers_per_cluster) = match &args.big_clusters {
        Some(shape) => {
            let (clusters, servers) = shape
                .split_once('x')
                .and_then(|(c, s)| Some((c.parse::<usize>().ok()?, s.parse::<usize>().ok()?)))
                .filter(|(c, s)| *c > 0 && *s > 0)
                .with_context(|| {
                    format!("--big-clusters {shape:?}: expected CLUSTERSxSERVERS, such as 100x50")
                })?;
            (clusters, servers)
        }
        None => (1, 0),
    };
    let agents = match args.big_clusters {
        Some(_) => clusters * (servers_per_cluster + 2),
        None => args.agents.max(3),
    };
    if args.idle + args.heartbeat_interval + Duration::from_secs(1) >= HEARTBEAT_TTL {
        bail!(
            "--idle {:?} with --heartbeat-interval {:?} reaches the coordinator's heartbeat TTL \
             ({HEARTBEAT_TTL:?}): hosts would be marked down while idle",
            args.idle,
            args.heartbeat_interval
        );
    }
    if args.coordinators == 0 || args.coordinators > 2 {
        bail!("--coordinators {}: 1 or 2", args.coordinators);
    }
    if args.coordinators == 2 && args.database == Database::Sqlite {
        bail!("--coordinators 2 needs --database postgres or mysql: SQLite is one coordinator's");
    }
    let binary = match &args.coordinator_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("this program's directory")?
            .join("muster-coordinator"),
    };
    let scratch = tempfile::Builder::new().prefix("muster-bench-").tempdir()?;
    let database = match args.database {
        Database::Sqlite => None,
        Database::Postgres => Some(TestDatabase::create(Backend::Postgres).await),
        Database::Mysql => Some(TestDatabase::create(Backend::MySql).await),
    };
    let url = database.as_ref().map(|database| database.url.as_str());
    progress(&format!(
        "coordinator {} on {:?}, {agents} agents",
        binary.display(),
        args.database
    ));
    let mut first = CoordinatorProcess::init(&binary, scratch.path(), "coordinator-1", url)?;
    let mut coordinators_list = Vec::new();
    if args.coordinators == 2 {
        coordinators_list.push(first.sibling(scratch.path(), "coordinator-2")?);
    }
    first.start().await?;
    for other in &mut coordinators_list {
        other.start().await?;
    }
    coordinators_list.insert(0, first);
    let mut coordinators = coordinators_list;
    let logs = LogsOnFailure::of(&coordinators);
    let admin = coordinators[0].admin().await?;

    // Clusters and their join tokens.
    let mut tokens = Vec::new();
    for cluster in 0..clusters {
        let name = format!("bench{cluster}");
        admin
            .client
            .clone()
            .create_cluster(admin.request(v1::CreateClusterRequest {
                name: name.clone(),
                description: "muster-bench".to_owned(),
                odb: Some(v1::OdbSettings {
                    odb_type: OdbType::Sqlite as i32,
                    db_name: format!("/var/lib/zato/{name}.db"),
                    ..Default::default()
                }),
                odb_password: String::new(),
            }))
            .await
            .context("create a cluster")?;
        let per_cluster = if args.big_clusters.is_some() {
            servers_per_cluster + 2
        } else {
            agents
        };
        let token = admin
            .client
            .clone()
            .create_join_token(admin.request(v1::CreateJoinTokenRequest {
                cluster: name.clone(),
                roles: Vec::new(),
                ttl_seconds: 24 * 3600,
                max_uses: u32::try_from(per_cluster)?,
                description: "muster-bench".to_owned(),
                labels: Default::default(),
            }))
            .await
            .context("create a join token")?
            .into_inner()
            .secret_token;
        tokens.push(token);
    }

    // Enrollment.
    let mut fleet = Fleet {
        started: Some(Instant::now()),
        ..Fleet::default()
    };
    let started = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(args.enroll_concurrency.max(1)));
    let mut enrollments = tokio::task::JoinSet::new();
    for index in 0..agents {
        let permit = semaphore.clone().acquire_owned().await?;
        let coordinator = index % coordinators.len();
        let url = coordinators[coordinator].url();
        let token = tokens[index / (agents / clusters)].clone();
        let state_dir = scratch.path().join("agents").join(index.to_string());
        enrollments.spawn(async move {
            let agent = fleet::enroll(
                &state_dir,
                &url,
                &format!("host-{index}"),
                &fleet::address(index),
                &token,
                coordinator,
            )
            .await;
            drop(permit);
            (index, agent)
        });
        if index > 0 && index % 1000 == 0 {
            progress(&format!("enrolled {index} of {agents}"));
        }
    }
    let mut enrolled: Vec<Option<fleet::SimAgent>> = (0..agents).map(|_| None).collect();
    while let Some(done) = enrollments.join_next().await {
        let (index, agent) = done?;
        enrolled[index] = Some(agent.with_context(|| format!("enroll host-{index}"))?);
    }
    let enrolled_per_s = agents as f64 / started.elapsed().as_secs_f64();
    progress(&format!("{agents} agents enrolled, {enrolled_per_s:.0}/s"));
    fleet.agents = enrolled.into_iter().flatten().map(Arc::new).collect();
    let fleet = Arc::new(fleet);

    // Connect: every agent's watch and heartbeats.
    let stop = CancellationToken::new();
    for index in 0..agents {
        tokio::spawn(fleet::watch(fleet.clone(), index, stop.clone()));
        tokio::spawn(fleet::heartbeat(
            fleet.clone(),
            index,
            args.heartbeat_interval,
            stop.clone(),
        ));
    }
    wait_until(
        "every agent's first desired state",
        Duration::from_secs(300),
        || {
            fleet
                .agents
                .iter()
                .filter(|agent| agent.holds_any())
                .count()
                == agents
        },
    )
    .await?;

    // The clusters' components.
    let layout = place_components(
        &admin,
        &fleet,
        clusters,
        servers_per_cluster,
        args.big_clusters.is_some(),
    )
    .await?;

    // What placing caused (bootstraps, first reports, the scheduler's choice) settles first.
    wait_until_settled(&fleet).await?;

    // Idle: connected, no heartbeats, no changes.
    fleet.paused.store(true, Ordering::Relaxed);
    // Heartbeats in flight finish first.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_statements_per_s = statements_rate(&coordinators, args.idle).await;
    fleet.paused.store(false, Ordering::Relaxed);
    progress(&format!(
        "idle: {} statements/s",
        idle_statements_per_s.map_or("—".to_owned(), |rate| format!("{rate:.1}"))
    ));
    // One heartbeat interval for the heartbeats to spread again.
    tokio::time::sleep(args.heartbeat_interval).await;

    // Measure.
    progress(&format!("measuring for {:?}", args.measure));
    let coordinator_pids: Vec<u32> = coordinators.iter().filter_map(|c| c.pid()).collect();
    let database_pids = match args.database {
        Database::Sqlite => Vec::new(),
        Database::Postgres => coordinator::processes_named(&["postgres"]),
        Database::Mysql => coordinator::processes_named(&["mariadbd", "mysqld"]),
    };
    let errors_before = total_errors(&fleet);
    fleet.take_heartbeats();
    let coordinator_cpu = CpuWindow::start(coordinator_pids.clone());
    let database_cpu = CpuWindow::start(database_pids.clone());
    let statements_before = statements(&coordinators).await;
    let measure_started = Instant::now();
    let mut assignments = tokio::task::JoinSet::new();
    let mut ticks = tokio::time::interval(args.assign_interval);
    let mut number = 0usize;
    let mut refused = 0u64;
    while measure_started.elapsed() < args.measure {
        ticks.tick().await;
        let cluster = &layout[number % layout.len()];
        let host = cluster.targets[(number / layout.len()) % cluster.targets.len()];
        number += 1;
        let name = format!("bench-{number}");
        let agent = fleet.agents[host].clone();
        let at_host = agent.expect(Expected::Component(name.clone()));
        let at_balancer =
            fleet.agents[cluster.load_balancer].expect(Expected::Backend(name.clone()));
        let via_other = agent.coordinator != 0;
        let created = admin
            .client
            .clone()
            .create_component(admin.request(v1::CreateComponentRequest {
                cluster: cluster.name.clone(),
                role: Role::Server as i32,
                host: agent.name.clone(),
                name,
                port: 0,
                load_balancer: None,
            }))
            .await;
        if let Err(status) = created {
            progress(&format!("an assignment failed: {}", status.message()));
            refused += 1;
            continue;
        }
        assignments.spawn(async move {
            let timeout = Duration::from_secs(60);
            let host = tokio::time::timeout(timeout, at_host)
                .await
                .ok()
                .and_then(Result::ok);
            let balancer = tokio::time::timeout(timeout, at_balancer)
                .await
                .ok()
                .and_then(Result::ok);
            (via_other, host, balancer)
        });
    }
    let measured_for = measure_started.elapsed();
    let statements_after = statements(&coordinators).await;
    let coordinator_cpu_percent = coordinator_cpu.percent();
    let database_cpu_percent = (!database_pids.is_empty()).then(|| database_cpu.percent());
    let heartbeats = fleet.take_heartbeats();
    let errors_while_measuring = total_errors(&fleet) - errors_before;
    let (mut to_agent, mut to_other, mut to_balancer) = (Vec::new(), Vec::new(), Vec::new());
    let (mut lost_at_host, mut lost_at_balancer) = (0u64, 0u64);
    while let Some(done) = assignments.join_next().await {
        let (via_other, host, balancer) = done?;
        match (via_other, host) {
            (false, Some(took)) => to_agent.push(took),
            (true, Some(took)) => to_other.push(took),
            (_, None) => {
                progress("an assignment did not reach its host within 60 s");
                lost_at_host += 1;
            }
        }
        match balancer {
            Some(took) => to_balancer.push(took),
            None => {
                progress("an assignment did not reach its load balancer within 60 s");
                lost_at_balancer += 1;
            }
        }
    }
    let (rss, _) = coordinator_pids
        .first()
        .map_or((0.0, 0.0), |pid| coordinator::memory_mib(*pid));
    let peak_rss = coordinator_pids
        .first()
        .map_or(0.0, |pid| coordinator::memory_mib(*pid).1);
    let mut results = Results {
        agents,
        database: Some(args.database),
        coordinators: coordinators.len(),
        clusters,
        servers_per_cluster,
        enrolled_per_s,
        heartbeats_per_s: heartbeats.len() as f64 / measured_for.as_secs_f64(),
        heartbeat: Latency::of(heartbeats),
        assignment_to_agent: Latency::of(to_agent),
        assignment_to_agent_via_other: Latency::of(to_other),
        assignment_to_load_balancer: Latency::of(to_balancer),
        assignments: u64::try_from(number).unwrap_or(u64::MAX),
        assignments_refused: refused,
        assignments_lost_at_host: lost_at_host,
        assignments_lost_at_balancer: lost_at_balancer,
        coordinator_cpu_percent,
        database_cpu_percent,
        coordinator_rss_mib: rss,
        coordinator_peak_rss_mib: peak_rss,
        statements_per_s: statements_before
            .zip(statements_after)
            .map(|(before, after)| (after - before) as f64 / measured_for.as_secs_f64()),
        idle_statements_per_s,
        errors_while_measuring,
        storm: None,
    };

    if args.storm {
        results.storm = Some(storm(&mut coordinators[0], &fleet, agents).await?);
    }
    stop.cancel();
    logs.passed();
    drop(coordinators);
    drop(database);
    Ok(results)
}

/// Assigns each cluster's components and waits until every host has its own. One cluster: a load
/// balancer on host 0 and a first server on host 1 (which bootstraps the cluster); the measured
/// assignments go to the other hosts. Big clusters: servers, a scheduler and a load balancer,
/// each on a host of its own; the measured assignments add a second server to server hosts.
async fn place_components(
    admin: &Admin,
    fleet: &Arc<Fleet>,
    clusters: usize,
    servers_per_cluster: usize,
    big: bool,
) -> anyhow::Result<Vec<BenchCluster>> {
    let agents = fleet.agents.len();
    let per_cluster = agents / clusters;
    let mut layout = Vec::new();
    let mut placements = Vec::new();
    for cluster in 0..clusters {
        let name = format!("bench{cluster}");
        let base = cluster * per_cluster;
        let (servers, targets): (Vec<usize>, Vec<usize>) = if big {
            let servers: Vec<usize> = (base..base + servers_per_cluster).collect();
            (servers.clone(), servers)
        } else {
            (vec![base + 1], (base + 2..base + per_cluster).collect())
        };
        let load_balancer = base + per_cluster - 1;
        let load_balancer = if big { load_balancer } else { base };
        if big {
            placements.push((name.clone(), Role::Scheduler, base + per_cluster - 2));
        }
        placements.push((name.clone(), Role::LoadBalancer, load_balancer));
        for server in servers {
            placements.push((name.clone(), Role::Server, server));
        }
        layout.push(BenchCluster {
            name,
            load_balancer,
            targets,
        });
    }
    progress(&format!("assigning {} components", placements.len()));
    let started = Instant::now();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(8));
    let mut calls = tokio::task::JoinSet::new();
    let mut expected = Vec::new();
    for (cluster, role, host) in placements {
        let permit = semaphore.clone().acquire_owned().await?;
        let admin = admin.clone();
        let host_name = fleet.agents[host].name.clone();
        let name = match role {
            Role::Server => format!("server-{host}"),
            Role::Scheduler => "scheduler".to_owned(),
            _ => "load-balancer".to_owned(),
        };
        expected.push((host, name.clone()));
        calls.spawn(async move {
            let created = admin
                .client
                .clone()
                .create_component(admin.request(v1::CreateComponentRequest {
                    cluster,
                    role: role as i32,
                    host: host_name,
                    name,
                    port: 0,
                    load_balancer: None,
                }))
                .await;
            drop(permit);
            created
        });
    }
    while let Some(done) = calls.join_next().await {
        done?.context("assign a component")?;
    }
    let fleet_ref = fleet.clone();
    wait_until(
        "every component at its host, and every server in its load balancer",
        Duration::from_secs(600),
        move || {
            expected.iter().all(|(host, name)| {
                fleet_ref.agents[*host].holds(&Expected::Component(name.clone()))
            }) && layout_ready(&fleet_ref, clusters, per_cluster, servers_per_cluster, big)
        },
    )
    .await?;
    progress(&format!(
        "components placed and delivered in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(layout)
}

fn layout_ready(
    fleet: &Fleet,
    clusters: usize,
    per_cluster: usize,
    servers_per_cluster: usize,
    big: bool,
) -> bool {
    (0..clusters).all(|cluster| {
        let base = cluster * per_cluster;
        let (balancer, servers): (usize, Vec<usize>) = if big {
            (
                base + per_cluster - 1,
                (base..base + servers_per_cluster).collect(),
            )
        } else {
            (base, vec![base + 1])
        };
        servers.iter().all(|server| {
            fleet.agents[balancer].holds(&Expected::Backend(format!("server-{server}")))
        })
    })
}

/// Restarts the coordinator and times the fleet's return.
async fn storm(
    coordinator: &mut CoordinatorProcess,
    fleet: &Arc<Fleet>,
    agents: usize,
) -> anyhow::Result<Storm> {
    progress("restarting the coordinator");
    coordinator.stop();
    fleet.epoch.fetch_add(1, Ordering::Relaxed);
    let started = Instant::now();
    // Every agent's stream broke with the old process, once: what counts is what fails after.
    let second_before = fleet
        .started
        .map_or(0, |started| started.elapsed().as_secs())
        + 1;
    coordinator.start().await?;
    let cpu = CpuWindow::start(coordinator.pid().into_iter().collect());
    let all_back = wait_until("every agent back", Duration::from_secs(300), || {
        fleet.back() == agents
    })
    .await;
    let all_back_s = started.elapsed().as_secs_f64();
    let agents_back = fleet.back();
    if let Err(error) = all_back {
        progress(&format!("{error}: {agents_back} of {agents} back"));
    }
    let after: Vec<u64> = fleet
        .errors
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .range(second_before..)
        .map(|(_, count)| *count)
        .collect();
    Ok(Storm {
        all_back_s,
        agents_back,
        peak_errors_per_s: after.iter().copied().max().unwrap_or(0),
        errors: after.iter().sum(),
        coordinator_cpu_percent: cpu.percent(),
    })
}

fn total_errors(fleet: &Fleet) -> u64 {
    fleet
        .errors
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
        .values()
        .sum()
}

/// The statements all coordinators sent so far, if they all count them.
async fn statements(coordinators: &[CoordinatorProcess]) -> Option<u64> {
    let mut total = 0;
    for coordinator in coordinators {
        total += coordinator.statements().await?;
    }
    Some(total)
}

async fn statements_rate(coordinators: &[CoordinatorProcess], window: Duration) -> Option<f64> {
    let before = statements(coordinators).await;
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let after = statements(coordinators).await;
    // Each /metrics read adds its own few statements; they are counted in the next reading.
    before
        .zip(after)
        .map(|(before, after)| (after - before) as f64 / started.elapsed().as_secs_f64())
}

/// Waits (at most 5 minutes) until no agent has received a desired state for 3 s.
async fn wait_until_settled(fleet: &Fleet) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let before = fleet.messages.load(Ordering::Relaxed);
        tokio::time::sleep(Duration::from_secs(3)).await;
        if fleet.messages.load(Ordering::Relaxed) == before {
            progress(&format!(
                "settled after {:.1} s",
                started.elapsed().as_secs_f64()
            ));
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!("desired states still changing after 5 minutes");
        }
    }
}

/// Checks `done` every 100 ms, at most for `limit`, printing progress every 5 s.
async fn wait_until(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut reported = Instant::now();
    while !done() {
        if started.elapsed() > limit {
            bail!("gave up waiting for {what} after {limit:?}");
        }
        if reported.elapsed() > Duration::from_secs(5) {
            progress(&format!("waiting for {what}"));
            reported = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn print_table(results: &Results) {
    let database = results
        .database
        .map_or("?".to_owned(), |database| format!("{database:?}"));
    let shape = if results.servers_per_cluster > 0 {
        format!(
            "{} clusters × {} servers",
            results.clusters, results.servers_per_cluster
        )
    } else {
        "1 cluster".to_owned()
    };
    let rate = |rate: Option<f64>| rate.map_or("—".to_owned(), |rate| format!("{rate:.1}"));
    let rows = [
        ("agents", format!("{} ({shape})", results.agents)),
        (
            "database",
            format!("{database}, {} coordinator(s)", results.coordinators),
        ),
        ("enrollments/s", format!("{:.0}", results.enrolled_per_s)),
        ("heartbeats/s", format!("{:.0}", results.heartbeats_per_s)),
        ("heartbeat p50 / p99 / max", results.heartbeat.text()),
        (
            "assignment → agent p50 / p99 / max",
            results.assignment_to_agent.text(),
        ),
        (
            "… via the other coordinator",
            results.assignment_to_agent_via_other.text(),
        ),
        (
            "assignment → load balancer p50 / p99 / max",
            results.assignment_to_load_balancer.text(),
        ),
        (
            "assignments: made / refused / lost",
            format!(
                "{} / {} / {} at hosts, {} at load balancers",
                results.assignments,
                results.assignments_refused,
                results.assignments_lost_at_host,
                results.assignments_lost_at_balancer
            ),
        ),
        (
            "coordinator CPU (one core = 100 %)",
            format!("{:.0} %", results.coordinator_cpu_percent),
        ),
        (
            "database server CPU",
            results
                .database_cpu_percent
                .map_or("—".to_owned(), |cpu| format!("{cpu:.0} %")),
        ),
        (
            "coordinator RSS (peak)",
            format!(
                "{:.0} MiB ({:.0} MiB)",
                results.coordinator_rss_mib, results.coordinator_peak_rss_mib
            ),
        ),
        ("database statements/s", rate(results.statements_per_s)),
        (
            "database statements/s, fleet idle",
            rate(results.idle_statements_per_s),
        ),
        (
            "failed calls while measuring",
            results.errors_while_measuring.to_string(),
        ),
    ];
    let width = rows
        .iter()
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(0);
    for (name, value) in rows {
        println!("{name:<width$}  {value}");
    }
    if let Some(storm) = &results.storm {
        println!(
            "{:<width$}  {:.1} s ({} of {} back), {} failed calls, at most {}/s, coordinator CPU {:.0} %",
            "reconnect storm: all back after",
            storm.all_back_s,
            storm.agents_back,
            results.agents,
            storm.errors,
            storm.peak_errors_per_s,
            storm.coordinator_cpu_percent
        );
    }
}
