//! `muster-agent run`: the tasks described in the crate's documentation, wired together.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use muster_proto::v1::agent_service_client::AgentServiceClient;
use muster_proto::v1::{DesiredState, ReportStatusRequest};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::config::AgentConfig;
use crate::identity::{self, Enrollment, Identity, IdentityError};
use crate::ledger::{Decision, Ledger, LedgerError};
use crate::reconcile::{HostStatus, PROBE_INTERVAL, Reconciler};
use crate::watch::{RECONNECT_CEILING, RECONNECT_FLOOR};
use crate::zato::{self, RunAs, Zato};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Zato(#[from] zato::ZatoError),
    /// A Zato installation `run_as` cannot run (`key`: the agent.toml key that names it).
    #[error("{key}: {reason}")]
    ZatoBin { key: String, reason: String },
}

/// The delay before the `attempt`-th reconnect in a row.
fn reconnect_delay(attempt: u32) -> Duration {
    muster_proto::daemon::backoff(attempt, RECONNECT_FLOOR, RECONNECT_CEILING)
}

/// Waits `delay` unless shutdown comes first; says whether to go on.
async fn pause(delay: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        () = shutdown.cancelled() => false,
    }
}

fn enrollment(config: &AgentConfig) -> Enrollment {
    Enrollment {
        coordinator: config.coordinator.clone(),
        host_name: config.host_name.clone(),
        advertise_address: config.advertise_address.clone(),
        labels: config.labels.clone(),
        requested_roles: config.roles.clone(),
    }
}

