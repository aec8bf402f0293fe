//! The simulated agents. Each one enrolls through the agent's own code (`identity::enroll`: its
//! own key, CSR and certificate), talks over its own mTLS channel (`Identity::channel`), holds a
//! `WatchDesiredState` stream and sends `ReportStatus` on an interval, as `muster-agent` does. It
//! runs no component: it reports each component of its desired state running and healthy, each
//! backend server UP, each bootstrap task done, and the generation it last received as applied.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use muster_agent::identity::{self, Enrollment, Identity};
use muster_agent::watch::{RECONNECT_CEILING, RECONNECT_FLOOR, WatchEvent, WatchHandler};
use muster_proto::v1::agent_service_client::AgentServiceClient;
use muster_proto::v1::{
    BackendServerState, BootstrapStatus, ComponentState, ComponentStatus, DesiredState,
    ReportStatusRequest,
};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// What one simulated agent is waiting to see in its desired state.
pub enum Expected {
    /// A component of this name on the host.
    Component(String),
    /// A server of this name in a load balancer's backend.
    Backend(String),
}

struct Expectation {
    expected: Expected,
    since: Instant,
    seen: oneshot::Sender<Duration>,
}

pub struct SimAgent {
    pub name: String,
    /// Which coordinator it talks to (an index into the run's coordinators).
    pub coordinator: usize,
    channel: tonic::transport::Channel,
    latest: Mutex<Option<DesiredState>>,
    expectations: Mutex<Vec<Expectation>>,
    /// The fleet epoch of its last desired state received, and of its last heartbeat answered.
    watched_in: AtomicU64,
    reported_in: AtomicU64,
}

/// What the whole fleet shares: the measurements and the switches.
#[derive(Default)]
pub struct Fleet {
    pub agents: Vec<Arc<SimAgent>>,
    pub heartbeats: Mutex<Vec<Duration>>,
    /// Failed calls, by second since the run started.
    pub errors: Mutex<std::collections::BTreeMap<u64, u64>>,
    pub started: Option<Instant>,
    /// Heartbeats are not sent while set (the idle window).
    pub paused: AtomicBool,
    /// Bumped around a coordinator restart: an agent is back when both its watch and its
    /// heartbeat succeeded in the current epoch.
    pub epoch: AtomicU64,
    pub messages: AtomicU64,
}

impl Fleet {
    pub fn error(&self) {
        let second = self
            .started
            .map_or(0, |started| started.elapsed().as_secs());
        *self
            .errors
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .entry(second)
            .or_default() += 1;
    }

    /// Agents whose watch and heartbeat both succeeded in the current epoch.
    pub fn back(&self) -> usize {
        let epoch = self.epoch.load(Ordering::Relaxed);
        self.agents
            .iter()
            .filter(|agent| {
                agent.watched_in.load(Ordering::Relaxed) >= epoch
                    && agent.reported_in.load(Ordering::Relaxed) >= epoch
            })
            .count()
    }

    pub fn take_heartbeats(&self) -> Vec<Duration> {
        std::mem::take(
            &mut *self
                .heartbeats
                .lock()
                .unwrap_or_else(|poison| poison.into_inner()),
        )
    }
}

/// Enrolls one simulated host, named `name`, advertising `address`, with `token`.
pub async fn enroll(
    state_dir: &Path,
    coordinator_url: &str,
    name: &str,
    address: &str,
    token: &str,
    coordinator: usize,
) -> anyhow::Result<SimAgent> {
    let enrollment = Enrollment {
        coordinator: coordinator_url.to_owned(),
        host_name: name.to_owned(),
        advertise_address: address.to_owned(),
        labels: Default::default(),
        requested_roles: Vec::new(),
    };
    let mut attempt = 0;
    let identity: Identity = loop {
        match identity::enroll(state_dir, &enrollment, token).await {
            Ok(identity) => break identity,
            // Overloaded (UNAVAILABLE with a hint) or not reachable: as the agent does.
            Err(identity::IdentityError::Busy { retry_after, .. }) => {
                attempt += 1;
                tokio::time::sleep(
                    retry_after
                        + muster_proto::daemon::backoff(
                            attempt,
                            RECONNECT_FLOOR,
                            RECONNECT_CEILING,
                        ),
                )
                .await;
            }
            Err(identity::IdentityError::Unreachable { .. }) if attempt < 20 => {
                attempt += 1;
                tokio::time::sleep(muster_proto::daemon::backoff(
                    attempt,
                    RECONNECT_FLOOR,
                    RECONNECT_CEILING,
                ))
                .await;
            }
            Err(error) => return Err(error.into()),
        }
    };
    Ok(SimAgent {
        name: name.to_owned(),
        channel: identity.channel(coordinator_url)?,
        coordinator,
        latest: Mutex::new(None),
        expectations: Mutex::new(Vec::new()),
        watched_in: AtomicU64::new(0),
        reported_in: AtomicU64::new(0),
    })
}

impl SimAgent {
    /// Waits for `expected` in this host's desired state; the receiver gets the time from now.
    pub fn expect(&self, expected: Expected) -> oneshot::Receiver<Duration> {
        let (seen, receiver) = oneshot::channel();
        self.expectations
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .push(Expectation {
                expected,
                since: Instant::now(),
                seen,
            });
        receiver
    }

    /// Whether it has received a desired state.
    pub fn holds_any(&self) -> bool {
        self.latest
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .is_some()
    }

    /// Whether its last desired state holds `expected`.
    pub fn holds(&self, expected: &Expected) -> bool {
        self.latest
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .as_ref()
            .is_some_and(|state| holds(state, expected))
    }

