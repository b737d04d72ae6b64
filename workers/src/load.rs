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

/// The rows of `table` that belong to a set of orders (`$1` the tenant, `$2` the orders' (source, id) pairs as
/// JSON), joined by `id_col` and narrowed by `cond` (on alias `x`): a FROM clause whose rows are `x` with
/// `cols`. Driven from the ids, one index seek each, whatever the statistics say: SQLite keeps a CROSS JOIN's
/// order; on PostgreSQL a LATERAL subquery behind OFFSET 0 cannot be flattened into a hash join, which stale
/// statistics during a bulk load chose (a scan of the tenant's orders per page, 190 ms at 120k orders;
/// 1.7 ms now). The ids are taken apart behind a fence of their own: `->>` is not leakproof, so under
/// row-level security a comparison with it could not be an index condition (a filter over the tenant's rows).
///
/// `cols` must name every column `cond` reads. On PostgreSQL the lookup inside the lateral fence holds only
/// the key (tenant, source, id), and `cond` filters its few rows outside, so no other index matches more of
/// the lookup's conditions than the key's own. With `cond` inside, a metrics index that also covers its
/// columns (`refunds_metrics`: tenant, day, test, source) estimated a little cheaper on a new, small table;
/// a connection's cached generic plan kept it as the table grew (see [`tenant_turn!`]).
fn page_rows(d: Dialect, table: &str, id_col: &str, cols: &str, cond: &str) -> String {
    // SQLite without statistics prefers a covering index over the tenant's rows (`order_lines_metrics`: a
    // scan of every line of the tenant per id, 60 records/s by 7,000 orders) to the one on the order.
    let indexed = match table {
        "order_lines" => " INDEXED BY order_lines_order",
        "refunds" => " INDEXED BY refunds_order",
        _ => "",
    };
    match d {
        Dialect::Sqlite => format!(
            "json_each($2) j CROSS JOIN {table} x{indexed} WHERE x.tenant_id = $1 AND x.source = j.value ->> 0 \
             AND x.{id_col} = j.value ->> 1{cond}"
        ),
        Dialect::Postgres => format!(
            "(SELECT j ->> 0 AS s, j ->> 1 AS e FROM json_array_elements($2::json) j OFFSET 0) k CROSS JOIN LATERAL \
             (SELECT {cols} FROM {table} x WHERE x.tenant_id = $1 AND x.source = k.s AND x.{id_col} = k.e \
             OFFSET 0) x WHERE true{cond}"
        ),
    }
}

/// The SQL that keeps `customer_firsts` true for a set of customers (`$1` the tenant, `$2` the keys as a JSON
/// array; for PostgreSQL's delete, joined by U+001F): their rows deleted, then recomputed from their counted
/// orders, over all sources (scope `''`) and per source, each customer's orders read from the
/// `orders_customer` index; and the read of a page's orders as stored before it is written, with their
/// customers (`$2` the page's (source, id) pairs as JSON).
pub(crate) fn firsts_sql(d: Dialect) -> &'static [String; 3] {
    static SQL: std::sync::LazyLock<[[String; 3]; 2]> = std::sync::LazyLock::new(|| {
        [
            build_firsts_sql(Dialect::Sqlite),
            build_firsts_sql(Dialect::Postgres),
        ]
    });
    per_dialect(&SQL, d)
}

