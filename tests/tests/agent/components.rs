//! A component's life on one host: created, started, kept through outages, re-pointed at the
//! scheduler, archived when unassigned, and converged after the agent itself was killed.

use super::*;

#[tokio::test]
async fn an_assigned_server_is_created_started_and_kept_through_outages() {
    let scratch = tempfile::tempdir().unwrap();
    let (mut coordinator, mut agent) = cluster_with_agent(scratch.path(), &[]).await;
    let port = free_port();

    let assigned_at = Instant::now();
    coordinator.ok(&[
        "create",
        "server",
        "--cluster",
        "prod",
        "--host",
        "app-1",
        "--port",
        &port.to_string(),
    ]);
    wait_for(
        "the agent to act on the assignment",
        PATIENCE,
        Duration::from_millis(10),
        || {
            let started = agent.zato_invocations().contains("zato create odb");
            async move { started.then_some(()) }
        },
    )
    .await
    .unwrap();
    println!(
        "figure: assignment reached the agent and its first zato command ran after {:?}",
        assigned_at.elapsed()
    );

    let pong = wait_for_ping(port, "server1 to answer /zato/ping").await;
    assert_eq!(
        (
            pong["server"].as_str(),
            pong["cluster"].as_str(),
            pong["mock"].as_bool()
        ),
        (Some("server1"), Some("prod"), Some(true))
    );
    let component = wait_for_component(&coordinator, "server1", "server1 reported healthy", |c| {
        c["healthy"] == true
    })
    .await;
    assert_eq!(component["state"], "running");

    // The seed order ran once, with secrets only on the command line and masked in the log.
    let invocations = agent.zato_invocations();
    let order: Vec<&str> = invocations
        .lines()
        .filter_map(|line| {
            if line.contains("zato create cluster ") && line.ends_with(" prod") {
                return Some("create cluster prod");
            }
            ["create odb", "create server"]
                .into_iter()
                .find(|step| line.contains(step))
        })
        .collect();
    assert_eq!(
        order,
        ["create odb", "create cluster prod", "create server"],
        "{invocations}"
    );
    assert!(
        invocations.contains("--secret-key=***") && invocations.contains("--jwt-secret=***"),
        "{invocations}"
    );
    let server_dir = agent.components_dir.join("prod/server-server1");
    // Started once: a second `zato start` before the first process wrote its pidfile would have
    // made a second process (mock-zato writes it a second after start returns, as Zato does).
    let server_invocations = std::fs::read_to_string(server_dir.join("mock-zato.log")).unwrap();
    let starts = server_invocations
        .lines()
        .filter(|line| line.contains(" zato start "))
        .count();
    assert_eq!(starts, 1, "{server_invocations}");
    assert!(
        server_dir.join("config/repo/user-conf").is_dir(),
        "Zato's user-conf symlink points into the renamed directory"
    );
    let server_conf = std::fs::read_to_string(server_dir.join("config/repo/server.conf")).unwrap();
    assert!(
        server_conf.contains(&format!("gunicorn_bind=0.0.0.0:{port}")),
        "{server_conf}"
    );
    let first_pid = pong["pid"].as_u64().unwrap();

    // `host show` tells everything about the host, and what runs on it.
    let shown = coordinator.ok(&["host", "show", "app-1"]);
    let rows: Vec<Vec<&str>> = shown
        .lines()
        .map(|line| line.split_whitespace().collect())
        .collect();
    for expected in [["name", "app-1"], ["state", "up"], ["address", "127.0.0.1"]] {
        assert!(
            rows.contains(&expected.to_vec()),
            "{expected:?} not in:\n{shown}"
        );
    }
    assert!(shown.contains("server1"), "{shown}");
    assert!(shown.contains("running"), "{shown}");

    // `muster wait` returns at once for a converged cluster, and gives up on one that cannot
    // converge (its server's host never enrolls), naming what it waited for.
    let waited = coordinator.ok(&["wait", "--cluster", "prod", "--timeout", "30s"]);
    assert_eq!(
        waited.trim(),
        "cluster prod: 1/1 healthy, every server in rotation"
    );
    coordinator.ok(&["create", "cluster", "stuck"]);
    coordinator.ok(&["create", "server", "--cluster", "stuck", "--host", "ghost"]);
    let stuck = coordinator.muster(&["wait", "--cluster", "stuck", "--timeout", "2s"]);
    let stuck_error = text(&stuck.stderr);
    assert_eq!(stuck.status.code(), Some(7), "{stuck_error}");
    assert!(
        stuck_error.contains("cluster stuck did not converge within 2s")
            && stuck_error.contains(
                "server server1 on ghost (pending: host ghost has not enrolled: no agent has \
                 joined with that name)"
            ),
        "{stuck_error}"
    );
    coordinator.ok(&["cluster", "delete", "stuck", "--yes"]);

    // The coordinator dies: the server keeps answering.
    let seen_before = coordinator.json(&["host", "show", "app-1"])["last_seen"]
        .as_str()
        .map(str::to_owned);
    coordinator.kill();
    assert_eq!(ping(port).unwrap()["pid"].as_u64(), Some(first_pid));

    // The agent restarts while the coordinator is down: it resumes from its ledger.
    let creates_before = creates_in(&agent.zato_invocations());
    assert!(
        agent.stop().unwrap().success(),
        "the agent stops cleanly on SIGTERM"
    );
    assert_eq!(
        ping(port).unwrap()["pid"].as_u64(),
        Some(first_pid),
        "components outlive the agent"
    );
    agent.start();
    wait_for("the agent to start from its ledger", PATIENCE, POLL, || {
        let log = agent.log_text();
        async move { log.contains("starting from the ledger").then_some(()) }
    })
    .await
    .unwrap();
    wait_for(
        "the agent's first pass after its restart",
        PATIENCE,
        POLL,
        || {
            let log = agent.log_text();
            async move { (log.matches("host status").count() >= 2).then_some(()) }
        },
    )
    .await
    .unwrap();
    assert_eq!(
        creates_in(&agent.zato_invocations()),
        creates_before,
        "nothing was created again"
    );
    assert_eq!(
        ping(port).unwrap()["pid"].as_u64(),
        Some(first_pid),
        "nothing was restarted"
    );

    // The coordinator comes back: the host reports again, and nothing was restarted.
    coordinator.restart().await;
    wait_for(
        "app-1 to report to the restarted coordinator",
        PATIENCE,
        Duration::from_millis(200),
        || {
            let host = coordinator.json(&["host", "show", "app-1"]);
            let fresh = host["last_seen"].as_str().map(str::to_owned) != seen_before
                && host["state"] == "up";
            async move { fresh.then_some(()) }
        },
    )
    .await
    .unwrap();
    let component = wait_for_component(
        &coordinator,
        "server1",
        "server1 healthy after the outage",
        |c| c["healthy"] == true,
    )
    .await;
    assert_eq!(component["restarts"], 0);
    assert_eq!(ping(port).unwrap()["pid"].as_u64(), Some(first_pid));
    assert_eq!(creates_in(&agent.zato_invocations()), creates_before);

    // kill -9 the component: the agent restarts it and reports the restart.
    signal(u32::try_from(first_pid).unwrap(), Signal::SIGKILL);
    let restarted = wait_for("a new server1 process", PATIENCE, POLL, || {
        let pid = ping(port)
            .and_then(|pong| pong["pid"].as_u64())
            .filter(|pid| *pid != first_pid);
        async move { pid }
    })
    .await
    .unwrap();
    assert_ne!(restarted, first_pid);
    wait_for_component(&coordinator, "server1", "the restart to be reported", |c| {
        c["restarts"] == 1 && c["healthy"] == true
    })
    .await;
    // The count survives the agent's own restart (it was 0 again after one).
    let reported_before = coordinator.json(&["host", "show", "app-1"])["last_seen"]
        .as_str()
        .map(str::to_owned);
    assert!(agent.stop().unwrap().success());
    agent.start();
    wait_for("a report of the restarted agent", PATIENCE, POLL, || {
        let fresh = coordinator.json(&["host", "show", "app-1"])["last_seen"]
            .as_str()
            .map(str::to_owned)
            != reported_before;
        async move { fresh.then_some(()) }
    })
    .await
    .unwrap();
    let component = wait_for_component(&coordinator, "server1", "server1 healthy again", |c| {
        c["healthy"] == true
    })
    .await;
    assert_eq!(component["restarts"], 1, "{component}");
    let events = coordinator.json(&["events", "--cluster", "prod"]);
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|event| event["kind"] == "component.restarted" && event["host"] == "app-1"),
        "{events}"
    );

    // No secret of the cluster reached the agent's log or the coordinator's.
    let secrets_store = cluster_secrets(&coordinator).await;
    for secret in secrets_store {
        assert!(
            !agent.log_text().contains(&secret),
            "the agent's log holds a secret"
        );
        assert!(
            !coordinator.log_text().contains(&secret),
            "the coordinator's log holds a secret"
        );
        assert!(
            !agent.zato_invocations().contains(&secret),
            "the zato invocation log holds a secret"
        );
    }
}

