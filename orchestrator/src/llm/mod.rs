//! The language-model chain: `llm.primary`, then `llm.fallback`, then nothing — the caller's deterministic
//! answer is the last link and always there. Each provider call runs inside the question's deadline, with
//! retries (backoff with full jitter; a server's Retry-After is honoured when it fits the deadline) and a
//! per-provider circuit breaker. A reply the caller's validator rejects (malformed tool arguments, a number
//! the platform did not compute) counts as that provider's failure and the next link is tried.
//!
//! Invariants: a provider never sees customer names or e-mails unless `llm.share_customer_data` is set (the
//! callers build requests accordingly); usage is recorded per tenant, month, provider and model; a tenant
//! over its monthly budget gets no provider call.

pub mod anthropic;
pub mod openai;
pub mod tasks;

use std::sync::Mutex;
use std::time::{Duration, Instant};
use tracing::Instrument;

use chrono::Utc;
use rand::Rng;
use serde_json::Value as Json;
use smb_core::config::{LlmConfig, LlmProviderConfig};
use smb_core::ids::TenantId;
use smb_core::store::Db;
use smb_core::{Error, with_tenant};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

#[derive(Debug, Clone)]
pub struct Msg {
    pub role: Role,
    pub content: String,
}

/// A function the model must call, with a closed JSON schema for its arguments.
#[derive(Debug, Clone)]
pub struct Tool {
    pub name: &'static str,
    pub description: &'static str,
    pub schema: Json,
}

#[derive(Debug, Clone)]
pub struct LlmRequest {
    pub system: String,
    pub messages: Vec<Msg>,
    pub tool: Option<Tool>,
    pub max_tokens: u32,
}

#[derive(Debug, Clone, Default)]
pub struct LlmReply {
    pub text: String,
    /// The tool call's arguments as the model wrote them (not yet parsed).
    pub tool_args: Option<String>,
    pub tokens_in: u64,
    pub tokens_out: u64,
}

#[derive(Debug)]
pub enum LlmError {
    /// Worth another attempt (429, 5xx, connection failure), after `retry_after` if the server said.
    Retryable {
        msg: String,
        retry_after: Option<Duration>,
    },
    /// Not worth retrying at this provider (4xx, unreadable reply).
    Fatal(String),
    /// The deadline passed.
    Timeout,
    /// A stream broke after it had produced text.
    BrokenStream(String),
}

impl std::fmt::Display for LlmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Retryable { msg, .. } => write!(f, "retryable: {msg}"),
            Self::Fatal(m) => write!(f, "failed: {m}"),
            Self::Timeout => write!(f, "timed out"),
            Self::BrokenStream(m) => write!(f, "stream broke: {m}"),
        }
    }
}

/// One provider's wire format.
#[async_trait::async_trait]
pub trait Provider: Send + Sync {
    /// `openai` or `anthropic`.
    fn kind(&self) -> &'static str;
    fn model(&self) -> &str;
    /// One request (the adapter retries per [`Backoff`]); text deltas go to `deltas` as they arrive.
    async fn call(
        &self,
        req: &LlmRequest,
        deadline: Instant,
        deltas: Option<&mpsc::Sender<String>>,
    ) -> Result<LlmReply, LlmError>;
}

/// Retry delays for one call: exponential with full jitter, or the server's Retry-After; never past the
/// deadline.
#[derive(Debug, Clone)]
pub struct Backoff {
    pub attempt: u32,
    pub max_retries: u32,
    pub deadline: Instant,
}

impl Backoff {
    pub fn new(max_retries: u32, deadline: Instant) -> Self {
        Self {
            attempt: 0,
            max_retries,
            deadline,
        }
    }

