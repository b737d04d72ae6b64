//! Step 6 of every load: the records' searchable words, as search documents.

use smb_core::ids::TenantId;
use smb_search::doc::{join_text, strip_html};
use smb_search::{Doc, Kind};

use crate::transform::{Batch, CustomerRow, OrderBundle, ProductRow, RefundRow};

use smb_search::doc::day_number as day;

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

/// Records read per query while rebuilding.
const REBUILD_PAGE: i64 = 500;

/// Builds the search engine's generation from the canonical store when it is not complete (a new model, a
/// new mapping, or a first start with data), then marks it complete, which retires the previous one. Until
/// then searches read the previous generation. Idempotent: records already indexed at their version are
/// skipped, so an interrupted rebuild resumes cheaply on the next start.
pub async fn rebuild(
    db: &smb_core::store::Db,
    cache: &smb_core::cache::DynCache,
    engine: &smb_search::SearchEngine,
) -> Result<usize, smb_core::Error> {
    use smb_core::{with_global, with_tenant};
    if engine.ready().await? {
        return Ok(0);
    }
    let started = std::time::Instant::now();
    let tenants: Vec<(String, String)> = with_global!(db, read, |tx| {
        sqlx::query_as("SELECT id, timezone FROM tenants ORDER BY id")
            .fetch_all(&mut *tx)
            .await?
    });
    let mut total = 0;
    for (id, zone) in &tenants {
        let tenant: TenantId = id.parse()?;
        let tz: chrono_tz::Tz = zone.parse().unwrap_or(chrono_tz::UTC);
        for (table, streams) in [
            ("products", [("shopify", "products"), ("", "")]),
            (
                "customers",
                [("shopify", "customers"), ("stripe", "customers")],
            ),
            ("orders", [("shopify", "orders"), ("stripe", "charges")]),
        ] {
            for (source, stream) in streams {
                if source.is_empty() {
                    continue;
                }
                let mut after = String::new();
                loop {
                    let sql = format!(
                        "SELECT external_id, raw FROM {table} WHERE tenant_id = $1 AND source = $2 AND external_id > $3 \
                         ORDER BY external_id LIMIT {REBUILD_PAGE}"
                    );
                    let rows: Vec<(String, String)> = with_tenant!(db, &tenant, read, |tx| {
                        sqlx::query_as(&sql)
                            .bind(tenant.as_str())
                            .bind(source)
                            .bind(&after)
                            .fetch_all(&mut *tx)
                            .await?
                    });
                    let Some((last, _)) = rows.last() else { break };
                    after = last.clone();
                    let records: Vec<serde_json::Value> = rows
                        .iter()
                        .filter_map(|(_, raw)| serde_json::from_str(raw).ok())
                        .collect();
                    let mut batch = Batch::default();
                    crate::transform::transform_page(source, stream, &records, tz, &mut batch);
                    total += records.len();
                    engine.index(docs(&tenant, &batch)).await?;
                    if (rows.len() as i64) < REBUILD_PAGE {
                        break;
                    }
                }
            }
        }
        // Refunds that arrived on their own (webhooks) are not inside their order's raw record.
        let mut after = String::new();
        loop {
            let rows: Vec<(String, String, String)> = with_tenant!(db, &tenant, read, |tx| {
                sqlx::query_as(
                    "SELECT external_id, order_external_id, raw FROM refunds WHERE tenant_id = $1 AND source = 'shopify' \
                     AND external_id > $2 ORDER BY external_id LIMIT 500",
                )
                .bind(tenant.as_str())
                .bind(&after)
                .fetch_all(&mut *tx)
                .await?
            });
            let Some((last, _, _)) = rows.last() else {
                break;
            };
            after = last.clone();
            let mut out = Vec::new();
            for (_, order, raw) in &rows {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(raw)
                    && let Ok(r) = crate::transform::shopify_refund(&v, order, false, tz)
                {
                    out.extend(refund(&tenant, &r, None));
                }
            }
            engine.index(out).await?;
            if rows.len() < 500 {
                break;
            }
        }
    }
    engine.mark_ready().await?;
    // Answers cached from the previous generation are stale now.
    for (id, _) in &tenants {
        let tenant: TenantId = id.parse()?;
        cache
            .incr(&smb_core::cache::keys::data_version(&tenant))
            .await?;
    }
    tracing::info!(
        records = total,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "search index built"
    );
    Ok(total)
}
