//! Muster installed from its packages and run by a real systemd, with the real Zato 3.2: Debian 12
//! booted in `systemd-nspawn` (systemd as PID 1; `muster_testkit::nspawn`), where the units'
//! sandboxing, `Type=notify`, the watchdog, `KillMode` and the restart policy are really applied.
//! README's production steps are followed with `systemctl`, as an operator would: the coordinator
//! initialised and started as its unit, the agent with `run_as` a user of its own, one host with a
//! server, the scheduler, the dashboard and a load balancer.
//!
//! Zato is the machine's installation (`../shared/zato/install.sh`), seen inside through an overlay
//! (what the operator's steps change in it stays in the test's layer) with the Python it was built
//! with. The container's root is cached per machine (the first run pays ~1 minute for
//! debootstrap). The container has only its own loopback: no test traffic leaves it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use muster_testkit::harness::text;
use muster_testkit::nspawn::{Bind, Container, debian12_root};
use muster_testkit::real_zato;

/// What the container needs besides systemd: HAProxy for the load balancer, git (Zato runs `git
/// log` at every command), ps and curl for the test's checks, and the shared libraries Zato's
/// Python and its compiled modules link to (found with ldd on the installed Zato).
const ROOT_PACKAGES: &[&str] = &[
    "haproxy",
    "git",
    "curl",
    "procps",
    "libbsd0",
    "libbz2-1.0",
    "libexpat1",
    "libffi8",
    "libgdbm6",
    "libgmp10",
    "libgnutls30",
    "libgssapi-krb5-2",
    "libkeyutils1",
    "libldap-2.5-0",
    "liblzma5",
    "libncursesw6",
    "libnsl2",
    "libpq5",
    "libreadline8",
    "libsasl2-2",
    "libsqlite3-0",
    "libssl3",
    "libstdc++6",
    "libuuid1",
    "libxml2",
    "libxslt1.1",
    "libyaml-0-2",
    "zlib1g",
];

/// What the agent says at start when the system's /proc lets every user read every command line.
const SYSTEM_PROC_WARNING: &str = "the system's /proc (PID 1's) is mounted without hidepid";

/// How long the cluster may take to come up (its four components take 10-20 s on a quiet machine).
const CLUSTER_PATIENCE: &str = "7m";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_owned()
}

/// `packaging/build.sh FORMAT` of the build the tests run on, as revision `revision`, into `out`;
/// the packages made.
fn build_packages(format: &str, out: &Path, revision: u32) -> Vec<PathBuf> {
    let output = Command::new("bash")
        .arg(workspace().join("packaging/build.sh"))
        .arg(format)
        .env("MUSTER_PACKAGE_PROFILE", "dev")
        .env("MUSTER_PACKAGE_OUT", out)
        .env("MUSTER_PACKAGE_REVISION", revision.to_string())
        .current_dir(workspace())
        .output()
        .expect("run packaging/build.sh");
    assert!(
        output.status.success(),
        "packaging/build.sh {format} failed: {}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    std::fs::read_dir(out)
        .expect("the packages")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == format)
        })
        .collect()
}

/// README's coordinator steps, on a container where its package is installed: `init` as the
/// service user, the unit started (and checked running), a cluster `demo` made; a join token for
/// `roles` of it.
fn start_coordinator(container: &Container, roles: &[&str]) -> String {
    container.sh(
        "runuser -u muster -- muster-coordinator init --config /etc/muster/coordinator.toml \
         --advertise muster-booted",
    );
    container.sh("systemctl start muster-coordinator");
    // Type=notify: active only once the service said READY=1.
    assert_running(container, "muster-coordinator");
    container.sh(&format!("{ADMIN} muster create cluster demo"));
    let roles: String = roles.iter().map(|role| format!(" --role {role}")).collect();
    let token: serde_json::Value = serde_json::from_str(&container.sh(&format!(
        "{ADMIN} muster token create --cluster demo{roles} -o json"
    )))
    .expect("the token as JSON");
    token["secret_token"].as_str().expect("a token").to_owned()
}

/// `muster` as root on the coordinator's host, as README says.
const ADMIN: &str = "MUSTER_DATA_DIR=/var/lib/muster";

/// The directory Zato's virtualenv was made from (`home` in its pyvenv.cfg), without `bin`.
fn python_home(code: &Path) -> PathBuf {
    let config = std::fs::read_to_string(code.join("pyvenv.cfg")).expect("Zato's pyvenv.cfg");
    let home = config
        .lines()
        .find_map(|line| line.strip_prefix("home = "))
        .expect("home in pyvenv.cfg");
    Path::new(home.trim())
        .parent()
        .expect("the Python's directory")
        .to_owned()
}

