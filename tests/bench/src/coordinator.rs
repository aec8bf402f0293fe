//! The coordinator under load: a real `muster-coordinator` process (init, run, stop, restart) on
//! loopback, what it costs (CPU and memory from `/proc`, database statements from its `/metrics`),
//! and an admin client to it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use muster_proto::v1::admin_service_client::AdminServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

pub struct CoordinatorProcess {
    binary: PathBuf,
    pub data_dir: PathBuf,
    pub grpc_port: u16,
    pub http_port: u16,
    log: PathBuf,
    child: Option<Child>,
}

impl CoordinatorProcess {
    /// `muster-coordinator init` in `directory/NAME` on `database_url` (SQLite in the directory
    /// when `None`).
    pub fn init(
        binary: &Path,
        directory: &Path,
        name: &str,
        database_url: Option<&str>,
    ) -> anyhow::Result<CoordinatorProcess> {
        let data_dir = directory.join(name);
        let mut init = Command::new(binary);
        init.arg("init").arg("--data-dir").arg(&data_dir);
        if let Some(url) = database_url {
            init.arg("--database-url").arg(url);
        }
        let output = init.output().context("run muster-coordinator init")?;
        if !output.status.success() {
            bail!(
                "muster-coordinator init failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(CoordinatorProcess {
            binary: binary.to_owned(),
            log: directory.join(format!("{name}.log")),
            data_dir,
            grpc_port: muster_testkit::free_port(),
            http_port: muster_testkit::free_port(),
            child: None,
        })
    }

    /// A second coordinator over the same database: a copy of this one's data directory (its CA,
    /// keys and database URL), on ports of its own.
    pub fn sibling(&self, directory: &Path, name: &str) -> anyhow::Result<CoordinatorProcess> {
        let data_dir = directory.join(name);
        let status = Command::new("cp")
            .arg("-a")
            .arg(&self.data_dir)
            .arg(&data_dir)
            .status()
            .context("copy the data directory")?;
        if !status.success() {
            bail!("cannot copy {}", self.data_dir.display());
        }
        Ok(CoordinatorProcess {
            binary: self.binary.clone(),
            log: directory.join(format!("{name}.log")),
            data_dir,
            grpc_port: muster_testkit::free_port(),
            http_port: muster_testkit::free_port(),
            child: None,
        })
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.grpc_port)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Starts the process and waits (at most a minute) until its `/healthz` answers.
    pub async fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(&self.binary)
            .args(["run", "--data-dir"])
            .arg(&self.data_dir)
            .args(["--listen", &format!("127.0.0.1:{}", self.grpc_port)])
            .args(["--http-listen", &format!("127.0.0.1:{}", self.http_port)])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("start muster-coordinator")?;
        self.child = Some(child);
        let port = self.http_port;
        muster_testkit::wait_for(
            "the coordinator's /healthz",
            Duration::from_secs(60),
            Duration::from_millis(50),
            || {
                let answer = tokio::task::spawn_blocking(move || {
                    muster_testkit::harness::http_get(port, "/healthz")
                });
                async move { answer.await.ok().flatten() }
            },
        )
        .await
        .map_err(|error| anyhow::anyhow!("{error}; see {}", self.log.display()))?;
        Ok(())
    }

    /// Stops the process with SIGTERM (as systemd does) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            muster_testkit::harness::signal(child.id(), nix::sys::signal::Signal::SIGTERM);
            let _ = child.wait();
        }
    }

    /// The statements the coordinator has sent to its database (`None` for a coordinator
    /// without the counter: a version before it).
    pub async fn statements(&self) -> Option<u64> {
        let port = self.http_port;
        let metrics = tokio::task::spawn_blocking(move || {
            muster_testkit::harness::http_get(port, "/metrics")
        })
        .await
        .ok()??;
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("muster_store_statements_total "))
            .and_then(|value| value.trim().parse().ok())
    }

    /// An admin client with the data directory's CA and admin token.
    pub async fn admin(&self) -> anyhow::Result<Admin> {
        let ca = std::fs::read_to_string(self.data_dir.join("ca.pem"))?;
        let token = std::fs::read_to_string(self.data_dir.join("admin.token"))?;
        let channel = Endpoint::from_shared(self.url())?
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(ca))
                    .domain_name("127.0.0.1"),
            )?
            .timeout(Duration::from_secs(60))
            .connect()
            .await
            .context("connect to the coordinator's admin API")?;
        Ok(Admin {
            client: AdminServiceClient::new(channel),
            bearer: format!("Bearer {}", token.trim()).parse()?,
        })
    }
}

impl Drop for CoordinatorProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Prints the coordinators' logs (their warnings and errors) to stderr when dropped before
/// [`LogsOnFailure::passed`]: a run that fails says why the coordinator refused, not only that it
/// did.
pub struct LogsOnFailure {
    logs: Vec<PathBuf>,
}

impl LogsOnFailure {
    pub fn of(coordinators: &[CoordinatorProcess]) -> LogsOnFailure {
        LogsOnFailure {
            logs: coordinators.iter().map(|c| c.log.clone()).collect(),
        }
    }

    pub fn passed(mut self) {
        self.logs.clear();
    }
}

impl Drop for LogsOnFailure {
    fn drop(&mut self) {
        for log in &self.logs {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("--- {} (last {} lines)", log.display(), tail.len());
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

#[derive(Clone)]
pub struct Admin {
    pub client: AdminServiceClient<Channel>,
    bearer: tonic::metadata::MetadataValue<tonic::metadata::Ascii>,
}

impl Admin {
    /// `message` as a request with the admin token.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.bearer.clone());
        request
    }
}

/// CPU time (user + system) of processes, from `/proc/PID/stat`.
pub fn cpu_time(pids: &[u32]) -> Duration {
    let ticks_per_second = 100.0; // USER_HZ, 100 on every Linux architecture Muster runs on
    let ticks: u64 = pids
        .iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // After the command name in parentheses: field 14 (utime) and 15 (stime).
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .sum();
    Duration::from_secs_f64(ticks as f64 / ticks_per_second)
}

/// The processes whose command name is one of `names` (the database server's).
pub fn processes_named(names: &[&str]) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| names.contains(&comm.trim()))
        })
        .collect()
}

/// Resident memory now and at its peak, in MiB, from `/proc/PID/status`.
pub fn memory_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|value| value.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU use of `pids` over a window, as a share of one core.
pub struct CpuWindow {
    pids: Vec<u32>,
    started: Instant,
    cpu: Duration,
}

impl CpuWindow {
    pub fn start(pids: Vec<u32>) -> CpuWindow {
        CpuWindow {
            cpu: cpu_time(&pids),
            pids,
            started: Instant::now(),
        }
    }

    /// Percent of one core since the start.
    pub fn percent(&self) -> f64 {
        let used = cpu_time(&self.pids).saturating_sub(self.cpu);
        100.0 * used.as_secs_f64() / self.started.elapsed().as_secs_f64()
    }
}
