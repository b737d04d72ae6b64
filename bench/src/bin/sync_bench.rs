//! Sync benchmark. Prints:
//! 1. the load stage (transform done beforehand; `load_batch` per 250-record page, as the workers do) into
//!    PostgreSQL, next to a raw `COPY` of exactly the same rows into an identical empty schema, same run;
//! 2. end-to-end sync records/s: the real `smb` binary syncing a scaled dataset from our fake Shopify and
//!    Stripe (fetch → bus → transform → load → search index), on SQLite and on PostgreSQL. A first sync
//!    makes the fake's pages; the measured syncs are served the same pages as prepared bytes, and the
//!    fake's own ceiling (those pages fetched by a plain client) is printed beside them; on SQLite also
//!    with search off, and each stage alone (transform, the SQLite loader, the search index) in this
//!    process over the same pages.
//!
//! Run with a release build: `cargo build --release -p smb -p smb-bench && target/release/sync_bench`.

// Linked for its global allocator (mimalloc, as `smb` runs): memory figures compare.
use smb_bench as _;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use smb_core::ids::TenantId;
use smb_core::store::Db;
use smb_core::store::testing::{PgTestDb, admin_url};
use smb_tests::App;
use smb_tests::fake::{Dataset, FakeSaas, Sizes};
use smb_workers::load::load_batch;
use smb_workers::transform::{Batch, transform_page};

/// The northwind + brightside fixture sizes; `--scale` multiplies them.
const FIXTURE: Sizes = Sizes {
    orders: 6_870,
    customers: 1_006,
    products: 24,
    charges: 3_470,
    stripe_customers: 250,
};

#[derive(Parser)]
struct Args {
    /// Multiplier of the fixture sizes.
    #[arg(long, default_value_t = 20)]
    scale: usize,
    /// Skip the end-to-end part.
    #[arg(long)]
    load_only: bool,
    /// Only the stages alone (no PostgreSQL figures, no end-to-end syncs).
    #[arg(long)]
    stages_only: bool,
    /// Points a search shard's appendable segment takes before it is sealed, for the index stage alone
    /// (default: the platform's).
    #[arg(long)]
    optimize_after: Option<usize>,
    /// Skip the PostgreSQL load-vs-COPY part and the stages alone: only the end-to-end syncs.
    #[arg(long)]
    end_to_end_only: bool,
    /// Pages per transaction for the PostgreSQL load stage (comma-separated: each is loaded into its own
    /// database, next to one COPY).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pages_per_tx: Vec<usize>,
    /// The end-to-end syncs to run (comma-separated: sqlite, sqlite-off, postgres).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "sqlite,sqlite-off,postgres"
    )]
    syncs: Vec<String>,
}

fn pages(data: &Dataset) -> Vec<Batch> {
    let tz: chrono_tz::Tz = "America/New_York".parse().unwrap();
    let mut out = Vec::new();
    let streams: [(&str, &str, &[serde_json::Value], usize); 5] = [
        ("shopify", "products", &data.products, 250),
        ("shopify", "customers", &data.customers, 250),
        ("shopify", "orders", &data.orders, 250),
        ("stripe", "customers", &data.stripe_customers, 100),
        ("stripe", "charges", &data.charges, 100),
    ];
    for (source, stream, records, size) in streams {
        for chunk in records.chunks(size) {
            let mut b = Batch::default();
            transform_page(source, stream, chunk, tz, &mut b);
            b.dedupe();
            assert!(b.rejections.is_empty(), "{:?}", b.rejections);
            out.push(b);
        }
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
        .replace('\r', "\\r")
}

fn opt(s: &Option<String>) -> String {
    s.as_deref().map_or_else(|| "\\N".to_string(), esc)
}

fn b(v: bool) -> &'static str {
    if v { "t" } else { "f" }
}

