//! Shared helpers of the benchmark programs.

use std::time::Duration;

/// The allocator `smb` runs with, so memory figures measured in a benchmark's own process compare.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The `p`-th percentile (0–100) of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A search engine over a Qdrant Edge index in `dir`, as `smb up` builds one (`optimize_after`: the
/// appendable segment's size before it is sealed, `None` for the platform's).
pub async fn edge_engine(
    dir: &std::path::Path,
    embedder: Option<smb_search::embed::DynEmbedder>,
    isolation: smb_search::index::Isolation,
    optimize_after: Option<usize>,
) -> anyhow::Result<smb_search::SearchEngine> {
    let mut index = smb_search::edge::EdgeIndex::open(dir, isolation)?;
    if let Some(n) = optimize_after {
        index = index.optimize_after(n);
    }
    let index: smb_search::index::DynIndex = std::sync::Arc::new(index);
    Ok(smb_search::SearchEngine::new(index, embedder, "bench").await?)
}

/// The two fixture tenants loaded straight into a store, and the published questions.
pub mod fixtures {
    use serde_json::Value;
    use smb_core::ids::TenantId;
    use smb_core::store::Db;
    use smb_workers::load::load_batch;
    use smb_workers::transform::{Batch, transform_page};

    pub struct Tenant {
        pub name: &'static str,
        pub zone: &'static str,
        streams: &'static [(&'static str, &'static str, &'static str, &'static str)],
    }

    pub const TENANTS: [Tenant; 2] = [
        Tenant {
            name: "northwind",
            zone: "America/New_York",
            streams: &[
                ("shopify", "products", "products.json", "products"),
                ("shopify", "customers", "customers.json", "customers"),
                ("shopify", "orders", "orders.json", "orders"),
            ],
        },
        Tenant {
            name: "brightside",
            zone: "America/Los_Angeles",
            streams: &[
                ("stripe", "customers", "customers.json", "data"),
                ("stripe", "charges", "charges.json", "data"),
            ],
        },
    ];

    pub async fn load(
        db: &Db,
        dir: &std::path::Path,
    ) -> anyhow::Result<Vec<(&'static str, TenantId)>> {
        load_scaled(db, dir, 1, |_, _| {}).await
    }

    /// A copy of a fixture record for copy `k` of a scaled tenant: every id the record owns (order, line,
    /// refund, transaction, customer; not products, which are shared) moved to a range of its own, e-mail
    /// addresses tagged `+k`, and surnames given a `k` suffix, so copies are distinct customers and orders with
    /// the same days, amounts and products. Copy 0 is the record itself.
    pub fn copy_of(record: &Value, k: usize) -> Value {
        // `goods`: under line items and shipping lines, whose names are the shared products'.
        fn walk(v: &mut Value, k: usize, goods: bool) {
            match v {
                Value::Object(m) => {
                    for (key, x) in m.iter_mut() {
                        match (key.as_str(), &*x) {
                            ("id" | "order_id" | "line_item_id", Value::Number(n)) => {
                                if let Some(n) = n.as_u64() {
                                    *x = Value::from(n + k as u64 * 1_000_000_000);
                                }
                            }
                            ("id" | "customer", Value::String(s)) => {
                                *x = Value::from(format!("{s}x{k}"))
                            }
                            ("email" | "contact_email", Value::String(s)) => {
                                *x = Value::from(match s.split_once('@') {
                                    Some((user, host)) => format!("{user}+{k}@{host}"),
                                    None => format!("{s}+{k}"),
                                })
                            }
                            ("name", Value::String(s)) if s.starts_with('#') => {
                                *x = Value::from(format!("{s}-{k}"))
                            }
                            ("last_name" | "name", Value::String(s)) if !goods => {
                                *x = Value::from(format!("{s}{k}"))
                            }
                            (
                                "line_items" | "shipping_lines" | "refund_line_items" | "line_item",
                                _,
                            ) => walk(x, k, true),
                            _ => walk(x, k, goods),
                        }
                    }
                }
                Value::Array(a) => a.iter_mut().for_each(|x| walk(x, k, goods)),
                _ => {}
            }
        }
        let mut v = record.clone();
        if k > 0 {
            walk(&mut v, k, false);
        }
        v
    }

    /// The fixture tenants with every record `scale` times over ([`copy_of`]): northwind at scale 150 has
    /// 1,030,500 orders. `progress` is told (tenant, records loaded so far) after each page.
    pub async fn load_scaled(
        db: &Db,
        dir: &std::path::Path,
        scale: usize,
        mut progress: impl FnMut(&str, usize),
    ) -> anyhow::Result<Vec<(&'static str, TenantId)>> {
        let mut out = Vec::new();
        for t in &TENANTS {
            let id = TenantId::generate();
            smb_core::store::testing::add_tenant(db, &id, t.name, t.zone).await?;
            let tz: chrono_tz::Tz = t.zone.parse()?;
            let mut loaded = 0;
            for (source, stream, file, key) in t.streams {
                let path = dir.join(t.name).join(file);
                let v: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
                let records = v[key]
                    .as_array()
                    .ok_or_else(|| anyhow::anyhow!("{} has no {key} array", path.display()))?;
                let copies = if *stream == "products" { 1 } else { scale };
                for k in 0..copies {
                    for page in records.chunks(250) {
                        let page: Vec<Value> = page.iter().map(|r| copy_of(r, k)).collect();
                        let mut b = Batch::default();
                        transform_page(source, stream, &page, tz, &mut b);
                        b.dedupe();
                        load_batch(db, &id, &b).await?;
                        loaded += page.len();
                        progress(t.name, loaded);
                    }
                }
            }
            add_finished_source(db, &id, t.streams[0].0).await?;
            out.push((t.name, id));
        }
        Ok(out)
    }

