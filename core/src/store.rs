//! The relational store port. Two adapters: SQLite (embedded) and PostgreSQL (distributed), both through
//! sqlx, each with its own migrations applied at start.
//!
//! Tenant data is read and written only inside [`with_tenant!`] transactions. On PostgreSQL these set
//! `app.tenant_id` for the transaction, and row-level security (forced, so even the table owner is
//! subject) hides every other tenant's rows; with no tenant set, tenant tables read as empty. Queries
//! still filter on `tenant_id` themselves: row-level security is the second wall, not the only one.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};

use crate::config::DatabaseConfig;
use crate::ids::TenantId;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// What a process's database role may do. Only auth creates tenants, users and sessions: every other
/// service reads the identity tables and writes none of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Full,
    NoIdentityWrites,
}

/// The tables that say who is who: written by auth alone.
pub const IDENTITY_TABLES: &[&str] = &["tenants", "users", "sessions", "refresh_tokens"];

/// A PostgreSQL identifier, quoted.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Grants `role` what `access` allows, as the schema owner. `revoke`: also take back identity-table writes
/// granted before (for roles set aside for the other services; a process's own role may be shared with
/// auth, so it is only ever granted more).
async fn grant(owner: &PgPool, role: &str, access: Access, revoke: bool) -> anyhow::Result<()> {
    let r = ident(role);
    let mut stmts = vec![
        format!("GRANT USAGE ON SCHEMA public TO {r}"),
        format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {r}"),
    ];
    match access {
        Access::Full => stmts.push(format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {r}"
        )),
        Access::NoIdentityWrites => {
            stmts.push(format!(
                "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {r}"
            ));
            let read_only: Vec<&str> = IDENTITY_TABLES
                .iter()
                .copied()
                .chain(["_sqlx_migrations"])
                .collect();
            let tables: Vec<(String,)> = sqlx::query_as(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' AND NOT (tablename = ANY($1)) ORDER BY 1",
            )
            .bind(&read_only)
            .fetch_all(owner)
            .await?;
            for (t,) in tables {
                stmts.push(format!(
                    "GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {r}",
                    ident(&t)
                ));
            }
            if revoke {
                let list: Vec<String> = read_only.iter().map(|t| ident(t)).collect();
                stmts.push(format!(
                    "REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {} FROM {r}",
                    list.join(", ")
                ));
            }
        }
    }
    for stmt in stmts {
        sqlx::query(&stmt).execute(owner).await.map_err(|e| {
            anyhow::anyhow!("granting database role {role:?} its rights failed ({e}); the role must exist (CREATE ROLE {role} LOGIN)")
        })?;
    }
    Ok(())
}

/// Whether every migration this build knows has been applied (read as the application role).
async fn schema_current(pool: &PgPool) -> bool {
    let Some(latest) = POSTGRES_MIGRATIONS.iter().map(|m| m.version).max() else {
        return true;
    };
    sqlx::query_as::<_, (bool,)>(
        "SELECT EXISTS (SELECT 1 FROM _sqlx_migrations WHERE version = $1 AND success)",
    )
    .bind(latest)
    .fetch_one(pool)
    .await
    .is_ok_and(|(done,)| done)
}

