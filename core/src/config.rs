//! Configuration is a pure function of an optional TOML file and an environment map: file values first,
//! then `SMB_SECTION__KEY` variables over them. Unknown keys are rejected, every error is reported at once,
//! and secrets are `SecretString`s that never reach a log.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;

/// Environment variables that configure the process but are not configuration keys.
const RESERVED_ENV: &[&str] = &["SMB_CONFIG", "SMB_LOG", "SMB_LOG_FORMAT"];

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub cache: CacheConfig,
    pub auth: AuthConfig,
    pub gateway: GatewayConfig,
    pub connectors: ConnectorsConfig,
    pub orchestrator: OrchestratorConfig,
    pub services: ServicesConfig,
    pub bus: BusConfig,
    pub search: SearchConfig,
    pub llm: LlmConfig,
    pub email: EmailConfig,
    pub actions: ActionsConfig,
    pub telemetry: TelemetryConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// After SIGTERM or Ctrl-C, how long in-flight work (sync runs, a bus batch) may take to finish.
    pub shutdown_grace_secs: u64,
    /// Address the service listens on.
    pub addr: String,
    /// Directory for embedded state (SQLite file, signing keys, encryption key).
    pub data_dir: PathBuf,
    /// `smb serve`: where `/metrics`, `/healthz` and `/readyz` are served over HTTP (unset: nowhere; the
    /// gateway and `smb up` serve them on their own port).
    pub admin_addr: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` or `postgres://USER@HOST/DB`. Empty means SQLite in the data directory. The
    /// PostgreSQL user must not be a superuser, so that row-level security applies to it.
    pub url: Option<SecretString>,
    /// PostgreSQL only: a URL with the rights to run migrations (owner of the schema). Defaults to `url`.
    pub migrate_url: Option<SecretString>,
    pub max_connections: u32,
    /// SQLite only: the page cache of the whole pool in MiB, split evenly over its connections (each
    /// connection keeps its own cache). Reads of the first 2 GiB of the file go through a memory map instead,
    /// shared by every connection.
    pub sqlite_cache_mib: u32,
    /// PostgreSQL roles granted everything but writes to the identity tables (tenants, users, sessions,
    /// refresh tokens) when a process migrates: give the orchestrator, connectors and workers each one of
    /// these as their `database.url` user, and no `migrate_url`. The roles must exist.
    pub restricted_roles: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// `memory` or `redis://HOST:PORT`.
    pub url: SecretString,
    /// Prefix put before every key (lets several deployments or tests share one Redis).
    pub key_prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub issuer: String,
    pub audience: String,
    pub access_ttl_secs: u64,
    pub refresh_ttl_days: u64,
    /// Distributed deployments: Ed25519 private keys in PKCS#8 PEM, newest (signing) first. The others stay
    /// in the JWKS so tokens they signed verify until they expire. Embedded: keys live in the data directory.
    pub signing_keys: Vec<SigningKeyConfig>,
    /// Failed logins allowed per account, and per client address, in `lockout_window_secs`.
    pub max_failures_per_account: u64,
    pub max_failures_per_addr: u64,
    pub lockout_window_secs: u64,
    /// How long the gateway uses a fetched JWKS before reading it again (a removed key stops being trusted
    /// within this time).
    pub jwks_refresh_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyConfig {
    pub kid: String,
    pub private_key_pem: SecretString,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    pub body_limit_bytes: usize,
    /// After a body goes over its limit, how much more is read and discarded (and for how long) before the
    /// `413` is sent, so that a client still writing can read it instead of a connection reset.
    pub drain_limit_bytes: usize,
    pub drain_timeout_ms: u64,
    /// Requests per minute per tenant, user and endpoint, unless `rate_limits` names the endpoint.
    pub default_rate_limit: u64,
    /// Per-endpoint limits, e.g. `"ai.query" = 60`.
    pub rate_limits: BTreeMap<String, u64>,
    /// Requests per minute per client address on the unauthenticated auth routes.
    pub public_rate_limit: u64,
    /// Proxies (IP addresses or CIDR ranges) whose `X-Forwarded-For` names the client; from anyone else the
    /// header is ignored and the peer address is the client.
    pub trusted_proxies: Vec<String>,
    /// A request that has no response after this long gets `504` (gRPC: `DEADLINE_EXCEEDED`); a streamed
    /// answer counts until its first byte.
    pub request_timeout_ms: u64,
    /// Requests handled at once; past this, new requests are shed at once with `503` and `Retry-After`
    /// instead of queueing without bound.
    pub max_in_flight: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectorsConfig {
    /// 32-byte key, base64, that encrypts source credentials at rest. Embedded: generated in the data dir.
    pub encryption_key: Option<SecretString>,
    /// Seconds between scheduled syncs of one connector (jittered by up to 10%).
    pub sync_interval_secs: u64,
    /// How long a sync lease lasts before another replica may take the connector over.
    pub lease_secs: u64,
    /// Whether this process runs the scheduler.
    pub scheduler_enabled: bool,
    /// Per-request timeout towards sources.
    pub request_timeout_secs: u64,
    /// Retries of one source request (5xx, timeouts, 429) before the run fails.
    pub max_retries: u32,
    /// Let sources be on private or local networks (loopback, 10/8, 192.168/16, link-local, …). Off: a
    /// source URL must resolve to public addresses only (a user could otherwise make the platform fetch
    /// internal services or cloud metadata).
    pub allow_private_networks: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrchestratorConfig {
    pub cache_ttl_secs: u64,
}

/// Search over records: where the index lives and which model embeds text.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    /// `edge` (Qdrant Edge in the data directory, in-process), `qdrant` (a Qdrant server at
    /// `qdrant_url`) or `off`.
    pub index: String,
    /// The Qdrant server's gRPC URL (`http://HOST:6334`) when `index = "qdrant"`.
    pub qdrant_url: String,
    pub qdrant_api_key: Option<SecretString>,
    /// `auto` (Edge: a collection per tenant; a Qdrant server: one collection and the tenant filter),
    /// `filter` or `collection`.
    pub isolation: String,
    /// Collection name prefix; the mapping version and the model are appended.
    pub collection: String,
    /// `auto` (the local model if installed, else keyword only), `local`, `openai` or `none`.
    pub embedder: String,
    /// Where the local model's files are (default: `$XDG_CACHE_HOME/smb/models/all-MiniLM-L6-v2`).
    pub model_dir: Option<PathBuf>,
    /// OpenAI-compatible embeddings endpoint (`embedder = "openai"`).
    pub openai_base_url: String,
    pub openai_api_key: Option<SecretString>,
    pub openai_model: String,
    pub openai_timeout_ms: u64,
}

/// The language-model chain: `primary`, then `fallback`, then the deterministic path (always there).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    pub primary: Option<LlmProviderConfig>,
    pub fallback: Option<LlmProviderConfig>,
    /// Budget for all provider calls of one question, retries included; the answer never waits longer.
    pub timeout_ms: u64,
    /// Attempts at one provider after a 429, a 5xx or a connection failure.
    pub max_retries: u32,
    /// Consecutive failures after which a provider is skipped for `cooldown_ms` (circuit breaker).
    pub breaker_failures: u32,
    pub cooldown_ms: u64,
    /// Tokens (in + out) one tenant may use per calendar month; 0 = no limit.
    pub monthly_token_budget: u64,
    /// Send customer names and e-mails to the provider (off: only the question, plan and aggregates).
    pub share_customer_data: bool,
}

