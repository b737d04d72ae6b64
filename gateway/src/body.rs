//! Request body limits with a lingering close: every body is read to its end (up to the route's limit)
//! before any handler answers, and a body over the limit is answered `413` (on grpc-web, the status our
//! error table gives `payload_too_large`) only after the rest of it has been drained, up to a bound of bytes and time.
//!
//! Why: an HTTP/1.1 server that answers early and closes while the client is still writing makes the
//! client's kernel see a reset; the client then reports "broken pipe" or "connection reset" instead of the
//! answer. Draining (nginx's lingering close) lets the client finish writing and read the `413`. Past the
//! drain bound the connection is closed anyway, so nobody can make the gateway read without end.
//!
//! Native gRPC (HTTP/2, `application/grpc`) passes through untouched: HTTP/2 ends a stream early without
//! hurting the connection, and tonic applies its own message size limit.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::HeaderValue;
use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, EXPECT};
use smb_core::{Error, ErrorCode};

/// Limits for one group of routes.
#[derive(Debug, Clone, Copy)]
pub struct BodyPolicy {
    /// The largest body the routes accept.
    pub limit: usize,
    /// After a body goes over `limit`, at most this many more bytes are read and thrown away…
    pub drain_bytes: usize,
    /// …for at most this long, before the connection is closed.
    pub drain_time: Duration,
}

/// The policies by route: webhooks have their own limit, everything else the API limit.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub api: BodyPolicy,
    pub webhooks: BodyPolicy,
}

impl BodyLimits {
    fn for_path(&self, path: &str) -> &BodyPolicy {
        if path.starts_with("/webhooks/") {
            &self.webhooks
        } else {
            &self.api
        }
    }
}

const TOO_LARGE: &str = "request body is too large; send a smaller body";

fn content_type(req: &Request) -> &str {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The middleware: buffers the body (bounded) or rejects it after draining.
pub async fn limit_body(
    State(limits): State<Arc<BodyLimits>>,
    req: Request,
    next: Next,
) -> Response {
    let ct = content_type(&req);
    let grpc_web = ct.starts_with("application/grpc-web");
    if ct.starts_with("application/grpc") && !grpc_web {
        return next.run(req).await;
    }
    let policy = *limits.for_path(req.uri().path());
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let expects_continue = req
        .headers()
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    let (parts, body) = req.into_parts();
    if declared.is_some_and(|n| n > policy.limit as u64) {
        // A client that waits for `100 Continue` has not sent the body: answer at once.
        if !expects_continue {
            drain(body.into_data_stream(), &policy).await;
        }
        return too_large(grpc_web, &parts.headers);
    }
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) if buf.len() + c.len() <= policy.limit => buf.extend_from_slice(&c),
            Ok(_) => {
                drain(stream, &policy).await;
                return too_large(grpc_web, &parts.headers);
            }
            Err(e) => {
                tracing::debug!(error = %e, "request body not read");
                return Error::invalid("could not read the request body; send it again")
                    .into_response();
            }
        }
    }
    let req = Request::from_parts(parts, Body::from(Bytes::from(buf)));
    next.run(req).await
}

/// Reads and discards up to the policy's bound of bytes and time.
async fn drain(mut stream: axum::body::BodyDataStream, p: &BodyPolicy) {
    let deadline = tokio::time::Instant::now() + p.drain_time;
    let mut read = 0usize;
    while read <= p.drain_bytes {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(c))) => read += c.len(),
            _ => break,
        }
    }
}

fn too_large(grpc_web: bool, req_headers: &http::HeaderMap) -> Response {
    let mut resp = if grpc_web {
        // grpc-web carries the status in a trailers-only response: HTTP 200 with `grpc-status` headers.
        let status: tonic::Status = Error::new(ErrorCode::PayloadTooLarge, TOO_LARGE).into();
        let mut r = status.into_http::<Body>();
        let ct = req_headers
            .get(CONTENT_TYPE)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static("application/grpc-web+proto"));
        r.headers_mut().insert(CONTENT_TYPE, ct);
        r
    } else {
        Error::new(ErrorCode::PayloadTooLarge, TOO_LARGE).into_response()
    };
    // The rest of an over-long body may still be on its way: do not reuse this connection.
    resp.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    resp
}
