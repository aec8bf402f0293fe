//! The distributed proof: clusters of separate test hosts, each a network namespace with its own
//! address on a bridge (see `muster_testkit::netns`), running the real coordinator, agents and
//! HAProxy, and mock-zato components (the stand-in for Zato). A client host sends the requests.
//! `tests/README.md` says how to run one scenario alone and keep its hosts.

use std::collections::BTreeMap;
use std::net::{SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use muster_testkit::harness::{Agent, Coordinator, signal};
use muster_testkit::netns::{self, Host, Network};
use muster_testkit::traffic::{self, RequestStream};
use muster_testkit::{Backend, TestDatabase, wait_for};
use nix::sys::signal::Signal;

const PATIENCE: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(100);
const SERVERS: [&str; 3] = ["app-1", "app-2", "app-3"];

/// Where a site's ODB lives.
enum Odb {
    /// An SQLite file every host sees (they share this machine's file system).
    SharedSqlite,
    /// The machine's PostgreSQL or MariaDB, reached from a `db` host through a forwarder.
    Server(Backend),
}

/// One cluster `prod` on separate hosts: `coord` (the coordinator), `admin` (web-admin and the
/// scheduler), `lb` (the load balancer), `app-1`..`app-3` (servers) and `client`.
/// Fields drop in order: agents and their components, the coordinator, then the hosts.
struct Site {
    agents: BTreeMap<String, Agent>,
    coordinator: Coordinator,
    network: Network,
    hosts: BTreeMap<String, Host>,
    scratch: tempfile::TempDir,
    _database: Option<TestDatabase>,
}

impl Site {
    /// A coordinator on SQLite on host `coord`, and the rest.
    async fn start(odb: Odb, coordinator_args: &[&str]) -> Site {
        let scratch = tempfile::tempdir().unwrap();
        let mut network = Network::create();
        let coord = network.add_host("coord");
        let coordinator =
            Coordinator::start_on(&coord, scratch.path(), None, coordinator_args).await;
        Site::start_with(network, coord, coordinator, scratch, odb).await
    }

    /// The rest of the hosts, the cluster and its components, around a running coordinator.
    async fn start_with(
        mut network: Network,
        coord: Host,
        coordinator: Coordinator,
        scratch: tempfile::TempDir,
        odb: Odb,
    ) -> Site {
        let mut hosts = BTreeMap::from([("coord".to_owned(), coord)]);
        for name in ["admin", "lb", "app-1", "app-2", "app-3", "client"] {
            hosts.insert(name.to_owned(), network.add_host(name));
        }
        let (odb_options, database) = match odb {
            Odb::SharedSqlite => (
                vec![
                    "--odb-db-name".to_owned(),
                    scratch.path().join("odb.db").display().to_string(),
                ],
                None,
            ),
            Odb::Server(backend) => {
                let database = TestDatabase::create(backend).await;
                let url = url::Url::parse(&database.url).unwrap();
                let db = network.add_host("db");
                let port = url.port().unwrap();
                netns::forward(
                    &db.namespace,
                    SocketAddrV4::new(db.address, port),
                    SocketAddr::from(([127, 0, 0, 1], port)),
                );
                hosts.insert("db".to_owned(), db.clone());
                // The hosts reach the database through the forwarder on host `db`.
                let options = database.muster_odb_options_via(db.address, scratch.path());
                (options, Some(database))
            }
        };
        let mut create = vec!["create", "cluster", "prod"];
        create.extend(odb_options.iter().map(String::as_str));
        coordinator.ok(&create);
        let mut site = Site {
            agents: BTreeMap::new(),
            coordinator,
            network,
            hosts,
            scratch,
            _database: database,
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
        site.all_healthy(6).await;
        site.backend_is(&[("server1", "UP"), ("server2", "UP"), ("server3", "UP")])
            .await;
        site
    }

    /// Starts an agent on `host` that advertises its host name (the default): it resolves the
    /// name on its own host, and only the address reaches the coordinator and the load balancer,
    /// which could not resolve the name.
    fn start_agent(&mut self, host: &str, token: &str) {
        let mut agent = Agent::configure_on_by_name(
            &self.hosts[host],
            self.scratch.path(),
            &self.coordinator,
            token,
        );
        agent.start();
        self.agents.insert(host.to_owned(), agent);
    }

    fn frontend(&self) -> SocketAddr {
        SocketAddr::from((self.hosts["lb"].address, 11223))
    }

    fn stream(&self) -> RequestStream {
        RequestStream::start_from(Some(&self.hosts["client"].namespace), self.frontend(), 4)
    }

    fn stats_socket(&self) -> PathBuf {
        self.agents["lb"]
            .components_dir
            .join("prod/load-balancer-load-balancer/stats.sock")
    }

    fn components(&self) -> Vec<serde_json::Value> {
        self.coordinator
            .json(&["component", "list"])
            .as_array()
            .unwrap()
            .clone()
    }

    async fn all_healthy(&self, count: usize) {
        let waited = wait_for("every component healthy", PATIENCE, POLL, || {
            let components = self.components();
            let done = components.len() == count
                && components
                    .iter()
                    .all(|component| component["healthy"] == true);
            async move { done.then_some(()) }
        })
        .await;
        if let Err(error) = waited {
            panic!("{error}\n{}", self.coordinator.ok(&["status"]));
        }
    }

    /// Waits until HAProxy's backend holds exactly these (server, status) pairs.
    async fn backend_is(&self, expected: &[(&str, &str)]) {
        if let Err(error) = traffic::await_backend(&self.stats_socket(), expected, PATIENCE).await {
            panic!("{error}\n{}", self.coordinator.ok(&["status"]));
        }
    }

    /// Waits until every host is up and has applied its newest generation.
    async fn converged(&self, hosts: usize) {
        let waited = wait_for("every host to converge", PATIENCE, POLL, || {
            let all = self.coordinator.json(&["host", "list"]);
            let done = all.as_array().is_some_and(|all| {
                all.len() == hosts
                    && all.iter().all(|host| {
                        host["state"] == "up" && host["generation"] == host["applied_generation"]
                    })
            });
            async move { done.then_some(()) }
        })
        .await;
        if let Err(error) = waited {
            panic!("{error}\n{}", self.coordinator.ok(&["status"]));
        }
    }

    /// Which servers answer through the load balancer, asked from the client host.
    fn servers_reached(&self, requests: usize) -> Vec<String> {
        let mut seen: Vec<String> = (0..requests)
            .filter_map(|_| {
                let (status, body) = traffic::get_from(
                    &self.hosts["client"].namespace,
                    self.frontend(),
                    "/zato/ping",
                )?;
                let json: serde_json::Value = serde_json::from_str(&body).ok()?;
                (status == 200).then(|| json["server"].as_str().map(str::to_owned))?
            })
            .collect();
        seen.sort();
        seen.dedup();
        seen
    }

    /// How many `zato create` commands all agents ran so far.
    fn creates(&self) -> usize {
        self.agents
            .values()
            .map(|agent| agent.zato_invocations().matches("zato create").count())
            .sum()
    }
}

async fn the_seeds_distributed_cluster(odb: Odb) {
    let site = Site::start(odb, &[]).await;
    // Three servers assigned at once to a fresh ODB: the first started alone and wrote Zato's
    // internal services, then the others (at once they deadlock, and one dies: mock-zato does it
    // as the real Zato does). No server died, none logged a deadlock.
    for component in site.components() {
        assert_eq!(component["restarts"], 0, "{component}");
    }
    for agent in site.agents.values() {
        let logs = agent.zato_logs();
        assert!(!logs.contains("deadlock detected"), "{logs}");
    }
    let events = site.coordinator.json(&["events", "--cluster", "prod"]);
    let started: Vec<&serde_json::Value> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["kind"] == "cluster.servers-started")
        .collect();
    assert_eq!(started.len(), 1, "{events}");
    assert!(
        started[0]["message"]
            .as_str()
            .unwrap()
            .starts_with("server server1 on host app-1 is healthy"),
        "{events}"
    );
    assert_eq!(
        site.servers_reached(30),
        ["server1", "server2", "server3"],
        "requests through the load balancer reach all three servers"
    );
    let status = site.coordinator.ok(&["status"]);
    for host in ["admin", "lb", "app-1", "app-2", "app-3"] {
        assert!(status.contains(&format!("\n{host} ")), "{status}");
    }
    // Each agent advertised its host name, which only its own host resolves; the coordinator
    // (and so the load balancer) got the address.
    for host in site.coordinator.json(&["host", "list"]).as_array().unwrap() {
        let name = host["name"].as_str().unwrap();
        assert_eq!(
            host["advertise_address"],
            site.hosts[name].address.to_string(),
            "{host}"
        );
    }
    // Each server's row in Zato's ODB gives the address of its host, where the other servers
    // call it (server.conf's `[preferred_address] address` is the agent's advertise address).
    if let Some(database) = &site._database {
        use sqlx::{Connection as _, Row as _};
        let mut connection = sqlx::PgConnection::connect(&database.url).await.unwrap();
        let rows = sqlx::query("SELECT name, preferred_address FROM server ORDER BY name")
            .fetch_all(&mut connection)
            .await
            .unwrap();
        let addresses: Vec<(String, String)> =
            rows.iter().map(|row| (row.get(0), row.get(1))).collect();
        let expected: Vec<(String, String)> = SERVERS
            .iter()
            .enumerate()
            .map(|(index, host)| {
                (
                    format!("server{}", index + 1),
                    site.hosts[*host].address.to_string(),
                )
            })
            .collect();
        assert_eq!(addresses, expected);
    }
    // Each server runs on its own host, at its own address.
    for (index, host) in SERVERS.iter().enumerate() {
        let address = SocketAddr::from((site.hosts[*host].address, 17010));
        let (status, body) =
            traffic::get_from(&site.hosts["client"].namespace, address, "/zato/ping").unwrap();
        assert_eq!(status, 200);
        assert!(
            body.contains(&format!("\"server\":\"server{}\"", index + 1)),
            "{body}"
        );
    }
}

#[tokio::test]
async fn scenario_1_the_seeds_distributed_cluster_on_postgresql() {
    the_seeds_distributed_cluster(Odb::Server(Backend::Postgres)).await;
}

#[tokio::test]
async fn scenario_2_new_hosts_with_a_server_token_join_under_load() {
    let mut site = Site::start(Odb::SharedSqlite, &[]).await;
    let stream = site.stream();
    let token = site.coordinator.join_token("prod", &["server"], 2);
    for name in ["app-4", "app-5"] {
        let host = site.network.add_host(name);
        site.hosts.insert(name.to_owned(), host);
        site.start_agent(name, &token);
    }
    // No other command: the token's role makes them servers, and the load balancer takes them.
    site.backend_is(&[
        ("server1", "UP"),
        ("server2", "UP"),
        ("server3", "UP"),
        ("server4", "UP"),
        ("server5", "UP"),
    ])
    .await;
    let before = stream.tally();
    wait_for("requests to reach the new servers", PATIENCE, POLL, || {
        let tally = stream.tally();
        let reached = ["server4", "server5"]
            .iter()
            .all(|server| tally.by_server.get(*server).copied().unwrap_or(0) > 0);
        async move { reached.then_some(()) }
    })
    .await
    .unwrap();
    let tally = stream.stop();
    println!(
        "scale out: {} requests ({} before the new hosts served), {} failed",
        tally.succeeded, before.succeeded, tally.failed
    );
    assert_eq!(tally.failed, 0, "failed requests: {:?}", tally.failures);
    site.converged(7).await;
}

#[tokio::test]
async fn scenario_3_a_partitioned_server_host_leaves_and_rejoins_by_itself() {
    let site = Site::start(Odb::SharedSqlite, &["--heartbeat-ttl", "3s"]).await;
    // Clients that give up after 2 s: a cut-off server answers nothing, and HAProxy must try
    // another (its connect timeout, 1 s by default) before they do.
    let impatient = RequestStream::start_within(
        Some(&site.hosts["client"].namespace),
        site.frontend(),
        4,
        Duration::from_secs(2),
    );
    // Cut off the host of the server the scheduler points at, to see the scheduler move too.
    let target = wait_for("the scheduler's server", PATIENCE, POLL, || {
        let target = site.coordinator.json(&["cluster", "show", "prod"])["scheduler_target"]
            .as_str()
            .filter(|target| !target.is_empty())
            .map(str::to_owned);
        async move { target }
    })
    .await
    .unwrap();
    let index: usize = target.trim_start_matches("server").parse().unwrap();
    let host_name = SERVERS[index - 1];
    let host = site.hosts[host_name].clone();
    let cut_at = Instant::now();
    site.network.cut(&host);
    let cut_done = Instant::now();

    wait_for("the host to be marked down", PATIENCE, POLL, || {
        let down = site.coordinator.json(&["host", "show", host_name])["state"] == "down";
        async move { down.then_some(()) }
    })
    .await
    .unwrap();
    println!(
        "{host_name} marked down {:?} after it was cut off (TTL 3s)",
        cut_at.elapsed()
    );
    let mut expected: Vec<(String, &str)> = (1..=3)
        .map(|number| (format!("server{number}"), "UP"))
        .collect();
    expected[index - 1].1 = "DOWN";
    let expected_refs: Vec<(&str, &str)> = expected
        .iter()
        .map(|(name, state)| (name.as_str(), *state))
        .collect();
    site.backend_is(&expected_refs).await;
    let moved = wait_for(
        "the scheduler to move to another server",
        PATIENCE,
        POLL,
        || {
            let now = site.coordinator.json(&["cluster", "show", "prod"])["scheduler_target"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let moved = !now.is_empty() && now != target;
            async move { moved.then_some(now) }
        },
    )
    .await
    .unwrap();
    println!("the scheduler moved from {target} to {moved}");
    let reached = site.servers_reached(20);
    assert!(
        !reached.is_empty() && !reached.contains(&target),
        "{reached:?}"
    );

    site.network.heal(&host);
    site.converged(5).await;
    site.backend_is(&[("server1", "UP"), ("server2", "UP"), ("server3", "UP")])
        .await;
    assert_eq!(site.servers_reached(30), ["server1", "server2", "server3"]);
    let tally = impatient.stop();
    println!(
        "a server host cut off and healed: {} requests, {} failed (clients waiting 2 s)",
        tally.succeeded, tally.failed
    );
    assert!(tally.succeeded > 0);
    // A request under way on the host at the instant it was cut gets no answer (its response is
    // lost with the link; HAProxy cannot know it may send it again): at most one per client. Not
    // one request sent after the cut failed.
    assert_eq!(
        RequestStream::failed_sent_since(&tally, cut_done),
        0,
        "failed requests: {:?}",
        tally.failures
    );
    assert!(
        tally.failed <= 4,
        "more failures than requests under way at the cut: {:?}",
        tally.failures
    );
}

/// A PostgreSQL server of the test's own, in `directory`, on a test host's loopback.
struct ThrowawayPostgres {
    host: Host,
    data: PathBuf,
    bin: PathBuf,
}

impl ThrowawayPostgres {
    fn bin_dir() -> PathBuf {
        let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's binaries in /usr/lib/postgresql")
            .flatten()
            .map(|entry| entry.path().join("bin"))
            .filter(|bin| bin.join("postgres").exists())
            .collect();
        versions.sort();
        versions.pop().expect("a PostgreSQL installation")
    }

    fn as_postgres(&self, program: &str) -> std::process::Command {
        let mut command = self.host.command(Path::new("/usr/sbin/runuser"));
        command
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(program));
        command
    }

    fn create(host: &Host, directory: &Path) -> ThrowawayPostgres {
        let data = directory.join("pgdata");
        std::fs::create_dir_all(&data).unwrap();
        let postgres = nix::unistd::User::from_name("postgres").unwrap().unwrap();
        for path in [directory, data.as_path()] {
            nix::unistd::chown(path, Some(postgres.uid), Some(postgres.gid)).unwrap();
        }
        let server = ThrowawayPostgres {
            host: host.clone(),
            data,
            bin: Self::bin_dir(),
        };
        let output = server
            .as_postgres("initdb")
            .args(["--auth=trust", "--username=postgres", "-D"])
            .arg(&server.data)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        server.start();
        server
    }

    fn start(&self) {
        let output = self
            .as_postgres("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-t", "60", "-l"])
            .arg(self.data.join("server.log"))
            .args([
                "-o",
                &format!(
                    "-c listen_addresses=127.0.0.1 -c unix_socket_directories={}",
                    self.data.display()
                ),
            ])
            .arg("start")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn stop(&self) {
        let output = self
            .as_postgres("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-w", "-m", "fast", "stop"])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        let _ = self
            .as_postgres("pg_ctl")
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "stop"])
            .output();
    }
}