/// One provider: `kind` is `openai` (any OpenAI-compatible API: OpenAI, vLLM, Ollama, llama.cpp) or
/// `anthropic` (the Messages API).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmProviderConfig {
    pub kind: String,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub api_key: Option<SecretString>,
    pub model: String,
}

/// Outgoing e-mail for `send_email` actions and workflows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// `smtp://host:port`, `smtps://user:pass@host` (TLS) or `smtp://…?tls=required` (STARTTLS);
    /// unset: e-mail actions can be proposed but are refused at confirmation.
    pub smtp_url: Option<SecretString>,
    pub from: String,
    /// E-mails one tenant may send per day (UTC), so nobody can relay spam through the platform.
    pub daily_limit: u32,
    pub timeout_ms: u64,
}

/// Traces.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// OTLP/gRPC collector, e.g. `http://otel-collector:4317`; unset: `OTEL_EXPORTER_OTLP_ENDPOINT`, else
    /// nothing is exported.
    pub otlp_endpoint: Option<String>,
    /// Put the question's text on answer spans (off: a hash of it only).
    pub log_queries: bool,
    /// Requests that start a trace (no sampled `traceparent` from the caller) traced per second, per
    /// process, before `sample_ratio` applies.
    pub traces_per_second: u32,
    /// The share of requests traced beyond `traces_per_second` (0 to 1).
    pub sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            log_queries: false,
            traces_per_second: 100,
            sample_ratio: 0.05,
        }
    }
}

/// Proposed actions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ActionsConfig {
    /// A proposal not confirmed within this many hours expires.
    pub ttl_hours: u64,
    /// How often scheduled workflows are looked for.
    pub scheduler_interval_secs: u64,
}

