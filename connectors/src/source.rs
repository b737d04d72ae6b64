//! The anatomy every source shares: validate credentials, list streams, fetch the next page of a stream
//! from a cursor. Cursors are checkpointed by the sync after each page.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::http::SourceError;

/// Where a stream stands. `since` bounds the next incremental run; `resume` continues an interrupted one;
/// `high_water` is the newest change seen in the current run, promoted to `since` when the stream ends.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCursor {
    pub since: Option<String>,
    pub resume: Option<String>,
    pub high_water: Option<String>,
}

impl StreamCursor {
    /// The cursor after a page: mid-stream (`next` is where to go on) or finished.
    pub fn advance(
        &self,
        next: Option<String>,
        page_high: Option<String>,
        newer: impl Fn(&str, &str) -> bool,
    ) -> Self {
        let high_water = match (&self.high_water, page_high) {
            (Some(a), Some(b)) if newer(&b, a) => Some(b),
            (Some(a), _) => Some(a.clone()),
            (None, b) => b,
        };
        match next {
            Some(n) => Self {
                since: self.since.clone(),
                resume: Some(n),
                high_water,
            },
            None => Self {
                since: high_water.or_else(|| self.since.clone()),
                resume: None,
                high_water: None,
            },
        }
    }
}

pub struct Page {
    pub records: Vec<serde_json::Value>,
    pub cursor: StreamCursor,
    /// No more pages in this run.
    pub done: bool,
}

#[async_trait]
pub trait Source: Send + Sync {
    fn kind(&self) -> &'static str;
    fn streams(&self) -> &'static [&'static str];
    /// Checks the credentials against the source.
    async fn validate(&self) -> Result<(), SourceError>;
    async fn next_page(&self, stream: &str, cursor: &StreamCursor) -> Result<Page, SourceError>;
}

/// Normalises a base URL given by a user: adds `https://` when there is no scheme, drops a trailing `/`.
pub fn normalize_base(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    let with_scheme = if url.contains("://") {
        url.to_string()
    } else {
        format!("https://{url}")
    };
    let parsed =
        reqwest::Url::parse(&with_scheme).map_err(|_| format!("{url:?} is not a valid URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        return Err(format!("{url:?} must be an http(s) URL with a host"));
    }
    Ok(with_scheme)
}

/// Whether `url` stays on `base`'s origin (pagination links must not lead credentials elsewhere).
pub fn same_origin(base: &str, url: &str) -> bool {
    match (reqwest::Url::parse(base), reqwest::Url::parse(url)) {
        (Ok(a), Ok(b)) => {
            a.scheme() == b.scheme()
                && a.host_str() == b.host_str()
                && a.port_or_known_default() == b.port_or_known_default()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_promotes_high_water_when_the_stream_ends() {
        let newer = |a: &str, b: &str| a > b;
        let c = StreamCursor {
            since: Some("1".into()),
            ..Default::default()
        };
        let mid = c.advance(Some("next".into()), Some("5".into()), newer);
        assert_eq!(mid.resume.as_deref(), Some("next"));
        assert_eq!(mid.since.as_deref(), Some("1"));
        let end = mid.advance(None, Some("3".into()), newer);
        assert_eq!(
            end,
            StreamCursor {
                since: Some("5".into()),
                resume: None,
                high_water: None
            }
        );
        // An empty run keeps the old bound.
        assert_eq!(c.advance(None, None, newer).since.as_deref(), Some("1"));
    }

    #[test]
    fn urls() {
        assert_eq!(
            normalize_base("shop.myshopify.com/").unwrap(),
            "https://shop.myshopify.com"
        );
        assert!(normalize_base("ftp://x").is_err());
        assert!(same_origin("http://127.0.0.1:1", "http://127.0.0.1:1/a?b"));
        assert!(!same_origin("http://127.0.0.1:1", "http://evil.example/a"));
    }
}
