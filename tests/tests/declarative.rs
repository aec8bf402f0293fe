//! A cluster declared in a file, end to end on separate test hosts: `muster apply` of a five-host
//! cluster, `muster wait`, a change of the file (one server more, one removed, a load balancer
//! setting) shown with `--dry-run` before it is applied, `muster events --follow` capturing the
//! changes, the cluster written back by `muster get cluster`, and the coordinator's status page
//! rendered by a real headless browser (Chromium), its screenshot kept.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use muster_testkit::harness::{Agent, Coordinator, text};
use muster_testkit::netns::Network;
use muster_testkit::traffic;

/// The cluster file: the ODB an SQLite file every host sees, servers on `servers`, the scheduler
/// and web-admin on `admin`, the load balancer on `lb` checking every `check_inter`.
fn cluster_file(odb: &std::path::Path, servers: &[&str], check_inter: &str) -> String {
    let mut text = format!(
        "[cluster]\nname = \"prod\"\ndescription = \"declared\"\n\n[cluster.odb]\ntype = \"sqlite\"\n\
         db_name = \"{}\"\n",
        odb.display()
    );
    for host in servers {
        text.push_str(&format!("\n[[servers]]\nhost = \"{host}\"\n"));
    }
    text.push_str(&format!(
        "\n[scheduler]\nhost = \"admin\"\n\n[[web_admins]]\nhost = \"admin\"\n\n\
         [[load_balancers]]\nhost = \"lb\"\ncheck_inter = \"{check_inter}\"\n"
    ));
    text
}

/// Every line `muster … --follow` printed until `patience` passed without one.
fn lines_until_quiet(lines: &std::sync::mpsc::Receiver<String>, patience: Duration) -> Vec<String> {
    let mut seen = Vec::new();
    while let Ok(line) = lines.recv_timeout(patience) {
        seen.push(line);
    }
    seen
}