/// The event bus: the embedded log in the store, or Kafka.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    /// `store` (the embedded log in the database) or `kafka`.
    pub kind: String,
    /// Kafka bootstrap servers (`host:port,...`) when `kind = "kafka"`.
    pub brokers: String,
    /// Prepended to every Kafka topic and consumer group name (shared clusters, tests).
    pub topic_prefix: String,
    /// Partitions of topics the platform creates on Kafka.
    pub partitions: i32,
    /// Replication factor of topics the platform creates on Kafka.
    pub replication: i32,
    /// Kafka: one message per record batch (needed with tansu, which serves fetches only from batch starts).
    pub one_message_per_batch: bool,
    /// Attempts at one message before it goes to the dead-letter topic.
    pub max_attempts: u32,
    /// Wait between attempts at a failing message.
    pub retry_backoff_ms: u64,
    /// The largest message the platform publishes (under Kafka's default limit of 1 MB, with room for the key
    /// and headers). Sync pages are split to fit; a record too large alone, or any other message over it,
    /// goes to the dead-letter topic as a reference instead of wedging the relay.
    pub max_message_bytes: usize,
    /// How long the embedded log (`kind = "store"`) keeps messages, consumed or not (Kafka's
    /// `retention.ms` on a broker).
    pub retention_hours: u64,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            kind: "store".into(),
            brokers: String::new(),
            topic_prefix: String::new(),
            one_message_per_batch: false,
            partitions: 3,
            replication: 1,
            max_attempts: 5,
            retry_backoff_ms: 500,
            max_message_bytes: 900_000,
            retention_hours: 168,
        }
    }
}

/// Where the other services are, when running split (`smb serve`). Unused by `smb up`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServicesConfig {
    pub auth_url: String,
    pub orchestrator_url: String,
    pub connectors_url: String,
    /// The deadline of every call from the gateway to a service (sent as `grpc-timeout`).
    pub timeout_ms: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            shutdown_grace_secs: 10,
            addr: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from(".smb"),
            admin_addr: None,
        }
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            migrate_url: None,
            max_connections: 10,
            sqlite_cache_mib: 64,
            restricted_roles: Vec::new(),
        }
    }
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            url: SecretString::from("memory"),
            key_prefix: String::new(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            issuer: "smb-command".into(),
            audience: "smb-command-api".into(),
            access_ttl_secs: 15 * 60,
            refresh_ttl_days: 30,
            signing_keys: Vec::new(),
            max_failures_per_account: 10,
            max_failures_per_addr: 50,
            lockout_window_secs: 15 * 60,
            jwks_refresh_secs: 300,
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            body_limit_bytes: 64 * 1024,
            drain_limit_bytes: 4 * 1024 * 1024,
            drain_timeout_ms: 1000,
            default_rate_limit: 600,
            rate_limits: BTreeMap::new(),
            public_rate_limit: 120,
            trusted_proxies: Vec::new(),
            request_timeout_ms: 30_000,
            max_in_flight: 1024,
        }
    }
}

impl Default for ConnectorsConfig {
    fn default() -> Self {
        Self {
            encryption_key: None,
            sync_interval_secs: 15 * 60,
            lease_secs: 10 * 60,
            scheduler_enabled: true,
            request_timeout_secs: 30,
            max_retries: 8,
            allow_private_networks: false,
        }
    }
}

impl Default for OrchestratorConfig {
    fn default() -> Self {
        Self {
            cache_ttl_secs: 300,
        }
    }
}

impl Default for SearchConfig {
    fn default() -> Self {
        Self {
            index: "edge".into(),
            qdrant_url: "http://127.0.0.1:6334".into(),
            qdrant_api_key: None,
            isolation: "auto".into(),
            collection: "smb_records".into(),
            embedder: "auto".into(),
            model_dir: None,
            openai_base_url: "https://api.openai.com/v1".into(),
            openai_api_key: None,
            openai_model: "text-embedding-3-small".into(),
            openai_timeout_ms: 10_000,
        }
    }
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            primary: None,
            fallback: None,
            timeout_ms: 8_000,
            max_retries: 2,
            breaker_failures: 5,
            cooldown_ms: 30_000,
            monthly_token_budget: 2_000_000,
            share_customer_data: false,
        }
    }
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            smtp_url: None,
            from: "SMB Command <no-reply@localhost>".into(),
            daily_limit: 50,
            timeout_ms: 15_000,
        }
    }
}

impl Default for ActionsConfig {
    fn default() -> Self {
        Self {
            ttl_hours: 24,
            scheduler_interval_secs: 30,
        }
    }
}

