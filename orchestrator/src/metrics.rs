//! Metric computation in SQL over the canonical model, on tenant-local dates, for both store adapters.
//! Sums are integer minor units (`CAST(SUM(..) AS BIGINT)` so both dialects decode an i64).

use chrono::{Datelike, NaiveDate};
use smb_core::ids::TenantId;
use smb_core::store::Db;
use smb_core::{Error, with_tenant};

use crate::nlu::Metric;

/// Optional narrowing of a metric.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub source: Option<String>,
    /// Exact product title (lines).
    pub product: Option<String>,
    pub customer_key: Option<String>,
    /// Orders in this currency only: set for money when a tenant's orders are in more than one currency,
    /// which are never added together.
    pub currency: Option<String>,
}

/// A value in the metric's unit: minor units for money, a count otherwise; AOV as (revenue, orders).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Money(i64),
    Count(i64),
    Ratio(i64, i64),
}

impl Value {
    /// The value as the result JSON shows it (major units rounded to 2 decimals for money).
    pub fn to_f64(self, exp: u32) -> f64 {
        let scale = 10f64.powi(exp as i32);
        match self {
            Value::Money(m) => m as f64 / scale,
            Value::Count(c) => c as f64,
            Value::Ratio(_, 0) => 0.0,
            Value::Ratio(n, d) => (n as f64 / d as f64).round() / scale,
        }
    }
}

/// Runs `$sql` with `$1` the tenant, `$2..$3` the dates and the filter values after them.
macro_rules! ranged {
    ($db:expr, $tenant:expr, $sql:expr, $start:expr, $end:expr, $binds:expr, $fetch:ident) => {
        with_tenant!($db, $tenant, read, |tx| {
            let mut q = sqlx::query_as($sql)
                .bind($tenant.as_str())
                .bind($start)
                .bind($end);
            for v in $binds {
                q = q.bind(v);
            }
            q.$fetch(&mut *tx).await?
        })
    };
}

fn filters(f: &Filter, first: usize, lines: bool) -> (String, Vec<String>) {
    let mut sql = String::new();
    let mut binds = Vec::new();
    let mut n = first;
    let prefix = if lines { "l." } else { "o." };
    if let Some(s) = &f.source {
        sql.push_str(&format!(" AND {prefix}source = ${n}"));
        binds.push(s.clone());
        n += 1;
    }
    if let (Some(p), true) = (&f.product, lines) {
        sql.push_str(&format!(" AND l.title = ${n}"));
        binds.push(p.clone());
        n += 1;
    }
    if let Some(c) = &f.customer_key {
        sql.push_str(&format!(" AND o.customer_key = ${n}"));
        binds.push(c.clone());
        n += 1;
    }
    if let Some(c) = &f.currency {
        sql.push_str(&format!(" AND o.currency = ${n}"));
        binds.push(c.clone());
    }
    (sql, binds)
}

/// Lines need their order only to filter by customer or currency.
fn lines_join(f: &Filter) -> &'static str {
    if f.customer_key.is_some() || f.currency.is_some() {
        " JOIN orders o ON o.tenant_id = l.tenant_id AND o.source = l.source AND o.external_id = l.order_external_id"
    } else {
        ""
    }
}

/// A refunds query's narrowing (alias `r`), binds from $4 in [`refund_binds`] order: source, then the
/// order's customer and currency (refunds have no product).
fn refund_filters(f: &Filter) -> String {
    let mut extra = String::new();
    let mut n = 4;
    if f.source.is_some() {
        extra.push_str(" AND r.source = $4");
        n = 5;
    }
    let mut of_order = Vec::new();
    if f.customer_key.is_some() {
        of_order.push(format!("o.customer_key = ${n}"));
        n += 1;
    }
    if f.currency.is_some() {
        of_order.push(format!("o.currency = ${n}"));
    }
    if !of_order.is_empty() {
        extra.push_str(&format!(
            " AND EXISTS (SELECT 1 FROM orders o WHERE o.tenant_id = r.tenant_id AND o.source = r.source \
             AND o.external_id = r.order_external_id AND {})",
            of_order.join(" AND ")
        ));
    }
    extra
}

fn refund_binds(f: &Filter) -> Vec<String> {
    f.source
        .iter()
        .chain(&f.customer_key)
        .chain(&f.currency)
        .cloned()
        .collect()
}

/// Whether new and returning customers can be read from `customer_firsts` (kept per source and over all
/// of them): not when narrowed to a customer or a currency.
fn firsts_cover(f: &Filter) -> bool {
    f.customer_key.is_none() && f.currency.is_none()
}

