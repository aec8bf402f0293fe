//! The load-balancer role: HAProxy, run by the agent in master-worker mode, with a config laid out
//! like Zato's `zato.config` and a backend kept equal to the cluster's servers.
//!
//! Everything lives in the component directory (`COMPONENTS_DIR/CLUSTER/load-balancer-NAME`):
//! `zato.config`, the admin stats socket `stats.sock` (the runtime API), the master socket
//! `master.sock`, `haproxy.pid` (the master), `server-state` (servers' states carried over one
//! reload of the agent's, removed once it is done) and `haproxy.log` (HAProxy's own startup and reload messages; requests are logged to
//! syslog at `/dev/log`).
//!
//! A change of the backend's servers is made through the runtime API (`add server`, `set server
//! state`, `set server addr`, `del server`) and written to the file in the same step, after
//! `haproxy -c` accepted the new file; only a change that the runtime API cannot make (the
//! frontend, the check settings) reloads HAProxy, and a reload is hitless: the master starts new
//! workers that take the listening sockets over, and the old ones finish their requests.
//!
//! `config` holds the [`Plan`] and renders the file; `runtime` speaks to HAProxy's sockets; this
//! file runs the process (check, start, stop, reload) and brings it to a plan.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use muster_proto::haproxy::{BACKEND, FRONTEND, SERVER_PREFIX};
use muster_proto::v1::{self, LoadBalancerSettings};
use muster_proto::validate;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::files::{self, FileError};
use crate::zato::RunAs;

