//! The HTTP/JSON gateway to `AdminService`, for tools that do not speak gRPC (curl, Ansible's
//! `uri`): `POST /api/v1/AdminService/METHOD` with the request message as JSON (protobuf's JSON
//! mapping; an empty body is the empty request) answers the response message as JSON, or
//! `{"code": "NOT_FOUND", "message": "…"}` with the HTTP status of that code.
//!
//! It is served on the gRPC port, behind the same TLS, and every call goes through the same
//! `AdminService` implementation: the same admin token (`authorization: Bearer …`), the same
//! checks, refusals logged and counted the same way. The token is checked first: of a request
//! without a good one nothing is kept, decoded or routed (its body is read and dropped, so that
//! the client gets the answer), and its refusal is logged and counted like gRPC's. No answer echoes more than 64 characters of what it was sent; every answer says
//! `nosniff` and `no-store`. Streams (`WatchEvents`) are gRPC only.
//!
//! `GET /` is the status page (`ui/`): clusters, hosts, components, backends and recent events,
//! refreshed every two seconds, read through this gateway with the admin token.

use std::future::Future;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use muster_proto::v1::admin_service_server::AdminService as _;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::Code;

use crate::admin::AdminApi;

/// The gateway's routes and the status page, to merge into the gRPC server's.
pub fn router(api: AdminApi) -> axum::Router {
    axum::Router::new()
        .route("/api/v1/AdminService/{method}", axum::routing::post(call))
        .with_state(api)
        .route(
            "/",
            axum::routing::get(|| page(INDEX, "text/html; charset=utf-8")),
        )
        .route(
            "/ui/app.js",
            axum::routing::get(|| page(APP, "text/javascript; charset=utf-8")),
        )
        .route(
            "/ui/style.css",
            axum::routing::get(|| page(STYLE, "text/css; charset=utf-8")),
        )
}

/// The status page: static files that read the clusters through the gateway above with the admin
/// token the operator gives it. They hold no data themselves.
const INDEX: &str = include_str!("ui/index.html");
const APP: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/style.css");

async fn page(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            ("content-type", content_type),
            // Its own scripts and styles, its own API; no frames, no inline code.
            (
                "content-security-policy",
                "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                 frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "no-referrer"),
            ("cache-control", "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The HTTP status for a gRPC code, as Google's HTTP mapping has it.
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn error(code: Code, message: &str) -> Response {
    let body = serde_json::json!({
        "code": format!("{code:?}")
            .chars()
            .fold(String::new(), |mut snake, character| {
                if character.is_uppercase() && !snake.is_empty() {
                    snake.push('_');
                }
                snake.push(character.to_ascii_uppercase());
                snake
            }),
        "message": message,
    });
    json(http_status(code), &body)
}

fn json(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [
                ("content-type", "application/json"),
                // An answer is data, never a page to render, and may hold what only an admin
                // may see: no browser guesses its type, and no cache keeps it.
                ("x-content-type-options", "nosniff"),
                ("cache-control", "no-store"),
            ],
            bytes,
        )
            .into_response(),
        Err(encode) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the answer: {encode}"),
        )
            .into_response(),
    }
}

/// Decodes the request message, calls the method with the caller's headers and connection (the
/// token, the address refusals are logged with), and encodes its answer.
async fn invoke<Message, Answer, Call, Answered>(
    parts: http::request::Parts,
    body: Bytes,
    call: Call,
) -> Response
where
    Message: DeserializeOwned + Default,
    Answer: Serialize,
    Call: FnOnce(tonic::Request<Message>) -> Answered,
    Answered: Future<Output = Result<tonic::Response<Answer>, tonic::Status>>,
{
    let message = if body.iter().all(u8::is_ascii_whitespace) {
        Message::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(message) => message,
            Err(decode) => {
                return error(
                    Code::InvalidArgument,
                    &format!("the request body is not the method's request message: {decode}"),
                );
            }
        }
    };
    let metadata = tonic::metadata::MetadataMap::from_headers(parts.headers);
    let request = tonic::Request::from_parts(metadata, parts.extensions, message);
    match call(request).await {
        Ok(answer) => json(StatusCode::OK, &answer.into_inner()),
        Err(status) => error(status.code(), status.message()),
    }
}

