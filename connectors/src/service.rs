//! The gRPC implementation of `smb.connectors.v1.ConnectorsService`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use smb_core::crypto::Sealer;
use smb_core::ids::{ConnectorId, SyncId, TenantId, truncate};
use smb_core::store::{Db, now_ms};
use smb_core::tenant::Caller;
use smb_core::{Error, ErrorCode};
use smb_proto::connectors::v1 as pb;
use smb_proto::connectors::v1::connectors_service_server::ConnectorsService;
use tokio::sync::Notify;
use tonic::{Request, Response, Status};

use crate::http::{SourceClient, SourceError};
use crate::source::normalize_base;
use crate::store::{self, ConnectorRow, RunRow};
use crate::stripe::DEFAULT_API_BASE;
use crate::sync::build_source;

pub struct ConnectorsServiceImpl {
    db: Db,
    /// The credential key; `None` in a process that only lists connectors and queues syncs (the
    /// orchestrator's actions), which then holds no key that opens a source's credentials.
    sealer: Option<Sealer>,
    client: SourceClient,
    /// Pokes the scheduler so a triggered run starts at once.
    wake: Arc<Notify>,
}

/// A connector to create, parsed and checked.
struct NewConnector {
    kind: &'static str,
    settings: BTreeMap<String, String>,
    secret: String,
    webhook_secret: Option<String>,
}

/// `config.webhook_secret`, if given: 16 to 256 characters.
fn webhook_secret(config: &mut HashMap<String, String>) -> Result<Option<String>, Error> {
    match config
        .remove("webhook_secret")
        .map(|v| v.trim().to_string())
    {
        None => Ok(None),
        Some(v) if (16..=256).contains(&v.len()) => Ok(Some(v)),
        Some(_) => Err(Error::invalid(
            "config.webhook_secret must be 16 to 256 characters (the signing secret the source shows)",
        )),
    }
}

fn take(config: &mut HashMap<String, String>, key: &str, kind: &str) -> Result<String, Error> {
    match config.remove(key).map(|v| v.trim().to_string()) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(Error::invalid(format!(
            "config.{key} is required for a {kind} connector"
        ))),
    }
}

impl TryFrom<pb::CreateConnectorRequest> for NewConnector {
    type Error = Error;
    fn try_from(r: pb::CreateConnectorRequest) -> Result<Self, Error> {
        let pb::CreateConnectorRequest { r#type, mut config } = r;
        let hook = webhook_secret(&mut config)?;
        let mut out = match pb::ConnectorType::try_from(r#type) {
            Ok(pb::ConnectorType::Shopify) => {
                let shop = normalize_base(&take(&mut config, "shop_url", "shopify")?)
                    .map_err(|e| Error::invalid(format!("config.shop_url: {e}")))?;
                let token = take(&mut config, "access_token", "shopify")?;
                Self {
                    kind: "shopify",
                    settings: BTreeMap::from([("shop_url".into(), shop)]),
                    secret: token,
                    webhook_secret: None,
                }
            }
            Ok(pb::ConnectorType::Stripe) => {
                let base = config
                    .remove("api_base")
                    .filter(|s| !s.trim().is_empty())
                    .unwrap_or_else(|| DEFAULT_API_BASE.into());
                let base = normalize_base(&base)
                    .map_err(|e| Error::invalid(format!("config.api_base: {e}")))?;
                let key = take(&mut config, "secret_key", "stripe")?;
                Self {
                    kind: "stripe",
                    settings: BTreeMap::from([("api_base".into(), base)]),
                    secret: key,
                    webhook_secret: None,
                }
            }
            _ => return Err(Error::invalid("type must be \"shopify\" or \"stripe\"")),
        };
        if let Some(k) = config.keys().next() {
            return Err(Error::invalid(format!(
                "config.{} is not a setting of a {} connector",
                truncate(k, 40),
                out.kind
            )));
        }
        out.webhook_secret = hook;
        Ok(out)
    }
}

fn ms_to_rfc3339(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn status_enum(s: &str) -> i32 {
    (match s {
        "queued" => pb::SyncStatus::Queued,
        "running" => pb::SyncStatus::Running,
        "succeeded" => pb::SyncStatus::Succeeded,
        "failed" => pb::SyncStatus::Failed,
        _ => pb::SyncStatus::Unspecified,
    }) as i32
}

fn to_pb(c: ConnectorRow) -> pb::Connector {
    let settings: HashMap<String, String> = serde_json::from_str(&c.settings).unwrap_or_default();
    pb::Connector {
        id: c.id,
        r#type: if c.kind == "shopify" {
            pb::ConnectorType::Shopify as i32
        } else {
            pb::ConnectorType::Stripe as i32
        },
        settings,
        created_at: ms_to_rfc3339(Some(c.created_at)),
        last_sync_at: ms_to_rfc3339(c.last_sync_at),
        last_sync_status: c.last_sync_status.as_deref().map_or(0, status_enum),
        webhook_configured: c.webhook_configured,
    }
}

fn run_to_pb(r: RunRow) -> pb::SyncRun {
    let duration = r
        .duration_ms
        .unwrap_or_else(|| r.started_at.map_or(0, |s| now_ms() - s));
    pb::SyncRun {
        id: r.id,
        connector_id: r.connector_id,
        status: status_enum(&r.status),
        records_synced: r.records_synced,
        records_failed: r.records_failed,
        duration_ms: duration,
        error: r.error.unwrap_or_default(),
        started_at: ms_to_rfc3339(r.started_at),
        finished_at: ms_to_rfc3339(r.finished_at),
        rejections: serde_json::from_str(&r.rejections).unwrap_or_default(),
    }
}

fn not_found() -> Error {
    Error::not_found("connector not found; list your connectors with GET /v1/connectors")
}

impl ConnectorsServiceImpl {
    pub fn new(db: Db, sealer: Sealer, client: SourceClient, wake: Arc<Notify>) -> Self {
        Self {
            db,
            sealer: Some(sealer),
            client,
            wake,
        }
    }

