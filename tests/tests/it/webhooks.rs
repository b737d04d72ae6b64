//! Signed webhooks through the real binary: every rejection case, deduplication, replay, secret rotation,
//! out-of-order events, and 1,000 concurrent deliveries with duplicates applied exactly once.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use smb_connectors::webhooks::sign;
use smb_core::store::Db;
use smb_core::with_global;
use smb_tests::fake::{Dataset, FakeSaas};
use smb_tests::sync::{canonical, connect};
use smb_tests::{App, Owner};

const SECRET: &str = "whsec_0123456789abcdef";

struct Hooks {
    app: App,
    owner: Owner,
    db: Db,
    shop: String,
    stripe: String,
}

async fn setup() -> Hooks {
    let fake = FakeSaas::start(Dataset::default()).await;
    let app = App::start(&[("SMB_BUS__RETRY_BACKOFF_MS", "50")]);
    let owner = app.owner("America/New_York").await;
    let shop = connect(
        &app,
        &owner,
        json!({"type": "shopify", "config": {"shop_url": fake.url(), "access_token": smb_tests::fake::SHOP_TOKEN, "webhook_secret": SECRET}}),
    )
    .await;
    // Stripe gets its secret later, through PATCH.
    let stripe = smb_tests::sync::connect_stripe(&app, &owner, &fake).await;
    let (s, b, _) = app
        .call(
            "PATCH",
            &format!("/v1/connectors/{stripe}"),
            Some(json!({"config": {"webhook_secret": SECRET}})),
            Some(&owner.token),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["webhook_configured"], true);
    assert!(!b.to_string().contains(SECRET));
    let db = Db::open_sqlite(&app.dir.join("smb.db"), 2).await.unwrap();
    std::mem::forget(fake); // keeps serving for the test's life
    Hooks {
        app,
        owner,
        db,
        shop,
        stripe,
    }
}

