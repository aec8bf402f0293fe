//! The agent as a service: its join token, certificates and clock, silence and renewal, systemd's
//! notify protocol, and `validate`.

use super::*;

#[tokio::test]
async fn tokens_are_refused_for_the_reason_that_applies() {
    let scratch = tempfile::tempdir().unwrap();
    let coordinator = Coordinator::start(scratch.path(), None, &[]).await;
    coordinator.ok(&["create", "cluster", "prod"]);
    let enroll =
        |name: &str, token: &str| coordinator.enroll(&scratch.path().join(name), name, token);
    let once = coordinator.join_token("prod", &[], 1);
    let first = enroll("first", &once);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let reused = enroll("second", &once);
    assert!(!reused.status.success());
    assert!(
        text(&reused.stderr).contains("used as often as it allows"),
        "{}",
        text(&reused.stderr)
    );

    let revoked = coordinator.join_token("prod", &[], 1);
    let id = muster_proto::token::JoinToken::parse(&revoked).unwrap().id;
    coordinator.ok(&["token", "revoke", &id]);
    assert!(text(&enroll("third", &revoked).stderr).contains("it was revoked"));

    let expiring = coordinator.expired_join_token("prod").await;
    let expired = enroll("fourth", &expiring);
    assert!(
        text(&expired.stderr).contains("it has expired"),
        "{}",
        text(&expired.stderr)
    );

    let other = tempfile::tempdir().unwrap();
    let other_coordinator = Coordinator::start(other.path(), None, &[]).await;
    other_coordinator.ok(&["create", "cluster", "prod"]);
    let foreign = other_coordinator.join_token("prod", &[], 1);
    let refused = enroll("fifth", &foreign);
    assert!(
        text(&refused.stderr).contains("the token is for another coordinator"),
        "{}",
        text(&refused.stderr)
    );
    assert!(!scratch.path().join("fifth/host.id").exists());
    let hosts: Vec<_> = coordinator
        .json(&["host", "list"])
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(hosts, ["first"], "refused enrollments leave no host");
}