/// The statements of a dialect from a pair built once (every write of orders runs them).
fn per_dialect<T>(pair: &'static [T; 2], d: Dialect) -> &'static T {
    &pair[usize::from(d == Dialect::Postgres)]
}

fn build_firsts_sql(d: Dialect) -> [String; 3] {
    let (keys, per_rows) = match d {
        Dialect::Sqlite => (
            "IN (SELECT value FROM json_each($2))",
            "json_each($2) j CROSS JOIN orders o WHERE o.tenant_id = $1 AND o.customer_key = j.value AND o.counted",
        ),
        Dialect::Postgres => (
            // The keys as one text joined by U+001F: an immutable function of a parameter, so the array is
            // an index condition on the primary key (an ARRAY(SELECT …) sub-plan ran as a filter).
            "= ANY(string_to_array($2, chr(31)))",
            "json_array_elements_text($2::json) AS j(value) CROSS JOIN LATERAL (SELECT x.customer_key, x.source, \
             x.local_date FROM orders x WHERE x.tenant_id = $1 AND x.customer_key = j.value AND x.counted OFFSET 0) o",
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
        // A page's orders as stored before it is written, with their customers (an order may change
        // customer).
        format!(
            "SELECT x.source, x.external_id, x.customer_key FROM {}",
            page_rows(
                d,
                "orders",
                "external_id",
                "x.source, x.external_id, x.customer_key",
                ""
            )
        ),
    ]
}

/// The SQL that makes customers' first days earlier where new orders say so (`$1` the tenant, `$2` a JSON
/// array of [scope, customer, day], each (scope, customer) once): what a new order can do to them, without
/// reading the customers' other orders.
fn earliest_sql(d: Dialect) -> &'static str {
    match d {
        Dialect::Sqlite => {
            "INSERT INTO customer_firsts (tenant_id, scope, customer_key, first_day) \
             SELECT $1, j.value ->> 0, j.value ->> 1, j.value ->> 2 FROM json_each($2) j WHERE true \
             ON CONFLICT (tenant_id, customer_key, scope) DO UPDATE SET first_day = excluded.first_day \
             WHERE excluded.first_day < customer_firsts.first_day"
        }
        Dialect::Postgres => {
            "INSERT INTO customer_firsts (tenant_id, scope, customer_key, first_day) \
             SELECT $1, j ->> 0, j ->> 1, CAST(j ->> 2 AS date) FROM json_array_elements($2::json) j \
             ON CONFLICT (tenant_id, customer_key, scope) DO UPDATE SET first_day = excluded.first_day \
             WHERE excluded.first_day < customer_firsts.first_day"
        }
    }
}

/// What a batch's write of orders must do to the facts and first days, decided from the batch and its
/// orders as stored before the write (read after [`tenant_turn!`]).
///
/// Only orders stored before contribute to the facts before the write, so the subtracting pass reads those
/// alone, and none at all for a page of new orders — except refunds, which can wait for their order
/// (`apply_refund`); lines are only ever written and deleted with their order. A customer's first day can
/// only move earlier with a new order, so the customers of new orders get an upsert of their earliest day;
/// those of orders that were stored (as they were, and as they are now) are recomputed from all their
/// orders.
pub(crate) struct Upkeep {
    /// Every order of the batch, as (source, id) pairs for [`page_rows`].
    pub(crate) all: String,
    /// The batch's orders that were stored before the write, likewise; `None` when there were none.
    pub(crate) stored: Option<String>,
    /// Customers whose first days are recomputed from their orders.
    pub(crate) recompute: Vec<String>,
    /// [scope, customer, day] for the new orders' other customers, as JSON for [`earliest_sql`].
    pub(crate) earliest: Option<String>,
}

impl Upkeep {
    /// `all`: the batch's orders from [`order_ids`]; `stored`: those of them stored before the write, as
    /// (source, id, customer).
    pub(crate) fn new(
        b: &Batch,
        all: String,
        stored: Vec<(String, String, Option<String>)>,
    ) -> Self {
        use std::collections::{BTreeMap, BTreeSet, HashMap};
        let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
        for x in &b.orders {
            *seen
                .entry((x.order.source.as_str(), x.order.external_id.as_str()))
                .or_default() += 1;
        }
        let was: BTreeSet<(&str, &str)> = stored
            .iter()
            .map(|(s, e, _)| (s.as_str(), e.as_str()))
            .collect();
        let mut recompute: BTreeSet<String> =
            stored.iter().filter_map(|(_, _, k)| k.clone()).collect();
        // An order named twice in one batch is recomputed rather than trusted to be the one stored.
        for x in &b.orders {
            let id = (x.order.source.as_str(), x.order.external_id.as_str());
            if was.contains(&id) || seen[&id] > 1 {
                recompute.extend(x.order.customer_key.clone());
            }
        }
        let mut earliest: BTreeMap<(&str, &str), chrono::NaiveDate> = BTreeMap::new();
        for x in &b.orders {
            let o = &x.order;
            let Some(k) = o.customer_key.as_deref() else {
                continue;
            };
            if !o.counted || recompute.contains(k) {
                continue;
            }
            for scope in ["", o.source.as_str()] {
                let d = earliest.entry((scope, k)).or_insert(o.local_date);
                *d = (*d).min(o.local_date);
            }
        }
        let stored = (!stored.is_empty())
            .then(|| order_ids(stored.iter().map(|(s, e, _)| (s.as_str(), e.as_str()))));
        let earliest = (!earliest.is_empty()).then(|| {
            serde_json::Value::from(
                earliest
                    .into_iter()
                    .map(|((s, k), d)| serde_json::json!([s, k, d.to_string()]))
                    .collect::<Vec<_>>(),
            )
            .to_string()
        });
        Upkeep {
            all,
            stored,
            recompute: recompute.into_iter().collect(),
            earliest,
        }
    }
}

/// The SQL that keeps the facts of migration 0008 (`daily_orders`, `daily_lines`, `daily_refunds`,
/// `customer_years`) true: four statements that add `$3` (1 or -1) times what a set of orders (`$2`, as for
/// [`page_rows`]) and their lines and refunds contribute as stored now, then four that delete the rows left
/// at zero.
pub(crate) fn facts_sql(d: Dialect) -> &'static [String; 8] {
    static SQL: std::sync::LazyLock<[[String; 8]; 2]> = std::sync::LazyLock::new(|| {
        [
            build_facts_sql(Dialect::Sqlite),
            build_facts_sql(Dialect::Postgres),
        ]
    });
    per_dialect(&SQL, d)
}

