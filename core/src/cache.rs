//! The cache port (answers, sessions, rate-limit counters). Adapters: in-process and Redis (fred).
//! Keys are built only by [`keys`], exactly as the design brief names them; each adapter puts its
//! configured prefix in front, so tests and deployments can share one Redis without touching each other.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Mutex;

use crate::error::{Error, Result};

#[async_trait]
pub trait Cache: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<String>>;
    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()>;
    async fn del(&self, key: &str) -> Result<()>;
    /// Increments a counter in a fixed window starting at its first increment. Returns the new count and
    /// the seconds left in the window.
    async fn incr_window(&self, key: &str, window: Duration) -> Result<(u64, u64)>;
    /// Increments a counter that never expires (data versions). Returns the new value.
    async fn incr(&self, key: &str) -> Result<u64>;
    async fn ping(&self) -> bool;
}

pub type DynCache = Arc<dyn Cache>;

/// Cache keys, exactly as in the design brief.
pub mod keys {
    use crate::ids::{SessionId, TenantId};

    pub fn session(session: &SessionId) -> String {
        format!("session:{session}")
    }
    /// A conversation's recent turns (1 h), under the tenant so no other tenant can continue it.
    pub fn conversation(tenant: &TenantId, conversation: &str) -> String {
        format!("session:{tenant}:conversation:{conversation}")
    }
    pub fn rate_limit(tenant: &str, user: &str, endpoint: &str) -> String {
        format!("ratelimit:{tenant}:{user}:{endpoint}")
    }
    pub fn query(tenant: &TenantId, hash: &str) -> String {
        format!("cache:query:{tenant}:{hash}")
    }
    /// Bumped whenever a tenant's data changes; part of every answer's cache hash, so a bump invalidates
    /// all of the tenant's cached answers at once.
    pub fn data_version(tenant: &TenantId) -> String {
        format!("dataversion:{tenant}")
    }
    pub fn login_failures_account(email_hash: &str) -> String {
        format!("ratelimit:login:account:{email_hash}")
    }
    pub fn login_failures_addr(addr: &str) -> String {
        format!("ratelimit:login:addr:{addr}")
    }
}

/// Connects the configured adapter: `memory`, or a `redis://` URL.
pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<DynCache> {
    if url == "memory" || url.is_empty() {
        Ok(Arc::new(MemoryCache::new(prefix)))
    } else if url.starts_with("redis://") || url.starts_with("rediss://") {
        Ok(Arc::new(RedisCache::connect(url, prefix).await?))
    } else {
        anyhow::bail!("cache.url must be \"memory\" or a redis:// URL")
    }
}

/// In-process adapter: a map with expiry times, swept as it grows.
pub struct MemoryCache {
    prefix: String,
    map: Mutex<HashMap<String, (String, Option<Instant>)>>,
}

impl MemoryCache {
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
            map: Mutex::new(HashMap::new()),
        }
    }
    fn k(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

fn live(e: &(String, Option<Instant>), now: Instant) -> bool {
    e.1.is_none_or(|t| t > now)
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        let now = Instant::now();
        let map = self.map.lock().await;
        Ok(map
            .get(&self.k(key))
            .filter(|e| live(e, now))
            .map(|e| e.0.clone()))
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        let now = Instant::now();
        let mut map = self.map.lock().await;
        if map.len() > 100_000 {
            map.retain(|_, e| live(e, now));
        }
        map.insert(self.k(key), (value.to_string(), Some(now + ttl)));
        Ok(())
    }

    async fn del(&self, key: &str) -> Result<()> {
        self.map.lock().await.remove(&self.k(key));
        Ok(())
    }

    async fn incr_window(&self, key: &str, window: Duration) -> Result<(u64, u64)> {
        let now = Instant::now();
        let mut map = self.map.lock().await;
        let e = map
            .entry(self.k(key))
            .or_insert_with(|| ("0".into(), Some(now + window)));
        if !live(e, now) {
            *e = ("0".into(), Some(now + window));
        }
        let n = e.0.parse::<u64>().unwrap_or(0) + 1;
        e.0 = n.to_string();
        let left = e.1.map_or(0, |t| {
            t.saturating_duration_since(now).as_secs_f64().ceil() as u64
        });
        Ok((n, left.max(1)))
    }

    async fn incr(&self, key: &str) -> Result<u64> {
        let mut map = self.map.lock().await;
        let e = map.entry(self.k(key)).or_insert_with(|| ("0".into(), None));
        let n = e.0.parse::<u64>().unwrap_or(0) + 1;
        e.0 = n.to_string();
        Ok(n)
    }

    async fn ping(&self) -> bool {
        true
    }
}