/// Active customers minus new ones in `$s..$e` ("b.s", "b.e" in a breakdown): the customers with an order
/// there whose first order came before, i.e. returning customers, over every source.
fn returning_from_firsts(s: &str, e: &str) -> String {
    format!(
        "(SELECT COUNT(DISTINCT o.customer_key) FROM orders o WHERE o.tenant_id = $1 AND o.local_date BETWEEN {s} AND {e} \
         AND o.counted) - (SELECT COUNT(*) FROM customer_firsts f WHERE f.tenant_id = $1 AND f.scope = '' \
         AND f.first_day BETWEEN {s} AND {e})"
    )
}

/// Where a metric is read from the daily facts (`daily_orders`, `daily_lines`, `daily_refunds`, kept by the
/// loader; alias `d`): the table, the two sums (the second is a ratio's denominator) and the count that says
/// a row holds any of it.
struct Daily {
    table: &'static str,
    a: &'static str,
    b: &'static str,
    any: &'static str,
}

/// The daily facts behind `metric` under `f`, or `None` where they are not kept: narrowed to a customer;
/// lines and refunds narrowed to a currency (a property of their order); distinct and first customers.
fn daily(metric: Metric, f: &Filter) -> Option<Daily> {
    if f.customer_key.is_some() {
        return None;
    }
    let (table, a, b, any) = match metric {
        Metric::Revenue | Metric::TopCustomers => {
            ("daily_orders", "SUM(d.revenue_minor)", "0", "d.orders")
        }
        Metric::Orders => ("daily_orders", "SUM(d.orders)", "0", "d.orders"),
        Metric::Aov => (
            "daily_orders",
            "SUM(d.revenue_minor)",
            "SUM(d.orders)",
            "d.orders",
        ),
        Metric::Discounts => ("daily_orders", "SUM(d.discounts_minor)", "0", "d.orders"),
        Metric::FailedPayments => ("daily_orders", "SUM(d.failed)", "0", "d.failed"),
        _ if f.currency.is_some() => return None,
        Metric::Units | Metric::TopProductsByUnits => {
            ("daily_lines", "SUM(d.units)", "0", "d.lines")
        }
        Metric::ProductSales | Metric::TopProducts => {
            ("daily_lines", "SUM(d.sales_minor)", "0", "d.lines")
        }
        Metric::Refunds => ("daily_refunds", "SUM(d.amount_minor)", "0", "d.refunds"),
        _ => return None,
    };
    Some(Daily { table, a, b, any })
}

/// A daily facts query's narrowing (alias `d`) with its binds from `$first`: source, then the product
/// (lines) or the currency (orders).
fn daily_filters(d: &Daily, f: &Filter, first: usize) -> (String, Vec<String>) {
    let mut sql = String::new();
    let mut binds = Vec::new();
    let narrowing = [
        ("source", f.source.as_ref()),
        (
            "title",
            f.product.as_ref().filter(|_| d.table == "daily_lines"),
        ),
        (
            "currency",
            f.currency.as_ref().filter(|_| d.table == "daily_orders"),
        ),
    ];
    for (col, v) in narrowing {
        if let Some(v) = v {
            sql.push_str(&format!(" AND d.{col} = ${}", first + binds.len()));
            binds.push(v.clone());
        }
    }
    (sql, binds)
}

/// The SQL computing `metric` as one i64 (or two for AOV) over $1 tenant, $2..$3 dates, and its binds
/// from $4.
fn scalar_query(metric: Metric, f: &Filter) -> (String, Vec<String>) {
    match metric {
        Metric::NewCustomers if firsts_cover(f) => {
            return (
                "SELECT CAST(COUNT(*) AS BIGINT), CAST(0 AS BIGINT) FROM customer_firsts f WHERE f.tenant_id = $1 \
                 AND f.scope = $4 AND f.first_day BETWEEN $2 AND $3"
                    .into(),
                vec![f.source.clone().unwrap_or_default()],
            );
        }
        Metric::ReturningCustomers if firsts_cover(f) && f.source.is_none() => {
            return (
                format!(
                    "SELECT CAST({} AS BIGINT), CAST(0 AS BIGINT)",
                    returning_from_firsts("$2", "$3")
                ),
                Vec::new(),
            );
        }
        _ => {}
    }
    if let Some(d) = daily(metric, f) {
        let (fs, binds) = daily_filters(&d, f, 4);
        return (
            format!(
                "SELECT CAST(COALESCE({}, 0) AS BIGINT), CAST(COALESCE({}, 0) AS BIGINT) FROM {} d \
                 WHERE d.tenant_id = $1 AND d.day BETWEEN $2 AND $3{fs}",
                d.a, d.b, d.table
            ),
            binds,
        );
    }
    let binds = if metric == Metric::Refunds {
        refund_binds(f)
    } else {
        filters(
            f,
            4,
            matches!(
                metric,
                Metric::Units
                    | Metric::ProductSales
                    | Metric::TopProducts
                    | Metric::TopProductsByUnits
            ),
        )
        .1
    };
    (scalar_sql(metric, f), binds)
}