    fn received(&self, state: DesiredState) {
        let mut expectations = self
            .expectations
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let mut index = 0;
        while index < expectations.len() {
            if holds(&state, &expectations[index].expected) {
                let expectation = expectations.swap_remove(index);
                let _ = expectation.seen.send(expectation.since.elapsed());
            } else {
                index += 1;
            }
        }
        drop(expectations);
        *self
            .latest
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = Some(state);
    }

    /// The report of a host that runs its desired state exactly.
    fn report(&self, address: &str, interval: Duration) -> ReportStatusRequest {
        let heartbeat_interval_ms = u32::try_from(interval.as_millis()).unwrap_or(u32::MAX);
        let latest = self
            .latest
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let Some(state) = latest.as_ref() else {
            return ReportStatusRequest {
                advertise_address: address.to_owned(),
                heartbeat_interval_ms,
                ..Default::default()
            };
        };
        ReportStatusRequest {
            applied_generation: state.generation,
            advertise_address: address.to_owned(),
            host_id: String::new(),
            heartbeat_interval_ms,
            zato_installs: vec!["default".to_owned()],
            components: state
                .components
                .iter()
                .map(|component| ComponentStatus {
                    role: component.role,
                    name: component.name.clone(),
                    cluster: component.cluster.clone(),
                    state: if component.stopped {
                        ComponentState::Stopped
                    } else {
                        ComponentState::Running
                    } as i32,
                    healthy: !component.stopped,
                    last_error: String::new(),
                    restarts: 0,
                    services_revision: component.services_revision.clone(),
                    config_revision: component.config_revision.clone(),
                    python_revision: component.python_revision.clone(),
                    user_conf_revision: component.user_conf_revision.clone(),
                    python_installed: component.python_revision.clone(),
                    odb_epoch: component.odb_epoch,
                    odb_empty: false,
                    // A simulated component runs its role's rolling restarts as they come.
                    restart_epoch: component.restart_epoch,
                    rolls: true,
                    backends: component
                        .backends
                        .iter()
                        .map(|backend| BackendServerState {
                            name: backend.name.clone(),
                            address: format!("{}:{}", backend.address, backend.port),
                            state: if backend.drain { "DRAIN" } else { "UP" }.to_owned(),
                            check: "L7OK 200".to_owned(),
                            sessions: 0,
                            status: 0,
                        })
                        .collect(),
                })
                .collect(),
            bootstrap: state
                .bootstrap_tasks
                .iter()
                .map(|task| BootstrapStatus {
                    cluster: task.cluster.clone(),
                    kind: task.kind,
                    done: true,
                    last_error: String::new(),
                })
                .collect(),
        }
    }
}

fn holds(state: &DesiredState, expected: &Expected) -> bool {
    match expected {
        Expected::Component(name) => state
            .components
            .iter()
            .any(|component| component.name == *name),
        Expected::Backend(name) => state.components.iter().any(|component| {
            component
                .backends
                .iter()
                .any(|backend| backend.name == *name)
        }),
    }
}

/// The address simulated host `index` advertises: one of its own, as on a real network.
pub fn address(index: usize) -> String {
    format!(
        "10.{}.{}.{}",
        (index >> 16) & 0xff,
        (index >> 8) & 0xff,
        index & 0xff
    )
}

/// One simulated agent's side of the watch: it keeps what it receives, and counts failures.
struct SimWatch {
    fleet: Arc<Fleet>,
    agent: Arc<SimAgent>,
}

impl WatchHandler for SimWatch {
    fn known_generation(&self) -> u64 {
        0
    }

    fn receive(&mut self, state: DesiredState) -> bool {
        self.fleet.messages.fetch_add(1, Ordering::Relaxed);
        self.agent
            .watched_in
            .store(self.fleet.epoch.load(Ordering::Relaxed), Ordering::Relaxed);
        self.agent.received(state);
        true
    }

    fn event(&mut self, event: WatchEvent<'_>) {
        if matches!(event, WatchEvent::Broke(_) | WatchEvent::Refused { .. }) {
            self.fleet.error();
        }
    }
}

/// Runs one agent's watch stream until `stop`, with the agent's own loop
/// (`muster_agent::watch`: its reconnects, backoff and message limit).
pub async fn watch(fleet: Arc<Fleet>, index: usize, stop: CancellationToken) {
    let agent = fleet.agents[index].clone();
    let channel = agent.channel.clone();
    let mut handler = SimWatch { fleet, agent };
    muster_agent::watch::watch(|| channel.clone(), &mut handler, &stop).await;
}

/// Sends one agent's heartbeats every `interval` until `stop`, the first at a random point of
/// the first interval (agents do not start in step).
pub async fn heartbeat(
    fleet: Arc<Fleet>,
    index: usize,
    interval: Duration,
    stop: CancellationToken,
) {
    let agent = fleet.agents[index].clone();
    let address = address(index);
    let offset = muster_proto::daemon::backoff(1, interval, interval);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + offset, interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut client = AgentServiceClient::new(agent.channel.clone());
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = stop.cancelled() => return,
        }
        if fleet.paused.load(Ordering::Relaxed) {
            continue;
        }
        let report = agent.report(&address, interval);
        let epoch = fleet.epoch.load(Ordering::Relaxed);
        let started = Instant::now();
        match client.report_status(report).await {
            Ok(_) => {
                let took = started.elapsed();
                agent.reported_in.store(epoch, Ordering::Relaxed);
                fleet
                    .heartbeats
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner())
                    .push(took);
            }
            Err(_) => fleet.error(),
        }
    }
}
