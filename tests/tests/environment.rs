//! A cluster's services (its users' Python modules) delivered from the cluster file and `muster
//! deploy`, end to end on separate test hosts with mock-zato (whose deployment behaves as Zato
//! 3.2's, `tests/src/bin/mock-zato/deploy.rs`; `real_zato.rs` runs the same against the real
//! Zato): refused before anything changes when the files are not Python modules; every server
//! runs the revision and says so; a module that does not import is reported with Python's line
//! while the version before keeps serving (and its file is restored); a server added later gets
//! the revision.

use std::path::Path;
use std::time::Duration;

use muster_testkit::harness::{Agent, Coordinator, text};
use muster_testkit::netns::Network;
use muster_testkit::wait_for;

const PATIENCE: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(200);

/// The value of the configuration's placeholder: a secret.
const PASSWORD: &str = "Orders-Pa55word";

/// An enmasse file: a basic-auth definition whose password is the env value `ORDERS_PASSWORD`,
/// and a REST channel of service `orders.get` behind it.
const API: &str = "security:\n  - name: orders.basic\n    type: basic_auth\n    username: orders\n    \
                   password: \"{Zato_Enmasse_Env.ORDERS_PASSWORD}\"\n    realm: orders\n\n\
                   channel_rest:\n  - name: orders.get\n    service: orders.get\n    \
                   url_path: /api/orders\n    security: orders.basic\n    data_format: json\n";

