//! SQL of the auth service, written once for both adapters.

use smb_core::ids::{SessionId, TenantId, UserId};
use smb_core::store::Db;
use smb_core::{Error, with_global};

/// Stores a refresh token hash; a macro so the one statement runs on either adapter's transaction.
macro_rules! insert_refresh {
    ($tx:ident, $hash:expr, $session:expr, $now:expr, $expires:expr) => {
        sqlx::query("INSERT INTO refresh_tokens (token_hash, session_id, issued_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind($hash)
            .bind($session)
            .bind($now)
            .bind($expires)
            .execute(&mut *$tx)
            .await?
    };
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: String,
    pub tenant_id: String,
    pub password_hash: String,
    pub role: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TenantRow {
    pub id: String,
    pub name: String,
    pub timezone: String,
    pub currency: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RefreshRow {
    pub session_id: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub tenant_id: String,
    pub user_id: String,
    pub role: String,
    pub revoked_at: Option<i64>,
    pub session_expires_at: i64,
}

pub struct NewTenant<'a> {
    pub tenant: &'a TenantId,
    pub user: &'a UserId,
    pub name: &'a str,
    pub timezone: &'a str,
    pub currency: &'a str,
    pub email: &'a str,
    pub password_hash: &'a str,
    pub now: i64,
}

/// Creates a tenant and its owner. `Ok(false)` when the e-mail is taken.
pub async fn create_tenant(db: &Db, t: NewTenant<'_>) -> Result<bool, Error> {
    let created = with_global!(db, write, |tx| {
        let taken: Option<(String,)> = sqlx::query_as("SELECT id FROM users WHERE email = $1")
            .bind(t.email)
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            false
        } else {
            sqlx::query("INSERT INTO tenants (id, name, timezone, currency, created_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(t.tenant.as_str())
                .bind(t.name)
                .bind(t.timezone)
                .bind(t.currency)
                .bind(t.now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO users (id, tenant_id, email, password_hash, role, created_at) \
                 VALUES ($1, $2, $3, $4, 'owner', $5)",
            )
            .bind(t.user.as_str())
            .bind(t.tenant.as_str())
            .bind(t.email)
            .bind(t.password_hash)
            .bind(t.now)
            .execute(&mut *tx)
            .await?;
            true
        }
    });
    Ok(created)
}

/// Adds a user to an existing tenant; `false` when the e-mail is taken (by anyone: e-mails are global).
pub async fn add_user(
    db: &Db,
    tenant: &TenantId,
    user: &UserId,
    email: &str,
    password_hash: &str,
    role: &str,
    now: i64,
) -> Result<bool, Error> {
    let n = with_global!(db, write, |tx| {
        sqlx::query(
            "INSERT INTO users (id, tenant_id, email, password_hash, role, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (email) DO NOTHING",
        )
        .bind(user.as_str())
        .bind(tenant.as_str())
        .bind(email)
        .bind(password_hash)
        .bind(role)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

pub async fn user_by_email(db: &Db, email: &str) -> Result<Option<UserRow>, Error> {
    Ok(with_global!(db, read, |tx| {
        sqlx::query_as::<_, UserRow>(
            "SELECT id, tenant_id, password_hash, role FROM users WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(&mut *tx)
        .await?
    }))
}

pub async fn tenant(db: &Db, tenant: &TenantId) -> Result<Option<TenantRow>, Error> {
    Ok(with_global!(db, read, |tx| {
        sqlx::query_as::<_, TenantRow>(
            "SELECT id, name, timezone, currency FROM tenants WHERE id = $1",
        )
        .bind(tenant.as_str())
        .fetch_optional(&mut *tx)
        .await?
    }))
}

/// Starts a session with its first refresh token.
pub async fn create_session(
    db: &Db,
    session: &SessionId,
    tenant: &str,
    user: &str,
    refresh_hash: &str,
    now: i64,
    expires_at: i64,
) -> Result<(), Error> {
    with_global!(db, write, |tx| {
        sqlx::query("INSERT INTO sessions (id, tenant_id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(session.as_str())
            .bind(tenant)
            .bind(user)
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        insert_refresh!(tx, refresh_hash, session.as_str(), now, expires_at);
    });
    Ok(())
}

/// What happened to a presented refresh token.
pub enum Rotation {
    /// Rotated: the session's new refresh token is stored.
    Rotated {
        tenant_id: String,
        user_id: String,
        role: String,
        session_id: String,
    },
    /// The token had already been used: the session is now revoked.
    Reused { session_id: String },
    /// Unknown, expired, or its session revoked or expired.
    Invalid,
}

/// Atomically consumes `old_hash` and stores `new_hash` for the same session; detects reuse.
pub async fn rotate_refresh(
    db: &Db,
    old_hash: &str,
    new_hash: &str,
    now: i64,
    ttl_ms: i64,
) -> Result<Rotation, Error> {
    const FIND: &str = "SELECT r.session_id, r.expires_at, r.used_at, s.tenant_id, s.user_id, u.role, s.revoked_at, \
        s.expires_at AS session_expires_at FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id \
        JOIN users u ON u.id = s.user_id WHERE r.token_hash = $1";
    let out = with_global!(db, write, |tx| {
        let row: Option<RefreshRow> = sqlx::query_as(FIND)
            .bind(old_hash)
            .fetch_optional(&mut *tx)
            .await?;
        match row {
            None => Rotation::Invalid,
            Some(r)
                if r.revoked_at.is_some() || r.session_expires_at <= now || r.expires_at <= now =>
            {
                Rotation::Invalid
            }
            Some(r) if r.used_at.is_some() => {
                sqlx::query(
                    "UPDATE sessions SET revoked_at = $2, revoke_reason = 'refresh token reuse' WHERE id = $1 AND revoked_at IS NULL",
                )
                .bind(&r.session_id)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                Rotation::Reused {
                    session_id: r.session_id,
                }
            }
            Some(r) => {
                let used = sqlx::query("UPDATE refresh_tokens SET used_at = $2 WHERE token_hash = $1 AND used_at IS NULL")
                    .bind(old_hash)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                if used.rows_affected() != 1 {
                    Rotation::Invalid
                } else {
                    let expires = (now + ttl_ms).min(r.session_expires_at);
                    insert_refresh!(tx, new_hash, &r.session_id, now, expires);
                    Rotation::Rotated {
                        tenant_id: r.tenant_id,
                        user_id: r.user_id,
                        role: r.role,
                        session_id: r.session_id,
                    }
                }
            }
        }
    });
    Ok(out)
}

/// Revokes a session of `tenant`. Returns whether it was live.
pub async fn revoke_session(
    db: &Db,
    session: &SessionId,
    tenant: &TenantId,
    now: i64,
    reason: &str,
) -> Result<bool, Error> {
    let n = with_global!(db, write, |tx| {
        sqlx::query(
            "UPDATE sessions SET revoked_at = $3, revoke_reason = $4 WHERE id = $1 AND tenant_id = $2 AND revoked_at IS NULL",
        )
        .bind(session.as_str())
        .bind(tenant.as_str())
        .bind(now)
        .bind(reason)
        .execute(&mut *tx)
        .await?
        .rows_affected()
    });
    Ok(n == 1)
}

/// Whether the session exists, is not revoked and has not expired.
pub async fn session_active(db: &Db, session: &SessionId, now: i64) -> Result<bool, Error> {
    let row: Option<(i64,)> = with_global!(db, read, |tx| {
        sqlx::query_as("SELECT expires_at FROM sessions WHERE id = $1 AND revoked_at IS NULL")
            .bind(session.as_str())
            .fetch_optional(&mut *tx)
            .await?
    });
    Ok(row.is_some_and(|(exp,)| exp > now))
}