/// The stored identity, or a new one from the config's join token. While the coordinator cannot
/// be reached, enrollment is retried; a refused token ends it.
async fn identity_for(
    config: &AgentConfig,
    shutdown: &CancellationToken,
) -> Result<Option<Identity>, DaemonError> {
    if let Some(identity) = Identity::load(&config.state_dir)? {
        return Ok(Some(identity));
    }
    let Some(token) = &config.token else {
        return Err(IdentityError::NotEnrolled(config.state_dir.display().to_string()).into());
    };
    let mut attempt = 0;
    loop {
        match identity::enroll(&config.state_dir, &enrollment(config), token).await {
            Ok(identity) => {
                tracing::info!(host = %config.host_name, host_id = %identity.host_id, "enrolled");
                return Ok(Some(identity));
            }
            Err(IdentityError::Unreachable { url, detail }) => {
                attempt += 1;
                tracing::warn!(coordinator = %url, error = %detail, attempt, "cannot reach the coordinator to enroll; retrying");
                if !pause(reconnect_delay(attempt), shutdown).await {
                    return Ok(None);
                }
            }
            Err(IdentityError::Busy {
                url,
                message,
                retry_after,
            }) => {
                attempt += 1;
                tracing::warn!(coordinator = %url, error = %message, attempt, "the coordinator cannot enroll now; retrying after its hint");
                if !pause(retry_after + reconnect_delay(attempt), shutdown).await {
                    return Ok(None);
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Every `zato` command and component start compiles Zato's modules again when their bytecode is
/// missing (`zato::bytecode`). Said once, at start.
fn warn_without_bytecode(zato_bin: &std::path::Path) {
    let Some(found) = zato::bytecode::Bytecode::of(zato_bin) else {
        return;
    };
    if found.missing() {
        tracing::warn!(
            code = %found.code.display(),
            uncompiled = found.uncompiled,
            modules = found.modules,
            "Zato's code has no compiled bytecode: every zato command and component start compiles \
             its modules again (about a second more each on 2 cores); compile them once, as the \
             user that owns the code: {}",
            found.remedy()
        );
    }
}

/// Whether the `/proc` in a mount table (`/proc/PID/mounts`) hides other users' processes.
fn hides_processes(mounts: &str) -> bool {
    mounts
        .lines()
        .filter(|line| line.split_whitespace().nth(1) == Some("/proc"))
        .any(|line| {
            line.split_whitespace().nth(3).is_some_and(|options| {
                options.split(',').any(|option| {
                    matches!(
                        option,
                        "hidepid=1" | "hidepid=2" | "hidepid=noaccess" | "hidepid=invisible"
                    )
                })
            })
        })
}

/// Zato takes most secrets only as command-line options: without `hidepid` on `/proc`, other
/// users can read them while a `zato` command runs. Two views count, and each is said once, at
/// start: the system's (PID 1's, where local users log in: `hidepid=2` there is the operator's to
/// set) and the agent's own, which its components inherit (under systemd a service gets a `/proc`
/// of its own without hidepid, whatever the system's has: the packaged unit sets
/// `ProtectProc=invisible` for it).
fn warn_without_hidepid() {
    let own = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    // PID 1's mount namespace, when the agent may see it (root) and it is not the agent's own.
    let namespace = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    let system = match (namespace("self"), namespace("1")) {
        (Some(own), Some(first)) if own != first => std::fs::read_to_string("/proc/1/mounts").ok(),
        _ => None,
    };
    if !hides_processes(&own) {
        tracing::warn!(
            "this agent's /proc is mounted without hidepid: the Zato components it starts, and \
             other local users, can read the secrets Zato takes on its command line while a zato \
             command runs; mount /proc with hidepid=2 (see packaging/README.md), or, under \
             systemd, keep ProtectProc=invisible in the agent's unit"
        );
    }
    if let Some(system) = system
        && !hides_processes(&system)
    {
        tracing::warn!(
            "the system's /proc (PID 1's) is mounted without hidepid: while a zato command runs, \
             other local users can read the secrets Zato takes on its command line; mount /proc \
             with hidepid=2 (see packaging/README.md)"
        );
    }
}

/// Runs the agent until `shutdown`; leaves the components running.
pub async fn run(config: AgentConfig, shutdown: CancellationToken) -> Result<(), DaemonError> {
    let run_as = config.run_as.as_deref().map(RunAs::lookup).transpose()?;
    warn_without_hidepid();
    for (install, bin) in config.installs() {
        warn_without_bytecode(&bin);
        if let Some(user) = &run_as
            && bin.exists()
        {
            user.check_can_run_zato(&bin)
                .map_err(|reason| DaemonError::ZatoBin {
                    key: crate::config::install_key(&install),
                    reason,
                })?;
        }
    }
    let Some(identity) = identity_for(&config, &shutdown).await? else {
        return Ok(());
    };
    let ledger = Ledger::open(&config.state_dir, &identity.host_id)?;
    if let Some(reason) = ledger.unreadable() {
        let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Status(reason)]);
    }
    if let Some(held) = ledger.current() {
        tracing::info!(
            generation = held.generation,
            components = held.components.len(),
            "starting from the ledger"
        );
    }
    let (desired_sender, desired_receiver) = watch::channel(ledger.current().cloned());
    let (status_sender, status_receiver) = watch::channel(HostStatus::default());
    let (channel_sender, channel_receiver) = watch::channel(identity.channel(&config.coordinator)?);

    let tasks = tokio_util::task::TaskTracker::new();
    tasks.spawn(watch_desired_state(
        channel_receiver.clone(),
        ledger,
        desired_sender,
        shutdown.clone(),
    ));
    tasks.spawn(crate::wheels::keep_fetched(
        channel_receiver.clone(),
        desired_receiver.clone(),
        config.state_dir.join(crate::reconcile::python::WHEEL_CACHE),
        shutdown.clone(),
    ));
    let last_report = Arc::new(AtomicU64::new(0));
    if let Some(listen) = config.metrics_listen {
        let status = status_receiver.clone();
        let last_report = last_report.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            if let Err(error) = crate::metrics::serve(listen, status, last_report, shutdown).await {
                tracing::error!(listen = %listen, error = %error, "cannot serve /metrics");
            }
        });
    }
    tasks.spawn(heartbeat(
        channel_receiver.clone(),
        status_receiver,
        config.clone(),
        last_report,
        shutdown.clone(),
    ));
    tasks.spawn(renew_certificate(
        identity,
        config.clone(),
        channel_receiver,
        channel_sender,
        shutdown.clone(),
    ));
    let progress = Arc::new(AtomicU64::new(now_seconds()));
    tasks.spawn(watchdog(progress.clone(), shutdown.clone()));
    tasks.close();
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    tracing::info!(host = %config.host_name, coordinator = %config.coordinator, "agent running");

    let zato = Zato {
        bin: config.zato_bin.clone(),
        run_as,
    };
    let mut reconciler = Reconciler::new(
        zato,
        config.components_dir.clone(),
        &config.state_dir,
        config.bind_address,
    )
    .with_ipc_port_start(config.zato_ipc_port_start)
    .with_haproxy_bins(config.haproxy_bins.clone())
    .with_sqlite_odb_dirs(config.sqlite_odb_dirs.clone())
    .with_python_bin(config.zato_python.clone())
    .with_zato_installs(config.zato_installs.clone());
    if let Ok(advertise) = config.advertise_address.parse() {
        reconciler = reconciler.with_advertise_address(advertise);
    }
    reconcile_loop(
        &mut reconciler,
        desired_receiver,
        &status_sender,
        &progress,
        &shutdown,
    )
    .await;

    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    tasks.wait().await;
    tracing::info!("agent stopped; components left running");
    Ok(())
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or_default()
}

async fn reconcile_loop(
    reconciler: &mut Reconciler,
    mut desired: watch::Receiver<Option<DesiredState>>,
    status: &watch::Sender<HostStatus>,
    progress: &AtomicU64,
    shutdown: &CancellationToken,
) {
    let mut wake_after = Duration::ZERO;
    let mut last_status_text = String::new();
    loop {
        tokio::select! {
            // Cancel-safe: `changed` only waits; the state is read after the select.
            changed = desired.changed() => if changed.is_err() { return },
            // Cancel-safe: a timer.
            () = tokio::time::sleep(wake_after) => {}
            () = shutdown.cancelled() => return,
        }
        let Some(state) = desired.borrow_and_update().clone() else {
            wake_after = PROBE_INTERVAL;
            progress.store(now_seconds(), Ordering::Relaxed);
            continue;
        };
        let outcome = tokio::select! {
            outcome = reconciler.pass(&state) => outcome,
            // Leaving a pass midway is safe: a `zato create` in flight goes on and is adopted or
            // cleaned up by the next start (see `reconcile`).
            () = shutdown.cancelled() => return,
        };
        let (host_status, next) = outcome;
        wake_after = next;
        progress.store(now_seconds(), Ordering::Relaxed);
        let healthy = host_status
            .components
            .iter()
            .filter(|component| component.healthy)
            .count();
        let text = format!(
            "generation {}: {} component(s), {healthy} healthy",
            host_status.applied_generation,
            host_status.components.len()
        );
        if text != last_status_text {
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Status(&text)]);
            tracing::info!(status = %text, "host status");
            last_status_text = text;
        }
        status.send_if_modified(|current| {
            if *current == host_status {
                return false;
            }
            *current = host_status;
            true
        });
    }
}

