//! `check-config`, `start` and `stop`: a component's directory read back, its pidfile and its
//! process.

use super::*;

// start, stop, check-config, and the component process

#[derive(Debug)]
pub(crate) struct Component {
    pub(crate) kind: String,
    /// The address it binds, as its config file says (`0.0.0.0` for all).
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) odb: Option<Odb>,
    /// The server's token, by which it finds its name and cluster in the ODB.
    pub(crate) token: Option<String>,
    pub(crate) detail: serde_json::Value,
    /// A server's IPC ports: (ipc_host, ipc_port_start, gunicorn_workers).
    pub(crate) ipc: Option<(String, u16, u16)>,
    /// The scheduler's API client for servers: (user name, password).
    pub(crate) api_client: Option<(String, String)>,
}

pub(crate) fn read_component(path: &Path) -> Result<Component> {
    let info_text = std::fs::read_to_string(path.join(".zato-info")).map_err(|_| {
        failed(format!(
            "{} is not a Zato component directory (no .zato-info)",
            path.display()
        ))
    })?;
    let info: serde_json::Value =
        serde_json::from_str(&info_text).map_err(|error| failed(format!(".zato-info: {error}")))?;
    let kind = info["component"].as_str().unwrap_or_default().to_owned();
    let repo = path.join("config/repo");
    let host_of = |bind: &str| {
        bind.rsplit_once(':')
            .map_or("0.0.0.0", |(host, _)| host)
            .to_owned()
    };
    let port_of = |bind: &str| -> Result<u16> {
        bind.rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .ok_or_else(|| failed(format!("invalid bind address {bind:?}")))
    };
    match kind.as_str() {
        "SERVER" => {
            let conf = Ini::read(&repo.join("server.conf"))?;
            Ok(Component {
                host: host_of(conf.get("main", "gunicorn_bind").unwrap_or_default()),
                port: port_of(conf.get("main", "gunicorn_bind").unwrap_or_default())?,
                token: conf.get("main", "token").map(str::to_owned),
                detail: serde_json::json!({
                    "scheduler_host": conf.get("scheduler", "scheduler_host"),
                    "scheduler_port": conf.get("scheduler", "scheduler_port"),
                    "preferred_address": conf.get("preferred_address", "address"),
                    "preferred_ip": conf.get("preferred_address", "ip"),
                    "gunicorn_timeout": conf
                        .get("main", "gunicorn_timeout")
                        .and_then(|seconds| seconds.parse::<u64>().ok()),
                }),
                ipc: Some((
                    conf.get("main", "ipc_host")
                        .unwrap_or("127.0.0.1")
                        .to_owned(),
                    conf.get("main", "ipc_port_start")
                        .and_then(|port| port.parse().ok())
                        .unwrap_or(17050),
                    conf.get("main", "gunicorn_workers")
                        .and_then(|workers| workers.parse().ok())
                        .unwrap_or(1),
                )),
                api_client: None,
                odb: Some(Odb::from_ini(&conf)?),
                kind,
            })
        }
        "SCHEDULER" => {
            let conf = Ini::read(&repo.join("scheduler.conf"))?;
            Ok(Component {
                host: conf.get("bind", "host").unwrap_or("0.0.0.0").to_owned(),
                port: conf
                    .get("bind", "port")
                    .unwrap_or("31530")
                    .parse()
                    .map_err(|_| failed("invalid [bind] port"))?,
                token: None,
                detail: serde_json::json!({
                    "cluster": conf.get("cluster", "name"),
                    "server_host": conf.get("server", "server_host"),
                    "server_port": conf.get("server", "server_port"),
                    "prefer_odb_config": conf.get("server", "server_prefer_odb_config") == Some("True"),
                }),
                ipc: None,
                api_client: conf
                    .sections
                    .get("api_clients")
                    .and_then(|clients| {
                        clients
                            .iter()
                            .find(|(name, _)| name.as_str() != "auth_required")
                    })
                    .map(|(name, password)| (name.clone(), password.clone())),
                odb: Some(Odb::from_ini(&conf)?),
                kind,
            })
        }
        "WEB_ADMIN" => {
            let text = std::fs::read_to_string(repo.join("web-admin.conf"))
                .map_err(|error| failed(format!("web-admin.conf: {error}")))?;
            let conf: serde_json::Value = serde_json::from_str(&text)
                .map_err(|error| failed(format!("web-admin.conf: {error}")))?;
            let port = conf["port"]
                .as_u64()
                .and_then(|port| u16::try_from(port).ok())
                .ok_or_else(|| failed("web-admin.conf: invalid port"))?;
            Ok(Component {
                host: conf["host"].as_str().unwrap_or("0.0.0.0").to_owned(),
                port,
                token: None,
                detail: serde_json::json!({}),
                ipc: None,
                api_client: None,
                odb: Some(Odb::from_ini(&Ini::read(&repo.join("odb.conf"))?)?),
                kind,
            })
        }
        other => Err(failed(format!(
            "unsupported component {other:?} in {}",
            path.display()
        ))),
    }
}

