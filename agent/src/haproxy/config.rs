//! What one load balancer must be ([`Plan`], every value checked) and its `zato.config`, laid
//! out like Zato's.

use super::*;

/// One backend server as the agent wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    pub name: String,
    pub address: String,
    pub port: u16,
    pub drain: bool,
}

/// What one load balancer must be, every value checked.
#[derive(Debug, Clone)]
pub struct Plan {
    pub cluster: String,
    pub name: String,
    pub port: u16,
    pub settings: LoadBalancerSettings,
    pub servers: Vec<Server>,
}

impl Plan {
    /// Checks every value that reaches the config file; the error names the offending one.
    pub fn from_component(component: &v1::Component) -> Result<Plan, HaProxyError> {
        let refused = |error: validate::Invalid| HaProxyError::Refused(error.to_string());
        validate::name("cluster name", &component.cluster).map_err(refused)?;
        validate::name("load balancer name", &component.name).map_err(refused)?;
        let port = u16::try_from(component.port)
            .ok()
            .filter(|port| *port > 0)
            .ok_or_else(|| {
                HaProxyError::Refused(format!("invalid frontend port {}", component.port))
            })?;
        let settings =
            muster_proto::haproxy::settings(&component.load_balancer.clone().unwrap_or_default())
                .map_err(refused)?;
        let mut servers = Vec::new();
        for server in &component.backends {
            validate::name("backend server name", &server.name).map_err(refused)?;
            validate::host("backend server address", &server.address).map_err(refused)?;
            let server_port = u16::try_from(server.port)
                .ok()
                .filter(|port| *port > 0)
                .ok_or_else(|| {
                    HaProxyError::Refused(format!(
                        "invalid port {} of backend server {}",
                        server.port, server.name
                    ))
                })?;
            servers.push(Server {
                name: server.name.clone(),
                address: server.address.clone(),
                port: server_port,
                drain: server.drain,
            });
        }
        servers.sort_by(|left, right| left.name.cmp(&right.name));
        servers.dedup_by(|left, right| left.name == right.name);
        Ok(Plan {
            cluster: component.cluster.clone(),
            name: component.name.clone(),
            port,
            settings,
            servers,
        })
    }

    /// The address to ask for `/zato-lb-alive`.
    pub fn probe_address(&self) -> std::net::IpAddr {
        let address: std::net::IpAddr = self
            .settings
            .frontend_address
            .parse()
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        match address {
            std::net::IpAddr::V4(v4) if v4.is_unspecified() => {
                std::net::IpAddr::from([127, 0, 0, 1])
            }
            std::net::IpAddr::V6(v6) if v6.is_unspecified() => {
                std::net::IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])
            }
            other => other,
        }
    }

    fn server_line(&self, server: &Server) -> String {
        let line = muster_proto::haproxy::server_line(
            &server.name,
            &server.address,
            u32::from(server.port),
            &self.settings,
        );
        if server.drain {
            // A drained server stays out of rotation after a reload too.
            line.replacen(" # ZATO", " disabled # ZATO", 1)
        } else {
            line
        }
    }

    /// The whole `zato.config`.
    pub fn render(&self, paths: &Paths) -> String {
        let begin = format!("# ZATO begin backend {BACKEND}");
        let end = format!("# ZATO end backend {BACKEND}");
        let servers: String = self
            .servers
            .iter()
            .map(|server| format!("    {}\n", self.server_line(server)))
            .collect();
        format!(
            "# HAProxy config of load balancer {name} of cluster {cluster}, laid out like Zato's zato.config.
# Written by muster-agent; edits are overwritten. Backend servers change through HAProxy's runtime
# API and are written here in the same step, so a reload keeps them.
# HAProxy binary: {bin}

global
    log /dev/log local0 info
    log-tag haproxy-{cluster}-{name}
    stats socket {stats} mode 600 level admin expose-fd listeners
    stats timeout 2m
    server-state-file {state}
    hard-stop-after {HARD_STOP_AFTER}
    # Refuse to start beside another process on the same port rather than share it.
    noreuseport

defaults
    log global
    mode http
    option httplog
    option dontlognull
    # A request whose server cannot be reached (refused, or silent past `timeout connect`), or
    # closes without answering, is sent to another.
    retries {retries}
    option redispatch 1
    retry-on conn-failure empty-response
    timeout connect {connect_timeout}
    timeout client 60s
    timeout server {server_timeout}
    timeout http-request 10s
    timeout http-keep-alive 10s
    timeout check 2s
    load-server-state-from-file global

backend {BACKEND}
    mode http
    balance roundrobin
    option httpchk GET /zato/ping
    http-check expect status 200
    # Every server's check: {check}

{begin}
{servers}{end}

frontend {FRONTEND}
    mode http
    bind {bind}
    default_backend {BACKEND}
    option forwardfor
    option httplog
    log global
    monitor-uri /zato-lb-alive
",
            name = self.name,
            cluster = self.cluster,
            bin = self.settings.haproxy_bin,
            stats = paths.stats_socket.display(),
            state = paths.state_file.display(),
            check = muster_proto::haproxy::check_keywords(&self.settings),
            retries = self.settings.retries,
            connect_timeout =
                muster_proto::haproxy::duration_text(u64::from(self.settings.connect_timeout_ms)),
            server_timeout =
                muster_proto::haproxy::duration_text(u64::from(self.settings.server_timeout_ms)),
            bind = muster_proto::haproxy::address_text(
                &self.settings.frontend_address,
                u32::from(self.port)
            ),
        )
    }
}

/// The config without the lines of the ZATO backend block: what only a reload can change.
pub(super) fn outside_backend_block(text: &str) -> Vec<&str> {
    let begin = format!("# ZATO begin backend {BACKEND}");
    let end = format!("# ZATO end backend {BACKEND}");
    let mut inside = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.trim() == begin {
            inside = true;
        } else if line.trim() == end {
            inside = false;
        } else if !inside {
            lines.push(line);
        }
    }
    lines
}
