//! What is refused, and how: a missing database, bad URLs and input (each named, nothing
//! changed), one-line errors, and no secret in any log or output.

use super::*;

/// An initialized data directory whose SQLite database is gone (deleted, a lost volume) is not
/// a new coordinator: `run` refuses, names the file, and creates nothing.
#[tokio::test]
async fn run_refuses_an_initialized_directory_whose_database_is_missing() {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("muster");
    assert!(init(&data_dir, None).status.success());
    let database = data_dir.join("muster.db");
    assert!(database.exists(), "init made the embedded database");
    for file in ["muster.db", "muster.db-wal", "muster.db-shm"] {
        let _ = std::fs::remove_file(data_dir.join(file));
    }
    let run = command(Path::new(COORDINATOR))
        .arg("run")
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--http-listen")
        .arg("127.0.0.1:0")
        .output()
        .unwrap();
    let error = one_line_error(&run);
    assert!(
        error.contains(&format!(
            "the database {} of the initialized data directory",
            database.display()
        )) && error.contains("restore it from a backup"),
        "{error}"
    );
    assert!(!database.exists(), "run made no new database");
}

#[tokio::test]
async fn init_with_a_bad_database_url_creates_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    for (url, expected) in [
        ("postgress://postgres@127.0.0.1/x", "unknown scheme"),
        ("not a url", "not a URL"),
        (
            "postgres://postgres@127.0.0.1:5432/muster_does_not_exist",
            "does not exist",
        ),
    ] {
        let data_dir = scratch.path().join("muster");
        let error = one_line_error(&init(&data_dir, Some(url)));
        assert!(error.contains(expected), "{url}: {error}");
        assert!(!data_dir.exists(), "{url} left {}", data_dir.display());
    }
}

#[tokio::test]
async fn errors_are_one_clear_line() {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("muster");
    assert!(init(&data_dir, None).status.success());
    let coordinator = Coordinator::run(&data_dir).await;

    let unknown = one_line_error(&coordinator.muster(&["cluster", "show", "nope"]));
    assert_eq!(unknown.trim(), "error: cluster 'nope' not found");

    let wrong_token = format!("muster-admin.0123456789abcdef.{}", "0".repeat(32));
    let refused =
        one_line_error(&coordinator.muster(&["--token", &wrong_token, "cluster", "list"]));
    assert!(refused.contains("refused the admin token"), "{refused}");

    let malformed = one_line_error(&coordinator.muster(&["--token", "hunter2", "cluster", "list"]));
    assert!(malformed.contains("malformed admin token"), "{malformed}");
    assert!(!malformed.contains("hunter2"), "{malformed}");

    let closed_port = free_port();
    let unreachable = one_line_error(&coordinator.muster(&[
        "--coordinator",
        &format!("https://127.0.0.1:{closed_port}"),
        "cluster",
        "list",
    ]));
    assert!(
        unreachable.contains(&format!(
            "cannot reach the coordinator at https://127.0.0.1:{closed_port}"
        )),
        "{unreachable}"
    );

    let other_ca = tempfile::tempdir().unwrap();
    assert!(init(&other_ca.path().join("d"), None).status.success());
    let ca_file = other_ca.path().join("d/ca.pem");
    let untrusted = one_line_error(&coordinator.muster(&[
        "--ca-file",
        ca_file.to_str().unwrap(),
        "cluster",
        "list",
    ]));
    assert!(
        untrusted.contains("cannot reach the coordinator"),
        "{untrusted}"
    );
}

