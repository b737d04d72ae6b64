//! Step 6 of every load: the records' searchable words, as search documents.

use chrono::NaiveDate;
use smb_core::ids::TenantId;
use smb_search::doc::{join_text, strip_html};
use smb_search::{Doc, Kind};

use crate::transform::{Batch, CustomerRow, OrderBundle, ProductRow, RefundRow};

fn day(d: NaiveDate) -> i32 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date")).num_days() as i32
}

fn day_of_ms(ms: i64) -> Option<i32> {
    i32::try_from(ms.div_euclid(86_400_000)).ok()
}

/// Every document a loaded batch yields.
pub fn docs(tenant: &TenantId, batch: &Batch) -> Vec<Doc> {
    let mut out = Vec::with_capacity(batch.orders.len() + batch.customers.len());
    for b in &batch.orders {
        out.push(order(tenant, b));
        let name = b.order.name.as_str();
        out.extend(
            b.refunds
                .iter()
                .filter_map(|r| refund(tenant, r, Some(name))),
        );
    }
    out.extend(batch.customers.iter().map(|c| customer(tenant, c)));
    out.extend(batch.products.iter().map(|p| product(tenant, p)));
    out
}

/// An order (Shopify) or a charge (Stripe).
pub fn order(tenant: &TenantId, b: &OrderBundle) -> Doc {
    let o = &b.order;
    let stripe = o.source == "stripe";
    let number = o.name.trim_start_matches('#');
    let lines: Vec<&str> = b.lines.iter().map(|l| l.title.as_str()).collect();
    let mut parts: Vec<&str> = vec![&o.name];
    let order_word = format!("order {number}");
    if !stripe {
        parts.push(&order_word);
    }
    parts.extend(o.customer_name.as_deref());
    parts.extend(o.customer_email.as_deref());
    parts.extend(lines.iter().copied());
    parts.extend(o.tags.as_deref());
    parts.extend(o.city.as_deref());
    parts.extend(o.note.as_deref());
    Doc {
        tenant_id: tenant.to_string(),
        kind: if stripe { Kind::Charge } else { Kind::Order },
        source: o.source.clone(),
        record_id: o.external_id.clone(),
        title: o.name.clone(),
        day: Some(day(o.local_date)),
        customer_key: o.customer_key.clone(),
        keywords: join_text(parts),
        prose: o.note.clone().filter(|n| !n.trim().is_empty()),
    }
}

/// A refund with a note; one without says nothing to search.
pub fn refund(tenant: &TenantId, r: &RefundRow, order_name: Option<&str>) -> Option<Doc> {
    let note = r.note.as_deref().filter(|n| !n.trim().is_empty())?;
    let title = match order_name {
        Some(n) => format!("Refund on {n}"),
        None => format!("Refund {}", r.external_id),
    };
    Some(Doc {
        tenant_id: tenant.to_string(),
        kind: Kind::Refund,
        source: r.source.clone(),
        record_id: r.external_id.clone(),
        keywords: join_text([title.as_str(), "refund", note]),
        title,
        day: Some(day(r.local_date)),
        customer_key: None,
        prose: Some(note.to_string()),
    })
}

pub fn customer(tenant: &TenantId, c: &CustomerRow) -> Doc {
    let title = c
        .name
        .clone()
        .or_else(|| c.email.clone())
        .unwrap_or_else(|| c.external_id.clone());
    Doc {
        tenant_id: tenant.to_string(),
        kind: Kind::Customer,
        source: c.source.clone(),
        record_id: c.external_id.clone(),
        keywords: join_text(
            [
                c.name.as_deref(),
                c.email.as_deref(),
                c.city.as_deref(),
                c.tags.as_deref(),
            ]
            .into_iter()
            .flatten(),
        ),
        title,
        day: day_of_ms(c.created_at),
        customer_key: Some(c.customer_key.clone()),
        prose: None,
    }
}

pub fn product(tenant: &TenantId, p: &ProductRow) -> Doc {
    let description = p
        .description
        .as_deref()
        .map(strip_html)
        .filter(|d| !d.is_empty());
    Doc {
        tenant_id: tenant.to_string(),
        kind: Kind::Product,
        source: p.source.clone(),
        record_id: p.external_id.clone(),
        title: p.title.clone(),
        day: None,
        customer_key: None,
        keywords: join_text(
            [
                Some(p.title.as_str()),
                p.kind.as_deref(),
                p.vendor.as_deref(),
                p.tags.as_deref(),
                description.as_deref(),
            ]
            .into_iter()
            .flatten(),
        ),
        prose: Some(join_text(
            [Some(p.title.as_str()), description.as_deref()]
                .into_iter()
                .flatten(),
        )),
    }
}
