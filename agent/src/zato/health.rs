//! The probes that say a Zato component works, not merely that something listens on its port:
//! - a server answers `GET /zato/ping` with 200 and `ZATO_OK` in its body;
//! - the scheduler accepts an authenticated API call made with the credentials the servers use (a
//!   scheduler that made up its own refuses them: HTTP 500, "Invalid credentials" in its log). The
//!   call deletes a job of a name no job has (the scheduler's `SCHEDULER.DELETE` action), which
//!   changes nothing; since the scheduler logs each one, it is made at most once per
//!   [`SCHEDULER_PROBE_INTERVAL`] while the scheduler stays healthy;
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
