//! Services deployed as Zato 3.2 deploys them, for what Muster relies on: a server's admin
//! channel (`POST /zato/admin/invoke`, Basic `admin.invoke` with the cluster's password) takes
//! `zato.service.upload-package`, which stores the module in the ODB (`deployment_package`);
//! every running server of the cluster picks it up (the real ones are told server to server; the
//! mock's look every 300 ms), writes it to its `work/hot-deploy/current`, "imports" it and, when
//! it defines a service, records `deployed_service` rows with the module's SHA-256 for itself. A
//! server started later deploys every stored module in order (Zato's `deploy_missing_services`,
//! which in the real Zato needs another server running).
//!
//! The mock does not run Python: a module "imports" unless a `def` or `class` line lacks its
//! closing `:` (then it logs Python's `SyntaxError: expected ':'` with the line, as Zato logs the
//! traceback, and records nothing: the version deployed before stays), or unless it imports a
//! package that is neither Python's nor Zato's (a short list, [`PROVIDED`]) nor in a directory of
//! the server's `PYTHONPATH` (then `ModuleNotFoundError: No module named 'X'`, as Python says);
//! its services are its `class X(...Service...)` blocks, named by their `name = '...'` line.

use super::*;

/// The admin channel's path.
const ADMIN_INVOKE_PATH: &str = "/zato/admin/invoke";

/// Answers a call on the admin channel; `None` when `request` is not one.
pub(crate) async fn admin_invoke(
    odb: &Odb,
    token: &str,
    user_conf: &user_conf::UserConf,
    request: &Request,
) -> Option<(&'static str, String)> {
    if request.method != "POST" || request.path != ADMIN_INVOKE_PATH {
        return None;
    }
    let refused = (
        "401 Unauthorized",
        "{\"zato_env\": {\"result\": \"ZATO_ERROR\"}}\n".to_owned(),
    );
    let Ok(mut connection) = odb.connect(false).await else {
        return Some(("503 Service Unavailable", String::new()));
    };
    let identity = server_identity(odb, &mut connection, token).await;
    let Some((server_id, cluster_id)) = identity else {
        return Some(refused);
    };
    let stored: Option<String> = sqlx::query(&odb.sql(
        "SELECT password FROM sec_basic_auth WHERE name = 'admin.invoke' AND cluster_id = $1",
    ))
    .bind(cluster_id)
    .fetch_optional(&mut connection)
    .await
    .ok()
    .flatten()
    .and_then(|row| row.try_get(0).ok());
    let engine = base64::engine::general_purpose::STANDARD;
    let given = request
        .headers
        .get("authorization")
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| base64::Engine::decode(&engine, encoded).ok())
        .map(|decoded| String::from_utf8_lossy(&decoded).into_owned());
    let expected = stored.map(|stored| format!("admin.invoke:{}", reveal(&stored)));
    if given.is_none() || given != expected {
        say("Credentials error -> admin.invoke");
        return Some(refused);
    }
    let call: serde_json::Value = serde_json::from_str(&request.body).unwrap_or_default();
    let input: serde_json::Value = call["payload"]
        .as_str()
        .and_then(|encoded| base64::Engine::decode(&engine, encoded).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    if call["name"] == "zato.pickup.on-update-user-conf" {
        return Some(user_conf.on_update(&input));
    }
    if let Some(answer) = delete_object(
        odb,
        &mut connection,
        cluster_id,
        call["name"].as_str().unwrap_or_default(),
        &input,
    )
    .await
    {
        return Some(answer);
    }
    if call["name"] == "zato.service.delete" {
        let Some(id) = input["id"].as_i64() else {
            return Some(("400 Bad Request", String::new()));
        };
        return Some(
            match delete_service(odb, &mut connection, cluster_id, id).await {
                Ok(()) => (
                    "200 OK",
                    "{\"zato_env\": {\"result\": \"ZATO_OK\"}, \"response\": {}}\n".to_owned(),
                ),
                Err(error) => ("500 Internal Server Error", format!("{error}\n")),
            },
        );
    }
    if call["name"] != "zato.service.upload-package" {
        return Some((
            "200 OK",
            "{\"zato_env\": {\"result\": \"ZATO_ERROR\", \"details\": \"mock-zato runs only zato.service.upload-package, zato.service.delete, zato.pickup.on-update-user-conf and the deletes of enmasse's objects\"}}\n".to_owned(),
        ));
    }
    let (Some(name), Some(content)) = (
        input["payload_name"].as_str(),
        input["payload"]
            .as_str()
            .and_then(|encoded| base64::Engine::decode(&engine, encoded).ok())
            .and_then(|bytes| String::from_utf8(bytes).ok()),
    ) else {
        return Some(("400 Bad Request", String::new()));
    };
    let stored = sqlx::query(&odb.sql(
        "INSERT INTO deployment_package (deployment_time, payload_name, payload, server_id, cluster_id) VALUES ($1, $2, $3, $4, $5)",
    ))
    .bind(now_text())
    .bind(name)
    .bind(content)
    .bind(server_id)
    .bind(cluster_id)
    .execute(&mut connection)
    .await;
    match stored {
        Ok(_) => Some((
            "200 OK",
            "{\"zato_env\": {\"result\": \"ZATO_OK\"}, \"response\": {}}\n".to_owned(),
        )),
        Err(error) => Some(("500 Internal Server Error", format!("{error}\n"))),
    }
}

