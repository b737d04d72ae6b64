//! Webhook acceptance benchmark: the real `smb` binary (SQLite, embedded bus) receiving signed Shopify
//! `orders/updated` deliveries on loopback. Prints time-to-202 p50/p99 at a fixed offered rate (open loop:
//! requests leave on schedule whether or not earlier ones finished), then the throughput of a closed loop.
//! The load generator shares the machine's cores with the server.
//!
//! Run with a release build: `cargo build --release -p smb -p smb-bench && target/release/webhook_bench`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use smb_bench::{ms, percentile};
use smb_connectors::webhooks::sign;
use smb_tests::App;
use smb_tests::fake::{Dataset, FakeSaas, SHOP_TOKEN};

#[derive(Parser)]
struct Args {
    /// Offered rate of the open-loop run, requests per second.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Seconds of the open-loop run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Requests of the closed-loop run, and its concurrency.
    #[arg(long, default_value_t = 5000)]
    requests: usize,
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
}

const SECRET: &str = "whsec_benchmark_secret_0001";

struct Target {
    http: reqwest::Client,
    url: String,
}

impl Target {
    async fn send(&self, i: u64) -> (u16, Duration) {
        let body = serde_json::to_vec(&json!({"id": 9_000_000 + i, "name": format!("#{i}"), "email": "a@example.com",
            "created_at": "2025-01-10T10:00:00-05:00", "updated_at": "2025-01-10T11:00:00-05:00", "cancelled_at": null,
            "test": false, "currency": "USD", "total_price": "25.00", "total_discounts": "0.00",
            "customer": {"id": 1, "email": "a@example.com"},
            "line_items": [{"id": 1_000_000 + i, "product_id": 1, "title": "Amber Roast", "quantity": 1, "price": "25.00"}],
            "refunds": []}))
        .unwrap();
        let sig = sign::shopify(SECRET.as_bytes(), &body);
        let t = Instant::now();
        let r = self
            .http
            .post(&self.url)
            .header("x-shopify-hmac-sha256", sig)
            .header("x-shopify-webhook-id", format!("bench-{i}"))
            .header("x-shopify-topic", "orders/updated")
            .body(body)
            .send()
            .await;
        let status = r.map(|r| r.status().as_u16()).unwrap_or(0);
        (status, t.elapsed())
    }
}

/// Sorted latencies, and how many answers were not 202.
fn summarize(results: Vec<(u16, Duration)>) -> (Vec<Duration>, usize) {
    let bad = results.iter().filter(|(s, _)| *s != 202).count();
    let mut lat: Vec<Duration> = results.into_iter().map(|(_, d)| d).collect();
    lat.sort();
    (lat, bad)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let fake = FakeSaas::start(Dataset::default()).await;
    let app = App::start(&[]);
    let owner = app.owner("America/New_York").await;
    let id = smb_tests::sync::connect(
        &app,
        &owner,
        json!({"type": "shopify", "config": {"shop_url": fake.url(), "access_token": SHOP_TOKEN, "webhook_secret": SECRET}}),
    )
    .await;
    let target = Arc::new(Target {
        http: reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .build()?,
        url: format!("{}/webhooks/shopify/{id}", app.url),
    });
    // Warm up connections and caches.
    for i in 0..200 {
        target.send(10_000_000 + i).await;
    }

    // Open loop at the offered rate.
    let total = args.rate * args.seconds;
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let start = Instant::now();
    let mut handles = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = start + interval * i as u32;
        tokio::time::sleep_until(due.into()).await;
        let t = target.clone();
        handles.push(tokio::spawn(async move { t.send(i).await }));
    }
    let mut results = Vec::with_capacity(handles.len());
    for h in handles {
        results.push(h.await?);
    }
    let elapsed = start.elapsed();
    let (lat, bad) = summarize(results);
    println!(
        "open loop: {total} deliveries offered at {}/s over {:.1} s (achieved {:.0}/s): time-to-202 p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; non-202: {bad}",
        args.rate,
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        ms(percentile(&lat, 50.0)),
        ms(percentile(&lat, 99.0)),
        ms(*lat.last().unwrap_or(&Duration::ZERO)),
    );

    // Closed loop: as fast as it goes.
    let start = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (t, next) = (target.clone(), next.clone());
        let n = args.requests as u64;
        workers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return out;
                }
                out.push(t.send(1_000_000 + i).await);
            }
        }));
    }
    let mut results = Vec::new();
    for w in workers {
        results.extend(w.await?);
    }
    let elapsed = start.elapsed();
    let (lat, bad) = summarize(results);
    println!(
        "closed loop: {} deliveries, {} concurrent: {:.0} accepted/s; p50 {:.2} ms, p99 {:.2} ms; non-202: {bad}",
        args.requests,
        args.concurrency,
        args.requests as f64 / elapsed.as_secs_f64(),
        ms(percentile(&lat, 50.0)),
        ms(percentile(&lat, 99.0)),
    );
    Ok(())
}
