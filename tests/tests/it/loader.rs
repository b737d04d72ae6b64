//! The loader on PostgreSQL keeps its per-page upkeep to keyed lookups as a tenant's tables grow.

use std::time::Duration;

use smb_core::ids::TenantId;
use smb_core::store::Db;
use smb_core::store::testing::{PgTestDb, add_tenant};
use smb_tests::fake::{Dataset, Sizes};
use smb_workers::load::load_batch;
use smb_workers::transform::{Batch, transform_page};

/// Index tuples read from each index that was read, as PostgreSQL's statistics count them (read as the
/// schema owner, over `url`).
async fn index_reads(url: &str) -> Vec<(String, i64)> {
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap();
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT relname || '.' || indexrelname, idx_tup_read FROM pg_stat_user_indexes WHERE idx_tup_read > 0 \
         ORDER BY 1",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    admin.close().await;
    rows
}

/// The loader reads each page's orders, lines and refunds by their keys, to take their old contribution out
/// of the facts and put the new one in. On a new table other indexes (`orders_customer`, `orders_date`,
/// `refunds_metrics`) estimate about as cheap as the key's own, and the plan a connection cached then (a
/// generic plan, from a prepared statement's sixth execution) was kept as the table grew: every lookup
/// read the tenant's rows. One connection here, as a long sync's worker keeps one, and the first pages
/// small and without refunds, so plans are cached on nearly empty tables. Measured when written: about 11
/// index tuples read per order loaded; with cached plans, 96 million for 8,000 orders.
#[tokio::test]
async fn page_lookups_stay_keyed_as_the_tables_grow() {
    let pg = PgTestDb::create().await.unwrap();
    let db = Db::open_postgres(&pg.app_url, None, 1).await.unwrap();
    let tenant = TenantId::generate();
    add_tenant(&db, &tenant, "Plans", "America/New_York")
        .await
        .unwrap();
    let data = Dataset::generate(Sizes {
        orders: 8_000,
        customers: 400,
        products: 12,
        charges: 0,
        stripe_customers: 0,
    });
    let tz: chrono_tz::Tz = "America/New_York".parse().unwrap();
    let (mut orders, mut refunds) = (0usize, 0usize);
    let mut pages: Vec<Batch> = Vec::new();
    for chunk in data.orders.chunks(100) {
        let mut b = Batch::default();
        transform_page("shopify", "orders", chunk, tz, &mut b);
        b.dedupe();
        assert!(b.rejections.is_empty(), "{:?}", b.rejections);
        pages.push(b);
    }
    // The first pages hold no refund, as a sync's first pages of charges or of a quiet month: the plans are
    // made while the refunds table is empty.
    let quiet: Vec<_> = pages[0]
        .orders
        .iter()
        .filter(|o| o.refunds.is_empty())
        .cloned()
        .collect();
    pages[0].orders.retain(|o| !o.refunds.is_empty());
    let first: Vec<Batch> = quiet
        .chunks(8)
        .map(|c| Batch {
            orders: c.to_vec(),
            ..Batch::default()
        })
        .collect();
    for b in first.iter().chain(&pages) {
        orders += b.orders.len();
        refunds += b.orders.iter().map(|o| o.refunds.len()).sum::<usize>();
        load_batch(&db, &tenant, b).await.unwrap();
    }
    assert!(
        refunds >= 100,
        "the data set has {refunds} refunds: too few to tell"
    );
    // A backend's counts reach the statistics when it is idle or exits: close the pool, then read until
    // they stop changing.
    db.close().await;
    let mut last = Vec::new();
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = index_reads(&pg.owner_url).await;
        if !now.is_empty() && now == last && now.iter().any(|(_, n)| *n > 0) {
            break;
        }
        last = now;
    }
    let read: i64 = last.iter().map(|(_, n)| n).sum();
    assert!(
        read >= orders as i64,
        "the statistics show {read} index tuples read for {orders} orders: {last:?}"
    );
    assert!(
        read <= 20 * orders as i64,
        "{read} index tuples read to load {orders} orders with {refunds} refunds: {last:?}"
    );
    pg.drop_db().await;
}