/// This server's id and its cluster's, by its token.
async fn server_identity(
    odb: &Odb,
    connection: &mut AnyConnection,
    token: &str,
) -> Option<(i64, i64)> {
    let row = sqlx::query(&odb.sql("SELECT id, cluster_id FROM server WHERE token = $1"))
        .bind(token)
        .fetch_optional(connection)
        .await
        .ok()??;
    let id = row
        .try_get::<i64, _>("id")
        .or_else(|_| row.try_get::<i32, _>("id").map(i64::from))
        .ok()?;
    let cluster_id = row
        .try_get::<i64, _>("cluster_id")
        .or_else(|_| row.try_get::<i32, _>("cluster_id").map(i64::from))
        .ok()?;
    Some((id, cluster_id))
}

/// Deploys, in this server, every module stored for its cluster, then each one stored later.
pub(crate) fn follow_packages(path: PathBuf, odb: Odb, token: String) {
    tokio::spawn(async move {
        let mut last = 0i64;
        loop {
            if let Ok(mut connection) = odb.connect(false).await
                && let Some((server_id, cluster_id)) =
                    server_identity(&odb, &mut connection, &token).await
            {
                let packages = sqlx::query(&odb.sql(
                    "SELECT id, payload_name, payload FROM deployment_package WHERE cluster_id = $1 AND id > $2 ORDER BY id",
                ))
                .bind(cluster_id)
                .bind(last)
                .fetch_all(&mut connection)
                .await
                .unwrap_or_default();
                for package in packages {
                    let id = package
                        .try_get::<i64, _>(0)
                        .or_else(|_| package.try_get::<i32, _>(0).map(i64::from))
                        .unwrap_or(last);
                    let name: String = package.try_get(1).unwrap_or_default();
                    let content: String = package.try_get(2).unwrap_or_default();
                    deploy(&path, &odb, &mut connection, server_id, &name, &content).await;
                    last = id;
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
}

/// "Imports" module `name` in this server and records its services.
async fn deploy(
    path: &Path,
    odb: &Odb,
    connection: &mut AnyConnection,
    server_id: i64,
    name: &str,
    content: &str,
) {
    let current = path.join("work/hot-deploy/current");
    let _ = std::fs::create_dir_all(&current);
    let file = current.join(name);
    let _ = std::fs::write(&file, content);
    let log = |text: String| {
        use std::io::Write as _;
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path.join("logs/server.log"))
            .and_then(|mut log| log.write_all(text.as_bytes()));
    };
    let pid = std::process::id();
    let broken = content.lines().enumerate().find(|(_, line)| {
        let trimmed = line.trim();
        (trimmed.starts_with("def ") || trimmed.starts_with("class ")) && !trimmed.ends_with(':')
    });
    if broken.is_none()
        && let Some((index, line, package)) = missing_import(content)
    {
        log(format!(
            "2026-01-01 00:00:00,000 - WARNING - {pid}:Dummy-1 - zato.server.service.store:0 - Could not import module `{}` -> `Traceback (most recent call last):\n  File \"{}\", line {}, in <module>\n    {}\nModuleNotFoundError: No module named '{package}'\n`\n2026-01-01 00:00:00,000 - INFO - {pid}:Dummy-1 - zato.hot-deploy.create:0 - No services nor models were deployed from module `{name}`\n",
            file.display(),
            file.display(),
            index + 1,
            line.trim()
        ));
        return;
    }
    if let Some((index, line)) = broken {
        log(format!(
            "2026-01-01 00:00:00,000 - WARNING - {pid}:Dummy-1 - zato.server.service.store:0 - Could not import module `{}` -> `Traceback (most recent call last):\n  File \"{}\", line {}\n    {}\n    ^\nSyntaxError: expected ':'\n`\n2026-01-01 00:00:00,000 - INFO - {pid}:Dummy-1 - zato.hot-deploy.create:0 - No services nor models were deployed from module `{name}`\n",
            file.display(),
            file.display(),
            index + 1,
            line.trim()
        ));
        return;
    }
    let services = service_names(content);
    if services.is_empty() {
        log(format!(
            "2026-01-01 00:00:00,000 - INFO - {pid}:Dummy-1 - zato.hot-deploy.create:0 - No services nor models were deployed from module `{name}`\n"
        ));
        return;
    }
    let hash = hex::encode(ring::digest::digest(
        &ring::digest::SHA256,
        content.as_bytes(),
    ));
    for service in &services {
        let Some(service_id) = service_id(odb, connection, server_id, service).await else {
            continue;
        };
        let _ = sqlx::query(
            &odb.sql("DELETE FROM deployed_service WHERE server_id = $1 AND service_id = $2"),
        )
        .bind(server_id)
        .bind(service_id)
        .execute(&mut *connection)
        .await;
        let _ = sqlx::query(&odb.sql(
            "INSERT INTO deployed_service (deployment_time, source_path, source_hash, source_hash_method, server_id, service_id) VALUES ($1, $2, $3, 'SHA-256', $4, $5)",
        ))
        .bind(now_text())
        .bind(file.display().to_string())
        .bind(hash.as_str())
        .bind(server_id)
        .bind(service_id)
        .execute(&mut *connection)
        .await;
    }
    log(format!(
        "2026-01-01 00:00:00,000 - INFO - {pid}:Dummy-1 - zato.hot-deploy.create:0 - Deployed {} service(s) from `{}` -> {services:?}\n",
        services.len(),
        file.display()
    ));
}

/// What the mock's "Python" has without a `PYTHONPATH`: the standard library's modules services
/// use most, and what Zato 3.2's environment provides.
const PROVIDED: &[&str] = &[
    "__future__",
    "base64",
    "collections",
    "contextlib",
    "copy",
    "dataclasses",
    "datetime",
    "decimal",
    "enum",
    "functools",
    "hashlib",
    "http",
    "itertools",
    "json",
    "logging",
    "math",
    "os",
    "random",
    "re",
    "string",
    "sys",
    "time",
    "traceback",
    "typing",
    "urllib",
    "uuid",
    "bunch",
    "gevent",
    "requests",
    "sqlalchemy",
    "yaml",
    "zato",
];

/// The first top-level `import X` or `from X import` of a package the server cannot find: the
/// line's index, the line, and the package.
fn missing_import(content: &str) -> Option<(usize, &str, String)> {
    let path = std::env::var("PYTHONPATH").unwrap_or_default();
    let found = |package: &str| {
        PROVIDED.contains(&package)
            || path.split(':').filter(|dir| !dir.is_empty()).any(|dir| {
                let dir = Path::new(dir);
                dir.join(package).is_dir() || dir.join(format!("{package}.py")).is_file()
            })
    };
    content.lines().enumerate().find_map(|(index, line)| {
        let rest = line
            .strip_prefix("import ")
            .or_else(|| line.strip_prefix("from "))?;
        let package = rest
            .split(|character: char| !(character.is_alphanumeric() || character == '_'))
            .next()?
            .to_owned();
        (!package.is_empty() && !found(&package)).then_some((index, line, package))
    })
}

/// The id of service `name` in this server's cluster, made when it has none (as Zato's service
/// store adds a service it deploys for the first time).
async fn service_id(
    odb: &Odb,
    connection: &mut AnyConnection,
    server_id: i64,
    name: &str,
) -> Option<i64> {
    let find = odb.sql(
        "SELECT v.id FROM service v JOIN server s ON s.cluster_id = v.cluster_id WHERE s.id = $1 AND v.name = $2",
    );
    let read = |row: sqlx::any::AnyRow| {
        row.try_get::<i64, _>(0)
            .or_else(|_| row.try_get::<i32, _>(0).map(i64::from))
            .ok()
    };
    let found = sqlx::query(&find)
        .bind(server_id)
        .bind(name)
        .fetch_optional(&mut *connection)
        .await
        .ok()?;
    if let Some(row) = found {
        return read(row);
    }
    sqlx::query(&odb.sql(
        "INSERT INTO service (name, is_internal, cluster_id) SELECT $1, false, cluster_id FROM server WHERE id = $2",
    ))
    .bind(name)
    .bind(server_id)
    .execute(&mut *connection)
    .await
    .ok()?;
    read(
        sqlx::query(&find)
            .bind(server_id)
            .bind(name)
            .fetch_one(&mut *connection)
            .await
            .ok()?,
    )
}

/// `zato.service.delete` (input `id`): the service and what every server recorded of it go; the
/// real Zato also removes the module's file on every running server, and a server started later
/// no longer gets it from the others (`deploy_missing_services` reads what they deployed), which
/// the mock, whose servers deploy every stored package, stands for by dropping the packages of
/// the module that defined it.
async fn delete_service(
    odb: &Odb,
    connection: &mut AnyConnection,
    cluster_id: i64,
    id: i64,
) -> std::result::Result<(), sqlx::Error> {
    let paths: Vec<String> = sqlx::query(&odb.sql(
        "SELECT d.source_path FROM deployed_service d JOIN service v ON v.id = d.service_id WHERE v.id = $1 AND v.cluster_id = $2",
    ))
    .bind(id)
    .bind(cluster_id)
    .fetch_all(&mut *connection)
    .await?
    .iter()
    .filter_map(|row| row.try_get::<String, _>(0).ok())
    .collect();
    for statement in [
        "DELETE FROM deployed_service WHERE service_id = $1",
        "DELETE FROM service WHERE id = $1",
    ] {
        sqlx::query(&odb.sql(statement))
            .bind(id)
            .execute(&mut *connection)
            .await?;
    }
    for module in paths.iter().filter_map(|path| path.rsplit('/').next()) {
        sqlx::query(
            &odb.sql("DELETE FROM deployment_package WHERE cluster_id = $1 AND payload_name = $2"),
        )
        .bind(cluster_id)
        .bind(module)
        .execute(&mut *connection)
        .await?;
    }
    for path in &paths {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// The services a module defines: each `class X(...Service...)` block, named by its
/// `name = '...'` line (else by the class).
fn service_names(content: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_service: Option<String> = None;
    for line in content.lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("class ") {
            if let Some(class) = in_service.take() {
                names.push(class);
            }
            if rest.contains("Service") {
                in_service = rest.split(['(', ':']).next().map(str::to_lowercase);
            }
        } else if let Some(class) = &in_service
            && let Some(value) = trimmed.strip_prefix("name = ")
        {
            let named = value.trim_matches(['\'', '"']).to_owned();
            let _ = class;
            names.push(named);
            in_service = None;
        }
    }
    names.extend(in_service);
    names
}

/// `zato enmasse PATH --import --input FILE [--replace-odb-objects] [--env-file ENV]`, as far as
/// Muster relies on it: the env file's `[env]` values fill the input's `{Zato_Enmasse_Env.NAME}`
/// placeholders (one without a value becomes `Missing_Value_NAME`, as in Zato); a REST channel's
/// `service:` that no server of the cluster has deployed fails the import as Zato's does (exit 16,
/// `AttributeError: ("'NoneType' object has no attribute 'id'",)`); otherwise the filled-in file is
/// kept in the ODB (`mock_enmasse_import`, replacing one of the same name) and the command says
/// what it created.
pub(crate) async fn enmasse(parsed: &Parsed) -> Result<()> {
    if !parsed.flags.contains("--import") {
        return Err(MockError::Usage(
            "mock-zato's enmasse only imports (--import)".to_owned(),
        ));
    }
    let path = PathBuf::from(&parsed.positionals[0]);
    let component = read_component(&path)?;
    let (Some(odb), Some(token)) = (component.odb.clone(), component.token.clone()) else {
        return Err(failed("enmasse needs a server's directory"));
    };
    let input = parsed.require("--input", "enmasse --import needs --input")?;
    let mut text = std::fs::read_to_string(input)
        .map_err(|error| failed(format!("cannot read {input}: {error}")))?;
    if let Some(env_file) = parsed.get("--env-file") {
        let env = Ini::read(Path::new(env_file))?;
        for (name, value) in env.sections.get("env").cloned().unwrap_or_default() {
            say(&format!(
                "Imported env. variable `{name}` from `{env_file}`"
            ));
            text = text.replace(&format!("{{Zato_Enmasse_Env.{name}}}"), &value);
        }
    }
    while let Some(at) = text.find("{Zato_Enmasse_Env.") {
        let end = text[at..].find('}').map_or(text.len(), |end| at + end + 1);
        let name = text[at + "{Zato_Enmasse_Env.".len()..end - 1].to_owned();
        text.replace_range(at..end, &format!("Missing_Value_{name}"));
    }
    let mut connection = odb.connect(false).await?;
    let (_, cluster_id) = server_identity(&odb, &mut connection, &token)
        .await
        .ok_or_else(|| failed("this server's token is not in the ODB"))?;
    let deployed: Vec<String> = sqlx::query(&odb.sql(
        "SELECT v.name FROM deployed_service d JOIN service v ON v.id = d.service_id JOIN server s ON s.id = d.server_id WHERE s.cluster_id = $1",
    ))
    .bind(cluster_id)
    .fetch_all(&mut connection)
    .await
    .map_err(odb_error("read the deployed services"))?
    .iter()
    .filter_map(|row| row.try_get::<String, _>(0).ok())
    .collect();
    for line in text.lines() {
        if let Some(service) = line.trim().strip_prefix("service:") {
            let service = service.trim().trim_matches(['\'', '"']);
            if !deployed.iter().any(|name| name == service) && !service.starts_with("zato.") {
                return Err(MockError::Exit(
                    16,
                    "AttributeError: (\"'NoneType' object has no attribute 'id'\",) (Hint: re-run with --verbose for full traceback)".to_owned(),
                ));
            }
        }
    }
    let name = Path::new(input)
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    for statement in [
        "DELETE FROM mock_enmasse_import WHERE cluster_id = $1 AND name = $2",
        "INSERT INTO mock_enmasse_import (cluster_id, name, content) VALUES ($1, $2, $3)",
    ] {
        sqlx::query(&odb.sql(statement))
            .bind(cluster_id)
            .bind(name.as_str())
            .bind(text.as_str())
            .execute(&mut connection)
            .await
            .map_err(odb_error("keep the imported objects"))?;
    }
    for (section, name, sec_type) in yaml_objects(&text)? {
        let (table, kind) = match section.as_str() {
            "channel_rest" => ("http_soap", "channel"),
            "outgoing_rest" => ("http_soap", "outgoing"),
            "security" => ("sec_base", sec_type.as_str()),
            "scheduler" => ("job", ""),
            _ => continue,
        };
        let (kind_column, kind_filter) = match table {
            "http_soap" => (", connection", " AND connection = $3"),
            "sec_base" => (", sec_type", ""),
            _ => ("", ""),
        };
        let exists: Option<i64> = sqlx::query_scalar(&odb.sql(&format!(
            "SELECT COUNT(*) FROM {table} WHERE cluster_id = $1 AND name = $2{kind_filter}"
        )))
        .bind(cluster_id)
        .bind(name.as_str())
        .bind(kind)
        .fetch_optional(&mut connection)
        .await
        .map_err(odb_error("look up an imported object"))?;
        if exists.unwrap_or(0) > 0 {
            say(&format!("Updated object `{name}`"));
            continue;
        }
        let values = if kind_column.is_empty() {
            "$1, $2"
        } else {
            "$1, $2, $3"
        };
        sqlx::query(&odb.sql(&format!(
            "INSERT INTO {table} (cluster_id, name{kind_column}) VALUES ({values})"
        )))
        .bind(cluster_id)
        .bind(name.as_str())
        .bind(kind)
        .execute(&mut connection)
        .await
        .map_err(odb_error("keep an imported object"))?;
        say(&format!("Created object `{name}`"));
    }
    Ok(())
}

/// (section, name, security type) of each object of an enmasse file, as Zato's enmasse reads
/// its YAML (a file it cannot read fails the import with the parser's words).
fn yaml_objects(text: &str) -> Result<Vec<(String, String, String)>> {
    use yaml_rust2::{Yaml, YamlLoader};
    let documents = YamlLoader::load_from_str(text)
        .map_err(|error| MockError::Exit(16, format!("yaml.scanner.ScannerError: {error}")))?;
    let mut objects = Vec::new();
    let Some(sections) = documents.first().and_then(Yaml::as_hash) else {
        return Ok(objects);
    };
    for (section, items) in sections {
        for item in items.as_vec().map(Vec::as_slice).unwrap_or_default() {
            let field = |key: &str| item[key].as_str().unwrap_or_default().to_owned();
            if let Some(section) = section.as_str()
                && !field("name").is_empty()
            {
                objects.push((section.to_owned(), field("name"), field("type")));
            }
        }
    }
    Ok(objects)
}

/// The admin services that delete what enmasse imported: `zato.http-soap.delete` (input `name`
/// and `connection`; with `should_raise_if_missing` false, a missing one is no error),
/// `zato.security.basic-auth.delete`, `zato.security.apikey.delete` and
/// `zato.scheduler.job.delete` (input `id`; a missing one is an error, as in Zato). `None` for
/// another service.
async fn delete_object(
    odb: &Odb,
    connection: &mut AnyConnection,
    cluster_id: i64,
    service: &str,
    input: &serde_json::Value,
) -> Option<(&'static str, String)> {
    let ok = (
        "200 OK",
        "{\"zato_env\": {\"result\": \"ZATO_OK\"}, \"response\": {}}\n".to_owned(),
    );
    let missing = (
        "500 Internal Server Error",
        "{\"zato_env\": {\"result\": \"ZATO_ERROR\", \"details\": \"no such object\"}}\n"
            .to_owned(),
    );
    let deleted =
        match service {
            "zato.http-soap.delete" => sqlx::query(&odb.sql(
                "DELETE FROM http_soap WHERE cluster_id = $1 AND name = $2 AND connection = $3",
            ))
            .bind(cluster_id)
            .bind(input["name"].as_str().unwrap_or_default())
            .bind(input["connection"].as_str().unwrap_or_default())
            .execute(&mut *connection)
            .await
            .map(|done| done.rows_affected() > 0 || input["should_raise_if_missing"] == false),
            "zato.security.basic-auth.delete"
            | "zato.security.apikey.delete"
            | "zato.scheduler.job.delete" => {
                let table = if service.contains("scheduler") {
                    "job"
                } else {
                    "sec_base"
                };
                sqlx::query(&odb.sql(&format!(
                    "DELETE FROM {table} WHERE cluster_id = $1 AND id = $2"
                )))
                .bind(cluster_id)
                .bind(input["id"].as_i64().unwrap_or(-1))
                .execute(&mut *connection)
                .await
                .map(|done| done.rows_affected() > 0)
            }
            _ => return None,
        };
    Some(match deleted {
        Ok(true) => {
            say(&format!("{service}: deleted {input}"));
            ok
        }
        Ok(false) => missing,
        Err(error) => ("500 Internal Server Error", format!("{error}\n")),
    })
}
