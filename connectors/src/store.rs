//! SQL of the connectors service, written once for both adapters.

use smb_core::bus::Message;
use smb_core::ids::TenantId;
use smb_core::outbox::Outbox;
use smb_core::store::Db;
use smb_core::{Error, outbox_insert, with_global, with_tenant};

/// The fence, inside the caller's transaction: extends the lease to `until` if it is still `lease` (same
/// owner and epoch); false when it moved on.
macro_rules! renew_in {
    ($tx:ident, $lease:expr, $until:expr) => {
        sqlx::query(
            "UPDATE connector_schedule SET lease_until = $4 \
             WHERE connector_id = $1 AND lease_owner = $2 AND lease_epoch = $3",
        )
        .bind(&$lease.connector)
        .bind(&$lease.owner)
        .bind($lease.epoch)
        .bind($until)
        .execute(&mut *$tx)
        .await?
        .rows_affected()
            == 1
    };
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ConnectorRow {
    pub id: String,
    pub tenant_id: String,
    pub kind: String,
    pub settings: String,
    pub secret_sealed: String,
    pub created_at: i64,
    pub last_sync_at: Option<i64>,
    pub last_sync_status: Option<String>,
    pub webhook_configured: bool,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunRow {
    pub id: String,
    pub connector_id: String,
    pub status: String,
    pub records_synced: i64,
    pub records_failed: i64,
    pub rejections: String,
    pub error: Option<String>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub duration_ms: Option<i64>,
}

const CONNECTOR_COLS: &str = "id, tenant_id, kind, settings, secret_sealed, created_at, last_sync_at, last_sync_status, \
    EXISTS (SELECT 1 FROM webhook_endpoints w WHERE w.connector_id = connectors.id) AS webhook_configured";

pub async fn insert_connector(db: &Db, c: &ConnectorRow, first_run_at: i64) -> Result<(), Error> {
    let tenant: TenantId = c.tenant_id.parse()?;
    with_tenant!(db, &tenant, write, |tx| {
        sqlx::query(
            "INSERT INTO connectors (id, tenant_id, kind, settings, secret_sealed, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&c.id)
        .bind(&c.tenant_id)
        .bind(&c.kind)
        .bind(&c.settings)
        .bind(&c.secret_sealed)
        .bind(c.created_at)
        .execute(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO connector_schedule (connector_id, tenant_id, next_run_at) VALUES ($1, $2, $3)")
            .bind(&c.id)
            .bind(&c.tenant_id)
            .bind(first_run_at)
            .execute(&mut *tx)
            .await?;
    });
    Ok(())
}

pub async fn list_connectors(db: &Db, tenant: &TenantId) -> Result<Vec<ConnectorRow>, Error> {
    let sql = format!(
        "SELECT {CONNECTOR_COLS} FROM connectors WHERE tenant_id = $1 ORDER BY created_at, id"
    );
    Ok(with_tenant!(db, tenant, read, |tx| {
        sqlx::query_as::<_, ConnectorRow>(&sql)
            .bind(tenant.as_str())
            .fetch_all(&mut *tx)
            .await?
    }))
}

pub async fn get_connector(
    db: &Db,
    tenant: &TenantId,
    id: &str,
) -> Result<Option<ConnectorRow>, Error> {
    let sql = format!("SELECT {CONNECTOR_COLS} FROM connectors WHERE tenant_id = $1 AND id = $2");
    Ok(with_tenant!(db, tenant, read, |tx| {
        sqlx::query_as::<_, ConnectorRow>(&sql)
            .bind(tenant.as_str())
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
    }))
}

/// Deletes the connection (credentials, schedule, cursors). Synced business data stays.
pub async fn delete_connector(db: &Db, tenant: &TenantId, id: &str) -> Result<bool, Error> {
    Ok(with_tenant!(db, tenant, write, |tx| {
        let n = sqlx::query("DELETE FROM connectors WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n == 1 {
            sqlx::query(
                "DELETE FROM connector_schedule WHERE tenant_id = $1 AND connector_id = $2",
            )
            .bind(tenant.as_str())
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM sync_cursors WHERE tenant_id = $1 AND connector_id = $2")
                .bind(tenant.as_str())
                .bind(id)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND connector_id = $2")
                .bind(tenant.as_str())
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        n == 1
    }))
}

/// The queued or running run of a connector, or a new queued one. Returns `(sync_id, created)`.
pub async fn queue_run(
    db: &Db,
    tenant: &TenantId,
    connector: &str,
    new_id: &str,
    trigger: &str,
    now: i64,
) -> Result<String, Error> {
    // Concurrent triggers of one connector queue one run: on PostgreSQL the schedule row is locked first, so
    // under READ COMMITTED the second trigger waits and then sees the first one's run (SQLite serialises
    // writers anyway).
    let lock = match db {
        Db::Postgres(_) => {
            "SELECT connector_id FROM connector_schedule WHERE connector_id = $1 FOR UPDATE"
        }
        Db::Sqlite(_) => "SELECT connector_id FROM connector_schedule WHERE connector_id = $1",
    };
    Ok(with_tenant!(db, tenant, write, |tx| {
        sqlx::query(lock)
            .bind(connector)
            .fetch_optional(&mut *tx)
            .await?;
        let active: Option<(String,)> = sqlx::query_as(
            "SELECT id FROM sync_runs WHERE tenant_id = $1 AND connector_id = $2 AND status IN ('queued', 'running') \
             ORDER BY created_at DESC LIMIT 1",
        )
        .bind(tenant.as_str())
        .bind(connector)
        .fetch_optional(&mut *tx)
        .await?;
        match active {
            Some((id,)) => id,
            None => {
                sqlx::query(
                    "INSERT INTO sync_runs (id, tenant_id, connector_id, status, trigger_kind, created_at, traceparent) \
                     VALUES ($1, $2, $3, 'queued', $4, $5, $6)",
                )
                .bind(new_id)
                .bind(tenant.as_str())
                .bind(connector)
                .bind(trigger)
                .bind(now)
                .bind(smb_core::telemetry::traceparent())
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE connector_schedule SET pending_sync_id = $2 WHERE connector_id = $1",
                )
                .bind(connector)
                .bind(new_id)
                .execute(&mut *tx)
                .await?;
                new_id.to_string()
            }
        }
    }))
}

const RUN_COLS: &str = "id, connector_id, status, records_synced, records_failed, rejections, error, started_at, finished_at, duration_ms";

pub async fn get_run(
    db: &Db,
    tenant: &TenantId,
    connector: &str,
    id: &str,
) -> Result<Option<RunRow>, Error> {
    let sql = format!(
        "SELECT {RUN_COLS} FROM sync_runs WHERE tenant_id = $1 AND connector_id = $2 AND id = $3"
    );
    Ok(with_tenant!(db, tenant, read, |tx| {
        sqlx::query_as::<_, RunRow>(&sql)
            .bind(tenant.as_str())
            .bind(connector)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
    }))
}

pub async fn mark_running(db: &Db, tenant: &TenantId, id: &str, now: i64) -> Result<(), Error> {
    with_tenant!(db, tenant, write, |tx| {
        sqlx::query(
            "UPDATE sync_runs SET status = 'running', started_at = COALESCE(started_at, $3) WHERE tenant_id = $1 AND id = $2",
        )
        .bind(tenant.as_str())
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    });
    Ok(())
}

/// The trace context of the request that queued sync run `sync_id` (none when traces were off then).
pub async fn sync_traceparent(
    db: &Db,
    tenant: &TenantId,
    sync_id: &str,
) -> Result<Option<String>, Error> {
    let row: Option<(Option<String>,)> = with_tenant!(db, tenant, read, |tx| {
        sqlx::query_as("SELECT traceparent FROM sync_runs WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.as_str())
            .bind(sync_id)
            .fetch_optional(&mut *tx)
            .await?
    });
    Ok(row.and_then(|r| r.0))
}

pub async fn get_cursor(
    db: &Db,
    tenant: &TenantId,
    connector: &str,
    stream: &str,
) -> Result<Option<String>, Error> {
    let row: Option<(String,)> = with_tenant!(db, tenant, read, |tx| {
        sqlx::query_as("SELECT cursor FROM sync_cursors WHERE tenant_id = $1 AND connector_id = $2 AND stream = $3")
            .bind(tenant.as_str())
            .bind(connector)
            .bind(stream)
            .fetch_optional(&mut *tx)
            .await?
    });
    Ok(row.map(|r| r.0))
}

/// A page's checkpoint: the stream's new cursor and the page's messages, through the outbox, in one
/// transaction — a sync that dies never loses a fetched page nor skips one.
#[expect(
    clippy::too_many_arguments,
    reason = "one transaction's whole input, named at the call site"
)]
pub async fn checkpoint(
    db: &Db,
    tenant: &TenantId,
    lease: &Lease,
    lease_until: i64,
    stream: &str,
    cursor: &str,
    outbox: &Outbox,
    msgs: &[Message],
    now: i64,
) -> Result<(), Error> {
    let connector = lease.connector.as_str();
    with_tenant!(db, tenant, write, |tx| {
        // Fenced: a replica whose lease moved on writes neither the page nor the cursor.
        if !renew_in!(tx, lease, lease_until) {
            return Err(lease_lost(lease));
        }
        outbox_insert!(tx, outbox, msgs, now);
        sqlx::query(
            "INSERT INTO sync_cursors (connector_id, stream, tenant_id, cursor, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (connector_id, stream) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at",
        )
        .bind(connector)
        .bind(stream)
        .bind(tenant.as_str())
        .bind(cursor)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    });
    Ok(())
}

/// A connector the scheduler should act on.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DueRow {
    pub connector_id: String,
    pub tenant_id: String,
    pub pending_sync_id: Option<String>,
}

/// Connectors with a pending run or due for a scheduled one, whose lease is free.
pub async fn due(db: &Db, now: i64) -> Result<Vec<DueRow>, Error> {
    Ok(with_global!(db, read, |tx| {
        sqlx::query_as::<_, DueRow>(
            "SELECT connector_id, tenant_id, pending_sync_id FROM connector_schedule \
             WHERE (pending_sync_id IS NOT NULL OR next_run_at <= $1) AND (lease_until IS NULL OR lease_until < $1) \
             ORDER BY next_run_at LIMIT 100",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?
    }))
}

/// A connector's sync lease as one replica acquired it: the epoch fences every write of the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub connector: String,
    pub owner: String,
    pub epoch: i64,
}

/// Takes the connector's sync lease (or takes it again, as its owner) and returns it with a new epoch;
/// `None` when another owner holds a live lease.
pub async fn acquire_lease(
    db: &Db,
    connector: &str,
    owner: &str,
    now: i64,
    until: i64,
) -> Result<Option<Lease>, Error> {
    let epoch: Option<(i64,)> = with_global!(db, write, |tx| {
        sqlx::query_as(
            "UPDATE connector_schedule SET lease_owner = $2, lease_until = $4, lease_epoch = lease_epoch + 1 \
             WHERE connector_id = $1 AND (lease_until IS NULL OR lease_until < $3 OR lease_owner = $2) \
             RETURNING lease_epoch",
        )
        .bind(connector)
        .bind(owner)
        .bind(now)
        .bind(until)
        .fetch_optional(&mut *tx)
        .await?
    });
    Ok(epoch.map(|(epoch,)| Lease {
        connector: connector.to_string(),
        owner: owner.to_string(),
        epoch,
    }))
}

/// The error of a write fenced off because the lease moved on.
pub fn lease_lost(lease: &Lease) -> Error {
    Error::new(
        smb_core::ErrorCode::FailedPrecondition,
        format!(
            "the sync lease of connector {} moved to another replica; this replica stops the run",
            lease.connector
        ),
    )
}

/// Extends the lease to `until` if it is still this one; false when it moved on.
pub async fn renew_lease(db: &Db, lease: &Lease, until: i64) -> Result<bool, Error> {
    Ok(with_global!(db, write, |tx| {
        renew_in!(tx, lease, until)
    }))
}

/// Writes the run's end marker if the lease is still this one, in the same transaction as the check.
pub async fn enqueue_end(
    db: &Db,
    lease: &Lease,
    until: i64,
    outbox: &Outbox,
    msgs: &[Message],
    now: i64,
) -> Result<(), Error> {
    with_global!(db, write, |tx| {
        if !renew_in!(tx, lease, until) {
            return Err(lease_lost(lease));
        }
        outbox_insert!(tx, outbox, msgs, now);
    });
    outbox.poke();
    Ok(())
}

/// Where a connector's webhooks go: its tenant, kind and sealed secret.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Endpoint {
    pub tenant_id: String,
    pub kind: String,
    pub secret_sealed: String,
}

pub async fn set_webhook_secret(
    db: &Db,
    tenant: &TenantId,
    connector: &str,
    kind: &str,
    sealed: &str,
    now: i64,
) -> Result<(), Error> {
    with_tenant!(db, tenant, write, |tx| {
        sqlx::query(
            "INSERT INTO webhook_endpoints (connector_id, tenant_id, kind, secret_sealed, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (connector_id) DO UPDATE SET secret_sealed = excluded.secret_sealed, updated_at = excluded.updated_at",
        )
        .bind(connector)
        .bind(tenant.as_str())
        .bind(kind)
        .bind(sealed)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    });
    Ok(())
}

/// The webhook endpoint of a connector, read before the tenant is known.
pub async fn webhook_endpoint(db: &Db, connector: &str) -> Result<Option<Endpoint>, Error> {
    Ok(with_global!(db, read, |tx| {
        sqlx::query_as::<_, Endpoint>(
            "SELECT tenant_id, kind, secret_sealed FROM webhook_endpoints WHERE connector_id = $1",
        )
        .bind(connector)
        .fetch_optional(&mut *tx)
        .await?
    }))
}

/// Records a verified delivery and its event in one transaction. `false`: already received (nothing written).
#[expect(
    clippy::too_many_arguments,
    reason = "one transaction's whole input, named at the call site"
)]
pub async fn accept_webhook(
    db: &Db,
    tenant: &TenantId,
    connector: &str,
    event_id: &str,
    topic: &str,
    outbox: &Outbox,
    msgs: &[Message],
    now: i64,
) -> Result<bool, Error> {
    Ok(with_tenant!(db, tenant, write, |tx| {
        let n = sqlx::query(
            "INSERT INTO webhook_inbox (connector_id, event_id, tenant_id, topic, received_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (connector_id, event_id) DO NOTHING",
        )
        .bind(connector)
        .bind(event_id)
        .bind(tenant.as_str())
        .bind(topic)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1 {
            outbox_insert!(tx, outbox, msgs, now);
        }
        n == 1
    }))
}
