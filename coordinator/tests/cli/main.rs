//! The real `muster-coordinator` and `muster` binaries, run as processes the way README tells a
//! new user to, on SQLite, PostgreSQL and MariaDB, through the harness the end-to-end suites use
//! (`muster_testkit::harness::Coordinator::run` on a data directory `init` made).

mod flows;
mod operations;
mod refusals;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use muster_coordinator::config::DataDir;
use muster_coordinator::init::read_secret_box;
use muster_coordinator::pki::certificate_sha256;
use muster_coordinator::store::{DatabaseUrl, SqlStore, Store};
use muster_proto::v1;
use muster_proto::v1::admin_service_client::AdminServiceClient;
use muster_testkit::harness::{Coordinator, command, http_get, text};
use muster_testkit::{Backend, TestDatabase, free_port, wait_for};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

const COORDINATOR: &str = env!("CARGO_BIN_EXE_muster-coordinator");

fn init(data_dir: &Path, database_url: Option<&str>) -> Output {
    let mut init = command(Path::new(COORDINATOR));
    init.arg("init").arg("--data-dir").arg(data_dir);
    if let Some(url) = database_url {
        init.arg("--database-url").arg(url);
    }
    init.output().unwrap()
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
