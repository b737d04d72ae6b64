//! ops-copilot: actions a question proposes and a person confirms. Nothing happens on the first request:
//! a proposal is stored (`pending_confirmation`, expiring after `actions.ttl_hours`); confirming moves it to
//! `executing` in one conditional update — so of two concurrent confirms exactly one executes — then the
//! outcome is recorded (`executed`, `failed`, or `outcome_unknown` when a send broke off midway or the
//! process died while executing). Every step is written to the tenant's audit log.
//!
//! Invariants: every read and write is scoped to the caller's tenant; only owners confirm; e-mail sends
//! are capped per tenant and day; an e-mail body is a summary computed by the metrics engine.

pub mod mail;
pub mod service;
pub mod summary;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Datelike, Duration as Days, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use serde_json::{Value as Json, json};
use smb_core::ids::{Currency, TenantId};
use smb_core::store::Db;
use smb_core::tenant::Caller;
use smb_core::{Error, ErrorCode, with_global, with_tenant};
use smb_proto::connectors::v1 as conn_pb;
use smb_proto::connectors::v1::connectors_service_server::ConnectorsService;
use smb_proto::orchestrator::v1 as pb;

use crate::answer::describe;
use crate::nlu::action::{ActionRequest, Recipient, is_address};
use crate::period::{Kind, Period, add_months, month_start, week_start};
use mail::{Mailer, SendError};

