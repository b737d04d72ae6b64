//! Paraphrase suite: several hundred questions, generated from templates that combine the many ways shop owners
//! talk about their numbers (synonyms, period phrasings, typos, product and customer names), asked end to end
//! over the realistic fixture tenants in `shared/fixtures/` (northwind = Shopify, brightside = Stripe).
//!
//! Every expected answer is computed independently from the raw fixture records by `smb_tests::oracle`,
//! strictly under `shared/product/metrics.md`; periods are resolved by the oracle from the `as_of` and the period
//! the template means. The test prints a per-category table and every miss, then asserts that all passed.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{Datelike, NaiveDate, TimeZone};
use chrono_tz::Tz;
use serde_json::{Value, json};
use smb_tests::fake::{Dataset, FakeSaas};
use smb_tests::oracle::{
    Books, Filter, Grain, M, P, Rank, Row, Span, V, fixtures_dir, source_timezone, ymd,
};
use smb_tests::sync::{connect_shopify, connect_stripe, sync};
use smb_tests::{App, Owner};

// ---------------------------------------------------------------------------------------------------------------
// Expectations

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Tenant {
    Northwind,
    Brightside,
}

#[derive(Debug, Clone)]
struct Want {
    metric: &'static str,
    span: Span,
    value: Option<V>,
    rows: Option<Vec<Row>>,
    previous: Option<(Span, V)>,
    change_pct: Option<Option<f64>>,
    product: Option<String>,
    /// (name, e-mail): either is accepted
    customer: Option<(String, String)>,
}

impl Want {
    fn new(metric: &'static str, span: Span) -> Self {
        Self {
            metric,
            span,
            value: None,
            rows: None,
            previous: None,
            change_pct: None,
            product: None,
            customer: None,
        }
    }
}

#[derive(Debug, Clone)]
enum Expect {
    Conversation,
    /// A product or customer that does not exist: no value, and an unresolved mention of this kind whose text
    /// contains `word`.
    Unknown {
        kind: &'static str,
        word: String,
    },
    Metric(Box<Want>),
}

#[derive(Debug, Clone)]
struct Case {
    category: &'static str,
    tenant: Tenant,
    as_of: String,
    question: String,
    expect: Expect,
}

// ---------------------------------------------------------------------------------------------------------------
// Period phrases

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const ORDINAL_WORDS: [&str; 4] = ["first", "second", "third", "fourth"];

fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// The most recent date with this month and day that is not after today.
fn most_recent(month: u32, day: u32, today: NaiveDate) -> Option<NaiveDate> {
    let this = NaiveDate::from_ymd_opt(today.year(), month, day)?;
    if this <= today {
        Some(this)
    } else {
        NaiveDate::from_ymd_opt(today.year() - 1, month, day)
    }
}

/// Ways to write a date; the year-less ones only when they mean this date as of today.
fn date_styles(d: NaiveDate, today: NaiveDate) -> Vec<Option<String>> {
    let m = MONTHS[d.month0() as usize];
    let yearless = most_recent(d.month(), d.day(), today) == Some(d);
    let only = |s: String| yearless.then_some(s);
    vec![
        only(format!("{m} {}", d.day())),
        Some(d.format("%Y-%m-%d").to_string()),
        only(format!("{m} {}", ordinal(d.day()))),
        Some(format!("{} {m} {}", d.day(), d.year())),
        only(format!("{}/{}", d.month(), d.day())),
        Some(format!("{m} {}, {}", d.day(), d.year())),
    ]
}

/// How a user may say the period (each phrase carries its own preposition); "" for no period at all.
fn period_phrases(p: P, today: NaiveDate) -> Vec<String> {
    let v = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match p {
        P::Today => v(&["today", "so far today"]),
        P::Yesterday => v(&["yesterday"]),
        P::ThisWeek => v(&["this week", "week to date", "WTD", "so far this week"]),
        P::LastWeek => v(&["last week", "during last week"]),
        P::ThisMonth => v(&["this month", "month to date", "so far this month", "MTD"]),
        P::LastMonth => v(&[
            "last month",
            "in the previous month",
            "during the prior month",
        ]),
        P::ThisQuarter => v(&[
            "this quarter",
            "quarter to date",
            "QTD",
            "so far this quarter",
        ]),
        P::LastQuarter => v(&["last quarter", "in the previous quarter"]),
        P::ThisYear => v(&["this year", "year to date", "YTD", "so far this year"]),
        P::LastYear => v(&["last year", "in the previous year"]),
        P::LastDays(14) => vec![
            "over the past fortnight".into(),
            "in the last 14 days".into(),
            "in the past fortnight".into(),
            "over the past 14 days".into(),
        ],
        P::LastDays(n) => vec![
            format!("in the last {n} days"),
            format!("over the past {n} days"),
        ],
        P::LastWeeks(n) => vec![
            format!("in the last {n} weeks"),
            format!("over the last {n} weeks"),
        ],
        P::LastMonths(n) => vec![
            format!("in the last {n} months"),
            format!("over the past {n} months"),
        ],
        P::Month(m, None) => {
            let name = MONTHS[m as usize - 1];
            vec![
                format!("in {name}"),
                format!("during {name}"),
                format!("for {name}"),
            ]
        }
        P::Month(m, Some(y)) => {
            let name = MONTHS[m as usize - 1];
            vec![
                format!("in {name} {y}"),
                format!("for {name} {y}"),
                format!("during {name} of {y}"),
            ]
        }
        P::Quarter(q, None) => {
            let w = ORDINAL_WORDS[q as usize - 1];
            vec![
                format!("in Q{q}"),
                format!("in the {w} quarter"),
                format!("Q{q}"),
                format!("during the {w} quarter"),
            ]
        }
        P::Quarter(q, Some(y)) => {
            let w = ORDINAL_WORDS[q as usize - 1];
            vec![
                format!("in Q{q} {y}"),
                format!("in the {w} quarter of {y}"),
                format!("for Q{q} of {y}"),
                format!("Q{q} {y}"),
            ]
        }
        P::Year(y) => vec![format!("in {y}"), format!("during {y}"), format!("for {y}")],
        P::Day(d) => date_styles(d, today)
            .into_iter()
            .flatten()
            .map(|s| format!("on {s}"))
            .collect(),
        P::Range(a, b) => date_styles(a, today)
            .into_iter()
            .zip(date_styles(b, today))
            .enumerate()
            .filter_map(|(i, (x, y))| {
                let (x, y) = (x?, y?);
                Some(if i % 2 == 0 {
                    format!("from {x} to {y}")
                } else {
                    format!("between {x} and {y}")
                })
            })
            .collect(),
        P::Since(a) => date_styles(a, today)
            .into_iter()
            .flatten()
            .map(|s| format!("since {s}"))
            .collect(),
        P::AllTime => v(&[
            "of all time",
            "ever",
            "all time",
            "over the lifetime of the business",
        ]),
        P::Default => v(&[""]),
    }
}

/// A period named bare, as in "this month vs last month".
fn bare(p: P) -> String {
    match p {
        P::ThisWeek => "this week".into(),
        P::LastWeek => "last week".into(),
        P::ThisMonth => "this month".into(),
        P::LastMonth => "last month".into(),
        P::ThisQuarter => "this quarter".into(),
        P::LastQuarter => "last quarter".into(),
        P::ThisYear => "this year".into(),
        P::LastYear => "last year".into(),
        P::Month(m, None) => MONTHS[m as usize - 1].into(),
        P::Month(m, Some(y)) => format!("{} {y}", MONTHS[m as usize - 1]),
        P::Quarter(q, Some(y)) => format!("Q{q} {y}"),
        P::Quarter(q, None) => format!("Q{q}"),
        P::Year(y) => y.to_string(),
        other => panic!("no bare phrase for {other:?}"),
    }
}

fn kind(p: P) -> String {
    let s = format!("{p:?}");
    s.split('(').next().unwrap().to_string()
}

fn fill(template: &str, pairs: &[(&str, &str)]) -> String {
    let mut s = template.to_string();
    for (k, v) in pairs {
        s = s.replace(k, v);
    }
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    s.replace(" ?", "?").replace(" :", ":").trim().to_string()
}

// ---------------------------------------------------------------------------------------------------------------
// Templates

