//! Loading canonical rows, one transaction per page together with the sync run's counters, one set-based
//! statement per table per page: SQLite `INSERT … SELECT FROM json_each(…)`, PostgreSQL
//! `INSERT … SELECT FROM UNNEST(…)`.
//!
//! Upserts only replace a row when the incoming version is at least as new (`updated_at`); an order that is
//! replaced gets its lines and refunds replaced with it.

use smb_core::Error;
use smb_core::ids::TenantId;
use smb_core::store::{Db, Dialect, set_tenant};

use crate::transform::{Batch, OrderBundle};

const ORDER_COLS: &str = "tenant_id, source, external_id, name, customer_key, customer_ref, customer_email, customer_name, \
    created_at, updated_at, local_date, status, counted, test, total_minor, refunded_minor, discounts_minor, currency, note, raw";
const ORDER_UPDATE: &str = "name = excluded.name, customer_key = excluded.customer_key, customer_ref = excluded.customer_ref, \
    customer_email = excluded.customer_email, customer_name = excluded.customer_name, created_at = excluded.created_at, \
    updated_at = excluded.updated_at, local_date = excluded.local_date, status = excluded.status, counted = excluded.counted, \
    test = excluded.test, total_minor = excluded.total_minor, refunded_minor = excluded.refunded_minor, \
    discounts_minor = excluded.discounts_minor, currency = excluded.currency, note = excluded.note, raw = excluded.raw";
const LINE_COLS: &str = "tenant_id, source, external_id, order_external_id, product_ref, title, quantity, price_minor, local_date, counted";
const LINE_UPDATE: &str = "order_external_id = excluded.order_external_id, product_ref = excluded.product_ref, title = excluded.title, \
    quantity = excluded.quantity, price_minor = excluded.price_minor, local_date = excluded.local_date, counted = excluded.counted";
const REFUND_COLS: &str = "tenant_id, source, external_id, order_external_id, created_at, local_date, amount_minor, test, raw";
const REFUND_UPDATE: &str = "order_external_id = excluded.order_external_id, created_at = excluded.created_at, \
    local_date = excluded.local_date, amount_minor = excluded.amount_minor, test = excluded.test, raw = excluded.raw";
const CUSTOMER_COLS: &str =
    "tenant_id, source, external_id, email, name, customer_key, created_at, updated_at, raw";
const CUSTOMER_UPDATE: &str = "email = excluded.email, name = excluded.name, customer_key = excluded.customer_key, \
    created_at = excluded.created_at, updated_at = excluded.updated_at, raw = excluded.raw";
const PRODUCT_COLS: &str = "tenant_id, source, external_id, title, updated_at, raw";
const PRODUCT_UPDATE: &str =
    "title = excluded.title, updated_at = excluded.updated_at, raw = excluded.raw";