#[tokio::test]
async fn an_agent_killed_while_creating_converges_on_its_next_start() {
    let scratch = tempfile::tempdir().unwrap();
    let (coordinator, mut agent) = cluster_with_agent(scratch.path(), &[]).await;
    // Bootstrap first, with a fast mock, so the slow create below is the server's.
    first_server(&coordinator).await;

    agent.stop();
    agent.env("MOCK_ZATO_CREATE_DELAY_MS", "3000");
    agent.start();
    let port = free_port();
    coordinator.ok(&[
        "create",
        "server",
        "--cluster",
        "prod",
        "--host",
        "app-1",
        "--name",
        "server2",
        "--port",
        &port.to_string(),
    ]);
    let half_made = agent.components_dir.join("prod/.creating-server-server2");
    wait_for("the create to be under way", PATIENCE, POLL, || {
        let under_way = half_made.join("config/repo/server.conf").exists();
        async move { under_way.then_some(()) }
    })
    .await
    .unwrap();
    agent.kill();
    assert!(
        !agent.components_dir.join("prod/server-server2").exists(),
        "nothing half-made is in place"
    );

    agent.env("MOCK_ZATO_CREATE_DELAY_MS", "0");
    agent.start();
    let pong = wait_for_ping(port, "server2 after the interrupted create").await;
    assert_eq!(pong["server"], "server2");
    assert!(
        agent
            .components_dir
            .join("prod/server-server2/.zato-info")
            .exists()
    );
    assert!(!half_made.exists(), "no half-made directory is left");
    wait_for_component(&coordinator, "server2", "server2 reported healthy", |c| {
        c["healthy"] == true
    })
    .await;
}