/// Every process the Zato user runs in the container (Zato's components and HAProxy), by PID.
fn zato_processes(container: &Container) -> BTreeSet<String> {
    container
        .sh("ps -u zato -o pid=,args=")
        .lines()
        .map(|line| line.trim().to_owned())
        .filter(|line| !line.is_empty())
        .collect()
}

/// `systemctl show`'s view of a unit that should be running: active, never restarted, and its
/// main PID.
fn assert_running(container: &Container, unit: &str) -> String {
    let state = container.unit(
        unit,
        &["ActiveState", "SubState", "NRestarts", "Result", "MainPID"],
    );
    assert_eq!(
        (state["ActiveState"].as_str(), state["SubState"].as_str()),
        ("active", "running"),
        "{unit}: {state:?}\n{}",
        container.sh(&format!("journalctl -u {unit} --no-pager -n 60"))
    );
    assert_eq!(state["NRestarts"], "0", "{unit} was restarted: {state:?}");
    assert_eq!(state["Result"], "success", "{unit}: {state:?}");
    state["MainPID"].clone()
}

fn wait_for_cluster(container: &Container) -> Duration {
    let started = Instant::now();
    container.sh(&format!(
        "{ADMIN} muster wait --cluster demo --timeout {CLUSTER_PATIENCE}"
    ));
    started.elapsed()
}

/// A request through the load balancer, answered by a server.
fn ping_through_the_load_balancer(container: &Container) {
    let pong = container.sh("curl -sS --fail --max-time 10 http://127.0.0.1:11223/zato/ping");
    assert!(pong.contains("\"pong\""), "not a Zato ping answer: {pong}");
}

