//! HAProxy's runtime API: its sockets, the servers' state it shows, and changes to the backend
//! made without a reload.

use super::*;

/// A server as `show servers state` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveServer {
    /// Without the `http_plain--` prefix.
    pub name: String,
    pub address: String,
    pub port: u16,
    pub admin_state: u32,
}

/// Parses `show servers state BACKEND` (format 1).
pub fn parse_servers_state(text: &str) -> Vec<LiveServer> {
    let mut header: Vec<&str> = Vec::new();
    let mut servers = Vec::new();
    for line in text.lines() {
        if let Some(names) = line.strip_prefix("# ") {
            header = names.split_whitespace().collect();
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if header.is_empty() || fields.len() < header.len() {
            continue;
        }
        let field = |name: &str| {
            header
                .iter()
                .position(|column| *column == name)
                .and_then(|index| fields.get(index).copied())
        };
        let (Some(be_name), Some(full_name)) = (field("be_name"), field("srv_name")) else {
            continue;
        };
        let Some(name) = full_name.strip_prefix(SERVER_PREFIX) else {
            continue;
        };
        if be_name != BACKEND {
            continue;
        }
        servers.push(LiveServer {
            name: name.to_owned(),
            address: field("srv_addr").unwrap_or_default().to_owned(),
            port: field("srv_port")
                .and_then(|port| port.parse().ok())
                .unwrap_or_default(),
            admin_state: field("srv_admin_state")
                .and_then(|state| state.parse().ok())
                .unwrap_or_default(),
        });
    }
    servers
}

/// Splits one CSV line of `show stat`; HAProxy quotes a field holding a comma.
pub(super) fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut characters = line.chars().peekable();
    while let Some(character) = characters.next() {
        match character {
            '"' if quoted && characters.peek() == Some(&'"') => {
                current.push('"');
                characters.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut current)),
            other => current.push(other),
        }
    }
    fields.push(current);
    fields
}

/// Parses `show stat -1 4 -1` into the backend's servers as HAProxy sees them, by name.
pub fn parse_stat(text: &str) -> Vec<v1::BackendServerState> {
    let mut lines = text.lines();
    let Some(header) = lines.next().and_then(|line| line.strip_prefix("# ")) else {
        return Vec::new();
    };
    let header = csv_fields(header);
    let column = |name: &str| header.iter().position(|column| column == name);
    let columns = [
        "pxname",
        "svname",
        "status",
        "check_status",
        "check_code",
        "check_desc",
        "scur",
        "addr",
    ]
    .map(column);
    let mut states: Vec<v1::BackendServerState> = lines
        .filter_map(|line| {
            let fields = csv_fields(line);
            let get = |index: usize| {
                columns[index]
                    .and_then(|position| fields.get(position))
                    .map(String::as_str)
                    .unwrap_or_default()
            };
            if get(0) != BACKEND {
                return None;
            }
            let name = get(1).strip_prefix(SERVER_PREFIX)?;
            let check = [get(3), get(4), get(5)]
                .into_iter()
                .filter(|part| !part.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            Some(v1::BackendServerState {
                name: name.to_owned(),
                address: get(7).to_owned(),
                state: get(2).to_owned(),
                check,
                sessions: get(6).parse().unwrap_or_default(),
                status: v1::BackendStatus::from_haproxy(get(2)) as i32,
            })
        })
        .collect();
    states.sort_by(|left, right| left.name.cmp(&right.name));
    states
}

/// Sends one command to a HAProxy CLI socket and returns its answer.
pub async fn command(socket: &Path, command: &str) -> Result<String, HaProxyError> {
    let exchange = async {
        let mut stream = tokio::net::UnixStream::connect(socket).await?;
        stream.write_all(format!("{command}\n").as_bytes()).await?;
        stream.shutdown().await?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await?;
        Ok::<_, std::io::Error>(answer)
    };
    match tokio::time::timeout(COMMAND_TIMEOUT, exchange).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(error)) => Err(HaProxyError::Socket(format!(
            "cannot reach HAProxy's socket {}: {error}",
            socket.display()
        ))),
        Err(_) => Err(HaProxyError::Socket(format!(
            "HAProxy's socket {} did not answer `{command}` within {COMMAND_TIMEOUT:?}",
            socket.display()
        ))),
    }
}

pub(super) fn server_ref(name: &str) -> String {
    format!("{BACKEND}/{SERVER_PREFIX}{name}")
}

