//! JSON routes. Each handler turns a JSON body into the service's request, calls it with the caller in
//! metadata, and turns the reply into JSON. Bodies are those of `shared/eval/run_eval.py`'s contract.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use smb_core::Error;
use smb_proto::auth::v1 as auth_pb;
use smb_proto::connectors::v1 as conn_pb;
use smb_proto::orchestrator::v1 as orch_pb;

use crate::authn::Authenticated;
use crate::json::JsonBody;
use crate::server::AppState;

type AppResult<T> = Result<T, Error>;

#[derive(Deserialize)]
pub struct SignupBody {
    tenant_name: String,
    email: String,
    password: String,
    timezone: String,
    currency: String,
}

#[derive(Deserialize)]
pub struct LoginBody {
    email: String,
    password: String,
}

#[derive(Deserialize)]
pub struct RefreshBody {
    refresh_token: String,
}

#[derive(Deserialize)]
pub struct QueryBody {
    query: String,
    #[serde(default)]
    as_of: Option<String>,
    #[serde(default)]
    debug: bool,
    /// Continue a conversation (the `conversation_id` of an earlier answer).
    #[serde(default)]
    conversation_id: Option<String>,
    /// Answer as Server-Sent Events: `delta` events with text, then one `done` with the whole answer.
    #[serde(default)]
    stream: bool,
}

#[derive(Deserialize)]
pub struct CreateConnectorBody {
    #[serde(rename = "type")]
    kind: String,
    config: HashMap<String, Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateConnectorBody {
    config: HashMap<String, Value>,
}

/// Connector config values are strings; `null` means "not given".
fn string_config(config: HashMap<String, Value>) -> Result<HashMap<String, String>, Error> {
    let mut out = HashMap::new();
    for (k, v) in config {
        match v {
            Value::String(s) => {
                out.insert(k, s);
            }
            Value::Null => {}
            _ => {
                return Err(Error::invalid(format!(
                    "config.{} must be a string",
                    smb_core::ids::truncate(&k, 40)
                )));
            }
        }
    }
    Ok(out)
}

fn token_json(t: auth_pb::TokenPair) -> Value {
    let role = if t.role == auth_pb::Role::Owner as i32 {
        "owner"
    } else {
        "member"
    };
    json!({
        "access_token": t.access_token,
        "refresh_token": t.refresh_token,
        "token_type": t.token_type,
        "expires_in": t.expires_in,
        "tenant_id": t.tenant_id,
        "user_id": t.user_id,
        "role": role,
    })
}

pub async fn signup(
    State(s): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: http::HeaderMap,
    JsonBody(b): JsonBody<SignupBody>,
) -> AppResult<impl IntoResponse> {
    let ip = s.proxies.client(addr.ip(), &headers).to_string();
    s.limiter.check_public(&ip, "auth.signup").await?;
    let r = s
        .services
        .auth
        .signup(tonic::Request::new(auth_pb::SignupRequest {
            tenant_name: b.tenant_name,
            email: b.email,
            password: b.password,
            timezone: b.timezone,
            currency: b.currency,
        }))
        .await?
        .into_inner();
    Ok((
        StatusCode::CREATED,
        Json(json!({"tenant_id": r.tenant_id, "user_id": r.user_id})),
    ))
}

pub async fn login(
    State(s): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: http::HeaderMap,
    JsonBody(b): JsonBody<LoginBody>,
) -> AppResult<Json<Value>> {
    let ip = s.proxies.client(addr.ip(), &headers).to_string();
    s.limiter.check_public(&ip, "auth.login").await?;
    let r = s
        .services
        .auth
        .login(tonic::Request::new(auth_pb::LoginRequest {
            email: b.email,
            password: b.password,
            client_addr: ip,
        }))
        .await?
        .into_inner();
    Ok(Json(token_json(r)))
}

pub async fn refresh(
    State(s): State<Arc<AppState>>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: http::HeaderMap,
    JsonBody(b): JsonBody<RefreshBody>,
) -> AppResult<Json<Value>> {
    let ip = s.proxies.client(addr.ip(), &headers).to_string();
    s.limiter.check_public(&ip, "auth.refresh").await?;
    let r = s
        .services
        .auth
        .refresh(tonic::Request::new(auth_pb::RefreshRequest {
            refresh_token: b.refresh_token,
        }))
        .await?
        .into_inner();
    Ok(Json(token_json(r)))
}

pub async fn logout(
    State(s): State<Arc<AppState>>,
    Extension(a): Extension<Authenticated>,
) -> AppResult<StatusCode> {
    s.services
        .auth
        .logout(a.request(auth_pb::LogoutRequest {
            session_id: a.session_id.clone(),
            tenant_id: a.caller.tenant.to_string(),
        }))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

pub async fn readyz(State(s): State<Arc<AppState>>) -> Response {
    readiness_report(&s.readiness).await
}

/// `/readyz`'s answer for `readiness`: 200 when every dependency answers, else 503; each check's state.
pub async fn readiness_report(readiness: &[(String, crate::server::ReadyCheck)]) -> Response {
    let mut checks = serde_json::Map::new();
    let mut ok = true;
    for (name, check) in readiness {
        let up = check().await;
        ok &= up;
        checks.insert(name.clone(), json!(if up { "ok" } else { "unavailable" }));
    }
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"status": if ok { "ok" } else { "unavailable" }, "checks": checks})),
    )
        .into_response()
}