pub(crate) fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path.join("pidfile"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub(crate) fn alive(pid: i32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

pub(crate) async fn check_config(path: &Path) -> Result<Component> {
    let component = read_component(path)?;
    if let Some(pid) = read_pid(path) {
        if alive(pid) {
            return Err(failed(format!(
                "the component in {} is already running (pid {pid})",
                path.display()
            )));
        }
        return Err(failed(format!(
            "stale pidfile {} (pid {pid} is not running); remove it before starting",
            path.join("pidfile").display()
        )));
    }
    if std::net::TcpListener::bind((component.host.as_str(), component.port)).is_err() {
        return Err(failed(format!("port {} is already in use", component.port)));
    }
    if let Some(odb) = &component.odb {
        let mut connection = odb.connect(false).await?;
        sqlx::query("SELECT 1")
            .execute(&mut connection)
            .await
            .map_err(odb_error("ping the ODB"))?;
    }
    Ok(component)
}

/// The module a real Zato component runs as (`python -m MODULE DIR`).
pub(crate) fn module_of(kind: &str) -> &'static str {
    match kind {
        "SERVER" => "zato.server.main",
        "SCHEDULER" => "zato.scheduler.main",
        _ => "zato.admin.main",
    }
}

/// Launches the component and returns at once, as `zato start` does: the component process
/// (`mock-zato -m zato.server.main DIR`, a command line like the real one's; the dashboard's is
/// `-m zato.admin.main` run in DIR) writes its own pidfile later.
pub(crate) async fn start(parsed: &Parsed) -> Result<()> {
    let path = PathBuf::from(&parsed.positionals[0]);
    let component = check_config(&path).await?;
    if parsed.flags.contains("--fg") {
        return serve(&path).await;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path.join("logs/mock-component.log"))
        .map_err(|error| failed(format!("cannot open the component log: {error}")))?;
    let executable = std::env::current_exe().map_err(|error| failed(error.to_string()))?;
    let absolute = std::fs::canonicalize(&path).map_err(|error| failed(error.to_string()))?;
    use std::os::unix::process::CommandExt as _;
    let mut launch = std::process::Command::new(executable);
    launch.arg("-m").arg(module_of(&component.kind));
    // As Zato does: the dashboard gets no directory, it runs in it.
    if component.kind != "WEB_ADMIN" {
        launch.arg(&absolute);
    }
    // As Zato's `2> PATH`: `--stderr-path` gets the process's stderr, replaced at each start.
    let stderr = match parsed.get("--stderr-path") {
        Some(stderr_path) => std::fs::File::create(stderr_path)
            .map_err(|error| failed(format!("{stderr_path}: {error}")))?,
        None => log.try_clone().map_err(|error| failed(error.to_string()))?,
    };
    let child = launch
        .current_dir(&absolute)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(stderr)
        .process_group(0)
        .spawn()
        .map_err(|error| failed(format!("cannot launch the component: {error}")))?;
    say(&format!(
        "{} starting in {} (pid {}, port {}); it writes its pidfile when it has bound its port",
        component.kind,
        path.display(),
        child.id(),
        component.port
    ));
    Ok(())
}

pub(crate) async fn stop(parsed: &Parsed) -> Result<()> {
    let path = PathBuf::from(&parsed.positionals[0]);
    let pid =
        read_pid(&path).ok_or_else(|| failed(format!("No pidfile found in {}", path.display())))?;
    let process = nix::unistd::Pid::from_raw(pid);
    if alive(pid) {
        nix::sys::signal::kill(process, nix::sys::signal::Signal::SIGTERM)
            .map_err(|error| failed(format!("cannot signal pid {pid}: {error}")))?;
        for _ in 0..200 {
            if !alive(pid) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if alive(pid) {
            return Err(failed(format!("pid {pid} did not stop within 10 s")));
        }
    }
    let _ = std::fs::remove_file(path.join("pidfile"));
    say(&format!(
        "stopped the component in {} (pid {pid})",
        path.display()
    ));
    Ok(())
}

/// The address Zato 3.2 finds for a server bound to 0.0.0.0 (`zato.common.ipaddress_
/// .get_preferred_ip`): `[preferred_address] ip` lists interface names and networks; the first
/// named interface that exists gives its first address (not a loopback one), else the first
/// address (interfaces in name order) inside a listed network.
fn preferred_ip(preferences: &str) -> Option<String> {
    let output = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .ok()?;
    let mut interfaces: Vec<(String, std::net::Ipv4Addr)> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace().skip(1);
            let name = words.next()?.to_owned();
            let address = words.nth(1)?.split('/').next()?.parse().ok()?;
            Some((name, address))
        })
        .collect();
    interfaces.sort();
    let preferences: Vec<&str> = preferences.split(',').map(str::trim).collect();
    for preference in &preferences {
        if let Some((_, address)) = interfaces
            .iter()
            .find(|(name, address)| name == preference && !address.is_loopback())
        {
            return Some(address.to_string());
        }
    }
    let networks: Vec<(u32, u32)> = preferences
        .iter()
        .filter_map(|preference| {
            let (base, length) = preference.split_once('/')?;
            let base = u32::from(base.parse::<std::net::Ipv4Addr>().ok()?);
            let mask = u32::MAX
                .checked_shl(32 - length.parse::<u32>().ok()?)
                .unwrap_or(0);
            Some((base & mask, mask))
        })
        .collect();
    interfaces
        .iter()
        .find(|(_, address)| {
            networks
                .iter()
                .any(|(base, mask)| u32::from(*address) & mask == *base)
        })
        .map(|(_, address)| address.to_string())
}