fn metric_templates(m: M, t: Tenant) -> &'static [&'static str] {
    match (m, t) {
        (M::Revenue, _) => &[
            "What was my revenue {p}?",
            "How much did we make {p}?",
            "total sales {p}",
            "What were our takings {p}?",
            "How much income did we bring in {p}?",
            "turnover {p}",
            "How much did I sell {p}?",
            "how much money did we earn {p}",
            "Show me sales {p}",
            "how much have we made {p}",
        ],
        (M::Orders, Tenant::Northwind) => &[
            "How many orders did we get {p}?",
            "number of orders {p}",
            "How many transactions were there {p}?",
            "How many purchases were made {p}?",
            "order count {p}",
            "How many orders came in {p}?",
            "how many orders did I receive {p}",
        ],
        (M::Orders, Tenant::Brightside) => &[
            "How many payments did we receive {p}?",
            "number of payments {p}",
            "How many transactions {p}?",
            "how many successful charges {p}",
            "How many purchases were made {p}?",
        ],
        (M::Aov, Tenant::Northwind) => &[
            "What was the average order value {p}?",
            "AOV {p}",
            "average ticket {p}",
            "What's the average basket {p}?",
            "average order size {p}",
            "what was our average sale {p}",
        ],
        (M::Aov, Tenant::Brightside) => &[
            "average payment {p}",
            "What was the average order value {p}?",
            "AOV {p}",
            "average ticket size {p}",
            "what was the average payment amount {p}",
        ],
        (M::Customers, Tenant::Northwind) => &[
            "How many customers did we have {p}?",
            "How many different people bought from us {p}?",
            "number of unique buyers {p}",
            "How many shoppers did we have {p}?",
            "How many distinct customers placed an order {p}?",
        ],
        (M::Customers, Tenant::Brightside) => &[
            "How many customers did we have {p}?",
            "How many different people paid us {p}?",
            "How many unique customers paid {p}?",
            "number of distinct buyers {p}",
        ],
        (M::NewCustomers, _) => &[
            "How many new customers did we get {p}?",
            "How many first-time buyers {p}?",
            "new customers {p}",
            "How many people bought from us for the first time {p}?",
            "How many new shoppers did we win {p}?",
        ],
        (M::ReturningCustomers, _) => &[
            "How many returning customers {p}?",
            "How many repeat customers did we have {p}?",
            "How many customers came back {p}?",
            "returning buyers {p}",
            "How many existing customers bought again {p}?",
        ],
        (M::Refunds, _) => &[
            "How much did we refund {p}?",
            "total refunds {p}",
            "How much money did we give back {p}?",
            "refunded amount {p}",
            "How much went back to customers as refunds {p}?",
            "What did refunds cost us {p}?",
        ],
        (M::Units, _) => &[
            "How many units did we sell {p}?",
            "How many items did we sell {p}?",
            "total quantity sold {p}",
            "number of items sold {p}",
            "units sold {p}",
            "How many pieces did we sell {p}?",
        ],
        (M::Discounts, _) => &[
            "How much did we give away in discounts {p}?",
            "total discounts {p}",
            "How much did discount codes cost us {p}?",
            "discount amount {p}",
            "How much did we knock off with discounts {p}?",
            "How much did we give away in coupons {p}?",
        ],
        (M::FailedPayments, _) => &[
            "How many payments failed {p}?",
            "How many cards were declined {p}?",
            "failed charges {p}",
            "How many card payments were declined {p}?",
            "number of failed payments {p}",
            "How many declined payments did we have {p}?",
        ],
        (M::ProductSales, _) => &[],
    }
}

fn tenant_metrics(t: Tenant) -> &'static [M] {
    match t {
        Tenant::Northwind => &[
            M::Revenue,
            M::Orders,
            M::Aov,
            M::Customers,
            M::NewCustomers,
            M::ReturningCustomers,
            M::Refunds,
            M::Units,
            M::Discounts,
        ],
        Tenant::Brightside => &[
            M::Revenue,
            M::Orders,
            M::Aov,
            M::Customers,
            M::NewCustomers,
            M::ReturningCustomers,
            M::Refunds,
            M::FailedPayments,
        ],
    }
}

/// Products, each named by distinctive parts of its title (any case, singular or plural, no size words).
const PRODUCT_NAMES: &[(&str, &[&str])] = &[
    (
        "Ethiopia Yirgacheffe 12oz",
        &[
            "ethiopia yirgacheffe",
            "Yirgacheffe",
            "ETHIOPIA YIRGACHEFFE",
        ],
    ),
    ("Colombia Huila 12oz", &["Colombia Huila", "huila"]),
    (
        "Guatemala Antigua 12oz",
        &["guatemala antigua", "Guatemala"],
    ),
    ("Kenya AA Nyeri 12oz", &["Kenya AA Nyeri", "nyeri"]),
    (
        "Sumatra Mandheling 12oz",
        &["sumatra mandheling", "Sumatra"],
    ),
    ("Brazil Cerrado 2lb", &["Brazil Cerrado", "cerrado"]),
    (
        "House Espresso Blend 12oz",
        &["house espresso blend", "House Espresso", "espresso blend"],
    ),
    (
        "Decaf Mexico Chiapas 12oz",
        &["decaf mexico chiapas", "Decaf Mexico"],
    ),
    ("Holiday Blend 12oz", &["holiday blend", "Holiday Blend"]),
    (
        "Cold Brew Pitcher Packs",
        &["cold brew pitcher packs", "Cold Brew Pitcher Pack"],
    ),
    (
        "Conical Burr Grinder",
        &[
            "conical burr grinders",
            "Conical Burr Grinder",
            "burr grinder",
        ],
    ),
    ("Hand Grinder", &["hand grinders", "Hand Grinder"]),
    (
        "Pour-Over Dripper",
        &["pour-over drippers", "Pour-Over Dripper"],
    ),
    (
        "Gooseneck Kettle",
        &["gooseneck kettles", "Gooseneck Kettle"],
    ),
    ("French Press 34oz", &["French Presses", "french press"]),
    ("Paper Filters 100ct", &["paper filters", "Paper Filter"]),
    ("Ceramic Mug", &["ceramic mugs", "Ceramic Mug"]),
    ("Travel Tumbler", &["travel tumblers", "TRAVEL TUMBLER"]),
    ("Coffee Scale", &["coffee scales", "Coffee Scale"]),
    ("Gift Card $50", &["gift cards", "Gift Card"]),
    (
        "Monthly Subscription Box",
        &["subscription boxes", "Monthly Subscription Box"],
    ),
    (
        "Tasting Flight Sampler",
        &["tasting flight samplers", "Tasting Flight"],
    ),
    (
        "Barista Workshop Ticket",
        &["barista workshop tickets", "Barista Workshop"],
    ),
    (
        "Chai Concentrate 32oz",
        &["chai concentrate", "Chai Concentrate"],
    ),
];

const PRODUCT_MONEY: &[&str] = &[
    "How much did we make from {x} {p}?",
    "sales of {x} {p}",
    "revenue from {x} {p}",
    "How much revenue did {x} generate {p}?",
    "{x} sales {p}",
];
const PRODUCT_UNITS: &[&str] = &[
    "How many {x} did we sell {p}?",
    "units of {x} sold {p}",
    "How many {x} were sold {p}?",
    "quantity of {x} sold {p}",
];

const CUSTOMER_MONEY: &[&str] = &[
    "How much did {c} spend {p}?",
    "What did {c} spend with us {p}?",
    "total spend of {c} {p}",
    "How much has {c} spent {p}?",
    "How much revenue came from {c} {p}?",
];
const CUSTOMER_COUNT: &[&str] = &[
    "How many orders did {c} place {p}?",
    "How many times did {c} buy {p}?",
    "number of orders from {c} {p}",
    "How many purchases did {c} make {p}?",
];
const CUSTOMER_COUNT_STRIPE: &[&str] = &[
    "How many payments did {c} make {p}?",
    "How many times did {c} pay us {p}?",
    "number of payments from {c} {p}",
];

const TOP_PRODUCTS: &[&str] = &[
    "top {n} products {p}",
    "Which {n} products made the most money {p}?",
    "What were my best sellers {p}?",
    "my {n} best-selling products {p}",
    "Which products brought in the most revenue {p}?",
    "show the {n} highest-grossing products {p}",
    "top products {p}",
];
const TOP_UNITS: &[&str] = &[
    "top {n} products by units {p}",
    "Which {n} products sold the most units {p}?",
    "most popular products by number sold {p}",
    "{n} best sellers by quantity {p}",
    "What were the top {n} items by units sold {p}?",
];
const TOP_CUSTOMERS: &[&str] = &[
    "top {n} customers {p}",
    "Who spent the most {p}?",
    "Who were our biggest customers {p}?",
    "my {n} best customers {p}",
    "Which {n} customers spent the most {p}?",
    "who were the {n} biggest spenders {p}",
    "list my top {n} clients {p}",
];

const N_CHOICES: &[(usize, &str)] = &[
    (3, "3"),
    (10, "ten"),
    (5, "5"),
    (3, "three"),
    (4, "4"),
    (5, "five"),
    (10, "10"),
    (7, "seven"),
];

