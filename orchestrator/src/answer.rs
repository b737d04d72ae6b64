//! Deterministic answer text: the number, the period in words, the time zone and the definition used.

use chrono::{Datelike, NaiveDate};

use crate::nlu::Metric;
use crate::period::{Kind, Period};

pub fn definition(m: Metric) -> &'static str {
    match m {
        Metric::Revenue => "total sales incl. tax and shipping, net of refunds",
        Metric::Orders => "orders and successful payments, excluding cancelled and test orders",
        Metric::Aov => "revenue divided by the number of orders",
        Metric::Customers => "distinct customers with a counted order or payment",
        Metric::NewCustomers => "customers whose first ever order or payment falls in the period",
        Metric::ReturningCustomers => "customers in the period who had ordered before it",
        Metric::Refunds => "successful refunds issued in the period (Stripe: on the charge's day)",
        Metric::Units => "units sold on counted orders",
        Metric::ProductSales => {
            "price × quantity on counted orders, before discounts, tax and shipping"
        }
        Metric::Discounts => "discounts on counted orders",
        Metric::FailedPayments => "payments that failed",
        Metric::TopCustomers => "ranked by spend, net of refunds",
        Metric::TopProducts => "ranked by product sales (price × quantity)",
        Metric::TopProductsByUnits => "ranked by units sold",
    }
}

/// The definition as it applies to the sources a number covers: Stripe charges carry no tax or shipping
/// lines, so for a Stripe-only number money is the charged amount.
pub fn definition_for(m: Metric, sources: &[String]) -> &'static str {
    let stripe_only = !sources.is_empty() && sources.iter().all(|s| s == "stripe");
    match m {
        Metric::Revenue if stripe_only => "successful charges, net of refunds",
        Metric::Orders if stripe_only => "successful payments",
        Metric::TopCustomers if stripe_only => "ranked by successful charges, net of refunds",
        _ => definition(m),
    }
}

pub fn label(m: Metric) -> &'static str {
    match m {
        Metric::Revenue => "Revenue",
        Metric::Orders => "Orders",
        Metric::Aov => "Average order value",
        Metric::Customers => "Customers",
        Metric::NewCustomers => "New customers",
        Metric::ReturningCustomers => "Returning customers",
        Metric::Refunds => "Refunds",
        Metric::Units => "Units sold",
        Metric::ProductSales => "Product sales",
        Metric::Discounts => "Discounts",
        Metric::FailedPayments => "Failed payments",
        Metric::TopCustomers => "Top customers",
        Metric::TopProducts => "Top products",
        Metric::TopProductsByUnits => "Top products by units",
    }
}

fn md(d: NaiveDate) -> String {
    d.format("%b %-d").to_string()
}

/// "May 2025", "2024", "June 15, 2025", "Q1 2025", or "Jan 8 – Feb 15, 2025".
pub fn describe(p: &Period) -> String {
    let (s, e) = (p.start, p.end);
    if s == e {
        return s.format("%B %-d, %Y").to_string();
    }
    if !p.clipped {
        match p.kind {
            Kind::Month => return s.format("%B %Y").to_string(),
            Kind::Year => return s.year().to_string(),
            Kind::Quarter => return format!("Q{} {}", s.month0() / 3 + 1, s.year()),
            _ => {}
        }
    }
    if s.year() == e.year() {
        format!("{} – {}, {}", md(s), md(e), e.year())
    } else {
        format!("{}, {} – {}, {}", md(s), s.year(), md(e), e.year())
    }
}

/// Groups digits: 27679.67 → "27,679.67".
pub fn money(minor: i64, symbol: &str, exp: u32) -> String {
    let neg = minor < 0;
    let abs = minor.unsigned_abs();
    let scale = 10u64.pow(exp);
    let (int, frac) = (abs / scale, abs % scale);
    let mut digits = int.to_string();
    let mut grouped = String::new();
    while digits.len() > 3 {
        let tail = digits.split_off(digits.len() - 3);
        grouped = format!(",{tail}{grouped}");
    }
    grouped = format!("{digits}{grouped}");
    let frac = if exp > 0 {
        format!(".{:0width$}", frac, width = exp as usize)
    } else {
        String::new()
    };
    format!("{}{symbol}{grouped}{frac}", if neg { "-" } else { "" })
}

pub fn count(n: i64) -> String {
    money(n, "", 0)
}
