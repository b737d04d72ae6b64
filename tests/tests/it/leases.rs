//! Sync leases with fencing, on SQLite and PostgreSQL: a replica whose lease moved on (it paused, or its
//! retries outlasted the lease) can write no page, cursor or end marker for the run; an old run's end
//! marker cannot free a newer run's lease; concurrent triggers queue one run.

use std::sync::Arc;

use smb_connectors::store::{self, Lease};
use smb_core::bus::Message;
use smb_core::ids::TenantId;
use smb_core::outbox::Outbox;
use smb_core::store::Db;
use smb_core::store::testing::{PgTestDb, sqlite};
use smb_core::{with_global, with_tenant};

async fn seed(db: &Db) -> (TenantId, String) {
    let tenant = TenantId::generate();
    let connector = uuid::Uuid::new_v4().simple().to_string();
    async {
        smb_core::store::testing::add_tenant(db, &tenant, "x", "UTC").await?;
        with_global!(db, write, |tx| {
            sqlx::query("INSERT INTO connector_schedule (connector_id, tenant_id, next_run_at) VALUES ($1, $2, 0)")
                .bind(&connector)
                .bind(tenant.as_str())
                .execute(&mut *tx)
                .await?;
        });
        Ok::<_, smb_core::Error>(())
    }
    .await
    .unwrap();
    (tenant, connector)
}

async fn counts(db: &Db, tenant: &TenantId) -> (i64, i64) {
    async {
        let outbox: (i64,) = with_global!(db, read, |tx| {
            sqlx::query_as("SELECT COUNT(*) FROM outbox")
                .fetch_one(&mut *tx)
                .await?
        });
        let cursors: (i64,) = with_tenant!(db, tenant, read, |tx| {
            sqlx::query_as("SELECT COUNT(*) FROM sync_cursors WHERE tenant_id = $1")
                .bind(tenant.as_str())
                .fetch_one(&mut *tx)
                .await?
        });
        Ok::<_, smb_core::Error>((outbox.0, cursors.0))
    }
    .await
    .unwrap()
}

fn page() -> Vec<Message> {
    vec![Message {
        topic: "smb.connector.records".into(),
        key: "k".into(),
        payload: "{}".into(),
        traceparent: None,
    }]
}

async fn fenced(db: &Db) {
    let outbox = Outbox::relayed(Arc::new(tokio::sync::Notify::new()));
    let (tenant, connector) = seed(db).await;
    let a: Lease = store::acquire_lease(db, &connector, "a", 1_000, 2_000)
        .await
        .unwrap()
        .expect("a free lease is taken");
    assert!(
        store::acquire_lease(db, &connector, "b", 1_500, 2_500)
            .await
            .unwrap()
            .is_none(),
        "a live lease is not taken"
    );
    // A's lease lapses (a long pause, retries that outlasted it); B takes the connector over.
    let b = store::acquire_lease(db, &connector, "b", 3_000, 9_000)
        .await
        .unwrap()
        .expect("a lapsed lease is taken");
    assert!(b.epoch > a.epoch);

    // A wakes up and goes on: nothing it writes lands.
    let e = store::checkpoint(
        db,
        &tenant,
        &a,
        10_000,
        "orders",
        "{}",
        &outbox,
        &page(),
        3_100,
    )
    .await
    .unwrap_err();
    assert_eq!(e.code, smb_core::ErrorCode::FailedPrecondition, "{e:?}");
    assert!(
        store::enqueue_end(db, &a, 10_000, &outbox, &page(), 3_100)
            .await
            .is_err()
    );
    assert!(!store::renew_lease(db, &a, 10_000).await.unwrap());
    assert_eq!(
        counts(db, &tenant).await,
        (0, 0),
        "no page, no cursor, no end"
    );

    // B's writes land, and renew B's lease.
    store::checkpoint(
        db,
        &tenant,
        &b,
        12_000,
        "orders",
        "{}",
        &outbox,
        &page(),
        3_200,
    )
    .await
    .unwrap();
    store::enqueue_end(db, &b, 12_000, &outbox, &page(), 3_300)
        .await
        .unwrap();
    assert_eq!(counts(db, &tenant).await, (2, 1));
    assert!(
        store::acquire_lease(db, &connector, "a", 10_000, 20_000)
            .await
            .unwrap()
            .is_none(),
        "B's writes renewed its lease"
    );
}

#[tokio::test]
async fn a_replica_that_lost_its_lease_writes_nothing_sqlite() {
    let (db, _dir) = sqlite().await.unwrap();
    fenced(&db).await;
}

