//! Questions answered over data synced from our fake sources, on SQLite and on PostgreSQL: both stores give
//! the same results, and key figures match an independent computation from the source records.

use chrono::{DateTime, NaiveDate};
use serde_json::{Value, json};
use smb_core::store::testing::PgTestDb;
use smb_tests::fake::{Dataset, FakeSaas, Sizes};
use smb_tests::sync::{connect_shopify, connect_stripe, sync};
use smb_tests::{App, Owner};

pub(crate) const AS_OF: &str = "2025-01-31T12:00:00-05:00";

pub(crate) const QUESTIONS: &[&str] = &[
    "revenue in January 2025 from shopify",
    "how many orders this month",
    "top 5 customers this month",
    "orders by week this month",
    "refunds this month",
    "aov last week compared to the previous period",
    "units sold in January",
    "best selling products this month",
    "new customers this month",
    "failed payments this month",
    "revenue from stripe yesterday",
    "how much did customer3@example.com spend this month",
    "how much did First3 Last3 spend this month",
    "revenue from cedar roast this month",
    "how many orders did Member 7 place this month",
];

fn sizes() -> Sizes {
    Sizes {
        orders: 900,
        customers: 60,
        products: 8,
        charges: 400,
        stripe_customers: 30,
    }
}

pub(crate) async fn ask(app: &App, owner: &Owner, q: &str) -> Value {
    let (s, b, _) = app
        .call(
            "POST",
            "/v1/ai/query",
            Some(json!({"query": q, "as_of": AS_OF})),
            Some(&owner.token),
        )
        .await;
    assert_eq!(s, 200, "{q}: {b}");
    b
}

async fn answers(env: &[(&str, &str)], fake: &FakeSaas) -> Vec<Value> {
    let app = App::start(env);
    let owner = app.owner("America/New_York").await;
    for c in [
        connect_shopify(&app, &owner, fake).await,
        connect_stripe(&app, &owner, fake).await,
    ] {
        assert_eq!(sync(&app, &owner, &c).await["status"], "succeeded");
    }
    let mut out = Vec::new();
    for q in QUESTIONS {
        out.push(ask(&app, &owner, q).await);
    }
    out
}

fn local_date(ts: &str) -> NaiveDate {
    DateTime::parse_from_rfc3339(ts)
        .unwrap()
        .with_timezone(&chrono_tz::America::New_York)
        .date_naive()
}

fn minor(s: &str) -> i64 {
    let (a, b) = s.split_once('.').unwrap();
    a.parse::<i64>().unwrap() * 100 + b.parse::<i64>().unwrap()
}

/// Shopify revenue in a date range, straight from the metrics spec over the source records.
fn shopify_revenue(d: &Dataset, from: NaiveDate, to: NaiveDate) -> i64 {
    d.orders
        .iter()
        .filter(|o| o["cancelled_at"].is_null() && o["test"] == false)
        .filter(|o| (from..=to).contains(&local_date(o["created_at"].as_str().unwrap())))
        .map(|o| {
            let refunded: i64 = o["refunds"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|r| r["transactions"].as_array().unwrap().iter())
                .filter(|t| t["kind"] == "refund" && t["status"] == "success")
                .map(|t| minor(t["amount"].as_str().unwrap()))
                .sum();
            minor(o["total_price"].as_str().unwrap()) - refunded
        })
        .sum()
}

