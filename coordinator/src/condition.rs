//! What a component's state means to an operator: the state to show and, when it is not healthy,
//! why, in one line. A pure function of the store's facts, so `muster status`, `muster wait` and
//! every API client read the same words.
//!
//! The agent reports what it sees of the components it was given. What it cannot report — a host
//! that never enrolled, one that stopped reporting, a component withheld until the cluster's
//! bootstrap is done — the coordinator knows, and says here.

use muster_proto::daemon::cause;
use muster_proto::state::Condition as Shown;
use muster_proto::v1::{self, ComponentState, Role};

use crate::domain::{Assignment, BootstrapState, BootstrapTask, Host, HostState};

/// A component's state as shown, with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// The state the host reported (`running`, `failed`, …), or what the coordinator says for
    /// what the host cannot: pending (not reported yet), down (its host stopped reporting),
    /// unknown (its host has not reported lately), drained (stopped because its host is
    /// drained), unreachable (out of its load balancers' rotation).
    pub state: Shown,
    pub healthy: bool,
    /// Why it is not healthy, in one line; for a healthy one, the error it still reports (a load
    /// balancer that kept its config when HAProxy refused the new one); empty otherwise.
    pub reason: String,
}

impl Condition {
    fn new(state: Shown, reason: String) -> Condition {
        Condition {
            state,
            healthy: false,
            reason,
        }
    }
}

/// How often an agent that does not say reports (the agent's default `heartbeat_interval`).
pub const DEFAULT_HEARTBEAT_MS: i64 = 5_000;

/// The least silence that makes a host's last report doubtful: a busy coordinator writes liveness
/// late, and an agent that reports every second is not doubted for a second or two of that.
const LEAST_SILENCE_MS: i64 = 5_000;

/// The moment a condition is judged at.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub ms: i64,
    /// When this coordinator process started. What a host reported before that may be from before
    /// a reboot (this coordinator's own host's among them: a reboot restarts both) and is not
    /// believed until the host reports again.
    pub coordinator_started_ms: i64,
}

/// Why a host's last report is not believed although its heartbeat TTL has not marked it down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doubt {
    /// Silent for this many ms: longer than its last report stands for.
    Silent(i64),
    /// It last reported before this coordinator started.
    BeforeStart,
}

/// Whether `host`'s last report is doubted at `now`: it was made before this coordinator started,
/// or the host has been silent longer than that report stands for (two of its heartbeat intervals
/// and a second, since coordinators write liveness once a second, and at least
/// [`LEAST_SILENCE_MS`]). `None` while it reports, or before its first report.
pub fn doubt(host: &Host, now: Now) -> Option<Doubt> {
    let last_seen = host.last_seen_ms?;
    if last_seen < now.coordinator_started_ms {
        return Some(Doubt::BeforeStart);
    }
    let interval = match i64::from(host.heartbeat_interval_ms) {
        0 => DEFAULT_HEARTBEAT_MS,
        interval => interval,
    };
    let silent = now.ms - last_seen;
    (silent > (2 * interval + 1_000).max(LEAST_SILENCE_MS)).then_some(Doubt::Silent(silent))
}

/// The condition of `assignment`, whose host is `host` (`None`: no host of that name enrolled),
/// in a cluster whose bootstrap stands at `bootstrap` (the cluster's tasks only), at `now`.
pub fn condition(
    assignment: &Assignment,
    host: Option<&Host>,
    bootstrap: &[BootstrapState],
    now: Now,
) -> Condition {
    let Some(host) = host else {
        return Condition::new(
            Shown::Pending,
            format!(
                "host {} has not enrolled: no agent has joined with that name",
                assignment.host
            ),
        );
    };
    if host.state == HostState::Down {
        let since = host
            .last_seen_ms
            .map(crate::unix_ms_text)
            .unwrap_or_else(|| "never".to_owned());
        return match &assignment.status {
            Some(status) => Condition::new(
                Shown::Down,
                format!(
                    "host {} is down: no heartbeat since {since} (it last reported {}{})",
                    host.name,
                    status.state.word(),
                    if status.healthy { ", healthy" } else { "" }
                ),
            ),
            None => Condition::new(
                Shown::Pending,
                format!("host {} is down: no heartbeat since {since}", host.name),
            ),
        };
    }
    let Some(status) = &assignment.status else {
        return Condition::new(Shown::Pending, not_reported(assignment, host, bootstrap));
    };
    if let Some(doubt) = doubt(host, now) {
        // Not down yet (its heartbeat TTL has not run out), but what it last said may be from
        // before a reboot, or from before this coordinator started.
        let why = match doubt {
            Doubt::Silent(silent) => format!("has not reported for {}s", silent / 1_000),
            Doubt::BeforeStart => "has not reported since the coordinator started".to_owned(),
        };
        return Condition::new(
            Shown::Unknown,
            format!(
                "host {} {why}: it last reported {}{}",
                host.name,
                status.state.word(),
                if status.healthy { ", healthy" } else { "" }
            ),
        );
    }
    if host.drained && status.state == ComponentState::Stopped {
        return Condition::new(Shown::Drained, format!("host {} is drained", host.name));
    }
    if status.healthy {
        // Healthy with an error: a load balancer that kept its config when HAProxy refused the
        // new one. Worth a line.
        return Condition {
            state: Shown::Reported(status.state),
            healthy: true,
            reason: if status.last_error.is_empty() {
                String::new()
            } else {
                cause(&status.last_error)
            },
        };
    }
    let reason = if status.last_error.is_empty() {
        match status.state {
            ComponentState::Creating => "its `zato create` runs".to_owned(),
            ComponentState::Starting => "started, not answering yet".to_owned(),
            ComponentState::Restarting => "it died; restarting after a backoff".to_owned(),
            ComponentState::Stopped => "stopped".to_owned(),
            other => format!("host {} reports it {}", host.name, other.word()),
        }
    } else {
        cause(&status.last_error)
    };
    Condition::new(Shown::Reported(status.state), reason)
}

