//! The process that runs a component. `zato start DIR` returns about a second after it launched
//! `python -m zato.server.main DIR` (or `zato.scheduler.main`; the dashboard's `zato.admin.main`
//! gets no directory, it runs in DIR); the component
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

/// Whether a process with `argv` and working directory `cwd` runs a Zato component
/// (`-m zato.*.main`) from `directory`: named among its arguments, or as the directory it runs in.
fn runs_component(argv: &[String], cwd: Option<&Path>, directory: &str) -> bool {
    let module = argv
        .windows(2)
        .any(|pair| pair[0] == "-m" && pair[1].starts_with("zato.") && pair[1].ends_with(".main"));
    module
        && (argv
            .iter()
            .any(|word| word.trim_end_matches('/') == directory)
            || cwd.is_some_and(|cwd| cwd == Path::new(directory)))
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
        .filter(|pid| {
            command_line(*pid).is_some_and(|argv| {
                let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
                runs_component(&argv, cwd.as_deref(), directory)
            })
        })
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

/// The logs a component writes its failures to, by the file names Zato uses (and mock-zato's).
const COMPONENT_LOGS: [&str; 5] = [
    "server.log",
    "scheduler.log",
    "web-admin.log",
    super::command::START_STDERR,
    "mock-component.log",
];

/// The last exception a component in `directory` logged (a Python `SomeError: message` line), at
/// most 300 characters: why a component that died did.
pub fn last_logged_error(directory: &Path) -> Option<String> {
    use std::io::{Read as _, Seek as _};
    let mut newest: Option<(std::time::SystemTime, String)> = None;
    for name in COMPONENT_LOGS {
        let path = directory.join("logs").join(name);
        let Ok(mut file) = std::fs::File::open(&path) else {
            continue;
        };
        let modified = file.metadata().and_then(|meta| meta.modified()).ok()?;
        let length = file.metadata().map(|meta| meta.len()).unwrap_or(0);
        let _ = file.seek(std::io::SeekFrom::Start(length.saturating_sub(64 * 1024)));
        let mut tail = Vec::new();
        let _ = file.read_to_end(&mut tail);
        let text = String::from_utf8_lossy(&tail);
        let Some(error) = text.lines().rev().find_map(exception_in) else {
            continue;
        };
        if newest.as_ref().is_none_or(|(time, _)| modified > *time) {
            newest = Some((modified, error));
        }
    }
    newest.map(|(_, error)| error)
}

/// `OperationalError: ...` from a line that reports a Python exception.
fn exception_in(line: &str) -> Option<String> {
    let at = line.find("Error: ").or_else(|| line.find("Exception: "))?;
    let start = line[..at]
        .rfind(|character: char| character.is_whitespace())
        .map_or(0, |space| space + 1);
    let error: String = line[start..].trim().chars().take(300).collect();
    Some(error)
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
        assert!(runs_component(
            &server,
            None,
            "/srv/zato/prod/server-server1"
        ));
        assert!(!runs_component(
            &server,
            None,
            "/srv/zato/prod/server-server2"
        ));
        let dashboard = argv(&[
            "/opt/zato/code/bin/python",
            "-m",
            "zato.admin.main",
            "fg=False",
        ]);
        let dashboard_dir = Path::new("/srv/zato/prod/web-admin-web-admin");
        assert!(runs_component(
            &dashboard,
            Some(dashboard_dir),
            "/srv/zato/prod/web-admin-web-admin"
        ));
        assert!(!runs_component(
            &dashboard,
            Some(dashboard_dir),
            "/srv/zato/prod/server-server1"
        ));
        let starting = argv(&[
            "/opt/zato/code/bin/python",
            "/opt/zato/code/bin/zato",
            "start",
            "/srv/zato/prod/server-server1",
        ]);
        assert!(!runs_component(
            &starting,
            None,
            "/srv/zato/prod/server-server1"
        ));
    }

    #[test]
    fn the_exception_a_component_died_of_is_found_in_its_log() {
        let scratch = tempfile::tempdir().unwrap();
        std::fs::create_dir(scratch.path().join("logs")).unwrap();
        std::fs::write(
            scratch.path().join("logs/server.log"),
            "2026-11-30 20:26:16,952 - INFO - 2324:MainThread - zato:0 - Starting\n\
             sqlalchemy.exc.OperationalError: (pymysql.err.OperationalError) (4079, \"Illegal parameter data type bigint for operation 'get_lock'\")\n\
             [SQL: SELECT get_lock(%(get_lock_2)s, %(get_lock_3)s) AS get_lock_1]\n\
             2026-11-30 20:26:16,953 - INFO - 2324:MainThread - zato:0 - Worker exiting (pid: 2324)\n",
        )
        .unwrap();
        let error = last_logged_error(scratch.path()).unwrap();
        assert!(
            error.starts_with(
                "sqlalchemy.exc.OperationalError: (pymysql.err.OperationalError) (4079"
            ),
            "{error}"
        );
        assert_eq!(last_logged_error(&scratch.path().join("nothing")), None);
    }

    #[test]
    fn the_parent_of_a_process_is_read_from_proc() {
        let me = i32::try_from(std::process::id()).unwrap();
        let parent_pid = parent(me).unwrap();
        assert_eq!(parent_pid, nix::unistd::getppid().as_raw());
    }
}
