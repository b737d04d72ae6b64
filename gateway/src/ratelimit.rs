//! Fixed one-minute windows per tenant, user and endpoint (`ratelimit:{tenant}:{user}:{endpoint}`), with
//! per-endpoint limits from configuration. Over the limit: `429` with `Retry-After`.

use std::collections::BTreeMap;
use std::time::Duration;

use smb_core::Error;
use smb_core::cache::{DynCache, keys};

const WINDOW: Duration = Duration::from_secs(60);

pub struct RateLimiter {
    cache: DynCache,
    default_limit: u64,
    limits: BTreeMap<String, u64>,
    public_limit: u64,
}

/// Default webhook deliveries per minute per connector (`gateway.rate_limits.webhooks` overrides).
pub const WEBHOOK_LIMIT: u64 = 60_000;

impl RateLimiter {
    pub fn new(
        cache: DynCache,
        default_limit: u64,
        limits: BTreeMap<String, u64>,
        public_limit: u64,
    ) -> Self {
        Self {
            cache,
            default_limit,
            limits,
            public_limit,
        }
    }

    /// Counts one request of `user` of `tenant` to `endpoint`.
    pub async fn check(&self, tenant: &str, user: &str, endpoint: &str) -> Result<(), Error> {
        let limit = self
            .limits
            .get(endpoint)
            .copied()
            .unwrap_or(self.default_limit);
        self.hit(&keys::rate_limit(tenant, user, endpoint), limit)
            .await
    }

    /// Counts one unauthenticated request from a client address (signup, login, refresh).
    pub async fn check_public(&self, addr: &str, endpoint: &str) -> Result<(), Error> {
        let limit = self
            .limits
            .get(endpoint)
            .copied()
            .unwrap_or(self.public_limit);
        self.hit(&keys::rate_limit("public", addr, endpoint), limit)
            .await
    }

    /// Counts one webhook delivery to a connector (sources send from few addresses, in bursts).
    pub async fn check_webhook(&self, connector: &str) -> Result<(), Error> {
        let limit = self
            .limits
            .get("webhooks")
            .copied()
            .unwrap_or(WEBHOOK_LIMIT);
        self.hit(&keys::rate_limit("webhook", connector, "webhooks"), limit)
            .await
    }

    async fn hit(&self, key: &str, limit: u64) -> Result<(), Error> {
        let (count, left) = self.cache.incr_window(key, WINDOW).await?;
        if count > limit {
            Err(Error::rate_limited(left))
        } else {
            Ok(())
        }
    }
}