/// The SHA-256 of a PEM certificate's public key, base64: what Chromium's
/// `--ignore-certificate-errors-spki-list` pins, so the browser takes exactly the coordinator's
/// certificate (signed by Muster's own CA, which it does not know) and no other.
fn spki_sha256(pem: &[u8]) -> String {
    use base64::Engine as _;
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem).unwrap();
    let certificate = pem.parse_x509().unwrap();
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        certificate.tbs_certificate.subject_pki.raw,
    );
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// The coordinator's status page in headless Chromium on `host`, used as an operator would: the
/// page asks for the admin token, which is typed into its form; the DOM once its scripts have
/// read the coordinator, and a screenshot kept in the target directory. Then the browser is
/// closed (it writes its history and session files) and its profile searched for the token.
/// Another profile opens an address that carries a (made-up, badly escaped) token: the page
/// takes nothing from it, clears it from the address bar and says why.
fn status_page(
    coordinator: &Coordinator,
    host: &muster_testkit::netns::Host,
    scratch: &std::path::Path,
) -> (String, std::path::PathBuf) {
    use muster_testkit::browser::Browser;
    let token = std::fs::read_to_string(coordinator.data_dir.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let pin = spki_sha256(&std::fs::read(coordinator.data_dir.join("server.pem")).unwrap());
    let screenshot = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let patience = Duration::from_secs(30);

    let profile = scratch.join("chromium");
    let mut browser = Browser::open(host, &profile, &pin, &format!("{}/", coordinator.url()));
    browser.wait_until(
        "the page to ask for the token",
        "document.getElementById('login') && !document.getElementById('login').hidden",
        patience,
    );
    browser.evaluate(&format!(
        "document.getElementById('token').value = {}; \
         document.getElementById('login').requestSubmit(); true",
        serde_json::Value::from(token.clone())
    ));
    browser.wait_until(
        "the page to show the cluster",
        "document.body.innerText.includes('cluster prod:') \
         && document.body.innerText.includes('component.removed')",
        patience,
    );
    let dom = browser
        .evaluate("document.documentElement.outerHTML")
        .as_str()
        .unwrap()
        .to_owned();
    browser.screenshot(&screenshot);
    browser.close();
    let png = std::fs::read(&screenshot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a screenshot"
    );
    let secret = token.rsplit_once('.').unwrap().1;
    assert_eq!(
        Browser::profile_files_with(&profile, secret.as_bytes()),
        Vec::<std::path::PathBuf>::new(),
        "the admin token is in no file of the browser's profile (history, sessions, caches)"
    );
    assert!(
        !Browser::profile_files_with(&profile, coordinator.url().as_bytes()).is_empty(),
        "the profile was written: its history holds the page's address"
    );

    let mut addressed = Browser::open(
        host,
        &scratch.join("chromium-address"),
        &pin,
        &format!("{}/#token=muster-admin.made-up.%E0%A4%A", coordinator.url()),
    );
    addressed.wait_until(
        "the page to refuse the token in its address",
        "!document.getElementById('login').hidden && location.hash === '' \
         && document.getElementById('error').innerText.includes('not taken from the address')",
        patience,
    );
    addressed.close();
    (dom, screenshot)
}

#[tokio::test]
async fn a_cluster_file_is_applied_changed_with_a_dry_run_first_and_written_back() {
    let scratch = tempfile::tempdir().unwrap();
    let mut network = Network::create();
    let coord = network.add_host("coord");
    let coordinator = Coordinator::start_on(&coord, scratch.path(), None, &[]).await;
    let mut hosts = std::collections::BTreeMap::new();
    for name in ["admin", "lb", "app-1", "app-2", "app-3", "app-4", "client"] {
        hosts.insert(name, network.add_host(name));
    }
    let odb = scratch.path().join("odb.db");
    let first = scratch.path().join("prod.toml");
    std::fs::write(
        &first,
        cluster_file(&odb, &["app-1", "app-2", "app-3"], "2s"),
    )
    .unwrap();
    let first_path = first.to_str().unwrap();

    // The plan first: nothing changes.
    let plan = coordinator.ok(&["apply", "-f", first_path, "--dry-run"]);
    for line in [
        "+ cluster prod (ODB sqlite)",
        "+ server on app-1",
        "+ server on app-3",
        "+ scheduler on admin",
        "+ web-admin on admin",
        "+ load-balancer on lb",
        "would make 6 change(s) to cluster prod, which is created (dry run: nothing changed)",
    ] {
        assert!(plan.contains(line), "{line:?} not in:\n{plan}");
    }
    assert_eq!(
        coordinator.json(&["cluster", "list"]),
        serde_json::json!([])
    );

    // Applied before any host enrolled: the hosts join after, as cloud-init would start them.
    let applied = coordinator.ok(&["apply", "-f", first_path]);
    assert!(
        applied.contains("created cluster prod")
            && applied.contains("created server server3 on app-3 port 17010"),
        "{applied}"
    );
    let token = coordinator.join_token("prod", &[], 6);
    let mut agents = Vec::new();
    for name in ["admin", "lb", "app-1", "app-2", "app-3", "app-4"] {
        let mut agent =
            Agent::configure_on_by_name(&hosts[name], scratch.path(), &coordinator, &token);
        agent.start();
        agents.push(agent);
    }
    let started = Instant::now();
    let waited = coordinator.muster(&["wait", "--cluster", "prod", "--timeout", "90s"]);
    assert!(
        waited.status.success(),
        "{}\n{}",
        text(&waited.stderr),
        coordinator.ok(&["status"])
    );
    println!(
        "figure: the declared five-host cluster converged {:?} after its agents started",
        started.elapsed()
    );

    // The change: app-4's server replaces app-3's, the load balancer checks every second.
    let (mut events, event_lines) = coordinator.follow(&[
        "events",
        "--follow",
        "--cluster",
        "prod",
        "--limit",
        "1",
        "-o",
        "json",
    ]);
    let second = scratch.path().join("prod-2.toml");
    std::fs::write(
        &second,
        cluster_file(&odb, &["app-1", "app-2", "app-4"], "1s"),
    )
    .unwrap();
    let second_path = second.to_str().unwrap();
    let before = coordinator.json(&["component", "list", "--cluster", "prod"]);
    let plan = coordinator.ok(&["apply", "-f", second_path, "--dry-run"]);
    println!("muster apply -f prod-2.toml --dry-run:\n{plan}");
    for line in [
        "= cluster prod",
        "= server server1 on app-1 port 17010",
        "+ server on app-4",
        "- server server3 on app-3 port 17010",
        "~ load-balancer load-balancer on lb: check-inter 2000ms → 1000ms",
        "would make 3 change(s) to cluster prod (dry run: nothing changed)",
    ] {
        assert!(plan.contains(line), "{line:?} not in:\n{plan}");
    }
    let after_dry_run = coordinator.json(&["component", "list", "--cluster", "prod"]);
    let names = |list: &serde_json::Value| -> BTreeSet<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|component| format!("{} {}", component["name"], component["host"]))
            .collect()
    };
    assert_eq!(
        names(&after_dry_run),
        names(&before),
        "a dry run changes nothing"
    );

    let applied = coordinator.ok(&["apply", "-f", second_path]);
    assert!(
        applied.contains("created server server4 on app-4 port 17010")
            && applied.contains("configured load-balancer load-balancer on lb")
            && applied.contains("removed server server3 from app-3"),
        "{applied}"
    );
    let waited = coordinator.muster(&["wait", "--cluster", "prod", "--timeout", "90s"]);
    assert!(waited.status.success(), "{}", text(&waited.stderr));
    let client = hosts["client"].namespace.clone();
    let frontend = SocketAddr::from((hosts["lb"].address, 11223));
    let reached: BTreeSet<String> = (0..6)
        .filter_map(|_| traffic::get_from(&client, frontend, "/zato/ping"))
        .filter_map(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .filter_map(|pong| pong["server"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(
        reached,
        BTreeSet::from([
            "server1".to_owned(),
            "server2".to_owned(),
            "server4".to_owned()
        ])
    );

    // The status page, as an operator's browser shows it: the cluster healthy.
    let (dom, screenshot) = status_page(&coordinator, &hosts["client"], scratch.path());
    println!("the status page's screenshot: {}", screenshot.display());
    for shown in [
        "cluster prod: 6/6 healthy",
        "server4",
        "Backend of load-balancer load-balancer on lb",
        "component.removed",
    ] {
        assert!(dom.contains(shown), "{shown:?} not on the page:\n{dom}");
    }

    // The followed log has the three changes, in the order they were made.
    let followed: Vec<String> = lines_until_quiet(&event_lines, Duration::from_secs(3))
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| {
            event["kind"].as_str().is_some_and(|kind| {
                [
                    "component.assigned",
                    "component.configured",
                    "component.removed",
                ]
                .contains(&kind)
            })
        })
        .map(|event| event["message"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(followed.len(), 3, "{followed:?}");
    assert!(
        followed[0].starts_with("server server4 assigned to host app-4"),
        "{followed:?}"
    );
    assert!(followed[2].starts_with("server server3"), "{followed:?}");
    events.kill().unwrap();
    events.wait().unwrap();

    // Applied again: nothing to do. Written back: a file that applies as no change.
    let again = coordinator.ok(&["apply", "-f", second_path]);
    assert_eq!(
        again.trim().lines().last(),
        Some("cluster prod is as the file describes it; unchanged")
    );
    let written = coordinator.ok(&["get", "cluster", "prod"]);
    println!("muster get cluster prod:\n{written}");
    assert!(
        written.contains("[[servers]]\nhost = \"app-4\"\nname = \"server4\""),
        "{written}"
    );
    let round_trip = scratch.path().join("written.toml");
    std::fs::write(&round_trip, &written).unwrap();
    let plan = coordinator.ok(&["apply", "-f", round_trip.to_str().unwrap(), "--dry-run"]);
    assert!(
        plan.contains("would make 0 change(s) to cluster prod"),
        "{plan}"
    );

    // Server settings in the file: planned, rolled out to the servers, written back.
    let third = scratch.path().join("prod-3.toml");
    std::fs::write(
        &third,
        cluster_file(&odb, &["app-1", "app-2", "app-4"], "1s")
            + "\n[server_settings.main]\ngunicorn_workers = 2\n\n[server_settings.env]\n\
               APP_MODE = \"blue\"\n\n[rollout]\nmax_unavailable = 2\nhealthy_deadline = \"2m\"\n\
               min_healthy_time = \"5s\"\nauto_revert = true\n",
    )
    .unwrap();
    let third_path = third.to_str().unwrap();
    let plan = coordinator.ok(&["apply", "-f", third_path, "--dry-run"]);
    assert!(
        plan.contains(
            "~ server settings: env.APP_MODE=blue, main.gunicorn_workers=2 (the servers restart \
             up to 2 at a time)"
        ) && plan.contains(
            "~ rollout strategy: max_unavailable 1, healthy_deadline 5m, min_healthy_time 0s, \
             auto_revert off -> max_unavailable 2, healthy_deadline 2m, min_healthy_time 5s, \
             auto_revert on"
        ) && plan.contains("would make 2 change(s) to cluster prod"),
        "{plan}"
    );
    let applied = coordinator.ok(&["apply", "-f", third_path]);
    assert!(
        applied.contains(
            "set server settings (2); servers server1, server2, server4 restart up to 2 at a time"
        ),
        "{applied}"
    );
    let waited = coordinator.muster(&["wait", "--cluster", "prod", "--timeout", "90s"]);
    assert!(waited.status.success(), "{}", text(&waited.stderr));
    let written = coordinator.ok(&["get", "cluster", "prod"]);
    assert!(
        written.contains("[server_settings.main]\ngunicorn_workers = \"2\"")
            && written.contains("[server_settings.env]\nAPP_MODE = \"blue\"")
            && written.contains(
                "[rollout]\nmax_unavailable = 2\nhealthy_deadline = \"2m\"\nmin_healthy_time = \
                 \"5s\"\nauto_revert = true\n"
            ),
        "{written}"
    );
    std::fs::write(&round_trip, &written).unwrap();
    let plan = coordinator.ok(&["apply", "-f", round_trip.to_str().unwrap(), "--dry-run"]);
    assert!(
        plan.contains("= server settings (2)")
            && plan.contains(
                "= rollout strategy (max_unavailable 2, healthy_deadline 2m, min_healthy_time 5s, \
                 auto_revert on)"
            )
            && plan.contains("would make 0 change(s) to cluster prod"),
        "{plan}"
    );
    drop(agents);
}
