//! The process that runs a component. `zato start DIR` returns about a second after it launched
//! `python -m zato.server.main DIR` (or `zato.scheduler.main`, `zato.admin.main`); the component
//! writes `DIR/pidfile` seconds later (up to ~25 s on a busy host). A second `zato start` in that
//! window makes a second process that fails on the port and removes the pidfile, leaving the first
//! one serving and unmanaged. So a component counts as running while either its pidfile names a
//! live process or a live process runs a Zato component from its directory.

use std::path::Path;
use std::time::{Duration, Instant};

pub fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

pub fn alive(pid: i32) -> bool {
    pid > 0 && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

fn command_line(pid: i32) -> Option<Vec<String>> {
    let bytes = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        bytes
            .split(|byte| *byte == 0)
            .filter(|word| !word.is_empty())
            .map(|word| String::from_utf8_lossy(word).into_owned())
            .collect(),
    )
}

fn parent(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `PID (COMM) STATE PPID ...`; COMM may hold spaces and parentheses.
    let after_command = &stat[stat.rfind(')')? + 1..];
    after_command.split_whitespace().nth(1)?.parse().ok()
}

/// Whether `argv` runs a Zato component (`-m zato.*.main`) from `directory`.
fn runs_component(argv: &[String], directory: &str) -> bool {
    let module = argv
        .windows(2)
        .any(|pair| pair[0] == "-m" && pair[1].starts_with("zato.") && pair[1].ends_with(".main"));
    module
        && argv
            .iter()
            .any(|word| word.trim_end_matches('/') == directory)
}

/// Every live process that runs a Zato component from `directory`.
fn component_processes(directory: &Path) -> Vec<i32> {
    let directory = directory.display().to_string();
    let directory = directory.trim_end_matches('/');
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<i32> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| command_line(*pid).is_some_and(|argv| runs_component(&argv, directory)))
        .collect();
    found.sort_unstable();
    found
}

/// The pid of the component in `directory`: its pidfile's, when that process lives; else the main
/// process (the one whose parent is not another of them) of those that run a Zato component from
/// `directory`.
pub fn find(directory: &Path) -> Option<i32> {
    if let Some(pid) = read_pid(&directory.join("pidfile")).filter(|pid| alive(*pid)) {
        return Some(pid);
    }
    let processes = component_processes(directory);
    processes
        .iter()
        .copied()
        .find(|pid| parent(*pid).is_none_or(|parent| !processes.contains(&parent)))
}

/// Ends the component in `directory` that has no pidfile (so `zato stop` cannot): SIGTERM to each
/// of its processes, SIGKILL to those still alive after `patience`. Says whether all are gone.
pub async fn terminate(directory: &Path, patience: Duration) -> bool {
    let signal_all = |signal| {
        for pid in component_processes(directory) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal);
        }
    };
    signal_all(nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline {
        if component_processes(directory).is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    signal_all(nix::sys::signal::Signal::SIGKILL);
    tokio::time::sleep(Duration::from_millis(200)).await;
    component_processes(directory).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|word| (*word).to_owned()).collect()
    }

    #[test]
    fn a_zato_component_is_known_by_its_module_and_directory() {
        let server = argv(&[
            "/opt/zato/code/bin/python",
            "-m",
            "zato.server.main",
            "/srv/zato/prod/server-server1",
            "sync_internal=False",
        ]);
        assert!(runs_component(&server, "/srv/zato/prod/server-server1"));
        assert!(!runs_component(&server, "/srv/zato/prod/server-server2"));
        let starting = argv(&[
            "/opt/zato/code/bin/python",
            "/opt/zato/code/bin/zato",
            "start",
            "/srv/zato/prod/server-server1",
        ]);
        assert!(!runs_component(&starting, "/srv/zato/prod/server-server1"));
    }

    #[test]
    fn the_parent_of_a_process_is_read_from_proc() {
        let me = i32::try_from(std::process::id()).unwrap();
        let parent_pid = parent(me).unwrap();
        assert_eq!(parent_pid, nix::unistd::getppid().as_raw());
    }
}