/// Pings systemd's watchdog at half its interval while the reconcile loop makes progress (a pass
/// may run a `zato` command for up to its timeout, so progress is judged against that bound).
async fn watchdog(progress: Arc<AtomicU64>, shutdown: CancellationToken) {
    let mut microseconds = 0;
    if !sd_notify::watchdog_enabled(false, &mut microseconds) || microseconds == 0 {
        return;
    }
    let interval = Duration::from_micros(microseconds) / 2;
    let stalled_after = zato::COMMAND_TIMEOUT + Duration::from_secs(60);
    loop {
        if !pause(interval, &shutdown).await {
            return;
        }
        let last = progress.load(Ordering::Relaxed);
        if now_seconds().saturating_sub(last) < stalled_after.as_secs() {
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
        } else {
            tracing::error!("the reconcile loop has made no progress; not pinging the watchdog");
        }
    }
}

/// The agent's side of the watch: its ledger, and the desired state the reconciler follows.
struct LedgerWatch {
    ledger: Ledger,
    desired: watch::Sender<Option<DesiredState>>,
}

impl crate::watch::WatchHandler for LedgerWatch {
    fn known_generation(&self) -> u64 {
        self.ledger.generation()
    }

    fn receive(&mut self, state: DesiredState) -> bool {
        accept(&mut self.ledger, state, &self.desired)
    }

    fn event(&mut self, event: crate::watch::WatchEvent<'_>) {
        use crate::watch::WatchEvent;
        match event {
            WatchEvent::Connected { again: true } => {
                tracing::info!("connected to the coordinator again");
            }
            WatchEvent::Connected { again: false } => {}
            WatchEvent::Closed => tracing::warn!("the coordinator closed the watch; reconnecting"),
            WatchEvent::Broke(status) => {
                tracing::warn!(code = ?status.code(), error = %identity::describe_failure(status), "the watch broke; reconnecting");
            }
            WatchEvent::Refused { status, attempt } => {
                if attempt.is_multiple_of(10) {
                    tracing::warn!(code = ?status.code(), error = %identity::describe_failure(status), attempt, "cannot watch the desired state; running from the ledger and retrying");
                }
            }
        }
    }
}

async fn watch_desired_state(
    channel: watch::Receiver<Channel>,
    ledger: Ledger,
    desired: watch::Sender<Option<DesiredState>>,
    shutdown: CancellationToken,
) {
    let mut handler = LedgerWatch { ledger, desired };
    crate::watch::watch(|| channel.borrow().clone(), &mut handler, &shutdown).await;
}

/// Offers `state` to the ledger; says whether the watch can go on (false: it was not persisted,
/// and must be received again).
fn accept(
    ledger: &mut Ledger,
    state: DesiredState,
    desired: &watch::Sender<Option<DesiredState>>,
) -> bool {
    let generation = state.generation;
    match ledger.offer(state) {
        Ok(Decision::Accepted) => {
            tracing::info!(generation, "accepted a new desired state");
            desired.send_replace(ledger.current().cloned());
            true
        }
        Ok(Decision::Unchanged) => true,
        Ok(refusal) => {
            tracing::error!(?refusal, "refused a desired state from the coordinator");
            true
        }
        Err(error) => {
            tracing::error!(generation, error = %muster_proto::daemon::error_chain(&error), "cannot persist a desired state; not acting on it until it is written (retrying)");
            false
        }
    }
}

