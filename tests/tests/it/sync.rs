//! Sync end to end: the real `smb` binary syncing from our own fake Shopify and Stripe, on SQLite and on
//! PostgreSQL, checked against the canonical tables.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use smb_core::store::Db;
use smb_core::store::testing::PgTestDb;
use smb_tests::fake::{Dataset, FakeSaas, Sizes, epoch, stripe_event, stripe_event_at, ts};
use smb_tests::sync::{Canonical, canonical, connect_shopify, connect_stripe, sync, trigger, wait};
use smb_tests::{App, Owner};

const SIZES: Sizes = Sizes {
    orders: 1_200,
    customers: 300,
    products: 30,
    charges: 450,
    stripe_customers: 120,
};

/// Where the program under test keeps its data, and a handle the test reads it through.
enum Store {
    Sqlite,
    Postgres(PgTestDb),
}

async fn start(store: &Store, extra: &[(&str, &str)]) -> (App, Db) {
    let mut env: Vec<(&str, &str)> = extra.to_vec();
    let (url, migrate);
    if let Store::Postgres(pg) = store {
        url = pg.app_url.clone();
        migrate = pg.owner_url.clone();
        env.push(("SMB_DATABASE__URL", &url));
        env.push(("SMB_DATABASE__MIGRATE_URL", &migrate));
    }
    let app = App::start(&env);
    let db = match store {
        Store::Sqlite => Db::open_sqlite(&app.dir.join("smb.db"), 2).await.unwrap(),
        Store::Postgres(pg) => pg.db.clone(),
    };
    (app, db)
}

fn expected_orders(d: &Dataset) -> usize {
    d.orders.len() + d.charges.len()
}

fn expected_refunds(d: &Dataset) -> usize {
    let shopify: usize = d
        .orders
        .iter()
        .map(|o| o["refunds"].as_array().map_or(0, Vec::len))
        .sum();
    let stripe = d
        .charges
        .iter()
        .filter(|c| c["status"] == "succeeded" && c["amount_refunded"].as_i64() > Some(0))
        .count();
    shopify + stripe
}

