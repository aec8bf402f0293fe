//! What an operator watches: `/healthz`, `/metrics` and reflection, `validate`, and the store
//! through a full disk and a silent database.

use super::*;

#[tokio::test]
async fn health_metrics_and_reflection_are_served() {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("muster");
    assert!(init(&data_dir, None).status.success());
    let coordinator = Coordinator::run(&data_dir).await;
    coordinator.ok(&["create", "cluster", "one"]);

    let metrics = http_get(coordinator.http_port, "/metrics").unwrap();
    assert!(metrics.contains("\nmuster_clusters 1\n"), "{metrics}");
    assert!(metrics.contains("\nmuster_database_up 1\n"), "{metrics}");

    let channel = grpc_channel(&coordinator).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "muster.v1.AdminService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        serving.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<_> = list
        .service
        .into_iter()
        .map(|service| service.name)
        .collect();
    for expected in ["muster.v1.AdminService", "grpc.health.v1.Health"] {
        assert!(names.iter().any(|name| name == expected), "{names:?}");
    }

    // The older protocol too: grpcurl as Debian ships it asks v1alpha.
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as Alpha;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as AlphaResponse;
    let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::ListServices(String::new())),
    };
    let response = Alpha::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    let Some(AlphaResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected v1alpha reflection answer");
    };
    assert!(
        list.service
            .iter()
            .any(|service| service.name == "muster.v1.AdminService"),
        "{list:?}"
    );
}