/// COPY text-format bodies of every canonical table, for the same rows the loader writes.
fn copy_bodies(t: &str, batches: &[Batch]) -> Vec<(&'static str, String)> {
    let (mut orders, mut lines, mut refunds, mut customers, mut products) = (
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    );
    for batch in batches {
        for ob in &batch.orders {
            let o = &ob.order;
            orders.push_str(&format!(
                "{t}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                esc(&o.source),
                esc(&o.external_id),
                esc(&o.name),
                opt(&o.customer_key),
                opt(&o.customer_ref),
                opt(&o.customer_email),
                opt(&o.customer_name),
                o.created_at,
                o.updated_at,
                o.local_date,
                esc(&o.status),
                b(o.counted),
                b(o.test),
                o.total_minor,
                o.refunded_minor,
                o.discounts_minor,
                esc(&o.currency),
                opt(&o.note),
                esc(&o.raw)
            ));
            for l in &ob.lines {
                lines.push_str(&format!(
                    "{t}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                    esc(&l.source),
                    esc(&l.external_id),
                    esc(&l.order_external_id),
                    opt(&l.product_ref),
                    esc(&l.title),
                    l.quantity,
                    l.price_minor,
                    l.local_date,
                    b(l.counted)
                ));
            }
            for r in &ob.refunds {
                refunds.push_str(&format!(
                    "{t}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                    esc(&r.source),
                    esc(&r.external_id),
                    esc(&r.order_external_id),
                    r.created_at,
                    r.local_date,
                    r.amount_minor,
                    b(r.test),
                    esc(&r.raw)
                ));
            }
        }
        for c in &batch.customers {
            customers.push_str(&format!(
                "{t}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                esc(&c.source),
                esc(&c.external_id),
                opt(&c.email),
                opt(&c.name),
                esc(&c.customer_key),
                c.created_at,
                c.updated_at,
                esc(&c.raw)
            ));
        }
        for p in &batch.products {
            products.push_str(&format!(
                "{t}\t{}\t{}\t{}\t{}\t{}\n",
                esc(&p.source),
                esc(&p.external_id),
                esc(&p.title),
                p.updated_at,
                esc(&p.raw)
            ));
        }
    }
    vec![
        (
            "COPY orders (tenant_id, source, external_id, name, customer_key, customer_ref, customer_email, customer_name, created_at, updated_at, local_date, status, counted, test, total_minor, refunded_minor, discounts_minor, currency, note, raw) FROM STDIN",
            orders,
        ),
        (
            "COPY order_lines (tenant_id, source, external_id, order_external_id, product_ref, title, quantity, price_minor, local_date, counted) FROM STDIN",
            lines,
        ),
        (
            "COPY refunds (tenant_id, source, external_id, order_external_id, created_at, local_date, amount_minor, test, raw) FROM STDIN",
            refunds,
        ),
        (
            "COPY customers (tenant_id, source, external_id, email, name, customer_key, created_at, updated_at, raw) FROM STDIN",
            customers,
        ),
        (
            "COPY products (tenant_id, source, external_id, title, updated_at, raw) FROM STDIN",
            products,
        ),
    ]
}

async fn add_tenant(db: &Db, tenant: &TenantId) -> anyhow::Result<()> {
    Ok(smb_core::store::testing::add_tenant(db, tenant, "Bench", "America/New_York").await?)
}

fn rows(batches: &[Batch]) -> usize {
    batches
        .iter()
        .map(|b| {
            b.customers.len()
                + b.products.len()
                + b.orders
                    .iter()
                    .map(|o| 1 + o.lines.len() + o.refunds.len())
                    .sum::<usize>()
        })
        .sum()
}

/// `batches` regrouped `n` pages to a batch, in order, each group deduplicated as the workers do.
fn grouped(batches: &[Batch], n: usize) -> Vec<Batch> {
    batches
        .chunks(n.max(1))
        .map(|group| {
            let mut b = Batch::default();
            for page in group {
                b.append(page.clone());
            }
            b.dedupe();
            b
        })
        .collect()
}

