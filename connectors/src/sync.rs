//! One sync run: for every stream, fetch page after page from the stream's checkpoint; each page goes into
//! the outbox in the same transaction as the stream's new cursor (the relay publishes it to the bus), then
//! the lease is renewed. The run ends with an end marker on the same key, so workers finish the run only
//! after every page of it is loaded.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use smb_core::Error;
use smb_core::bus::{Message, topics};
use smb_core::crypto::Sealer;
use smb_core::ids::TenantId;
use smb_core::store::{Db, now_ms};

use crate::http::SourceClient;
use crate::messages::RawMessage;
use crate::shopify::Shopify;
use crate::source::{Source, StreamCursor};
use crate::store::{self, ConnectorRow};
use crate::stripe::Stripe;

#[derive(Clone)]
pub struct SyncEngine {
    pub db: Db,
    pub sealer: Sealer,
    pub client: SourceClient,
    /// This replica's lease owner id.
    pub owner: String,
    pub lease: Duration,
    /// Where pages and end markers are written (outbox or the embedded log).
    pub outbox: smb_core::outbox::Outbox,
}

/// Builds the source of a connector from its settings and sealed secret.
pub fn build_source(
    row: &ConnectorRow,
    sealer: &Sealer,
    client: SourceClient,
) -> Result<Arc<dyn Source>, Error> {
    let settings: HashMap<String, String> = serde_json::from_str(&row.settings)
        .map_err(|e| Error::internal("connector settings", e))?;
    let secret = String::from_utf8(sealer.open(&row.secret_sealed)?)
        .map_err(|e| Error::internal("connector secret", e))?;
    let setting = |k: &str| settings.get(k).cloned().unwrap_or_default();
    match row.kind.as_str() {
        "shopify" => Ok(Arc::new(Shopify::new(setting("shop_url"), secret, client))),
        "stripe" => Ok(Arc::new(Stripe::new(setting("api_base"), secret, client))),
        other => Err(Error::internal("connector kind", other)),
    }
}

fn message(connector: &str, msg: &RawMessage) -> Result<Message, Error> {
    Ok(Message {
        topic: topics::RAW_RECORDS.into(),
        key: connector.to_string(),
        payload: serde_json::to_string(msg).map_err(|e| Error::internal("encode page", e))?,
    })
}

impl SyncEngine {
    fn lease_until(&self) -> i64 {
        now_ms() + self.lease.as_millis() as i64
    }

    /// Runs `sync_id` of `connector`, holding its lease. Returns without work if another replica holds it.
    pub async fn run(
        &self,
        tenant: TenantId,
        connector: String,
        sync_id: String,
    ) -> Result<(), Error> {
        if !store::acquire_lease(
            &self.db,
            &connector,
            &self.owner,
            now_ms(),
            self.lease_until(),
        )
        .await?
        {
            tracing::info!(connector_id = %connector, "sync skipped: lease held elsewhere");
            return Ok(());
        }
        let Some(row) = store::get_connector(&self.db, &tenant, &connector).await? else {
            return Ok(());
        };
        store::mark_running(&self.db, &tenant, &sync_id, now_ms()).await?;
        let source = build_source(&row, &self.sealer, self.client.clone())?;
        let outcome = self
            .fetch_all(&tenant, &row, &sync_id, source.as_ref())
            .await;
        let error = match outcome {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(tenant_id = %tenant, connector_id = %connector, error = %e, "sync failed");
                Some(e)
            }
        };
        let end = RawMessage::End {
            tenant_id: tenant.to_string(),
            connector_id: connector.clone(),
            sync_id,
            source: row.kind.clone(),
            error,
        };
        self.publish(&connector, &end).await
    }

    async fn publish(&self, connector: &str, msg: &RawMessage) -> Result<(), Error> {
        smb_core::outbox::enqueue(&self.db, &self.outbox, &[message(connector, msg)?]).await
    }

    /// Fetches every stream; a source failure comes back as the owner-readable reason.
    async fn fetch_all(
        &self,
        tenant: &TenantId,
        row: &ConnectorRow,
        sync_id: &str,
        source: &dyn Source,
    ) -> Result<(), String> {
        for stream in source.streams() {
            let mut cursor: StreamCursor =
                match store::get_cursor(&self.db, tenant, &row.id, stream).await {
                    Ok(Some(c)) => serde_json::from_str(&c).unwrap_or_default(),
                    Ok(None) => StreamCursor::default(),
                    Err(e) => return Err(e.message),
                };
            loop {
                let page = source
                    .next_page(stream, &cursor)
                    .await
                    .map_err(|e| format!("{stream}: {e}"))?;
                let mut msgs = Vec::new();
                if !page.records.is_empty() {
                    let msg = RawMessage::Page {
                        tenant_id: tenant.to_string(),
                        connector_id: row.id.clone(),
                        sync_id: sync_id.to_string(),
                        source: row.kind.clone(),
                        stream: (*stream).to_string(),
                        records: page.records,
                    };
                    msgs.push(message(&row.id, &msg).map_err(|e| e.message)?);
                }
                cursor = page.cursor;
                let encoded = serde_json::to_string(&cursor).unwrap_or_default();
                store::checkpoint(
                    &self.db,
                    tenant,
                    &row.id,
                    stream,
                    &encoded,
                    &self.outbox,
                    &msgs,
                    now_ms(),
                )
                .await
                .map_err(|e| e.message)?;
                self.outbox.poke();
                store::acquire_lease(&self.db, &row.id, &self.owner, now_ms(), self.lease_until())
                    .await
                    .map_err(|e| e.message)?;
                if page.done {
                    break;
                }
            }
        }
        Ok(())
    }
}