    /// The wait before the next attempt, or `None` when there is none.
    pub fn next(&mut self, retry_after: Option<Duration>) -> Option<Duration> {
        if self.attempt >= self.max_retries {
            return None;
        }
        let cap = Duration::from_millis(100 * 2u64.pow(self.attempt.min(6)));
        let delay = retry_after.unwrap_or_else(|| {
            Duration::from_millis(rand::thread_rng().gen_range(0..=cap.as_millis() as u64))
        });
        self.attempt += 1;
        // A wait that would end past the deadline is no retry at all.
        (Instant::now() + delay + Duration::from_millis(20) < self.deadline).then_some(delay)
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    if let Ok(s) = v.trim().parse::<f64>() {
        return (s >= 0.0 && s.is_finite()).then(|| Duration::from_secs_f64(s.min(3600.0)));
    }
    let t = chrono::DateTime::parse_from_rfc2822(v.trim()).ok()?;
    let ms = (t.with_timezone(&Utc) - Utc::now())
        .num_milliseconds()
        .max(0);
    Some(Duration::from_millis(ms as u64))
}

/// Opens after `threshold` consecutive failures; while open the provider is skipped for `cooldown`, then
/// one call is let through (half-open) and its result decides.
#[derive(Debug)]
struct Breaker {
    threshold: u32,
    cooldown: Duration,
    state: Mutex<(u32, Option<Instant>)>,
}

impl Breaker {
    fn allows(&self) -> bool {
        let mut s = self.state.lock().expect("breaker");
        match s.1 {
            Some(until) if Instant::now() < until => false,
            Some(_) => {
                // Half-open: one trial; a failure re-opens it at once.
                s.1 = None;
                s.0 = self.threshold.saturating_sub(1);
                true
            }
            None => true,
        }
    }

    fn record(&self, ok: bool) {
        let mut s = self.state.lock().expect("breaker");
        if ok {
            *s = (0, None);
        } else {
            s.0 += 1;
            if s.0 >= self.threshold {
                s.1 = Some(Instant::now() + self.cooldown);
            }
        }
    }
}

struct Link {
    provider: Box<dyn Provider>,
    breaker: Breaker,
}

/// What a provider contributed to an answer (`result.llm`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct LlmInfo {
    pub provider: String,
    pub model: String,
    pub fallback_used: bool,
    pub tokens_in: u64,
    pub tokens_out: u64,
}

/// How a chain run ended.
pub enum Outcome<T> {
    Done(T, LlmInfo),
    /// The tenant has used its monthly tokens.
    OverBudget,
    /// Every link failed (or was open); `streamed` says text reached the caller before the failure.
    Failed {
        streamed: bool,
    },
}

pub struct Chain {
    links: Vec<Link>,
    db: Db,
    pub timeout: Duration,
    max_retries: u32,
    budget: u64,
    pub share_customer_data: bool,
}

pub fn provider(p: &LlmProviderConfig, max_retries: u32) -> anyhow::Result<Box<dyn Provider>> {
    use secrecy::ExposeSecret;
    let key = p.api_key.as_ref().map(|k| k.expose_secret().to_string());
    Ok(match p.kind.as_str() {
        "openai" => Box::new(openai::OpenAi::new(
            p.base_url.as_deref().unwrap_or("https://api.openai.com/v1"),
            key,
            &p.model,
            max_retries,
        )?),
        "anthropic" => Box::new(anthropic::Anthropic::new(
            p.base_url.as_deref().unwrap_or("https://api.anthropic.com"),
            key,
            &p.model,
            max_retries,
        )?),
        other => {
            anyhow::bail!("llm provider kind must be \"openai\" or \"anthropic\", not {other:?}")
        }
    })
}

