//! The transactional outbox. Every event that must follow a state change is inserted into `outbox` inside
//! the same database transaction as the change ([`outbox_insert!`]); the [`Relay`] publishes pending rows to
//! the bus in id order and deletes them once the bus has them. If the bus is down the outbox grows and the
//! platform keeps accepting work; it drains when the bus is back. Delivery is at least once (a crash between
//! publish and delete publishes a row again), so every consumer is idempotent.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::bus::{DynBus, Message};
use crate::error::Result;
use crate::store::Db;
use crate::with_global;

/// Where events are written, and whom to wake after the commit. With the embedded bus on SQLite the outbox
/// *is* the bus log (`bus_log` in the same database): the commit publishes, no relay copies. Otherwise rows go
/// to `outbox` and the [`Relay`] publishes them.
#[derive(Clone)]
pub struct Outbox {
    pub table: &'static str,
    wake: Arc<Notify>,
}

impl Outbox {
    pub fn relayed(wake: Arc<Notify>) -> Self {
        Self {
            table: "outbox",
            wake,
        }
    }

    /// Writes straight into the embedded bus log; `wake` is the bus's own notifier.
    pub fn direct(wake: Arc<Notify>) -> Self {
        Self {
            table: "bus_log",
            wake,
        }
    }

    pub fn is_direct(&self) -> bool {
        self.table == "bus_log"
    }

    /// After a commit that wrote events: wakes the relay, or the bus's waiting consumers.
    pub fn poke(&self) {
        self.wake.notify_waiters();
    }

    pub fn wake(&self) -> Arc<Notify> {
        self.wake.clone()
    }
}

/// Inserts `$msgs` (an iterator of `&Message`) into `$outbox`'s table inside the open transaction `$tx`,
/// in order.
#[macro_export]
macro_rules! outbox_insert {
    ($tx:ident, $outbox:expr, $msgs:expr, $now:expr) => {
        for m in $msgs {
            sqlx::query(&format!(
                "INSERT INTO {} (topic, msg_key, payload, created_at, traceparent) VALUES ($1, $2, $3, $4, $5)",
                $outbox.table
            ))
            .bind(&m.topic)
            .bind(&m.key)
            .bind(&m.payload)
            .bind($now)
            .bind(&m.traceparent)
            .execute(&mut *$tx)
            .await?;
        }
    };
}

/// Writes messages through the outbox in a transaction of their own (for events with no state change).
pub async fn enqueue(db: &Db, outbox: &Outbox, msgs: &[Message]) -> Result<()> {
    let now = crate::store::now_ms();
    with_global!(db, write, |tx| {
        outbox_insert!(tx, outbox, msgs, now);
    });
    outbox.poke();
    Ok(())
}

/// Rows written but not yet relayed to the bus (a gauge: it grows while the bus is unreachable).
pub async fn depth(db: &Db) -> Result<i64> {
    let (n,): (i64,) = with_global!(db, read, |tx| {
        sqlx::query_as("SELECT COUNT(*) FROM outbox")
            .fetch_one(&mut *tx)
            .await?
    });
    Ok(n)
}

/// Publishes the outbox to the bus.
pub struct Relay {
    db: Db,
    bus: DynBus,
    /// Poked after a commit that wrote to the outbox, so events leave at once.
    pub wake: Arc<Notify>,
    batch: i64,
    max_message_bytes: usize,
}

/// The dead-letter reference that goes out instead of a message over the size limit: where it was going,
/// and how big it was (the message itself is dropped: no broker would take it).
fn oversized(m: &Message, max: usize) -> Message {
    Message {
        topic: crate::bus::topics::DEAD_LETTER.into(),
        key: m.key.clone(),
        payload: serde_json::json!({
            "kind": "oversized_message", "topic": m.topic, "key": m.key,
            "bytes": m.payload.len() + m.key.len(), "max_bytes": max,
        })
        .to_string(),
        traceparent: m.traceparent.clone(),
    }
}

