//! `muster-rollout-bench` (tests/bench/src/rollout.rs) run on a test host of its own (its
//! quickstart's fixed ports are its own there), and what every run of it must show.

use crate::harness::{text, workspace_binary};
use crate::netns::Host;

/// Runs `muster-rollout-bench ARGS --json FILE` on `host` and returns the JSON, printing its
/// table (the figures) and its progress.
pub fn run(host: &Host, args: &[&str]) -> serde_json::Value {
    let scratch = tempfile::tempdir().unwrap();
    let json = scratch.path().join("results.json");
    let output = host
        .command(&workspace_binary("muster-rollout-bench"))
        .args(args)
        .arg("--dir")
        .arg(scratch.path().join("qs"))
        .arg("--json")
        .arg(&json)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run muster-rollout-bench");
    println!("{}", text(&output.stdout));
    eprintln!("{}", text(&output.stderr));
    assert!(
        output.status.success(),
        "muster-rollout-bench {args:?} failed: {}",
        text(&output.stderr)
    );
    serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap()
}

/// What an operator checks after a rolling restart of `servers` servers under load, one at a
/// time: no request failed, every server's process was replaced once (none again after a killed
/// coordinator came back), each server was out of rotation for its turn and never two at once,
/// and, when it was killed, the coordinator came back. Of the servers alone: the scheduler and
/// the dashboard ran on. Of every role (`--role all`): each component restarted once, in Zato's
/// order.
pub fn assert_rolled_one_at_a_time(results: &serde_json::Value, servers: u64) {
    assert_eq!(results["failed"], 0, "{results:#}");
    assert!(results["answered"].as_u64().unwrap() > 0, "{results:#}");
    assert_eq!(results["processes_replaced"], servers, "{results:#}");
    let restarts = results["restarts"].as_object().unwrap();
    let roles: Vec<&str> = results["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|role| role.as_str().unwrap())
        .collect();
    if roles.contains(&"all") {
        // Zato's order: the dashboard, the servers one at a time, the load balancer (HAProxy
        // reloaded: a new worker), the scheduler; each once.
        let mut order = vec!["web-admin".to_owned()];
        order.extend((1..=servers).map(|index| format!("server{index}")));
        order.extend(["load-balancer".to_owned(), "scheduler".to_owned()]);
        assert_eq!(
            results["restart_order"],
            serde_json::json!(order),
            "{results:#}"
        );
        for other in ["web-admin", "load-balancer", "scheduler"] {
            assert_eq!(restarts[other], 1, "{other} restarted once: {results:#}");
        }
    } else if roles.is_empty() {
        for other in ["scheduler", "web-admin"] {
            assert_eq!(
                restarts[other], 0,
                "the {other} runs on through a rolling restart of the servers (the scheduler \
                 stays with its server while that one restarts): {results:#}"
            );
        }
    }
    for index in 1..=servers {
        assert_eq!(
            restarts[&format!("server{index}")],
            1,
            "each server restarted once, none again after the coordinator came back: {results:#}"
        );
    }
    assert_eq!(results["most_out_at_once"], 1, "{results:#}");
    let out = results["out_of_rotation_seconds"].as_object().unwrap();
    assert_eq!(
        out.keys().cloned().collect::<Vec<_>>(),
        (1..=servers)
            .map(|index| format!("server{index}"))
            .collect::<Vec<_>>(),
        "every server was out for its turn: {results:#}"
    );
    if results["coordinator_killed"] == true {
        assert!(
            results["coordinator_down_seconds"].as_f64().is_some(),
            "{results:#}"
        );
    }
}

/// What an operator checks after a setting no server becomes healthy with was rolled out with
/// `auto_revert`: no request failed, the rollout stopped at server1 and was undone (the settings
/// before are back), server1 alone restarted again, the others were never touched, and never two
/// were out of rotation at once.
pub fn assert_reverted_after_the_first(results: &serde_json::Value, servers: u64) {
    assert_eq!(results["failed"], 0, "{results:#}");
    assert!(
        results["reverted"]
            .as_str()
            .is_some_and(|reason| reason.contains("server1")),
        "{results:#}"
    );
    assert_eq!(
        results["settings_after"],
        serde_json::json!({}),
        "{results:#}"
    );
    assert_eq!(
        results["restarts"]["server1"], 2,
        "server1 restarted into the bad setting and out of it: {results:#}"
    );
    for index in 2..=servers {
        let server = format!("server{index}");
        assert_eq!(
            results["restarts"][&server], 0,
            "{server} untouched: {results:#}"
        );
    }
    assert_eq!(results["most_out_at_once"], 1, "{results:#}");
}

/// How many processes `pid` is the parent of (a Zato server's gunicorn workers are its children).
pub fn children_of(pid: u32) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|entry| std::fs::read_to_string(entry.path().join("stat")).ok())
        .filter(|stat| {
            // pid (comm) state ppid ...: comm may hold spaces, so read after its last ')'.
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|ppid| ppid.parse::<u32>().ok())
                == Some(pid)
        })
        .count()
}