pub(crate) async fn set_up_status(component: &Component, status: &str) -> Result<(String, String)> {
    let (Some(odb), Some(token)) = (&component.odb, &component.token) else {
        return Ok((String::new(), String::new()));
    };
    let mut connection = odb.connect(false).await?;
    let row = sqlx::query(&odb.sql(
        "SELECT server.name, cluster.name FROM server JOIN cluster ON cluster.id = server.cluster_id WHERE server.token = $1",
    ))
    .bind(token.as_str())
    .fetch_optional(&mut connection)
    .await
    .map_err(odb_error("look up this server"))?
    .ok_or_else(|| failed("this server's token is not in the ODB"))?;
    let names: (String, String) = (
        row.try_get(0).map_err(odb_error("read"))?,
        row.try_get(1).map_err(odb_error("read"))?,
    );
    sqlx::query(&odb.sql("UPDATE server SET up_status = $1, up_mod_date = $2 WHERE token = $3"))
        .bind(status)
        .bind(now_text())
        .bind(token.as_str())
        .execute(&mut connection)
        .await
        .map_err(odb_error("set up_status"))?;
    if status == "running" {
        // As Zato's `server_up_down`: where the other servers reach it, `[preferred_address]
        // address` when server.conf gives one (Zato's `main.py`), else found from the bind
        // address (Zato looks through the host's interfaces for a private one).
        let address = match component.detail["preferred_address"].as_str() {
            Some(address) if !address.is_empty() => address.to_owned(),
            _ if component.host == "0.0.0.0" => preferred_ip(
                component.detail["preferred_ip"]
                    .as_str()
                    .unwrap_or_default(),
            )
            .ok_or_else(|| {
                failed(
                    "Unable to start the server. Could not obtain a preferred address, \
                             please configure [bind_options] in server.conf",
                )
            })?,
            _ => component.host.clone(),
        };
        sqlx::query(
            &odb.sql("UPDATE server SET preferred_address = $1, bind_port = $2 WHERE token = $3"),
        )
        .bind(address)
        .bind(i64::from(component.port))
        .bind(token.as_str())
        .execute(&mut connection)
        .await
        .map_err(odb_error("set the server's address"))?;
    }
    Ok(names)
}