async fn post(app: &App, path: &str, body: &[u8], headers: &[(&str, String)]) -> (u16, Value) {
    let mut req = app
        .http
        .post(format!("{}{path}", app.url))
        .body(body.to_vec());
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let r = req.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

fn order(id: u64, updated: &str, total: &str) -> Value {
    json!({"id": id, "name": format!("#{id}"), "email": "a@example.com", "created_at": "2025-01-10T10:00:00-05:00",
        "updated_at": updated, "cancelled_at": null, "test": false, "currency": "USD", "financial_status": "paid",
        "total_price": total, "total_discounts": "0.00", "customer": {"id": 1, "email": "a@example.com"},
        "line_items": [{"id": id + 1, "product_id": 9, "title": "Amber Roast", "quantity": 1, "price": total}], "refunds": []})
}

async fn shopify(h: &Hooks, topic: &str, id: &str, body: &Value) -> (u16, Value) {
    let raw = serde_json::to_vec(body).unwrap();
    let sig = sign::shopify(SECRET.as_bytes(), &raw);
    post(
        &h.app,
        &format!("/webhooks/shopify/{}", h.shop),
        &raw,
        &[
            ("x-shopify-hmac-sha256", sig),
            ("x-shopify-webhook-id", id.into()),
            ("x-shopify-topic", topic.into()),
            ("content-type", "application/json".into()),
        ],
    )
    .await
}

fn stripe_event(id: &str, kind: &str, created: i64, object: Value) -> Vec<u8> {
    serde_json::to_vec(
        &json!({"id": id, "type": kind, "created": created, "data": {"object": object}}),
    )
    .unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn stripe(h: &Hooks, raw: &[u8], header: String) -> (u16, Value) {
    post(
        &h.app,
        &format!("/webhooks/stripe/{}", h.stripe),
        raw,
        &[("stripe-signature", header)],
    )
    .await
}

async fn count(db: &Db, sql: &str) -> i64 {
    let r: Result<i64, smb_core::Error> = async {
        let (n,): (i64,) = with_global!(db, read, |tx| {
            sqlx::query_as(sql).fetch_one(&mut *tx).await?
        });
        Ok(n)
    }
    .await;
    r.unwrap()
}

const WEBHOOK_MESSAGES: &str =
    "SELECT COUNT(*) FROM bus_log WHERE topic = 'smb.connector.webhook.received'";

/// Waits until `sql` counts `want` (events are applied asynchronously after the 202).
async fn eventually(db: &Db, sql: &str, want: i64) {
    let start = Instant::now();
    loop {
        let n = count(db, sql).await;
        if n == want {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{sql}: {n}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rejection_case_and_deduplication() {
    let h = setup().await;
    let o = order(5001, "2025-01-10T10:00:00-05:00", "20.00");

    // Accepted, then the same delivery again is a duplicate.
    let (s, b) = shopify(&h, "orders/create", "wh-1", &o).await;
    assert_eq!(s, 202, "{b}");
    let (s, b) = shopify(&h, "orders/create", "wh-1", &o).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("duplicate")));

    // Bad signature, tampered body, missing headers, unknown connector, oversized body, unknown source.
    let raw = serde_json::to_vec(&o).unwrap();
    let (s, b) = post(
        &h.app,
        &format!("/webhooks/shopify/{}", h.shop),
        &raw,
        &[
            (
                "x-shopify-hmac-sha256",
                sign::shopify(b"wrong secret", &raw),
            ),
            ("x-shopify-webhook-id", "wh-2".into()),
            ("x-shopify-topic", "orders/create".into()),
        ],
    )
    .await;
    assert_eq!(s, 401, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("signature")
    );
    let (s, _) = post(
        &h.app,
        &format!("/webhooks/shopify/{}", h.shop),
        br#"{"id": 6}"#,
        &[
            (
                "x-shopify-hmac-sha256",
                sign::shopify(SECRET.as_bytes(), &raw),
            ),
            ("x-shopify-webhook-id", "wh-3".into()),
            ("x-shopify-topic", "orders/create".into()),
        ],
    )
    .await;
    assert_eq!(s, 401);
    let (s, _) = post(
        &h.app,
        &format!("/webhooks/shopify/{}", h.shop),
        &raw,
        &[("x-shopify-webhook-id", "wh-4".into())],
    )
    .await;
    assert_eq!(s, 401);
    let (s, _) = post(
        &h.app,
        &format!("/webhooks/shopify/{}", h.shop),
        &raw,
        &[
            (
                "x-shopify-hmac-sha256",
                sign::shopify(SECRET.as_bytes(), &raw),
            ),
            ("x-shopify-topic", "orders/create".into()),
        ],
    )
    .await;
    assert_eq!(s, 400);
    let ghost = uuid::Uuid::now_v7();
    let (s, _) = post(&h.app, &format!("/webhooks/shopify/{ghost}"), &raw, &[]).await;
    assert_eq!(s, 404);
    let (s, _) = post(&h.app, "/webhooks/shopify/not-an-id", &raw, &[]).await;
    assert_eq!(s, 404);
    let (s, _) = post(&h.app, &format!("/webhooks/stripe/{}", h.shop), &raw, &[]).await;
    assert_eq!(s, 404, "a Shopify connector is not a Stripe endpoint");
    let (s, _) = post(&h.app, &format!("/webhooks/paypal/{}", h.shop), &raw, &[]).await;
    assert_eq!(s, 404);
    let big = vec![b' '; 1024 * 1024 + 10];
    let (s, _) = post(&h.app, &format!("/webhooks/shopify/{}", h.shop), &big, &[]).await;
    assert_eq!(s, 413);
    // A topic we do not process is acknowledged and ignored.
    let (s, b) = shopify(&h, "app/uninstalled", "wh-5", &json!({"id": 1})).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("ignored")));

    // Stripe: valid, stale, future, bad, rotation with two v1 values, replay of a captured request.
    let ch = json!({"id": "ch_1", "object": "charge", "amount": 5000, "amount_refunded": 0, "created": now() - 60,
        "currency": "usd", "status": "succeeded", "billing_details": {"email": "b@example.com", "name": "B"}});
    let raw = stripe_event("evt_1", "charge.succeeded", now() - 60, ch.clone());
    let t = now();
    let header = format!("t={t},v1={}", sign::stripe_v1(SECRET.as_bytes(), t, &raw));
    let (s, b) = stripe(&h, &raw, header.clone()).await;
    assert_eq!(s, 202, "{b}");
    let (s, b) = stripe(&h, &raw, header).await;
    assert_eq!(
        (s, b["status"].as_str()),
        (200, Some("duplicate")),
        "replay"
    );
    let raw2 = stripe_event("evt_2", "charge.updated", now(), ch.clone());
    for skew in [-400, 400] {
        let t = now() + skew;
        let (s, b) = stripe(
            &h,
            &raw2,
            format!("t={t},v1={}", sign::stripe_v1(SECRET.as_bytes(), t, &raw2)),
        )
        .await;
        assert_eq!(s, 400, "skew {skew}: {b}");
    }
    let (s, _) = stripe(
        &h,
        &raw2,
        format!(
            "t={},v1={}",
            now(),
            sign::stripe_v1(b"whsec_other", now(), &raw2)
        ),
    )
    .await;
    assert_eq!(s, 401);
    let (s, _) = stripe(&h, &raw2, "garbage".into()).await;
    assert_eq!(s, 401);
    let t = now();
    let rotated = format!(
        "t={t},v1={},v1={}",
        sign::stripe_v1(b"whsec_previous_secret", t, &raw2),
        sign::stripe_v1(SECRET.as_bytes(), t, &raw2)
    );
    let (s, b) = stripe(&h, &raw2, rotated).await;
    assert_eq!(s, 202, "{b}");

    // Exactly the accepted events were published, and applied.
    eventually(&h.db, WEBHOOK_MESSAGES, 3).await;
    eventually(&h.db, "SELECT COUNT(*) FROM orders", 2).await;
    // The inbox holds the accepted deliveries only (not the ignored topic).
    assert_eq!(count(&h.db, "SELECT COUNT(*) FROM webhook_inbox").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_events_never_overwrite_newer_state() {
    let h = setup().await;
    // Shopify: the newer version arrives first.
    let newer = order(7001, "2025-01-12T10:00:00-05:00", "30.00");
    let older = order(7001, "2025-01-11T10:00:00-05:00", "10.00");
    assert_eq!(shopify(&h, "orders/updated", "u-2", &newer).await.0, 202);
    assert_eq!(shopify(&h, "orders/updated", "u-1", &older).await.0, 202);
    // A refund arrives on its own.
    let refund = json!({"id": 99, "order_id": 7001, "created_at": "2025-01-13T09:00:00-05:00",
        "transactions": [{"kind": "refund", "status": "success", "amount": "4.00"}]});
    assert_eq!(shopify(&h, "refunds/create", "r-1", &refund).await.0, 202);
    // Stripe: refunded (newer event) before succeeded (older event).
    let ch = |refunded: i64| {
        json!({"id": "ch_9", "object": "charge", "amount": 9000, "amount_refunded": refunded,
        "created": now() - 3600, "currency": "usd", "status": "succeeded"})
    };
    for (id, kind, created, obj) in [
        ("evt_b", "charge.refunded", now() - 10, ch(9000)),
        ("evt_a", "charge.succeeded", now() - 100, ch(0)),
    ] {
        let raw = stripe_event(id, kind, created, obj);
        let t = now();
        assert_eq!(
            stripe(
                &h,
                &raw,
                format!("t={t},v1={}", sign::stripe_v1(SECRET.as_bytes(), t, &raw))
            )
            .await
            .0,
            202
        );
    }
    // Everything left the outbox, and the webhook consumer has committed past the last event.
    eventually(&h.db, "SELECT COUNT(*) FROM outbox", 0).await;
    eventually(&h.db, "SELECT COUNT(*) FROM bus_offsets WHERE consumer_group = 'workers.webhooks' AND position >= (SELECT MAX(id) FROM bus_log WHERE topic = 'smb.connector.webhook.received')", 1).await;
    let state: Vec<(String, i64, i64)> = {
        let r: Result<_, smb_core::Error> = async {
            Ok(with_global!(&h.db, read, |tx| {
                sqlx::query_as("SELECT external_id, total_minor, refunded_minor FROM orders ORDER BY external_id")
                    .fetch_all(&mut *tx)
                    .await?
            }))
        }
        .await;
        r.unwrap()
    };
    assert_eq!(
        state,
        vec![
            ("7001".to_string(), 3000, 400),
            ("ch_9".to_string(), 9000, 9000)
        ]
    );
    // The facts kept beside the orders followed every version, the refund on its own among them.
    canonical(&h.db, &h.owner.tenant_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_deliveries_with_duplicates_apply_exactly_once() {
    let h = setup().await;
    // 700 distinct events; 300 of them delivered twice. Shuffled deterministically.
    let mut deliveries: Vec<u64> = (0..700)
        .chain((0..700).step_by(7).take(100))
        .chain((0..200).map(|i| i * 3 % 700))
        .collect();
    deliveries.truncate(1000);
    let n = deliveries.len();
    for i in 0..n {
        deliveries.swap(i, (i * 7919) % n);
    }
    let distinct: std::collections::HashSet<u64> = deliveries.iter().copied().collect();
    let h = &h;
    let statuses: Vec<u16> = futures::stream::iter(deliveries)
        .map(|i| async move {
            let o = order(8_000_000 + i * 10, "2025-01-10T10:00:00-05:00", "12.50");
            shopify(h, "orders/create", &format!("wh-{i}"), &o).await.0
        })
        .buffer_unordered(64)
        .collect()
        .await;
    assert_eq!(statuses.len(), 1000);
    assert!(
        statuses.iter().all(|s| *s == 202 || *s == 200),
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        distinct.len()
    );
    eventually(&h.db, WEBHOOK_MESSAGES, distinct.len() as i64).await;
    eventually(&h.db, "SELECT COUNT(*) FROM orders", distinct.len() as i64).await;
    let c = canonical(&h.db, &h.owner.tenant_id).await;
    assert_eq!((c.orders, c.lines), (distinct.len(), distinct.len()));
}

/// `n` webhook deliveries to random connector ids, 32 at a time; every tenth id malformed.
async fn random_webhooks(app: &App, n: usize) -> Vec<Result<u16, reqwest::Error>> {
    futures::stream::iter(0..n)
        .map(|i| {
            let http = app.http.clone();
            // Random ids shaped like connector ids, none of them one: each gets a rate-limit window (the
            // bounded cache's), then a 404. Every tenth is malformed, refused before any state exists.
            let id = if i % 10 == 0 {
                format!("{i}-x")
            } else {
                uuid::Uuid::new_v4().to_string()
            };
            let url = format!("{}/webhooks/stripe/{id}", app.url);
            async move {
                http.post(url)
                    .body("{}")
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await
}

#[tokio::test]
async fn random_webhook_ids_do_not_grow_memory() {
    let app = App::start(&[]);
    let _ = app.owner("UTC").await;
    // Warm up the paths and fill the bounded cache of rate-limit windows (12 MiB), then measure: what
    // is bounded stays put from here on, what is not grows with every new id.
    let _ = random_webhooks(&app, 100_000).await;
    let before = app.rss();
    let n = 200_000usize;
    let statuses = random_webhooks(&app, n).await;
    assert!(
        statuses.iter().all(|s| matches!(s, Ok(404) | Ok(400))),
        "{:?}",
        statuses.iter().find(|s| !matches!(s, Ok(404) | Ok(400)))
    );
    let after = app.rss();
    let grown = after.saturating_sub(before);
    eprintln!(
        "RSS {} MB -> {} MB after {n} more webhook requests",
        before >> 20,
        after >> 20
    );
    // 200,000 windows held without a bound would take 16-20 MB (measured while the cache was filling:
    // 164-168 MB -> 183-184 MB); once it is full, 1 MB.
    assert!(grown < 8 * 1024 * 1024, "RSS grew {} MB", grown >> 20);
}
