//! What the coordinator and the agent do the same way as processes: logging, signals, and the
//! one-line text of an error chain.

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

/// The one backoff of Muster: for the `attempt`-th retry (from 1), a random delay between a tenth
/// and all of `floor * 2^(attempt-1)`, capped at `ceiling`. The jitter spreads many clients that
/// failed at once (a coordinator restart) over time.
pub fn backoff(
    attempt: u32,
    floor: std::time::Duration,
    ceiling: std::time::Duration,
) -> std::time::Duration {
    let exponent = attempt.saturating_sub(1).min(16);
    let cap = floor.saturating_mul(1 << exponent).min(ceiling);
    let mut byte = [0u8; 1];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut byte);
    cap.mul_f64(0.1 + 0.9 * f64::from(byte[0]) / 255.0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn backoff_grows_to_its_ceiling() {
        let (floor, ceiling) = (Duration::from_secs(1), Duration::from_secs(60));
        assert!(super::backoff(1, floor, ceiling) <= floor);
        assert!(super::backoff(30, floor, ceiling) <= ceiling);
        assert!(super::backoff(30, floor, ceiling) >= ceiling / 10);
    }
}
