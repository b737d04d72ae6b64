//! What an operator sees: `/metrics` scraped after a scripted workload (signup, a sync, questions answered
//! and then served from the cache, webhooks accepted, duplicated and rejected, a route nobody serves),
//! parsed with a Prometheus text parser; and gRPC health that reports NOT_SERVING while a dependency is
//! down and SERVING again once it is back; and traces: one question, and one sync, are each one trace across
//! the split deployment's processes, collected by a test OTLP receiver, and so is one webhook from its 202 to
//! the applied row.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prometheus_parse::{Scrape, Value as Prom};
use serde_json::json;
use smb_connectors::webhooks::sign;
use smb_tests::App;
use smb_tests::fake::{Dataset, FakeSaas, Sizes};
use smb_tests::otlp::{Receiver, Span};

use smb_tests::sync::{connect, sync};

async fn scrape(app: &App) -> (String, Scrape) {
    let r = app
        .http
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()[http::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    let text = r.text().await.unwrap();
    let parsed = Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text");
    (text, parsed)
}

/// The sum of the samples of `name` whose labels include `labels` (a histogram counts its observations).
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .filter(|x| labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match &x.value {
            Prom::Counter(v) | Prom::Gauge(v) | Prom::Untyped(v) => *v,
            Prom::Histogram(buckets) => buckets.iter().map(|b| b.count).fold(0.0, f64::max),
            Prom::Summary(_) => 0.0,
        })
        .sum()
}

const SECRET: &str = "whsec_metrics_0123456789";

