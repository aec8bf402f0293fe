//! The scheduler's jobs as Zato 3.2's scheduler runs and logs them: `create scheduler` writes
//! `startup_jobs.conf` (Zato's text) and a `logging.conf` (Zato's, abridged to the loggers and
//! handlers that matter here); a started scheduler reads both, logs `Job starting` for each job
//! when `server_prefer_odb_config` is True (with False it starts none, as the real one loads them
//! after its start loop), and then runs each job whose interval is in seconds, logging ``Executing
//! `NAME`, `CONTEXT` `` at DEBUG on logger `zato.scheduler.backend`. Each line goes to the files
//! of that logger's handlers whose level lets it through, as Python's `logging` sends it: the
//! logger's own when `logging.conf` names it, else the `zato` logger's (`logs/server.log`, INFO).
//! A `SCHEDULER.DELETE` API call with a job's name stops it until the next start, as in Zato.
//! Jobs in minutes (Zato's own: 3, 30, 60 minutes) are started but never due within a test.
//! A server's `logging.conf` is here too (`SERVER_LOGGING_CONF`): the loggers whose levels
//! Muster sets.

use std::sync::{Arc, Mutex};

use super::*;

/// `startup_jobs.conf` as Zato 3.2's `create scheduler` writes it (`zato.common.scheduler`).
pub(crate) const STARTUP_JOBS_CONF: &str = "\
[zato.outgoing.sql.auto-ping]
minutes=3
service=zato.outgoing.sql.auto-ping

[zato.wsx.cleanup]
minutes=30
service=pub.zato.channel.web-socket.cleanup-wsx

[zato.pubsub.cleanup]
minutes=60
service=zato.pubsub.cleanup-service
extra=
";

/// Zato's `default` and `stdout` handlers (under `handlers:` in its `logging.conf`), a literal
/// for `concat!`.
macro_rules! zato_handlers {
    () => {
        "    default:
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
"
    };
}

/// The end of Zato's `logging.conf`: its formatter and the schema version, a literal for
/// `concat!`.
macro_rules! zato_formatters {
    () => {
        "
formatters:
    default:
        format: '%(asctime)s - %(levelname)s - %(process)d:%(threadName)s - %(name)s:%(lineno)d - %(message)s'

version: 1
"
    };
}

/// Zato 3.2's `logging.conf` (`zato.common.util.logging_`), abridged: the loggers and handlers of
/// the scheduler's job lines, in Zato's layout.
pub(crate) const LOGGING_CONF: &str = concat!(
    "\
loggers:
    '':
        level: INFO
        handlers: [stdout, default]
    zato:
        level: INFO
        handlers: [stdout, default]
        qualname: zato
        propagate: false
    zato_scheduler:
        level: INFO
        handlers: [stdout, scheduler]
        qualname: zato_scheduler
        propagate: false
handlers:
",
    zato_handlers!(),
    "    scheduler:
        formatter: default
        class: logging.handlers.ConcurrentRotatingFileHandler
        filename: './logs/scheduler.log'
        mode: 'a'
        maxBytes: 20000000
        backupCount: 10
        encoding: 'utf8'
",
    zato_formatters!()
);

/// Zato 3.2's `logging.conf` of a server (`zato.common.util.logging_`), abridged: the loggers
/// whose levels Muster sets, in Zato's layout, and the handlers they write through.
pub(crate) const SERVER_LOGGING_CONF: &str = concat!(
    "\
loggers:
    '':
        level: INFO
        handlers: [stdout, default]
    'gunicorn.main':
        level: INFO
        handlers: [stdout, default]
    'pytds':
        level: WARN
        handlers: [stdout, default]
    zato:
        level: INFO
        handlers: [stdout, default]
        qualname: zato
        propagate: false
    zato_rest:
        level: INFO
        handlers: [stdout, default]
        qualname: zato
        propagate: false
    zato_access_log:
        level: INFO
        handlers: [http_access_log]
        qualname: zato_access_log
        propagate: false
    zato_admin:
        level: INFO
        handlers: [admin]
        qualname: zato_admin
        propagate: false
    zato_pubsub:
        level: INFO
        handlers: [stdout, pubsub]
        qualname: zato_pubsub
        propagate: false
handlers:
",
    zato_handlers!(),
    zato_formatters!()
);

pub(crate) const DEBUG: u8 = 10;
const INFO: u8 = 20;

pub(crate) fn level(name: &str) -> u8 {
    match name.trim() {
        "DEBUG" => DEBUG,
        "WARN" | "WARNING" => 30,
        "ERROR" => 40,
        _ => INFO,
    }
}

/// The `key: value` settings of each entry of a top-level section (`loggers:`, `handlers:`) of
/// the YAML Zato writes: entries indented 4, settings 8.
pub(crate) fn entries(text: &str, section: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut found = BTreeMap::new();
    let mut in_section = false;
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if indent == 0 {
            in_section = line.trim_end() == format!("{section}:");
            current = None;
        } else if in_section && indent == 4 {
            let name = line
                .trim()
                .trim_end_matches(':')
                .trim_matches('\'')
                .to_owned();
            found.insert(name.clone(), BTreeMap::new());
            current = Some(name);
        } else if in_section
            && indent == 8
            && let Some(name) = &current
            && let Some((key, value)) = line.trim().split_once(':')
        {
            found
                .get_mut(name)
                .unwrap()
                .insert(key.trim().to_owned(), value.trim().to_owned());
        }
    }
    found
}

