//! What is indexed: one document per canonical record that carries words a shop owner would search.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The bump that re-indexes everything: change it whenever the text a document is built from changes, or
/// how the index lays it out (2: the embedded index's payload and word indexes moved to disk, so a
/// generation built before keeps them in memory until rebuilt).
pub const MAPPING_VERSION: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A Shopify order.
    Order,
    /// A Stripe charge (a payment).
    Charge,
    Refund,
    Customer,
    Product,
    /// A word of the tenant's notes and descriptions, with its meaning: a search word no record has
    /// ("marriage") finds the tenant's own words for it ("wedding"). Never a search result.
    Term,
}

impl Kind {
    /// The kinds of record (every kind but `Term`).
    pub const ALL: [Kind; 5] = [
        Kind::Order,
        Kind::Charge,
        Kind::Refund,
        Kind::Customer,
        Kind::Product,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Order => "order",
            Kind::Charge => "charge",
            Kind::Refund => "refund",
            Kind::Customer => "customer",
            Kind::Product => "product",
            Kind::Term => "term",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One searchable record. Built by the workers from canonical rows; the index never sees raw payloads.
#[derive(Debug, Clone, PartialEq)]
pub struct Doc {
    pub tenant_id: String,
    pub kind: Kind,
    pub source: String,
    /// The record's id in its source (order id, charge id, customer id…).
    pub record_id: String,
    /// How a person names it: "#1310", "Ruby Taylor", a product title.
    pub title: String,
    /// Tenant-local date of the record (orders, charges, refunds, customers' sign-up), days since 1970-01-01.
    pub day: Option<i32>,
    pub customer_key: Option<String>,
    /// Every word worth matching exactly: names, e-mails, titles, tags, cities, notes. The keyword side.
    pub keywords: String,
    /// What the record says in sentences (notes, descriptions). The dense side; `None` when it says nothing.
    pub prose: Option<String>,
}

impl Doc {
    /// The point id: stable per (tenant, kind, source, record), so re-indexing replaces, never duplicates.
    pub fn point_id(&self) -> Uuid {
        point_id(&self.tenant_id, self.kind, &self.source, &self.record_id)
    }

    /// The document's version: a digest of everything indexed about it and of how it was indexed
    /// (`model`). Equal versions are not embedded or written again.
    pub fn version(&self, model: &str) -> String {
        let mut h = Sha256::new();
        for part in [
            MAPPING_VERSION.to_string().as_str(),
            model,
            &self.title,
            &self.day.map(|d| d.to_string()).unwrap_or_default(),
            self.customer_key.as_deref().unwrap_or(""),
            &self.keywords,
            self.prose.as_deref().unwrap_or(""),
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        hex::encode(&h.finalize()[..12])
    }

    /// The text shown as the hit's snippet.
    pub fn snippet(&self) -> &str {
        self.prose.as_deref().unwrap_or(&self.keywords)
    }
}

/// A date as the index keeps it: days since 1970-01-01.
pub fn day_number(d: chrono::NaiveDate) -> i32 {
    (d - chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date")).num_days() as i32
}

pub fn point_id(tenant: &str, kind: Kind, source: &str, record_id: &str) -> Uuid {
    let name = format!(
        "{tenant}\u{1f}{}\u{1f}{source}\u{1f}{record_id}",
        kind.as_str()
    );
    Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes())
}

/// Joins the non-empty parts with ". ", the way a person would read them.
pub fn join_text<'a>(parts: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for p in parts {
        let p = p.trim();
        if p.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push_str(". ");
        }
        out.push_str(p);
    }
    out
}

/// Removes HTML tags and decodes the few entities product descriptions use.
pub fn strip_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_tag = false;
    for c in s.chars() {
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    let out = out
        .replace("&amp;", "&")
        .replace("&nbsp;", " ")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">");
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Doc {
        Doc {
            tenant_id: "t1".into(),
            kind: Kind::Order,
            source: "shopify".into(),
            record_id: "42".into(),
            title: "#1042".into(),
            day: Some(20_000),
            customer_key: Some("a@example.com".into()),
            keywords: "#1042 Ava".into(),
            prose: Some("Leave it at the door".into()),
        }
    }

    #[test]
    fn ids_are_stable_and_tenant_scoped() {
        let a = doc();
        let mut b = doc();
        assert_eq!(a.point_id(), b.point_id());
        b.tenant_id = "t2".into();
        assert_ne!(a.point_id(), b.point_id());
    }

    #[test]
    fn versions_follow_content_and_model() {
        let a = doc();
        let mut b = doc();
        assert_eq!(a.version("m"), b.version("m"));
        assert_ne!(a.version("m"), a.version("other"));
        b.prose = Some("Ring the bell".into());
        assert_ne!(a.version("m"), b.version("m"));
    }

    #[test]
    fn html_is_stripped() {
        assert_eq!(
            strip_html("<p>Floral &amp; bright.</p><p>Light roast.</p>"),
            "Floral & bright. Light roast."
        );
        assert_eq!(join_text(["a", " ", "b"]), "a. b");
    }
}
