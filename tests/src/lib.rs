//! Test support for black-box tests: starts the real `smb` binary on port 0 with its own data directory and
//! talks to it over HTTP as a client would.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

pub mod fake;
pub mod fake_llm;
pub mod oracle;
pub mod otlp;
pub mod search_cases;
pub mod smtp;

/// A tansu broker (Kafka-compatible) of a test's or benchmark's own.
pub mod broker {
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    pub struct Broker {
        port: u16,
        /// With a directory, the log is kept in SQLite there and survives a restart; without, in memory.
        dir: Option<PathBuf>,
        child: Option<Child>,
    }

    impl Broker {
        pub fn start(dir: Option<&Path>) -> Self {
            let mut b = Self {
                port: super::free_port(),
                dir: dir.map(Path::to_path_buf),
                child: None,
            };
            b.restart();
            b
        }

        pub fn restart(&mut self) {
            let url = format!("tcp://127.0.0.1:{}", self.port);
            let mut cmd = Command::new("tansu");
            cmd.args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ]);
            match &self.dir {
                // tansu resolves sqlite:// paths against its working directory.
                Some(d) => cmd
                    .args(["--storage-engine", "sqlite://broker.db"])
                    .current_dir(d),
                None => cmd.args(["--storage-engine", "memory://tansu/"]),
            };
            let child = cmd
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("tansu is installed by scripts/test.sh");
            self.child = Some(child);
            let start = Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "broker did not start"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }

        pub fn kill(&mut self) {
            if let Some(mut c) = self.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }

        pub fn addr(&self) -> String {
            format!("127.0.0.1:{}", self.port)
        }
    }

    impl Drop for Broker {
        fn drop(&mut self) {
            self.kill();
        }
    }
}