/// A connection pool of one of the two adapters.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Db {
    /// Connects to the configured database (SQLite file in `data_dir` when none is configured) and applies
    /// the dialect's migrations.
    ///
    /// On PostgreSQL the process connects as `database.url`'s role with `access`. With `database.migrate_url`
    /// it first migrates as the schema owner and grants that role (and `database.restricted_roles`) their
    /// rights; without it, a schema already current is used as it is (a service given no owner credentials),
    /// and one that is not is migrated through `database.url`.
    pub async fn connect(
        cfg: &DatabaseConfig,
        data_dir: &Path,
        access: Access,
    ) -> anyhow::Result<Self> {
        let url = cfg.url.as_ref().map(|u| u.expose_secret().to_string());
        match url.as_deref() {
            None | Some("") => {
                std::fs::create_dir_all(data_dir)?;
                Self::open_sqlite_with(
                    &data_dir.join("smb.db"),
                    cfg.max_connections,
                    cfg.sqlite_cache_mib,
                )
                .await
            }
            Some(u) if u.starts_with("sqlite:") => {
                let opts = SqliteConnectOptions::from_str(u)?;
                Self::open_sqlite_with(
                    opts.get_filename(),
                    cfg.max_connections,
                    cfg.sqlite_cache_mib,
                )
                .await
            }
            Some(u) if u.starts_with("postgres:") || u.starts_with("postgresql:") => {
                let migrate = cfg
                    .migrate_url
                    .as_ref()
                    .map(|m| m.expose_secret().to_string());
                Self::open_postgres_as(
                    u,
                    migrate.as_deref(),
                    cfg.max_connections,
                    access,
                    &cfg.restricted_roles,
                )
                .await
            }
            Some(_) => anyhow::bail!("database.url must start with sqlite: or postgres:"),
        }
    }

    /// The size past which SQLite's write-ahead log is checkpointed whole and truncated (frames are
    /// pages of 4 KiB).
    pub const WAL_LIMIT_BYTES: i64 = 64 * 1024 * 1024;

    /// Opens (creating) a SQLite database with the default page-cache budget.
    pub async fn open_sqlite(path: &Path, max_connections: u32) -> anyhow::Result<Self> {
        let budget = crate::config::DatabaseConfig::default().sqlite_cache_mib;
        Self::open_sqlite_with(path, max_connections, budget).await
    }

    /// Opens (creating) a SQLite database whose connections share `cache_mib` MiB of page cache.
    pub async fn open_sqlite_with(
        path: &Path,
        max_connections: u32,
        cache_mib: u32,
    ) -> anyhow::Result<Self> {
        let max_connections = max_connections.max(2);
        // A negative cache_size is KiB. Each connection has a cache of its own, so a budget per connection
        // grew with the pool: 32 MiB each, ten connections, held 320 MiB once a big shop's reads had passed
        // through all of them. At least 1 MiB each.
        let per_connection_kib =
            (u64::from(cache_mib) * 1024 / u64::from(max_connections)).max(1024);
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30))
            // Reads through memory mapping, not a pread and a copy per page: the mapped file's pages are
            // the kernel's, shared by every connection and dropped under memory pressure. 2 GiB is the
            // ceiling SQLite is built with (SQLITE_MAX_MMAP_SIZE); pages past it go through the cache.
            .pragma("mmap_size", (2u64 << 30).to_string())
            .pragma("cache_size", format!("-{per_connection_kib}"))
            // Checkpoints (and their fsync) run in the background task below, not inside a request's commit.
            .pragma("wal_autocheckpoint", "0")
            // A write-ahead log that was reset is cut back to this size, not kept at its largest.
            .pragma("journal_size_limit", Self::WAL_LIMIT_BYTES.to_string());
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .connect_with(opts)
            .await?;
        SQLITE_MIGRATIONS.run(&pool).await?;
        let weak = pool.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                if weak.is_closed() {
                    return;
                }
                // (busy, frames in the log, frames copied into the database)
                let passive: Result<(i64, i64, i64), _> =
                    sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
                        .fetch_one(&weak)
                        .await;
                match passive {
                    // A passive checkpoint copies frames but never starts the log over, and under a
                    // steady writer it never finds the moment to: a 1M-order load left a 52 GB log
                    // beside a 4.7 GB database. Past the limit, wait for the writer (and readers of
                    // older snapshots) once, copy the rest and truncate the log.
                    Ok((_, frames, _)) if frames > Self::WAL_LIMIT_BYTES / 4096 => {
                        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                            .execute(&weak)
                            .await
                        {
                            tracing::warn!(error = %e, "WAL truncation failed");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
                }
            }
        });
        Ok(Self::Sqlite(pool))
    }

    /// Runs migrations through `migrate_url` (the schema owner), grants the application role what it
    /// needs, and connects as that role, which must not be able to bypass row-level security.
    pub async fn open_postgres(
        url: &str,
        migrate_url: Option<&str>,
        max_connections: u32,
    ) -> anyhow::Result<Self> {
        Self::open_postgres_as(url, migrate_url, max_connections, Access::Full, &[]).await
    }

    /// [`Db::open_postgres`] for a role with `access`, granting `restricted` roles everything but
    /// identity-table writes when migrating.
    pub async fn open_postgres_as(
        url: &str,
        migrate_url: Option<&str>,
        max_connections: u32,
        access: Access,
        restricted: &[String],
    ) -> anyhow::Result<Self> {
        let app_opts = PgConnectOptions::from_str(url)?;
        let app_user = app_opts.get_username().to_string();
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(app_opts)
            .await?;
        let owner_url = match migrate_url {
            Some(m) => Some(m),
            // No owner credentials: a current schema is used as it is.
            None if schema_current(&pool).await => None,
            None => Some(url),
        };
        if let Some(owner_url) = owner_url {
            let owner = PgPoolOptions::new()
                .max_connections(1)
                .connect(owner_url)
                .await?;
            POSTGRES_MIGRATIONS.run(&owner).await?;
            grant(&owner, &app_user, access, false).await?;
            for role in restricted {
                grant(&owner, role, Access::NoIdentityWrites, true).await?;
            }
            owner.close().await;
        }
        let (superuser, bypass): (bool, bool) = sqlx::query_as(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user",
        )
        .fetch_one(&pool)
        .await?;
        if superuser || bypass {
            anyhow::bail!(
                "database user {app_user:?} is a superuser or bypasses row-level security; connect as an ordinary \
                 role (database.url) and give the owner role in database.migrate_url"
            );
        }
        if access == Access::NoIdentityWrites {
            let (writes,): (bool,) =
                sqlx::query_as("SELECT has_table_privilege(current_user, 'users', 'INSERT')")
                    .fetch_one(&pool)
                    .await?;
            if writes {
                tracing::warn!(
                    role = %app_user,
                    "this service's database role can write the identity tables (users, sessions, tenants); give it a role of its own, listed in database.restricted_roles, so that it cannot"
                );
            }
        }
        Ok(Self::Postgres(pool))
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Self::Sqlite(_) => Dialect::Sqlite,
            Self::Postgres(_) => Dialect::Postgres,
        }
    }

    /// A cheap liveness check for `/readyz`.
    pub async fn ping(&self) -> bool {
        let r = match self {
            Self::Sqlite(p) => sqlx::query("SELECT 1").execute(p).await.map(|_| ()),
            Self::Postgres(p) => sqlx::query("SELECT 1").execute(p).await.map(|_| ()),
        };
        r.is_ok()
    }

    pub async fn close(&self) {
        match self {
            Self::Sqlite(p) => p.close().await,
            Self::Postgres(p) => p.close().await,
        }
    }
}

