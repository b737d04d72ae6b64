//! An independent oracle: the answers `shared/product/metrics.md` defines, computed straight from the raw source
//! records (the fixture files), without any of the platform's code. The paraphrase suite checks the platform's
//! answers against it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use chrono::{DateTime, Datelike, Duration, NaiveDate};
use chrono_tz::Tz;
use serde_json::Value;

use crate::fake::Dataset;

/// `shared/fixtures/` of the repository (next to the workspace); panics with a clear message when missing.
pub fn fixtures_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures");
    for tenant in ["northwind", "brightside"] {
        assert!(
            dir.join(tenant).is_dir(),
            "fixture data missing: expected {} (the shared fixtures of the repository, with northwind/ and \
             brightside/)",
            dir.join(tenant).display()
        );
    }
    dir
}

/// The tenant's IANA time zone as its source states it: Shopify `shop.iana_timezone`, Stripe
/// `settings.dashboard.timezone`.
pub fn source_timezone(d: &Dataset) -> Option<String> {
    d.shop
        .as_ref()
        .and_then(|s| s["iana_timezone"].as_str())
        .or_else(|| {
            d.account
                .as_ref()
                .and_then(|a| a["settings"]["dashboard"]["timezone"].as_str())
        })
        .map(str::to_string)
}

/// Minor units (cents) of a decimal amount written as a string ("18.00") or a number.
pub fn cents(v: &Value) -> i64 {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return 0,
    };
    let s = s.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut frac: String = frac.chars().take(2).collect();
    while frac.len() < 2 {
        frac.push('0');
    }
    let v = whole.parse::<i64>().unwrap_or(0) * 100 + frac.parse::<i64>().unwrap_or(0);
    if neg { -v } else { v }
}

// ---------------------------------------------------------------------------------------------------------------
// Dates and periods

pub fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

pub fn monday(d: NaiveDate) -> NaiveDate {
    d - Duration::days(d.weekday().num_days_from_monday() as i64)
}

pub fn month_start(d: NaiveDate) -> NaiveDate {
    ymd(d.year(), d.month(), 1)
}

/// The first day of the month `k` months after `d`'s month (k may be negative).
pub fn add_months(d: NaiveDate, k: i32) -> NaiveDate {
    let idx = d.year() * 12 + d.month0() as i32 + k;
    ymd(idx.div_euclid(12), idx.rem_euclid(12) as u32 + 1, 1)
}

pub fn month_end(d: NaiveDate) -> NaiveDate {
    add_months(d, 1) - Duration::days(1)
}

pub fn quarter_start(d: NaiveDate) -> NaiveDate {
    ymd(d.year(), (d.month0() / 3) * 3 + 1, 1)
}

pub fn quarter_end(d: NaiveDate) -> NaiveDate {
    add_months(quarter_start(d), 3) - Duration::days(1)
}

/// An inclusive range of dates in the tenant's zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: NaiveDate,
    pub end: NaiveDate,
}

impl Span {
    pub fn new(start: NaiveDate, end: NaiveDate) -> Self {
        Self { start, end }
    }
    pub fn contains(&self, d: NaiveDate) -> bool {
        self.start <= d && d <= self.end
    }
    fn days(&self) -> i64 {
        (self.end - self.start).num_days() + 1
    }
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

/// A period as the user names it (metrics.md, "Time expressions").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum P {
    Today,
    Yesterday,
    ThisWeek,
    LastWeek,
    ThisMonth,
    LastMonth,
    ThisQuarter,
    LastQuarter,
    ThisYear,
    LastYear,
    /// today−(N−1)..today
    LastDays(u32),
    /// the N whole weeks before the current one
    LastWeeks(u32),
    /// the N calendar months before the current one
    LastMonths(u32),
    /// a month; without a year the most recent one that has begun
    Month(u32, Option<i32>),
    /// a quarter; without a year the most recent one that has begun
    Quarter(u32, Option<i32>),
    Year(i32),
    Day(NaiveDate),
    Range(NaiveDate, NaiveDate),
    Since(NaiveDate),
    AllTime,
    /// nothing said: the last 30 days
    Default,
}