impl Chain {
    /// The configured chain, or `None` when no provider is configured.
    pub fn from_config(cfg: &LlmConfig, db: Db) -> anyhow::Result<Option<Self>> {
        let mut providers = Vec::new();
        for (name, p) in [
            ("llm.primary", &cfg.primary),
            ("llm.fallback", &cfg.fallback),
        ] {
            if let Some(p) = p {
                providers.push(
                    provider(p, cfg.max_retries).map_err(|e| anyhow::anyhow!("{name}: {e}"))?,
                );
            }
        }
        if providers.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self::new(providers, cfg, db)))
    }

    pub fn new(providers: Vec<Box<dyn Provider>>, cfg: &LlmConfig, db: Db) -> Self {
        Self {
            links: providers
                .into_iter()
                .map(|provider| Link {
                    provider,
                    breaker: Breaker {
                        threshold: cfg.breaker_failures.max(1),
                        cooldown: Duration::from_millis(cfg.cooldown_ms),
                        state: Mutex::new((0, None)),
                    },
                })
                .collect(),
            db,
            timeout: Duration::from_millis(cfg.timeout_ms),
            max_retries: cfg.max_retries,
            budget: cfg.monthly_token_budget,
            share_customer_data: cfg.share_customer_data,
        }
    }

    pub fn max_retries(&self) -> u32 {
        self.max_retries
    }

    fn month() -> String {
        Utc::now().format("%Y-%m").to_string()
    }

    /// Tokens (in + out) the tenant used this month.
    pub async fn used(&self, tenant: &TenantId) -> Result<u64, Error> {
        let (n,): (Option<i64>,) = with_tenant!(&self.db, tenant, read, |tx| {
            sqlx::query_as(
                "SELECT SUM(tokens_in + tokens_out) FROM llm_usage WHERE tenant_id = $1 AND month = $2",
            )
            .bind(tenant.as_str())
            .bind(Self::month())
            .fetch_one(&mut *tx)
            .await?
        });
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    async fn record(&self, tenant: &TenantId, p: &dyn Provider, r: &LlmReply) -> Result<(), Error> {
        with_tenant!(&self.db, tenant, write, |tx| {
            sqlx::query(
                "INSERT INTO llm_usage (tenant_id, month, provider, model, calls, tokens_in, tokens_out) VALUES ($1, $2, $3, $4, 1, $5, $6) \
                 ON CONFLICT (tenant_id, month, provider, model) DO UPDATE SET calls = llm_usage.calls + 1, \
                 tokens_in = llm_usage.tokens_in + excluded.tokens_in, tokens_out = llm_usage.tokens_out + excluded.tokens_out",
            )
            .bind(tenant.as_str())
            .bind(Self::month())
            .bind(p.kind())
            .bind(p.model())
            .bind(r.tokens_in as i64)
            .bind(r.tokens_out as i64)
            .execute(&mut *tx)
            .await?;
        });
        Ok(())
    }

    /// Runs `req` down the chain until a reply passes `validate`, all before `deadline`. Text deltas go to
    /// `deltas` (streaming); a link that fails before its first delta hands over to the next.
    pub async fn run<T>(
        &self,
        tenant: &TenantId,
        req: &LlmRequest,
        deadline: Instant,
        deltas: Option<&mpsc::Sender<String>>,
        validate: impl Fn(&LlmReply) -> Result<T, String>,
    ) -> Outcome<T> {
        if self.budget > 0 {
            match self.used(tenant).await {
                Ok(n) if n >= self.budget => {
                    ::metrics::counter!("smb_llm_fallbacks_total", "to" => "over_budget")
                        .increment(1);
                    return Outcome::OverBudget;
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "LLM usage not read; going on"),
            }
        }
        let mut streamed = false;
        for (i, link) in self.links.iter().enumerate() {
            if Instant::now() >= deadline {
                break;
            }
            if !link.breaker.allows() {
                tracing::debug!(provider = link.provider.kind(), "circuit open; skipped");
                continue;
            }
            // Deltas pass through a relay that notes whether any reached the caller.
            let (relay_tx, mut relay_rx) = mpsc::channel::<String>(64);
            let forward = async {
                let mut any = false;
                while let Some(d) = relay_rx.recv().await {
                    any = true;
                    if let Some(out) = deltas {
                        let _ = out.send(d).await;
                    }
                }
                any
            };
            let call = async {
                let r = tokio::time::timeout_at(
                    deadline.into(),
                    link.provider
                        .call(req, deadline, deltas.is_some().then_some(&relay_tx)),
                )
                .await
                .unwrap_or(Err(LlmError::Timeout));
                drop(relay_tx);
                r
            };
            let span = tracing::info_span!(
                "llm",
                provider = link.provider.kind(),
                model = link.provider.model()
            );
            let (result, any) = tokio::join!(call.instrument(span), forward);
            streamed |= any;
            let provider = link.provider.kind();
            match result {
                Ok(reply) => {
                    if let Err(e) = self.record(tenant, link.provider.as_ref(), &reply).await {
                        tracing::warn!(error = %e, "LLM usage not recorded");
                    }
                    ::metrics::counter!("smb_llm_tokens_total", "provider" => provider, "direction" => "in")
                        .increment(reply.tokens_in);
                    ::metrics::counter!("smb_llm_tokens_total", "provider" => provider, "direction" => "out")
                        .increment(reply.tokens_out);
                    let valid = validate(&reply);
                    ::metrics::counter!("smb_llm_calls_total", "provider" => provider, "outcome" => if valid.is_ok() { "ok" } else { "rejected" })
                        .increment(1);
                    match valid {
                        Ok(v) => {
                            if i > 0 {
                                ::metrics::counter!("smb_llm_fallbacks_total", "to" => "provider")
                                    .increment(1);
                            }
                            link.breaker.record(true);
                            return Outcome::Done(
                                v,
                                LlmInfo {
                                    provider: link.provider.kind().to_string(),
                                    model: link.provider.model().to_string(),
                                    fallback_used: i > 0,
                                    tokens_in: reply.tokens_in,
                                    tokens_out: reply.tokens_out,
                                },
                            );
                        }
                        Err(why) => {
                            tracing::info!(
                                provider = link.provider.kind(),
                                why,
                                "LLM reply rejected"
                            );
                            link.breaker.record(false);
                            if any {
                                ::metrics::counter!("smb_llm_fallbacks_total", "to" => "deterministic")
                                    .increment(1);
                                return Outcome::Failed { streamed: true };
                            }
                        }
                    }
                }
                Err(e) => {
                    ::metrics::counter!("smb_llm_calls_total", "provider" => provider, "outcome" => "error")
                        .increment(1);
                    tracing::info!(provider = link.provider.kind(), error = %e, "LLM call failed");
                    link.breaker.record(false);
                    // Text already shown cannot be taken back by another provider's text.
                    if any {
                        ::metrics::counter!("smb_llm_fallbacks_total", "to" => "deterministic")
                            .increment(1);
                        return Outcome::Failed { streamed: true };
                    }
                }
            }
        }
        ::metrics::counter!("smb_llm_fallbacks_total", "to" => "deterministic").increment(1);
        Outcome::Failed { streamed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_respects_deadline_and_retry_after() {
        let mut b = Backoff::new(3, Instant::now() + Duration::from_secs(5));
        assert_eq!(
            b.next(Some(Duration::from_secs(1))),
            Some(Duration::from_secs(1))
        );
        assert!(b.next(None).unwrap() <= Duration::from_millis(200));
        assert_eq!(
            b.next(Some(Duration::from_secs(10))),
            None,
            "past the deadline"
        );
        let mut b = Backoff::new(0, Instant::now() + Duration::from_secs(5));
        assert_eq!(b.next(None), None);
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn breaker_opens_and_half_opens() {
        let b = Breaker {
            threshold: 2,
            cooldown: Duration::from_millis(30),
            state: Mutex::new((0, None)),
        };
        b.record(false);
        assert!(b.allows());
        b.record(false);
        assert!(!b.allows());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allows(), "half-open after the cooldown");
        b.record(false);
        assert!(!b.allows(), "one more failure re-opens it");
    }
}