/// The SQL that keeps `customer_firsts` true for a set of customers (`$1` the tenant, `$2` the keys as a JSON
/// array; for PostgreSQL's delete, joined by U+001F): their rows deleted, then recomputed from their counted
/// orders, over all sources (scope `''`) and per source, each customer's orders read from the
/// `orders_customer` index; and the read of the customers a page's orders named before (`$2` the page's
/// (source, id) pairs as JSON).
pub(crate) fn firsts_sql(d: Dialect) -> [String; 3] {
    // Driven from the keys and ids, one index seek each, whatever the statistics say: SQLite keeps a CROSS
    // JOIN's order; on PostgreSQL a LATERAL subquery behind OFFSET 0 cannot be flattened into a hash join,
    // which stale statistics during a bulk load chose (a scan of the tenant's orders per page, 190 ms at
    // 120k orders; 1.7 ms now).
    let (keys, per_rows, stored_rows) = match d {
        Dialect::Sqlite => (
            "IN (SELECT value FROM json_each($2))",
            "json_each($2) j CROSS JOIN orders o WHERE o.tenant_id = $1 AND o.customer_key = j.value AND o.counted",
            "json_each($2) j CROSS JOIN orders o WHERE o.tenant_id = $1 AND o.source = j.value ->> 0 \
             AND o.external_id = j.value ->> 1",
        ),
        Dialect::Postgres => (
            // The keys as one text joined by U+001F: an immutable function of a parameter, so the array is
            // an index condition on the primary key (an ARRAY(SELECT …) sub-plan ran as a filter).
            "= ANY(string_to_array($2, chr(31)))",
            "json_array_elements_text($2::json) AS j(value) CROSS JOIN LATERAL (SELECT x.customer_key, x.source, \
             x.local_date FROM orders x WHERE x.tenant_id = $1 AND x.customer_key = j.value AND x.counted OFFSET 0) o",
            // The ids are taken apart behind a fence of their own: `->>` is not leakproof, so under row-level
            // security a comparison with it could not be an index condition (a filter over the tenant's rows).
            "(SELECT j ->> 0 AS s, j ->> 1 AS e FROM json_array_elements($2::json) j OFFSET 0) k CROSS JOIN LATERAL \
             (SELECT x.customer_key FROM orders x WHERE x.tenant_id = $1 AND x.source = k.s AND x.external_id = k.e \
             OFFSET 0) o",
        ),
    };
    [
        format!("DELETE FROM customer_firsts WHERE tenant_id = $1 AND customer_key {keys}"),
        format!(
            "WITH per AS (SELECT o.customer_key AS k, o.source AS s, MIN(o.local_date) AS d FROM {per_rows} \
             GROUP BY o.customer_key, o.source) \
             INSERT INTO customer_firsts (tenant_id, scope, customer_key, first_day) \
             SELECT $1, s, k, d FROM per UNION ALL SELECT $1, '', k, MIN(d) FROM per GROUP BY k"
        ),
        // The customers of a page's orders as stored before it is written (an order may change customer).
        format!("SELECT DISTINCT o.customer_key FROM {stored_rows}"),
    ]
}

/// Recomputes `customer_firsts` for the customers in `$keys` (`&[String]`) inside the writer's transaction
/// `$tx` (a place: `*tx`, `**tx`).
///
/// On PostgreSQL the tenant's refreshes take turns (a transaction-level advisory lock held to the commit):
/// two writers touching one customer at once — a sync page and a webhook, or two sources sharing an e-mail —
/// would otherwise each compute from a snapshot without the other's orders, and the later commit would
/// keep a stale day. The later one now starts after the earlier commits and sees its orders.
macro_rules! refresh_firsts {
    ($tx:expr, $dialect:expr, $t:expr, $keys:expr) => {{
        if $dialect == smb_core::store::Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7301, hashtext($1))")
                .bind($t)
                .execute(&mut $tx)
                .await?;
            // Every statement here is a nested loop of keyed lookups. Without statistics (a new table,
            // autovacuum off or behind a bulk load) the planner underestimates a tenant's rows and scans
            // them all per page instead (sequential, or a bitmap over the tenant then a hash join);
            // measured: loading slowed to about 1,000 records/s by 300k-800k orders. The settings last to
            // the commit; what follows in the transaction is keyed too.
            sqlx::query(
                "SELECT set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true), \
                 set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)",
            )
            .execute(&mut $tx)
            .await?;
        }
        let keys: &[String] = $keys;
        let json = serde_json::Value::from(keys.to_vec()).to_string();
        let [delete, insert, _] = $crate::load::firsts_sql($dialect);
        sqlx::query(&delete)
            .bind($t)
            .bind(match $dialect {
                smb_core::store::Dialect::Postgres => keys.join("\u{1f}"),
                smb_core::store::Dialect::Sqlite => json.clone(),
            })
            .execute(&mut $tx)
            .await?;
        sqlx::query(&insert)
            .bind($t)
            .bind(&json)
            .execute(&mut $tx)
            .await?;
    }};
}
pub(crate) use refresh_firsts;

/// The customers whose first-order rows a batch's orders can change, read in the writer's transaction `$tx`
/// before the write: the customers the orders name and those they named as stored (`firsts_sql(..)[2]`);
/// `None` when there are none.
macro_rules! firsts_keys {
    ($tx:expr, $dialect:expr, $t:expr, $b:expr) => {{
        let b: &Batch = $b;
        let ids = serde_json::Value::from(
            b.orders
                .iter()
                .map(|x| serde_json::json!([x.order.source, x.order.external_id]))
                .collect::<Vec<_>>(),
        )
        .to_string();
        let [_, _, stored] = firsts_sql($dialect);
        let stored: Vec<(Option<String>,)> = sqlx::query_as(&stored)
            .bind($t)
            .bind(ids)
            .fetch_all(&mut $tx)
            .await?;
        let mut keys: std::collections::BTreeSet<String> =
            stored.into_iter().filter_map(|k| k.0).collect();
        keys.extend(b.orders.iter().filter_map(|x| x.order.customer_key.clone()));
        (!keys.is_empty()).then(|| keys.into_iter().collect::<Vec<String>>())
    }};
}