/// Appends one audit row inside the transaction `$tx` (both store dialects compile the same body).
macro_rules! audit_row {
    ($tx:ident, $tenant:expr, $at:expr, $actor:expr, $event:expr, $subject:expr, $detail:expr) => {
        sqlx::query(
            "INSERT INTO audit_log (tenant_id, at, actor, event, subject, detail) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind($tenant)
        .bind($at)
        .bind($actor)
        .bind($event)
        .bind($subject)
        .bind($detail)
        .execute(&mut *$tx)
        .await?
    };
}

/// What the orchestrator knows about the tenant a proposal is for.
pub struct TenantInfo {
    pub name: String,
    pub tz: chrono_tz::Tz,
    pub currency: Currency,
}

/// A proposal's answer: the text and the `action` object of the result.
pub struct Proposal {
    pub answer: String,
    pub action: Option<smb_proto::orchestrator::v1::Action>,
}

pub struct Ops {
    db: Db,
    mailer: Option<Mailer>,
    connectors: Option<Arc<dyn ConnectorsService>>,
    ttl: Duration,
    daily_limit: i64,
    /// An action still `executing` after this long was interrupted: its outcome is unknown.
    stale: Duration,
}

/// A stored action.
#[derive(sqlx::FromRow, Debug, Clone)]
struct Row {
    id: String,
    kind: String,
    status: String,
    params: String,
    preview: String,
    needs_owner: bool,
    proposed_by: String,
    proposed_at: i64,
    expires_at: i64,
    decided_by: Option<String>,
    decided_at: Option<i64>,
    finished_at: Option<i64>,
    attempts: i32,
    outcome: Option<String>,
}

const COLUMNS: &str = "id, kind, status, params, preview, needs_owner, proposed_by, proposed_at, \
                       expires_at, decided_by, decided_at, finished_at, attempts, outcome";

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn rfc3339(ms: Option<i64>) -> String {
    ms.and_then(DateTime::<Utc>::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

impl Row {
    fn params(&self) -> BTreeMap<String, String> {
        serde_json::from_str(&self.params).unwrap_or_default()
    }

    fn to_pb(&self) -> pb::Action {
        pb::Action {
            id: self.id.clone(),
            r#type: self.kind.clone(),
            status: self.status.clone(),
            params: self.params().into_iter().collect(),
            preview: self.preview.clone(),
            needs_owner: self.needs_owner,
            proposed_by: self.proposed_by.clone(),
            proposed_at: rfc3339(Some(self.proposed_at)),
            expires_at: rfc3339(Some(self.expires_at)),
            decided_by: self.decided_by.clone().unwrap_or_default(),
            decided_at: rfc3339(self.decided_at),
            finished_at: rfc3339(self.finished_at),
            outcome: self.outcome.clone().unwrap_or_default(),
            attempts: self.attempts,
        }
    }
}

/// How an execution ended.
enum Outcome {
    Executed(String),
    Failed(String),
    Unknown(String),
}

impl Ops {
    pub fn new(
        db: Db,
        mailer: Option<Mailer>,
        connectors: Option<Arc<dyn ConnectorsService>>,
        ttl: Duration,
        daily_limit: u32,
        send_timeout: Duration,
    ) -> Self {
        Self {
            db,
            mailer,
            connectors,
            ttl,
            daily_limit: i64::from(daily_limit),
            stale: send_timeout * 2 + Duration::from_secs(30),
        }
    }

    async fn audit(
        &self,
        tenant: &TenantId,
        actor: &str,
        event: &str,
        subject: &str,
        detail: &str,
    ) -> Result<(), Error> {
        with_tenant!(&self.db, tenant, write, |tx| {
            audit_row!(tx, tenant.as_str(), now_ms(), actor, event, subject, detail);
        });
        Ok(())
    }

    async fn user_email(&self, caller: &Caller) -> Result<Option<String>, Error> {
        let row: Option<(String,)> = with_global!(&self.db, read, |tx| {
            sqlx::query_as("SELECT email FROM users WHERE id = $1 AND tenant_id = $2")
                .bind(caller.user.as_str())
                .bind(caller.tenant.as_str())
                .fetch_optional(&mut *tx)
                .await?
        });
        Ok(row.map(|r| r.0))
    }

    /// Whether `addr` is one of the tenant's users or customers.
    async fn known_address(&self, tenant: &TenantId, addr: &str) -> Result<bool, Error> {
        let user: Option<(String,)> = with_global!(&self.db, read, |tx| {
            sqlx::query_as("SELECT id FROM users WHERE tenant_id = $1 AND lower(email) = $2")
                .bind(tenant.as_str())
                .bind(addr)
                .fetch_optional(&mut *tx)
                .await?
        });
        if user.is_some() {
            return Ok(true);
        }
        let customer: Option<(String,)> = with_tenant!(&self.db, tenant, read, |tx| {
            sqlx::query_as(
                "SELECT external_id FROM customers WHERE tenant_id = $1 AND (customer_key = $2 OR lower(email) = $2) LIMIT 1",
            )
            .bind(tenant.as_str())
            .bind(addr)
            .fetch_optional(&mut *tx)
            .await?
        });
        Ok(customer.is_some())
    }

    /// Turns an understood request into a stored proposal (or a question back when something is missing).
    pub async fn propose(
        &self,
        caller: &Caller,
        t: &TenantInfo,
        req: &ActionRequest,
        today: NaiveDate,
    ) -> Result<Proposal, Error> {
        let ask = |answer: String| Proposal {
            answer,
            action: None,
        };
        let mut params = BTreeMap::new();
        let mut needs_owner = false;
        let preview = match req.kind {
            "send_email" => {
                let to = match self.resolve_recipient(caller, &req.to).await? {
                    Ok(to) => to,
                    Err(question) => return Ok(ask(question)),
                };
                let period = req
                    .period
                    .unwrap_or_else(|| Period::new(today - Days::days(29), today, Kind::Days));
                let period = clip(period, today);
                let s = summary::compute(&self.db, &caller.tenant, &t.currency, &period).await?;
                let subject = format!("{}: summary for {}", t.name, describe(&period));
                let known = self.known_address(&caller.tenant, &to).await?;
                needs_owner = !known;
                params.insert("to".to_string(), to.clone());
                params.insert("subject".to_string(), subject.clone());
                params.insert("period_start".to_string(), period.start.to_string());
                params.insert("period_end".to_string(), period.end.to_string());
                let mut p = format!(
                    "E-mail {to} \"{subject}\": {} ({})",
                    s.headline(),
                    t.tz.name()
                );
                if !known {
                    p.push_str(&format!(
                        ". Note: {to} is not one of your users or customers — only an owner can confirm this"
                    ));
                }
                p
            }
            "create_task" => {
                let title = req.title.clone().unwrap_or_else(|| "Follow up".into());
                params.insert("title".to_string(), title.clone());
                match req.due {
                    Some(d) => {
                        params.insert("due_date".to_string(), d.to_string());
                        format!(
                            "Create the task \"{title}\", due {}",
                            d.format("%A, %B %-d, %Y")
                        )
                    }
                    None => format!("Create the task \"{title}\" (no due date)"),
                }
            }
            "run_workflow" if req.workflow == Some("sync_all") => {
                let kinds = self.connector_kinds(&caller.tenant).await?;
                if kinds.is_empty() {
                    return Ok(ask("There is nothing to sync: no source is connected yet. Connect Shopify or Stripe first (POST /v1/connectors).".into()));
                }
                params.insert("workflow".to_string(), "sync_all".to_string());
                format!(
                    "Sync all {} connected source{} now ({})",
                    kinds.len(),
                    if kinds.len() == 1 { "" } else { "s" },
                    kinds.join(", ")
                )
            }
            "run_workflow" => {
                let to = match &req.to {
                    Recipient::None => self
                        .user_email(caller)
                        .await?
                        .ok_or_else(|| Error::unauthenticated("unknown user; log in again"))?,
                    other => match self.resolve_recipient(caller, other).await? {
                        Ok(to) => to,
                        Err(question) => return Ok(ask(question)),
                    },
                };
                needs_owner = !self.known_address(&caller.tenant, &to).await?;
                params.insert("workflow".to_string(), "weekly_summary".to_string());
                params.insert("to".to_string(), to.clone());
                match req.cadence {
                    Some(c) => {
                        params.insert("cadence".to_string(), c.to_string());
                        let when = match c {
                            "daily" => "every day at 08:00".to_string(),
                            "monthly" => "on the 1st of every month at 08:00".to_string(),
                            _ => "every Monday at 08:00".to_string(),
                        };
                        format!(
                            "E-mail the key figures (revenue, orders, average order value, new customers, refunds) of the {} just ended to {to} {when} ({})",
                            match c {
                                "daily" => "day",
                                "monthly" => "month",
                                _ => "week",
                            },
                            t.tz.name()
                        )
                    }
                    None => {
                        let period = clip(
                            req.period.unwrap_or_else(|| {
                                let s = week_start(today) - Days::days(7);
                                Period::new(s, s + Days::days(6), Kind::Week)
                            }),
                            today,
                        );
                        params.insert("period_start".to_string(), period.start.to_string());
                        params.insert("period_end".to_string(), period.end.to_string());
                        let s = summary::compute(&self.db, &caller.tenant, &t.currency, &period)
                            .await?;
                        format!(
                            "E-mail the weekly summary for {} to {to} now: {}",
                            describe(&period),
                            s.headline()
                        )
                    }
                }
            }
            _ => {
                return Ok(ask("I can't change records in your store or payment system (refunds, cancellations, edits) from here, so nothing was done. I can e-mail a summary, create a task, sync your sources or schedule a weekly summary.".into()));
            }
        };
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_ms();
        let expires = now + i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX / 2);
        let params_json = serde_json::to_string(&params).expect("string map");
        with_tenant!(&self.db, &caller.tenant, write, |tx| {
            sqlx::query(
                "INSERT INTO actions (tenant_id, id, kind, status, params, preview, needs_owner, proposed_by, proposed_at, expires_at) \
                 VALUES ($1, $2, $3, 'pending_confirmation', $4, $5, $6, $7, $8, $9)",
            )
            .bind(caller.tenant.as_str())
            .bind(&id)
            .bind(req.kind)
            .bind(&params_json)
            .bind(&preview)
            .bind(needs_owner)
            .bind(caller.user.as_str())
            .bind(now)
            .bind(expires)
            .execute(&mut *tx)
            .await?;
            audit_row!(
                tx,
                caller.tenant.as_str(),
                now,
                caller.user.as_str(),
                "action.proposed",
                &id,
                format!("{}: {preview}", req.kind)
            );
        });
        let action = self.get(caller, &id).await?;
        let hours = self.ttl.as_secs() / 3600;
        let who = if caller.role == "owner" {
            "you confirm it"
        } else {
            "an owner confirms it"
        };
        Ok(Proposal {
            answer: format!(
                "{preview}. Nothing has been done yet: it happens when {who} (POST /v1/actions/{id}/confirm, or /reject to drop it). The proposal expires in {hours} hours."
            ),
            action: Some(action),
        })
    }

    /// The address an e-mail goes to, or the question to ask when there is none.
    async fn resolve_recipient(
        &self,
        caller: &Caller,
        to: &Recipient,
    ) -> Result<Result<String, String>, Error> {
        Ok(match to {
            Recipient::Address(a) => Ok(a.clone()),
            Recipient::Me => match self.user_email(caller).await? {
                Some(a) => Ok(a.to_lowercase()),
                None => return Err(Error::unauthenticated("unknown user; log in again")),
            },
            Recipient::Customer(c) if is_address(&c.key) => Ok(c.key.clone()),
            Recipient::Customer(c) => Err(format!(
                "I don't have an e-mail address for {}. Who should it go to? For example: \"Email name@example.com last month's summary\".",
                c.name
            )),
            Recipient::Unknown(who) => Err(format!(
                "I don't have an e-mail address for {who}. Say the address, for example: \"Email name@example.com last month's summary\"."
            )),
            Recipient::None => Err("Who should I e-mail it to? Say an address (\"Email ava@example.com last month's summary\") or \"me\".".into()),
        })
    }

    async fn connector_kinds(&self, tenant: &TenantId) -> Result<Vec<String>, Error> {
        let rows: Vec<(String,)> = with_tenant!(&self.db, tenant, read, |tx| {
            sqlx::query_as("SELECT kind FROM connectors WHERE tenant_id = $1 ORDER BY kind")
                .bind(tenant.as_str())
                .fetch_all(&mut *tx)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(|r| match r.0.as_str() {
                "shopify" => "Shopify".to_string(),
                "stripe" => "Stripe".to_string(),
                other => other.to_string(),
            })
            .collect())
    }

    /// Marks interrupted executions `outcome_unknown` and lapsed proposals `expired`. A read looks first: the
    /// reads that call this (get, list) write only when there is something to mark.
    async fn sweep(&self, tenant: &TenantId) -> Result<(), Error> {
        let now = now_ms();
        let stale = now - i64::try_from(self.stale.as_millis()).unwrap_or(0);
        let (due,): (bool,) = with_tenant!(&self.db, tenant, read, |tx| {
            sqlx::query_as(
                "SELECT EXISTS (SELECT 1 FROM actions WHERE tenant_id = $1 AND \
                 ((status = 'executing' AND started_at < $3) OR (status = 'pending_confirmation' AND expires_at <= $2)))",
            )
            .bind(tenant.as_str())
            .bind(now)
            .bind(stale)
            .fetch_one(&mut *tx)
            .await?
        });
        if !due {
            return Ok(());
        }
        with_tenant!(&self.db, tenant, write, |tx| {
            sqlx::query(
                "UPDATE actions SET status = 'outcome_unknown', finished_at = $2, \
                 outcome = 'interrupted while executing; check whether it happened, then confirm again to retry' \
                 WHERE tenant_id = $1 AND status = 'executing' AND started_at < $3",
            )
            .bind(tenant.as_str())
            .bind(now)
            .bind(stale)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE actions SET status = 'expired' WHERE tenant_id = $1 AND status = 'pending_confirmation' AND expires_at <= $2",
            )
            .bind(tenant.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        });
        Ok(())
    }

    async fn row(&self, tenant: &TenantId, id: &str) -> Result<Row, Error> {
        let id = parse_id(id)?;
        let row: Option<Row> = with_tenant!(&self.db, tenant, read, |tx| {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM actions WHERE tenant_id = $1 AND id = $2"
            ))
            .bind(tenant.as_str())
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await?
        });
        row.ok_or_else(|| Error::not_found("no such action; list them with GET /v1/actions"))
    }

    pub async fn get(&self, caller: &Caller, id: &str) -> Result<pb::Action, Error> {
        self.sweep(&caller.tenant).await?;
        Ok(self.row(&caller.tenant, id).await?.to_pb())
    }

    pub async fn list(
        &self,
        caller: &Caller,
        status: &str,
        limit: i32,
    ) -> Result<Vec<pb::Action>, Error> {
        const STATUSES: &[&str] = &[
            "",
            "pending_confirmation",
            "executing",
            "executed",
            "failed",
            "outcome_unknown",
            "rejected",
            "expired",
        ];
        if !STATUSES.contains(&status) {
            return Err(Error::invalid(format!(
                "status must be one of {}",
                STATUSES[1..].join(", ")
            )));
        }
        let limit = if limit <= 0 { 50 } else { limit.min(200) };
        self.sweep(&caller.tenant).await?;
        let rows: Vec<Row> = with_tenant!(&self.db, &caller.tenant, read, |tx| {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM actions WHERE tenant_id = $1 AND ($2 = '' OR status = $2) \
                 ORDER BY proposed_at DESC, id DESC LIMIT $3"
            ))
            .bind(caller.tenant.as_str())
            .bind(status)
            .bind(i64::from(limit))
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows.iter().map(Row::to_pb).collect())
    }

    pub async fn reject(&self, caller: &Caller, id: &str) -> Result<pb::Action, Error> {
        self.sweep(&caller.tenant).await?;
        let row = self.row(&caller.tenant, id).await?;
        if caller.role != "owner" && row.proposed_by != caller.user.as_str() {
            return Err(Error::new(
                ErrorCode::PermissionDenied,
                "only an owner or the person who asked for it can reject this action",
            ));
        }
        let now = now_ms();
        let changed = with_tenant!(&self.db, &caller.tenant, write, |tx| {
            let n = sqlx::query(
                "UPDATE actions SET status = 'rejected', decided_by = $3, decided_at = $4 \
                 WHERE tenant_id = $1 AND id = $2 AND status = 'pending_confirmation'",
            )
            .bind(caller.tenant.as_str())
            .bind(&row.id)
            .bind(caller.user.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                audit_row!(
                    tx,
                    caller.tenant.as_str(),
                    now,
                    caller.user.as_str(),
                    "action.rejected",
                    &row.id,
                    ""
                );
            }
            n
        });
        let after = self.row(&caller.tenant, &row.id).await?;
        if changed == 0 && after.status != "rejected" {
            return Err(Error::new(
                ErrorCode::FailedPrecondition,
                format!(
                    "this action is {} and can no longer be rejected",
                    after.status.replace('_', " ")
                ),
            ));
        }
        Ok(after.to_pb())
    }

    /// Executes a pending action (or retries one that failed or whose outcome is unknown), exactly once
    /// per confirmation: the move to `executing` is a conditional update, so a concurrent confirm finds it
    /// taken and returns its state instead.
    pub async fn confirm(&self, caller: &Caller, id: &str) -> Result<pb::Action, Error> {
        self.sweep(&caller.tenant).await?;
        let row = self.row(&caller.tenant, id).await?;
        if caller.role != "owner" {
            return Err(Error::new(
                ErrorCode::PermissionDenied,
                "only an owner of this business can confirm actions; ask an owner to confirm it",
            ));
        }
        match row.status.as_str() {
            "pending_confirmation" | "failed" | "outcome_unknown" => {}
            "executing" | "executed" => return Ok(row.to_pb()),
            "expired" => {
                return Err(Error::new(
                    ErrorCode::FailedPrecondition,
                    "this proposal has expired; ask again to get a new one",
                ));
            }
            other => {
                return Err(Error::new(
                    ErrorCode::FailedPrecondition,
                    format!(
                        "this action was {} and cannot be confirmed; ask again",
                        other.replace('_', " ")
                    ),
                ));
            }
        }
        let sends_mail = row.kind == "send_email"
            || row.params().get("workflow").map(String::as_str) == Some("weekly_summary")
                && !row.params().contains_key("cadence");
        if sends_mail {
            if self.mailer.is_none() {
                return Err(Error::new(
                    ErrorCode::FailedPrecondition,
                    "e-mail is not set up on this server (email.smtp_url), so nothing was sent; ask your administrator to configure it",
                ));
            }
            if self.sent_today(&caller.tenant).await? >= self.daily_limit {
                return Err(Error {
                    code: ErrorCode::RateLimited,
                    message: format!(
                        "this business has sent its {} e-mails for today; try again tomorrow",
                        self.daily_limit
                    ),
                    retry_after: Some(3600),
                });
            }
        }
        let now = now_ms();
        let claimed = with_tenant!(&self.db, &caller.tenant, write, |tx| {
            let n = sqlx::query(
                "UPDATE actions SET status = 'executing', started_at = $3, attempts = attempts + 1, \
                 decided_by = $4, decided_at = $3, outcome = NULL, finished_at = NULL \
                 WHERE tenant_id = $1 AND id = $2 AND \
                 ((status = 'pending_confirmation' AND expires_at > $3) OR status IN ('failed', 'outcome_unknown'))",
            )
            .bind(caller.tenant.as_str())
            .bind(&row.id)
            .bind(now)
            .bind(caller.user.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n == 1 {
                audit_row!(
                    tx,
                    caller.tenant.as_str(),
                    now,
                    caller.user.as_str(),
                    "action.confirmed",
                    &row.id,
                    format!("attempt {}", row.attempts + 1)
                );
            }
            n
        });
        if claimed == 0 {
            // Someone else confirmed (or it expired) in between: report where it stands.
            let now_row = self.row(&caller.tenant, &row.id).await?;
            if now_row.status == "pending_confirmation" {
                return Err(Error::new(
                    ErrorCode::FailedPrecondition,
                    "this proposal has expired; ask again to get a new one",
                ));
            }
            return Ok(now_row.to_pb());
        }
        let outcome = self.execute(&caller.tenant, caller, &row).await;
        self.finish(&caller.tenant, caller.user.as_str(), &row.id, outcome)
            .await?;
        Ok(self.row(&caller.tenant, &row.id).await?.to_pb())
    }

    async fn finish(
        &self,
        tenant: &TenantId,
        actor: &str,
        id: &str,
        outcome: Outcome,
    ) -> Result<(), Error> {
        let (status, event, text) = match outcome {
            Outcome::Executed(t) => ("executed", "action.executed", t),
            Outcome::Failed(t) => ("failed", "action.failed", t),
            Outcome::Unknown(t) => ("outcome_unknown", "action.outcome_unknown", t),
        };
        let now = now_ms();
        with_tenant!(&self.db, tenant, write, |tx| {
            sqlx::query(
                "UPDATE actions SET status = $3, finished_at = $4, outcome = $5 WHERE tenant_id = $1 AND id = $2 AND status = 'executing'",
            )
            .bind(tenant.as_str())
            .bind(id)
            .bind(status)
            .bind(now)
            .bind(&text)
            .execute(&mut *tx)
            .await?;
            audit_row!(tx, tenant.as_str(), now, actor, event, id, &text);
        });
        Ok(())
    }

    /// E-mails this tenant sent since midnight UTC.
    async fn sent_today(&self, tenant: &TenantId) -> Result<i64, Error> {
        let midnight = Utc::now()
            .date_naive()
            .and_time(NaiveTime::MIN)
            .and_utc()
            .timestamp_millis();
        let (n,): (i64,) = with_tenant!(&self.db, tenant, read, |tx| {
            sqlx::query_as(
                "SELECT COUNT(*) FROM audit_log WHERE tenant_id = $1 AND event = 'email.sent' AND at >= $2",
            )
            .bind(tenant.as_str())
            .bind(midnight)
            .fetch_one(&mut *tx)
            .await?
        });
        Ok(n)
    }

    async fn tenant_info(&self, tenant: &TenantId) -> Result<TenantInfo, Error> {
        let row: Option<(String, String, String)> = with_global!(&self.db, read, |tx| {
            sqlx::query_as("SELECT name, timezone, currency FROM tenants WHERE id = $1")
                .bind(tenant.as_str())
                .fetch_optional(&mut *tx)
                .await?
        });
        let (name, tz, cur) = row.ok_or_else(|| Error::not_found("unknown tenant"))?;
        Ok(TenantInfo {
            name,
            tz: tz
                .parse()
                .map_err(|_| Error::internal("tenant zone", &tz))?,
            currency: Currency::parse(&cur)
                .unwrap_or_else(|_| Currency::parse("USD").expect("USD")),
        })
    }

    async fn send_summary(
        &self,
        tenant: &TenantId,
        action_id: &str,
        to: &str,
        subject: Option<&str>,
        period: Period,
    ) -> Outcome {
        let Some(mailer) = &self.mailer else {
            return Outcome::Failed("e-mail is not set up on this server (email.smtp_url)".into());
        };
        let info = match self.tenant_info(tenant).await {
            Ok(i) => i,
            Err(e) => return Outcome::Failed(e.message),
        };
        let s = match summary::compute(&self.db, tenant, &info.currency, &period).await {
            Ok(s) => s,
            Err(e) => {
                return Outcome::Failed(format!(
                    "the summary could not be computed: {}",
                    e.message
                ));
            }
        };
        let subject = subject.map_or_else(
            || format!("{}: summary for {}", info.name, describe(&period)),
            str::to_string,
        );
        let body = s.body(&info.name, &period, info.tz.name());
        match mailer.send(action_id, to, &subject, body).await {
            Ok(()) => {
                if let Err(e) = self
                    .audit(tenant, "system", "email.sent", action_id, to)
                    .await
                {
                    tracing::warn!(error = %e, "e-mail sent but not counted");
                }
                Outcome::Executed(format!("e-mailed {to}"))
            }
            Err(SendError::NotSent(m)) => {
                Outcome::Failed(format!("not sent: {m}; confirm again to retry"))
            }
            Err(SendError::Unknown(m)) => Outcome::Unknown(format!(
                "{m}; the e-mail may or may not have arrived — check with {to} before confirming again"
            )),
        }
    }

    async fn execute(&self, tenant: &TenantId, caller: &Caller, row: &Row) -> Outcome {
        let p = row.params();
        let period = || -> Option<Period> {
            let s = p.get("period_start")?.parse().ok()?;
            let e = p.get("period_end")?.parse().ok()?;
            Some(Period::new(s, e, Kind::Custom))
        };
        match (row.kind.as_str(), p.get("workflow").map(String::as_str)) {
            ("send_email", _) => {
                let (Some(to), Some(period)) = (p.get("to"), period()) else {
                    return Outcome::Failed("the proposal is incomplete; ask again".into());
                };
                self.send_summary(
                    tenant,
                    &row.id,
                    to,
                    p.get("subject").map(String::as_str),
                    period,
                )
                .await
            }
            ("create_task", _) => {
                let title = p
                    .get("title")
                    .cloned()
                    .unwrap_or_else(|| "Follow up".into());
                let due = p.get("due_date").cloned();
                let id = uuid::Uuid::now_v7().to_string();
                let r: Result<u64, Error> = async {
                    Ok(with_tenant!(&self.db, tenant, write, |tx| {
                        sqlx::query(
                            "INSERT INTO tasks (tenant_id, id, title, due_date, status, created_by, created_at, action_id) \
                             VALUES ($1, $2, $3, $4, 'open', $5, $6, $7) ON CONFLICT (tenant_id, action_id) DO NOTHING",
                        )
                        .bind(tenant.as_str())
                        .bind(&id)
                        .bind(&title)
                        .bind(&due)
                        .bind(&row.proposed_by)
                        .bind(now_ms())
                        .bind(&row.id)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected()
                    }))
                }
                .await;
                match r {
                    Ok(_) => Outcome::Executed(format!("task \"{title}\" created")),
                    Err(e) => {
                        Outcome::Failed(format!("the task could not be saved: {}", e.message))
                    }
                }
            }
            ("run_workflow", Some("sync_all")) => self.sync_all(caller).await,
            ("run_workflow", Some("weekly_summary")) => {
                let to = p.get("to").cloned().unwrap_or_default();
                if let Some(cadence) = p.get("cadence") {
                    self.schedule(tenant, row, cadence, &p).await
                } else {
                    let Some(period) = period() else {
                        return Outcome::Failed("the proposal is incomplete; ask again".into());
                    };
                    self.send_summary(tenant, &row.id, &to, None, period).await
                }
            }
            _ => Outcome::Failed("this kind of action is not supported".into()),
        }
    }

    async fn sync_all(&self, caller: &Caller) -> Outcome {
        let Some(c) = &self.connectors else {
            return Outcome::Failed("syncing is not available from this service".into());
        };
        let list = match c
            .list_connectors(caller.request(conn_pb::ListConnectorsRequest {}))
            .await
        {
            Ok(r) => r.into_inner().connectors,
            Err(e) => {
                return Outcome::Failed(format!(
                    "the connectors could not be listed: {}",
                    e.message()
                ));
            }
        };
        let (mut started, mut problems) = (0, Vec::new());
        for conn in &list {
            match c
                .trigger_sync(caller.request(conn_pb::TriggerSyncRequest {
                    connector_id: conn.id.clone(),
                }))
                .await
            {
                Ok(_) => started += 1,
                Err(e) => problems.push(e.message().to_string()),
            }
        }
        if problems.is_empty() {
            Outcome::Executed(format!(
                "started {started} sync{}",
                if started == 1 { "" } else { "s" }
            ))
        } else if started > 0 {
            Outcome::Executed(format!(
                "started {started} syncs; not started: {}",
                problems.join("; ")
            ))
        } else {
            Outcome::Failed(format!("no sync started: {}", problems.join("; ")))
        }
    }

    async fn schedule(
        &self,
        tenant: &TenantId,
        row: &Row,
        cadence: &str,
        p: &BTreeMap<String, String>,
    ) -> Outcome {
        let info = match self.tenant_info(tenant).await {
            Ok(i) => i,
            Err(e) => return Outcome::Failed(e.message),
        };
        let next = next_run(cadence, Utc::now(), info.tz);
        let params = serde_json::to_string(&json!({"to": p.get("to")})).expect("json");
        let r: Result<(), Error> = async {
            with_global!(&self.db, write, |tx| {
                sqlx::query(
                    "INSERT INTO workflow_schedules (tenant_id, id, workflow, cadence, params, next_run_at, created_by, created_at) \
                     VALUES ($1, $2, 'weekly_summary', $3, $4, $5, $6, $7) ON CONFLICT (tenant_id, id) DO NOTHING",
                )
                .bind(tenant.as_str())
                .bind(&row.id)
                .bind(cadence)
                .bind(&params)
                .bind(next.timestamp_millis())
                .bind(row.decided_by.as_deref().unwrap_or(&row.proposed_by))
                .bind(now_ms())
                .execute(&mut *tx)
                .await?;
            });
            Ok(())
        }
        .await;
        match r {
            Ok(()) => Outcome::Executed(format!(
                "scheduled {cadence}; first run {}",
                next.with_timezone(&info.tz)
                    .format("%A, %B %-d, %Y %H:%M %Z")
            )),
            Err(e) => Outcome::Failed(format!("the schedule could not be saved: {}", e.message)),
        }
    }

    /// Runs the scheduled workflows that are due, each once: a replica claims a run by moving its
    /// `next_run_at` forward in a conditional update; the run itself is an action like any other.
    pub async fn run_due(&self) -> Result<usize, Error> {
        type Due = (String, String, String, String, i64, String);
        let now = Utc::now();
        let due: Vec<Due> = with_global!(&self.db, read, |tx| {
            sqlx::query_as(
                "SELECT tenant_id, id, cadence, params, next_run_at, created_by FROM workflow_schedules \
                 WHERE next_run_at <= $1 ORDER BY next_run_at LIMIT 50",
            )
            .bind(now.timestamp_millis())
            .fetch_all(&mut *tx)
            .await?
        });
        let mut ran = 0;
        for (tenant, id, cadence, params, at, created_by) in due {
            let tenant: TenantId = match tenant.parse() {
                Ok(t) => t,
                Err(_) => continue,
            };
            let info = self.tenant_info(&tenant).await?;
            let next = next_run(&cadence, now, info.tz).timestamp_millis();
            let claimed = with_global!(&self.db, write, |tx| {
                sqlx::query(
                    "UPDATE workflow_schedules SET next_run_at = $3 WHERE tenant_id = $1 AND id = $2 AND next_run_at = $4",
                )
                .bind(tenant.as_str())
                .bind(&id)
                .bind(next)
                .bind(at)
                .execute(&mut *tx)
                .await?
                .rows_affected()
            });
            if claimed == 0 {
                continue;
            }
            let to = serde_json::from_str::<Json>(&params)
                .ok()
                .and_then(|v| v["to"].as_str().map(str::to_string))
                .unwrap_or_default();
            let today = now.with_timezone(&info.tz).date_naive();
            let period = last_whole(&cadence, today);
            let run_id = uuid::Uuid::now_v7().to_string();
            let mut p = BTreeMap::new();
            p.insert("workflow".to_string(), "weekly_summary".to_string());
            p.insert("to".to_string(), to.clone());
            p.insert("period_start".to_string(), period.start.to_string());
            p.insert("period_end".to_string(), period.end.to_string());
            p.insert("schedule".to_string(), id.clone());
            let preview = format!(
                "Scheduled ({cadence}) summary for {} to {to}",
                describe(&period)
            );
            let ms = now_ms();
            with_tenant!(&self.db, &tenant, write, |tx| {
                sqlx::query(
                    "INSERT INTO actions (tenant_id, id, kind, status, params, preview, needs_owner, proposed_by, proposed_at, expires_at, decided_by, decided_at, started_at, attempts) \
                     VALUES ($1, $2, 'run_workflow', 'executing', $3, $4, FALSE, 'scheduler', $5, $5, $6, $5, $5, 1)",
                )
                .bind(tenant.as_str())
                .bind(&run_id)
                .bind(serde_json::to_string(&p).expect("json"))
                .bind(&preview)
                .bind(ms)
                .bind(&created_by)
                .execute(&mut *tx)
                .await?;
            });
            let outcome = if self.sent_today(&tenant).await? >= self.daily_limit {
                Outcome::Failed("the daily e-mail limit was reached".into())
            } else {
                self.send_summary(&tenant, &run_id, &to, None, period).await
            };
            self.finish(&tenant, "scheduler", &run_id, outcome).await?;
            ran += 1;
        }
        Ok(ran)
    }

    /// Runs due workflows every `interval`, until the process ends.
    pub async fn run_scheduler(self: Arc<Self>, interval: Duration) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = self.run_due().await {
                tracing::warn!(error = %e, "scheduled workflows not run");
            }
        }
    }

    pub async fn list_tasks(&self, caller: &Caller, status: &str) -> Result<Vec<pb::Task>, Error> {
        if !matches!(status, "" | "open" | "done") {
            return Err(Error::invalid("status must be \"open\" or \"done\""));
        }
        let rows: Vec<TaskRow> = with_tenant!(&self.db, &caller.tenant, read, |tx| {
            sqlx::query_as(
                "SELECT id, title, due_date, status, created_by, created_at, completed_at, action_id FROM tasks \
                 WHERE tenant_id = $1 AND ($2 = '' OR status = $2) ORDER BY created_at DESC, id DESC LIMIT 500",
            )
            .bind(caller.tenant.as_str())
            .bind(status)
            .fetch_all(&mut *tx)
            .await?
        });
        Ok(rows.into_iter().map(task_pb).collect())
    }

    pub async fn update_task(
        &self,
        caller: &Caller,
        id: &str,
        status: &str,
    ) -> Result<pb::Task, Error> {
        let id = parse_id(id)?;
        let completed = match status {
            "done" => Some(now_ms()),
            "open" => None,
            _ => return Err(Error::invalid("status must be \"done\" or \"open\"")),
        };
        let row: Option<TaskRow> = with_tenant!(&self.db, &caller.tenant, write, |tx| {
            sqlx::query(
                "UPDATE tasks SET status = $3, completed_at = $4 WHERE tenant_id = $1 AND id = $2",
            )
            .bind(caller.tenant.as_str())
            .bind(&id)
            .bind(status)
            .bind(completed)
            .execute(&mut *tx)
            .await?;
            sqlx::query_as(
                "SELECT id, title, due_date, status, created_by, created_at, completed_at, action_id FROM tasks WHERE tenant_id = $1 AND id = $2",
            )
            .bind(caller.tenant.as_str())
            .bind(&id)
            .fetch_optional(&mut *tx)
            .await?
        });
        let row =
            row.ok_or_else(|| Error::not_found("no such task; list them with GET /v1/tasks"))?;
        self.audit(
            &caller.tenant,
            caller.user.as_str(),
            &format!("task.{status}"),
            &id,
            &row.1,
        )
        .await?;
        Ok(task_pb(row))
    }

    pub async fn audit_events(
        &self,
        caller: &Caller,
        limit: i32,
    ) -> Result<Vec<pb::AuditEvent>, Error> {
        let limit = if limit <= 0 { 100 } else { limit.min(1000) };
        let rows: Vec<(i64, String, String, String, String)> = with_tenant!(
            &self.db,
            &caller.tenant,
            read,
            |tx| {
                sqlx::query_as(
                    "SELECT at, actor, event, subject, detail FROM audit_log WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2",
                )
                .bind(caller.tenant.as_str())
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?
            }
        );
        Ok(rows
            .into_iter()
            .map(|(at, actor, event, subject, detail)| pb::AuditEvent {
                at: rfc3339(Some(at)),
                actor,
                event,
                subject,
                detail,
            })
            .collect())
    }
}

