//! Wiring: builds the services on the configured adapters and runs them, together (`up`) or one at a time
//! (`serve`). `main` stays thin; this is the one place that knows which adapter each port gets.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use smb_auth::{AuthServiceImpl, KeyRing};
use smb_connectors::ConnectorsServiceImpl;
use smb_connectors::http::SourceClient;
use smb_connectors::scheduler::Scheduler;
use smb_connectors::sync::SyncEngine;
use smb_connectors::webhooks::WebhooksServiceImpl;
use smb_core::bus::{DynBus, StoreBus};
use smb_core::cache::{self, DynCache};
use smb_core::config::Config;
use smb_core::crypto::Sealer;
use smb_core::outbox::Outbox;
use smb_core::store::Db;
use smb_gateway::server::ReadyCheck;
use smb_gateway::{Gateway, Services};
use smb_orchestrator::ops::Ops;
use smb_orchestrator::ops::service::ActionsServiceImpl;
use smb_orchestrator::{OrchestratorGrpc, OrchestratorServiceImpl};
use smb_proto::auth::v1::auth_service_server::AuthServiceServer;
use smb_proto::connectors::v1::connectors_service_server::ConnectorsServiceServer;
use smb_proto::connectors::v1::webhooks_service_server::WebhooksServiceServer;
use smb_proto::orchestrator::v1::actions_service_server::ActionsServiceServer;
use smb_proto::orchestrator::v1::orchestrator_service_server::OrchestratorServiceServer;
use smb_workers::Worker;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;

fn load_config() -> anyhow::Result<Config> {
    let env = Config::process_env();
    let file = env.get("SMB_CONFIG").map(PathBuf::from);
    Config::load(file.as_deref(), &env)
        .map_err(|errs| anyhow::anyhow!("invalid configuration:\n  {}", errs.join("\n  ")))
}

