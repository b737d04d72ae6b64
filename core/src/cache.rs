//! The cache port (answers, sessions, rate-limit counters). Adapters: in-process and Redis (fred).
//! Keys are built only by [`keys`], exactly as the design brief names them; each adapter puts its
//! configured prefix in front, so tests and deployments can share one Redis without touching each other.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

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

/// The in-process adapter's bound: entries are weighed by their bytes plus an allowance for bookkeeping,
/// and the least useful go first (moka's TinyLFU) when the total would pass this.
pub const MEMORY_MAX_BYTES: u64 = 12 * 1024 * 1024;

/// Bookkeeping per entry counted into its weight (map slot, access and write deques, the expiry timer, the
/// key's `Arc`). Measured: 200,000 rate-limit windows (UUID keys) left 23,258 entries weighing 12 MB and
/// grew the process's RSS by 12 MB, so the bound holds in real memory. Through `smb up`, 200,000 webhook
/// deliveries to unknown UUID-shaped ids grew RSS by 34 MB with 160 here and by 16 MB with 480.
const ENTRY_OVERHEAD: usize = 480;

#[derive(Clone)]
struct Slot {
    value: String,
    expires: Instant,
}

/// Each entry lives until its own deadline.
struct ByDeadline;

impl moka::Expiry<String, Slot> for ByDeadline {
    fn expire_after_create(&self, _: &String, v: &Slot, now: Instant) -> Option<Duration> {
        Some(v.expires.saturating_duration_since(now))
    }
    fn expire_after_update(
        &self,
        _: &String,
        v: &Slot,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.expires.saturating_duration_since(now))
    }
}

/// In-process adapter: a bounded cache (moka) with per-entry expiry for everything that expires, and a
/// plain map for the counters without expiry (data versions: one per tenant, never evicted, since losing
/// one could bring back answers of older data).
pub struct MemoryCache {
    prefix: String,
    values: moka::sync::Cache<String, Slot>,
    counters: std::sync::Mutex<HashMap<String, u64>>,
}

impl MemoryCache {
    pub fn new(prefix: &str) -> Self {
        Self::with_max_bytes(prefix, MEMORY_MAX_BYTES)
    }

    pub fn with_max_bytes(prefix: &str, max_bytes: u64) -> Self {
        Self {
            prefix: prefix.to_string(),
            values: moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|k: &String, v: &Slot| {
                    u32::try_from(k.len() + v.value.len() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
                })
                .expire_after(ByDeadline)
                .build(),
            counters: std::sync::Mutex::new(HashMap::new()),
        }
    }
    fn k(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<String>> {
        let k = self.k(key);
        let now = Instant::now();
        if let Some(s) = self.values.get(&k).filter(|s| s.expires > now) {
            return Ok(Some(s.value));
        }
        Ok(self
            .counters
            .lock()
            .expect("counters")
            .get(&k)
            .map(u64::to_string))
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<()> {
        self.values.insert(
            self.k(key),
            Slot {
                value: value.to_string(),
                expires: Instant::now() + ttl,
            },
        );
        Ok(())
    }

    async fn del(&self, key: &str) -> Result<()> {
        let k = self.k(key);
        self.values.invalidate(&k);
        self.counters.lock().expect("counters").remove(&k);
        Ok(())
    }

    async fn incr_window(&self, key: &str, window: Duration) -> Result<(u64, u64)> {
        use moka::ops::compute::{CompResult, Op};
        let now = Instant::now();
        // One key's increments are serialised by moka's key-level lock.
        let r = self.values.entry(self.k(key)).and_compute_with(|e| {
            let (n, expires) = match e.map(|e| e.into_value()) {
                Some(s) if s.expires > now => (s.value.parse::<u64>().unwrap_or(0) + 1, s.expires),
                _ => (1, now + window),
            };
            Op::Put(Slot {
                value: n.to_string(),
                expires,
            })
        });
        let slot = match r {
            CompResult::Inserted(e) | CompResult::ReplacedWith(e) | CompResult::Unchanged(e) => {
                e.into_value()
            }
            _ => {
                return Err(Error::internal("memory cache", "counter not stored"));
            }
        };
        let n = slot.value.parse::<u64>().unwrap_or(1);
        let left = slot
            .expires
            .saturating_duration_since(now)
            .as_secs_f64()
            .ceil() as u64;
        Ok((n, left.max(1)))
    }

    async fn incr(&self, key: &str) -> Result<u64> {
        let mut map = self.counters.lock().expect("counters");
        let n = map.entry(self.k(key)).or_insert(0);
        *n += 1;
        Ok(*n)
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
        // A lost connection is re-established for as long as it takes (100 ms doubling to 2 s between
        // attempts), and a command waits at most 2 s: while Redis is away requests fail fast with
        // `unavailable` (and health says NOT_SERVING) instead of hanging, and recover on their own.
        let client = Builder::from_config(config)
            .with_connection_config(|c| c.connection_timeout = Duration::from_secs(5))
            .with_performance_config(|p| p.default_command_timeout = Duration::from_secs(2))
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
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
    use super::*;

    #[tokio::test]
    async fn memory_cache_is_bounded() {
        let c = MemoryCache::with_max_bytes("", 256 * 1024);
        for i in 0..50_000 {
            c.incr_window(
                &format!("ratelimit:webhook:{i}:webhooks"),
                Duration::from_secs(60),
            )
            .await
            .unwrap();
        }
        c.values.run_pending_tasks();
        let weight = c.values.weighted_size();
        assert!(weight <= 256 * 1024, "weighted size {weight}");
        assert!(c.values.entry_count() < 2_000, "{}", c.values.entry_count());
        // Counters without expiry (data versions) are never evicted.
        c.incr("dataversion:t").await.unwrap();
        assert_eq!(c.get("dataversion:t").await.unwrap().as_deref(), Some("1"));
    }

    #[tokio::test]
    async fn memory_adapter_meets_the_contract() {
        super::contract::run_all(&super::MemoryCache::new("t:")).await;
    }
}