/// The SQL over the orders themselves (see [`scalar_query`]).
fn scalar_sql(metric: Metric, f: &Filter) -> String {
    let (of, _) = filters(f, 4, false);
    let (lf, _) = filters(f, 4, true);
    let orders = format!(
        "FROM orders o WHERE o.tenant_id = $1 AND o.local_date BETWEEN $2 AND $3 AND o.counted{of}"
    );
    let join = lines_join(f);
    let lines = format!(
        "FROM order_lines l{join} WHERE l.tenant_id = $1 AND l.local_date BETWEEN $2 AND $3 AND l.counted{lf}"
    );
    match metric {
        Metric::Revenue => format!(
            "SELECT CAST(COALESCE(SUM(o.total_minor - o.refunded_minor), 0) AS BIGINT), CAST(0 AS BIGINT) {orders}"
        ),
        Metric::Orders => format!("SELECT CAST(COUNT(*) AS BIGINT), CAST(0 AS BIGINT) {orders}"),
        Metric::Aov => format!(
            "SELECT CAST(COALESCE(SUM(o.total_minor - o.refunded_minor), 0) AS BIGINT), CAST(COUNT(*) AS BIGINT) {orders}"
        ),
        Metric::Customers => format!(
            "SELECT CAST(COUNT(DISTINCT o.customer_key) AS BIGINT), CAST(0 AS BIGINT) {orders}"
        ),
        Metric::Discounts => format!(
            "SELECT CAST(COALESCE(SUM(o.discounts_minor), 0) AS BIGINT), CAST(0 AS BIGINT) {orders}"
        ),
        Metric::Units | Metric::TopProductsByUnits => format!(
            "SELECT CAST(COALESCE(SUM(l.quantity), 0) AS BIGINT), CAST(0 AS BIGINT) {lines}"
        ),
        Metric::ProductSales | Metric::TopProducts => {
            format!(
                "SELECT CAST(COALESCE(SUM(l.price_minor * l.quantity), 0) AS BIGINT), CAST(0 AS BIGINT) {lines}"
            )
        }
        Metric::NewCustomers => format!(
            "SELECT CAST(COUNT(*) AS BIGINT), CAST(0 AS BIGINT) FROM (SELECT o.customer_key, MIN(o.local_date) AS first_day \
             FROM orders o WHERE o.tenant_id = $1 AND o.counted AND o.customer_key IS NOT NULL{of} \
             GROUP BY o.customer_key) f WHERE f.first_day BETWEEN $2 AND $3"
        ),
        Metric::ReturningCustomers => format!(
            "SELECT CAST(COUNT(DISTINCT o.customer_key) AS BIGINT), CAST(0 AS BIGINT) {orders} AND EXISTS (SELECT 1 FROM orders p \
             WHERE p.tenant_id = o.tenant_id AND p.customer_key = o.customer_key AND p.counted AND p.local_date < $2)"
        ),
        Metric::Refunds => {
            let extra = refund_filters(f);
            format!(
                "SELECT CAST(COALESCE(SUM(r.amount_minor), 0) AS BIGINT), CAST(0 AS BIGINT) FROM refunds r \
                 WHERE r.tenant_id = $1 AND r.local_date BETWEEN $2 AND $3 AND NOT r.test{extra}"
            )
        }
        Metric::FailedPayments => format!(
            "SELECT CAST(COUNT(*) AS BIGINT), CAST(0 AS BIGINT) FROM orders o WHERE o.tenant_id = $1 AND o.local_date BETWEEN $2 AND $3 \
             AND o.status = 'failed'{of}"
        ),
        Metric::TopCustomers => format!(
            "SELECT CAST(COALESCE(SUM(o.total_minor - o.refunded_minor), 0) AS BIGINT), CAST(0 AS BIGINT) {orders}"
        ),
    }
}

