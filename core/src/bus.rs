//! The event bus port, shaped like Kafka: topics, keyed messages (one key's messages stay in order; order
//! across keys is not promised), durable publish (returns once stored), consumer groups that poll forward
//! from their position and commit only after their own work has committed. After a crash, a rebalance or an
//! explicit [`Bus::rewind`], a group starts again from its last commit, so delivery is at least once and
//! consumers must be idempotent.
//!
//! Adapters: [`StoreBus`], an append-only log in the relational store (`bus_log`) with committed positions
//! per group (`bus_offsets`), one partition; and [`crate::kafka::KafkaBus`] (idempotent `acks=all`
//! producer, consumer groups with manual offset commits). Both pass [`contract::run_all`].

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
    /// The W3C `traceparent` of the work that wrote it (when traces are exported): its consumer continues
    /// that trace. A Kafka header; a column of the outbox and of the embedded log.
    pub traceparent: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Delivery {
    pub partition: i32,
    pub offset: i64,
    pub key: String,
    pub payload: String,
    /// The message's `traceparent`, if it carried one.
    pub traceparent: Option<String>,
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
    /// Marks everything up to and including `delivery` (on its partition) as done for the group.
    async fn commit(&self, group: &str, topic: &str, delivery: &Delivery) -> Result<()>;
    /// Moves the group's read position back to its last commit on every partition: what was delivered
    /// but not committed comes again (a consumer calls this after a failed message).
    async fn rewind(&self, group: &str, topic: &str) -> Result<()>;
    /// How far behind this process's consumers are: per (group, topic) it has polled, the messages after the
    /// group's committed position (on Kafka, on the partitions assigned to this process, so the sum over
    /// replicas is the group's lag; the embedded log has one partition, so every replica reports all of it).
    async fn lag(&self) -> Result<Vec<Lag>>;
    /// Leaves this process's consumer groups (at shutdown, after its consumers have stopped), so their
    /// partitions go to the other replicas at once rather than when the broker gives up on this one.
    async fn close(&self) {}
}

/// A consumer group's backlog on one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lag {
    pub group: String,
    pub topic: String,
    pub messages: i64,
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
            traceparent: crate::telemetry::traceparent(),
        }
    }
}

/// The embedded adapter: a log in the store.
pub struct StoreBus {
    db: Db,
    /// Wakes every waiting consumer (writers that append in their own transactions: [`StoreBus::notifier`]).
    notify: Arc<Notify>,
    /// Wakes the consumers of one topic: a publish wakes only those of the topics it wrote, so a busy
    /// topic nobody here consumes (query events) costs no reads.
    topics: std::sync::Mutex<std::collections::HashMap<String, Arc<Notify>>>,
    /// This process's read position per (group, topic), ahead of the committed one.
    positions: std::sync::Mutex<std::collections::HashMap<(String, String), i64>>,
}