async fn load_vs_copy(batches: &[Batch], pages_per_tx: &[usize]) -> anyhow::Result<()> {
    let records: usize = batches.iter().map(Batch::accepted).sum();
    let table_rows = rows(batches);
    let tenant = TenantId::generate();

    // The loader, as the workers run it: one transaction per batch of pages.
    let mut loads = Vec::new();
    for &n in pages_per_tx {
        let groups = grouped(batches, n);
        let a = PgTestDb::create().await?;
        add_tenant(&a.db, &tenant).await?;
        let start = Instant::now();
        for batch in &groups {
            load_batch(&a.db, &tenant, batch).await?;
        }
        loads.push((n, start.elapsed()));
        a.drop_db().await;
    }

    // Raw COPY of the same rows as a superuser (no row-level security), one COPY per table.
    let bodies = copy_bodies(tenant.as_str(), batches);
    let c = PgTestDb::create().await?;
    add_tenant(&c.db, &tenant).await?;
    let base = admin_url();
    let url = format!(
        "{}/{}",
        base.rsplit_once('/').map_or(base.as_str(), |(b, _)| b),
        c.name
    );
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await?;
    let mut conn = pool.acquire().await?;
    let start = Instant::now();
    for (stmt, body) in &bodies {
        let mut copy = conn.copy_in_raw(stmt).await?;
        copy.send(body.as_bytes()).await?;
        copy.finish().await?;
    }
    let copy = start.elapsed();
    drop(conn);
    pool.close().await;
    c.drop_db().await;

    let per_s = |d: Duration| records as f64 / d.as_secs_f64();
    println!(
        "load stage into PostgreSQL ({records} records = {table_rows} table rows, {} pages)",
        batches.len()
    );
    for &(n, load) in &loads {
        println!(
            "  smb loader (UNNEST upserts, {n:>2} pages/tx): {:>9.0} records/s  ({:.2} s, ratio to COPY {:.2})",
            per_s(load),
            load.as_secs_f64(),
            copy.as_secs_f64() / load.as_secs_f64()
        );
    }
    println!(
        "  raw COPY, same rows, 1 COPY/table:         {:>9.0} records/s  ({:.2} s)",
        per_s(copy),
        copy.as_secs_f64()
    );
    Ok(())
}

/// Each stage of a sync alone over the same pages, one page after another as the workers take them, in
/// this process: what bounds the end-to-end figure. The workers load a page and index it at the same time.
async fn stages(
    batches: &[Batch],
    transform: Duration,
    model: Option<&std::path::Path>,
    optimize_after: Option<usize>,
) -> anyhow::Result<()> {
    let records: usize = batches.iter().map(Batch::accepted).sum();
    let per_s = |d: Duration| records as f64 / d.as_secs_f64();
    let tenant = TenantId::generate();
    println!(
        "each stage alone ({records} records, {} pages)",
        batches.len()
    );
    println!(
        "  transform (JSON records to canonical rows): {:>9.0} records/s",
        per_s(transform)
    );

    let (db, _dir) = smb_core::store::testing::sqlite().await?;
    add_tenant(&db, &tenant).await?;
    let start = Instant::now();
    for batch in batches {
        load_batch(&db, &tenant, batch).await?;
    }
    println!(
        "  SQLite loader (1 tx/page, facts kept):      {:>9.0} records/s",
        per_s(start.elapsed())
    );
    drop(db);

    let dir = smb_core::store::testing::TempDir::new()?;
    let embedder: Option<smb_search::embed::DynEmbedder> = match model {
        Some(m) => Some(Arc::new(smb_search::embed::LocalEmbedder::load(m)?)),
        None => None,
    };
    let engine = smb_bench::edge_engine(
        dir.path(),
        embedder,
        smb_search::index::Isolation::Collection,
        optimize_after,
    )
    .await?;
    let start = Instant::now();
    for batch in batches {
        engine
            .index(smb_workers::index::docs(&tenant, batch))
            .await?;
    }
    engine.flush().await?;
    println!(
        "  search index (Edge, words{}):          {:>9.0} records/s",
        if model.is_some() { " + model" } else { " only" },
        per_s(start.elapsed())
    );
    Ok(())
}

