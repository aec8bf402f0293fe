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

/// `packaging/build.sh FORMAT` of the build the tests run on, as revision `revision`, into `out`,
/// with `env` besides; what it said.
fn build_packages(
    format: &str,
    out: &Path,
    revision: u32,
    env: &[(&str, &std::ffi::OsStr)],
) -> String {
    let output = Command::new("bash")
        .arg(workspace().join("packaging/build.sh"))
        .arg(format)
        .env("MUSTER_PACKAGE_PROFILE", "dev")
        .env("MUSTER_PACKAGE_OUT", out)
        .env("MUSTER_PACKAGE_REVISION", revision.to_string())
        .envs(env.iter().copied())
        .current_dir(workspace())
        .output()
        .expect("run packaging/build.sh");
    let said = text(&output.stdout);
    assert!(
        output.status.success(),
        "packaging/build.sh {format} failed: {said}{}",
        text(&output.stderr)
    );
    said
}

/// The packages in `out` whose file name ends in `.EXTENSION`.
fn packages_in(out: &Path, extension: &str) -> Vec<PathBuf> {
    std::fs::read_dir(out)
        .expect("the packages")
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|found| found == extension))
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
    build_packages("deb", &first, 1, &[]);
    build_packages("deb", &next, 2, &[]);
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
    build_packages("rpm", packages.path(), 1, &[]);
    let rpms = packages_in(packages.path(), "rpm");
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

/// A GPG key made for one test in `home` (a keyring of its own); its fingerprint.
fn make_key(home: &Path, name: &str) -> String {
    let gpg = |args: &[&str]| {
        let output = Command::new("gpg")
            .arg("--batch")
            .args(args)
            .env("GNUPGHOME", home)
            .output()
            .expect("run gpg");
        assert!(
            output.status.success(),
            "gpg {args:?} failed: {}",
            text(&output.stderr)
        );
        text(&output.stdout)
    };
    let user = format!("{name} <{name}@example.invalid>");
    gpg(&[
        "--passphrase",
        "",
        "--quick-gen-key",
        &user,
        "ed25519",
        "sign",
        "never",
    ]);
    gpg(&["--with-colons", "--fingerprint", &user])
        .lines()
        .find_map(|line| line.strip_prefix("fpr:"))
        .and_then(|rest| rest.split(':').find(|field| !field.is_empty()))
        .expect("the key's fingerprint")
        .to_owned()
}

/// What `packaging/build.sh repo` made in a scratch directory.
struct SignedRepository {
    /// OUT/repo: deb/, rpm/, the keyrings and source entries.
    repo: PathBuf,
    /// The public key of another key than the one that signed it.
    other_keyring: PathBuf,
}

