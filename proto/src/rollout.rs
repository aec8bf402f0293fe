//! A cluster's rollout strategy: how long a server that restarted into a rollout (a rolling
//! restart, new server settings, new Python dependencies) is held healthy, out of rotation,
//! before the next one's turn; how long it may take to get there before Muster stops the
//! rollout; and whether the change is then undone (server settings only).

use serde::{Deserialize, Serialize};

use crate::validate::Invalid;

/// A server's time to become healthy after it restarted into a rollout, unless a cluster says
/// otherwise (Nomad's default; a Zato server on two busy cores was healthy within ~40 s).
pub const DEFAULT_HEALTHY_DEADLINE_SECONDS: u32 = 300;
/// The least `healthy_deadline`: a Zato server takes seconds to start.
pub const MIN_HEALTHY_DEADLINE_SECONDS: u32 = 10;
/// The most: a day.
pub const MAX_HEALTHY_DEADLINE_SECONDS: u32 = 86_400;
/// The most `min_healthy_time`: an hour (and less than the healthy deadline).
pub const MAX_MIN_HEALTHY_TIME_SECONDS: u32 = 3600;

/// What a rollout does when a server fails it. Stored as JSON with the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Strategy {
    /// A server that restarted into a rollout and is not healthy this many seconds later stops
    /// the rollout: the cluster's restart turn is paused, with the reason.
    pub healthy_deadline_seconds: u32,
    /// A server that restarted into a rollout stays out of rotation until it has been healthy
    /// this long without a break; then it is back, and the next server's turn comes. 0: at its
    /// first healthy report. Within the healthy deadline.
    #[serde(default)]
    pub min_healthy_time_seconds: u32,
    /// Instead of pausing, a rollout of new server settings is undone: the settings before it
    /// come back, and only the servers that run the new ones restart again.
    pub auto_revert: bool,
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy {
            healthy_deadline_seconds: DEFAULT_HEALTHY_DEADLINE_SECONDS,
            min_healthy_time_seconds: 0,
            auto_revert: false,
        }
    }
}

impl Strategy {
    /// Refuses a time out of range, naming it.
    pub fn check(&self) -> Result<(), Invalid> {
        let seconds = self.healthy_deadline_seconds;
        if !(MIN_HEALTHY_DEADLINE_SECONDS..=MAX_HEALTHY_DEADLINE_SECONDS).contains(&seconds) {
            return Err(Invalid {
                field: "healthy_deadline",
                value: humanize(seconds),
                reason: "must be 10s to 24h",
            });
        }
        let held = self.min_healthy_time_seconds;
        if held > MAX_MIN_HEALTHY_TIME_SECONDS || held >= seconds {
            return Err(Invalid {
                field: "min_healthy_time",
                value: humanize(held),
                reason: "must be 0s to 1h, and shorter than healthy_deadline",
            });
        }
        Ok(())
    }

    /// How people read it: `healthy_deadline 5m, min_healthy_time 0s, auto_revert off`.
    pub fn shown(&self) -> String {
        format!(
            "healthy_deadline {}, min_healthy_time {}, auto_revert {}",
            humanize(self.healthy_deadline_seconds),
            humanize(self.min_healthy_time_seconds),
            if self.auto_revert { "on" } else { "off" }
        )
    }
}

impl From<crate::v1::RolloutStrategy> for Strategy {
    fn from(strategy: crate::v1::RolloutStrategy) -> Self {
        Strategy {
            healthy_deadline_seconds: strategy.healthy_deadline_seconds,
            min_healthy_time_seconds: strategy.min_healthy_time_seconds,
            auto_revert: strategy.auto_revert,
        }
    }
}

impl From<Strategy> for crate::v1::RolloutStrategy {
    fn from(strategy: Strategy) -> Self {
        crate::v1::RolloutStrategy {
            healthy_deadline_seconds: strategy.healthy_deadline_seconds,
            min_healthy_time_seconds: strategy.min_healthy_time_seconds,
            auto_revert: strategy.auto_revert,
        }
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
        for (seconds, shown) in [(0, "0s"), (9, "9s"), (86_401, "24h1s")] {
            let error = Strategy {
                healthy_deadline_seconds: seconds,
                ..Strategy::default()
            }
            .check()
            .unwrap_err()
            .to_string();
            assert!(
                error.contains("healthy_deadline") && error.contains(shown),
                "{error}"
            );
        }
        for (held, deadline, shown) in [(3601, 86_400, "1h1s"), (60, 60, "1m")] {
            let error = Strategy {
                healthy_deadline_seconds: deadline,
                min_healthy_time_seconds: held,
                auto_revert: false,
            }
            .check()
            .unwrap_err()
            .to_string();
            assert!(
                error.contains("min_healthy_time") && error.contains(shown),
                "{error}"
            );
        }
        assert!(
            serde_json::from_str::<Strategy>(
                r#"{"healthy_deadline_seconds":60,"auto_revert":true}"#
            )
            .is_ok_and(|old| old.min_healthy_time_seconds == 0),
            "a strategy stored before min_healthy_time reads as 0"
        );
    }

    #[test]
    fn deadlines_read_as_people_write_them() {
        assert_eq!(humanize(300), "5m");
        assert_eq!(humanize(90), "1m30s");
        assert_eq!(humanize(5400), "1h30m");
        assert_eq!(humanize(10), "10s");
        assert_eq!(
            Strategy::default().shown(),
            "healthy_deadline 5m, min_healthy_time 0s, auto_revert off"
        );
    }
}