#[tokio::test]
async fn a_replica_that_lost_its_lease_writes_nothing_postgres() {
    let pg = PgTestDb::create().await.unwrap();
    fenced(&pg.db).await;
    pg.drop_db().await;
}

/// Fifty triggers of one connector at once, on PostgreSQL under READ COMMITTED, five times over: one run
/// is queued each time and every trigger gets its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_triggers_queue_one_run() {
    let pg = PgTestDb::create().await.unwrap();
    for _ in 0..5 {
        let (tenant, connector) = seed(&pg.db).await;
        let start = Arc::new(tokio::sync::Barrier::new(50));
        let mut tasks = Vec::new();
        for i in 0..50 {
            let (db, tenant, connector, start) = (
                pg.db.clone(),
                tenant.clone(),
                connector.clone(),
                start.clone(),
            );
            tasks.push(tokio::spawn(async move {
                start.wait().await;
                store::queue_run(
                    &db,
                    &tenant,
                    &connector,
                    &format!("{connector}-{i}"),
                    "manual",
                    i,
                )
                .await
                .unwrap()
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.push(t.await.unwrap());
        }
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 1, "{ids:?}");
        let active: (i64,) = async {
            Ok::<_, smb_core::Error>(with_tenant!(&pg.db, &tenant, read, |tx| {
                sqlx::query_as("SELECT COUNT(*) FROM sync_runs WHERE tenant_id = $1 AND status IN ('queued', 'running')")
                    .bind(tenant.as_str())
                    .fetch_one(&mut *tx)
                    .await?
            }))
        }
        .await
        .unwrap();
        assert_eq!(active.0, 1);
    }
    pg.drop_db().await;
}

/// What a run has written so far: its cursors and the pages in the embedded bus log.
async fn written(db: &Db) -> (Vec<(String, String)>, i64) {
    async {
        let cursors: Vec<(String, String)> = with_global!(db, read, |tx| {
            sqlx::query_as("SELECT stream, cursor FROM sync_cursors ORDER BY stream")
                .fetch_all(&mut *tx)
                .await?
        });
        let pages: (i64,) = with_global!(db, read, |tx| {
            sqlx::query_as("SELECT COUNT(*) FROM bus_log WHERE topic = 'smb.connector.records'")
                .fetch_one(&mut *tx)
                .await?
        });
        Ok::<_, smb_core::Error>((cursors, pages.0))
    }
    .await
    .unwrap()
}

/// A run held at its source while another replica takes its lease over: the heartbeat notices, the run
/// stops, and when the source answers again nothing more is written for it (the new holder goes on).
#[tokio::test]
async fn a_run_whose_lease_is_taken_over_stops_and_writes_nothing_more() {
    use smb_tests::fake::{Dataset, FakeSaas, Sizes};
    use smb_tests::sync::{connect_shopify, trigger};
    use std::time::Duration;
    let fake = FakeSaas::start(Dataset::generate(Sizes {
        orders: 600,
        customers: 20,
        products: 3,
        charges: 0,
        stripe_customers: 0,
    }))
    .await;
    fake.hold_after(2).await;
    let app = smb_tests::App::start(&[("SMB_CONNECTORS__LEASE_SECS", "3")]);
    let owner = app.owner("UTC").await;
    let c = connect_shopify(&app, &owner, &fake).await;
    let run = trigger(&app, &owner, &c).await;
    assert!(
        fake.wait_held(Duration::from_secs(30)).await,
        "no page held"
    );
    let db = Db::open_sqlite(&app.dir.join("smb.db"), 2).await.unwrap();
    async {
        with_global!(&db, write, |tx| {
            sqlx::query(
                "UPDATE connector_schedule SET lease_owner = 'another-replica', lease_until = $2, \
                 lease_epoch = lease_epoch + 1 WHERE connector_id = $1",
            )
            .bind(&c)
            .bind(smb_core::store::now_ms() + 600_000)
            .execute(&mut *tx)
            .await?;
        });
        Ok::<_, smb_core::Error>(())
    }
    .await
    .unwrap();
    let before = written(&db).await;
    // A beat is a third of the lease (1 s); then the source answers again.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    fake.release().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        written(&db).await,
        before,
        "the old holder wrote nothing more"
    );
    let (s, b, _) = app
        .call(
            "GET",
            &format!("/v1/connectors/{c}/syncs/{run}"),
            None,
            Some(&owner.token),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        b["status"], "running",
        "the run belongs to the new holder: {b}"
    );
}