/// A metric's value from its two sums (the second is the denominator of a ratio such as AOV).
pub fn wrap(metric: Metric, a: i64, b: i64) -> Value {
    match metric {
        Metric::Aov => Value::Ratio(a, b),
        m if m.is_money() => Value::Money(a),
        _ => Value::Count(a),
    }
}

/// The `customer_years` rows that may hold exactly the tenant's counted orders in `start..=end`: those of
/// the range's calendar year when it lies in one, else those over all time (`'*'`); `None` when the metric
/// is narrowed (those rows are over every source and currency). They hold exactly the range when the tenant
/// has no counted order on the other days they cover: a statement that reads them also reads that count
/// ([`Whole::outside`]), so both come from one snapshot and an order written in between cannot slip in.
struct Whole {
    /// `$4..$6` of the statement: the rows' `year`, and the first and last day they cover.
    binds: [String; 3],
}

impl Whole {
    fn of(f: &Filter, start: NaiveDate, end: NaiveDate) -> Option<Self> {
        if f.source.is_some() || f.currency.is_some() || f.customer_key.is_some() {
            return None;
        }
        let (year, from, to) = if start.year() == end.year() {
            let y = start.year();
            (
                y.to_string(),
                format!("{y:04}-01-01"),
                format!("{y:04}-12-31"),
            )
        } else {
            ("*".into(), "0001-01-01".into(), "9999-12-31".into())
        };
        Some(Self {
            binds: [year, from, to],
        })
    }

    /// A column: the tenant's counted orders on the days of `$5..=$6` outside `$2..=$3`, from
    /// `daily_orders` (a few hundred rows). The rows of `$4` hold exactly the range when it is 0.
    fn outside(db: &Db) -> String {
        // PostgreSQL compares a date with a text parameter only once it is cast; SQLite keeps dates as text.
        let (from, to) = match db {
            Db::Sqlite(_) => ("$5", "$6"),
            Db::Postgres(_) => ("CAST($5 AS DATE)", "CAST($6 AS DATE)"),
        };
        format!(
            "(SELECT CAST(COALESCE(SUM(d.orders), 0) AS BIGINT) FROM daily_orders d WHERE d.tenant_id = $1 \
             AND d.day >= {from} AND d.day <= {to} AND (d.day < $2 OR d.day > $3))"
        )
    }

    /// Distinct customers as the number of the rows, and the count of [`Whole::outside`].
    fn customers_sql(db: &Db) -> String {
        format!(
            "SELECT CAST(COUNT(*) AS BIGINT), {} FROM customer_years y WHERE y.tenant_id = $1 AND y.year = $4",
            Self::outside(db)
        )
    }

    /// Distinct customers over these rows when they hold exactly `start..=end`; `None` when they do not
    /// (the caller counts over the orders).
    async fn customers(
        &self,
        db: &Db,
        tenant: &TenantId,
        start: NaiveDate,
        end: NaiveDate,
    ) -> Result<Option<i64>, Error> {
        let sql = Self::customers_sql(db);
        let (n, outside): (i64, i64) =
            ranged!(db, tenant, &sql, start, end, &self.binds, fetch_one);
        Ok((outside == 0).then_some(n))
    }
}

/// The metric over `start..=end`.
pub async fn scalar(
    db: &Db,
    tenant: &TenantId,
    metric: Metric,
    f: &Filter,
    start: NaiveDate,
    end: NaiveDate,
) -> Result<Value, Error> {
    if metric == Metric::Customers
        && let Some(whole) = Whole::of(f, start, end)
        && let Some(n) = whole.customers(db, tenant, start, end).await?
    {
        return Ok(Value::Count(n));
    }
    let (sql, binds) = scalar_query(metric, f);
    let (a, b): (i64, i64) = ranged!(db, tenant, &sql, start, end, &binds, fetch_one);
    Ok(wrap(metric, a, b))
}

