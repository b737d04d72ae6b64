//! HTTP towards sources, with the retry policy every source shares: `429` waits for `Retry-After` (or a
//! second), `5xx` and timeouts back off exponentially with jitter up to a cap, `401/403` fail at once with
//! a message the owner can act on. Shopify's call-limit header slows us down before the bucket is full.
//!
//! Egress is guarded: a source URL is a user's input, so unless `connectors.allow_private_networks` is set,
//! a request may only reach public addresses — checked on the URL's IP literal, on every address a host name
//! resolves to (our resolver drops private ones), and on every redirect. Reply bodies are capped, and a
//! source's error body is logged, never returned.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

/// Largest reply body read from a source (a page of 250 Shopify orders is a few MB).
pub const MAX_BODY: usize = 32 * 1024 * 1024;

/// Whether `ip` is on the public internet (not loopback, private, link-local — cloud metadata included —,
/// carrier-grade NAT, multicast, unspecified, reserved or documentation ranges).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            !(a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_multicast()
                || a.is_documentation()
                || o[0] == 0
                || o[0] >= 240
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18))
        }
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s0 = a.segments()[0];
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s0 & 0xfe00) == 0xfc00
                || (s0 & 0xffc0) == 0xfe80
                || s0 == 0x2001 && a.segments()[1] == 0x0db8)
        }
    }
}

/// The reason a request was not made: the target is not a public address.
#[derive(Debug)]
struct Blocked(String);

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is not a public address", self.0)
    }
}

impl std::error::Error for Blocked {}

/// Resolves host names to their public addresses only.
struct PublicResolver;

impl reqwest::dns::Resolve for PublicResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_string();
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = all.into_iter().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(Box::new(Blocked(host)) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The URL's host when it is an IP literal that is not public.
fn private_literal(url: &reqwest::Url) -> Option<String> {
    match url.host()? {
        url::Host::Ipv4(a) if !is_public(IpAddr::V4(a)) => Some(a.to_string()),
        url::Host::Ipv6(a) if !is_public(IpAddr::V6(a)) => Some(a.to_string()),
        url::Host::Domain(d)
            if d.eq_ignore_ascii_case("localhost") || d.ends_with(".localhost") =>
        {
            Some(d.to_string())
        }
        _ => None,
    }
}

fn blocked_in(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(b) = err.downcast_ref::<Blocked>() {
            return Some(b.0.clone());
        }
        cur = err.source();
    }
    None
}

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
    #[error("the source answered HTTP {status}; check the URL and the account's permissions")]
    Rejected { status: u16 },
    #[error(
        "refused to connect to {0}: it is a private or local network address, and a source must be reachable on the public internet"
    )]
    Blocked(String),
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
    allow_private: bool,
}

impl SourceClient {
    /// `allow_private`: reach private and local addresses too (`connectors.allow_private_networks`; for
    /// sources on the operator's own network, and the test fakes on loopback).
    pub fn new(timeout: Duration, max_retries: u32, allow_private: bool) -> Self {
        let mut b = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent("smb-command/0.1");
        if !allow_private {
            b = b.dns_resolver(Arc::new(PublicResolver)).redirect(
                reqwest::redirect::Policy::custom(|attempt| {
                    if let Some(h) = private_literal(attempt.url()) {
                        attempt.error(Blocked(h))
                    } else if attempt.previous().len() >= 5 {
                        attempt.stop()
                    } else {
                        attempt.follow()
                    }
                }),
            );
        }
        let http = b.build().expect("http client builds");
        Self {
            http,
            max_retries,
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(20),
            allow_private,
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
        if !self.allow_private
            && let Some(h) = reqwest::Url::parse(url)
                .ok()
                .as_ref()
                .and_then(private_literal)
        {
            return Err(SourceError::Blocked(h));
        }
        self.send(url, headers).await
    }

    /// [`SourceClient::get`] after the first hop's check: retries, redirects (each checked by the policy),
    /// the capped body.
    async fn send(&self, url: &str, headers: &[(&str, &str)]) -> Result<Response, SourceError> {
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
                        let body = read_capped(resp).await?;
                        let body = serde_json::from_slice(&body)
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
                        // The body is the remote's words: logged (shortened), never shown to the user.
                        let body = read_capped(resp).await.unwrap_or_default();
                        tracing::info!(
                            status = code,
                            host = %host_of(url),
                            body = %String::from_utf8_lossy(&body[..body.len().min(300)]),
                            "source rejected a request"
                        );
                        return Err(SourceError::Rejected { status: code });
                    };
                    if attempt >= self.max_retries {
                        return Err(SourceError::Exhausted {
                            status: code,
                            attempts: attempt + 1,
                        });
                    }
                    wait
                }
                Err(e) if blocked_in(&e).is_some() => {
                    return Err(SourceError::Blocked(
                        blocked_in(&e).unwrap_or_else(|| host_of(url)),
                    ));
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

/// The body, up to [`MAX_BODY`] bytes.
async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, SourceError> {
    if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(SourceError::Malformed(format!(
            "the reply is larger than {} MB",
            MAX_BODY / (1024 * 1024)
        )));
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| SourceError::Malformed(e.to_string()))?
    {
        if out.len() + chunk.len() > MAX_BODY {
            return Err(SourceError::Malformed(format!(
                "the reply is larger than {} MB",
                MAX_BODY / (1024 * 1024)
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
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
    fn only_public_addresses_are_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "151.101.1.1", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn private_targets_are_refused_before_any_request() {
        let c = SourceClient::new(Duration::from_secs(2), 0, false);
        for url in [
            "http://127.0.0.1:9/admin/api/orders.json",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]:9/x",
            "http://localhost:9/x",
        ] {
            match c.get(url, &[]).await {
                Err(SourceError::Blocked(_)) => {}
                Err(other) => panic!("{url}: {other}"),
                Ok(_) => panic!("{url}: reached"),
            }
        }
    }

    /// A public first hop that redirects to a private or local address is refused at the redirect: the
    /// policy checks every hop, not only the URL the user gave.
    #[tokio::test]
    async fn redirects_to_private_targets_are_refused() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let served = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = served.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = l.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = vec![0u8; 4096];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let to = match req.split_whitespace().nth(1).unwrap_or("/") {
                    "/metadata" => "http://169.254.169.254/latest/meta-data/".to_string(),
                    "/localhost" => "http://localhost:9/x".to_string(),
                    "/ten" => "http://10.1.2.3/x".to_string(),
                    _ => format!("http://127.0.0.1:{port}/metadata"),
                };
                let reply = format!(
                    "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
                let _ = sock.write_all(reply.as_bytes()).await;
            }
        });
        let c = SourceClient::new(Duration::from_secs(2), 0, false);
        for (path, target) in [
            ("/metadata", "169.254.169.254"),
            ("/localhost", "localhost"),
            ("/ten", "10.1.2.3"),
            ("/loop", "127.0.0.1"),
        ] {
            let url = format!("http://127.0.0.1:{port}{path}");
            match c.send(&url, &[]).await {
                Err(SourceError::Blocked(h)) => assert_eq!(h, target, "{path}"),
                Err(other) => panic!("{path}: {other}"),
                Ok(_) => panic!("{path}: followed"),
            }
        }
        // Each first hop was served once, and no redirect reached the loopback server again.
        assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 4);
    }

    #[test]
    fn backoff_is_capped() {
        let c = SourceClient::new(Duration::from_secs(1), 3, false);
        assert!(c.backoff(30) <= Duration::from_secs(20));
        assert!(c.backoff(0) <= Duration::from_millis(200));
    }
}
