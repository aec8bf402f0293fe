//! Debian 12 booted with systemd as PID 1, in `systemd-nspawn` (`../shared/systemd/README.md`):
//! where a unit's sandboxing, `Type=notify`, its watchdog, `KillMode` and restart policy are
//! really applied, which this machine (no systemd as PID 1) never does.
//!
//! - [`debian12_root`]: a Debian 12 root made by `debootstrap` with the packages asked for, cached
//!   under `MUSTER_TEST_CACHE` (default `/var/cache/muster-tests`) by the list of packages, so only
//!   the first run on a machine pays for it (~40-60 s); later runs share it.
//! - [`Container::boot`]: that root, copy-on-write (an overlay whose upper layer is the test's, so
//!   the cached root is never changed), booted with `--private-network` (its own loopback and
//!   nothing else: no test traffic leaves it), or in a test host's network namespace
//!   ([`Container::boot_with`]), with the host paths the test binds in. Dropping it powers it off
//!   (bounded), unmounts and removes what the test made.
//!
//! Commands run inside with [`Container::run`] (`nsenter` into every namespace of the container's
//! init, with a clean environment, as an operator's root shell there would).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::text;

const SUITE: &str = "bookworm";
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
const PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// How long a boot, a reboot or a power-off may take (each takes about a second here).
const BOOT_PATIENCE: Duration = Duration::from_secs(60);

fn cache_dir() -> PathBuf {
    std::env::var_os("MUSTER_TEST_CACHE")
        .filter(|path| !path.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/muster-tests"))
}

/// The Debian mirror apt is configured with on this machine (`URIs:` of a deb822 source or a
/// `deb` line), not its security archive; Debian's own when there is none.
fn mirror() -> String {
    let mut files = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = entries.flatten().map(|entry| entry.path()).collect();
        more.sort();
        files.extend(more);
    }
    files
        .iter()
        .filter_map(|file| std::fs::read_to_string(file).ok())
        .flat_map(|text| {
            text.lines()
                .filter_map(|line| {
                    let line = line.trim();
                    line.strip_prefix("URIs:")
                        .map(str::trim)
                        .or_else(|| line.strip_prefix("deb ").map(str::trim))
                        .map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned())
                })
                .collect::<Vec<_>>()
        })
        .find(|uri| uri.ends_with("/debian") || uri.ends_with("/debian/"))
        .unwrap_or_else(|| DEFAULT_MIRROR.to_owned())
}