/// The encryption key for credentials: configured, or generated once in the data directory.
fn sealer(cfg: &Config, data_dir: &Path) -> anyhow::Result<Sealer> {
    if let Some(k) = &cfg.connectors.encryption_key {
        return Sealer::from_base64(k.expose_secret())
            .map_err(|e| anyhow::anyhow!("connectors.encryption_key: {e}"));
    }
    let path = data_dir.join("secret.key");
    if !path.exists() {
        std::fs::create_dir_all(data_dir)?;
        smb_auth::keys::write_private(&path, Sealer::generate_key().as_bytes())?;
    }
    Sealer::from_base64(&std::fs::read_to_string(&path)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The search engine on the configured index and embedder (`None` when `search.index = "off"`).
async fn search_engine(
    cfg: &Config,
    data_dir: &Path,
) -> anyhow::Result<Option<Arc<smb_search::SearchEngine>>> {
    use smb_search::embed::{DynEmbedder, LocalEmbedder, OpenAiEmbedder};
    use smb_search::index::{DynIndex, Isolation};
    let s = &cfg.search;
    // Measured (`search_bench --isolation`, 10 tenants on Edge): equal search latency, indexing 3.6×
    // faster with a shard per tenant. On a server Qdrant's own advice is one collection keyed by tenant.
    let isolation = match (s.isolation.as_str(), s.index.as_str()) {
        ("auto", "qdrant") | ("filter", _) => Isolation::Filter,
        ("auto", _) | ("collection", _) => Isolation::Collection,
        (other, _) => anyhow::bail!(
            "search.isolation must be \"auto\", \"filter\" or \"collection\", not {other:?}"
        ),
    };
    let index: DynIndex = match s.index.as_str() {
        "off" => return Ok(None),
        "edge" => Arc::new(smb_search::edge::EdgeIndex::open(
            &data_dir.join("search"),
            isolation,
        )?),
        "qdrant" => Arc::new(smb_search::server::QdrantIndex::connect(
            &s.qdrant_url,
            s.qdrant_api_key.as_ref().map(|k| k.expose_secret()),
            isolation,
        )?),
        other => {
            anyhow::bail!("search.index must be \"edge\", \"qdrant\" or \"off\", not {other:?}")
        }
    };
    let model_dir = s
        .model_dir
        .clone()
        .unwrap_or_else(smb_search::model::default_dir);
    let local = || -> anyhow::Result<DynEmbedder> {
        Ok(Arc::new(
            LocalEmbedder::load(&model_dir).context("search.embedder")?,
        ))
    };
    let embedder: Option<DynEmbedder> = match s.embedder.as_str() {
        "none" => None,
        "local" => Some(local()?),
        "auto" if smb_search::model::is_installed(&model_dir) => Some(local()?),
        "auto" => {
            tracing::info!(
                model_dir = %model_dir.display(),
                "no embedding model installed: search matches words only (`smb models install` adds meaning)"
            );
            None
        }
        "openai" => Some(Arc::new(
            OpenAiEmbedder::connect(
                &s.openai_base_url,
                s.openai_api_key.as_ref().map(|k| k.expose_secret()),
                &s.openai_model,
                Duration::from_millis(s.openai_timeout_ms),
            )
            .await
            .context("search.embedder = openai")?,
        )),
        other => anyhow::bail!(
            "search.embedder must be \"auto\", \"local\", \"openai\" or \"none\", not {other:?}"
        ),
    };
    let engine = smb_search::SearchEngine::new(index, embedder, &s.collection)
        .await
        .context("search index")?;
    tracing::info!(index = engine.index_name(), model = engine.model_id(), collection = %engine.space().name, "search ready");
    Ok(Some(Arc::new(engine)))
}

/// The smallest `bus.max_message_bytes` honoured (a page must hold at least one ordinary record).
const MIN_MESSAGE_BYTES: usize = 64 * 1024;

/// What a process runs, and so which secrets it loads: only auth holds the token-signing keys, only the
/// connectors service and the workers (which sync) hold the credential key, and only auth's database role
/// writes the identity tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `smb up`: every service.
    All,
    Auth,
    Orchestrator,
    Connectors,
    Workers,
}

impl Role {
    fn signs_tokens(self) -> bool {
        matches!(self, Role::All | Role::Auth)
    }

    fn holds_credentials(self) -> bool {
        matches!(self, Role::All | Role::Connectors | Role::Workers)
    }

    fn searches(self) -> bool {
        matches!(self, Role::All | Role::Orchestrator | Role::Workers)
    }

    fn access(self) -> smb_core::store::Access {
        if self.signs_tokens() {
            smb_core::store::Access::Full
        } else {
            smb_core::store::Access::NoIdentityWrites
        }
    }
}

/// Everything one process holds.
pub struct Platform {
    pub db: Db,
    pub cache: DynCache,
    /// Auth, in the processes that hold the signing keys.
    pub auth: Option<Arc<AuthServiceImpl>>,
    pub orchestrator: Arc<OrchestratorServiceImpl>,
    /// Actions (ops-copilot): proposals, confirmations, tasks, scheduled workflows.
    pub ops: Arc<Ops>,
    /// How often scheduled workflows are looked for.
    pub workflow_interval: Duration,
    pub connectors: Arc<ConnectorsServiceImpl>,
    /// Webhooks and syncs, in the processes that hold the credential key.
    pub webhooks: Option<Arc<WebhooksServiceImpl>>,
    pub engine: Option<SyncEngine>,
    pub wake: Arc<Notify>,
    pub worker: Worker,
    pub bus: DynBus,
    /// Where events that follow state changes are written.
    pub outbox: Outbox,
    /// `bus.max_message_bytes`, enforced by the relay.
    pub max_message_bytes: usize,
    /// How long the embedded log keeps messages; `None` on Kafka (the broker's retention applies).
    pub log_retention: Option<Duration>,
}

impl Platform {
    pub async fn build(cfg: &Config, role: Role) -> anyhow::Result<Self> {
        let data_dir = &cfg.server.data_dir;
        let db = Db::connect(&cfg.database, data_dir, role.access())
            .await
            .context("database")?;
        let cache = cache::connect(cfg.cache.url.expose_secret(), &cfg.cache.key_prefix)
            .await
            .context("cache")?;
        let relay_wake = Arc::new(Notify::new());
        let mut outbox = Outbox::relayed(relay_wake.clone());
        let bus: DynBus = match cfg.bus.kind.as_str() {
            "store" => {
                let b = StoreBus::new(db.clone());
                // On SQLite the embedded log is in the same database: events are written straight into it.
                if matches!(db, Db::Sqlite(_)) {
                    outbox = Outbox::direct(b.notifier());
                }
                Arc::new(b)
            }
            "kafka" => {
                let mut k = smb_core::kafka::KafkaSettings::new(&cfg.bus.brokers);
                k.prefix = cfg.bus.topic_prefix.clone();
                k.partitions = cfg.bus.partitions;
                k.replication = cfg.bus.replication;
                k.one_message_per_batch = cfg.bus.one_message_per_batch;
                Arc::new(
                    smb_core::kafka::KafkaBus::connect(k, &[])
                        .await
                        .context("kafka (bus.brokers)")?,
                )
            }
            other => anyhow::bail!("bus.kind must be \"store\" or \"kafka\", not {other:?}"),
        };
        let keys = match role.signs_tokens() {
            false => None,
            true if cfg.auth.signing_keys.is_empty() => {
                Some(KeyRing::load_or_create(&data_dir.join("keys"))?)
            }
            true => Some(KeyRing::from_config(&cfg.auth.signing_keys)?),
        };
        let sealer = match role.holds_credentials() {
            true => Some(sealer(cfg, data_dir)?),
            false => None,
        };
        let client = SourceClient::new(
            Duration::from_secs(cfg.connectors.request_timeout_secs),
            cfg.connectors.max_retries,
            cfg.connectors.allow_private_networks,
        );
        let wake = Arc::new(Notify::new());
        let search = match role.searches() {
            true => search_engine(cfg, data_dir).await?,
            false => None,
        };
        let mailer = match &cfg.email.smtp_url {
            Some(url) => Some(
                smb_orchestrator::ops::mail::Mailer::new(
                    url.expose_secret(),
                    &cfg.email.from,
                    Duration::from_millis(cfg.email.timeout_ms),
                )
                .context("email")?,
            ),
            None => None,
        };
        let llm = smb_orchestrator::llm::Chain::from_config(&cfg.llm, db.clone())
            .context("llm")?
            .map(Arc::new);
        let connectors = Arc::new(match &sealer {
            Some(s) => {
                ConnectorsServiceImpl::new(db.clone(), s.clone(), client.clone(), wake.clone())
            }
            None => {
                ConnectorsServiceImpl::without_credentials(db.clone(), client.clone(), wake.clone())
            }
        });
        let ops = Arc::new(Ops::new(
            db.clone(),
            mailer,
            Some(connectors.clone()),
            Duration::from_secs(cfg.actions.ttl_hours * 3600),
            cfg.email.daily_limit,
            Duration::from_millis(cfg.email.timeout_ms),
        ));
        let max_message_bytes = cfg.bus.max_message_bytes.max(MIN_MESSAGE_BYTES);
        let engine = sealer.as_ref().map(|s| SyncEngine {
            db: db.clone(),
            outbox: outbox.clone(),
            sealer: s.clone(),
            client: client.clone(),
            owner: format!("{}-{}", std::process::id(), uuid_like()),
            lease: Duration::from_secs(cfg.connectors.lease_secs),
            max_message_bytes,
        });
        Ok(Self {
            auth: keys.map(|k| {
                Arc::new(AuthServiceImpl::new(
                    db.clone(),
                    cache.clone(),
                    Arc::new(k),
                    cfg.auth.clone(),
                ))
            }),
            orchestrator: Arc::new({
                let o = OrchestratorServiceImpl::new(
                    db.clone(),
                    cache.clone(),
                    bus.clone(),
                    Duration::from_secs(cfg.orchestrator.cache_ttl_secs),
                );
                let o = o
                    .with_ops(ops.clone())
                    .with_log_queries(cfg.telemetry.log_queries);
                let o = match llm {
                    Some(c) => o.with_llm(c),
                    None => o,
                };
                match &search {
                    Some(s) => o.with_search(s.clone()),
                    None => o,
                }
            }),
            ops,
            workflow_interval: Duration::from_secs(cfg.actions.scheduler_interval_secs.max(1)),
            max_message_bytes,
            log_retention: (cfg.bus.kind == "store")
                .then(|| Duration::from_secs(cfg.bus.retention_hours.max(1) * 3600)),
            webhooks: sealer.as_ref().map(|s| {
                Arc::new(WebhooksServiceImpl::new(
                    db.clone(),
                    s.clone(),
                    outbox.clone(),
                ))
            }),
            connectors,
            worker: Worker::new(
                db.clone(),
                bus.clone(),
                cache.clone(),
                cfg.connectors.sync_interval_secs,
                outbox.clone(),
            )
            .with_retries(
                cfg.bus.max_attempts,
                Duration::from_millis(cfg.bus.retry_backoff_ms),
            )
            .with_search_opt(search.clone()),
            bus,
            outbox,
            engine,
            wake,
            db,
            cache,
        })
    }

    fn readiness(&self) -> Vec<(String, ReadyCheck)> {
        let db = self.db.clone();
        let cache = self.cache.clone();
        vec![
            (
                "database".into(),
                Arc::new(move || {
                    let db = db.clone();
                    Box::pin(async move { db.ping().await })
                        as futures::future::BoxFuture<'static, bool>
                }) as ReadyCheck,
            ),
            (
                "cache".into(),
                Arc::new(move || {
                    let cache = cache.clone();
                    Box::pin(async move { cache.ping().await })
                        as futures::future::BoxFuture<'static, bool>
                }) as ReadyCheck,
            ),
        ]
    }

    /// Registers the gauges read at scrape time: the outbox's depth and this process's bus consumer lag.
    fn register_collectors(&self) {
        let db = self.db.clone();
        let bus = self.bus.clone();
        let direct = self.outbox.is_direct();
        smb_core::telemetry::register_collector(Arc::new(move || {
            let db = db.clone();
            let bus = bus.clone();
            Box::pin(async move {
                if !direct {
                    match smb_core::outbox::depth(&db).await {
                        Ok(n) => metrics::gauge!("smb_outbox_depth").set(n as f64),
                        Err(e) => tracing::debug!(error = %e, "outbox depth not read"),
                    }
                }
                match bus.lag().await {
                    Ok(lags) => {
                        for l in lags {
                            metrics::gauge!("smb_bus_consumer_lag", "topic" => l.topic, "group" => l.group)
                                .set(l.messages as f64);
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "bus lag not read"),
                }
            }) as futures::future::BoxFuture<'static, ()>
        }));
    }

    /// Starts the background loops (workers, scheduler); they stop when `shutdown` is cancelled.
    pub fn spawn_background(
        &self,
        shutdown: &CancellationToken,
        scheduler: bool,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = vec![tokio::spawn(self.worker.clone().run(shutdown.clone()))];
        if !self.outbox.is_direct() {
            let relay =
                smb_core::outbox::Relay::new(self.db.clone(), self.bus.clone(), self.outbox.wake())
                    .with_max_message_bytes(self.max_message_bytes);
            tasks.push(tokio::spawn(relay.run(shutdown.clone())));
        }
        if let Some(keep) = self.log_retention {
            // Every process on the embedded log prunes it (a delete by age: replicas doing it twice is harmless).
            let bus = smb_core::bus::StoreBus::new(self.db.clone());
            let stop = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(600));
                loop {
                    tokio::select! {
                        _ = every.tick() => {}
                        _ = stop.cancelled() => return,
                    }
                    match bus.prune(keep).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(removed = n, "embedded bus log pruned by retention"),
                        Err(e) => tracing::warn!(error = %e, "embedded bus log: pruning failed; retried in 10 minutes"),
                    }
                }
            }));
        }
        if scheduler {
            let ops = self.ops.clone();
            let interval = self.workflow_interval;
            let stop = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                tokio::select! {
                    _ = ops.run_scheduler(interval) => {},
                    _ = stop.cancelled() => {},
                }
            }));
            if let Some(engine) = &self.engine {
                let s = Scheduler::new(engine.clone(), self.wake.clone(), Duration::from_secs(5));
                tasks.push(tokio::spawn(s.run(shutdown.clone())));
            }
        }
        tasks
    }

    pub async fn gateway(&self, cfg: &Config) -> anyhow::Result<Gateway> {
        let services = Services {
            auth: self.auth.clone().context("this process serves no auth")?,
            orchestrator: Arc::new(OrchestratorGrpc(self.orchestrator.clone())),
            actions: Arc::new(ActionsServiceImpl(self.ops.clone())),
            connectors: self.connectors.clone(),
            webhooks: self
                .webhooks
                .clone()
                .context("this process serves no webhooks")?,
        };
        Ok(Gateway::new(services, self.cache.clone(), cfg, self.readiness()).await?)
    }
}

