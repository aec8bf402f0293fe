//! What a test reads and does to a Zato scheduler's jobs, the same with the real Zato and with
//! mock-zato: the heartbeat runs in Muster's job log, and a job stopped through the scheduler's
//! own API (as a server's `zato.scheduler.job.delete` does), which stops it until the scheduler's
//! next start.

use std::net::SocketAddr;
use std::path::Path;

/// Muster's heartbeat job (`muster_agent::zato::jobs::HEARTBEAT_JOB`).
pub const HEARTBEAT_JOB: &str = "muster.scheduler.heartbeat";

/// How many runs of `job` the scheduler in `scheduler_dir` logged in Muster's job log.
pub fn runs(scheduler_dir: &Path, job: &str) -> usize {
    std::fs::read_to_string(scheduler_dir.join("logs/muster-jobs.log"))
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(&format!("Executing `{job}`")))
        .count()
}

/// How many DEBUG lines the scheduler's `logs/server.log` has (Zato's level there is INFO).
pub fn debug_lines_in_server_log(scheduler_dir: &Path) -> usize {
    std::fs::read_to_string(scheduler_dir.join("logs/server.log"))
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains(" - DEBUG - "))
        .count()
}

/// The HTTP request that stops `job` in the scheduler at `address`: Zato's `SCHEDULER.DELETE`
/// (100004) with the API client of its `scheduler.conf`.
pub fn stop_request(scheduler_dir: &Path, address: SocketAddr, job: &str) -> String {
    let conf = std::fs::read_to_string(scheduler_dir.join("config/repo/scheduler.conf")).unwrap();
    let mut in_clients = false;
    let mut client = None;
    for line in conf.lines().map(str::trim) {
        if line.starts_with('[') {
            in_clients = line == "[api_clients]";
        } else if in_clients
            && let Some((name, password)) = line.split_once('=')
            && name.trim() != "auth_required"
        {
            client = Some(format!("{}:{}", name.trim(), password.trim()));
        }
    }
    let credentials = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        client.expect("the scheduler's API client"),
    );
    let body = serde_json::json!({"action": "100004", "name": job}).to_string();
    format!(
        "POST / HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nAuthorization: Basic \
         {credentials}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}
