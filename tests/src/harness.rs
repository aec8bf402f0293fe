//! Real processes for end-to-end tests: a coordinator (`muster-coordinator init` and `run`), agents
//! (`muster-agent run` with mock-zato), and the `muster` CLI, each found among the workspace's built
//! binaries. Every process is stopped when its handle is dropped, also after a failed assertion.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::netns::Host;
use crate::{free_port, wait_for};

/// A binary built by this workspace (`cargo build --workspace --bins` builds them all).
pub fn workspace_binary(name: &str) -> PathBuf {
    let test_executable = std::env::current_exe().expect("the test's own path");
    let profile_dir = test_executable
        .parent()
        .and_then(Path::parent)
        .expect("tests run from target/PROFILE/deps");
    let binary = profile_dir.join(name);
    assert!(
        binary.exists(),
        "{} is not built; run `cargo build --workspace --bins` before the end-to-end tests",
        binary.display()
    );
    binary
}

/// A command with none of the caller's MUSTER_* variables, so tests do not leak into each other.
pub fn command(program: &Path) -> Command {
    let mut command = Command::new(program);
    for (key, _) in std::env::vars() {
        if key.starts_with("MUSTER_") || key == "NOTIFY_SOCKET" || key.starts_with("WATCHDOG_") {
            command.env_remove(key);
        }
    }
    command
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Sends SIGTERM (or SIGKILL) to a process.
pub fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("a pid"));
    let _ = nix::sys::signal::kill(pid, signal);
}

/// A GET to 127.0.0.1:`port`; the body when the answer is 200.
pub fn http_get(port: u16, path: &str) -> Option<String> {
    let (status, body) =
        crate::traffic::get(std::net::SocketAddr::from(([127, 0, 0, 1], port)), path)?;
    (status == 200).then_some(body)
}

/// A server's `/zato/ping` answer as JSON.
pub fn ping(port: u16) -> Option<serde_json::Value> {
    serde_json::from_str(&http_get(port, "/zato/ping")?).ok()
}

/// A command for `program` on `host`, or on this machine.
fn on(host: Option<&Host>, program: &Path) -> Command {
    match host {
        Some(host) => host.command(program),
        None => command(program),
    }
}

/// A coordinator's data directory and, while it runs, its process.
pub struct Coordinator {
    pub data_dir: PathBuf,
    pub grpc_port: u16,
    pub http_port: u16,
    pub log: PathBuf,
    /// The test host it runs on, or `None` for this machine's loopback.
    pub host: Option<Host>,
    extra_args: Vec<String>,
    /// Its `RUST_LOG`.
    log_level: &'static str,
    process: Option<Child>,
}

impl Coordinator {
    /// Initializes a data directory (on `database_url`, or SQLite) and starts the coordinator.
    pub async fn start(
        directory: &Path,
        database_url: Option<&str>,
        extra_args: &[&str],
    ) -> Coordinator {
        Coordinator::start_with(None, directory, database_url, extra_args).await
    }

    /// The same on a test host: it listens on the host's address, which its certificate names.
    pub async fn start_on(
        host: &Host,
        directory: &Path,
        database_url: Option<&str>,
        extra_args: &[&str],
    ) -> Coordinator {
        Coordinator::start_with(Some(host.clone()), directory, database_url, extra_args).await
    }

    async fn start_with(
        host: Option<Host>,
        directory: &Path,
        database_url: Option<&str>,
        extra_args: &[&str],
    ) -> Coordinator {
        let data_dir = directory.join("coordinator");
        let mut init = on(host.as_ref(), &workspace_binary("muster-coordinator"));
        init.arg("init").arg("--data-dir").arg(&data_dir);
        if let Some(url) = database_url {
            init.arg("--database-url").arg(url);
        }
        if let Some(host) = &host {
            init.arg("--advertise").arg(host.address.to_string());
        }
        let output = init.output().expect("run muster-coordinator init");
        assert!(
            output.status.success(),
            "init failed: {}",
            text(&output.stderr)
        );
        let (grpc_port, http_port) = match host {
            Some(_) => (17300, 17301),
            None => (free_port(), free_port()),
        };
        let mut coordinator = Coordinator {
            log: directory.join("coordinator.log"),
            data_dir,
            grpc_port,
            http_port,
            host,
            extra_args: extra_args.iter().map(|arg| (*arg).to_owned()).collect(),
            log_level: "info",
            process: None,
        };
        coordinator.restart().await;
        coordinator
    }