/// The plan the store chooses for [`scalar`] over `start..=end`, as it prints it: PostgreSQL's
/// `EXPLAIN (ANALYZE, BUFFERS)` (the query is run), SQLite's `EXPLAIN QUERY PLAN` (it is not). For the
/// benchmarks' report of what is behind a slow answer.
pub async fn explain_scalar(
    db: &Db,
    tenant: &TenantId,
    metric: Metric,
    f: &Filter,
    start: NaiveDate,
    end: NaiveDate,
) -> Result<Vec<String>, Error> {
    let (sql, binds) = if metric == Metric::Customers
        && let Some(whole) = Whole::of(f, start, end)
        && whole.customers(db, tenant, start, end).await?.is_some()
    {
        (Whole::customers_sql(db), whole.binds.to_vec())
    } else {
        scalar_query(metric, f)
    };
    Ok(match db {
        Db::Sqlite(_) => {
            let sql = format!("EXPLAIN QUERY PLAN {sql}");
            let rows: Vec<(i64, i64, i64, String)> =
                ranged!(db, tenant, &sql, start, end, &binds, fetch_all);
            rows.into_iter().map(|r| r.3).collect()
        }
        Db::Postgres(_) => {
            let sql = format!("EXPLAIN (ANALYZE, BUFFERS) {sql}");
            let rows: Vec<(String,)> = ranged!(db, tenant, &sql, start, end, &binds, fetch_all);
            rows.into_iter().map(|r| r.0).collect()
        }
    })
}

/// Per-day sums of a metric whose buckets add up from days — (day, sum, second sum), the second being the
/// denominator of a ratio (AOV: revenue and orders) — in one grouped query; `None` for metrics that do not
/// add up across days (distinct customers, first orders).
pub async fn by_day(
    db: &Db,
    tenant: &TenantId,
    metric: Metric,
    f: &Filter,
    start: NaiveDate,
    end: NaiveDate,
) -> Result<Option<Vec<(NaiveDate, i64, i64)>>, Error> {
    if let Some(d) = daily(metric, f).filter(|_| !metric.is_ranking()) {
        let (fs, binds) = daily_filters(&d, f, 4);
        let sql = format!(
            "SELECT d.day, CAST({} AS BIGINT), CAST({} AS BIGINT) FROM {} d WHERE d.tenant_id = $1 \
             AND d.day BETWEEN $2 AND $3{fs} GROUP BY d.day HAVING SUM({}) > 0",
            d.a, d.b, d.table, d.any
        );
        let rows: Vec<(NaiveDate, i64, i64)> =
            ranged!(db, tenant, &sql, start, end, &binds, fetch_all);
        return Ok(Some(rows));
    }
    let (expr, from, lines) = match metric {
        Metric::Revenue => ("SUM(o.total_minor - o.refunded_minor), 0", "orders", false),
        Metric::Orders => ("COUNT(*), 0", "orders", false),
        Metric::Aov => (
            "SUM(o.total_minor - o.refunded_minor), COUNT(*)",
            "orders",
            false,
        ),
        Metric::Discounts => ("SUM(o.discounts_minor), 0", "orders", false),
        Metric::Units => ("SUM(l.quantity), 0", "lines", true),
        Metric::ProductSales => ("SUM(l.price_minor * l.quantity), 0", "lines", true),
        // Refunds narrowed to a customer or currency are computed per bucket (`by_bucket`); unnarrowed
        // ones come from the daily facts above.
        _ => return Ok(None),
    };
    let (a, b) = expr.split_once(", ").unwrap_or((expr, "0"));
    let cols = format!("CAST({a} AS BIGINT), CAST({b} AS BIGINT)");
    let (fs, binds) = filters(f, 4, lines);
    let sql = match from {
        "orders" => format!(
            "SELECT o.local_date, {cols} FROM orders o WHERE o.tenant_id = $1 AND o.local_date BETWEEN $2 AND $3 \
             AND o.counted{fs} GROUP BY o.local_date"
        ),
        _ => format!(
            "SELECT l.local_date, {cols} FROM order_lines l{} WHERE l.tenant_id = $1 \
             AND l.local_date BETWEEN $2 AND $3 AND l.counted{fs} GROUP BY l.local_date",
            lines_join(f)
        ),
    };
    let rows: Vec<(NaiveDate, i64, i64)> = ranged!(db, tenant, &sql, start, end, &binds, fetch_all);
    Ok(Some(rows))
}

