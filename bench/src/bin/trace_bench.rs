//! What tracing costs on the hottest path: cached answers over HTTP on `smb up` (SQLite, the fixture synced),
//! a closed loop of `--concurrency` clients asking the same question for `--seconds`. Each round runs three
//! fresh processes in turn: no OTLP endpoint; an endpoint with the default sampling (every request up to
//! `telemetry.traces_per_second`, then `telemetry.sample_ratio` of the rest); and an endpoint with every
//! request traced. Prints each run, then the ratio of the means (traced / untraced) for both, and the spread
//! of the untraced runs (the machine's own noise, against which "nothing measurable" is judged). The endpoint
//! is a test OTLP receiver on loopback that counts the spans it is sent without keeping them: a collector runs
//! elsewhere, so the traced process pays for making and sending spans, not for storing them. The load
//! generator and the receiver share the machine's cores with the server.
//!
//! Run with a release build: `cargo build --release -p smb -p smb-bench && target/release/trace_bench`.

// Linked for its global allocator (mimalloc, as `smb` runs): memory figures compare.
use smb_bench as _;

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

/// How a run traces.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Off,
    Sampled,
    Every,
}

async fn run(fake: &FakeSaas, mode: Mode, endpoint: &str, args: &Args) -> anyhow::Result<f64> {
    let mut env = vec![
        ("SMB_GATEWAY__DEFAULT_RATE_LIMIT", "100000000"),
        ("SMB_CONNECTORS__ALLOW_PRIVATE_NETWORKS", "true"),
        ("OTEL_BSP_SCHEDULE_DELAY", "1000"),
    ];
    if mode != Mode::Off {
        env.push(("SMB_TELEMETRY__OTLP_ENDPOINT", endpoint));
    }
    if mode == Mode::Every {
        env.push(("SMB_TELEMETRY__SAMPLE_RATIO", "1"));
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
    let (mut off, mut sampled, mut every) = (Vec::new(), Vec::new(), Vec::new());
    for round in 1..=args.rounds {
        for (mode, label, out) in [
            (Mode::Off, "no endpoint", &mut off),
            (Mode::Sampled, "endpoint, default sampling", &mut sampled),
            (Mode::Every, "endpoint, every request traced", &mut every),
        ] {
            let before = receiver.received();
            let r = run(&fake, mode, &receiver.url, &args).await?;
            let spans = receiver.received() - before;
            println!(
                "round {round}: {label:<31} {r:>9.0} cached answers/s ({spans} spans received)"
            );
            out.push(r);
        }
    }
    let spread =
        off.iter().cloned().fold(f64::MIN, f64::max) / off.iter().cloned().fold(f64::MAX, f64::min);
    println!(
        "default sampling / untraced: {:.3} (mean {:.0} vs {:.0} answers/s; goal >= 0.95)",
        mean(&sampled) / mean(&off),
        mean(&sampled),
        mean(&off),
    );
    println!(
        "every request traced / untraced: {:.3} (mean {:.0} answers/s)",
        mean(&every) / mean(&off),
        mean(&every),
    );
    println!("untraced runs' max/min spread {spread:.3}");
    Ok(())
}
