//! Our own fake Shopify (Admin REST 2024-10) and Stripe, for sync tests and the sync benchmark.
//!
//! Data is generated deterministically at any size; the server paginates like the real APIs (Shopify
//! `Link`/`page_info`, Stripe `starting_after`, newest first), filters incrementally (`updated_at_min`,
//! `created[gte]`), checks credentials, and injects faults on demand: 429 with `Retry-After`, 5xx bursts, and
//! a gate that holds every data request after N pages (to kill a sync mid-way).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, FixedOffset, TimeZone};
use serde_json::{Value, json};
use tokio::sync::{Mutex, Notify};

pub const SHOP_TOKEN: &str = "shpat_test_token";
pub const STRIPE_KEY: &str = "sk_test_key";

/// Sizes of a generated dataset.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub orders: usize,
    pub customers: usize,
    pub products: usize,
    pub charges: usize,
    pub stripe_customers: usize,
}

impl Sizes {
    /// A small Shopify store: 120 orders, 15 customers, 5 products.
    pub const SMALL_SHOP: Sizes = Sizes {
        orders: 120,
        customers: 15,
        products: 5,
        charges: 0,
        stripe_customers: 0,
    };

    pub fn shopify_records(&self) -> usize {
        self.orders + self.customers + self.products
    }
    pub fn stripe_records(&self) -> usize {
        self.charges + self.stripe_customers
    }
}

/// The records both fake sources serve; tests change them between syncs.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub orders: Vec<Value>,
    pub customers: Vec<Value>,
    pub products: Vec<Value>,
    pub charges: Vec<Value>,
    pub stripe_customers: Vec<Value>,
    /// Stripe's event log (`/v1/events`); `None` answers 404 there, as a source without one does.
    pub stripe_events: Option<Vec<Value>>,
    /// The `shop` object `shop.json` serves (a generated one when absent).
    pub shop: Option<Value>,
    /// The object `/v1/account` serves (a generated one when absent).
    pub account: Option<Value>,
}

/// A Stripe event of `kind` carrying `object` as it stands, at the object's own `created` time.
pub fn stripe_event(kind: &str, object: &Value) -> Value {
    stripe_event_at(kind, object, object["created"].as_i64().unwrap_or(0))
}

/// A Stripe event of `kind` at `created` (Unix seconds) carrying `object` as it stands.
pub fn stripe_event_at(kind: &str, object: &Value, created: i64) -> Value {
    json!({"id": format!("evt_{}_{}_{created}", kind.replace('.', "_"), object["id"].as_str().unwrap_or("x")),
        "object": "event", "type": kind, "created": created, "data": {"object": object}})
}

fn zone() -> FixedOffset {
    FixedOffset::west_opt(5 * 3600).unwrap()
}

/// The generated data's clock starts here (a Monday, 09:00 New York winter time).
pub fn epoch() -> DateTime<FixedOffset> {
    zone().with_ymd_and_hms(2025, 1, 6, 9, 0, 0).unwrap()
}