fn build_facts_sql(d: Dialect) -> [String; 8] {
    let (sign, year) = match d {
        Dialect::Sqlite => ("$3", "substr(x.local_date, 1, 4)"),
        Dialect::Postgres => ("$3::bigint", "to_char(x.local_date, 'YYYY')"),
    };
    let sum = |e: &str| format!("CAST({sign} * SUM({e}) AS BIGINT)");
    let add = |cols: &[&str], table: &str| {
        cols.iter()
            .map(|c| format!("{c} = {table}.{c} + excluded.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    [
        format!(
            "INSERT INTO daily_orders (tenant_id, day, source, currency, orders, revenue_minor, discounts_minor, failed) \
             SELECT $1, x.local_date, x.source, x.currency, {}, {}, {}, {} FROM {} \
             GROUP BY x.local_date, x.source, x.currency ON CONFLICT (tenant_id, day, source, currency) DO UPDATE SET {}",
            sum("CASE WHEN x.counted THEN 1 ELSE 0 END"),
            sum("CASE WHEN x.counted THEN x.total_minor - x.refunded_minor ELSE 0 END"),
            sum("CASE WHEN x.counted THEN x.discounts_minor ELSE 0 END"),
            sum("CASE WHEN x.status = 'failed' THEN 1 ELSE 0 END"),
            page_rows(
                d,
                "orders",
                "external_id",
                "x.local_date, x.source, x.currency, x.counted, x.status, x.total_minor, x.refunded_minor, x.discounts_minor",
                " AND (x.counted OR x.status = 'failed')"
            ),
            add(
                &["orders", "revenue_minor", "discounts_minor", "failed"],
                "daily_orders"
            ),
        ),
        format!(
            "INSERT INTO daily_lines (tenant_id, day, source, title, lines, units, sales_minor) \
             SELECT $1, x.local_date, x.source, x.title, {}, {}, {} FROM {} \
             GROUP BY x.local_date, x.source, x.title ON CONFLICT (tenant_id, day, source, title) DO UPDATE SET {}",
            sum("1"),
            sum("x.quantity"),
            sum("x.price_minor * x.quantity"),
            page_rows(
                d,
                "order_lines",
                "order_external_id",
                "x.local_date, x.source, x.title, x.quantity, x.price_minor, x.counted",
                " AND x.counted"
            ),
            add(&["lines", "units", "sales_minor"], "daily_lines"),
        ),
        format!(
            "INSERT INTO daily_refunds (tenant_id, day, source, refunds, amount_minor) \
             SELECT $1, x.local_date, x.source, {}, {} FROM {} \
             GROUP BY x.local_date, x.source ON CONFLICT (tenant_id, day, source) DO UPDATE SET {}",
            sum("1"),
            sum("x.amount_minor"),
            page_rows(
                d,
                "refunds",
                "order_external_id",
                "x.local_date, x.source, x.amount_minor, x.test",
                " AND NOT x.test"
            ),
            add(&["refunds", "amount_minor"], "daily_refunds"),
        ),
        format!(
            "WITH per AS (SELECT {year} AS y, x.customer_key AS k, COUNT(*) AS n, SUM(x.total_minor - x.refunded_minor) AS r \
             FROM {} GROUP BY {year}, x.customer_key) \
             INSERT INTO customer_years (tenant_id, year, customer_key, orders, revenue_minor) \
             SELECT $1, u.y, u.k, CAST({sign} * u.n AS BIGINT), CAST({sign} * u.r AS BIGINT) FROM \
             (SELECT y, k, n, r FROM per UNION ALL SELECT '*', k, SUM(n), SUM(r) FROM per GROUP BY k) u WHERE true \
             ON CONFLICT (tenant_id, year, customer_key) DO UPDATE SET {}",
            page_rows(
                d,
                "orders",
                "external_id",
                "x.local_date, x.customer_key, x.total_minor, x.refunded_minor, x.counted",
                " AND x.counted AND x.customer_key IS NOT NULL"
            ),
            add(&["orders", "revenue_minor"], "customer_years"),
        ),
        // Each through its partial index of empty rows: never a read of the tenant's other rows.
        "DELETE FROM customer_years WHERE tenant_id = $1 AND orders = 0".into(),
        "DELETE FROM daily_orders WHERE tenant_id = $1 AND orders = 0 AND failed = 0".into(),
        "DELETE FROM daily_lines WHERE tenant_id = $1 AND lines = 0".into(),
        "DELETE FROM daily_refunds WHERE tenant_id = $1 AND refunds = 0".into(),
    ]
}

/// A set of orders' (source, id) pairs as the JSON array the upkeep statements take, each pair once (a
/// pair named twice would be counted twice).
pub(crate) fn order_ids<'a>(ids: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let ids: std::collections::BTreeSet<(&str, &str)> = ids.into_iter().collect();
    serde_json::Value::from(
        ids.into_iter()
            .map(|(s, e)| serde_json::json!([s, e]))
            .collect::<Vec<_>>(),
    )
    .to_string()
}

/// Takes the tenant's turn to change its orders, inside the writer's transaction `$tx` (a place: `*tx`,
/// `**tx`), before anything is read: the facts kept beside the orders are deltas and recomputations from
/// what the writer read, so two writers of one tenant must not interleave.
///
/// On PostgreSQL the turn is a transaction-level advisory lock held to the commit: two writers touching one
/// order or customer at once — a sync page and a webhook, or two sources sharing an e-mail — would otherwise
/// each compute from a snapshot without the other's change, and the later commit would keep a stale first
/// day or subtract an old version twice. SQLite has one writer at a time already.
macro_rules! tenant_turn {
    ($tx:expr, $dialect:expr, $t:expr) => {{
        if $dialect == smb_core::store::Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock(7301, hashtext($1))")
                .bind($t)
                .execute(&mut $tx)
                .await?;
            // Every statement of the upkeep is a nested loop of keyed lookups. Without statistics (a new
            // table, autovacuum off or behind a bulk load) the planner underestimates a tenant's rows and
            // scans them all per page instead (sequential, or a bitmap over the tenant then a hash join);
            // measured: loading slowed to about 1,000 records/s by 300k-800k orders. Each statement is
            // planned for the tables as they are now: a plan a connection cached on a new, small table
            // (PostgreSQL switches to a generic plan from a prepared statement's sixth execution) kept the
            // refunds' metrics index, a scan of the tenant's every refund per order (120-470 ms a statement
            // by 5,000 refunds; end-to-end sync at scale 20: 374 records/s, 2,025 planned each time), or
            // looked orders up through `orders_customer` or `orders_date` (the loader test: 96 million index
            // tuples read for 8,000 orders, 91,311 planned each time). The settings last to the commit; the
            // writes around them are keyed too.
            sqlx::query(
                "SELECT set_config('enable_seqscan', 'off', true), set_config('enable_bitmapscan', 'off', true), \
                 set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true), \
                 set_config('plan_cache_mode', 'force_custom_plan', true)",
            )
            .execute(&mut $tx)
            .await?;
        }
    }};
}
pub(crate) use tenant_turn;

