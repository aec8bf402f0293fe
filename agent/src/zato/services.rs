//! Deploying a cluster's services (Python modules) through a running server, as Zato's dashboard
//! does, and reading what Zato recorded of it. Zato 3.2's hot-deploy directory does nothing in
//! this build (its file observers die at start), so the agent calls the admin service
//! `zato.service.upload-package` over the server's admin channel (`POST /zato/admin/invoke`, user
//! `admin.invoke`). Zato stores the module in the ODB, deploys it on every running server of the
//! cluster (server to server, through each server's `preferred_address`) and, on each, records
//! `deployed_service` rows with the module's SHA-256 (`source_hash`): that record, per server, is
//! what says a module is deployed there. A module that does not import (a syntax error, a missing
//! dependency) records nothing: the previous version keeps serving, the server logs the
//! traceback, and Zato's copy of the file in `work/hot-deploy/current` is the broken one until a
//! good one replaces it.

use std::net::IpAddr;

use base64::Engine as _;

use super::health;

/// Zato's admin channel, where `zato service invoke` and the dashboard call admin services.
pub const ADMIN_INVOKE_PATH: &str = "/zato/admin/invoke";
/// The user of that channel (`create cluster --admin-invoke-password` sets its password).
pub const ADMIN_INVOKE_USER: &str = "admin.invoke";
/// The admin service that deploys a module.
const UPLOAD_SERVICE: &str = "zato.service.upload-package";

/// The admin service that deletes a service (from the ODB, and from every running server with
/// its module's file).
const DELETE_SERVICE: &str = "zato.service.delete";

/// Sends module `name` to the server at `address:port`, which deploys it on every running server
/// of its cluster (`cluster_id` is the cluster's id in the ODB).
pub async fn upload(
    address: IpAddr,
    port: u16,
    admin_password: &str,
    cluster_id: i32,
    name: &str,
    content: &str,
) -> Result<(), String> {
    let engine = base64::engine::general_purpose::STANDARD;
    let input = serde_json::json!({
        "cluster_id": cluster_id,
        "payload": engine.encode(content),
        "payload_name": name,
    });
    invoke(address, port, admin_password, UPLOAD_SERVICE, &input)
        .await
        .map_err(|refusal| format!("the server on port {port} refused to deploy {name}: {refusal}"))
}

/// Deletes service `id` (and `name`, for errors) through the server at `address:port`: Zato
/// removes it from the ODB and from every running server of the cluster.
pub async fn delete(
    address: IpAddr,
    port: u16,
    admin_password: &str,
    id: i64,
    name: &str,
) -> Result<(), String> {
    invoke(
        address,
        port,
        admin_password,
        DELETE_SERVICE,
        &serde_json::json!({ "id": id }),
    )
    .await
    .map_err(|refusal| {
        format!("the server on port {port} did not delete service {name}: {refusal}")
    })
}

/// The admin service that writes a user-config file and loads it into the server's memory (what
/// Zato's pickup runs for each server process when a file changes; called on one server, it
/// changes that server only).
const USER_CONF_SERVICE: &str = "zato.pickup.on-update-user-conf";

/// Loads user-config file `file_name` (at `full_path`, its content `data`) into the server at
/// `address:port`: Zato writes the file and replaces `self.config.NAME` with what it reads from
/// it. Zato answers OK even when it cannot parse the file (it logs that), so the file is checked
/// before. The refusal names the HTTP status only: Zato's answer may echo the content, a secret.
pub async fn load_user_conf(
    address: IpAddr,
    port: u16,
    admin_password: &str,
    full_path: &std::path::Path,
    file_name: &str,
    data: &str,
) -> Result<(), String> {
    let input = serde_json::json!({
        "data": data,
        "full_path": full_path.display().to_string(),
        "file_name": file_name,
        "relative_dir": "",
    });
    invoke(address, port, admin_password, USER_CONF_SERVICE, &input)
        .await
        .map_err(|refusal| {
            // "HTTP STATUS BODY": the body is left out; a connection error has none.
            let shown = match refusal.strip_prefix("HTTP ") {
                Some(rest) => format!("HTTP {}", rest.split(' ').next().unwrap_or_default()),
                None => refusal,
            };
            format!("the server on port {port} did not load user-config file {file_name}: {shown}")
        })
}