impl P {
    /// The dates the period covers, clipped to today.
    pub fn span(self, today: NaiveDate, first_day: NaiveDate) -> Span {
        let t = today;
        let s = match self {
            P::Today => Span::new(t, t),
            P::Yesterday => Span::new(t - Duration::days(1), t - Duration::days(1)),
            P::ThisWeek => Span::new(monday(t), t),
            P::LastWeek => Span::new(monday(t) - Duration::days(7), monday(t) - Duration::days(1)),
            P::ThisMonth => Span::new(month_start(t), t),
            P::LastMonth => Span::new(add_months(t, -1), month_start(t) - Duration::days(1)),
            P::ThisQuarter => Span::new(quarter_start(t), t),
            P::LastQuarter => {
                let q = add_months(quarter_start(t), -3);
                Span::new(q, quarter_end(q))
            }
            P::ThisYear => Span::new(ymd(t.year(), 1, 1), t),
            P::LastYear => Span::new(ymd(t.year() - 1, 1, 1), ymd(t.year() - 1, 12, 31)),
            P::LastDays(n) => Span::new(t - Duration::days(n as i64 - 1), t),
            P::LastWeeks(n) => Span::new(
                monday(t) - Duration::days(7 * n as i64),
                monday(t) - Duration::days(1),
            ),
            P::LastMonths(n) => Span::new(
                add_months(t, -(n as i32)),
                month_start(t) - Duration::days(1),
            ),
            P::Month(m, y) => {
                let y = y.unwrap_or(if m <= t.month() {
                    t.year()
                } else {
                    t.year() - 1
                });
                let s = ymd(y, m, 1);
                Span::new(s, month_end(s))
            }
            P::Quarter(q, y) => {
                let first = 3 * (q - 1) + 1;
                let y = y.unwrap_or(if ymd(t.year(), first, 1) <= t {
                    t.year()
                } else {
                    t.year() - 1
                });
                let s = ymd(y, first, 1);
                Span::new(s, quarter_end(s))
            }
            P::Year(y) => Span::new(ymd(y, 1, 1), ymd(y, 12, 31)),
            P::Day(d) => Span::new(d, d),
            P::Range(a, b) => Span::new(a, b),
            P::Since(a) => Span::new(a, t),
            P::AllTime => Span::new(first_day, t),
            P::Default => return P::LastDays(30).span(t, first_day),
        };
        Span::new(s.start, s.end.min(t))
    }

