//! What the coordinator and the agent must agree on about a load balancer's HAProxy: the settings
//! of a load-balancer assignment with their defaults, and the backend's `server` line, laid out as
//! Zato's `zato.config` has it.

use std::time::Duration;

use crate::v1::LoadBalancerSettings;
use crate::validate::{self, Invalid};

/// The HAProxy binary when an assignment names none: `haproxy` from `PATH`.
pub const DEFAULT_HAPROXY_BIN: &str = "haproxy";
/// The frontend's address when an assignment names none.
pub const DEFAULT_FRONTEND_ADDRESS: &str = "0.0.0.0";
/// The frontend's port, Zato's `--lb-port` default.
pub const DEFAULT_FRONTEND_PORT: u16 = 11223;
pub const DEFAULT_CHECK_INTER: Duration = Duration::from_secs(2);
pub const DEFAULT_CHECK_RISE: u32 = 2;
pub const DEFAULT_CHECK_FALL: u32 = 2;
/// A silent server (a host cut off: no refusal, no answer) costs a request this long before
/// HAProxy tries another server; Zato's servers answer a connection in milliseconds.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a Zato service may take to answer.
pub const DEFAULT_SERVER_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a request whose server could not be reached is tried again, on another server.
pub const DEFAULT_RETRIES: u32 = 3;
/// The backend, frontend and server-name prefix of Zato's `zato.config`.
pub const BACKEND: &str = "bck_http_plain";
pub const FRONTEND: &str = "front_http_plain";
pub const SERVER_PREFIX: &str = "http_plain--";
/// How often a server that is down, or changing state, is checked: a server that starts answering
/// is in the backend well within a second, whatever the regular check interval.
pub const FAST_CHECK_INTER: Duration = Duration::from_millis(250);

const CHECK_INTER_MIN: Duration = Duration::from_millis(100);
const CHECK_INTER_MAX: Duration = Duration::from_secs(3600);
const CHECK_COUNT_MAX: u32 = 100;
const CONNECT_TIMEOUT_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(100)..=Duration::from_secs(60);
const SERVER_TIMEOUT_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(3600);
const RETRIES_MAX: u32 = 10;

/// The settings with every default filled in, after checking each value; the error names the
/// offending one.
pub fn settings(given: &LoadBalancerSettings) -> Result<LoadBalancerSettings, Invalid> {
    let invalid = |field, value: String, reason| Invalid {
        field,
        value,
        reason,
    };
    let haproxy_bin = if given.haproxy_bin.is_empty() {
        DEFAULT_HAPROXY_BIN.to_owned()
    } else {
        validate::program("HAProxy binary", &given.haproxy_bin)?;
        given.haproxy_bin.clone()
    };
    let frontend_address = if given.frontend_address.is_empty() {
        DEFAULT_FRONTEND_ADDRESS.to_owned()
    } else {
        given
            .frontend_address
            .parse::<std::net::IpAddr>()
            .map_err(|_| {
                invalid(
                    "frontend address",
                    given.frontend_address.clone(),
                    "must be an IP address",
                )
            })?
            .to_string()
    };
    let check_inter_ms = match given.check_inter_ms {
        0 => u32::try_from(DEFAULT_CHECK_INTER.as_millis()).unwrap_or(u32::MAX),
        value => {
            let inter = Duration::from_millis(u64::from(value));
            if !(CHECK_INTER_MIN..=CHECK_INTER_MAX).contains(&inter) {
                return Err(invalid(
                    "check interval",
                    format!("{value}ms"),
                    "must be from 100ms to 1h",
                ));
            }
            value
        }
    };
    let count = |field, value: u32, default| match value {
        0 => Ok(default),
        value if value <= CHECK_COUNT_MAX => Ok(value),
        value => Err(invalid(field, value.to_string(), "must be from 1 to 100")),
    };
    let timeout =
        |field, value: u32, default: Duration, range: std::ops::RangeInclusive<Duration>| {
            if value == 0 {
                return Ok(u32::try_from(default.as_millis()).unwrap_or(u32::MAX));
            }
            if range.contains(&Duration::from_millis(u64::from(value))) {
                Ok(value)
            } else {
                Err(invalid(
                    field,
                    format!("{value}ms"),
                    if field == "connect timeout" {
                        "must be from 100ms to 60s"
                    } else {
                        "must be from 1s to 1h"
                    },
                ))
            }
        };
    let retries = match given.retries {
        0 => DEFAULT_RETRIES,
        value if value <= RETRIES_MAX => value,
        value => {
            return Err(invalid(
                "retries",
                value.to_string(),
                "must be from 1 to 10",
            ));
        }
    };
    Ok(LoadBalancerSettings {
        haproxy_bin,
        frontend_address,
        check_inter_ms,
        check_rise: count("check rise", given.check_rise, DEFAULT_CHECK_RISE)?,
        check_fall: count("check fall", given.check_fall, DEFAULT_CHECK_FALL)?,
        connect_timeout_ms: timeout(
            "connect timeout",
            given.connect_timeout_ms,
            DEFAULT_CONNECT_TIMEOUT,
            CONNECT_TIMEOUT_RANGE,
        )?,
        server_timeout_ms: timeout(
            "server timeout",
            given.server_timeout_ms,
            DEFAULT_SERVER_TIMEOUT,
            SERVER_TIMEOUT_RANGE,
        )?,
        retries,
    })
}

