//! Whether a scheduler's jobs run, not merely whether it answers: Muster gives every scheduler a
//! heartbeat job and a log of its job runs, and reads that log.
//!
//! - The heartbeat is one of the scheduler's startup jobs (`config/repo/startup_jobs.conf`, which
//!   Zato 3.2 reads at every start and adds to the ODB when no job of that name is there, as it
//!   does its own `zato.outgoing.sql.auto-ping`): [`HEARTBEAT_JOB`] runs Zato's `zato.ping` every
//!   [`HEARTBEAT_EVERY`]. Being in the ODB before any restart, it is exactly the kind of job a
//!   scheduler that loaded its jobs wrongly leaves dormant.
//! - Zato's scheduler logs each run at DEBUG only (`zato.scheduler.backend`, ``Executing `NAME`,
//!   `CONTEXT` ``; its `job_log_level` is hard-coded `debug`). [`add_job_log`] routes that logger to
//!   Muster's [`JOB_LOG`] at DEBUG, and its INFO lines to where Zato sends them (copies of Zato's
//!   own `stdout` and `default` handlers at level INFO), so `server.log` gets no DEBUG line. The
//!   context of a run holds the job's `extra`, as Zato's INFO `Job starting` line already does; the
//!   file lies in the component's directory, which only the component's user can enter.
//! - [`JobLogReader`] reads what the log gained since the last look and says when the current
//!   process last ran the heartbeat; a scheduler whose heartbeat has not run for
//!   [`HEARTBEAT_DEADLINE`] is unhealthy, with that reason.

use std::path::Path;
use std::time::{Duration, Instant};

use super::conf::{self, ConfError};
use crate::files;

/// The name of Muster's heartbeat job, in the ODB and in the dashboard's list of jobs.
pub const HEARTBEAT_JOB: &str = "muster.scheduler.heartbeat";
/// The service it invokes: Zato's own, which answers `pong` and does nothing else.
pub const HEARTBEAT_SERVICE: &str = "zato.ping";
/// How often it runs.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// How long the scheduler's current process may go without running it (its interval and a margin
/// of two more) before the scheduler is unhealthy.
pub const HEARTBEAT_DEADLINE: Duration = Duration::from_secs(15);
/// The log of the scheduler's job runs, in its directory.
pub const JOB_LOG: &str = "logs/muster-jobs.log";
/// The most of the job log read at one look (the rest, older, is skipped).
const JOB_LOG_READ_MAX: u64 = 1024 * 1024;
/// What Zato 3.2's scheduler logs at DEBUG as it runs a job (`Scheduler.on_job_executed`).
const EXECUTING: &str = "Executing `";
/// The handler [`add_job_log`] adds; its presence says the log is set up.
const JOB_LOG_HANDLER: &str = "muster_jobs";

/// Adds the heartbeat job to the scheduler's startup jobs; says whether the file changed (the
/// scheduler reads it at start).
pub fn add_heartbeat(repo: &Path) -> Result<bool, ConfError> {
    conf::edit_ini(
        &repo.join("startup_jobs.conf"),
        &[
            (
                HEARTBEAT_JOB,
                "seconds",
                HEARTBEAT_EVERY.as_secs().to_string(),
            ),
            (HEARTBEAT_JOB, "service", HEARTBEAT_SERVICE.to_owned()),
        ],
    )
}

/// Routes the scheduler's job runs to [`JOB_LOG`] in its `logging.conf`; says whether the file
/// changed (the scheduler reads it at start).
pub fn add_job_log(repo: &Path) -> Result<bool, ConfError> {
    let path = repo.join("logging.conf");
    let text = std::fs::read_to_string(&path).map_err(|source| ConfError::Io {
        path: path.display().to_string(),
        source,
    })?;
    let Some(updated) = with_job_log(&text) else {
        return Ok(false);
    };
    conf::write_keeping_mode(&path, updated.as_bytes())?;
    Ok(true)
}

