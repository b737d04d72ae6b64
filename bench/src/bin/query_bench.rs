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
use smb_orchestrator::nlu::Metric;
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
    /// Each fixture tenant's orders, lines, refunds, charges and customers this many times over (distinct
    /// ids, customers and e-mails; the same days and products): 150 gives northwind 1,030,500 orders. Answers
    /// are checked against the published values times the scale.
    #[arg(long, default_value_t = 1)]
    scale: usize,
    /// The stores to run on: sqlite, postgres or both.
    #[arg(long, value_delimiter = ',', default_value = "sqlite,postgres")]
    stores: Vec<String>,
    /// Print the store's plan (EXPLAIN) of the slowest questions' metrics over their periods.
    #[arg(long)]
    explain: bool,
    /// On PostgreSQL, then make northwind this many tenants in one database (copies made by SQL from the
    /// loaded one) and ask every tenant's questions in turn: each tenant's uncached p50 against its
    /// fixture's p50 alone, from the same run.
    #[arg(long, default_value_t = 1)]
    tenants: usize,
    /// Keep the SQLite database at this path (a new file) instead of a temporary one: copied into a data
    /// directory as `smb.db`, it is a big shop for `smb up` (startup, memory).
    #[arg(long)]
    keep: Option<PathBuf>,
}

/// The metrics with one scalar query, by name.
const SCALAR: [Metric; 11] = [
    Metric::Revenue,
    Metric::Orders,
    Metric::Aov,
    Metric::Customers,
    Metric::NewCustomers,
    Metric::ReturningCustomers,
    Metric::Refunds,
    Metric::Units,
    Metric::ProductSales,
    Metric::Discounts,
    Metric::FailedPayments,
];

async fn ask(
    svc: &OrchestratorServiceImpl,
    caller: &Caller,
    q: &smb_bench::fixtures::Question,
) -> anyhow::Result<Duration> {
    Ok(answer(svc, caller, q).await?.0)
}

async fn answer(
    svc: &OrchestratorServiceImpl,
    caller: &Caller,
    q: &smb_bench::fixtures::Question,
) -> anyhow::Result<(Duration, pb::ProcessResponse)> {
    let req = pb::ProcessRequest {
        query: q.text.clone(),
        as_of: q.as_of.clone(),
        debug: false,
        ..Default::default()
    };
    let t = Instant::now();
    let r = svc.process(caller, req).await?;
    Ok((t.elapsed(), r))
}