#[tokio::test]
async fn scenario_4_a_coordinator_restart_and_a_database_outage_change_nothing() {
    // The coordinator's own database: a PostgreSQL of this test's, on the coordinator's host.
    let database_dir = tempfile::tempdir().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let mut network = Network::create();
    let coord = network.add_host("coord");
    let database = ThrowawayPostgres::create(&coord, database_dir.path());
    let url = "postgres://postgres@127.0.0.1:5432/postgres";
    let coordinator = Coordinator::start_on(&coord, scratch.path(), Some(url), &[]).await;
    let mut site = Site::start_with(network, coord, coordinator, scratch, Odb::SharedSqlite).await;
    let creates = site.creates();
    let stream = site.stream();

    // The coordinator restarts: agents reconnect by themselves.
    site.coordinator.kill();
    site.coordinator.restart().await;
    site.converged(5).await;

    // Its database goes away for 30 seconds: the cluster serves on, which is checked all along
    // (every further 20 requests must come within 10 s).
    database.stop();
    let outage = Instant::now();
    let mut checks = 0;
    while outage.elapsed() < Duration::from_secs(30) {
        let served = stream.tally().succeeded;
        wait_for(
            "requests served during the outage",
            Duration::from_secs(10),
            POLL,
            || {
                let more = stream.tally().succeeded >= served + 20;
                async move { more.then_some(()) }
            },
        )
        .await
        .unwrap();
        checks += 1;
    }
    database.start();
    site.converged(5).await;
    site.all_healthy(6).await;
    let tally = stream.stop();
    println!(
        "{} requests, {} failed, across a coordinator restart and a 30 s database outage ({checks} checks)",
        tally.succeeded, tally.failed
    );
    assert_eq!(tally.failed, 0, "failed requests: {:?}", tally.failures);
    assert_eq!(site.creates(), creates, "nothing was created again");
    let log = site.agents["app-1"].log_text();
    assert!(
        log.contains("reconnecting") || log.contains("retrying"),
        "the agent lost the coordinator and came back:\n{log}"
    );
}

