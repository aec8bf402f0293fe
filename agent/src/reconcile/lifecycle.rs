//! One component's life, the same for every kind: stopped when its host is drained; otherwise
//! made ready (created, configured), restarted when its config changed, started when it is not
//! running (counted as a restart, with backoff, when it died), changed in place while it runs
//! where the kind can, then probed, and reported `starting` until it answers or its start grace
//! runs out. A [`Driver`] does the kind's part (Zato's `zato` commands, HAProxy); [`converge`] is
//! the state machine, and the tests below drive it with a scripted driver.

use std::time::{Duration, Instant};

use muster_proto::v1;

use super::error::StepError;
use super::{START_GRACE, backoff};

/// A component's state as its host reports it: the wire's enum, so agent and coordinator agree
/// on its values (`ComponentState::word` is what people see).
pub use muster_proto::v1::ComponentState;

/// What the agent keeps of one component between passes.
#[derive(Debug, Default)]
pub struct Local {
    pub state: ComponentState,
    pub healthy: bool,
    pub last_error: String,
    pub restarts: u32,
    pub failures: u32,
    pub retry_at: Option<Instant>,
    /// Whether the process was last seen alive: if it is gone at the next look, it died.
    pub seen_alive: bool,
    pub started_at: Option<Instant>,
    /// When the scheduler last accepted the servers' credentials.
    pub deep_probe_at: Option<Instant>,
    /// The scheduler process (pid) that was seen to start its jobs; `None` until one was.
    pub jobs_started_by: Option<i32>,
    /// What the scheduler's job log said of its current process; `None` until it started its jobs.
    pub job_log: Option<crate::zato::jobs::JobLogReader>,
    /// A load balancer's backend servers as its HAProxy last showed them.
    pub backends: Vec<v1::BackendServerState>,
    /// The component as last desired: what removing a server from Zato's ODB needs.
    pub spec: Option<v1::Component>,
    /// A server's services, as its agent deploys them.
    pub services: ServicesLocal,
    /// The cluster's configuration, on the server that imports it.
    pub config: ConfigLocal,
    /// A server's Python dependencies.
    pub python: super::python::PythonLocal,
    /// A server's user-config files.
    pub user_conf: super::user_conf::UserConfLocal,
    /// A server's: when its agent last looked for the cluster's row in the ODB, and whether the
    /// ODB answered without it ([`super::rebuild`]).
    pub odb_checked_at: Option<Instant>,
    pub odb_empty: bool,
}

/// What the agent knows of the configuration it imports.
#[derive(Debug, Default)]
pub struct ConfigLocal {
    /// The revision imported (empty: none yet, or not this server's to import).
    pub imported: String,
    /// The revision that last did not import, why, and when to try it again (a new revision is
    /// tried at once).
    pub failed: String,
    pub error: String,
    pub retry_at: Option<Instant>,
}

/// What the agent knows of the services on one server.
#[derive(Debug, Default)]
pub struct ServicesLocal {
    /// The revision found deployed on the server (empty: none yet).
    pub deployed: String,
    /// When that was last checked in the ODB.
    pub checked_at: Option<Instant>,
    /// When the agent first saw the desired revision missing, and which revision.
    pub missing_since: Option<(String, Instant)>,
    /// The revision whose missing modules it sent, and when.
    pub sent: Option<(String, Instant)>,
    /// Why the desired revision did not deploy; reported until it deploys.
    pub error: String,
    /// When to try again after a failure.
    pub retry_at: Option<Instant>,
    /// The modules of the last revision found deployed, by name: what a failed deploy restores.
    pub good: std::collections::BTreeMap<String, String>,
    /// The Python dependencies revision the server ran when that was tried: a server restarted
    /// with others tries again at once (a module may import now).
    pub python: String,
}

impl Local {
    /// A step failed: reported, and tried again after the backoff of its kind of failure.
    pub fn fail(&mut self, error: &StepError) {
        tracing::warn!(error = %error, "component step failed; will retry");
        self.last_error = error.to_string();
        self.state = ComponentState::Failed;
        self.healthy = false;
        self.failures += 1;
        self.retry_at = Some(Instant::now() + error.retry_after(self.failures));
    }

    pub fn waiting(&self) -> bool {
        self.retry_at.is_some_and(|at| at > Instant::now())
    }