async fn orders_all_time(app: &App, owner: &Owner) -> i64 {
    let (s, b, _) = app
        .call(
            "POST",
            "/v1/ai/query",
            Some(json!({"query": "how many orders all time"})),
            Some(&owner.token),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    b["result"]["value"]
        .as_f64()
        .unwrap_or_else(|| panic!("no count in {b}")) as i64
}

async fn full_scenario(store: Store) {
    let mut data = Dataset::generate(SIZES);
    data.log_stripe_events();
    let fake = FakeSaas::start(data.clone()).await;
    let (app, db) = start(&store, &[]).await;
    let owner = app.owner("America/New_York").await;
    let shop = connect_shopify(&app, &owner, &fake).await;
    let stripe = connect_stripe(&app, &owner, &fake).await;

    // First sync, with a 429 on the way: Retry-After is honoured and the run still succeeds.
    fake.fail_next(1, 429, Some(1)).await;
    let started = Instant::now();
    let run = sync(&app, &owner, &shop).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured"
    );
    assert_eq!(run["records_synced"], SIZES.shopify_records() as i64);
    assert_eq!(run["records_failed"], 0);
    let run = sync(&app, &owner, &stripe).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["records_synced"], SIZES.stripe_records() as i64);

    let first = canonical(&db, &owner.tenant_id).await;
    assert_eq!(first.orders, expected_orders(&data));
    assert_eq!(first.lines, SIZES.orders);
    assert_eq!(first.refunds, expected_refunds(&data));
    assert_eq!(first.customers, SIZES.customers + SIZES.stripe_customers);
    assert_eq!(first.products, SIZES.products);
    // Every page was fetched once, each stream from its first page.
    let log = fake.take_log().await;
    assert_eq!(
        log.iter().filter(|u| u.contains("/orders.json")).count(),
        SIZES.orders.div_ceil(250)
    );
    assert_eq!(
        log.iter().filter(|u| u.starts_with("/v1/charges")).count(),
        SIZES.charges.div_ceil(100)
    );
    // The first run reads only where Stripe's event log stands.
    let events: Vec<&String> = log.iter().filter(|u| u.starts_with("/v1/events")).collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].contains("limit=1&"), "{events:?}");

    // Syncing again changes nothing, and fetches only from the checkpoints.
    for c in [&shop, &stripe] {
        let run = sync(&app, &owner, c).await;
        assert_eq!(run["status"], "succeeded", "{run}");
    }
    assert_eq!(canonical(&db, &owner.tenant_id).await, first);
    let log = fake.take_log().await;
    assert!(
        log.iter()
            .filter(|u| u.contains("/orders.json"))
            .all(|u| u.contains("updated_at_min=")),
        "{log:?}"
    );
    assert!(
        log.iter()
            .filter(|u| u.starts_with("/v1/charges") || u.starts_with("/v1/events"))
            .all(|u| u.contains("created%5Bgte%5D=")),
        "{log:?}"
    );
    assert_eq!(log.len(), 6, "one page per stream: {log:?}");

    let before = orders_all_time(&app, &owner).await;
    // A refund arrives later on an old order; a new order and a new charge appear.
    let later = ts(epoch() + chrono::Duration::days(400));
    // The oldest charge that succeeded unrefunded.
    let old_charge: Value = data
        .charges
        .iter()
        .rev()
        .find(|c| c["status"] == "succeeded" && c["amount_refunded"] == 0)
        .unwrap()
        .clone();
    fake.edit(|d| {
        let o = &mut d.orders[3];
        o["updated_at"] = json!(later);
        o["refunds"] = json!([{"id": 1, "order_id": o["id"], "created_at": later,
            "transactions": [{"kind": "refund", "status": "success", "amount": "5.00"}]}]);
        let mut new = d.orders[0].clone();
        new["id"] = json!(5_999_000_000_000u64);
        new["line_items"][0]["id"] = json!(5_999_000_000_001u64);
        new["updated_at"] = json!(later);
        d.orders.push(new);
        // A customer's first order is cancelled, and another's moves to a new customer: their first-order
        // days change (checked by `canonical`).
        d.orders[1]["cancelled_at"] = json!(later);
        d.orders[1]["updated_at"] = json!(later);
        d.orders[2]["email"] = json!("moved@example.com");
        d.orders[2]["customer"]["email"] = json!("moved@example.com");
        d.orders[2]["updated_at"] = json!(later);
        let mut ch = d
            .charges
            .iter()
            .find(|c| c["status"] == "succeeded")
            .unwrap()
            .clone();
        ch["id"] = json!("ch_new");
        ch["created"] = json!(epoch().timestamp() + 400 * 86_400);
        let new_charge = stripe_event("charge.succeeded", &ch);
        d.charges.push(ch);
        // Half of an old charge is refunded: its listing by `created` never shows it again; only the
        // event log does.
        let old = d
            .charges
            .iter_mut()
            .find(|c| c["id"] == old_charge["id"])
            .unwrap();
        old["amount_refunded"] = json!(old["amount"].as_i64().unwrap() / 2);
        let refunded = stripe_event_at("charge.refunded", old, epoch().timestamp() + 400 * 86_400);
        let events = d.stripe_events.as_mut().unwrap();
        events.push(new_charge);
        events.push(refunded);
    })
    .await;

    for c in [&shop, &stripe] {
        let run = sync(&app, &owner, c).await;
        assert_eq!(run["status"], "succeeded", "{run}");
        assert!(run["records_synced"].as_i64().unwrap() <= 8, "{run}");
    }
    let after = canonical(&db, &owner.tenant_id).await;
    assert_eq!(after.orders, first.orders + 2);
    assert_eq!(after.refunds, first.refunds + 2);
    assert_eq!(after.lines, first.lines + 1);
    let refunded = |source: &'static str, id: String| {
        let (db, tenant) = (db.clone(), owner.tenant_id.clone());
        async move {
            let t = tenant.parse().unwrap();
            let r: Result<Vec<(i64,)>, smb_core::Error> = async {
                Ok(smb_core::with_tenant!(&db, &t, read, |tx| {
                    sqlx::query_as("SELECT refunded_minor FROM orders WHERE tenant_id = $1 AND source = $2 AND external_id = $3")
                        .bind(&tenant)
                        .bind(source)
                        .bind(&id)
                        .fetch_all(&mut *tx)
                        .await?
                }))
            }
            .await;
            r.unwrap()
        }
    };
    assert_eq!(
        refunded("shopify", data.orders[3]["id"].to_string()).await,
        vec![(500,)]
    );
    let charge_refund = refunded("stripe", old_charge["id"].as_str().unwrap().to_string()).await;
    assert_eq!(
        charge_refund,
        vec![(old_charge["amount"].as_i64().unwrap() / 2,)],
        "a refund on an old charge is seen by polling Stripe's event log"
    );
    // The answer reflects the new data at once: the sync invalidated the cached answer (two new orders,
    // one cancelled).
    assert_eq!(orders_all_time(&app, &owner).await, before + 1);
    if let Store::Postgres(pg) = store {
        drop(app);
        pg.drop_db().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_is_complete_idempotent_and_incremental_on_sqlite() {
    full_scenario(Store::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_is_complete_idempotent_and_incremental_on_postgres() {
    full_scenario(Store::Postgres(PgTestDb::create().await.unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_failures_are_retried_or_reported() {
    let fake = FakeSaas::start(Dataset::generate(Sizes {
        orders: 300,
        customers: 20,
        products: 5,
        charges: 0,
        stripe_customers: 0,
    }))
    .await;
    let (app, db) = start(&Store::Sqlite, &[("SMB_CONNECTORS__MAX_RETRIES", "3")]).await;
    let owner = app.owner("UTC").await;

    // Bad credentials and an unreachable host are refused at creation, with what to do.
    let (s, b, _) = app
        .call("POST", "/v1/connectors", Some(json!({"type": "shopify", "config": {"shop_url": fake.url(), "access_token": "wrong"}})), Some(&owner.token))
        .await;
    assert_eq!(s, 422, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("credentials"),
        "{b}"
    );
    let (s, b, _) = app
        .call("POST", "/v1/connectors", Some(json!({"type": "stripe", "config": {"api_base": fake.url(), "secret_key": "sk_wrong"}})), Some(&owner.token))
        .await;
    assert_eq!(s, 422, "{b}");
    let (s, b, _) = app
        .call("POST", "/v1/connectors", Some(json!({"type": "shopify", "config": {"shop_url": "http://127.0.0.1:1", "access_token": "x"}})), Some(&owner.token))
        .await;
    assert!(s == 422 || s == 502, "{s} {b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("could not reach"),
        "{b}"
    );
    let (_, list, _) = app
        .call("GET", "/v1/connectors", None, Some(&owner.token))
        .await;
    assert_eq!(
        list["connectors"].as_array().map(Vec::len),
        Some(0),
        "{list}"
    );

    let shop = connect_shopify(&app, &owner, &fake).await;
    // A burst of 5xx shorter than the retry budget: retried, the run succeeds.
    fake.fail_next(2, 503, None).await;
    let run = sync(&app, &owner, &shop).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(canonical(&db, &owner.tenant_id).await.orders, 300);

    // Longer than the budget: the run fails with a reason, and the next sync picks up where it stopped.
    fake.edit(|d| {
        for o in d.orders.iter_mut().take(10) {
            o["updated_at"] = json!(ts(epoch() + chrono::Duration::days(500)));
        }
    })
    .await;
    fake.fail_next(20, 500, None).await;
    let run = sync(&app, &owner, &shop).await;
    assert_eq!(run["status"], "failed", "{run}");
    assert!(run["error"].as_str().unwrap().contains("HTTP 500"), "{run}");
    fake.clear_faults().await;
    let run = sync(&app, &owner, &shop).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert!(run["records_synced"].as_i64().unwrap() >= 10, "{run}");

    // Bad records are rejected with their reason; the rest of the page loads.
    fake.edit(|d| {
        let t = json!(ts(epoch() + chrono::Duration::days(600)));
        d.orders[20]["total_price"] = json!("12.x");
        d.orders[20]["updated_at"] = t.clone();
        d.orders[21].as_object_mut().unwrap().remove("id");
        d.orders[21]["updated_at"] = t.clone();
        d.orders[22]["note"] = json!("fine");
        d.orders[22]["updated_at"] = t;
    })
    .await;
    let run = sync(&app, &owner, &shop).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["records_failed"], 2, "{run}");
    let rejections = run["rejections"].to_string();
    assert!(
        rejections.contains("12.x") || rejections.contains("total_price"),
        "{run}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_sync_resumes_from_its_checkpoint() {
    let sizes = Sizes {
        orders: 1_000,
        customers: 10,
        products: 5,
        charges: 0,
        stripe_customers: 0,
    };
    let data = Dataset::generate(sizes);
    let fake = FakeSaas::start(data.clone()).await;
    let env = [("SMB_CONNECTORS__LEASE_SECS", "2")];
    let dir = std::env::temp_dir().join(format!("smb-it-{}", uuid::Uuid::new_v4().simple()));
    let app = App::start_in(dir.clone(), true, &env);
    let owner = app.owner("UTC").await;
    let shop = connect_shopify(&app, &owner, &fake).await;

    // products (1 page), customers (1), orders page 1 and 2 are served; the third orders page hangs.
    fake.hold_after(4).await;
    let sync_id = trigger(&app, &owner, &shop).await;
    assert!(
        fake.wait_held(Duration::from_secs(60)).await,
        "sync never reached the gate"
    );
    app.kill();
    fake.release().await;

    let app = App::start_in(dir, false, &env);
    let run = wait(&app, &owner, &shop, &sync_id, Duration::from_secs(60)).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let db = Db::open_sqlite(&app.dir.join("smb.db"), 2).await.unwrap();
    let got: Canonical = canonical(&db, &owner.tenant_id).await;
    assert_eq!(got.orders, sizes.orders);
    assert_eq!(got.lines, sizes.orders);
    assert_eq!(got.customers, sizes.customers);
    assert_eq!(got.products, sizes.products);
    // The orders stream resumed from its checkpoint: its first page was fetched only once.
    let log = fake.take_log().await;
    let firsts = log
        .iter()
        .filter(|u| u.contains("/orders.json") && !u.contains("page_info"))
        .count();
    assert_eq!(firsts, 1, "{log:?}");
    // Every page once, except the one held when the process died, which the fake may log as served (it is
    // released after the kill, racing the closed connection) and the new process fetches again.
    let orders: Vec<&String> = log.iter().filter(|u| u.contains("/orders.json")).collect();
    let distinct: std::collections::HashSet<&&String> = orders.iter().collect();
    assert_eq!(distinct.len(), sizes.orders.div_ceil(250), "{log:?}");
    assert!(orders.len() <= distinct.len() + 1, "{log:?}");
    let _: Value = run;
}