async fn heartbeat(
    channel: watch::Receiver<Channel>,
    mut status: watch::Receiver<HostStatus>,
    config: AgentConfig,
    last_report: Arc<AtomicU64>,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(config.heartbeat_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing_since: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            changed = status.changed() => if changed.is_err() { return },
            () = shutdown.cancelled() => return,
        }
        let current = status.borrow_and_update().clone();
        let request = ReportStatusRequest {
            applied_generation: current.applied_generation,
            advertise_address: config.advertise_address.clone(),
            components: current.components,
            host_id: String::new(),
            bootstrap: current.bootstrap,
            heartbeat_interval_ms: u32::try_from(config.heartbeat_interval.as_millis())
                .unwrap_or(u32::MAX),
            zato_installs: config
                .installs()
                .into_iter()
                .map(|(name, _)| name)
                .collect(),
        };
        let mut client = AgentServiceClient::new(channel.borrow().clone());
        let sent = tokio::select! {
            sent = client.report_status(request) => sent,
            () = shutdown.cancelled() => return,
        };
        match sent {
            Ok(_) => {
                last_report.store(now_seconds(), Ordering::Relaxed);
                if let Some(since) = failing_since.take() {
                    tracing::info!(after = ?since.elapsed(), "reporting to the coordinator again");
                }
            }
            Err(status) => {
                if failing_since.is_none() {
                    tracing::warn!(code = ?status.code(), error = %identity::describe_failure(&status), "cannot report to the coordinator; will keep trying");
                    failing_since = Some(Instant::now());
                }
            }
        }
    }
}

async fn renew_certificate(
    mut identity: Identity,
    config: AgentConfig,
    channel: watch::Receiver<Channel>,
    channel_sender: watch::Sender<Channel>,
    shutdown: CancellationToken,
) {
    let mut attempt = 0u32;
    // When this host received its current certificate (unknown for the one found at start).
    let mut received: Option<Instant> = None;
    loop {
        let (not_before, not_after) = match identity.validity() {
            Ok(validity) => validity,
            Err(error) => {
                tracing::error!(error = %error, "cannot read the host certificate; not renewing it");
                return;
            }
        };
        let wait = identity::renewal_delay(
            SystemTime::now(),
            not_before,
            not_after,
            received.map(|at| at.elapsed()),
        );
        let delay = if attempt == 0 {
            wait
        } else {
            wait.max(reconnect_delay(attempt))
        };
        if !pause(delay, &shutdown).await {
            return;
        }
        let current_channel = channel.borrow().clone();
        match identity.renew(current_channel).await {
            Ok(renewed) => {
                if let Err(error) = renewed.store(&config.state_dir) {
                    tracing::error!(error = %error, "cannot store the renewed certificate");
                    attempt += 1;
                    continue;
                }
                match renewed.channel(&config.coordinator) {
                    Ok(new_channel) => {
                        channel_sender.send_replace(new_channel);
                    }
                    Err(error) => {
                        tracing::error!(error = %error, "cannot use the renewed certificate")
                    }
                }
                if let Ok((not_before, _)) = renewed.validity()
                    && let Some(skew) = identity::clock_skew(SystemTime::now(), not_before)
                {
                    tracing::warn!(skew = %skew, "clock skew");
                }
                identity = renewed;
                received = Some(Instant::now());
                attempt = 0;
                tracing::info!("host certificate renewed");
            }
            Err(status) => {
                attempt += 1;
                tracing::warn!(code = ?status.code(), error = %identity::describe_failure(&status), attempt, "cannot renew the host certificate; will retry");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::hides_processes;

    #[test]
    fn proc_hides_processes_only_with_hidepid() {
        let plain =
            "sysfs /sys sysfs rw,nosuid 0 0\nproc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n";
        assert!(!hides_processes(plain));
        // What systemd's ProtectProc=invisible mounts, and hidepid=2 as packaging/README.md says.
        for option in ["hidepid=invisible", "hidepid=2"] {
            let hidden = format!("proc /proc proc rw,nosuid,nodev,noexec,relatime,{option} 0 0\n");
            assert!(hides_processes(&hidden), "{hidden}");
        }
        // Another mount with hidepid does not count for /proc.
        assert!(!hides_processes(
            "proc /run/other proc rw,hidepid=2 0 0\nproc /proc proc rw 0 0\n"
        ));
    }
}
