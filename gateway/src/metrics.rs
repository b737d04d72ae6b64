//! Request metrics and spans: rate, errors and latency per HTTP route and gRPC method, on the gateway's port
//! and on every service's gRPC port (`smb serve`); with traces exported, a server span per request that
//! continues the caller's trace.
//!
//! - `smb_requests_total{protocol, route, status}`: `protocol` is `http`, `grpc` or `grpc-web`; `route` the
//!   matched route pattern (`/v1/connectors/{id}`) or the gRPC method path, `other` for anything else (a
//!   path nobody routes, a method nobody serves), so a caller cannot grow the label set; `status` the HTTP
//!   status code, or the gRPC code name when the response carries one in its headers (errors do), else `OK`.
//! - `smb_request_duration_seconds{protocol, route}`: time to the response's headers (a streamed answer's
//!   first event).

use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::MatchedPath;
use futures::future::BoxFuture;
use http::{Request, Response};
use tracing::Instrument;

#[derive(Debug, Clone, Copy, Default)]
pub struct RequestMetricsLayer;

impl<S> tower::Layer<S> for RequestMetricsLayer {
    type Service = RequestMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestMetrics { inner }
    }
}

#[derive(Debug, Clone)]
pub struct RequestMetrics<S> {
    inner: S,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http,
    Grpc,
    GrpcWeb,
}

impl Protocol {
    fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
            Protocol::GrpcWeb => "grpc-web",
        }
    }
}

/// The `'static` copy of a label value. Only values from bounded sets reach it (route patterns, HTTP status
/// codes), so the set stays small; labels then cost no allocation per request.
fn intern(s: &str) -> &'static str {
    static SET: std::sync::OnceLock<std::sync::RwLock<std::collections::HashSet<&'static str>>> =
        std::sync::OnceLock::new();
    let set = SET.get_or_init(Default::default);
    if let Some(v) = set.read().expect("labels").get(s) {
        return v;
    }
    let mut w = set.write().expect("labels");
    if let Some(v) = w.get(s) {
        return v;
    }
    let v: &'static str = Box::leak(s.to_owned().into_boxed_str());
    w.insert(v);
    v
}

fn classify<B>(req: &Request<B>) -> (Protocol, &'static str) {
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let protocol = if content_type.starts_with("application/grpc-web") {
        Protocol::GrpcWeb
    } else if content_type.starts_with("application/grpc") {
        Protocol::Grpc
    } else {
        Protocol::Http
    };
    let route = match protocol {
        Protocol::Grpc | Protocol::GrpcWeb => smb_proto::grpc_methods()
            .get(req.uri().path())
            .map_or("other", String::as_str),
        Protocol::Http => req
            .extensions()
            .get::<MatchedPath>()
            .map_or("other", |m| intern(m.as_str())),
    };
    (protocol, route)
}

/// The gRPC code's name in a response's headers (a trailers-only error), or `OK`.
fn grpc_status<B>(res: &Response<B>) -> &'static str {
    let code = res
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0);
    match tonic::Code::from_i32(code) {
        tonic::Code::Ok => "OK",
        tonic::Code::Cancelled => "CANCELLED",
        tonic::Code::Unknown => "UNKNOWN",
        tonic::Code::InvalidArgument => "INVALID_ARGUMENT",
        tonic::Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        tonic::Code::NotFound => "NOT_FOUND",
        tonic::Code::AlreadyExists => "ALREADY_EXISTS",
        tonic::Code::PermissionDenied => "PERMISSION_DENIED",
        tonic::Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        tonic::Code::FailedPrecondition => "FAILED_PRECONDITION",
        tonic::Code::Aborted => "ABORTED",
        tonic::Code::OutOfRange => "OUT_OF_RANGE",
        tonic::Code::Unimplemented => "UNIMPLEMENTED",
        tonic::Code::Internal => "INTERNAL",
        tonic::Code::Unavailable => "UNAVAILABLE",
        tonic::Code::DataLoss => "DATA_LOSS",
        tonic::Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

fn record(protocol: Protocol, route: &'static str, status: &'static str, started: Instant) {
    let p = protocol.as_str();
    metrics::histogram!("smb_request_duration_seconds", "protocol" => p, "route" => route)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("smb_requests_total", "protocol" => p, "route" => route, "status" => status)
        .increment(1);
}

impl<S, B, RB> tower::Service<Request<B>> for RequestMetrics<S>
where
    S: tower::Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let started = Instant::now();
        let (protocol, route) = classify(&req);
        // With traces exported, every request is a server span continuing the caller's trace
        // (`traceparent`): a gRPC call from the gateway, or a client that traces its own requests.
        // A request that is not traced (sampled out here or by its caller) makes no span at all.
        let decision = smb_core::telemetry::decide(req.headers());
        let span = match &decision {
            smb_core::telemetry::Decision::Traced(_) => {
                let span = tracing::info_span!(
                    "request",
                    otel.name = route,
                    otel.kind = "server",
                    protocol = protocol.as_str(),
                    status = tracing::field::Empty,
                    trace_id = tracing::field::Empty,
                );
                decision.adopt(&span);
                span
            }
            _ => tracing::Span::none(),
        };
        let fut = span.in_scope(|| self.inner.call(req));
        Box::pin(
            decision.scope(
                async move {
                    let res = fut.await;
                    let status = match &res {
                        Ok(r) if protocol == Protocol::Http => intern(r.status().as_str()),
                        Ok(r) => grpc_status(r),
                        Err(_) => "error",
                    };
                    tracing::Span::current().record("status", status);
                    record(protocol, route, status, started);
                    res
                }
                .instrument(span),
            ),
        )
    }
}

/// `GET /metrics`: this process's metrics in the Prometheus text format.
pub async fn handler() -> Response<axum::body::Body> {
    match smb_core::telemetry::render().await {
        Some(text) => Response::builder()
            .header(
                http::header::CONTENT_TYPE,
                smb_core::telemetry::CONTENT_TYPE,
            )
            .body(axum::body::Body::from(text))
            .expect("static headers"),
        None => Response::builder()
            .status(http::StatusCode::NOT_FOUND)
            .body(axum::body::Body::from(
                "metrics are not recorded in this process\n",
            ))
            .expect("static headers"),
    }
}

/// A small HTTP server for `server.admin_addr`: `/metrics`, `/healthz` and `/readyz` (the checks given).
/// The same `/healthz` and `/readyz` as the gateway's port.
pub fn admin_router(readiness: Vec<(String, crate::server::ReadyCheck)>) -> axum::Router {
    use axum::routing::get;
    let readiness = std::sync::Arc::new(readiness);
    axum::Router::new()
        .route("/metrics", get(handler))
        .route("/healthz", get(crate::routes::healthz))
        .route(
            "/readyz",
            get(move || {
                let readiness = readiness.clone();
                async move { crate::routes::readiness_report(&readiness).await }
            }),
        )
}