    /// Starts the coordinator on a data directory `data_dir` that `muster-coordinator init`
    /// made (any path), on ports of its own, logging at debug level beside it
    /// (`DATA_DIR.GRPC_PORT.log`): a test of what its log never holds checks all it writes.
    pub async fn run(data_dir: &Path) -> Coordinator {
        let grpc_port = free_port();
        let mut coordinator = Coordinator {
            data_dir: data_dir.to_owned(),
            grpc_port,
            http_port: free_port(),
            log: data_dir.with_extension(format!("{grpc_port}.log")),
            host: None,
            extra_args: Vec::new(),
            log_level: "debug",
            process: None,
        };
        coordinator.restart().await;
        coordinator
    }

    /// Starts another coordinator on an initialized data directory at `directory/coordinator`
    /// (a copy of another's, to share its database), on ports of its own.
    pub async fn attach(directory: &Path) -> Coordinator {
        let mut coordinator = Coordinator {
            data_dir: directory.join("coordinator"),
            grpc_port: free_port(),
            http_port: free_port(),
            log: directory.join("coordinator.log"),
            host: None,
            extra_args: Vec::new(),
            log_level: "info",
            process: None,
        };
        coordinator.restart().await;
        coordinator
    }

    /// Starts the coordinator again on the same directory and ports.
    pub async fn restart(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("the coordinator log");
        let listen = match &self.host {
            Some(host) => host.address.to_string(),
            None => "127.0.0.1".to_owned(),
        };
        let process = on(self.host.as_ref(), &workspace_binary("muster-coordinator"))
            .args(["run", "--data-dir"])
            .arg(&self.data_dir)
            .args(["--listen", &format!("{listen}:{}", self.grpc_port)])
            .args(["--http-listen", &format!("127.0.0.1:{}", self.http_port)])
            .args(&self.extra_args)
            .env("RUST_LOG", self.log_level)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the coordinator");
        self.process = Some(process);
        if self.host.is_some() {
            let output = self.muster(&["ping", "--wait", "30s"]);
            assert!(
                output.status.success(),
                "the coordinator did not answer: {}; log:\n{}",
                text(&output.stderr),
                self.log_text()
            );
            return;
        }
        let port = self.http_port;
        let ready = wait_for(
            "the coordinator's /healthz",
            Duration::from_secs(30),
            Duration::from_millis(50),
            || {
                let answer = http_get(port, "/healthz");
                async move { answer }
            },
        )
        .await;
        if let Err(error) = ready {
            let exited = self
                .process
                .as_mut()
                .and_then(|process| process.try_wait().ok().flatten());
            panic!(
                "{error}; exited: {exited:?}; log:\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }

    /// Sends SIGTERM and waits for the coordinator to exit; its exit status (`None`: it was not
    /// running).
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let mut process = self.process.take()?;
        signal(process.id(), nix::sys::signal::Signal::SIGTERM);
        process.wait().ok()
    }

    /// Stops the coordinator (SIGTERM) and says whether it exited cleanly.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.terminate().expect("the coordinator was running")
    }

    /// Kills the coordinator without warning.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            signal(process.id(), nix::sys::signal::Signal::SIGKILL);
            let _ = process.wait();
        }
    }

    pub fn url(&self) -> String {
        match &self.host {
            Some(host) => format!("https://{}:{}", host.address, self.grpc_port),
            None => format!("https://127.0.0.1:{}", self.grpc_port),
        }
    }

    /// Runs `muster ARGS` against this coordinator (on its host, when it has one).
    pub fn muster(&self, args: &[&str]) -> Output {
        on(self.host.as_ref(), &workspace_binary("muster"))
            .env("MUSTER_DATA_DIR", &self.data_dir)
            .env("MUSTER_COORDINATOR", self.url())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run muster")
    }

    /// Runs `muster ARGS` with `stdin` on its standard input.
    pub fn muster_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write as _;
        let mut child = on(self.host.as_ref(), &workspace_binary("muster"))
            .env("MUSTER_DATA_DIR", &self.data_dir)
            .env("MUSTER_COORDINATOR", self.url())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run muster");
        child
            .stdin
            .take()
            .expect("muster's stdin")
            .write_all(stdin.as_bytes())
            .expect("write muster's stdin");
        child.wait_with_output().expect("muster's output")
    }

    /// Runs `muster ARGS` with its output to a pipe whose reader has already gone, as
    /// `muster … | head` makes when `head` has read its lines.
    pub fn muster_into_closed_pipe(&self, args: &[&str]) -> Output {
        let (reader, writer) = nix::unistd::pipe().expect("a pipe");
        drop(reader);
        on(self.host.as_ref(), &workspace_binary("muster"))
            .env("MUSTER_DATA_DIR", &self.data_dir)
            .env("MUSTER_COORDINATOR", self.url())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .expect("run muster")
    }

    /// Starts `muster ARGS` that keeps running (`--follow`, `--watch`), its output piped, as
    /// lines on the returned channel; the process is the caller's to kill.
    pub fn follow(&self, args: &[&str]) -> (Child, std::sync::mpsc::Receiver<String>) {
        let mut child = on(self.host.as_ref(), &workspace_binary("muster"))
            .env("MUSTER_DATA_DIR", &self.data_dir)
            .env("MUSTER_COORDINATOR", self.url())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run muster");
        let stdout = child.stdout.take().expect("muster's stdout");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        (child, receiver)
    }

    /// Runs `muster ARGS` and returns its stdout; fails the test if it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.muster(args);
        assert!(
            output.status.success(),
            "muster {args:?} failed: {}",
            text(&output.stderr)
        );
        text(&output.stdout)
    }

    /// Runs `muster --output json ARGS`.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut with_json = vec!["--output", "json"];
        with_json.extend_from_slice(args);
        serde_json::from_str(&self.ok(&with_json)).expect("JSON from muster")
    }

    /// A new join token for `cluster` with `roles`, usable `uses` times.
    pub fn join_token(&self, cluster: &str, roles: &[&str], uses: u32) -> String {
        let uses = uses.to_string();
        let mut args = vec!["token", "create", "--cluster", cluster, "--max-uses", &uses];
        for role in roles {
            args.extend(["--role", role]);
        }
        self.json(&args)["secret_token"]
            .as_str()
            .expect("a token")
            .to_owned()
    }

    /// Runs `muster-agent enroll` for a host `name` (advertising 127.0.0.1) with `token`, its
    /// identity kept in `state_dir`.
    pub fn enroll(&self, state_dir: &Path, name: &str, token: &str) -> Output {
        command(&workspace_binary("muster-agent"))
            .args(["enroll", "--coordinator", &self.url(), "--token", token])
            .args(["--host-name", name, "--advertise-address", "127.0.0.1"])
            .arg("--state-dir")
            .arg(state_dir)
            .output()
            .expect("run muster-agent enroll")
    }

    /// A join token of `cluster` that has expired: made with a lifetime of 1 s, returned once the
    /// coordinator lists it as expired.
    pub async fn expired_join_token(&self, cluster: &str) -> String {
        let created = self.json(&["token", "create", "--cluster", cluster, "--ttl", "1s"]);
        let id = created["token"]["id"].as_str().expect("an id").to_owned();
        wait_for(
            "the 1 s join token to expire",
            Duration::from_secs(30),
            Duration::from_millis(100),
            || {
                let tokens = self.json(&["token", "list", "--cluster", cluster]);
                let expired = tokens.as_array().is_some_and(|tokens| {
                    tokens
                        .iter()
                        .any(|token| token["id"] == id.as_str() && token["state"] == "expired")
                });
                async move { expired.then_some(()) }
            },
        )
        .await
        .expect("the token expires");
        created["secret_token"]
            .as_str()
            .expect("a token")
            .to_owned()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            signal(process.id(), nix::sys::signal::Signal::SIGTERM);
            let _ = process.wait();
        }
    }
}