/// Deletes a configuration object (`what` names it for errors) with admin service `service`
/// and its `input`, through the server at `address:port`: Zato removes it from the ODB and from
/// every running server.
pub async fn delete_object(
    address: IpAddr,
    port: u16,
    admin_password: &str,
    service: &str,
    input: &serde_json::Value,
    what: &str,
) -> Result<(), String> {
    invoke(address, port, admin_password, service, input)
        .await
        .map_err(|refusal| format!("the server on port {port} did not delete {what}: {refusal}"))
}

/// Calls admin service `service` with `input` on the server's admin channel; the refusal, when
/// it answers anything but 200 with Zato's OK.
async fn invoke(
    address: IpAddr,
    port: u16,
    admin_password: &str,
    service: &str,
    input: &serde_json::Value,
) -> Result<(), String> {
    let engine = base64::engine::general_purpose::STANDARD;
    // As Zato's own client sends a call: the service's input as base64 of its JSON.
    let call = serde_json::json!({
        "name": service,
        "payload": engine.encode(input.to_string()),
        "channel": "invoke",
        "data_format": "json",
        "transport": null,
        "is_async": false,
        "expiration": 15,
        "pid": null,
        "all_pids": false,
        "timeout": null,
        "skip_response_elem": true,
        "needs_response_time": false,
        "needs_headers": false,
    });
    let credentials = engine.encode(format!("{ADMIN_INVOKE_USER}:{admin_password}"));
    let answer = health::request(
        address,
        port,
        "POST",
        ADMIN_INVOKE_PATH,
        &[
            ("Authorization", format!("Basic {credentials}")),
            ("Content-Type", "application/json".to_owned()),
        ],
        &call.to_string(),
    )
    .await?;
    if answer.status == 200 && !answer.body.contains("ZATO_ERROR") {
        Ok(())
    } else {
        let body: String = answer.body.chars().take(300).collect();
        Err(format!("HTTP {} {}", answer.status, body.trim()))
    }
}

/// Why module `name` did not deploy, from (the end of) the server's log: the place Python gives
/// in the module and the exception line after it, e.g. `line 5: SyntaxError: expected ':'`.
pub fn import_error(log: &str, name: &str) -> Option<String> {
    let place = format!("/{name}\", line ");
    let lines: Vec<&str> = log.lines().collect();
    let at = lines.iter().rposition(|line| line.contains(&place))?;
    let line_number = lines[at]
        .split(&place)
        .nth(1)?
        .split(|character: char| !character.is_ascii_digit())
        .next()?
        .to_owned();
    let exception = lines[at + 1..]
        .iter()
        .map(|line| line.trim())
        .find(|line| {
            line.split(':').next().is_some_and(|kind| {
                !kind.is_empty()
                    && !kind.contains(' ')
                    && (kind.ends_with("Error") || kind.ends_with("Exception"))
            })
        })?;
    Some(format!("line {line_number}: {exception}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As the real Zato 3.2's server logs a module with a syntax error.
    const BROKEN: &str = "\
2026-12-06 09:24:23,600 - WARNING - 1543:Dummy-65 - zato.server.service.store:0 - Could not import module `/srv/server1/work/hot-deploy/current/orders.py` -> `Traceback (most recent call last):
  File \"<frozen importlib._bootstrap_external>\", line 947, in source_to_code
  File \"/srv/server1/work/hot-deploy/current/orders.py\", line 5
    def handle(self)
                    ^
SyntaxError: expected ':'
`
2026-12-06 09:24:23,668 - INFO - 1543:Dummy-65 - zato.hot-deploy.create:0 - No services nor models were deployed from module `orders.py`
";

    #[test]
    fn the_cause_of_a_module_that_did_not_import_is_its_line_and_exception() {
        assert_eq!(
            import_error(BROKEN, "orders.py").as_deref(),
            Some("line 5: SyntaxError: expected ':'")
        );
        assert_eq!(import_error(BROKEN, "billing.py"), None);
        let missing = "  File \"/srv/s/work/hot-deploy/current/billing.py\", line 1, in <module>\n    \
                       import humanize\nModuleNotFoundError: No module named 'humanize'\n";
        assert_eq!(
            import_error(missing, "billing.py").as_deref(),
            Some("line 1: ModuleNotFoundError: No module named 'humanize'")
        );
    }
}