/// A `tasks` row: id, title, due date, status, created by, created at, completed at, action.
type TaskRow = (
    String,
    String,
    Option<String>,
    String,
    String,
    i64,
    Option<i64>,
    Option<String>,
);

fn task_pb(
    (id, title, due, status, created_by, created_at, completed_at, action_id): TaskRow,
) -> pb::Task {
    pb::Task {
        id,
        title,
        due_date: due.unwrap_or_default(),
        status,
        created_by,
        created_at: rfc3339(Some(created_at)),
        completed_at: rfc3339(completed_at),
        action_id: action_id.unwrap_or_default(),
    }
}

fn parse_id(id: &str) -> Result<String, Error> {
    uuid::Uuid::parse_str(id.trim())
        .map(|u| u.to_string())
        .map_err(|_| Error::invalid("malformed id: expected a UUID"))
}

/// A period never reaches past today.
fn clip(mut p: Period, today: NaiveDate) -> Period {
    if p.end > today {
        p.end = today.max(p.start);
        p.clipped = true;
    }
    p
}

/// The whole day, week or month that has just ended on `today`.
fn last_whole(cadence: &str, today: NaiveDate) -> Period {
    match cadence {
        "daily" => Period::day(today - Days::days(1)),
        "monthly" => {
            let s = add_months(month_start(today), -1);
            Period::month_of(s)
        }
        _ => Period::week_of(week_start(today) - Days::days(7)),
    }
}

/// The next run after `now`: 08:00 tenant time, tomorrow / next Monday / the 1st of next month.
pub fn next_run(cadence: &str, now: DateTime<Utc>, tz: chrono_tz::Tz) -> DateTime<Utc> {
    let local = now.with_timezone(&tz).date_naive();
    let mut day = match cadence {
        "daily" => local + Days::days(1),
        "monthly" => add_months(month_start(local), 1),
        _ => {
            let mut d = local + Days::days(1);
            while d.weekday() != Weekday::Mon {
                d += Days::days(1);
            }
            d
        }
    };
    loop {
        let at = day.and_time(NaiveTime::from_hms_opt(8, 0, 0).expect("08:00"));
        if let Some(t) = tz.from_local_datetime(&at).earliest() {
            return t.with_timezone(&Utc);
        }
        day += Days::days(1);
    }
}