/// The advisory lock key of the outbox relay on PostgreSQL (any constant unique to this use).
const RELAY_LOCK: i64 = 0x736d_625f_7265_6c61; // "smb_rela"

impl Relay {
    pub fn new(db: Db, bus: DynBus, wake: Arc<Notify>) -> Self {
        Self {
            db,
            bus,
            wake,
            batch: 256,
            max_message_bytes: crate::config::BusConfig::default().max_message_bytes,
        }
    }

    /// The largest message the bus takes (`bus.max_message_bytes`).
    pub fn with_max_message_bytes(mut self, max: usize) -> Self {
        self.max_message_bytes = max;
        self
    }

    /// Publishes one batch; returns how many rows left the outbox.
    ///
    /// On PostgreSQL several replicas run a relay: the batch is read, published and deleted inside one
    /// transaction that holds a transaction-scoped advisory lock, so one relay drains at a time (another
    /// finds the lock taken and waits for its next turn) and no row is published by two of them. Order is
    /// kept: rows go out in id order, batch after batch. SQLite is one process's database (its relay runs in
    /// that process only).
    ///
    /// A message over `max_message_bytes` never reaches the bus (a broker refuses it, and would refuse it
    /// for ever, holding back every tenant's events behind it): a dead-letter reference goes in its place.
    pub async fn drain_once(&self) -> Result<usize> {
        type Row = (i64, String, String, String, Option<String>);
        const SELECT: &str =
            "SELECT id, topic, msg_key, payload, traceparent FROM outbox ORDER BY id LIMIT $1";
        let max = self.max_message_bytes;
        let to_messages = |rows: Vec<Row>| -> (Vec<i64>, Vec<Message>) {
            rows.into_iter()
                .map(|(id, topic, key, payload, traceparent)| {
                    let m = Message {
                        topic,
                        key,
                        payload,
                        traceparent,
                    };
                    if m.payload.len() + m.key.len() > max {
                        tracing::error!(
                            outbox_id = id,
                            topic = %m.topic,
                            bytes = m.payload.len(),
                            max_bytes = max,
                            "message over bus.max_message_bytes: a dead-letter reference goes in its place"
                        );
                        (id, oversized(&m, max))
                    } else {
                        (id, m)
                    }
                })
                .unzip()
        };
        match &self.db {
            Db::Sqlite(pool) => {
                let rows: Vec<Row> = sqlx::query_as(SELECT)
                    .bind(self.batch)
                    .fetch_all(pool)
                    .await?;
                if rows.is_empty() {
                    return Ok(0);
                }
                let (ids, msgs) = to_messages(rows);
                self.bus.publish(&msgs).await?;
                // Deleted by id, never by range: a transaction that commits late with a lower id is picked
                // up next time.
                let list = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into());
                let (_write, mut tx) = crate::store::sqlite_begin_write(pool).await?;
                sqlx::query("DELETE FROM outbox WHERE id IN (SELECT value FROM json_each($1))")
                    .bind(list)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(ids.len())
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let (ours,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_xact_lock($1)")
                    .bind(RELAY_LOCK)
                    .fetch_one(&mut *tx)
                    .await?;
                if !ours {
                    return Ok(0);
                }
                let rows: Vec<Row> = sqlx::query_as(SELECT)
                    .bind(self.batch)
                    .fetch_all(&mut *tx)
                    .await?;
                if rows.is_empty() {
                    return Ok(0);
                }
                let (ids, msgs) = to_messages(rows);
                self.bus.publish(&msgs).await?;
                sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
                    .bind(&ids)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(ids.len())
            }
        }
    }

    /// Runs until `shutdown` is cancelled, backing off (up to 10 s) while the bus refuses.
    pub async fn run(self, shutdown: tokio_util::sync::CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let woken = self.wake.notified();
            match self.drain_once().await {
                Ok(n) if n as i64 == self.batch => {
                    backoff = Duration::from_millis(100);
                    continue;
                }
                Ok(_) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "outbox relay: bus unavailable; events stay in the outbox");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = shutdown.cancelled() => return,
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                    continue;
                }
            }
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}
