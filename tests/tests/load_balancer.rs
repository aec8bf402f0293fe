//! The load-balancer role end to end: a real coordinator, agents on their own loopback addresses,
//! mock-zato servers (a stand-in for Zato, which cannot be installed here) and the real HAProxy
//! the load-balancer host's agent runs. Requests go through HAProxy's frontend on port 11223.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use muster_testkit::harness::{Agent, Coordinator, http_get, signal};
use muster_testkit::traffic::{self, RequestStream};
use muster_testkit::wait_for;
use nix::sys::signal::Signal;

const PATIENCE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

/// A cluster `prod` with a load balancer on host `edge` (127.0.0.BASE) and server hosts
/// `app-1`, `app-2`, ... on the next addresses, none of them with a server yet.
struct Site {
    // Dropped in this order: the agents (and their components) before the directory.
    edge: Agent,
    hosts: Vec<Agent>,
    coordinator: Coordinator,
    base: u8,
    _scratch: tempfile::TempDir,
}

impl Site {
    async fn start(base: u8, server_hosts: usize, balancer_options: &[&str]) -> Site {
        let scratch = tempfile::tempdir().unwrap();
        let coordinator = Coordinator::start(scratch.path(), None, &[]).await;
        let odb = scratch.path().join("odb.db");
        coordinator.ok(&[
            "create",
            "cluster",
            "prod",
            "--odb-db-name",
            odb.to_str().unwrap(),
        ]);
        let mut edge = Agent::configure(
            scratch.path(),
            &coordinator,
            "edge",
            &coordinator.join_token("prod", &[], 1),
        )
        .with_address(&format!("127.0.0.{base}"));
        // The load balancer's host runs only the HAProxy binaries its own config names.
        if let Some(position) = balancer_options
            .iter()
            .position(|option| *option == "--haproxy-bin")
        {
            let config = std::fs::read_to_string(&edge.config).unwrap()
                + &format!(
                    "haproxy_bins = [\"haproxy\", \"{}\"]\n",
                    balancer_options[position + 1]
                );
            std::fs::write(&edge.config, config).unwrap();
        }
        edge.start();
        let mut hosts = Vec::new();
        for index in 1..=server_hosts {
            let name = format!("app-{index}");
            let token = coordinator.join_token("prod", &[], 1);
            let mut host = Agent::configure(scratch.path(), &coordinator, &name, &token)
                .with_address(&format!("127.0.0.{}", usize::from(base) + index));
            host.start();
            hosts.push(host);
        }
        let frontend = format!("127.0.0.{base}");
        let mut create = vec![
            "create",
            "load-balancer",
            "--cluster",
            "prod",
            "--host",
            "edge",
            "--frontend-address",
            &frontend,
        ];
        create.extend_from_slice(balancer_options);
        coordinator.ok(&create);
        let site = Site {
            edge,
            hosts,
            coordinator,
            base,
            _scratch: scratch,
        };
        site.balancer_healthy().await;
        site
    }

    /// `muster wait --cluster prod`, which must succeed within `timeout`.
    fn wait(&self, timeout: &str) {
        let waited = self
            .coordinator
            .muster(&["wait", "--cluster", "prod", "--timeout", timeout]);
        assert!(
            waited.status.success(),
            "{}",
            String::from_utf8_lossy(&waited.stderr)
        );
    }

    /// Server `server{host}`'s server.conf on host `app-{host}`.
    fn server_conf(&self, host: usize) -> String {
        self.server_file(host, "config/repo/server.conf")
    }

    /// A file of the server on `host`, by its path in the server's directory.
    fn server_file(&self, host: usize, file: &str) -> String {
        std::fs::read_to_string(
            self.hosts[host - 1]
                .components_dir
                .join(format!("prod/server-server{host}/{file}")),
        )
        .unwrap()
    }

