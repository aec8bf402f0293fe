//! `muster-bench` at a smoke-test size: the benchmark itself works end to end (simulated agents
//! enroll, watch, report; assignments reach their hosts and load balancers; a coordinator restart
//! brings every agent back; two coordinators over PostgreSQL deliver through each other). What it
//! measures is printed, never held to a time: the figures are in packaging/docs/benchmarks.md.
//! `muster-rollout-bench` likewise: a rolling restart of a quickstart under load.

use muster_testkit::harness::{command, text, workspace_binary};

/// Runs `muster-bench ARGS --json FILE` and returns the JSON, printing its table.
fn bench(args: &[&str]) -> serde_json::Value {
    let scratch = tempfile::tempdir().unwrap();
    let json = scratch.path().join("results.json");
    let output = command(&workspace_binary("muster-bench"))
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run muster-bench");
    println!("{}", text(&output.stdout));
    // Its progress, and why a call failed while it measured.
    eprintln!("{}", text(&output.stderr));
    assert!(
        output.status.success(),
        "muster-bench {args:?} failed: {}",
        text(&output.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

/// Every measured assignment was made and reached its host and its load balancer: none refused,
/// none lost.
fn assert_delivered(results: &serde_json::Value, via_other: bool) {
    for lost in [
        "assignments_refused",
        "assignments_lost_at_host",
        "assignments_lost_at_balancer",
    ] {
        assert_eq!(results[lost], 0, "{lost}: {results}");
    }
    let to_balancer = results["assignment_to_load_balancer"]["count"]
        .as_u64()
        .unwrap();
    let to_agent = results["assignment_to_agent"]["count"].as_u64().unwrap();
    let to_other = results["assignment_to_agent_via_other"]["count"]
        .as_u64()
        .unwrap();
    assert!(to_balancer >= 3, "{results}");
    assert_eq!(
        results["assignments"].as_u64(),
        Some(to_balancer),
        "{results}"
    );
    assert_eq!(to_agent + to_other, to_balancer, "{results}");
    if via_other {
        assert!(
            to_other >= 1,
            "an assignment reached a host through the other coordinator"
        );
    }
    assert!(results["heartbeat"]["count"].as_u64().unwrap() > 0);
}

#[test]
fn a_small_fleet_on_sqlite_is_served_and_comes_back_after_a_restart() {
    let results = bench(&[
        "--agents",
        "40",
        "--database",
        "sqlite",
        "--measure",
        "8s",
        "--idle",
        "3s",
        "--heartbeat-interval",
        "1s",
        "--assign-interval",
        "1s",
        "--storm",
    ]);
    assert_eq!(results["agents"], 40);
    assert_delivered(&results, false);
    let storm = &results["storm"];
    assert_eq!(storm["agents_back"], 40, "{results}");
    // An idle fleet costs the database next to nothing: before the fan-out it was 4 statements
    // per second per connected agent.
    let idle = results["idle_statements_per_s"].as_f64().unwrap();
    assert!(idle < 40.0, "{idle} statements/s for 40 idle agents");
}

#[test]
fn big_clusters_over_two_coordinators_on_postgres_deliver_through_each_other() {
    let results = bench(&[
        "--big-clusters",
        "2x4",
        "--database",
        "postgres",
        "--coordinators",
        "2",
        "--measure",
        "8s",
        "--idle",
        "2s",
        "--heartbeat-interval",
        "1s",
        "--assign-interval",
        "1s",
    ]);
    assert_eq!(results["agents"], 12);
    assert_eq!(results["coordinators"], 2);
    assert_delivered(&results, true);
}

/// `muster-rollout-bench` on mock-zato: three servers of a quickstart rolled under load, with its
/// coordinator killed after the first (the real Zato's run is in the real-Zato suite).
#[test]
fn a_rolling_restart_under_load_survives_a_killed_coordinator() {
    let mut network = muster_testkit::netns::Network::create();
    let host = network.add_host("roll");
    let results = muster_testkit::rollout_bench::run(
        &host,
        &["--demo", "--servers", "3", "--kill-coordinator"],
    );
    muster_testkit::rollout_bench::assert_rolled_one_at_a_time(&results, 3);
    assert_eq!(results["zato"], "mock-zato");
}

/// `muster-rollout-bench --role all` on mock-zato: every component of a quickstart restarted
/// under load in Zato's order, the load balancer reloaded without a failed request.
#[test]
fn a_rolling_restart_of_every_role_goes_in_zatos_order_under_load() {
    let mut network = muster_testkit::netns::Network::create();
    let host = network.add_host("roll");
    let results =
        muster_testkit::rollout_bench::run(&host, &["--demo", "--servers", "3", "--role", "all"]);
    muster_testkit::rollout_bench::assert_rolled_one_at_a_time(&results, 3);
}

/// `muster-rollout-bench --set --auto-revert` on mock-zato: a server setting with which no server
/// becomes healthy (`main.gunicorn_timeout=1`: mock-zato's workers time out as Zato's do) stops
/// at server1 and is undone under load, the other servers untouched.
#[test]
fn a_bad_setting_is_reverted_after_the_first_server_under_load() {
    let mut network = muster_testkit::netns::Network::create();
    let host = network.add_host("roll");
    let results = muster_testkit::rollout_bench::run(
        &host,
        &[
            "--demo",
            "--servers",
            "3",
            "--set",
            "main.gunicorn_timeout=1",
            "--healthy-deadline",
            "10s",
            "--auto-revert",
        ],
    );
    muster_testkit::rollout_bench::assert_reverted_after_the_first(&results, 3);
}
