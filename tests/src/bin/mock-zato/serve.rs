//! A started component's process: its pidfile, ports and answers (`-m zato.*.main`).

use super::*;

pub(crate) fn env_milliseconds(name: &str, default: u64) -> Duration {
    Duration::from_millis(
        std::env::var(name)
            .ok()
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(default),
    )
}

/// What the component process answers with.
pub(crate) struct Responder {
    pub(crate) kind: &'static str,
    /// A server's and a scheduler's JSON answer to every GET.
    pub(crate) body: String,
    /// The scheduler's API client: (user name, password).
    pub(crate) api_client: Option<(String, String)>,
    /// The web-admin's ODB, where its users are.
    pub(crate) odb: Option<Odb>,
    /// The scheduler's jobs.
    pub(crate) jobs: Option<std::sync::Arc<scheduler::Jobs>>,
    /// A server's token: which row of the ODB it is.
    pub(crate) token: Option<String>,
    /// A server's user config, as its services would read it.
    pub(crate) user_conf: user_conf::UserConf,
}

/// One HTTP request as the component read it.
pub(crate) struct Request {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) body: String,
}

pub(crate) async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<Request> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = received.windows(4).position(|window| window == b"\r\n\r\n") {
            break end;
        }
        if received.len() > 64 * 1024 {
            return None;
        }
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await {
            Ok(Ok(read)) if read > 0 => received.extend_from_slice(&buffer[..read]),
            _ => return None,
        }
    };
    let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
    let mut lines = head.lines();
    let mut first = lines.next()?.split_whitespace();
    let (method, path) = (first.next()?.to_owned(), first.next()?.to_owned());
    let headers: BTreeMap<String, String> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let length: usize = headers
        .get("content-length")
        .and_then(|length| length.parse().ok())
        .unwrap_or(0)
        .min(64 * 1024);
    let mut body = received[head_end + 4..].to_vec();
    while body.len() < length {
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await {
            Ok(Ok(read)) if read > 0 => body.extend_from_slice(&buffer[..read]),
            _ => return None,
        }
    }
    Some(Request {
        method,
        path,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

pub(crate) fn form_value(body: &str, name: &str) -> Option<String> {
    body.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| {
            url::form_urlencoded::parse(format!("v={value}").as_bytes())
                .next()
                .map(|(_, value)| value.into_owned())
                .unwrap_or_default()
        })
    })
}

pub(crate) const LOGIN_FORM: &str = "<html><body><!-- mock-zato dashboard -->\
<form method=\"post\" action=\"/accounts/login/\">\
<input type=\"hidden\" name=\"csrfmiddlewaretoken\" value=\"mock-csrf-token\">\
<input name=\"username\"><input type=\"password\" name=\"password\"></form></body></html>\n";

