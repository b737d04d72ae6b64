//! Pure transformation of raw source records into canonical rows. Tenant-local dates are computed here,
//! from the tenant's IANA time zone. Money is parsed from decimal strings into integer minor units.

use chrono::{DateTime, NaiveDate};
use chrono_tz::Tz;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct OrderRow {
    pub source: String,
    pub external_id: String,
    pub name: String,
    pub customer_key: Option<String>,
    pub customer_ref: Option<String>,
    pub customer_email: Option<String>,
    pub customer_name: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub local_date: NaiveDate,
    pub status: String,
    pub counted: bool,
    pub test: bool,
    pub total_minor: i64,
    pub refunded_minor: i64,
    pub discounts_minor: i64,
    pub currency: String,
    pub note: Option<String>,
    /// Searchable words that are not columns: tags, the shipping city.
    pub tags: Option<String>,
    pub city: Option<String>,
    pub raw: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LineRow {
    pub source: String,
    pub external_id: String,
    pub order_external_id: String,
    pub product_ref: Option<String>,
    pub title: String,
    pub quantity: i64,
    pub price_minor: i64,
    pub local_date: NaiveDate,
    pub counted: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RefundRow {
    pub source: String,
    pub external_id: String,
    pub order_external_id: String,
    pub created_at: i64,
    pub local_date: NaiveDate,
    pub amount_minor: i64,
    pub test: bool,
    /// The refund's note ("Damaged in shipping"): searchable, not a column.
    pub note: Option<String>,
    pub raw: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CustomerRow {
    pub source: String,
    pub external_id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub customer_key: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// Searchable words that are not columns.
    pub city: Option<String>,
    pub tags: Option<String>,
    pub raw: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProductRow {
    pub source: String,
    pub external_id: String,
    pub title: String,
    pub updated_at: i64,
    /// Searchable words that are not columns: the description (HTML), type, vendor and tags.
    pub description: Option<String>,
    pub kind: Option<String>,
    pub vendor: Option<String>,
    pub tags: Option<String>,
    pub raw: String,
}

/// An order with the rows that belong to it (replaced whenever the order is).
#[derive(Debug, Clone, PartialEq)]
pub struct OrderBundle {
    pub order: OrderRow,
    pub lines: Vec<LineRow>,
    pub refunds: Vec<RefundRow>,
}

#[derive(Debug, Default, Clone)]
pub struct Batch {
    pub orders: Vec<OrderBundle>,
    pub customers: Vec<CustomerRow>,
    pub products: Vec<ProductRow>,
    /// `"<stream> <id>: <reason>"` for every rejected record.
    pub rejections: Vec<String>,
}

impl Batch {
    pub fn accepted(&self) -> usize {
        self.orders.len() + self.customers.len() + self.products.len()
    }

    /// Adds `other`'s records (pages loaded together, as `sync_bench --pages-per-tx` does); [`Batch::dedupe`]
    /// afterwards.
    pub fn append(&mut self, other: Batch) {
        self.orders.extend(other.orders);
        self.customers.extend(other.customers);
        self.products.extend(other.products);
        self.rejections.extend(other.rejections);
    }

    /// Keeps only the newest version of each record, by source and id (a page may repeat one, and pages
    /// applied together may too; a set-based upsert must not touch one row twice).
    pub fn dedupe(&mut self) {
        fn keep_newest<T>(v: &mut Vec<T>, key: impl Fn(&T) -> String, updated: impl Fn(&T) -> i64) {
            let mut best: std::collections::HashMap<String, usize> =
                std::collections::HashMap::new();
            for (i, x) in v.iter().enumerate() {
                let k = key(x);
                match best.get(&k) {
                    Some(&j) if updated(&v[j]) > updated(x) => {}
                    _ => {
                        best.insert(k, i);
                    }
                }
            }
            let mut keep: Vec<usize> = best.into_values().collect();
            keep.sort_unstable();
            let mut i = 0;
            let keep: std::collections::HashSet<usize> = keep.into_iter().collect();
            v.retain(|_| {
                let k = keep.contains(&i);
                i += 1;
                k
            });
        }
        keep_newest(
            &mut self.orders,
            |o| format!("{}\u{1f}{}", o.order.source, o.order.external_id),
            |o| o.order.updated_at,
        );
        keep_newest(
            &mut self.customers,
            |c| format!("{}\u{1f}{}", c.source, c.external_id),
            |c| c.updated_at,
        );
        keep_newest(
            &mut self.products,
            |p| format!("{}\u{1f}{}", p.source, p.external_id),
            |p| p.updated_at,
        );
    }
}

/// Transforms one page of `stream` records from `source` into `batch`.
pub fn transform_page(source: &str, stream: &str, records: &[Value], tz: Tz, batch: &mut Batch) {
    for r in records {
        let result = match (source, stream) {
            ("shopify", "orders") => shopify_order(r, tz).map(|b| batch.orders.push(b)),
            ("shopify", "customers") => shopify_customer(r).map(|c| batch.customers.push(c)),
            ("shopify", "products") => shopify_product(r).map(|p| batch.products.push(p)),
            ("stripe", "charges") => stripe_charge(r, tz).map(|b| batch.orders.push(b)),
            ("stripe", "customers") => stripe_customer(r).map(|c| batch.customers.push(c)),
            ("stripe", "events") => stripe_event(r, tz, batch),
            _ => Err(format!("unknown stream {source}/{stream}")),
        };
        if let Err(reason) = result {
            let id = r.get("id").map_or_else(|| "?".to_string(), id_string);
            batch.rejections.push(format!("{stream} {id}: {reason}"));
        }
    }
}

fn id_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn req_id(r: &Value) -> Result<String, String> {
    match r.get("id") {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err("missing id".into()),
    }
}

fn str_field<'a>(r: &'a Value, k: &str) -> Option<&'a str> {
    r.get(k).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn req_time(r: &Value, k: &str) -> Result<DateTime<chrono::FixedOffset>, String> {
    let s = str_field(r, k).ok_or_else(|| format!("missing {k}"))?;
    DateTime::parse_from_rfc3339(s).map_err(|_| format!("{k} {s:?} is not an RFC 3339 time"))
}

/// Parses a decimal money string ("26.08", "-3.5", "100") into minor units with `exp` decimals, exactly.
pub fn parse_money(s: &str, exp: u32) -> Result<i64, String> {
    let bad = || format!("money amount {s:?} does not parse");
    let t = s.trim();
    let (neg, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let frac_trimmed = frac.trim_end_matches('0');
    if frac_trimmed.len() > exp as usize {
        return Err(format!("money amount {s:?} has more than {exp} decimals"));
    }
    let scale = 10i64.pow(exp);
    let mut f = frac_trimmed.to_string();
    while f.len() < exp as usize {
        f.push('0');
    }
    let i: i64 = int.parse().map_err(|_| bad())?;
    let fv: i64 = if f.is_empty() {
        0
    } else {
        f.parse().map_err(|_| bad())?
    };
    let v = i
        .checked_mul(scale)
        .and_then(|x| x.checked_add(fv))
        .ok_or_else(bad)?;
    Ok(if neg { -v } else { v })
}

/// The minor-unit exponent (ISO 4217) of the currency named in `r[k]`: 0 for JPY or KRW, 3 for KWD, 2 when
/// the field is missing or names no currency.
fn exponent_of(r: &Value, k: &str) -> u32 {
    str_field(r, k)
        .and_then(|c| smb_core::ids::Currency::parse(c).ok())
        .map_or(2, |c| c.exponent())
}

/// A decimal money string in minor units of a currency with exponent `exp`.
fn money_field(r: &Value, k: &str, required: bool, exp: u32) -> Result<i64, String> {
    match r.get(k) {
        Some(Value::String(s)) => parse_money(s, exp),
        None | Some(Value::Null) if !required => Ok(0),
        None | Some(Value::Null) => Err(format!("missing {k}")),
        Some(other) => Err(format!("{k} must be a decimal string, got {other}")),
    }
}

/// A Shopify refund (inside an order, or alone from a `refunds/create` webhook): its successful refund
/// transactions, dated by the refund's `created_at` in the tenant's zone.
pub fn shopify_refund(rf: &Value, order_id: &str, test: bool, tz: Tz) -> Result<RefundRow, String> {
    let rid = req_id(rf).map_err(|e| format!("refund: {e}"))?;
    let rcreated = req_time(rf, "created_at").map_err(|e| format!("refund {rid}: {e}"))?;
    let mut amount = 0;
    for t in rf
        .get("transactions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if str_field(t, "kind") == Some("refund") && str_field(t, "status") == Some("success") {
            amount += money_field(t, "amount", true, exponent_of(t, "currency"))
                .map_err(|e| format!("refund {rid}: {e}"))?;
        }
    }
    Ok(RefundRow {
        source: "shopify".into(),
        external_id: rid,
        order_external_id: order_id.to_string(),
        created_at: rcreated.timestamp_millis(),
        local_date: rcreated.with_timezone(&tz).date_naive(),
        amount_minor: amount,
        test,
        note: str_field(rf, "note").map(str::to_string),
        raw: rf.to_string(),
    })
}

/// The order id a standalone refund belongs to.
pub fn refund_order_id(rf: &Value) -> Result<String, String> {
    match rf.get("order_id") {
        Some(v @ (Value::Number(_) | Value::String(_))) => Ok(id_string(v)),
        _ => Err("refund: missing order_id".into()),
    }
}

fn shopify_order(r: &Value, tz: Tz) -> Result<OrderBundle, String> {
    let id = req_id(r)?;
    let created = req_time(r, "created_at")?;
    let updated = req_time(r, "updated_at")?;
    let local_date = created.with_timezone(&tz).date_naive();
    let test = r.get("test").and_then(Value::as_bool).unwrap_or(false);
    let cancelled = r.get("cancelled_at").is_some_and(|v| !v.is_null());
    let counted = !cancelled && !test;
    let exp = exponent_of(r, "currency");
    let total = money_field(r, "total_price", true, exp)?;
    let discounts = money_field(r, "total_discounts", false, exp)?;
    let customer = r.get("customer").filter(|c| c.is_object());
    let customer_ref = customer
        .and_then(|c| c.get("id"))
        .filter(|v| !v.is_null())
        .map(id_string);
    let email = customer
        .and_then(|c| str_field(c, "email"))
        .or_else(|| str_field(r, "email"))
        .map(|e| e.trim().to_lowercase());
    let name = customer
        .map(|c| {
            [str_field(c, "first_name"), str_field(c, "last_name")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|n| !n.is_empty());
    let customer_key = email
        .clone()
        .or_else(|| customer_ref.as_ref().map(|c| format!("shopify:{c}")));

    let mut refunds = Vec::new();
    for rf in r
        .get("refunds")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        refunds.push(shopify_refund(rf, &id, test, tz)?);
    }
    let mut lines = Vec::new();
    for li in r
        .get("line_items")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let lid = req_id(li).map_err(|e| format!("line item: {e}"))?;
        let quantity = li
            .get("quantity")
            .and_then(Value::as_i64)
            .ok_or_else(|| format!("line item {lid}: missing quantity"))?;
        lines.push(LineRow {
            source: "shopify".into(),
            external_id: lid.clone(),
            order_external_id: id.clone(),
            product_ref: li.get("product_id").filter(|v| !v.is_null()).map(id_string),
            title: str_field(li, "title")
                .or_else(|| str_field(li, "name"))
                .unwrap_or("(untitled)")
                .to_string(),
            quantity,
            price_minor: money_field(li, "price", true, exp)
                .map_err(|e| format!("line item {lid}: {e}"))?,
            local_date,
            counted,
        });
    }
    Ok(OrderBundle {
        order: OrderRow {
            source: "shopify".into(),
            name: str_field(r, "name").map_or_else(|| id.clone(), str::to_string),
            external_id: id,
            customer_key,
            customer_ref,
            customer_email: email,
            customer_name: name,
            created_at: created.timestamp_millis(),
            updated_at: updated.timestamp_millis(),
            local_date,
            status: str_field(r, "financial_status")
                .unwrap_or("unknown")
                .to_string(),
            counted,
            test,
            total_minor: total,
            refunded_minor: refunds.iter().map(|x| x.amount_minor).sum(),
            discounts_minor: discounts,
            currency: str_field(r, "currency").unwrap_or("USD").to_uppercase(),
            note: str_field(r, "note").map(str::to_string),
            tags: str_field(r, "tags").map(str::to_string),
            city: r
                .get("shipping_address")
                .and_then(|a| str_field(a, "city"))
                .map(str::to_string),
            raw: r.to_string(),
        },
        lines,
        refunds,
    })
}

fn unix_time(r: &Value, k: &str) -> Result<DateTime<chrono::Utc>, String> {
    let secs = r
        .get(k)
        .and_then(Value::as_i64)
        .ok_or_else(|| format!("missing {k}"))?;
    DateTime::from_timestamp(secs, 0).ok_or_else(|| format!("{k} out of range"))
}

fn int_field(r: &Value, k: &str) -> Result<i64, String> {
    r.get(k)
        .and_then(Value::as_i64)
        .ok_or_else(|| format!("{k} must be an integer amount in minor units"))
}

fn stripe_charge(r: &Value, tz: Tz) -> Result<OrderBundle, String> {
    let id = req_id(r)?;
    let created = unix_time(r, "created")?;
    let local_date = created.with_timezone(&tz).date_naive();
    let status = str_field(r, "status").ok_or("missing status")?.to_string();
    let amount = int_field(r, "amount")?;
    let refunded = match r.get("amount_refunded") {
        None | Some(Value::Null) => 0,
        Some(_) => int_field(r, "amount_refunded")?,
    };
    let counted = status == "succeeded";
    let billing = r.get("billing_details");
    let email = billing
        .and_then(|b| str_field(b, "email"))
        .map(|e| e.trim().to_lowercase());
    let name = billing
        .and_then(|b| str_field(b, "name"))
        .map(str::to_string);
    let customer_ref = str_field(r, "customer").map(str::to_string);
    let customer_key = email
        .clone()
        .or_else(|| customer_ref.as_ref().map(|c| format!("stripe:{c}")));
    let refunds = if counted && refunded > 0 {
        vec![RefundRow {
            source: "stripe".into(),
            external_id: format!("{id}:refunded"),
            order_external_id: id.clone(),
            created_at: created.timestamp_millis(),
            local_date,
            amount_minor: refunded,
            test: false,
            note: None,
            raw: "{}".into(),
        }]
    } else {
        Vec::new()
    };
    Ok(OrderBundle {
        order: OrderRow {
            source: "stripe".into(),
            name: id.clone(),
            external_id: id,
            customer_key,
            customer_ref,
            customer_email: email,
            customer_name: name,
            created_at: created.timestamp_millis(),
            updated_at: created.timestamp_millis(),
            local_date,
            status,
            counted,
            test: false,
            total_minor: amount,
            refunded_minor: refunded,
            discounts_minor: 0,
            currency: str_field(r, "currency").unwrap_or("usd").to_uppercase(),
            note: str_field(r, "description").map(str::to_string),
            tags: None,
            city: billing
                .and_then(|b| b.get("address"))
                .and_then(|a| str_field(a, "city"))
                .map(str::to_string),
            raw: r.to_string(),
        },
        lines: Vec::new(),
        refunds,
    })
}

fn shopify_customer(r: &Value) -> Result<CustomerRow, String> {
    let id = req_id(r)?;
    let created = req_time(r, "created_at")?;
    let updated = req_time(r, "updated_at").unwrap_or(created);
    let email = str_field(r, "email").map(|e| e.trim().to_lowercase());
    let name = [str_field(r, "first_name"), str_field(r, "last_name")]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    Ok(CustomerRow {
        source: "shopify".into(),
        customer_key: email.clone().unwrap_or_else(|| format!("shopify:{id}")),
        external_id: id,
        email,
        name: (!name.is_empty()).then_some(name),
        created_at: created.timestamp_millis(),
        updated_at: updated.timestamp_millis(),
        city: r
            .get("default_address")
            .and_then(|a| str_field(a, "city"))
            .map(str::to_string),
        tags: str_field(r, "tags").map(str::to_string),
        raw: r.to_string(),
    })
}

/// A polled Stripe event: its object as it stood at the event, versioned by the event's time (a charge
/// carries no update time of its own), so that the newest state wins whatever order events arrive in.
fn stripe_event(r: &Value, tz: Tz, batch: &mut Batch) -> Result<(), String> {
    let at = unix_time(r, "created")?.timestamp_millis();
    let object = r
        .get("data")
        .and_then(|d| d.get("object"))
        .ok_or("an event without data.object")?;
    match (str_field(r, "type"), str_field(object, "object")) {
        (Some(t), Some("charge")) if t.starts_with("charge.") => {
            let mut b = stripe_charge(object, tz)?;
            b.order.updated_at = b.order.updated_at.max(at);
            batch.orders.push(b);
        }
        (Some("customer.created" | "customer.updated"), Some("customer")) => {
            let mut c = stripe_customer(object)?;
            c.updated_at = c.updated_at.max(at);
            batch.customers.push(c);
        }
        (t, o) => {
            return Err(format!(
                "event type {} on a {} is not synced",
                t.unwrap_or("(none)"),
                o.unwrap_or("(no object)")
            ));
        }
    }
    Ok(())
}

fn stripe_customer(r: &Value) -> Result<CustomerRow, String> {
    let id = req_id(r)?;
    let created = unix_time(r, "created")?;
    let email = str_field(r, "email").map(|e| e.trim().to_lowercase());
    Ok(CustomerRow {
        source: "stripe".into(),
        customer_key: email.clone().unwrap_or_else(|| format!("stripe:{id}")),
        external_id: id,
        email,
        name: str_field(r, "name").map(str::to_string),
        created_at: created.timestamp_millis(),
        updated_at: created.timestamp_millis(),
        city: r
            .get("address")
            .and_then(|a| str_field(a, "city"))
            .map(str::to_string),
        tags: None,
        raw: r.to_string(),
    })
}

fn shopify_product(r: &Value) -> Result<ProductRow, String> {
    let id = req_id(r)?;
    let title = str_field(r, "title").ok_or("missing title")?.to_string();
    let updated = req_time(r, "updated_at")?;
    Ok(ProductRow {
        source: "shopify".into(),
        external_id: id,
        title,
        updated_at: updated.timestamp_millis(),
        description: str_field(r, "body_html").map(str::to_string),
        kind: str_field(r, "product_type").map(str::to_string),
        vendor: str_field(r, "vendor").map(str::to_string),
        tags: str_field(r, "tags").map(str::to_string),
        raw: r.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn money_is_exact() {
        assert_eq!(parse_money("26.08", 2), Ok(2608));
        assert_eq!(parse_money("0.1", 2), Ok(10));
        assert_eq!(parse_money("100", 2), Ok(10000));
        assert_eq!(parse_money("-3.50", 2), Ok(-350));
        assert_eq!(parse_money("1.230", 2), Ok(123));
        assert!(parse_money("1.234", 2).is_err());
        assert!(parse_money("abc", 2).is_err());
        assert!(parse_money("", 2).is_err());
        assert!(parse_money("1e5", 2).is_err());
    }

    /// Amounts are kept in the minor units of the order's own currency (ISO 4217): yen and won have none,
    /// dinars three.
    #[test]
    fn shopify_money_uses_the_currency_exponent() {
        let tz: Tz = "Asia/Tokyo".parse().unwrap();
        let order = |id: u64, currency: &str, total: &str, price: &str, refund: &str| {
            json!({"id": id, "created_at": "2024-01-01T02:00:00Z", "updated_at": "2024-01-02T00:00:00Z",
                "currency": currency, "total_price": total, "total_discounts": "0",
                "line_items": [{"id": id + 100, "product_id": 7, "title": "Mug", "quantity": 1, "price": price}],
                "refunds": [{"id": id + 200, "created_at": "2024-01-05T00:00:00Z", "transactions": [
                    {"kind": "refund", "status": "success", "amount": refund, "currency": currency}]}]})
        };
        let mut b = Batch::default();
        transform_page(
            "shopify",
            "orders",
            &[
                order(1, "JPY", "1500", "1500", "500"),
                order(2, "KWD", "1.250", "1.250", "0.125"),
                order(3, "JPY", "1500.50", "1500", "0"),
            ],
            tz,
            &mut b,
        );
        let total = |id: &str| {
            b.orders
                .iter()
                .find(|o| o.order.external_id == id)
                .map(|o| o.order.total_minor)
        };
        assert_eq!(total("1"), Some(1500), "¥1500 is 1500 yen, not 150000");
        assert_eq!(total("2"), Some(1250));
        assert_eq!(total("3"), None, "yen have no fractions: rejected");
        let lines: Vec<i64> = b
            .orders
            .iter()
            .flat_map(|o| &o.lines)
            .map(|l| l.price_minor)
            .collect();
        assert_eq!(lines, vec![1500, 1250]);
        let refunds: Vec<i64> = b
            .orders
            .iter()
            .flat_map(|o| &o.refunds)
            .map(|r| r.amount_minor)
            .collect();
        assert_eq!(refunds, vec![500, 125]);
    }

    #[test]
    fn shopify_order_local_date_refunds_and_rejections() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let good = json!({"id": 1, "name": "#1", "created_at": "2024-01-01T02:00:00Z", "updated_at": "2024-01-02T00:00:00Z",
            "cancelled_at": null, "test": false, "total_price": "10.00", "total_discounts": "1.00",
            "customer": {"id": 9, "email": "A@x.com", "first_name": "Ann", "last_name": "Lee"},
            "line_items": [{"id": 5, "product_id": 7, "title": "Mug", "quantity": 2, "price": "4.50"}],
            "refunds": [{"id": 3, "created_at": "2024-01-05T00:00:00-05:00", "transactions": [
                {"kind": "refund", "status": "success", "amount": "2.00"}, {"kind": "refund", "status": "failure", "amount": "9.00"}]}]});
        let bad = json!({"id": 2, "created_at": "2024-01-01T02:00:00Z", "updated_at": "2024-01-01T02:00:00Z", "total_price": "ten"});
        let mut b = Batch::default();
        transform_page("shopify", "orders", &[good, bad], tz, &mut b);
        assert_eq!(b.orders.len(), 1);
        assert_eq!(b.rejections.len(), 1);
        assert!(
            b.rejections[0].contains("orders 2") && b.rejections[0].contains("does not parse"),
            "{:?}",
            b.rejections
        );
        let o = &b.orders[0];
        assert_eq!(o.order.local_date.to_string(), "2023-12-31");
        assert_eq!(o.order.refunded_minor, 200);
        assert_eq!(o.order.customer_key.as_deref(), Some("a@x.com"));
        assert_eq!(o.order.customer_name.as_deref(), Some("Ann Lee"));
        assert_eq!(o.lines[0].price_minor, 450);
        assert_eq!(o.refunds[0].local_date.to_string(), "2024-01-05");
    }

    /// Polled events carry their object as it stood; the newest event's state wins, whatever the order.
    #[test]
    fn stripe_events_are_versioned_by_their_time() {
        let tz: Tz = "America/New_York".parse().unwrap();
        let charge = |refunded: i64| {
            json!({"id": "ch_1", "object": "charge", "created": 1_700_000_000, "status": "succeeded",
                "amount": 2000, "amount_refunded": refunded, "currency": "usd"})
        };
        let event = |id: &str, t: &str, at: i64, object: Value| json!({"id": id, "object": "event", "type": t, "created": at, "data": {"object": object}});
        let mut b = Batch::default();
        transform_page(
            "stripe",
            "events",
            &[
                event("evt_2", "charge.refunded", 1_700_900_000, charge(500)),
                event("evt_1", "charge.succeeded", 1_700_000_000, charge(0)),
                event(
                    "evt_3",
                    "customer.created",
                    1_700_000_000,
                    json!({"id": "cus_1", "object": "customer", "created": 1_699_000_000, "email": "a@x.com"}),
                ),
                event(
                    "evt_4",
                    "invoice.paid",
                    1_700_000_000,
                    json!({"id": "in_1", "object": "invoice"}),
                ),
            ],
            tz,
            &mut b,
        );
        b.dedupe();
        assert_eq!(b.orders.len(), 1);
        assert_eq!(b.orders[0].order.refunded_minor, 500);
        assert_eq!(b.orders[0].order.updated_at, 1_700_900_000_000);
        assert_eq!(b.orders[0].refunds.len(), 1);
        assert_eq!(b.customers.len(), 1);
        assert_eq!(b.customers[0].updated_at, 1_700_000_000_000);
        assert_eq!(b.rejections.len(), 1, "{:?}", b.rejections);
        assert!(
            b.rejections[0].starts_with("events evt_4"),
            "{:?}",
            b.rejections
        );
    }

    fn customer(source: &str, id: &str, updated_at: i64) -> CustomerRow {
        CustomerRow {
            source: source.into(),
            external_id: id.into(),
            email: None,
            name: Some(format!("{source} {id} {updated_at}")),
            customer_key: format!("{source}:{id}"),
            created_at: 0,
            updated_at,
            city: None,
            tags: None,
            raw: "{}".into(),
        }
    }

    #[test]
    fn dedupe_keeps_the_newest_of_each_source_and_id() {
        let mut b = Batch::default();
        b.customers.push(customer("shopify", "1", 5));
        let mut later = Batch::default();
        later.customers.push(customer("stripe", "1", 1));
        later.customers.push(customer("shopify", "1", 9));
        later.customers.push(customer("shopify", "1", 7));
        b.append(later);
        b.dedupe();
        let mut kept: Vec<(String, i64)> = b
            .customers
            .iter()
            .map(|c| (c.source.clone(), c.updated_at))
            .collect();
        kept.sort();
        assert_eq!(
            kept,
            vec![("shopify".to_string(), 9), ("stripe".to_string(), 1)]
        );
    }
}