    /// The process was alive at the last look and is gone now: counts a restart and schedules
    /// it, at once the first time and with backoff when it keeps dying.
    fn died(&mut self, what: &str, pid: Option<i32>) {
        self.seen_alive = false;
        self.restarts += 1;
        self.failures += 1;
        self.retry_at = Some(
            Instant::now()
                + if self.failures <= 1 {
                    Duration::ZERO
                } else {
                    backoff(self.failures - 1)
                },
        );
        self.last_error = match pid {
            Some(pid) => format!("the process (pid {pid}) died, restarting"),
            None => "the process died, restarting".to_owned(),
        };
        tracing::warn!(component = %what, restarts = self.restarts, "component died; restarting");
    }

    fn stopped(&mut self) {
        self.state = ComponentState::Stopped;
        self.healthy = false;
        self.seen_alive = false;
        self.last_error.clear();
        self.retry_at = None;
        self.backends.clear();
    }
}

/// Whether a component is ready to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepared {
    /// It exists with its desired config; `restart` when that config just changed under a
    /// running process.
    Ready { restart: bool },
    /// Not yet (a create runs, or must wait): the driver set the state that says why.
    NotYet,
}

/// What a probe found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Its process runs.
    pub alive: bool,
    /// It answers as its role must, or why not.
    pub answers: Result<(), String>,
}

/// The part of a component's life that depends on its kind.
pub trait Driver {
    /// Names it in logs (its directory).
    fn describe(&self) -> String;
    /// Its host is drained: keep it stopped.
    fn desired_stopped(&self) -> bool;
    /// Creates and configures it as needed.
    async fn prepare(&self, local: &mut Local) -> Result<Prepared, StepError>;
    /// Whether its process runs now.
    fn running(&self) -> bool;
    /// Its pid from its pidfile, for the report of its death.
    fn pid(&self) -> Option<i32>;
    /// The cause its own log gives for its death, if any.
    fn death_cause(&self) -> Option<String>;
    /// Stops it if it runs.
    async fn stop(&self) -> Result<(), StepError>;
    /// Starts it.
    async fn start(&self, local: &mut Local) -> Result<(), StepError>;
    /// Brings it to its desired config while it runs, without a restart: `None` when the kind
    /// does not (Zato's components restart instead), else the note of what changed, or why not.
    async fn update(&self) -> Option<Result<String, StepError>>;
    /// Whether it runs and answers.
    async fn probe(&self, local: &mut Local) -> Health;
    /// The error to report while it does not answer past its start grace; `None` keeps the
    /// last one.
    fn unhealthy_error(&self, health: &Health, last_error: &str) -> Option<String>;
    /// Whether a healthy report clears the last error and the failure count (a load balancer's
    /// last error is the note of its last change, and stays).
    fn clears_error_when_healthy(&self) -> bool;
    /// The kind's work after each step, whatever the step did (a server's environment, once it
    /// answers); nothing for a kind without any.
    async fn tend(&self, _local: &mut Local) {}
}

/// Moves one component a step toward what it must be, then lets its kind tend it; `local` is
/// what the agent knows of it.
pub async fn converge(driver: &impl Driver, local: &mut Local) {
    step(driver, local).await;
    driver.tend(local).await;
}

