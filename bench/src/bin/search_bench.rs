//! Search benchmark. Prints, in one run:
//! 1. recall@1 and recall@3 of our search set (`smb_tests::search_cases`) for keyword, dense and hybrid
//!    retrieval side by side (in-process engine over the fixture tenants' documents, Qdrant Edge);
//! 2. search latency p50/p99: the engine in-process (query embedding + fused query + judging), and the
//!    whole question over HTTP on `smb up` (uncached);
//! 3. indexing cost: the real `smb` binary syncing the fixture tenants (×`--scale`) with search off and with
//!    search on (Edge + the local model), records/s and their ratio.
//!
//! `--big N` runs only a big-shop part instead: N documents in one tenant (words only, no model needed),
//! the process's memory while they are written, and search latency over them.
//!
//! Needs the local model (`smb models install`). Run with a release build:
//! `cargo build --release -p smb -p smb-bench && target/release/search_bench`.

// Linked for its global allocator (mimalloc, as `smb` runs): memory figures compare.
use smb_bench as _;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use clap::Parser;
use serde_json::json;
use smb_search::embed::{DynEmbedder, LocalEmbedder};
use smb_search::index::{Filter, Isolation};
use smb_search::{Mode, SearchEngine, SearchRequest};
use smb_tests::App;
use smb_tests::fake::{Dataset, FakeSaas};
use smb_tests::oracle::fixtures_dir;
use smb_tests::search_cases::CASES;
use smb_workers::transform::{Batch, transform_page};

#[derive(Parser)]
struct Args {
    /// Multiplier of the fixture data for the sync part.
    #[arg(long, default_value_t = 5)]
    scale: usize,
    /// Timed searches per mode for the latency figures.
    #[arg(long, default_value_t = 400)]
    searches: usize,
    /// Also compare tenant isolation by filter and by collection (ten tenants).
    #[arg(long)]
    isolation: bool,
    /// Only the in-process recall (and print every miss): for tuning.
    #[arg(long)]
    recall_only: bool,
    /// Tuning overrides (defaults: the engine's).
    #[arg(long)]
    mmr: Option<f32>,
    #[arg(long)]
    dense_good: Option<f32>,
    #[arg(long)]
    relative: Option<f32>,
    #[arg(long)]
    w_sparse: Option<f32>,
    #[arg(long)]
    w_dense: Option<f32>,
    #[arg(long)]
    prefetch: Option<usize>,
    #[arg(long)]
    fused_weight: Option<f32>,
    #[arg(long)]
    keyword_good: Option<f32>,
    #[arg(long)]
    expand_min: Option<f32>,
    #[arg(long)]
    shared_penalty: Option<f32>,
    #[arg(long)]
    unknown_weight: Option<f32>,
    /// Only the big-shop part: index this many documents (the fixture tenant's records copied under new
    /// ids into one tenant, words only), printing the process's memory as it goes, then time searches.
    #[arg(long)]
    big: Option<usize>,
    /// Another search set: a TSV of `question<TAB>#order` lines (`NONE`: must find nothing).
    #[arg(long)]
    cases: Option<std::path::PathBuf>,
}

fn tuning(a: &Args) -> smb_search::Tuning {
    let mut t = smb_search::Tuning::default();
    if let Some(v) = a.mmr {
        t.mmr_lambda = v;
    }
    if let Some(v) = a.dense_good {
        t.dense_good = v;
    }
    if let Some(v) = a.relative {
        t.relative = v;
    }
    if let Some(v) = a.w_sparse {
        t.weights.0 = v;
    }
    if let Some(v) = a.w_dense {
        t.weights.1 = v;
    }
    if let Some(v) = a.prefetch {
        t.prefetch = v;
    }
    if let Some(v) = a.fused_weight {
        t.fused_weight = v;
    }
    if let Some(v) = a.keyword_good {
        t.keyword_good = v;
    }
    if let Some(v) = a.expand_min {
        t.expand_min = v;
    }
    if let Some(v) = a.shared_penalty {
        t.shared_penalty = v;
    }
    if let Some(v) = a.unknown_weight {
        t.unknown_weight = v;
    }
    t
}

