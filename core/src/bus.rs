//! The event bus port, shaped like Kafka: topics, keyed messages (one key's messages stay in order),
//! durable publish (returns once stored), consumer groups that poll and commit positions only after their
//! own work has committed, so delivery is at least once and consumers must be idempotent.
//!
//! Embedded adapter: [`StoreBus`], an append-only log in the relational store (`bus_log`) with committed
//! positions per group (`bus_offsets`). One consumer per group reads in log order. The Kafka adapter is a
//! separate issue; it maps `publish` to an idempotent `acks=all` produce, `poll` to a consumer poll and
//! `commit` to an offset commit of the delivery's partition.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::error::Result;
use crate::ids::TenantId;
use crate::store::{Db, now_ms};
use crate::with_global;

/// Topic names: `smb.<domain>.<event>`.
pub mod topics {
    /// Raw source records, one message per fetched page (or the end-of-run marker), keyed by connector.
    pub const RAW_RECORDS: &str = "smb.connector.records";
    pub const SYNC_COMPLETED: &str = "smb.connector.sync.completed";
    pub const QUERY_SUBMITTED: &str = "smb.user.query.submitted";
    /// Verified webhook events, one message per entity change, keyed by connector and entity.
    pub const WEBHOOK_RECEIVED: &str = "smb.connector.webhook.received";
    /// Messages a consumer gave up on after its attempts, with the error.
    pub const DEAD_LETTER: &str = "smb.deadletter";
    /// Every topic the platform uses (created up front on brokers that do not auto-create).
    pub const ALL: [&str; 5] = [
        RAW_RECORDS,
        SYNC_COMPLETED,
        QUERY_SUBMITTED,
        WEBHOOK_RECEIVED,
        DEAD_LETTER,
    ];
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub key: String,
    pub payload: String,
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub payload: String,
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Durably appends the messages (in order) before returning.
    async fn publish(&self, messages: &[Message]) -> Result<()>;
    /// Up to `max` messages after the group's committed position, waiting at most `wait` when none are there.
    async fn poll(
        &self,
        group: &str,
        topic: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>>;
    /// Marks everything up to and including `delivery` as done for the group.
    async fn commit(&self, group: &str, topic: &str, delivery: &Delivery) -> Result<()>;
}

pub type DynBus = Arc<dyn Bus>;

/// The JSON envelope of every domain event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope<P> {
    pub event_type: String,
    pub timestamp: String,
    pub tenant_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    pub payload: P,
}

impl<P: Serialize> Envelope<P> {
    pub fn new(event_type: &str, tenant: &TenantId, user: Option<String>, payload: P) -> Self {
        Self {
            event_type: event_type.to_string(),
            timestamp: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            tenant_id: tenant.to_string(),
            user_id: user,
            payload,
        }
    }

    /// The message for `topic`, keyed by tenant.
    pub fn to_message(&self, topic: &str) -> Message {
        Message {
            topic: topic.to_string(),
            key: self.tenant_id.clone(),
            payload: serde_json::to_string(self).unwrap_or_default(),
        }
    }
}

/// The embedded adapter: a log in the store.
pub struct StoreBus {
    db: Db,
    notify: Notify,
}

impl StoreBus {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            notify: Notify::new(),
        }
    }

    async fn fetch(&self, group: &str, topic: &str, max: usize) -> Result<Vec<Delivery>> {
        const SQL: &str = "SELECT id, msg_key, payload FROM bus_log WHERE topic = $1 AND id > \
            COALESCE((SELECT position FROM bus_offsets WHERE consumer_group = $2 AND topic = $1), 0) \
            ORDER BY id LIMIT $3";
        let rows: Vec<(i64, String, String)> = with_global!(&self.db, read, |tx| {
            sqlx::query_as(SQL)
                .bind(topic)
                .bind(group)
                .bind(max as i64)
                .fetch_all(&mut *tx)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(|(offset, key, payload)| Delivery {
                partition: 0,
                offset,
                key,
                payload,
            })
            .collect())
    }
}

#[async_trait]
impl Bus for StoreBus {
    async fn publish(&self, messages: &[Message]) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        with_global!(&self.db, write, |tx| {
            for m in messages {
                sqlx::query("INSERT INTO bus_log (topic, msg_key, payload, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(&m.topic)
                    .bind(&m.key)
                    .bind(&m.payload)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
        });
        self.notify.notify_waiters();
        Ok(())
    }

    async fn poll(
        &self,
        group: &str,
        topic: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>> {
        let notified = self.notify.notified();
        let got = self.fetch(group, topic, max).await?;
        if !got.is_empty() {
            return Ok(got);
        }
        let _ = tokio::time::timeout(wait, notified).await;
        self.fetch(group, topic, max).await
    }

    async fn commit(&self, group: &str, topic: &str, delivery: &Delivery) -> Result<()> {
        with_global!(&self.db, write, |tx| {
            sqlx::query(
                "INSERT INTO bus_offsets (consumer_group, topic, position) VALUES ($1, $2, $3) \
                 ON CONFLICT (consumer_group, topic) DO UPDATE SET position = excluded.position \
                 WHERE excluded.position > bus_offsets.position",
            )
            .bind(group)
            .bind(topic)
            .bind(delivery.offset)
            .execute(&mut *tx)
            .await?;
        });
        Ok(())
    }
}

/// The bus contract suite, run against every adapter.
pub mod contract {
    use super::*;

    pub async fn run_all(bus: &dyn Bus, topic: &str) {
        let msgs: Vec<Message> = (0..5)
            .map(|i| Message {
                topic: topic.into(),
                key: format!("k{}", i % 2),
                payload: format!("m{i}"),
            })
            .collect();
        bus.publish(&msgs).await.unwrap();
        // A group sees everything in order.
        let got = bus
            .poll("g1", topic, 3, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(
            got.iter().map(|d| d.payload.as_str()).collect::<Vec<_>>(),
            ["m0", "m1", "m2"]
        );
        // Without a commit, the same messages come again (at least once).
        let again = bus
            .poll("g1", topic, 3, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(again[0].payload, "m0");
        bus.commit("g1", topic, &again[1]).await.unwrap();
        let rest = bus
            .poll("g1", topic, 10, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(
            rest.iter().map(|d| d.payload.as_str()).collect::<Vec<_>>(),
            ["m2", "m3", "m4"]
        );
        // Another group has its own position.
        let other = bus
            .poll("g2", topic, 10, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(other.len(), 5);
        bus.commit("g2", topic, other.last().unwrap())
            .await
            .unwrap();
        bus.commit("g1", topic, rest.last().unwrap()).await.unwrap();
        // Nothing left: poll waits, then returns empty.
        assert!(
            bus.poll("g1", topic, 10, Duration::from_millis(50))
                .await
                .unwrap()
                .is_empty()
        );
        // A publish wakes a waiting poll.
        let later = Message {
            topic: topic.into(),
            key: "k".into(),
            payload: "late".into(),
        };
        let (r, _) = tokio::join!(bus.poll("g1", topic, 10, Duration::from_secs(10)), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            bus.publish(std::slice::from_ref(&later)).await.unwrap();
        });
        assert_eq!(r.unwrap()[0].payload, "late");
    }
}
