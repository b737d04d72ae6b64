//! Understanding a question: normalisation (case, punctuation, filler words, small typos), intent, metric,
//! time expressions, grain, top-N, comparison, product, customer and source. Pure functions over text.

use chrono::{Datelike, Duration, NaiveDate};

use crate::period::{Kind, Period, add_months, month_start, quarter_start};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    Metrics,
    Search,
    Action,
    Conversation,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
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
    TopCustomers,
    TopProducts,
    TopProductsByUnits,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Self::Revenue => "revenue",
            Self::Orders => "orders",
            Self::Aov => "aov",
            Self::Customers => "customers",
            Self::NewCustomers => "new_customers",
            Self::ReturningCustomers => "returning_customers",
            Self::Refunds => "refunds",
            Self::Units => "units",
            Self::ProductSales => "product_sales",
            Self::Discounts => "discounts",
            Self::FailedPayments => "failed_payments",
            Self::TopCustomers => "top_customers",
            Self::TopProducts => "top_products",
            Self::TopProductsByUnits => "top_products_by_units",
        }
    }
    pub fn is_money(self) -> bool {
        matches!(
            self,
            Self::Revenue
                | Self::Aov
                | Self::Refunds
                | Self::ProductSales
                | Self::Discounts
                | Self::TopCustomers
                | Self::TopProducts
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Grain {
    Day,
    Week,
    Month,
    Quarter,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Conversation {
    Greeting,
    Thanks,
    Capabilities,
    OutOfScope,
    Unintelligible,
}

/// What the question asks, before any data is read.
#[derive(Debug, Clone, PartialEq)]
pub struct Understanding {
    pub normalized: String,
    pub intent: Intent,
    pub conversation: Option<Conversation>,
    pub action: Option<&'static str>,
    pub metric: Option<Metric>,
    pub periods: Vec<Period>,
    /// Whether the user named no period (the default, last 30 days, applies).
    pub default_period: bool,
    pub grain: Option<Grain>,
    pub top_n: Option<usize>,
    pub compare: bool,
    pub source: Option<&'static str>,
    pub customer_email: Option<String>,
    /// A future period was named ("next month").
    pub future: bool,
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// Words the typo fixer may correct towards.
const VOCAB: &[&str] = &[
    "revenue",
    "sales",
    "orders",
    "order",
    "customers",
    "customer",
    "refunds",
    "refund",
    "refunded",
    "discounts",
    "discount",
    "average",
    "value",
    "units",
    "products",
    "product",
    "today",
    "yesterday",
    "week",
    "month",
    "quarter",
    "year",
    "last",
    "this",
    "since",
    "between",
    "compare",
    "compared",
    "previous",
    "period",
    "income",
    "turnover",
    "payments",
    "payment",
    "returning",
    "new",
    "unique",
    "failed",
    "weekly",
    "monthly",
    "daily",
    "quarterly",
    "days",
    "weeks",
    "months",
    "top",
    "best",
    "selling",
    "sold",
    "spent",
    "earned",
    "takings",
    "growth",
    "january",
    "february",
    "march",
    "april",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "quantity",
    "lifetime",
    "versus",
];

#[allow(
    clippy::needless_range_loop,
    reason = "the DP table is clearer with indices"
)]
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for j in 0..=b.len() {
        d[0][j] = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

fn fix_typo(w: &str) -> String {
    if w.len() < 4 || VOCAB.contains(&w) || w.chars().any(|c| c.is_ascii_digit()) {
        return w.to_string();
    }
    let max = if w.len() >= 7 { 2 } else { 1 };
    VOCAB
        .iter()
        .map(|v| (edit_distance(w, v), *v))
        .filter(|(dist, v)| *dist <= max && v.len().abs_diff(w.len()) <= max)
        .min()
        .map_or_else(|| w.to_string(), |(_, v)| v.to_string())
}

/// Lower-cases, keeps letters, digits and the few symbols dates and e-mails need, fixes small typos.
pub fn normalize(q: &str) -> String {
    let lower = q.to_lowercase();
    let cleaned: String = lower
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '@' | '.' | '$' | '_' | '+' | '/') {
                c
            } else {
                ' '
            }
        })
        .collect();
    cleaned
        .split_whitespace()
        .map(|w| w.trim_matches(|c| c == '.' || c == '-'))
        .filter(|w| !w.is_empty())
        .map(|w| {
            if w.contains('@') {
                w.to_string()
            } else {
                fix_typo(w)
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn has(t: &str, needles: &[&str]) -> bool {
    needles.iter().any(|n| contains_phrase(t, n))
}

/// Whole-word phrase containment.
pub fn contains_phrase(t: &str, p: &str) -> bool {
    let padded = format!(" {t} ");
    padded.contains(&format!(" {p} "))
}

fn number_word(w: &str) -> Option<i64> {
    let words = [
        "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
        "twelve",
    ];
    w.parse::<i64>()
        .ok()
        .or_else(|| words.iter().position(|x| *x == w).map(|i| i as i64 + 1))
}

fn month_index(w: &str) -> Option<u32> {
    const ABBR: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    MONTHS
        .iter()
        .position(|m| *m == w)
        .or_else(|| ABBR.iter().position(|m| *m == w))
        .or_else(|| (w == "sept").then_some(8))
        .map(|i| i as u32 + 1)
}

/// The most recent `month`/`day` not after today (or in `year`).
fn month_day(month: u32, day: u32, year: Option<i32>, today: NaiveDate) -> Option<NaiveDate> {
    match year {
        Some(y) => NaiveDate::from_ymd_opt(y, month, day),
        None => {
            let this = NaiveDate::from_ymd_opt(today.year(), month, day)?;
            if this <= today {
                Some(this)
            } else {
                NaiveDate::from_ymd_opt(today.year() - 1, month, day)
            }
        }
    }
}

/// A date at `tokens[i..]`: `2025-05-03`, `may 3 [2025]`, `3 may [2025]`. Returns it and the tokens used.
fn parse_date(tokens: &[&str], i: usize, today: NaiveDate) -> Option<(NaiveDate, usize)> {
    let t = *tokens.get(i)?;
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Some((d, 1));
    }
    if let Ok(d) = NaiveDate::parse_from_str(t, "%m/%d/%Y") {
        return Some((d, 1));
    }
    let year_at = |j: usize| {
        tokens
            .get(j)
            .and_then(|w| w.parse::<i32>().ok())
            .filter(|y| (1990..=2100).contains(y))
    };
    let day_of = |w: &str| {
        let w = w
            .trim_end_matches("st")
            .trim_end_matches("nd")
            .trim_end_matches("rd")
            .trim_end_matches("th");
        w.parse::<u32>().ok().filter(|d| (1..=31).contains(d))
    };
    if let Some(m) = month_index(t)
        && let Some(day) = tokens.get(i + 1).and_then(|w| day_of(w))
    {
        let y = year_at(i + 2);
        return month_day(m, day, y, today).map(|d| (d, 2 + usize::from(y.is_some())));
    }
    if let Some(day) = day_of(t)
        && let Some(m) = tokens.get(i + 1).and_then(|w| month_index(w))
    {
        let y = year_at(i + 2);
        return month_day(m, day, y, today).map(|d| (d, 2 + usize::from(y.is_some())));
    }
    None
}

/// A named period at `tokens[i..]` (month, quarter, year, relative words). Returns it and tokens used.
fn parse_named(
    tokens: &[&str],
    i: usize,
    today: NaiveDate,
    future: &mut bool,
) -> Option<(Period, usize)> {
    let w = |k: usize| tokens.get(i + k).copied().unwrap_or("");
    let year_at = |k: usize| {
        w(k).parse::<i32>()
            .ok()
            .filter(|y| (1990..=2100).contains(y))
    };
    match w(0) {
        "today" => return Some((Period::day(today), 1)),
        "yesterday" => return Some((Period::day(today - Duration::days(1)), 1)),
        "ytd" => return Some((Period::year(today.year()).clip(today), 1)),
        "lifetime" => return Some((all_time(today), 1)),
        _ => {}
    }
    if w(0) == "all" && w(1) == "time" {
        return Some((all_time(today), 2));
    }
    if w(0) == "year" && w(1) == "to" && w(2) == "date" {
        return Some((Period::year(today.year()).clip(today), 3));
    }
    if w(0) == "month" && w(1) == "to" && w(2) == "date" {
        return Some((Period::month_of(today).clip(today), 3));
    }
    if w(0) == "ever" {
        return Some((all_time(today), 1));
    }
    // this / last / next / past / previous <unit> | last N <units>
    if matches!(
        w(0),
        "this" | "current" | "last" | "past" | "previous" | "next" | "prior"
    ) {
        let rel = w(0);
        if let Some(n) = number_word(w(1)).filter(|n| *n > 0 && *n <= 1000) {
            let unit = w(2);
            let n_days = |n: i64| Period::new(today - Duration::days(n - 1), today, Kind::Days);
            let p = match unit {
                "days" | "day" => Some(n_days(n)),
                "weeks" | "week" => {
                    let this_week = crate::period::week_start(today);
                    Some(Period::new(
                        this_week - Duration::days(7 * n),
                        this_week - Duration::days(1),
                        Kind::Custom,
                    ))
                }
                "months" | "month" => {
                    let this = month_start(today);
                    Some(Period::new(
                        add_months(this, -(n as i32)),
                        this - Duration::days(1),
                        Kind::Custom,
                    ))
                }
                "quarters" | "quarter" => {
                    let this = quarter_start(today);
                    Some(Period::new(
                        add_months(this, -3 * n as i32),
                        this - Duration::days(1),
                        Kind::Custom,
                    ))
                }
                "years" | "year" => {
                    let this = NaiveDate::from_ymd_opt(today.year(), 1, 1)?;
                    Some(Period::new(
                        NaiveDate::from_ymd_opt(today.year() - n as i32, 1, 1)?,
                        this - Duration::days(1),
                        Kind::Custom,
                    ))
                }
                _ => None,
            };
            if let Some(p) = p {
                if rel == "next" {
                    *future = true;
                }
                return Some((p, 3));
            }
        }
        let base = match rel {
            "this" | "current" => Some(0),
            "last" | "previous" | "prior" | "past" => Some(-1),
            "next" => Some(1),
            _ => None,
        }?;
        let p = match w(1) {
            "day" => Some(Period::day(today + Duration::days(base))),
            "week" => Some(Period::week_of(today + Duration::days(7 * base))),
            "month" => Some(Period::month_of(add_months(today, base as i32))),
            "quarter" => Some(Period::quarter_of(add_months(today, 3 * base as i32))),
            "year" => Some(Period::year(today.year() + base as i32)),
            _ => None,
        }?;
        if base > 0 {
            *future = true;
        }
        return Some((if base == 0 { p.clip(today) } else { p }, 2));
    }
    // Q2 [2024], second quarter [of 2024]
    let q = match w(0) {
        "q1" | "first" => Some(1),
        "q2" | "second" => Some(2),
        "q3" | "third" => Some(3),
        "q4" | "fourth" => Some(4),
        _ => None,
    };
    if let Some(q) = q {
        let (used, ok) = if w(0).starts_with('q') {
            (1, true)
        } else {
            (2, w(1) == "quarter")
        };
        if ok {
            let (year, extra) = match (year_at(used), w(used), year_at(used + 1)) {
                (Some(y), _, _) => (Some(y), 1),
                (None, "of", Some(y)) => (Some(y), 2),
                _ => (None, 0),
            };
            let start_of = |y: i32| NaiveDate::from_ymd_opt(y, (q - 1) * 3 + 1, 1);
            let y = year.unwrap_or_else(|| {
                if start_of(today.year()).is_some_and(|s| s <= today) {
                    today.year()
                } else {
                    today.year() - 1
                }
            });
            let p = Period::quarter_of(start_of(y)?);
            return Some((p.clip(today), used + extra));
        }
    }
    // March [2024]
    if let Some(m) = month_index(w(0)) {
        // "may" is also a verb; accept it only before a year or after "in"/"of"/"for"/"during"/"since".
        let prev = if i > 0 { tokens[i - 1] } else { "" };
        let year = year_at(1).or_else(|| (w(1) == "of").then(|| year_at(2)).flatten());
        if w(0) == "may"
            && year.is_none()
            && !matches!(
                prev,
                "in" | "of"
                    | "for"
                    | "during"
                    | "from"
                    | "to"
                    | "and"
                    | "through"
                    | "until"
                    | "since"
            )
        {
            return None;
        }
        let used = match (year_at(1), w(1) == "of" && year_at(2).is_some()) {
            (Some(_), _) => 2,
            (None, true) => 3,
            _ => 1,
        };
        let y = year.unwrap_or_else(|| {
            if m <= today.month() {
                today.year()
            } else {
                today.year() - 1
            }
        });
        let p = Period::month_of(NaiveDate::from_ymd_opt(y, m, 1)?);
        if p.start > today {
            *future = true;
        }
        return Some((p.clip(today), used));
    }
    // 2024
    if let Some(y) = year_at(0) {
        let p = Period::year(y);
        if p.start > today {
            *future = true;
        }
        return Some((p.clip(today), 1));
    }
    None
}

/// "All time" starts at the first day with data; the handler fills it in. Until then, a far past date.
fn all_time(today: NaiveDate) -> Period {
    Period::new(
        NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid"),
        today,
        Kind::AllTime,
    )
}

/// Every period the text names, in order.
pub fn periods(text: &str, today: NaiveDate, future: &mut bool) -> Vec<Period> {
    let tokens: Vec<&str> = text.split_whitespace().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i];
        // from A to B / between A and B / A to B
        if matches!(t, "from" | "between")
            && let Some((a, used_a)) = parse_date(&tokens, i + 1, today)
        {
            {
                let j = i + 1 + used_a;
                if matches!(
                    tokens.get(j).copied(),
                    Some("to" | "and" | "through" | "until" | "-")
                ) && let Some((b, used_b)) = parse_date(&tokens, j + 1, today)
                {
                    let (a, b) = if a <= b { (a, b) } else { (b, a) };
                    out.push(Period::new(a, b, Kind::Custom).clip(today));
                    i = j + 1 + used_b;
                    continue;
                }
            }
        }
        if t == "since" {
            if let Some((a, used)) = parse_date(&tokens, i + 1, today) {
                out.push(Period::new(a, today, Kind::Custom));
                i += 1 + used;
                continue;
            }
            if let Some((p, used)) = parse_named(&tokens, i + 1, today, future) {
                out.push(Period::new(p.start, today, Kind::Custom));
                i += 1 + used;
                continue;
            }
        }
        if let Some((d, used)) = parse_date(&tokens, i, today) {
            if d > today {
                *future = true;
            }
            out.push(Period::day(d));
            i += used;
            continue;
        }
        if let Some((p, used)) = parse_named(&tokens, i, today, future) {
            out.push(p);
            i += used;
            continue;
        }
        i += 1;
    }
    out
}

fn metric_of(t: &str) -> Option<Metric> {
    let top = has(
        t,
        &[
            "top",
            "best",
            "biggest",
            "largest",
            "highest",
            "most valuable",
            "leading",
        ],
    ) || t.starts_with("who ");
    let product_words = has(
        t,
        &[
            "products",
            "product",
            "items",
            "sellers",
            "best-selling",
            "best selling",
            "bestsellers",
            "bestselling",
        ],
    );
    let customer_words = has(
        t,
        &["customers", "customer", "clients", "buyers", "spenders"],
    );
    let by_units = has(
        t,
        &[
            "units",
            "quantity",
            "number sold",
            "most popular",
            "by volume",
            "count sold",
        ],
    );
    if top && product_words && !has(t, &["how many"]) {
        return Some(if by_units {
            Metric::TopProductsByUnits
        } else {
            Metric::TopProducts
        });
    }
    if has(
        t,
        &[
            "best-selling",
            "best selling",
            "bestsellers",
            "bestselling",
            "best sellers",
        ],
    ) {
        return Some(if by_units {
            Metric::TopProductsByUnits
        } else {
            Metric::TopProducts
        });
    }
    if top && customer_words {
        return Some(Metric::TopCustomers);
    }
    if has(
        t,
        &[
            "failed payments",
            "failed payment",
            "failed charges",
            "declined",
            "failed",
        ],
    ) {
        return Some(Metric::FailedPayments);
    }
    if has(
        t,
        &[
            "aov",
            "average order value",
            "average order",
            "average sale",
            "average basket",
            "average ticket",
            "avg order",
            "average spend",
            "average transaction",
        ],
    ) {
        return Some(Metric::Aov);
    }
    if has(
        t,
        &[
            "new customers",
            "new customer",
            "first-time customers",
            "first time customers",
            "new buyers",
            "new clients",
        ],
    ) {
        return Some(Metric::NewCustomers);
    }
    if has(
        t,
        &[
            "returning customers",
            "repeat customers",
            "returning",
            "repeat buyers",
            "came back",
        ],
    ) {
        return Some(Metric::ReturningCustomers);
    }
    if has(
        t,
        &["refund", "refunds", "refunded", "money back", "returns"],
    ) {
        return Some(Metric::Refunds);
    }
    if has(
        t,
        &[
            "discount",
            "discounts",
            "discounted",
            "coupons",
            "promo codes",
            "promotions",
        ],
    ) {
        return Some(Metric::Discounts);
    }
    if has(t, &["units", "items sold", "quantity", "how many items"]) {
        return Some(Metric::Units);
    }
    if customer_words || has(t, &["who paid", "people paid", "people bought", "shoppers"]) {
        return Some(Metric::Customers);
    }
    if has(
        t,
        &[
            "orders",
            "order count",
            "number of orders",
            "payments",
            "transactions",
            "purchases",
            "charges",
            "how many sales",
            "number of sales",
        ],
    ) {
        return Some(Metric::Orders);
    }
    if has(
        t,
        &[
            "revenue",
            "sales",
            "total sales",
            "income",
            "takings",
            "turnover",
            "make",
            "made",
            "earn",
            "earned",
            "earnings",
            "gross",
            "money",
            "sell",
            "sold",
            "bring in",
            "brought in",
            "did we do",
            "how much",
        ],
    ) {
        return Some(Metric::Revenue);
    }
    None
}

fn grain_of(t: &str) -> Option<Grain> {
    if has(t, &["by day", "per day", "daily", "each day", "day by day"]) {
        Some(Grain::Day)
    } else if has(
        t,
        &["by week", "per week", "weekly", "each week", "week by week"],
    ) {
        Some(Grain::Week)
    } else if has(
        t,
        &[
            "by month",
            "per month",
            "monthly",
            "each month",
            "month by month",
        ],
    ) {
        Some(Grain::Month)
    } else if has(
        t,
        &["by quarter", "per quarter", "quarterly", "each quarter"],
    ) {
        Some(Grain::Quarter)
    } else {
        None
    }
}

fn top_n(t: &str) -> Option<usize> {
    let tokens: Vec<&str> = t.split_whitespace().collect();
    for (i, w) in tokens.iter().enumerate() {
        if matches!(*w, "top" | "best" | "biggest" | "largest")
            && let Some(n) = tokens.get(i + 1).and_then(|x| number_word(x))
        {
            return Some(n.clamp(1, 100) as usize);
        }
    }
    None
}

fn conversation_of(t: &str) -> Option<Conversation> {
    let greet = [
        "hi",
        "hello",
        "hey",
        "hiya",
        "howdy",
        "good morning",
        "good afternoon",
        "good evening",
        "yo",
        "greetings",
        "hi there",
        "hello there",
    ];
    let thanks = [
        "thanks",
        "thank you",
        "thx",
        "ty",
        "cheers",
        "thank",
        "much appreciated",
        "appreciate it",
        "great thanks",
        "ok thanks",
        "perfect thanks",
    ];
    if greet.contains(&t)
        || t.split_whitespace().count() <= 3
            && greet
                .iter()
                .any(|g| t.starts_with(&format!("{g} ")) && !t.contains("revenue"))
    {
        return Some(Conversation::Greeting);
    }
    if thanks
        .iter()
        .any(|x| t == *x || t.starts_with(&format!("{x} ")) && t.split_whitespace().count() <= 5)
    {
        return Some(Conversation::Thanks);
    }
    if has(
        t,
        &[
            "what can you do",
            "what do you do",
            "how can you help",
            "help",
            "what are you",
            "who are you",
            "what can i ask",
            "capabilities",
            "how does this work",
        ],
    ) {
        return Some(Conversation::Capabilities);
    }
    None
}

fn action_of(t: &str) -> Option<&'static str> {
    let first = t.split_whitespace().next().unwrap_or("");
    if matches!(
        first,
        "email" | "send" | "mail" | "message" | "text" | "notify"
    ) || has(t, &["send an email", "email to", "send a summary"])
    {
        return Some("send_email");
    }
    if has(
        t,
        &[
            "create a task",
            "add a task",
            "make a task",
            "remind me",
            "create task",
            "add task",
            "todo",
            "to-do",
        ],
    ) || first == "remind"
    {
        return Some("create_task");
    }
    if matches!(
        first,
        "refund" | "cancel" | "issue" | "schedule" | "update" | "tag" | "archive"
    ) && !has(t, &["how much", "how many"])
    {
        return Some("update_record");
    }
    None
}