fn uuid_like() -> String {
    smb_core::crypto::random_token(6)
}

async fn shutdown_signal(token: CancellationToken) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
    token.cancel();
}

/// Waits for the background tasks to finish after shutdown was signalled, at most `grace`; whatever is
/// still running then is dropped with the process (a sync cut short resumes from its checkpoint, a bus
/// message not committed is redelivered).
async fn drain(tasks: Vec<tokio::task::JoinHandle<()>>, grace: Duration) {
    if tokio::time::timeout(grace, futures::future::join_all(tasks))
        .await
        .is_err()
    {
        tracing::warn!(
            grace_secs = grace.as_secs(),
            "background work did not finish within the grace period; stopping anyway"
        );
    }
}

/// `smb up`: every service in one process.
pub async fn up(addr: String, data_dir: PathBuf) -> anyhow::Result<()> {
    let mut cfg = load_config()?;
    let _telemetry = smb_core::telemetry::init(smb_core::telemetry::Settings {
        service: "smb",
        json_by_default: false,
        otlp_endpoint: cfg.telemetry.otlp_endpoint.as_deref(),
        traces_per_second: cfg.telemetry.traces_per_second,
        sample_ratio: cfg.telemetry.sample_ratio,
    });
    cfg.server.addr = addr;
    cfg.server.data_dir = data_dir;
    let platform = Platform::build(&cfg, Role::All).await?;
    platform.register_collectors();
    let listener = tokio::net::TcpListener::bind(&cfg.server.addr)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.server.addr))?;
    let local = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let tasks = platform.spawn_background(&shutdown, cfg.connectors.scheduler_enabled);
    spawn_admin(&cfg, platform.readiness(), &shutdown).await?;
    let gateway = platform.gateway(&cfg).await?;
    // Printed for humans and for tests that start on port 0.
    println!("smb listening on http://{local}");
    tracing::info!(addr = %local, data_dir = %cfg.server.data_dir.display(), "smb up");
    let signal = tokio::spawn(shutdown_signal(shutdown.clone()));
    gateway
        .serve(listener, shutdown.clone().cancelled_owned())
        .await?;
    signal.abort();
    shutdown.cancel();
    drain(tasks, Duration::from_secs(cfg.server.shutdown_grace_secs)).await;
    platform.bus.close().await;
    platform.db.close().await;
    Ok(())
}

