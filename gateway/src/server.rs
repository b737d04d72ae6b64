//! Assembles the gateway: JSON routes, gRPC and grpc-web services, health, reflection and `/metrics` on one
//! port, with request ids, body limits, tracing and request metrics around everything.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, patch, post};
use futures::future::BoxFuture;
use smb_core::Error;
use smb_core::cache::DynCache;
use smb_core::config::Config;
use smb_proto::auth::v1::auth_service_server::{AuthService, AuthServiceServer};
use smb_proto::connectors::v1::connectors_service_server::{
    ConnectorsService, ConnectorsServiceServer,
};
use smb_proto::connectors::v1::webhooks_service_server::WebhooksService;
use smb_proto::orchestrator::v1::actions_service_server::{ActionsService, ActionsServiceServer};
use smb_proto::orchestrator::v1::orchestrator_service_server::{
    OrchestratorService, OrchestratorServiceServer,
};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::authn::Authenticator;
use crate::body::{self, BodyLimits, BodyPolicy};
use crate::edge::Edge;
use crate::ratelimit::RateLimiter;
use crate::routes;

/// The services the gateway fronts: in-process implementations or remote clients.
#[derive(Clone)]
pub struct Services {
    pub auth: Arc<dyn AuthService>,
    pub orchestrator: Arc<dyn OrchestratorService<ProcessStreamStream = ChunkStream>>,
    pub actions: Arc<dyn ActionsService>,
    pub connectors: Arc<dyn ConnectorsService>,
    pub webhooks: Arc<dyn WebhooksService>,
}

/// A streamed answer: text deltas, then the whole response.
pub type ChunkStream = std::pin::Pin<
    Box<
        dyn futures::Stream<Item = Result<smb_proto::orchestrator::v1::ProcessChunk, tonic::Status>>
            + Send,
    >,
>;

/// Webhook bodies may be larger than API bodies (a big order), up to this.
pub const WEBHOOK_BODY_LIMIT: usize = 1024 * 1024;

/// A named dependency check for `/readyz`.
pub type ReadyCheck = Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>;

pub struct AppState {
    pub services: Services,
    /// Whose `X-Forwarded-For` is believed.
    pub proxies: crate::client::TrustedProxies,
    pub authn: Authenticator,
    pub limiter: RateLimiter,
    pub readiness: Vec<(String, ReadyCheck)>,
}

pub struct Gateway {
    state: Arc<AppState>,
    request_timeout: Duration,
    max_in_flight: usize,
    body_limit: usize,
    body_limits: Arc<BodyLimits>,
    /// `/metrics` on this port (off when `server.admin_addr` serves it away from public traffic).
    metrics_here: bool,
}

impl Gateway {
    pub async fn new(
        services: Services,
        cache: DynCache,
        cfg: &Config,
        readiness: Vec<(String, ReadyCheck)>,
    ) -> Result<Self, Error> {
        let authn = Authenticator::new(
            services.auth.clone(),
            &cfg.auth.issuer,
            &cfg.auth.audience,
            Duration::from_secs(cfg.auth.jwks_refresh_secs.max(1)),
        )
        .await?;
        let g = &cfg.gateway;
        let limiter = RateLimiter::new(
            cache,
            g.default_rate_limit,
            g.rate_limits.clone(),
            g.public_rate_limit,
        );
        Ok(Self {
            state: Arc::new(AppState {
                services,
                proxies: crate::client::TrustedProxies::parse(&g.trusted_proxies)?,
                authn,
                limiter,
                readiness,
            }),
            metrics_here: cfg.server.admin_addr.is_none(),
            request_timeout: Duration::from_millis(g.request_timeout_ms.max(1)),
            max_in_flight: g.max_in_flight.max(1),
            body_limit: g.body_limit_bytes,
            body_limits: Arc::new(BodyLimits {
                api: BodyPolicy {
                    limit: g.body_limit_bytes,
                    drain_bytes: g.drain_limit_bytes,
                    drain_time: Duration::from_millis(g.drain_timeout_ms),
                },
                webhooks: BodyPolicy {
                    limit: WEBHOOK_BODY_LIMIT,
                    drain_bytes: g.drain_limit_bytes,
                    drain_time: Duration::from_millis(g.drain_timeout_ms),
                },
            }),
        })
    }

