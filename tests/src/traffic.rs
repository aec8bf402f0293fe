//! A steady stream of requests, as a load balancer's users send them, and HAProxy's own sockets.
//!
//! [`RequestStream`] runs a few client threads that each send `GET /zato/ping` over a new
//! connection, one after another, to one address; every answer that is not a 200 with a server's
//! JSON counts as a failure. It runs until stopped, and at most [`RequestStream::LIMIT`].

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One GET; the status code and body, or `None` when the exchange failed.
pub fn get(address: SocketAddr, path: &str) -> Option<(u16, String)> {
    get_within(address, path, RequestStream::PATIENCE)
}

/// One GET that waits at most `patience` for each read.
fn get_within(address: SocketAddr, path: &str, patience: Duration) -> Option<(u16, String)> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    let (status, _, body) = exchange(address, &request, patience)?;
    Some((status, body))
}

/// Sends `request` (head and body) and reads the whole answer: its status, head and body.
pub fn exchange(
    address: SocketAddr,
    request: &str,
    read_timeout: Duration,
) -> Option<(u16, String, String)> {
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(5)).ok()?;
    stream.set_read_timeout(Some(read_timeout)).ok()?;
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, head.to_owned(), body.to_owned()))
}

/// [`get`] from inside a test host's network namespace.
pub fn get_from(namespace: &str, address: SocketAddr, path: &str) -> Option<(u16, String)> {
    let namespace = namespace.to_owned();
    let path = path.to_owned();
    std::thread::spawn(move || {
        crate::netns::enter(&namespace);
        get(address, &path)
    })
    .join()
    .ok()
    .flatten()
}

/// One HTTP/1.1 exchange from inside a test host's network namespace: `request` is the whole
/// request (head and body). Returns the status, the head's header lines and the body.
pub fn exchange_from(
    namespace: &str,
    address: SocketAddr,
    request: &str,
) -> Option<(u16, String, String)> {
    let namespace = namespace.to_owned();
    let request = request.to_owned();
    std::thread::spawn(move || {
        crate::netns::enter(&namespace);
        exchange(address, &request, Duration::from_secs(30))
    })
    .join()
    .ok()
    .flatten()
}

/// Each backend server's total of sessions (HAProxy's `stot`) on the stats socket: requests
/// HAProxy sent it, health checks not counted.
pub fn haproxy_sessions(stats_socket: &Path) -> BTreeMap<String, u64> {
    let stat = haproxy_command(stats_socket, "show stat");
    let mut lines = stat.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or_default()
        .trim_start_matches("# ")
        .split(',')
        .collect();
    let column = |name: &str| header.iter().position(|field| *field == name);
    let (Some(proxy), Some(server), Some(total)) =
        (column("pxname"), column("svname"), column("stot"))
    else {
        return BTreeMap::new();
    };
    lines
        .map(|line| line.split(',').collect::<Vec<&str>>())
        .filter(|fields| {
            fields.get(proxy) == Some(&"bck_http_plain")
                && fields
                    .get(server)
                    .is_some_and(|name| name.starts_with("http_plain--"))
        })
        .map(|fields| {
            (
                fields[server].trim_start_matches("http_plain--").to_owned(),
                fields
                    .get(total)
                    .and_then(|count| count.parse().ok())
                    .unwrap_or(0),
            )
        })
        .collect()
}

/// What a stream of requests saw.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub succeeded: u64,
    pub failed: u64,
    /// The first failures, described.
    pub failures: Vec<String>,
    /// When each of the first 1,000 failed requests was sent.
    pub failures_sent: Vec<Instant>,
    /// How many answers came from each server (the `server` of mock-zato's JSON).
    pub by_server: BTreeMap<String, u64>,
}

pub struct RequestStream {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl RequestStream {
    /// The longest a stream runs even if nobody stops it.
    pub const LIMIT: Duration = Duration::from_secs(600);

    /// How long a client waits for an answer unless told otherwise.
    pub const PATIENCE: Duration = Duration::from_secs(10);

    /// Starts `clients` threads sending `GET /zato/ping` to `address`.
    pub fn start(address: SocketAddr, clients: usize) -> RequestStream {
        RequestStream::start_from(None, address, clients)
    }

    /// The same from inside a test host's network namespace (see [`crate::netns`]).
    pub fn start_from(
        namespace: Option<&str>,
        address: SocketAddr,
        clients: usize,
    ) -> RequestStream {
        RequestStream::start_within(namespace, address, clients, Self::PATIENCE)
    }