fn orders_count(d: &Dataset, from: NaiveDate, to: NaiveDate) -> i64 {
    let shopify = d
        .orders
        .iter()
        .filter(|o| o["cancelled_at"].is_null() && o["test"] == false)
        .filter(|o| (from..=to).contains(&local_date(o["created_at"].as_str().unwrap())))
        .count();
    let stripe = d
        .charges
        .iter()
        .filter(|c| c["status"] == "succeeded")
        .filter(|c| {
            let t = DateTime::from_timestamp(c["created"].as_i64().unwrap(), 0).unwrap();
            (from..=to).contains(&t.with_timezone(&chrono_tz::America::New_York).date_naive())
        })
        .count();
    (shopify + stripe) as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_postgres_answer_alike_and_match_the_spec() {
    let data = Dataset::generate(sizes());
    let fake = FakeSaas::start(data.clone()).await;
    let pg = PgTestDb::create().await.unwrap();
    let (url, migrate) = (pg.app_url.clone(), pg.owner_url.clone());
    let pg_env = [
        ("SMB_DATABASE__URL", url.as_str()),
        ("SMB_DATABASE__MIGRATE_URL", migrate.as_str()),
    ];
    let (lite, post) = tokio::join!(answers(&[], &fake), answers(&pg_env, &fake));
    pg.drop_db().await;

    for ((q, a), b) in QUESTIONS.iter().zip(&lite).zip(&post) {
        // The two stores synced moments apart: freshness differs, everything else must not.
        let strip = |v: &Value| {
            let mut r = v["result"].clone();
            assert!(r["freshness"].is_object(), "{q}: {v}");
            r.as_object_mut().map(|o| o.remove("freshness"));
            r
        };
        assert_eq!(strip(a), strip(b), "{q}");
        assert_eq!(a["answer"], b["answer"], "{q}");
        assert_eq!(a["intent"], "metrics", "{q}: {a}");
    }
    let jan = |d| NaiveDate::from_ymd_opt(2025, 1, d).unwrap();
    let value = |i: usize| lite[i]["result"]["value"].as_f64().unwrap();
    assert_eq!(
        (value(0) * 100.0).round() as i64,
        shopify_revenue(&data, jan(1), jan(31)),
        "{}",
        lite[0]
    );
    assert_eq!(
        value(1) as i64,
        orders_count(&data, jan(1), jan(31)),
        "{}",
        lite[1]
    );
    // Top customers are ranked and limited.
    let rows = lite[2]["result"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 5, "{}", lite[2]);
    // Weekly buckets cover the month, Monday-based, the first clipped to January 1.
    let weeks = lite[3]["result"]["rows"].as_array().unwrap();
    assert_eq!(weeks.len(), 5, "{}", lite[3]);
    // A customer named by e-mail and by full name is the same customer.
    assert_eq!(lite[11]["result"]["value"], lite[12]["result"]["value"]);
    assert_eq!(
        lite[12]["result"]["customer"], "customer3@example.com",
        "{}",
        lite[12]
    );
    assert!(value(11) > 0.0, "{}", lite[11]);
    assert_eq!(lite[13]["result"]["product"], "Cedar Roast", "{}", lite[13]);
    assert_eq!(
        lite[14]["result"]["customer"], "member7@example.org",
        "{}",
        lite[14]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_questions_get_clear_answers_never_500s() {
    let app = App::start(&[]);
    let owner = app.owner("America/New_York").await;
    for q in [
        "revenue in 2031",
        "revenue from the unicorn saddle last month",
        "how much did nobody@example.com spend",
        "\u{0}\u{1}\u{2}revenue\u{7f} last week",
        "🙂 revenue 🙂 yesterday",
        "SELECT * FROM orders; DROP TABLE orders",
        &"revenue ".repeat(200),
    ] {
        let b = ask(&app, &owner, q).await;
        assert!(
            b["answer"].as_str().is_some_and(|a| !a.is_empty()),
            "{q}: {b}"
        );
    }
    // A future period says so rather than reporting zero as a fact.
    let b = ask(&app, &owner, "revenue in 2031").await;
    assert!(
        b["answer"]
            .as_str()
            .unwrap()
            .contains("hasn't happened yet"),
        "{b}"
    );
    // A binary body is refused with a reason.
    let r = app
        .http
        .post(format!("{}/v1/ai/query", app.url))
        .bearer_auth(&owner.token)
        .header("content-type", "application/json")
        .body(vec![0xff, 0xfe, 0x00, 0x01])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

/// Orders in a currency other than the tenant's are never added to its money figures: they are reported
/// beside them, per currency (counts still include every order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_in_other_currencies_is_reported_apart_never_added() {
    let mut data = Dataset::generate(sizes());
    for (i, o) in data.orders.iter_mut().enumerate() {
        if i % 7 == 3 {
            o["currency"] = json!("EUR");
        }
    }
    let fake = FakeSaas::start(data.clone()).await;
    let app = App::start(&[]);
    let owner = app.owner("America/New_York").await;
    let shop = connect_shopify(&app, &owner, &fake).await;
    assert_eq!(sync(&app, &owner, &shop).await["status"], "succeeded");

    let jan = |d| NaiveDate::from_ymd_opt(2025, 1, d).unwrap();
    let only = |cur: &str| Dataset {
        orders: data
            .orders
            .iter()
            .filter(|o| o["currency"].as_str().unwrap_or("USD") == cur)
            .cloned()
            .collect(),
        ..Dataset::default()
    };
    let (usd, eur) = (only("USD"), only("EUR"));
    let a = ask(&app, &owner, "revenue in January 2025").await;
    let r = &a["result"];
    assert_eq!(
        (r["value"].as_f64().unwrap() * 100.0).round() as i64,
        shopify_revenue(&usd, jan(1), jan(31)),
        "{a}"
    );
    assert_eq!(r["currency"], "USD", "{a}");
    let apart = r["other_currencies"].as_array().expect("other currencies");
    assert_eq!(apart.len(), 1, "{a}");
    assert_eq!(apart[0]["currency"], "EUR");
    assert_eq!(
        (apart[0]["value"].as_f64().unwrap() * 100.0).round() as i64,
        shopify_revenue(&eur, jan(1), jan(31)),
        "{a}"
    );
    let text = a["answer"].as_str().unwrap();
    assert!(
        text.contains("USD orders only") && text.contains("€"),
        "{text}"
    );

    // Rankings and breakdowns say so too; a count counts every order whatever its currency.
    for q in [
        "top 5 customers in January 2025",
        "revenue by week in January 2025",
        "aov in January 2025",
    ] {
        let a = ask(&app, &owner, q).await;
        assert!(a["result"]["other_currencies"].is_array(), "{q}: {a}");
        assert!(a["answer"].as_str().unwrap().contains("EUR"), "{q}: {a}");
    }
    let a = ask(&app, &owner, "how many orders in January 2025").await;
    assert!(a["result"].get("other_currencies").is_none(), "{a}");
    let all = Dataset {
        charges: Vec::new(),
        ..data.clone()
    };
    assert_eq!(
        a["result"]["value"].as_f64().unwrap() as i64,
        orders_count(&all, jan(1), jan(31)),
        "{a}"
    );
}

/// Breakdowns of what does not add up by day (distinct, new and returning customers, failed payments,
/// refunds narrowed to a source or customer) are computed for every bucket in one query: each bucket's
/// value equals the metric computed over that bucket alone, on both stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn breakdowns_in_one_query_match_each_bucket_alone() {
    use smb_orchestrator::metrics::{self, Filter};
    use smb_orchestrator::nlu::Metric;
    let data = Dataset::generate(sizes());
    let fake = FakeSaas::start(data.clone()).await;
    let pg = PgTestDb::create().await.unwrap();
    let pg_env = [
        ("SMB_DATABASE__URL", pg.app_url.as_str()),
        ("SMB_DATABASE__MIGRATE_URL", pg.owner_url.as_str()),
    ];
    for env in [&[][..], &pg_env[..]] {
        let app = App::start(env);
        let owner = app.owner("America/New_York").await;
        for c in [
            connect_shopify(&app, &owner, &fake).await,
            connect_stripe(&app, &owner, &fake).await,
        ] {
            assert_eq!(sync(&app, &owner, &c).await["status"], "succeeded");
        }
        let db = if env.is_empty() {
            smb_core::store::Db::open_sqlite(&app.dir.join("smb.db"), 2)
                .await
                .unwrap()
        } else {
            pg.db.clone()
        };
        let tenant: smb_core::ids::TenantId = owner.tenant_id.parse().unwrap();
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        // Weeks across the data, the first and last clipped; a bucket with nothing in it too.
        let mut buckets = vec![(day(2024, 12, 1), day(2024, 12, 1))];
        let mut s = day(2024, 12, 30);
        while s < day(2025, 3, 1) {
            buckets.push((s, s + chrono::Duration::days(6)));
            s += chrono::Duration::days(7);
        }
        let filters = [
            Filter::default(),
            Filter {
                source: Some("shopify".into()),
                ..Filter::default()
            },
            Filter {
                customer_key: Some("customer3@example.com".into()),
                ..Filter::default()
            },
        ];
        let mut nonzero = 0;
        for metric in [
            Metric::Customers,
            Metric::NewCustomers,
            Metric::ReturningCustomers,
            Metric::FailedPayments,
            Metric::Refunds,
        ] {
            for f in &filters {
                let got = metrics::by_bucket(&db, &tenant, metric, f, &buckets)
                    .await
                    .unwrap();
                for (s, e) in &buckets {
                    let alone = match metrics::scalar(&db, &tenant, metric, f, *s, *e)
                        .await
                        .unwrap()
                    {
                        metrics::Value::Money(v) | metrics::Value::Count(v) => v,
                        other => panic!("{other:?}"),
                    };
                    let one = got.iter().find(|(d, _)| d == s).map_or(0, |r| r.1);
                    assert_eq!(one, alone, "{metric:?} {f:?} {s}..{e}");
                    nonzero += usize::from(alone != 0);
                }
            }
        }
        assert!(nonzero > 20, "the comparison saw data: {nonzero}");
        // Top customers over each week (part of a year that has other orders: the rows kept per customer
        // and year must not answer for it) and over whole years (they may): the values of the customers'
        // revenues over that period alone, highest first.
        let keys: std::collections::BTreeSet<String> = metrics::customer_names(&db, &tenant)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, key)| key)
            .collect();
        let years = [
            (day(2024, 1, 1), day(2024, 12, 31)),
            (day(2025, 1, 1), day(2025, 12, 31)),
        ];
        let mut ranked = 0;
        for (s, e) in buckets.iter().chain(&years) {
            let top = metrics::top(
                &db,
                &tenant,
                Metric::TopCustomers,
                &Filter::default(),
                *s,
                *e,
                5,
            )
            .await
            .unwrap();
            let mut alone = Vec::new();
            for key in &keys {
                let f = Filter {
                    customer_key: Some(key.clone()),
                    ..Filter::default()
                };
                let of = |m| metrics::scalar(&db, &tenant, m, &f, *s, *e);
                if let (metrics::Value::Count(n), metrics::Value::Money(v)) = (
                    of(Metric::Orders).await.unwrap(),
                    of(Metric::Revenue).await.unwrap(),
                ) && n > 0
                {
                    alone.push(v);
                }
            }
            alone.sort_unstable_by(|a, b| b.cmp(a));
            alone.truncate(5);
            let values: Vec<i64> = top.iter().map(|r| r.1).collect();
            assert_eq!(values, alone, "top customers {s}..{e}: {top:?}");
            ranked += usize::from(!alone.is_empty());
        }
        assert!(ranked >= 4, "the ranking saw data: {ranked}");
        if env.is_empty() {
            db.close().await;
        }
    }
    pg.drop_db().await;
}
