//! Logs, traces and metrics.
//!
//! Logs go to stderr (stdout is the program's own output): `SMB_LOG` sets the filter (default `info`; the
//! embedded search engine's own chatter only from `error`), `SMB_LOG_FORMAT=json|text` the format; without
//! it, `smb serve` logs JSON (one object per line, for a log collector) and `smb up` readable text. A log
//! line written inside a traced request carries its `trace_id`.
//!
//! Traces are exported over OTLP/gRPC when `telemetry.otlp_endpoint` (or `OTEL_EXPORTER_OTLP_ENDPOINT`) is
//! set; the W3C `traceparent` travels in gRPC metadata, HTTP headers, outbox rows and Kafka headers, so one
//! question or one sync is one trace across processes. Unset, no span is exported and the request path
//! creates none of the request spans. Set, each request that starts a trace is traced up to
//! `telemetry.traces_per_second` per process, then `telemetry.sample_ratio` of the rest ([`decide`]); one
//! that is not makes no span anywhere, so tracing's cost under load is bounded by those two settings.
//!
//! Metrics are recorded through the `metrics` facade anywhere in the code and rendered in the Prometheus text
//! format by [`render`]. Labels are bounded sets (routes, methods, intents, sources, outcomes): never a
//! tenant, a user or anything a caller writes. Gauges that are cheaper to read than to keep up to date (bus
//! lag, outbox depth) are read at scrape time by [`Collector`]s.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// What the process runs on: its service name in traces, and where they go.
pub struct Settings<'a> {
    /// `smb` for `smb up`, `smb-<service>` for `smb serve <service>`.
    pub service: &'a str,
    /// JSON logs unless `SMB_LOG_FORMAT` says otherwise.
    pub json_by_default: bool,
    /// `telemetry.otlp_endpoint`; `OTEL_EXPORTER_OTLP_ENDPOINT` when unset.
    pub otlp_endpoint: Option<&'a str>,
    /// `telemetry.traces_per_second`: requests that start a trace, traced each second before sampling.
    pub traces_per_second: u32,
    /// `telemetry.sample_ratio`: of the requests beyond that, the share traced.
    pub sample_ratio: f64,
}

static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (an OTLP endpoint is configured): request spans are made only then.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// Which requests that start a trace are traced: every one up to `per_second` a second, then `ratio` of the
/// rest. A shop's few questions are all traced; under load the cost is bounded.
struct Sampling {
    per_second: u32,
    ratio: f64,
    /// The current second (since the process started) in the high 32 bits, roots traced in it in the low.
    window: std::sync::atomic::AtomicU64,
    started: std::time::Instant,
}

static SAMPLING: OnceLock<Sampling> = OnceLock::new();

impl Sampling {
    fn take(&self) -> bool {
        let second = self.started.elapsed().as_secs() & 0xffff_ffff;
        let mut cur = self.window.load(Ordering::Relaxed);
        loop {
            let (s, n) = (cur >> 32, cur & 0xffff_ffff);
            let next = if s == second {
                if n >= u64::from(self.per_second) {
                    break;
                }
                cur + 1
            } else {
                (second << 32) | 1
            };
            match self
                .window
                .compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(seen) => cur = seen,
            }
        }
        self.ratio >= 1.0 || (self.ratio > 0.0 && rand::random::<f64>() < self.ratio)
    }
}

tokio::task_local! {
    /// Inside a request that is not traced: the `traceparent` (sampled flag off) it passes on, so that the
    /// services it calls and the work it queues do not start traces of their own.
    static UNSAMPLED: Arc<str>;
}

/// How one incoming request is traced, decided once where it enters the process ([`decide`]).
pub enum Decision {
    /// Nothing is exported: no span.
    Off,
    /// Traced: make its span and [`Decision::adopt`] it (it continues the caller's trace, if any).
    Traced(opentelemetry::Context),
    /// Not traced (the caller's trace is not sampled, or the sampler said no): no span at all; the request
    /// runs [`Decision::scope`]d so that what it calls is not traced either.
    Unsampled(Arc<str>),
}

