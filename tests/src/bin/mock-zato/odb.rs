//! The ODB: a real database on SQLite, PostgreSQL or MySQL, with the tables and refusals of
//! `zato create odb` and `zato create cluster`.

use super::*;

// The ODB

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
    MySql,
}

#[derive(Debug, Clone)]
pub(crate) struct Odb {
    pub(crate) odb_type: String,
    pub(crate) host: String,
    pub(crate) port: String,
    pub(crate) user: String,
    pub(crate) db_name: String,
    pub(crate) password: String,
}

impl Odb {
    pub(crate) fn from_options(parsed: &Parsed) -> Result<Odb> {
        let odb_type = parsed.get_or("--odb-type", "sqlite").to_owned();
        let default_port = match odb_type.as_str() {
            "postgresql" => "5432",
            "mysql" => "3306",
            _ => "",
        };
        let odb = Odb {
            host: parsed.get_or("--odb-host", "").to_owned(),
            port: parsed.get_or("--odb-port", default_port).to_owned(),
            user: parsed.get_or("--odb-user", "").to_owned(),
            db_name: parsed.get_or("--odb-db-name", "").to_owned(),
            password: parsed.get_or("--odb-password", "").to_owned(),
            odb_type,
        };
        if odb.db_name.is_empty() {
            return Err(MockError::Usage("--odb-db-name is missing".to_owned()));
        }
        Ok(odb)
    }

    pub(crate) fn from_ini(ini: &Ini) -> Result<Odb> {
        let get = |key: &str| ini.get("odb", key).unwrap_or_default().to_owned();
        Ok(Odb {
            odb_type: get("engine"),
            host: get("host"),
            port: get("port"),
            user: get("username"),
            db_name: get("db_name"),
            password: reveal(&get("password")),
        })
    }

    pub(crate) fn dialect(&self) -> Dialect {
        match self.odb_type.as_str() {
            "postgresql" => Dialect::Postgres,
            "mysql" => Dialect::MySql,
            _ => Dialect::Sqlite,
        }
    }

    pub(crate) fn url(&self, create: bool) -> Result<String> {
        if self.dialect() == Dialect::Sqlite {
            let mode = if create { "rwc" } else { "rw" };
            return Ok(format!("sqlite://{}?mode={mode}", self.db_name));
        }
        let scheme = if self.dialect() == Dialect::Postgres {
            "postgres"
        } else {
            "mysql"
        };
        let mut url = url::Url::parse(&format!("{scheme}://placeholder/"))
            .map_err(|error| failed(error.to_string()))?;
        url.set_host(Some(&self.host))
            .map_err(|error| failed(format!("--odb-host: {error}")))?;
        let port: u16 = self
            .port
            .parse()
            .map_err(|_| failed(format!("invalid --odb-port {:?}", self.port)))?;
        let _ = url.set_port(Some(port));
        let _ = url.set_username(&self.user);
        if !self.password.is_empty() {
            let _ = url.set_password(Some(&self.password));
        }
        url.set_path(&self.db_name);
        Ok(url.to_string())
    }

    pub(crate) async fn connect(&self, create: bool) -> Result<AnyConnection> {
        sqlx::any::install_default_drivers();
        let url = self.url(create)?;
        let connecting = AnyConnection::connect(&url);
        match tokio::time::timeout(Duration::from_secs(10), connecting).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(failed(format!(
                "cannot connect to the ODB ({} {}): {error}",
                self.odb_type,
                self.location()
            ))),
            Err(_) => Err(failed(format!(
                "cannot connect to the ODB ({} {}): timed out",
                self.odb_type,
                self.location()
            ))),
        }
    }

    pub(crate) fn location(&self) -> String {
        match self.dialect() {
            Dialect::Sqlite => self.db_name.clone(),
            _ => format!("{}@{}:{}/{}", self.user, self.host, self.port, self.db_name),
        }
    }

    /// `query` with `$N` as `?` for MySQL. Its own copy of what `muster_proto::sql` does:
    /// mock-zato stands for Zato and shares no code with Muster.
    pub(crate) fn sql(&self, query: &str) -> String {
        if self.dialect() != Dialect::MySql {
            return query.to_owned();
        }
        let mut converted = String::new();
        let mut characters = query.chars().peekable();
        while let Some(character) = characters.next() {
            if character == '$' && characters.peek().is_some_and(char::is_ascii_digit) {
                while characters.peek().is_some_and(char::is_ascii_digit) {
                    characters.next();
                }
                converted.push('?');
            } else {
                converted.push(character);
            }
        }
        converted
    }

    pub(crate) fn ini_section(&self) -> String {
        format!(
            "[odb]\nengine={}\nhost={}\nport={}\nusername={}\ndb_name={}\npassword={}\n",
            self.odb_type,
            self.host,
            self.port,
            self.user,
            self.db_name,
            conceal(&self.password)
        )
    }
}

