//! What tracing costs on the hottest path: cached answers over HTTP on `smb up` (SQLite, the fixture synced),
//! a closed loop of `--concurrency` clients asking the same question for `--seconds`. Runs alternate between
//! no OTLP endpoint and an endpoint, `--rounds` times, each on a fresh process; prints each run, then the
//! ratio of the means (traced / untraced) and the spread of the untraced runs (the machine's own noise,
//! against which "nothing measurable" is judged). The endpoint is a test OTLP receiver on loopback that
//! counts the spans it is sent without keeping them: a collector runs elsewhere, so the traced process pays
//! for making and sending spans, not for storing them. The load generator shares the machine's cores with
//! the server.
//!
//! Run with a release build: `cargo build --release -p smb -p smb-bench && target/release/trace_bench`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use smb_tests::App;
use smb_tests::fake::{Dataset, FakeSaas, Sizes};

use smb_tests::otlp::Receiver;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

async fn run(fake: &FakeSaas, endpoint: Option<&str>, args: &Args) -> anyhow::Result<f64> {
    let mut env = vec![
        ("SMB_GATEWAY__DEFAULT_RATE_LIMIT", "100000000"),
        ("SMB_CONNECTORS__ALLOW_PRIVATE_NETWORKS", "true"),
        ("OTEL_BSP_SCHEDULE_DELAY", "1000"),
    ];
    if let Some(e) = endpoint {
        env.push(("SMB_TELEMETRY__OTLP_ENDPOINT", e));
    }
    let app = Arc::new(App::start(&env));
    let owner = app.owner("America/New_York").await;
    let shop = smb_tests::sync::connect_shopify(&app, &owner, fake).await;
    let r = smb_tests::sync::sync(&app, &owner, &shop).await;
    anyhow::ensure!(r["status"] == "succeeded", "sync: {r}");
    let url = format!("{}/v1/ai/query", app.url);
    let body = json!({"query": "What was my revenue last month?", "as_of": "2025-06-15T12:00:00Z"});
    let token = owner.token.clone();
    // Warm: computed once, then served from the cache.
    let first = app
        .http
        .post(&url)
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await?;
    anyhow::ensure!(first.status() == 200, "question: {}", first.status());
    let done = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(args.seconds);
    let tasks: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (http, url, body, token, done) = (
                app.http.clone(),
                url.clone(),
                body.clone(),
                token.clone(),
                done.clone(),
            );
            tokio::spawn(async move {
                while Instant::now() < stop {
                    let ok = http
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&body)
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 200);
                    if ok {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let started = Instant::now();
    futures::future::join_all(tasks).await;
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let fake = FakeSaas::start(Dataset::generate(Sizes::SMALL_SHOP)).await;
    let receiver = Receiver::counting().await;
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        let a = run(&fake, None, &args).await?;
        println!("round {round}: no endpoint    {a:>9.0} cached answers/s");
        off.push(a);
        let b = run(&fake, Some(&receiver.url), &args).await?;
        println!("round {round}: OTLP endpoint  {b:>9.0} cached answers/s");
        on.push(b);
    }
    let spans = receiver.received();
    let spread =
        off.iter().cloned().fold(f64::MIN, f64::max) / off.iter().cloned().fold(f64::MAX, f64::min);
    println!(
        "traced / untraced: {:.3} (mean {:.0} vs {:.0} answers/s; goal >= 0.95); untraced runs' max/min spread {:.3}; {spans} spans received",
        mean(&on) / mean(&off),
        mean(&on),
        mean(&off),
        spread
    );
    Ok(())
}
