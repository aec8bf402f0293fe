//! The ways people install Muster, tried for real: the deb and rpm packages (built by
//! `packaging/build.sh`, linted, the .deb installed on this machine and purged), the systemd units
//! (`systemd-analyze verify`, their exposure printed), the cloud-init user-data (cloud-init's own
//! schema) and the Ansible roles (ansible-lint's production profile, then run on test hosts, after
//! which the agents are enrolled and their components healthy).
//!
//! This machine has no systemd as PID 1: where systemd would start a service, these tests run the
//! unit's own `ExecStartPre=` and `ExecStart=` command lines, as its `User=`, and say so.
//! Zato is mock-zato here (the real one is `real_zato.rs`'s).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use muster_testkit::harness::{signal, stop_components_under, text, workspace_binary};
use muster_testkit::netns::{Host, Network};
use muster_testkit::wait_for;
use nix::sys::signal::Signal;

const PATIENCE: Duration = Duration::from_secs(90);
const POLL: Duration = Duration::from_millis(200);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_owned()
}

fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    eprintln!(
        "$ {command:?}\n{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    output
}

fn succeeds(command: &mut Command) -> String {
    let output = run(command);
    assert!(output.status.success(), "{command:?} failed");
    text(&output.stdout)
}

/// A service as its unit would run it: `ExecStartPre=` lines first (each must succeed), then
/// `ExecStart=` in the background, as the unit's `User=`, on `host`.
struct Service {
    name: String,
    process: Child,
}

impl Service {
    fn start(unit: &Path, host: &Host, log: &Path) -> Service {
        let unit_text = std::fs::read_to_string(unit).expect("the unit file");
        let value = |key: &str| {
            unit_text
                .lines()
                .filter_map(|line| line.strip_prefix(key))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        let user = value("User=").pop();
        let as_user = |line: &str| {
            let mut command = host.command(Path::new("runuser"));
            command
                .args(["-u", user.as_deref().unwrap_or("root"), "--"])
                .args(line.split_whitespace());
            command
        };
        eprintln!(
            "no systemd as PID 1 here: running {}'s ExecStartPre= and ExecStart= lines on host {}",
            unit.display(),
            host.name
        );
        for line in value("ExecStartPre=") {
            succeeds(&mut as_user(&line));
        }
        let start = value("ExecStart=").pop().expect("an ExecStart= line");
        let log_file = std::fs::File::create(log).expect("the service log");
        let process = as_user(&start)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start the service");
        Service {
            name: unit.display().to_string(),
            process,
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // runuser passes SIGTERM on to the service.
        signal(self.process.id(), Signal::SIGTERM);
        let _ = self.process.wait();
        eprintln!("stopped {}", self.name);
    }
}

/// `systemd-analyze security --offline=true`'s overall exposure of a unit file, printed.
fn exposure(unit: &Path) -> f64 {
    let output = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit));
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    let figure = all
        .lines()
        .find_map(|line| line.split("Overall exposure level for ").nth(1))
        .and_then(|rest| rest.split(": ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("no exposure figure for {}:\n{all}", unit.display()));
    println!(
        "systemd-analyze security: {} exposure {figure}",
        unit.display()
    );
    figure
}

#[test]
fn the_cloud_init_user_data_passes_cloud_inits_schema() {
    for file in ["agent.yaml", "coordinator.yaml"] {
        let path = workspace().join("packaging/cloud-init").join(file);
        let output = succeeds(
            Command::new("cloud-init")
                .args(["schema", "--config-file"])
                .arg(&path),
        );
        assert!(output.contains("Valid cloud-config"), "{output}");
    }
}

#[test]
fn the_ansible_roles_pass_ansible_lint_in_its_production_profile() {
    let output = run(Command::new("ansible-lint")
        .args(["--offline", "--profile", "production", "--nocolor"])
        .current_dir(workspace().join("packaging/ansible"))
        .env(
            "ANSIBLE_ROLES_PATH",
            workspace().join("packaging/ansible/roles"),
        ));
    let all = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "ansible-lint failed:\n{all}");
    assert!(all.contains("Passed with production profile"), "{all}");
}

/// Files the coordinator package installs, beside its units and man pages.
const COORDINATOR_FILES: &[&str] = &[
    "/usr/bin/muster-coordinator",
    "/usr/bin/muster",
    "/etc/muster/coordinator.toml",
    "/usr/share/man/man1/muster.1.gz",
    "/usr/share/man/man1/muster-coordinator-init.1.gz",
    "/usr/share/bash-completion/completions/muster",
    "/usr/share/doc/muster-coordinator/copyright",
];

const AGENT_FILES: &[&str] = &[
    "/usr/bin/muster-agent",
    "/etc/muster/agent.toml",
    "/usr/share/man/man1/muster-agent-run.1.gz",
    "/usr/share/bash-completion/completions/muster-agent",
    "/usr/share/doc/muster-agent/copyright",
];

/// Removes both packages with everything they made (also what an earlier, interrupted run left).
fn purge() -> Output {
    run(Command::new("dpkg").args(["--purge", "muster-agent", "muster-coordinator"]))
}

fn package_file(directory: &Path, prefix: &str, suffix: &str) -> PathBuf {
    std::fs::read_dir(directory)
        .expect("target/packages")
        .flatten()
        .map(|entry| entry.path())
        .find(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with(prefix) && name.ends_with(suffix)
        })
        .unwrap_or_else(|| panic!("no {prefix}*{suffix} in {}", directory.display()))
}