    pub fn router(&self) -> Router {
        let state = self.state.clone();
        let protected = Router::new()
            .route("/v1/auth/logout", post(routes::logout))
            .route("/v1/ai/query", post(routes::query))
            .route("/v1/actions", get(routes::list_actions))
            .route("/v1/actions/{id}", get(routes::get_action))
            .route("/v1/actions/{id}/confirm", post(routes::confirm_action))
            .route("/v1/actions/{id}/reject", post(routes::reject_action))
            .route("/v1/tasks", get(routes::list_tasks))
            .route("/v1/tasks/{id}", patch(routes::update_task))
            .route("/v1/audit", get(routes::list_audit))
            .route("/v1/users", post(routes::add_user))
            .route(
                "/v1/connectors",
                post(routes::create_connector).get(routes::list_connectors),
            )
            .route(
                "/v1/connectors/{id}",
                get(routes::get_connector)
                    .delete(routes::delete_connector)
                    .patch(routes::update_connector),
            )
            .route("/v1/connectors/{id}/sync", post(routes::trigger_sync))
            .route("/v1/connectors/{id}/syncs/{sync_id}", get(routes::get_sync))
            .route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                routes::require_auth,
            ));
        let json = Router::new()
            .route("/v1/auth/signup", post(routes::signup))
            .route("/v1/auth/login", post(routes::login))
            .route("/v1/auth/refresh", post(routes::refresh))
            .merge(protected)
            .with_state(state.clone())
            .layer(DefaultBodyLimit::max(self.body_limit));
        let webhooks = Router::new()
            .route("/webhooks/{source}/{id}", post(routes::webhook))
            .with_state(state.clone())
            .layer(DefaultBodyLimit::max(WEBHOOK_BODY_LIMIT));

        let edge = Edge(state);
        let (health_reporter, health) = tonic_health::server::health_reporter();
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(smb_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()
            .expect("descriptor sets are valid");
        tokio::spawn(async move {
            health_reporter
                .set_serving::<AuthServiceServer<Edge>>()
                .await;
            health_reporter
                .set_serving::<OrchestratorServiceServer<Edge>>()
                .await;
            health_reporter
                .set_serving::<ConnectorsServiceServer<Edge>>()
                .await;
            health_reporter
                .set_serving::<ActionsServiceServer<Edge>>()
                .await;
        });
        let grpc = tonic::service::Routes::new(health)
            .add_service(reflection)
            .add_service(AuthServiceServer::new(edge.clone()))
            .add_service(OrchestratorServiceServer::new(edge.clone()))
            .add_service(ActionsServiceServer::new(edge.clone()))
            .add_service(ConnectorsServiceServer::new(edge))
            .prepare()
            .into_axum_router()
            .layer(tonic_web::GrpcWebLayer::new());

        // Health stays outside the limits: an overloaded gateway is alive, and says so.
        let mut health = Router::new()
            .route("/healthz", get(routes::healthz))
            .route("/readyz", get(routes::readyz));
        if self.metrics_here {
            health = health.route("/metrics", get(crate::metrics::handler));
        }
        let health = health
            .with_state(self.state.clone())
            .merge(crate::web::router());
        json.merge(webhooks)
            .merge(grpc)
            .layer(
                tower::ServiceBuilder::new()
                    .layer(axum::error_handling::HandleErrorLayer::new(overloaded))
                    .load_shed()
                    .concurrency_limit(self.max_in_flight)
                    .timeout(self.request_timeout),
            )
            .merge(health)
            .fallback(|| async {
                Error::not_found("no such route; see the API section of the README")
            })
            .layer(axum::middleware::from_fn_with_state(
                self.body_limits.clone(),
                body::limit_body,
            ))
            .layer(PropagateRequestIdLayer::x_request_id())
            .layer(TraceLayer::new_for_http())
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(crate::metrics::RequestMetricsLayer)
    }

    /// Serves HTTP/1.1 and HTTP/2 (gRPC) on `listener` until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let app = self
            .router()
            .into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    }
}

/// The answer to a request that was shed (every slot busy) or ran past `gateway.request_timeout_ms`: the
/// JSON error, or a gRPC status for gRPC and grpc-web clients.
async fn overloaded(headers: http::HeaderMap, err: tower::BoxError) -> axum::response::Response {
    use axum::response::IntoResponse;
    let error = if err.is::<tower::timeout::error::Elapsed>() {
        Error::new(
            smb_core::ErrorCode::Timeout,
            "the request took too long and was stopped; retry, or ask about a shorter period",
        )
    } else if err.is::<tower::load_shed::error::Overloaded>() {
        let mut e = Error::new(
            smb_core::ErrorCode::Unavailable,
            "the server is busy; retry in a few seconds",
        );
        e.retry_after = Some(1);
        e
    } else {
        Error::internal("gateway limits", err)
    };
    let grpc = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/grpc"));
    if grpc {
        return tonic::Status::from(error).into_http::<axum::body::Body>();
    }
    error.into_response()
}