#[tokio::test]
async fn servers_follow_the_scheduler_and_unassigned_components_are_archived() {
    let scratch = tempfile::tempdir().unwrap();
    let (coordinator, agent) = cluster_with_agent(scratch.path(), &[]).await;
    let (server_port, scheduler_port, dashboard_port) = (free_port(), free_port(), free_port());
    coordinator.ok(&[
        "create",
        "server",
        "--cluster",
        "prod",
        "--host",
        "app-1",
        "--port",
        &server_port.to_string(),
    ]);
    let first_pid = wait_for_ping(server_port, "server1").await["pid"].as_u64();

    coordinator.ok(&[
        "create",
        "scheduler",
        "--cluster",
        "prod",
        "--host",
        "app-1",
        "--port",
        &scheduler_port.to_string(),
    ]);
    coordinator.ok(&[
        "create",
        "web-admin",
        "--cluster",
        "prod",
        "--host",
        "app-1",
        "--port",
        &dashboard_port.to_string(),
    ]);
    let scheduler = wait_for_ping(scheduler_port, "the scheduler").await;
    assert_eq!(
        (
            scheduler["component"].as_str(),
            scheduler["cluster"].as_str()
        ),
        (Some("scheduler"), Some("prod"))
    );
    assert_eq!(
        scheduler["detail"]["server_port"],
        server_port.to_string(),
        "the scheduler points at server1"
    );
    let dashboard = wait_for_ping(dashboard_port, "web-admin").await;
    assert_eq!(dashboard["component"], "web-admin");

    // The server learns the scheduler's address and restarts with it.
    let server_conf = agent
        .components_dir
        .join("prod/server-server1/config/repo/server.conf");
    wait_for("server.conf to name the scheduler", PATIENCE, POLL, || {
        let conf = std::fs::read_to_string(&server_conf).unwrap_or_default();
        let expected = format!(
            "scheduler_host=127.0.0.1\nscheduler_port={scheduler_port}\nscheduler_use_tls=False"
        );
        async move { conf.contains(&expected).then_some(()) }
    })
    .await
    .unwrap();
    let restarted = wait_for(
        "server1 restarted with its new config",
        PATIENCE,
        POLL,
        || {
            let pong = ping(server_port).filter(|pong| pong["pid"].as_u64() != first_pid);
            async move { pong }
        },
    )
    .await
    .unwrap();
    assert_eq!(
        restarted["detail"]["scheduler_port"],
        scheduler_port.to_string()
    );
    for name in ["server1", "scheduler", "web-admin"] {
        let component = wait_for_component(&coordinator, name, "every component healthy", |c| {
            c["healthy"] == true
        })
        .await;
        assert_eq!(
            component["restarts"], 0,
            "a planned restart is not a death: {component}"
        );
    }

    // The scheduler's health is that its jobs run: its heartbeat runs in Muster's job log (and
    // no DEBUG line in its server.log); stopped, the scheduler turns unhealthy and says why; its
    // next start runs it again.
    let scheduler_dir = agent.components_dir.join("prod/scheduler-scheduler");
    let heartbeats = || scheduler_jobs::runs(&scheduler_dir, scheduler_jobs::HEARTBEAT_JOB);
    wait_for("the heartbeat to run", PATIENCE, POLL, || {
        let ran = heartbeats() > 0;
        async move { ran.then_some(()) }
    })
    .await
    .unwrap();
    assert_eq!(scheduler_jobs::debug_lines_in_server_log(&scheduler_dir), 0);
    let scheduler_address = std::net::SocketAddr::from(([127, 0, 0, 1], scheduler_port));
    let (status, _, _) = traffic::exchange(
        scheduler_address,
        &scheduler_jobs::stop_request(
            &scheduler_dir,
            scheduler_address,
            scheduler_jobs::HEARTBEAT_JOB,
        ),
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(status, 200);
    let stopped = wait_for_component(
        &coordinator,
        "scheduler",
        "the scheduler unhealthy without its heartbeat",
        |c| c["healthy"] == false,
    )
    .await;
    assert!(
        stopped["reason"]
            .as_str()
            .unwrap()
            .contains("its jobs are not running: process"),
        "{stopped}"
    );
    let stopped_pid = std::fs::read_to_string(scheduler_dir.join("pidfile")).unwrap();
    signal(stopped_pid.trim().parse().unwrap(), Signal::SIGKILL);
    let again = wait_for_component(
        &coordinator,
        "scheduler",
        "the scheduler healthy again",
        |c| c["healthy"] == true,
    )
    .await;
    assert_eq!(again["restarts"], 1, "{again}");

    // Unassigned: stopped and archived.
    coordinator.ok(&[
        "remove",
        "web-admin",
        "--cluster",
        "prod",
        "--host",
        "app-1",
    ]);
    wait_for("web-admin to stop", PATIENCE, POLL, || {
        let gone = ping(dashboard_port).is_none()
            && !agent
                .components_dir
                .join("prod/web-admin-web-admin")
                .exists();
        async move { gone.then_some(()) }
    })
    .await
    .unwrap();
    let archived: Vec<String> = std::fs::read_dir(agent.components_dir.join(".archive"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        archived
            .iter()
            .any(|name| name.starts_with("prod.web-admin-web-admin.")),
        "{archived:?}"
    );
    let names: Vec<String> = coordinator
        .json(&["component", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    // Listed as people read them: servers first.
    assert_eq!(names, ["server1", "scheduler"]);
    assert!(ping(server_port).is_some(), "the others keep running");
}

/// `zato start` exits 0 and leaves the process to fail on its own, as Zato 3.2's does: here the
/// server cannot bind its IPC port. It is reported with the cause from its own log and started
/// again with a backoff, not at every pass; once the cause is gone it runs. (A process that ends
/// before its agent ever sees it alive is the agent's `pass_tests`.)
#[tokio::test]
async fn a_server_that_ends_at_its_start_says_why_and_is_not_restarted_at_every_pass() {
    let scratch = tempfile::tempdir().unwrap();
    let (coordinator, agent) = cluster_with_agent(scratch.path(), &[]).await;
    let config = std::fs::read_to_string(&agent.config).unwrap();
    let ipc_start: u16 = config
        .lines()
        .find_map(|line| line.strip_prefix("zato_ipc_port_start = "))
        .and_then(|port| port.trim().parse().ok())
        .expect("the agent's IPC ports");
    // Something else holds the first IPC port of the host's first server.
    let holder = std::net::TcpListener::bind(("127.0.0.1", ipc_start)).unwrap();
    let port = free_port();
    coordinator.ok(&[
        "create",
        "server",
        "--cluster",
        "prod",
        "--host",
        "app-1",
        "--port",
        &port.to_string(),
    ]);
    let component = wait_for_component(
        &coordinator,
        "server1",
        "server1 reported with why it does not start",
        |c| {
            c["last_error"]
                .as_str()
                .is_some_and(|error| error.contains("cannot bind the IPC port"))
        },
    )
    .await;
    println!("reported: {component}");
    assert_eq!(component["healthy"], false);
    let error = component["last_error"].as_str().unwrap();
    assert!(error.contains(&format!("127.0.0.1:{ipc_start}")), "{error}");
    let server_dir = agent.components_dir.join("prod/server-server1");
    let starts = || {
        std::fs::read_to_string(server_dir.join("mock-zato.log"))
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains(" zato start "))
            .count()
    };
    assert!(starts() <= 2, "started {} times", starts());

    drop(holder);
    wait_for_ping(port, "server1 once its IPC port is free").await;
    wait_for_component(&coordinator, "server1", "server1 healthy", |c| {
        c["healthy"] == true && c["last_error"] == ""
    })
    .await;
    // The first death restarts at once, the next after a backoff.
    assert!(starts() <= 3, "started {} times", starts());
}

/// A cluster whose one agent runs a healthy server1, then that agent stopped (SIGSTOP: silent, its
/// components running); the agent and its pid, to let it go on with SIGCONT.
async fn healthy_server_with_its_agent_stopped(scratch: &Path) -> (Coordinator, Agent, u32) {
    let (coordinator, agent) = cluster_with_agent(scratch, &[]).await;
    first_server(&coordinator).await;
    wait_for_component(&coordinator, "server1", "server1 healthy", |c| {
        c["healthy"] == true
    })
    .await;
    let agent_pid = agent.pid().unwrap();
    signal(agent_pid, Signal::SIGSTOP);
    (coordinator, agent, agent_pid)
}

/// A host that stops reporting is not believed for long: before its heartbeat TTL marks it down,
/// its components are `unknown` once its silence passes two heartbeat intervals, and at least
/// 5 s (what it last said may be from before a reboot), `muster wait` does not call the cluster
/// converged, and all is as before once it reports again.
#[tokio::test]
async fn a_silent_host_is_unknown_before_it_is_down_and_wait_does_not_believe_it() {
    let scratch = tempfile::tempdir().unwrap();
    let (coordinator, _agent, agent_pid) =
        healthy_server_with_its_agent_stopped(scratch.path()).await;
    let silent = wait_for_component(&coordinator, "server1", "server1 unknown", |c| {
        c["state"] == "unknown"
    })
    .await;
    assert_eq!(silent["healthy"], false);
    let reason = silent["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("host app-1 has not reported for ")
            && reason.ends_with("it last reported running, healthy"),
        "{reason}"
    );
    assert_eq!(
        coordinator.json(&["host", "show", "app-1"])["state"],
        "up",
        "not down: its heartbeat TTL (15 s) has not run out"
    );
    let waited = coordinator.muster(&["wait", "--cluster", "prod", "--timeout", "2s"]);
    let said = text_of(&waited);
    assert!(!waited.status.success(), "{said}");
    assert!(
        said.contains("server server1 on app-1 (unknown: host app-1 has not reported"),
        "{said}"
    );

    signal(agent_pid, Signal::SIGCONT);
    wait_for_component(&coordinator, "server1", "server1 healthy again", |c| {
        c["healthy"] == true && c["state"] == "running"
    })
    .await;
    let waited = coordinator.muster(&["wait", "--cluster", "prod", "--timeout", "30s"]);
    assert!(waited.status.success(), "{}", text_of(&waited));
}

/// A coordinator restarted (as on a reboot of its host, which restarts the agents there too) does
/// not believe what the hosts said before it started: their components are `unknown`, and `muster
/// wait` does not call the cluster converged, until each host reports to it.
#[tokio::test]
async fn reports_from_before_the_coordinator_started_are_not_believed() {
    let scratch = tempfile::tempdir().unwrap();
    let (mut coordinator, _agent, agent_pid) =
        healthy_server_with_its_agent_stopped(scratch.path()).await;
    coordinator.terminate();
    coordinator.restart().await;
    let doubted = wait_for_component(&coordinator, "server1", "server1 listed", |_| true).await;
    assert_eq!(doubted["state"], "unknown", "{doubted}");
    assert_eq!(doubted["healthy"], false);
    assert_eq!(
        doubted["reason"],
        "host app-1 has not reported since the coordinator started: it last reported running, \
         healthy"
    );
    let waited = coordinator.muster(&["wait", "--cluster", "prod", "--timeout", "2s"]);
    assert!(!waited.status.success(), "{}", text_of(&waited));

    signal(agent_pid, Signal::SIGCONT);
    wait_for_component(&coordinator, "server1", "server1 believed again", |c| {
        c["healthy"] == true && c["state"] == "running"
    })
    .await;
    let waited = coordinator.muster(&["wait", "--cluster", "prod", "--timeout", "30s"]);
    assert!(waited.status.success(), "{}", text_of(&waited));
}
