//! One sync run: for every stream, fetch page after page from the stream's checkpoint; each page goes into
//! the outbox in the same transaction as the stream's new cursor (the relay publishes it to the bus), then
//! the lease is renewed. The run ends with an end marker on the same key, so workers finish the run only
//! after every page of it is loaded.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

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
    /// The largest message the bus takes: pages are split to fit.
    pub max_message_bytes: usize,
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

/// Why a run ended before its end marker was due.
enum Ended {
    /// Another replica holds the lease now: this one writes nothing more.
    LeaseLost,
    /// The run failed: (the connector's source kind, the owner-readable reason).
    Failed(String, String),
}

fn message(connector: &str, msg: &RawMessage) -> Result<Message, Error> {
    Ok(Message {
        topic: topics::RAW_RECORDS.into(),
        key: connector.to_string(),
        payload: serde_json::to_string(msg).map_err(|e| Error::internal("encode page", e))?,
        traceparent: smb_core::telemetry::traceparent(),
    })
}

/// A page as messages of at most `max` bytes each, in record order: halved until every part fits. A record
/// too large on its own is not sent (no broker would take it): a dead-letter reference with its stream, id
/// and size goes instead, and a warning is logged.
fn page_messages(page: RawMessage, max: usize, out: &mut Vec<Message>) -> Result<(), Error> {
    let RawMessage::Page {
        tenant_id,
        connector_id,
        sync_id,
        source,
        stream,
        records,
    } = page
    else {
        return Err(Error::internal("split page", "not a page"));
    };
    let mut parts = vec![records];
    while let Some(records) = parts.pop() {
        let msg = RawMessage::Page {
            tenant_id: tenant_id.clone(),
            connector_id: connector_id.clone(),
            sync_id: sync_id.clone(),
            source: source.clone(),
            stream: stream.clone(),
            records,
        };
        let m = message(&connector_id, &msg)?;
        let RawMessage::Page { mut records, .. } = msg else {
            unreachable!("built as a page above")
        };
        if m.payload.len() + m.key.len() <= max {
            out.push(m);
        } else if records.len() > 1 {
            // The second half goes on the stack first, so the first is taken next: order is kept.
            let second = records.split_off(records.len() / 2);
            parts.push(second);
            parts.push(records);
        } else {
            let id = records
                .first()
                .and_then(|r| r.get("id"))
                .map(|v| match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .unwrap_or_default();
            tracing::warn!(tenant_id = %tenant_id, connector_id = %connector_id, stream = %stream, record_id = %id,
                bytes = m.payload.len(), max_bytes = max, "record larger than bus.max_message_bytes: sent to the dead-letter topic as a reference");
            out.push(Message {
                topic: topics::DEAD_LETTER.into(),
                key: connector_id.clone(),
                payload: serde_json::json!({
                    "kind": "oversized_record", "tenant_id": tenant_id, "connector_id": connector_id,
                    "sync_id": sync_id, "source": source, "stream": stream, "id": id,
                    "bytes": m.payload.len(), "max_bytes": max,
                })
                .to_string(),
                traceparent: m.traceparent.clone(),
            });
        }
    }
    Ok(())
}

impl SyncEngine {
    fn lease_until(&self) -> i64 {
        now_ms() + self.lease.as_millis() as i64
    }

    /// Runs `sync_id` of `connector`, holding its lease. Returns without work if another replica holds it.
    ///
    /// The lease is fenced by its epoch: every checkpoint and the end marker commit only while the lease is
    /// still this one, and a heartbeat renews it every third of its length — when a renewal finds it moved
    /// on, the run stops at once and writes nothing more (the new holder resumes from the checkpoints).
    /// Every other way out ends the run with an end marker carrying the reason.
    pub async fn run(
        &self,
        tenant: TenantId,
        connector: String,
        sync_id: String,
    ) -> Result<(), Error> {
        // One trace per run: its pages, and the workers that load and index them, are its children.
        let span = tracing::info_span!(
            "sync",
            tenant_id = %tenant,
            connector_id = %connector,
            sync_id = %sync_id,
            trace_id = tracing::field::Empty,
        );
        if smb_core::telemetry::exporting() {
            // A run someone asked for continues the trace of that request.
            let queued_by = store::sync_traceparent(&self.db, &tenant, &sync_id)
                .await
                .unwrap_or_default();
            smb_core::telemetry::continue_from(&span, queued_by.as_deref());
        }
        self.run_traced(tenant, connector, sync_id)
            .instrument(span)
            .await
    }

    async fn run_traced(
        &self,
        tenant: TenantId,
        connector: String,
        sync_id: String,
    ) -> Result<(), Error> {
        let Some(lease) = store::acquire_lease(
            &self.db,
            &connector,
            &self.owner,
            now_ms(),
            self.lease_until(),
        )
        .await?
        else {
            tracing::info!(connector_id = %connector, "sync skipped: lease held elsewhere");
            return Ok(());
        };
        let lost = tokio_util::sync::CancellationToken::new();
        let heartbeat = tokio::spawn(self.clone().heartbeat(lease.clone(), lost.clone()));
        let outcome = tokio::select! {
            r = self.fetch_run(&tenant, &lease, &sync_id) => r,
            _ = lost.cancelled() => Err(Ended::LeaseLost),
        };
        heartbeat.abort();
        let (kind, error) = match outcome {
            Ok(kind) => (kind, None),
            Err(Ended::LeaseLost) => {
                tracing::warn!(tenant_id = %tenant, connector_id = %connector, "sync stopped: its lease moved to another replica");
                return Ok(());
            }
            Err(Ended::Failed(kind, e)) => {
                tracing::warn!(tenant_id = %tenant, connector_id = %connector, error = %e, "sync failed");
                (kind, Some(e))
            }
        };
        let end = RawMessage::End {
            tenant_id: tenant.to_string(),
            connector_id: connector.clone(),
            sync_id,
            source: kind,
            error,
        };
        match store::enqueue_end(
            &self.db,
            &lease,
            self.lease_until(),
            &self.outbox,
            &[message(&connector, &end)?],
            now_ms(),
        )
        .await
        {
            Err(e) if e.code == smb_core::ErrorCode::FailedPrecondition => {
                tracing::warn!(connector_id = %connector, "sync end not written: its lease moved to another replica");
                Ok(())
            }
            other => other,
        }
    }

    /// Renews `lease` every third of its length until it is found taken over (then cancels `lost`). A
    /// renewal that fails on the database is retried at the next beat; the fenced writes still hold.
    async fn heartbeat(self, lease: store::Lease, lost: tokio_util::sync::CancellationToken) {
        let beat = (self.lease / 3).max(Duration::from_millis(100));
        loop {
            tokio::time::sleep(beat).await;
            match store::renew_lease(&self.db, &lease, self.lease_until()).await {
                Ok(true) => {}
                Ok(false) => {
                    lost.cancel();
                    return;
                }
                Err(e) => {
                    tracing::warn!(connector_id = %lease.connector, error = %e, "lease renewal failed; retrying")
                }
            }
        }
    }

    /// The run under `lease`: the connector's source kind, or why it ended early.
    async fn fetch_run(
        &self,
        tenant: &TenantId,
        lease: &store::Lease,
        sync_id: &str,
    ) -> Result<String, Ended> {
        let fail = |kind: &str, e: String| Ended::Failed(kind.to_string(), e);
        let row = match store::get_connector(&self.db, tenant, &lease.connector).await {
            Ok(Some(row)) => row,
            Ok(None) => return Err(fail("", "the connector was deleted".into())),
            Err(e) => return Err(fail("", e.message)),
        };
        store::mark_running(&self.db, tenant, sync_id, now_ms())
            .await
            .map_err(|e| fail(&row.kind, e.message))?;
        let source = build_source(&row, &self.sealer, self.client.clone())
            .map_err(|e| fail(&row.kind, e.message))?;
        self.fetch_all(tenant, &row, lease, sync_id, source.as_ref())
            .await
            .map_err(|e| match e {
                Ended::Failed(_, e) => fail(&row.kind, e),
                lost => lost,
            })?;
        Ok(row.kind)
    }

    /// Fetches every stream; a source failure comes back as the owner-readable reason.
    async fn fetch_all(
        &self,
        tenant: &TenantId,
        row: &ConnectorRow,
        lease: &store::Lease,
        sync_id: &str,
        source: &dyn Source,
    ) -> Result<(), Ended> {
        let fail = |e: String| Ended::Failed(String::new(), e);
        for stream in source.streams() {
            let mut cursor: StreamCursor =
                match store::get_cursor(&self.db, tenant, &row.id, stream).await {
                    Ok(Some(c)) => serde_json::from_str(&c).unwrap_or_default(),
                    Ok(None) => StreamCursor::default(),
                    Err(e) => return Err(fail(e.message)),
                };
            loop {
                let span = tracing::info_span!(
                    "page",
                    source = %row.kind,
                    stream = *stream,
                    records = tracing::field::Empty
                );
                let page = source
                    .next_page(stream, &cursor)
                    .instrument(span.clone())
                    .await
                    .map_err(|e| fail(format!("{stream}: {e}")))?;
                span.record("records", page.records.len());
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
                    // The messages carry the page's trace context to the workers.
                    span.in_scope(|| page_messages(msg, self.max_message_bytes, &mut msgs))
                        .map_err(|e| fail(e.message))?;
                }
                cursor = page.cursor;
                let encoded = serde_json::to_string(&cursor).unwrap_or_default();
                store::checkpoint(
                    &self.db,
                    tenant,
                    lease,
                    self.lease_until(),
                    stream,
                    &encoded,
                    &self.outbox,
                    &msgs,
                    now_ms(),
                )
                .await
                .map_err(|e| {
                    if e.code == smb_core::ErrorCode::FailedPrecondition {
                        Ended::LeaseLost
                    } else {
                        fail(e.message)
                    }
                })?;
                self.outbox.poke();
                if page.done {
                    break;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(records: Vec<serde_json::Value>) -> RawMessage {
        RawMessage::Page {
            tenant_id: "t".into(),
            connector_id: "c".into(),
            sync_id: "s".into(),
            source: "shopify".into(),
            stream: "orders".into(),
            records,
        }
    }

    /// A page over the bus's limit is split into parts that fit, in order; a record too big alone becomes a
    /// dead-letter reference, and the rest of the page still goes.
    #[test]
    fn pages_are_split_to_fit_the_bus() {
        let records: Vec<serde_json::Value> = (0..100)
            .map(|i| serde_json::json!({"id": i, "note": "x".repeat(if i == 42 { 50_000 } else { 900 })}))
            .collect();
        let mut out = Vec::new();
        page_messages(page(records.clone()), 10_000, &mut out).unwrap();
        let mut seen = Vec::new();
        let mut dead = Vec::new();
        for m in &out {
            assert!(
                m.payload.len() + m.key.len() <= 10_000,
                "{} bytes",
                m.payload.len()
            );
            if m.topic == topics::DEAD_LETTER {
                dead.push(serde_json::from_str::<serde_json::Value>(&m.payload).unwrap());
                continue;
            }
            let RawMessage::Page { records, .. } = serde_json::from_str(&m.payload).unwrap() else {
                panic!("a page")
            };
            seen.extend(records.iter().map(|r| r["id"].as_i64().unwrap()));
        }
        let expected: Vec<i64> = (0..100).filter(|i| *i != 42).collect();
        assert_eq!(seen, expected, "every other record, in order");
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0]["kind"], "oversized_record");
        assert_eq!(dead[0]["id"], "42");
        assert!(out.len() > 10, "split into parts: {}", out.len());
        // A page that fits is one message.
        let mut one = Vec::new();
        page_messages(page(records[..3].to_vec()), 10_000, &mut one).unwrap();
        assert_eq!(one.len(), 1);
    }
}