    /// The previous period "of the same kind and length" (metrics.md, "Comparisons").
    pub fn previous(self, today: NaiveDate, first_day: NaiveDate) -> Span {
        let t = today;
        let cur = self.span(t, first_day);
        let shift = |days: i64| {
            Span::new(
                cur.start - Duration::days(days),
                cur.end - Duration::days(days),
            )
        };
        // A month / quarter / year cut short by today: the same number of days from the previous one's start.
        let same_days = |prev_start: NaiveDate, prev_end: NaiveDate| {
            let end = prev_start + Duration::days((cur.end - cur.start).num_days());
            Span::new(prev_start, end.min(prev_end))
        };
        match self {
            P::Today | P::Yesterday | P::Day(_) => shift(1),
            P::ThisWeek => shift(7),
            P::LastWeek => shift(7),
            P::LastWeeks(n) => shift(7 * n as i64),
            P::LastDays(n) => shift(n as i64),
            P::Default => shift(30),
            P::ThisMonth | P::LastMonth | P::Month(..) | P::LastMonths(_) => {
                let n = if let P::LastMonths(n) = self {
                    n as i32
                } else {
                    1
                };
                let prev = add_months(cur.start, -n);
                if cur.end == month_end(add_months(cur.start, n - 1)) {
                    Span::new(prev, cur.start - Duration::days(1))
                } else {
                    same_days(prev, month_end(prev))
                }
            }
            P::ThisQuarter | P::LastQuarter | P::Quarter(..) => {
                let prev = add_months(cur.start, -3);
                if cur.end == quarter_end(cur.start) {
                    Span::new(prev, quarter_end(prev))
                } else {
                    same_days(prev, quarter_end(prev))
                }
            }
            P::ThisYear | P::LastYear | P::Year(_) => {
                let y = cur.start.year() - 1;
                if cur.end == ymd(cur.start.year(), 12, 31) {
                    Span::new(ymd(y, 1, 1), ymd(y, 12, 31))
                } else {
                    let end = NaiveDate::from_ymd_opt(y, cur.end.month(), cur.end.day())
                        .unwrap_or(ymd(y, cur.end.month(), 28));
                    Span::new(ymd(y, 1, 1), end)
                }
            }
            P::Range(..) | P::Since(_) | P::AllTime => shift(cur.days()),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Records

#[derive(Debug, Clone)]
pub struct Customer {
    pub name: String,
    pub email: String,
}

#[derive(Debug, Clone)]
pub struct Line {
    pub product: usize,
    pub qty: i64,
    pub price: i64,
}

/// A counted sale (Shopify order not cancelled and not test; Stripe charge succeeded).
#[derive(Debug, Clone)]
pub struct Sale {
    pub day: NaiveDate,
    /// total − successful refunds, in cents
    pub net: i64,
    pub discounts: i64,
    pub customer: Option<usize>,
    pub lines: Vec<Line>,
}

/// One tenant's data, reduced to what the definitions need.
#[derive(Debug, Clone)]
pub struct Books {
    pub tz: Tz,
    pub customers: Vec<Customer>,
    pub products: Vec<String>,
    pub sales: Vec<Sale>,
    /// (refund day, amount in cents): Shopify refund-date basis over non-test orders; Stripe the charge's day.
    pub refunds: Vec<(NaiveDate, i64)>,
    /// days of failed charges
    pub failed: Vec<NaiveDate>,
    /// the first day with data (any order or charge)
    pub first_day: NaiveDate,
    first_purchase: HashMap<usize, NaiveDate>,
}

/// A metric's value: money in cents, a count, or a money ratio (AOV).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum V {
    Money(i64),
    Count(i64),
    Ratio(i64, i64),
}

impl V {
    pub fn as_f64(self) -> f64 {
        match self {
            V::Money(c) => c as f64 / 100.0,
            V::Count(n) => n as f64,
            V::Ratio(_, 0) => 0.0,
            V::Ratio(c, n) => c as f64 / n as f64 / 100.0,
        }
    }
    /// Whether a reported number is this value: counts exactly, money within a cent of the 2-decimal rounding.
    pub fn matches(self, got: f64) -> bool {
        match self {
            V::Count(n) => got == n as f64,
            _ => (got - (self.as_f64() * 100.0).round() / 100.0).abs() <= 0.0101,
        }
    }
}

impl std::fmt::Display for V {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            V::Count(n) => write!(f, "{n}"),
            v => write!(f, "{:.2}", v.as_f64()),
        }
    }
}

/// What the user asks for, as metrics.md names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum M {
    Revenue,
    Orders,
    Aov,
    Customers,
    NewCustomers,
    ReturningCustomers,
    Refunds,
    Units,
    ProductSales,
    Discounts,
    FailedPayments,
}

impl M {
    pub fn name(self) -> &'static str {
        match self {
            M::Revenue => "revenue",
            M::Orders => "orders",
            M::Aov => "aov",
            M::Customers => "customers",
            M::NewCustomers => "new_customers",
            M::ReturningCustomers => "returning_customers",
            M::Refunds => "refunds",
            M::Units => "units",
            M::ProductSales => "product_sales",
            M::Discounts => "discounts",
            M::FailedPayments => "failed_payments",
        }
    }
}