    /// The same with clients that give up on (and count as failed) a request not answered
    /// within `patience`, as impatient users and their HTTP clients do.
    pub fn start_within(
        namespace: Option<&str>,
        address: SocketAddr,
        clients: usize,
        patience: Duration,
    ) -> RequestStream {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let threads = (0..clients)
            .map(|_| {
                let stop = stop.clone();
                let tally = tally.clone();
                let namespace = namespace.map(str::to_owned);
                std::thread::spawn(move || {
                    if let Some(namespace) = &namespace {
                        crate::netns::enter(namespace);
                    }
                    let started = Instant::now();
                    while !stop.load(Ordering::Relaxed) && started.elapsed() < Self::LIMIT {
                        let sent = Instant::now();
                        let answer = get_within(address, "/zato/ping", patience)
                            .filter(|_| sent.elapsed() <= patience);
                        let server = answer.as_ref().and_then(|(status, body)| {
                            let json: serde_json::Value = serde_json::from_str(body).ok()?;
                            (*status == 200).then(|| json["server"].as_str().map(str::to_owned))?
                        });
                        let mut tally = tally.lock().expect("the tally");
                        match server {
                            Some(server) => {
                                tally.succeeded += 1;
                                *tally.by_server.entry(server).or_default() += 1;
                            }
                            None => {
                                tally.failed += 1;
                                if tally.failures_sent.len() < 1000 {
                                    tally.failures_sent.push(sent);
                                }
                                if tally.failures.len() < 10 {
                                    let seconds = started.elapsed().as_secs_f64();
                                    tally
                                        .failures
                                        .push(format!("after {seconds:.3}s: {answer:?}"));
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        RequestStream {
            stop,
            tally,
            threads,
        }
    }

    /// How many of the failed requests (of the first 1,000) were sent at or after `instant`.
    pub fn failed_sent_since(tally: &Tally, instant: Instant) -> usize {
        tally
            .failures_sent
            .iter()
            .filter(|sent| **sent >= instant)
            .count()
    }

    /// What the stream saw so far.
    pub fn tally(&self) -> Tally {
        self.tally.lock().expect("the tally").clone()
    }

    /// Stops the clients and returns what they saw.
    pub fn stop(mut self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        self.tally()
    }
}

impl Drop for RequestStream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Sends one command to a HAProxy CLI socket (stats or master) and returns its answer.
pub fn haproxy_command(socket: &Path, command: &str) -> String {
    let exchange = || -> std::io::Result<String> {
        let mut stream = std::os::unix::net::UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.write_all(format!("{command}\n").as_bytes())?;
        stream.shutdown(std::net::Shutdown::Write)?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    };
    exchange().unwrap_or_default()
}

/// The backend's servers (without the `http_plain--` prefix) and their status column, as
/// `show stat` on the stats socket gives them; empty when HAProxy does not answer.
pub fn haproxy_servers(stats_socket: &Path) -> BTreeMap<String, String> {
    let answer = haproxy_command(stats_socket, "show stat -1 4 -1");
    let mut lines = answer.lines();
    let Some(header) = lines.next().and_then(|line| line.strip_prefix("# ")) else {
        return BTreeMap::new();
    };
    let columns: Vec<&str> = header.split(',').collect();
    let index = |name: &str| columns.iter().position(|column| *column == name);
    let (Some(name_at), Some(status_at)) = (index("svname"), index("status")) else {
        return BTreeMap::new();
    };
    lines
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            let name = fields.get(name_at)?.strip_prefix("http_plain--")?;
            Some((name.to_owned(), (*fields.get(status_at)?).to_owned()))
        })
        .collect()
}

/// Waits (at most `timeout`) until the backend holds exactly `expected` (server, status) pairs;
/// the error says what HAProxy had instead.
pub async fn await_backend(
    stats_socket: &Path,
    expected: &[(&str, &str)],
    timeout: Duration,
) -> Result<(), String> {
    let expected: BTreeMap<String, String> = expected
        .iter()
        .map(|(name, state)| ((*name).to_owned(), (*state).to_owned()))
        .collect();
    let waited = crate::wait_for(
        "HAProxy's backend",
        timeout,
        Duration::from_millis(50),
        || {
            let matches = haproxy_servers(stats_socket) == expected;
            async move { matches.then_some(()) }
        },
    )
    .await;
    waited.map_err(|error| {
        format!(
            "{error}: wanted {expected:?}, HAProxy has {:?}",
            haproxy_servers(stats_socket)
        )
    })
}

/// The pids of HAProxy's workers, current and old, as the master socket's `show proc` lists them.
pub fn haproxy_workers(master_socket: &Path) -> Vec<u32> {
    haproxy_command(master_socket, "show proc")
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let pid = fields.next()?.parse().ok()?;
            (fields.next()? == "worker").then_some(pid)
        })
        .collect()
}
