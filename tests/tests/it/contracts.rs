//! Port contract suites, run against both adapters: store (with PostgreSQL row-level security), cache
//! (in-process and Redis) and bus (store-backed on SQLite and PostgreSQL).

use std::sync::Arc;

use smb_core::bus::{Bus, StoreBus, contract as bus_contract};
use smb_core::cache::{MemoryCache, RedisCache, contract as cache_contract};
use smb_core::ids::TenantId;
use smb_core::store::Db;
use smb_core::store::testing::{PgTestDb, sqlite};
use smb_core::with_tenant;

#[tokio::test]
async fn cache_contract_memory() {
    cache_contract::run_all(&MemoryCache::new("t:")).await;
}

#[tokio::test]
async fn cache_contract_redis() {
    let prefix = format!("smbtest:{}:", uuid::Uuid::new_v4().simple());
    let c = RedisCache::connect("redis://127.0.0.1:6379", &prefix)
        .await
        .expect("redis on 127.0.0.1:6379");
    cache_contract::run_all(&c).await;
}

#[tokio::test]
async fn bus_contract_sqlite() {
    let (db, _dir) = sqlite().await.unwrap();
    bus_contract::run_all(&StoreBus::new(db), "smb.test.events").await;
}

#[tokio::test]
async fn bus_contract_postgres() {
    let pg = PgTestDb::create().await.unwrap();
    bus_contract::run_all(&StoreBus::new(pg.db.clone()), "smb.test.events").await;
    pg.drop_db().await;
}

async fn seed_and_read(db: &Db) -> Result<(i64, i64), smb_core::Error> {
    let a = TenantId::generate();
    let b = TenantId::generate();
    for t in [&a, &b] {
        smb_core::store::testing::add_tenant(db, t, "x", "UTC").await?;
        with_tenant!(db, t, write, |tx| {
            sqlx::query("INSERT INTO products (tenant_id, source, external_id, title, updated_at, raw) VALUES ($1, 's', '1', 'p', 0, '{}')")
                .bind(t.as_str())
                .execute(&mut *tx)
                .await?;
        });
    }
    // Reading every row (no tenant filter in SQL) as tenant A.
    let seen: (i64,) = with_tenant!(db, &a, read, |tx| {
        sqlx::query_as("SELECT COUNT(*) FROM products")
            .fetch_one(&mut *tx)
            .await?
    });
    // Writing a row for B while scoped to A.
    let wrote: Result<(), smb_core::Error> = async {
        with_tenant!(db, &a, write, |tx| {
            sqlx::query("INSERT INTO products (tenant_id, source, external_id, title, updated_at, raw) VALUES ($1, 's', '2', 'p', 0, '{}')")
                .bind(b.as_str())
                .execute(&mut *tx)
                .await?;
        });
        Ok(())
    }
    .await;
    Ok((seen.0, i64::from(wrote.is_ok())))
}

#[tokio::test]
async fn postgres_row_level_security_isolates_tenants() {
    let pg = PgTestDb::create().await.unwrap();
    let (seen, wrote) = seed_and_read(&pg.db).await.unwrap();
    assert_eq!(
        seen, 1,
        "a tenant sees only its own rows, even without a WHERE"
    );
    assert_eq!(wrote, 0, "a tenant cannot write another tenant's rows");
    // No tenant set: nothing.
    if let Db::Postgres(pool) = &pg.db {
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM products")
            .fetch_one(pool)
            .await
            .unwrap();
        assert_eq!(n, 0);
    }
    pg.drop_db().await;
}