/// `packaging/build.sh repo` of the build the tests run on, signed with a key made for the test,
/// in `scratch` (made readable to the containers' `_apt`).
fn signed_repository(scratch: &Path) -> SignedRepository {
    std::fs::set_permissions(scratch, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod the scratch directory");
    let keys = scratch.join("gnupg");
    std::fs::create_dir(&keys).expect("a keyring directory");
    std::fs::set_permissions(&keys, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod the keyring directory");
    let signing = make_key(&keys, "muster-release");
    let other = make_key(&keys, "somebody-else");
    let out = scratch.join("packages");
    let said = build_packages(
        "repo",
        &out,
        1,
        &[
            ("MUSTER_REPO_KEY", signing.as_ref()),
            ("GNUPGHOME", keys.as_os_str()),
        ],
    );
    assert!(said.contains(&format!("signed by {signing}")), "{said}");
    let other_keyring = scratch.join("other.gpg");
    let exported = Command::new("gpg")
        .args(["--batch", "--export", &other])
        .env("GNUPGHOME", &keys)
        .output()
        .expect("run gpg --export");
    std::fs::write(&other_keyring, exported.stdout).expect("the other keyring");
    SignedRepository {
        repo: out.join("repo"),
        other_keyring,
    }
}

/// `packaging/build.sh repo` makes a signed apt repository (and a signed yum one): apt on a
/// Debian 12 with nothing but that source installs both packages from it, with the key named by
/// `signed-by=`, and refuses it (installs nothing) while the key it trusts is another one; the yum
/// metadata's signature verifies with the published key and not with another.
#[test]
fn the_signed_repositories_install_the_packages_and_refuse_another_key() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let SignedRepository {
        repo,
        other_keyring,
        ..
    } = signed_repository(scratch.path());

    // yum's metadata: signed by the published key, by no other.
    let verify = |keyring: &Path| {
        Command::new("gpgv")
            .arg("--keyring")
            .arg(keyring)
            .arg(repo.join("rpm/repodata/repomd.xml.asc"))
            .arg(repo.join("rpm/repodata/repomd.xml"))
            .output()
            .expect("run gpgv")
            .status
            .success()
    };
    assert!(verify(&repo.join("muster-archive-keyring.gpg")));
    assert!(!verify(&other_keyring));

    let root = debian12_root(ROOT_PACKAGES);
    let container = Container::boot(
        "muster-repo",
        &root,
        &[
            Bind::ReadOnly {
                source: repo.clone(),
                target: PathBuf::from("/srv/muster-repo"),
            },
            Bind::ReadOnly {
                source: other_keyring,
                target: PathBuf::from("/srv/other.gpg"),
            },
        ],
    );
    // Only Muster's repository (the container has no network to reach Debian's).
    container.sh("rm -f /etc/apt/sources.list /etc/apt/sources.list.d/* && \
         sed 's|BASE_URL|file:/srv/muster-repo|' /srv/muster-repo/muster.list \
         > /etc/apt/sources.list.d/muster.list");
    container.sh("cp /srv/other.gpg /usr/share/keyrings/muster-archive-keyring.gpg");
    let refused = container.run(&["apt-get", "update"]);
    let said = format!("{}{}", text(&refused.stdout), text(&refused.stderr));
    assert!(
        said.contains("NO_PUBKEY") || said.contains("not signed"),
        "{said}"
    );
    let none = container.run(&["apt-get", "install", "-y", "muster-agent"]);
    assert!(
        !none.status.success(),
        "installed from a repository signed by a key it does not trust"
    );

    container.sh(
        "cp /srv/muster-repo/muster-archive-keyring.gpg /usr/share/keyrings/ && apt-get update",
    );
    container
        .sh("DEBIAN_FRONTEND=noninteractive apt-get install -y muster-agent muster-coordinator");
    let policy = container.sh("apt-cache policy muster-agent");
    assert!(policy.contains("file:/srv/muster-repo/deb ./"), "{policy}");
    assert_eq!(
        container.sh("dpkg-query -W -f='${Status}' muster-agent muster-coordinator"),
        "install ok installedinstall ok installed"
    );
}

/// cloud-init itself, on two Debian 12 hosts booted with systemd (a NoCloud seed, test hosts of a
/// network of their own): the coordinator's and the agent's user-data from `packaging/cloud-init/`,
/// with only their CHANGE values set, install the packages from the signed repository (served as
/// a `file:` URL: the same apt path as https), start the coordinator, and the agent joins it from
/// the other host.
#[test]
fn cloud_init_installs_a_coordinator_and_an_agent_that_joins_it() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let SignedRepository { repo, .. } = signed_repository(scratch.path());
    let key = std::fs::read_to_string(repo.join("muster-archive-keyring.asc")).expect("the key");
    // What a Debian cloud image has besides: cloud-init with gnupg (it dearmours apt keys with it)
    // and locales.
    let root = debian12_root(&["cloud-init", "gnupg", "locales", "procps", "curl"]);
    let mut network = muster_testkit::netns::Network::create();
    let coordinator_host = network.add_host("cloud-coord");
    let agent_host = network.add_host("cloud-agent");

    let coordinator_url = format!("https://{}:17300", coordinator_host.address);
    let coordinator = boot_cloud_instance(
        "cloud-coord",
        &root,
        &repo,
        &coordinator_host.namespace,
        &user_data("coordinator.yaml", &key, &[]),
    );
    cloud_init_done(&coordinator);
    assert_running(&coordinator, "muster-coordinator");
    assert_eq!(
        coordinator.sh("stat -c '%a %U:%G' /etc/muster/coordinator.toml"),
        "640 root:muster\n"
    );
    coordinator.sh(&format!("{ADMIN} muster create cluster demo"));
    let token: serde_json::Value = serde_json::from_str(&coordinator.sh(&format!(
        "{ADMIN} muster token create --cluster demo --label source=cloud-init -o json"
    )))
    .expect("the token as JSON");
    let token = token["secret_token"].as_str().expect("a token");

    let agent = boot_cloud_instance(
        "cloud-agent",
        &root,
        &repo,
        &agent_host.namespace,
        &user_data(
            "agent.yaml",
            &key,
            &[
                (
                    "https://coordinator.example.internal:17300",
                    &coordinator_url,
                ),
                ("MUSTER1-<ca-sha256>::<id>.<secret>", token),
                ("/opt/zato/3.2/code/bin/zato", "/usr/local/bin/mock-zato"),
            ],
        ),
    );
    cloud_init_done(&agent);
    assert_running(&agent, "muster-agent");
    // hidepid=2, as the kernel shows it since 5.8.
    let proc_mount = agent.sh("grep ' /proc ' /proc/mounts");
    assert!(
        proc_mount.contains("hidepid=2") || proc_mount.contains("hidepid=invisible"),
        "the user-data's hidepid is not in effect: {proc_mount}"
    );
    assert_eq!(
        agent.sh("stat -c '%a %U:%G' /etc/muster/agent.toml"),
        "600 root:root\n"
    );
    let joined = tokio::runtime::Runtime::new()
        .expect("a runtime")
        .block_on(muster_testkit::wait_for(
            "the agent's host up at the coordinator",
            Duration::from_secs(60),
            Duration::from_millis(500),
            || {
                let hosts = coordinator.sh(&format!("{ADMIN} muster host list -o json"));
                let hosts: serde_json::Value =
                    serde_json::from_str(&hosts).expect("the hosts as JSON");
                let found = hosts.as_array().and_then(|hosts| {
                    hosts
                        .iter()
                        .find(|host| host["name"] == "cloud-agent" && host["state"] == "up")
                        .cloned()
                });
                async move { found }
            },
        ))
        .unwrap();
    assert_eq!(
        joined["advertise_address"],
        agent_host.address.to_string(),
        "{joined}"
    );
    assert_eq!(joined["labels"]["source"], "cloud-init", "{joined}");
    drop(agent);
    drop(coordinator);
    drop(network);
}