/// The token verifier of a service, on the JWKS `auth` publishes. A service may start before auth does (a
/// Deployment's pods start in any order): it retries for a minute before giving up.
async fn authenticator(
    auth: Arc<dyn smb_proto::auth::v1::auth_service_server::AuthService>,
    cfg: &Config,
    shutdown: &CancellationToken,
) -> anyhow::Result<smb_gateway::authn::Authenticator> {
    let started = std::time::Instant::now();
    loop {
        match smb_gateway::authn::Authenticator::new(
            auth.clone(),
            &cfg.auth.issuer,
            &cfg.auth.audience,
            Duration::from_secs(cfg.auth.jwks_refresh_secs.max(1)),
        )
        .await
        {
            Ok(a) => return Ok(a),
            Err(e) if started.elapsed() < Duration::from_secs(60) && !shutdown.is_cancelled() => {
                tracing::warn!(error = %e, auth_url = %cfg.services.auth_url, "auth's public keys are not readable yet; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                return Err(anyhow::anyhow!(
                    "cannot read auth's public keys from services.auth_url ({}): {e}",
                    cfg.services.auth_url
                ));
            }
        }
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `server.admin_addr`, when it is set.
async fn spawn_admin(
    cfg: &Config,
    readiness: Vec<(String, ReadyCheck)>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let Some(admin) = &cfg.server.admin_addr else {
        return Ok(());
    };
    let listener = tokio::net::TcpListener::bind(admin)
        .await
        .with_context(|| format!("cannot listen on server.admin_addr {admin}"))?;
    let router = smb_gateway::metrics::admin_router(readiness);
    let stop = shutdown.clone();
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "admin server stopped");
        }
    });
    Ok(())
}