/// A metric that does not add up across days (distinct customers, first orders, returning customers),
/// or one narrowed where [`by_day`] is not, over several date ranges at once: (bucket start, value) for the
/// buckets with any, in one query. `buckets` are (start, end) pairs, given as two JSON arrays of dates.
pub async fn by_bucket(
    db: &Db,
    tenant: &TenantId,
    metric: Metric,
    f: &Filter,
    buckets: &[(NaiveDate, NaiveDate)],
) -> Result<Vec<(NaiveDate, i64)>, Error> {
    let (of, binds) = filters(f, 4, false);
    let ranges = match db {
        Db::Sqlite(_) => {
            "SELECT s.value AS s, e.value AS e FROM json_each($2) s JOIN json_each($3) e ON e.key = s.key"
        }
        Db::Postgres(_) => {
            "SELECT s.v::date AS s, e.v::date AS e FROM json_array_elements_text($2::json) WITH ORDINALITY s(v, i) \
             JOIN json_array_elements_text($3::json) WITH ORDINALITY e(v, i) ON e.i = s.i"
        }
    };
    let in_bucket = "o.tenant_id = $1 AND o.local_date BETWEEN b.s AND b.e";
    let (select, binds) = match metric {
        Metric::Customers => (
            format!(
                "SELECT b.s, CAST(COUNT(DISTINCT o.customer_key) AS BIGINT) FROM b JOIN orders o ON {in_bucket} \
                 AND o.counted{of} GROUP BY b.s"
            ),
            binds,
        ),
        Metric::ReturningCustomers if firsts_cover(f) && f.source.is_none() => (
            format!(
                "SELECT x.s, x.v FROM (SELECT b.s AS s, CAST({} AS BIGINT) AS v FROM b) x WHERE x.v > 0",
                returning_from_firsts("b.s", "b.e")
            ),
            Vec::new(),
        ),
        Metric::NewCustomers if firsts_cover(f) => (
            "SELECT b.s, CAST(COUNT(*) AS BIGINT) FROM b JOIN customer_firsts f ON f.tenant_id = $1 AND f.scope = $4 \
             AND f.first_day BETWEEN b.s AND b.e GROUP BY b.s"
                .into(),
            vec![f.source.clone().unwrap_or_default()],
        ),
        Metric::ReturningCustomers => (
            format!(
                "SELECT b.s, CAST(COUNT(DISTINCT o.customer_key) AS BIGINT) FROM b JOIN orders o ON {in_bucket} \
                 AND o.counted{of} AND EXISTS (SELECT 1 FROM orders p WHERE p.tenant_id = o.tenant_id \
                 AND p.customer_key = o.customer_key AND p.counted AND p.local_date < b.s) GROUP BY b.s"
            ),
            binds,
        ),
        Metric::NewCustomers => (
            format!(
                "SELECT b.s, CAST(COUNT(*) AS BIGINT) FROM b JOIN (SELECT o.customer_key, MIN(o.local_date) AS first_day \
                 FROM orders o WHERE o.tenant_id = $1 AND o.counted AND o.customer_key IS NOT NULL{of} \
                 GROUP BY o.customer_key) f ON f.first_day BETWEEN b.s AND b.e GROUP BY b.s"
            ),
            binds,
        ),
        Metric::FailedPayments => (
            format!(
                "SELECT b.s, CAST(COUNT(*) AS BIGINT) FROM b JOIN orders o ON {in_bucket} \
                 AND o.status = 'failed'{of} GROUP BY b.s"
            ),
            binds,
        ),
        Metric::Refunds => (
            format!(
                "SELECT b.s, CAST(SUM(r.amount_minor) AS BIGINT) FROM b JOIN refunds r ON r.tenant_id = $1 \
                 AND r.local_date BETWEEN b.s AND b.e AND NOT r.test{} GROUP BY b.s",
                refund_filters(f)
            ),
            refund_binds(f),
        ),
        other => {
            return Err(Error::internal(
                "breakdown",
                format!("{} adds up by day", other.name()),
            ));
        }
    };
    let sql = format!("WITH b AS ({ranges}) {select}");
    let json = |v: Vec<String>| serde_json::Value::from(v).to_string();
    let starts = json(buckets.iter().map(|b| b.0.to_string()).collect());
    let ends = json(buckets.iter().map(|b| b.1.to_string()).collect());
    let rows: Vec<(NaiveDate, i64)> = ranged!(db, tenant, &sql, &starts, &ends, &binds, fetch_all);
    Ok(rows)
}