/// A loopback port nobody listens on right now.
/// The Kafka-compatible broker the test command started (`SMB_TEST_KAFKA`, host:port).
pub fn kafka() -> String {
    std::env::var("SMB_TEST_KAFKA")
        .expect("SMB_TEST_KAFKA is set by scripts/test.sh (the Kafka-compatible test broker)")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub struct App {
    pub url: String,
    child: Child,
    pub dir: PathBuf,
    /// Remove `dir` when dropped (not when a test restarts the program on it).
    keep_dir: bool,
    pub http: reqwest::Client,
}

/// A signed-up, logged-in owner.
pub struct Owner {
    pub tenant_id: String,
    pub token: String,
    pub login: Value,
    pub email: String,
    pub password: String,
}

/// Sends SIGTERM to `child` and waits (up to 60 s) for it to exit; returns how long it took.
pub fn terminate(child: &mut Child) -> std::time::Duration {
    let started = std::time::Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    while started.elapsed() < std::time::Duration::from_secs(60) {
        if let Ok(Some(_)) = child.try_wait() {
            return started.elapsed();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    started.elapsed()
}

/// The `smb` binary under test (`SMB_BIN` overrides).
pub fn binary() -> PathBuf {
    if let Ok(p) = std::env::var("SMB_BIN") {
        return PathBuf::from(p);
    }
    // Test executables live in target/<profile>/deps, benchmark programs in target/<profile>.
    let exe = std::env::current_exe().ok();
    let dir = exe.as_deref().and_then(|e| e.parent());
    [dir, dir.and_then(|d| d.parent())]
        .into_iter()
        .flatten()
        .map(|d| d.join("smb"))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            let target = std::env::var("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|_| root.join("target"));
            target.join("debug").join("smb")
        })
}

/// A command running the `smb` binary with `env` set: without the harness's own variables (they are not
/// the program's configuration), with private networks allowed (our fake sources listen on loopback; a
/// test that checks the guard sets it to false), and with the program's logs shown when SMB_TEST_STDERR=1
/// (nextest prints them for failing tests).
pub fn command(env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(binary());
    cmd.stderr(if std::env::var_os("SMB_TEST_STDERR").is_some() {
        Stdio::inherit()
    } else {
        Stdio::null()
    });
    for (k, _) in std::env::vars() {
        if k.starts_with("SMB_TEST_") || k == "SMB_BIN" {
            cmd.env_remove(k);
        }
    }
    cmd.env("SMB_CONNECTORS__ALLOW_PRIVATE_NETWORKS", "true");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

impl App {
    /// Starts `smb up` on 127.0.0.1:0 with `env` set, and waits for its address.
    pub fn start(env: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!("smb-it-{}", uuid::Uuid::new_v4().simple()));
        Self::start_in(dir, false, env)
    }

    /// Starts `smb up` on `dir`; with `keep_dir` the directory outlives this process (for restarts).
    pub fn start_in(dir: PathBuf, keep_dir: bool, env: &[(&str, &str)]) -> Self {
        let mut cmd = command(env);
        cmd.args(["up", "--addr", "127.0.0.1:0", "--data-dir"])
            .arg(&dir)
            .stdout(Stdio::piped());
        let mut child = cmd
            .spawn()
            .expect("smb binary runs (build it with `cargo build -p smb`)");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        let mut reader = BufReader::new(stdout);
        reader.read_line(&mut line).expect("smb prints its address");
        // Keep draining the program's output so its writes never fail; shown with SMB_TEST_STDERR=1.
        let show = std::env::var_os("SMB_TEST_STDERR").is_some();
        std::thread::spawn(move || {
            for l in reader.lines().map_while(Result::ok) {
                if show {
                    eprintln!("{l}");
                }
            }
        });
        let url = line
            .trim()
            .strip_prefix("smb listening on ")
            .expect("address line")
            .to_string();
        Self {
            url,
            child,
            dir,
            keep_dir,
            http: reqwest::Client::new(),
        }
    }

    /// An `App` over a program already started (the split deployment's gateway) at `url`; `dir` is
    /// removed when it is dropped.
    pub fn attach(url: String, child: Child, dir: PathBuf) -> Self {
        Self {
            url,
            child,
            dir,
            keep_dir: false,
            http: reqwest::Client::new(),
        }
    }

    /// The program's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The program's resident memory in bytes (Linux).
    pub fn rss(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .map_or(0, |kb| kb * 1024)
    }

    /// SIGTERM, then waits (up to 60 s) for the process to exit; returns how long it took.
    pub fn terminate(&mut self) -> std::time::Duration {
        terminate(&mut self.child)
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.keep_dir = true;
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), format!("{}{path}", self.url));
        if let Some(b) = body {
            req = req.json(&b);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            headers,
        )
    }

    /// `POST /v1/auth/login`: (status, body).
    pub async fn login(&self, email: &str, password: &str) -> (u16, Value) {
        let (s, b, _) = self
            .call(
                "POST",
                "/v1/auth/login",
                Some(json!({"email": email, "password": password})),
                None,
            )
            .await;
        (s, b)
    }

    /// `POST /v1/auth/refresh`: (status, body).
    pub async fn refresh(&self, refresh_token: &str) -> (u16, Value) {
        let (s, b, _) = self
            .call(
                "POST",
                "/v1/auth/refresh",
                Some(json!({"refresh_token": refresh_token})),
                None,
            )
            .await;
        (s, b)
    }

    /// Signs up a new tenant and logs in; returns (login body, email, password).
    pub async fn tenant(&self, tz: &str) -> (Value, String, String) {
        let o = self.owner(tz).await;
        (o.login, o.email, o.password)
    }

    /// Signs up a new tenant and logs in.
    pub async fn owner(&self, tz: &str) -> Owner {
        let email = format!("owner-{}@example.com", uuid::Uuid::new_v4().simple());
        let password = "correct horse battery staple".to_string();
        let (s, b, _) = self
            .call("POST", "/v1/auth/signup", Some(json!({"tenant_name": "Test Co", "email": email, "password": password, "timezone": tz, "currency": "USD"})), None)
            .await;
        assert_eq!(s, 201, "{b}");
        let tenant_id = b["tenant_id"].as_str().unwrap().to_string();
        let (s, b) = self.login(&email, &password).await;
        assert_eq!(s, 200, "{b}");
        Owner {
            tenant_id,
            token: b["access_token"].as_str().unwrap().to_string(),
            login: b,
            email,
            password,
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test leaves its directory (and the processes' logs in it) for a look.
        if !self.keep_dir && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Connecting sources and running syncs through the public API.
pub mod sync {
    use super::*;
    use smb_core::store::Db;
    use smb_core::{Error, with_tenant};
    use std::time::{Duration, Instant};

    pub async fn connect(app: &App, owner: &Owner, body: Value) -> String {
        let (s, b, _) = app
            .call("POST", "/v1/connectors", Some(body), Some(&owner.token))
            .await;
        assert_eq!(s, 201, "{b}");
        b["id"].as_str().unwrap().to_string()
    }

    pub async fn connect_shopify(app: &App, owner: &Owner, fake: &fake::FakeSaas) -> String {
        connect(
            app,
            owner,
            json!({"type": "shopify", "config": {"shop_url": fake.url(), "access_token": fake::SHOP_TOKEN}}),
        )
        .await
    }

    pub async fn connect_stripe(app: &App, owner: &Owner, fake: &fake::FakeSaas) -> String {
        connect(
            app,
            owner,
            json!({"type": "stripe", "config": {"api_base": fake.url(), "secret_key": fake::STRIPE_KEY}}),
        )
        .await
    }

    /// Triggers a sync and returns its id.
    pub async fn trigger(app: &App, owner: &Owner, connector: &str) -> String {
        let (s, b, _) = app
            .call(
                "POST",
                &format!("/v1/connectors/{connector}/sync"),
                None,
                Some(&owner.token),
            )
            .await;
        assert!(s == 200 || s == 202, "{s} {b}");
        b["sync_id"].as_str().unwrap().to_string()
    }

    /// Polls the run until it has finished (or `timeout` passes) and returns it.
    pub async fn wait(
        app: &App,
        owner: &Owner,
        connector: &str,
        sync_id: &str,
        timeout: Duration,
    ) -> Value {
        finished(app, owner, connector, sync_id, timeout)
            .await
            .unwrap_or_else(|b| panic!("sync {sync_id} did not finish in {timeout:?}: {b}"))
    }

    /// Polls the run until it has finished and returns it, or, once `timeout` has passed, the run as it
    /// stands as the error (for a caller that adds its own diagnosis).
    pub async fn finished(
        app: &App,
        owner: &Owner,
        connector: &str,
        sync_id: &str,
        timeout: Duration,
    ) -> Result<Value, Value> {
        let start = Instant::now();
        loop {
            let (s, b, _) = app
                .call(
                    "GET",
                    &format!("/v1/connectors/{connector}/syncs/{sync_id}"),
                    None,
                    Some(&owner.token),
                )
                .await;
            assert_eq!(s, 200, "{b}");
            if b["status"] == "succeeded" || b["status"] == "failed" {
                return Ok(b);
            }
            if start.elapsed() >= timeout {
                return Err(b);
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }

    pub async fn sync(app: &App, owner: &Owner, connector: &str) -> Value {
        let id = trigger(app, owner, connector).await;
        wait(app, owner, connector, &id, Duration::from_secs(120)).await
    }

    /// Row counts of the canonical tables and a digest of their rows, for one tenant.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Canonical {
        pub orders: usize,
        pub lines: usize,
        pub refunds: usize,
        pub customers: usize,
        pub customer_keys: usize,
        pub products: usize,
        pub digest: String,
    }

    const QUERIES: [&str; 5] = [
        "SELECT source || '|' || external_id || '|' || total_minor || '|' || refunded_minor || '|' || local_date || '|' || status || '|' || updated_at || '|' || COALESCE(customer_key, '') FROM orders WHERE tenant_id = $1",
        "SELECT source || '|' || external_id || '|' || order_external_id || '|' || quantity || '|' || price_minor || '|' || local_date FROM order_lines WHERE tenant_id = $1",
        "SELECT source || '|' || external_id || '|' || order_external_id || '|' || amount_minor || '|' || local_date FROM refunds WHERE tenant_id = $1",
        "SELECT source || '|' || external_id || '|' || COALESCE(email, '') || '|' || customer_key || '|' || updated_at FROM customers WHERE tenant_id = $1",
        "SELECT source || '|' || external_id || '|' || title || '|' || updated_at FROM products WHERE tenant_id = $1",
    ];

    /// The facts the loader keeps beside the orders, each as stored (`s|…`) and as its definition computes
    /// it from the orders (`d|…`), in one statement so both sides read the same snapshot while writers run:
    /// (table, statement).
    const FACTS: [(&str, &str); 5] = [
        (
            "customer_firsts",
            "SELECT 's|' || scope || '|' || customer_key || '|' || CAST(first_day AS TEXT) FROM customer_firsts \
             WHERE tenant_id = $1 \
             UNION ALL SELECT 'd|' || '' || '|' || customer_key || '|' || CAST(MIN(local_date) AS TEXT) FROM orders \
             WHERE tenant_id = $1 AND counted AND customer_key IS NOT NULL GROUP BY customer_key \
             UNION ALL SELECT 'd|' || source || '|' || customer_key || '|' || CAST(MIN(local_date) AS TEXT) FROM orders \
             WHERE tenant_id = $1 AND counted AND customer_key IS NOT NULL GROUP BY source, customer_key",
        ),
        (
            "daily_orders",
            "SELECT 's|' || CAST(day AS TEXT) || '|' || source || '|' || currency || '|' || CAST(orders AS TEXT) || '|' \
             || CAST(revenue_minor AS TEXT) || '|' || CAST(discounts_minor AS TEXT) || '|' || CAST(failed AS TEXT) \
             FROM daily_orders WHERE tenant_id = $1 \
             UNION ALL SELECT 'd|' || CAST(local_date AS TEXT) || '|' || source || '|' || currency || '|' \
             || CAST(SUM(CASE WHEN counted THEN 1 ELSE 0 END) AS TEXT) || '|' \
             || CAST(SUM(CASE WHEN counted THEN total_minor - refunded_minor ELSE 0 END) AS TEXT) || '|' \
             || CAST(SUM(CASE WHEN counted THEN discounts_minor ELSE 0 END) AS TEXT) || '|' \
             || CAST(SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS TEXT) \
             FROM orders WHERE tenant_id = $1 AND (counted OR status = 'failed') GROUP BY local_date, source, currency",
        ),
        (
            "customer_years",
            "SELECT 's|' || year || '|' || customer_key || '|' || CAST(orders AS TEXT) || '|' || CAST(revenue_minor AS TEXT) \
             FROM customer_years WHERE tenant_id = $1 \
             UNION ALL SELECT 'd|' || SUBSTR(CAST(local_date AS TEXT), 1, 4) || '|' || customer_key || '|' \
             || CAST(COUNT(*) AS TEXT) || '|' || CAST(SUM(total_minor - refunded_minor) AS TEXT) FROM orders \
             WHERE tenant_id = $1 AND counted AND customer_key IS NOT NULL \
             GROUP BY SUBSTR(CAST(local_date AS TEXT), 1, 4), customer_key \
             UNION ALL SELECT 'd|*|' || customer_key || '|' || CAST(COUNT(*) AS TEXT) || '|' \
             || CAST(SUM(total_minor - refunded_minor) AS TEXT) FROM orders \
             WHERE tenant_id = $1 AND counted AND customer_key IS NOT NULL GROUP BY customer_key",
        ),
        (
            "daily_lines",
            "SELECT 's|' || CAST(day AS TEXT) || '|' || source || '|' || title || '|' || CAST(lines AS TEXT) || '|' \
             || CAST(units AS TEXT) || '|' || CAST(sales_minor AS TEXT) FROM daily_lines WHERE tenant_id = $1 \
             UNION ALL SELECT 'd|' || CAST(local_date AS TEXT) || '|' || source || '|' || title || '|' \
             || CAST(COUNT(*) AS TEXT) || '|' || CAST(SUM(quantity) AS TEXT) || '|' \
             || CAST(SUM(price_minor * quantity) AS TEXT) \
             FROM order_lines WHERE tenant_id = $1 AND counted GROUP BY local_date, source, title",
        ),
        (
            "daily_refunds",
            "SELECT 's|' || CAST(day AS TEXT) || '|' || source || '|' || CAST(refunds AS TEXT) || '|' \
             || CAST(amount_minor AS TEXT) FROM daily_refunds WHERE tenant_id = $1 \
             UNION ALL SELECT 'd|' || CAST(local_date AS TEXT) || '|' || source || '|' || CAST(COUNT(*) AS TEXT) || '|' \
             || CAST(SUM(amount_minor) AS TEXT) FROM refunds WHERE tenant_id = $1 AND NOT test \
             GROUP BY local_date, source",
        ),
    ];

    pub async fn canonical(db: &Db, tenant: &str) -> Canonical {
        let t: smb_core::ids::TenantId = tenant.parse().unwrap();
        let read = async {
            let mut tables: Vec<Vec<String>> = Vec::new();
            for q in QUERIES {
                let rows: Vec<(String,)> = with_tenant!(db, &t, read, |tx| {
                    sqlx::query_as(q).bind(tenant).fetch_all(&mut *tx).await?
                });
                let mut rows: Vec<String> = rows.into_iter().map(|(r,)| r).collect();
                rows.sort();
                tables.push(rows);
            }
            Ok::<_, Error>(tables)
        };
        let tables = read.await.expect("canonical rows");
        // The facts the loader keeps must be what the orders say, after every write and delete.
        for (table, sql) in FACTS {
            let facts = async {
                let rows: Vec<(String,)> = with_tenant!(db, &t, read, |tx| {
                    sqlx::query_as(sql).bind(tenant).fetch_all(&mut *tx).await?
                });
                let (mut stored, mut defined) = (Vec::new(), Vec::new());
                for (r,) in rows {
                    match r.split_once('|') {
                        Some(("s", rest)) => stored.push(rest.to_string()),
                        Some((_, rest)) => defined.push(rest.to_string()),
                        None => {}
                    }
                }
                stored.sort();
                defined.sort();
                Ok::<_, Error>([stored, defined])
            };
            let [stored, defined] = facts.await.expect(table);
            assert_eq!(
                stored, defined,
                "{table} as stored (left) differs from what the orders define (right)"
            );
        }
        let keys: std::collections::HashSet<&str> = tables[3]
            .iter()
            .filter_map(|r| r.split('|').nth(3))
            .collect();
        let all = tables
            .iter()
            .map(|t| t.join("\n"))
            .collect::<Vec<_>>()
            .join("\n--\n");
        Canonical {
            orders: tables[0].len(),
            lines: tables[1].len(),
            refunds: tables[2].len(),
            customers: tables[3].len(),
            customer_keys: keys.len(),
            products: tables[4].len(),
            digest: smb_core::crypto::sha256_hex(all.as_bytes()),
        }
    }
}

/// The split deployment: every service its own `smb serve` process (auth, orchestrator, connectors, N
/// workers replicas, gateway) over PostgreSQL, Redis and a Kafka-compatible broker, each with its own
/// database, key prefix and topic prefix. Tests reach it through the gateway's public port (`gateway`), and
/// may call the services' ports directly to check that they trust nothing but a verified token.
pub mod split {
    use std::time::{Duration, Instant};

    use smb_core::store::testing::PgTestDb;

    use super::*;

    pub const ENCRYPTION_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

    pub struct Split {
        /// The gateway, spoken to like `smb up`.
        pub gateway: App,
        pub auth_url: String,
        pub orchestrator_url: String,
        pub connectors_url: String,
        pub pg: Option<PgTestDb>,
        /// The workers replicas; `None` once killed.
        pub workers: Vec<Option<Child>>,
        services: Vec<Child>,
        cache_prefix: String,
        /// The workers' environment (a restarted replica gets the same).
        workers_env: Vec<(String, String)>,
        /// The deployment's directory: one data directory per service below it.
        pub dir: std::path::PathBuf,
    }

    /// Starts `smb serve <service>` on `port`. Its log goes to `<logs>/<service>-<port>.log` (or to the
    /// test's stderr with SMB_TEST_STDERR=1), so that a failing test can show what the processes said.
    fn spawn(env: &[(String, String)], logs: &std::path::Path, service: &str, port: u16) -> Child {
        let addr = format!("127.0.0.1:{port}");
        let mut e: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        e.push(("SMB_SERVER__ADDR", &addr));
        let mut cmd = command(&e);
        if std::env::var_os("SMB_TEST_STDERR").is_none() {
            std::fs::create_dir_all(logs).expect("log directory");
            let f = std::fs::File::create(logs.join(format!("{service}-{port}.log")))
                .expect("log file");
            cmd.stderr(f);
        }
        cmd.args(["serve", service])
            .stdout(Stdio::null())
            .spawn()
            .expect("smb binary runs (build it with `cargo build -p smb`)")
    }

    fn wait_port(port: u16, what: &str, child: &mut Child) {
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("smb serve {what} exited: {status} (SMB_TEST_STDERR=1 shows its logs)");
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "smb serve {what} did not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    impl Split {
        /// Starts the deployment on the broker at `kafka` with `workers` replicas; `extra` is added to
        /// every process's environment.
        pub async fn start(kafka: &str, workers: usize, extra: &[(&str, &str)]) -> Self {
            let pg = PgTestDb::create()
                .await
                .expect("PostgreSQL on 127.0.0.1:5432");
            let id = uuid::Uuid::new_v4().simple().to_string();
            let dir = std::env::temp_dir().join(format!("smb-split-{id}"));
            let cache_prefix = format!("smbsplit:{id}:");
            let topic_prefix = format!("s{id}.");
            let [auth, orch, conn, gw] = [free_port(), free_port(), free_port(), free_port()];
            let url = |p: u16| format!("http://127.0.0.1:{p}");
            let (auth_url, orchestrator_url, connectors_url) = (url(auth), url(orch), url(conn));
            // Each service gets only what it needs, as Helm mounts it: auth migrates (the owner's URL) and
            // signs (its keys in its own data directory); the others connect as a role that cannot write
            // the identity tables; only connectors and workers hold the credential key.
            let dirs = |s: &str| dir.join(s).display().to_string();
            let restricted = format!("[\"{}\"]", smb_core::store::testing::SERVICE_ROLE);
            let per_service = |service: &str| -> Vec<(String, String)> {
                let mut e: Vec<(&str, String)> = vec![("SMB_SERVER__DATA_DIR", dirs(service))];
                match service {
                    "auth" => {
                        e.push(("SMB_DATABASE__URL", pg.app_url.clone()));
                        e.push(("SMB_DATABASE__MIGRATE_URL", pg.owner_url.clone()));
                        e.push(("SMB_DATABASE__RESTRICTED_ROLES", restricted.clone()));
                    }
                    "gateway" => {}
                    _ => e.push(("SMB_DATABASE__URL", pg.service_url.clone())),
                }
                if matches!(service, "connectors" | "workers") {
                    e.push(("SMB_CONNECTORS__ENCRYPTION_KEY", ENCRYPTION_KEY.to_string()));
                }
                e.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            };
            let mut env: Vec<(&str, &str)> = vec![
                ("SMB_CACHE__URL", "redis://127.0.0.1:6379"),
                ("SMB_CACHE__KEY_PREFIX", &cache_prefix),
                ("SMB_BUS__KIND", "kafka"),
                ("SMB_BUS__BROKERS", kafka),
                ("SMB_BUS__TOPIC_PREFIX", &topic_prefix),
                ("SMB_BUS__RETRY_BACKOFF_MS", "100"),
                ("SMB_SEARCH__INDEX", "off"),
                ("SMB_CONNECTORS__LEASE_SECS", "5"),
                ("SMB_SERVICES__AUTH_URL", &auth_url),
                ("SMB_SERVICES__ORCHESTRATOR_URL", &orchestrator_url),
                ("SMB_SERVICES__CONNECTORS_URL", &connectors_url),
                ("SMB_GATEWAY__DEFAULT_RATE_LIMIT", "100000"),
            ];
            env.extend_from_slice(extra);
            let env: Vec<(String, String)> = env
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            let env_of = |service: &str| -> Vec<(String, String)> {
                per_service(service)
                    .into_iter()
                    .chain(env.iter().cloned())
                    .collect()
            };
            let workers_env = env_of("workers");
            let logs = dir.join("logs");
            let spawn = |service: &str, port: u16| spawn(&env_of(service), &logs, service, port);
            // Auth first: it migrates the database and the gateway reads its keys at start.
            let mut services = vec![spawn("auth", auth)];
            wait_port(auth, "auth", &mut services[0]);
            for (s, p) in [("orchestrator", orch), ("connectors", conn)] {
                let mut c = spawn(s, p);
                wait_port(p, s, &mut c);
                services.push(c);
            }
            let workers = (0..workers)
                .map(|_| Some(spawn("workers", free_port())))
                .collect();
            let mut gateway = spawn("gateway", gw);
            wait_port(gw, "gateway", &mut gateway);
            Self {
                gateway: App::attach(url(gw), gateway, dir.clone()),
                auth_url,
                orchestrator_url,
                connectors_url,
                pg: Some(pg),
                workers,
                services,
                cache_prefix,
                workers_env,
                dir,
            }
        }

        /// Starts workers replica `i` again (as a Deployment replaces a pod that died).
        pub fn restart_worker(&mut self, i: usize) {
            self.kill_worker(i);
            self.workers[i] = Some(spawn(
                &self.workers_env,
                &self.dir.join("logs"),
                "workers",
                free_port(),
            ));
        }

        /// The last `max` lines every process of the deployment logged, for a failing assertion's message.
        pub fn tails(&self, max: usize) -> String {
            let mut out = String::new();
            let Ok(dir) = std::fs::read_dir(self.dir.join("logs")) else {
                return out;
            };
            let mut files: Vec<_> = dir.flatten().map(|e| e.path()).collect();
            files.sort();
            for f in files {
                let text = std::fs::read_to_string(&f).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let name = f.file_name().unwrap_or_default().to_string_lossy();
                out.push_str(&format!("\n--- {name}: {} lines\n", lines.len()));
                for l in &lines[lines.len().saturating_sub(max)..] {
                    out.push_str(l);
                    out.push('\n');
                }
            }
            out
        }

        /// The deployment's database.
        pub fn db(&self) -> &smb_core::store::Db {
            &self.pg.as_ref().expect("running").db
        }

        /// The index of the live workers replica with process id `pid`.
        pub fn worker_with_pid(&self, pid: u32) -> Option<usize> {
            self.workers
                .iter()
                .position(|w| w.as_ref().is_some_and(|c| c.id() == pid))
        }

        /// SIGTERM to workers replica `i`, waiting for it to exit: it gets `server.shutdown_grace_secs` to
        /// finish, then its work is cut short where it stands (its consumers leave their groups).
        pub fn terminate_worker(&mut self, i: usize) {
            if let Some(mut c) = self.workers[i].take() {
                terminate(&mut c);
            }
        }

        /// SIGKILL to workers replica `i`: it gets no chance to finish or release anything.
        pub fn kill_worker(&mut self, i: usize) {
            if let Some(mut c) = self.workers[i].take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }

        fn kill_all(&mut self) {
            for c in self
                .services
                .iter_mut()
                .chain(self.workers.iter_mut().flatten())
            {
                let _ = c.kill();
                let _ = c.wait();
            }
        }

        /// Stops every process and removes the database, the cache keys and the data directory.
        pub async fn stop(mut self) {
            self.kill_all();
            let _ = Command::new("sh")
                .arg("-c")
                .arg(format!(
                    "redis-cli -h 127.0.0.1 --scan --pattern '{}*' | xargs -r redis-cli -h 127.0.0.1 del",
                    self.cache_prefix
                ))
                .stdout(Stdio::null())
                .status();
            let pg = self.pg.take();
            drop(self);
            if let Some(pg) = pg {
                pg.drop_db().await;
            }
        }
    }

    /// A test that fails stops the processes too (its database is left for a look).
    impl Drop for Split {
        fn drop(&mut self) {
            self.kill_all();
        }
    }
}
