//! The real `muster-coordinator` and `muster` binaries, run as processes the way README tells a
//! new user to, on SQLite, PostgreSQL and MariaDB.

mod flows;
mod operations;
mod refusals;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use muster_coordinator::config::DataDir;
use muster_coordinator::init::read_secret_box;
use muster_coordinator::pki::certificate_sha256;
use muster_coordinator::store::{DatabaseUrl, SqlStore, Store};
use muster_proto::v1;
use muster_proto::v1::admin_service_client::AdminServiceClient;
use muster_testkit::harness::{command, http_get, text};
use muster_testkit::{Backend, TestDatabase, free_port, wait_for};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

const COORDINATOR: &str = env!("CARGO_BIN_EXE_muster-coordinator");
const MUSTER: &str = env!("CARGO_BIN_EXE_muster");

fn init(data_dir: &Path, database_url: Option<&str>) -> Output {
    let mut init = command(Path::new(COORDINATOR));
    init.arg("init").arg("--data-dir").arg(data_dir);
    if let Some(url) = database_url {
        init.arg("--database-url").arg(url);
    }
    init.output().unwrap()
}

/// A running `muster-coordinator run`, stopped (SIGTERM) when dropped.
struct Coordinator {
    data_dir: PathBuf,
    process: Child,
    grpc_port: u16,
    http_port: u16,
    log: PathBuf,
}

impl Coordinator {
    async fn start(data_dir: &Path) -> Coordinator {
        let (grpc_port, http_port) = (free_port(), free_port());
        let log = data_dir.with_extension(format!("{grpc_port}.log"));
        let process = command(Path::new(COORDINATOR))
            .args(["run", "--data-dir"])
            .arg(data_dir)
            .args(["--listen", &format!("127.0.0.1:{grpc_port}")])
            .args(["--http-listen", &format!("127.0.0.1:{http_port}")])
            .env("RUST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut coordinator = Coordinator {
            data_dir: data_dir.to_owned(),
            process,
            grpc_port,
            http_port,
            log,
        };
        let ready = wait_for(
            "the coordinator's /healthz",
            Duration::from_secs(20),
            Duration::from_millis(50),
            || {
                let answer = http_get(http_port, "/healthz");
                async move { answer }
            },
        )
        .await;
        if let Err(error) = ready {
            let exited = coordinator.process.try_wait().unwrap();
            panic!(
                "{error}; exited: {exited:?}; log:\n{}",
                coordinator.log_text()
            );
        }
        coordinator
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.grpc_port)
    }

    fn muster(&self, args: &[&str]) -> Output {
        self.muster_with_stdin(args, "")
    }

    fn muster_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = command(Path::new(MUSTER))
            .env("MUSTER_DATA_DIR", &self.data_dir)
            .env("MUSTER_COORDINATOR", self.url())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Runs `muster ARGS` with its output to a pipe whose reader has already gone, as
    /// `muster … | head` makes when `head` has read its lines.
    fn muster_into_closed_pipe(&self, args: &[&str]) -> Output {
        let (reader, writer) = nix::unistd::pipe().unwrap();
        drop(reader);
        command(Path::new(MUSTER))
            .env("MUSTER_DATA_DIR", &self.data_dir)
            .env("MUSTER_COORDINATOR", self.url())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .unwrap()
    }

    /// Runs `muster ARGS` and returns its stdout, failing the test if it fails.
    fn ok(&self, args: &[&str]) -> String {
        let output = self.muster(args);
        assert!(
            output.status.success(),
            "muster {args:?} failed: {}",
            text(&output.stderr)
        );
        text(&output.stdout)
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut with_json = vec!["--output", "json"];
        with_json.extend_from_slice(args);
        serde_json::from_str(&self.ok(&with_json)).unwrap()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for a clean exit.
    fn stop(mut self) -> std::process::ExitStatus {
        self.terminate()
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.process.id().to_string()])
            .status();
        self.process.wait().unwrap()
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        if self.process.try_wait().ok().flatten().is_none() {
            self.terminate();
        }
    }
}

async fn grpc_channel(coordinator: &Coordinator) -> Channel {
    let ca = std::fs::read_to_string(coordinator.data_dir.join("ca.pem")).unwrap();
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("127.0.0.1");
    Endpoint::from_shared(coordinator.url())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn with_admin_token<T>(coordinator: &Coordinator, message: T) -> tonic::Request<T> {
    let token = std::fs::read_to_string(coordinator.data_dir.join("admin.token")).unwrap();
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", token.trim()).parse().unwrap(),
    );
    request
}

fn one_line_error(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "expected a failure, got {}",
        text(&output.stdout)
    );
    let stderr = text(&output.stderr);
    assert_eq!(
        stderr.lines().count(),
        1,
        "expected one line, got: {stderr}"
    );
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}

fn snapshot(directory: &Path) -> BTreeMap<String, (Vec<u8>, std::time::SystemTime)> {
    std::fs::read_dir(directory)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let metadata = entry.metadata().unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                (
                    std::fs::read(entry.path()).unwrap(),
                    metadata.modified().unwrap(),
                ),
            )
        })
        .collect()
}

/// The port of the one coordinator log written beside `data_dir`.
fn coordinator_port(data_dir: &Path) -> String {
    let parent = data_dir.parent().unwrap();
    std::fs::read_dir(parent)
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .find_map(|name| {
            name.strip_prefix("muster.")?
                .strip_suffix(".log")
                .map(str::to_owned)
        })
        .expect("a coordinator log")
}

/// The HTTP status code of `GET path` on 127.0.0.1, or 0 when nothing answers.
fn http_status(port: u16, path: &str) -> u16 {
    muster_testkit::traffic::get(std::net::SocketAddr::from(([127, 0, 0, 1], port)), path)
        .map_or(0, |(status, _)| status)
}