/// The Python whose pip installs a cluster's Python dependencies beside mock-zato's servers (pip
/// is real here; only Zato is mocked): the real Zato's, where it is installed (`.ci/setup` does),
/// else this machine's `python3`.
pub fn test_python() -> PathBuf {
    let zatos = Path::new("/opt/zato-3.2/code/bin/python");
    if zatos.exists() {
        zatos.to_owned()
    } else {
        PathBuf::from("python3")
    }
}

/// An agent's directories and, while it runs, its process. Dropping it stops the agent and the
/// mock components it started.
pub struct Agent {
    pub host_name: String,
    pub root: PathBuf,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub components_dir: PathBuf,
    pub log: PathBuf,
    /// The test host it runs on, or `None` for this machine.
    pub host: Option<Host>,
    environment: Vec<(String, String)>,
    process: Option<Child>,
}

impl Agent {
    /// Writes the agent's config (with `token` for its first start) under `directory/HOST_NAME`.
    pub fn configure(
        directory: &Path,
        coordinator: &Coordinator,
        host_name: &str,
        token: &str,
    ) -> Agent {
        let root = directory.join(host_name);
        let state_dir = root.join("state");
        let components_dir = root.join("components");
        std::fs::create_dir_all(&components_dir).expect("the components directory");
        let config = root.join("agent.toml");
        let toml = format!(
            "coordinator = \"{}\"\ntoken = \"{token}\"\nhost_name = \"{host_name}\"\nadvertise_address = \"127.0.0.1\"\nstate_dir = \"{}\"\ncomponents_dir = \"{}\"\nzato_bin = \"{}\"\nzato_python = \"{}\"\nheartbeat_interval = \"1s\"\n# Agents of parallel tests share this machine's loopback: each gets its own IPC ports.\nzato_ipc_port_start = {}\n# The test's hosts share its directory, as hosts share a file system: its SQLite ODBs are there.\nsqlite_odb_dirs = [\"{}\"]\n",
            coordinator.url(),
            state_dir.display(),
            components_dir.display(),
            workspace_binary("mock-zato").display(),
            test_python().display(),
            crate::free_port_block(40),
            directory.display(),
        );
        std::fs::write(&config, toml).expect("the agent config");
        Agent {
            host_name: host_name.to_owned(),
            log: root.join("agent.log"),
            root,
            config,
            state_dir,
            components_dir,
            host: None,
            environment: Vec::new(),
            process: None,
        }
    }