/// Syncs the fake's whole data into a new `smb up` (both sources at once); records and seconds.
async fn end_to_end(
    fake: &FakeSaas,
    label: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<(i64, f64)> {
    let app = App::start(env);
    let owner = app.owner("America/New_York").await;
    let shop = smb_tests::sync::connect_shopify(&app, &owner, fake).await;
    let stripe = smb_tests::sync::connect_stripe(&app, &owner, fake).await;
    let (served0, prepared0) = (fake.pages_served(), fake.pages_prepared());
    let start = Instant::now();
    let (a, b) = tokio::join!(
        smb_tests::sync::trigger(&app, &owner, &shop),
        smb_tests::sync::trigger(&app, &owner, &stripe)
    );
    let timeout = Duration::from_secs(1800);
    let ra = smb_tests::sync::wait(&app, &owner, &shop, &a, timeout).await;
    let rb = smb_tests::sync::wait(&app, &owner, &stripe, &b, timeout).await;
    let elapsed = start.elapsed();
    let (served, prepared) = (
        fake.pages_served() - served0,
        fake.pages_prepared() - prepared0,
    );
    anyhow::ensure!(
        ra["status"] == "succeeded" && rb["status"] == "succeeded",
        "sync failed: {ra} {rb}"
    );
    let records =
        ra["records_synced"].as_i64().unwrap_or(0) + rb["records_synced"].as_i64().unwrap_or(0);
    let rate = records as f64 / elapsed.as_secs_f64();
    println!(
        "end-to-end sync on {label}: {records} records in {:.2} s = {rate:.0} records/s ({:.0}x the documented 276/s); \
         {served} pages, {prepared} of them prepared",
        elapsed.as_secs_f64(),
        rate / 276.0
    );
    Ok((records, elapsed.as_secs_f64()))
}

/// The fake's own ceiling: the pages of a sync requested again by a plain client, two at a time (the two
/// connectors' pace, each reading its pages in order), with nothing done with them.
async fn ceiling(fake: &FakeSaas, uris: &[String], records: i64) -> anyhow::Result<()> {
    use futures::StreamExt;
    let http = reqwest::Client::new();
    let start = Instant::now();
    let bytes: Vec<usize> = futures::stream::iter(uris)
        .map(|u| {
            let req = http
                .get(format!("{}{u}", fake.url()))
                .header("x-shopify-access-token", smb_tests::fake::SHOP_TOKEN)
                .bearer_auth(smb_tests::fake::STRIPE_KEY);
            async move { anyhow::Ok(req.send().await?.error_for_status()?.bytes().await?.len()) }
        })
        .buffer_unordered(2)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "the fake's ceiling (prepared pages): {} pages, {:.0} MB in {secs:.2} s = {:.0} records/s",
        uris.len(),
        bytes.iter().sum::<usize>() as f64 / 1e6,
        records as f64 / secs
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let data = Dataset::scaled(FIXTURE, args.scale);
    println!(
        "dataset: fixture sizes x{}: {} Shopify orders, {} customers, {} products; {} Stripe charges, {} customers",
        args.scale,
        data.orders.len(),
        data.customers.len(),
        data.products.len(),
        data.charges.len(),
        data.stripe_customers.len()
    );
    let start = Instant::now();
    let batches = pages(&data);
    let transform = start.elapsed();
    if !args.stages_only && !args.end_to_end_only {
        load_vs_copy(&batches, &args.pages_per_tx).await?;
    }
    if args.load_only {
        return Ok(());
    }
    let model = smb_search::model::default_dir();
    let model = smb_search::model::is_installed(&model).then_some(model);
    let search = if model.is_some() {
        "words and the local model"
    } else {
        "words only: the model is not installed"
    };
    println!("search indexing on ({search})");
    if !args.end_to_end_only {
        stages(&batches, transform, model.as_deref(), args.optimize_after).await?;
    }
    if args.stages_only {
        return Ok(());
    }
    // The first sync reads the data and keeps every page it was served; the measured ones get the same
    // pages as prepared bytes.
    let fake = FakeSaas::start(data).await;
    fake.prepare();
    let (records, _) = end_to_end(&fake, "SQLite, pages made while serving", &[]).await?;
    ceiling(&fake, &fake.take_log().await, records).await?;
    let wanted = |s: &str| args.syncs.iter().any(|x| x == s);
    if wanted("sqlite") {
        end_to_end(&fake, "SQLite", &[]).await?;
    }
    if wanted("sqlite-off") {
        end_to_end(
            &fake,
            "SQLite with search off",
            &[("SMB_SEARCH__INDEX", "off")],
        )
        .await?;
    }
    if !wanted("postgres") {
        return Ok(());
    }
    let pg = PgTestDb::create().await?;
    let (url, migrate) = (pg.app_url.clone(), pg.owner_url.clone());
    end_to_end(
        &fake,
        "PostgreSQL",
        &[
            ("SMB_DATABASE__URL", &url),
            ("SMB_DATABASE__MIGRATE_URL", &migrate),
        ],
    )
    .await?;
    pg.drop_db().await;
    Ok(())
}
