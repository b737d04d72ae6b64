//! The Kafka adapter of the bus port (rdkafka).
//!
//! Producer: idempotent (`enable.idempotence`, `acks=all`); `publish` returns once every message is
//! acknowledged, in order per key (one key → one partition). Consumers: one per (group, topic) in this
//! process, a member of a consumer group with auto-commit off; `commit` commits `offset + 1` of the delivery's
//! partition synchronously, after the caller's own transaction. `rewind` seeks every assigned partition back
//! to its committed offset. Topics are created up front (some brokers do not auto-create), optionally under
//! a prefix that isolates tests and environments.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers as _, Message as _, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::Mutex;

use crate::bus::{Bus, Delivery, Lag, Message, topics};
use crate::error::{Error, Result};

/// Settings of the Kafka adapter.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub brokers: String,
    /// Prepended to every topic and group name (tests, shared clusters).
    pub prefix: String,
    pub partitions: i32,
    pub replication: i32,
    /// How long a produce may wait for acknowledgement before `publish` fails.
    pub delivery_timeout: Duration,
    /// One message per record batch. Needed with brokers that only serve fetches from batch boundaries
    /// (tansu 0.6: a consumer resuming from a committed offset inside a batch would get nothing).
    pub one_message_per_batch: bool,
}

impl KafkaSettings {
    pub fn new(brokers: &str) -> Self {
        Self {
            brokers: brokers.to_string(),
            prefix: String::new(),
            partitions: 3,
            replication: 1,
            delivery_timeout: Duration::from_secs(10),
            one_message_per_batch: false,
        }
    }
}

fn kafka_err(context: &str, e: KafkaError) -> Error {
    tracing::warn!(context, error = %e, "kafka");
    Error::unavailable(format!(
        "the event broker is unavailable ({context}); retry shortly"
    ))
}

/// A consumer that logs its group's rebalances: which partitions this process was given or lost, so a
/// stalled pipeline can be traced to the member that holds its partitions.
type GroupConsumer = StreamConsumer<Membership>;

struct Membership {
    group: String,
}

impl ClientContext for Membership {}

impl ConsumerContext for Membership {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let partitions = |l: &TopicPartitionList| {
            l.elements()
                .iter()
                .map(|e| format!("{}/{}", e.topic(), e.partition()))
                .collect::<Vec<_>>()
                .join(",")
        };
        match rebalance {
            Rebalance::Assign(l) => {
                tracing::info!(group = %self.group, partitions = %partitions(l), "partitions assigned")
            }
            Rebalance::Revoke(l) => {
                tracing::info!(group = %self.group, partitions = %partitions(l), "partitions revoked")
            }
            Rebalance::Error(e) => {
                tracing::warn!(group = %self.group, error = %e, "consumer group rebalance failed")
            }
        }
    }
}

pub struct KafkaBus {
    settings: KafkaSettings,
    producer: FutureProducer,
    consumers: Mutex<HashMap<(String, String), Arc<GroupConsumer>>>,
    /// Set by `close`: no consumer joins a group after it (a call that outlived shutdown gets an error).
    closed: std::sync::atomic::AtomicBool,
}

impl KafkaBus {
    /// Connects, and creates the platform's topics (and `extra`) when missing.
    pub async fn connect(settings: KafkaSettings, extra: &[&str]) -> Result<Self> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set(
                "batch.num.messages",
                if settings.one_message_per_batch {
                    "1"
                } else {
                    "10000"
                },
            )
            .set(
                "message.timeout.ms",
                settings.delivery_timeout.as_millis().to_string(),
            )
            .create()
            .map_err(|e| kafka_err("producer", e))?;
        let bus = Self {
            settings,
            producer,
            consumers: Mutex::new(HashMap::new()),
            closed: std::sync::atomic::AtomicBool::new(false),
        };
        let mut all: Vec<&str> = topics::ALL.to_vec();
        all.extend_from_slice(extra);
        bus.create_topics(&all).await?;
        Ok(bus)
    }

    fn name(&self, topic: &str) -> String {
        format!("{}{topic}", self.settings.prefix)
    }

    /// Creates topics that do not exist yet.
    pub async fn create_topics(&self, names: &[&str]) -> Result<()> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.settings.brokers)
            .create()
            .map_err(|e| kafka_err("admin", e))?;
        let full: Vec<String> = names.iter().map(|t| self.name(t)).collect();
        let new: Vec<NewTopic> = full
            .iter()
            .map(|t| {
                NewTopic::new(
                    t,
                    self.settings.partitions,
                    TopicReplication::Fixed(self.settings.replication),
                )
            })
            .collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results = admin
            .create_topics(&new, &opts)
            .await
            .map_err(|e| kafka_err("create topics", e))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, code)) => {
                    return Err(Error::unavailable(format!(
                        "cannot create topic {t}: {code}"
                    )));
                }
            }
        }
        Ok(())
    }

    async fn consumer(&self, group: &str, topic: &str) -> Result<Arc<GroupConsumer>> {
        let key = (group.to_string(), topic.to_string());
        let mut map = self.consumers.lock().await;
        if let Some(c) = map.get(&key) {
            return Ok(c.clone());
        }
        if self.closed.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(Error::unavailable(
                "the event bus is shutting down; retry on another replica",
            ));
        }
        let c: GroupConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.settings.brokers)
            .set("group.id", self.name(group))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("fetch.wait.max.ms", "100")
            .create_with_context(Membership {
                group: self.name(group),
            })
            .map_err(|e| kafka_err("consumer", e))?;
        c.subscribe(&[&self.name(topic)])
            .map_err(|e| kafka_err("subscribe", e))?;
        let c = Arc::new(c);
        map.insert(key, c.clone());
        Ok(c)
    }
}

