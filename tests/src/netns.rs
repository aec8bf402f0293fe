//! Separate test hosts on one machine: each host a network namespace with its own address on
//! 10.77.0.0/24, all joined by a bridge that lives in a namespace of its own (the "switch"), so no
//! test traffic reaches the machine's own network. Everything is created by the test and removed
//! when the [`Network`] is dropped; namespaces left by a test process that died are swept when the
//! next network is made.
//!
//! Each host resolves names as a cloud instance often does: its `/etc/hosts` (a file under
//! `/etc/netns/NAMESPACE/`, which `ip netns exec` mounts over the machine's) names only localhost and
//! itself, and its `resolv.conf` points at 127.0.0.1 inside the host, where nothing answers, so a
//! name no file holds fails at once and no lookup leaves the host.
//!
//! Names: `mst-PID-N-sw` for the switch and `mst-PID-N-HOST` for hosts, where PID is the test
//! process and N counts networks within it. `MUSTER_KEEP_HOSTS=1` keeps them after the test, for
//! debugging (`ip netns list`, `ip netns exec mst-…-HOST bash`); the next run sweeps them.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

const SUBNET: [u8; 3] = [10, 77, 0];
const PREFIX: &str = "mst-";

static NETWORKS: AtomicUsize = AtomicUsize::new(0);

