//! A cluster's rollout strategy: how long a server that restarted into a rollout (a rolling
//! restart, new server settings, new Python dependencies) is held healthy, out of rotation,
//! before the next one's turn; how many may be out of rotation at once; how long one may take
//! to get there before Muster stops the rollout; and whether the change is then undone (server
//! settings only).

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
/// The most servers a rollout may have out of rotation at once.
pub const MAX_MAX_UNAVAILABLE: u32 = 32;

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
    /// How many of the cluster's servers may be out of rotation at once for a rollout: those it
    /// restarts, and those out already (down, starting, held, drained by a load balancer) count
    /// alike, so a server already out restarts without taking another one out.
    #[serde(default = "one")]
    pub max_unavailable: u32,
}

/// A strategy stored before `max_unavailable` restarts one server at a time.
fn one() -> u32 {
    1
}

impl Default for Strategy {
    fn default() -> Self {
        Strategy {
            healthy_deadline_seconds: DEFAULT_HEALTHY_DEADLINE_SECONDS,
            min_healthy_time_seconds: 0,
            auto_revert: false,
            max_unavailable: 1,
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
        if !(1..=MAX_MAX_UNAVAILABLE).contains(&self.max_unavailable) {
            return Err(Invalid {
                field: "max_unavailable",
                value: self.max_unavailable.to_string(),
                reason: "must be 1 to 32 servers",
            });
        }
        Ok(())
    }

    /// How people read it: `max_unavailable 1, healthy_deadline 5m, min_healthy_time 0s,
    /// auto_revert off`.
    pub fn shown(&self) -> String {
        format!(
            "max_unavailable {}, healthy_deadline {}, min_healthy_time {}, auto_revert {}",
            self.max_unavailable,
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
            // A coordinator before max_unavailable sends none: it restarts one at a time.
            max_unavailable: strategy.max_unavailable.max(1),
        }
    }
}

impl From<Strategy> for crate::v1::RolloutStrategy {
    fn from(strategy: Strategy) -> Self {
        crate::v1::RolloutStrategy {
            healthy_deadline_seconds: strategy.healthy_deadline_seconds,
            min_healthy_time_seconds: strategy.min_healthy_time_seconds,
            auto_revert: strategy.auto_revert,
            max_unavailable: strategy.max_unavailable,
        }
    }
}

/// How many servers a rollout restarts at once, as messages say it: `one at a time`, `up to 2
/// at a time` (`max_unavailable`; 0, from a coordinator before it: one).
pub fn at_a_time(max_unavailable: u32) -> String {
    match max_unavailable {
        0 | 1 => "one at a time".to_owned(),
        servers => format!("up to {servers} at a time"),
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
                ..Strategy::default()
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
            .is_ok_and(|old| old.min_healthy_time_seconds == 0 && old.max_unavailable == 1),
            "a strategy stored before min_healthy_time and max_unavailable reads as 0s and 1"
        );
        for servers in [0, 33] {
            let error = Strategy {
                max_unavailable: servers,
                ..Strategy::default()
            }
            .check()
            .unwrap_err()
            .to_string();
            assert!(
                error.contains("max_unavailable") && error.contains(&servers.to_string()),
                "{error}"
            );
        }
        assert_eq!(
            Strategy::from(crate::v1::RolloutStrategy {
                healthy_deadline_seconds: 60,
                ..Default::default()
            })
            .max_unavailable,
            1,
            "a coordinator before max_unavailable restarts one server at a time"
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
            "max_unavailable 1, healthy_deadline 5m, min_healthy_time 0s, auto_revert off"
        );
    }
}