/// Reads and drops what a refused caller sends (at most `MAX_REQUEST_BYTES`, for at most
/// `DISCARD_PATIENCE`) without keeping any of it: an HTTP/2 client whose body is still being
/// sent sees a reset stream instead of the answer when the server answers first.
async fn discard(body: axum::body::Body) {
    use tokio_stream::StreamExt as _;
    let mut chunks = body.into_data_stream();
    let mut read = 0;
    let drained = async {
        while let Some(Ok(chunk)) = chunks.next().await {
            read += chunk.len();
            if read > muster_proto::MAX_REQUEST_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(DISCARD_PATIENCE, drained).await;
}

/// How long a refused caller's body is read (and dropped) before the answer.
const DISCARD_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);

async fn call(
    State(api): State<AdminApi>,
    Path(method): Path<String>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    // The caller first: an anonymous request is refused (logged, counted) before its body is
    // read or its method looked up. The method checks the token again, as every gRPC call does.
    let caller = tonic::Request::from_parts(
        tonic::metadata::MetadataMap::from_headers(parts.headers.clone()),
        parts.extensions.clone(),
        (),
    );
    if let Err(refused) = api.authorize(&caller).await {
        discard(body).await;
        let status = tonic::Status::from(refused);
        return error(status.code(), status.message());
    }
    let body = match axum::body::to_bytes(body, muster_proto::MAX_REQUEST_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            return error(
                Code::InvalidArgument,
                &format!(
                    "the request body is over {} bytes",
                    muster_proto::MAX_REQUEST_BYTES
                ),
            );
        }
    };
    macro_rules! methods {
        ($($name:literal => $method:ident),* $(,)?) => {
            match method.as_str() {
                $($name => invoke(parts, body, |request| api.$method(request)).await,)*
                "WatchEvents" => error(
                    Code::Unimplemented,
                    "WatchEvents is a stream: call it over gRPC (`muster events --follow`), or poll ListEvents",
                ),
                _ => error(
                    Code::NotFound,
                    &format!("AdminService has no method {:?}", method.chars().take(64).collect::<String>()),
                ),
            }
        };
    }
    methods! {
        "CreateCluster" => create_cluster,
        "ListClusters" => list_clusters,
        "GetCluster" => get_cluster,
        "DeleteCluster" => delete_cluster,
        "CreateJoinToken" => create_join_token,
        "ListJoinTokens" => list_join_tokens,
        "RevokeJoinToken" => revoke_join_token,
        "ListHosts" => list_hosts,
        "GetHost" => get_host,
        "ListEvents" => list_events,
        "CreateComponent" => create_component,
        "ListComponents" => list_components,
        "DeleteComponent" => delete_component,
        "ConfigureLoadBalancer" => configure_load_balancer,
        "SetServices" => set_services,
        "SetConfig" => set_config,
        "SetUserConf" => set_user_conf,
        "RebuildClusterOdb" => rebuild_cluster_odb,
        "RestartServers" => restart_servers,
        "PauseRollout" => pause_rollout,
        "ConfigureServers" => configure_servers,
        "UndoServerSettings" => undo_server_settings,
        "ConfigureRole" => configure_role,
        "ConfigureRollout" => configure_rollout,
        "ListBackends" => list_backends,
        "DrainHost" => drain_host,
        "AdmitHost" => admit_host,
        "RemoveHost" => remove_host,
        "GetDashboardLogin" => get_dashboard_login,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_http_statuses_and_screaming_names() {
        assert_eq!(http_status(Code::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(http_status(Code::Unauthenticated), StatusCode::UNAUTHORIZED);
        assert_eq!(http_status(Code::AlreadyExists), StatusCode::CONFLICT);
        let response = error(Code::InvalidArgument, "bad");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    }

    /// Every unary method of the service is routed: a method added to the proto and not here
    /// fails this test. Streams (`WatchEvents`, `SetPython`) are gRPC only.
    #[test]
    fn every_unary_method_is_served() {
        use prost::Message as _;
        let set =
            prost_types::FileDescriptorSet::decode(muster_proto::FILE_DESCRIPTOR_SET).unwrap();
        let source = include_str!("gateway.rs");
        for file in &set.file {
            for service in file.service.iter().filter(|s| s.name() == "AdminService") {
                for method in &service.method {
                    if method.server_streaming() || method.client_streaming() {
                        continue;
                    }
                    assert!(
                        source.contains(&format!("\"{}\" =>", method.name())),
                        "{} is not served by the gateway",
                        method.name()
                    );
                }
            }
        }
    }
}
