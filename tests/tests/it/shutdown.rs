//! SIGTERM stops the program promptly: idle within seconds, busy within `server.shutdown_grace_secs`, both
//! for `smb up` and for `smb serve workers` of the split deployment.

use std::process::Stdio;
use std::time::Duration;

use smb_core::store::testing::PgTestDb;
use smb_tests::fake::{Dataset, FakeSaas, Sizes};
use smb_tests::sync::{connect_shopify, trigger};
use smb_tests::{App, terminate};

#[tokio::test]
async fn smb_up_stops_promptly_when_idle_and_within_the_grace_when_busy() {
    let mut app = App::start(&[]);
    let _ = app.owner("UTC").await;
    let took = app.terminate();
    assert!(took < Duration::from_secs(5), "idle: {took:?}");

    // Busy: a sync is waiting on a source that holds its pages.
    let fake = FakeSaas::start(Dataset::generate(Sizes {
        orders: 600,
        customers: 20,
        products: 3,
        charges: 0,
        stripe_customers: 0,
    }))
    .await;
    fake.hold_after(1).await;
    let mut app = App::start(&[("SMB_SERVER__SHUTDOWN_GRACE_SECS", "3")]);
    let owner = app.owner("UTC").await;
    let c = connect_shopify(&app, &owner, &fake).await;
    let _ = trigger(&app, &owner, &c).await;
    assert!(
        fake.wait_held(Duration::from_secs(20)).await,
        "the sync reached the held page"
    );
    let took = app.terminate();
    assert!(took < Duration::from_secs(8), "busy: {took:?} (grace 3 s)");
    fake.release().await;
}

#[tokio::test]
async fn smb_serve_workers_stops_within_seconds_when_idle() {
    let pg = PgTestDb::create().await.unwrap();
    let dir = std::env::temp_dir().join(format!("smb-workers-{}", uuid::Uuid::new_v4().simple()));
    let mut child = smb_tests::command(&[])
        .args(["serve", "workers"])
        .env("SMB_DATABASE__URL", &pg.app_url)
        .env("SMB_DATABASE__MIGRATE_URL", &pg.owner_url)
        .env("SMB_SERVER__DATA_DIR", &dir)
        // Its gRPC health, for probes.
        .env(
            "SMB_SERVER__ADDR",
            format!("127.0.0.1:{}", smb_tests::free_port()),
        )
        .env("SMB_SEARCH__INDEX", "off")
        .env(
            "SMB_CONNECTORS__ENCRYPTION_KEY",
            smb_tests::split::ENCRYPTION_KEY,
        )
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Let it start its loops (migrations, consumers, relay, schedulers).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the workers are running"
    );
    let took = terminate(&mut child);
    assert!(took < Duration::from_secs(10), "idle workers: {took:?}");
    let _ = std::fs::remove_dir_all(&dir);
    pg.drop_db().await;
}
