//! Bus benchmark: produce and consume throughput of the bus adapters next to a bare rdkafka producer and
//! consumer on the same broker, in the same run (the ratio is the figure), plus the embedded store bus.
//!
//! Needs a Kafka-compatible broker: `--brokers HOST:PORT`, or it starts `tansu` (memory storage) itself.
//! Run with a release build: `cargo build --release -p smb-bench && target/release/bus_bench`.

// Linked for its global allocator (mimalloc, as `smb` runs): memory figures compare.
use smb_bench as _;

use std::time::{Duration, Instant};

use clap::Parser;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use smb_core::bus::{Bus, Message, StoreBus};
use smb_core::kafka::{KafkaBus, KafkaSettings};
use smb_core::store::testing::{PgTestDb, sqlite};

#[derive(Parser)]
struct Args {
    /// Broker to use; without it, a tansu broker is started on a free port.
    #[arg(long)]
    brokers: Option<String>,
    /// Messages per run.
    #[arg(long, default_value_t = 20_000)]
    messages: usize,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Messages per `publish` call (the outbox relay publishes up to 256 at a time).
    #[arg(long, default_value_t = 256)]
    batch: usize,
}

fn messages(topic: &str, n: usize, size: usize) -> Vec<Message> {
    (0..n)
        .map(|i| Message {
            topic: topic.into(),
            key: format!("key-{}", i % 64),
            payload: format!("{i:0>width$}", width = size),
            traceparent: None,
        })
        .collect()
}

fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

async fn bus_run(bus: &dyn Bus, topic: &str, args: &Args) -> anyhow::Result<(f64, f64)> {
    let msgs = messages(topic, args.messages, args.size);
    // One message first, untimed: connections and producer ids are set up before the clock starts.
    bus.publish(&msgs[..1]).await?;
    let t = Instant::now();
    for chunk in msgs.chunks(args.batch) {
        bus.publish(chunk).await?;
    }
    let produce = rate(args.messages, t.elapsed());
    let t = Instant::now();
    let mut got = 0;
    while got < args.messages + 1 {
        let batch = bus
            .poll("bench", topic, 500, Duration::from_secs(5))
            .await?;
        anyhow::ensure!(!batch.is_empty(), "consumer stalled at {got}");
        got += batch.len();
        let mut last: std::collections::BTreeMap<i32, &smb_core::bus::Delivery> =
            Default::default();
        for d in &batch {
            last.insert(d.partition, d);
        }
        for d in last.values() {
            bus.commit("bench", topic, d).await?;
        }
    }
    Ok((produce, rate(args.messages, t.elapsed())))
}

async fn bare_run(
    brokers: &str,
    topic: &str,
    args: &Args,
    one_per_batch: bool,
) -> anyhow::Result<(f64, f64)> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set(
            "batch.num.messages",
            if one_per_batch { "1" } else { "10000" },
        )
        .create()?;
    let msgs = messages(topic, args.messages, args.size);
    producer
        .send(
            FutureRecord::to(topic).key("warm-up").payload("warm-up"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
    let t = Instant::now();
    let sends = msgs.iter().map(|m| {
        producer.send(
            FutureRecord::to(&m.topic).key(&m.key).payload(&m.payload),
            Duration::from_secs(10),
        )
    });
    futures_join(sends).await?;
    let produce = rate(args.messages, t.elapsed());

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", format!("{topic}.bare"))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100")
        .create()?;
    consumer.subscribe(&[topic])?;
    let t = Instant::now();
    for i in 0..=args.messages {
        let m = tokio::time::timeout(Duration::from_secs(20), consumer.recv()).await??;
        if (i + 1) % 500 == 0 || i == args.messages {
            consumer.commit_message(&m, CommitMode::Sync)?;
        }
    }
    Ok((produce, rate(args.messages, t.elapsed())))
}

async fn futures_join<F, T, E>(futs: impl Iterator<Item = F>) -> anyhow::Result<()>
where
    F: std::future::Future<Output = Result<T, (rdkafka::error::KafkaError, E)>>,
{
    // join_all polls in order on the first pass, so messages are enqueued in order.
    for r in futures::future::join_all(futs).await {
        r.map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (brokers, _tansu) = match &args.brokers {
        Some(b) => (b.clone(), None),
        None => {
            let b = smb_tests::broker::Broker::start(None);
            (b.addr(), Some(b))
        }
    };
    println!(
        "{} messages of {} bytes, 64 keys, publish batches of {}",
        args.messages, args.size, args.batch
    );
    let run = uuid::Uuid::new_v4().simple().to_string();
    for one_per_batch in [true, false] {
        let mut s = KafkaSettings::new(&brokers);
        s.prefix = format!("b{run}{}.", one_per_batch as u8);
        s.one_message_per_batch = one_per_batch;
        let bus = KafkaBus::connect(s.clone(), &["bench", "bare"]).await?;
        let (bp, bc) = bus_run(&bus, "bench", &args).await?;
        bus.close().await;
        let (rp, rc) =
            bare_run(&brokers, &format!("{}bare", s.prefix), &args, one_per_batch).await?;
        println!(
            "kafka, one message per batch = {one_per_batch}: KafkaBus produce {bp:>8.0}/s consume+commit {bc:>8.0}/s | bare rdkafka produce {rp:>8.0}/s consume {rc:>8.0}/s | ratio produce {:.2} consume {:.2}",
            bp / rp,
            bc / rc
        );
    }
    let (db, _dir) = sqlite().await?;
    let (p, c) = bus_run(&StoreBus::new(db), "bench", &args).await?;
    println!("embedded StoreBus on SQLite:     produce {p:>8.0}/s consume+commit {c:>8.0}/s");
    let pg = PgTestDb::create().await?;
    let (p, c) = bus_run(&StoreBus::new(pg.db.clone()), "bench", &args).await?;
    println!("embedded StoreBus on PostgreSQL: produce {p:>8.0}/s consume+commit {c:>8.0}/s");
    pg.drop_db().await;
    Ok(())
}