pub fn ts(t: DateTime<FixedOffset>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

const WORDS: [&str; 16] = [
    "Amber", "Birch", "Cedar", "Dune", "Ember", "Fjord", "Granite", "Harbor", "Iris", "Juniper",
    "Kestrel", "Lumen", "Meadow", "Nimbus", "Orchid", "Pebble",
];

/// Product `i`'s title: "Amber Roast", …, then "Amber Roast 2", ….
pub fn product_title(i: usize) -> String {
    let base = format!("{} Roast", WORDS[i % WORDS.len()]);
    match i / WORDS.len() {
        0 => base,
        n => format!("{base} {}", n + 1),
    }
}

fn money(minor: i64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

impl Dataset {
    /// A deterministic dataset: every 10th order has a refund, every 25th is cancelled, every 50th is a test
    /// order; every 15th charge failed and every 12th is partly refunded.
    pub fn generate(s: Sizes) -> Self {
        Self::generate_since(s, epoch(), Duration::minutes(37))
    }

    /// The same dataset from `t0` on, one order every `order_gap` (a shop whose orders reach into the
    /// current month, for a test that asks about "last month" without pinning the date).
    pub fn generate_since(s: Sizes, t0: DateTime<FixedOffset>, order_gap: Duration) -> Self {
        let products: Vec<Value> = (0..s.products)
            .map(|i| {
                let t = t0 + Duration::seconds(i as i64);
                json!({"id": 8_100_000_000_000u64 + i as u64, "title": product_title(i),
                    "created_at": ts(t), "updated_at": ts(t), "status": "active",
                    "variants": [{"id": 8_200_000_000_000u64 + i as u64, "price": money(1000 + 100 * i as i64)}]})
            })
            .collect();
        let customers: Vec<Value> = (0..s.customers)
            .map(|i| {
                let t = t0 + Duration::minutes(i as i64);
                json!({"id": 7_200_000_000_000u64 + i as u64, "email": format!("customer{i}@example.com"),
                    "first_name": format!("First{i}"), "last_name": format!("Last{i}"),
                    "created_at": ts(t), "updated_at": ts(t), "state": "enabled", "currency": "USD"})
            })
            .collect();
        let orders: Vec<Value> = (0..s.orders)
            .map(|i| {
                let id = 5_900_000_000_000u64 + i as u64;
                let created = t0 + order_gap * i as i32;
                let qty = 1 + (i % 3) as i64;
                let p = if s.products == 0 { 0 } else { i % s.products };
                let price = 1000 + 100 * p as i64;
                let lines = qty * price;
                let tax = lines * 8 / 100;
                let shipping = 695;
                let total = lines + tax + shipping;
                let c = if s.customers == 0 { 0 } else { i % s.customers };
                let refunds = if i % 10 == 9 {
                    json!([{"id": id + 500_000_000, "order_id": id, "created_at": ts(created + Duration::days(2)),
                        "transactions": [{"id": id + 600_000_000, "kind": "refund", "status": "success",
                            "amount": money(price), "currency": "USD"}]}])
                } else {
                    json!([])
                };
                json!({"id": id, "name": format!("#{}", 1001 + i), "email": format!("customer{c}@example.com"),
                    "created_at": ts(created), "processed_at": ts(created),
                    "updated_at": ts(created + Duration::hours(1)),
                    "cancelled_at": if i % 25 == 24 { json!(ts(created + Duration::hours(1))) } else { Value::Null },
                    "test": i % 50 == 49, "currency": "USD", "financial_status": "paid",
                    "total_price": money(total), "subtotal_price": money(lines), "total_tax": money(tax),
                    "total_discounts": "0.00",
                    "customer": {"id": 7_200_000_000_000u64 + c as u64, "email": format!("customer{c}@example.com"),
                        "first_name": format!("First{c}"), "last_name": format!("Last{c}")},
                    "line_items": [{"id": id + 100_000_000, "product_id": 8_100_000_000_000u64 + p as u64,
                        "title": product_title(p), "quantity": qty, "price": money(price)}],
                    "shipping_lines": [{"title": "Standard", "price": money(shipping)}],
                    "refunds": refunds})
            })
            .collect();
        let stripe_customers: Vec<Value> = (0..s.stripe_customers)
            .map(|i| {
                json!({"id": format!("cus_{i:014x}"), "object": "customer", "email": format!("member{i}@example.org"),
                    "name": format!("Member {i}"), "created": t0.timestamp() + 60 * i as i64, "currency": "usd"})
            })
            .collect();
        let charges: Vec<Value> = (0..s.charges)
            .map(|i| {
                let amount = [2500i64, 11000, 12000][i % 3];
                let failed = i % 15 == 14;
                let refunded = if !failed && i % 12 == 11 { amount / 2 } else { 0 };
                let c = if s.stripe_customers == 0 { 0 } else { i % s.stripe_customers };
                json!({"id": format!("ch_{i:018x}"), "object": "charge", "amount": amount,
                    "amount_captured": if failed { 0 } else { amount }, "amount_refunded": refunded,
                    "billing_details": {"email": format!("member{c}@example.org"), "name": format!("Member {c}")},
                    "captured": !failed, "created": t0.timestamp() + 1800 * i as i64, "currency": "usd",
                    "customer": format!("cus_{c:014x}"), "description": "Drop-in class",
                    "paid": !failed, "refunded": false, "livemode": false,
                    "status": if failed { "failed" } else { "succeeded" }})
            })
            .collect();
        Self {
            orders,
            customers,
            products,
            charges,
            stripe_customers,
            stripe_events: None,
            shop: None,
            account: None,
        }
    }

    /// Starts Stripe's event log with the events that created today's charges and customers.
    pub fn log_stripe_events(&mut self) {
        let mut events: Vec<Value> = Vec::new();
        for c in &self.charges {
            events.push(stripe_event("charge.succeeded", c));
        }
        for c in &self.stripe_customers {
            events.push(stripe_event("customer.created", c));
        }
        self.stripe_events = Some(events);
        self.sort();
    }

    /// The records of one fixture tenant directory (`shared/fixtures/<name>/`): a Shopify store
    /// (`shop.json`, `orders.json`, `customers.json` as `{"customers": [...]}`, `products.json`) and/or a Stripe
    /// account (`account.json`, `charges.json`, `customers.json` as a Stripe list `{"data": [...]}`). Every record
    /// must carry what the fake filters and pages on: `id`, plus `updated_at` (Shopify) or `created` (Stripe).
    pub fn from_fixtures(dir: &std::path::Path) -> Result<Self, String> {
        fn read(dir: &std::path::Path, file: &str) -> Result<Option<Value>, String> {
            let path = dir.join(file);
            if !path.exists() {
                return Ok(None);
            }
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| format!("{} is not JSON: {e}", path.display()))
        }
        fn list(v: &Value, key: &str, file: &str) -> Result<Vec<Value>, String> {
            v.get(key)
                .and_then(Value::as_array)
                .cloned()
                .ok_or_else(|| format!("{file} has no \"{key}\" array"))
        }
        fn check(records: &[Value], file: &str, field: &str) -> Result<(), String> {
            for r in records {
                let ok_id = r["id"].is_u64() || r["id"].is_string();
                let ok_field = match field {
                    "created" => r[field].is_i64(),
                    _ => r[field]
                        .as_str()
                        .is_some_and(|s| DateTime::parse_from_rfc3339(s).is_ok()),
                };
                if !ok_id || !ok_field {
                    return Err(format!(
                        "{file}: a record lacks `id` or a valid `{field}` (the fake filters on it): {}",
                        r.to_string().chars().take(200).collect::<String>()
                    ));
                }
            }
            Ok(())
        }
        if !dir.is_dir() {
            return Err(format!("fixture directory {} is missing", dir.display()));
        }
        let mut d = Self::default();
        if let Some(shop) = read(dir, "shop.json")? {
            d.shop = Some(
                shop.get("shop")
                    .cloned()
                    .ok_or("shop.json has no \"shop\"")?,
            );
        }
        if let Some(v) = read(dir, "account.json")? {
            d.account = Some(v);
        }
        if let Some(v) = read(dir, "orders.json")? {
            d.orders = list(&v, "orders", "orders.json")?;
        }
        if let Some(v) = read(dir, "products.json")? {
            d.products = list(&v, "products", "products.json")?;
        }
        if let Some(v) = read(dir, "charges.json")? {
            d.charges = list(&v, "data", "charges.json")?;
        }
        if let Some(v) = read(dir, "customers.json")? {
            // Shopify's listing is {"customers": [...]}, Stripe's a list object {"data": [...]}.
            if v.get("customers").is_some() {
                d.customers = list(&v, "customers", "customers.json")?;
            } else {
                d.stripe_customers = list(&v, "data", "customers.json")?;
            }
        }
        check(&d.orders, "orders.json", "updated_at")?;
        check(&d.products, "products.json", "updated_at")?;
        check(&d.customers, "customers.json", "updated_at")?;
        check(&d.charges, "charges.json", "created")?;
        check(&d.stripe_customers, "customers.json", "created")?;
        if d.orders.is_empty() && d.charges.is_empty() {
            return Err(format!(
                "{} holds neither orders.json nor charges.json",
                dir.display()
            ));
        }
        d.sort();
        Ok(d)
    }

    /// Orders the records as the APIs list them: Shopify by id, Stripe newest first.
    fn sort(&mut self) {
        for v in [&mut self.orders, &mut self.customers, &mut self.products] {
            v.sort_by_key(|r| r["id"].as_u64());
        }
        let events = self.stripe_events.iter_mut();
        for v in [&mut self.charges, &mut self.stripe_customers]
            .into_iter()
            .chain(events)
        {
            v.sort_by(|a, b| {
                (b["created"].as_i64(), b["id"].as_str())
                    .cmp(&(a["created"].as_i64(), a["id"].as_str()))
            });
        }
    }

    /// The same data `factor` times over, with new ids (for the benchmark's scaled fixture).
    pub fn scaled(s: Sizes, factor: usize) -> Self {
        Self::generate(Sizes {
            orders: s.orders * factor,
            customers: s.customers * factor,
            products: s.products,
            charges: s.charges * factor,
            stripe_customers: s.stripe_customers * factor,
        })
    }
}

#[derive(Default)]
struct Faults {
    /// Statuses to answer data requests with, in order, before serving normally again.
    queued: VecDeque<(u16, Option<u64>)>,
    /// Hold data requests once this many pages have been served.
    hold_after: Option<usize>,
}

struct Inner {
    url: String,
    data: Mutex<Dataset>,
    faults: Mutex<Faults>,
    release: Notify,
    pages: AtomicUsize,
    held: AtomicUsize,
    log: Mutex<Vec<String>>,
    /// Pages already served, by request path and query, while [`FakeSaas::prepare`] is on.
    prepared: std::sync::Mutex<Option<HashMap<String, Page>>>,
    /// Pages answered from `prepared`.
    hits: AtomicUsize,
}

/// A served list page: its body and its `Link` header.
#[derive(Clone)]
struct Page {
    body: axum::body::Bytes,
    link: Option<HeaderValue>,
}

/// A running fake Shopify + Stripe on one loopback port.
#[derive(Clone)]
pub struct FakeSaas {
    inner: Arc<Inner>,
}

impl FakeSaas {
    pub async fn start(mut data: Dataset) -> Self {
        data.sort();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let inner = Arc::new(Inner {
            url,
            data: Mutex::new(data),
            faults: Mutex::new(Faults::default()),
            release: Notify::new(),
            pages: AtomicUsize::new(0),
            held: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
            prepared: std::sync::Mutex::new(None),
            hits: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .route("/admin/api/2024-10/shop.json", get(shop))
            .route("/admin/api/2024-10/{stream}", get(shopify_list))
            .route("/v1/account", get(account))
            .route("/v1/{stream}", get(stripe_list))
            .with_state(inner.clone());
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        Self { inner }
    }

    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Changes the data the sources serve.
    pub async fn edit(&self, f: impl FnOnce(&mut Dataset)) {
        let mut d = self.inner.data.lock().await;
        f(&mut d);
        d.sort();
        if let Some(pages) = self.inner.prepared().as_mut() {
            pages.clear();
        }
    }

    /// From now on every list page is kept once served, and the same request is answered with the same
    /// bytes without reading the data again (until [`FakeSaas::edit`]). For benchmarks: a second sync of
    /// unchanged data is then served as fast as the fake can write bytes, so the sync, not the source, is
    /// what is measured.
    pub fn prepare(&self) {
        self.inner.prepared().get_or_insert_with(HashMap::new);
    }

    /// The next `n` data requests answer `status` (with `Retry-After` for 429s).
    pub async fn fail_next(&self, n: usize, status: u16, retry_after: Option<u64>) {
        let mut f = self.inner.faults.lock().await;
        f.queued
            .extend(std::iter::repeat_n((status, retry_after), n));
    }

    /// Data requests after `pages` served pages wait until [`FakeSaas::release`].
    pub async fn hold_after(&self, pages: usize) {
        self.inner.faults.lock().await.hold_after = Some(pages);
    }

    /// Drops every queued failure.
    pub async fn clear_faults(&self) {
        self.inner.faults.lock().await.queued.clear();
    }

    pub async fn release(&self) {
        self.inner.faults.lock().await.hold_after = None;
        self.inner.release.notify_waiters();
    }

    /// Requests waiting at the gate.
    pub fn held(&self) -> usize {
        self.inner.held.load(Ordering::SeqCst)
    }

    /// Waits (at most `within`) until a request waits at the gate; whether one does.
    pub async fn wait_held(&self, within: std::time::Duration) -> bool {
        let start = std::time::Instant::now();
        while self.held() == 0 {
            if start.elapsed() >= within {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        true
    }

    pub fn pages_served(&self) -> usize {
        self.inner.pages.load(Ordering::SeqCst)
    }

    /// Pages answered from those kept by [`FakeSaas::prepare`].
    pub fn pages_prepared(&self) -> usize {
        self.inner.hits.load(Ordering::SeqCst)
    }

    /// Every served data request's path and query, in order; cleared by [`FakeSaas::take_log`].
    pub async fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *self.inner.log.lock().await)
    }
}

impl Inner {
    fn prepared(&self) -> std::sync::MutexGuard<'_, Option<HashMap<String, Page>>> {
        self.prepared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The page kept for `uri`, counted and logged as served.
    async fn kept(&self, uri: &axum::http::Uri) -> Option<Page> {
        let page = self.prepared().as_ref()?.get(&uri.to_string()).cloned()?;
        self.hits.fetch_add(1, Ordering::SeqCst);
        self.served(uri).await;
        Some(page)
    }

    /// Counts and logs a served page, keeping it when preparing.
    async fn serve(&self, uri: &axum::http::Uri, page: Page) -> Page {
        if let Some(pages) = self.prepared().as_mut() {
            pages.insert(uri.to_string(), page.clone());
        }
        self.served(uri).await;
        page
    }

    async fn served(&self, uri: &axum::http::Uri) {
        self.pages.fetch_add(1, Ordering::SeqCst);
        self.log.lock().await.push(uri.to_string());
    }
}

fn error(status: u16, body: Value) -> Response {
    (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response()
}

/// Applies queued faults and the gate; `Some` is the response to send instead of data.
async fn faults(inner: &Inner) -> Option<Response> {
    loop {
        let release = inner.release.notified();
        {
            let mut f = inner.faults.lock().await;
            if let Some((status, retry)) = f.queued.pop_front() {
                let mut r = error(status, json!({"errors": "injected failure"}));
                if let Some(s) = retry {
                    r.headers_mut().insert("retry-after", HeaderValue::from(s));
                }
                return Some(r);
            }
            match f.hold_after {
                Some(n) if inner.pages.load(Ordering::SeqCst) >= n => {}
                _ => return None,
            }
        }
        inner.held.fetch_add(1, Ordering::SeqCst);
        release.await;
        inner.held.fetch_sub(1, Ordering::SeqCst);
    }
}

fn shopify_authorized(h: &HeaderMap) -> bool {
    h.get("x-shopify-access-token")
        .and_then(|v| v.to_str().ok())
        == Some(SHOP_TOKEN)
}

async fn shop(State(inner): State<Arc<Inner>>, h: HeaderMap) -> Response {
    if !shopify_authorized(&h) {
        return error(
            401,
            json!({"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}),
        );
    }
    let shop = inner.data.lock().await.shop.clone().unwrap_or_else(
        || json!({"id": 1, "name": "Fake Shop", "iana_timezone": "America/New_York", "currency": "USD"}),
    );
    axum::Json(json!({ "shop": shop })).into_response()
}

fn parse_ts(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s).ok()
}

async fn shopify_list(
    State(inner): State<Arc<Inner>>,
    uri: axum::http::Uri,
    axum::extract::Path(stream): axum::extract::Path<String>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    if !shopify_authorized(&h) {
        return error(
            401,
            json!({"errors": "[API] Invalid API key or access token"}),
        );
    }
    let Some(stream) = stream.strip_suffix(".json").map(str::to_string) else {
        return error(404, json!({"errors": "Not Found"}));
    };
    if let Some(r) = faults(&inner).await {
        return r;
    }
    if let Some(p) = inner.kept(&uri).await {
        return shopify_page(p);
    }
    // page_info carries the position and the original filters, as Shopify's opaque cursor does.
    let (offset, since, limit) = match q.get("page_info") {
        Some(p) => {
            let Some(decoded) = URL_SAFE_NO_PAD
                .decode(p)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
            else {
                return error(400, json!({"errors": "Invalid page_info"}));
            };
            let mut parts = decoded.splitn(3, '|');
            let offset: usize = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
            let limit: usize = parts.next().and_then(|s| s.parse().ok()).unwrap_or(50);
            let since = parts.next().filter(|s| !s.is_empty()).map(str::to_string);
            (offset, since, limit)
        }
        None => (
            0,
            q.get("updated_at_min").cloned(),
            q.get("limit")
                .and_then(|l| l.parse().ok())
                .unwrap_or(50usize)
                .min(250),
        ),
    };
    let since = match since.as_deref().map(parse_ts) {
        Some(None) => return error(400, json!({"errors": "updated_at_min is not a date"})),
        Some(Some(t)) => Some(t),
        None => None,
    };
    let data = inner.data.lock().await;
    let all = match stream.as_str() {
        "orders" => &data.orders,
        "customers" => &data.customers,
        "products" => &data.products,
        _ => return error(404, json!({"errors": "Not Found"})),
    };
    // Records are kept sorted by id: a full listing is a slice, an incremental one is filtered first.
    let (page, has_more): (Vec<&Value>, bool) = match since {
        None => {
            let end = (offset + limit).min(all.len());
            (
                all.get(offset..end).unwrap_or(&[]).iter().collect(),
                end < all.len(),
            )
        }
        Some(s) => {
            let m: Vec<&Value> = all
                .iter()
                .filter(|r| {
                    r["updated_at"]
                        .as_str()
                        .and_then(parse_ts)
                        .is_some_and(|u| u >= s)
                })
                .collect();
            let page = m.iter().skip(offset).take(limit).copied().collect();
            (page, offset + limit < m.len())
        }
    };
    let body = list_body(&format!("{{\"{stream}\":["), &page, "]}");
    drop(data);
    let link = has_more.then(|| {
        let token = URL_SAFE_NO_PAD.encode(format!(
            "{}|{}|{}",
            offset + limit,
            limit,
            since.map(ts).unwrap_or_default()
        ));
        let link = format!(
            "<{}/admin/api/2024-10/{stream}.json?limit={limit}&page_info={token}>; rel=\"next\"",
            inner.url
        );
        HeaderValue::from_str(&link).unwrap()
    });
    let page = Page {
        body: body.into(),
        link,
    };
    shopify_page(inner.serve(&uri, page).await)
}

fn shopify_page(p: Page) -> Response {
    let mut resp = json_response(p.body);
    if let Some(link) = p.link {
        resp.headers_mut().insert("link", link);
    }
    resp.headers_mut().insert(
        "x-shopify-shop-api-call-limit",
        HeaderValue::from_static("1/40"),
    );
    resp
}

/// A JSON list body written straight from the stored records (no copies of them).
fn list_body(head: &str, items: &[&Value], tail: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(2048 * items.len() + 64);
    out.extend_from_slice(head.as_bytes());
    for (i, v) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, v).expect("JSON values serialise");
    }
    out.extend_from_slice(tail.as_bytes());
    out
}

fn json_response(body: impl Into<axum::body::Body>) -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        Into::<axum::body::Body>::into(body),
    )
        .into_response()
}

fn stripe_authorized(h: &HeaderMap) -> bool {
    h.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {STRIPE_KEY}"))
}

async fn account(State(inner): State<Arc<Inner>>, h: HeaderMap) -> Response {
    if !stripe_authorized(&h) {
        return error(
            401,
            json!({"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}),
        );
    }
    let account = inner.data.lock().await.account.clone().unwrap_or_else(
        || json!({"id": "acct_fake", "object": "account", "default_currency": "usd"}),
    );
    axum::Json(account).into_response()
}

async fn stripe_list(
    State(inner): State<Arc<Inner>>,
    uri: axum::http::Uri,
    axum::extract::Path(stream): axum::extract::Path<String>,
    Query(q): Query<HashMap<String, String>>,
    h: HeaderMap,
) -> Response {
    if !stripe_authorized(&h) {
        return error(
            401,
            json!({"error": {"type": "invalid_request_error", "message": "Invalid API Key provided"}}),
        );
    }
    if let Some(r) = faults(&inner).await {
        return r;
    }
    if let Some(p) = inner.kept(&uri).await {
        return json_response(p.body);
    }
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(10usize)
        .min(100);
    let gte: Option<i64> = q.get("created[gte]").and_then(|c| c.parse().ok());
    // `types[]` may repeat: read from the raw query.
    let types: Vec<String> = reqwest::Url::parse(&format!("http://fake{uri}"))
        .map(|u| {
            u.query_pairs()
                .filter(|(k, _)| k == "types[]")
                .map(|(_, v)| v.into_owned())
                .collect()
        })
        .unwrap_or_default();
    let data = inner.data.lock().await;
    let all = match (stream.as_str(), &data.stripe_events) {
        ("charges", _) => &data.charges,
        ("customers", _) => &data.stripe_customers,
        ("events", Some(events)) => events,
        _ => {
            return error(
                404,
                json!({"error": {"message": "Unrecognized request URL"}}),
            );
        }
    };
    // Kept newest first, as Stripe lists.
    let matching: Vec<&Value> = all
        .iter()
        .filter(|r| gte.is_none_or(|g| r["created"].as_i64().unwrap_or(0) >= g))
        .filter(|r| types.is_empty() || types.iter().any(|t| r["type"] == t.as_str()))
        .collect();
    let start = match q.get("starting_after") {
        Some(after) => match matching
            .iter()
            .position(|r| r["id"].as_str() == Some(after))
        {
            Some(i) => i + 1,
            None => {
                return error(
                    400,
                    json!({"error": {"message": format!("No such object: '{after}'")}}),
                );
            }
        },
        None => 0,
    };
    let page: Vec<&Value> = matching.iter().skip(start).take(limit).copied().collect();
    let has_more = start + limit < matching.len();
    let body = list_body(
        &format!(
            "{{\"object\":\"list\",\"url\":\"/v1/{stream}\",\"has_more\":{has_more},\"data\":["
        ),
        &page,
        "]}",
    );
    drop(data);
    let page = Page {
        body: body.into(),
        link: None,
    };
    json_response(inner.serve(&uri, page).await.body)
}
