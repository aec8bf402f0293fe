//! Refused credentials. Every refused admin call, enrollment and agent call is logged at `warn`
//! (who, from where, why; never a secret: a token's id, not its secret) and counted by reason, and
//! `/metrics` shows the counts (`muster_admin_calls_refused_total`,
//! `muster_enrollments_refused_total`, `muster_agent_calls_refused_total`). The counts are this
//! coordinator process's, since it started.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Mutex;

/// What was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Door {
    /// An `AdminService` call: its bearer token.
    Admin,
    /// `Enroll`: its join token and request.
    Enrollment,
    /// Any other `AgentService` call: its client certificate.
    Agent,
}

impl Door {
    const ALL: [Door; 3] = [Door::Admin, Door::Enrollment, Door::Agent];

    fn metric(self) -> &'static str {
        match self {
            Door::Admin => "muster_admin_calls_refused_total",
            Door::Enrollment => "muster_enrollments_refused_total",
            Door::Agent => "muster_agent_calls_refused_total",
        }
    }

    fn help(self) -> &'static str {
        match self {
            Door::Admin => "AdminService calls refused for their admin token, by reason.",
            Door::Enrollment => "Enrollments refused, by reason.",
            Door::Agent => "AgentService calls refused for their client certificate, by reason.",
        }
    }

    /// Every reason counted at this door, so each series exists (at 0) from the start.
    fn reasons(self) -> &'static [&'static str] {
        match self {
            Door::Admin => &["no-token", "malformed-token", "unknown-token"],
            Door::Enrollment => &[
                "malformed-token",
                "unknown-token",
                "wrong-secret",
                "revoked",
                "expired",
                "used-up",
                "role-not-allowed",
                "host-name-claimed",
                "label-not-bound",
                "invalid-request",
            ],
            Door::Agent => &[
                "no-certificate",
                "bad-certificate",
                "host-removed",
                "other-host",
                "unassigned-component",
            ],
        }
    }
}

/// The refusals counted so far.
#[derive(Debug, Default)]
pub struct Refusals {
    counts: Mutex<BTreeMap<(Door, &'static str), u64>>,
}

impl Refusals {
    /// Logs and counts one refusal. `who` names the credential without its secret (a token id, a
    /// host id, a host name), `from` is the caller's address, `why` the error the caller got.
    pub fn refused(
        &self,
        door: Door,
        reason: &'static str,
        who: &str,
        from: Option<SocketAddr>,
        why: &dyn std::fmt::Display,
    ) {
        let from = from.map_or_else(|| "unknown".to_owned(), |address| address.to_string());
        tracing::warn!(door = ?door, reason, who, from = %from, why = %why, "call refused");
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *counts.entry((door, reason)).or_default() += 1;
    }

    /// The counters in Prometheus' text format.
    pub fn render(&self, text: &mut String) {
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for door in Door::ALL {
            let metric = door.metric();
            let _ = writeln!(text, "# HELP {metric} {}", door.help());
            let _ = writeln!(text, "# TYPE {metric} counter");
            let counted = counts
                .keys()
                .filter(|(counted_door, _)| *counted_door == door)
                .map(|(_, reason)| *reason);
            let reasons: std::collections::BTreeSet<&str> =
                door.reasons().iter().copied().chain(counted).collect();
            for reason in reasons {
                let count = counts.get(&(door, reason)).copied().unwrap_or(0);
                let _ = writeln!(text, "{metric}{{reason=\"{reason}\"}} {count}");
            }
        }
    }
}
