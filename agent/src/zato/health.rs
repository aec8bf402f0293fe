//! The probes that say a Zato component works, not merely that something listens on its port:
//! - a server answers `GET /zato/ping` with 200 and `ZATO_OK` in its body;
//! - the scheduler accepts an authenticated API call made with the credentials the servers use (a
//!   scheduler that made up its own refuses them: HTTP 500, "Invalid credentials" in its log). The
//!   call deletes a job of a name no job has (the scheduler's `SCHEDULER.DELETE` action), which
//!   changes nothing; since the scheduler logs each one, it is made at most once per
//!   [`SCHEDULER_PROBE_INTERVAL`] while the scheduler stays healthy;
//! - the scheduler's process has started its jobs: Zato's scheduler logs `Job starting` for each
//!   job it runs, on a line that names its process id (logger `zato.scheduler.backend`, which
//!   writes to the scheduler's `logs/server.log`; its `logs/scheduler.log` has other loggers'). A scheduler that loaded its jobs in the
//!   background after its start loop (`server_prefer_odb_config=False`, what `zato create
//!   scheduler` writes) answers its API but runs no job loaded from the ODB; see
//!   [`scheduler_jobs`]; and then that its jobs keep running (its heartbeat job, [`super::jobs`]);
//! - the dashboard serves its login form (`GET /accounts/login/` with a CSRF field).

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::command::SCHEDULER_API_USER;

/// How often a healthy scheduler is asked an authenticated question.
pub const SCHEDULER_PROBE_INTERVAL: Duration = Duration::from_secs(30);
/// How long one probe may take (the dashboard's first page can take seconds).
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// The code of Zato 3.2's `SCHEDULER.DELETE` action (`zato.common.broker_message`).
pub const SCHEDULER_DELETE_ACTION: &str = "100004";
/// The job the scheduler probe deletes; no job has this name.
const PROBE_JOB: &str = "muster.health-probe (not a job)";
/// What Zato's ping service puts in its answer.
const PING_OK: &str = "ZATO_OK";
/// The field of the dashboard's login form.
const LOGIN_FORM_FIELD: &str = "csrfmiddlewaretoken";

/// An HTTP answer: its status and (the start of) its body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// Sends one HTTP/1.1 request and reads the answer (at most 256 KiB of it).
pub async fn request(
    address: IpAddr,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> Result<Answer, String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect((address, port))
            .await
            .map_err(|error| format!("cannot connect to {address}:{port}: {error}"))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {address}:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream
            .write_all(format!("{head}{body}").as_bytes())
            .await
            .map_err(|error| format!("cannot send to {address}:{port}: {error}"))?;
        let mut received = Vec::new();
        let mut buffer = [0u8; 8192];
        while received.len() < 256 * 1024 {
            match stream.read(&mut buffer).await {
                Ok(0) => break,
                Ok(count) => received.extend_from_slice(&buffer[..count]),
                Err(error) if received.is_empty() => {
                    return Err(format!("no answer from {address}:{port}: {error}"));
                }
                Err(_) => break,
            }
        }
        let text = String::from_utf8_lossy(&received).into_owned();
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("{address}:{port} did not answer HTTP"))?;
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default();
        Ok(Answer { status, body })
    };
    tokio::time::timeout(PROBE_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("{address}:{port} did not answer within {PROBE_TIMEOUT:?}"))?
}

/// A server answers its ping service.
pub async fn server(address: IpAddr, port: u16) -> Result<(), String> {
    let answer = request(address, port, "GET", "/zato/ping", &[], "").await?;
    if answer.status == 200 && answer.body.contains(PING_OK) {
        Ok(())
    } else {
        Err(format!(
            "/zato/ping on port {port} answered {} without {PING_OK}",
            answer.status
        ))
    }
}

/// The scheduler accepts the servers' credentials.
pub async fn scheduler(address: IpAddr, port: u16, api_password: &str) -> Result<(), String> {
    let credentials = base64::engine::general_purpose::STANDARD
        .encode(format!("{SCHEDULER_API_USER}:{api_password}"));
    let body = serde_json::json!({ "action": SCHEDULER_DELETE_ACTION, "name": PROBE_JOB });
    let answer = request(
        address,
        port,
        "POST",
        "/",
        &[
            ("Authorization", format!("Basic {credentials}")),
            ("Content-Type", "application/json".to_owned()),
        ],
        &body.to_string(),
    )
    .await?;
    if answer.status == 200 {
        Ok(())
    } else {
        Err(format!(
            "the scheduler on port {port} refused a call made with the servers' credentials \
             (HTTP {}): it does not have the cluster's scheduler API client",
            answer.status
        ))
    }
}