#[test]
fn validate_names_a_bad_key_and_accepts_a_good_file() {
    let scratch = tempfile::tempdir().unwrap();
    let bad = scratch.path().join("bad.toml");
    std::fs::write(
        &bad,
        "data_dir = \"/var/lib/muster\"\nlisen = \"0.0.0.0:17300\"\n",
    )
    .unwrap();
    let output = command(Path::new(COORDINATOR))
        .args(["validate", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    let error = one_line_error(&output);
    assert!(
        error.contains("unknown field `lisen`") && error.contains("bad.toml"),
        "{error}"
    );

    let bad_value = scratch.path().join("bad-value.toml");
    std::fs::write(
        &bad_value,
        "data_dir = \"/x\"\nhttp_listen = \"localhost\"\n",
    )
    .unwrap();
    let output = command(Path::new(COORDINATOR))
        .args(["validate", "--config"])
        .arg(&bad_value)
        .output()
        .unwrap();
    assert!(one_line_error(&output).contains("http_listen = \"localhost\""));

    let good = scratch.path().join("good.toml");
    std::fs::write(&good, "data_dir = \"/var/lib/muster\"\ndatabase_url = \"postgres://muster@db/muster\"\nlisten = \"0.0.0.0:17300\"\n").unwrap();
    let output = command(Path::new(COORDINATOR))
        .args(["validate", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
}

/// The SQLite store through a full disk: writes that fail are refused and leave nothing behind,
/// `/healthz` says the store cannot write, and once there is room again every write that was
/// acknowledged is there (also after a restart), reads agree, and writes succeed at once.
#[tokio::test]
async fn the_sqlite_store_recovers_from_a_full_disk_and_keeps_what_it_acknowledged() {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("muster");
    let disk = muster_testkit::disk::SmallFilesystem::mount(&data_dir, "8m");
    assert!(init(&data_dir, None).status.success());
    let coordinator = Coordinator::run(&data_dir).await;
    coordinator.ok(&["create", "cluster", "before"]);
    let mut acknowledged = vec!["before".to_owned()];

    let filler = disk.fill();
    // The write-ahead log may still have room for a few writes; the first refusal comes soon.
    let mut refused = Vec::new();
    for attempt in 0..200 {
        let name = format!("full-{attempt}");
        let output = coordinator.muster(&["create", "cluster", &name]);
        if output.status.success() {
            acknowledged.push(name);
        } else {
            let error = one_line_error(&output);
            assert!(!error.is_empty(), "a refused write says why");
            refused.push(name);
            if refused.len() == 3 {
                break;
            }
        }
    }
    assert_eq!(refused.len(), 3, "writes to a full disk are refused");
    let health = http_status(coordinator.http_port, "/healthz");
    assert_eq!(health, 503, "/healthz reports a store that cannot write");

    std::fs::remove_file(filler).unwrap();
    let port = coordinator.http_port;
    wait_for(
        "/healthz to say the store writes again",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async move { (http_status(port, "/healthz") == 200).then_some(()) },
    )
    .await
    .unwrap();
    // At once, not after minutes of "database is locked".
    coordinator.ok(&["create", "cluster", "after"]);
    acknowledged.push("after".to_owned());

    let names = |coordinator: &Coordinator| -> Vec<String> {
        let mut names: Vec<String> = coordinator
            .json(&["cluster", "list"])
            .as_array()
            .unwrap()
            .iter()
            .map(|cluster| cluster["name"].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    acknowledged.sort();
    for _ in 0..5 {
        assert_eq!(names(&coordinator), acknowledged, "reads agree");
    }
    coordinator.stop();
    let coordinator = Coordinator::run(&data_dir).await;
    assert_eq!(
        names(&coordinator),
        acknowledged,
        "every acknowledged write survived a restart, and no refused one appeared"
    );
}

/// A database that falls silent (a partition: no refusal, no reset) is reported by `/healthz` as
/// 503 within its bound instead of a hang, and by `/metrics` as down; once the database answers
/// again, `/healthz` is 200 again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_answers_within_its_bound_while_the_database_is_silent() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let (before_host, rest) = database.url.split_once('@').unwrap();
    let (server, name) = rest.split_once('/').unwrap();
    let proxy = muster_testkit::proxy::FreezableProxy::start(server.parse().unwrap()).await;
    let url = format!("{before_host}@{}/{name}", proxy.address);
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("muster");
    assert!(init(&data_dir, Some(&url)).status.success());
    let coordinator = Coordinator::run(&data_dir).await;
    coordinator.ok(&["create", "cluster", "one"]);
    assert_eq!(http_status(coordinator.http_port, "/healthz"), 200);

    proxy.freeze();
    let asked = std::time::Instant::now();
    let health = http_status(coordinator.http_port, "/healthz");
    println!("/healthz answered {health} after {:?}", asked.elapsed());
    assert_eq!(health, 503, "a silent database is reported, not waited for");
    let metrics = http_get(coordinator.http_port, "/metrics").expect("/metrics answers");
    assert!(metrics.contains("\nmuster_database_up 0\n"), "{metrics}");
    assert!(
        coordinator
            .log_text()
            .contains("the database did not take a write within 3 s"),
        "the log says why"
    );

    proxy.thaw();
    let port = coordinator.http_port;
    wait_for(
        "/healthz once the database answers again",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || async move { (http_status(port, "/healthz") == 200).then_some(()) },
    )
    .await
    .unwrap();
    coordinator.ok(&["create", "cluster", "two"]);
}

/// The HTTP/JSON gateway as tools without gRPC use it: curl (HTTP/2) and Ansible's `uri` module
/// (Python's urllib, HTTP/1.1), against the gRPC port with the coordinator's CA and admin token.
#[tokio::test]
async fn the_json_gateway_serves_curl_and_ansibles_uri_with_the_same_token() {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("muster");
    assert!(init(&data_dir, None).status.success());
    let coordinator = Coordinator::run(&data_dir).await;
    let token = std::fs::read_to_string(data_dir.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let ca = data_dir.join("ca.pem");
    let url = |method: &str| format!("{}/api/v1/AdminService/{method}", coordinator.url());
    // curl: the answer's body, then its HTTP status on the last line.
    let curl = |method: &str, bearer: Option<&str>, body: &str| -> (u16, serde_json::Value) {
        let mut command = Command::new("curl");
        command.args(["-sS", "--cacert"]).arg(&ca).args([
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
            "-d",
            body,
        ]);
        if let Some(bearer) = bearer {
            command.args(["-H", &format!("authorization: Bearer {bearer}")]);
        }
        let output = command.arg(url(method)).output().expect("curl");
        let text = text(&output.stdout);
        let (body, status) = text.trim().rsplit_once('\n').expect("a body and a status");
        (
            status.parse().unwrap(),
            serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}")),
        )
    };

    let (status, refused) = curl("ListClusters", None, "");
    assert_eq!(status, 401);
    assert_eq!(refused["code"], "UNAUTHENTICATED");
    let (status, created) = curl(
        "CreateCluster",
        Some(&token),
        r#"{"name": "prod", "odb": {"odbType": "ODB_TYPE_SQLITE"}}"#,
    );
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["cluster"]["name"], "prod");
    assert_eq!(
        coordinator.ok(&["cluster", "list"]).lines().count(),
        2,
        "one cluster"
    );
    let (status, missing) = curl("GetCluster", Some(&token), r#"{"name": "nope"}"#);
    assert_eq!(
        (status, missing["code"].as_str()),
        (404, Some("NOT_FOUND")),
        "{missing}"
    );
    let (status, typo) = curl("GetCluster", Some(&token), r#"{"nmae": "prod"}"#);
    assert_eq!(status, 400);
    assert!(
        typo["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `nmae`"),
        "{typo}"
    );
    let (status, _) = curl("NoSuchMethod", Some(&token), "{}");
    assert_eq!(status, 404);
    // The refusal went where gRPC's go: counted by reason.
    let metrics = http_get(coordinator.http_port, "/metrics").unwrap();
    assert!(
        metrics.contains("muster_admin_calls_refused_total{reason=\"no-token\"} 1"),
        "{metrics}"
    );

    let playbook = scratch.path().join("list.yml");
    std::fs::write(
        &playbook,
        format!(
            "- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n    \
             - ansible.builtin.uri:\n        url: {}\n        method: POST\n        \
             body_format: json\n        body: {{}}\n        ca_path: {}\n        headers:\n          \
             authorization: \"Bearer {{{{ lookup('file', '{}') }}}}\"\n      register: listed\n    \
             - ansible.builtin.assert:\n        that: listed.json.clusters[0].name == 'prod'\n",
            url("ListClusters"),
            ca.display(),
            data_dir.join("admin.token").display()
        ),
    )
    .unwrap();
    let ansible = Command::new("ansible-playbook")
        .arg(&playbook)
        .env("ANSIBLE_NOCOLOR", "1")
        .output()
        .expect("ansible-playbook (.ci/setup installs it)");
    assert!(
        ansible.status.success(),
        "{}\n{}",
        text(&ansible.stdout),
        text(&ansible.stderr)
    );
}