/// Adds `$sign` (1 or -1) times what a set of orders contributes to the facts as stored now, in the
/// writer's transaction `$tx` after [`tenant_turn!`]: -1 before a change to them, 1 after it (which also
/// deletes the rows left at zero). `$orders` (`Option<&String>`, from [`order_ids`]) names the orders whose
/// own rows and lines count, `None` for none; `$refunds` the orders whose refunds count (a refund can be
/// stored before its order).
macro_rules! facts_delta {
    ($tx:expr, $dialect:expr, $t:expr, $orders:expr, $refunds:expr, $sign:expr) => {{
        let sign: i64 = $sign;
        let orders: Option<&String> = $orders;
        let refunds: &String = $refunds;
        let sql = $crate::load::facts_sql($dialect);
        // daily_orders, daily_lines, daily_refunds, customer_years; then their deletes of empty rows.
        for (i, s) in sql[..4].iter().enumerate() {
            let Some(ids) = (if i == 2 { Some(refunds) } else { orders }) else {
                continue;
            };
            sqlx::query(s)
                .bind($t)
                .bind(ids)
                .bind(sign)
                .execute(&mut $tx)
                .await?;
        }
        if sign > 0 {
            for s in &sql[4..] {
                sqlx::query(s).bind($t).execute(&mut $tx).await?;
            }
        }
    }};
}
pub(crate) use facts_delta;

