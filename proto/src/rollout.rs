//! A cluster's rollout strategy: how long a server that restarted into a rollout (a rolling
//! restart, new server settings, new Python dependencies) may take to become healthy before
//! Muster stops the rollout, and whether the change is then undone (server settings only).

use serde::{Deserialize, Serialize};

use crate::validate::Invalid;

/// A server's time to become healthy after it restarted into a rollout, unless a cluster says
/// otherwise (Nomad's default; a Zato server on two busy cores was healthy within ~40 s).
pub const DEFAULT_HEALTHY_DEADLINE_SECONDS: u32 = 300;
/// The least `healthy_deadline`: a Zato server takes seconds to start.
pub const MIN_HEALTHY_DEADLINE_SECONDS: u32 = 10;
/// The most: a day.
pub const MAX_HEALTHY_DEADLINE_SECONDS: u32 = 86_400;

/// What a rollout does when a server fails it. Stored as JSON with the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Strategy {
    /// A server that restarted into a rollout and is not healthy this many seconds later stops
    /// the rollout: the cluster's restart turn is paused, with the reason.
    pub healthy_deadline_seconds: u32,
    /// Instead of pausing, a rollout of new server settings is undone: the settings before it
    /// come back, and only the servers that run the new ones restart again.
    pub auto_revert: bool,
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy {
            healthy_deadline_seconds: DEFAULT_HEALTHY_DEADLINE_SECONDS,
            auto_revert: false,
        }
    }
}

impl Strategy {
    /// Refuses a deadline out of range, naming it.
    pub fn check(&self) -> Result<(), Invalid> {
        let seconds = self.healthy_deadline_seconds;
        if !(MIN_HEALTHY_DEADLINE_SECONDS..=MAX_HEALTHY_DEADLINE_SECONDS).contains(&seconds) {
            return Err(Invalid {
                field: "healthy_deadline",
                value: format!("{seconds}s"),
                reason: "must be 10s to 24h",
            });
        }
        Ok(())
    }

    /// How people read it: `healthy_deadline 5m, auto_revert off`.
    pub fn shown(&self) -> String {
        format!(
            "healthy_deadline {}, auto_revert {}",
            humanize(self.healthy_deadline_seconds),
            if self.auto_revert { "on" } else { "off" }
        )
    }
}

/// Seconds as `90s`, `5m`, `1h30m`.
pub fn humanize(seconds: u32) -> String {
    let (hours, minutes, rest) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let mut text = String::new();
    if hours > 0 {
        text.push_str(&format!("{hours}h"));
    }
    if minutes > 0 {
        text.push_str(&format!("{minutes}m"));
    }
    if rest > 0 || text.is_empty() {
        text.push_str(&format!("{rest}s"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_out_of_range_is_refused_by_name() {
        assert!(Strategy::default().check().is_ok());
        for seconds in [0, 9, 86_401] {
            let error = Strategy {
                healthy_deadline_seconds: seconds,
                auto_revert: false,
            }
            .check()
            .unwrap_err()
            .to_string();
            assert!(
                error.contains("healthy_deadline") && error.contains(&format!("{seconds}s")),
                "{error}"
            );
        }
    }

    #[test]
    fn deadlines_read_as_people_write_them() {
        assert_eq!(humanize(300), "5m");
        assert_eq!(humanize(90), "1m30s");
        assert_eq!(humanize(5400), "1h30m");
        assert_eq!(humanize(10), "10s");
        assert_eq!(
            Strategy::default().shown(),
            "healthy_deadline 5m, auto_revert off"
        );
    }
}