/// Ranked rows: (label, value) highest first, ties by label, at most `n`.
pub async fn top(
    db: &Db,
    tenant: &TenantId,
    metric: Metric,
    f: &Filter,
    start: NaiveDate,
    end: NaiveDate,
    n: usize,
) -> Result<Vec<(String, i64)>, Error> {
    if metric == Metric::TopCustomers {
        let whole = Filter {
            customer_key: None,
            ..f.clone()
        };
        if let Some(whole) = Whole::of(&whole, start, end)
            && let Some(ranked) = top_customers_in(db, tenant, &whole, start, end, n).await?
        {
            return Ok(ranked);
        }
    }
    let (sql, lines) = match metric {
        Metric::TopCustomers => (
            "SELECT COALESCE(MAX(o.customer_name), o.customer_key) AS label, CAST(SUM(o.total_minor - o.refunded_minor) AS BIGINT) AS v \
             FROM orders o WHERE o.tenant_id = $1 AND o.local_date BETWEEN $2 AND $3 AND o.counted AND o.customer_key IS NOT NULL{f} \
             GROUP BY o.customer_key ORDER BY v DESC, label ASC LIMIT {n}",
            false,
        ),
        Metric::TopProducts | Metric::TopProductsByUnits => (
            if metric == Metric::TopProducts {
                "SELECT l.title AS label, CAST(SUM(l.price_minor * l.quantity) AS BIGINT) AS v FROM order_lines l{join} \
                 WHERE l.tenant_id = $1 AND l.local_date BETWEEN $2 AND $3 AND l.counted{f} GROUP BY l.title ORDER BY v DESC, label ASC LIMIT {n}"
            } else {
                "SELECT l.title AS label, CAST(SUM(l.quantity) AS BIGINT) AS v FROM order_lines l{join} \
                 WHERE l.tenant_id = $1 AND l.local_date BETWEEN $2 AND $3 AND l.counted{f} GROUP BY l.title ORDER BY v DESC, label ASC LIMIT {n}"
            },
            true,
        ),
        _ => return Ok(Vec::new()),
    };
    let f = Filter {
        product: None,
        customer_key: None,
        ..f.clone()
    };
    if let Some(d) = daily(metric, &f).filter(|_| lines) {
        let (fs, binds) = daily_filters(&d, &f, 4);
        let sql = format!(
            "SELECT d.title AS label, CAST({} AS BIGINT) AS v FROM daily_lines d WHERE d.tenant_id = $1 \
             AND d.day BETWEEN $2 AND $3{fs} GROUP BY d.title HAVING SUM({}) > 0 ORDER BY v DESC, label ASC LIMIT {n}",
            d.a, d.any
        );
        return Ok(ranged!(db, tenant, &sql, start, end, &binds, fetch_all));
    }
    let (fs, binds) = filters(&f, 4, lines);
    let sql = sql
        .replace("{f}", &fs)
        .replace("{join}", lines_join(&f))
        .replace("{n}", &n.to_string());
    Ok(ranged!(db, tenant, &sql, start, end, &binds, fetch_all))
}

/// The top `n` customers by revenue over whole years (see [`Whole`]), or `None` when those rows do not hold
/// exactly `start..=end`: the candidates from `customer_years` (every customer at or above the n-th
/// revenue, so that ties there are ordered by name as over the orders), then their names from their orders
/// in the range.
async fn top_customers_in(
    db: &Db,
    tenant: &TenantId,
    whole: &Whole,
    start: NaiveDate,
    end: NaiveDate,
    n: usize,
) -> Result<Option<Vec<(String, i64)>>, Error> {
    let Some(nth) = n.checked_sub(1) else {
        return Ok(Some(Vec::new()));
    };
    // The floor when there are fewer than n customers: below any revenue (and a BIGINT, so the comparison
    // stays an index range on PostgreSQL).
    let sql = format!(
        "SELECT y.customer_key, y.revenue_minor, {} FROM customer_years y WHERE y.tenant_id = $1 AND y.year = $4 \
         AND y.revenue_minor >= COALESCE((SELECT z.revenue_minor FROM customer_years z WHERE z.tenant_id = $1 \
         AND z.year = $4 ORDER BY z.revenue_minor DESC LIMIT 1 OFFSET {nth}), -4611686018427387904)",
        Whole::outside(db)
    );
    let candidates: Vec<(String, i64, i64)> =
        ranged!(db, tenant, &sql, start, end, &whole.binds, fetch_all);
    if candidates.iter().any(|c| c.2 != 0) {
        return Ok(None);
    }
    // With no rows there is no customer in the year (or ever), so none in the range either.
    if candidates.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let keys = serde_json::Value::from(
        candidates
            .iter()
            .map(|c| c.0.clone())
            .collect::<Vec<String>>(),
    )
    .to_string();
    let of_keys = match db {
        // Each customer's orders from the index on the customer: without statistics SQLite prefers the
        // covering `orders_metrics`, a scan of the whole year per customer (23.7 s at 1M orders).
        Db::Sqlite(_) => {
            "json_each($4) j CROSS JOIN orders o INDEXED BY orders_customer WHERE o.tenant_id = $1 \
             AND o.customer_key = j.value AND o.counted AND o.local_date BETWEEN $2 AND $3"
        }
        Db::Postgres(_) => {
            "json_array_elements_text($4::json) AS j(value) CROSS JOIN LATERAL (SELECT x.customer_key, x.customer_name \
             FROM orders x WHERE x.tenant_id = $1 AND x.customer_key = j.value AND x.counted \
             AND x.local_date BETWEEN $2 AND $3 OFFSET 0) o"
        }
    };
    let sql = format!(
        "SELECT o.customer_key, MAX(o.customer_name) FROM {of_keys} GROUP BY o.customer_key"
    );
    let names: Vec<(String, Option<String>)> =
        ranged!(db, tenant, &sql, start, end, [keys], fetch_all);
    let names: std::collections::HashMap<String, String> = names
        .into_iter()
        .filter_map(|(k, name)| name.map(|name| (k, name)))
        .collect();
    let mut ranked: Vec<(String, i64)> = candidates
        .into_iter()
        .map(|(k, v, _)| (names.get(&k).cloned().unwrap_or(k), v))
        .collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    ranked.truncate(n);
    Ok(Some(ranked))
}