/// A coordinator certificate outside its validity by the agent's clock is what a host whose clock
/// is far off sees: the agent says so in words (the clock), at enrollment and while it runs, not
/// as "transport error". (The coordinator's certificate is made expired here; the agent cannot
/// tell that from its own clock being ahead.)
#[tokio::test]
async fn a_certificate_refused_for_its_dates_is_reported_as_a_clock_problem() {
    let scratch = tempfile::tempdir().unwrap();
    let (mut coordinator, agent) = cluster_with_agent(scratch.path(), &[]).await;
    let token = coordinator.join_token("prod", &[], 1);

    coordinator.kill();
    let layout = muster_coordinator::config::DataDir::new(&coordinator.data_dir);
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(layout.ca_key()).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(
        &std::fs::read_to_string(layout.ca_certificate()).unwrap(),
        ca_key,
    )
    .unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let expired = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(layout.server_certificate(), expired.pem()).unwrap();
    std::fs::write(layout.server_key(), key.serialize_pem()).unwrap();
    coordinator.restart().await;

    let clock = "by this host's clock";
    let enroll = coordinator.enroll(&scratch.path().join("second"), "second", &token);
    assert!(!enroll.status.success());
    let said = text(&enroll.stderr);
    assert!(
        said.contains("expired") && said.contains(clock) && said.contains("(NTP)"),
        "{said}"
    );
    wait_for("the running agent to say why", PATIENCE, POLL, || {
        let log = agent.log_text();
        async move { log.contains(clock).then_some(()) }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn silent_hosts_are_marked_down_and_certificates_renew() {
    let scratch = tempfile::tempdir().unwrap();
    let (coordinator, mut agent) = cluster_with_agent(
        scratch.path(),
        &["--heartbeat-ttl", "3s", "--host-certificate-ttl", "6s"],
    )
    .await;
    let certificate = agent.state_dir.join("host.pem");
    let original = std::fs::read_to_string(&certificate).unwrap();
    wait_for(
        "the host certificate to be renewed",
        PATIENCE,
        Duration::from_millis(200),
        || {
            let renewed = std::fs::read_to_string(&certificate)
                .ok()
                .filter(|current| *current != original);
            async move { renewed }
        },
    )
    .await
    .unwrap();
    assert!(agent.log_text().contains("host certificate renewed"));
    // The renewed certificate works: the host keeps reporting.
    let before = coordinator.json(&["host", "show", "app-1"])["last_seen"].clone();
    wait_for(
        "a report with the renewed certificate",
        PATIENCE,
        Duration::from_millis(200),
        || {
            let fresh = coordinator.json(&["host", "show", "app-1"])["last_seen"] != before;
            async move { fresh.then_some(()) }
        },
    )
    .await
    .unwrap();

    agent.kill();
    wait_for(
        "app-1 to be marked down",
        PATIENCE,
        Duration::from_millis(200),
        || {
            let state = coordinator.json(&["host", "show", "app-1"])["state"].clone();
            async move { (state == "down").then_some(()) }
        },
    )
    .await
    .unwrap();
    agent.start();
    wait_for(
        "app-1 to be up again",
        PATIENCE,
        Duration::from_millis(200),
        || {
            let state = coordinator.json(&["host", "show", "app-1"])["state"].clone();
            async move { (state == "up").then_some(()) }
        },
    )
    .await
    .unwrap();
    let kinds: Vec<String> = coordinator
        .json(&["events"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["host"] == "app-1")
        .map(|event| event["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        &kinds[..3],
        ["host.up", "host.down", "host.up"],
        "{kinds:?}"
    );
}

#[tokio::test]
async fn the_agent_speaks_the_systemd_notify_protocol() {
    let scratch = tempfile::tempdir().unwrap();
    let coordinator = Coordinator::start(scratch.path(), None, &[]).await;
    coordinator.ok(&["create", "cluster", "prod"]);
    let token = coordinator.join_token("prod", &[], 1);
    let mut agent = Agent::configure(scratch.path(), &coordinator, "app-1", &token);
    let socket_path = scratch.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    agent.env("NOTIFY_SOCKET", socket_path.to_str().unwrap());
    agent.start_with_watchdog(Duration::from_secs(1));
    let mut seen = String::new();
    let mut buffer = [0u8; 4096];
    while !(seen.contains("READY=1")
        && seen.contains("STATUS=")
        && seen.matches("WATCHDOG=1").count() >= 2)
    {
        let count = socket
            .recv(&mut buffer)
            .expect("a notification within 30 s");
        seen.push_str(&String::from_utf8_lossy(&buffer[..count]));
        seen.push('\n');
    }
    assert!(agent.stop().unwrap().success());
    let mut stopping = false;
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    while let Ok(count) = socket.recv(&mut buffer) {
        stopping |= String::from_utf8_lossy(&buffer[..count]).contains("STOPPING=1");
    }
    assert!(stopping, "the agent says STOPPING=1 on SIGTERM");
}

/// `validate` names a bad key, and resolves the advertised address as the agent will at start, on
/// a test host whose `/etc/hosts` names only itself (so no lookup leaves it).
#[test]
fn validate_names_a_bad_key_and_an_address_that_does_not_resolve() {
    let scratch = tempfile::tempdir().unwrap();
    let mut network = Network::create();
    let host = network.add_host("app-1");
    let config = scratch.path().join("agent.toml");
    let validate = |text: &str| {
        std::fs::write(&config, text).unwrap();
        let output = host
            .command(&workspace_binary("muster-agent"))
            .args(["validate", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        (output.status.success(), text_of(&output))
    };
    let base = "coordinator = \"https://coord:17300\"\nhost_name = \"app-1\"\n";
    let (valid, output) = validate(&format!("{base}zato = \"/usr/bin/zato\"\n"));
    assert!(
        !valid && output.contains("unknown field `zato`"),
        "{output}"
    );
    // The default advertised address is the host name, which this host resolves.
    let (valid, output) = validate(&format!("{base}zato_bin = \"/usr/bin/zato\"\n"));
    assert!(valid, "{output}");
    let (valid, output) = validate(&format!("{base}advertise_address = \"nowhere\"\n"));
    assert!(
        !valid
            && output.contains(
                "advertise_address = \"nowhere\": this name does not resolve on this host"
            ),
        "{output}"
    );
    let (valid, output) = validate(&format!("{base}advertise_address = \"localhost\"\n"));
    assert!(
        !valid
            && output
                .contains("this name resolves only to 127.0.0.1, which other hosts cannot reach"),
        "{output}"
    );
    drop(network);
}

/// An agent whose clock is off (Debian's `faketime` under it) against a real coordinator: a few
/// minutes off, it enrolls and says by how much; off by more than the coordinator's certificate
/// allows (it is dated an hour back and lasts years), behind or ahead, it is refused and says that
/// its clock is the likely cause.
#[tokio::test]
async fn an_agent_whose_clock_is_off_enrolls_within_the_margin_and_says_why_beyond_it() {
    let scratch = tempfile::tempdir().unwrap();
    let coordinator = Coordinator::start(scratch.path(), None, &[]).await;
    coordinator.ok(&["create", "cluster", "prod"]);
    for (offset, enrolls, said) in [
        ("+30m", true, "ahead of the coordinator's"),
        ("-10m", true, "behind the coordinator's"),
        ("-3h", false, "not valid yet"),
        ("+12y", false, "expired"),
    ] {
        let token = coordinator.join_token("prod", &[], 1);
        let name = format!("skewed{}", offset.replace(['+', '-'], "_"));
        let output = std::process::Command::new("faketime")
            .args(["-f", offset])
            .arg(workspace_binary("muster-agent"))
            .args([
                "enroll",
                "--coordinator",
                &coordinator.url(),
                "--token",
                &token,
            ])
            .args(["--host-name", &name, "--advertise-address", "127.0.0.1"])
            .arg("--state-dir")
            .arg(scratch.path().join(&name))
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .output()
            .expect("faketime (.ci/setup installs it)");
        let stderr = text(&output.stderr);
        assert_eq!(output.status.success(), enrolls, "{offset}: {stderr}");
        assert!(stderr.contains(said), "{offset}: {stderr}");
        if !enrolls {
            assert!(
                stderr.contains("by this host's clock") && stderr.contains("(NTP)"),
                "{offset}: {stderr}"
            );
        }
    }
}

/// The coordinator enrolls at most `MAX_CONCURRENT_ENROLLMENTS` hosts at once: with its database
/// held (a lock on its `hosts` table, as a slow database would), that many enrollments wait
/// inside it, the next is answered UNAVAILABLE with a retry hint at once, and agents that meet
/// the refusal back off and enroll when the database is back.
#[tokio::test]
async fn enrollments_beyond_the_limit_are_told_to_retry_and_agents_recover() {
    use muster_coordinator::agent_api::MAX_CONCURRENT_ENROLLMENTS;
    use sqlx::{Connection as _, Executor as _};
    let database = muster_testkit::TestDatabase::create(muster_testkit::Backend::Postgres).await;
    let scratch = tempfile::tempdir().unwrap();
    let coordinator = Coordinator::start(scratch.path(), Some(&database.url), &[]).await;
    coordinator.ok(&["create", "cluster", "prod"]);
    let token = coordinator.join_token("prod", &[], 0);

    let mut lock = sqlx::PgConnection::connect(&database.url).await.unwrap();
    lock.execute("BEGIN").await.unwrap();
    lock.execute("LOCK TABLE hosts IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    // Enrollments one after another: each waits inside the coordinator (on the lock, or for a
    // database connection) and holds its place, until one is refused at once.
    let enroll = |name: &str| {
        muster_testkit::harness::command(&workspace_binary("muster-agent"))
            .args([
                "enroll",
                "--coordinator",
                &coordinator.url(),
                "--token",
                &token,
            ])
            .args(["--host-name", name, "--advertise-address", "127.0.0.1"])
            .arg("--state-dir")
            .arg(scratch.path().join(name))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    // As many as it takes at once, then one more every second until one is refused (those
    // before it may still be on their way in). Each waiting one gives up after 30 s: this is
    // done well within that.
    let mut waiting: Vec<std::process::Child> = (0..MAX_CONCURRENT_ENROLLMENTS)
        .map(|index| enroll(&format!("held-{index}")))
        .collect();
    let mut refused = None;
    for index in 0..10 {
        let mut probe = enroll(&format!("probe-{index}"));
        let answered = wait_for("an answer", Duration::from_secs(1), POLL, || {
            let status = probe.try_wait().unwrap();
            async move { status }
        })
        .await;
        if answered.is_ok() {
            refused = Some(probe.wait_with_output().unwrap());
            break;
        }
        waiting.push(probe);
    }
    let refused = refused.expect("an enrollment beyond the limit is refused");
    assert!(waiting.len() >= MAX_CONCURRENT_ENROLLMENTS);
    assert!(!refused.status.success());
    let said = text(&refused.stderr);
    assert!(
        said.contains("too many enrollments at once") && said.contains("retry after 1s"),
        "{said}"
    );
    // An agent that starts now meets the same refusal and backs off.
    let mut agent = Agent::configure(scratch.path(), &coordinator, "patient", &token);
    agent.start();
    wait_for("the agent to back off", PATIENCE, POLL, || {
        let log = agent.log_text();
        async move {
            log.contains("the coordinator cannot enroll now; retrying after its hint")
                .then_some(())
        }
    })
    .await
    .unwrap();

    // The database is back: every waiting enrollment finishes and the agent enrolls.
    lock.execute("ROLLBACK").await.unwrap();
    // Each one-shot enrollment either waited its turn and enrolled, or arrived when the places
    // were taken and was told to retry.
    let mut enrolled = 0;
    for child in waiting {
        let output = child.wait_with_output().unwrap();
        let said = text(&output.stderr);
        if output.status.success() {
            enrolled += 1;
        } else {
            assert!(said.contains("too many enrollments at once"), "{said}");
        }
    }
    assert!(enrolled > 0);
    wait_for("the patient agent to report", PATIENCE, POLL, || {
        let hosts = coordinator.json(&["host", "list"]);
        let up = hosts.as_array().is_some_and(|hosts| {
            hosts
                .iter()
                .any(|host| host["name"] == "patient" && host["state"] == "up")
        });
        async move { up.then_some(()) }
    })
    .await
    .unwrap();
    let hosts = coordinator.json(&["host", "list"]);
    assert_eq!(hosts.as_array().unwrap().len(), enrolled + 1, "{hosts}");
}
