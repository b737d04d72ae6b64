//! Shared helpers of the benchmark programs.

use std::time::Duration;

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

/// The two fixture tenants loaded straight into a store, and the published questions.
pub mod fixtures {
    use serde_json::Value;
    use smb_core::ids::TenantId;
    use smb_core::store::Db;
    use smb_core::with_global;
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
        let mut out = Vec::new();
        for t in &TENANTS {
            let id = TenantId::generate();
            with_global!(db, write, |tx| {
                sqlx::query("INSERT INTO tenants (id, name, timezone, currency, created_at) VALUES ($1, $2, $3, 'USD', 0)")
                    .bind(id.as_str())
                    .bind(t.name)
                    .bind(t.zone)
                    .execute(&mut *tx)
                    .await?;
            });
            let tz: chrono_tz::Tz = t.zone.parse()?;
            for (source, stream, file, key) in t.streams {
                let path = dir.join(t.name).join(file);
                let v: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
                let records = v[key]
                    .as_array()
                    .ok_or_else(|| anyhow::anyhow!("{} has no {key} array", path.display()))?;
                for page in records.chunks(250) {
                    let mut b = Batch::default();
                    transform_page(source, stream, page, tz, &mut b);
                    b.dedupe();
                    load_batch(db, &id, &b).await?;
                }
            }
            // The tenant's source as a connector with a finished sync, so answers cover it (a tenant without
            // one is told to connect a source).
            let kind = t.streams[0].0;
            let connector = uuid::Uuid::now_v7().to_string();
            smb_core::with_tenant!(db, &id, write, |tx| {
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
            out.push((t.name, id));
        }
        Ok(out)
    }

    pub struct Question {
        pub tenant: String,
        pub as_of: String,
        pub text: String,
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
                });
            }
        }
        Ok(out)
    }
}