/// Decides how a request with `headers` is traced: as its caller's `traceparent` says when it carries one
/// (sampled or not), else by the sampler (`telemetry.traces_per_second`, then `telemetry.sample_ratio`).
pub fn decide(headers: &http::HeaderMap) -> Decision {
    decide_from(headers.get("traceparent").and_then(|v| v.to_str().ok()))
}

/// Decides how work carrying `traceparent` (a message's, a row's) is traced, as [`decide`] does.
pub fn decide_from(traceparent: Option<&str>) -> Decision {
    if !exporting() {
        return Decision::Off;
    }
    if traceparent.is_some() {
        let cx = TraceContextPropagator::new().extract(&One(traceparent));
        let sc = cx.span().span_context().clone();
        if sc.is_valid() {
            return match sc.is_sampled() {
                true => Decision::Traced(cx),
                false => {
                    Decision::Unsampled(format!("00-{}-{}-00", sc.trace_id(), sc.span_id()).into())
                }
            };
        }
    }
    if SAMPLING.get().is_none_or(Sampling::take) {
        return Decision::Traced(opentelemetry::Context::new());
    }
    Decision::Unsampled(
        format!(
            "00-{:032x}-{:016x}-00",
            rand::random::<u128>().max(1),
            rand::random::<u64>().max(1)
        )
        .into(),
    )
}

impl Decision {
    /// Makes `span` (of a [`Decision::Traced`] request) a child of the caller's context, and notes its
    /// trace id for logs.
    pub fn adopt(&self, span: &tracing::Span) {
        if let Decision::Traced(cx) = self {
            adopt(span, cx.clone());
        }
    }

    /// Runs `fut` under this decision (an unsampled request's `traceparent` goes with its calls).
    pub async fn scope<F: std::future::Future>(self, fut: F) -> F::Output {
        match self {
            Decision::Unsampled(tp) => UNSAMPLED.scope(tp, fut).await,
            _ => fut.await,
        }
    }
}

/// Whether the code running now is part of a traced request: child spans are made only then.
pub fn traced() -> bool {
    exporting() && !tracing::Span::current().is_disabled()
}

/// Flushes the spans not yet exported when dropped (at the end of `main`).
pub struct Guard(Option<SdkTracerProvider>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take()
            && let Err(e) = p.shutdown_with_timeout(Duration::from_secs(5))
        {
            eprintln!("trace export did not finish: {e}");
        }
    }
}

/// Starts logging, tracing (when an endpoint is configured) and the metrics recorder.
pub fn init(settings: Settings<'_>) -> Guard {
    let filter = EnvFilter::try_from_env("SMB_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,qdrant_edge=error"));
    let json = match std::env::var("SMB_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok("text") => false,
        _ => settings.json_by_default,
    };
    let endpoint = settings
        .otlp_endpoint
        .map(str::to_string)
        .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())
        .filter(|e| !e.trim().is_empty());
    let mut export_error = None;
    let provider =
        endpoint.and_then(
            |endpoint| match tracer_provider(&endpoint, settings.service) {
                Ok(p) => Some(p),
                Err(e) => {
                    export_error = Some(format!("{endpoint}: {e}"));
                    None
                }
            },
        );
    // Each span costs what it carries: no busy/idle timings, thread, source-location or target attributes
    // (a span's name and fields say where it is), and no OpenTelemetry context attached on every poll of
    // an instrumented future: propagation reads a span's context from the span itself
    // (`OpenTelemetrySpanExt::context`), and a child's parent is its tracing parent.
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("smb"))
            .with_tracked_inactivity(false)
            .with_threads(false)
            .with_location(false)
            .with_target(false)
            .with_context_activation(false)
    });
    let text = (!json).then(|| {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
    });
    let json = json.then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_target(false)
    });
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(text)
        .with(json)
        .with(otel)
        .try_init();
    if let Some(e) = export_error {
        tracing::error!(error = %e, "telemetry.otlp_endpoint: traces are not exported");
    }
    if provider.is_some() {
        let _ = SAMPLING.set(Sampling {
            per_second: settings.traces_per_second,
            ratio: settings.sample_ratio,
            window: Default::default(),
            started: std::time::Instant::now(),
        });
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        EXPORTING.store(true, Ordering::Relaxed);
    }
    install_metrics();
    Guard(provider)
}

