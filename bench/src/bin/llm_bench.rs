//! What the language-model chain adds to an answer. Loads the fixture tenants into SQLite, then asks every
//! published metrics question uncached through the orchestrator in-process, twice per round: without a
//! provider (the deterministic path) and with an OpenAI-compatible provider on loopback that answers at once
//! (0 ms of its own). The difference of the medians is the chain's own cost: the budget read, the request,
//! the HTTP round trip, parsing, the number lock and the usage record. Prints both, and the ratio.
//!
//! Run with a release build: `cargo build --release -p smb-bench && target/release/llm_bench`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use smb_bench::fixtures::{self, Question};
use smb_bench::{ms, percentile};
use smb_core::bus::{DynBus, StoreBus};
use smb_core::cache::{DynCache, MemoryCache};
use smb_core::config::LlmConfig;
use smb_core::ids::UserId;
use smb_core::store::Db;
use smb_core::store::testing::TempDir;
use smb_core::tenant::Caller;
use smb_orchestrator::OrchestratorServiceImpl;
use smb_orchestrator::llm::{Chain, provider};
use smb_proto::orchestrator::v1 as pb;
use smb_tests::fake_llm::FakeLlm;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "../shared/fixtures")]
    fixtures: PathBuf,
    #[arg(long, default_value = "../shared/eval/dev.jsonl")]
    questions: PathBuf,
    /// Times each question is asked per path.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
}

async fn ask(
    svc: &OrchestratorServiceImpl,
    caller: &Caller,
    q: &Question,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let r = svc
        .process(
            caller,
            pb::ProcessRequest {
                query: q.text.clone(),
                as_of: q.as_of.clone(),
                ..Default::default()
            },
        )
        .await?;
    let elapsed = t.elapsed();
    anyhow::ensure!(!r.answer.is_empty(), "empty answer to {}", q.text);
    Ok(elapsed)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let qs = fixtures::questions(&args.questions)?;
    let dir = TempDir::new()?;
    let db = Db::open_sqlite(&dir.path().join("bench.db"), 4).await?;
    let tenants = fixtures::load(&db, &args.fixtures).await?;
    let cache: DynCache = Arc::new(MemoryCache::new(""));
    let bus: DynBus = Arc::new(StoreBus::new(db.clone()));
    let fake = FakeLlm::start().await;
    let mut cfg = LlmConfig {
        monthly_token_budget: u64::MAX / 4,
        ..LlmConfig::default()
    };
    cfg.primary = Some(smb_core::config::LlmProviderConfig {
        kind: "openai".into(),
        base_url: Some(format!("{}/v1", fake.url)),
        api_key: None,
        model: "bench".into(),
    });
    let chain = Chain::new(
        vec![provider(
            cfg.primary.as_ref().expect("primary"),
            cfg.max_retries,
        )?],
        &cfg,
        db.clone(),
    );
    // Answers expire at once: every question is computed on both paths.
    let plain =
        OrchestratorServiceImpl::new(db.clone(), cache.clone(), bus.clone(), Duration::ZERO);
    let with_llm = OrchestratorServiceImpl::new(db.clone(), cache.clone(), bus, Duration::ZERO)
        .with_llm(Arc::new(chain));
    let callers: Vec<(&str, Caller)> = tenants
        .iter()
        .map(|(n, t)| {
            (
                *n,
                Caller {
                    tenant: t.clone(),
                    user: UserId::generate(),
                    role: "owner".into(),
                },
            )
        })
        .collect();
    let caller_of = |q: &Question| callers.iter().find(|(n, _)| *n == q.tenant).map(|(_, c)| c);
    // Warm both paths (catalogues read, connections open).
    for q in &qs {
        if let Some(c) = caller_of(q) {
            ask(&plain, c, q).await?;
            ask(&with_llm, c, q).await?;
        }
    }
    fake.reset();
    let (mut det, mut llm) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        for q in &qs {
            if let Some(c) = caller_of(q) {
                det.push(ask(&plain, c, q).await?);
                llm.push(ask(&with_llm, c, q).await?);
            }
        }
    }
    det.sort();
    llm.sort();
    let calls = fake.requests().len();
    let (d50, l50) = (ms(percentile(&det, 50.0)), ms(percentile(&llm, 50.0)));
    println!(
        "deterministic: p50 {d50:.3} ms  p99 {:.3} ms | with a 0 ms provider: p50 {l50:.3} ms  p99 {:.3} ms | added p50 {:.3} ms (goal <= 2 ms), ratio {:.2} | {} questions x {} rounds, {calls} provider calls",
        ms(percentile(&det, 99.0)),
        ms(percentile(&llm, 99.0)),
        l50 - d50,
        l50 / d50.max(1e-9),
        qs.len(),
        args.rounds
    );
    Ok(())
}