/// [`condition`], with what the cluster's load balancers see (`balancers`: the load balancer
/// assignments of hosts that report; others are stale): a server a healthy load balancer takes
/// out of rotation for failed checks (HAProxy's DOWN) is `unreachable`, whatever its own host
/// says, so that a summary never calls healthy what the backend table shows DOWN (a server whose
/// host is cut off from the others still answers its own agent).
pub fn condition_seen_by_balancers(
    assignment: &Assignment,
    host: Option<&Host>,
    bootstrap: &[BootstrapState],
    balancers: &[Assignment],
    now: Now,
) -> Condition {
    let shown = condition(assignment, host, bootstrap, now);
    if !shown.healthy || assignment.role != Role::Server {
        return shown;
    }
    for balancer in balancers
        .iter()
        .filter(|balancer| balancer.role == Role::LoadBalancer)
        .filter(|balancer| balancer.cluster == assignment.cluster)
    {
        let Some(status) = balancer.status.as_ref().filter(|status| status.healthy) else {
            continue;
        };
        if let Some(backend) = status.backends.iter().find(|backend| {
            backend.name == assignment.name && backend.status() == v1::BackendStatus::Down
        }) {
            return Condition::new(
                Shown::Unreachable,
                format!(
                    "load balancer {} on host {} takes it out of rotation: {} ({})",
                    balancer.name, balancer.host, backend.state, backend.check
                ),
            );
        }
    }
    shown
}