/// README's production steps on a booted Debian 12: install both packages, initialise and start
/// the coordinator as its unit, make the Zato user, check the agent's config with `validate` (which
/// names what `run_as` may not run until README's fix is made), start the agent; the cluster comes
/// up healthy under the units' full hardening, with systemd's READY=1 from both services and no
/// watchdog kill. Restarting the agent and stopping the coordinator leave every Zato process as it
/// was; a reboot brings everything back by itself (and `muster wait` does not take the reports
/// from before it for the new boot's); the next package revision upgrades in place without
/// touching the components; purge removes the units and says how to stop what still runs.
#[test]
fn the_packages_run_a_real_zato_cluster_under_systemd() {
    let Some(zato) = real_zato() else { return };
    let code = zato
        .parent()
        .and_then(Path::parent)
        .expect("zato is CODE/bin/zato")
        .to_owned();
    let zato_home = code.parent().expect("CODE is ZATO_HOME/code").to_owned();
    let python = python_home(&code);
    let zato_mode = mode(&zato);

    let packages = tempfile::tempdir().expect("a directory for the packages");
    let first = packages.path().join("first");
    let next = packages.path().join("next");
    let started = Instant::now();
    build_packages("deb", &first, 1);
    build_packages("deb", &next, 2);
    eprintln!("packages built in {:.0?}", started.elapsed());

    let root = debian12_root(ROOT_PACKAGES);
    let started = Instant::now();
    let mut container = Container::boot(
        "muster-booted",
        &root,
        &[
            Bind::ReadOnly {
                source: first.clone(),
                target: PathBuf::from("/packages/first"),
            },
            Bind::ReadOnly {
                source: next.clone(),
                target: PathBuf::from("/packages/next"),
            },
            Bind::Overlay {
                source: zato_home.clone(),
                target: zato_home.clone(),
            },
            Bind::ReadOnly {
                source: python.clone(),
                target: python.clone(),
            },
        ],
    );
    eprintln!("booted in {:.1?}", started.elapsed());
    // The machine's Zato runs a Python that install.sh took from pyenv under /root: let other
    // users through /root to it (a packaged Zato's Python is Debian's, under /usr).
    if python.starts_with("/root") {
        container.sh("chmod 0711 /root");
    }

    // The coordinator, as README says.
    container
        .sh("dpkg -i /packages/first/muster-coordinator_*.deb /packages/first/muster-agent_*.deb");
    let token = start_coordinator(
        &container,
        &["server", "scheduler", "web-admin", "load-balancer"],
    );

    // The agent, run as a user of its own.
    container.sh("useradd --system --no-create-home --shell /usr/sbin/nologin zato");
    container.sh(&format!(
        "cat >> /etc/muster/agent.toml <<'EOF'\n\
         coordinator = \"https://127.0.0.1:17300\"\n\
         token = \"{token}\"\n\
         advertise_address = \"127.0.0.1\"\n\
         zato_bin = \"{zato}\"\n\
         run_as = \"zato\"\n\
         EOF",
        zato = zato.display()
    ));
    // Zato's installer leaves bin/zato and bin/py 0740 root:root: validate (the unit's
    // ExecStartPre) says so and how to fix it, rather than "valid" and a unit restarting for ever.
    let refused = container.run(&[
        "muster-agent",
        "validate",
        "--config",
        "/etc/muster/agent.toml",
    ]);
    let said = text(&refused.stderr);
    assert!(
        !refused.status.success(),
        "validate passed a run_as that cannot run Zato"
    );
    assert!(
        said.contains("run_as user zato cannot run") && said.contains("bin/zato"),
        "{said}"
    );
    let bins = format!("{0}/bin/zato {0}/bin/py", code.display());
    container.sh(&format!("chgrp zato {bins} && chmod 0750 {bins}"));
    container.sh(
        "muster-agent validate --config /etc/muster/agent.toml && systemctl start muster-agent",
    );
    assert_running(&container, "muster-agent");

    let took = wait_for_cluster(&container);
    eprintln!("cluster healthy {took:.1?} after the agent's start");
    ping_through_the_load_balancer(&container);
    let coordinator_pid = assert_running(&container, "muster-coordinator");
    let agent_pid = assert_running(&container, "muster-agent");
    assert_eq!(container.sh("systemctl --failed --no-legend --plain"), "");
    let processes = zato_processes(&container);
    for role in ["server", "scheduler", "web-admin", "haproxy"] {
        assert!(
            processes.iter().any(|line| line.contains(role)),
            "no {role} process runs as zato: {processes:?}"
        );
    }

    // hidepid: the unit's ProtectProc=invisible hides other users' processes from the components;
    // the container's own /proc (the system's) is plain, and the agent says so until README's
    // remount is made.
    let journal = container.sh("journalctl -u muster-agent --no-pager -o cat");
    assert!(
        !journal.contains("this agent's /proc is mounted without hidepid"),
        "{journal}"
    );
    assert_eq!(journal.matches(SYSTEM_PROC_WARNING).count(), 1, "{journal}");
    container.sh("mount -o remount,hidepid=2 /proc");

    // Restarting the agent (KillMode=process) leaves every component as it was.
    container.sh("systemctl restart muster-agent");
    let restarted = assert_running(&container, "muster-agent");
    assert_ne!(restarted, agent_pid, "the agent was not restarted");
    wait_for_cluster(&container);
    assert_eq!(
        zato_processes(&container),
        processes,
        "an agent restart touched the components"
    );
    let journal = container.sh("journalctl -u muster-agent --no-pager -o cat");
    assert_eq!(journal.matches(SYSTEM_PROC_WARNING).count(), 1, "{journal}");

    // The coordinator stopped: the cluster serves on, untouched.
    container.sh("systemctl stop muster-coordinator");
    ping_through_the_load_balancer(&container);
    assert_eq!(zato_processes(&container), processes);
    container.sh("systemctl start muster-coordinator");
    assert_ne!(
        assert_running(&container, "muster-coordinator"),
        coordinator_pid
    );
    wait_for_cluster(&container);
    assert_eq!(zato_processes(&container), processes);

    // A reboot: both services come back by themselves, and so does the cluster. `muster wait` must
    // not answer from the reports of the boot before: the load balancer routes when it returns.
    let took = container.reboot();
    eprintln!("rebooted in {took:.1?}");
    let took = wait_for_cluster(&container);
    eprintln!("cluster healthy {took:.1?} after the reboot");
    ping_through_the_load_balancer(&container);
    assert_running(&container, "muster-coordinator");
    let agent_pid = assert_running(&container, "muster-agent");
    let after_reboot = zato_processes(&container);
    assert!(
        after_reboot.is_disjoint(&processes),
        "processes of the old boot: {after_reboot:?}"
    );

    // The watchdog never fired, in either boot.
    let journal = container.sh("journalctl -u muster-agent -u muster-coordinator --no-pager");
    assert!(!journal.contains("Watchdog timeout"), "{journal}");

    // The next revision, installed over the running services: the agent restarts into it, its
    // components stay.
    container
        .sh("dpkg -i /packages/next/muster-coordinator_*.deb /packages/next/muster-agent_*.deb");
    assert_eq!(
        container.sh("dpkg-query -W -f='${Version}' muster-agent"),
        "0.1.0-2"
    );
    let upgraded = container.unit("muster-agent", &["ActiveState", "MainPID"]);
    assert_eq!(upgraded["ActiveState"], "active");
    assert_ne!(
        upgraded["MainPID"], agent_pid,
        "the upgrade did not restart the agent"
    );
    wait_for_cluster(&container);
    assert_eq!(
        zato_processes(&container),
        after_reboot,
        "the upgrade touched the components"
    );

    // Purge: the units go; what still runs is said, with how to stop it.
    let purged = container.sh("dpkg --purge muster-agent muster-coordinator 2>&1");
    assert!(purged.contains("zato stop"), "{purged}");
    let unit = container.run(&["systemctl", "cat", "muster-agent"]);
    assert!(!unit.status.success(), "the agent's unit is still there");
    drop(container);
    assert_eq!(
        mode(&zato),
        zato_mode,
        "the container's chmod reached the machine's Zato"
    );
}