    /// Listing and queueing syncs only: creating a connector or changing its secrets is refused.
    pub fn without_credentials(db: Db, client: SourceClient, wake: Arc<Notify>) -> Self {
        Self {
            db,
            sealer: None,
            client,
            wake,
        }
    }

    fn sealer(&self) -> Result<&Sealer, Error> {
        self.sealer.as_ref().ok_or_else(|| {
            Error::unavailable(
                "connecting sources and changing their secrets is served by the connectors service, not here",
            )
        })
    }

    async fn create(
        &self,
        caller: &Caller,
        req: pb::CreateConnectorRequest,
    ) -> Result<pb::Connector, Error> {
        let new = NewConnector::try_from(req)?;
        let row = ConnectorRow {
            id: ConnectorId::generate().to_string(),
            tenant_id: caller.tenant.to_string(),
            kind: new.kind.to_string(),
            settings: serde_json::to_string(&new.settings)
                .map_err(|e| Error::internal("settings", e))?,
            secret_sealed: self.sealer()?.seal(new.secret.as_bytes())?,
            created_at: now_ms(),
            last_sync_at: None,
            last_sync_status: None,
            webhook_configured: new.webhook_secret.is_some(),
        };
        let source = build_source(&row, self.sealer()?, self.client.clone())?;
        source.validate().await.map_err(|e| {
            let name = if new.kind == "shopify" {
                "Shopify"
            } else {
                "Stripe"
            };
            match e {
                SourceError::Unauthorized(_) | SourceError::Unreachable(_) => {
                    Error::new(ErrorCode::FailedPrecondition, format!("{name}: {e}"))
                }
                other => Error::new(
                    ErrorCode::FailedPrecondition,
                    format!("{name} did not accept the connection: {other}"),
                ),
            }
        })?;
        // The first scheduled sync is one interval away; owners usually trigger the first one themselves.
        store::insert_connector(&self.db, &row, now_ms() + 15 * 60_000).await?;
        if let Some(h) = &new.webhook_secret {
            self.set_webhook_secret(&caller.tenant, &row, h).await?;
        }
        tracing::info!(tenant_id = %caller.tenant, connector_id = %row.id, kind = new.kind, "connector created");
        Ok(to_pb(row))
    }

    /// Seals and stores the connector's webhook secret (its webhook endpoint starts accepting deliveries).
    async fn set_webhook_secret(
        &self,
        tenant: &TenantId,
        row: &ConnectorRow,
        secret: &str,
    ) -> Result<(), Error> {
        let sealed = self.sealer()?.seal(secret.as_bytes())?;
        store::set_webhook_secret(&self.db, tenant, &row.id, &row.kind, &sealed, now_ms()).await
    }

