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
use smb_search::{Doc, Kind, SearchEngine};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::index;
use crate::load::{RunProgress, apply_page, apply_refund, load_batch};
use crate::transform::{Batch, refund_order_id, shopify_refund, transform_page};

pub const GROUP: &str = "workers.canonical";
pub const WEBHOOK_GROUP: &str = "workers.webhooks";

#[derive(Clone)]
pub struct Worker {
    pub db: Db,
    pub bus: DynBus,
    pub cache: DynCache,
    /// Seconds between scheduled syncs (jittered ±10%).
    pub sync_interval_secs: u64,
    /// Where completion events and dead letters are written.
    pub outbox: smb_core::outbox::Outbox,
    /// Attempts at one message before it is dead-lettered, and the wait between attempts.
    pub max_attempts: u32,
    pub retry_backoff: Duration,
    zones: Arc<Mutex<HashMap<String, Tz>>>,
    /// Step 6: where loaded records are indexed for search (none: search is off).
    search: Option<Arc<SearchEngine>>,
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
        outbox: smb_core::outbox::Outbox,
    ) -> Self {
        Self {
            db,
            bus,
            cache,
            sync_interval_secs,
            outbox,
            max_attempts: 5,
            retry_backoff: Duration::from_millis(500),
            zones: Arc::new(Mutex::new(HashMap::new())),
            search: None,
        }
    }

    /// Indexes every loaded record into `engine` (after its load, in the same message's handling).
    pub fn with_search(mut self, engine: Arc<SearchEngine>) -> Self {
        self.search = Some(engine);
        self
    }

    pub fn with_search_opt(self, engine: Option<Arc<SearchEngine>>) -> Self {
        match engine {
            Some(e) => self.with_search(e),
            None => self,
        }
    }

    /// Indexes `docs`. An error leaves the message uncommitted, so it is retried: indexing is idempotent.
    async fn index(&self, docs: Vec<Doc>) -> Result<(), Error> {
        let Some(engine) = &self.search else {
            return Ok(());
        };
        if docs.is_empty() {
            return Ok(());
        }
        let stats = engine.index(docs).await?;
        tracing::debug!(
            docs = stats.docs,
            written = stats.written,
            embedded = stats.embedded,
            "indexed"
        );
        Ok(())
    }

    /// Attempts per message before dead-lettering (at least 1), and the wait between attempts.
    pub fn with_retries(mut self, max_attempts: u32, backoff: Duration) -> Self {
        self.max_attempts = max_attempts.max(1);
        self.retry_backoff = backoff;
        self
    }

    /// Consumes sync pages and webhook events until `shutdown` is cancelled; a batch in hand is finished
    /// (or left uncommitted, to be redelivered) first.
    pub async fn run(self, shutdown: CancellationToken) {
        // A search generation that is not complete (new model or mapping, first start) is built from the
        // store in the background; searches read the previous one meanwhile.
        if let Some(engine) = self.search.clone() {
            let (db, cache) = (self.db.clone(), self.cache.clone());
            tokio::spawn(async move {
                if let Err(e) = index::rebuild(&db, &cache, &engine).await {
                    tracing::error!(error = %e, "building the search index failed; it is retried at the next start");
                }
            });
        }
        let pages = tokio::spawn(self.clone().consume(
            GROUP,
            topics::RAW_RECORDS,
            shutdown.clone(),
        ));
        let hooks = tokio::spawn(self.consume(WEBHOOK_GROUP, topics::WEBHOOK_RECEIVED, shutdown));
        let _ = tokio::join!(pages, hooks);
    }

    /// One consumer group on one topic. A message is committed only after its effects have committed; a
    /// failing one is retried (`max_attempts`, with backoff) and then moved to the dead-letter topic with
    /// its error, so the partition keeps moving. A message that can never succeed (undecodable) goes there
    /// at once.
    async fn consume(self, group: &'static str, topic: &'static str, shutdown: CancellationToken) {
        let mut failures: HashMap<(i32, i64), u32> = HashMap::new();
        loop {
            let polled = tokio::select! {
                r = self.bus.poll(group, topic, 16, Duration::from_secs(1)) => r,
                _ = shutdown.cancelled() => return,
            };
            let batch = match polled {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(topic, error = %e, "bus poll failed");
                    self.rewind(group, topic).await;
                    continue;
                }
            };
            for d in batch {
                // One consumer span per message, in the trace of the work that wrote it.
                let decision = smb_core::telemetry::decide_from(d.traceparent.as_deref());
                let span = match &decision {
                    smb_core::telemetry::Decision::Traced(_) => {
                        let span = tracing::info_span!(
                            "consume",
                            otel.name = %format!("{topic} process"),
                            otel.kind = "consumer",
                            messaging.destination = topic,
                            messaging.consumer_group = group,
                            partition = d.partition,
                            offset = d.offset,
                            tenant_id = tracing::field::Empty,
                            source = tracing::field::Empty,
                            stream = tracing::field::Empty,
                            records = tracing::field::Empty,
                            trace_id = tracing::field::Empty,
                        );
                        decision.adopt(&span);
                        span
                    }
                    _ => tracing::Span::none(),
                };
                if let Err(e) = decision.scope(self.handle(&d).instrument(span)).await {
                    let n = failures.entry((d.partition, d.offset)).or_insert(0);
                    *n += 1;
                    let permanent = e.code == smb_core::ErrorCode::InvalidArgument;
                    if !permanent && *n < self.max_attempts {
                        // Not committed: rewound, the message comes again after the backoff.
                        tracing::warn!(topic, offset = d.offset, attempt = *n, error = %e, "applying message failed; will retry");
                        self.rewind(group, topic).await;
                        break;
                    }
                    if let Err(pe) = self.dead_letter(group, topic, &d, &e, *n).await {
                        tracing::error!(error = %pe, "dead-letter publish failed; will retry");
                        self.rewind(group, topic).await;
                        break;
                    }
                }
                // Applied or dead-lettered: no more attempts to count for it.
                failures.remove(&(d.partition, d.offset));
                if let Err(e) = self.bus.commit(group, topic, &d).await {
                    tracing::error!(topic, error = %e, "offset commit failed");
                    self.rewind(group, topic).await;
                    break;
                }
            }
        }
    }

    /// Waits the backoff, then goes back to the last commit so uncommitted messages come again.
    async fn rewind(&self, group: &str, topic: &str) {
        tokio::time::sleep(self.retry_backoff).await;
        if let Err(e) = self.bus.rewind(group, topic).await {
            tracing::error!(topic, error = %e, "bus rewind failed");
        }
    }

    async fn dead_letter(
        &self,
        group: &str,
        topic: &str,
        d: &Delivery,
        e: &Error,
        attempts: u32,
    ) -> Result<(), Error> {
        tracing::error!(topic, offset = d.offset, attempts, error = %e, "message moved to the dead-letter topic");
        let payload = serde_json::json!({
            "topic": topic, "group": group, "partition": d.partition, "offset": d.offset, "key": d.key,
            "attempts": attempts, "error": e.to_string(), "payload": d.payload,
        });
        self.bus
            .publish(&[smb_core::bus::Message {
                topic: topics::DEAD_LETTER.into(),
                key: d.key.clone(),
                payload: payload.to_string(),
                traceparent: d.traceparent.clone(),
            }])
            .await
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

    /// Applies one message; an `InvalidArgument` error means it can never succeed.
    pub async fn handle(&self, d: &Delivery) -> Result<(), Error> {
        let msg: RawMessage = serde_json::from_str(&d.payload)
            .map_err(|e| Error::invalid(format!("undecodable message: {e}")))?;
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
                let span = tracing::Span::current();
                span.record("tenant_id", tenant.as_str());
                span.record("source", source.as_str());
                span.record("stream", stream.as_str());
                span.record("records", records.len());
                let tz = self.zone(&tenant).await?;
                let digest = smb_core::crypto::sha256_hex(
                    format!(
                        "{stream}\n{}",
                        serde_json::to_string(&records).unwrap_or_default()
                    )
                    .as_bytes(),
                );
                let mut batch = Batch::default();
                transform_page(&source, &stream, &records, tz, &mut batch);
                batch.dedupe();
                if stream == "events" {
                    // A polled event older than the stored record changes nothing, and must not reach
                    // the index either.
                    self.drop_stale(&tenant, &mut batch).await?;
                }
                let rejections = std::mem::take(&mut batch.rejections);
                for r in &rejections {
                    tracing::warn!(tenant_id = %tenant, sync_id = %sync_id, rejection = %r, "record rejected");
                }
                // Rejected records go to the dead-letter topic with their reasons, in the page's transaction.
                let dead_letters: Vec<smb_core::bus::Message> = if rejections.is_empty() {
                    Vec::new()
                } else {
                    vec![smb_core::bus::Message {
                        topic: topics::DEAD_LETTER.into(),
                        key: d.key.clone(),
                        payload: serde_json::json!({
                            "kind": "rejected_records", "tenant_id": tenant.as_str(), "sync_id": sync_id,
                            "source": source, "stream": stream, "reasons": rejections,
                        })
                        .to_string(),
                        traceparent: smb_core::telemetry::traceparent(),
                    }]
                };
                let progress = RunProgress {
                    sync_id: &sync_id,
                    offset: d.offset,
                    digest: &digest,
                    rejections: &rejections,
                    dead_letters: &dead_letters,
                    outbox: &self.outbox,
                };
                // The page is loaded and indexed at the same time (the documents come from the page, not
                // from the store); the offset is committed only when both are done. Indexed even when the
                // page was a redelivery: the first attempt may have failed after its load committed, and
                // indexing an unchanged record writes nothing.
                let docs = index::docs(&tenant, &batch);
                let (applied, indexed) = tokio::join!(
                    apply_page(&self.db, &tenant, &batch, &progress)
                        .instrument(tracing::info_span!("load", records = batch.accepted())),
                    self.index(docs).instrument(tracing::info_span!("index"))
                );
                if !applied? {
                    tracing::info!(offset = d.offset, "redelivered page skipped");
                } else {
                    let label = source_label(&source);
                    metrics::counter!("smb_sync_records_total", "source" => label)
                        .increment(batch.accepted() as u64);
                    metrics::counter!("smb_sync_records_failed_total", "source" => label)
                        .increment(rejections.len() as u64);
                    if !dead_letters.is_empty() {
                        self.outbox.poke();
                    }
                }
                indexed?;
                Ok(())
            }
            RawMessage::Webhook {
                tenant_id,
                source,
                stream,
                event_id,
                record,
                version_ms,
                ..
            } => {
                let tenant: TenantId = tenant_id.parse()?;
                if let Some(what) = stream.strip_suffix("_deleted") {
                    let id = match record.get("id") {
                        Some(serde_json::Value::String(s)) => s.clone(),
                        Some(v @ serde_json::Value::Number(_)) => v.to_string(),
                        _ => {
                            return Err(Error::invalid(format!(
                                "webhook event {event_id}: a deletion without an id"
                            )));
                        }
                    };
                    self.delete(&tenant, &source, what, &id).await?;
                    self.cache.incr(&keys::data_version(&tenant)).await?;
                    return Ok(());
                }
                let tz = self.zone(&tenant).await?;
                if source == "shopify" && stream == "refunds" {
                    let order = refund_order_id(&record).map_err(Error::invalid)?;
                    let row = shopify_refund(&record, &order, false, tz).map_err(Error::invalid)?;
                    apply_refund(&self.db, &tenant, &row).await?;
                    let name = self.order_name(&tenant, &row.source, &order).await?;
                    self.index(
                        index::refund(&tenant, &row, name.as_deref())
                            .into_iter()
                            .collect(),
                    )
                    .await?;
                } else {
                    let mut batch = Batch::default();
                    transform_page(
                        &source,
                        &stream,
                        std::slice::from_ref(&record),
                        tz,
                        &mut batch,
                    );
                    if !batch.rejections.is_empty() {
                        return Err(Error::invalid(format!(
                            "webhook event {event_id} rejected: {}",
                            batch.rejections.join("; ")
                        )));
                    }
                    // The event's time versions records that carry none of their own (Stripe).
                    if let Some(v) = version_ms {
                        for o in &mut batch.orders {
                            o.order.updated_at = o.order.updated_at.max(v);
                        }
                        for c in &mut batch.customers {
                            c.updated_at = c.updated_at.max(v);
                        }
                    }
                    load_batch(&self.db, &tenant, &batch).await?;
                    // An event older than what is stored changed nothing, and must not change the index.
                    self.drop_stale(&tenant, &mut batch).await?;
                    self.index(index::docs(&tenant, &batch)).await?;
                }
                self.cache.incr(&keys::data_version(&tenant)).await?;
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

    /// A record deleted at its source: its rows (an order's lines and refunds with it) and its search
    /// points go.
    async fn delete(
        &self,
        tenant: &TenantId,
        source: &str,
        what: &str,
        id: &str,
    ) -> Result<(), Error> {
        let (table, kind) = match (source, what) {
            ("shopify", "orders") => ("orders", Kind::Order),
            ("stripe", "charges") => ("orders", Kind::Charge),
            (_, "customers") => ("customers", Kind::Customer),
            (_, "products") => ("products", Kind::Product),
            _ => return Err(Error::invalid(format!("cannot delete {source} {what}"))),
        };
        let d = self.db.dialect();
        let ids = crate::load::order_ids([(source, id)]);
        let refunds: Vec<(String,)> = with_tenant!(&self.db, tenant, write, |tx| {
            let refunds: Vec<(String,)> = if table == "orders" {
                crate::load::tenant_turn!(*tx, d, tenant.as_str());
                // What the order and its lines and refunds added to the daily facts comes out.
                crate::load::facts_delta!(*tx, d, tenant.as_str(), Some(&ids), &ids, -1);
                let r = sqlx::query_as(
                    "SELECT external_id FROM refunds WHERE tenant_id = $1 AND source = $2 AND order_external_id = $3",
                )
                .bind(tenant.as_str())
                .bind(source)
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
                for child in ["order_lines", "refunds"] {
                    sqlx::query(&format!(
                        "DELETE FROM {child} WHERE tenant_id = $1 AND source = $2 AND order_external_id = $3"
                    ))
                    .bind(tenant.as_str())
                    .bind(source)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
                r
            } else {
                Vec::new()
            };
            let customer: Option<(Option<String>,)> = if table == "orders" {
                sqlx::query_as("SELECT customer_key FROM orders WHERE tenant_id = $1 AND source = $2 AND external_id = $3")
                    .bind(tenant.as_str())
                    .bind(source)
                    .bind(id)
                    .fetch_optional(&mut *tx)
                    .await?
            } else {
                None
            };
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE tenant_id = $1 AND source = $2 AND external_id = $3"
            ))
            .bind(tenant.as_str())
            .bind(source)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            // The customer's first order may have been this one.
            if let Some((Some(key),)) = customer {
                crate::load::refresh_firsts!(*tx, d, tenant.as_str(), &[key]);
            }
            if table == "orders" {
                // Deletes the facts' rows left at zero.
                crate::load::facts_delta!(*tx, d, tenant.as_str(), Some(&ids), &ids, 1);
            }
            refunds
        });
        if let Some(engine) = &self.search {
            engine
                .delete(tenant.as_str(), kind, source, &[id.to_string()])
                .await?;
            let refunds: Vec<String> = refunds.into_iter().map(|(r,)| r).collect();
            engine
                .delete(tenant.as_str(), Kind::Refund, source, &refunds)
                .await?;
        }
        Ok(())
    }

    /// An order's display name ("#1310"), for a refund that arrived on its own.
    async fn order_name(
        &self,
        tenant: &TenantId,
        source: &str,
        id: &str,
    ) -> Result<Option<String>, Error> {
        let row: Option<(String,)> = with_tenant!(&self.db, tenant, read, |tx| {
            sqlx::query_as(
                "SELECT name FROM orders WHERE tenant_id = $1 AND source = $2 AND external_id = $3",
            )
            .bind(tenant.as_str())
            .bind(source)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
        });
        Ok(row.map(|(n,)| n))
    }

    /// Removes from `batch` the orders and customers whose stored version is newer than the event's.
    async fn drop_stale(&self, tenant: &TenantId, batch: &mut Batch) -> Result<(), Error> {
        let mut keep_orders = Vec::with_capacity(batch.orders.len());
        for b in std::mem::take(&mut batch.orders) {
            let stored: Option<(i64,)> = with_tenant!(&self.db, tenant, read, |tx| {
                sqlx::query_as("SELECT updated_at FROM orders WHERE tenant_id = $1 AND source = $2 AND external_id = $3")
                    .bind(tenant.as_str())
                    .bind(&b.order.source)
                    .bind(&b.order.external_id)
                    .fetch_optional(&mut *tx)
                    .await?
            });
            if stored.is_none_or(|(u,)| u <= b.order.updated_at) {
                keep_orders.push(b);
            }
        }
        batch.orders = keep_orders;
        let mut keep_customers = Vec::with_capacity(batch.customers.len());
        for c in std::mem::take(&mut batch.customers) {
            let stored: Option<(i64,)> = with_tenant!(&self.db, tenant, read, |tx| {
                sqlx::query_as("SELECT updated_at FROM customers WHERE tenant_id = $1 AND source = $2 AND external_id = $3")
                    .bind(tenant.as_str())
                    .bind(&c.source)
                    .bind(&c.external_id)
                    .fetch_optional(&mut *tx)
                    .await?
            });
            if stored.is_none_or(|(u,)| u <= c.updated_at) {
                keep_customers.push(c);
            }
        }
        batch.customers = keep_customers;
        Ok(())
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
        let (records, duration, ended): (i64, i64, bool) = with_tenant!(
            &self.db,
            tenant,
            write,
            |tx| {
                let ended = sqlx::query(
                "UPDATE sync_runs SET status = $3, error = $4, finished_at = $5, duration_ms = $5 - COALESCE(started_at, created_at) \
                 WHERE tenant_id = $1 AND id = $2 AND status IN ('queued', 'running')",
            )
            .bind(tenant.as_str())
            .bind(sync_id)
            .bind(status)
            .bind(&error)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                > 0;
                sqlx::query("UPDATE connectors SET last_sync_at = $3, last_sync_status = $4 WHERE tenant_id = $1 AND id = $2")
                .bind(tenant.as_str())
                .bind(connector)
                .bind(now)
                .bind(status)
                .execute(&mut *tx)
                .await?;
                // Only this run's lease is released: a redelivered end marker of an older run must not free
                // the lease of the run pending now.
                sqlx::query(
                "UPDATE connector_schedule SET pending_sync_id = NULL, lease_owner = NULL, lease_until = NULL, next_run_at = $2 \
                 WHERE connector_id = $1 AND pending_sync_id = $3",
            )
            .bind(connector)
            .bind(next)
            .bind(sync_id)
            .execute(&mut *tx)
            .await?;
                sqlx::query("DELETE FROM sync_pages WHERE tenant_id = $1 AND sync_id = $2")
                    .bind(tenant.as_str())
                    .bind(sync_id)
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
                outbox_insert!(tx, self.outbox, &msgs, now);
                (records, duration, ended)
            }
        );
        // Counted once per run (a redelivered end marker finds it ended).
        if ended {
            metrics::counter!("smb_sync_runs_total", "source" => source_label(source), "status" => status)
                .increment(1);
        }
        self.outbox.poke();
        if let Some(engine) = &self.search
            && let Err(e) = engine.flush().await
        {
            // The points are written; only compaction failed. The next sync tries again.
            tracing::warn!(error = %e, "search index flush failed");
        }
        self.cache.incr(&keys::data_version(tenant)).await?;
        tracing::info!(tenant_id = %tenant, connector_id = %connector, sync_id, status, records, duration_ms = duration, "sync finished");
        Ok(())
    }
}

/// A source as a metrics label: the known kinds, `other` for anything else (labels stay a bounded set).
fn source_label(source: &str) -> &'static str {
    match source {
        "shopify" => "shopify",
        "stripe" => "stripe",
        _ => "other",
    }
}
