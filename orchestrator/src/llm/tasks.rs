//! What the orchestrator asks a model, and how each reply is checked before it is used:
//! 1. understanding: a tool call into the typed plan (closed schema; every value checked against the
//!    catalogue and the calendar; the model never writes SQL);
//! 2. phrasing: the answer rewritten with its numbers locked — every number in the text must be one the
//!    platform computed;
//! 3. small talk and help, under the same number lock.

use std::collections::HashSet;

use chrono::{Datelike, NaiveDate};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::{LlmRequest, Msg, Role, Tool};
use crate::nlu::{
    Catalog, Comparison, CustomerRef, Grain, Intent, Metric, Plan, RankedBy, RankedEntity, Ranking,
    Source,
};
use crate::period::{Kind, Period, add_months, month_end, month_start, quarter_start};

pub const PLAN_TOOL: &str = "answer_plan";

const METRICS: &[&str] = &[
    "revenue",
    "orders",
    "aov",
    "customers",
    "new_customers",
    "returning_customers",
    "refunds",
    "units",
    "product_sales",
    "discounts",
    "failed_payments",
];

fn metric_of(name: &str) -> Option<Metric> {
    Some(match name {
        "revenue" => Metric::Revenue,
        "orders" => Metric::Orders,
        "aov" => Metric::Aov,
        "customers" => Metric::Customers,
        "new_customers" => Metric::NewCustomers,
        "returning_customers" => Metric::ReturningCustomers,
        "refunds" => Metric::Refunds,
        "units" => Metric::Units,
        "product_sales" => Metric::ProductSales,
        "discounts" => Metric::Discounts,
        "failed_payments" => Metric::FailedPayments,
        _ => return None,
    })
}

/// The plan tool: a closed schema over the catalogue's metrics, periods, filters and rankings.
pub fn plan_tool() -> Tool {
    Tool {
        name: PLAN_TOOL,
        description: "Record how to answer the shop owner's question from their sales data. Use kind \"unsupported\" when the question is not about their sales, orders, customers, refunds or products.",
        schema: json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["kind", "metric", "start", "end", "compare", "grain", "rank_by", "top_n", "product", "customer", "source"],
            "properties": {
                "kind": {"type": "string", "enum": ["metric", "ranking", "unsupported"]},
                "metric": {"type": "string", "enum": METRICS},
                "start": {"type": "string", "description": "first day, YYYY-MM-DD, in the shop's time zone"},
                "end": {"type": "string", "description": "last day, YYYY-MM-DD, inclusive"},
                "compare": {"type": "string", "enum": ["none", "previous_period"]},
                "grain": {"type": "string", "enum": ["none", "day", "week", "month", "quarter"]},
                "rank_by": {"type": "string", "enum": ["none", "product_sales", "product_units", "customer_spend"]},
                "top_n": {"type": "integer", "minimum": 1, "maximum": 50},
                "product": {"type": "string", "description": "exact product title from the catalogue, or empty"},
                "customer": {"type": "string", "description": "the customer's e-mail from the catalogue, or empty"},
                "source": {"type": "string", "enum": ["any", "shopify", "stripe"]}
            }
        }),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanArgs {
    kind: String,
    metric: String,
    start: String,
    end: String,
    compare: String,
    grain: String,
    rank_by: String,
    top_n: i64,
    product: String,
    customer: String,
    source: String,
}

/// The system prompt for understanding: today, the time zone, the catalogue's names (products always;
/// customers only when the tenant shares customer data).
pub fn plan_request(
    question: &str,
    history: &[(String, String)],
    today: NaiveDate,
    tz: &str,
    catalog: &Catalog,
    share_customers: bool,
) -> LlmRequest {
    let products: Vec<&str> = catalog.product_titles().take(200).collect();
    let mut system = format!(
        "You turn a shop owner's question into a plan by calling {PLAN_TOOL}. Today is {today} ({}) in the shop's time zone {tz}. \
         Weeks start on Monday. \"Last month\" is the previous calendar month; with no period stated use the last 30 days ending today. \
         Metrics: revenue (paid sales minus refunds), orders, aov (average order value), customers, new_customers, returning_customers, refunds, units, product_sales, discounts, failed_payments. \
         Products: {}.",
        today.format("%A"),
        if products.is_empty() {
            "none".to_string()
        } else {
            products.join("; ")
        },
    );
    if share_customers {
        let customers: Vec<String> = catalog
            .customers
            .iter()
            .take(200)
            .map(|c| format!("{} <{}>", c.name, c.key))
            .collect();
        system.push_str(&format!(" Customers: {}.", customers.join("; ")));
    }
    let mut messages = Vec::new();
    for (q, a) in history.iter().rev().take(4).rev() {
        messages.push(Msg {
            role: Role::User,
            content: q.clone(),
        });
        messages.push(Msg {
            role: Role::Assistant,
            content: a.clone(),
        });
    }
    messages.push(Msg {
        role: Role::User,
        content: question.to_string(),
    });
    LlmRequest {
        system,
        messages,
        tool: Some(plan_tool()),
        max_tokens: 300,
    }
}

