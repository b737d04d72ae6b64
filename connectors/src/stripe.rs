//! Stripe API: `/v1/charges`, `/v1/customers`; `limit=100`; `starting_after` pagination (newest first);
//! incremental by `created[gte]`.

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

    async fn get(&self, url: &str) -> Result<crate::http::Response, SourceError> {
        let auth = format!("Bearer {}", self.key);
        self.client.get(url, &[("Authorization", &auth)]).await
    }
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
        &["customers", "charges"]
    }

    async fn validate(&self) -> Result<(), SourceError> {
        let r = self.get(&format!("{}/v1/account", self.base)).await?;
        if r.body.get("id").is_none() {
            return Err(SourceError::Malformed("account has no id".into()));
        }
        Ok(())
    }

    async fn next_page(&self, stream: &str, cursor: &StreamCursor) -> Result<Page, SourceError> {
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
        let records = r
            .body
            .get("data")
            .and_then(|v| v.as_array())
            .cloned()
            .ok_or_else(|| SourceError::Malformed(format!("{stream} list has no data array")))?;
        let has_more = r
            .body
            .get("has_more")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        let page_high = records
            .iter()
            .filter_map(|r| r.get("created").and_then(|v| v.as_i64()))
            .max()
            .map(|c| c.to_string());
        let next = if has_more {
            records
                .last()
                .and_then(|r| r.get("id"))
                .and_then(|v| v.as_str())
                .map(str::to_string)
        } else {
            None
        };
        let done = next.is_none();
        Ok(Page {
            records,
            cursor: cursor.advance(next, page_high, newer),
            done,
        })
    }
}
