//! `create server|scheduler|web-admin` and `update password`: the directory trees, config
//! files and credentials Zato writes.

use super::*;

// Component directories

/// A minimal INI reader for the files the mock writes.
#[derive(Debug, Default)]
pub(crate) struct Ini {
    pub(crate) sections: BTreeMap<String, BTreeMap<String, String>>,
}

impl Ini {
    pub(crate) fn read(path: &Path) -> Result<Ini> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| failed(format!("cannot read {}: {error}", path.display())))?;
        let mut ini = Ini::default();
        let mut section = String::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(name) = line
                .strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
            {
                section = name.to_owned();
            } else if let Some((key, value)) = line.split_once('=') {
                ini.sections
                    .entry(section.clone())
                    .or_default()
                    .insert(key.trim().to_owned(), value.trim().to_owned());
            }
        }
        Ok(ini)
    }

    pub(crate) fn get(&self, section: &str, key: &str) -> Option<&str> {
        self.sections.get(section)?.get(key).map(String::as_str)
    }
}

/// Checks that `path` is an empty directory, as Zato's create commands require.
pub(crate) fn require_empty_directory(path: &Path) -> Result<()> {
    let mut entries = std::fs::read_dir(path).map_err(|error| {
        failed(format!(
            "path {} must be an existing empty directory: {error}",
            path.display()
        ))
    })?;
    // The invocation log is the mock's own.
    let foreign = entries.find(|entry| {
        entry
            .as_ref()
            .map(|entry| entry.file_name() != "mock-zato.log")
            .unwrap_or(true)
    });
    if foreign.is_some() {
        return Err(failed(format!(
            "directory {} is not empty, please re-run the command in an empty directory",
            path.display()
        )));
    }
    Ok(())
}

pub(crate) fn write(path: &Path, contents: &str) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|error| failed(format!("cannot create {}: {error}", parent.display())))?;
    }
    std::fs::write(path, contents)
        .map_err(|error| failed(format!("cannot write {}: {error}", path.display())))
}

pub(crate) fn make_tree(path: &Path) -> Result<()> {
    for directory in ["config/repo", "logs", "pickup/incoming", "work"] {
        std::fs::create_dir_all(path.join(directory))
            .map_err(|error| failed(format!("cannot create {directory}: {error}")))?;
    }
    Ok(())
}

pub(crate) fn create_pause() {
    let delay = std::env::var("MOCK_ZATO_CREATE_DELAY_MS")
        .ok()
        .and_then(|ms| ms.parse().ok());
    if let Some(milliseconds) = delay {
        #[allow(
            clippy::disallowed_methods,
            reason = "the mock is synchronous here; a test hook"
        )]
        std::thread::sleep(Duration::from_millis(milliseconds));
    }
}

/// `.zato-info`, as Zato writes it (a server's before its row is committed).
pub(crate) fn write_zato_info(path: &Path, component: &str) -> Result<()> {
    let (user, host) = user_and_host();
    let info = serde_json::json!({
        "version": "Zato 3.2 (mock-zato, a test double)",
        "created_user_host": format!("{user}@{host}"),
        "created_ts": utc_iso(),
        "component": component,
        "mock": true,
    });
    write(&path.join(".zato-info"), &format!("{info:#}\n"))
}

/// `SCHEME://HOST[:PORT]` as Zato reads it: no scheme means https, no port the default.
pub(crate) fn split_address(address: &str, default_port: u16) -> Result<(String, u16, bool)> {
    let (use_tls, rest) = match address.split_once("://") {
        Some(("https", rest)) => (true, rest),
        Some(("http", rest)) => (false, rest),
        Some((scheme, _)) => {
            return Err(failed(format!(
                "unsupported scheme {scheme:?} in {address:?}"
            )));
        }
        None => (true, address),
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) => (
            host.to_owned(),
            port.parse()
                .map_err(|_| failed(format!("invalid port in {address:?}")))?,
        ),
        None => (rest.to_owned(), default_port),
    };
    if host.is_empty() {
        return Err(failed(format!("no host in {address:?}")));
    }
    Ok((host, port, use_tls))
}

pub(crate) fn python_bool(value: bool) -> &'static str {
    if value { "True" } else { "False" }
}