/// `logging.conf` (the YAML that `zato create scheduler` writes) with Muster's logger and
/// handlers added; `None` when it has them already. Zato's `stdout` and `default` handlers are
/// copied with `level: INFO` (the copies write where they do, with the same rotation), so that the
/// DEBUG lines go only to [`JOB_LOG`].
fn with_job_log(text: &str) -> Option<String> {
    if text
        .lines()
        .any(|line| line.trim() == format!("{JOB_LOG_HANDLER}:"))
    {
        return None;
    }
    let copies: Vec<(String, Vec<String>)> = ["stdout", "default"]
        .into_iter()
        .filter_map(|name| {
            handler_block(text, name).map(|block| (format!("muster_{name}_info"), block))
        })
        .collect();
    let mut handler_names: Vec<String> = copies.iter().map(|(name, _)| name.clone()).collect();
    handler_names.push(JOB_LOG_HANDLER.to_owned());
    let logger = [
        "    # Muster: the scheduler's job runs (DEBUG) go to its job log, which Muster reads to"
            .to_owned(),
        "    # tell that the jobs run; the logger's other lines go where Zato sends them."
            .to_owned(),
        "    zato.scheduler.backend:".to_owned(),
        "        level: DEBUG".to_owned(),
        format!("        handlers: [{}]", handler_names.join(", ")),
        "        propagate: false".to_owned(),
    ];
    let mut handlers = vec![
        format!("    {JOB_LOG_HANDLER}:"),
        "        formatter: default".to_owned(),
        "        class: logging.handlers.RotatingFileHandler".to_owned(),
        format!("        filename: './{JOB_LOG}'"),
        "        mode: 'a'".to_owned(),
        "        maxBytes: 10000000".to_owned(),
        "        backupCount: 1".to_owned(),
        "        encoding: 'utf8'".to_owned(),
    ];
    for (name, block) in copies {
        handlers.push(format!("    {name}:"));
        handlers.push("        level: INFO".to_owned());
        handlers.extend(block);
    }
    let mut lines: Vec<String> = Vec::new();
    let mut added = (false, false);
    for line in text.lines() {
        lines.push(line.to_owned());
        if line.trim_end() == "loggers:" && !added.0 {
            lines.extend(logger.iter().cloned());
            added.0 = true;
        } else if line.trim_end() == "handlers:" && !added.1 {
            lines.extend(handlers.iter().cloned());
            added.1 = true;
        }
    }
    if !(added.0 && added.1) {
        // Not the file Zato writes: left alone; the health check then says the runs are unseen.
        return None;
    }
    Some(lines.join("\n") + "\n")
}