/// Recomputes `customer_firsts` for the customers in `$keys` (`&[String]`) inside the writer's transaction
/// `$tx` (a place: `*tx`, `**tx`), after [`tenant_turn!`].
macro_rules! refresh_firsts {
    ($tx:expr, $dialect:expr, $t:expr, $keys:expr) => {{
        let keys: &[String] = $keys;
        let json = serde_json::Value::from(keys.to_vec()).to_string();
        let [delete, insert, _] = $crate::load::firsts_sql($dialect);
        sqlx::query(delete)
            .bind($t)
            .bind(match $dialect {
                smb_core::store::Dialect::Postgres => keys.join("\u{1f}"),
                smb_core::store::Dialect::Sqlite => json.clone(),
            })
            .execute(&mut $tx)
            .await?;
        sqlx::query(insert)
            .bind($t)
            .bind(&json)
            .execute(&mut $tx)
            .await?;
    }};
}
pub(crate) use refresh_firsts;

/// Before a batch's orders are written (in the writer's transaction `$tx`): takes the tenant's turn, reads
/// the batch's orders as stored, and takes their contribution out of the facts. Returns the [`Upkeep`] for
/// [`after_orders!`].
macro_rules! before_orders {
    ($tx:expr, $dialect:expr, $t:expr, $b:expr) => {{
        let b: &Batch = $b;
        tenant_turn!($tx, $dialect, $t);
        let [_, _, stored] = firsts_sql($dialect);
        let all = order_ids(
            b.orders
                .iter()
                .map(|x| (x.order.source.as_str(), x.order.external_id.as_str())),
        );
        let stored: Vec<(String, String, Option<String>)> = sqlx::query_as(stored)
            .bind($t)
            .bind(&all)
            .fetch_all(&mut $tx)
            .await?;
        let upkeep = Upkeep::new(b, all, stored);
        facts_delta!($tx, $dialect, $t, upkeep.stored.as_ref(), &upkeep.all, -1);
        upkeep
    }};
}