impl StoreBus {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            notify: Arc::new(Notify::new()),
            topics: Default::default(),
            positions: Default::default(),
        }
    }

    /// Deletes messages older than `keep`, consumed or not (as a Kafka broker's retention does), oldest
    /// first in batches so that no statement holds the log long; returns how many went.
    pub async fn prune(&self, keep: Duration) -> Result<u64> {
        const BATCH: i64 = 5_000;
        let cutoff = now_ms() - keep.as_millis() as i64;
        let mut removed = 0;
        loop {
            let n = with_global!(&self.db, write, |tx| {
                // Ids grow with time: the scan in id order meets the old rows first.
                sqlx::query(
                    "DELETE FROM bus_log WHERE id IN \
                     (SELECT id FROM bus_log WHERE created_at < $1 ORDER BY id LIMIT $2)",
                )
                .bind(cutoff)
                .bind(BATCH)
                .execute(&mut *tx)
                .await?
                .rows_affected()
            });
            removed += n;
            if (n as i64) < BATCH {
                return Ok(removed);
            }
        }
    }

    /// Wakes waiting consumers; for writers that append to the log in their own transactions.
    pub fn notifier(&self) -> Arc<Notify> {
        self.notify.clone()
    }

    fn topic_notify(&self, topic: &str) -> Arc<Notify> {
        let mut map = self.topics.lock().expect("topics");
        if let Some(n) = map.get(topic) {
            return n.clone();
        }
        let n = Arc::new(Notify::new());
        map.insert(topic.to_string(), n.clone());
        n
    }

    fn position(&self, group: &str, topic: &str) -> i64 {
        self.positions
            .lock()
            .expect("positions")
            .get(&(group.to_string(), topic.to_string()))
            .copied()
            .unwrap_or(0)
    }

    async fn fetch(&self, group: &str, topic: &str, max: usize) -> Result<Vec<Delivery>> {
        const SQL: &str = "SELECT id, msg_key, payload, traceparent FROM bus_log WHERE topic = $1 AND id > \
            COALESCE((SELECT position FROM bus_offsets WHERE consumer_group = $2 AND topic = $1), 0) \
            AND id > $4 ORDER BY id LIMIT $3";
        let after = self.position(group, topic);
        let rows: Vec<(i64, String, String, Option<String>)> = with_global!(&self.db, read, |tx| {
            sqlx::query_as(SQL)
                .bind(topic)
                .bind(group)
                .bind(max as i64)
                .bind(after)
                .fetch_all(&mut *tx)
                .await?
        });
        if let Some(last) = rows.last() {
            let mut p = self.positions.lock().expect("positions");
            let e = p.entry((group.to_string(), topic.to_string())).or_insert(0);
            *e = (*e).max(last.0);
        }
        Ok(rows
            .into_iter()
            .map(|(offset, key, payload, traceparent)| Delivery {
                partition: 0,
                offset,
                key,
                payload,
                traceparent,
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
        // One statement per batch, not one per message: a statement is a round trip to SQLite's worker
        // thread (or to PostgreSQL), which dominated the cost of a busy answer path's query events.
        // Rows get ids in the batch's order.
        match &self.db {
            Db::Sqlite(pool) => {
                let rows: Vec<[Option<&str>; 4]> = messages
                    .iter()
                    .map(|m| {
                        [
                            Some(m.topic.as_str()),
                            Some(m.key.as_str()),
                            Some(m.payload.as_str()),
                            m.traceparent.as_deref(),
                        ]
                    })
                    .collect();
                let rows = serde_json::to_string(&rows)
                    .map_err(|e| crate::Error::internal("bus batch", e))?;
                let (_write, mut tx) = crate::store::sqlite_begin_write(pool).await?;
                sqlx::query(
                    "INSERT INTO bus_log (topic, msg_key, payload, created_at, traceparent) \
                     SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), \
                            json_extract(value, '$[2]'), $2, json_extract(value, '$[3]') \
                     FROM json_each($1) ORDER BY key",
                )
                .bind(rows)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
            Db::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                // Consumers read `id > position`: ids must become visible in id order. Sequence values are
                // taken at insert and transactions commit in any order, so publishers take turns (SQLite
                // writers are serialised already).
                sqlx::query("SELECT pg_advisory_xact_lock(7261001)")
                    .execute(&mut *tx)
                    .await?;
                let col = |f: fn(&Message) -> Option<&str>| -> Vec<Option<&str>> {
                    messages.iter().map(f).collect()
                };
                sqlx::query(
                    "INSERT INTO bus_log (topic, msg_key, payload, created_at, traceparent) \
                     SELECT t, k, p, $5, tp \
                     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS x(t, k, p, tp, n) \
                     ORDER BY n",
                )
                .bind(col(|m| Some(&m.topic)))
                .bind(col(|m| Some(&m.key)))
                .bind(col(|m| Some(&m.payload)))
                .bind(col(|m| m.traceparent.as_deref()))
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
        }
        let map = self.topics.lock().expect("topics");
        for (i, m) in messages.iter().enumerate() {
            // Each topic once (batches hold one or a few topics).
            if messages[..i].iter().all(|o| o.topic != m.topic)
                && let Some(n) = map.get(&m.topic)
            {
                n.notify_waiters();
            }
        }
        Ok(())
    }

    async fn poll(
        &self,
        group: &str,
        topic: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>> {
        let (all, one) = (self.notify.clone(), self.topic_notify(topic));
        let (all, one) = (all.notified(), one.notified());
        let got = self.fetch(group, topic, max).await?;
        if !got.is_empty() {
            return Ok(got);
        }
        let _ = tokio::time::timeout(wait, async {
            tokio::select! {
                _ = all => {}
                _ = one => {}
            }
        })
        .await;
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

    async fn rewind(&self, group: &str, topic: &str) -> Result<()> {
        self.positions
            .lock()
            .expect("positions")
            .remove(&(group.to_string(), topic.to_string()));
        Ok(())
    }

    async fn lag(&self) -> Result<Vec<Lag>> {
        let consumers: Vec<(String, String)> = self
            .positions
            .lock()
            .expect("positions")
            .keys()
            .cloned()
            .collect();
        let mut out = Vec::with_capacity(consumers.len());
        for (group, topic) in consumers {
            let (messages,): (i64,) = with_global!(&self.db, read, |tx| {
                sqlx::query_as(
                    "SELECT COUNT(*) FROM bus_log WHERE topic = $1 AND id > COALESCE(\
                     (SELECT position FROM bus_offsets WHERE consumer_group = $2 AND topic = $1), 0)",
                )
                .bind(&topic)
                .bind(&group)
                .fetch_one(&mut *tx)
                .await?
            });
            out.push(Lag {
                group,
                topic,
                messages,
            });
        }
        Ok(out)
    }
}

/// The bus contract suite, run against every adapter.
pub mod contract {
    use super::*;

    fn msg(topic: &str, key: &str, payload: &str) -> Message {
        Message {
            topic: topic.into(),
            key: key.into(),
            payload: payload.into(),
            traceparent: None,
        }
    }

    /// Polls until `n` deliveries arrived (or 20 s passed).
    async fn collect(bus: &dyn Bus, group: &str, topic: &str, n: usize) -> Vec<Delivery> {
        let mut out = Vec::new();
        let start = std::time::Instant::now();
        while out.len() < n && start.elapsed() < Duration::from_secs(20) {
            out.extend(
                bus.poll(group, topic, n - out.len(), Duration::from_secs(2))
                    .await
                    .unwrap(),
            );
        }
        out
    }

    fn by_key<'a>(got: &'a [Delivery], key: &str) -> Vec<&'a str> {
        got.iter()
            .filter(|d| d.key == key)
            .map(|d| d.payload.as_str())
            .collect()
    }

    /// Commits the last delivery of every partition.
    async fn commit_all(bus: &dyn Bus, group: &str, topic: &str, got: &[Delivery]) {
        let mut last: std::collections::BTreeMap<i32, &Delivery> = Default::default();
        for d in got {
            let e = last.entry(d.partition).or_insert(d);
            if d.offset > e.offset {
                *e = d;
            }
        }
        for d in last.values() {
            bus.commit(group, topic, d).await.unwrap();
        }
    }

    pub async fn run_all(bus: &dyn Bus, topic: &str) {
        let msgs: Vec<Message> = (0..5)
            .map(|i| msg(topic, &format!("k{}", i % 2), &format!("m{i}")))
            .collect();
        bus.publish(&msgs).await.unwrap();
        // A group sees everything, each key in order.
        let got = collect(bus, "g1", topic, 5).await;
        assert_eq!(got.len(), 5);
        assert_eq!(by_key(&got, "k0"), ["m0", "m2", "m4"]);
        assert_eq!(by_key(&got, "k1"), ["m1", "m3"]);
        // Polling goes forward: nothing new.
        assert!(
            bus.poll("g1", topic, 10, Duration::from_millis(300))
                .await
                .unwrap()
                .is_empty()
        );
        // Without a commit, a rewind delivers the same messages again (at least once).
        bus.rewind("g1", topic).await.unwrap();
        let again = collect(bus, "g1", topic, 5).await;
        assert_eq!(by_key(&again, "k0"), ["m0", "m2", "m4"]);
        assert_eq!(by_key(&again, "k1"), ["m1", "m3"]);
        // After commits, a rewind delivers nothing.
        commit_all(bus, "g1", topic, &again).await;
        bus.rewind("g1", topic).await.unwrap();
        assert!(
            bus.poll("g1", topic, 10, Duration::from_millis(300))
                .await
                .unwrap()
                .is_empty()
        );
        // Another group has its own position.
        let other = collect(bus, "g2", topic, 5).await;
        assert_eq!(other.len(), 5);
        // A partial commit: only what follows the committed message comes again.
        bus.publish(&[msg(topic, "k0", "m5"), msg(topic, "k0", "m6")])
            .await
            .unwrap();
        let two = collect(bus, "g1", topic, 2).await;
        assert_eq!(by_key(&two, "k0"), ["m5", "m6"]);
        bus.commit("g1", topic, &two[0]).await.unwrap();
        // The lag: what follows each group's commits (g2 has committed nothing).
        let lag = bus.lag().await.unwrap();
        let of = |g: &str| {
            lag.iter()
                .find(|l| l.group == g && l.topic == topic)
                .map(|l| l.messages)
        };
        assert_eq!(of("g1"), Some(1), "{lag:?}");
        assert_eq!(of("g2"), Some(7), "{lag:?}");
        bus.rewind("g1", topic).await.unwrap();
        let rest = collect(bus, "g1", topic, 1).await;
        assert_eq!(by_key(&rest, "k0"), ["m6"]);
        bus.commit("g1", topic, &rest[0]).await.unwrap();
        // A publish wakes a waiting poll.
        let (r, _) = tokio::join!(bus.poll("g1", topic, 10, Duration::from_secs(10)), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            bus.publish(&[msg(topic, "k", "late")]).await.unwrap();
        });
        assert_eq!(r.unwrap()[0].payload, "late");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn msg(topic: &str) -> Message {
        Message {
            topic: topic.into(),
            key: "k".into(),
            payload: "p".into(),
            traceparent: None,
        }
    }

    #[tokio::test]
    async fn a_publish_wakes_the_consumers_of_its_topic_only() {
        let (db, _dir) = crate::store::testing::sqlite().await.unwrap();
        let bus = StoreBus::new(db);
        // Another topic's publish leaves the poll waiting out its time (and finding nothing).
        let started = Instant::now();
        let (r, _) = tokio::join!(bus.poll("g", "a", 10, Duration::from_secs(1)), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            bus.publish(&[msg("b")]).await.unwrap();
        });
        assert!(r.unwrap().is_empty());
        assert!(started.elapsed() >= Duration::from_millis(900));
        // Its own topic's publish ends the wait at once.
        let started = Instant::now();
        let (r, _) = tokio::join!(bus.poll("g", "a", 10, Duration::from_secs(30)), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            bus.publish(&[msg("b"), msg("a")]).await.unwrap();
        });
        assert_eq!(r.unwrap().len(), 1);
        assert!(started.elapsed() < Duration::from_secs(20));
        // So does a writer that appended in its own transaction and rang the notifier.
        let started = Instant::now();
        let notify = bus.notifier();
        let (r, _) = tokio::join!(bus.poll("g", "a", 10, Duration::from_secs(30)), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            with_global!(&bus.db, write, |tx| {
                sqlx::query("INSERT INTO bus_log (topic, msg_key, payload, created_at) VALUES ('a', 'k', 'p', 0)")
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            });
            notify.notify_waiters();
            Ok::<_, crate::Error>(())
        });
        r.unwrap();
        assert!(started.elapsed() < Duration::from_secs(20));
    }
}
