//! Query latency benchmark. Loads the two fixture tenants (`../shared/fixtures`) into SQLite and into
//! PostgreSQL, then asks every metrics question of `../shared/eval/dev.jsonl` through the orchestrator
//! service in-process (server-side: parse, plan, SQL, answer text, cache, event) and prints p50/p99 latency:
//! uncached (a service whose answer cache expires at once), cached, and the first question after new data
//! (the tenant's data version bumped before each question; product and customer names are then re-read in
//! the background).
//!
//! Run with a release build: `cargo build --release -p smb-bench && target/release/query_bench`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use smb_bench::{ms, percentile};
use smb_core::bus::{DynBus, StoreBus};
use smb_core::cache::{DynCache, MemoryCache, keys};
use smb_core::ids::UserId;
use smb_core::store::Db;
use smb_core::store::testing::{PgTestDb, TempDir};
use smb_core::tenant::Caller;
use smb_orchestrator::OrchestratorServiceImpl;
use smb_proto::orchestrator::v1 as pb;

#[derive(Parser)]
struct Args {
    /// The fixture directory (northwind/, brightside/).
    #[arg(long, default_value = "../shared/fixtures")]
    fixtures: PathBuf,
    /// The questions (JSON lines with tenant, as_of, question, expect.intent).
    #[arg(long, default_value = "../shared/eval/dev.jsonl")]
    questions: PathBuf,
    /// Print each question's median uncached time.
    #[arg(long)]
    verbose: bool,
    /// Times each question is asked per mode.
    #[arg(long, default_value_t = 20)]
    rounds: usize,
}

async fn ask(
    svc: &OrchestratorServiceImpl,
    caller: &Caller,
    q: &smb_bench::fixtures::Question,
) -> anyhow::Result<Duration> {
    let req = pb::ProcessRequest {
        query: q.text.clone(),
        as_of: q.as_of.clone(),
        debug: false,
        ..Default::default()
    };
    let t = Instant::now();
    svc.process(caller, req).await?;
    Ok(t.elapsed())
}