/// `owner`: PostgreSQL's schema owner, which vacuums the tables after a scaled load.
async fn run(
    label: &str,
    db: Db,
    owner: Option<&str>,
    args: &Args,
    qs: &[smb_bench::fixtures::Question],
) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let mut last = Instant::now();
    let tenants = smb_bench::fixtures::load_scaled(&db, &args.fixtures, args.scale, |name, n| {
        if last.elapsed() > Duration::from_secs(15) {
            println!(
                "  loading {name}: {n} records, {:.0} s",
                t0.elapsed().as_secs_f64()
            );
            last = Instant::now();
        }
    })
    .await?;
    if args.scale > 1 {
        for (name, t) in &tenants {
            let mut n = Vec::new();
            for table in ["orders", "order_lines", "refunds", "customers"] {
                let sql = format!("SELECT COUNT(*) FROM {table} WHERE tenant_id = $1");
                let (c,): (i64,) = smb_core::with_tenant!(&db, t, read, |tx| {
                    sqlx::query_as(&sql)
                        .bind(t.as_str())
                        .fetch_one(&mut *tx)
                        .await?
                });
                n.push(c);
            }
            println!(
                "{label} {name} x{}: {} orders, {} lines, {} refunds, {} customers",
                args.scale, n[0], n[1], n[2], n[3]
            );
        }
        println!("{label}: loaded in {:.1} s", t0.elapsed().as_secs_f64());
        // What autovacuum does after a bulk load, done at once: this machine's PostgreSQL runs with it off,
        // and without a visibility map every index-only scan fetches each heap row (about 3x slower).
        if let Some(url) = owner {
            let t = Instant::now();
            let pool = sqlx::PgPool::connect(url).await?;
            sqlx::query("VACUUM (ANALYZE)").execute(&pool).await?;
            pool.close().await;
            println!(
                "{label}: VACUUM (ANALYZE) after the load, as autovacuum would: {:.1} s",
                t.elapsed().as_secs_f64()
            );
        }
    }
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
    // Every answer against its published value (times the scale).
    let mut wrong = 0;
    for q in qs {
        let (Some(c), Some(want)) = (caller_of(q), q.scaled_value(args.scale)) else {
            continue;
        };
        let (_, r) = answer(&nocache, c, q).await?;
        let got = smb_proto::json::answer(&r)["result"]["value"].as_f64();
        if got.is_none_or(|g| (g - want).abs() > 0.011 + want.abs() * 1e-9) {
            wrong += 1;
            println!(
                "  WRONG {:?}: {got:?}, published x{} = {want}",
                q.text, args.scale
            );
        }
    }
    println!(
        "{label}: {} of {} published values match (x{})",
        qs.iter().filter(|q| q.value.is_some()).count() - wrong,
        qs.iter().filter(|q| q.value.is_some()).count(),
        args.scale
    );
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
    // Each question's uncached median and worst, slowest first.
    let n = qs.iter().filter(|q| caller_of(q).is_some()).count();
    let asked: Vec<&smb_bench::fixtures::Question> =
        qs.iter().filter(|q| caller_of(q).is_some()).collect();
    let mut per: Vec<(Duration, Duration, &smb_bench::fixtures::Question)> = asked
        .iter()
        .enumerate()
        .map(|(i, q)| {
            let mut v: Vec<Duration> = uncached.iter().skip(i).step_by(n).copied().collect();
            v.sort();
            (percentile(&v, 50.0), percentile(&v, 100.0), *q)
        })
        .collect();
    per.sort_by_key(|p| std::cmp::Reverse(p.0));
    if args.verbose || args.scale > 1 {
        println!("  slowest questions, uncached (median, worst):");
        for (d, w, q) in per.iter().take(12) {
            println!(
                "  {:>9.3} ms {:>9.3} ms  {} | {}",
                ms(*d),
                ms(*w),
                q.tenant,
                q.text
            );
        }
    }
    if args.explain {
        for (d, _, q) in per.iter().take(3) {
            let (Some(name), Some((start, end))) = (q.metric.as_deref(), q.period) else {
                continue;
            };
            let Some(metric) = SCALAR.iter().find(|m| m.name() == name) else {
                continue;
            };
            let Some(c) = caller_of(q) else { continue };
            println!(
                "  plan of {name} over {start}..{end} ({:.1} ms median: {:?}):",
                ms(*d),
                q.text
            );
            for line in smb_orchestrator::metrics::explain_scalar(
                &sqlx_db,
                &c.tenant,
                *metric,
                &Default::default(),
                start,
                end,
            )
            .await?
            {
                println!("    {line}");
            }
        }
    }
    let uncached_by_tenant = p50_by_tenant(&asked, &uncached);
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
    if let (Some(url), true) = (owner, args.tenants > 1) {
        many_tenants(
            label,
            &sqlx_db,
            url,
            &nocache,
            &callers,
            &uncached_by_tenant,
            args,
            qs,
        )
        .await?;
    }
    Ok(())
}

/// The uncached p50 of each fixture tenant's questions, from samples in question order (`rounds` times).
fn p50_by_tenant<'a>(
    qs: &[&'a smb_bench::fixtures::Question],
    samples: &[Duration],
) -> Vec<(&'a str, Duration)> {
    let mut by: std::collections::BTreeMap<&str, Vec<Duration>> = Default::default();
    for (q, d) in qs.iter().cycle().zip(samples) {
        by.entry(q.tenant.as_str()).or_default().push(*d);
    }
    by.into_iter()
        .map(|(t, mut v)| {
            v.sort();
            (t, percentile(&v, 50.0))
        })
        .collect()
}