impl Responder {
    /// (status line, content type, extra headers, body)
    pub(crate) async fn respond(
        &self,
        request: &Request,
    ) -> (&'static str, &'static str, String, String) {
        if self.kind == "server"
            && let (Some(odb), Some(token)) = (&self.odb, &self.token)
            && let Some((status, body)) =
                deploy::admin_invoke(odb, token, &self.user_conf, request).await
        {
            return (status, "application/json", String::new(), body);
        }
        if self.kind == "server"
            && let Some((status, body)) = self.user_conf.probe(request)
        {
            return (status, "text/plain", String::new(), body);
        }
        match self.kind {
            "scheduler" if request.method == "POST" && !request.body.is_empty() => {
                // Zato's scheduler checks Basic credentials against its [api_clients].
                let given = request
                    .headers
                    .get("authorization")
                    .and_then(|value| value.strip_prefix("Basic "))
                    .and_then(|encoded| {
                        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded)
                            .ok()
                    })
                    .map(|decoded| String::from_utf8_lossy(&decoded).into_owned());
                let expected = self
                    .api_client
                    .as_ref()
                    .map(|(user, password)| format!("{user}:{password}"));
                if given.is_some() && given == expected {
                    // SCHEDULER.DELETE (Zato's `broker_message` code 100004) stops a job by name.
                    let call: serde_json::Value =
                        serde_json::from_str(&request.body).unwrap_or_default();
                    if call["action"] == "100004"
                        && let (Some(jobs), Some(name)) = (&self.jobs, call["name"].as_str())
                    {
                        jobs.delete(name);
                    }
                    (
                        "200 OK",
                        "application/json",
                        String::new(),
                        "{\"status\": \"ok\", \"response\": {}}\n".to_owned(),
                    )
                } else {
                    say("Credentials error -> Invalid_Username_Or_Password");
                    (
                        "500 Internal Server Error",
                        "application/json",
                        String::new(),
                        "{\"status\": \"error\", \"response\": {}}\n".to_owned(),
                    )
                }
            }
            "web-admin" if request.path.starts_with("/accounts/login") => {
                if request.method != "POST" {
                    return ("200 OK", "text/html", String::new(), LOGIN_FORM.to_owned());
                }
                let username = form_value(&request.body, "username").unwrap_or_default();
                let password = form_value(&request.body, "password").unwrap_or_default();
                if self.login(&username, &password).await {
                    (
                        "302 Found",
                        "text/html",
                        "Location: /\r\nSet-Cookie: sessionid=mock-session; HttpOnly; Path=/\r\n"
                            .to_owned(),
                        String::new(),
                    )
                } else {
                    ("200 OK", "text/html", String::new(), LOGIN_FORM.to_owned())
                }
            }
            _ => (
                "200 OK",
                "application/json",
                String::new(),
                self.body.clone(),
            ),
        }
    }

    pub(crate) async fn login(&self, username: &str, password: &str) -> bool {
        let Some(odb) = &self.odb else { return false };
        let Ok(mut connection) = odb.connect(false).await else {
            return false;
        };
        let stored: Option<String> =
            sqlx::query(&odb.sql("SELECT password FROM auth_user WHERE username = $1"))
                .bind(username)
                .fetch_optional(&mut connection)
                .await
                .ok()
                .flatten()
                .and_then(|row| row.try_get(0).ok());
        stored.is_some_and(|stored| stored == password_hash(password))
    }
}

/// A Zato 3.2 server on MariaDB 10.5 or later dies at every start: its SQL lock calls
/// `get_lock` with a number, which MariaDB refuses.
async fn refuse_mariadb(path: &Path, component: &Component) -> Result<()> {
    let Some(odb) = component
        .odb
        .as_ref()
        .filter(|odb| odb.dialect() == Dialect::MySql)
    else {
        return Ok(());
    };
    let mut connection = odb.connect(false).await?;
    let version: String = sqlx::query_scalar("SELECT VERSION()")
        .fetch_one(&mut connection)
        .await
        .map_err(odb_error("read the server's version"))?;
    let mut numbers = version
        .split(|character: char| !character.is_ascii_digit())
        .filter_map(|part| part.parse::<u32>().ok());
    let (major, minor) = (numbers.next().unwrap_or(0), numbers.next().unwrap_or(0));
    if !version.contains("MariaDB") || (major, minor) < (10, 5) {
        return Ok(());
    }
    let error = "sqlalchemy.exc.OperationalError: (pymysql.err.OperationalError) (4078, \
                 \"Illegal parameter data type bigint for operation 'get_lock'\") \
                 [SQL: SELECT get_lock(%(get_lock_1)s, %(get_lock_2)s)]";
    append_log(
        &path.join("logs/server.log"),
        &format!("2026-01-01 00:00:00,000 - ERROR - {error}"),
    );
    Err(failed(error))
}