/// How long shutdown waits for this process's consumers to leave their groups.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// The message header that carries the W3C trace context.
const TRACEPARENT: &str = "traceparent";

fn delivery(m: &rdkafka::message::BorrowedMessage<'_>) -> Delivery {
    Delivery {
        partition: m.partition(),
        offset: m.offset(),
        key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
        payload: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
        traceparent: m.headers().and_then(|h| {
            h.iter()
                .find(|h| h.key == TRACEPARENT)
                .and_then(|h| h.value)
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_string)
        }),
    }
}

#[async_trait]
impl Bus for KafkaBus {
    async fn publish(&self, messages: &[Message]) -> Result<()> {
        let names: Vec<String> = messages.iter().map(|m| self.name(&m.topic)).collect();
        // Futures are polled in order on their first poll, so messages are enqueued in order.
        let sends = messages.iter().zip(&names).map(|(m, topic)| {
            let mut record = FutureRecord::to(topic).key(&m.key).payload(&m.payload);
            if let Some(tp) = &m.traceparent {
                record = record.headers(OwnedHeaders::new().insert(Header {
                    key: TRACEPARENT,
                    value: Some(tp.as_bytes()),
                }));
            }
            self.producer.send(record, self.settings.delivery_timeout)
        });
        futures::future::try_join_all(sends)
            .await
            .map_err(|(e, _)| kafka_err("publish", e))?;
        Ok(())
    }

    async fn poll(
        &self,
        group: &str,
        topic: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>> {
        let c = self.consumer(group, topic).await?;
        let mut out = Vec::new();
        match tokio::time::timeout(wait, c.recv()).await {
            Err(_) => return Ok(out),
            Ok(Err(e)) => return Err(kafka_err("poll", e)),
            Ok(Ok(m)) => out.push(delivery(&m)),
        }
        while out.len() < max {
            match tokio::time::timeout(Duration::from_millis(5), c.recv()).await {
                Ok(Ok(m)) => out.push(delivery(&m)),
                Ok(Err(e)) => return Err(kafka_err("poll", e)),
                Err(_) => break,
            }
        }
        Ok(out)
    }

    async fn commit(&self, group: &str, topic: &str, d: &Delivery) -> Result<()> {
        let c = self.consumer(group, topic).await?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.name(topic), d.partition, Offset::Offset(d.offset + 1))
            .map_err(|e| kafka_err("commit", e))?;
        tokio::task::spawn_blocking(move || c.commit(&tpl, CommitMode::Sync))
            .await
            .map_err(|e| Error::internal("commit task", e))?
            .map_err(|e| kafka_err("commit", e))
    }

    async fn rewind(&self, group: &str, topic: &str) -> Result<()> {
        let c = self.consumer(group, topic).await?;
        tokio::task::spawn_blocking(move || -> std::result::Result<(), KafkaError> {
            let assigned = c.assignment()?;
            if assigned.count() == 0 {
                return Ok(());
            }
            let committed = c.committed_offsets(assigned, Duration::from_secs(10))?;
            for e in committed.elements() {
                let to = match e.offset() {
                    Offset::Offset(o) => Offset::Offset(o),
                    _ => Offset::Beginning,
                };
                c.seek(e.topic(), e.partition(), to, Duration::from_secs(10))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::internal("rewind task", e))?
        .map_err(|e| kafka_err("rewind", e))
    }

    /// Each consumer unsubscribes (it leaves its group once its pending join, if any, is answered) and is
    /// then closed, which waits for the leave; at most `CLOSE_WAIT` in all.
    async fn close(&self) {
        let consumers: Vec<Arc<GroupConsumer>> = {
            let mut map = self.consumers.lock().await;
            self.closed.store(true, std::sync::atomic::Ordering::SeqCst);
            map.drain().map(|(_, c)| c).collect()
        };
        if consumers.is_empty() {
            return;
        }
        let closing = tokio::task::spawn_blocking(move || {
            for c in consumers {
                c.unsubscribe();
                // The last reference: dropping it closes the consumer (librdkafka's close, which serves
                // the revocation and sends the leave). A call still in flight holds another and closes it
                // when it ends.
                drop(c);
            }
        });
        if tokio::time::timeout(CLOSE_WAIT, closing).await.is_err() {
            tracing::warn!(
                wait_secs = CLOSE_WAIT.as_secs(),
                "the bus consumers did not leave their groups in time; the broker will time them out"
            );
        }
    }

    async fn lag(&self) -> Result<Vec<Lag>> {
        let consumers: Vec<((String, String), Arc<GroupConsumer>)> = self
            .consumers
            .lock()
            .await
            .iter()
            .map(|(k, c)| (k.clone(), c.clone()))
            .collect();
        let mut out = Vec::with_capacity(consumers.len());
        for ((group, topic), c) in consumers {
            let messages =
                tokio::task::spawn_blocking(move || -> std::result::Result<i64, KafkaError> {
                    let assigned = c.assignment()?;
                    if assigned.count() == 0 {
                        return Ok(0);
                    }
                    let committed = c.committed_offsets(assigned, Duration::from_secs(5))?;
                    let mut lag = 0;
                    for e in committed.elements() {
                        let (low, high) =
                            c.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(5))?;
                        let from = match e.offset() {
                            Offset::Offset(o) => o,
                            _ => low,
                        };
                        lag += (high - from).max(0);
                    }
                    Ok(lag)
                })
                .await
                .map_err(|e| Error::internal("lag task", e))?
                .map_err(|e| kafka_err("lag", e))?;
            out.push(Lag {
                group,
                topic,
                messages,
            });
        }
        Ok(out)
    }
}