/// Keeps gRPC health true: each served service (and the server as a whole, `""`) is SERVING while every
/// dependency answers (database, cache), NOT_SERVING while one does not, checked every 2 s.
struct HealthWatch {
    reporter: tonic_health::server::HealthReporter,
    services: Vec<&'static str>,
    checks: Vec<(String, ReadyCheck)>,
}

impl HealthWatch {
    const EVERY: Duration = Duration::from_secs(2);

    /// Checks the dependencies and reports a change from `last`; returns whether all answered.
    async fn check(&self, last: Option<bool>) -> bool {
        let mut down = Vec::new();
        for (name, check) in &self.checks {
            if !tokio::time::timeout(Self::EVERY, check())
                .await
                .unwrap_or(false)
            {
                down.push(name.as_str());
            }
        }
        let ok = down.is_empty();
        if last != Some(ok) {
            let status = match ok {
                true => tonic_health::ServingStatus::Serving,
                false => tonic_health::ServingStatus::NotServing,
            };
            for s in self.services.iter().chain(std::iter::once(&"")) {
                self.reporter.set_service_status(*s, status).await;
            }
            match ok {
                true if last.is_some() => tracing::info!("dependencies answer again: SERVING"),
                true => {}
                false => tracing::warn!(down = ?down, "a dependency does not answer: NOT_SERVING"),
            }
        }
        ok
    }