/// What the mock's `zato enmasse` kept of each import, in the cluster's SQLite ODB.
async fn imported_objects(odb: &Path) -> Vec<String> {
    use sqlx::{Connection as _, Row as _};
    let mut connection =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", odb.display()))
            .await
            .unwrap();
    sqlx::query("SELECT content FROM mock_enmasse_import")
        .fetch_all(&mut connection)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// The names in Zato's table `table` (`http_soap`, `sec_base`, `job`) of the cluster's SQLite
/// ODB, where enmasse's objects are.
async fn odb_names(odb: &Path, table: &str) -> Vec<String> {
    use sqlx::{Connection as _, Row as _};
    let mut connection =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", odb.display()))
            .await
            .unwrap();
    sqlx::query(&format!("SELECT name FROM {table} ORDER BY name"))
        .fetch_all(&mut connection)
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// The services of the cluster that some server deployed, by name, from its SQLite ODB.
async fn deployed_services(odb: &Path) -> Vec<String> {
    use sqlx::{Connection as _, Row as _};
    let mut connection =
        sqlx::SqliteConnection::connect(&format!("sqlite://{}?mode=ro", odb.display()))
            .await
            .unwrap();
    sqlx::query(
        "SELECT DISTINCT v.name FROM service v JOIN deployed_service d ON d.service_id = v.id \
         ORDER BY v.name",
    )
    .fetch_all(&mut connection)
    .await
    .unwrap()
    .iter()
    .map(|row| row.get(0))
    .collect()
}

/// Every file under `directory` that holds `needle`, but SQLite databases (Zato's ODB, the
/// coordinator's, which holds it sealed) and the agents' ledgers (their hosts' secrets, 0600).
fn files_holding(directory: &Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![directory.to_owned()];
    while let Some(path) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            // A link (Zato's `config/repo/user-conf`) is not a second copy.
            if path.is_symlink() {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            let name = path.to_string_lossy();
            if name.ends_with(".db") || name.contains(".db-") || name.ends_with("desired-state.pb")
            {
                continue;
            }
            if std::fs::read(&path)
                .is_ok_and(|bytes| String::from_utf8_lossy(&bytes).contains(needle))
            {
                found.push(path);
            }
        }
    }
    found
}

/// A module of one service that answers `version`.
fn module(version: &str) -> String {
    format!(
        "from zato.server.service import Service\n\nclass Orders(Service):\n    name = 'orders.get'\n\n    \
         def handle(self):\n        self.response.payload = {{'version': '{version}'}}\n"
    )
}

fn cluster_file(odb: &Path, servers: &[&str]) -> String {
    let mut text = format!(
        "[cluster]\nname = \"prod\"\n\n[cluster.odb]\ntype = \"sqlite\"\ndb_name = \"{}\"\n",
        odb.display()
    );
    for host in servers {
        text.push_str(&format!("\n[[servers]]\nhost = \"{host}\"\n"));
    }
    text.push_str("\n[services]\npaths = [\"services\"]\n");
    text
}

/// Each server of cluster `cluster` as `row` reads it from `muster component list`, once `check`
/// holds for all of them.
async fn server_rows_when<T>(
    coordinator: &Coordinator,
    cluster: &str,
    what: &str,
    row: impl Fn(&serde_json::Value) -> T,
    check: impl Fn(&[T]) -> bool,
) -> Vec<T> {
    wait_for(what, PATIENCE, POLL, || {
        let servers: Vec<T> = coordinator
            .json(&["component", "list", "--cluster", cluster])
            .as_array()
            .unwrap()
            .iter()
            .filter(|component| component["role"] == "server")
            .map(&row)
            .collect();
        let done = check(&servers);
        async move { done.then_some(servers) }
    })
    .await
    .unwrap()
}

/// A text field of a component as `muster component list -o json` shows it (empty when absent).
fn field(component: &serde_json::Value, name: &str) -> String {
    component[name].as_str().unwrap_or_default().to_owned()
}

/// Each server's (name, services revision, reason), once `check` holds for all of them.
async fn servers_when(
    coordinator: &Coordinator,
    what: &str,
    check: impl Fn(&[(String, String, String)]) -> bool,
) -> Vec<(String, String, String)> {
    let row = |component: &serde_json::Value| {
        (
            field(component, "name"),
            field(component, "services_revision"),
            field(component, "reason"),
        )
    };
    server_rows_when(coordinator, "prod", what, row, check).await
}

#[tokio::test]
async fn services_reach_every_server_the_configuration_is_imported_once_and_a_broken_module_keeps_the_old_one_serving()
 {
    let scratch = tempfile::tempdir().unwrap();
    let mut network = Network::create();
    let coord = network.add_host("coord");
    let coordinator = Coordinator::start_on(&coord, scratch.path(), None, &[]).await;
    let hosts: Vec<_> = ["app-1", "app-2", "app-3"]
        .into_iter()
        .map(|name| network.add_host(name))
        .collect();
    let odb = scratch.path().join("odb.db");
    let file = scratch.path().join("prod.toml");
    let services = scratch.path().join("services");
    std::fs::create_dir(&services).unwrap();
    std::fs::write(services.join("orders.py"), module("v1")).unwrap();
    std::fs::write(services.join("notes.txt"), "not Python").unwrap();
    std::fs::write(&file, cluster_file(&odb, &["app-1", "app-2"])).unwrap();
    let path = file.to_str().unwrap();

    // A file that is not a Python module is refused, named, before anything changes.
    let refused = coordinator.muster(&["apply", "-f", path]);
    assert!(!refused.status.success());
    let error = text(&refused.stderr);
    assert!(
        error.contains("notes.txt") && error.contains("not a Python module"),
        "{error}"
    );
    assert_eq!(
        coordinator.json(&["cluster", "list"]),
        serde_json::json!([])
    );
    std::fs::remove_file(services.join("notes.txt")).unwrap();

    let plan = coordinator.ok(&["apply", "-f", path, "--dry-run"]);
    assert!(
        plan.contains("+ services ") && plan.contains("(1 file(s): orders.py)"),
        "{plan}"
    );
    coordinator.ok(&["apply", "-f", path]);
    let token = coordinator.join_token("prod", &[], 3);
    let mut agents = Vec::new();
    for host in &hosts[..2] {
        let mut agent = Agent::configure_on_by_name(host, scratch.path(), &coordinator, &token);
        agent.start();
        agents.push(agent);
    }
    let first = coordinator.json(&["cluster", "show", "prod"])["services_revision"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(first.len(), 64, "a SHA-256");
    servers_when(
        &coordinator,
        "both servers to run the services",
        |servers| servers.len() == 2 && servers.iter().all(|(_, revision, _)| *revision == first),
    )
    .await;
    let unchanged = coordinator.ok(&["apply", "-f", path]);
    assert!(unchanged.contains("unchanged"), "{unchanged}");

    // The configuration: a placeholder without a value is refused, named, before anything
    // changes; with the value, one server's agent imports it once, the value filled in by
    // enmasse from a file, in no log of Muster's or Zato's.
    let config = scratch.path().join("config");
    std::fs::create_dir(&config).unwrap();
    std::fs::write(config.join("api.yaml"), API).unwrap();
    std::fs::write(config.join("env.ini"), "[env]\nOTHER=1\n").unwrap();
    let with_config = format!(
        "{}\n[config]\nfiles = [\"config/api.yaml\"]\nenv_file = \"config/env.ini\"\n",
        cluster_file(&odb, &["app-1", "app-2"])
    );
    std::fs::write(&file, &with_config).unwrap();
    let refused = coordinator.muster(&["apply", "-f", path]);
    assert!(!refused.status.success());
    let error = text(&refused.stderr);
    assert!(
        error.contains("{Zato_Enmasse_Env.ORDERS_PASSWORD}, which has no value"),
        "{error}"
    );
    assert_eq!(
        coordinator.json(&["cluster", "show", "prod"])["config_revision"],
        "",
        "nothing changed"
    );
    std::fs::write(
        config.join("env.ini"),
        format!("[env]\nORDERS_PASSWORD={PASSWORD}\n"),
    )
    .unwrap();
    coordinator.ok(&["apply", "-f", path]);
    let config_revision = coordinator.json(&["cluster", "show", "prod"])["config_revision"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(config_revision.len(), 64);
    wait_for(
        "server1 to import the configuration",
        PATIENCE,
        POLL,
        || {
            let imported = coordinator
                .json(&["component", "list", "--cluster", "prod"])
                .as_array()
                .unwrap()
                .iter()
                .any(|component| {
                    component["name"] == "server1"
                        && component["config_revision"] == config_revision
                });
            async move { imported.then_some(()) }
        },
    )
    .await
    .unwrap();
    let imported = imported_objects(&odb).await;
    assert_eq!(imported.len(), 1, "imported once: {imported:?}");
    assert!(
        imported[0].contains(&format!("password: \"{PASSWORD}\"")),
        "{imported:?}"
    );
    let shown = coordinator.ok(&["cluster", "show", "prod"]);
    assert!(
        shown.contains("env values: ORDERS_PASSWORD") && !shown.contains(PASSWORD),
        "{shown}"
    );
    assert_eq!(
        files_holding(scratch.path(), PASSWORD),
        [config.join("env.ini")],
        "the value is only where the operator put it (and, sealed, in the coordinator)"
    );
    assert_eq!(odb_names(&odb, "http_soap").await, ["orders.get"]);

    // An object that leaves the files leaves the cluster (enmasse itself never deletes): the
    // channel renamed, the old one is deleted through Zato; the security definition the files
    // still hold stays. A file that is not YAML is refused, named by line, before anything.
    std::fs::write(config.join("api.yaml"), format!("{API}  - name: [\n")).unwrap();
    let refused = coordinator.muster(&["apply", "-f", path]);
    assert!(!refused.status.success());
    let error = text(&refused.stderr);
    assert!(
        error.contains("\"api.yaml\" is not what enmasse reads: YAML:") && error.contains("line"),
        "{error}"
    );
    std::fs::write(
        config.join("api.yaml"),
        API.replace("name: orders.get", "name: orders.list"),
    )
    .unwrap();
    coordinator.ok(&["apply", "-f", path]);
    wait_for(
        "the renamed channel to replace the old one",
        PATIENCE,
        POLL,
        || {
            let odb = odb.clone();
            async move { (odb_names(&odb, "http_soap").await == ["orders.list"]).then_some(()) }
        },
    )
    .await
    .unwrap();
    assert_eq!(odb_names(&odb, "sec_base").await, ["orders.basic"]);

    // A module that does not import: reported with Python's line on each server; the revision
    // deployed before keeps serving, and Zato's copy of the module is the good one again.
    std::fs::write(
        services.join("orders.py"),
        module("v2").replace("def handle(self):", "def handle(self)"),
    )
    .unwrap();
    coordinator.ok(&["apply", "-f", path]);
    let servers = servers_when(&coordinator, "the import error to be reported", |servers| {
        servers.iter().any(|(_, _, reason)| !reason.is_empty())
    })
    .await;
    let (_, revision, reason) = servers
        .iter()
        .find(|(_, _, reason)| !reason.is_empty())
        .unwrap();
    assert!(
        reason.contains("orders.py did not deploy: line 6: SyntaxError: expected ':'")
            && reason.contains("the version deployed before keeps serving"),
        "{reason}"
    );
    assert_eq!(*revision, first, "it still runs the revision before");
    let kept = agents[0]
        .components_dir
        .join("prod/server-server1/work/hot-deploy/current/orders.py");
    wait_for("the good module to be restored", PATIENCE, POLL, || {
        let restored = std::fs::read_to_string(&kept).unwrap_or_default() == module("v1");
        async move { restored.then_some(()) }
    })
    .await
    .unwrap();

    // Fixed, through the pipelines' command: every server runs it, the error is gone.
    std::fs::write(services.join("orders.py"), module("v2")).unwrap();
    let deployed = coordinator.json(&["deploy", "--cluster", "prod", services.to_str().unwrap()]);
    assert_eq!(deployed["changed"], true);
    let second = deployed["revision"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    servers_when(&coordinator, "both servers to run the fix", |servers| {
        servers
            .iter()
            .all(|(_, revision, reason)| *revision == second && reason.is_empty())
    })
    .await;

    // A server added later runs it too.
    std::fs::write(&file, cluster_file(&odb, &["app-1", "app-2", "app-3"])).unwrap();
    coordinator.ok(&["apply", "-f", path]);
    let short = &second[..12];
    let status = coordinator.ok(&["status", "--cluster", "prod"]);
    assert!(
        status.contains(&format!(
            "services revision {short} on 2/3 servers; server3 runs none yet"
        )),
        "{status}"
    );
    let mut agent = Agent::configure_on_by_name(&hosts[2], scratch.path(), &coordinator, &token);
    agent.start();
    agents.push(agent);
    servers_when(
        &coordinator,
        "the new server to run the services",
        |servers| servers.len() == 3 && servers.iter().all(|(_, revision, _)| *revision == second),
    )
    .await;
    let status = coordinator.ok(&["status", "--cluster", "prod"]);
    assert!(
        status.contains(&format!("services revision {short} on 3/3 servers\n")),
        "{status}"
    );
    let events = coordinator.ok(&["events", "--cluster", "prod"]);
    assert!(
        events.contains("server server3 runs services revision"),
        "{events}"
    );
    // A module that leaves the files leaves the cluster: its services are deleted through Zato
    // (from the ODB and every server), the others stay.
    std::fs::write(
        services.join("extra.py"),
        module("x")
            .replace("orders.get", "extra.get")
            .replace("class Orders", "class Extra"),
    )
    .unwrap();
    let with_extra = coordinator.json(&["deploy", "--cluster", "prod", services.to_str().unwrap()])
        ["revision"]
        .as_str()
        .unwrap()
        .to_owned();
    servers_when(
        &coordinator,
        "every server to run the extra module",
        |servers| {
            servers
                .iter()
                .all(|(_, revision, _)| *revision == with_extra)
        },
    )
    .await;
    assert_eq!(
        deployed_services(&odb).await,
        ["extra.get", "orders.get"],
        "both modules' services"
    );
    std::fs::remove_file(services.join("extra.py")).unwrap();
    let without_extra =
        coordinator.json(&["deploy", "--cluster", "prod", services.to_str().unwrap()])["revision"]
            .as_str()
            .unwrap()
            .to_owned();
    assert_eq!(
        without_extra, second,
        "the same set as before: the same revision"
    );
    servers_when(&coordinator, "every server to run it without", |servers| {
        servers.iter().all(|(_, revision, _)| *revision == second)
    })
    .await;
    wait_for("the extra service to be removed", PATIENCE, POLL, || {
        let odb = odb.clone();
        async move { (deployed_services(&odb).await == ["orders.get"]).then_some(()) }
    })
    .await
    .unwrap();
    for agent in &agents {
        let current = std::fs::read_dir(agent.components_dir.join("prod"))
            .unwrap()
            .flatten()
            .find(|entry| entry.file_name().to_string_lossy().starts_with("server-"))
            .unwrap()
            .path()
            .join("work/hot-deploy/current");
        assert!(
            current.join("orders.py").exists() && !current.join("extra.py").exists(),
            "{}",
            current.display()
        );
    }

    let written = coordinator.ok(&["get", "cluster", "prod"]);
    assert!(
        written.contains("# Its services: revision") && written.contains("orders.py"),
        "{written}"
    );
    assert!(
        written.contains("# Its configuration: revision")
            && written.contains("env values ORDERS_PASSWORD")
            && !written.contains(PASSWORD),
        "{written}"
    );
}

/// A module of one service that needs the third-party package `inflection`.
const SHOP: &str = "import inflection\n\nfrom zato.server.service import Service\n\n\
                    class Shop(Service):\n    name = 'shop.status'\n\n    def handle(self):\n        \
                    self.response.payload = {'status': inflection.humanize('shipped_to_customer')}\n";

/// A wheel of a package called `name` at `version` (its module empty), written with the test's
/// Python into `directory`.
fn craft_wheel(directory: &Path, name: &str, version: &str) {
    let script = format!(
        "import zipfile\n\
         z = zipfile.ZipFile('{}/{name}-{version}-py3-none-any.whl', 'w')\n\
         z.writestr('{name}/__init__.py', '')\n\
         z.writestr('{name}-{version}.dist-info/METADATA', 'Metadata-Version: 2.1\\nName: {name}\\nVersion: {version}\\n')\n\
         z.writestr('{name}-{version}.dist-info/WHEEL', 'Wheel-Version: 1.0\\nGenerator: muster-test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n')\n\
         z.writestr('{name}-{version}.dist-info/RECORD', '')\n\
         z.close()\n",
        directory.display()
    );
    let made = std::process::Command::new(muster_testkit::harness::test_python())
        .arg("-c")
        .arg(script)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made.stderr));
}

/// Each server's (name, Python dependencies revision, services revision, reason), once `check`
/// holds for all of them.
async fn python_when(
    coordinator: &Coordinator,
    what: &str,
    check: impl Fn(&[(String, String, String, String)]) -> bool,
) -> Vec<(String, String, String, String)> {
    let row = |component: &serde_json::Value| {
        (
            field(component, "name"),
            field(component, "python_revision"),
            field(component, "services_revision"),
            field(component, "reason"),
        )
    };
    server_rows_when(coordinator, "shop", what, row, check).await
}

/// The directory of the cluster `shop`'s server on the host of `agent`.
fn shop_server_dir(agent: &Agent) -> std::path::PathBuf {
    std::fs::read_dir(agent.components_dir.join("shop"))
        .unwrap()
        .flatten()
        .find(|entry| entry.file_name().to_string_lossy().starts_with("server-"))
        .unwrap()
        .path()
}

/// Waits for every server of `shop` to report a Python dependencies revision that did not
/// install with a reason saying `says`, and checks that each runs on with revision `first`.
async fn python_refused_everywhere(coordinator: &Coordinator, first: &str, says: &str) {
    let servers = python_when(coordinator, says, |servers| {
        servers
            .iter()
            .all(|(_, _, _, reason)| reason.contains(says))
    })
    .await;
    for (name, python, _, reason) in &servers {
        assert_eq!(
            *python, first,
            "{name} runs with the revision it had: {reason}"
        );
    }
    let listed = coordinator.json(&["component", "list", "--cluster", "shop"]);
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .filter(|component| component["role"] == "server")
            .all(|component| component["state"] == "running"),
        "{listed}"
    );
}

#[tokio::test]
async fn python_dependencies_are_installed_beside_every_server_and_one_that_does_not_install_keeps_the_old_ones()
 {
    let scratch = tempfile::tempdir().unwrap();
    let mut network = Network::create();
    let coord = network.add_host("coord");
    let coordinator = Coordinator::start_on(&coord, scratch.path(), None, &[]).await;
    let hosts: Vec<_> = ["py-1", "py-2"]
        .into_iter()
        .map(|name| network.add_host(name))
        .collect();
    let odb = scratch.path().join("shop.db");
    let services = scratch.path().join("services");
    std::fs::create_dir(&services).unwrap();
    std::fs::write(services.join("shop.py"), SHOP).unwrap();
    let python = scratch.path().join("python");
    let wheelhouse = python.join("wheelhouse");
    std::fs::create_dir_all(&wheelhouse).unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/examples/python");
    std::fs::copy(
        example.join("wheelhouse/inflection-0.5.1-py2.py3-none-any.whl"),
        wheelhouse.join("inflection-0.5.1-py2.py3-none-any.whl"),
    )
    .unwrap();
    std::fs::copy(
        example.join("requirements.txt"),
        python.join("requirements.txt"),
    )
    .unwrap();
    let file = scratch.path().join("shop.toml");
    let without_python = format!(
        "[cluster]\nname = \"shop\"\n\n[cluster.odb]\ntype = \"sqlite\"\ndb_name = \"{}\"\n\n\
         [[servers]]\nhost = \"py-1\"\n\n[[servers]]\nhost = \"py-2\"\n\n\
         [services]\npaths = [\"services\"]\n",
        odb.display()
    );
    std::fs::write(&file, &without_python).unwrap();
    let path = file.to_str().unwrap();
    coordinator.ok(&["apply", "-f", path]);
    let token = coordinator.join_token("shop", &[], 2);
    let mut agents = Vec::new();
    for host in &hosts {
        let mut agent = Agent::configure_on_by_name(host, scratch.path(), &coordinator, &token);
        agent.start();
        agents.push(agent);
    }

    // Without its dependency the module does not import: Python's error, named.
    let servers = python_when(
        &coordinator,
        "the missing package to be reported",
        |servers| {
            servers.len() == 2
                && servers
                    .iter()
                    .any(|(_, _, _, reason)| reason.contains("ModuleNotFoundError"))
        },
    )
    .await;
    let reason = &servers
        .iter()
        .find(|(_, _, _, reason)| !reason.is_empty())
        .unwrap()
        .3;
    assert!(
        reason.contains(
            "shop.py did not deploy: line 1: ModuleNotFoundError: No module named 'inflection'"
        ),
        "{reason}"
    );

    // With [python]: installed beside each server from the wheelhouse, each server restarted to
    // load it (one at a time), then the module imports everywhere.
    let with_python = format!(
        "{without_python}\n[python]\nrequirements = \"python/requirements.txt\"\nwheelhouse = \"python/wheelhouse\"\n"
    );
    std::fs::write(&file, &with_python).unwrap();
    let plan = coordinator.ok(&["apply", "-f", path, "--dry-run"]);
    assert!(
        plan.contains("+ python ") && plan.contains("(1 requirement(s): inflection; 1 wheel(s))"),
        "{plan}"
    );
    coordinator.ok(&["apply", "-f", path]);
    let first = coordinator.json(&["cluster", "show", "shop"])["python_revision"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(first.len(), 64);
    let services_revision = coordinator.json(&["cluster", "show", "shop"])["services_revision"]
        .as_str()
        .unwrap()
        .to_owned();
    python_when(
        &coordinator,
        "both servers to run with it and the services",
        |servers| {
            servers.iter().all(|(_, python, services, reason)| {
                *python == first && *services == services_revision && reason.is_empty()
            })
        },
    )
    .await;
    for agent in &agents {
        let server = shop_server_dir(agent);
        assert!(
            server
                .join(format!("muster-python/{first}/inflection/__init__.py"))
                .exists(),
            "installed beside {}",
            server.display()
        );
    }
    let status = coordinator.ok(&["status", "--cluster", "shop"]);
    assert!(
        status.contains(&format!(
            "Python dependencies revision {} on 2/2 servers",
            &first[..12]
        )),
        "{status}"
    );
    let events = coordinator.ok(&["events", "--cluster", "shop"]);
    for server in ["server1", "server2"] {
        assert!(
            events.contains(&format!(
                "server {server} runs Python dependencies revision {}",
                &first[..12]
            )),
            "{events}"
        );
    }

    // A requirement the wheelhouse cannot meet, then one that would replace a package of
    // Zato's own environment: each reported, named, while the servers run on with the revision
    // they had.
    std::fs::write(python.join("requirements.txt"), "inflection==9.9\n").unwrap();
    coordinator.ok(&["apply", "-f", path]);
    python_refused_everywhere(&coordinator, &first, "did not install").await;
    python_refused_everywhere(&coordinator, &first, "inflection==9.9").await;
    craft_wheel(&wheelhouse, "pip", "0.0.1");
    std::fs::write(
        python.join("requirements.txt"),
        "inflection==0.5.1\npip==0.0.1\n",
    )
    .unwrap();
    coordinator.ok(&["apply", "-f", path]);
    python_refused_everywhere(
        &coordinator,
        &first,
        "the requirements bring pip 0.0.1, but Zato runs pip ",
    )
    .await;
}

/// A module of the cluster's services that imports its package `pricing`.
const CHECKOUT: &str = "from pricing.tax import rate\n\nfrom zato.server.service import Service\n\n\
                        class Checkout(Service):\n    name = 'checkout.total'\n\n    def handle(self):\n        \
                        self.response.payload = {'total': 100 * (1 + rate('NL'))}\n";

#[tokio::test]
async fn a_python_package_reaches_every_servers_import_path_and_one_that_does_not_import_is_reported()
 {
    let scratch = tempfile::tempdir().unwrap();
    let mut network = Network::create();
    let coord = network.add_host("coord");
    let coordinator = Coordinator::start_on(&coord, scratch.path(), None, &[]).await;
    let hosts: Vec<_> = ["pkg-1", "pkg-2"]
        .into_iter()
        .map(|name| network.add_host(name))
        .collect();
    let odb = scratch.path().join("shop.db");
    let services = scratch.path().join("services");
    std::fs::create_dir(&services).unwrap();
    std::fs::write(services.join("checkout.py"), CHECKOUT).unwrap();
    // The package: a directory with __init__.py, a sub-package, relative imports.
    let package = scratch.path().join("lib/pricing");
    std::fs::create_dir_all(package.join("rules")).unwrap();
    std::fs::write(package.join("__init__.py"), "").unwrap();
    std::fs::write(
        package.join("tax.py"),
        "from .rules import RATES\n\n\ndef rate(country):\n    return RATES[country]\n",
    )
    .unwrap();
    std::fs::write(package.join("rules/__init__.py"), "RATES = {'NL': 0.21}\n").unwrap();
    let file = scratch.path().join("shop.toml");
    let cluster = format!(
        "[cluster]\nname = \"shop\"\n\n[cluster.odb]\ntype = \"sqlite\"\ndb_name = \"{}\"\n\n\
         [[servers]]\nhost = \"pkg-1\"\n\n[[servers]]\nhost = \"pkg-2\"\n\n\
         [services]\npaths = [\"services\"]\n\n[python]\npackages = [\"lib/pricing\"]\n",
        odb.display()
    );
    std::fs::write(&file, &cluster).unwrap();
    let path = file.to_str().unwrap();

    // A package directory inside the services' directory is refused, pointing at [python];
    // a file in a package that is not a module likewise, named; nothing is created.
    std::fs::create_dir(services.join("helpers")).unwrap();
    let refused = coordinator.muster(&["apply", "-f", path]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("helpers: a directory inside a services directory")
            && text(&refused.stderr).contains("[python] packages"),
        "{}",
        text(&refused.stderr)
    );
    std::fs::remove_dir(services.join("helpers")).unwrap();
    std::fs::write(package.join("notes.txt"), "x").unwrap();
    let refused = coordinator.muster(&["apply", "-f", path]);
    assert!(
        text(&refused.stderr).contains("pricing/notes.txt: not a Python module"),
        "{}",
        text(&refused.stderr)
    );
    std::fs::remove_file(package.join("notes.txt")).unwrap();
    assert!(
        coordinator
            .json(&["cluster", "list"])
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing was created"
    );

    let plan = coordinator.ok(&["apply", "-f", path, "--dry-run"]);
    assert!(
        plan.contains("+ python ")
            && plan.contains("(0 requirement(s); 0 wheel(s); package(s): pricing)"),
        "{plan}"
    );
    coordinator.ok(&["apply", "-f", path]);
    let shown = coordinator.json(&["cluster", "show", "shop"]);
    let first = shown["python_revision"].as_str().unwrap().to_owned();
    let services_revision = shown["services_revision"].as_str().unwrap().to_owned();
    assert!(
        shown["python_packages"][0]
            .as_str()
            .unwrap()
            .starts_with("pricing-0+muster."),
        "{shown}"
    );
    let token = coordinator.join_token("shop", &[], 2);
    let mut agents = Vec::new();
    for host in &hosts {
        let mut agent = Agent::configure_on_by_name(host, scratch.path(), &coordinator, &token);
        agent.start();
        agents.push(agent);
    }
    // Installed beside every server, without an index or a wheelhouse; the module that imports
    // it deploys everywhere.
    python_when(
        &coordinator,
        "both servers to run with the package and the services",
        |servers| {
            servers.len() == 2
                && servers.iter().all(|(_, python, services, reason)| {
                    *python == first && *services == services_revision && reason.is_empty()
                })
        },
    )
    .await;
    for agent in &agents {
        let server = shop_server_dir(agent);
        assert_eq!(
            std::fs::read_to_string(server.join(format!("muster-python/{first}/pricing/tax.py")))
                .unwrap(),
            std::fs::read_to_string(package.join("tax.py")).unwrap(),
            "installed beside {}",
            server.display()
        );
    }

    // The same files are the same revision: applied again, or written back by `muster get
    // --dir` and applied from there, nothing changes (no server restarts).
    let plan = coordinator.ok(&["apply", "-f", path, "--dry-run"]);
    assert!(
        plan.contains(&format!("= python {}", &first[..12])),
        "{plan}"
    );
    let exported = scratch.path().join("exported");
    coordinator.ok(&[
        "get",
        "cluster",
        "shop",
        "--dir",
        exported.to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(exported.join("python/packages/pricing/rules/__init__.py"))
            .unwrap(),
        "RATES = {'NL': 0.21}\n"
    );
    let written = std::fs::read_to_string(exported.join("cluster.toml")).unwrap();
    assert!(
        written.contains("packages = [\"python/packages/pricing\"]")
            && !written.contains("requirements ="),
        "{written}"
    );
    let plan = coordinator.ok(&[
        "apply",
        "-f",
        exported.join("cluster.toml").to_str().unwrap(),
        "--dry-run",
    ]);
    assert!(
        plan.contains(&format!("= python {}", &first[..12])),
        "{plan}"
    );

    // A package that does not import (a syntax error in one of its modules) is reported with
    // Python's line, imported with Zato's Python before any server loads it; the servers run
    // on with the revision they had.
    std::fs::write(package.join("tax.py"), "def rate(country:\n    return 0\n").unwrap();
    coordinator.ok(&["apply", "-f", path]);
    python_refused_everywhere(
        &coordinator,
        &first,
        "package pricing does not import: pricing/tax.py, line 1: SyntaxError",
    )
    .await;
    // A package named like a module Python already has would hide it: refused, named.
    std::fs::write(
        package.join("tax.py"),
        "from .rules import RATES\n\n\ndef rate(country):\n    return RATES[country]\n",
    )
    .unwrap();
    let json = scratch.path().join("lib/json");
    std::fs::create_dir_all(&json).unwrap();
    std::fs::write(json.join("__init__.py"), "").unwrap();
    std::fs::write(
        &file,
        cluster.replace(
            "packages = [\"lib/pricing\"]",
            "packages = [\"lib/pricing\", \"lib/json\"]",
        ),
    )
    .unwrap();
    coordinator.ok(&["apply", "-f", path]);
    python_refused_everywhere(
        &coordinator,
        &first,
        "package json has the name of a module Zato's Python already has",
    )
    .await;
}

/// A user-config file's secret.
const CRM_PASSWORD: &str = "Crm-Pa55word";

/// What the server on `host` holds as `self.config.NAME` (mock-zato's stand-in for a service
/// reading it); `None` when it holds nothing there.
fn user_config(host: &muster_testkit::netns::Host, name: &str) -> Option<String> {
    let output = host
        .command(Path::new("curl"))
        .args([
            "-sf",
            "--max-time",
            "5",
            &format!("http://{}:17010/mock/user-config/{name}", host.address),
        ])
        .output()
        .unwrap();
    output.status.success().then(|| text(&output.stdout))
}

/// Each server's (name, user-config revision while it is healthy), once `check` holds for all of them.
async fn user_conf_when(
    coordinator: &Coordinator,
    what: &str,
    check: impl Fn(&[(String, String)]) -> bool,
) -> Vec<(String, String)> {
    let row = |component: &serde_json::Value| {
        // Until the server answers, its revision is only on disk.
        let revision = match component["healthy"] == true {
            true => field(component, "user_conf_revision"),
            false => String::new(),
        };
        (field(component, "name"), revision)
    };
    server_rows_when(coordinator, "prod", what, row, check).await
}

#[tokio::test]
async fn user_config_files_reach_every_server_live_and_at_start_and_stay_secret() {
    let scratch = tempfile::tempdir().unwrap();
    let mut network = Network::create();
    let coord = network.add_host("coord");
    let coordinator = Coordinator::start_on(&coord, scratch.path(), None, &[]).await;
    let hosts: Vec<_> = ["app-1", "app-2"]
        .into_iter()
        .map(|name| network.add_host(name))
        .collect();
    let odb = scratch.path().join("odb.db");
    let file = scratch.path().join("prod.toml");
    let conf = scratch.path().join("user-conf");
    std::fs::create_dir(&conf).unwrap();
    std::fs::create_dir(scratch.path().join("services")).unwrap();
    let partners =
        |address: &str| format!("[crm]\naddress = {address}\npassword = {CRM_PASSWORD}\n");
    std::fs::write(
        conf.join("partners.ini"),
        format!("[crm]\naddress = https://crm.example.com\npassword {CRM_PASSWORD}\n"),
    )
    .unwrap();
    let with_user_conf = |files: &str| {
        format!(
            "{}\n[user_conf]\nfiles = [{files}]\n",
            cluster_file(&odb, &["app-1", "app-2"])
        )
    };
    std::fs::write(&file, with_user_conf("\"user-conf/partners.ini\"")).unwrap();
    let path = file.to_str().unwrap();

    // A file Zato could not parse is refused, named by file and line, before anything changes,
    // and the refusal does not quote the line.
    let refused = coordinator.muster(&["apply", "-f", path]);
    assert!(!refused.status.success());
    let error = text(&refused.stderr);
    assert!(
        error.contains("partners.ini") && error.contains("line 3") && !error.contains(CRM_PASSWORD),
        "{error}"
    );
    assert_eq!(
        coordinator.json(&["cluster", "list"]),
        serde_json::json!([])
    );

    // Written before each server starts: both read it.
    std::fs::write(
        conf.join("partners.ini"),
        partners("https://crm.example.com"),
    )
    .unwrap();
    let plan = coordinator.ok(&["apply", "-f", path, "--dry-run"]);
    assert!(
        plan.contains("~ user_conf 1 file(s): partners.ini"),
        "{plan}"
    );
    coordinator.ok(&["apply", "-f", path]);
    let first = coordinator.json(&["cluster", "show", "prod"])["user_conf_revision"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(first.len(), 64);
    let token = coordinator.join_token("prod", &[], 2);
    let mut agents = Vec::new();
    for host in &hosts {
        let mut agent = Agent::configure_on_by_name(host, scratch.path(), &coordinator, &token);
        agent.start();
        agents.push(agent);
    }
    user_conf_when(&coordinator, "both servers to have the files", |servers| {
        servers.len() == 2 && servers.iter().all(|(_, revision)| *revision == first)
    })
    .await;
    for host in &hosts {
        assert_eq!(
            user_config(host, "partners").as_deref(),
            Some(partners("https://crm.example.com").as_str()),
            "{}",
            host.name
        );
    }
    let server_dir = |agent: &Agent| {
        std::fs::read_dir(agent.components_dir.join("prod"))
            .unwrap()
            .flatten()
            .find(|entry| entry.file_name().to_string_lossy().starts_with("server-"))
            .unwrap()
            .path()
    };
    let pid = |agent: &Agent| std::fs::read_to_string(server_dir(agent).join("pidfile")).unwrap();
    let pids: Vec<String> = agents.iter().map(pid).collect();
    for agent in &agents {
        use std::os::unix::fs::PermissionsExt as _;
        let written = server_dir(agent).join("pickup/incoming/user-conf/partners.ini");
        let mode = std::fs::metadata(&written).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", written.display());
    }

    // Changed, and a second file: loaded into the running servers, neither restarted.
    std::fs::write(
        conf.join("partners.ini"),
        partners("https://crm2.example.com"),
    )
    .unwrap();
    std::fs::write(conf.join("limits.conf"), "max_items = 20\n").unwrap();
    let deployed = coordinator.json(&[
        "deploy",
        "--cluster",
        "prod",
        "--user-conf",
        conf.join("partners.ini").to_str().unwrap(),
        conf.join("limits.conf").to_str().unwrap(),
    ]);
    assert_eq!(deployed["changed"], true);
    let second = deployed["revision"].as_str().unwrap().to_owned();
    user_conf_when(&coordinator, "both servers to load the change", |servers| {
        servers.iter().all(|(_, revision)| *revision == second)
    })
    .await;
    for host in &hosts {
        assert_eq!(
            user_config(host, "partners").as_deref(),
            Some(partners("https://crm2.example.com").as_str())
        );
        assert_eq!(
            user_config(host, "limits").as_deref(),
            Some("max_items = 20\n")
        );
    }
    assert_eq!(
        agents.iter().map(pid).collect::<Vec<_>>(),
        pids,
        "loaded without a restart"
    );

    let status = coordinator.ok(&["status", "--cluster", "prod"]);
    assert!(
        status.contains(&format!(
            "user config revision {} on 2/2 servers\n",
            &second[..12]
        )),
        "{status}"
    );

    // A server that restarts reads what is in place.
    let killed = pids[1].trim().parse::<u32>().unwrap();
    muster_testkit::harness::signal(killed, nix::sys::signal::Signal::SIGKILL);
    wait_for("server2 to be restarted", PATIENCE, POLL, || {
        let restarted = std::fs::read_to_string(server_dir(&agents[1]).join("pidfile"))
            .is_ok_and(|now| now != pids[1])
            && user_config(&hosts[1], "partners").is_some();
        async move { restarted.then_some(()) }
    })
    .await
    .unwrap();
    assert_eq!(
        user_config(&hosts[1], "partners").as_deref(),
        Some(partners("https://crm2.example.com").as_str())
    );

    // A file that leaves the set leaves the servers: emptied in them, then removed.
    std::fs::write(&file, with_user_conf("\"user-conf/partners.ini\"")).unwrap();
    coordinator.ok(&["apply", "-f", path]);
    user_conf_when(
        &coordinator,
        "both servers to drop limits.conf",
        |servers| {
            servers
                .iter()
                .all(|(_, revision)| *revision != second && revision.len() == 64)
        },
    )
    .await;
    for (host, agent) in hosts.iter().zip(&agents) {
        assert_eq!(user_config(host, "limits"), None, "{}", host.name);
        assert!(
            !server_dir(agent)
                .join("pickup/incoming/user-conf/limits.conf")
                .exists()
        );
        assert!(user_config(host, "partners").is_some());
    }

    // Secret: never shown, in no log, and on disk only where the operator and the servers keep it.
    let shown = coordinator.ok(&["cluster", "show", "prod"]);
    assert!(
        shown.contains("user config")
            && shown.contains("partners.ini")
            && !shown.contains(CRM_PASSWORD),
        "{shown}"
    );
    let written = coordinator.ok(&["get", "cluster", "prod"]);
    assert!(
        written.contains("# Its user-config files: revision") && !written.contains(CRM_PASSWORD),
        "{written}"
    );
    let events = coordinator.ok(&["events", "--cluster", "prod"]);
    assert!(
        events.contains("user-config revision") && !events.contains(CRM_PASSWORD),
        "{events}"
    );
    let mut holding = files_holding(scratch.path(), CRM_PASSWORD);
    holding.sort();
    let mut expected = vec![conf.join("partners.ini")];
    expected.extend(
        agents
            .iter()
            .map(|agent| server_dir(agent).join("pickup/incoming/user-conf/partners.ini")),
    );
    expected.sort();
    assert_eq!(holding, expected);
    let exported = scratch.path().join("exported");
    coordinator.ok(&[
        "get",
        "cluster",
        "prod",
        "--dir",
        exported.to_str().unwrap(),
    ]);
    let toml = std::fs::read_to_string(exported.join("cluster.toml")).unwrap();
    assert!(toml.contains("user-conf/partners.ini"), "{toml}");
    assert!(
        !exported.join("user-conf").exists(),
        "secrets are not written back"
    );
}
