//! The canonical-load consumer: polls `smb.connector.records`, applies each page in one transaction, then
//! commits the bus offset. End markers finish the run, release the connector's lease, invalidate the
//! tenant's cached answers and publish `connector.sync.completed`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono_tz::Tz;
use rand::Rng;
use serde::Serialize;
use smb_connectors::messages::RawMessage;
use smb_core::bus::{Delivery, DynBus, Envelope, topics};
use smb_core::cache::{DynCache, keys};
use smb_core::ids::TenantId;
use smb_core::store::{Db, now_ms};
use smb_core::{Error, outbox_insert, with_global, with_tenant};
use tokio::sync::{Mutex, Notify};

use crate::load::{RunProgress, apply_page};
use crate::transform::{Batch, transform_page};

pub const GROUP: &str = "workers.canonical";

#[derive(Clone)]
pub struct Worker {
    pub db: Db,
    pub bus: DynBus,
    pub cache: DynCache,
    /// Seconds between scheduled syncs (jittered ±10%).
    pub sync_interval_secs: u64,
    /// Pokes the outbox relay after a commit that wrote events.
    pub relay: Arc<Notify>,
    zones: Arc<Mutex<HashMap<String, Tz>>>,
}

#[derive(Serialize)]
struct SyncCompleted<'a> {
    connector_id: &'a str,
    connector_type: &'a str,
    records_synced: i64,
    duration_ms: i64,
    status: &'a str,
}

impl Worker {
    pub fn new(
        db: Db,
        bus: DynBus,
        cache: DynCache,
        sync_interval_secs: u64,
        relay: Arc<Notify>,
    ) -> Self {
        Self {
            db,
            bus,
            cache,
            sync_interval_secs,
            relay,
            zones: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Consumes until `shutdown` is notified.
    pub async fn run(self, shutdown: Arc<Notify>) {
        loop {
            let polled = tokio::select! {
                r = self.bus.poll(GROUP, topics::RAW_RECORDS, 16, Duration::from_secs(1)) => r,
                _ = shutdown.notified() => return,
            };
            match polled {
                Ok(batch) => {
                    for d in batch {
                        if let Err(e) = self.handle(&d).await {
                            // Not committed: the message comes again. Back off so a broken store isn't hammered.
                            tracing::error!(offset = d.offset, error = %e, "applying message failed; will retry");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            break;
                        }
                        if let Err(e) = self.bus.commit(GROUP, topics::RAW_RECORDS, &d).await {
                            tracing::error!(error = %e, "offset commit failed");
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "bus poll failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn zone(&self, tenant: &TenantId) -> Result<Tz, Error> {
        if let Some(z) = self.zones.lock().await.get(tenant.as_str()) {
            return Ok(*z);
        }
        let row: Option<(String,)> = with_global!(&self.db, read, |tx| {
            sqlx::query_as("SELECT timezone FROM tenants WHERE id = $1")
                .bind(tenant.as_str())
                .fetch_optional(&mut *tx)
                .await?
        });
        let tz: Tz = row.and_then(|(z,)| z.parse().ok()).ok_or_else(|| {
            Error::internal(
                "tenant zone",
                format!("tenant {tenant} has no valid time zone"),
            )
        })?;
        self.zones.lock().await.insert(tenant.to_string(), tz);
        Ok(tz)
    }

    /// Applies one message. Malformed messages are logged and skipped (they can never succeed).
    pub async fn handle(&self, d: &Delivery) -> Result<(), Error> {
        let msg: RawMessage = match serde_json::from_str(&d.payload) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(offset = d.offset, error = %e, "undecodable message skipped");
                return Ok(());
            }
        };
        match msg {
            RawMessage::Page {
                tenant_id,
                sync_id,
                source,
                stream,
                records,
                ..
            } => {
                let tenant: TenantId = tenant_id.parse()?;
                let tz = self.zone(&tenant).await?;
                let mut batch = Batch::default();
                transform_page(&source, &stream, &records, tz, &mut batch);
                batch.dedupe();
                let rejections = std::mem::take(&mut batch.rejections);
                for r in &rejections {
                    tracing::warn!(tenant_id = %tenant, sync_id = %sync_id, rejection = %r, "record rejected");
                }
                let progress = RunProgress {
                    sync_id: &sync_id,
                    offset: d.offset,
                    rejections: &rejections,
                };
                if !apply_page(&self.db, &tenant, &batch, &progress).await? {
                    tracing::info!(offset = d.offset, "redelivered page skipped");
                }
                Ok(())
            }
            RawMessage::End {
                tenant_id,
                connector_id,
                sync_id,
                source,
                error,
            } => {
                let tenant: TenantId = tenant_id.parse()?;
                self.finish(&tenant, &connector_id, &sync_id, &source, error)
                    .await
            }
        }
    }

    async fn finish(
        &self,
        tenant: &TenantId,
        connector: &str,
        sync_id: &str,
        source: &str,
        error: Option<String>,
    ) -> Result<(), Error> {
        let now = now_ms();
        let status = if error.is_some() {
            "failed"
        } else {
            "succeeded"
        };
        let jitter = rand::thread_rng().gen_range(0.9..1.1);
        let next = now + (self.sync_interval_secs as f64 * 1000.0 * jitter) as i64;
        let (records, duration): (i64, i64) = with_tenant!(&self.db, tenant, write, |tx| {
            sqlx::query(
                "UPDATE sync_runs SET status = $3, error = $4, finished_at = $5, duration_ms = $5 - COALESCE(started_at, created_at) \
                 WHERE tenant_id = $1 AND id = $2 AND status IN ('queued', 'running')",
            )
            .bind(tenant.as_str())
            .bind(sync_id)
            .bind(status)
            .bind(&error)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE connectors SET last_sync_at = $3, last_sync_status = $4 WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_str())
                .bind(connector)
                .bind(now)
                .bind(status)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE connector_schedule SET pending_sync_id = NULL, lease_owner = NULL, lease_until = NULL, next_run_at = $2 \
                 WHERE connector_id = $1",
            )
            .bind(connector)
            .bind(next)
            .execute(&mut *tx)
            .await?;
            let row: Option<(i64, i64)> = sqlx::query_as("SELECT records_synced, COALESCE(duration_ms, 0) FROM sync_runs WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_str())
                .bind(sync_id)
                .fetch_optional(&mut *tx)
                .await?;
            let (records, duration) = row.unwrap_or((0, 0));
            // The completion event commits with the run's final state (transactional outbox).
            let event = Envelope::new(
                "connector.sync.completed",
                tenant,
                None,
                SyncCompleted {
                    connector_id: connector,
                    connector_type: source,
                    records_synced: records,
                    duration_ms: duration,
                    status,
                },
            );
            let msgs = [event.to_message(topics::SYNC_COMPLETED)];
            outbox_insert!(tx, &msgs, now);
            (records, duration)
        });
        self.relay.notify_one();
        self.cache.incr(&keys::data_version(tenant)).await?;
        tracing::info!(tenant_id = %tenant, connector_id = %connector, sync_id, status, records, duration_ms = duration, "sync finished");
        Ok(())
    }
}