    async fn run(self, mut last: bool, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Self::EVERY) => {}
                _ = stop.cancelled() => return,
            }
            last = self.check(Some(last)).await;
        }
    }
}

/// `smb serve <service>`: one service of the split deployment.
pub async fn serve(service: &str) -> anyhow::Result<()> {
    let cfg = load_config()?;
    let _telemetry = smb_core::telemetry::init(smb_core::telemetry::Settings {
        service: &format!("smb-{service}"),
        json_by_default: true,
        otlp_endpoint: cfg.telemetry.otlp_endpoint.as_deref(),
        traces_per_second: cfg.telemetry.traces_per_second,
        sample_ratio: cfg.telemetry.sample_ratio,
    });
    let shutdown = CancellationToken::new();
    tokio::spawn(shutdown_signal(shutdown.clone()));
    let addr: std::net::SocketAddr = cfg.server.addr.parse().context("server.addr")?;
    if service == "gateway" {
        use smb_gateway::remote::{
            RemoteActions, RemoteAuth, RemoteConnectors, RemoteOrchestrator, RemoteWebhooks,
        };
        let deadline = Duration::from_millis(cfg.services.timeout_ms.max(1));
        let services = Services {
            auth: Arc::new(RemoteAuth::connect_lazy(&cfg.services.auth_url, deadline)?),
            orchestrator: Arc::new(RemoteOrchestrator::connect_lazy(
                &cfg.services.orchestrator_url,
                deadline,
            )?),
            actions: Arc::new(RemoteActions::connect_lazy(
                &cfg.services.orchestrator_url,
                deadline,
            )?),
            connectors: Arc::new(RemoteConnectors::connect_lazy(
                &cfg.services.connectors_url,
                deadline,
            )?),
            webhooks: Arc::new(RemoteWebhooks::connect_lazy(
                &cfg.services.connectors_url,
                deadline,
            )?),
        };
        let cache = cache::connect(cfg.cache.url.expose_secret(), &cfg.cache.key_prefix).await?;
        spawn_admin(&cfg, Vec::new(), &shutdown).await?;
        let gateway = Gateway::new(services, cache, &cfg, Vec::new()).await?;
        let listener = tokio::net::TcpListener::bind(addr).await?;
        gateway
            .serve(listener, shutdown.clone().cancelled_owned())
            .await?;
        return Ok(());
    }
    let role = match service {
        "auth" => Role::Auth,
        "orchestrator" => Role::Orchestrator,
        "connectors" => Role::Connectors,
        "workers" => Role::Workers,
        other => anyhow::bail!(
            "unknown service {other:?}: gateway, auth, orchestrator, connectors or workers"
        ),
    };
    let platform = Platform::build(&cfg, role).await?;
    platform.register_collectors();
    spawn_admin(&cfg, platform.readiness(), &shutdown).await?;
    let (reporter, health) = tonic_health::server::health_reporter();
    let served: &[&'static str] = match role {
        Role::Auth => &[<AuthServiceServer<AuthServiceImpl> as NamedService>::NAME],
        Role::Orchestrator => &[
            <OrchestratorServiceServer<OrchestratorGrpc> as NamedService>::NAME,
            <ActionsServiceServer<ActionsServiceImpl> as NamedService>::NAME,
        ],
        Role::Connectors => &[
            <ConnectorsServiceServer<ConnectorsServiceImpl> as NamedService>::NAME,
            <WebhooksServiceServer<WebhooksServiceImpl> as NamedService>::NAME,
        ],
        Role::Workers | Role::All => &[],
    };
    let health_watch = HealthWatch {
        reporter: reporter.clone(),
        services: served.to_vec(),
        checks: platform.readiness(),
    };
    let healthy = health_watch.check(None).await;
    tokio::spawn(health_watch.run(healthy, shutdown.clone()));
    if role == Role::Workers {
        // Workers answer nothing but health (their probes), on server.addr.
        let tasks = platform.spawn_background(&shutdown, cfg.connectors.scheduler_enabled);
        tracing::info!(%addr, service, "serving health");
        tonic::transport::Server::builder()
            .layer(smb_gateway::metrics::RequestMetricsLayer)
            .add_service(health)
            .serve_with_shutdown(addr, shutdown.clone().cancelled_owned())
            .await?;
        drain(tasks, Duration::from_secs(cfg.server.shutdown_grace_secs)).await;
        platform.bus.close().await;
        platform.db.close().await;
        return Ok(());
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(smb_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    // Every call is verified here: the bearer token forwarded by the gateway becomes the caller; no
    // header is taken at its word. The auth service checks sessions itself, so it only verifies tokens;
    // the others read auth's public keys (JWKS) and ask it about sessions over gRPC.
    let keys_from: Arc<dyn smb_proto::auth::v1::auth_service_server::AuthService> =
        match &platform.auth {
            Some(a) => a.clone(),
            None => Arc::new(smb_gateway::remote::RemoteAuth::connect_lazy(
                &cfg.services.auth_url,
                Duration::from_millis(cfg.services.timeout_ms.max(1)),
            )?),
        };
    let authn = Arc::new(authenticator(keys_from, &cfg, &shutdown).await?);
    let router = tonic::transport::Server::builder()
        .layer(smb_gateway::metrics::RequestMetricsLayer)
        .layer(smb_gateway::authn::VerifyCallers::layer(
            authn,
            service != "auth",
        ))
        .add_service(health)
        .add_service(reflection);
    let router = match service {
        "auth" => router.add_service(AuthServiceServer::from_arc(
            platform.auth.clone().context("auth holds its keys")?,
        )),
        "orchestrator" => router
            .add_service(OrchestratorServiceServer::new(OrchestratorGrpc(
                platform.orchestrator.clone(),
            )))
            .add_service(ActionsServiceServer::new(ActionsServiceImpl(
                platform.ops.clone(),
            ))),
        _ => router
            .add_service(ConnectorsServiceServer::from_arc(
                platform.connectors.clone(),
            ))
            .add_service(WebhooksServiceServer::from_arc(
                platform
                    .webhooks
                    .clone()
                    .context("connectors hold the credential key")?,
            )),
    };
    tracing::info!(%addr, service, "serving");
    router
        .serve_with_shutdown(addr, shutdown.cancelled_owned())
        .await?;
    Ok(())
}