fn period_of(start: NaiveDate, end: NaiveDate) -> Period {
    let kind = if start == end {
        Kind::Day
    } else if start == month_start(start) && end == month_end(start) {
        Kind::Month
    } else if start == quarter_start(start) && end == add_months(start, 3).pred_opt().unwrap_or(end)
    {
        Kind::Quarter
    } else if start.ordinal() == 1
        && end.month() == 12
        && end.day() == 31
        && start.year() == end.year()
    {
        Kind::Year
    } else {
        Kind::Custom
    };
    Period::new(start, end, kind)
}

/// The model's tool arguments as a plan, or why they cannot be one. `Ok(None)`: not a data question.
pub fn plan_from_args(
    args: &str,
    question: &str,
    today: NaiveDate,
    catalog: &Catalog,
) -> Result<Option<Plan>, String> {
    let a: PlanArgs = serde_json::from_str(args).map_err(|e| format!("tool arguments: {e}"))?;
    if a.kind == "unsupported" {
        return Ok(None);
    }
    if a.kind != "metric" && a.kind != "ranking" {
        return Err(format!("unknown kind {:?}", a.kind));
    }
    let date = |s: &str| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| format!("not a date: {s:?}"))
    };
    let (start, end) = (date(&a.start)?, date(&a.end)?);
    if start > end || start.year() < 2000 || end > today + chrono::Duration::days(366) {
        return Err(format!("implausible period {start}..{end}"));
    }
    let mut plan = Plan::empty(question.to_lowercase());
    plan.intent = Intent::Metrics;
    plan.periods = vec![period_of(start, end)];
    plan.future = start > today;
    plan.comparison = match a.compare.as_str() {
        "none" => None,
        "previous_period" => Some(Comparison::PreviousPeriod),
        other => return Err(format!("unknown compare {other:?}")),
    };
    plan.grain = match a.grain.as_str() {
        "none" => None,
        "day" => Some(Grain::Day),
        "week" => Some(Grain::Week),
        "month" => Some(Grain::Month),
        "quarter" => Some(Grain::Quarter),
        other => return Err(format!("unknown grain {other:?}")),
    };
    plan.filters.source = match a.source.as_str() {
        "any" => None,
        "shopify" => Some(Source::Shopify),
        "stripe" => Some(Source::Stripe),
        other => return Err(format!("unknown source {other:?}")),
    };
    if !a.product.trim().is_empty() {
        let p = catalog
            .product_titles()
            .find(|t| t.eq_ignore_ascii_case(a.product.trim()))
            .ok_or_else(|| format!("no product titled {:?}", a.product))?;
        plan.filters.product = Some(p.to_string());
    }
    if !a.customer.trim().is_empty() {
        let key = a.customer.trim().to_lowercase();
        let c = catalog
            .customers
            .iter()
            .find(|c| c.key == key)
            .ok_or_else(|| format!("no customer {:?}", a.customer))?;
        plan.filters.customer = Some(CustomerRef {
            name: c.name.clone(),
            key: c.key.clone(),
        });
    }
    let n = usize::try_from(a.top_n.clamp(1, 50)).unwrap_or(5);
    let metric = metric_of(&a.metric).ok_or_else(|| format!("unknown metric {:?}", a.metric))?;
    match (a.kind.as_str(), a.rank_by.as_str()) {
        ("ranking", "product_sales") | ("ranking", "product_units") => {
            let units = a.rank_by == "product_units";
            plan.ranking = Some(Ranking {
                entity: RankedEntity::Products,
                by: if units {
                    RankedBy::Units
                } else {
                    RankedBy::ProductSales
                },
                n,
            });
            plan.metric = Some(if units {
                Metric::TopProductsByUnits
            } else {
                Metric::TopProducts
            });
        }
        ("ranking", "customer_spend") => {
            plan.ranking = Some(Ranking {
                entity: RankedEntity::Customers,
                by: RankedBy::Spend,
                n,
            });
            plan.metric = Some(Metric::TopCustomers);
        }
        ("ranking", other) => return Err(format!("a ranking needs rank_by, not {other:?}")),
        _ => {
            plan.metric = Some(match (metric, &plan.filters.product) {
                (Metric::Units, _) => Metric::Units,
                (_, Some(_)) => Metric::ProductSales,
                (Metric::ProductSales, None) => return Err("product_sales needs a product".into()),
                (m, None) => m,
            })
        }
    }
    Ok(Some(plan))
}