/// The lines of a top-level handler's settings (`    NAME:` under `handlers:`, each line
/// indented deeper), without a `level` of its own.
fn handler_block(text: &str, name: &str) -> Option<Vec<String>> {
    let mut in_handlers = false;
    let mut block: Option<Vec<String>> = None;
    for line in text.lines() {
        if !line.starts_with(' ') && !line.trim().is_empty() {
            if block.is_some() {
                break;
            }
            in_handlers = line.trim_end() == "handlers:";
            continue;
        }
        if !in_handlers {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        match &mut block {
            None if indent == 4 && line.trim_end() == format!("    {name}:") => {
                block = Some(Vec::new());
            }
            Some(_) if indent > 4 && line.trim_start().starts_with("level:") => {}
            Some(lines) if indent > 4 => lines.push(line.to_owned()),
            Some(_) if !line.trim().is_empty() => break,
            _ => {}
        }
    }
    block.filter(|lines| !lines.is_empty())
}

/// Reads the job log as it grows and remembers when the scheduler's current process last ran the
/// heartbeat. A new process starts it afresh, with the process's start as its last run (its first
/// run is due within [`HEARTBEAT_EVERY`]).
#[derive(Debug, Clone)]
pub struct JobLogReader {
    pid: i32,
    inode: u64,
    offset: u64,
    last_run: Instant,
}

impl JobLogReader {
    pub fn new(pid: i32) -> JobLogReader {
        JobLogReader {
            pid,
            inode: 0,
            offset: 0,
            last_run: Instant::now(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Reads what `path` gained since the last look (all of it, up to its last 1 MiB, when it was
    /// rotated or is new) and says whether the heartbeat ran within [`HEARTBEAT_DEADLINE`].
    pub fn look(&mut self, path: &Path) -> Result<(), String> {
        if let Ok(text) = self.read_new(path)
            && ran_heartbeat(&text, self.pid)
        {
            self.last_run = Instant::now();
        }
        if self.last_run.elapsed() <= HEARTBEAT_DEADLINE {
            return Ok(());
        }
        // The same words while it lasts: a changed error is an event.
        Err(format!(
            "its jobs are not running: process {} has not run its heartbeat job {HEARTBEAT_JOB} \
             (every {}s) for more than {}s (its job log: {JOB_LOG})",
            self.pid,
            HEARTBEAT_EVERY.as_secs(),
            HEARTBEAT_DEADLINE.as_secs()
        ))
    }

    /// The whole lines `path` gained since the last look.
    fn read_new(&mut self, path: &Path) -> Result<String, files::FileError> {
        use std::os::unix::fs::MetadataExt as _;
        let metadata = std::fs::metadata(path).map_err(|source| files::FileError {
            action: "read",
            path: path.to_owned(),
            source,
        })?;
        if metadata.ino() != self.inode || metadata.len() < self.offset {
            self.inode = metadata.ino();
            self.offset = metadata.len().saturating_sub(JOB_LOG_READ_MAX);
        }
        let bytes = files::read_range(path, self.offset, JOB_LOG_READ_MAX)?;
        let whole = bytes
            .iter()
            .rposition(|byte| *byte == b'\n')
            .map_or(0, |last| last + 1);
        self.offset += whole as u64;
        Ok(String::from_utf8_lossy(&bytes[..whole]).into_owned())
    }
}

/// Whether `log` has a run of the heartbeat by process `pid` (Zato's lines carry `PID:THREAD`
/// after the level).
fn ran_heartbeat(log: &str, pid: i32) -> bool {
    let marker = format!(" - {pid}:");
    let run = format!("{EXECUTING}{HEARTBEAT_JOB}`");
    log.lines()
        .any(|line| line.contains(&marker) && line.contains(&run))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The part of the `logging.conf` Zato 3.2 writes that the edit touches.
    const ZATO_LOGGING_CONF: &str = "\
loggers:
    '':
        level: INFO
        handlers: [stdout, default]
    zato:
        level: INFO
        handlers: [stdout, default]
        qualname: zato
        propagate: false
handlers:
    default:
        formatter: default
        class: logging.handlers.ConcurrentRotatingFileHandler
        filename: './logs/server.log'
        mode: 'a'
        maxBytes: 1000000000
        backupCount: 2
        encoding: 'utf8'
    stdout:
        formatter: colour
        class: logging.StreamHandler
        stream: ext://sys.stdout
    scheduler:
        formatter: default
        class: logging.handlers.ConcurrentRotatingFileHandler
        filename: './logs/scheduler.log'

formatters:
    default:
        format: '%(asctime)s - %(levelname)s - %(process)d:%(threadName)s - %(name)s:%(lineno)d - %(message)s'

version: 1
";

    #[test]
    fn the_job_log_is_added_once_and_zato_handlers_are_copied_at_info() {
        let edited = with_job_log(ZATO_LOGGING_CONF).unwrap();
        assert!(
            edited.contains(
                "    zato.scheduler.backend:\n        level: DEBUG\n        handlers: \
                 [muster_stdout_info, muster_default_info, muster_jobs]\n        propagate: false\n"
            ),
            "{edited}"
        );
        assert!(
            edited.contains(
                "    muster_default_info:\n        level: INFO\n        formatter: default\n        \
                 class: logging.handlers.ConcurrentRotatingFileHandler\n        filename: \
                 './logs/server.log'\n        mode: 'a'\n        maxBytes: 1000000000\n        \
                 backupCount: 2\n        encoding: 'utf8'\n"
            ),
            "{edited}"
        );
        assert!(
            edited.contains(
                "    muster_stdout_info:\n        level: INFO\n        formatter: colour\n"
            ),
            "{edited}"
        );
        assert!(edited.contains("filename: './logs/muster-jobs.log'"));
        assert!(edited.ends_with("version: 1\n"), "the rest is kept");
        assert_eq!(with_job_log(&edited), None, "added once");
        assert_eq!(
            with_job_log("version: 1\n"),
            None,
            "a file not shaped as Zato's is left alone"
        );
    }

    #[test]
    fn only_a_heartbeat_run_of_the_current_process_counts() {
        let log = "\
2026-12-06 09:00:00,100 - DEBUG - 812:DummyThread-5 - zato.scheduler.backend:514 - Executing `muster.scheduler.heartbeat`, `{'name': 'muster.scheduler.heartbeat'}`
2026-12-06 09:00:00,200 - DEBUG - 900:DummyThread-5 - zato.scheduler.backend:514 - Executing `user.job`, `{}`
";
        assert!(ran_heartbeat(log, 812));
        assert!(!ran_heartbeat(log, 900), "another job of pid 900");
        assert!(!ran_heartbeat(log, 81), "pid 81 is not pid 812");
    }

    #[test]
    fn the_reader_reads_only_new_whole_lines_and_follows_a_rotation() {
        let scratch = tempfile::tempdir().unwrap();
        let path = scratch.path().join("muster-jobs.log");
        let run = "x - DEBUG - 7:T - zato.scheduler.backend:514 - Executing `muster.scheduler.heartbeat`, `{}`\n";
        std::fs::write(&path, format!("{run}partial line")).unwrap();
        let mut reader = JobLogReader::new(7);
        assert_eq!(reader.read_new(&path).unwrap(), run);
        assert_eq!(
            reader.read_new(&path).unwrap(),
            "",
            "nothing new, the partial line waits"
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut file| std::io::Write::write_all(&mut file, b" ends\n"))
            .unwrap();
        assert_eq!(reader.read_new(&path).unwrap(), "partial line ends\n");
        let rotated = scratch.path().join("muster-jobs.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        std::fs::write(&path, run).unwrap();
        assert_eq!(
            reader.read_new(&path).unwrap(),
            run,
            "a new file is read from its start"
        );
        assert!(reader.look(&path).is_ok());
    }
}