/// Zato keeps the ODB password encrypted in its config; the mock only hides it from casual reads.
pub(crate) fn conceal(secret: &str) -> String {
    format!("mock-hex:{}", hex::encode(secret))
}

pub(crate) fn reveal(stored: &str) -> String {
    stored
        .strip_prefix("mock-hex:")
        .and_then(|encoded| hex::decode(encoded).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_default()
}

pub(crate) fn odb_error(action: &str) -> impl FnOnce(sqlx::Error) -> MockError + '_ {
    move |error| failed(format!("ODB error while trying to {action}: {error}"))
}

pub(crate) async fn table_exists(connection: &mut AnyConnection, table: &str) -> bool {
    sqlx::query(&format!("SELECT COUNT(*) FROM {table}"))
        .fetch_one(connection)
        .await
        .is_ok()
}

pub(crate) fn schema(dialect: Dialect) -> Vec<String> {
    let (serial, text, large) = match dialect {
        Dialect::Sqlite => ("INTEGER PRIMARY KEY AUTOINCREMENT", "VARCHAR(200)", "TEXT"),
        Dialect::Postgres => ("SERIAL PRIMARY KEY", "VARCHAR(200)", "TEXT"),
        Dialect::MySql => (
            "INTEGER AUTO_INCREMENT PRIMARY KEY",
            "VARCHAR(200)",
            "MEDIUMTEXT",
        ),
    };
    vec![
        format!(
            "CREATE TABLE install_state (id {serial}, version {text} NOT NULL UNIQUE, install_time {text} NOT NULL, source_host {text} NOT NULL, source_user {text} NOT NULL, opaque1 {text})"
        ),
        format!(
            "CREATE TABLE cluster (id {serial}, name {text} NOT NULL UNIQUE, description {text}, odb_type {text} NOT NULL, odb_host {text}, odb_port INTEGER, odb_user {text}, odb_db_name {text}, odb_schema {text}, broker_host {text}, broker_port INTEGER, lb_host {text} NOT NULL, lb_port INTEGER NOT NULL, lb_agent_port INTEGER NOT NULL, cw_srv_id INTEGER, cw_srv_keep_alive_dt {text}, opaque1 {text})"
        ),
        format!(
            "CREATE TABLE server (id {serial}, name {text} NOT NULL, host {text}, bind_host {text}, bind_port INTEGER, preferred_address {text}, crypto_use_tls INTEGER, last_join_status {text}, last_join_mod_date {text}, last_join_mod_by {text}, up_status {text}, up_mod_date {text}, token VARCHAR(32) NOT NULL, opaque1 {text}, cluster_id INTEGER NOT NULL REFERENCES cluster (id) ON DELETE CASCADE, UNIQUE (name, cluster_id))"
        ),
        // Zato's admin channel credentials (its `sec_basic_auth`; the mock keeps only these).
        format!(
            "CREATE TABLE sec_basic_auth (id {serial}, name {text} NOT NULL, username {text} NOT NULL, password {text} NOT NULL, cluster_id INTEGER NOT NULL)"
        ),
        // What `zato.service.upload-package` stores, and what each server deployed of it.
        format!(
            "CREATE TABLE deployment_package (id {serial}, deployment_time {text} NOT NULL, payload_name {text} NOT NULL, payload {large} NOT NULL, server_id INTEGER NOT NULL, cluster_id INTEGER NOT NULL)"
        ),
        format!(
            "CREATE TABLE mock_enmasse_import (cluster_id INTEGER NOT NULL, name {text} NOT NULL, content {large} NOT NULL)"
        ),
        // The objects enmasse imports, by name, as Zato keeps them (REST channels and outgoing
        // connections in `http_soap`, security definitions in `sec_base`, jobs in `job`).
        format!(
            "CREATE TABLE http_soap (id {serial}, name {text} NOT NULL, connection {text} NOT NULL, cluster_id INTEGER NOT NULL)"
        ),
        format!(
            "CREATE TABLE sec_base (id {serial}, name {text} NOT NULL, sec_type {text} NOT NULL, cluster_id INTEGER NOT NULL)"
        ),
        format!(
            "CREATE TABLE job (id {serial}, name {text} NOT NULL, cluster_id INTEGER NOT NULL)"
        ),
        // Zato's services (the mock's: only those deployed modules define), and which server
        // deployed which from what module (Zato's `deployed_service`, by `service_id`).
        format!(
            "CREATE TABLE service (id {serial}, name {text} NOT NULL, is_internal BOOLEAN NOT NULL, cluster_id INTEGER NOT NULL)"
        ),
        format!(
            "CREATE TABLE deployed_service (deployment_time {text} NOT NULL, source_path {text}, source_hash {text}, source_hash_method {text}, server_id INTEGER NOT NULL, service_id INTEGER NOT NULL)"
        ),
    ]
}