async fn step(driver: &impl Driver, local: &mut Local) {
    if driver.desired_stopped() {
        let was_running = driver.running();
        if let Err(error) = driver.stop().await {
            return local.fail(&error);
        }
        if was_running {
            tracing::info!(component = %driver.describe(), "component stopped: its host is drained");
        }
        return local.stopped();
    }
    let restart = match driver.prepare(local).await {
        Ok(Prepared::Ready { restart }) => restart,
        Ok(Prepared::NotYet) => return,
        Err(error) => return local.fail(&error),
    };
    let mut running = driver.running();
    let stopped_to_restart = running && restart;
    if stopped_to_restart {
        if let Err(error) = driver.stop().await {
            return local.fail(&error);
        }
        running = false;
        local.seen_alive = false;
    }
    if !running {
        if local.seen_alive {
            local.died(&driver.describe(), driver.pid());
            if let Some(cause) = driver.death_cause() {
                local.last_error = format!("{}: {cause}", local.last_error);
            }
        } else if local.state == ComponentState::Starting && !stopped_to_restart {
            // Started, and gone before it was ever seen alive: its start failed, though the
            // command that started it said nothing (`zato start` exits 0 and leaves the process
            // to fail on its own). Started again at once, it would fail again every pass.
            let why = driver.death_cause().map_or_else(
                || format!("its logs in {} say nothing of why", driver.describe()),
                |cause| format!("its log says: {cause}"),
            );
            return local.fail(&StepError::EndedAtStart(format!(
                "the process ended right after it was started; {why}"
            )));
        }
        if local.waiting() {
            local.state = ComponentState::Restarting;
            local.healthy = false;
            return;
        }
        if let Err(error) = driver.start(local).await {
            return local.fail(&error);
        }
        local.started_at = Some(Instant::now());
        local.state = ComponentState::Starting;
        local.healthy = false;
        local.deep_probe_at = None;
    } else if !local.waiting() {
        match driver.update().await {
            None => {}
            Some(Ok(note)) => {
                local.last_error = note;
                local.failures = 0;
                local.retry_at = None;
            }
            Some(Err(error)) => {
                // It serves on as it was; the change is tried again with backoff.
                tracing::warn!(component = %driver.describe(), error = %error, "change failed; will retry");
                local.last_error = error.to_string();
                local.failures += 1;
                local.retry_at = Some(Instant::now() + error.retry_after(local.failures));
            }
        }
    }
    let health = driver.probe(local).await;
    local.seen_alive = health.alive;
    local.healthy = health.alive && health.answers.is_ok();
    if local.healthy {
        local.state = ComponentState::Running;
        // The start grace ends at the first answer: one that fails later is unhealthy at once.
        local.started_at = None;
        if driver.clears_error_when_healthy() {
            local.last_error.clear();
            local.failures = 0;
            local.retry_at = None;
        }
    } else if local
        .started_at
        .is_some_and(|at| at.elapsed() <= START_GRACE)
    {
        local.state = ComponentState::Starting;
    } else {
        local.state = ComponentState::Unhealthy;
        if let Some(error) = driver.unhealthy_error(&health, &local.last_error) {
            local.last_error = error;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::{Cell, RefCell};

    use super::*;

    /// A component whose behaviour a test scripts, and which records what was done to it.
    #[derive(Default)]
    struct Scripted {
        stopped: bool,
        prepared: RefCell<Vec<Result<Prepared, StepError>>>,
        running: Cell<bool>,
        starts: RefCell<Vec<Result<(), StepError>>>,
        start_makes_it_run: bool,
        updates: RefCell<Vec<Option<Result<String, StepError>>>>,
        answers: Cell<bool>,
        clears: bool,
        done: RefCell<Vec<&'static str>>,
    }

    impl Driver for Scripted {
        fn describe(&self) -> String {
            "server server1".to_owned()
        }
        fn desired_stopped(&self) -> bool {
            self.stopped
        }
        async fn prepare(&self, _local: &mut Local) -> Result<Prepared, StepError> {
            self.prepared
                .borrow_mut()
                .pop()
                .unwrap_or(Ok(Prepared::Ready { restart: false }))
        }
        fn running(&self) -> bool {
            self.running.get()
        }
        fn pid(&self) -> Option<i32> {
            Some(42)
        }
        fn death_cause(&self) -> Option<String> {
            Some("OperationalError".to_owned())
        }
        async fn stop(&self) -> Result<(), StepError> {
            self.done.borrow_mut().push("stop");
            self.running.set(false);
            Ok(())
        }
        async fn start(&self, _local: &mut Local) -> Result<(), StepError> {
            self.done.borrow_mut().push("start");
            let result = self.starts.borrow_mut().pop().unwrap_or(Ok(()));
            if result.is_ok() && self.start_makes_it_run {
                self.running.set(true);
            }
            result
        }
        async fn update(&self) -> Option<Result<String, StepError>> {
            self.updates.borrow_mut().pop().flatten()
        }
        async fn probe(&self, _local: &mut Local) -> Health {
            Health {
                alive: self.running.get(),
                answers: if self.answers.get() {
                    Ok(())
                } else {
                    Err("no answer".to_owned())
                },
            }
        }
        fn unhealthy_error(&self, health: &Health, _last_error: &str) -> Option<String> {
            health.answers.clone().err()
        }
        fn clears_error_when_healthy(&self) -> bool {
            self.clears
        }
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(future)
    }

    #[test]
    fn a_new_component_is_started_then_running_once_it_answers() {
        let driver = Scripted {
            start_makes_it_run: true,
            clears: true,
            ..Default::default()
        };
        let mut local = Local::default();
        block_on(converge(&driver, &mut local));
        assert_eq!(local.state, ComponentState::Starting);
        assert_eq!(*driver.done.borrow(), ["start"]);
        driver.answers.set(true);
        block_on(converge(&driver, &mut local));
        assert_eq!(local.state, ComponentState::Running);
        assert!(local.healthy && local.last_error.is_empty());
        assert_eq!(*driver.done.borrow(), ["start"], "started once");
    }

    #[test]
    fn a_death_is_counted_restarted_at_once_then_with_backoff() {
        let driver = Scripted {
            start_makes_it_run: true,
            clears: true,
            ..Default::default()
        };
        driver.running.set(true);
        driver.answers.set(true);
        let mut local = Local::default();
        block_on(converge(&driver, &mut local));
        assert_eq!(local.state, ComponentState::Running);

        driver.running.set(false);
        driver.answers.set(false);
        block_on(converge(&driver, &mut local));
        assert_eq!(local.restarts, 1);
        assert_eq!(local.state, ComponentState::Starting);
        assert_eq!(
            *driver.done.borrow(),
            ["start"],
            "the first restart is at once"
        );
        assert!(
            local
                .last_error
                .starts_with("the process (pid 42) died, restarting: OperationalError")
        );

        driver.running.set(false);
        block_on(converge(&driver, &mut local));
        assert_eq!(local.restarts, 2);
        assert_eq!(local.state, ComponentState::Restarting, "the second waits");
        assert_eq!(driver.done.borrow().len(), 1);
    }

    #[test]
    fn a_failed_start_backs_off_as_a_zato_step() {
        let driver = Scripted {
            starts: RefCell::new(vec![Err(StepError::Zato(crate::zato::ZatoError::Failed {
                command: "zato start".to_owned(),
                status: "exit status: 1".to_owned(),
                code: Some(1),
                output: "no such directory".to_owned(),
            }))]),
            ..Default::default()
        };
        let mut local = Local::default();
        block_on(converge(&driver, &mut local));
        assert_eq!(local.state, ComponentState::Failed);
        assert_eq!(
            local.last_error,
            "`zato start` failed (exit status: 1): no such directory"
        );
        let wait = local.retry_at.unwrap() - Instant::now();
        assert!(
            wait >= super::super::STEP_BACKOFF_FLOOR / 2 - Duration::from_millis(100),
            "{wait:?}"
        );
        block_on(converge(&driver, &mut local));
        assert_eq!(
            *driver.done.borrow(),
            ["start"],
            "not again before the backoff"
        );
    }

    #[test]
    fn a_process_that_ends_right_after_its_start_is_a_failed_start_with_its_cause_and_a_backoff() {
        // `zato start` exits 0 and the process fails on its own: never seen alive.
        let driver = Scripted::default();
        let mut local = Local::default();
        block_on(converge(&driver, &mut local));
        assert_eq!(local.state, ComponentState::Starting);
        block_on(converge(&driver, &mut local));
        assert_eq!(local.state, ComponentState::Failed);
        assert_eq!(
            local.last_error,
            "the process ended right after it was started; its log says: OperationalError"
        );
        assert_eq!(local.restarts, 0, "it never ran: not a restart");
        let wait = local.retry_at.unwrap() - Instant::now();
        assert!(
            wait >= super::super::STEP_BACKOFF_FLOOR / 2 - Duration::from_millis(100),
            "{wait:?}"
        );
        block_on(converge(&driver, &mut local));
        assert_eq!(*driver.done.borrow(), ["start"], "not started again yet");
        local.retry_at = None;
        block_on(converge(&driver, &mut local));
        assert_eq!(
            *driver.done.borrow(),
            ["start", "start"],
            "after its backoff"
        );
        block_on(converge(&driver, &mut local));
        assert_eq!(local.failures, 2, "and a longer one after the next");
    }

    #[test]
    fn a_component_still_starting_whose_config_changed_restarts_without_a_failure() {
        let driver = Scripted {
            prepared: RefCell::new(vec![Ok(Prepared::Ready { restart: true })]),
            start_makes_it_run: true,
            ..Default::default()
        };
        driver.running.set(true);
        let mut local = Local {
            state: ComponentState::Starting,
            started_at: Some(Instant::now()),
            ..Default::default()
        };
        block_on(converge(&driver, &mut local));
        assert_eq!(*driver.done.borrow(), ["stop", "start"]);
        assert_eq!(local.state, ComponentState::Starting);
        assert!(local.last_error.is_empty(), "{}", local.last_error);
        assert_eq!(local.failures, 0);
    }

    #[test]
    fn a_changed_config_restarts_a_running_component() {
        let driver = Scripted {
            prepared: RefCell::new(vec![Ok(Prepared::Ready { restart: true })]),
            start_makes_it_run: true,
            ..Default::default()
        };
        driver.running.set(true);
        let mut local = Local {
            seen_alive: true,
            ..Default::default()
        };
        block_on(converge(&driver, &mut local));
        assert_eq!(*driver.done.borrow(), ["stop", "start"]);
        assert_eq!(local.restarts, 0, "a planned restart is not a death");
    }

    #[test]
    fn a_drained_host_keeps_it_stopped() {
        let driver = Scripted {
            stopped: true,
            ..Default::default()
        };
        driver.running.set(true);
        let mut local = Local {
            last_error: "old".to_owned(),
            ..Default::default()
        };
        block_on(converge(&driver, &mut local));
        assert_eq!(*driver.done.borrow(), ["stop"]);
        assert_eq!(local.state, ComponentState::Stopped);
        assert!(local.last_error.is_empty() && !local.healthy);
    }

    #[test]
    fn not_ready_yet_leaves_the_drivers_word() {
        let driver = Scripted {
            prepared: RefCell::new(vec![Ok(Prepared::NotYet)]),
            ..Default::default()
        };
        let mut local = Local {
            state: ComponentState::Waiting,
            ..Default::default()
        };
        block_on(converge(&driver, &mut local));
        assert_eq!(local.state, ComponentState::Waiting);
        assert!(driver.done.borrow().is_empty());
    }

    #[test]
    fn past_its_grace_a_silent_component_is_unhealthy_and_says_why() {
        let driver = Scripted::default();
        driver.running.set(true);
        let mut local = Local {
            started_at: Some(Instant::now() - START_GRACE - Duration::from_secs(1)),
            ..Default::default()
        };
        block_on(converge(&driver, &mut local));
        assert_eq!(local.state, ComponentState::Unhealthy);
        assert_eq!(local.last_error, "no answer");
        local.started_at = Some(Instant::now());
        block_on(converge(&driver, &mut local));
        assert_eq!(local.state, ComponentState::Starting, "within its grace");
        driver.answers.set(true);
        block_on(converge(&driver, &mut local));
        assert_eq!(local.state, ComponentState::Running);
        driver.answers.set(false);
        block_on(converge(&driver, &mut local));
        assert_eq!(
            local.state,
            ComponentState::Unhealthy,
            "the grace ended at its first answer"
        );
    }

    #[test]
    fn a_running_component_is_changed_in_place_and_a_failed_change_backs_off() {
        let driver = Scripted {
            updates: RefCell::new(vec![
                Some(Ok("3 servers".to_owned())),
                Some(Err(StepError::Other("haproxy -c refused it".to_owned()))),
            ]),
            ..Default::default()
        };
        driver.running.set(true);
        driver.answers.set(true);
        let mut local = Local::default();
        block_on(converge(&driver, &mut local));
        assert_eq!(local.last_error, "haproxy -c refused it");
        assert_eq!(local.state, ComponentState::Running, "it serves on");
        assert!(local.waiting());
        block_on(converge(&driver, &mut local));
        assert_eq!(
            local.last_error, "haproxy -c refused it",
            "not tried during the backoff"
        );
        local.retry_at = None;
        block_on(converge(&driver, &mut local));
        assert_eq!(local.last_error, "3 servers");
        assert_eq!(local.failures, 0);
    }
}
