//! The search handler: the plan's words and filters → the index → hits resolved back to canonical records
//! (order number, date, customer, total), and an answer that names what was found.

use chrono::NaiveDate;
use serde_json::{Value as Json, json};
use smb_core::ids::{Currency, TenantId};
use smb_core::store::Db;
use smb_core::{Error, with_tenant};
use smb_search::index::Filter;
use smb_search::{Found, Kind, Mode, SearchEngine, SearchRequest};

use crate::answer::money;
use crate::nlu::Plan;

/// Hits listed in an answer.
pub const LIMIT: usize = 5;

/// One hit with its record's facts.
struct Resolved {
    found: Found,
    /// For refunds: the order they belong to; otherwise the record itself.
    order: Option<OrderFacts>,
    customer: Option<(Option<String>, Option<String>)>,
}

struct OrderFacts {
    source: String,
    id: String,
    name: String,
    date: String,
    customer_name: Option<String>,
    customer_email: Option<String>,
    total_minor: i64,
    currency: String,
}

pub struct Searched {
    /// Records found.
    pub found: usize,
    pub answer: String,
    pub result: smb_proto::orchestrator::v1::SearchResult,
    pub steps: Vec<Json>,
}

use smb_proto::orchestrator::v1::Hit;
use smb_search::doc::day_number as day;

pub async fn run(
    engine: &SearchEngine,
    db: &Db,
    tenant: &TenantId,
    currency: &Currency,
    plan: &Plan,
) -> Result<Searched, Error> {
    let spec = plan.search.clone().unwrap_or_default();
    let mut steps =
        vec![json!({"step": "understand", "search_words": spec.words, "kinds": spec.kinds})];
    if spec.words.trim().is_empty() {
        return Ok(Searched {
            found: 0,
            answer: "What should I look for? Describe what the order or customer said — for example \"find the order where the grinder arrived broken\" or \"which order mentioned a wedding\".".into(),
            result: Default::default(),
            steps,
        });
    }
    // No record is dated in the future: "moving next week" describes, it does not filter.
    let period = (!plan.default_period && !plan.future)
        .then(|| plan.periods.first().copied())
        .flatten();
    let mut kinds: Vec<Kind> = spec.kinds.iter().filter_map(|k| Kind::parse(k)).collect();
    if kinds.is_empty() && plan.filters.customer.is_some() {
        // "Ruby's order about the grinder": her orders, charges and refunds, not other customers.
        kinds = vec![Kind::Order, Kind::Charge, Kind::Customer];
    }
    let filter = Filter {
        tenant_id: tenant.to_string(),
        kinds,
        sources: plan
            .filters
            .source
            .map(|s| vec![s.as_str().to_string()])
            .unwrap_or_default(),
        customer_key: plan.filters.customer.as_ref().map(|c| c.key.clone()),
        days: period.map(|p| (day(p.start), day(p.end))),
    };
    let mut res = engine
        .search(&SearchRequest {
            filter: filter.clone(),
            words: spec.words.clone(),
            limit: LIMIT,
            mode: None,
        })
        .await?;
    // A date in a description is often part of it ("the wedding on the 14th"): with nothing in the
    // period, the other dates are searched and the answer says so.
    let mut outside = false;
    if res.hits.is_empty() && filter.days.is_some() {
        let wider = engine
            .search(&SearchRequest {
                filter: Filter {
                    days: None,
                    ..filter
                },
                words: spec.words.clone(),
                limit: LIMIT,
                mode: None,
            })
            .await?;
        outside = !wider.hits.is_empty();
        if outside {
            res = wider;
        }
    }
    steps.push(
        json!({"step": "search", "mode": res.mode.as_str(), "index": engine.index_name(),
        "model": engine.model_id(), "candidates": res.candidates, "hits": res.hits.len()}),
    );
    let mut resolved = Vec::with_capacity(res.hits.len());
    for f in res.hits {
        resolved.push(resolve(db, tenant, f).await?);
    }
    // A refund and its order are one finding.
    let mut seen = std::collections::HashSet::new();
    resolved.retain(|r| match &r.order {
        Some(o) => seen.insert((o.source.clone(), o.id.clone())),
        None => true,
    });
    let scope = match period {
        Some(p) if !outside => format!(" from {}", crate::answer::describe(&p)),
        _ => String::new(),
    };
    let answer = if resolved.is_empty() {
        format!(
            "I found nothing{scope} matching \"{}\". Try other words for what the order or customer said.",
            spec.words
        )
    } else {
        let sym = currency.symbol();
        let exp = currency.exponent();
        let mut lines = Vec::new();
        for (i, r) in resolved.iter().enumerate() {
            lines.push(describe_hit(r, &sym, exp, i == 0));
        }
        let head = if resolved.len() == 1 {
            "The best match".to_string()
        } else {
            format!("{} matches{scope}; the best", resolved.len())
        };
        let mut text = format!("{head}: {}", lines[0]);
        if lines.len() > 1 {
            text.push_str(&format!(" Also: {}", lines[1..].join("; ")));
            text.push('.');
        }
        if let (true, Some(p)) = (outside, period) {
            text = format!(
                "Nothing from {} matches; from other dates — {text}",
                crate::answer::describe(&p)
            );
        }
        if res.mode == Mode::Keyword && !engine.has_dense() {
            text.push_str(" (Matched by words only: no embedding model is installed.)");
        }
        text
    };
    let hits: Vec<Hit> = resolved.iter().map(hit).collect();
    Ok(Searched {
        found: hits.len(),
        answer,
        result: smb_proto::orchestrator::v1::SearchResult {
            hits,
            mode: res.mode.as_str().to_string(),
            query: spec.words,
        },
        steps,
    })
}

