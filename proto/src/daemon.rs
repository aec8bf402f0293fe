//! What the coordinator and the agent do the same way as processes: logging, signals, the
//! one-line text of an error chain, and the one-line cause of a long error.

use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Initialises tracing once per process: an `EnvFilter` from `RUST_LOG` defaulting to `info`,
/// written to journald when the process runs under it (`JOURNAL_STREAM` is set) and to stderr
/// otherwise (with colour only on a terminal).
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    if std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(journald) = tracing_journald::layer()
    {
        registry.with(journald).init();
        return;
    }
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    registry
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(ansi)
                .with_writer(std::io::stderr),
        )
        .init();
}

/// Cancels `token` on SIGTERM or SIGINT.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut terminate), Ok(mut interrupt)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        token.cancel();
    });
}

/// An error and its sources joined by ": ", for logs and one-line messages. A source whose text
/// the message already holds (sqlx and tonic repeat their sources) is left out.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The longest cause [`cause`] gives, in characters.
pub const CAUSE_MAX_CHARS: usize = 200;

/// A long error (a failed `zato` command with its whole command line and output, a traceback)
/// shortened to its cause, in one line, for tables: a failed command is named by its program and
/// sub-commands (`zato create odb`, not its ~700-character command line) and followed by its
/// verdict (up to its exit status and what follows it before the output) and one line of its
/// output: HAProxy's first `[ALERT]`, or else the last line (where Python puts the exception).
/// Anything else keeps its first line. The full text stays where it came from.
pub fn cause(error: &str) -> String {
    let error = error.trim();
    let text = match failed_command(error) {
        Some((command, rest)) => {
            let (verdict, output) = split_verdict(rest);
            let lines: Vec<&str> = output
                .lines()
                .map(str::trim)
                .filter(|line| !line.is_empty())
                .collect();
            let line = lines
                .iter()
                .find(|line| line.contains("[ALERT]"))
                .or(lines.last());
            match line {
                Some(line) => format!("`{command}` {verdict}: {line}"),
                None => format!("`{command}` {verdict}"),
            }
        }
        None => error.lines().next().unwrap_or_default().trim().to_owned(),
    };
    shorten(&text, CAUSE_MAX_CHARS)
}

/// "failed (exit status: 1): OUTPUT" into the verdict and the output: the verdict ends at the
/// first ": " after its parenthesis; without one, it is the first line.
fn split_verdict(rest: &str) -> (String, &str) {
    let split = rest
        .find(')')
        .and_then(|close| rest[close..].find(": ").map(|colon| close + colon));
    match split {
        Some(at) => (rest[..at].to_owned(), &rest[at + 2..]),
        None => (
            rest.lines()
                .next()
                .unwrap_or_default()
                .trim_end_matches(':')
                .to_owned(),
            "",
        ),
    }
}

/// For "`PROGRAM ARGS` REST": the program's file name with its sub-commands (the first words of
/// ARGS that are not paths or `option=value`, at most two), and REST.
fn failed_command(error: &str) -> Option<(String, &str)> {
    let start = error.find('`')?;
    let length = error[start + 1..].find('`')?;
    let command_line = &error[start + 1..start + 1 + length];
    let rest = error[start + 1 + length + 1..].trim_start();
    // Only a command's verdict follows it; other quoted words (a setting, a job) are not commands.
    if !["failed", "did not finish", "rejected"]
        .iter()
        .any(|verdict| rest.starts_with(verdict))
    {
        return None;
    }
    let mut words = command_line
        .split_whitespace()
        // Secrets given in the environment are shown first, as `NAME=***`.
        .skip_while(|word| word.contains('='));
    let program = words.next()?;
    let program = program.rsplit('/').next().unwrap_or(program);
    let sub_commands = words
        .take_while(|word| !word.contains(['/', '=']) && word.len() <= 16)
        .take(2);
    let named = std::iter::once(program)
        .chain(sub_commands)
        .collect::<Vec<_>>()
        .join(" ");
    Some((named, rest))
}

/// `text` cut to at most `max` characters, with "…" where it was cut.
pub fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut short: String = text.chars().take(max.saturating_sub(1)).collect();
    short.push('…');
    short
}

/// The one backoff of Muster: for the `attempt`-th retry (from 1), a delay drawn uniformly from
/// zero to `floor * 2^(attempt-1)`, capped at `ceiling` ("full jitter"). Many clients that failed
/// at once (a coordinator restart) come back spread evenly over the whole window instead of in
/// waves.
pub fn backoff(
    attempt: u32,
    floor: std::time::Duration,
    ceiling: std::time::Duration,
) -> std::time::Duration {
    let exponent = attempt.saturating_sub(1).min(16);
    let cap = floor.saturating_mul(1 << exponent).min(ceiling);
    let mut bytes = [0u8; 2];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    cap.mul_f64(f64::from(u16::from_le_bytes(bytes)) / f64::from(u16::MAX))
}

