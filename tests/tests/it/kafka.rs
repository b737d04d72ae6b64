//! The pipeline on Kafka (tansu): nothing lost and nothing twice across a broker restart, a worker that dies
//! between its database commit and its offset commit, and a poison message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use smb_connectors::messages::RawMessage;
use smb_core::bus::{Bus, DynBus, Message, topics};
use smb_core::cache::MemoryCache;
use smb_core::ids::TenantId;
use smb_core::kafka::{KafkaBus, KafkaSettings};
use smb_core::store::Db;
use smb_core::store::testing::{TempDir, sqlite};
use smb_core::with_global;
use smb_tests::App;
use smb_tests::broker::Broker;
use smb_tests::fake::{Dataset, FakeSaas, Sizes};
use smb_tests::sync::{canonical, connect_shopify, connect_stripe, sync, trigger, wait};
use smb_workers::Worker;
use tokio::sync::Notify;

fn settings(brokers: &str) -> KafkaSettings {
    let mut s = KafkaSettings::new(brokers);
    s.prefix = format!("t{}.", uuid::Uuid::new_v4().simple());
    s.one_message_per_batch = true;
    s
}

const SIZES: Sizes = Sizes {
    orders: 1_500,
    customers: 200,
    products: 12,
    charges: 600,
    stripe_customers: 80,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_killed_mid_sync_loses_and_duplicates_nothing() {
    let data = Dataset::generate(SIZES);
    let fake = FakeSaas::start(data.clone()).await;

    // The reference: the same sources synced on the embedded bus.
    let reference = {
        let app = App::start(&[]);
        let owner = app.owner("America/New_York").await;
        for c in [
            connect_shopify(&app, &owner, &fake).await,
            connect_stripe(&app, &owner, &fake).await,
        ] {
            assert_eq!(sync(&app, &owner, &c).await["status"], "succeeded");
        }
        let db = Db::open_sqlite(&app.dir.join("smb.db"), 2).await.unwrap();
        canonical(&db, &owner.tenant_id).await
    };
    assert_eq!(reference.orders, SIZES.orders + SIZES.charges);
    let _ = fake.take_log().await;

    let dir = TempDir::new().unwrap();
    let mut broker = Broker::start(Some(dir.path()));
    let prefix = format!("t{}.", uuid::Uuid::new_v4().simple());
    let addr = broker.addr();
    let app = App::start(&[
        ("SMB_BUS__KIND", "kafka"),
        ("SMB_BUS__BROKERS", &addr),
        ("SMB_BUS__TOPIC_PREFIX", &prefix),
        ("SMB_BUS__ONE_MESSAGE_PER_BATCH", "true"),
        ("SMB_BUS__RETRY_BACKOFF_MS", "100"),
    ]);
    let owner = app.owner("America/New_York").await;
    let shop = connect_shopify(&app, &owner, &fake).await;
    let stripe = connect_stripe(&app, &owner, &fake).await;

    // Hold the sources after a few pages, kill the broker, let the syncs run on into the outbox.
    fake.hold_after(4).await;
    let a = trigger(&app, &owner, &shop).await;
    let b = trigger(&app, &owner, &stripe).await;
    assert!(fake.wait_held(Duration::from_secs(60)).await);
    broker.kill();
    fake.release().await;
    // With the broker down the platform keeps fetching: the outbox grows.
    let db = Db::open_sqlite(&app.dir.join("smb.db"), 2).await.unwrap();
    let start = Instant::now();
    loop {
        let (n,): (i64,) = async {
            Ok::<_, smb_core::Error>(with_global!(&db, read, |tx| {
                sqlx::query_as("SELECT COUNT(*) FROM outbox")
                    .fetch_one(&mut *tx)
                    .await?
            }))
        }
        .await
        .unwrap();
        if n >= 10 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "outbox did not grow while the broker was down ({n})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    broker.restart();

    for (c, id) in [(&shop, &a), (&stripe, &b)] {
        let run = wait(&app, &owner, c, id, Duration::from_secs(180)).await;
        assert_eq!(run["status"], "succeeded", "{run}");
    }
    let got = canonical(&db, &owner.tenant_id).await;
    assert_eq!(got, reference);
}

async fn tenant(db: &Db) -> TenantId {
    let t = TenantId::generate();
    add_tenant(db, &t).await.unwrap();
    t
}

async fn add_tenant(db: &Db, t: &TenantId) -> Result<(), smb_core::Error> {
    smb_core::store::testing::add_tenant(db, t, "T", "UTC").await?;
    with_global!(db, write, |tx| {
        sqlx::query("INSERT INTO sync_runs (id, tenant_id, connector_id, status, trigger_kind, created_at) VALUES ('run1', $1, 'c1', 'running', 'manual', 0)")
            .bind(t.as_str())
            .execute(&mut *tx)
            .await?;
    });
    Ok(())
}

fn page(t: &TenantId, ids: std::ops::Range<usize>) -> Message {
    let data = Dataset::generate(Sizes {
        orders: ids.end,
        customers: 1,
        products: 1,
        charges: 0,
        stripe_customers: 0,
    });
    let msg = RawMessage::Page {
        tenant_id: t.to_string(),
        connector_id: "c1".into(),
        sync_id: "run1".into(),
        source: "shopify".into(),
        stream: "orders".into(),
        records: data.orders[ids].to_vec(),
    };
    Message {
        topic: topics::RAW_RECORDS.into(),
        key: "c1".into(),
        payload: serde_json::to_string(&msg).unwrap(),
        traceparent: None,
    }
}

async fn synced(db: &Db, t: &TenantId) -> i64 {
    let (n,): (i64,) = async {
        Ok::<_, smb_core::Error>(with_global!(db, read, |tx| {
            sqlx::query_as("SELECT records_synced FROM sync_runs WHERE tenant_id = $1")
                .bind(t.as_str())
                .fetch_one(&mut *tx)
                .await?
        }))
    }
    .await
    .unwrap();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_dying_between_db_commit_and_offset_commit_changes_nothing() {
    let (db, _dir) = sqlite().await.unwrap();
    let t = tenant(&db).await;
    let s = settings(&smb_tests::kafka());
    let bus = KafkaBus::connect(s.clone(), &[]).await.unwrap();
    bus.publish(&[page(&t, 0..100)]).await.unwrap();
    let worker = |bus: DynBus| {
        Worker::new(
            db.clone(),
            bus,
            Arc::new(MemoryCache::new("")),
            900,
            smb_core::outbox::Outbox::relayed(Arc::new(Notify::new())),
        )
    };

    // The first worker applies the page (its transaction commits) and dies before committing the offset.
    let bus: DynBus = Arc::new(bus);
    let first = wait_poll(&*bus).await;
    worker(bus.clone()).handle(&first).await.unwrap();
    let after_first = canonical(&db, t.as_str()).await;
    assert_eq!(after_first.orders, 100);
    assert_eq!(synced(&db, &t).await, 100);
    drop(bus); // leaves the group without committing

    // Its replacement gets the same message again; applying it changes nothing.
    let bus: DynBus = Arc::new(KafkaBus::connect(s, &[]).await.unwrap());
    let again = wait_poll(&*bus).await;
    assert_eq!(
        (again.partition, again.offset),
        (first.partition, first.offset)
    );
    worker(bus.clone()).handle(&again).await.unwrap();
    bus.commit(smb_workers::pipeline::GROUP, topics::RAW_RECORDS, &again)
        .await
        .unwrap();
    assert_eq!(canonical(&db, t.as_str()).await, after_first);
    assert_eq!(
        synced(&db, &t).await,
        100,
        "the run's counters did not count the page twice"
    );
}

async fn wait_poll(bus: &dyn Bus) -> smb_core::bus::Delivery {
    let start = Instant::now();
    loop {
        let got = bus
            .poll(
                smb_workers::pipeline::GROUP,
                topics::RAW_RECORDS,
                1,
                Duration::from_secs(2),
            )
            .await
            .unwrap();
        if let Some(d) = got.into_iter().next() {
            return d;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no message");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_message_is_dead_lettered_and_the_partition_moves_on() {
    let (db, _dir) = sqlite().await.unwrap();
    let t = tenant(&db).await;
    let s = settings(&smb_tests::kafka());
    let bus: DynBus = Arc::new(KafkaBus::connect(s.clone(), &[]).await.unwrap());
    // Same key: the poison sits in front of a good page on the same partition.
    bus.publish(&[
        Message {
            topic: topics::RAW_RECORDS.into(),
            key: "c1".into(),
            payload: "{not json".into(),
            traceparent: None,
        },
        Message {
            topic: topics::RAW_RECORDS.into(),
            key: "c1".into(),
            payload: json!({"kind": "page", "tenant_id": "not-a-tenant", "connector_id": "c1", "sync_id": "x",
                "source": "shopify", "stream": "orders", "records": []})
            .to_string(),
            traceparent: None,
        },
        page(&t, 0..10),
    ])
    .await
    .unwrap();
    let worker = Worker::new(
        db.clone(),
        bus.clone(),
        Arc::new(MemoryCache::new("")),
        900,
        smb_core::outbox::Outbox::relayed(Arc::new(Notify::new())),
    )
    .with_retries(3, Duration::from_millis(50));
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(worker.run(shutdown.clone()));
    let start = Instant::now();
    while canonical(&db, t.as_str()).await.orders < 10 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the good page behind the poison was never applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;

    // Both bad messages are on the dead-letter topic, with their error.
    let mut dead = Vec::new();
    let start = Instant::now();
    while dead.len() < 2 && start.elapsed() < Duration::from_secs(30) {
        dead.extend(
            bus.poll("inspect", topics::DEAD_LETTER, 10, Duration::from_secs(2))
                .await
                .unwrap(),
        );
    }
    assert_eq!(dead.len(), 2, "{dead:?}");
    let first: serde_json::Value = serde_json::from_str(&dead[0].payload).unwrap();
    assert_eq!(first["payload"], "{not json");
    assert!(
        first["error"].as_str().unwrap().contains("undecodable"),
        "{first}"
    );
    let second: serde_json::Value = serde_json::from_str(&dead[1].payload).unwrap();
    assert!(!second["error"].as_str().unwrap().is_empty());
}