impl HaProxy<'_> {
    /// A runtime API command, through the stats socket or, should that not answer (its file
    /// removed or replaced), through the master socket to the current worker.
    pub(super) async fn runtime(&self, text: &str) -> Result<String, HaProxyError> {
        match command(&self.paths.stats_socket, text).await {
            Ok(answer) => Ok(answer),
            Err(error) => command(&self.paths.master_socket, &format!("@1 {text}"))
                .await
                .map_err(|_| error),
        }
    }

    /// Runs a runtime API command that changes something; HAProxy's refusal comes back verbatim.
    pub(super) async fn change(&self, text: &str) -> Result<(), HaProxyError> {
        let answer = self.runtime(text).await?;
        let answer = answer.trim();
        let accepted = answer.is_empty()
            || [
                "New server registered.",
                "Server deleted.",
                "IP changed from",
                "port changed from",
                "no need to change",
            ]
            .iter()
            .any(|success| answer.starts_with(success));
        if accepted {
            tracing::info!(command = %text, "HAProxy runtime change applied");
            Ok(())
        } else {
            Err(HaProxyError::Refusal(format!(
                "HAProxy refused `{text}`: {answer}"
            )))
        }
    }

    /// Makes the live backend hold exactly the plan's servers, in the planned states.
    pub(super) async fn sync_servers(&self, plan: &Plan) -> Result<Applied, HaProxyError> {
        let live = parse_servers_state(
            &self
                .runtime(&format!("show servers state {BACKEND}"))
                .await?,
        );
        let live: BTreeMap<&str, &LiveServer> = live
            .iter()
            .map(|server| (server.name.as_str(), server))
            .collect();
        let mut applied = Applied::default();
        for server in &plan.servers {
            let reference = server_ref(&server.name);
            let wanted_state = if server.drain { "drain" } else { "ready" };
            let Some(existing) = live.get(server.name.as_str()) else {
                let address =
                    muster_proto::haproxy::address_text(&server.address, u32::from(server.port));
                self.change(&format!(
                    "add server {reference} {address} {}",
                    muster_proto::haproxy::check_keywords(&plan.settings)
                ))
                .await?;
                self.change(&format!("enable health {reference}")).await?;
                self.change(&format!("set server {reference} state {wanted_state}"))
                    .await?;
                // Out of rotation until its checks pass, not assumed up. HAProxy 2.6 takes no
                // health change while a server is in maintenance (where `add server` puts it), so
                // this comes after the state: before it, the new server left maintenance UP and
                // took requests it could not answer yet (503s when every retry hit one).
                self.change(&format!("set server {reference} health down"))
                    .await?;
                continue;
            };
            if existing.address != server.address || existing.port != server.port {
                self.change(&format!(
                    "set server {reference} addr {} port {}",
                    server.address, server.port
                ))
                .await?;
                // Nothing may listen at the new address yet (the server restarts there, and a
                // real Zato server takes seconds): out of rotation until its checks pass there.
                self.change(&format!("set server {reference} health down"))
                    .await?;
            }
            let out_of_rotation =
                existing.admin_state & (ADMIN_FORCED_MAINT | ADMIN_FORCED_DRAIN) != 0;
            if server.drain != out_of_rotation {
                self.change(&format!("set server {reference} state {wanted_state}"))
                    .await?;
            }
        }
        let wanted: Vec<&str> = plan
            .servers
            .iter()
            .map(|server| server.name.as_str())
            .collect();
        for (name, existing) in live {
            if wanted.contains(&name) {
                continue;
            }
            let reference = server_ref(name);
            if existing.admin_state & ADMIN_FORCED_MAINT == 0 {
                self.change(&format!("set server {reference} state maint"))
                    .await?;
            }
            // Refused while requests are still under way on it: tried again at the next pass.
            if let Err(refused) = self.change(&format!("del server {reference}")).await {
                tracing::info!(server = %name, reason = %refused, "backend server not removed yet");
                applied.note = format!("removing server {name}: {refused}");
            }
        }
        Ok(applied)
    }

    /// Writes the live servers' states where the next worker reads them, so a reload keeps them.
    pub(super) async fn save_server_state(&self) -> Result<(), HaProxyError> {
        let state = self.runtime("show servers state").await?;
        files::write_atomic(&self.paths.state_file, state.as_bytes(), 0o640)?;
        self.own(&self.paths.state_file)
    }

    /// The backend's servers as HAProxy sees them.
    pub async fn backend_states(&self) -> Result<Vec<v1::BackendServerState>, HaProxyError> {
        Ok(parse_stat(&self.runtime("show stat -1 4 -1").await?))
    }
}