/// The currencies of the tenant's counted orders (from the daily facts, not every order).
pub async fn currencies(db: &Db, tenant: &TenantId) -> Result<Vec<String>, Error> {
    let rows: Vec<(String,)> = with_tenant!(db, tenant, read, |tx| {
        sqlx::query_as(
            "SELECT DISTINCT currency FROM daily_orders WHERE tenant_id = $1 AND orders > 0 ORDER BY currency",
        )
        .bind(tenant.as_str())
        .fetch_all(&mut *tx)
        .await?
    });
    Ok(rows.into_iter().map(|r| r.0).collect())
}

/// The first day with data of the tenant (for "all time").
pub async fn first_day(db: &Db, tenant: &TenantId) -> Result<Option<NaiveDate>, Error> {
    let row: (Option<NaiveDate>,) = with_tenant!(db, tenant, read, |tx| {
        sqlx::query_as("SELECT MIN(local_date) FROM orders WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .fetch_one(&mut *tx)
            .await?
    });
    Ok(row.0)
}

/// Customers' names (lower-case) with their canonical key, from both sources: customer records and the
/// names on orders and payments.
pub async fn customer_names(db: &Db, tenant: &TenantId) -> Result<Vec<(String, String)>, Error> {
    let rows: Vec<(String, String)> = with_tenant!(db, tenant, read, |tx| {
        sqlx::query_as(
            "SELECT LOWER(name), customer_key FROM customers WHERE tenant_id = $1 AND name IS NOT NULL              UNION SELECT DISTINCT LOWER(customer_name), customer_key FROM orders              WHERE tenant_id = $1 AND customer_name IS NOT NULL AND customer_key IS NOT NULL",
        )
        .bind(tenant.as_str())
        .fetch_all(&mut *tx)
        .await?
    });
    Ok(rows)
}

/// The tenant's connected sources: (kind, last successful sync in ms since the epoch), one row per
/// connector.
pub async fn sources(db: &Db, tenant: &TenantId) -> Result<Vec<(String, Option<i64>)>, Error> {
    let rows: Vec<(String, Option<i64>)> = with_tenant!(db, tenant, read, |tx| {
        sqlx::query_as(
            "SELECT c.kind, MAX(r.finished_at) FROM connectors c LEFT JOIN sync_runs r \
             ON r.tenant_id = c.tenant_id AND r.connector_id = c.id AND r.status = 'succeeded' \
             WHERE c.tenant_id = $1 GROUP BY c.id, c.kind ORDER BY c.kind",
        )
        .bind(tenant.as_str())
        .fetch_all(&mut *tx)
        .await?
    });
    Ok(rows)
}

/// Product titles the tenant sells: the catalogue's and those on counted order lines (from the daily facts,
/// not every line).
pub async fn product_titles(db: &Db, tenant: &TenantId) -> Result<Vec<String>, Error> {
    let rows: Vec<(String,)> = with_tenant!(db, tenant, read, |tx| {
        sqlx::query_as("SELECT title FROM products WHERE tenant_id = $1 UNION SELECT DISTINCT title FROM daily_lines WHERE tenant_id = $1")
            .bind(tenant.as_str())
            .fetch_all(&mut *tx)
            .await?
    });
    Ok(rows.into_iter().map(|r| r.0).collect())
}