async fn run(
    label: &str,
    db: Db,
    args: &Args,
    qs: &[smb_bench::fixtures::Question],
) -> anyhow::Result<()> {
    let tenants = smb_bench::fixtures::load(&db, &args.fixtures).await?;
    let sqlx_db = db.clone();
    let cache: DynCache = Arc::new(MemoryCache::new(""));
    let bus: DynBus = Arc::new(StoreBus::new(db.clone()));
    let svc = OrchestratorServiceImpl::new(
        db.clone(),
        cache.clone(),
        bus.clone(),
        Duration::from_secs(300),
    );
    // Answers expire the moment they are stored: every question is computed.
    let nocache = OrchestratorServiceImpl::new(db, cache.clone(), bus, Duration::ZERO);
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
    if args.verbose {
        let (_, caller) = &callers[0];
        let day = |d| chrono::NaiveDate::from_ymd_opt(2025, 3, d).unwrap();
        let mut v = Vec::new();
        for _ in 0..50 {
            let t = Instant::now();
            smb_orchestrator::metrics::scalar(
                &sqlx_db,
                &caller.tenant,
                smb_orchestrator::nlu::Metric::Revenue,
                &Default::default(),
                day(3),
                day(9),
            )
            .await?;
            v.push(t.elapsed());
        }
        v.sort();
        println!(
            "  one scalar query (revenue, a week): p50 {:.3} ms",
            ms(percentile(&v, 50.0))
        );
        let t = Instant::now();
        let titles = smb_orchestrator::metrics::product_titles(&sqlx_db, &caller.tenant).await?;
        let t1 = t.elapsed();
        let t = Instant::now();
        let names = smb_orchestrator::metrics::customer_names(&sqlx_db, &caller.tenant).await?;
        let t2 = t.elapsed();
        let t = Instant::now();
        let n_names = names.len();
        let catalog = smb_orchestrator::nlu::Catalog::new(&titles, names);
        println!(
            "  vocabulary: {} titles {:.3} ms, {} names {:.3} ms, catalogue built in {:.3} ms",
            catalog.products.len(),
            ms(t1),
            n_names,
            ms(t2),
            ms(t.elapsed())
        );
        // The understanding step alone, with this tenant's catalogue (typo targets include its names).
        let today = chrono::NaiveDate::from_ymd_opt(2025, 6, 15).unwrap();
        let mut v: Vec<Duration> = qs
            .iter()
            .flat_map(|q| std::iter::repeat_n(q, 5))
            .map(|q| {
                let t = Instant::now();
                let _ = smb_orchestrator::nlu::understand(&q.text, today, &catalog);
                t.elapsed()
            })
            .collect();
        v.sort();
        println!(
            "  nlu::understand alone: p50 {:.3} ms p99 {:.3} ms",
            ms(percentile(&v, 50.0)),
            ms(percentile(&v, 99.0))
        );
        for q in ["hello", "revenue last week"] {
            let mut v = Vec::new();
            for _ in 0..30 {
                let t = Instant::now();
                nocache
                    .process(
                        caller,
                        pb::ProcessRequest {
                            query: q.into(),
                            as_of: "2025-03-10T12:00:00-04:00".into(),
                            debug: false,
                            ..Default::default()
                        },
                    )
                    .await?;
                v.push(t.elapsed());
            }
            v.sort();
            println!("  process({q:?}): p50 {:.3} ms", ms(percentile(&v, 50.0)));
        }
    }
    let (mut uncached, mut cached, mut fresh) = (Vec::new(), Vec::new(), Vec::new());
    let caller_of = |q: &smb_bench::fixtures::Question| {
        callers.iter().find(|(n, _)| *n == q.tenant).map(|(_, c)| c)
    };
    // Steady state: every answer computed, names and titles already read for this data version.
    for _ in 0..args.rounds {
        for q in qs {
            if let Some(c) = caller_of(q) {
                uncached.push(ask(&nocache, c, q).await?);
            }
        }
    }
    for _ in 0..args.rounds {
        for q in qs {
            let Some(c) = caller_of(q) else { continue };
            // New data: the version bump drops cached answers, names and titles.
            cache.incr(&keys::data_version(&c.tenant)).await?;
            fresh.push(ask(&svc, c, q).await?);
            // Names are re-read in the background after new data; answers are cached once they are current.
            tokio::time::sleep(Duration::from_millis(30)).await;
            ask(&svc, c, q).await?;
            cached.push(ask(&svc, c, q).await?);
        }
    }
    if args.verbose {
        let n = qs.len();
        let mut per: Vec<(Duration, &str)> = qs
            .iter()
            .enumerate()
            .map(|(i, q)| {
                let mut v: Vec<Duration> = uncached.iter().skip(i).step_by(n).copied().collect();
                v.sort();
                (percentile(&v, 50.0), q.text.as_str())
            })
            .collect();
        per.sort();
        for (d, q) in per.iter().rev().take(12) {
            println!("  {:>8.3} ms  {q}", ms(*d));
        }
    }
    for v in [&mut uncached, &mut cached, &mut fresh] {
        v.sort();
    }
    println!(
        "{label:<10} uncached: p50 {:>7.3} ms  p99 {:>7.3} ms | cached: p50 {:>6.3} ms  p99 {:>6.3} ms | first after new data: p50 {:>7.3} ms  p99 {:>7.3} ms  ({} questions x {} rounds)",
        ms(percentile(&uncached, 50.0)),
        ms(percentile(&uncached, 99.0)),
        ms(percentile(&cached, 50.0)),
        ms(percentile(&cached, 99.0)),
        ms(percentile(&fresh, 50.0)),
        ms(percentile(&fresh, 99.0)),
        qs.len(),
        args.rounds
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let qs = smb_bench::fixtures::questions(&args.questions)?;
    let dir = TempDir::new()?;
    let sqlite = Db::open_sqlite(&dir.path().join("bench.db"), 4).await?;
    run("SQLite", sqlite, &args, &qs).await?;
    let pg = PgTestDb::create().await?;
    run("PostgreSQL", pg.db.clone(), &args, &qs).await?;
    pg.drop_db().await;
    Ok(())
}