/// The other servers of this server's cluster that set an `up_status`: (name, status, since,
/// this server's name).
async fn other_servers(
    odb: &Odb,
    connection: &mut AnyConnection,
    token: &str,
) -> Result<Vec<(String, String, String, String)>> {
    let sql = odb.sql(
        "SELECT s.name, s.up_status, s.up_mod_date, me.name FROM server s \
         JOIN server me ON me.cluster_id = s.cluster_id \
         WHERE me.token = $1 AND s.token <> $2 AND s.up_status IS NOT NULL",
    );
    let rows = sqlx::query(&sql)
        .bind(token)
        .bind(token)
        .fetch_all(connection)
        .await
        .map_err(odb_error("read the cluster's servers"))?;
    let mut read = Vec::new();
    for row in rows {
        let name: String = row.try_get(0).map_err(odb_error("read"))?;
        let status: String = row.try_get(1).map_err(odb_error("read"))?;
        let since: Option<String> = row.try_get(2).map_err(odb_error("read"))?;
        let me: String = row.try_get(3).map_err(odb_error("read"))?;
        read.push((name, status, since.unwrap_or_default(), me));
    }
    Ok(read)
}

/// Another server of the cluster, with a smaller name, that marked itself `starting` less than two
/// windows ago.
async fn smaller_rival(
    odb: &Odb,
    connection: &mut AnyConnection,
    token: &str,
    window: Duration,
) -> Result<Option<String>> {
    let now: f64 = now_text().parse().unwrap_or_default();
    Ok(other_servers(odb, connection, token)
        .await?
        .into_iter()
        .find(|(name, status, since, me)| {
            let recent = since
                .parse::<f64>()
                .is_ok_and(|since| now - since < 2.0 * window.as_secs_f64());
            status == "starting" && recent && name < me
        })
        .map(|(name, ..)| name))
}

/// A server's first start on a fresh ODB: the real Zato writes its ~600 internal services then
/// (seconds), and two servers doing it at once on PostgreSQL deadlock (`40P01`): one of them dies
/// with `OperationalError`. Here, when no server of the cluster was ever up, the one with the
/// larger name dies if another was writing its services at the start or the end of its window.
/// SQLite serialises the writers instead.
async fn write_internal_services(path: &Path, component: &Component) -> Result<()> {
    let (Some(odb), Some(token)) = (&component.odb, &component.token) else {
        return Ok(());
    };
    if odb.dialect() == Dialect::Sqlite {
        return Ok(());
    }
    let window = env_milliseconds("MOCK_ZATO_INTERNAL_SERVICES_MS", 3000);
    let mut connection = odb.connect(false).await?;
    if other_servers(odb, &mut connection, token)
        .await?
        .iter()
        .any(|(_, status, _, _)| status != "starting")
    {
        return Ok(());
    }
    let mark = odb.sql("UPDATE server SET up_status = $1, up_mod_date = $2 WHERE token = $3");
    sqlx::query(&mark)
        .bind("starting")
        .bind(now_text())
        .bind(token.as_str())
        .execute(&mut connection)
        .await
        .map_err(odb_error("set up_status"))?;
    // A server with a smaller name writing its services at the start or at the end of this
    // one's window.
    let mut rival = smaller_rival(odb, &mut connection, token, window).await?;
    tokio::time::sleep(window).await;
    if rival.is_none() {
        rival = smaller_rival(odb, &mut connection, token, window).await?;
    }
    let Some(rival) = rival else {
        return Ok(());
    };
    let _ = sqlx::query(&odb.sql("UPDATE server SET up_status = NULL WHERE token = $1"))
        .bind(token.as_str())
        .execute(&mut connection)
        .await;
    let error = format!(
        "sqlalchemy.exc.OperationalError: (pg8000.core.OperationalError) {{'S': 'ERROR', \
         'C': '40P01', 'M': 'deadlock detected'}} [SQL: INSERT INTO service ...] (while \
         {rival} wrote Zato's internal services too)"
    );
    append_log(
        &path.join("logs/server.log"),
        &format!("2026-01-01 00:00:00,000 - ERROR - {error}"),
    );
    Err(failed(error))
}