fn is_search(t: &str) -> bool {
    let first = t.split_whitespace().next().unwrap_or("");
    matches!(first, "find" | "search" | "locate" | "lookup")
        || has(
            t,
            &[
                "look up",
                "which order",
                "which orders",
                "the order where",
                "the order for",
                "the order that",
                "order with",
                "orders that mentioned",
                "which customer",
                "show me the order",
                "where the",
                "mentioned",
                "complained",
            ],
        )
}

pub fn understand(query: &str, today: NaiveDate) -> Understanding {
    let t = normalize(query);
    let mut u = Understanding {
        normalized: t.clone(),
        intent: Intent::Conversation,
        conversation: None,
        action: None,
        metric: None,
        periods: Vec::new(),
        default_period: false,
        grain: None,
        top_n: None,
        compare: false,
        source: None,
        customer_email: None,
        future: false,
    };
    if !t.chars().any(char::is_alphanumeric) {
        u.conversation = Some(Conversation::Unintelligible);
        return u;
    }
    if let Some(c) = conversation_of(&t) {
        u.conversation = Some(c);
        return u;
    }
    if let Some(a) = action_of(&t) {
        u.intent = Intent::Action;
        u.action = Some(a);
        return u;
    }
    if is_search(&t) {
        u.intent = Intent::Search;
        return u;
    }
    let metric = metric_of(&t);
    let mut future = false;
    let periods = periods(&t, today, &mut future);
    if metric.is_none() && periods.is_empty() {
        u.conversation = Some(Conversation::OutOfScope);
        return u;
    }
    u.intent = Intent::Metrics;
    u.metric = Some(metric.unwrap_or(Metric::Revenue));
    u.grain = grain_of(&t);
    u.top_n = top_n(&t);
    u.compare = has(
        t.as_str(),
        &[
            "compare",
            "compared",
            "comparison",
            "vs",
            "versus",
            "growth",
            "grow",
            "change",
            "changed",
            "up or down",
            "previous period",
            "prior period",
            "trend",
            "difference",
        ],
    );
    u.source = if has(&t, &["stripe"]) {
        Some("stripe")
    } else if has(&t, &["shopify"]) {
        Some("shopify")
    } else {
        None
    };
    u.customer_email = t
        .split_whitespace()
        .find(|w| w.contains('@') && w.contains('.'))
        .map(|w| w.trim_end_matches('.').to_string());
    u.future = future;
    if periods.is_empty() {
        u.default_period = true;
        u.periods = vec![Period::new(today - Duration::days(29), today, Kind::Days)];
    } else {
        u.periods = periods;
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn period(q: &str, today: &str) -> (String, String) {
        let u = understand(q, d(today));
        (u.periods[0].start.to_string(), u.periods[0].end.to_string())
    }

    #[test]
    fn time_expressions() {
        let t = "2025-06-15";
        assert_eq!(
            period("revenue last week", t),
            ("2025-06-02".into(), "2025-06-08".into())
        );
        assert_eq!(
            period("revenue this week", t),
            ("2025-06-09".into(), "2025-06-15".into())
        );
        assert_eq!(
            period("revenue last month", t),
            ("2025-05-01".into(), "2025-05-31".into())
        );
        assert_eq!(
            period("revenue last quarter", t),
            ("2025-01-01".into(), "2025-03-31".into())
        );
        assert_eq!(
            period("revenue in Q3", t),
            ("2024-07-01".into(), "2024-09-30".into())
        );
        assert_eq!(
            period("revenue in Q2", t),
            ("2025-04-01".into(), "2025-06-15".into())
        );
        assert_eq!(
            period("revenue in the last 14 days", t),
            ("2025-06-02".into(), "2025-06-15".into())
        );
        assert_eq!(
            period("revenue in the last 3 months", t),
            ("2025-03-01".into(), "2025-05-31".into())
        );
        assert_eq!(
            period("revenue in the last 3 weeks", t),
            ("2025-05-19".into(), "2025-06-08".into())
        );
        assert_eq!(
            period("revenue in March 2024", t),
            ("2024-03-01".into(), "2024-03-31".into())
        );
        assert_eq!(
            period("revenue in March", t),
            ("2025-03-01".into(), "2025-03-31".into())
        );
        assert_eq!(
            period("revenue in July", t),
            ("2024-07-01".into(), "2024-07-31".into())
        );
        assert_eq!(
            period("revenue in 2024", t),
            ("2024-01-01".into(), "2024-12-31".into())
        );
        assert_eq!(
            period("revenue on 2024-04-06", t),
            ("2024-04-06".into(), "2024-04-06".into())
        );
        assert_eq!(
            period("revenue on May 3", t),
            ("2025-05-03".into(), "2025-05-03".into())
        );
        assert_eq!(
            period("revenue from July 9 to July 14", "2024-11-04"),
            ("2024-07-09".into(), "2024-07-14".into())
        );
        assert_eq!(
            period("customers since January 1", "2025-01-02"),
            ("2025-01-01".into(), "2025-01-02".into())
        );
        assert_eq!(
            period("revenue ytd", t),
            ("2025-01-01".into(), "2025-06-15".into())
        );
        assert_eq!(
            period("revenue", t),
            ("2025-05-17".into(), "2025-06-15".into())
        );
        assert_eq!(
            period("how much did I make yesterday", t),
            ("2025-06-14".into(), "2025-06-14".into())
        );
    }

    #[test]
    fn metrics_and_intents() {
        let today = d("2025-06-15");
        let m = |q: &str| understand(q, today).metric;
        assert_eq!(m("What's my revnue last month?"), Some(Metric::Revenue));
        assert_eq!(m("how many ordres today"), Some(Metric::Orders));
        assert_eq!(m("AOV in Q2"), Some(Metric::Aov));
        assert_eq!(
            m("How many units did I sell last week?"),
            Some(Metric::Units)
        );
        assert_eq!(
            m("Who were my top 5 customers?"),
            Some(Metric::TopCustomers)
        );
        assert_eq!(
            m("Top 10 products by units sold this quarter"),
            Some(Metric::TopProductsByUnits)
        );
        assert_eq!(
            m("How many customers paid yesterday?"),
            Some(Metric::Customers)
        );
        assert_eq!(
            m("How many payments did I receive last year?"),
            Some(Metric::Orders)
        );
        assert_eq!(understand("hi", today).intent, Intent::Conversation);
        assert_eq!(understand("thanks!", today).intent, Intent::Conversation);
        assert_eq!(
            understand("What can you do?", today).conversation,
            Some(Conversation::Capabilities)
        );
        assert_eq!(
            understand("Find the order where the grinder arrived broken", today).intent,
            Intent::Search
        );
        assert_eq!(
            understand("Email ava@x.com a summary of last month's revenue", today).intent,
            Intent::Action
        );
        assert_eq!(
            understand("Create a task to reorder beans", today).intent,
            Intent::Action
        );
        assert_eq!(
            understand("what is the capital of France", today).conversation,
            Some(Conversation::OutOfScope)
        );
        let u = understand("Revenue by quarter this year", today);
        assert_eq!(u.grain, Some(Grain::Quarter));
        assert!(
            understand(
                "How did revenue in 2024 compare to the previous period?",
                today
            )
            .compare
        );
        assert_eq!(understand("top 3 products", today).top_n, Some(3));
    }
}
