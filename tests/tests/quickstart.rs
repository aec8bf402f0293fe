//! `muster quickstart` as a new user runs it, on a test host of its own (a network namespace, so
//! its fixed ports are its own): a whole cluster in one command, its status, and its stop.

use std::net::SocketAddr;
use std::path::Path;

use muster_testkit::harness::{text, workspace_binary};
use muster_testkit::netns::{Host, Network};
use muster_testkit::traffic;

fn muster(host: &Host, args: &[&str], path: Option<&str>) -> std::process::Output {
    let mut command = host.command(&workspace_binary("muster"));
    command.args(args).stdin(std::process::Stdio::null());
    if let Some(path) = path {
        command.env("PATH", path);
    }
    command.output().unwrap()
}

fn processes_in(host: &Host) -> usize {
    let output = std::process::Command::new("ip")
        .args(["netns", "pids", &host.namespace])
        .output()
        .unwrap();
    text(&output.stdout).lines().count()
}

#[test]
fn one_command_makes_a_cluster_that_answers_through_its_load_balancer() {
    let mut network = Network::create();
    let host = network.add_host("box");
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path().join("qs");
    let dir_text = dir.to_str().unwrap();

    // Without Zato and without --demo it stops before it starts anything, and says what to do.
    let refused = muster(
        &host,
        &["quickstart", "--dir", dir_text],
        Some("/usr/bin:/bin"),
    );
    assert!(!refused.status.success());
    let error = text(&refused.stderr);
    assert!(
        error.contains("no `zato` in PATH") && error.contains("--demo"),
        "{error}"
    );
    assert!(!dir.exists(), "nothing was created");

    let started = muster(
        &host,
        &["quickstart", "--dir", dir_text, "--demo", "--servers", "2"],
        None,
    );
    let output = text(&started.stdout);
    assert!(
        started.status.success(),
        "{output}\n{}",
        text(&started.stderr)
    );
    assert!(
        output.contains("demo mode: components are run by mock-zato"),
        "{output}"
    );
    for line in [
        "load balancer  http://127.0.0.1:11223/zato/ping",
        "dashboard      http://127.0.0.1:8183",
        "server1        http://127.0.0.1:17010",
        "server2        http://127.0.0.1:17011",
        "scheduler      http://127.0.0.1:31530",
        "coordinator    https://127.0.0.1:17300",
    ] {
        assert!(output.contains(line), "{line}\n{output}");
    }
    // Its hints name the muster that ran (not on PATH after `cargo build`), and work as shown.
    let hint = format!("{} status", workspace_binary("muster").display());
    assert!(output.contains(&hint), "{hint}\n{output}");
    let data_dir = output
        .lines()
        .find_map(|line| line.trim().strip_prefix("export MUSTER_DATA_DIR="))
        .expect("the export hint")
        .to_owned();
    let hinted = host
        .command(&workspace_binary("muster"))
        .arg("status")
        .env("MUSTER_DATA_DIR", &data_dir)
        .output()
        .unwrap();
    assert!(hinted.status.success(), "{}", text(&hinted.stderr));
    assert!(text(&hinted.stdout).contains("cluster quickstart"));
    assert!(output.contains("[5/5]"), "progress is shown:\n{output}");

    // It returned with the cluster up: the load balancer alternates between the servers.
    let frontend = SocketAddr::from(([127, 0, 0, 1], 11223));
    let servers: Vec<String> = (0..4)
        .map(|_| {
            let (status, body) =
                traffic::get_from(&host.namespace, frontend, "/zato/ping").unwrap();
            assert_eq!(status, 200, "{body}");
            let json: serde_json::Value = serde_json::from_str(&body).unwrap();
            json["server"].as_str().unwrap().to_owned()
        })
        .collect();
    assert!(servers.contains(&"server1".to_owned()) && servers.contains(&"server2".to_owned()));
    assert_ne!(servers[0], servers[1], "round robin: {servers:?}");

    let status = muster(&host, &["quickstart", "status", "--dir", dir_text], None);
    let status_text = text(&status.stdout);
    assert!(status.status.success(), "{}", text(&status.stderr));
    assert!(
        status_text.contains("coordinator: running"),
        "{status_text}"
    );
    assert!(status_text.contains("agent: running"), "{status_text}");
    assert!(
        status_text.contains("server2  127.0.0.1:17011  UP"),
        "{status_text}"
    );

    // A second quickstart finds the ports taken and says which, before it starts anything.
    let other = scratch.path().join("other");
    let refused = muster(
        &host,
        &["quickstart", "--dir", other.to_str().unwrap(), "--demo"],
        None,
    );
    assert!(!refused.status.success());
    let error = text(&refused.stderr);
    assert!(
        error.contains("ports in use")
            && error.contains("11223 (the load balancer) is held by pid ")
            && error.contains("(haproxy)"),
        "{error}"
    );
    assert!(!other.exists());

    // A server added to the quickstart's cluster, as README's next steps have it.
    let coordinator_env = |command: &mut std::process::Command| {
        command.env("MUSTER_DATA_DIR", dir.join("coordinator"));
    };
    let mut added = host.command(&workspace_binary("muster"));
    added
        .args([
            "create",
            "server",
            "--cluster",
            "quickstart",
            "--host",
            "local",
            "--name",
            "server3",
            "--port",
            "17012",
        ])
        .stdin(std::process::Stdio::null());
    coordinator_env(&mut added);
    let added = added.output().unwrap();
    assert!(added.status.success(), "{}", text(&added.stderr));
    let mut waited = host.command(&workspace_binary("muster"));
    waited
        .args(["wait", "--cluster", "quickstart", "--timeout", "60s"])
        .stdin(std::process::Stdio::null());
    coordinator_env(&mut waited);
    let waited = waited.output().unwrap();
    assert!(waited.status.success(), "{}", text(&waited.stderr));

    // The scheduler's and the dashboard's own settings: each restarts with them at its role's
    // turn, and nothing else does. The scheduler's variable is in its process's environment,
    // its logger's level and the dashboard's time zone in their files.
    let cli = |args: &[&str]| {
        let mut command = host.command(&workspace_binary("muster"));
        command.args(args).stdin(std::process::Stdio::null());
        coordinator_env(&mut command);
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{args:?}: {}",
            text(&output.stderr)
        );
        text(&output.stdout)
    };
    let components = dir.join("zato/quickstart");
    let pid_of = |component: &str| {
        std::fs::read_to_string(components.join(component).join("pidfile"))
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    let pids = || {
        [
            "scheduler-scheduler",
            "web-admin-web-admin",
            "server-server1",
        ]
        .map(&pid_of)
    };
    let before = pids();
    let said = cli(&[
        "configure",
        "scheduler",
        "--cluster",
        "quickstart",
        "--set",
        "env.APP_MODE=blue green",
        "--set",
        "logging.zato=debug",
    ]);
    assert!(
        said.contains("rolling restart of the scheduler (restart epoch 1): scheduler"),
        "{said}"
    );
    cli(&[
        "configure",
        "web-admin",
        "--cluster",
        "quickstart",
        "--set",
        "TIME_ZONE=Europe/Prague",
    ]);
    cli(&["wait", "--cluster", "quickstart", "--timeout", "60s"]);
    let after = pids();
    assert_ne!(after[0], before[0], "the scheduler restarted");
    assert_ne!(after[1], before[1], "the dashboard restarted");
    assert_eq!(after[2], before[2], "the server did not");
    let environment = std::fs::read(format!("/proc/{}/environ", after[0])).unwrap();
    assert!(
        environment
            .split(|byte| *byte == 0)
            .any(|variable| variable == b"APP_MODE=blue green"),
        "the scheduler's process has APP_MODE"
    );
    let conf = |component: &str, file: &str| {
        std::fs::read_to_string(components.join(component).join("config/repo").join(file)).unwrap()
    };
    assert!(
        conf("scheduler-scheduler", "logging.conf").contains("    zato:\n        level: DEBUG\n"),
        "{}",
        conf("scheduler-scheduler", "logging.conf")
    );
    assert!(
        conf("web-admin-web-admin", "logging.conf").contains("    zato:\n        level: INFO\n"),
        "each role's levels are its own"
    );
    let web_admin: serde_json::Value =
        serde_json::from_str(&conf("web-admin-web-admin", "web-admin.conf")).unwrap();
    assert_eq!(web_admin["TIME_ZONE"], "Europe/Prague");
    // A time zone the dashboard's host does not know: it dies at its start, and `muster status`
    // says why, in Zato's words from its stderr; unset, it comes back.
    cli(&[
        "configure",
        "web-admin",
        "--cluster",
        "quickstart",
        "--set",
        "TIME_ZONE=Mars/Olympus",
    ]);
    let said_why = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(muster_testkit::wait_for(
            "the dashboard's failure in muster status",
            std::time::Duration::from_secs(60),
            std::time::Duration::from_millis(300),
            || {
                let status = cli(&["status", "--cluster", "quickstart"]);
                let said = status
                    .contains("ValueError: Incorrect timezone setting: Mars/Olympus")
                    .then_some(());
                async move { said }
            },
        ));
    assert!(
        said_why.is_ok(),
        "{}",
        cli(&["status", "--cluster", "quickstart"])
    );
    cli(&[
        "configure",
        "web-admin",
        "--cluster",
        "quickstart",
        "--unset",
        "TIME_ZONE",
    ]);
    cli(&["wait", "--cluster", "quickstart", "--timeout", "60s"]);
    let refused = muster(
        &host,
        &[
            "configure",
            "web-admin",
            "--cluster",
            "quickstart",
            "--set",
            "main.gunicorn_workers=2",
        ],
        None,
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("\"main.gunicorn_workers\": not one Muster sets"),
        "{}",
        text(&refused.stderr)
    );

    // Stopped from the directory above it, with a relative --dir, as README has it.
    let mut stop = host.command(&workspace_binary("muster"));
    stop.args(["quickstart", "stop", "--dir", "qs"])
        .current_dir(scratch.path())
        .stdin(std::process::Stdio::null());
    let stopped = stop.output().unwrap();
    let said = text(&stopped.stdout);
    assert!(stopped.status.success(), "{}", text(&stopped.stderr));
    for line in [
        "agent stopped",
        "load-balancer-load-balancer stopped",
        "server-server1 stopped",
        "coordinator stopped",
    ] {
        assert!(said.contains(line), "{line}\n{said}");
    }
    assert_eq!(
        processes_in(&host),
        0,
        "nothing of the quickstart runs on:\n{said}"
    );
    assert!(Path::new(&dir).join("quickstart.json").exists());

    // A stopped quickstart starts again as it was, not as another one.
    let other_size = muster(
        &host,
        &["quickstart", "--dir", dir_text, "--servers", "3"],
        None,
    );
    assert_eq!(other_size.status.code(), Some(2));
    assert!(
        text(&other_size.stderr).contains("not with --servers 3 (it has 2)"),
        "{}",
        text(&other_size.stderr)
    );
    assert_eq!(processes_in(&host), 0, "a refused start starts nothing");
    // `quickstart start` (what people type) starts it again, with the server added to it: it
    // waits for all six components. With -o json the output is only the JSON; the progress goes
    // to stderr.
    let again = muster(
        &host,
        &["quickstart", "start", "--dir", dir_text, "-o", "json"],
        None,
    );
    let progress = text(&again.stderr);
    assert!(again.status.success(), "{progress}");
    assert!(
        progress.contains("starting the stopped quickstart") && progress.contains("[6/6]"),
        "{progress}"
    );
    let summary: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(summary["cluster"], "quickstart");
    assert_eq!(summary["servers"].as_array().unwrap().len(), 2);
    let (status, body) = traffic::get_from(&host.namespace, frontend, "/zato/ping")
        .unwrap_or_else(|| panic!("no answer after:\n{progress}"));
    assert_eq!(status, 200, "{body}");

    // While both run, a start is refused, naming them.
    let refused = muster(&host, &["quickstart", "start", "--dir", dir_text], None);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("that runs (coordinator pid "),
        "{}",
        text(&refused.stderr)
    );
    // Its coordinator killed: `quickstart start` starts the coordinator alone; the agent and
    // the servers run on as they were.
    let pid_of = |file: &Path| -> i32 {
        std::fs::read_to_string(file)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let agent_pid = pid_of(&dir.join("agent.pid"));
    let server_pidfile = dir.join("zato/quickstart/server-server1/pidfile");
    let server_pid = pid_of(&server_pidfile);
    muster_testkit::harness::signal(
        pid_of(&dir.join("coordinator.pid")) as u32,
        nix::sys::signal::Signal::SIGKILL,
    );
    let again = muster(&host, &["quickstart", "start", "--dir", dir_text], None);
    let said = text(&again.stdout);
    assert!(again.status.success(), "{said}{}", text(&again.stderr));
    assert!(
        said.contains(&format!(
            "starting the coordinator of the quickstart (its agent and components run, agent pid \
             {agent_pid})"
        )) && said.contains("[6/6]")
            && !said.contains("agent started"),
        "{said}"
    );
    assert_eq!(pid_of(&dir.join("agent.pid")), agent_pid);
    assert_eq!(pid_of(&server_pidfile), server_pid);

    let stopped = muster(&host, &["quickstart", "stop", "--dir", dir_text], None);
    assert!(stopped.status.success(), "{}", text(&stopped.stderr));
    assert_eq!(processes_in(&host), 0);
}