    async fn get(&self, tenant: &TenantId, id: &str) -> Result<ConnectorRow, Error> {
        let id: ConnectorId = id.parse().map_err(|_| not_found())?;
        store::get_connector(&self.db, tenant, id.as_str())
            .await?
            .ok_or_else(not_found)
    }
}

/// Connecting, disconnecting and changing secrets are owner-only.
fn owner_only(caller: &Caller, what: &str) -> Result<(), Error> {
    if caller.role == "owner" {
        Ok(())
    } else {
        Err(Error::new(
            smb_core::ErrorCode::PermissionDenied,
            format!("only an owner can {what}; ask an owner of this business"),
        ))
    }
}

#[tonic::async_trait]
impl ConnectorsService for ConnectorsServiceImpl {
    async fn create_connector(
        &self,
        req: Request<pb::CreateConnectorRequest>,
    ) -> Result<Response<pb::Connector>, Status> {
        let caller = Caller::from_request(&req)?;
        owner_only(&caller, "connect a source")?;
        Ok(Response::new(self.create(&caller, req.into_inner()).await?))
    }

    async fn list_connectors(
        &self,
        req: Request<pb::ListConnectorsRequest>,
    ) -> Result<Response<pb::ListConnectorsResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        let rows = store::list_connectors(&self.db, &caller.tenant).await?;
        Ok(Response::new(pb::ListConnectorsResponse {
            connectors: rows.into_iter().map(to_pb).collect(),
        }))
    }

    async fn get_connector(
        &self,
        req: Request<pb::GetConnectorRequest>,
    ) -> Result<Response<pb::Connector>, Status> {
        let caller = Caller::from_request(&req)?;
        Ok(Response::new(to_pb(
            self.get(&caller.tenant, &req.get_ref().id).await?,
        )))
    }

    async fn delete_connector(
        &self,
        req: Request<pb::DeleteConnectorRequest>,
    ) -> Result<Response<pb::DeleteConnectorResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        owner_only(&caller, "disconnect a source")?;
        let row = self.get(&caller.tenant, &req.get_ref().id).await?;
        if !store::delete_connector(&self.db, &caller.tenant, &row.id).await? {
            return Err(not_found().into());
        }
        Ok(Response::new(pb::DeleteConnectorResponse {}))
    }

    async fn update_connector(
        &self,
        req: Request<pb::UpdateConnectorRequest>,
    ) -> Result<Response<pb::Connector>, Status> {
        let caller = Caller::from_request(&req)?;
        owner_only(&caller, "change a source's secrets")?;
        let pb::UpdateConnectorRequest { id, mut config } = req.into_inner();
        let mut row = self.get(&caller.tenant, &id).await?;
        let hook = webhook_secret(&mut config)?;
        if let Some(k) = config.keys().next() {
            return Err(Error::invalid(format!(
                "config.{} cannot be changed; only webhook_secret can (delete and reconnect to change credentials)",
                truncate(k, 40)
            ))
            .into());
        }
        let Some(h) = hook else {
            return Err(Error::invalid("nothing to change: give config.webhook_secret").into());
        };
        self.set_webhook_secret(&caller.tenant, &row, &h).await?;
        row.webhook_configured = true;
        tracing::info!(tenant_id = %caller.tenant, connector_id = %row.id, "webhook secret set");
        Ok(Response::new(to_pb(row)))
    }

    async fn trigger_sync(
        &self,
        req: Request<pb::TriggerSyncRequest>,
    ) -> Result<Response<pb::TriggerSyncResponse>, Status> {
        let caller = Caller::from_request(&req)?;
        let row = self
            .get(&caller.tenant, &req.get_ref().connector_id)
            .await?;
        let id = SyncId::generate().to_string();
        let sync_id =
            store::queue_run(&self.db, &caller.tenant, &row.id, &id, "manual", now_ms()).await?;
        self.wake.notify_one();
        Ok(Response::new(pb::TriggerSyncResponse { sync_id }))
    }

    async fn get_sync_run(
        &self,
        req: Request<pb::GetSyncRunRequest>,
    ) -> Result<Response<pb::SyncRun>, Status> {
        let caller = Caller::from_request(&req)?;
        let r = req.get_ref();
        let row = self.get(&caller.tenant, &r.connector_id).await?;
        let sync: SyncId = r
            .sync_id
            .parse()
            .map_err(|_| Error::not_found("sync run not found"))?;
        let run = store::get_run(&self.db, &caller.tenant, &row.id, sync.as_str())
            .await?
            .ok_or_else(|| Error::not_found("sync run not found for this connector"))?;
        Ok(Response::new(run_to_pb(run)))
    }
}