    /// The tenant's source as a connector with a finished sync, so answers cover it (a tenant without one is
    /// told to connect a source).
    async fn add_finished_source(db: &Db, id: &TenantId, kind: &str) -> anyhow::Result<()> {
        let connector = uuid::Uuid::now_v7().to_string();
        smb_core::with_tenant!(db, id, write, |tx| {
            sqlx::query("INSERT INTO connectors (id, tenant_id, kind, settings, secret_sealed, created_at, last_sync_at, last_sync_status) VALUES ($1, $2, $3, '{}', '', 0, 1, 'succeeded')")
                .bind(&connector)
                .bind(id.as_str())
                .bind(kind)
                .execute(&mut *tx)
                .await?;
            sqlx::query("INSERT INTO sync_runs (id, tenant_id, connector_id, status, trigger_kind, created_at, finished_at) VALUES ($1, $2, $3, 'succeeded', 'manual', 0, $4)")
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(id.as_str())
                .bind(&connector)
                .bind(chrono::Utc::now().timestamp_millis())
                .execute(&mut *tx)
                .await?;
        });
        Ok(())
    }

    /// The tables a loaded tenant's data and facts live in, copied by [`clone_tenant`].
    const DATA_TABLES: [&str; 10] = [
        "orders",
        "order_lines",
        "refunds",
        "customers",
        "products",
        "customer_firsts",
        "daily_orders",
        "daily_lines",
        "daily_refunds",
        "customer_years",
    ];

    /// A copy of a loaded fixture tenant under a new id, made inside PostgreSQL by `INSERT … SELECT` over
    /// `admin` (a superuser connection to the same database: it reads past row-level security): every row of
    /// its data and of the facts kept beside it, and a source with a finished sync. For many big tenants
    /// on one database without loading each through the loader (a 1M-order tenant loads in about 6
    /// minutes). The copies' raw source records are left empty (`{}`): no answer reads them, and with them
    /// ten 1M-order tenants would not fit this machine's disk (about 9 GB each).
    pub async fn clone_tenant(
        admin: &sqlx::PgPool,
        db: &Db,
        from: &TenantId,
        fixture: &str,
    ) -> anyhow::Result<TenantId> {
        let t = TENANTS
            .iter()
            .find(|t| t.name == fixture)
            .ok_or_else(|| anyhow::anyhow!("no fixture tenant {fixture}"))?;
        let id = TenantId::generate();
        sqlx::query("INSERT INTO tenants (id, name, timezone, currency, created_at) SELECT $2, name, timezone, currency, created_at FROM tenants WHERE id = $1")
            .bind(from.as_str())
            .bind(id.as_str())
            .execute(admin)
            .await?;
        for table in DATA_TABLES {
            let cols: Vec<(String,)> = sqlx::query_as(
                "SELECT column_name::text FROM information_schema.columns WHERE table_schema = current_schema() \
                 AND table_name = $1 ORDER BY ordinal_position",
            )
            .bind(table)
            .fetch_all(admin)
            .await?;
            let names: Vec<&str> = cols.iter().map(|c| c.0.as_str()).collect();
            let select: Vec<&str> = names
                .iter()
                .map(|c| match *c {
                    "tenant_id" => "$2",
                    // The source's raw records, most of the database's size, which no answer reads.
                    "raw" => "'{}'::jsonb",
                    c => c,
                })
                .collect();
            sqlx::query(&format!(
                "INSERT INTO {table} ({}) SELECT {} FROM {table} WHERE tenant_id = $1",
                names.join(", "),
                select.join(", ")
            ))
            .bind(from.as_str())
            .bind(id.as_str())
            .execute(admin)
            .await?;
        }
        add_finished_source(db, &id, t.streams[0].0).await?;
        Ok(id)
    }

    pub struct Question {
        pub tenant: String,
        pub as_of: String,
        pub text: String,
        /// The published metric and value (`expect.metric`, `expect.value`), when the line gives them.
        pub metric: Option<String>,
        pub value: Option<f64>,
        /// The published period (`expect.period`).
        pub period: Option<(chrono::NaiveDate, chrono::NaiveDate)>,
    }

    impl Question {
        /// The value this question has on a tenant whose records are `scale` copies of the fixture's:
        /// sums and counts grow with the copies, an average does not.
        pub fn scaled_value(&self, scale: usize) -> Option<f64> {
            let v = self.value?;
            Some(match self.metric.as_deref() {
                Some("aov") => v,
                _ => v * scale as f64,
            })
        }
    }

    pub fn questions(path: &std::path::Path) -> anyhow::Result<Vec<Question>> {
        let mut out = Vec::new();
        for line in std::fs::read_to_string(path)?.lines() {
            let v: Value = serde_json::from_str(line)?;
            if v["expect"]["intent"] == "metrics" {
                out.push(Question {
                    tenant: v["tenant"].as_str().unwrap_or_default().to_string(),
                    as_of: v["as_of"].as_str().unwrap_or_default().to_string(),
                    text: v["question"].as_str().unwrap_or_default().to_string(),
                    metric: v["expect"]["metric"].as_str().map(str::to_string),
                    value: v["expect"]["value"].as_f64(),
                    period: (|| {
                        let p = &v["expect"]["period"];
                        Some((
                            p["start"].as_str()?.parse().ok()?,
                            p["end"].as_str()?.parse().ok()?,
                        ))
                    })(),
                });
            }
        }
        Ok(out)
    }
}