pub(crate) fn user_and_host() -> (String, String) {
    let user = std::env::var("USER").unwrap_or_else(|_| "root".to_owned());
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_else(|| "localhost".to_owned());
    (user, host)
}

pub(crate) async fn create_odb(parsed: &Parsed) -> Result<()> {
    let odb = Odb::from_options(parsed)?;
    let mut connection = odb.connect(true).await?;
    if table_exists(&mut connection, "install_state").await {
        if parsed.flags.contains("--skip-if-exists") {
            say("ODB already exists, skipped (--skip-if-exists)");
            return Ok(());
        }
        return Err(failed(
            "ODB_EXISTS: the ODB already exists (table install_state is present)",
        ));
    }
    for statement in schema(odb.dialect()) {
        sqlx::query(&statement)
            .execute(&mut connection)
            .await
            .map_err(odb_error("create tables"))?;
    }
    let (user, host) = user_and_host();
    sqlx::query(&odb.sql(
        "INSERT INTO install_state (version, install_time, source_host, source_user) VALUES ($1, $2, $3, $4)",
    ))
    .bind("3.2-mock")
    .bind(now_text())
    .bind(host)
    .bind(user)
    .execute(&mut connection)
    .await
    .map_err(odb_error("record the install state"))?;
    say(&format!(
        "ODB created ({} {})",
        odb.odb_type,
        odb.location()
    ));
    Ok(())
}

pub(crate) async fn create_cluster(parsed: &Parsed) -> Result<()> {
    require_secrets(parsed, &["--admin-invoke-password"])?;
    let odb = Odb::from_options(parsed)?;
    let name = &parsed.positionals[0];
    let lb_port: i64 = parsed
        .get_or("--lb-port", "11223")
        .parse()
        .map_err(|_| MockError::Usage("argument --lb-port: invalid int value".into()))?;
    let lb_agent_port: i64 = parsed
        .get_or("--lb-agent_port", "20151")
        .parse()
        .map_err(|_| MockError::Usage("argument --lb-agent_port: invalid int value".into()))?;
    let mut connection = odb.connect(false).await?;
    // Zato 3.2 skips when the ODB's tables exist, which they always do after `create odb`: the
    // flag never creates the cluster.
    if parsed.flags.contains("--skip-if-exists")
        && table_exists(&mut connection, "install_state").await
    {
        say("OK (--skip-if-exists: the ODB's tables exist; no cluster was created)");
        return Ok(());
    }
    if !table_exists(&mut connection, "cluster").await {
        return Err(failed(
            "the ODB has no cluster table; run `zato create odb` first",
        ));
    }
    let existing = sqlx::query(&odb.sql("SELECT id FROM cluster WHERE name = $1"))
        .bind(name.as_str())
        .fetch_optional(&mut connection)
        .await
        .map_err(odb_error("look up the cluster"))?;
    if existing.is_some() {
        return Err(MockError::Exit(
            EXCEPTION_CAUGHT,
            format!(
                "IntegrityError: ('(sqlite3.IntegrityError) UNIQUE constraint failed: cluster.name',) (cluster {name})"
            ),
        ));
    }
    let port: i64 = odb.port.parse().unwrap_or(0);
    sqlx::query(&odb.sql(
        "INSERT INTO cluster (name, description, odb_type, odb_host, odb_port, odb_user, odb_db_name, odb_schema, lb_host, lb_port, lb_agent_port) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    ))
    .bind(name.as_str())
    .bind("Created by mock-zato")
    .bind(odb.odb_type.as_str())
    .bind(odb.host.as_str())
    .bind(port)
    .bind(odb.user.as_str())
    .bind(odb.db_name.as_str())
    .bind(parsed.get_or("--postgresql-schema", ""))
    .bind(parsed.get_or("--lb-host", "127.0.0.1"))
    .bind(lb_port)
    .bind(lb_agent_port)
    .execute(&mut connection)
    .await
    .map_err(odb_error("insert the cluster"))?;
    sqlx::query(&odb.sql(
        "INSERT INTO sec_basic_auth (name, username, password, cluster_id) \
         SELECT 'admin.invoke', 'admin.invoke', $1, id FROM cluster WHERE name = $2",
    ))
    .bind(conceal(parsed.get_or("--admin-invoke-password", "")))
    .bind(name.as_str())
    .execute(&mut connection)
    .await
    .map_err(odb_error("store the admin.invoke credentials"))?;
    say(&format!("cluster {name} created"));
    Ok(())
}
