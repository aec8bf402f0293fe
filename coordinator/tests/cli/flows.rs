//! README's first steps on each database, restarts, two coordinators on one database, and an
//! `init` that will not overwrite.

use super::*;

/// README's first steps: init, run, create a cluster, list it; then tokens, events, delete.
async fn new_user_flow(backend: Backend) {
    let database = TestDatabase::create(backend).await;
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("muster");
    let url = (backend != Backend::Sqlite).then_some(database.url.as_str());

    let initialized = init(&data_dir, url);
    assert!(
        initialized.status.success(),
        "init failed: {}",
        text(&initialized.stderr)
    );
    let printed = text(&initialized.stdout);
    let token_file = std::fs::read_to_string(data_dir.join("admin.token")).unwrap();
    assert!(
        printed.contains(token_file.trim()),
        "init prints the admin token once: {printed}"
    );
    for private in ["admin.token", "ca.key", "server.key", "secret.key"] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(data_dir.join(private))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{private}");
    }

    let coordinator = Coordinator::run(&data_dir).await;
    assert_eq!(
        coordinator.ok(&["create", "cluster", "demo"]).trim(),
        "created cluster demo"
    );
    let table = coordinator.ok(&["cluster", "list"]);
    assert!(table.lines().next().unwrap().starts_with("NAME"), "{table}");
    assert!(
        table.lines().nth(1).unwrap().starts_with("demo "),
        "{table}"
    );
    let clusters = coordinator.json(&["cluster", "list"]);
    assert_eq!(clusters[0]["name"], "demo");
    assert_eq!(clusters[0]["odb_type"], "sqlite");
    // Read by a reader that stops (`muster cluster list | head -0`): no "Broken pipe" error.
    let closed = coordinator.muster_into_closed_pipe(&["cluster", "list"]);
    assert!(
        closed.status.success() && closed.stderr.is_empty(),
        "{:?}: {}",
        closed.status,
        text(&closed.stderr)
    );

    let created = coordinator.json(&[
        "token",
        "create",
        "--cluster",
        "demo",
        "--role",
        "server",
        "--max-uses",
        "2",
    ]);
    let secret_token = created["secret_token"].as_str().unwrap();
    let parsed = muster_proto::token::JoinToken::parse(secret_token).unwrap();
    let ca_pem = std::fs::read_to_string(data_dir.join("ca.pem")).unwrap();
    assert_eq!(
        parsed.ca_sha256,
        certificate_sha256(&ca_pem, "ca.pem").unwrap()
    );
    let tokens = coordinator.json(&["token", "list", "--cluster", "demo"]);
    assert_eq!(tokens[0]["id"], parsed.id.as_str());
    assert_eq!(
        (tokens[0]["state"].as_str(), tokens[0]["max_uses"].as_u64()),
        (Some("active"), Some(2))
    );
    coordinator.ok(&["token", "revoke", &parsed.id]);
    assert_eq!(coordinator.json(&["token", "list"])[0]["state"], "revoked");

    let events = coordinator.json(&["events", "--cluster", "demo"]);
    let kinds: Vec<_> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["token.revoked", "token.created", "cluster.created"]);

    coordinator.ok(&["cluster", "delete", "demo", "--yes"]);
    assert_eq!(
        coordinator.json(&["cluster", "list"]),
        serde_json::json!([])
    );
    assert_eq!(coordinator.json(&["token", "list"]), serde_json::json!([]));
    assert!(
        coordinator.stop().success(),
        "the coordinator exits cleanly on SIGTERM"
    );
}

#[tokio::test]
async fn new_user_flow_on_sqlite() {
    new_user_flow(Backend::Sqlite).await;
}

#[tokio::test]
async fn new_user_flow_on_postgres() {
    new_user_flow(Backend::Postgres).await;
}

#[tokio::test]
async fn new_user_flow_on_mariadb() {
    new_user_flow(Backend::MySql).await;
}

#[tokio::test]
async fn a_cluster_survives_a_coordinator_restart() {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("muster");
    assert!(init(&data_dir, None).status.success());
    let coordinator = Coordinator::run(&data_dir).await;
    coordinator.ok(&["create", "cluster", "kept", "--description", "survives"]);
    assert!(coordinator.stop().success());

    let restarted = Coordinator::run(&data_dir).await;
    let cluster = restarted.json(&["cluster", "show", "kept"]);
    assert_eq!(
        (cluster["name"].as_str(), cluster["description"].as_str()),
        (Some("kept"), Some("survives"))
    );
    let table = restarted.ok(&["cluster", "show", "kept"]);
    assert!(
        table
            .lines()
            .any(|line| line.starts_with("scheduler target ")
                && line.ends_with(" none yet (no healthy server)")),
        "{table}"
    );
}