fn mode(path: &Path) -> u32 {
    let metadata = std::fs::metadata(path).expect("the file's metadata");
    std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o7777
}

/// The rpms, installed by rpm itself (this machine's, into the container's root: no rpm-based
/// root can be made here, so the system under them is Debian 12 with a real systemd): their
/// scriptlets make the `muster` user and the state directories and enable the units, the config
/// files get their owners and modes, and both units start from where the rpms put them, the agent
/// enrolling and running a server (mock-zato: this test is about the rpms, not Zato).
#[test]
fn the_rpms_install_and_their_units_start_under_systemd() {
    let packages = tempfile::tempdir().expect("a directory for the packages");
    let rpms = build_packages("rpm", packages.path(), 1);
    assert_eq!(rpms.len(), 2, "{rpms:?}");
    // What they need of the system: the shell, the C library, shadow-utils for the user; and no
    // newer a C library than RHEL 9's (2.34): the binaries are built on Debian 12 (2.36).
    for rpm in &rpms {
        let requires = rpm_query(rpm, "-qpR");
        for line in requires.lines() {
            let known = [
                "/bin/sh",
                "config(muster-",
                "ld-linux-x86-64.so.2",
                "libc.so.6",
                "libgcc_s.so.1",
                "libm.so.6",
                "rpmlib(",
                "rtld(GNU_HASH)",
                "shadow-utils",
            ]
            .iter()
            .any(|prefix| line.starts_with(prefix));
            assert!(
                known,
                "{}: an unexpected requirement {line:?}",
                rpm.display()
            );
        }
        let newest_glibc = requires
            .lines()
            .filter_map(|line| line.split("(GLIBC_").nth(1)?.split(')').next())
            .filter_map(|version| {
                let (major, minor) = version.split_once('.')?;
                let minor = minor.split('.').next()?;
                Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?))
            })
            .max()
            .expect("a GLIBC requirement");
        eprintln!("{}: needs glibc {newest_glibc:?}", rpm.display());
        assert!(
            newest_glibc <= (2, 34),
            "{}: glibc {newest_glibc:?}",
            rpm.display()
        );
    }

    let root = debian12_root(ROOT_PACKAGES);
    let container = Container::boot(
        "muster-rpm",
        &root,
        &[Bind::ReadOnly {
            source: muster_testkit::harness::workspace_binary("mock-zato"),
            target: PathBuf::from("/usr/local/bin/mock-zato"),
        }],
    );
    let installed = Command::new("rpm")
        .arg("--root")
        .arg(container.root())
        .args(["-i", "--nodeps"])
        .args(&rpms)
        .output()
        .expect("run rpm");
    assert!(
        installed.status.success(),
        "rpm -i failed: {}{}",
        text(&installed.stdout),
        text(&installed.stderr)
    );
    assert_eq!(
        container.sh("stat -c '%a %U:%G' /etc/muster/coordinator.toml /etc/muster/agent.toml /var/lib/muster /var/lib/muster-agent"),
        "640 root:muster\n600 root:root\n700 muster:muster\n700 root:root\n"
    );
    assert_eq!(
        container.sh("systemctl is-enabled muster-coordinator muster-agent"),
        "enabled\nenabled\n"
    );

    let token = start_coordinator(&container, &["server"]);
    container.sh(&format!(
        "cat >> /etc/muster/agent.toml <<'EOF'\n\
         coordinator = \"https://127.0.0.1:17300\"\n\
         token = \"{token}\"\n\
         advertise_address = \"127.0.0.1\"\n\
         zato_bin = \"/usr/local/bin/mock-zato\"\n\
         EOF"
    ));
    container.sh(
        "muster-agent validate --config /etc/muster/agent.toml && systemctl start muster-agent",
    );
    assert_running(&container, "muster-agent");
    wait_for_cluster(&container);
    assert_running(&container, "muster-coordinator");
    assert_running(&container, "muster-agent");
}

fn rpm_query(rpm: &Path, query: &str) -> String {
    let output = Command::new("rpm")
        .arg(query)
        .arg(rpm)
        .output()
        .expect("run rpm");
    assert!(output.status.success(), "rpm {query} failed");
    text(&output.stdout)
}