#[tokio::test]
async fn bad_input_is_refused_and_changes_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("muster");
    assert!(init(&data_dir, None).status.success());
    let coordinator = Coordinator::run(&data_dir).await;

    for bad_name in ["two words", "line\nbreak", "semi;colon", "-dash"] {
        let error = one_line_error(&coordinator.muster(&["create", "cluster", "--", bad_name]));
        assert!(error.contains("invalid cluster name"), "{error}");
        assert!(
            error.contains(&format!("{bad_name:?}")),
            "the value is named: {error}"
        );
    }
    let bad_revoke = one_line_error(&coordinator.muster(&["token", "revoke", "MUSTER1-abc"]));
    assert!(bad_revoke.contains("invalid join token id"), "{bad_revoke}");
    let bad_role =
        coordinator.muster(&["token", "create", "--cluster", "x", "--role", "dashboard"]);
    assert!(!bad_role.status.success());
    assert!(
        text(&bad_role.stderr).contains("unknown role 'dashboard'"),
        "{}",
        text(&bad_role.stderr)
    );

    for (flag, value, named) in [
        (
            "--frontend-address",
            "0.0.0.0 ssl",
            r#"invalid frontend address "0.0.0.0 ssl""#,
        ),
        (
            "--haproxy-bin",
            "haproxy -d",
            r#"invalid HAProxy binary "haproxy -d""#,
        ),
        ("--check-inter", "10ms", r#"invalid check interval "10ms""#),
    ] {
        let error = one_line_error(&coordinator.muster(&[
            "create",
            "load-balancer",
            "--cluster",
            "prod",
            "--host",
            "edge",
            flag,
            value,
        ]));
        assert!(error.contains(named), "{error}");
    }
    let nothing = one_line_error(&coordinator.muster(&[
        "configure",
        "load-balancer",
        "--cluster",
        "prod",
        "--host",
        "edge",
    ]));
    assert!(nothing.contains("nothing to change"), "{nothing}");

    // The server checks too, whatever the client: a name with a newline and a 10 MB request.
    let mut client = AdminServiceClient::new(grpc_channel(&coordinator).await);
    let injected = v1::CreateComponentRequest {
        cluster: "prod".into(),
        role: v1::Role::LoadBalancer as i32,
        host: "edge".into(),
        load_balancer: Some(v1::LoadBalancerSettings {
            frontend_address: "0.0.0.0:80\n    bind *:81".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let status = client
        .create_component(with_admin_token(&coordinator, injected))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains(r#""0.0.0.0:80\n    bind *:81""#),
        "{}",
        status.message()
    );
    let injected = v1::CreateClusterRequest {
        name: "evil\nbackend x".into(),
        ..Default::default()
    };
    let status = client
        .create_cluster(with_admin_token(&coordinator, injected))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains(r#""evil\nbackend x""#),
        "{}",
        status.message()
    );
    let huge = v1::CreateClusterRequest {
        name: "huge".into(),
        description: "x".repeat(10 * 1024 * 1024),
        ..Default::default()
    };
    let status = client
        .create_cluster(with_admin_token(&coordinator, huge))
        .await
        .unwrap_err();
    assert!(
        matches!(
            status.code(),
            tonic::Code::OutOfRange | tonic::Code::ResourceExhausted
        ),
        "{status:?}"
    );
    assert!(
        status.message().contains("too large"),
        "{}",
        status.message()
    );
    let no_token = client
        .list_clusters(v1::ListClustersRequest {})
        .await
        .unwrap_err();
    assert_eq!(no_token.code(), tonic::Code::Unauthenticated);

    assert_eq!(
        coordinator.json(&["cluster", "list"]),
        serde_json::json!([])
    );
    let events = coordinator.json(&["events"]);
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .all(|event| event["kind"] != "cluster.created")
    );
}

#[tokio::test]
async fn no_secret_reaches_a_log_or_an_output() {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("muster");
    assert!(init(&data_dir, None).status.success());
    let coordinator = Coordinator::run(&data_dir).await;
    let odb_password = "Odb-Password-7f3a91";

    let mut outputs = Vec::new();
    let mut run = |args: &[&str], stdin: &str| {
        let output = coordinator.muster_with_stdin(args, stdin);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            text(&output.stderr)
        );
        outputs.push(format!("{}{}", text(&output.stdout), text(&output.stderr)));
    };
    run(
        &[
            "create",
            "cluster",
            "prod",
            "--odb-type",
            "postgresql",
            "--odb-host",
            "db.internal",
            "--odb-user",
            "zato",
            "--odb-db-name",
            "zato",
            "--odb-password-file",
            "-",
        ],
        &format!("{odb_password}\n"),
    );
    run(&["cluster", "show", "prod"], "");
    run(&["--output", "json", "cluster", "show", "prod"], "");
    run(&["cluster", "list"], "");
    let created = coordinator.json(&["token", "create", "--cluster", "prod", "--role", "server"]);
    let join_secret =
        muster_proto::token::JoinToken::parse(created["secret_token"].as_str().unwrap())
            .unwrap()
            .secret;
    run(&["token", "list"], "");
    run(&["--output", "json", "token", "list"], "");
    run(&["events"], "");
    run(&["--output", "json", "events"], "");
    assert!(
        outputs[1]
            .lines()
            .any(|line| line.starts_with("odb password ") && line.ends_with(" set")),
        "{}",
        outputs[1]
    );
    coordinator.stop();

    let layout = DataDir::new(&data_dir);
    let store = SqlStore::connect(
        &DatabaseUrl::sqlite_file(&data_dir.join("muster.db")),
        read_secret_box(&layout).unwrap(),
    )
    .await
    .unwrap();
    let secrets = store.cluster_secrets("prod").await.unwrap();
    assert_eq!(
        secrets.odb_password, odb_password,
        "the password file's newline is removed"
    );
    let admin_token = std::fs::read_to_string(layout.admin_token()).unwrap();
    let log = std::fs::read_to_string(
        data_dir.with_extension(format!("{}.log", coordinator_port(&data_dir))),
    )
    .unwrap_or_default();
    for (what, secret) in [
        ("ODB password", secrets.odb_password.as_str()),
        ("secret key", &secrets.secret_key),
        ("JWT secret", &secrets.jwt_secret),
        ("admin.invoke password", &secrets.admin_invoke_password),
        ("admin token", admin_token.trim()),
        ("join token secret", &join_secret),
    ] {
        assert!(
            !log.contains(secret),
            "the coordinator's log holds the {what}"
        );
        for output in &outputs {
            assert!(
                !output.contains(secret),
                "a CLI output holds the {what}: {output}"
            );
        }
    }
    assert!(log.contains("cluster created"), "the log was read: {log}");
}

/// A cluster file, and a file it names, is read only when it is a regular file of bounded size
/// (a FIFO or a device is refused at once instead of hanging or filling memory); a relative
/// `password_file` stays in the cluster file's directory (no `..`, no symbolic link out of it);
/// and no error shows what such a file holds. Nothing is created.
#[tokio::test]
async fn a_cluster_file_and_the_files_it_names_are_regular_bounded_and_never_shown() {
    let scratch = tempfile::tempdir().unwrap();
    let data_dir = scratch.path().join("muster");
    assert!(init(&data_dir, None).status.success());
    let coordinator = Coordinator::run(&data_dir).await;
    let secret = scratch.path().join("shadow");
    std::fs::write(&secret, "root:SECRET-HASH-LINE:19000:0:99999:7:::\n").unwrap();
    let files = scratch.path().join("files");
    std::fs::create_dir(&files).unwrap();
    let apply =
        |file: &Path| one_line_error(&coordinator.muster(&["apply", "-f", file.to_str().unwrap()]));

    let fifo = files.join("fifo.toml");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    for (file, expected) in [
        (fifo.as_path(), "not a regular file"),
        (Path::new("/dev/zero"), "not a regular file"),
    ] {
        let error = apply(file);
        assert!(error.contains(expected), "{}: {error}", file.display());
    }
    let linked = files.join("linked.toml");
    std::os::unix::fs::symlink(&secret, &linked).unwrap();
    let error = apply(&linked);
    assert!(error.contains("line 1"), "{error}");
    assert!(!error.contains("SECRET-HASH-LINE"), "{error}");

    std::os::unix::fs::symlink(&secret, files.join("password-link")).unwrap();
    nix::unistd::mkfifo(&files.join("password-fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
    for (password_file, expected) in [
        ("../shadow", "leads outside"),
        ("password-link", "leads outside"),
        ("password-fifo", "not a regular file"),
    ] {
        let file = files.join("cluster.toml");
        std::fs::write(
            &file,
            format!(
                "[cluster]\nname = \"prod\"\n\n[cluster.odb]\ntype = \"postgresql\"\nhost = \
                 \"127.0.0.1\"\nuser = \"zato\"\ndb_name = \"zato\"\npassword_file = \
                 \"{password_file}\"\n"
            ),
        )
        .unwrap();
        let error = apply(&file);
        assert!(error.contains(expected), "{password_file}: {error}");
        assert!(!error.contains("SECRET-HASH-LINE"), "{error}");
    }
    let clusters = coordinator.muster(&["-o", "json", "cluster", "list"]);
    assert_eq!(text(&clusters.stdout).trim(), "[]", "nothing was created");
}
