//! The cluster's rules, as pure functions: the store gathers what they need and calls them inside
//! its transaction, then writes what they decide. A rule is tested here in milliseconds, without a
//! database.

/// A server of the cluster, as the choice of the scheduler's target sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerCandidate {
    pub name: String,
    /// The host it is assigned to.
    pub host: String,
    /// Its host is up (heartbeats arrive) and not drained.
    pub host_up: bool,
    /// It reports healthy.
    pub healthy: bool,
}

impl ServerCandidate {
    fn eligible(&self) -> bool {
        self.host_up && self.healthy
    }
}

/// A new server for the scheduler to point at, and why it moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerMove {
    pub server: String,
    pub host: String,
    pub reason: String,
}

impl SchedulerMove {
    /// The `scheduler.target` event's message.
    pub fn message(&self) -> String {
        format!(
            "scheduler now points at server {} on host {} ({})",
            self.server, self.host, self.reason
        )
    }
}

/// Where the cluster's scheduler points: at `current` while its host is up and it reports healthy,
/// otherwise at the first healthy server (by name) on an up host. `None` means no change: the
/// current one is fine, or no server is healthy (a scheduler pointed at nothing better stays).
pub fn scheduler_target(current: &str, servers: &[ServerCandidate]) -> Option<SchedulerMove> {
    let current_server = servers.iter().find(|server| server.name == current);
    if current_server.is_some_and(ServerCandidate::eligible) {
        return None;
    }
    let chosen = servers
        .iter()
        .filter(|server| server.eligible())
        .min_by(|left, right| left.name.cmp(&right.name))?;
    let reason = match current_server {
        None if current.is_empty() => "the first healthy server".to_owned(),
        None => format!("server {current} was unassigned"),
        Some(server) if !server.host_up => {
            format!("host {} of server {current} is down", server.host)
        }
        Some(server) => format!("server {current} on host {} is not healthy", server.host),
    };
    Some(SchedulerMove {
        server: chosen.name.clone(),
        host: chosen.host.clone(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(name: &str, host: &str, host_up: bool, healthy: bool) -> ServerCandidate {
        ServerCandidate {
            name: name.to_owned(),
            host: host.to_owned(),
            host_up,
            healthy,
        }
    }

    #[test]
    fn a_healthy_target_on_an_up_host_stays() {
        let servers = [
            server("server1", "app-1", true, true),
            server("server2", "app-2", true, true),
        ];
        assert_eq!(scheduler_target("server2", &servers), None);
    }

    #[test]
    fn the_first_target_is_the_first_healthy_server_by_name() {
        let servers = [
            server("server3", "app-3", true, true),
            server("server1", "app-1", true, false),
            server("server2", "app-2", true, true),
        ];
        let moved = scheduler_target("", &servers).unwrap();
        assert_eq!(
            (moved.server.as_str(), moved.host.as_str()),
            ("server2", "app-2")
        );
        assert_eq!(
            moved.message(),
            "scheduler now points at server server2 on host app-2 (the first healthy server)"
        );
    }

    #[test]
    fn the_target_moves_off_a_down_host_an_unhealthy_server_or_an_unassigned_one() {
        let down = [
            server("server1", "app-1", false, true),
            server("server2", "app-2", true, true),
        ];
        assert_eq!(
            scheduler_target("server1", &down).unwrap().reason,
            "host app-1 of server server1 is down"
        );
        let unhealthy = [
            server("server1", "app-1", true, false),
            server("server2", "app-2", true, true),
        ];
        assert_eq!(
            scheduler_target("server1", &unhealthy).unwrap().reason,
            "server server1 on host app-1 is not healthy"
        );
        let gone = [server("server2", "app-2", true, true)];
        assert_eq!(
            scheduler_target("server1", &gone).unwrap().reason,
            "server server1 was unassigned"
        );
    }

    #[test]
    fn with_no_healthy_server_on_an_up_host_nothing_changes() {
        let servers = [
            server("server1", "app-1", false, true),
            server("server2", "app-2", true, false),
        ];
        assert_eq!(scheduler_target("server1", &servers), None);
        assert_eq!(scheduler_target("", &servers), None);
        assert_eq!(scheduler_target("server1", &[]), None);
    }
}