fn describe_hit(r: &Resolved, sym: &str, exp: u32, first: bool) -> String {
    let mut snippet = if first {
        format!(" — \"{}\"", r.found.snippet)
    } else {
        String::new()
    };
    if r.found.same_text > 0 {
        let kind = match r.found.kind {
            Kind::Order => "orders",
            Kind::Charge => "payments",
            Kind::Refund => "refunds",
            Kind::Customer => "customers",
            Kind::Product => "products",
            Kind::Term => "words",
        };
        snippet.push_str(&format!(
            " (and {} more {kind} with the same words)",
            r.found.same_text
        ));
    }
    match (&r.order, r.found.kind) {
        (Some(o), k) => {
            let what = match (k, o.source.as_str()) {
                (Kind::Refund, _) => format!("a refund on order {}", o.name),
                (_, "stripe") => format!("payment {}", o.name),
                _ => format!("order {}", o.name),
            };
            let who = o
                .customer_name
                .clone()
                .or_else(|| o.customer_email.clone())
                .map(|c| format!(", {c}"))
                .unwrap_or_default();
            let total = if o.currency.eq_ignore_ascii_case("USD") || sym != "$" {
                money(o.total_minor, sym, exp)
            } else {
                format!("{} {}", money(o.total_minor, "", exp), o.currency)
            };
            format!("{what} ({}{who}, {total}){snippet}", o.date)
        }
        (None, Kind::Customer) => {
            let email = r
                .customer
                .as_ref()
                .and_then(|(_, e)| e.clone())
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            format!("customer {}{email}", r.found.title)
        }
        (None, Kind::Product) => format!("product {}{snippet}", r.found.title),
        (None, _) => format!("{}{snippet}", r.found.title),
    }
}

fn hit(r: &Resolved) -> Hit {
    let f = &r.found;
    let mut h = Hit {
        kind: f.kind.as_str().to_string(),
        id: f.record_id.clone(),
        title: f.title.clone(),
        snippet: f.snippet.clone(),
        // Four decimals: a rank, not a measurement.
        score: (f64::from(f.score) * 10_000.0).round() / 10_000.0,
        source: f.source.clone(),
        matched: f.matched.clone(),
        same_text: f.same_text as i32,
        ..Hit::default()
    };
    if let Some(o) = &r.order {
        if f.kind == Kind::Refund {
            h.order = o.name.clone();
            h.order_id = o.id.clone();
        }
        h.date = o.date.clone();
        h.total = Some(o.total_minor);
        h.currency = o.currency.clone();
        h.customer = o.customer_name.clone().unwrap_or_default();
        h.customer_email = o.customer_email.clone().unwrap_or_default();
    }
    if let Some((name, email)) = &r.customer {
        if let Some(n) = name {
            h.customer = n.clone();
        }
        if let Some(e) = email {
            h.customer_email = e.clone();
        }
    }
    h
}

type OrderRow = (
    String,
    String,
    String,
    NaiveDate,
    Option<String>,
    Option<String>,
    i64,
    String,
);

async fn order_facts(
    db: &Db,
    tenant: &TenantId,
    source: &str,
    id: &str,
) -> Result<Option<OrderFacts>, Error> {
    let row: Option<OrderRow> = with_tenant!(db, tenant, read, |tx| {
        sqlx::query_as(
            "SELECT source, external_id, name, local_date, customer_name, customer_email, total_minor, currency \
             FROM orders WHERE tenant_id = $1 AND source = $2 AND external_id = $3",
        )
        .bind(tenant.as_str())
        .bind(source)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
    });
    Ok(row.map(
        |(source, id, name, date, customer_name, customer_email, total_minor, currency)| {
            OrderFacts {
                source,
                id,
                name,
                date: date.to_string(),
                customer_name,
                customer_email,
                total_minor,
                currency,
            }
        },
    ))
}

/// The canonical record behind a hit: the index holds words, the database holds the facts.
async fn resolve(db: &Db, tenant: &TenantId, found: Found) -> Result<Resolved, Error> {
    let mut r = Resolved {
        order: None,
        customer: None,
        found,
    };
    match r.found.kind {
        Kind::Order | Kind::Charge => {
            r.order = order_facts(db, tenant, &r.found.source, &r.found.record_id).await?;
        }
        Kind::Refund => {
            let order: Option<(String,)> = with_tenant!(db, tenant, read, |tx| {
                sqlx::query_as(
                    "SELECT order_external_id FROM refunds WHERE tenant_id = $1 AND source = $2 AND external_id = $3",
                )
                .bind(tenant.as_str())
                .bind(&r.found.source)
                .bind(&r.found.record_id)
                .fetch_optional(&mut *tx)
                .await?
            });
            if let Some((oid,)) = order {
                r.order = order_facts(db, tenant, &r.found.source, &oid).await?;
            }
        }
        Kind::Customer => {
            let row: Option<(Option<String>, Option<String>)> = with_tenant!(
                db,
                tenant,
                read,
                |tx| {
                    sqlx::query_as(
                        "SELECT name, email FROM customers WHERE tenant_id = $1 AND source = $2 AND external_id = $3",
                    )
                    .bind(tenant.as_str())
                    .bind(&r.found.source)
                    .bind(&r.found.record_id)
                    .fetch_optional(&mut *tx)
                    .await?
                }
            );
            r.customer = row;
        }
        Kind::Product | Kind::Term => {}
    }
    Ok(r)
}