fn tracer_provider(endpoint: &str, service: &str) -> anyhow::Result<SdkTracerProvider> {
    use opentelemetry_otlp::WithExportConfig;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(5))
        .build()?;
    // The SDK's batch processor: a finished span is counted and put on a bounded queue (2,048 spans by
    // default, the overflow dropped and counted) that its own thread drains every few seconds or when a
    // batch (512) is full, so a request never waits for a collector and no task is woken per span.
    let processor = opentelemetry_sdk::trace::BatchSpanProcessor::builder(exporter).build();
    // Whether a trace is recorded is decided where a request enters ([`decide`]); below that, a span
    // follows its parent (and background work that starts a trace records it).
    Ok(SdkTracerProvider::builder()
        .with_sampler(opentelemetry_sdk::trace::Sampler::ParentBased(Box::new(
            opentelemetry_sdk::trace::Sampler::AlwaysOn,
        )))
        .with_span_processor(processor)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service.to_string())
                .build(),
        )
        .build())
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

struct One<'a>(Option<&'a str>);

impl Extractor for One<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0).flatten()
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

/// Makes `span` a child of `traceparent` (a message's, a stored row's), and notes its trace id for logs.
pub fn continue_from(span: &tracing::Span, traceparent: Option<&str>) {
    if traceparent.is_none() {
        record_trace_id(span);
        return;
    }
    let cx = TraceContextPropagator::new().extract(&One(traceparent));
    adopt(span, cx);
}

fn adopt(span: &tracing::Span, cx: opentelemetry::Context) {
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
    record_trace_id(span);
}

fn record_trace_id(span: &tracing::Span) {
    let id = span.context().span().span_context().trace_id();
    if id != opentelemetry::trace::TraceId::INVALID {
        span.record("trace_id", tracing::field::display(id));
    }
}

/// Writes the current span's context into outgoing headers (gRPC metadata is headers); inside an
/// unsampled request, its unsampled `traceparent`.
pub fn inject_headers(headers: &mut http::HeaderMap) {
    if !exporting() {
        return;
    }
    let span = tracing::Span::current();
    if span.is_disabled() {
        if let Ok(Ok(v)) = UNSAMPLED.try_with(|tp| http::HeaderValue::from_str(tp)) {
            headers.insert("traceparent", v);
        }
        return;
    }
    TraceContextPropagator::new().inject_context(&span.context(), &mut HeaderInjector(headers));
}

/// The current span's W3C `traceparent`, to store with what this work writes (an outbox row, a message);
/// `None` when traces are not exported.
pub fn traceparent() -> Option<String> {
    if !exporting() {
        return None;
    }
    let span = tracing::Span::current();
    if span.is_disabled() {
        return UNSAMPLED.try_with(|tp| tp.to_string()).ok();
    }
    let cx = span.context();
    let mut carrier = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// Histogram buckets of every `*_seconds` metric: from half a millisecond (a cached answer) to a minute.
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process's metrics recorder (once; later calls do nothing). Until it is installed, metrics
/// are recorded nowhere and cost next to nothing.
pub fn install_metrics() {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .expect("bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        if let Err(e) = metrics::set_global_recorder(recorder) {
            tracing::warn!(error = %e, "metrics recorder already installed; this process's metrics are not exported");
        }
        describe();
        // Histograms keep each observation until the next upkeep: drained every 5 s, so a process nobody
        // scrapes holds a bounded amount (a scrape drains them too).
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let h = handle.clone();
            rt.spawn(async move {
                let mut every = tokio::time::interval(Duration::from_secs(5));
                loop {
                    every.tick().await;
                    h.run_upkeep();
                }
            });
        }
        handle
    });
}