pub(crate) fn random_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| failed("no system randomness"))?;
    Ok(hex::encode(bytes))
}

/// The API client servers call the scheduler with: from Zato's environment variables, else the
/// options, else one Zato makes up (then the servers and the scheduler disagree, as with the real
/// Zato).
pub(crate) fn scheduler_api_client(parsed: &Parsed) -> Result<(String, String)> {
    // As Zato: its environment variables first, then the options.
    let from_env = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    let username = from_env("Zato_Scheduler_API_Client_For_Server_Username")
        .or_else(|| {
            parsed
                .get("--scheduler-api-client-for-server-username")
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "server_api_client1".to_owned());
    let password = match from_env("Zato_Scheduler_API_Client_For_Server_Password").or_else(|| {
        parsed
            .get("--scheduler-api-client-for-server-password")
            .filter(|password| !password.is_empty())
            .map(str::to_owned)
    }) {
        Some(password) => password,
        None => random_token()?,
    };
    Ok((username, password))
}

pub(crate) async fn create_server(parsed: &Parsed) -> Result<()> {
    let path = PathBuf::from(&parsed.positionals[0]);
    let (cluster_name, server_name) = (&parsed.positionals[1], &parsed.positionals[2]);
    let odb = Odb::from_options(parsed)?;
    let http_port: u16 = parsed
        .get_or("--http-port", "17010")
        .parse()
        .map_err(|_| MockError::Usage("argument --http-port: invalid int value".into()))?;
    let threads = parsed.get_or("--threads", "1");
    let scheduler = parsed.get_or("--scheduler-address-for-server", "https://127.0.0.1:31530");
    let (scheduler_host, scheduler_port, scheduler_tls) = split_address(scheduler, 31530)?;
    let (api_username, api_password) = scheduler_api_client(parsed)?;
    require_empty_directory(&path)?;
    let absolute = std::fs::canonicalize(&path).map_err(|error| failed(error.to_string()))?;

    // Zato writes the directory tree before it looks at the ODB: a refused create leaves it.
    make_tree(&path)?;
    std::fs::create_dir_all(path.join("pickup/incoming/user-conf"))
        .map_err(|error| failed(format!("cannot create pickup/incoming/user-conf: {error}")))?;
    std::os::unix::fs::symlink(
        absolute.join("pickup/incoming/user-conf"),
        path.join("config/repo/user-conf"),
    )
    .map_err(|error| failed(format!("cannot link config/repo/user-conf: {error}")))?;

    let mut connection = odb.connect(false).await?;
    let cluster = sqlx::query(&odb.sql("SELECT id FROM cluster WHERE name = $1"))
        .bind(cluster_name.as_str())
        .fetch_optional(&mut connection)
        .await
        .map_err(odb_error("look up the cluster"))?
        .ok_or_else(|| {
            MockError::Exit(
                NO_SUCH_CLUSTER,
                format!("Cluster `{cluster_name}` doesn't exist in ODB"),
            )
        })?;
    let cluster_id: i64 = cluster
        .try_get::<i32, _>(0)
        .map(i64::from)
        .or_else(|_| cluster.try_get(0))
        .map_err(odb_error("read the cluster"))?;
    let taken = sqlx::query(&odb.sql("SELECT id FROM server WHERE name = $1 AND cluster_id = $2"))
        .bind(server_name.as_str())
        .bind(cluster_id)
        .fetch_optional(&mut connection)
        .await
        .map_err(odb_error("look up the server"))?;
    if taken.is_some() {
        return Err(MockError::Exit(
            SERVER_NAME_ALREADY_EXISTS,
            format!("Server name `{server_name}` already exists"),
        ));
    }
    let token = random_token()?;
    let server_conf = format!(
        "[main]\ngunicorn_bind=0.0.0.0:{http_port}\ngunicorn_workers={threads}\nipc_host=127.0.0.1\nipc_port_start=17050\ntoken={token}\n\n{}\n[scheduler]\nscheduler_host={scheduler_host}\nscheduler_port={scheduler_port}\nscheduler_use_tls={}\nscheduler_api_username={api_username}\nscheduler_api_password={api_password}\n\n[preferred_address]\naddress=\nip=10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, eth0\nboot_if_preferred_not_found=False\nallow_loopback=False\n\n[os_environ]\nsample_key=sample_value\n\n[command_set_scheduler]\n",
        odb.ini_section(),
        python_bool(scheduler_tls)
    );
    write(&path.join("config/repo/server.conf"), &server_conf)?;
    write(
        &path.join("config/repo/logging.conf"),
        scheduler::SERVER_LOGGING_CONF,
    )?;
    let secrets = format!(
        "[secret_keys]\nkey1={}\n\n[zato]\nserver_conf.kvdb.password=\n",
        conceal(parsed.get_or("--secret-key", ""))
    );
    write(&path.join("config/repo/secrets.conf"), &secrets)?;
    // As Zato: `.zato-info` is written before the transaction commits (`store_initial_info`, then
    // `session.commit()`), so a create killed in between leaves one beside no row.
    write_zato_info(&path, "SERVER")?;
    create_pause();
    if std::env::var_os("MOCK_ZATO_CREATE_SERVER_COMMIT_FAILS").is_some() {
        // Zato's `create server` logs any error but an IntegrityError, rolls back and exits 0.
        say(
            "Could not create the server, e:`sqlalchemy.exc.OperationalError: server closed the connection unexpectedly`",
        );
        return Ok(());
    }
    let (_, host) = user_and_host();
    let inserted = sqlx::query(&odb.sql(
        "INSERT INTO server (name, host, bind_host, bind_port, token, cluster_id, last_join_status, up_status, last_join_mod_date) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    ))
    .bind(server_name.as_str())
    .bind(host)
    .bind("0.0.0.0")
    .bind(i64::from(http_port))
    .bind(token.as_str())
    .bind(cluster_id)
    .bind("ACCEPTED")
    // NULL until the server first starts, as `create_server.py` leaves it.
    .bind(None::<String>)
    // As Zato's `datetime.utcnow()`, in the form the ODB gives it back as text.
    .bind(utc_iso().replace('T', " "))
    .execute(&mut connection)
    .await;
    match inserted {
        Ok(_) => {}
        Err(error)
            if error
                .as_database_error()
                .is_some_and(|error| error.is_unique_violation()) =>
        {
            return Err(MockError::Exit(
                SERVER_NAME_ALREADY_EXISTS,
                format!("Server name `{server_name}` already exists"),
            ));
        }
        Err(error) => {
            // As Zato: logged, rolled back, and the command exits 0.
            say(&format!("Could not create the server, e:`{error}`"));
            return Ok(());
        }
    }

    say(&format!(
        "server {server_name} of cluster {cluster_name} created in {}",
        path.display()
    ));
    Ok(())
}

pub(crate) async fn create_scheduler(parsed: &Parsed) -> Result<()> {
    let path = PathBuf::from(&parsed.positionals[0]);
    let odb = Odb::from_options(parsed)?;
    let cluster_name = parsed.require("--cluster-name", "the scheduler needs its cluster")?;
    let server_address = match (
        parsed.get("--server-address-for-scheduler"),
        parsed.get("--server-path"),
    ) {
        (Some(address), _) => address.to_owned(),
        (None, Some(server_path)) => {
            let server_conf = Ini::read(&Path::new(server_path).join("config/repo/server.conf"))?;
            let bind = server_conf
                .get("main", "gunicorn_bind")
                .unwrap_or("127.0.0.1:17010");
            format!("http://{bind}")
        }
        (None, None) => {
            return Err(MockError::Usage(
                "one of --server-address-for-scheduler or --server-path is required".into(),
            ));
        }
    };
    let (server_host, server_port, server_tls) = split_address(&server_address, 17010)?;
    let bind_host = parsed.get_or("--bind-host", "0.0.0.0");
    let bind_port = parsed.get_or("--bind-port", "31530");
    let (api_username, api_password) = scheduler_api_client(parsed)?;
    require_empty_directory(&path)?;
    make_tree(&path)?;
    let conf = format!(
        "[bind]\nhost={bind_host}\nport={bind_port}\n\n[cluster]\nname={cluster_name}\n\n[server]\nserver_host={server_host}\nserver_port={server_port}\nserver_use_tls={}\nserver_prefer_odb_config=False\n\n{}\n[api_clients]\nauth_required=True\n{api_username}={api_password}\n",
        python_bool(server_tls),
        odb.ini_section()
    );
    write(&path.join("config/repo/scheduler.conf"), &conf)?;
    write(
        &path.join("config/repo/startup_jobs.conf"),
        scheduler::STARTUP_JOBS_CONF,
    )?;
    write(
        &path.join("config/repo/logging.conf"),
        scheduler::LOGGING_CONF,
    )?;
    create_pause();
    write_zato_info(&path, "SCHEDULER")?;
    say(&format!(
        "scheduler of cluster {cluster_name} created in {}",
        path.display()
    ));
    Ok(())
}

pub(crate) async fn create_web_admin(parsed: &Parsed) -> Result<()> {
    let path = PathBuf::from(&parsed.positionals[0]);
    let odb = Odb::from_options(parsed)?;
    require_empty_directory(&path)?;
    let mut connection = odb.connect(false).await?;
    if !table_exists(&mut connection, "cluster").await {
        return Err(failed(
            "the ODB has no cluster table; run `zato create odb` first",
        ));
    }
    make_tree(&path)?;
    let conf = serde_json::json!({
        "host": "0.0.0.0",
        "port": 8183,
        "db_type": odb.odb_type,
        "DATABASE_NAME": odb.db_name,
        "DATABASE_HOST": odb.host,
        "DATABASE_PORT": odb.port,
        "DATABASE_USER": odb.user,
        "TIME_ZONE": "America/New_York",
    });
    write(
        &path.join("config/repo/web-admin.conf"),
        &format!("{conf:#}\n"),
    )?;
    write(
        &path.join("config/repo/logging.conf"),
        scheduler::LOGGING_CONF,
    )?;
    write(&path.join("config/repo/odb.conf"), &odb.ini_section())?;
    // As Zato: `.zato-info` is written before Django's migrations and the user `admin`.
    write_zato_info(&path, "WEB_ADMIN")?;
    create_pause();
    if !table_exists(&mut connection, "auth_user").await {
        sqlx::query("CREATE TABLE auth_user (id INTEGER PRIMARY KEY, username VARCHAR(150) NOT NULL UNIQUE, password VARCHAR(128) NOT NULL)")
            .execute(&mut connection)
            .await
            .map_err(odb_error("create the dashboard's tables"))?;
    }
    let admin = sqlx::query("SELECT id FROM auth_user WHERE username = 'admin'")
        .fetch_optional(&mut connection)
        .await
        .map_err(odb_error("look up the dashboard's admin user"))?;
    if admin.is_none() {
        // As Zato: user `admin` gets a password that nobody is shown.
        sqlx::query(
            &odb.sql("INSERT INTO auth_user (id, username, password) VALUES (1, 'admin', $1)"),
        )
        .bind(password_hash(&random_token()?))
        .execute(&mut connection)
        .await
        .map_err(odb_error("create the dashboard's admin user"))?;
    }
    say(&format!("web-admin created in {}", path.display()));
    Ok(())
}

pub(crate) fn password_hash(password: &str) -> String {
    hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        password.as_bytes(),
    ))
}

/// `zato update password PATH USERNAME --password=...`: a dashboard user's password, in the ODB
/// that the web-admin in PATH uses.
pub(crate) async fn update_password(parsed: &Parsed) -> Result<()> {
    require_secrets(parsed, &["--password"])?;
    let path = PathBuf::from(&parsed.positionals[0]);
    let username = &parsed.positionals[1];
    let component = read_component(&path)?;
    let Some(odb) = component.odb.filter(|_| component.kind == "WEB_ADMIN") else {
        return Err(failed(format!("{} is not a web-admin", path.display())));
    };
    let mut connection = odb.connect(false).await?;
    let updated = sqlx::query(&odb.sql("UPDATE auth_user SET password = $1 WHERE username = $2"))
        .bind(password_hash(parsed.get_or("--password", "")))
        .bind(username.as_str())
        .execute(&mut connection)
        .await
        .map_err(odb_error("update the password"))?;
    if updated.rows_affected() == 0 {
        return Err(failed(format!("No such user `{username}`")));
    }
    say(&format!("password of {username} updated"));
    Ok(())
}