    /// An agent on a test host, named after it, advertising and binding the host's address.
    pub fn configure_on(
        host: &Host,
        directory: &Path,
        coordinator: &Coordinator,
        token: &str,
    ) -> Agent {
        let mut agent = Agent::configure(directory, coordinator, &host.name, token)
            .with_address(&host.address.to_string());
        agent.host = Some(host.clone());
        agent
    }

    /// An agent on a test host, named after it, binding the host's address and advertising its
    /// name (the agent's default), which only the host itself can resolve.
    pub fn configure_on_by_name(
        host: &Host,
        directory: &Path,
        coordinator: &Coordinator,
        token: &str,
    ) -> Agent {
        let mut agent = Agent::configure(directory, coordinator, &host.name, token);
        let config = std::fs::read_to_string(&agent.config).expect("the agent config");
        let config = config.replace(
            "advertise_address = \"127.0.0.1\"",
            &format!("bind_address = \"{}\"", host.address),
        );
        std::fs::write(&agent.config, config).expect("the agent config");
        agent.host = Some(host.clone());
        agent
    }

    /// Gives the agent its own address on the loopback network (127.0.0.0/8): it advertises it
    /// and its components bind it, so several hosts on this machine can use the same ports.
    pub fn with_address(self, address: &str) -> Agent {
        let config = std::fs::read_to_string(&self.config).expect("the agent config");
        let config = config.replace(
            "advertise_address = \"127.0.0.1\"",
            &format!("advertise_address = \"{address}\"\nbind_address = \"{address}\""),
        );
        std::fs::write(&self.config, config).expect("the agent config");
        self
    }

    /// Makes the agent run `zato` (the real one) instead of mock-zato.
    pub fn with_zato(self, zato: &Path) -> Agent {
        let config = std::fs::read_to_string(&self.config).expect("the agent config");
        let mock = workspace_binary("mock-zato").display().to_string();
        let config = config.replace(&mock, &zato.display().to_string());
        std::fs::write(&self.config, config).expect("the agent config");
        self
    }

    /// Sets an environment variable for the agent's next starts.
    pub fn env(&mut self, key: &str, value: &str) {
        self.environment.retain(|(existing, _)| existing != key);
        self.environment.push((key.to_owned(), value.to_owned()));
    }

    /// Takes `key` out of the environment the agent starts with (from its next start).
    pub fn env_remove(&mut self, key: &str) {
        self.environment.retain(|(existing, _)| existing != key);
    }

    pub fn start(&mut self) {
        self.spawn(None);
    }