/// A Shopify `customers/update` delivery `id` of `body` to connector `shop`, signed with `sig`; its status.
async fn customer_hook(app: &App, shop: &str, id: &str, body: &[u8], sig: String) -> u16 {
    app.http
        .post(format!("{}/webhooks/shopify/{shop}", app.url))
        .header("x-shopify-hmac-sha256", sig)
        .header("x-shopify-webhook-id", id)
        .header("x-shopify-topic", "customers/update")
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_as_a_scripted_workload_says() {
    let fake = FakeSaas::start(Dataset::generate(Sizes::SMALL_SHOP)).await;
    let app = App::start(&[]);
    let (_, before) = scrape(&app).await;
    assert_eq!(
        value(&before, "smb_answers_total", &[]),
        0.0,
        "a new process has answered nothing"
    );

    let owner = app.owner("America/New_York").await;
    let shop = connect(
        &app,
        &owner,
        json!({"type": "shopify", "config": {"shop_url": fake.url(), "access_token": smb_tests::fake::SHOP_TOKEN, "webhook_secret": SECRET}}),
    )
    .await;
    let run = sync(&app, &owner, &shop).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let synced = run["records_synced"].as_f64().unwrap();
    assert!(synced > 0.0);

    // The same question until the cache serves it: computed (more than once while the catalogue is re-read
    // after the sync: those answers are not cached), then served from the cache.
    let mut asked = 0.0;
    loop {
        let (s, b, _) = app
            .call(
                "POST",
                "/v1/ai/query",
                Some(json!({"query": "how many orders in 2025?"})),
                Some(&owner.token),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(b["intent"], "metrics", "{b}");
        asked += 1.0;
        let (_, m) = scrape(&app).await;
        if value(&m, "smb_answers_total", &[("cache", "hit")]) > 0.0 {
            break;
        }
        assert!(asked < 50.0, "the answer was never served from the cache");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Webhooks: one accepted, the same delivery again, and one with a bad signature.
    let body = serde_json::to_vec(
        &json!({"id": 77, "email": "new@example.com", "updated_at": "2025-03-01T00:00:00Z"}),
    )
    .unwrap();
    let hook = |sig: String| customer_hook(&app, &shop, "wh-metrics-1", &body, sig);
    let good = sign::shopify(SECRET.as_bytes(), &body);
    assert_eq!(hook(good.clone()).await, 202);
    assert_eq!(hook(good).await, 200);
    assert_eq!(hook("AAAA".into()).await, 401);
    // A route nobody serves.
    let (s, _, _) = app.call("GET", "/v1/nothing-here", None, None).await;
    assert_eq!(s, 404);
    // gRPC on the same port: a health check.
    let channel = tonic::transport::Channel::from_shared(app.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .unwrap();

    let (text, after) = scrape(&app).await;
    let q = [("protocol", "http"), ("route", "/v1/ai/query")];
    assert_eq!(
        value(
            &after,
            "smb_requests_total",
            &[q[0], q[1], ("status", "200")]
        ),
        asked,
        "{text}"
    );
    assert_eq!(
        value(&after, "smb_request_duration_seconds", &q),
        asked,
        "one observation per question"
    );
    // The first answers after a sync may be computed while the tenant's names are re-read, and those are
    // not cached: every question before the one the cache served is a miss.
    assert_eq!(
        value(
            &after,
            "smb_answers_total",
            &[("intent", "metrics"), ("cache", "miss")]
        ),
        asked - 1.0
    );
    assert_eq!(
        value(
            &after,
            "smb_answers_total",
            &[("intent", "metrics"), ("cache", "hit")]
        ),
        1.0
    );
    assert_eq!(
        value(&after, "smb_sync_records_total", &[("source", "shopify")]),
        synced,
        "records loaded = the run's records_synced"
    );
    assert_eq!(
        value(
            &after,
            "smb_sync_runs_total",
            &[("source", "shopify"), ("status", "succeeded")]
        ),
        1.0
    );
    for (outcome, reason, n) in [
        ("accepted", "", 1.0),
        ("duplicate", "", 1.0),
        ("rejected", "bad_signature", 1.0),
    ] {
        let mut labels = vec![("source", "shopify"), ("outcome", outcome)];
        if !reason.is_empty() {
            labels.push(("reason", reason));
        }
        assert_eq!(
            value(&after, "smb_webhooks_total", &labels),
            n,
            "{outcome}: {text}"
        );
    }
    assert_eq!(
        value(
            &after,
            "smb_requests_total",
            &[("route", "other"), ("status", "404")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "smb_requests_total",
            &[
                ("protocol", "grpc"),
                ("route", "/grpc.health.v1.Health/Check"),
                ("status", "OK")
            ]
        ),
        1.0,
        "{text}"
    );
    // The workers' consumer groups report their lag (all caught up after the sync).
    assert!(
        after
            .samples
            .iter()
            .any(|s| s.metric == "smb_bus_consumer_lag"),
        "{text}"
    );
    // Tenants and users are never labels.
    assert!(!text.contains(&owner.tenant_id), "tenant id in metrics");
}

/// A Redis of the test's own, on a free port, that it can stop and start again.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "redis did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            port,
            child: Some(child),
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn health_of(url: &str, service: &str) -> Option<i32> {
    let channel = tonic::transport::Channel::from_shared(url.to_string())
        .ok()?
        .connect_timeout(Duration::from_secs(2))
        .connect()
        .await
        .ok()?;
    let r = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.into(),
        })
        .await
        .ok()?;
    Some(r.into_inner().status)
}

async fn wait_health(
    url: &str,
    service: &str,
    want: tonic_health::pb::health_check_response::ServingStatus,
) {
    let start = Instant::now();
    loop {
        let got = health_of(url, service).await;
        if got == Some(want as i32) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "{url} {service:?}: health {got:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_is_not_serving_while_the_cache_is_down() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let kafka = smb_tests::kafka();
    let port = smb_tests::free_port();
    let mut redis = OwnRedis::start(port);
    let cache = format!("redis://127.0.0.1:{}", redis.port);
    let split = smb_tests::split::Split::start(&kafka, 0, &[("SMB_CACHE__URL", &cache)]).await;
    let services = [
        (
            split.orchestrator_url.clone(),
            "smb.orchestrator.v1.OrchestratorService",
        ),
        (
            split.orchestrator_url.clone(),
            "smb.orchestrator.v1.ActionsService",
        ),
        (
            split.connectors_url.clone(),
            "smb.connectors.v1.ConnectorsService",
        ),
        (split.auth_url.clone(), "smb.auth.v1.AuthService"),
        (split.auth_url.clone(), ""),
    ];
    for (url, s) in &services {
        wait_health(url, s, ServingStatus::Serving).await;
    }
    redis.stop();
    for (url, s) in &services {
        wait_health(url, s, ServingStatus::NotServing).await;
    }
    let _redis = OwnRedis::start(port);
    for (url, s) in &services {
        wait_health(url, s, ServingStatus::Serving).await;
    }
    split.stop().await;
}

/// The name of a workers' span consuming a sync page.
const CONSUME: &str = "smb.connector.records process";

/// The spans of `trace_id`, and one of them by name and service.
fn span<'a>(spans: &'a [Span], trace_id: &str, service: &str, name: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.trace_id == trace_id && s.service == service && s.name == name)
        .unwrap_or_else(|| panic!("no {service} {name} span in trace {trace_id}: {spans:#?}"))
}

/// Whether a span named `name` has arrived with its ancestors `depth` levels up: spans are exported as they
/// end, so a child can arrive in an earlier batch than the server span around it.
fn with_parents(spans: &[Span], name: &str, depth: usize) -> bool {
    spans.iter().filter(|x| x.name == name).any(|x| {
        let mut cur = x;
        for _ in 0..depth {
            match spans.iter().find(|p| p.span_id == cur.parent_span_id) {
                Some(p) => cur = p,
                None => return false,
            }
        }
        true
    })
}

fn by_id<'a>(spans: &'a [Span], id: &str) -> &'a Span {
    spans
        .iter()
        .find(|s| s.span_id == id)
        .unwrap_or_else(|| panic!("no span {id}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_question_and_a_sync_are_each_one_trace_across_the_split_processes() {
    let kafka = smb_tests::kafka();
    let receiver = Receiver::start().await;
    let fake = FakeSaas::start(Dataset::generate(Sizes::SMALL_SHOP)).await;
    let split = smb_tests::split::Split::start(
        &kafka,
        1,
        &[
            ("SMB_TELEMETRY__OTLP_ENDPOINT", &receiver.url),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let gw = &split.gateway;
    let owner = gw.owner("UTC").await;

    // One question: gateway → orchestrator (→ auth for the session), one trace.
    let question = "how many orders did I get this month?";
    let (s, b, _) = gw
        .call(
            "POST",
            "/v1/ai/query",
            Some(json!({"query": question})),
            Some(&owner.token),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let spans = receiver
        .wait_for("answer span and its parents", |s| {
            with_parents(s, "answer", 2)
        })
        .await;
    let answer = spans.iter().find(|x| x.name == "answer").unwrap();
    assert_eq!(answer.service, "smb-orchestrator");
    assert_eq!(answer.attr("tenant_id"), Some(owner.tenant_id.as_str()));
    assert_eq!(answer.attr("intent"), Some("metrics"));
    let q = answer.attr("query").unwrap();
    assert!(
        q.starts_with("sha256:") && !q.contains("orders"),
        "the question's text stays out of traces: {q}"
    );
    let trace = answer.trace_id.clone();
    let served = by_id(&spans, &answer.parent_span_id);
    assert_eq!(
        (served.service.as_str(), served.name.as_str()),
        (
            "smb-orchestrator",
            "/smb.orchestrator.v1.OrchestratorService/Process"
        )
    );
    assert_eq!(served.trace_id, trace);
    let edge = by_id(&spans, &served.parent_span_id);
    assert_eq!(
        (
            edge.service.as_str(),
            edge.name.as_str(),
            edge.trace_id.as_str()
        ),
        ("smb-gateway", "/v1/ai/query", trace.as_str()),
        "the orchestrator's span is a child of the gateway's"
    );
    assert!(
        edge.parent_span_id.is_empty(),
        "the gateway's span is the root"
    );
    assert_eq!(
        span(&spans, &trace, "smb-orchestrator", "compute").parent_span_id,
        answer.span_id
    );
    assert!(
        spans
            .iter()
            .all(|s| !s.attributes.iter().any(|(_, v)| v.contains(question))),
        "no span carries the question"
    );

    // A caller's own `traceparent` decides for its request: not sampled, no process records a span of
    // it; sampled, the gateway's span continues the caller's trace. (The unsampled one goes first: by the
    // time the sampled one's spans are in, the other's would be too.)
    let ask_with = |traceparent: &'static str| {
        gw.http
            .post(format!("{}/v1/ai/query", gw.url))
            .bearer_auth(&owner.token)
            .header("traceparent", traceparent)
            .json(&json!({"query": question}))
            .send()
    };
    const UNSAMPLED: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
    const SAMPLED: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_eq!(ask_with(UNSAMPLED).await.unwrap().status(), 200);
    assert_eq!(ask_with(SAMPLED).await.unwrap().status(), 200);
    let spans = receiver
        .wait_for("the sampled caller's answer", |s| {
            s.iter()
                .any(|x| x.name == "answer" && x.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736")
        })
        .await;
    let edge = spans
        .iter()
        .find(|x| x.service == "smb-gateway" && x.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736")
        .expect("the gateway's span of the sampled request");
    assert_eq!(edge.parent_span_id, "00f067aa0ba902b7");
    assert!(
        !spans
            .iter()
            .any(|x| x.trace_id == "0af7651916cd43dd8448eb211c80319c"),
        "an unsampled caller's request is recorded nowhere"
    );

    // One sync: gateway → connectors (queues it) → workers (runs it, publishes pages through the outbox
    // and Kafka) → workers (consume, load, index), one trace.
    let shop = smb_tests::sync::connect_shopify(gw, &owner, &fake).await;
    let run = sync(gw, &owner, &shop).await;
    assert_eq!(run["status"], "succeeded", "{run}");
    let spans = receiver
        .wait_for("sync, consume and load spans", |s| {
            with_parents(s, "sync", 2)
                && s.iter().any(|x| x.name == "load")
                && s.iter().any(|x| x.name == CONSUME)
        })
        .await;
    let run_span = spans
        .iter()
        .find(|x| x.name == "sync" && x.attr("connector_id") == Some(shop.as_str()))
        .expect("the sync's span");
    assert_eq!(run_span.service, "smb-workers");
    let trace = run_span.trace_id.clone();
    let queued = by_id(&spans, &run_span.parent_span_id);
    assert_eq!(
        (
            queued.service.as_str(),
            queued.name.as_str(),
            queued.trace_id.as_str()
        ),
        (
            "smb-connectors",
            "/smb.connectors.v1.ConnectorsService/TriggerSync",
            trace.as_str()
        ),
        "the run continues the trace of the request that queued it"
    );
    let edge = by_id(&spans, &queued.parent_span_id);
    assert_eq!(
        (
            edge.service.as_str(),
            edge.name.as_str(),
            edge.trace_id.as_str()
        ),
        ("smb-gateway", "/v1/connectors/{id}/sync", trace.as_str())
    );
    // Every page the run fetched was consumed in the same trace, as a child of its page's span.
    let spans = receiver
        .wait_for("every page consumed", |s| {
            let pages: Vec<&Span> = s
                .iter()
                .filter(|x| {
                    x.name == "page" && x.trace_id == trace && x.attr("records") != Some("0")
                })
                .collect();
            !pages.is_empty()
                && pages.iter().all(|p| {
                    s.iter()
                        .any(|c| c.name == CONSUME && c.parent_span_id == p.span_id)
                })
        })
        .await;
    let consumed: Vec<&Span> = spans
        .iter()
        .filter(|x| x.name == CONSUME && x.trace_id == trace)
        .collect();
    let mut pages = 0;
    for c in &consumed {
        assert_eq!(c.service, "smb-workers");
        let parent = by_id(&spans, &c.parent_span_id);
        match parent.name.as_str() {
            "page" => {
                assert_eq!(
                    by_id(&spans, &parent.parent_span_id).span_id,
                    run_span.span_id
                );
                assert!(
                    spans
                        .iter()
                        .any(|l| l.name == "load" && l.parent_span_id == c.span_id),
                    "each consumed page is loaded in its span"
                );
                pages += 1;
            }
            // The run's end marker, written by the run itself.
            "sync" => assert_eq!(parent.span_id, run_span.span_id),
            other => panic!("a consumer span whose parent is {other}"),
        }
    }
    assert!(pages > 0, "pages were consumed in the sync's trace");
    let loaded: i64 = spans
        .iter()
        .filter(|x| x.name == "load" && x.trace_id == trace)
        .filter_map(|x| x.attr("records")?.parse::<i64>().ok())
        .sum();
    assert_eq!(loaded, run["records_synced"].as_i64().unwrap());

    // One webhook: gateway (the 202) → connectors (verified, stored with its event) → workers (applied).
    let (st, b, _) = gw
        .call(
            "PATCH",
            &format!("/v1/connectors/{shop}"),
            Some(json!({"config": {"webhook_secret": SECRET}})),
            Some(&owner.token),
        )
        .await;
    assert_eq!(st, 200, "{b}");
    let body = serde_json::to_vec(
        &json!({"id": 4242, "email": "traced@example.com", "updated_at": "2025-03-01T00:00:00Z"}),
    )
    .unwrap();
    let sig = sign::shopify(SECRET.as_bytes(), &body);
    assert_eq!(
        customer_hook(gw, &shop, "wh-traced-1", &body, sig).await,
        202
    );
    const APPLY: &str = "smb.connector.webhook.received process";
    let spans = receiver
        .wait_for("the webhook applied", |s| with_parents(s, APPLY, 2))
        .await;
    let applied = spans.iter().find(|x| x.name == APPLY).unwrap();
    assert_eq!(applied.service, "smb-workers");
    let received = by_id(&spans, &applied.parent_span_id);
    assert_eq!(
        (received.service.as_str(), received.name.as_str()),
        (
            "smb-connectors",
            "/smb.connectors.v1.WebhooksService/Receive"
        )
    );
    let edge = by_id(&spans, &received.parent_span_id);
    assert_eq!(
        (
            edge.service.as_str(),
            edge.name.as_str(),
            edge.trace_id.as_str()
        ),
        (
            "smb-gateway",
            "/webhooks/{source}/{id}",
            applied.trace_id.as_str()
        )
    );
    split.stop().await;
}
