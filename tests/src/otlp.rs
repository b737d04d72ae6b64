//! A test OTLP receiver: a tonic server implementing the collector's `TraceService`, keeping every span it is
//! sent (with the `service.name` of the process that sent it) for a test to look at.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;

/// One received span.
#[derive(Debug, Clone)]
pub struct Span {
    /// The sending process's `service.name` (`smb-gateway`, `smb-orchestrator`, …).
    pub service: String,
    pub name: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub attributes: Vec<(String, String)>,
}

impl Span {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Span>>>,
    /// Spans received, kept or not.
    count: Arc<AtomicU64>,
    /// Whether spans are kept (a test looks at them) or only counted (a benchmark: a collector on another
    /// machine costs the traced process nothing beyond sending).
    keep: bool,
}

fn text(kv: &KeyValue) -> String {
    match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Any::StringValue(s)) => s.clone(),
        Some(Any::IntValue(i)) => i.to_string(),
        Some(Any::BoolValue(b)) => b.to_string(),
        Some(Any::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        let received: usize = request
            .resource_spans
            .iter()
            .flat_map(|rs| rs.scope_spans.iter())
            .map(|ss| ss.spans.len())
            .sum();
        self.count.fetch_add(received as u64, Ordering::Relaxed);
        if !self.keep {
            return Ok(tonic::Response::new(ExportTraceServiceResponse::default()));
        }
        let mut out = self.spans.lock().unwrap();
        for rs in request.resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .map(text)
                .unwrap_or_default();
            for s in rs.scope_spans.into_iter().flat_map(|ss| ss.spans) {
                out.push(Span {
                    service: service.clone(),
                    name: s.name,
                    trace_id: hex::encode(&s.trace_id),
                    span_id: hex::encode(&s.span_id),
                    parent_span_id: hex::encode(&s.parent_span_id),
                    attributes: s
                        .attributes
                        .iter()
                        .map(|kv| (kv.key.clone(), text(kv)))
                        .collect(),
                });
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// The receiver, serving on a free loopback port until dropped.
pub struct Receiver {
    pub url: String,
    spans: Collector,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    /// A receiver that keeps every span, for [`Receiver::spans`] and [`Receiver::wait_for`].
    pub async fn start() -> Self {
        Self::serve(true).await
    }

    /// A receiver that only counts spans ([`Receiver::received`]), for benchmarks.
    pub async fn counting() -> Self {
        Self::serve(false).await
    }

    async fn serve(keep: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let spans = Collector {
            keep,
            ..Collector::default()
        };
        let service = TraceServiceServer::new(spans.clone());
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                .await;
        });
        Self {
            url: format!("http://{addr}"),
            spans,
            task,
        }
    }

    pub fn spans(&self) -> Vec<Span> {
        self.spans.spans.lock().unwrap().clone()
    }

    /// How many spans were received (kept or not).
    pub fn received(&self) -> u64 {
        self.spans.count.load(Ordering::Relaxed)
    }

    /// Waits (up to 30 s) until `ready` holds for the spans received so far, and returns them.
    pub async fn wait_for(&self, what: &str, ready: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let start = Instant::now();
        loop {
            let spans = self.spans();
            if ready(&spans) {
                return spans;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no {what} within 30 s; received: {:#?}",
                spans
                    .iter()
                    .map(|s| format!("{} {} {}", s.service, s.name, s.trace_id))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