// ---------------------------------------------------------------------------------------------------------------
// Generation

/// One tenant at one `as_of`, with the periods its questions use.
struct At {
    tenant: Tenant,
    as_of: String,
    today: NaiveDate,
    periods: Vec<P>,
}

struct Gen<'a> {
    books: &'a HashMap<Tenant, Books>,
    counters: HashMap<String, usize>,
    cases: Vec<Case>,
}

impl Gen<'_> {
    /// The next of several choices for this key (so each variant is used in turn).
    fn next(&mut self, key: &str, len: usize) -> usize {
        let c = self.counters.entry(key.to_string()).or_default();
        let i = *c % len.max(1);
        *c += 1;
        i
    }

    fn phrase(&mut self, p: P, today: NaiveDate) -> String {
        let all = period_phrases(p, today);
        assert!(!all.is_empty(), "no phrase for {p:?} at {today}");
        let i = self.next(&format!("period:{}", kind(p)), all.len());
        all[i].clone()
    }

    fn push(&mut self, category: &'static str, at: &At, question: String, expect: Expect) {
        self.cases.push(Case {
            category,
            tenant: at.tenant,
            as_of: at.as_of.clone(),
            question,
            expect,
        });
    }

    fn books(&self, t: Tenant) -> &Books {
        &self.books[&t]
    }

    fn scalar_want(&self, at: &At, m: M, p: P, f: Filter) -> Want {
        let b = self.books(at.tenant);
        let span = p.span(at.today, b.first_day);
        let mut w = Want::new(m.name(), span);
        w.value = Some(b.scalar(m, span, f));
        if let Some(pr) = f.product {
            w.product = Some(b.products[pr].clone());
        }
        if let Some(c) = f.customer {
            w.customer = Some((b.customers[c].name.clone(), b.customers[c].email.clone()));
        }
        w
    }

    fn scalar(&mut self, at: &At, m: M, p: P) {
        let templates = metric_templates(m, at.tenant);
        let i = self.next(&format!("metric:{m:?}:{:?}", at.tenant), templates.len());
        let phrase = self.phrase(p, at.today);
        let q = fill(templates[i], &[("{p}", &phrase)]);
        let w = self.scalar_want(at, m, p, Filter::default());
        self.push("scalar", at, q, Expect::Metric(Box::new(w)));
    }

    fn top(&mut self, at: &At, r: Rank, p: P) {
        let templates = match r {
            Rank::Products => TOP_PRODUCTS,
            Rank::ProductsByUnits => TOP_UNITS,
            Rank::Customers => TOP_CUSTOMERS,
        };
        let t = templates[self.next(&format!("top:{r:?}"), templates.len())];
        let (n, n_word) = if t.contains("{n}") {
            N_CHOICES[self.next("n", N_CHOICES.len())]
        } else {
            (5, "")
        };
        let phrase = self.phrase(p, at.today);
        let q = fill(t, &[("{n}", n_word), ("{p}", &phrase)]);
        let b = self.books(at.tenant);
        let span = p.span(at.today, b.first_day);
        let mut w = Want::new(r.name(), span);
        w.rows = Some(b.top(r, span, n));
        self.push("top_n", at, q, Expect::Metric(Box::new(w)));
    }

    fn breakdown(&mut self, at: &At, template: &str, m: M, g: Grain, p: P) {
        let phrase = self.phrase(p, at.today);
        let q = fill(template, &[("{p}", &phrase)]);
        let b = self.books(at.tenant);
        let span = p.span(at.today, b.first_day);
        let mut w = Want::new(m.name(), span);
        w.rows = Some(
            b.breakdown(m, g, span, Filter::default())
                .into_iter()
                .map(|(d, v)| Row {
                    label: d.to_string(),
                    alt: None,
                    value: v,
                })
                .collect(),
        );
        self.push("breakdown", at, q, Expect::Metric(Box::new(w)));
    }

    /// A comparison: with `other`, both periods as named; without, the previous period of the same kind.
    fn comparison(&mut self, at: &At, q: String, m: M, p: P, other: Option<P>) {
        let b = self.books(at.tenant);
        let span = p.span(at.today, b.first_day);
        let prev = match other {
            Some(o) => o.span(at.today, b.first_day),
            None => p.previous(at.today, b.first_day),
        };
        let (cur, before) = (
            b.scalar(m, span, Filter::default()),
            b.scalar(m, prev, Filter::default()),
        );
        let mut w = Want::new(m.name(), span);
        w.value = Some(cur);
        w.previous = Some((prev, before));
        let (c, pv) = (cur.as_f64(), before.as_f64());
        w.change_pct = Some((pv != 0.0).then(|| ((c - pv) / pv * 1000.0).round() / 10.0));
        self.push("comparison", at, q, Expect::Metric(Box::new(w)));
    }

    fn product(&mut self, at: &At, i: usize, p: P) {
        let (title, names) = PRODUCT_NAMES[i % PRODUCT_NAMES.len()];
        let name = names[self.next(&format!("product:{title}"), names.len())];
        let units = i % 2 == 1;
        let templates = if units { PRODUCT_UNITS } else { PRODUCT_MONEY };
        let t = templates[self.next(&format!("product:{units}"), templates.len())];
        let phrase = self.phrase(p, at.today);
        let q = fill(t, &[("{x}", name), ("{p}", &phrase)]);
        let b = self.books(at.tenant);
        let f = Filter {
            product: Some(b.product(title)),
            customer: None,
        };
        let m = if units { M::Units } else { M::ProductSales };
        let w = self.scalar_want(at, m, p, f);
        self.push("product", at, q, Expect::Metric(Box::new(w)));
    }

    fn customer(&mut self, at: &At, c: usize, p: P, count: bool) {
        let b = self.books(at.tenant);
        let (name, email) = (b.customers[c].name.clone(), b.customers[c].email.clone());
        let how = self.next("customer:how", 4);
        let who = match how {
            0 | 2 => name,
            1 => email,
            _ => name.to_lowercase(),
        };
        let templates = match (count, at.tenant) {
            (false, _) => CUSTOMER_MONEY,
            (true, Tenant::Northwind) => CUSTOMER_COUNT,
            (true, Tenant::Brightside) => CUSTOMER_COUNT_STRIPE,
        };
        let t = templates[self.next(
            &format!("customer:{count}:{:?}", at.tenant),
            templates.len(),
        )];
        let phrase = self.phrase(p, at.today);
        let q = fill(t, &[("{c}", &who), ("{p}", &phrase)]);
        let m = if count { M::Orders } else { M::Revenue };
        let f = Filter {
            product: None,
            customer: Some(c),
        };
        let w = self.scalar_want(at, m, p, f);
        self.push("customer", at, q, Expect::Metric(Box::new(w)));
    }

    /// A question written out in full (typos), with its metric and period.
    fn literal(&mut self, category: &'static str, at: &At, q: &str, m: M, p: P, f: Filter) {
        let w = self.scalar_want(at, m, p, f);
        self.push(category, at, q.to_string(), Expect::Metric(Box::new(w)));
    }
}