/// As Zato's gunicorn arbiter does with a `[main] gunicorn_timeout` shorter than a worker's boot
/// (seen with the real Zato 3.2 and `gunicorn_timeout=1`: a worker loads Zato's services for
/// seconds before it first notifies the arbiter): every worker is killed after the timeout and
/// another booted, logging `WORKER TIMEOUT (pid:N)` as CRITICAL each time, forever; the port is
/// bound (by the arbiter) but no request is ever answered. A worker boots in
/// `MOCK_ZATO_WORKER_BOOT_MS` (default 3000). Returns false at once when the timeout is long
/// enough; else true once SIGTERM stops it (as it does the real one).
async fn workers_time_out(path: &Path, component: &Component) -> bool {
    let boot = env_milliseconds("MOCK_ZATO_WORKER_BOOT_MS", 3000);
    let Some(timeout) = component.detail["gunicorn_timeout"]
        .as_u64()
        .map(Duration::from_secs)
        .filter(|timeout| *timeout < boot)
    else {
        return false;
    };
    let Ok(mut terminate) =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    else {
        return false;
    };
    let mut worker = std::process::id() + 1;
    loop {
        tokio::select! {
            () = tokio::time::sleep(timeout.max(Duration::from_millis(100))) => {}
            _ = terminate.recv() => return true,
        }
        append_log(
            &path.join("logs/server.log"),
            &format!(
                "2026-01-01 00:00:00,000 - CRITICAL - {}:MainThread - zato:0 - WORKER TIMEOUT (pid:{worker})",
                std::process::id()
            ),
        );
        worker += 1;
    }
}

/// The component process. Like a real Zato component it writes its pidfile only seconds after
/// `zato start` returned (`MOCK_ZATO_PIDFILE_DELAY_MS`, default 1000), then binds its port; if the
/// port is taken it removes the pidfile (another process's, by then) and exits, as a second real
/// server does. A server also binds Zato's IPC ports (`[main] ipc_port_start` and one more
/// per worker) on `ipc_host`. Then it answers HTTP until SIGTERM, stops accepting and finishes
/// the requests under way (as Zato's gunicorn does on a graceful stop).
/// As the real server does with its `zato` logger at DEBUG in `logging.conf` (read at start;
/// seen with Zato 3.2: `DEBUG - ... - zato:0 - Closing connection.` for each request), one DEBUG
/// line in `logs/server.log` once it serves; none at INFO.
fn log_debug_at_start(path: &Path) {
    let text = std::fs::read_to_string(path.join("config/repo/logging.conf")).unwrap_or_default();
    let loggers = scheduler::entries(&text, "loggers");
    let at_debug = loggers
        .get("zato")
        .and_then(|logger| logger.get("level"))
        .is_some_and(|name| scheduler::level(name) <= scheduler::DEBUG);
    if at_debug {
        append_log(
            &path.join("logs/server.log"),
            &format!(
                "2026-01-01 00:00:00,000 - DEBUG - {}:MainThread - zato:0 - Closing connection.",
                std::process::id()
            ),
        );
    }
}

/// As the real dashboard does at `django.setup()`, after its pidfile (which it leaves behind): a
/// `TIME_ZONE` in web-admin.conf the host's time zone database does not have ends it, the
/// reason only on its stderr.
fn refuse_unknown_time_zone(path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(path.join("config/repo/web-admin.conf")).unwrap_or_default();
    let conf: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let Some(time_zone) = conf["TIME_ZONE"].as_str() else {
        return Ok(());
    };
    let known =
        !time_zone.contains("..") && Path::new("/usr/share/zoneinfo").join(time_zone).is_file();
    if known {
        return Ok(());
    }
    Err(MockError::Exit(
        1,
        format!("ValueError: Incorrect timezone setting: {time_zone}"),
    ))
}