/// Runs `ip ARGS`; panics with its error output if it fails.
fn ip(args: &[&str]) {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ip (iproute2)");
    assert!(
        output.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn namespaces() -> Vec<String> {
    let output = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("run ip netns list");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// Kills every process in `namespace` and deletes it.
fn remove_namespace(namespace: &str) {
    let pids = Command::new("ip")
        .args(["netns", "pids", namespace])
        .output()
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
        .unwrap_or_default();
    for pid in pids
        .lines()
        .filter_map(|line| line.trim().parse::<i32>().ok())
    {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let _ = Command::new("ip")
        .args(["netns", "delete", namespace])
        .stderr(Stdio::null())
        .status();
}

/// The directory whose files `ip netns exec` mounts over `/etc` for `namespace`.
fn etc_dir(namespace: &str) -> std::path::PathBuf {
    Path::new("/etc/netns").join(namespace)
}

/// Removes the namespaces of test processes that no longer run.
pub fn sweep_stale() {
    let etc_dirs = std::fs::read_dir("/etc/netns")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| entry.file_name().into_string().ok());
    for namespace in namespaces().into_iter().chain(etc_dirs) {
        let Some(rest) = namespace.strip_prefix(PREFIX) else {
            continue;
        };
        let owner = rest
            .split('-')
            .next()
            .and_then(|pid| pid.parse::<i32>().ok());
        if owner.is_some_and(|pid| !alive(pid)) {
            remove_namespace(&namespace);
            let _ = std::fs::remove_dir_all(etc_dir(&namespace));
        }
    }
}

/// One test host: a namespace with one interface, `eth0`, at `address`.
#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub namespace: String,
    pub address: Ipv4Addr,
    /// The switch's end of the host's cable.
    port: String,
}

impl Host {
    /// A command that runs `program` inside this host.
    pub fn command(&self, program: &Path) -> Command {
        let mut command = crate::harness::command(Path::new("ip"));
        command
            .args(["netns", "exec", &self.namespace])
            .arg(program);
        command
    }
}

/// A switch and the hosts plugged into it.
pub struct Network {
    prefix: String,
    switch: String,
    hosts: Vec<Host>,
}

impl Network {
    pub fn create() -> Network {
        sweep_stale();
        let prefix = format!(
            "{PREFIX}{}-{}-",
            std::process::id(),
            NETWORKS.fetch_add(1, Ordering::Relaxed)
        );
        let switch = format!("{prefix}sw");
        ip(&["netns", "add", &switch]);
        ip(&["-n", &switch, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        Network {
            prefix,
            switch,
            hosts: Vec::new(),
        }
    }

    /// Adds a host named `name`, plugged into the switch, at the next address.
    pub fn add_host(&mut self, name: &str) -> Host {
        let number = u8::try_from(self.hosts.len() + 2).expect("at most 250 hosts");
        let namespace = format!("{}{name}", self.prefix);
        let address = Ipv4Addr::new(SUBNET[0], SUBNET[1], SUBNET[2], number);
        let port = format!("p{number}");
        ip(&["netns", "add", &namespace]);
        ip(&["-n", &namespace, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &self.switch,
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &namespace,
        ]);
        ip(&["-n", &self.switch, "link", "set", &port, "master", "br0"]);
        ip(&["-n", &self.switch, "link", "set", &port, "up"]);
        ip(&[
            "-n",
            &namespace,
            "addr",
            "add",
            &format!("{address}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &namespace, "link", "set", "eth0", "up"]);
        let etc = etc_dir(&namespace);
        std::fs::create_dir_all(&etc).expect("create /etc/netns/NAMESPACE");
        std::fs::write(
            etc.join("hosts"),
            format!("127.0.0.1 localhost\n{address} {name}\n"),
        )
        .expect("the host's /etc/hosts");
        std::fs::write(etc.join("resolv.conf"), "nameserver 127.0.0.1\n")
            .expect("the host's /etc/resolv.conf");
        let host = Host {
            name: name.to_owned(),
            namespace,
            address,
            port,
        };
        self.hosts.push(host.clone());
        host
    }

    /// Unplugs the host's cable: it reaches no other host, and none reaches it.
    pub fn cut(&self, host: &Host) {
        ip(&["-n", &self.switch, "link", "set", &host.port, "down"]);
    }

    /// Plugs it back in.
    pub fn heal(&self, host: &Host) {
        ip(&["-n", &self.switch, "link", "set", &host.port, "up"]);
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if std::env::var_os("MUSTER_KEEP_HOSTS").is_some() {
            eprintln!(
                "keeping the test hosts (MUSTER_KEEP_HOSTS): {}",
                self.hosts
                    .iter()
                    .map(|host| format!("{} {}", host.namespace, host.address))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            return;
        }
        for host in &self.hosts {
            remove_namespace(&host.namespace);
            let _ = std::fs::remove_dir_all(etc_dir(&host.namespace));
        }
        remove_namespace(&self.switch);
    }
}

/// Moves the calling thread into `namespace`'s network (threads have their own); sockets it
/// makes afterwards live there.
pub fn enter(namespace: &str) {
    let file = std::fs::File::open(format!("/run/netns/{namespace}"))
        .unwrap_or_else(|error| panic!("open namespace {namespace}: {error}"));
    nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)
        .unwrap_or_else(|error| panic!("enter namespace {namespace}: {error}"));
}

/// A TCP forwarder from `listen` inside `namespace` to `target` in the test process's own network
/// (the machine's loopback): how hosts reach the shared PostgreSQL and MariaDB. It runs until the
/// test process ends.
pub fn forward(namespace: &str, listen: std::net::SocketAddrV4, target: std::net::SocketAddr) {
    let home = std::fs::File::open("/proc/thread-self/ns/net").expect("this thread's namespace");
    let namespace = namespace.to_owned();
    let (ready, bound) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        enter(&namespace);
        let listener = std::net::TcpListener::bind(listen).expect("bind the forwarder");
        ready.send(()).expect("the test waits");
        for client in listener.incoming().flatten() {
            let home = home.try_clone().expect("the home namespace");
            std::thread::spawn(move || {
                // Back home for the connection to the target.
                if nix::sched::setns(home, nix::sched::CloneFlags::CLONE_NEWNET).is_err() {
                    return;
                }
                let Ok(server) = std::net::TcpStream::connect(target) else {
                    return;
                };
                let (Ok(mut client_read), Ok(mut server_write)) =
                    (client.try_clone(), server.try_clone())
                else {
                    return;
                };
                let upstream = std::thread::spawn(move || {
                    let _ = std::io::copy(&mut client_read, &mut server_write);
                    let _ = server_write.shutdown(std::net::Shutdown::Write);
                });
                let (mut server_read, mut client_write) = (server, client);
                let _ = std::io::copy(&mut server_read, &mut client_write);
                let _ = client_write.shutdown(std::net::Shutdown::Both);
                let _ = upstream.join();
            });
        }
    });
    bound.recv().expect("the forwarder to listen");
}