impl Default for ServicesConfig {
    fn default() -> Self {
        Self {
            auth_url: "http://127.0.0.1:50051".into(),
            orchestrator_url: "http://127.0.0.1:50052".into(),
            connectors_url: "http://127.0.0.1:50053".into(),
            timeout_ms: 30_000,
        }
    }
}

impl Config {
    /// Builds the configuration from an optional file and an environment map (`SMB_SECTION__KEY=value`).
    /// Returns every problem found, not just the first.
    pub fn load(file: Option<&Path>, env: &HashMap<String, String>) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let mut root = toml::Table::new();
        if let Some(path) = file {
            match std::fs::read_to_string(path) {
                Ok(text) => match text.parse::<toml::Table>() {
                    Ok(t) => root = t,
                    Err(e) => errors.push(format!("{}: {e}", path.display())),
                },
                Err(e) => errors.push(format!("cannot read config file {}: {e}", path.display())),
            }
        }
        let mut keys: Vec<_> = env.keys().filter(|k| k.starts_with("SMB_")).collect();
        keys.sort();
        for key in keys {
            if RESERVED_ENV.contains(&key.as_str()) {
                continue;
            }
            let path: Vec<String> = key["SMB_".len()..]
                .split("__")
                .map(str::to_lowercase)
                .collect();
            if path.len() < 2 || path.iter().any(String::is_empty) {
                errors.push(format!(
                    "{key}: expected SMB_SECTION__KEY (two underscores between parts)"
                ));
                continue;
            }
            let value = parse_env_value(&env[key]);
            if let Err(e) = insert_path(&mut root, &path, value) {
                errors.push(format!("{key}: {e}"));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let cfg = toml::Value::Table(root)
            .try_into::<Config>()
            .map_err(|e| vec![e.to_string()])?;
        if !(0.0..=1.0).contains(&cfg.telemetry.sample_ratio) {
            return Err(vec![format!(
                "telemetry.sample_ratio: {} is not a share between 0 and 1",
                cfg.telemetry.sample_ratio
            )]);
        }
        Ok(cfg)
    }

    /// The process's own environment (for `main`; tests build maps).
    pub fn process_env() -> HashMap<String, String> {
        std::env::vars().collect()
    }
}

fn insert_path(root: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, sections) = path.split_last().ok_or("empty key")?;
    let mut table = root;
    for part in sections {
        let entry = table
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| format!("{part} is not a section"))?;
    }
    table.insert(last.clone(), value);
    Ok(())
}

fn parse_env_value(raw: &str) -> toml::Value {
    if let Ok(i) = raw.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    match raw {
        "true" => return toml::Value::Boolean(true),
        "false" => return toml::Value::Boolean(false),
        _ => {}
    }
    if (raw.starts_with('[') || raw.starts_with('{'))
        && let Ok(v) = format!("v = {raw}").parse::<toml::Table>()
        && let Some(v) = v.get("v")
    {
        return v.clone();
    }
    toml::Value::String(raw.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_without_anything() {
        let c = Config::load(None, &HashMap::new()).unwrap();
        assert_eq!(c.server.addr, "127.0.0.1:8080");
        assert_eq!(c.auth.access_ttl_secs, 900);
    }

    #[test]
    fn environment_overrides_file() {
        let dir = std::env::temp_dir().join(format!("smb-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("smb.toml");
        std::fs::write(
            &f,
            "[server]\naddr = \"0.0.0.0:1\"\n[gateway]\ndefault_rate_limit = 5\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&f),
            &env(&[
                ("SMB_SERVER__ADDR", "0.0.0.0:2"),
                ("SMB_CACHE__URL", "redis://x"),
                ("HOME", "/"),
            ]),
        )
        .unwrap();
        assert_eq!(c.server.addr, "0.0.0.0:2");
        assert_eq!(c.gateway.default_rate_limit, 5);
        assert_eq!(c.cache.url.expose_secret(), "redis://x");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unknown_keys_and_bad_names_are_all_reported() {
        let errs =
            Config::load(None, &env(&[("SMB_SERVER__NOPE", "1"), ("SMB_BAD", "x")])).unwrap_err();
        assert!(errs.iter().any(|e| e.contains("SMB_BAD")), "{errs:?}");
        let errs = Config::load(None, &env(&[("SMB_SERVER__NOPE", "1")])).unwrap_err();
        assert!(errs.iter().any(|e| e.contains("nope")), "{errs:?}");
    }

    #[test]
    fn secrets_do_not_print() {
        let c = Config::load(
            None,
            &env(&[("SMB_DATABASE__URL", "postgres://u:hunter2@h/db")]),
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