fn mode_and_group(path: &str) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt as _;
    let metadata = std::fs::metadata(path).unwrap_or_else(|error| panic!("{path}: {error}"));
    (metadata.mode() & 0o7777, metadata.gid())
}

fn user_id(name: &str) -> Option<u32> {
    nix::unistd::User::from_name(name)
        .ok()
        .flatten()
        .map(|user| user.uid.as_raw())
}

/// `packaging/build.sh` makes both packages in both formats; lintian and rpmlint find no error;
/// the .debs install on this machine (files, conffiles, the service user, units enabled but not
/// started), their units pass `systemd-analyze verify` and are hardened as promised; a new user's
/// steps from README (init as the service user, start, edit agent.toml, start) bring an agent into
/// a cluster with a healthy server; purge removes what the packages made and nothing else.
#[tokio::test]
async fn the_packages_build_lint_install_run_and_purge() {
    let root = workspace();
    purge();
    succeeds(
        Command::new("bash")
            .arg(root.join("packaging/build.sh"))
            .env("MUSTER_PACKAGE_PROFILE", "dev")
            .current_dir(&root),
    );
    let packages = root.join("target/packages");
    let debs = [
        package_file(&packages, "muster-coordinator_", ".deb"),
        package_file(&packages, "muster-agent_", ".deb"),
    ];
    let rpms = [
        package_file(&packages, "muster-coordinator-", ".rpm"),
        package_file(&packages, "muster-agent-", ".rpm"),
    ];

    // Lint: errors fail; warnings are only those packaging/README.md lists, and says why.
    let linted = succeeds(
        Command::new("lintian")
            .args(["--fail-on", "error", "--no-tag-display-limit"])
            .args(&debs),
    );
    println!("{linted}");
    let documented = std::fs::read_to_string(root.join("packaging/README.md")).unwrap();
    for line in linted.lines().filter(|line| line.starts_with("W: ")) {
        let tag = line.split_whitespace().nth(2).unwrap_or_default();
        assert!(
            documented.contains(&format!("`{tag}`")),
            "lintian warns {tag:?}, which packaging/README.md does not list: {line}"
        );
    }
    succeeds(
        Command::new("rpmlint")
            .arg("-c")
            .arg(root.join("packaging/rpm/rpmlint.toml"))
            .args(&rpms),
    );
    let coordinator_rpm = succeeds(Command::new("rpm").arg("-qlp").arg(&rpms[0]));
    for file in COORDINATOR_FILES
        .iter()
        .filter(|file| !file.contains("/doc/"))
        .chain(&["/usr/lib/systemd/system/muster-coordinator.service"])
    {
        let file = file.trim_end_matches(".gz");
        assert!(
            coordinator_rpm.contains(file),
            "{file} not in the rpm:\n{coordinator_rpm}"
        );
    }
    let agent_rpm = succeeds(Command::new("rpm").arg("-qlp").arg(&rpms[1]));
    for file in ["/usr/bin/muster-agent", "/etc/muster/agent.toml"]
        .iter()
        .chain(&["/usr/lib/systemd/system/muster-agent.service"])
    {
        assert!(
            agent_rpm.contains(file),
            "{file} not in the rpm:\n{agent_rpm}"
        );
    }
    let config = succeeds(Command::new("rpm").args(["-qcp"]).arg(&rpms[1]));
    assert!(config.contains("/etc/muster/agent.toml"), "{config}");

    // Install.
    let had_opt_zato = Path::new("/opt/zato").exists();
    succeeds(Command::new("dpkg").arg("-i").args(&debs));
    let installed = Installed;
    for file in COORDINATOR_FILES.iter().chain(AGENT_FILES) {
        assert!(Path::new(file).exists(), "{file} was not installed");
    }
    let muster_uid = user_id("muster").expect("the package made the muster user");
    let muster_gid = nix::unistd::Group::from_name("muster")
        .unwrap()
        .expect("the muster group")
        .gid
        .as_raw();
    assert_eq!(
        mode_and_group("/etc/muster/coordinator.toml"),
        (0o640, muster_gid),
        "the coordinator's config may hold a password: root and the muster group only"
    );
    assert_eq!(mode_and_group("/etc/muster/agent.toml").0, 0o600);
    {
        use std::os::unix::fs::MetadataExt as _;
        let state = std::fs::metadata("/var/lib/muster").expect("/var/lib/muster");
        assert_eq!((state.uid(), state.mode() & 0o777), (muster_uid, 0o700));
    }
    for (package, conffile) in [
        ("muster-coordinator", "/etc/muster/coordinator.toml"),
        ("muster-agent", "/etc/muster/agent.toml"),
    ] {
        let conffiles =
            succeeds(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", package]));
        assert!(
            conffiles.contains(conffile),
            "{conffile} is not a conffile: {conffiles}"
        );
    }
    let units = ["muster-coordinator.service", "muster-agent.service"]
        .map(|unit| Path::new("/usr/lib/systemd/system").join(unit));
    for unit in &units {
        assert!(unit.exists(), "{} was not installed", unit.display());
        let name = unit.file_name().unwrap();
        assert!(
            Path::new("/etc/systemd/system/multi-user.target.wants")
                .join(name)
                .exists(),
            "{} is not enabled",
            unit.display()
        );
        succeeds(Command::new("systemd-analyze").arg("verify").arg(unit));
    }
    let coordinator_exposure = exposure(&units[0]);
    let agent_exposure = exposure(&units[1]);
    assert!(
        coordinator_exposure <= 1.5,
        "coordinator exposure {coordinator_exposure}"
    );
    assert!(agent_exposure <= 5.0, "agent exposure {agent_exposure}");
    let unconfigured =
        run(Command::new("muster-agent").args(["validate", "--config", "/etc/muster/agent.toml"]));
    assert!(
        !unconfigured.status.success() && text(&unconfigured.stderr).contains("coordinator"),
        "the shipped agent.toml names what is missing"
    );

    // README's steps on a host of its own.
    let scratch = tempfile::tempdir().unwrap();
    let mut network = Network::create();
    let host = network.add_host("pkg");
    let address = host.address.to_string();
    succeeds(host.command(Path::new("runuser")).args([
        "-u",
        "muster",
        "--",
        "muster-coordinator",
        "init",
        "--config",
        "/etc/muster/coordinator.toml",
        "--advertise",
        &address,
    ]));
    let coordinator = Service::start(&units[0], &host, &scratch.path().join("coordinator.log"));
    let url = format!("https://{address}:17300");
    let muster = |args: &[&str]| {
        let mut command = host.command(Path::new("/usr/bin/muster"));
        command
            .args(args)
            .args(["--coordinator", &url, "--data-dir", "/var/lib/muster"]);
        command
    };
    succeeds(&mut muster(&["ping", "--wait", "60s"]));
    let odb = scratch.path().join("odb.db").display().to_string();
    succeeds(&mut muster(&[
        "create",
        "cluster",
        "prod",
        "--odb-db-name",
        &odb,
    ]));
    let token: serde_json::Value = serde_json::from_str(&succeeds(&mut muster(&[
        "token",
        "create",
        "--cluster",
        "prod",
        "--role",
        "server",
        "-o",
        "json",
    ])))
    .unwrap();
    let components = scratch.path().join("components");
    let agent_config = format!(
        "coordinator = \"{url}\"\ntoken = \"{}\"\nhost_name = \"pkg\"\nadvertise_address = \"{address}\"\nzato_bin = \"{}\"\ncomponents_dir = \"{}\"\nheartbeat_interval = \"1s\"\n# The cluster's SQLite ODB is in the scratch directory.\nsqlite_odb_dirs = [\"{}\"]\n",
        token["secret_token"].as_str().unwrap(),
        workspace_binary("mock-zato").display(),
        components.display(),
        scratch.path().display()
    );
    std::fs::write("/etc/muster/agent.toml", agent_config).unwrap();
    let agent = Service::start(&units[1], &host, &scratch.path().join("agent.log"));
    let healthy = wait_for(
        "the packaged agent's server to be healthy",
        PATIENCE,
        POLL,
        || {
            let output = muster(&["component", "list", "-o", "json"]).output();
            async move {
                let list: serde_json::Value = serde_json::from_slice(&output.ok()?.stdout).ok()?;
                let server = list
                    .as_array()?
                    .iter()
                    .find(|c| c["role"] == "server")?
                    .clone();
                (server["healthy"] == true).then_some(server)
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(healthy["host"], "pkg", "{healthy}");
    drop(agent);

    // An upgrade in place (the next package revision) keeps the edited config and the host's
    // identity: the agent starts again as the same host, without a token.
    let host_id = std::fs::read_to_string("/var/lib/muster-agent/host.id").expect("host.id");
    let agent_config = std::fs::read_to_string("/etc/muster/agent.toml").unwrap();
    succeeds(
        Command::new("cargo")
            .args([
                "deb",
                "--no-build",
                "--no-strip",
                "--locked",
                "-p",
                "muster-agent",
            ])
            .args(["--deb-revision", "2", "--output"])
            .arg(&packages)
            .env("CARGO_TARGET_DIR", root.join("target/package-bin"))
            .current_dir(&root),
    );
    let next = package_file(&packages, "muster-agent_0.1.0-2", ".deb");
    succeeds(Command::new("dpkg").arg("-i").arg(&next));
    assert_eq!(
        std::fs::read_to_string("/etc/muster/agent.toml").unwrap(),
        agent_config
    );
    assert_eq!(
        std::fs::read_to_string("/var/lib/muster-agent/host.id").unwrap(),
        host_id
    );
    let version =
        succeeds(Command::new("dpkg-query").args(["-W", "-f=${Version}", "muster-agent"]));
    assert_eq!(version, "0.1.0-2");
    let last_seen = |output: std::io::Result<Output>| {
        let host: serde_json::Value = serde_json::from_slice(&output.ok()?.stdout).ok()?;
        host["last_seen"].as_str().map(str::to_owned)
    };
    let before = last_seen(muster(&["host", "show", "pkg", "-o", "json"]).output());
    let agent = Service::start(&units[1], &host, &scratch.path().join("agent-upgraded.log"));
    wait_for("the upgraded agent to report again", PATIENCE, POLL, || {
        let now = last_seen(muster(&["host", "show", "pkg", "-o", "json"]).output());
        let before = before.clone();
        async move { (now.is_some() && now != before).then_some(()) }
    })
    .await
    .unwrap();
    let upgraded_log = std::fs::read_to_string(scratch.path().join("agent-upgraded.log")).unwrap();
    assert!(
        !upgraded_log.contains(": enrolled"),
        "the upgraded agent enrolled again:\n{upgraded_log}"
    );
    drop(agent);
    drop(coordinator);
    stop_components_under(&components);
    drop(network);

    // Purge, which says that it leaves the cluster's components running and how to stop them.
    std::mem::forget(installed);
    let purged = purge();
    let said = text(&purged.stderr);
    assert!(purged.status.success(), "dpkg --purge failed: {said}");
    assert!(
        said.contains("purge stops no Zato component") && said.contains("zato stop DIR"),
        "{said}"
    );
    for file in COORDINATOR_FILES.iter().chain(AGENT_FILES).chain(&[
        "/var/lib/muster",
        "/var/lib/muster-agent",
        "/usr/lib/systemd/system/muster-agent.service",
        "/etc/systemd/system/multi-user.target.wants/muster-agent.service",
    ]) {
        assert!(!Path::new(file).exists(), "{file} is left after purge");
    }
    assert_eq!(
        user_id("muster"),
        None,
        "the muster user is left after purge"
    );
    // Zato's components directory is the cluster's, not the package's: purge leaves it.
    assert!(Path::new("/opt/zato").is_dir(), "purge removed /opt/zato");
    if !had_opt_zato {
        std::fs::remove_dir("/opt/zato").expect("the test's own /opt/zato, empty");
    }
}

/// Purges the packages when dropped, so a failed test leaves this machine as it found it.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let output = purge();
        assert!(
            output.status.success() || std::thread::panicking(),
            "dpkg --purge failed"
        );
    }
}

/// `ansible-playbook` on one test host, as the host itself would run it (`ansible_connection=local`
/// inside the host's namespace), limited to that host.
fn playbook(
    host: &Host,
    inventory: &Path,
    variables: &serde_json::Value,
    scratch: &Path,
) -> String {
    let root = workspace().join("packaging/ansible");
    let vars = scratch.join(format!("{}-vars.json", host.name));
    let mut variables = variables.clone();
    variables["ansible_connection"] = "local".into();
    variables["ansible_python_interpreter"] = "/usr/bin/python3".into();
    std::fs::write(&vars, variables.to_string()).unwrap();
    let output = run(host
        .command(Path::new("ansible-playbook"))
        .arg("-i")
        .arg(inventory)
        .arg("--limit")
        .arg(&host.name)
        .arg("-e")
        .arg(format!("@{}", vars.display()))
        .arg(root.join("examples/site.yml"))
        .env("ANSIBLE_ROLES_PATH", root.join("roles"))
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_LOCAL_TEMP", scratch.join("ansible-tmp"))
        .env("ANSIBLE_REMOTE_TMP", scratch.join("ansible-tmp")));
    let all = text(&output.stdout);
    assert!(
        output.status.success(),
        "ansible-playbook failed on {}",
        host.name
    );
    all
}

/// The play recap's `changed=` count for `host`.
fn changed(recap: &str, host: &str) -> u32 {
    recap
        .lines()
        .filter(|line| line.starts_with(host) && line.contains("changed="))
        .find_map(|line| {
            line.split("changed=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no recap for {host}:\n{recap}"))
}

/// The example playbook of `packaging/ansible` (the seed's distributed cluster: a coordinator, a
/// dashboard + scheduler host, two server hosts, a load-balancer host), with the README's
/// inventory, run on test hosts with the roles' binary install, then the services started from
/// the units the roles rendered: every agent enrolls with the token the role made for it, and
/// the cluster's five components become healthy, both servers in HAProxy's rotation. A second run
/// on the coordinator changes nothing but the cluster it now creates.
#[tokio::test]
async fn the_ansible_roles_deploy_the_distributed_cluster_on_test_hosts() {
    let scratch = tempfile::tempdir().unwrap();
    let scratch = scratch.path();
    let mut network = Network::create();
    let names = ["coord", "admin", "lb", "app-1", "app-2"];
    let hosts: Vec<Host> = names.iter().map(|name| network.add_host(name)).collect();
    let host = |name: &str| hosts.iter().find(|host| host.name == name).unwrap();

    // README's inventory with these hosts' names; each manages itself (ansible_connection=local).
    let example =
        std::fs::read_to_string(workspace().join("packaging/ansible/examples/inventory.yml"))
            .unwrap();
    let inventory_text = [
        ("muster.example.internal", "coord"),
        ("zato-web.example.internal", "admin"),
        ("zato-server1.example.internal", "app-1"),
        ("zato-server2.example.internal", "app-2"),
        ("zato-lb.example.internal", "lb"),
    ]
    .iter()
    .fold(example, |text, (from, to)| text.replace(from, to));
    let inventory = scratch.join("inventory.yml");
    std::fs::write(&inventory, inventory_text).unwrap();

    let binaries = workspace_binary("muster").parent().unwrap().to_owned();
    let coord = host("coord");
    let url = format!("https://{}:17300", coord.address);
    let coordinator_data = scratch.join("coord/data");
    let coordinator_vars = |clusters: serde_json::Value| {
        serde_json::json!({
            "muster_database_url": "",
            "muster_coordinator_install_method": "binary",
            "muster_coordinator_binary_src_dir": binaries,
            "muster_coordinator_bin_dir": scratch.join("coord/bin"),
            "muster_coordinator_systemd_dir": scratch.join("coord/systemd"),
            "muster_coordinator_config_dir": scratch.join("coord/etc"),
            "muster_coordinator_data_dir": coordinator_data,
            "muster_coordinator_user": "root",
            "muster_coordinator_advertise": [coord.address.to_string()],
            "muster_coordinator_url": url,
            "muster_coordinator_service_manager": "none",
            "muster_coordinator_clusters": clusters,
        })
    };
    for directory in ["coord/bin", "coord/systemd"] {
        std::fs::create_dir_all(scratch.join(directory)).unwrap();
    }
    playbook(
        coord,
        &inventory,
        &coordinator_vars(serde_json::json!([])),
        scratch,
    );
    let coordinator_unit = scratch.join("coord/systemd/muster-coordinator.service");
    succeeds(
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(&coordinator_unit),
    );
    let _coordinator = Service::start(&coordinator_unit, coord, &scratch.join("coordinator.log"));
    let odb = scratch.join("odb.db");
    let clusters = serde_json::json!([{
        "name": "prod",
        "description": "made by ansible",
        "odb": { "type": "sqlite", "db_name": odb },
    }]);
    let again = playbook(coord, &inventory, &coordinator_vars(clusters), scratch);
    assert_eq!(
        changed(&again, "coord"),
        1,
        "only the cluster is new:\n{again}"
    );

    let mut agents = Vec::new();
    for name in ["admin", "lb", "app-1", "app-2"] {
        let agent_host = host(name);
        let root = scratch.join(name);
        for directory in ["bin", "systemd"] {
            std::fs::create_dir_all(root.join(directory)).unwrap();
        }
        let vars = serde_json::json!({
            "muster_cluster": "prod",
            "muster_agent_coordinator": url,
            "muster_agent_install_method": "binary",
            "muster_agent_binary_src": workspace_binary("muster-agent"),
            "muster_agent_bin_dir": root.join("bin"),
            "muster_agent_systemd_dir": root.join("systemd"),
            "muster_agent_config_dir": root.join("etc"),
            "muster_agent_state_dir": root.join("state"),
            "muster_agent_components_dir": root.join("components"),
            "muster_agent_coordinator_data_dir": coordinator_data,
            "muster_agent_muster_bin": scratch.join("coord/bin/muster"),
            "muster_agent_advertise_address": agent_host.address.to_string(),
            "muster_agent_bind_address": agent_host.address.to_string(),
            "muster_agent_zato_bin": workspace_binary("mock-zato"),
            "muster_agent_zato_installs": { "next": workspace_binary("mock-zato") },
            "muster_agent_run_as": "",
            "muster_agent_labels": { "deployed-by": "ansible" },
            // The cluster's SQLite ODB is in the scratch directory, which every test host sees.
            "muster_agent_extra_config": { "heartbeat_interval": "1s", "sqlite_odb_dirs": [scratch] },
            "muster_agent_service_manager": "none",
        });
        playbook(agent_host, &inventory, &vars, scratch);
        let unit = root.join("systemd/muster-agent.service");
        succeeds(Command::new("systemd-analyze").arg("verify").arg(&unit));
        agents.push((
            Service::start(&unit, agent_host, &root.join("agent.log")),
            root.join("components"),
        ));
    }

    let muster = |args: &[&str]| {
        let mut command = coord.command(&scratch.join("coord/bin/muster"));
        command
            .args(args)
            .args(["--coordinator", &url])
            .arg("--data-dir")
            .arg(&coordinator_data);
        command
    };
    let healthy = wait_for("five healthy components", PATIENCE, POLL, || {
        let output = muster(&["component", "list", "-o", "json"]).output();
        async move {
            let list: serde_json::Value = serde_json::from_slice(&output.ok()?.stdout).ok()?;
            let components = list.as_array()?.clone();
            (components.len() == 5 && components.iter().all(|c| c["healthy"] == true))
                .then_some(components)
        }
    })
    .await;
    let components = match healthy {
        Ok(components) => components,
        Err(error) => {
            succeeds(&mut muster(&["status"]));
            panic!("{error}");
        }
    };
    let placed: Vec<(String, String)> = components
        .iter()
        .map(|c| {
            (
                c["role"].as_str().unwrap().to_owned(),
                c["host"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("web-admin", "admin"),
        ("scheduler", "admin"),
        ("load-balancer", "lb"),
        ("server", "app-1"),
        ("server", "app-2"),
    ] {
        assert!(
            placed.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} not in {placed:?}"
        );
    }
    // Both servers in HAProxy's rotation: what `muster wait` waits for.
    succeeds(&mut muster(&[
        "wait",
        "--cluster",
        "prod",
        "--timeout",
        "90s",
    ]));
    let hosts_json: serde_json::Value =
        serde_json::from_str(&succeeds(&mut muster(&["host", "list", "-o", "json"]))).unwrap();
    assert!(
        hosts_json.to_string().contains("deployed-by"),
        "the inventory's labels reached the hosts: {hosts_json}"
    );
    for host in hosts_json.as_array().unwrap() {
        assert_eq!(
            host["zato_installs"],
            serde_json::json!(["default", "next"]),
            "the inventory's Zato installations reached agent.toml: {host}"
        );
    }

    // Run again on an enrolled host, the role takes the join token out of agent.toml.
    let app = scratch.join("app-1/etc/agent.toml");
    assert!(std::fs::read_to_string(&app).unwrap().contains("token = "));
    let vars: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(scratch.join("app-1-vars.json")).unwrap())
            .unwrap();
    let again = playbook(host("app-1"), &inventory, &vars, scratch);
    assert_eq!(
        changed(&again, "app-1"),
        1,
        "only agent.toml changes:\n{again}"
    );
    assert!(!std::fs::read_to_string(&app).unwrap().contains("token = "));
    for (agent, components) in agents {
        drop(agent);
        stop_components_under(&components);
    }
}