    /// Starts the agent as systemd would with `WatchdogSec=`: `WATCHDOG_USEC` set and
    /// `WATCHDOG_PID` naming the agent's own process (a shell sets it and execs the agent).
    pub fn start_with_watchdog(&mut self, watchdog: Duration) {
        self.spawn(Some(watchdog));
    }

    fn spawn(&mut self, watchdog: Option<Duration>) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("the agent log");
        let binary = workspace_binary("muster-agent");
        let mut agent = match watchdog {
            None => on(self.host.as_ref(), &binary),
            Some(interval) => {
                let mut shell = command(Path::new("/bin/sh"));
                shell
                    .arg("-c")
                    .arg(format!(
                        "WATCHDOG_PID=$$ WATCHDOG_USEC={} exec \"$0\" \"$@\"",
                        interval.as_micros()
                    ))
                    .arg(&binary);
                shell
            }
        };
        agent
            .args(["run", "--config"])
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        for (key, value) in &self.environment {
            agent.env(key, value);
        }
        self.process = Some(agent.spawn().expect("start the agent"));
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Child::id)
    }

    /// Sends SIGTERM and waits for the agent to exit; returns its exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut process = self.process.take()?;
        signal(process.id(), nix::sys::signal::Signal::SIGTERM);
        process.wait().ok()
    }

    /// Kills the agent without warning.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            signal(process.id(), nix::sys::signal::Signal::SIGKILL);
            let _ = process.wait();
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Every line mock-zato logged for this agent's commands.
    pub fn zato_invocations(&self) -> String {
        let mut all = String::new();
        for directory in [self.components_dir.clone()].into_iter().chain(
            std::fs::read_dir(&self.components_dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|entry| entry.path()),
        ) {
            all.push_str(
                &std::fs::read_to_string(directory.join("mock-zato.log")).unwrap_or_default(),
            );
        }
        all
    }

    /// The text of every log of this agent's Zato components (`CLUSTER/COMPONENT/logs/*.log`).
    pub fn zato_logs(&self) -> String {
        let children = |directory: &Path| -> Vec<PathBuf> {
            std::fs::read_dir(directory)
                .into_iter()
                .flatten()
                .flatten()
                .map(|entry| entry.path())
                .collect()
        };
        let mut all = String::new();
        for cluster in children(&self.components_dir) {
            for component in children(&cluster) {
                for log in children(&component.join("logs")) {
                    if log.extension().is_some_and(|extension| extension == "log") {
                        all.push_str(&std::fs::read_to_string(&log).unwrap_or_default());
                    }
                }
            }
        }
        all
    }

    /// Stops the mock components (their pidfiles) and HAProxy masters (with their workers) this
    /// agent started, for cleanup.
    pub fn stop_components(&self) {
        stop_components_under(&self.components_dir);
    }
}

/// Stops the mock components and HAProxy masters under an agent's components directory
/// (`CLUSTER/COMPONENT/`), for cleanup.
pub fn stop_components_under(components_dir: &Path) {
    let components = std::fs::read_dir(components_dir)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|cluster| {
            std::fs::read_dir(cluster.path())
                .into_iter()
                .flatten()
                .flatten()
        });
    for component in components {
        for (file, how) in [
            ("pidfile", nix::sys::signal::Signal::SIGKILL),
            ("haproxy.pid", nix::sys::signal::Signal::SIGTERM),
        ] {
            let pid = std::fs::read_to_string(component.path().join(file))
                .ok()
                .and_then(|text| text.trim().parse().ok());
            if let Some(pid) = pid {
                signal(pid, how);
            }
        }
    }
    // A component that has not written its pidfile yet (Zato's take seconds): found by its
    // command line or working directory, as the agent finds it.
    for pid in zato_processes_under(components_dir) {
        signal(pid, nix::sys::signal::Signal::SIGKILL);
    }
}

/// Processes that run a Zato component (`-m zato.*.main`) from a directory under `root`.
fn zato_processes_under(root: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let words: Vec<String> = argv
                .split(|byte| *byte == 0)
                .map(|word| String::from_utf8_lossy(word).into_owned())
                .collect();
            let runs_zato = words
                .windows(2)
                .any(|pair| pair[0] == "-m" && pair[1].starts_with("zato."));
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
            runs_zato
                && (cwd.starts_with(root)
                    || words.iter().any(|word| Path::new(word).starts_with(root)))
        })
        .collect()
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
        self.stop_components();
    }
}