/// The `# HELP` line of every metric the platform records.
fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "smb_requests_total",
        "Requests by protocol, route or gRPC method, and status."
    );
    describe_histogram!(
        "smb_request_duration_seconds",
        Unit::Seconds,
        "Time to a response's headers, by protocol and route or gRPC method."
    );
    describe_counter!(
        "smb_answers_total",
        "Answers by intent and cache use (hit, miss, bypass)."
    );
    describe_counter!(
        "smb_sync_records_total",
        "Records loaded by the workers, by source."
    );
    describe_counter!(
        "smb_sync_records_failed_total",
        "Records rejected by the workers, by source."
    );
    describe_counter!(
        "smb_sync_runs_total",
        "Finished sync runs by source and status."
    );
    describe_gauge!(
        "smb_bus_consumer_lag",
        "Messages after the group's committed position, for this process's consumers."
    );
    describe_gauge!(
        "smb_outbox_depth",
        "Events written but not yet relayed to the bus."
    );
    describe_counter!(
        "smb_webhooks_total",
        "Webhook deliveries by source, outcome and rejection reason."
    );
    describe_counter!(
        "smb_llm_calls_total",
        "Language-model calls by provider and outcome."
    );
    describe_counter!(
        "smb_llm_tokens_total",
        "Language-model tokens by provider and direction."
    );
    describe_counter!(
        "smb_llm_fallbacks_total",
        "Answers not phrased by the first provider: by another provider, deterministic, or over budget."
    );
}

/// A gauge read at scrape time (e.g. consumer lag): it sets its values through the `metrics` macros.
pub type Collector = std::sync::Arc<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

static COLLECTORS: Mutex<Vec<Collector>> = Mutex::new(Vec::new());

/// Adds a collector, run before every [`render`].
pub fn register_collector(c: Collector) {
    COLLECTORS.lock().expect("collectors").push(c);
}

/// How long the collectors may take at one scrape; one that takes longer leaves its last values.
const COLLECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The Prometheus text exposition of this process's metrics; `None` before [`install_metrics`].
pub async fn render() -> Option<String> {
    let handle = HANDLE.get()?;
    let collectors: Vec<Collector> = COLLECTORS.lock().expect("collectors").clone();
    let all = futures::future::join_all(collectors.iter().map(|c| c()));
    if tokio::time::timeout(COLLECT_TIMEOUT, all).await.is_err() {
        tracing::warn!("metrics collectors took over 3 s; their gauges keep their last values");
    }
    handle.run_upkeep();
    Some(handle.render())
}

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    fn sampling(per_second: u32, ratio: f64) -> Sampling {
        Sampling {
            per_second,
            ratio,
            window: Default::default(),
            started: std::time::Instant::now(),
        }
    }

    #[test]
    fn every_request_up_to_the_rate_then_the_ratio() {
        let s = sampling(100, 0.0);
        let taken = (0..1000).filter(|_| s.take()).count();
        // Within one second (a slow machine may straddle two: at most twice the rate).
        assert!((100..=200).contains(&taken), "{taken}");
        let s = sampling(0, 1.0);
        assert!((0..1000).all(|_| s.take()));
        let s = sampling(0, 0.25);
        let taken = (0..20_000).filter(|_| s.take()).count();
        assert!((4_000..6_000).contains(&taken), "{taken}");
    }

    #[test]
    fn a_new_second_starts_a_new_allowance() {
        let s = sampling(3, 0.0);
        assert_eq!((0..10).filter(|_| s.take()).count(), 3);
        // As if a second had gone by.
        s.window.store(0, Ordering::Relaxed);
        let s2 = Sampling {
            started: std::time::Instant::now() - Duration::from_secs(1),
            ..s
        };
        assert_eq!((0..10).filter(|_| s2.take()).count(), 3);
    }
}