/// Sets the transaction's tenant for PostgreSQL row-level security.
pub async fn set_tenant(
    conn: &mut sqlx::PgConnection,
    tenant: &TenantId,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT set_config('app.tenant_id', $1, true)")
        .bind(tenant.as_str())
        .execute(conn)
        .await?;
    Ok(())
}

/// Runs `$body` in a transaction scoped to `$tenant`, once per adapter (the body is written once and
/// compiled for both). `write` takes SQLite's write lock up front (`BEGIN IMMEDIATE`) so concurrent writers
/// queue instead of failing; `read` does not. Errors propagate with `?`; the transaction commits after the
/// body and rolls back on any early return.
#[macro_export]
macro_rules! with_tenant {
    ($db:expr, $tenant:expr, $mode:ident, |$tx:ident| $body:expr) => {{
        match $db {
            $crate::store::Db::Sqlite(pool) => {
                #[allow(unused_mut)]
                let (_write, mut $tx) = $crate::__sqlite_begin!(pool, $mode);
                let out = $body;
                $tx.commit().await?;
                out
            }
            $crate::store::Db::Postgres(pool) => {
                #[allow(unused_mut)]
                let mut $tx = pool.begin().await?;
                $crate::store::set_tenant(&mut *$tx, $tenant).await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
        }
    }};
}

/// Like [`with_tenant!`] for tables that are not tenant data (identity, schedules, the bus log).
#[macro_export]
macro_rules! with_global {
    ($db:expr, $mode:ident, |$tx:ident| $body:expr) => {{
        match $db {
            $crate::store::Db::Sqlite(pool) => {
                #[allow(unused_mut)]
                let (_write, mut $tx) = $crate::__sqlite_begin!(pool, $mode);
                let out = $body;
                $tx.commit().await?;
                out
            }
            $crate::store::Db::Postgres(pool) => {
                #[allow(unused_mut)]
                let mut $tx = pool.begin().await?;
                let out = $body;
                $tx.commit().await?;
                out
            }
        }
    }};
}

#[doc(hidden)]
#[macro_export]
macro_rules! __sqlite_begin {
    ($pool:expr, write) => {{
        let (guard, tx) = $crate::store::sqlite_begin_write($pool).await?;
        (Some(guard), tx)
    }};
    ($pool:expr, read) => {
        (None::<$crate::store::WriteGuard>, $pool.begin().await?)
    };
}

/// A SQLite write transaction, after this process's earlier writers of the same database.
pub async fn sqlite_begin_write(
    pool: &sqlx::SqlitePool,
) -> std::result::Result<(WriteGuard, sqlx::Transaction<'static, sqlx::Sqlite>), sqlx::Error> {
    let guard = sqlite_write_lock(pool).await;
    Ok((guard, pool.begin_with("BEGIN IMMEDIATE").await?))
}

/// Held from `BEGIN IMMEDIATE` to commit by this process's writers of one SQLite database.
pub type WriteGuard = tokio::sync::OwnedMutexGuard<()>;

/// Writers of a SQLite database queue here, in this process, instead of meeting SQLite's busy handler,
/// which sleeps in steps of up to 100 ms and makes latency tails.
async fn sqlite_write_lock(pool: &sqlx::SqlitePool) -> WriteGuard {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static LOCKS: OnceLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let key = pool.connect_options().get_filename().to_path_buf();
    let lock = LOCKS
        .get_or_init(Default::default)
        .lock()
        .expect("sqlite write locks")
        .entry(key)
        .or_default()
        .clone();
    lock.lock_owned().await
}

/// Milliseconds since the Unix epoch: how every timestamp is stored (comparable in both dialects).
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Test support: a fresh PostgreSQL database and non-superuser role for one test, dropped afterwards.
pub mod testing {
    use super::*;

    /// The admin URL tests use (trust auth on the CI machine). Override with `SMB_TEST_PG_URL`.
    pub fn admin_url() -> String {
        std::env::var("SMB_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
    }

    /// Adds a tenant's row (what sign-up writes, without its owner and keys), for tests and benchmarks
    /// that write a tenant's records directly.
    pub async fn add_tenant(
        db: &Db,
        tenant: &TenantId,
        name: &str,
        timezone: &str,
    ) -> crate::Result<()> {
        crate::with_global!(db, write, |tx| {
            sqlx::query(
                "INSERT INTO tenants (id, name, timezone, currency, created_at) VALUES ($1, $2, $3, 'USD', 0)",
            )
            .bind(tenant.as_str())
            .bind(name)
            .bind(timezone)
            .execute(&mut *tx)
            .await?;
        });
        Ok(())
    }

    pub const APP_ROLE: &str = "smb_app_test";
    /// A role for the services other than auth, granted through `database.restricted_roles`.
    pub const SERVICE_ROLE: &str = "smb_service_test";

    /// A new database with migrations applied, connected as [`APP_ROLE`].
    pub struct PgTestDb {
        pub name: String,
        pub db: Db,
        /// The non-superuser role's URL (row-level security applies) and the schema owner's.
        pub app_url: String,
        pub owner_url: String,
        /// [`SERVICE_ROLE`]'s URL: what it may do is up to whoever migrates with it in
        /// `database.restricted_roles`.
        pub service_url: String,
    }

    impl PgTestDb {
        pub async fn create() -> anyhow::Result<Self> {
            let admin_url = admin_url();
            let admin = PgPoolOptions::new()
                .max_connections(1)
                .connect(&admin_url)
                .await?;
            let name = format!("smb_t_{}", uuid::Uuid::new_v4().simple());
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&admin)
                .await?;
            // Roles are cluster-wide; several tests may race to create them.
            for role in [APP_ROLE, SERVICE_ROLE] {
                let _ = sqlx::query(&format!(
                    "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{role}') THEN \
                     CREATE ROLE {role} LOGIN NOSUPERUSER NOBYPASSRLS; END IF; END $$"
                ))
                .execute(&admin)
                .await;
            }
            admin.close().await;
            let base = admin_url
                .rsplit_once('/')
                .map_or(admin_url.as_str(), |(b, _)| b)
                .to_string();
            let owner_url = format!("{base}/{name}");
            let mut app = PgConnectOptions::from_str(&owner_url)?;
            app = app.username(APP_ROLE);
            let app_url = format!(
                "postgres://{APP_ROLE}@{}:{}/{name}",
                app.get_host(),
                app.get_port()
            );
            let service_url = format!(
                "postgres://{SERVICE_ROLE}@{}:{}/{name}",
                app.get_host(),
                app.get_port()
            );
            let db = Db::open_postgres(&app_url, Some(&owner_url), 5).await?;
            Ok(Self {
                name,
                db,
                app_url,
                owner_url,
                service_url,
            })
        }

        /// Drops the database (call at the end of the test).
        pub async fn drop_db(self) {
            self.db.close().await;
            if let Ok(admin) = PgPoolOptions::new()
                .max_connections(1)
                .connect(&admin_url())
                .await
            {
                let _ = sqlx::query(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .execute(&admin)
                .await;
                admin.close().await;
            }
        }
    }

    /// A fresh SQLite database in a temporary directory.
    pub async fn sqlite() -> anyhow::Result<(Db, TempDir)> {
        let dir = TempDir::new()?;
        let db = Db::open_sqlite(&dir.path().join("smb.db"), 4).await?;
        Ok((db, dir))
    }

    /// A temporary directory removed on drop.
    pub struct TempDir(std::path::PathBuf);

    impl TempDir {
        pub fn new() -> std::io::Result<Self> {
            let p =
                std::env::temp_dir().join(format!("smb-test-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&p)?;
            Ok(Self(p))
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}
