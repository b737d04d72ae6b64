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
use serde_json::Value;
use smb_bench::{ms, percentile};
use smb_core::bus::{DynBus, StoreBus};
use smb_core::cache::{DynCache, MemoryCache, keys};
use smb_core::ids::{TenantId, UserId};
use smb_core::store::Db;
use smb_core::store::testing::{PgTestDb, TempDir};
use smb_core::tenant::Caller;
use smb_core::with_global;
use smb_orchestrator::OrchestratorServiceImpl;
use smb_proto::orchestrator::v1 as pb;
use smb_workers::load::load_batch;
use smb_workers::transform::{Batch, transform_page};

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

struct Tenant {
    name: &'static str,
    zone: &'static str,
    streams: &'static [(&'static str, &'static str, &'static str, &'static str)],
}

const TENANTS: [Tenant; 2] = [
    Tenant {
        name: "northwind",
        zone: "America/New_York",
        streams: &[
            ("shopify", "products", "products.json", "products"),
            ("shopify", "customers", "customers.json", "customers"),
            ("shopify", "orders", "orders.json", "orders"),
        ],
    },
    Tenant {
        name: "brightside",
        zone: "America/Los_Angeles",
        streams: &[
            ("stripe", "customers", "customers.json", "data"),
            ("stripe", "charges", "charges.json", "data"),
        ],
    },
];

async fn load(db: &Db, dir: &std::path::Path) -> anyhow::Result<Vec<(&'static str, TenantId)>> {
    let mut out = Vec::new();
    for t in &TENANTS {
        let id = TenantId::generate();
        with_global!(db, write, |tx| {
            sqlx::query("INSERT INTO tenants (id, name, timezone, currency, created_at) VALUES ($1, $2, $3, 'USD', 0)")
                .bind(id.as_str())
                .bind(t.name)
                .bind(t.zone)
                .execute(&mut *tx)
                .await?;
        });
        let tz: chrono_tz::Tz = t.zone.parse()?;
        for (source, stream, file, key) in t.streams {
            let path = dir.join(t.name).join(file);
            let v: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
            let records = v[key]
                .as_array()
                .ok_or_else(|| anyhow::anyhow!("{} has no {key} array", path.display()))?;
            for page in records.chunks(250) {
                let mut b = Batch::default();
                transform_page(source, stream, page, tz, &mut b);
                b.dedupe();
                load_batch(db, &id, &b).await?;
            }
        }
        // The tenant's source as a connector with a finished sync, so answers cover it (a tenant without
        // one is told to connect a source).
        let kind = t.streams[0].0;
        let connector = uuid::Uuid::now_v7().to_string();
        smb_core::with_tenant!(db, &id, write, |tx| {
            sqlx::query("INSERT INTO connectors (id, tenant_id, kind, settings, secret_sealed, created_at, last_sync_at, last_sync_status) VALUES ($1, $2, $3, '{}', '', 0, 1, 'succeeded')")
                .bind(&connector)
                .bind(id.as_str())
                .bind(kind)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO sync_runs (id, tenant_id, connector_id, status, trigger_kind, created_at, finished_at) VALUES ($1, $2, $3, 'succeeded', 'manual', 0, $4)")
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(id.as_str())
                .bind(&connector)
                .bind(chrono::Utc::now().timestamp_millis())
                .execute(&mut *tx)
                .await?;
        });
        out.push((t.name, id));
    }
    Ok(out)
}

struct Question {
    tenant: String,
    as_of: String,
    text: String,
}

fn questions(path: &std::path::Path) -> anyhow::Result<Vec<Question>> {
    let mut out = Vec::new();
    for line in std::fs::read_to_string(path)?.lines() {
        let v: Value = serde_json::from_str(line)?;
        if v["expect"]["intent"] == "metrics" {
            out.push(Question {
                tenant: v["tenant"].as_str().unwrap_or_default().to_string(),
                as_of: v["as_of"].as_str().unwrap_or_default().to_string(),
                text: v["question"].as_str().unwrap_or_default().to_string(),
            });
        }
    }
    Ok(out)
}

async fn ask(
    svc: &OrchestratorServiceImpl,
    caller: &Caller,
    q: &Question,
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

async fn run(label: &str, db: Db, args: &Args, qs: &[Question]) -> anyhow::Result<()> {
    let tenants = load(&db, &args.fixtures).await?;
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
    let caller_of = |q: &Question| callers.iter().find(|(n, _)| *n == q.tenant).map(|(_, c)| c);
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
    let qs = questions(&args.questions)?;
    let dir = TempDir::new()?;
    let sqlite = Db::open_sqlite(&dir.path().join("bench.db"), 4).await?;
    run("SQLite", sqlite, &args, &qs).await?;
    let pg = PgTestDb::create().await?;
    run("PostgreSQL", pg.db.clone(), &args, &qs).await?;
    pg.drop_db().await;
    Ok(())
}