/// The run bookkeeping that goes into the same transaction as the rows.
pub struct RunProgress<'a> {
    pub sync_id: &'a str,
    /// The bus offset of the page (kept on the run as its last applied offset).
    pub offset: i64,
    /// The page's content digest: a page whose digest the run has already counted is not counted again
    /// (a redelivery, a republished outbox row, or a page fetched again after the lease moved).
    pub digest: &'a str,
    pub rejections: &'a [String],
    /// Written to the outbox with the page when records were rejected (to the dead-letter topic).
    pub dead_letters: &'a [smb_core::bus::Message],
    pub outbox: &'a smb_core::outbox::Outbox,
}

/// Applies a page: rows and run counters in one transaction. `Ok(false)` for a redelivered page.
pub async fn apply_page(
    db: &Db,
    tenant: &TenantId,
    batch: &Batch,
    run: &RunProgress<'_>,
) -> Result<bool, Error> {
    let t = tenant.as_str();
    // The same bookkeeping around each dialect's loader.
    macro_rules! apply {
        ($tx:ident, $loader:ident) => {{
            let first = sqlx::query(
                "INSERT INTO sync_pages (tenant_id, sync_id, digest) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(t)
            .bind(run.sync_id)
            .bind(run.digest)
            .execute(&mut *$tx)
            .await?
            .rows_affected()
                == 1;
            let row: Option<(String,)> =
                sqlx::query_as("SELECT rejections FROM sync_runs WHERE tenant_id = $1 AND id = $2")
                    .bind(t)
                    .bind(run.sync_id)
                    .fetch_optional(&mut *$tx)
                    .await?;
            let rejections = row.map_or_else(|| "[]".to_string(), |(r,)| r);
            if !first {
                false
            } else {
                $loader(&mut $tx, t, batch).await?;
                let mut all: Vec<String> = serde_json::from_str(&rejections).unwrap_or_default();
                all.extend(run.rejections.iter().take(200usize.saturating_sub(all.len())).cloned());
                sqlx::query(
                    "UPDATE sync_runs SET records_synced = records_synced + $3, records_failed = records_failed + $4, \
                     rejections = $5, last_offset = $6 WHERE tenant_id = $1 AND id = $2",
                )
                .bind(t)
                .bind(run.sync_id)
                .bind(batch.accepted() as i64)
                .bind(run.rejections.len() as i64)
                .bind(serde_json::to_string(&all).unwrap_or_else(|_| "[]".into()))
                .bind(run.offset)
                .execute(&mut *$tx)
                .await?;
                smb_core::outbox_insert!($tx, run.outbox, run.dead_letters, smb_core::store::now_ms());
                true
            }
        }};
    }
    Ok(match db {
        Db::Sqlite(pool) => {
            let (_write, mut tx) = smb_core::store::sqlite_begin_write(pool).await?;
            let applied = apply!(tx, sqlite_load);
            tx.commit().await?;
            applied
        }
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            set_tenant(&mut tx, tenant).await?;
            let applied = apply!(tx, postgres_load);
            tx.commit().await?;
            applied
        }
    })
}

/// Loads a batch outside of any sync run (benchmarks, tests): one transaction.
pub async fn load_batch(db: &Db, tenant: &TenantId, batch: &Batch) -> Result<(), Error> {
    let t = tenant.as_str();
    match db {
        Db::Sqlite(pool) => {
            let (_write, mut tx) = smb_core::store::sqlite_begin_write(pool).await?;
            sqlite_load(&mut tx, t, batch).await?;
            tx.commit().await?;
        }
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            set_tenant(&mut tx, tenant).await?;
            postgres_load(&mut tx, t, batch).await?;
            tx.commit().await?;
        }
    }
    Ok(())
}