pub async fn query(
    State(s): State<Arc<AppState>>,
    Extension(a): Extension<Authenticated>,
    JsonBody(b): JsonBody<QueryBody>,
) -> AppResult<Response> {
    let req = orch_pb::ProcessRequest {
        query: b.query,
        as_of: b.as_of.unwrap_or_default(),
        debug: b.debug,
        conversation_id: b.conversation_id.unwrap_or_default(),
    };
    if !b.stream {
        let r = s
            .services
            .orchestrator
            .process(a.request(req))
            .await?
            .into_inner();
        return Ok(Json(smb_proto::json::answer(&r)).into_response());
    }
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures::StreamExt;
    let chunks = s
        .services
        .orchestrator
        .process_stream(a.request(req))
        .await?
        .into_inner();
    let events = chunks.map(|c| {
        let ev = match c {
            Ok(orch_pb::ProcessChunk {
                kind: Some(orch_pb::process_chunk::Kind::Delta(d)),
            }) => Event::default()
                .event("delta")
                .data(json!({"text": d}).to_string()),
            Ok(orch_pb::ProcessChunk {
                kind: Some(orch_pb::process_chunk::Kind::Done(r)),
            }) => Event::default()
                .event("done")
                .data(smb_proto::json::answer(&r).to_string()),
            Ok(_) => Event::default().comment("empty"),
            Err(status) => {
                let e = Error::from(status);
                Event::default().event("error").data(
                    json!({"error": {"code": e.code.as_str(), "message": e.message}}).to_string(),
                )
            }
        };
        Ok::<_, std::convert::Infallible>(ev)
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddUserBody {
    email: String,
    password: String,
    role: String,
}

pub async fn add_user(
    State(s): State<Arc<AppState>>,
    Extension(a): Extension<Authenticated>,
    JsonBody(b): JsonBody<AddUserBody>,
) -> AppResult<impl IntoResponse> {
    let role = match b.role.as_str() {
        "owner" => auth_pb::Role::Owner,
        "member" => auth_pb::Role::Member,
        _ => return Err(Error::invalid("role must be \"owner\" or \"member\"")),
    };
    let r = s
        .services
        .auth
        .add_user(a.request(auth_pb::AddUserRequest {
            email: b.email,
            password: b.password,
            role: role as i32,
        }))
        .await?
        .into_inner();
    Ok((StatusCode::CREATED, Json(json!({"user_id": r.user_id}))))
}

#[derive(Deserialize)]
pub struct ListActionsQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    limit: Option<i32>,
}

fn task_json(t: orch_pb::Task) -> Value {
    let mut v = json!({
        "id": t.id,
        "title": t.title,
        "status": t.status,
        "created_by": t.created_by,
        "created_at": t.created_at,
    });
    for (k, val) in [
        ("due_date", t.due_date),
        ("completed_at", t.completed_at),
        ("action_id", t.action_id),
    ] {
        if !val.is_empty() {
            v[k] = json!(val);
        }
    }
    v
}

pub async fn list_actions(
    State(s): State<Arc<AppState>>,
    Extension(a): Extension<Authenticated>,
    axum::extract::Query(q): axum::extract::Query<ListActionsQuery>,
) -> AppResult<Json<Value>> {
    let r = s
        .services
        .actions
        .list_actions(a.request(orch_pb::ListActionsRequest {
            status: q.status.unwrap_or_default(),
            limit: q.limit.unwrap_or(0),
        }))
        .await?
        .into_inner();
    Ok(Json(
        json!({"actions": r.actions.into_iter().map(|a| smb_proto::json::action(&a)).collect::<Vec<_>>()}),
    ))
}

pub async fn get_action(
    State(s): State<Arc<AppState>>,
    Extension(a): Extension<Authenticated>,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    let r = s
        .services
        .actions
        .get_action(a.request(orch_pb::GetActionRequest { id }))
        .await?
        .into_inner();
    Ok(Json(smb_proto::json::action(&r)))
}

pub async fn confirm_action(
    State(s): State<Arc<AppState>>,
    Extension(a): Extension<Authenticated>,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    let r = s
        .services
        .actions
        .confirm_action(a.request(orch_pb::ConfirmActionRequest { id }))
        .await?
        .into_inner();
    Ok(Json(smb_proto::json::action(&r)))
}

pub async fn reject_action(
    State(s): State<Arc<AppState>>,
    Extension(a): Extension<Authenticated>,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    let r = s
        .services
        .actions
        .reject_action(a.request(orch_pb::RejectActionRequest { id }))
        .await?
        .into_inner();
    Ok(Json(smb_proto::json::action(&r)))
}

#[derive(Deserialize)]
pub struct ListTasksQuery {
    #[serde(default)]
    status: Option<String>,
}

pub async fn list_tasks(
    State(s): State<Arc<AppState>>,
    Extension(a): Extension<Authenticated>,
    axum::extract::Query(q): axum::extract::Query<ListTasksQuery>,
) -> AppResult<Json<Value>> {
    let r = s
        .services
        .actions
        .list_tasks(a.request(orch_pb::ListTasksRequest {
            status: q.status.unwrap_or_default(),
        }))
        .await?
        .into_inner();
    Ok(Json(
        json!({"tasks": r.tasks.into_iter().map(task_json).collect::<Vec<_>>()}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateTaskBody {
    status: String,
}

pub async fn update_task(
    State(s): State<Arc<AppState>>,
    Extension(a): Extension<Authenticated>,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<UpdateTaskBody>,
) -> AppResult<Json<Value>> {
    let r = s
        .services
        .actions
        .update_task(a.request(orch_pb::UpdateTaskRequest {
            id,
            status: b.status,
        }))
        .await?
        .into_inner();
    Ok(Json(task_json(r)))
}

#[derive(Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    limit: Option<i32>,
}

pub async fn list_audit(
    State(s): State<Arc<AppState>>,
    Extension(a): Extension<Authenticated>,
    axum::extract::Query(q): axum::extract::Query<AuditQuery>,
) -> AppResult<Json<Value>> {
    let r = s
        .services
        .actions
        .list_audit_events(a.request(orch_pb::ListAuditEventsRequest {
            limit: q.limit.unwrap_or(0),
        }))
        .await?
        .into_inner();
    let events: Vec<Value> = r
        .events
        .into_iter()
        .map(|e| json!({"at": e.at, "actor": e.actor, "event": e.event, "subject": e.subject, "detail": e.detail}))
        .collect();
    Ok(Json(json!({"events": events})))
}

fn connector_type(kind: &str) -> AppResult<i32> {
    match kind {
        "shopify" => Ok(conn_pb::ConnectorType::Shopify as i32),
        "stripe" => Ok(conn_pb::ConnectorType::Stripe as i32),
        other => Err(Error::invalid(format!(
            "unknown connector type {:?}; use \"shopify\" or \"stripe\"",
            smb_core::ids::truncate(other, 32)
        ))),
    }
}

fn connector_json(c: conn_pb::Connector) -> Value {
    let kind = match conn_pb::ConnectorType::try_from(c.r#type) {
        Ok(conn_pb::ConnectorType::Shopify) => "shopify",
        Ok(conn_pb::ConnectorType::Stripe) => "stripe",
        _ => "unknown",
    };
    let mut v =
        json!({"id": c.id, "type": kind, "settings": c.settings, "created_at": c.created_at});
    v["webhook_configured"] = json!(c.webhook_configured);
    if !c.last_sync_at.is_empty() {
        v["last_sync_at"] = json!(c.last_sync_at);
        v["last_sync_status"] = json!(status_str(c.last_sync_status));
    }
    v
}

fn status_str(s: i32) -> &'static str {
    match conn_pb::SyncStatus::try_from(s) {
        Ok(conn_pb::SyncStatus::Queued) => "queued",
        Ok(conn_pb::SyncStatus::Running) => "running",
        Ok(conn_pb::SyncStatus::Succeeded) => "succeeded",
        Ok(conn_pb::SyncStatus::Failed) => "failed",
        _ => "unknown",
    }
}

pub async fn create_connector(
    State(s): State<Arc<AppState>>,
    Extension(a): Extension<Authenticated>,
    JsonBody(b): JsonBody<CreateConnectorBody>,
) -> AppResult<impl IntoResponse> {
    let config = string_config(b.config)?;
    let c = s
        .services
        .connectors
        .create_connector(a.request(conn_pb::CreateConnectorRequest {
            r#type: connector_type(&b.kind)?,
            config,
        }))
        .await?
        .into_inner();
    Ok((StatusCode::CREATED, Json(connector_json(c))))
}

pub async fn list_connectors(
    State(s): State<Arc<AppState>>,
    Extension(a): Extension<Authenticated>,
) -> AppResult<Json<Value>> {
    let r = s
        .services
        .connectors
        .list_connectors(a.request(conn_pb::ListConnectorsRequest {}))
        .await?
        .into_inner();
    Ok(Json(
        json!({"connectors": r.connectors.into_iter().map(connector_json).collect::<Vec<_>>()}),
    ))
}

pub async fn get_connector(
    State(s): State<Arc<AppState>>,
    Extension(a): Extension<Authenticated>,
    Path(id): Path<String>,
) -> AppResult<Json<Value>> {
    let c = s
        .services
        .connectors
        .get_connector(a.request(conn_pb::GetConnectorRequest { id }))
        .await?
        .into_inner();
    Ok(Json(connector_json(c)))
}

pub async fn update_connector(
    State(s): State<Arc<AppState>>,
    Extension(a): Extension<Authenticated>,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<UpdateConnectorBody>,
) -> AppResult<Json<Value>> {
    let c = s
        .services
        .connectors
        .update_connector(a.request(conn_pb::UpdateConnectorRequest {
            id,
            config: string_config(b.config)?,
        }))
        .await?
        .into_inner();
    Ok(Json(connector_json(c)))
}

/// `POST /webhooks/{source}/{connector_id}`: the raw body and headers go to the webhooks service, which
/// verifies the signature before anything else. 202 once stored; 200 for a duplicate or ignored topic.
pub async fn webhook(
    State(s): State<Arc<AppState>>,
    Path((source, id)): Path<(String, String)>,
    headers: http::HeaderMap,
    body: axum::body::Bytes,
) -> AppResult<Response> {
    if source != "shopify" && source != "stripe" {
        return Err(Error::not_found(
            "webhooks are received at /webhooks/shopify/{connector_id} or /webhooks/stripe/{connector_id}",
        ));
    }
    // Limits are kept per connector: an id that is not one cannot make a bucket.
    let id = id
        .parse::<smb_core::ids::ConnectorId>()
        .map_err(|_| {
            Error::not_found("no such webhook endpoint; check the connector id in the URL")
        })?
        .to_string();
    s.limiter.check_webhook(&id).await?;
    let headers = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let r = s
        .services
        .webhooks
        .receive(tonic::Request::new(conn_pb::ReceiveWebhookRequest {
            connector_id: id,
            source,
            body: body.to_vec(),
            headers,
        }))
        .await?
        .into_inner();
    let (status, word) = if r.duplicate {
        (StatusCode::OK, "duplicate")
    } else if r.ignored {
        (StatusCode::OK, "ignored")
    } else {
        (StatusCode::ACCEPTED, "accepted")
    };
    Ok((
        status,
        Json(json!({"status": word, "event_id": r.event_id})),
    )
        .into_response())
}

pub async fn delete_connector(
    State(s): State<Arc<AppState>>,
    Extension(a): Extension<Authenticated>,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    s.services
        .connectors
        .delete_connector(a.request(conn_pb::DeleteConnectorRequest { id }))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn trigger_sync(
    State(s): State<Arc<AppState>>,
    Extension(a): Extension<Authenticated>,
    Path(id): Path<String>,
) -> AppResult<impl IntoResponse> {
    let r = s
        .services
        .connectors
        .trigger_sync(a.request(conn_pb::TriggerSyncRequest { connector_id: id }))
        .await?
        .into_inner();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"sync_id": r.sync_id, "status": "queued"})),
    ))
}