/// After a batch's orders, lines and refunds are written: their contribution as stored now goes back into
/// the facts, and the first days of their customers are brought up to date.
macro_rules! after_orders {
    ($tx:expr, $dialect:expr, $t:expr, $upkeep:expr) => {{
        let u: &Upkeep = $upkeep;
        facts_delta!($tx, $dialect, $t, Some(&u.all), &u.all, 1);
        if !u.recompute.is_empty() {
            refresh_firsts!($tx, $dialect, $t, &u.recompute);
        }
        if let Some(earliest) = &u.earliest {
            sqlx::query(earliest_sql($dialect))
                .bind($t)
                .bind(earliest)
                .execute(&mut $tx)
                .await?;
        }
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
        let before = before_orders!(**tx, Dialect::Sqlite, t, b);
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
        after_orders!(**tx, Dialect::Sqlite, t, &before);
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
        let before = before_orders!(**tx, Dialect::Postgres, t, b);
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
        after_orders!(**tx, Dialect::Postgres, t, &before);
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
    // The refund and its order's refunded total change the daily facts: the order's contribution (with its
    // refunds, this one among them if it was there) comes out before and goes back after.
    let ids = order_ids([(r.source.as_str(), r.order_external_id.as_str())]);
    smb_core::with_tenant!(db, tenant, write, |tx| {
        tenant_turn!(*tx, db.dialect(), t);
        facts_delta!(*tx, db.dialect(), t, Some(&ids), &ids, -1);
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
        facts_delta!(*tx, db.dialect(), t, Some(&ids), &ids, 1);
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transform::OrderRow;
    use chrono::NaiveDate;

    fn order(id: &str, key: Option<&str>, day: u32, counted: bool) -> OrderBundle {
        OrderBundle {
            order: OrderRow {
                source: "shopify".into(),
                external_id: id.into(),
                name: format!("#{id}"),
                customer_key: key.map(Into::into),
                customer_ref: None,
                customer_email: None,
                customer_name: None,
                created_at: 0,
                updated_at: 0,
                local_date: NaiveDate::from_ymd_opt(2025, 3, day).unwrap(),
                status: "paid".into(),
                counted,
                test: false,
                total_minor: 100,
                refunded_minor: 0,
                discounts_minor: 0,
                currency: "USD".into(),
                note: None,
                tags: None,
                city: None,
                raw: "{}".into(),
            },
            lines: Vec::new(),
            refunds: Vec::new(),
        }
    }

    /// A batch of orders and the plan for it, given what was stored.
    fn plan(orders: Vec<OrderBundle>, stored: Vec<(String, String, Option<String>)>) -> Upkeep {
        let b = Batch {
            orders,
            ..Default::default()
        };
        let all = order_ids(
            b.orders
                .iter()
                .map(|x| (x.order.source.as_str(), x.order.external_id.as_str())),
        );
        Upkeep::new(&b, all, stored)
    }

    fn json(s: &str) -> serde_json::Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn a_page_of_new_orders_subtracts_nothing_and_moves_first_days_earlier() {
        let u = plan(
            vec![
                order("1", Some("ann"), 9, true),
                order("2", Some("ann"), 4, true),
                order("3", Some("bob"), 5, false),
                order("4", None, 6, true),
            ],
            Vec::new(),
        );
        assert_eq!(u.stored, None);
        assert!(u.recompute.is_empty());
        assert_eq!(
            json(&u.all),
            json(r#"[["shopify","1"],["shopify","2"],["shopify","3"],["shopify","4"]]"#)
        );
        // Each (scope, customer) once, at its earliest counted day; the uncounted order names no one.
        assert_eq!(
            json(u.earliest.as_deref().unwrap()),
            json(r#"[["","ann","2025-03-04"],["shopify","ann","2025-03-04"]]"#)
        );
    }

    #[test]
    fn customers_of_stored_or_repeated_orders_are_recomputed_and_left_out_of_the_upsert() {
        let stored = vec![("shopify".into(), "1".into(), Some("bob".to_string()))];
        let u = plan(
            vec![
                // Stored before under another customer: both are recomputed.
                order("1", Some("ann"), 9, true),
                // New, but for a customer being recomputed anyway.
                order("2", Some("ann"), 2, true),
                // Named twice in the batch.
                order("3", Some("cat"), 5, true),
                order("3", Some("cat"), 5, true),
                order("4", Some("dan"), 7, true),
            ],
            stored,
        );
        assert_eq!(
            u.stored.as_deref().map(json),
            Some(json(r#"[["shopify","1"]]"#))
        );
        assert_eq!(u.recompute, ["ann", "bob", "cat"]);
        assert_eq!(
            json(u.earliest.as_deref().unwrap()),
            json(r#"[["","dan","2025-03-07"],["shopify","dan","2025-03-07"]]"#)
        );
    }
}
