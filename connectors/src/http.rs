//! HTTP towards sources, with the retry policy every source shares: `429` waits for `Retry-After` (or a
//! second), `5xx` and timeouts back off exponentially with jitter up to a cap, `401/403` fail at once with
//! a message the owner can act on. Shopify's call-limit header slows us down before the bucket is full.

use std::time::Duration;

use rand::Rng;

/// A failure to fetch from a source, as the owner should read it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SourceError {
    #[error(
        "the source rejected the credentials (HTTP {0}); check the access token or API key and reconnect"
    )]
    Unauthorized(u16),
    #[error("could not reach the source at {0}; check the URL and that the service is up")]
    Unreachable(String),
    #[error("the source answered HTTP {status} after {attempts} attempts")]
    Exhausted { status: u16, attempts: u32 },
    #[error("the source answered HTTP {status}: {body}")]
    Rejected { status: u16, body: String },
    #[error("the source sent a malformed page: {0}")]
    Malformed(String),
}

pub struct Response {
    pub headers: reqwest::header::HeaderMap,
    pub body: serde_json::Value,
}

#[derive(Clone)]
pub struct SourceClient {
    http: reqwest::Client,
    max_retries: u32,
    base_backoff: Duration,
    max_backoff: Duration,
}

impl SourceClient {
    pub fn new(timeout: Duration, max_retries: u32) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent("smb-command/0.1")
            .build()
            .expect("http client builds");
        Self {
            http,
            max_retries,
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(20),
        }
    }

    /// Shorter backoffs, for tests.
    pub fn with_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.base_backoff = base;
        self.max_backoff = max;
        self
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let exp = self
            .base_backoff
            .saturating_mul(1 << attempt.min(16))
            .min(self.max_backoff);
        let jitter = rand::thread_rng().gen_range(0.5..1.0);
        exp.mul_f64(jitter)
    }

    /// GET `url` with `headers`, retrying per the policy above.
    pub async fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<Response, SourceError> {
        let mut attempt = 0;
        loop {
            let mut req = self.http.get(url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let outcome = req.send().await;
            let wait = match outcome {
                Ok(resp) => {
                    let status = resp.status();
                    if status.is_success() {
                        let headers = resp.headers().clone();
                        throttle_on_call_limit(&headers).await;
                        let body = resp
                            .json()
                            .await
                            .map_err(|e| SourceError::Malformed(e.to_string()))?;
                        return Ok(Response { headers, body });
                    }
                    let code = status.as_u16();
                    if code == 401 || code == 403 {
                        return Err(SourceError::Unauthorized(code));
                    }
                    let wait = if code == 429 {
                        retry_after(resp.headers()).unwrap_or(Duration::from_secs(1))
                    } else if status.is_server_error() {
                        self.backoff(attempt)
                    } else {
                        let body = resp.text().await.unwrap_or_default();
                        return Err(SourceError::Rejected {
                            status: code,
                            body: body.chars().take(300).collect(),
                        });
                    };
                    if attempt >= self.max_retries {
                        return Err(SourceError::Exhausted {
                            status: code,
                            attempts: attempt + 1,
                        });
                    }
                    wait
                }
                Err(e) if e.is_connect() && attempt == 0 => {
                    return Err(SourceError::Unreachable(host_of(url)));
                }
                Err(e) => {
                    if attempt >= self.max_retries {
                        tracing::warn!(error = %e, url = %host_of(url), "source request failed");
                        return Err(SourceError::Unreachable(host_of(url)));
                    }
                    self.backoff(attempt)
                }
            };
            attempt += 1;
            tracing::debug!(
                attempt,
                wait_ms = wait.as_millis() as u64,
                "source request retry"
            );
            tokio::time::sleep(wait).await;
        }
    }
}

fn host_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            })
        })
        .unwrap_or_else(|| "the configured URL".into())
}

fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    let secs: f64 = v.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(120.0)))
}

/// Shopify's `X-Shopify-Shop-Api-Call-Limit: used/size`: when the bucket is nearly full, pause for the
/// leak rate (2 calls/s) instead of running into 429s.
async fn throttle_on_call_limit(h: &reqwest::header::HeaderMap) {
    let Some((used, size)) = h
        .get("x-shopify-shop-api-call-limit")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once('/'))
        .and_then(|(a, b)| Some((a.trim().parse::<u32>().ok()?, b.trim().parse::<u32>().ok()?)))
    else {
        return;
    };
    if size > 0 && used + 4 >= size {
        tokio::time::sleep(Duration::from_millis(500 * u64::from(used + 4 - size + 1))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_parses_fractional_seconds() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "2.0".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn backoff_is_capped() {
        let c = SourceClient::new(Duration::from_secs(1), 3);
        assert!(c.backoff(30) <= Duration::from_secs(20));
        assert!(c.backoff(0) <= Duration::from_millis(200));
    }
}
