//! What an operator reads and scripts against: why a component is not healthy, a summary line,
//! warnings for hosts that never enrolled, creates that can be run twice, exit statuses by kind,
//! and the log and status followed as they change.

use super::*;

/// The first line from a running `muster` that `check` accepts, within `patience`.
fn line_matching(
    lines: &std::sync::mpsc::Receiver<String>,
    patience: Duration,
    check: impl Fn(&str) -> bool,
) -> Option<String> {
    let deadline = Instant::now() + patience;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match lines.recv_timeout(left) {
            Ok(line) if check(&line) => return Some(line),
            Ok(_) => continue,
            Err(_) => return None,
        }
    }
    None
}

#[tokio::test]
async fn status_says_why_and_automation_can_rely_on_the_cli() {
    let scratch = tempfile::tempdir().unwrap();
    let coordinator = Coordinator::start(scratch.path(), None, &[]).await;
    coordinator.ok(&["create", "cluster", "prod"]);
    let token = coordinator.join_token("prod", &[], 1);
    // Every `zato` command of this host fails: the cluster's bootstrap cannot run.
    let mut agent = Agent::configure(scratch.path(), &coordinator, "app-1", &token)
        .with_zato(Path::new("/bin/false"));
    // Its own /metrics, for a Prometheus on the host.
    let metrics_port = free_port();
    let mut config = std::fs::read_to_string(&agent.config).unwrap();
    config.push_str(&format!("metrics_listen = \"127.0.0.1:{metrics_port}\"\n"));
    std::fs::write(&agent.config, config).unwrap();
    agent.start();
    let (mut events, event_lines) =
        coordinator.follow(&["events", "--follow", "--cluster", "prod", "-o", "json"]);
    coordinator.ok(&["create", "server", "--cluster", "prod", "--host", "app-1"]);

    // The server waits for the bootstrap, and says so with the bootstrap's cause in one line.
    let expected = "waiting for the cluster's bootstrap: `zato create odb` on host app-1 failed, \
                    retrying: `false create odb` failed (exit status: 1)";
    let server = wait_for_component(&coordinator, "server1", "the bootstrap's failure", |c| {
        c["reason"] == expected
    })
    .await;
    assert_eq!(server["state"], "pending");
    let status = coordinator.ok(&["status"]);
    assert!(
        status.contains("cluster prod: 0/1 healthy, 1 pending") && status.contains(expected),
        "{status}"
    );
    assert!(
        !status.contains("--odb_type"),
        "no command line in the table:\n{status}"
    );
    let shown = coordinator.ok(&[
        "component",
        "show",
        "server",
        "server1",
        "--cluster",
        "prod",
    ]);
    assert!(shown.contains("state     pending"), "{shown}");

    // What a monitoring system scrapes says the same.
    let metrics = muster_testkit::harness::http_get(coordinator.http_port, "/metrics").unwrap();
    let count_of = |line_start: &str| -> Option<f64> {
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(line_start))
            .and_then(|value| value.trim().parse().ok())
    };
    assert_eq!(
        count_of(
            "muster_component_healthy{cluster=\"prod\",role=\"server\",name=\"server1\",host=\"app-1\"} "
        ),
        Some(0.0),
        "{metrics}"
    );
    assert!(
        count_of("muster_host_heartbeat_age_seconds{host=\"app-1\"} ")
            .is_some_and(|age| age < 60.0),
        "{metrics}"
    );
    assert!(
        count_of(
            "muster_grpc_request_duration_seconds_count{method=\"muster.v1.AdminService/ListComponents\"} "
        )
        .is_some_and(|count| count >= 1.0),
        "{metrics}"
    );
    assert!(
        count_of(
            "muster_grpc_request_duration_seconds_count{method=\"muster.v1.AgentService/ReportStatus\"} "
        )
        .is_some_and(|count| count >= 1.0),
        "{metrics}"
    );

    let agent_metrics = wait_for("the agent's /metrics", PATIENCE, POLL, || {
        let text = muster_testkit::harness::http_get(metrics_port, "/metrics")
            .filter(|text| text.contains("\nmuster_agent_last_report_age_seconds "));
        async move { text }
    })
    .await
    .unwrap();
    assert!(
        agent_metrics.contains("\nmuster_agent_applied_generation ")
            && agent_metrics.contains("# TYPE muster_agent_component_healthy gauge"),
        "{agent_metrics}"
    );

    // Every metric the Grafana dashboard in packaging/ plots is one of them.
    let dashboard = include_str!("../../../packaging/grafana/muster.json");
    let mut named = std::collections::BTreeSet::new();
    for (start, _) in dashboard.match_indices("muster_") {
        let name: String = dashboard[start..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || *c == '_')
            .collect();
        let base = ["_bucket", "_count", "_sum"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .filter(|base| base.ends_with("_seconds"))
            .unwrap_or(&name)
            .to_owned();
        named.insert(base);
    }
    assert!(named.len() >= 10, "{named:?}");
    for name in &named {
        let declared = format!("# TYPE {name} ");
        assert!(
            metrics.contains(&declared) || agent_metrics.contains(&declared),
            "the dashboard plots {name}, which neither /metrics declares"
        );
    }

    // The same create again is done already; a second server on the host must be named.
    let again = coordinator.muster(&["create", "server", "--cluster", "prod", "--host", "app-1"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(
        text(&again.stdout).contains("unchanged"),
        "{}",
        text(&again.stdout)
    );
    let servers = coordinator.json(&["component", "list", "--cluster", "prod"]);
    assert_eq!(servers.as_array().unwrap().len(), 1, "{servers}");
    let cluster_again = coordinator.ok(&["create", "cluster", "prod"]);
    assert!(cluster_again.contains("unchanged"), "{cluster_again}");

    // A typo'd host is accepted (agents may enroll later) with a warning naming the likely one.
    coordinator.ok(&["create", "cluster", "edge"]);
    let typo = coordinator.muster(&[
        "create",
        "web-admin",
        "--cluster",
        "edge",
        "--host",
        "app-l",
    ]);
    assert!(typo.status.success(), "{}", text(&typo.stderr));
    assert!(
        text(&typo.stderr).contains("warning: host app-l has not enrolled: did you mean app-1?"),
        "{}",
        text(&typo.stderr)
    );
    let status = coordinator.ok(&["status", "--cluster", "edge"]);
    assert!(
        status.contains("warning: host app-l has not enrolled")
            && status.contains("host app-l has not enrolled: no agent has joined with that name"),
        "{status}"
    );

    // Each kind of failure has its own exit status.
    let exit = |args: &[&str]| coordinator.muster(args).status.code();
    assert_eq!(
        exit(&["component", "show", "server", "nosuch", "--cluster", "prod"]),
        Some(3)
    );
    assert_eq!(
        exit(&[
            "create",
            "server",
            "--cluster",
            "prod",
            "--host",
            "app-1",
            "--name",
            "server1",
            "--port",
            "17999"
        ]),
        Some(4),
        "server1 exists on another port"
    );
    assert_eq!(
        exit(&["create", "cluster", "prod", "--description", "other"]),
        Some(4)
    );
    assert_eq!(exit(&["create", "cluster", "a#b"]), Some(2));
    assert_eq!(
        exit(&["wait", "--cluster", "prod", "--timeout", "1s"]),
        Some(7)
    );
    assert_eq!(
        exit(&["status", "--coordinator", "https://127.0.0.1:1"]),
        Some(5)
    );
    let token = std::fs::read_to_string(coordinator.data_dir.join("admin.token")).unwrap();
    let mut wrong = token.trim().to_owned();
    let last = if wrong.pop() == Some('0') { '1' } else { '0' };
    wrong.push(last);
    assert_eq!(exit(&["status", "--token", &wrong]), Some(6));

    // The status, watched, shows itself again when it changes.
    let (mut watch, watch_lines) = coordinator.follow(&[
        "status",
        "--watch",
        "--interval",
        "200ms",
        "--cluster",
        "edge",
    ]);
    line_matching(&watch_lines, PATIENCE, |line| {
        line == "cluster edge: 0/1 healthy, 1 pending"
    })
    .expect("the first status");
    coordinator.ok(&[
        "remove",
        "web-admin",
        "--cluster",
        "edge",
        "--host",
        "app-l",
    ]);
    line_matching(&watch_lines, PATIENCE, |line| {
        line == "cluster edge: 0/0 healthy"
    })
    .expect("the status after the web-admin was removed");
    watch.kill().unwrap();
    watch.wait().unwrap();

    // A host's own events belong to its clusters: followed with --cluster, and said once.
    coordinator.ok(&["host", "drain", "app-1"]);
    let drained = line_matching(&event_lines, PATIENCE, |line| {
        line.contains("\"host.drained\"")
    })
    .expect("host.drained followed");
    let drained: serde_json::Value = serde_json::from_str(&drained).unwrap();
    assert_eq!(
        drained["clusters"],
        serde_json::json!(["prod"]),
        "{drained}"
    );
    let assigned = coordinator.json(&["events", "--cluster", "prod"]);
    let kinds: Vec<&str> = assigned
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|event| event["kind"].as_str())
        .collect();
    assert_eq!(
        kinds.iter().filter(|kind| **kind == "host.up").count(),
        1,
        "{kinds:?}"
    );
    assert!(kinds.contains(&"host.drained"), "{kinds:?}");
    events.kill().unwrap();
    events.wait().unwrap();
    agent.stop();
}