    fn frontend(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, self.base], 11223))
    }

    fn server_address(&self, host: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, self.base + u8::try_from(host).unwrap()], 17010))
    }

    /// The process id of the mock server on `host` (its ping says it).
    fn server_pid(&self, host: usize) -> u64 {
        let (_, body) = traffic::get(self.server_address(host), "/zato/ping").unwrap();
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["pid"]
            .as_u64()
            .unwrap()
    }

    fn balancer_dir(&self) -> PathBuf {
        self.edge
            .components_dir
            .join("prod/load-balancer-load-balancer")
    }

    fn stats_socket(&self) -> PathBuf {
        self.balancer_dir().join("stats.sock")
    }

    fn master_socket(&self) -> PathBuf {
        self.balancer_dir().join("master.sock")
    }

    fn config(&self) -> String {
        std::fs::read_to_string(self.balancer_dir().join("zato.config")).unwrap()
    }

    fn master_pid(&self) -> u32 {
        std::fs::read_to_string(self.balancer_dir().join("haproxy.pid"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// The load balancer as `muster component list` shows it.
    fn balancer(&self) -> serde_json::Value {
        self.coordinator
            .json(&["component", "list"])
            .as_array()
            .unwrap()
            .iter()
            .find(|component| component["role"] == "load-balancer")
            .cloned()
            .unwrap()
    }

    async fn balancer_healthy(&self) {
        let waited = wait_for("the load balancer to be healthy", PATIENCE, POLL, || {
            let healthy = self.balancer()["healthy"] == true;
            async move { healthy.then_some(()) }
        })
        .await;
        if let Err(error) = waited {
            panic!(
                "{error}\n{}\nagent log:\n{}",
                self.coordinator.ok(&["status"]),
                self.edge.log_text()
            );
        }
    }

    /// Waits until HAProxy's backend holds exactly `expected` (server, status) pairs.
    async fn backend_is(&self, expected: &[(&str, &str)]) {
        if let Err(error) = traffic::await_backend(&self.stats_socket(), expected, PATIENCE).await {
            panic!("{error}\n{}", self.coordinator.ok(&["status"]));
        }
    }

    fn assign_server(&self, host: usize, name: &str) {
        self.coordinator.ok(&[
            "create",
            "server",
            "--cluster",
            "prod",
            "--host",
            &format!("app-{host}"),
            "--name",
            name,
        ]);
    }
}

async fn answers_ping(address: SocketAddr) -> Instant {
    wait_for(
        "the server to answer /zato/ping",
        PATIENCE,
        Duration::from_millis(10),
        || {
            let answered =
                traffic::get(address, "/zato/ping").is_some_and(|(status, _)| status == 200);
            async move { answered.then(Instant::now) }
        },
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn servers_join_the_backend_as_they_answer_and_all_get_requests() {
    let site = Site::start(41, 3, &[]).await;
    assert_eq!(
        traffic::get(site.frontend(), "/zato-lb-alive").map(|(status, _)| status),
        Some(200)
    );
    let mut expected = Vec::new();
    for host in 1..=3 {
        let name = format!("server{host}");
        site.assign_server(host, &name);
        let answered = answers_ping(site.server_address(host)).await;
        let in_backend = wait_for(
            "the server to be UP in HAProxy",
            PATIENCE,
            Duration::from_millis(10),
            || {
                let up = traffic::haproxy_servers(&site.stats_socket())
                    .get(&name)
                    .is_some_and(|state| state == "UP");
                async move { up.then(Instant::now) }
            },
        )
        .await
        .unwrap();
        let delay = in_backend.saturating_duration_since(answered);
        println!("{name}: UP in HAProxy {delay:?} after it first answered /zato/ping");
        assert!(
            delay <= Duration::from_secs(1),
            "{name} joined the backend {delay:?} after it answered"
        );
        expected.push((name, "UP"));
    }
    let expected: Vec<(&str, &str)> = expected
        .iter()
        .map(|(name, state)| (name.as_str(), *state))
        .collect();
    site.backend_is(&expected).await;

    // Round robin: requests through the frontend reach every server.
    let mut seen = BTreeSet::new();
    for _ in 0..30 {
        let (status, body) = traffic::get(site.frontend(), "/zato/ping").unwrap();
        assert_eq!(status, 200, "{body}");
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        seen.insert(json["server"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        seen,
        BTreeSet::from([
            "server1".to_owned(),
            "server2".to_owned(),
            "server3".to_owned()
        ])
    );

    // The file holds what the runtime API was told, laid out like zato.config.
    let config = site.config();
    for (host, name) in [(1, "server1"), (2, "server2"), (3, "server3")] {
        let line = format!(
            "    server http_plain--{name} 127.0.0.{}:17010 check inter 2s rise 2 fall 2",
            41 + host
        );
        assert!(config.contains(&line), "{line}\n{config}");
    }
    assert!(config.contains("# ZATO begin backend bck_http_plain\n"));
    // HAProxy's view reaches `muster status`.
    let reported = wait_for(
        "muster status to show three UP servers",
        PATIENCE,
        POLL,
        || {
            let balancer = site.balancer();
            let states: Vec<String> = balancer["backends"]
                .as_array()
                .map(|all| {
                    all.iter()
                        .map(|backend| format!("{}={}", backend["server"], backend["state"]))
                        .collect()
                })
                .unwrap_or_default();
            async move {
                (states.len() == 3 && states.iter().all(|state| state.ends_with("=\"UP\"")))
                    .then_some(states)
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(reported.len(), 3);
    let metrics = http_get(site.coordinator.http_port, "/metrics").unwrap();
    for server in ["server1", "server2", "server3"] {
        let line = format!(
            "muster_backend_server_in_rotation{{cluster=\"prod\",load_balancer=\"load-balancer\",server=\"{server}\",status=\"up\"}} 1"
        );
        assert!(metrics.contains(&line), "{line} not in:\n{metrics}");
    }
    let table = site.coordinator.ok(&["status"]);
    assert!(
        table.contains("backend of load-balancer load-balancer on host edge"),
        "{table}"
    );
    assert_eq!(
        traffic::haproxy_workers(&site.master_socket()).len(),
        1,
        "servers joined without a reload"
    );
}

#[tokio::test]
async fn servers_come_and_go_under_load_without_a_failed_request() {
    let site = Site::start(51, 3, &[]).await;
    site.assign_server(1, "server1");
    site.assign_server(2, "server2");
    site.backend_is(&[("server1", "UP"), ("server2", "UP")])
        .await;
    let stream = RequestStream::start(site.frontend(), 4);
    let master = site.master_pid();
    let mut most_workers = 0;
    for cycle in 1..=20 {
        let name = format!("extra{cycle}");
        // Added.
        site.assign_server(3, &name);
        site.backend_is(&[("server1", "UP"), ("server2", "UP"), (&name, "UP")])
            .await;
        // Drained: out of rotation first, then stopped by its host.
        site.coordinator.ok(&["host", "drain", "app-3"]);
        wait_for("the drained server to stop", PATIENCE, POLL, || {
            let stopped = site
                .coordinator
                .json(&["component", "list"])
                .as_array()
                .unwrap()
                .iter()
                .any(|component| {
                    component["name"] == name.as_str() && component["state"] == "drained"
                });
            async move { stopped.then_some(()) }
        })
        .await
        .unwrap();
        let state = traffic::haproxy_servers(&site.stats_socket())
            .get(&name)
            .cloned()
            .unwrap_or_default();
        assert!(
            state.starts_with("DRAIN") || state.starts_with("MAINT") || state.starts_with("DOWN"),
            "{name} is {state} in HAProxy once stopped"
        );
        // Re-added: back in rotation.
        site.coordinator.ok(&["host", "undrain", "app-3"]);
        site.backend_is(&[("server1", "UP"), ("server2", "UP"), (&name, "UP")])
            .await;
        // Removed.
        site.coordinator.ok(&[
            "remove",
            "server",
            "--cluster",
            "prod",
            "--host",
            "app-3",
            "--name",
            &name,
        ]);
        site.backend_is(&[("server1", "UP"), ("server2", "UP")])
            .await;
        most_workers = most_workers.max(traffic::haproxy_workers(&site.master_socket()).len());
    }
    let tally = stream.stop();
    println!(
        "{} requests through the load balancer during 20 cycles, {} failed; at most {most_workers} \
         HAProxy worker(s)",
        tally.succeeded, tally.failed
    );
    assert_eq!(tally.failed, 0, "failed requests: {:?}", tally.failures);
    assert!(tally.succeeded > 100, "{tally:?}");
    assert!(
        tally
            .by_server
            .keys()
            .any(|server| server.starts_with("extra")),
        "the cycled servers took requests too: {:?}",
        tally.by_server
    );
    assert_eq!(most_workers, 1, "no change needed a reload");
    assert_eq!(site.master_pid(), master, "HAProxy was never restarted");
}

#[tokio::test]
async fn a_killed_server_is_retried_elsewhere_and_comes_back_by_itself() {
    let mut site = Site::start(61, 2, &[]).await;
    // server1 boots for two seconds, as a real Zato server takes a while: long enough for
    // HAProxy's checks to see it down before its agent has it back.
    site.hosts[0].stop();
    site.hosts[0].env("MOCK_ZATO_START_DELAY_MS", "2000");
    site.hosts[0].start();
    site.assign_server(1, "server1");
    site.assign_server(2, "server2");
    site.backend_is(&[("server1", "UP"), ("server2", "UP")])
        .await;
    let stream = RequestStream::start(site.frontend(), 4);
    // Requests flow through both before the kill.
    wait_for(
        "the first answers through the load balancer",
        PATIENCE,
        POLL,
        || {
            let answered = stream.tally().succeeded > 0;
            async move { answered.then_some(()) }
        },
    )
    .await
    .unwrap();
    let pidfile = site.hosts[0]
        .components_dir
        .join("prod/server-server1/pidfile");
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    signal(pid, Signal::SIGKILL);
    site.backend_is(&[("server1", "DOWN"), ("server2", "UP")])
        .await;
    let during = stream.tally();
    // Its agent starts it again and HAProxy's checks bring it back, with no one's help.
    site.backend_is(&[("server1", "UP"), ("server2", "UP")])
        .await;
    let tally = stream.stop();
    println!(
        "{} requests, {} failed, while server1 was killed and came back",
        tally.succeeded, tally.failed
    );
    assert!(
        tally.succeeded > during.succeeded,
        "requests were answered while server1 was down and coming back: {} then {}",
        during.succeeded,
        tally.succeeded
    );
    assert_eq!(tally.failed, 0, "failed requests: {:?}", tally.failures);
    let restarts = site
        .coordinator
        .json(&["component", "list"])
        .as_array()
        .unwrap()
        .iter()
        .find(|component| component["name"] == "server1")
        .unwrap()["restarts"]
        .clone();
    assert_eq!(restarts, 1);
}

#[tokio::test]
async fn injected_names_are_refused_and_a_rejected_config_changes_nothing() {
    // A HAProxy that refuses every config check while a marker file exists.
    let tools = tempfile::tempdir().unwrap();
    let marker = tools.path().join("reject");
    let wrapper = tools.path().join("haproxy");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ \"$1\" = -c ] && [ -e {} ]; then\n  echo '[ALERT]    (1) : config : rejected by the test' >&2\n  exit 1\nfi\nexec {} \"$@\"\n",
            marker.display(),
            if std::path::Path::new("/usr/sbin/haproxy").exists() {
                "/usr/sbin/haproxy"
            } else {
                "haproxy"
            }
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let site = Site::start(71, 2, &["--haproxy-bin", wrapper.to_str().unwrap()]).await;

    for bad in ["server 1", "server\n1", "server#1"] {
        let refused = site.coordinator.muster(&[
            "create",
            "server",
            "--cluster",
            "prod",
            "--host",
            "app-1",
            "--name",
            bad,
        ]);
        assert!(!refused.status.success());
        let error = String::from_utf8_lossy(&refused.stderr);
        assert!(error.contains("invalid component name"), "{error}");
    }

    site.assign_server(1, "server1");
    site.backend_is(&[("server1", "UP")]).await;
    let before = site.config();
    std::fs::write(&marker, "").unwrap();
    site.assign_server(2, "server2");
    let error = wait_for("HAProxy's refusal in muster status", PATIENCE, POLL, || {
        let error = site.balancer()["last_error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        async move { error.contains("rejected by the test").then_some(error) }
    })
    .await
    .unwrap();
    assert!(
        error.contains("`haproxy -c` rejected the new config"),
        "{error}"
    );
    let table = site.coordinator.ok(&["status"]);
    assert!(table.contains("rejected by the test"), "{table}");
    assert_eq!(site.config(), before, "the file was left as it was");
    assert_eq!(
        traffic::haproxy_servers(&site.stats_socket())
            .keys()
            .collect::<Vec<_>>(),
        ["server1"],
        "and so was the running HAProxy"
    );
    assert_eq!(site.balancer()["healthy"], true, "which serves on");

    std::fs::remove_file(&marker).unwrap();
    site.backend_is(&[("server1", "UP"), ("server2", "UP")])
        .await;
    assert!(site.config().contains("http_plain--server2"));
}

#[tokio::test]
async fn restarting_the_agent_or_reloading_haproxy_keeps_the_backend_and_every_request() {
    let mut site = Site::start(81, 2, &[]).await;
    site.assign_server(1, "server1");
    site.assign_server(2, "server2");
    let both_up = [("server1", "UP"), ("server2", "UP")];
    site.backend_is(&both_up).await;
    let stream = RequestStream::start(site.frontend(), 4);
    let master = site.master_pid();

    // The agent restarts: it adopts the running HAProxy.
    site.edge.stop();
    site.edge.start();
    site.balancer_healthy().await;
    site.backend_is(&both_up).await;
    assert_eq!(site.master_pid(), master, "the agent adopted HAProxy");

    // An operator reloads HAProxy (what `systemctl reload` does): new workers, same backend.
    let workers = traffic::haproxy_workers(&site.master_socket());
    signal(master, Signal::SIGUSR2);
    wait_for("a new HAProxy worker", PATIENCE, POLL, || {
        let now = traffic::haproxy_workers(&site.master_socket());
        let renewed = !now.is_empty() && now.iter().any(|pid| !workers.contains(pid));
        async move { renewed.then_some(()) }
    })
    .await
    .unwrap();
    site.backend_is(&both_up).await;

    // The stats socket's file goes away (a clean-up script, say): the agent reaches the runtime
    // API through the master socket, and still drains and undrains a server.
    std::fs::remove_file(site.stats_socket()).unwrap();
    let reported = |server: &str| {
        site.balancer()["backends"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|backend| backend["server"] == server)
            .and_then(|backend| backend["state"].as_str().map(str::to_owned))
            .unwrap_or_default()
    };
    site.coordinator.ok(&["host", "drain", "app-2"]);
    wait_for("server2 drained and stopped", PATIENCE, POLL, || {
        let state = reported("server2");
        let stopped = site
            .coordinator
            .json(&["component", "list"])
            .as_array()
            .unwrap()
            .iter()
            .any(|component| component["name"] == "server2" && component["state"] == "drained");
        let done = stopped && !state.starts_with("UP");
        async move { done.then_some(()) }
    })
    .await
    .unwrap();
    site.coordinator.ok(&["host", "undrain", "app-2"]);
    wait_for("server2 back in rotation", PATIENCE, POLL, || {
        let up = reported("server2") == "UP" && reported("server1") == "UP";
        async move { up.then_some(()) }
    })
    .await
    .unwrap();
    let tally = stream.stop();
    println!(
        "{} requests, {} failed, across an agent restart, a HAProxy reload and a drain without the \
         stats socket",
        tally.succeeded, tally.failed
    );
    assert_eq!(tally.failed, 0, "failed requests: {:?}", tally.failures);
    assert_eq!(site.master_pid(), master);

    // HAProxy dies: the agent starts it again from its file, with the same backend.
    signal(master, Signal::SIGKILL);
    for worker in traffic::haproxy_workers(&site.master_socket()) {
        signal(worker, Signal::SIGKILL);
    }
    wait_for("a new HAProxy master", PATIENCE, POLL, || {
        let renewed = std::fs::read_to_string(site.balancer_dir().join("haproxy.pid"))
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
            .is_some_and(|pid| pid != master);
        async move { renewed.then_some(()) }
    })
    .await
    .unwrap();
    site.balancer_healthy().await;
    site.backend_is(&both_up).await;
    let balancer = site.balancer();
    assert_eq!(balancer["restarts"], 1, "{balancer}");
}

#[tokio::test]
async fn a_failed_start_is_reported_in_haproxys_words() {
    // Something else holds the frontend's address and port.
    let squatter = std::net::TcpListener::bind(("127.0.0.91", 11223)).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let coordinator = Coordinator::start(scratch.path(), None, &[]).await;
    coordinator.ok(&["create", "cluster", "prod"]);
    let mut edge = Agent::configure(
        scratch.path(),
        &coordinator,
        "edge",
        &coordinator.join_token("prod", &[], 1),
    )
    .with_address("127.0.0.91");
    edge.start();
    coordinator.ok(&[
        "create",
        "load-balancer",
        "--cluster",
        "prod",
        "--host",
        "edge",
        "--frontend-address",
        "127.0.0.91",
    ]);
    let error = wait_for("HAProxy's error in the status", PATIENCE, POLL, || {
        let balancer = coordinator.json(&["component", "list"])[0].clone();
        let error = balancer["last_error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let unhealthy = balancer["healthy"] == false;
        async move { (unhealthy && error.contains("Address already in use")).then_some(error) }
    })
    .await
    .unwrap();
    assert!(error.starts_with("HAProxy did not start"), "{error}");
    assert!(error.contains("127.0.0.91:11223"), "{error}");
    drop(squatter);
    wait_for(
        "the load balancer to start once the port is free",
        PATIENCE,
        POLL,
        || {
            let healthy = coordinator.json(&["component", "list"])[0]["healthy"] == true;
            async move { healthy.then_some(()) }
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_server_whose_host_moves_is_followed_without_a_reload() {
    let mut site = Site::start(101, 1, &[]).await;
    site.assign_server(1, "server1");
    site.backend_is(&[("server1", "UP")]).await;
    let workers = traffic::haproxy_workers(&site.master_socket());

    // The host comes back with another address; its server follows, and so does the backend.
    let host = &mut site.hosts[0];
    host.stop();
    let config = std::fs::read_to_string(&host.config).unwrap();
    std::fs::write(&host.config, config.replace("127.0.0.102", "127.0.0.109")).unwrap();
    host.start();
    let moved = wait_for(
        "HAProxy to send server1's requests to its new address",
        PATIENCE,
        POLL,
        || {
            let state =
                traffic::haproxy_command(&site.stats_socket(), "show servers state bck_http_plain");
            let moved = state.contains("http_plain--server1 127.0.0.109 ");
            async move { moved.then_some(state) }
        },
    )
    .await
    .unwrap();
    assert!(moved.contains(" 17010 "), "{moved}");
    site.backend_is(&[("server1", "UP")]).await;
    let (status, body) = traffic::get(site.frontend(), "/zato/ping").unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(
        site.config()
            .contains("http_plain--server1 127.0.0.109:17010")
    );
    assert_eq!(
        traffic::haproxy_workers(&site.master_socket()),
        workers,
        "changed through the runtime API, not a reload"
    );
}

#[tokio::test]
async fn new_check_settings_reload_haproxy_without_a_failed_request() {
    let site = Site::start(111, 2, &[]).await;
    site.assign_server(1, "server1");
    site.assign_server(2, "server2");
    let both_up = [("server1", "UP"), ("server2", "UP")];
    site.backend_is(&both_up).await;
    let master = site.master_pid();
    let workers = traffic::haproxy_workers(&site.master_socket());
    let stream = RequestStream::start(site.frontend(), 4);

    let said = site.coordinator.ok(&[
        "configure",
        "load-balancer",
        "--cluster",
        "prod",
        "--host",
        "edge",
        "--check-inter",
        "3s",
        "--check-fall",
        "3",
    ]);
    assert!(
        said.contains("checking every 3000ms (rise 2, fall 3)"),
        "{said}"
    );
    wait_for("the new config in zato.config", PATIENCE, POLL, || {
        let written = site.config().contains("check inter 3s rise 2 fall 3");
        async move { written.then_some(()) }
    })
    .await
    .unwrap();
    wait_for("HAProxy's new worker", PATIENCE, POLL, || {
        let now = traffic::haproxy_workers(&site.master_socket());
        let renewed = now.len() == 1 && !workers.contains(&now[0]);
        async move { renewed.then_some(()) }
    })
    .await
    .unwrap();
    site.backend_is(&both_up).await;
    // Let the stream run on the new worker for a moment's worth of requests.
    let before = stream.tally().succeeded;
    wait_for("requests served by the new worker", PATIENCE, POLL, || {
        let more = stream.tally().succeeded > before + 50;
        async move { more.then_some(()) }
    })
    .await
    .unwrap();
    let tally = stream.stop();
    println!(
        "{} requests, {} failed, across a reload for new check settings",
        tally.succeeded, tally.failed
    );
    assert_eq!(tally.failed, 0, "failed requests: {:?}", tally.failures);
    assert_eq!(site.master_pid(), master, "reloaded, not restarted");
    let balancer = site.balancer();
    assert_eq!(balancer["load_balancer"]["check_inter_ms"], 3000);
    assert_eq!(balancer["last_error"], "", "{balancer}");
}

/// `muster rollout restart` of `site`'s three servers (to restart epoch `epoch`, at `pace`: `one
/// at a time`, ...) under a stream of requests through the load balancer: every server's
/// process replaced, none of the requests failed. The most servers out of rotation at once.
async fn rolled_under_load(site: &Site, epoch: u64, pace: &str) -> usize {
    let before: Vec<u64> = (1..=3).map(|host| site.server_pid(host)).collect();
    let stream = RequestStream::start(site.frontend(), 4);
    let started = Instant::now();
    let said = site
        .coordinator
        .ok(&["rollout", "restart", "--cluster", "prod"]);
    assert!(
        said.contains(&format!(
            "(restart epoch {epoch}): server1, server2, server3; {pace}"
        )),
        "{said}"
    );
    let (most_out, out_for) = out_of_rotation_until_restarted(site).await;
    println!(
        "figure: 3 mock servers restarted {pace} in {:?}; out of rotation: {out_for}",
        started.elapsed(),
    );
    let tally = stream.stop();
    println!(
        "{} requests, {} failed, across a rolling restart {pace}",
        tally.succeeded, tally.failed
    );
    assert_eq!(tally.failed, 0, "failed requests: {:?}", tally.failures);
    for (index, old) in before.iter().enumerate() {
        assert_ne!(
            *old,
            site.server_pid(index + 1),
            "server{} was restarted",
            index + 1
        );
    }
    most_out
}

/// Watches `site`'s HAProxy until `muster rollout status` says its three servers restarted, and
/// `muster wait` says they are back: the most servers out of rotation (not UP) at once, and how
/// long each was out, to the poll.
async fn out_of_rotation_until_restarted(site: &Site) -> (usize, String) {
    let mut most_out = 0;
    let mut out_since: BTreeMap<String, Instant> = BTreeMap::new();
    let mut out_for: BTreeMap<String, Duration> = BTreeMap::new();
    wait_for("every server restarted", PATIENCE * 2, POLL, || {
        let servers = traffic::haproxy_servers(&site.stats_socket());
        for (name, status) in &servers {
            if status.starts_with("UP") {
                if let Some(since) = out_since.remove(name) {
                    *out_for.entry(name.clone()).or_default() += since.elapsed();
                }
            } else {
                out_since.entry(name.clone()).or_insert_with(Instant::now);
            }
        }
        let out = servers
            .values()
            .filter(|status| !status.starts_with("UP"))
            .count();
        most_out = most_out.max(out);
        let progress = site
            .coordinator
            .json(&["rollout", "status", "--cluster", "prod"]);
        let done = progress["restarted"] == 3;
        async move { done.then_some(()) }
    })
    .await
    .unwrap_or_else(|error| {
        panic!(
            "{error}\n{}\n{}",
            site.coordinator
                .ok(&["rollout", "status", "--cluster", "prod"]),
            site.coordinator.ok(&["status"])
        )
    });
    site.wait("60s");
    // Back in rotation by now (`muster wait` waits for that too).
    for (name, since) in out_since {
        *out_for.entry(name).or_default() += since.elapsed();
    }
    let out_for = out_for
        .iter()
        .map(|(name, out)| format!("{name} {out:.1?}"))
        .collect::<Vec<_>>()
        .join(", ");
    (most_out, out_for)
}

/// `muster rollout restart`: every server's process is replaced, one server at a time, each out
/// of rotation while it restarts, while requests through the load balancer keep being answered,
/// none failing; `muster wait` returns once all have restarted, and `muster rollout status` says
/// so. A paused turn holds the next one until it is resumed. With `max_unavailable` 2, two
/// servers are out at once, never three, and still no request fails.
#[tokio::test]
async fn a_rolling_restart_replaces_every_server_one_at_a_time_without_a_failed_request_and_holds_while_paused()
 {
    let site = Site::start(121, 3, &[]).await;
    for host in 1..=3 {
        site.assign_server(host, &format!("server{host}"));
    }
    let all_up = [("server1", "UP"), ("server2", "UP"), ("server3", "UP")];
    site.backend_is(&all_up).await;
    let pid = |host: usize| site.server_pid(host);
    // Watched through HAProxy until every server has restarted: never more than one out of
    // rotation at once.
    let most_out = rolled_under_load(&site, 1, "one at a time").await;
    assert!(
        most_out <= 1,
        "{most_out} servers were out of rotation at once"
    );
    site.backend_is(&all_up).await;
    let after: Vec<u64> = (1..=3).map(pid).collect();
    let table = site
        .coordinator
        .ok(&["rollout", "status", "--cluster", "prod"]);
    assert!(
        table.starts_with("cluster prod: rolling restart 1: 3/3 servers restarted"),
        "{table}"
    );

    // Paused first, a rolling restart holds: once every host applied what it was given, every
    // server still runs its process, all in rotation; resumed, it goes on.
    let said = site
        .coordinator
        .ok(&["rollout", "pause", "--cluster", "prod"]);
    assert!(said.contains("restart turn paused"), "{said}");
    site.coordinator
        .ok(&["rollout", "restart", "--cluster", "prod"]);
    wait_for("every host to apply its plan", PATIENCE, POLL, || {
        let hosts = site.coordinator.json(&["host", "list"]);
        let applied = hosts.as_array().unwrap().iter().all(|host| {
            host["generation"] == host["applied_generation"] && host["generation"].is_u64()
        });
        async move { applied.then_some(()) }
    })
    .await
    .unwrap();
    site.backend_is(&all_up).await;
    assert_eq!((1..=3).map(pid).collect::<Vec<_>>(), after, "held");
    let table = site
        .coordinator
        .ok(&["rollout", "status", "--cluster", "prod"]);
    assert!(
        table.starts_with("cluster prod: rolling restart 2: 0/3 servers restarted (paused"),
        "{table}"
    );
    site.coordinator
        .ok(&["rollout", "resume", "--cluster", "prod"]);
    site.wait("120s");
    let resumed: Vec<u64> = (1..=3).map(pid).collect();
    assert!(
        resumed.iter().zip(&after).all(|(new, old)| new != old),
        "every server restarted once resumed"
    );

    // New server settings: a rolling restart under load, after which every server runs with
    // them (in its server.conf, which Zato reads at start), none failing.
    let stream = RequestStream::start(site.frontend(), 4);
    let said = site.coordinator.ok(&[
        "configure",
        "server",
        "--cluster",
        "prod",
        "--set",
        "main.gunicorn_workers=2",
        "--set",
        "env.APP_MODE=blue",
        "--set",
        "logging.zato=debug",
    ]);
    assert!(
        said.contains("main.gunicorn_workers  2")
            && said.contains("rolling restart (restart epoch 3): server1, server2, server3"),
        "{said}"
    );
    site.wait("120s");
    site.backend_is(&all_up).await;
    let tally = stream.stop();
    assert_eq!(tally.failed, 0, "failed requests: {:?}", tally.failures);
    let configured: Vec<u64> = (1..=3).map(pid).collect();
    for host in 1..=3 {
        assert_ne!(
            configured[host - 1],
            resumed[host - 1],
            "server{host} restarted"
        );
        let server_conf = site.server_conf(host);
        assert!(
            server_conf.contains("gunicorn_workers=2\n")
                && server_conf.contains("[os_environ]\nAPP_MODE=blue\n"),
            "server{host}: {server_conf}"
        );
        let logging = site.server_file(host, "config/repo/logging.conf");
        assert!(
            logging.contains("    zato:\n        level: DEBUG\n"),
            "server{host}: {logging}"
        );
        let log = site.server_file(host, "logs/server.log");
        assert!(
            log.contains(" - DEBUG - "),
            "server{host} logs at DEBUG: {log}"
        );
    }
    // Undone: the settings before, rolled out the same way.
    let said = site
        .coordinator
        .ok(&["rollout", "undo", "--cluster", "prod"]);
    assert!(
        said.contains("cluster prod's servers run with Zato's defaults")
            && said.contains("rolling restart (restart epoch 4)"),
        "{said}"
    );
    site.wait("120s");
    for host in 1..=3 {
        let server_conf = site.server_conf(host);
        assert!(
            server_conf.contains("gunicorn_workers=1\n") && !server_conf.contains("APP_MODE"),
            "server{host}: {server_conf}"
        );
        let logging = site.server_file(host, "config/repo/logging.conf");
        assert!(
            logging.contains("    zato:\n        level: INFO\n"),
            "server{host}: {logging}"
        );
    }
    let refused = site.coordinator.muster(&[
        "configure",
        "server",
        "--cluster",
        "prod",
        "--set",
        "main.gunicorn_bind=0.0.0.0:1",
    ]);
    assert!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains("main.gunicorn_bind"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // Two at a time: server1 and server2 out of rotation together, then server3; never all
    // three, none failing. None at a time is refused, by name.
    let refused = site.coordinator.muster(&[
        "configure",
        "rollout",
        "--cluster",
        "prod",
        "--max-unavailable",
        "0",
    ]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("max_unavailable") && stderr.contains("\"0\""),
        "{stderr}"
    );
    let said = site.coordinator.ok(&[
        "configure",
        "rollout",
        "--cluster",
        "prod",
        "--max-unavailable",
        "2",
    ]);
    assert!(said.contains("max_unavailable 2"), "{said}");
    let most_out = rolled_under_load(&site, 5, "up to 2 at a time").await;
    assert_eq!(most_out, 2, "servers out of rotation at once, at most");
}

/// A server setting with which a server never becomes healthy (`main.gunicorn_timeout=1`: seen
/// with the real Zato, every worker is killed before it boots): the rollout stops at the first
/// server. Without auto_revert the restart turn is paused with the reason, `muster wait` says
/// it at once and no other server restarts; with it, the settings before come back, only that
/// server restarts again, and `muster wait` says what was undone. Then a rolling restart with
/// `min_healthy_time` holds each restarted server out of rotation before the next, and goes on
/// after the coordinator is killed and started again. No request through the load balancer
/// fails meanwhile.
#[tokio::test]
async fn a_setting_that_never_becomes_healthy_pauses_the_rollout_or_is_reverted_without_a_failed_request()
 {
    let mut site = Site::start(131, 3, &[]).await;
    for host in 1..=3 {
        site.assign_server(host, &format!("server{host}"));
    }
    let all_up = [("server1", "UP"), ("server2", "UP"), ("server3", "UP")];
    site.backend_is(&all_up).await;
    let addresses: Vec<SocketAddr> = (1..=3).map(|host| site.server_address(host)).collect();
    let pid = |host: usize| {
        let (_, body) = traffic::get(addresses[host - 1], "/zato/ping")?;
        serde_json::from_str::<serde_json::Value>(&body).ok()?["pid"].as_u64()
    };
    let before: Vec<Option<u64>> = (1..=3).map(pid).collect();
    let said = site.coordinator.ok(&[
        "configure",
        "rollout",
        "--cluster",
        "prod",
        "--healthy-deadline",
        "10s",
    ]);
    assert!(
        said.contains("healthy_deadline 10s, min_healthy_time 0s, auto_revert off"),
        "{said}"
    );
    let stream = RequestStream::start(site.frontend(), 4);
    site.coordinator.ok(&[
        "configure",
        "server",
        "--cluster",
        "prod",
        "--set",
        "main.gunicorn_timeout=1",
    ]);
    let waited = site
        .coordinator
        .muster(&["wait", "--cluster", "prod", "--timeout", "120s"]);
    let stderr = String::from_utf8_lossy(&waited.stderr);
    assert_eq!(waited.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("rollout is paused: server1 on app-1 not healthy")
            && stderr.contains("(healthy_deadline 10s)"),
        "{stderr}"
    );
    let status = site
        .coordinator
        .ok(&["rollout", "status", "--cluster", "prod"]);
    assert!(
        status.contains("(paused: `muster rollout resume` goes on)")
            && status.contains("stopped: server1 on app-1"),
        "{status}"
    );
    assert_eq!(
        (pid(2), pid(3)),
        (before[1], before[2]),
        "the other servers were not restarted"
    );
    let log = std::fs::read_to_string(
        site.hosts[0]
            .components_dir
            .join("prod/server-server1/logs/server.log"),
    )
    .unwrap();
    assert!(log.contains("WORKER TIMEOUT (pid:"), "{log}");
    let events = site
        .coordinator
        .json(&["events", "--cluster", "prod", "--limit", "50"]);
    assert!(
        events.as_array().unwrap().iter().any(|event| {
            event["kind"] == "cluster.rollout-paused"
                && event["message"]
                    .as_str()
                    .unwrap()
                    .contains("server1 on app-1")
        }),
        "{events}"
    );

    // With auto_revert, resumed: the settings before come back; server1 alone restarts again.
    site.coordinator.ok(&[
        "configure",
        "rollout",
        "--cluster",
        "prod",
        "--auto-revert",
        "true",
    ]);
    site.coordinator
        .ok(&["rollout", "resume", "--cluster", "prod"]);
    let waited = site
        .coordinator
        .muster(&["wait", "--cluster", "prod", "--timeout", "120s"]);
    let stderr = String::from_utf8_lossy(&waited.stderr);
    assert_eq!(waited.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("auto_revert undid the change, server1 on app-1 not healthy"),
        "{stderr}"
    );
    site.backend_is(&all_up).await;
    let cluster = site.coordinator.json(&["cluster", "show", "prod"]);
    assert_eq!(
        cluster["server_settings"],
        serde_json::json!({}),
        "{cluster}"
    );
    assert!(
        !site.server_conf(1).contains("gunicorn_timeout=1\n"),
        "{}",
        site.server_conf(1)
    );
    assert_ne!(
        pid(1),
        before[0],
        "server1 restarted with the settings before"
    );
    assert_eq!(
        (pid(2), pid(3)),
        (before[1], before[2]),
        "the servers that never ran the change were never restarted"
    );
    let status = site
        .coordinator
        .ok(&["rollout", "status", "--cluster", "prod"]);
    assert!(
        status.starts_with("cluster prod: rolling restart 2: 3/3 servers restarted\n")
            && status.contains("\nreverted: server1 on app-1 not healthy")
            && status.contains("server2  app-2  0      unchanged"),
        "{status}"
    );
    // `muster wait` goes on saying it until the revert is acknowledged.
    assert_eq!(
        site.coordinator
            .muster(&["wait", "--cluster", "prod", "--timeout", "60s"])
            .status
            .code(),
        Some(1)
    );
    site.coordinator
        .ok(&["rollout", "resume", "--cluster", "prod"]);
    site.wait("60s");

    // With min_healthy_time, a restarted server answers but stays drained in HAProxy, and the
    // next server keeps its process, until it has been healthy that long; then the next goes.
    // The coordinator is killed during the hold and started again: the rollout, kept in its
    // store, goes on where it was.
    site.coordinator.ok(&[
        "configure",
        "rollout",
        "--cluster",
        "prod",
        "--min-healthy-time",
        "3s",
    ]);
    let before_hold: Vec<Option<u64>> = (1..=3).map(pid).collect();
    site.coordinator
        .ok(&["rollout", "restart", "--cluster", "prod"]);
    wait_for(
        "server1 restarted, answering and held out of rotation while server2 waits",
        PATIENCE,
        POLL,
        || {
            let restarted = pid(1).is_some_and(|new| Some(new) != before_hold[0]);
            let held = traffic::haproxy_servers(&site.stats_socket())
                .get("server1")
                .is_some_and(|status| status == "DRAIN");
            let waiting = pid(2) == before_hold[1];
            async move { (restarted && held && waiting).then_some(()) }
        },
    )
    .await
    .unwrap();
    site.coordinator.kill();
    site.coordinator.restart().await;
    site.wait("120s");
    site.backend_is(&all_up).await;
    let after_hold: Vec<Option<u64>> = (1..=3).map(pid).collect();
    for host in 1..=3 {
        assert_ne!(
            after_hold[host - 1],
            before_hold[host - 1],
            "server{host} restarted"
        );
    }
    let tally = stream.stop();
    println!(
        "{} requests, {} failed, across a failed rollout, its revert and a held rolling restart \
         with the coordinator killed and started again",
        tally.succeeded, tally.failed
    );
    assert_eq!(tally.failed, 0, "failed requests: {:?}", tally.failures);
}

/// A switch of Zato installation (`zato.install`, a name each server host's agent.toml gives a
/// `zato` command; here a copy of mock-zato at another path): refused while a server's host
/// lacks it, naming the host; then rolled out like any server setting, each server started
/// again by the named installation's command, while requests through the load balancer keep
/// being answered, none failing; and back, by unsetting it.
#[tokio::test]
async fn a_switch_of_zato_installation_rolls_without_a_failed_request() {
    let mut site = Site::start(141, 2, &[]).await;
    // A second installation on app-1 only, at first.
    let next = site._scratch.path().join("zato-next/code/bin/zato");
    std::fs::create_dir_all(next.parent().unwrap()).unwrap();
    std::fs::copy(
        muster_testkit::harness::workspace_binary("mock-zato"),
        &next,
    )
    .unwrap();
    let with_next = |agent: &mut Agent| {
        agent.stop();
        let config = std::fs::read_to_string(&agent.config).unwrap()
            + &format!("[zato_installs]\nnext = \"{}\"\n", next.display());
        std::fs::write(&agent.config, config).unwrap();
        agent.start();
    };
    with_next(&mut site.hosts[0]);
    site.assign_server(1, "server1");
    site.assign_server(2, "server2");
    let both_up = [("server1", "UP"), ("server2", "UP")];
    site.backend_is(&both_up).await;
    let shown = site.coordinator.ok(&["host", "show", "app-1"]);
    assert!(shown.contains("default, next"), "{shown}");

    let switch = [
        "configure",
        "server",
        "--cluster",
        "prod",
        "--set",
        "zato.install=next",
    ];
    let refused = site.coordinator.muster(&switch);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && stderr.contains(
                "zato.install \"next\": host app-2 (server server2) has no Zato installation of \
                 that name; its agent has default"
            ),
        "{stderr}"
    );
    with_next(&mut site.hosts[1]);
    wait_for("app-2 to report its installations", PATIENCE, POLL, || {
        let host = site.coordinator.json(&["host", "show", "app-2"]);
        let reported = host["zato_installs"] == serde_json::json!(["default", "next"]);
        async move { reported.then_some(()) }
    })
    .await
    .unwrap();

    let program =
        |host: usize| std::fs::read_link(format!("/proc/{}/exe", site.server_pid(host))).unwrap();
    let stream = RequestStream::start(site.frontend(), 4);
    let said = site.coordinator.ok(&switch);
    assert!(
        said.contains("zato.install  next")
            && said.contains("rolling restart (restart epoch 1): server1, server2"),
        "{said}"
    );
    site.wait("120s");
    site.backend_is(&both_up).await;
    for host in 1..=2 {
        assert_eq!(
            program(host),
            next,
            "server{host} runs the next installation"
        );
    }
    // Back to each host's own, by unsetting it.
    site.coordinator.ok(&[
        "configure",
        "server",
        "--cluster",
        "prod",
        "--unset",
        "zato.install",
    ]);
    site.wait("120s");
    site.backend_is(&both_up).await;
    let tally = stream.stop();
    println!(
        "{} requests, {} failed, across two switches of Zato installation",
        tally.succeeded, tally.failed
    );
    assert_eq!(tally.failed, 0, "failed requests: {:?}", tally.failures);
    for host in 1..=2 {
        assert_eq!(
            program(host),
            muster_testkit::harness::workspace_binary("mock-zato"),
            "server{host} runs the host's own installation again"
        );
    }
}