/// A Debian 12 root with systemd, dbus and `packages`, made once per machine and list of packages.
pub fn debian12_root(packages: &[&str]) -> PathBuf {
    let mut wanted: Vec<&str> = ["systemd", "systemd-sysv", "dbus"]
        .into_iter()
        .chain(packages.iter().copied())
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let list = wanted.join(",");
    let digest = ring::digest::digest(&ring::digest::SHA256, list.as_bytes());
    let root = cache_dir().join(format!("debian12-{}", &hex::encode(digest)[..12]));
    if root.join("etc/os-release").exists() {
        return root;
    }
    std::fs::create_dir_all(cache_dir()).expect("the test cache directory");
    let partial = root.with_extension(format!("partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    let started = Instant::now();
    // debootstrap takes the base; apt installs the rest, resolving their dependencies as
    // debootstrap's --include does not (cloud-init's Python packages fail to configure there).
    let output = Command::new("debootstrap")
        .args([
            "--variant=minbase",
            "--include=systemd,systemd-sysv,dbus",
            SUITE,
        ])
        .arg(&partial)
        .arg(mirror())
        .stdin(Stdio::null())
        .output()
        .expect("run debootstrap (Debian's package; .ci/setup installs it)");
    let failed = |what: &str, output: &Output| {
        let _ = std::fs::remove_dir_all(&partial);
        panic!(
            "{what} for {} failed: {}{}",
            partial.display(),
            text(&output.stdout),
            text(&output.stderr)
        );
    };
    if !output.status.success() {
        failed("debootstrap", &output);
    }
    let _ = std::fs::copy("/etc/resolv.conf", partial.join("etc/resolv.conf"));
    let extra: Vec<&str> = wanted
        .iter()
        .copied()
        .filter(|package| !["systemd", "systemd-sysv", "dbus"].contains(package))
        .collect();
    let output = Command::new("chroot")
        .arg(&partial)
        .args(["apt-get", "install", "-y", "-q", "--no-install-recommends"])
        .args(&extra)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .output()
        .expect("run apt-get in the new root");
    if !output.status.success() {
        failed("apt-get install", &output);
    }
    // apt's downloads are not needed again; the root is copied by every boot's overlay.
    let _ = Command::new("chroot")
        .arg(&partial)
        .args(["apt-get", "clean"])
        .status();
    let _ = std::fs::remove_file(partial.join("etc/resolv.conf"));
    eprintln!(
        "debootstrap made {} in {:.0?} ({list})",
        root.display(),
        started.elapsed()
    );
    // Another test may have made the same root meanwhile: theirs stays, ours goes.
    if std::fs::rename(&partial, &root).is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    root
}

/// A host path the container sees.
pub enum Bind {
    /// Read-only, at `target`.
    ReadOnly { source: PathBuf, target: PathBuf },
    /// Read-only below, writable above: what the container changes stays in the test's own
    /// layer and never reaches `source`.
    Overlay { source: PathBuf, target: PathBuf },
}

/// A booted Debian 12 container; powered off and removed when dropped.
pub struct Container {
    pub name: String,
    dir: PathBuf,
    root: PathBuf,
    nspawn: Option<Child>,
    command: Command,
    init: i32,
}

fn run_checked(command: &mut Command) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

/// The container's init: `systemd`, the child of `nspawn` (a new one after a reboot).
fn init_of(nspawn: u32) -> Option<i32> {
    let children =
        std::fs::read_to_string(format!("/proc/{nspawn}/task/{nspawn}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|pid| pid.parse::<i32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim() == "systemd")
        })
}

impl Container {
    /// Boots `root` (from [`debian12_root`]) as host `name`, with `binds`, and waits until its
    /// systemd says the system is running.
    pub fn boot(name: &str, root: &Path, binds: &[Bind]) -> Container {
        Container::boot_with(name, root, binds, None, |_| {})
    }

    /// [`Container::boot`], in the network namespace `network` (`ip netns` name: a test host of
    /// [`crate::netns::Network`]) instead of a private network when given, after `prepare` has
    /// set up the root's files (its path as the host sees it), e.g. what a first boot reads.
    pub fn boot_with(
        name: &str,
        root: &Path,
        binds: &[Bind],
        network: Option<&str>,
        prepare: impl FnOnce(&Path),
    ) -> Container {
        let dir = std::env::temp_dir().join(format!(
            "muster-nspawn-{name}-{}-{}",
            std::process::id(),
            crate::random_suffix()
        ));
        let merged = dir.join("root");
        for sub in ["root", "upper", "work"] {
            std::fs::create_dir_all(dir.join(sub)).expect("the container's directories");
        }
        run_checked(
            Command::new("mount")
                .args(["-t", "overlay", "overlay", "-o"])
                .arg(format!(
                    "lowerdir={},upperdir={},workdir={}",
                    root.display(),
                    dir.join("upper").display(),
                    dir.join("work").display()
                ))
                .arg(&merged),
        );
        std::fs::write(merged.join("etc/hostname"), format!("{name}\n")).expect("etc/hostname");
        prepare(&merged);
        let mut command = Command::new("systemd-nspawn");
        command
            .arg("-D")
            .arg(&merged)
            .args(["-b", "--register=no", "--keep-unit", "--console=passive"])
            .args(["-M", name, "--system-call-filter=bpf"])
            .env("SYSTEMD_NSPAWN_UNIFIED_HIERARCHY", "1");
        match network {
            Some(namespace) => {
                command.arg(format!("--network-namespace-path=/run/netns/{namespace}"))
            }
            None => command.arg("--private-network"),
        };
        for (index, bind) in binds.iter().enumerate() {
            match bind {
                Bind::ReadOnly { source, target } => {
                    command.arg(format!(
                        "--bind-ro={}:{}",
                        source.display(),
                        target.display()
                    ));
                }
                Bind::Overlay { source, target } => {
                    let upper = dir.join(format!("overlay-{index}"));
                    std::fs::create_dir_all(&upper).expect("an overlay's upper directory");
                    command.arg(format!(
                        "--overlay={}:{}:{}",
                        source.display(),
                        upper.display(),
                        target.display()
                    ));
                }
            }
        }
        let mut container = Container {
            name: name.to_owned(),
            dir,
            root: merged,
            nspawn: None,
            command,
            init: 0,
        };
        container.spawn();
        container
    }

    /// Starts nspawn (again, after a reboot: nspawn ends when its container reboots, and
    /// systemd-nspawn@.service would start it again) and waits for the boot.
    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("nspawn.log"))
            .expect("nspawn.log");
        // A process group of its own, so the test's terminal signals stay out of it.
        let nspawn = std::os::unix::process::CommandExt::process_group(&mut self.command, 0)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("nspawn.log"))
            .stderr(log)
            .spawn()
            .expect("run systemd-nspawn (Debian's systemd-container; .ci/setup installs it)");
        self.nspawn = Some(nspawn);
        self.wait_for_boot();
    }

    /// The container's root as the host sees it (its files; write only what a test sets up).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// nspawn's own output, for a failure message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("nspawn.log")).unwrap_or_default()
    }

    /// Waits for the container's init and for it to say the system is running (or degraded,
    /// which the test then reads from `systemctl --failed`).
    fn wait_for_boot(&mut self) {
        let deadline = Instant::now() + BOOT_PATIENCE;
        let pid = self.nspawn.as_ref().expect("nspawn started").id();
        loop {
            let ended = self
                .nspawn
                .as_mut()
                .and_then(|nspawn| nspawn.try_wait().ok().flatten());
            if let Some(status) = ended {
                panic!(
                    "systemd-nspawn ended ({status}) while booting:\n{}",
                    self.log()
                );
            }
            if let Some(init) = init_of(pid) {
                self.init = init;
                // --wait answers once the boot is over; `timeout` bounds a boot that hangs.
                let state =
                    self.run(&["timeout", "60", "systemctl", "is-system-running", "--wait"]);
                let state = text(&state.stdout);
                if matches!(state.trim(), "running" | "degraded") {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "container {} did not boot within {BOOT_PATIENCE:?}:\n{}",
                self.name,
                self.log()
            );
            std::thread::park_timeout(Duration::from_millis(100));
        }
    }

    /// `args` run inside the container as root, in all its namespaces, with a clean environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("nsenter");
        command
            .args([
                "-t",
                &self.init.to_string(),
                "-a",
                "env",
                "-i",
                PATH,
                "LANG=C.UTF-8",
            ])
            .args(args)
            .stdin(Stdio::null());
        command
    }

    /// Runs `args` inside (see [`Container::command`]) and returns what it did.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .unwrap_or_else(|error| panic!("cannot run nsenter: {error}"))
    }

    /// Runs a shell line inside; panics with its output if it fails; returns its stdout.
    pub fn sh(&self, line: &str) -> String {
        let output = self.run(&["sh", "-c", line]);
        eprintln!(
            "[{}]# {line}\n{}{}",
            self.name,
            text(&output.stdout),
            text(&output.stderr)
        );
        assert!(
            output.status.success(),
            "`{line}` failed in container {} ({})",
            self.name,
            output.status
        );
        text(&output.stdout)
    }

    /// A unit's properties, as `systemctl show` gives them.
    pub fn unit(
        &self,
        unit: &str,
        properties: &[&str],
    ) -> std::collections::BTreeMap<String, String> {
        let output = self.run(&["systemctl", "show", unit, "-p", &properties.join(",")]);
        text(&output.stdout)
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect()
    }

    /// `systemctl reboot` inside; nspawn ends with the old boot and is started again on the same
    /// root, as systemd-nspawn@.service does. Returns once the new boot is running, with how long
    /// it took.
    pub fn reboot(&mut self) -> Duration {
        let started = Instant::now();
        let _ = self.run(&["systemctl", "reboot"]);
        self.wait_for_exit();
        self.spawn();
        started.elapsed()
    }

    /// Waits (bounded) for nspawn to end; kills it if it does not.
    fn wait_for_exit(&mut self) {
        let Some(mut nspawn) = self.nspawn.take() else {
            return;
        };
        let deadline = Instant::now() + BOOT_PATIENCE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = nspawn.try_wait() {
                return;
            }
            std::thread::park_timeout(Duration::from_millis(100));
        }
        eprintln!(
            "container {} did not stop within {BOOT_PATIENCE:?}: killed",
            self.name
        );
        let _ = nspawn.kill();
        let _ = nspawn.wait();
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if self.nspawn.is_some() {
            let _ = self.run(&["systemctl", "poweroff"]);
            self.wait_for_exit();
        }
        let _ = Command::new("umount").arg("-l").arg(&self.root).status();
        if std::env::var("MUSTER_KEEP_CONTAINERS").is_ok_and(|value| value == "1") {
            eprintln!("kept {} (MUSTER_KEEP_CONTAINERS=1)", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
        // nspawn leaves empty payload/supervisor cgroup folders behind after a stop.
        for hierarchy in ["/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"] {
            remove_empty_cgroups(Path::new(hierarchy), 3);
        }
    }
}

/// Removes the empty cgroup folders named `payload` or `supervisor` that nspawn leaves below
/// `directory`, `depth` levels down at most.
fn remove_empty_cgroups(directory: &Path, depth: u32) {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if depth > 0 {
            remove_empty_cgroups(&path, depth - 1);
        }
        let name = entry.file_name();
        if name == "payload" || name == "supervisor" {
            // rmdir refuses a cgroup with processes or children: only empty ones go.
            let _ = std::fs::remove_dir(&path);
        }
    }
}