fn load(name: &str) -> Dataset {
    Dataset::from_fixtures(&fixtures_dir().join(name)).expect("fixture")
}

fn docs(tenant: &str, data: &Dataset) -> Vec<smb_search::Doc> {
    let tz: chrono_tz::Tz = "America/New_York".parse().unwrap();
    let tenant: smb_core::ids::TenantId = tenant.parse().unwrap();
    let mut b = Batch::default();
    for (source, stream, records) in [
        ("shopify", "products", &data.products),
        ("shopify", "customers", &data.customers),
        ("shopify", "orders", &data.orders),
        ("stripe", "customers", &data.stripe_customers),
        ("stripe", "charges", &data.charges),
    ] {
        transform_page(source, stream, records, tz, &mut b);
    }
    b.dedupe();
    smb_workers::index::docs(&tenant, &b)
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

/// The search words and kinds the plan gives `q`.
fn plan(q: &str) -> (String, Vec<smb_search::Kind>) {
    let today = NaiveDate::from_ymd_opt(2025, 6, 15).unwrap();
    let plan = smb_orchestrator::nlu::understand(q, today, &Default::default());
    match plan.search {
        Some(s) => (
            s.words,
            s.kinds
                .iter()
                .filter_map(|k| smb_search::Kind::parse(k))
                .collect(),
        ),
        None => (q.to_string(), Vec::new()),
    }
}

fn words(q: &str) -> String {
    plan(q).0
}

async fn engine(
    dir: &std::path::Path,
    embedder: Option<DynEmbedder>,
    iso: Isolation,
) -> SearchEngine {
    smb_bench::edge_engine(dir, embedder, iso, None)
        .await
        .unwrap()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(n) = args.big {
        return big(n, args.searches).await;
    }
    let model_dir = smb_search::model::default_dir();
    anyhow::ensure!(
        smb_search::model::is_installed(&model_dir),
        "install the model first: smb models install"
    );
    let embedder: DynEmbedder = Arc::new(LocalEmbedder::load(&model_dir)?);
    let north = load("northwind");
    let bright = load("brightside");
    let tmp = std::env::temp_dir().join(format!("smb-search-bench-{}", std::process::id()));
    let tenant = "00000000-0000-4000-8000-000000000001";
    let mut all = docs(tenant, &north);
    all.extend(docs("00000000-0000-4000-8000-000000000002", &bright));
    let n_docs = all.len();

    // 1. Indexing in-process (documents already built).
    let e = engine(
        &tmp.join("hybrid"),
        Some(embedder.clone()),
        Isolation::Filter,
    )
    .await
    .with_tuning(tuning(&args));
    let t = Instant::now();
    let stats = e.index(all.clone()).await?;
    e.flush().await?;
    let hybrid_secs = t.elapsed().as_secs_f64();
    let k = engine(&tmp.join("keyword"), None, Isolation::Filter).await;
    let t = Instant::now();
    k.index(all.clone()).await?;
    k.flush().await?;
    let keyword_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let again = e.index(all.clone()).await?;
    let again_secs = t.elapsed().as_secs_f64();
    println!("== indexing in-process ({n_docs} documents of the two fixture tenants)");
    println!(
        "   with the local model: {:.2}s ({:.0} docs/s, {} distinct texts embedded)",
        hybrid_secs,
        n_docs as f64 / hybrid_secs,
        stats.embedded
    );
    println!(
        "   keyword only:         {:.2}s ({:.0} docs/s)",
        keyword_secs,
        n_docs as f64 / keyword_secs
    );
    println!(
        "   again, unchanged:     {:.2}s ({} written)",
        again_secs, again.written
    );

    // 2. Recall per mode.
    let extra: Vec<(String, String)> = match &args.cases {
        Some(p) => std::fs::read_to_string(p)?
            .lines()
            .filter_map(|l| l.split_once('\t'))
            .map(|(q, w)| (q.to_string(), w.trim().to_string()))
            .collect(),
        None => CASES
            .iter()
            .map(|(q, w)| (q.to_string(), w.to_string()))
            .collect(),
    };
    let negatives: Vec<String> = match &args.cases {
        Some(_) => extra
            .iter()
            .filter(|(_, w)| w == "NONE")
            .map(|(q, _)| q.clone())
            .collect(),
        None => smb_tests::search_cases::NOTHING
            .iter()
            .map(|q| q.to_string())
            .collect(),
    };
    let cases: Vec<(String, String)> = extra.into_iter().filter(|(_, w)| w != "NONE").collect();
    println!("\n== recall on the search set ({} questions)", cases.len());
    println!("   {:<8} {:>9} {:>9}", "mode", "recall@1", "recall@3");
    let filter = Filter {
        tenant_id: tenant.into(),
        ..Default::default()
    };
    for mode in [Mode::Keyword, Mode::Semantic, Mode::Hybrid] {
        let (mut at1, mut at3) = (0, 0);
        for (q, want) in &cases {
            let (words, kinds) = plan(q);
            let r = e
                .search(&SearchRequest {
                    filter: Filter {
                        kinds,
                        ..filter.clone()
                    },
                    words: words.clone(),
                    limit: 5,
                    mode: Some(mode),
                })
                .await?;
            // A refund hit stands for its order ("Refund on #1310").
            let pos = r
                .hits
                .iter()
                .position(|h| h.title == *want || h.title == format!("Refund on {want}"));
            at1 += usize::from(pos == Some(0));
            at3 += usize::from(pos.is_some_and(|p| p < 3));
            if args.recall_only && pos != Some(0) {
                let got: Vec<String> = r
                    .hits
                    .iter()
                    .map(|h| {
                        format!(
                            "{} k{:.2} s{:.2} x{}",
                            h.title, h.keyword, h.semantic, h.same_text
                        )
                    })
                    .collect();
                println!(
                    "   MISS {} {q:?} [{words}] want {want}: {got:?}",
                    mode.as_str()
                );
            }
        }
        let n = cases.len() as f64;
        println!(
            "   {:<8} {:>9.3} {:>9.3}",
            mode.as_str(),
            at1 as f64 / n,
            at3 as f64 / n
        );
    }

    if args.recall_only {
        for q in &negatives {
            let (words, kinds) = plan(q);
            let r = e
                .search(&SearchRequest {
                    filter: Filter {
                        kinds,
                        ..filter.clone()
                    },
                    words: words.clone(),
                    limit: 5,
                    mode: None,
                })
                .await?;
            let got: Vec<String> = r
                .hits
                .iter()
                .map(|h| {
                    format!(
                        "{} k{:.2} s{:.2} x{}",
                        h.title, h.keyword, h.semantic, h.same_text
                    )
                })
                .collect();
            println!("   NOTHING {q:?} [{words}]: {got:?}");
        }
        drop(e);
        drop(k);
        let _ = std::fs::remove_dir_all(&tmp);
        return Ok(());
    }

    // 3. Latency in-process.
    println!(
        "\n== search latency in-process ({} searches each)",
        args.searches
    );
    for mode in [Mode::Keyword, Mode::Hybrid] {
        let mut lat = Vec::with_capacity(args.searches);
        for i in 0..args.searches {
            let (q, _) = CASES[i % CASES.len()];
            let w = words(q);
            let t = Instant::now();
            e.search(&SearchRequest {
                filter: filter.clone(),
                words: w,
                limit: 5,
                mode: Some(mode),
            })
            .await?;
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        println!(
            "   {:<8} p50 {:.2} ms  p99 {:.2} ms",
            mode.as_str(),
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.99)
        );
    }
    drop(e);
    drop(k);

    if args.isolation {
        isolation(&tmp, embedder.clone(), &all).await?;
    }
    let _ = std::fs::remove_dir_all(&tmp);

    // 4. End to end: sync with search off and on, then searches over HTTP.
    println!(
        "\n== sync end to end, fixture ×{} (smb binary, SQLite)",
        args.scale
    );
    let mut rates = Vec::new();
    for (label, index) in [("search off", "off"), ("search on", "edge")] {
        let north = Dataset::from_fixtures(&fixtures_dir().join("northwind"))
            .map_err(anyhow::Error::msg)?;
        let data = scale(north, args.scale);
        let records = data.orders.len() + data.customers.len() + data.products.len();
        let app = App::start(&[
            ("SMB_GATEWAY__DEFAULT_RATE_LIMIT", "100000000"),
            ("SMB_SEARCH__INDEX", index),
            ("SMB_LOG", "warn"),
        ]);
        let fake = FakeSaas::start(data).await;
        let owner = app.owner("America/New_York").await;
        let conn = smb_tests::sync::connect_shopify(&app, &owner, &fake).await;
        let t = Instant::now();
        let s = smb_tests::sync::sync(&app, &owner, &conn).await;
        let secs = t.elapsed().as_secs_f64();
        anyhow::ensure!(s["status"] == "succeeded", "sync: {s}");
        let rate = records as f64 / secs;
        rates.push(rate);
        println!("   {label:<10} {records} records in {secs:.1}s: {rate:.0} records/s");
        if index == "edge" {
            let mut lat = Vec::new();
            let mut searches = 0;
            for i in 0..args.searches.min(200) {
                let (q, _) = CASES[i % CASES.len()];
                // A different as_of per request: never a cached answer.
                let as_of = format!(
                    "2025-06-{:02}T1{}:{:02}:00-04:00",
                    1 + i % 28,
                    i % 10,
                    i % 60
                );
                let t = Instant::now();
                let (st, b, _) = app
                    .call(
                        "POST",
                        "/v1/ai/query",
                        Some(json!({"query": q, "as_of": as_of})),
                        Some(&owner.token),
                    )
                    .await;
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
                anyhow::ensure!(st == 200, "{q}: {b}");
                searches += usize::from(b["intent"] == "search");
            }
            println!(
                "   search questions over HTTP, uncached: p50 {:.2} ms  p99 {:.2} ms ({searches} of {} answered as searches)",
                pct(&mut lat, 0.5),
                pct(&mut lat, 0.99),
                lat.len()
            );
        }
        drop(fake);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "   sync with indexing / without: {:.2} (goal ≥ 0.70)",
        rates[1] / rates[0]
    );
    Ok(())
}

/// The northwind data `factor` times, with fresh ids, names and order numbers.
fn scale(d: Dataset, factor: usize) -> Dataset {
    let mut out = Dataset {
        shop: d.shop.clone(),
        products: d.products.clone(),
        ..Default::default()
    };
    for k in 0..factor as u64 {
        for o in &d.orders {
            let mut o = o.clone();
            let id = o["id"].as_u64().unwrap() + k * 100_000_000;
            o["id"] = json!(id);
            let n = o["order_number"].as_u64().unwrap_or(0) + k * 100_000;
            o["order_number"] = json!(n);
            o["name"] = json!(format!("#{n}"));
            if let Some(lines) = o["line_items"].as_array_mut() {
                for l in lines {
                    let lid = l["id"].as_u64().unwrap() + k * 100_000_000;
                    l["id"] = json!(lid);
                }
            }
            if let Some(refunds) = o["refunds"].as_array_mut() {
                for r in refunds {
                    let rid = r["id"].as_u64().unwrap() + k * 100_000_000;
                    r["id"] = json!(rid);
                }
            }
            out.orders.push(o);
        }
        for c in &d.customers {
            let mut c = c.clone();
            let id = c["id"].as_u64().unwrap() + k * 100_000_000;
            c["id"] = json!(id);
            out.customers.push(c);
        }
    }
    out
}

/// Ten tenants' copies of the fixture, isolated by payload filter vs by collection: query latency.
/// Resident memory of this process: (anonymous, file-backed) in MB.
fn rss_mb() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024)
    };
    (field("RssAnon:"), field("RssFile:"))
}