/// A ranking (top N).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rank {
    Products,
    ProductsByUnits,
    Customers,
}

impl Rank {
    pub fn name(self) -> &'static str {
        match self {
            Rank::Products => "top_products",
            Rank::ProductsByUnits => "top_products_by_units",
            Rank::Customers => "top_customers",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grain {
    Day,
    Week,
    Month,
    Quarter,
}

/// A ranked row: label (product title or customer name), an accepted alternative (customer e-mail), value.
#[derive(Debug, Clone)]
pub struct Row {
    pub label: String,
    pub alt: Option<String>,
    pub value: V,
}

/// Restricts a metric to one product's lines or one customer's sales.
#[derive(Debug, Clone, Copy, Default)]
pub struct Filter {
    pub product: Option<usize>,
    pub customer: Option<usize>,
}

fn local_day(ts: &str, tz: Tz) -> NaiveDate {
    DateTime::parse_from_rfc3339(ts)
        .unwrap_or_else(|e| panic!("bad timestamp {ts}: {e}"))
        .with_timezone(&tz)
        .date_naive()
}

fn unix_day(secs: i64, tz: Tz) -> NaiveDate {
    DateTime::from_timestamp(secs, 0)
        .unwrap()
        .with_timezone(&tz)
        .date_naive()
}

fn full_name(first: &Value, last: &Value) -> String {
    let parts: Vec<&str> = [first.as_str(), last.as_str()]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect();
    parts.join(" ")
}

impl Books {
    /// Reduces a tenant's raw records (Shopify orders and/or Stripe charges) under metrics.md.
    pub fn new(d: &Dataset, tz: Tz) -> Self {
        let mut customers: Vec<Customer> = Vec::new();
        let mut cust_index: HashMap<String, usize> = HashMap::new();
        let mut intern_customer = |key: String, name: String, email: String| -> usize {
            *cust_index.entry(key).or_insert_with(|| {
                customers.push(Customer { name, email });
                customers.len() - 1
            })
        };
        // Customer records first, so names and e-mails come from them.
        for c in &d.customers {
            intern_customer(
                format!("shopify:{}", c["id"]),
                full_name(&c["first_name"], &c["last_name"]),
                c["email"].as_str().unwrap_or_default().to_string(),
            );
        }
        for c in &d.stripe_customers {
            intern_customer(
                format!("stripe:{}", c["id"].as_str().unwrap_or_default()),
                c["name"].as_str().unwrap_or_default().to_string(),
                c["email"].as_str().unwrap_or_default().to_string(),
            );
        }
        let mut products: Vec<String> = Vec::new();
        let mut prod_index: HashMap<String, usize> = HashMap::new();
        for p in &d.products {
            prod_index.insert(p["id"].to_string(), products.len());
            products.push(p["title"].as_str().unwrap_or_default().to_string());
        }
        let mut sales = Vec::new();
        let mut refunds = Vec::new();
        let mut failed = Vec::new();
        let mut days = Vec::new();
        for o in &d.orders {
            let day = local_day(o["created_at"].as_str().unwrap(), tz);
            days.push(day);
            let test = o["test"].as_bool().unwrap_or(false);
            let mut refunded = 0;
            for r in o["refunds"].as_array().into_iter().flatten() {
                let amount: i64 = r["transactions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|t| t["kind"] == "refund" && t["status"] == "success")
                    .map(|t| cents(&t["amount"]))
                    .sum();
                refunded += amount;
                if !test && amount != 0 {
                    refunds.push((local_day(r["created_at"].as_str().unwrap(), tz), amount));
                }
            }
            if test || !o["cancelled_at"].is_null() {
                continue;
            }
            let customer = o["customer"]["id"].as_u64().map(|id| {
                let c = &o["customer"];
                intern_customer(
                    format!("shopify:{id}"),
                    full_name(&c["first_name"], &c["last_name"]),
                    c["email"].as_str().unwrap_or_default().to_string(),
                )
            });
            let lines = o["line_items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|l| {
                    let key = l["product_id"].to_string();
                    let product = *prod_index.entry(key).or_insert_with(|| {
                        products.push(l["title"].as_str().unwrap_or_default().to_string());
                        products.len() - 1
                    });
                    Line {
                        product,
                        qty: l["quantity"].as_i64().unwrap_or(0),
                        price: cents(&l["price"]),
                    }
                })
                .collect();
            sales.push(Sale {
                day,
                net: cents(&o["total_price"]) - refunded,
                discounts: cents(&o["total_discounts"]),
                customer,
                lines,
            });
        }
        for c in &d.charges {
            let day = unix_day(c["created"].as_i64().unwrap(), tz);
            days.push(day);
            match c["status"].as_str() {
                Some("succeeded") => {}
                Some("failed") => {
                    failed.push(day);
                    continue;
                }
                _ => continue,
            }
            let customer = c["customer"].as_str().map(|id| {
                let b = &c["billing_details"];
                intern_customer(
                    format!("stripe:{id}"),
                    b["name"].as_str().unwrap_or_default().to_string(),
                    b["email"].as_str().unwrap_or_default().to_string(),
                )
            });
            let amount = c["amount"].as_i64().unwrap_or(0);
            let refunded = c["amount_refunded"].as_i64().unwrap_or(0);
            if refunded != 0 {
                refunds.push((day, refunded));
            }
            sales.push(Sale {
                day,
                net: amount - refunded,
                discounts: 0,
                customer,
                lines: Vec::new(),
            });
        }
        let mut first_purchase: HashMap<usize, NaiveDate> = HashMap::new();
        for s in &sales {
            if let Some(c) = s.customer {
                let e = first_purchase.entry(c).or_insert(s.day);
                *e = (*e).min(s.day);
            }
        }
        let first_day = days
            .into_iter()
            .min()
            .expect("the fixture has orders or charges");
        Self {
            tz,
            customers,
            products,
            sales,
            refunds,
            failed,
            first_day,
            first_purchase,
        }
    }

    fn sales_in<'a>(&'a self, p: Span, f: Filter) -> impl Iterator<Item = &'a Sale> + 'a {
        self.sales.iter().filter(move |s| {
            p.contains(s.day)
                && f.customer.is_none_or(|c| s.customer == Some(c))
                && f.product
                    .is_none_or(|pr| s.lines.iter().any(|l| l.product == pr))
        })
    }

    /// A scalar metric over the period.
    pub fn scalar(&self, m: M, p: Span, f: Filter) -> V {
        let line_sum = |value: &dyn Fn(&Line) -> i64| -> i64 {
            self.sales_in(p, f)
                .flat_map(|s| s.lines.iter())
                .filter(|l| f.product.is_none_or(|pr| l.product == pr))
                .map(value)
                .sum()
        };
        let customers =
            || -> HashSet<usize> { self.sales_in(p, f).filter_map(|s| s.customer).collect() };
        match m {
            M::Revenue => V::Money(self.sales_in(p, f).map(|s| s.net).sum()),
            M::Orders => V::Count(self.sales_in(p, f).count() as i64),
            M::Aov => V::Ratio(
                self.sales_in(p, f).map(|s| s.net).sum(),
                self.sales_in(p, f).count() as i64,
            ),
            M::Customers => V::Count(customers().len() as i64),
            M::NewCustomers => V::Count(
                customers()
                    .into_iter()
                    .filter(|c| p.contains(self.first_purchase[c]))
                    .count() as i64,
            ),
            M::ReturningCustomers => V::Count(
                customers()
                    .into_iter()
                    .filter(|c| self.first_purchase[c] < p.start)
                    .count() as i64,
            ),
            M::Refunds => {
                assert!(
                    f.product.is_none() && f.customer.is_none(),
                    "filtered refunds are not defined"
                );
                V::Money(
                    self.refunds
                        .iter()
                        .filter(|(d, _)| p.contains(*d))
                        .map(|(_, a)| a)
                        .sum(),
                )
            }
            M::Units => V::Count(line_sum(&|l| l.qty)),
            M::ProductSales => V::Money(line_sum(&|l| l.qty * l.price)),
            M::Discounts => V::Money(self.sales_in(p, f).map(|s| s.discounts).sum()),
            M::FailedPayments => {
                V::Count(self.failed.iter().filter(|d| p.contains(**d)).count() as i64)
            }
        }
    }

    /// The top `n` rows of a ranking: highest value first, ties broken by label.
    pub fn top(&self, r: Rank, p: Span, n: usize) -> Vec<Row> {
        let mut by: BTreeMap<usize, i64> = BTreeMap::new();
        for s in self.sales_in(p, Filter::default()) {
            match r {
                Rank::Customers => {
                    if let Some(c) = s.customer {
                        *by.entry(c).or_default() += s.net;
                    }
                }
                Rank::Products | Rank::ProductsByUnits => {
                    for l in &s.lines {
                        *by.entry(l.product).or_default() += if r == Rank::Products {
                            l.qty * l.price
                        } else {
                            l.qty
                        };
                    }
                }
            }
        }
        let mut rows: Vec<Row> = by
            .into_iter()
            .map(|(k, v)| match r {
                Rank::Customers => Row {
                    label: self.customers[k].name.clone(),
                    alt: Some(self.customers[k].email.clone()),
                    value: V::Money(v),
                },
                Rank::Products => Row {
                    label: self.products[k].clone(),
                    alt: None,
                    value: V::Money(v),
                },
                Rank::ProductsByUnits => Row {
                    label: self.products[k].clone(),
                    alt: None,
                    value: V::Count(v),
                },
            })
            .collect();
        let key = |v: V| match v {
            V::Money(c) | V::Count(c) => c,
            V::Ratio(..) => unreachable!(),
        };
        rows.sort_by(|a, b| {
            key(b.value)
                .cmp(&key(a.value))
                .then_with(|| a.label.cmp(&b.label))
        });
        rows.truncate(n);
        rows
    }

    /// One row per bucket over the period, empty buckets included; a bucket's label is its first date and its
    /// value the metric over the part of it inside the period.
    pub fn breakdown(&self, m: M, g: Grain, p: Span, f: Filter) -> Vec<(NaiveDate, V)> {
        let (first, next): (NaiveDate, fn(NaiveDate) -> NaiveDate) = match g {
            Grain::Day => (p.start, |d| d + Duration::days(1)),
            Grain::Week => (monday(p.start), |d| d + Duration::days(7)),
            Grain::Month => (month_start(p.start), |d| add_months(d, 1)),
            Grain::Quarter => (quarter_start(p.start), |d| add_months(d, 3)),
        };
        let mut out = Vec::new();
        let mut b = first;
        while b <= p.end {
            let e = next(b) - Duration::days(1);
            let part = Span::new(b.max(p.start), e.min(p.end));
            out.push((b, self.scalar(m, part, f)));
            b = next(b);
        }
        out
    }

    /// Index of the product with this exact title.
    pub fn product(&self, title: &str) -> usize {
        self.products
            .iter()
            .position(|t| t == title)
            .unwrap_or_else(|| panic!("no product titled {title:?} in the fixture"))
    }

    /// Indices of the customers whose full name is shared with nobody else, with their counted sales.
    pub fn unique_customers(&self) -> Vec<(usize, usize)> {
        let mut names: HashMap<&str, usize> = HashMap::new();
        for c in &self.customers {
            *names.entry(c.name.as_str()).or_default() += 1;
        }
        let mut count: HashMap<usize, usize> = HashMap::new();
        for s in &self.sales {
            if let Some(c) = s.customer {
                *count.entry(c).or_default() += 1;
            }
        }
        let mut out: Vec<(usize, usize)> = count
            .into_iter()
            .filter(|(c, _)| names[self.customers[*c].name.as_str()] == 1)
            .collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        out
    }

    /// Whether a (lower-cased) word occurs in any product title or customer name or e-mail.
    pub fn mentions(&self, word: &str) -> bool {
        let w = word.to_lowercase();
        self.products.iter().any(|t| t.to_lowercase().contains(&w))
            || self
                .customers
                .iter()
                .any(|c| c.name.to_lowercase().contains(&w) || c.email.to_lowercase().contains(&w))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_follow_the_table() {
        let t = ymd(2025, 6, 15); // a Sunday
        let f = ymd(2024, 1, 1);
        let s = |p: P| p.span(t, f);
        assert_eq!(s(P::ThisWeek), Span::new(ymd(2025, 6, 9), t));
        assert_eq!(s(P::LastWeek), Span::new(ymd(2025, 6, 2), ymd(2025, 6, 8)));
        assert_eq!(s(P::LastDays(14)), Span::new(ymd(2025, 6, 2), t));
        assert_eq!(
            s(P::LastWeeks(3)),
            Span::new(ymd(2025, 5, 19), ymd(2025, 6, 8))
        );
        assert_eq!(
            s(P::LastMonths(6)),
            Span::new(ymd(2024, 12, 1), ymd(2025, 5, 31))
        );
        assert_eq!(s(P::Quarter(2, None)), Span::new(ymd(2025, 4, 1), t));
        assert_eq!(
            s(P::Quarter(3, None)),
            Span::new(ymd(2024, 7, 1), ymd(2024, 9, 30))
        );
        assert_eq!(
            s(P::Month(7, None)),
            Span::new(ymd(2024, 7, 1), ymd(2024, 7, 31))
        );
        assert_eq!(s(P::Month(6, None)), Span::new(ymd(2025, 6, 1), t));
        let prev = |p: P| p.previous(t, f);
        assert_eq!(
            prev(P::ThisQuarter),
            Span::new(ymd(2025, 1, 1), ymd(2025, 3, 17))
        );
        assert_eq!(
            prev(P::ThisYear),
            Span::new(ymd(2024, 1, 1), ymd(2024, 6, 15))
        );
        assert_eq!(
            prev(P::LastDays(30)),
            Span::new(ymd(2025, 4, 17), ymd(2025, 5, 16))
        );
        assert_eq!(
            prev(P::LastMonth),
            Span::new(ymd(2025, 4, 1), ymd(2025, 4, 30))
        );
        assert_eq!(
            prev(P::ThisMonth),
            Span::new(ymd(2025, 5, 1), ymd(2025, 5, 15))
        );
        assert_eq!(
            prev(P::ThisWeek),
            Span::new(ymd(2025, 6, 2), ymd(2025, 6, 8))
        );
        assert_eq!(
            prev(P::Year(2024)),
            Span::new(ymd(2023, 1, 1), ymd(2023, 12, 31))
        );
        assert_eq!(
            prev(P::LastMonths(3)),
            Span::new(ymd(2024, 12, 1), ymd(2025, 2, 28))
        );
        let t = ymd(2025, 3, 31);
        assert_eq!(
            P::ThisMonth.previous(t, f),
            Span::new(ymd(2025, 2, 1), ymd(2025, 2, 28))
        );
    }

    #[test]
    fn cents_parse() {
        assert_eq!(cents(&Value::from("18.00")), 1800);
        assert_eq!(cents(&Value::from("0.5")), 50);
        assert_eq!(cents(&Value::from("7")), 700);
        assert_eq!(cents(&Value::from("-1.25")), -125);
    }
}