pub(crate) async fn serve(path: &Path) -> Result<()> {
    let component = read_component(path)?;
    tokio::time::sleep(env_milliseconds("MOCK_ZATO_PIDFILE_DELAY_MS", 1000)).await;
    let pidfile = path.join("pidfile");
    write(&pidfile, &format!("{}\n", std::process::id()))?;
    if component.kind == "WEB_ADMIN" {
        refuse_unknown_time_zone(path)?;
    }
    let give_up = |message: String| {
        let _ = std::fs::remove_file(&pidfile);
        failed(message)
    };
    let listener = tokio::net::TcpListener::bind((component.host.as_str(), component.port))
        .await
        .map_err(|error| give_up(format!("cannot bind port {}: {error}", component.port)))?;
    let mut ipc_listeners = Vec::new();
    if let Some((ipc_host, ipc_start, workers)) = &component.ipc {
        for port in *ipc_start..ipc_start.saturating_add(*workers) {
            let ipc = std::net::TcpListener::bind((ipc_host.as_str(), port)).map_err(|error| {
                give_up(format!(
                    "cannot bind the IPC port {ipc_host}:{port} (ipc_port_start): {error}"
                ))
            })?;
            ipc_listeners.push(ipc);
        }
    }
    tokio::time::sleep(env_milliseconds("MOCK_ZATO_START_DELAY_MS", 0)).await;
    if component.kind == "SERVER" && workers_time_out(path, &component).await {
        let _ = std::fs::remove_file(&pidfile);
        say("server stopped");
        return Ok(());
    }
    if component.kind == "SERVER"
        && let Err(error) = refuse_mariadb(path, &component).await
    {
        let _ = std::fs::remove_file(&pidfile);
        return Err(error);
    }
    if component.kind == "SERVER"
        && let Err(error) = write_internal_services(path, &component).await
    {
        let _ = std::fs::remove_file(&pidfile);
        return Err(error);
    }
    if component.kind == "SERVER" {
        log_debug_at_start(path);
    }
    let (server_name, cluster_name) = set_up_status(&component, "running").await?;
    let kind = match component.kind.as_str() {
        "SERVER" => "server",
        "SCHEDULER" => "scheduler",
        _ => "web-admin",
    };
    let mut body = serde_json::json!({
        "pong": "zato",
        "zato_env": {"result": "ZATO_OK"},
        "mock": true,
        "component": kind,
        "pid": std::process::id(),
        "port": component.port,
        "detail": component.detail,
    });
    if kind == "server" {
        body["server"] = server_name.into();
        body["cluster"] = cluster_name.into();
    } else if let Some(cluster) = component.detail.get("cluster") {
        body["cluster"] = cluster.clone();
    }
    let prefer_odb_config = component.detail["prefer_odb_config"] == true;
    let jobs = if kind == "scheduler" {
        let jobs = scheduler::Jobs::start(path, prefer_odb_config)?;
        jobs.run(prefer_odb_config);
        Some(jobs)
    } else {
        None
    };
    let responder = std::sync::Arc::new(Responder {
        kind,
        body: format!("{body}\n"),
        api_client: component.api_client.clone(),
        odb: component.odb.clone(),
        jobs,
        token: component.token.clone(),
        user_conf: if kind == "server" {
            user_conf::UserConf::read_at_start(path)
        } else {
            user_conf::UserConf::default()
        },
    });
    if kind == "server"
        && let (Some(odb), Some(token)) = (&component.odb, &component.token)
    {
        deploy::follow_packages(path.to_owned(), odb.clone(), token.clone());
    }
    say(&format!(
        "{kind} listening on {}:{}",
        component.host, component.port
    ));
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|error| failed(error.to_string()))?;
    let mut in_flight = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((mut stream, _)) = accepted else { continue };
                let responder = responder.clone();
                while in_flight.try_join_next().is_some() {}
                in_flight.spawn(async move {
                    let Some(request) = read_request(&mut stream).await else { return };
                    let (status, content_type, extra, body) = responder.respond(&request).await;
                    let response = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
            _ = terminate.recv() => break,
        }
    }
    drop(listener);
    drop(ipc_listeners);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
    if kind == "server" {
        let _ = set_up_status(&component, "clean-down").await;
    }
    say(&format!("{kind} stopped"));
    Ok(())
}
