//! The request path over HTTP on `smb up` (release build, SQLite, a fake shop synced), each path against the
//! HTTP floor measured in the same run: `GET /healthz`; a cached question (the same question again); and an
//! uncached one (the question's `as_of` moved back a day per request, over a set of questions, so no two
//! requests share a cache entry). The load generator is `wrk` (`apt-get install wrk`), one thread and
//! `--connections` connections for `--seconds`, on the same cores as the server. Prints throughput,
//! p50/p99 latency, each path's throughput as a share of the floor's, and the server's resident memory.
//! Then the gateway hop: the cached question's p50 over HTTP on one connection, against the orchestrator
//! service called in this process over the same data.
//!
//! Run with a release build: `cargo build --release -p smb -p smb-bench && target/release/http_bench`.

use std::io::Write;
use std::process::Command;

use clap::Parser;
use serde_json::json;
use smb_tests::App;
use smb_tests::fake::{Dataset, FakeSaas, Sizes};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value_t = 16)]
    connections: u32,
    /// Only these (comma-separated: healthz, cached, uncached, hop), e.g. to profile one path.
    #[arg(long, default_value = "healthz,cached,uncached,hop")]
    paths: String,
}

/// What `wrk` reported for one path.
struct Run {
    rps: f64,
    p50: String,
    p99: String,
    errors: u64,
}

fn wrk(args: &Args, url: &str, script: Option<&str>) -> anyhow::Result<Run> {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t1",
        &format!("-c{}", args.connections),
        &format!("-d{}s", args.seconds),
        "--latency",
    ]);
    let file = match script {
        Some(lua) => {
            let path = std::env::temp_dir().join(format!("http_bench_{}.lua", std::process::id()));
            std::fs::File::create(&path)?.write_all(lua.as_bytes())?;
            cmd.args(["-s", &path.display().to_string()]);
            Some(path)
        }
        None => None,
    };
    cmd.arg(url);
    let out = cmd
        .output()
        .map_err(|e| anyhow::anyhow!("wrk did not run ({e}): apt-get install wrk"))?;
    if let Some(f) = file {
        let _ = std::fs::remove_file(f);
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(out.status.success(), "wrk failed: {text}");
    let field = |prefix: &str| -> Option<String> {
        text.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l[prefix.len()..].split_whitespace().next())
            .map(str::to_string)
    };
    Ok(Run {
        rps: field("Requests/sec:")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no Requests/sec in: {text}"))?,
        p50: field("50%").unwrap_or_default(),
        p99: field("99%").unwrap_or_default(),
        errors: field("Non-2xx or 3xx responses:")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
            + field("Socket errors:").map_or(0, |_| 1),
    })
}

/// A `wrk` duration (`150.00us`, `3.10ms`, `1.20s`) in milliseconds.
fn wrk_ms(v: &str) -> f64 {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (v, f64::NAN)
    };
    num.parse::<f64>().map_or(f64::NAN, |n| n * scale)
}

/// p50 of the cached question asked of the orchestrator service in this process, over the server's data:
/// what the HTTP path would cost with no gateway in front.
async fn in_process_p50(app: &App, tenant: &str, body: &serde_json::Value) -> anyhow::Result<f64> {
    use smb_core::bus::{DynBus, StoreBus};
    use smb_core::cache::{DynCache, MemoryCache};
    use smb_core::store::Db;
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    let db = Db::open_sqlite(&app.dir.join("smb.db"), 2).await?;
    // Its query events go to a database of its own: the server is the data's only writer.
    let (events, _events_dir) = smb_core::store::testing::sqlite().await?;
    let cache: DynCache = Arc::new(MemoryCache::new(""));
    let bus: DynBus = Arc::new(StoreBus::new(events));
    let svc =
        smb_orchestrator::OrchestratorServiceImpl::new(db, cache, bus, Duration::from_secs(300));
    let caller = smb_core::tenant::Caller {
        tenant: tenant.parse()?,
        user: smb_core::ids::UserId::generate(),
        role: "owner".into(),
    };
    let req = smb_proto::orchestrator::v1::ProcessRequest {
        query: body["query"].as_str().unwrap_or_default().into(),
        as_of: body["as_of"].as_str().unwrap_or_default().into(),
        ..Default::default()
    };
    svc.process(&caller, req.clone()).await?;
    let mut samples = Vec::with_capacity(5000);
    for _ in 0..5000 {
        let t = Instant::now();
        svc.process(&caller, req.clone()).await?;
        samples.push(t.elapsed());
    }
    samples.sort();
    Ok(smb_bench::ms(smb_bench::percentile(&samples, 50.0)))
}