/// `INSERT … SELECT` of `n` columns from a JSON array of row arrays (`$2`), with `$1` as the tenant.
fn sqlite_bulk(table: &str, cols: &str, n: usize, conflict: &str) -> String {
    let values = (0..n)
        .map(|i| format!("j.value ->> {i}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {table} ({cols}) SELECT $1, {values} FROM json_each($2) j WHERE true \
         ON CONFLICT (tenant_id, source, external_id) DO UPDATE SET {conflict}"
    )
}

/// SQLite: one statement per table per page, rows passed as one JSON parameter (`json_each`), the way the
/// PostgreSQL loader passes arrays to `UNNEST`; a statement per row would cross sqlx's worker thread per row.
async fn sqlite_load(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    t: &str,
    b: &Batch,
) -> Result<(), sqlx::Error> {
    use serde_json::json;
    if !b.orders.is_empty() {
        let firsts = firsts_keys!(**tx, Dialect::Sqlite, t, b);
        let rows: Vec<serde_json::Value> = b
            .orders
            .iter()
            .map(|x| {
                let o = &x.order;
                json!([
                    o.source,
                    o.external_id,
                    o.name,
                    o.customer_key,
                    o.customer_ref,
                    o.customer_email,
                    o.customer_name,
                    o.created_at,
                    o.updated_at,
                    o.local_date.to_string(),
                    o.status,
                    o.counted,
                    o.test,
                    o.total_minor,
                    o.refunded_minor,
                    o.discounts_minor,
                    o.currency,
                    o.note,
                    o.raw
                ])
            })
            .collect();
        let sql = format!(
            "{} WHERE excluded.updated_at >= orders.updated_at RETURNING source, external_id",
            sqlite_bulk("orders", ORDER_COLS, 19, ORDER_UPDATE)
        );
        let applied: Vec<(String, String)> = sqlx::query_as(&sql)
            .bind(t)
            .bind(serde_json::Value::Array(rows).to_string())
            .fetch_all(&mut **tx)
            .await?;
        let applied: std::collections::HashSet<(String, String)> = applied.into_iter().collect();
        let replaced: Vec<&OrderBundle> = b
            .orders
            .iter()
            .filter(|x| applied.contains(&(x.order.source.clone(), x.order.external_id.clone())))
            .collect();
        let keys: Vec<serde_json::Value> = replaced
            .iter()
            .map(|x| json!([x.order.source, x.order.external_id]))
            .collect();
        let keys = serde_json::Value::Array(keys).to_string();
        for table in ["order_lines", "refunds"] {
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE tenant_id = $1 AND (source, order_external_id) IN \
                 (SELECT j.value ->> 0, j.value ->> 1 FROM json_each($2) j)"
            ))
            .bind(t)
            .bind(&keys)
            .execute(&mut **tx)
            .await?;
        }
        let lines: Vec<serde_json::Value> = replaced
            .iter()
            .flat_map(|x| x.lines.iter())
            .map(|l| {
                json!([
                    l.source,
                    l.external_id,
                    l.order_external_id,
                    l.product_ref,
                    l.title,
                    l.quantity,
                    l.price_minor,
                    l.local_date.to_string(),
                    l.counted
                ])
            })
            .collect();
        if !lines.is_empty() {
            sqlx::query(&sqlite_bulk("order_lines", LINE_COLS, 9, LINE_UPDATE))
                .bind(t)
                .bind(serde_json::Value::Array(lines).to_string())
                .execute(&mut **tx)
                .await?;
        }
        let refunds: Vec<serde_json::Value> = replaced
            .iter()
            .flat_map(|x| x.refunds.iter())
            .map(|r| {
                json!([
                    r.source,
                    r.external_id,
                    r.order_external_id,
                    r.created_at,
                    r.local_date.to_string(),
                    r.amount_minor,
                    r.test,
                    r.raw
                ])
            })
            .collect();
        if !refunds.is_empty() {
            sqlx::query(&sqlite_bulk("refunds", REFUND_COLS, 8, REFUND_UPDATE))
                .bind(t)
                .bind(serde_json::Value::Array(refunds).to_string())
                .execute(&mut **tx)
                .await?;
        }
        if let Some(keys) = &firsts {
            refresh_firsts!(**tx, Dialect::Sqlite, t, keys);
        }
    }
    if !b.customers.is_empty() {
        let rows: Vec<serde_json::Value> = b
            .customers
            .iter()
            .map(|c| {
                json!([
                    c.source,
                    c.external_id,
                    c.email,
                    c.name,
                    c.customer_key,
                    c.created_at,
                    c.updated_at,
                    c.raw
                ])
            })
            .collect();
        sqlx::query(&format!(
            "{} WHERE excluded.updated_at >= customers.updated_at",
            sqlite_bulk("customers", CUSTOMER_COLS, 8, CUSTOMER_UPDATE)
        ))
        .bind(t)
        .bind(serde_json::Value::Array(rows).to_string())
        .execute(&mut **tx)
        .await?;
    }
    if !b.products.is_empty() {
        let rows: Vec<serde_json::Value> = b
            .products
            .iter()
            .map(|p| json!([p.source, p.external_id, p.title, p.updated_at, p.raw]))
            .collect();
        sqlx::query(&format!(
            "{} WHERE excluded.updated_at >= products.updated_at",
            sqlite_bulk("products", PRODUCT_COLS, 5, PRODUCT_UPDATE)
        ))
        .bind(t)
        .bind(serde_json::Value::Array(rows).to_string())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

async fn postgres_load(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    t: &str,
    b: &Batch,
) -> Result<(), sqlx::Error> {
    if !b.orders.is_empty() {
        let firsts = firsts_keys!(**tx, Dialect::Postgres, t, b);
        let o: Vec<_> = b.orders.iter().map(|x| &x.order).collect();
        let sql = format!(
            "INSERT INTO orders ({ORDER_COLS}) SELECT $1, u.source, u.external_id, u.name, u.customer_key, u.customer_ref, \
             u.customer_email, u.customer_name, u.created_at, u.updated_at, u.local_date, u.status, u.counted, u.test, u.total_minor, \
             u.refunded_minor, u.discounts_minor, u.currency, u.note, u.raw::jsonb \
             FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[], \
             $10::bigint[], $11::date[], $12::text[], $13::bool[], $14::bool[], $15::bigint[], $16::bigint[], $17::bigint[], \
             $18::text[], $19::text[], $20::text[]) AS u(source, external_id, name, customer_key, customer_ref, customer_email, \
             customer_name, created_at, updated_at, local_date, status, counted, test, total_minor, refunded_minor, discounts_minor, \
             currency, note, raw) \
             ON CONFLICT (tenant_id, source, external_id) DO UPDATE SET {ORDER_UPDATE} WHERE excluded.updated_at >= orders.updated_at \
             RETURNING source, external_id, (xmax = 0) AS inserted"
        );
        let applied: Vec<(String, String, bool)> = sqlx::query_as(&sql)
            .bind(t)
            .bind(o.iter().map(|x| x.source.clone()).collect::<Vec<_>>())
            .bind(o.iter().map(|x| x.external_id.clone()).collect::<Vec<_>>())
            .bind(o.iter().map(|x| x.name.clone()).collect::<Vec<_>>())
            .bind(o.iter().map(|x| x.customer_key.clone()).collect::<Vec<_>>())
            .bind(o.iter().map(|x| x.customer_ref.clone()).collect::<Vec<_>>())
            .bind(
                o.iter()
                    .map(|x| x.customer_email.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(
                o.iter()
                    .map(|x| x.customer_name.clone())
                    .collect::<Vec<_>>(),
            )
            .bind(o.iter().map(|x| x.created_at).collect::<Vec<_>>())
            .bind(o.iter().map(|x| x.updated_at).collect::<Vec<_>>())
            .bind(o.iter().map(|x| x.local_date).collect::<Vec<_>>())
            .bind(o.iter().map(|x| x.status.clone()).collect::<Vec<_>>())
            .bind(o.iter().map(|x| x.counted).collect::<Vec<_>>())
            .bind(o.iter().map(|x| x.test).collect::<Vec<_>>())
            .bind(o.iter().map(|x| x.total_minor).collect::<Vec<_>>())
            .bind(o.iter().map(|x| x.refunded_minor).collect::<Vec<_>>())
            .bind(o.iter().map(|x| x.discounts_minor).collect::<Vec<_>>())
            .bind(o.iter().map(|x| x.currency.clone()).collect::<Vec<_>>())
            .bind(o.iter().map(|x| x.note.clone()).collect::<Vec<_>>())
            .bind(o.iter().map(|x| x.raw.clone()).collect::<Vec<_>>())
            .fetch_all(&mut **tx)
            .await?;
        // Rows that were inserted have no old lines or refunds; only replaced ones need them cleared.
        let updated: Vec<(String, String)> = applied
            .iter()
            .filter(|(_, _, inserted)| !inserted)
            .map(|(s, e, _)| (s.clone(), e.clone()))
            .collect();
        let applied: std::collections::HashSet<(String, String)> =
            applied.into_iter().map(|(s, e, _)| (s, e)).collect();
        let replaced: Vec<&OrderBundle> = b
            .orders
            .iter()
            .filter(|x| applied.contains(&(x.order.source.clone(), x.order.external_id.clone())))
            .collect();
        if !updated.is_empty() {
            let (srcs, ids): (Vec<String>, Vec<String>) = updated.into_iter().unzip();
            for table in ["order_lines", "refunds"] {
                sqlx::query(&format!(
                    "DELETE FROM {table} t USING UNNEST($2::text[], $3::text[]) AS u(source, order_external_id) \
                     WHERE t.tenant_id = $1 AND t.source = u.source AND t.order_external_id = u.order_external_id"
                ))
                .bind(t)
                .bind(&srcs)
                .bind(&ids)
                .execute(&mut **tx)
                .await?;
            }
        }
        let lines: Vec<_> = replaced.iter().flat_map(|x| x.lines.iter()).collect();
        if !lines.is_empty() {
            sqlx::query(&format!(
                "INSERT INTO order_lines ({LINE_COLS}) SELECT $1, u.* FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], \
                 $6::text[], $7::bigint[], $8::bigint[], $9::date[], $10::bool[]) AS u \
                 ON CONFLICT (tenant_id, source, external_id) DO UPDATE SET {LINE_UPDATE}"
            ))
            .bind(t)
            .bind(lines.iter().map(|x| x.source.clone()).collect::<Vec<_>>())
            .bind(lines.iter().map(|x| x.external_id.clone()).collect::<Vec<_>>())
            .bind(lines.iter().map(|x| x.order_external_id.clone()).collect::<Vec<_>>())
            .bind(lines.iter().map(|x| x.product_ref.clone()).collect::<Vec<_>>())
            .bind(lines.iter().map(|x| x.title.clone()).collect::<Vec<_>>())
            .bind(lines.iter().map(|x| x.quantity).collect::<Vec<_>>())
            .bind(lines.iter().map(|x| x.price_minor).collect::<Vec<_>>())
            .bind(lines.iter().map(|x| x.local_date).collect::<Vec<_>>())
            .bind(lines.iter().map(|x| x.counted).collect::<Vec<_>>())
            .execute(&mut **tx)
            .await?;
        }
        let refunds: Vec<_> = replaced.iter().flat_map(|x| x.refunds.iter()).collect();
        if !refunds.is_empty() {
            sqlx::query(&format!(
                "INSERT INTO refunds ({REFUND_COLS}) SELECT $1, u.source, u.external_id, u.order_external_id, u.created_at, \
                 u.local_date, u.amount_minor, u.test, u.raw::jsonb FROM UNNEST($2::text[], $3::text[], $4::text[], $5::bigint[], \
                 $6::date[], $7::bigint[], $8::bool[], $9::text[]) AS u(source, external_id, order_external_id, created_at, \
                 local_date, amount_minor, test, raw) \
                 ON CONFLICT (tenant_id, source, external_id) DO UPDATE SET {REFUND_UPDATE}"
            ))
            .bind(t)
            .bind(refunds.iter().map(|x| x.source.clone()).collect::<Vec<_>>())
            .bind(refunds.iter().map(|x| x.external_id.clone()).collect::<Vec<_>>())
            .bind(refunds.iter().map(|x| x.order_external_id.clone()).collect::<Vec<_>>())
            .bind(refunds.iter().map(|x| x.created_at).collect::<Vec<_>>())
            .bind(refunds.iter().map(|x| x.local_date).collect::<Vec<_>>())
            .bind(refunds.iter().map(|x| x.amount_minor).collect::<Vec<_>>())
            .bind(refunds.iter().map(|x| x.test).collect::<Vec<_>>())
            .bind(refunds.iter().map(|x| x.raw.clone()).collect::<Vec<_>>())
            .execute(&mut **tx)
            .await?;
        }
        if let Some(keys) = &firsts {
            refresh_firsts!(**tx, Dialect::Postgres, t, keys);
        }
    }
    if !b.customers.is_empty() {
        let c = &b.customers;
        sqlx::query(&format!(
            "INSERT INTO customers ({CUSTOMER_COLS}) SELECT $1, u.source, u.external_id, u.email, u.name, u.customer_key, \
             u.created_at, u.updated_at, u.raw::jsonb FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
             $7::bigint[], $8::bigint[], $9::text[]) AS u(source, external_id, email, name, customer_key, created_at, updated_at, raw) \
             ON CONFLICT (tenant_id, source, external_id) DO UPDATE SET {CUSTOMER_UPDATE} WHERE excluded.updated_at >= customers.updated_at"
        ))
        .bind(t)
        .bind(c.iter().map(|x| x.source.clone()).collect::<Vec<_>>())
        .bind(c.iter().map(|x| x.external_id.clone()).collect::<Vec<_>>())
        .bind(c.iter().map(|x| x.email.clone()).collect::<Vec<_>>())
        .bind(c.iter().map(|x| x.name.clone()).collect::<Vec<_>>())
        .bind(c.iter().map(|x| x.customer_key.clone()).collect::<Vec<_>>())
        .bind(c.iter().map(|x| x.created_at).collect::<Vec<_>>())
        .bind(c.iter().map(|x| x.updated_at).collect::<Vec<_>>())
        .bind(c.iter().map(|x| x.raw.clone()).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    if !b.products.is_empty() {
        let p = &b.products;
        sqlx::query(&format!(
            "INSERT INTO products ({PRODUCT_COLS}) SELECT $1, u.source, u.external_id, u.title, u.updated_at, u.raw::jsonb \
             FROM UNNEST($2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[]) AS u(source, external_id, title, updated_at, raw) \
             ON CONFLICT (tenant_id, source, external_id) DO UPDATE SET {PRODUCT_UPDATE} WHERE excluded.updated_at >= products.updated_at"
        ))
        .bind(t)
        .bind(p.iter().map(|x| x.source.clone()).collect::<Vec<_>>())
        .bind(p.iter().map(|x| x.external_id.clone()).collect::<Vec<_>>())
        .bind(p.iter().map(|x| x.title.clone()).collect::<Vec<_>>())
        .bind(p.iter().map(|x| x.updated_at).collect::<Vec<_>>())
        .bind(p.iter().map(|x| x.raw.clone()).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// A refund on its own (a `refunds/create` webhook): upserts the refund, recomputes its order's refunded
/// total and marks the order at least as new as the refund, so an older copy of the order arriving later
/// cannot drop it. If the order is not there yet, the refund waits for it.
pub async fn apply_refund(
    db: &Db,
    tenant: &TenantId,
    r: &crate::transform::RefundRow,
) -> Result<(), Error> {
    let t = tenant.as_str();
    let raw = match db {
        Db::Sqlite(_) => "$9",
        Db::Postgres(_) => "$9::jsonb",
    };
    let insert = format!(
        "INSERT INTO refunds ({REFUND_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, {raw}) \
         ON CONFLICT (tenant_id, source, external_id) DO UPDATE SET {REFUND_UPDATE}"
    );
    smb_core::with_tenant!(db, tenant, write, |tx| {
        sqlx::query(&insert)
            .bind(t)
            .bind(&r.source)
            .bind(&r.external_id)
            .bind(&r.order_external_id)
            .bind(r.created_at)
            .bind(r.local_date)
            .bind(r.amount_minor)
            .bind(r.test)
            .bind(&r.raw)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE orders SET refunded_minor = (SELECT COALESCE(SUM(f.amount_minor), 0) FROM refunds f \
             WHERE f.tenant_id = orders.tenant_id AND f.source = orders.source AND f.order_external_id = orders.external_id), \
             updated_at = CASE WHEN updated_at < $3 THEN $3 ELSE updated_at END \
             WHERE tenant_id = $1 AND source = 'shopify' AND external_id = $2",
        )
        .bind(t)
        .bind(&r.order_external_id)
        .bind(r.created_at)
        .execute(&mut *tx)
        .await?;
    });
    Ok(())
}