#[tokio::test]
async fn sqlite_store_accepts_the_same_statements() {
    let (db, _dir) = sqlite().await.unwrap();
    let (seen, _) = seed_and_read(&db).await.unwrap();
    // SQLite has no row-level security: isolation there is the tenant filter every query carries.
    assert_eq!(seen, 2);
    let _ = Arc::new(db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bus_contract_kafka() {
    let mut s = smb_core::kafka::KafkaSettings::new(&smb_tests::kafka());
    s.prefix = format!("t{}.", uuid::Uuid::new_v4().simple());
    s.one_message_per_batch = true; // tansu serves fetches only from batch starts
    let bus = smb_core::kafka::KafkaBus::connect(s, &["contract"])
        .await
        .unwrap();
    smb_core::bus::contract::run_all(&bus, "contract").await;
    bus.close().await;
}

/// Concurrent publishers on PostgreSQL while a consumer reads and commits: nothing is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn store_bus_on_postgres_loses_nothing_under_concurrent_publishers() {
    use smb_core::bus::{Bus, Message};
    use std::time::Duration;
    let pg = PgTestDb::create().await.unwrap();
    let bus = Arc::new(StoreBus::new(pg.db.clone()));
    let publishers: Vec<_> = (0..4)
        .map(|p| {
            let bus = bus.clone();
            tokio::spawn(async move {
                for i in 0..150 {
                    bus.publish(&[Message {
                        topic: "t".into(),
                        key: format!("p{p}"),
                        payload: format!("{p}-{i}"),
                        traceparent: None,
                    }])
                    .await
                    .unwrap();
                }
            })
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    let start = std::time::Instant::now();
    while seen.len() < 600 && start.elapsed() < Duration::from_secs(60) {
        let got = bus
            .poll("g", "t", 50, Duration::from_millis(200))
            .await
            .unwrap();
        if let Some(last) = got.last() {
            bus.commit("g", "t", last).await.unwrap();
        }
        seen.extend(got.into_iter().map(|d| d.payload));
    }
    for p in publishers {
        p.await.unwrap();
    }
    // A consumer restarting from its commits finds nothing it skipped.
    bus.rewind("g", "t").await.unwrap();
    seen.extend(
        bus.poll("g", "t", 1000, Duration::from_millis(200))
            .await
            .unwrap()
            .into_iter()
            .map(|d| d.payload),
    );
    assert_eq!(seen.len(), 600);
    pg.drop_db().await;
}

/// A bus that keeps what it is given (topic, payload), and takes its time about it (as a remote broker
/// does); with `max`, it refuses a batch holding a message over that size, every time, as a broker does.
#[derive(Default)]
struct Tally {
    seen: std::sync::Mutex<Vec<(String, String)>>,
    max: Option<usize>,
}

impl Tally {
    fn payloads(&self) -> Vec<String> {
        let seen = self.seen.lock().unwrap();
        seen.iter().map(|(_, p)| p.clone()).collect()
    }
}

#[tonic::async_trait]
impl smb_core::bus::Bus for Tally {
    async fn publish(&self, messages: &[smb_core::bus::Message]) -> smb_core::error::Result<()> {
        if let Some(max) = self.max
            && messages.iter().any(|m| m.payload.len() > max)
        {
            return Err(smb_core::Error::unavailable(
                "Broker: Message size too large",
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let mut seen = self.seen.lock().unwrap();
        seen.extend(
            messages
                .iter()
                .map(|m| (m.topic.clone(), m.payload.clone())),
        );
        Ok(())
    }
    async fn poll(
        &self,
        _: &str,
        _: &str,
        _: usize,
        _: std::time::Duration,
    ) -> smb_core::error::Result<Vec<smb_core::bus::Delivery>> {
        Ok(Vec::new())
    }
    async fn commit(
        &self,
        _: &str,
        _: &str,
        _: &smb_core::bus::Delivery,
    ) -> smb_core::error::Result<()> {
        Ok(())
    }
    async fn rewind(&self, _: &str, _: &str) -> smb_core::error::Result<()> {
        Ok(())
    }
    async fn lag(&self) -> smb_core::error::Result<Vec<smb_core::bus::Lag>> {
        Ok(Vec::new())
    }
}

/// Helm runs two workers replicas, each with an outbox relay: on PostgreSQL every row still goes to the bus
/// once, and in id order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relays_on_postgres_publish_every_outbox_row_once_and_in_order() {
    use smb_core::outbox::Relay;
    let pg = PgTestDb::create().await.unwrap();
    const ROWS: usize = 1_000;
    async {
        smb_core::with_global!(&pg.db, write, |tx| {
            for i in 0..ROWS {
                sqlx::query("INSERT INTO outbox (topic, msg_key, payload, created_at) VALUES ('t', 'k', $1, 0)")
                    .bind(format!("{i:05}"))
                    .execute(&mut *tx)
                    .await?;
            }
        });
        Ok::<_, smb_core::Error>(())
    }
    .await
    .unwrap();
    let bus = Arc::new(Tally::default());
    let relay = |db: Db, bus: Arc<Tally>| async move {
        let r = Relay::new(db.clone(), bus, Arc::new(tokio::sync::Notify::new()));
        loop {
            if r.drain_once().await.unwrap() == 0 {
                let (left,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM outbox")
                    .fetch_one(match &db {
                        Db::Postgres(p) => p,
                        Db::Sqlite(_) => unreachable!(),
                    })
                    .await
                    .unwrap();
                if left == 0 {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
    };
    let a = tokio::spawn(relay(pg.db.clone(), bus.clone()));
    let b = tokio::spawn(relay(pg.db.clone(), bus.clone()));
    a.await.unwrap();
    b.await.unwrap();
    let seen = bus.payloads();
    let expected: Vec<String> = (0..ROWS).map(|i| format!("{i:05}")).collect();
    assert_eq!(seen.len(), ROWS, "every row published once");
    assert_eq!(seen, expected, "in id order");
    pg.drop_db().await;
}

/// A message larger than the bus takes does not hold back the outbox (every tenant's events behind it): a
/// dead-letter reference goes in its place, and the rows after it are published, in order.
#[tokio::test]
async fn an_oversized_outbox_row_does_not_wedge_the_relay() {
    use smb_core::outbox::Relay;
    let (db, _dir) = sqlite().await.unwrap();
    async {
        smb_core::with_global!(&db, write, |tx| {
            for p in ["first".to_string(), "x".repeat(5_000), "last".to_string()] {
                sqlx::query("INSERT INTO outbox (topic, msg_key, payload, created_at) VALUES ('t', 'k', $1, 0)")
                    .bind(p)
                    .execute(&mut *tx)
                    .await?;
            }
        });
        Ok::<_, smb_core::Error>(())
    }
    .await
    .unwrap();
    let bus = Arc::new(Tally {
        max: Some(1_000),
        ..Tally::default()
    });
    let relay = Relay::new(
        db.clone(),
        bus.clone(),
        Arc::new(tokio::sync::Notify::new()),
    )
    .with_max_message_bytes(1_000);
    for _ in 0..3 {
        if relay.drain_once().await.unwrap_or(0) == 0 {
            break;
        }
    }
    let seen = bus.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0], ("t".into(), "first".into()));
    assert_eq!(seen[1].0, "smb.deadletter");
    let reference: serde_json::Value = serde_json::from_str(&seen[1].1).unwrap();
    assert_eq!(reference["kind"], "oversized_message");
    assert_eq!(reference["topic"], "t");
    assert_eq!(reference["bytes"], 5_001);
    assert_eq!(seen[2], ("t".into(), "last".into()));
}

/// The embedded log keeps messages for `bus.retention_hours`, consumed or not, like a broker; consumers
/// read on from what is left.
async fn log_retention(db: Db) {
    use smb_core::bus::Bus;
    let bus = StoreBus::new(db.clone());
    let msg = |p: &str| smb_core::bus::Message {
        topic: "t".into(),
        key: "k".into(),
        payload: p.into(),
        traceparent: None,
    };
    bus.publish(&[msg("old 1"), msg("old 2")]).await.unwrap();
    let day_ago = smb_core::store::now_ms() - 25 * 3600 * 1000;
    async {
        smb_core::with_global!(&db, write, |tx| {
            sqlx::query("UPDATE bus_log SET created_at = $1")
                .bind(day_ago)
                .execute(&mut *tx)
                .await?;
        });
        Ok::<_, smb_core::Error>(())
    }
    .await
    .unwrap();
    bus.publish(&[msg("new")]).await.unwrap();
    let day = std::time::Duration::from_secs(24 * 3600);
    assert_eq!(bus.prune(day).await.unwrap(), 2);
    assert_eq!(bus.prune(day).await.unwrap(), 0);
    let got = bus
        .poll("g", "t", 10, std::time::Duration::from_millis(100))
        .await
        .unwrap();
    let payloads: Vec<&str> = got.iter().map(|d| d.payload.as_str()).collect();
    assert_eq!(payloads, vec!["new"]);
}

#[tokio::test]
async fn embedded_log_is_pruned_by_retention_on_sqlite() {
    let (db, _dir) = sqlite().await.unwrap();
    log_retention(db).await;
}

#[tokio::test]
async fn embedded_log_is_pruned_by_retention_on_postgres() {
    let pg = PgTestDb::create().await.unwrap();
    log_retention(pg.db.clone()).await;
    pg.drop_db().await;
}

/// SQLite's write-ahead log stays bounded under a steady writer: past the limit the background checkpoint
/// copies the rest and truncates it (passive checkpoints alone let a 1M-order load grow it to 52 GB
/// beside a 4.7 GB database).
#[tokio::test]
async fn sqlite_write_ahead_log_stays_bounded_under_a_steady_writer() {
    let (db, dir) = sqlite().await.unwrap();
    let Db::Sqlite(pool) = &db else {
        unreachable!("testing::sqlite opens SQLite")
    };
    sqlx::query("CREATE TABLE scratch (x BLOB)")
        .execute(pool)
        .await
        .unwrap();
    let wal = dir.path().join("smb.db-wal");
    let limit = Db::WAL_LIMIT_BYTES as u64;
    // Three times the limit, one 1 MiB row per transaction, back to back.
    for _ in 0..(3 * limit / (1 << 20)) {
        sqlx::query("INSERT INTO scratch VALUES (randomblob(1048576))")
            .execute(pool)
            .await
            .unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let size = std::fs::metadata(&wal).map_or(0, |m| m.len());
        if size <= limit {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the write-ahead log is {size} bytes, past the limit of {limit}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    db.close().await;
}