/// A user-data file of `packaging/cloud-init/`, with the repository's URL and key, and each
/// `(placeholder, value)` replaced; every one must be there.
fn user_data(file: &str, key: &str, values: &[(&str, &str)]) -> String {
    let path = workspace().join("packaging/cloud-init").join(file);
    let mut text = std::fs::read_to_string(&path).expect("the user-data");
    let indented: String = key
        .lines()
        .map(|line| format!("        {line}\n"))
        .collect();
    let placeholder_key = "        -----BEGIN PGP PUBLIC KEY BLOCK-----\n        (the contents of \
                           muster-archive-keyring.asc)\n        -----END PGP PUBLIC KEY BLOCK-----\n";
    for (from, to) in [
        (placeholder_key, indented.as_str()),
        (
            "https://packages.example.internal/muster",
            "file:/srv/muster-repo",
        ),
    ]
    .iter()
    .chain(values)
    {
        assert!(text.contains(from), "{} has no {from:?}", path.display());
        text = text.replace(from, to);
    }
    text
}

/// A first boot of `name` with a NoCloud seed holding `user_data`, in the test host `namespace`,
/// the repository at /srv/muster-repo and mock-zato at /usr/local/bin/mock-zato.
fn boot_cloud_instance(
    name: &str,
    root: &Path,
    repo: &Path,
    namespace: &str,
    user_data: &str,
) -> Container {
    Container::boot_with(
        name,
        root,
        &[
            Bind::ReadOnly {
                source: repo.to_owned(),
                target: PathBuf::from("/srv/muster-repo"),
            },
            Bind::ReadOnly {
                source: muster_testkit::harness::workspace_binary("mock-zato"),
                target: PathBuf::from("/usr/local/bin/mock-zato"),
            },
        ],
        Some(namespace),
        |root| {
            let seed = root.join("var/lib/cloud/seed/nocloud");
            std::fs::create_dir_all(&seed).expect("the seed directory");
            std::fs::write(
                seed.join("meta-data"),
                format!("instance-id: {name}\nlocal-hostname: {name}\n"),
            )
            .expect("meta-data");
            std::fs::write(seed.join("user-data"), user_data).expect("user-data");
            // Not the user-data's business: the container reaches no Debian mirror, so apt keeps
            // the sources the test left (none but the repository's, which cloud-init adds).
            std::fs::write(
                root.join("etc/cloud/cloud.cfg.d/99-muster-test.cfg"),
                "datasource_list: [NoCloud]\nlocale: C.UTF-8\napt:\n  preserve_sources_list: true\n",
            )
            .expect("the test's cloud.cfg");
            let _ = std::fs::remove_file(root.join("etc/apt/sources.list"));
            // The image's Zato user (the user-data's run_as): an image with Zato has one.
            let added = Command::new("chroot")
                .arg(root)
                .args(["useradd", "--system", "--no-create-home", "zato"])
                .status()
                .expect("run chroot useradd");
            assert!(added.success(), "useradd zato in {}", root.display());
        },
    )
}

/// Waits (bounded) for cloud-init to finish; fails with its own report unless it is done without
/// an error.
fn cloud_init_done(container: &Container) {
    let status = container.run(&["timeout", "300", "cloud-init", "status", "--wait", "--long"]);
    let said = text(&status.stdout);
    assert!(
        status.status.success() && said.contains("status: done"),
        "cloud-init on {}: {said}\n{}",
        container.name,
        container.sh("grep -v '^ci-info' /var/log/cloud-init-output.log | tail -n 60; grep -E 'WARN|ERROR' /var/log/cloud-init.log | tail -n 20")
    );
}