/// The scheduler's log that says when it starts its jobs (`zato.scheduler.backend`'s handler in
/// the `logging.conf` that `zato create scheduler` writes).
pub const SCHEDULER_JOBS_LOG: &str = "logs/server.log";
/// How much of the end of the scheduler's log [`scheduler_jobs`] reads.
pub const SCHEDULER_LOG_TAIL: u64 = 1024 * 1024;
/// What Zato 3.2's scheduler logs as it starts a job's greenlet (`zato.scheduler.backend`, `Job.run`).
const JOB_STARTING: &str = "Job starting `";
/// What it logs once its start loop has run (`Scheduler.run`).
const SCHEDULER_STARTED: &str = "Scheduler started";

/// Whether the scheduler process `pid` has started its jobs, read from (the end of) its log: Zato's
/// log lines carry `PID:THREAD` after the level (`… - INFO - 4242:DummyThread-1 - …`). Every
/// cluster has active jobs of Zato's own (`zato.outgoing.sql.auto-ping`, `zato.pubsub.cleanup`,
/// added to the ODB at each start), so a scheduler whose start loop ran and started none runs no
/// job at all.
pub fn scheduler_jobs(log: &str, pid: i32) -> Result<(), String> {
    let marker = format!(" - {pid}:");
    let mut started = false;
    for line in log.lines().filter(|line| line.contains(&marker)) {
        if line.contains(JOB_STARTING) {
            return Ok(());
        }
        started |= line.contains(SCHEDULER_STARTED);
    }
    Err(if started {
        format!(
            "the scheduler (pid {pid}) started without starting any job: its jobs in the ODB \
             will not run (is `server_prefer_odb_config` False in scheduler.conf?)"
        )
    } else {
        format!("the scheduler (pid {pid}) has not started its jobs yet")
    })
}

/// The dashboard serves its login form.
pub async fn dashboard(address: IpAddr, port: u16) -> Result<(), String> {
    let answer = request(address, port, "GET", "/accounts/login/", &[], "").await?;
    if answer.status == 200 && answer.body.contains(LOGIN_FORM_FIELD) {
        Ok(())
    } else {
        Err(format!(
            "the dashboard on port {port} answered /accounts/login/ with {} and no login form",
            answer.status
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As the real Zato 3.2's scheduler writes its `logs/server.log` (colour codes included).
    const LOADED_AFTER_THE_START_LOOP: &str = "\
2026-12-06 04:10:01,100 - \u{1b}[1;37mINFO\u{1b}[0m - 700:Dummy-2 - zato.scheduler.backend:307 - Job starting `<Job at 0x1; cb_kwargs:{'service': 'zato.outgoing.sql.auto-ping'}>`
2026-12-06 04:20:01,100 - \u{1b}[1;37mINFO\u{1b}[0m - 812:Dummy-1 - zato.scheduler.backend:580 - Scheduler will start to execute jobs in 0.1 seconds
2026-12-06 04:20:01,300 - \u{1b}[1;37mINFO\u{1b}[0m - 812:Dummy-1 - zato.scheduler.backend:603 - Scheduler started
";

    #[test]
    fn a_scheduler_that_started_no_job_is_named_so_and_an_earlier_process_does_not_count() {
        let error = scheduler_jobs(LOADED_AFTER_THE_START_LOOP, 812).unwrap_err();
        assert!(
            error.contains("pid 812") && error.contains("without starting any job"),
            "{error}"
        );
        assert!(scheduler_jobs(LOADED_AFTER_THE_START_LOOP, 700).is_ok());
        let waiting = scheduler_jobs("", 812).unwrap_err();
        assert!(waiting.contains("not started its jobs yet"), "{waiting}");
    }

    #[test]
    fn a_scheduler_that_started_a_job_after_its_start_loop_is_healthy() {
        let log = format!(
            "{LOADED_AFTER_THE_START_LOOP}2026-12-06 04:20:03,100 - \u{1b}[1;37mINFO\u{1b}[0m - \
             812:Dummy-3 - zato.scheduler.backend:307 - Job starting `<Job at 0x2>`\n"
        );
        assert_eq!(scheduler_jobs(&log, 812), Ok(()));
        assert!(scheduler_jobs(&log, 81).is_err(), "pid 81 is not pid 812");
    }
}