/// Why HAProxy could not be brought to its plan. Its words are what the load balancer reports
/// (`muster status`): HAProxy's own wherever it said something.
#[derive(Debug, thiserror::Error)]
pub enum HaProxyError {
    /// The plan, or where this host keeps the load balancer, cannot be written into HAProxy's
    /// config or command line as it is.
    #[error("refused: {0}")]
    Refused(String),
    /// A file of the load balancer could not be written, opened or moved.
    #[error("{file}: {}", file.source)]
    File {
        #[from]
        file: FileError,
    },
    /// HAProxy could not be run, or did not finish in time.
    #[error("cannot run `{command}`: {source}")]
    Run {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` did not finish within {COMMAND_TIMEOUT:?}")]
    Timeout { command: String },
    /// HAProxy's socket could not be reached, or did not answer in time.
    #[error("{0}")]
    Socket(String),
    /// HAProxy said no: `haproxy -c` rejected a config, a start or a reload failed, the runtime
    /// API refused a change; with what it logged or answered.
    #[error("{0}")]
    Refusal(String),
    /// Its master could not be signalled, or did not end.
    #[error("{0}")]
    Process(String),
}

impl HaProxyError {
    fn file(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> HaProxyError {
        let error = files::file_error(action, path);
        move |source| HaProxyError::from(error(source))
    }
}

mod config;
mod runtime;

pub use config::*;
pub use runtime::*;

/// How long HAProxy may take to start, check a config or answer its sockets.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a reload may take until the master runs a new worker.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(15);
/// How long old workers may finish their requests after a reload or a stop.
const HARD_STOP_AFTER: &str = "30s";
/// The longest path a unix socket can have (`sun_path` less its terminating zero).
const SOCKET_PATH_MAX: usize = 107;
/// `srv_admin_state` bits of `show servers state`: forced maintenance and forced drain.
const ADMIN_FORCED_MAINT: u32 = 0x01;
const ADMIN_FORCED_DRAIN: u32 = 0x08;

/// The files of one load balancer.
#[derive(Debug, Clone)]
pub struct Paths {
    pub dir: PathBuf,
    pub config: PathBuf,
    /// A new config waits here while `haproxy -c` checks it.
    pub candidate: PathBuf,
    pub stats_socket: PathBuf,
    pub master_socket: PathBuf,
    pub pidfile: PathBuf,
    pub state_file: PathBuf,
    pub log: PathBuf,
}

impl Paths {
    pub fn new(dir: &Path) -> Paths {
        Paths {
            dir: dir.to_owned(),
            config: dir.join("zato.config"),
            candidate: dir.join("zato.config.new"),
            stats_socket: dir.join("stats.sock"),
            master_socket: dir.join("master.sock"),
            pidfile: dir.join("haproxy.pid"),
            state_file: dir.join("server-state"),
            log: dir.join("haproxy.log"),
        }
    }

    /// Refuses a directory whose path could not be written into HAProxy's config or command line
    /// as it is, or is too long for a unix socket.
    fn check(&self) -> Result<(), HaProxyError> {
        let text = self.dir.display().to_string();
        if !text
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || "._-+/".contains(character))
        {
            return Err(HaProxyError::Refused(format!(
                "the load balancer's directory {text:?} may hold only letters, digits and '._-+/' \
                 to be written into HAProxy's config; choose another components_dir"
            )));
        }
        let longest = self.stats_socket.display().to_string().len();
        if longest > SOCKET_PATH_MAX {
            return Err(HaProxyError::Refused(format!(
                "the load balancer's socket {} is {longest} bytes long, more than a unix socket \
                 can have ({SOCKET_PATH_MAX}); choose a shorter components_dir",
                self.stats_socket.display()
            )));
        }
        Ok(())
    }
}

/// The binary named in a config's header.
fn binary_of(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|line| line.strip_prefix("# HAProxy binary: "))
}

/// Whether process `pid` runs HAProxy with this config.
fn runs_config(pid: i32, paths: &Paths) -> bool {
    let Ok(command_line) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let config = paths.config.display().to_string();
    command_line
        .split(|byte| *byte == 0)
        .any(|argument| argument == config.as_bytes())
}

fn parent_of(pid: i32) -> Option<i32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("PPid:"))?
        .trim()
        .parse()
        .ok()
}

/// The master's process, if one runs with this config: the one its pidfile names, or else (a
/// pidfile not written yet, or lost) the process running this config whose parent does not.
pub fn master_pid(paths: &Paths) -> Option<i32> {
    let recorded = std::fs::read_to_string(&paths.pidfile)
        .ok()
        .and_then(|text| text.lines().next()?.trim().parse::<i32>().ok())
        .filter(|pid| runs_config(*pid, paths));
    if recorded.is_some() {
        return recorded;
    }
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .find(|pid| {
            runs_config(*pid, paths)
                && parent_of(*pid).is_none_or(|parent| !runs_config(parent, paths))
        })
}

/// HAProxy as the agent runs it for one load balancer.
pub struct HaProxy<'a> {
    pub paths: &'a Paths,
    pub run_as: Option<&'a RunAs>,
}

/// What converging a running load balancer did.
#[derive(Debug, Default)]
pub struct Applied {
    /// A note for the status report that is not an error (a server waiting to be removed).
    pub note: String,
}

impl HaProxy<'_> {
    fn own(&self, path: &Path) -> Result<(), HaProxyError> {
        self.run_as.map_or(Ok(()), |user| {
            user.give(path).map_err(HaProxyError::Process)
        })
    }

    fn log_length(&self) -> u64 {
        std::fs::metadata(&self.paths.log)
            .map(|metadata| metadata.len())
            .unwrap_or(0)
    }

    /// What HAProxy wrote to its log since `offset`: its alerts, or everything if none.
    fn log_since(&self, offset: u64) -> String {
        let text = std::fs::read(&self.paths.log).unwrap_or_default();
        let start = usize::try_from(offset).unwrap_or(0).min(text.len());
        let text = String::from_utf8_lossy(&text[start..]).into_owned();
        let alerts: Vec<&str> = text
            .lines()
            .filter(|line| line.contains("[ALERT]"))
            .collect();
        let chosen = if alerts.is_empty() {
            text.lines().collect::<Vec<_>>()
        } else {
            alerts
        };
        chosen.join("\n").trim().to_owned()
    }

    /// Runs HAProxy with `args`, its output appended to `haproxy.log`; returns its exit status.
    async fn run(
        &self,
        bin: &str,
        args: &[&str],
    ) -> Result<std::process::ExitStatus, HaProxyError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.paths.log)
            .map_err(HaProxyError::file("open", &self.paths.log))?;
        let errors = log
            .try_clone()
            .map_err(HaProxyError::file("open", &self.paths.log))?;
        let mut command = tokio::process::Command::new(bin);
        command
            .args(args)
            .current_dir(&self.paths.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(errors)
            .kill_on_drop(false);
        if let Some(user) = self.run_as {
            command.uid(user.uid).gid(user.gid);
        }
        let shown = format!("{bin} {}", args.join(" "));
        let mut child = command.spawn().map_err(|source| HaProxyError::Run {
            command: shown.clone(),
            source,
        })?;
        match tokio::time::timeout(COMMAND_TIMEOUT, child.wait()).await {
            Ok(Ok(status)) => Ok(status),
            Ok(Err(source)) => Err(HaProxyError::Run {
                command: shown,
                source,
            }),
            Err(_) => {
                let _ = child.start_kill();
                Err(HaProxyError::Timeout { command: shown })
            }
        }
    }

    /// Writes `text` as the candidate config and has HAProxy check it; on success the candidate
    /// is ready to be moved into place, on failure it is removed and HAProxy's words returned.
    async fn check_candidate(&self, bin: &str, text: &str) -> Result<(), HaProxyError> {
        files::write_atomic(&self.paths.candidate, text.as_bytes(), 0o640)?;
        self.own(&self.paths.candidate)?;
        let offset = self.log_length();
        let candidate = self.paths.candidate.display().to_string();
        // Without -q: HAProxy names what it rejects, and that text reaches `muster status`.
        let status = self.run(bin, &["-c", "-f", &candidate]).await;
        match status {
            Ok(status) if status.success() => Ok(()),
            Ok(status) => {
                let _ = std::fs::remove_file(&self.paths.candidate);
                Err(HaProxyError::Refusal(format!(
                    "`haproxy -c` rejected the new config ({status}); the running HAProxy and \
                     its file are left as they were: {}",
                    self.log_since(offset)
                )))
            }
            Err(error) => {
                let _ = std::fs::remove_file(&self.paths.candidate);
                Err(error)
            }
        }
    }

    fn install_candidate(&self) -> Result<(), HaProxyError> {
        std::fs::rename(&self.paths.candidate, &self.paths.config)
            .map_err(HaProxyError::file("move into place", &self.paths.candidate))
    }

    /// Starts HAProxy (master-worker, daemon) with `plan`'s config, written and checked first.
    pub async fn start(&self, plan: &Plan) -> Result<(), HaProxyError> {
        self.paths.check()?;
        let text = plan.render(self.paths);
        let current = std::fs::read_to_string(&self.paths.config).ok();
        if current.as_deref() != Some(text.as_str()) {
            self.check_candidate(&plan.settings.haproxy_bin, &text)
                .await?;
            self.install_candidate()?;
        }
        let offset = self.log_length();
        let pidfile = self.paths.pidfile.display().to_string();
        let master = format!("{},mode,600", self.paths.master_socket.display());
        let config = self.paths.config.display().to_string();
        let status = self
            .run(
                &plan.settings.haproxy_bin,
                &["-W", "-D", "-p", &pidfile, "-S", &master, "-f", &config],
            )
            .await?;
        if !status.success() {
            return Err(HaProxyError::Refusal(format!(
                "HAProxy did not start ({status}): {}",
                self.log_since(offset)
            )));
        }
        // Started means: its master runs and its runtime API answers.
        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            if master_pid(self.paths).is_some()
                && command(&self.paths.stats_socket, "show info").await.is_ok()
            {
                break;
            }
            if Instant::now() >= deadline {
                return Err(HaProxyError::Refusal(format!(
                    "HAProxy started but its master or runtime API did not come up within \
                     {COMMAND_TIMEOUT:?}: {}",
                    self.log_since(offset)
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!(config = %config, "HAProxy started");
        Ok(())
    }

    /// Stops HAProxy softly: workers finish their requests (at most `hard-stop-after`), then the
    /// master leaves. Returns once it is gone.
    pub async fn stop(&self) -> Result<(), HaProxyError> {
        let Some(pid) = master_pid(self.paths) else {
            return Ok(());
        };
        let process = nix::unistd::Pid::from_raw(pid);
        nix::sys::signal::kill(process, nix::sys::signal::Signal::SIGUSR1).map_err(|error| {
            HaProxyError::Process(format!("cannot stop HAProxy (pid {pid}): {error}"))
        })?;
        let deadline = Instant::now() + Duration::from_secs(35);
        while Instant::now() < deadline {
            if nix::sys::signal::kill(process, None).is_err() || master_pid(self.paths).is_none() {
                tracing::info!(pid, "HAProxy stopped");
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = nix::sys::signal::kill(process, nix::sys::signal::Signal::SIGTERM);
        Err(HaProxyError::Process(format!(
            "HAProxy (pid {pid}) did not stop within 35s; sent SIGTERM"
        )))
    }

    /// Brings a running HAProxy to `plan`: a new config is checked first; backend changes go
    /// through the runtime API, other changes through a hitless reload (or a restart when the
    /// binary changed); then the live servers are compared with the plan and put right.
    pub async fn converge(&self, plan: &Plan) -> Result<Applied, HaProxyError> {
        self.paths.check()?;
        let text = plan.render(self.paths);
        let current = std::fs::read_to_string(&self.paths.config).unwrap_or_default();
        if current != text {
            self.check_candidate(&plan.settings.haproxy_bin, &text)
                .await?;
            if binary_of(&current) != Some(plan.settings.haproxy_bin.as_str()) {
                tracing::info!(bin = %plan.settings.haproxy_bin, "HAProxy binary changed; restarting HAProxy");
                self.stop().await?;
                self.install_candidate()?;
                self.start(plan).await?;
                return Ok(Applied::default());
            }
            let needs_reload = outside_backend_block(&current) != outside_backend_block(&text)
                || plan
                    .servers
                    .iter()
                    .any(|server| server.address.parse::<std::net::IpAddr>().is_err());
            if needs_reload {
                self.save_server_state().await?;
                self.install_candidate()?;
                self.reload().await?;
            } else {
                let applied = self.sync_servers(plan).await?;
                self.install_candidate()?;
                return Ok(applied);
            }
        }
        self.sync_servers(plan).await
    }

    async fn workers(&self) -> Result<(Vec<i32>, u32), HaProxyError> {
        let answer = command(&self.paths.master_socket, "show proc").await?;
        let failed = answer
            .split("[failed: ")
            .nth(1)
            .and_then(|rest| rest.split(']').next())
            .and_then(|count| count.trim().parse().ok())
            .unwrap_or(0);
        let mut workers = Vec::new();
        let mut section = "";
        for line in answer.lines() {
            if line.starts_with('#') {
                section = line;
                continue;
            }
            let mut fields = line.split_whitespace();
            if let (Some(pid), Some("worker")) = (fields.next(), fields.next())
                && section == "# workers"
                && let Ok(pid) = pid.parse()
            {
                workers.push(pid);
            }
        }
        Ok((workers, failed))
    }

    /// A hitless reload through the master socket; waits for the new worker.
    pub async fn reload(&self) -> Result<(), HaProxyError> {
        let (before, failed_before) = self.workers().await?;
        let offset = self.log_length();
        // The master closes the connection as it re-executes itself.
        let _ = command(&self.paths.master_socket, "reload").await;
        let deadline = Instant::now() + RELOAD_TIMEOUT;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let Ok((workers, failed)) = self.workers().await else {
                continue;
            };
            if failed > failed_before {
                return Err(HaProxyError::Refusal(format!(
                    "HAProxy's reload failed; it runs on with the previous config: {}",
                    self.log_since(offset)
                )));
            }
            if !workers.is_empty() && workers.iter().all(|pid| !before.contains(pid)) {
                tracing::info!(workers = ?workers, "HAProxy reloaded");
                // The saved states served this reload; a later one (an operator's) must not
                // start from them once they are stale.
                let _ = std::fs::remove_file(&self.paths.state_file);
                return Ok(());
            }
        }
        Err(HaProxyError::Refusal(format!(
            "HAProxy did not start a new worker within {RELOAD_TIMEOUT:?} of a reload: {}",
            self.log_since(offset)
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(servers: Vec<Server>) -> Plan {
        Plan {
            cluster: "prod".into(),
            name: "load-balancer".into(),
            port: 11223,
            settings: muster_proto::haproxy::settings(&LoadBalancerSettings::default()).unwrap(),
            servers,
        }
    }

    fn server(name: &str, address: &str, drain: bool) -> Server {
        Server {
            name: name.into(),
            address: address.into(),
            port: 17010,
            drain,
        }
    }

    #[test]
    fn the_config_is_laid_out_like_zatos() {
        let paths = Paths::new(Path::new("/opt/zato/prod/load-balancer-lb"));
        let text = plan(vec![
            server("server1", "10.0.0.1", false),
            server("server2", "10.0.0.2", true),
        ])
        .render(&paths);
        let expected_block = "# ZATO begin backend bck_http_plain
    server http_plain--server1 10.0.0.1:17010 check inter 2s rise 2 fall 2 fastinter 250ms downinter 250ms observe layer4 error-limit 1 on-error mark-down # ZATO backend bck_http_plain:server--server1
    server http_plain--server2 10.0.0.2:17010 check inter 2s rise 2 fall 2 fastinter 250ms downinter 250ms observe layer4 error-limit 1 on-error mark-down disabled # ZATO backend bck_http_plain:server--server2
# ZATO end backend bck_http_plain";
        assert!(text.contains(expected_block), "{text}");
        for line in [
            "frontend front_http_plain",
            "    bind 0.0.0.0:11223",
            "    monitor-uri /zato-lb-alive",
            "    option forwardfor",
            "    option httpchk GET /zato/ping",
            "    stats socket /opt/zato/prod/load-balancer-lb/stats.sock mode 600 level admin expose-fd listeners",
            "    retry-on conn-failure empty-response",
            "    option redispatch 1",
        ] {
            assert!(text.lines().any(|candidate| candidate == line), "{line}");
        }
    }

    #[test]
    fn server_changes_stay_inside_the_backend_block() {
        let paths = Paths::new(Path::new("/lb"));
        let one = plan(vec![server("server1", "10.0.0.1", false)]).render(&paths);
        let two = plan(vec![
            server("server1", "10.0.0.9", true),
            server("server2", "10.0.0.2", false),
        ])
        .render(&paths);
        assert_eq!(outside_backend_block(&one), outside_backend_block(&two));
        let mut slower = plan(vec![server("server1", "10.0.0.1", false)]);
        slower.settings.check_inter_ms = 5000;
        assert_ne!(
            outside_backend_block(&one),
            outside_backend_block(&slower.render(&paths))
        );
        assert_eq!(binary_of(&one), Some("haproxy"));
    }

    #[test]
    fn values_that_would_inject_config_are_refused() {
        let component = |name: &str, address: &str| v1::Component {
            role: v1::Role::LoadBalancer as i32,
            name: "lb".into(),
            cluster: "prod".into(),
            port: 11223,
            backends: vec![v1::BackendServer {
                name: name.into(),
                address: address.into(),
                port: 17010,
                drain: false,
            }],
            ..Default::default()
        };
        for (name, address) in [
            ("server1\n    server evil 6.6.6.6:80", "10.0.0.1"),
            ("server 1", "10.0.0.1"),
            ("server#1", "10.0.0.1"),
            ("server1", "10.0.0.1 backup"),
            ("server1", "10.0.0.1#"),
        ] {
            let error = Plan::from_component(&component(name, address))
                .unwrap_err()
                .to_string();
            assert!(
                error.starts_with("refused: invalid backend server"),
                "{error}"
            );
        }
        Plan::from_component(&component("server1", "10.0.0.1")).unwrap();
    }

    #[test]
    fn runtime_answers_are_parsed() {
        let state = "1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port
2 bck_http_plain 1 http_plain--s1 127.0.0.1 0 0 1 1 602 8 2 0 6 0 0 0 - 18001 - 0 0 - - 0
2 bck_http_plain 2 http_plain--s2 127.0.0.2 0 8 1 1 0 1 0 0 2 0 0 0 - 18002 - 0 0 - - 0
";
        assert_eq!(
            parse_servers_state(state),
            [
                LiveServer {
                    name: "s1".into(),
                    address: "127.0.0.1".into(),
                    port: 18001,
                    admin_state: 0
                },
                LiveServer {
                    name: "s2".into(),
                    address: "127.0.0.2".into(),
                    port: 18002,
                    admin_state: 8
                },
            ]
        );
        let stat = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr
bck_http_plain,http_plain--s1,0,0,3,0,,0,0,0,,0,,0,0,0,0,DOWN,1,1,0,1,1,602,602,,1,2,1,,0,,2,0,,0,L4CON,,0,0,0,0,0,0,0,,,,0,0,0,,,,,-1,Connection refused,,0,0,0,0,,,,Layer4 connection problem,,2,2,0,,,,127.0.0.1:18001
bck_http_plain,http_plain--s2,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1,1,0,,,0,,,1,2,2,,0,,2,0,,0,L7OK,200,,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,\"Layer7 check passed, code 200\",,2,2,4,,,,127.0.0.2:18002
";
        let states = parse_stat(stat);
        assert_eq!(states.len(), 2);
        assert_eq!(states[0].name, "s1");
        assert_eq!(states[0].state, "DOWN");
        assert_eq!(states[0].sessions, 3);
        assert_eq!(states[0].check, "L4CON Layer4 connection problem");
        assert_eq!(states[1].state, "UP");
        assert_eq!(states[1].check, "L7OK 200 Layer7 check passed, code 200");
        assert_eq!(states[1].address, "127.0.0.2:18002");
    }
}
