//! The agent end to end: real coordinator, agent and mock-zato processes on this machine.

mod components;
mod creates;
mod identity;
mod odb;
mod operator;
mod safety;

use std::path::Path;
use std::time::{Duration, Instant};

use muster_testkit::disk::SmallFilesystem;
use muster_testkit::harness::{Agent, Coordinator, ping, signal, text, workspace_binary};
use muster_testkit::netns::Network;
use muster_testkit::{free_port, wait_for};
use muster_testkit::{scheduler_jobs, traffic};
use nix::sys::signal::Signal;

const PATIENCE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

async fn wait_for_ping(port: u16, what: &str) -> serde_json::Value {
    wait_for(what, PATIENCE, POLL, || {
        let answer = ping(port);
        async move { answer }
    })
    .await
    .unwrap()
}

/// The component list entry of `name`, once `check` holds for it.
async fn wait_for_component(
    coordinator: &Coordinator,
    name: &str,
    what: &str,
    check: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    wait_for(what, PATIENCE, Duration::from_millis(200), || {
        let components = coordinator.json(&["component", "list"]);
        let found = components
            .as_array()
            .and_then(|all| {
                all.iter()
                    .find(|component| component["name"] == name)
                    .cloned()
            })
            .filter(|component| check(component));
        async move { found }
    })
    .await
    .unwrap()
}

fn creates_in(invocations: &str) -> usize {
    invocations
        .lines()
        .filter(|line| line.contains(" zato create "))
        .count()
}

/// Assigns `server1` to `app-1` on a free port and waits until it answers: the cluster's
/// bootstrap done, with a fast mock, so that the slow steps a test makes next are its own.
async fn first_server(coordinator: &Coordinator) -> u16 {
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
    wait_for_ping(port, "server1").await;
    port
}

/// A coordinator with cluster `prod` on SQLite, and an enrolled, running agent `app-1`.
async fn cluster_with_agent(scratch: &Path, coordinator_args: &[&str]) -> (Coordinator, Agent) {
    let coordinator = Coordinator::start(scratch, None, coordinator_args).await;
    coordinator.ok(&["create", "cluster", "prod"]);
    let token = coordinator.join_token("prod", &[], 1);
    let mut agent = Agent::configure(scratch, &coordinator, "app-1", &token);
    agent.start();
    wait_for(
        "app-1 to enroll and report",
        PATIENCE,
        Duration::from_millis(100),
        || {
            let hosts = coordinator.json(&["host", "list"]);
            let up = hosts.as_array().is_some_and(|all| {
                all.iter()
                    .any(|host| host["name"] == "app-1" && host["state"] == "up")
            });
            async move { up.then_some(()) }
        },
    )
    .await
    .unwrap();
    (coordinator, agent)
}

async fn cluster_secrets(coordinator: &Coordinator) -> Vec<String> {
    use muster_coordinator::config::DataDir;
    use muster_coordinator::init::read_secret_box;
    use muster_coordinator::store::{DatabaseUrl, SqlStore, Store};
    let layout = DataDir::new(&coordinator.data_dir);
    let url = DatabaseUrl::sqlite_file(&coordinator.data_dir.join("muster.db"));
    let store = SqlStore::connect(&url, read_secret_box(&layout).unwrap())
        .await
        .unwrap();
    let secrets = store.cluster_secrets("prod").await.unwrap();
    store.close().await;
    [
        secrets.secret_key,
        secrets.jwt_secret,
        secrets.admin_invoke_password,
    ]
    .into_iter()
    .filter(|secret| !secret.is_empty())
    .collect()
}

fn text_of(output: &std::process::Output) -> String {
    format!("{}{}", text(&output.stdout), text(&output.stderr))
}