/// Redis adapter (fred).
pub struct RedisCache {
    prefix: String,
    client: fred::clients::Client,
}

impl RedisCache {
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        use fred::prelude::*;
        let config = Config::from_url(url)?;
        let client = Builder::from_config(config)
            .with_connection_config(|c| c.connection_timeout = Duration::from_secs(5))
            .build()?;
        client.init().await?;
        Ok(Self {
            prefix: prefix.to_string(),
            client,
        })
    }
    fn k(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

fn redis_err(e: fred::error::Error) -> Error {
    Error::internal("redis", e)
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        use fred::prelude::*;
        self.client
            .get::<Option<String>, _>(self.k(key))
            .await
            .map_err(redis_err)
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        use fred::prelude::*;
        let ms = ttl.as_millis().max(1) as i64;
        self.client
            .set::<(), _, _>(self.k(key), value, Some(Expiration::PX(ms)), None, false)
            .await
            .map_err(redis_err)
    }

    async fn del(&self, key: &str) -> Result<()> {
        use fred::prelude::*;
        self.client
            .del::<i64, _>(self.k(key))
            .await
            .map(|_| ())
            .map_err(redis_err)
    }

    async fn incr_window(&self, key: &str, window: Duration) -> Result<(u64, u64)> {
        use fred::prelude::*;
        let k = self.k(key);
        let pipe = self.client.pipeline();
        let _: () = pipe.incr(&k).await.map_err(redis_err)?;
        let _: () = pipe
            .expire(
                &k,
                window.as_secs().max(1) as i64,
                Some(fred::types::ExpireOptions::NX),
            )
            .await
            .map_err(redis_err)?;
        let _: () = pipe.ttl(&k).await.map_err(redis_err)?;
        let (n, _, ttl): (i64, i64, i64) = pipe.all().await.map_err(redis_err)?;
        Ok((n.max(0) as u64, ttl.max(1) as u64))
    }

    async fn incr(&self, key: &str) -> Result<u64> {
        use fred::prelude::*;
        let n: i64 = self.client.incr(self.k(key)).await.map_err(redis_err)?;
        Ok(n.max(0) as u64)
    }

    async fn ping(&self) -> bool {
        use fred::prelude::*;
        self.client.ping::<String>(None).await.is_ok()
    }
}

/// The cache contract suite, run against every adapter (see the tests below and in `tests/`).
pub mod contract {
    use super::*;

    pub async fn run_all(cache: &dyn Cache) {
        get_set_del(cache).await;
        expiry(cache).await;
        windows(cache).await;
        counters(cache).await;
    }

    async fn get_set_del(c: &dyn Cache) {
        assert_eq!(c.get("cache:query:t:missing").await.unwrap(), None);
        c.set("cache:query:t:a", "1", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            c.get("cache:query:t:a").await.unwrap().as_deref(),
            Some("1")
        );
        c.set("cache:query:t:a", "2", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(
            c.get("cache:query:t:a").await.unwrap().as_deref(),
            Some("2")
        );
        c.del("cache:query:t:a").await.unwrap();
        assert_eq!(c.get("cache:query:t:a").await.unwrap(), None);
        c.del("cache:query:t:a").await.unwrap();
    }

    async fn expiry(c: &dyn Cache) {
        c.set("session:x", "v", Duration::from_millis(150))
            .await
            .unwrap();
        assert!(c.get("session:x").await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(c.get("session:x").await.unwrap(), None);
    }

    async fn windows(c: &dyn Cache) {
        let k = "ratelimit:t:u:e";
        for i in 1..=3 {
            let (n, left) = c.incr_window(k, Duration::from_secs(1)).await.unwrap();
            assert_eq!(n, i);
            assert!((1..=1).contains(&left), "left {left}");
        }
        tokio::time::sleep(Duration::from_millis(1300)).await;
        assert_eq!(c.incr_window(k, Duration::from_secs(1)).await.unwrap().0, 1);
    }

    async fn counters(c: &dyn Cache) {
        assert_eq!(c.incr("dataversion:t").await.unwrap(), 1);
        assert_eq!(c.incr("dataversion:t").await.unwrap(), 2);
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_adapter_meets_the_contract() {
        super::contract::run_all(&super::MemoryCache::new("t:")).await;
    }
}