#[tokio::test]
async fn two_coordinators_on_one_postgres_database_see_each_others_writes() {
    let database = TestDatabase::create(Backend::Postgres).await;
    let scratch = tempfile::tempdir().unwrap();
    let first_dir = scratch.path().join("first");
    assert!(init(&first_dir, Some(&database.url)).status.success());
    // A second copy shares the CA, keys and database: copy the data directory, as an operator would.
    let second_dir = scratch.path().join("second");
    std::fs::create_dir(&second_dir).unwrap();
    for entry in std::fs::read_dir(&first_dir).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), second_dir.join(entry.file_name())).unwrap();
    }
    let first = Coordinator::run(&first_dir).await;
    let second = Coordinator::run(&second_dir).await;

    first.ok(&["create", "cluster", "alpha"]);
    second.ok(&["create", "cluster", "beta"]);
    for coordinator in [&first, &second] {
        let names: Vec<_> = coordinator
            .json(&["cluster", "list"])
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["alpha", "beta"]);
    }
    // The same create through the other coordinator is done already; a different one is not.
    let again = second.ok(&["create", "cluster", "alpha"]);
    assert_eq!(
        again.trim(),
        "cluster alpha already exists with these settings; unchanged"
    );
    let different = second.muster(&["create", "cluster", "alpha", "--description", "other"]);
    assert_eq!(different.status.code(), Some(4));
    assert_eq!(
        one_line_error(&different).trim_end(),
        "error: cluster 'alpha' already exists with other settings: description \"\" (asked: \"other\")"
    );
}

#[tokio::test]
async fn init_refuses_an_initialized_directory_and_changes_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("muster");
    assert!(init(&data_dir, None).status.success());
    let before = snapshot(&data_dir);
    let again = init(&data_dir, None);
    let error = one_line_error(&again);
    assert!(error.contains("already initialized"), "{error}");
    assert_eq!(snapshot(&data_dir), before);
}

/// A cluster's environment written back whole by `muster get cluster --dir` (the example's
/// services, enmasse file, requirements, wheel and package) is the same environment: the files
/// are the ones deployed, the wheel byte for byte, the package as its directory, the env values are not written, and applying the
/// written directory (with its env file made) changes nothing but the configuration, whose
/// values only the coordinator can compare.
#[tokio::test]
async fn an_environment_written_back_applies_as_the_same_environment() {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("coordinator");
    assert!(init(&data_dir, None).status.success());
    let coordinator = Coordinator::run(&data_dir).await;
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/examples");
    let source = scratch.path().join("source");
    std::fs::create_dir(&source).unwrap();
    for part in [
        "services",
        "config",
        "python",
        "python/wheelhouse",
        "python/packages/pricing/rules",
    ] {
        std::fs::create_dir_all(source.join(part)).unwrap();
    }
    let files = [
        "services/orders.py",
        "config/api.yaml",
        "python/requirements.txt",
        "python/wheelhouse/inflection-0.5.1-py2.py3-none-any.whl",
        "python/packages/pricing/__init__.py",
        "python/packages/pricing/tax.py",
        "python/packages/pricing/rules/__init__.py",
    ];
    for file in files {
        std::fs::copy(example.join(file), source.join(file)).unwrap();
    }
    std::fs::copy(
        example.join("config/env.ini.example"),
        source.join("config/env.ini"),
    )
    .unwrap();
    let cluster_file = "[cluster]\nname = \"shop\"\n\n[cluster.odb]\ntype = \"sqlite\"\n\
                        db_name = \"/var/lib/zato/shop.db\"\n\n\
                        [services]\npaths = [\"services\"]\n\n\
                        [config]\nfiles = [\"config/api.yaml\"]\nenv_file = \"config/env.ini\"\n\n\
                        [python]\nrequirements = \"python/requirements.txt\"\n\
                        wheelhouse = \"python/wheelhouse\"\n\
                        packages = [\"python/packages/pricing\"]\n";
    std::fs::write(source.join("cluster.toml"), cluster_file).unwrap();
    coordinator.ok(&["apply", "-f", source.join("cluster.toml").to_str().unwrap()]);

    let written = scratch.path().join("written");
    let said = coordinator.ok(&["get", "cluster", "shop", "--dir", written.to_str().unwrap()]);
    assert!(said.contains("wrote cluster shop to"), "{said}");
    for file in files {
        assert_eq!(
            std::fs::read(written.join(file)).unwrap(),
            std::fs::read(source.join(file)).unwrap(),
            "{file}"
        );
    }
    let template = std::fs::read_to_string(written.join("config/env.ini.example")).unwrap();
    assert!(template.contains("ORDERS_PASSWORD=\n"), "{template}");
    let secret = std::fs::read_to_string(source.join("config/env.ini")).unwrap();
    let value = secret
        .lines()
        .find_map(|line| line.strip_prefix("ORDERS_PASSWORD="))
        .unwrap();
    assert!(!value.is_empty());
    assert!(
        !template.contains(value) && !written.join("config/env.ini").exists(),
        "the env values are not written"
    );

    // A directory that is not empty is refused; nothing is overwritten.
    let refused =
        coordinator.muster(&["get", "cluster", "shop", "--dir", written.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(
        one_line_error(&refused).contains("not empty"),
        "{}",
        one_line_error(&refused)
    );

    std::fs::copy(
        source.join("config/env.ini"),
        written.join("config/env.ini"),
    )
    .unwrap();
    let plan = coordinator.ok(&[
        "apply",
        "-f",
        written.join("cluster.toml").to_str().unwrap(),
        "--dry-run",
    ]);
    assert!(
        plan.contains("= services ") && plan.contains("= python ") && plan.contains("~ config "),
        "{plan}"
    );
    let applied = coordinator.ok(&[
        "apply",
        "-f",
        written.join("cluster.toml").to_str().unwrap(),
    ]);
    assert!(
        !applied.contains("set services") && !applied.contains("set Python"),
        "{applied}"
    );
    assert!(
        !applied.contains("set configuration"),
        "the same values: {applied}"
    );
}