/// The server's resident set size in MB.
fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

const QUESTIONS: &[&str] = &[
    "What was my revenue last month?",
    "how many orders did I get this month?",
    "top 5 customers this year",
    "average order value last quarter",
    "revenue by month this year",
    "how many new customers last month",
    "refunds this year",
    "best selling products last month",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let fake = FakeSaas::start(Dataset::generate(Sizes::SMALL_SHOP)).await;
    let app = App::start(&[
        ("SMB_GATEWAY__DEFAULT_RATE_LIMIT", "1000000000"),
        ("SMB_CONNECTORS__ALLOW_PRIVATE_NETWORKS", "true"),
    ]);
    let owner = app.owner("America/New_York").await;
    let shop = smb_tests::sync::connect_shopify(&app, &owner, &fake).await;
    let r = smb_tests::sync::sync(&app, &owner, &shop).await;
    anyhow::ensure!(r["status"] == "succeeded", "sync: {r}");
    let body = json!({"query": QUESTIONS[0], "as_of": "2025-06-15T12:00:00Z"});
    let first = app
        .http
        .post(format!("{}/v1/ai/query", app.url))
        .bearer_auth(&owner.token)
        .json(&body)
        .send()
        .await?;
    anyhow::ensure!(first.status() == 200, "question: {}", first.status());
    let headers = format!(
        "wrk.headers[\"Authorization\"] = \"Bearer {}\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\n",
        owner.token
    );
    let cached = format!(
        "wrk.method = \"POST\"\nwrk.body = {:?}\n{headers}",
        body.to_string()
    );
    let questions: Vec<String> = QUESTIONS.iter().map(|q| format!("{q:?}")).collect();
    let uncached = format!(
        "{headers}local qs = {{{}}}\nlocal n = 0\nrequest = function()\n  n = n + 1\n  local q = qs[(n % #qs) + 1]\n  local day = os.date(\"!%Y-%m-%dT12:00:00Z\", 1749988800 - math.floor(n / #qs) * 86400)\n  return wrk.format(\"POST\", \"/v1/ai/query\", nil, '{{\"query\": \"' .. q .. '\", \"as_of\": \"' .. day .. '\"}}')\nend\n",
        questions.join(", ")
    );
    let url = format!("{}/v1/ai/query", app.url);
    println!(
        "wrk, 1 thread, {} connections, {} s per path; server RSS after the sync {:.0} MB",
        args.connections,
        args.seconds,
        rss_mb(app.pid())
    );
    let wanted = |p: &str| args.paths.split(',').any(|x| x.trim() == p);
    let mut rows = Vec::new();
    if wanted("healthz") {
        let floor = wrk(&args, &format!("{}/healthz", app.url), None)?;
        rows.push(("GET /healthz (the floor)", floor));
    }
    if wanted("cached") {
        rows.push(("cached question", wrk(&args, &url, Some(&cached))?));
    }
    if wanted("uncached") {
        rows.push(("uncached question", wrk(&args, &url, Some(&uncached))?));
    }
    let floor_rps = match wanted("healthz") {
        true => rows[0].1.rps,
        false => f64::NAN,
    };
    println!(
        "{:<26} {:>12} {:>10} {:>10} {:>9} {:>7}",
        "path", "requests/s", "p50", "p99", "of floor", "errors"
    );
    for (name, r) in &rows {
        println!(
            "{name:<26} {:>12.0} {:>10} {:>10} {:>8.1}% {:>7}",
            r.rps,
            r.p50,
            r.p99,
            100.0 * r.rps / floor_rps,
            r.errors
        );
    }
    if wanted("hop") {
        let one = Args {
            connections: 1,
            seconds: args.seconds,
            paths: String::new(),
        };
        let http = wrk_ms(&wrk(&one, &url, Some(&cached))?.p50);
        let local = in_process_p50(&app, &owner.tenant_id, &body).await?;
        println!(
            "gateway hop: cached question p50 over HTTP, 1 connection, {http:.3} ms; in-process {local:.3} ms; added {:.3} ms (goal <= 0.3 ms)",
            http - local
        );
    }
    println!(
        "server RSS after the load: {:.0} MB (goals: cached >= 20,000/s and >= 25% of the floor, p99 <= 10 ms; uncached >= 3,000/s, p99 <= 25 ms)",
        rss_mb(app.pid())
    );
    Ok(())
}
