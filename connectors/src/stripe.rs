//! Stripe API: `/v1/charges`, `/v1/customers`; `limit=100`; `starting_after` pagination (newest first);
//! incremental by `created[gte]`.
//!
//! Listing by `created` never sees a change to an old object (a refund on last month's charge), so the
//! `events` stream polls `/v1/events` for the charge and customer event types since the newest event seen,
//! the way Stripe documents filling in what webhooks missed. Each event carries its object as it stood
//! at the event, versioned by the event's time, so an older event never overwrites a newer state. The
//! first run only records where the event log stands (the full listings that follow it hold everything
//! older). A source without an event log (404, or a restricted key without the permission: 403) skips the
//! stream with a warning.

use async_trait::async_trait;

use crate::http::{SourceClient, SourceError};
use crate::source::{Page, Source, StreamCursor};

pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";

pub struct Stripe {
    base: String,
    key: String,
    client: SourceClient,
}

impl Stripe {
    pub fn new(base: String, key: String, client: SourceClient) -> Self {
        Self { base, key, client }
    }

    /// The `events` stream: see the module documentation.
    async fn events_page(&self, cursor: &StreamCursor) -> Result<Page, SourceError> {
        let first_run = cursor.since.is_none() && cursor.resume.is_none();
        let mut u = reqwest::Url::parse(&format!("{}/v1/events", self.base))
            .map_err(|e| SourceError::Malformed(e.to_string()))?;
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("limit", if first_run { "1" } else { "100" });
            for t in EVENT_TYPES {
                q.append_pair("types[]", t);
            }
            if let Some(since) = &cursor.since {
                q.append_pair("created[gte]", since);
            }
            if let Some(after) = &cursor.resume {
                q.append_pair("starting_after", after);
            }
        }
        let (records, has_more) = match self.get(u.as_str()).await {
            Ok(r) => list(&r, "events")?,
            Err(SourceError::Rejected { status: 404 } | SourceError::Unauthorized(403)) => {
                tracing::warn!(
                    base = %self.base,
                    "this Stripe account has no readable event log (/v1/events); changes to old charges are seen only through webhooks"
                );
                return Ok(Page {
                    records: Vec::new(),
                    cursor: cursor.clone(),
                    done: true,
                });
            }
            Err(e) => return Err(e),
        };
        let page_high = high(&records);
        if first_run {
            // Where the log stands now; "0" when it is empty, so that the next run reads it all.
            return Ok(Page {
                records: Vec::new(),
                cursor: cursor.advance(None, page_high.or(Some("0".into())), newer),
                done: true,
            });
        }
        let next = has_more.then(|| last_id(&records)).flatten();
        Ok(Page {
            done: next.is_none(),
            cursor: cursor.advance(next, page_high, newer),
            records,
        })
    }

    async fn get(&self, url: &str) -> Result<crate::http::Response, SourceError> {
        let auth = format!("Bearer {}", self.key);
        self.client.get(url, &[("Authorization", &auth)]).await
    }
}

/// The event types whose object is a charge or a customer (what the `charges` and `customers` streams
/// hold), as the webhook route applies them ([`crate::webhooks::stripe_stream`]). Not `customer.deleted`:
/// the log is read newest first, so an older `customer.created` on a later page would bring a deleted
/// customer back (a deletion reaches us by webhook, where events come one at a time).
pub const EVENT_TYPES: &[&str] = &[
    "charge.succeeded",
    "charge.updated",
    "charge.refunded",
    "charge.failed",
    "charge.captured",
    "customer.created",
    "customer.updated",
];

/// A list object's `data` and `has_more`.
fn list(
    r: &crate::http::Response,
    what: &str,
) -> Result<(Vec<serde_json::Value>, bool), SourceError> {
    let records = r
        .body
        .get("data")
        .and_then(|v| v.as_array())
        .cloned()
        .ok_or_else(|| SourceError::Malformed(format!("{what} list has no data array")))?;
    let has_more = r
        .body
        .get("has_more")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    Ok((records, has_more))
}

/// The newest `created` on a page.
fn high(records: &[serde_json::Value]) -> Option<String> {
    records
        .iter()
        .filter_map(|r| r.get("created").and_then(|v| v.as_i64()))
        .max()
        .map(|c| c.to_string())
}

fn last_id(records: &[serde_json::Value]) -> Option<String> {
    records
        .last()
        .and_then(|r| r.get("id"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
}

fn newer(a: &str, b: &str) -> bool {
    a.parse::<i64>().unwrap_or(0) > b.parse::<i64>().unwrap_or(0)
}

#[async_trait]
impl Source for Stripe {
    fn kind(&self) -> &'static str {
        "stripe"
    }

    fn streams(&self) -> &'static [&'static str] {
        // Events first: on the first run it records where the log stands before the listings start, so
        // a change made while they run is read by the next run.
        &["events", "customers", "charges"]
    }

    async fn validate(&self) -> Result<(), SourceError> {
        let r = self.get(&format!("{}/v1/account", self.base)).await?;
        if r.body.get("id").is_none() {
            return Err(SourceError::Malformed("account has no id".into()));
        }
        Ok(())
    }

    async fn next_page(&self, stream: &str, cursor: &StreamCursor) -> Result<Page, SourceError> {
        if stream == "events" {
            return self.events_page(cursor).await;
        }
        let mut u = reqwest::Url::parse(&format!("{}/v1/{stream}", self.base))
            .map_err(|e| SourceError::Malformed(e.to_string()))?;
        {
            let mut q = u.query_pairs_mut();
            q.append_pair("limit", "100");
            if let Some(since) = &cursor.since {
                q.append_pair("created[gte]", since);
            }
            if let Some(after) = &cursor.resume {
                q.append_pair("starting_after", after);
            }
        }
        let r = self.get(u.as_str()).await?;
        let (records, has_more) = list(&r, stream)?;
        let page_high = high(&records);
        let next = has_more.then(|| last_id(&records)).flatten();
        let done = next.is_none();
        Ok(Page {
            records,
            cursor: cursor.advance(next, page_high, newer),
            done,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn polled_event_types_are_the_ones_webhooks_apply() {
        for t in super::EVENT_TYPES {
            assert!(crate::webhooks::stripe_stream(t).is_some(), "{t}");
        }
    }
}