/// Where `zato.scheduler.backend`'s lines of each level go: (file, the least level it takes).
fn backend_files(path: &Path) -> Vec<(PathBuf, u8)> {
    let text = std::fs::read_to_string(path.join("config/repo/logging.conf")).unwrap_or_default();
    let loggers = entries(&text, "loggers");
    let handlers = entries(&text, "handlers");
    let Some(logger) = loggers
        .get("zato.scheduler.backend")
        .or_else(|| loggers.get("zato"))
    else {
        return vec![(path.join("logs/server.log"), INFO)];
    };
    let logger_level = logger.get("level").map_or(INFO, |name| level(name));
    let names = logger
        .get("handlers")
        .map(|list| list.trim_matches(['[', ']']).to_owned())
        .unwrap_or_default();
    names
        .split(',')
        .filter_map(|name| handlers.get(name.trim()))
        .filter_map(|handler| {
            let file = handler.get("filename")?.trim_matches('\'');
            let handler_level = handler.get("level").map_or(DEBUG, |name| level(name));
            Some((path.join(file), logger_level.max(handler_level)))
        })
        .collect()
}

/// One job of `startup_jobs.conf`: its name and, when it is given in seconds, its interval.
fn startup_jobs(path: &Path) -> Vec<(String, Option<u64>)> {
    let Ok(conf) = Ini::read(&path.join("config/repo/startup_jobs.conf")) else {
        return Vec::new();
    };
    conf.sections
        .iter()
        .map(|(name, settings)| {
            let seconds = settings.get("seconds").and_then(|value| value.parse().ok());
            (name.clone(), seconds)
        })
        .collect()
}

/// The started scheduler's jobs.
pub(crate) struct Jobs {
    path: PathBuf,
    files: Vec<(PathBuf, u8)>,
    /// Stopped by `SCHEDULER.DELETE` since the start.
    deleted: Mutex<BTreeSet<String>>,
}

impl Jobs {
    /// Reads the scheduler's files and logs its start.
    pub(crate) fn start(path: &Path, prefer_odb_config: bool) -> Result<Arc<Jobs>> {
        let jobs = Arc::new(Jobs {
            path: path.to_owned(),
            files: backend_files(path),
            deleted: Mutex::new(BTreeSet::new()),
        });
        jobs.log(
            INFO,
            580,
            "Scheduler will start to execute jobs in 0.1 seconds",
        )?;
        let names: Vec<String> = startup_jobs(path)
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        if prefer_odb_config {
            for name in &names {
                jobs.log(INFO, 307, &format!("Job starting `<Job name:'{name}'>`"))?;
            }
            jobs.log(INFO, 603, "Scheduler started")?;
        } else {
            jobs.log(INFO, 603, "Scheduler started")?;
            append(
                &path.join("logs/scheduler.log"),
                &line(
                    INFO,
                    "zato_scheduler:246",
                    &format!("Loading jobs into scheduler -> {names:?}"),
                ),
            )?;
        }
        Ok(jobs)
    }

    /// Runs each started job given in seconds, at its interval, until the process ends.
    pub(crate) fn run(self: &Arc<Jobs>, prefer_odb_config: bool) {
        if !prefer_odb_config {
            return;
        }
        for (name, seconds) in startup_jobs(&self.path) {
            let Some(seconds) = seconds.filter(|seconds| *seconds > 0) else {
                continue;
            };
            let jobs = self.clone();
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(Duration::from_secs(seconds));
                ticks.tick().await;
                loop {
                    ticks.tick().await;
                    if jobs.deleted.lock().unwrap().contains(&name) {
                        return;
                    }
                    let context = format!("{{'name': '{name}', 'type': 'interval_based'}}");
                    let _ = jobs.log(DEBUG, 514, &format!("Executing `{name}`, `{context}`"));
                    let _ = jobs.log(DEBUG, 516, &format!("Job executed `{name}`, `{context}`"));
                }
            });
        }
    }

    /// `SCHEDULER.DELETE`: the job stops (until the next start, which reads the ODB again).
    pub(crate) fn delete(&self, name: &str) {
        let _ = self.log(INFO, 290, &format!("Deleting job {name} (old_name:None)"));
        self.deleted.lock().unwrap().insert(name.to_owned());
    }

    fn log(&self, level: u8, line_number: u32, message: &str) -> Result<()> {
        let text = line(
            level,
            &format!("zato.scheduler.backend:{line_number}"),
            message,
        );
        for (file, least) in &self.files {
            if level >= *least {
                append(file, &text)?;
            }
        }
        Ok(())
    }
}

/// One line in Zato's format, with this process's id (and, as Zato's INFO lines have, the level's
/// colour codes).
fn line(level: u8, source: &str, message: &str) -> String {
    let pid = std::process::id();
    let level = if level == DEBUG {
        "DEBUG".to_owned()
    } else {
        "\u{1b}[1;37mINFO\u{1b}[0m".to_owned()
    };
    format!("2026-01-01 00:00:00,000 - {level} - {pid}:Dummy-1 - {source} - {message}\n")
}

fn append(file: &Path, text: &str) -> Result<()> {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .and_then(|mut log| log.write_all(text.as_bytes()))
        .map_err(|error| failed(format!("{}: {error}", file.display())))
}