/// Numbers as written in a text ("$27,679.67", "4.2%", "2025"), normalised (no symbol, no grouping).
pub fn numbers(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let next_digit = chars.get(i + 1).is_some_and(char::is_ascii_digit);
        if c.is_ascii_digit() || (!cur.is_empty() && (c == ',' || c == '.') && next_digit) {
            if c != ',' {
                cur.push(c);
            }
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out.into_iter()
        .map(|n| {
            // 27679.670 and 27679.67 are one number; so are 05 and 5.
            n.parse::<f64>().map(|f| format!("{f}")).unwrap_or(n)
        })
        .collect()
}

/// The text, if every number in it is among `allowed`'s (and it keeps at least one of them when there
/// were any to keep).
pub fn locked(text: &str, allowed: &str) -> Result<String, String> {
    let ok: HashSet<String> = numbers(allowed).into_iter().collect();
    let used = numbers(text);
    if let Some(bad) = used.iter().find(|n| !ok.contains(*n)) {
        return Err(format!(
            "the reply has a number the platform did not compute: {bad}"
        ));
    }
    if used.is_empty() && !ok.is_empty() && numbers_matter(allowed) {
        return Err("the reply dropped the numbers".into());
    }
    let t = text.trim();
    if t.is_empty() || t.len() > 4000 {
        return Err("empty or overlong reply".into());
    }
    Ok(t.to_string())
}

/// Whether a deterministic text carries figures (money, counts), not just dates.
fn numbers_matter(text: &str) -> bool {
    text.contains(['$', '€', '£', '%']) || text.contains(" was ") || text.contains(": ")
}

/// Rewrite the deterministic answer in plainer words, numbers locked.
pub fn phrase_request(question: &str, answer: &str, result: &Json) -> LlmRequest {
    LlmRequest {
        system: "You are the voice of a small-business analytics assistant. Rewrite the given answer for the shop owner in at most three short sentences. \
                 Use only the numbers, dates and periods exactly as they appear in the answer; never compute, round or add a number. \
                 Keep the period, the time zone and, briefly, what the figure counts."
            .into(),
        messages: vec![Msg {
            role: Role::User,
            content: format!(
                "Question: {question}\nAnswer: {answer}\nFacts (JSON): {result}"
            ),
        }],
        tool: None,
        max_tokens: 300,
    }
}

/// A friendly reply to small talk or a request for help, grounded in what the platform can do.
pub fn chat_request(question: &str, reference: &str, history: &[(String, String)]) -> LlmRequest {
    let mut messages = Vec::new();
    for (q, a) in history.iter().rev().take(4).rev() {
        messages.push(Msg {
            role: Role::User,
            content: q.clone(),
        });
        messages.push(Msg {
            role: Role::Assistant,
            content: a.clone(),
        });
    }
    messages.push(Msg {
        role: Role::User,
        content: question.to_string(),
    });
    LlmRequest {
        system: format!(
            "You are SMB Command, an assistant for a small business's own sales data (Shopify and Stripe): revenue, orders, customers, refunds, products, search over orders, and actions (e-mail a summary, create a task, sync sources) that the owner confirms. \
             Reply in at most three sentences. Do not state any figure about the business; offer an example question instead. \
             If the message is unrelated to the business, say politely what you can help with. A suitable reply: {reference}"
        ),
        messages,
        tool: None,
        max_tokens: 200,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_normalised() {
        assert_eq!(
            numbers("You made $27,679.67 in May 2025, up 4.2% (May 1 – May 31)."),
            vec!["27679.67", "2025", "4.2", "1", "31"]
        );
        assert_eq!(
            numbers("order #1310 on 2025-05-01"),
            vec!["1310", "2025", "5", "1"]
        );
    }

    #[test]
    fn invented_numbers_are_refused() {
        let det =
            "Revenue — paid sales minus refunds — was $27,679.67 in May 2025 (America/New_York).";
        assert!(locked("You made $27,679.67 in May 2025.", det).is_ok());
        assert!(locked("You made $27,680 in May 2025.", det).is_err());
        assert!(locked("You made about $28k in May 2025.", det).is_err());
        assert!(
            locked("You did great in May.", det).is_err(),
            "the figure was dropped"
        );
    }
}