/// `--tenants N` on PostgreSQL: northwind copied until there are N of it in the database, then
/// every tenant's questions asked in turn (round-robin over tenants, so they share the server's caches as
/// a busy database's tenants do), each answer checked against its published value; each tenant's p50
/// against its fixture's p50 when it was alone (`alone`, measured before the copies existed).
#[allow(clippy::too_many_arguments)]
async fn many_tenants(
    label: &str,
    db: &Db,
    owner: &str,
    svc: &OrchestratorServiceImpl,
    callers: &[(&str, Caller)],
    alone: &[(&str, Duration)],
    args: &Args,
    qs: &[smb_bench::fixtures::Question],
) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let admin = sqlx::PgPool::connect(owner).await?;
    let mut all: Vec<(&str, Caller)> = callers.to_vec();
    // Northwind only (1,030,500 orders at x150): ten copies of both fixture tenants would not fit this
    // machine's disk. Brightside stays one tenant among them.
    for (name, c) in callers.iter().filter(|(n, _)| *n == "northwind") {
        for _ in 1..args.tenants {
            let id = smb_bench::fixtures::clone_tenant(&admin, db, &c.tenant, name).await?;
            all.push((
                name,
                Caller {
                    tenant: id,
                    user: UserId::generate(),
                    role: "owner".into(),
                },
            ));
        }
    }
    sqlx::query("VACUUM (ANALYZE)").execute(&admin).await?;
    let (size,): (String,) =
        sqlx::query_as("SELECT pg_size_pretty(pg_database_size(current_database()))")
            .fetch_one(&admin)
            .await?;
    admin.close().await;
    println!(
        "{label}: {} tenants in one database ({size}), copies made and vacuumed in {:.1} s",
        all.len(),
        t0.elapsed().as_secs_f64()
    );
    let mut wrong = 0;
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); all.len()];
    for round in 0..=args.rounds {
        for q in qs {
            for (i, (name, c)) in all.iter().enumerate() {
                if *name != q.tenant {
                    continue;
                }
                let (d, r) = answer(svc, c, q).await?;
                if round == 0 {
                    // The first round checks every answer (and warms nothing the others did not).
                    let got = smb_proto::json::answer(&r)["result"]["value"].as_f64();
                    if let Some(want) = q.scaled_value(args.scale)
                        && got.is_none_or(|g| (g - want).abs() > 0.011 + want.abs() * 1e-9)
                    {
                        wrong += 1;
                    }
                } else {
                    samples[i].push(d);
                }
            }
        }
    }
    println!(
        "{label}: {wrong} wrong published values over {} tenants",
        all.len()
    );
    let mut worst: f64 = 0.0;
    for (i, (name, c)) in all.iter().enumerate() {
        let v = &mut samples[i];
        v.sort();
        let p50 = percentile(v, 50.0);
        let base = alone
            .iter()
            .find(|(n, _)| n == name)
            .map_or(Duration::ZERO, |(_, d)| *d);
        let ratio = p50.as_secs_f64() / base.as_secs_f64().max(1e-9);
        worst = worst.max(ratio);
        println!(
            "  {name:<10} {}  p50 {:>7.3} ms  p99 {:>8.3} ms  ({ratio:.2}x its p50 alone, {:.3} ms)",
            // The end of the id: the start is a timestamp, shared by copies made within a millisecond.
            &c.tenant.as_str()[c.tenant.as_str().len().saturating_sub(8)..],
            ms(p50),
            ms(percentile(v, 99.0)),
            ms(base)
        );
    }
    println!(
        "{label}: {} tenants, the largest p50 growth over alone: {:.0}% (goal: at most 20%)",
        all.len(),
        (worst - 1.0) * 100.0
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let qs = smb_bench::fixtures::questions(&args.questions)?;
    let dir = TempDir::new()?;
    if args.stores.iter().any(|s| s == "sqlite") {
        let path = match &args.keep {
            Some(p) if p.exists() => {
                anyhow::bail!("{} exists: --keep takes a new file", p.display())
            }
            Some(p) => p.clone(),
            None => dir.path().join("bench.db"),
        };
        let sqlite = Db::open_sqlite(&path, 4).await?;
        run("SQLite", sqlite, None, &args, &qs).await?;
    }
    if args.stores.iter().any(|s| s == "postgres") {
        let pg = PgTestDb::create().await?;
        let result = run("PostgreSQL", pg.db.clone(), Some(&pg.owner_url), &args, &qs).await;
        pg.drop_db().await;
        result?;
    }
    Ok(())
}