/// The Ansible roles' package path: README's example playbook (`packaging/ansible/examples/
/// site.yml`), run by ansible-playbook on a booted Debian 12 against itself (one host is the
/// coordinator and a server host), installs both packages by name from the signed repository and
/// runs them as their units: the coordinator initialised and started, the cluster made, the agent
/// enrolled with a token the role made, its server (mock-zato) healthy; run again, only the token
/// leaves agent.toml; a third run changes nothing.
#[test]
fn the_ansible_roles_install_the_packages_from_the_repository_under_systemd() {
    let scratch = tempfile::tempdir().expect("a scratch directory");
    let SignedRepository { repo, .. } = signed_repository(scratch.path());
    // A managed Debian host as Ansible expects one: python3-apt for its apt module.
    let root = debian12_root(&["ansible-core", "python3-apt", "procps", "curl"]);
    let inventory = "all:\n  children:\n    coordinator:\n      hosts:\n        box:\n    agents:\n      \
                     hosts:\n        box:\n      vars:\n        muster_agent_roles: [server]\n";
    let variables = serde_json::json!({
        "ansible_connection": "local",
        "ansible_python_interpreter": "/usr/bin/python3",
        "muster_cluster": "prod",
        "muster_database_url": "",
        "muster_coordinator_clusters": [
            { "name": "prod", "description": "made by ansible", "odb": { "type": "sqlite" } }
        ],
        "muster_agent_zato_bin": "/usr/local/bin/mock-zato",
        "muster_agent_run_as": "",
        "muster_agent_advertise_address": "127.0.0.1",
    });
    let container = Container::boot_with(
        "box",
        &root,
        &[
            Bind::ReadOnly {
                source: repo.clone(),
                target: PathBuf::from("/srv/muster-repo"),
            },
            Bind::ReadOnly {
                source: workspace().join("packaging/ansible"),
                target: PathBuf::from("/srv/ansible"),
            },
            Bind::ReadOnly {
                source: muster_testkit::harness::workspace_binary("mock-zato"),
                target: PathBuf::from("/usr/local/bin/mock-zato"),
            },
        ],
        None,
        |root| {
            // The host's package sources: Muster's repository only (no network to Debian's).
            let _ = std::fs::remove_file(root.join("etc/apt/sources.list"));
            let list = std::fs::read_to_string(repo.join("muster.list")).expect("muster.list");
            std::fs::write(
                root.join("etc/apt/sources.list.d/muster.list"),
                list.replace("BASE_URL", "file:/srv/muster-repo"),
            )
            .expect("muster.list");
            std::fs::copy(
                repo.join("muster-archive-keyring.gpg"),
                root.join("usr/share/keyrings/muster-archive-keyring.gpg"),
            )
            .expect("the keyring");
            std::fs::write(root.join("etc/hosts"), "127.0.0.1 localhost box\n").expect("hosts");
            std::fs::write(root.join("srv/inventory.yml"), inventory).expect("the inventory");
            std::fs::write(root.join("srv/vars.json"), variables.to_string()).expect("the vars");
        },
    );
    container.sh("apt-get update -q");
    let play = "ANSIBLE_ROLES_PATH=/srv/ansible/roles ANSIBLE_NOCOLOR=1 ansible-playbook \
                -i /srv/inventory.yml -e @/srv/vars.json /srv/ansible/examples/site.yml";
    container.sh(play);
    assert_eq!(
        container.sh("dpkg-query -W -f='${Status}\\n' muster-coordinator muster-agent"),
        "install ok installed\ninstall ok installed\n"
    );
    assert_running(&container, "muster-coordinator");
    assert_running(&container, "muster-agent");
    container.sh(&format!(
        "{ADMIN} muster wait --cluster prod --timeout {CLUSTER_PATIENCE}"
    ));
    // Run again: the host is enrolled, so the join token leaves agent.toml (the one change, and
    // the agent restarted for it); a third run changes nothing.
    let recap = |output: &str| {
        output
            .lines()
            .find(|line| line.starts_with("box") && line.contains("changed="))
            .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
            .expect("a play recap")
    };
    let again = container.sh(play);
    assert!(recap(&again).contains("changed=2"), "{again}");
    assert!(
        !container
            .sh("cat /etc/muster/agent.toml")
            .contains("token =")
    );
    assert_running(&container, "muster-agent");
    let third = container.sh(play);
    assert!(recap(&third).contains("changed=0"), "{third}");
    container.sh(&format!(
        "{ADMIN} muster wait --cluster prod --timeout {CLUSTER_PATIENCE}"
    ));
}