/// Why the host has not reported a component it should know of.
fn not_reported(assignment: &Assignment, host: &Host, bootstrap: &[BootstrapState]) -> String {
    // Until its cluster is bootstrapped, only a load balancer is sent to its host.
    if assignment.role != Role::LoadBalancer {
        if bootstrap.is_empty() {
            return "waiting for the cluster's bootstrap: no enrolled host has a server, \
                    scheduler or web-admin of it yet"
                .to_owned();
        }
        for task in BootstrapTask::ALL {
            let Some(state) = bootstrap.iter().find(|state| state.task == task) else {
                continue;
            };
            if state.done {
                continue;
            }
            let step = format!("`zato create {}` on host {}", task.as_str(), state.host);
            return if state.last_error.is_empty() {
                format!("waiting for the cluster's bootstrap: {step}")
            } else {
                format!(
                    "waiting for the cluster's bootstrap: {step} failed, retrying: {}",
                    cause(&state.last_error)
                )
            };
        }
    }
    match host.state {
        HostState::New => format!("host {} has enrolled and not reported yet", host.name),
        _ if host.applied_generation < host.generation => format!(
            "host {} is applying generation {} (it applied {})",
            host.name, host.generation, host.applied_generation
        ),
        _ => format!("host {} has not reported it yet", host.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ComponentStatus;

    fn host(state: HostState) -> Host {
        Host {
            id: "h1".to_owned(),
            name: "app-1".to_owned(),
            advertise_address: "10.0.0.1".to_owned(),
            labels: Default::default(),
            cluster: String::new(),
            admitted: Vec::new(),
            state,
            enrolled_at_ms: 0,
            last_seen_ms: Some(0),
            generation: 3,
            applied_generation: 3,
            drained: false,
            heartbeat_interval_ms: 1_000,
            zato_installs: Vec::new(),
        }
    }

    /// Within a second of the hosts' last report (`last_seen_ms` 0), at a coordinator that has
    /// run since before it.
    const NOW: Now = at(1_000);

    const fn at(ms: i64) -> Now {
        Now {
            ms,
            coordinator_started_ms: -1,
        }
    }

    fn server(status: Option<(&str, bool, &str)>) -> Assignment {
        Assignment {
            cluster: "prod".to_owned(),
            role: Role::Server,
            name: "server1".to_owned(),
            host: "app-1".to_owned(),
            port: 17010,
            created_at_ms: 0,
            load_balancer: None,
            status: status.map(|(state, healthy, last_error)| ComponentStatus {
                cluster: "prod".to_owned(),
                role: Role::Server,
                name: "server1".to_owned(),
                state: ComponentState::from_word(state).unwrap(),
                healthy,
                last_error: last_error.to_owned(),
                restarts: 0,
                backends: Vec::new(),
                services_revision: String::new(),
                config_revision: String::new(),
                python_revision: String::new(),
                python_installed: String::new(),
                user_conf_revision: String::new(),
                odb_epoch: 0,
                odb_empty: false,
                restart_epoch: 0,
                rollout_held_since: None,
                rolls: false,
            }),
        }
    }

    fn bootstrap(odb_error: &str, cluster_done: bool) -> Vec<BootstrapState> {
        vec![
            BootstrapState {
                cluster: "prod".to_owned(),
                task: BootstrapTask::Odb,
                host: "app-1".to_owned(),
                done: odb_error.is_empty(),
                last_error: odb_error.to_owned(),
            },
            BootstrapState {
                cluster: "prod".to_owned(),
                task: BootstrapTask::Cluster,
                host: "app-1".to_owned(),
                done: cluster_done,
                last_error: String::new(),
            },
        ]
    }

    #[test]
    fn a_failed_bootstrap_is_the_reason_a_server_is_pending() {
        let odb_error = "`/bin/false create odb --odb_type=sqlite /var/lib/muster-agent/prod` \
                         failed (exit status: 1): ";
        let shown = condition(
            &server(None),
            Some(&host(HostState::Up)),
            &bootstrap(odb_error, false),
            NOW,
        );
        assert_eq!(shown.state, Shown::Pending);
        assert_eq!(
            shown.reason,
            "waiting for the cluster's bootstrap: `zato create odb` on host app-1 failed, \
             retrying: `false create odb` failed (exit status: 1)"
        );
        let running = condition(
            &server(None),
            Some(&host(HostState::Up)),
            &bootstrap("", false),
            NOW,
        );
        assert_eq!(
            running.reason,
            "waiting for the cluster's bootstrap: `zato create cluster` on host app-1"
        );
    }

    #[test]
    fn a_host_that_never_enrolled_or_went_down_is_named() {
        let never = condition(&server(None), None, &[], NOW);
        assert_eq!(
            (never.state.word(), never.reason.as_str()),
            (
                "pending",
                "host app-1 has not enrolled: no agent has joined with that name"
            )
        );
        let down = condition(
            &server(Some(("running", true, ""))),
            Some(&host(HostState::Down)),
            &bootstrap("", true),
            NOW,
        );
        assert_eq!(down.state, Shown::Down);
        assert!(!down.healthy);
        assert!(
            down.reason
                .starts_with("host app-1 is down: no heartbeat since ")
                && down.reason.ends_with("(it last reported running, healthy)"),
            "{}",
            down.reason
        );
    }

    #[test]
    fn a_host_silent_for_two_of_its_intervals_is_not_believed_before_it_is_down() {
        let healthy = server(Some(("running", true, "")));
        let up = host(HostState::Up);
        let judged_at = |ms| condition(&healthy, Some(&up), &bootstrap("", true), at(ms));
        // It reports every second: doubted after 5 s, the least silence that is.
        assert!(judged_at(5_000).healthy);
        let silent = judged_at(5_001);
        assert_eq!(silent.state, Shown::Unknown);
        assert!(!silent.healthy, "what it last said may no longer hold");
        assert_eq!(
            silent.reason,
            "host app-1 has not reported for 5s: it last reported running, healthy"
        );
        // An agent that does not say how often it reports: its default, 5 s.
        let mut unsaid = host(HostState::Up);
        unsaid.heartbeat_interval_ms = 0;
        let unsaid_at = |ms| condition(&healthy, Some(&unsaid), &bootstrap("", true), at(ms));
        assert!(unsaid_at(11_000).healthy);
        assert_eq!(unsaid_at(11_001).state, Shown::Unknown);
    }

    /// A reboot of the coordinator's host (or any restart of the coordinator) is shorter than the
    /// silence that raises doubt: what the hosts said before it is not believed until they report
    /// to a coordinator that runs now.
    #[test]
    fn a_report_from_before_the_coordinator_started_is_not_believed() {
        let healthy = server(Some(("running", true, "")));
        let up = host(HostState::Up);
        let started_after = Now {
            ms: 1_000,
            coordinator_started_ms: 500,
        };
        let shown = condition(&healthy, Some(&up), &bootstrap("", true), started_after);
        assert_eq!(shown.state, Shown::Unknown);
        assert!(!shown.healthy);
        assert_eq!(
            shown.reason,
            "host app-1 has not reported since the coordinator started: it last reported running, healthy"
        );
        // Its next report, received after the start, is believed.
        let mut reported = host(HostState::Up);
        reported.last_seen_ms = Some(600);
        assert!(
            condition(
                &healthy,
                Some(&reported),
                &bootstrap("", true),
                started_after
            )
            .healthy
        );
    }

    #[test]
    fn a_stopped_component_of_a_drained_host_is_drained() {
        let mut drained = host(HostState::Up);
        drained.drained = true;
        let shown = condition(
            &server(Some(("stopped", false, ""))),
            Some(&drained),
            &bootstrap("", true),
            NOW,
        );
        assert_eq!(
            (shown.state.word(), shown.reason.as_str()),
            ("drained", "host app-1 is drained")
        );
    }

    #[test]
    fn a_failure_shows_its_cause_and_a_healthy_component_no_reason() {
        let failed = condition(
            &server(Some((
                "failed",
                false,
                "`zato start /var/lib/muster-agent/prod/server1` failed (exit status: 1): \
                 line 1\nOSError: [Errno 98] Address already in use",
            ))),
            Some(&host(HostState::Up)),
            &bootstrap("", true),
            NOW,
        );
        assert_eq!(
            failed.reason,
            "`zato start` failed (exit status: 1): OSError: [Errno 98] Address already in use"
        );
        let healthy = condition(
            &server(Some(("running", true, ""))),
            Some(&host(HostState::Up)),
            &bootstrap("", true),
            NOW,
        );
        assert!(healthy.healthy && healthy.reason.is_empty());
    }

    #[test]
    fn a_server_its_load_balancer_marks_down_is_not_healthy() {
        let healthy = server(Some(("running", true, "")));
        let balancer = |healthy: bool, state: &str, check: &str| {
            let mut balancer = server(Some(("running", healthy, "")));
            balancer.role = Role::LoadBalancer;
            balancer.name = "load-balancer".to_owned();
            balancer.host = "lb".to_owned();
            if let Some(status) = &mut balancer.status {
                status.backends = vec![v1::BackendServerState {
                    name: "server1".to_owned(),
                    state: state.to_owned(),
                    check: check.to_owned(),
                    status: v1::BackendStatus::from_haproxy(state) as i32,
                    ..Default::default()
                }];
            }
            balancer
        };
        let up = host(HostState::Up);
        let shown = condition_seen_by_balancers(
            &healthy,
            Some(&up),
            &bootstrap("", true),
            &[balancer(true, "DOWN", "L4TOUT in 1001ms")],
            NOW,
        );
        assert_eq!(
            (shown.state.word(), shown.healthy, shown.reason.as_str()),
            (
                "unreachable",
                false,
                "load balancer load-balancer on host lb takes it out of rotation: DOWN (L4TOUT in \
                 1001ms)"
            )
        );
        for seen in [
            balancer(true, "UP", "L7OK 200"),
            balancer(true, "DRAIN", "L7OK 200"),
            balancer(false, "DOWN", "L4CON"),
        ] {
            let shown = condition_seen_by_balancers(
                &healthy,
                Some(&up),
                &bootstrap("", true),
                std::slice::from_ref(&seen),
                NOW,
            );
            assert!(shown.healthy, "{seen:?}");
        }
    }

    #[test]
    fn a_component_not_yet_reported_says_what_its_host_is_doing() {
        let mut applying = host(HostState::Up);
        applying.applied_generation = 2;
        assert_eq!(
            condition(&server(None), Some(&applying), &bootstrap("", true), NOW).reason,
            "host app-1 is applying generation 3 (it applied 2)"
        );
        assert_eq!(
            condition(
                &server(None),
                Some(&host(HostState::New)),
                &bootstrap("", true),
                NOW,
            )
            .reason,
            "host app-1 has enrolled and not reported yet"
        );
    }
}