#[tokio::test]
async fn scenario_5_a_lost_host_is_named_with_its_components_and_since_when() {
    let mut site = Site::start(Odb::SharedSqlite, &["--heartbeat-ttl", "3s"]).await;
    let stream = site.stream();
    // app-2 is lost: its agent and its server die at once.
    let agent = site.agents.get_mut("app-2").unwrap();
    let server_pid: u32 =
        std::fs::read_to_string(agent.components_dir.join("prod/server-server2/pidfile"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
    let agent_pid = agent.pid().unwrap();
    signal(agent_pid, Signal::SIGKILL);
    signal(server_pid, Signal::SIGKILL);
    agent.kill();

    site.backend_is(&[("server1", "UP"), ("server2", "DOWN"), ("server3", "UP")])
        .await;
    let component = wait_for(
        "muster status to say server2 is down",
        PATIENCE,
        POLL,
        || {
            let found = site
                .components()
                .into_iter()
                .find(|component| component["name"] == "server2")
                .filter(|component| component["state"] == "down");
            async move { found }
        },
    )
    .await
    .unwrap();
    let host = site.coordinator.json(&["host", "show", "app-2"]);
    assert_eq!(host["state"], "down");
    let since = host["last_seen"].as_str().unwrap().to_owned();
    assert!(!since.is_empty());
    let reason = component["reason"].as_str().unwrap();
    assert!(
        reason.contains("host app-2 is down") && reason.contains(&since),
        "{reason} (last seen {since})"
    );
    assert_eq!(component["healthy"], false);
    let table = site.coordinator.ok(&["status"]);
    assert!(
        table
            .lines()
            .any(|line| line.starts_with("app-2 ") && line.contains(" down ")),
        "{table}"
    );
    assert!(table.contains("server2"), "{table}");
    assert_eq!(site.servers_reached(20), ["server1", "server3"]);
    let tally = stream.stop();
    println!(
        "host loss: {} requests, {} failed",
        tally.succeeded, tally.failed
    );
    assert_eq!(tally.failed, 0, "failed requests: {:?}", tally.failures);
}