/// A tenant with `n` records in the embedded index (words only, as a shop without the model has): the
/// memory while they are written in the rebuild's batches, then search latency over our search set.
async fn big(n: usize, searches: usize) -> anyhow::Result<()> {
    let tenant = "00000000-0000-4000-8000-000000000001";
    let base = docs(tenant, &load("northwind"));
    let tmp = std::env::temp_dir().join(format!("smb-search-big-{}", std::process::id()));
    let e = engine(&tmp, None, Isolation::Filter).await;
    println!(
        "== a big shop: {n} documents ({} of northwind, copied under new ids), words only",
        base.len()
    );
    let start = Instant::now();
    let (mut peak_anon, mut peak_file) = (0, 0);
    let mut written = 0;
    let all = (0..).flat_map(|k| base.iter().map(move |d| (k, d))).take(n);
    let mut batch = Vec::with_capacity(500);
    for (k, d) in all {
        let mut d = d.clone();
        if k > 0 {
            d.record_id = format!("{}~{k}", d.record_id);
        }
        batch.push(d);
        if batch.len() == 500 {
            e.index(std::mem::take(&mut batch)).await?;
            written += 500;
            let (a, f) = rss_mb();
            (peak_anon, peak_file) = (peak_anon.max(a), peak_file.max(f));
            if written % 100_000 == 0 {
                println!(
                    "   {written:>8} written in {:>5.0} s: RSS {a} MB anonymous + {f} MB file-backed",
                    start.elapsed().as_secs_f64()
                );
            }
        }
    }
    e.index(batch).await?;
    e.flush().await?;
    let (a, f) = rss_mb();
    println!(
        "   all written and optimised in {:.0} s ({:.0} docs/s); RSS now {a} + {f} MB, peak {peak_anon} + {peak_file} MB",
        start.elapsed().as_secs_f64(),
        n as f64 / start.elapsed().as_secs_f64()
    );
    let queries: Vec<(String, Vec<smb_search::Kind>)> =
        CASES.iter().map(|(q, _)| plan(q)).collect();
    let mut times = Vec::with_capacity(searches);
    for i in 0..searches {
        let (words, kinds) = &queries[i % queries.len()];
        let t = Instant::now();
        e.search(&SearchRequest {
            filter: Filter {
                tenant_id: tenant.into(),
                kinds: kinds.clone(),
                ..Default::default()
            },
            words: words.clone(),
            limit: 5,
            mode: None,
        })
        .await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    // The first pass over the set counts each term in the index; later passes find the counts kept.
    let mut first: Vec<f64> = times.iter().take(queries.len()).copied().collect();
    let (a, f) = rss_mb();
    println!(
        "   search over {n} documents, {searches} searches of our search set: p50 {:.1} ms, p99 {:.1} ms; RSS {a} + {f} MB",
        pct(&mut times, 0.5),
        pct(&mut times, 0.99)
    );
    println!(
        "     of which the first pass ({} searches, every term counted afresh): p50 {:.1} ms, max {:.1} ms",
        first.len(),
        pct(&mut first, 0.5),
        pct(&mut first, 1.0)
    );
    drop(e);
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

async fn isolation(
    tmp: &std::path::Path,
    embedder: DynEmbedder,
    all: &[smb_search::Doc],
) -> anyhow::Result<()> {
    println!(
        "\n== tenant isolation, 10 tenants × {} documents",
        all.len()
    );
    for iso in [Isolation::Filter, Isolation::Collection] {
        let e = engine(&tmp.join(format!("{iso:?}")), Some(embedder.clone()), iso).await;
        let tenants: Vec<String> = (0..10)
            .map(|i| format!("00000000-0000-4000-8000-0000000001{i:02}"))
            .collect();
        let t = Instant::now();
        for tn in &tenants {
            let docs: Vec<_> = all
                .iter()
                .map(|d| smb_search::Doc {
                    tenant_id: tn.clone(),
                    ..d.clone()
                })
                .collect();
            e.index(docs).await?;
        }
        e.flush().await?;
        let index_secs = t.elapsed().as_secs_f64();
        let mut lat = Vec::new();
        for i in 0..300 {
            let (q, _) = CASES[i % CASES.len()];
            let w = words(q);
            let t = Instant::now();
            e.search(&SearchRequest {
                filter: Filter {
                    tenant_id: tenants[i % tenants.len()].clone(),
                    ..Default::default()
                },
                words: w,
                limit: 5,
                mode: Some(Mode::Hybrid),
            })
            .await?;
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        println!(
            "   {:<10} indexing {:.1}s, search p50 {:.2} ms p99 {:.2} ms",
            format!("{iso:?}"),
            index_secs,
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.99)
        );
    }
    Ok(())
}