/// [`backoff`] after the server's retry hint ([`retry_hint`]), when it gave one: an overloaded
/// coordinator says how long to stay away, and the jitter still spreads the clients after that.
pub fn backoff_after(
    status: Option<&tonic::Status>,
    attempt: u32,
    floor: std::time::Duration,
    ceiling: std::time::Duration,
) -> std::time::Duration {
    status.and_then(retry_hint).unwrap_or_default() + backoff(attempt, floor, ceiling)
}

/// The metadata key of an `UNAVAILABLE` answer's retry hint, in milliseconds.
pub const RETRY_AFTER_MS: &str = "retry-after-ms";

/// The retry hint of an `UNAVAILABLE` answer (at most a minute, whatever the server says).
pub fn retry_hint(status: &tonic::Status) -> Option<std::time::Duration> {
    if status.code() != tonic::Code::Unavailable {
        return None;
    }
    let milliseconds: u64 = status
        .metadata()
        .get(RETRY_AFTER_MS)?
        .to_str()
        .ok()?
        .parse()
        .ok()?;
    Some(std::time::Duration::from_millis(milliseconds.min(60_000)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn a_failed_command_is_named_by_its_sub_commands_and_its_last_line() {
        let error = "`ZATO_SECRET=*** /opt/zato/3.2/code/bin/zato create odb --odb_type=postgresql \
                     --odb_host=db --odb_password=*** /var/lib/muster-agent/prod` failed \
                     (exit status: 1): Traceback (most recent call last):\n  File \"x.py\", line 1\n\
                     sqlalchemy.exc.OperationalError: password authentication failed\n";
        assert_eq!(
            super::cause(error),
            "`zato create odb` failed (exit status: 1): \
             sqlalchemy.exc.OperationalError: password authentication failed"
        );
        assert_eq!(
            super::cause("`/bin/false create cluster --x=1 /d` failed (exit status: 1): "),
            "`false create cluster` failed (exit status: 1)"
        );
        assert_eq!(
            super::cause("`zato start /opt/zato/prod/server1` did not finish within 300s"),
            "`zato start` did not finish within 300s"
        );
    }

    #[test]
    fn haproxys_first_alert_is_its_cause() {
        let error = "`haproxy -c` rejected the new config (exit status: 1); the running HAProxy \
                     and its file are left as they were: [NOTICE] (1) : haproxy version is 2.6\n\
                     [ALERT]    (1) : config : parsing [zato.config:12] : unknown keyword 'x'\n\
                     [ALERT]    (1) : config : Fatal errors found in configuration.";
        assert_eq!(
            super::cause(error),
            "`haproxy -c` rejected the new config (exit status: 1); the running HAProxy and its \
             file are left as they were: [ALERT]    (1) : config : parsing [zato.config:12] : \
             unknown keyword 'x'"
        );
    }

    #[test]
    fn other_errors_keep_their_first_line_and_no_cause_is_longer_than_its_bound() {
        assert_eq!(
            super::cause("haproxy -c refused it\n[ALERT] line 3"),
            "haproxy -c refused it"
        );
        assert_eq!(
            super::cause("scheduler s1: no job started (is `server_prefer_odb_config` False?)"),
            "scheduler s1: no job started (is `server_prefer_odb_config` False?)",
            "a quoted setting is not a command"
        );
        let long = "x".repeat(500);
        let cause = super::cause(&long);
        assert_eq!(cause.chars().count(), super::CAUSE_MAX_CHARS);
        assert!(cause.ends_with('…'));
    }

    #[test]
    fn backoff_grows_to_its_ceiling() {
        let (floor, ceiling) = (Duration::from_secs(1), Duration::from_secs(60));
        assert!(super::backoff(1, floor, ceiling) <= floor);
        assert!(super::backoff(30, floor, ceiling) <= ceiling);
    }

    #[test]
    fn backoff_is_spread_over_its_whole_window() {
        let (floor, ceiling) = (Duration::from_secs(1), Duration::from_secs(8));
        let delays: Vec<Duration> = (0..400)
            .map(|_| super::backoff(4, floor, ceiling))
            .collect();
        // Full jitter: uniform over [0, 8 s]; 400 draws land in every quarter of it.
        for quarter in 0..4u32 {
            let (low, high) = (ceiling * quarter / 4, ceiling * (quarter + 1) / 4);
            assert!(
                delays.iter().any(|delay| *delay >= low && *delay <= high),
                "no delay between {low:?} and {high:?}"
            );
        }
    }

    #[test]
    fn an_overloaded_server_s_retry_hint_comes_first() {
        let mut status = tonic::Status::unavailable("busy");
        status
            .metadata_mut()
            .insert(super::RETRY_AFTER_MS, "1500".parse().unwrap());
        assert_eq!(
            super::retry_hint(&status),
            Some(Duration::from_millis(1500))
        );
        let delay = super::backoff_after(
            Some(&status),
            1,
            Duration::from_millis(100),
            Duration::from_secs(1),
        );
        assert!(delay >= Duration::from_millis(1500) && delay <= Duration::from_millis(1600));
        assert_eq!(
            super::retry_hint(&tonic::Status::internal("no hint for other codes")),
            None
        );
    }
}