pub async fn get_sync(
    State(s): State<Arc<AppState>>,
    Extension(a): Extension<Authenticated>,
    Path((id, sync_id)): Path<(String, String)>,
) -> AppResult<Json<Value>> {
    let r = s
        .services
        .connectors
        .get_sync_run(a.request(conn_pb::GetSyncRunRequest {
            connector_id: id,
            sync_id,
        }))
        .await?
        .into_inner();
    let mut v = json!({
        "id": r.id,
        "connector_id": r.connector_id,
        "status": status_str(r.status),
        "records_synced": r.records_synced,
        "records_failed": r.records_failed,
        "duration_ms": r.duration_ms,
        "started_at": r.started_at,
    });
    if !r.finished_at.is_empty() {
        v["finished_at"] = json!(r.finished_at);
    }
    if !r.error.is_empty() {
        v["error"] = json!(r.error);
    }
    if !r.rejections.is_empty() {
        v["rejections"] = json!(r.rejections);
    }
    Ok(Json(v))
}

/// The rate-limit endpoint name of a protected route.
fn endpoint_name(method: &http::Method, path: &str) -> &'static str {
    match (method.as_str(), path) {
        ("POST", "/v1/ai/query") => "ai.query",
        ("POST", "/v1/auth/logout") => "auth.logout",
        ("POST", "/v1/connectors") => "connectors.create",
        ("GET", "/v1/connectors") => "connectors.list",
        ("POST", p) if p.ends_with("/sync") => "connectors.sync",
        ("GET", p) if p.contains("/syncs/") => "connectors.sync_status",
        ("DELETE", _) => "connectors.delete",
        ("PATCH", _) => "connectors.update",
        _ => "connectors.get",
    }
}

/// Middleware of protected routes: authenticates, puts [`Authenticated`] in the request's extensions and
/// counts the request against the caller's rate limit.
pub async fn require_auth(
    State(s): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let header = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let authed = match s.authn.authenticate(header.as_deref()).await {
        Ok(a) => a,
        Err(e) => return e.into_response(),
    };
    let endpoint = endpoint_name(req.method(), req.uri().path());
    if let Err(e) = s
        .limiter
        .check(
            authed.caller.tenant.as_str(),
            authed.caller.user.as_str(),
            endpoint,
        )
        .await
    {
        return e.into_response();
    }
    req.extensions_mut().insert(authed);
    next.run(req).await
}