/// A duration as HAProxy's config reads it: `2s`, `250ms`.
pub fn duration_text(milliseconds: u64) -> String {
    if milliseconds.is_multiple_of(1000) {
        format!("{}s", milliseconds / 1000)
    } else {
        format!("{milliseconds}ms")
    }
}

/// The health-check keywords of every server line:
/// `check inter 2s rise 2 fall 2 fastinter 250ms downinter 250ms observe layer4 error-limit 1
/// on-error mark-down`: besides the checks, a request that cannot connect marks its server down
/// at once, so that the requests after it (and its own retry) go to the others rather than wait
/// out `timeout connect` on a host that is cut off.
pub fn check_keywords(settings: &LoadBalancerSettings) -> String {
    let fast = u64::from(settings.check_inter_ms)
        .min(u64::try_from(FAST_CHECK_INTER.as_millis()).unwrap_or(u64::MAX));
    format!(
        "check inter {} rise {} fall {} fastinter {} downinter {} observe layer4 error-limit 1 \
         on-error mark-down",
        duration_text(u64::from(settings.check_inter_ms)),
        settings.check_rise,
        settings.check_fall,
        duration_text(fast),
        duration_text(fast),
    )
}

/// HAProxy's `ADDRESS:PORT`, with an IPv6 address in brackets.
pub fn address_text(address: &str, port: u32) -> String {
    if address.contains(':') {
        format!("[{address}]:{port}")
    } else {
        format!("{address}:{port}")
    }
}

/// One backend server line as `zato.config` has it, comment included. `name` and `address` must
/// have passed [`validate::name`] and [`validate::host`].
pub fn server_line(
    name: &str,
    address: &str,
    port: u32,
    settings: &LoadBalancerSettings,
) -> String {
    format!(
        "server {SERVER_PREFIX}{name} {} {} # ZATO backend {BACKEND}:server--{name}",
        address_text(address, port),
        check_keywords(settings)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_zatos() {
        let settings = settings(&LoadBalancerSettings::default()).unwrap();
        assert_eq!(settings.haproxy_bin, "haproxy");
        assert_eq!(settings.frontend_address, "0.0.0.0");
        assert_eq!(
            server_line("server1", "10.0.0.5", 17010, &settings),
            "server http_plain--server1 10.0.0.5:17010 check inter 2s rise 2 fall 2 \
             fastinter 250ms downinter 250ms observe layer4 error-limit 1 on-error mark-down \
             # ZATO backend bck_http_plain:server--server1"
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let bad = LoadBalancerSettings {
            frontend_address: "0.0.0.0 ssl".into(),
            ..Default::default()
        };
        let error = settings(&bad).unwrap_err().to_string();
        assert!(
            error.contains("frontend address \"0.0.0.0 ssl\""),
            "{error}"
        );
        let bad = LoadBalancerSettings {
            check_inter_ms: 10,
            ..Default::default()
        };
        assert!(
            settings(&bad)
                .unwrap_err()
                .to_string()
                .contains("check interval \"10ms\"")
        );
        let bad = LoadBalancerSettings {
            haproxy_bin: "haproxy\n-d".into(),
            ..Default::default()
        };
        settings(&bad).unwrap_err();
    }

    #[test]
    fn short_intervals_keep_fast_checks_no_slower_than_regular_ones() {
        let settings = settings(&LoadBalancerSettings {
            check_inter_ms: 100,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            check_keywords(&settings),
            "check inter 100ms rise 2 fall 2 fastinter 100ms downinter 100ms observe layer4 \
             error-limit 1 on-error mark-down"
        );
        assert_eq!(address_text("::1", 80), "[::1]:80");
    }
}