fn instant(tz: Tz, d: NaiveDate, h: u32, min: u32) -> String {
    tz.with_ymd_and_hms(d.year(), d.month(), d.day(), h, min, 0)
        .single()
        .expect("an unambiguous local time")
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

fn ats(books: &HashMap<Tenant, Books>) -> Vec<At> {
    use P::*;
    let at = |t: Tenant, d: NaiveDate, h: u32, periods: Vec<P>| At {
        tenant: t,
        as_of: instant(books[&t].tz, d, h, 0),
        today: d,
        periods,
    };
    let n = Tenant::Northwind;
    let b = Tenant::Brightside;
    vec![
        // A Sunday afternoon, the last day of data.
        at(
            n,
            ymd(2025, 6, 15),
            14,
            vec![
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
                LastDays(7),
                LastDays(14),
                LastDays(90),
                LastWeeks(4),
                LastMonths(3),
                Month(3, None),
                Month(11, Some(2024)),
                Quarter(1, None),
                Quarter(4, None),
                Quarter(2, Some(2024)),
                Year(2024),
                Day(ymd(2025, 5, 3)),
                Day(ymd(2025, 3, 14)),
                Range(ymd(2025, 4, 7), ymd(2025, 4, 20)),
                Range(ymd(2024, 12, 1), ymd(2024, 12, 24)),
                Since(ymd(2025, 5, 1)),
                AllTime,
                Default,
            ],
        ),
        // A Monday morning, just after the switch from daylight saving time.
        at(
            n,
            ymd(2024, 11, 4),
            8,
            vec![
                Today,
                Yesterday,
                ThisWeek,
                LastWeek,
                ThisMonth,
                LastMonth,
                ThisQuarter,
                LastQuarter,
                ThisYear,
                LastDays(30),
                LastWeeks(2),
                LastMonths(6),
                Month(7, None),
                Month(2, Some(2024)),
                Quarter(3, None),
                Quarter(1, Some(2024)),
                Day(ymd(2024, 10, 31)),
                Day(ymd(2024, 7, 4)),
                Range(ymd(2024, 9, 1), ymd(2024, 9, 15)),
                Since(ymd(2024, 10, 15)),
                AllTime,
                Default,
            ],
        ),
        // A Wednesday in March (the current quarter is Q1, March has begun).
        at(
            n,
            ymd(2025, 3, 19),
            16,
            vec![
                Today,
                Yesterday,
                ThisWeek,
                LastWeek,
                ThisMonth,
                LastMonth,
                ThisQuarter,
                ThisYear,
                LastYear,
                LastDays(14),
                LastMonths(2),
                Month(2, None),
                Month(12, None),
                Quarter(4, None),
                Quarter(1, None),
                Year(2024),
                Day(ymd(2025, 2, 14)),
                Day(ymd(2024, 12, 25)),
                Range(ymd(2025, 1, 6), ymd(2025, 1, 31)),
                Since(ymd(2025, 2, 1)),
                Default,
            ],
        ),
        // A Thursday in August 2024.
        at(
            n,
            ymd(2024, 8, 22),
            10,
            vec![
                ThisWeek,
                LastWeek,
                ThisMonth,
                LastMonth,
                ThisQuarter,
                LastQuarter,
                ThisYear,
                LastDays(7),
                LastWeeks(3),
                Month(5, None),
                Quarter(2, None),
                Day(ymd(2024, 8, 1)),
                Range(ymd(2024, 6, 10), ymd(2024, 6, 30)),
                Since(ymd(2024, 7, 4)),
                Default,
            ],
        ),
        // Just after New Year: this week straddles two years.
        at(
            n,
            ymd(2025, 1, 2),
            10,
            vec![
                Today,
                Yesterday,
                ThisWeek,
                LastWeek,
                ThisMonth,
                LastMonth,
                ThisYear,
                LastYear,
                LastQuarter,
                LastDays(7),
                LastMonths(2),
                Month(12, None),
                Quarter(4, None),
                Day(ymd(2024, 12, 24)),
                Since(ymd(2024, 12, 1)),
            ],
        ),
        // Brightside, a Sunday morning, the last day of data.
        at(
            b,
            ymd(2025, 6, 15),
            11,
            vec![
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
                LastDays(30),
                LastDays(14),
                LastWeeks(3),
                LastMonths(3),
                Month(4, None),
                Month(9, Some(2024)),
                Quarter(4, None),
                Quarter(3, Some(2024)),
                Year(2024),
                Day(ymd(2025, 6, 1)),
                Range(ymd(2025, 5, 5), ymd(2025, 5, 18)),
                Since(ymd(2025, 3, 1)),
                AllTime,
                Default,
            ],
        ),
        // A Wednesday in February.
        at(
            b,
            ymd(2025, 2, 12),
            9,
            vec![
                ThisWeek,
                LastWeek,
                ThisMonth,
                LastMonth,
                ThisQuarter,
                LastQuarter,
                LastYear,
                LastDays(7),
                LastMonths(4),
                Month(1, None),
                Month(10, None),
                Quarter(1, None),
                Day(ymd(2025, 2, 3)),
                Range(ymd(2024, 12, 15), ymd(2025, 1, 15)),
                Since(ymd(2025, 1, 20)),
                Default,
            ],
        ),
        // A Saturday evening between Christmas and New Year.
        at(
            b,
            ymd(2024, 12, 28),
            18,
            vec![
                Today,
                Yesterday,
                ThisWeek,
                LastWeek,
                ThisMonth,
                LastMonth,
                ThisQuarter,
                ThisYear,
                LastDays(14),
                LastWeeks(2),
                Month(11, None),
                Quarter(3, None),
                Day(ymd(2024, 12, 24)),
                Since(ymd(2024, 11, 15)),
                AllTime,
            ],
        ),
        // The last evening of April.
        at(
            b,
            ymd(2025, 4, 30),
            20,
            vec![
                ThisWeek,
                LastWeek,
                ThisMonth,
                LastMonth,
                LastQuarter,
                ThisQuarter,
                ThisYear,
                LastDays(10),
                LastMonths(2),
                Month(3, None),
                Quarter(1, Some(2025)),
                Day(ymd(2025, 4, 15)),
                Range(ymd(2025, 3, 10), ymd(2025, 3, 23)),
                Since(ymd(2025, 4, 1)),
            ],
        ),
    ]
}

fn generate(books: &HashMap<Tenant, Books>) -> Vec<Case> {
    use P::*;
    let ats = ats(books);
    let mut g = Gen {
        books,
        counters: HashMap::new(),
        cases: Vec::new(),
    };
    let north: Vec<&At> = ats
        .iter()
        .filter(|a| a.tenant == Tenant::Northwind)
        .collect();
    let bright: Vec<&At> = ats
        .iter()
        .filter(|a| a.tenant == Tenant::Brightside)
        .collect();

    // Scalar: every period of every as_of, with the tenant's metrics in turn.
    for (ai, at) in ats.iter().enumerate() {
        let metrics = tenant_metrics(at.tenant);
        for (j, p) in at.periods.iter().enumerate() {
            let mut m = metrics[(j + 3 * ai) % metrics.len()];
            // Nobody bought before the first day with data: returning customers over a period starting then are
            // trivially 0, so ask for new customers there instead.
            let first = books[&at.tenant].first_day;
            if m == M::ReturningCustomers && p.span(at.today, first).start <= first {
                m = M::NewCustomers;
            }
            g.scalar(at, m, *p);
        }
    }

    // Top N.
    let ranked = |at: &At| -> Vec<P> {
        at.periods
            .iter()
            .copied()
            .filter(|p| !matches!(p, Today | Yesterday | Day(_)))
            .collect()
    };
    for (ai, at) in north.iter().enumerate() {
        let ps = ranked(at);
        let plan = [
            Rank::Products,
            Rank::Customers,
            Rank::ProductsByUnits,
            Rank::Products,
            Rank::Customers,
            Rank::ProductsByUnits,
            Rank::Products,
            Rank::Customers,
        ];
        for (k, r) in plan.iter().enumerate() {
            g.top(at, *r, ps[(k * 3 + ai) % ps.len()]);
        }
    }
    for (ai, at) in bright.iter().enumerate() {
        let ps = ranked(at);
        for k in 0..4 {
            g.top(at, Rank::Customers, ps[(k * 3 + ai) % ps.len()]);
        }
    }

    // Breakdowns.
    let daily: &[(&str, M)] = &[
        ("daily orders {p}", M::Orders),
        ("revenue by day {p}", M::Revenue),
        ("orders each day {p}", M::Orders),
        ("sales per day {p}", M::Revenue),
        ("units sold by day {p}", M::Units),
    ];
    let weekly: &[(&str, M)] = &[
        ("orders by week {p}", M::Orders),
        ("weekly revenue {p}", M::Revenue),
        ("sales each week {p}", M::Revenue),
        ("units per week {p}", M::Units),
        ("new customers by week {p}", M::NewCustomers),
    ];
    let monthly: &[(&str, M)] = &[
        ("revenue by month {p}", M::Revenue),
        ("monthly sales {p}", M::Revenue),
        ("orders per month {p}", M::Orders),
        ("new customers each month {p}", M::NewCustomers),
        ("refunds by month {p}", M::Refunds),
        ("monthly discounts {p}", M::Discounts),
        ("Break down revenue by month {p}", M::Revenue),
        ("average order value per month {p}", M::Aov),
    ];
    let quarterly: &[(&str, M)] = &[
        ("revenue by quarter {p}", M::Revenue),
        ("quarterly orders {p}", M::Orders),
        ("sales per quarter {p}", M::Revenue),
    ];
    type Templates<'a> = &'a [(&'a str, M)];
    let plan: &[(usize, Grain, Templates, &[P])] = &[
        (
            0,
            Grain::Day,
            daily,
            &[ThisWeek, LastWeek, LastDays(7), LastDays(14)],
        ),
        (
            2,
            Grain::Day,
            daily,
            &[ThisWeek, Range(ymd(2025, 1, 6), ymd(2025, 1, 12))],
        ),
        (1, Grain::Day, daily, &[LastWeek, LastDays(10)]),
        (
            0,
            Grain::Week,
            weekly,
            &[ThisMonth, LastMonth, LastWeeks(4), Default],
        ),
        (
            3,
            Grain::Week,
            weekly,
            &[LastMonth, ThisMonth, LastWeeks(6)],
        ),
        (
            0,
            Grain::Month,
            monthly,
            &[ThisYear, LastYear, LastMonths(6), ThisQuarter],
        ),
        (
            2,
            Grain::Month,
            monthly,
            &[Year(2024), LastQuarter, LastMonths(3), ThisYear],
        ),
        (4, Grain::Month, monthly, &[LastYear]),
        (
            0,
            Grain::Quarter,
            quarterly,
            &[ThisYear, LastYear, Year(2024)],
        ),
        (1, Grain::Quarter, quarterly, &[ThisYear]),
    ];
    for (ai, grain, templates, periods) in plan {
        let at = north[*ai];
        for p in *periods {
            let (t, m) = templates[g.next(&format!("breakdown:{grain:?}"), templates.len())];
            g.breakdown(at, t, m, *grain, *p);
        }
    }
    let bright_plan: &[(usize, &str, M, Grain, P)] = &[
        (0, "payments per day {p}", M::Orders, Grain::Day, LastWeek),
        (0, "weekly payments {p}", M::Orders, Grain::Week, LastMonth),
        (
            0,
            "monthly revenue {p}",
            M::Revenue,
            Grain::Month,
            LastMonths(6),
        ),
        (
            1,
            "failed payments by month {p}",
            M::FailedPayments,
            Grain::Month,
            LastMonths(4),
        ),
        (
            2,
            "refunds each month {p}",
            M::Refunds,
            Grain::Month,
            ThisYear,
        ),
        (3, "revenue by week {p}", M::Revenue, Grain::Week, ThisMonth),
        (
            0,
            "new customers per quarter {p}",
            M::NewCustomers,
            Grain::Quarter,
            LastYear,
        ),
    ];
    for (ai, t, m, grain, p) in bright_plan {
        g.breakdown(bright[*ai], t, *m, *grain, *p);
    }

    // Comparisons with the previous period of the same kind.
    let one: &[&str] = &[
        "{m} {p}: up or down?",
        "{m} growth {p}",
        "change in {m} {p}",
        "how did {m} {p} compare with the period before?",
        "{m} {p} compared to the previous period",
        "percentage change in {m} {p}",
        "{m} {p} vs the prior period",
    ];
    let words: &[(M, &[&str])] = &[
        (M::Revenue, &["revenue", "sales", "takings"]),
        (M::Orders, &["orders", "order count"]),
        (M::Aov, &["AOV", "average order value"]),
        (M::Customers, &["customers"]),
        (M::NewCustomers, &["new customers"]),
        (M::Refunds, &["refunds"]),
        (M::Units, &["units sold"]),
    ];
    let one_plan: &[(usize, M, P)] = &[
        (0, M::Revenue, ThisMonth),
        (0, M::Orders, LastMonth),
        (0, M::Revenue, ThisYear),
        (0, M::Aov, LastWeek),
        (0, M::Customers, ThisQuarter),
        (0, M::Revenue, LastDays(7)),
        (0, M::NewCustomers, LastQuarter),
        (0, M::Revenue, Year(2024)),
        (1, M::Revenue, ThisWeek),
        (1, M::Orders, ThisMonth),
        (1, M::Units, LastMonth),
        (1, M::Revenue, LastDays(30)),
        (2, M::Revenue, LastMonth),
        (2, M::Orders, ThisYear),
        (2, M::Refunds, LastYear),
        (2, M::Revenue, Month(1, Some(2025))),
        (3, M::Revenue, LastQuarter),
        (3, M::Orders, ThisWeek),
        (4, M::Revenue, Yesterday),
        (4, M::Revenue, LastMonths(3)),
    ];
    for (ai, m, p) in one_plan {
        let at = north[*ai];
        let t = one[g.next("compare:one", one.len())];
        let ws = words.iter().find(|(x, _)| x == m).unwrap().1;
        let w = ws[g.next(&format!("compare:{m:?}"), ws.len())];
        let phrase = g.phrase(*p, at.today);
        g.comparison(at, fill(t, &[("{m}", w), ("{p}", &phrase)]), *m, *p, None);
    }
    let two: &[&str] = &[
        "{m} {a} vs {b}",
        "compare {m} {a} with {b}",
        "How does {a} stack up against {b} for {m}?",
        "{m}: {a} compared with {b}",
        "{m} {a} versus {b}",
    ];
    let two_plan: &[(usize, M, P, P)] = &[
        (0, M::Revenue, ThisMonth, LastMonth),
        (0, M::Orders, ThisWeek, LastWeek),
        (0, M::Revenue, ThisQuarter, LastQuarter),
        (0, M::Revenue, Month(3, Some(2025)), Month(3, Some(2024))),
        (0, M::Aov, Quarter(1, Some(2025)), Quarter(4, Some(2024))),
        (0, M::Revenue, Year(2024), Year(2023)),
        (2, M::Revenue, ThisMonth, LastMonth),
        (2, M::Customers, ThisYear, LastYear),
        (1, M::Orders, Month(10, None), Month(9, None)),
        (3, M::Revenue, ThisMonth, LastMonth),
    ];
    for (ai, m, a, b) in two_plan {
        let at = north[*ai];
        let t = two[g.next("compare:two", two.len())];
        let ws = words.iter().find(|(x, _)| x == m).unwrap().1;
        let w = ws[g.next(&format!("compare:{m:?}"), ws.len())];
        let q = fill(t, &[("{m}", w), ("{a}", &bare(*a)), ("{b}", &bare(*b))]);
        g.comparison(at, q, *m, *a, Some(*b));
    }
    let bright_compare: &[(usize, &str, M, P, Option<P>)] = &[
        (
            0,
            "revenue {a} vs {b}",
            M::Revenue,
            ThisMonth,
            Some(LastMonth),
        ),
        (0, "payments growth {p}", M::Orders, LastMonth, None),
        (1, "change in revenue {p}", M::Revenue, LastMonth, None),
        (
            2,
            "compare failed payments {a} with {b}",
            M::FailedPayments,
            ThisMonth,
            Some(LastMonth),
        ),
        (
            3,
            "How does revenue {p} compare with the period before?",
            M::Revenue,
            ThisQuarter,
            None,
        ),
        (
            0,
            "new customers {p}: up or down?",
            M::NewCustomers,
            LastDays(30),
            None,
        ),
    ];
    for (ai, t, m, a, b) in bright_compare {
        let at = bright[*ai];
        let q = match b {
            Some(b) => fill(t, &[("{a}", &bare(*a)), ("{b}", &bare(*b))]),
            None => {
                let phrase = g.phrase(*a, at.today);
                fill(t, &[("{p}", &phrase)])
            }
        };
        g.comparison(at, q, *m, *a, *b);
    }

    // Product filters: every product, by parts of its name, for money and for units.
    for i in 0..36 {
        let at = north[i % north.len()];
        let ps: Vec<P> = at
            .periods
            .iter()
            .copied()
            .filter(|p| !matches!(p, Today | Yesterday | Day(_)))
            .collect();
        // Prefer a period in which the product sold, so that the filter shows in the number.
        let b = &books[&Tenant::Northwind];
        let f = Filter {
            product: Some(b.product(PRODUCT_NAMES[i % PRODUCT_NAMES.len()].0)),
            customer: None,
        };
        let p = (0..ps.len())
            .map(|k| ps[(i * 5 + k) % ps.len()])
            .find(|p| b.scalar(M::Units, p.span(at.today, b.first_day), f) != V::Count(0))
            .unwrap_or(ps[(i * 5) % ps.len()]);
        g.product(at, i, p);
    }

    // Customer filters: frequent buyers with a name nobody else has, by name or e-mail.
    for (tenant, group, n) in [
        (Tenant::Northwind, &north, 22),
        (Tenant::Brightside, &bright, 12),
    ] {
        let picks = books[&tenant].unique_customers();
        for i in 0..n {
            let at = group[i % group.len()];
            let b = &books[&tenant];
            // Periods of four weeks or more, and a customer who bought in it (so the filter shows).
            let ps: Vec<P> = at
                .periods
                .iter()
                .copied()
                .filter(|p| {
                    let s = p.span(at.today, b.first_day);
                    (s.end - s.start).num_days() >= 27
                })
                .collect();
            let p = ps[(i * 7) % ps.len()];
            let span = p.span(at.today, b.first_day);
            let buyers: Vec<usize> = picks
                .iter()
                .map(|(c, _)| *c)
                .filter(|c| {
                    let f = Filter {
                        product: None,
                        customer: Some(*c),
                    };
                    b.scalar(M::Orders, span, f) != V::Count(0)
                })
                .collect();
            let c = buyers
                .get((i * 7) % buyers.len().max(1))
                .copied()
                .unwrap_or(picks[i].0);
            g.customer(at, c, p, i % 2 == 1);
        }
    }

    // Products and customers that do not exist.
    let unknown: &[(Tenant, &str, &str, &str)] = &[
        (
            Tenant::Northwind,
            "sales of unicorn tears last month",
            "product",
            "unicorn",
        ),
        (
            Tenant::Northwind,
            "How many dragon fruit smoothies did we sell in March?",
            "product",
            "dragon",
        ),
        (
            Tenant::Northwind,
            "revenue from the velvet hammock this year",
            "product",
            "hammock",
        ),
        (
            Tenant::Northwind,
            "How much did we make from lava lamps in 2024?",
            "product",
            "lava",
        ),
        (
            Tenant::Northwind,
            "units of bamboo toothbrush sold last week",
            "product",
            "bamboo",
        ),
        (
            Tenant::Northwind,
            "how many snow globes did we sell yesterday",
            "product",
            "snow",
        ),
        (
            Tenant::Northwind,
            "How much revenue did wizard hats bring in last quarter?",
            "product",
            "wizard",
        ),
        (
            Tenant::Northwind,
            "matcha whisk sales this month",
            "product",
            "matcha",
        ),
        (
            Tenant::Northwind,
            "orders from Zelda Fitzgerald",
            "customer",
            "zelda",
        ),
        (
            Tenant::Northwind,
            "How much did Atticus Finch spend last year?",
            "customer",
            "atticus",
        ),
        (
            Tenant::Northwind,
            "How many orders did Holden Caulfield place this year?",
            "customer",
            "holden",
        ),
        (
            Tenant::Northwind,
            "How much has nobody@nowhere.test spent?",
            "customer",
            "nobody",
        ),
        (
            Tenant::Northwind,
            "What did Ebenezer Scrooge spend in 2024?",
            "customer",
            "ebenezer",
        ),
        (
            Tenant::Brightside,
            "How many payments did Marge Simpson make last month?",
            "customer",
            "marge",
        ),
        (
            Tenant::Brightside,
            "How much did Bilbo Baggins spend this year?",
            "customer",
            "bilbo",
        ),
        (
            Tenant::Brightside,
            "How much did ghost.member@example.org pay last month?",
            "customer",
            "ghost",
        ),
        (
            Tenant::Brightside,
            "sales of glitter leotards last month",
            "product",
            "glitter",
        ),
        (
            Tenant::Brightside,
            "revenue from Gandalf Grey in 2024",
            "customer",
            "gandalf",
        ),
    ];
    for (i, (tenant, q, kind, word)) in unknown.iter().enumerate() {
        assert!(
            !books[tenant].mentions(word),
            "the fixture mentions {word:?}: pick another unknown name"
        );
        let group = if *tenant == Tenant::Northwind {
            &north
        } else {
            &bright
        };
        let at = group[i % group.len()];
        g.push(
            "unknown",
            at,
            q.to_string(),
            Expect::Unknown {
                kind,
                word: word.to_string(),
            },
        );
    }

    // One-edit typos in metric words, months and product words.
    let product = |title: &str| Filter {
        product: Some(books[&Tenant::Northwind].product(title)),
        customer: None,
    };
    let none = Filter::default();
    let typos: Vec<(Tenant, usize, &str, M, P, Filter)> = vec![
        (
            Tenant::Northwind,
            0,
            "What was my revnue last month?",
            M::Revenue,
            LastMonth,
            none,
        ),
        (
            Tenant::Northwind,
            0,
            "how many ordres did we get in Febuary?",
            M::Orders,
            Month(2, None),
            none,
        ),
        (
            Tenant::Northwind,
            1,
            "custmers this week",
            M::Customers,
            ThisWeek,
            none,
        ),
        (
            Tenant::Northwind,
            1,
            "How many new custmers did we get last month?",
            M::NewCustomers,
            LastMonth,
            none,
        ),
        (
            Tenant::Northwind,
            0,
            "refnds this year",
            M::Refunds,
            ThisYear,
            none,
        ),
        (
            Tenant::Northwind,
            2,
            "total discunts last quarter",
            M::Discounts,
            LastQuarter,
            none,
        ),
        (
            Tenant::Northwind,
            0,
            "avrage order value this month",
            M::Aov,
            ThisMonth,
            none,
        ),
        (
            Tenant::Northwind,
            3,
            "How many untis did we sell last week?",
            M::Units,
            LastWeek,
            none,
        ),
        (
            Tenant::Northwind,
            2,
            "reveune in Janurary",
            M::Revenue,
            Month(1, None),
            none,
        ),
        (
            Tenant::Northwind,
            0,
            "total slaes in Decmber 2024",
            M::Revenue,
            Month(12, Some(2024)),
            none,
        ),
        (
            Tenant::Northwind,
            4,
            "oders in Novmber",
            M::Orders,
            Month(11, None),
            none,
        ),
        (
            Tenant::Northwind,
            0,
            "How many cusotmers bought in Marhc?",
            M::Customers,
            Month(3, None),
            none,
        ),
        (
            Tenant::Northwind,
            1,
            "revenu in Ocotber",
            M::Revenue,
            Month(10, None),
            none,
        ),
        (
            Tenant::Northwind,
            0,
            "refudns in Agust 2024",
            M::Refunds,
            Month(8, Some(2024)),
            none,
        ),
        (
            Tenant::Northwind,
            2,
            "discounst given in Setpember 2024",
            M::Discounts,
            Month(9, Some(2024)),
            none,
        ),
        (
            Tenant::Northwind,
            0,
            "averge order value in 2024",
            M::Aov,
            Year(2024),
            none,
        ),
        (
            Tenant::Northwind,
            1,
            "returnign customers last month",
            M::ReturningCustomers,
            LastMonth,
            none,
        ),
        (
            Tenant::Northwind,
            4,
            "revenuee last week",
            M::Revenue,
            LastWeek,
            none,
        ),
        (
            Tenant::Northwind,
            0,
            "how many orderss yesterday",
            M::Orders,
            Yesterday,
            none,
        ),
        (
            Tenant::Northwind,
            0,
            "untis sold in Febuary 2025",
            M::Units,
            Month(2, Some(2025)),
            none,
        ),
        (
            Tenant::Northwind,
            0,
            "How many yirgachefe did we sell last month?",
            M::Units,
            LastMonth,
            product("Ethiopia Yirgacheffe 12oz"),
        ),
        (
            Tenant::Northwind,
            0,
            "revenue from gooseneck kettel this year",
            M::ProductSales,
            ThisYear,
            product("Gooseneck Kettle"),
        ),
        (
            Tenant::Northwind,
            1,
            "how many burr grnders did we sell in October",
            M::Units,
            Month(10, None),
            product("Conical Burr Grinder"),
        ),
        (
            Tenant::Northwind,
            2,
            "sales of house espreso blend last month",
            M::ProductSales,
            LastMonth,
            product("House Espresso Blend 12oz"),
        ),
        (
            Tenant::Northwind,
            0,
            "How many travel tumbllers did we sell in 2024?",
            M::Units,
            Year(2024),
            product("Travel Tumbler"),
        ),
        (
            Tenant::Northwind,
            3,
            "revenue from Colombai Huila last month",
            M::ProductSales,
            LastMonth,
            product("Colombia Huila 12oz"),
        ),
        (
            Tenant::Northwind,
            0,
            "How many ceramic mgus did we sell last quarter?",
            M::Units,
            LastQuarter,
            product("Ceramic Mug"),
        ),
        (
            Tenant::Brightside,
            0,
            "How many paymnets failed last month?",
            M::FailedPayments,
            LastMonth,
            none,
        ),
        (
            Tenant::Brightside,
            0,
            "falied payments this year",
            M::FailedPayments,
            ThisYear,
            none,
        ),
        (
            Tenant::Brightside,
            1,
            "revnue in Janaury",
            M::Revenue,
            Month(1, None),
            none,
        ),
        (
            Tenant::Brightside,
            0,
            "how many custmers paid in Apirl",
            M::Customers,
            Month(4, None),
            none,
        ),
        (
            Tenant::Brightside,
            3,
            "refnds last month",
            M::Refunds,
            LastMonth,
            none,
        ),
        (
            Tenant::Brightside,
            2,
            "new cusotmers in Novmber",
            M::NewCustomers,
            Month(11, None),
            none,
        ),
        (
            Tenant::Brightside,
            0,
            "avrage payment last month",
            M::Aov,
            LastMonth,
            none,
        ),
        (
            Tenant::Brightside,
            1,
            "How many paymets did we get in Decmber?",
            M::Orders,
            Month(12, None),
            none,
        ),
    ];
    for (tenant, ai, q, m, p, f) in typos {
        let at = if tenant == Tenant::Northwind {
            north[ai]
        } else {
            bright[ai]
        };
        g.literal("typo", at, q, m, p, f);
    }
    // Typos in rankings.
    let at = north[0];
    let span = LastMonth.span(at.today, books[&Tenant::Northwind].first_day);
    let mut w = Want::new("top_products", span);
    w.rows = Some(books[&Tenant::Northwind].top(Rank::Products, span, 5));
    g.push(
        "typo",
        at,
        "What were my top 5 prodcuts last month?".into(),
        Expect::Metric(Box::new(w)),
    );
    let at = north[1];
    let span = LastMonth.span(at.today, books[&Tenant::Northwind].first_day);
    let mut w = Want::new("top_customers", span);
    w.rows = Some(books[&Tenant::Northwind].top(Rank::Customers, span, 3));
    g.push(
        "typo",
        at,
        "top 3 custmers last month".into(),
        Expect::Metric(Box::new(w)),
    );

    // Conversation.
    let chat = [
        "hi",
        "Hello!",
        "hey there",
        "Good morning",
        "good evening",
        "thanks",
        "Thank you so much!",
        "thx",
        "cheers, that's helpful",
        "ok thanks, bye",
        "What can you do?",
        "help",
        "How do I use this?",
        "What kind of questions can I ask you?",
        "Hi, who are you?",
        "Hey!",
    ];
    for (i, q) in chat.iter().enumerate() {
        let at = &ats[i % ats.len()];
        g.push("conversation", at, q.to_string(), Expect::Conversation);
    }
    g.cases
}

// ---------------------------------------------------------------------------------------------------------------
// Checking

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn period_of(v: &Value) -> String {
    format!(
        "{}..{}",
        v["start"].as_str().unwrap_or("?"),
        v["end"].as_str().unwrap_or("?")
    )
}

fn check(e: &Expect, b: &Value) -> Result<(), String> {
    let r = &b["result"];
    match e {
        Expect::Conversation => {
            if b["intent"] != "conversation" {
                return Err(format!("intent {} (expected conversation)", b["intent"]));
            }
            Ok(())
        }
        Expect::Unknown { kind, word } => {
            if b["intent"] != "metrics" {
                return Err(format!("intent {} (expected metrics)", b["intent"]));
            }
            if !r["value"].is_null() {
                return Err(format!(
                    "carries a value {} for something that does not exist",
                    r["value"]
                ));
            }
            let Some(list) = r["unresolved"].as_array().filter(|l| !l.is_empty()) else {
                return Err("no result.unresolved".into());
            };
            let ok = list.iter().any(|m| {
                m["kind"] == *kind
                    && m["mention"]
                        .as_str()
                        .is_some_and(|s| s.to_lowercase().contains(word.as_str()))
            });
            if !ok {
                return Err(format!(
                    "unresolved {} lacks a {kind} mention of {word:?}",
                    Value::Array(list.clone())
                ));
            }
            Ok(())
        }
        Expect::Metric(w) => {
            let mut errs = Vec::new();
            if b["intent"] != "metrics" {
                errs.push(format!("intent {}", b["intent"]));
            }
            if r["metric"] != w.metric {
                errs.push(format!("metric {}", r["metric"]));
            }
            let got_period = period_of(&r["period"]);
            if got_period != w.span.to_string() {
                errs.push(format!("period {got_period}"));
            }
            if let Some(v) = w.value {
                match num(&r["value"]) {
                    Some(x) if v.matches(x) => {}
                    _ => errs.push(format!("value {}", r["value"])),
                }
            }
            if let Some(p) = &w.product
                && r["product"].as_str() != Some(p.as_str())
            {
                errs.push(format!("product {}", r["product"]));
            }
            if let Some((name, email)) = &w.customer {
                let got = r["customer"].as_str().unwrap_or_default().to_lowercase();
                if got != name.to_lowercase() && got != email.to_lowercase() {
                    errs.push(format!("customer {}", r["customer"]));
                }
            }
            // A question about the whole business must not be answered for one product or customer.
            if w.product.is_none() && !r["product"].is_null() {
                errs.push(format!("unasked-for product filter {}", r["product"]));
            }
            if w.customer.is_none() && !r["customer"].is_null() {
                errs.push(format!("unasked-for customer filter {}", r["customer"]));
            }
            if let Some((span, v)) = &w.previous {
                let p = &r["previous"];
                let got = period_of(&p["period"]);
                if got != span.to_string() {
                    errs.push(format!("previous period {got}"));
                }
                match num(&p["value"]) {
                    Some(x) if v.matches(x) => {}
                    _ => errs.push(format!("previous value {}", p["value"])),
                }
            }
            if let Some(c) = w.change_pct {
                let got = &r["change_pct"];
                let ok = match (c, num(got)) {
                    (None, None) => got.is_null(),
                    (Some(c), Some(x)) => (c - x).abs() <= 0.051,
                    _ => false,
                };
                if !ok {
                    errs.push(format!("change_pct {got}"));
                }
            }
            if let Some(rows) = &w.rows {
                match r["rows"].as_array() {
                    None => errs.push("no rows".into()),
                    Some(got) if got.len() != rows.len() => {
                        errs.push(format!("{} rows (expected {})", got.len(), rows.len()))
                    }
                    Some(got) => {
                        for (i, (g, x)) in got.iter().zip(rows).enumerate() {
                            let label = g["label"].as_str().unwrap_or_default().to_lowercase();
                            let label_ok = label == x.label.to_lowercase()
                                || x.alt.as_ref().is_some_and(|a| label == a.to_lowercase());
                            let value_ok = num(&g["value"]).is_some_and(|v| x.value.matches(v));
                            if !label_ok || !value_ok {
                                errs.push(format!(
                                    "row {} is {} {}",
                                    i + 1,
                                    g["label"],
                                    g["value"]
                                ));
                                break;
                            }
                        }
                    }
                }
            }
            if errs.is_empty() {
                Ok(())
            } else {
                Err(errs.join("; "))
            }
        }
    }
}

fn describe(e: &Expect) -> String {
    match e {
        Expect::Conversation => "intent conversation".into(),
        Expect::Unknown { kind, word } => {
            format!("no value; unresolved {kind} mentioning {word:?}")
        }
        Expect::Metric(w) => {
            let mut s = format!("{} {}", w.metric, w.span);
            if let Some(p) = &w.product {
                s += &format!(" product={p:?}");
            }
            if let Some((n, e)) = &w.customer {
                s += &format!(" customer={n:?}/{e}");
            }
            if let Some(v) = w.value {
                s += &format!(" value={v}");
            }
            if let Some((p, v)) = &w.previous {
                s += &format!(" previous={p} {v}");
            }
            if let Some(c) = w.change_pct {
                s += &format!(" change_pct={c:?}");
            }
            if let Some(rows) = &w.rows {
                let list: Vec<String> = rows
                    .iter()
                    .map(|r| format!("{}={}", r.label, r.value))
                    .collect();
                s += &format!(" rows=[{}]", list.join(", "));
            }
            s
        }
    }
}

fn summarize(b: &Value) -> String {
    let r = &b["result"];
    let mut keep = serde_json::Map::new();
    for k in [
        "metric",
        "period",
        "value",
        "previous",
        "change_pct",
        "product",
        "customer",
        "unresolved",
        "rows",
    ] {
        if !r[k].is_null() {
            keep.insert(k.into(), r[k].clone());
        }
    }
    let answer: String = b["answer"]
        .as_str()
        .unwrap_or_default()
        .chars()
        .take(160)
        .collect();
    format!(
        "intent={} result={} answer={answer:?}",
        b["intent"],
        Value::Object(keep)
    )
}

// ---------------------------------------------------------------------------------------------------------------
// Running

async fn ask(app: &App, owner: &Owner, q: &str, as_of: &str) -> Value {
    for _ in 0..5 {
        let (s, b, h) = app
            .call(
                "POST",
                "/v1/ai/query",
                Some(json!({"query": q, "as_of": as_of})),
                Some(&owner.token),
            )
            .await;
        if s == 429 {
            let wait = h
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(1u64);
            tokio::time::sleep(Duration::from_secs(wait)).await;
            continue;
        }
        if s != 200 {
            return json!({"intent": null, "answer": format!("HTTP {s}: {b}"), "result": {}});
        }
        return b;
    }
    json!({"intent": null, "answer": "rate limited", "result": {}})
}

fn load(name: &str) -> Dataset {
    let dir = fixtures_dir().join(name);
    Dataset::from_fixtures(&dir).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

fn zone(d: &Dataset, name: &str) -> Tz {
    let tz = source_timezone(d).unwrap_or_else(|| panic!("fixture {name} names no time zone"));
    tz.parse()
        .unwrap_or_else(|_| panic!("fixture {name}: unknown time zone {tz}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paraphrases_get_the_answers_metrics_md_defines() {
    let north = load("northwind");
    let bright = load("brightside");
    let (ntz, btz) = (zone(&north, "northwind"), zone(&bright, "brightside"));
    let books: HashMap<Tenant, Books> = [
        (Tenant::Northwind, Books::new(&north, ntz)),
        (Tenant::Brightside, Books::new(&bright, btz)),
    ]
    .into_iter()
    .collect();
    let cases = generate(&books);

    let app = App::start(&[("SMB_GATEWAY__DEFAULT_RATE_LIMIT", "1000000")]);
    let (nfake, bfake) = tokio::join!(FakeSaas::start(north), FakeSaas::start(bright));
    let (nowner, bowner) = tokio::join!(app.owner(ntz.name()), app.owner(btz.name()));
    let nconn = connect_shopify(&app, &nowner, &nfake).await;
    let bconn = connect_stripe(&app, &bowner, &bfake).await;
    let (ns, bs) = tokio::join!(sync(&app, &nowner, &nconn), sync(&app, &bowner, &bconn));
    assert_eq!(ns["status"], "succeeded", "northwind sync: {ns}");
    assert_eq!(bs["status"], "succeeded", "brightside sync: {bs}");

    let owner = |t: Tenant| {
        if t == Tenant::Northwind {
            &nowner
        } else {
            &bowner
        }
    };
    let mut answers: Vec<Value> = Vec::with_capacity(cases.len());
    for chunk in cases.chunks(8) {
        let batch = chunk
            .iter()
            .map(|c| ask(&app, owner(c.tenant), &c.question, &c.as_of));
        answers.extend(futures::future::join_all(batch).await);
    }

    let mut table: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut misses = Vec::new();
    for (c, b) in cases.iter().zip(&answers) {
        let e = table.entry(c.category).or_default();
        e.1 += 1;
        match check(&c.expect, b) {
            Ok(()) => e.0 += 1,
            Err(why) => misses.push(format!(
                "MISS [{}] {:?} @ {} {:?}\n    expected: {}\n    wrong:    {why}\n    got:      {}",
                c.category,
                c.tenant,
                c.as_of,
                c.question,
                describe(&c.expect),
                summarize(b)
            )),
        }
    }
    for m in &misses {
        eprintln!("{m}");
    }
    eprintln!("\n{:<14} {:>6} {:>6}", "category", "passed", "total");
    let (mut passed, mut total) = (0, 0);
    for (cat, (p, t)) in &table {
        eprintln!("{cat:<14} {p:>6} {t:>6}");
        passed += p;
        total += t;
    }
    eprintln!("{:<14} {passed:>6} {total:>6}", "all");
    assert!(total >= 300, "only {total} questions");
    assert!(
        misses.is_empty(),
        "{} of {total} paraphrased questions were answered wrongly (see above)",
        misses.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_without_sources_is_told_to_connect_one() {
    let app = App::start(&[]);
    let owner = app.owner("America/New_York").await;
    let b = ask(
        &app,
        &owner,
        "What was my revenue last month?",
        "2025-06-15T14:00:00-04:00",
    )
    .await;
    assert!(b["result"]["value"].is_null(), "{b}");
    let answer = b["answer"].as_str().unwrap_or_default().to_lowercase();
    assert!(answer.contains("connect"), "{b}");
}

/// The generated set itself: big enough, every category present, no question asked twice of one tenant at one
/// instant, and every expectation about a real (non-future) period.
#[test]
fn the_question_set_is_well_formed() {
    let north = load("northwind");
    let bright = load("brightside");
    let books: HashMap<Tenant, Books> = [
        (
            Tenant::Northwind,
            Books::new(&north, zone(&north, "northwind")),
        ),
        (
            Tenant::Brightside,
            Books::new(&bright, zone(&bright, "brightside")),
        ),
    ]
    .into_iter()
    .collect();
    let cases = generate(&books);
    assert!(cases.len() >= 300, "{}", cases.len());
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for c in &cases {
        *per.entry(c.category).or_default() += 1;
        assert!(
            seen.insert((c.tenant, c.as_of.clone(), c.question.to_lowercase())),
            "asked twice: {:?}",
            c.question
        );
        if let Expect::Metric(w) = &c.expect {
            assert!(w.span.start <= w.span.end, "{}: {}", c.question, w.span);
        }
    }
    for cat in [
        "scalar",
        "top_n",
        "breakdown",
        "comparison",
        "product",
        "customer",
        "unknown",
        "typo",
        "conversation",
    ] {
        assert!(per.get(cat).copied().unwrap_or(0) > 0, "no {cat} questions");
    }
    eprintln!("{per:?}");
    // PARAPHRASE_LIST=1 prints the whole set with its expectations.
    if std::env::var_os("PARAPHRASE_LIST").is_some() {
        for c in &cases {
            eprintln!(
                "[{}] {:?} @ {} {:?} => {}",
                c.category,
                c.tenant,
                c.as_of,
                c.question,
                describe(&c.expect)
            );
        }
    }
}

/// The oracle reproduces every metric answer published in `shared/eval/dev.jsonl` (over the periods stated
/// there), so its reading of metrics.md agrees with the reference's.
#[test]
fn the_oracle_agrees_with_the_published_dev_answers() {
    let north = load("northwind");
    let bright = load("brightside");
    let books: HashMap<&str, Books> = [
        ("northwind", Books::new(&north, zone(&north, "northwind"))),
        (
            "brightside",
            Books::new(&bright, zone(&bright, "brightside")),
        ),
    ]
    .into_iter()
    .collect();
    let path = fixtures_dir().join("../eval/dev.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("{} not found; skipped", path.display());
        return;
    };
    let metric = |n: &str| match n {
        "revenue" => M::Revenue,
        "orders" => M::Orders,
        "aov" => M::Aov,
        "customers" => M::Customers,
        "new_customers" => M::NewCustomers,
        "returning_customers" => M::ReturningCustomers,
        "refunds" => M::Refunds,
        "units" => M::Units,
        "product_sales" => M::ProductSales,
        "discounts" => M::Discounts,
        "failed_payments" => M::FailedPayments,
        other => panic!("unknown metric {other}"),
    };
    let span = |p: &Value| {
        Span::new(
            p["start"].as_str().unwrap().parse().unwrap(),
            p["end"].as_str().unwrap().parse().unwrap(),
        )
    };
    let mut checked = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let q: Value = serde_json::from_str(line).unwrap();
        let e = &q["expect"];
        if e["intent"] != "metrics" {
            continue;
        }
        let b = &books[q["tenant"].as_str().unwrap()];
        let s = span(&e["period"]);
        let name = e["metric"].as_str().unwrap();
        let rank = match name {
            "top_products" => Some(Rank::Products),
            "top_products_by_units" => Some(Rank::ProductsByUnits),
            "top_customers" => Some(Rank::Customers),
            _ => None,
        };
        let want_rows = e["rows"].as_array();
        let got_rows: Option<Vec<(String, V)>> = match (rank, e["grain"].as_str()) {
            (Some(r), _) => Some(
                b.top(r, s, want_rows.map_or(5, Vec::len))
                    .into_iter()
                    .map(|r| (r.label, r.value))
                    .collect(),
            ),
            (None, Some(g)) => {
                let g = match g {
                    "day" => Grain::Day,
                    "week" => Grain::Week,
                    "month" => Grain::Month,
                    _ => Grain::Quarter,
                };
                Some(
                    b.breakdown(metric(name), g, s, Filter::default())
                        .into_iter()
                        .map(|(d, v)| (d.to_string(), v))
                        .collect(),
                )
            }
            _ => None,
        };
        if let (Some(want), Some(got)) = (want_rows, got_rows) {
            assert_eq!(want.len(), got.len(), "{q}");
            for (w, (label, v)) in want.iter().zip(got) {
                assert_eq!(w["label"].as_str().unwrap(), label, "{q}");
                assert!(v.matches(w["value"].as_f64().unwrap()), "{q}: {v}");
            }
        }
        if let Some(x) = e["value"].as_f64() {
            let f = Filter {
                product: e["product"].as_str().map(|t| b.product(t)),
                customer: None,
            };
            let v = b.scalar(metric(name), s, f);
            assert!(v.matches(x), "{q}: oracle {v}");
            if let Some(p) = e.get("previous") {
                let pv = b.scalar(metric(name), span(&p["period"]), f);
                assert!(pv.matches(p["value"].as_f64().unwrap()), "{q}: oracle {pv}");
            }
        }
        checked += 1;
    }
    assert!(checked > 0);
    eprintln!("{checked} published answers reproduced");
}
