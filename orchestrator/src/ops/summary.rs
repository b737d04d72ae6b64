//! The summary an e-mail carries: key figures of one period and the period before, computed by the metrics
//! engine (the same SQL that answers questions), so an e-mail never says what an answer would not.

use smb_core::Error;
use smb_core::ids::{Currency, TenantId};
use smb_core::store::Db;

use crate::answer::{count, definition, describe, label, money};
use crate::metrics::{self, Filter, Value};
use crate::nlu::Metric;
use crate::period::Period;

const FIGURES: [Metric; 6] = [
    Metric::Revenue,
    Metric::Orders,
    Metric::Aov,
    Metric::NewCustomers,
    Metric::Refunds,
    Metric::Discounts,
];

pub struct Summary {
    /// (metric, value this period, value the period before), formatted.
    rows: Vec<(Metric, String, String, Option<f64>)>,
    previous: Period,
}

fn fmt(v: Value, cur: &Currency) -> String {
    let (sym, exp) = (cur.symbol(), cur.exponent());
    match v {
        Value::Money(m) => money(m, &sym, exp),
        Value::Count(c) => count(c),
        Value::Ratio(_, 0) => money(0, &sym, exp),
        Value::Ratio(n, d) => money((n as f64 / d as f64).round() as i64, &sym, exp),
    }
}

fn raw(v: Value) -> f64 {
    match v {
        Value::Money(m) | Value::Count(m) => m as f64,
        Value::Ratio(_, 0) => 0.0,
        Value::Ratio(n, d) => n as f64 / d as f64,
    }
}

pub async fn compute(
    db: &Db,
    tenant: &TenantId,
    cur: &Currency,
    period: &Period,
) -> Result<Summary, Error> {
    let previous = period.previous();
    let mut rows = Vec::new();
    for m in FIGURES {
        // Money in the tenant's currency only: amounts in others are never added to it.
        let f = Filter {
            currency: m.is_money().then(|| cur.as_str().to_string()),
            ..Filter::default()
        };
        let v = metrics::scalar(db, tenant, m, &f, period.start, period.end).await?;
        let p = metrics::scalar(db, tenant, m, &f, previous.start, previous.end).await?;
        let change = (raw(p) != 0.0).then(|| ((raw(v) - raw(p)) / raw(p) * 1000.0).round() / 10.0);
        rows.push((m, fmt(v, cur), fmt(p, cur), change));
    }
    Ok(Summary { rows, previous })
}

impl Summary {
    fn get(&self, m: Metric) -> &str {
        self.rows
            .iter()
            .find(|r| r.0 == m)
            .map_or("", |r| r.1.as_str())
    }

    /// One line: "revenue $27,679.67, 412 orders (average $67.18), 23 new customers, refunds $310.00".
    pub fn headline(&self) -> String {
        format!(
            "revenue {}, {} orders (average {}), {} new customers, refunds {}",
            self.get(Metric::Revenue),
            self.get(Metric::Orders),
            self.get(Metric::Aov),
            self.get(Metric::NewCustomers),
            self.get(Metric::Refunds)
        )
    }

    /// The e-mail body: each figure with the period before and its definition.
    pub fn body(&self, business: &str, period: &Period, tz: &str) -> String {
        let mut out = format!("{business} — summary for {} ({tz})\n\n", describe(period));
        for (m, v, p, change) in &self.rows {
            let delta = match change {
                Some(c) if *c > 0.0 => format!("up {c:.1}%"),
                Some(c) if *c < 0.0 => format!("down {:.1}%", -c),
                Some(_) => "unchanged".to_string(),
                None => "no earlier figure to compare".to_string(),
            };
            out.push_str(&format!(
                "{}: {v} ({delta}; {} was {p})\n",
                label(*m),
                describe(&self.previous)
            ));
        }
        out.push_str("\nDefinitions\n");
        for (m, ..) in &self.rows {
            out.push_str(&format!("- {}: {}.\n", label(*m), definition(*m)));
        }
        out.push_str("\nSent by SMB Command after an owner confirmed it. Figures come from your connected sources as of the last sync.\n");
        out
    }

    /// Figures as JSON-able pairs (for previews and tests).
    pub fn figures(&self) -> Vec<(String, String)> {
        self.rows
            .iter()
            .map(|(m, v, ..)| (m.name().to_string(), v.clone()))
            .collect()
    }
}
